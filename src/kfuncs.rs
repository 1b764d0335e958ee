// SPDX-License-Identifier: GPL-2.0

//! The task kfuncs and their BTF id set.
//!
//! Every reference these kfuncs hand out is a count on `task->rcu_users`,
//! the counter behind the kernel's own `bpf_task_acquire()`,
//! `bpf_task_release()` and the `struct task_struct __kptr` map destructor
//! (`put_task_struct_rcu_user()`). References are therefore interchangeable
//! with the kernel's: a program may acquire with one family and release with
//! the other. When `rcu_users` drops to zero the task's memory is freed only
//! after an RCU grace period, which is what makes a try-get on an
//! RCU-protected pointer safe. The model is written out once in
//! `docs/refcount-rcu.md`.
//!
//! C header: [include/linux/sched/task.h](srctree/include/linux/sched/task.h)

use crate::bindings::{self, task_struct};
use crate::kfunc_btf::*;
use crate::nmi;
#[cfg(kernel_6_12)]
use crate::rcu;
#[cfg(not(kernel_6_12))]
use kernel::sync::rcu;
use core::ptr::{self, addr_of_mut};
use kernel::error::code::EACCES;
use kernel::prelude::*;

btf_kfunc_set! {
    /// The task kfuncs, with the contract the verifier enforces for each.
    pub(crate) static TASK_KFUNC_SET = {
        rust_task_acquire: KF_ACQUIRE | KF_RCU | KF_RET_NULL,
        rust_task_release: KF_RELEASE,
        rust_task_kptr_get: KF_ACQUIRE | KF_RCU | KF_RET_NULL,
        rust_task_from_pid: KF_ACQUIRE | KF_RET_NULL,
        rust_task_from_vpid: KF_ACQUIRE | KF_RET_NULL,
    };
}

/// The kfunc hooks the set is registered for (`register_btf_kfunc_id_set()`
/// maps a program type to a hook, `bpf_prog_type_to_kfunc_hook()` in
/// kernel/bpf/btf.c). The TRACING hook also serves TRACEPOINT, PERF_EVENT
/// and LSM programs, and from 7.x on RAW_TRACEPOINT; [`prog_type_filter`]
/// narrows it to [`ADMITTED`].
const HOOKS: [bindings::bpf_prog_type; 3] = [
    bindings::bpf_prog_type_BPF_PROG_TYPE_TRACING,
    bindings::bpf_prog_type_BPF_PROG_TYPE_STRUCT_OPS,
    bindings::bpf_prog_type_BPF_PROG_TYPE_SYSCALL,
];

/// The program types that may call the kfuncs: tracing (fentry, fexit,
/// fmod_ret, tp_btf, iter), classic and raw tracepoints (raw_tp reaches the
/// hook on 7.x only; its arguments are untrusted scalars, so it can use
/// from_pid, from_vpid and what it gets from them or from
/// `bpf_get_current_task_btf()`, as with the kernel's C task kfuncs there),
/// LSM, struct_ops (sched_ext) and syscall programs. Everything else is
/// refused, in particular PERF_EVENT, whose every run is in NMI: the kfuncs
/// are NMI-safe, but the kernel's task kptr destructor that their
/// references reach through maps is not (docs/program-types.md). Kprobes,
/// socket filters, XDP, TC and the other types use hooks the set is not
/// registered for.
const ADMITTED: [bindings::bpf_prog_type; 6] = [
    bindings::bpf_prog_type_BPF_PROG_TYPE_TRACING,
    bindings::bpf_prog_type_BPF_PROG_TYPE_TRACEPOINT,
    bindings::bpf_prog_type_BPF_PROG_TYPE_RAW_TRACEPOINT,
    bindings::bpf_prog_type_BPF_PROG_TYPE_LSM,
    bindings::bpf_prog_type_BPF_PROG_TYPE_STRUCT_OPS,
    bindings::bpf_prog_type_BPF_PROG_TYPE_SYSCALL,
];

/// The set's `btf_kfunc_filter_t`: 0 if `prog` may call the kfunc, else
/// `-EACCES`, which the verifier reports as "calling kernel function NAME is
/// not allowed".
///
/// The kernel calls it for every kfunc looked up in this module's BTF under
/// one of [`HOOKS`]; [`TASK_KFUNC_SET`] is the only set there, so the kfunc
/// id needs no check. The type is the one the program runs as: an extension
/// (freplace) program counts as the type of the program it replaces.
///
/// # Safety
///
/// Called by the verifier with a valid `prog`.
unsafe extern "C" fn prog_type_filter(prog: *const bindings::bpf_prog, _kfunc_id: u32) -> i32 {
    // SAFETY: `prog` is the program under verification, valid for the call.
    let prog_type = unsafe { prog_type(prog) };
    if ADMITTED.contains(&prog_type) {
        0
    } else {
        EACCES.to_errno()
    }
}

/// Registers [`TASK_KFUNC_SET`] with [`prog_type_filter`] for [`HOOKS`].
///
/// Must be called from module init (see [`BtfKfuncSet::register`], which
/// also refuses a module built without the kfuncs' BTF, saying how to fix
/// the build).
pub(crate) fn register(module: &'static ThisModule) -> Result {
    TASK_KFUNC_SET.register(module, &HOOKS, Some(prog_type_filter))
}

/// Takes a reference on `p->rcu_users` unless the count already hit zero.
///
/// Returns `p` with a new reference, or NULL when the task is past its last
/// `rcu_users` put (it is exiting and will be freed after a grace period).
///
/// # Safety
///
/// `p` must point to a `task_struct` whose memory stays valid for the call:
/// a pointer the verifier trusts, or one loaded inside an RCU read-side
/// critical section that is still open.
unsafe fn tryget_rcu_users(p: *mut task_struct) -> *mut task_struct {
    // SAFETY: `p` points to a live `task_struct` by the caller's contract;
    // this only computes a field address. The build checks that bindgen's
    // offset of `rcu_users` is C's (`bindings.rs`).
    let rcu_users = unsafe { addr_of_mut!((*p).rcu_users) };
    // SAFETY: `rcu_users` points into that live task, and refcount
    // operations are atomic.
    let taken = unsafe { bindings::task_kfuncs_refcount_inc_not_zero(rcu_users) };
    if taken {
        p
    } else {
        ptr::null_mut()
    }
}

/// Looks a task up with `find` under RCU and takes a reference on it.
///
/// `find` maps `nr` to a `struct pid` (or NULL); it runs inside the RCU read
/// section that `find_pid_ns()` and `pid_task()` require. Non-positive
/// numbers never name a task and return NULL without a lookup.
fn task_from_nr(nr: i32, find: impl FnOnce(i32) -> *mut bindings::pid) -> *mut task_struct {
    if nr <= 0 {
        return ptr::null_mut();
    }
    // 6.12: `crate::rcu::Guard`; 7.3: the kernel crate's `kernel::sync::rcu::Guard`.
    let _rcu = rcu::Guard::new();
    let pid = find(nr);
    if pid.is_null() {
        // `pid_task()` would return NULL too; C's `find_task_by_pid_ns()`
        // inlines it, so skipping the call keeps a miss as cheap as in C.
        return ptr::null_mut();
    }
    // SAFETY: we are inside an RCU read section; `pid_task()` returns NULL
    // or a task whose memory is valid until the section ends.
    let task = unsafe { bindings::pid_task(pid, bindings::pid_type_PIDTYPE_PID) };
    if task.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: `task` was found under the RCU read section held by `_rcu`.
    unsafe { tryget_rcu_users(task) }
}

/// Acquires a reference on a trusted or RCU-protected task.
///
/// [`TASK_KFUNC_SET`] gives it exactly the flags of the kernel's
/// `bpf_task_acquire()`, so a program ports from one to the other by renaming
/// alone. `p` must be trusted (a tracepoint, fentry or struct_ops argument,
/// `bpf_get_current_task_btf()`, a referenced kptr) or RCU-protected (a
/// pointer the verifier marks MEM_RCU, such as `task->group_leader` or a
/// `__kptr` loaded inside `bpf_rcu_read_lock()`). Returns `p` with a
/// reference on `p->rcu_users`, or NULL if the task already dropped its last
/// one (it is exiting). The memory behind an RCU pointer is valid even then:
/// the last put frees the task only after an RCU grace period, which cannot
/// end while the program's read section is open. The reference must be
/// released with [`rust_task_release`] (or `bpf_task_release()`), or stored
/// in a map. Cases: `acquire_release_*`, `acquire_rcu_walked`,
/// `acquire_rcu_kptr` in bpf-tests.
///
/// ```c
/// SEC("tp_btf/task_newtask")
/// int BPF_PROG(on_newtask, struct task_struct *task, u64 clone_flags)
/// {
///         struct task_struct *leader = rust_task_acquire(task->group_leader);
///
///         if (!leader)
///                 return 0;
///         bpf_printk("new task in the group of %d", leader->pid);
///         rust_task_release(leader);
///         return 0;
/// }
/// ```
///
/// # Safety
///
/// Called by BPF programs only: the verifier guarantees `p` is trusted or
/// RCU-protected inside an open RCU read section, so its memory is valid for
/// the call.
#[no_mangle]
pub(crate) unsafe extern "C" fn rust_task_acquire(p: *mut task_struct) -> *mut task_struct {
    // SAFETY: `p` is trusted or RCU-protected (KF_RCU), so its memory is
    // valid even if `rcu_users` is already zero.
    unsafe { tryget_rcu_users(p) }
}

/// Releases a reference taken by one of the acquiring task kfuncs.
///
/// Drops the reference as the kernel's `bpf_task_release()` does, with
/// `put_task_struct_rcu_user()`: when `rcu_users` reaches zero the final put
/// of the task is deferred by an RCU grace period, through `call_rcu()`. In
/// NMI context, where `call_rcu()` is illegal, a reference that is not the
/// last is dropped at once and the last one is put by an irq_work right
/// after the NMI ([`nmi`]); outside NMI the release is that one call. The
/// verifier rejects a second release and any use of `p` afterwards.
///
/// ```c
/// struct task_struct *t = rust_task_from_pid(pid);
///
/// if (t)
///         rust_task_release(t);
/// ```
///
/// # Safety
///
/// Called by BPF programs only: the verifier guarantees `p` carries a
/// reference that the program owns and gives up here.
#[no_mangle]
pub(crate) unsafe extern "C" fn rust_task_release(p: *mut task_struct) {
    // SAFETY: reads this CPU's preempt count; callable in any context.
    if unsafe { bindings::task_kfuncs_in_nmi() } {
        // SAFETY: `p` holds a reference owned by the caller (KF_RELEASE); the
        // kfuncs are registered only after `nmi::init()`.
        unsafe { nmi::put_rcu_user(p) };
        return;
    }
    // SAFETY: `p` holds a reference on `rcu_users` owned by the caller
    // (KF_RELEASE), which `put_task_struct_rcu_user()` consumes; outside NMI
    // its `call_rcu()` is legal.
    unsafe { bindings::put_task_struct_rcu_user(p) }
}

/// Acquires a reference on a task kptr read from a map value under RCU.
///
/// The same flags and contract as [`rust_task_acquire`]; the name is the one the map-kptr case has had since
/// the first version of this API. `p` may be an RCU-protected
/// pointer: a `struct task_struct __kptr` loaded from a map value inside
/// `bpf_rcu_read_lock()` (or trusted). Returns `p` with a new reference, or
/// NULL if a concurrent `bpf_kptr_xchg()` and release already dropped the
/// last one. The memory behind `p` is still valid then, because the last put
/// frees the task only after an RCU grace period, which cannot end while the
/// program's read section is open.
///
/// ```c
/// bpf_rcu_read_lock();
/// t = v->task;
/// if (t)
///         t = rust_task_kptr_get(t);
/// bpf_rcu_read_unlock();
/// if (t)
///         rust_task_release(t);
/// ```
///
/// # Safety
///
/// Called by BPF programs only: the verifier guarantees `p` is trusted or
/// RCU-protected inside an open RCU read section.
#[no_mangle]
pub(crate) unsafe extern "C" fn rust_task_kptr_get(p: *mut task_struct) -> *mut task_struct {
    // SAFETY: `p` is trusted or protected by the caller's RCU read section
    // (KF_RCU), so its memory is valid even if `rcu_users` is already zero.
    unsafe { tryget_rcu_users(p) }
}

/// Finds a task by pid in the initial pid namespace and acquires it.
///
/// Looks `pid` up in `init_pid_ns` under
/// RCU, like `bpf_task_from_pid()`. Returns the task with a reference, or
/// NULL for any pid without a task (negative, zero, above `pid_max`, or an
/// exiting task).
///
/// ```c
/// struct task_struct *t = rust_task_from_pid(pid);
///
/// if (!t)
///         return 0;
/// found_pid = t->pid;
/// rust_task_release(t);
/// ```
///
/// # Safety
///
/// None beyond the kfunc contract: any `pid` is accepted. `unsafe` because
/// BPF programs are its callers.
#[no_mangle]
pub(crate) unsafe extern "C" fn rust_task_from_pid(pid: i32) -> *mut task_struct {
    task_from_nr(pid, |nr| {
        // SAFETY: called inside the RCU read section of `task_from_nr`;
        // `init_pid_ns` is a static object that is never freed.
        unsafe { bindings::find_pid_ns(nr, addr_of_mut!(bindings::init_pid_ns)) }
    })
}

/// Finds a task by pid in the caller's pid namespace and acquires it.
///
/// Like [`rust_task_from_pid`], with its flags, but
/// `vpid` is looked up in `task_active_pid_ns(current)`, the namespace the
/// current task sees: inside a container, `vpid` 1 is the container's init.
/// Returns NULL for any number without a task in that namespace, and when
/// the current task has no pid namespace any more: an exiting thread that
/// reaps itself detaches its `struct pid` in `exit_notify()` and then still
/// runs (its last `schedule()`, `sched_switch`), so `current` has no
/// namespace there. `find_vpid()` would pass that NULL namespace on to
/// `find_pid_ns()` and fault (the regression case is
/// `from_vpid_exiting_threads` in bpf-tests).
///
/// ```c
/// SEC("syscall")
/// int lookup(void *ctx)
/// {
///         struct task_struct *t = rust_task_from_vpid(vpid);
///
///         if (t) {
///                 found_tgid = t->tgid;
///                 rust_task_release(t);
///         }
///         return 0;
/// }
/// ```
///
/// # Safety
///
/// None beyond the kfunc contract: any `vpid` is accepted, in any context
/// the program types admit. `unsafe` because BPF programs are its callers.
#[no_mangle]
pub(crate) unsafe extern "C" fn rust_task_from_vpid(vpid: i32) -> *mut task_struct {
    task_from_nr(vpid, |nr| {
        let ns = current_pid_ns();
        if ns.is_null() {
            return ptr::null_mut();
        }
        // SAFETY: inside the RCU read section; `ns` is valid for it (see
        // `current_pid_ns`).
        unsafe { bindings::find_pid_ns(nr, ns) }
    })
}

/// `task_active_pid_ns(current)`: the current task's pid namespace, or NULL
/// once its `struct pid` is detached.
///
/// `current` is always a valid task. Its `thread_pid` becomes NULL when the
/// task is unhashed (`release_task()` -> `__unhash_process()` ->
/// `detach_pid()`): before its last `schedule()` for a thread that reaps
/// itself in `exit_notify()`, possibly during it when another task reaps a
/// zombie (the parent's `wait()`, the last thread releasing its group
/// leader). `free_pid()` drops the pid's initial reference through
/// `call_rcu()`, so when called inside an RCU read section the namespace
/// returned (a reference the pid holds) outlives that section.
#[cfg(kernel_6_12)]
fn current_pid_ns() -> *mut bindings::pid_namespace {
    // SAFETY: the helper is `task_active_pid_ns(current)`'s body (6.12's
    // kernel crate has no abstraction for it): it reads `thread_pid` (a plain
    // load that may race `release_task()`, as in the kernel's own function)
    // and returns NULL or that `struct pid`'s namespace.
    unsafe { bindings::task_kfuncs_active_pid_ns() }
}

/// See the 6.12 version: on 7.3 the kernel crate's
/// `CurrentTask::active_pid_ns()`, which returns `None` for the detached case.
#[cfg(not(kernel_6_12))]
fn current_pid_ns() -> *mut bindings::pid_namespace {
    kernel::current!()
        .active_pid_ns()
        .map_or(ptr::null_mut(), |ns| ns.as_ptr())
}
