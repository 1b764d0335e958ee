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
    /// A pointer to a vmlinux struct or union (`*mut bindings::task_struct`).
    Ptr {
        /// Name of the struct or union, without any Rust path.
        name: String,
        /// `true` for a union.
        union: bool,
    },
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

/// The signedness BTF records for an integer (`BTF_INT_SIGNED`, `BTF_INT_BOOL` or neither).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntEncoding {
    /// Unsigned integer.
    Unsigned,
    /// Signed integer.
    Signed,
    /// `_Bool`.
    Bool,
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

/// Finds the prototypes of `names` in the DWARF of `file`.
///
/// Names without a `DW_TAG_subprogram` definition are left out of the result; a definition
/// whose types do not map to [`CType`]s is an error that names the kfunc, the parameter and the
/// type.
pub fn prototypes(
    file: &object::File<'_>,
    names: &[String],
) -> Result<BTreeMap<String, Prototype>> {
    let endian = if file.is_little_endian() {
        RunTimeEndian::Little
    } else {
        RunTimeEndian::Big
    };
    let sections = gimli::DwarfSections::load(|id| load_section(file, id))?;
    let dwarf: Dwarf<'_> = sections.borrow(|section| {
        gimli::RelocateReader::new(
            EndianSlice::new(&section.data, endian),
            &section.relocations,
        )
    });
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
            map_type(dwarf, unit, ty)
                .map_err(|t| anyhow!("kfunc {name}: return type {t} has no BTF mapping"))?
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
        let ty = map_type(dwarf, unit, ty)
            .map_err(|t| anyhow!("kfunc {name}: parameter {pname}: type {t} has no BTF mapping"))?;
        if ty == CType::Void {
            bail!("kfunc {name}: parameter {pname} has a zero-sized type");
        }
        out.push(Param { name: pname, ty });
    }
    Ok(Prototype {
        name: name.to_owned(),
        ret,
        params: out,
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

/// Maps a DWARF type to a [`CType`]; on failure returns a description of the type for the
/// error message.
fn map_type(dwarf: &Dwarf<'_>, unit: &Unit<'_>, off: UnitOffset) -> Result<CType, String> {
    let describe = |off: UnitOffset| -> String {
        let tag = unit
            .entry(off)
            .map(|e| e.tag().static_string().unwrap_or("DW_TAG_?").to_owned())
            .unwrap_or_default();
        match string_attr(dwarf, unit, off, gimli::DW_AT_name) {
            Ok(Some(n)) => format!("`{n}` ({tag})"),
            _ => format!("<anonymous> ({tag})"),
        }
    };
    let err = |e: anyhow::Error| format!("<unreadable DWARF: {e}>");
    let mut off = off;
    for _ in 0..16 {
        let entry = unit.entry(off).map_err(|e| err(e.into()))?;
        let name = string_attr(dwarf, unit, off, gimli::DW_AT_name).map_err(err)?;
        let size = match entry
            .attr_value(gimli::DW_AT_byte_size)
            .map_err(|e| err(e.into()))?
        {
            Some(v) => v.udata_value(),
            None => None,
        };
        let target = match entry
            .attr_value(gimli::DW_AT_type)
            .map_err(|e| err(e.into()))?
        {
            Some(v) => unit_ref(unit, v).map_err(err)?,
            None => None,
        };
        match entry.tag() {
            gimli::DW_TAG_base_type => {
                let name = name.unwrap_or_default();
                if name == "()" {
                    return Ok(CType::Void);
                }
                let int = INT_TYPES
                    .iter()
                    .find(|t| t.dwarf.contains(&name.as_str()))
                    .ok_or_else(|| describe(off))?;
                return Ok(CType::Int {
                    names: int.c,
                    size: size.ok_or_else(|| describe(off))?,
                    encoding: int.encoding,
                });
            }
            gimli::DW_TAG_pointer_type => {
                let pointee = target.ok_or_else(|| describe(off))?;
                let p = unit.entry(pointee).map_err(|e| err(e.into()))?;
                let union = match p.tag() {
                    gimli::DW_TAG_structure_type => false,
                    gimli::DW_TAG_union_type => true,
                    _ => return Err(describe(off)),
                };
                let pname = string_attr(dwarf, unit, pointee, gimli::DW_AT_name)
                    .map_err(err)?
                    .ok_or_else(|| describe(off))?;
                return Ok(CType::Ptr { name: pname, union });
            }
            // C qualifiers and typedefs: look through them.
            gimli::DW_TAG_typedef | gimli::DW_TAG_const_type | gimli::DW_TAG_volatile_type => {
                off = target.ok_or_else(|| describe(off))?;
            }
            _ => return Err(describe(off)),
        }
    }
    Err(describe(off))
}
