// SPDX-License-Identifier: GPL-2.0

//! `task-kfuncs-bench`: the Rust task kfuncs against the kernel's C kfuncs.
//!
//! Runs each program of `progs/task_kfuncs_bench.bpf.c` with
//! BPF_PROG_TEST_RUN, alternating Rust and C so that both see the same
//! machine, subtracts the cost of the empty loop, and prints ns per
//! operation and the Rust/C ratio of the medians. Runs in the test guest, as
//! root; `cargo xtask bench` does that. It measures, it does not judge: the
//! exit code is non-zero only when a program fails to load or run, or an
//! operation found no task.

use std::mem::MaybeUninit;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::ProgramInput;

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
    #[arg(long, default_value_t = 10_000)]
    iters: u32,
    /// Program runs per kfunc family (the median is reported).
    #[arg(long, default_value_t = 15)]
    rounds: usize,
}

/// One Rust/C pair of programs that do the same thing.
struct Pair {
    what: &'static str,
    rust: &'static str,
    c: &'static str,
}

const PAIRS: &[Pair] = &[
    Pair {
        what: "acquire+release (current)",
        rust: "bench_rust_acquire_release",
        c: "bench_c_acquire_release",
    },
    Pair {
        what: "from_pid+release (self)",
        rust: "bench_rust_from_pid",
        c: "bench_c_from_pid",
    },
];

/// Runs `prog` once and returns (elapsed ns, misses).
fn run_once(skel: &TaskKfuncsBenchSkel<'_>, prog: &str) -> Result<(u64, u64)> {
    let p = skel
        .object()
        .progs_mut()
        .find(|p| p.name() == prog)
        .with_context(|| format!("no program {prog}"))?;
    let out = p
        .test_run(ProgramInput::default())
        .with_context(|| format!("BPF_PROG_TEST_RUN of {prog}"))?;
    if out.return_value != 0 {
        bail!("{prog} returned {}", out.return_value);
    }
    let bss = skel.maps.bss_data.as_deref().context("no .bss")?;
    Ok((bss.elapsed_ns, bss.misses))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn run(cli: &Cli) -> Result<()> {
    if cli.rounds == 0 || cli.iters == 0 {
        bail!("--rounds and --iters must be at least 1");
    }
    let loaded = module::Loaded::ensure(cli.module.as_deref())?;
    if !module::is_loaded() {
        bail!("the task_kfuncs module is not loaded: insmod it or pass --module PATH");
    }

    let mut storage = MaybeUninit::uninit();
    let mut open = TaskKfuncsBenchSkelBuilder::default()
        .open(&mut storage)
        .context("opening the bench object")?;
    open.maps
        .data_data
        .as_deref_mut()
        .context("no .data")?
        .iters = cli.iters;
    open.maps.bss_data.as_deref_mut().context("no .bss")?.pid =
        i32::try_from(std::process::id()).context("pid out of range")?;
    let skel = open.load().context("loading the bench programs")?;

    let n = f64::from(cli.iters);
    let mut empty = Vec::new();
    for _ in 0..cli.rounds {
        empty.push(run_once(&skel, "bench_empty")?.0 as f64 / n);
    }
    let loop_ns = median(empty);
    println!(
        "# {} ops per run, {} runs each, loop overhead {loop_ns:.1} ns/op (subtracted)",
        cli.iters, cli.rounds
    );
    println!(
        "{:<28} {:>12} {:>12} {:>10}",
        "operation", "Rust ns/op", "C ns/op", "Rust/C"
    );
    for pair in PAIRS {
        let (mut rust, mut c) = (Vec::new(), Vec::new());
        for _ in 0..cli.rounds {
            for (prog, out) in [(pair.rust, &mut rust), (pair.c, &mut c)] {
                let (ns, misses) = run_once(&skel, prog)?;
                if misses != 0 {
                    bail!("{prog}: {misses} of {} operations found no task", cli.iters);
                }
                out.push((ns as f64 / n - loop_ns).max(0.0));
            }
        }
        let (r, c) = (median(rust), median(c));
        let ratio = if c > 0.0 { r / c } else { f64::NAN };
        println!("{:<28} {r:>12.1} {c:>12.1} {ratio:>10.2}", pair.what);
    }
    drop(skel);
    if loaded.by_us() {
        loaded.unload()?;
    }
    Ok(())
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
