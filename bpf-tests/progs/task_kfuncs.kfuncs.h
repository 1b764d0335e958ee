/* SPDX-License-Identifier: GPL-2.0 */
/* The kfuncs of task_kfuncs.ko, generated from its BTF by btfgen --header: do not edit. */
#ifndef __TASK_KFUNCS_KFUNCS_H
#define __TASK_KFUNCS_KFUNCS_H

#ifndef __ksym
#define __ksym __attribute__((section(".ksyms")))
#endif

extern struct task_struct *rust_task_acquire(struct task_struct *p) __ksym;
extern struct task_struct *rust_task_from_pid(int pid) __ksym;
extern struct task_struct *rust_task_from_vpid(int vpid) __ksym;
extern struct task_struct *rust_task_kptr_get(struct task_struct *p) __ksym;
extern void rust_task_release(struct task_struct *p) __ksym;

#endif /* __TASK_KFUNCS_KFUNCS_H */
