// SPDX-License-Identifier: GPL-2.0

//! The program-type matrix: which BPF program types may call the task
//! kfuncs (docs/program-types.md). One case per program of
//! `progs/task_kfuncs_prog_types.bpf.c`, each the same
//! `rust_task_from_pid(1)` + release in another program type: an admitted
//! type must load and find init when triggered as its section says, a
//! refused one must be rejected with the verifier's message written above
//! it ([`bpf::table`]). struct_ops is the sched_ext scheduler of
//! `progs/task_kfuncs_scx.bpf.c`, loaded, not attached (the `sched_ext`
//! case attaches it).

use anyhow::Result;

use crate::bpf::{self, Obj};
use crate::{Case, Outcome};

const PROG_TYPES: Obj = crate::obj!("task_kfuncs_prog_types");

/// The matrix, one case per program type, in source order; struct_ops last.
pub fn cases() -> Result<Vec<Case>> {
    // The programs are named type_<type>: the cases prog_type_<type>.
    let mut cases = bpf::table(PROG_TYPES, "prog_", &[])?;
    cases.push(Case::new(
        "prog_type_struct_ops",
        |_| match super::sched_ext::SCX.load(&[]) {
            Ok(_) => Outcome::Pass,
            Err(e) => bpf::failed(e),
        },
    ));
    Ok(cases)
}
