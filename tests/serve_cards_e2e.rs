//! The same end-to-end checks on both cards `serve` models: two guests, each on a VF of one
//! port, running the card's unmodified VF driver (igbvf on the 82576, ixgbevf on the 82599),
//! get the administrator's MACs, bring their links up, ping each other through the one
//! eswitch, and `ctl show` names the card and counts their frames. One parameterised test per
//! card. Needs the artifacts of
//! `scripts/fetch-e2e.py` (the bookworm kernel has both drivers).

mod serve_support;

use std::path::Path;
use std::time::Duration;

use model::nic::Card;
use serde_json::Value;
use serve_support::{
    admin_macs, assert_up_with_mac_and_pinged, serve_dir, vf_guest, DRIVER_UP, REACH_AND_PING,
};
use sriov_emu::control::{request, Request};
use sriov_emu::serve::{vf_socket, CommandLine, Serving};
use sriov_emu_tests::{Guest, GuestConfig, GuestOutput};

const MACS: [&str; 2] = ["02:00:00:00:00:1a", "02:00:00:00:00:1b"];
const IPS: [&str; 2] = ["10.0.9.1", "10.0.9.2"];
const PINGS: u32 = 5;

/// After the driver is up with `$ME/24` and the peer answered `$PINGS` pings: keep answering
/// while the peer finishes, then what the guest's kernel says of its interface.
const TAIL: &str = r#"
sleep 15
value tx_packets cat /sys/class/net/eth0/statistics/tx_packets
value rx_packets cat /sys/class/net/eth0/statistics/rx_packets
value driver sh -c "basename \$(readlink /sys/class/net/eth0/device/driver)"
value speed cat /sys/class/net/eth0/speed
"#;

fn script(me: &str, peer: &str, mac: &str, driver: &str) -> String {
    format!(
        "ME={me}\nPEER={peer}\nMAC={mac}\nDRIVER={driver}\nREACH_WAIT=120\nPINGS={PINGS}\n\
         {DRIVER_UP}check addr ip addr add \"$ME/24\" dev eth0\n{REACH_AND_PING}{TAIL}"
    )
}

fn guest(name: &str, socket: &Path, script: String) -> GuestConfig {
    vf_guest(name, socket, script, Duration::from_secs(300))
}

fn two_guests_ping_through_the_card(card: Card) -> (Vec<GuestOutput>, Value, String) {
    let (_, driver) = card.drivers();
    let dir = serve_dir(&format!("cards-{card}"));
    let cli = CommandLine {
        model: Some(card),
        ..CommandLine::default()
    };
    let serving = Serving::start_with(&dir, &admin_macs(&MACS), &cli).expect("serve");
    let outs: Vec<GuestOutput> = [0usize, 1]
        .map(|i| {
            Guest::new(guest(
                &format!("cards-{card}-{i}"),
                &vf_socket(&dir, i as u16),
                script(IPS[i], IPS[1 - i], MACS[i], driver),
            ))
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"))
        })
        .into_iter()
        .map(|g| g.wait())
        .collect();
    let reply = request(&dir, &Request::Show { port: None }).expect("ctl show");
    let text = reply.text.clone().unwrap_or_default();
    let show = reply.show.expect("structured report")["ports"][0].take();
    serving.shutdown();
    (outs, show, text)
}

fn check(card: Card) {
    let (outs, show, text) = two_guests_ping_through_the_card(card);
    eprintln!("--- ctl show ---\n{text}");
    let (_, driver) = card.drivers();
    for (out, mac) in outs.iter().zip(MACS) {
        assert_up_with_mac_and_pinged(out, mac);
        assert_eq!(
            out.expect_pass("driver").detail.trim(),
            driver,
            "{}",
            out.diagnostics()
        );
        let speed = out.expect_pass("speed").detail.trim().to_string();
        assert_eq!(
            speed,
            card.link_speed_mbps().to_string(),
            "the link speed the VF reports"
        );
    }
    assert_eq!(show["card"], card.name(), "ctl show names the card");
    assert!(
        text.contains(&format!("pf0: {} link/ether", card.name())),
        "{text}"
    );
    for (i, out) in outs.iter().enumerate() {
        let vf = &show["vfs"][i];
        let guest_tx: u64 = out.expect_pass("tx_packets").detail.trim().parse().unwrap();
        let switch_rx = vf["port"]["rx_packets"].as_u64().unwrap();
        assert!(
            switch_rx >= u64::from(PINGS) && switch_rx <= guest_tx,
            "vf{i}: the switch took {switch_rx} of the guest's {guest_tx} frames: {vf}"
        );
    }
}

#[test]
fn igbvf_guests_on_an_82576_ping_through_the_eswitch() {
    check(Card::I82576);
}

#[test]
fn ixgbevf_guests_on_an_82599_ping_through_the_eswitch() {
    check(Card::X82599);
}
