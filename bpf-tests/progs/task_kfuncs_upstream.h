/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the kernel's own task kfunc selftests (tools/testing/selftests/bpf/
 * progs/task_kfunc_{common,success,failure}.c of 7.x) use for the shapes
 * this suite takes from them: a map value holding a task kptr beside a
 * bpf_spin_lock (the RCU-after-lock-region cases), a local object holding
 * a task kptr (bpf_obj_new/bpf_obj_drop), the ksym flavors of the acquire
 * kfunc, and the kfuncs that open and close the regions. Included by the
 * success and failure programs after task_kfuncs_common.h.
 */
#ifndef TASK_KFUNCS_UPSTREAM_H
#define TASK_KFUNCS_UPSTREAM_H

#include <bpf/bpf_core_read.h>

#define SYS_PREFIX "__x64_"

#ifndef bpf_ksym_exists
/* libbpf's (1.2+): whether a __weak ksym was resolved. */
#define bpf_ksym_exists(sym) (!!(sym))
#endif

struct task_kptr_lock_value {
	struct bpf_spin_lock lock;
	struct task_struct __kptr *task;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, int);
	__type(value, struct task_kptr_lock_value);
	__uint(max_entries, 1);
} task_kptr_lock_map SEC(".maps");

static inline struct task_kptr_lock_value *task_kptr_lock_value(void)
{
	int zero = 0;

	return bpf_map_lookup_elem(&task_kptr_lock_map, &zero);
}

/* A program-local object with a task kptr inside. */
struct task_kptr_obj {
	struct task_struct __kptr *task;
};

extern void *bpf_obj_new_impl(__u64 local_type_id, void *meta) __ksym;
extern void bpf_obj_drop_impl(void *kptr, void *meta) __ksym;
#define bpf_obj_new(type) ((type *)bpf_obj_new_impl(bpf_core_type_id_local(type), NULL))
#define bpf_obj_drop(kptr) bpf_obj_drop_impl(kptr, NULL)

extern void bpf_preempt_disable(void) __ksym;
extern void bpf_preempt_enable(void) __ksym;
/* 7.x: bpf_local_irq_save/restore (6.12 has none). */
#define HAVE_BPF_LOCAL_IRQ KERNEL_LINE_AT_LEAST(7, 0)
#if HAVE_BPF_LOCAL_IRQ
extern void bpf_local_irq_save(unsigned long *flags) __ksym;
extern void bpf_local_irq_restore(unsigned long *flags) __ksym;
#define __skip_no_irq(why)
#else
extern void bpf_local_irq_save(unsigned long *flags) __ksym __weak;
extern void bpf_local_irq_restore(unsigned long *flags) __ksym __weak;
#define __skip_no_irq(why) __skip(why)
#endif

/*
 * 7.x's verifier counts a preempt-disabled region as an RCU read section
 * (for the kptr loads in it); 6.12's does not, and refuses the shapes that
 * rely on it.
 */
#if KERNEL_LINE_AT_LEAST(7, 0)
#define __skip_no_preempt_rcu(why)
#else
#define __skip_no_preempt_rcu(why) __skip(why)
#endif

/*
 * The acquire kfunc under ksym flavors: libbpf resolves `name___flavor` to
 * `name` when the prototypes are compatible (___one), and to nothing when
 * they are not (___two), in module BTF as in vmlinux BTF.
 */
#ifndef TASK_KFUNCS_C
extern struct task_struct *rust_task_acquire___one(struct task_struct *task) __ksym __weak;
extern struct task_struct *rust_task_acquire___two(struct task_struct *task, int *ctx) __ksym __weak;
#define task_acquire___one rust_task_acquire___one
#define task_acquire___two rust_task_acquire___two
#else
extern struct task_struct *bpf_task_acquire___one(struct task_struct *task) __ksym __weak;
extern struct task_struct *bpf_task_acquire___two(struct task_struct *task, int *ctx) __ksym __weak;
#define task_acquire___one bpf_task_acquire___one
#define task_acquire___two bpf_task_acquire___two
#endif

#endif /* TASK_KFUNCS_UPSTREAM_H */
