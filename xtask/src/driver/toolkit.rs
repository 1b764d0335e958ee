// SPDX-License-Identifier: GPL-2.0

//! The rust-kfuncs toolkit's checks that need the test kernel: the sample module
//! (samples/kfunc_sample) builds, a plain `make -C $KDIR M=...` on a fresh copy of each module
//! gives the same `.BTF` and `.BTF_ids` as the wrapper Makefiles (`make KDIR=`), and the
//! checked-in BPF declaration headers are what `btfgen --header` writes from the modules' BTF.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::kernel::Kernel;
use crate::{util, Env};

/// The sample module's directory in the checkout.
const SAMPLE_DIR: &str = "samples/kfunc_sample";

/// What a module copy needs, relative to the checkout (the toolkit without btfgen's sources);
/// only files under version control are copied, so no build output comes along.
const COPIED: &[&str] = &[
    "Kbuild",
    "src",
    "rust-kfuncs/kfuncs.mk",
    "rust-kfuncs/kfunc_btf.rs",
    "rust-kfuncs/kfunc-resolve-btfids",
    "samples/kfunc_sample/Kbuild",
    "samples/kfunc_sample/kfunc_sample.rs",
];

/// Where [`build_sample`] leaves the sample module.
pub fn sample_ko(checkout: &Path) -> PathBuf {
    checkout.join(SAMPLE_DIR).join("kfunc_sample.ko")
}

/// `make -C samples/kfunc_sample KDIR=<kernel dir>`; returns the path of kfunc_sample.ko.
pub fn build_sample(env: &Env, kernel: &Kernel) -> Result<PathBuf> {
    let dir = env.checkout.join(SAMPLE_DIR);
    let mut make = util::kernel_make(&env.cache)?;
    make.arg("-C")
        .arg(&dir)
        .arg(format!("KDIR={}", kernel.dir.display()));
    util::run(&mut make).with_context(|| {
        format!(
            "building samples/kfunc_sample against the {} test kernel",
            kernel.describe()
        )
    })?;
    let ko = sample_ko(&env.checkout);
    if !ko.exists() {
        bail!("make succeeded but left no {}", ko.display());
    }
    Ok(ko)
}

/// The modules the checks cover, as their `.ko` stems.
const MODULES: [&str; 2] = ["task_kfuncs", "kfunc_sample"];

/// The names of the checks [`checks`] records.
pub fn names() -> Vec<String> {
    MODULES
        .iter()
        .flat_map(|stem| {
            [
                format!("toolkit/plain_kbuild_same_btf/{stem}"),
                format!("toolkit/kfuncs_h_fresh/{stem}"),
                format!("toolkit/one_kfunc_tag_per_kfunc/{stem}"),
            ]
        })
        .collect()
}

/// The named checks, each with its result, for `cargo xtask test` to record. `modules` are the
/// modules `make KDIR=` built: (directory relative to the checkout, .ko path).
pub fn checks(env: &Env, kernel: &Kernel, modules: &[(&str, &Path)]) -> Vec<(String, Result<()>)> {
    let (checkout, kdir) = (env.checkout.as_path(), kernel.dir.as_path());
    let mut out = Vec::new();
    let copy = checkout.join("target/xtask/plain-kbuild");
    let copied = copy_sources(checkout, &copy);
    for &(dir, ko) in modules {
        let name = ko
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let stem = name.trim_end_matches(".ko").to_string();
        let result = copied
            .as_ref()
            .map_err(|e| anyhow::anyhow!("{e:#}"))
            .and_then(|()| same_btf_as_plain_kbuild(env, kdir, &copy.join(dir), ko));
        out.push((
            format!("toolkit/plain_kbuild_same_btf/{stem}"),
            result.with_context(|| {
                format!(
                    "plain `make -C $KDIR M=` on a fresh copy must give {name} the same \
                     .BTF and .BTF_ids as `make KDIR=`"
                )
            }),
        ));
        out.push((
            format!("toolkit/one_kfunc_tag_per_kfunc/{stem}"),
            one_kfunc_tag_per_kfunc(checkout, kdir, ko).with_context(|| {
                format!(
                    "every kfunc of {name}'s sets must be a FUNC of its BTF with exactly one \
                     bpf_kfunc decl tag, as BPF sees it (bpftool)"
                )
            }),
        ));
        out.push((
            format!("toolkit/kfuncs_h_fresh/{stem}"),
            header_is_fresh(checkout, kernel, ko, &stem).with_context(|| {
                format!(
                    "bpf-tests/progs/[{}/]{stem}.kfuncs.h must be what btfgen --header writes \
                     from {name}'s BTF",
                    kernel.line
                )
            }),
        ));
    }
    out
}

fn copy_sources(checkout: &Path, copy: &Path) -> Result<()> {
    if copy.exists() {
        fs::remove_dir_all(copy).with_context(|| format!("removing {}", copy.display()))?;
    }
    let mut ls = Command::new("git");
    ls.arg("-C")
        .arg(checkout)
        .args(["ls-files", "--"])
        .args(COPIED);
    let files = util::output(&mut ls)?;
    if files.is_empty() {
        bail!("git ls-files lists none of {COPIED:?}");
    }
    for rel in files.lines() {
        let dest = copy.join(rel);
        fs::create_dir_all(dest.parent().unwrap_or(copy))?;
        fs::copy(checkout.join(rel), &dest)
            .with_context(|| format!("copying {rel} to {}", copy.display()))?;
    }
    Ok(())
}

fn same_btf_as_plain_kbuild(env: &Env, kdir: &Path, dir: &Path, wrapper_ko: &Path) -> Result<()> {
    let checkout = env.checkout.as_path();
    let mut make = util::kernel_make(&env.cache)?;
    make.arg("-C")
        .arg(kdir)
        .arg(format!("M={}", dir.display()))
        .arg("LLVM=-19")
        .arg(format!(
            "KFUNC_BTFGEN={}",
            checkout.join("target/release/btfgen").display()
        ))
        .arg("modules");
    util::run(&mut make)?;
    let plain_ko = dir.join(wrapper_ko.file_name().unwrap_or_default());
    for section in [".BTF", ".BTF_ids"] {
        let plain = section_bytes(&plain_ko, section)?;
        let wrapper = section_bytes(wrapper_ko, section)?;
        if plain != wrapper {
            bail!(
                "{section} differs: {} bytes from plain Kbuild ({}), {} from make KDIR= ({})",
                plain.len(),
                plain_ko.display(),
                wrapper.len(),
                wrapper_ko.display()
            );
        }
    }
    Ok(())
}

/// Every kfunc of the module's sets (its `__BTF_ID__func__<name>__<n>` symbols) is a `FUNC` of
/// its BTF with exactly one `bpf_kfunc` decl tag, as `bpftool btf dump` shows it: pahole (6.x),
/// btfgen and resolve_btfids (7.x) must neither miss one nor tag one twice. The BTF is the one
/// the kernel sees: a 7.x external module's is relocated from its `.BTF.base` onto vmlinux first
/// (`btfgen --relocated-btf`; bpftool 7.1 cannot read `.BTF.base`).
fn one_kfunc_tag_per_kfunc(checkout: &Path, kdir: &Path, ko: &Path) -> Result<()> {
    let symbols = util::output(Command::new("llvm-nm-19").arg(ko))?;
    let mut kfuncs: Vec<String> = symbols
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .last()?
                .strip_prefix("__BTF_ID__func__")
        })
        .filter_map(|s| s.rsplit_once("__").map(|(name, _)| name.to_string()))
        .collect();
    kfuncs.sort();
    kfuncs.dedup();
    if kfuncs.is_empty() {
        bail!("{} has no __BTF_ID__func__ symbols", ko.display());
    }
    let raw = checkout.join(format!(
        "target/xtask/{}.btf",
        ko.file_name().unwrap_or_default().to_string_lossy()
    ));
    util::run(
        Command::new(checkout.join("target/release/btfgen"))
            .arg("--base")
            .arg(kdir.join("vmlinux"))
            .arg("--relocated-btf")
            .arg(&raw)
            .arg(ko),
    )?;
    let dump = util::output(
        Command::new("bpftool")
            .arg("-B")
            .arg(kdir.join("vmlinux"))
            .args(["btf", "dump", "file"])
            .arg(&raw),
    )?;
    // `[12] FUNC 'name' type_id=...` and `[13] DECL_TAG 'bpf_kfunc' type_id=12 component_idx=-1`.
    let mut funcs = std::collections::HashMap::new();
    let mut tags = std::collections::HashMap::<String, usize>::new();
    for line in dump.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [id, "FUNC", name, ..] => {
                funcs.insert(name.trim_matches('\'').to_string(), id.to_string());
            }
            [_, "DECL_TAG", "'bpf_kfunc'", target, "component_idx=-1"] => {
                if let Some(id) = target.strip_prefix("type_id=") {
                    *tags.entry(format!("[{id}]")).or_default() += 1;
                }
            }
            _ => {}
        }
    }
    let mut wrong = Vec::new();
    for kfunc in &kfuncs {
        match funcs.get(kfunc) {
            None => wrong.push(format!("{kfunc}: no FUNC")),
            Some(id) => match tags.get(id).copied().unwrap_or(0) {
                1 => {}
                n => wrong.push(format!("{kfunc}: {n} bpf_kfunc tags")),
            },
        }
    }
    if !wrong.is_empty() {
        bail!("{}: {}", ko.display(), wrong.join("; "));
    }
    Ok(())
}

/// The contents of one section of an ELF file, with llvm-objcopy.
fn section_bytes(file: &Path, section: &str) -> Result<Vec<u8>> {
    let dump = file.with_extension(format!("{}.section", section.trim_start_matches('.')));
    let mut cmd = Command::new("llvm-objcopy-19");
    cmd.arg(format!("--dump-section={section}={}", dump.display()))
        .arg(file)
        .arg(file.with_extension("objcopy.tmp"));
    util::run(&mut cmd)?;
    let _ = fs::remove_file(file.with_extension("objcopy.tmp"));
    let bytes = fs::read(&dump).with_context(|| format!("reading {}", dump.display()))?;
    let _ = fs::remove_file(&dump);
    Ok(bytes)
}

/// The checked-in header is `bpf-tests/progs/<line>/<stem>.kfuncs.h` where a line has its own
/// (its kfuncs' parameter names differ there), else `bpf-tests/progs/<stem>.kfuncs.h`; the BPF
/// programs' include path looks in the same order (bpf-tests/build.rs).
fn header_is_fresh(checkout: &Path, kernel: &Kernel, ko: &Path, stem: &str) -> Result<()> {
    let kdir = kernel.dir.as_path();
    let progs = checkout.join("bpf-tests/progs");
    let per_line = progs
        .join(kernel.line.name())
        .join(format!("{stem}.kfuncs.h"));
    let checked_in = if per_line.exists() {
        per_line
    } else {
        progs.join(format!("{stem}.kfuncs.h"))
    };
    let fresh = checkout.join(format!("target/xtask/{stem}.kfuncs.h"));
    // btfgen leaves a module whose kfuncs have BTF alone; the copy (of the same name, which the
    // header mentions) makes sure the checkout's .ko is never touched.
    let copy_dir = checkout.join("target/xtask/header");
    fs::create_dir_all(&copy_dir)?;
    let copy = copy_dir.join(ko.file_name().unwrap_or_default());
    fs::copy(ko, &copy)?;
    let mut cmd = Command::new(checkout.join("target/release/btfgen"));
    cmd.arg("--quiet")
        .arg("--base")
        .arg(kdir.join("vmlinux"))
        .arg("--header")
        .arg(&fresh)
        .arg(&copy);
    util::run(&mut cmd)?;
    let want = fs::read_to_string(&fresh)?;
    let have = fs::read_to_string(&checked_in)
        .with_context(|| format!("reading {}", checked_in.display()))?;
    if want != have {
        bail!(
            "{} is stale: regenerate it with\n  target/release/btfgen --base {}/vmlinux \
             --header {} {}",
            checked_in.display(),
            kdir.display(),
            checked_in.display(),
            ko.display()
        );
    }
    Ok(())
}
