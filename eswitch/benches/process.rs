//! `cargo bench -p eswitch`: 64-byte frames (60 bytes + FCS) from 8 VFs through
//! `Eswitch::process` with a port VLAN (VST), spoofchk and a shaper on every VF. Prints frames per
//! second on one core and the ratio to 10 GbE line rate (14.88 Mpps).

use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;
use eswitch::wire::EtherTypes;
use eswitch::{build_frame, Deliveries, Eswitch, EswitchConfig, MacAddr, PortId, VlanProto};

const VFS: u16 = 8;
/// 60 bytes without FCS: a minimum 64-byte Ethernet frame on the wire.
const FRAME_LEN: usize = 60;
/// 10 GbE, 64-byte frames: 10e9 / ((64 + 20) × 8).
const LINE_RATE_10G_PPS: f64 = 14_880_952.0;
const FRAMES: u64 = 20_000_000;
const RUNS: usize = 3;
/// The clock is read once per this many frames (reading it per frame would cost as much as
/// switching the frame).
const CLOCK_EVERY: u64 = 256;

fn vf_mac(n: u16) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, 0x10 + n as u8])
}

fn setup() -> Eswitch {
    let mut sw = Eswitch::new(EswitchConfig {
        num_vfs: VFS,
        num_uplinks: 1,
        link_speed_mbps: 10_000,
        pf_mac: Some(MacAddr([0x02, 0, 0, 0, 0, 0xf0])),
        ..EswitchConfig::default()
    })
    .expect("config");
    for n in 0..VFS {
        sw.set_vf_mac(n, vf_mac(n)).expect("mac");
        sw.set_vf_vlan(n, 10, 3, VlanProto::Dot1Q).expect("vlan");
        sw.set_vf_spoofchk(n, true).expect("spoofchk");
        sw.set_vf_rate(n, 0, 10_000).expect("rate");
    }
    sw
}

struct Outcome {
    pps: f64,
    deliveries: u64,
    deferred: u64,
}

/// How the loop calls the switch.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `process`, a fresh result per frame.
    Process,
    /// `process_into` with one result buffer reused for every frame (what a device model's
    /// TX loop would do; a spilled broadcast result keeps its heap buffer).
    ProcessInto,
    /// `process` with a freshly allocated frame each time, as a device model copying the frame
    /// out of guest memory would hand over: includes that allocation and its free.
    FreshFrames,
}

/// Sends `FRAMES` frames round-robin from the 8 VFs; `dst(n)` is VF n's destination.
fn run(dst: impl Fn(u16) -> MacAddr, mode: Mode) -> Outcome {
    let mut sw = setup();
    // The frames live for the whole run, so cloning one costs nothing and the figure is the
    // switch's own cost, not the frame source's (the device model's copy out of guest memory).
    let frames: Vec<Bytes> = (0..VFS)
        .map(|n| {
            let payload = [0; FRAME_LEN - 14];
            let frame = build_frame(dst(n), vf_mac(n), None, EtherTypes::Ipv4, &payload);
            Bytes::from_static(Vec::leak(frame.to_vec()))
        })
        .collect();
    let start = Instant::now();
    let mut now = 0u64;
    let mut deliveries = 0u64;
    let mut deferred = 0u64;
    let mut reused = Deliveries::default();
    for i in 0..FRAMES {
        if i % CLOCK_EVERY == 0 {
            now = start.elapsed().as_nanos() as u64;
        }
        let vf = (i % u64::from(VFS)) as u16;
        let frame = &frames[usize::from(vf)];
        if sw.tx_admit(vf, now, frame.len()).is_err() {
            deferred += 1;
            continue;
        }
        match mode {
            Mode::Process => {
                let out = sw.process(PortId::Vf(vf), black_box(frame.clone()));
                deliveries += black_box(out.len()) as u64;
            }
            Mode::ProcessInto => {
                sw.process_into(PortId::Vf(vf), black_box(frame.clone()), &mut reused);
                deliveries += black_box(reused.len()) as u64;
            }
            Mode::FreshFrames => {
                let fresh = Bytes::from(frame.to_vec());
                let out = sw.process(PortId::Vf(vf), black_box(fresh));
                deliveries += black_box(out.len()) as u64;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    Outcome {
        pps: FRAMES as f64 / secs,
        deliveries,
        deferred,
    }
}

fn report(name: &str, mode: Mode, dst: impl Fn(u16) -> MacAddr + Copy) {
    // `cargo bench -p eswitch -- WORD` runs only the cases whose name contains WORD.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
        return;
    }
    let best = (0..RUNS)
        .map(|_| run(dst, mode))
        .max_by(|a, b| a.pps.total_cmp(&b.pps))
        .expect("runs");
    println!(
        "{name:<44} {:>7.2} Mpps/core  {:>5.2}x 10GbE line rate  ({} deliveries, {} deferred by shaper)",
        best.pps / 1e6,
        best.pps / LINE_RATE_10G_PPS,
        best.deliveries,
        best.deferred,
    );
}

fn main() {
    println!(
        "eswitch process: {FRAMES} x {}-byte frames from {VFS} VFs, VST vlan 10 qos 3, spoofchk on, \
         shaper 10 Gbit/s per VF; best of {RUNS}",
        FRAME_LEN + 4
    );
    let next_vf = |n| vf_mac((n + 1) % VFS);
    let remote = |_| MacAddr([0x02, 0, 0, 0, 0, 0xee]);
    let broadcast = |_| MacAddr::BROADCAST;
    report(
        "VF -> VF unicast (same port VLAN, stripped)",
        Mode::Process,
        next_vf,
    );
    report(
        "VF -> uplink unicast (port VLAN tag inserted)",
        Mode::Process,
        remote,
    );
    report("VF -> broadcast (7 VFs + uplink)", Mode::Process, broadcast);
    report(
        "VF -> broadcast, process_into (reused result)",
        Mode::ProcessInto,
        broadcast,
    );
    report(
        "VF -> VF unicast, fresh frame allocation each",
        Mode::FreshFrames,
        next_vf,
    );
}
