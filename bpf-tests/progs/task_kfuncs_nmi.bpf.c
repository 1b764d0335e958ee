// SPDX-License-Identifier: GPL-2.0
/*
 * Last task references dropped in NMI context, and whether that made
 * call_rcu() run in NMI, where it is illegal.
 *
 * The runner stashes references on reaped children in nmi_slots (stash),
 * waits until each slot holds the task's last rcu_users reference, arms the
 * programs and sends an NMI to the other CPU (sysrq 'l'). release_in_nmi,
 * on tp_btf/nmi_handler, then drops every stashed reference in that NMI:
 * with the release kfunc under test (RELEASE_KFUNC), or, with
 * DROP_BY_UPDATE set, by overwriting the slot so that the map's destructor
 * for task kptrs drops it. call_rcu_entry counts the call_rcu() calls made
 * in NMI meanwhile; on_free counts the stashed tasks that were freed.
 */

#include "task_kfuncs_common.h"
#include <bpf/bpf_core_read.h>

#define NMI_SLOTS 8

/* include/linux/preempt.h */
#define NMI_MASK 0x00f00000

struct nmi_slot {
	struct task_struct __kptr *task;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, int);
	__type(value, struct nmi_slot);
	__uint(max_entries, NMI_SLOTS);
} nmi_slots SEC(".maps");

/* Inputs. */
int armed;
int drop_by_update;
int stashed_pids[NMI_SLOTS];

/* What the programs saw. */
int stash_error;
int nmi_runs;
int not_in_nmi;
int released;
int last_puts;
int call_rcu_in_nmi;
int freed;
int users[NMI_SLOTS];

/*
 * This CPU's preempt count, as the kernel's selftests read it
 * (tools/testing/selftests/bpf/bpf_experimental.h): the per-CPU
 * __preempt_count since 6.15, pcpu_hot.preempt_count before.
 */
extern const int __preempt_count __ksym __weak;

struct pcpu_hot___local {
	int preempt_count;
} __attribute__((preserve_access_index));

extern struct pcpu_hot___local pcpu_hot __ksym __weak;

static inline int preempt_count(void)
{
	if (bpf_ksym_exists(&__preempt_count))
		return *(int *)bpf_this_cpu_ptr(&__preempt_count);
	if (bpf_core_field_exists(pcpu_hot.preempt_count))
		return ((struct pcpu_hot___local *)bpf_this_cpu_ptr(&pcpu_hot))->preempt_count;
	return 0;
}

static inline bool in_nmi(void)
{
	return preempt_count() & NMI_MASK;
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
	struct nmi_slot *v;
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

/* rcu_users of each stashed task (0 for an empty slot), into users[]. */
SEC("syscall")
int read_users(void *ctx)
{
	struct task_struct *t;
	struct nmi_slot *v;
	int i;

	bpf_rcu_read_lock();
	for (i = 0; i < NMI_SLOTS; i++) {
		v = bpf_map_lookup_elem(&nmi_slots, &i);
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
	struct nmi_slot empty = {}, *v;
	struct task_struct *t;
	int i;

	if (!armed)
		return 0;
	if (!in_nmi()) {
		not_in_nmi++;
		return 0;
	}
	nmi_runs++;
	for (i = 0; i < NMI_SLOTS; i++) {
		v = bpf_map_lookup_elem(&nmi_slots, &i);
		if (!v)
			break;
		if (drop_by_update) {
			t = v->task;
			if (!t)
				continue;
			if (task_rcu_users(t) == 1)
				last_puts++;
			/* Overwriting the value frees its kptr fields. */
			if (!bpf_map_update_elem(&nmi_slots, &i, &empty, BPF_ANY))
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
	return 0;
}

SEC("fentry/call_rcu")
int BPF_PROG(call_rcu_entry, struct rcu_head *head, rcu_callback_t func)
{
	if (armed && in_nmi())
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
