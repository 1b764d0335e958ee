// SPDX-License-Identifier: GPL-2.0

//! Faults and module lifecycle under use: load/attach/trigger/unload
//! cycles, a map of task references that outlives its program and the
//! module, program loads racing rmmod/insmod, every allocation of insmod
//! failed in turn (fault injection), and a module whose kfunc BTF is
//! missing or whose id set is empty refusing to load.
//!
//! They need `--module PATH` and leave the module loaded, as found
//! ([`lifecycle::guarded`]). Programs come from
//! `progs/task_kfuncs_stress.bpf.c` ([`stress`]'s skeleton); module loading
//! is [`module`]'s.

use std::fs::{self, File};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{self, Command};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use libbpf_rs::MapHandle;

use crate::lifecycle::guarded;
use crate::module::{self, UNLOAD_GRACE};
use crate::stress::{self, counters};
use crate::{kernel_log, Case};

/// Cycles of `insmod_attach_trigger_rmmod_cycles`.
const CYCLES: usize = 100;
/// Program loads of `load_races_rmmod_insmod`: at least this many, and at
/// least [`RACE_RAN`] that succeed, within [`RACE_MAX`] attempts.
const RACE_LOADS: u32 = 150;
const RACE_RAN: u32 = 20;
const RACE_MAX: u32 = 3000;
/// How long the module stays loaded after each insmod of the race, in
/// turn: some loads race rmmod, some have time to finish.
const RACE_PAUSES_MS: [u64; 4] = [0, 5, 20, 200];
/// References `map_outlives_program_and_module` parks in the map.
const HELD: u32 = 4;
/// insmod attempts of `insmod_fail_nth` before giving up.
const MAX_FAIL_NTH: u32 = 5000;

/// The fault and lifecycle cases.
pub fn cases() -> Vec<Case> {
    vec![
        Case::new("fault_insmod_attach_trigger_rmmod_cycles", |ctx| {
            guarded(ctx.module.as_deref(), cycles)
        }),
        Case::new("fault_map_outlives_program_and_module", |ctx| {
            guarded(ctx.module.as_deref(), map_outlives)
        }),
        Case::new("fault_load_races_rmmod_insmod", |ctx| {
            guarded(ctx.module.as_deref(), race)
        }),
        Case::new("fault_insmod_fail_nth", |ctx| {
            guarded(ctx.module.as_deref(), fail_nth)
        }),
        Case::new("fault_refused_without_module_btf", |ctx| {
            guarded(ctx.module.as_deref(), refused_without_btf)
        }),
        Case::new("fault_refused_with_empty_kfunc_set", |ctx| {
            guarded(ctx.module.as_deref(), refused_empty_set)
        }),
    ]
}

fn btf_path() -> PathBuf {
    Path::new("/sys/kernel/btf").join(module::NAME)
}

fn unload(what: &str) -> Result<()> {
    if module::is_loaded() {
        module::rmmod_waiting(UNLOAD_GRACE).with_context(|| format!("{what}: rmmod"))?;
    }
    if module::is_loaded() || btf_path().exists() {
        bail!(
            "{what}: /sys/module/{0} or /sys/kernel/btf/{0} still there after rmmod",
            module::NAME
        );
    }
    Ok(())
}

/// kmemleak's unreferenced objects now, when the kernel has kmemleak.
fn leaks() -> Result<Option<Vec<String>>> {
    if !kernel_log::kmemleak_available() {
        return Ok(None);
    }
    stress::kmemleak_objects().map(Some)
}

/// Fails on any kmemleak object that `before` did not have: no filtering
/// by name.
fn no_new_leaks(before: Option<Vec<String>>) -> Result<()> {
    let Some(before) = before else {
        println!("# no kmemleak in this kernel: leaks checked on the debug kernel only");
        return Ok(());
    };
    let new: Vec<String> = leaks()?
        .unwrap_or_default()
        .into_iter()
        .filter(|l| !before.iter().any(|b| b.lines().next() == l.lines().next()))
        .collect();
    if !new.is_empty() {
        bail!(
            "kmemleak: {} new unreferenced object(s)\n{}",
            new.len(),
            new.join("\n")
        );
    }
    Ok(())
}

/// Fails when the kernel logged a bad line since `mark`.
fn log_clean(mark: kernel_log::Mark) -> Result<()> {
    match mark.check() {
        crate::Outcome::Fail { reason: why, .. } => bail!("kernel log: {why}"),
        _ => Ok(()),
    }
}

/// insmod, load + attach + trigger (a child, a TEST_RUN), close, rmmod; 100
/// times. The module BTF must come and go with the module.
fn cycles(path: &Path) -> Result<()> {
    let before = leaks()?;
    let mark = kernel_log::Mark::here()?;
    unload("initial")?;
    let me = process::id() as i32;
    for i in 1..=CYCLES {
        module::insmod(path).with_context(|| format!("cycle {i}: insmod"))?;
        if !btf_path().exists() {
            bail!("cycle {i}: no {} after insmod", btf_path().display());
        }
        {
            let mut storage = MaybeUninit::uninit();
            let mut skel =
                stress::load(&mut storage, &["cycle_newtask", "cycle_from_pid"], |open| {
                    let bss = open.maps.bss_data.as_deref_mut().context("no .bss")?;
                    bss.enabled = 1;
                    bss.read_pid = me;
                    Ok(())
                })
                .with_context(|| format!("cycle {i}"))?;
            let link = stress::program(&skel, "cycle_newtask")?
                .attach()
                .with_context(|| format!("cycle {i}: attach"))?;
            crate::process::spawn_and_reap()?;
            let found = stress::test_run(&skel, "cycle_from_pid")?;
            if found != me {
                bail!("cycle {i}: rust_task_from_pid(self) gave {found}, want {me}");
            }
            drop(link);
            let n = counters(&skel.maps.counts)?;
            if n[0] == 0 {
                bail!("cycle {i}: the task_newtask program never ran");
            }
            skel.maps
                .bss_data
                .as_deref_mut()
                .context("no .bss")?
                .enabled = 0;
        }
        unload(&format!("cycle {i}"))?;
    }
    log_clean(mark)?;
    no_new_leaks(before)
}

/// rcu_users of `pid`, read with the kernel's kfuncs only (works with the
/// module unloaded).
fn rcu_users_c(pid: i32) -> Result<i32> {
    let mut storage = MaybeUninit::uninit();
    let mut skel = stress::load(&mut storage, &["read_rcu_users_c"], |_| Ok(()))?;
    stress::rcu_users(&mut skel, "read_rcu_users_c", pid)
}

/// References stored by a program in a map stay valid after the program
/// and the module are gone, and are dropped when the map goes.
fn map_outlives(path: &Path) -> Result<()> {
    if !module::is_loaded() {
        module::insmod(path).context("insmod")?;
    }
    let sentinel = crate::process::Parked::spawn()?;
    let baseline = rcu_users_c(sentinel.pid())?;
    let map = {
        let mut storage = MaybeUninit::uninit();
        let mut skel = stress::load(&mut storage, &["hold_pid"], |_| Ok(()))?;
        for slot in 0..HELD {
            let bss = skel.maps.bss_data.as_deref_mut().context("no .bss")?;
            bss.read_pid = sentinel.pid();
            bss.read_slot = slot;
            if stress::test_run(&skel, "hold_pid")? != 0 {
                bail!("hold_pid found no task {}", sentinel.pid());
            }
        }
        MapHandle::try_from(&skel.maps.slots).context("a handle on the slots map")?
        // The skeleton (the program, its module reference) goes here.
    };
    let held = rcu_users_c(sentinel.pid())?;
    if held != baseline + HELD as i32 {
        bail!(
            "rcu_users {held} with {HELD} references in the map, want {}",
            baseline + HELD as i32
        );
    }
    unload("with the map still open")?;
    let still = rcu_users_c(sentinel.pid())?;
    if still != held {
        bail!(
            "rcu_users went from {held} to {still} when the module went; the map still holds them"
        );
    }
    drop(map);
    // The map is freed from a work item, after its last fd is closed.
    let start = Instant::now();
    loop {
        let now = rcu_users_c(sentinel.pid())?;
        if now == baseline {
            break;
        }
        if start.elapsed() > Duration::from_secs(20) {
            bail!("rcu_users still {now} 20 s after closing the map, want {baseline}");
        }
        thread::sleep(Duration::from_millis(50));
    }
    sentinel.finish()?;
    Ok(())
}

/// One thread loads, runs and closes programs while another unloads and
/// reloads the module.
fn race(path: &Path) -> Result<()> {
    let mark = kernel_log::Mark::here()?;
    if !module::is_loaded() {
        module::insmod(path).context("insmod")?;
    }
    let stop = AtomicBool::new(false);
    let (loaded, refused, unloads, reloads) = (
        AtomicU32::new(0),
        AtomicU32::new(0),
        AtomicU32::new(0),
        AtomicU32::new(0),
    );
    let me = process::id() as i32;
    let result = thread::scope(|s| -> Result<()> {
        let cycler = s.spawn(|| -> Result<()> {
            for i in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match module::rmmod() {
                    Ok(()) => {
                        unloads.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e)
                        if matches!(
                            e.raw_os_error(),
                            Some(libc::EWOULDBLOCK) | Some(libc::ENOENT)
                        ) => {}
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
            for i in 0..RACE_MAX {
                if i >= RACE_LOADS && loaded.load(Ordering::Relaxed) >= RACE_RAN {
                    break;
                }
                let mut storage = MaybeUninit::uninit();
                let loaded_skel = stress::load(&mut storage, &["cycle_from_pid"], |open| {
                    open.maps
                        .bss_data
                        .as_deref_mut()
                        .context("no .bss")?
                        .read_pid = me;
                    Ok(())
                });
                match loaded_skel {
                    Ok(skel) => {
                        // Loaded: the program pins the module and works.
                        let found = stress::test_run(&skel, "cycle_from_pid")?;
                        if found != me {
                            bail!("load {i}: rust_task_from_pid(self) gave {found}, want {me}");
                        }
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
    let _ = crate::bpf::take_log();
    let (loaded, refused, unloads, reloads) = (
        loaded.into_inner(),
        refused.into_inner(),
        unloads.into_inner(),
        reloads.into_inner(),
    );
    println!(
        "# race: {loaded} loads ran, {refused} refused cleanly, {unloads} rmmods, {reloads} insmods"
    );
    result?;
    // The module must still be unloadable.
    if !module::is_loaded() {
        module::insmod(path).context("insmod after the race")?;
    }
    unload("after the race")?;
    if loaded == 0 || unloads == 0 {
        bail!("the race never happened: {loaded} loads ran, {unloads} rmmods succeeded");
    }
    log_clean(mark)
}

/// debugfs knobs set for the fail-nth case, restored on drop.
struct FaultKnobs(Vec<(PathBuf, String)>);

impl FaultKnobs {
    fn set() -> Result<Self> {
        // Mounts debugfs if needed.
        let _ = kernel_log::kmemleak_available();
        let mut saved = Vec::new();
        for (file, value) in [
            ("failslab/ignore-gfp-wait", "N"),
            // Every injected failure says so, unthrottled: the kernel-log
            // policy tells the allocation-failure reports they cause from
            // bugs by that line (harness::kernel_log::findings).
            ("failslab/verbose", "1"),
            ("failslab/verbose_ratelimit_interval_ms", "0"),
            ("fail_page_alloc/ignore-gfp-wait", "N"),
            ("fail_page_alloc/ignore-gfp-highmem", "N"),
            ("fail_page_alloc/min-order", "0"),
            ("fail_page_alloc/verbose", "1"),
            ("fail_page_alloc/verbose_ratelimit_interval_ms", "0"),
        ] {
            let path = Path::new("/sys/kernel/debug").join(file);
            let old = fs::read_to_string(&path).with_context(|| {
                format!(
                    "reading {} (the kernel needs FAILSLAB, FAIL_PAGE_ALLOC and \
                     FAULT_INJECTION_DEBUG_FS)",
                    path.display()
                )
            })?;
            fs::write(&path, value).with_context(|| format!("writing {}", path.display()))?;
            saved.push((path, old.trim().to_owned()));
        }
        Ok(FaultKnobs(saved))
    }
}

impl Drop for FaultKnobs {
    fn drop(&mut self) {
        for (path, old) in &self.0 {
            let _ = fs::write(path, old);
        }
    }
}

/// Fails the k-th allocation of insmod, for k = 1, 2, ... until insmod
/// succeeds without a failure injected. Every failed insmod must leave no
/// module and no module BTF behind; kmemleak must find nothing new.
fn fail_nth(path: &Path) -> Result<()> {
    let before = leaks()?;
    let mark = kernel_log::Mark::here()?;
    unload("initial")?;
    let knobs = FaultKnobs::set()?;
    // Read from tmpfs: insmod of a file on the guest's 9p root goes through
    // netfs, whose unbuffered read drops a request twice when one of its
    // allocations fails (6.12: refcount_t underflow in netfs_put_request).
    let copy = scratch("task_kfuncs-failnth");
    fs::copy(path, &copy)
        .with_context(|| format!("copying {} to {}", path.display(), copy.display()))?;
    let ko = File::open(&copy).with_context(|| format!("opening {}", copy.display()))?;
    let _ = fs::remove_file(&copy);
    let (mut failed, mut absorbed) = (0u32, 0u32);
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
            unload(&format!("k = {k}"))?;
            if !injected {
                break;
            }
            absorbed += 1;
        } else {
            if !injected {
                bail!("insmod failed with no failure injected (k = {k}): {err}");
            }
            failed += 1;
            if module::is_loaded() || btf_path().exists() {
                bail!(
                    "k = {k}: insmod failed ({err}) but left /sys/module/{0} or \
                     /sys/kernel/btf/{0} behind",
                    module::NAME
                );
            }
        }
        k += 1;
    }
    println!(
        "# fail-nth: insmod makes {} fault-injectable calls; {failed} failed insmods, {absorbed} \
         failures absorbed, {:.1} s",
        k - 1,
        start.elapsed().as_secs_f64()
    );
    drop(knobs);
    log_clean(mark)?;
    no_new_leaks(before)
}

/// Runs objcopy (LLVM's or GNU's) with `args`.
fn objcopy(args: &[&str]) -> Result<()> {
    for tool in ["llvm-objcopy-19", "llvm-objcopy", "objcopy"] {
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
    bail!("no objcopy found (install llvm-19 or binutils)")
}

/// insmod of `ko` must fail with `errno` and log `message`.
fn refused(ko: &Path, errno: i32, message: &str) -> Result<()> {
    unload("initial")?;
    let mut mark = kernel_log::Mark::here()?;
    match module::insmod(ko) {
        Ok(()) => {
            let _ = module::rmmod_waiting(UNLOAD_GRACE);
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
    if module::is_loaded() || btf_path().exists() {
        bail!("the refused module left /sys/module or /sys/kernel/btf entries");
    }
    Ok(())
}

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{name}-{}.ko", process::id()))
}

/// The module with its .BTF section removed refuses to load.
fn refused_without_btf(path: &Path) -> Result<()> {
    let ko = scratch("task_kfuncs-nobtf");
    let ko_str = ko.to_string_lossy();
    objcopy(&["--remove-section=.BTF", &path.to_string_lossy(), &ko_str])?;
    let result = refused(&ko, libc::ENOENT, "task_kfuncs: the module has no BTF");
    let _ = fs::remove_file(&ko);
    result
}

/// The module whose kfunc id set was never filled in (its .BTF_ids zeroed,
/// as if resolve_btfids had not run) refuses to load.
fn refused_empty_set(path: &Path) -> Result<()> {
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
