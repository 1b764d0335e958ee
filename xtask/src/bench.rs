// SPDX-License-Identifier: GPL-2.0

//! `cargo xtask bench`: boot the test kernel and run `task-kfuncs-bench`,
//! which prints ns per operation of the Rust task kfuncs and of the
//! kernel's own C kfuncs, and their ratio. Under TCG (no KVM) the absolute
//! numbers are emulated time; the ratios are what to read.

use std::path::Path;

use anyhow::{bail, Result};

use crate::kernel::{self, Flavour};
use crate::util::shell_quote;
use crate::{module, say, selftests, vm};

pub fn bench(checkout: &Path, cache: &Path, args: &[String]) -> Result<()> {
    let kdir = kernel::ensure_built(checkout, cache, Flavour::Normal)?;
    let ko = module::build(checkout, cache, &kdir)?;
    let bench = selftests::build(checkout, &kdir)?.bench;
    let mut command = format!(
        "{} --module {}",
        shell_quote(&bench.to_string_lossy()),
        shell_quote(&ko.to_string_lossy())
    );
    for arg in args {
        command = format!("{command} {}", shell_quote(arg));
    }
    let outcome = vm::run(cache, &vm::VmOptions::new(kdir, false), &command)?;
    say!(
        "bench: guest reached the command after {:.1} s",
        outcome.boot_time.as_secs_f64()
    );
    if outcome.exit_code != 0 {
        bail!("task-kfuncs-bench failed (exit code {})", outcome.exit_code);
    }
    Ok(())
}
