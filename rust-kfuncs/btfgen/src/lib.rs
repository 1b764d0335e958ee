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
//!
//! Where the module's BTF is depends on the kernel: up to 6.x Kbuild's pahole writes it into the
//! module's `.BTF` section, and btfgen adds the `bpf_kfunc` decl tag pahole gives C kfuncs; 7.x's
//! `scripts/gen-btf.sh` has pahole write it to a detached raw file (`x.ko.BTF.1`) that
//! `resolve_btfids --btf` reads, tags (it adds the `bpf_kfunc` decl tag to every function of a
//! kfunc set itself), dedups and sorts before it becomes `.BTF`: there btfgen adds the FUNCs to
//! that file ([`Options::btf`]) and no tag.

pub mod btf;
pub mod dwarf;
pub mod elf;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use btf::{Btf, Kind};
use dwarf::{CType, IntEncoding, Prototype};

/// The decl tag pahole (>= 1.25) puts on every function of a kfunc set, as C's `__bpf_kfunc`
/// does not survive into DWARF.
pub const KFUNC_TAG: &str = "bpf_kfunc";

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
    /// A module without kfunc sets is left as it is instead of being an error.
    pub allow_no_kfuncs: bool,
    /// The module's BTF is this raw split BTF file (7.x's `x.ko.BTF.1`), not its `.BTF` section:
    /// the FUNCs are added to the file (written to `output` when set, else in place), without
    /// the `bpf_kfunc` decl tag, which the kernel's `resolve_btfids` adds next.
    pub btf: Option<PathBuf>,
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

/// The C spelling of a type, as the prefix of a declarator (`"struct task_struct *"`).
fn c_type(t: &CType) -> String {
    match t {
        CType::Void => "void ".to_owned(),
        CType::Int { names, .. } => format!("{} ", names[0]),
        CType::Struct { name, union } => {
            format!("{} {name} ", if *union { "union" } else { "struct" })
        }
        CType::Enum { name, .. } => format!("enum {name} "),
        CType::Wrapper { chain } => format!("{} ", chain[0].name),
        CType::Ptr { target, is_const } => {
            format!(
                "{}{}*",
                if *is_const { "const " } else { "" },
                c_type(target)
            )
        }
    }
}

/// Renders a prototype the way C declares it.
pub fn c_declaration(proto: &Prototype) -> String {
    let mut s = format!("{}{}(", c_type(&proto.ret), proto.name);
    if proto.params.is_empty() {
        s.push_str("void");
    }
    for (i, p) in proto.params.iter().enumerate() {
        let _ = write!(
            s,
            "{}{}{}",
            if i > 0 { ", " } else { "" },
            c_type(&p.ty),
            p.name
        );
    }
    s.push(')');
    s
}

/// The argument suffixes the 6.12 verifier gives a meaning (`kernel/bpf/verifier.c`, the
/// `__kfunc_param_match_suffix()` calls), with what the argument must be.
const SUFFIXES: &[(&str, Shape)] = &[
    ("__sz", Shape::Size),
    ("__szk", Shape::Size),
    ("__k", Shape::Scalar),
    ("__ign", Shape::Any),
    ("__str", Shape::Str),
    ("__opt", Shape::Pointer),
    ("__nullable", Shape::Pointer),
    ("__map", Shape::Pointer),
    ("__alloc", Shape::Pointer),
    ("__refcounted_kptr", Shape::Pointer),
    ("__uninit", Shape::Pointer),
    ("__iter", Shape::Pointer),
];

/// What a verifier suffix requires of its argument.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// An integer.
    Scalar,
    /// An integer right after a pointer argument (the memory it sizes).
    Size,
    /// A pointer.
    Pointer,
    /// A `*const c_char`, which BTF spells `const char *`.
    Str,
    /// Anything.
    Any,
}

/// Checks each parameter's verifier suffix against its type, so that a kfunc's contract is what
/// its Rust signature says, and gives `__str` parameters the C type the verifier expects.
///
/// A suffix the verifier does not know (a typo such as `__nulable`) is an error: the verifier
/// would silently treat the argument as a plain one.
pub fn check_suffixes(proto: &mut Prototype) -> Result<()> {
    let name = proto.name.clone();
    for i in 0..proto.params.len() {
        let pname = proto.params[i].name.clone();
        let Some(pos) = pname.rfind("__").filter(|&p| p > 0) else {
            continue;
        };
        let suffix = &pname[pos..];
        let Some((_, shape)) = SUFFIXES.iter().find(|(s, _)| *s == suffix) else {
            let known: Vec<_> = SUFFIXES.iter().map(|(s, _)| *s).collect();
            bail!(
                "kfunc {name}: parameter {pname}: the verifier knows no suffix `{suffix}` (it \
                 would treat the argument as a plain one); known suffixes: {}",
                known.join(", ")
            );
        };
        let ty = &proto.params[i].ty;
        let ok = match shape {
            Shape::Any => true,
            Shape::Scalar => matches!(ty, CType::Int { .. } | CType::Enum { .. }),
            Shape::Size => {
                matches!(ty, CType::Int { .. })
                    && i > 0
                    && matches!(proto.params[i - 1].ty, CType::Ptr { .. })
            }
            Shape::Pointer => matches!(ty, CType::Ptr { .. }),
            Shape::Str => match ty {
                CType::Ptr { target, is_const } => {
                    *is_const && matches!(**target, CType::Int { size: 1, .. })
                }
                _ => false,
            },
        };
        if !ok {
            let want = match shape {
                Shape::Scalar => "an integer",
                Shape::Size => "an integer right after the pointer whose memory it sizes",
                Shape::Pointer => "a pointer",
                Shape::Str => "a *const c_char (C: const char *)",
                Shape::Any => unreachable!(),
            };
            bail!(
                "kfunc {name}: parameter {pname}: `{suffix}` requires {want}, not `{}`",
                c_type(ty).trim_end()
            );
        }
        if *shape == Shape::Str {
            proto.params[i].ty = CType::Ptr {
                target: Box::new(dwarf::CHAR),
                is_const: true,
            };
        }
    }
    Ok(())
}

/// A module's BTF as the kernel sees it once loaded: split on vmlinux's.
pub struct ModuleBtf<'b> {
    /// The module's types, on top of vmlinux's.
    pub btf: Btf<'b>,
    /// Whether the module carries a distilled base (`.BTF.base`, pahole >= 1.28): its `.BTF`
    /// was relocated onto vmlinux here, and must be distilled again when written.
    pub distilled: bool,
    // The distilled base the BTF was parsed on; libbpf no longer refers to it after relocating,
    // it is kept (and dropped after `btf`) all the same.
    _distilled_base: Option<Btf<'static>>,
}

/// Loads a module's `.BTF` on top of `base` (vmlinux), relocating it from its distilled
/// `.BTF.base` first when it has one; `None` when it has no `.BTF`.
pub fn module_btf<'b>(base: &'b Btf<'_>, file: &object::File<'_>) -> Result<Option<ModuleBtf<'b>>> {
    let Some(btf_data) = elf::btf_section(file)? else {
        return Ok(None);
    };
    let Some(base_data) = elf::section(file, ".BTF.base")? else {
        return Ok(Some(ModuleBtf {
            btf: Btf::new_split(&btf_data, base).context("invalid .BTF")?,
            distilled: false,
            _distilled_base: None,
        }));
    };
    let distilled = Btf::from_raw(&base_data).context("invalid .BTF.base")?;
    let btf = Btf::new_split(&btf_data, &distilled)
        .context("invalid .BTF (on .BTF.base)")?
        .relocate(base)?;
    Ok(Some(ModuleBtf {
        btf,
        distilled: true,
        _distilled_base: Some(distilled),
    }))
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
    if ids.funcs.is_empty() && opts.allow_no_kfuncs {
        if output != module {
            std::fs::copy(module, output)
                .with_context(|| format!("cannot write {}", output.display()))?;
        }
        return Ok(Outcome::default());
    }
    if ids.funcs.is_empty() {
        bail!(
            "{}: no __BTF_ID__func__* symbols in .BTF_ids; declare the kfuncs with btf_kfunc_set!",
            module.display()
        );
    }
    let base = Btf::parse(&opts.base).with_context(|| {
        format!(
            "cannot load the base BTF; is {} a vmlinux with BTF?",
            opts.base.display()
        )
    })?;
    let module_btf = if let Some(path) = &opts.btf {
        let data =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        ModuleBtf {
            btf: Btf::new_split(&data, &base)
                .with_context(|| format!("{}: invalid split BTF", path.display()))?,
            distilled: false,
            _distilled_base: None,
        }
    } else if let Some(module_btf) =
        module_btf(&base, &file).with_context(|| format!("{}", module.display()))?
    {
        module_btf
    } else {
        bail!(
            "{}: no .BTF section; build it against a kernel with CONFIG_DEBUG_INFO_BTF_MODULES=y \
             (Kbuild's pahole step adds the section)",
            module.display()
        );
    };
    let distilled = module_btf.distilled;
    let mut split = module_btf.btf;
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

    let mut protos = dwarf::prototypes(&file, &todo)?;
    for proto in protos.values_mut() {
        resolve_wrappers(&split, proto)?;
        check_suffixes(proto)?;
    }
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
    let mut added = Added::default();
    for name in &todo {
        let proto = &protos[name];
        let ret = btf_type(&base, &mut split, &mut added, &proto.ret)
            .with_context(|| format!("kfunc {name}: return type"))?;
        let mut params = Vec::new();
        for p in &proto.params {
            let id = btf_type(&base, &mut split, &mut added, &p.ty)
                .with_context(|| format!("kfunc {name}: parameter {}", p.name))?;
            params.push((p.name.clone(), id));
        }
        let fproto = split.add_func_proto(ret, &params)?;
        let func = split.add_func(name, fproto)?;
        if opts.btf.is_none() {
            split.add_decl_tag(KFUNC_TAG, func, -1)?;
        }
        outcome.added.push((proto.clone(), func));
    }

    if let Some(path) = &opts.btf {
        let output = opts.output.as_deref().unwrap_or(path);
        let raw = split.raw_data()?;
        drop(split);
        // Written next to the target and renamed over it: a failed write leaves no half file.
        let tmp = output.with_extension(format!("btfgen.{}", std::process::id()));
        std::fs::write(&tmp, &raw).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, output)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), output.display()))?;
        verify_raw(&base, output, &outcome)?;
        return Ok(outcome);
    }

    if outcome.added.is_empty() {
        if output != module {
            std::fs::copy(module, output)
                .with_context(|| format!("cannot write {}", output.display()))?;
        }
        return Ok(outcome);
    }

    if distilled {
        // As pahole >= 1.28 writes it: a base of just what the module refers to, so that the
        // kernel can relocate the module's BTF onto a vmlinux other than the one built with.
        let (base_raw, raw) = split.distill()?.raw_data()?;
        drop(split);
        elf::write_sections(
            &opts.objcopy,
            module,
            output,
            &[(".BTF.base", &base_raw), (".BTF", &raw)],
        )?;
    } else {
        let raw = split.raw_data()?;
        drop(split);
        elf::write_btf_section(&opts.objcopy, module, output, &raw)?;
    }
    verify(&base, output, &outcome)?;
    Ok(outcome)
}

/// Turns each [`CType::Wrapper`] of a prototype into the struct or union it stands for: the first
/// of its chain, outermost first, that `btf` (the module's, on vmlinux's) has by name, which must
/// then have the same size. This is the rule resolve_btfids follows for Rust kfuncs in-tree, so
/// that `*mut kernel::task::Task` is `struct task_struct *` for both.
pub fn resolve_wrappers(btf: &Btf<'_>, proto: &mut Prototype) -> Result<()> {
    fn resolve(btf: &Btf<'_>, ty: &mut CType, kfunc: &str) -> Result<()> {
        match ty {
            CType::Ptr { target, .. } => resolve(btf, target, kfunc),
            CType::Wrapper { chain } => {
                for record in chain.iter() {
                    let kind = if record.union {
                        Kind::Union
                    } else {
                        Kind::Struct
                    };
                    let Some(id) = btf.find(&record.name, kind)? else {
                        continue;
                    };
                    let size = btf.type_info(id)?.size_or_type;
                    if u64::from(size) != record.size {
                        bail!(
                            "kfunc {kfunc}: {} is {} bytes in Rust but {size} in BTF",
                            record.name,
                            record.size
                        );
                    }
                    *ty = CType::Struct {
                        name: record.name.clone(),
                        union: record.union,
                    };
                    return Ok(());
                }
                bail!(
                    "kfunc {kfunc}: a pointer to {}, which neither is a struct or union vmlinux \
                     BTF has nor transparently wraps one",
                    chain[0].name
                )
            }
            _ => Ok(()),
        }
    }
    let name = proto.name.clone();
    resolve(btf, &mut proto.ret, &name)?;
    for param in &mut proto.params {
        resolve(btf, &mut param.ty, &name)?;
    }
    Ok(())
}

/// Types added to the module's BTF so far, so that each is added once.
#[derive(Default)]
struct Added {
    ptrs: BTreeMap<u32, u32>,
    consts: BTreeMap<u32, u32>,
    enums: BTreeMap<String, u32>,
}

/// The BTF id for a mapped type, adding `PTR`, `CONST` and `ENUM` types to the module's BTF when
/// needed.
fn btf_type(base: &Btf<'_>, split: &mut Btf<'_>, added: &mut Added, ty: &CType) -> Result<u32> {
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
            if *encoding != IntEncoding::Char && btf_encoding != *encoding {
                bail!("vmlinux `{name}` is {btf_encoding:?} but the Rust type is {encoding:?}");
            }
            Ok(id)
        }
        CType::Struct { name, union } => {
            let (kind, what) = if *union {
                (Kind::Union, "union")
            } else {
                (Kind::Struct, "struct")
            };
            base.find(name, kind)?.with_context(|| {
                format!("vmlinux BTF has no {what} {name}; only pointers to vmlinux types map")
            })
        }
        CType::Wrapper { chain } => {
            bail!("{} was not resolved to the struct it wraps", chain[0].name)
        }
        CType::Enum { name, size, values } => {
            if let Some(id) = base.find(name, Kind::Enum)? {
                return Ok(id);
            }
            if let Some(id) = added.enums.get(name) {
                return Ok(*id);
            }
            let id = split.add_enum(name, *size as u32, values)?;
            added.enums.insert(name.clone(), id);
            Ok(id)
        }
        CType::Ptr { target, is_const } => {
            let mut target = btf_type(base, split, added, target)?;
            if *is_const {
                target = match added.consts.get(&target) {
                    Some(id) => *id,
                    None => {
                        let id = split.add_const(target)?;
                        added.consts.insert(target, id);
                        id
                    }
                };
            }
            if let Some(id) = added.ptrs.get(&target) {
                return Ok(*id);
            }
            let id = split.add_ptr(target)?;
            added.ptrs.insert(target, id);
            Ok(id)
        }
    }
}

/// Re-reads the written object and checks that every added `FUNC` is there with the whole
/// prototype derived from DWARF (types and names, rendered as C) and its `bpf_kfunc` tag.
fn verify(base: &Btf<'_>, path: &Path, outcome: &Outcome) -> Result<()> {
    let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file = object::File::parse(&*data)?;
    let btf = module_btf(base, &file)?
        .with_context(|| format!("{}: .BTF vanished after objcopy", path.display()))?
        .btf;
    verify_funcs(&btf, path, outcome, true)
}

/// [`verify`] for a raw split BTF file ([`Options::btf`]): the FUNCs, and no `bpf_kfunc` tag of
/// ours (`resolve_btfids` adds one; two would be one too many).
fn verify_raw(base: &Btf<'_>, path: &Path, outcome: &Outcome) -> Result<()> {
    let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let btf = Btf::new_split(&data, base)?;
    verify_funcs(&btf, path, outcome, false)
}

/// Checks every added `FUNC` against its DWARF prototype, and that it has exactly one
/// `bpf_kfunc` decl tag (`tagged`) or none.
fn verify_funcs(btf: &Btf<'_>, path: &Path, outcome: &Outcome, tagged: bool) -> Result<()> {
    let tags = btf.decl_tags()?;
    for (proto, _) in &outcome.added {
        let id = btf.find(&proto.name, Kind::Func)?.with_context(|| {
            format!(
                "{}: FUNC {} missing after writing",
                path.display(),
                proto.name
            )
        })?;
        let written = btf.c_declaration(id)?;
        let derived = c_declaration(proto);
        if written != derived {
            bail!(
                "{}: FUNC {} reads `{written}` after writing, but its DWARF says `{derived}`",
                path.display(),
                proto.name
            );
        }
        let count = tags
            .iter()
            .filter(|t| **t == (KFUNC_TAG.to_owned(), id, -1))
            .count();
        if count != usize::from(tagged) {
            bail!(
                "{}: FUNC {} has {count} {KFUNC_TAG} decl tag(s) after writing, not {}",
                path.display(),
                proto.name,
                usize::from(tagged)
            );
        }
    }
    Ok(())
}

/// The BPF-side declarations of a module's kfuncs, from the module's BTF: the header a BPF
/// program includes after `vmlinux.h` instead of writing `__ksym` declarations by hand.
///
/// Every `FUNC` of the module's BTF with a `bpf_kfunc` decl tag (what pahole and btfgen put on
/// the functions of kfunc sets) becomes an `extern ... __ksym;` declaration, as newer bpftool
/// writes them into `vmlinux.h`; enums of the module's own BTF that the prototypes use are
/// defined first. `guard` names the include guard.
pub fn header(base: &Path, module: &Path, guard: &str) -> Result<String> {
    let base =
        Btf::parse(base).with_context(|| format!("cannot load the base BTF {}", base.display()))?;
    let data =
        std::fs::read(module).with_context(|| format!("cannot read {}", module.display()))?;
    let file = object::File::parse(&*data)
        .with_context(|| format!("{} is not an ELF object", module.display()))?;
    let btf = module_btf(&base, &file)?
        .with_context(|| format!("{}: no .BTF section", module.display()))?
        .btf;
    let start = btf.start_id();
    let mut funcs: Vec<u32> = btf
        .decl_tags()?
        .into_iter()
        .filter(|(value, target, idx)| value == KFUNC_TAG && *idx == -1 && *target >= start)
        .map(|(_, target, _)| target)
        .collect();
    funcs.sort();
    funcs.dedup();
    if funcs.is_empty() {
        bail!(
            "{}: no FUNC with a {KFUNC_TAG} decl tag in the module's BTF; run btfgen on it first",
            module.display()
        );
    }

    let name = module
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(out, "/* SPDX-License-Identifier: GPL-2.0 */");
    let _ = writeln!(
        out,
        "/* The kfuncs of {name}, generated from its BTF by btfgen --header: do not edit. */"
    );
    let _ = writeln!(
        out,
        "#ifndef {guard}
#define {guard}
"
    );
    let _ = writeln!(
        out,
        "#ifndef __ksym
#define __ksym __attribute__((section(\".ksyms\")))
#endif
"
    );
    let mut enums = Vec::new();
    for &func in &funcs {
        let proto = btf.type_info(btf.type_info(func)?.size_or_type)?;
        let mut types: Vec<u32> = proto.params.iter().map(|(_, t)| *t).collect();
        types.push(proto.size_or_type);
        for t in types {
            if t >= start && btf.type_info(t)?.kind == btf::ENUM && !enums.contains(&t) {
                enums.push(t);
            }
        }
    }
    for id in enums {
        let _ = writeln!(out, "enum {} {{", btf.type_info(id)?.name);
        for (vname, value) in btf.enum_values(id)? {
            let _ = writeln!(out, "\t{vname} = {value},");
        }
        let _ = writeln!(out, "}};\n");
    }
    for func in funcs {
        let _ = writeln!(out, "extern {} __ksym;", btf.c_declaration(func)?);
    }
    let _ = writeln!(out, "\n#endif /* {guard} */");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dwarf::Param;

    #[test]
    fn c_declarations_read_like_c() {
        let task = CType::struct_ptr("task_struct", false);
        let int = CType::Int {
            names: &["int"],
            size: 4,
            encoding: IntEncoding::Signed,
        };
        let proto = Prototype {
            name: "kf_task_from_pid".into(),
            ret: task.clone(),
            params: vec![Param {
                name: "pid".into(),
                ty: int,
            }],
        };
        assert_eq!(
            c_declaration(&proto),
            "struct task_struct *kf_task_from_pid(int pid)"
        );
        let proto = Prototype {
            name: "f".into(),
            ret: CType::Void,
            params: Vec::new(),
        };
        assert_eq!(c_declaration(&proto), "void f(void)");
    }
}
