/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Wrappers for static inline kernel functions that the Rust side of
 * task_kfuncs calls. Same idea as rust/helpers/: each wrapper is one call of
 * a kernel inline function (or macro), under a name Rust can bind to.
 *
 * bindgen reads these prototypes (src/bindings_helper.h); the definitions
 * in helpers.c are compiled to LLVM bitcode and linked into the Rust object
 * so that LLVM inlines them (see Kbuild), so their bodies end up in the
 * kfuncs exactly where a C caller would have them.
 */
#ifndef TASK_KFUNCS_HELPERS_H
#define TASK_KFUNCS_HELPERS_H

#include <linux/refcount.h>
#include <linux/types.h>

struct irq_work;
struct llist_head;
struct llist_node;
struct pid_namespace;
struct task_struct;

struct pid_namespace *task_kfuncs_active_pid_ns(void);
void task_kfuncs_rcu_read_lock(void);
void task_kfuncs_rcu_read_unlock(void);
bool task_kfuncs_refcount_inc_not_zero(refcount_t *r);
bool task_kfuncs_in_nmi(void);
void task_kfuncs_init_irq_work(struct irq_work *work, void (*func)(struct irq_work *));
bool task_kfuncs_llist_add(struct llist_node *new, struct llist_head *head);
struct llist_node *task_kfuncs_llist_del_all(struct llist_head *head);

#endif /* TASK_KFUNCS_HELPERS_H */
