// SPDX-License-Identifier: GPL-2.0

//! The ELF side: the kfunc names a module lists in `.BTF_ids`, its `.BTF` section, and writing
//! a new `.BTF` back.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};

/// Prefix of every symbol `resolve_btfids` patches (`BTF_ID_PREFIX` in its main.c).
const BTF_ID_PREFIX: &str = "__BTF_ID__";

/// Prefix of the label `btf_dtor_list!` puts on a destructor list (not a `__BTF_ID__` symbol:
/// resolve_btfids refuses prefixes it does not know).
pub const DTOR_LIST_PREFIX: &str = "__rust_kfuncs_dtors__";

/// What a module's `.BTF_ids` section declares.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BtfIds {
    /// `set8` names (`__BTF_ID__set8__<name>`), in address order.
    pub sets: Vec<String>,
    /// Function names (`__BTF_ID__func__<name>__<unique>`), in address order, without repeats.
    pub funcs: Vec<String>,
    /// The functions of `funcs` listed inside a `set8` (kfuncs, which get the `bpf_kfunc` tag);
    /// the others are in plain id lists, such as destructor lists.
    pub kfuncs: BTreeSet<String>,
    /// Struct and union names (`__BTF_ID__struct__<name>__<unique>`, `__BTF_ID__union__...`),
    /// in address order, without repeats.
    pub structs: Vec<String>,
    /// The structs of `structs` listed in a destructor list (`btf_dtor_list!`), with their
    /// destructor.
    pub dtors: Vec<(String, String)>,
}

/// Cuts `<name>__<unique>` at the last `__`, as `get_id()` in resolve_btfids does.
fn strip_unique(s: &str) -> Option<&str> {
    let last = s.rfind('_')?;
    if last == 0 || s.as_bytes()[last - 1] != b'_' {
        return None;
    }
    let name = &s[..last - 1];
    (!name.is_empty()).then_some(name)
}

/// Reads the `__BTF_ID__*` symbols of `.BTF_ids`.
///
/// Returns an empty [`BtfIds`] when the section does not exist.
pub fn btf_ids(file: &object::File<'_>) -> Result<BtfIds> {
    let mut ids = BtfIds::default();
    let Some(section) = file.section_by_name(".BTF_ids") else {
        return Ok(ids);
    };
    let symbols: Vec<_> = file
        .symbols()
        .filter(|s| s.section_index() == Some(section.index()))
        .collect();
    // Address ranges of the sets and of the destructor lists.
    let range = |prefix: &str| -> Vec<(u64, u64)> {
        symbols
            .iter()
            .filter(|s| s.name().is_ok_and(|n| n.starts_with(prefix)))
            .map(|s| (s.address(), s.address() + s.size()))
            .collect()
    };
    let sets = range(&format!("{BTF_ID_PREFIX}set8__"));
    let dtor_lists = range(DTOR_LIST_PREFIX);
    let within =
        |ranges: &[(u64, u64)], addr: u64| ranges.iter().any(|&(a, b)| a <= addr && addr < b);

    let mut syms: Vec<_> = symbols
        .iter()
        .filter_map(|s| {
            let name = s.name().ok()?;
            let rest = name.strip_prefix(BTF_ID_PREFIX)?;
            Some((s.address(), rest.to_owned()))
        })
        .collect();
    syms.sort();
    let mut pending_dtor_struct: Option<String> = None;
    for (addr, rest) in syms {
        if let Some(set) = rest.strip_prefix("set8__") {
            ids.sets.push(set.to_owned());
        } else if let Some(func) = rest.strip_prefix("func__") {
            let name = strip_unique(func)
                .with_context(|| format!("malformed symbol {BTF_ID_PREFIX}{rest} in .BTF_ids"))?;
            if !ids.funcs.iter().any(|f| f == name) {
                ids.funcs.push(name.to_owned());
            }
            if within(&sets, addr) {
                ids.kfuncs.insert(name.to_owned());
            }
            if within(&dtor_lists, addr) {
                let ty = pending_dtor_struct.take().with_context(|| {
                    format!("destructor list entry {name} follows no struct id in .BTF_ids")
                })?;
                ids.dtors.push((ty, name.to_owned()));
            }
        } else if let Some(ty) = rest
            .strip_prefix("struct__")
            .or_else(|| rest.strip_prefix("union__"))
        {
            let name = strip_unique(ty)
                .with_context(|| format!("malformed symbol {BTF_ID_PREFIX}{rest} in .BTF_ids"))?;
            if !ids.structs.iter().any(|s| s == name) {
                ids.structs.push(name.to_owned());
            }
            if within(&dtor_lists, addr) {
                pending_dtor_struct = Some(name.to_owned());
            }
        }
    }
    Ok(ids)
}

/// Names of the functions the object defines.
pub fn defined_functions(file: &object::File<'_>) -> BTreeSet<String> {
    file.symbols()
        .filter(|s| s.kind() == SymbolKind::Text && s.is_definition())
        .filter_map(|s| s.name().ok().map(str::to_owned))
        .collect()
}

/// Other function symbols at the same place as function `name`: when LLVM's function merging
/// folds two identical bodies, one name becomes an alias of the other and loses its DWARF.
pub fn aliases(file: &object::File<'_>, name: &str) -> Vec<String> {
    let functions: Vec<_> = file
        .symbols()
        .filter(|s| s.kind() == SymbolKind::Text && s.is_definition())
        .collect();
    let Some(sym) = functions.iter().find(|s| s.name() == Ok(name)) else {
        return Vec::new();
    };
    functions
        .iter()
        .filter(|s| {
            s.section_index() == sym.section_index()
                && s.address() == sym.address()
                && s.name() != Ok(name)
        })
        .filter_map(|s| s.name().ok().map(str::to_owned))
        .collect()
}

/// The contents of section `name`, or `None` when the object has no such section.
pub fn section(file: &object::File<'_>, name: &str) -> Result<Option<Vec<u8>>> {
    let Some(section) = file.section_by_name(name) else {
        return Ok(None);
    };
    let data = section
        .data()
        .with_context(|| format!("cannot read {name}"))?;
    Ok(Some(data.to_vec()))
}

/// The contents of `.BTF`, or `None` when the object has no such section.
pub fn btf_section(file: &object::File<'_>) -> Result<Option<Vec<u8>>> {
    section(file, ".BTF")
}

/// Replaces the `.BTF` section of `input` with `data`, writing the result to `output`
/// (which may be `input`), with `objcopy` (GNU or LLVM; both can resize a section of a
/// relocatable object).
pub fn write_btf_section(objcopy: &str, input: &Path, output: &Path, data: &[u8]) -> Result<()> {
    write_sections(objcopy, input, output, &[(".BTF", data)])
}

/// Replaces existing sections of `input` with new contents, as [`write_btf_section`].
pub fn write_sections(
    objcopy: &str,
    input: &Path,
    output: &Path,
    sections: &[(&str, &[u8])],
) -> Result<()> {
    let dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut cmd = Command::new(objcopy);
    let mut tmps = Vec::new();
    for (name, data) in sections {
        let tmp = dir.join(format!(
            ".{}{name}.btfgen.{}",
            output
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
            std::process::id()
        ));
        std::fs::write(&tmp, data).with_context(|| format!("cannot write {}", tmp.display()))?;
        cmd.arg("--update-section")
            .arg(format!("{name}={}", tmp.display()));
        tmps.push(tmp);
    }
    let status = cmd.arg(input).arg(output).status();
    for tmp in tmps {
        let _ = std::fs::remove_file(&tmp);
    }
    let status = status.with_context(|| {
        format!("cannot run {objcopy}; install llvm-19 or pass --objcopy <path to objcopy>")
    })?;
    if !status.success() {
        bail!(
            "{objcopy} --update-section failed on {} ({status})",
            input.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::strip_unique;

    #[test]
    fn strip_unique_cuts_like_resolve_btfids() {
        assert_eq!(strip_unique("kf_task_acquire__0"), Some("kf_task_acquire"));
        assert_eq!(
            strip_unique("bpf_task_release__1234"),
            Some("bpf_task_release")
        );
        assert_eq!(strip_unique("a__b__7"), Some("a__b"));
        // resolve_btfids rejects a suffix containing '_' or a missing name.
        assert_eq!(strip_unique("kf_task_acquire__x_1"), None);
        assert_eq!(strip_unique("kf_task_acquire"), None);
        assert_eq!(strip_unique("__1"), None);
    }
}
