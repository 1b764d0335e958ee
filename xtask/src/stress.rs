// SPDX-License-Identifier: GPL-2.0

//! `cargo xtask stress [--debug]`: the long form of the SMP stress case
//! (bpf-tests/src/stress.rs) in a guest with [`CPUS`] vCPUs booted with
//! `panic_on_warn=1`, followed by the runner's kernel log and kmemleak
//! checks. `cargo xtask test` runs the short form with the other cases.

use std::path::Path;
use std::process;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::kernel::{self, Flavour};
use crate::util::{fmt_duration, shell_quote};
use crate::{module, say, test, vm};

/// vCPUs of the guests that run the stress case.
pub const CPUS: u32 = 2;

/// Kernel options of the stress guest: a WARN is fatal, and `task_struct`
/// has a slab cache of its own, so that its object count means something.
const APPEND: &[&str] = &["panic_on_warn=1", "slab_nomerge"];

pub fn stress(checkout: &Path, cache: &Path, debug: bool) -> Result<()> {
    let start = Instant::now();
    let flavour = Flavour::new(debug);
    let kdir = kernel::ensure_built(checkout, cache, flavour)?;
    let ko = module::build(checkout, cache, &kdir)?;
    let runner = test::build_runner(checkout, &kdir, None)?;
    let command = format!(
        "TASK_KFUNCS_STRESS=long {} --module {} stress_smp",
        shell_quote(&runner.to_string_lossy()),
        shell_quote(&ko.to_string_lossy())
    );
    let opts = vm::VmOptions {
        cpus: Some(CPUS),
        append: APPEND.to_vec(),
        // A guest that stops making progress where the runner's own
        // watchdog cannot run (a kernel deadlock) is killed here; its
        // console, with the stall and hung-task reports, is kept.
        timeout: Duration::from_secs(if debug { 2400 } else { 1200 }),
        ..vm::VmOptions::new(kdir, debug)
    };
    let outcome = vm::run(cache, &opts, &command)?;
    let summary = outcome.stdout.lines().find_map(test::parse_summary);
    say!(
        "stress: {} kernel, {CPUS} vCPUs, guest command started after {:.1} s, finished in {}",
        flavour.name(),
        outcome.boot_time.as_secs_f64(),
        fmt_duration(start.elapsed())
    );
    // The case itself must have passed, not been skipped.
    let ran = outcome
        .stdout
        .lines()
        .any(|l| l.starts_with("ok ") && l.ends_with(" stress_smp"));
    match summary {
        Some((_, 0, _)) if outcome.exit_code == 0 && ran => Ok(()),
        Some((_, 0, _)) => bail!(
            "stress_smp did not pass (skipped, or not run): exit code {}",
            outcome.exit_code
        ),
        Some((passed, failed, _)) => {
            println!("{passed} passed, {failed} failed");
            process::exit(1)
        }
        None => bail!(
            "the runner printed no `N passed, N failed` line (exit code {}): did the guest \
             crash or stall? see target/xtask/console.log",
            outcome.exit_code
        ),
    }
}
