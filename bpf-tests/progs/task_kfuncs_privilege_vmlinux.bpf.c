// SPDX-License-Identifier: GPL-2.0
/*
 * Programs for the privilege cases, calling the kernel's own
 * kfuncs (in vmlinux BTF): the control group for
 * task_kfuncs_privilege.bpf.c, whose programs call the module's.
 */

#include "task_kfuncs_common.h"

char _license[] SEC("license") = "GPL";

SEC("tp_btf/task_newtask")
int BPF_PROG(priv_tp_btf_vmlinux_kfunc, struct task_struct *task, u64 clone_flags)
{
	struct task_struct *t = bpf_task_acquire(task);

	__sync_fetch_and_add(&runs, 1);
	CHECK(t);
	if (t)
		bpf_task_release(t);
	return 0;
}

SEC("syscall")
int priv_syscall_vmlinux_kfunc(void *ctx)
{
	struct task_struct *t = bpf_task_from_pid(1);

	__sync_fetch_and_add(&runs, 1);
	CHECK(t);
	if (t)
		bpf_task_release(t);
	return 0;
}
