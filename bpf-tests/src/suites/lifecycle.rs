// SPDX-License-Identifier: GPL-2.0

//! The module's lifecycle under use and under faults: a loaded program pins
//! the module, a second insmod is refused, insmod/attach/trigger/rmmod
//! cycles, a map of task references that outlives its program and the
//! module, program loads racing rmmod/insmod, every allocation of insmod
//! failed in turn (fault injection), a module whose kfunc BTF is missing
//! or whose id set is empty refusing to load, and rmmod right after the
//! release deferred last puts out of an NMI ([`super::nmi`]).
//!
//! The cases need `--module PATH` and leave the module loaded, as found
//! ([`guarded`]). Their programs are those of
//! `progs/task_kfuncs_lifecycle.bpf.c`. The heavy ones exercise the kernel's
//! module loader more than the module: `cargo xtask test` runs a short form
//! of each, `--long` the full one ([`Scale`]).

use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{self, Command};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use libbpf_rs::MapHandle;

use crate::bpf::{self, Loaded, Obj};
use crate::kernel_log::{self, Knobs, Leaks, Mark};
use crate::module::{self, TASK_KFUNCS};
use crate::process::{spawn_and_reap, wait_until, Parked, DEFERRED};
use crate::{Case, Ctx, Outcome};

const LIFECYCLE: Obj = crate::obj!("task_kfuncs_lifecycle");

/// How much of each heavy case a run does.
struct Scale {
    /// insmod/attach/trigger/rmmod cycles.
    cycles: usize,
    /// Program loads racing rmmod/insmod: at least `race_loads`, and at
    /// least `race_ran` that succeed, within 20 times as many attempts.
    race_loads: u32,
    race_ran: u32,
    /// fail-nth: after failing the k-th allocation, the next k to fail.
    next_k: fn(u32) -> u32,
    /// Whether each case also compares kmemleak before and after (the
    /// `kernel/kmemleak_clean` judge covers the whole run anyway).
    own_kmemleak: bool,
}

/// The short form's fail-nth fails every allocation at first, then ever
/// sparser ones (k grows by a quarter), so that it still crosses all of
/// insmod.
#[rustfmt::skip]
const LONG: Scale = Scale { cycles: 100, race_loads: 150, race_ran: 20, next_k: |k| k + 1, own_kmemleak: true };
#[rustfmt::skip]
const SHORT: Scale = Scale { cycles: 5, race_loads: 30, race_ran: 5, next_k: |k| k + 1 + k / 4, own_kmemleak: false };

/// How long the module stays loaded after each insmod of the race, in
/// turn: some loads race rmmod, some have time to finish.
const RACE_PAUSES_MS: [u64; 4] = [0, 5, 20, 200];
/// References `map_outlives_program_and_module` parks in the map.
const HELD: u32 = 4;
/// insmod attempts of `insmod_fail_nth` before giving up.
const MAX_FAIL_NTH: u32 = 5000;
/// Fault injection for `insmod_fail_nth`: every allocation may fail, and
/// every injected failure says so, unthrottled: the kernel-log policy tells
/// the allocation-failure reports they cause from bugs by that line
/// (harness::kernel_log::findings).
#[rustfmt::skip]
const FAIL_NTH_KNOBS: &[(&str, &str)] = &[
    ("/sys/kernel/debug/failslab/ignore-gfp-wait", "N"),
    ("/sys/kernel/debug/failslab/verbose", "1"),
    ("/sys/kernel/debug/failslab/verbose_ratelimit_interval_ms", "0"),
    ("/sys/kernel/debug/fail_page_alloc/ignore-gfp-wait", "N"),
    ("/sys/kernel/debug/fail_page_alloc/ignore-gfp-highmem", "N"),
    ("/sys/kernel/debug/fail_page_alloc/min-order", "0"),
    ("/sys/kernel/debug/fail_page_alloc/verbose", "1"),
    ("/sys/kernel/debug/fail_page_alloc/verbose_ratelimit_interval_ms", "0"),
];

type Run = fn(&Path, &Scale) -> Result<()>;

const CASES: &[(&str, Run)] = &[
    ("rmmod_refused_while_program_loaded", rmmod_refused),
    ("second_insmod_fails", second_insmod_fails),
    ("insmod_attach_trigger_rmmod_cycles", cycles),
    ("map_outlives_program_and_module", map_outlives),
    ("load_races_rmmod_insmod", race),
    ("insmod_fail_nth", fail_nth),
    ("refused_without_module_btf", refused_without_btf),
    ("refused_with_empty_kfunc_set", refused_empty_set),
    ("rmmod_after_nmi_release", |_, _| {
        super::nmi::rmmod_after_release()
    }),
];

/// The lifecycle cases.
pub fn cases() -> Vec<Case> {
    CASES
        .iter()
        .map(|&(name, run)| Case::new(name, move |ctx| guarded(ctx, run)))
        .collect()
}

/// Runs a case with the module at `--module`, judges the kernel log of its
/// window (and kmemleak's, when the scale asks), and leaves the module
/// loaded whatever happened, for the cases after it.
fn guarded(ctx: &Ctx, case: Run) -> Outcome {
    let Some(path) = ctx.module.as_deref() else {
        return Outcome::Skip("needs --module PATH".into());
    };
    let scale = if ctx.long { &LONG } else { &SHORT };
    let window = || -> Result<()> {
        let leaks = if scale.own_kmemleak {
            Leaks::snapshot()?
        } else {
            None
        };
        let mark = Mark::here()?;
        let result = case(path, scale);
        result.and(mark.clean())?;
        leaks.map_or(Ok(()), |l| l.none_since())
    };
    match window().and(TASK_KFUNCS.ensure_loaded(path)) {
        Ok(()) => Outcome::Pass,
        Err(e) => bpf::failed(e),
    }
}

fn lifecycle(progs: &[&str]) -> Result<Loaded> {
    let skel = LIFECYCLE.load(progs)?;
    skel.set("read_pid", process::id() as i32)?;
    Ok(skel)
}

/// rust_task_from_pid(self) through the loaded `from_pid` program.
fn from_pid_finds_self(skel: &Loaded) -> Result<()> {
    let me = process::id();
    match skel.test_run("from_pid", &mut [])? {
        found if found == me => Ok(()),
        found => bail!("rust_task_from_pid(self) gave {}, want {me}", found as i32),
    }
}

fn rmmod_refused(path: &Path, _: &Scale) -> Result<()> {
    TASK_KFUNCS.ensure_loaded(path)?;
    let skel = lifecycle(&["newtask"])?;
    match TASK_KFUNCS.rmmod() {
        // kernel/module/main.c: try_stop_module() refuses a module with
        // references with EWOULDBLOCK (what rmmod reports as "in use").
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => {}
        Err(e) => bail!("rmmod with a program loaded failed with {e}, want EWOULDBLOCK (in use)"),
        Ok(()) => bail!("rmmod succeeded while a program using the kfuncs was loaded"),
    }
    if !TASK_KFUNCS.is_loaded() {
        bail!("the module is gone after the refused rmmod");
    }
    drop(skel);
    TASK_KFUNCS.ensure_unloaded("after the program was closed")
}

fn second_insmod_fails(path: &Path, _: &Scale) -> Result<()> {
    TASK_KFUNCS.ensure_loaded(path)?;
    match module::insmod(path) {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        Err(e) => bail!("second insmod failed with {e}, want EEXIST"),
        Ok(()) => bail!("second insmod succeeded"),
    }
}

/// insmod, load + attach + trigger (a child, a test run), close, rmmod. The
/// module BTF must come and go with the module.
fn cycles(path: &Path, scale: &Scale) -> Result<()> {
    TASK_KFUNCS.ensure_unloaded("initial")?;
    for i in 1..=scale.cycles {
        (|| -> Result<()> {
            module::insmod(path).context("insmod")?;
            if !TASK_KFUNCS.btf().exists() {
                bail!("no {} after insmod", TASK_KFUNCS.btf().display());
            }
            let skel = lifecycle(&["newtask", "from_pid"])?;
            let link = skel.attach("newtask")?;
            spawn_and_reap()?;
            from_pid_finds_self(&skel)?;
            drop(link);
            if skel.get::<u64>("acquired")? == 0 {
                bail!("the task_newtask program never ran");
            }
            drop(skel);
            TASK_KFUNCS.ensure_unloaded("rmmod")
        })()
        .with_context(|| format!("cycle {i}"))?;
    }
    Ok(())
}

/// rcu_users of `pid`, read with the kernel's kfuncs only (works with the
/// module unloaded).
fn rcu_users_c(pid: i32) -> Result<i32> {
    let skel = LIFECYCLE.load(&["read_rcu_users_c"])?;
    skel.set("read_pid", pid)?;
    if skel.test_run("read_rcu_users_c", &mut [])? != 0 {
        bail!("no task with pid {pid}");
    }
    skel.get("rcu_users_read")
}

/// References stored by a program in a map stay valid after the program
/// and the module are gone, and are dropped when the map goes.
fn map_outlives(path: &Path, _: &Scale) -> Result<()> {
    TASK_KFUNCS.ensure_loaded(path)?;
    let sentinel = Parked::spawn()?;
    let baseline = rcu_users_c(sentinel.pid())?;
    let map = {
        let skel = LIFECYCLE.load(&["hold_pid"])?;
        skel.set("read_pid", sentinel.pid())?;
        for slot in 0..HELD {
            skel.set("read_slot", slot)?;
            if skel.test_run("hold_pid", &mut [])? != 0 {
                bail!("hold_pid found no task {}", sentinel.pid());
            }
        }
        MapHandle::try_from(&skel.map("task_slots")?).context("a handle on the slots map")?
        // The object (the program, its module reference) goes here.
    };
    let held = rcu_users_c(sentinel.pid())?;
    if held != baseline + HELD as i32 {
        bail!(
            "rcu_users {held} with {HELD} references in the map, want {}",
            baseline + HELD as i32
        );
    }
    TASK_KFUNCS.ensure_unloaded("with the map still open")?;
    let still = rcu_users_c(sentinel.pid())?;
    if still != held {
        bail!(
            "rcu_users went from {held} to {still} when the module went; the map still holds them"
        );
    }
    drop(map);
    // The map is freed from a work item, after its last fd is closed.
    let mut now = 0;
    if !wait_until(DEFERRED, || {
        now = rcu_users_c(sentinel.pid())?;
        Ok(now == baseline)
    })? {
        bail!("rcu_users still {now} {DEFERRED:?} after closing the map, want {baseline}");
    }
    sentinel.finish()
}

/// One thread loads, runs and closes programs while another unloads and
/// reloads the module.
fn race(path: &Path, scale: &Scale) -> Result<()> {
    TASK_KFUNCS.ensure_loaded(path)?;
    let stop = AtomicBool::new(false);
    let [loaded, refused, unloads, reloads] = [(); 4].map(|()| AtomicU32::new(0));
    let result = thread::scope(|s| -> Result<()> {
        let cycler = s.spawn(|| -> Result<()> {
            for i in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match TASK_KFUNCS.rmmod() {
                    Ok(()) => {
                        unloads.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e)
                        if matches!(e.raw_os_error(), Some(libc::EWOULDBLOCK | libc::ENOENT)) => {}
                    Err(e) => bail!("rmmod: {e}"),
                }
                match module::insmod(path) {
                    Ok(()) => {
                        reloads.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(e) => bail!("insmod: {e}"),
                }
                thread::sleep(Duration::from_millis(
                    RACE_PAUSES_MS[i % RACE_PAUSES_MS.len()],
                ));
            }
            Ok(())
        });
        let loader = (|| -> Result<()> {
            for i in 0..scale.race_loads * 20 {
                if i >= scale.race_loads && loaded.load(Ordering::Relaxed) >= scale.race_ran {
                    break;
                }
                match lifecycle(&["from_pid"]) {
                    // Loaded: the program pins the module and works.
                    Ok(skel) => {
                        from_pid_finds_self(&skel).with_context(|| format!("load {i}"))?;
                        loaded.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Ok(())
        })();
        stop.store(true, Ordering::Relaxed);
        let cycled = cycler
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the rmmod/insmod thread panicked")));
        loader.and(cycled)
    });
    let _ = bpf::take_log();
    let [loaded, refused, unloads, reloads] =
        [loaded, refused, unloads, reloads].map(|a| a.into_inner());
    println!(
        "# race: {loaded} loads ran, {refused} refused cleanly, {unloads} rmmods, {reloads} insmods"
    );
    result?;
    // The module must still be unloadable.
    TASK_KFUNCS.ensure_loaded(path)?;
    TASK_KFUNCS.ensure_unloaded("after the race")?;
    if loaded == 0 || unloads == 0 {
        bail!("the race never happened: {loaded} loads ran, {unloads} rmmods succeeded");
    }
    Ok(())
}

/// Fails the k-th allocation of insmod, for k = 1, 2, ... (sparser in the
/// short form) until insmod succeeds without a failure injected. Every
/// failed insmod must leave no module and no module BTF behind.
fn fail_nth(path: &Path, scale: &Scale) -> Result<()> {
    TASK_KFUNCS.ensure_unloaded("initial")?;
    kernel_log::mount_debugfs();
    let knobs = Knobs::set(FAIL_NTH_KNOBS)
        .context("the kernel needs FAILSLAB, FAIL_PAGE_ALLOC and FAULT_INJECTION_DEBUG_FS")?;
    // Read from tmpfs: insmod of a file on the guest's 9p root goes through
    // netfs, whose unbuffered read drops a request twice when one of its
    // allocations fails (docs/upstream/netfs-unbuffered-read-double-put.md).
    let copy = scratch("task_kfuncs-failnth");
    fs::copy(path, &copy)
        .with_context(|| format!("copying {} to {}", path.display(), copy.display()))?;
    let ko = File::open(&copy).with_context(|| format!("opening {}", copy.display()))?;
    let _ = fs::remove_file(&copy);
    let (mut failed, mut absorbed, mut tries) = (0u32, 0u32, 0u32);
    let start = Instant::now();
    // Opened once: opening it again would be an allocation of its own.
    let nth = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/proc/thread-self/fail-nth")
        .context("opening /proc/thread-self/fail-nth (CONFIG_FAULT_INJECTION_DEBUG_FS)")?;
    let mut k = 1;
    loop {
        if k > MAX_FAIL_NTH {
            bail!("insmod still hit an injected failure at k = {MAX_FAIL_NTH}");
        }
        tries += 1;
        let arm = k.to_string();
        let fd = nth.as_raw_fd();
        let mut left = [0u8; 16];
        // Nothing between arming and reading back may allocate in the
        // kernel for this task, or fault in a user page: raw calls on
        // buffers that exist already.
        // SAFETY: plain syscalls on valid fds and buffers that outlive them.
        let (armed, ret, err, read) = unsafe {
            let armed = libc::pwrite(fd, arm.as_ptr().cast(), arm.len(), 0);
            let ret = libc::syscall(libc::SYS_finit_module, ko.as_raw_fd(), c"".as_ptr(), 0);
            let err = *libc::__errno_location();
            let read = libc::pread(fd, left.as_mut_ptr().cast(), left.len(), 0);
            libc::pwrite(fd, b"0".as_ptr().cast(), 1, 0);
            (armed, ret, err, read)
        };
        if armed < 0 || read < 0 {
            bail!("fail-nth: {}", io::Error::last_os_error());
        }
        let err = io::Error::from_raw_os_error(err);
        let left = String::from_utf8_lossy(&left[..read as usize]).into_owned();
        // 0: the k-th call failed; anything else: insmod made fewer calls.
        let injected = left.trim() == "0";
        if ret == 0 {
            TASK_KFUNCS.ensure_unloaded(&format!("k = {k}"))?;
            if !injected {
                break;
            }
            absorbed += 1;
        } else {
            if !injected {
                bail!("insmod failed with no failure injected (k = {k}): {err}");
            }
            failed += 1;
            if TASK_KFUNCS.is_loaded() || TASK_KFUNCS.btf().exists() {
                bail!(
                    "k = {k}: insmod failed ({err}) but left /sys/module/{0} or \
                     /sys/kernel/btf/{0} behind",
                    TASK_KFUNCS.0
                );
            }
        }
        k = (scale.next_k)(k);
    }
    println!(
        "# fail-nth: insmod made fewer than {k} fault-injectable calls; {tries} insmods, \
         {failed} failed, {absorbed} absorbed the failure, {:.1} s",
        start.elapsed().as_secs_f64()
    );
    drop(knobs);
    Ok(())
}

/// Runs objcopy (LLVM's or GNU's) with `args`.
/// GNU objcopy first: llvm-objcopy 19's `--update-section=.BTF_ids` wrote
/// the symbols of that section with section index 0xffff (`SHN_XINDEX`)
/// and no extended index table, for a module that has a `.text.unlikely.`
/// section, which the module loader then refuses ("has an invalid section
/// index 65535", ENOEXEC).
fn objcopy(args: &[&str]) -> Result<()> {
    for tool in ["objcopy", "llvm-objcopy-19", "llvm-objcopy"] {
        match Command::new(tool).args(args).output() {
            Ok(out) if out.status.success() => return Ok(()),
            Ok(out) => bail!(
                "{tool} {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => bail!("running {tool}: {e}"),
        }
    }
    bail!("no objcopy found (install binutils)")
}

/// insmod of `ko` must fail with `errno` and log `message`.
fn refused(ko: &Path, errno: i32, message: &str) -> Result<()> {
    TASK_KFUNCS.ensure_unloaded("initial")?;
    let mut mark = Mark::here()?;
    match module::insmod(ko) {
        Ok(()) => {
            let _ = TASK_KFUNCS.rmmod_waiting();
            bail!(
                "insmod of {} succeeded: the module loaded as a no-op",
                ko.display()
            );
        }
        Err(e) if e.raw_os_error() == Some(errno) => {}
        Err(e) => bail!(
            "insmod of {} failed with {e}, want {}",
            ko.display(),
            io::Error::from_raw_os_error(errno)
        ),
    }
    let log = mark.read_new()?;
    if !log.contains(message) {
        bail!("the kernel log lacks {message:?}; it has:\n{log}");
    }
    if TASK_KFUNCS.is_loaded() || TASK_KFUNCS.btf().exists() {
        bail!("the refused module left /sys/module or /sys/kernel/btf entries");
    }
    Ok(())
}

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{name}-{}.ko", process::id()))
}

/// The module with its .BTF section removed refuses to load.
fn refused_without_btf(path: &Path, _: &Scale) -> Result<()> {
    let ko = scratch("task_kfuncs-nobtf");
    objcopy(&[
        "--remove-section=.BTF",
        &path.to_string_lossy(),
        &ko.to_string_lossy(),
    ])?;
    let result = refused(&ko, libc::ENOENT, "task_kfuncs: the module has no BTF");
    let _ = fs::remove_file(&ko);
    result
}

/// The module whose kfunc id set was never filled in (its .BTF_ids zeroed,
/// as if resolve_btfids had not run) refuses to load.
fn refused_empty_set(path: &Path, _: &Scale) -> Result<()> {
    let ko = scratch("task_kfuncs-emptyset");
    let ids = scratch("task_kfuncs-btf-ids");
    let (ko_str, ids_str) = (ko.to_string_lossy(), ids.to_string_lossy());
    let src = path.to_string_lossy();
    objcopy(&[&format!("--dump-section=.BTF_ids={ids_str}"), &src, &ko_str])?;
    let size = fs::metadata(&ids)?.len();
    fs::write(&ids, vec![0u8; size as usize])?;
    objcopy(&[
        &format!("--update-section=.BTF_ids={ids_str}"),
        &src,
        &ko_str,
    ])?;
    let result = refused(
        &ko,
        libc::EINVAL,
        "task_kfuncs: the kfunc id set holds 0 of",
    );
    let _ = fs::remove_file(&ko);
    let _ = fs::remove_file(&ids);
    result
}
