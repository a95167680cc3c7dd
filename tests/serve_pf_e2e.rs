//! End-to-end through `serve`: the 82576 PF function on `pf0.sock` under the unmodified Linux
//! `igb`, beside a VF under `igbvf`, each in its own stock QEMU 11.1 guest (TCG).
//!
//! Guest P (the PF): igb probes without an error and sees no SR-IOV capability (QEMU hides
//! it; the emulator's PF agent drives the VFs), `ethtool` reports 1000 Mb/s, full duplex and a
//! link, `ethtool -t DEV offline` passes all five of igb's tests (register, EEPROM, interrupt,
//! loopback, link), and afterwards the interface works again: P and the VF's guest B ping each
//! other through the eswitch. Then B sends ARP requests for an address nobody owns: P's
//! hardware broadcast counter (BPRC, `ethtool -S`'s `rx_broadcast`) rises by as many, and so
//! do the switch's counters of every other VF — one with an administrative MAC and no guest,
//! one with neither — whose devices count the copies they could not take (no driver). Needs
//! the artifacts of `scripts/fetch-e2e.py`.

mod serve_support;

use std::path::Path;

use serde_json::Value;
use serve_support::{
    ctl, guest_script, num, serve_dir, show, Node, DRIVER_UP, GUEST_CHANNEL, REACH_AND_PING,
};
use sriov_emu::serve::{pf_socket, ServeConfig, Serving};
use sriov_emu_tests::GuestOutput;

const PF_MAC: &str = "02:00:00:00:00:0a";
const VF_MAC: &str = "02:00:00:00:00:0b";
/// VF 1: an administrative MAC, no guest. VF 2: no configuration and no guest.
const IDLE_VF_MAC: &str = "02:00:00:00:00:0c";
const PF_IP: &str = "10.0.0.1";
const VF_IP: &str = "10.0.0.2";
/// Nobody has it: B's ARP requests for it go unanswered.
const NOBODY: &str = "10.0.0.99";
/// ARP requests B sends.
const ARPS: u64 = 5;
const PINGS: u32 = 5;

/// Guest P, after igb is up on the PF ([`DRIVER_UP`]): ethtool's view, the offline
/// self-test, then traffic ([`REACH_AND_PING`]) and the broadcast counter on the host's word.
const SCRIPT_P: &str = r#"
# QEMU hides the SR-IOV capability: igb finds no VFs to enable.
check_fails no-sriov test -e /sys/class/net/eth0/device/sriov_totalvfs
ethtool eth0 > /tmp/ethtool 2>&1
value speed grep 'Speed:' /tmp/ethtool
value duplex grep 'Duplex:' /tmp/ethtool
value link-detected grep 'Link detected:' /tmp/ethtool
value driver sh -c "ethtool -i eth0 | grep -E '^(driver|firmware-version|bus-info):' | tr '\n' ' '"
# igb's offline self-test: the interface goes down, five tests run, it comes back up.
ethtool -t eth0 offline > /tmp/selftest 2>&1
rc=$?
if [ "$rc" -eq 0 ] && grep -q 'test result is PASS' /tmp/selftest; then
    result selftest pass "$(grep 'test result' /tmp/selftest)"
else
    result selftest fail "rc=$rc: $(tr '\n' ';' < /tmp/selftest)"
fi
for t in Register Eeprom Interrupt Loopback Link; do
    value "selftest-$t" sh -c "grep '^$t test' /tmp/selftest | tr '\t' ' '"
done
cat /tmp/selftest
if wait_for 30 grep -qx 1 /sys/class/net/eth0/carrier; then
    result carrier-after-selftest pass up
else
    result carrier-after-selftest fail "carrier $(cat /sys/class/net/eth0/carrier 2>&1)"
fi
check addr ip addr add "$IP/24" dev eth0
"#;

const SCRIPT_P_COUNT: &str = r#"
mark UP
rx_broadcast() { ethtool -S eth0 | awk '$1 == "rx_broadcast:" { print $2 }'; }
await count && value bcast-before rx_broadcast
mark COUNTED
await after && value bcast-after rx_broadcast
ethtool -S eth0 | grep -E 'rx_(packets|broadcast|multicast|missed)|tx_packets'
ip -s link show dev eth0
mark AFTER
await done
"#;

/// Guest B, after igbvf is up on VF 0 and P answered its pings ([`REACH_AND_PING`]; P runs
/// its self-test first): on the host's word, ARP for an address nobody owns.
const SCRIPT_B: &str = r#"
mark UP
await arp
# busybox arping: broadcast requests, one a second; no reply comes, so it fails.
check_fails arp-nobody arping -c ARPS -w 10 -I eth0 NOBODY
mark ARPED
await done
"#;

fn pf_script() -> String {
    format!(
        "ME=P\nIP={PF_IP}\nPEER={VF_IP}\nMAC={PF_MAC}\nDRIVER=igb\nREACH_WAIT=120\n\
         PINGS={PINGS}\n{GUEST_CHANNEL}{DRIVER_UP}{SCRIPT_P}{REACH_AND_PING}{SCRIPT_P_COUNT}"
    )
}

fn vf_script() -> String {
    let body = SCRIPT_B
        .replace("ARPS", &ARPS.to_string())
        .replace("NOBODY", NOBODY);
    guest_script(
        "B",
        VF_IP,
        PF_IP,
        VF_MAC,
        &format!("REACH_WAIT=240\nPINGS={PINGS}\n{REACH_AND_PING}{body}"),
    )
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a counter: {v}"))
}

/// The PF port's counters in a `ctl show` report.
fn pf_port(report: &Value) -> &Value {
    report["switch_ports"]
        .as_array()
        .and_then(|ports| ports.iter().find(|p| p[0] == "pf"))
        .map(|p| &p[1])
        .expect("a pf port")
}

/// The guest's kernel log between the markers `/init` prints after the script.
fn dmesg(out: &GuestOutput) -> &str {
    let c = &out.console;
    let start = c.find("SRIOV-EMU-DMESG-BEGIN").map_or(0, |i| i + 21);
    let end = c.find("SRIOV-EMU-DMESG-END").unwrap_or(c.len());
    &c[start..end.max(start)]
}

fn boot(dir: &Path) -> (Node, Node) {
    let p = Node::boot_on(dir, "serve-pf-P", "P", &pf_socket(dir), pf_script());
    let b = Node::boot(dir, "serve-pf-B", "B", 0, vf_script());
    (p, b)
}

#[test]
fn igb_on_the_pf_passes_ethtool_self_test_and_sees_a_vfs_arp_broadcast_with_every_other_vf() {
    let dir = serve_dir("serve-pf");
    let config = ServeConfig {
        pf_mac: Some(PF_MAC.into()),
        ..ServeConfig::default()
    };
    let serving = Serving::start(&dir, &config, Some(3)).expect("serve");
    ctl(&dir, 0, &format!("mac {VF_MAC}"));
    ctl(&dir, 1, &format!("mac {IDLE_VF_MAC}"));
    eprint!("{}", serving.banner());

    let (mut p, mut b) = boot(&dir);
    p.wait_mark("UP", 300);
    b.wait_mark("UP", 300);

    // The ARP experiment: P counts, B asks for an address nobody has, P counts again.
    let before = show(&dir);
    p.say("count");
    p.wait_mark("COUNTED", 60);
    b.say("arp");
    b.wait_mark("ARPED", 60);
    p.say("after");
    p.wait_mark("AFTER", 60);
    let after = show(&dir);
    let text = sriov_emu::control::request(&dir, &sriov_emu::control::Request::Show { port: None })
        .expect("ctl show")
        .text
        .unwrap_or_default();
    eprintln!("--- ctl show ---\n{text}");
    let pf_stats = serving.pf_server_stats().expect("the PF's server");
    let out_p = p.finish();
    let out_b = b.finish();
    serving.shutdown();

    // igb probed and bound without an error, with MSI-X.
    for name in ["modprobe", "netdev", "mac", "carrier", "no-sriov"] {
        out_p.expect_pass(name);
    }
    assert!(out_p.expect_pass("netdev").detail.contains("DRIVER=igb"));
    let log = dmesg(&out_p);
    for line in [
        "Intel(R) Gigabit Ethernet Network Connection",
        "Using MSI-X interrupts",
    ] {
        assert!(log.contains(line), "igb's dmesg lacks {line:?}:\n{log}");
    }
    let bad: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("igb"))
        .filter(|l| {
            let l = l.to_lowercase();
            ["error", "fail", "invalid", "timeout", "timed out", "hang"]
                .iter()
                .any(|w| l.contains(w))
        })
        .collect();
    assert!(bad.is_empty(), "igb complained: {bad:#?}\n{log}");
    eprintln!(
        "igb: {}",
        log.lines()
            .filter(|l| l.contains("igb"))
            .collect::<Vec<_>>()
            .join("\n     ")
    );

    // ethtool: 1000/full with a link, and the offline self-test.
    let speed = out_p.expect_pass("speed").detail.trim().to_string();
    let duplex = out_p.expect_pass("duplex").detail.trim().to_string();
    let link = out_p.expect_pass("link-detected").detail.trim().to_string();
    eprintln!("ethtool eth0: {speed} | {duplex} | {link}");
    eprintln!("ethtool -i eth0: {}", out_p.expect_pass("driver").detail);
    assert_eq!(speed, "Speed: 1000Mb/s");
    assert_eq!(duplex, "Duplex: Full");
    assert_eq!(link, "Link detected: yes");
    let verdict = out_p.expect_pass("selftest").detail.trim().to_string();
    eprintln!("ethtool -t eth0 offline: {verdict}");
    assert_eq!(verdict, "The test result is PASS");
    for t in ["Register", "Eeprom", "Interrupt", "Loopback", "Link"] {
        let line = out_p
            .expect_pass(&format!("selftest-{t}"))
            .detail
            .trim()
            .to_string();
        eprintln!("  {line}");
        assert!(
            line.starts_with(&format!("{t} test")) && line.ends_with(" 0"),
            "{t}: {line}"
        );
    }

    // The interface works again after the self-test: P and B ping each other.
    for name in ["carrier-after-selftest", "addr", "reach", "ping"] {
        out_p.expect_pass(name);
    }
    for name in ["modprobe", "mac", "addr", "reach", "ping"] {
        out_b.expect_pass(name);
    }
    assert_eq!(out_b.expect_pass("mac").detail.trim(), VF_MAC);
    for out in [&out_p, &out_b] {
        let ping = &out.expect_pass("ping").detail;
        assert!(ping.contains(" 0% packet loss"), "{}: {ping}", out.name);
    }

    // The ARP requests reached P's hardware counter...
    out_b.expect_pass("arp-nobody");
    let (bc0, bc1) = (num(&out_p, "bcast-before"), num(&out_p, "bcast-after"));
    eprintln!("P rx_broadcast: {bc0} -> {bc1}");
    assert!(bc1 - bc0 >= ARPS, "P saw {} broadcasts", bc1 - bc0);
    // ...through the switch's PF port, and every other VF's port, guest or no guest.
    let pf_rx = u(&pf_port(&after)["rx_broadcast"]) - u(&pf_port(&before)["rx_broadcast"]);
    assert!(pf_rx >= ARPS, "the PF port took {pf_rx} broadcasts");
    let b_tx = |r: &Value| u(&r["vfs"][0]["port"]["tx_broadcast"]);
    assert!(b_tx(&after) - b_tx(&before) >= ARPS);
    for vf in [1usize, 2] {
        let port = |r: &Value| r["vfs"][vf]["port"]["rx_broadcast"].as_u64().unwrap();
        let dropped = |r: &Value| {
            r["vfs"][vf]["device"]["rx_drops"]["not_attached"]
                .as_u64()
                .unwrap_or(0)
        };
        eprintln!(
            "vf{vf}: port rx_broadcast {} -> {}, device not_attached {} -> {}",
            port(&before),
            port(&after),
            dropped(&before),
            dropped(&after)
        );
        assert!(port(&after) - port(&before) >= ARPS, "vf{vf}");
        assert!(dropped(&after) - dropped(&before) >= ARPS, "vf{vf}");
    }
    assert_eq!(
        after["vfs"][1]["policy"]["mac"], IDLE_VF_MAC,
        "VF 1 is configured"
    );
    assert!(after["vfs"][2]["policy"]["mac"].is_null(), "VF 2 is not");

    // ctl show has the PF function: attached, moving frames, nothing refused.
    let pf_fn = &after["pf_function"];
    assert_eq!(pf_fn["attached"], true, "{pf_fn}");
    assert!(u(&pf_fn["device"]["rx_packets"]) > u64::from(PINGS) + ARPS);
    assert!(u(&pf_fn["device"]["tx_packets"]) > u64::from(PINGS));
    assert_eq!(u(&pf_fn["device"]["dma_errors"]), 0);
    assert_eq!(u(&pf_fn["device"]["bad_accesses"]), 0, "{pf_fn}");
    assert!(text.contains("attached true"), "{text}");
    assert_eq!((pf_stats.protocol_closes, pf_stats.panics), (0, 0));
    assert_eq!(pf_stats.connections, 1);
    let _ = std::fs::remove_dir_all(&dir);
}
