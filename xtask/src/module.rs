// SPDX-License-Identifier: GPL-2.0

//! Building task_kfuncs.ko (the top-level Makefile) against a test kernel.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::kernel::Kernel;
use crate::{util, Env};

/// `make -C <checkout> KDIR=<kernel dir>` with the kernel's toolchain first
/// in PATH; returns the path of task_kfuncs.ko.
pub fn build(env: &Env, kernel: &Kernel) -> Result<PathBuf> {
    let mut make = util::kernel_make(&env.cache)?;
    make.arg("-C")
        .arg(&env.checkout)
        .arg(format!("KDIR={}", kernel.dir.display()));
    util::run(&mut make).with_context(|| {
        format!(
            "building task_kfuncs.ko against the {} kernel ({}) failed: see make's output above",
            kernel.describe(),
            kernel.dir.display()
        )
    })?;
    let ko = env.checkout.join("task_kfuncs.ko");
    if !ko.exists() {
        bail!("make succeeded but left no {}", ko.display());
    }
    Ok(ko)
}
