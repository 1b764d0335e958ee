// SPDX-License-Identifier: GPL-2.0

//! `cargo xtask run`: build what is missing, boot, show the kernel and the
//! module as BPF sees them, unload, power off.

use std::time::Instant;

use anyhow::{bail, Result};

use crate::kernel::{self, Flavour, Line};
use crate::util::{fmt_duration, shell_quote};
use crate::{module, say, vm, Env};

pub fn run(env: &Env, line: Line, flavour: Flavour) -> Result<()> {
    let start = Instant::now();
    let kernel = kernel::ensure_built(env, line, flavour)?;
    say!("run: kernel {} {}", kernel.describe(), kernel.dir.display());

    let ko = module::build(env, &kernel)?;

    // xtask/guest/run.sh does the work in the guest; see its comments.
    let script = env.checkout.join("xtask/guest/run.sh");
    let command = format!(
        "bash {} {}",
        shell_quote(&script.to_string_lossy()),
        shell_quote(&ko.to_string_lossy())
    );
    let opts = vm::VmOptions::new(kernel.dir.clone(), kernel.is_debug());
    let outcome = vm::run(&env.cache, &opts, &command)?;
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
