// SPDX-License-Identifier: GPL-2.0

//! `cargo xtask`: builds the task_kfuncs test kernel, boots it with
//! virtme-ng and runs the tests. See README.md for the commands and
//! `cargo xtask help <command>` for each one.

mod bench;
mod driver;
mod kernel;
mod module;
mod run;
mod selftests;
mod setup;
mod util;
mod vm;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::kernel::Flavour;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Build, boot and test the task_kfuncs test kernel",
    after_help = "The kernel builds and the virtme-ng venv live in \
                  ${TASK_KFUNCS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/task_kfuncs}."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what the host lacks (Debian packages, bindgen-cli, virtme-ng);
    /// does nothing when all is there. The other commands call it themselves.
    Setup,
    /// Build the test kernel (cached; rebuilt when its inputs change).
    Kernel {
        /// The debug flavour: KASAN, lockdep, PROVE_RCU, kmemleak.
        #[arg(long)]
        debug: bool,
        /// Print only the build directory, for `make KDIR=$(cargo xtask kernel --print-path)`.
        #[arg(long)]
        print_path: bool,
    },
    /// Boot the test kernel and run a command in it as root; exits with the
    /// command's exit code.
    ///
    /// The guest sees the host's root read-only at the same paths and
    /// <checkout>/target/vm read-write (to bring files back). One argument
    /// is a shell command line as is (`vm -- 'uname -r; ls /'`); several are
    /// quoted (`vm -- ls -l /sys/kernel/btf`). KVM is used when a probe boot
    /// shows that it works, TCG otherwise (TASK_KFUNCS_ACCEL=kvm|tcg forces
    /// one). The boot console is kept in target/xtask/console.log.
    Vm {
        /// Boot the debug kernel.
        #[arg(long)]
        debug: bool,
        /// Boot this kernel build directory instead of the cached one.
        #[arg(long, value_name = "DIR")]
        kernel: Option<PathBuf>,
        /// Seconds allowed for the whole run (default 1800, debug 3600).
        #[arg(long, value_name = "SECS")]
        timeout: Option<u64>,
        /// Guest vCPUs (vng's default otherwise).
        #[arg(long, value_name = "N")]
        cpus: Option<u32>,
        /// The command to run in the guest.
        #[arg(last = true, required = true, value_name = "CMD")]
        cmd: Vec<String>,
    },
    /// Build what is missing, boot, load task_kfuncs.ko and show what BPF
    /// sees of it, unload it, power off.
    Run,
    /// Run every test (host tests, toolkit checks, the BPF selftests in the
    /// guest), one line per case; ends with `N passed, N failed`. JUnit XML
    /// of every case goes to target/xtask/results.xml.
    Test {
        /// Run the guest part on the debug kernel.
        #[arg(long)]
        debug: bool,
        /// The long forms of the heavy cases: the SMP stress run, insmod
        /// failing at every allocation, 100 load cycles, the rmmod race.
        #[arg(long)]
        long: bool,
        /// Run only the cases whose name contains this (e.g.
        /// `rust/from_pid`, `host/`); the guest's sanity checks and kernel
        /// log judges run with any guest case.
        filter: Option<String>,
    },
    /// Benchmark the Rust kfuncs against the kernel's C kfuncs in the guest
    /// and print the ratios (`bench -- --iters N --rounds N` to tune).
    Bench {
        /// Arguments for task-kfuncs-bench.
        #[arg(last = true, value_name = "ARGS")]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("[xtask] error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> Result<ExitCode> {
    let cli = Cli::parse();
    let checkout = util::checkout();
    let cache = util::cache_dir()?;
    match cli.command {
        Cmd::Setup => setup::setup(&cache).map(|()| ExitCode::SUCCESS),
        Cmd::Kernel { debug, print_path } => {
            let dir = kernel::ensure_built(&checkout, &cache, Flavour::new(debug))?;
            if print_path {
                println!("{}", dir.display());
            } else {
                say!("kernel: {}", dir.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Vm {
            debug,
            kernel,
            timeout,
            cpus,
            cmd,
        } => {
            setup::ensure(&cache)?;
            let kdir = match kernel {
                Some(dir) => dir
                    .canonicalize()
                    .with_context(|| format!("--kernel {}: no such directory", dir.display()))?,
                None => kernel::ensure_built(&checkout, &cache, Flavour::new(debug))?,
            };
            let mut opts = vm::VmOptions::new(kdir, debug);
            opts.cpus = cpus;
            if let Some(secs) = timeout {
                opts.timeout = std::time::Duration::from_secs(secs);
            }
            let outcome = vm::run(&cache, &opts, &vm::command_line(&cmd))?;
            say!(
                "vm: command started {:.1} s after boot began; exit code {}",
                outcome.boot_time.as_secs_f64(),
                outcome.exit_code
            );
            // The guest command's code, as `vm`'s help promises (a code
            // outside 0..=255 cannot be an exit status: 255, as vng's own).
            Ok(ExitCode::from(
                u8::try_from(outcome.exit_code).unwrap_or(255),
            ))
        }
        Cmd::Run => run::run(&checkout, &cache).map(|()| ExitCode::SUCCESS),
        Cmd::Test {
            debug,
            long,
            filter,
        } => driver::test(
            &checkout,
            &cache,
            Flavour::new(debug),
            long,
            filter.as_deref(),
        ),
        Cmd::Bench { args } => bench::bench(&checkout, &cache, &args).map(|()| ExitCode::SUCCESS),
    }
}
