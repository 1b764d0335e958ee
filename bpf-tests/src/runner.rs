// SPDX-License-Identifier: GPL-2.0

//! The runner: selects cases with libtest's command line (libtest-mimic's
//! [`Arguments`]: `FILTER`, `--exact`, `--skip`, `--list`), runs them in
//! suite order and prints KTAP. Exit code 0 when nothing failed, 1 when a
//! case failed, 2 when the run could not start.
//!
//! The `guest` sanity suite and the `kernel` judges run whenever any case
//! is selected: they say whether the other verdicts can be trusted.

use std::cell::RefCell;
use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;

use anyhow::{bail, Result};
use clap::Parser;
use harness::ktap::Writer;
use libtest_mimic::{Arguments, Trial};

use crate::module::{self, TASK_KFUNCS};
use crate::suites::{kfuncs, lifecycle, privilege, prog_types, sample, sanity};
use crate::suites::{sched_ext, stress};
use crate::{bpf, kernel_log, Case, Ctx, Outcome, Suite};

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

/// What the `kernel` judges need of the run: the kernel log from its
/// start, and whether the run loaded the module. Filled in by [`run`].
type RunState = Rc<RefCell<(Option<kernel_log::Mark>, bool)>>;

/// Every suite, in run order, before selection. The `kernel` judges come
/// last: the module first, so that whatever rmmod triggers is judged by the
/// log check, and kmemleak's wait comes once.
fn suites(cli: &Cli, state: &RunState) -> Result<Vec<Suite>> {
    let mut rust = kfuncs::RUST.cases()?;
    rust.extend(prog_types::cases()?);
    rust.extend(privilege::cases());
    rust.extend(sched_ext::cases());
    let sample = match cli.sample_module.clone() {
        Some(path) => sample::cases(path)?,
        None => Vec::new(),
    };
    let mut judges = Vec::new();
    if cli.module.is_some() {
        let state = Rc::clone(state);
        judges.push(Case::new("rmmod_at_exit", move |_| {
            if !state.borrow().1 {
                Outcome::Skip("the module was loaded before the run: left loaded".into())
            } else if !TASK_KFUNCS.is_loaded() {
                Outcome::fail("the module the run loaded is gone")
            } else {
                TASK_KFUNCS
                    .rmmod_waiting()
                    .map_or_else(bpf::failed, |()| Outcome::Pass)
            }
        }));
    }
    let state = Rc::clone(state);
    judges.push(Case::new("log_clean", move |_| {
        state.borrow_mut().0.take().map_or_else(
            || Outcome::fail("the run has no kernel log mark"),
            |m| m.check(),
        )
    }));
    judges.push(Case::new("kmemleak_clean", |_| {
        kernel_log::kmemleak_check()
    }));
    Ok(vec![
        Suite {
            always: true,
            ..Suite::new("guest", sanity::cases())
        },
        Suite::new(kfuncs::RUST.suite, rust),
        Suite::new(kfuncs::C.suite, kfuncs::C.cases()?),
        Suite::new("kfunc_sample", sample),
        Suite::new("lifecycle", lifecycle::cases()),
        Suite::new("stress", stress::cases()),
        Suite {
            always: true,
            ..Suite::new("kernel", judges)
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
    // Only the judges and sanity checks left: nothing to run them for.
    if selected.iter().all(|s| s.always || s.cases.is_empty()) {
        filtered_out += selected.iter().map(|s| s.cases.len()).sum::<usize>();
        selected.clear();
    }
    selected.retain(|s| !s.cases.is_empty());
    (selected, filtered_out)
}

/// Runs the selected suites; returns whether nothing failed.
pub fn run(cli: Cli) -> Result<bool> {
    let state = RunState::default();
    let (suites, filtered_out) = select(&cli.test, suites(&cli, &state)?);
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
    let loaded = module::load_for_run(TASK_KFUNCS, cli.module.as_deref())?;
    *state.borrow_mut() = (Some(kmsg), loaded);
    let wants_module = suites.iter().any(|s| s.name == kfuncs::RUST.suite);
    if wants_module && !TASK_KFUNCS.is_loaded() {
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
    for suite in suites {
        out.begin_subtest(suite.name, suite.cases.len())?;
        for case in suite.cases {
            let _ = bpf::take_log();
            let outcome = (case.run)(&ctx);
            out.result(&case.name, &outcome)?;
        }
        out.end_subtest(suite.name)?;
    }
    let totals = out.finish()?;
    Ok(totals.fail == 0)
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
