// SPDX-License-Identifier: GPL-2.0

//! What the cases left in the kernel: the kernel log since a [`Mark`],
//! judged by the one kernel log policy ([`harness::kernel_log`]), and
//! kmemleak's unreferenced objects on debug kernels: new since a
//! [`Leaks::snapshot`], or since the run started (every unreferenced object
//! fails, [`kmemleak_check`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Command;
use std::thread::sleep;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use harness::kernel_log;

use crate::Outcome;

const KMEMLEAK: &str = "/sys/kernel/debug/kmemleak";

/// A position in the kernel log, taken when the run starts.
pub struct Mark {
    kmsg: File,
}

impl Mark {
    /// Remembers the end of the kernel log, and clears kmemleak's list of
    /// already known leaks so that only this run's are reported.
    pub fn now() -> Result<Self> {
        let mark = Self::here()?;
        if kmemleak_available() {
            fs::write(KMEMLEAK, "clear").context("clearing kmemleak")?;
        }
        Ok(mark)
    }

    /// Remembers the end of the kernel log, and nothing else: for a check
    /// of one case's window inside the run.
    pub fn here() -> Result<Self> {
        let mut kmsg = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .context("opening /dev/kmsg (the runner must run as root in the test kernel)")?;
        kmsg.seek(SeekFrom::End(0))
            .context("seeking to the end of /dev/kmsg")?;
        Ok(Mark { kmsg })
    }

    /// The text of every record logged since the mark (or the last read).
    /// Each read of /dev/kmsg returns one record, "prio,seq,time,flags;
    /// message\n" and the record's dictionary lines.
    fn records(&mut self) -> io::Result<Vec<String>> {
        let (mut out, mut buf) = (Vec::new(), vec![0u8; 8192]);
        loop {
            match self.kmsg.read(&mut buf) {
                Ok(0) => return Ok(out),
                Ok(n) => {
                    let record = String::from_utf8_lossy(&buf[..n]);
                    out.push(record.split_once(';').map_or(&*record, |r| r.1).to_owned());
                }
                // Overwritten records: keep reading from the oldest left.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(out),
                Err(e) => return Err(e),
            }
        }
    }

    /// Every message logged since the mark (or the last read), one a line.
    pub fn read_new(&mut self) -> io::Result<String> {
        Ok(self.records()?.concat())
    }

    /// An error when the kernel logged a line the policy denies since the
    /// mark: for cases that judge their own window.
    pub fn clean(self) -> Result<()> {
        match self.check() {
            Outcome::Fail { reason, .. } => bail!("kernel log: {reason}"),
            _ => Ok(()),
        }
    }

    /// Fails if the kernel logged a line the policy denies since the mark;
    /// the log of the failure is everything it logged.
    pub fn check(mut self) -> Outcome {
        let all = match self.records() {
            Ok(records) => records
                .iter()
                .map(|text| text.lines().next().unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n"),
            Err(e) => return Outcome::fail(format!("reading /dev/kmsg: {e}")),
        };
        let hits: Vec<String> = kernel_log::findings(&all)
            .into_iter()
            .map(|finding| format!("{}: {}", finding.marker, finding.line))
            .collect();
        match hits.first() {
            None => Outcome::Pass,
            Some(first) => Outcome::fail_with_log(
                format!(
                    "{} bad kernel log line(s), first: {first}\n{}",
                    hits.len(),
                    hits.join("\n")
                ),
                format!("kernel log of the run:\n{all}"),
            ),
        }
    }
}

/// Mounts debugfs (fault injection and kmemleak live there) if needed.
pub fn mount_debugfs() {
    if !Path::new("/sys/kernel/debug/kmemleak").exists()
        && !Path::new("/sys/kernel/debug/failslab").exists()
    {
        let _ = Command::new("mount")
            .args(["-t", "debugfs", "debugfs", "/sys/kernel/debug"])
            .status();
    }
}

/// Whether the kernel has kmemleak (only the debug kernel does).
pub fn kmemleak_available() -> bool {
    mount_debugfs();
    Path::new(KMEMLEAK).exists()
}

/// Scans for leaks once: any unreferenced object since the run began (see
/// [`Mark::now`]) fails.
pub fn kmemleak_check() -> Outcome {
    if !kmemleak_available() {
        return Outcome::Skip("no kmemleak in this kernel (only the debug kernel has it)".into());
    }
    match Leaks(Vec::new()).none_since() {
        Ok(()) => Outcome::Pass,
        Err(e) => {
            let text = format!("{e:#}");
            let (reason, log) = text.split_once('\n').unwrap_or((&text, ""));
            Outcome::fail_with_log(reason, log)
        }
    }
}

fn kmemleak_report() -> Result<String> {
    // kmemleak reports objects older than 5 s that were unreferenced and
    // unchanged across two scans.
    sleep(Duration::from_secs(6));
    for _ in 0..2 {
        let mut f = OpenOptions::new()
            .write(true)
            .open(KMEMLEAK)
            .context("opening kmemleak")?;
        f.write_all(b"scan").context("triggering a kmemleak scan")?;
    }
    fs::read_to_string(KMEMLEAK).context("reading kmemleak")
}

/// kmemleak's unreferenced objects at one time, by their first line.
pub struct Leaks(Vec<String>);

impl Leaks {
    /// The objects kmemleak reports now; None without kmemleak.
    pub fn snapshot() -> Result<Option<Leaks>> {
        if !kmemleak_available() {
            return Ok(None);
        }
        Ok(Some(Leaks(kernel_log::kmemleak_leaks(&kmemleak_report()?))))
    }

    /// An error naming every object reported now and not at the snapshot
    /// (no filtering by name): its first line, then every object.
    pub fn none_since(&self) -> Result<()> {
        let new: Vec<String> = kernel_log::kmemleak_leaks(&kmemleak_report()?)
            .into_iter()
            .filter(|l| !self.0.iter().any(|b| b.lines().next() == l.lines().next()))
            .collect();
        if let Some(first) = new.first() {
            let first = first.lines().next().unwrap_or_default();
            bail!(
                "kmemleak: {} new unreferenced object(s), first: {first}\n{}",
                new.len(),
                new.join("\n")
            );
        }
        Ok(())
    }
}

/// Kernel settings (/proc/sys, debugfs files) set for a window and put back
/// as they were when dropped.
pub struct Knobs(Vec<(&'static str, String)>);

impl Knobs {
    pub fn set(knobs: &[(&'static str, &str)]) -> Result<Self> {
        let mut saved = Knobs(Vec::new());
        for &(path, value) in knobs {
            let old = fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
            fs::write(path, value).with_context(|| format!("writing {path}"))?;
            saved.0.push((path, old.trim().to_owned()));
        }
        Ok(saved)
    }
}

impl Drop for Knobs {
    fn drop(&mut self) {
        for (path, old) in self.0.iter().rev() {
            let _ = fs::write(path, old);
        }
    }
}

/// Dumps every task's stack and every CPU's backtrace into the kernel log
/// (sysrq t and l) and returns what the log got from then on.
pub fn sysrq_dump() -> String {
    let kmsg = Mark::here();
    for key in ["t", "l"] {
        let _ = fs::write("/proc/sysrq-trigger", key);
    }
    sleep(Duration::from_secs(2));
    match kmsg {
        Ok(mut kmsg) => kmsg
            .read_new()
            .unwrap_or_else(|e| format!("reading /dev/kmsg: {e}")),
        Err(e) => format!("{e:#}"),
    }
}
