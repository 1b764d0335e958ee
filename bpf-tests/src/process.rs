// SPDX-License-Identifier: GPL-2.0

//! The child processes the cases need: a fork for tracing programs to see,
//! a child parked until released (a live task that is not the runner), and
//! a child in a new pid namespace. std::process does the first two; only the
//! last needs a raw clone(2), because the child must run Rust code (a
//! BPF_PROG_TEST_RUN) rather than exec a program.

use std::io;
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};

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

/// A child parked until dropped or [`Parked::finish`]ed: `cat` reading a
/// pipe from us, so that cases can hold references on a live task that is
/// not the runner. It exits when the pipe closes.
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

/// A case that fails before [`Parked::finish`] still reaps its child: the
/// pipe closes, `cat` exits, and no zombie outlives the case.
impl Drop for Parked {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// Clones a child into a new pid namespace, where it is pid 1, runs `f` in
/// it and exits with what `f` returns; the parent reaps it and returns
/// `(child pid in our namespace, exit code)`.
///
/// `f` runs in a copy of this process made by clone(2) without CLONE_VM
/// (like fork): it must not rely on other threads (the runner has none) and
/// should only make system calls.
pub fn in_new_pidns(f: impl FnOnce() -> i32) -> Result<(i32, i32)> {
    // SAFETY: clone without CLONE_VM duplicates the address space like
    // fork(); the runner is single-threaded, so no lock is held by a thread
    // that does not exist in the child. The child runs `f` and `_exit`s
    // without returning into the parent's stack frames.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::CLONE_NEWPID | libc::SIGCHLD,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    } as i32;
    if pid == -1 {
        bail!("clone(CLONE_NEWPID): {}", io::Error::last_os_error());
    }
    if pid == 0 {
        let code = f();
        // SAFETY: _exit ends the child at once; it never returns.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: status is a valid out-pointer for waitpid; pid is our child.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        bail!("waitpid({pid}): {}", io::Error::last_os_error());
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    Ok((pid, code))
}
