// SPDX-License-Identifier: GPL-2.0

//! The regression case for the `rust_task_from_vpid` oops
//! (docs/upstream/bpf_task_from_vpid-null-pidns.md).
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

use anyhow::Result;

use crate::bpf::{self, Obj};
use crate::process;
use crate::{Case, Outcome};

const PROG: &str = "from_vpid_exiting_threads";

/// Threads started and joined while the program is attached: `ROUNDS`
/// rounds of `THREADS` threads, each of which exits (and reaps itself) once.
const ROUNDS: u64 = 8;
const THREADS: u64 = 32;

/// The regression case, in one kfunc variant's build of
/// `progs/task_kfuncs_exiting.bpf.c` (skipped where the kernel's C kfuncs
/// have no from_vpid).
pub fn cases(obj: Obj) -> Result<Vec<Case>> {
    let skip = obj
        .progs()?
        .into_iter()
        .find(|p| p.name == PROG)
        .and_then(|p| p.skip);
    Ok(vec![Case::new(PROG, move |_| match skip {
        Some(why) => Outcome::Skip(why),
        None => run(obj).unwrap_or_else(bpf::failed),
    })])
}

fn run(obj: Obj) -> Result<Outcome> {
    let skel = obj.load(&[PROG])?;
    skel.set_runner_globals()?;
    let _link = skel.attach(PROG)?;

    process::threads(ROUNDS as usize, THREADS as usize)?;
    let want = ROUNDS * THREADS;
    // A joined thread's final schedule() may lag behind the join (which
    // returns when the thread clears its tid, before exit_notify()).
    process::wait_until(process::DEFERRED, || {
        Ok(skel.get::<u64>("dead_no_pid")? >= want)
    })?;

    let b = |name: &str| skel.get::<u64>(name);
    let (no_pid, dead_no_pid) = (b("no_pid")?, b("dead_no_pid")?);
    let observed = skel.globals();
    let why = if b("prev_not_current")? != 0 {
        "sched_switch ran with prev != current"
    } else if dead_no_pid < want {
        "the program saw fewer final switches of threads without a pid than threads exited"
    } else if b("exiting")? < no_pid {
        "a thread without a pid was not PF_EXITING"
    } else if b("no_pid_found")? != 0 || b("no_pid_null")? != no_pid {
        "from_vpid found a task for a current without a pid namespace"
    } else if b("with_pid_found")? == 0 || b("with_pid_wrong")? != 0 {
        "from_vpid did not find the runner from a thread that has its pid"
    } else {
        ""
    };
    if !why.is_empty() {
        return Ok(Outcome::fail(format!("{why} (want {want})\n{observed}")));
    }
    println!("# {PROG}: {observed}");
    Ok(Outcome::Pass)
}
