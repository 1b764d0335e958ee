// SPDX-License-Identifier: GPL-2.0

//! Helpers shared by the subcommands: where things live (checkout, cache,
//! toolchain directory) and how external commands are run and reported.
//!
//! Every message of our own goes to stderr, so that stdout carries only what
//! a caller asked for (`kernel --print-path`) or what the guest printed.

use std::collections::VecDeque;
use std::env;
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use cargo_metadata::{Message, TargetKind};

/// Prints a status line of our own (not the output of a tool) to stderr.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => { eprintln!("[xtask] {}", format_args!($($arg)*)) };
}

/// The root of the checkout (the directory holding the workspace Cargo.toml).
///
/// `cargo run` (and so `cargo xtask`) tells us where xtask/ is at run time;
/// the path it was built at is only the fallback, since a copied or moved
/// checkout may reuse a binary built elsewhere.
pub fn checkout() -> PathBuf {
    let xtask = env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    xtask
        .parent()
        .expect("xtask/ is a subdirectory of the checkout")
        .to_path_buf()
}

/// The cache directory:
/// `${TASK_KFUNCS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/task_kfuncs}`.
///
/// It lives outside the checkout so that every clone (and CI on the same
/// machine) shares the kernel builds.
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(dir) = env::var_os("TASK_KFUNCS_CACHE").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let base = match env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .ok_or_else(|| anyhow!("neither TASK_KFUNCS_CACHE, XDG_CACHE_HOME nor HOME is set; set TASK_KFUNCS_CACHE to a directory for the kernel builds"))?;
            PathBuf::from(home).join(".cache")
        }
    };
    Ok(base.join("task_kfuncs"))
}

/// `PATH` for every kernel and module `make`: `$CACHE/bin` first.
///
/// `$CACHE/bin` holds symlinks to Debian's rustc 1.96 (which has rust-src)
/// and to bindgen. If the rustup `rustc` came first, Kconfig would record
/// its version, find no rust-src and silently turn CONFIG_RUST off.
pub fn toolchain_path(cache: &Path) -> Result<OsString> {
    prepend_path(&cache.join("bin"))
}

/// `PATH` with `dir` in front of it.
pub fn prepend_path(dir: &Path) -> Result<OsString> {
    let mut dirs = vec![dir.to_path_buf()];
    if let Some(path) = env::var_os("PATH") {
        dirs.extend(env::split_paths(&path));
    }
    env::join_paths(dirs).context("cannot build PATH")
}

/// A `Command` for a kernel or module `make` run with the test kernel's
/// toolchain: `$CACHE/bin` first in `PATH` and libclang 19 for bindgen.
pub fn kernel_make(cache: &Path) -> Result<Command> {
    let mut cmd = Command::new("make");
    cmd.env("PATH", toolchain_path(cache)?)
        .env("LIBCLANG_PATH", "/usr/lib/llvm-19/lib");
    Ok(cmd)
}

/// Renders a command the way a user would type it in a shell.
pub fn display(cmd: &Command) -> String {
    let mut words = vec![shell_quote(&cmd.get_program().to_string_lossy())];
    words.extend(cmd.get_args().map(|a| shell_quote(&a.to_string_lossy())));
    let mut out = words.join(" ");
    if let Some(dir) = cmd.get_current_dir() {
        out = format!("(cd {} && {out})", shell_quote(&dir.to_string_lossy()));
    }
    out
}

/// Quotes `word` for a POSIX shell when it needs it.
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Runs `cmd` with its output streamed to our stderr (stdout is kept for
/// what callers parse); fails naming the command.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = display(cmd);
    say!("$ {shown}");
    let status = cmd.stdout(io::stderr()).status().with_context(|| {
        format!("cannot start `{shown}`: is it installed? (`cargo xtask setup`)")
    })?;
    check_status(status, &shown)
}

/// Runs `cmd` and returns its stdout (trimmed); stderr is passed through.
pub fn output(cmd: &mut Command) -> Result<String> {
    let shown = display(cmd);
    let out = cmd.stderr(Stdio::inherit()).output().with_context(|| {
        format!("cannot start `{shown}`: is it installed? (`cargo xtask setup`)")
    })?;
    check_status(out.status, &shown)?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn check_status(status: ExitStatus, shown: &str) -> Result<()> {
    if status.success() {
        Ok(())
    } else {
        bail!("`{shown}` failed ({status})")
    }
}

/// Runs a long step with its output appended to `log`, printing the phase,
/// the elapsed time and the last line of the log every 30 seconds.
///
/// On failure the error names the log and carries its last lines.
pub fn run_logged(cmd: &mut Command, phase: &str, log: &Path) -> Result<()> {
    let shown = display(cmd);
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open log {}", log.display()))?;
    writeln!(file, "\n### {phase}: {shown}")?;
    say!("{phase}: $ {shown}");
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| {
            format!("cannot start `{shown}`: is it installed? (`cargo xtask setup`)")
        })?;
    let mut next_report = Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() >= next_report {
            let last = tail(log, 1).unwrap_or_default();
            say!(
                "{phase}: {} elapsed  {}",
                fmt_duration(start.elapsed()),
                last.trim()
            );
            next_report += Duration::from_secs(30);
        }
        thread::sleep(Duration::from_millis(200));
    };
    if status.success() {
        say!("{phase}: done in {}", fmt_duration(start.elapsed()));
        return Ok(());
    }
    let last = tail(log, 25).unwrap_or_default();
    bail!(
        "{phase} failed ({status}) after {}: `{shown}`\n\
         full log: {}\n\
         last lines:\n{last}",
        fmt_duration(start.elapsed()),
        log.display()
    )
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> Result<String> {
    let reader = BufReader::new(File::open(path)?);
    let mut last = VecDeque::with_capacity(n + 1);
    for line in reader.split(b'\n') {
        last.push_back(String::from_utf8_lossy(&line?).into_owned());
        if last.len() > n {
            last.pop_front();
        }
    }
    Ok(last.into_iter().collect::<Vec<_>>().join("\n"))
}

/// `m:ss`, or `h:mm:ss` past an hour.
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// Free space in bytes on the file system holding `dir` (statvfs(3)).
pub fn free_bytes(dir: &Path) -> Result<u64> {
    let st =
        nix::sys::statvfs::statvfs(dir).with_context(|| format!("statvfs {}", dir.display()))?;
    Ok(st.blocks_available() as u64 * st.fragment_size() as u64)
}

/// Whether we run as root (apt-get needs it).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Process groups started with [`own_group`] that are still running: a
/// signal that ends xtask ends them too (they do not get the terminal's
/// Ctrl-C, being in a group of their own).
static GROUPS: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

/// Makes `cmd` lead a process group of its own, so that [`kill_group`]
/// ends it and everything it started (vng runs Python that runs QEMU:
/// killing vng alone would leave QEMU running). Call [`track_group`] with
/// the child.
pub fn own_group(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0)
}

/// Remembers `child`'s group until [`untrack_group`], and on the first call
/// starts a thread that kills every remembered group when xtask gets
/// SIGINT, SIGTERM or SIGHUP, then exits with 128 + the signal.
pub fn track_group(child: &Child) {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    static WATCH: std::sync::Once = std::sync::Once::new();
    WATCH.call_once(|| {
        if let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
            thread::spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    for pgid in GROUPS.lock().map(|g| g.clone()).unwrap_or_default() {
                        let _ = nix::sys::signal::killpg(
                            nix::unistd::Pid::from_raw(pgid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                    std::process::exit(128 + sig);
                }
            });
        }
    });
    if let Ok(mut groups) = GROUPS.lock() {
        groups.push(child.id() as i32);
    }
}

/// Forgets `child`'s group (it has ended).
pub fn untrack_group(child: &Child) {
    if let Ok(mut groups) = GROUPS.lock() {
        groups.retain(|&g| g != child.id() as i32);
    }
}

/// Kills the process group `child` leads (see [`own_group`]) and reaps
/// `child`.
pub fn kill_group(child: &mut Child) {
    use nix::sys::signal::{killpg, Signal};
    use nix::unistd::Pid;
    let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
    let _ = child.wait();
    untrack_group(child);
}

/// `cargo ARGS` in the checkout for a build against the test kernel in
/// `kdir`: the BPF programs of bpf-tests and the toolkit's tests find it in
/// TASK_KFUNCS_KDIR and RUST_KFUNCS_KDIR. Standard output is piped (for
/// [`cargo_artifacts`]).
pub fn cargo_for_kernel(checkout: &Path, kdir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(args)
        .current_dir(checkout)
        .env("TASK_KFUNCS_KDIR", kdir)
        .env("RUST_KFUNCS_KDIR", kdir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    cmd
}

/// Runs `cmd` (a cargo command with `--message-format=json...`) and returns
/// (executable, package directory, `<package>/<target>` label) of each
/// artifact `want` keeps. Fails when cargo fails.
pub fn cargo_artifacts(
    cmd: &mut Command,
    want: impl Fn(&cargo_metadata::Artifact) -> bool,
) -> Result<Vec<(PathBuf, PathBuf, String)>> {
    let shown = display(cmd);
    say!("$ {shown}");
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start `{shown}`"))?;
    let stdout = child.stdout.take().context("no stdout pipe")?;
    let mut found = Vec::new();
    for message in Message::parse_stream(BufReader::new(stdout)) {
        let message = message.with_context(|| format!("reading the output of `{shown}`"))?;
        let Message::CompilerArtifact(a) = message else {
            continue;
        };
        let Some(exe) = a.executable.clone() else {
            continue;
        };
        if !want(&a) {
            continue;
        }
        let dir = a
            .manifest_path
            .parent()
            .context("a manifest path without a directory")?;
        let package = dir.file_name().unwrap_or("?");
        let kind = match a.target.kind.first() {
            Some(TargetKind::Lib) => "lib".to_string(),
            Some(kind) => format!("{kind}.{}", a.target.name),
            None => a.target.name.clone(),
        };
        found.push((
            exe.into_std_path_buf(),
            dir.to_path_buf().into_std_path_buf(),
            format!("{package}/{kind}"),
        ));
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("`{shown}` failed ({status}): see its messages above");
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("O=/tmp/x"), "O=/tmp/x");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn durations() {
        assert_eq!(fmt_duration(Duration::from_secs(59)), "0:59");
        assert_eq!(fmt_duration(Duration::from_secs(541)), "9:01");
        assert_eq!(fmt_duration(Duration::from_secs(3661)), "1:01:01");
    }
}
