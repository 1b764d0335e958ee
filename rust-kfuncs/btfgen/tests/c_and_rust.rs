// SPDX-License-Identifier: GPL-2.0

//! The same kfunc prototypes in C (tests/fixtures/shapes.c, clang-19) and in Rust
//! (tests/fixtures/shapes.rs, rustc) must get the same BTF from btfgen, type by type: what
//! differs is only the language the DWARF came from.

mod common;

use std::path::Path;

use btfgen::btf::{Btf, Kind};
use btfgen::{elf, Options};
use common::*;

const KFUNCS: &[&str] = &[
    "shapes_task",
    "shapes_release",
    "shapes_ints",
    "shapes_mem",
    "shapes_str",
    "shapes_narrow",
    "shapes_enum",
    "shapes_nullable",
];

/// Runs btfgen on `module` and returns the module's new .BTF.
fn generate(dir: &Path, module: &Path) -> Vec<u8> {
    let out = dir.join(format!(
        "{}.out",
        module.file_name().unwrap().to_string_lossy()
    ));
    let outcome = btfgen::run(&Options {
        base: vmlinux(),
        module: module.to_owned(),
        output: Some(out.clone()),
        objcopy: OBJCOPY.into(),
        allow_no_kfuncs: false,
        btf: None,
    })
    .unwrap();
    assert_eq!(outcome.added.len(), KFUNCS.len());
    let data = std::fs::read(&out).unwrap();
    elf::btf_section(&object::File::parse(&*data).unwrap())
        .unwrap()
        .unwrap()
}

/// The structure of type `id`: kind, name, and what it refers to, down to vmlinux types, which
/// are named by their id (the same base for both).
fn shape(btf: &Btf<'_>, id: u32) -> String {
    if id == 0 {
        return "void".into();
    }
    if id < btf.start_id() {
        let t = btf.type_info(id).unwrap();
        return format!("vmlinux#{id}({})", t.name);
    }
    let t = btf.type_info(id).unwrap();
    match t.kind {
        // PTR, CONST
        2 | 10 => format!("kind{}->{}", t.kind, shape(btf, t.size_or_type)),
        // ENUM
        6 => format!(
            "enum {} size {} {:?}",
            t.name,
            t.size_or_type,
            btf.enum_values(id).unwrap()
        ),
        // FUNC_PROTO
        13 => {
            let params: Vec<_> = t
                .params
                .iter()
                .map(|(n, ty)| format!("{n}: {}", shape(btf, *ty)))
                .collect();
            format!("({}) -> {}", params.join(", "), shape(btf, t.size_or_type))
        }
        kind => format!("kind{kind} {}", t.name),
    }
}

#[test]
fn c_and_rust_prototypes_give_the_same_btf() {
    let dir = scratch("c-and-rust");
    let stub = btf_ids_h_stub(&dir);
    let c = add_empty_btf(&clang_obj(&dir, "shapes.c", &stub, true));
    let rust = add_empty_btf(&rustc_obj(&dir, "shapes.rs", &[], true));
    let c_btf = generate(&dir, &c);
    let rust_btf = generate(&dir, &rust);

    let base = Btf::parse(&vmlinux()).unwrap();
    let c_btf = Btf::new_split(&c_btf, &base).unwrap();
    let rust_btf = Btf::new_split(&rust_btf, &base).unwrap();
    for name in KFUNCS {
        let c_id = c_btf.find(name, Kind::Func).unwrap().unwrap();
        let rust_id = rust_btf.find(name, Kind::Func).unwrap().unwrap();
        let (c_func, rust_func) = (
            c_btf.type_info(c_id).unwrap(),
            rust_btf.type_info(rust_id).unwrap(),
        );
        assert_eq!(c_func.vlen, rust_func.vlen, "{name}: linkage");
        assert_eq!(
            shape(&c_btf, c_func.size_or_type),
            shape(&rust_btf, rust_func.size_or_type),
            "{name}: prototype"
        );
        assert_eq!(
            c_btf.c_declaration(c_id).unwrap(),
            rust_btf.c_declaration(rust_id).unwrap(),
            "{name}: as C"
        );
    }
    // What the prototypes are, so that equality above is not equality of two wrong things.
    let decl = |name: &str| {
        rust_btf
            .c_declaration(rust_btf.find(name, Kind::Func).unwrap().unwrap())
            .unwrap()
    };
    assert_eq!(
        decl("shapes_mem"),
        "unsigned long long shapes_mem(const void *mem, unsigned int mem__sz)"
    );
    assert_eq!(
        decl("shapes_str"),
        "unsigned int shapes_str(const char *s__str)"
    );
    assert_eq!(
        decl("shapes_narrow"),
        "long long shapes_narrow(unsigned char a, signed char b, unsigned short c, short d, \
         _Bool e)"
    );
    assert_eq!(
        decl("shapes_enum"),
        "long long shapes_enum(enum shapes_op op, unsigned long long *out)"
    );
    assert_eq!(
        decl("shapes_nullable"),
        "int shapes_nullable(struct task_struct *p__nullable, const struct task_struct *q)"
    );
}
