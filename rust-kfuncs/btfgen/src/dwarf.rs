// SPDX-License-Identifier: GPL-2.0

//! Kfunc prototypes from a module's DWARF.
//!
//! A `.ko` is a relocatable object: references between debug sections (`DW_FORM_strp`,
//! `DW_AT_stmt_list`, ...) are zero in `.debug_*` and completed by `.rela.debug_*`, so every
//! section is read through its relocations.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use anyhow::{anyhow, bail, Context, Result};
use gimli::{AttributeValue, EndianSlice, Reader as _, RunTimeEndian, UnitOffset};
use object::{Object, ObjectSection};

/// A C-level type a kfunc parameter or return value maps to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CType {
    /// No value (`()` / no return type).
    Void,
    /// A vmlinux integer type, by its C name (e.g. `int`, `unsigned int`, `_Bool`).
    Int {
        /// C names the type may have in vmlinux BTF, preferred first.
        names: &'static [&'static str],
        /// Size in bytes from DWARF.
        size: u64,
        /// Signedness.
        encoding: IntEncoding,
    },
    /// A struct or union by name, without any Rust path; only behind a pointer, mapped onto the
    /// vmlinux type of that name.
    Struct {
        /// Name of the struct or union.
        name: String,
        /// `true` for a union.
        union: bool,
    },
    /// An enum (a fieldless Rust enum behind `KfuncEnum<E>`): vmlinux's enum of that name, or a
    /// new one in the module's BTF.
    Enum {
        /// Name of the enum, without any Rust path.
        name: String,
        /// Size in bytes.
        size: u64,
        /// Enumerators and their values, in declaration order.
        values: Vec<(String, i64)>,
    },
    /// A Rust struct or union behind a pointer that may stand for a C one: the chain of it and
    /// the types it transparently wraps (one field of non-zero size, as large as it), outermost
    /// first, e.g. `Task`, `Opaque<task_struct>`, ..., `task_struct`.
    /// [`crate::resolve_wrappers`] turns it into the first [`CType::Struct`] of the chain that
    /// vmlinux BTF has, as resolve_btfids does for Rust kfuncs in-tree.
    Wrapper {
        /// The chain, outermost first.
        chain: Vec<Record>,
    },
    /// A pointer (`*mut T`, `*const T`; `*mut c_void` is `void *`).
    Ptr {
        /// The pointed-to type.
        target: Box<CType>,
        /// `true` for a Rust `*const` pointer: C `const T *`.
        is_const: bool,
    },
}

/// A struct or union of a [`CType::Wrapper`] chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Its name (`Opaque<bindings::task_struct>` keeps the Rust spelling).
    pub name: String,
    /// `true` for a union.
    pub union: bool,
    /// Its size in bytes.
    pub size: u64,
}

impl CType {
    /// `struct name *` (or `union name *`), the pointer shape most kfuncs take.
    pub fn struct_ptr(name: &str, union: bool) -> CType {
        CType::Ptr {
            target: Box::new(CType::Struct {
                name: name.to_owned(),
                union,
            }),
            is_const: false,
        }
    }
}

/// One kfunc parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    /// Name from `DW_AT_name`.
    pub name: String,
    /// Mapped type.
    pub ty: CType,
}

/// A kfunc prototype derived from DWARF.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prototype {
    /// Function (and symbol) name.
    pub name: String,
    /// Return type.
    pub ret: CType,
    /// Parameters, in order.
    pub params: Vec<Param>,
}

/// A struct or union the module defines, as its DWARF lays it out: what btfgen writes into the
/// module's BTF for a type no vmlinux type stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StructDef {
    /// Name (a C identifier).
    pub name: String,
    /// `true` for a union.
    pub union: bool,
    /// Size in bytes.
    pub size: u64,
    /// Members in DWARF order.
    pub members: Vec<Member>,
}

/// One member of a [`StructDef`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Name from `DW_AT_name`.
    pub name: String,
    /// Offset in bytes.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
    /// The C types BPF could read it as, the outermost first (`struct refcount_struct`, then
    /// `atomic_t`, then `int`): the first one BTF has is taken. Or why it has none (then BTF
    /// leaves the member out).
    pub ty: std::result::Result<Vec<CType>, String>,
}

/// The signedness BTF records for an integer (`BTF_INT_SIGNED`, `BTF_INT_BOOL` or neither).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntEncoding {
    /// Unsigned integer.
    Unsigned,
    /// Signed integer.
    Signed,
    /// `_Bool`.
    Bool,
    /// C's plain `char`, whatever its signedness (the kernel builds with `-funsigned-char`).
    Char,
}

/// An integer type: its DWARF names (Rust's, then GCC's and clang's C spelling), its C names as
/// vmlinux BTF may spell them (clang, then GCC), and its encoding.
struct IntType {
    dwarf: &'static [&'static str],
    c: &'static [&'static str],
    encoding: IntEncoding,
}

const INT_TYPES: &[IntType] = &[
    IntType {
        dwarf: &["bool", "_Bool"],
        c: &["_Bool"],
        encoding: IntEncoding::Bool,
    },
    IntType {
        dwarf: &["char"],
        c: &["char"],
        encoding: IntEncoding::Char,
    },
    IntType {
        dwarf: &["i8", "signed char"],
        c: &["signed char"],
        encoding: IntEncoding::Signed,
    },
    IntType {
        dwarf: &["u8", "unsigned char"],
        c: &["unsigned char"],
        encoding: IntEncoding::Unsigned,
    },
    IntType {
        dwarf: &["i16", "short", "short int"],
        c: &["short", "short int"],
        encoding: IntEncoding::Signed,
    },
    IntType {
        dwarf: &["u16", "unsigned short", "short unsigned int"],
        c: &["unsigned short", "short unsigned int"],
        encoding: IntEncoding::Unsigned,
    },
    IntType {
        dwarf: &["i32", "int"],
        c: &["int"],
        encoding: IntEncoding::Signed,
    },
    IntType {
        dwarf: &["u32", "unsigned int"],
        c: &["unsigned int"],
        encoding: IntEncoding::Unsigned,
    },
    IntType {
        dwarf: &["i64", "long long", "long long int"],
        c: &["long long", "long long int"],
        encoding: IntEncoding::Signed,
    },
    IntType {
        dwarf: &["u64", "unsigned long long", "long long unsigned int"],
        c: &["unsigned long long", "long long unsigned int"],
        encoding: IntEncoding::Unsigned,
    },
    IntType {
        dwarf: &["isize", "long", "long int"],
        c: &["long", "long int"],
        encoding: IntEncoding::Signed,
    },
    IntType {
        dwarf: &["usize", "unsigned long", "long unsigned int"],
        c: &["unsigned long", "long unsigned int"],
        encoding: IntEncoding::Unsigned,
    },
];

/// vmlinux's plain `char`, for `const char *` parameters named `*__str`.
pub const CHAR: CType = CType::Int {
    names: &["char"],
    size: 1,
    encoding: IntEncoding::Char,
};

/// The narrow-argument wrappers of kfunc_btf.rs and the C integer each stands for.
fn wrapper_int(name: &str) -> Option<CType> {
    let (c, size, encoding): (&'static [&'static str], u64, IntEncoding) = match name {
        "KfuncU8" => (&["unsigned char"], 1, IntEncoding::Unsigned),
        "KfuncI8" => (&["signed char"], 1, IntEncoding::Signed),
        "KfuncU16" => (
            &["unsigned short", "short unsigned int"],
            2,
            IntEncoding::Unsigned,
        ),
        "KfuncI16" => (&["short", "short int"], 2, IntEncoding::Signed),
        "KfuncBool" => (&["_Bool"], 1, IntEncoding::Bool),
        _ => return None,
    };
    Some(CType::Int {
        names: c,
        size,
        encoding,
    })
}

/// One debug section with the relocations that complete it.
#[derive(Default)]
struct Section<'data> {
    data: Cow<'data, [u8]>,
    relocations: RelocationMap,
}

#[derive(Debug, Default)]
struct RelocationMap(object::read::RelocationMap);

impl gimli::read::Relocate for &RelocationMap {
    fn relocate_address(&self, offset: usize, value: u64) -> gimli::Result<u64> {
        Ok(self.0.relocate(offset as u64, value))
    }

    fn relocate_offset(&self, offset: usize, value: usize) -> gimli::Result<usize> {
        <usize as gimli::ReaderOffset>::from_u64(self.0.relocate(offset as u64, value as u64))
    }
}

type Reader<'a> = gimli::RelocateReader<EndianSlice<'a, RunTimeEndian>, &'a RelocationMap>;
type Unit<'a> = gimli::Unit<Reader<'a>>;
type Dwarf<'a> = gimli::Dwarf<Reader<'a>>;

fn load_section<'data>(file: &object::File<'data>, id: gimli::SectionId) -> Result<Section<'data>> {
    let Some(section) = file.section_by_name(id.name()) else {
        return Ok(Section::default());
    };
    let data = section
        .uncompressed_data()
        .with_context(|| format!("cannot read {}", id.name()))?;
    let relocations = section
        .relocation_map()
        .map_err(|e| anyhow!("cannot apply the relocations of {}: {e}", id.name()))?;
    Ok(Section {
        data,
        relocations: RelocationMap(relocations),
    })
}

/// The DWARF sections of an object file, loaded once, relocations applied.
struct Loaded<'data> {
    sections: gimli::DwarfSections<Section<'data>>,
    endian: RunTimeEndian,
}

impl<'data> Loaded<'data> {
    fn new(file: &object::File<'data>) -> Result<Self> {
        let endian = if file.is_little_endian() {
            RunTimeEndian::Little
        } else {
            RunTimeEndian::Big
        };
        let sections = gimli::DwarfSections::load(|id| load_section(file, id))?;
        Ok(Self { sections, endian })
    }

    /// The DWARF to read, borrowing the sections.
    fn dwarf(&self) -> Dwarf<'_> {
        self.sections.borrow(|section| {
            gimli::RelocateReader::new(
                EndianSlice::new(&section.data, self.endian),
                &section.relocations,
            )
        })
    }
}

/// Finds the prototypes of `names` in the DWARF of `file`.
///
/// Names without a `DW_TAG_subprogram` definition are left out of the result; a definition
/// whose types do not map to [`CType`]s is an error that names the kfunc, the parameter and the
/// type.
pub fn prototypes(
    file: &object::File<'_>,
    names: &[String],
) -> Result<BTreeMap<String, Prototype>> {
    let loaded = Loaded::new(file)?;
    let dwarf = loaded.dwarf();
    let wanted: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    let mut found = BTreeMap::new();

    let mut units = dwarf.units();
    while let Some(header) = units.next()? {
        let unit = dwarf.unit(header)?;
        let mut entries = unit.entries();
        while let Some((_, entry)) = entries.next_dfs()? {
            if entry.tag() != gimli::DW_TAG_subprogram || !is_definition(entry)? {
                continue;
            }
            let Some(name) = symbol_name(&dwarf, &unit, entry.offset())? else {
                continue;
            };
            if !wanted.contains(name.as_str()) || found.contains_key(&name) {
                continue;
            }
            let proto = prototype(&dwarf, &unit, entry.offset(), &name)?;
            found.insert(name, proto);
        }
    }

    Ok(found)
}

/// Finds the definitions of the structs and unions named `names` in the DWARF of `file`.
///
/// Each member gets the C type BPF would read it as: an integer, a pointer as a kfunc parameter
/// may be one, a struct or union by value (named, for vmlinux's type of that name), or what a
/// wrapper of one non-zero-sized field of its own size holds (`UnsafeCell<T>`, `Opaque<T>`,
/// atomics, `MaybeUninit<T>`). Members of other types keep the reason they have none. Names
/// without a definition are left out of the result.
pub fn struct_defs(
    file: &object::File<'_>,
    names: &BTreeSet<String>,
) -> Result<BTreeMap<String, StructDef>> {
    let loaded = Loaded::new(file)?;
    let dwarf = loaded.dwarf();
    let mut found = BTreeMap::new();
    let mut units = dwarf.units();
    while let Some(header) = units.next()? {
        let unit = dwarf.unit(header)?;
        let mut entries = unit.entries();
        while let Some((_, entry)) = entries.next_dfs()? {
            let union = match entry.tag() {
                gimli::DW_TAG_structure_type => false,
                gimli::DW_TAG_union_type => true,
                _ => continue,
            };
            if let Some(AttributeValue::Flag(true)) = entry.attr_value(gimli::DW_AT_declaration)? {
                continue;
            }
            let Some(size) = entry
                .attr_value(gimli::DW_AT_byte_size)?
                .and_then(|v| v.udata_value())
            else {
                continue;
            };
            let Some(name) = string_attr(&dwarf, &unit, entry.offset(), gimli::DW_AT_name)? else {
                continue;
            };
            if !names.contains(&name) || found.contains_key(&name) {
                continue;
            }
            let members = members(&dwarf, &unit, entry.offset())?;
            found.insert(
                name.clone(),
                StructDef {
                    name,
                    union,
                    size,
                    members,
                },
            );
        }
    }
    Ok(found)
}

/// The members of the struct or union at `off`.
fn members(dwarf: &Dwarf<'_>, unit: &Unit<'_>, off: UnitOffset) -> Result<Vec<Member>> {
    let mut out = Vec::new();
    let mut tree = unit.entries_tree(Some(off))?;
    let root = tree.root()?;
    let mut children = root.children();
    while let Some(child) = children.next()? {
        let entry = child.entry();
        if entry.tag() != gimli::DW_TAG_member {
            continue;
        }
        let name = string_attr(dwarf, unit, entry.offset(), gimli::DW_AT_name)?.unwrap_or_default();
        let offset = match entry.attr_value(gimli::DW_AT_data_member_location)? {
            Some(v) => v.udata_value().unwrap_or(0),
            None => 0,
        };
        let Some(ty) = type_of(unit, entry.offset()).map_err(|e| anyhow!(e))? else {
            continue;
        };
        let size = type_size(unit, ty).map_err(|e| anyhow!(e))?.unwrap_or(0);
        let ty = member_type(dwarf, unit, ty);
        out.push(Member {
            name,
            offset,
            size,
            ty,
        });
    }
    Ok(out)
}

/// The size in bytes of the type at `off`, through typedefs and qualifiers.
fn type_size(unit: &Unit<'_>, off: UnitOffset) -> Result<Option<u64>, String> {
    let off = strip_typedefs(unit, off)?;
    let entry = unit.entry(off).map_err(unreadable)?;
    if entry.tag() == gimli::DW_TAG_pointer_type {
        return Ok(Some(8));
    }
    Ok(entry
        .attr_value(gimli::DW_AT_byte_size)
        .map_err(unreadable)?
        .and_then(|v| v.udata_value()))
}

/// The one non-zero-sized field of a wrapper struct or union as large as the wrapper itself
/// (`UnsafeCell<T>`, `Opaque<T>`, `AtomicU64`, `MaybeUninit<T>`, ...), if `off` is one.
fn wrapped(unit: &Unit<'_>, off: UnitOffset) -> Result<Option<UnitOffset>, String> {
    let entry = unit.entry(off).map_err(unreadable)?;
    if !matches!(
        entry.tag(),
        gimli::DW_TAG_structure_type | gimli::DW_TAG_union_type
    ) {
        return Ok(None);
    }
    let Some(size) = entry
        .attr_value(gimli::DW_AT_byte_size)
        .map_err(unreadable)?
        .and_then(|v| v.udata_value())
    else {
        return Ok(None);
    };
    let mut tree = unit.entries_tree(Some(off)).map_err(unreadable)?;
    let root = tree.root().map_err(unreadable)?;
    let mut children = root.children();
    let mut inner = None;
    while let Some(child) = children.next().map_err(unreadable)? {
        match child.entry().tag() {
            gimli::DW_TAG_member => {}
            // A Rust enum's variant part: not a wrapper.
            gimli::DW_TAG_variant_part => return Ok(None),
            _ => continue,
        }
        let Some(ty) = type_of(unit, child.entry().offset())? else {
            continue;
        };
        if type_size(unit, ty)? == Some(0) {
            continue;
        }
        if inner.is_some() {
            return Ok(None);
        }
        inner = Some(ty);
    }
    match inner {
        Some(ty) if type_size(unit, ty)? == Some(size) && size > 0 => Ok(Some(ty)),
        _ => Ok(None),
    }
}

/// The C types BPF could read a struct member of type `off` as, the outermost first; see
/// [`struct_defs`].
fn member_type(
    dwarf: &Dwarf<'_>,
    unit: &Unit<'_>,
    mut off: UnitOffset,
) -> Result<Vec<CType>, String> {
    let mut candidates = Vec::new();
    for _ in 0..16 {
        off = strip_typedefs(unit, off)?;
        let entry = unit.entry(off).map_err(unreadable)?;
        if matches!(
            entry.tag(),
            gimli::DW_TAG_structure_type | gimli::DW_TAG_union_type
        ) {
            // A struct of a C name may be vmlinux's own (`refcount_t`): it comes first.
            let name = string_attr(dwarf, unit, off, gimli::DW_AT_name)
                .map_err(unreadable)?
                .unwrap_or_default();
            if is_c_identifier(&name) {
                candidates.push(CType::Struct {
                    name,
                    union: entry.tag() == gimli::DW_TAG_union_type,
                });
            }
        }
        match wrapped(unit, off)? {
            Some(inner) => off = inner,
            None => break,
        }
    }
    let entry = unit.entry(off).map_err(unreadable)?;
    let innermost = match entry.tag() {
        gimli::DW_TAG_structure_type | gimli::DW_TAG_union_type => None,
        gimli::DW_TAG_base_type | gimli::DW_TAG_enumeration_type => {
            Some(map_type(dwarf, unit, off, Pos::Pointee).map_err(|e| e.message("member")))
        }
        _ => Some(map_type(dwarf, unit, off, Pos::Param).map_err(|e| e.message("member"))),
    };
    match innermost {
        Some(Ok(ty)) => candidates.push(ty),
        Some(Err(e)) if candidates.is_empty() => return Err(e),
        _ => {}
    }
    if candidates.is_empty() {
        return Err(format!("{} has no C name", describe(dwarf, unit, off)));
    }
    Ok(candidates)
}

/// The layout of a struct or union as the module's DWARF has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Name.
    pub name: String,
    /// `true` for a union.
    pub union: bool,
    /// Size in bytes.
    pub size: u64,
    /// Named members and their offsets in bytes.
    pub members: Vec<(String, u64)>,
}

/// The layouts of the bindgen structs and unions in the module's DWARF: those inside a Rust
/// module named `bindings` (the kernel crate's `bindings::bindings_raw`, a module's own
/// `bindings`), which stand for C types the kernel also describes in its BTF.
pub fn bindgen_layouts(file: &object::File<'_>) -> Result<Vec<Layout>> {
    let loaded = Loaded::new(file)?;
    let dwarf = loaded.dwarf();
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let mut units = dwarf.units();
    while let Some(header) = units.next()? {
        let unit = dwarf.unit(header)?;
        if !is_rust(&unit) {
            continue;
        }
        // The namespaces enclosing the current entry, by depth.
        let mut namespaces: Vec<(isize, bool)> = Vec::new();
        let mut depth = 0isize;
        let mut entries = unit.entries();
        while let Some((delta, entry)) = entries.next_dfs()? {
            depth += delta;
            while namespaces.last().is_some_and(|&(d, _)| d >= depth) {
                namespaces.pop();
            }
            let tag = entry.tag();
            if tag == gimli::DW_TAG_namespace {
                let name = string_attr(&dwarf, &unit, entry.offset(), gimli::DW_AT_name)?;
                namespaces.push((depth, name.as_deref() == Some("bindings")));
                continue;
            }
            if !matches!(tag, gimli::DW_TAG_structure_type | gimli::DW_TAG_union_type)
                || !namespaces.iter().any(|&(_, b)| b)
            {
                continue;
            }
            if let Some(AttributeValue::Flag(true)) = entry.attr_value(gimli::DW_AT_declaration)? {
                continue;
            }
            let Some(size) = entry
                .attr_value(gimli::DW_AT_byte_size)?
                .and_then(|v| v.udata_value())
            else {
                continue;
            };
            let Some(name) = string_attr(&dwarf, &unit, entry.offset(), gimli::DW_AT_name)? else {
                continue;
            };
            if !is_c_identifier(&name) || !seen.insert(name.clone()) {
                continue;
            }
            let mut members = Vec::new();
            let mut tree = unit.entries_tree(Some(entry.offset()))?;
            let root = tree.root()?;
            let mut children = root.children();
            while let Some(child) = children.next()? {
                let m = child.entry();
                if m.tag() != gimli::DW_TAG_member {
                    continue;
                }
                let Some(mname) = string_attr(&dwarf, &unit, m.offset(), gimli::DW_AT_name)? else {
                    continue;
                };
                let offset = match m.attr_value(gimli::DW_AT_data_member_location)? {
                    Some(v) => v.udata_value().unwrap_or(0),
                    None => 0,
                };
                members.push((mname, offset));
            }
            out.push(Layout {
                name,
                union: tag == gimli::DW_TAG_union_type,
                size,
                members,
            });
        }
    }
    Ok(out)
}

fn is_definition(entry: &gimli::DebuggingInformationEntry<'_, '_, Reader<'_>>) -> Result<bool> {
    if let Some(AttributeValue::Flag(true)) = entry.attr_value(gimli::DW_AT_declaration)? {
        return Ok(false);
    }
    Ok(entry.attr(gimli::DW_AT_low_pc)?.is_some() || entry.attr(gimli::DW_AT_ranges)?.is_some())
}

/// Resolves a reference attribute to an offset in the same unit.
fn unit_ref(unit: &Unit<'_>, value: AttributeValue<Reader<'_>>) -> Result<Option<UnitOffset>> {
    Ok(match value {
        AttributeValue::UnitRef(off) => Some(off),
        AttributeValue::DebugInfoRef(off) => Some(
            off.to_unit_offset(&unit.header)
                .context("DWARF type reference to another unit is not supported")?,
        ),
        _ => None,
    })
}

/// An attribute of the entry at `off`, or of its `DW_AT_abstract_origin`/`DW_AT_specification`.
fn attr_with_origin<'a>(
    unit: &Unit<'a>,
    mut off: UnitOffset,
    attr: gimli::DwAt,
) -> Result<Option<AttributeValue<Reader<'a>>>> {
    for _ in 0..8 {
        let entry = unit.entry(off)?;
        if let Some(value) = entry.attr_value(attr)? {
            return Ok(Some(value));
        }
        let origin = match entry.attr_value(gimli::DW_AT_abstract_origin)? {
            Some(v) => Some(v),
            None => entry.attr_value(gimli::DW_AT_specification)?,
        };
        match origin.map(|v| unit_ref(unit, v)).transpose()?.flatten() {
            Some(next) => off = next,
            None => return Ok(None),
        }
    }
    bail!("DWARF abstract origin chain too deep")
}

fn string_attr(
    dwarf: &Dwarf<'_>,
    unit: &Unit<'_>,
    off: UnitOffset,
    attr: gimli::DwAt,
) -> Result<Option<String>> {
    let Some(value) = attr_with_origin(unit, off, attr)? else {
        return Ok(None);
    };
    let s = dwarf.attr_string(unit, value)?;
    Ok(Some(s.to_string_lossy()?.into_owned()))
}

/// The symbol a subprogram defines: its linkage name, else its name.
fn symbol_name(dwarf: &Dwarf<'_>, unit: &Unit<'_>, off: UnitOffset) -> Result<Option<String>> {
    if let Some(name) = string_attr(dwarf, unit, off, gimli::DW_AT_linkage_name)? {
        return Ok(Some(name));
    }
    string_attr(dwarf, unit, off, gimli::DW_AT_name)
}

fn prototype(dwarf: &Dwarf<'_>, unit: &Unit<'_>, off: UnitOffset, name: &str) -> Result<Prototype> {
    let ret = match attr_with_origin(unit, off, gimli::DW_AT_type)? {
        None => CType::Void,
        Some(value) => {
            let ty = unit_ref(unit, value)?.context("unexpected DW_AT_type form")?;
            map_type(dwarf, unit, ty, Pos::Return)
                .map_err(|t| anyhow!(t.message(&format!("kfunc {name}: return type"))))?
        }
    };

    // Parameters: the definition's children, or those of its abstract origin.
    let mut params = formal_parameters(unit, off)?;
    if params.is_empty() {
        if let Some(origin) = unit
            .entry(off)?
            .attr_value(gimli::DW_AT_abstract_origin)?
            .map(|v| unit_ref(unit, v))
            .transpose()?
            .flatten()
        {
            params = formal_parameters(unit, origin)?;
        }
    }

    let mut out = Vec::new();
    for (i, param) in params.into_iter().enumerate() {
        let pname = string_attr(dwarf, unit, param, gimli::DW_AT_name)?.with_context(|| {
            format!(
                "kfunc {name}: parameter #{} has no name in DWARF; bind it to a name",
                i + 1
            )
        })?;
        let value = attr_with_origin(unit, param, gimli::DW_AT_type)?
            .with_context(|| format!("kfunc {name}: parameter {pname} has no type in DWARF"))?;
        let ty = unit_ref(unit, value)?.context("unexpected DW_AT_type form")?;
        let ty = map_type(dwarf, unit, ty, Pos::Param)
            .map_err(|t| anyhow!(t.message(&format!("kfunc {name}: parameter {pname}"))))?;
        if ty == CType::Void {
            bail!("kfunc {name}: parameter {pname} has a zero-sized type");
        }
        if let Some(wrapper) = narrow_wrapper(unit, param)?.filter(|_| is_rust(unit)) {
            bail!(
                "kfunc {name}: parameter {pname}: a BPF program may pass any value in the \
                 register, and rustc assumes a {} argument is already valid and extended: \
                 take kfunc_btf::{wrapper} instead",
                wrapper.trim_start_matches("Kfunc").to_lowercase()
            );
        }
        out.push(Param { name: pname, ty });
    }
    Ok(Prototype {
        name: name.to_owned(),
        ret,
        params: out,
    })
}

/// Whether the unit was compiled from Rust (its parameters get the narrow-type checks).
fn is_rust(unit: &Unit<'_>) -> bool {
    unit.entries()
        .next_dfs()
        .ok()
        .flatten()
        .and_then(|(_, e)| e.attr_value(gimli::DW_AT_language).ok().flatten())
        .is_some_and(|v| matches!(v, AttributeValue::Language(gimli::DW_LANG_Rust)))
}

/// For a parameter whose Rust type is `bool` or an 8/16-bit integer, the wrapper to take instead.
fn narrow_wrapper(unit: &Unit<'_>, param: UnitOffset) -> Result<Option<&'static str>> {
    let Some(value) = attr_with_origin(unit, param, gimli::DW_AT_type)? else {
        return Ok(None);
    };
    let Some(ty) = unit_ref(unit, value)? else {
        return Ok(None);
    };
    let entry = unit.entry(ty)?;
    if entry.tag() != gimli::DW_TAG_base_type {
        return Ok(None);
    }
    let size = entry
        .attr_value(gimli::DW_AT_byte_size)?
        .and_then(|v| v.udata_value());
    let encoding = entry.attr_value(gimli::DW_AT_encoding)?;
    Ok(match (size, encoding) {
        (Some(1), Some(AttributeValue::Encoding(gimli::DW_ATE_boolean))) => Some("KfuncBool"),
        (Some(1), Some(AttributeValue::Encoding(gimli::DW_ATE_signed))) => Some("KfuncI8"),
        (Some(1), Some(_)) => Some("KfuncU8"),
        (Some(2), Some(AttributeValue::Encoding(gimli::DW_ATE_signed))) => Some("KfuncI16"),
        (Some(2), Some(_)) => Some("KfuncU16"),
        _ => None,
    })
}

fn formal_parameters(unit: &Unit<'_>, off: UnitOffset) -> Result<Vec<UnitOffset>> {
    let mut tree = unit.entries_tree(Some(off))?;
    let root = tree.root()?;
    let mut children = root.children();
    let mut params = Vec::new();
    while let Some(child) = children.next()? {
        let entry = child.entry();
        if entry.tag() == gimli::DW_TAG_formal_parameter {
            params.push(entry.offset());
        } else if entry.tag() == gimli::DW_TAG_unspecified_parameters {
            bail!("variadic functions cannot be kfuncs");
        }
    }
    Ok(params)
}

/// Describes the DWARF type at `off` for an error message.
fn describe(dwarf: &Dwarf<'_>, unit: &Unit<'_>, off: UnitOffset) -> String {
    let tag = unit
        .entry(off)
        .map(|e| e.tag().static_string().unwrap_or("DW_TAG_?").to_owned())
        .unwrap_or_default();
    match string_attr(dwarf, unit, off, gimli::DW_AT_name) {
        Ok(Some(n)) => format!("`{n}` ({tag})"),
        _ => format!("<anonymous> ({tag})"),
    }
}

fn unreadable(e: impl std::fmt::Display) -> String {
    format!("<unreadable DWARF: {e}>")
}

/// The `DW_AT_type` of the entry at `off`, if any.
fn type_of(unit: &Unit<'_>, off: UnitOffset) -> Result<Option<UnitOffset>, String> {
    let entry = unit.entry(off).map_err(unreadable)?;
    match entry.attr_value(gimli::DW_AT_type).map_err(unreadable)? {
        Some(v) => unit_ref(unit, v).map_err(unreadable),
        None => Ok(None),
    }
}

/// Skips C typedefs and qualifiers.
fn strip_typedefs(unit: &Unit<'_>, mut off: UnitOffset) -> Result<UnitOffset, String> {
    for _ in 0..16 {
        let tag = unit.entry(off).map_err(unreadable)?.tag();
        match tag {
            gimli::DW_TAG_typedef | gimli::DW_TAG_const_type | gimli::DW_TAG_volatile_type => {
                match type_of(unit, off)? {
                    Some(next) => off = next,
                    None => return Ok(off),
                }
            }
            _ => return Ok(off),
        }
    }
    Ok(off)
}

/// The integer a DWARF base type is, if it is one.
fn base_int(name: &str, size: Option<u64>) -> Option<CType> {
    let int = INT_TYPES.iter().find(|t| t.dwarf.contains(&name))?;
    Some(CType::Int {
        names: int.c,
        size: size?,
        encoding: int.encoding,
    })
}

/// The enum behind a `KfuncEnum<E>`: its template parameter.
fn wrapped_enum(dwarf: &Dwarf<'_>, unit: &Unit<'_>, off: UnitOffset) -> Result<CType, String> {
    let mut tree = unit.entries_tree(Some(off)).map_err(unreadable)?;
    let root = tree.root().map_err(unreadable)?;
    let mut children = root.children();
    let mut param = None;
    while let Some(child) = children.next().map_err(unreadable)? {
        if child.entry().tag() == gimli::DW_TAG_template_type_parameter {
            param = Some(child.entry().offset());
        }
    }
    let param = param.ok_or_else(|| describe(dwarf, unit, off))?;
    let e = type_of(unit, param)?.ok_or_else(|| describe(dwarf, unit, off))?;
    if unit.entry(e).map_err(unreadable)?.tag() != gimli::DW_TAG_enumeration_type {
        return Err(format!(
            "{} (KfuncEnum<E> needs a fieldless Rust enum as E)",
            describe(dwarf, unit, e)
        ));
    }
    enum_type(dwarf, unit, e)
}

/// An enum type: its name, size and enumerators.
fn enum_type(dwarf: &Dwarf<'_>, unit: &Unit<'_>, e: UnitOffset) -> Result<CType, String> {
    let entry = unit.entry(e).map_err(unreadable)?;
    let name = string_attr(dwarf, unit, e, gimli::DW_AT_name)
        .map_err(unreadable)?
        .ok_or_else(|| describe(dwarf, unit, e))?;
    let size = entry
        .attr_value(gimli::DW_AT_byte_size)
        .map_err(unreadable)?
        .and_then(|v| v.udata_value())
        .ok_or_else(|| describe(dwarf, unit, e))?;
    if size != 4 {
        return Err(format!(
            "`{name}` is {size} bytes (an enum kfunc argument must be #[repr(u32)] or \
             #[repr(i32)], the size of a C enum)"
        ));
    }
    let mut values = Vec::new();
    let mut tree = unit.entries_tree(Some(e)).map_err(unreadable)?;
    let root = tree.root().map_err(unreadable)?;
    let mut children = root.children();
    while let Some(child) = children.next().map_err(unreadable)? {
        let entry = child.entry();
        if entry.tag() != gimli::DW_TAG_enumerator {
            continue;
        }
        let vname = string_attr(dwarf, unit, entry.offset(), gimli::DW_AT_name)
            .map_err(unreadable)?
            .unwrap_or_default();
        let value = match entry
            .attr_value(gimli::DW_AT_const_value)
            .map_err(unreadable)?
        {
            Some(AttributeValue::Sdata(v)) => v,
            Some(AttributeValue::Udata(v)) => v as i64,
            Some(v) => v
                .sdata_value()
                .or(v.udata_value().map(|u| u as i64))
                .unwrap_or(0),
            None => 0,
        };
        values.push((vname, value));
    }
    Ok(CType::Enum { name, size, values })
}

/// Where a type occurs in a prototype: what it may be depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pos {
    /// A parameter: one BPF register, passed as the program likes within the verifier's rules.
    Param,
    /// The return value.
    Return,
    /// Behind a pointer (narrow integers are fine there: the verifier checks the memory).
    Pointee,
}

/// Why a type has no C type for BTF.
#[derive(Debug)]
enum Unmapped {
    /// btfgen knows no C type for it: the type, described.
    Unknown(String),
    /// Refused on purpose: the type, described, and why, with what to write instead.
    Refused(String, String),
}

impl From<String> for Unmapped {
    fn from(description: String) -> Self {
        Unmapped::Unknown(description)
    }
}

impl Unmapped {
    /// The error message, for a parameter or return value described by `at`
    /// (`kfunc f: parameter p`).
    fn message(&self, at: &str) -> String {
        match self {
            Unmapped::Unknown(t) => format!("{at}: type {t} has no BTF mapping"),
            Unmapped::Refused(t, why) => format!("{at}: {t} is refused: {why}"),
        }
    }
}

/// Why a Rust reference parameter is refused.
const WHY_REFERENCE: &str = "a reference promises an aligned, live object that is never NULL \
    and, for `&T`, that nobody writes during the call; the verifier promises none of that (it \
    passes NULL for `__nullable` (6.x: and `__opt`) arguments and for pointers no flag checks, and \
    the kernel writes to the objects it passes): take `*const T` or `*mut T`, and make a \
    reference in the kfunc only where its flags make that sound";

/// Why a Rust reference return value is refused.
const WHY_REFERENCE_RETURN: &str = "a returned reference promises Rust callers an object that \
    is never NULL and lives as long as the reference's lifetime, while an object a kfunc hands \
    to BPF lives until the program releases it: return `*mut T` or `*const T` (NULL with \
    KF_RET_NULL)";

/// Why `NonNull<T>` is refused.
const WHY_NON_NULL: &str = "`NonNull` promises a pointer that is never NULL, and the verifier \
    passes NULL for `__nullable` (6.x: and `__opt`) arguments and for pointers no flag checks: take \
    `*mut T` and make it a `NonNull` with `NonNull::new()` in the kfunc";

/// Why `Option<NonNull<T>>` is refused.
const WHY_OPTION_NON_NULL: &str = "it has a pointer's ABI, but its DWARF is a Rust enum, from \
    which btfgen derives no C type: take `*mut T` and convert it with `NonNull::new()` in the \
    kfunc";

/// Why a pointer to a pointer is refused.
const WHY_DOUBLE_POINTER: &str = "the verifier takes no pointer to a pointer as a kfunc \
    argument (a pointer must lead to a scalar, a struct of scalars or a kernel object): return \
    the object, or take the memory as `*mut c_void` followed by a `__sz` size";

/// Why a function pointer is refused.
const WHY_FN_POINTER: &str = "BPF programs pass callbacks only to the kernel's own kfuncs that \
    the verifier knows by name";

/// Why a slice, `str` or trait-object pointer is refused.
const WHY_FAT_POINTER: &str = "a pointer to a slice, `str` or trait object is two words \
    (address and length or vtable) and a BPF register holds one: take `*const T` (or `*const \
    c_void`) and pass the length as a `__sz` parameter next to it";

/// Why a struct, union or Rust enum by value is refused.
const WHY_BY_VALUE: &str = "a struct, union or Rust enum by value does not fit the one \
    register BPF passes per argument (and the verifier calls kfuncs with scalars and pointers \
    only): take a pointer";

/// Why a pointer to a generic Rust struct is refused.
const WHY_GENERIC: &str = "BTF names a struct with a C identifier, and a generic Rust type \
    has none: define a non-generic `#[repr(C)]` struct for BPF";

/// The refusal of a struct whose Rust name says it is a pointer or reference in disguise (a
/// fat pointer, `Option<&T>`, `NonNull<T>`), if btfgen refuses it.
fn refusal_by_name(name: &str, pos: Pos) -> Option<&'static str> {
    if name.starts_with('&') || name.starts_with("Option<&") {
        return Some(if pos == Pos::Return {
            WHY_REFERENCE_RETURN
        } else {
            WHY_REFERENCE
        });
    }
    if name.starts_with("Option<core::ptr::non_null::NonNull<")
        || name.starts_with("Option<NonNull<")
    {
        return Some(WHY_OPTION_NON_NULL);
    }
    if name.starts_with("NonNull<") {
        return Some(WHY_NON_NULL);
    }
    if name.starts_with("*const ") || name.starts_with("*mut ") {
        // A raw pointer that DWARF describes as a struct: a fat pointer.
        return Some(WHY_FAT_POINTER);
    }
    None
}

/// Whether `name` is a C identifier, as BTF requires of a struct's name.
fn is_c_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Maps a DWARF type to a [`CType`]; on failure says what the type is and, when btfgen refuses
/// it on purpose, why.
fn map_type(
    dwarf: &Dwarf<'_>,
    unit: &Unit<'_>,
    off: UnitOffset,
    pos: Pos,
) -> Result<CType, Unmapped> {
    let off = strip_typedefs(unit, off)?;
    let entry = unit.entry(off).map_err(unreadable)?;
    let name = string_attr(dwarf, unit, off, gimli::DW_AT_name).map_err(unreadable)?;
    let size = entry
        .attr_value(gimli::DW_AT_byte_size)
        .map_err(unreadable)?
        .and_then(|v| v.udata_value());
    let refused = |why: &str| Unmapped::Refused(describe(dwarf, unit, off), why.to_owned());
    match entry.tag() {
        gimli::DW_TAG_base_type => {
            let name = name.unwrap_or_default();
            if name == "()" {
                return Ok(CType::Void);
            }
            Ok(base_int(&name, size).ok_or_else(|| describe(dwarf, unit, off))?)
        }
        gimli::DW_TAG_pointer_type => {
            // Rust names its pointers (`*const T`, `&T`); C spells constness with a
            // DW_TAG_const_type.
            if name.as_deref().is_some_and(|n| n.starts_with('&')) {
                return Err(refused(if pos == Pos::Return {
                    WHY_REFERENCE_RETURN
                } else {
                    WHY_REFERENCE
                }));
            }
            let mut is_const = name.as_deref().is_some_and(|n| n.starts_with("*const"));
            let mut pointee = type_of(unit, off)?;
            for _ in 0..16 {
                let Some(p) = pointee else { break };
                match unit.entry(p).map_err(unreadable)?.tag() {
                    gimli::DW_TAG_const_type => is_const = true,
                    gimli::DW_TAG_typedef | gimli::DW_TAG_volatile_type => {}
                    _ => break,
                }
                pointee = type_of(unit, p)?;
            }
            let Some(pointee) = pointee else {
                return Ok(CType::Ptr {
                    target: Box::new(CType::Void),
                    is_const,
                });
            };
            let p = unit.entry(pointee).map_err(unreadable)?;
            let pname = string_attr(dwarf, unit, pointee, gimli::DW_AT_name).map_err(unreadable)?;
            let target = match (p.tag(), pname.as_deref()) {
                // Rust's `core::ffi::c_void` is an enum; C's `void`.
                (gimli::DW_TAG_enumeration_type, Some("c_void")) => CType::Void,
                (gimli::DW_TAG_pointer_type, _) => return Err(refused(WHY_DOUBLE_POINTER)),
                (gimli::DW_TAG_subroutine_type, _) => return Err(refused(WHY_FN_POINTER)),
                (gimli::DW_TAG_structure_type | gimli::DW_TAG_union_type, Some(n))
                    if refusal_by_name(n, Pos::Pointee).is_some() =>
                {
                    // `*mut &T`, `*mut NonNull<T>`, `*mut *const [u8]`: pointers behind a
                    // pointer.
                    return Err(refused(WHY_DOUBLE_POINTER));
                }
                (gimli::DW_TAG_structure_type | gimli::DW_TAG_union_type, Some(n))
                    if !is_c_identifier(n) =>
                {
                    return Err(refused(WHY_GENERIC));
                }
                (gimli::DW_TAG_structure_type, Some(n)) if wrapper_int(n).is_none() => {
                    record_chain(dwarf, unit, pointee)?
                }
                (gimli::DW_TAG_union_type, Some(_)) => record_chain(dwarf, unit, pointee)?,
                (gimli::DW_TAG_base_type, _) => match map_type(dwarf, unit, pointee, Pos::Pointee)?
                {
                    int @ CType::Int { .. } => int,
                    _ => return Err(describe(dwarf, unit, off).into()),
                },
                _ => return Err(describe(dwarf, unit, off).into()),
            };
            Ok(CType::Ptr {
                target: Box::new(target),
                is_const,
            })
        }
        gimli::DW_TAG_structure_type | gimli::DW_TAG_union_type => {
            let n = name.clone().unwrap_or_default();
            if let Some(why) = refusal_by_name(&n, pos) {
                return Err(refused(why));
            }
            if entry.tag() == gimli::DW_TAG_structure_type {
                if let Some(int) = wrapper_int(&n) {
                    return Ok(int);
                }
                if n.starts_with("KfuncEnum<") {
                    return Ok(wrapped_enum(dwarf, unit, off)?);
                }
            }
            Err(refused(WHY_BY_VALUE))
        }
        gimli::DW_TAG_enumeration_type if pos == Pos::Param && is_rust(unit) => {
            Err(Unmapped::Refused(
                describe(dwarf, unit, off),
                format!(
                    "a BPF program may pass any value: take kfunc_btf::KfuncEnum<{}>",
                    name.unwrap_or_default()
                ),
            ))
        }
        gimli::DW_TAG_enumeration_type => Ok(enum_type(dwarf, unit, off)?),
        _ => Err(describe(dwarf, unit, off).into()),
    }
}

/// The struct or union at `off`, behind a pointer: a [`CType::Struct`] when it wraps nothing,
/// else a [`CType::Wrapper`] with the chain of the structs and unions it transparently wraps.
fn record_chain(dwarf: &Dwarf<'_>, unit: &Unit<'_>, off: UnitOffset) -> Result<CType, String> {
    let mut chain = Vec::new();
    let mut cur = Some(off);
    while let Some(at) = cur.filter(|_| chain.len() < 16) {
        let at = strip_typedefs(unit, at)?;
        let tag = unit.entry(at).map_err(unreadable)?.tag();
        if !matches!(tag, gimli::DW_TAG_structure_type | gimli::DW_TAG_union_type) {
            break;
        }
        let Some(name) = string_attr(dwarf, unit, at, gimli::DW_AT_name).map_err(unreadable)?
        else {
            break;
        };
        let union = tag == gimli::DW_TAG_union_type;
        let Some(size) = type_size(unit, at)? else {
            if chain.is_empty() {
                // A declaration only (`struct task_struct;`): nothing to look into.
                return Ok(CType::Struct { name, union });
            }
            break;
        };
        chain.push(Record { name, union, size });
        cur = wrapped(unit, at)?;
    }
    match chain.len() {
        0 => Err(describe(dwarf, unit, off)),
        1 => {
            let Record { name, union, .. } = chain.remove(0);
            Ok(CType::Struct { name, union })
        }
        _ => Ok(CType::Wrapper { chain }),
    }
}
