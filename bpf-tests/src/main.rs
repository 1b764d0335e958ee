// SPDX-License-Identifier: GPL-2.0

//! `task-kfuncs-selftests`: the BPF selftests of the task_kfuncs module,
//! run inside the test kernel.
//!
//! Four suites, in order: programs the verifier must accept and that must
//! behave ([`success`]), programs it must reject with an exact message
//! ([`failure`]), module load/unload while programs use the kfuncs
//! ([`lifecycle`]), and a scan of the kernel log and kmemleak for what the
//! cases left behind ([`kernel_log`]). Output is TAP; the last line is
//! `N passed, N failed, N skipped` and the exit code is non-zero if anything
//! failed.
//!
//! Built with the `c-kfuncs` feature, the same programs call the kernel's own
//! C kfuncs, and cases whose contract differs there are skipped with a reason.

mod bpf;
mod exiting;
mod failure;
mod kernel_log;
mod lifecycle;
mod module;
mod privilege;
mod prog_types;
mod sched_ext;
mod success;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Parser;

/// Runs the task_kfuncs BPF selftests and prints TAP.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// task_kfuncs.ko to insmod if the module is not loaded (it is removed
    /// again at the end); also enables the module lifecycle cases.
    #[arg(long, value_name = "PATH")]
    module: Option<PathBuf>,
    /// Print the verifier log (and libbpf output) of failing cases.
    #[arg(short, long)]
    verbose: bool,
    /// Run only the case with this name, or else the cases whose name
    /// contains it.
    filter: Option<String>,
}

/// Whether this binary was built against the kernel's C kfuncs.
pub const C_KFUNCS: bool = cfg!(feature = "c-kfuncs");

/// The verdict of one case.
pub enum Outcome {
    Pass,
    /// Why it failed, and the libbpf/verifier log that goes with it.
    Fail(String, String),
    Skip(String),
}

impl Outcome {
    /// A failure without a log worth printing.
    pub fn fail(reason: impl Into<String>) -> Self {
        Outcome::Fail(reason.into(), String::new())
    }
}

/// Context handed to every case.
pub struct Ctx {
    /// `--module PATH`, if given.
    pub module: Option<PathBuf>,
    /// `-v`: cases may print extra `#` comment lines.
    pub verbose: bool,
}

/// One named case of a suite.
pub struct Case {
    pub name: String,
    pub run: Box<dyn FnOnce(&Ctx) -> Outcome>,
}

impl Case {
    pub fn new(name: impl Into<String>, run: impl FnOnce(&Ctx) -> Outcome + 'static) -> Self {
        Case {
            name: name.into(),
            run: Box::new(run),
        }
    }
}

/// Prints TAP lines and keeps the tally.
struct Tap {
    verbose: bool,
    number: usize,
    passed: usize,
    failed: usize,
    skipped: usize,
}

impl Tap {
    fn report(&mut self, name: &str, outcome: Outcome) {
        self.number += 1;
        let n = self.number;
        match outcome {
            Outcome::Pass => {
                self.passed += 1;
                println!("ok {n} {name}");
            }
            Outcome::Skip(why) => {
                self.skipped += 1;
                println!("ok {n} {name} # SKIP {why}");
            }
            Outcome::Fail(why, log) => {
                self.failed += 1;
                let mut lines = why.lines();
                println!("not ok {n} {name} # {}", lines.next().unwrap_or("failed"));
                for line in lines {
                    println!("# {line}");
                }
                if self.verbose && !log.is_empty() {
                    println!("# --- log of {name} ---");
                    for line in log.lines() {
                        println!("# {line}");
                    }
                } else if let Some(last) = log.lines().rev().find(|l| !l.trim().is_empty()) {
                    println!("# last log line: {last} (-v shows the whole log)");
                }
            }
        }
    }
}

fn run(cli: Cli) -> Result<bool> {
    bpf::capture_libbpf_output();
    let kmsg = kernel_log::Mark::now()?;
    let module = module::Loaded::ensure(cli.module.as_deref())?;
    if !C_KFUNCS && !module::is_loaded() {
        bail!(
            "the task_kfuncs module is not loaded: insmod it first or pass \
             --module /path/to/task_kfuncs.ko"
        );
    }

    let ctx = Ctx {
        module: cli.module.clone(),
        verbose: cli.verbose,
    };
    let mut cases = success::cases()?;
    cases.extend(failure::cases()?);
    cases.extend(exiting::cases()?);
    cases.extend(prog_types::cases()?);
    cases.extend(privilege::cases());
    cases.extend(sched_ext::cases());
    cases.extend(lifecycle::cases());
    if let Some(filter) = cli.filter.as_deref() {
        // A case's full name runs just that case, anything else every case
        // whose name contains it.
        let exact = cases.iter().any(|case| case.name == filter);
        cases.retain(|case| {
            if exact {
                case.name == filter
            } else {
                case.name.contains(filter)
            }
        });
    }

    // The kernel log checks run last and always: they judge the cases above.
    let count = cases.len() + 2 + usize::from(module.by_us());
    println!("TAP version 13");
    println!(
        "# task_kfuncs selftests, {} kfuncs",
        if C_KFUNCS { "kernel C" } else { "Rust" }
    );
    println!("1..{count}");
    let mut tap = Tap {
        verbose: cli.verbose,
        number: 0,
        passed: 0,
        failed: 0,
        skipped: 0,
    };
    for case in cases {
        let _ = bpf::take_log();
        let outcome = (case.run)(&ctx);
        tap.report(&case.name, outcome);
    }

    // Remove the module (if this run loaded it) before the log checks, so
    // that anything rmmod triggers is judged too.
    if module.by_us() {
        let outcome = match module.unload() {
            Ok(()) => Outcome::Pass,
            Err(e) => Outcome::fail(format!("{e:#}")),
        };
        tap.report("rmmod_at_exit", outcome);
    }
    tap.report("dmesg_clean", kmsg.check());
    tap.report("kmemleak_clean", kernel_log::kmemleak_check());

    println!(
        "{} passed, {} failed, {} skipped",
        tap.passed, tap.failed, tap.skipped
    );
    Ok(tap.failed == 0)
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("task-kfuncs-selftests: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
