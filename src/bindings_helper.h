/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Kernel headers task_kfuncs needs beyond the kernel crate's bindings, and
 * the prototypes of the thin C wrappers in helpers.c.
 */

#include <linux/btf.h>
#include <linux/btf_ids.h>
#include <linux/pid.h>
#include <linux/pid_namespace.h>
#include <linux/refcount.h>
#include <linux/sched/task.h>

#include "helpers.h"
