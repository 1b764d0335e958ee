// SPDX-License-Identifier: GPL-2.0

//! `cargo xtask stress [--debug]`: the long form of the SMP stress case
//! (bpf-tests/src/stress.rs, `stress/stress_smp`) in a guest with [`CPUS`]
//! vCPUs booted with `panic_on_warn=1`, followed by the runner's sanity
//! checks and kernel log and kmemleak judges. It runs through the guest part
//! of `cargo xtask test` ([`test::guest`]), which runs the short form with
//! the other cases.

use std::process;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use harness::Outcome;

use crate::kernel::{self, Flavour, Line};
use crate::test::{guest, report::Report};
use crate::util::fmt_duration;
use crate::{module, say, selftests, vm, Env};

/// vCPUs of the guests that run the stress case.
pub const CPUS: u32 = 2;

/// Kernel options of the stress guest: a WARN is fatal, and `task_struct`
/// has a slab cache of its own, so that its object count means something.
const APPEND: &[&str] = &["panic_on_warn=1", "slab_nomerge"];

/// The runner's name of the stress case.
const CASE: &str = "stress/stress_smp";

pub fn stress(env: &Env, line: Line, flavour: Flavour) -> Result<()> {
    let start = Instant::now();
    let checkout = env.checkout.as_path();
    let kernel = kernel::ensure_built(env, line, flavour)?;
    let debug = kernel.is_debug();
    let ko = module::build(env, &kernel)?;
    let runner = selftests::build(checkout, &kernel.dir)?.runner;
    let selection = guest::select(&runner, &ko, None, Some(CASE))?;
    if !selection.cases.iter().any(|c| c == CASE) {
        bail!("the runner does not list {CASE}");
    }
    let opts = vm::VmOptions {
        echo_prefix: "# ",
        cpus: Some(CPUS),
        append: APPEND.to_vec(),
        // A guest that stops making progress where the runner's own
        // watchdog cannot run (a kernel deadlock) is killed here; its
        // console, with the stall and hung-task reports, is kept.
        timeout: Duration::from_secs(if debug { 2400 } else { 1200 }),
        ..vm::VmOptions::new(kernel.dir.clone(), debug)
    };
    let mut report = Report::default();
    guest::run(
        &mut report,
        env,
        &opts,
        debug,
        &runner,
        &ko,
        None,
        Some(CASE),
        &selection,
        &["TASK_KFUNCS_STRESS=long"],
    );
    // The case itself must have passed, not been skipped.
    let ran = matches!(report.outcome(CASE), Some(Outcome::Pass));
    say!(
        "stress: {} kernel, {CPUS} vCPUs, finished in {}",
        kernel.describe(),
        fmt_duration(start.elapsed())
    );
    let passed = report.finish(
        &checkout.join("target/xtask/stress-results.xml"),
        Some(CASE),
    )?;
    if !passed {
        process::exit(1);
    }
    if !ran {
        bail!("{CASE} did not pass (skipped, or not run)");
    }
    Ok(())
}
