// SPDX-License-Identifier: GPL-2.0

//! `task-kfuncs-selftests`: the BPF selftests of the task_kfuncs module,
//! run inside the test kernel as root; prints KTAP. See
//! [`bpf_tests::runner`] and bpf-tests/README.md.

fn main() -> std::process::ExitCode {
    bpf_tests::runner::main()
}
