// SPDX-License-Identifier: GPL-2.0

//! Building task_kfuncs.ko (the top-level Makefile) against a test kernel.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::util;

/// `make -C <checkout> KDIR=<kdir>` with the kernel's toolchain first in
/// PATH; returns the path of task_kfuncs.ko.
pub fn build(checkout: &Path, cache: &Path, kdir: &Path) -> Result<PathBuf> {
    let mut make = util::kernel_make(cache)?;
    make.arg("-C")
        .arg(checkout)
        .arg(format!("KDIR={}", kdir.display()));
    util::run(&mut make).with_context(|| {
        format!(
            "building task_kfuncs.ko against {} failed: see make's output above",
            kdir.display()
        )
    })?;
    let ko = checkout.join("task_kfuncs.ko");
    if !ko.exists() {
        bail!("make succeeded but left no {}", ko.display());
    }
    Ok(ko)
}
