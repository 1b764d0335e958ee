/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Wrappers for static inline kernel functions that the Rust side of
 * task_kfuncs calls. Same idea as rust/helpers/: the kernel's own inline
 * functions under names Rust can bind to, and one field read that depends
 * on the kernel's config (a module's BTF size).
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

struct pid_namespace;
struct task_struct;

struct pid_namespace *task_kfuncs_active_pid_ns(void);
void task_kfuncs_rcu_read_lock(void);
void task_kfuncs_rcu_read_unlock(void);
bool task_kfuncs_refcount_inc_not_zero(refcount_t *r);

#endif /* TASK_KFUNCS_HELPERS_H */
