// SPDX-License-Identifier: GPL-2.0

//! The Kconfig rules of the test kernel: the options it must have, the
//! fragments' syntax, and the check that Kconfig kept what they ask for
//! (run on every build, after olddefconfig).

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::key::KeyInputs;
use super::Line;

/// Options every test-kernel flavour must end up with (`=y`), whatever the
/// fragments say: the module, BTF, BPF, tracing and virtme-ng need them.
pub const REQUIRED: &[&str] = &[
    "RUST",
    "DEBUG_INFO_BTF",
    "DEBUG_INFO_BTF_MODULES",
    "BPF_SYSCALL",
    "BPF_JIT",
    "FTRACE",
    "FUNCTION_TRACER",
    "BPF_EVENTS",
    "PREEMPT",
    "PREEMPT_RCU",
    "MODULES",
    "MODULE_UNLOAD",
    "PID_NS",
    "VIRTIO",
    "VIRTIO_PCI",
    "VIRTIO_CONSOLE",
    "NET_9P",
    "NET_9P_VIRTIO",
    "9P_FS",
    "ACPI",
];

/// What a fragment asks of one option.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Want {
    /// `CONFIG_X=value`
    Value(String),
    /// `# CONFIG_X is not set`
    Unset,
}

/// Parses a config fragment into `(option without CONFIG_, wanted)` in file
/// order. Other comments and blank lines are skipped; anything else is an
/// error, so that a typo does not silently drop an option.
pub fn parse_fragment(text: &str) -> Result<Vec<(String, Want)>> {
    let mut wants = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("# CONFIG_") {
            if let Some(name) = rest.strip_suffix(" is not set") {
                wants.push((name.to_string(), Want::Unset));
            }
        } else if let Some(rest) = line.strip_prefix("CONFIG_") {
            match rest.split_once('=') {
                Some((name, value)) if !name.is_empty() && !value.is_empty() => {
                    wants.push((name.to_string(), Want::Value(value.to_string())));
                }
                _ => bail!("line {}: expected CONFIG_NAME=value, got `{line}`", i + 1),
            }
        } else if !line.is_empty() && !line.starts_with('#') {
            bail!("line {}: not a config line: `{line}`", i + 1);
        }
    }
    Ok(wants)
}

/// The options a `.config` sets, without the `CONFIG_` prefix.
pub fn parse_config(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("CONFIG_")?.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// An option Kconfig did not keep the way it was asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dropped {
    pub option: String,
    pub wanted: Want,
    pub got: Option<String>,
}

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let wanted = match &self.wanted {
            Want::Value(v) => v.as_str(),
            Want::Unset => "not set",
        };
        let got = self.got.as_deref().unwrap_or("not set");
        write!(
            f,
            "CONFIG_{}: wanted {wanted}, .config has {got}",
            self.option
        )
    }
}

/// Checks a final `.config` against the fragments (later fragments override
/// earlier ones) and the [`REQUIRED`]-style list of options that must be `y`.
pub fn check_config(config: &str, fragments: &[&str], required: &[&str]) -> Result<Vec<Dropped>> {
    let mut wants: Vec<(String, Want)> = Vec::new();
    for fragment in fragments {
        for (option, want) in parse_fragment(fragment)? {
            wants.retain(|(o, _)| *o != option);
            wants.push((option, want));
        }
    }
    for option in required {
        if !wants.iter().any(|(o, _)| o == option) {
            wants.push((option.to_string(), Want::Value("y".into())));
        }
    }
    let have = parse_config(config);
    Ok(wants
        .into_iter()
        .filter_map(|(option, wanted)| {
            let got = have.get(&option).cloned();
            let kept = match &wanted {
                Want::Value(v) => got.as_deref() == Some(v.as_str()),
                Want::Unset => got.is_none(),
            };
            (!kept).then_some(Dropped {
                option,
                wanted,
                got,
            })
        })
        .collect())
}

/// Checks the build directory's `.config` against the fragments and
/// [`REQUIRED`], failing with every dropped option named. Options the line
/// does not have at all ([`Line::absent_options`]) are not asked of it.
pub fn verify_config(dir: &Path, line: Line, inputs: &KeyInputs) -> Result<()> {
    let config_path = dir.join(".config");
    let config = fs::read_to_string(&config_path)
        .with_context(|| format!("cannot read {}", config_path.display()))?;
    let fragments: Vec<&str> = inputs.fragments.iter().map(|(_, t)| t.as_str()).collect();
    let mut dropped = check_config(&config, &fragments, REQUIRED)?;
    dropped.retain(|d| !line.absent_options().contains(&d.option.as_str()));
    if dropped.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = dropped.iter().map(|d| format!("  {d}")).collect();
    bail!(
        "Kconfig dropped {} option(s) the test kernel needs:\n{}\n\
         An option is dropped when one of its `depends on` is not met: look it up with \
         `grep -rn 'config NAME' <source>` and add what it depends on to the fragment. \
         If CONFIG_RUST is among them, Kconfig found the wrong rustc or no bindgen \
         (see `make -C <source> O={} LLVM=-19 rustavailable`).",
        dropped.len(),
        list.join("\n"),
        dir.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::Flavour;
    use crate::util;
    use std::fs;

    const FRAGMENT: &str =
        "# comment\nCONFIG_RUST=y\nCONFIG_LOG_BUF_SHIFT=14\n# CONFIG_SLUB_TINY is not set\n\n";

    #[test]
    fn fragment_parses() {
        let wants = parse_fragment(FRAGMENT).unwrap();
        assert_eq!(
            wants,
            vec![
                ("RUST".to_string(), Want::Value("y".into())),
                ("LOG_BUF_SHIFT".to_string(), Want::Value("14".into())),
                ("SLUB_TINY".to_string(), Want::Unset),
            ]
        );
        assert!(parse_fragment("CONFIG_RUST\n").is_err());
        assert!(parse_fragment("RUST=y\n").is_err());
    }

    #[test]
    fn kept_config_passes() {
        let config = "CONFIG_RUST=y\nCONFIG_LOG_BUF_SHIFT=14\n# CONFIG_SLUB_TINY is not set\nCONFIG_PID_NS=y\n";
        assert_eq!(
            check_config(config, &[FRAGMENT], &["PID_NS"]).unwrap(),
            vec![]
        );
    }

    #[test]
    fn dropped_option_is_detected() {
        // Kconfig turned RUST off (wrong rustc) and SLUB_TINY on.
        let config = "# CONFIG_RUST is not set\nCONFIG_LOG_BUF_SHIFT=14\nCONFIG_SLUB_TINY=y\nCONFIG_PID_NS=y\n";
        let dropped = check_config(config, &[FRAGMENT], &["PID_NS"]).unwrap();
        assert_eq!(
            dropped,
            vec![
                Dropped {
                    option: "RUST".into(),
                    wanted: Want::Value("y".into()),
                    got: None
                },
                Dropped {
                    option: "SLUB_TINY".into(),
                    wanted: Want::Unset,
                    got: Some("y".into())
                },
            ]
        );
        assert_eq!(
            dropped[0].to_string(),
            "CONFIG_RUST: wanted y, .config has not set"
        );
    }

    #[test]
    fn wrong_value_is_detected() {
        let config = "CONFIG_RUST=y\nCONFIG_LOG_BUF_SHIFT=17\nCONFIG_PID_NS=y\n";
        let dropped = check_config(config, &[FRAGMENT], &["PID_NS"]).unwrap();
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].option, "LOG_BUF_SHIFT");
    }

    #[test]
    fn required_option_missing_is_detected() {
        let config = "CONFIG_RUST=y\nCONFIG_LOG_BUF_SHIFT=14\n";
        let dropped = check_config(config, &[FRAGMENT], &["PID_NS", "RUST"]).unwrap();
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].option, "PID_NS");
    }

    #[test]
    fn later_fragment_overrides_earlier() {
        let debug = "# CONFIG_RUST is not set\nCONFIG_KASAN=y\n";
        let config = "CONFIG_LOG_BUF_SHIFT=14\nCONFIG_KASAN=y\n";
        assert_eq!(
            check_config(config, &[FRAGMENT, debug], &[]).unwrap(),
            vec![]
        );
    }

    #[test]
    fn real_fragments_parse_and_cover_required() {
        let checkout = util::checkout();
        let mut all = Vec::new();
        for flavour in [Flavour::Normal, Flavour::Debug] {
            for path in flavour.fragments(&checkout) {
                let text = fs::read_to_string(&path).unwrap();
                all.extend(parse_fragment(&text).unwrap());
            }
        }
        for option in REQUIRED {
            assert!(
                all.iter()
                    .any(|(o, w)| o == option && *w == Want::Value("y".into())),
                "test-kernel/kernel.config does not set CONFIG_{option}=y"
            );
        }
    }
}
