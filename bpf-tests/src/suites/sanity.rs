// SPDX-License-Identifier: GPL-2.0

//! What the other suites take for granted about the guest kernel, checked
//! once per run so that a wrong kernel fails with a clear name rather than
//! with a pile of load errors.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::{Case, Outcome};

/// The guest sanity cases.
pub fn cases() -> Vec<Case> {
    vec![
        // The line the runner and its programs were built for (build.rs).
        Case::new("kernel_line_matches_build", |_| {
            let line = env!("TASK_KFUNCS_KERNEL_LINE");
            match fs::read_to_string("/proc/sys/kernel/osrelease") {
                Ok(release) if release.starts_with(&format!("{line}.")) => Outcome::Pass,
                Ok(release) => Outcome::fail(format!(
                    "the guest runs {}, the module and the programs are for {line}",
                    release.trim()
                )),
                Err(e) => Outcome::fail(format!("reading /proc/sys/kernel/osrelease: {e}")),
            }
        }),
        Case::new("vmlinux_btf", |_| {
            if Path::new("/sys/kernel/btf/vmlinux").exists() {
                Outcome::Pass
            } else {
                Outcome::fail("no /sys/kernel/btf/vmlinux: the kernel lacks CONFIG_DEBUG_INFO_BTF")
            }
        }),
        Case::new("config_rust", |_| {
            match Command::new("zcat").arg("/proc/config.gz").output() {
                Ok(out) if out.status.success() => {
                    let config = String::from_utf8_lossy(&out.stdout);
                    if config.lines().any(|l| l == "CONFIG_RUST=y") {
                        Outcome::Pass
                    } else {
                        Outcome::fail("CONFIG_RUST=y is not in /proc/config.gz")
                    }
                }
                Ok(out) => Outcome::fail(format!(
                    "zcat /proc/config.gz failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
                Err(e) => Outcome::fail(format!("running zcat: {e}")),
            }
        }),
    ]
}
