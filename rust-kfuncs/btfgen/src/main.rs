// SPDX-License-Identifier: GPL-2.0

//! `btfgen --base <KDIR>/vmlinux <module.ko>`: adds BTF for a Rust module's kfuncs.
//!
//! Run it on the linked `.ko` after Kbuild's pahole step and before `resolve_btfids`; see
//! docs/btf-pipeline.md.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Give a Rust kernel module's kfuncs BTF (FUNC + FUNC_PROTO) derived from its DWARF.
///
/// The kfuncs are the __BTF_ID__func__* symbols of the module's .BTF_ids section (the sets
/// declared with btf_kfunc_set!); their types must map to vmlinux BTF types. The module's .BTF
/// section is rewritten in place; running twice changes nothing.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    /// vmlinux whose BTF the module's split BTF builds on (usually <KDIR>/vmlinux).
    #[arg(long, value_name = "VMLINUX")]
    base: PathBuf,
    /// Write the result here instead of rewriting MODULE in place.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// objcopy used to replace the .BTF section (GNU or LLVM).
    #[arg(long, env = "BTFGEN_OBJCOPY", default_value = "llvm-objcopy-19")]
    objcopy: String,
    /// Print each prototype added.
    #[arg(short, long, conflicts_with = "quiet")]
    verbose: bool,
    /// Print nothing but errors (Kbuild's BTF step runs it so).
    #[arg(short, long)]
    quiet: bool,
    /// Leave a module without kfunc sets unchanged instead of failing (for Kbuild, which runs
    /// btfgen on every module of the directory).
    #[arg(long)]
    allow_no_kfuncs: bool,
    /// Then write the BPF-side declarations of the module's kfuncs (`extern ... __ksym;`),
    /// generated from its BTF, to this C header.
    #[arg(long, value_name = "FILE.h")]
    header: Option<PathBuf>,
    /// The module's BTF is this raw split BTF file, not its .BTF section: 7.x's
    /// scripts/gen-btf.sh has pahole write `MODULE.BTF.1` for `resolve_btfids --btf`, which adds
    /// the bpf_kfunc decl tags itself. The FUNCs are added to the file, untagged.
    #[arg(long, value_name = "FILE", conflicts_with = "header")]
    btf: Option<PathBuf>,
    /// Only write the module's BTF, relocated onto --base as the kernel does when it loads the
    /// module, as raw split BTF to this file (for bpftool 7.1, which cannot read .BTF.base).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["header", "btf", "output"])]
    relocated_btf: Option<PathBuf>,
    /// The module (.ko) to process.
    #[arg(value_name = "MODULE")]
    module: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(out) = &cli.relocated_btf {
        let written = btfgen::relocated_btf(&cli.base, &cli.module).and_then(|raw| {
            std::fs::write(out, raw)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))
        });
        return match written {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("btfgen: error: {err:#}");
                ExitCode::FAILURE
            }
        };
    }
    let opts = btfgen::Options {
        base: cli.base,
        module: cli.module.clone(),
        output: cli.output,
        objcopy: cli.objcopy,
        allow_no_kfuncs: cli.allow_no_kfuncs,
        btf: cli.btf,
    };
    let result = btfgen::run(&opts).and_then(|outcome| {
        if let Some(header) = &cli.header {
            let written = opts.output.as_deref().unwrap_or(&opts.module);
            let stem = header
                .file_stem()
                .map(|s| s.to_string_lossy().to_uppercase().replace(['-', '.'], "_"))
                .unwrap_or_default();
            let text = btfgen::header(&opts.base, written, &format!("__{stem}_H"))?;
            std::fs::write(header, text)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", header.display()))?;
        }
        Ok(outcome)
    });
    match result {
        Ok(outcome) => {
            let module = cli.module.display();
            if cli.quiet {
                return ExitCode::SUCCESS;
            }
            if outcome.sets.is_empty() {
                println!("btfgen: {module}: no kfunc sets, nothing to do");
            } else if outcome.added.is_empty() && outcome.structs.is_empty() {
                println!(
                    "btfgen: {module}: BTF already present for {} kfunc(s), nothing to do",
                    outcome.already_present.len()
                );
            } else {
                println!(
                    "btfgen: {module}: added BTF for {} function(s) and {} struct(s) of set(s) {}",
                    outcome.added.len(),
                    outcome.structs.len(),
                    outcome.sets.join(", ")
                );
            }
            if cli.verbose {
                for (proto, id) in &outcome.added {
                    println!("  [{id}] {}", btfgen::c_declaration(proto));
                }
                for (name, id, omitted) in &outcome.structs {
                    println!("  [{id}] struct {name}");
                    for why in omitted {
                        println!("        left out (BPF cannot read it): {why}");
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("btfgen: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
