//! The same end-to-end checks on both cards `serve` models: two guests, each on a VF of one
//! port, running the card's unmodified VF driver (igbvf on the 82576, ixgbevf on the 82599),
//! get the administrator's MACs, bring their links up, ping each other through the one
//! eswitch, and `ctl show` names the card and counts their frames. One parameterised test per
//! card. The 82599's guests have two vCPUs, so ixgbevf runs two queue pairs, and 16 TCP streams
//! of iperf3 between them land on both RX queues of each VF (RSS). Needs the artifacts of
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

/// The 82599's guests: guest 1 serves iperf3 from the start, guest 0 sends it 16 streams after
/// its pings; both then report how many frames each RX queue took (ixgbevf's ring counters).
const RSS_SERVER: &str = "iperf3 -s -D\n";
const RSS_CLIENT: &str = r#"
check iperf sh -c "iperf3 -c $PEER -P 16 -t 3 | tail -4"
"#;
const RSS_REPORT: &str = r#"
value cpus nproc
value rx-queues sh -c "ethtool -S eth0 | grep -E 'rx_queue_[0-9]+_packets' | tr -s ' \n' ' '"
"#;

fn script(i: usize, mac: &str, card: Card) -> String {
    let (_, driver) = card.drivers();
    let rss = card == Card::X82599;
    let (before, after) = match (rss, i) {
        (false, _) => ("", ""),
        (true, 0) => ("", RSS_CLIENT),
        (true, _) => (RSS_SERVER, ""),
    };
    format!(
        "ME={}\nPEER={}\nMAC={mac}\nDRIVER={driver}\nREACH_WAIT=120\nPINGS={PINGS}\n\
         {DRIVER_UP}check addr ip addr add \"$ME/24\" dev eth0\n{before}{REACH_AND_PING}{after}\
         {TAIL}{}",
        IPS[i],
        IPS[1 - i],
        if rss { RSS_REPORT } else { "" }
    )
}

fn guest(name: &str, socket: &Path, script: String) -> GuestConfig {
    vf_guest(name, socket, script, Duration::from_secs(300))
}

fn two_guests_ping_through_the_card(card: Card) -> (Vec<GuestOutput>, Value, String) {
    let dir = serve_dir(&format!("cards-{card}"));
    let cli = CommandLine {
        model: Some(card),
        ..CommandLine::default()
    };
    let serving = Serving::start_with(&dir, &admin_macs(&MACS), &cli).expect("serve");
    let outs: Vec<GuestOutput> = [0usize, 1]
        .map(|i| {
            let mut cfg = guest(
                &format!("cards-{card}-{i}"),
                &vf_socket(&dir, i as u16),
                script(i, MACS[i], card),
            );
            if card == Card::X82599 {
                cfg.cpus = 2;
            }
            Guest::new(cfg).spawn().unwrap_or_else(|e| panic!("{e}"))
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
        // The port's TX is what the switch took from the VF (its RX what it delivered).
        let switch_took = vf["port"]["tx_packets"].as_u64().unwrap();
        assert!(
            switch_took >= u64::from(PINGS) && switch_took <= guest_tx,
            "vf{i}: the switch took {switch_took} of the guest's {guest_tx} frames: {vf}"
        );
    }
    if card == Card::X82599 {
        outs[0].expect_pass("iperf");
        for (i, out) in outs.iter().enumerate() {
            assert_eq!(out.expect_pass("cpus").detail.trim(), "2");
            let queues = &out.expect_pass("rx-queues").detail;
            let packets = |q: u32| -> u64 {
                let name = format!("rx_queue_{q}_packets:");
                let mut words = queues.split_whitespace();
                words.find(|w| *w == name);
                let n = words.next().and_then(|n| n.parse().ok());
                n.unwrap_or_else(|| panic!("vf{i}: no {name} in {queues:?}"))
            };
            assert!(
                packets(0) > 0 && packets(1) > 0,
                "vf{i}: RSS spread the streams over both RX queues: {queues}"
            );
        }
    }
}

#[test]
fn igbvf_guests_on_an_82576_ping_through_the_eswitch() {
    check(Card::I82576);
}

#[test]
fn ixgbevf_guests_on_an_82599_ping_through_the_eswitch_and_spread_tcp_over_both_rx_queues() {
    check(Card::X82599);
}
