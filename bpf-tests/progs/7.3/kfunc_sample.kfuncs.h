/* SPDX-License-Identifier: GPL-2.0 */
/* The kfuncs of kfunc_sample.ko, generated from its BTF by btfgen --header: do not edit. */
#ifndef __KFUNC_SAMPLE_KFUNCS_H
#define __KFUNC_SAMPLE_KFUNCS_H

#ifndef __ksym
#define __ksym __attribute__((section(".ksyms")))
#endif

enum kfunc_sample_op {
	KFUNC_SAMPLE_DOUBLE = 1,
	KFUNC_SAMPLE_NEGATE = 2,
};

extern long long kfunc_sample_add_signed(signed char a, short b, int c, long long d) __ksym;
extern unsigned long long kfunc_sample_add_unsigned(unsigned char a, unsigned short b, unsigned int c, unsigned long long d) __ksym;
extern long long kfunc_sample_apply(enum kfunc_sample_op op, long long x) __ksym;
extern void kfunc_sample_mem_fill(void *mem, unsigned int mem__szk, unsigned char byte) __ksym;
extern unsigned long long kfunc_sample_mem_sum(const void *mem__nullable, unsigned int mem__sz) __ksym;
extern _Bool kfunc_sample_not(_Bool b) __ksym;
extern unsigned int kfunc_sample_sleep(unsigned int ms) __ksym;
extern void kfunc_sample_store(unsigned long long *dst, unsigned long long value) __ksym;
extern unsigned int kfunc_sample_strlen(const char *s__str) __ksym;
extern int kfunc_sample_task_pid(struct task_struct *task__nullable) __ksym;
extern int kfunc_sample_task_tgid(struct task_struct *task) __ksym;

#endif /* __KFUNC_SAMPLE_KFUNCS_H */
