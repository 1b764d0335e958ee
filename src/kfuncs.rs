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
use crate::btf_ids::*;
use crate::rcu;
use core::ptr::{self, addr_of_mut};
use kernel::error::to_result;
use kernel::prelude::*;

btf_kfunc_set! {
    /// The task kfuncs, with the contract the verifier enforces for each.
    pub(crate) static TASK_KFUNC_SET = {
        rust_task_acquire: KF_ACQUIRE | KF_TRUSTED_ARGS | KF_RET_NULL,
        rust_task_release: KF_RELEASE,
        rust_task_kptr_get: KF_ACQUIRE | KF_RCU | KF_RET_NULL,
        rust_task_from_pid: KF_ACQUIRE | KF_RET_NULL,
        rust_task_from_vpid: KF_ACQUIRE | KF_RET_NULL,
    };
}

/// The program types the set is registered for. Kprobes, socket filters and
/// the other types cannot call the kfuncs: the verifier rejects the call.
const PROG_TYPES: [bindings::bpf_prog_type; 3] = [
    bindings::bpf_prog_type_BPF_PROG_TYPE_TRACING,
    bindings::bpf_prog_type_BPF_PROG_TYPE_STRUCT_OPS,
    bindings::bpf_prog_type_BPF_PROG_TYPE_SYSCALL,
];

/// Registers [`TASK_KFUNC_SET`] for the program types in [`PROG_TYPES`].
///
/// Must be called from module init: kfunc sets cannot be unregistered, the
/// kernel drops them together with the module's BTF. If one registration
/// fails, init fails and the module (with whatever was registered) goes away.
pub(crate) fn register(module: &'static ThisModule) -> Result {
    let kset = bindings::btf_kfunc_id_set {
        owner: module.as_ptr(),
        set: TASK_KFUNC_SET.as_ptr().cast(),
        filter: None,
    };
    for prog_type in PROG_TYPES {
        // SAFETY: `kset` is valid for the call and the kernel keeps none of
        // it but `set` (and `filter`): `set` points into this module's
        // `.BTF_ids`, which lives as long as the module and so as long as the
        // module's BTF, where the kernel records the set.
        to_result(unsafe { bindings::register_btf_kfunc_id_set(prog_type, &kset) })?;
    }
    Ok(())
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

/// Acquires a reference on a trusted task.
///
/// Flags: `KF_ACQUIRE | KF_TRUSTED_ARGS | KF_RET_NULL`. `p` must be a trusted
/// pointer (a tracepoint or fentry argument, `bpf_get_current_task_btf()`,
/// a pointer walked from one, or a referenced kptr). Returns `p` with a
/// reference on `p->rcu_users`, or NULL if the task already dropped its last
/// one (it is exiting). The reference must be released with
/// [`rust_task_release`] (or `bpf_task_release()`), or stored in a map.
///
/// ```c
/// SEC("tp_btf/task_newtask")
/// int BPF_PROG(on_newtask, struct task_struct *task, u64 clone_flags)
/// {
///         struct task_struct *acquired = rust_task_acquire(task);
///
///         if (!acquired)
///                 return 0;
///         bpf_printk("new task %d", acquired->pid);
///         rust_task_release(acquired);
///         return 0;
/// }
/// ```
///
/// # Safety
///
/// Called by BPF programs only: the verifier guarantees `p` is trusted, so
/// its memory is valid for the call.
#[no_mangle]
pub(crate) unsafe extern "C" fn rust_task_acquire(p: *mut task_struct) -> *mut task_struct {
    // SAFETY: `p` is trusted (KF_TRUSTED_ARGS), so it points to a live task.
    unsafe { tryget_rcu_users(p) }
}

/// Releases a reference taken by one of the acquiring task kfuncs.
///
/// Flags: `KF_RELEASE`. Drops the reference exactly as the kernel's
/// `bpf_task_release()` and the task kptr destructor do, with
/// `put_task_struct_rcu_user()`: when `rcu_users` reaches zero the final put
/// of the task is deferred by an RCU grace period. The verifier rejects a
/// second release and any use of `p` afterwards.
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
    // SAFETY: `p` holds a reference on `rcu_users` owned by the caller
    // (KF_RELEASE), which `put_task_struct_rcu_user()` consumes.
    unsafe { bindings::put_task_struct_rcu_user(p) }
}

/// Acquires a reference on a task kptr read from a map value under RCU.
///
/// Flags: `KF_ACQUIRE | KF_RCU | KF_RET_NULL`. `p` may be an RCU-protected
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
/// Flags: `KF_ACQUIRE | KF_RET_NULL`. Looks `pid` up in `init_pid_ns` under
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
/// Flags: `KF_ACQUIRE | KF_RET_NULL`. Like [`rust_task_from_pid`], but
/// `vpid` is looked up in `task_active_pid_ns(current)`, the namespace the
/// current task sees: inside a container, `vpid` 1 is the container's init.
/// Returns NULL for any number without a task in that namespace, and when
/// the current task has no pid namespace any more: an exiting thread that
/// reaps itself detaches its `struct pid` in `exit_notify()` and then still
/// runs (its last `schedule()`, `sched_switch`), so `current` has no
/// namespace there. `find_vpid()` would pass that NULL namespace on to
/// `find_pid_ns()` and fault.
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
        // SAFETY: `current` is always a valid task. Its `thread_pid`
        // may be detached concurrently (by the task itself in
        // `exit_notify()`, or by the parent reaping it after its last
        // `schedule()`): `task_active_pid_ns()` reads it once and returns
        // NULL or the namespace of a `struct pid` that, like the namespace
        // it holds, is freed only after an RCU grace period, and we are
        // inside `task_from_nr`'s RCU read section.
        let ns = unsafe { bindings::task_active_pid_ns(bindings::task_kfuncs_get_current()) };
        if ns.is_null() {
            return ptr::null_mut();
        }
        // SAFETY: inside the RCU read section; `ns` is valid for it (above).
        unsafe { bindings::find_pid_ns(nr, ns) }
    })
}
