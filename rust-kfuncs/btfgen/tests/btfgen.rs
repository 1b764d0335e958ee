// SPDX-License-Identifier: GPL-2.0

//! btfgen against real objects: a Rust fixture compiled at test time (tests/fixtures/kfuncs.rs)
//! and the vmlinux of `RUST_KFUNCS_KDIR`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use btfgen::btf::{Btf, Kind, TypeInfo};
use btfgen::{elf, Options, Outcome};
use common::*;
use object::{Object, ObjectSection, ObjectSymbol};

const BTF_KIND_PTR: u32 = 2;
const BTF_KIND_FUNC: u32 = 12;
const BTF_KIND_FUNC_PROTO: u32 = 13;
/// pahole gives every FUNC static linkage (a Debian 6.12 vmlinux has
/// `FUNC 'bpf_task_acquire' ... linkage=static`), kfuncs included; btfgen does the same.
const BTF_FUNC_STATIC: u16 = 0;

/// The fixture's set, with the flags `btf_kfunc_set!` lists.
const KFUNCS: &[(&str, u32)] = &[
    ("kf_task_acquire", 0x01 | 0x10 | 0x04),
    ("kf_task_release", 0x02),
    ("kf_task_from_pid", 0x01 | 0x04),
    ("kf_test_ints", 0),
];

fn btfgen(module: &Path, output: &Path) -> anyhow::Result<Outcome> {
    btfgen::run(&Options {
        base: vmlinux(),
        module: module.to_owned(),
        output: Some(output.to_owned()),
        objcopy: OBJCOPY.into(),
        allow_no_kfuncs: false,
        btf: None,
    })
}

fn read_btf_section(path: &Path) -> Vec<u8> {
    let data = std::fs::read(path).unwrap();
    let file = object::File::parse(&*data).unwrap();
    elf::btf_section(&file).unwrap().expect("no .BTF section")
}

/// The FUNC named `name` in `btf` and its FUNC_PROTO.
fn func(btf: &Btf<'_>, name: &str) -> (u32, TypeInfo, TypeInfo) {
    let id = btf
        .find(name, Kind::Func)
        .unwrap()
        .unwrap_or_else(|| panic!("no FUNC {name}"));
    let f = btf.type_info(id).unwrap();
    assert_eq!(f.kind, BTF_KIND_FUNC);
    let proto = btf.type_info(f.size_or_type).unwrap();
    assert_eq!(
        proto.kind, BTF_KIND_FUNC_PROTO,
        "{name}: FUNC does not point at a FUNC_PROTO"
    );
    (id, f, proto)
}

/// Generates BTF for the fixture module; returns (dir, input, output).
fn generated(cfgs: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
    let dir = scratch("btfgen");
    let module = fixture_module(&dir, cfgs);
    let out = dir.join("out.ko");
    let outcome = btfgen(&module, &out).unwrap();
    assert_eq!(outcome.added.len(), KFUNCS.len());
    (dir, module, out)
}

#[test]
fn finds_the_set_and_its_kfuncs() {
    let dir = scratch("symbols");
    let module = fixture_module(&dir, &["extra"]);
    let data = std::fs::read(&module).unwrap();
    let ids = elf::btf_ids(&object::File::parse(&*data).unwrap()).unwrap();
    assert_eq!(ids.sets, ["TEST_KFUNC_SET", "EXTRA_SET"]);
    let mut want: Vec<_> = KFUNCS.iter().map(|(n, _)| n.to_string()).collect();
    want.push("kf_task_from_vpid".into());
    assert_eq!(ids.funcs, want);
}

#[test]
fn writes_a_func_and_proto_per_kfunc_on_vmlinux_types() {
    let (_dir, _, out) = generated(&[]);
    let base = Btf::parse(&vmlinux()).unwrap();
    let btf = Btf::new_split(&read_btf_section(&out), &base).unwrap();
    let start = btf.start_id();
    assert_eq!(
        start,
        base.type_cnt(),
        "module BTF must be split on vmlinux"
    );

    let task = base.find("task_struct", Kind::Struct).unwrap().unwrap();
    let int = base.find("int", Kind::Int).unwrap().unwrap();
    let is_task_ptr = |id: u32| {
        let t = btf.type_info(id).unwrap();
        t.kind == BTF_KIND_PTR && t.size_or_type == task
    };

    for (name, _) in KFUNCS {
        let (id, f, _) = func(&btf, name);
        assert!(
            id >= start,
            "{name}: FUNC must be in the module part, got id {id}"
        );
        assert_eq!(f.vlen, BTF_FUNC_STATIC, "{name}: linkage must be pahole's");
    }

    let (_, _, acquire) = func(&btf, "kf_task_acquire");
    assert!(
        is_task_ptr(acquire.size_or_type),
        "acquire must return struct task_struct *"
    );
    assert_eq!(acquire.params.len(), 1);
    assert_eq!(acquire.params[0].0, "p");
    assert!(is_task_ptr(acquire.params[0].1));

    let (_, _, release) = func(&btf, "kf_task_release");
    assert_eq!(release.size_or_type, 0, "release must return void");
    assert_eq!(release.params[0].0, "p");
    assert!(is_task_ptr(release.params[0].1));

    let (_, _, from_pid) = func(&btf, "kf_task_from_pid");
    assert!(is_task_ptr(from_pid.size_or_type));
    assert_eq!(from_pid.params, [("pid".to_owned(), int)]);

    let (_, _, ints) = func(&btf, "kf_test_ints");
    assert_eq!(ints.size_or_type, int);
    let names: Vec<_> = ints
        .params
        .iter()
        .map(|(p, id)| (p.as_str(), base.type_info(*id).unwrap().name))
        .collect();
    // The spelling is clang's for a clang-built kernel, GCC's otherwise.
    let expect = [
        ("a", &["unsigned int"][..]),
        ("b", &["long long", "long long int"]),
        ("c", &["unsigned long long", "long long unsigned int"]),
        ("d", &["unsigned long", "long unsigned int"]),
        ("e", &["_Bool"]),
    ];
    assert_eq!(names.len(), expect.len());
    for ((p, ty), (ep, ety)) in names.iter().zip(expect) {
        assert_eq!(*p, ep);
        assert!(
            ety.contains(&ty.as_str()),
            "parameter {p}: got vmlinux type {ty}"
        );
    }
}

#[test]
fn bpftool_reads_the_generated_btf() {
    let (_dir, _, out) = generated(&[]);
    let bpftool = ["/usr/sbin/bpftool", "bpftool"]
        .into_iter()
        .find(|b| Command::new(b).arg("version").output().is_ok())
        .expect("bpftool not found: install it (apt-get install bpftool)");
    let dump = run(Command::new(bpftool)
        .arg("-B")
        .arg(vmlinux())
        .args(["btf", "dump", "file"])
        .arg(&out));
    let dump = String::from_utf8(dump.stdout).unwrap();
    for (name, _) in KFUNCS {
        assert!(
            dump.contains(&format!("FUNC '{name}' type_id=")) && dump.contains("linkage=static"),
            "bpftool does not show FUNC {name}:\n{dump}"
        );
    }
    assert!(dump.contains("'pid' type_id="), "{dump}");
    // Each FUNC is followed by its bpf_kfunc tag, as pahole writes a C kfunc.
    let lines: Vec<_> = dump.lines().collect();
    for (name, _) in KFUNCS {
        let at = lines
            .iter()
            .position(|l| l.contains(&format!("FUNC '{name}' type_id=")))
            .unwrap();
        let id = lines[at].trim_start_matches('[').split(']').next().unwrap();
        let want = format!("DECL_TAG 'bpf_kfunc' type_id={id} component_idx=-1");
        assert_eq!(
            lines
                .get(at + 1)
                .and_then(|l| l.split_once("] "))
                .map(|x| x.1),
            Some(want.as_str()),
            "{name}"
        );
    }
}

#[test]
fn a_second_run_changes_nothing() {
    let (dir, _, out) = generated(&[]);
    let again = dir.join("again.ko");
    let outcome = btfgen(&out, &again).unwrap();
    assert!(
        outcome.added.is_empty(),
        "second run added {:?}",
        outcome.added
    );
    assert_eq!(outcome.already_present.len(), KFUNCS.len());
    assert_eq!(read_btf_section(&out), read_btf_section(&again));
}

#[test]
fn appends_to_existing_module_btf() {
    let (dir, _, out) = generated(&[]);
    // The fixture with one more kfunc, carrying the BTF of the first run, stands for a module
    // whose .BTF already has types (from pahole for its C objects).
    let obj = rustc_obj(&dir, "kfuncs.rs", &["extra"], true);
    let old = read_btf_section(&out);
    let old_path = dir.join("old.btf");
    std::fs::write(&old_path, &old).unwrap();
    let module = dir.join("extra.ko");
    run(Command::new(OBJCOPY)
        .arg("--add-section")
        .arg(format!(".BTF={}", old_path.display()))
        .arg(&obj)
        .arg(&module));
    let out2 = dir.join("extra-out.ko");
    let outcome = btfgen(&module, &out2).unwrap();
    let added: Vec<_> = outcome.added.iter().map(|(p, _)| p.name.as_str()).collect();
    assert_eq!(added, ["kf_task_from_vpid"]);
    assert_eq!(outcome.already_present.len(), KFUNCS.len());

    let base = Btf::parse(&vmlinux()).unwrap();
    let before = Btf::new_split(&old, &base).unwrap();
    let after = Btf::new_split(&read_btf_section(&out2), &base).unwrap();
    for (name, _) in KFUNCS {
        assert_eq!(
            func(&before, name).0,
            func(&after, name).0,
            "{name} changed id"
        );
    }
    let (id, _, _) = func(&after, "kf_task_from_vpid");
    assert!(id >= before.type_cnt(), "new FUNC must be appended");
}

#[test]
fn resolve_btfids_patches_the_rust_set() {
    let (_dir, _, out) = generated(&[]);
    resolve_btfids(&out);

    let base = Btf::parse(&vmlinux()).unwrap();
    let btf = Btf::new_split(&read_btf_section(&out), &base).unwrap();
    let data = std::fs::read(&out).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let section = file.section_by_name(".BTF_ids").unwrap();
    let bytes = section.data().unwrap();
    let word =
        |off: u64| u32::from_le_bytes(bytes[off as usize..off as usize + 4].try_into().unwrap());

    // set8 header: cnt patched in, BTF_SET8_KFUNCS kept.
    let set = file
        .symbols()
        .find(|s| s.name() == Ok("__BTF_ID__set8__TEST_KFUNC_SET"))
        .unwrap();
    assert_eq!(word(set.address()), KFUNCS.len() as u32, "cnt");
    assert_eq!(word(set.address() + 4), 1, "BTF_SET8_KFUNCS");

    // Each pair holds the FUNC id and, next to it, that kfunc's flags; pairs sorted by id.
    let mut pairs = Vec::new();
    for i in 0..KFUNCS.len() as u64 {
        pairs.push((
            word(set.address() + 8 + 8 * i),
            word(set.address() + 12 + 8 * i),
        ));
    }
    assert!(
        pairs.windows(2).all(|w| w[0].0 < w[1].0),
        "pairs not sorted: {pairs:?}"
    );
    for (name, flags) in KFUNCS {
        let (id, _, _) = func(&btf, name);
        assert!(
            pairs.contains(&(id, *flags)),
            "{name}: no pair ({id}, {flags:#x}) in {pairs:?}"
        );
    }
}

#[test]
fn an_unmappable_type_is_an_error() {
    let dir = scratch("badtype");
    let module = fixture_module(&dir, &["bad_type"]);
    let err = btfgen(&module, &dir.join("out.ko")).unwrap_err();
    let msg = format!("{err:#}");
    for part in ["kf_bad_float", "parameter x", "f32"] {
        assert!(msg.contains(part), "error {msg:?} does not name {part:?}");
    }
    assert!(
        !dir.join("out.ko").exists(),
        "nothing must be written on error"
    );
}

#[test]
fn a_narrow_integer_parameter_is_an_error_naming_the_wrapper() {
    let dir = scratch("narrow");
    let module = fixture_module(&dir, &["bad_narrow"]);
    let msg = format!("{:#}", btfgen(&module, &dir.join("out.ko")).unwrap_err());
    assert!(
        msg.contains("kfunc kf_bad_narrow: parameter x") && msg.contains("take kfunc_btf::KfuncU8"),
        "{msg}"
    );
}

/// The error btfgen gives for the fixture under `--cfg cfg` (one refused kfunc).
fn refusal(cfg: &str) -> String {
    let dir = scratch(cfg);
    let module = fixture_module(&dir, &[cfg]);
    let err = btfgen(&module, &dir.join("out.ko")).unwrap_err();
    assert!(
        !dir.join("out.ko").exists(),
        "nothing must be written on error"
    );
    format!("{err:#}")
}

/// Each refused shape: the error names the kfunc, where the type is, the type as Rust spells
/// it, why it is refused and what to write instead.
macro_rules! refuses {
    ($($test:ident: $cfg:literal, $at:literal, $ty:literal, [$($part:literal),+];)+) => {
        $(
            #[test]
            fn $test() {
                let msg = refusal($cfg);
                for part in [concat!("kfunc kf_refused: ", $at, ": `"), $ty, " is refused: ", $($part),+] {
                    assert!(msg.contains(part), "error {msg:?} does not say {part:?}");
                }
            }
        )+
    };
}

refuses! {
    refuses_a_shared_reference_parameter:
        "refused_ref", "parameter p", "&kfuncs::task_struct", ["never NULL", "take `*const T` or `*mut T`"];
    refuses_a_mutable_reference_parameter:
        "refused_mut_ref", "parameter p", "&mut kfuncs::task_struct", ["nobody writes", "take `*const T` or `*mut T`"];
    refuses_a_static_reference_return:
        "refused_static_ref_return", "return type", "&kfuncs::task_struct", ["lives until the program releases it", "return `*mut T` or `*const T`"];
    refuses_a_mutable_reference_return:
        "refused_mut_ref_return", "return type", "&mut kfuncs::task_struct", ["return `*mut T`"];
    refuses_an_optional_reference:
        "refused_option_ref", "parameter p", "Option<&kfuncs::task_struct>", ["take `*const T` or `*mut T`"];
    refuses_non_null:
        "refused_non_null", "parameter p", "NonNull<kfuncs::task_struct>", ["passes NULL", "NonNull::new()"];
    refuses_an_optional_non_null:
        "refused_option_non_null", "parameter p", "Option<core::ptr::non_null::NonNull<kfuncs::task_struct>>", ["Rust enum", "take `*mut T`"];
    refuses_a_double_pointer:
        "refused_double_pointer", "parameter p", "*mut *mut kfuncs::task_struct", ["no pointer to a pointer", "`*mut c_void`"];
    refuses_a_function_pointer:
        "refused_fn_pointer", "parameter f", "extern \"C\" fn(i32) -> i32", ["callbacks"];
    refuses_a_slice_pointer:
        "refused_slice_pointer", "parameter s", "*const [u8]", ["two words", "`__sz`"];
    refuses_a_str_reference:
        "refused_str", "parameter s", "&str", ["never NULL"];
    refuses_a_struct_by_value:
        "refused_struct_by_value", "parameter s", "Pair", ["by value", "take a pointer"];
    refuses_a_pointer_to_a_generic_struct:
        "refused_generic_pointer", "parameter p", "*mut kfuncs::Generic<u32>", ["C identifier"];
}

#[test]
fn a_kfunc_without_dwarf_is_an_error() {
    let dir = scratch("nodwarf");
    let module = add_empty_btf(&rustc_obj(&dir, "kfuncs.rs", &[], false));
    let err = btfgen(&module, &dir.join("out.ko")).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("kf_task_acquire") && msg.contains("no DW_TAG_subprogram"),
        "{msg}"
    );
}

#[test]
fn a_kfunc_merged_into_another_is_an_error_that_says_why() {
    let dir = scratch("merged");
    let module = fixture_module(&dir, &["merged"]);
    let msg = format!("{:#}", btfgen(&module, &dir.join("out.ko")).unwrap_err());
    assert!(
        msg.contains("kf_task_kptr_get")
            && msg.contains("merged it with kf_task_acquire")
            && msg.contains("-Zmerge-functions=disabled"),
        "{msg}"
    );
}

#[test]
fn a_kfunc_named_like_a_vmlinux_function_is_an_error() {
    let dir = scratch("clash");
    let module = fixture_module(&dir, &["bad_name"]);
    let msg = format!("{:#}", btfgen(&module, &dir.join("out.ko")).unwrap_err());
    assert!(
        msg.contains("bpf_task_acquire") && msg.contains("vmlinux function"),
        "{msg}"
    );
}

#[test]
fn a_module_without_btf_section_is_an_error() {
    let dir = scratch("nobtf");
    let obj = rustc_obj(&dir, "kfuncs.rs", &[], true);
    let msg = format!("{:#}", btfgen(&obj, &dir.join("out.ko")).unwrap_err());
    assert!(msg.contains("CONFIG_DEBUG_INFO_BTF_MODULES"), "{msg}");
}

#[test]
fn the_cli_rewrites_in_place() {
    let dir = scratch("cli");
    let module = fixture_module(&dir, &[]);
    let before = read_btf_section(&module);
    let out = run(Command::new(env!("CARGO_BIN_EXE_btfgen"))
        .arg("--base")
        .arg(vmlinux())
        .arg("--objcopy")
        .arg(OBJCOPY)
        .arg("-v")
        .arg(&module));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("added BTF for 4 function(s) and 0 struct(s) of set(s) TEST_KFUNC_SET"),
        "{stdout}"
    );
    assert!(
        stdout.contains("struct task_struct *kf_task_acquire(struct task_struct *p)"),
        "{stdout}"
    );
    assert_ne!(read_btf_section(&module), before, "module not rewritten");

    let bad = fixture_module(&scratch("cli-bad"), &["bad_type"]);
    let out = Command::new(env!("CARGO_BIN_EXE_btfgen"))
        .arg("--base")
        .arg(vmlinux())
        .arg(&bad)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "btfgen must fail on an unmappable kfunc"
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("btfgen: error: kfunc kf_bad_float"),
        "{stderr}"
    );
}

#[test]
fn a_distilled_base_is_relocated_and_written_again() {
    // A module as pahole >= 1.28 writes it: .BTF split on a distilled .BTF.base (made here with
    // libbpf's btf__distill_base(), as pahole does), carrying the BTF of a first btfgen run.
    let (dir, module) = distilled_module(&["extra"]);
    let base = Btf::parse(&vmlinux()).unwrap();

    let out2 = dir.join("distilled-out.ko");
    let outcome = btfgen(&module, &out2).unwrap();
    let added: Vec<_> = outcome.added.iter().map(|(p, _)| p.name.as_str()).collect();
    assert_eq!(added, ["kf_task_from_vpid"]);
    assert_eq!(outcome.already_present.len(), KFUNCS.len());

    // Still a distilled base, far smaller than vmlinux's BTF...
    let data = std::fs::read(&out2).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let new_base = elf::section(&file, ".BTF.base")
        .unwrap()
        .expect("no .BTF.base");
    let distilled = Btf::from_raw(&new_base).unwrap();
    assert!(
        distilled.type_cnt() < base.type_cnt() / 10,
        "{} types in the distilled base, {} in vmlinux",
        distilled.type_cnt(),
        base.type_cnt()
    );
    // ...and relocated onto vmlinux, as the kernel does on load, every kfunc has its prototype
    // on vmlinux's task_struct.
    let module_btf = btfgen::module_btf(&base, &file).unwrap().unwrap();
    assert!(module_btf.distilled);
    let task = base.find("task_struct", Kind::Struct).unwrap().unwrap();
    for name in ["kf_task_acquire", "kf_task_from_vpid"] {
        let (id, _, proto) = func(&module_btf.btf, name);
        let ret = module_btf.btf.type_info(proto.size_or_type).unwrap();
        assert_eq!(
            (ret.kind, ret.size_or_type),
            (BTF_KIND_PTR, task),
            "{name}: must return a pointer to vmlinux's task_struct"
        );
        assert!(module_btf
            .btf
            .c_declaration(id)
            .unwrap()
            .starts_with("struct task_struct *"));
    }
}

/// The `STRUCT` named `name` in the module part of `btf`.
fn module_struct(btf: &Btf<'_>, name: &str) -> (u32, TypeInfo) {
    let id = btf
        .find(name, Kind::Struct)
        .unwrap()
        .unwrap_or_else(|| panic!("no STRUCT {name}"));
    assert!(
        id >= btf.start_id(),
        "{name}: must be the module's own type"
    );
    (id, btf.type_info(id).unwrap())
}

/// Generates BTF for the fixture with its own structs; returns (dir, output, outcome).
fn generated_objects() -> (PathBuf, PathBuf, Outcome) {
    let dir = scratch("objects");
    let module = fixture_module(&dir, &["module_obj"]);
    let out = dir.join("out.ko");
    let outcome = btfgen(&module, &out).unwrap();
    (dir, out, outcome)
}

#[test]
fn writes_the_modules_own_structs_with_the_members_bpf_can_read() {
    let (_dir, out, outcome) = generated_objects();
    let base = Btf::parse(&vmlinux()).unwrap();
    let btf = Btf::new_split(&read_btf_section(&out), &base).unwrap();
    let (obj, info) = module_struct(&btf, "kf_obj");
    assert_eq!(info.size_or_type, 56, "the Rust struct's size");
    let members: Vec<_> = info
        .members
        .iter()
        .map(|(n, ty, off)| (n.as_str(), btf.c_type(*ty).unwrap(), *off))
        .collect();
    let int = |names: &[&str], got: &str| names.iter().any(|n| format!("{n} ") == got);
    assert_eq!(
        members.iter().map(|m| (m.0, m.2)).collect::<Vec<_>>(),
        [
            ("value", 0),
            ("refs", 64),
            ("flag", 96),
            ("small", 112),
            ("owner", 128),
            ("pair", 256),
            ("link", 320)
        ]
    );
    assert!(int(
        &["unsigned long long", "long long unsigned int"],
        &members[0].1
    ));
    assert!(int(&["unsigned int"], &members[1].1), "{:?}", members[1]);
    assert!(int(&["unsigned char"], &members[2].1), "{:?}", members[2]);
    assert!(
        int(&["short", "short int"], &members[3].1),
        "{:?}",
        members[3]
    );
    assert_eq!(members[4].1, "struct task_struct *");
    assert!(int(&["unsigned int"], &members[5].1), "{:?}", members[5]);
    assert_eq!(members[6].1, "struct list_head ");
    let (_, omitted) = outcome
        .structs
        .iter()
        .find(|(n, id, _)| n == "kf_obj" && *id == obj)
        .map(|(_, _, o)| ((), o))
        .expect("outcome lists kf_obj");
    let omitted: Vec<_> = omitted
        .iter()
        .map(|o| o.split(':').next().unwrap())
        .collect();
    assert_eq!(omitted, ["next", "bytes"]);

    // The kfuncs take and return the module's type.
    let (_, _, new) = func(&btf, "kf_obj_new");
    let ret = btf.type_info(new.size_or_type).unwrap();
    assert_eq!((ret.kind, ret.size_or_type), (BTF_KIND_PTR, obj));
    let (_, info2) = module_struct(&btf, "kf_obj2");
    assert_eq!(info2.size_or_type, 4);
}

#[test]
fn a_destructor_in_no_set_gets_a_func_but_no_kfunc_tag() {
    let (_dir, out, _) = generated_objects();
    let base = Btf::parse(&vmlinux()).unwrap();
    let btf = Btf::new_split(&read_btf_section(&out), &base).unwrap();
    let tags = btf.decl_tags().unwrap();
    let tagged = |id: u32| tags.contains(&(btfgen::KFUNC_TAG.to_owned(), id, -1));
    let (dtor, _, _) = func(&btf, "kf_obj2_dtor");
    assert!(!tagged(dtor), "kf_obj2_dtor is no kfunc");
    for name in ["kf_obj_new", "kf_obj_release"] {
        assert!(tagged(func(&btf, name).0), "{name} is a kfunc");
    }
    let header = btfgen::header(&vmlinux(), &out, "__T_H").unwrap();
    assert!(!header.contains("kf_obj2_dtor"), "{header}");
}

#[test]
fn resolve_btfids_fills_the_destructor_list() {
    let (_dir, out, _) = generated_objects();
    resolve_btfids(&out);
    let base = Btf::parse(&vmlinux()).unwrap();
    let btf = Btf::new_split(&read_btf_section(&out), &base).unwrap();
    let data = std::fs::read(&out).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let bytes = file.section_by_name(".BTF_ids").unwrap().data().unwrap();
    let list = file
        .symbols()
        .find(|s| s.name() == Ok("OBJ_DTORS"))
        .unwrap()
        .address() as usize;
    let words: Vec<u32> = bytes[list..list + 16]
        .chunks(4)
        .map(|w| u32::from_le_bytes(w.try_into().unwrap()))
        .collect();
    let want = [
        module_struct(&btf, "kf_obj").0,
        func(&btf, "kf_obj_release").0,
        module_struct(&btf, "kf_obj2").0,
        func(&btf, "kf_obj2_dtor").0,
    ];
    assert_eq!(words, want, "(struct, destructor) ids");
}

#[test]
fn the_header_defines_the_modules_structs_as_btf_lays_them_out() {
    let (dir, out, _) = generated_objects();
    let header = btfgen::header(&vmlinux(), &out, "__KFUNCS_H").unwrap();
    assert!(header.contains("struct kf_obj {\n"), "{header}");
    assert!(
        header.contains("\tunsigned char __pad_16[0]")
            || header.contains("\tstruct task_struct *owner;"),
        "{header}"
    );
    // clang must agree with the static assertions the header carries.
    let bpftool = ["/usr/sbin/bpftool", "bpftool"]
        .into_iter()
        .find(|b| Command::new(b).arg("version").output().is_ok())
        .expect("bpftool not found: install it (apt-get install bpftool)");
    let vmlinux_h = run(Command::new(bpftool)
        .args(["btf", "dump", "file"])
        .arg(vmlinux())
        .args(["format", "c"]));
    std::fs::write(dir.join("vmlinux.h"), &vmlinux_h.stdout).unwrap();
    std::fs::write(dir.join("kfuncs.h"), &header).unwrap();
    std::fs::write(
        dir.join("prog.c"),
        "#include \"vmlinux.h\"\n#include \"kfuncs.h\"\n\
         unsigned long long f(struct kf_obj *o) { return o->value + o->refs + o->small; }\n",
    )
    .unwrap();
    run(Command::new("clang-19")
        .args(["-target", "bpf", "-O2", "-c", "-o"])
        .arg(dir.join("prog.o"))
        .arg(dir.join("prog.c")));
}

#[test]
fn a_destructor_for_a_vmlinux_type_is_an_error_naming_the_limit() {
    let dir = scratch("vmlinux-dtor");
    let module = fixture_module(&dir, &["vmlinux_dtor"]);
    let msg = format!("{:#}", btfgen(&module, &dir.join("out.ko")).unwrap_err());
    for part in [
        "destructor kf_task_release for struct task_struct",
        "vmlinux type",
        "BTF that owns its type",
        "struct of the module's own",
    ] {
        assert!(msg.contains(part), "error {msg:?} does not say {part:?}");
    }
}

#[test]
fn bindgen_layouts_are_checked_against_vmlinux() {
    let dir = scratch("layout-good");
    let module = fixture_module(&dir, &["good_layout"]);
    btfgen(&module, &dir.join("out.ko")).unwrap();

    let dir = scratch("layout-bad");
    let module = fixture_module(&dir, &["bad_layout"]);
    let msg = format!("{:#}", btfgen(&module, &dir.join("out.ko")).unwrap_err());
    for part in [
        "bindgen's layouts of kernel types differ from vmlinux's BTF in 2 place(s)",
        "struct list_head: prev at byte 0 in Rust, 8 in vmlinux",
        "struct list_head: next at byte 8 in Rust, 0 in vmlinux",
    ] {
        assert!(msg.contains(part), "error {msg:?} does not say {part:?}");
    }
    assert!(
        !dir.join("out.ko").exists(),
        "nothing must be written on error"
    );
}

#[test]
fn a_module_struct_with_a_vmlinux_name_and_another_layout_is_an_error() {
    let dir = scratch("vmlinux-name");
    let module = fixture_module(&dir, &["vmlinux_name"]);
    let msg = format!("{:#}", btfgen(&module, &dir.join("out.ko")).unwrap_err());
    for part in [
        "struct list_head: the module's is 1 bytes, vmlinux's 16",
        "rename the module's struct",
    ] {
        assert!(msg.contains(part), "error {msg:?} does not say {part:?}");
    }
}

#[test]
fn relocated_btf_is_the_module_btf_split_on_vmlinux() {
    // A module with a distilled .BTF.base, as 7.x writes an external module.
    let (dir, module) = distilled_module(&[]);
    let base = Btf::parse(&vmlinux()).unwrap();

    let raw = dir.join("relocated.btf");
    run(Command::new(env!("CARGO_BIN_EXE_btfgen"))
        .arg("--base")
        .arg(vmlinux())
        .arg("--relocated-btf")
        .arg(&raw)
        .arg(&module));
    // Split on vmlinux as it is: each kfunc points at vmlinux's task_struct.
    let btf = Btf::new_split(&std::fs::read(&raw).unwrap(), &base).unwrap();
    let task = base.find("task_struct", Kind::Struct).unwrap().unwrap();
    let (_, _, acquire) = func(&btf, "kf_task_acquire");
    let ret = btf.type_info(acquire.size_or_type).unwrap();
    assert_eq!((ret.kind, ret.size_or_type), (BTF_KIND_PTR, task));
}

/// btfgen on the fixture under `--cfg cfg`, with the vmlinux of the test kernel presented as
/// a kernel of release `release` (a build directory of its own with that kernel.release).
fn btfgen_as_release(cfg: &str, release: &str) -> anyhow::Result<Outcome> {
    let dir = scratch(&format!("{cfg}-{release}"));
    let kdir = dir.join("kdir");
    std::fs::create_dir_all(kdir.join("include/config")).unwrap();
    std::fs::write(kdir.join("include/config/kernel.release"), release).unwrap();
    std::os::unix::fs::symlink(vmlinux(), kdir.join("vmlinux")).unwrap();
    let module = fixture_module(&dir, &[cfg]);
    btfgen::run(&Options {
        base: kdir.join("vmlinux"),
        module,
        output: Some(dir.join("out.ko")),
        objcopy: OBJCOPY.into(),
        allow_no_kfuncs: false,
        btf: None,
    })
}

#[test]
fn suffixes_are_those_of_the_kernel_line() {
    btfgen_as_release("opt_suffix", "6.12.118").unwrap();
    let msg = format!(
        "{:#}",
        btfgen_as_release("opt_suffix", "7.3.4").unwrap_err()
    );
    for part in [
        "kfunc kf_opt_mem: parameter mem__opt",
        "this kernel (7.x) knows no suffix `__opt`",
        "`__nullable` there",
    ] {
        assert!(msg.contains(part), "error {msg:?} does not say {part:?}");
    }

    btfgen_as_release("irq_flag_suffix", "7.3.4").unwrap();
    let msg = format!(
        "{:#}",
        btfgen_as_release("irq_flag_suffix", "6.12.118").unwrap_err()
    );
    for part in [
        "parameter flags__irq_flag",
        "this kernel (6.x) knows no suffix `__irq_flag`",
        "it came with 7.x",
    ] {
        assert!(msg.contains(part), "error {msg:?} does not say {part:?}");
    }
}

/// Runs the kernel's resolve_btfids on `out` as the kernel's module BTF step does: `-b vmlinux`
/// up to 6.x; on 7.x the BTF goes through a file, and resolve_btfids writes `.BTF` and
/// `.BTF_ids` next to the object, which scripts/gen-btf.sh puts back into it.
fn resolve_btfids(out: &std::path::Path) {
    let resolve = kdir().join("tools/bpf/resolve_btfids/resolve_btfids");
    let release = std::fs::read_to_string(kdir().join("include/config/kernel.release")).unwrap();
    if release
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok())
        >= Some(7)
    {
        let btf1 = out.with_extension("o.BTF.1");
        std::fs::write(&btf1, read_btf_section(out)).unwrap();
        run(Command::new(&resolve)
            .arg("--btf_base")
            .arg(vmlinux())
            .arg("--btf")
            .arg(&btf1)
            .arg(out));
        let with = |ext: &str| format!("{}.{ext}", out.display());
        run(Command::new("llvm-objcopy-19")
            .arg(format!("--update-section=.BTF={}", with("BTF")))
            .arg(out));
        run(Command::new(&resolve)
            .arg("--patch_btfids")
            .arg(with("BTF_ids"))
            .arg(out));
    } else {
        run(Command::new(&resolve).arg("-b").arg(vmlinux()).arg(out));
    }
}

/// A module as 7.x writes an external one: the BTF of a first btfgen run,
/// distilled (libbpf's btf__distill_base(), as pahole does) into `.BTF` and
/// `.BTF.base`, on the fixture object compiled with `cfgs`.
fn distilled_module(cfgs: &[&str]) -> (PathBuf, PathBuf) {
    let (dir, _, out) = generated(&[]);
    let base = Btf::parse(&vmlinux()).unwrap();
    let first = Btf::new_split(&read_btf_section(&out), &base).unwrap();
    let (base_raw, split_raw) = first.distill().unwrap().raw_data().unwrap();
    let obj = rustc_obj(&dir, "kfuncs.rs", cfgs, true);
    let (base_path, split_path) = (dir.join("distilled.base"), dir.join("distilled.btf"));
    std::fs::write(&base_path, &base_raw).unwrap();
    std::fs::write(&split_path, &split_raw).unwrap();
    let module = dir.join("distilled.ko");
    run(Command::new(OBJCOPY)
        .arg("--add-section")
        .arg(format!(".BTF={}", split_path.display()))
        .arg("--add-section")
        .arg(format!(".BTF.base={}", base_path.display()))
        .arg(&obj)
        .arg(&module));
    (dir, module)
}
