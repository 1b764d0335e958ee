// SPDX-License-Identifier: GPL-2.0

//! Last task references dropped in NMI context (`progs/task_kfuncs_nmi.bpf.c`):
//! no `call_rcu()` may run in NMI on their behalf, and every task must still
//! be freed.
//!
//! Each case stashes references on [`TASKS`] children in a map, lets the
//! children exit and be reaped so that the map holds each task's last
//! `rcu_users` reference, and sends an NMI to the other CPU with sysrq 'l'
//! (lib/nmi_backtrace.c: every other CPU dumps its stack from an NMI). A
//! `tp_btf/nmi_handler` program drops the references there; an fentry
//! program on `call_rcu` counts the calls those drops make (on that CPU,
//! while the NMI program drops), a `tp_btf/sched_process_free` program the
//! stashed tasks freed. The last one lives in a second instance of the
//! object that calls no module kfunc, so it keeps counting while the module
//! goes away.
//!
//! The object is built per kfunc variant. The kernel's own
//! `bpf_task_release()` and its task kptr destructor call `call_rcu()` in
//! NMI (docs/upstream/bpf_task_release-nmi-call_rcu.md): where the C
//! release or the destructor is under test, a count above zero is that
//! known bug, reported as a skip that names it; on a lockdep kernel those
//! cases do not run, because lockdep would report the bug and turn itself
//! off for the rest of the run.

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::bpf::{self, Loaded, Obj};
use crate::module::TASK_KFUNCS;
use crate::process::{wait_until, Parked, DEFERRED};
use crate::{Case, Outcome};

/// The Rust build of the object, for the lifecycle case.
pub const RUST: Obj = crate::obj!("rust/task_kfuncs_nmi");

/// References dropped per case: `NMI_SLOTS` of the program.
const TASKS: usize = 8;

/// The report of the kernel bug the C release and the destructor show.
const REPORT: &str = "docs/upstream/bpf_task_release-nmi-call_rcu.md";

/// How the NMI program drops the references.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    /// With the release kfunc of the build.
    Release,
    /// By overwriting the map value: the map's task kptr destructor, which
    /// is the kernel's whatever the kfuncs.
    Destructor,
}

/// The NMI cases of one build: the release, and for the Rust build the
/// destructor too (the same kernel code in both builds).
pub fn cases(obj: Obj, c_kfuncs: bool) -> Vec<Case> {
    let mut cases = vec![Case::new("release_last_ref_in_nmi", move |_| {
        drop_in_nmi(obj, Via::Release, c_kfuncs, false).unwrap_or_else(bpf::failed)
    })];
    if !c_kfuncs {
        cases.push(Case::new("map_destructor_last_ref_in_nmi", move |_| {
            drop_in_nmi(obj, Via::Destructor, c_kfuncs, false).unwrap_or_else(bpf::failed)
        }));
    }
    cases
}

/// The lifecycle case: the module removed right after the Rust release
/// deferred its last puts out of an NMI; every task must still be freed.
pub fn rmmod_after_release() -> Result<()> {
    match drop_in_nmi(RUST, Via::Release, false, true)? {
        Outcome::Pass => Ok(()),
        Outcome::Skip(why) => bail!("{why}"),
        Outcome::Fail { reason, .. } => bail!("{reason}"),
    }
}

/// Whether the kernel runs lockdep (`/proc/lockdep` exists with
/// CONFIG_LOCKDEP).
fn lockdep() -> bool {
    Path::new("/proc/lockdep").exists()
}

/// One NMI case. With `rmmod`, the module is removed right after the NMI,
/// while its deferred puts may still be pending.
fn drop_in_nmi(obj: Obj, how: Via, c_kfuncs: bool, rmmod: bool) -> Result<Outcome> {
    let actor = obj.load(&[
        "stash",
        "read_users",
        "probe_update",
        "release_in_nmi",
        "call_rcu_entry",
    ])?;
    // Whether what is dropped goes through the kernel's code, which has the
    // bug, rather than the module's.
    let kernel_code = match how {
        Via::Release => c_kfuncs,
        Via::Destructor => {
            let mut args = [0, std::process::id() as i32]
                .map(i32::to_ne_bytes)
                .concat();
            actor.test_run("probe_update", &mut args)?;
            // Since 7.x an update leaves the kptr in place: no destructor.
            match actor.get::<i32>("update_keeps_kptr")? {
                0 => true,
                1 => false,
                _ => bail!("probe_update did not find the runner's task"),
            }
        }
    };
    if kernel_code && lockdep() {
        return Ok(Outcome::Skip(format!(
            "the kernel's own release calls call_rcu() in NMI ({REPORT}), which lockdep \
             reports before turning itself off for the rest of the run; see the case on \
             the normal kernel"
        )));
    }
    if std::thread::available_parallelism().map_or(1, usize::from) < 2 {
        bail!("needs 2 online CPUs: sysrq 'l' sends NMIs only to the other CPUs");
    }

    let observer = obj.load(&["on_free"])?;
    let pids = stash_last_refs(&actor)?;
    observer.set_bytes("stashed_pids", &pids.map(i32::to_ne_bytes).concat())?;
    let _observing = observer.attach("on_free")?;
    let links = [
        actor.attach("release_in_nmi")?,
        actor.attach("call_rcu_entry")?,
    ];
    actor.set("drop_by_update", i32::from(how == Via::Destructor))?;
    actor.set("armed", 1)?;
    // Returns once the other CPUs have run their backtrace handler (or
    // after 10 s): the tracepoint fires after the handler, so the program
    // may still be running on the other CPU; wait for it to finish.
    fs::write("/proc/sysrq-trigger", "l").context("writing 'l' to /proc/sysrq-trigger")?;
    wait_until(DEFERRED, || Ok(actor.get::<i32>("nmi_done")? > 0))?;
    let runs: i32 = actor.get("nmi_runs")?;
    let released: i32 = actor.get("released")?;
    let last_puts: i32 = actor.get("last_puts")?;
    let in_nmi: i32 = actor.get("call_rcu_in_nmi")?;
    // Where an update leaves the kptr field in place (only the map's
    // teardown drops it), the slots still hold the tasks, and they are freed
    // when the actor's map goes.
    let kept = if how == Via::Destructor {
        actor.test_run("read_users", &mut [])?;
        let users = actor.get_bytes("users")?;
        users.chunks(4).filter(|u| *u == 1i32.to_ne_bytes()).count()
    } else {
        0
    };
    if rmmod || kept > 0 {
        drop(links);
        drop(actor);
    }
    if rmmod {
        TASK_KFUNCS.rmmod_waiting()?;
    }
    let mut freed = 0;
    wait_until(DEFERRED, || {
        freed = observer.get("freed")?;
        Ok(freed == TASKS as i32)
    })?;
    let seen = format!(
        "nmi_handler runs {runs}, references dropped {released}, of them last ones \
         {last_puts}, still in the map after the update {kept}, call_rcu() calls in NMI by \
         the drops {in_nmi}, tasks freed {freed} of {TASKS}"
    );
    Ok(if runs == 0 {
        Outcome::fail(format!(
            "the NMI program never ran: sysrq 'l' sent no NMI\n{seen}"
        ))
    } else if kept != 0 && (kept != TASKS || in_nmi != 0 || freed != TASKS as i32) {
        Outcome::fail(format!(
            "the update kept {kept} of {TASKS} references in the map; want all of them, no \
             call_rcu() in NMI, and every task freed once the map is gone\n{seen}"
        ))
    } else if kept == TASKS {
        // This kernel's update does not reach the destructor at all.
        Outcome::Pass
    } else if released != TASKS as i32 || last_puts != TASKS as i32 {
        Outcome::fail(format!(
            "the case did not drop {TASKS} last references in NMI\n{seen}"
        ))
    } else if in_nmi != 0 && kernel_code {
        let what = match how {
            Via::Release => "the kernel's bpf_task_release()",
            Via::Destructor => "the kernel's task kptr destructor (not the module's)",
        };
        Outcome::Skip(format!(
            "known kernel bug, {REPORT}: {what} called call_rcu() in NMI {in_nmi} times ({seen})"
        ))
    } else if in_nmi != 0 {
        Outcome::fail(format!(
            "call_rcu() ran in NMI on behalf of the release\n{seen}"
        ))
    } else if freed != TASKS as i32 {
        Outcome::fail(format!(
            "not every task was freed within {DEFERRED:?}: a deferred put was lost\n{seen}"
        ))
    } else {
        Outcome::Pass
    })
}

/// Stores a reference on each of [`TASKS`] children, lets them exit and
/// waits until each slot holds its task's last reference; returns the pids.
fn stash_last_refs(actor: &Loaded) -> Result<[i32; TASKS]> {
    let mut pids = [0; TASKS];
    let mut children = Vec::new();
    for (slot, pid) in pids.iter_mut().enumerate() {
        let child = Parked::spawn()?;
        *pid = child.pid();
        let mut args = [slot as i32, *pid].map(i32::to_ne_bytes).concat();
        actor.test_run("stash", &mut args)?;
        children.push(child);
    }
    let err: i32 = actor.get("stash_error")?;
    if err != 0 {
        bail!("stash failed with error {err}");
    }
    for child in children {
        child.finish()?;
    }
    // A dead child drops its own last reference in its final schedule,
    // which can come after waitpid returns.
    let mut users = Vec::new();
    if !wait_until(DEFERRED, || {
        actor.test_run("read_users", &mut [])?;
        users = actor.get_bytes("users")?;
        Ok(users.chunks(4).all(|u| u == 1i32.to_ne_bytes()))
    })? {
        bail!(
            "the exited children still have rcu_users {users:?} (want 1 each, the map's) \
             after {DEFERRED:?}"
        );
    }
    Ok(pids)
}
