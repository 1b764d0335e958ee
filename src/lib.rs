// SPDX-License-Identifier: GPL-2.0

//! BPF kfuncs for `struct task_struct`, written in Rust.
//!
//! The module gives BPF programs the task kfunc family (acquire, release,
//! kptr_get, from_pid, from_vpid) that `kernel/bpf/helpers.c` provides in C,
//! for tracing (fentry, fexit, tp_btf, iter), classic tracepoint, LSM,
//! struct_ops and syscall programs, through a BTF kfunc id set declared in
//! Rust ([`kfunc_btf`], from the rust-kfuncs toolkit). References are taken on
//! `task->rcu_users`, the same counter the kernel's own `bpf_task_acquire()`
//! uses, so the two families interoperate; see `docs/refcount-rcu.md`.
//!
//! C header: [include/linux/btf.h](srctree/include/linux/btf.h)

use kernel::prelude::*;

mod bindings;
#[path = "../rust-kfuncs/kfunc_btf.rs"]
mod kfunc_btf;
mod kfuncs;
mod nmi;
// 7.3's kernel crate has `kernel::sync::rcu::Guard`; 6.12's has no RCU abstraction.
#[cfg(kernel_6_12)]
mod rcu;

// The kernel lines differ in `module!`'s syntax: 6.12 takes one `author`,
// 7.3 a list of `authors` (Kbuild sets the `kernel_<line>` cfg).
#[cfg(kernel_6_12)]
module! {
    type: TaskKfuncs,
    name: "task_kfuncs",
    author: "task_kfuncs developers",
    description: "BPF kfuncs for struct task_struct written in Rust",
    license: "GPL",
}

#[cfg(not(kernel_6_12))]
module! {
    type: TaskKfuncs,
    name: "task_kfuncs",
    authors: ["task_kfuncs developers"],
    description: "BPF kfuncs for struct task_struct written in Rust",
    license: "GPL",
}

/// The loaded module. Registration of kfunc sets cannot be undone; the
/// kernel drops the set together with the module's BTF on unload.
struct TaskKfuncs;

impl kernel::Module for TaskKfuncs {
    fn init(module: &'static ThisModule) -> Result<Self> {
        nmi::init();
        kfuncs::register(module)?;
        pr_info!("task kfuncs registered for tracing, tracepoint, LSM, struct_ops and syscall\n");
        Ok(TaskKfuncs)
    }
}

impl Drop for TaskKfuncs {
    /// Module exit: no program can call the kfuncs any more (each holds a
    /// reference on the module), so only last puts deferred out of NMI can
    /// be left; they are made before the module's code goes away.
    fn drop(&mut self) {
        nmi::flush();
    }
}
