// SPDX-License-Identifier: GPL-2.0

//! A real struct_ops consumer: the sched_ext scheduler of
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
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::bpf::{self, Loaded, Obj};
use crate::process::{self, wait_until, DEFERRED};
use crate::{Case, Outcome};

pub const SCX: Obj = crate::obj!("task_kfuncs_scx");

const STATE: &str = "/sys/kernel/sched_ext/state";
const ROOT_OPS: &str = "/sys/kernel/sched_ext/root/ops";
/// `.name` of the struct_ops map.
const NAME: &str = "task_kfuncs";
/// `enum scx_exit_kind` (kernel/sched/ext.c): user space unregistered it.
const SCX_EXIT_UNREG: u64 = 64;

/// The workload while attached: forks, and rounds of threads.
const FORKS: usize = 100;
const THREAD_ROUNDS: usize = 10;
const THREADS: usize = 16;

pub fn cases() -> Vec<Case> {
    vec![Case::new("sched_ext_scheduler", |_| {
        run().unwrap_or_else(bpf::failed)
    })]
}

fn read_trimmed(path: &str) -> Result<String> {
    Ok(fs::read_to_string(path)
        .with_context(|| format!("reading {path}"))?
        .trim()
        .to_owned())
}

/// Waits until sched_ext's state is `want`.
fn wait_state(want: &str) -> Result<()> {
    if !wait_until(DEFERRED, || Ok(read_trimmed(STATE)? == want))? {
        bail!("{STATE} is not {want:?} after {DEFERRED:?}");
    }
    Ok(())
}

/// `rcu_users` of task `pid` (without the lookup's own reference), from the
/// scheduler object's syscall program.
fn rcu_users(skel: &Loaded, pid: u32) -> Result<i32> {
    // A syscall program's context is copied back into the input buffer.
    let mut args = [(pid as i32).to_ne_bytes(), (-1i32).to_ne_bytes()].concat();
    skel.test_run("tkf_task_users", &mut args)?;
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
    // Children that exit at once, without an exec: what the scheduler must
    // see is tasks coming and going.
    for _ in 0..FORKS {
        match process::fork(false, |_| 0)?.wait()? {
            (0, _) => {}
            (code, out) => bail!("a forked child exited with {code}: {out}"),
        }
    }
    process::threads(THREAD_ROUNDS, THREADS)
}

fn run() -> Result<Outcome> {
    if fs::metadata(STATE).is_err() {
        return Ok(Outcome::fail(format!(
            "{STATE} is missing: the kernel needs CONFIG_SCHED_CLASS_EXT=y"
        )));
    }
    wait_state("disabled").context("another sched_ext scheduler is attached")?;

    let mut skel = SCX.load(&[])?;
    let sentinel = Sentinel::spawn()?;
    let sentinel_pid = sentinel.0.id();
    let baseline = rcu_users(&skel, sentinel_pid)?;
    skel.set("sentinel_pid", sentinel_pid as i32)?;

    let link = skel
        .map_mut("task_kfuncs_scx")?
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
    let b = |name: &str| skel.get::<u64>(name);
    let attached = skel.globals();
    if state != "enabled" || b("exit_kind")? != 0 {
        return Ok(Outcome::fail(format!(
            "the scheduler was ejected during the workload: state {state:?}, exit kind {}, \
             reason {:?}\n{attached}",
            b("exit_kind")?,
            exit_reason(&skel)
        )));
    }
    if b("enqueued")? == 0
        || b("acquired")? == 0
        || b("stopping_found")? == 0
        || b("sentinel_enqueued")? == 0
    {
        return Ok(Outcome::fail(format!(
            "the scheduler did not schedule the workload\n{attached}"
        )));
    }

    drop(link);
    wait_state("disabled")?;
    let (acquired, released, exit_kind) = (b("acquired")?, b("released")?, b("exit_kind")?);
    let detached = format!(
        "acquired {acquired}, released {released}, exit kind {exit_kind}, reason {:?}",
        exit_reason(&skel)
    );
    if exit_kind != SCX_EXIT_UNREG {
        return Ok(Outcome::fail(format!(
            "the scheduler did not exit by unregistration\n{detached}"
        )));
    }
    if acquired != released {
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

/// The scheduler's `exit_reason`, a NUL-terminated `char[]`.
fn exit_reason(skel: &Loaded) -> String {
    let bytes = skel.get_bytes("exit_reason").unwrap_or_default();
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}
