// SPDX-License-Identifier: GPL-2.0

//! The processes the cases need: a child that exits at once (for tracing
//! programs to see a fork), threads that exit, a child parked until
//! released (a live task that is not the runner), and [`fork`], the one way
//! to run Rust code in a child: with a pipe for its output, optionally as
//! pid 1 of a new pid namespace. Nothing else forks, pipes or waits by
//! hand; [`wait_until`] is the one way to wait for deferred kernel work.

use std::fs;
use std::io::{self, Read, Write};
use std::process::{Child, Command, Stdio};
use std::thread::{self, sleep};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// How long deferred kernel work (a dead task's final schedule, a map freed
/// from a work item after its last fd is closed, a state change) may take:
/// generous, for debug kernels under TCG; only a failing case waits this
/// long.
pub const DEFERRED: Duration = Duration::from_secs(20);

/// Checks `done` every 10 ms until it holds, for at most `limit`; returns
/// whether it held.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> Result<bool>) -> Result<bool> {
    let start = Instant::now();
    while !done()? {
        if start.elapsed() > limit {
            return Ok(false);
        }
        sleep(Duration::from_millis(10));
    }
    Ok(true)
}

/// `rounds` times, `n` threads that exit at once (each non-leader thread
/// reaps itself), joined.
pub fn threads(rounds: usize, n: usize) -> Result<()> {
    for _ in 0..rounds {
        let threads: Vec<_> = (0..n).map(|_| thread::spawn(thread::yield_now)).collect();
        for t in threads {
            t.join().map_err(|_| anyhow::anyhow!("a thread panicked"))?;
        }
    }
    Ok(())
}

/// Spawns a child that exits at once (`/bin/true`) and reaps it; returns its
/// pid. The runner's clone of it is what `tp_btf/task_newtask` programs see.
pub fn spawn_and_reap() -> Result<i32> {
    let mut child = Command::new("true")
        .stdin(Stdio::null())
        .spawn()
        .context("spawning `true`")?;
    let pid = child.id() as i32;
    let status = child.wait().context("waiting for `true`")?;
    if !status.success() {
        bail!("`true` exited with {status}");
    }
    Ok(pid)
}

/// `/proc/sys/kernel/pid_max`.
pub fn pid_max() -> Result<i32> {
    fs::read_to_string("/proc/sys/kernel/pid_max")
        .context("reading /proc/sys/kernel/pid_max")?
        .trim()
        .parse()
        .context("parsing /proc/sys/kernel/pid_max")
}

/// A child parked until dropped or [`Parked::finish`]ed: `cat` reading a
/// pipe from us, so that cases can hold references on a live task that is
/// not the runner. It exits when the pipe closes; a case that fails before
/// `finish` still reaps it (on drop).
pub struct Parked {
    child: Child,
}

impl Parked {
    pub fn spawn() -> Result<Self> {
        let child = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .context("spawning a parked child (`cat`)")?;
        Ok(Parked { child })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Closes the pipe, so that the child exits, and reaps it.
    pub fn finish(mut self) -> Result<()> {
        drop(self.child.stdin.take());
        let status = self.child.wait().context("waiting for the parked child")?;
        if !status.success() {
            bail!("the parked child exited with {status}");
        }
        Ok(())
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// A child made by [`fork`].
pub struct Forked {
    pid: i32,
    output: io::PipeReader,
}

/// Forks a child that runs `body` with the write end of a pipe and exits
/// with what `body` returns; with `new_pidns` the child is pid 1 of a new
/// pid namespace (clone(2) with CLONE_NEWPID).
///
/// The child is a copy of this process without its other threads: call it
/// while the runner is single-threaded, or give it a `body` that only makes
/// system calls.
pub fn fork(new_pidns: bool, body: impl FnOnce(&mut io::PipeWriter) -> i32) -> Result<Forked> {
    let (output, mut input) = io::pipe().context("pipe")?;
    let flags = libc::SIGCHLD | if new_pidns { libc::CLONE_NEWPID } else { 0 };
    // SAFETY: clone without CLONE_VM duplicates the address space as fork()
    // does; the caller keeps the other threads out of the child's way (see
    // above), and the child leaves with _exit below, never returning into
    // the parent's frames.
    let pid = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    match pid {
        -1 => bail!("clone: {}", io::Error::last_os_error()),
        0 => {
            drop(output);
            let code = body(&mut input);
            let _ = input.flush();
            // SAFETY: ends the child at once, without running the parent's
            // destructors a second time.
            unsafe { libc::_exit(code) }
        }
        pid => Ok(Forked {
            pid: pid as i32,
            output,
        }),
    }
}

impl Forked {
    /// The child's pid, in our pid namespace.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Reads what the child wrote until it exits, reaps it and returns its
    /// exit code (-1 when a signal ended it) and its output.
    pub fn wait(mut self) -> Result<(i32, String)> {
        let mut out = String::new();
        self.output
            .read_to_string(&mut out)
            .context("reading a child's output")?;
        let mut status = 0;
        // SAFETY: status is a valid out-pointer; pid is our own child.
        if unsafe { libc::waitpid(self.pid, &mut status, 0) } != self.pid {
            bail!("waitpid({}): {}", self.pid, io::Error::last_os_error());
        }
        let code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -1
        };
        Ok((code, out))
    }
}
