// SPDX-License-Identifier: GPL-2.0

//! The test driver behind `cargo xtask test [--debug] [--long] [FILTER]`:
//! every test the project has, one line per case in one numbering, and one
//! closing `N passed, N failed` line.
//!
//! A run is a sequence of phases over one [`Plan`]:
//!
//! 1. kernel: the test kernel is built (or found in the cache);
//! 2. host: the workspace's tests, one case per test ([`host`]), built and
//!    run on a thread of their own while the rest goes on; recorded last;
//! 3. builds: task_kfuncs.ko and the BPF selftest runner;
//! 4. plan: what the filter selects, decided once ([`Plan`]): the runner's
//!    cases (the runner lists them, [`guest::select`]), the toolkit checks,
//!    and whether the toolkit's sample module is needed;
//! 5. toolkit: the sample module is built by the steps of
//!    rust-kfuncs/README.md, and that module, plain-Kbuild builds, the
//!    checked-in `*.kfuncs.h` headers and the toolkit's early build failures
//!    are checked ([`toolkit`]);
//! 6. guest: one boot (2 vCPUs, `slab_nomerge`) runs the selected runner
//!    cases; the runner's KTAP becomes one case per runner case, and the
//!    guest's exit code must come through and agree with them ([`guest`]).
//!
//! `--long` runs the long forms of the heavy cases (the SMP stress run, the
//! module fault cases). Anything that cannot run counts as failed, with the
//! reason. Every case also lands in `target/xtask/results.xml` (JUnit,
//! [`report`]).

mod guest;
mod host;
pub mod report;
mod toolkit;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::thread;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use harness::Outcome;

use crate::kernel::{self, Flavour, Kernel, Line};
use crate::util::fmt_duration;
use crate::{module, say, selftests, vm, Env};
use guest::Selection;
use report::Report;

/// vCPUs of the test guest: the stress case needs SMP.
const CPUS: u32 = 2;

/// Kernel options of the test guest: `task_struct` gets a slab cache of its
/// own, so that the stress case's object count means something.
const APPEND: &[&str] = &["slab_nomerge"];

/// What one run does, decided once from the filter and what the runner
/// lists.
struct Plan {
    filter: Option<String>,
    /// The runner's cases to run in the guest, in run order (the runner adds
    /// its sanity checks and kernel judges to any selection of its own).
    guest: Selection,
    /// The toolkit checks to record.
    toolkit: Vec<String>,
    /// Whether the toolkit's sample module must be built.
    sample: bool,
}

impl Plan {
    /// Whether the filter selects a case of ours (host tests, toolkit
    /// checks): its name contains the filter. The runner applies the same
    /// rule (libtest's) to its own cases.
    fn selects(filter: Option<&str>, name: &str) -> bool {
        filter.is_none_or(|f| name.contains(f))
    }

    fn new(filter: Option<&str>, runner: &Path, ko: &Path, sample_ko: &Path) -> Result<Self> {
        // Listed with the sample module's path: listing does not open it.
        let guest = guest::select(runner, ko, Some(sample_ko), filter)?;
        let toolkit: Vec<String> = toolkit::names()
            .into_iter()
            .filter(|n| Self::selects(filter, n))
            .collect();
        let sample = !toolkit.is_empty() || guest.cases.iter().any(|c| is_sample_case(c));
        Ok(Plan {
            filter: filter.map(str::to_string),
            guest,
            toolkit,
            sample,
        })
    }

    fn filter(&self) -> Option<&str> {
        self.filter.as_deref()
    }
}

fn is_sample_case(name: &str) -> bool {
    name.starts_with("kfunc_sample/")
}

/// `cargo xtask test`: records every case and prints the report.
pub fn test(
    env: &Env,
    line: Line,
    flavour: Flavour,
    long: bool,
    filter: Option<&str>,
) -> Result<ExitCode> {
    let start = Instant::now();
    let mut r = Report::default();
    run(&mut r, env, line, flavour, long, filter);
    if let (true, Some(f)) = (r.is_empty(), filter) {
        r.record(
            "xtask/filter_selects_a_case",
            Outcome::fail(format!(
                "no case name contains {f:?}: names look like `rust/from_pid_current`, \
                 `c_kfuncs/release_null`, `host/harness/lib/ktap::tests::round_trip`, \
                 `toolkit/kfuncs_h_fresh/task_kfuncs`"
            )),
        );
    }
    say!("test: finished in {}", fmt_duration(start.elapsed()));
    let passed = r.finish(&env.checkout.join("target/xtask/results.xml"), filter)?;
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The check that bpf-tests/vmlinux/vmlinux.h, with which the BPF programs
/// build when no kernel is given (a fresh clone's `cargo check`), is what
/// the normal test kernel's BTF gives, up to the order of its declarations
/// (see [`declarations`]).
const VMLINUX_H_FRESH: &str = "xtask/vmlinux_h_fresh";

/// The declarations of a `bpftool btf dump ... format c` header, in an order
/// of their own: what two builds of one kernel agree on. pahole 1.24 encodes
/// vmlinux BTF with several threads (`-j`), so the order of its types varies
/// between builds, and with it the header's order, its forward declarations
/// and which of two same-named enums gets bpftool's `___2` suffix. Each
/// declaration (a blank-line separated block) is kept whole, with its
/// members in order, less forward declarations and those suffixes.
fn declarations(header: &str) -> Vec<String> {
    let forward = |line: &str| {
        let mut words = line.split(' ');
        matches!(words.next(), Some("struct" | "union" | "enum"))
            && words.next().is_some_and(|w| w.ends_with(';'))
            && words.next().is_none()
    };
    let mut out: Vec<String> = header
        .split("\n\n")
        .map(|block| {
            let lines: Vec<&str> = block
                .lines()
                .filter(|l| !l.is_empty() && !forward(l))
                .collect();
            strip_dedup_suffixes(&lines.join("\n"))
        })
        .filter(|block| !block.is_empty())
        .collect();
    out.sort_unstable();
    out
}

/// `text` without bpftool's `___<digits>` suffixes of deduplicated names.
fn strip_dedup_suffixes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("___") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 3..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let ends_word = !after[digits..]
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
        if digits > 0 && ends_word {
            rest = &after[digits..];
        } else {
            out.push_str("___");
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn vmlinux_h_fresh(checkout: &Path, kdir: &Path) -> Result<()> {
    let checked_in = checkout.join("bpf-tests/vmlinux/vmlinux.h");
    let mut dump = Command::new("bpftool");
    dump.args(["btf", "dump", "file"])
        .arg(kdir.join("vmlinux"))
        .args(["format", "c"]);
    let fresh = crate::util::output(&mut dump)?;
    let have = fs::read_to_string(&checked_in)
        .with_context(|| format!("reading {}", checked_in.display()))?;
    if declarations(&fresh) != declarations(&have) {
        bail!(
            "{} is not the test kernel's BTF: regenerate it with\n  bpftool btf dump file \
             {}/vmlinux format c > {}",
            checked_in.display(),
            kdir.display(),
            checked_in.display()
        );
    }
    Ok(())
}

/// Prints how long each phase took (`# time:` lines).
struct Laps(Instant);

impl Laps {
    fn lap(&mut self, what: &str) {
        println!("# time: {what} {:.1} s", self.0.elapsed().as_secs_f64());
        self.0 = Instant::now();
    }
}

/// The phases; every outcome goes into `r`.
fn run(r: &mut Report, env: &Env, line: Line, flavour: Flavour, long: bool, filter: Option<&str>) {
    let checkout = env.checkout.as_path();
    // 1. The kernel.
    let kernel = match kernel::ensure_built(env, line, flavour) {
        Ok(kernel) => kernel,
        Err(e) => return r.fail(&format!("build/{}_kernel", flavour.name()), &e),
    };
    let kdir = kernel.dir.clone();
    // Every case of this report ran on (or was built for) this kernel.
    println!("# kernel: {} ({})", kernel.describe(), kdir.display());
    let mut laps = Laps(Instant::now());

    // 2. Host tests, on a thread of their own while the module is built and
    // the guest runs (QEMU under TCG keeps one core busy).
    let host = {
        let (checkout, kdir, filter) = (
            checkout.to_path_buf(),
            kdir.clone(),
            filter.map(str::to_string),
        );
        thread::spawn(move || -> Result<(Vec<host::Ran>, usize)> {
            let tests = host::build_and_list(&checkout, &kdir)?;
            let (tests, out): (Vec<_>, Vec<_>) = tests
                .into_iter()
                .partition(|t| Plan::selects(filter.as_deref(), &t.name));
            Ok((host::run(tests, &kdir), out.len()))
        })
    };

    // 3. Builds, and the checked-in vmlinux.h, which is the normal 6.12
    // kernel's BTF.
    if line == Line::V6_12 && flavour == Flavour::Normal {
        if Plan::selects(filter, VMLINUX_H_FRESH) {
            r.record(
                VMLINUX_H_FRESH,
                match vmlinux_h_fresh(checkout, &kdir) {
                    Ok(()) => Outcome::Pass,
                    Err(e) => Outcome::fail(format!("{e:#}")),
                },
            );
        } else {
            r.filtered_out(1);
        }
    }
    let ko = module::build(env, &kernel)
        .map_err(|e| r.fail("build/module", &e))
        .ok();
    laps.lap("module built");
    let runner = selftests::build(checkout, &kdir)
        .map_err(|e| r.fail("build/selftests", &e))
        .ok()
        .map(|b| b.runner);
    laps.lap("selftest runner built");

    // 4. The plan.
    let sample_ko = toolkit::sample_ko(checkout);
    let plan = match (&ko, &runner) {
        (Some(ko), Some(runner)) => Plan::new(filter, runner, ko, &sample_ko)
            .map_err(|e| r.fail("build/selftests_list", &e))
            .ok(),
        _ => None,
    };

    if let (Some(ko), Some(runner), Some(mut plan)) = (ko, runner, plan) {
        // 5. The toolkit.
        r.filtered_out(toolkit::names().len() - plan.toolkit.len());
        let sample = if plan.sample {
            toolkit_phase(r, &mut plan, env, &kernel, &ko, &runner)
        } else {
            None
        };
        laps.lap("toolkit");

        // 6. The guest.
        r.filtered_out(plan.guest.filtered_out);
        if !plan.guest.cases.is_empty() {
            let debug = kernel.is_debug();
            let opts = vm::VmOptions {
                echo_prefix: "# ",
                cpus: Some(CPUS),
                append: APPEND.to_vec(),
                timeout: guest::timeout(debug, long),
                ..vm::VmOptions::new(kdir.clone(), debug)
            };
            let run = guest::Run {
                runner: &runner,
                ko: &ko,
                sample: sample.as_deref(),
                filter: plan.filter(),
                long,
            };
            guest::run(r, env, &opts, debug, &run, &plan.guest);
            laps.lap("guest run");
        }
    }

    // 2, recorded.
    match host.join() {
        Ok(Ok((ran, filtered_out))) => {
            r.filtered_out(filtered_out);
            for t in ran {
                r.record_timed(&t.name, t.outcome, t.time);
            }
        }
        Ok(Err(e)) => r.fail("build/host_tests", &e),
        Err(_) => r.record(
            "build/host_tests",
            Outcome::fail("the host test thread panicked"),
        ),
    }
    laps.lap("host tests (waited for)");
}

/// Builds the sample module and records the toolkit checks the plan
/// selects; returns the sample module's path when it built. Without it the
/// runner has no kfunc_sample suite: the plan's sample cases fail here, by
/// name, and the guest selection is listed again without them.
fn toolkit_phase(
    r: &mut Report,
    plan: &mut Plan,
    env: &Env,
    kernel: &Kernel,
    ko: &Path,
    runner: &Path,
) -> Option<PathBuf> {
    let sample = match toolkit::build_sample(env, kernel) {
        Ok(sample) => sample,
        Err(e) => {
            r.fail("build/kfunc_sample", &e);
            for case in plan.guest.cases.iter().filter(|c| is_sample_case(c)) {
                r.record(
                    case,
                    Outcome::fail(
                        "not run: rust-kfuncs/README.md's steps did not build \
                         samples/kfunc_sample (build/kfunc_sample)",
                    ),
                );
            }
            for name in &plan.toolkit {
                r.record(name, Outcome::fail("not run: build/kfunc_sample failed"));
            }
            match guest::select(runner, ko, None, plan.filter()) {
                Ok(selection) => plan.guest = selection,
                Err(e) => {
                    r.fail("build/selftests_list", &e);
                    plan.guest.cases.clear();
                }
            }
            return None;
        }
    };
    if !plan.toolkit.is_empty() {
        for (name, result) in toolkit::checks(env, kernel, ko, &sample) {
            if plan.toolkit.contains(&name) {
                r.record(
                    &name,
                    match result {
                        Ok(()) => Outcome::Pass,
                        Err(e) => Outcome::fail(format!("{e:#}")),
                    },
                );
            }
        }
    }
    Some(sample)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmlinux_h_declarations_ignore_the_order_of_a_build() {
        let one = "struct a;\n\nenum e___2 {\n\tOpt_err___2 = 6,\n};\n\nstruct b {\n\tint x;\n\tint y;\n};\n";
        let two = "struct b {\n\tint x;\n\tint y;\n};\n\nstruct c;\nstruct a;\n\nenum e {\n\tOpt_err = 6,\n};\n";
        assert_eq!(declarations(one), declarations(two));
        // A member moved or changed is a different header.
        let swapped = "struct b {\n\tint y;\n\tint x;\n};\n\nenum e {\n\tOpt_err = 6,\n};\n";
        assert_ne!(declarations(one), declarations(swapped));
        let value = "struct b {\n\tint x;\n\tint y;\n};\n\nenum e {\n\tOpt_err = 7,\n};\n";
        assert_ne!(declarations(one), declarations(value));
        // Only a suffix of digits that ends the name is bpftool's.
        assert_eq!(
            strip_dedup_suffixes("x___12 y___a z___3b w___7;"),
            "x y___a z___3b w;"
        );
    }
}
