// SPDX-License-Identifier: GPL-2.0

//! `cargo xtask test [FILTER]`: every test the project has, one line per
//! case in one numbering, and one closing `N passed, N failed` line.
//!
//! 1. Host: the workspace's tests, one case per test ([`host`]), on a
//!    thread of their own while the rest runs; recorded last.
//! 2. xtask's own: one boot, `vm -- 'exit 3'` exits 3 (the exit code the
//!    guest part relies on; the guest suite's own exit code must agree with
//!    its verdicts, which covers 0).
//! 3. Builds: task_kfuncs.ko and the BPF selftest runner; the runner lists
//!    the cases the filter selects.
//! 4. Toolkit: the rust-kfuncs sample module (samples/kfunc_sample) is
//!    built when a toolkit check or a sample case is selected, and
//!    plain-Kbuild builds of both modules and their checked-in `*.kfuncs.h`
//!    headers are checked ([`toolkit`], `toolkit/...` cases).
//! 5. Guest: one boot (2 vCPUs for the stress suite) runs the selected
//!    cases, with the sample module, and the runner's KTAP becomes one case
//!    per runner case ([`guest`]).
//!
//! A case runs when its name contains FILTER (the runner applies the same
//! rule to its cases, and adds its sanity checks and kernel-log judges to
//! any selection); the report says how many were filtered out. Anything that
//! cannot run counts as failed, with the reason. Every case also lands in
//! `target/xtask/results.xml` (JUnit, [`report`]).

pub(crate) mod guest;
mod host;
pub(crate) mod report;
mod toolkit;

use std::process;
use std::thread;
use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use harness::Outcome;

use crate::kernel::{self, Flavour, Line};
use crate::util::fmt_duration;
use crate::{module, say, selftests, vm, Env};
use report::Report;

fn selected(name: &str, filter: Option<&str>) -> bool {
    filter.is_none_or(|f| name.contains(f))
}

/// `cargo xtask test [--kernel LINE] [--debug] [FILTER]`. Exits the
/// process: 0 when nothing failed.
pub fn test(env: &Env, line: Line, flavour: Flavour, filter: Option<&str>) -> Result<()> {
    let start = Instant::now();
    let mut r = Report::default();
    let ok = run(&mut r, env, line, flavour, filter);
    if let (true, Some(f)) = (r.is_empty(), filter) {
        r.record(
            "xtask/filter_selects_a_case",
            Outcome::fail(format!(
                "no case name contains {f:?}: names look like `rust/from_pid_current`, \
                 `c_kfuncs/release_null`, `host/harness/lib/ktap::tests::round_trip`, \
                 `xtask/vm_exit_code_passes_through`"
            )),
        );
    }
    say!("test: finished in {}", fmt_duration(start.elapsed()));
    let junit = env.checkout.join("target/xtask/results.xml");
    let passed = r.finish(&junit, filter)?;
    if !(ok && passed) {
        process::exit(1);
    }
    Ok(())
}

/// Records every case; returns false when the run could not even start.
fn run(r: &mut Report, env: &Env, line: Line, flavour: Flavour, filter: Option<&str>) -> bool {
    let (checkout, cache) = (env.checkout.as_path(), env.cache.as_path());
    let kernel = match kernel::ensure_built(env, line, flavour) {
        Ok(kernel) => kernel,
        Err(e) => {
            r.fail(&format!("build/{}_kernel", flavour.name()), &e);
            return false;
        }
    };
    let kdir = kernel.dir.clone();
    println!("# kernel: {} {}", kernel.describe(), kdir.display());
    let mut phase = Instant::now();
    let mut lap = |what: &str| {
        println!("# time: {what} {:.1} s", phase.elapsed().as_secs_f64());
        phase = Instant::now();
    };

    // 1. Host tests: built, listed and run on a thread of their own while
    // the module is built and the guest runs (QEMU under TCG keeps one core
    // busy); recorded at the end.
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
                .partition(|t| selected(&t.name, filter.as_deref()));
            Ok((host::run(tests, &kdir), out.len()))
        })
    };
    // 2. xtask's own check of the guest's exit code: a specific non-zero
    // code must come through (the guest suite's exit code is then checked
    // against its verdicts on every run, which covers 0 on a green run).
    let opts = vm::VmOptions {
        echo_prefix: "# ",
        // The stress suite needs SMP, and a task_struct slab of its own.
        cpus: Some(crate::stress::CPUS),
        append: vec!["slab_nomerge"],
        ..vm::VmOptions::new(kdir.clone(), flavour == Flavour::Debug)
    };
    let name = "xtask/vm_exit_code_passes_through";
    if selected(name, filter) {
        let result = vm::run(cache, &opts, "exit 3").and_then(|o| {
            println!("# boot to command: {:.1} s", o.boot_time.as_secs_f64());
            match o.exit_code {
                3 => Ok(()),
                c => bail!("`exit 3` in the guest gave exit code {c}"),
            }
        });
        r.record(
            name,
            match result {
                Ok(()) => Outcome::Pass,
                Err(e) => Outcome::fail(format!("{e:#}")),
            },
        );
        lap(name);
    } else {
        r.filtered_out(1);
    }

    // 3. The module and the BPF selftests in the guest.
    let ko = if module::exists(checkout) {
        module::build(env, &kernel)
    } else {
        Err(anyhow!(
            "no module source (Makefile and src/lib.rs are missing)"
        ))
    };
    let ko = ko.map_err(|e| r.fail("build/module", &e)).ok();
    lap("module built");
    let bins = selftests::build(checkout, &kdir)
        .map_err(|e| r.fail("build/selftests", &e))
        .ok();
    lap("selftest runner built");
    // What the guest would run, listed with the sample module's path (the
    // runner does not open it to list), so that the sample is built only
    // when a selected case needs it.
    let mut selection = match (&ko, &bins) {
        (Some(ko), Some(bins)) => guest::select(
            &bins.runner,
            ko,
            Some(&toolkit::sample_ko(checkout)),
            filter,
        )
        .map_err(|e| r.fail("build/selftests_list", &e))
        .ok(),
        _ => None,
    };
    lap("guest cases listed");

    // The toolkit: the sample module, plain-Kbuild builds, fresh headers.
    let toolkit_names = toolkit::names();
    let toolkit_selected = toolkit_names.iter().any(|n| selected(n, filter));
    let is_sample_case = |case: &String| case.starts_with("kfunc_sample/");
    let sample_selected = selection
        .as_ref()
        .is_some_and(|s| s.cases.iter().any(is_sample_case));
    let sample = if toolkit_selected || sample_selected {
        toolkit::build_sample(env, &kernel)
            .map_err(|e| r.fail("build/kfunc_sample", &e))
            .ok()
    } else {
        None
    };
    if sample.is_none() {
        // Without the sample module the runner has no kfunc_sample suite:
        // a selected case of it fails here, by name, not as unreported.
        if let Some(selection) = selection.as_mut() {
            for case in selection.cases.iter().filter(|c| is_sample_case(c)) {
                r.record(
                    case,
                    Outcome::fail(
                        "not run: samples/kfunc_sample did not build (build/kfunc_sample)",
                    ),
                );
            }
            selection.cases.retain(|c| !is_sample_case(c));
            // The runner adds its sanity checks and kernel judges to any
            // selection; with nothing else left there is nothing to boot for.
            let accompanying = |c: &String| c.starts_with("guest/") || c.starts_with("kernel/");
            if selection.cases.iter().all(accompanying) {
                r.filtered_out(selection.cases.len());
                selection.cases.clear();
            }
        }
    }
    match (&ko, &sample) {
        (Some(ko), Some(sample)) if toolkit_selected => {
            for (name, result) in toolkit::checks(
                env,
                &kernel,
                &[
                    (".", ko.as_path()),
                    ("samples/kfunc_sample", sample.as_path()),
                ],
            ) {
                if !selected(&name, filter) {
                    r.filtered_out(1);
                    continue;
                }
                r.record(
                    &name,
                    match result {
                        Ok(()) => Outcome::Pass,
                        Err(e) => Outcome::fail(format!("{e:#}")),
                    },
                );
            }
        }
        _ if !toolkit_selected => r.filtered_out(toolkit_names.len()),
        // The module or the sample failed to build: recorded above.
        _ => {}
    }
    lap("toolkit checks");

    if let (Some(ko), Some(bins), Some(selection)) = (ko, bins, selection) {
        r.filtered_out(selection.filtered_out);
        if !selection.cases.is_empty() {
            guest::run(
                r,
                env,
                &opts,
                flavour == Flavour::Debug,
                &bins.runner,
                &ko,
                sample.as_deref(),
                filter,
                &selection,
                &[],
            );
            lap("guest run");
        }
    }

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
    lap("host tests (waited for)");
    true
}
