// SPDX-License-Identifier: GPL-2.0
/*
 * Programs the verifier must reject: one per case, named for the mistake it
 * makes, with the exact verifier message it must produce in its head (__msg).
 * The runner loads each program alone and checks that the load fails and
 * that the verifier log contains the message.
 */

#include "task_kfuncs_common.h"
#include "task_kfuncs_upstream.h"

char _license[] SEC("license") = "GPL";

/* Takes a reference with @get and drops it, if there is one. */
#define GET_PUT(get)								\
	do {									\
		struct task_struct *got = (get);				\
										\
		if (got)							\
			rust_task_release(got);					\
	} while (0)

/*
 * The head of a tp_btf/task_newtask program (@task is the new child, see
 * task_kfuncs_success.bpf.c) that the verifier must reject with @msg.
 */
#define REJECTED_ON_FORK(name, msg)						\
SEC("tp_btf/task_newtask") __failure __msg(msg)					\
int BPF_PROG(name, struct task_struct *task, u64 clone_flags)

REJECTED_ON_FORK(acquire_null, MSG_NULL_TRUSTED)
{
	GET_PUT(rust_task_acquire(NULL));
	return 0;
}

REJECTED_ON_FORK(acquire_stack_pointer, MSG_ACQUIRE_STACK)
{
	struct task_struct *on_stack = (struct task_struct *)&clone_flags;

	GET_PUT(rust_task_acquire((struct task_struct *)&on_stack));
	return 0;
}

REJECTED_ON_FORK(release_stack_pointer, MSG_RELEASE_STACK)
{
	struct task_struct *on_stack = (struct task_struct *)&clone_flags;

	rust_task_release(on_stack);
	return 0;
}

REJECTED_ON_FORK(release_null, MSG_NULL_TRUSTED)
{
	rust_task_release(NULL);
	return 0;
}

/* A sleepable program outside bpf_rcu_read_lock(): the kptr load is untrusted. */
SEC("syscall")
__failure __msg("R1 must be a rcu pointer")
int acquire_untrusted_kptr_load(void *ctx)
{
	struct task_struct *plain;
	struct task_slot *slot;

	slot = task_slot();
	if (!slot)
		return 0;
	plain = slot->task;
	if (plain)
		GET_PUT(rust_task_acquire(plain));
	return 0;
}

/* fentry arguments are neither trusted nor RCU protected. */
SEC("fentry/wake_up_new_task")
__failure __msg("R1 must be a rcu pointer")
int BPF_PROG(acquire_untrusted_fentry_arg, struct task_struct *p)
{
	GET_PUT(rust_task_acquire(p));
	return 0;
}

REJECTED_ON_FORK(acquire_no_null_check, MSG_NULL_TRUSTED)
{
	struct task_struct *acquired;

	acquired = rust_task_acquire(task);
	rust_task_release(acquired);
	return 0;
}

REJECTED_ON_FORK(from_pid_no_null_check, MSG_NULL_TRUSTED)
{
	struct task_struct *found;

	found = rust_task_from_pid(task->pid);
	rust_task_release(found);
	return 0;
}

REJECTED_ON_FORK(from_pid_deref_no_null_check, MSG_DEREF_MAYBE_NULL)
{
	struct task_struct *found;
	int pid;

	found = rust_task_from_pid(task->pid);
	pid = found->pid;
	if (found)
		rust_task_release(found);
	return pid;
}

/* A reference taken by @get and never released. */
#define LEAKED(name, get)							\
REJECTED_ON_FORK(name, "Unreleased reference")					\
{										\
	struct task_struct *got = get;						\
										\
	return got ? got->pid : 0;						\
}

LEAKED(acquire_leaked, rust_task_acquire(task))
LEAKED(from_pid_leaked, rust_task_from_pid(task->pid))
__c_skip_no_vpid("6.12 has no C kfunc looking up a pid in the caller's namespace")
LEAKED(from_vpid_leaked, rust_task_from_vpid(task->pid))

REJECTED_ON_FORK(kptr_get_leaked, "Unreleased reference")
{
	struct task_struct *stored, *got = NULL;
	struct task_slot *slot;

	if (task_slot_store(task))
		return 0;
	slot = task_slot();
	if (!slot)
		return 0;
	bpf_rcu_read_lock();
	stored = slot->task;
	if (stored)
		got = rust_task_kptr_get(stored);
	bpf_rcu_read_unlock();
	return got ? 1 : 0;
}

REJECTED_ON_FORK(xchg_out_leaked, "Unreleased reference")
{
	struct task_struct *out;
	struct task_slot *slot;

	if (task_slot_store(task))
		return 0;
	slot = task_slot();
	if (!slot)
		return 0;
	out = bpf_kptr_xchg(&slot->task, NULL);
	if (!out)
		return 0;
	return out->pid;
}

REJECTED_ON_FORK(double_release, MSG_DOUBLE_RELEASE)
{
	struct task_struct *acquired;

	acquired = rust_task_acquire(task);
	if (!acquired)
		return 0;
	rust_task_release(acquired);
	rust_task_release(acquired);
	return 0;
}

REJECTED_ON_FORK(use_after_release, "invalid mem access 'scalar'")
{
	struct task_struct *acquired;

	acquired = rust_task_acquire(task);
	if (!acquired)
		return 0;
	rust_task_release(acquired);
	return acquired->pid;
}

REJECTED_ON_FORK(release_unacquired_argument, MSG_RELEASE_UNREFERENCED)
{
	rust_task_release(task);
	return 0;
}

REJECTED_ON_FORK(release_kptr_still_in_map, MSG_RELEASE_IN_MAP)
{
	struct task_struct *stored;
	struct task_slot *slot;

	if (task_slot_store(task))
		return 0;
	slot = task_slot();
	if (!slot)
		return 0;
	bpf_rcu_read_lock();
	stored = slot->task;
	if (stored)
		rust_task_release(stored);
	bpf_rcu_read_unlock();
	return 0;
}

/* Sleepable program, no bpf_rcu_read_lock(): the kptr is not RCU protected. */
SEC("syscall")
__failure __msg("R1 must be a rcu pointer")
int kptr_get_outside_rcu(void *ctx)
{
	struct task_struct *stored;
	struct task_slot *slot;

	slot = task_slot();
	if (!slot)
		return 0;
	stored = slot->task;
	if (stored)
		GET_PUT(rust_task_kptr_get(stored));
	return 0;
}

/* Not registered for kprobes or socket filters. */

SEC("kprobe/wake_up_new_task")
__failure __msg("calling kernel function " KF_ACQUIRE_NAME " is not allowed")
int BPF_KPROBE(kfunc_from_kprobe, struct task_struct *p)
{
	GET_PUT(rust_task_acquire(bpf_get_current_task_btf()));
	return 0;
}

SEC("kretprobe/wake_up_new_task")
__failure __msg("calling kernel function " KF_FROM_PID_NAME " is not allowed")
int BPF_KRETPROBE(kfunc_from_kretprobe)
{
	GET_PUT(rust_task_from_pid(1));
	return 0;
}

SEC("socket")
__failure __msg("calling kernel function " KF_FROM_PID_NAME " is not allowed")
int kfunc_from_socket_filter(struct __sk_buff *skb)
{
	GET_PUT(rust_task_from_pid(1));
	return 0;
}

/*
 * Shapes of the kernel's own task kfunc selftests (7.x task_kfunc_failure.c),
 * against this build's kfuncs.
 */

/* lsm/task_free's task is on its way out: neither trusted nor RCU-protected. */
SEC("lsm/task_free")
__failure __msg("R1 must be a rcu pointer")
int BPF_PROG(acquire_lsm_task_free, struct task_struct *task)
{
	GET_PUT(rust_task_acquire(task));
	return 0;
}

/*
 * A sleepable program (a syscall program here; fentry.s in the kernel's own
 * selftests) reads the kptr inside a region that implies RCU (a spin lock,
 * preemption or interrupts disabled) and uses it after the region ended: the
 * pointer is no longer protected. 6.12 accepts the spin lock shape, a
 * use-after-free: docs/upstream/bpf_spin_unlock-rcu-kptr-uaf.md.
 */
/* The body of a program that reads the kptr between @lock and @unlock, acquires after. */
#define AFTER_REGION(lock, unlock)						\
{										\
	struct task_kptr_lock_value *v = task_kptr_lock_value();		\
	unsigned long flags __attribute__((unused));				\
	struct task_struct *task;						\
										\
	if (!v)									\
		return 0;							\
	lock;									\
	task = v->task;								\
	unlock;									\
	if (task)								\
		GET_PUT(rust_task_acquire(task));				\
	return 0;								\
}

SEC("syscall")
__failure __msg("R1 must be a rcu pointer")
#if !KERNEL_LINE_AT_LEAST(7, 0)
__skip("6.12's verifier accepts it: a kptr read under bpf_spin_lock stays RCU-protected after the unlock (7.x refuses it)")
#endif
int acquire_after_final_spin_unlock(void *ctx)
AFTER_REGION(bpf_spin_lock(&v->lock), bpf_spin_unlock(&v->lock))

SEC("syscall")
__failure __msg("R1 must be a rcu pointer")
int acquire_after_preempt_enable(void *ctx)
AFTER_REGION(bpf_preempt_disable(), bpf_preempt_enable())

SEC("syscall")
__failure __msg("R1 must be a rcu pointer")
__skip_no_irq("6.12 has no bpf_local_irq_save")
int acquire_after_irq_restore(void *ctx)
AFTER_REGION(bpf_local_irq_save(&flags), bpf_local_irq_restore(&flags))

/*
 * Dropping a local object drops the task reference inside it with the
 * kernel's destructor (put_task_struct_rcu_user()), which is not NMI-safe:
 * 7.x refuses it in tracing programs. 6.12 accepts it, and its drop in NMI
 * is the call_rcu() of docs/upstream/bpf_task_release-nmi-call_rcu.md.
 */
SEC("tp_btf/task_newtask")
__failure __msg("cannot be used in tracing programs on types with NMI unsafe fields")
#if !KERNEL_LINE_AT_LEAST(7, 0)
__skip("6.12's verifier lets tracing programs drop an object holding a task kptr (7.x refuses it)")
#endif
int BPF_PROG(obj_drop_with_task_kptr, struct task_struct *task, u64 clone_flags)
{
	struct task_kptr_obj *local;
	struct task_struct *acquired, *old;

	local = bpf_obj_new(struct task_kptr_obj);
	if (!local)
		return 0;
	acquired = rust_task_acquire(task);
	if (acquired) {
		old = bpf_kptr_xchg(&local->task, acquired);
		if (old)
			rust_task_release(old);
	}
	bpf_obj_drop(local);
	return 0;
}
