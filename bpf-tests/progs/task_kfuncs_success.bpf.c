// SPDX-License-Identifier: GPL-2.0
/*
 * Programs the verifier must accept and that must behave: one program per
 * case, named for what it proves. The runner loads only the case's own
 * program, triggers it as its section says (a fork for tp_btf/fentry,
 * BPF_PROG_TEST_RUN for syscall programs) and reads the verdict back from
 * `runs` and `err` (selftest.h). A case whose program never ran fails.
 */

#include "task_kfuncs_common.h"
#include "task_kfuncs_upstream.h"

char _license[] SEC("license") = "GPL";

/* Observations the runner checks or prints. */
int users_before, users_held, users_after;
int found_pid, found_tgid;
int kptr_get_null;

/* Arguments of the syscall programs (BPF_PROG_TEST_RUN context). */
struct syscall_args {
	int op;
	int pid;
};

enum slot_op {
	SLOT_STORE = 1,		/* from_pid(pid) and move it into the slot */
	SLOT_USERS = 2,		/* users_held = rcu_users(pid) without our ref */
	SLOT_PEEK = 3,		/* users_before = rcu_users of the stored task */
	SLOT_EMPTY_GET = 4,	/* empty the slot, then kptr_get the stale pointer */
};

static inline void acquire_release(struct task_struct *p)
{
	struct task_struct *acquired;

	acquired = rust_task_acquire(p);
	CHECK(acquired);
	if (!acquired)
		return;
	CHECK(acquired->pid == p->pid);
	rust_task_release(acquired);
}

/* @found, a lookup of @pid, must be the task with @pid; it is released. */
static __always_inline void finds(struct task_struct *found, s32 pid)
{
	CHECK(found);
	if (!found)
		return;
	found_pid = found->pid;
	found_tgid = found->tgid;
	CHECK(found->pid == pid);
	rust_task_release(found);
}

/* @found, a lookup that must fail, must be NULL. */
static __always_inline void misses(struct task_struct *found)
{
	CHECK(!found);
	if (found)
		rust_task_release(found);
}

#define from_pid_finds(pid) finds(rust_task_from_pid(pid), pid)
#define from_pid_misses(pid) misses(rust_task_from_pid(pid))

/*
 * TRACE_EVENT(task_newtask, TP_PROTO(struct task_struct *task,
 *					unsigned long clone_flags)):
 * @task is the new child (trusted), current is the forking runner.
 */

/* A case that is one statement on the runner's forks. */
#define ON_FORK(name, stmt)							\
SEC("tp_btf/task_newtask")							\
int BPF_PROG(name, struct task_struct *task, u64 clone_flags)			\
{										\
	if (runner_forked())							\
		stmt;								\
	return 0;								\
}

ON_FORK(acquire_release_argument, acquire_release(task))
ON_FORK(acquire_release_current, acquire_release(bpf_get_current_task_btf()))
ON_FORK(from_pid_argument, from_pid_finds(task->pid))
ON_FORK(from_pid_current, from_pid_finds(bpf_get_current_task_btf()->pid))
/* The map's destructor drops the reference when the map goes away. */
ON_FORK(acquire_leave_in_map, CHECK(!task_slot_store(task)))

/*
 * In 6.12 task->group_leader is an RCU-safe field (BTF_TYPE_SAFE_RCU in
 * kernel/bpf/verifier.c), not a trusted one. Both acquiring kfuncs are
 * KF_RCU, as bpf_task_acquire is: each takes the reference, so a program
 * written for bpf_task_acquire ports by renaming alone.
 */
#define RCU_WALKED(name, kfunc)							\
SEC("tp_btf/task_newtask")							\
int BPF_PROG(name, struct task_struct *task, u64 clone_flags)			\
{										\
	struct task_struct *leader;						\
										\
	if (!runner_forked())							\
		return 0;							\
	leader = kfunc(task->group_leader);					\
	REQUIRE(leader);							\
	found_pid = leader->pid;						\
	/* A forked child leads its own thread group. */			\
	CHECK(leader->pid == task->pid);					\
	rust_task_release(leader);						\
	return 0;								\
}

RCU_WALKED(kptr_get_rcu_walked, rust_task_kptr_get)
RCU_WALKED(acquire_rcu_walked, rust_task_acquire)

/* An RCU kptr loaded inside bpf_rcu_read_lock(): acquire takes it too. */
SEC("tp_btf/task_newtask")
int BPF_PROG(acquire_rcu_kptr, struct task_struct *task, u64 clone_flags)
{
	struct task_struct *stored, *acquired;
	struct task_slot *slot;

	if (!runner_forked())
		return 0;

	CHECK(!task_slot_store(task));
	slot = task_slot();
	if (!slot)
		return 0;
	bpf_rcu_read_lock();
	stored = slot->task;
	CHECK(stored);
	if (stored) {
		acquired = rust_task_acquire(stored);
		CHECK(acquired);
		if (acquired) {
			found_pid = acquired->pid;
			CHECK(acquired->pid == task->pid);
			rust_task_release(acquired);
		}
	}
	bpf_rcu_read_unlock();
	return 0;
}

SEC("tp_btf/task_newtask")
int BPF_PROG(xchg_out_release, struct task_struct *task, u64 clone_flags)
{
	struct task_struct *out;
	struct task_slot *slot;

	if (!runner_forked())
		return 0;

	CHECK(!task_slot_store(task));
	slot = task_slot();
	if (!slot)
		return 0;
	out = bpf_kptr_xchg(&slot->task, NULL);
	REQUIRE(out);
	CHECK(out->pid == task->pid);
	rust_task_release(out);

	out = bpf_kptr_xchg(&slot->task, NULL);
	CHECK(!out);
	if (out)
		rust_task_release(out);
	return 0;
}

SEC("tp_btf/task_newtask")
int BPF_PROG(kptr_get_stored, struct task_struct *task, u64 clone_flags)
{
	struct task_struct *stored, *got;
	struct task_slot *slot;

	if (!runner_forked())
		return 0;

	CHECK(!task_slot_store(task));
	slot = task_slot();
	if (!slot)
		return 0;

	bpf_rcu_read_lock();
	stored = slot->task;
	if (!stored) {
		CHECK(false);
		goto out;
	}
	users_before = task_rcu_users(stored);
	got = rust_task_kptr_get(stored);
	CHECK(got);
	if (!got)
		goto out;
	users_held = task_rcu_users(got);
	CHECK(got->pid == task->pid);
	CHECK(users_held == users_before + 1);
	rust_task_release(got);
	users_after = task_rcu_users(stored);
	CHECK(users_after == users_before);
out:
	bpf_rcu_read_unlock();
	return 0;
}

SEC("tp_btf/task_newtask")
int BPF_PROG(from_pid_invalid, struct task_struct *task, u64 clone_flags)
{
	if (!runner_forked())
		return 0;

	CHECK(pid_max > 0);
	from_pid_misses(-1);
	from_pid_misses(0);
	from_pid_misses(INT_MAX);
	from_pid_misses(INT_MIN);
	from_pid_misses(pid_max);
	from_pid_misses(pid_max + 1);
	return 0;
}

SEC("tp_btf/task_newtask")
__c_skip_no_vpid("6.12 has no C kfunc looking up a pid in the caller's namespace")
int BPF_PROG(from_vpid_current, struct task_struct *task, u64 clone_flags)
{
	struct task_struct *current = bpf_get_current_task_btf();

	if (!runner_forked())
		return 0;

	/* The runner lives in init_pid_ns: its vpid is its pid. */
	finds(rust_task_from_vpid(current->pid), current->pid);
	misses(rust_task_from_vpid(-1));
	misses(rust_task_from_vpid(0));
	return 0;
}

/*
 * A reference taken on @subject by one side of the contract is dropped by
 * the other (or by the same side): rcu_users goes up by one and back.
 */
#define BALANCED(name, subject, get, put)					\
SEC("tp_btf/task_newtask")							\
int BPF_PROG(name, struct task_struct *task, u64 clone_flags)			\
{										\
	struct task_struct *p = (subject), *got;				\
										\
	if (!runner_forked())							\
		return 0;							\
	users_before = task_rcu_users(p);					\
	got = get;								\
	REQUIRE(got);								\
	users_held = task_rcu_users(p);						\
	put(got);								\
	users_after = task_rcu_users(p);					\
	CHECK(users_held == users_before + 1);					\
	CHECK(users_after == users_before);					\
	return 0;								\
}

BALANCED(interop_acquire_rust_release_kernel, task, rust_task_acquire(task), bpf_task_release)
BALANCED(interop_acquire_kernel_release_rust, task, bpf_task_acquire(task), rust_task_release)
BALANCED(interop_from_pid_kernel_release_rust, task, bpf_task_from_pid(task->pid), rust_task_release)
BALANCED(interop_from_pid_rust_release_kernel, task, rust_task_from_pid(task->pid), bpf_task_release)
BALANCED(rcu_users_balanced, bpf_get_current_task_btf(), rust_task_acquire(p), rust_task_release)

/*
 * fentry arguments are not trusted (only tp_btf, iter, LSM and struct_ops
 * ones are): take references through current and through a pid lookup.
 */
SEC("fentry/wake_up_new_task")
int BPF_PROG(fentry_acquire_current_from_pid_arg, struct task_struct *p)
{
	if (!runner_forked())
		return 0;

	acquire_release(bpf_get_current_task_btf());
	from_pid_finds(p->pid);
	return 0;
}

/* BPF_PROG_TEST_RUN of a syscall program runs in the runner's context. */

SEC("syscall")
int syscall_acquire_release_current(struct syscall_args *args)
{
	runs++;
	acquire_release(bpf_get_current_task_btf());
	return 0;
}

SEC("syscall")
int syscall_from_pid(struct syscall_args *args)
{
	runs++;
	from_pid_finds(args->pid);
	CHECK(found_tgid == (bpf_get_current_pid_tgid() >> 32));
	return 0;
}

/*
 * Run by a child the runner cloned with CLONE_NEWPID, with args->pid = 1:
 * in its namespace the child is pid 1, in init_pid_ns it is not.
 */
SEC("syscall")
__c_skip_no_vpid("6.12 has no C kfunc looking up a pid in the caller's namespace")
int syscall_from_vpid_new_pidns(struct syscall_args *args)
{
	struct task_struct *current = bpf_get_current_task_btf(), *found;

	runs++;
	found = rust_task_from_vpid(args->pid);
	REQUIRE(found);
	found_pid = found->pid;
	CHECK(found->pid == current->pid);
	rust_task_release(found);

	/* The same number in init_pid_ns is another task (init). */
	found = rust_task_from_pid(args->pid);
	REQUIRE(found);
	found_tgid = found->pid;
	CHECK(found->pid != current->pid);
	rust_task_release(found);
	return 0;
}

/* Slot operations for the cases that span several runs (see enum slot_op). */
SEC("syscall")
int syscall_task_slot(struct syscall_args *args)
{
	struct task_struct *task, *stale, *got;
	struct task_slot *slot;

	runs++;
	slot = task_slot();
	if (!slot)
		return 0;

	switch (args->op) {
	case SLOT_STORE:
		task = rust_task_from_pid(args->pid);
		REQUIRE(task);
		task = bpf_kptr_xchg(&slot->task, task);
		CHECK(!task);
		if (task)
			rust_task_release(task);
		break;
	case SLOT_USERS:
		task = rust_task_from_pid(args->pid);
		REQUIRE(task);
		users_held = task_rcu_users(task) - 1;
		rust_task_release(task);
		break;
	case SLOT_PEEK:
		bpf_rcu_read_lock();
		stale = slot->task;
		if (stale)
			users_before = task_rcu_users(stale);
		else
			CHECK(false);
		bpf_rcu_read_unlock();
		break;
	case SLOT_EMPTY_GET:
		bpf_rcu_read_lock();
		stale = slot->task;
		if (!stale) {
			CHECK(false);
			goto unlock;
		}
		users_before = task_rcu_users(stale);
		task = bpf_kptr_xchg(&slot->task, NULL);
		if (!task) {
			CHECK(false);
			goto unlock;
		}
		/* May drop the last reference: freed after a grace period. */
		rust_task_release(task);
		got = rust_task_kptr_get(stale);
		kptr_get_null = !got;
		if (got)
			rust_task_release(got);
unlock:
		bpf_rcu_read_unlock();
		break;
	default:
		CHECK(false);
	}
	return 0;
}

/*
 * Shapes of the kernel's own task kfunc selftests (7.x task_kfunc_success.c),
 * against this build's kfuncs.
 */

/* The acquire kfunc called as a ksym flavor: ___one resolves, ___two does not. */
SEC("tp_btf/task_newtask")
int BPF_PROG(acquire_flavor_relocation, struct task_struct *task, u64 clone_flags)
{
	struct task_struct *acquired;

	if (!runner_forked())
		return 0;
	if (bpf_ksym_exists(task_acquire___two)) {
		CHECK(0);
		return 0;
	}
	if (!bpf_ksym_exists(task_acquire___one)) {
		CHECK(0);
		return 0;
	}
	acquired = task_acquire___one(task);
	REQUIRE(acquired);
	CHECK(acquired->pid == task->pid);
	rust_task_release(acquired);
	return 0;
}

/*
 * The RCU-after-lock-region cases that must load: the kptr is read inside a
 * region that implies RCU and acquired while RCU still protects it. Each
 * program first stores a reference to the calling thread in the lock map,
 * then reads it back inside the region. The sleepable ones are syscall
 * programs (the kernel's own selftests use fentry.s on a system call, which
 * needs CONFIG_FUNCTION_ERROR_INJECTION).
 */
static __always_inline struct task_kptr_lock_value *lock_value_stored(void)
{
	struct task_kptr_lock_value *v;
	struct task_struct *acquired, *old;

	if ((bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return NULL;
	runs++;
	v = task_kptr_lock_value();
	CHECK(v);
	if (!v)
		return NULL;
	acquired = rust_task_acquire(bpf_get_current_task_btf());
	CHECK(acquired);
	if (!acquired)
		return NULL;
	old = bpf_kptr_xchg(&v->task, acquired);
	if (old)
		rust_task_release(old);
	return v;
}

static __always_inline void acquire_stored(struct task_struct *task)
{
	struct task_struct *acquired;

	CHECK(task);
	if (!task)
		return;
	acquired = rust_task_acquire(task);
	CHECK(acquired);
	if (!acquired)
		return;
	CHECK(acquired->pid == (u32)bpf_get_current_pid_tgid());
	rust_task_release(acquired);
}

/*
 * The body of a program that reads the stored kptr between @lock and
 * @unlock, inside @enter ... @leave, and acquires it after @unlock. Each
 * argument is one expression ((void)0 for none).
 */
#define LOCK_REGION(enter, lock, unlock, leave)					\
{										\
	struct task_kptr_lock_value *v = lock_value_stored();			\
	unsigned long flags __attribute__((unused));				\
	struct task_struct *task;						\
										\
	if (!v)									\
		return 0;							\
	enter;									\
	lock;									\
	task = v->task;								\
	unlock;									\
	acquire_stored(task);							\
	leave;									\
	return 0;								\
}
#define SPIN_LOCK bpf_spin_lock(&v->lock)
#define SPIN_UNLOCK bpf_spin_unlock(&v->lock)
#define IRQ_SAVE bpf_local_irq_save(&flags)
#define IRQ_RESTORE bpf_local_irq_restore(&flags)

SEC("fentry/" SYS_PREFIX "sys_getpgid")
int BPF_PROG(lock_region_spin_unlock_non_sleepable)
LOCK_REGION((void)0, SPIN_LOCK, SPIN_UNLOCK, (void)0)

SEC("syscall")
int lock_region_spin_unlock_explicit_rcu(void *ctx)
LOCK_REGION(bpf_rcu_read_lock(), SPIN_LOCK, SPIN_UNLOCK, bpf_rcu_read_unlock())

SEC("syscall")
int lock_region_spin_unlock_preempt_disabled(void *ctx)
LOCK_REGION(bpf_preempt_disable(), SPIN_LOCK, SPIN_UNLOCK, bpf_preempt_enable())

SEC("syscall")
__skip_no_irq("6.12 has no bpf_local_irq_save")
int lock_region_spin_unlock_irq_disabled(void *ctx)
LOCK_REGION(IRQ_SAVE, SPIN_LOCK, SPIN_UNLOCK, IRQ_RESTORE)

SEC("syscall")
__skip_no_preempt_rcu("6.12's verifier does not count a preempt-disabled region as RCU")
int lock_region_rcu_unlock_preempt_disabled(void *ctx)
LOCK_REGION(bpf_preempt_disable(), bpf_rcu_read_lock(), bpf_rcu_read_unlock(), bpf_preempt_enable())

SEC("syscall")
__skip_no_irq("6.12 has no bpf_local_irq_save")
int lock_region_rcu_unlock_irq_disabled(void *ctx)
LOCK_REGION(IRQ_SAVE, bpf_rcu_read_lock(), bpf_rcu_read_unlock(), IRQ_RESTORE)

/* These regions end inside an RCU read section, which covers the acquire. */
SEC("syscall")
__skip_no_preempt_rcu("6.12's verifier does not count a preempt-disabled region as RCU")
int lock_region_preempt_enable_explicit_rcu(void *ctx)
LOCK_REGION(bpf_preempt_disable(), (void)0, (bpf_rcu_read_lock(), bpf_preempt_enable()),
	    bpf_rcu_read_unlock())

SEC("syscall")
__skip_no_irq("6.12 has no bpf_local_irq_save")
int lock_region_irq_restore_explicit_rcu(void *ctx)
LOCK_REGION(IRQ_SAVE, (void)0, (bpf_rcu_read_lock(), IRQ_RESTORE), bpf_rcu_read_unlock())

/*
 * Run by a child cloned with CLONE_NEWPID: it is the only task of its
 * namespace (vpid 1), so no other number names a task there, whatever
 * init_pid_ns holds.
 */
SEC("syscall")
__c_skip_no_vpid("6.12 has no C kfunc looking up a pid in the caller's namespace")
int syscall_from_vpid_invalid_new_pidns(struct syscall_args *args)
{
	s32 vpids[] = { -1, 2, 9999 };
	struct task_struct *found;
	int i;

	runs++;
	for (i = 0; i < 3; i++) {
		found = rust_task_from_vpid(vpids[i]);
		CHECK(!found);
		if (found)
			rust_task_release(found);
	}
	return 0;
}
