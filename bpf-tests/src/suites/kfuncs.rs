// SPDX-License-Identifier: GPL-2.0

//! The kfunc contract, as the kernel's task_kfunc selftests check it: every
//! program of `progs/task_kfuncs_success.bpf.c` must load, run when
//! triggered (a fork for tp_btf and fentry, a test run for syscall
//! programs) and pass its checks; every program of
//! `progs/task_kfuncs_failure.bpf.c` must be rejected with the verifier
//! message written above it ([`bpf::table`]). A few cases need code of
//! their own: a task reference outliving its map, kptr_get on a released
//! slot, from_vpid in a new pid namespace.
//!
//! Both objects are built twice (build.rs): against the Rust kfuncs (suite
//! `rust`) and against the kernel's C kfuncs (`c_kfuncs`), which proves that
//! the cases test the contract and not this implementation; cases whose
//! contract differs carry `__c_skip()`.

use anyhow::{bail, Result};

use crate::bpf::{self, Loaded, Obj};
use crate::process::{self, wait_until, Parked, DEFERRED};
use crate::{Case, Outcome};

/// One build of the success, rejection and exiting-thread programs.
pub struct Variant {
    pub suite: &'static str,
    c_kfuncs: bool,
    success: Obj,
    failure: Obj,
    exiting: Obj,
    nmi: Obj,
}

pub const RUST: Variant = Variant {
    suite: "rust",
    c_kfuncs: false,
    success: crate::obj!("rust/task_kfuncs_success"),
    failure: crate::obj!("rust/task_kfuncs_failure"),
    exiting: crate::obj!("rust/task_kfuncs_exiting"),
    nmi: super::nmi::RUST,
};

pub const C: Variant = Variant {
    suite: "c_kfuncs",
    c_kfuncs: true,
    success: crate::obj!("c/task_kfuncs_success"),
    failure: crate::obj!("c/task_kfuncs_failure"),
    exiting: crate::obj!("c/task_kfuncs_exiting"),
    nmi: crate::obj!("c/task_kfuncs_nmi"),
};

/// The program the slot cases drive, one operation per test run.
const SLOT_PROG: &str = "syscall_task_slot";
/// `enum slot_op` of the program.
const SLOT_STORE: i32 = 1;
const SLOT_USERS: i32 = 2;
const SLOT_PEEK: i32 = 3;
const SLOT_EMPTY_GET: i32 = 4;

const NEW_PIDNS_PROG: &str = "syscall_from_vpid_new_pidns";
const INVALID_NEW_PIDNS_PROG: &str = "syscall_from_vpid_invalid_new_pidns";

/// The cases with code of their own: (case, program, what it does).
type Custom = (&'static str, &'static str, fn(Obj) -> Result<Outcome>);

const CUSTOM: &[Custom] = &[
    ("map_destructor_drops_ref", SLOT_PROG, map_destructor),
    ("kptr_get_after_slot_emptied", SLOT_PROG, kptr_get_emptied),
    (NEW_PIDNS_PROG, NEW_PIDNS_PROG, new_pidns),
    (
        "from_vpid_invalid_new_pidns",
        INVALID_NEW_PIDNS_PROG,
        invalid_new_pidns,
    ),
];

impl Variant {
    /// The success table, the cases of their own, the rejection table, the
    /// exiting-thread case, the NMI cases.
    pub fn cases(&self) -> Result<Vec<Case>> {
        let customs: Vec<&str> = CUSTOM.iter().map(|c| c.1).collect();
        let mut cases = bpf::table(self.success, "", &customs)?;
        let progs = self.success.progs()?;
        for &(name, prog, run) in CUSTOM {
            let skip = progs
                .iter()
                .find(|p| p.name == prog)
                .and_then(|p| p.skip.clone());
            let obj = self.success;
            cases.push(Case::new(name, move |_| match skip {
                Some(why) => Outcome::Skip(why),
                None => run(obj).unwrap_or_else(bpf::failed),
            }));
        }
        cases.extend(bpf::table(self.failure, "", &[])?);
        cases.extend(super::exiting::cases(self.exiting)?);
        cases.extend(super::nmi::cases(self.nmi, self.c_kfuncs));
        Ok(cases)
    }
}

/// Test-runs a syscall program with `struct syscall_args { op, pid }`.
fn test_run(skel: &Loaded, prog: &str, op: i32, pid: i32) -> Result<()> {
    let mut args = [op.to_ne_bytes(), pid.to_ne_bytes()].concat();
    match skel.test_run(prog, &mut args)? {
        0 => Ok(()),
        ret => bail!("{prog} returned {ret}"),
    }
}

fn load_slot(obj: Obj) -> Result<Loaded> {
    let loaded = obj.load(&[SLOT_PROG])?;
    loaded.set_runner_globals()?;
    Ok(loaded)
}

/// Stores a task in the slot, lets it exit so that the slot holds its last
/// reference, then (under RCU) empties the slot, drops that reference and
/// calls kptr_get on the stale pointer: it must return NULL.
fn kptr_get_emptied(obj: Obj) -> Result<Outcome> {
    let skel = load_slot(obj)?;
    let child = Parked::spawn()?;
    test_run(&skel, SLOT_PROG, SLOT_STORE, child.pid())?;
    child.finish()?;
    // The dead child drops its last own reference in its final schedule,
    // which can come after waitpid returns: wait until only ours is left.
    let mut users = 0;
    if !wait_until(DEFERRED, || {
        test_run(&skel, SLOT_PROG, SLOT_PEEK, 0)?;
        users = skel.get("users_before")?;
        Ok(users == 1)
    })? {
        return Ok(Outcome::fail(format!(
            "the exited child still has rcu_users {users} (want 1, the slot's) after {DEFERRED:?}"
        )));
    }
    test_run(&skel, SLOT_PROG, SLOT_EMPTY_GET, 0)?;
    let users: i32 = skel.get("users_before")?;
    if users != 1 {
        return Ok(Outcome::fail(format!(
            "rcu_users was {users} when the slot was emptied (want 1)"
        )));
    }
    if skel.get::<i32>("kptr_get_null")? == 0 {
        return Ok(Outcome::fail(
            "kptr_get returned a task after the slot's last reference to it was released",
        ));
    }
    skel.verdict()
}

/// Leaves a reference on a parked child in the slot of a second object and
/// closes it: the map's destructor must bring the child's rcu_users back.
fn map_destructor(obj: Obj) -> Result<Outcome> {
    let skel = load_slot(obj)?;
    let child = Parked::spawn()?;
    let pid = child.pid();
    let users = || -> Result<i32> {
        test_run(&skel, SLOT_PROG, SLOT_USERS, pid)?;
        skel.get("users_held")
    };
    let baseline = users()?;
    let holder = load_slot(obj)?;
    test_run(&holder, SLOT_PROG, SLOT_STORE, pid)?;
    let held = users()?;
    if held != baseline + 1 {
        return Ok(Outcome::fail(format!(
            "storing in the map took rcu_users {baseline} -> {held}, want +1"
        )));
    }
    let held_verdict = holder.verdict()?;
    if held_verdict.is_fail() {
        return Ok(held_verdict);
    }
    // The map is freed from a workqueue after the last fd is closed.
    drop(holder);
    let mut now = 0;
    if !wait_until(DEFERRED, || {
        now = users()?;
        Ok(now == baseline)
    })? {
        return Ok(Outcome::fail(format!(
            "rcu_users {now}, want {baseline}, {DEFERRED:?} after the map was closed"
        )));
    }
    child.finish()?;
    skel.verdict()
}

/// Test-runs `prog` (with vpid 1) in a child that is pid 1 of a new pid
/// namespace; returns the child's pid there (in ours) and the verdict.
fn in_new_pidns(obj: Obj, prog: &'static str) -> Result<(Loaded, i32, Outcome)> {
    let skel = obj.load(&[prog])?;
    let child = process::fork(true, |out| {
        use std::io::Write;
        if std::process::id() != 1 {
            let _ = write!(out, "the child is not pid 1 in its new namespace");
            return 1;
        }
        match test_run(&skel, prog, 0, 1) {
            Ok(()) => 0,
            Err(e) => {
                let _ = write!(out, "the child could not test-run the program: {e:#}");
                1
            }
        }
    })?;
    let pid = child.pid();
    let (code, out) = child.wait()?;
    let verdict = if code != 0 {
        Outcome::fail(format!("the child exited with {code}: {out}"))
    } else {
        skel.verdict()?
    };
    Ok((skel, pid, verdict))
}

/// In a new pid namespace, where the child is pid 1, from_vpid(1) must find
/// the child itself (whose pid in init_pid_ns is not 1), from_pid(1) init.
fn new_pidns(obj: Obj) -> Result<Outcome> {
    let (skel, pid, verdict) = in_new_pidns(obj, NEW_PIDNS_PROG)?;
    if verdict.is_fail() {
        return Ok(verdict);
    }
    let (found_pid, found_tgid) = (
        skel.get::<i32>("found_pid")?,
        skel.get::<i32>("found_tgid")?,
    );
    Ok(if found_pid != pid {
        Outcome::fail(format!(
            "from_vpid(1) in the child's namespace found pid {found_pid}, want the child's pid {pid}"
        ))
    } else if found_tgid != 1 {
        Outcome::fail(format!("from_pid(1) found pid {found_tgid}, want init (1)"))
    } else {
        Outcome::Pass
    })
}

/// In a new pid namespace the child is the only task: no other vpid finds
/// one (the program's own checks).
fn invalid_new_pidns(obj: Obj) -> Result<Outcome> {
    Ok(in_new_pidns(obj, INVALID_NEW_PIDNS_PROG)?.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_variant_has_its_cases() {
        for v in [RUST, C] {
            let success = v.success.progs().unwrap();
            assert!(
                success.len() >= 15,
                "{}: at least 15 success cases",
                v.suite
            );
            for &(_, prog, _) in CUSTOM {
                assert!(success.iter().any(|p| p.name == prog), "{prog}");
            }
            assert!(success.iter().all(|p| !p.failure));
            let failure = v.failure.progs().unwrap();
            assert!(
                failure.len() >= 15,
                "{}: at least 15 rejection cases",
                v.suite
            );
            assert!(failure.iter().all(|p| p.failure && !p.msgs.is_empty()));
        }
    }

    /// The C build skips what the Rust build skips (cases the kernel line
    /// has no contract for) and, where the kernel has no C from_vpid, the
    /// from_vpid cases.
    #[test]
    fn the_c_build_skips_only_the_vpid_cases_more() {
        let skipped = |obj: Obj| -> Vec<String> {
            let progs = obj.progs().unwrap().into_iter();
            progs.filter(|p| p.skip.is_some()).map(|p| p.name).collect()
        };
        let rust = skipped(RUST.success);
        let more: Vec<String> = skipped(C.success)
            .into_iter()
            .filter(|p| !rust.contains(p))
            .collect();
        let vpid = ["from_vpid_current", NEW_PIDNS_PROG, INVALID_NEW_PIDNS_PROG];
        let want: &[&str] = if cfg!(has_bpf_task_from_vpid) {
            &[]
        } else {
            &vpid
        };
        assert_eq!(more, want);
    }

    #[test]
    fn messages_name_the_kfuncs_of_each_build() {
        for (v, want) in [(RUST, "rust_task_release"), (C, "bpf_task_release")] {
            let progs = v.failure.progs().unwrap();
            let p = progs
                .iter()
                .find(|p| p.name == "release_unacquired_argument")
                .unwrap();
            assert!(p.msgs[0].contains(want), "{:?}", p.msgs);
        }
    }
}
