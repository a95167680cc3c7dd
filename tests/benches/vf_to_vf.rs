//! Bench: VF-to-VF TCP throughput (iperf3) and ping RTT through sriov-emu and through
//! QEMU's own in-process `igb` VFs, in one run on the same machine, with the same topology on
//! both sides: ONE guest (same kernel, QEMU, vCPUs, memory) with TWO igbvf netdevs, each moved
//! into its own network namespace; `iperf3 -s` in one, `iperf3 -c -J` and `ping` in the other.
//!
//! - sriov-emu: `serve` in process with 2 VFs (admin MACs); the guest gets two `vfio-user-pci`
//!   devices, each on its own pcie-root-port.
//! - QEMU igb: the guest gets `-device igb` on a pcie-root-port (see [`IGB_QEMU_ARGS`]); inside,
//!   `igb` binds the PF, `sriov_numvfs` = 2, the PF sets the VF MACs and comes up, `igbvf` binds
//!   the VFs. QEMU switches VF to VF internally (DTXSWC loopback, which igb sets).
//! - full system: sriov-emu's 82576 PF (`--pf-driver guest`, 7 VFs) in the patched QEMU of
//!   `qemu/patches/`, laid out as QEMU's igb is: the PF on a root port, its VFs at the PF's
//!   routing IDs; inside, the same script as QEMU igb's (igb enables 2 VFs, sets their MACs,
//!   igbvf binds), the guest's igb answering the VFs' mailboxes. Skipped, saying so, when that
//!   QEMU is not built.
//! - veth: the NIC-less reference, the same guest and vCPU with a veth pair between the two
//!   namespaces instead of two VFs: what the guest's stack moves with no NIC at all (no
//!   checksum or TSO offload either, so below both NICs under TCG).
//!
//! Both NIC sides also report the guest's own interrupts per packet (the vectors of the two
//! netdevs in the guest's /proc/interrupts, across the iperf3 phase).
//!
//! ```sh
//! cargo bench -p sriov-emu-tests --bench vf_to_vf
//! ```
//!
//! Each round boots one guest per side (the order rotates between rounds); the summary is the
//! median of the rounds, and the ratios to QEMU igb also round by round (each pair measured
//! back to back) with their median. On the sriov-emu side it also counts the vfio-user messages QEMU sent
//! during the ping and the iperf3 phases, and the CPU time QEMU and the in-process `serve` used
//! during iperf3. Environment: `VF_BENCH_ROUNDS` (default 5), `VF_BENCH_SECONDS` (iperf3
//! duration, default 10), `VF_BENCH_RATE_MBIT` (iperf3's `-b`: a fixed rate, at which both
//! trees move the same packets, so that `serve`'s CPU for the same work compares on a host
//! whose speed varies; default 0, as fast as it goes), `VF_BENCH_PINGS` (default 50, 0.2 s
//! apart), `VF_BENCH_CPUS` (guest vCPUs, default 1), `VF_BENCH_ONLY` (comma-separated `emu`,
//! `igb`, `full`, `veth`), `VF_BENCH_BUSY_POLL_US` and `VF_BENCH_NAP_POLL_US` (`serve`'s busy
//! polling and napping, default its own), `VF_BENCH_HUGETLB=1` (every side's guest RAM on huge
//! pages, `memory-backend-memfd,hugetlb=on`; the pool is grown for it, as root). Needs the artifacts of `scripts/fetch-e2e.py`. Not
//! part of `cargo test`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use sriov_emu::serve::{qemu_device_json, vf_socket, MacMode, ServeConfig, Serving};
use sriov_emu_tests::{Artifacts, Guest, GuestConfig, GuestOutput, RunningGuest};

/// Finds the two igbvf netdevs as `A` and `B` (both NIC sides, after their setup).
const FIND_VFS: &str = r#"
igbvf_ifs() {
    for d in /sys/class/net/*; do
        case "$(readlink "$d/device/driver")" in
            */igbvf) echo "${d##*/}" ;;
        esac
    done
}
if ! wait_for 60 sh -c 'test "$(ls -l /sys/class/net/*/device/driver 2>/dev/null | grep -c igbvf)" -ge 2'; then
    result vfs fail "igbvf netdevs: $(igbvf_ifs | tr '\n' ' '); all: $(ls /sys/class/net | tr '\n' ' ')"
    exit 1
fi
set -- $(igbvf_ifs)
A=$1
B=$2
result vfs pass "$A $(cat /sys/class/net/$A/address) $B $(cat /sys/class/net/$B/address)"
"#;

/// The NIC-less reference: a veth pair as `A` and `B` in the same guest.
const VETH_SETUP: &str = r#"
check modprobe-veth modprobe veth
ip link add va type veth peer name vb
A=va
B=vb
result vfs pass "veth $A $B"
"#;

/// Moves `A` and `B` into two namespaces and measures between them; `SECONDS` and `PINGS`
/// are replaced before boot. The guest's interrupts for `A` and `B` (every vector named after
/// them in /proc/interrupts) and the packets both sent are read around the iperf3 phase.
const MEASURE: &str = r#"
irqs() {
    awk -v a="$A" -v b="$B" '{
        n = $NF
        if (n == a || n == b || index(n, a "-") == 1 || index(n, b "-") == 1)
            for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) s += $i
    } END { print s + 0 }' /proc/interrupts
}
sent() {
    echo $(( $(ip netns exec a cat /sys/class/net/$A/statistics/tx_packets) + \
             $(ip netns exec b cat /sys/class/net/$B/statistics/tx_packets) ))
}
ip netns add a
ip netns add b
ip link set "$A" netns a
ip link set "$B" netns b
ip -n a link set lo up
ip -n b link set lo up
ip -n a addr add 10.99.0.1/24 dev "$A"
ip -n b addr add 10.99.0.2/24 dev "$B"
ip -n a link set "$A" up
ip -n b link set "$B" up
if wait_for 90 ip netns exec a ping -c 1 -W 1 10.99.0.2; then
    result reach pass "10.99.0.2 answers"
else
    result reach fail "$(ip -n a link show; ip -n b link show; ip -n a neigh)"
    exit 1
fi
ip netns exec b iperf3 -s -D -1
sleep 1
echo "@@PING-BEGIN@@"
ip netns exec a ping -c PINGS -i 0.2 10.99.0.2 > /tmp/ping 2>&1
echo "@@PING-END@@"
value rtt grep -E 'min/avg|packet loss' /tmp/ping
value irqs_before irqs
value sent_before sent
echo "@@IPERF-BEGIN@@"
ip netns exec a iperf3 -c 10.99.0.2 -t SECONDS -b RATE -J > /tmp/iperf.json 2>&1
value irqs_after irqs
value sent_after sent
echo "@@IPERF-JSON-BEGIN@@"
cat /tmp/iperf.json
echo "@@IPERF-JSON-END@@"
value a_tx ip netns exec a cat /sys/class/net/$A/statistics/tx_packets
value b_tx ip netns exec b cat /sys/class/net/$B/statistics/tx_packets
value interrupts sh -c "grep -E 'igbvf|eth|va|vb' /proc/interrupts | tr -s ' '"
"#;

/// The QEMU igb side's guest script, before [`MEASURE`].
const IGB_SETUP: &str = r#"
check modprobe-igb modprobe igb
if ! wait_for 30 sh -c 'ls -l /sys/class/net/*/device/driver | grep -q /igb$'; then
    result pf fail "no igb netdev: $(ls /sys/class/net | tr '\n' ' ')"
    exit 1
fi
for d in /sys/class/net/*; do
    case "$(readlink "$d/device/driver")" in
        */igb) PF=${d##*/} ;;
    esac
done
result pf pass "$PF $(cat /sys/class/net/$PF/device/uevent | grep PCI_SLOT_NAME)"
ip link set "$PF" up
check sriov sh -c "echo 2 > /sys/class/net/$PF/device/sriov_numvfs"
check vf0-mac ip link set "$PF" vf 0 mac 02:00:00:00:99:0a
check vf1-mac ip link set "$PF" vf 1 mac 02:00:00:00:99:0b
value lspci sh -c "ls /sys/bus/pci/devices | tr '\n' ' '"
check modprobe-igbvf modprobe igbvf
"#;

/// The sriov-emu side's guest script, before [`MEASURE`].
const EMU_SETUP: &str = r#"
check modprobe-igbvf modprobe igbvf
"#;

/// QEMU's igb PF on its own root port, like the sriov-emu VFs: its VFs appear at devfn 0x80 + 2n
/// of the root port's bus, which Linux reaches through ARI forwarding (igb has ARI). The PF's
/// netdev is a hub port with nothing else on the hub: frames for the wire go nowhere, nothing
/// leaves the machine, no network needed.
const IGB_QEMU_ARGS: &[&str] = &[
    "-netdev",
    "hubport,id=n0,hubid=0",
    "-device",
    "pcie-root-port,id=rp0,chassis=1",
    "-device",
    "igb,netdev=n0,bus=rp0,id=pf",
];

const MAC_A: &str = "02:00:00:00:99:0a";
const MAC_B: &str = "02:00:00:00:99:0b";

struct Params {
    rounds: u32,
    seconds: u32,
    /// iperf3's target rate in Mbit/s; 0: as fast as it goes.
    rate_mbit: u32,
    pings: u32,
    cpus: u32,
    /// Guest RAM on huge pages.
    hugetlb: bool,
}

/// One side's figures from one guest.
struct Figures {
    mbps: f64,
    retransmits: Option<u64>,
    rtt_ms: f64,
    rtt_min_ms: f64,
    rtt_line: String,
    load_before: String,
    load_after: String,
    /// What the host saw during the phases, if the guest reached every marker.
    phases: Option<Phases>,
    /// Packets both VFs sent during the whole run (guest counters).
    tx_packets: u64,
    /// The guest's interrupts for both netdevs per packet they sent, in the iperf3 phase.
    guest_irqs_per_packet: Option<f64>,
    log: PathBuf,
}

/// Host-side counters at one marker of the guest's script.
struct Snapshot {
    at: Instant,
    /// vfio-user messages received by both VF servers (sriov-emu only).
    messages: u64,
    /// Of those, REGION_READs: round trips the vCPU waits for.
    reads: u64,
    /// MSI-X eventfd writes by both VFs (sriov-emu only).
    irqs: u64,
    /// CPU time of the QEMU process, s.
    qemu_cpu: f64,
    /// CPU time of this process (the in-process `serve`: VF connection threads, DMA writers,
    /// timer; the harness's console readers are negligible), s.
    serve_cpu: f64,
    /// This process's threads by id (the in-process `serve`'s among them).
    threads: BTreeMap<u32, ThreadStat>,
}

/// One thread's counters, from `/proc/self/task/<tid>/`.
#[derive(Clone, Default)]
struct ThreadStat {
    name: String,
    /// Time on a CPU, ns (`schedstat`).
    run_ns: u64,
    /// Times it went to sleep of its own accord (`voluntary_ctxt_switches`): each one a wakeup
    /// to pay for later.
    sleeps: u64,
}

fn threads() -> BTreeMap<u32, ThreadStat> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let read = |f: &str| std::fs::read_to_string(entry.path().join(f)).unwrap_or_default();
        let run_ns = read("schedstat")
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let sleeps = read("status")
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let name = read("comm").trim().to_string();
        out.insert(
            tid,
            ThreadStat {
                name,
                run_ns,
                sleeps,
            },
        );
    }
    out
}

/// What each kind of thread (by name) did between two snapshots: (CPU s, sleeps), the threads
/// that started in between counted from zero.
fn thread_deltas(
    before: &BTreeMap<u32, ThreadStat>,
    after: &BTreeMap<u32, ThreadStat>,
) -> BTreeMap<String, (f64, u64)> {
    let mut out: BTreeMap<String, (f64, u64)> = BTreeMap::new();
    for (tid, a) in after {
        let b = before.get(tid).cloned().unwrap_or_default();
        let e = out.entry(a.name.clone()).or_default();
        e.0 += a.run_ns.saturating_sub(b.run_ns) as f64 / 1e9;
        e.1 += a.sleeps.saturating_sub(b.sleeps);
    }
    out.retain(|_, (cpu, sleeps)| *cpu > 0.0 || *sleeps > 0);
    out
}

/// Differences between snapshots: the ping phase and the iperf3 phase.
struct Phases {
    ping_messages: u64,
    ping_reads: u64,
    ping_irqs: u64,
    iperf_messages: u64,
    iperf_reads: u64,
    iperf_irqs: u64,
    iperf_wall: f64,
    iperf_qemu_cpu: f64,
    iperf_serve_cpu: f64,
    /// By thread name: CPU s and sleeps in the iperf3 phase.
    iperf_threads: BTreeMap<String, (f64, u64)>,
    /// The VFs' RX drops by reason, over the whole run (sriov-emu only).
    rx_drops: BTreeMap<&'static str, u64>,
}

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_string())
}

/// utime + stime of a process, in seconds.
/// A number of microseconds from the environment, if set.
fn env_us(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name: state is the first, utime the 12th, stime the 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    // SAFETY: sysconf takes an integer and has no side effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    ticks as f64 / hz as f64
}

fn script(p: &Params, setup: &str) -> String {
    format!("{setup}{MEASURE}")
        .replace("SECONDS", &p.seconds.to_string())
        .replace("RATE", &format!("{}M", p.rate_mbit))
        .replace("PINGS", &p.pings.to_string())
}

/// Boots a guest, snapshots the host-side counters at the script's phase markers, and returns
/// the figures once it powered off.
fn run(
    name: &str,
    p: &Params,
    setup: &str,
    args: Vec<String>,
    serving: Option<&Serving>,
    qemu: Option<&std::path::Path>,
) -> Figures {
    let load = loadavg();
    let mut cfg = GuestConfig::new(name, script(p, setup))
        .qemu_args(args)
        .timeout(Duration::from_secs(240 + 4 * u64::from(p.seconds)));
    if let Some(q) = qemu {
        cfg = cfg.qemu(q);
    }
    cfg.cpus = p.cpus;
    cfg.hugetlb = p.hugetlb;
    let guest: RunningGuest = Guest::new(cfg).spawn().unwrap_or_else(|e| panic!("{e}"));
    let qemu = guest.pid().to_string();
    let snapshot = || Snapshot {
        at: Instant::now(),
        messages: serving.map_or(0, |s| s.server_stats().iter().map(|s| s.messages).sum()),
        reads: serving.map_or(0, |s| s.server_stats().iter().map(|s| s.region_reads).sum()),
        irqs: serving.map_or(0, |s| {
            (0..s.nic().num_vfs())
                .filter_map(|vf| s.nic().vf(vf))
                .map(|v| v.stats().irqs_fired)
                .sum()
        }),
        qemu_cpu: cpu_seconds(&qemu),
        serve_cpu: cpu_seconds("self"),
        threads: threads(),
    };
    let limit = Duration::from_secs(240 + 4 * u64::from(p.seconds));
    let mut at = Vec::new();
    for mark in [
        "@@PING-BEGIN@@",
        "@@PING-END@@",
        "@@IPERF-BEGIN@@",
        "@@IPERF-JSON-BEGIN@@",
    ] {
        if !guest.wait_for_console(mark, limit) {
            break;
        }
        at.push(snapshot());
    }
    let out = guest.wait();
    let phases = (at.len() == 4).then(|| Phases {
        ping_messages: at[1].messages - at[0].messages,
        ping_reads: at[1].reads - at[0].reads,
        ping_irqs: at[1].irqs - at[0].irqs,
        iperf_messages: at[3].messages - at[2].messages,
        iperf_reads: at[3].reads - at[2].reads,
        iperf_irqs: at[3].irqs - at[2].irqs,
        iperf_wall: (at[3].at - at[2].at).as_secs_f64(),
        iperf_qemu_cpu: at[3].qemu_cpu - at[2].qemu_cpu,
        iperf_serve_cpu: at[3].serve_cpu - at[2].serve_cpu,
        iperf_threads: thread_deltas(&at[2].threads, &at[3].threads),
        rx_drops: serving.map_or_else(BTreeMap::new, |s| {
            let mut drops = BTreeMap::new();
            for vf in (0..s.nic().num_vfs()).filter_map(|vf| s.nic().vf(vf)) {
                for (reason, n) in vf.stats().rx_drops {
                    *drops.entry(reason).or_insert(0) += n;
                }
            }
            drops.retain(|_, n| *n > 0);
            drops
        }),
    });
    figures(&out, load, phases)
}

/// A counter the guest reported with `value`.
fn counter(out: &GuestOutput, name: &str) -> u64 {
    out.result(name)
        .and_then(|r| r.detail.trim().parse().ok())
        .unwrap_or(0)
}

/// Throughput, RTT and retransmits from a finished guest; panics with its diagnostics.
fn figures(out: &GuestOutput, load_before: String, phases: Option<Phases>) -> Figures {
    for name in ["vfs", "reach"] {
        out.expect_pass(name);
    }
    let rtt_line = out.expect_pass("rtt").detail.clone();
    // busybox: "round-trip min/avg/max = 0.9/1.2/1.6 ms"; iputils: "rtt min/avg/max/mdev = ..."
    let rtt: Vec<f64> = rtt_line
        .split("min/avg/max")
        .nth(1)
        .and_then(|s| s.split('=').nth(1))
        .map(|s| {
            s.trim()
                .split('/')
                .filter_map(|v| v.trim().trim_end_matches(" ms").parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let (rtt_min_ms, rtt_ms) = match rtt[..] {
        [min, avg, ..] => (min, avg),
        _ => panic!("no RTT in {rtt_line:?}\n{}", out.diagnostics()),
    };
    let json = out
        .console
        .split("@@IPERF-JSON-BEGIN@@")
        .nth(1)
        .and_then(|s| s.split("@@IPERF-JSON-END@@").next())
        .unwrap_or_else(|| panic!("no iperf3 output\n{}", out.diagnostics()));
    let v: Value = serde_json::from_str(json.trim())
        .unwrap_or_else(|e| panic!("iperf3 JSON: {e}\n{json}\nlog: {}", out.log_path.display()));
    let end = &v["end"];
    let bps = end["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or_else(|| panic!("no end.sum_received in the iperf3 JSON: {json}"));
    Figures {
        mbps: bps / 1e6,
        retransmits: end["sum_sent"]["retransmits"].as_u64(),
        rtt_ms,
        rtt_min_ms,
        rtt_line,
        load_before,
        load_after: loadavg(),
        phases,
        tx_packets: counter(out, "a_tx") + counter(out, "b_tx"),
        guest_irqs_per_packet: {
            let sent = counter(out, "sent_after").saturating_sub(counter(out, "sent_before"));
            let irqs = counter(out, "irqs_after").saturating_sub(counter(out, "irqs_before"));
            (sent > 0).then(|| irqs as f64 / sent as f64)
        },
        log: out.log_path.clone(),
    }
}

fn sriov_emu(p: &Params) -> Figures {
    let artifacts = Artifacts::locate().unwrap_or_else(|e| panic!("{e}"));
    let dir = artifacts
        .run
        .join(format!("vf-bench-{}", std::process::id()));
    let config = ServeConfig {
        mac_assignment: MacMode::AdminOnly,
        vf: BTreeMap::from([
            ("0".to_string(), format!("mac {MAC_A}")),
            ("1".to_string(), format!("mac {MAC_B}")),
        ]),
        busy_poll_us: env_us("VF_BENCH_BUSY_POLL_US"),
        nap_poll_us: env_us("VF_BENCH_NAP_POLL_US"),
        ..ServeConfig::default()
    };
    let serving = Serving::start(&dir, &config, Some(2)).expect("serve");
    let mut args = Vec::new();
    for vf in 0..2u16 {
        args.push("-device".to_string());
        args.push(format!("pcie-root-port,id=rp{vf},chassis={}", vf + 1));
        args.push("-device".to_string());
        args.push(qemu_device_json(
            &vf_socket(&dir, vf),
            &format!("rp{vf}"),
            &format!("vf{vf}"),
        ));
    }
    let f = run(
        "bench-vf-to-vf-emu",
        p,
        &format!("{EMU_SETUP}{FIND_VFS}"),
        args,
        Some(&serving),
        None,
    );
    serving.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    f
}

/// sriov-emu's PF in full-system mode: the guest's igb enables and sets the VFs, as on the QEMU
/// igb side. `None` when the patched QEMU is not built.
fn full_system(p: &Params) -> Option<Figures> {
    let qemu = sriov_emu::qemu_caps::sriov_qemu_path();
    if !qemu.exists() {
        println!(
            "  full system: skipped, {} is not built (python3 {})",
            qemu.display(),
            sriov_emu::qemu_caps::BUILD_SCRIPT
        );
        return None;
    }
    let artifacts = Artifacts::locate().unwrap_or_else(|e| panic!("{e}"));
    let dir = artifacts
        .run
        .join(format!("vf-bench-full-{}", std::process::id()));
    let config = ServeConfig {
        pf_driver: Some(model::nic::PfDriver::Guest),
        busy_poll_us: env_us("VF_BENCH_BUSY_POLL_US"),
        nap_poll_us: env_us("VF_BENCH_NAP_POLL_US"),
        ..ServeConfig::default()
    };
    let serving = Serving::start(&dir, &config, Some(7)).expect("serve");
    let args = sriov_emu::serve::full_system_qemu_args(&dir, 0, 7, "");
    let f = run(
        "bench-vf-to-vf-full",
        p,
        &format!("{IGB_SETUP}{FIND_VFS}"),
        args,
        Some(&serving),
        Some(&qemu),
    );
    serving.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    Some(f)
}

fn qemu_igb(p: &Params) -> Figures {
    let args = IGB_QEMU_ARGS.iter().map(|s| s.to_string()).collect();
    run(
        "bench-vf-to-vf-igb",
        p,
        &format!("{IGB_SETUP}{FIND_VFS}"),
        args,
        None,
        None,
    )
}

/// The same guest with no NIC: iperf3 and ping over a veth pair between the two namespaces.
fn veth(p: &Params) -> Figures {
    run("bench-vf-to-vf-veth", p, VETH_SETUP, Vec::new(), None, None)
}

/// What one round measures, in the order of the first round (later rounds rotate it).
#[derive(Clone, Copy, PartialEq)]
enum Side {
    Emu,
    Igb,
    Full,
    Veth,
}

impl Side {
    const ALL: [Side; 4] = [Side::Emu, Side::Igb, Side::Full, Side::Veth];

    fn label(self) -> &'static str {
        match self {
            Side::Emu => "sriov-emu",
            Side::Igb => "QEMU igb",
            Side::Full => "full system",
            Side::Veth => "veth",
        }
    }

    /// Its name in `VF_BENCH_ONLY`.
    fn key(self) -> &'static str {
        match self {
            Side::Emu => "emu",
            Side::Igb => "igb",
            Side::Full => "full",
            Side::Veth => "veth",
        }
    }

    fn measure(self, p: &Params) -> Option<Figures> {
        match self {
            Side::Emu => Some(sriov_emu(p)),
            Side::Igb => Some(qemu_igb(p)),
            Side::Full => full_system(p),
            Side::Veth => Some(veth(p)),
        }
    }
}

fn print(label: &str, p: &Params, f: &Figures, emu: bool) {
    let retr = f
        .retransmits
        .map_or_else(String::new, |r| format!(", {r} retransmits"));
    println!(
        "  {label:<10} {:>7.1} Mbit/s{retr}; RTT avg {:.3} ms; load {} -> {}",
        f.mbps, f.rtt_ms, f.load_before, f.load_after
    );
    println!("             ping: {}", f.rtt_line);
    if let Some(ph) = &f.phases {
        let mut line = format!(
            "             iperf3 phase {:.1} s: QEMU {:.1} s CPU ({:.0} % of a core)",
            ph.iperf_wall,
            ph.iperf_qemu_cpu,
            100.0 * ph.iperf_qemu_cpu / ph.iperf_wall
        );
        if emu {
            line += &format!(
                ", serve {:.1} s CPU ({:.0} %)",
                ph.iperf_serve_cpu,
                100.0 * ph.iperf_serve_cpu / ph.iperf_wall
            );
        }
        println!("{line}; {} packets sent by both VFs", f.tx_packets);
        if let Some(g) = f.guest_irqs_per_packet {
            println!("             guest interrupts (/proc/interrupts) per packet sent in iperf3: {g:.3}");
        }
        if emu {
            let pings = f64::from(p.pings.max(1));
            let packets = f.tx_packets.max(1) as f64;
            println!(
                "             per ping round trip: {:.1} vfio-user messages ({:.1} register reads), {:.1} interrupts; \
                 iperf3: {} messages ({} register reads), {} interrupts ({:.3} and {:.3} per packet), serve CPU \
                 {:.1} us per message, {:.2} us per packet",
                ph.ping_messages as f64 / pings,
                ph.ping_reads as f64 / pings,
                ph.ping_irqs as f64 / pings,
                ph.iperf_messages,
                ph.iperf_reads,
                ph.iperf_irqs,
                ph.iperf_messages as f64 / packets,
                ph.iperf_irqs as f64 / packets,
                1e6 * ph.iperf_serve_cpu / ph.iperf_messages.max(1) as f64,
                1e6 * ph.iperf_serve_cpu / packets,
            );
            // Where serve's CPU went, by thread: a wakeup's price on this host times how many
            // each kind of thread took, against the work done awake.
            let by_thread: Vec<String> = ph
                .iperf_threads
                .iter()
                .filter(|(_, (cpu, _))| *cpu >= 0.001)
                .map(|(name, (cpu, sleeps))| {
                    format!(
                        "{name} {:.2} us and {:.3} wakeups per packet ({:.0} us per wakeup)",
                        1e6 * cpu / packets,
                        *sleeps as f64 / packets,
                        1e6 * cpu / (*sleeps).max(1) as f64
                    )
                })
                .collect();
            println!("             iperf3, by thread: {}", by_thread.join("; "));
            println!("             RX drops over the run: {:?}", ph.rx_drops);
        }
    }
    println!("             log: {}", f.log.display());
}

/// The ratios of `a`'s figure to `b`'s round by round, listed, and their median: two sides
/// measured one after the other share the host's state of the moment, which on a noisy host
/// drifts between rounds by more than the sides differ.
fn paired(a: &[Figures], b: &[Figures], figure: impl Fn(&Figures) -> f64) -> (String, f64) {
    let ratios: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(x, y)| figure(x) / figure(y))
        .collect();
    let listed = ratios
        .iter()
        .map(|r| format!("{r:.2}"))
        .collect::<Vec<_>>()
        .join(", ");
    (listed, median(ratios))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs bench targets without it,
    // and a test run must not boot guests for minutes.
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "vf_to_vf: a benchmark; run it with `cargo bench -p sriov-emu-tests --bench vf_to_vf`"
        );
        return;
    }
    let p = Params {
        rounds: env_u32("VF_BENCH_ROUNDS", 5).max(1),
        seconds: env_u32("VF_BENCH_SECONDS", 10),
        rate_mbit: env_u32("VF_BENCH_RATE_MBIT", 0),
        pings: env_u32("VF_BENCH_PINGS", 50),
        cpus: env_u32("VF_BENCH_CPUS", 1),
        hugetlb: env_u32("VF_BENCH_HUGETLB", 0) != 0,
    };
    // VF_BENCH_ONLY: a comma-separated subset of emu, igb, veth.
    let only = std::env::var("VF_BENCH_ONLY").unwrap_or_default();
    let sides: Vec<Side> = Side::ALL
        .into_iter()
        .filter(|s| only.is_empty() || only.split(',').any(|o| o.trim() == s.key()))
        .collect();
    println!(
        "VF-to-VF: one guest with two VFs in two network namespaces; TCG, {} vCPU(s), 512 MiB{}, \
         QEMU 11.1.3 (full system: the patched 10.2.2); iperf3 TCP {} s{}, ping {} x 0.2 s; {} \
         round(s); host load (1/5/15 min) {}",
        p.cpus,
        if p.hugetlb { " on huge pages" } else { "" },
        p.seconds,
        match p.rate_mbit {
            0 => String::new(),
            r => format!(" at {r} Mbit/s"),
        },
        p.pings,
        p.rounds,
        loadavg()
    );
    let mut results: Vec<(Side, Vec<Figures>)> = sides.iter().map(|&s| (s, Vec::new())).collect();
    for round in 0..p.rounds as usize {
        println!("round {}:", round + 1);
        for i in 0..results.len() {
            let slot = (i + round) % results.len();
            let side = results[slot].0;
            let Some(f) = side.measure(&p) else {
                continue;
            };
            print(side.label(), &p, &f, matches!(side, Side::Emu | Side::Full));
            results[slot].1.push(f);
        }
    }
    let summary = |v: &[Figures]| {
        (
            median(v.iter().map(|f| f.mbps).collect()),
            median(v.iter().map(|f| f.rtt_ms).collect()),
            median(v.iter().map(|f| f.rtt_min_ms).collect()),
            median(
                v.iter()
                    .map(|f| f.guest_irqs_per_packet.unwrap_or(f64::NAN))
                    .collect(),
            ),
        )
    };
    println!("median of {} round(s):", p.rounds);
    for (side, v) in results.iter().filter(|(_, v)| !v.is_empty()) {
        let (mbps, rtt, min, irqs) = summary(v);
        println!(
            "  {:<10} {mbps:>7.1} Mbit/s; RTT avg {rtt:.3} ms (min {min:.3} ms); guest interrupts per packet {irqs:.3}",
            side.label()
        );
    }
    let of = |side: Side| {
        results
            .iter()
            .find(|(s, v)| *s == side && !v.is_empty())
            .map(|(_, v)| summary(v))
    };
    if let (Some((em, er, en, ei)), Some((im, ir, imin, ii))) = (of(Side::Emu), of(Side::Igb)) {
        println!(
            "  ratio sriov-emu / QEMU igb: throughput {:.2}, RTT avg {:.2} (min {:.2}), guest interrupts per packet {:.2}",
            em / im,
            er / ir,
            en / imin,
            ei / ii
        );
    }
    let rounds_of = |side: Side| {
        results
            .iter()
            .find(|(s, v)| *s == side && !v.is_empty())
            .map(|(_, v)| v.as_slice())
    };
    for (side, name) in [(Side::Emu, "sriov-emu"), (Side::Full, "full system")] {
        if let (Some(a), Some(b)) = (rounds_of(side), rounds_of(Side::Igb)) {
            let (tput, tput_median) = paired(a, b, |f| f.mbps);
            let (rtt, rtt_median) = paired(a, b, |f| f.rtt_ms);
            println!(
                "  round by round, {name} / QEMU igb (each pair measured back to back): \
                 throughput {tput} (median {tput_median:.2}), RTT avg {rtt} (median {rtt_median:.2})"
            );
        }
    }
    if let (Some((fm, fr, fmin, fi)), Some((im, ir, imin, ii))) = (of(Side::Full), of(Side::Igb)) {
        println!(
            "  ratio full system / QEMU igb: throughput {:.2}, RTT avg {:.2} (min {:.2}), guest interrupts per packet {:.2}",
            fm / im,
            fr / ir,
            fmin / imin,
            fi / ii
        );
    }
    if let (Some((em, ..)), Some((vm, ..))) = (of(Side::Emu), of(Side::Veth)) {
        println!("  ratio sriov-emu / veth: throughput {:.2}", em / vm);
    }
    if let (Some((im, ..)), Some((vm, ..))) = (of(Side::Igb), of(Side::Veth)) {
        println!("  ratio QEMU igb / veth: throughput {:.2}", im / vm);
    }
    println!("host load at the end: {}", loadavg());
}
