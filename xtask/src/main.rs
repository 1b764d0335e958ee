// SPDX-License-Identifier: GPL-2.0

//! `cargo xtask`: builds the task_kfuncs test kernel, boots it with
//! virtme-ng and runs the tests. See README.md for the commands and
//! `cargo xtask help <command>` for each one.

mod bench;
mod driver;
mod kernel;
mod module;
mod rfc;
mod run;
mod selftests;
mod setup;
mod util;
mod vm;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::kernel::{Flavour, Line};

/// Where xtask works: the checkout it belongs to and the cache directory
/// shared by every checkout (kernel builds, the virtme-ng venv, the
/// toolchain links, downloaded kernel sources).
#[derive(Clone, Debug)]
pub struct Env {
    pub checkout: PathBuf,
    pub cache: PathBuf,
}

impl Env {
    fn from_host() -> Result<Self> {
        Ok(Env {
            checkout: util::checkout(),
            cache: util::cache_dir()?,
        })
    }
}

/// Which test kernel a command works on.
#[derive(Args, Clone, Copy, Debug)]
struct KernelArgs {
    /// The kernel line: 6.12 (LTS) or 7.3.
    #[arg(long = "kernel", value_name = "LINE", default_value = "6.12")]
    line: Line,
    /// The debug flavour: KASAN, lockdep, PROVE_RCU, kmemleak.
    #[arg(long)]
    debug: bool,
}

impl KernelArgs {
    fn flavour(self) -> Flavour {
        Flavour::new(self.debug)
    }
}

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
        #[command(flatten)]
        kernel: KernelArgs,
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
        #[command(flatten)]
        kernel: KernelArgs,
        /// Boot this kernel build directory instead of a cached test
        /// kernel (with --debug: allow a debug kernel's boot time).
        #[arg(long, value_name = "DIR", conflicts_with = "line")]
        kdir: Option<PathBuf>,
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
    Run {
        #[command(flatten)]
        kernel: KernelArgs,
    },
    /// Run every test (host tests, toolkit checks, the BPF selftests in the
    /// guest), one line per case; ends with `N passed, N failed`. JUnit XML
    /// of every case goes to target/xtask/results.xml.
    Test {
        #[command(flatten)]
        kernel: KernelArgs,
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
        /// The kernel line (always its normal kernel: timing a debug
        /// kernel measures its instrumentation).
        #[arg(long = "kernel", value_name = "LINE", default_value = "6.12")]
        line: Line,
        /// Arguments for task-kfuncs-bench.
        #[arg(last = true, value_name = "ARGS")]
        args: Vec<String>,
    },
    /// The upstream RFC series (upstream/rfc-v1/) on a fresh copy of the 7.3
    /// source: per patch applies, checkpatch and builds; then the kernel with
    /// the Rust kfunc sample as a module and built in, their BTF beside
    /// btfgen's, the code beside the C kfuncs', and the kernel's own
    /// test_progs in each; ends with `N passed, N failed`.
    Rfc {
        /// Build only after the last patch instead of after each one.
        #[arg(long)]
        quick: bool,
        /// Start over: remove the trees and results of this series first.
        #[arg(long)]
        fresh: bool,
        /// Only apply each patch and run checkpatch on it (what CI runs): no
        /// kernel build, boot or test.
        #[arg(long, conflicts_with = "quick")]
        patches_only: bool,
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
    let env = Env::from_host()?;
    match cli.command {
        Cmd::Setup => setup::setup(&env).map(|()| ExitCode::SUCCESS),
        Cmd::Kernel { kernel, print_path } => {
            let built = kernel::ensure_built(&env, kernel.line, kernel.flavour())?;
            if print_path {
                println!("{}", built.dir.display());
            } else {
                say!("kernel: {} {}", built.describe(), built.dir.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Vm {
            kernel,
            kdir,
            timeout,
            cpus,
            cmd,
        } => {
            setup::ensure(&env)?;
            let (kdir, debug) = match kdir {
                Some(dir) => {
                    let dir = dir
                        .canonicalize()
                        .with_context(|| format!("--kdir {}: no such directory", dir.display()))?;
                    (dir, kernel.debug)
                }
                None => {
                    let built = kernel::ensure_built(&env, kernel.line, kernel.flavour())?;
                    let debug = built.is_debug();
                    (built.dir, debug)
                }
            };
            let mut opts = vm::VmOptions::new(kdir, debug);
            opts.cpus = cpus;
            if let Some(secs) = timeout {
                opts.timeout = std::time::Duration::from_secs(secs);
            }
            let outcome = vm::run(&env.cache, &opts, &vm::command_line(&cmd))?;
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
        Cmd::Run { kernel } => {
            run::run(&env, kernel.line, kernel.flavour()).map(|()| ExitCode::SUCCESS)
        }
        Cmd::Test {
            kernel,
            long,
            filter,
        } => driver::test(&env, kernel.line, kernel.flavour(), long, filter.as_deref()),
        Cmd::Bench { line, args } => bench::bench(&env, line, &args).map(|()| ExitCode::SUCCESS),
        Cmd::Rfc {
            quick,
            fresh,
            patches_only,
        } => rfc::rfc(
            &env,
            rfc::Options {
                quick,
                fresh,
                patches_only,
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use clap::CommandFactory;

    use super::*;

    /// README.md's command list names every subcommand of `cargo xtask
    /// --help` with every long option it has, and nothing else.
    #[test]
    fn readme_commands_match_the_help() {
        let readme = std::fs::read_to_string(util::checkout().join("README.md")).unwrap();
        let block = readme
            .split("\n## Commands\n")
            .nth(1)
            .and_then(|s| s.split("```sh\n").nth(1))
            .and_then(|s| s.split("```").next())
            .expect("README.md has a `## Commands` section with a sh block");
        let cli = Cli::command();
        let mut named = BTreeSet::new();
        for line in block.lines().filter(|l| l.starts_with("cargo xtask ")) {
            let usage = line.split('#').next().unwrap_or_default();
            let name = usage.split_whitespace().nth(2).unwrap_or_default();
            let sub = cli
                .find_subcommand(name)
                .unwrap_or_else(|| panic!("README.md names `cargo xtask {name}`: no such command"));
            let in_readme: BTreeSet<&str> = usage
                .split(|c: char| c.is_whitespace() || c == '[' || c == ']')
                .filter(|w| w.starts_with("--") && w.len() > 2)
                .collect();
            let in_help: BTreeSet<String> = sub
                .get_arguments()
                .filter_map(|a| a.get_long())
                .filter(|&l| l != "help")
                .map(|l| format!("--{l}"))
                .collect();
            let in_help: BTreeSet<&str> = in_help.iter().map(String::as_str).collect();
            assert_eq!(in_readme, in_help, "options of `cargo xtask {name}`");
            named.insert(name.to_string());
        }
        let commands: BTreeSet<String> = cli
            .get_subcommands()
            .map(|s| s.get_name().to_string())
            .filter(|n| n != "help")
            .collect();
        assert_eq!(
            named, commands,
            "README.md's command list vs `cargo xtask --help`"
        );
    }
}
