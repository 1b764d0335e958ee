// SPDX-License-Identifier: GPL-2.0

//! `samples/kfunc_sample`, the rust-kfuncs toolkit's sample module: its
//! programs (`progs/kfunc_sample.bpf.c`) call every sample kfunc, and those
//! marked `__failure` must be rejected with their `__msg` ([`bpf::table`]).
//! The suite insmods the module first and rmmods it last.

use std::path::PathBuf;

use anyhow::Result;

use crate::bpf::{self, Obj};
use crate::module::{self, KFUNC_SAMPLE};
use crate::{Case, Outcome};

const SAMPLE: Obj = crate::obj!("kfunc_sample");

/// The sample's cases: insmod, every program, rmmod.
pub fn cases(path: PathBuf) -> Result<Vec<Case>> {
    let mut cases = vec![Case::new("insmod", move |_| match module::insmod(&path) {
        Ok(()) => Outcome::Pass,
        Err(e) => Outcome::fail(format!("insmod {}: {e}", path.display())),
    })];
    cases.extend(bpf::table(SAMPLE, "", &[])?);
    cases.push(Case::new("rmmod", |_| match KFUNC_SAMPLE.rmmod_waiting() {
        Ok(()) => Outcome::Pass,
        Err(e) => Outcome::fail(format!("{e:#}")),
    }));
    Ok(cases)
}
