// SPDX-License-Identifier: GPL-2.0

//! rust-kfuncs/kfunc_btf.rs against include/linux/btf_ids.h.
//!
//! The same kfunc sets are declared with `btf_kfunc_set!` (tests/fixtures/layout.rs, built with
//! rustc) and with `BTF_KFUNCS_START`/`BTF_ID_FLAGS`/`BTF_KFUNCS_END` (tests/fixtures/layout.c,
//! built with clang-19 against the kernel source); their `.BTF_ids` sections must match byte for
//! byte, symbol for symbol. The flag constants are checked against include/linux/btf.h, and one
//! set is instantiated in this test binary to check the address `as_ptr()` gives.

mod common;

#[path = "../../kfunc_btf.rs"]
mod kfunc_btf;

use std::path::Path;

use common::*;
use kfunc_btf::*;
use object::{Object, ObjectSection, ObjectSymbol, SectionFlags, SymbolKind};

/// Every `KF_*` flag kfunc_btf.rs defines, by its C name.
const RUST_FLAGS: &[(&str, u32)] = &[
    ("KF_ACQUIRE", KF_ACQUIRE),
    ("KF_RELEASE", KF_RELEASE),
    ("KF_RET_NULL", KF_RET_NULL),
    ("KF_TRUSTED_ARGS", KF_TRUSTED_ARGS),
    ("KF_SLEEPABLE", KF_SLEEPABLE),
    ("KF_DESTRUCTIVE", KF_DESTRUCTIVE),
    ("KF_RCU", KF_RCU),
    ("KF_ITER_NEW", KF_ITER_NEW),
    ("KF_ITER_NEXT", KF_ITER_NEXT),
    ("KF_ITER_DESTROY", KF_ITER_DESTROY),
    ("KF_RCU_PROTECTED", KF_RCU_PROTECTED),
];

/// `#define NAME (1 << N)` lines of a kernel header whose name starts with `prefix`, as
/// (name, value, line).
fn c_flag_defines(header: &Path, prefix: &str) -> Vec<(String, u32, String)> {
    let text = std::fs::read_to_string(header)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", header.display()));
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("#define ") else {
            continue;
        };
        let rest = rest.split("/*").next().unwrap().trim();
        let Some((name, value)) = rest.split_once(char::is_whitespace) else {
            continue;
        };
        if !name.starts_with(prefix) {
            continue;
        }
        let value: String = value.chars().filter(|c| !c.is_whitespace()).collect();
        let shift = value
            .strip_prefix("(1<<")
            .and_then(|v| v.strip_suffix(')'))
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or_else(|| panic!("{}: cannot evaluate {line:?}", header.display()));
        out.push((name.to_owned(), 1 << shift, line.to_owned()));
    }
    out
}

/// Module builds take the flags from the kernel itself (kfuncs.mk, bindgen); the host table of
/// kfunc_btf.rs, which the host fixtures use, must agree with the kernel the tests build against
/// on every flag both have. Lines add and drop flags (7.x: no KF_TRUSTED_ARGS, bits 12-18 new).
#[test]
fn flags_match_include_linux_btf_h() {
    let src = ksrc();
    let c = c_flag_defines(&src.join("include/linux/btf.h"), "KF_");
    let mut common = 0;
    for (name, value, _) in &c {
        if let Some((_, rust)) = RUST_FLAGS.iter().find(|(n, _)| n == name) {
            assert_eq!(
                *rust, *value,
                "{name}: btf.h says {value:#x}, kfunc_btf.rs {rust:#x}"
            );
            common += 1;
        }
    }
    assert!(
        common >= RUST_FLAGS.len() - 1,
        "btf.h lacks more than one flag of kfunc_btf.rs's host table: {c:?}"
    );
    let set8 = c_flag_defines(&src.join("include/linux/btf_ids.h"), "BTF_SET8_KFUNCS");
    assert_eq!(
        set8.iter().map(|(_, v, _)| *v).collect::<Vec<_>>(),
        [BTF_SET8_KFUNCS]
    );
}

/// The `.BTF_ids` section of an object, normalised for comparison.
#[derive(Debug, PartialEq, Eq)]
struct Layout {
    bytes: Vec<u8>,
    sh_flags: u64,
    relocations: usize,
    /// `__BTF_ID__*` symbols: (name without the unique suffix, offset, size, kind, local).
    ids: Vec<(String, u64, u64, SymbolKind, bool)>,
    /// The set labels (`LAYOUT_TASK_SET`, ...): (name, offset).
    labels: Vec<(String, u64)>,
}

fn layout(path: &Path) -> Layout {
    let data = std::fs::read(path).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let section = file
        .section_by_name(".BTF_ids")
        .unwrap_or_else(|| panic!("{}: no .BTF_ids", path.display()));
    let SectionFlags::Elf { sh_flags } = section.flags() else {
        panic!("not ELF");
    };
    let mut ids = Vec::new();
    let mut labels = Vec::new();
    for sym in file
        .symbols()
        .filter(|s| s.section_index() == Some(section.index()))
    {
        let name = sym.name().unwrap();
        if name.is_empty() || sym.kind() == SymbolKind::Section {
            continue;
        }
        let unique_kind = ["__BTF_ID__func__", "__BTF_ID__struct__"]
            .into_iter()
            .find_map(|k| name.strip_prefix(k).map(|rest| (k, rest)));
        if let Some((kind, rest)) = unique_kind {
            let (base, unique) = rest.rsplit_once("__").expect("no unique suffix");
            assert!(
                !unique.is_empty() && !unique.contains('_'),
                "{name}: resolve_btfids needs a suffix without '_'"
            );
            ids.push((
                format!("{kind}{base}"),
                sym.address(),
                sym.size(),
                sym.kind(),
                sym.is_local(),
            ));
        } else if name.starts_with("__BTF_ID__") {
            ids.push((
                name.to_owned(),
                sym.address(),
                sym.size(),
                sym.kind(),
                sym.is_local(),
            ));
        } else if !name.starts_with("__rust_kfuncs_dtor") {
            // The labels `btf_dtor_list!` adds for btfgen and for one list per module have no
            // C counterpart; resolve_btfids ignores them.
            labels.push((name.to_owned(), sym.address()));
        }
    }
    ids.sort_by_key(|s| (s.1, s.0.clone()));
    labels.sort();
    Layout {
        bytes: section.data().unwrap().to_vec(),
        sh_flags,
        relocations: section.relocations().count(),
        ids,
        labels,
    }
}

/// Compiles tests/fixtures/layout.c with the kernel's btf_ids.h.
fn c_object(dir: &Path) -> std::path::PathBuf {
    let src = ksrc();
    let stub = btf_ids_h_stub(dir);
    let flags: String = c_flag_defines(&src.join("include/linux/btf.h"), "KF_")
        .into_iter()
        .map(|(_, _, line)| line + "\n")
        .collect();
    std::fs::write(stub.join("kf_flags.h"), flags).unwrap();

    clang_obj(dir, "layout.c", &stub, false)
}

#[test]
fn rust_sets_match_the_c_macros() {
    let dir = scratch("layout");
    let c = layout(&c_object(&dir));
    let rust = layout(&rustc_obj(&dir, "layout.rs", &[], false));

    // Sanity: the C side is what the test expects, so equality below means something.
    assert_eq!(c.bytes.len(), (8 + 5 * 8) + (8 + 2 * 8) + 8);
    assert_eq!(c.ids.len(), 2 + 5 + 2 + 2);

    assert_eq!(rust.bytes, c.bytes, ".BTF_ids bytes differ");
    assert_eq!(rust.sh_flags, c.sh_flags, "section flags differ");
    assert_eq!(
        rust.sh_flags,
        u64::from(object::elf::SHF_ALLOC),
        "section must be \"a\""
    );
    assert_eq!((rust.relocations, c.relocations), (0, 0));
    assert_eq!(rust.ids, c.ids, "__BTF_ID__ symbols differ");
    // The labels sit at the same place; Rust's are global (hidden) so the static can refer to
    // them from any codegen unit, C's are local.
    assert_eq!(rust.labels, c.labels, "set labels differ");
}

#[test]
fn btfgen_finds_the_destructor_list() {
    let dir = scratch("dtors");
    let obj = rustc_obj(&dir, "layout.rs", &[], false);
    let data = std::fs::read(&obj).unwrap();
    let ids = btfgen::elf::btf_ids(&object::File::parse(&*data).unwrap()).unwrap();
    assert_eq!(
        ids.dtors,
        [("layout_obj".to_owned(), "layout_obj_release".to_owned())]
    );
    assert_eq!(ids.structs, ["layout_obj"]);
    assert!(ids.kfuncs.contains("layout_acquire"));
    assert!(
        !ids.kfuncs.contains("layout_obj_release"),
        "a destructor listed in no set is no kfunc"
    );
}

#[no_mangle]
extern "C" fn layout_host_a() {}

#[no_mangle]
extern "C" fn layout_host_b() {}

btf_kfunc_set! {
    /// A set in this test binary.
    static HOST_SET = {
        layout_host_a: KF_ACQUIRE | KF_RET_NULL,
        layout_host_b: KF_RELEASE,
    };
}

#[test]
fn as_ptr_is_the_set_in_a_linked_binary() {
    assert_eq!(HOST_SET.len(), 2);
    assert!(!HOST_SET.is_empty());
    let ptr = HOST_SET.as_ptr().cast::<u32>();
    assert!(!ptr.is_null());
    // SAFETY: `as_ptr()` points at the set's `struct btf_id_set8` with two pairs: 6 words.
    let words = unsafe { std::slice::from_raw_parts(ptr, 6) };
    // cnt and the ids are zero until resolve_btfids runs; the flags words are in place.
    assert_eq!(
        words,
        [
            0,
            BTF_SET8_KFUNCS,
            0,
            KF_ACQUIRE | KF_RET_NULL,
            0,
            KF_RELEASE
        ]
    );
}
