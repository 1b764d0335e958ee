// SPDX-License-Identifier: GPL-2.0

//! Building the guest binaries of bpf-tests (the selftest runner and the
//! benchmark) against a test kernel, their paths taken from cargo's JSON
//! messages.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::util;

/// The selftest runner's binary name.
pub const RUNNER: &str = "task-kfuncs-selftests";
/// The benchmark's binary name.
pub const BENCH: &str = "task-kfuncs-bench";

/// The built binaries.
pub struct Binaries {
    pub runner: PathBuf,
    pub bench: PathBuf,
}

/// `cargo build -p bpf-tests --release` with TASK_KFUNCS_KDIR set (both
/// kfunc variants are in the one runner).
pub fn build(checkout: &Path, kdir: &Path) -> Result<Binaries> {
    let mut cmd = util::cargo_for_kernel(
        checkout,
        kdir,
        &[
            "build",
            "-p",
            "bpf-tests",
            "--release",
            "--bins",
            "--message-format=json-render-diagnostics",
        ],
    );
    let built = util::cargo_artifacts(&mut cmd, |a| !a.profile.test)?;
    let find = |name: &str| -> Result<PathBuf> {
        match built
            .iter()
            .find(|(exe, _, _)| exe.file_name().is_some_and(|f| f == name))
        {
            Some((exe, _, _)) => Ok(exe.clone()),
            None => bail!("the bpf-tests build made no binary named {name}"),
        }
    };
    Ok(Binaries {
        runner: find(RUNNER)?,
        bench: find(BENCH)?,
    })
}
