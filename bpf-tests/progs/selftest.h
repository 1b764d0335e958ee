/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What every selftest program shares with the runner (src/plumbing/bpf.rs),
 * in the style of the kernel's tools/testing/selftests/bpf/progs/bpf_misc.h:
 *
 * __failure       the verifier must reject the program;
 * __msg(m)        ...and its log must contain m;
 * __c_skip(why)   in the C-kfunc build (-DTASK_KFUNCS_C), report the case as
 *                 skipped: the kernel's C kfuncs have another contract here;
 * __skip(why)     report the case as skipped in both builds (for a case the
 *                 kernel line has no contract for).
 *
 * These are BTF decl tags on the program, read back by the runner. A program
 * the verifier must accept reports through two globals: `runs` (the times its
 * body ran for the runner) and `err` (the line of its first failed CHECK, 0 if
 * none; REQUIRE is a CHECK that also leaves the program). The runner sets
 * `target_tgid` (itself) and `pid_max` where a program declares them, and
 * test-runs a syscall program with a context of two ints: 0 and its own pid
 * (struct syscall_args of task_kfuncs_success.bpf.c).
 */

#ifndef _TASK_KFUNCS_SELFTEST_H
#define _TASK_KFUNCS_SELFTEST_H

#define __selftest_tag(t) __attribute__((btf_decl_tag("task_kfuncs:" t)))
#define __failure __selftest_tag("failure")
#define __msg(m) __selftest_tag("msg=" m)
#define __skip(why) __selftest_tag("skip=" why)
#ifdef TASK_KFUNCS_C
#define __c_skip(why) __selftest_tag("skip=" why)
#else
#define __c_skip(why)
#endif

int runs;
int err;
int target_tgid;
int pid_max;

#define CHECK(cond)						\
	do {							\
		if (!(cond) && !err)				\
			err = __LINE__;				\
	} while (0)

/* CHECK(cond), and return 0 from the program when it does not hold. */
#define REQUIRE(cond)						\
	do {							\
		CHECK(cond);					\
		if (!(cond))					\
			return 0;				\
	} while (0)

/* True, and counted as a run, when current belongs to the runner. */
static inline bool runner_forked(void)
{
	if ((bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return false;
	runs++;
	return true;
}

#endif /* _TASK_KFUNCS_SELFTEST_H */
