//! DPDK's VF driver as a second client: bookworm's `dpdk-testpmd` (DPDK 22.11, the
//! `net_e1000_igb_vf` PMD) on one VF of `serve`, the unmodified `igbvf` on another VF of the
//! same TCG guest. The DPDK VF is bound with `uio_pci_generic` (IOVA = PA), or with `vfio-pci`
//! behind QEMU's `intel-iommu` (the bookworm kernel has no `CONFIG_VFIO_NOIOMMU`, hence those
//! two). testpmd must probe, read the admin MAC, see the link at 1 Gbps full duplex, and
//! answer the igbvf VF's pings in `icmpecho` mode; one `txonly` burst reaches igbvf and what
//! igbvf sends reaches `rxonly`, frame for frame; its byte counters (the VF's good-octet
//! registers) count each frame's CRC, as the 82576 does; with the virtual IOMMU every
//! DMA_MAP QEMU sends for DPDK's mappings is honoured. Needs the artifacts of
//! `scripts/fetch-e2e.py` (its `dpdk` stage).

mod serve_support;

use std::time::Duration;

use serde_json::Value;
use serve_support::{serve_dir, vf_devices, DRIVER_UP};
use sriov_emu::control::{request, Request};
use sriov_emu::serve::{ServeConfig, Serving};
use sriov_emu_tests::{Artifacts, Guest, GuestConfig};

const MAC_IGBVF: &str = "02:00:00:00:00:10";
const MAC_DPDK: &str = "02:00:00:00:00:11";
const PINGS: u32 = 5;

/// The guest: VF 1 (the second root port, bus 2) goes to uio_pci_generic through
/// driver_override before any driver loads, VF 0 to igbvf; then testpmd in icmpecho mode on
/// VF 1, and pings from igbvf's eth0 to an address only testpmd answers (icmpecho answers ARP
/// for any address).
fn script(bind: Bind) -> String {
    let (module, iova) = match bind {
        Bind::Uio => ("uio_pci_generic", "pa"),
        Bind::Vfio => ("vfio-pci", "va"),
    };
    format!(
        r#"
MAC={MAC_IGBVF}
DRIVER=igbvf
DPDK_VF=$(for d in /sys/bus/pci/devices/*; do
    [ "$(cat $d/device)" = 0x10ca ] && echo ${{d##*/}}; done | sort | tail -n 1)
result dpdk-vf pass "$DPDK_VF"
echo {module} > /sys/bus/pci/devices/$DPDK_VF/driver_override
check bind-module modprobe {module}
# vfio-pci's IOMMU backend (the kernel does not ask busybox to load it).
[ {module} = vfio-pci ] && check iommu-backend modprobe vfio_iommu_type1
echo $DPDK_VF > /sys/bus/pci/drivers_probe
check_eq bound {module} sh -c "basename \$(readlink /sys/bus/pci/devices/$DPDK_VF/driver)"
value iommu-group sh -c "basename \$(readlink /sys/bus/pci/devices/$DPDK_VF/iommu_group) 2>&1"
# No IPv6 on igbvf's side: its neighbour discovery would be traffic the counts below do not expect.
echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6
{DRIVER_UP}
echo 1 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6
check addr ip addr add 10.0.0.1/24 dev eth0
mkdir -p /dev/hugepages
mount -t hugetlbfs none /dev/hugepages
echo 96 > /proc/sys/vm/nr_hugepages
value hugepages cat /proc/sys/vm/nr_hugepages
# EAL refuses plugins under a world-writable directory, and the initramfs root is one.
chmod 755 /
PMDS=/lib/x86_64-linux-gnu/dpdk
# testpmd interactive, its commands through a fifo.
mkfifo /tmp/testpmd.in
/usr/bin/dpdk-testpmd --lcores '0@0,1@0' -n 1 -a $DPDK_VF \
    -d $PMDS/librte_mempool_ring.so.23 -d $PMDS/librte_net_e1000.so.23 \
    --iova-mode={iova} --huge-dir /dev/hugepages -m 128 -- \
    -i --forward-mode=icmpecho --nb-cores=1 --total-num-mbufs=2048 \
    < /tmp/testpmd.in > /tmp/testpmd.log 2>&1 &
TESTPMD=$!
exec 4> /tmp/testpmd.in
tp() {{ echo "$1" >&4; }}
if wait_for 180 grep -q "testpmd> " /tmp/testpmd.log; then
    result testpmd-up pass "$(grep -m1 'Port 0: ' /tmp/testpmd.log)"
else
    result testpmd-up fail "$(tail -n 15 /tmp/testpmd.log | tr '\n' ' ')"
fi
tp "show port info 0"
tp "start"
if wait_for 60 ping -c 1 -W 1 10.0.0.2; then
    result reach pass "testpmd answers"
else
    result reach fail "no answer; neigh: $(ip neigh show dev eth0); $(tail -n 8 /tmp/testpmd.log | tr '\n' ' ')"
fi
check ping sh -c "ping -c {PINGS} -W 3 10.0.0.2 > /tmp/ping; rc=\$?; grep 'packet loss' /tmp/ping; exit \$rc"
tp "stop"
tp "show port stats 0"
# txonly and rxonly against igbvf's counters: one burst of testpmd's txonly frames to igbvf's
# MAC (`start tx_first` in rxonly mode), and igbvf's pings, which testpmd now only counts.
stat() {{ cat /sys/class/net/eth0/statistics/$1; }}
tp "set fwd rxonly"
# rxonly answers nothing: with a learned neighbour entry, igbvf's kernel would probe for
# 10.0.0.2 (unicast, then broadcast ARP) during and after the counted pings, one of them
# after igbvf's counters are read but before testpmd stops. A permanent entry sends none.
ip neigh replace 10.0.0.2 lladdr {MAC_DPDK} dev eth0 nud permanent
tp "set eth-peer 0 {MAC_IGBVF}"
# Drain what igbvf sent since the echo stopped (an ARP probe, say): it waits in testpmd's RX
# ring, and the next start would count it.
tp "start"
sleep 2
tp "stop"
sleep 1
RX0=$(stat rx_packets); TX0=$(stat tx_packets)
tp "start tx_first"
sleep 3
ping -c 10 -W 1 10.0.0.2 > /dev/null
sleep 2
RX1=$(stat rx_packets); TX1=$(stat tx_packets)
result igbvf-counts pass "rx $((RX1 - RX0)) tx $((TX1 - TX0))"
tp "stop"
tp "show port stats 0"
tp "quit"
exec 4>&-
# Its output is block-buffered into the file: read it once testpmd has exited.
wait_for 60 sh -c "! kill -0 $TESTPMD"
value testpmd-port sh -c "grep -m1 'MAC address: ' /tmp/testpmd.log"
value testpmd-link sh -c "grep -E 'Link status: |Link speed: |Link duplex: ' /tmp/testpmd.log | tr '\n' ' '"
value testpmd-fwd sh -c "grep -A2 'Forward statistics for port 0' /tmp/testpmd.log | grep -E 'RX-packets|TX-packets' | tail -n 2 | tr '\n' ' '"
value testpmd-stats sh -c "grep -E 'RX-packets:.*RX-bytes|TX-packets:.*TX-bytes' /tmp/testpmd.log | tail -n 2 | tr '\n' ' '"
cat /tmp/testpmd.log
"#
    )
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a counter: {v}"))
}

/// The number after `label:` in testpmd's stats line.
fn stat(text: &str, label: &str) -> u64 {
    let at = text
        .rfind(&format!("{label}:"))
        .unwrap_or_else(|| panic!("no {label} in {text}"));
    text[at + label.len() + 1..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{label}: no number in {text}"))
}

/// How the guest binds the DPDK VF.
#[derive(Clone, Copy, Debug)]
enum Bind {
    /// `uio_pci_generic`: no IOMMU, DPDK gives the device physical addresses.
    Uio,
    /// `vfio-pci` behind QEMU's `intel-iommu` (guest `intel_iommu=on iommu=pt`): DPDK maps its
    /// memory at IOVAs of its own, which QEMU maps and unmaps on the server as it goes.
    Vfio,
}

#[test]
fn testpmd_with_uio_pci_generic_answers_an_igbvf_vfs_pings_through_the_eswitch() {
    testpmd_next_to_igbvf(Bind::Uio);
}

#[test]
fn testpmd_with_vfio_pci_behind_a_virtual_iommu_answers_an_igbvf_vfs_pings() {
    testpmd_next_to_igbvf(Bind::Vfio);
}

fn testpmd_next_to_igbvf(bind: Bind) {
    let artifacts = Artifacts::locate().unwrap_or_else(|e| panic!("{e}"));
    let dir = serve_dir(&format!("dpdk-{bind:?}"));
    let config: ServeConfig = toml::from_str(&format!(
        "vfs = 2\n[vf]\n0 = \"mac {MAC_IGBVF}\"\n1 = \"mac {MAC_DPDK}\"\n"
    ))
    .unwrap();
    let serving = Serving::start(&dir, &config, None).expect("serve");
    let mut iommu: Vec<String> = Vec::new();
    let mut cfg = GuestConfig::new(format!("serve-dpdk-{bind:?}"), script(bind));
    if let Bind::Vfio = bind {
        iommu = ["-device", "intel-iommu,caching-mode=on"]
            .map(String::from)
            .to_vec();
        cfg.kernel_args = "intel_iommu=on iommu=pt".into();
    }
    let cfg = cfg
        .qemu_args(iommu)
        .qemu_args([
            // DPDK 22.11 as Debian builds it needs SSE4.2, which TCG's default qemu64 lacks
            // (testpmd dies with "invalid opcode" in librte_eal).
            "-cpu".to_string(),
            "max".to_string(),
        ])
        .qemu_args(vf_devices(&dir, &[0, 1]))
        .extra_initramfs(&artifacts.initramfs_dpdk)
        .memory_mb(768)
        .timeout(Duration::from_secs(500));
    let out = Guest::new(cfg).run().unwrap_or_else(|e| panic!("{e}"));
    let show = request(&dir, &Request::Show { port: None }).expect("ctl show");
    let show = show.show.expect("report")["ports"][0].take();
    serving.shutdown();
    eprintln!("{}", out.diagnostics());
    for name in [
        "bind-module",
        "bound",
        "modprobe",
        "netdev",
        "mac",
        "carrier",
        "testpmd-up",
    ] {
        out.expect_pass(name);
    }
    let port = out.expect_pass("testpmd-port").detail.to_ascii_lowercase();
    assert!(
        port.contains(MAC_DPDK),
        "testpmd reads the admin MAC: {port}"
    );
    let link = out.expect_pass("testpmd-link").detail.clone();
    assert!(
        link.contains("Link status: up")
            && link.contains("Link speed: 1 Gbps")
            && link.contains("Link duplex: full-duplex"),
        "{link}"
    );
    out.expect_pass("reach");
    // Every request QEMU made on the DPDK VF's behalf (with a virtual IOMMU: a DMA_MAP per
    // mapping DPDK makes, the same memfd each time) was honoured.
    let client = &show["vfs"][1]["client"];
    eprintln!("VF 1's client: {client}");
    assert_eq!(u(&client["limit_refusals"]), 0, "{client}");
    assert!(
        !out.qemu_stderr.contains("failure") && !out.qemu_stderr.contains("error reply"),
        "QEMU: {}",
        out.qemu_stderr
    );
    assert!(out.expect_pass("ping").detail.contains(" 0% packet loss"));

    // txonly/rxonly: what testpmd sent in one burst igbvf received, what igbvf sent testpmd
    // received.
    let igbvf = out.expect_pass("igbvf-counts").detail.clone();
    let fwd = out.expect_pass("testpmd-fwd").detail.clone();
    eprintln!("igbvf {igbvf}; testpmd {fwd}");
    let n = |text: &str, label: &str| -> u64 {
        let at = text
            .find(label)
            .unwrap_or_else(|| panic!("{label} in {text}"));
        text[at + label.len()..]
            .trim_start_matches(':')
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{label} in {text}"))
    };
    let (testpmd_rx, testpmd_tx) = (n(&fwd, "RX-packets"), n(&fwd, "TX-packets"));
    assert_eq!(testpmd_tx, 32, "one txonly burst: {fwd}");
    assert_eq!(
        n(&igbvf, "rx "),
        testpmd_tx,
        "igbvf received the burst: {igbvf}"
    );
    assert!(testpmd_rx >= 10, "{fwd}");
    assert_eq!(
        n(&igbvf, "tx "),
        testpmd_rx,
        "testpmd received what igbvf sent: {igbvf}"
    );

    // testpmd's counters are the VF's registers: RX bytes count each frame's CRC.
    let stats = out.expect_pass("testpmd-stats").detail.clone();
    let vf1 = &show["vfs"][1];
    let (rx_packets, rx_bytes) = (stat(&stats, "RX-packets"), stat(&stats, "RX-bytes"));
    let switched = (u(&vf1["port"]["rx_packets"]), u(&vf1["port"]["rx_bytes"]));
    // What the VF wrote into its ring (a frame the switch hands it after testpmd has stopped,
    // an ARP retry say, is dropped by the stopped queue and not counted there).
    let received = (
        u(&vf1["device"]["rx_packets"]),
        u(&vf1["device"]["rx_bytes"]),
    );
    eprintln!(
        "testpmd RX {rx_packets} packets {rx_bytes} bytes; switch to VF 1: {switched:?}; \
         written into its ring: {received:?}"
    );
    assert!(rx_packets >= u64::from(PINGS));
    assert_eq!(rx_packets, received.0);
    assert!(
        switched.0 >= received.0,
        "the switch delivered what the VF got"
    );
    assert_eq!(
        rx_bytes,
        received.1 + 4 * received.0,
        "frame bytes and a CRC each"
    );
}
