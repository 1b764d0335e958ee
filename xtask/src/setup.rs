// SPDX-License-Identifier: GPL-2.0

//! `cargo xtask setup`: the host dependencies, checked first and installed
//! only when missing.
//!
//! - Debian packages (apt-get, needs root),
//! - bindgen-cli from crates.io (`cargo install`),
//! - virtme-ng from PyPI, pinned, in a venv under the cache directory,
//! - `$CACHE/bin`, the symlink directory put first in `PATH` for every
//!   kernel and module make (see [`crate::util::toolchain_path`]),
//! - the kernel source of each line ([`source`]): 6.12's is a package of
//!   the host's release; 7.3's comes from Debian's trixie-backports, which
//!   the host does not (and need not) have among its sources, so it is
//!   downloaded with apt into the cache with a source list and state of its
//!   own, leaving the host's configured sources as they are.

use std::env;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::kernel::Line;
use crate::util::{self, run};
use crate::{say, Env};

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
    // `cargo xtask rfc`: the RFC kernels are built with LLVM 22 (one LLVM for
    // clang and rustc inlines the C helpers into Rust); their resolve_btfids
    // reads the DWARF of Rust kfuncs with libdw; checkpatch's SPDX check
    // runs Debian's python3 with ply and git
    "lld-22",
    "libdw-dev",
    "python3-ply",
    "python3-git",
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

/// `cargo xtask setup`: the host dependencies and every line's kernel
/// source.
pub fn setup(env: &Env) -> Result<()> {
    let cache = env.cache.as_path();
    let missing = check(cache)?;
    let sources: Vec<Line> = Line::ALL
        .into_iter()
        .filter(|&line| downloaded(env, line).is_none())
        .filter(|&line| origin(line) != Origin::HostPackage)
        .collect();
    if missing.is_empty() && sources.is_empty() {
        say!("setup: nothing to do, every dependency is installed");
        return Ok(());
    }
    if !missing.is_empty() {
        install(cache, missing)?;
    }
    for line in sources {
        source(env, line)?;
    }
    Ok(())
}

/// Installs what is missing, quietly doing nothing when all is there.
/// `run`, `test`, `kernel` and `vm` call this first; a line's kernel source
/// is fetched when its kernel is built ([`source`]).
pub fn ensure(env: &Env) -> Result<()> {
    let cache = env.cache.as_path();
    let missing = check(cache)?;
    if missing.is_empty() {
        return Ok(());
    }
    say!("setup: missing {}", missing.describe());
    install(cache, missing)
}

/// Where a line's kernel source package comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    /// A package of the host's own release, in [`APT_PACKAGES`]: installed,
    /// the tarball in /usr/src.
    HostPackage,
    /// A Debian suite the host does not use: the `.deb` is downloaded into
    /// `$CACHE/apt-<suite>/` (see [`download`]) and the tarball read from it.
    Suite(&'static str),
}

fn origin(line: Line) -> Origin {
    match line {
        Line::V6_12 => Origin::HostPackage,
        Line::V7_3 => Origin::Suite("trixie-backports"),
    }
}

/// The keyring apt checks the suite's signed `InRelease` against (Debian 12's
/// `debian-archive-keyring` holds the keys of Debian 13's suites too).
const ARCHIVE_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// A line's kernel source: the package version (part of the build key) and
/// where its tarball is.
#[derive(Clone, Debug)]
pub struct Source {
    pub version: String,
    tarball: Tarball,
}

#[derive(Clone, Debug)]
enum Tarball {
    /// A tarball on disk (the installed package's).
    File(PathBuf),
    /// The tarball `member` inside a downloaded `.deb`.
    InDeb { deb: PathBuf, member: String },
}

impl Source {
    /// Where the source came from, for the build's stamp.
    pub fn origin(&self) -> String {
        match &self.tarball {
            Tarball::File(path) => path.display().to_string(),
            Tarball::InDeb { deb, member } => format!("{member} in {}", deb.display()),
        }
    }

    /// The command that extracts the source tree into `dest` (the tarball's
    /// top directory stripped).
    pub fn extract(&self, dest: &Path) -> Command {
        match &self.tarball {
            Tarball::File(path) => {
                let mut cmd = Command::new("tar");
                cmd.args(["-xf"])
                    .arg(path)
                    .args(["--strip-components=1", "-C"])
                    .arg(dest);
                cmd
            }
            Tarball::InDeb { deb, member } => {
                // Streamed: the 167 MB tarball is not written out on its own.
                let mut cmd = Command::new("bash");
                cmd.args([
                    "-o",
                    "pipefail",
                    "-c",
                    r#"dpkg-deb --fsys-tarfile "$1" | tar -xOf - "$2" | tar -xJf - --strip-components=1 -C "$3""#,
                    "extract",
                ])
                .arg(deb)
                .arg(member)
                .arg(dest);
                cmd
            }
        }
    }
}

/// The kernel source of `line`, fetched first when it is missing.
pub fn source(env: &Env, line: Line) -> Result<Source> {
    let package = line.source_package();
    match origin(line) {
        Origin::HostPackage => {
            let version =
                util::output(Command::new("dpkg-query").args(["-W", "-f=${Version}", package]))
                    .with_context(|| {
                        format!("{package} is not installed: run `cargo xtask setup`")
                    })?;
            let tarball = PathBuf::from(format!("/usr/src/{package}.tar.xz"));
            if !tarball.exists() {
                bail!(
                    "{} is missing though {package} is installed: reinstall it                      (`apt-get install --reinstall {package}`)",
                    tarball.display()
                );
            }
            Ok(Source {
                version,
                tarball: Tarball::File(tarball),
            })
        }
        Origin::Suite(suite) => {
            let deb = match downloaded(env, line) {
                Some(deb) => deb,
                None => download(env, line, suite)?,
            };
            let version = util::output(Command::new("dpkg-deb").arg("-f").arg(&deb).arg("Version"))
                .with_context(|| format!("{} is not a readable .deb", deb.display()))?;
            Ok(Source {
                version,
                tarball: Tarball::InDeb {
                    deb,
                    member: format!("./usr/src/{package}.tar.xz"),
                },
            })
        }
    }
}

/// `$CACHE/apt-<suite>/`: the private apt source list, lists and cache of a
/// suite, and `debs/`, the packages downloaded from it.
fn apt_dir(env: &Env, suite: &str) -> PathBuf {
    env.cache.join(format!("apt-{suite}"))
}

/// The line's source `.deb` in the cache, if it was downloaded.
fn downloaded(env: &Env, line: Line) -> Option<PathBuf> {
    let Origin::Suite(suite) = origin(line) else {
        return None;
    };
    let prefix = format!("{}_", line.source_package());
    let mut debs: Vec<PathBuf> = fs::read_dir(apt_dir(env, suite).join("debs"))
        .ok()?
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
        .collect();
    debs.sort();
    debs.pop()
}

/// Downloads the line's source package from `suite` with apt, verified by
/// apt as any package is (the suite's `InRelease` signed by a key of
/// [`ARCHIVE_KEYRING`], the package's hash in its signed index), using a
/// source list, lists and cache of its own under [`apt_dir`]: the host's
/// sources, lists and installed packages stay as they are. The mirror is
/// the one the host's own Debian sources use.
fn download(env: &Env, line: Line, suite: &str) -> Result<PathBuf> {
    let package = line.source_package();
    let dir = apt_dir(env, suite);
    say!(
        "setup: downloading {package} from Debian's {suite} into {}",
        dir.display()
    );
    let mirror = debian_mirror()?;
    for sub in ["lists/partial", "cache/archives/partial", "debs"] {
        let d = dir.join(sub);
        fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let list = dir.join("sources.list");
    fs::write(
        &list,
        format!("deb [signed-by={ARCHIVE_KEYRING}] {mirror} {suite} main\n"),
    )
    .with_context(|| format!("cannot write {}", list.display()))?;
    let apt = |args: &[&str]| {
        let mut cmd = Command::new("apt-get");
        cmd.arg("-o")
            .arg(format!("Dir::Etc::sourcelist={}", list.display()))
            .args(["-o", "Dir::Etc::sourceparts=-"])
            .arg("-o")
            .arg(format!("Dir::State::Lists={}", dir.join("lists").display()))
            .arg("-o")
            .arg(format!("Dir::Cache={}", dir.join("cache").display()))
            .args(["-o", "APT::Get::List-Cleanup=0"]);
        if util::is_root() {
            // The cache is root's: apt's unprivileged download user could
            // not write there (apt would warn and download as root anyway).
            cmd.args(["-o", "APT::Sandbox::User=root"]);
        }
        cmd.args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null());
        cmd
    };
    run(&mut apt(&["update"])).with_context(|| {
        format!("apt-get update of Debian's {suite} (for {package}) failed: check network access to {mirror}")
    })?;
    // Downloaded into a scratch directory and moved into debs/ when
    // complete, so that a half-downloaded package is never used.
    let partial = dir.join("download.partial");
    if partial.exists() {
        fs::remove_dir_all(&partial)
            .with_context(|| format!("cannot remove {}", partial.display()))?;
    }
    fs::create_dir_all(&partial).with_context(|| format!("cannot create {}", partial.display()))?;
    run(apt(&["download", package]).current_dir(&partial))
        .with_context(|| format!("apt-get download {package} from Debian's {suite} failed"))?;
    let deb = fs::read_dir(&partial)?
        .filter_map(|e| Some(e.ok()?.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .with_context(|| format!("apt-get download {package} left no .deb"))?;
    let dest = dir
        .join("debs")
        .join(deb.file_name().context("a .deb without a name")?);
    fs::rename(&deb, &dest)
        .with_context(|| format!("cannot move {} to {}", deb.display(), dest.display()))?;
    let _ = fs::remove_dir_all(&partial);
    say!("setup: {}", dest.display());
    Ok(dest)
}

/// The URI of the host's Debian archive (from its own apt sources: the
/// entry for the release the host runs), so that a suite of another release
/// comes from the same mirror.
fn debian_mirror() -> Result<String> {
    let os_release = fs::read_to_string("/etc/os-release").unwrap_or_default();
    let codename = os_release
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|c| c.trim_matches('"').to_string())
        .filter(|c| !c.is_empty())
        .context("/etc/os-release names no VERSION_CODENAME: this tool expects Debian 12")?;
    let uris = util::output(Command::new("apt-get").args([
        "indextargets",
        "--format",
        "$(REPO_URI)",
        &format!("Release: {codename}"),
        "Target-Of: deb",
    ]))?;
    uris.lines()
        .map(|u| u.trim().trim_end_matches('/').to_string())
        .find(|u| !u.is_empty())
        .with_context(|| {
            format!(
                "the host's apt sources have no entry for Debian {codename};                  add one (see sources.list(5)) and run `apt-get update`"
            )
        })
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
