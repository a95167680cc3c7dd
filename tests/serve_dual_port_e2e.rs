//! End-to-end: a dual-port card in one `serve` — ports pf0 and pf1, each with its own PF,
//! VF, embedded switch and uplink, configured as a user writes it (`[ports.pf1]`) — and a
//! stock QEMU 11.1 TCG guest running the unmodified `igbvf` on `pf0-vf0.sock` (A) and one on
//! `pf1-vf0.sock` (B), in one subnet. A card switches between the VFs of one port only (82576
//! datasheet 7.10.3.6, VM-to-VM loopback within a LAN port; mlx5 has one e-switch per PF), so
//! the VFs of two ports reach each other only over a wire between the ports' uplinks:
//!
//! - no cable (both uplinks `none`): A and B ping each other and nobody answers; each guest's
//!   ARP requests go out its own port's uplink into nothing (counted as unclaimed), nothing
//!   comes in at either uplink, and neither VF receives a frame;
//! - a `-netdev dgram` cable on loopback UDP between the two uplinks: they ping each other,
//!   both uplinks' wire counters rise (what one sent, the other received), and `tcpdump -r`
//!   of each uplink's pcap shows the ICMP echoes crossing it both ways. B's MAC is set with
//!   `ctl --port pf1` before B boots, so B's driver seeing it proves the port addressing.
//!
//! The tests take turns (one lock): each boots two TCG guests. Needs the artifacts of
//! `scripts/fetch-e2e.py` (tcpdump included).

mod serve_support;

use std::sync::Mutex;
use std::time::Instant;

use serde_json::Value;
use serve_support::{
    ctl_port, free_port, guest_script, ping_peer, serve_dir, show_port, tcpdump, Node,
};
use sriov_emu::serve::{ServeConfig, Serving};

/// One test at a time: each boots two TCG guests on a 2-core host.
static TURN: Mutex<()> = Mutex::new(());

const MAC_A: &str = "02:00:00:00:40:0a";
const MAC_B: &str = "02:00:00:00:40:0b";
const IP_A: &str = "10.0.40.1";
const IP_B: &str = "10.0.40.2";
/// ICMP echo requests each side sends once the other answers.
const PINGS: u32 = 5;

/// Without a cable: when told, ping the peer (which must fail), and show the neighbour entry.
const ISOLATED: &str = r#"
mark UP
await go
check_fails isolated ping -c 3 -W 1 "$PEER"
value neigh ip neigh show dev eth0
mark DONE
await done
"#;

/// Guest A on pf0's VF 0 and guest B on pf1's VF 0, each running `body`.
fn boot_pair(dir: &std::path::Path, tag: &str, body: &str) -> (Node, Node) {
    let a = Node::boot_on_port(
        dir,
        &format!("{tag}-A"),
        "A",
        0,
        0,
        guest_script("A", IP_A, IP_B, MAC_A, body),
    );
    let b = Node::boot_on_port(
        dir,
        &format!("{tag}-B"),
        "B",
        1,
        0,
        guest_script("B", IP_B, IP_A, MAC_B, body),
    );
    (a, b)
}

/// Counter `field` of switch port `name` (`uplink0`, `pf`) in a port's report.
fn switch_port(report: &Value, name: &str, field: &str) -> u64 {
    report["switch_ports"]
        .as_array()
        .expect("switch ports")
        .iter()
        .find(|p| p[0] == name)
        .and_then(|p| p[1][field].as_u64())
        .unwrap_or_else(|| panic!("no {name}.{field} in {report:#}"))
}

/// Counter `field` of VF 0's switch port.
fn vf0(report: &Value, field: &str) -> u64 {
    report["vfs"][0]["port"][field]
        .as_u64()
        .expect("VF counter")
}

/// Counter `field` of the port's uplink wire.
fn wire(report: &Value, field: &str) -> u64 {
    report["uplinks"][0]["counters"][field]
        .as_u64()
        .unwrap_or_else(|| panic!("no uplink counter {field} in {report:#}"))
}

#[test]
fn without_a_cable_vfs_on_two_ports_cannot_reach_each_other() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let dir = serve_dir("dual-port-isolated");
    let config: ServeConfig = toml::from_str(&format!(
        "vfs = 1\nvf.0 = \"mac {MAC_A}\"\n[ports.pf1]\nvfs = 1\nvf.0 = \"mac {MAC_B}\"\n"
    ))
    .expect("config");
    let serving = Serving::start(&dir, &config, None).expect("serve");
    eprint!("{}", serving.banner());
    let (mut a, mut b) = boot_pair(&dir, "dual-port-isolated", ISOLATED);
    a.wait_mark("UP", 300);
    b.wait_mark("UP", 300);
    // Both are up before either pings: each tries while the other could answer.
    a.say("go");
    b.say("go");
    a.wait_mark("DONE", 120);
    b.wait_mark("DONE", 120);
    let (pf0, pf1) = (show_port(&dir, 0), show_port(&dir, 1));
    let (a, b) = (a.finish(), b.finish());
    serving.shutdown();
    eprintln!(
        "A neigh: {}\nB neigh: {}",
        a.expect_pass("neigh").detail,
        b.expect_pass("neigh").detail
    );
    for out in [&a, &b] {
        for name in ["mac", "addr", "isolated"] {
            out.expect_pass(name);
        }
    }
    for (name, r) in [("pf0", &pf0), ("pf1", &pf1)] {
        assert_eq!(r["port"], name);
        // The guest's ARP requests left its VF for its own port's uplink, into nothing...
        assert!(vf0(r, "tx_broadcast") > 0, "{name}: {r:#}");
        assert!(
            switch_port(r, "uplink0", "rx_broadcast") >= vf0(r, "tx_broadcast"),
            "{name}: {r:#}"
        );
        assert!(
            r["nic"]["unclaimed"]["uplink0"].as_u64().unwrap_or(0) > 0,
            "{name}: {r:#}"
        );
        // ...and nothing arrived: not at the uplink from a wire, not at the VF.
        assert_eq!(switch_port(r, "uplink0", "tx_packets"), 0, "{name}");
        assert_eq!(vf0(r, "rx_packets"), 0, "{name}: a frame reached the VF");
        assert_eq!(r["uplinks"].as_array().map(Vec::len), Some(0), "{name}");
    }
    eprintln!("isolated test: {:.1}s", started.elapsed().as_secs_f64());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_dgram_cable_between_the_uplinks_joins_the_two_ports() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let dir = serve_dir("dual-port-cable");
    let pcap = serve_dir("dual-port-cable-pcap");
    let (pa, pb) = (free_port(true), free_port(true));
    let config: ServeConfig = toml::from_str(&format!(
        r#"
        vfs = 1
        vf.0 = "mac {MAC_A}"
        uplink = {{ kind = "dgram", local = "127.0.0.1:{pa}", remote = "127.0.0.1:{pb}" }}
        [ports.pf1]
        vfs = 1
        uplink = {{ kind = "dgram", local = "127.0.0.1:{pb}", remote = "127.0.0.1:{pa}" }}
        "#
    ))
    .expect("config");
    let mut serving = Serving::start(&dir, &config, None).expect("serve");
    serving.start_capture(&pcap).expect("pcap");
    // pf1's VF gets its MAC from `ctl --port pf1`; pf0's VF keeps the file's.
    ctl_port(&dir, 1, 0, &format!("mac {MAC_B}"));
    assert_eq!(show_port(&dir, 0)["vfs"][0]["policy"]["mac"], MAC_A);
    eprint!("{}", serving.banner());

    // Each reaches the other and pings it, then waits (answering) until the other is done.
    let body = format!("{}mark PINGED\nawait done\n", ping_peer(PINGS));
    let (a, b) = boot_pair(&dir, "dual-port-cable", &body);
    a.wait_mark("PINGED", 300);
    b.wait_mark("PINGED", 300);
    let (a, b) = (a.finish(), b.finish());
    let (pf0, pf1) = (show_port(&dir, 0), show_port(&dir, 1));
    serving.shutdown();
    for out in [&a, &b] {
        for name in ["mac", "addr", "reach", "ping"] {
            out.expect_pass(name);
        }
        let ping = &out.expect_pass("ping").detail;
        assert!(ping.contains(" 0% packet loss"), "{}: {ping}", out.name);
    }
    for (name, r) in [("pf0", &pf0), ("pf1", &pf1)] {
        assert_eq!(r["uplinks"][0]["kind"], "dgram", "{name}");
        assert_eq!(r["uplinks"][0]["carrier"], true, "{name}");
        for field in ["tx_frames", "rx_frames"] {
            assert!(
                wire(r, field) > u64::from(2 * PINGS),
                "{name} {field}: {r:#}"
            );
        }
        for field in ["rx_runt", "rx_oversize", "tx_errors", "tx_dropped"] {
            assert_eq!(wire(r, field), 0, "{name} {field}");
        }
        // What came off the wire went into the port's switch and on to its VF.
        assert_eq!(
            switch_port(r, "uplink0", "tx_packets"),
            wire(r, "rx_frames"),
            "{name}"
        );
        assert!(vf0(r, "rx_packets") > u64::from(2 * PINGS), "{name}");
    }
    // What one end sent, the other received: the cable is the only way between the ports.
    assert_eq!(wire(&pf0, "tx_frames"), wire(&pf1, "rx_frames"));
    assert_eq!(wire(&pf1, "tx_frames"), wire(&pf0, "rx_frames"));

    // Each uplink's capture has the echoes both ways, between the two guests' MACs.
    for name in ["pf0", "pf1"] {
        let text = tcpdump(&pcap.join(format!("{name}-uplink0.pcap")));
        // `SRC_MAC > DST_MAC, ethertype IPv4 (0x0800), length 98: SRC_IP > DST_IP: ICMP ...`
        let count = |(mac_s, ip_s): (&str, &str), (mac_d, ip_d): (&str, &str), kind: &str| {
            let (macs, ips) = (
                format!("{mac_s} > {mac_d}"),
                format!("{ip_s} > {ip_d}: {kind}"),
            );
            text.lines()
                .filter(|l| l.contains(&macs) && l.contains(&ips))
                .count()
        };
        let (ga, gb) = ((MAC_A, IP_A), (MAC_B, IP_B));
        let a_to_b = count(ga, gb, "ICMP echo request");
        let b_to_a = count(gb, ga, "ICMP echo reply");
        let b_asks = count(gb, ga, "ICMP echo request");
        let a_answers = count(ga, gb, "ICMP echo reply");
        eprintln!(
            "{name}-uplink0.pcap: {} lines; A→B {a_to_b} requests, {b_to_a} replies; \
             B→A {b_asks} requests, {a_answers} replies",
            text.lines().count()
        );
        for n in [a_to_b, b_to_a, b_asks, a_answers] {
            assert!(n >= PINGS as usize, "{name}:\n{text}");
        }
    }
    eprintln!("cable test: {:.1}s", started.elapsed().as_secs_f64());
    for d in [&dir, &pcap] {
        let _ = std::fs::remove_dir_all(d);
    }
}
