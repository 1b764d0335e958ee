// SPDX-License-Identifier: GPL-2.0

//! The success and rejection suites built against the kernel's own C kfuncs
//! (`progs/` compiled with `-DTASK_KFUNCS_C`: bpf_task_acquire,
//! bpf_task_release, bpf_task_from_pid), from the same sources as
//! [`crate::kfuncs_rust`]: proof that the suites test the kfunc contract, not
//! this implementation. Cases whose contract differs carry `__c_skip()`.

/// Whether these programs call the kernel's C kfuncs instead.
pub const C_KFUNCS: bool = true;

/// The suite's name in the report.
pub const SUITE: &str = "c_kfuncs";

/// The skeletons of this variant (`$OUT_DIR/c/`).
pub mod skel {
    /// Skeleton of `progs/task_kfuncs_success.bpf.c`.
    pub mod success_skel {
        include!(concat!(env!("OUT_DIR"), "/c/task_kfuncs_success.skel.rs"));
    }

    /// Skeleton of `progs/task_kfuncs_failure.bpf.c`.
    pub mod failure_skel {
        include!(concat!(env!("OUT_DIR"), "/c/task_kfuncs_failure.skel.rs"));
    }

    /// Skeleton of `progs/task_kfuncs_exiting.bpf.c`.
    pub mod exiting_skel {
        include!(concat!(env!("OUT_DIR"), "/c/task_kfuncs_exiting.skel.rs"));
    }

    /// The object files behind the skeletons, for reading their BTF.
    pub const SUCCESS_OBJ: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/c/task_kfuncs_success.bpf.o"));
    pub const FAILURE_OBJ: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/c/task_kfuncs_failure.bpf.o"));
    pub const EXITING_OBJ: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/c/task_kfuncs_exiting.bpf.o"));
}

// The same sources are compiled for the other variant in kfuncs_rust.rs: each
// build sees its own `super::skel` and `super::C_KFUNCS`.
#[allow(clippy::duplicate_mod)]
#[path = "success.rs"]
pub mod success;

#[allow(clippy::duplicate_mod)]
#[path = "failure.rs"]
pub mod failure;

#[allow(clippy::duplicate_mod)]
#[path = "exiting.rs"]
pub mod exiting;
