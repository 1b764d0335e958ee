// SPDX-License-Identifier: GPL-2.0

//! The kernel log policy: which kernel messages fail a test run, and which
//! of them mean the guest cannot go on (so that xtask kills it at once
//! instead of waiting for a timeout). Also the kmemleak policy.
//!
//! The guest runner applies [`findings`] to what `/dev/kmsg` gained during
//! the run (its `kernel/log_clean` case); xtask applies [`classify`] to
//! each boot console line as it arrives and stops the guest on a
//! [`Severity::Fatal`] one. Both read the lists below, and nothing else
//! decides what a bad kernel message is.

/// What a bad line means for the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The kernel is dead or stuck (panic, oops, stall, lockup, hung task):
    /// nothing after it can be trusted, stop the guest now.
    Fatal,
    /// The kernel caught a bug and carried on (a WARN, a KASAN or lockdep
    /// report, a refcount saturation): the run fails, the guest goes on.
    Bad,
}

/// Substrings that fail the run, most specific first: the first match
/// names the line. Matching is case-sensitive, on the message text.
pub const DENY: &[(&str, Severity)] = &[
    // panic(): "Kernel panic - not syncing: Fatal exception".
    ("Kernel panic", Severity::Fatal),
    // die(): "Oops: general protection fault, ...", "Oops: 0002 [#1] PREEMPT SMP".
    ("Oops: ", Severity::Fatal),
    // BUG_ON(): "kernel BUG at mm/slub.c:452!".
    ("kernel BUG at", Severity::Fatal),
    // page fault in the kernel: "BUG: kernel NULL pointer dereference, address: ...",
    // "BUG: unable to handle page fault for address: ...".
    ("BUG: kernel NULL pointer dereference", Severity::Fatal),
    ("BUG: unable to handle", Severity::Fatal),
    ("general protection fault", Severity::Fatal),
    // RCU: "rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:",
    // "rcu: INFO: rcu_preempt self-detected stall on CPU",
    // "rcu: INFO: rcu_preempt detected expedited stalls on CPUs/tasks: ...".
    ("detected stalls on CPUs/tasks", Severity::Fatal),
    ("self-detected stall on CPU", Severity::Fatal),
    ("detected expedited stalls", Severity::Fatal),
    // watchdog: "watchdog: BUG: soft lockup - CPU#0 stuck for 26s! [x:93]",
    // "watchdog: Watchdog detected hard LOCKUP on cpu 1".
    ("BUG: soft lockup", Severity::Fatal),
    ("hard LOCKUP", Severity::Fatal),
    // hung_task: "INFO: task x:93 blocked for more than 122 seconds.".
    ("blocked for more than", Severity::Fatal),
    ("BUG: workqueue lockup", Severity::Fatal),
    // refcount_warn_saturate(): "refcount_t: underflow; use-after-free.".
    ("refcount_t: ", Severity::Bad),
    // lockdep / PROVE_RCU: "WARNING: suspicious RCU usage",
    // "WARNING: possible circular locking dependency detected".
    ("suspicious RCU usage", Severity::Bad),
    // KASAN: "BUG: KASAN: slab-use-after-free in ...".
    ("KASAN: ", Severity::Bad),
    // KFENCE: "BUG: KFENCE: use-after-free read in ...".
    ("KFENCE: ", Severity::Bad),
    ("UBSAN: ", Severity::Bad),
    // WARN(): "WARNING: CPU: 0 PID: 93 at kernel/bpf/helpers.c:2466 ...".
    ("WARNING:", Severity::Bad),
    // Anything else the kernel calls a bug: "BUG: sleeping function called
    // from invalid context at ...", "BUG: scheduling while atomic: ...".
    ("BUG:", Severity::Bad),
    // A stack dump nobody asked for (dump_stack() in a debug path).
    ("Call Trace:", Severity::Bad),
];

/// Lines that match [`DENY`] but are known not to be a bug. Each entry says
/// where the kernel prints it and why it is harmless here.
pub const ALLOW: &[&str] = &[
    // arch/x86/kernel/cpu/bugs.c, at boot when unprivileged BPF is allowed
    // on a CPU with eIBRS: a hardening advice about the host CPU, not a bug.
    "Spectre V2 : WARNING: Unprivileged eBPF is enabled",
];

/// The line `fail_dump()` (lib/fault-inject.c) prints when fault injection
/// fails a call on purpose and the fault attribute's `verbose` is at least 1.
pub const INJECTED_FAILURE: &str = "FAULT_INJECTION: forcing a failure";

/// The line drivers/tty/sysrq.c prints for sysrq 'l', which makes every CPU
/// dump its stack, the others from an NMI (lib/nmi_backtrace.c).
pub const SYSRQ_BACKTRACE: &str = "sysrq: Show backtrace of all active CPUs";

/// A stack dump that a case asks for on purpose, so not a bug: after a
/// `request` line, each `header` line within `header_window` lines of it
/// allows one `Call Trace:` within `trace_gap` lines of that header.
pub struct RequestedDump {
    pub request: &'static str,
    pub header: &'static str,
    pub header_window: usize,
    pub trace_gap: usize,
}

/// The stack dumps cases ask for.
pub const REQUESTED_DUMPS: &[RequestedDump] = &[
    // An injected allocation failure (the fault cases turn `verbose` on so
    // that every one says so), reported by mm/vmalloc.c's `warn_alloc()`:
    // "<comm>: vmalloc error: size 474904, vm_struct allocation failed,
    // mode:...", when failslab fails the `vm_struct` allocation of a module
    // image. Between the lines: fail_dump()'s own "name failslab, interval
    // ..." line; dump_stack()'s "CPU: ..." and "Hardware name: ...".
    // mm/page_alloc.c's "page allocation failure:" is not here:
    // fail_page_alloc fails a request before the slow path that would
    // report it, so in 6.12 that report never follows an injected failure.
    RequestedDump {
        request: INJECTED_FAILURE,
        header: "vmalloc error:",
        header_window: 3,
        trace_gap: 3,
    },
    // sysrq 'l', by which the NMI cases send an NMI to the other CPUs:
    // "NMI backtrace for cpu N" per CPU ("... skipped: idling at ..." for an
    // idle one, without a trace), then show_regs()'s registers and code
    // bytes, or dump_stack()'s two lines on the CPU that wrote the trigger,
    // then the trace.
    RequestedDump {
        request: SYSRQ_BACKTRACE,
        header: "NMI backtrace for cpu",
        header_window: 200,
        trace_gap: 20,
    },
];

/// One bad kernel log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The [`DENY`] pattern it matched.
    pub marker: &'static str,
    pub severity: Severity,
    /// The line, as given.
    pub line: String,
}

/// Judges one kernel log line (a console line with its `[   1.23]` stamp,
/// or a `/dev/kmsg` message).
pub fn classify(line: &str) -> Option<Finding> {
    if ALLOW.iter().any(|allowed| line.contains(allowed)) {
        return None;
    }
    DENY.iter()
        .find(|(marker, _)| line.contains(marker))
        .map(|&(marker, severity)| Finding {
            marker,
            severity,
            line: line.to_string(),
        })
}

/// Every bad line of a log.
///
/// A `Call Trace:` that one of the [`REQUESTED_DUMPS`] announced is not a
/// finding; any other stack dump, and every line [`DENY`] names besides
/// `Call Trace:`, is.
pub fn findings(log: &str) -> Vec<Finding> {
    // Per requested dump: lines since its request, and since a header that
    // followed one; None once too far away.
    let mut since_request = vec![None::<usize>; REQUESTED_DUMPS.len()];
    let mut since_header = vec![None::<usize>; REQUESTED_DUMPS.len()];
    let mut found = Vec::new();
    for line in log.lines() {
        let mut announcing = false;
        for (i, dump) in REQUESTED_DUMPS.iter().enumerate() {
            if line.contains(dump.request) {
                since_request[i] = Some(0);
                announcing = true;
            } else if line.contains(dump.header) && since_request[i].is_some() {
                since_header[i] = Some(0);
                announcing = true;
            }
        }
        if announcing {
            continue;
        }
        let allowed_by = since_header.iter().position(Option::is_some);
        let step = |n: Option<usize>, max: usize| n.map(|n| n + 1).filter(|&n| n <= max);
        for (i, dump) in REQUESTED_DUMPS.iter().enumerate() {
            since_request[i] = step(since_request[i], dump.header_window);
            since_header[i] = step(since_header[i], dump.trace_gap);
        }
        let Some(finding) = classify(line) else {
            continue;
        };
        if let (true, Some(i)) = (finding.marker == "Call Trace:", allowed_by) {
            // One header, one trace.
            since_header[i] = None;
            continue;
        }
        found.push(finding);
    }
    found
}

/// What the kmemleak policy says of a report of
/// `/sys/kernel/debug/kmemleak`: every unreferenced object is a leak that
/// fails the run, whoever allocated it (the run clears kmemleak before it
/// starts, so what boot left is not counted). Returns one entry per object.
pub fn kmemleak_leaks(report: &str) -> Vec<String> {
    report
        .split("unreferenced object")
        .skip(1)
        .map(|leak| format!("unreferenced object{}", leak.trim_end()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker(line: &str) -> Option<(&'static str, Severity)> {
        classify(line).map(|f| (f.marker, f.severity))
    }

    use Severity::{Bad, Fatal};

    #[test]
    fn warnings_and_bugs() {
        assert_eq!(
            marker("[   12.345678] WARNING: CPU: 0 PID: 93 at lib/refcount.c:28 refcount_warn_saturate+0x9e/0x100"),
            Some(("WARNING:", Bad))
        );
        assert_eq!(
            marker("[   12.345679] refcount_t: underflow; use-after-free."),
            Some(("refcount_t: ", Bad))
        );
        assert_eq!(
            marker(
                "BUG: sleeping function called from invalid context at kernel/locking/mutex.c:283"
            ),
            Some(("BUG:", Bad))
        );
        assert_eq!(marker("[   13.0] Call Trace:"), Some(("Call Trace:", Bad)));
    }

    #[test]
    fn sanitizers_and_lockdep() {
        assert_eq!(
            marker("[   20.1] BUG: KASAN: slab-use-after-free in rust_task_release+0x1c/0x40 [task_kfuncs]"),
            Some(("KASAN: ", Bad))
        );
        assert_eq!(
            marker("BUG: KFENCE: use-after-free read in bpf_prog_test_run+0x10/0x20"),
            Some(("KFENCE: ", Bad))
        );
        assert_eq!(
            marker("[   30.2] WARNING: suspicious RCU usage"),
            Some(("suspicious RCU usage", Bad))
        );
        assert_eq!(
            marker("WARNING: possible circular locking dependency detected"),
            Some(("WARNING:", Bad))
        );
        assert_eq!(
            marker("WARNING: possible recursive locking detected"),
            Some(("WARNING:", Bad))
        );
    }

    #[test]
    fn oops_and_panic_are_fatal() {
        assert_eq!(
            marker("[    5.1] BUG: kernel NULL pointer dereference, address: 0000000000000008"),
            Some(("BUG: kernel NULL pointer dereference", Fatal))
        );
        assert_eq!(
            marker("[    5.2] Oops: 0000 [#1] PREEMPT SMP NOPTI"),
            Some(("Oops: ", Fatal))
        );
        assert_eq!(
            marker("Oops: general protection fault, probably for non-canonical address 0xdead000000000100: 0000 [#1] PREEMPT SMP"),
            Some(("Oops: ", Fatal))
        );
        assert_eq!(
            marker("[    5.9] Kernel panic - not syncing: Fatal exception in interrupt"),
            Some(("Kernel panic", Fatal))
        );
        assert_eq!(
            marker("kernel BUG at mm/slub.c:452!"),
            Some(("kernel BUG at", Fatal))
        );
    }

    #[test]
    fn stalls_lockups_and_hung_tasks_are_fatal() {
        assert_eq!(
            marker("[   60.0] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:"),
            Some(("detected stalls on CPUs/tasks", Fatal))
        );
        assert_eq!(
            marker("rcu: INFO: rcu_preempt self-detected stall on CPU"),
            Some(("self-detected stall on CPU", Fatal))
        );
        assert_eq!(
            marker(
                "[   48.1] watchdog: BUG: soft lockup - CPU#1 stuck for 26s! [task-kfuncs-se:93]"
            ),
            Some(("BUG: soft lockup", Fatal))
        );
        assert_eq!(
            marker("watchdog: Watchdog detected hard LOCKUP on cpu 1"),
            Some(("hard LOCKUP", Fatal))
        );
        assert_eq!(
            marker("[  245.5] INFO: task kworker/0:1:12 blocked for more than 122 seconds."),
            Some(("blocked for more than", Fatal))
        );
    }

    #[test]
    fn clean_lines_and_allowed_lines_pass() {
        for line in [
            "[    0.000000] Linux version 6.12.117 (root@host) (Debian clang version 19.1.7)",
            "[    0.1] kasan: KernelAddressSanitizer initialized (generic)",
            "[    0.2] rcu: Preemptible hierarchical RCU implementation.",
            "[    1.0] kmemleak: Kernel memory leak detector initialized (mempool available)",
            "[    2.0] task_kfuncs: loading out-of-tree module taints kernel.",
            "[    0.3] Spectre V2 : WARNING: Unprivileged eBPF is enabled with eIBRS on, data leaks possible via Spectre v2 BHB attacks!",
        ] {
            assert_eq!(classify(line), None, "{line}");
        }
    }

    #[test]
    fn findings_of_a_log() {
        let log =
            "[1.0] ok\n[2.0] WARNING: CPU: 1 PID: 5 at x.c:1 f\n[2.1] Call Trace:\n[2.2]  <TASK>\n";
        let found = findings(log);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].line, "[2.0] WARNING: CPU: 1 PID: 5 at x.c:1 f");
        assert_eq!(found[1].marker, "Call Trace:");
    }

    #[test]
    fn every_unreferenced_object_is_a_leak() {
        let report = "unreferenced object 0xffff888003a1c000 (size 64):\n  comm \"insmod\", pid 93\n  backtrace (crc 0):\n    kmalloc_trace+0x1/0x2\n\
                      unreferenced object 0xffff888003a1d000 (size 32):\n  comm \"swapper/0\", pid 1\n";
        let leaks = kmemleak_leaks(report);
        assert_eq!(leaks.len(), 2);
        assert!(leaks[0].starts_with("unreferenced object 0xffff888003a1c000"));
        assert!(leaks[1].contains("swapper/0"));
        assert!(kmemleak_leaks("").is_empty());
    }

    #[test]
    fn injected_allocation_failures_may_dump_the_stack() {
        let injected = "[9.0] FAULT_INJECTION: forcing a failure.\n\
                        [9.0] name failslab, interval 1, probability 0, space 0, times 1\n\
                        [9.1] insmod: vmalloc error: size 474904, vm_struct allocation failed, mode:0xcc0(GFP_KERNEL), nodemask=(null)\n\
                        [9.1] CPU: 0 UID: 0 PID: 76 Comm: insmod Tainted: G O 6.12.117 #1\n\
                        [9.1] Call Trace:\n\
                        [9.1]  <TASK>\n\
                        [9.1]  warn_alloc+0xe4/0x150\n";
        assert_eq!(findings(injected), vec![]);

        // Without the injection line the same report is a finding.
        let lines: Vec<&str> = injected.lines().skip(2).collect();
        let found = findings(&lines.join("\n"));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].marker, "Call Trace:");

        // An injection line long before does not cover a later report.
        let far = format!(
            "[9.0] FAULT_INJECTION: forcing a failure.\n[9.0] a\n[9.0] b\n[9.0] c\n[9.0] d\n{}",
            lines.join("\n")
        );
        let found: Vec<_> = findings(&far).into_iter().map(|f| f.marker).collect();
        assert_eq!(found, vec!["Call Trace:"]);

        // Nor does a header long before its trace.
        let late = "[9.0] FAULT_INJECTION: forcing a failure.\n\
                    [9.1] insmod: vmalloc error: size 4096, vm_struct allocation failed\n\
                    [9.1] a\n[9.1] b\n[9.1] c\n[9.1] d\n[9.1] Call Trace:\n";
        let found: Vec<_> = findings(late).into_iter().map(|f| f.marker).collect();
        assert_eq!(found, vec!["Call Trace:"]);

        // The allowance covers one trace: a WARN after it still counts.
        let then_warn =
            format!("{injected}[9.2] WARNING: CPU: 0 PID: 76 at x.c:1 f\n[9.2] Call Trace:\n");
        let found: Vec<_> = findings(&then_warn).into_iter().map(|f| f.marker).collect();
        assert_eq!(found, vec!["WARNING:", "Call Trace:"]);
    }

    #[test]
    fn sysrq_backtraces_may_dump_the_stack() {
        let regs = (0..12)
            .map(|i| format!("[7.1] R{i:02}: 0000000000000000\n"))
            .collect::<String>();
        let sysrq = format!(
            "[7.0] sysrq: Show backtrace of all active CPUs\n\
             [7.0] NMI backtrace for cpu 0\n\
             [7.0] CPU: 0 UID: 0 PID: 90 Comm: task-kfuncs-se Not tainted 6.12.117 #1\n\
             [7.0] Hardware name: QEMU Standard PC (i440FX + PIIX, 1996)\n\
             [7.0] Call Trace:\n\
             [7.0]  <TASK>\n\
             [7.0]  dump_stack_lvl+0x5d/0x80\n\
             [7.0]  </TASK>\n\
             [7.0] Sending NMI from CPU 0 to CPUs 1:\n\
             [7.1] NMI backtrace for cpu 1\n\
             [7.1] RIP: 0010:default_idle+0xf/0x20\n\
             {regs}\
             [7.1] Call Trace:\n\
             [7.1]  <NMI>\n"
        );
        assert_eq!(findings(&sysrq), vec![]);

        // Without the request the same dumps are findings.
        let unrequested: Vec<&str> = sysrq.lines().skip(1).collect();
        let found: Vec<_> = findings(&unrequested.join("\n"))
            .into_iter()
            .map(|f| f.marker)
            .collect();
        assert_eq!(found, vec!["Call Trace:", "Call Trace:"]);

        // An idle CPU's header brings no trace, and covers none that follows
        // later; nor does a request cover a trace without its header.
        let idle = format!(
            "[7.0] sysrq: Show backtrace of all active CPUs\n\
             [7.1] NMI backtrace for cpu 1 skipped: idling at default_idle+0xf/0x20\n\
             {regs}{regs}[7.2] WARNING: CPU: 1 PID: 5 at x.c:1 f\n[7.2] Call Trace:\n"
        );
        let found: Vec<_> = findings(&idle).into_iter().map(|f| f.marker).collect();
        assert_eq!(found, vec!["WARNING:", "Call Trace:"]);
    }
}
