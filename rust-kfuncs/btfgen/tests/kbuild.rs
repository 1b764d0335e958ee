// SPDX-License-Identifier: GPL-2.0

//! End to end with Kbuild: a Rust module using `btf_kfunc_set!` (tests/fixtures/module.rs) and
//! `include .../kfuncs.mk` is built against `RUST_KFUNCS_KDIR` with a plain
//! `make -C $KDIR M=$PWD modules`; the include must have run btfgen and resolve_btfids in Kbuild's
//! BTF step, which bpftool and the `.BTF_ids` bytes show.
//!
//! The kernel's Rust toolchain is taken from `RUST_KFUNCS_RUST_BINDIR` (default /usr/bin, Debian's
//! rustc-web), LLVM=-19.

mod common;

use std::path::PathBuf;
use std::process::Command;

use btfgen::btf::{Btf, Kind};
use common::*;
use object::{Object, ObjectSection, ObjectSymbol};

/// `KF_TRUSTED` of the fixture: `KF_TRUSTED_ARGS` (0x10) where the kernel has it, no flag on 7.x.
const TRUSTED: u32 = 0x10;

const KFUNCS: &[(&str, u32)] = &[
    ("btf_kfunc_task_acquire", 0x01 | TRUSTED | 0x04),
    ("btf_kfunc_task_release", 0x02),
    ("btf_kfunc_task_kptr_get", 0x01 | 0x80 | 0x04),
    ("btf_kfunc_task_from_pid", 0x01 | 0x04),
];

#[test]
fn plain_kbuild_runs_btfgen_and_resolve_btfids() {
    let kdir = kdir();
    let dir = scratch("kbuild");
    let toolkit = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap();
    let fixture_source = std::fs::read_to_string(fixture("module.rs")).unwrap();
    assert!(fixture_source.contains("@KFUNC_BTF_RS@"));
    let source = fixture_source.replace(
        "@KFUNC_BTF_RS@",
        &toolkit.join("kfunc_btf.rs").to_string_lossy(),
    );
    std::fs::write(dir.join("btfgen_test.rs"), source).unwrap();
    std::fs::write(
        dir.join("Kbuild"),
        format!(
            "obj-m := btfgen_test.o\nrustflags-y += --cfg kernel_$(VERSION)_$(PATCHLEVEL)\n\
             include {}/kfuncs.mk\n",
            toolkit.display()
        ),
    )
    .unwrap();

    let bindir = std::env::var("RUST_KFUNCS_RUST_BINDIR").unwrap_or("/usr/bin".into());
    let make = run(Command::new("make")
        .arg("-C")
        .arg(&kdir)
        .arg(format!("M={}", dir.display()))
        .arg("LLVM=-19")
        .arg(format!("RUSTC={bindir}/rustc"))
        .arg(format!("HOSTRUSTC={bindir}/rustc"))
        .arg(format!("KFUNC_BTFGEN={}", env!("CARGO_BIN_EXE_btfgen")))
        .arg("-j2")
        .arg("modules"));
    let log =
        String::from_utf8_lossy(&make.stdout).into_owned() + &String::from_utf8_lossy(&make.stderr);
    assert!(!log.contains("warning:"), "the module build warns:\n{log}");
    assert!(!log.contains("WARN:"), "resolve_btfids warns:\n{log}");
    let ko = dir.join("btfgen_test.ko");

    // The FUNCs, as BPF sees them.
    let base = Btf::parse(&kdir.join("vmlinux")).unwrap();
    let data = std::fs::read(&ko).unwrap();
    let file = object::File::parse(&*data).unwrap();
    // 7.x gives an external module a distilled .BTF.base, and .BTF_ids holds the ids of the
    // module's BTF split on it (the kernel relocates both when it loads the module).
    let distilled = btfgen::elf::section(&file, ".BTF.base")
        .unwrap()
        .map(|raw| Btf::from_raw(&raw).unwrap());
    let btf_data = btfgen::elf::btf_section(&file).unwrap().unwrap();
    let btf = match &distilled {
        Some(distilled) => Btf::new_split(&btf_data, distilled).unwrap(),
        None => Btf::new_split(&btf_data, &base).unwrap(),
    };
    let trusted_args = std::fs::read_to_string(ksrc().join("include/linux/btf.h"))
        .unwrap()
        .contains("KF_TRUSTED_ARGS");
    let task = btf.find("task_struct", Kind::Struct).unwrap().unwrap();
    let mut ids = Vec::new();
    for (name, flags) in KFUNCS {
        let id = btf
            .find(name, Kind::Func)
            .unwrap()
            .unwrap_or_else(|| panic!("no FUNC {name}"));
        let proto = btf
            .type_info(btf.type_info(id).unwrap().size_or_type)
            .unwrap();
        let first = btf.type_info(proto.params[0].1).unwrap();
        if name.ends_with("from_pid") {
            assert_eq!(proto.params[0].0, "pid");
        } else {
            assert_eq!(proto.params[0].0, "p");
            assert_eq!(
                first.size_or_type, task,
                "{name}: p must be struct task_struct *"
            );
        }
        let flags = if trusted_args {
            *flags
        } else {
            *flags & !TRUSTED
        };
        ids.push((id, flags));
    }

    // The set, as the kernel will read it: cnt, BTF_SET8_KFUNCS, (id, flags) sorted by id.
    let section = file.section_by_name(".BTF_ids").unwrap();
    let set = file
        .symbols()
        .find(|s| s.name() == Ok("__BTF_ID__set8__BTFGEN_TEST_SET"))
        .unwrap();
    let bytes = &section.data().unwrap()[set.address() as usize..];
    let words: Vec<u32> = bytes
        .chunks(4)
        .take(2 + 2 * KFUNCS.len())
        .map(|w| u32::from_le_bytes(w.try_into().unwrap()))
        .collect();
    ids.sort();
    let mut want = vec![KFUNCS.len() as u32, 1];
    for (id, flags) in ids {
        want.extend([id, flags]);
    }
    assert_eq!(words, want);

    // As the kernel loads it: relocated from a distilled .BTF.base (7.x) onto vmlinux first, which
    // bpftool 7.1 cannot do itself.
    let relocated = dir.join("btfgen_test.btf");
    run(Command::new(env!("CARGO_BIN_EXE_btfgen"))
        .arg("--base")
        .arg(kdir.join("vmlinux"))
        .arg("--relocated-btf")
        .arg(&relocated)
        .arg(&ko));
    let dump = run(Command::new("bpftool")
        .arg("-B")
        .arg(kdir.join("vmlinux"))
        .args(["btf", "dump", "file"])
        .arg(&relocated));
    let dump = String::from_utf8_lossy(&dump.stdout);
    for (name, _) in KFUNCS {
        assert!(dump.contains(&format!("FUNC '{name}'")), "{dump}");
    }
}
