#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Runs inside the guest for `cargo xtask run`: shows the kernel, its BTF and
# Rust support, then loads task_kfuncs.ko, shows what BPF sees of it, and
# unloads it. vng powers the guest off when this script ends.
#
# Usage: run.sh path/to/task_kfuncs.ko
set -euo pipefail

module=$1

heading() {
	printf '\n=== %s\n' "$*"
}

heading "kernel"
uname -a

heading "vmlinux BTF"
ls -l /sys/kernel/btf/vmlinux

heading "Rust support"
zcat /proc/config.gz | grep -E '^CONFIG_(RUST|DEBUG_INFO_BTF_MODULES)='

heading "insmod $module"
insmod "$module"
grep '^task_kfuncs ' /proc/modules

heading "/sys/kernel/btf"
ls /sys/kernel/btf/

heading "task_kfuncs BTF as BPF sees it (split over vmlinux)"
bpftool -B /sys/kernel/btf/vmlinux btf dump file /sys/kernel/btf/task_kfuncs

heading "kfuncs (FUNC entries of the module BTF)"
bpftool -B /sys/kernel/btf/vmlinux btf dump file /sys/kernel/btf/task_kfuncs |
	grep "FUNC 'rust_task_" || echo "(no rust_task_* functions in the module BTF)"

heading "rmmod task_kfuncs"
rmmod task_kfuncs
if grep -q '^task_kfuncs ' /proc/modules; then
	echo "task_kfuncs is still loaded" >&2
	exit 1
fi
echo "unloaded"

heading "kernel log of the module"
dmesg | grep 'task_kfuncs: ' || echo "(nothing)"

heading "summary"
btf=missing
[ -e /sys/kernel/btf/vmlinux ] && btf=present
rust=$(zcat /proc/config.gz | grep -E '^CONFIG_RUST=' || echo "CONFIG_RUST not set")
echo "kernel $(uname -r), /sys/kernel/btf/vmlinux $btf, $rust, task_kfuncs loaded and unloaded"
