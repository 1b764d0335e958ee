// SPDX-License-Identifier: GPL-2.0

//! The last `rcu_users` put of a task released in NMI context, deferred to
//! an irq_work.
//!
//! `put_task_struct_rcu_user()` frees the task after an RCU grace period by
//! calling `call_rcu()`, which must not be called from an NMI handler
//! (Documentation/RCU/Design/Requirements/Requirements.rst). A tracing
//! program can run in NMI (`tp_btf/nmi_handler`, an fentry on a function
//! the NMI path calls), so [`rust_task_release`] must not make the last put
//! there. In NMI it drops a reference that is not the last with
//! `refcount_dec_not_one()`, which never frees; the last one it hands to
//! [`put_deferred`], which keeps the task on a lock-free list without
//! allocating and raises an irq_work. The irq_work runs in hard interrupt
//! context right after the NMI (or at the next tick where the architecture
//! cannot raise it) and makes the put there, where `call_rcu()` is legal.
//!
//! The list is linked through the task's own `rcu` field, which nothing
//! uses while `rcu_users` is not zero: the kernel writes it only in the
//! last `rcu_users` put (`call_rcu(&task->rcu, delayed_put_task_struct)`),
//! in `put_task_struct()` once `usage` is zero (which `rcu_users` holds
//! above zero), and in `delayed_free_task()` for a task that never ran (see
//! the comment in `put_task_struct()`). A task on the list still counts the
//! reference being deferred, so it stays above zero until the irq_work's
//! put, and no other holder can see the count at one and link it a second
//! time. The model is written out in `docs/refcount-rcu.md`.
//!
//! Module exit calls [`flush`]: no program can call the kfuncs once the
//! module is going (each holds a module reference), so after the irq_work
//! has finished nothing is left on the list and no module code runs again.
//!
//! [`rust_task_release`]: crate::kfuncs::rust_task_release
//!
//! C headers: [include/linux/irq_work.h](srctree/include/linux/irq_work.h),
//! [include/linux/llist.h](srctree/include/linux/llist.h)

use crate::bindings::{self, irq_work, llist_head, llist_node, task_struct};
use core::ptr::addr_of_mut;
use kernel::types::Opaque;

/// Tasks whose last `rcu_users` reference was released in NMI, and the
/// irq_work that puts them.
///
/// # Invariants
///
/// `list` is a `struct llist_head` whose nodes are the `rcu` fields of tasks
/// holding one `rcu_users` reference each that the list owns. `work` is
/// initialised by [`init`] before any kfunc can run, with [`drain`] as its
/// function.
struct Deferred {
    list: Opaque<llist_head>,
    work: Opaque<irq_work>,
}

// SAFETY: `list` is only accessed through the lock-free llist operations and
// `work` through the irq_work API, both of which are safe to use from any
// CPU and context (NMI included) at the same time.
unsafe impl Sync for Deferred {}

static DEFERRED: Deferred = Deferred {
    // An empty `struct llist_head` is all zeroes (`LLIST_HEAD_INIT`).
    // SAFETY: a `llist_head` is a pointer, for which zero is valid.
    list: Opaque::new(unsafe { core::mem::zeroed() }),
    work: Opaque::uninit(),
};

/// Prepares the irq_work; called by module init before the kfuncs are
/// registered.
pub(crate) fn init() {
    // SAFETY: `DEFERRED.work` is a `struct irq_work` that is not queued (no
    // kfunc can run before registration); `drain` has the signature the
    // irq_work API calls.
    unsafe { bindings::task_kfuncs_init_irq_work(DEFERRED.work.get(), Some(drain)) };
}

/// Drops the caller's `rcu_users` reference on `p` from NMI context.
///
/// A reference that is not the last one is dropped at once; the last one is
/// put by the irq_work, outside NMI.
///
/// # Safety
///
/// `p` must carry an `rcu_users` reference that the caller owns and gives
/// up here, and the module must have been initialised ([`init`]).
#[cold]
#[inline(never)]
pub(crate) unsafe fn put_rcu_user(p: *mut task_struct) {
    // SAFETY: the caller's reference keeps `p` alive, and with it the field.
    let rcu_users = unsafe { addr_of_mut!((*p).rcu_users) };
    // SAFETY: `rcu_users` points into that task. Above one, the decrement
    // cannot reach zero, so nothing is freed and no RCU callback is queued.
    if unsafe { bindings::refcount_dec_not_one(rcu_users) } {
        return;
    }
    // The caller's reference is the last one: keep it for the irq_work.
    // SAFETY: as above; `rcu` is unused while `rcu_users` is not zero (see
    // the module documentation), and the reference we keep holds it there.
    // A `struct callback_head` starts with its `next` pointer, as a
    // `struct llist_node` does.
    let node = unsafe { addr_of_mut!((*p).rcu) }.cast::<llist_node>();
    // SAFETY: `node` is ours until `drain` takes it off; `DEFERRED.list` is a
    // valid `llist_head` (type invariant), and `llist_add()` is NMI-safe on
    // the architectures with NMI-safe cmpxchg (x86 and every architecture
    // the kernel runs Rust on).
    let was_empty = unsafe { bindings::task_kfuncs_llist_add(node, DEFERRED.list.get()) };
    if was_empty {
        // Whoever added to a non-empty list found the irq_work queued, or
        // running but not yet past its `llist_del_all()`, which then takes
        // this node too.
        // SAFETY: `DEFERRED.work` was initialised by `init` (type invariant);
        // `irq_work_queue()` may be called from NMI.
        unsafe { bindings::irq_work_queue(DEFERRED.work.get()) };
    }
}

/// Puts every task on the list; the irq_work's function.
///
/// # Safety
///
/// Called by the irq_work code, outside NMI.
unsafe extern "C" fn drain(_work: *mut irq_work) {
    // SAFETY: `DEFERRED.list` is a valid `llist_head` (type invariant);
    // `llist_del_all()` may run concurrently with `llist_add()`.
    let mut node = unsafe { bindings::task_kfuncs_llist_del_all(DEFERRED.list.get()) };
    while !node.is_null() {
        let rcu = node.cast::<bindings::callback_head>();
        // SAFETY: every node on the list is the `rcu` field of a task that
        // the list holds a reference on (type invariant).
        let task = unsafe { kernel::container_of!(rcu, task_struct, rcu) } as *mut task_struct;
        // SAFETY: the node is still ours: read the link before the put, which
        // may hand `task->rcu` to `call_rcu()`.
        node = unsafe { (*node).next };
        // SAFETY: the list owned this reference, and we are not in NMI.
        unsafe { bindings::put_task_struct_rcu_user(task) };
    }
}

/// Waits for the irq_work and puts what is left; called by module exit,
/// once no program can call the kfuncs any more.
pub(crate) fn flush() {
    // SAFETY: `DEFERRED.work` was initialised by `init`; module exit runs in
    // process context with interrupts enabled, as `irq_work_sync()` needs.
    unsafe { bindings::irq_work_sync(DEFERRED.work.get()) };
    // Nothing can be left (whoever added last queued the irq_work, which
    // has now run), but a put that is still here must not be lost.
    // SAFETY: `drain` is the irq_work's function and may run in process
    // context too: it only needs to be outside NMI.
    unsafe { drain(DEFERRED.work.get()) };
}
