// SPDX-License-Identifier: GPL-2.0

//! The BPF selftests of the task_kfuncs module, as a library of suites that
//! the `task-kfuncs-selftests` runner runs inside the test kernel.
//!
//! A [`Case`] is a name and a closure returning an [`Outcome`]; a [`Suite`]
//! is a named list of cases. [`runner::run`] runs the suites in order and
//! prints KTAP ([`harness::ktap`]), one subtest per suite:
//!
//! - `guest`: what the others take for granted ([`sanity`]);
//! - `rust`: programs the verifier must accept and that must behave
//!   ([`kfuncs_rust::success`]), programs it must reject with an exact
//!   message ([`kfuncs_rust::failure`]), module load/unload while programs
//!   use the kfuncs ([`lifecycle`]);
//! - `c_kfuncs`: the success and rejection suites built against the
//!   kernel's own C kfuncs ([`kfuncs_c`]);
//! - `kfunc_sample`: the sample module of the rust-kfuncs toolkit
//!   (samples/kfunc_sample), with `--sample-module PATH` ([`kfunc_sample`]);
//! - `faults`: module load/unload under faults and races ([`faults`]);
//! - `stress`: the kfuncs from every CPU at once ([`stress`]);
//! - `kernel`: what the cases left behind, judged once after all of them
//!   (module removal, the kernel log, kmemleak: [`kernel_log`]).

pub mod bpf;
pub mod exiting;
pub mod faults;
pub mod kernel_log;
pub mod kfunc_sample;
pub mod kfuncs_c;
pub mod kfuncs_rust;
pub mod lifecycle;
pub mod module;
pub mod privilege;
pub mod process;
pub mod prog_types;
pub mod runner;
pub mod sanity;
pub mod sched_ext;
pub mod stress;

use std::path::PathBuf;

pub use harness::Outcome;

/// Context handed to every case.
pub struct Ctx {
    /// `--module PATH`, if given.
    pub module: Option<PathBuf>,
    /// `-v`: cases may print extra `#` comment lines.
    pub verbose: bool,
    /// `--long`: the long forms of the heavy cases.
    pub long: bool,
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

/// A named list of cases; a case's full name is `suite/case`.
pub struct Suite {
    pub name: &'static str,
    pub cases: Vec<Case>,
    /// Run whenever any case runs, whatever the filter: checks that judge
    /// the run rather than test a kfunc.
    pub always: bool,
}

impl Suite {
    pub fn new(name: &'static str, cases: Vec<Case>) -> Self {
        Suite {
            name,
            cases,
            always: false,
        }
    }
}
