// SPDX-License-Identifier: GPL-2.0

//! Who can use the kfuncs: each case lowers the runner's effective
//! capabilities to a few, as the kernel's test_loader does for
//! `__caps_unpriv`, loads programs of `progs/task_kfuncs_privilege.bpf.c`
//! (the module's kfuncs) or `progs/task_kfuncs_privilege_vmlinux.bpf.c` (the
//! kernel's own) and opens the module's BTF by id, then restores them.
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

use crate::bpf::{self, Obj};
use crate::module::TASK_KFUNCS;
use crate::{Case, Outcome};

/// Capability numbers (include/uapi/linux/capability.h).
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

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

/// One attempt: a program of the privilege object, or opening the module's
/// BTF by id (BPF_BTF_GET_FD_BY_ID).
#[derive(Clone, Copy, Debug)]
enum Try {
    Prog(&'static str),
    ModuleBtfFd,
}

/// One case: its name, the capabilities it keeps effective, and the attempts
/// with what each must give.
type PrivilegeCase = (&'static str, &'static [u32], &'static [(Try, Expect)]);

use Expect::{Errno, NoModuleBtf, Runs};
use Try::{ModuleBtfFd, Prog};

const PRIVILEGE: Obj = crate::obj!("task_kfuncs_privilege");
const PRIVILEGE_VMLINUX: Obj = crate::obj!("task_kfuncs_privilege_vmlinux");

#[rustfmt::skip]
const CASES: &[PrivilegeCase] = &[
    ("privilege_no_caps", &[], &[
        (Prog("priv_syscall_vmlinux_kfunc"), Errno(EPERM)),
        (Prog("priv_syscall_module_kfunc"), Errno(EPERM)),
        (ModuleBtfFd, Errno(EPERM)),
    ]),
    ("privilege_cap_bpf", &[CAP_BPF], &[
        (Prog("priv_syscall_vmlinux_kfunc"), Runs),
        (Prog("priv_syscall_module_kfunc"), NoModuleBtf),
        (Prog("priv_tp_btf_vmlinux_kfunc"), Errno(EPERM)),
        (ModuleBtfFd, Errno(EPERM)),
    ]),
    ("privilege_cap_bpf_perfmon", &[CAP_BPF, CAP_PERFMON], &[
        (Prog("priv_tp_btf_vmlinux_kfunc"), Runs),
        (Prog("priv_tp_btf_module_kfunc"), NoModuleBtf),
        (Prog("priv_syscall_module_kfunc"), NoModuleBtf),
        (ModuleBtfFd, Errno(EPERM)),
    ]),
    ("privilege_cap_sys_admin", &[CAP_SYS_ADMIN], &[
        (ModuleBtfFd, Runs),
        (Prog("priv_tp_btf_module_kfunc"), Runs),
        (Prog("priv_syscall_module_kfunc"), Runs),
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

/// capget(2)/capset(2) data, `_LINUX_CAPABILITY_VERSION_3`: two 32-bit
/// halves.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_V3: u32 = 0x2008_0522;

/// The runner's effective capabilities, lowered for the life of the guard
/// (its permitted set stays, so they can be raised again).
struct Lowered([CapData; 2]);

impl Lowered {
    /// Keeps only `keep` in the effective set.
    fn to(keep: &[u32]) -> io::Result<Self> {
        let mut header = CapHeader {
            version: CAP_V3,
            pid: 0,
        };
        let mut saved = [CapData::default(); 2];
        // SAFETY: header and saved are valid for capget's writes (one
        // header, two data structs for version 3).
        if unsafe { libc::syscall(libc::SYS_capget, &mut header, saved.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut lowered = saved;
        for (i, half) in lowered.iter_mut().enumerate() {
            half.effective = keep
                .iter()
                .filter(|&&cap| cap / 32 == i as u32)
                .fold(0, |m, &cap| m | 1 << (cap % 32));
        }
        set(&lowered)?;
        Ok(Lowered(saved))
    }
}

impl Drop for Lowered {
    fn drop(&mut self) {
        // Raising effective capabilities within the permitted set cannot fail.
        let _ = set(&self.0);
    }
}

fn set(data: &[CapData; 2]) -> io::Result<()> {
    let header = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    // SAFETY: header and data are valid for capset's reads.
    if unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
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
        Prog(prog) => {
            let obj = if prog.ends_with("module_kfunc") {
                PRIVILEGE
            } else {
                PRIVILEGE_VMLINUX
            };
            bpf::expect_success(obj, prog)
        }
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
fn run(caps: &[u32], tries: &'static [(Try, Expect)]) -> Result<Outcome> {
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
