// SPDX-License-Identifier: GPL-2.0

//! `cargo xtask run`: build what is missing, boot, show the kernel and the
//! module as BPF sees them, unload, power off.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Result};

use crate::kernel::{self, Flavour};
use crate::util::{fmt_duration, shell_quote};
use crate::{module, say, vm};

pub fn run(checkout: &Path, cache: &Path) -> Result<()> {
    let start = Instant::now();
    let kdir = kernel::ensure_built(checkout, cache, Flavour::Normal)?;
    say!("run: kernel {}", kdir.display());

    let ko = module::build(checkout, cache, &kdir)?;

    // xtask/guest/run.sh does the work in the guest; see its comments.
    let script = checkout.join("xtask/guest/run.sh");
    let command = format!(
        "bash {} {}",
        shell_quote(&script.to_string_lossy()),
        shell_quote(&ko.to_string_lossy())
    );
    let outcome = vm::run(cache, &vm::VmOptions::new(kdir, false), &command)?;
    say!(
        "run: guest reached the script after {:.1} s; total {}",
        outcome.boot_time.as_secs_f64(),
        fmt_duration(start.elapsed())
    );
    if outcome.exit_code != 0 {
        bail!(
            "the guest script failed (exit code {}); its output is above",
            outcome.exit_code
        );
    }
    Ok(())
}
