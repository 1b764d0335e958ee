// SPDX-License-Identifier: GPL-2.0

//! The regression case for the `rust_task_from_vpid` oops (issue 7 §1).
//!
//! A `tp_btf/sched_switch` program (`progs/task_kfuncs_exiting.bpf.c`) calls
//! `rust_task_from_vpid` on every switch away from a thread of the runner
//! while the runner starts and joins threads. Each thread that is not the
//! group leader reaps itself: its `struct pid` is detached before its last
//! `schedule()`, so the program runs there with a `current` that has no pid
//! namespace. The first version of the kfunc dereferenced that NULL namespace
//! and oopsed the guest; the case then never reports. Fixed, the kfunc must
//! return NULL there, and find the runner whenever `current` has a pid.
//! The case fails unless the program really ran on such final switches.

use std::mem::MaybeUninit;
use std::process;
use std::thread::{self, sleep};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};

use super::skel::exiting_skel::{types, TaskKfuncsExitingSkel, TaskKfuncsExitingSkelBuilder};
use super::skel::EXITING_OBJ;
use crate::bpf;
use crate::{Case, Outcome};

const PROG: &str = "from_vpid_exiting_threads";

/// Threads started and joined while the program is attached: `ROUNDS`
/// rounds of `THREADS` threads, each of which exits (and reaps itself) once.
const ROUNDS: u64 = 8;
const THREADS: u64 = 32;

/// How long a joined thread's final `schedule()` may lag behind the join
/// (the join returns when the thread clears its tid, before `exit_notify()`).
const DEFERRED: Duration = Duration::from_secs(20);

/// The regression case, or its skip in the C-kfunc build of a kernel
/// without `bpf_task_from_vpid` (compiled once per kfunc variant, like
/// success.rs: `super` is the variant).
pub fn cases() -> Result<Vec<Case>> {
    let annotations = bpf::annotations("task_kfuncs_exiting", EXITING_OBJ)?;
    let skip = annotations
        .iter()
        .find(|(name, _)| name == PROG)
        .and_then(|(_, a)| a.skip.clone());
    Ok(vec![Case::new(PROG, move |_| match skip {
        Some(why) => Outcome::Skip(why),
        None => run().unwrap_or_else(|e| Outcome::fail_with_log(format!("{e:#}"), bpf::take_log())),
    })])
}

fn bss<'a>(skel: &'a TaskKfuncsExitingSkel<'_>) -> Result<&'a types::bss> {
    skel.maps
        .bss_data
        .as_deref()
        .context("the skeleton has no .bss")
}

fn run() -> Result<Outcome> {
    let mut storage = MaybeUninit::uninit();
    let mut open = TaskKfuncsExitingSkelBuilder::default()
        .open(&mut storage)
        .context("opening the exiting skeleton")?;
    open.maps
        .bss_data
        .as_deref_mut()
        .context("the skeleton has no .bss")?
        .target_tgid = process::id() as i32;
    let skel = open.load().with_context(|| format!("loading {PROG}"))?;
    let prog = skel
        .object()
        .progs_mut()
        .find(|p| p.name() == PROG)
        .with_context(|| format!("no program {PROG}"))?;
    let _link = prog.attach().context("attaching to sched_switch")?;

    for _ in 0..ROUNDS {
        let threads: Vec<_> = (0..THREADS)
            .map(|_| thread::spawn(thread::yield_now))
            .collect();
        for t in threads {
            t.join().map_err(|_| anyhow::anyhow!("a thread panicked"))?;
        }
    }
    let want = ROUNDS * THREADS;
    let start = Instant::now();
    while bss(&skel)?.dead_no_pid < want && start.elapsed() < DEFERRED {
        sleep(Duration::from_millis(10));
    }

    let b = bss(&skel)?;
    let observed = format!(
        "switches {}, exiting {}, without pid {} (final {}), from_vpid there NULL {} / found {}, \
         with pid found {} / wrong {}, prev != current {}",
        b.switches,
        b.exiting,
        b.no_pid,
        b.dead_no_pid,
        b.no_pid_null,
        b.no_pid_found,
        b.with_pid_found,
        b.with_pid_wrong,
        b.prev_not_current
    );
    let fail = |why: &str| Ok(Outcome::fail(format!("{why}\n{observed}")));
    if b.prev_not_current != 0 {
        return fail("sched_switch ran with prev != current");
    }
    if b.dead_no_pid < want {
        return fail(&format!(
            "the program saw {} final switches of threads without a pid, want at least {want} \
             (one per exited thread)",
            b.dead_no_pid
        ));
    }
    if b.exiting < b.no_pid {
        return fail("a thread without a pid was not PF_EXITING");
    }
    if b.no_pid_found != 0 || b.no_pid_null != b.no_pid {
        return fail("from_vpid found a task for a current without a pid namespace");
    }
    if b.with_pid_found == 0 || b.with_pid_wrong != 0 {
        return fail("from_vpid did not find the runner from a thread that has its pid");
    }
    println!("# {PROG}: {observed}");
    Ok(Outcome::Pass)
}
