// SPDX-License-Identifier: GPL-2.0

//! What the guest runner (`bpf-tests`) and the host driver (`xtask`) must
//! agree on, in one place:
//!
//! - [`Outcome`]: the verdict of one case (pass, fail with a reason and a
//!   log, skip with a reason);
//! - [`ktap`]: the result protocol between them, KTAP as the kernel's
//!   kselftests print it (Documentation/dev-tools/ktap.rst): the runner
//!   writes it, xtask parses it;
//! - [`kernel_log`]: which kernel log lines fail a run and which of them
//!   mean the guest is gone (the runner judges `/dev/kmsg` with it, xtask
//!   watches the boot console with it), and the kmemleak policy.

pub mod kernel_log;
pub mod ktap;

/// The verdict of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    /// Why it failed (first line: the summary), and the log that goes with
    /// it (verifier log, tool output), possibly empty.
    Fail {
        reason: String,
        log: String,
    },
    /// Why it did not run. Never counted as passed.
    Skip(String),
}

impl Outcome {
    /// A failure without a log worth printing.
    pub fn fail(reason: impl Into<String>) -> Self {
        Outcome::Fail {
            reason: reason.into(),
            log: String::new(),
        }
    }

    /// A failure with its log.
    pub fn fail_with_log(reason: impl Into<String>, log: impl Into<String>) -> Self {
        Outcome::Fail {
            reason: reason.into(),
            log: log.into(),
        }
    }

    pub fn is_fail(&self) -> bool {
        matches!(self, Outcome::Fail { .. })
    }
}
