// SPDX-License-Identifier: GPL-2.0
/*
 * Programs for the module lifecycle cases (src/suites/lifecycle.rs): load,
 * attach and trigger them between insmod and rmmod, park references in a
 * map that outlives the program and the module, race their loads against
 * rmmod. The Rust kfuncs are __weak so that read_rcu_users_c, which uses
 * only the kernel's own kfuncs, loads while the module is not loaded.
 */

#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char _license[] SEC("license") = "GPL";

extern struct task_struct *rust_task_acquire(struct task_struct *p) __ksym __weak;
extern void rust_task_release(struct task_struct *p) __ksym __weak;
extern struct task_struct *rust_task_from_pid(s32 pid) __ksym __weak;
extern struct task_struct *bpf_task_from_pid(s32 pid) __ksym;
extern void bpf_task_release(struct task_struct *p) __ksym;

#define NR_TASK_SLOTS 8
#include "task_kfuncs_slot.h"

/* Set by the runner. */
s32 read_pid;		/* the task of every program below */
u32 read_slot;		/* hold_pid: the slot to put it in */

/* Written by the programs. */
u64 acquired;		/* newtask: references taken and dropped */
s32 rcu_users_read = -1;

/* One Rust acquire + release per new task. */
SEC("tp_btf/task_newtask")
int BPF_PROG(newtask, struct task_struct *task, u64 clone_flags)
{
	struct task_struct *t = rust_task_acquire(task);

	if (t) {
		__sync_fetch_and_add(&acquired, 1);
		rust_task_release(t);
	}
	return 0;
}

/* rust_task_from_pid(read_pid): its pid, or -1. */
SEC("syscall")
int from_pid(void *ctx)
{
	struct task_struct *t = rust_task_from_pid(read_pid);
	s32 pid;

	if (!t)
		return -1;
	pid = t->pid;
	rust_task_release(t);
	return pid;
}

/* Moves a Rust reference on read_pid into slot read_slot. */
SEC("syscall")
int hold_pid(void *ctx)
{
	struct task_slot *v = task_slot_at(read_slot);
	struct task_struct *t, *old;

	if (!v)
		return 2;
	t = rust_task_from_pid(read_pid);
	if (!t)
		return 1;
	old = bpf_kptr_xchg(&v->task, t);
	if (old)
		rust_task_release(old);
	return 0;
}

/* rcu_users of read_pid, without the reference taken to read it. */
SEC("syscall")
int read_rcu_users_c(void *ctx)
{
	struct task_struct *t = bpf_task_from_pid(read_pid);

	rcu_users_read = -1;
	if (!t)
		return 1;
	rcu_users_read = t->rcu_users.refs.counter - 1;
	bpf_task_release(t);
	return 0;
}
