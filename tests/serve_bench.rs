//! Bench (issue 6): VF-to-VF iperf3 TCP throughput and ping RTT, in one run on the same
//! machine, through sriov-emu (two guests, each on one served VF, igbvf) and through QEMU's own
//! in-process `igb` (one guest with two vCPUs enables 2 VFs with `sriov_numvfs`, igbvf binds
//! them, each VF in its own network namespace). Same guest kernel, same QEMU, TCG.
//!
//! `cargo test --release -p sriov-emu-tests --test serve_bench -- --ignored --nocapture`

mod serve_support;

use std::collections::BTreeMap;
use std::time::Duration;

use serve_support::{serve_dir, Node, GUEST_CHANNEL};
use sriov_emu::serve::{ServeConfig, Serving};
use sriov_emu_tests::{Guest, GuestConfig, GuestOutput};

const SECONDS: u32 = 10;

const EMU_COMMON: &str = r#"
modprobe igbvf
wait_for 30 test -e /sys/class/net/eth0
ip link set eth0 up
wait_for 30 grep -qx 1 /sys/class/net/eth0/carrier
ip addr add "$IP/24" dev eth0
if wait_for 120 ping -c 1 -W 1 "$PEER"; then result reach pass; else result reach fail; fi
"#;

const EMU_A: &str = r#"
await go
value rtt sh -c "ping -c 20 -i 0.2 $PEER | grep round-trip"
value iperf sh -c "iperf3 -c $PEER -t SECONDS -f m 2>&1 | grep receiver"
mark DONE
await done
"#;

const EMU_B: &str = r#"
iperf3 -s -D
mark READY
await done
"#;

const IGB: &str = r#"
modprobe igb
modprobe igbvf
wait_for 30 test -e /sys/class/net/eth0
ip link set eth0 up
check sriov sh -c "echo 2 > /sys/class/net/eth0/device/sriov_numvfs"
wait_for 30 test -e /sys/class/net/eth2
mkdir -p /run/netns
ip netns add a
ip netns add b
ip link set eth1 netns a
ip link set eth2 netns b
ip netns exec a /usr/sbin/ip addr add 10.0.0.1/24 dev eth1
ip netns exec b /usr/sbin/ip addr add 10.0.0.2/24 dev eth2
ip netns exec a /usr/sbin/ip link set eth1 up
ip netns exec b /usr/sbin/ip link set eth2 up
ip netns exec a /usr/sbin/ip link set lo up
ip netns exec b /usr/sbin/ip link set lo up
ip netns exec b iperf3 -s -D
if wait_for 60 ip netns exec a ping -c 1 -W 1 10.0.0.2; then result reach pass; else result reach fail "$(ip link)"; fi
value rtt sh -c "/usr/sbin/ip netns exec a ping -c 20 -i 0.2 10.0.0.2 | grep round-trip"
value iperf sh -c "/usr/sbin/ip netns exec a iperf3 -c 10.0.0.2 -t SECONDS -f m 2>&1 | grep receiver"
"#;

fn figures(out: &GuestOutput) -> (f64, f64) {
    let rtt = &out.expect_pass("rtt").detail;
    // "round-trip min/avg/max = 0.9/1.2/1.6 ms"
    let avg = rtt
        .split('=')
        .nth(1)
        .and_then(|v| v.trim().split('/').nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no RTT in {rtt:?}\n{}", out.diagnostics()));
    let iperf = &out.expect_pass("iperf").detail;
    let unit = iperf
        .find("Mbits/sec")
        .unwrap_or_else(|| panic!("no throughput in {iperf:?}\n{}", out.diagnostics()));
    let mbps = iperf[..unit]
        .split_whitespace()
        .last()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no throughput in {iperf:?}"));
    (mbps, avg)
}

fn sriov_emu() -> (f64, f64) {
    let dir = serve_dir("bench");
    let config = ServeConfig {
        vf: BTreeMap::from([
            ("0".to_string(), "mac 02:00:00:00:00:0a".to_string()),
            ("1".to_string(), "mac 02:00:00:00:00:0b".to_string()),
        ]),
        ..ServeConfig::default()
    };
    let serving = Serving::start(&dir, &config, Some(2)).expect("serve");
    let script = |me: &str, ip: &str, peer: &str, body: &str| {
        format!("ME={me}\nIP={ip}\nPEER={peer}\n{GUEST_CHANNEL}{EMU_COMMON}{body}")
            .replace("SECONDS", &SECONDS.to_string())
    };
    let mut a = Node::boot(
        &dir,
        "bench-emu-a",
        "A",
        0,
        script("A", "10.0.0.1", "10.0.0.2", EMU_A),
    );
    let b = Node::boot(
        &dir,
        "bench-emu-b",
        "B",
        1,
        script("B", "10.0.0.2", "10.0.0.1", EMU_B),
    );
    b.wait_mark("READY", 300);
    a.say("go");
    a.wait_mark("DONE", 300);
    let out_a = a.finish();
    let _ = b.finish();
    serving.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    figures(&out_a)
}

fn qemu_igb() -> (f64, f64) {
    let mut cfg = GuestConfig::new(
        "bench-qemu-igb",
        IGB.replace("SECONDS", &SECONDS.to_string()),
    )
    .qemu_args(["-device", "igb,id=pf"])
    .timeout(Duration::from_secs(300));
    cfg.cpus = 2;
    let out = Guest::new(cfg).run().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.result("reach").is_some_and(|r| r.passed()),
        "{}",
        out.diagnostics()
    );
    figures(&out)
}

#[test]
#[ignore = "a benchmark: about a minute of QEMU guests"]
fn bench_vf_to_vf_sriov_emu_vs_qemu_igb() {
    let (emu_mbps, emu_rtt) = sriov_emu();
    let (igb_mbps, igb_rtt) = qemu_igb();
    println!("VF-to-VF, TCG, iperf3 TCP {SECONDS} s and ping RTT (20 × 0.2 s):");
    println!(
        "  sriov-emu (2 guests, igbvf over vfio-user): {emu_mbps:.0} Mbit/s, RTT {emu_rtt:.3} ms"
    );
    println!(
        "  QEMU igb (1 guest, 2 vCPUs, in-process VFs): {igb_mbps:.0} Mbit/s, RTT {igb_rtt:.3} ms"
    );
    println!(
        "  ratio sriov-emu / QEMU igb: throughput {:.2}, RTT {:.2}",
        emu_mbps / igb_mbps,
        emu_rtt / igb_rtt
    );
}
