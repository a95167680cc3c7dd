//! End-to-end through `serve`, a guest that dies mid-traffic, on each card: guest A (VF 0) sends
//! iperf3 traffic to guest B (VF 1), both running the card's VF driver (igbvf, ixgbevf); A's
//! QEMU is killed in the middle. B keeps working, and a new guest attached to VF 0's socket
//! gets the same admin MAC and talks to B again.

mod serve_support;

use std::time::Duration;

use model::nic::Card;
use serve_support::{admin_macs, card_guest_script, serve_dir, show, Node};
use sriov_emu::serve::Serving;

const MAC_A: &str = "02:00:00:00:00:0a";
const MAC_B: &str = "02:00:00:00:00:0b";

/// A: reach B, start a long iperf3 run, say so, and wait to be killed.
const SCRIPT_A: &str = r#"
if wait_for 120 ping -c 1 -W 1 "$PEER"; then result reach pass; else result reach fail; fi
iperf3 -c "$PEER" -t 60 > /dev/null 2>&1 &
sleep 3
mark TRAFFIC
await done
"#;

/// The new A: reach B again.
const SCRIPT_A2: &str = r#"
if wait_for 120 ping -c 1 -W 1 "$PEER"; then result reach pass; else result reach fail; fi
check ping sh -c "ping -c 5 -W 3 $PEER > /tmp/p; rc=\$?; grep 'packet loss' /tmp/p; exit \$rc"
mark DONE
await done
"#;

/// B: serve iperf3; when told, ping the (new) A.
const SCRIPT_B: &str = r#"
iperf3 -s -D
mark READY
await ping && {
    if wait_for 120 ping -c 1 -W 1 "$PEER"; then result reach-new pass; else result reach-new fail; fi
    check ping-new sh -c "ping -c 5 -W 3 $PEER > /tmp/p; rc=\$?; grep 'packet loss' /tmp/p; exit \$rc"
    mark PINGED
}
await done
"#;

#[test]
fn killing_an_igbvf_guest_mid_traffic_leaves_the_other_working_and_a_new_guest_reattaches() {
    kill_and_reattach(Card::I82576);
}

#[test]
fn killing_an_ixgbevf_guest_mid_traffic_leaves_the_other_working_and_a_new_guest_reattaches() {
    kill_and_reattach(Card::X82599);
}

fn kill_and_reattach(card: Card) {
    let dir = serve_dir(&format!("restart-{card}"));
    let mut config = admin_macs(&[MAC_A, MAC_B]);
    config.model = Some(card);
    let guest_script = |me, ip, peer, mac, body| card_guest_script(card, me, ip, peer, mac, body);
    let serving = Serving::start(&dir, &config, Some(2)).expect("serve");
    let mut a = Node::boot(
        &dir,
        &format!("serve-restart-{card}-A"),
        "A",
        0,
        guest_script("A", "10.0.0.1", "10.0.0.2", MAC_A, SCRIPT_A),
    );
    let mut b = Node::boot(
        &dir,
        &format!("serve-restart-{card}-B"),
        "B",
        1,
        guest_script("B", "10.0.0.2", "10.0.0.1", MAC_B, SCRIPT_B),
    );
    b.wait_mark("READY", 300);
    a.wait_mark("TRAFFIC", 300);
    let rx_b = |s: &serde_json::Value| s["vfs"][1]["device"]["rx_packets"].as_u64().unwrap();
    let before = show(&dir);
    std::thread::sleep(Duration::from_secs(1));
    let during = show(&dir);
    assert!(
        rx_b(&during) > rx_b(&before) + 100,
        "A's iperf3 traffic flows into B: {} → {}\n{:#}\n{}",
        rx_b(&before),
        rx_b(&during),
        during["vfs"],
        a.guest.console()
    );
    a.guest.kill().expect("kill QEMU A");
    let out_a = a.guest.wait();
    assert!(out_a.killed);
    // The server saw the client go: VF 0 detached.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let s = show(&dir);
        if s["vfs"][0]["state"]["attached"] == false {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "VF 0 still attached");
        std::thread::sleep(Duration::from_millis(100));
    }

    let a2 = Node::boot(
        &dir,
        &format!("serve-restart-{card}-A2"),
        "A",
        0,
        guest_script("A", "10.0.0.1", "10.0.0.2", MAC_A, SCRIPT_A2),
    );
    a2.wait_mark("DONE", 300);
    b.say("ping");
    b.wait_mark("PINGED", 120);
    let out_a2 = a2.finish();
    let out_b = b.finish();
    let after = show(&dir);
    let stats = serving.server_stats();
    serving.shutdown();

    for (out, names) in [
        (&out_a2, &["modprobe", "mac", "addr", "reach", "ping"][..]),
        (
            &out_b,
            &["modprobe", "mac", "addr", "reach-new", "ping-new"][..],
        ),
    ] {
        for name in names {
            out.expect_pass(name);
        }
    }
    assert_eq!(out_a2.expect_pass("mac").detail.trim(), MAC_A);
    assert!(out_a2
        .expect_pass("ping")
        .detail
        .contains(" 0% packet loss"));
    assert!(out_b
        .expect_pass("ping-new")
        .detail
        .contains(" 0% packet loss"));
    eprintln!("servers: {stats:?}");
    assert_eq!(
        stats[0].connections, 2,
        "VF 0: the killed guest and the new one"
    );
    assert_eq!(stats[1].connections, 1);
    assert!(stats
        .iter()
        .all(|s| s.panics == 0 && s.protocol_closes == 0));
    // Frames for VF 0 while no guest was attached were dropped with a reason, not lost.
    let drops = &after["vfs"][0]["device"]["rx_drops"];
    eprintln!("VF 0 rx drops: {drops}");
    assert_eq!(after["vfs"][0]["port"]["drops"]["rx_full"], 0);
    let _ = std::fs::remove_dir_all(&dir);
}
