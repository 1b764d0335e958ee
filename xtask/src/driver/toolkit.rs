// SPDX-License-Identifier: GPL-2.0

//! The rust-kfuncs toolkit's checks that need the test kernel.
//!
//! The sample module the guest loads is built by the steps of rust-kfuncs/README.md, run as
//! written on a fresh copy of samples/kfunc_sample ([`build_sample`]): the README's `sh` blocks
//! run in the copy, its `Kbuild` block is the copy's Kbuild and its `rust` block the crate root's
//! `#[path]` line, with `my_module` read as `kfunc_sample`. Then, as checks: that module and a
//! plain `make -C $KDIR M=...` on a fresh copy of each module give the same `.BTF` and
//! `.BTF_ids` as the wrapper Makefiles (`make KDIR=`); the checked-in BPF declaration headers are
//! what `btfgen --header` writes from the modules' BTF; and a build with another rustc, or without
//! the include, stops with the one-line message that says what to do.

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
    "rust-kfuncs/kfunc-pahole",
    "samples/kfunc_sample/Kbuild",
    "samples/kfunc_sample/kfunc_sample.rs",
];

/// Where [`build_sample`] builds the sample: a fresh copy, as a user's module directory.
fn readme_dir(checkout: &Path) -> PathBuf {
    checkout.join("target/xtask/readme/kfunc_sample")
}

/// Where [`build_sample`] leaves the sample module.
pub fn sample_ko(checkout: &Path) -> PathBuf {
    readme_dir(checkout).join("kfunc_sample.ko")
}

/// The README whose steps [`build_sample`] follows.
const README: &str = "rust-kfuncs/README.md";

/// The section of the README with the steps.
const STEPS: &str = "## How to give your module kfuncs";

/// The fenced blocks of the README's steps, as (info string, text), with `my_module` read as
/// `kfunc_sample`.
fn readme_blocks(checkout: &Path) -> Result<Vec<(String, String)>> {
    let text =
        fs::read_to_string(checkout.join(README)).with_context(|| format!("reading {README}"))?;
    let section = text
        .split_once(STEPS)
        .map(|(_, rest)| rest.split("\n## ").next().unwrap_or(rest))
        .with_context(|| format!("{README} has no section {STEPS:?}"))?;
    let mut blocks = Vec::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.trim_start().strip_prefix("```") else {
            continue;
        };
        let mut body = String::new();
        for line in lines.by_ref() {
            let line = line.trim_start();
            if line.starts_with("```") {
                break;
            }
            body.push_str(line);
            body.push('\n');
        }
        blocks.push((
            info.trim().to_string(),
            body.replace("my_module", "kfunc_sample"),
        ));
    }
    Ok(blocks)
}

/// The one block of `kind` among `blocks`.
fn one_block<'a>(blocks: &'a [(String, String)], kind: &str) -> Result<&'a str> {
    let mut found = blocks.iter().filter(|(k, _)| k == kind);
    match (found.next(), found.next()) {
        (Some((_, body)), None) => Ok(body),
        _ => bail!("{README}: {STEPS:?} must have exactly one ```{kind} block"),
    }
}

/// Runs the README's steps on a fresh copy of the sample; returns the path of kfunc_sample.ko.
///
/// btfgen's cargo target directory in the copy is kept from one run to the next (moved aside
/// and back), so that step 2 builds libbpf once, not on every run.
pub fn build_sample(env: &Env, kernel: &Kernel) -> Result<PathBuf> {
    let (checkout, kdir) = (env.checkout.as_path(), kernel.dir.as_path());
    let blocks = readme_blocks(checkout)?;
    let kbuild = one_block(&blocks, "make")?;
    let path_line = one_block(&blocks, "rust")?;
    let steps: Vec<&str> = blocks
        .iter()
        .filter(|(k, _)| k == "sh")
        .map(|(_, b)| b.as_str())
        .collect();
    if steps.is_empty() {
        bail!("{README}: {STEPS:?} has no ```sh block");
    }

    let base = checkout.join("target/xtask/readme");
    let dir = readme_dir(checkout);
    let kept_target = base.join("btfgen-target");
    let target = dir.join("rust-kfuncs/btfgen/target");
    if target.exists() && !kept_target.exists() {
        fs::rename(&target, &kept_target)?;
    }
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    fs::create_dir_all(&dir)?;
    // The toolkit as a user would get it: the files under version control.
    let toolkit = base.join("toolkit");
    if toolkit.exists() {
        fs::remove_dir_all(&toolkit)?;
    }
    copy_tracked(checkout, &["rust-kfuncs"], &toolkit)?;

    // The module: the sample's crate root with the README's `#[path]`, the README's Kbuild.
    let root = fs::read_to_string(checkout.join(SAMPLE_DIR).join("kfunc_sample.rs"))?;
    let at = root
        .find("#[path = ")
        .context("samples/kfunc_sample/kfunc_sample.rs has no #[path] line")?;
    let end = root[at..]
        .find("mod kfunc_btf;")
        .map(|e| at + e + "mod kfunc_btf;\n".len())
        .context(
            "samples/kfunc_sample/kfunc_sample.rs: #[path] is not followed by mod kfunc_btf;",
        )?;
    let root = format!("{}{}{}", &root[..at], path_line, &root[end..]);
    fs::write(dir.join("kfunc_sample.rs"), root)?;
    fs::write(dir.join("Kbuild"), kbuild)?;

    let rustc = env.cache.join("bin/rustc");
    for (i, step) in steps.iter().enumerate() {
        let mut sh = Command::new("sh");
        sh.arg("-e")
            .arg("-c")
            .arg(step)
            .current_dir(&dir)
            .env("KDIR", kdir)
            .env("KERNEL_RUSTC", &rustc)
            .env("TOOLKIT", toolkit.join("rust-kfuncs"))
            .env("LIBCLANG_PATH", "/usr/lib/llvm-19/lib");
        let result = util::run(&mut sh).with_context(|| {
            format!(
                "{README}: step block {} of {STEPS:?}, against the {} test kernel",
                i + 1,
                kernel.describe()
            )
        });
        // After the copy of step 1, bring back btfgen's build from the last run.
        if kept_target.exists() && dir.join("rust-kfuncs/btfgen").is_dir() && !target.exists() {
            fs::rename(&kept_target, &target)?;
        }
        result?;
    }
    if target.exists() {
        fs::rename(&target, &kept_target)?;
    }
    let ko = sample_ko(checkout);
    if !ko.exists() {
        bail!("{README}'s steps succeeded but left no {}", ko.display());
    }
    write_unresolved(&ko)?;
    Ok(ko)
}

/// Beside `ko`, a copy whose `.BTF_ids` is all zeros: a module `resolve_btfids` never processed,
/// which the toolkit's `register` must refuse at insmod (the guest's
/// `kfunc_sample/insmod_refuses_an_unresolved_set`).
fn write_unresolved(ko: &Path) -> Result<()> {
    let ids = section_bytes(ko, ".BTF_ids")?;
    let zeros = ko.with_extension("BTF_ids.zeros");
    fs::write(&zeros, vec![0u8; ids.len()])?;
    let mut objcopy = Command::new("llvm-objcopy-19");
    objcopy
        .arg(format!("--update-section=.BTF_ids={}", zeros.display()))
        .arg(ko)
        .arg(ko.with_file_name("kfunc_sample-unresolved.ko"));
    let result = util::run(&mut objcopy);
    let _ = fs::remove_file(&zeros);
    result
}

/// `make -C samples/kfunc_sample KDIR=<kdir>`, the sample's wrapper Makefile; returns the path
/// of the kfunc_sample.ko it builds in the checkout.
fn build_sample_with_wrapper(env: &Env, kernel: &Kernel) -> Result<PathBuf> {
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
    let ko = dir.join("kfunc_sample.ko");
    if !ko.exists() {
        bail!("make succeeded but left no {}", ko.display());
    }
    Ok(ko)
}

/// The modules the checks cover, as their `.ko` stems.
const MODULES: [&str; 2] = ["task_kfuncs", "kfunc_sample"];

/// The checks of a build that must stop early, with what its one line must say.
const EARLY_FAILURES: [&str; 2] = [
    "toolkit/wrong_rustc_stops_the_build",
    "toolkit/no_include_stops_the_build",
];

/// The names of the checks [`checks`] records.
pub fn names() -> Vec<String> {
    let mut names: Vec<String> = MODULES
        .iter()
        .flat_map(|stem| {
            [
                format!("toolkit/plain_kbuild_same_btf/{stem}"),
                format!("toolkit/kfuncs_h_fresh/{stem}"),
                format!("toolkit/one_kfunc_tag_per_kfunc/{stem}"),
            ]
        })
        .collect();
    names.push("toolkit/readme_steps_same_module".into());
    names.extend(EARLY_FAILURES.iter().map(|n| n.to_string()));
    names
}

/// The named checks, each with its result, for `cargo xtask test` to record. `ko` is
/// task_kfuncs.ko from `make KDIR=`, `sample` the kfunc_sample.ko of [`build_sample`].
pub fn checks(env: &Env, kernel: &Kernel, ko: &Path, sample: &Path) -> Vec<(String, Result<()>)> {
    let (checkout, kdir) = (env.checkout.as_path(), kernel.dir.as_path());
    let mut out = Vec::new();
    let wrapper_sample = build_sample_with_wrapper(env, kernel);
    out.push((
        "toolkit/readme_steps_same_module".to_string(),
        wrapper_sample
            .as_ref()
            .map_err(|e| anyhow::anyhow!("{e:#}"))
            .and_then(|wrapper| readme_module_is_the_sample(checkout, sample, wrapper))
            .with_context(|| {
                format!(
                    "{README}'s steps on a fresh copy of the sample must build the module \
                     `make KDIR=` builds, and write its checked-in header"
                )
            }),
    ));
    let copy = checkout.join("target/xtask/plain-kbuild");
    let copied = copy_sources(checkout, &copy);
    let modules = [(".", Ok(ko.to_path_buf())), (SAMPLE_DIR, wrapper_sample)];
    for (dir, built) in modules {
        let stem = if dir == "." { MODULES[0] } else { MODULES[1] };
        let name = format!("{stem}.ko");
        let result = copied
            .as_ref()
            .map_err(|e| anyhow::anyhow!("{e:#}"))
            .and_then(|()| built.as_ref().map_err(|e| anyhow::anyhow!("{e:#}")))
            .and_then(|ko| same_btf_as_plain_kbuild(env, kdir, &copy.join(dir), ko));
        out.push((
            format!("toolkit/plain_kbuild_same_btf/{stem}"),
            result.with_context(|| {
                format!(
                    "plain `make -C $KDIR M=` on a fresh copy must give {name} the same \
                     .BTF and .BTF_ids as `make KDIR=`"
                )
            }),
        ));
        // The sample the guest loads: the README-built one.
        let loaded = if dir == "." { ko } else { sample };
        out.push((
            format!("toolkit/one_kfunc_tag_per_kfunc/{stem}"),
            one_kfunc_tag_per_kfunc(checkout, kdir, loaded).with_context(|| {
                format!(
                    "every kfunc of {name}'s sets must be a FUNC of its BTF with exactly one \
                     bpf_kfunc decl tag, as BPF sees it (bpftool)"
                )
            }),
        ));
        out.push((
            format!("toolkit/kfuncs_h_fresh/{stem}"),
            header_is_fresh(checkout, kernel, loaded, &stem).with_context(|| {
                format!(
                    "bpf-tests/progs/[{}/]{stem}.kfuncs.h must be what btfgen --header writes \
                     from {name}'s BTF",
                    kernel.line
                )
            }),
        ));
    }
    out.push((
        EARLY_FAILURES[0].to_string(),
        early_failure(env, kernel, true).context(
            "a build with a rustc other than the kernel's must stop at the include with one \
             line naming both",
        ),
    ));
    out.push((
        EARLY_FAILURES[1].to_string(),
        early_failure(env, kernel, false).context(
            "a build of a crate that mounts kfunc_btf.rs without the include must fail, \
             naming the include",
        ),
    ));
    out
}

/// The README-built sample has the `.BTF` and `.BTF_ids` of the wrapper-built one, and step 9
/// wrote the header the BPF tests check in.
fn readme_module_is_the_sample(checkout: &Path, readme_ko: &Path, wrapper_ko: &Path) -> Result<()> {
    for section in [".BTF", ".BTF_ids"] {
        let readme = section_bytes(readme_ko, section)?;
        let wrapper = section_bytes(wrapper_ko, section)?;
        if readme != wrapper {
            bail!(
                "{section} differs: {} bytes from the README's steps ({}), {} from make KDIR= ({})",
                readme.len(),
                readme_ko.display(),
                wrapper.len(),
                wrapper_ko.display()
            );
        }
    }
    let header = readme_dir(checkout).join("kfunc_sample.kfuncs.h");
    let written = fs::read_to_string(&header)
        .with_context(|| format!("step 9 wrote no {}", header.display()))?;
    let checked_in = fs::read_to_string(checkout.join("bpf-tests/progs/kfunc_sample.kfuncs.h"))?;
    if written != checked_in {
        bail!(
            "{} differs from bpf-tests/progs/kfunc_sample.kfuncs.h",
            header.display()
        );
    }
    Ok(())
}

/// Builds a fresh copy of the sample that must fail early: with a `rustc` that reports another
/// version than the kernel's (`wrong_rustc`), or with a Kbuild without the include. The build
/// must fail, and its output must hold the toolkit's one line about it.
fn early_failure(env: &Env, kernel: &Kernel, wrong_rustc: bool) -> Result<()> {
    let (checkout, cache) = (env.checkout.as_path(), env.cache.as_path());
    let what = if wrong_rustc { "rustc" } else { "include" };
    let dir = checkout.join(format!("target/xtask/early-failure-{what}"));
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    copy_tracked(checkout, &["rust-kfuncs", SAMPLE_DIR], &dir)?;
    let sample = dir.join(SAMPLE_DIR);
    let mut make = util::kernel_make(cache)?;
    make.arg("-C")
        .arg(&kernel.dir)
        .arg(format!("M={}", sample.display()))
        .arg("LLVM=-19")
        .arg(format!(
            "KFUNC_BTFGEN={}",
            checkout.join("target/release/btfgen").display()
        ));
    let expect = if wrong_rustc {
        // A rustc that is another version, as a rustup toolchain first in PATH would be.
        let fake = dir.join("rustc");
        fs::write(
            &fake,
            "#!/bin/sh\necho 'rustc 1.0.0 (00000000 2015-05-15)'\n",
        )?;
        fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        make.arg(format!("RUSTC={}", fake.display()));
        vec![
            "rust-kfuncs: RUSTC=".to_string(),
            "is \"rustc 1.0.0 (00000000 2015-05-15)\" but the kernel in".to_string(),
            "was built with \"rustc ".to_string(),
        ]
    } else {
        fs::write(sample.join("Kbuild"), "obj-m := kfunc_sample.o\n")?;
        make.arg(format!("RUSTC={}", cache.join("bin/rustc").display()));
        vec![
            "rust-kfuncs: this module's Kbuild lacks `include $(src)/rust-kfuncs/kfuncs.mk`"
                .to_string(),
        ]
    };
    make.arg("modules");
    let shown = util::display(&make);
    let out = make
        .output()
        .with_context(|| format!("cannot start `{shown}`"))?;
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        bail!("`{shown}` succeeded:\n{log}");
    }
    if let Some(missing) = expect.iter().find(|e| !log.contains(e.as_str())) {
        bail!("`{shown}` failed without saying {missing:?}:\n{log}");
    }
    if wrong_rustc && log.contains("E0514") {
        bail!("`{shown}` went on to rustc's E0514 errors:\n{log}");
    }
    Ok(())
}

/// Copies the files under version control below `paths` (relative to the checkout) to `dest`,
/// keeping their relative paths and modes.
fn copy_tracked(checkout: &Path, paths: &[&str], dest: &Path) -> Result<()> {
    let mut ls = Command::new("git");
    ls.arg("-C")
        .arg(checkout)
        .args(["ls-files", "--"])
        .args(paths);
    let files = util::output(&mut ls)?;
    if files.is_empty() {
        bail!("git ls-files lists none of {paths:?}");
    }
    for rel in files.lines() {
        let to = dest.join(rel);
        fs::create_dir_all(to.parent().unwrap_or(dest))?;
        fs::copy(checkout.join(rel), &to)
            .with_context(|| format!("copying {rel} to {}", dest.display()))?;
    }
    Ok(())
}

fn copy_sources(checkout: &Path, copy: &Path) -> Result<()> {
    if copy.exists() {
        fs::remove_dir_all(copy).with_context(|| format!("removing {}", copy.display()))?;
    }
    copy_tracked(checkout, COPIED, copy)
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
