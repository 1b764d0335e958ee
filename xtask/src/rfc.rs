// SPDX-License-Identifier: GPL-2.0

//! `cargo xtask rfc`: the upstream RFC series of `upstream/rfc-v1/`, checked
//! on a fresh copy of Debian's linux-source-7.3 the way a maintainer checks
//! a series, then built, booted and tested in-tree.
//!
//! 1. series: each patch applies (`git am` on the extracted source), passes
//!    `scripts/checkpatch.pl --strict` ([`checkpatch_outcome`]) and builds:
//!    the tree is built after each patch in one `O=` directory, so the series
//!    is shown bisectable (`--quick` builds only after the last patch);
//! 2. kernels: that last build is the kernel with the sample as a module; a
//!    copy of it rebuilt with `CONFIG_SAMPLE_RUST_TASK_KFUNCS=y` is the one
//!    with the sample built in;
//! 3. BTF: in both, each Rust kfunc has a `FUNC` with a `bpf_kfunc` tag and
//!    the prototype of its C twin; and on the module's object, the BTF
//!    resolve_btfids encodes is btfgen's, type by type ([`btfgen_equal`]);
//! 4. zero cost: each Rust kfunc makes only calls its C twin makes or could
//!    make, no out-of-line call into a C helper or the kernel crate
//!    ([`zero_cost`]), with the bench's code table;
//! 5. guest: each kernel boots and runs the kernel's own `test_progs -t
//!    rust_task_kfuncs`, built from the same tree ([`selftests`] says how),
//!    one case per subtest, and its kernel log is judged;
//! 6. hygiene: `make rustfmtcheck`, clippy on the kernel crate and the
//!    sample, and `make rustdoc` are clean ([`hygiene`]).
//!
//! The kernels are built with `LLVM=-22`: clang and rustc (1.96, LLVM 22)
//! must share an LLVM for `CONFIG_RUST_INLINE_HELPERS`. Everything lives in
//! `$CACHE/rfc-<key>/`, the key covering the series, the config fragments,
//! the source version and the toolchain; a later run with the same key
//! reuses the builds and replays the series' outcomes (`--fresh` starts
//! over). Each run boots and tests again.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::thread;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use harness::{kernel_log, Outcome};

use crate::bench::{self, Code};
use crate::driver::report::Report;
use crate::kernel::config::{parse_config, parse_fragment, Want};
use crate::kernel::key::short_hash;
use crate::kernel::Line;
use crate::util::{self, fmt_duration, run_logged, shell_quote};
use crate::{say, setup, vm, Env};

/// Where the series lives in the checkout (`git format-patch` output).
pub const SERIES_DIR: &str = "upstream/rfc-v1";
/// The RFC kernels' config fragment, applied after test-kernel/kernel.config.
const FRAGMENT: &str = "upstream/rfc.config";
/// The LLVM the RFC kernels are built with: rustc-web 1.96's.
const LLVM: &str = "LLVM=-22";
const LIBCLANG: &str = "/usr/lib/llvm-22/lib";

/// The sample's kernel config option and module.
const SAMPLE_OPTION: &str = "SAMPLE_RUST_TASK_KFUNCS";
const SAMPLE_KO: &str = "samples/rust/rust_task_kfuncs.ko";
const SAMPLE_MODULE: &str = "rust_task_kfuncs";
/// The kernel's selftest of the sample: `test_progs -t <this>`.
const TEST_NAME: &str = "rust_task_kfuncs";

/// Each Rust kfunc of the sample and its C twin in kernel/bpf/helpers.c.
pub const TWINS: [(&str, &str); 4] = [
    ("rust_task_acquire", "bpf_task_acquire"),
    ("rust_task_release", "bpf_task_release"),
    ("rust_task_from_pid", "bpf_task_from_pid"),
    ("rust_task_from_vpid", "bpf_task_from_vpid"),
];

/// Options that every RFC kernel must end up with, and their values.
const REQUIRED: &[(&str, &str)] = &[
    ("RUST", "y"),
    ("RUST_INLINE_HELPERS", "y"),
    ("DEBUG_INFO_BTF", "y"),
    ("DEBUG_INFO_BTF_MODULES", "y"),
    ("BPF_SYSCALL", "y"),
];

/// `cargo xtask rfc` options.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Build only after the last patch, not after each.
    pub quick: bool,
    /// Remove this key's trees and results first.
    pub fresh: bool,
    /// Only apply and checkpatch each patch: no kernel build, boot or test.
    pub patches_only: bool,
}

/// One patch of the series.
struct Patch {
    /// `0003-resolve_btfids-...patch`
    file: String,
    path: PathBuf,
    /// Its subject line, for the report.
    subject: String,
}

impl Patch {
    /// `0003-resolve_btfids-Encode-the-BTF` for case names: the file name
    /// without `.patch`.
    fn case(&self) -> String {
        format!(
            "rfc/series/{}",
            self.file.strip_suffix(".patch").unwrap_or(&self.file)
        )
    }
}

/// The series of `SERIES_DIR`, in order, without the cover letter.
fn read_series(checkout: &Path) -> Result<Vec<Patch>> {
    let dir = checkout.join(SERIES_DIR);
    let mut patches = Vec::new();
    for entry in fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        let Some(file) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        if !file.ends_with(".patch") || file.starts_with("0000-") {
            continue;
        }
        let text = fs::read_to_string(&path)?;
        let subject = subject(&text).unwrap_or_else(|| file.clone());
        patches.push(Patch {
            file,
            path,
            subject,
        });
    }
    patches.sort_by(|a, b| a.file.cmp(&b.file));
    if patches.is_empty() {
        bail!("no patches in {}", dir.display());
    }
    Ok(patches)
}

/// A patch's subject without its `[RFC PATCH n/m]` prefix, unfolded (a mail
/// header continues on lines that start with white space).
fn subject(mail: &str) -> Option<String> {
    let mut lines = mail.lines().skip_while(|l| !l.starts_with("Subject: "));
    let mut subject = lines.next()?.strip_prefix("Subject: ")?.to_owned();
    for more in lines.take_while(|l| l.starts_with([' ', '\t'])) {
        subject.push(' ');
        subject.push_str(more.trim());
    }
    Some(match subject.split_once("] ") {
        Some((prefix, rest)) if prefix.starts_with('[') => rest.to_owned(),
        _ => subject,
    })
}

/// Where one key's trees live, and its stamps.
struct Work {
    dir: PathBuf,
}

impl Work {
    fn src(&self) -> PathBuf {
        self.dir.join("src")
    }
    fn build(&self, flavour: Flavour) -> PathBuf {
        self.dir.join(format!("build-{}", flavour.name()))
    }
    fn log(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }
    fn stamp(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.done"))
    }
}

/// How the sample is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flavour {
    Module,
    Builtin,
}

impl Flavour {
    fn name(self) -> &'static str {
        match self {
            Flavour::Module => "module",
            Flavour::Builtin => "builtin",
        }
    }

    fn value(self) -> &'static str {
        match self {
            Flavour::Module => "m",
            Flavour::Builtin => "y",
        }
    }
}

/// `cargo xtask rfc`.
pub fn rfc(env: &Env, opts: Options) -> Result<ExitCode> {
    let start = Instant::now();
    setup::ensure(env)?;
    let source = setup::source(env, Line::V7_3)?;
    let patches = read_series(&env.checkout)?;

    let mut key_fields = vec![source.version.clone()];
    for patch in &patches {
        key_fields.push(patch.file.clone());
        key_fields.push(fs::read_to_string(&patch.path)?);
    }
    for fragment in fragments(&env.checkout) {
        key_fields.push(fs::read_to_string(&fragment)?);
    }
    key_fields.extend(toolchain(env)?);
    key_fields.push(format!(
        "quick={} patches_only={}",
        opts.quick, opts.patches_only
    ));
    let key = short_hash(key_fields.iter().map(String::as_str));
    let work = Work {
        dir: env.cache.join(format!("rfc-{key}")),
    };
    if opts.fresh && work.dir.exists() {
        say!("rfc: --fresh: removing {}", work.dir.display());
        fs::remove_dir_all(&work.dir)?;
    }
    fs::create_dir_all(&work.dir)?;
    say!(
        "rfc: {} patches of {SERIES_DIR} on linux-source-7.3 {}, in {}",
        patches.len(),
        source.version,
        work.dir.display()
    );

    let mut report = Report::default();
    if opts.patches_only {
        patches_only(&work, &source, &patches, &mut report)?;
        let junit = env.checkout.join("target/xtask/rfc-results.xml");
        let ok = report.finish(&junit, None)?;
        return Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let series_ok = {
        let _lock = build_lock(&env.cache)?;
        let ok = series(env, &work, &source, &patches, opts, &mut report)?;
        if ok {
            record(&mut report, "rfc/build/builtin", builtin(env, &work));
        }
        ok
    };

    let kernels_built = series_ok && work.stamp("builtin").exists();
    let selftests_dir = if series_ok {
        let built = selftests(env, &work);
        let dir = built.as_ref().ok().cloned();
        record(&mut report, "rfc/selftests/build", built.map(|_| ()));
        dir
    } else {
        None
    };

    let mut code = String::from(
        "# The Rust kfuncs of the sample beside their C twins\n\n\
         From `objdump -dr` of the sample and of vmlinux, as `cargo xtask rfc` last ran: \
         instructions in each function and the out-of-line calls it makes (jumps that \
         leave the function count as calls).\n\n",
    );
    for flavour in [Flavour::Module, Flavour::Builtin] {
        let built = if flavour == Flavour::Module {
            series_ok
        } else {
            kernels_built
        };
        let name = flavour.name();
        if !built {
            report.record(
                &format!("rfc/{name}/kernel"),
                Outcome::fail("not built (see above)"),
            );
            continue;
        }
        btf_checks(env, &work, flavour, &mut report);
        code.push_str(&zero_cost(&work, flavour, &mut report));
        guest(env, &work, flavour, selftests_dir.as_deref(), &mut report);
    }
    if series_ok {
        record(
            &mut report,
            "rfc/btf/btfgen_equal",
            btfgen_equal(env, &work),
        );
        for (name, args) in HYGIENE {
            record(
                &mut report,
                &format!("rfc/hygiene/{name}"),
                hygiene(env, &work, name, args),
            );
        }
    }

    say!("rfc: {} in all", fmt_duration(start.elapsed()));
    let junit = env.checkout.join("target/xtask/rfc-results.xml");
    let ok = report.finish(&junit, None)?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The kernel's own checks of Rust code, run on the module tree after the
/// series: each `make` target and whether it may print a warning.
const HYGIENE: [(&str, &[&str]); 3] = [
    ("rustfmt", &["rustfmtcheck"]),
    // Rebuilds the kernel crate and the sample with clippy-driver (kbuild
    // rebuilds an object whose command changed); vmlinux is not relinked.
    (
        "clippy",
        &[
            "CLIPPY=1",
            "rust/kernel.o",
            "samples/rust/rust_task_kfuncs.o",
        ],
    ),
    ("rustdoc", &["rustdoc"]),
];

/// Runs `make <args>` in the module tree: it must succeed and print no
/// warning. The verdict is kept in a stamp and replayed by later runs of the
/// same key (a second clippy run would find its objects up to date and
/// print nothing).
fn hygiene(env: &Env, work: &Work, name: &str, args: &[&str]) -> Result<()> {
    let stamp = work.stamp(&format!("hygiene-{name}"));
    let verdict = match fs::read_to_string(&stamp) {
        Ok(verdict) => verdict,
        Err(_) => {
            let log = work.log(&format!("hygiene-{name}"));
            let _ = fs::remove_file(&log);
            let ran = run_logged(
                &mut make(env, work, Flavour::Module, args)?,
                &format!("make {}", args.join(" ")),
                &log,
            );
            let text = fs::read_to_string(&log).unwrap_or_default();
            let warnings: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with("warning") || l.starts_with("error"))
                .collect();
            let verdict = match (ran, warnings.first()) {
                (Err(e), _) => format!("{e:#} (see {})", log.display()),
                (Ok(()), Some(first)) => format!(
                    "{} warning(s), first: {first} (see {})",
                    warnings.len(),
                    log.display()
                ),
                (Ok(()), None) => String::new(),
            };
            fs::write(&stamp, &verdict)?;
            verdict
        }
    };
    if verdict.is_empty() {
        Ok(())
    } else {
        bail!("{verdict}")
    }
}

/// Records a case that passed or failed with an error.
fn record(report: &mut Report, name: &str, result: Result<()>) {
    match result {
        Ok(()) => report.record(name, Outcome::Pass),
        Err(e) => report.fail(name, &e),
    }
}

/// The config fragments of the RFC kernels, in the order applied.
fn fragments(checkout: &Path) -> Vec<PathBuf> {
    vec![
        checkout.join("test-kernel/kernel.config"),
        checkout.join(FRAGMENT),
    ]
}

/// The versions of the tools the kernels' build depends on.
fn toolchain(env: &Env) -> Result<Vec<String>> {
    let path = util::toolchain_path(&env.cache)?;
    let mut versions = Vec::new();
    for tool in ["rustc", "clang-22", "ld.lld-22", "bindgen", "pahole"] {
        let out = util::output(Command::new(tool).arg("--version").env("PATH", &path))
            .with_context(|| format!("`{tool} --version` failed: run `cargo xtask setup`"))?;
        versions.push(out.lines().next().unwrap_or_default().to_string());
    }
    Ok(versions)
}

/// Holds the cache's kernel build lock (one kernel build at a time).
fn build_lock(cache: &Path) -> Result<File> {
    let path = cache.join("build.lock");
    let lock = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    if lock.try_lock().is_err() {
        say!(
            "rfc: another kernel build holds {}; waiting",
            path.display()
        );
        lock.lock().context("cannot lock the kernel cache")?;
    }
    Ok(lock)
}

/// A `make` in the RFC tree with the RFC toolchain.
fn make(env: &Env, work: &Work, flavour: Flavour, args: &[&str]) -> Result<Command> {
    let mut cmd = util::kernel_make(&env.cache)?;
    cmd.env("LIBCLANG_PATH", LIBCLANG)
        .arg("-C")
        .arg(work.src())
        .arg(format!("O={}", work.build(flavour).display()))
        .args(["ARCH=x86_64", LLVM])
        .args(args);
    Ok(cmd)
}

/// Writes the kernel config of `flavour`: tinyconfig, test-kernel/kernel.config,
/// olddefconfig, then upstream/rfc.config and the sample's value, olddefconfig
/// again (EXPERT, which RUST_INLINE_HELPERS needs, must not see tinyconfig's
/// values). Rewriting an unchanged config rebuilds nothing.
fn configure(env: &Env, work: &Work, flavour: Flavour, log: &Path) -> Result<()> {
    let dir = work.build(flavour);
    fs::create_dir_all(&dir)?;
    let config = dir.join(".config");
    run_logged(
        &mut make(env, work, flavour, &["-s", "tinyconfig"])?,
        "tinyconfig",
        log,
    )?;
    let [base, rfc] = <[PathBuf; 2]>::try_from(fragments(&env.checkout)).expect("two fragments");
    let mut text = fs::read_to_string(&config)?;
    text.push_str(&fs::read_to_string(&base)?);
    fs::write(&config, &text)?;
    run_logged(
        &mut make(env, work, flavour, &["-s", "olddefconfig"])?,
        "olddefconfig",
        log,
    )?;
    let mut text = fs::read_to_string(&config)?;
    text.push_str(&fs::read_to_string(&rfc)?);
    text.push_str(&format!("CONFIG_{SAMPLE_OPTION}={}\n", flavour.value()));
    fs::write(&config, &text)?;
    run_logged(
        &mut make(env, work, flavour, &["-s", "olddefconfig"])?,
        "olddefconfig",
        log,
    )
}

/// Checks that Kconfig kept what the RFC kernels need: [`REQUIRED`], every
/// option upstream/rfc.config sets, and the sample's value.
fn check_config(env: &Env, work: &Work, flavour: Flavour, with_sample: bool) -> Result<()> {
    let config = parse_config(&fs::read_to_string(work.build(flavour).join(".config"))?);
    let fragment = parse_fragment(&fs::read_to_string(env.checkout.join(FRAGMENT))?)?;
    let mut wanted: Vec<(String, String)> = REQUIRED
        .iter()
        .map(|(o, v)| (o.to_string(), v.to_string()))
        .collect();
    for (option, want) in fragment {
        if let (Want::Value(value), false) = (want, option == SAMPLE_OPTION) {
            wanted.push((option, value));
        }
    }
    if with_sample {
        wanted.push((SAMPLE_OPTION.to_owned(), flavour.value().to_owned()));
    }
    for (option, value) in &wanted {
        if config.get(option) != Some(value) {
            bail!(
                "CONFIG_{option} is {} after olddefconfig, not {value}: the toolchain or a \
                 dependency is missing (see {})",
                config.get(option).map_or("unset", String::as_str),
                work.build(flavour).join(".config").display()
            );
        }
    }
    Ok(())
}

/// Builds the tree of `flavour` (`make -jN`).
fn build(env: &Env, work: &Work, flavour: Flavour, phase: &str, log: &Path) -> Result<()> {
    let jobs = thread::available_parallelism().map_or(2, |n| n.get());
    run_logged(
        &mut make(env, work, flavour, &[&format!("-j{jobs}")])?,
        phase,
        log,
    )
}

/// Phase 1: extract, and for each patch: apply, checkpatch, build. Returns
/// whether every patch applied and the last build succeeded (the module
/// kernel exists). The outcomes are kept in a stamp and replayed by later
/// runs of the same key.
fn series(
    env: &Env,
    work: &Work,
    source: &setup::Source,
    patches: &[Patch],
    opts: Options,
    report: &mut Report,
) -> Result<bool> {
    let stamp = work.stamp("series");
    if let Ok(text) = fs::read_to_string(&stamp) {
        println!(
            "# series: the outcomes of the run that built {}",
            work.dir.display()
        );
        let mut ok = true;
        for line in text.lines() {
            let mut fields = line.splitn(3, '\t');
            let (Some(name), Some(verdict)) = (fields.next(), fields.next()) else {
                continue;
            };
            let reason = fields.next().unwrap_or("").replace("\\n", "\n");
            if verdict == "pass" {
                report.record(name, Outcome::Pass);
            } else {
                ok &= !name.ends_with("/applies") && !name.ends_with("/builds");
                report.record(name, Outcome::fail(reason));
            }
        }
        return Ok(ok && work.build(Flavour::Module).join("vmlinux").exists());
    }

    let log = work.log("series");
    let _ = fs::remove_file(&log);
    for dir in [work.build(Flavour::Module), work.build(Flavour::Builtin)] {
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
    }
    fresh_tree(work, source, &log)?;
    let src = work.src();

    let mut outcomes: Vec<(String, Outcome)> = Vec::new();
    let mut applied_all = true;
    let mut last_build_ok = false;
    for (i, patch) in patches.iter().enumerate() {
        let case = patch.case();
        say!("rfc: [{}/{}] {}", i + 1, patches.len(), patch.subject);
        if !applied_all {
            outcomes.push((
                format!("{case}/applies"),
                Outcome::fail("not tried: an earlier patch did not apply"),
            ));
            continue;
        }
        let applied = git_am(&src, &patch.path, &log);
        outcomes.push((format!("{case}/applies"), outcome(&applied)));
        if applied.is_err() {
            let _ = git(&src, &["am", "--abort"], &log);
            applied_all = false;
            continue;
        }
        outcomes.push((
            format!("{case}/checkpatch"),
            checkpatch_outcome(&src, &patch.path),
        ));
        let last = i + 1 == patches.len();
        if opts.quick && !last {
            continue;
        }
        let built = configure(env, work, Flavour::Module, &log)
            .and_then(|()| {
                build(
                    env,
                    work,
                    Flavour::Module,
                    &format!("build {}", patch.file),
                    &log,
                )
            })
            .and_then(|()| {
                if last {
                    check_config(env, work, Flavour::Module, true)?;
                    for product in ["vmlinux", "arch/x86/boot/bzImage", SAMPLE_KO] {
                        if !work.build(Flavour::Module).join(product).exists() {
                            bail!("the build has no {product}");
                        }
                    }
                }
                Ok(())
            });
        last_build_ok = built.is_ok();
        outcomes.push((format!("{case}/builds"), outcome(&built)));
    }

    let mut text = String::new();
    for (name, outcome) in &outcomes {
        match outcome {
            Outcome::Pass => writeln!(text, "{name}\tpass")?,
            Outcome::Fail { reason, .. } | Outcome::Skip(reason) => {
                writeln!(text, "{name}\tfail\t{}", reason.replace('\n', "\\n"))?
            }
        }
    }
    for (name, outcome) in outcomes {
        report.record(&name, outcome);
    }
    let ok = applied_all && last_build_ok;
    if ok {
        fs::write(&stamp, text)?;
    }
    Ok(ok)
}

/// `--patches-only`: a fresh tree, then each patch applied and checked with
/// checkpatch; nothing is built.
fn patches_only(
    work: &Work,
    source: &setup::Source,
    patches: &[Patch],
    report: &mut Report,
) -> Result<()> {
    let log = work.log("patches");
    let _ = fs::remove_file(&log);
    fresh_tree(work, source, &log)?;
    let src = work.src();
    for patch in patches {
        let case = patch.case();
        let applied = git_am(&src, &patch.path, &log);
        report.record(&format!("{case}/applies"), outcome(&applied));
        if applied.is_err() {
            let _ = git(&src, &["am", "--abort"], &log);
            return Ok(());
        }
        report.record(
            &format!("{case}/checkpatch"),
            checkpatch_outcome(&src, &patch.path),
        );
    }
    Ok(())
}

/// Extracts linux-source-7.3 into `work.src()` and commits it once, for
/// `git am`.
fn fresh_tree(work: &Work, source: &setup::Source, log: &Path) -> Result<()> {
    let src = work.src();
    if src.exists() {
        fs::remove_dir_all(&src)?;
    }
    fs::create_dir_all(&src)?;
    let t = Instant::now();
    run_logged(&mut source.extract(&src), "extract linux-source-7.3", log)?;
    git(&src, &["init", "-q"], log)?;
    git(&src, &["add", "-f", "-A", "."], log)?;
    git(&src, &["commit", "-q", "-m", "linux-source-7.3"], log)?;
    say!("rfc: fresh source tree in {}", fmt_duration(t.elapsed()));
    Ok(())
}

fn outcome(result: &Result<()>) -> Outcome {
    match result {
        Ok(()) => Outcome::Pass,
        Err(e) => Outcome::fail(format!("{e:#}")),
    }
}

/// `git -C src` with an identity of its own, for the RFC tree.
fn git_cmd(src: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.arg("-C").arg(src).args([
        "-c",
        "user.name=xtask rfc",
        "-c",
        "user.email=rfc@localhost",
    ]);
    cmd
}

/// Runs git in the RFC tree.
fn git(src: &Path, args: &[&str], log: &Path) -> Result<()> {
    run_logged(
        git_cmd(src).args(args),
        &format!("git {}", args.first().copied().unwrap_or("")),
        log,
    )
}

fn git_am(src: &Path, patch: &Path, log: &Path) -> Result<()> {
    run_logged(git_cmd(src).args(["am", "-q"]).arg(patch), "git am", log)
}

/// Identifiers of the libdw and libdwfl API (`Dwarf_Die`, `Dwfl_Module`, ...),
/// which checkpatch's CamelCase check cannot know are a library's.
fn libdw_identifiers() -> BTreeSet<String> {
    let mut words = BTreeSet::new();
    for header in [
        "/usr/include/elfutils/libdw.h",
        "/usr/include/elfutils/libdwfl.h",
    ] {
        let text = fs::read_to_string(header).unwrap_or_default();
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if !word.is_empty() {
                words.insert(word.to_owned());
            }
        }
    }
    words
}

/// `scripts/checkpatch.pl --strict` on one patch. It passes with no finding
/// but the missing `Signed-off-by:` (left for whoever submits the series)
/// and CamelCase checks on names of the libdw API (`resolve_btfids` reads
/// DWARF with libdw, as `scripts/gendwarfksyms` does).
fn checkpatch_outcome(src: &Path, patch: &Path) -> Outcome {
    // spdxcheck.py needs Debian's python3 (python3-ply, python3-git).
    let path = format!(
        "/usr/bin:/bin:{}",
        std::env::var("PATH").unwrap_or_default()
    );
    let out = match Command::new("perl")
        .arg(src.join("scripts/checkpatch.pl"))
        .args(["--strict", "--color=never"])
        .arg(patch)
        .current_dir(src)
        .env("PATH", path)
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) => out,
        Err(e) => return Outcome::fail(format!("cannot run checkpatch.pl: {e}")),
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let log = format!("{stdout}{stderr}");
    if stderr.contains("Traceback") {
        return Outcome::fail_with_log("checkpatch's helpers failed (see the log)", log);
    }
    match checkpatch_findings(&stdout, &libdw_identifiers()) {
        None => Outcome::fail_with_log("checkpatch.pl printed no summary", log),
        Some(findings) if findings.is_empty() => Outcome::Pass,
        Some(findings) => Outcome::fail_with_log(findings.join("\n"), log),
    }
}

/// The findings of checkpatch's output that count: all but the missing
/// `Signed-off-by:` and CamelCase checks on names in `libdw`. `None` when
/// the output has no `total:` line (checkpatch did not finish).
fn checkpatch_findings(stdout: &str, libdw: &BTreeSet<String>) -> Option<Vec<String>> {
    let mut findings = Vec::new();
    let mut total = false;
    for line in stdout.lines() {
        if line.starts_with("total: ") {
            total = true;
        }
        if !(line.starts_with("ERROR:")
            || line.starts_with("WARNING:")
            || line.starts_with("CHECK:"))
        {
            continue;
        }
        if line == "ERROR: Missing Signed-off-by: line(s)" {
            continue;
        }
        if let Some(word) = line
            .strip_prefix("CHECK: Avoid CamelCase: <")
            .and_then(|w| w.strip_suffix('>'))
        {
            if libdw.contains(word) {
                continue;
            }
        }
        findings.push(line.to_owned());
    }
    total.then_some(findings)
}

/// Phase 2: the kernel with the sample built in, from a copy of the module
/// build (so only what the option touches is rebuilt).
fn builtin(env: &Env, work: &Work) -> Result<()> {
    let stamp = work.stamp("builtin");
    if stamp.exists() {
        return Ok(());
    }
    let (from, to) = (work.build(Flavour::Module), work.build(Flavour::Builtin));
    if to.exists() {
        fs::remove_dir_all(&to)?;
    }
    let log = work.log("builtin");
    run_logged(
        Command::new("cp").arg("-a").arg(&from).arg(&to),
        "copy the module build",
        &log,
    )?;
    fs::remove_file(to.join(SAMPLE_KO))?;
    configure(env, work, Flavour::Builtin, &log)?;
    check_config(env, work, Flavour::Builtin, true)?;
    build(env, work, Flavour::Builtin, "build (sample built in)", &log)?;
    if to.join(SAMPLE_KO).exists() {
        bail!("{SAMPLE_KO} was built although the sample is built in");
    }
    let map = fs::read_to_string(to.join("System.map"))?;
    for (rust, _) in TWINS {
        if !map.lines().any(|l| l.ends_with(&format!(" {rust}"))) {
            bail!("{rust} is not in vmlinux's System.map");
        }
    }
    fs::write(stamp, "")?;
    Ok(())
}

/// Builds the kernel's own `test_progs` with this test only, against the
/// module kernel; returns its directory.
///
/// A whole `make -C tools/testing/selftests/bpf` compiles about 900 BPF
/// programs and 600 tests, for the options of
/// tools/testing/selftests/bpf/config, which the RFC kernels (tinyconfig
/// plus what the project needs) mostly lack: much of it does not compile
/// against their vmlinux.h. So the runner is built with its test list and
/// its program list pointed at two directories that link this test's files
/// (`TRUNNER_TESTS_DIR`, `TRUNNER_BPF_PROGS_DIR`): the same Makefile, the
/// same test_progs.c, test_loader.c and helpers, the same skeletons, only
/// fewer tests. `BPF_STRICT_BUILD=0` lets the test modules (bpf_testmod)
/// fail to build; test_progs skips what needs them, this test does not.
fn selftests(env: &Env, work: &Work) -> Result<PathBuf> {
    let out = work.dir.join("selftests");
    let stamp = work.stamp("selftests");
    if stamp.exists() && out.join("test_progs").exists() {
        return Ok(out);
    }
    let sel = work.src().join("tools/testing/selftests/bpf");
    let tests = sel.join("rfc_prog_tests");
    let progs = sel.join("rfc_progs");
    for dir in [&tests, &progs] {
        if dir.exists() {
            fs::remove_dir_all(dir)?;
        }
        fs::create_dir_all(dir)?;
    }
    let link = |from: &str, dir: &Path, name: &str| -> Result<()> {
        std::os::unix::fs::symlink(format!("../{from}/{name}"), dir.join(name))
            .with_context(|| format!("cannot link {name} into {}", dir.display()))
    };
    link("prog_tests", &tests, &format!("{TEST_NAME}.c"))?;
    // test_progs.c includes <prog_tests/tests.h>, the list of tests the
    // Makefile generates in TRUNNER_TESTS_DIR: make it this directory's.
    let list = sel.join("prog_tests/tests.h");
    if list.symlink_metadata().is_ok() {
        fs::remove_file(&list)?;
    }
    std::os::unix::fs::symlink("../rfc_prog_tests/tests.h", &list)
        .with_context(|| format!("cannot link {}", list.display()))?;
    for entry in fs::read_dir(sel.join("progs"))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".h")
            || name.starts_with(&format!("{TEST_NAME}_")) && name.ends_with(".c")
        {
            link("progs", &progs, &name)?;
        }
    }
    fs::create_dir_all(&out)?;
    let kdir = work.build(Flavour::Module);
    let log = work.log("selftests");
    let jobs = thread::available_parallelism().map_or(2, |n| n.get());
    let mut cmd = util::kernel_make(&env.cache)?;
    cmd.env("LIBCLANG_PATH", LIBCLANG)
        .arg("-C")
        .arg(&sel)
        .arg(format!("-j{jobs}"))
        .arg(format!("O={}", kdir.display()))
        .arg(format!("OUTPUT={}", out.display()))
        .arg(format!("VMLINUX_BTF={}", kdir.join("vmlinux").display()))
        .args([
            // The test modules (bpf_testmod) are kernel modules: built with
            // the kernel's compiler, not the host's gcc.
            "LLVM=-22",
            // No JIT disassembly (test_progs' `__jited` checks, which this
            // test does not use): it needs libLLVM's C headers.
            "feature-llvm=0",
            "CLANG=clang-22",
            "LLC=llc-22",
            "LLVM_STRIP=llvm-strip-22",
            "BPF_STRICT_BUILD=0",
            "TRUNNER_TESTS_DIR=rfc_prog_tests",
            "TRUNNER_BPF_PROGS_DIR=rfc_progs",
            "LSKELS=",
            "LSKELS_EXTRA=",
            "LSKELS_SIGNED=",
            "LINKED_SKELS=",
        ])
        .arg(out.join("test_progs"));
    run_logged(&mut cmd, "build test_progs", &log)?;
    for product in [
        "test_progs".to_owned(),
        format!("{TEST_NAME}_success.bpf.o"),
        format!("{TEST_NAME}_failure.bpf.o"),
    ] {
        if !out.join(&product).exists() {
            bail!(
                "the selftests build made no {product}; see {}",
                log.display()
            );
        }
    }
    fs::write(stamp, "")?;
    Ok(out)
}

/// One BTF type, as `bpftool btf dump` prints it (raw format).
#[derive(Clone, Debug, Default)]
struct BtfType {
    kind: String,
    name: String,
    /// `type_id=` (or `ret_type_id=` of a FUNC_PROTO)
    type_id: u32,
    /// FUNC_PROTO parameters' types.
    params: Vec<u32>,
    /// DECL_TAG `component_idx=`
    component_idx: i64,
}

/// Parses `bpftool btf dump file X` (raw) into id -> type.
fn parse_btf_dump(text: &str, types: &mut BTreeMap<u32, BtfType>) {
    let mut last_proto: Option<u32> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix('\t') {
            if let (Some(id), Some(ty)) = (last_proto, field(rest, "type_id")) {
                if let Some(t) = types.get_mut(&id) {
                    t.params.push(ty as u32);
                }
            }
            continue;
        }
        let Some(rest) = line.strip_prefix('[') else {
            continue;
        };
        let Some((id, rest)) = rest.split_once("] ") else {
            continue;
        };
        let Ok(id) = id.parse::<u32>() else {
            continue;
        };
        let mut words = rest.splitn(2, ' ');
        let kind = words.next().unwrap_or("").to_owned();
        let rest = words.next().unwrap_or("");
        let name = rest
            .strip_prefix('\'')
            .and_then(|r| r.split_once('\''))
            .map(|(n, _)| n.to_owned())
            .unwrap_or_default();
        let type_id = field(rest, "ret_type_id")
            .or_else(|| field(rest, "type_id"))
            .unwrap_or(0) as u32;
        let component_idx = field(rest, "component_idx").unwrap_or(0);
        last_proto = (kind == "FUNC_PROTO").then_some(id);
        types.insert(
            id,
            BtfType {
                kind,
                name,
                type_id,
                params: Vec::new(),
                component_idx,
            },
        );
    }
}

/// The value of ` key=N` in a bpftool line.
fn field(text: &str, key: &str) -> Option<i64> {
    let at = text.find(&format!(" {key}="))?;
    let value = &text[at + key.len() + 2..];
    value.split_whitespace().next()?.parse().ok()
}

/// The C spelling of a type with typedefs resolved (`struct task_struct *`,
/// `int`), which is what the verifier compares.
fn render(types: &BTreeMap<u32, BtfType>, id: u32) -> String {
    if id == 0 {
        return "void".into();
    }
    let Some(t) = types.get(&id) else {
        return format!("<type {id}>");
    };
    match t.kind.as_str() {
        "PTR" => format!("{} *", render(types, t.type_id)),
        "CONST" => format!("const {}", render(types, t.type_id)),
        "VOLATILE" => format!("volatile {}", render(types, t.type_id)),
        "TYPEDEF" | "TYPE_TAG" => render(types, t.type_id),
        "STRUCT" | "FWD" => format!("struct {}", t.name),
        "UNION" => format!("union {}", t.name),
        "ENUM" | "ENUM64" => format!("enum {}", t.name),
        _ => t.name.clone(),
    }
}

/// `ret (arg, ...)` of a FUNC, without parameter names.
fn prototype(types: &BTreeMap<u32, BtfType>, func: u32) -> String {
    let Some(proto) = types.get(&func).and_then(|f| types.get(&f.type_id)) else {
        return "<no FUNC_PROTO>".into();
    };
    let params: Vec<String> = proto.params.iter().map(|&p| render(types, p)).collect();
    format!("{} ({})", render(types, proto.type_id), params.join(", "))
}

fn bpftool_dump(args: &[&std::ffi::OsStr]) -> Result<String> {
    util::output(Command::new("bpftool").args(args))
}

/// Phase 3 (BTF): each Rust kfunc of the sample has a `FUNC` in the BTF of
/// the object that defines it (the module, or vmlinux), with exactly one
/// `bpf_kfunc` tag, and the prototype of its C twin.
fn btf_checks(env: &Env, work: &Work, flavour: Flavour, report: &mut Report) {
    let _ = env;
    let kdir = work.build(flavour);
    let vmlinux = kdir.join("vmlinux");
    let mut types = BTreeMap::new();
    let mut own = BTreeMap::new();
    let dumped = (|| -> Result<()> {
        let base = bpftool_dump(&[
            "btf".as_ref(),
            "dump".as_ref(),
            "file".as_ref(),
            vmlinux.as_os_str(),
        ])?;
        parse_btf_dump(&base, &mut types);
        match flavour {
            Flavour::Builtin => own = types.clone(),
            Flavour::Module => {
                let ko = kdir.join(SAMPLE_KO);
                let split = bpftool_dump(&[
                    "-B".as_ref(),
                    vmlinux.as_os_str(),
                    "btf".as_ref(),
                    "dump".as_ref(),
                    "file".as_ref(),
                    ko.as_os_str(),
                ])?;
                parse_btf_dump(&split, &mut own);
                types.extend(own.clone());
            }
        }
        Ok(())
    })();
    for (rust, c) in TWINS {
        let name = format!("rfc/btf/{}/{rust}", flavour.name());
        if let Err(e) = &dumped {
            report.fail(&name, e);
            continue;
        }
        let func = |map: &BTreeMap<u32, BtfType>, n: &str| -> Vec<u32> {
            map.iter()
                .filter(|(_, t)| t.kind == "FUNC" && t.name == n)
                .map(|(id, _)| *id)
                .collect()
        };
        let rust_ids = func(&own, rust);
        let c_ids = func(&types, c);
        let outcome = match (rust_ids.as_slice(), c_ids.as_slice()) {
            ([id], [c_id]) => {
                let tags = own
                    .values()
                    .filter(|t| {
                        t.kind == "DECL_TAG"
                            && t.name == "bpf_kfunc"
                            && t.type_id == *id
                            && t.component_idx == -1
                    })
                    .count();
                let (rp, cp) = (prototype(&types, *id), prototype(&types, *c_id));
                if tags != 1 {
                    Outcome::fail(format!(
                        "FUNC {rust} [{id}] has {tags} bpf_kfunc tags, not 1"
                    ))
                } else if rp != cp {
                    Outcome::fail(format!(
                        "FUNC {rust} is `{rp}` but its C twin {c} is `{cp}`"
                    ))
                } else {
                    println!("# {rust} [{id}]: {rp}, tagged bpf_kfunc, as {c}");
                    Outcome::Pass
                }
            }
            (r, c_found) => Outcome::fail(format!(
                "FUNCs named {rust} in the {} BTF: {}; named {c} in vmlinux: {}",
                flavour.name(),
                r.len(),
                c_found.len()
            )),
        };
        report.record(&name, outcome);
    }
}

/// Calls a Rust kfunc must not make: into a C helper (`rust_helper_*`,
/// which its C twin has inlined) or into Rust code of another crate (`_R`
/// symbols: code C would have inlined or not needed).
fn forbidden_call(call: &str) -> bool {
    let target = call.split_whitespace().nth(1).unwrap_or("");
    target.starts_with("rust_helper_") || target.starts_with("_R")
}

/// Phase 4: the sample's kfuncs beside their C twins, as `cargo xtask bench`
/// shows the out-of-tree module's, and no out-of-line call C inlines.
///
/// Returns the table and each function's listing, as Markdown, for
/// `target/xtask/rfc-code.md`.
fn zero_cost(work: &Work, flavour: Flavour, report: &mut Report) -> String {
    let kdir = work.build(flavour);
    let vmlinux = kdir.join("vmlinux");
    let object = match flavour {
        Flavour::Module => kdir.join(SAMPLE_KO),
        Flavour::Builtin => vmlinux.clone(),
    };
    let mut table = format!(
        "| Rust kfunc ({}) | instr. | calls | C twin | instr. | calls |\n|---|---|---|---|---|---|\n",
        flavour.name()
    );
    for (rust, c) in TWINS {
        let name = format!("rfc/zero_cost/{}/{rust}", flavour.name());
        let code =
            bench::objdump(&object, rust).and_then(|r| Ok((r, bench::objdump(&vmlinux, c)?)));
        let (r, cc): (Code, Code) = match code {
            Ok(code) => code,
            Err(e) => {
                report.fail(&name, &e);
                continue;
            }
        };
        let _ = writeln!(
            table,
            "| `{rust}` | {} | {} | `{c}` | {} | {} |",
            r.instructions,
            bench::calls(&r),
            cc.instructions,
            bench::calls(&cc)
        );
        let bad: Vec<&String> = r.calls.iter().filter(|c| forbidden_call(c)).collect();
        if bad.is_empty() {
            report.record(&name, Outcome::Pass);
        } else {
            report.record(
                &name,
                Outcome::fail_with_log(
                    format!(
                        "{rust} calls {}: code its C twin {c} has inline",
                        bad.iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    r.listing.join("\n"),
                ),
            );
        }
    }
    for line in table.lines() {
        println!("# {line}");
    }
    let mut text = format!(
        "## The sample {}\n\n{table}\n",
        match flavour {
            Flavour::Module => "as a module",
            Flavour::Builtin => "built in",
        }
    );
    for name in TWINS.iter().flat_map(|(r, c)| [*r, *c]) {
        let file = if name.starts_with("rust_") {
            &object
        } else {
            &vmlinux
        };
        if let Ok(code) = bench::objdump(file, name) {
            let _ = writeln!(
                text,
                "### `{name}`\n\n```\n{}\n```\n",
                code.listing.join("\n")
            );
        }
    }
    text
}

/// Phase 5: boots the kernel, loads the sample (module kernel), runs
/// `test_progs -t rust_task_kfuncs`, and judges the kernel log.
fn guest(env: &Env, work: &Work, flavour: Flavour, selftests: Option<&Path>, report: &mut Report) {
    let f = flavour.name();
    let kdir = work.build(flavour);
    let mut script = String::from("set -u\necho \"rfc: uname $(uname -r)\"\n");
    if flavour == Flavour::Module {
        let _ = writeln!(
            script,
            "if insmod {}; then echo 'rfc: insmod ok'; else echo \"rfc: insmod failed: $?\"; fi",
            shell_quote(&kdir.join(SAMPLE_KO).to_string_lossy())
        );
    }
    script.push_str("echo \"rfc: btf $(ls /sys/kernel/btf | tr '\\n' ' ')\"\n");
    if let Some(dir) = selftests {
        let _ = writeln!(
            script,
            "cd {} && ./test_progs -t {TEST_NAME}; echo \"rfc: test_progs exit $?\"",
            shell_quote(&dir.to_string_lossy())
        );
    }
    script.push_str("echo 'rfc: dmesg begin'; dmesg; echo 'rfc: dmesg end'\n");

    let mut opts = vm::VmOptions::new(kdir.clone(), false);
    opts.cpus = Some(2);
    opts.echo_prefix = "# ";
    let ran = vm::run(&env.cache, &opts, &script);
    let stdout = match ran {
        Ok(outcome) => {
            println!(
                "# {f}: the command started {:.1} s after boot began",
                outcome.boot_time.as_secs_f64()
            );
            report.record(&format!("rfc/{f}/boot"), Outcome::Pass);
            outcome.stdout
        }
        Err(e) => {
            report.fail(&format!("rfc/{f}/boot"), &e);
            return;
        }
    };

    if flavour == Flavour::Module {
        let loaded = stdout.contains("rfc: insmod ok");
        report.record(
            &format!("rfc/{f}/insmod"),
            if loaded {
                Outcome::Pass
            } else {
                Outcome::fail_with_log("insmod failed", stdout.clone())
            },
        );
        let visible = stdout
            .lines()
            .find_map(|l| l.strip_prefix("rfc: btf "))
            .is_some_and(|l| l.split_whitespace().any(|m| m == SAMPLE_MODULE));
        report.record(
            &format!("rfc/{f}/module_btf"),
            if visible {
                Outcome::Pass
            } else {
                Outcome::fail(format!("/sys/kernel/btf/{SAMPLE_MODULE} is missing"))
            },
        );
    }

    if selftests.is_some() {
        test_progs_cases(f, &stdout, report);
    } else {
        report.record(
            &format!("rfc/{f}/test_progs"),
            Outcome::fail("test_progs was not built (see rfc/selftests/build)"),
        );
    }

    let dmesg: String = stdout
        .lines()
        .skip_while(|l| *l != "rfc: dmesg begin")
        .skip(1)
        .take_while(|l| *l != "rfc: dmesg end")
        .map(|l| format!("{l}\n"))
        .collect();
    let findings = kernel_log::findings(&dmesg);
    report.record(
        &format!("rfc/{f}/kernel_log"),
        if dmesg.is_empty() {
            Outcome::fail("the guest printed no kernel log")
        } else if findings.is_empty() {
            Outcome::Pass
        } else {
            Outcome::fail_with_log(
                findings
                    .iter()
                    .map(|f| f.line.clone())
                    .collect::<Vec<_>>()
                    .join("\n"),
                dmesg,
            )
        },
    );
}

/// One case per subtest of `test_progs -t rust_task_kfuncs`, from lines such
/// as `#312/4    rust_task_kfuncs/rust_task_acquire_null:OK`, and one for
/// the run: it must have run and exited 0.
fn test_progs_cases(f: &str, stdout: &str, report: &mut Report) {
    let prefix = format!("{TEST_NAME}/");
    let mut subtests = 0;
    for line in stdout.lines() {
        let Some(rest) = line.strip_prefix('#') else {
            continue;
        };
        let Some((_, result)) = rest.split_once(char::is_whitespace) else {
            continue;
        };
        let Some(result) = result.trim().strip_prefix(&prefix) else {
            continue;
        };
        let Some((sub, verdict)) = result.rsplit_once(':') else {
            continue;
        };
        subtests += 1;
        let name = format!("rfc/{f}/test_progs/{sub}");
        match verdict {
            "OK" => report.record(&name, Outcome::Pass),
            "SKIP" => report.record(&name, Outcome::Skip("test_progs skipped it".into())),
            _ => report.record(
                &name,
                Outcome::fail_with_log(format!("test_progs: {verdict}"), stdout.to_owned()),
            ),
        }
    }
    let exit = stdout
        .lines()
        .find_map(|l| l.strip_prefix("rfc: test_progs exit "))
        .map(str::trim);
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("Summary: "))
        .unwrap_or("no summary");
    report.record(
        &format!("rfc/{f}/test_progs"),
        match exit {
            Some("0") if subtests > 0 && !summary.contains(", 1 SKIPPED") => Outcome::Pass,
            Some(code) => Outcome::fail_with_log(
                format!("test_progs exited {code}, {subtests} subtests, {summary}"),
                stdout.to_owned(),
            ),
            None => Outcome::fail_with_log("test_progs did not finish", stdout.to_owned()),
        },
    );
}

/// `PAHOLE_FLAGS` of the kernel in `kdir`, as scripts/Makefile.btf sets them
/// for the pahole in use, read from Kbuild itself.
fn pahole_flags(env: &Env, work: &Work) -> Result<Vec<String>> {
    let out = util::output(
        make(
            env,
            work,
            Flavour::Module,
            &[
                "-s",
                "--no-print-directory",
                "--eval=rfc-pahole-flags: ; @echo $(PAHOLE_FLAGS)",
                "rfc-pahole-flags",
            ],
        )?
        .stdin(Stdio::null()),
    )?;
    let flags: Vec<String> = out
        .lines()
        .last()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    if flags.is_empty() {
        bail!("Kbuild printed no PAHOLE_FLAGS");
    }
    Ok(flags)
}

/// `resolve_btfids --btf_base vmlinux --btf <detached BTF> <ko>`, as
/// scripts/gen-btf.sh runs it: writes `<ko>.BTF` (deduplicated, sorted).
fn resolve_btfids(work: &Work, vmlinux: &Path, btf: &Path, ko: &Path) -> Result<()> {
    let tool = work
        .build(Flavour::Module)
        .join("tools/bpf/resolve_btfids/resolve_btfids");
    util::run(
        Command::new(tool)
            .arg("--btf_base")
            .arg(vmlinux)
            .arg("--btf")
            .arg(btf)
            .arg(ko),
    )
}

/// Phase 3 (btfgen): the BTF the in-tree mechanism writes for the sample
/// module equals what btfgen, the out-of-tree tool, writes for it, type by
/// type.
///
/// Both start from the module as Kbuild links it, before its BTF step
/// (relinked here with Kbuild's own command), and from the same pahole
/// output (which skips Rust): resolve_btfids encodes the Rust kfuncs from
/// DWARF; btfgen adds them to pahole's BTF, which resolve_btfids then only
/// tags, deduplicates and sorts. The two results must print the same with
/// `bpftool btf dump`; the first must also be the BTF the build put in the
/// module.
fn btfgen_equal(env: &Env, work: &Work) -> Result<()> {
    let kdir = work.build(Flavour::Module);
    let vmlinux = kdir.join("vmlinux");
    let dir = work.dir.join("btfgen-check");
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    fs::create_dir_all(&dir)?;

    let cmd_file = kdir.join("samples/rust/.rust_task_kfuncs.ko.cmd");
    let saved = fs::read_to_string(&cmd_file)
        .with_context(|| format!("cannot read {}", cmd_file.display()))?;
    let link = saved
        .lines()
        .find_map(|l| l.strip_prefix(&format!("savedcmd_{SAMPLE_KO} := ")))
        .with_context(|| format!("no link command in {}", cmd_file.display()))?;
    let pre = dir.join("pre.ko");
    let output = format!("-o {SAMPLE_KO} ");
    if !link.contains(&output) {
        bail!(
            "the link command in {} has no `{output}`",
            cmd_file.display()
        );
    }
    let link = link.replacen(&output, &format!("-o {} ", pre.display()), 1);
    util::run(
        Command::new("sh")
            .args(["-c", &link])
            .current_dir(&kdir)
            .env("PATH", util::toolchain_path(&env.cache)?),
    )
    .context("relinking the module")?;

    let flags = pahole_flags(env, work)?;
    let pahole = |ko: &Path, detached: Option<&Path>| -> Result<()> {
        let mut cmd = Command::new("pahole");
        cmd.arg("-J").args(&flags).arg("--btf_base").arg(&vmlinux);
        if let Some(file) = detached {
            cmd.arg(format!("--btf_encode_detached={}", file.display()));
        }
        // pahole reports the Rust DWARF it skips on stderr: not an error.
        util::output(cmd.arg(ko).stderr(Stdio::null())).map(|_| ())
    };

    let a = dir.join("in-tree.ko");
    fs::copy(&pre, &a)?;
    let a_btf = dir.join("in-tree.ko.BTF.1");
    pahole(&a, Some(&a_btf))?;
    resolve_btfids(work, &vmlinux, &a_btf, &a).context("resolve_btfids (in-tree)")?;

    let b = dir.join("btfgen.ko");
    fs::copy(&pre, &b)?;
    pahole(&b, None)?;
    util::run(
        Command::new("cargo")
            .args(["build", "--release", "--quiet", "-p", "btfgen"])
            .current_dir(&env.checkout),
    )?;
    util::run(
        Command::new(env.checkout.join("target/release/btfgen"))
            .args(["--quiet", "--objcopy", "llvm-objcopy-22", "--base"])
            .arg(&vmlinux)
            .arg(&b),
    )
    .context("btfgen")?;
    let b_btf = dir.join("btfgen.ko.BTF.1");
    util::run(
        Command::new("llvm-objcopy-22")
            .arg(format!("--dump-section=.BTF={}", b_btf.display()))
            .arg(&b),
    )?;
    resolve_btfids(work, &vmlinux, &b_btf, &b).context("resolve_btfids (btfgen's)")?;

    let dump = |file: &Path| -> Result<String> {
        bpftool_dump(&[
            "-B".as_ref(),
            vmlinux.as_os_str(),
            "btf".as_ref(),
            "dump".as_ref(),
            "file".as_ref(),
            file.as_os_str(),
        ])
    };
    let in_tree = dump(&dir.join("in-tree.ko.BTF"))?;
    let btfgen = dump(&dir.join("btfgen.ko.BTF"))?;
    let built = dump(&kdir.join(SAMPLE_KO))?;
    fs::write(dir.join("in-tree.txt"), &in_tree)?;
    fs::write(dir.join("btfgen.txt"), &btfgen)?;
    fs::write(dir.join("built.txt"), &built)?;
    let first_difference = |x: &str, y: &str| -> Option<String> {
        let (xl, yl): (Vec<&str>, Vec<&str>) = (x.lines().collect(), y.lines().collect());
        (0..xl.len().max(yl.len()))
            .find(|&i| xl.get(i) != yl.get(i))
            .map(|i| {
                format!(
                    "line {}: `{}` vs `{}`",
                    i + 1,
                    xl.get(i).unwrap_or(&"<end>"),
                    yl.get(i).unwrap_or(&"<end>")
                )
            })
    };
    if let Some(diff) = first_difference(&in_tree, &btfgen) {
        bail!(
            "resolve_btfids' BTF and btfgen's differ ({} and {} types), first at {diff}; \
             dumps in {}",
            in_tree.lines().filter(|l| l.starts_with('[')).count(),
            btfgen.lines().filter(|l| l.starts_with('[')).count(),
            dir.display()
        );
    }
    if let Some(diff) = first_difference(&in_tree, &built) {
        bail!(
            "the module's BTF is not what resolve_btfids writes on its relinked object, \
             first at {diff}; dumps in {}",
            dir.display()
        );
    }
    println!(
        "# btfgen and resolve_btfids: {} types, the same, type by type",
        in_tree.lines().filter(|l| l.starts_with('[')).count()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpatch_allows_only_the_sign_off_and_libdw_names() {
        let libdw: BTreeSet<String> = ["Dwarf_Die".to_owned()].into();
        let clean = "ERROR: Missing Signed-off-by: line(s)\n\
                     CHECK: Avoid CamelCase: <Dwarf_Die>\n\
                     total: 1 errors, 0 warnings, 1 checks, 10 lines checked\n";
        assert_eq!(checkpatch_findings(clean, &libdw), Some(vec![]));
        let dirty = "CHECK: Avoid CamelCase: <MyType>\n\
                     WARNING: line length of 101 exceeds 100 columns\n\
                     total: 0 errors, 1 warnings, 1 checks, 10 lines checked\n";
        assert_eq!(
            checkpatch_findings(dirty, &libdw),
            Some(vec![
                "CHECK: Avoid CamelCase: <MyType>".to_owned(),
                "WARNING: line length of 101 exceeds 100 columns".to_owned()
            ])
        );
        assert_eq!(checkpatch_findings("ERROR: x\n", &libdw), None);
    }

    const DUMP: &str = "\
[1] INT 'int' size=4 bits_offset=0 nr_bits=32 encoding=SIGNED
[2] TYPEDEF 's32' type_id=1
[3] STRUCT 'task_struct' size=9000 vlen=2
\t'pid' type_id=1 bits_offset=0
\t'tgid' type_id=1 bits_offset=32
[4] PTR '(anon)' type_id=3
[5] FUNC_PROTO '(anon)' ret_type_id=4 vlen=1
\t'pid' type_id=2
[6] FUNC 'bpf_task_from_pid' type_id=5 linkage=static
[7] FUNC_PROTO '(anon)' ret_type_id=4 vlen=1
\t'pid' type_id=1
[8] FUNC 'rust_task_from_pid' type_id=7 linkage=static
[9] DECL_TAG 'bpf_kfunc' type_id=8 component_idx=-1
";

    #[test]
    fn btf_prototypes_compare_with_typedefs_resolved() {
        let mut types = BTreeMap::new();
        parse_btf_dump(DUMP, &mut types);
        assert_eq!(types[&5].params, vec![2]);
        assert_eq!(types[&9].component_idx, -1);
        assert_eq!(types[&9].type_id, 8);
        assert_eq!(prototype(&types, 6), "struct task_struct * (int)");
        assert_eq!(prototype(&types, 6), prototype(&types, 8));
    }

    #[test]
    fn test_progs_subtests_become_cases() {
        let out = "#12/1    rust_task_kfuncs/rust_task_acquire_null:OK\n\
                   #12/2    rust_task_kfuncs/attached/rust_task_from_pid_arg:FAIL\n\
                   #12      rust_task_kfuncs:FAIL\n\
                   Summary: 0/1 PASSED, 0 SKIPPED, 1 FAILED\n\
                   rfc: test_progs exit 1\n";
        let mut report = Report::default();
        test_progs_cases("module", out, &mut report);
        assert!(!report.is_empty());
        let ok = report.finish(Path::new("/dev/null"), None).expect("finish");
        assert!(!ok, "a failed subtest and exit 1 fail the run");
    }

    #[test]
    fn subjects_are_unfolded_without_their_prefix() {
        let mail = "From x\nSubject: [RFC PATCH 01/11] rust: bindgen: keep the alignment of struct\n sched_statistics\n\nbody\n";
        assert_eq!(
            subject(mail).as_deref(),
            Some("rust: bindgen: keep the alignment of struct sched_statistics")
        );
    }

    #[test]
    fn only_helpers_and_rust_code_are_forbidden_calls() {
        assert!(forbidden_call("call rust_helper_refcount_inc_not_zero"));
        assert!(forbidden_call("call _RNvNtCs1_6kernel4task4find"));
        assert!(!forbidden_call("call find_pid_ns"));
        assert!(!forbidden_call("jmp put_task_struct_rcu_user"));
    }
}
