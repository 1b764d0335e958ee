// SPDX-License-Identifier: GPL-2.0
/*
 * Stress programs: the task kfuncs from every context at once on an SMP
 * guest, with per-CPU counters that let the runner (src/suites/stress.rs)
 * prove that every reference taken was dropped again.
 *
 *   tp_btf/task_newtask         acquire the new task, bpf_kptr_xchg() it into
 *                               a random slot, release the old one with the
 *                               Rust or the kernel's release, alternately;
 *   tp_btf/sched_process_exit   from_pid of the exiting task, and kptr_get of
 *                               a random slot under bpf_rcu_read_lock();
 *   tp_btf/sched_switch         from_vpid (also from exiting threads, whose
 *                               pid namespace is gone) and kptr_get;
 *   tp_btf/sched_process_free   acquire must return NULL: the task is past
 *                               its last rcu_users; a non-NULL is counted as
 *                               a violation;
 *   syscall stress_mix          run by several threads at once with
 *                               BPF_PROG_TEST_RUN: every operation above on
 *                               random and real pids.
 *
 * Counting rule: every non-NULL return of acquire, kptr_get, from_pid and
 * from_vpid is one reference taken (C_*_OK); every release, Rust or C, is
 * one dropped (C_RELEASE_*). References parked in the slots are dropped by
 * the `drain` program at the end, which counts its releases the same way,
 * so after a drain taken == dropped must hold exactly.
 *
 * The programs call both families (Rust and the kernel's) on purpose.
 */

#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char _license[] SEC("license") = "GPL";

#include "task_kfuncs.kfuncs.h"
extern void bpf_task_release(struct task_struct *p) __ksym;
extern void bpf_rcu_read_lock(void) __ksym;
extern void bpf_rcu_read_unlock(void) __ksym;

/* Counter indices; src/suites/stress.rs has the same list. */
enum counter {
	C_ACQUIRE,		/* rust_task_acquire calls */
	C_ACQUIRE_OK,		/* ...that returned a task */
	C_KPTR_GET,
	C_KPTR_GET_OK,
	C_FROM_PID,
	C_FROM_PID_OK,
	C_FROM_VPID,
	C_FROM_VPID_OK,
	C_RELEASE_RUST,		/* rust_task_release calls */
	C_RELEASE_C,		/* bpf_task_release calls */
	C_FREE_ACQUIRE,		/* acquire in sched_process_free */
	C_FREE_VIOLATION,	/* ...that returned a task: must stay 0 */
	C_STORED,		/* references moved into a slot */
	C_DRAINED,		/* references taken out of a slot by drain */
	C_MIX_RUNS,		/* stress_mix iterations */
	C_SWITCH_NO_NS,		/* sched_switch with no pid namespace */
	NR_COUNTERS,
};

struct counters {
	u64 c[NR_COUNTERS];
};

/* Puts enum counter into the object's BTF, where a host test compares it. */
const volatile enum counter nr_counters = NR_COUNTERS;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, u32);
	__type(value, struct counters);
	__uint(max_entries, 1);
} counts SEC(".maps");

#define NR_TASK_SLOTS 64
#include "task_kfuncs_slot.h"

/* Real pids the runner wants hit (sentinels, churn workers); 0 = unused. */
#define NR_PIDS 64
s32 pids[NR_PIDS];

/* Set by the runner. */
volatile u32 enabled = 1;	/* the tracing programs act only while set */
u32 mix_iters = 100;		/* stress_mix iterations per run */
s32 pid_range = 4096;		/* random pids are drawn from [-8, pid_range) */
s32 read_pid;			/* read_rcu_users: the task */

/* Written by the programs. */
volatile s64 inflight;		/* tracing programs inside their body */
s32 rcu_users_read = -1;	/* read_rcu_users*: rcu_users without our ref */

static __always_inline void count(enum counter i)
{
	u32 zero = 0;
	struct counters *c = bpf_map_lookup_elem(&counts, &zero);

	/*
	 * Per-CPU, but atomic all the same: a preemptible program may be
	 * interrupted by another one on the same CPU.
	 */
	if (c && i < NR_COUNTERS)
		__sync_fetch_and_add(&c->c[i], 1);
}

/* Counts a call and, when it returned a task, a reference taken. */
#define COUNTED(call, expr)						\
	({								\
		struct task_struct *__t = (expr);			\
		count(call);						\
		if (__t)						\
			count(call + 1);				\
		__t;							\
	})

/* Releases with the Rust or the kernel's kfunc, as @which says. */
static __always_inline void release(struct task_struct *t, u32 which)
{
	if (which & 1) {
		count(C_RELEASE_RUST);
		rust_task_release(t);
	} else {
		count(C_RELEASE_C);
		bpf_task_release(t);
	}
}

/* Moves the reference @t into a random slot and releases what it held. */
static __always_inline void store(struct task_struct *t, u32 r)
{
	struct task_slot *v = task_slot_at(r % NR_TASK_SLOTS);
	struct task_struct *old;

	if (!v) {
		release(t, r >> 8);
		return;
	}
	count(C_STORED);
	old = bpf_kptr_xchg(&v->task, t);
	if (old)
		release(old, r >> 8);
}

/* kptr_get of a random slot's task under RCU, then release. */
static __always_inline void get_slot(u32 r)
{
	struct task_slot *v = task_slot_at(r % NR_TASK_SLOTS);
	struct task_struct *t;

	if (!v)
		return;
	bpf_rcu_read_lock();
	t = v->task;
	if (t)
		t = COUNTED(C_KPTR_GET, rust_task_kptr_get(t));
	bpf_rcu_read_unlock();
	if (t)
		release(t, r >> 9);
}

/* A pid from the runner's list, or 0. */
static __always_inline s32 real_pid(u32 r)
{
	u32 i = r % NR_PIDS;

	return i < NR_PIDS ? pids[i] : 0;
}

/* A random pid, including invalid ones (negative, 0, unused). */
static __always_inline s32 random_pid(u32 r)
{
	return (s32)(r % (u32)(pid_range + 8)) - 8;
}

/*
 * Entry and exit of every tracing program. The runner runs `quiesce` until
 * it returns 0: a program that entered before `enabled` was cleared is
 * counted in `inflight`, one that enters after does nothing. Both sides
 * order their store before their load with an atomic operation (a full
 * barrier on x86).
 */
#define ENTER()								\
	__sync_fetch_and_add(&inflight, 1);				\
	if (!enabled)							\
		goto out
#define LEAVE()								\
out:									\
	__sync_fetch_and_add(&inflight, -1);				\
	return 0

SEC("tp_btf/task_newtask")
int BPF_PROG(stress_newtask, struct task_struct *task, u64 clone_flags)
{
	struct task_struct *t;
	u32 r = bpf_get_prandom_u32();

	ENTER();
	t = COUNTED(C_ACQUIRE, rust_task_acquire(task));
	if (t)
		store(t, r);
	LEAVE();
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(stress_exit, struct task_struct *task)
{
	struct task_struct *t;
	u32 r = bpf_get_prandom_u32();

	ENTER();
	t = COUNTED(C_FROM_PID, rust_task_from_pid(task->pid));
	if (t)
		release(t, r);
	get_slot(r >> 3);
	LEAVE();
}

SEC("tp_btf/sched_switch")
int BPF_PROG(stress_switch, bool preempt, struct task_struct *prev,
	     struct task_struct *next, unsigned int prev_state)
{
	struct task_struct *cur = bpf_get_current_task_btf(), *t;
	u32 r = bpf_get_prandom_u32();

	ENTER();
	/* A thread that reaped itself has no pid (and so no namespace). */
	if (!cur->thread_pid)
		count(C_SWITCH_NO_NS);
	t = COUNTED(C_FROM_VPID, rust_task_from_vpid(r & 1 ? 1 : prev->tgid));
	if (t)
		release(t, r);
	get_slot(r >> 3);
	LEAVE();
}

SEC("tp_btf/sched_process_free")
int BPF_PROG(stress_free, struct task_struct *task)
{
	struct task_struct *t;

	ENTER();
	count(C_FREE_ACQUIRE);
	t = rust_task_acquire(task);
	if (t) {
		/* Counted as taken, so that the balance still holds. */
		count(C_FREE_VIOLATION);
		count(C_ACQUIRE);
		count(C_ACQUIRE_OK);
		release(t, 1);
	}
	LEAVE();
}

/*
 * Every operation, chosen at random, mix_iters times: lookups of random and
 * real pids (Rust from_pid, from_vpid), acquire of current, references moved
 * into slots and back out, kptr_get of slots, both releases.
 */
SEC("syscall")
int stress_mix(void *ctx)
{
	struct task_struct *t;
	u32 i;

	bpf_for(i, 0, mix_iters) {
		u32 r = bpf_get_prandom_u32();

		count(C_MIX_RUNS);
		switch (r & 7) {
		case 0:
			t = COUNTED(C_FROM_PID, rust_task_from_pid(random_pid(r >> 3)));
			if (t)
				release(t, r >> 20);
			break;
		case 1:
			t = COUNTED(C_FROM_PID, rust_task_from_pid(real_pid(r >> 3)));
			if (t) {
				if (r & (1 << 20))
					store(t, r >> 10);
				else
					release(t, r >> 21);
			}
			break;
		case 2:
			t = COUNTED(C_FROM_VPID, rust_task_from_vpid(r & 8 ? real_pid(r >> 4) : random_pid(r >> 4)));
			if (t)
				release(t, r >> 20);
			break;
		case 3:
			t = COUNTED(C_ACQUIRE, rust_task_acquire(bpf_get_current_task_btf()));
			if (t)
				store(t, r >> 3);
			break;
		case 4:
		case 5:
			get_slot(r >> 3);
			break;
		case 6: {
			/* Empty a slot. */
			struct task_slot *v = task_slot_at((r >> 3) % NR_TASK_SLOTS);

			if (v) {
				t = bpf_kptr_xchg(&v->task, NULL);
				if (t) {
					count(C_DRAINED);
					release(t, r >> 20);
				}
			}
			break;
		}
		default:
			t = COUNTED(C_FROM_VPID, rust_task_from_vpid(1));
			if (t)
				release(t, r >> 20);
			break;
		}
	}
	return 0;
}

/* Takes every reference out of the slots and releases it. */
SEC("syscall")
int drain(void *ctx)
{
	struct task_struct *t;
	u32 i;

	bpf_for(i, 0, NR_TASK_SLOTS) {
		struct task_slot *v = task_slot_at(i);

		if (!v)
			continue;
		t = bpf_kptr_xchg(&v->task, NULL);
		if (t) {
			count(C_DRAINED);
			release(t, i);
		}
	}
	return 0;
}

/* rcu_users of read_pid, without the reference taken to read it (Rust). */
SEC("syscall")
int read_rcu_users(void *ctx)
{
	struct task_struct *t;

	rcu_users_read = -1;
	t = COUNTED(C_FROM_PID, rust_task_from_pid(read_pid));
	if (!t)
		return 1;
	rcu_users_read = t->rcu_users.refs.counter - 1;
	release(t, 1);
	return 0;
}

/* Stops the tracing programs; returns how many are still inside. */
SEC("syscall")
int quiesce(void *ctx)
{
	enabled = 0;
	return __sync_fetch_and_add(&inflight, 0);
}
