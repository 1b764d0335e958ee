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
//! Compiled once per kfunc variant (see `kfuncs_rust.rs` and `kfuncs_c.rs`):
//! `super` is the variant. The kernel's own `bpf_task_release()` and its
//! task kptr destructor call `call_rcu()` in NMI
//! (docs/upstream/bpf_task_release-nmi-call_rcu.md): where the C release or
//! the destructor is under test, a count above zero is that known bug,
//! reported as a skip that names it; on a lockdep kernel those cases do not
//! run, because lockdep would report the bug and turn itself off for the
//! rest of the run.

use std::fs;
use std::mem::MaybeUninit;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{Link, ProgramInput};

use super::skel::nmi_skel::{types, TaskKfuncsNmiSkel, TaskKfuncsNmiSkelBuilder};
use crate::process::Parked;
use crate::{bpf, lifecycle, module, Case, Outcome};

/// References dropped per case: `NMI_SLOTS` of the program.
const TASKS: usize = 8;

/// How long deferred kernel work (a dead task's final schedule, the put
/// after the NMI, the RCU grace period before the free) may take: generous,
/// for debug kernels under TCG; only a failing case waits this long.
const DEFERRED: Duration = Duration::from_secs(20);

/// The report of the kernel bug the C release and the destructor show.
const REPORT: &str = "docs/upstream/bpf_task_release-nmi-call_rcu.md";

/// How the NMI program drops the references.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    /// With the release kfunc of the variant.
    Release,
    /// By overwriting the map value: the map's task kptr destructor, which
    /// is the kernel's whatever the kfuncs.
    Destructor,
}

/// The NMI cases of this variant.
pub fn cases() -> Vec<Case> {
    let mut cases = vec![Case::new("release_last_ref_in_nmi", |_| {
        outcome(|| drop_in_nmi(Via::Release, false))
    })];
    if !super::C_KFUNCS {
        cases.push(Case::new("map_destructor_last_ref_in_nmi", |_| {
            outcome(|| drop_in_nmi(Via::Destructor, false))
        }));
        cases.push(Case::new("rmmod_after_nmi_release", |ctx| {
            lifecycle::guarded(ctx.module.as_deref(), |_| {
                match drop_in_nmi(Via::Release, true)? {
                    Outcome::Pass => Ok(()),
                    other => bail!("{}", describe(&other)),
                }
            })
        }));
    }
    cases
}

fn outcome(case: impl FnOnce() -> Result<Outcome>) -> Outcome {
    case().unwrap_or_else(|e| Outcome::fail_with_log(format!("{e:#}"), bpf::take_log()))
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Pass => "passed".into(),
        Outcome::Skip(why) => why.clone(),
        Outcome::Fail { reason, .. } => reason.clone(),
    }
}

/// Whether the kernel runs lockdep (`/proc/lockdep` exists with
/// CONFIG_LOCKDEP).
fn lockdep() -> bool {
    Path::new("/proc/lockdep").exists()
}

/// Whether what is dropped goes through the kernel's code, which has the
/// bug, rather than the module's.
fn kernel_code(how: Via) -> bool {
    how == Via::Destructor || super::C_KFUNCS
}

/// One NMI case. With `rmmod`, the module is removed right after the NMI,
/// while its deferred puts may still be pending.
fn drop_in_nmi(how: Via, rmmod: bool) -> Result<Outcome> {
    if kernel_code(how) && lockdep() {
        return Ok(Outcome::Skip(format!(
            "the kernel's own release calls call_rcu() in NMI ({REPORT}), which lockdep \
             reports before turning itself off for the rest of the run; see the case on \
             the normal kernel"
        )));
    }
    // SAFETY: sysconf only reads a system parameter.
    if unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) } < 2 {
        bail!("needs 2 online CPUs: sysrq 'l' sends NMIs only to the other CPUs");
    }

    let mut actor_storage = MaybeUninit::uninit();
    let mut actor = load(
        &mut actor_storage,
        &["stash", "read_users", "release_in_nmi", "call_rcu_entry"],
    )?;
    let mut observer_storage = MaybeUninit::uninit();
    let mut observer = load(&mut observer_storage, &["on_free"])?;

    let pids = stash_last_refs(&actor)?;
    {
        let bss = observer
            .maps
            .bss_data
            .as_deref_mut()
            .context("the observer has no .bss")?;
        bss.stashed_pids = pids;
    }
    let _observed: Vec<Link> = attach(&observer, &["on_free"])?;
    let release = attach(&actor, &["release_in_nmi", "call_rcu_entry"])?;
    {
        let bss = bss_mut(&mut actor)?;
        bss.drop_by_update = i32::from(how == Via::Destructor);
        bss.armed = 1;
    }
    // Returns once the other CPUs have handled their NMI (or after 10 s).
    fs::write("/proc/sysrq-trigger", "l").context("writing 'l' to /proc/sysrq-trigger")?;
    let (runs, released, last_puts, in_nmi) = {
        let b = bss(&actor)?;
        (b.nmi_runs, b.released, b.last_puts, b.call_rcu_in_nmi)
    };
    if rmmod {
        drop(release);
        drop(actor);
        module::rmmod_waiting(module::UNLOAD_GRACE)?;
    }

    let freed = || -> Result<i32> { Ok(bss(&observer)?.freed) };
    let start = Instant::now();
    while freed()? < TASKS as i32 && start.elapsed() < DEFERRED {
        sleep(Duration::from_millis(10));
    }
    let freed = freed()?;
    let seen = format!(
        "nmi_handler runs {runs}, references dropped {released}, of them last ones \
         {last_puts}, call_rcu() calls in NMI by the drops {in_nmi}, tasks freed {freed} \
         of {TASKS}"
    );
    if runs == 0 {
        return Ok(Outcome::fail(format!(
            "the NMI program never ran: sysrq 'l' sent no NMI\n{seen}"
        )));
    }
    if released != TASKS as i32 || last_puts != TASKS as i32 {
        return Ok(Outcome::fail(format!(
            "the case did not drop {TASKS} last references in NMI\n{seen}"
        )));
    }
    if in_nmi != 0 && kernel_code(how) {
        let what = match how {
            Via::Release => "the kernel's bpf_task_release()",
            Via::Destructor => "the kernel's task kptr destructor (not the module's)",
        };
        return Ok(Outcome::Skip(format!(
            "known kernel bug, {REPORT}: {what} called call_rcu() in NMI {in_nmi} times ({seen})"
        )));
    }
    if in_nmi != 0 {
        return Ok(Outcome::fail(format!(
            "call_rcu() ran in NMI on behalf of the release\n{seen}"
        )));
    }
    if freed != TASKS as i32 {
        return Ok(Outcome::fail(format!(
            "not every task was freed within {DEFERRED:?}: a deferred put was lost\n{seen}"
        )));
    }
    Ok(Outcome::Pass)
}

/// Opens the object and loads `progs` only.
fn load<'obj>(
    storage: &'obj mut MaybeUninit<libbpf_rs::OpenObject>,
    progs: &[&str],
) -> Result<TaskKfuncsNmiSkel<'obj>> {
    let mut open = TaskKfuncsNmiSkelBuilder::default()
        .open(storage)
        .context("opening the NMI skeleton")?;
    bpf::select_programs(open.open_object_mut(), progs)?;
    open.load()
        .with_context(|| format!("loading {}", progs.join(", ")))
}

fn attach(skel: &TaskKfuncsNmiSkel<'_>, names: &[&str]) -> Result<Vec<Link>> {
    names
        .iter()
        .map(|name| {
            bpf::program(skel.object(), name)?
                .attach()
                .with_context(|| format!("attaching {name}"))
        })
        .collect()
}

fn bss<'a>(skel: &'a TaskKfuncsNmiSkel<'_>) -> Result<&'a types::bss> {
    skel.maps
        .bss_data
        .as_deref()
        .context("the skeleton has no .bss")
}

fn bss_mut<'a>(skel: &'a mut TaskKfuncsNmiSkel<'_>) -> Result<&'a mut types::bss> {
    skel.maps
        .bss_data
        .as_deref_mut()
        .context("the skeleton has no .bss")
}

/// Stores a reference on each of [`TASKS`] children, lets them exit and
/// waits until each slot holds its task's last reference; returns the pids.
fn stash_last_refs(skel: &TaskKfuncsNmiSkel<'_>) -> Result<[i32; TASKS]> {
    let stash = bpf::program(skel.object(), "stash")?;
    let mut pids = [0; TASKS];
    let mut children = Vec::new();
    for (slot, pid) in pids.iter_mut().enumerate() {
        let child = Parked::spawn()?;
        *pid = child.pid();
        let mut args = [(slot as i32).to_ne_bytes(), pid.to_ne_bytes()].concat();
        stash
            .test_run(ProgramInput {
                context_in: Some(&mut args),
                ..Default::default()
            })
            .context("BPF_PROG_TEST_RUN of stash")?;
        children.push(child);
    }
    let err = bss(skel)?.stash_error;
    if err != 0 {
        bail!("stash failed with error {err}");
    }
    for child in children {
        child.finish()?;
    }
    // A dead child drops its own last reference in its final schedule,
    // which can come after waitpid returns.
    let read = bpf::program(skel.object(), "read_users")?;
    let start = Instant::now();
    loop {
        read.test_run(ProgramInput::default())
            .context("BPF_PROG_TEST_RUN of read_users")?;
        let users = bss(skel)?.users;
        if users.iter().all(|&u| u == 1) {
            return Ok(pids);
        }
        if start.elapsed() > DEFERRED {
            bail!("the exited children still have rcu_users {users:?} (want 1 each, the map's) after {DEFERRED:?}");
        }
        sleep(Duration::from_millis(10));
    }
}
