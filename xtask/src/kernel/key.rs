// SPDX-License-Identifier: GPL-2.0

//! The cache key of a test kernel: everything a build depends on (source
//! package version, patches, config fragments, toolchain versions), hashed
//! into the names of the source and build directories.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use super::{Flavour, Line};
use crate::setup::Source;
use crate::util;
use crate::Env;

/// Everything a kernel build depends on. Changing any of it changes the key.
#[derive(Clone, Debug)]
pub struct KeyInputs {
    /// Version of the line's linux-source package.
    pub source_version: String,
    /// `(file name, contents)` of each patch, in the order applied.
    pub patches: Vec<(String, String)>,
    /// `(file name, contents)` of each config fragment, in order.
    pub fragments: Vec<(String, String)>,
    /// `--version` lines of rustc, clang, bindgen and pahole.
    pub toolchain: Vec<String>,
}

/// Hashes length-prefixed fields, so that no two field lists collide.
pub fn short_hash<'a>(fields: impl IntoIterator<Item = &'a str>) -> String {
    let mut hasher = Sha256::new();
    for field in fields {
        hasher.update((field.len() as u64).to_le_bytes());
        hasher.update(field.as_bytes());
    }
    hasher.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Key of the patched source tree: package version and patches.
pub fn source_key(inputs: &KeyInputs) -> String {
    let mut fields = vec!["source", inputs.source_version.as_str()];
    for (name, text) in &inputs.patches {
        fields.extend(["patch", name.as_str(), text.as_str()]);
    }
    short_hash(fields)
}

/// Key of a build: everything in [`KeyInputs`].
pub fn build_key(inputs: &KeyInputs) -> String {
    let source = source_key(inputs);
    let mut fields = vec!["build", source.as_str()];
    for (name, text) in &inputs.fragments {
        fields.extend(["fragment", name.as_str(), text.as_str()]);
    }
    for tool in &inputs.toolchain {
        fields.extend(["tool", tool.as_str()]);
    }
    short_hash(fields)
}

/// Reads the inputs of the key from the host, the line's source package and
/// the checkout.
pub fn key_inputs(env: &Env, line: Line, source: &Source, flavour: Flavour) -> Result<KeyInputs> {
    let (checkout, cache) = (env.checkout.as_path(), env.cache.as_path());
    let source_version = source.version.clone();

    let patch_dir = checkout.join(line.patch_dir());
    let mut patch_paths: Vec<PathBuf> = fs::read_dir(&patch_dir)
        .with_context(|| format!("cannot read {}", patch_dir.display()))?
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "patch"))
        .collect();
    patch_paths.sort();

    let read_named = |paths: &[PathBuf]| -> Result<Vec<(String, String)>> {
        paths
            .iter()
            .map(|p| {
                let name = p
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                let text = fs::read_to_string(p)
                    .with_context(|| format!("cannot read {}", p.display()))?;
                Ok((name, text))
            })
            .collect()
    };

    let path = util::toolchain_path(cache)?;
    let mut toolchain = Vec::new();
    for tool in ["rustc", "clang-19", "bindgen", "pahole"] {
        let out = util::output(Command::new(tool).arg("--version").env("PATH", &path))
            .with_context(|| format!("`{tool} --version` failed: run `cargo xtask setup`"))?;
        toolchain.push(out.lines().next().unwrap_or_default().to_string());
    }

    Ok(KeyInputs {
        source_version,
        patches: read_named(&patch_paths)?,
        fragments: read_named(&flavour.fragments(checkout))?,
        toolchain,
    })
}

/// The build directory for these inputs (built or not); `tag` is the
/// line's (see `Line::dir_tag`).
pub fn build_dir(cache: &Path, tag: &str, flavour: Flavour, inputs: &KeyInputs) -> PathBuf {
    cache.join(format!(
        "build-{tag}{}-{}",
        flavour.name(),
        build_key(inputs)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> KeyInputs {
        KeyInputs {
            source_version: "6.12.117-1~deb12u1".into(),
            patches: vec![
                ("0001-a.patch".into(), "--- a\n+++ b\n+x\n".into()),
                ("0002-b.patch".into(), "--- c\n+++ d\n+y\n".into()),
            ],
            fragments: vec![("kernel.config".into(), "CONFIG_RUST=y\n".into())],
            toolchain: vec!["rustc 1.96.0".into(), "clang version 19.1.7".into()],
        }
    }

    #[test]
    fn same_inputs_same_key() {
        assert_eq!(build_key(&inputs()), build_key(&inputs()));
        assert_eq!(source_key(&inputs()), source_key(&inputs()));
        assert_eq!(build_key(&inputs()).len(), 16);
    }

    #[test]
    fn patch_change_changes_both_keys() {
        let mut changed = inputs();
        changed.patches[1].1.push_str("+z\n");
        assert_ne!(build_key(&inputs()), build_key(&changed));
        assert_ne!(source_key(&inputs()), source_key(&changed));
    }

    #[test]
    fn patch_order_and_count_change_key() {
        let mut swapped = inputs();
        swapped.patches.reverse();
        assert_ne!(build_key(&inputs()), build_key(&swapped));
        let mut fewer = inputs();
        fewer.patches.pop();
        assert_ne!(build_key(&inputs()), build_key(&fewer));
    }

    #[test]
    fn fragment_change_changes_build_key_only() {
        let mut changed = inputs();
        changed.fragments[0].1.push_str("CONFIG_KASAN=y\n");
        assert_ne!(build_key(&inputs()), build_key(&changed));
        assert_eq!(source_key(&inputs()), source_key(&changed));
        let mut extra = inputs();
        extra
            .fragments
            .push(("kernel-debug.config".into(), String::new()));
        assert_ne!(build_key(&inputs()), build_key(&extra));
    }

    #[test]
    fn toolchain_or_version_change_changes_key() {
        let mut tool = inputs();
        tool.toolchain[0] = "rustc 1.97.0".into();
        assert_ne!(build_key(&inputs()), build_key(&tool));
        let mut version = inputs();
        version.source_version = "6.12.118-1~deb12u1".into();
        assert_ne!(build_key(&inputs()), build_key(&version));
    }

    #[test]
    fn field_boundaries_matter() {
        let mut a = inputs();
        a.toolchain = vec!["ab".into(), "c".into()];
        let mut b = inputs();
        b.toolchain = vec!["a".into(), "bc".into()];
        assert_ne!(build_key(&a), build_key(&b));
    }
}
