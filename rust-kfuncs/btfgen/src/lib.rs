// SPDX-License-Identifier: GPL-2.0

//! btfgen: BTF for the kfuncs of a Rust kernel module.
//!
//! Kbuild runs `pahole -J --lang_exclude=rust` on modules, so a Rust module's functions get no
//! BTF, and BPF programs cannot call them as kfuncs. btfgen fills that gap after pahole and before
//! `resolve_btfids`:
//!
//! 1. the kfunc names come from the module itself: the `__BTF_ID__func__<name>__<n>` symbols in
//!    `.BTF_ids` that `btf_kfunc_set!` (rust-kfuncs/kfunc_btf.rs) emits;
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

use std::collections::{BTreeMap, BTreeSet};
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
    /// Structs and unions of the module written into its BTF: name, BTF id, and the members
    /// left out (with why), which BPF cannot read.
    pub structs: Vec<(String, u32, Vec<String>)>,
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

/// The argument suffixes the verifier gives a meaning (`kernel/bpf/verifier.c`, the
/// `__kfunc_param_match_suffix()` calls of 6.12, `btf_param_match_suffix()` of 7.3), with what
/// the argument must be and the kernel lines that know them: 7.x dropped `__opt` (optional memory
/// is `__nullable` there, which 6.12 takes for a NULL argument of any kind too) and added
/// `__arena`, `__const_map`, `__irq_flag` and `__nonown_allowed`.
const SUFFIXES: &[(&str, Shape, Lines)] = &[
    ("__sz", Shape::Size, Lines::All),
    ("__szk", Shape::Size, Lines::All),
    ("__k", Shape::Scalar, Lines::All),
    ("__ign", Shape::Any, Lines::All),
    ("__str", Shape::Str, Lines::All),
    ("__opt", Shape::Pointer, Lines::Until6),
    ("__nullable", Shape::Pointer, Lines::All),
    ("__map", Shape::Pointer, Lines::All),
    ("__alloc", Shape::Pointer, Lines::All),
    ("__refcounted_kptr", Shape::Pointer, Lines::All),
    ("__uninit", Shape::Pointer, Lines::All),
    ("__iter", Shape::Pointer, Lines::All),
    ("__arena", Shape::Pointer, Lines::From7),
    ("__const_map", Shape::Pointer, Lines::From7),
    ("__irq_flag", Shape::Pointer, Lines::From7),
    ("__nonown_allowed", Shape::Pointer, Lines::From7),
];

/// The kernel lines whose verifier knows a suffix.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lines {
    All,
    /// Up to 6.x.
    Until6,
    /// From 7.x on.
    From7,
}

impl Lines {
    /// Whether a kernel of major version `major` knows the suffix (every kernel, when unknown).
    fn has(self, major: Option<u32>) -> bool {
        match (self, major) {
            (Lines::All, _) | (_, None) => true,
            (Lines::Until6, Some(m)) => m <= 6,
            (Lines::From7, Some(m)) => m >= 7,
        }
    }
}

/// The major version of the kernel whose `vmlinux` is `base`, from the build directory's
/// `include/config/kernel.release` beside it; `None` when there is none (a raw BTF file).
pub fn kernel_major(base: &Path) -> Option<u32> {
    let release = base.parent()?.join("include/config/kernel.release");
    std::fs::read_to_string(release)
        .ok()?
        .split('.')
        .next()?
        .trim()
        .parse()
        .ok()
}

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
/// A suffix the verifier does not know (a typo such as `__nulable`, or one the kernel of major
/// version `major` does not have, such as `__opt` on 7.x) is an error: the verifier would
/// silently treat the argument as a plain one.
pub fn check_suffixes(proto: &mut Prototype, major: Option<u32>) -> Result<()> {
    let name = proto.name.clone();
    for i in 0..proto.params.len() {
        let pname = proto.params[i].name.clone();
        let Some(pos) = pname.rfind("__").filter(|&p| p > 0) else {
            continue;
        };
        let suffix = &pname[pos..];
        let Some((_, shape, lines)) = SUFFIXES.iter().find(|(s, _, _)| *s == suffix) else {
            let known: Vec<_> = SUFFIXES
                .iter()
                .filter(|(_, _, l)| l.has(major))
                .map(|(s, _, _)| *s)
                .collect();
            bail!(
                "kfunc {name}: parameter {pname}: the verifier knows no suffix `{suffix}` (it \
                 would treat the argument as a plain one); known suffixes: {}",
                known.join(", ")
            );
        };
        if !lines.has(major) {
            let hint = if suffix == "__opt" {
                "an optional pointer or memory argument is `__nullable` there"
            } else {
                "it came with 7.x"
            };
            bail!(
                "kfunc {name}: parameter {pname}: the verifier of this kernel ({}.x) knows no \
                 suffix `{suffix}` (it would treat the argument as a plain one): {hint}",
                major.unwrap_or_default()
            );
        }
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
    check_bindgen_layouts(&base, &file).with_context(|| format!("{}", module.display()))?;
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
        check_suffixes(proto, kernel_major(&opts.base))?;
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

    // The module's own structs: those its kfuncs point to and those its id lists name, unless
    // vmlinux has a type of that name (which resolve_btfids would pick) or the BTF has them.
    for (ty, dtor) in &ids.dtors {
        if vmlinux_struct(&base, ty)?.is_some() {
            bail!(
                "destructor {dtor} for struct {ty}: {ty} is a vmlinux type, and the kernel \
                 looks a kptr's destructor up in the BTF that owns its type, which for {ty} \
                 only vmlinux can register; wrap the reference in a struct of the module's own \
                 whose destructor drops it, and store that as the kptr"
            );
        }
    }
    let mut wanted = BTreeSet::new();
    for proto in protos.values() {
        for ty in std::iter::once(&proto.ret).chain(proto.params.iter().map(|p| &p.ty)) {
            if let CType::Ptr { target, .. } = ty {
                if let CType::Struct { name, .. } = &**target {
                    wanted.insert(name.clone());
                }
            }
        }
    }
    wanted.extend(ids.structs.iter().cloned());
    let mut module_structs = BTreeSet::new();
    let mut vmlinux_named = BTreeSet::new();
    for name in wanted {
        if vmlinux_struct(&base, &name)?.is_some() {
            vmlinux_named.insert(name);
        } else if module_struct(&split, &name)?.is_none() {
            module_structs.insert(name);
        }
    }
    // A struct of the module that has a vmlinux type's name maps onto that type: BPF would see
    // vmlinux's layout. A definition of another size is a struct of the module's own by mistake
    // (a zero-sized one is an opaque stand-in, which reads nothing).
    for (name, def) in dwarf::struct_defs(&file, &vmlinux_named)? {
        let Some(id) = vmlinux_struct(&base, &name)? else {
            continue;
        };
        let size = u64::from(base.type_info(id)?.size_or_type);
        if def.size != 0 && def.size != size {
            bail!(
                "struct {name}: the module's is {} bytes, vmlinux's {size}: a kfunc's pointer to \
                 it means vmlinux's struct {name} to BPF; rename the module's struct, or if it \
                 stands for the kernel's, its binding is wrong for this kernel",
                def.size
            );
        }
    }
    let defs = dwarf::struct_defs(&file, &module_structs)?;
    if let Some(name) = module_structs.iter().find(|n| !defs.contains_key(*n)) {
        bail!(
            "struct {name}: a kfunc or an id list of the module names it, but neither vmlinux's \
             BTF nor the module's DWARF defines it"
        );
    }

    let mut added = Added {
        defs,
        ..Added::default()
    };
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
        // Like pahole, only the functions of kfunc sets get the tag (a destructor listed nowhere
        // else is a FUNC, but no kfunc); on 7.x, resolve_btfids adds it itself.
        if ids.kfuncs.contains(name) && opts.btf.is_none() {
            split.add_decl_tag(KFUNC_TAG, func, -1)?;
        }
        outcome.added.push((proto.clone(), func));
    }
    for name in &module_structs {
        let union = added.defs[name].union;
        btf_type(
            &base,
            &mut split,
            &mut added,
            &CType::Struct {
                name: name.clone(),
                union,
            },
        )?;
    }
    outcome.structs = std::mem::take(&mut added.structs_written);

    if let Some(path) = &opts.btf {
        let output = opts.output.as_deref().unwrap_or(path);
        let raw = split.raw_data()?;
        drop(split);
        // Written next to the target and renamed over it: a failed write leaves no half file.
        let tmp = output.with_extension(format!("btfgen.{}", std::process::id()));
        std::fs::write(&tmp, &raw).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, output)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), output.display()))?;
        verify_raw(&base, output, &outcome, &ids.kfuncs)?;
        return Ok(outcome);
    }

    if outcome.added.is_empty() && outcome.structs.is_empty() {
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
    verify(&base, output, &outcome, &ids.kfuncs)?;
    Ok(outcome)
}

/// Checks the layout of every bindgen struct and union in the module's DWARF against the
/// vmlinux type of that name: the size, and the offset of each member both name (bindgen adds
/// `_` to C names that are Rust keywords; its own members, `_bitfield_1`, `__bindgen_anon_1`,
/// ..., have no C counterpart of that name). Rust code reads kernel structs through these
/// layouts, and bindgen can get one wrong without any compile-time check noticing.
pub fn check_bindgen_layouts(base: &Btf<'_>, file: &object::File<'_>) -> Result<()> {
    let layouts = dwarf::bindgen_layouts(file)?;
    if layouts.is_empty() {
        return Ok(());
    }
    let structs = base.ids_by_name(Kind::Struct);
    let unions = base.ids_by_name(Kind::Union);
    let mut wrong = Vec::new();
    for l in &layouts {
        let Some(&id) = (if l.union { &unions } else { &structs }).get(&l.name) else {
            continue;
        };
        // bindgen's stand-ins for a type a header only declares (`_unused: [u8; 0]`) or that
        // it could not lay out (`_address: u8`): no Rust code reads through them.
        if l.members.len() == 1 && matches!(l.members[0].0.as_str(), "_unused" | "_address") {
            continue;
        }
        let t = base.type_info(id)?;
        let what = if l.union { "union" } else { "struct" };
        if u64::from(t.size_or_type) != l.size {
            wrong.push(format!(
                "{what} {}: {} bytes in Rust, {} in vmlinux",
                l.name, l.size, t.size_or_type
            ));
            continue;
        }
        for (mname, offset) in &l.members {
            let c = t.members.iter().find(|(n, _, _)| n == mname).or_else(|| {
                let stripped = mname.strip_suffix('_')?;
                t.members.iter().find(|(n, _, _)| n == stripped)
            });
            let Some((_, _, bits)) = c else {
                continue;
            };
            if u64::from(*bits) != offset * 8 {
                wrong.push(format!(
                    "{what} {}: {mname} at byte {offset} in Rust, {} in vmlinux",
                    l.name,
                    f64::from(*bits) / 8.0
                ));
            }
        }
    }
    if !wrong.is_empty() {
        bail!(
            "bindgen's layouts of kernel types differ from vmlinux's BTF in {} place(s), so Rust code \
             would read the wrong bytes: {}; the kernel crate's (or the module's) bindings were \
             generated for another kernel or configuration, or bindgen got them wrong: rebuild \
             the kernel's Rust support with this kernel, or fix the binding",
            wrong.len(),
            wrong.join("; ")
        );
    }
    Ok(())
}

/// vmlinux's struct or union named `name`, if it has one.
fn vmlinux_struct(base: &Btf<'_>, name: &str) -> Result<Option<u32>> {
    Ok(match base.find(name, Kind::Struct)? {
        Some(id) => Some(id),
        None => base.find(name, Kind::Union)?,
    })
}

/// The module's own struct or union named `name` in its BTF (not vmlinux's), if it has one.
fn module_struct(split: &Btf<'_>, name: &str) -> Result<Option<u32>> {
    let start = split.start_id();
    for kind in [Kind::Struct, Kind::Union] {
        if let Some(id) = split.find(name, kind)?.filter(|&id| id >= start) {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

/// Turns each [`CType::Wrapper`] of a prototype into one struct or union: the first of its
/// chain, outermost first, that `btf` (the module's, on vmlinux's) has by name, which must then
/// have the same size; the outermost (a struct of the module's own) when it has none. This is
/// the rule resolve_btfids follows for Rust kfuncs in-tree, so that `*mut kernel::task::Task` is
/// `struct task_struct *` for both.
pub fn resolve_wrappers(btf: &Btf<'_>, proto: &mut Prototype) -> Result<()> {
    fn resolve(btf: &Btf<'_>, ty: &mut CType, kfunc: &str) -> Result<()> {
        match ty {
            CType::Ptr { target, .. } => resolve(btf, target, kfunc),
            CType::Wrapper { chain } => {
                let mut chosen = &chain[0];
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
                    chosen = record;
                    break;
                }
                *ty = CType::Struct {
                    name: chosen.name.clone(),
                    union: chosen.union,
                };
                Ok(())
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
    /// The module's own structs, from DWARF, and those written so far.
    defs: BTreeMap<String, dwarf::StructDef>,
    structs: BTreeMap<String, u32>,
    /// Structs whose members are being resolved (a member pointing back to one is left out).
    in_progress: BTreeSet<String>,
    /// What [`Outcome::structs`] reports.
    structs_written: Vec<(String, u32, Vec<String>)>,
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
            if let Some(id) = vmlinux_struct(base, name)? {
                return Ok(id);
            }
            if let Some(id) = module_struct(split, name)? {
                return Ok(id);
            }
            if let Some(id) = added.structs.get(name) {
                return Ok(*id);
            }
            let def = added.defs.get(name).cloned().with_context(|| {
                format!(
                    "{} {name} is no vmlinux type and was not found in the module's DWARF",
                    if *union { "union" } else { "struct" }
                )
            })?;
            if added.in_progress.contains(name) {
                bail!("{name} refers to itself");
            }
            added.in_progress.insert(name.clone());
            // Member types first: libbpf appends members to the type added last.
            let mut members = Vec::new();
            let mut omitted = Vec::new();
            for m in &def.members {
                let resolved = member_btf_type(base, split, added, m);
                match resolved {
                    Ok(id) => members.push((m.name.clone(), id, (m.offset * 8) as u32)),
                    Err(e) => omitted.push(format!("{}: {e:#}", m.name)),
                }
            }
            added.in_progress.remove(name);
            let id = split.add_struct(name, def.size as u32, *union, &members)?;
            added.structs.insert(name.clone(), id);
            added.structs_written.push((name.clone(), id, omitted));
            Ok(id)
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

/// `decl` with GCC's spellings of integer types (in the BTF of a GCC-built vmlinux) replaced by
/// clang's, so that declarations from either compare equal.
fn clang_spelling(decl: &str) -> String {
    const GCC_TO_CLANG: &[(&str, &str)] = &[
        ("long long unsigned int", "unsigned long long"),
        ("long long int", "long long"),
        ("long unsigned int", "unsigned long"),
        ("short unsigned int", "unsigned short"),
        ("short int", "short"),
        ("long int", "long"),
    ];
    let mut s = decl.to_owned();
    for (gcc, clang) in GCC_TO_CLANG {
        s = s.replace(gcc, clang);
    }
    s
}

/// The BTF id of the first of a member's candidate types that BTF has with the member's size;
/// the error says why none does.
fn member_btf_type(
    base: &Btf<'_>,
    split: &mut Btf<'_>,
    added: &mut Added,
    m: &dwarf::Member,
) -> Result<u32> {
    let tys = m.ty.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut why = Vec::new();
    for ty in tys {
        // Structs by value only as vmlinux's: the module's own are written for kfuncs and id
        // lists alone.
        if let CType::Struct { name, .. } = ty {
            if vmlinux_struct(base, name)?.is_none() {
                why.push(format!("{} is no vmlinux type", c_type(ty).trim_end()));
                continue;
            }
        }
        match btf_type(base, split, added, ty) {
            Ok(id) => {
                let size = u64::from(split.size_of(id)?);
                if size == m.size {
                    return Ok(id);
                }
                why.push(format!(
                    "{} is {size} bytes in BTF but {} in DWARF",
                    c_type(ty).trim_end(),
                    m.size
                ));
            }
            Err(e) => why.push(format!("{e:#}")),
        }
    }
    bail!("{}", why.join("; "))
}

/// Re-reads the written object and checks that every added `FUNC` is there with the whole
/// prototype derived from DWARF (types and names, rendered as C), with its `bpf_kfunc` tag if
/// it is in a kfunc set and without one otherwise, and every added struct with its members.
fn verify(base: &Btf<'_>, path: &Path, outcome: &Outcome, kfuncs: &BTreeSet<String>) -> Result<()> {
    let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file = object::File::parse(&*data)?;
    let btf = module_btf(base, &file)?
        .with_context(|| format!("{}: .BTF vanished after objcopy", path.display()))?
        .btf;
    verify_funcs(&btf, path, outcome, kfuncs, true)
}

/// [`verify`] for a raw split BTF file ([`Options::btf`]): the FUNCs, and no `bpf_kfunc` tag of
/// ours (`resolve_btfids` adds one; two would be one too many).
fn verify_raw(
    base: &Btf<'_>,
    path: &Path,
    outcome: &Outcome,
    kfuncs: &BTreeSet<String>,
) -> Result<()> {
    let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let btf = Btf::new_split(&data, base)?;
    verify_funcs(&btf, path, outcome, kfuncs, false)
}

/// Checks every added `FUNC` against its DWARF prototype, and that it has exactly one
/// `bpf_kfunc` decl tag if it is a kfunc (of `kfuncs`) and the tags are ours (`tagged`), none
/// otherwise; and every added struct.
fn verify_funcs(
    btf: &Btf<'_>,
    path: &Path,
    outcome: &Outcome,
    kfuncs: &BTreeSet<String>,
    tagged: bool,
) -> Result<()> {
    let tags = btf.decl_tags()?;
    for (proto, _) in &outcome.added {
        let id = btf.find(&proto.name, Kind::Func)?.with_context(|| {
            format!(
                "{}: FUNC {} missing after writing",
                path.display(),
                proto.name
            )
        })?;
        let written = clang_spelling(&btf.c_declaration(id)?);
        let derived = clang_spelling(&c_declaration(proto));
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
        let want = usize::from(tagged && kfuncs.contains(&proto.name));
        if count != want {
            bail!(
                "{}: FUNC {} has {count} {KFUNC_TAG} decl tag(s) after writing, not {want}",
                path.display(),
                proto.name,
            );
        }
    }
    for (name, _, _) in &outcome.structs {
        if module_struct(btf, name)?.is_none() {
            bail!("{}: struct {name} missing after writing", path.display());
        }
    }
    Ok(())
}

/// The module's BTF as the kernel sees it once loaded, as raw split BTF on `base`: a module with
/// a distilled `.BTF.base` (7.x external modules) relocated onto vmlinux, for tools that cannot
/// read `.BTF.base` (bpftool 7.1: `bpftool -B vmlinux btf dump file OUT`).
pub fn relocated_btf(base: &Path, module: &Path) -> Result<Vec<u8>> {
    let base =
        Btf::parse(base).with_context(|| format!("cannot load the base BTF {}", base.display()))?;
    let data =
        std::fs::read(module).with_context(|| format!("cannot read {}", module.display()))?;
    let file = object::File::parse(&*data)
        .with_context(|| format!("{} is not an ELF object", module.display()))?;
    let btf = module_btf(&base, &file)?
        .with_context(|| format!("{}: no .BTF section", module.display()))?
        .btf;
    btf.raw_data()
}

/// The BPF-side declarations of a module's kfuncs, from the module's BTF: the header a BPF
/// program includes after `vmlinux.h` instead of writing `__ksym` declarations by hand.
///
/// Every `FUNC` of the module's BTF with a `bpf_kfunc` decl tag (what pahole and btfgen put on
/// the functions of kfunc sets) becomes an `extern ... __ksym;` declaration, as newer bpftool
/// writes them into `vmlinux.h`; enums of the module's own BTF that the prototypes use are
/// defined first. Everything is in name order, so that the header does not depend on the order of
/// the module's BTF (7.x sorts it by name, 6.x does not). `guard` names the include guard.
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
    // By name, not by id: 7.x's resolve_btfids sorts the module's BTF by name, 6.x keeps pahole's
    // and btfgen's order, and the header must be the same on both.
    let mut named = Vec::new();
    for id in funcs {
        named.push((btf.type_info(id)?.name, id));
    }
    named.sort();
    let funcs: Vec<u32> = named.into_iter().map(|(_, id)| id).collect();
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
    let mut structs = Vec::new();
    for &func in &funcs {
        let proto = btf.type_info(btf.type_info(func)?.size_or_type)?;
        let mut types: Vec<u32> = proto.params.iter().map(|(_, t)| *t).collect();
        types.push(proto.size_or_type);
        for mut t in types {
            if t >= start && btf.type_info(t)?.kind == btf::ENUM && !enums.contains(&t) {
                enums.push(t);
            }
            // The module's own structs behind pointers (through `const`).
            while t != 0 && matches!(btf.type_info(t)?.kind, btf::PTR | btf::CONST) {
                t = btf.type_info(t)?.size_or_type;
            }
            if t >= start
                && matches!(btf.type_info(t)?.kind, btf::STRUCT | btf::UNION)
                && !structs.contains(&t)
            {
                structs.push(t);
            }
        }
    }
    let name_of = |id: u32| btf.type_info(id).map(|t| t.name).unwrap_or_default();
    enums.sort_by_key(|&id| name_of(id));
    structs.sort_by_key(|&id| name_of(id));
    for id in enums {
        let _ = writeln!(out, "enum {} {{", btf.type_info(id)?.name);
        for (vname, value) in btf.enum_values(id)? {
            let _ = writeln!(out, "\t{vname} = {value},");
        }
        let _ = writeln!(out, "}};\n");
    }
    for id in structs {
        out.push_str(&struct_definition(&btf, id)?);
    }
    for func in funcs {
        let _ = writeln!(out, "extern {} __ksym;", btf.c_declaration(func)?);
    }
    let _ = writeln!(out, "\n#endif /* {guard} */");
    Ok(out)
}

/// A C definition of the module's struct `id` with the layout of its BTF: members at their BTF
/// offsets, the bytes BTF leaves out as `__pad_<offset>` arrays, and static assertions that the
/// C compiler agrees.
fn struct_definition(btf: &Btf<'_>, id: u32) -> Result<String> {
    let t = btf.type_info(id)?;
    let keyword = if t.kind == btf::UNION {
        "union"
    } else {
        "struct"
    };
    let name = &t.name;
    let mut out = format!("{keyword} {name} {{\n");
    let mut members = t.members.clone();
    members.sort_by_key(|m| m.2);
    let mut at = 0u64;
    let mut asserts = Vec::new();
    for (mname, ty, bits) in &members {
        let offset = u64::from(*bits / 8);
        if t.kind == btf::STRUCT && offset > at {
            let _ = writeln!(out, "\tunsigned char __pad_{at}[{}];", offset - at);
        }
        let _ = writeln!(out, "\t{}{mname};", btf.c_type(*ty)?);
        asserts.push(format!(
            "_Static_assert(__builtin_offsetof({keyword} {name}, {mname}) == {offset}, \
             \"{keyword} {name}: {mname} is not where the module's BTF puts it\");"
        ));
        at = at.max(offset + u64::from(btf.size_of(*ty)?));
    }
    let size = u64::from(t.size_or_type);
    if t.kind == btf::STRUCT && size > at {
        let _ = writeln!(out, "\tunsigned char __pad_{at}[{}];", size - at);
    }
    let _ = writeln!(out, "}};");
    asserts.push(format!(
        "_Static_assert(sizeof({keyword} {name}) == {size}, \
         \"{keyword} {name}: the size differs from the module's BTF\");"
    ));
    for a in asserts {
        let _ = writeln!(out, "{a}");
    }
    out.push('\n');
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
