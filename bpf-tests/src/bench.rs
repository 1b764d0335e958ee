// SPDX-License-Identifier: GPL-2.0

//! `task-kfuncs-bench`: the Rust task kfuncs against the kernel's C kfuncs.
//!
//! Runs the programs of `progs/task_kfuncs_bench.bpf.c` with
//! BPF_PROG_TEST_RUN. Every round measures every case: `--runs` times each
//! side, Rust and C alternating so that both see the same machine, keeping
//! each side's fastest run (host preemption only ever adds time). It prints
//! each round's ns per operation as a `bench` line (tab separated):
//!
//! ```text
//! bench <case> <round> <rust ns/op> <c ns/op>
//! ```
//!
//! `loop` rounds carry the cost of the empty loop in both columns;
//! `cargo xtask bench` subtracts it, turns the rounds into ratios, medians
//! and bands, and writes the report. Runs in the test guest, as root. It
//! measures, it does not judge: the exit code is non-zero only when a
//! program fails to load or run, or an operation found a task where it
//! should not (or none where it should).

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Barrier;
use std::thread;

use anyhow::{bail, Context, Result};
use clap::Parser;
use libbpf_rs::libbpf_sys;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};

#[allow(dead_code)]
mod module;

mod bench_skel {
    include!(concat!(env!("OUT_DIR"), "/task_kfuncs_bench.skel.rs"));
}
use bench_skel::*;

#[derive(Parser)]
#[command(about = "Benchmark the Rust task kfuncs against the kernel's C kfuncs")]
struct Cli {
    /// insmod this task_kfuncs.ko if the module is not loaded (and rmmod it at the end).
    #[arg(long)]
    module: Option<PathBuf>,
    /// Operations per program run.
    #[arg(long, default_value_t = 100_000)]
    iters: u32,
    /// Rounds; each round measures every case.
    #[arg(long, default_value_t = 15)]
    rounds: usize,
    /// Runs per side within a round (Rust and C alternating); the round
    /// keeps each side's fastest, which filters out host preemption.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Run only the cases whose name contains this.
    #[arg(long)]
    only: Option<String>,
}

/// What a case's operations must find.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Every operation returns a task.
    Task,
    /// No operation returns a task.
    Null,
}

/// One Rust/C pair of programs that do the same thing.
struct Case {
    name: &'static str,
    rust: &'static str,
    c: &'static str,
    expect: Expect,
    /// Run on every online CPU at once (one thread each) instead of once.
    all_cpus: bool,
}

const fn case(name: &'static str, rust: &'static str, c: &'static str) -> Case {
    Case {
        name,
        rust,
        c,
        expect: Expect::Task,
        all_cpus: false,
    }
}

/// The cases, in the order of the report. The two `same-*` cases run one
/// program against itself: their spread is the noise band of the run.
const CASES: &[Case] = &[
    case(
        "same-c",
        "bench_c_acquire_release",
        "bench_c_acquire_release",
    ),
    case(
        "same-rust",
        "bench_rust_acquire_release",
        "bench_rust_acquire_release",
    ),
    case(
        "acquire",
        "bench_rust_acquire_release",
        "bench_c_acquire_release",
    ),
    case(
        "kptr_get",
        "bench_rust_kptr_get_release",
        "bench_c_kptr_get_release",
    ),
    case("from_pid", "bench_rust_from_pid", "bench_c_from_pid"),
    Case {
        expect: Expect::Null,
        ..case(
            "from_pid-missing",
            "bench_rust_from_pid_missing",
            "bench_c_from_pid_missing",
        )
    },
    // C's twin is bpf_task_from_vpid where the kernel has it (7.x).
    #[cfg(has_bpf_task_from_vpid)]
    case("from_vpid", "bench_rust_from_vpid", "bench_c_from_vpid"),
    #[cfg(not(has_bpf_task_from_vpid))]
    case("from_vpid", "bench_rust_from_vpid", "bench_c_from_pid"),
    Case {
        all_cpus: true,
        ..case("contended", "bench_rust_contended", "bench_c_contended")
    },
];

/// Runs the program behind `fd` once with slot `slot` as its context.
fn test_run(fd: i32, slot: u32) -> Result<()> {
    let mut args = slot;
    // SAFETY: `bpf_test_run_opts` is plain data; zeroed is its default.
    let mut opts: libbpf_sys::bpf_test_run_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<libbpf_sys::bpf_test_run_opts>() as _;
    opts.ctx_in = std::ptr::addr_of_mut!(args).cast();
    opts.ctx_size_in = std::mem::size_of::<u32>() as _;
    // SAFETY: `opts` is valid and points at `args`, which outlives the call.
    let ret = unsafe { libbpf_sys::bpf_prog_test_run_opts(fd, &mut opts) };
    if ret != 0 {
        bail!(
            "BPF_PROG_TEST_RUN failed: {}",
            std::io::Error::last_os_error()
        );
    }
    if opts.retval != 0 {
        bail!("the program returned {}", opts.retval);
    }
    Ok(())
}

/// Pins the calling thread to `cpu`.
fn pin(cpu: usize) -> Result<()> {
    // SAFETY: `set` is a plain bit set, zeroed is empty; CPU_SET stays in it.
    let ret = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if ret != 0 {
        bail!(
            "cannot pin to CPU {cpu}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

struct Bench<'a> {
    skel: TaskKfuncsBenchSkel<'a>,
    iters: u32,
    cpus: usize,
}

impl Bench<'_> {
    fn fd(&self, prog: &str) -> Result<i32> {
        let p = self
            .skel
            .object()
            .progs()
            .find(|p| p.name() == prog)
            .with_context(|| format!("no program {prog}"))?;
        Ok(p.as_fd().as_raw_fd())
    }

    /// Runs `prog` on `threads` CPUs at once (slot = CPU) and returns the
    /// mean ns per operation, after checking what the operations found.
    fn run(&self, prog: &str, threads: usize, expect: Option<Expect>) -> Result<f64> {
        let fd = self.fd(prog)?;
        if threads == 1 {
            test_run(fd, 0).with_context(|| format!("running {prog}"))?;
        } else {
            let barrier = Barrier::new(threads);
            thread::scope(|s| -> Result<()> {
                let handles: Vec<_> = (0..threads)
                    .map(|cpu| {
                        let barrier = &barrier;
                        s.spawn(move || -> Result<()> {
                            pin(cpu)?;
                            barrier.wait();
                            test_run(fd, cpu as u32)
                        })
                    })
                    .collect();
                for h in handles {
                    h.join()
                        .map_err(|_| anyhow::anyhow!("a bench thread panicked"))?
                        .with_context(|| format!("running {prog}"))?;
                }
                Ok(())
            })?;
        }
        let bss = self.skel.maps.bss_data.as_deref().context("no .bss")?;
        let mut total = 0.0;
        for slot in 0..threads {
            let misses = bss.misses[slot];
            match expect {
                Some(Expect::Task) if misses != 0 => {
                    bail!(
                        "{prog}: {misses} of {} operations found no task",
                        self.iters
                    )
                }
                Some(Expect::Null) if misses != u64::from(self.iters) => bail!(
                    "{prog}: {} of {} operations found a task for a pid that has none",
                    u64::from(self.iters) - misses,
                    self.iters
                ),
                _ => {}
            }
            total += bss.elapsed_ns[slot] as f64 / f64::from(self.iters);
        }
        Ok(total / threads as f64)
    }
}

/// A positive pid that no task has: from the top of the pid space down.
fn missing_pid() -> Result<i32> {
    let max: i32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .context("reading /proc/sys/kernel/pid_max")?
        .trim()
        .parse()
        .context("parsing pid_max")?;
    (1..max)
        .rev()
        .find(|p| !Path::new(&format!("/proc/{p}")).exists())
        .context("every pid is in use")
}

fn run(cli: &Cli) -> Result<()> {
    if cli.rounds == 0 || cli.iters == 0 || cli.runs == 0 {
        bail!("--rounds, --runs and --iters must be at least 1");
    }
    let loaded = module::Loaded::ensure(cli.module.as_deref())?;
    if !module::is_loaded() {
        bail!("the task_kfuncs module is not loaded: insmod it or pass --module PATH");
    }
    // SAFETY: sysconf has no preconditions.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    let cpus = usize::try_from(online).unwrap_or(1).clamp(1, 64);

    let mut storage = MaybeUninit::uninit();
    let mut open = TaskKfuncsBenchSkelBuilder::default()
        .open(&mut storage)
        .context("opening the bench object")?;
    open.maps
        .data_data
        .as_deref_mut()
        .context("no .data")?
        .iters = cli.iters;
    let bss = open.maps.bss_data.as_deref_mut().context("no .bss")?;
    bss.pid = i32::try_from(std::process::id()).context("pid out of range")?;
    bss.missing_pid = missing_pid()?;
    let skel = open.load().context("loading the bench programs")?;
    let bench = Bench {
        skel,
        iters: cli.iters,
        cpus,
    };
    test_run(bench.fd("bench_store_kptr")?, 0).context("storing the task kptr")?;

    println!(
        "bench-info\titers={}\trounds={}\truns={}\tcpus={}\tmissing_pid={}",
        cli.iters,
        cli.rounds,
        cli.runs,
        bench.cpus,
        bss_missing(&bench)?
    );
    let cases: Vec<&Case> = CASES
        .iter()
        .filter(|c| cli.only.as_deref().is_none_or(|o| c.name.contains(o)))
        .collect();
    // Every round measures every case, so that all cases see the same
    // stretch of (emulated, shared) machine time.
    for round in 0..cli.rounds {
        let mut empty = f64::INFINITY;
        for _ in 0..cli.runs {
            empty = empty.min(bench.run("bench_empty", 1, None)?);
        }
        println!("bench\tloop\t{round}\t{empty:.3}\t{empty:.3}");
        for case in &cases {
            let threads = if case.all_cpus { bench.cpus } else { 1 };
            let (mut rust, mut c) = (f64::INFINITY, f64::INFINITY);
            for run in 0..cli.runs {
                // Alternate which side goes first, so that neither always
                // runs on a machine warmed (or disturbed) by the other.
                let sides = if (round + run) % 2 == 0 {
                    [(case.rust, true), (case.c, false)]
                } else {
                    [(case.c, false), (case.rust, true)]
                };
                for (prog, is_rust) in sides {
                    let ns = bench.run(prog, threads, Some(case.expect))?;
                    if is_rust {
                        rust = rust.min(ns);
                    } else {
                        c = c.min(ns);
                    }
                }
            }
            println!("bench\t{}\t{round}\t{rust:.3}\t{c:.3}", case.name);
        }
        eprintln!(
            "task-kfuncs-bench: round {} of {} done",
            round + 1,
            cli.rounds
        );
    }
    drop(bench);
    if loaded.by_us() {
        loaded.unload()?;
    }
    Ok(())
}

fn bss_missing(bench: &Bench<'_>) -> Result<i32> {
    Ok(bench
        .skel
        .maps
        .bss_data
        .as_deref()
        .context("no .bss")?
        .missing_pid)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("task-kfuncs-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
