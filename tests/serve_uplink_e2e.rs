//! End-to-end through `serve`'s uplink backends, with stock QEMU 11.1 guests running the
//! unmodified `igbvf` on VFs:
//!
//! - dgram: two NICs (two `Serving`s, each as `serve` runs it) joined by a `-netdev dgram`
//!   cable on loopback UDP; a VF guest on each, both VFs with port VLAN 10, ping each other;
//!   the uplink's pcap, read back with `tcpdump -r -e -nn`, has the frames tagged VLAN 10 on
//!   the cable;
//! - stream: an ordinary QEMU guest with `virtio-net-pci` on `-netdev stream` connects to the
//!   uplink's listening TCP socket and pings a VF guest;
//! - tap: the uplink's TAP is moved into a network namespace with an address, and the
//!   namespace and a VF guest ping each other.
//!
//! The tests take turns (one lock): each boots one or two TCG guests. Needs the artifacts of
//! `scripts/fetch-e2e.py` (tcpdump included).

mod serve_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serve_support::{free_port, ping_peer, run, serve_dir, tcpdump, DRIVER_UP};
use sriov_emu::serve::{qemu_device_json, vf_socket, MacMode, ServeConfig, Serving};
use sriov_emu::uplink::{UplinkConfig, UplinkKind, UplinkReport};
use sriov_emu_tests::{Artifacts, Guest, GuestConfig, GuestOutput, RunningGuest};

/// One test at a time: each boots TCG guests on a 2-core host.
static TURN: Mutex<()> = Mutex::new(());

/// ICMP echo requests each pinging side sends once the other answers.
const PINGS: u32 = 5;

/// Guest side on a VF: igbvf up ([`DRIVER_UP`]; the carrier may wait for a stream peer) with
/// `$IP/24` (then [`REACH_AND_PING`]).
fn vf_up() -> String {
    format!(
        "DRIVER=igbvf\nCARRIER_WAIT=60\n{DRIVER_UP}check addr ip addr add \"$IP/24\" dev eth0\n"
    )
}

/// The same for a virtio-net NIC on `-netdev stream`.
const VIRTIO_UP: &str = r#"
wait_for 30 test -e /sys/class/net/eth0
check_eq mac "$MAC" cat /sys/class/net/eth0/address
check link-up ip link set eth0 up
check addr ip addr add "$IP/24" dev eth0
"#;

/// `up` (bring eth0 up), then [`ping_peer`], and keep answering for `linger` seconds.
fn script(up: &str, ip: &str, peer: &str, mac: &str, linger: u32) -> String {
    format!(
        "IP={ip}\nPEER={peer}\nMAC={mac}\n{up}{}sleep {linger}\n",
        ping_peer(PINGS)
    )
}

/// A guest on VF 0 of the NIC served in `dir`.
fn vf_guest(name: &str, dir: &Path, script: String) -> RunningGuest {
    Guest::new(
        GuestConfig::new(name, script)
            .qemu_args([
                "-device".to_string(),
                "pcie-root-port,id=rp1,chassis=1".to_string(),
                "-device".to_string(),
                qemu_device_json(&vf_socket(dir, 0), "rp1", "vf"),
            ])
            .timeout(Duration::from_secs(400)),
    )
    .spawn()
    .unwrap_or_else(|e| panic!("{e}"))
}

/// A NIC with one VF: admin MAC `mac`, `words` more, and the uplink `uplink`.
fn config(mac: &str, words: &str, uplink: &str) -> ServeConfig {
    ServeConfig {
        mac_assignment: MacMode::AdminOnly,
        vf: [("0".to_string(), format!("mac {mac} {words}"))].into(),
        uplink: uplink.parse::<UplinkConfig>().expect("uplink syntax"),
        ..ServeConfig::default()
    }
}

fn expect_pinged(out: &GuestOutput) {
    for name in ["mac", "reach", "ping"] {
        out.expect_pass(name);
    }
    let ping = &out.expect_pass("ping").detail;
    assert!(ping.contains(" 0% packet loss"), "{}: {ping}", out.name);
}

fn report(serving: &Serving) -> UplinkReport {
    serving.uplink().expect("an uplink").report()
}

#[test]
fn dgram_cable_joins_two_nics_and_carries_port_vlan_tagged_frames() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let (pa, pb) = (free_port(true), free_port(true));
    let (dir_a, dir_b) = (serve_dir("uplink-dgram-a"), serve_dir("uplink-dgram-b"));
    let pcap = serve_dir("uplink-dgram-pcap");
    let (mac_a, mac_b) = ("02:00:00:00:10:0a", "02:00:00:00:10:0b");
    let started = Instant::now();
    let mut a = Serving::start(
        &dir_a,
        &config(
            mac_a,
            "vlan 10",
            &format!("dgram:local=127.0.0.1:{pa},remote=127.0.0.1:{pb}"),
        ),
        Some(1),
    )
    .expect("serve a");
    a.start_capture(&pcap).expect("pcap");
    let b = Serving::start(
        &dir_b,
        &config(
            mac_b,
            "vlan 10",
            &format!("dgram:local=127.0.0.1:{pb},remote=127.0.0.1:{pa}"),
        ),
        Some(1),
    )
    .expect("serve b");
    eprint!("{}{}", a.banner(), b.banner());

    let ga = vf_guest(
        "uplink-dgram-a",
        &dir_a,
        script(&vf_up(), "10.0.10.1", "10.0.10.2", mac_a, 15),
    );
    let gb = vf_guest(
        "uplink-dgram-b",
        &dir_b,
        script(&vf_up(), "10.0.10.2", "10.0.10.1", mac_b, 15),
    );
    let (ga, gb) = (ga.wait(), gb.wait());
    let (ra, rb) = (report(&a), report(&b));
    eprintln!("uplink a: {ra:?}\nuplink b: {rb:?}");
    a.shutdown();
    b.shutdown();
    expect_pinged(&ga);
    expect_pinged(&gb);
    for r in [&ra, &rb] {
        assert_eq!(r.kind, UplinkKind::Dgram);
        assert!(r.carrier);
        let c = &r.counters;
        assert!(c.tx_frames > u64::from(2 * PINGS) && c.rx_frames > u64::from(2 * PINGS));
        assert_eq!((c.rx_runt, c.rx_oversize, c.tx_errors), (0, 0, 0));
    }
    // What one end sent, the other received (nothing else is on this cable).
    assert_eq!(ra.counters.tx_frames, rb.counters.rx_frames);
    assert_eq!(rb.counters.tx_frames, ra.counters.rx_frames);

    // On the cable the frames carry the port VLAN's tag.
    let file = pcap.join("pf0-uplink0.pcap");
    let text = tcpdump(&file);
    let echo = |kind: &str| {
        text.lines()
            .filter(|l| l.contains(kind))
            .inspect(|l| {
                assert!(
                    l.contains("ethertype 802.1Q (0x8100)") && l.contains("vlan 10,"),
                    "untagged on the cable: {l}"
                )
            })
            .count()
    };
    let (requests, replies) = (echo("ICMP echo request"), echo("ICMP echo reply"));
    eprintln!(
        "tcpdump: {} lines, {requests} echo requests, {replies} replies; first:\n{}",
        text.lines().count(),
        text.lines().take(4).collect::<Vec<_>>().join("\n")
    );
    assert!(requests >= 2 * PINGS as usize && replies >= 2 * PINGS as usize);
    eprintln!("dgram test: {:.1}s", started.elapsed().as_secs_f64());
    for d in [&dir_a, &dir_b, &pcap] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn qemu_virtio_net_guest_on_netdev_stream_pings_a_vf_guest() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let port = free_port(false);
    let dir = serve_dir("uplink-stream");
    let (mac_vf, mac_virtio) = ("02:00:00:00:20:0a", "52:54:00:00:20:0b");
    let started = Instant::now();
    let serving = Serving::start(
        &dir,
        &config(mac_vf, "", &format!("stream:listen=127.0.0.1:{port}")),
        Some(1),
    )
    .expect("serve");
    eprint!("{}", serving.banner());
    assert!(!report(&serving).carrier, "no peer yet: carrier down");

    let vf = vf_guest(
        "uplink-stream-vf",
        &dir,
        script(&vf_up(), "10.0.20.1", "10.0.20.2", mac_vf, 15),
    );
    // An ordinary QEMU NIC: QEMU connects to our listening socket (its server=off).
    let virtio = Guest::new(
        GuestConfig::new(
            "uplink-stream-virtio",
            script(VIRTIO_UP, "10.0.20.2", "10.0.20.1", mac_virtio, 15),
        )
        .modules(["virtio_pci", "virtio_net"])
        .qemu_args([
            "-netdev".to_string(),
            format!("stream,id=up,server=off,addr.type=inet,addr.host=127.0.0.1,addr.port={port}"),
            "-device".to_string(),
            format!("virtio-net-pci,netdev=up,mac={mac_virtio}"),
        ])
        .timeout(Duration::from_secs(400)),
    )
    .spawn()
    .unwrap_or_else(|e| panic!("{e}"));
    let (vf, virtio) = (vf.wait(), virtio.wait());
    let r = report(&serving);
    eprintln!("uplink: {r:?}");
    serving.shutdown();
    expect_pinged(&vf);
    expect_pinged(&virtio);
    let c = &r.counters;
    assert_eq!(c.connections, 1, "QEMU connected once");
    // Down at start, up when QEMU connected, down again when it exited.
    assert_eq!(c.carrier_changes, 3);
    assert!(!r.carrier && r.peer.is_none());
    assert!(c.tx_frames > u64::from(2 * PINGS) && c.rx_frames > u64::from(2 * PINGS));
    assert_eq!((c.framing_errors, c.rx_runt, c.rx_oversize), (0, 0, 0));
    eprintln!("stream test: {:.1}s", started.elapsed().as_secs_f64());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A network namespace, deleted on drop.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn tap_uplink_moved_into_a_namespace_pings_a_vf_guest() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    if !Path::new("/dev/net/tun").exists() {
        eprintln!("skipped: this host has no /dev/net/tun");
        return;
    }
    let id = std::process::id() % 100_000;
    let (tap, ns) = (format!("sremu{id}"), format!("sremu-ns{id}"));
    let dir: PathBuf = serve_dir("uplink-tap");
    let mac = "02:00:00:00:30:0a";
    let ping_tool = Artifacts::locate()
        .and_then(|a| a.host_tool("ping"))
        .unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let serving =
        Serving::start(&dir, &config(mac, "", &format!("tap:name={tap}")), Some(1)).expect("serve");
    eprint!("{}", serving.banner());
    run(Command::new("ip").args(["netns", "add", &ns]));
    let netns = Netns(ns.clone());
    run(Command::new("ip").args(["link", "set", &tap, "netns", &ns]));
    run(Command::new("ip").args(["-n", &ns, "addr", "add", "10.0.30.1/24", "dev", &tap]));
    run(Command::new("ip").args(["-n", &ns, "link", "set", &tap, "up"]));
    run(Command::new("ip").args(["-n", &ns, "link", "set", "lo", "up"]));

    let vf = vf_guest(
        "uplink-tap-vf",
        &dir,
        script(&vf_up(), "10.0.30.2", "10.0.30.1", mac, 20),
    );
    // From the namespace: wait until the guest answers, then measure.
    let ping = |count: &str| {
        Command::new("ip")
            .args(["netns", "exec", &ns])
            .arg(&ping_tool)
            .args(["-n", "-c", count, "-W", "2", "10.0.30.2"])
            .output()
            .expect("ping")
    };
    let until = Instant::now() + Duration::from_secs(240);
    while !ping("1").status.success() {
        assert!(
            Instant::now() < until,
            "the VF guest never answered the namespace"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = ping(&PINGS.to_string());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let vf = vf.wait();
    let r = report(&serving);
    eprintln!("namespace ping:\n{text}\nuplink: {r:?}");
    serving.shutdown();
    drop(netns);
    expect_pinged(&vf);
    assert!(
        out.status.success() && text.contains(" 0% packet loss"),
        "{text}"
    );
    assert_eq!(r.kind, UplinkKind::Tap);
    assert!(r.carrier);
    assert!(
        r.counters.rx_frames > u64::from(2 * PINGS) && r.counters.tx_frames > u64::from(2 * PINGS)
    );
    assert_eq!(r.counters.tx_errors, 0);
    eprintln!("tap test: {:.1}s", started.elapsed().as_secs_f64());
    let _ = std::fs::remove_dir_all(&dir);
}
