// SPDX-License-Identifier: GPL-2.0

//! Cases the verifier must reject: every program of
//! `progs/task_kfuncs_failure.bpf.c` annotated `__failure`, loaded alone.
//! The load must fail and the verifier log must contain each `__msg`.
//!
//! Compiled once per kfunc variant (see `kfuncs_rust.rs` and `kfuncs_c.rs`):
//! `super` is the variant.

use std::mem::MaybeUninit;

use anyhow::{bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};

use super::skel::failure_skel::TaskKfuncsFailureSkelBuilder;
use super::skel::FAILURE_OBJ;
use crate::bpf::{self, Annotations};
use crate::{Case, Outcome};

/// The rejection cases, one per annotated program, in source order.
pub fn cases() -> Result<Vec<Case>> {
    let annotations = bpf::annotations("task_kfuncs_failure", FAILURE_OBJ)?;
    let mut cases = Vec::new();
    for (name, ann) in annotations {
        if !ann.failure {
            continue;
        }
        if ann.msgs.is_empty() {
            bail!(
                "{name} is marked __failure but has no __msg(): say what it must be rejected with"
            );
        }
        let prog = name.clone();
        cases.push(Case::new(name, move |ctx| check(&prog, ann, ctx.verbose)));
    }
    Ok(cases)
}

fn check(prog: &str, ann: Annotations, verbose: bool) -> Outcome {
    if let Some(why) = ann.skip {
        return Outcome::Skip(why);
    }
    match try_load(prog) {
        Err(e) => Outcome::fail_with_log(format!("{e:#}"), bpf::take_log()),
        Ok(true) => Outcome::fail_with_log("the verifier accepted the program", bpf::take_log()),
        Ok(false) => {
            let log = bpf::take_log();
            match ann.msgs.iter().find(|msg| !log.contains(msg.as_str())) {
                None => {
                    if verbose {
                        println!("# {prog}: rejected with: {}", verifier_verdict(&log));
                    }
                    Outcome::Pass
                }
                Some(missing) => {
                    Outcome::fail_with_log(format!("verifier log lacks \"{missing}\""), log)
                }
            }
        }
    }
}

/// Loads `prog` alone; returns whether the load succeeded.
fn try_load(prog: &str) -> Result<bool> {
    let mut storage = MaybeUninit::uninit();
    let mut open = TaskKfuncsFailureSkelBuilder::default()
        .open(&mut storage)
        .context("opening the failure skeleton")?;
    bpf::select_program(open.open_object_mut(), prog)?;
    let loaded = open.load().is_ok();
    Ok(loaded)
}

/// The verifier's last word: its last line before libbpf's end-of-log
/// marker, skipping the statistics it appends.
fn verifier_verdict(log: &str) -> &str {
    log.lines()
        .take_while(|line| !line.contains("-- END PROG LOAD LOG --"))
        .filter(|line| {
            !line.trim().is_empty()
                && !line.starts_with("processed ")
                && !line.starts_with("verification time")
                && !line.starts_with("stack depth")
        })
        .last()
        .unwrap_or("(no verifier log)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_program_is_an_annotated_rejection_case() {
        let ann = bpf::annotations("task_kfuncs_failure", FAILURE_OBJ).unwrap();
        let open = libbpf_rs::ObjectBuilder::default()
            .open_memory(FAILURE_OBJ)
            .expect("the failure object opens");
        let mut progs = 0;
        for prog in open.progs() {
            progs += 1;
            let name = prog.name().to_string_lossy();
            let (_, a) = ann
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap_or_else(|| panic!("{name} has no annotations"));
            assert!(a.failure, "{name} lacks __failure");
            assert!(!a.msgs.is_empty(), "{name} lacks __msg()");
        }
        assert!(progs >= 15, "issue 4 asks for at least 15 rejection cases");
    }

    #[test]
    fn messages_name_the_kfuncs_of_this_build() {
        let ann = bpf::annotations("task_kfuncs_failure", FAILURE_OBJ).unwrap();
        let (_, a) = ann
            .iter()
            .find(|(n, _)| n == "release_unacquired_argument")
            .unwrap();
        let want = if super::super::C_KFUNCS {
            "bpf_task_release"
        } else {
            "rust_task_release"
        };
        assert!(a.msgs[0].contains(want), "{:?}", a.msgs);
    }

    #[test]
    fn verdict_skips_statistics() {
        let log = "0: R1=ctx()\nR1 must be a rcu pointer\nprocessed 10 insns\n\
                   -- END PROG LOAD LOG --\nlibbpf: failed";
        assert_eq!(verifier_verdict(log), "R1 must be a rcu pointer");
    }
}
