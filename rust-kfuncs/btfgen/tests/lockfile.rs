// SPDX-License-Identifier: GPL-2.0

//! btfgen's own `Cargo.lock`, which a module that copies rust-kfuncs/ builds it with
//! (`cargo build --locked`), pins what the workspace's `Cargo.lock` pins: the tests here, and
//! the toolkit checks of `cargo xtask test`, then cover the versions a standalone build gets.

use std::collections::BTreeMap;
use std::path::Path;

/// (name, version) of every `[[package]]` of a lock file, with its `source` line.
fn packages(path: &Path) -> BTreeMap<(String, String), String> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut out = BTreeMap::new();
    for block in text.split("[[package]]").skip(1) {
        let field = |key: &str| {
            block
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
                .map(|v| v.trim_end_matches('"').to_owned())
                .unwrap_or_default()
        };
        out.insert((field("name"), field("version")), field("source"));
    }
    out
}

#[test]
fn the_standalone_lock_pins_the_workspace_versions() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let own = packages(&dir.join("Cargo.lock"));
    let workspace_lock = dir.join("../../Cargo.lock");
    assert!(
        workspace_lock.is_file(),
        "{} is missing: this test compares btfgen's Cargo.lock with the task_kfuncs workspace's",
        workspace_lock.display()
    );
    let workspace = packages(&workspace_lock);
    assert!(
        own.keys().any(|(n, _)| n == "libbpf-sys") && own.keys().any(|(n, _)| n == "gimli"),
        "btfgen's Cargo.lock lacks its dependencies: {own:?}"
    );
    let differ: Vec<_> = own
        .iter()
        .filter(|((name, _), _)| name != "btfgen")
        .filter(|(key, source)| workspace.get(*key) != Some(*source))
        .map(|((n, v), _)| format!("{n} {v}"))
        .collect();
    assert!(
        differ.is_empty(),
        "rust-kfuncs/btfgen/Cargo.lock pins versions the workspace does not use: {differ:?}; \
         regenerate it from the workspace's: copy rust-kfuncs/btfgen out of the workspace, put \
         Cargo.lock beside its Cargo.toml, run `cargo metadata --offline`, and copy the \
         pruned Cargo.lock back"
    );
}
