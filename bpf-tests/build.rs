// SPDX-License-Identifier: GPL-2.0

//! Builds the BPF programs in `progs/` into objects the runner embeds
//! (src/plumbing/bpf.rs).
//!
//! `vmlinux.h` is the test kernel's own BTF as C (`bpftool btf dump file
//! $TASK_KFUNCS_KDIR/vmlinux format c`) when TASK_KFUNCS_KDIR is set, so that
//! the programs see exactly the types of the kernel they will run on;
//! otherwise the checked-in `vmlinux/vmlinux.h` (the 6.12 test kernel's,
//! which `cargo xtask test` keeps fresh), so that a clone builds, checks and
//! lints without a kernel.
//!
//! The kfunc selftests are built twice: `$OUT_DIR/rust/` against the Rust
//! kfuncs of task_kfuncs.ko, and `$OUT_DIR/c/` with `-DTASK_KFUNCS_C`, which
//! maps the kfunc names onto the kernel's own C kfuncs. The other objects
//! are built once, in `$OUT_DIR`.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use libbpf_cargo::SkeletonBuilder;

/// The kfunc selftest objects, each built from `progs/<name>.bpf.c` into
/// `<variant>/<name>.bpf.o` for both kfunc variants.
const SELFTESTS: &[&str] = &[
    "task_kfuncs_success",
    "task_kfuncs_failure",
    "task_kfuncs_exiting",
    "task_kfuncs_nmi",
    "task_kfuncs_privilege",
];

/// The kfunc variants: output subdirectory and extra clang arguments.
const VARIANTS: &[(&str, &[&str])] = &[("rust", &[]), ("c", &["-DTASK_KFUNCS_C"])];

/// Built once, against the Rust kfuncs, into `$OUT_DIR/<name>.bpf.o`:
/// the benchmark and the Rust-only suites.
const ONCE: &[&str] = &[
    "task_kfuncs_bench",
    "task_kfuncs_lifecycle",
    "task_kfuncs_prog_types",
    "task_kfuncs_scx",
    "kfunc_sample",
    "task_kfuncs_stress",
];

/// The clang that compiles the programs; override with `BPF_CLANG`.
const DEFAULT_CLANG: &str = "clang-19";

fn main() -> Result<()> {
    println!("cargo:rerun-if-env-changed=TASK_KFUNCS_KDIR");
    println!("cargo:rerun-if-env-changed=BPF_CLANG");
    println!("cargo:rerun-if-changed=progs");

    let out = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR is not set")?);
    let (major, minor) = match env::var_os("TASK_KFUNCS_KDIR") {
        Some(kdir) => {
            let vmlinux = Path::new(&kdir).join("vmlinux");
            if !vmlinux.is_file() {
                bail!(
                    "{} does not exist: TASK_KFUNCS_KDIR must be a built kernel tree \
                     (run `cargo xtask kernel` first), or unset to use vmlinux/vmlinux.h",
                    vmlinux.display()
                );
            }
            println!("cargo:rerun-if-changed={}", vmlinux.display());
            write_vmlinux_h(&vmlinux, &out.join("vmlinux.h"))?;
            kernel_line(Path::new(&kdir))?
        }
        // The checked-in header is the 6.12 test kernel's.
        None => {
            println!("cargo:rerun-if-changed=vmlinux/vmlinux.h");
            fs::copy("vmlinux/vmlinux.h", out.join("vmlinux.h"))
                .context("copying vmlinux/vmlinux.h")?;
            (6, 12)
        }
    };
    // The runner names the line in its report, and the suites pick the
    // contract of the line (C twins, verifier wording) from it.
    println!("cargo:rustc-env=TASK_KFUNCS_KERNEL_LINE={major}.{minor}");
    // 7.x has bpf_task_from_vpid, the C twin of rust_task_from_vpid.
    println!("cargo::rustc-check-cfg=cfg(has_bpf_task_from_vpid)");
    if major >= 7 {
        println!("cargo:rustc-cfg=has_bpf_task_from_vpid");
    }

    let clang = env::var("BPF_CLANG").unwrap_or_else(|_| DEFAULT_CLANG.to_owned());
    let clang_args = vec![
        format!("-I{}", out.display()),
        // A line's own version of a header (a kfunc declaration whose
        // parameter names differ, e.g. kfunc_sample.kfuncs.h) comes first.
        format!("-Iprogs/{major}.{minor}"),
        "-Iprogs".to_owned(),
        "-Wall".to_owned(),
        "-Werror".to_owned(),
        // 7.x's kernel is built with -fms-extensions and embeds structs as
        // unnamed members of a named type, which vmlinux.h reproduces
        // (`struct ns_tree;` inside a struct); the kernel's own BPF
        // selftests build with the same flag.
        "-fms-extensions".to_owned(),
        "-Wno-microsoft-anon-tag".to_owned(),
        format!("-DTASK_KFUNCS_KERNEL_MAJOR={major}"),
        format!("-DTASK_KFUNCS_KERNEL_MINOR={minor}"),
    ];

    for (variant, extra) in VARIANTS {
        let dir = out.join(variant);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut args = clang_args.clone();
        args.extend(extra.iter().map(|a| a.to_string()));
        for name in SELFTESTS {
            compile(name, &dir, &clang, &args)?;
        }
    }
    for name in ONCE {
        compile(name, &out, &clang, &clang_args)?;
    }
    Ok(())
}

/// Compiles `progs/<name>.bpf.c` into `<dir>/<name>.bpf.o`.
fn compile(name: &str, dir: &Path, clang: &str, args: &[String]) -> Result<()> {
    let source = Path::new("progs").join(format!("{name}.bpf.c"));
    SkeletonBuilder::new()
        .source(&source)
        .obj(dir.join(format!("{name}.bpf.o")))
        .clang(clang)
        .clang_args(args)
        .build()
        .with_context(|| format!("building {} with {clang}", source.display()))?;
    Ok(())
}

/// The kernel's line (major, minor), from its `include/config/kernel.release`.
fn kernel_line(kdir: &Path) -> Result<(u32, u32)> {
    let path = kdir.join("include/config/kernel.release");
    println!("cargo:rerun-if-changed={}", path.display());
    let release =
        fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut parts = release.trim().split(['.', '-']);
    let mut next = || -> Option<u32> { parts.next()?.parse().ok() };
    match (next(), next()) {
        (Some(major), Some(minor)) => Ok((major, minor)),
        _ => bail!(
            "{}: cannot read a kernel version from {release:?}",
            path.display()
        ),
    }
}

/// Dumps the BTF of `vmlinux` as C into `dest` with bpftool.
fn write_vmlinux_h(vmlinux: &Path, dest: &Path) -> Result<()> {
    let output = Command::new("bpftool")
        .args(["btf", "dump", "file"])
        .arg(vmlinux)
        .args(["format", "c"])
        .output()
        .context("running bpftool (install the Debian package `bpftool`)")?;
    if !output.status.success() {
        bail!(
            "bpftool btf dump file {} format c failed: {}",
            vmlinux.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    fs::write(dest, &output.stdout).with_context(|| format!("writing {}", dest.display()))
}
