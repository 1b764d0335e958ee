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
 */

#include <linux/irq_work.h>
#include <linux/llist.h>
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

/*
 * The kernel crate's own helpers that the kfuncs reach through its
 * abstractions on 7.x (kernel::sync::rcu::Guard, Task::current()), with the
 * bodies rust/helpers/ gives them. CONFIG_RUST_INLINE_HELPERS would link
 * rust/helpers/helpers_module.bc into the module's bitcode; the module's own
 * bitcode rule (Kbuild) links these instead, made internal like the rest,
 * so the calls inline as in a C caller and the kernel's exported,
 * out-of-line copies stay unused. Kbuild refuses a kernel with
 * CONFIG_RUST_INLINE_HELPERS, the one case where both would be linked.
 */
void rust_helper_rcu_read_lock(void);
void rust_helper_rcu_read_unlock(void);
struct task_struct *rust_helper_get_current(void);

__always_inline void rust_helper_rcu_read_lock(void)
{
	rcu_read_lock();
}

__always_inline void rust_helper_rcu_read_unlock(void)
{
	rcu_read_unlock();
}

__always_inline struct task_struct *rust_helper_get_current(void)
{
	return current;
}

__always_inline bool task_kfuncs_refcount_inc_not_zero(refcount_t *r)
{
	return refcount_inc_not_zero(r);
}

__always_inline bool task_kfuncs_in_nmi(void)
{
	return in_nmi();
}

__always_inline void task_kfuncs_init_irq_work(struct irq_work *work,
					       void (*func)(struct irq_work *))
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
