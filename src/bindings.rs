// SPDX-License-Identifier: GPL-2.0

//! Bindings beyond those of the kernel crate.
//!
//! `bindings_generated.rs` is produced at build time by the kernel's bindgen
//! from `bindings_helper.h`, allowlisted by `bindgen_parameters`. Everything
//! else (`task_struct`, `module`, ...) is the kernel crate's.
//!
//! C headers: [include/linux/btf.h](srctree/include/linux/btf.h),
//! [include/linux/pid.h](srctree/include/linux/pid.h),
//! [include/linux/sched/task.h](srctree/include/linux/sched/task.h)

#![allow(
    dead_code,
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    missing_docs,
    clippy::all,
    clippy::undocumented_unsafe_blocks,
    unsafe_op_in_unsafe_fn,
    unreachable_pub,
    improper_ctypes
)]

pub(crate) use kernel::bindings::*;

include!("generated/bindings_generated.rs");
