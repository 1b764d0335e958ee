// SPDX-License-Identifier: GPL-2.0

//! `cargo xtask bench`: the Rust task kfuncs against the kernel's C kfuncs,
//! in one boot of the test kernel, and the report.
//!
//! The guest runs `task-kfuncs-bench` (bpf-tests/src/bench.rs), which prints
//! each round's raw ns per operation, Rust and C measured alternately. This
//! side turns the rounds into ratios (loop cost subtracted), medians and
//! min–max bands, puts the machine code of each kfunc beside its C twin's
//! (`objdump` of task_kfuncs.ko and vmlinux: instructions and calls), and
//! writes `target/bench/report.md` and `target/bench/ratios.png`. Under TCG
//! (no KVM) the ns are emulated time; the ratios are what to read. Nothing
//! here judges speed: the report states the figures, no test asserts them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::kernel::{self, Flavour, Kernel, Line};
use crate::util::shell_quote;
use crate::{module, say, selftests, vm, Env};

/// Every vCPU of the guest runs the contention case at once.
const BENCH_CPUS: u32 = 2;

/// The report's rows: (case as the guest names it, what it measures).
const CASES: &[(&str, &str)] = &[
    ("same-c", "identical code: C acquire+release vs itself"),
    (
        "same-rust",
        "identical code: Rust acquire+release vs itself",
    ),
    ("acquire", "acquire+release (current task)"),
    ("kptr_get", "kptr_get+release (RCU kptr from a map)"),
    ("from_pid", "from_pid+release (self)"),
    ("from_pid-missing", "from_pid (a pid without a task)"),
    ("from_vpid", "from_vpid+release (self; 6.12's C: from_pid)"),
    (
        "contended",
        "acquire+release of one task on all vCPUs at once",
    ),
];

/// The noise cases: one program measured against itself.
const NOISE_CASES: &[&str] = &["same-c", "same-rust"];

/// Each Rust kfunc and its C twin on `line`. C has no kptr_get
/// (bpf_task_acquire is KF_RCU and serves as kptr_get), and 6.12's C has no
/// from_vpid (bpf_task_from_pid stands in; 7.3 has bpf_task_from_vpid).
fn twins(line: Line) -> [(&'static str, &'static str); 5] {
    [
        ("rust_task_acquire", "bpf_task_acquire"),
        ("rust_task_kptr_get", "bpf_task_acquire"),
        ("rust_task_release", "bpf_task_release"),
        ("rust_task_from_pid", "bpf_task_from_pid"),
        (
            "rust_task_from_vpid",
            match line {
                Line::V6_12 => "bpf_task_from_pid",
                Line::V7_3 => "bpf_task_from_vpid",
            },
        ),
    ]
}

pub fn bench(env: &Env, line: Line, args: &[String]) -> Result<()> {
    let kernel = kernel::ensure_built(env, line, Flavour::Normal)?;
    let ko = module::build(env, &kernel)?;
    let out = env.checkout.join("target/bench");
    fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let guest_log = out.join("guest.log");
    // `bench -- --from-log FILE`: redo the report from a saved guest log
    // (target/bench/guest.log of an earlier run) without booting.
    let stdout = if args.iter().any(|arg| arg == "--from-log") {
        let [flag, log] = args else {
            bail!(
                "usage: bench -- --from-log FILE, with no other bench argument (got: {})",
                args.join(" ")
            );
        };
        if flag != "--from-log" {
            bail!("usage: bench -- --from-log FILE (got: {})", args.join(" "));
        }
        fs::read_to_string(log).with_context(|| format!("cannot read {log}"))?
    } else {
        let stdout = run_guest(env, &kernel, &ko, args)?;
        fs::write(&guest_log, &stdout)
            .with_context(|| format!("cannot write {}", guest_log.display()))?;
        stdout
    };
    let run = Run::parse(&stdout)?;
    let twins = twins(line);
    let code = disassemble(&ko, &kernel.dir.join("vmlinux"), &twins)?;
    let accel = vm::accel(&env.cache, &kernel.dir)?;
    let png = out.join("ratios.png");
    plot(&run, &png)?;
    let report = report(&run, &code, &twins, &kernel, accel)?;
    let md = out.join("report.md");
    fs::write(&md, &report).with_context(|| format!("cannot write {}", md.display()))?;
    println!("{report}");
    say!("bench: wrote {} and {}", md.display(), png.display());
    Ok(())
}

/// Boots the test kernel with [`BENCH_CPUS`] vCPUs, runs task-kfuncs-bench
/// and returns what it printed.
fn run_guest(env: &Env, kernel: &Kernel, ko: &Path, args: &[String]) -> Result<String> {
    let bench = selftests::build(&env.checkout, &kernel.dir)?.bench;
    let mut command = format!(
        "{} --module {}",
        shell_quote(&bench.to_string_lossy()),
        shell_quote(&ko.to_string_lossy())
    );
    for arg in args {
        command = format!("{command} {}", shell_quote(arg));
    }
    let mut opts = vm::VmOptions::new(kernel.dir.clone(), false);
    opts.cpus = Some(BENCH_CPUS);
    let outcome = vm::run(&env.cache, &opts, &command)?;
    say!(
        "bench: guest reached the command after {:.1} s",
        outcome.boot_time.as_secs_f64()
    );
    if outcome.exit_code != 0 {
        bail!("task-kfuncs-bench failed (exit code {})", outcome.exit_code);
    }
    Ok(outcome.stdout)
}

/// What the guest measured.
#[derive(Debug, Default)]
struct Run {
    /// `bench-info` fields (iters, rounds, cpus, missing_pid).
    info: BTreeMap<String, String>,
    /// Median cost of the empty loop, ns per iteration.
    loop_ns: f64,
    /// Per case, per round: (Rust ns/op, C ns/op), loop cost subtracted.
    rounds: BTreeMap<String, Vec<(f64, f64)>>,
}

impl Run {
    fn parse(stdout: &str) -> Result<Run> {
        let mut run = Run::default();
        let mut loops: BTreeMap<usize, f64> = BTreeMap::new();
        let mut raw: Vec<(String, usize, f64, f64)> = Vec::new();
        for line in stdout.lines() {
            let fields: Vec<&str> = line.trim_end().split('\t').collect();
            match fields.as_slice() {
                ["bench-info", rest @ ..] => {
                    for kv in rest {
                        if let Some((k, v)) = kv.split_once('=') {
                            run.info.insert(k.into(), v.into());
                        }
                    }
                }
                ["bench", case, round, rust, c] => {
                    let bad = || format!("bad line {line:?}");
                    let round: usize = round.parse().with_context(bad)?;
                    let rust: f64 = rust.parse().with_context(bad)?;
                    let c: f64 = c.parse().with_context(bad)?;
                    if *case == "loop" {
                        loops.insert(round, rust);
                    } else {
                        raw.push((case.to_string(), round, rust, c));
                    }
                }
                _ => {}
            }
        }
        if loops.is_empty() || raw.is_empty() {
            bail!("task-kfuncs-bench printed no rounds");
        }
        // The median over the rounds: one disturbed loop measurement must
        // not eat a round's figures.
        run.loop_ns = median(&loops.values().copied().collect::<Vec<_>>());
        for (case, _round, rust, c) in raw {
            // Never zero: a ratio needs a positive cost on both sides.
            let (r, c) = (
                (rust - run.loop_ns).max(0.001),
                (c - run.loop_ns).max(0.001),
            );
            run.rounds.entry(case).or_default().push((r, c));
        }
        Ok(run)
    }

    fn ratios(&self, case: &str) -> Vec<f64> {
        self.rounds
            .get(case)
            .map(|v| v.iter().map(|(r, c)| r / c).collect())
            .unwrap_or_default()
    }

    /// min and max of the identical-code rounds' ratios.
    fn noise_band(&self) -> Option<(f64, f64)> {
        let all: Vec<f64> = NOISE_CASES.iter().flat_map(|c| self.ratios(c)).collect();
        if all.is_empty() {
            return None;
        }
        Some((min(&all), max(&all)))
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// One function's machine code.
#[derive(Debug, Default)]
pub struct Code {
    /// objdump's lines for it (address, instruction, relocation).
    pub listing: Vec<String>,
    pub instructions: usize,
    /// Out-of-line calls (and tail jumps out of the function), by callee.
    pub calls: Vec<String>,
    /// Jumps to code the compiler placed in `.text.unlikely` (a `#[cold]`
    /// function, such as the release's NMI path): not on the fast path.
    pub cold: usize,
}

/// Disassembles every kfunc of `twins` from `ko` and `vmlinux`.
fn disassemble(
    ko: &Path,
    vmlinux: &Path,
    twins: &[(&str, &str)],
) -> Result<BTreeMap<String, Code>> {
    let mut code = BTreeMap::new();
    for (file, names) in [
        (ko, twins.iter().map(|t| t.0).collect::<Vec<_>>()),
        (vmlinux, twins.iter().map(|t| t.1).collect::<Vec<_>>()),
    ] {
        for name in names {
            if code.contains_key(name) {
                continue;
            }
            code.insert(name.to_string(), objdump(file, name)?);
        }
    }
    Ok(code)
}

/// `objdump -dr --disassemble=<name>`: counts instructions and names the
/// targets of calls and of jumps that leave the function (tail calls). In
/// the module a call's target is the relocation inside the instruction (the
/// `<symbol>` objdump prints there is meaningless); in vmlinux it is the
/// resolved symbol. Relocations objdump prints for other functions are
/// dropped.
pub fn objdump(file: &Path, name: &str) -> Result<Code> {
    let out = Command::new("objdump")
        .args(["-dr", "--no-show-raw-insn"])
        .arg(format!("--disassemble={name}"))
        .arg(file)
        .output()
        .context("cannot run objdump (Debian: binutils)")?;
    if !out.status.success() {
        bail!(
            "objdump --disassemble={name} {} failed: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let header = format!("<{name}>:");
    let mut start = None;
    let mut insns: Vec<(u64, String)> = Vec::new();
    let mut relocs: BTreeMap<u64, String> = BTreeMap::new();
    for line in text.lines() {
        if line.ends_with(&header) {
            start = u64::from_str_radix(line.split_whitespace().next().unwrap_or(""), 16).ok();
            continue;
        }
        if start.is_none() {
            continue;
        }
        if line.starts_with("Disassembly of section") || line.ends_with(">:") {
            break;
        }
        let Some((addr, rest)) = line.trim().split_once(':') else {
            continue;
        };
        let Ok(addr) = u64::from_str_radix(addr, 16) else {
            continue;
        };
        let rest = rest.trim();
        if rest.starts_with("R_X86_64_") {
            let sym = rest.split_whitespace().nth(1).unwrap_or("");
            let sym = sym.split(['-', '+']).next().unwrap_or(sym);
            relocs.insert(addr, sym.to_string());
        } else {
            insns.push((addr, rest.to_string()));
        }
    }
    let start =
        start.with_context(|| format!("objdump found no function {name} in {}", file.display()))?;
    let mut code = Code::default();
    for (i, (addr, insn)) in insns.iter().enumerate() {
        let next = insns.get(i + 1).map_or(addr + 16, |n| n.0);
        let op = insn.split_whitespace().next().unwrap_or("");
        let mut shown = format!("{:4x}:  {insn}", addr - start);
        if op.starts_with("call") || op.starts_with('j') {
            let reloc = relocs.range(addr + 1..next).next().map(|(_, s)| s.clone());
            let target = reloc.or_else(|| {
                insn.split_once('<')
                    .and_then(|(_, s)| s.split_once('>'))
                    .map(|(s, _)| s.split('+').next().unwrap_or(s).to_string())
            });
            if let Some(target) = target.filter(|t| t != name) {
                shown = format!("{:4x}:  {op} {target}", addr - start);
                if target.starts_with(".text.unlikely") {
                    code.cold += 1;
                } else {
                    code.calls.push(format!("{op} {target}"));
                }
            }
        }
        code.instructions += 1;
        code.listing.push(shown);
    }
    if code.instructions == 0 {
        bail!(
            "objdump found no instructions in {name} in {}",
            file.display()
        );
    }
    Ok(code)
}

fn report(
    run: &Run,
    code: &BTreeMap<String, Code>,
    twins: &[(&str, &str)],
    kernel: &Kernel,
    accel: vm::Accel,
) -> Result<String> {
    let mut r = String::new();
    let info = |k: &str| run.info.get(k).cloned().unwrap_or_else(|| "?".into());
    let band = run.noise_band();
    writeln!(
        r,
        "# task_kfuncs bench: Rust kfuncs / the kernel's C kfuncs\n"
    )?;
    writeln!(
        r,
        "One boot of the {} test kernel ({}), {} vCPUs. {} rounds; in every round \
         each case runs {} times per side, {} calls each, Rust and C alternating (which goes \
         first alternates too), and each side keeps its fastest run (host preemption only adds \
         time). The empty loop (median over the rounds: {:.1} ns per iteration) is subtracted. \
         A ratio below 1 means Rust is faster.{}\n",
        kernel.describe(),
        match accel {
            vm::Accel::Tcg =>
                "TCG: QEMU emulates the CPU, so the ns are emulated time and \
                               only the ratios mean something",
            vm::Accel::Kvm => "KVM",
        },
        info("cpus"),
        info("rounds"),
        info("runs"),
        info("iters"),
        run.loop_ns,
        match band {
            Some((lo, hi)) => format!(
                " The noise band is the spread of the identical-code rounds: per-round ratios \
                 from {lo:.3} to {hi:.3}."
            ),
            None => String::new(),
        }
    )?;
    writeln!(
        r,
        "| case | Rust/C median | per-round min–max | ≤ 1.00 within noise | Rust ns/op | C ns/op |"
    )?;
    writeln!(r, "|---|---|---|---|---|---|")?;
    for (case, what) in CASES {
        let Some(rounds) = run.rounds.get(*case) else {
            continue;
        };
        let ratios = run.ratios(case);
        let m = median(&ratios);
        let within = match band {
            _ if NOISE_CASES.contains(case) => "(noise)".to_string(),
            Some((_, hi)) if m <= 1.0 || m <= hi => "yes".to_string(),
            Some(_) => "**no**".to_string(),
            None => "?".to_string(),
        };
        let rust: Vec<f64> = rounds.iter().map(|x| x.0).collect();
        let c: Vec<f64> = rounds.iter().map(|x| x.1).collect();
        writeln!(
            r,
            "| {what} | {m:.3} | {:.3}–{:.3} | {within} | {:.1} | {:.1} |",
            min(&ratios),
            max(&ratios),
            median(&rust),
            median(&c)
        )?;
    }
    writeln!(r, "\n![per-round ratios](ratios.png)\n")?;

    writeln!(r, "## The code: each Rust kfunc beside its C twin\n")?;
    writeln!(
        r,
        "From `objdump -dr` of task_kfuncs.ko and of vmlinux: instructions in the function \
         and the out-of-line calls it makes (jumps that leave the function count as calls). \
         A branch to a cold path (code placed in `.text.unlikely`, such as the release's \
         NMI path) is counted apart: it is not taken on the fast path.\n"
    )?;
    writeln!(
        r,
        "| Rust kfunc | instr. | calls | C twin | instr. | calls |"
    )?;
    writeln!(r, "|---|---|---|---|---|---|")?;
    for (rust, c) in twins {
        let (rc, cc) = (&code[*rust], &code[*c]);
        writeln!(
            r,
            "| `{rust}` | {} | {} | `{c}` | {} | {} |",
            rc.instructions,
            calls(rc),
            cc.instructions,
            calls(cc)
        )?;
    }
    writeln!(r)?;
    let mut shown = Vec::new();
    for name in twins.iter().flat_map(|(a, b)| [*a, *b]) {
        if shown.contains(&name) {
            continue;
        }
        shown.push(name);
        writeln!(r, "### `{name}`\n\n```")?;
        for line in &code[name].listing {
            writeln!(r, "{line}")?;
        }
        writeln!(r, "```\n")?;
    }
    Ok(r)
}

pub fn calls(code: &Code) -> String {
    let mut calls = if code.calls.is_empty() {
        "none".into()
    } else {
        code.calls
            .iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if code.cold > 0 {
        calls.push_str(&format!(" (+ {} branch to a cold path)", code.cold));
    }
    calls
}

/// Where the plot's text font comes from (Debian: fonts-dejavu-core).
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Per-round Rust/C ratios of every case, with the noise band shaded.
fn plot(run: &Run, png: &Path) -> Result<()> {
    use plotters::prelude::*;
    use plotters::style::{register_font, FontStyle};

    let font = fs::read(FONT)
        .with_context(|| format!("cannot read {FONT} (Debian: fonts-dejavu-core)"))?;
    register_font(
        "sans-serif",
        FontStyle::Normal,
        Box::leak(font.into_boxed_slice()),
    )
    .map_err(|_| anyhow::anyhow!("{FONT} is not a usable font"))?;

    let rounds = run.rounds.values().map(Vec::len).max().unwrap_or(1);
    let all: Vec<f64> = CASES.iter().flat_map(|(c, _)| run.ratios(c)).collect();
    let (lo, hi) = (min(&all).min(0.9), max(&all).max(1.1));
    let root = BitMapBackend::new(png, (1000, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "task_kfuncs: Rust/C per round (below 1: Rust faster)",
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(
            0f64..(rounds as f64 - 0.5).max(1.0),
            (lo - 0.02)..(hi + 0.02),
        )?;
    chart
        .configure_mesh()
        .x_desc("round")
        .y_desc("Rust / C")
        .draw()?;
    if let Some((nlo, nhi)) = run.noise_band() {
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(0.0, nlo), (rounds as f64, nhi)],
                RGBColor(200, 200, 200).mix(0.5).filled(),
            )))?
            .label(format!("noise band (identical code) {nlo:.3}–{nhi:.3}"))
            .legend(|(x, y)| {
                Rectangle::new(
                    [(x, y - 5), (x + 15, y + 5)],
                    RGBColor(200, 200, 200).filled(),
                )
            });
    }
    chart.draw_series(LineSeries::new(
        [(0.0, 1.0), (rounds as f64, 1.0)],
        BLACK.stroke_width(1),
    ))?;
    for (i, (case, what)) in CASES.iter().enumerate() {
        if NOISE_CASES.contains(case) {
            continue;
        }
        let ratios = run.ratios(case);
        if ratios.is_empty() {
            continue;
        }
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                ratios.iter().enumerate().map(|(x, y)| (x as f64, *y)),
                color.stroke_width(2),
            ))?
            .label(format!("{what}: median {:.3}", median(&ratios)))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 15, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    root.present()?;
    Ok(())
}
