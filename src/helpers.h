/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Out-of-line wrappers for static inline kernel functions that the Rust
 * side of task_kfuncs calls. Same idea as rust/helpers/: no logic here.
 */
#ifndef TASK_KFUNCS_HELPERS_H
#define TASK_KFUNCS_HELPERS_H

#include <linux/refcount.h>
#include <linux/types.h>

struct module;
struct task_struct;

void task_kfuncs_rcu_read_lock(void);
void task_kfuncs_rcu_read_unlock(void);
refcount_t *task_kfuncs_task_rcu_users(struct task_struct *p);
bool task_kfuncs_refcount_inc_not_zero(refcount_t *r);
unsigned int task_kfuncs_module_btf_size(const struct module *mod);

#endif /* TASK_KFUNCS_HELPERS_H */
