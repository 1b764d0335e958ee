// SPDX-License-Identifier: GPL-2.0

//! `cargo xtask test`: every test the project has, one TAP-like line per
//! case, and one final `N passed, N failed` line.
//!
//! 1. Host: `cargo test --workspace`, each test a case.
//! 2. xtask's checks on the kernel in use: its .config, its cache key, and
//!    two boots (`vm -- true` exits 0, `vm -- false` does not).
//! 3. Guest: task_kfuncs.ko and the BPF selftest runner are built on the
//!    host, then xtask/guest/test.sh runs the runner in the guest and scans
//!    the kernel log. The runner's own `N passed, N failed` line is added to
//!    the totals. The same suite built against the kernel's own C kfuncs
//!    (`--features c-kfuncs`) runs in the same guest and counts too.
//!
//! Anything that cannot run counts as failed, with the reason.
//! Output of tools and of the guest is echoed as `# ` comment lines, so the
//! only summary line that is not a comment is ours.

use std::env;
use std::fs;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{self, Command, Stdio};
use std::time::Instant;

use anyhow::{anyhow, bail, Result};

use crate::kernel::{self, Flavour};
use crate::util::{fmt_duration, shell_quote};
use crate::{module, say, toolkit, vm};

/// Where `cargo build -p bpf-tests --release` leaves the selftest runner.
const RUNNER: &str = "target/release/task-kfuncs-selftests";
/// The target dir of the runner built against the kernel's C kfuncs.
const C_TARGET_DIR: &str = "target/c-kfuncs";

/// Case counter and printer.
#[derive(Default)]
struct Tally {
    passed: u32,
    failed: u32,
}

impl Tally {
    fn pass(&mut self, name: &str) {
        self.passed += 1;
        println!("ok {} - {name}", self.passed + self.failed);
    }

    fn fail(&mut self, name: &str, reason: &str) {
        self.failed += 1;
        println!("not ok {} - {name}", self.passed + self.failed);
        for line in reason.lines() {
            println!("#   {line}");
        }
    }

    /// Records a case from its result and hands on the value.
    fn case<T>(&mut self, name: &str, result: Result<T>) -> Option<T> {
        match result {
            Ok(value) => {
                self.pass(name);
                Some(value)
            }
            Err(e) => {
                self.fail(name, &format!("{e:#}"));
                None
            }
        }
    }
}

/// `cargo xtask test [--debug]`. Exits the process: 0 when nothing failed.
pub fn test(checkout: &Path, cache: &Path, debug: bool) -> Result<()> {
    let start = Instant::now();
    let flavour = Flavour::new(debug);
    let mut t = Tally::default();

    let kdir = match kernel::ensure_built(checkout, cache, flavour) {
        Ok(dir) => dir,
        Err(e) => {
            t.fail(
                &format!("kernel: the {} kernel builds", flavour.name()),
                &format!("{e:#}"),
            );
            return finish(&t, start);
        }
    };
    println!("# kernel: {}", kdir.display());

    // 1. Host tests.
    println!(
        "# host: cargo test --workspace (TASK_KFUNCS_KDIR={})",
        kdir.display()
    );
    host_tests(&mut t, checkout, &kdir);

    // 2. xtask's own checks on the kernel in use.
    config_checks(&mut t, checkout, cache, flavour, &kdir);
    let opts = vm::VmOptions {
        echo_prefix: "# ",
        // The stress case needs SMP, and a task_struct slab of its own.
        cpus: Some(crate::stress::CPUS),
        append: vec!["slab_nomerge"],
        ..vm::VmOptions::new(kdir.clone(), debug)
    };
    for (command, want_zero) in [("true", true), ("false", false)] {
        let name = match want_zero {
            true => "boot: `vm -- true` exits 0",
            false => "boot: `vm -- false` exits non-zero",
        };
        let result = vm::run(cache, &opts, command).and_then(|o| {
            println!("# boot to command: {:.1} s", o.boot_time.as_secs_f64());
            match (want_zero, o.exit_code) {
                (true, 0) => Ok(()),
                (false, c) if c != 0 => Ok(()),
                (_, c) => bail!("`{command}` in the guest gave exit code {c}"),
            }
        });
        t.case(name, result);
    }

    // 3. The module and the BPF selftests in the guest.
    let ko = if module::exists(checkout) {
        module::build(checkout, cache, &kdir)
    } else {
        Err(anyhow!(
            "no module source yet (Makefile and src/lib.rs are missing)"
        ))
    };
    let ko = t.case("module: task_kfuncs.ko builds against the test kernel", ko);
    let sample = t.case(
        "module: samples/kfunc_sample builds against the test kernel",
        toolkit::build_sample(checkout, cache, &kdir),
    );
    if let (Some(ko), Some(sample)) = (&ko, &sample) {
        for (name, result) in toolkit::checks(
            checkout,
            cache,
            &kdir,
            &[(".", ko), ("samples/kfunc_sample", sample)],
        ) {
            t.case(&name, result);
        }
    }
    let runner = t.case(
        "selftests: the runner builds",
        build_runner(checkout, &kdir, None),
    );
    let c_runner = t.case(
        "selftests: the runner builds against the kernel's C kfuncs",
        build_runner(checkout, &kdir, Some(C_TARGET_DIR)),
    );
    match (ko, runner, c_runner) {
        (Some(ko), Some(runner), Some(c_runner)) => guest_suite(
            &mut t,
            checkout,
            cache,
            &opts,
            [&runner, &c_runner],
            [&ko, sample.as_deref().unwrap_or(Path::new(""))],
        ),
        _ => t.fail(
            "guest: BPF selftest suite",
            "not run: it needs both task_kfuncs.ko and the runner (see above)",
        ),
    }

    finish(&t, start)
}

fn finish(t: &Tally, start: Instant) -> Result<()> {
    say!("test: finished in {}", fmt_duration(start.elapsed()));
    println!("{} passed, {} failed", t.passed, t.failed);
    if t.failed > 0 {
        process::exit(1);
    }
    Ok(())
}

/// Runs `cargo test --workspace --no-fail-fast`, turning each
/// `test NAME ... ok|FAILED` line into a case named after its test binary.
///
/// cargo's stderr (which names the test binary) and the tests' stdout share
/// one pipe, so that each test line follows the `Running` line of its
/// binary; everything that is not a test line goes to our stderr.
fn host_tests(t: &mut Tally, checkout: &Path, kdir: &Path) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["test", "--workspace", "--no-fail-fast"])
        .current_dir(checkout)
        .env("TASK_KFUNCS_KDIR", kdir)
        .env("RUST_KFUNCS_KDIR", kdir)
        .stdin(Stdio::null());
    let spawned = io::pipe().and_then(|(reader, writer)| {
        cmd.stdout(writer.try_clone()?).stderr(writer);
        let child = cmd.spawn()?;
        // `cmd` still holds the pipe's write ends: drop them so that the
        // reader sees the end of the output when cargo exits.
        drop(cmd);
        Ok((child, reader))
    });
    let (mut child, reader) = match spawned {
        Ok(spawned) => spawned,
        Err(e) => {
            return t.fail(
                "host: cargo test --workspace",
                &format!("cannot start cargo: {e}"),
            )
        }
    };
    let (before_passed, before_failed) = (t.passed, t.failed);
    let mut binary = String::from("?");
    for line in BufReader::new(reader).lines().map_while(Result::ok) {
        if let Some(name) = test_binary(&line) {
            binary = name;
        }
        match parse_test_line(&line) {
            Some((name, TestVerdict::Ok)) => t.pass(&format!("host: {binary}: {name}")),
            Some((name, TestVerdict::Failed)) => t.fail(
                &format!("host: {binary}: {name}"),
                "see the cargo test output above",
            ),
            Some((name, TestVerdict::Ignored)) => {
                println!("# skipped (ignored, not counted): host: {binary}: {name}")
            }
            None => eprintln!("{line}"),
        }
    }
    let status = child.wait();
    let newly_failed = t.failed - before_failed;
    let ran = t.passed - before_passed + newly_failed;
    match status {
        Ok(s) if s.success() && ran > 0 => {}
        Ok(s) if s.success() => t.fail("host: cargo test --workspace", "ran no tests"),
        Ok(s) if newly_failed == 0 => t.fail(
            "host: cargo test --workspace",
            &format!("cargo test failed ({s}) without a failing test: a build error, see above"),
        ),
        Ok(_) => {}
        Err(e) => t.fail(
            "host: cargo test --workspace",
            &format!("cannot wait for cargo: {e}"),
        ),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum TestVerdict {
    Ok,
    Failed,
    Ignored,
}

/// The test binary a cargo `Running ...` or `Doc-tests` line announces:
/// `Running unittests src/lib.rs (target/debug/deps/btfgen-0123abcd)` is
/// `btfgen`, `Doc-tests btfgen` is `btfgen (doc)`.
fn test_binary(line: &str) -> Option<String> {
    let line = line.trim();
    if let Some(krate) = line.strip_prefix("Doc-tests ") {
        return Some(format!("{krate} (doc)"));
    }
    let path = line
        .strip_prefix("Running ")?
        .rsplit_once('(')?
        .1
        .strip_suffix(')')?;
    let file = path.rsplit('/').next()?;
    let name = file.rsplit_once('-').map_or(file, |(name, _hash)| name);
    Some(name.to_string())
}

/// Parses libtest's `test NAME ... ok` lines.
fn parse_test_line(line: &str) -> Option<(&str, TestVerdict)> {
    let rest = line.strip_prefix("test ")?;
    let (name, verdict) = rest.rsplit_once(" ... ")?;
    let verdict = match verdict.trim() {
        "ok" => TestVerdict::Ok,
        "FAILED" => TestVerdict::Failed,
        v if v.starts_with("ignored") => TestVerdict::Ignored,
        _ => return None,
    };
    Some((name, verdict))
}

/// Checks of the kernel in use: config and cache key.
fn config_checks(t: &mut Tally, checkout: &Path, cache: &Path, flavour: Flavour, kdir: &Path) {
    let inputs = match kernel::key_inputs(checkout, cache, flavour) {
        Ok(inputs) => inputs,
        Err(e) => return t.fail("config: read the kernel's inputs", &format!("{e:#}")),
    };
    let config = fs::read_to_string(kdir.join(".config")).unwrap_or_default();
    let fragments: Vec<&str> = inputs.fragments.iter().map(|(_, s)| s.as_str()).collect();
    let names: Vec<String> = inputs
        .fragments
        .iter()
        .map(|(n, _)| format!("qemu/{n}"))
        .collect();

    t.case(
        &format!(
            "config: every option of {} survived Kconfig",
            names.join(" + ")
        ),
        dropped_to_result(kernel::check_config(&config, &fragments, &[])),
    );
    t.case(
        &format!(
            "config: required options are y ({})",
            kernel::REQUIRED.join(" ")
        ),
        dropped_to_result(kernel::check_config(&config, &[], kernel::REQUIRED)),
    );

    let key = kernel::build_key(&inputs);
    t.case(
        "cache key: the kernel in use is keyed by today's patches, fragments and toolchain",
        {
            let expected = kernel::build_dir(cache, flavour, &inputs);
            if expected == kdir {
                Ok(())
            } else {
                Err(anyhow!(
                    "in use {}, expected {}",
                    kdir.display(),
                    expected.display()
                ))
            }
        },
    );
    t.case("cache key: changes when a patch changes", {
        let mut changed = inputs.clone();
        match changed.patches.last_mut() {
            Some((_, text)) => {
                text.push('\n');
                if kernel::build_key(&changed) != key
                    && kernel::source_key(&changed) != kernel::source_key(&inputs)
                {
                    Ok(())
                } else {
                    Err(anyhow!("key stayed {key}"))
                }
            }
            None => Err(anyhow!("qemu/patches has no patch")),
        }
    });
    t.case("cache key: changes when a config fragment changes", {
        let mut changed = inputs.clone();
        changed.fragments[0].1.push_str("CONFIG_XTASK_TEST=y\n");
        if kernel::build_key(&changed) != key {
            Ok(())
        } else {
            Err(anyhow!("key stayed {key}"))
        }
    });
}

fn dropped_to_result(dropped: Result<Vec<kernel::Dropped>>) -> Result<()> {
    let dropped = dropped?;
    if dropped.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = dropped.iter().map(ToString::to_string).collect();
    bail!("{}", list.join("\n"))
}

/// `cargo build -p bpf-tests --release` with TASK_KFUNCS_KDIR set; with
/// `c_target_dir`, the `c-kfuncs` build into that target dir.
pub(crate) fn build_runner(
    checkout: &Path,
    kdir: &Path,
    c_target_dir: Option<&str>,
) -> Result<PathBuf> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", "bpf-tests", "--release"])
        .current_dir(checkout)
        .env("TASK_KFUNCS_KDIR", kdir);
    let runner = match c_target_dir {
        Some(dir) => {
            cmd.args(["--features", "c-kfuncs", "--target-dir", dir]);
            checkout.join(RUNNER.replacen("target", dir, 1))
        }
        None => checkout.join(RUNNER),
    };
    crate::util::run(&mut cmd)?;
    if !runner.exists() {
        bail!(
            "the build left no {}: the bpf-tests crate must build a binary named task-kfuncs-selftests",
            runner.display()
        );
    }
    Ok(runner)
}

/// Boots once, runs xtask/guest/test.sh, and parses what it printed.
fn guest_suite(
    t: &mut Tally,
    checkout: &Path,
    cache: &Path,
    opts: &vm::VmOptions,
    [runner, c_runner]: [&Path; 2],
    [ko, sample]: [&Path; 2],
) {
    let script = checkout.join("xtask/guest/test.sh");
    let command = [
        "bash",
        &script.to_string_lossy(),
        &runner.to_string_lossy(),
        &ko.to_string_lossy(),
        &c_runner.to_string_lossy(),
        &sample.to_string_lossy(),
    ]
    .map(shell_quote)
    .join(" ");
    let outcome = match vm::run(cache, opts, &command) {
        Ok(outcome) => outcome,
        Err(e) => return t.fail("guest: BPF selftest suite", &format!("{e:#}")),
    };
    println!(
        "# boot to command: {:.1} s",
        outcome.boot_time.as_secs_f64()
    );

    for line in outcome.stdout.lines() {
        if let Some(rest) = line.strip_prefix("xtask-guest: ") {
            if let Some(name) = rest.strip_prefix("ok - ") {
                t.pass(&format!("guest: {name}"));
            } else if let Some(name) = rest.strip_prefix("not ok - ") {
                t.fail(&format!("guest: {name}"), "see the guest output above");
            }
        }
    }
    runner_result(t, &outcome.stdout, "", "selftest runner");
    runner_result(
        t,
        &outcome.stdout,
        "c-kfuncs: ",
        "selftest runner (kernel C kfuncs)",
    );
    if outcome.exit_code != 0 {
        t.fail(
            "guest: test script",
            &format!("exit code {}", outcome.exit_code),
        );
    }
}

/// Adds one runner's `N passed, N failed` line (its output lines carry
/// `prefix`) to the totals, and fails when it never finished or its exit
/// code disagrees with its counts.
fn runner_result(t: &mut Tally, stdout: &str, prefix: &str, what: &str) {
    let exit_key = format!("xtask-guest: {prefix}runner exit code ");
    let mut summary = None;
    let mut exit = None;
    for line in stdout.lines() {
        if let Some(code) = line.strip_prefix(exit_key.as_str()) {
            exit = code.trim().parse::<i32>().ok();
        } else if let Some(counts) = line.strip_prefix(prefix).and_then(parse_summary) {
            summary = Some(counts);
        }
    }
    match (summary, exit) {
        (Some((passed, failed, skipped)), Some(code)) => {
            println!(
                "# {what}: {passed} passed, {failed} failed, {skipped} skipped (not counted), exit code {code}"
            );
            t.passed += passed;
            t.failed += failed;
            if code != 0 && failed == 0 {
                t.fail(&format!("guest: {what} exit code"), &format!("exit code {code} with no failed case"));
            }
        }
        (None, Some(code)) => t.fail(
            &format!("guest: {what}"),
            &format!("it printed no `N passed, N failed` line (exit code {code})"),
        ),
        (_, None) => t.fail(
            &format!("guest: {what}"),
            "the guest script never reported the runner's end (did the guest crash? see target/xtask/console.log)",
        ),
    }
}

/// Parses a `N passed, N failed` line, optionally followed by
/// `, N skipped` (skipped cases are reported, never counted as passed).
pub(crate) fn parse_summary(line: &str) -> Option<(u32, u32, u32)> {
    let (passed, rest) = line.trim().split_once(" passed, ")?;
    let (failed, skipped) = match rest.split_once(" failed") {
        Some((failed, "")) => (failed, 0),
        Some((failed, tail)) => {
            let skipped = tail.strip_prefix(", ")?.strip_suffix(" skipped")?;
            (failed, skipped.parse().ok()?)
        }
        None => return None,
    };
    Some((passed.parse().ok()?, failed.parse().ok()?, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtest_lines() {
        assert_eq!(
            parse_test_line("test kernel::tests::x ... ok"),
            Some(("kernel::tests::x", TestVerdict::Ok))
        );
        assert_eq!(
            parse_test_line("test a::b ... FAILED"),
            Some(("a::b", TestVerdict::Failed))
        );
        assert_eq!(
            parse_test_line("test a ... ignored, slow"),
            Some(("a", TestVerdict::Ignored))
        );
        assert_eq!(parse_test_line("test result: ok. 3 passed; 0 failed"), None);
        assert_eq!(parse_test_line("running 3 tests"), None);
    }

    #[test]
    fn test_binaries() {
        assert_eq!(
            test_binary(
                "     Running unittests src/main.rs (target/debug/deps/xtask-63ebecb94df3ca1f)"
            ),
            Some("xtask".to_string())
        );
        assert_eq!(
            test_binary("     Running tests/btf_ids.rs (target/debug/deps/btf_ids-0a1b2c)"),
            Some("btf_ids".to_string())
        );
        assert_eq!(
            test_binary("   Doc-tests btfgen"),
            Some("btfgen (doc)".to_string())
        );
        assert_eq!(
            test_binary("   Compiling xtask v0.1.0 (/work/main/xtask)"),
            None
        );
    }

    #[test]
    fn summary_lines() {
        assert_eq!(parse_summary("31 passed, 2 failed"), Some((31, 2, 0)));
        assert_eq!(parse_summary("0 passed, 0 failed\n"), Some((0, 0, 0)));
        assert_eq!(
            parse_summary("40 passed, 1 failed, 3 skipped"),
            Some((40, 1, 3))
        );
        assert_eq!(parse_summary("40 passed, 1 failed, many skipped"), None);
        assert_eq!(parse_summary("40 passed, 1 failedx"), None);
        assert_eq!(parse_summary("ok 1 - passed, failed"), None);
        assert_eq!(parse_summary("test result: ok. 3 passed; 0 failed"), None);
    }
}
