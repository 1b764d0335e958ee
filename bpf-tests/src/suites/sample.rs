// SPDX-License-Identifier: GPL-2.0

//! `samples/kfunc_sample`, the rust-kfuncs toolkit's sample module: its
//! programs (`progs/kfunc_sample.bpf.c`) call every sample kfunc, and those
//! marked `__failure` must be rejected with their `__msg` ([`bpf::table`]).
//! One case of its own: a map that holds one of the module's objects as a
//! `__kptr` is closed, and the module's destructor must free the object. The
//! suite insmods the module first and rmmods it last, which the maps holding
//! its objects delay until they are gone.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::bpf::{self, Obj};
use crate::module::{self, KFUNC_SAMPLE};
use crate::{kernel_log, process};
use crate::{Case, Outcome};

const SAMPLE: Obj = crate::obj!("kfunc_sample");

/// The sample with its `.BTF_ids` zeroed, as a module that `resolve_btfids`
/// never processed: xtask writes it beside the sample.
const UNRESOLVED: &str = "kfunc_sample-unresolved.ko";

/// How long a closed map may take to free its values: the kernel frees a map
/// from a work item after RCU grace periods (tasks trace RCU for a map a
/// sleepable program used).
const MAP_FREE_GRACE: Duration = Duration::from_secs(20);

/// How long rmmod must keep being refused while only a map holding an object
/// is open: long enough for a closed program's references on the module to go.
const PINNED_WINDOW: Duration = Duration::from_secs(3);

/// The sample's cases: a copy whose id set `resolve_btfids` never filled in
/// is refused, insmod, every program, rmmod.
pub fn cases(path: PathBuf) -> Result<Vec<Case>> {
    let unresolved = path.with_file_name(UNRESOLVED);
    let mut cases = vec![
        Case::new("insmod_refuses_an_unresolved_set", move |_| {
            refuses_unresolved(&unresolved).unwrap_or_else(bpf::failed)
        }),
        Case::new("insmod", move |_| match module::insmod(&path) {
            Ok(()) => Outcome::Pass,
            Err(e) => Outcome::fail(format!("insmod {}: {e}", path.display())),
        }),
    ];
    cases.extend(bpf::table(SAMPLE, "", &["object_store", "object_count"])?);
    cases.push(Case::new("object_destructor_on_close", |_| {
        destructor_on_close().unwrap_or_else(bpf::failed)
    }));
    cases.push(Case::new("rmmod", |_| match KFUNC_SAMPLE.rmmod_waiting() {
        Ok(()) => Outcome::Pass,
        Err(e) => Outcome::fail(format!("{e:#}")),
    }));
    Ok(cases)
}

/// The toolkit's `register` refuses a set `resolve_btfids` never filled in:
/// insmod fails with EINVAL, and the kernel log says why and how to fix the
/// build (the kernel itself would take the set with at most a warning).
fn refuses_unresolved(path: &Path) -> Result<Outcome> {
    let mut log = kernel_log::Mark::here()?;
    let err = match module::insmod(path) {
        Ok(()) => {
            KFUNC_SAMPLE.rmmod_waiting()?;
            return Ok(Outcome::fail(format!(
                "insmod {} succeeded: a module whose kfunc set has no ids loaded",
                path.display()
            )));
        }
        Err(e) => e,
    };
    let said = log.read_new()?;
    let want = [
        "kfunc_sample: the kfunc id set holds 0 of ",
        "include $(src)/rust-kfuncs/kfuncs.mk",
    ];
    Ok(if err.raw_os_error() != Some(libc::EINVAL) {
        Outcome::fail(format!("insmod {}: {err}, not EINVAL", path.display()))
    } else if let Some(missing) = want.iter().find(|w| !said.contains(*w)) {
        Outcome::fail_with_log(format!("the kernel log lacks {missing:?}"), said)
    } else {
        Outcome::Pass
    })
}

/// A map holding one of the module's objects as a `__kptr` pins the module,
/// and closing it frees the object through the module's destructor: with
/// only the map left open, rmmod is refused throughout [`PINNED_WINDOW`] (in
/// which the program's own references on the module go: its teardown waits
/// for a grace period), and after the map is closed no object is left alive,
/// as `kfunc_sample_obj_live()` counts them, within [`MAP_FREE_GRACE`]. The
/// suite's rmmod, which follows, must then succeed.
fn destructor_on_close() -> Result<Outcome> {
    let stored = SAMPLE.load(&["object_store"])?;
    stored.set_runner_globals()?;
    stored.trigger("object_store")?;
    if let verdict @ Outcome::Fail { .. } = stored.verdict()? {
        return Ok(verdict);
    }
    let map = stored.map("objs")?.as_fd().try_clone_to_owned()?;
    drop(stored);

    let start = Instant::now();
    while start.elapsed() < PINNED_WINDOW {
        match KFUNC_SAMPLE.rmmod() {
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Ok(()) => bail!("rmmod succeeded while a map held one of the module's objects"),
            Err(e) => bail!("rmmod while a map holds an object: {e}"),
        }
    }

    drop(map);
    let mut left = 0;
    let freed = process::wait_until(MAP_FREE_GRACE, || {
        left = count()?;
        Ok(left == 0)
    })?;
    Ok(if freed {
        Outcome::Pass
    } else {
        Outcome::fail(format!(
            "{left} object(s) still alive {MAP_FREE_GRACE:?} after the map holding one closed"
        ))
    })
}

/// The number of the module's objects alive.
fn count() -> Result<u32> {
    let counter = SAMPLE.load(&["object_count"])?;
    counter.trigger("object_count")?;
    counter.get::<u32>("live")
}
