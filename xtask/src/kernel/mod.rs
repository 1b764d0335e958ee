// SPDX-License-Identifier: GPL-2.0

//! `cargo xtask kernel`: the test kernels, one per kernel line ([`Line`])
//! and flavour ([`Flavour`]), built once per set of inputs and kept in the
//! cache directory.
//!
//! Layout under the cache directory (`<tag>` is empty for 6.12, the default
//! line, and `7.3-` for 7.3):
//! - `src-<tag><srckey>/`: Debian's `linux-source-<line>` tarball extracted,
//!   with `test-kernel/patches/<line>/*.patch` applied in order. Key:
//!   package version + patches.
//! - `build-<tag><flavour>-<key>/`: the `O=` build tree. Key: the source
//!   key's inputs + the config fragment(s) + the toolchain versions. It
//!   becomes usable only once `xtask-ok` is written after a successful
//!   build, so an interrupted build is resumed, never used.

pub mod config;
pub mod key;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::setup::{self, Source};
use crate::util::{self, fmt_duration, run_logged};
use crate::{say, Env};
use config::verify_config;
use key::{build_dir, key_inputs, source_key, KeyInputs};

/// Written into the build directory once the build succeeded.
const STAMP: &str = "xtask-ok";

/// A kernel line the test kernels are built from: a Debian source package
/// (`linux-source-<line>`) and the patch series `test-kernel/patches/<line>/`.
/// Both lines use the same config fragments and toolchain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Line {
    /// 6.12 LTS (the default): Debian 12's linux-source-6.12.
    #[value(name = "6.12")]
    V6_12,
    /// 7.3: linux-source-7.3 from Debian's trixie-backports.
    #[value(name = "7.3")]
    V7_3,
}

impl Line {
    /// Every supported line, oldest first.
    pub const ALL: [Line; 2] = [Line::V6_12, Line::V7_3];

    /// `6.12`, `7.3`: the name `--kernel` takes and the patch directory's.
    pub fn name(self) -> &'static str {
        match self {
            Line::V6_12 => "6.12",
            Line::V7_3 => "7.3",
        }
    }

    /// Debian's source package of the line.
    pub fn source_package(self) -> &'static str {
        match self {
            Line::V6_12 => "linux-source-6.12",
            Line::V7_3 => "linux-source-7.3",
        }
    }

    /// `test-kernel/patches/<line>`, relative to the checkout.
    pub fn patch_dir(self) -> PathBuf {
        Path::new("test-kernel/patches").join(self.name())
    }

    /// Options of the config fragments (shared by every line) that this
    /// line's Kconfig does not have, so cannot keep.
    pub fn absent_options(self) -> &'static [&'static str] {
        match self {
            Line::V6_12 => &[],
            // /proc/sys is part of CONFIG_SYSCTL in 7.x.
            Line::V7_3 => &["PROC_SYSCTL"],
        }
    }

    /// Put in front of the key in the cache's directory names, so that two
    /// lines' builds are told apart (and older builds of one line are not
    /// offered for removal when the other line is built). 6.12, the default
    /// line, has none.
    fn dir_tag(self) -> &'static str {
        match self {
            Line::V6_12 => "",
            Line::V7_3 => "7.3-",
        }
    }
}

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A built test kernel.
#[derive(Clone, Debug)]
pub struct Kernel {
    pub line: Line,
    pub flavour: Flavour,
    /// The `O=` build directory: `vmlinux`, `arch/x86/boot/bzImage`, the
    /// tree `make KDIR=` builds modules against.
    pub dir: PathBuf,
}

impl Kernel {
    pub fn is_debug(&self) -> bool {
        self.flavour == Flavour::Debug
    }

    /// `7.3 debug`, for reports.
    pub fn describe(&self) -> String {
        format!("{} {}", self.line, self.flavour.name())
    }
}

/// Which kernel to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// `test-kernel/kernel.config` over tinyconfig.
    Normal,
    /// `test-kernel/kernel.config` then `test-kernel/kernel-debug.config`: KASAN, lockdep,
    /// PROVE_RCU, kmemleak.
    Debug,
}

impl Flavour {
    pub fn new(debug: bool) -> Self {
        if debug {
            Flavour::Debug
        } else {
            Flavour::Normal
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Flavour::Normal => "normal",
            Flavour::Debug => "debug",
        }
    }

    /// The config fragments, applied in this order (the same for every
    /// line).
    pub fn fragments(self, checkout: &Path) -> Vec<PathBuf> {
        let dir = checkout.join("test-kernel");
        match self {
            Flavour::Normal => vec![dir.join("kernel.config")],
            Flavour::Debug => vec![dir.join("kernel.config"), dir.join("kernel-debug.config")],
        }
    }
}

/// Whether the build directory holds a finished build.
fn is_built(dir: &Path) -> bool {
    dir.join(STAMP).exists()
}

/// `cargo xtask kernel`: builds the kernel of `line` and `flavour` if
/// needed.
pub fn ensure_built(env: &Env, line: Line, flavour: Flavour) -> Result<Kernel> {
    let (checkout, cache) = (env.checkout.as_path(), env.cache.as_path());
    setup::ensure(env)?;
    let source = setup::source(env, line)?;
    let inputs = key_inputs(env, line, &source, flavour)?;
    let dir = build_dir(cache, line.dir_tag(), flavour, &inputs);
    let kernel = Kernel {
        line,
        flavour,
        dir: dir.clone(),
    };
    if is_built(&dir) {
        return Ok(kernel);
    }

    // One kernel build at a time per cache: two would share the source tree
    // and fight over two cores anyway.
    fs::create_dir_all(cache).with_context(|| format!("cannot create {}", cache.display()))?;
    let lock_path = cache.join("build.lock");
    let lock = File::create(&lock_path)
        .with_context(|| format!("cannot create {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        say!(
            "kernel: another xtask is building a kernel in {}; waiting",
            cache.display()
        );
        lock.lock().context("cannot lock the kernel cache")?;
    }
    if is_built(&dir) {
        return Ok(kernel);
    }

    let free = util::free_bytes(cache)?;
    let needed: u64 = 6 << 30;
    if free < needed {
        bail!(
            "only {} MiB free in {}; a kernel build needs about {} GiB (source + build tree). \
             Free some space (old builds: `rm -rf {}/build-*`) or point TASK_KFUNCS_CACHE at a bigger disk.",
            free >> 20,
            cache.display(),
            needed >> 30,
            cache.display()
        );
    }

    let start = Instant::now();
    say!(
        "kernel: building the {} kernel in {}",
        kernel.describe(),
        dir.display()
    );
    say!("kernel: this takes about 10 minutes on 2 cores (debug: 12); later runs reuse it");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let log = dir.join("xtask-build.log");
    let src = ensure_source(checkout, cache, line, &source, &inputs, &log)?;

    let make = |args: &[&str]| -> Result<Command> {
        let mut cmd = util::kernel_make(cache)?;
        cmd.arg("-C")
            .arg(&src)
            .arg(format!("O={}", dir.display()))
            .args(["ARCH=x86_64", "LLVM=-19"])
            .args(args);
        Ok(cmd)
    };

    run_logged(&mut make(&["tinyconfig"])?, "configure (tinyconfig)", &log)?;
    let config_path = dir.join(".config");
    {
        let mut config = OpenOptions::new()
            .append(true)
            .open(&config_path)
            .with_context(|| format!("tinyconfig left no {}", config_path.display()))?;
        for (name, text) in &inputs.fragments {
            writeln!(config, "\n# --- from test-kernel/{name}\n{text}")?;
        }
    }
    run_logged(
        &mut make(&["olddefconfig"])?,
        "configure (olddefconfig)",
        &log,
    )?;
    verify_config(&dir, line, &inputs)?;

    let jobs = thread::available_parallelism().map_or(2, |n| n.get());
    run_logged(&mut make(&[&format!("-j{jobs}")])?, "build", &log).map_err(|e| {
        e.context(
            "the kernel build failed. If the log shows a Rust or bindgen error, \
             check that `cargo xtask setup` succeeded and that nothing overrides PATH",
        )
    })?;
    for product in ["vmlinux", "arch/x86/boot/bzImage"] {
        if !dir.join(product).exists() {
            bail!(
                "the build finished without {}; see {}",
                product,
                log.display()
            );
        }
    }
    let mut stamp = String::new();
    stamp.push_str(&format!(
        "source {} {} ({})\n",
        line.source_package(),
        inputs.source_version,
        source.origin()
    ));
    for (name, _) in inputs.patches.iter().chain(&inputs.fragments) {
        stamp.push_str(&format!("file {name}\n"));
    }
    for tool in &inputs.toolchain {
        stamp.push_str(&format!("tool {tool}\n"));
    }
    fs::write(dir.join(STAMP), stamp)?;
    let old = other_builds(cache, line, flavour, &dir);
    if !old.is_empty() {
        let list: Vec<String> = old.iter().map(|p| p.display().to_string()).collect();
        say!(
            "kernel: older {} builds (about 1 GB each) can go: rm -rf {}",
            kernel.describe(),
            list.join(" ")
        );
    }
    say!(
        "kernel: {} kernel built in {}",
        kernel.describe(),
        fmt_duration(start.elapsed())
    );
    Ok(kernel)
}

/// Extracts and patches the source tree once per source key.
fn ensure_source(
    checkout: &Path,
    cache: &Path,
    line: Line,
    source: &Source,
    inputs: &KeyInputs,
    log: &Path,
) -> Result<PathBuf> {
    let key = source_key(inputs);
    let src = cache.join(format!("src-{}{key}", line.dir_tag()));
    if src.join(STAMP).exists() {
        return Ok(src);
    }
    // Work in a scratch directory renamed into place at the end, so that a
    // half-extracted or half-patched tree is never used.
    let tmp = cache.join(format!("src-{}{key}.partial", line.dir_tag()));
    for dir in [&tmp, &src] {
        if dir.exists() {
            fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
        }
    }
    fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let prepared = (|| -> Result<()> {
        run_logged(&mut source.extract(&tmp), "extract source", log)?;
        for (name, _) in &inputs.patches {
            let patch = line.patch_dir().join(name);
            run_logged(
                Command::new("patch")
                    .args(["-p1", "--forward", "--batch", "-i"])
                    .arg(checkout.join(&patch))
                    .current_dir(&tmp)
                    .stdin(Stdio::null()),
                &format!("apply {name}"),
                log,
            )
            .map_err(|e| {
                e.context(format!(
                    "{} does not apply to {} {}",
                    patch.display(),
                    line.source_package(),
                    inputs.source_version
                ))
            })?;
        }
        fs::write(tmp.join(STAMP), format!("{}\n", inputs.source_version))?;
        Ok(())
    })();
    if let Err(e) = prepared {
        // 1.7 GB of unusable tree: do not leave it behind.
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, &src)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), src.display()))?;
    Ok(src)
}

/// Build directories of the line and flavour other than `current`, for a
/// hint.
fn other_builds(cache: &Path, line: Line, flavour: Flavour, current: &Path) -> Vec<PathBuf> {
    let prefix = format!("build-{}{}-", line.dir_tag(), flavour.name());
    let Ok(entries) = fs::read_dir(cache) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p != current)
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .collect()
}
