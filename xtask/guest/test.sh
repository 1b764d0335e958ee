#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Runs inside the guest for `cargo xtask test`: checks the guest kernel,
# runs the BPF selftest runner against task_kfuncs.ko, then scans the kernel
# log (and kmemleak, on the debug kernel).
#
# xtask parses the lines starting with "xtask-guest: " and the runner's own
# final "N passed, N failed" line; everything else is for the reader.
#
# Usage: test.sh RUNNER MODULE C_RUNNER [SAMPLE]
#
# C_RUNNER is the same suite built with --features c-kfuncs (the kernel's
# own bpf_task_* kfuncs): its lines are prefixed with "c-kfuncs: ".
# SAMPLE, if not empty, is samples/kfunc_sample's kfunc_sample.ko: the
# runner adds its cases.
set -uo pipefail

runner=$1
module=$2
c_runner=$3
sample=${4:-}

check() {
	local name=$1
	shift
	if "$@"; then
		echo "xtask-guest: ok - $name"
	else
		echo "xtask-guest: not ok - $name"
	fi
}

check "the guest runs a 6.12 kernel ($(uname -r))" grep -q '^6\.12\.' /proc/sys/kernel/osrelease
check "vmlinux BTF is present" test -e /sys/kernel/btf/vmlinux
check "CONFIG_RUST=y is live" sh -c 'zcat /proc/config.gz | grep -qx CONFIG_RUST=y'

kmemleak=/sys/kernel/debug/kmemleak
mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug 2>/dev/null
# Forget what boot left behind, so that a report names only the suite's leaks.
[ -e $kmemleak ] && echo clear >$kmemleak

echo "=== $runner --module $module ${sample:+--sample-module $sample}"
"$runner" --module "$module" ${sample:+--sample-module "$sample"}
echo "xtask-guest: runner exit code $?"

# The same cases against the kernel's own C kfuncs, where the contract is
# the same: proof that the suite tests the contract, not our code.
echo "=== $c_runner (kernel C kfuncs)"
"$c_runner" 2>&1 | sed -u 's/^/c-kfuncs: /'
echo "xtask-guest: c-kfuncs: runner exit code ${PIPESTATUS[0]}"

# Anything the kernel complained about during boot or the suite fails the run.
# No bare "Call Trace": allocation failures print one by design (warn_alloc),
# and the fault-injection case fails allocations on purpose; every kernel
# bug report has one of the lines below (the runner's kernel_log.rs list).
pattern='refcount_t|WARNING:|BUG:|KASAN|suspicious RCU usage|Oops|general protection fault|detected stall|blocked for more than'
if dmesg | grep -Eq "$pattern"; then
	echo "=== kernel log lines matching: $pattern"
	dmesg | grep -E -B2 -A20 "$pattern" | head -n 200
	echo "xtask-guest: not ok - the kernel log is clean"
else
	echo "xtask-guest: ok - the kernel log is clean"
fi

if [ -e $kmemleak ]; then
	# kmemleak only reports objects older than 5 s, found by two scans.
	sleep 6
	echo scan >$kmemleak
	echo scan >$kmemleak
	if grep -q 'unreferenced object' $kmemleak; then
		echo "=== kmemleak"
		head -n 200 $kmemleak
		echo "xtask-guest: not ok - kmemleak finds no leak"
	else
		echo "xtask-guest: ok - kmemleak finds no leak"
	fi
fi
exit 0
