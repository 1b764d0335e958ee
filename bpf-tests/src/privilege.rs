// SPDX-License-Identifier: GPL-2.0

//! Who can use the kfuncs (issue 7 §6): each case forks a child that keeps
//! only some capabilities (capset(2)) and loads, in that child, programs of
//! `progs/task_kfuncs_privilege.bpf.c` calling either the module's kfuncs or
//! the kernel's own, then reports what happened through a pipe.
//!
//! The boundary these cases pin down (docs/privilege.md): loading a program
//! needs CAP_BPF (plus CAP_PERFMON for tracing types), but calling a kfunc
//! that lives in a module needs a file descriptor for the module's BTF, and
//! `BPF_BTF_GET_FD_BY_ID` (like `BPF_BTF_GET_NEXT_ID`) demands CAP_SYS_ADMIN.
//! Without it libbpf skips module BTF ("skipping module BTFs loading, missing
//! privileges") and then fails the load: "extern (func ksym)
//! 'rust_task_acquire': not found in kernel or module BTFs" (EINVAL).
//!
//! The child is a fork of the runner, which is single-threaded: the child
//! may use libbpf and the allocator freely.

use std::fs::File;
use std::io::{Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::FromRawFd;
use std::process::Command;

use anyhow::{bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::ProgramInput;

use crate::bpf;
use crate::bpf::privilege_skel::TaskKfuncsPrivilegeSkelBuilder;
use crate::bpf::privilege_vmlinux_skel::TaskKfuncsPrivilegeVmlinuxSkelBuilder;
use crate::{Case, Outcome};

/// Capability numbers (include/uapi/linux/capability.h).
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

const EPERM: i32 = libc::EPERM;

/// What libbpf says when it could not read module BTF for a module kfunc.
const NOT_FOUND: &str = "not found in kernel or module BTFs";

/// What one attempt in the child must give: it loads and runs (the program
/// found its task), it fails with this errno, or libbpf cannot find the
/// module's kfunc ([`NOT_FOUND`], EINVAL).
#[derive(Clone, Copy)]
enum Expect {
    Runs,
    Errno(i32),
    NoModuleBtf,
}

/// One attempt: a program of the privilege object, or opening the module's
/// BTF by id.
#[derive(Clone, Copy)]
enum Try {
    Prog(&'static str),
    ModuleBtfFd,
}

/// One case: its name, the capabilities the child keeps, and the attempts
/// with what each must give.
type PrivilegeCase = (&'static str, &'static [u32], &'static [(Try, Expect)]);

const CASES: &[PrivilegeCase] = &[
    (
        "privilege_no_caps",
        &[],
        &[
            (
                Try::Prog("priv_syscall_vmlinux_kfunc"),
                Expect::Errno(EPERM),
            ),
            (Try::Prog("priv_syscall_module_kfunc"), Expect::Errno(EPERM)),
            (Try::ModuleBtfFd, Expect::Errno(EPERM)),
        ],
    ),
    (
        "privilege_cap_bpf",
        &[CAP_BPF],
        &[
            (Try::Prog("priv_syscall_vmlinux_kfunc"), Expect::Runs),
            (Try::Prog("priv_syscall_module_kfunc"), Expect::NoModuleBtf),
            (Try::Prog("priv_tp_btf_vmlinux_kfunc"), Expect::Errno(EPERM)),
            (Try::ModuleBtfFd, Expect::Errno(EPERM)),
        ],
    ),
    (
        "privilege_cap_bpf_perfmon",
        &[CAP_BPF, CAP_PERFMON],
        &[
            (Try::Prog("priv_tp_btf_vmlinux_kfunc"), Expect::Runs),
            (Try::Prog("priv_tp_btf_module_kfunc"), Expect::NoModuleBtf),
            (Try::Prog("priv_syscall_module_kfunc"), Expect::NoModuleBtf),
            (Try::ModuleBtfFd, Expect::Errno(EPERM)),
        ],
    ),
    (
        "privilege_cap_sys_admin",
        &[CAP_SYS_ADMIN],
        &[
            (Try::ModuleBtfFd, Expect::Runs),
            (Try::Prog("priv_tp_btf_module_kfunc"), Expect::Runs),
            (Try::Prog("priv_syscall_module_kfunc"), Expect::Runs),
        ],
    ),
];

/// The privilege cases; skipped in the C-kfunc build, where every kfunc is
/// in vmlinux and the module BTF boundary does not exist.
pub fn cases() -> Vec<Case> {
    CASES
        .iter()
        .map(|&(name, caps, tries)| {
            Case::new(name, move |_| {
                if crate::C_KFUNCS {
                    return Outcome::Skip(
                        "the kernel's C kfuncs are in vmlinux BTF: no module BTF boundary".into(),
                    );
                }
                match run(caps, tries) {
                    Ok(outcome) => outcome,
                    Err(e) => Outcome::Fail(format!("{e:#}"), bpf::take_log()),
                }
            })
        })
        .collect()
}

/// capset(2) data, `_LINUX_CAPABILITY_VERSION_3`: two 32-bit halves.
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

/// Keeps exactly `caps` in the effective and permitted sets of this process.
fn keep_only(caps: &[u32]) -> std::io::Result<()> {
    let header = CapHeader {
        version: 0x2008_0522,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    for &cap in caps {
        let half = &mut data[(cap / 32) as usize];
        half.effective |= 1 << (cap % 32);
        half.permitted |= 1 << (cap % 32);
    }
    // SAFETY: header and data are valid for capset's reads (one header, two
    // data structs for version 3).
    if unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
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

/// The id of the task_kfuncs module BTF (found as root, before the fork).
fn module_btf_id() -> Result<u32> {
    for info in libbpf_rs::query::BtfInfoIter::default() {
        if info.name == "task_kfuncs" {
            return Ok(info.id);
        }
    }
    bail!("no BTF object named task_kfuncs: is the module loaded?")
}

/// In the child: one attempt; Ok(()) when it loaded and ran.
fn attempt(what: Try, btf_id: u32) -> Result<()> {
    match what {
        Try::ModuleBtfFd => {
            // SAFETY: a plain syscall wrapper; the fd, if any, is closed below.
            let fd = unsafe { libbpf_rs::libbpf_sys::bpf_btf_get_fd_by_id(btf_id) };
            if fd < 0 {
                return Err(std::io::Error::last_os_error())
                    .context("BPF_BTF_GET_FD_BY_ID of the task_kfuncs BTF");
            }
            // SAFETY: fd is ours.
            unsafe { libc::close(fd) };
            Ok(())
        }
        Try::Prog(prog) => {
            let mut storage = MaybeUninit::uninit();
            if prog.ends_with("module_kfunc") {
                let mut open = TaskKfuncsPrivilegeSkelBuilder::default()
                    .open(&mut storage)
                    .context("opening the privilege skeleton")?;
                bpf::select_program(open.open_object_mut(), prog)?;
                let skel = open.load().with_context(|| format!("loading {prog}"))?;
                run_prog(skel.object(), prog)?;
                check_hits(skel.maps.bss_data.as_deref().map(|b| b.hits), prog)
            } else {
                let mut open = TaskKfuncsPrivilegeVmlinuxSkelBuilder::default()
                    .open(&mut storage)
                    .context("opening the privilege_vmlinux skeleton")?;
                bpf::select_program(open.open_object_mut(), prog)?;
                let skel = open.load().with_context(|| format!("loading {prog}"))?;
                run_prog(skel.object(), prog)?;
                check_hits(skel.maps.bss_data.as_deref().map(|b| b.hits), prog)
            }
        }
    }
}

/// Runs the loaded `prog`: a test run for syscall programs, else attach it
/// to task_newtask and fork.
fn run_prog(obj: &libbpf_rs::Object, prog: &str) -> Result<()> {
    let p = obj
        .progs_mut()
        .find(|p| p.name() == prog)
        .with_context(|| format!("no program {prog}"))?;
    if prog.starts_with("priv_syscall") {
        p.test_run(ProgramInput::default())
            .context("BPF_PROG_TEST_RUN")?;
    } else {
        let _link = p.attach().with_context(|| format!("attaching {prog}"))?;
        Command::new("/bin/true")
            .status()
            .context("forking /bin/true")?;
    }
    Ok(())
}

fn check_hits(hits: Option<i32>, prog: &str) -> Result<()> {
    match hits {
        None => bail!("the skeleton has no .bss"),
        Some(0) => bail!("{prog} loaded but never found its task"),
        Some(_) => Ok(()),
    }
}

/// The last `n` non-empty lines of a libbpf log, on one line.
fn last_lines(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" / ")
}

fn describe(what: Try) -> String {
    match what {
        Try::Prog(p) => p.to_owned(),
        Try::ModuleBtfFd => "BPF_BTF_GET_FD_BY_ID(task_kfuncs)".to_owned(),
    }
}

/// Forks, keeps `caps` in the child, runs `tries` there; the child writes
/// one line per attempt ("ok" or "errno N <message>") into a pipe.
fn run(caps: &[u32], tries: &'static [(Try, Expect)]) -> Result<Outcome> {
    let btf_id = module_btf_id()?;
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        bail!("pipe: {}", std::io::Error::last_os_error());
    }
    // SAFETY: the runner is single-threaded, so the child may allocate and
    // use libbpf; it leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid == -1 {
        bail!("fork: {}", std::io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: the read end belongs to the parent; the write end is ours.
        let mut out = unsafe {
            libc::close(fds[0]);
            File::from_raw_fd(fds[1])
        };
        let mut report = String::new();
        match keep_only(caps) {
            Err(e) => report.push_str(&format!("capset failed: {e}\n")),
            Ok(()) => {
                for &(what, _) in tries {
                    let _ = bpf::take_log();
                    let line = match attempt(what, btf_id) {
                        Ok(()) => "ok".to_owned(),
                        Err(e) => format!(
                            "errno {} {} [libbpf: {}]",
                            errno_of(&e).unwrap_or(0),
                            format!("{e:#}").replace('\n', " "),
                            last_lines(&bpf::take_log(), 3)
                        ),
                    };
                    report.push_str(&line);
                    report.push('\n');
                }
            }
        }
        let _ = out.write_all(report.as_bytes());
        drop(out);
        // SAFETY: _exit never returns and runs no destructors of the parent's state.
        unsafe { libc::_exit(0) };
    }
    // SAFETY: the write end belongs to the child; the read end is ours.
    let mut input = unsafe {
        libc::close(fds[1]);
        File::from_raw_fd(fds[0])
    };
    let mut report = String::new();
    input
        .read_to_string(&mut report)
        .context("reading the child's report")?;
    let mut status = 0;
    // SAFETY: status is a valid out-pointer.
    unsafe { libc::waitpid(pid, &mut status, 0) };

    let lines: Vec<&str> = report.lines().collect();
    if lines.len() != tries.len() {
        return Ok(Outcome::fail(format!(
            "the child reported {} of {} attempts:\n{report}",
            lines.len(),
            tries.len()
        )));
    }
    let mut wrong = Vec::new();
    for (&(what, expect), line) in tries.iter().zip(&lines) {
        let ok = match expect {
            Expect::Runs => *line == "ok",
            Expect::Errno(n) => line.starts_with(&format!("errno {n} ")),
            Expect::NoModuleBtf => {
                line.starts_with(&format!("errno {} ", libc::EINVAL)) && line.contains(NOT_FOUND)
            }
        };
        let want = match expect {
            Expect::Runs => "load and run".to_owned(),
            Expect::Errno(n) => format!("fail with errno {n}"),
            Expect::NoModuleBtf => format!("fail with EINVAL, \"{NOT_FOUND}\""),
        };
        println!("# {}: {line}", describe(what));
        if !ok {
            wrong.push(format!("{} must {want}, got: {line}", describe(what)));
        }
    }
    Ok(if wrong.is_empty() {
        Outcome::Pass
    } else {
        Outcome::fail(wrong.join("\n"))
    })
}
