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

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use libbpf_rs::{Link, MapCore, MapFlags, MapHandle};

use crate::bpf::{self, Loaded};
use crate::kernel_log::{self, Leaks, Mark};
use crate::module::TASK_KFUNCS;
use crate::process::{self, Parked};
use crate::{Case, Outcome};

/// The counters of the programs' `enum counter`, in order.
const COUNTERS: &[&str] = &[
    "acquire",
    "acquire_ok",
    "kptr_get",
    "kptr_get_ok",
    "from_pid",
    "from_pid_ok",
    "from_vpid",
    "from_vpid_ok",
    "release_rust",
    "release_c",
    "free_acquire",
    "free_violation",
    "stored",
    "drained",
    "mix_runs",
    "switch_no_ns",
];

/// Indices into [`COUNTERS`].
mod c {
    pub const ACQUIRE: usize = 0;
    pub const KPTR_GET: usize = 2;
    pub const FROM_PID: usize = 4;
    pub const FROM_VPID: usize = 6;
    pub const RELEASE_RUST: usize = 8;
    pub const RELEASE_C: usize = 9;
    pub const FREE_ACQUIRE: usize = 10;
    pub const FREE_VIOLATION: usize = 11;
    pub const STORED: usize = 12;
    pub const DRAINED: usize = 13;
    pub const MIX_RUNS: usize = 14;
    pub const SWITCH_NO_NS: usize = 15;
}

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
    /// Threads running `stress_mix`, and runs each, and iterations per run.
    mix_threads: usize,
    mix_runs: u32,
    mix_iters: u32,
    /// Per churn helper: forks (child exits at once) and threads (reap
    /// themselves), each from its own thread.
    forks: u32,
    threads: u32,
    /// Parked tasks whose `rcu_users` must come back.
    sentinels: usize,
    /// kfunc calls the run must reach.
    min_calls: u64,
    /// No progress for this long is a stall.
    stall: Duration,
}

fn scale(long: bool, debug: bool) -> Scale {
    match (long, debug) {
        (true, false) => Scale {
            name: "long",
            mix_threads: 4,
            mix_runs: 250,
            mix_iters: 1000,
            forks: 2000,
            threads: 2000,
            sentinels: 4,
            min_calls: 1_000_000,
            stall: Duration::from_secs(120),
        },
        (false, false) => Scale {
            name: "short",
            mix_threads: 4,
            mix_runs: 50,
            mix_iters: 500,
            forks: 300,
            threads: 300,
            sentinels: 4,
            min_calls: 100_000,
            stall: Duration::from_secs(120),
        },
        (true, true) => Scale {
            name: "long (debug kernel)",
            mix_threads: 4,
            mix_runs: 50,
            mix_iters: 500,
            forks: 300,
            threads: 300,
            sentinels: 4,
            min_calls: 100_000,
            stall: Duration::from_secs(300),
        },
        (false, true) => Scale {
            name: "short (debug kernel)",
            mix_threads: 4,
            mix_runs: 20,
            mix_iters: 250,
            forks: 50,
            threads: 50,
            sentinels: 4,
            min_calls: 20_000,
            stall: Duration::from_secs(300),
        },
    }
}

/// The stress case.
pub fn cases() -> Vec<Case> {
    vec![Case::new("stress_smp", |ctx| {
        if !TASK_KFUNCS.is_loaded() {
            return Outcome::Skip("needs the module (--module PATH)".into());
        }
        let debug = kernel_log::kmemleak_available();
        match run(scale(ctx.long, debug), ctx.long && debug, ctx.verbose) {
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

/// Sums the per-CPU counters.
fn counters(map: &dyn MapCore) -> Result<Vec<u64>> {
    let per_cpu = map
        .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)
        .context("reading the counters")?
        .context("no counters")?;
    let mut sum = vec![0u64; COUNTERS.len()];
    for cpu in per_cpu {
        for (i, v) in sum.iter_mut().enumerate() {
            let bytes = cpu
                .get(i * 8..i * 8 + 8)
                .context("counter value too short")?;
            *v += u64::from_ne_bytes(bytes.try_into()?);
        }
    }
    Ok(sum)
}

/// kfunc calls in a counter snapshot.
fn kfunc_calls(n: &[u64]) -> u64 {
    n[c::ACQUIRE]
        + n[c::KPTR_GET]
        + n[c::FROM_PID]
        + n[c::FROM_VPID]
        + n[c::RELEASE_RUST]
        + n[c::RELEASE_C]
        + n[c::FREE_ACQUIRE]
}

/// References taken and dropped in a counter snapshot.
fn balance(n: &[u64]) -> (u64, u64) {
    let taken = n[c::ACQUIRE + 1] + n[c::KPTR_GET + 1] + n[c::FROM_PID + 1] + n[c::FROM_VPID + 1];
    (taken, n[c::RELEASE_RUST] + n[c::RELEASE_C])
}

/// Fails the run (the runner exits: a stall is not a case's verdict) when
/// neither the mix nor the helpers' forks and threads, which task_newtask
/// counts, made progress for `stall`; dumps every task and CPU first.
fn watchdog(counts: &MapHandle, stall: Duration, done: &AtomicBool) {
    let progress = || {
        counters(counts)
            .map(|n| n[c::MIX_RUNS] + n[c::ACQUIRE])
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

/// Sets /proc/sys/kernel/panic_on_warn for the life of the guard.
struct PanicOnWarn(Option<String>);

impl PanicOnWarn {
    const PATH: &'static str = "/proc/sys/kernel/panic_on_warn";

    fn on() -> Self {
        let old = fs::read_to_string(Self::PATH).ok();
        if fs::write(Self::PATH, "1").is_ok() {
            PanicOnWarn(old)
        } else {
            PanicOnWarn(None)
        }
    }
}

impl Drop for PanicOnWarn {
    fn drop(&mut self) {
        if let Some(old) = self.0.take() {
            let _ = fs::write(Self::PATH, old.trim());
        }
    }
}

fn online_cpus() -> usize {
    thread::available_parallelism().map_or(1, usize::from)
}

/// The run: the kernel's state before, [`stress`], the kernel's state
/// after every task of the run is gone.
fn run(scale: Scale, kmemleak: bool, verbose: bool) -> Result<()> {
    let cpus = online_cpus();
    if cpus < 2 {
        bail!(
            "the guest has {cpus} CPU: stress needs at least 2 (boot it with `vng --cpus 2`, \
             as cargo xtask test does)"
        );
    }
    println!(
        "# stress ({}): {cpus} vCPUs, {} mix threads x {} runs x {} iterations, \
         {} forks + {} threads per churn helper (2, one in a new pid namespace), \
         {} sentinels",
        scale.name,
        scale.mix_threads,
        scale.mix_runs,
        scale.mix_iters,
        scale.forks,
        scale.threads,
        scale.sentinels
    );
    let _panic = PanicOnWarn::on();
    let kmsg = Mark::here()?;
    let leaks = if kmemleak { Leaks::snapshot()? } else { None };
    let slab_before = task_struct_excess()?;
    if kmemleak_available_but_no_slab(slab_before) {
        bail!("the debug kernel has no /sys/kernel/slab/task_struct/objects (SLUB_DEBUG + SYSFS)");
    }
    let sentinels = (0..scale.sentinels)
        .map(|_| Parked::spawn())
        .collect::<Result<Vec<_>>>()?;
    let figures = stress(scale, &sentinels, verbose)?;
    for sentinel in sentinels {
        sentinel.finish()?;
    }

    let mut problems = Vec::new();
    if let Some(before) = slab_before {
        let start = Instant::now();
        let mut after = task_struct_excess()?;
        // Task structs are freed after an RCU grace period.
        while after != Some(before) && start.elapsed() < Duration::from_secs(30) {
            thread::sleep(Duration::from_millis(200));
            after = task_struct_excess()?;
        }
        println!(
            "# stress: task_struct objects minus live tasks: before {before}, after {after:?}"
        );
        if after != Some(before) {
            problems.push(format!(
                "task_struct slab objects not back to baseline: objects minus live tasks \
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

/// The debug kernel (kmemleak) must have the slab counts the check needs.
fn kmemleak_available_but_no_slab(slab: Option<i64>) -> bool {
    slab.is_none() && kernel_log::kmemleak_available()
}

/// The run proper, between the sentinels' start and end. Returns the
/// figures to print.
fn stress(scale: Scale, sentinels: &[Parked], verbose: bool) -> Result<String> {
    let mut progs: Vec<&str> = TRACING.to_vec();
    progs.extend(["stress_mix", "drain", "read_rcu_users", "quiesce"]);
    let skel = bpf::STRESS.load(&progs)?;
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
    let (forks, threads) = (scale.forks, scale.threads);
    let helpers = [false, true].map(|new_pidns| {
        process::fork(new_pidns, |out| {
            if new_pidns && std::process::id() != 1 {
                let _ = write!(out, "not pid 1 in the new pid namespace");
                return 1;
            }
            churn(out, forks, threads)
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
        s.spawn(|| watchdog(&counts, scale.stall, &done));
        let mix: Vec<_> = (0..scale.mix_threads)
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
    let n: Vec<u64> = counters(&counts)?
        .iter()
        .zip(&before)
        .map(|(a, b)| a - b)
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
    for (what, i) in [
        ("rust_task_acquire", c::ACQUIRE),
        ("rust_task_kptr_get", c::KPTR_GET),
        ("rust_task_from_pid", c::FROM_PID),
        ("rust_task_from_vpid", c::FROM_VPID),
    ] {
        figures.push_str(&format!(
            "# stress:   {what:<20} {:>9} calls, {:>9} NULL\n",
            n[i],
            n[i] - n[i + 1]
        ));
    }
    figures.push_str(&format!(
        "# stress:   rust_task_release    {:>9} calls\n\
         # stress:   bpf_task_release     {:>9} calls\n\
         # stress:   acquire in sched_process_free {} calls, {} non-NULL\n\
         # stress:   stored in slots {}, taken out {}, mix iterations {}, \
         sched_switch without pid namespace {}\n\
         # stress:   helpers: {}; sentinel rcu_users before {baseline:?} after {after:?}",
        n[c::RELEASE_RUST],
        n[c::RELEASE_C],
        n[c::FREE_ACQUIRE],
        n[c::FREE_VIOLATION],
        n[c::STORED],
        n[c::DRAINED],
        n[c::MIX_RUNS],
        n[c::SWITCH_NO_NS],
        churned.join(", "),
    ));
    if verbose {
        for (name, v) in COUNTERS.iter().zip(&n) {
            figures.push_str(&format!("\n# stress:   counter {name} = {v}"));
        }
    }

    if taken != dropped {
        errors.push(format!(
            "references taken {taken} != dropped {dropped} after the drain"
        ));
    }
    if n[c::FREE_VIOLATION] != 0 {
        errors.push(format!(
            "acquire in sched_process_free returned a task {} times (past its last rcu_users)",
            n[c::FREE_VIOLATION]
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
    for (what, i) in [
        ("task_newtask acquires", c::ACQUIRE),
        ("kptr_get calls", c::KPTR_GET),
        ("from_pid calls", c::FROM_PID),
        ("from_vpid calls", c::FROM_VPID),
        ("sched_process_free acquires", c::FREE_ACQUIRE),
        ("references stored in slots", c::STORED),
    ] {
        if n[i] == 0 {
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
    use libbpf_rs::btf::types::Enum;
    use libbpf_rs::btf::Btf;

    #[test]
    fn counters_match_the_programs_enum() {
        let btf = Btf::from_raw("task_kfuncs_stress", bpf::STRESS.bytes)
            .expect("BTF parses")
            .expect("the object has BTF");
        let e: Enum<'_> = btf.type_by_name("counter").expect("enum counter");
        let names: Vec<String> = e
            .iter()
            .map(|m| {
                m.name
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .trim_start_matches("C_")
                    .to_lowercase()
            })
            .collect();
        let mut want: Vec<String> = COUNTERS.iter().map(|s| s.to_string()).collect();
        want.push("nr_counters".into());
        assert_eq!(names, want);
        for (name, i) in [
            ("acquire", c::ACQUIRE),
            ("kptr_get", c::KPTR_GET),
            ("from_pid", c::FROM_PID),
            ("from_vpid", c::FROM_VPID),
            ("release_rust", c::RELEASE_RUST),
            ("release_c", c::RELEASE_C),
            ("free_acquire", c::FREE_ACQUIRE),
            ("free_violation", c::FREE_VIOLATION),
            ("stored", c::STORED),
            ("drained", c::DRAINED),
            ("mix_runs", c::MIX_RUNS),
            ("switch_no_ns", c::SWITCH_NO_NS),
        ] {
            assert_eq!(COUNTERS[i], name);
        }
        assert_eq!(COUNTERS[c::ACQUIRE + 1], "acquire_ok");
        assert_eq!(COUNTERS[c::KPTR_GET + 1], "kptr_get_ok");
        assert_eq!(COUNTERS[c::FROM_PID + 1], "from_pid_ok");
        assert_eq!(COUNTERS[c::FROM_VPID + 1], "from_vpid_ok");
    }
}
