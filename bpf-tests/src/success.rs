// SPDX-License-Identifier: GPL-2.0

//! Cases the verifier must accept: each loads only its own program from
//! `progs/task_kfuncs_success.bpf.c`, attaches it, triggers it and reads the
//! verdict the program left in its globals. A program that never ran fails
//! its case.
//!
//! Compiled once per kfunc variant (see `kfuncs_rust.rs` and `kfuncs_c.rs`):
//! `super` is the variant.

use std::fs;
use std::mem::MaybeUninit;
use std::process;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, ProgramInput, ProgramMut};

use super::skel::success_skel::{types, TaskKfuncsSuccessSkel, TaskKfuncsSuccessSkelBuilder};
use super::skel::SUCCESS_OBJ;
use crate::bpf::{self, Annotations};
use crate::process::{in_new_pidns, spawn_and_reap, Parked};
use crate::{Case, Outcome};

/// How a case makes its program run.
#[derive(Clone, Copy)]
enum Trigger {
    /// Attach, fork a child that exits at once, reap it.
    Fork,
    /// BPF_PROG_TEST_RUN of a syscall program with the runner's pid.
    TestRun,
    /// A child cloned into a new pid namespace test-runs the program, which
    /// looks up vpid 1 there (the child) and pid 1 (init).
    NewPidNs,
    /// A child cloned into a new pid namespace test-runs the program, whose
    /// checks are its own.
    InNewPidNs,
    /// Attach, then the runner calls getpgid(2) (fentry on sys_getpgid).
    Getpgid,
    /// Fork, then the acceptance map must have one bit per kfunc.
    Acceptance,
    /// kptr_get on a slot's stale pointer once the last reference is gone.
    KptrGetEmptied,
    /// A reference left in the map is dropped by the map's destructor.
    MapDestructor,
}

/// (case, program, trigger). The case name is the program's name unless a
/// case drives a multi-purpose program through several runs.
const CASES: &[(&str, &str, Trigger)] = &[
    (
        "acquire_release_argument",
        "acquire_release_argument",
        Trigger::Fork,
    ),
    (
        "acquire_release_current",
        "acquire_release_current",
        Trigger::Fork,
    ),
    ("kptr_get_rcu_walked", "kptr_get_rcu_walked", Trigger::Fork),
    ("acquire_rcu_walked", "acquire_rcu_walked", Trigger::Fork),
    ("acquire_rcu_kptr", "acquire_rcu_kptr", Trigger::Fork),
    (
        "acquire_leave_in_map",
        "acquire_leave_in_map",
        Trigger::Fork,
    ),
    (
        "map_destructor_drops_ref",
        "syscall_task_slot",
        Trigger::MapDestructor,
    ),
    ("xchg_out_release", "xchg_out_release", Trigger::Fork),
    ("kptr_get_stored", "kptr_get_stored", Trigger::Fork),
    (
        "kptr_get_after_slot_emptied",
        "syscall_task_slot",
        Trigger::KptrGetEmptied,
    ),
    ("from_pid_argument", "from_pid_argument", Trigger::Fork),
    ("from_pid_current", "from_pid_current", Trigger::Fork),
    ("from_pid_invalid", "from_pid_invalid", Trigger::Fork),
    ("from_vpid_current", "from_vpid_current", Trigger::Fork),
    (
        "syscall_from_vpid_new_pidns",
        "syscall_from_vpid_new_pidns",
        Trigger::NewPidNs,
    ),
    (
        "interop_acquire_rust_release_kernel",
        "interop_acquire_rust_release_kernel",
        Trigger::Fork,
    ),
    (
        "interop_acquire_kernel_release_rust",
        "interop_acquire_kernel_release_rust",
        Trigger::Fork,
    ),
    (
        "interop_from_pid_kernel_release_rust",
        "interop_from_pid_kernel_release_rust",
        Trigger::Fork,
    ),
    (
        "interop_from_pid_rust_release_kernel",
        "interop_from_pid_rust_release_kernel",
        Trigger::Fork,
    ),
    ("rcu_users_balanced", "rcu_users_balanced", Trigger::Fork),
    (
        "fentry_acquire_current_from_pid_arg",
        "fentry_acquire_current_from_pid_arg",
        Trigger::Fork,
    ),
    (
        "syscall_acquire_release_current",
        "syscall_acquire_release_current",
        Trigger::TestRun,
    ),
    ("syscall_from_pid", "syscall_from_pid", Trigger::TestRun),
    (
        "acceptance_all_kfuncs",
        "acceptance_all_kfuncs",
        Trigger::Acceptance,
    ),
    // The shapes of the kernel's own task kfunc selftests (7.x).
    (
        "acquire_flavor_relocation",
        "acquire_flavor_relocation",
        Trigger::Fork,
    ),
    (
        "lock_region_spin_unlock_non_sleepable",
        "lock_region_spin_unlock_non_sleepable",
        Trigger::Getpgid,
    ),
    (
        "lock_region_spin_unlock_explicit_rcu",
        "lock_region_spin_unlock_explicit_rcu",
        Trigger::TestRun,
    ),
    (
        "lock_region_spin_unlock_preempt_disabled",
        "lock_region_spin_unlock_preempt_disabled",
        Trigger::TestRun,
    ),
    (
        "lock_region_spin_unlock_irq_disabled",
        "lock_region_spin_unlock_irq_disabled",
        Trigger::TestRun,
    ),
    (
        "lock_region_rcu_unlock_preempt_disabled",
        "lock_region_rcu_unlock_preempt_disabled",
        Trigger::TestRun,
    ),
    (
        "lock_region_rcu_unlock_irq_disabled",
        "lock_region_rcu_unlock_irq_disabled",
        Trigger::TestRun,
    ),
    (
        "lock_region_preempt_enable_explicit_rcu",
        "lock_region_preempt_enable_explicit_rcu",
        Trigger::TestRun,
    ),
    (
        "lock_region_irq_restore_explicit_rcu",
        "lock_region_irq_restore_explicit_rcu",
        Trigger::TestRun,
    ),
    (
        "from_vpid_invalid_new_pidns",
        "syscall_from_vpid_invalid_new_pidns",
        Trigger::InNewPidNs,
    ),
];

/// `enum slot_op` of the program.
const SLOT_STORE: i32 = 1;
const SLOT_USERS: i32 = 2;
const SLOT_PEEK: i32 = 3;
const SLOT_EMPTY_GET: i32 = 4;

/// How long deferred kernel work (a dead task's final schedule, a map's
/// destructor after its last fd is closed) may take: generous, for debug
/// kernels under TCG; only a failing case waits this long.
const DEFERRED: Duration = Duration::from_secs(20);

/// All five bits of the acceptance map.
const ACCEPT_ALL: u32 = 0x1f;

/// The success cases, in order.
pub fn cases() -> Result<Vec<Case>> {
    let annotations = bpf::annotations("task_kfuncs_success", SUCCESS_OBJ)?;
    let pid_max: i32 = fs::read_to_string("/proc/sys/kernel/pid_max")
        .context("reading /proc/sys/kernel/pid_max")?
        .trim()
        .parse()
        .context("parsing /proc/sys/kernel/pid_max")?;
    Ok(CASES
        .iter()
        .map(|&(name, prog, trigger)| {
            let skip = annotations
                .iter()
                .find(|(func, _)| func == prog)
                .and_then(|(_, a): &(String, Annotations)| a.skip.clone());
            Case::new(name, move |_| match skip {
                Some(why) => Outcome::Skip(why),
                None => match run(prog, trigger, pid_max) {
                    Ok(outcome) => outcome,
                    Err(e) => Outcome::fail_with_log(format!("{e:#}"), bpf::take_log()),
                },
            })
        })
        .collect())
}

/// Opens the skeleton with only `prog` to load, sets the inputs, loads it.
fn load<'obj>(
    storage: &'obj mut MaybeUninit<libbpf_rs::OpenObject>,
    prog: &str,
    pid_max: i32,
) -> Result<TaskKfuncsSuccessSkel<'obj>> {
    let mut open = TaskKfuncsSuccessSkelBuilder::default()
        .open(storage)
        .context("opening the success skeleton")?;
    bpf::select_program(open.open_object_mut(), prog)?;
    let bss = open
        .maps
        .bss_data
        .as_deref_mut()
        .context("the skeleton has no .bss")?;
    bss.target_tgid = process::id() as i32;
    bss.pid_max = pid_max;
    open.load().with_context(|| format!("loading {prog}"))
}

fn program<'a>(skel: &'a TaskKfuncsSuccessSkel<'_>, name: &str) -> Result<ProgramMut<'a>> {
    use libbpf_rs::skel::Skel;
    skel.object()
        .progs_mut()
        .find(|p| p.name() == name)
        .with_context(|| format!("no program {name} in the loaded skeleton"))
}

fn bss<'a>(skel: &'a TaskKfuncsSuccessSkel<'_>) -> Result<&'a types::bss> {
    skel.maps
        .bss_data
        .as_deref()
        .context("the skeleton has no .bss")
}

/// The verdict the program left: it must have run, and passed its checks.
fn verdict(skel: &TaskKfuncsSuccessSkel<'_>, expect_runs: bool) -> Result<Outcome> {
    let b = bss(skel)?;
    let observed = format!(
        "rcu_users before/held/after {}/{}/{}, found pid {} tgid {}",
        b.users_before, b.users_held, b.users_after, b.found_pid, b.found_tgid
    );
    Ok(if expect_runs && b.runs == 0 {
        Outcome::fail("the program never ran")
    } else if b.err != 0 {
        Outcome::fail(format!(
            "check at task_kfuncs_success.bpf.c:{} failed\n{observed}",
            b.err
        ))
    } else {
        Outcome::Pass
    })
}

/// Test-runs a syscall program with `struct syscall_args { op, pid }`.
fn test_run(prog: &ProgramMut<'_>, op: i32, pid: i32) -> Result<()> {
    let mut args = [op.to_ne_bytes(), pid.to_ne_bytes()].concat();
    let input = ProgramInput {
        context_in: Some(&mut args),
        ..Default::default()
    };
    let output = prog.test_run(input).context("BPF_PROG_TEST_RUN")?;
    if output.return_value != 0 {
        bail!("program returned {}", output.return_value);
    }
    Ok(())
}

fn run(prog: &str, trigger: Trigger, pid_max: i32) -> Result<Outcome> {
    let mut storage = MaybeUninit::uninit();
    let skel = load(&mut storage, prog, pid_max)?;
    let me = process::id() as i32;
    match trigger {
        Trigger::Fork => {
            let _link = program(&skel, prog)?.attach().context("attaching")?;
            spawn_and_reap()?;
            verdict(&skel, true)
        }
        Trigger::TestRun => {
            test_run(&program(&skel, prog)?, 0, me)?;
            verdict(&skel, true)
        }
        Trigger::NewPidNs => new_pidns(&skel, prog, true),
        Trigger::InNewPidNs => new_pidns(&skel, prog, false),
        Trigger::Getpgid => {
            let _link = program(&skel, prog)?.attach().context("attaching")?;
            // SAFETY: getpgid(2) has no memory-safety preconditions.
            if unsafe { libc::getpgid(0) } < 0 {
                bail!("getpgid: {}", std::io::Error::last_os_error());
            }
            verdict(&skel, true)
        }
        Trigger::Acceptance => {
            let _link = program(&skel, prog)?.attach().context("attaching")?;
            spawn_and_reap()?;
            let value = skel
                .maps
                .acceptance
                .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
                .context("reading the acceptance map")?
                .context("no acceptance entry")?;
            let mask = u32::from_ne_bytes(value[..4].try_into()?);
            if bss(&skel)?.runs == 0 {
                Ok(Outcome::fail("the program never ran"))
            } else if mask != ACCEPT_ALL {
                Ok(Outcome::fail(format!(
                    "kfunc mask {mask:#x}, want {ACCEPT_ALL:#x} \
                     (acquire 1, release 2, kptr_get 4, from_pid 8, from_vpid 0x10)"
                )))
            } else {
                Ok(Outcome::Pass)
            }
        }
        Trigger::KptrGetEmptied => kptr_get_emptied(&skel, prog),
        Trigger::MapDestructor => map_destructor(&skel, prog, pid_max),
    }
}

/// Stores a task in the slot, lets it exit so that the slot holds its last
/// reference, then (under RCU) empties the slot, drops that reference and
/// calls kptr_get on the stale pointer: it must return NULL.
fn kptr_get_emptied(skel: &TaskKfuncsSuccessSkel<'_>, prog: &str) -> Result<Outcome> {
    let p = program(skel, prog)?;
    let child = Parked::spawn()?;
    let pid = child.pid();
    test_run(&p, SLOT_STORE, pid)?;
    child.finish()?;
    // The dead child drops its last own reference in its final schedule,
    // which can come after waitpid returns: wait until only ours is left.
    let start = Instant::now();
    loop {
        test_run(&p, SLOT_PEEK, 0)?;
        let users = bss(skel)?.users_before;
        if users == 1 {
            break;
        }
        if start.elapsed() > DEFERRED {
            return Ok(Outcome::fail(format!(
                "the exited child still has rcu_users {users} (want 1, the slot's) after {DEFERRED:?}"
            )));
        }
        sleep(Duration::from_millis(10));
    }
    test_run(&p, SLOT_EMPTY_GET, 0)?;
    let b = bss(skel)?;
    if b.users_before != 1 {
        return Ok(Outcome::fail(format!(
            "rcu_users was {} when the slot was emptied (want 1)",
            b.users_before
        )));
    }
    if b.kptr_get_null == 0 {
        return Ok(Outcome::fail(
            "kptr_get returned a task after the slot's last reference to it was released",
        ));
    }
    verdict(skel, true)
}

/// Leaves a reference on a parked child in the slot and closes the skeleton:
/// the map's destructor must bring the child's rcu_users back to where it was.
fn map_destructor(skel: &TaskKfuncsSuccessSkel<'_>, prog: &str, pid_max: i32) -> Result<Outcome> {
    let child = Parked::spawn()?;
    let pid = child.pid();
    let outcome = (|| -> Result<Outcome> {
        let p = program(skel, prog)?;
        test_run(&p, SLOT_USERS, pid)?;
        let baseline = bss(skel)?.users_held;
        // A second object with its own map holds the reference to drop.
        let mut storage = MaybeUninit::uninit();
        let holder = load(&mut storage, prog, pid_max)?;
        test_run(&program(&holder, prog)?, SLOT_STORE, pid)?;
        test_run(&p, SLOT_USERS, pid)?;
        let held = bss(skel)?.users_held;
        if held != baseline + 1 {
            return Ok(Outcome::fail(format!(
                "storing in the map took rcu_users {baseline} -> {held}, want +1"
            )));
        }
        let held_verdict = verdict(&holder, true)?;
        if held_verdict.is_fail() {
            return Ok(held_verdict);
        }
        drop(holder);
        // The map is freed from a workqueue after the last fd is closed.
        let start = Instant::now();
        loop {
            test_run(&p, SLOT_USERS, pid)?;
            let now = bss(skel)?.users_held;
            if now == baseline {
                return verdict(skel, true);
            }
            if start.elapsed() > DEFERRED {
                return Ok(Outcome::fail(format!(
                    "rcu_users {now}, want {baseline}, {DEFERRED:?} after the map was closed"
                )));
            }
            sleep(Duration::from_millis(10));
        }
    })();
    child.finish()?;
    outcome
}

/// Clones a child into a new pid namespace, where it is pid 1, and has it
/// test-run the program with vpid 1: from_vpid must find the child itself
/// (whose pid in init_pid_ns is not 1), from_pid(1) must find init.
/// Runs `prog` in a child that is pid 1 of a new pid namespace; with
/// `lookups`, checks what the from_vpid/from_pid program found there.
fn new_pidns(skel: &TaskKfuncsSuccessSkel<'_>, prog: &str, lookups: bool) -> Result<Outcome> {
    let p = program(skel, prog)?;
    let (pid, code) = in_new_pidns(|| {
        if process::id() != 1 {
            3
        } else if test_run(&p, 0, 1).is_ok() {
            0
        } else {
            4
        }
    })?;
    match code {
        0 => {}
        3 => return Ok(Outcome::fail("the child is not pid 1 in its new namespace")),
        4 => return Ok(Outcome::fail("the child could not test-run the program")),
        code => return Ok(Outcome::fail(format!("the child exited with {code}"))),
    }
    let b = bss(skel)?;
    if b.runs == 0 {
        return Ok(Outcome::fail("the program never ran"));
    }
    if !lookups {
        return verdict(skel, true);
    }
    if b.found_pid != pid {
        return Ok(Outcome::fail(format!(
            "from_vpid(1) in the child's namespace found pid {}, want the child's pid {pid}",
            b.found_pid
        )));
    }
    if b.found_tgid != 1 {
        return Ok(Outcome::fail(format!(
            "from_pid(1) found pid {}, want init (1)",
            b.found_tgid
        )));
    }
    verdict(skel, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn programs(obj: &[u8]) -> Vec<String> {
        let open = libbpf_rs::ObjectBuilder::default()
            .open_memory(obj)
            .expect("the success object opens");
        open.progs()
            .map(|p| p.name().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn every_program_has_a_case_and_every_case_a_program() {
        let progs: HashSet<String> = programs(SUCCESS_OBJ).into_iter().collect();
        let used: HashSet<String> = CASES.iter().map(|(_, p, _)| p.to_string()).collect();
        assert_eq!(progs, used, "programs vs. programs used by CASES");
    }

    #[test]
    fn case_names_are_unique() {
        let names: HashSet<&str> = CASES.iter().map(|(n, _, _)| *n).collect();
        assert_eq!(names.len(), CASES.len());
        assert!(
            CASES.len() >= 15,
            "issue 4 asks for at least 15 success cases"
        );
    }

    #[test]
    fn vpid_cases_are_skipped_only_against_the_c_kfuncs() {
        let ann = bpf::annotations("task_kfuncs_success", SUCCESS_OBJ).unwrap();
        let skip = |name: &str| {
            ann.iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, a)| a.skip.clone())
        };
        // The C build has a twin for from_vpid only where the kernel has bpf_task_from_vpid.
        let skipped = super::super::C_KFUNCS && !cfg!(has_bpf_task_from_vpid);
        assert_eq!(skip("from_vpid_current").is_some(), skipped);
        assert_eq!(skip("syscall_from_vpid_new_pidns").is_some(), skipped);
        assert!(skip("acquire_release_argument").is_none());
    }
}
