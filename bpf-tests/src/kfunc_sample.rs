// SPDX-License-Identifier: GPL-2.0

//! Cases for `samples/kfunc_sample`, the rust-kfuncs toolkit's sample module: its programs
//! (`progs/kfunc_sample.bpf.c`) call every sample kfunc, and those marked `__failure` must be
//! rejected with their `__msg`. The cases insmod the module first and rmmod it last.

use std::ffi::CStr;
use std::fs::File;
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{ProgramInput, ProgramMut};

use crate::bpf;
use crate::{Case, Outcome};

/// Skeleton of `progs/kfunc_sample.bpf.c`.
mod skel {
    include!(concat!(env!("OUT_DIR"), "/kfunc_sample.skel.rs"));
}

use skel::{types, KfuncSampleSkel, KfuncSampleSkelBuilder};

const OBJ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kfunc_sample.bpf.o"));
const NAME: &CStr = c"kfunc_sample";

/// How a success case runs its program.
#[derive(Clone, Copy)]
enum Trigger {
    /// BPF_PROG_TEST_RUN of a syscall program.
    TestRun,
    /// Attach, then spawn a child that exits at once.
    Fork,
}

/// Reads the mask of checks a program filled in its .bss.
type Mask = fn(&types::bss) -> u64;

/// (program, trigger, the .bss mask it fills, the bits that must be set).
const SUCCESS: &[(&str, Trigger, Mask, u64)] = &[
    (
        "scalars_of_each_width",
        Trigger::TestRun,
        |b| b.widths_ok,
        0x3f,
    ),
    ("bool_argument", Trigger::TestRun, |b| b.bool_ok, 0xf),
    ("memory_with_size", Trigger::TestRun, |b| b.mem_ok, 0x1f),
    ("pointer_to_scalar", Trigger::TestRun, |b| b.store_ok, 0x1),
    ("const_string", Trigger::TestRun, |b| b.str_ok, 0x1),
    ("enum_argument", Trigger::TestRun, |b| b.enum_ok, 0xf),
    ("task_pointers", Trigger::TestRun, |b| b.task_ok, 0x7),
    ("sleepable", Trigger::TestRun, |b| b.sleep_ok, 0x3),
    ("tracing_rcu_pointer", Trigger::Fork, |b| b.tracing_ok, 0x7),
];

/// The sample's cases: insmod, every program, rmmod. Case names start with `kfunc_sample:`.
pub fn cases(module: PathBuf) -> Result<Vec<Case>> {
    let mut cases = vec![Case::new("kfunc_sample: insmod", move |_| {
        outcome(insmod(&module))
    })];
    for &(prog, trigger, field, want) in SUCCESS {
        cases.push(Case::new(format!("kfunc_sample: {prog}"), move |_| {
            outcome(run(prog, trigger, field, want))
        }));
    }
    for (prog, ann) in bpf::annotations("kfunc_sample", OBJ)? {
        if !ann.failure {
            continue;
        }
        if ann.msgs.is_empty() {
            bail!("{prog} is marked __failure but has no __msg()");
        }
        cases.push(Case::new(format!("kfunc_sample: {prog}"), move |_| {
            rejected(&prog, &ann.msgs)
        }));
    }
    cases.push(Case::new("kfunc_sample: rmmod", |_| outcome(rmmod())));
    Ok(cases)
}

fn outcome(result: Result<Outcome>) -> Outcome {
    result.unwrap_or_else(|e| Outcome::fail_with_log(format!("{e:#}"), bpf::take_log()))
}

fn insmod(path: &Path) -> Result<Outcome> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: finit_module reads a module image from a valid open fd and a NUL-terminated
    // parameter string; neither is retained after the call.
    let ret = unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), c"".as_ptr(), 0) };
    if ret != 0 {
        bail!(
            "insmod {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(Outcome::Pass)
}

fn rmmod() -> Result<Outcome> {
    // Programs of earlier cases may still hold the module for an RCU grace period.
    let start = std::time::Instant::now();
    loop {
        // SAFETY: delete_module takes a NUL-terminated module name and flags.
        let ret =
            unsafe { libc::syscall(libc::SYS_delete_module, NAME.as_ptr(), libc::O_NONBLOCK) };
        if ret == 0 {
            return Ok(Outcome::Pass);
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) || start.elapsed().as_secs() > 20 {
            bail!("rmmod kfunc_sample: {err}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn open<'obj>(
    storage: &'obj mut MaybeUninit<libbpf_rs::OpenObject>,
    prog: &str,
) -> Result<skel::OpenKfuncSampleSkel<'obj>> {
    let mut open = KfuncSampleSkelBuilder::default()
        .open(storage)
        .context("opening the kfunc_sample skeleton")?;
    bpf::select_program(open.open_object_mut(), prog)?;
    let bss = open
        .maps
        .bss_data
        .as_deref_mut()
        .context("the skeleton has no .bss")?;
    // SAFETY: getpid and gettid cannot fail.
    bss.runner_pid = unsafe { libc::gettid() };
    bss.runner_tgid = std::process::id() as i32;
    Ok(open)
}

fn program<'a>(skel: &'a KfuncSampleSkel<'_>, name: &str) -> Result<ProgramMut<'a>> {
    skel.object()
        .progs_mut()
        .find(|p| p.name() == name)
        .with_context(|| format!("no program {name} in the loaded skeleton"))
}

fn run(prog: &str, trigger: Trigger, field: fn(&types::bss) -> u64, want: u64) -> Result<Outcome> {
    let mut storage = MaybeUninit::uninit();
    let skel = open(&mut storage, prog)?
        .load()
        .with_context(|| format!("loading {prog}"))?;
    let p = program(&skel, prog)?;
    match trigger {
        Trigger::TestRun => {
            let out = p
                .test_run(ProgramInput::default())
                .context("BPF_PROG_TEST_RUN")?;
            if out.return_value != 0 {
                bail!("{prog} returned {}", out.return_value);
            }
        }
        Trigger::Fork => {
            let _link = p.attach().context("attaching")?;
            crate::process::spawn_and_reap()?;
        }
    }
    let bss = skel.maps.bss_data.as_deref().context("no .bss")?;
    let got = field(bss);
    Ok(if got == want {
        Outcome::Pass
    } else {
        Outcome::fail(format!(
            "checks {:#x} failed (passed {got:#x} of {want:#x}); see {prog} in \
             progs/kfunc_sample.bpf.c, bit n is the n-th CHECK",
            want & !got
        ))
    })
}

fn rejected(prog: &str, msgs: &[String]) -> Outcome {
    let mut storage = MaybeUninit::uninit();
    let loaded = match open(&mut storage, prog) {
        Ok(open) => open.load().is_ok(),
        Err(e) => return Outcome::fail_with_log(format!("{e:#}"), bpf::take_log()),
    };
    let log = bpf::take_log();
    if loaded {
        return Outcome::fail_with_log("the verifier accepted the program", log);
    }
    match msgs.iter().find(|m| !log.contains(m.as_str())) {
        None => Outcome::Pass,
        Some(missing) => Outcome::fail_with_log(format!("verifier log lacks \"{missing}\""), log),
    }
}
