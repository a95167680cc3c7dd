//! End-to-end: a stock QEMU 11.1 guest attaches to our vfio-user server (JSON `-device` form,
//! memfd shared memory), serving the 82576 VF config layout in-process, and sees the function as
//! 8086:10ca with its BARs assigned and the MSI-X capability present (read from sysfs). Then the
//! QEMU process is killed and a second guest attaches to the same socket and sees the same.
//! Needs the artifacts of `scripts/fetch-e2e.py` (fails, rather than skips, without them).

mod vfio_support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sriov_emu_tests::{Guest, GuestConfig};
use vfio_support::*;

/// Finds the function in sysfs and reports what the guest sees. Ends waiting to be killed.
const SCRIPT: &str = r#"
cfgbyte() { od -An -tu1 -j "$2" -N1 "$1/config" | tr -d ' \n'; }
dev=
for d in /sys/bus/pci/devices/*; do
    if [ "$(cat $d/vendor)" = 0x8086 ] && [ "$(cat $d/device)" = 0x10ca ]; then dev=$d; fi
done
if [ -n "$dev" ]; then
    result found pass "$dev"
    check_eq class 0x020000 cat $dev/class
    bar_size() { set -- $(sed -n "$1p" $dev/resource); echo $(( $2 - $1 + 1 )) $(( $1 != 0 )); }
    check_eq bar0 "16384 1" bar_size 1
    check_eq bar3 "16384 1" bar_size 4
    # Walk the capability list for MSI-X (id 0x11) and read its Table Size.
    msix=none; p=$(cfgbyte $dev 52); n=0
    while [ "$p" -ne 0 ] && [ $n -lt 48 ]; do
        if [ "$(cfgbyte $dev $p)" -eq 17 ]; then msix=$p; break; fi
        p=$(cfgbyte $dev $((p + 1))); n=$((n + 1))
    done
    check_eq msix-offset 112 echo $msix
    check_eq msix-table-size 2 sh -c "echo \$(( \$(od -An -tu2 -j 114 -N2 $dev/config) & 0x7ff ))"
    check_eq irq-pin 0 cfgbyte $dev 61
else
    result found fail "no 8086:10ca in $(cat /sys/bus/pci/devices/*/device | tr '\n' ' ')"
fi
echo SRIOV-EMU-E2E-READY
sleep 600
"#;

fn boot_and_check(name: &str, socket: &std::path::Path, while_running: impl FnOnce()) -> f64 {
    let device = format!(
        r#"{{"driver":"vfio-user-pci","id":"vf0","bus":"rp1","socket":{{"type":"unix","path":"{}"}}}}"#,
        socket.display()
    );
    let start = Instant::now();
    let mut guest = Guest::new(
        GuestConfig::new(name, SCRIPT)
            .qemu_args([
                "-device",
                "pcie-root-port,id=rp1,chassis=1",
                "-device",
                device.as_str(),
            ])
            .timeout(Duration::from_secs(300)),
    )
    .spawn()
    .unwrap_or_else(|e| panic!("{e}"));
    let ready = guest.wait_for_console("SRIOV-EMU-E2E-READY", Duration::from_secs(280));
    let results = guest.results_so_far();
    let console = guest.console();
    if ready {
        while_running();
    }
    guest.kill().expect("kill QEMU");
    let out = guest.wait();
    assert!(ready, "guest never got ready\n{}", out.diagnostics());
    let elapsed = start.elapsed().as_secs_f64();
    for name in [
        "found",
        "class",
        "bar0",
        "bar3",
        "msix-offset",
        "msix-table-size",
        "irq-pin",
    ] {
        let r = results
            .results
            .iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no result {name}\n{console}"));
        assert!(r.passed(), "{name}: {}\n{}", r.detail, out.diagnostics());
    }
    eprintln!("{name}: ready and checked in {elapsed:.1}s");
    elapsed
}

#[test]
fn qemu_guest_sees_the_vf_then_a_second_guest_after_kill() {
    let srv = Running::start("e2e-vf");
    let probe = srv.probe.clone();
    let guest_ram_is_mmapped = move || {
        // QEMU sent its RAM maps with the memfd: the model reaches guest memory directly.
        let ctx = probe.ctx().expect("attached while QEMU runs");
        let c = ctx.dma.counters();
        assert!(c.mmapped_maps >= 1, "{c:?}");
        eprintln!("DMA maps while the guest runs: {c:?}");
    };
    boot_and_check("vfio-e2e-1", &srv.path, guest_ram_is_mmapped.clone());
    // QEMU was killed: the server resets the function and accepts the next client.
    srv.probe.wait_for("detach after kill", |p| {
        p.detaches.load(Ordering::SeqCst) == 1
    });
    assert!(srv.probe.resets.load(Ordering::SeqCst) >= 1);
    boot_and_check("vfio-e2e-2", &srv.path, guest_ram_is_mmapped);
    srv.probe
        .wait_for("second detach", |p| p.detaches.load(Ordering::SeqCst) == 2);
    let stats = srv.handle.stats();
    eprintln!("server: {stats:?}");
    assert_eq!(stats.connections, 2, "{stats:?}");
    assert_eq!(stats.panics, 0);
    assert_eq!(
        stats.error_replies, 0,
        "QEMU asked for nothing we refuse: {stats:?}"
    );
    assert_eq!(stats.protocol_closes, 0, "{stats:?}");
}
