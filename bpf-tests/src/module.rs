// SPDX-License-Identifier: GPL-2.0

//! Loading and unloading task_kfuncs.ko with finit_module(2) and
//! delete_module(2), as insmod and rmmod do.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// The module's name, as in /sys/module and /sys/kernel/btf.
pub const NAME: &str = "task_kfuncs";
const NAME_C: &CStr = c"task_kfuncs";

/// How long an rmmod may be refused while freed programs drop their module
/// references (program teardown is deferred past an RCU grace period).
pub const UNLOAD_GRACE: Duration = Duration::from_secs(20);

/// Whether the module is loaded.
pub fn is_loaded() -> bool {
    Path::new("/sys/module").join(NAME).exists()
}

/// Loads the module from `path` (insmod).
pub fn insmod(path: &Path) -> io::Result<()> {
    let file = File::open(path)?;
    // SAFETY: finit_module reads a module image from a valid open fd and a
    // NUL-terminated parameter string; neither is retained after the call.
    let ret = unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), c"".as_ptr(), 0) };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Unloads the module once (rmmod). While the module is in use this fails
/// with EWOULDBLOCK (delete_module with O_NONBLOCK, as rmmod calls it).
pub fn rmmod() -> io::Result<()> {
    // SAFETY: delete_module takes a NUL-terminated module name and flags.
    let ret = unsafe { libc::syscall(libc::SYS_delete_module, NAME_C.as_ptr(), libc::O_NONBLOCK) };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Unloads the module, retrying while it is busy for up to `grace`.
pub fn rmmod_waiting(grace: Duration) -> Result<Duration> {
    let start = Instant::now();
    loop {
        match rmmod() {
            Ok(()) => return Ok(start.elapsed()),
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) && start.elapsed() < grace => {
                sleep(Duration::from_millis(20));
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("rmmod {NAME} (still failing after {:?})", start.elapsed())
                })
            }
        }
    }
}

/// The module as this run found it: loaded by us (and so to be removed at
/// the end) or not.
pub struct Loaded {
    by_us: bool,
}

impl Loaded {
    /// Loads the module from `path` unless it is already loaded.
    pub fn ensure(path: Option<&Path>) -> Result<Self> {
        let Some(path) = path else {
            return Ok(Loaded { by_us: false });
        };
        if is_loaded() {
            return Ok(Loaded { by_us: false });
        }
        insmod(path).with_context(|| format!("insmod {}", path.display()))?;
        Ok(Loaded { by_us: true })
    }

    /// Whether this run loaded the module.
    pub fn by_us(&self) -> bool {
        self.by_us
    }

    /// Removes the module if this run loaded it.
    pub fn unload(self) -> Result<()> {
        if self.by_us && is_loaded() {
            rmmod_waiting(UNLOAD_GRACE)?;
        }
        Ok(())
    }
}
