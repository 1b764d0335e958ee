#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Runs inside the guest for `cargo xtask test`: the BPF selftest runner
# against task_kfuncs.ko. The runner prints KTAP on stdout (xtask reads it)
# and judges the kernel log and kmemleak itself; this script only adds a
# watchdog and exits with EXIT_BASE plus the runner's exit code (0: all
# passed, 1: a case failed, 2: the runner could not start), a code only it
# gives: xtask checks on every run that the guest's exit code comes through.
#
# Usage: test.sh WATCHDOG_SECS EXIT_BASE RUNNER [RUNNER ARGS...]
#
# Watchdog: if the runner has not finished after WATCHDOG_SECS, the guest
# dumps every task's stack (sysrq t) and every CPU's (sysrq l) to the
# console, then crashes itself (sysrq c): xtask sees the panic on the
# console, stops QEMU at once and fails the case that was running, with
# the dumps in its log.
set -uo pipefail

watchdog=$1
exit_base=$2
runner=$3
shift 3

(
	sleep "$watchdog"
	echo "test.sh: the runner is still running after ${watchdog}s: dumping tasks and crashing" >/dev/kmsg
	echo 1 >/proc/sys/kernel/sysrq
	echo t >/proc/sysrq-trigger
	echo l >/proc/sysrq-trigger
	echo c >/proc/sysrq-trigger
) &
watchdog_pid=$!

"$runner" "$@"
status=$?
kill "$watchdog_pid" 2>/dev/null
wait "$watchdog_pid" 2>/dev/null
exit $((exit_base + status))
