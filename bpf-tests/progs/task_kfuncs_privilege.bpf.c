// SPDX-License-Identifier: GPL-2.0
/*
 * Programs for the privilege cases. The runner loads them with only some
 * capabilities in its effective set. Built twice (build.rs): calling the
 * module's kfuncs (task_kfuncs' BTF) and, with -DTASK_KFUNCS_C, the kernel's
 * own (vmlinux BTF), in two objects: libbpf resolves every extern of an
 * object before it loads any program, so one unresolvable module kfunc
 * would fail them all. Together they show where the boundary is: module
 * BTF, which only CAP_SYS_ADMIN can open by id.
 */

#include "task_kfuncs_common.h"

char _license[] SEC("license") = "GPL";

SEC("tp_btf/task_newtask")
int BPF_PROG(priv_tp_btf, struct task_struct *task, u64 clone_flags)
{
	struct task_struct *t = rust_task_acquire(task);

	__sync_fetch_and_add(&runs, 1);
	CHECK(t);
	if (t)
		rust_task_release(t);
	return 0;
}

SEC("syscall")
int priv_syscall(void *ctx)
{
	struct task_struct *t = rust_task_from_pid(1);

	__sync_fetch_and_add(&runs, 1);
	CHECK(t);
	if (t)
		rust_task_release(t);
	return 0;
}
