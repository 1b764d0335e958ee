// SPDX-License-Identifier: GPL-2.0

//! RCU read-side critical sections.
//!
//! C header: [include/linux/rcupdate.h](srctree/include/linux/rcupdate.h)

use crate::bindings;
use core::marker::PhantomData;

/// An RCU read-side critical section, entered by [`Guard::new`] and left
/// when the guard is dropped.
///
/// The section is the kernel's own `rcu_read_lock()` / `rcu_read_unlock()`
/// pair (`helpers.c`, inlined here as in a C caller: with `PREEMPT_RCU` a
/// call to `__rcu_read_lock()` plus the lockdep annotations), so lockdep and
/// `PROVE_RCU` see it as they see a C caller's.
///
/// # Invariants
///
/// The current CPU/task is inside the read-side critical section entered by
/// [`Guard::new`] for as long as the guard lives. The guard is neither `Send`
/// nor `Sync`: the section must end in the context that began it.
pub(crate) struct Guard(PhantomData<*mut ()>);

impl Guard {
    /// Enters an RCU read-side critical section.
    ///
    /// # Examples
    ///
    /// ```ignore
    /// let guard = rcu::Guard::new();
    /// // RCU-protected pointers may be dereferenced here.
    /// drop(guard);
    /// ```
    #[inline]
    pub(crate) fn new() -> Self {
        // SAFETY: `rcu_read_lock()` can be called in any context; the
        // matching unlock happens in `Drop`.
        unsafe { bindings::task_kfuncs_rcu_read_lock() };
        // INVARIANT: the read section was entered just above.
        Self(PhantomData)
    }
}

impl Drop for Guard {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: by the type invariant the section entered in `new` is still
        // open, and the guard cannot have moved to another task.
        unsafe { bindings::task_kfuncs_rcu_read_unlock() };
    }
}
