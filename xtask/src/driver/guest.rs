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
use crate::{vm, Env};

/// What a filter selects of the runner's cases.
pub struct Selection {
    /// `suite/case` names, in run order.
    pub cases: Vec<String>,
    /// How many cases the filter left out.
    pub filtered_out: usize,
}

/// Asks the runner (on the host: listing needs no kernel) for its cases.
pub fn select(
    runner: &Path,
    ko: &Path,
    sample: Option<&Path>,
    filter: Option<&str>,
) -> Result<Selection> {
    let list = |filter: Option<&str>| -> Result<Vec<String>> {
        let mut cmd = Command::new(runner);
        cmd.arg("--list").arg("--module").arg(ko);
        if let Some(sample) = sample {
            cmd.arg("--sample-module").arg(sample);
        }
        cmd.args(filter);
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
/// itself: before xtask's own timeout ([`timeout`]), so that the dump
/// reaches us. `XTASK_GUEST_WATCHDOG=SECS` overrides it (to see the
/// watchdog work).
fn watchdog(debug: bool, long: bool) -> Duration {
    let secs = std::env::var("XTASK_GUEST_WATCHDOG")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if debug { 2400 } else { 600 } * if long { 3 } else { 1 });
    Duration::from_secs(secs)
}

/// How long the whole guest run may take.
pub fn timeout(debug: bool, long: bool) -> Duration {
    Duration::from_secs(if debug { 3600 } else { 1800 } * if long { 3 } else { 1 })
}

/// What the guest runs.
pub struct Run<'a> {
    pub runner: &'a Path,
    pub ko: &'a Path,
    /// kfunc_sample.ko, for the runner's kfunc_sample suite.
    pub sample: Option<&'a Path>,
    pub filter: Option<&'a str>,
    /// The long forms of the heavy cases.
    pub long: bool,
}

/// What xtask/guest/test.sh adds to the runner's exit code (0 all passed,
/// 1 a case failed, 2 the run could not start): a code that only the script
/// gives, so that every run checks that the guest's exit code comes through
/// (virtme-ng gives 255 when it got none from the guest).
const EXIT_BASE: i32 = 100;

/// The case that checks the guest's exit code.
const EXIT_CODE_CASE: &str = "xtask/vm_exit_code_passes_through";

/// Boots once, runs the selected cases, records every one of them.
pub fn run(
    report: &mut Report,
    env: &Env,
    opts: &vm::VmOptions,
    debug: bool,
    run: &Run<'_>,
    selection: &Selection,
) {
    let script = env.checkout.join("xtask/guest/test.sh");
    let mut words: Vec<String> = vec![
        "bash".into(),
        script.to_string_lossy().into_owned(),
        watchdog(debug, run.long).as_secs().to_string(),
        EXIT_BASE.to_string(),
        run.runner.to_string_lossy().into_owned(),
        "--module".into(),
        run.ko.to_string_lossy().into_owned(),
    ];
    if let Some(sample) = run.sample {
        words.push("--sample-module".into());
        words.push(sample.to_string_lossy().into_owned());
    }
    if run.long {
        words.push("--long".into());
    }
    words.extend(run.filter.map(str::to_string));
    let command = words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ");
    let outcome = match vm::run_watched(&env.cache, opts, &command) {
        Ok(outcome) => outcome,
        Err(e) => {
            let reason = format!("the guest did not run the suite: {e:#}");
            let mut out = Vec::new();
            not_reported(&mut out, &selection.cases, &reason, "");
            for (name, o) in out {
                report.record(&name, o);
            }
            return;
        }
    };
    println!(
        "# boot to command: {:.1} s",
        outcome.boot_time.as_secs_f64()
    );

    let console = env.checkout.join("target/xtask/console.log");
    for (name, o) in verdicts(&selection.cases, &outcome, &console) {
        report.record(&name, o);
    }
}

/// The verdict of every selected case from what the guest printed, in
/// selection order, plus failing `guest/...` cases when the output or the
/// exit code cannot be trusted.
fn verdicts(
    selected: &[String],
    outcome: &vm::VmOutcome,
    console: &Path,
) -> Vec<(String, Outcome)> {
    let mut out = Vec::new();
    let parsed = ktap::parse(&outcome.stdout);
    let mut reported: HashMap<String, Outcome> = parsed
        .cases
        .iter()
        .map(|c| (c.name(), c.outcome.clone()))
        .collect();
    let mut missing = Vec::new();
    let mut any_failed = false;
    for name in selected {
        match reported.remove(name) {
            Some(o) => {
                any_failed |= o.is_fail();
                out.push((name.clone(), o));
            }
            None => missing.push(name.clone()),
        }
    }
    // Cases the runner ran without listing them: recorded, and a problem.
    for c in &parsed.cases {
        if let Some(o) = reported.remove(&c.name()) {
            any_failed |= o.is_fail();
            out.push((c.name(), o));
            out.push((
                "guest/listed_cases_ran".into(),
                Outcome::fail(format!("{} ran but `--list` did not name it", c.name())),
            ));
        }
    }

    if !missing.is_empty() {
        let (reason, log) = match &outcome.crash {
            Some(crash) => (
                format!("{crash} while this case ran (see {})", console.display()),
                crash.lines.join("\n"),
            ),
            None => (
                format!(
                    "the guest ended without reporting this case (exit code {}{}){}",
                    outcome.exit_code,
                    // virtme-ng's own code when the guest never returned
                    // the command's (a kernel that died quietly, QEMU gone).
                    if outcome.exit_code == 255 {
                        ": virtme-ng got no exit code from the guest"
                    } else {
                        ""
                    },
                    if parsed.problems.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", parsed.problems.join("; "))
                    }
                ),
                String::new(),
            ),
        };
        not_reported(&mut out, &missing, &reason, &log);
        return out;
    }
    if !parsed.problems.is_empty() {
        out.push((
            "guest/ktap_output".into(),
            Outcome::fail(format!(
                "the runner's KTAP is not well formed: {}",
                parsed.problems.join("; ")
            )),
        ));
    }
    // The script exits with EXIT_BASE + the runner's code: 0 exactly when
    // no case failed.
    let exit = match outcome.exit_code - EXIT_BASE {
        0 if !any_failed => Outcome::Pass,
        1 if any_failed => Outcome::Pass,
        code @ 0..=2 => Outcome::fail(format!(
            "the runner exited with {code} but {} case failed",
            if any_failed { "a" } else { "no" }
        )),
        _ => Outcome::fail(format!(
            "the guest exited with {}, not {EXIT_BASE} + the runner's code: the exit code \
             did not come through{}",
            outcome.exit_code,
            if outcome.exit_code == 255 {
                " (255: virtme-ng got no exit code from the guest)"
            } else {
                ""
            }
        )),
    };
    out.push((EXIT_CODE_CASE.into(), exit));
    out
}

/// Fails cases the guest never reported: the first with the whole reason
/// and log, the rest pointing at it.
fn not_reported(out: &mut Vec<(String, Outcome)>, cases: &[String], reason: &str, log: &str) {
    let Some((first, rest)) = cases.split_first() else {
        return;
    };
    out.push((first.clone(), Outcome::fail_with_log(reason, log)));
    for name in rest {
        out.push((
            name.clone(),
            Outcome::fail(format!("not run: the guest stopped at {first}")),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KTAP: &str = "KTAP version 1\n1..2\n  KTAP version 1\n  # Subtest: rust\n  1..2\n\
                        \x20 ok 1 a\n  not ok 2 b # broke\nnot ok 1 rust\n  KTAP version 1\n\
                        \x20 # Subtest: kernel\n  1..1\n  ok 1 log_clean\nok 2 kernel\n";

    fn selected() -> Vec<String> {
        ["rust/a", "rust/b", "kernel/log_clean"]
            .map(String::from)
            .to_vec()
    }

    fn outcome(stdout: &str, exit_code: i32, crash: Option<vm::Crash>) -> vm::VmOutcome {
        vm::VmOutcome {
            exit_code,
            crash,
            stdout: stdout.to_string(),
            boot_time: Duration::ZERO,
        }
    }

    fn names(v: &[(String, Outcome)]) -> Vec<&str> {
        v.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn every_reported_case_keeps_its_verdict() {
        let v = verdicts(
            &selected(),
            &outcome(KTAP, EXIT_BASE + 1, None),
            Path::new("c.log"),
        );
        assert_eq!(
            names(&v),
            ["rust/a", "rust/b", "kernel/log_clean", EXIT_CODE_CASE]
        );
        assert_eq!(v[0].1, Outcome::Pass);
        assert!(v[1].1.is_fail());
        assert_eq!(v[3].1, Outcome::Pass);
    }

    #[test]
    fn an_exit_code_that_disagrees_is_a_failure() {
        for code in [EXIT_BASE, 1, 255] {
            let v = verdicts(&selected(), &outcome(KTAP, code, None), Path::new("c.log"));
            assert_eq!(names(&v).last(), Some(&EXIT_CODE_CASE));
            assert!(v.last().unwrap().1.is_fail(), "exit code {code}");
        }
    }

    #[test]
    fn a_crash_fails_the_running_case_by_its_marker_and_the_rest_as_not_run() {
        let cut = &KTAP[..KTAP.find("  not ok 2").unwrap()];
        let crash = vm::Crash {
            marker: "Oops: ",
            lines: vec!["[ 9.0] Oops: 0000 [#1] PREEMPT SMP".into()],
        };
        let v = verdicts(
            &selected(),
            &outcome(cut, -1, Some(crash)),
            Path::new("c.log"),
        );
        assert_eq!(names(&v), ["rust/a", "rust/b", "kernel/log_clean"]);
        let Outcome::Fail { reason, log } = &v[1].1 else {
            panic!("rust/b should fail: {:?}", v[1].1);
        };
        assert!(reason.contains("`Oops:`"), "{reason}");
        assert!(log.contains("PREEMPT SMP"), "{log}");
        assert_eq!(
            v[2].1,
            Outcome::fail("not run: the guest stopped at rust/b")
        );
    }

    #[test]
    fn output_cut_short_without_a_crash_fails_the_missing_cases() {
        let cut = &KTAP[..KTAP.find("  not ok 2").unwrap()];
        let v = verdicts(&selected(), &outcome(cut, 0, None), Path::new("c.log"));
        let Outcome::Fail { reason, .. } = &v[1].1 else {
            panic!("rust/b should fail");
        };
        assert!(
            reason.contains("without reporting this case (exit code 0)"),
            "{reason}"
        );
        assert!(
            reason.contains("ended after 1 of 2 planned results"),
            "{reason}"
        );
    }
}
