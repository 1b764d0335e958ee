// SPDX-License-Identifier: GPL-2.0

//! Helpers shared by btfgen's integration tests: locating the kernel build and source trees,
//! scratch directories and compiling fixtures.
//!
//! The tests need a real kernel: `RUST_KFUNCS_KDIR` names its build directory (with vmlinux and
//! tools/bpf/resolve_btfids); `RUST_KFUNCS_KSRC` names its source tree when the build directory
//! has no `source` link. Without them the tests fail and say what to set: a skipped test is not a
//! passed one.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// The kernel build directory from `RUST_KFUNCS_KDIR`.
pub fn kdir() -> PathBuf {
    let Some(dir) = std::env::var_os("RUST_KFUNCS_KDIR") else {
        panic!(
            "RUST_KFUNCS_KDIR is not set: set it to a kernel build directory with vmlinux, e.g. \
             RUST_KFUNCS_KDIR=$(cargo xtask kernel --print-path) cargo test -p btfgen"
        );
    };
    let dir = PathBuf::from(dir);
    assert!(
        dir.join("vmlinux").is_file(),
        "RUST_KFUNCS_KDIR={} has no vmlinux: build that kernel first",
        dir.display()
    );
    dir
}

/// `<KDIR>/vmlinux`.
pub fn vmlinux() -> PathBuf {
    kdir().join("vmlinux")
}

/// The kernel source tree: `RUST_KFUNCS_KSRC`, else `<KDIR>/source`, else `<KDIR>` itself
/// (in-tree build), else the `include` line of `<KDIR>/Makefile` (O= builds).
pub fn ksrc() -> PathBuf {
    let has_header = |p: &Path| p.join("include/linux/btf_ids.h").is_file();
    if let Some(dir) = std::env::var_os("RUST_KFUNCS_KSRC") {
        let dir = PathBuf::from(dir);
        assert!(
            has_header(&dir),
            "RUST_KFUNCS_KSRC={} has no include/linux/btf_ids.h",
            dir.display()
        );
        return dir;
    }
    let Some(kdir) = std::env::var_os("RUST_KFUNCS_KDIR").map(PathBuf::from) else {
        panic!(
            "neither RUST_KFUNCS_KSRC (kernel source tree) nor RUST_KFUNCS_KDIR (kernel build \
             directory) is set: set one so the test can compile include/linux/btf_ids.h"
        );
    };
    let mut candidates = vec![kdir.join("source"), kdir.clone()];
    if let Ok(makefile) = std::fs::read_to_string(kdir.join("Makefile")) {
        for line in makefile.lines() {
            if let Some(src) = line
                .strip_prefix("include ")
                .and_then(|l| l.strip_suffix("/Makefile"))
            {
                candidates.push(PathBuf::from(src.trim()));
            }
        }
    }
    candidates
        .into_iter()
        .find(|p| has_header(p))
        .unwrap_or_else(|| {
            panic!(
            "cannot find the kernel source of RUST_KFUNCS_KDIR={}: set RUST_KFUNCS_KSRC to the \
             kernel source tree",
            kdir.display()
        )
        })
}

/// A fresh scratch directory under the target directory's tmp dir.
pub fn scratch(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs a command and panics with its output when it fails.
pub fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A fixture under `tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The objcopy btfgen uses in tests.
pub const OBJCOPY: &str = "llvm-objcopy-19";

/// Compiles `tests/fixtures/<name>` to a relocatable object in `dir` with the given `--cfg`s.
pub fn rustc_obj(dir: &Path, name: &str, cfgs: &[&str], debuginfo: bool) -> PathBuf {
    let out = dir.join(name.replace(".rs", ".o"));
    let mut cmd = Command::new(std::env::var("RUST_KFUNCS_TEST_RUSTC").unwrap_or("rustc".into()));
    cmd.args([
        "--edition=2021",
        "--crate-type=lib",
        "--emit=obj",
        "-Copt-level=2",
    ])
    .arg(fixture(name))
    .arg("-o")
    .arg(&out);
    if debuginfo {
        cmd.arg("-g");
    }
    for cfg in cfgs {
        cmd.args(["--cfg", cfg]);
    }
    run(&mut cmd);
    out
}

/// An empty split BTF: just the header, as pahole writes for a module without C types.
pub fn empty_btf_header() -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&0xeb9fu16.to_le_bytes()); // magic
    h.push(1); // version
    h.push(0); // flags
    h.extend_from_slice(&24u32.to_le_bytes()); // hdr_len
    h.extend_from_slice(&[0; 16]); // type_off, type_len, str_off, str_len
    h
}

/// Adds the empty `.BTF` section Kbuild's pahole step would add to a pure Rust module.
pub fn add_empty_btf(obj: &Path) -> PathBuf {
    let hdr = obj.with_extension("btfhdr");
    std::fs::write(&hdr, empty_btf_header()).unwrap();
    let out = obj.with_extension("ko");
    run(Command::new(OBJCOPY)
        .arg("--add-section")
        .arg(format!(".BTF={}", hdr.display()))
        .arg(obj)
        .arg(&out));
    out
}

/// The fixture module: `tests/fixtures/kfuncs.rs` with debug info and an empty `.BTF`.
pub fn fixture_module(dir: &Path, cfgs: &[&str]) -> PathBuf {
    add_empty_btf(&rustc_obj(dir, "kfuncs.rs", cfgs, true))
}

/// Just enough of linux/types.h and linux/compiler*.h for the kernel's btf_ids.h (whose
/// stringify.h is the kernel's own), in `<dir>/stub`.
pub fn btf_ids_h_stub(dir: &Path) -> PathBuf {
    let stub = dir.join("stub");
    std::fs::create_dir_all(stub.join("linux")).unwrap();
    std::fs::write(stub.join("linux/types.h"), "typedef unsigned int u32;\n").unwrap();
    std::fs::write(
        stub.join("linux/compiler.h"),
        "#define ___PASTE(a,b) a##b\n#define __PASTE(a,b) ___PASTE(a,b)\n",
    )
    .unwrap();
    std::fs::write(
        stub.join("linux/compiler_attributes.h"),
        "#define __maybe_unused __attribute__((__unused__))\n",
    )
    .unwrap();
    stub
}

/// Compiles `tests/fixtures/<name>` (C, with the kernel's include/linux/btf_ids.h and the
/// headers in `stub`) with clang-19 to a relocatable object in `dir`.
pub fn clang_obj(dir: &Path, name: &str, stub: &Path, debuginfo: bool) -> PathBuf {
    let out = dir.join(name.replace(".c", "_c.o"));
    let mut cmd = Command::new("clang-19");
    cmd.args(["-c", "-O2", "--target=x86_64-linux-gnu", "-nostdinc"])
        .arg("-I")
        .arg(stub)
        .arg("-I")
        .arg(ksrc().join("include"))
        .arg("-DCONFIG_DEBUG_INFO_BTF=1");
    if debuginfo {
        cmd.arg("-g");
    }
    run(cmd.arg(fixture(name)).arg("-o").arg(&out));
    out
}
