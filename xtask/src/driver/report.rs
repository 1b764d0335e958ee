// SPDX-License-Identifier: GPL-2.0

//! The report of `cargo xtask test`: one numbering for every case (host,
//! xtask's own, guest), one TAP-like line each as it is recorded, the
//! closing `N passed, N failed` line, and the same cases as JUnit XML in
//! `target/xtask/results.xml` for CI systems.

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use harness::Outcome;
use quick_junit::{NonSuccessKind, Report as Junit, TestCase, TestCaseStatus, TestSuite};

/// Most log lines of a failing case printed in the terminal report (the
/// JUnit file has them all).
const SHOWN_LOG_LINES: usize = 40;

struct Recorded {
    name: String,
    outcome: Outcome,
    time: Option<Duration>,
}

/// Case counter and printer.
#[derive(Default)]
pub struct Report {
    cases: Vec<Recorded>,
    passed: usize,
    failed: usize,
    skipped: usize,
    filtered_out: usize,
}

impl Report {
    /// Records and prints one case. A case's name is `group/...`; the group
    /// (`host`, `xtask`, `guest`, `rust`, ...) is its JUnit test suite.
    pub fn record(&mut self, name: &str, outcome: Outcome) {
        self.record_timed(name, outcome, None)
    }

    pub fn record_timed(&mut self, name: &str, outcome: Outcome, time: Option<Duration>) {
        let n = self.cases.len() + 1;
        match &outcome {
            Outcome::Pass => {
                self.passed += 1;
                println!("ok {n} - {name}");
            }
            Outcome::Skip(why) => {
                self.skipped += 1;
                println!("ok {n} - {name} # SKIP {why}");
            }
            Outcome::Fail { reason, log } => {
                self.failed += 1;
                println!("not ok {n} - {name}");
                for line in reason.lines() {
                    println!("#   {line}");
                }
                let lines: Vec<&str> = log.lines().collect();
                let shown = &lines[lines.len().saturating_sub(SHOWN_LOG_LINES)..];
                if shown.len() < lines.len() {
                    println!(
                        "#   | ... {} earlier log lines in target/xtask/results.xml",
                        lines.len() - shown.len()
                    );
                }
                for line in shown {
                    println!("#   | {line}");
                }
            }
        }
        self.cases.push(Recorded {
            name: name.to_string(),
            outcome,
            time,
        });
    }

    /// Records a failure from an error.
    pub fn fail(&mut self, name: &str, e: &anyhow::Error) {
        self.record(name, Outcome::fail(format!("{e:#}")))
    }

    /// Whether no case was recorded.
    pub fn is_empty(&self) -> bool {
        self.cases.is_empty()
    }

    /// Notes cases a filter left out.
    pub fn filtered_out(&mut self, n: usize) {
        self.filtered_out += n;
    }

    /// Writes the JUnit file and prints the closing lines; returns whether
    /// nothing failed.
    pub fn finish(self, junit: &Path, filter: Option<&str>) -> Result<bool> {
        let xml = self
            .junit()
            .to_string()
            .context("rendering the JUnit report")?;
        if let Some(dir) = junit.parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        fs::write(junit, xml).with_context(|| format!("writing {}", junit.display()))?;
        println!("# JUnit report: {}", junit.display());
        if let Some(filter) = filter {
            println!("# {} cases filtered out by {filter:?}", self.filtered_out);
        }
        if self.skipped > 0 {
            println!(
                "{} passed, {} failed, {} skipped",
                self.passed, self.failed, self.skipped
            );
        } else {
            println!("{} passed, {} failed", self.passed, self.failed);
        }
        Ok(self.failed == 0)
    }

    fn junit(&self) -> Junit {
        let mut report = Junit::new("cargo xtask test");
        let mut suites: Vec<TestSuite> = Vec::new();
        for case in &self.cases {
            let (group, rest) = case.name.split_once('/').unwrap_or(("xtask", &case.name));
            let status = match &case.outcome {
                Outcome::Pass => TestCaseStatus::success(),
                Outcome::Skip(why) => {
                    let mut s = TestCaseStatus::skipped();
                    s.set_message(why.as_str());
                    s
                }
                Outcome::Fail { reason, log } => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    s.set_message(reason.lines().next().unwrap_or("failed"));
                    s.set_description(format!("{reason}\n{log}"));
                    s
                }
            };
            let mut tc = TestCase::new(rest, status);
            tc.set_classname(group);
            if let Some(time) = case.time {
                tc.set_time(time);
            }
            match suites.iter_mut().find(|s| s.name.as_str() == group) {
                Some(suite) => {
                    suite.add_test_case(tc);
                }
                None => {
                    let mut suite = TestSuite::new(group);
                    suite.add_test_case(tc);
                    suites.push(suite);
                }
            }
        }
        report.add_test_suites(suites);
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junit_has_every_case_in_its_group() {
        let mut r = Report::default();
        r.record("host/btfgen/lib/a", Outcome::Pass);
        r.record("rust/acquire", Outcome::fail_with_log("broke", "log line"));
        r.record("kernel/kmemleak_clean", Outcome::Skip("no kmemleak".into()));
        let xml = r.junit().to_string().unwrap();
        assert!(xml.contains(r#"<testsuite name="host" tests="1""#), "{xml}");
        assert!(
            xml.contains(r#"<testcase name="acquire" classname="rust""#),
            "{xml}"
        );
        assert!(xml.contains(r#"<failure message="broke">broke"#), "{xml}");
        assert!(xml.contains("<skipped message=\"no kmemleak\"/>"), "{xml}");
        assert_eq!((r.passed, r.failed, r.skipped), (1, 1, 1));
    }
}
