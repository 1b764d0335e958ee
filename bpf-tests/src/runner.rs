// SPDX-License-Identifier: GPL-2.0

//! The runner: selects cases with libtest's command line (libtest-mimic's
//! [`Arguments`]: `FILTER`, `--exact`, `--skip`, `--list`), runs them in
//! suite order and prints KTAP. Exit code 0 when nothing failed, 1 when a
//! case failed, 2 when the run could not start.
//!
//! The `guest` sanity suite and the `kernel` judges run whenever any case
//! is selected: they say whether the other verdicts can be trusted.

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Parser;
use harness::ktap::Writer;
use libtest_mimic::{Arguments, Trial};

use crate::{bpf, exiting, kernel_log, kfuncs_c, kfuncs_rust, lifecycle, module, sanity};
use crate::{faults, kfunc_sample, privilege, prog_types, sched_ext, stress};
use crate::{Case, Ctx, Outcome, Suite};

/// Runs the task_kfuncs BPF selftests in the test kernel and prints KTAP.
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Cli {
    /// task_kfuncs.ko to insmod if the module is not loaded (it is removed
    /// again at the end); also enables the module lifecycle cases.
    #[arg(long, value_name = "PATH")]
    pub module: Option<PathBuf>,
    /// kfunc_sample.ko (samples/kfunc_sample): also run its suite, which
    /// insmods it first and rmmods it at the end.
    #[arg(long, value_name = "PATH")]
    pub sample_module: Option<PathBuf>,
    /// Print the verifier message each rejection case got.
    #[arg(short, long)]
    pub verbose: bool,
    /// The long forms of the heavy cases (`cargo xtask test --long`).
    #[arg(long)]
    pub long: bool,
    /// libtest's selection options; `--list` prints `suite/case: test` lines.
    #[command(flatten)]
    pub test: Arguments,
}

/// The suite of judges and its cases' names.
const JUDGES: &str = "kernel";
const RMMOD_AT_EXIT: &str = "rmmod_at_exit";
const LOG_CLEAN: &str = "log_clean";
const KMEMLEAK_CLEAN: &str = "kmemleak_clean";

/// Every suite, in run order, before selection (the judges come last and
/// are run by [`run`] itself).
fn suites(cli: &Cli) -> Result<Vec<Suite>> {
    let mut rust = kfuncs_rust::success::cases()?;
    rust.extend(kfuncs_rust::failure::cases()?);
    rust.extend(exiting::cases()?);
    rust.extend(prog_types::cases()?);
    rust.extend(privilege::cases());
    rust.extend(sched_ext::cases());
    rust.extend(lifecycle::cases());
    let mut c = kfuncs_c::success::cases()?;
    c.extend(kfuncs_c::failure::cases()?);
    let sample = match cli.sample_module.clone() {
        Some(path) => kfunc_sample::cases(path)?,
        None => Vec::new(),
    };
    let mut judges = Vec::new();
    if cli.module.is_some() {
        judges.push(RMMOD_AT_EXIT);
    }
    judges.extend([LOG_CLEAN, KMEMLEAK_CLEAN]);
    Ok(vec![
        Suite {
            always: true,
            ..Suite::new("guest", sanity::cases())
        },
        Suite::new(kfuncs_rust::SUITE, rust),
        Suite::new(kfuncs_c::SUITE, c),
        Suite::new("kfunc_sample", sample),
        Suite::new("faults", faults::cases()),
        Suite::new("stress", stress::cases()),
        Suite {
            always: true,
            // Placeholders: the judges need the run's state, see `judge`.
            ..Suite::new(
                JUDGES,
                judges
                    .into_iter()
                    .map(|name| Case::new(name, |_| Outcome::fail("not run")))
                    .collect(),
            )
        },
    ])
}

/// Keeps the cases the arguments select, and the `always` suites if any
/// case is kept.
fn select(args: &Arguments, suites: Vec<Suite>) -> (Vec<Suite>, usize) {
    let mut filtered_out = 0;
    let mut selected: Vec<Suite> = suites
        .into_iter()
        .map(|mut suite| {
            if !suite.always {
                let before = suite.cases.len();
                suite.cases.retain(|case| {
                    let trial = Trial::test(format!("{}/{}", suite.name, case.name), || Ok(()));
                    !args.is_filtered_out(&trial) && !args.is_ignored(&trial)
                });
                filtered_out += before - suite.cases.len();
            }
            suite
        })
        .collect();
    if selected.iter().all(|s| s.always || s.cases.is_empty()) {
        filtered_out += selected
            .iter()
            .filter(|s| s.always)
            .map(|s| s.cases.len())
            .sum::<usize>();
        selected.clear();
    }
    selected.retain(|s| !s.cases.is_empty());
    (selected, filtered_out)
}

/// Runs the selected suites; returns whether nothing failed.
pub fn run(cli: Cli) -> Result<bool> {
    let (suites, filtered_out) = select(&cli.test, suites(&cli)?);
    if cli.test.list {
        for suite in &suites {
            for case in &suite.cases {
                println!("{}/{}: test", suite.name, case.name);
            }
        }
        return Ok(true);
    }

    bpf::capture_libbpf_output();
    let kmsg = kernel_log::Mark::now()?;
    let loaded = module::Loaded::ensure(cli.module.as_deref())?;
    let wants_module = suites.iter().any(|s| s.name == kfuncs_rust::SUITE);
    if wants_module && !module::is_loaded() {
        bail!(
            "the task_kfuncs module is not loaded: insmod it first or pass \
             --module /path/to/task_kfuncs.ko"
        );
    }

    let ctx = Ctx {
        module: cli.module.clone(),
        verbose: cli.verbose,
        long: cli.long,
    };
    let mut out = Writer::new(io::stdout().lock(), suites.len())?;
    if filtered_out > 0 {
        out.diag(&format!("{filtered_out} cases filtered out"))?;
    }
    let mut kmsg = Some(kmsg);
    let mut loaded = Some(loaded);
    for suite in suites {
        out.begin_subtest(suite.name, suite.cases.len())?;
        for case in suite.cases {
            let _ = bpf::take_log();
            let outcome = if suite.name == JUDGES {
                judge(&case.name, &mut kmsg, &mut loaded)
            } else {
                (case.run)(&ctx)
            };
            out.result(&case.name, &outcome)?;
        }
        out.end_subtest(suite.name)?;
    }
    let totals = out.finish()?;
    Ok(totals.fail == 0)
}

/// The judges, in list order: the module goes first so that whatever rmmod
/// triggers is judged by the log check, and kmemleak's wait comes once.
fn judge(
    name: &str,
    kmsg: &mut Option<kernel_log::Mark>,
    loaded: &mut Option<module::Loaded>,
) -> Outcome {
    match name {
        RMMOD_AT_EXIT => match loaded.take() {
            Some(l) if l.by_us() => match l.unload() {
                Ok(()) => Outcome::Pass,
                Err(e) => Outcome::fail(format!("{e:#}")),
            },
            _ => Outcome::Skip("the module was loaded before the run: left loaded".into()),
        },
        LOG_CLEAN => match kmsg.take() {
            Some(mark) => mark.check(),
            None => Outcome::fail("the kernel log was already judged"),
        },
        KMEMLEAK_CLEAN => kernel_log::kmemleak_check(),
        other => Outcome::fail(format!("no judge named {other}")),
    }
}

/// `task-kfuncs-selftests`' main.
pub fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("task-kfuncs-selftests: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
