// SPDX-License-Identifier: GPL-2.0

//! The BPF selftests of the task_kfuncs module, as a library of suites that
//! the `task-kfuncs-selftests` runner runs inside the test kernel.
//!
//! A [`Case`] is a name and a closure returning an [`Outcome`]; a [`Suite`]
//! is a named list of cases. [`runner::run`] runs the suites in order and
//! prints KTAP ([`harness::ktap`]), one subtest per suite.
//!
//! [`plumbing`] is what every suite uses: BPF objects, programs and their
//! verdicts ([`bpf`]), child processes ([`process`]), module loading
//! ([`module`]), the kernel log and kmemleak ([`kernel_log`]). [`suites`]
//! holds the cases.

pub mod runner;

pub mod plumbing {
    pub mod bpf;
    pub mod kernel_log;
    pub mod module;
    pub mod process;
}

pub mod suites {
    pub mod exiting;
    pub mod kfuncs;
    pub mod lifecycle;
    pub mod nmi;
    pub mod privilege;
    pub mod prog_types;
    pub mod sample;
    pub mod sanity;
    pub mod sched_ext;
    pub mod stress;
}

use std::path::PathBuf;

pub use harness::Outcome;
pub use plumbing::{bpf, kernel_log, module, process};

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
