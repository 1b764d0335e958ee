// SPDX-License-Identifier: GPL-2.0

//! KTAP, the kernel's test result format (Documentation/dev-tools/ktap.rst),
//! as the guest runner writes it and xtask reads it.
//!
//! ```text
//! KTAP version 1
//! 1..2
//!   KTAP version 1
//!   # Subtest: rust
//!   1..2
//!   ok 1 acquire_release_argument
//!   # the program never ran
//!   not ok 2 from_pid_current # the program never ran
//! not ok 1 rust
//!   KTAP version 1
//!   # Subtest: kernel
//!   1..1
//!   ok 1 kmemleak_clean # SKIP no kmemleak in this kernel
//! ok 2 kernel
//! # Totals: pass:1 fail:1 xfail:0 xpass:0 skip:1 error:0
//! ```
//!
//! A failing case's reason and log come as `# ` diagnostic lines just
//! before its result line, the reason's first line also after the `#` of
//! the result line. Subtests are indented by two spaces and named by a
//! `# Subtest:` line; their result line only sums them up. The last line is
//! the `# Totals:` line of kselftest's ktap_helpers.sh.

use std::io::{self, Write};

use crate::Outcome;

/// Most log lines printed for one failing case.
const MAX_LOG_LINES: usize = 300;

/// Case counts of a run (leaves only: a subtest's own line is not a case).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub pass: usize,
    pub fail: usize,
    pub skip: usize,
}

struct Level {
    number: usize,
    failed: bool,
}

/// Writes KTAP, one flushed line at a time (the reader may be a console
/// watching for the guest's death).
pub struct Writer<W: Write> {
    out: W,
    levels: Vec<Level>,
    totals: Totals,
}

impl<W: Write> Writer<W> {
    /// Starts the document with `plan` top-level tests.
    pub fn new(out: W, plan: usize) -> io::Result<Self> {
        let mut w = Writer {
            out,
            levels: vec![Level {
                number: 0,
                failed: false,
            }],
            totals: Totals::default(),
        };
        w.line("KTAP version 1")?;
        w.line(&format!("1..{plan}"))?;
        Ok(w)
    }

    fn indent(&self) -> String {
        "  ".repeat(self.levels.len() - 1)
    }

    fn line(&mut self, text: &str) -> io::Result<()> {
        let indent = self.indent();
        writeln!(self.out, "{indent}{text}")?;
        self.out.flush()
    }

    /// A `# ` diagnostic line for each line of `text`.
    pub fn diag(&mut self, text: &str) -> io::Result<()> {
        for line in text.lines() {
            self.line(&format!("# {line}"))?;
        }
        Ok(())
    }

    /// Opens a subtest of `plan` cases; [`Writer::end_subtest`] closes it.
    pub fn begin_subtest(&mut self, name: &str, plan: usize) -> io::Result<()> {
        self.levels.push(Level {
            number: 0,
            failed: false,
        });
        self.line("KTAP version 1")?;
        self.line(&format!("# Subtest: {}", clean(name)))?;
        self.line(&format!("1..{plan}"))
    }

    /// Closes the innermost subtest with its summary result line: `not ok`
    /// if any case in it failed.
    pub fn end_subtest(&mut self, name: &str) -> io::Result<()> {
        let level = self
            .levels
            .pop()
            .expect("end_subtest without begin_subtest");
        if self.levels.is_empty() {
            panic!("end_subtest without begin_subtest");
        }
        let parent = self.levels.last_mut().expect("a parent level");
        parent.number += 1;
        parent.failed |= level.failed;
        let n = parent.number;
        let verdict = if level.failed { "not ok" } else { "ok" };
        self.line(&format!("{verdict} {n} {}", clean(name)))
    }

    /// The result line of one case, preceded by its reason and log as
    /// diagnostics when it failed.
    pub fn result(&mut self, name: &str, outcome: &Outcome) -> io::Result<()> {
        let name = clean(name);
        let level = self.levels.last_mut().expect("a level");
        level.number += 1;
        let n = level.number;
        match outcome {
            Outcome::Pass => {
                self.totals.pass += 1;
                self.line(&format!("ok {n} {name}"))
            }
            Outcome::Skip(why) => {
                self.totals.skip += 1;
                self.line(&format!("ok {n} {name} # SKIP {}", first_line(why)))
            }
            Outcome::Fail { reason, log } => {
                self.totals.fail += 1;
                self.levels.iter_mut().for_each(|l| l.failed = true);
                self.diag(reason)?;
                let lines: Vec<&str> = log.lines().collect();
                if lines.len() > MAX_LOG_LINES {
                    self.diag(&format!(
                        "log: last {MAX_LOG_LINES} of {} lines",
                        lines.len()
                    ))?;
                }
                for line in &lines[lines.len().saturating_sub(MAX_LOG_LINES)..] {
                    self.line(&format!("# | {line}"))?;
                }
                self.line(&format!("not ok {n} {name} # {}", first_line(reason)))
            }
        }
    }

    /// Ends the document with kselftest's `# Totals:` line.
    pub fn finish(mut self) -> io::Result<Totals> {
        let t = self.totals;
        self.line(&format!(
            "# Totals: pass:{} fail:{} xfail:0 xpass:0 skip:{} error:0",
            t.pass, t.fail, t.skip
        ))?;
        Ok(t)
    }
}

/// A description may not hold `#` or a line break.
fn clean(name: &str) -> String {
    name.replace(['#', '\n', '\r'], " ")
}

fn first_line(text: &str) -> String {
    clean(text.lines().next().unwrap_or("").trim())
}

/// One case read back: its path (enclosing subtests, then its own name) and
/// its verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    pub path: Vec<String>,
    pub outcome: Outcome,
}

impl Case {
    /// `suite/case`.
    pub fn name(&self) -> String {
        self.path.join("/")
    }
}

struct Open {
    indent: usize,
    name: Option<String>,
    plan: Option<usize>,
    seen: usize,
    /// Index in `cases` of this level's first case, to name them once the
    /// subtest's result line gives its name (when it had no `# Subtest:`).
    first_case: usize,
}

/// Reads KTAP line by line. Lines it does not know are ignored, as the
/// format allows; a result whose number is out of order, a plan that is not
/// met and output that ends inside a test are [`Parsed::problems`].
#[derive(Default)]
pub struct Parser {
    open: Vec<Open>,
    diag: Vec<String>,
    cases: Vec<Case>,
    problems: Vec<String>,
    started: bool,
    ended: bool,
}

/// What a whole KTAP document said.
#[derive(Debug, Default)]
pub struct Parsed {
    pub cases: Vec<Case>,
    /// Why the document cannot be trusted to be complete.
    pub problems: Vec<String>,
}

impl Parser {
    pub fn new() -> Self {
        Parser::default()
    }

    /// Feeds one line (without its line break).
    pub fn line(&mut self, raw: &str) {
        let raw = raw.trim_end_matches(['\r', '\n']);
        let text = raw.trim_start_matches(' ');
        let indent = raw.len() - text.len();
        if text.starts_with("KTAP version ") || text.starts_with("TAP version ") {
            match self.open.last() {
                None if !self.started => {}
                None => {
                    self.problems
                        .push("a second KTAP document after the first ended".into());
                    return;
                }
                Some(top) if indent > top.indent => {}
                Some(_) => return,
            }
            self.started = true;
            self.open.push(Open {
                indent,
                name: None,
                plan: None,
                seen: 0,
                first_case: self.cases.len(),
            });
            return;
        }
        let Some(top) = self.open.last_mut() else {
            return;
        };
        if let Some(name) = text.strip_prefix("# Subtest: ") {
            if indent == top.indent {
                top.name = Some(name.trim().to_string());
            }
        } else if let Some(plan) = text.strip_prefix("1..") {
            if indent == top.indent {
                let n = plan.split_whitespace().next().unwrap_or("");
                top.plan = n.parse().ok();
            }
        } else if let Some(rest) = text.strip_prefix("Bail out!") {
            self.problems.push(format!("the test bailed out:{rest}"));
        } else if let Some(d) = text.strip_prefix('#') {
            if !d.starts_with(" Totals:") {
                let d = d.strip_prefix(' ').unwrap_or(d);
                self.diag
                    .push(d.strip_prefix("| ").unwrap_or(d).to_string());
            }
        } else if let Some((ok, number, desc, directive)) = parse_result(text) {
            self.result(indent, ok, number, desc, directive);
        }
    }

    fn result(&mut self, indent: usize, ok: bool, number: usize, desc: &str, directive: &str) {
        // A result line less indented than the innermost open level ends
        // that subtest: it is the subtest's summary, not a case.
        let mut summary = false;
        while self.open.last().is_some_and(|o| o.indent > indent) {
            let done = self.open.pop().expect("an open level");
            let name = done.name.clone().unwrap_or_else(|| desc.to_string());
            let depth = self.open.len();
            for case in &mut self.cases[done.first_case..] {
                if done.name.is_none() && case.path.len() > depth {
                    case.path[depth - 1] = name.clone();
                }
            }
            if let Some(plan) = done.plan {
                if done.seen != plan {
                    self.problems.push(format!(
                        "subtest {name}: planned {plan} cases, reported {}",
                        done.seen
                    ));
                }
            }
            summary = true;
        }
        let depth = self.open.len();
        let Some(level) = self.open.last_mut() else {
            return;
        };
        if level.indent != indent {
            return;
        }
        level.seen += 1;
        if number != level.seen {
            self.problems.push(format!(
                "result {number} ({desc}) where {} was due",
                level.seen
            ));
        }
        if depth == 1 && level.plan == Some(level.seen) {
            self.ended = true;
        }
        let diag = std::mem::take(&mut self.diag);
        if summary {
            return;
        }
        let (word, rest) = directive.split_once(' ').unwrap_or((directive, ""));
        let outcome = if word.eq_ignore_ascii_case("SKIP") {
            Outcome::Skip(rest.trim().to_string())
        } else if ok {
            Outcome::Pass
        } else {
            let reason = if directive.is_empty() {
                diag.first().cloned().unwrap_or_else(|| "failed".into())
            } else {
                directive.to_string()
            };
            Outcome::Fail {
                reason,
                log: diag.join("\n"),
            }
        };
        let mut path: Vec<String> = self.open[1..]
            .iter()
            .map(|o| o.name.clone().unwrap_or_default())
            .collect();
        path.push(desc.to_string());
        self.cases.push(Case { path, outcome });
    }

    /// Cases read so far.
    pub fn cases(&self) -> &[Case] {
        &self.cases
    }

    /// Ends the input: anything still open is a problem.
    pub fn finish(mut self) -> Parsed {
        if !self.started {
            self.problems.push("no KTAP output".into());
        }
        for open in self.open.iter().rev() {
            let name = open.name.as_deref().unwrap_or("the run");
            match open.plan {
                Some(plan) if open.seen < plan => self.problems.push(format!(
                    "{name}: the output ended after {} of {plan} planned results",
                    open.seen
                )),
                None => self
                    .problems
                    .push(format!("{name}: the output ended before its plan or end")),
                _ => {}
            }
        }
        if self.started && !self.ended && self.problems.is_empty() {
            self.problems
                .push("the output ended before its last result".into());
        }
        Parsed {
            cases: self.cases,
            problems: self.problems,
        }
    }
}

/// Parses `ok 3 name # SKIP why` into (ok, 3, "name", "SKIP why").
fn parse_result(text: &str) -> Option<(bool, usize, &str, &str)> {
    let (ok, rest) = if let Some(rest) = text.strip_prefix("not ok ") {
        (false, rest)
    } else {
        (true, text.strip_prefix("ok ")?)
    };
    let (number, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let number = number.parse().ok()?;
    let (desc, directive) = rest.split_once('#').unwrap_or((rest, ""));
    Some((ok, number, desc.trim(), directive.trim()))
}

/// Parses a whole document.
pub fn parse(text: &str) -> Parsed {
    let mut p = Parser::new();
    text.lines().for_each(|l| p.line(l));
    p.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(f: impl FnOnce(&mut Writer<&mut Vec<u8>>)) -> String {
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf, 2).unwrap();
        f(&mut w);
        w.finish().unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn writes_kselftest_ktap() {
        let text = write(|w| {
            w.begin_subtest("rust", 3).unwrap();
            w.result("a", &Outcome::Pass).unwrap();
            w.result("b", &Outcome::fail_with_log("it broke\nmore", "l1\nl2"))
                .unwrap();
            w.result("c#x", &Outcome::Skip("no kmemleak".into()))
                .unwrap();
            w.end_subtest("rust").unwrap();
            w.begin_subtest("kernel", 1).unwrap();
            w.result("log_clean", &Outcome::Pass).unwrap();
            w.end_subtest("kernel").unwrap();
        });
        assert_eq!(
            text,
            "KTAP version 1\n1..2\n  KTAP version 1\n  # Subtest: rust\n  1..3\n  ok 1 a\n\
             \x20 # it broke\n  # more\n  # | l1\n  # | l2\n  not ok 2 b # it broke\n\
             \x20 ok 3 c x # SKIP no kmemleak\nnot ok 1 rust\n  KTAP version 1\n\
             \x20 # Subtest: kernel\n  1..1\n  ok 1 log_clean\nok 2 kernel\n\
             # Totals: pass:2 fail:1 xfail:0 xpass:0 skip:1 error:0\n"
        );
    }

    #[test]
    fn round_trip() {
        let text = write(|w| {
            w.begin_subtest("rust", 2).unwrap();
            w.result("a", &Outcome::Pass).unwrap();
            w.result("b", &Outcome::fail_with_log("it broke", "verifier said no"))
                .unwrap();
            w.end_subtest("rust").unwrap();
            w.begin_subtest("kernel", 1).unwrap();
            w.result("kmemleak_clean", &Outcome::Skip("none".into()))
                .unwrap();
            w.end_subtest("kernel").unwrap();
        });
        let parsed = parse(&text);
        assert_eq!(parsed.problems, Vec::<String>::new());
        let names: Vec<String> = parsed.cases.iter().map(Case::name).collect();
        assert_eq!(names, ["rust/a", "rust/b", "kernel/kmemleak_clean"]);
        assert_eq!(parsed.cases[0].outcome, Outcome::Pass);
        assert_eq!(
            parsed.cases[1].outcome,
            Outcome::fail_with_log("it broke", "it broke\nverifier said no")
        );
        assert_eq!(parsed.cases[2].outcome, Outcome::Skip("none".into()));
    }

    #[test]
    fn output_cut_short_is_a_problem() {
        let text = "KTAP version 1\n1..2\n  KTAP version 1\n  # Subtest: rust\n  1..3\n  ok 1 a\n";
        let parsed = parse(text);
        assert_eq!(parsed.cases.len(), 1);
        assert_eq!(
            parsed.problems,
            [
                "rust: the output ended after 1 of 3 planned results",
                "the run: the output ended after 0 of 2 planned results"
            ]
        );
        assert_eq!(parse("").problems, ["no KTAP output"]);
        assert_eq!(parse("random\nnoise\n").problems, ["no KTAP output"]);
    }

    #[test]
    fn reads_plain_kselftest_tap_and_unnamed_subtests() {
        let text =
            "TAP version 13\n1..2\nok 1 x\n  KTAP version 1\n  1..1\n  not ok 1 y\nnot ok 2 sub\n";
        let parsed = parse(text);
        assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
        let names: Vec<String> = parsed.cases.iter().map(Case::name).collect();
        assert_eq!(names, ["x", "sub/y"]);
        assert!(parsed.cases[1].outcome.is_fail());
    }

    #[test]
    fn wrong_numbers_and_short_subtests_are_problems() {
        let text = "KTAP version 1\n1..1\n  KTAP version 1\n  # Subtest: s\n  1..2\n  ok 1 a\n  ok 3 b\nok 1 s\n";
        let parsed = parse(text);
        assert_eq!(parsed.problems, ["result 3 (b) where 2 was due"]);
        let text =
            "KTAP version 1\n1..1\n  KTAP version 1\n  # Subtest: s\n  1..2\n  ok 1 a\nok 1 s\n";
        assert_eq!(
            parse(text).problems,
            ["subtest s: planned 2 cases, reported 1"]
        );
    }

    #[test]
    fn ignores_unknown_lines() {
        let text = "noise\nKTAP version 1\n1..1\n[  1.0] kernel says hi\nok 1 a # done\n";
        let parsed = parse(text);
        assert!(parsed.problems.is_empty());
        assert_eq!(parsed.cases[0].outcome, Outcome::Pass);
    }
}
