// SPDX-License-Identifier: GPL-2.0

//! libbpf plumbing shared by the suites: capture of libbpf's output (which
//! carries the verifier log of a failed load), and the annotations each
//! program carries as BTF decl tags (see `progs/task_kfuncs_common.h`). The
//! skeletons live with their kfunc variant ([`crate::kfuncs_rust`],
//! [`crate::kfuncs_c`]); the Rust ones are re-exported here.

use std::ffi::OsStr;
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use libbpf_rs::btf::types::{DeclTag, Func};
use libbpf_rs::btf::{Btf, ReferencesType};
use libbpf_rs::{OpenObject, PrintLevel};

pub use crate::kfuncs_rust::skel::{failure_skel, success_skel, FAILURE_OBJ, SUCCESS_OBJ};

/// Skeleton of `progs/task_kfuncs_prog_types.bpf.c`.
pub mod prog_types_skel {
    include!(concat!(env!("OUT_DIR"), "/task_kfuncs_prog_types.skel.rs"));
}

/// Skeleton of `progs/task_kfuncs_privilege.bpf.c`.
pub mod privilege_skel {
    include!(concat!(env!("OUT_DIR"), "/task_kfuncs_privilege.skel.rs"));
}

/// Skeleton of `progs/task_kfuncs_privilege_vmlinux.bpf.c`.
pub mod privilege_vmlinux_skel {
    include!(concat!(
        env!("OUT_DIR"),
        "/task_kfuncs_privilege_vmlinux.skel.rs"
    ));
}

/// Skeleton of `progs/task_kfuncs_scx.bpf.c`.
pub mod scx_skel {
    include!(concat!(env!("OUT_DIR"), "/task_kfuncs_scx.skel.rs"));
}

/// The object files behind the Rust-only skeletons, for reading their BTF.
pub const PROG_TYPES_OBJ: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/task_kfuncs_prog_types.bpf.o"));

/// Everything libbpf printed since the last [`take_log`].
static LOG: Mutex<String> = Mutex::new(String::new());

fn capture(_level: PrintLevel, msg: String) {
    if let Ok(mut log) = LOG.lock() {
        log.push_str(&msg);
    }
}

/// Routes libbpf's messages (verifier logs included) into the capture buffer.
pub fn capture_libbpf_output() {
    libbpf_rs::set_print(Some((PrintLevel::Debug, capture)));
}

/// Returns and clears what libbpf printed since the last call.
pub fn take_log() -> String {
    LOG.lock()
        .map(|mut log| std::mem::take(&mut *log))
        .unwrap_or_default()
}

/// The annotations of one program, from the decl tags of its BTF `FUNC`.
#[derive(Debug, Default, Clone)]
pub struct Annotations {
    /// `__failure`: the verifier must reject the program.
    pub failure: bool,
    /// `__msg(...)`: strings the verifier log must contain.
    pub msgs: Vec<String>,
    /// `__c_skip(...)`: why the case is skipped in this build.
    pub skip: Option<String>,
}

/// Reads the `task_kfuncs:` decl tags of every function in an object,
/// returned as (function name, annotations) in BTF order.
pub fn annotations(obj_name: &str, obj: &[u8]) -> Result<Vec<(String, Annotations)>> {
    let btf = Btf::from_raw(obj_name, obj)
        .with_context(|| format!("parsing the BTF of {obj_name}"))?
        .with_context(|| format!("{obj_name} has no BTF"))?;
    let mut out: Vec<(String, Annotations)> = Vec::new();
    for tag in btf.type_by_kind::<DeclTag<'_>>() {
        let Some(text) = tag.name().and_then(OsStr::to_str) else {
            continue;
        };
        let Some(text) = text.strip_prefix("task_kfuncs:") else {
            continue;
        };
        let Ok(func) = Func::try_from(tag.referenced_type()) else {
            continue;
        };
        let Some(name) = func.name().and_then(OsStr::to_str) else {
            continue;
        };
        let idx = match out.iter().position(|(n, _)| n == name) {
            Some(idx) => idx,
            None => {
                out.push((name.to_owned(), Annotations::default()));
                out.len() - 1
            }
        };
        let ann = &mut out[idx].1;
        if text == "failure" {
            ann.failure = true;
        } else if let Some(msg) = text.strip_prefix("msg=") {
            ann.msgs.push(msg.to_owned());
        } else if let Some(why) = text.strip_prefix("skip=") {
            ann.skip = Some(why.to_owned());
        } else {
            bail!("{obj_name}: {name} has an unknown annotation {text:?}");
        }
    }
    Ok(out)
}

/// Marks `prog` as the only program of `obj` that gets loaded.
pub fn select_program(obj: &mut OpenObject, prog: &str) -> Result<()> {
    let mut found = false;
    for mut p in obj.progs_mut() {
        let this = p.name() == prog;
        found |= this;
        p.set_autoload(this);
    }
    if !found {
        bail!("no BPF program named {prog}");
    }
    Ok(())
}
