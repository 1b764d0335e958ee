/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Out-of-line wrappers for static inline kernel functions that the Rust
 * side of task_kfuncs calls. Same idea as rust/helpers/: no logic here.
 */
#ifndef TASK_KFUNCS_HELPERS_H
#define TASK_KFUNCS_HELPERS_H

#include <linux/bpf.h>
#include <linux/refcount.h>
#include <linux/types.h>

struct module;
struct bpf_prog;
struct task_struct;

void task_kfuncs_rcu_read_lock(void);
void task_kfuncs_rcu_read_unlock(void);
refcount_t *task_kfuncs_task_rcu_users(struct task_struct *p);
bool task_kfuncs_refcount_inc_not_zero(refcount_t *r);
unsigned int task_kfuncs_module_btf_size(const struct module *mod);
enum bpf_prog_type task_kfuncs_prog_type(const struct bpf_prog *prog);

#endif /* TASK_KFUNCS_HELPERS_H */
