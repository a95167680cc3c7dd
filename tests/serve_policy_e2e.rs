//! End-to-end through `serve`, the eswitch policies under real guests, on each card: one NIC
//! with 3 VFs in process; guest A on VF 0 and guest B on VF 1 run the card's unmodified VF
//! driver (`igbvf` on an 82576, `ixgbevf` on an 82599), VF 2 has no guest.
//! Once A and B reach each other, the host steps both guests through phases over a second serial
//! port (`/dev/ttyS1`, a QEMU UNIX socket chardev) and changes the VFs' policies with the
//! control protocol in between:
//! 1. ARP for an address nobody owns: the broadcasts reach every other VF and the PF.
//! 2. Port VLAN 10 on VFs 0 and 1: A still reaches B, VF 2 receives nothing of A's, frames on
//!    the uplink carry tag 10.
//! 3. Anti-spoof: A's MAC change is NACKed (refusal counted); a macvlan's frames from a MAC A
//!    does not own are dropped as `spoof_mac`; with trust on the MAC change succeeds (on the
//!    82599 once ixgbevf is back: ixgbe revokes the VF's clear-to-send on a trust change, and
//!    ixgbevf's link goes down until it has redone its handshake).
//! 4. `rate 100` on VF 0: iperf3 A→B (after its first second), reported and checked against
//!    ±10 % of the TCP goodput 100 Mbit/s carries; the two cards' tests take turns at this step.

mod serve_support;

use std::sync::{Arc, Mutex};

use eswitch::{Delivery, PortId};
use model::nic::Card;
use serde_json::Value;
use serve_support::{
    admin_macs, assert_shaped_tcp, card_guest_script, ctl, serve_dir, show, tcp_goodput_mbps, Node,
};
use sriov_emu::control::{request, Request};
use sriov_emu::serve::Serving;

const MAC_A: &str = "02:00:00:00:00:0a";
const MAC_B: &str = "02:00:00:00:00:0b";
const NEW_MAC: &str = "02:00:00:00:00:99";
const SPOOF_MAC: &str = "02:00:00:00:00:77";
/// Held through a test's rate step (see there).
static RATE_STEP: Mutex<()> = Mutex::new(());

/// After igbvf is up: reach the peer, then the phases the host asks for, one per line on
/// /dev/ttyS1.
const REACH: &str = r#"
if wait_for 120 ping -c 1 -W 1 "$PEER"; then result reach pass; else result reach fail "no $PEER"; fi
"#;

const SCRIPT_A: &str = r#"
mark READY
await arp && {
    ping -c 3 -W 1 10.0.0.99 > /dev/null 2>&1
    mark ARP
}
await vlan && {
    check vlan-ping sh -c "ping -c 3 -W 3 $PEER > /tmp/p; rc=\$?; grep 'packet loss' /tmp/p; exit \$rc"
    ping -c 2 -W 1 10.0.0.99 > /dev/null 2>&1
    mark VLAN
}
await spoof && {
    check_fails mac-change-refused ip link set dev eth0 address NEW_MAC
    check_eq mac-unchanged "$MAC" cat /sys/class/net/eth0/address
    modprobe macvlan
    ip link add link eth0 name mv0 address SPOOF_MAC type macvlan mode private
    ip link set mv0 up
    ip addr add 10.0.1.1/24 dev mv0
    ping -c 3 -W 1 10.0.1.2 > /dev/null 2>&1
    ip link del mv0
    # Let serve take the last of mv0's frames before the test counts the drops: a tail write
    # it gets while its connection naps waits up to a few milliseconds, and a drop counted after
    # the count would look like one of the next phase's.
    sleep 1
    mark SPOOF
}
await trust && {
    if [ "$DRIVER" = ixgbevf ]; then
        # ixgbe "resets the VF to reconfigure features" on a trust change (ixgbe_ndo_set_vf_trust):
        # CTS revoked and a ping without it; ixgbevf's link goes down and it redoes its
        # handshake. Wait for it to be back.
        sleep 1
        wait_for 30 grep -qx 1 /sys/class/net/eth0/carrier
        value link-down-after-trust sh -c "dmesg | grep -c 'NIC Link is Down'"
    fi
    check mac-change-trusted ip link set dev eth0 address NEW_MAC
    check_eq mac-changed NEW_MAC cat /sys/class/net/eth0/address
    ping -c 2 -W 1 10.0.0.98 > /dev/null 2>&1
    mark TRUST
}
await rate && {
    # The first second (TCP's slow start) is left out of the figures.
    value iperf sh -c "iperf3 -c $PEER -t 6 -O 1 -f m 2>&1 | grep -E 'sender|receiver|error' | tr '\n' ' '"
    mark RATE
}
await done
"#;

const SCRIPT_B: &str = r#"
iperf3 -s -D
mark READY
await done
"#;

fn script(card: Card, me: &str, ip: &str, peer: &str, mac: &str, body: &str) -> String {
    card_guest_script(card, me, ip, peer, mac, &format!("{REACH}{body}"))
        .replace("NEW_MAC", NEW_MAC)
        .replace("SPOOF_MAC", SPOOF_MAC)
}

fn port(s: &Value, vf: usize, field: &str) -> u64 {
    s["vfs"][vf]["port"][field].as_u64().unwrap()
}

fn pf_port(s: &Value, name: &str, field: &str) -> u64 {
    s["switch_ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p[0] == name)
        .map(|p| p[1][field].as_u64().unwrap())
        .unwrap()
}

fn drop_count(s: &Value, vf: usize, reason: &str) -> u64 {
    s["vfs"][vf]["port"]["drops"][reason].as_u64().unwrap()
}

fn refusals(s: &Value, vf: usize) -> u64 {
    s["vfs"][vf]["refusals"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum()
}

fn mac_bytes(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

#[test]
fn arp_broadcast_port_vlan_anti_spoof_and_rate_with_two_igbvf_guests() {
    policies(Card::I82576);
}

#[test]
fn arp_broadcast_port_vlan_anti_spoof_and_rate_with_two_ixgbevf_guests() {
    policies(Card::X82599);
}

fn policies(card: Card) {
    let dir = serve_dir(&format!("policy-{card}"));
    let mut config = admin_macs(&[MAC_A, MAC_B]);
    config.model = Some(card);
    let serving = Serving::start(&dir, &config, Some(3)).expect("serve");
    let uplink: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let up = uplink.clone();
    serving.nic().set_port_sink(
        PortId::Uplink(0),
        Some(Arc::new(move |d: &Delivery| {
            up.lock().unwrap().push(d.frame.to_vec())
        })),
    );
    let mut a = Node::boot(
        &dir,
        &format!("serve-policy-{card}-A"),
        "A",
        0,
        script(card, "A", "10.0.0.1", "10.0.0.2", MAC_A, SCRIPT_A),
    );
    let b = Node::boot(
        &dir,
        &format!("serve-policy-{card}-B"),
        "B",
        1,
        script(card, "B", "10.0.0.2", "10.0.0.1", MAC_B, SCRIPT_B),
    );
    a.wait_mark("READY", 300);
    b.wait_mark("READY", 300);

    // 1. ARP for 10.0.0.99: every broadcast reaches every other VF, the PF and the uplink.
    let s0 = show(&dir);
    a.say("arp");
    a.wait_mark("ARP", 60);
    let s1 = show(&dir);
    let d = |s: &Value, t: &Value, vf: usize, f: &str| port(t, vf, f) - port(s, vf, f);
    let bcast_a = d(&s0, &s1, 0, "tx_broadcast");
    let bcast_b = d(&s0, &s1, 1, "tx_broadcast");
    eprintln!("ARP phase: A sent {bcast_a} broadcasts, B {bcast_b}");
    assert!(bcast_a >= 3, "A's ARP requests: {bcast_a}");
    assert_eq!(
        d(&s0, &s1, 1, "rx_broadcast"),
        bcast_a,
        "B got A's broadcasts"
    );
    assert_eq!(d(&s0, &s1, 0, "rx_broadcast"), bcast_b);
    assert_eq!(
        d(&s0, &s1, 2, "rx_broadcast"),
        bcast_a + bcast_b,
        "VF 2 (no guest) got them"
    );
    assert_eq!(
        pf_port(&s1, "pf", "rx_broadcast") - pf_port(&s0, "pf", "rx_broadcast"),
        bcast_a + bcast_b,
        "the PF got them"
    );

    // 2. Port VLAN 10 on VFs 0 and 1.
    ctl(&dir, 0, "vlan 10");
    ctl(&dir, 1, "vlan 10");
    uplink.lock().unwrap().clear();
    let s2 = show(&dir);
    a.say("vlan");
    a.wait_mark("VLAN", 90);
    let s3 = show(&dir);
    assert_eq!(
        port(&s3, 2, "rx_packets"),
        port(&s2, 2, "rx_packets"),
        "VF 2 is outside VLAN 10: nothing of A's reaches it"
    );
    assert!(d(&s2, &s3, 1, "rx_packets") >= 3, "B got A's pings");
    let a_mac = mac_bytes(MAC_A);
    let from_a: Vec<Vec<u8>> = uplink
        .lock()
        .unwrap()
        .iter()
        .filter(|f| f.len() >= 16 && f[6..12] == a_mac)
        .cloned()
        .collect();
    assert!(!from_a.is_empty(), "A's ARP broadcasts reached the uplink");
    for f in &from_a {
        assert_eq!(&f[12..14], &[0x81, 0x00], "tagged on the uplink");
        assert_eq!(u16::from_be_bytes([f[14], f[15]]) & 0x0fff, 10, "VID 10");
    }
    ctl(&dir, 0, "vlan 0");
    ctl(&dir, 1, "vlan 0");

    // 3. Anti-spoof: admin MAC, trust off, spoofchk on.
    let s4 = show(&dir);
    a.say("spoof");
    a.wait_mark("SPOOF", 90);
    let s5 = show(&dir);
    assert!(
        refusals(&s5, 0) > refusals(&s4, 0),
        "the MAC change was NACKed: {}",
        s5["vfs"][0]["refusals"]
    );
    assert!(
        drop_count(&s5, 0, "spoof_mac") > drop_count(&s4, 0, "spoof_mac"),
        "macvlan frames from {SPOOF_MAC} dropped as spoof_mac"
    );
    assert_eq!(s5["vfs"][0]["policy"]["mac"], MAC_A);
    ctl(&dir, 0, "trust on");
    a.say("trust");
    a.wait_mark("TRUST", 90);
    let s6 = show(&dir);
    assert_eq!(
        s6["vfs"][0]["policy"]["mac"], NEW_MAC,
        "trusted: the change took"
    );
    assert_eq!(
        drop_count(&s6, 0, "spoof_mac"),
        drop_count(&s5, 0, "spoof_mac"),
        "frames from the new MAC pass anti-spoof"
    );
    assert!(d(&s5, &s6, 0, "tx_broadcast") >= 1);

    // 4. Rate: 100 Mbit/s on VF 0. The two cards' tests take turns here: four TCG guests
    // sharing a small host's cores would make the guests' CPU, not the shaper, the limit.
    let turn = RATE_STEP.lock().unwrap_or_else(|e| e.into_inner());
    ctl(&dir, 0, "rate 100");
    a.say("rate");
    a.wait_mark("RATE", 120);
    drop(turn);
    let s7 = show(&dir);
    eprintln!(
        "rate phase: VF 0 tx_deferred {}",
        port(&s7, 0, "tx_deferred")
    );

    let out_b = b.finish();
    let out_a = a.finish();
    let text = request(&dir, &Request::Show { port: None })
        .unwrap()
        .text
        .unwrap();
    eprintln!("--- ctl show ---\n{text}");
    serving.shutdown();
    for out in [&out_a, &out_b] {
        for name in ["modprobe", "mac", "addr", "reach"] {
            assert!(
                out.result(name).is_some_and(|r| r.passed()),
                "{}: {name}\n{}",
                out.name,
                out.diagnostics()
            );
        }
    }
    if card == Card::X82599 {
        // ixgbe's trust change took ixgbevf's link down (and its reset task brought it back).
        let downs: u32 = out_a
            .expect_pass("link-down-after-trust")
            .detail
            .trim()
            .parse()
            .unwrap();
        assert!(downs >= 1, "{}", out_a.diagnostics());
    }
    for name in [
        "vlan-ping",
        "mac-change-refused",
        "mac-unchanged",
        "mac-change-trusted",
        "mac-changed",
    ] {
        out_a.expect_pass(name);
    }
    let iperf = out_a.expect_pass("iperf").detail.clone();
    eprintln!("iperf3 A→B at rate 100: {iperf}");
    let mbps = receiver_mbps(&iperf)
        .unwrap_or_else(|| panic!("no receiver figure in {iperf:?}\n{}", out_a.diagnostics()));
    eprintln!(
        "measured {mbps:.1} Mbit/s (target {:.1} ± 10 %, the TCP goodput of 100 Mbit/s)",
        tcp_goodput_mbps(100.0)
    );
    // The shaper's 5 ms burst absorbs its timer waking late on a busy host.
    assert_shaped_tcp(mbps, 100.0, &iperf);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The receiver's bitrate in iperf3's summary (`... 95.3 Mbits/sec ... receiver`).
fn receiver_mbps(summary: &str) -> Option<f64> {
    let at = summary.find("receiver")?;
    let before = &summary[..at];
    let unit = before.rfind("Mbits/sec")?;
    before[..unit].split_whitespace().last()?.parse().ok()
}
