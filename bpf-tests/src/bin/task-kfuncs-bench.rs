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

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Barrier;
use std::thread;

use anyhow::{bail, Context, Result};
use bpf_tests::bpf::{self, Loaded, Obj};
use bpf_tests::module::{self, TASK_KFUNCS};
use bpf_tests::process;
use clap::Parser;

const BENCH: Obj = bpf_tests::obj!("task_kfuncs_bench");

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

/// One Rust/C pair of programs that do the same thing: name, Rust program,
/// C program, what they find, whether they run on every online CPU at once
/// (one thread each) instead of once.
type Case = (&'static str, &'static str, &'static str, Expect, bool);

/// The cases, in the order of the report. The two `same-*` cases run one
/// program against itself: their spread is the noise band of the run.
#[rustfmt::skip]
const CASES: &[Case] = &[
    ("same-c", "bench_c_acquire_release", "bench_c_acquire_release", Expect::Task, false),
    ("same-rust", "bench_rust_acquire_release", "bench_rust_acquire_release", Expect::Task, false),
    ("acquire", "bench_rust_acquire_release", "bench_c_acquire_release", Expect::Task, false),
    ("kptr_get", "bench_rust_kptr_get_release", "bench_c_kptr_get_release", Expect::Task, false),
    ("from_pid", "bench_rust_from_pid", "bench_c_from_pid", Expect::Task, false),
    ("from_pid-missing", "bench_rust_from_pid_missing", "bench_c_from_pid_missing", Expect::Null, false),
    // C's twin is bpf_task_from_vpid where the kernel has it (7.x).
    #[cfg(has_bpf_task_from_vpid)]
    ("from_vpid", "bench_rust_from_vpid", "bench_c_from_vpid", Expect::Task, false),
    #[cfg(not(has_bpf_task_from_vpid))]
    ("from_vpid", "bench_rust_from_vpid", "bench_c_from_pid", Expect::Task, false),
    ("contended", "bench_rust_contended", "bench_c_contended", Expect::Task, true),
];

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

struct Bench {
    skel: Loaded,
    iters: u32,
    cpus: usize,
}

impl Bench {
    /// Runs `prog` once with slot `slot` as its context.
    fn test_run(&self, prog: &str, slot: u32) -> Result<()> {
        match self.skel.test_run(prog, &mut slot.to_ne_bytes())? {
            0 => Ok(()),
            ret => bail!("{prog} returned {ret}"),
        }
    }

    /// Runs `prog` on `threads` CPUs at once (slot = CPU) and returns the
    /// mean ns per operation, after checking what the operations found.
    fn run(&self, prog: &str, threads: usize, expect: Option<Expect>) -> Result<f64> {
        // One thread per CPU (slot), started together.
        let barrier = Barrier::new(threads);
        thread::scope(|s| -> Result<()> {
            let handles: Vec<_> = (0..threads)
                .map(|cpu| {
                    let barrier = &barrier;
                    s.spawn(move || -> Result<()> {
                        if threads > 1 {
                            pin(cpu)?;
                        }
                        barrier.wait();
                        self.test_run(prog, cpu as u32)
                    })
                })
                .collect();
            for h in handles {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a bench thread panicked"))??;
            }
            Ok(())
        })?;
        let elapsed = u64s(&self.skel.get_bytes("elapsed_ns")?);
        let misses = u64s(&self.skel.get_bytes("misses")?);
        let mut total = 0.0;
        for slot in 0..threads {
            let misses = misses[slot];
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
            total += elapsed[slot] as f64 / f64::from(self.iters);
        }
        Ok(total / threads as f64)
    }
}

/// A `u64[]` global's values.
fn u64s(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(8)
        .map(|b| u64::from_ne_bytes(b.try_into().unwrap_or_default()))
        .collect()
}

/// A positive pid that no task has: from the top of the pid space down.
fn missing_pid() -> Result<i32> {
    (1..process::pid_max()?)
        .rev()
        .find(|p| !Path::new(&format!("/proc/{p}")).exists())
        .context("every pid is in use")
}

fn run(cli: &Cli) -> Result<()> {
    if cli.rounds == 0 || cli.iters == 0 || cli.runs == 0 {
        bail!("--rounds, --runs and --iters must be at least 1");
    }
    let loaded = module::load_for_run(TASK_KFUNCS, cli.module.as_deref())?;
    if !TASK_KFUNCS.is_loaded() {
        bail!("the task_kfuncs module is not loaded: insmod it or pass --module PATH");
    }
    let cpus = thread::available_parallelism()
        .map_or(1, usize::from)
        .min(64);
    let skel = BENCH.load(&[])?;
    skel.set("iters", cli.iters)?;
    skel.set("pid", std::process::id() as i32)?;
    let missing_pid = missing_pid()?;
    skel.set("missing_pid", missing_pid)?;
    let bench = Bench {
        skel,
        iters: cli.iters,
        cpus,
    };
    bench
        .test_run("bench_store_kptr", 0)
        .context("storing the task kptr")?;

    println!(
        "bench-info\titers={}\trounds={}\truns={}\tcpus={}\tmissing_pid={missing_pid}",
        cli.iters, cli.rounds, cli.runs, bench.cpus,
    );
    let cases: Vec<&Case> = CASES
        .iter()
        .filter(|c| cli.only.as_deref().is_none_or(|o| c.0.contains(o)))
        .collect();
    // Every round measures every case, so that all cases see the same
    // stretch of (emulated, shared) machine time.
    for round in 0..cli.rounds {
        let mut empty = f64::INFINITY;
        for _ in 0..cli.runs {
            empty = empty.min(bench.run("bench_empty", 1, None)?);
        }
        println!("bench\tloop\t{round}\t{empty:.3}\t{empty:.3}");
        for &&(name, rust_prog, c_prog, expect, all_cpus) in &cases {
            let threads = if all_cpus { bench.cpus } else { 1 };
            let (mut rust, mut c) = (f64::INFINITY, f64::INFINITY);
            for run in 0..cli.runs {
                // Alternate which side goes first, so that neither always
                // runs on a machine warmed (or disturbed) by the other.
                let sides = if (round + run) % 2 == 0 {
                    [(rust_prog, true), (c_prog, false)]
                } else {
                    [(c_prog, false), (rust_prog, true)]
                };
                for (prog, is_rust) in sides {
                    let ns = bench.run(prog, threads, Some(expect))?;
                    if is_rust {
                        rust = rust.min(ns);
                    } else {
                        c = c.min(ns);
                    }
                }
            }
            println!("bench\t{name}\t{round}\t{rust:.3}\t{c:.3}");
        }
        eprintln!(
            "task-kfuncs-bench: round {} of {} done",
            round + 1,
            cli.rounds
        );
    }
    drop(bench);
    if loaded {
        TASK_KFUNCS.rmmod_waiting()?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    bpf::capture_libbpf_output();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("task-kfuncs-bench: {e:#}\n{}", bpf::take_log());
            ExitCode::FAILURE
        }
    }
}
