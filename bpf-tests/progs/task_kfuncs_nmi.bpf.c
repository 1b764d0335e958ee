// SPDX-License-Identifier: GPL-2.0
/*
 * Last task references dropped in NMI context, and whether that made
 * call_rcu() run in NMI, where it is illegal.
 *
 * The runner stashes references on reaped children in nmi_slots (stash),
 * waits until each slot holds the task's last rcu_users reference, arms the
 * programs and sends an NMI to the other CPU (sysrq 'l'). release_in_nmi,
 * on tp_btf/nmi_handler, then drops every stashed reference in that NMI:
 * with the release kfunc under test (rust_task_release, or
 * bpf_task_release in the C build), or, with
 * drop_by_update set, by overwriting the slot so that the map's destructor
 * for task kptrs drops it. call_rcu_entry counts the call_rcu() calls made
 * in NMI by those drops; on_free counts the stashed tasks that were freed.
 */

#include "task_kfuncs_common.h"

#define NMI_SLOTS 8

/* The stashed references (probe_update uses task_slots, of task_kfuncs_slot.h). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, int);
	__type(value, struct task_slot);
	__uint(max_entries, NMI_SLOTS);
} nmi_slots SEC(".maps");

/* Inputs. */
int armed;
int drop_by_update;
int stashed_pids[NMI_SLOTS];

/* What the programs saw. */
int update_keeps_kptr = -1;
int stash_error;
int nmi_runs;
int nmi_done;
int released;
int last_puts;
int call_rcu_in_nmi;
int freed;
int users[NMI_SLOTS];

/*
 * Set on a CPU while release_in_nmi drops references there: a call_rcu()
 * that call_rcu_entry sees meanwhile on the same CPU was made in NMI, by
 * the drop. (Reading the preempt count from BPF needs the per-CPU
 * variable's address in kallsyms, which the test kernel lacks without
 * CONFIG_KALLSYMS_ALL; and this pins the call on the drop itself.)
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, int);
	__type(value, int);
	__uint(max_entries, 1);
} dropping SEC(".maps");

static inline int *dropping_here(void)
{
	int zero = 0;

	return bpf_map_lookup_elem(&dropping, &zero);
}

struct stash_args {
	int slot;
	int pid;
};

/* Moves a reference on the task of args->pid into slot args->slot. */
SEC("syscall")
int stash(struct stash_args *args)
{
	struct task_struct *t, *old;
	struct task_slot *v;
	int slot = args->slot;

	if (slot < 0 || slot >= NMI_SLOTS) {
		stash_error = EINVAL;
		return 0;
	}
	v = bpf_map_lookup_elem(&nmi_slots, &slot);
	if (!v) {
		stash_error = ENOENT;
		return 0;
	}
	t = rust_task_from_pid(args->pid);
	if (!t) {
		stash_error = ENOENT;
		return 0;
	}
	old = bpf_kptr_xchg(&v->task, t);
	if (old) {
		rust_task_release(old);
		stash_error = EEXIST;
	}
	return 0;
}

/*
 * Whether overwriting a map value drops its kptr field on this kernel
 * (6.12 does, 7.x leaves it in place), tried on a reference to the task of
 * args->pid, a live task, outside NMI.
 */
SEC("syscall")
int probe_update(struct stash_args *args)
{
	struct task_slot empty = {}, *v;
	struct task_struct *t;
	u32 zero = 0;

	v = task_slot();
	if (!v)
		return 0;
	t = rust_task_from_pid(args->pid);
	if (!t)
		return 0;
	t = bpf_kptr_xchg(&v->task, t);
	if (t)
		rust_task_release(t);
	bpf_map_update_elem(&task_slots, &zero, &empty, BPF_ANY);
	v = task_slot();
	if (!v)
		return 0;
	t = bpf_kptr_xchg(&v->task, NULL);
	update_keeps_kptr = t != NULL;
	if (t)
		rust_task_release(t);
	return 0;
}

/* rcu_users of each stashed task (0 for an empty slot), into users[]. */
SEC("syscall")
int read_users(void *ctx)
{
	struct task_struct *t;
	struct task_slot *v;
	int i, key;

	bpf_rcu_read_lock();
	for (i = 0; i < NMI_SLOTS; i++) {
		/* The verifier keeps i's bounds only while it is not on the stack. */
		key = i;
		v = bpf_map_lookup_elem(&nmi_slots, &key);
		if (!v)
			break;
		t = v->task;
		users[i] = t ? task_rcu_users(t) : 0;
	}
	bpf_rcu_read_unlock();
	return 0;
}

SEC("tp_btf/nmi_handler")
int BPF_PROG(release_in_nmi, void *handler, s64 delta_ns, int handled)
{
	struct task_slot empty = {}, *v;
	struct task_struct *t;
	int i, key, *flag;

	/* trace_nmi_handler() is called by nmi_handle(), in the NMI. */
	if (!armed)
		return 0;
	flag = dropping_here();
	if (!flag)
		return 0;
	nmi_runs++;
	*flag = 1;
	for (i = 0; i < NMI_SLOTS; i++) {
		key = i;
		v = bpf_map_lookup_elem(&nmi_slots, &key);
		if (!v)
			break;
		if (drop_by_update) {
			t = v->task;
			if (!t)
				continue;
			if (task_rcu_users(t) == 1)
				last_puts++;
			/*
			 * Overwriting the value frees its kptr fields in 6.12;
			 * since 7.x it leaves them in place.
			 */
			if (!bpf_map_update_elem(&nmi_slots, &key, &empty, BPF_ANY))
				released++;
			continue;
		}
		t = bpf_kptr_xchg(&v->task, NULL);
		if (!t)
			continue;
		if (task_rcu_users(t) == 1)
			last_puts++;
		rust_task_release(t);
		released++;
	}
	*flag = 0;
	nmi_done++;
	return 0;
}

SEC("fentry/call_rcu")
int BPF_PROG(call_rcu_entry, struct callback_head *head, void *func)
{
	int *flag = dropping_here();

	if (flag && *flag)
		__sync_fetch_and_add(&call_rcu_in_nmi, 1);
	return 0;
}

SEC("tp_btf/sched_process_free")
int BPF_PROG(on_free, struct task_struct *p)
{
	int i;

	for (i = 0; i < NMI_SLOTS; i++) {
		if (stashed_pids[i] && stashed_pids[i] == p->pid) {
			__sync_fetch_and_add(&freed, 1);
			break;
		}
	}
	return 0;
}

char _license[] SEC("license") = "GPL";
