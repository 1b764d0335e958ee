// SPDX-License-Identifier: GPL-2.0
/*
 * The program-type matrix: the same body, a from_pid(1) lookup and its
 * release, in one program per BPF program type. The types the module admits
 * (src/kfuncs.rs: tracing, classic tracepoint, LSM, struct_ops, syscall) must
 * load and, triggered as their section says, find init; every other type
 * must be rejected with the verifier's message. struct_ops is the sched_ext
 * scheduler of task_kfuncs_scx.bpf.c.
 *
 * The matrix is this module's decision, so it is built against the Rust
 * kfuncs only: the kernel's C kfuncs are registered differently
 * (PERF_EVENT, TC and XDP programs may call bpf_task_from_pid).
 */

#include "task_kfuncs_common.h"

char _license[] SEC("license") = "GPL";

#define NOT_ALLOWED "calling kernel function " KF_FROM_PID_NAME " is not allowed"

static __always_inline void find_init(void)
{
	struct task_struct *init = rust_task_from_pid(1);

	__sync_fetch_and_add(&runs, 1);
	CHECK(init);
	if (!init)
		return;
	CHECK(init->pid == 1);
	rust_task_release(init);
}

/* One program of the matrix: a tracing one (BPF_PROG arguments), or not. */
#define TRACING_TYPE(sec, name, args...)				\
	SEC(sec) int BPF_PROG(name, args) { find_init(); return 0; }
#define TYPE(sec, name, ctx)						\
	SEC(sec) int name(ctx) { find_init(); return 0; }
/* A type the module refuses: the verifier must say so. */
#define REFUSED(sec, name, ctx) __failure __msg(NOT_ALLOWED) TYPE(sec, name, ctx)

TRACING_TYPE("tp_btf/task_newtask", type_tp_btf, struct task_struct *task, u64 clone_flags)
TRACING_TYPE("fentry/wake_up_new_task", type_fentry, struct task_struct *p)
TRACING_TYPE("fexit/wake_up_new_task", type_fexit, struct task_struct *p)
TRACING_TYPE("lsm/task_alloc", type_lsm, struct task_struct *task, unsigned long clone_flags)
TYPE("tracepoint/sched/sched_process_fork", type_tracepoint, void *ctx)
TYPE("syscall", type_syscall, void *ctx)

SEC("iter/task")
int type_iter(struct bpf_iter__task *ctx)
{
	if (ctx->task)
		find_init();
	return 0;
}

/*
 * PERF_EVENT shares the TRACING kfunc hook; the module's filter refuses it:
 * a perf_event program runs in NMI, where call_rcu() (the last
 * rcu_users put) is illegal.
 */
REFUSED("perf_event", type_perf_event, struct bpf_perf_event_data *ctx)
REFUSED("kprobe/wake_up_new_task", type_kprobe, struct pt_regs *ctx)
/*
 * A raw tracepoint reaches the kfunc hook of tracing programs from 7.x on,
 * where the module's filter admits it (as the kernel's own task kfuncs are
 * callable there); 6.12 maps it to no kfunc hook at all.
 */
#if KERNEL_LINE_AT_LEAST(7, 0)
TYPE("raw_tp/sched_process_fork", type_raw_tp, struct bpf_raw_tracepoint_args *ctx)
#else
REFUSED("raw_tp/sched_process_fork", type_raw_tp, struct bpf_raw_tracepoint_args *ctx)
#endif
REFUSED("socket", type_socket_filter, struct __sk_buff *skb)
REFUSED("tc", type_tc, struct __sk_buff *skb)
REFUSED("xdp", type_xdp, struct xdp_md *ctx)
