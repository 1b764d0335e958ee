// SPDX-License-Identifier: GPL-2.0

//! Module lifecycle cases: a loaded program that calls the kfuncs pins the
//! module, and load/unload cycles with programs in between are clean.
//! They need `--module PATH` and leave the module loaded, as found.

use std::mem::MaybeUninit;
use std::path::Path;

use anyhow::{bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};

use crate::bpf;
use crate::kfuncs_rust::skel::success_skel::TaskKfuncsSuccessSkelBuilder;
use crate::module::{self, UNLOAD_GRACE};
use crate::{Case, Outcome};

/// Load/unload cycles of `insmod_load_rmmod_cycles`.
const CYCLES: usize = 20;

/// A program whose kfunc calls make it hold a reference on the module.
const PINNING_PROG: &str = "acquire_release_argument";

/// The lifecycle cases.
pub fn cases() -> Vec<Case> {
    vec![
        Case::new("rmmod_refused_while_program_loaded", |ctx| {
            guarded(ctx.module.as_deref(), rmmod_refused_while_loaded)
        }),
        Case::new("second_insmod_fails", |ctx| {
            guarded(ctx.module.as_deref(), second_insmod_fails)
        }),
        Case::new("insmod_load_rmmod_cycles", |ctx| {
            guarded(ctx.module.as_deref(), cycles)
        }),
    ]
}

pub(crate) fn guarded(path: Option<&Path>, case: fn(&Path) -> Result<()>) -> Outcome {
    let Some(path) = path else {
        return Outcome::Skip("needs --module PATH".into());
    };
    let result = case(path);
    // Whatever happened, leave the module loaded for the cases after us.
    let restore = if module::is_loaded() {
        Ok(())
    } else {
        module::insmod(path).with_context(|| format!("re-insmod {}", path.display()))
    };
    match result.and(restore) {
        Ok(()) => Outcome::Pass,
        Err(e) => Outcome::fail_with_log(format!("{e:#}"), bpf::take_log()),
    }
}

/// Loads the pinning program and runs `f` while it is loaded.
fn with_program(f: impl FnOnce() -> Result<()>) -> Result<()> {
    let mut storage = MaybeUninit::uninit();
    let mut open = TaskKfuncsSuccessSkelBuilder::default()
        .open(&mut storage)
        .context("opening the success skeleton")?;
    bpf::select_program(open.open_object_mut(), PINNING_PROG)?;
    let skel = open
        .load()
        .with_context(|| format!("loading {PINNING_PROG}"))?;
    let result = f();
    drop(skel);
    result
}

fn ensure_loaded(path: &Path) -> Result<()> {
    if !module::is_loaded() {
        module::insmod(path).with_context(|| format!("insmod {}", path.display()))?;
    }
    Ok(())
}

fn rmmod_refused_while_loaded(path: &Path) -> Result<()> {
    ensure_loaded(path)?;
    with_program(|| match module::rmmod() {
        // kernel/module/main.c: try_stop_module() refuses a module with
        // references with EWOULDBLOCK (what rmmod reports as "in use").
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(()),
        Err(e) => bail!("rmmod with a program loaded failed with {e}, want EWOULDBLOCK (in use)"),
        Ok(()) => bail!("rmmod succeeded while a program using the kfuncs was loaded"),
    })?;
    if !module::is_loaded() {
        bail!("the module is gone after the refused rmmod");
    }
    module::rmmod_waiting(UNLOAD_GRACE).context("rmmod after the program was closed")?;
    if module::is_loaded() {
        bail!("/sys/module/{} still exists after rmmod", module::NAME);
    }
    Ok(())
}

fn second_insmod_fails(path: &Path) -> Result<()> {
    ensure_loaded(path)?;
    match module::insmod(path) {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        Err(e) => bail!("second insmod failed with {e}, want EEXIST"),
        Ok(()) => bail!("second insmod succeeded"),
    }
}

fn cycles(path: &Path) -> Result<()> {
    if module::is_loaded() {
        module::rmmod_waiting(UNLOAD_GRACE).context("initial rmmod")?;
    }
    for i in 1..=CYCLES {
        module::insmod(path).with_context(|| format!("cycle {i}: insmod"))?;
        if !Path::new("/sys/kernel/btf").join(module::NAME).exists() {
            bail!(
                "cycle {i}: no /sys/kernel/btf/{} after insmod",
                module::NAME
            );
        }
        with_program(|| Ok(())).with_context(|| format!("cycle {i}"))?;
        module::rmmod_waiting(UNLOAD_GRACE).with_context(|| format!("cycle {i}"))?;
    }
    module::insmod(path).context("final insmod")?;
    Ok(())
}
