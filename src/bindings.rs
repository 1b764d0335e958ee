// SPDX-License-Identifier: GPL-2.0

//! Bindings beyond those of the kernel crate, and the proof that the struct
//! layouts read from Rust are C's.
//!
//! `bindings_generated.rs` is produced at build time by the kernel's bindgen
//! from `bindings_helper.h`, allowlisted by `bindgen_parameters`. Everything
//! else (`task_struct`, `module`, ...) is the kernel crate's.
//!
//! bindgen can get a layout wrong without `size_of` noticing (0.73 drops the
//! alignment of zero-sized aligned structs, so every `task_struct` field
//! after `stats` moved on configs without `CONFIG_SCHEDSTATS`). So every
//! field that this crate, or the kernel crate code it calls, reads through a
//! bindgen struct is checked here against the C compiler's `offsetof`,
//! which `bindings_helper.h` hands over as `TASK_KFUNCS_C_OFFSETOF_*`
//! constants. A mismatch fails the build and names the field.
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

/// Fails the build unless bindgen's `$ty.$field` sits at C's offset `$c`.
///
/// `$why` says what to do about it; it ends the compiler's message.
macro_rules! assert_c_offset {
    ($ty:ident . $field:ident == $c:ident, $why:literal) => {
        const _: () = assert!(
            core::mem::offset_of!($ty, $field) == $c,
            concat!(
                "bindgen's layout of struct ",
                stringify!($ty),
                " puts `",
                stringify!($field),
                "` at another offset than the C compiler: ",
                $why
            )
        );
    };
}

/// Fails the build unless bindgen's `$ty` has C's size `$c`.
macro_rules! assert_c_size {
    ($ty:ident == $c:ident, $why:literal) => {
        const _: () = assert!(
            core::mem::size_of::<$ty>() == $c,
            concat!(
                "bindgen's struct ",
                stringify!($ty),
                " has another size than the C compiler's: ",
                $why
            )
        );
    };
}

// `task_struct` is the kernel crate's (`kernel::bindings`): checking it here
// proves the kernel crate's layout for this kernel and config, both for our
// `rcu_users` and for what `kernel::task::Task::pid()` / `group_leader()` read.
assert_c_offset!(
    task_struct.rcu_users == TASK_KFUNCS_C_OFFSETOF_task_struct_rcu_users,
    "the kernel crate's bindings are wrong for this config; with CONFIG_SCHEDSTATS=n \
     the kernel needs test-kernel/patches/<line>/0002-rust-bindgen-keep-the-alignment-of-sched_statistics.patch"
);
assert_c_offset!(
    task_struct.pid == TASK_KFUNCS_C_OFFSETOF_task_struct_pid,
    "kernel::task::Task::pid() would read the wrong word; with CONFIG_SCHEDSTATS=n \
     the kernel needs test-kernel/patches/<line>/0002-rust-bindgen-keep-the-alignment-of-sched_statistics.patch"
);
assert_c_offset!(
    task_struct.group_leader == TASK_KFUNCS_C_OFFSETOF_task_struct_group_leader,
    "kernel::task::Task::group_leader() would read the wrong word; with CONFIG_SCHEDSTATS=n \
     the kernel needs test-kernel/patches/<line>/0002-rust-bindgen-keep-the-alignment-of-sched_statistics.patch"
);
assert_c_offset!(
    task_struct.rcu == TASK_KFUNCS_C_OFFSETOF_task_struct_rcu,
    "the kernel crate's bindings are wrong for this config; with CONFIG_SCHEDSTATS=n \
     the kernel needs test-kernel/patches/6.12/0002-rust-bindgen-keep-the-alignment-of-sched_statistics.patch"
);
assert_c_size!(
    task_struct == TASK_KFUNCS_C_SIZEOF_task_struct,
    "the kernel crate's bindings do not match this kernel"
);

assert_c_size!(
    irq_work == TASK_KFUNCS_C_SIZEOF_irq_work,
    "check src/bindgen_parameters"
);

assert_c_offset!(
    btf_kfunc_id_set.owner == TASK_KFUNCS_C_OFFSETOF_btf_kfunc_id_set_owner,
    "the kernel crate's bindings do not match this kernel"
);
assert_c_offset!(
    btf_kfunc_id_set.set == TASK_KFUNCS_C_OFFSETOF_btf_kfunc_id_set_set,
    "the kernel crate's bindings do not match this kernel"
);
assert_c_offset!(
    btf_kfunc_id_set.filter == TASK_KFUNCS_C_OFFSETOF_btf_kfunc_id_set_filter,
    "the kernel crate's bindings do not match this kernel"
);
assert_c_size!(
    btf_kfunc_id_set == TASK_KFUNCS_C_SIZEOF_btf_kfunc_id_set,
    "the kernel crate's bindings do not match this kernel"
);
