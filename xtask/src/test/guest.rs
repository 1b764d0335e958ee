// SPDX-License-Identifier: GPL-2.0

//! The guest part of `cargo xtask test`: which runner cases a filter
//! selects (the runner's `--list`, run on the host), one boot that runs them
//! (xtask/guest/test.sh), and the runner's KTAP turned into cases of the
//! report, one per runner case, named as the runner names them
//! (`rust/acquire_release_argument`, `kernel/log_clean`).
//!
//! Every selected case must be reported: a case the output lacks fails,
//! with the reason the guest stopped (the console marker of a dying
//! kernel, or the end of the output), and the guest's exit code must agree
//! with the verdicts.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use harness::ktap;
use harness::Outcome;

use super::report::Report;
use crate::util::{self, shell_quote};
use crate::vm;

/// What a filter selects of the runner's cases.
pub struct Selection {
    /// `suite/case` names, in run order.
    pub cases: Vec<String>,
    /// How many cases the filter left out.
    pub filtered_out: usize,
}

/// Asks the runner (on the host: listing needs no kernel) for its cases.
pub fn select(runner: &Path, ko: &Path, filter: Option<&str>) -> Result<Selection> {
    let list = |filter: Option<&str>| -> Result<Vec<String>> {
        let mut cmd = Command::new(runner);
        cmd.arg("--list").arg("--module").arg(ko).args(filter);
        Ok(util::output(&mut cmd)?
            .lines()
            .filter_map(|l| l.strip_suffix(": test"))
            .map(str::to_string)
            .collect())
    };
    let all = list(None)?;
    let cases = match filter {
        Some(f) => list(Some(f))?,
        None => all.clone(),
    };
    Ok(Selection {
        filtered_out: all.len() - cases.len(),
        cases,
    })
}

/// Seconds after which the guest's watchdog dumps its tasks and crashes
/// itself: before xtask's own timeout, so that the dump reaches us.
fn watchdog(debug: bool) -> Duration {
    Duration::from_secs(if debug { 2400 } else { 600 })
}

/// Boots once, runs the selected cases, records every one of them.
#[allow(clippy::too_many_arguments)]
pub fn run(
    report: &mut Report,
    checkout: &Path,
    cache: &Path,
    opts: &vm::VmOptions,
    debug: bool,
    runner: &Path,
    ko: &Path,
    filter: Option<&str>,
    selection: &Selection,
) {
    let script = checkout.join("xtask/guest/test.sh");
    let mut words = vec![
        "bash".to_string(),
        script.to_string_lossy().into_owned(),
        runner.to_string_lossy().into_owned(),
        ko.to_string_lossy().into_owned(),
        watchdog(debug).as_secs().to_string(),
    ];
    words.extend(filter.map(str::to_string));
    let command = words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ");
    let outcome = match vm::run_watched(cache, opts, &command) {
        Ok(outcome) => outcome,
        Err(e) => {
            let reason = format!("the guest did not run the suite: {e:#}");
            return not_reported(report, &selection.cases, &reason, "");
        }
    };
    println!(
        "# boot to command: {:.1} s",
        outcome.boot_time.as_secs_f64()
    );

    let parsed = ktap::parse(&outcome.stdout);
    let mut reported: HashMap<String, Outcome> = parsed
        .cases
        .iter()
        .map(|c| (c.name(), c.outcome.clone()))
        .collect();
    let mut missing = Vec::new();
    let mut any_failed = false;
    for name in &selection.cases {
        match reported.remove(name) {
            Some(o) => {
                any_failed |= o.is_fail();
                report.record(name, o);
            }
            None => missing.push(name.clone()),
        }
    }
    // Cases the runner ran without listing them: recorded, and a problem.
    for c in &parsed.cases {
        if let Some(o) = reported.remove(&c.name()) {
            any_failed |= o.is_fail();
            report.record(&c.name(), o);
            report.record(
                "guest/listed_cases_ran",
                Outcome::fail(format!("{} ran but `--list` did not name it", c.name())),
            );
        }
    }

    let console = checkout.join("target/xtask/console.log");
    if !missing.is_empty() {
        let (reason, log) = match &outcome.crash {
            Some(crash) => (
                format!("{crash} while this case ran (see {})", console.display()),
                crash.lines.join("\n"),
            ),
            None => (
                format!(
                    "the guest ended without reporting this case (exit code {}){}",
                    outcome.exit_code,
                    if parsed.problems.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", parsed.problems.join("; "))
                    }
                ),
                String::new(),
            ),
        };
        return not_reported(report, &missing, &reason, &log);
    }
    if !parsed.problems.is_empty() {
        report.record(
            "guest/ktap_output",
            Outcome::fail(format!(
                "the runner's KTAP is not well formed: {}",
                parsed.problems.join("; ")
            )),
        );
    }
    // The script exits with the runner's code: 0 exactly when no case failed.
    let agrees = (outcome.exit_code == 0) != any_failed;
    if !agrees {
        report.record(
            "guest/exit_code",
            Outcome::fail(format!(
                "the guest exited with {} but {} case failed",
                outcome.exit_code,
                if any_failed { "a" } else { "no" }
            )),
        );
    }
}

/// Fails cases the guest never reported: the first with the whole reason
/// and log, the rest pointing at it.
fn not_reported(report: &mut Report, cases: &[String], reason: &str, log: &str) {
    let Some((first, rest)) = cases.split_first() else {
        return;
    };
    report.record(first, Outcome::fail_with_log(reason, log));
    for name in rest {
        report.record(
            name,
            Outcome::fail(format!("not run: the guest stopped at {first}")),
        );
    }
}
