// SPDX-License-Identifier: GPL-2.0
/*
 * Out-of-line wrappers for static inline kernel functions used by the Rust
 * side of task_kfuncs. rcu_read_lock()/rcu_read_unlock() are wrapped rather
 * than open-coded from __rcu_read_lock() so that lockdep (PROVE_RCU) sees
 * the read-side critical sections exactly as it does for C callers.
 *
 * task_kfuncs_task_rcu_users() is the one accessor for a task_struct field:
 * bindgen's layout of struct task_struct is not trustworthy that deep into
 * the struct: with the test kernel's config it places rcu_users at 0x8c8
 * where the C compiler has 0x8d8. Members that are empty structs in this
 * configuration (struct sched_statistics without CONFIG_SCHEDSTATS) have
 * size 0 in GNU C but at least 1 byte in Rust, which is the likely cause;
 * the offset also changes with the config. So the field address is taken
 * by the C compiler, which owns the layout.
 *
 * task_kfuncs_prog_type() is the kernel's resolve_prog_type(): the type a
 * program runs as (an extension program counts as the type it extends), for
 * the kfunc set's filter.
 */

#include <linux/module.h>
#include <linux/bpf_verifier.h>
#include <linux/rcupdate.h>
#include <linux/refcount.h>
#include <linux/sched.h>

#include "helpers.h"

void task_kfuncs_rcu_read_lock(void)
{
	rcu_read_lock();
}

void task_kfuncs_rcu_read_unlock(void)
{
	rcu_read_unlock();
}

refcount_t *task_kfuncs_task_rcu_users(struct task_struct *p)
{
	return &p->rcu_users;
}

bool task_kfuncs_refcount_inc_not_zero(refcount_t *r)
{
	return refcount_inc_not_zero(r);
}

unsigned int task_kfuncs_module_btf_size(const struct module *mod)
{
#ifdef CONFIG_DEBUG_INFO_BTF_MODULES
	return mod->btf_data_size;
#else
	return 0;
#endif
}

enum bpf_prog_type task_kfuncs_prog_type(const struct bpf_prog *prog)
{
	return resolve_prog_type(prog);
}
