// SPDX-License-Identifier: GPL-2.0
/*
 * Regression program for the from_vpid oops: rust_task_from_vpid
 * called by a tp_btf/sched_switch program while threads of the runner exit.
 *
 * A thread that is not its group's leader reaps itself in exit_notify():
 * release_task() detaches its struct pid (task->thread_pid = NULL) before its
 * last schedule(). sched_switch fires there with prev == current, so
 * task_active_pid_ns(current) is NULL. The kfunc must return NULL in that
 * case (the first version passed the NULL namespace to find_pid_ns() and
 * faulted in idr_find()). Whenever current still has a pid, from_vpid of the
 * runner's tgid must find the runner.
 *
 * The runner reads the counters below; the program only counts.
 */

#include "task_kfuncs_common.h"

char _license[] SEC("license") = "GPL";

#define PF_EXITING 0x00000004	/* include/linux/sched.h */
#define TASK_DEAD 0x00000080	/* include/linux/sched.h */

/* Read by the runner. All counts are of switches away from a runner thread. */
u64 switches;		/* every one */
u64 prev_not_current;	/* prev != current: the premise broke, must stay 0 */
u64 exiting;		/* prev has PF_EXITING */
u64 no_pid;		/* prev has no struct pid any more */
u64 dead_no_pid;	/* ...and this is its final switch (TASK_DEAD) */
u64 no_pid_null;	/* ...from_vpid returned NULL there, as it must */
u64 no_pid_found;	/* ...from_vpid returned a task there: must stay 0 */
u64 with_pid_found;	/* current has a pid and from_vpid found the runner */
u64 with_pid_wrong;	/* current has a pid and from_vpid found no or another task */

SEC("tp_btf/sched_switch")
__c_skip_no_vpid("6.12 has no bpf_task_from_vpid")
int BPF_PROG(from_vpid_exiting_threads, bool preempt, struct task_struct *prev,
	     struct task_struct *next, unsigned int prev_state)
{
	struct task_struct *found;
	bool pidless;

	if (prev->tgid != target_tgid)
		return 0;
	__sync_fetch_and_add(&switches, 1);
	if (prev != bpf_get_current_task_btf())
		__sync_fetch_and_add(&prev_not_current, 1);
	if (prev->flags & PF_EXITING)
		__sync_fetch_and_add(&exiting, 1);
	pidless = !prev->thread_pid;
	if (pidless) {
		__sync_fetch_and_add(&no_pid, 1);
		if (prev_state == TASK_DEAD)
			__sync_fetch_and_add(&dead_no_pid, 1);
	}

	found = rust_task_from_vpid(target_tgid);
	if (pidless) {
		if (found)
			__sync_fetch_and_add(&no_pid_found, 1);
		else
			__sync_fetch_and_add(&no_pid_null, 1);
	} else if (found && found->pid == target_tgid) {
		__sync_fetch_and_add(&with_pid_found, 1);
	} else {
		__sync_fetch_and_add(&with_pid_wrong, 1);
	}
	if (found)
		rust_task_release(found);
	return 0;
}
