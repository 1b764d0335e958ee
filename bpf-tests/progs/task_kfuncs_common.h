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

/*
 * The kernel line the programs are built for: bpf-tests/build.rs passes
 * TASK_KFUNCS_KERNEL_MAJOR and _MINOR from the kernel's release.
 */
#define KERNEL_LINE_AT_LEAST(major, minor) \
	(TASK_KFUNCS_KERNEL_MAJOR > (major) || \
	 (TASK_KFUNCS_KERNEL_MAJOR == (major) && TASK_KFUNCS_KERNEL_MINOR >= (minor)))

#define EINVAL 22
#define ENOENT 2
#define EEXIST 17
#define INT_MAX 0x7fffffff
#define INT_MIN (-INT_MAX - 1)

/* The kernel's own task kfuncs (kernel/bpf/helpers.c): the interop cases. */
extern struct task_struct *bpf_task_acquire(struct task_struct *p) __ksym;
extern void bpf_task_release(struct task_struct *p) __ksym;
extern struct task_struct *bpf_task_from_pid(s32 pid) __ksym;
/* 7.x: the C twin of rust_task_from_vpid (6.12 has none). */
#define HAVE_BPF_TASK_FROM_VPID KERNEL_LINE_AT_LEAST(7, 0)
#if HAVE_BPF_TASK_FROM_VPID
extern struct task_struct *bpf_task_from_vpid(s32 vpid) __ksym;
/* In the C-kfunc build, skipped only where the kernel has no C twin. */
#define __c_skip_no_vpid(why)
#else
#define __c_skip_no_vpid(why) __c_skip(why)
#endif
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
 * rust_task_acquire and of rust_task_kptr_get. 7.x has bpf_task_from_vpid,
 * which returns NULL when current has no pid namespace, as
 * rust_task_from_vpid does. 6.12 has none: the cases that need it carry
 * __c_skip_no_vpid() and are never loaded there, so the weak declaration
 * only has to compile.
 */
#define rust_task_acquire bpf_task_acquire
#define rust_task_release bpf_task_release
#define rust_task_kptr_get bpf_task_acquire
#define rust_task_from_pid bpf_task_from_pid
#define KF_ACQUIRE_NAME "bpf_task_acquire"
#define KF_RELEASE_NAME "bpf_task_release"
#define KF_KPTR_GET_NAME "bpf_task_acquire"
#define KF_FROM_PID_NAME "bpf_task_from_pid"
#if HAVE_BPF_TASK_FROM_VPID
#define rust_task_from_vpid bpf_task_from_vpid
#define KF_FROM_VPID_NAME "bpf_task_from_vpid"
#else
extern struct task_struct *rust_task_from_vpid(s32 vpid) __ksym __weak;
#define KF_FROM_VPID_NAME "rust_task_from_vpid"
#endif
#endif

/*
 * The verifier's messages the rejection cases assert, in the wording of the
 * line the programs run on: 7.x names the register (R1) where 6.12 named the
 * kfunc argument (arg0), and reports a release of a pointer it does not
 * track as referenced in one message.
 */
#if KERNEL_LINE_AT_LEAST(7, 0)
#define MSG_NULL_TRUSTED "Possibly NULL pointer passed to trusted R1"
#define MSG_ACQUIRE_STACK "R1 is fp expected STRUCT task_struct"
#define MSG_RELEASE_STACK "release kfunc " KF_RELEASE_NAME " expects referenced PTR_TO_BTF_ID passed to R1"
#define MSG_RELEASE_UNREFERENCED "release kfunc " KF_RELEASE_NAME " expects referenced PTR_TO_BTF_ID passed to R1"
#define MSG_RELEASE_IN_MAP "release kfunc " KF_RELEASE_NAME " expects referenced PTR_TO_BTF_ID passed to R1"
#define MSG_DOUBLE_RELEASE MSG_RELEASE_UNREFERENCED
#define MSG_DEREF_MAYBE_NULL "R0 invalid mem access 'trusted_ptr_or_null_'"
#else
#define MSG_NULL_TRUSTED "Possibly NULL pointer passed to trusted arg0"
#define MSG_ACQUIRE_STACK "arg#0 pointer type STRUCT task_struct must point"
#define MSG_RELEASE_STACK "arg#0 pointer type STRUCT task_struct must point"
#define MSG_RELEASE_UNREFERENCED "release kernel function " KF_RELEASE_NAME " expects refcounted PTR_TO_BTF_ID"
#define MSG_RELEASE_IN_MAP "R1 must be referenced or trusted"
#define MSG_DOUBLE_RELEASE "arg#0 pointer type STRUCT task_struct must point"
#define MSG_DEREF_MAYBE_NULL "R0 invalid mem access 'ptr_or_null_'"
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
