// SPDX-License-Identifier: GPL-2.0

//! The program-type matrix (issue 7 §3): which BPF program types may call
//! the task kfuncs.
//!
//! One case per program of `progs/task_kfuncs_prog_types.bpf.c`, each the
//! same `rust_task_from_pid(1)` + release in a different program type, plus
//! struct_ops (the sched_ext scheduler of `progs/task_kfuncs_scx.bpf.c`,
//! loaded, not attached). An admitted type must load and, where the runner
//! can make it run, find init; a refused type must be rejected with the
//! verifier's message written above its program. The module decides the
//! list (`ADMITTED` in src/kfuncs.rs); the C-kfunc build skips the matrix.

use std::io::Read;
use std::mem::MaybeUninit;
use std::process::Command;

use anyhow::{bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{Iter, ProgramInput};

use crate::bpf::prog_types_skel::{TaskKfuncsProgTypesSkel, TaskKfuncsProgTypesSkelBuilder};
use crate::bpf::scx_skel::TaskKfuncsScxSkelBuilder;
use crate::bpf::{self, Annotations};
use crate::{Case, Outcome};

/// The matrix, one case per program type, in source order; struct_ops last.
pub fn cases() -> Result<Vec<Case>> {
    let annotations = bpf::annotations("task_kfuncs_prog_types", bpf::PROG_TYPES_OBJ)?;
    let open = libbpf_rs::ObjectBuilder::default()
        .open_memory(bpf::PROG_TYPES_OBJ)
        .context("opening the prog_types object")?;
    let mut cases = Vec::new();
    for prog in open.progs() {
        let prog = prog.name().to_string_lossy().into_owned();
        let ann = annotations
            .iter()
            .find(|(name, _)| *name == prog)
            .map(|(_, a)| a.clone())
            .unwrap_or_default();
        let name = format!("prog_type_{}", prog.trim_start_matches("type_"));
        cases.push(Case::new(name, move |_| check(&prog, ann)));
    }
    cases.push(Case::new("prog_type_struct_ops", |_| {
        if crate::C_KFUNCS {
            return Outcome::Skip(
                "the program-type matrix is task_kfuncs' own registration".into(),
            );
        }
        let mut storage = MaybeUninit::uninit();
        let loaded = TaskKfuncsScxSkelBuilder::default()
            .open(&mut storage)
            .context("opening the sched_ext skeleton")
            .and_then(|open| open.load().context("loading the sched_ext scheduler"));
        let outcome = match loaded {
            Ok(_) => Outcome::Pass,
            Err(e) => Outcome::Fail(format!("{e:#}"), bpf::take_log()),
        };
        outcome
    }));
    Ok(cases)
}

fn check(prog: &str, ann: Annotations) -> Outcome {
    if let Some(why) = ann.skip {
        return Outcome::Skip(why);
    }
    let mut storage = MaybeUninit::uninit();
    let loaded = TaskKfuncsProgTypesSkelBuilder::default()
        .open(&mut storage)
        .context("opening the prog_types skeleton")
        .and_then(|mut open| {
            bpf::select_program(open.open_object_mut(), prog)?;
            Ok(open.load())
        });
    match loaded {
        Err(e) => Outcome::Fail(format!("{e:#}"), bpf::take_log()),
        Ok(Err(e)) if ann.failure => {
            let log = bpf::take_log();
            match ann.msgs.iter().find(|msg| !log.contains(msg.as_str())) {
                None => Outcome::Pass,
                Some(missing) => Outcome::Fail(
                    format!("rejected ({e}), but the verifier log lacks \"{missing}\""),
                    log,
                ),
            }
        }
        Ok(Err(e)) => Outcome::Fail(format!("rejected: {e:#}"), bpf::take_log()),
        Ok(Ok(_)) if ann.failure => Outcome::Fail(
            "the verifier accepted the program".to_owned(),
            bpf::take_log(),
        ),
        Ok(Ok(skel)) => match trigger(&skel, prog) {
            Ok(0) => Outcome::fail("the program ran but from_pid(1) never found init"),
            Ok(_) => Outcome::Pass,
            Err(e) => Outcome::Fail(format!("{e:#}"), bpf::take_log()),
        },
    }
}

/// Makes the loaded program run; returns how often it found init.
fn trigger(skel: &TaskKfuncsProgTypesSkel<'_>, prog: &str) -> Result<i32> {
    let p = skel
        .object()
        .progs_mut()
        .find(|p| p.name() == prog)
        .with_context(|| format!("no program {prog}"))?;
    let link = p.attach().with_context(|| format!("attaching {prog}"));
    match prog {
        "type_syscall" => {
            p.test_run(ProgramInput::default())
                .context("BPF_PROG_TEST_RUN")?;
        }
        "type_iter" => {
            let mut out = Vec::new();
            Iter::new(&link?)
                .context("creating the task iterator")?
                .read_to_end(&mut out)
                .context("reading the task iterator")?;
        }
        // Every other admitted type hooks task creation: fork.
        _ => {
            let _link = link?;
            let status = Command::new("/bin/true")
                .status()
                .context("running /bin/true")?;
            if !status.success() {
                bail!("/bin/true failed: {status}");
            }
        }
    }
    Ok(skel
        .maps
        .bss_data
        .as_deref()
        .context("the skeleton has no .bss")?
        .hits)
}
