// SPDX-License-Identifier: GPL-2.0

//! Loading and unloading a kernel module by name with finit_module(2) and
//! delete_module(2), as insmod and rmmod do: task_kfuncs and the toolkit's
//! kfunc_sample alike.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::process;

/// A module, by its name in /sys/module and /sys/kernel/btf.
#[derive(Clone, Copy, Debug)]
pub struct Module(pub &'static str);

/// The module under test.
pub const TASK_KFUNCS: Module = Module("task_kfuncs");
/// The rust-kfuncs toolkit's sample module.
pub const KFUNC_SAMPLE: Module = Module("kfunc_sample");

/// How long an rmmod may be refused while freed programs drop their module
/// references (program teardown is deferred past an RCU grace period).
pub const UNLOAD_GRACE: Duration = Duration::from_secs(20);

/// Loads a module image (insmod).
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

impl Module {
    /// Whether the module is loaded.
    pub fn is_loaded(self) -> bool {
        Path::new("/sys/module").join(self.0).exists()
    }

    /// Its BTF in /sys/kernel/btf.
    pub fn btf(self) -> PathBuf {
        Path::new("/sys/kernel/btf").join(self.0)
    }

    /// Unloads the module once (rmmod). While the module is in use this
    /// fails with EWOULDBLOCK (delete_module with O_NONBLOCK, as rmmod
    /// calls it).
    pub fn rmmod(self) -> io::Result<()> {
        let name = CString::new(self.0).map_err(io::Error::other)?;
        // SAFETY: delete_module takes a NUL-terminated module name and flags.
        let ret =
            unsafe { libc::syscall(libc::SYS_delete_module, name.as_ptr(), libc::O_NONBLOCK) };
        if ret == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Unloads the module, retrying for up to [`UNLOAD_GRACE`] while it is
    /// busy.
    pub fn rmmod_waiting(self) -> Result<()> {
        let unloaded = process::wait_until(UNLOAD_GRACE, || match self.rmmod() {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(false),
            Err(e) => Err(e).with_context(|| format!("rmmod {}", self.0)),
        })?;
        if !unloaded {
            bail!("rmmod {}: still in use after {UNLOAD_GRACE:?}", self.0);
        }
        Ok(())
    }

    /// Loads the module from `path` unless it is loaded already.
    pub fn ensure_loaded(self, path: &Path) -> Result<()> {
        if !self.is_loaded() {
            insmod(path).with_context(|| format!("insmod {}", path.display()))?;
        }
        Ok(())
    }

    /// Unloads the module if it is loaded; it and its BTF must then be gone.
    pub fn ensure_unloaded(self, what: &str) -> Result<()> {
        if self.is_loaded() {
            self.rmmod_waiting()
                .with_context(|| format!("{what}: rmmod"))?;
        }
        if self.is_loaded() || self.btf().exists() {
            bail!(
                "{what}: /sys/module/{0} or /sys/kernel/btf/{0} still there after rmmod",
                self.0
            );
        }
        Ok(())
    }
}

/// Loads `module` from `path` unless it is loaded already (or no path is
/// given); returns whether it did, so that the caller unloads it again.
pub fn load_for_run(module: Module, path: Option<&Path>) -> Result<bool> {
    match path {
        Some(path) if !module.is_loaded() => {
            insmod(path).with_context(|| format!("insmod {}", path.display()))?;
            Ok(true)
        }
        _ => Ok(false),
    }
}
