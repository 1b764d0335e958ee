// SPDX-License-Identifier: GPL-2.0

//! btfgen: BTF for the kfuncs of a Rust kernel module.
//!
//! Kbuild runs `pahole -J --lang_exclude=rust` on modules, so a Rust module's functions get no
//! BTF, and BPF programs cannot call them as kfuncs. btfgen fills that gap after pahole and before
//! `resolve_btfids`:
//!
//! 1. the kfunc names come from the module itself: the `__BTF_ID__func__<name>__<n>` symbols in
//!    `.BTF_ids` that `btf_kfunc_set!` (src/btf_ids.rs) emits;
//! 2. each prototype comes from the module's DWARF ([`dwarf`]), with its types mapped onto
//!    vmlinux's own BTF types (`struct task_struct *`, `int`, ...);
//! 3. a `FUNC_PROTO` and a global `FUNC` per kfunc are appended to the module's split BTF with
//!    libbpf ([`btf`]), and the `.BTF` section is written back ([`elf`]).

pub mod btf;
pub mod dwarf;
pub mod elf;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use btf::{Btf, Kind};
use dwarf::{CType, IntEncoding, Prototype};

/// What to process.
#[derive(Clone, Debug)]
pub struct Options {
    /// vmlinux (or raw BTF) the module's BTF is split from.
    pub base: PathBuf,
    /// The module (`.ko`) or relocatable object to read.
    pub module: PathBuf,
    /// Where to write the result; `None` rewrites `module` in place.
    pub output: Option<PathBuf>,
    /// The objcopy used to replace the `.BTF` section.
    pub objcopy: String,
}

/// What [`run`] did.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// kfunc sets found in `.BTF_ids`.
    pub sets: Vec<String>,
    /// Prototypes of the kfuncs that got a `FUNC`, with its BTF id.
    pub added: Vec<(Prototype, u32)>,
    /// Module functions listed in `.BTF_ids` that already had a `FUNC` in the module's BTF.
    pub already_present: Vec<String>,
    /// Names listed in `.BTF_ids` that are vmlinux functions, left to resolve_btfids.
    pub vmlinux_funcs: Vec<String>,
}

/// Renders a prototype the way C declares it.
pub fn c_declaration(proto: &Prototype) -> String {
    fn ty(t: &CType) -> String {
        match t {
            CType::Void => "void ".to_owned(),
            CType::Int { names, .. } => format!("{} ", names[0]),
            CType::Ptr { name, union } => {
                format!("{} {name} *", if *union { "union" } else { "struct" })
            }
        }
    }
    let mut s = format!("{}{}(", ty(&proto.ret), proto.name);
    if proto.params.is_empty() {
        s.push_str("void");
    }
    for (i, p) in proto.params.iter().enumerate() {
        let _ = write!(
            s,
            "{}{}{}",
            if i > 0 { ", " } else { "" },
            ty(&p.ty),
            p.name
        );
    }
    s.push(')');
    s
}

/// Adds BTF for the module's kfuncs; see the crate documentation.
pub fn run(opts: &Options) -> Result<Outcome> {
    let module = &opts.module;
    let output = opts.output.as_deref().unwrap_or(module);
    let data =
        std::fs::read(module).with_context(|| format!("cannot read {}", module.display()))?;
    let file = object::File::parse(&*data)
        .with_context(|| format!("{} is not an ELF object", module.display()))?;

    let ids = elf::btf_ids(&file)?;
    if ids.funcs.is_empty() {
        bail!(
            "{}: no __BTF_ID__func__* symbols in .BTF_ids; declare the kfuncs with btf_kfunc_set!",
            module.display()
        );
    }
    let Some(btf_data) = elf::btf_section(&file)? else {
        bail!(
            "{}: no .BTF section; build it against a kernel with CONFIG_DEBUG_INFO_BTF_MODULES=y \
             (Kbuild's pahole step adds the section)",
            module.display()
        );
    };

    let base = Btf::parse(&opts.base).with_context(|| {
        format!(
            "cannot load the base BTF; is {} a vmlinux with BTF?",
            opts.base.display()
        )
    })?;
    let mut split = Btf::new_split(&btf_data, &base)
        .with_context(|| format!("{}: invalid .BTF", module.display()))?;
    let start = split.start_id();

    let defined = elf::defined_functions(&file);
    let mut outcome = Outcome {
        sets: ids.sets.clone(),
        ..Outcome::default()
    };
    let mut todo = Vec::new();
    for name in &ids.funcs {
        let existing = split.find(name, Kind::Func)?;
        if !defined.contains(name) {
            if existing.is_some_and(|id| id < start) {
                outcome.vmlinux_funcs.push(name.clone());
                continue;
            }
            bail!(
                "{name} is listed in .BTF_ids but is neither defined in {} nor a vmlinux function",
                module.display()
            );
        }
        match existing {
            Some(id) if id >= start => outcome.already_present.push(name.clone()),
            Some(_) => bail!(
                "kfunc {name} has the name of a vmlinux function; resolve_btfids would give it \
                 vmlinux's BTF id: rename it"
            ),
            None => todo.push(name.clone()),
        }
    }

    let protos = dwarf::prototypes(&file, &todo)?;
    for name in &todo {
        if protos.contains_key(name) {
            continue;
        }
        if let Some(twin) = elf::aliases(&file, name).into_iter().next() {
            bail!(
                "kfunc {name} has no DWARF of its own: the compiler merged it with {twin} \
                 (identical machine code), so its prototype cannot be derived; build the module \
                 with `rustflags-y += -Zmerge-functions=disabled` in Kbuild"
            );
        }
        bail!(
            "kfunc {name}: no DW_TAG_subprogram definition in the module's DWARF; build the \
             module with debug info (CONFIG_DEBUG_INFO) and keep the function \
             #[no_mangle] extern \"C\""
        );
    }
    let mut ptr_cache = BTreeMap::new();
    for name in &todo {
        let proto = &protos[name];
        let ret = btf_type(&base, &mut split, &mut ptr_cache, &proto.ret)
            .with_context(|| format!("kfunc {name}: return type"))?;
        let mut params = Vec::new();
        for p in &proto.params {
            let id = btf_type(&base, &mut split, &mut ptr_cache, &p.ty)
                .with_context(|| format!("kfunc {name}: parameter {}", p.name))?;
            params.push((p.name.clone(), id));
        }
        let fproto = split.add_func_proto(ret, &params)?;
        let func = split.add_func(name, fproto)?;
        outcome.added.push((proto.clone(), func));
    }

    if outcome.added.is_empty() {
        if output != module {
            std::fs::copy(module, output)
                .with_context(|| format!("cannot write {}", output.display()))?;
        }
        return Ok(outcome);
    }

    let raw = split.raw_data()?;
    drop(split);
    elf::write_btf_section(&opts.objcopy, module, output, &raw)?;
    verify(&base, output, &outcome)?;
    Ok(outcome)
}

/// The BTF id for a mapped type, adding a `PTR` to the module's BTF when needed.
fn btf_type(
    base: &Btf<'_>,
    split: &mut Btf<'_>,
    ptr_cache: &mut BTreeMap<u32, u32>,
    ty: &CType,
) -> Result<u32> {
    match ty {
        CType::Void => Ok(0),
        CType::Int {
            names,
            size,
            encoding,
        } => {
            let mut found = None;
            for name in *names {
                if let Some(id) = base.find(name, Kind::Int)? {
                    found = Some((name, id));
                    break;
                }
            }
            let (name, id) =
                found.with_context(|| format!("vmlinux BTF has no integer type `{}`", names[0]))?;
            let info = base.type_info(id)?;
            if u64::from(info.size_or_type) != *size {
                bail!(
                    "vmlinux `{name}` is {} bytes but the Rust type is {size}",
                    info.size_or_type
                );
            }
            let bits = info.int_encoding.map_or(0, |(enc, _)| enc);
            let btf_encoding = if bits & 4 != 0 {
                IntEncoding::Bool
            } else if bits & 1 != 0 {
                IntEncoding::Signed
            } else {
                IntEncoding::Unsigned
            };
            if btf_encoding != *encoding {
                bail!("vmlinux `{name}` is {btf_encoding:?} but the Rust type is {encoding:?}");
            }
            Ok(id)
        }
        CType::Ptr { name, union } => {
            let (kind, what) = if *union {
                (Kind::Union, "union")
            } else {
                (Kind::Struct, "struct")
            };
            let target = base.find(name, kind)?.with_context(|| {
                format!("vmlinux BTF has no {what} {name}; only pointers to vmlinux types map")
            })?;
            if let Some(id) = ptr_cache.get(&target) {
                return Ok(*id);
            }
            let id = split.add_ptr(target)?;
            ptr_cache.insert(target, id);
            Ok(id)
        }
    }
}

/// Re-reads the written object and checks that every added `FUNC` is there with its prototype.
fn verify(base: &Btf<'_>, path: &Path, outcome: &Outcome) -> Result<()> {
    let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file = object::File::parse(&*data)?;
    let btf_data = elf::btf_section(&file)?
        .with_context(|| format!("{}: .BTF vanished after objcopy", path.display()))?;
    let btf = Btf::new_split(&btf_data, base)?;
    for (proto, _) in &outcome.added {
        let id = btf.find(&proto.name, Kind::Func)?.with_context(|| {
            format!(
                "{}: FUNC {} missing after writing",
                path.display(),
                proto.name
            )
        })?;
        let func = btf.type_info(id)?;
        let fproto = btf.type_info(func.size_or_type)?;
        if fproto.params.len() != proto.params.len() {
            bail!(
                "{}: FUNC {} has a wrong prototype after writing",
                path.display(),
                proto.name
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dwarf::Param;

    #[test]
    fn c_declarations_read_like_c() {
        let task = CType::Ptr {
            name: "task_struct".into(),
            union: false,
        };
        let int = CType::Int {
            names: &["int"],
            size: 4,
            encoding: IntEncoding::Signed,
        };
        let proto = Prototype {
            name: "rust_task_from_pid".into(),
            ret: task.clone(),
            params: vec![Param {
                name: "pid".into(),
                ty: int,
            }],
        };
        assert_eq!(
            c_declaration(&proto),
            "struct task_struct *rust_task_from_pid(int pid)"
        );
        let proto = Prototype {
            name: "f".into(),
            ret: CType::Void,
            params: Vec::new(),
        };
        assert_eq!(c_declaration(&proto), "void f(void)");
    }
}
