//! End-to-end: interrupt moderation at its longest interval loses nothing. Two stock QEMU 11.1
//! TCG guests run the unmodified `igbvf` on VF 0 (A) and VF 1 (B) of one `serve`; each sets its
//! RX vector's interval with `ethtool -C eth0 rx-usecs 8191`, which `igbvf_set_coalesce` writes
//! as 8191 << 2 = 0x7FFC to the ring's VTEITR: the largest interval the register holds (bits
//! 14:2, 82576 datasheet 8.8.12), about 8.4 ms. Then a single ping gets its reply (the held
//! interrupt fires when its interval ends), and a burst of UDP datagrams from A, smaller than
//! B's RX ring, arrives at B's socket complete (iperf3 reports no datagram lost).
//!
//! Needs the artifacts of `scripts/fetch-e2e.py` (ethtool and iperf3 in the guest).

mod serve_support;

use serve_support::{guest_script, ping_peer, serve_dir, Node};
use sriov_emu::serve::{ServeConfig, Serving};

const MAC_A: &str = "02:00:00:00:50:0a";
const MAC_B: &str = "02:00:00:00:50:0b";
const IP_A: &str = "10.0.50.1";
const IP_B: &str = "10.0.50.2";
/// The burst: 64 datagrams of 1400 bytes, well inside igbvf's 256 RX descriptors.
const BURST_BYTES: u32 = 64 * 1400;

/// Both guests: the longest interval, what igbvf reports of it, the peer reached and one ping.
const MODERATED: &str = r#"
check coalesce ethtool -C eth0 rx-usecs 8191
value rx_usecs sh -c "ethtool -c eth0 | grep '^rx-usecs:' | tr -s ' \t' ' '"
"#;

/// After a single ping answered, B serves one iperf3 test; A sends the burst when told.
const SINGLE_PING: &str = r#"
check single ping -c 1 -W 5 "$PEER"
"#;

const B_TAIL: &str = r#"
iperf3 -s -1 -D
sleep 1
mark SERVER
await done
"#;

const A_TAIL: &str = r#"
mark UP
await go
iperf3 -u -c "$PEER" -b 0 -l 1400 -n BURST -J > /tmp/burst.json 2>&1
value burst sh -c "tr -d ' \n\t' < /tmp/burst.json | grep -o '\"end\":.*' | grep -o '\"sum\":{[^}]*}' | tail -1"
mark DONE
await done
"#;

#[test]
fn at_the_longest_vteitr_interval_a_ping_is_answered_and_a_burst_arrives_complete() {
    let dir = serve_dir("moderation");
    let config: ServeConfig = toml::from_str(&format!(
        "vfs = 2\nvf.0 = \"mac {MAC_A}\"\nvf.1 = \"mac {MAC_B}\"\n"
    ))
    .expect("config");
    let serving = Serving::start(&dir, &config, None).expect("serve");
    let body = |tail: &str| format!("{MODERATED}{}{SINGLE_PING}{tail}", ping_peer(1));
    let mut a = Node::boot(
        &dir,
        "moderation-A",
        "A",
        0,
        guest_script(
            "A",
            IP_A,
            IP_B,
            MAC_A,
            &body(&A_TAIL.replace("BURST", &BURST_BYTES.to_string())),
        ),
    );
    let b = Node::boot(
        &dir,
        "moderation-B",
        "B",
        1,
        guest_script("B", IP_B, IP_A, MAC_B, &body(B_TAIL)),
    );
    a.wait_mark("UP", 300);
    b.wait_mark("SERVER", 300);
    a.say("go");
    a.wait_mark("DONE", 180);
    let (a, b) = (a.finish(), b.finish());
    let report = serve_support::show(&dir);
    serving.shutdown();
    for out in [&a, &b] {
        for name in ["mac", "addr", "coalesce", "reach", "ping", "single"] {
            out.expect_pass(name);
        }
        assert_eq!(out.expect_pass("rx_usecs").detail.trim(), "rx-usecs: 8191");
    }
    // iperf3's end-of-test summary as the server counted it: `"sum":{...,"lost_packets":0,...}`.
    let sum = a.expect_pass("burst").detail.trim().to_string();
    let sum: serde_json::Value =
        serde_json::from_str(&format!("{{{sum}}}")).unwrap_or_else(|e| panic!("{e}: {sum}"));
    let field = |name: &str| {
        sum["sum"][name]
            .as_u64()
            .unwrap_or_else(|| panic!("no {name} in {sum}"))
    };
    let (packets, lost) = (field("packets"), field("lost_packets"));
    eprintln!("burst: {packets} datagrams, {lost} lost");
    assert_eq!(packets, 64, "the whole burst was sent");
    assert_eq!(lost, 0, "datagrams lost at the longest interval");
    // The switch delivered the burst to B's VF.
    let delivered = report["vfs"][1]["port"]["rx_packets"].as_u64().unwrap_or(0);
    assert!(delivered >= 64, "{report:#}");
    eprintln!("VF 1's device counters: {:#}", report["vfs"][1]["device"]);
    let _ = std::fs::remove_dir_all(&dir);
}
