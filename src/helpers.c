// SPDX-License-Identifier: GPL-2.0
/*
 * The kernel's static inline functions that the Rust side of task_kfuncs
 * calls, under names Rust can bind to. Each wrapper is the kernel's own
 * inline function and nothing else, so refcount_t keeps its one
 * implementation (saturation and its WARN included) and RCU its own
 * (rcu_read_lock() is __rcu_read_lock() plus the lockdep annotations that
 * PROVE_RCU checks, exactly as for a C caller).
 *
 * This file is not compiled to a separate object: Kbuild compiles it to
 * LLVM bitcode with the clang of rustc's LLVM, links it into the Rust
 * crate's bitcode with the wrappers made internal, and compiles the whole,
 * so LLVM inlines the wrappers into the kfuncs as clang inlines the same
 * functions into kernel/bpf/helpers.c. __always_inline is needed because
 * LLVM otherwise refuses to inline across the two front ends' function
 * attributes (clang's target-features string and null_pointer_is_valid,
 * which Rust does not set): the attributes are hardening or spelling
 * differences, not ABI ones. Upstream's CONFIG_RUST_INLINE_HELPERS does
 * the same for rust/helpers/.
 *
 * task_kfuncs_prog_type() is the kernel's resolve_prog_type(): the type a
 * program runs as (an extension program counts as the type it extends), for
 * the kfunc set's filter.
 */

#include <linux/bpf_verifier.h>
#include <linux/irq_work.h>
#include <linux/llist.h>
#include <linux/module.h>
#include <linux/pid.h>
#include <linux/preempt.h>
#include <linux/rcupdate.h>
#include <linux/refcount.h>
#include <linux/sched.h>

#include "helpers.h"

/*
 * task_active_pid_ns(current), whose body in kernel/pid.c is exactly this
 * line of two inline functions: NULL once current's struct pid is detached.
 */
__always_inline struct pid_namespace *task_kfuncs_active_pid_ns(void)
{
	return ns_of_pid(task_pid(current));
}

__always_inline void task_kfuncs_rcu_read_lock(void)
{
	rcu_read_lock();
}

__always_inline void task_kfuncs_rcu_read_unlock(void)
{
	rcu_read_unlock();
}

__always_inline bool task_kfuncs_refcount_inc_not_zero(refcount_t *r)
{
	return refcount_inc_not_zero(r);
}

__always_inline bool task_kfuncs_in_nmi(void)
{
	return in_nmi();
}

void task_kfuncs_init_irq_work(struct irq_work *work, void (*func)(struct irq_work *))
{
	init_irq_work(work, func);
}

__always_inline bool task_kfuncs_llist_add(struct llist_node *new, struct llist_head *head)
{
	return llist_add(new, head);
}

__always_inline struct llist_node *task_kfuncs_llist_del_all(struct llist_head *head)
{
	return llist_del_all(head);
}

unsigned int task_kfuncs_module_btf_size(const struct module *mod)
{
#ifdef CONFIG_DEBUG_INFO_BTF_MODULES
	return mod->btf_data_size;
#else
	return 0;
#endif
}

__always_inline enum bpf_prog_type task_kfuncs_prog_type(const struct bpf_prog *prog)
{
	return resolve_prog_type(prog);
}
