// SPDX-License-Identifier: GPL-2.0

//! What the cases left in the kernel: the kernel log since the run started,
//! judged by the one kernel log policy ([`harness::kernel_log`]), and
//! kmemleak's report on debug kernels (every unreferenced object fails).
//! Each runs once per run, after every case.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::thread::sleep;
use std::time::Duration;

use anyhow::{Context, Result};
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
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            match self.kmsg.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let record = String::from_utf8_lossy(&buf[..n]);
                    out.push(
                        record
                            .split_once(';')
                            .map_or(&*record, |(_, m)| m)
                            .to_owned(),
                    );
                }
                // Overwritten records: keep reading from the oldest left.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Every message logged since the mark (or the last read), one a line.
    pub fn read_new(&mut self) -> io::Result<String> {
        Ok(self.records()?.concat())
    }

    /// Fails if the kernel logged a line the policy denies since
    /// [`Mark::now`]; the log of the failure is everything it logged.
    pub fn check(mut self) -> Outcome {
        let all: Vec<String> = match self.records() {
            Ok(records) => records
                .iter()
                .map(|text| text.lines().next().unwrap_or_default().to_owned())
                .collect(),
            Err(e) => return Outcome::fail(format!("reading /dev/kmsg: {e}")),
        };
        let hits: Vec<String> = kernel_log::findings(&all.join("\n"))
            .into_iter()
            .map(|finding| format!("{}: {}", finding.marker, finding.line))
            .collect();
        if hits.is_empty() {
            Outcome::Pass
        } else {
            Outcome::fail_with_log(
                format!(
                    "{} bad kernel log line(s), first: {}\n{}",
                    hits.len(),
                    hits[0],
                    hits.join("\n")
                ),
                format!("kernel log of the run:\n{}", all.join("\n")),
            )
        }
    }
}

/// Whether kmemleak is there, mounting debugfs if needed.
pub(crate) fn kmemleak_available() -> bool {
    if !Path::new(KMEMLEAK).exists() {
        // SAFETY: all pointers are NUL-terminated strings that outlive the call.
        unsafe {
            libc::mount(
                c"debugfs".as_ptr(),
                c"/sys/kernel/debug".as_ptr(),
                c"debugfs".as_ptr(),
                0,
                std::ptr::null(),
            );
        }
    }
    Path::new(KMEMLEAK).exists()
}

/// Scans for leaks once: any unreferenced object fails.
pub fn kmemleak_check() -> Outcome {
    if !kmemleak_available() {
        return Outcome::Skip("no kmemleak in this kernel (only the debug kernel has it)".into());
    }
    match kmemleak_report() {
        Ok(report) => {
            let leaks = kernel_log::kmemleak_leaks(&report);
            if leaks.is_empty() {
                Outcome::Pass
            } else {
                let first = leaks[0].lines().next().unwrap_or_default().to_string();
                Outcome::fail_with_log(
                    format!(
                        "kmemleak: {} unreferenced object(s), first: {first}",
                        leaks.len()
                    ),
                    leaks.join("\n"),
                )
            }
        }
        Err(e) => Outcome::fail(format!("{e:#}")),
    }
}

pub(crate) fn kmemleak_report() -> Result<String> {
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
