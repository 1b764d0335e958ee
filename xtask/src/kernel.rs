// SPDX-License-Identifier: GPL-2.0

//! `cargo xtask kernel`: the test kernel, built once per set of inputs and
//! kept in the cache directory.
//!
//! Layout under the cache directory:
//! - `src-<srckey>/`: Debian's linux-source-6.12 tarball extracted, with
//!   `qemu/patches/*.patch` applied in order. Key: package version + patches.
//! - `build-<flavour>-<key>/`: the `O=` build tree. Key: the source key's
//!   inputs + the config fragment(s) + the toolchain versions. It becomes
//!   usable only once `xtask-ok` is written after a successful build, so an
//!   interrupted build is resumed, never used.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::say;
use crate::setup;
use crate::util::{self, fmt_duration, run_logged};

/// Debian's kernel source package and the tarball it installs.
const SOURCE_PACKAGE: &str = "linux-source-6.12";
const SOURCE_TARBALL: &str = "/usr/src/linux-source-6.12.tar.xz";

/// Written into the build directory once the build succeeded.
const STAMP: &str = "xtask-ok";

/// Options every test-kernel flavour must end up with (`=y`), whatever the
/// fragments say: the module, BTF, BPF, tracing and virtme-ng need them.
pub const REQUIRED: &[&str] = &[
    "RUST",
    "DEBUG_INFO_BTF",
    "DEBUG_INFO_BTF_MODULES",
    "BPF_SYSCALL",
    "BPF_JIT",
    "FTRACE",
    "FUNCTION_TRACER",
    "BPF_EVENTS",
    "PREEMPT",
    "PREEMPT_RCU",
    "MODULES",
    "MODULE_UNLOAD",
    "PID_NS",
    "VIRTIO",
    "VIRTIO_PCI",
    "VIRTIO_CONSOLE",
    "NET_9P",
    "NET_9P_VIRTIO",
    "9P_FS",
    "ACPI",
];

/// Which kernel to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// `qemu/kernel.config` over tinyconfig.
    Normal,
    /// `qemu/kernel.config` then `qemu/kernel-debug.config`: KASAN, lockdep,
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
        let qemu = checkout.join("qemu");
        match self {
            Flavour::Normal => vec![qemu.join("kernel.config")],
            Flavour::Debug => vec![qemu.join("kernel.config"), qemu.join("kernel-debug.config")],
        }
    }
}

/// Everything a kernel build depends on. Changing any of it changes the key.
#[derive(Clone, Debug)]
pub struct KeyInputs {
    /// Version of the linux-source-6.12 package.
    pub source_version: String,
    /// `(file name, contents)` of each patch, in the order applied.
    pub patches: Vec<(String, String)>,
    /// `(file name, contents)` of each config fragment, in order.
    pub fragments: Vec<(String, String)>,
    /// `--version` lines of rustc, clang, bindgen and pahole.
    pub toolchain: Vec<String>,
}

/// Hashes length-prefixed fields, so that no two field lists collide.
fn short_hash<'a>(fields: impl IntoIterator<Item = &'a str>) -> String {
    let mut hasher = Sha256::new();
    for field in fields {
        hasher.update((field.len() as u64).to_le_bytes());
        hasher.update(field.as_bytes());
    }
    hasher.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Key of the patched source tree: package version and patches.
pub fn source_key(inputs: &KeyInputs) -> String {
    let mut fields = vec!["source", inputs.source_version.as_str()];
    for (name, text) in &inputs.patches {
        fields.extend(["patch", name.as_str(), text.as_str()]);
    }
    short_hash(fields)
}

/// Key of a build: everything in [`KeyInputs`].
pub fn build_key(inputs: &KeyInputs) -> String {
    let source = source_key(inputs);
    let mut fields = vec!["build", source.as_str()];
    for (name, text) in &inputs.fragments {
        fields.extend(["fragment", name.as_str(), text.as_str()]);
    }
    for tool in &inputs.toolchain {
        fields.extend(["tool", tool.as_str()]);
    }
    short_hash(fields)
}

/// What a fragment asks of one option.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Want {
    /// `CONFIG_X=value`
    Value(String),
    /// `# CONFIG_X is not set`
    Unset,
}

/// Parses a config fragment into `(option without CONFIG_, wanted)` in file
/// order. Other comments and blank lines are skipped; anything else is an
/// error, so that a typo does not silently drop an option.
pub fn parse_fragment(text: &str) -> Result<Vec<(String, Want)>> {
    let mut wants = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("# CONFIG_") {
            if let Some(name) = rest.strip_suffix(" is not set") {
                wants.push((name.to_string(), Want::Unset));
            }
        } else if let Some(rest) = line.strip_prefix("CONFIG_") {
            match rest.split_once('=') {
                Some((name, value)) if !name.is_empty() && !value.is_empty() => {
                    wants.push((name.to_string(), Want::Value(value.to_string())));
                }
                _ => bail!("line {}: expected CONFIG_NAME=value, got `{line}`", i + 1),
            }
        } else if !line.is_empty() && !line.starts_with('#') {
            bail!("line {}: not a config line: `{line}`", i + 1);
        }
    }
    Ok(wants)
}

/// The options a `.config` sets, without the `CONFIG_` prefix.
pub fn parse_config(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("CONFIG_")?.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// An option Kconfig did not keep the way it was asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dropped {
    pub option: String,
    pub wanted: Want,
    pub got: Option<String>,
}

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let wanted = match &self.wanted {
            Want::Value(v) => v.as_str(),
            Want::Unset => "not set",
        };
        let got = self.got.as_deref().unwrap_or("not set");
        write!(
            f,
            "CONFIG_{}: wanted {wanted}, .config has {got}",
            self.option
        )
    }
}

/// Checks a final `.config` against the fragments (later fragments override
/// earlier ones) and the [`REQUIRED`]-style list of options that must be `y`.
pub fn check_config(config: &str, fragments: &[&str], required: &[&str]) -> Result<Vec<Dropped>> {
    let mut wants: Vec<(String, Want)> = Vec::new();
    for fragment in fragments {
        for (option, want) in parse_fragment(fragment)? {
            wants.retain(|(o, _)| *o != option);
            wants.push((option, want));
        }
    }
    for option in required {
        if !wants.iter().any(|(o, _)| o == option) {
            wants.push((option.to_string(), Want::Value("y".into())));
        }
    }
    let have = parse_config(config);
    Ok(wants
        .into_iter()
        .filter_map(|(option, wanted)| {
            let got = have.get(&option).cloned();
            let kept = match &wanted {
                Want::Value(v) => got.as_deref() == Some(v.as_str()),
                Want::Unset => got.is_none(),
            };
            (!kept).then_some(Dropped {
                option,
                wanted,
                got,
            })
        })
        .collect())
}

/// Reads the inputs of the key from the host and the checkout.
pub fn key_inputs(checkout: &Path, cache: &Path, flavour: Flavour) -> Result<KeyInputs> {
    let source_version =
        util::output(Command::new("dpkg-query").args(["-W", "-f=${Version}", SOURCE_PACKAGE]))
            .with_context(|| {
                format!("{SOURCE_PACKAGE} is not installed: run `cargo xtask setup`")
            })?;

    let patch_dir = checkout.join("qemu/patches");
    let mut patch_paths: Vec<PathBuf> = fs::read_dir(&patch_dir)
        .with_context(|| format!("cannot read {}", patch_dir.display()))?
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "patch"))
        .collect();
    patch_paths.sort();

    let read_named = |paths: &[PathBuf]| -> Result<Vec<(String, String)>> {
        paths
            .iter()
            .map(|p| {
                let name = p
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                let text = fs::read_to_string(p)
                    .with_context(|| format!("cannot read {}", p.display()))?;
                Ok((name, text))
            })
            .collect()
    };

    let path = util::toolchain_path(cache)?;
    let mut toolchain = Vec::new();
    for tool in ["rustc", "clang-19", "bindgen", "pahole"] {
        let out = util::output(Command::new(tool).arg("--version").env("PATH", &path))
            .with_context(|| format!("`{tool} --version` failed: run `cargo xtask setup`"))?;
        toolchain.push(out.lines().next().unwrap_or_default().to_string());
    }

    Ok(KeyInputs {
        source_version,
        patches: read_named(&patch_paths)?,
        fragments: read_named(&flavour.fragments(checkout))?,
        toolchain,
    })
}

/// The build directory for these inputs (built or not).
pub fn build_dir(cache: &Path, flavour: Flavour, inputs: &KeyInputs) -> PathBuf {
    cache.join(format!("build-{}-{}", flavour.name(), build_key(inputs)))
}

/// Whether the build directory holds a finished build.
pub fn is_built(dir: &Path) -> bool {
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
            writeln!(config, "\n# --- from qemu/{name}\n{text}")?;
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

/// Checks the build directory's `.config` against the fragments and
/// [`REQUIRED`], failing with every dropped option named.
pub fn verify_config(dir: &Path, inputs: &KeyInputs) -> Result<()> {
    let config_path = dir.join(".config");
    let config = fs::read_to_string(&config_path)
        .with_context(|| format!("cannot read {}", config_path.display()))?;
    let fragments: Vec<&str> = inputs.fragments.iter().map(|(_, t)| t.as_str()).collect();
    let dropped = check_config(&config, &fragments, REQUIRED)?;
    if dropped.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = dropped.iter().map(|d| format!("  {d}")).collect();
    bail!(
        "Kconfig dropped {} option(s) the test kernel needs:\n{}\n\
         An option is dropped when one of its `depends on` is not met: look it up with \
         `grep -rn 'config NAME' <source>` and add what it depends on to the fragment. \
         If CONFIG_RUST is among them, Kconfig found the wrong rustc or no bindgen \
         (see `make -C <source> O={} LLVM=-19 rustavailable`).",
        dropped.len(),
        list.join("\n"),
        dir.display()
    )
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
                    .arg(checkout.join("qemu/patches").join(name))
                    .current_dir(&tmp)
                    .stdin(Stdio::null()),
                &format!("apply {name}"),
                log,
            )
            .map_err(|e| {
                e.context(format!(
                    "qemu/patches/{name} does not apply to {SOURCE_PACKAGE} {}",
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

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> KeyInputs {
        KeyInputs {
            source_version: "6.12.117-1~deb12u1".into(),
            patches: vec![
                ("0001-a.patch".into(), "--- a\n+++ b\n+x\n".into()),
                ("0002-b.patch".into(), "--- c\n+++ d\n+y\n".into()),
            ],
            fragments: vec![("kernel.config".into(), "CONFIG_RUST=y\n".into())],
            toolchain: vec!["rustc 1.96.0".into(), "clang version 19.1.7".into()],
        }
    }

    #[test]
    fn same_inputs_same_key() {
        assert_eq!(build_key(&inputs()), build_key(&inputs()));
        assert_eq!(source_key(&inputs()), source_key(&inputs()));
        assert_eq!(build_key(&inputs()).len(), 16);
    }

    #[test]
    fn patch_change_changes_both_keys() {
        let mut changed = inputs();
        changed.patches[1].1.push_str("+z\n");
        assert_ne!(build_key(&inputs()), build_key(&changed));
        assert_ne!(source_key(&inputs()), source_key(&changed));
    }

    #[test]
    fn patch_order_and_count_change_key() {
        let mut swapped = inputs();
        swapped.patches.reverse();
        assert_ne!(build_key(&inputs()), build_key(&swapped));
        let mut fewer = inputs();
        fewer.patches.pop();
        assert_ne!(build_key(&inputs()), build_key(&fewer));
    }

    #[test]
    fn fragment_change_changes_build_key_only() {
        let mut changed = inputs();
        changed.fragments[0].1.push_str("CONFIG_KASAN=y\n");
        assert_ne!(build_key(&inputs()), build_key(&changed));
        assert_eq!(source_key(&inputs()), source_key(&changed));
        let mut extra = inputs();
        extra
            .fragments
            .push(("kernel-debug.config".into(), String::new()));
        assert_ne!(build_key(&inputs()), build_key(&extra));
    }

    #[test]
    fn toolchain_or_version_change_changes_key() {
        let mut tool = inputs();
        tool.toolchain[0] = "rustc 1.97.0".into();
        assert_ne!(build_key(&inputs()), build_key(&tool));
        let mut version = inputs();
        version.source_version = "6.12.118-1~deb12u1".into();
        assert_ne!(build_key(&inputs()), build_key(&version));
    }

    #[test]
    fn field_boundaries_matter() {
        let mut a = inputs();
        a.toolchain = vec!["ab".into(), "c".into()];
        let mut b = inputs();
        b.toolchain = vec!["a".into(), "bc".into()];
        assert_ne!(build_key(&a), build_key(&b));
    }

    const FRAGMENT: &str =
        "# comment\nCONFIG_RUST=y\nCONFIG_LOG_BUF_SHIFT=14\n# CONFIG_SLUB_TINY is not set\n\n";

    #[test]
    fn fragment_parses() {
        let wants = parse_fragment(FRAGMENT).unwrap();
        assert_eq!(
            wants,
            vec![
                ("RUST".to_string(), Want::Value("y".into())),
                ("LOG_BUF_SHIFT".to_string(), Want::Value("14".into())),
                ("SLUB_TINY".to_string(), Want::Unset),
            ]
        );
        assert!(parse_fragment("CONFIG_RUST\n").is_err());
        assert!(parse_fragment("RUST=y\n").is_err());
    }

    #[test]
    fn kept_config_passes() {
        let config = "CONFIG_RUST=y\nCONFIG_LOG_BUF_SHIFT=14\n# CONFIG_SLUB_TINY is not set\nCONFIG_PID_NS=y\n";
        assert_eq!(
            check_config(config, &[FRAGMENT], &["PID_NS"]).unwrap(),
            vec![]
        );
    }

    #[test]
    fn dropped_option_is_detected() {
        // Kconfig turned RUST off (wrong rustc) and SLUB_TINY on.
        let config = "# CONFIG_RUST is not set\nCONFIG_LOG_BUF_SHIFT=14\nCONFIG_SLUB_TINY=y\nCONFIG_PID_NS=y\n";
        let dropped = check_config(config, &[FRAGMENT], &["PID_NS"]).unwrap();
        assert_eq!(
            dropped,
            vec![
                Dropped {
                    option: "RUST".into(),
                    wanted: Want::Value("y".into()),
                    got: None
                },
                Dropped {
                    option: "SLUB_TINY".into(),
                    wanted: Want::Unset,
                    got: Some("y".into())
                },
            ]
        );
        assert_eq!(
            dropped[0].to_string(),
            "CONFIG_RUST: wanted y, .config has not set"
        );
    }

    #[test]
    fn wrong_value_is_detected() {
        let config = "CONFIG_RUST=y\nCONFIG_LOG_BUF_SHIFT=17\nCONFIG_PID_NS=y\n";
        let dropped = check_config(config, &[FRAGMENT], &["PID_NS"]).unwrap();
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].option, "LOG_BUF_SHIFT");
    }

    #[test]
    fn required_option_missing_is_detected() {
        let config = "CONFIG_RUST=y\nCONFIG_LOG_BUF_SHIFT=14\n";
        let dropped = check_config(config, &[FRAGMENT], &["PID_NS", "RUST"]).unwrap();
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].option, "PID_NS");
    }

    #[test]
    fn later_fragment_overrides_earlier() {
        let debug = "# CONFIG_RUST is not set\nCONFIG_KASAN=y\n";
        let config = "CONFIG_LOG_BUF_SHIFT=14\nCONFIG_KASAN=y\n";
        assert_eq!(
            check_config(config, &[FRAGMENT, debug], &[]).unwrap(),
            vec![]
        );
    }

    #[test]
    fn real_fragments_parse_and_cover_required() {
        let checkout = util::checkout();
        let mut all = Vec::new();
        for flavour in [Flavour::Normal, Flavour::Debug] {
            for path in flavour.fragments(&checkout) {
                let text = fs::read_to_string(&path).unwrap();
                all.extend(parse_fragment(&text).unwrap());
            }
        }
        for option in REQUIRED {
            assert!(
                all.iter()
                    .any(|(o, w)| o == option && *w == Want::Value("y".into())),
                "qemu/kernel.config does not set CONFIG_{option}=y"
            );
        }
    }
}
