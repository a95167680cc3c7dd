//! Property tests of the switch's isolation rules and of the shaper's accuracy.

use bytes::Bytes;
use eswitch::wire::EtherTypes;
use eswitch::wire::{EthernetFrame, EthernetRepr};
use eswitch::{
    build_frame, DropReason, Eswitch, EswitchConfig, MacAddr, NextSendAt, PfPolicy, PortId,
    PortVlan, TokenBucket, VfPolicy, VlanTci,
};
use proptest::prelude::*;

const PF_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xf0]);
const REMOTE: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xee]);
const GROUP: MacAddr = MacAddr([0x01, 0x00, 0x5e, 0, 0, 0x01]);
/// VLAN ids the generators draw from (0 = untagged), small so that collisions are common.
const VIDS: [u16; 4] = [0, 1, 2, 3];

fn vf_mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, 0x10 + n])
}

/// One VF's policy as the generator draws it.
#[derive(Clone, Debug)]
struct VfSpec {
    mac: Option<u8>,
    filter: Option<u8>,
    port_vlan: Option<(u16, u8)>,
    vlan_filters: Vec<u16>,
    spoofchk: bool,
    trust: bool,
    allmulti: bool,
}

fn vf_spec() -> impl Strategy<Value = VfSpec> {
    (
        prop::option::weighted(0.9, 0u8..8),
        prop::option::of(0u8..8),
        prop::option::of((1u16..4, 0u8..8)),
        prop::collection::vec(1u16..4, 0..3),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(mac, filter, port_vlan, vlan_filters, spoofchk, trust, allmulti)| VfSpec {
                mac,
                filter,
                port_vlan,
                vlan_filters,
                spoofchk,
                trust,
                allmulti,
            },
        )
}

impl VfSpec {
    fn policy(&self) -> VfPolicy {
        VfPolicy {
            mac: self.mac.map(vf_mac),
            mac_filters: self.filter.map(vf_mac).into_iter().collect(),
            port_vlan: self.port_vlan.map(|(vid, qos)| PortVlan { vid, qos }),
            vlan_filters: self.vlan_filters.clone(),
            spoofchk: self.spoofchk,
            trust: self.trust,
            allmulti: self.allmulti,
            ..VfPolicy::default()
        }
    }
}

#[derive(Clone, Debug)]
struct FrameSpec {
    ingress: u8,
    src: u8,
    dst: u8,
    tag: Option<(u16, u8)>,
}

fn frame_spec() -> impl Strategy<Value = FrameSpec> {
    (
        0u8..16,
        0u8..10,
        0u8..12,
        prop::option::of((prop::sample::select(&VIDS[..]), 0u8..8)),
    )
        .prop_map(|(ingress, src, dst, tag)| FrameSpec {
            ingress,
            src,
            dst,
            tag,
        })
}

/// 0..8 → VF MACs, 8 → PF, 9 → a remote host, 10 → broadcast, 11 → a multicast group.
fn addr(n: u8) -> MacAddr {
    match n {
        0..=7 => vf_mac(n),
        8 => PF_MAC,
        9 => REMOTE,
        10 => MacAddr::BROADCAST,
        _ => GROUP,
    }
}

struct World {
    sw: Eswitch,
    vfs: Vec<VfPolicy>,
    pf_vlans: Vec<u16>,
}

fn world(specs: &[VfSpec], pf_vlans: &[u16]) -> World {
    let mut sw = Eswitch::new(EswitchConfig {
        num_vfs: specs.len() as u16,
        num_uplinks: 1,
        pf_mac: Some(PF_MAC),
        ..EswitchConfig::default()
    })
    .unwrap();
    sw.set_pf_policy(PfPolicy {
        macs: vec![PF_MAC],
        vlans: pf_vlans.to_vec(),
        ..PfPolicy::default()
    })
    .unwrap();
    let vfs: Vec<VfPolicy> = specs.iter().map(VfSpec::policy).collect();
    for (n, p) in vfs.iter().enumerate() {
        sw.set_policy(n as u16, p.clone()).unwrap();
    }
    World {
        sw,
        vfs,
        pf_vlans: pf_vlans.to_vec(),
    }
}

impl World {
    fn ingress(&self, n: u8) -> PortId {
        match usize::from(n) % (self.vfs.len() + 2) {
            0 => PortId::Uplink(0),
            1 => PortId::Pf,
            v => PortId::Vf((v - 2) as u16),
        }
    }

    /// The VLAN a frame belongs to once inside the switch, computed from the policies alone.
    fn frame_vlan(&self, ingress: PortId, tag: Option<VlanTci>) -> u16 {
        if let PortId::Vf(n) = ingress {
            if let Some(pv) = self.vfs[usize::from(n)].effective_port_vlan() {
                return pv.vid;
            }
        }
        tag.map_or(0, VlanTci::vid)
    }

    /// Whether `port` is a member of VLAN `vid`, computed from the policies alone.
    fn member(&self, port: PortId, vid: u16) -> bool {
        match port {
            PortId::Uplink(_) => true,
            PortId::Pf => vid == 0 || self.pf_vlans.contains(&vid),
            PortId::Vf(n) => {
                let p = &self.vfs[usize::from(n)];
                match p.effective_port_vlan() {
                    Some(pv) => pv.vid == vid,
                    None => vid == 0 || p.vlan_filters.contains(&vid),
                }
            }
        }
    }

    fn build(&self, f: &FrameSpec) -> (PortId, Bytes, Option<VlanTci>) {
        let ingress = self.ingress(f.ingress);
        let tag = f.tag.map(|(vid, pcp)| VlanTci::new(vid, pcp));
        let frame = build_frame(addr(f.dst), addr(f.src), tag, EtherTypes::Ipv4, &[0; 46]);
        (ingress, frame, tag)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn no_frame_leaves_a_spoofchk_vf_with_a_source_it_does_not_own(
        specs in prop::collection::vec(vf_spec(), 1..6),
        frames in prop::collection::vec(frame_spec(), 1..40),
    ) {
        let mut w = world(&specs, &[1]);
        for f in &frames {
            let (ingress, frame, _) = w.build(f);
            let out = w.sw.process(ingress, frame);
            if let PortId::Vf(n) = ingress {
                let p = &w.vfs[usize::from(n)];
                if p.spoofchk && !p.owns(addr(f.src)) {
                    prop_assert!(out.is_empty(), "spoofed frame delivered: {out:?}");
                    prop_assert!(out.dropped(DropReason::SpoofMac));
                }
            }
        }
    }

    #[test]
    fn no_frame_crosses_from_one_vlan_to_another(
        specs in prop::collection::vec(vf_spec(), 1..6),
        pf_vlans in prop::collection::vec(1u16..4, 0..2),
        frames in prop::collection::vec(frame_spec(), 1..40),
    ) {
        let mut w = world(&specs, &pf_vlans);
        for f in &frames {
            let (ingress, frame, tag) = w.build(f);
            let vlan = w.frame_vlan(ingress, tag);
            let out = w.sw.process(ingress, frame);
            for d in &out {
                prop_assert!(w.member(d.port, vlan), "{ingress} VLAN {vlan} reached {}", d.port);
                let delivered = EthernetRepr::parse(&EthernetFrame::new_unchecked(&d.frame)).unwrap();
                // Whatever tag the receiver sees (in the frame or stripped into the descriptor)
                // names the frame's VLAN.
                if let Some(tci) = d.stripped_tci.or(delivered.dot1q_tci()) {
                    prop_assert_eq!(tci.vid(), vlan);
                }
                if let PortId::Vf(n) = d.port {
                    if let Some(pv) = w.vfs[usize::from(n)].effective_port_vlan() {
                        prop_assert_eq!(pv.vid, vlan);
                        // A port-VLAN VF never sees the port VLAN tag in the frame itself.
                        prop_assert!(d.stripped_tci.is_some());
                    }
                }
                if d.port == PortId::Uplink(0) && vlan != 0 {
                    prop_assert_eq!(delivered.dot1q_tci().map(VlanTci::vid), Some(vlan));
                }
            }
        }
    }

    #[test]
    fn a_broadcast_reaches_exactly_its_vlan_minus_the_ingress(
        specs in prop::collection::vec(vf_spec(), 1..7),
        pf_vlans in prop::collection::vec(1u16..4, 0..2),
        ingress in 0u8..16,
        tag in prop::option::of(prop::sample::select(&VIDS[..])),
    ) {
        let mut w = world(&specs, &pf_vlans);
        let ingress = w.ingress(ingress);
        // A sender that passes its own checks: its own MAC, untagged if VST, a joined VLAN if VGT.
        let (src, tag) = match ingress {
            PortId::Vf(n) => {
                let p = &mut w.vfs[usize::from(n)];
                p.mac = Some(vf_mac(n as u8));
                if p.effective_port_vlan().is_none() {
                    if let Some(vid) = tag.filter(|&v| v != 0) {
                        p.vlan_filters.push(vid);
                    }
                }
                let p = p.clone();
                let tag = if p.effective_port_vlan().is_some() { None } else { tag };
                w.sw.set_policy(n, p).unwrap();
                (vf_mac(n as u8), tag)
            }
            _ => (REMOTE, tag),
        };
        let tci = tag.map(|vid| VlanTci::new(vid, 0));
        let vlan = w.frame_vlan(ingress, tci);
        let frame = build_frame(MacAddr::BROADCAST, src, tci, EtherTypes::Arp, &[0; 28]);
        let out = w.sw.process(ingress, frame);
        let got: Vec<PortId> = out.ports().collect();
        let want: Vec<PortId> = w
            .sw
            .ports()
            .filter(|&p| p != ingress)
            .filter(|&p| !(matches!(ingress, PortId::Uplink(_)) && matches!(p, PortId::Uplink(_))))
            .filter(|&p| w.member(p, vlan))
            .collect();
        prop_assert_eq!(got, want);
        prop_assert!(out.drops.is_empty());
        for d in &out {
            prop_assert_eq!(w.sw.counters(d.port).unwrap().rx_broadcast, 1);
        }
    }

    /// A sender that always has a frame waiting, and comes back when told (plus up to 50 µs of
    /// timer jitter), passes `rate × T ± 5 %`, within the burst.
    #[test]
    fn shaper_passes_rate_times_time_within_five_percent_plus_burst(
        rate_mbps in 1u64..=10_000,
        sizes in prop::collection::vec(64u64..=1518, 50..400),
        jitter in prop::collection::vec(0u64..50_000, 50..400),
        start in 0u64..1_000_000_000,
    ) {
        let rate = rate_mbps * 1_000_000;
        let mut tb = TokenBucket::new(rate);
        let burst = tb.burst_bits() as f64;
        let mut now = start;
        let mut passed_bits = 0u64;
        let mut first_wait: Option<u64> = None;
        let mut i = 0usize;
        // Run for at least 200 frame-times and 20 ms so the burst is small against rate × T.
        let horizon = start + (200 * 1518 * 8 * 1_000_000_000 / rate).max(20_000_000);
        while now < horizon {
            let bits = sizes[i % sizes.len()] * 8;
            match tb.try_send(now, bits) {
                Ok(()) => {
                    passed_bits += bits;
                    i += 1;
                }
                Err(NextSendAt(at)) => {
                    prop_assert!(at > now, "told to retry now");
                    first_wait.get_or_insert(now);
                    now = at + jitter[i % jitter.len()];
                }
            }
        }
        let elapsed = (now - start) as f64;
        let ideal = rate as f64 * elapsed / 1e9;
        let passed = passed_bits as f64;
        prop_assert!(passed <= ideal * 1.05 + burst, "passed {passed} > {ideal} + {burst}");
        prop_assert!(passed >= ideal * 0.95 - burst, "passed {passed} < {ideal} - {burst}");
    }

    /// However the caller's clock moves (random polling, pauses, even steps backwards), the
    /// shaper never passes more than `rate × T + burst`.
    #[test]
    fn shaper_never_exceeds_rate_times_time_plus_burst_on_any_clock(
        rate_mbps in 1u64..=10_000,
        steps in prop::collection::vec((0u64..3_000_000, 64u64..=1518, any::<bool>()), 1..500),
    ) {
        let rate = rate_mbps * 1_000_000;
        let mut tb = TokenBucket::new(rate);
        let burst = tb.burst_bits() as f64;
        let mut now = 0u64;
        let mut latest = 0u64;
        let mut passed_bits = 0u64;
        for &(step, size, backwards) in &steps {
            now = if backwards { now.saturating_sub(step / 8) } else { now + step };
            latest = latest.max(now);
            if tb.try_send(now, size * 8).is_ok() {
                passed_bits += size * 8;
            }
        }
        let ideal = rate as f64 * latest as f64 / 1e9;
        prop_assert!(passed_bits as f64 <= ideal + burst + 1.0);
    }

    /// Any bytes from any port: no panic, and each frame is either accepted (counted as sent)
    /// or dropped at the ingress with a named reason.
    #[test]
    fn arbitrary_bytes_never_panic_and_are_always_accounted_for(
        specs in prop::collection::vec(vf_spec(), 1..4),
        frames in prop::collection::vec((0u8..8, prop::collection::vec(any::<u8>(), 0..80)), 1..60),
    ) {
        let mut w = world(&specs, &[2]);
        for (ingress, bytes) in frames {
            let ingress = w.ingress(ingress);
            let before = w.sw.counters(ingress).unwrap().clone();
            let out = w.sw.process(ingress, Bytes::from(bytes));
            let after = w.sw.counters(ingress).unwrap();
            let sent = after.tx_packets - before.tx_packets;
            let refused: u64 = [
                DropReason::Malformed,
                DropReason::LinkDown,
                DropReason::SpoofMac,
                DropReason::SpoofVlan,
                DropReason::Oversize,
            ]
            .iter()
            .map(|&r| after.drops.get(r) - before.drops.get(r))
            .sum();
            prop_assert_eq!(sent + refused, 1, "{:?}", out);
            for d in &out {
                prop_assert!(EthernetFrame::new_checked(&d.frame).is_ok());
            }
        }
    }
}
