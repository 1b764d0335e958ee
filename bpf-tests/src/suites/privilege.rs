// SPDX-License-Identifier: GPL-2.0

//! Who can use the kfuncs: each case lowers the runner's effective
//! capabilities to a few, as the kernel's test_loader does for
//! `__caps_unpriv`, loads programs of `progs/task_kfuncs_privilege.bpf.c`
//! (built against the module's kfuncs and against the kernel's own) and
//! opens the module's BTF by id, then restores them.
//!
//! The boundary these cases pin down (docs/privilege.md): loading a program
//! needs CAP_BPF (plus CAP_PERFMON for tracing types), but calling a kfunc
//! that lives in a module needs a file descriptor for the module's BTF, and
//! `BPF_BTF_GET_FD_BY_ID` (like `BPF_BTF_GET_NEXT_ID`) demands CAP_SYS_ADMIN.
//! Without it libbpf skips module BTF ("skipping module BTFs loading, missing
//! privileges") and then fails the load: "extern (func ksym)
//! 'rust_task_acquire': not found in kernel or module BTFs" (EINVAL).

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

use anyhow::{bail, Result};
use caps::{CapSet, Capability, CapsHashSet};

use crate::bpf::{self, Obj};
use crate::module::TASK_KFUNCS;
use crate::{Case, Outcome};

const EPERM: i32 = libc::EPERM;

/// What libbpf says when it could not read module BTF for a module kfunc.
const NOT_FOUND: &str = "not found in kernel or module BTFs";

/// What one attempt must give: it loads and runs (the program
/// found its task), it fails with this errno, or libbpf cannot find the
/// module's kfunc ([`NOT_FOUND`], EINVAL).
#[derive(Clone, Copy)]
enum Expect {
    Runs,
    Errno(i32),
    NoModuleBtf,
}

/// One attempt: a program calling the module's kfuncs or the kernel's own,
/// or opening the module's BTF by id (BPF_BTF_GET_FD_BY_ID).
#[derive(Clone, Copy, Debug)]
enum Try {
    Module(&'static str),
    Vmlinux(&'static str),
    ModuleBtfFd,
}

/// One case: its name, the capabilities it keeps effective, and the attempts
/// with what each must give.
type PrivilegeCase = (
    &'static str,
    &'static [Capability],
    &'static [(Try, Expect)],
);

use Capability::{CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN};
use Expect::{Errno, NoModuleBtf, Runs};
use Try::{Module, ModuleBtfFd, Vmlinux};

const MODULE: Obj = crate::obj!("rust/task_kfuncs_privilege");
const VMLINUX: Obj = crate::obj!("c/task_kfuncs_privilege");

#[rustfmt::skip]
const CASES: &[PrivilegeCase] = &[
    ("privilege_no_caps", &[], &[
        (Vmlinux("priv_syscall"), Errno(EPERM)),
        (Module("priv_syscall"), Errno(EPERM)),
        (ModuleBtfFd, Errno(EPERM)),
    ]),
    ("privilege_cap_bpf", &[CAP_BPF], &[
        (Vmlinux("priv_syscall"), Runs),
        (Module("priv_syscall"), NoModuleBtf),
        (Vmlinux("priv_tp_btf"), Errno(EPERM)),
        (ModuleBtfFd, Errno(EPERM)),
    ]),
    ("privilege_cap_bpf_perfmon", &[CAP_BPF, CAP_PERFMON], &[
        (Vmlinux("priv_tp_btf"), Runs),
        (Module("priv_tp_btf"), NoModuleBtf),
        (Module("priv_syscall"), NoModuleBtf),
        (ModuleBtfFd, Errno(EPERM)),
    ]),
    ("privilege_cap_sys_admin", &[CAP_SYS_ADMIN], &[
        (ModuleBtfFd, Runs),
        (Module("priv_tp_btf"), Runs),
        (Module("priv_syscall"), Runs),
    ]),
];

/// The privilege cases.
pub fn cases() -> Vec<Case> {
    CASES
        .iter()
        .map(|&(name, caps, tries)| {
            Case::new(name, move |_| run(caps, tries).unwrap_or_else(bpf::failed))
        })
        .collect()
}

/// The runner's effective capabilities, lowered for the life of the guard
/// (its permitted set stays, so they can be raised again).
struct Lowered(CapsHashSet);

impl Lowered {
    /// Keeps only `keep` in the effective set.
    fn to(keep: &[Capability]) -> Result<Self> {
        let saved = caps::read(None, CapSet::Effective)?;
        caps::set(None, CapSet::Effective, &keep.iter().copied().collect())?;
        Ok(Lowered(saved))
    }
}

impl Drop for Lowered {
    fn drop(&mut self) {
        // Raising effective capabilities within the permitted set cannot fail.
        let _ = caps::set(None, CapSet::Effective, &self.0);
    }
}

/// The errno of a failed load or syscall, from the "(os error N)" libbpf-rs
/// and std put in their messages.
fn errno_of(e: &anyhow::Error) -> Option<i32> {
    let text = format!("{e:#}");
    let at = text.rfind("(os error ")? + "(os error ".len();
    text[at..].split(')').next()?.parse().ok()
}

/// The id of the task_kfuncs module BTF (found with every capability).
fn module_btf_id() -> Result<u32> {
    for info in libbpf_rs::query::BtfInfoIter::default() {
        if info.name == TASK_KFUNCS.0 {
            return Ok(info.id);
        }
    }
    bail!("no BTF object named task_kfuncs: is the module loaded?")
}

/// One attempt: "ok" when it loaded and ran (or opened the BTF), "errno N
/// <message>" otherwise.
fn attempt(what: Try, btf_id: u32) -> String {
    let _ = bpf::take_log();
    let result = match what {
        ModuleBtfFd => {
            // SAFETY: a plain syscall wrapper; the fd, if any, is owned below.
            let fd = unsafe { libbpf_rs::libbpf_sys::bpf_btf_get_fd_by_id(btf_id) };
            if fd < 0 {
                Err(anyhow::Error::from(io::Error::last_os_error()))
            } else {
                // SAFETY: fd is a new descriptor nobody else owns; dropping
                // the OwnedFd closes it.
                drop(unsafe { OwnedFd::from_raw_fd(fd) });
                Ok(Outcome::Pass)
            }
        }
        Module(prog) => bpf::expect_success(MODULE, prog),
        Vmlinux(prog) => bpf::expect_success(VMLINUX, prog),
    };
    match result {
        Ok(Outcome::Pass) => "ok".to_owned(),
        Ok(o) => format!("errno 0 {o:?}"),
        Err(e) => format!(
            "errno {} {} [libbpf: {}]",
            errno_of(&e).unwrap_or(0),
            format!("{e:#}").replace('\n', " "),
            last_lines(&bpf::take_log(), 3)
        ),
    }
}

/// The last `n` non-empty lines of a libbpf log, on one line.
fn last_lines(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" / ")
}

/// Runs `tries` with only `caps` effective, then judges what each gave.
fn run(caps: &[Capability], tries: &'static [(Try, Expect)]) -> Result<Outcome> {
    let btf_id = module_btf_id()?;
    let lines: Vec<String> = {
        let _lowered = Lowered::to(caps)?;
        tries
            .iter()
            .map(|&(what, _)| attempt(what, btf_id))
            .collect()
    };
    let mut wrong = Vec::new();
    for (&(what, expect), line) in tries.iter().zip(&lines) {
        let (ok, want) = match expect {
            Runs => (line == "ok", "load and run".to_owned()),
            Errno(n) => (
                line.starts_with(&format!("errno {n} ")),
                format!("fail with errno {n}"),
            ),
            NoModuleBtf => (
                line.starts_with(&format!("errno {} ", libc::EINVAL)) && line.contains(NOT_FOUND),
                format!("fail with EINVAL, \"{NOT_FOUND}\""),
            ),
        };
        println!("# {what:?}: {line}");
        if !ok {
            wrong.push(format!("{what:?} must {want}, got: {line}"));
        }
    }
    Ok(if wrong.is_empty() {
        Outcome::Pass
    } else {
        Outcome::fail(wrong.join("\n"))
    })
}
