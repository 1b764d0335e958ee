// SPDX-License-Identifier: GPL-2.0
/*
 * Benchmark: the Rust task kfuncs against the kernel's own C kfuncs.
 *
 * Each syscall program runs one operation `iters` times in an open-coded
 * loop and records the elapsed time in its caller's slot (the context
 * carries the slot, so that one thread per vCPU can run a program at the
 * same time); the runner (src/bench.rs) calls them with BPF_PROG_TEST_RUN,
 * alternating Rust and C, and `cargo xtask bench` turns the rounds into
 * ratios. The "empty" program measures the loop itself, which is
 * subtracted.
 */

#include <vmlinux.h>
#include <bpf/bpf_helpers.h>

extern struct task_struct *bpf_task_acquire(struct task_struct *p) __ksym;
extern void bpf_task_release(struct task_struct *p) __ksym;
extern struct task_struct *bpf_task_from_pid(s32 pid) __ksym;
#if TASK_KFUNCS_KERNEL_MAJOR >= 7
extern struct task_struct *bpf_task_from_vpid(s32 vpid) __ksym;
#endif
extern void bpf_rcu_read_lock(void) __ksym;
extern void bpf_rcu_read_unlock(void) __ksym;
extern struct task_struct *rust_task_acquire(struct task_struct *p) __ksym;
extern void rust_task_release(struct task_struct *p) __ksym;
extern struct task_struct *rust_task_kptr_get(struct task_struct *p) __ksym;
extern struct task_struct *rust_task_from_pid(s32 pid) __ksym;
extern struct task_struct *rust_task_from_vpid(s32 vpid) __ksym;

char _license[] SEC("license") = "GPL";

#define MAX_SLOTS 64

/* BPF_PROG_TEST_RUN's context: which result slot this run writes. */
struct bench_args {
	u32 slot;
};

/* Set by the runner before loading. */
u32 iters = 1000;
s32 pid;		/* the runner's own pid */
s32 missing_pid;	/* a positive pid no task has */

/* Results of the last run, per slot. */
u64 elapsed_ns[MAX_SLOTS];
u64 misses[MAX_SLOTS];

/* One referenced task kptr (the runner's), for the kptr_get case. */
#include "task_kfuncs_slot.h"

/* Stores a reference to the current task in task_slots (run once). */
SEC("syscall")
int bench_store_kptr(void *ctx)
{
	struct task_slot *v = task_slot();
	struct task_struct *t, *old;

	if (!v)
		return 1;
	t = bpf_task_acquire(bpf_get_current_task_btf());
	if (!t)
		return 2;
	old = bpf_kptr_xchg(&v->task, t);
	if (old)
		bpf_task_release(old);
	return 0;
}

SEC("syscall")
int bench_empty(struct bench_args *args)
{
	u32 slot = args->slot;
	u64 t0, n = 0;
	int i;

	if (slot >= MAX_SLOTS)
		return 1;
	t0 = bpf_ktime_get_ns();
	bpf_for(i, 0, iters)
		n += 0;
	elapsed_ns[slot] = bpf_ktime_get_ns() - t0;
	misses[slot] = n;
	return 0;
}

/*
 * One benchmark program: `get` (an expression yielding a referenced task or
 * NULL; it may use `cur`, the current task, and `src`, a scratch pointer)
 * then `put` on it, `iters` times. `lock`/`unlock` bracket the loop: the
 * RCU read section that RCU pointers (kptrs, group_leader) need.
 */
#define BENCH_LOCKED(name, lock, unlock, get, put)			\
SEC("syscall")								\
int name(struct bench_args *args)					\
{									\
	struct task_struct *cur = bpf_get_current_task_btf(), *t, *src;	\
	struct task_slot *v = task_slot();				\
	u32 slot = args->slot;						\
	u64 t0, miss = 0;						\
	int i;								\
									\
	if (slot >= MAX_SLOTS || !v)					\
		return 1;						\
	t0 = bpf_ktime_get_ns();					\
	lock;								\
	bpf_for(i, 0, iters) {						\
		t = get;						\
		if (!t) {						\
			miss++;						\
			continue;					\
		}							\
		put(t);							\
	}								\
	unlock;								\
	elapsed_ns[slot] = bpf_ktime_get_ns() - t0;			\
	misses[slot] = miss;						\
	(void)cur;							\
	(void)src;							\
	(void)v;							\
	return 0;							\
}

#define BENCH(name, get, put) BENCH_LOCKED(name, , , get, put)
#define BENCH_RCU(name, get, put) \
	BENCH_LOCKED(name, bpf_rcu_read_lock(), bpf_rcu_read_unlock(), get, put)

/* acquire+release of a trusted pointer (the current task). */
BENCH(bench_rust_acquire_release, rust_task_acquire(cur), rust_task_release)
BENCH(bench_c_acquire_release, bpf_task_acquire(cur), bpf_task_release)

/*
 * acquire+release of an RCU kptr read from a map value. 6.12's C twin of
 * rust_task_kptr_get is bpf_task_acquire, which is KF_RCU there.
 */
BENCH_RCU(bench_rust_kptr_get_release,
	  (src = v->task) ? rust_task_kptr_get(src) : NULL, rust_task_release)
BENCH_RCU(bench_c_kptr_get_release,
	  (src = v->task) ? bpf_task_acquire(src) : NULL, bpf_task_release)

/* from_pid+release: the runner itself, and a pid no task has. */
BENCH(bench_rust_from_pid, rust_task_from_pid(pid), rust_task_release)
BENCH(bench_c_from_pid, bpf_task_from_pid(pid), bpf_task_release)
BENCH(bench_rust_from_pid_missing, rust_task_from_pid(missing_pid), rust_task_release)
BENCH(bench_c_from_pid_missing, bpf_task_from_pid(missing_pid), bpf_task_release)

/* from_vpid: against C's bpf_task_from_vpid on 7.x; 6.12 has none, so C's from_pid. */
BENCH(bench_rust_from_vpid, rust_task_from_vpid(pid), rust_task_release)
#if TASK_KFUNCS_KERNEL_MAJOR >= 7
BENCH(bench_c_from_vpid, bpf_task_from_vpid(pid), bpf_task_release)
#endif

/*
 * Contention: every vCPU runs one of these at once, on the same task (the
 * runner's thread group leader, so the same task_struct::rcu_users cache
 * line). group_leader is an RCU pointer: KF_RCU kfuncs take it, so Rust uses
 * kptr_get (the same code as rust_task_acquire) and C bpf_task_acquire.
 */
BENCH_RCU(bench_rust_contended,
	  (src = cur->group_leader) ? rust_task_kptr_get(src) : NULL, rust_task_release)
BENCH_RCU(bench_c_contended,
	  (src = cur->group_leader) ? bpf_task_acquire(src) : NULL, bpf_task_release)
