// SPDX-License-Identifier: GPL-2.0

//! A sample of Rust kfuncs built with the rust-kfuncs toolkit.
//!
//! One kfunc per argument shape that kfuncs in the kernel use: scalars of every width, memory with
//! a `__sz`/`__szk` size and an optional (`__opt`, 7.x: `__nullable`) pointer, a pointer to a
//! scalar, a constant string (`__str`), an enum, trusted (nullable) and RCU struct pointers, and a
//! sleepable kfunc. And a refcounted object type of the module's own, [`kfunc_sample_obj`], with
//! kfuncs that create, acquire and release it (pointer returns, `KF_ACQUIRE` / `KF_RELEASE`) and a
//! map destructor, so that BPF programs can keep one in a map as a `__kptr`. The set is registered
//! for tracing and syscall programs behind a filter that keeps out the program types sharing the
//! tracing hook. `bpf-tests/progs/kfunc_sample.bpf.c` calls every kfunc in the guest.
//!
//! The module uses the toolkit exactly as an outside module would: the macro file is mounted
//! below, and `Kbuild` has one `include` line.
//!
//! C header: [include/linux/btf.h](srctree/include/linux/btf.h)

use core::cell::UnsafeCell;
use core::ffi::{c_char, c_int, c_void, CStr};
use core::ptr;
use core::sync::atomic::{AtomicBool, Ordering};
use kernel::bindings;
use kernel::prelude::*;
use kernel::types::Opaque;

#[path = "../../rust-kfuncs/kfunc_btf.rs"]
mod kfunc_btf;

use kfunc_btf::*;

// No `author`: it is optional, and 6.12 (`author: ".."`) and 7.x (`authors: [..]`) spell it
// differently; without it the sample builds unchanged, with only its Kbuild's two lines, on both.
module! {
    type: KfuncSample,
    name: "kfunc_sample",
    description: "Sample Rust kfuncs built with the rust-kfuncs toolkit",
    license: "GPL",
}

btf_kfunc_set! {
    /// Every sample kfunc, with the contract the verifier enforces for it.
    pub(crate) static KFUNC_SAMPLE_SET = {
        kfunc_sample_add_unsigned: 0,
        kfunc_sample_add_signed: 0,
        kfunc_sample_not: 0,
        kfunc_sample_mem_sum: 0,
        kfunc_sample_mem_fill: 0,
        kfunc_sample_store: 0,
        kfunc_sample_strlen: 0,
        kfunc_sample_apply: 0,
        kfunc_sample_task_pid: KF_TRUSTED,
        kfunc_sample_task_tgid: KF_RCU,
        kfunc_sample_sleep: KF_SLEEPABLE,
        kfunc_sample_obj_new: KF_ACQUIRE | KF_RET_NULL,
        kfunc_sample_obj_acquire: KF_ACQUIRE | KF_TRUSTED,
        kfunc_sample_obj_release: KF_RELEASE,
        kfunc_sample_obj_live: 0,
    };
}

btf_dtor_list! {
    /// What a map calls on a [`kfunc_sample_obj`] it still holds when the value goes away.
    pub(crate) static KFUNC_SAMPLE_DTORS = {
        kfunc_sample_obj: kfunc_sample_obj_release,
    };
}

/// Adds one unsigned scalar of each width: `u8 + u16 + u32 + u64`, wrapping.
///
/// Each argument is the low bytes of its register only: a program that passes 0x1ff as `a`
/// adds 0xff.
#[no_mangle]
pub(crate) extern "C" fn kfunc_sample_add_unsigned(a: KfuncU8, b: KfuncU16, c: u32, d: u64) -> u64 {
    u64::from(a.get())
        .wrapping_add(u64::from(b.get()))
        .wrapping_add(u64::from(c))
        .wrapping_add(d)
}

/// Adds one signed scalar of each width: `s8 + s16 + s32 + s64`, wrapping.
#[no_mangle]
pub(crate) extern "C" fn kfunc_sample_add_signed(a: KfuncI8, b: KfuncI16, c: i32, d: i64) -> i64 {
    i64::from(a.get())
        .wrapping_add(i64::from(b.get()))
        .wrapping_add(i64::from(c))
        .wrapping_add(d)
}

/// Returns `!b`, for a `bool` argument: true when its low byte is not zero.
#[no_mangle]
pub(crate) extern "C" fn kfunc_sample_not(b: KfuncBool) -> bool {
    !b.get()
}

/// Sums the bytes of `mem`, or returns 0 when `mem` is NULL.
///
/// The NULL-able memory argument's suffix is the line's: `__opt` on 6.12, `__nullable` from 7.x
/// on (which dropped `__opt`), so the parameter's name depends on the line.
///
/// # Safety
///
/// Called by BPF programs only: the verifier checks that `mem` is NULL or readable for
/// `mem__sz` bytes.
#[cfg(kernel_6_12)]
#[no_mangle]
#[allow(non_snake_case)]
pub(crate) unsafe extern "C" fn kfunc_sample_mem_sum(mem__opt: *const c_void, mem__sz: u32) -> u64 {
    // SAFETY: as for this function.
    unsafe { mem_sum(mem__opt, mem__sz) }
}

/// See the 6.12 version.
///
/// # Safety
///
/// Called by BPF programs only: the verifier checks that `mem` is NULL or readable for
/// `mem__sz` bytes.
#[cfg(not(kernel_6_12))]
#[no_mangle]
#[allow(non_snake_case)]
pub(crate) unsafe extern "C" fn kfunc_sample_mem_sum(
    mem__nullable: *const c_void,
    mem__sz: u32,
) -> u64 {
    // SAFETY: as for this function.
    unsafe { mem_sum(mem__nullable, mem__sz) }
}

/// The sum of `len` bytes at `mem`, 0 for NULL.
///
/// # Safety
///
/// `mem` is NULL or readable for `len` bytes.
#[inline(always)]
unsafe fn mem_sum(mem: *const c_void, len: u32) -> u64 {
    if mem.is_null() {
        return 0;
    }
    // SAFETY: `mem` is readable for `len` bytes (the caller's contract), and BPF memory has no
    // alignment requirement for bytes.
    let bytes = unsafe { core::slice::from_raw_parts(mem.cast::<u8>(), len as usize) };
    bytes.iter().map(|&b| u64::from(b)).sum()
}

/// Fills `mem__szk` bytes of `mem` with `byte`; the size must be a constant (`__szk`).
///
/// # Safety
///
/// Called by BPF programs only: the verifier checks that `mem` is writable for `mem__szk`
/// bytes, a constant.
#[no_mangle]
#[allow(non_snake_case)]
pub(crate) unsafe extern "C" fn kfunc_sample_mem_fill(
    mem: *mut c_void,
    mem__szk: u32,
    byte: KfuncU8,
) {
    // SAFETY: `mem` is writable for `mem__szk` bytes (verifier, `__szk`).
    unsafe { core::ptr::write_bytes(mem.cast::<u8>(), byte.get(), mem__szk as usize) };
}

/// Stores `value` at `dst`, a pointer to a scalar.
///
/// # Safety
///
/// Called by BPF programs only: the verifier checks that `dst` is readable and writable for
/// 8 bytes. BPF stack and map memory need not be 8-byte aligned, hence the unaligned write.
#[no_mangle]
pub(crate) unsafe extern "C" fn kfunc_sample_store(dst: *mut u64, value: u64) {
    // SAFETY: `dst` is valid for 8 bytes (see above).
    unsafe { dst.write_unaligned(value) };
}

/// Returns the length of a constant string (`__str`) the program passes.
///
/// # Safety
///
/// Called by BPF programs only: for `__str` the verifier requires a pointer into a read-only
/// map (the program's `.rodata`) at a constant offset, with a NUL byte before the end of the
/// value.
#[no_mangle]
#[allow(non_snake_case)]
pub(crate) unsafe extern "C" fn kfunc_sample_strlen(s__str: *const c_char) -> u32 {
    // SAFETY: `s__str` is a NUL-terminated string that stays mapped for the call (see above).
    let s = unsafe { CStr::from_ptr(s__str) };
    s.to_bytes().len() as u32
}

/// What [`kfunc_sample_apply`] does with its operand; the names are the C enum's.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum kfunc_sample_op {
    /// `2 * x`.
    KFUNC_SAMPLE_DOUBLE = 1,
    /// `-x`.
    KFUNC_SAMPLE_NEGATE = 2,
}

impl TryFrom<u32> for kfunc_sample_op {
    type Error = ();

    fn try_from(v: u32) -> Result<Self, ()> {
        match v {
            1 => Ok(Self::KFUNC_SAMPLE_DOUBLE),
            2 => Ok(Self::KFUNC_SAMPLE_NEGATE),
            _ => Err(()),
        }
    }
}

/// Applies `op` to `x`, wrapping; an `op` that is no `enum kfunc_sample_op` value gives 0.
#[no_mangle]
pub(crate) extern "C" fn kfunc_sample_apply(op: KfuncEnum<kfunc_sample_op>, x: i64) -> i64 {
    match op.get() {
        Some(kfunc_sample_op::KFUNC_SAMPLE_DOUBLE) => x.wrapping_mul(2),
        Some(kfunc_sample_op::KFUNC_SAMPLE_NEGATE) => x.wrapping_neg(),
        None => 0,
    }
}

/// Returns the global pid of a trusted task, or -1 for NULL (`__nullable`).
///
/// # Safety
///
/// Called by BPF programs only: the set's flags make the verifier pass NULL or a trusted pointer,
/// so a non-NULL task's memory is valid for the call.
#[no_mangle]
#[allow(non_snake_case)]
pub(crate) unsafe extern "C" fn kfunc_sample_task_pid(
    task__nullable: *mut bindings::task_struct,
) -> c_int {
    if task__nullable.is_null() {
        return -1;
    }
    // SAFETY: the task is trusted, so valid for the call; `init_pid_ns` is static. The function
    // takes its own RCU read lock and copes with a task whose pid is already detached (0).
    unsafe {
        bindings::__task_pid_nr_ns(
            task__nullable,
            bindings::pid_type_PIDTYPE_PID,
            core::ptr::addr_of_mut!(bindings::init_pid_ns),
        )
    }
}

/// Returns the global thread-group id of a task that may be an RCU-protected pointer; an exiting
/// task gives 0.
///
/// # Safety
///
/// Called by BPF programs only: the set's flags make the verifier pass a trusted pointer, or an
/// RCU-protected one inside the program's RCU read section, so its memory is valid for the call.
#[no_mangle]
pub(crate) unsafe extern "C" fn kfunc_sample_task_tgid(task: *mut bindings::task_struct) -> c_int {
    // SAFETY: see `kfunc_sample_task_pid`; RCU keeps `task` valid for the call.
    unsafe {
        bindings::__task_pid_nr_ns(
            task,
            bindings::pid_type_PIDTYPE_TGID,
            core::ptr::addr_of_mut!(bindings::init_pid_ns),
        )
    }
}

/// The longest [`kfunc_sample_sleep`] sleeps, in milliseconds.
const SLEEP_MAX_MS: u32 = 10;

/// Sleeps for `ms` milliseconds (at most 10) and returns how long it asked to sleep; only
/// sleepable programs (e.g. `SEC("syscall")`) may call it.
#[no_mangle]
pub(crate) extern "C" fn kfunc_sample_sleep(ms: u32) -> u32 {
    let ms = ms.min(SLEEP_MAX_MS);
    // SAFETY: `msleep()` may be called from any context that may sleep, which the set's
    // KF_SLEEPABLE guarantees.
    unsafe { bindings::msleep(ms) };
    ms
}

/// How many [`kfunc_sample_obj`]s can exist at once: [`kfunc_sample_obj_new`] returns NULL when
/// all are taken.
const OBJ_POOL: usize = 16;

/// A refcounted object of the module's own: BPF programs create one with
/// [`kfunc_sample_obj_new`], take more references with [`kfunc_sample_obj_acquire`], drop them
/// with [`kfunc_sample_obj_release`], and may keep one in a map as a `__kptr`, whose destructor
/// ([`KFUNC_SAMPLE_DTORS`]) drops the reference a map still holds. btfgen writes the struct into
/// the module's BTF, where BPF finds it by name: programs read `value` directly.
///
/// The objects live in a static pool, so that taking and freeing one needs neither a lock nor an
/// allocation: the kfuncs, and the destructor, run in whatever context a program or a map update
/// runs in, NMI included, where neither `kmalloc()` nor `call_rcu()` may be called. A slot is
/// free while `in_use` is false.
#[repr(C)]
pub(crate) struct kfunc_sample_obj {
    /// What the creator passed to [`kfunc_sample_obj_new`]; set before the object is handed out.
    value: UnsafeCell<u64>,
    /// The references programs and maps hold; the last release frees the slot.
    refs: Opaque<bindings::refcount_t>,
    /// Whether the slot holds an object.
    in_use: AtomicBool,
}

// SAFETY: `value` and `refs` are written without synchronisation only by the one caller of
// `kfunc_sample_obj_new` that took the slot (the compare-exchange on `in_use`), before it hands the
// object out; afterwards `refs` changes only through the kernel's atomic refcount operations and
// `in_use` is atomic.
unsafe impl Sync for kfunc_sample_obj {}

impl kfunc_sample_obj {
    /// A free slot.
    const fn free() -> Self {
        Self {
            value: UnsafeCell::new(0),
            refs: Opaque::new(bindings::refcount_t {
                refs: bindings::atomic_t { counter: 0 },
            }),
            in_use: AtomicBool::new(false),
        }
    }
}

/// The objects.
static OBJS: [kfunc_sample_obj; OBJ_POOL] = [const { kfunc_sample_obj::free() }; OBJ_POOL];

/// Creates an object holding `value`, with one reference for the caller, or returns NULL when
/// all [`OBJ_POOL`] objects exist.
#[no_mangle]
pub(crate) extern "C" fn kfunc_sample_obj_new(value: u64) -> *mut kfunc_sample_obj {
    for obj in &OBJS {
        if obj
            .in_use
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            continue;
        }
        // SAFETY: the slot is this caller's alone until the object is returned (the exchange
        // above, which orders these writes after the previous owner's last release): no one
        // else writes `value` or `refs` meanwhile.
        unsafe {
            obj.value.get().write(value);
            obj.refs.get().write(bindings::REFCOUNT_INIT(1));
        }
        return ptr::from_ref(obj).cast_mut();
    }
    ptr::null_mut()
}

/// Takes another reference on `obj` and returns it.
///
/// # Safety
///
/// Called by BPF programs only: the set's flags make the verifier pass a trusted pointer to a
/// `kfunc_sample_obj`, which only [`kfunc_sample_obj_new`], this function and `bpf_kptr_xchg()`
/// hand out, each with a reference the program holds: the object exists and `refs` is at least 1.
#[no_mangle]
pub(crate) unsafe extern "C" fn kfunc_sample_obj_acquire(
    obj: *mut kfunc_sample_obj,
) -> *mut kfunc_sample_obj {
    // SAFETY: `obj` is a live object (see above); `refcount_inc()` is atomic.
    unsafe { bindings::refcount_inc((*obj).refs.get()) };
    obj
}

/// Drops a reference on `obj`; the last one frees the object. Also the map destructor.
///
/// Safe in any context (NMI included): an atomic decrement, and an atomic store on the last one.
///
/// # Safety
///
/// `obj` is NULL or a live object on which the caller gives up one reference: the set's
/// `KF_RELEASE` makes the verifier pass a pointer the program holds a reference on, and a map
/// calls its destructor with the reference it held.
#[no_mangle]
pub(crate) unsafe extern "C" fn kfunc_sample_obj_release(obj: *mut kfunc_sample_obj) {
    if obj.is_null() {
        return;
    }
    // SAFETY: `obj` is live and the caller's reference keeps it so until this decrement.
    if unsafe { bindings::refcount_dec_and_test((*obj).refs.get()) } {
        // SAFETY: `obj` is one of `OBJS`, static; with the last reference gone nothing else
        // touches it until a creator takes the slot again, which this store allows.
        unsafe { (*obj).in_use.store(false, Ordering::Release) };
    }
}

/// Returns how many objects exist: references programs or maps still hold keep one alive.
#[no_mangle]
pub(crate) extern "C" fn kfunc_sample_obj_live() -> u32 {
    OBJS.iter()
        .filter(|obj| obj.in_use.load(Ordering::Relaxed))
        .count() as u32
}

/// The set's filter: of the program types sharing the tracing kfunc hook, only `TRACING` (fentry,
/// fexit, tp_btf, ...) may call the sample kfuncs; `TRACEPOINT`, `PERF_EVENT` and `LSM` may not.
///
/// # Safety
///
/// Called by the verifier with a valid `prog`.
unsafe extern "C" fn kfunc_sample_filter(prog: *const bindings::bpf_prog, _kfunc_id: u32) -> c_int {
    // SAFETY: the verifier passes the program it is verifying, valid for the call.
    let prog_type = unsafe { kfunc_btf::prog_type(prog) };
    match prog_type {
        bindings::bpf_prog_type_BPF_PROG_TYPE_TRACING
        | bindings::bpf_prog_type_BPF_PROG_TYPE_SYSCALL => 0,
        _ => -(bindings::EACCES as c_int),
    }
}

/// The loaded module; registrations go away with it.
struct KfuncSample;

impl kernel::Module for KfuncSample {
    fn init(module: &'static ThisModule) -> Result<Self> {
        KFUNC_SAMPLE_SET.register(
            module,
            &[
                bindings::bpf_prog_type_BPF_PROG_TYPE_TRACING,
                bindings::bpf_prog_type_BPF_PROG_TYPE_SYSCALL,
            ],
            Some(kfunc_sample_filter),
        )?;
        KFUNC_SAMPLE_DTORS.register(module)?;
        pr_info!("{} sample kfuncs registered\n", KFUNC_SAMPLE_SET.len());
        Ok(KfuncSample)
    }
}

impl Drop for KfuncSample {
    fn drop(&mut self) {
        // A map holding an object holds the module, and a program cannot end holding a
        // reference: an object alive now is a reference lost, which the test suite must see.
        let live = kfunc_sample_obj_live();
        if live != 0 {
            pr_err!(
                "BUG: {} kfunc_sample_obj objects still referenced at unload\n",
                live
            );
        }
    }
}
