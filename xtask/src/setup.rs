// SPDX-License-Identifier: GPL-2.0

//! `cargo xtask setup`: the host dependencies, checked first and installed
//! only when missing.
//!
//! - Debian packages (apt-get, needs root),
//! - bindgen-cli from crates.io (`cargo install`),
//! - virtme-ng from PyPI, pinned, in a venv under the cache directory,
//! - `$CACHE/bin`, the symlink directory put first in `PATH` for every
//!   kernel and module make (see [`crate::util::toolchain_path`]).

use std::env;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::say;
use crate::util::{self, run};

/// Debian 12 packages the kernel build, the module build, the BPF tests and
/// virtme-ng need.
pub const APT_PACKAGES: &[&str] = &[
    // kernel source and build tools
    "linux-source-6.12",
    "make",
    "flex",
    "bison",
    "bc",
    "cpio",
    "xz-utils",
    "patch",
    "libssl-dev",
    "libelf-dev",
    "zlib1g-dev",
    // LLVM 19 for C (LLVM=-19) and libclang for bindgen
    "clang-19",
    "lld-19",
    "llvm-19",
    "libclang-19-dev",
    // LLVM 22, the LLVM of rustc-web 1.96: the module's C helpers are
    // compiled to LLVM bitcode and linked into the Rust code (Kbuild), which
    // needs the clang and llvm-link of rustc's own LLVM
    "clang-22",
    "llvm-22",
    // Rust 1.96 with its library source: what the kernel's Rust support wants
    "rustc-web",
    "rust-web-src",
    "rust-web-clippy",
    "rustfmt-web",
    // BTF and BPF; libbpf-sys (the selftest runner) builds its vendored
    // libbpf with gcc, make and pkg-config
    "dwarves",
    "bpftool",
    "libbpf-dev",
    "gcc",
    "pkg-config",
    // the guest: QEMU, virtme-ng's helpers, its venv, module tools
    "qemu-system-x86",
    "busybox-static",
    "udev",
    "kmod",
    "python3-venv",
    // `cargo xtask bench`: objdump for the code comparison, a font for the plot
    "binutils",
    "fonts-dejavu-core",
];

/// bindgen-cli version the kernel's Rust build is known to work with.
pub const BINDGEN_VERSION: &str = "0.73.2";

/// virtme-ng version `cargo xtask vm` is written against.
pub const VIRTME_NG_VERSION: &str = "1.42";

/// What is missing on this host.
#[derive(Debug, Default)]
pub struct Missing {
    packages: Vec<&'static str>,
    bindgen: bool,
    venv: bool,
    links: Vec<(&'static str, PathBuf)>,
}

impl Missing {
    fn is_empty(&self) -> bool {
        self.packages.is_empty() && !self.bindgen && !self.venv && self.links.is_empty()
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.packages.is_empty() {
            parts.push(format!("Debian packages: {}", self.packages.join(" ")));
        }
        if self.bindgen {
            parts.push(format!("bindgen-cli {BINDGEN_VERSION}"));
        }
        if self.venv {
            parts.push(format!("virtme-ng {VIRTME_NG_VERSION} venv"));
        }
        if !self.links.is_empty() {
            let names: Vec<_> = self.links.iter().map(|(n, _)| *n).collect();
            parts.push(format!("toolchain links: {}", names.join(" ")));
        }
        parts.join("; ")
    }
}

/// `cargo xtask setup`.
pub fn setup(cache: &Path) -> Result<()> {
    let missing = check(cache)?;
    if missing.is_empty() {
        say!("setup: nothing to do, every dependency is installed");
        return Ok(());
    }
    install(cache, missing)
}

/// Installs what is missing, quietly doing nothing when all is there.
/// `run`, `test`, `kernel` and `vm` call this first.
pub fn ensure(cache: &Path) -> Result<()> {
    let missing = check(cache)?;
    if missing.is_empty() {
        return Ok(());
    }
    say!("setup: missing {}", missing.describe());
    install(cache, missing)
}

/// Checks every dependency without changing anything.
pub fn check(cache: &Path) -> Result<Missing> {
    let mut missing = Missing {
        packages: missing_packages()?,
        ..Missing::default()
    };

    let bindgen = cargo_home()?.join("bin/bindgen");
    missing.bindgen = !version_of(&bindgen).contains(&format!("bindgen {BINDGEN_VERSION}"));

    let vng = cache.join("venv/bin/vng");
    missing.venv = !version_of(&vng).contains(&format!("virtme-ng {VIRTME_NG_VERSION}"));

    for (name, target) in links()? {
        if fs::read_link(cache.join("bin").join(name)).ok().as_ref() != Some(&target) {
            missing.links.push((name, target));
        }
    }
    Ok(missing)
}

fn install(cache: &Path, missing: Missing) -> Result<()> {
    if !missing.packages.is_empty() {
        let list = missing.packages.join(" ");
        if !util::is_root() {
            bail!(
                "missing Debian packages: {list}\n\
                 Installing them needs root: run `sudo apt-get install -y {list}` \
                 (or `sudo cargo xtask setup`), then try again."
            );
        }
        let apt = |args: &[&str]| {
            let mut cmd = Command::new("apt-get");
            cmd.args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdin(Stdio::null());
            cmd
        };
        run(&mut apt(&["update"])).context(
            "apt-get update failed: check network access to the Debian mirror \
             (/etc/apt/sources.list*) and try again",
        )?;
        let mut cmd = apt(&["install", "-y", "--no-install-recommends"]);
        cmd.args(&missing.packages);
        run(&mut cmd).with_context(|| {
            format!(
                "apt-get could not install {list}: see its message above; \
                 the packages are in Debian 12 (bookworm) and bookworm-updates"
            )
        })?;
    }

    if missing.bindgen {
        let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        run(Command::new(cargo).args([
            "install",
            "bindgen-cli",
            "--version",
            BINDGEN_VERSION,
            "--locked",
        ]))
        .context("installing bindgen-cli failed: check network access to crates.io")?;
    }

    if missing.venv {
        let venv = cache.join("venv");
        fs::create_dir_all(cache).with_context(|| format!("cannot create {}", cache.display()))?;
        if !venv.join("bin/pip").exists() {
            run(Command::new("/usr/bin/python3")
                .args(["-m", "venv"])
                .arg(&venv))
            .context("creating the virtme-ng venv failed: is python3-venv installed?")?;
        }
        run(Command::new(venv.join("bin/pip")).args([
            "install",
            "--disable-pip-version-check",
            &format!("virtme-ng=={VIRTME_NG_VERSION}"),
        ]))
        .context("installing virtme-ng failed: check network access to PyPI")?;
    }

    let bin = cache.join("bin");
    fs::create_dir_all(&bin).with_context(|| format!("cannot create {}", bin.display()))?;
    for (name, target) in &missing.links {
        let link = bin.join(name);
        if link.symlink_metadata().is_ok() {
            fs::remove_file(&link).with_context(|| format!("cannot replace {}", link.display()))?;
        }
        symlink(target, &link)
            .with_context(|| format!("cannot link {} -> {}", link.display(), target.display()))?;
        say!("setup: {} -> {}", link.display(), target.display());
    }

    let left = check(cache)?;
    if !left.is_empty() {
        bail!("setup finished but still missing: {}", left.describe());
    }
    say!("setup: done");
    Ok(())
}

/// The packages of [`APT_PACKAGES`] that dpkg does not list as installed.
fn missing_packages() -> Result<Vec<&'static str>> {
    // dpkg-query exits 1 when a package is unknown; the others still print.
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Package} ${db:Status-Status}\\n"])
        .args(APT_PACKAGES)
        .stderr(Stdio::null())
        .output()
        .context("cannot run dpkg-query: this tool expects Debian 12")?;
    let listed = String::from_utf8_lossy(&out.stdout);
    let installed: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.strip_suffix(" installed"))
        .collect();
    Ok(APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| !installed.contains(p))
        .collect())
}

/// The links of `$CACHE/bin` and what they point to.
fn links() -> Result<Vec<(&'static str, PathBuf)>> {
    let mut links: Vec<_> = ["rustc", "rustdoc", "rustfmt", "clippy-driver"]
        .into_iter()
        .map(|n| (n, Path::new("/usr/bin").join(n)))
        .collect();
    links.push(("bindgen", cargo_home()?.join("bin/bindgen")));
    Ok(links)
}

fn cargo_home() -> Result<PathBuf> {
    if let Some(home) = env::var_os("CARGO_HOME").filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(home));
    }
    let home = env::var_os("HOME").context("HOME is not set")?;
    Ok(PathBuf::from(home).join(".cargo"))
}

/// First line of `<tool> --version`, or "" when it does not run.
fn version_of(tool: &Path) -> String {
    Command::new(tool)
        .arg("--version")
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default()
}
