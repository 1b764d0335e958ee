/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared by the task_kfuncs selftest programs: the kfunc declarations, the
 * map that stores task kptrs and tiny helpers, in the style of the kernel's
 * tools/testing/selftests/bpf/progs/task_kfunc_common.h.
 *
 * Built twice: normally against the Rust kfuncs of task_kfuncs.ko, and with
 * -DTASK_KFUNCS_C against the kernel's own C kfuncs wherever the contract is
 * the same, to prove the suite tests the contract and not our implementation.
 */

#ifndef _TASK_KFUNCS_COMMON_H
#define _TASK_KFUNCS_COMMON_H

#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "selftest.h"

#define EINVAL 22
#define ENOENT 2
#define EEXIST 17
#define INT_MAX 0x7fffffff
#define INT_MIN (-INT_MAX - 1)

/* The kernel's own task kfuncs (kernel/bpf/helpers.c): the interop cases. */
extern struct task_struct *bpf_task_acquire(struct task_struct *p) __ksym;
extern void bpf_task_release(struct task_struct *p) __ksym;
extern struct task_struct *bpf_task_from_pid(s32 pid) __ksym;
extern void bpf_rcu_read_lock(void) __ksym;
extern void bpf_rcu_read_unlock(void) __ksym;

#ifndef TASK_KFUNCS_C
/* task_kfuncs.ko: the kfuncs under test, declared from its BTF (btfgen --header). */
#include "task_kfuncs.kfuncs.h"
#define KF_ACQUIRE_NAME "rust_task_acquire"
#define KF_RELEASE_NAME "rust_task_release"
#define KF_KPTR_GET_NAME "rust_task_kptr_get"
#define KF_FROM_PID_NAME "rust_task_from_pid"
#define KF_FROM_VPID_NAME "rust_task_from_vpid"
#else
/*
 * The kernel's C kfuncs with the same contract. bpf_task_acquire is
 * KF_ACQUIRE | KF_RCU | KF_RET_NULL: exactly the contract of
 * rust_task_acquire and of rust_task_kptr_get. 6.12 has
 * no bpf_task_from_vpid: the cases that need it carry __c_skip() and are
 * never loaded, so the weak declaration below only has to compile.
 */
#define rust_task_acquire bpf_task_acquire
#define rust_task_release bpf_task_release
#define rust_task_kptr_get bpf_task_acquire
#define rust_task_from_pid bpf_task_from_pid
extern struct task_struct *rust_task_from_vpid(s32 vpid) __ksym __weak;
#define KF_ACQUIRE_NAME "bpf_task_acquire"
#define KF_RELEASE_NAME "bpf_task_release"
#define KF_KPTR_GET_NAME "bpf_task_acquire"
#define KF_FROM_PID_NAME "bpf_task_from_pid"
#define KF_FROM_VPID_NAME "rust_task_from_vpid"
#endif

#include "task_kfuncs_slot.h"

/*
 * Take a reference on @p with rust_task_acquire() and move it into the slot.
 * Returns 0, or a positive error code for the program's verdict.
 */
static inline int task_slot_store(struct task_struct *p)
{
	struct task_struct *acquired, *old;
	struct task_slot *slot;

	slot = task_slot();
	if (!slot)
		return ENOENT;

	acquired = rust_task_acquire(p);
	if (!acquired)
		return EINVAL;

	old = bpf_kptr_xchg(&slot->task, acquired);
	if (old) {
		rust_task_release(old);
		return EEXIST;
	}

	return 0;
}

/* rcu_users of a task, the counter every reference above lives on. */
static inline int task_rcu_users(const struct task_struct *p)
{
	return p->rcu_users.refs.counter;
}

#endif /* _TASK_KFUNCS_COMMON_H */
