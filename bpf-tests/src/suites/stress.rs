// SPDX-License-Identifier: GPL-2.0

//! Stress under SMP: the task kfuncs from every context at once, with a
//! reference count that must balance at the end.
//!
//! `progs/task_kfuncs_stress.bpf.c` attaches to task_newtask,
//! sched_process_exit, sched_switch and sched_process_free, and a syscall
//! program mixing every operation runs from several threads at once with
//! BPF_PROG_TEST_RUN. Meanwhile two helper processes fork and reap children
//! and spawn threads that reap themselves, one of them as pid 1 of a new
//! pid namespace, and parked sentinel tasks wait to be looked up and stored.
//! Operation counts are fixed (not wall time); the short form runs in
//! `cargo xtask test`, the long one in `cargo xtask test --long`.
//!
//! The case passes when, after a final drain of the slots: references taken
//! (non-NULL acquire, kptr_get, from_pid, from_vpid) equal references
//! dropped (Rust and C releases), counted per CPU in the programs; acquire
//! in sched_process_free never returned a task; the sentinels' `rcu_users`
//! are back to what they were; the kernel logged nothing bad in the window
//! (with `panic_on_warn` on); and, where the kernel has them, no new
//! kmemleak object (in the long form; the `kernel/kmemleak_clean` judge
//! covers the short one) and `task_struct` slab objects back to their
//! baseline. A guest-side watchdog dumps `sysrq-t`/`sysrq-l` and fails the
//! run when the work stops making progress.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use libbpf_rs::btf::types::Enum;
use libbpf_rs::btf::Btf;
use libbpf_rs::{Link, MapCore, MapFlags, MapHandle};

use crate::bpf::{self, Loaded, Obj};
use crate::kernel_log::{self, Knobs, Leaks, Mark};
use crate::module::TASK_KFUNCS;
use crate::process::{self, Parked};
use crate::{Case, Outcome};

const STRESS: Obj = crate::obj!("task_kfuncs_stress");

/// The programs' per-CPU counters, summed, by the names of their `enum
/// counter` without `C_`, in lower case (`acquire`, `acquire_ok`, ...).
type Counts = BTreeMap<String, u64>;

/// What a counter is read as: calls, and calls that returned a task.
const KFUNCS: [(&str, &str); 4] = [
    ("rust_task_acquire", "acquire"),
    ("rust_task_kptr_get", "kptr_get"),
    ("rust_task_from_pid", "from_pid"),
    ("rust_task_from_vpid", "from_vpid"),
];

/// The tracing programs, attached for the whole run.
const TRACING: &[&str] = &[
    "stress_newtask",
    "stress_exit",
    "stress_switch",
    "stress_free",
];

/// How much work one run does. Counts, never durations.
#[derive(Debug, Clone, Copy)]
struct Scale {
    name: &'static str,
    /// Runs of `stress_mix` per thread (4 threads), and iterations per run.
    mix_runs: u32,
    mix_iters: u32,
    /// Per churn helper: forks (child exits at once) and threads (reap
    /// themselves), each from its own thread.
    churn: u32,
    /// kfunc calls the run must reach.
    min_calls: u64,
    /// No progress for this long is a stall.
    stall_secs: u64,
}

const MIX_THREADS: usize = 4;
/// Parked tasks whose `rcu_users` must come back.
const SENTINELS: usize = 4;

#[rustfmt::skip]
const SCALES: [Scale; 4] = [
    Scale { name: "short", mix_runs: 50, mix_iters: 500, churn: 300, min_calls: 100_000, stall_secs: 120 },
    Scale { name: "long", mix_runs: 250, mix_iters: 1000, churn: 2000, min_calls: 1_000_000, stall_secs: 120 },
    Scale { name: "short (debug kernel)", mix_runs: 20, mix_iters: 250, churn: 50, min_calls: 20_000, stall_secs: 300 },
    Scale { name: "long (debug kernel)", mix_runs: 50, mix_iters: 500, churn: 300, min_calls: 100_000, stall_secs: 300 },
];

/// The stress case.
pub fn cases() -> Vec<Case> {
    vec![Case::new("stress_smp", |ctx| {
        if !TASK_KFUNCS.is_loaded() {
            return Outcome::Skip("needs the module (--module PATH)".into());
        }
        let debug = kernel_log::kmemleak_available();
        let scale = SCALES[usize::from(ctx.long) + 2 * usize::from(debug)];
        match run(scale, ctx.long && debug) {
            Ok(()) => Outcome::Pass,
            Err(e) => bpf::failed(e),
        }
    })]
}

/// `rcu_users` of `pid`, without the reader's own reference.
fn rcu_users(skel: &Loaded, pid: i32) -> Result<i32> {
    skel.set("read_pid", pid)?;
    if skel.test_run("read_rcu_users", &mut [])? != 0 {
        bail!("read_rcu_users: no task with pid {pid}");
    }
    skel.get("rcu_users_read")
}

/// The counters' names, by value, from the object's BTF.
fn counter_names() -> Result<Vec<String>> {
    let btf = Btf::from_raw("stress", STRESS.bytes)?.context("no BTF")?;
    let e: Enum<'_> = btf.type_by_name("counter").context("no enum counter")?;
    Ok(e.iter()
        .filter_map(|m| m.name?.to_str())
        .filter(|n| *n != "NR_COUNTERS")
        .map(|n| n.trim_start_matches("C_").to_lowercase())
        .collect())
}

/// Sums the per-CPU counters.
fn counters(map: &dyn MapCore) -> Result<Counts> {
    let per_cpu = map
        .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)
        .context("reading the counters")?
        .context("no counters")?;
    let mut sum = Counts::new();
    for (i, name) in counter_names()?.into_iter().enumerate() {
        let mut total = 0;
        for cpu in &per_cpu {
            let bytes = cpu
                .get(i * 8..i * 8 + 8)
                .context("counter value too short")?;
            total += u64::from_ne_bytes(bytes.try_into()?);
        }
        sum.insert(name, total);
    }
    Ok(sum)
}

/// kfunc calls in a counter snapshot.
fn kfunc_calls(n: &Counts) -> u64 {
    KFUNCS.iter().map(|(_, k)| n[*k]).sum::<u64>()
        + n["release_rust"]
        + n["release_c"]
        + n["free_acquire"]
}

/// References taken and dropped in a counter snapshot.
fn balance(n: &Counts) -> (u64, u64) {
    let taken = KFUNCS.iter().map(|(_, k)| n[&format!("{k}_ok")]).sum();
    (taken, n["release_rust"] + n["release_c"])
}

/// Fails the run (the runner exits: a stall is not a case's verdict) when
/// neither the mix nor the helpers' forks and threads, which task_newtask
/// counts, made progress for `stall`; dumps every task and CPU first.
fn watchdog(counts: &MapHandle, stall: Duration, done: &AtomicBool) {
    let progress = || {
        counters(counts)
            .map(|n| n["mix_runs"] + n["acquire"])
            .unwrap_or(0)
    };
    let (mut last, mut since) = (progress(), Instant::now());
    while !done.load(Ordering::Relaxed) {
        thread::sleep(Duration::from_millis(500));
        let now = progress();
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() > stall && !done.load(Ordering::Relaxed) {
            println!(
                "not ok - stress_smp: no progress for {} s (mix iterations + new tasks: {now}): \
                 sysrq-t and sysrq-l follow",
                stall.as_secs()
            );
            for line in kernel_log::sysrq_dump().lines() {
                println!("# {line}");
            }
            println!("stress: stalled; exiting the runner");
            std::process::exit(3);
        }
    }
}

/// A helper's load: `forks` fork/exit/reap rounds and `threads`
/// spawn/exit/join rounds, from two threads at once (non-leader threads
/// reap themselves). Writes "forks N threads N failed N" to `out`.
fn churn(out: &mut impl Write, forks: u32, threads: u32) -> i32 {
    let (forked, spawned) = thread::scope(|s| {
        let forker = s.spawn(|| {
            (0..forks)
                .filter(|_| {
                    process::fork(false, |_| 0)
                        .and_then(process::Forked::wait)
                        .is_ok_and(|(code, _)| code == 0)
                })
                .count()
        });
        let spawned = (0..threads)
            .filter(|_| {
                thread::Builder::new()
                    .spawn(|| {})
                    .map(|t| t.join())
                    .is_ok()
            })
            .count();
        (forker.join().unwrap_or(0), spawned)
    });
    let failed = forks as usize - forked + threads as usize - spawned;
    let _ = write!(out, "forks {forked} threads {spawned} failed {failed}");
    i32::from(failed != 0)
}

/// `task_struct` objects in use minus live tasks: constant when no task
/// struct leaks, whatever kernel threads come and go. None when the kernel
/// has no SLUB sysfs (the normal kernel's SLUB_TINY).
fn task_struct_excess() -> Result<Option<i64>> {
    let dir = Path::new("/sys/kernel/slab/task_struct");
    if !dir.join("objects").exists() {
        return Ok(None);
    }
    // The same reading twice in a row, so that no task came or went between.
    let mut last = None;
    for _ in 0..50 {
        // Flushes the per-CPU slabs, whose free objects count as in use.
        let _ = fs::write(dir.join("shrink"), "1");
        let objects: i64 = fs::read_to_string(dir.join("objects"))
            .context("reading task_struct/objects")?
            .split_whitespace()
            .next()
            .context("empty task_struct/objects")?
            .parse()
            .context("parsing task_struct/objects")?;
        let mut tasks = 0i64;
        for proc_entry in fs::read_dir("/proc")?.flatten() {
            if proc_entry
                .file_name()
                .to_string_lossy()
                .chars()
                .all(|ch| ch.is_ascii_digit())
            {
                if let Ok(threads) = fs::read_dir(proc_entry.path().join("task")) {
                    tasks += threads.count() as i64;
                }
            }
        }
        let now = objects + kfence_task_structs() - tasks;
        if last == Some(now) {
            return Ok(Some(now));
        }
        last = Some(now);
    }
    bail!("task_struct objects never stable between two readings")
}

/// Live `task_struct`s that KFENCE allocated (outside the slab pages, so
/// not in the slab's object count); 0 without KFENCE.
fn kfence_task_structs() -> i64 {
    let Ok(objects) = fs::read_to_string("/sys/kernel/debug/kfence/objects") else {
        return 0;
    };
    objects
        .split("kfence-#")
        .filter(|o| o.contains("cache=task_struct") && !o.contains("freed by task"))
        .count() as i64
}

fn online_cpus() -> usize {
    thread::available_parallelism().map_or(1, usize::from)
}

/// The run: the kernel's state before, [`stress`], the kernel's state
/// after every task of the run is gone.
fn run(scale: Scale, kmemleak: bool) -> Result<()> {
    let cpus = online_cpus();
    if cpus < 2 {
        bail!(
            "the guest has {cpus} CPU: stress needs at least 2 (boot it with `vng --cpus 2`, \
             as cargo xtask test does)"
        );
    }
    println!(
        "# stress ({}): {cpus} vCPUs, {} mix threads x {} runs x {} iterations, \
         {} forks + as many threads per churn helper (2, one in a new pid namespace), \
         {} sentinels",
        scale.name, MIX_THREADS, scale.mix_runs, scale.mix_iters, scale.churn, SENTINELS
    );
    let _panic = Knobs::set(&[("/proc/sys/kernel/panic_on_warn", "1")])?;
    let kmsg = Mark::here()?;
    let leaks = if kmemleak { Leaks::snapshot()? } else { None };
    let slab_before = task_struct_excess()?;
    if slab_before.is_none() && kernel_log::kmemleak_available() {
        bail!("the debug kernel has no /sys/kernel/slab/task_struct/objects (SLUB_DEBUG + SYSFS)");
    }
    let sentinels = (0..SENTINELS)
        .map(|_| Parked::spawn())
        .collect::<Result<Vec<_>>>()?;
    let figures = stress(scale, &sentinels)?;
    for sentinel in sentinels {
        sentinel.finish()?;
    }

    let mut problems = Vec::new();
    if let Some(before) = slab_before {
        // Task structs are freed after an RCU grace period. Fewer than
        // before is no leak: a task that died before the run (the previous
        // case's) may have been waiting for its grace period at `before`.
        let mut after = None;
        process::wait_until(Duration::from_secs(30), || {
            after = task_struct_excess()?;
            Ok(after.is_some_and(|a| a <= before))
        })?;
        println!(
            "# stress: task_struct objects minus live tasks: before {before}, after {after:?}"
        );
        if after.is_none_or(|a| a > before) {
            problems.push(format!(
                "task_struct slab objects above their baseline: objects minus live tasks \
                 was {before}, is {after:?} after 30 s"
            ));
        }
    } else {
        println!("# stress: no SLUB sysfs on this kernel: task_struct objects not compared");
    }
    if let Err(e) = kmsg.clean() {
        problems.push(format!("{e:#}"));
    }
    if let Some(Err(e)) = leaks.map(|l| l.none_since()) {
        problems.push(format!("{e:#}"));
    }
    println!("{figures}");
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    Ok(())
}

/// The run proper, between the sentinels' start and end. Returns the
/// figures to print.
fn stress(scale: Scale, sentinels: &[Parked]) -> Result<String> {
    let mut progs: Vec<&str> = TRACING.to_vec();
    progs.extend(["stress_mix", "drain", "read_rcu_users", "quiesce"]);
    let skel = STRESS.load(&progs)?;
    skel.set("mix_iters", scale.mix_iters)?;
    let mut baseline = Vec::new();
    for s in sentinels {
        baseline.push(rcu_users(&skel, s.pid())?);
    }
    let counts = MapHandle::try_from(&skel.map("counts")?).context("counters map handle")?;
    let before = counters(&counts)?;
    let links = TRACING
        .iter()
        .map(|name| skel.attach(name))
        .collect::<Result<Vec<Link>>>()?;

    // The helpers, forked while the runner is still single-threaded; the
    // tracing programs see their work from the start.
    let start = Instant::now();
    let churn_count = scale.churn;
    let helpers = [false, true].map(|new_pidns| {
        process::fork(new_pidns, |out| {
            if new_pidns && std::process::id() != 1 {
                let _ = write!(out, "not pid 1 in the new pid namespace");
                return 1;
            }
            churn(out, churn_count, churn_count)
        })
    });
    let helper_pids: Vec<i32> = helpers.iter().flatten().map(|h| h.pid()).collect();
    let real = sentinels
        .iter()
        .map(Parked::pid)
        .chain(helper_pids)
        .chain([std::process::id() as i32]);
    let mut pids = skel.get_bytes("pids")?;
    for (slot, pid) in pids.chunks_mut(4).zip(real) {
        slot.copy_from_slice(&pid.to_ne_bytes());
    }
    skel.set_bytes("pids", &pids)?;

    let done = AtomicBool::new(false);
    let mut errors = Vec::new();
    let churned = thread::scope(|s| {
        s.spawn(|| watchdog(&counts, Duration::from_secs(scale.stall_secs), &done));
        let mix: Vec<_> = (0..MIX_THREADS)
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    for i in 0..scale.mix_runs {
                        skel.test_run("stress_mix", &mut [])
                            .with_context(|| format!("run {i}"))?;
                    }
                    Ok(())
                })
            })
            .collect();
        for (i, t) in mix.into_iter().enumerate() {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(format!("mix thread {i}: {e:#}")),
                Err(_) => errors.push(format!("mix thread {i} panicked")),
            }
        }
        let mut churned = Vec::new();
        for (what, helper) in ["churn helper", "churn helper in a new pid namespace"]
            .iter()
            .zip(helpers)
        {
            match helper.and_then(process::Forked::wait) {
                Ok((0, out)) => churned.push(out),
                Ok((code, out)) => errors.push(format!("{what} exited with {code}: {out}")),
                Err(e) => errors.push(format!("{what}: {e:#}")),
            }
        }
        done.store(true, Ordering::Relaxed);
        churned
    });
    let elapsed = start.elapsed();

    // Quiesce: no tracing program acts once `quiesce` returned 0.
    let t0 = Instant::now();
    while skel.test_run("quiesce", &mut [])? != 0 {
        if t0.elapsed() > Duration::from_secs(30) {
            bail!("tracing programs still running 30 s after disabling them");
        }
        thread::yield_now();
    }
    drop(links);
    if skel.test_run("drain", &mut [])? != 0 {
        bail!("drain failed");
    }
    let n: Counts = counters(&counts)?
        .into_iter()
        .map(|(k, v)| (k.clone(), v - before[&k]))
        .collect();
    let mut after = Vec::new();
    for s in sentinels {
        after.push(rcu_users(&skel, s.pid())?);
    }

    let calls = kfunc_calls(&n);
    let (taken, dropped) = balance(&n);
    let mut figures = format!(
        "# stress: {} vCPUs, {:.1} s, {calls} kfunc calls ({:.0}/s), taken {taken}, dropped {dropped}\n",
        online_cpus(),
        elapsed.as_secs_f64(),
        calls as f64 / elapsed.as_secs_f64().max(1e-3)
    );
    let counts: Vec<String> = n.iter().map(|(name, v)| format!("{name} {v}")).collect();
    figures.push_str(&format!(
        "# stress: counters (calls, calls that returned a task): {}\n\
         # stress: helpers: {}; sentinel rcu_users before {baseline:?} after {after:?}",
        counts.join(", "),
        churned.join(", ")
    ));

    if taken != dropped {
        errors.push(format!(
            "references taken {taken} != dropped {dropped} after the drain"
        ));
    }
    if n["free_violation"] != 0 {
        errors.push(format!(
            "acquire in sched_process_free returned a task {} times (past its last rcu_users)",
            n["free_violation"]
        ));
    }
    if baseline != after {
        errors.push(format!(
            "sentinel rcu_users before {baseline:?}, after {after:?}"
        ));
    }
    if calls < scale.min_calls {
        errors.push(format!(
            "only {calls} kfunc calls, the run must make {}",
            scale.min_calls
        ));
    }
    for (what, k) in [
        ("task_newtask acquires", "acquire"),
        ("kptr_get calls", "kptr_get"),
        ("from_pid calls", "from_pid"),
        ("from_vpid calls", "from_vpid"),
        ("sched_process_free acquires", "free_acquire"),
        ("references stored in slots", "stored"),
    ] {
        if n[k] == 0 {
            errors.push(format!("no {what}: a program never ran"));
        }
    }
    if !errors.is_empty() {
        bail!("{}\n{figures}", errors.join("\n"));
    }
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counters_the_runner_reads_exist() {
        let names = counter_names().unwrap();
        for (_, k) in KFUNCS {
            assert!(names.contains(&k.to_string()) && names.contains(&format!("{k}_ok")));
        }
        for k in [
            "release_rust",
            "release_c",
            "free_acquire",
            "free_violation",
            "stored",
        ] {
            assert!(names.contains(&k.to_string()), "{k}");
        }
        for k in ["drained", "mix_runs", "switch_no_ns"] {
            assert!(names.contains(&k.to_string()), "{k}");
        }
    }
}
