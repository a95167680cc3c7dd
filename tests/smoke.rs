//! End-to-end smoke test: boot the guest under stock QEMU 11.1 and check that
//! the kernel runs and the igb / igbvf drivers load. Needs the artifacts of
//! `scripts/fetch-e2e.py` (fails, rather than skips, without them).

use std::time::Duration;

use sriov_emu_tests::{Guest, GuestConfig};

const SCRIPT: &str = r#"
check kernel uname -r
check modprobe-igbvf modprobe igbvf
check modprobe-igb modprobe igb
check_eq igb-loaded 1 sh -c 'grep -c "^igb " /proc/modules'
check_eq igbvf-loaded 1 sh -c 'grep -c "^igbvf " /proc/modules'
check iproute2 ip -V
check iperf3 iperf3 --version
"#;

#[test]
fn guest_boots_and_loads_nic_drivers() {
    let out = Guest::new(GuestConfig::new("smoke", SCRIPT).timeout(Duration::from_secs(120)))
        .run()
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "smoke guest: {:.1}s boot to power-off, log {}",
        out.elapsed.as_secs_f64(),
        out.log_path.display()
    );
    out.assert_all_passed();
    let kernel = out.expect_pass("kernel");
    assert_eq!(Some(&kernel.detail), out.booted_kernel.as_ref());
    assert!(kernel.detail.ends_with("-amd64"), "{}", out.diagnostics());
    assert!(
        out.expect_pass("iproute2").detail.contains("iproute2"),
        "busybox ip ran instead of iproute2\n{}",
        out.diagnostics()
    );
    assert!(out.exit_status.is_some_and(|s| s.success()));
}

#[test]
fn guest_reports_failures_and_kill_works() {
    // A failing check is reported as such, and a guest can be killed mid-run.
    let script = "check_fails no-such-module modprobe no_such_module\n\
                  result deliberate fail 'expected failure'\n\
                  echo READY-TO-BE-KILLED\nsleep 600\n";
    let mut g =
        Guest::new(GuestConfig::new("smoke-kill", script).timeout(Duration::from_secs(120)))
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
    assert!(g.pid() > 0);
    assert!(
        g.wait_for_console("READY-TO-BE-KILLED", Duration::from_secs(100)),
        "{}",
        g.console()
    );
    g.kill().unwrap();
    let out = g.wait();
    assert!(
        out.killed && !out.timed_out && !out.completed(),
        "{}",
        out.diagnostics()
    );
    out.expect_pass("no-such-module");
    assert_eq!(out.failures().len(), 1);
    assert_eq!(out.failures()[0].name, "deliberate");
    assert_eq!(out.failures()[0].detail, "expected failure");
}

#[test]
fn hard_timeout_kills_a_stuck_guest() {
    let out = Guest::new(
        GuestConfig::new("smoke-timeout", "sleep 600\n").timeout(Duration::from_secs(2)),
    )
    .run()
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.timed_out && !out.completed(), "{}", out.diagnostics());
    assert!(
        out.elapsed < Duration::from_secs(10),
        "{}",
        out.diagnostics()
    );
}
