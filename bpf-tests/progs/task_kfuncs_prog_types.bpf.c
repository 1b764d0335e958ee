// SPDX-License-Identifier: GPL-2.0
/*
 * The program-type matrix (issue 7 §3): the same body, a from_pid(1) lookup
 * and its release, in one program per BPF program type. The types the
 * module admits (src/kfuncs.rs ADMITTED: tracing, classic tracepoint, LSM,
 * struct_ops, syscall) must load and, where the runner can trigger them,
 * find init; every other type must be rejected with the verifier's message.
 * struct_ops is the sched_ext scheduler of task_kfuncs_scx.bpf.c.
 *
 * The matrix is this module's decision: the kernel's C kfuncs are
 * registered differently (PERF_EVENT, TC and XDP programs may call
 * bpf_task_from_pid), so the C-kfunc build skips it.
 */

#include "task_kfuncs_common.h"

char _license[] SEC("license") = "GPL";

#define SKIP_C __c_skip("the program-type matrix is task_kfuncs' own registration")
#define NOT_ALLOWED "calling kernel function " KF_FROM_PID_NAME " is not allowed"

/* Read by the runner: times from_pid(1) found init. */
int hits;

static __always_inline void find_init(void)
{
	struct task_struct *init = rust_task_from_pid(1);

	if (!init)
		return;
	if (init->pid == 1)
		__sync_fetch_and_add(&hits, 1);
	rust_task_release(init);
}

SEC("tp_btf/task_newtask")
SKIP_C
int BPF_PROG(type_tp_btf, struct task_struct *task, u64 clone_flags)
{
	find_init();
	return 0;
}

SEC("fentry/wake_up_new_task")
SKIP_C
int BPF_PROG(type_fentry, struct task_struct *p)
{
	find_init();
	return 0;
}

SEC("fexit/wake_up_new_task")
SKIP_C
int BPF_PROG(type_fexit, struct task_struct *p)
{
	find_init();
	return 0;
}

SEC("iter/task")
SKIP_C
int type_iter(struct bpf_iter__task *ctx)
{
	if (ctx->task)
		find_init();
	return 0;
}

SEC("tracepoint/sched/sched_process_fork")
SKIP_C
int type_tracepoint(void *ctx)
{
	find_init();
	return 0;
}

SEC("lsm/task_alloc")
SKIP_C
int BPF_PROG(type_lsm, struct task_struct *task, unsigned long clone_flags)
{
	find_init();
	return 0;
}

SEC("syscall")
SKIP_C
int type_syscall(void *ctx)
{
	find_init();
	return 0;
}

/*
 * PERF_EVENT shares the TRACING kfunc hook; the module's filter refuses it:
 * a perf_event program runs in NMI, where call_rcu() (the last
 * rcu_users put) is illegal.
 */
SEC("perf_event")
SKIP_C __failure __msg(NOT_ALLOWED)
int type_perf_event(struct bpf_perf_event_data *ctx)
{
	find_init();
	return 0;
}

SEC("kprobe/wake_up_new_task")
SKIP_C __failure __msg(NOT_ALLOWED)
int type_kprobe(struct pt_regs *ctx)
{
	find_init();
	return 0;
}

/*
 * A raw tracepoint reaches the kfunc hook of tracing programs from 7.x on,
 * where the module's filter admits it (as the kernel's own task kfuncs are
 * callable there); 6.12 maps it to no kfunc hook at all.
 */
SEC("raw_tp/sched_process_fork")
#if KERNEL_LINE_AT_LEAST(7, 0)
SKIP_C
#else
SKIP_C __failure __msg(NOT_ALLOWED)
#endif
int type_raw_tp(struct bpf_raw_tracepoint_args *ctx)
{
	find_init();
	return 0;
}

SEC("socket")
SKIP_C __failure __msg(NOT_ALLOWED)
int type_socket_filter(struct __sk_buff *skb)
{
	find_init();
	return 0;
}

SEC("tc")
SKIP_C __failure __msg(NOT_ALLOWED)
int type_tc(struct __sk_buff *skb)
{
	find_init();
	return 0;
}

SEC("xdp")
SKIP_C __failure __msg(NOT_ALLOWED)
int type_xdp(struct xdp_md *ctx)
{
	find_init();
	return 0;
}
