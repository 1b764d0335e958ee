// SPDX-License-Identifier: GPL-2.0

//! `cargo xtask kernel`: the test kernel, built once per set of inputs and
//! kept in the cache directory.
//!
//! Layout under the cache directory:
//! - `src-<srckey>/`: Debian's linux-source-6.12 tarball extracted, with
//!   `test-kernel/patches/6.12/*.patch` applied in order. Key: package version + patches.
//! - `build-<flavour>-<key>/`: the `O=` build tree. Key: the source key's
//!   inputs + the config fragment(s) + the toolchain versions. It becomes
//!   usable only once `xtask-ok` is written after a successful build, so an
//!   interrupted build is resumed, never used.

mod config;
mod key;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::say;
use crate::setup;
use crate::util::{self, fmt_duration, run_logged};
use config::verify_config;
use key::{build_dir, key_inputs, source_key, KeyInputs};

/// Debian's kernel source package and the tarball it installs.
pub(crate) const SOURCE_PACKAGE: &str = "linux-source-6.12";
const SOURCE_TARBALL: &str = "/usr/src/linux-source-6.12.tar.xz";

/// Written into the build directory once the build succeeded.
const STAMP: &str = "xtask-ok";

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

    /// The config fragments, applied in this order.
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

/// `cargo xtask kernel`: builds the kernel if needed, returns its directory.
pub fn ensure_built(checkout: &Path, cache: &Path, flavour: Flavour) -> Result<PathBuf> {
    setup::ensure(cache)?;
    let inputs = key_inputs(checkout, cache, flavour)?;
    let dir = build_dir(cache, flavour, &inputs);
    if is_built(&dir) {
        return Ok(dir);
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
        return Ok(dir);
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
        flavour.name(),
        dir.display()
    );
    say!("kernel: this takes about 10 minutes on 2 cores (debug: 12); later runs reuse it");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let log = dir.join("xtask-build.log");
    let src = ensure_source(checkout, cache, &inputs, &log)?;

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
    verify_config(&dir, &inputs)?;

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
        "source {} ({SOURCE_TARBALL})\n",
        inputs.source_version
    ));
    for (name, _) in inputs.patches.iter().chain(&inputs.fragments) {
        stamp.push_str(&format!("file {name}\n"));
    }
    for tool in &inputs.toolchain {
        stamp.push_str(&format!("tool {tool}\n"));
    }
    fs::write(dir.join(STAMP), stamp)?;
    let old = other_builds(cache, flavour, &dir);
    if !old.is_empty() {
        let list: Vec<String> = old.iter().map(|p| p.display().to_string()).collect();
        say!(
            "kernel: older {} builds (about 1 GB each) can go: rm -rf {}",
            flavour.name(),
            list.join(" ")
        );
    }
    say!(
        "kernel: {} kernel built in {}",
        flavour.name(),
        fmt_duration(start.elapsed())
    );
    Ok(dir)
}

/// Extracts and patches the source tree once per source key.
fn ensure_source(checkout: &Path, cache: &Path, inputs: &KeyInputs, log: &Path) -> Result<PathBuf> {
    let key = source_key(inputs);
    let src = cache.join(format!("src-{key}"));
    if src.join(STAMP).exists() {
        return Ok(src);
    }
    if !Path::new(SOURCE_TARBALL).exists() {
        bail!("{SOURCE_TARBALL} is missing: run `cargo xtask setup` (package {SOURCE_PACKAGE})");
    }
    // Work in a scratch directory renamed into place at the end, so that a
    // half-extracted or half-patched tree is never used.
    let tmp = cache.join(format!("src-{key}.partial"));
    for dir in [&tmp, &src] {
        if dir.exists() {
            fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
        }
    }
    fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let prepared = (|| -> Result<()> {
        run_logged(
            Command::new("tar")
                .args(["-xf", SOURCE_TARBALL, "--strip-components=1", "-C"])
                .arg(&tmp),
            "extract source",
            log,
        )?;
        for (name, _) in &inputs.patches {
            run_logged(
                Command::new("patch")
                    .args(["-p1", "--forward", "--batch", "-i"])
                    .arg(checkout.join("test-kernel/patches/6.12").join(name))
                    .current_dir(&tmp)
                    .stdin(Stdio::null()),
                &format!("apply {name}"),
                log,
            )
            .map_err(|e| {
                e.context(format!(
                    "test-kernel/patches/6.12/{name} does not apply to {SOURCE_PACKAGE} {}",
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

/// Build directories of the flavour other than `current`, for a hint.
fn other_builds(cache: &Path, flavour: Flavour, current: &Path) -> Vec<PathBuf> {
    let prefix = format!("build-{}-", flavour.name());
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
