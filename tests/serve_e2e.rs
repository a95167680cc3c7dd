//! End-to-end through `serve`: one NIC with 256 VFs (a current card's count per port) served in
//! process, VF 0 and VF 255 each attached to its own stock QEMU 11.1 guest running the
//! unmodified `igbvf`. Both guests get the MAC the PF agent assigned, bring the link up, and
//! ping each other through the eswitch; `ctl show` (over the control socket) then has counters
//! that agree with the guests' own and with each other. The 254 idle VFs cost no thread: one
//! thread accepts on every socket and each client gets its own. The guest on VF 255 has its RAM
//! on huge pages (`memory-backend-memfd,hugetlb=on`), whose DMA maps start at offsets that are
//! not on a huge page. Needs the artifacts of `scripts/fetch-e2e.py`, and root to grow the
//! kernel's pool of huge pages.

mod serve_support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use serve_support::{
    admin_macs, assert_up_with_mac_and_pinged, num, vf_guest, DRIVER_UP, REACH_AND_PING,
};
use sriov_emu::control::{request, Request};
use sriov_emu::serve::{vf_socket, Serving};
use sriov_emu_tests::{workspace_root, Guest, GuestConfig};

const MAC_A: &str = "02:00:00:00:00:0a";
const MAC_B: &str = "02:00:00:00:00:0b";
/// ICMP echo requests each guest sends once the other answers.
const PINGS: u32 = 5;

/// After igbvf is up on the VF ([`DRIVER_UP`]) with `$ME/24` and the peer pinged
/// ([`REACH_AND_PING`]; the peer boots at the same time): keep answering while the peer
/// finishes its own pings, then report the counters.
const SCRIPT_TAIL: &str = r#"
sleep 20
value tx_packets cat /sys/class/net/eth0/statistics/tx_packets
value rx_packets cat /sys/class/net/eth0/statistics/rx_packets
value tx_bytes cat /sys/class/net/eth0/statistics/tx_bytes
value rx_dropped cat /sys/class/net/eth0/statistics/rx_dropped
value vf-stats sh -c "ethtool -S eth0 | grep -E '^ *(rx_packets|lbrx_packets|rx_bytes|lbrx_bytes):' | tr '\n' ' '"
ip -s link show dev eth0
"#;

fn script(me: &str, peer: &str, mac: &str) -> String {
    format!(
        "ME={me}\nPEER={peer}\nMAC={mac}\nDRIVER=igbvf\nREACH_WAIT=120\nPINGS={PINGS}\n\
         {DRIVER_UP}check addr ip addr add \"$ME/24\" dev eth0\n{REACH_AND_PING}{SCRIPT_TAIL}"
    )
}

fn guest(name: &str, socket: &Path, script: String) -> GuestConfig {
    vf_guest(name, socket, script, Duration::from_secs(400))
}

fn serve_dir(tag: &str) -> PathBuf {
    workspace_root()
        .join("target/e2e/run")
        .join(format!("{tag}-{}", std::process::id()))
}

/// The sum of the counters of a JSON object of them, but for `except`.
fn sum_except(counters: &Value, except: &str) -> u64 {
    counters
        .as_object()
        .expect("an object of counters")
        .iter()
        .filter(|(k, _)| k.as_str() != except)
        .map(|(_, v)| u(v))
        .sum()
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a counter: {v}"))
}

/// Threads of this process whose name starts with `prefix`.
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|c| c.starts_with(prefix))
        .count()
}

/// The highest VF of a 256-VF port.
const LAST: u16 = 255;

#[test]
fn igbvf_guests_on_vf_0_and_vf_255_of_256_one_on_huge_pages_get_admin_macs_and_ping() {
    let dir = serve_dir("serve-e2e");
    let mut config = admin_macs(&[MAC_A]);
    config.vf.insert(LAST.to_string(), format!("mac {MAC_B}"));
    let serving = Serving::start(&dir, &config, Some(LAST + 1)).expect("serve");
    assert_eq!(
        threads_named("pf0-vf"),
        0,
        "no client, no connection thread"
    );
    // A thread names itself once it runs: give the accepting thread a moment to start.
    let until = Instant::now() + Duration::from_secs(5);
    while threads_named("vfio-accept") == 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(threads_named("vfio-accept"), 1);

    // While the guests run: at most one connection thread per attached client.
    let sampling = Arc::new(AtomicBool::new(true));
    // And what QEMU's client makes serve hold (`ctl show`), at most, against the limits.
    let sampler = {
        let (on, dir) = (sampling.clone(), dir.clone());
        std::thread::spawn(move || {
            let (mut most, mut held, mut huge) = (0, (0, 0), [0, 0]);
            while on.load(Ordering::Relaxed) {
                most = most.max(threads_named("pf0-vf"));
                if let Ok(r) = request(&dir, &Request::Show { port: None }) {
                    let vfs = &r.show.unwrap_or_default()["ports"][0]["vfs"];
                    let c = &vfs[0]["client"]["held"];
                    let (maps, fds) = (c["dma_maps"].as_u64(), c["fds"].as_u64());
                    held = (held.0.max(maps.unwrap_or(0)), held.1.max(fds.unwrap_or(0)));
                    for (i, vf) in [0, usize::from(LAST)].into_iter().enumerate() {
                        let n = vfs[vf]["client"]["held"]["huge_page_maps"].as_u64();
                        huge[i] = huge[i].max(n.unwrap_or(0));
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            (most, held, huge)
        })
    };

    let a = Guest::new(guest(
        "serve-e2e-a",
        &vf_socket(&dir, 0),
        script("10.0.0.1", "10.0.0.2", MAC_A),
    ))
    .spawn()
    .unwrap_or_else(|e| panic!("{e}"));
    let mut on_huge_pages = guest(
        "serve-e2e-b",
        &vf_socket(&dir, LAST),
        script("10.0.0.2", "10.0.0.1", MAC_B),
    );
    on_huge_pages.hugetlb = true;
    on_huge_pages.memory_mb = 256;
    let b = Guest::new(on_huge_pages)
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let (a, b) = (a.wait(), b.wait());
    sampling.store(false, Ordering::Relaxed);
    let (most, (maps, fds), huge) = sampler.join().unwrap();
    assert_eq!(huge[0], 0, "VF 0's guest RAM is not on huge pages");
    assert!(huge[1] > 0, "VF {LAST}'s guest RAM is mapped on huge pages");
    assert_eq!(most, 2, "two clients, two connection threads");
    eprintln!("QEMU's client on VF 0 held at most {maps} DMA maps and {fds} fds");
    let limits = sriov_emu::vfio::ClientLimits::default();
    assert!(
        maps > 0 && fds > 0 && maps < limits.dma_maps && fds < limits.fds,
        "QEMU holds {maps} maps and {fds} fds, within the default limits {limits:?}"
    );

    let reply = request(&dir, &Request::Show { port: None }).expect("ctl show");
    assert!(reply.ok, "{reply:?}");
    let text = reply.text.unwrap_or_default();
    eprintln!("--- ctl show ---\n{text}");
    let show = reply.show.expect("structured report")["ports"][0].take();
    serving.shutdown();

    for (out, mac) in [(&a, MAC_A), (&b, MAC_B)] {
        assert_up_with_mac_and_pinged(out, mac);
    }
    assert!(text.contains(&format!(
        "vf 0 link/ether {MAC_A}, vlan 0, qos 0, spoof checking on"
    )));
    assert!(text.contains(&format!(
        "vf {LAST} link/ether {MAC_B}, vlan 0, qos 0, spoof checking on"
    )));

    // QEMU was never refused for its limits, and attached once.
    for i in [0usize, usize::from(LAST)] {
        let c = &show["vfs"][i]["client"];
        assert_eq!(u(&c["limit_refusals"]), 0, "vf{i}: {c}");
        assert_eq!(u(&c["connections"]), 1, "vf{i}: {c}");
    }

    // igbvf's view of the VF statistics registers (ethtool -S): with no uplink backend every
    // frame a VF received came from a function of the port, so all of it is loopback.
    for out in [&a, &b] {
        let stats = &out.expect_pass("vf-stats").detail;
        let field = |name: &str| -> u64 {
            let at = stats
                .find(&format!(" {name}: "))
                .or_else(|| stats.starts_with(&format!("{name}: ")).then_some(0))
                .unwrap_or_else(|| panic!("{name} in {stats}"));
            stats[at..]
                .split_whitespace()
                .nth(1)
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{name} in {stats}"))
        };
        assert!(field("rx_packets") > u64::from(PINGS), "{stats}");
        assert_eq!(field("lbrx_packets"), field("rx_packets"), "{stats}");
        assert_eq!(field("lbrx_bytes"), field("rx_bytes"), "{stats}");
    }

    // Counters agree: the guests' own statistics, the VF devices' and the switch ports'.
    for (i, out) in [(0usize, &a), (usize::from(LAST), &b)] {
        let vf = &show["vfs"][i];
        let port = &vf["port"];
        let dev = &vf["device"];
        let guest_tx = num(out, "tx_packets");
        let guest_rx = num(out, "rx_packets");
        let dev_tx = u(&dev["tx_packets"]);
        let dev_rx = u(&dev["rx_packets"]);
        eprintln!(
            "vf{i}: guest tx {guest_tx} rx {guest_rx}; device tx {dev_tx} rx {dev_rx}; port tx {} rx {}",
            port["tx_packets"], port["rx_packets"]
        );
        // What the guest counted (read just before it powered off) is what the device moved,
        // give or take the few frames of the shutdown itself.
        assert!(
            dev_tx >= guest_tx && dev_tx <= guest_tx + 4,
            "vf{i} tx: {dev_tx} vs {guest_tx}"
        );
        assert!(
            dev_rx >= guest_rx && dev_rx <= guest_rx + 4,
            "vf{i} rx: {dev_rx} vs {guest_rx}"
        );
        assert!(guest_tx > u64::from(PINGS) && guest_rx > u64::from(PINGS));
        // Every frame the VF sent was switched; nothing was dropped by the switch, but for
        // frames to the VF while its pool's receive was off (`rx_disabled`): the other guest's
        // first ARP broadcast can come before this VF's igbvf has its VF_RESET answered (the
        // two guests boot side by side), or after its client has left, which resets the VF.
        let drops = sum_except(&port["drops"], "rx_disabled");
        assert_eq!(drops, 0, "vf{i} switch drops: {}", port["drops"]);
        assert!(
            u(&port["drops"]["rx_disabled"]) <= 4,
            "vf{i} switch drops: {}",
            port["drops"]
        );
        assert_eq!(u(&port["tx_packets"]), dev_tx, "vf{i}: device TX = port TX");
        // Every frame switched to the VF was written to its ring or dropped for a named
        // reason (before the guest brought it up); `ring_full` only delays (backlog).
        let dev_drops = sum_except(&dev["rx_drops"], "ring_full");
        assert_eq!(
            u(&port["rx_packets"]),
            dev_rx + dev_drops + u(&vf["backlog"]),
            "vf{i}: port RX = device RX + device drops + backlog"
        );
        assert_eq!(u(&dev["dma_errors"]), 0);
        assert_eq!(
            u(&dev["bad_accesses"]),
            0,
            "vf{i}: igbvf made no refused access"
        );
    }
    // A's unicast frames reached B and vice versa.
    assert_eq!(
        u(&show["vfs"][0]["port"]["tx_packets"])
            - u(&show["vfs"][0]["port"]["tx_broadcast"])
            - u(&show["vfs"][0]["port"]["tx_multicast"]),
        u(&show["vfs"][usize::from(LAST)]["port"]["rx_packets"])
            - u(&show["vfs"][usize::from(LAST)]["port"]["rx_broadcast"])
            - u(&show["vfs"][usize::from(LAST)]["port"]["rx_multicast"]),
        "unicast A→B"
    );
    let _ = std::fs::remove_dir(&dir);
}
