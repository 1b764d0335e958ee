// SPDX-License-Identifier: GPL-2.0

//! Stress under SMP: the task kfuncs from every context at once, with a
//! reference count that must balance at the end.
//!
//! `progs/task_kfuncs_stress.bpf.c` attaches to task_newtask,
//! sched_process_exit, sched_switch and sched_process_free, and a syscall
//! program mixing every operation runs from several threads at once with
//! BPF_PROG_TEST_RUN. Meanwhile helper processes fork and reap children and
//! spawn threads that reap themselves, one of them as pid 1 of a new pid
//! namespace, and parked sentinel tasks wait to be looked up and stored.
//! Operation counts are fixed (not wall time); the short form runs in
//! `cargo xtask test`, the long one in `cargo xtask test --long`.
//!
//! The case passes when, after a final drain of the slots: references taken
//! (non-NULL acquire, kptr_get, from_pid, from_vpid) equal references
//! dropped (Rust and C releases), counted per CPU in the programs; acquire
//! in sched_process_free never returned a task; the sentinels' `rcu_users`
//! are back to what they were; the kernel logged nothing bad in the window
//! (with `panic_on_warn` on); and, where the kernel has them, no new
//! kmemleak report and `task_struct` slab objects back to their baseline.
//! A guest-side watchdog dumps `sysrq-t`/`sysrq-l` and fails the run when
//! the work stops making progress.

use std::fs;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::ptr;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags, MapHandle, OpenObject, ProgramInput, ProgramMut};

use crate::{bpf, kernel_log, module, Case, Outcome};

/// Skeleton of `progs/task_kfuncs_stress.bpf.c`.
pub mod skel {
    include!(concat!(env!("OUT_DIR"), "/task_kfuncs_stress.skel.rs"));
}
use skel::*;

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
        if ctx.module.is_none() && !module::is_loaded() {
            return Outcome::Skip("needs the module (--module PATH)".into());
        }
        let debug = kernel_log::kmemleak_available();
        match run(scale(ctx.long, debug), debug, ctx.verbose) {
            Ok(()) => Outcome::Pass,
            Err(e) => Outcome::fail_with_log(format!("{e:#}"), bpf::take_log()),
        }
    })]
}

/// Marks exactly `progs` of `obj` for loading.
pub(crate) fn select_programs(obj: &mut OpenObject, progs: &[&str]) -> Result<()> {
    let mut found = 0;
    for mut p in obj.progs_mut() {
        let this = progs.iter().any(|n| p.name() == *n);
        found += usize::from(this);
        p.set_autoload(this);
    }
    if found != progs.len() {
        bail!("the stress object lacks one of {progs:?}");
    }
    Ok(())
}

/// Opens the stress skeleton with only `progs` to load, and loads it.
pub(crate) fn load<'obj>(
    storage: &'obj mut MaybeUninit<OpenObject>,
    progs: &[&str],
    setup: impl FnOnce(&mut OpenTaskKfuncsStressSkel<'obj>) -> Result<()>,
) -> Result<TaskKfuncsStressSkel<'obj>> {
    let mut open = TaskKfuncsStressSkelBuilder::default()
        .open(storage)
        .context("opening the stress skeleton")?;
    select_programs(open.open_object_mut(), progs)?;
    setup(&mut open)?;
    open.load()
        .with_context(|| format!("loading the stress programs {progs:?}"))
}

/// A loaded program of the stress skeleton, by name.
pub(crate) fn program<'a>(
    skel: &'a TaskKfuncsStressSkel<'_>,
    name: &str,
) -> Result<ProgramMut<'a>> {
    skel.object()
        .progs_mut()
        .find(|p| p.name() == name)
        .with_context(|| format!("no program {name} in the stress skeleton"))
}

/// Runs a syscall program once; returns its return value.
pub(crate) fn test_run(skel: &TaskKfuncsStressSkel<'_>, name: &str) -> Result<i32> {
    let out = program(skel, name)?
        .test_run(ProgramInput::default())
        .with_context(|| format!("BPF_PROG_TEST_RUN of {name}"))?;
    Ok(out.return_value as i32)
}

/// `rcu_users` of `pid` (without the reader's own reference), read by
/// `reader` (`read_rcu_users` with the Rust kfuncs, `read_rcu_users_c`
/// with the kernel's).
pub(crate) fn rcu_users(
    skel: &mut TaskKfuncsStressSkel<'_>,
    reader: &str,
    pid: i32,
) -> Result<i32> {
    skel.maps
        .bss_data
        .as_deref_mut()
        .context("no .bss")?
        .read_pid = pid;
    if test_run(skel, reader)? != 0 {
        bail!("{reader}: no task with pid {pid}");
    }
    Ok(skel
        .maps
        .data_data
        .as_deref()
        .context("no .data")?
        .rcu_users_read)
}

/// Sums the per-CPU counters.
pub(crate) fn counters(map: &dyn MapCore) -> Result<Vec<u64>> {
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

/// Memory shared with the helper processes: their progress counters.
struct Shared {
    ptr: *mut AtomicU64,
}

// SAFETY: the mapping holds atomics only and lives until the process exits.
unsafe impl Send for Shared {}
// SAFETY: as above.
unsafe impl Sync for Shared {}

impl Shared {
    /// Slots: 0 forks done, 1 threads done, 2 helper errors.
    const LEN: usize = 4;

    fn new() -> Result<Self> {
        // SAFETY: an anonymous shared mapping; no existing memory is touched.
        let ptr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            bail!("mmap: {}", io::Error::last_os_error());
        }
        Ok(Shared { ptr: ptr.cast() })
    }

    fn get(&self, i: usize) -> &AtomicU64 {
        assert!(i < Self::LEN);
        // SAFETY: the page is mapped for the life of the process, zeroed,
        // and holds LEN properly aligned u64s.
        unsafe { &*self.ptr.add(i) }
    }
}

/// A pipe; used to park and release children (EOF is the signal).
struct Pipe {
    read: i32,
    write: i32,
}

impl Pipe {
    fn new() -> Result<Self> {
        let mut fds = [0i32; 2];
        // SAFETY: fds is a valid array of two ints.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            bail!("pipe: {}", io::Error::last_os_error());
        }
        Ok(Pipe {
            read: fds[0],
            write: fds[1],
        })
    }

    /// Blocks until every write end is closed.
    fn wait_eof(&self) {
        let mut b = [0u8; 1];
        // SAFETY: reading into a valid one-byte buffer.
        while unsafe { libc::read(self.read, b.as_mut_ptr().cast(), 1) } > 0 {}
    }

    fn close_write(&mut self) {
        if self.write >= 0 {
            // SAFETY: closing our own descriptor once.
            unsafe { libc::close(self.write) };
            self.write = -1;
        }
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        self.close_write();
        // SAFETY: closing our own descriptor once.
        unsafe { libc::close(self.read) };
    }
}

/// Forks a child that first closes the write ends in `close`, then runs
/// `body` and exits with its value. Must be called while the process is
/// single-threaded: the child may then do anything.
fn fork_child(close: &[i32], body: impl FnOnce() -> i32) -> Result<i32> {
    // SAFETY: called before the runner starts any thread (see callers).
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => bail!("fork: {}", io::Error::last_os_error()),
        0 => {
            for fd in close {
                // SAFETY: closing inherited descriptors in the child.
                unsafe { libc::close(*fd) };
            }
            let code = body();
            // SAFETY: leaves the child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        pid => Ok(pid),
    }
}

/// Waits for `pid`; its exit code, or -1 if it did not exit normally.
fn reap(pid: i32) -> i32 {
    let mut status = 0;
    // SAFETY: status is a valid out-pointer.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        return -1;
    }
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    }
}

/// The load: `forks` fork/exit/reap rounds and `threads` spawn/exit/join
/// rounds, from two threads at once. Non-leader threads reap themselves.
fn churn(shared: &Shared, forks: u32, threads: u32) -> i32 {
    thread::scope(|s| {
        let forker = s.spawn(|| {
            for _ in 0..forks {
                // SAFETY: the child only calls _exit.
                let pid = unsafe { libc::fork() };
                match pid {
                    // SAFETY: _exit touches no Rust state.
                    0 => unsafe { libc::_exit(0) },
                    -1 => {
                        shared.get(2).fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    pid => {
                        if reap(pid) != 0 {
                            shared.get(2).fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                shared.get(0).fetch_add(1, Ordering::Relaxed);
            }
        });
        for _ in 0..threads {
            if thread::Builder::new()
                .spawn(|| {})
                .map(|t| t.join())
                .is_err()
            {
                shared.get(2).fetch_add(1, Ordering::Relaxed);
            }
            shared.get(1).fetch_add(1, Ordering::Relaxed);
        }
        let _ = forker.join();
    });
    0
}

/// Runs `stress_mix` `runs` times on the program fd (BPF_PROG_TEST_RUN).
fn mix_thread(fd: i32, runs: u32) -> Result<()> {
    for i in 0..runs {
        // SAFETY: all-zero is a valid bpf_test_run_opts; sz is set below.
        let mut opts: libbpf_rs::libbpf_sys::bpf_test_run_opts = unsafe { std::mem::zeroed() };
        opts.sz = std::mem::size_of_val(&opts) as _;
        // SAFETY: fd is a loaded syscall program, opts a valid options struct.
        let ret = unsafe { libbpf_rs::libbpf_sys::bpf_prog_test_run_opts(fd, &mut opts) };
        if ret != 0 {
            bail!(
                "run {i}: BPF_PROG_TEST_RUN: {}",
                io::Error::from_raw_os_error(-ret)
            );
        }
    }
    Ok(())
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

/// kmemleak's unreferenced objects, by address line.
pub(crate) fn kmemleak_objects() -> Result<Vec<String>> {
    let report = kernel_log::kmemleak_report()?;
    Ok(report
        .split("unreferenced object")
        .skip(1)
        .map(|block| format!("unreferenced object{}", block.trim_end()))
        .collect())
}

/// Dumps every task's stack and every CPU's backtrace into the kernel log
/// (sysrq t and l) and returns what the log got from then on.
fn sysrq_dump() -> String {
    let kmsg = kernel_log::Mark::here();
    for key in ["t", "l"] {
        let _ = fs::write("/proc/sysrq-trigger", key);
    }
    thread::sleep(Duration::from_secs(2));
    match kmsg {
        Ok(mut kmsg) => kmsg
            .read_new()
            .unwrap_or_else(|e| format!("reading /dev/kmsg: {e}")),
        Err(e) => format!("{e:#}"),
    }
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
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(0)
}

fn run(scale: Scale, debug: bool, verbose: bool) -> Result<()> {
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
    let kmsg = kernel_log::Mark::here()?;
    let leaks_before = if debug {
        kmemleak_objects()?
    } else {
        Vec::new()
    };
    let slab_before = task_struct_excess()?;
    if debug && slab_before.is_none() {
        bail!("the debug kernel has no /sys/kernel/slab/task_struct/objects (SLUB_DEBUG + SYSFS)");
    }

    // Children first, while this process is still single-threaded.
    let shared = Shared::new()?;
    let mut park = Pipe::new()?;
    let mut go = Pipe::new()?;
    let writes = [park.write, go.write];
    let mut sentinels = Vec::new();
    for _ in 0..scale.sentinels {
        sentinels.push(fork_child(&writes, || {
            park.wait_eof();
            0
        })?);
    }
    let (forks, threads) = (scale.forks, scale.threads);
    let helper = fork_child(&writes, || {
        go.wait_eof();
        churn(&shared, forks, threads)
    })?;
    let ns_helper = fork_child(&writes, || {
        // SAFETY: unshare has no memory-safety preconditions; children
        // forked from now on are in the new pid namespace.
        if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
            return 10;
        }
        // Still single-threaded: the namespace's pid 1 may do anything.
        match fork_child(&[], || {
            go.wait_eof();
            // SAFETY: getpid has no preconditions.
            if unsafe { libc::getpid() } != 1 {
                return 11;
            }
            churn(&shared, forks, threads)
        }) {
            Ok(pid) => reap(pid),
            Err(_) => 12,
        }
    })?;
    let result = stress(
        scale,
        &shared,
        &mut go,
        &sentinels,
        [helper, ns_helper],
        verbose,
    );
    // Whatever happened: release the sentinels and reap everyone.
    go.close_write();
    park.close_write();
    for pid in sentinels.iter().chain([helper, ns_helper].iter()) {
        reap(*pid);
    }
    let figures = result?;

    // The kernel side after every task of the run is gone.
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
    if let Outcome::Fail { reason: why, .. } = kmsg.check() {
        problems.push(format!("kernel log during the run: {why}"));
    }
    if debug {
        let new: Vec<String> = kmemleak_objects()?
            .into_iter()
            .filter(|leak| {
                !leaks_before
                    .iter()
                    .any(|old| old.lines().next() == leak.lines().next())
            })
            .collect();
        if !new.is_empty() {
            problems.push(format!(
                "kmemleak: {} new unreferenced object(s)\n{}",
                new.len(),
                new.join("\n")
            ));
        }
    }
    println!("{figures}");
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    Ok(())
}

/// The run proper, between the children's creation and their reaping.
/// Returns the figures to print.
fn stress(
    scale: Scale,
    shared: &Shared,
    go: &mut Pipe,
    sentinels: &[i32],
    helpers: [i32; 2],
    verbose: bool,
) -> Result<String> {
    let me = std::process::id() as i32;
    let mut storage = MaybeUninit::uninit();
    let mut progs: Vec<&str> = TRACING.to_vec();
    progs.extend(["stress_mix", "drain", "read_rcu_users"]);
    let mut skel = load(&mut storage, &progs, |open| {
        let bss = open.maps.bss_data.as_deref_mut().context("no .bss")?;
        let real = sentinels
            .iter()
            .chain(helpers.iter())
            .chain(std::iter::once(&me));
        for (slot, pid) in bss.pids.iter_mut().zip(real) {
            *slot = *pid;
        }
        open.maps
            .data_data
            .as_deref_mut()
            .context("no .data")?
            .mix_iters = scale.mix_iters;
        Ok(())
    })?;

    let mut baseline = Vec::new();
    for &pid in sentinels {
        baseline.push(rcu_users(&mut skel, "read_rcu_users", pid)?);
    }
    let counts = MapHandle::try_from(&skel.maps.counts).context("counters map handle")?;
    let before = counters(&counts)?;

    let mut links: Vec<Link> = Vec::new();
    for name in TRACING {
        links.push(
            program(&skel, name)?
                .attach()
                .with_context(|| format!("attaching {name}"))?,
        );
    }
    let mix_fd = program(&skel, "stress_mix")?.as_fd().as_raw_fd();
    let bss_ptr: *mut types::bss = skel.maps.bss_data.as_deref_mut().context("no .bss")? as *mut _;
    // SAFETY: the .bss mapping outlives this function's use of it (the
    // skeleton is dropped at its end); the programs write `inflight` and we
    // only read it, with volatile accesses.
    let enabled = unsafe { ptr::addr_of_mut!((*bss_ptr).enabled) };
    let inflight = unsafe { ptr::addr_of!((*bss_ptr).inflight) };
    // SAFETY: see above.
    unsafe { ptr::write_volatile(enabled, 1) };

    let start = Instant::now();
    go.close_write();
    let done = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let done = Arc::clone(&done);
        let counts = MapHandle::try_from(&skel.maps.counts).context("counters map handle")?;
        let shared_ptr = shared.ptr as usize;
        let stall = scale.stall;
        thread::spawn(move || {
            let shared = Shared {
                ptr: shared_ptr as *mut AtomicU64,
            };
            let progress = |shared: &Shared| {
                let mix = counters(&counts).map(|n| n[c::MIX_RUNS]).unwrap_or(0);
                mix + shared.get(0).load(Ordering::Relaxed) + shared.get(1).load(Ordering::Relaxed)
            };
            let mut last = progress(&shared);
            let mut since = Instant::now();
            while !done.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(500));
                let now = progress(&shared);
                if now != last {
                    last = now;
                    since = Instant::now();
                } else if since.elapsed() > stall && !done.load(Ordering::Relaxed) {
                    println!(
                        "not ok - stress_smp: no progress for {} s (forks {}, threads {}, \
                         mix iterations {}): sysrq-t and sysrq-l follow",
                        stall.as_secs(),
                        shared.get(0).load(Ordering::Relaxed),
                        shared.get(1).load(Ordering::Relaxed),
                        counters(&counts).map(|n| n[c::MIX_RUNS]).unwrap_or(0),
                    );
                    for line in sysrq_dump().lines() {
                        println!("# {line}");
                    }
                    println!("stress: stalled; exiting the runner");
                    std::process::exit(3);
                }
            }
        })
    };

    let mix: Vec<_> = (0..scale.mix_threads)
        .map(|_| {
            let runs = scale.mix_runs;
            thread::spawn(move || mix_thread(mix_fd, runs))
        })
        .collect();
    let mut errors = Vec::new();
    for (i, t) in mix.into_iter().enumerate() {
        match t.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(format!("mix thread {i}: {e:#}")),
            Err(_) => errors.push(format!("mix thread {i} panicked")),
        }
    }
    for (what, pid) in ["churn helper", "churn helper in a new pid namespace"]
        .iter()
        .zip(helpers)
    {
        let code = reap(pid);
        if code != 0 {
            errors.push(format!("{what} exited with {code}"));
        }
    }
    let elapsed = start.elapsed();
    done.store(true, Ordering::Relaxed);
    let _ = watchdog.join();
    let helper_errors = shared.get(2).load(Ordering::Relaxed);
    if helper_errors != 0 {
        errors.push(format!(
            "{helper_errors} fork/thread operations of the helpers failed"
        ));
    }

    // Quiesce: no tracing program acts once `enabled` is clear and the
    // ones inside have left.
    // SAFETY: see above.
    unsafe { ptr::write_volatile(enabled, 0) };
    fence(Ordering::SeqCst);
    let t0 = Instant::now();
    // SAFETY: see above.
    while unsafe { ptr::read_volatile(inflight) } != 0 {
        if t0.elapsed() > Duration::from_secs(30) {
            bail!("tracing programs still running 30 s after disabling them");
        }
        thread::yield_now();
    }
    drop(links);
    if test_run(&skel, "drain")? != 0 {
        bail!("drain failed");
    }
    let n: Vec<u64> = counters(&counts)?
        .iter()
        .zip(&before)
        .map(|(a, b)| a - b)
        .collect();
    let mut after = Vec::new();
    for &pid in sentinels {
        after.push(rcu_users(&mut skel, "read_rcu_users", pid)?);
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
         # stress:   forks {}, threads {}; sentinel rcu_users before {baseline:?} after {after:?}",
        n[c::RELEASE_RUST],
        n[c::RELEASE_C],
        n[c::FREE_ACQUIRE],
        n[c::FREE_VIOLATION],
        n[c::STORED],
        n[c::DRAINED],
        n[c::MIX_RUNS],
        n[c::SWITCH_NO_NS],
        shared.get(0).load(Ordering::Relaxed),
        shared.get(1).load(Ordering::Relaxed),
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

    const OBJ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/task_kfuncs_stress.bpf.o"));

    #[test]
    fn counters_match_the_programs_enum() {
        let btf = Btf::from_raw("task_kfuncs_stress", OBJ)
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
