// SPDX-License-Identifier: GPL-2.0
/*
 * A minimal sched_ext scheduler (struct_ops) whose callbacks use the task
 * kfuncs. Every runnable task goes to the global DSQ, FIFO.
 * While a task waits to run the scheduler holds a reference on it in a hash
 * map keyed by pid: ops.enqueue takes it with rust_task_acquire() and moves
 * it into the map with bpf_kptr_xchg(); ops.running and ops.exit_task take
 * it out and drop it with rust_task_release(); ops.stopping looks the task
 * up again with rust_task_from_pid(). sched_ext calls ops.exit_task for
 * every task when the scheduler is unloaded, so after a detach the counters
 * must balance: acquired == released.
 *
 * Only the few sched_ext declarations this needs are written here; the
 * types and constants (struct sched_ext_ops, SCX_DSQ_GLOBAL, SCX_SLICE_DFL)
 * come from vmlinux.h.
 */

#include "task_kfuncs_common.h"

char _license[] SEC("license") = "GPL";

/* kernel/sched/ext.c: scx_bpf_dispatch() on 6.12, renamed scx_bpf_dsq_insert() in 6.13 */
#if KERNEL_LINE_AT_LEAST(6, 13)
void scx_bpf_dsq_insert(struct task_struct *p, u64 dsq_id, u64 slice, u64 enq_flags) __ksym;
#define scx_bpf_dispatch scx_bpf_dsq_insert
#else
void scx_bpf_dispatch(struct task_struct *p, u64 dsq_id, u64 slice, u64 enq_flags) __ksym;
#endif

/* tools/sched_ext/include/scx/common.bpf.h */
#define BPF_STRUCT_OPS(name, args...) SEC("struct_ops/" #name) BPF_PROG(name, ##args)

struct held_task {
	struct task_struct __kptr *task;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, s32);
	__type(value, struct held_task);
	__uint(max_entries, 8192);
} held SEC(".maps");

/* Set by the runner: a process whose enqueues are counted apart. */
int sentinel_pid;

/* Read by the runner. */
u64 sentinel_enqueued;	/* ops.enqueue calls for sentinel_pid */
u64 enqueued;		/* ops.enqueue calls */
u64 acquired;		/* references taken (rust_task_acquire) */
u64 acquire_null;	/* rust_task_acquire returned NULL */
u64 released;		/* references dropped (rust_task_release) */
u64 no_slot;		/* the map was full: the task was not held */
u64 stopping_found;	/* ops.stopping: rust_task_from_pid found the task */
u64 stopping_missed;	/* ops.stopping: ...did not (the task is exiting) */
u64 exit_kind;		/* scx_exit_info.kind seen by ops.exit */
char exit_reason[128];	/* ...and its reason */

static void drop_held(s32 pid)
{
	struct held_task *h = bpf_map_lookup_elem(&held, &pid);
	struct task_struct *old;

	if (!h)
		return;
	old = bpf_kptr_xchg(&h->task, NULL);
	if (old) {
		rust_task_release(old);
		__sync_fetch_and_add(&released, 1);
	}
}

static void hold(struct task_struct *p)
{
	struct held_task empty = {}, *h;
	struct task_struct *ref, *old;
	s32 pid = p->pid;

	h = bpf_map_lookup_elem(&held, &pid);
	if (!h) {
		bpf_map_update_elem(&held, &pid, &empty, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&held, &pid);
		if (!h) {
			__sync_fetch_and_add(&no_slot, 1);
			return;
		}
	}
	ref = rust_task_acquire(p);
	if (!ref) {
		__sync_fetch_and_add(&acquire_null, 1);
		return;
	}
	__sync_fetch_and_add(&acquired, 1);
	old = bpf_kptr_xchg(&h->task, ref);
	if (old) {
		rust_task_release(old);
		__sync_fetch_and_add(&released, 1);
	}
}

void BPF_STRUCT_OPS(tkf_enqueue, struct task_struct *p, u64 enq_flags)
{
	__sync_fetch_and_add(&enqueued, 1);
	if (p->tgid == sentinel_pid)
		__sync_fetch_and_add(&sentinel_enqueued, 1);
	hold(p);
	scx_bpf_dispatch(p, SCX_DSQ_GLOBAL, SCX_SLICE_DFL, enq_flags);
}

void BPF_STRUCT_OPS(tkf_running, struct task_struct *p)
{
	drop_held(p->pid);
}

void BPF_STRUCT_OPS(tkf_stopping, struct task_struct *p, bool runnable)
{
	struct task_struct *t = rust_task_from_pid(p->pid);

	if (!t) {
		__sync_fetch_and_add(&stopping_missed, 1);
		return;
	}
	__sync_fetch_and_add(&stopping_found, 1);
	rust_task_release(t);
}

void BPF_STRUCT_OPS(tkf_exit_task, struct task_struct *p, struct scx_exit_task_args *args)
{
	s32 pid = p->pid;

	drop_held(pid);
	bpf_map_delete_elem(&held, &pid);
}

void BPF_STRUCT_OPS(tkf_exit, struct scx_exit_info *ei)
{
	exit_kind = ei->kind;
	bpf_probe_read_kernel_str(exit_reason, sizeof(exit_reason), ei->reason);
}

/* rcu_users of task @pid, without the reference this lookup takes. */
struct users_args {
	int pid;
	int users;
};

SEC("syscall")
int tkf_task_users(struct users_args *args)
{
	struct task_struct *t = rust_task_from_pid(args->pid);

	args->users = -1;
	if (!t)
		return 0;
	args->users = task_rcu_users(t) - 1;
	rust_task_release(t);
	return 0;
}

SEC(".struct_ops.link")
struct sched_ext_ops task_kfuncs_scx = {
	.enqueue = (void *)tkf_enqueue,
	.running = (void *)tkf_running,
	.stopping = (void *)tkf_stopping,
	.exit_task = (void *)tkf_exit_task,
	.exit = (void *)tkf_exit,
	.name = "task_kfuncs",
};
