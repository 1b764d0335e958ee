// SPDX-License-Identifier: GPL-2.0

//! `cargo xtask vm`: boots a kernel build with virtme-ng and runs one shell
//! command in it as root.
//!
//! The guest sees the host's root file system read-only at the same paths
//! (so the checkout and `target/` binaries are there) and
//! `<checkout>/target/vm` read-write, for files to bring back.
//!
//! vng runs with `--verbose` so that the kernel console reaches us on its
//! stderr. Before the command, the guest prints [`MARKER`] on stderr:
//! until then stderr is boot console (kept in `target/xtask/console.log`
//! and shown only when the boot fails or times out); after it, kernel
//! console lines still go only to the log and everything else (the
//! command's stderr) is shown. The command's stdout is copied to ours as it
//! comes and kept for callers that parse it.
//!
//! Every console line is judged by the kernel log policy
//! ([`harness::kernel_log`]) as it arrives: on a fatal one (panic, oops,
//! RCU stall, soft lockup, hung task) the guest is gone, so QEMU is killed
//! a few seconds later (time for the rest of the report to reach the
//! console) and the outcome names the marker and carries the console lines
//! from it on ([`Crash`]), instead of the run waiting for its timeout.
//!
//! vng's output must be a pipe: QEMU reopens `/proc/self/fd/1`, which for a
//! regular file starts writing again at offset 0. vng leads a process group
//! of its own, so that killing the group also ends QEMU.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use harness::kernel_log::{self, Severity};

use crate::say;
use crate::util::{self, shell_quote};

/// What the guest prints on stderr just before the command runs.
const MARKER: &str = "xtask: guest command starts";

/// Lines of console kept for error reports.
const CONSOLE_TAIL: usize = 40;

/// After a fatal console line: how long the rest of the kernel's report
/// may take to arrive, and how many of its lines are kept.
const CRASH_GRACE: Duration = Duration::from_secs(3);
const CRASH_LINES: usize = 100;
const CRASH_CONTEXT: usize = 20;

/// How QEMU runs the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

/// How to boot.
#[derive(Clone, Debug)]
pub struct VmOptions {
    /// The kernel build directory (`O=` tree with arch/x86/boot/bzImage).
    pub kdir: PathBuf,
    /// Time allowed from start until the command starts.
    pub boot_timeout: Duration,
    /// Time allowed for the whole run.
    pub timeout: Duration,
    /// Put in front of every line of guest output we echo (`test` uses
    /// `"# "` so that guest output reads as TAP comments).
    pub echo_prefix: &'static str,
    /// Guest vCPUs (`vng --cpus`); None leaves vng's default.
    pub cpus: Option<u32>,
    /// Extra kernel command line options (`vng --append`).
    pub append: Vec<&'static str>,
}

impl VmOptions {
    /// Defaults: TCG boots the normal kernel to the command in ~10 s, the
    /// debug kernel (KASAN, lockdep) in ~50 s.
    pub fn new(kdir: PathBuf, debug: bool) -> Self {
        let (boot, total) = if debug { (900, 3600) } else { (300, 1800) };
        VmOptions {
            kdir,
            boot_timeout: Duration::from_secs(boot),
            timeout: Duration::from_secs(total),
            echo_prefix: "",
            cpus: None,
            append: Vec::new(),
        }
    }
}

/// A guest that died: the fatal console line and what followed it.
#[derive(Debug, Clone)]
pub struct Crash {
    /// The kernel log policy's marker (e.g. `Kernel panic`, `Oops: `).
    pub marker: &'static str,
    /// The console around the fatal line: [`CRASH_CONTEXT`] lines before
    /// it, then it and what followed (at most [`CRASH_LINES`]).
    pub lines: Vec<String>,
}

impl std::fmt::Display for Crash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the guest kernel died (console: `{}`); QEMU was killed",
            self.marker.trim()
        )
    }
}

/// The result of one guest run.
#[derive(Debug)]
pub struct VmOutcome {
    /// Exit code of the guest command (vng passes it through); -1 when
    /// QEMU was killed after a [`Crash`].
    pub exit_code: i32,
    /// Set when the console showed the guest kernel dying.
    pub crash: Option<Crash>,
    /// Everything the command printed on stdout.
    pub stdout: String,
    /// Time from starting vng to the command starting in the guest.
    pub boot_time: Duration,
}

/// Boots `opts.kdir` and runs `command` (a shell command line) in it; a
/// guest kernel that dies is an error naming the console marker.
pub fn run(cache: &Path, opts: &VmOptions, command: &str) -> Result<VmOutcome> {
    let outcome = run_watched(cache, opts, command)?;
    if let Some(crash) = &outcome.crash {
        bail!("{crash}\n{}", crash.lines.join("\n"));
    }
    Ok(outcome)
}

/// Like [`run`], but a guest kernel that dies is an outcome with
/// [`VmOutcome::crash`] set, with what the command printed until then.
pub fn run_watched(cache: &Path, opts: &VmOptions, command: &str) -> Result<VmOutcome> {
    let accel = accel(cache, &opts.kdir)?;
    boot(cache, opts, accel, command, true)
}

/// Called when a guest never reached its command under TCG: a kernel that
/// cannot boot at all may also have failed the KVM probe for that reason,
/// so the probe is redone next time.
fn forget_probe(cache: &Path, accel: Accel) {
    if accel == Accel::Tcg {
        let _ = fs::remove_file(cache.join("kvm-probe"));
    }
}

/// Joins `vm -- <args>` into one shell command: a single argument is taken
/// as a command line as is (`vm -- 'uname -r; ls'`), several are quoted.
pub fn command_line(args: &[String]) -> String {
    match args {
        [one] => one.clone(),
        _ => args
            .iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// Decides between KVM and TCG, once per host boot.
///
/// `TASK_KFUNCS_ACCEL=kvm|tcg` overrides the probe. Otherwise, when
/// /dev/kvm exists, one short boot with KVM tells whether it really works:
/// on nested-virtualisation hosts /dev/kvm may exist and still abort or
/// hang a vanilla kernel. The answer is kept in `$CACHE/kvm-probe`, keyed on
/// the host kernel release and boot id.
pub fn accel(cache: &Path, kdir: &Path) -> Result<Accel> {
    match std::env::var("TASK_KFUNCS_ACCEL").as_deref() {
        Ok("kvm") => return Ok(Accel::Kvm),
        Ok("tcg") => return Ok(Accel::Tcg),
        Ok(other) if !other.is_empty() => {
            bail!("TASK_KFUNCS_ACCEL={other}: expected `kvm` or `tcg` (or unset to probe)")
        }
        _ => {}
    }
    let host = format!(
        "{} {}",
        fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim(),
        fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .unwrap_or_default()
            .trim()
    );
    let probe_file = cache.join("kvm-probe");
    if let Ok(saved) = fs::read_to_string(&probe_file) {
        if let Some((saved_host, answer)) = saved.trim().rsplit_once(' ') {
            if saved_host == host {
                let accel = if answer == "kvm" {
                    Accel::Kvm
                } else {
                    Accel::Tcg
                };
                say!(
                    "vm: using {} (probed earlier, see {})",
                    if accel == Accel::Kvm {
                        "KVM"
                    } else {
                        "TCG (no usable KVM)"
                    },
                    probe_file.display()
                );
                return Ok(accel);
            }
        }
    }

    let answer = if File::options()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        say!("vm: /dev/kvm is missing or not accessible; using TCG (software emulation, slower)");
        Accel::Tcg
    } else {
        say!("vm: /dev/kvm exists; probing whether it can boot the test kernel (up to 60 s)");
        let probe = VmOptions {
            kdir: kdir.to_path_buf(),
            boot_timeout: Duration::from_secs(60),
            timeout: Duration::from_secs(60),
            echo_prefix: "",
            cpus: None,
            append: Vec::new(),
        };
        match boot(cache, &probe, Accel::Kvm, "true", false) {
            Ok(outcome) if outcome.exit_code == 0 => {
                say!("vm: KVM works; using KVM");
                Accel::Kvm
            }
            Ok(outcome) => {
                say!(
                    "vm: KVM boot ended with exit code {}; using TCG",
                    outcome.exit_code
                );
                Accel::Tcg
            }
            Err(e) => {
                let first = format!("{e:#}");
                say!(
                    "vm: KVM is not usable here ({}); using TCG (slower)",
                    first.lines().next().unwrap_or("")
                );
                Accel::Tcg
            }
        }
    };
    let word = if answer == Accel::Kvm { "kvm" } else { "tcg" };
    fs::write(&probe_file, format!("{host} {word}\n"))
        .with_context(|| format!("cannot write {}", probe_file.display()))?;
    Ok(answer)
}

/// State shared with the thread reading vng's stderr.
struct Console {
    started: Option<Instant>,
    tail: VecDeque<String>,
    /// The first fatal line, when it came, and the lines since.
    crash: Option<(Instant, Crash)>,
    /// The last [`CRASH_CONTEXT`] lines, for a crash's context.
    recent: VecDeque<String>,
}

fn boot(
    cache: &Path,
    opts: &VmOptions,
    accel: Accel,
    command: &str,
    show: bool,
) -> Result<VmOutcome> {
    let checkout = util::checkout();
    let bzimage = opts.kdir.join("arch/x86/boot/bzImage");
    if !bzimage.exists() {
        bail!(
            "{} has no kernel image: build it with `cargo xtask kernel`",
            opts.kdir.display()
        );
    }
    let venv_bin = cache.join("venv/bin");
    let rwdir = checkout.join("target/vm");
    let logdir = checkout.join("target/xtask");
    fs::create_dir_all(&rwdir).with_context(|| format!("cannot create {}", rwdir.display()))?;
    fs::create_dir_all(&logdir).with_context(|| format!("cannot create {}", logdir.display()))?;
    let console_log = logdir.join("console.log");

    let mut cmd = Command::new(venv_bin.join("vng"));
    cmd.env("PATH", util::prepend_path(&venv_bin)?)
        .arg("--run")
        .arg(&opts.kdir)
        .args([
            "--user",
            "root",
            "--verbose",
            "--force-9p",
            "--memory",
            "2G",
        ])
        .arg(format!("--rwdir={}", rwdir.display()))
        // Under TCG on a busy host the IO-APIC timer check can miss its
        // window and panic ("IO-APIC + timer doesn't work!"); QEMU's timer
        // is known good, so skip the check as KVM guests commonly do.
        .args(["--append", "no_timer_check"]);
    for option in &opts.append {
        cmd.args(["--append", option]);
    }
    if let Some(cpus) = opts.cpus {
        cmd.args(["--cpus", &cpus.to_string()]);
    }
    if accel == Accel::Tcg {
        cmd.arg("--disable-kvm");
    }
    cmd.arg("--exec")
        .arg(format!("echo '{MARKER}' >&2; {command}"));
    if show {
        say!("vm: $ {}", util::display(&cmd));
    }

    let start = Instant::now();
    let mut child = util::own_group(&mut cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| {
            format!(
                "cannot start {}: run `cargo xtask setup`",
                venv_bin.join("vng").display()
            )
        })?;
    util::track_group(&child);

    let stdout_buf = Arc::new(Mutex::new(Vec::<u8>::new()));
    let stdout_pipe = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("no stdout pipe"))?;
    let prefix = opts.echo_prefix;
    let out_thread = {
        let buf = Arc::clone(&stdout_buf);
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout_pipe);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                if show {
                    let mut out = io::stdout().lock();
                    let _ = out.write_all(prefix.as_bytes());
                    let _ = out.write_all(&line);
                    let _ = out.flush();
                }
                buf.lock().expect("stdout buffer").extend_from_slice(&line);
            }
        })
    };

    let console = Arc::new(Mutex::new(Console {
        started: None,
        tail: VecDeque::new(),
        crash: None,
        recent: VecDeque::new(),
    }));
    let stderr_pipe = child
        .stderr
        .take()
        .ok_or_else(|| anyhow!("no stderr pipe"))?;
    let mut log = File::create(&console_log)
        .with_context(|| format!("cannot create {}", console_log.display()))?;
    let err_thread = {
        let console = Arc::clone(&console);
        thread::spawn(move || {
            let mut reader = BufReader::new(stderr_pipe);
            let mut raw = Vec::new();
            loop {
                raw.clear();
                match reader.read_until(b'\n', &mut raw) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let line = String::from_utf8_lossy(&raw);
                let _ = log.write_all(line.as_bytes());
                let line = line.trim_end_matches(['\n', '\r']);
                let mut state = console.lock().expect("console state");
                match &mut state.crash {
                    Some((_, crash)) if crash.lines.len() < CRASH_LINES + CRASH_CONTEXT => {
                        crash.lines.push(line.to_string())
                    }
                    Some(_) => {}
                    None => {
                        if let Some(finding) = kernel_log::classify(line) {
                            if finding.severity == Severity::Fatal {
                                let mut lines: Vec<String> = state.recent.drain(..).collect();
                                lines.push(line.to_string());
                                state.crash = Some((
                                    Instant::now(),
                                    Crash {
                                        marker: finding.marker,
                                        lines,
                                    },
                                ));
                            }
                        }
                    }
                }
                if state.crash.is_none() {
                    state.recent.push_back(line.to_string());
                    if state.recent.len() > CRASH_CONTEXT {
                        state.recent.pop_front();
                    }
                }
                if state.started.is_none() {
                    if line.ends_with(MARKER) {
                        state.started = Some(Instant::now());
                    } else {
                        state.tail.push_back(line.to_string());
                        if state.tail.len() > CONSOLE_TAIL {
                            state.tail.pop_front();
                        }
                    }
                } else if show && !is_kernel_line(line) {
                    eprintln!("{prefix}{line}");
                }
            }
        })
    };

    let status = loop {
        if let Some(status) = child.try_wait()? {
            util::untrack_group(&child);
            break status;
        }
        let crashed = console
            .lock()
            .expect("console state")
            .crash
            .as_ref()
            .is_some_and(|(at, c)| {
                at.elapsed() > CRASH_GRACE || c.lines.len() >= CRASH_LINES + CRASH_CONTEXT
            });
        if crashed {
            util::kill_group(&mut child);
            let _ = out_thread.join();
            let _ = err_thread.join();
            let mut state = console.lock().expect("console state");
            let (_, crash) = state.crash.take().expect("a crash");
            say!("vm: {crash}; console log: {}", console_log.display());
            let stdout =
                String::from_utf8_lossy(&stdout_buf.lock().expect("stdout buffer")).into_owned();
            return Ok(VmOutcome {
                exit_code: -1,
                crash: Some(crash),
                stdout,
                boot_time: state.started.map_or(start.elapsed(), |s| s - start),
            });
        }
        let started = console.lock().expect("console state").started.is_some();
        let elapsed = start.elapsed();
        let boot_timeout = opts.boot_timeout.min(opts.timeout);
        if (!started && elapsed > boot_timeout) || elapsed > opts.timeout {
            util::kill_group(&mut child);
            if !started {
                forget_probe(cache, accel);
            }
            let _ = out_thread.join();
            let _ = err_thread.join();
            let state = console.lock().expect("console state");
            let tail: Vec<&str> = state.tail.iter().map(String::as_str).collect();
            let what = if started {
                format!(
                    "the guest command did not finish within {} s",
                    opts.timeout.as_secs()
                )
            } else {
                format!(
                    "the guest did not reach the command within {} s",
                    boot_timeout.as_secs()
                )
            };
            bail!(
                "{what}; QEMU was killed.\nconsole log: {}\nlast console lines:\n{}",
                console_log.display(),
                tail.join("\n")
            );
        }
        thread::sleep(Duration::from_millis(100));
    };
    let _ = out_thread.join();
    let _ = err_thread.join();

    let mut state = console.lock().expect("console state");
    let crash = state.crash.take().map(|(_, c)| c);
    let Some(started) = state.started else {
        if let Some(crash) = crash {
            bail!("{crash}\n{}", crash.lines.join("\n"));
        }
        forget_probe(cache, accel);
        let tail: Vec<&str> = state.tail.iter().map(String::as_str).collect();
        bail!(
            "vng exited ({status}) before the guest ran the command.\n\
             console log: {}\nlast console lines:\n{}\n\
             If the console is empty, try `{}` by hand; a kernel without \
             CONFIG_ACPI never powers off and one without virtio/9p cannot mount the root.",
            console_log.display(),
            tail.join("\n"),
            util::display(&cmd)
        );
    };
    let exit_code = status
        .code()
        .ok_or_else(|| anyhow!("vng was killed by a signal ({status})"))?;
    let stdout = String::from_utf8_lossy(&stdout_buf.lock().expect("stdout buffer")).into_owned();
    Ok(VmOutcome {
        exit_code,
        crash,
        stdout,
        boot_time: started - start,
    })
}

/// Whether a console line is a kernel message (`[    1.234567] ...`).
fn is_kernel_line(line: &str) -> bool {
    let Some(rest) = line.strip_prefix('[') else {
        return false;
    };
    let Some((stamp, _)) = rest.split_once(']') else {
        return false;
    };
    let stamp = stamp.trim();
    !stamp.is_empty() && stamp.chars().all(|c| c.is_ascii_digit() || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_lines() {
        assert!(is_kernel_line("[    1.234567] Run /init as init process"));
        assert!(is_kernel_line("[12345.000001] reboot: Power down"));
        assert!(!is_kernel_line("[ok] my test"));
        assert!(!is_kernel_line("ls: cannot access 'x': No such file"));
        assert!(!is_kernel_line("[] x"));
    }

    #[test]
    fn command_lines() {
        assert_eq!(command_line(&["uname -r; ls".into()]), "uname -r; ls");
        assert_eq!(command_line(&["ls".into(), "a b".into()]), "ls 'a b'");
    }
}
