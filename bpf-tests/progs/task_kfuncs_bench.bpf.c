// SPDX-License-Identifier: GPL-2.0
/*
 * Benchmark: the Rust task kfuncs against the kernel's own C kfuncs.
 *
 * Each syscall program runs one operation `iters` times in an open-coded
 * loop and records the elapsed time; the runner (src/bench.rs) calls them
 * with BPF_PROG_TEST_RUN, alternating Rust and C, and prints the ratios.
 * The "empty" program measures the loop itself, which is subtracted.
 */

#include <vmlinux.h>
#include <bpf/bpf_helpers.h>

extern struct task_struct *bpf_task_acquire(struct task_struct *p) __ksym;
extern void bpf_task_release(struct task_struct *p) __ksym;
extern struct task_struct *bpf_task_from_pid(s32 pid) __ksym;
extern struct task_struct *rust_task_acquire(struct task_struct *p) __ksym;
extern void rust_task_release(struct task_struct *p) __ksym;
extern struct task_struct *rust_task_from_pid(s32 pid) __ksym;

char _license[] SEC("license") = "GPL";

/* Set by the runner before each run. */
u32 iters = 1000;
s32 pid;

/* Results of the last run. */
u64 elapsed_ns;
u64 misses;

SEC("syscall")
int bench_empty(void *ctx)
{
	u64 t0 = bpf_ktime_get_ns();
	int i;

	bpf_for(i, 0, iters)
		misses += 0;
	elapsed_ns = bpf_ktime_get_ns() - t0;
	return 0;
}

/*
 * One benchmark program: `get` (an expression yielding a referenced task or
 * NULL) then `put` on it, `iters` times.
 */
#define BENCH(name, get, put)					\
SEC("syscall")							\
int name(void *ctx)						\
{								\
	struct task_struct *cur = bpf_get_current_task_btf(), *t;	\
	u64 t0 = bpf_ktime_get_ns();				\
	int i;							\
								\
	misses = 0;						\
	bpf_for(i, 0, iters) {					\
		t = get;					\
		if (!t) {					\
			misses++;				\
			continue;				\
		}						\
		put(t);						\
	}							\
	elapsed_ns = bpf_ktime_get_ns() - t0;			\
	(void)cur;						\
	return 0;						\
}

BENCH(bench_rust_acquire_release, rust_task_acquire(cur), rust_task_release)
BENCH(bench_c_acquire_release, bpf_task_acquire(cur), bpf_task_release)
BENCH(bench_rust_from_pid, rust_task_from_pid(pid), rust_task_release)
BENCH(bench_c_from_pid, bpf_task_from_pid(pid), bpf_task_release)
