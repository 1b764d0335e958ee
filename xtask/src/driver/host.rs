// SPDX-License-Identifier: GPL-2.0

//! Host tests, one case per test: `cargo test --workspace --no-run` builds
//! the test binaries and names them in its JSON messages; each binary lists
//! its tests (`--list --format terse`, and `--ignored` for the ignored ones)
//! and runs each selected test alone (`--exact NAME`), judged by its exit
//! code.
//!
//! Why this and not libtest's JSON output or nextest: `--format json` needs
//! `-Z unstable-options`, and nextest's libtest-json output is experimental
//! (NEXTEST_EXPERIMENTAL_LIBTEST_JSON) and nextest is not on every machine
//! this runs on. The list output and the exit code of a single test are what
//! nextest itself builds on. Doc tests are not run this way: the workspace
//! has none.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use harness::Outcome;

/// One test of one test binary.
pub struct HostTest {
    /// `host/<package>/<target>/<test>`.
    pub name: String,
    binary: PathBuf,
    /// The package directory, where `cargo test` runs its tests.
    dir: PathBuf,
    test: String,
    ignored: bool,
}

/// Builds the workspace's test binaries and lists their tests.
pub fn build_and_list(checkout: &Path, kdir: &Path) -> Result<Vec<HostTest>> {
    let mut cmd = crate::util::cargo_for_kernel(
        checkout,
        kdir,
        &[
            "test",
            "--workspace",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ],
    );
    cmd.stderr(Stdio::inherit());
    let binaries = crate::util::cargo_artifacts(&mut cmd, |a| a.profile.test)?;
    let mut tests = Vec::new();
    for (binary, dir, label) in binaries {
        let ignored = list(&binary, &dir, true)?;
        for test in list(&binary, &dir, false)? {
            tests.push(HostTest {
                name: format!("host/{label}/{test}"),
                binary: binary.clone(),
                dir: dir.clone(),
                ignored: ignored.contains(&test),
                test,
            });
        }
    }
    if tests.is_empty() {
        bail!("cargo test --no-run built no test with any test in it");
    }
    Ok(tests)
}

/// The tests of a libtest binary (`--list --format terse` prints
/// `NAME: test` lines), or only its ignored ones.
fn list(binary: &Path, dir: &Path, ignored: bool) -> Result<Vec<String>> {
    let mut cmd = Command::new(binary);
    cmd.args(["--list", "--format", "terse"]).current_dir(dir);
    if ignored {
        cmd.arg("--ignored");
    }
    let out = crate::util::output(&mut cmd)?;
    Ok(out
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(str::to_string)
        .collect())
}

/// A host test's verdict, to be recorded.
pub struct Ran {
    pub name: String,
    pub outcome: Outcome,
    pub time: Option<Duration>,
}

/// Runs each test alone; returns their verdicts in order (the caller
/// records them: this may run on its own thread while the guest boots).
pub fn run(tests: Vec<HostTest>, kdir: &Path) -> Vec<Ran> {
    let mut ran = Vec::new();
    for t in tests {
        if t.ignored {
            ran.push(Ran {
                name: t.name,
                outcome: Outcome::Skip("#[ignore]".into()),
                time: None,
            });
            continue;
        }
        let start = Instant::now();
        let output = Command::new(&t.binary)
            .args(["--exact", &t.test])
            .current_dir(&t.dir)
            .env("CARGO_MANIFEST_DIR", &t.dir)
            .env("TASK_KFUNCS_KDIR", kdir)
            .env("RUST_KFUNCS_KDIR", kdir)
            .stdin(Stdio::null())
            .output();
        let outcome = match output {
            Ok(out) if out.status.success() => Outcome::Pass,
            Ok(out) => Outcome::fail_with_log(
                format!(
                    "{} --exact {} failed ({})",
                    t.binary.display(),
                    t.test,
                    out.status
                ),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            ),
            Err(e) => Outcome::fail(format!("cannot run {}: {e}", t.binary.display())),
        };
        ran.push(Ran {
            name: t.name,
            outcome,
            time: Some(start.elapsed()),
        });
    }
    ran
}
