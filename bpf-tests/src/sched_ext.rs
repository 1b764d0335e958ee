// SPDX-License-Identifier: GPL-2.0

//! A real struct_ops consumer (issue 10 §4): the sched_ext scheduler of
//! `progs/task_kfuncs_scx.bpf.c`, whose callbacks hold a reference on every
//! queued task with the task kfuncs, attached while a workload churns
//! through forks and threads.
//!
//! The case passes when the scheduler attached (`/sys/kernel/sched_ext`
//! says enabled, `root/ops` names it), scheduled the workload, was still
//! attached afterwards (no watchdog or error ejection: its `ops.exit` did not
//! run), detached cleanly (exit kind `SCX_EXIT_UNREG`), and the references
//! balanced: every `rust_task_acquire` was matched by a `rust_task_release`
//! and a sentinel process's `rcu_users` is back where it started.

use std::fs;
use std::mem::MaybeUninit;
use std::process::{Child, Command, Stdio};
use std::thread::{self, sleep};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::ProgramInput;

use crate::bpf;
use crate::bpf::scx_skel::{types, TaskKfuncsScxSkel, TaskKfuncsScxSkelBuilder};
use crate::{Case, Outcome};

const STATE: &str = "/sys/kernel/sched_ext/state";
const ROOT_OPS: &str = "/sys/kernel/sched_ext/root/ops";
/// `.name` of the struct_ops map.
const NAME: &str = "task_kfuncs";
/// `enum scx_exit_kind` (kernel/sched/ext.c): user space unregistered it.
const SCX_EXIT_UNREG: u64 = 64;

/// The workload while attached: forks of /bin/true, and rounds of threads.
const FORKS: usize = 100;
const THREAD_ROUNDS: usize = 10;
const THREADS: usize = 16;

/// How long sched_ext may take to change state; only a failure waits.
const DEFERRED: Duration = Duration::from_secs(20);

pub fn cases() -> Vec<Case> {
    vec![Case::new("sched_ext_scheduler", |_| match run() {
        Ok(outcome) => outcome,
        Err(e) => Outcome::Fail(format!("{e:#}"), bpf::take_log()),
    })]
}

fn bss<'a>(skel: &'a TaskKfuncsScxSkel<'_>) -> Result<&'a types::bss> {
    skel.maps
        .bss_data
        .as_deref()
        .context("the skeleton has no .bss")
}

fn read_trimmed(path: &str) -> Result<String> {
    Ok(fs::read_to_string(path)
        .with_context(|| format!("reading {path}"))?
        .trim()
        .to_owned())
}

/// Waits until sched_ext's state is `want`.
fn wait_state(want: &str) -> Result<()> {
    let start = Instant::now();
    loop {
        let state = read_trimmed(STATE)?;
        if state == want {
            return Ok(());
        }
        if start.elapsed() > DEFERRED {
            bail!("{STATE} is {state:?}, want {want:?} after {DEFERRED:?}");
        }
        sleep(Duration::from_millis(10));
    }
}

/// `rcu_users` of task `pid` (without the lookup's own reference), from the
/// scheduler object's syscall program.
fn rcu_users(skel: &TaskKfuncsScxSkel<'_>, pid: u32) -> Result<i32> {
    let prog = skel
        .object()
        .progs_mut()
        .find(|p| p.name() == "tkf_task_users")
        .context("no program tkf_task_users")?;
    // A syscall program's context is copied back into the input buffer.
    let mut args = [(pid as i32).to_ne_bytes(), (-1i32).to_ne_bytes()].concat();
    let input = ProgramInput {
        context_in: Some(&mut args),
        ..Default::default()
    };
    prog.test_run(input).context("BPF_PROG_TEST_RUN")?;
    let users = i32::from_ne_bytes(args[4..8].try_into()?);
    if users < 0 {
        bail!("task {pid} not found");
    }
    Ok(users)
}

/// A process that sleeps in short steps, so that it is enqueued again and
/// again while the scheduler is attached; killed when dropped.
struct Sentinel(Child);

impl Sentinel {
    fn spawn() -> Result<Self> {
        Command::new("sh")
            .args(["-c", "while :; do sleep 0.05; done"])
            .stdout(Stdio::null())
            .spawn()
            .map(Sentinel)
            .context("starting the sentinel shell")
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn workload() -> Result<()> {
    for _ in 0..FORKS {
        Command::new("/bin/true")
            .status()
            .context("forking /bin/true")?;
    }
    for _ in 0..THREAD_ROUNDS {
        let threads: Vec<_> = (0..THREADS)
            .map(|_| thread::spawn(thread::yield_now))
            .collect();
        for t in threads {
            t.join().map_err(|_| anyhow::anyhow!("a thread panicked"))?;
        }
    }
    Ok(())
}

fn run() -> Result<Outcome> {
    if fs::metadata(STATE).is_err() {
        return Ok(Outcome::fail(format!(
            "{STATE} is missing: the kernel needs CONFIG_SCHED_CLASS_EXT=y"
        )));
    }
    wait_state("disabled").context("another sched_ext scheduler is attached")?;

    let mut storage = MaybeUninit::uninit();
    let mut skel = TaskKfuncsScxSkelBuilder::default()
        .open(&mut storage)
        .context("opening the sched_ext skeleton")?
        .load()
        .context("loading the sched_ext scheduler")?;
    let sentinel = Sentinel::spawn()?;
    let sentinel_pid = sentinel.0.id();
    let baseline = rcu_users(&skel, sentinel_pid)?;
    skel.maps
        .bss_data
        .as_deref_mut()
        .context("the skeleton has no .bss")?
        .sentinel_pid = sentinel_pid as i32;

    let link = skel
        .maps
        .task_kfuncs_scx
        .attach_struct_ops()
        .context("attaching the sched_ext scheduler")?;
    wait_state("enabled")?;
    let ops = read_trimmed(ROOT_OPS)?;
    if ops != NAME {
        return Ok(Outcome::fail(format!(
            "{ROOT_OPS} is {ops:?}, want {NAME:?}"
        )));
    }
    workload()?;
    sleep(Duration::from_millis(500));

    let state = read_trimmed(STATE)?;
    let b = bss(&skel)?;
    let attached = format!(
        "enqueued {} (sentinel {}), acquired {} (NULL {}), released {}, no slot {}, \
         stopping found {} / missed {}",
        b.enqueued,
        b.sentinel_enqueued,
        b.acquired,
        b.acquire_null,
        b.released,
        b.no_slot,
        b.stopping_found,
        b.stopping_missed
    );
    if state != "enabled" || b.exit_kind != 0 {
        return Ok(Outcome::fail(format!(
            "the scheduler was ejected during the workload: state {state:?}, exit kind {}, \
             reason {:?}\n{attached}",
            b.exit_kind,
            cstr(&b.exit_reason)
        )));
    }
    if b.enqueued == 0 || b.acquired == 0 || b.stopping_found == 0 || b.sentinel_enqueued == 0 {
        return Ok(Outcome::fail(format!(
            "the scheduler did not schedule the workload\n{attached}"
        )));
    }

    drop(link);
    wait_state("disabled")?;
    let b = bss(&skel)?;
    let detached = format!(
        "acquired {}, released {}, exit kind {}, reason {:?}",
        b.acquired,
        b.released,
        b.exit_kind,
        cstr(&b.exit_reason)
    );
    if b.exit_kind != SCX_EXIT_UNREG {
        return Ok(Outcome::fail(format!(
            "the scheduler did not exit by unregistration\n{detached}"
        )));
    }
    if b.acquired != b.released {
        return Ok(Outcome::fail(format!(
            "references do not balance after the detach\n{detached}"
        )));
    }
    let users = rcu_users(&skel, sentinel_pid)?;
    if users != baseline {
        return Ok(Outcome::fail(format!(
            "the sentinel's rcu_users is {users}, was {baseline} before the attach\n{detached}"
        )));
    }
    drop(sentinel);
    println!("# sched_ext_scheduler: while attached: {attached}");
    println!("# sched_ext_scheduler: after the detach: {detached}; sentinel rcu_users {users}");
    Ok(Outcome::Pass)
}

/// The text of a NUL-terminated `char[]` from the program's globals.
fn cstr(bytes: &[i8]) -> String {
    let bytes: Vec<u8> = bytes
        .iter()
        .map(|&b| b as u8)
        .take_while(|&b| b != 0)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}
