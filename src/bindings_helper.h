/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Kernel headers task_kfuncs needs beyond the kernel crate's bindings, the
 * prototypes of the thin C wrappers in helpers.c, and the C compiler's
 * layout of every kernel struct field that task_kfuncs (or the kernel
 * crate code it uses) reads through a bindgen struct.
 */

#include <linux/btf.h>
#include <linux/btf_ids.h>
#include <linux/irq_work.h>
#include <linux/pid.h>
#include <linux/pid_namespace.h>
#include <linux/refcount.h>
#include <linux/sched.h>
#include <linux/sched/task.h>
#include <linux/stddef.h>

#include "helpers.h"

/*
 * bindgen evaluates these initializers with clang, so the generated Rust
 * holds the offsets the C compiler uses for this kernel and config;
 * src/bindings.rs checks bindgen's struct layouts against them at compile
 * time. Add a line here for any new field read from Rust.
 */
/*
 * `make TASK_KFUNCS_LAYOUT_SHIFT=16` moves every expected offset by 16 bytes,
 * which is what bindgen 0.73 does to task_struct on a kernel without
 * test-kernel/patches/<line>/0002: the build must then fail, naming the field.
 */
#ifndef TASK_KFUNCS_LAYOUT_SHIFT
#define TASK_KFUNCS_LAYOUT_SHIFT 0
#endif
#define TASK_KFUNCS_C_OFFSETOF(type, field) \
	const size_t TASK_KFUNCS_C_OFFSETOF_##type##_##field = \
		offsetof(struct type, field) + TASK_KFUNCS_LAYOUT_SHIFT
#define TASK_KFUNCS_C_SIZEOF(type) \
	const size_t TASK_KFUNCS_C_SIZEOF_##type = sizeof(struct type)

/* src/kfuncs.rs: the reference count the task kfuncs take and drop. */
TASK_KFUNCS_C_OFFSETOF(task_struct, rcu_users);
/* src/nmi.rs: the link of a task whose last put waits for the irq_work. */
TASK_KFUNCS_C_OFFSETOF(task_struct, rcu);
/* src/nmi.rs: the irq_work is a Rust static, passed to C by address. */
TASK_KFUNCS_C_SIZEOF(irq_work);
/* rust/kernel/task.rs: Task::pid(), Task::group_leader() (kernel crate). */
TASK_KFUNCS_C_OFFSETOF(task_struct, pid);
TASK_KFUNCS_C_OFFSETOF(task_struct, group_leader);
TASK_KFUNCS_C_SIZEOF(task_struct);
/* src/kfuncs.rs: register(). */
TASK_KFUNCS_C_OFFSETOF(btf_kfunc_id_set, owner);
TASK_KFUNCS_C_OFFSETOF(btf_kfunc_id_set, set);
TASK_KFUNCS_C_OFFSETOF(btf_kfunc_id_set, filter);
TASK_KFUNCS_C_SIZEOF(btf_kfunc_id_set);
