use bytes::Bytes;

use super::*;
use crate::wire::{build_frame, EthernetRepr};

/// The Ethernet header of a delivered frame.
fn header(frame: &[u8]) -> EthernetRepr {
    EthernetRepr::parse(&EthernetFrame::new_unchecked(frame)).expect("a well-formed frame")
}

const PF_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xf0]);
const REMOTE: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xee]);
const STRANGER: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xdd]);

fn vf_mac(n: u16) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, 0x10 + n as u8])
}

/// One uplink, the PF, four VFs each with an admin MAC, everything else default.
fn switch() -> Eswitch {
    switch_with(4)
}

fn switch_with(num_vfs: u16) -> Eswitch {
    let mut sw = Eswitch::new(EswitchConfig {
        num_vfs,
        num_uplinks: 1,
        pf_mac: Some(PF_MAC),
        ..EswitchConfig::default()
    })
    .unwrap();
    for n in 0..num_vfs {
        sw.set_vf_mac(n, vf_mac(n)).unwrap();
    }
    sw
}

fn frame(dst: MacAddr, src: MacAddr, tag: Option<VlanTci>) -> Bytes {
    build_frame(dst, src, tag, EtherTypes::Ipv4, &[0x45; 46])
}

fn arp_request(src: MacAddr, tag: Option<VlanTci>) -> Bytes {
    build_frame(MacAddr::BROADCAST, src, tag, EtherTypes::Arp, &[0; 28])
}

fn ports(d: &Deliveries) -> Vec<PortId> {
    d.ports().collect()
}

fn drops(d: &Deliveries) -> Vec<(PortId, DropReason)> {
    d.drops.iter().map(|r| (r.port, r.reason)).collect()
}

fn set_port_vlan(sw: &mut Eswitch, vf: u16, vid: u16, qos: u8) {
    sw.set_vf_vlan(vf, vid, qos, VlanProto::Dot1Q).unwrap();
}

const UPLINK: PortId = PortId::Uplink(0);

// ---- Broadcast -------------------------------------------------------------------------------

#[test]
fn arp_broadcast_reaches_pf_and_every_other_vf() {
    let mut sw = switch();
    let out = sw.process(PortId::Vf(0), arp_request(vf_mac(0), None));
    assert_eq!(
        ports(&out),
        vec![
            UPLINK,
            PortId::Pf,
            PortId::Vf(1),
            PortId::Vf(2),
            PortId::Vf(3)
        ]
    );
    assert!(out.drops.is_empty());
    for port in [
        UPLINK,
        PortId::Pf,
        PortId::Vf(1),
        PortId::Vf(2),
        PortId::Vf(3),
    ] {
        let c = sw.counters(port).unwrap();
        assert_eq!((c.rx_packets, c.rx_broadcast), (1, 1), "{port}");
        assert_eq!(c.rx_bytes, 42);
    }
    let sender = sw.counters(PortId::Vf(0)).unwrap();
    assert_eq!(
        (sender.tx_packets, sender.tx_broadcast, sender.rx_packets),
        (1, 1, 0)
    );
}

#[test]
fn broadcast_from_uplink_reaches_pf_and_vfs_but_not_other_uplinks() {
    let mut sw = Eswitch::new(EswitchConfig {
        num_vfs: 2,
        num_uplinks: 2,
        ..EswitchConfig::default()
    })
    .unwrap();
    let out = sw.process(PortId::Uplink(1), arp_request(REMOTE, None));
    assert_eq!(ports(&out), vec![PortId::Pf, PortId::Vf(0), PortId::Vf(1)]);
    // From inside, every uplink gets a copy.
    let out = sw.process(PortId::Pf, arp_request(PF_MAC, None));
    assert_eq!(
        ports(&out),
        vec![
            PortId::Uplink(0),
            PortId::Uplink(1),
            PortId::Vf(0),
            PortId::Vf(1)
        ]
    );
}

#[test]
fn vst_broadcast_stays_in_its_vlan_tagged_to_uplink_stripped_to_peers() {
    let mut sw = switch();
    set_port_vlan(&mut sw, 0, 10, 3);
    set_port_vlan(&mut sw, 1, 10, 5);
    set_port_vlan(&mut sw, 2, 20, 0);
    let out = sw.process(PortId::Vf(0), arp_request(vf_mac(0), None));
    // Not the PF (untagged only), not VF2 (VLAN 20), not VF3 (untagged).
    assert_eq!(ports(&out), vec![UPLINK, PortId::Vf(1)]);
    let up = out.to(UPLINK).unwrap();
    let hdr = header(&up.frame);
    assert_eq!(hdr.dot1q_tci(), Some(VlanTci::new(10, 3)));
    assert_eq!(hdr.ethertype, EtherTypes::Arp);
    assert_eq!(up.stripped_tci, None);
    let peer = out.to(PortId::Vf(1)).unwrap();
    assert!(header(&peer.frame).tags.is_empty());
    assert_eq!(peer.frame.len(), 42);
    assert_eq!(peer.stripped_tci, Some(VlanTci::new(10, 3)));
}

#[test]
fn pf_that_joined_a_vlan_receives_it_tagged() {
    let mut sw = switch();
    set_port_vlan(&mut sw, 0, 10, 0);
    sw.set_pf_policy(PfPolicy {
        macs: vec![PF_MAC],
        vlans: vec![10],
        ..PfPolicy::default()
    })
    .unwrap();
    let out = sw.process(PortId::Vf(0), arp_request(vf_mac(0), None));
    let pf = out.to(PortId::Pf).expect("PF joined VLAN 10");
    assert_eq!(header(&pf.frame).dot1q_tci().map(VlanTci::vid), Some(10));
    assert_eq!(pf.stripped_tci, None);
    // With RX stripping on (the PF model mirrors its VLAN strip setting), the tag is reported.
    assert_eq!(sw.rx_vlan_strip(PortId::Pf), Ok(false));
    sw.set_rx_vlan_strip(PortId::Pf, true).unwrap();
    assert_eq!(sw.rx_vlan_strip(PortId::Pf), Ok(true));
    let out = sw.process(PortId::Vf(0), arp_request(vf_mac(0), None));
    assert_eq!(
        out.to(PortId::Pf).unwrap().stripped_tci.map(VlanTci::vid),
        Some(10)
    );
}

#[test]
fn vlan_promiscuous_pf_sees_every_vlan() {
    let mut sw = switch();
    set_port_vlan(&mut sw, 0, 77, 0);
    sw.set_pf_policy(PfPolicy {
        vlan_promisc: true,
        ..PfPolicy::default()
    })
    .unwrap();
    let out = sw.process(PortId::Vf(0), arp_request(vf_mac(0), None));
    assert!(out.to(PortId::Pf).is_some());
}

// ---- Unicast ---------------------------------------------------------------------------------

#[test]
fn unicast_to_a_vf_goes_to_that_vf_only_without_uplink_copy() {
    let mut sw = switch();
    let out = sw.process(PortId::Vf(0), frame(vf_mac(2), vf_mac(0), None));
    assert_eq!(ports(&out), vec![PortId::Vf(2)]);
    let c = sw.counters(PortId::Vf(2)).unwrap();
    assert_eq!((c.rx_packets, c.rx_broadcast, c.rx_multicast), (1, 0, 0));
}

#[test]
fn unicast_between_vst_vfs_of_one_vlan_is_stripped_with_tci_reported() {
    let mut sw = switch();
    set_port_vlan(&mut sw, 0, 10, 2);
    set_port_vlan(&mut sw, 1, 10, 0);
    let sent = frame(vf_mac(1), vf_mac(0), None);
    let out = sw.process(PortId::Vf(0), sent.clone());
    assert_eq!(ports(&out), vec![PortId::Vf(1)]);
    let d = out.to(PortId::Vf(1)).unwrap();
    assert_eq!(d.frame, sent);
    assert_eq!(d.stripped_tci, Some(VlanTci::new(10, 2)));
}

#[test]
fn unicast_to_a_vf_in_another_vlan_is_dropped_by_its_vlan_filter() {
    let mut sw = switch();
    set_port_vlan(&mut sw, 0, 10, 0);
    set_port_vlan(&mut sw, 1, 20, 0);
    let out = sw.process(PortId::Vf(0), frame(vf_mac(1), vf_mac(0), None));
    assert!(out.is_empty());
    assert_eq!(drops(&out), vec![(PortId::Vf(1), DropReason::VlanFilter)]);
    assert_eq!(sw.counters(PortId::Vf(1)).unwrap().drops.vlan_filter, 1);
    // Nor does a VST VF reach an untagged one, or the PF.
    let out = sw.process(PortId::Vf(0), frame(vf_mac(3), vf_mac(0), None));
    assert_eq!(drops(&out), vec![(PortId::Vf(3), DropReason::VlanFilter)]);
    let out = sw.process(PortId::Vf(0), frame(PF_MAC, vf_mac(0), None));
    assert_eq!(drops(&out), vec![(PortId::Pf, DropReason::VlanFilter)]);
}

#[test]
fn unknown_unicast_from_a_vf_goes_to_the_uplink_only() {
    let mut sw = switch();
    let out = sw.process(PortId::Vf(0), frame(REMOTE, vf_mac(0), None));
    assert_eq!(ports(&out), vec![UPLINK]);
}

#[test]
fn unknown_unicast_with_no_uplink_has_no_route() {
    let mut sw = Eswitch::new(EswitchConfig {
        num_vfs: 2,
        num_uplinks: 0,
        ..EswitchConfig::default()
    })
    .unwrap();
    sw.set_vf_mac(0, vf_mac(0)).unwrap();
    let out = sw.process(PortId::Vf(0), frame(REMOTE, vf_mac(0), None));
    assert_eq!(drops(&out), vec![(PortId::Vf(0), DropReason::NoRoute)]);
}

#[test]
fn unicast_to_own_address_is_not_looped_back() {
    let mut sw = switch();
    let out = sw.process(PortId::Vf(0), frame(vf_mac(0), vf_mac(0), None));
    assert!(out.is_empty());
    assert_eq!(drops(&out), vec![(PortId::Vf(0), DropReason::NoRoute)]);
}

#[test]
fn pf_and_vf_reach_each_other() {
    let mut sw = switch();
    let out = sw.process(PortId::Vf(1), frame(PF_MAC, vf_mac(1), None));
    assert_eq!(ports(&out), vec![PortId::Pf]);
    let out = sw.process(PortId::Pf, frame(vf_mac(1), PF_MAC, None));
    assert_eq!(ports(&out), vec![PortId::Vf(1)]);
}

#[test]
fn uplink_unicast_goes_to_owner_and_unknown_to_the_pf_default_pool() {
    let mut sw = switch();
    let out = sw.process(UPLINK, frame(vf_mac(3), REMOTE, None));
    assert_eq!(ports(&out), vec![PortId::Vf(3)]);
    let out = sw.process(UPLINK, frame(STRANGER, REMOTE, None));
    assert_eq!(ports(&out), vec![PortId::Pf]);
    // Unknown unicast in a VLAN the PF has not joined goes nowhere.
    let out = sw.process(UPLINK, frame(STRANGER, REMOTE, Some(VlanTci::new(30, 0))));
    assert_eq!(drops(&out), vec![(UPLINK, DropReason::NoRoute)]);
}

#[test]
fn uplink_to_vst_vf_needs_its_vid_and_is_stripped() {
    let mut sw = switch();
    set_port_vlan(&mut sw, 2, 10, 0);
    let out = sw.process(UPLINK, frame(vf_mac(2), REMOTE, Some(VlanTci::new(10, 6))));
    let d = out.to(PortId::Vf(2)).unwrap();
    assert_eq!(d.stripped_tci, Some(VlanTci::new(10, 6)));
    assert_eq!(d.frame, frame(vf_mac(2), REMOTE, None));
    for tag in [None, Some(VlanTci::new(11, 0)), Some(VlanTci::new(0, 3))] {
        let out = sw.process(UPLINK, frame(vf_mac(2), REMOTE, tag));
        assert!(out.is_empty(), "{tag:?}");
        assert_eq!(drops(&out), vec![(PortId::Vf(2), DropReason::VlanFilter)]);
    }
    assert_eq!(sw.counters(PortId::Vf(2)).unwrap().drops.vlan_filter, 3);
}

#[test]
fn trusted_promiscuous_vf_also_gets_unknown_unicast_untrusted_does_not() {
    let mut sw = switch();
    let mut p = sw.policy(3).unwrap().clone();
    p.promisc = true;
    sw.set_policy(3, p.clone()).unwrap();
    let out = sw.process(UPLINK, frame(STRANGER, REMOTE, None));
    assert_eq!(ports(&out), vec![PortId::Pf]);
    p.trust = true;
    sw.set_policy(3, p).unwrap();
    let out = sw.process(UPLINK, frame(STRANGER, REMOTE, None));
    assert_eq!(ports(&out), vec![PortId::Pf, PortId::Vf(3)]);
    let out = sw.process(PortId::Vf(0), frame(STRANGER, vf_mac(0), None));
    assert_eq!(ports(&out), vec![UPLINK, PortId::Vf(3)]);
}

#[test]
fn promiscuous_pf_gets_unknown_unicast_from_vfs() {
    let mut sw = switch();
    sw.set_pf_policy(PfPolicy {
        macs: vec![PF_MAC],
        promisc: true,
        ..PfPolicy::default()
    })
    .unwrap();
    let out = sw.process(PortId::Vf(0), frame(STRANGER, vf_mac(0), None));
    assert_eq!(ports(&out), vec![UPLINK, PortId::Pf]);
}

#[test]
fn extra_unicast_filter_receives_and_may_be_used_as_source() {
    let mut sw = switch();
    let mut p = sw.policy(1).unwrap().clone();
    p.mac_filters.push(STRANGER);
    sw.set_policy(1, p).unwrap();
    let out = sw.process(UPLINK, frame(STRANGER, REMOTE, None));
    assert_eq!(ports(&out), vec![PortId::Vf(1)]);
    let out = sw.process(PortId::Vf(1), frame(REMOTE, STRANGER, None));
    assert_eq!(ports(&out), vec![UPLINK]);
}

// ---- Multicast -------------------------------------------------------------------------------

#[test]
fn multicast_goes_to_hash_matching_vfs_and_the_uplink() {
    let mut sw = switch();
    let group = MacAddr([0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb]);
    let mut p = sw.policy(2).unwrap().clone();
    p.mc_hashes = vec![mta_hash(group)];
    sw.set_policy(2, p).unwrap();
    let out = sw.process(PortId::Vf(0), frame(group, vf_mac(0), None));
    assert_eq!(ports(&out), vec![UPLINK, PortId::Vf(2)]);
    assert_eq!(sw.counters(PortId::Vf(2)).unwrap().rx_multicast, 1);
    assert_eq!(sw.counters(PortId::Vf(0)).unwrap().tx_multicast, 1);
    // From the uplink: matching pools only.
    let out = sw.process(UPLINK, frame(group, REMOTE, None));
    assert_eq!(ports(&out), vec![PortId::Vf(2)]);
}

#[test]
fn allmulti_as_granted_and_unicast_promisc_only_when_trusted() {
    let mut sw = switch();
    let group = MacAddr([0x33, 0x33, 0, 0, 0, 1]);
    let mut p = sw.policy(1).unwrap().clone();
    p.promisc = true;
    sw.set_policy(1, p.clone()).unwrap();
    let out = sw.process(UPLINK, frame(group, REMOTE, None));
    assert!(out.is_empty(), "untrusted: promisc is not applied");
    p.promisc = false;
    p.allmulti = true;
    sw.set_policy(1, p).unwrap();
    let out = sw.process(UPLINK, frame(group, REMOTE, None));
    assert_eq!(
        ports(&out),
        vec![PortId::Vf(1)],
        "the agent granted allmulti"
    );
}

#[test]
fn pf_multicast_by_hash_or_allmulti() {
    let mut sw = switch();
    let group = MacAddr([0x33, 0x33, 0, 0, 0, 1]);
    let out = sw.process(PortId::Vf(0), frame(group, vf_mac(0), None));
    assert_eq!(ports(&out), vec![UPLINK]);
    sw.set_pf_policy(PfPolicy {
        mc_hashes: vec![mta_hash(group)],
        ..PfPolicy::default()
    })
    .unwrap();
    let out = sw.process(PortId::Vf(0), frame(group, vf_mac(0), None));
    assert_eq!(ports(&out), vec![UPLINK, PortId::Pf]);
}

// ---- Anti-spoof, link state, VGT -----------------------------------------------------------

#[test]
fn spoofed_source_mac_is_dropped_and_counted_unless_spoofchk_off() {
    let mut sw = switch();
    let out = sw.process(PortId::Vf(0), arp_request(vf_mac(1), None));
    assert!(out.is_empty());
    assert_eq!(drops(&out), vec![(PortId::Vf(0), DropReason::SpoofMac)]);
    let c = sw.counters(PortId::Vf(0)).unwrap();
    assert_eq!((c.drops.spoof_mac, c.tx_packets), (1, 0));
    sw.set_vf_spoofchk(0, false).unwrap();
    let out = sw.process(PortId::Vf(0), arp_request(vf_mac(1), None));
    assert_eq!(out.len(), 5);
}

#[test]
fn mac_and_vlan_anti_spoof_each_drop_only_their_own_kind_of_forgery() {
    let mut sw = switch();
    // VF 0 joins VLAN 10 only; VID 20 is a foreign tag, vf_mac(1) a forged source.
    let mut p = sw.policy(0).unwrap().clone();
    p.vlan_filters = vec![10];
    let forged_mac = || arp_request(vf_mac(1), Some(VlanTci::new(10, 0)));
    let foreign_vlan = || arp_request(vf_mac(0), Some(VlanTci::new(20, 0)));
    for (mac, vlan) in [(true, false), (false, true), (false, false)] {
        p.spoofchk = mac;
        p.vlan_spoofchk = vlan;
        sw.set_policy(0, p.clone()).unwrap();
        let out = sw.process(PortId::Vf(0), forged_mac());
        assert_eq!(out.dropped(DropReason::SpoofMac), mac, "MAC check {mac}");
        assert_eq!(out.is_empty(), mac);
        let out = sw.process(PortId::Vf(0), foreign_vlan());
        assert_eq!(
            out.dropped(DropReason::SpoofVlan),
            vlan,
            "VLAN check {vlan}"
        );
        assert_eq!(out.is_empty(), vlan);
    }
    // `ip link ... spoofchk on` sets both again.
    sw.set_vf_spoofchk(0, true).unwrap();
    let p = sw.policy(0).unwrap();
    assert!(p.spoofchk && p.vlan_spoofchk);
    assert!(sw
        .process(PortId::Vf(0), foreign_vlan())
        .dropped(DropReason::SpoofVlan));
}

#[test]
fn vf_without_a_mac_cannot_send_with_spoofchk_on() {
    let mut sw = switch();
    sw.set_vf_mac(0, MacAddr::ZERO).unwrap();
    assert_eq!(sw.policy(0).unwrap().mac, None);
    let out = sw.process(PortId::Vf(0), arp_request(vf_mac(0), None));
    assert!(out.dropped(DropReason::SpoofMac));
}

#[test]
fn pf_and_uplink_are_exempt_from_anti_spoof() {
    let mut sw = switch();
    let out = sw.process(PortId::Pf, arp_request(STRANGER, None));
    assert_eq!(out.len(), 5);
    let out = sw.process(UPLINK, arp_request(vf_mac(0), None));
    assert_eq!(out.len(), 5);
}

#[test]
fn vst_vf_may_not_send_tagged_frames() {
    let mut sw = switch();
    set_port_vlan(&mut sw, 0, 10, 0);
    for vid in [10, 20, 0] {
        let out = sw.process(
            PortId::Vf(0),
            arp_request(vf_mac(0), Some(VlanTci::new(vid, 0))),
        );
        assert!(out.is_empty());
        assert_eq!(drops(&out), vec![(PortId::Vf(0), DropReason::SpoofVlan)]);
    }
    assert_eq!(sw.counters(PortId::Vf(0)).unwrap().drops.spoof_vlan, 3);
}

#[test]
fn vst_vf_with_spoofchk_off_gets_its_tag_pushed_outside_and_stays_in_its_vlan() {
    let mut sw = switch();
    set_port_vlan(&mut sw, 0, 10, 0);
    sw.set_vf_spoofchk(0, false).unwrap();
    let out = sw.process(
        PortId::Vf(0),
        arp_request(vf_mac(0), Some(VlanTci::new(20, 0))),
    );
    assert_eq!(ports(&out), vec![UPLINK]);
    let hdr = header(&out.to(UPLINK).unwrap().frame);
    let vids: Vec<u16> = hdr.tags.as_slice().iter().map(|t| t.tci.vid()).collect();
    assert_eq!(
        vids,
        vec![10, 20],
        "the port VLAN outside, the VF's tag inside"
    );
    assert_eq!(hdr.ethertype, EtherTypes::Arp);
}

#[test]
fn vgt_vf_sends_and_receives_only_vlans_it_joined() {
    let mut sw = switch();
    let mut p = sw.policy(0).unwrap().clone();
    p.vlan_filters = vec![100];
    sw.set_policy(0, p).unwrap();
    let out = sw.process(
        PortId::Vf(0),
        arp_request(vf_mac(0), Some(VlanTci::new(200, 0))),
    );
    assert_eq!(drops(&out), vec![(PortId::Vf(0), DropReason::SpoofVlan)]);
    let out = sw.process(
        PortId::Vf(0),
        arp_request(vf_mac(0), Some(VlanTci::new(100, 1))),
    );
    // Only the uplink is in VLAN 100 besides VF0.
    assert_eq!(ports(&out), vec![UPLINK]);
    // Receive: VLAN 100 stripped (VMOLR.STRVLAN), VLAN 200 filtered, untagged still accepted.
    let out = sw.process(UPLINK, frame(vf_mac(0), REMOTE, Some(VlanTci::new(100, 4))));
    let d = out.to(PortId::Vf(0)).unwrap();
    assert_eq!(d.stripped_tci, Some(VlanTci::new(100, 4)));
    assert_eq!(d.frame, frame(vf_mac(0), REMOTE, None));
    let out = sw.process(UPLINK, frame(vf_mac(0), REMOTE, Some(VlanTci::new(200, 0))));
    assert!(out.dropped(DropReason::VlanFilter));
    let out = sw.process(UPLINK, frame(vf_mac(0), REMOTE, None));
    assert_eq!(ports(&out), vec![PortId::Vf(0)]);
    // With stripping off the tag stays in the frame.
    sw.set_rx_vlan_strip(PortId::Vf(0), false).unwrap();
    let tagged = frame(vf_mac(0), REMOTE, Some(VlanTci::new(100, 4)));
    let out = sw.process(UPLINK, tagged.clone());
    assert_eq!(out.to(PortId::Vf(0)).unwrap().frame, tagged);
}

#[test]
fn link_state_disable_drops_everything_the_vf_sends_and_delivers_nothing_to_it() {
    let mut sw = switch();
    sw.set_vf_link_state(1, LinkState::Disable).unwrap();
    let out = sw.process(PortId::Vf(1), arp_request(vf_mac(1), None));
    assert_eq!(drops(&out), vec![(PortId::Vf(1), DropReason::LinkDown)]);
    let out = sw.process(PortId::Vf(0), arp_request(vf_mac(0), None));
    assert!(out.to(PortId::Vf(1)).is_none());
    assert!(out.drops.contains(&DropRecord {
        port: PortId::Vf(1),
        reason: DropReason::LinkDown
    }));
    assert_eq!(sw.counters(PortId::Vf(1)).unwrap().drops.link_down, 2);
}

#[test]
fn a_vf_with_receive_disabled_gets_nothing_but_still_sends() {
    let mut sw = switch();
    let mut p = sw.policy(1).unwrap().clone();
    p.rx_enabled = false;
    sw.set_policy(1, p).unwrap();
    let out = sw.process(PortId::Vf(0), frame(vf_mac(1), vf_mac(0), None));
    assert!(out.to(PortId::Vf(1)).is_none());
    assert_eq!(drops(&out), vec![(PortId::Vf(1), DropReason::RxDisabled)]);
    // A broadcast reaches everyone else.
    let out = sw.process(PortId::Vf(0), arp_request(vf_mac(0), None));
    assert!(out.to(PortId::Vf(1)).is_none());
    assert!(out.to(PortId::Vf(2)).is_some());
    // Its own transmit is not gated by VFRE.
    let out = sw.process(PortId::Vf(1), frame(vf_mac(0), vf_mac(1), None));
    assert_eq!(ports(&out), vec![PortId::Vf(0)]);
    assert_eq!(sw.counters(PortId::Vf(1)).unwrap().drops.rx_disabled, 2);
}

fn edit_policy(sw: &mut Eswitch, vf: u16, f: impl FnOnce(&mut VfPolicy)) {
    let mut p = sw.policy(vf).unwrap().clone();
    f(&mut p);
    sw.set_policy(vf, p).unwrap();
}

#[test]
fn a_vf_with_transmit_disabled_sends_nothing_and_still_receives() {
    let mut sw = switch();
    edit_policy(&mut sw, 1, |p| p.tx_enabled = false);
    let out = sw.process(PortId::Vf(1), frame(vf_mac(0), vf_mac(1), None));
    assert_eq!(drops(&out), vec![(PortId::Vf(1), DropReason::TxDisabled)]);
    assert!(out.is_empty());
    let out = sw.process(PortId::Vf(0), frame(vf_mac(1), vf_mac(0), None));
    assert_eq!(ports(&out), vec![PortId::Vf(1)]);
    assert_eq!(sw.counters(PortId::Vf(1)).unwrap().drops.tx_disabled, 1);
}

#[test]
fn bam_off_keeps_broadcasts_from_a_vf_and_aupe_off_untagged_frames() {
    let mut sw = switch();
    edit_policy(&mut sw, 1, |p| p.accept_broadcast = false);
    let out = sw.process(PortId::Vf(0), arp_request(vf_mac(0), None));
    assert!(out.to(PortId::Vf(1)).is_none());
    assert!(out.to(PortId::Vf(2)).is_some());
    // Unicast still arrives.
    let out = sw.process(PortId::Vf(0), frame(vf_mac(1), vf_mac(0), None));
    assert_eq!(ports(&out), vec![PortId::Vf(1)]);
    // AUPE off: an untagged frame for VF 2 is outside its VLANs; a VLAN it joined still works.
    edit_policy(&mut sw, 2, |p| {
        p.accept_untagged = false;
        p.vlan_filters = vec![20];
    });
    let out = sw.process(PortId::Vf(0), frame(vf_mac(2), vf_mac(0), None));
    assert_eq!(drops(&out), vec![(PortId::Vf(2), DropReason::VlanFilter)]);
    edit_policy(&mut sw, 0, |p| p.vlan_filters = vec![20]);
    let tagged = frame(vf_mac(2), vf_mac(0), Some(VlanTci::new(20, 0)));
    let out = sw.process(PortId::Vf(0), tagged);
    assert_eq!(ports(&out), vec![PortId::Vf(2)]);
}

#[test]
fn suspended_anti_spoof_lets_any_source_through_until_spoofchk_is_set_again() {
    let mut sw = switch();
    let forged = MacAddr([2, 9, 9, 9, 9, 9]);
    edit_policy(&mut sw, 0, |p| p.spoofchk_suspended = true);
    assert!(sw.policy(0).unwrap().spoofchk, "still reads on");
    let out = sw.process(PortId::Vf(0), frame(vf_mac(1), forged, None));
    assert_eq!(ports(&out), vec![PortId::Vf(1)]);
    sw.configure_vf(0, &[crate::VfSetting::SpoofChk(true)])
        .unwrap();
    assert!(!sw.policy(0).unwrap().spoofchk_suspended);
    let out = sw.process(PortId::Vf(0), frame(vf_mac(1), forged, None));
    assert_eq!(drops(&out), vec![(PortId::Vf(0), DropReason::SpoofMac)]);
}

#[test]
fn without_loopback_everything_from_inside_goes_to_the_wire_only() {
    let mut sw = switch();
    assert!(sw.loopback());
    sw.set_loopback(false);
    // VF to VF unicast leaves on the wire, broadcast too; nothing internal gets a copy.
    let out = sw.process(PortId::Vf(0), frame(vf_mac(1), vf_mac(0), None));
    assert_eq!(ports(&out), vec![UPLINK]);
    let out = sw.process(PortId::Vf(0), arp_request(vf_mac(0), None));
    assert_eq!(ports(&out), vec![UPLINK]);
    let out = sw.process(PortId::Pf, arp_request(MacAddr([2, 0, 0, 0, 0, 1]), None));
    assert_eq!(ports(&out), vec![UPLINK]);
    // From the wire nothing changes.
    let out = sw.process(UPLINK, frame(vf_mac(1), MacAddr([2, 9, 9, 9, 9, 9]), None));
    assert_eq!(ports(&out), vec![PortId::Vf(1)]);
    sw.set_loopback(true);
    let out = sw.process(PortId::Vf(0), frame(vf_mac(1), vf_mac(0), None));
    assert_eq!(ports(&out), vec![PortId::Vf(1)]);
}

#[test]
fn with_the_link_down_auto_vfs_are_down_and_enabled_vfs_still_switch_locally() {
    let mut sw = switch();
    sw.set_link(false);
    sw.set_vf_link_state(0, LinkState::Enable).unwrap();
    sw.set_vf_link_state(1, LinkState::Enable).unwrap();
    assert_eq!(sw.port_up(PortId::Vf(0)), Ok(true));
    assert_eq!(sw.port_up(PortId::Vf(2)), Ok(false));
    assert_eq!(sw.port_up(UPLINK), Ok(false));
    assert_eq!(sw.port_up(PortId::Pf), Ok(true));
    let out = sw.process(PortId::Vf(2), frame(vf_mac(0), vf_mac(2), None));
    assert!(out.dropped(DropReason::LinkDown));
    let out = sw.process(PortId::Vf(0), frame(vf_mac(1), vf_mac(0), None));
    assert_eq!(ports(&out), vec![PortId::Vf(1)]);
    let out = sw.process(PortId::Vf(0), arp_request(vf_mac(0), None));
    assert_eq!(ports(&out), vec![PortId::Pf, PortId::Vf(1)]);
    assert!(out.drops.contains(&DropRecord {
        port: UPLINK,
        reason: DropReason::LinkDown
    }));
    let out = sw.process(UPLINK, arp_request(REMOTE, None));
    assert_eq!(drops(&out), vec![(UPLINK, DropReason::LinkDown)]);
}

// ---- Size and malformed frames ---------------------------------------------------------------

#[test]
fn oversize_frames_are_dropped_per_max_frame() {
    let mut sw = switch();
    let big = build_frame(REMOTE, vf_mac(0), None, EtherTypes::Ipv4, &[0; 1500]);
    assert_eq!(sw.process(PortId::Vf(0), big.clone()).len(), 1);
    let too_big = build_frame(REMOTE, vf_mac(0), None, EtherTypes::Ipv4, &[0; 1501]);
    let out = sw.process(PortId::Vf(0), too_big.clone());
    assert_eq!(drops(&out), vec![(PortId::Vf(0), DropReason::Oversize)]);
    // Receive side: VF1 takes 1518-byte frames, VF2 raised its limit (SET_LPE).
    let mut p = sw.policy(2).unwrap().clone();
    p.max_frame = 9018;
    sw.set_policy(2, p).unwrap();
    let out = sw.process(
        UPLINK,
        build_frame(
            MacAddr::BROADCAST,
            REMOTE,
            None,
            EtherTypes::Ipv4,
            &[0; 4000],
        ),
    );
    assert!(out.to(PortId::Vf(2)).is_some());
    assert!(out.to(PortId::Vf(1)).is_none());
    assert!(out.drops.contains(&DropRecord {
        port: PortId::Vf(1),
        reason: DropReason::Oversize
    }));
    // A tag does not count against the limit.
    let tagged = build_frame(
        vf_mac(1),
        REMOTE,
        Some(VlanTci::new(0, 1)),
        EtherTypes::Ipv4,
        &[0; 1500],
    );
    assert_eq!(sw.process(UPLINK, tagged).len(), 1);
}

#[test]
fn malformed_frames_are_dropped_with_a_reason_not_a_panic() {
    let mut sw = switch();
    let full = frame(REMOTE, vf_mac(0), Some(VlanTci::new(5, 0)));
    for n in [0, 1, 13, 14, 17] {
        let out = sw.process(PortId::Vf(0), full.slice(..n));
        assert_eq!(
            drops(&out),
            vec![(PortId::Vf(0), DropReason::Malformed)],
            "len {n}"
        );
    }
    assert_eq!(sw.counters(PortId::Vf(0)).unwrap().drops.malformed, 5);
}

#[test]
fn unknown_ingress_port_is_reported_and_nothing_is_counted() {
    let mut sw = switch();
    let out = sw.process(PortId::Vf(99), arp_request(vf_mac(0), None));
    assert!(out.is_empty());
    assert_eq!(drops(&out), vec![(PortId::Vf(99), DropReason::UnknownPort)]);
    let out = sw.process(PortId::Uplink(3), arp_request(REMOTE, None));
    assert!(out.dropped(DropReason::UnknownPort));
}

// ---- Policy API --------------------------------------------------------------------------------

#[test]
fn dot1ad_port_vlan_is_refused_with_eprotonosupport() {
    let mut sw = switch();
    let err = sw.set_vf_vlan(0, 10, 0, VlanProto::Dot1Ad).unwrap_err();
    assert_eq!(err.errno(), crate::policy::errno::EPROTONOSUPPORT);
    assert_eq!(sw.policy(0).unwrap().port_vlan, None);
    assert!(sw.set_vf_vlan(0, 4096, 0, VlanProto::Dot1Q).is_err());
    assert!(sw.set_vf_vlan(0, 10, 8, VlanProto::Dot1Q).is_err());
    sw.set_vf_vlan(0, 10, 7, VlanProto::Dot1Q).unwrap();
    sw.set_vf_vlan(0, 0, 0, VlanProto::Dot1Q).unwrap();
    assert_eq!(sw.policy(0).unwrap().port_vlan, None);
}

#[test]
fn policy_errors_leave_the_policy_unchanged() {
    let mut sw = switch();
    let before = sw.policy(0).unwrap().clone();
    assert!(matches!(
        sw.set_vf_rate(0, 10, 100),
        Err(PolicyError::MinRateNotSupported { .. })
    ));
    assert!(matches!(
        sw.set_vf_rate(0, 0, 1001),
        Err(PolicyError::RateAboveLink { .. })
    ));
    assert!(matches!(
        sw.set_vf_mac(0, MacAddr([1, 0, 0, 0, 0, 1])),
        Err(PolicyError::InvalidMac { .. })
    ));
    assert!(matches!(
        sw.set_vf_trust(9, true),
        Err(PolicyError::NoSuchVf { vf: 9, .. })
    ));
    assert_eq!(sw.policy(0).unwrap(), &before);
    assert!(sw.shaper(0).is_none());
}

#[test]
fn priority_only_port_vlan_tags_vid_0_and_stays_untagged_member() {
    let mut sw = switch();
    set_port_vlan(&mut sw, 0, 0, 5);
    let out = sw.process(PortId::Vf(0), arp_request(vf_mac(0), None));
    assert_eq!(out.len(), 5);
    let up = header(&out.to(UPLINK).unwrap().frame);
    assert_eq!(up.dot1q_tci(), Some(VlanTci::new(0, 5)));
    // The PF does not strip: it sees the priority tag.
    assert!(header(&out.to(PortId::Pf).unwrap().frame)
        .dot1q_tci()
        .is_some());
    // Untagged frames still reach the VF.
    let out = sw.process(UPLINK, frame(vf_mac(0), REMOTE, None));
    assert_eq!(ports(&out), vec![PortId::Vf(0)]);
}

// ---- Shaper ----------------------------------------------------------------------------------

#[test]
fn rate_limited_vf_is_told_when_to_send_next_and_never_dropped() {
    let mut sw = switch();
    sw.set_vf_rate(0, 0, 4).unwrap();
    assert_eq!(sw.shaper(0).unwrap().rate_bps(), 4_000_000);
    assert_eq!(sw.shaper(0).unwrap().burst_bits(), 24_288);
    // 1514-byte frames: 1518 × 8 bits each; the burst holds two.
    assert_eq!(sw.tx_admit(0, 0, 1514), Ok(()));
    assert_eq!(sw.tx_admit(0, 0, 1514), Ok(()));
    assert_eq!(sw.tx_admit(0, 0, 1514), Err(NextSendAt(3_036_000)));
    assert_eq!(sw.counters(PortId::Vf(0)).unwrap().tx_deferred, 1);
    assert_eq!(sw.tx_admit(0, 3_036_000, 1514), Ok(()));
    // Other VFs are not limited by VF0's bucket.
    for _ in 0..100 {
        assert_eq!(sw.tx_admit(1, 0, 1514), Ok(()));
    }
    // Removing the limit removes the shaper.
    sw.set_vf_rate(0, 0, 0).unwrap();
    assert!(sw.shaper(0).is_none());
    assert_eq!(sw.tx_admit(0, 0, 1514), Ok(()));
}

// ---- What process hands back, and external drops ----------------------------------------------

#[test]
fn process_hands_back_each_copy_as_its_port_receives_it() {
    let mut sw = switch();
    set_port_vlan(&mut sw, 0, 10, 3);
    set_port_vlan(&mut sw, 1, 10, 0);
    let sent = arp_request(vf_mac(0), None);
    let out = sw.process(PortId::Vf(0), sent.clone());
    assert!(out.drops.is_empty());
    let to: Vec<PortId> = out.deliveries.iter().map(|d| d.port).collect();
    assert_eq!(to, vec![UPLINK, PortId::Vf(1)]);
    // Towards the uplink the port VLAN's tag is in the frame.
    let up = out.to(UPLINK).unwrap();
    assert_eq!(up.stripped_tci, None);
    let tag = header(&up.frame).dot1q_tci().unwrap();
    assert_eq!((tag.vid(), tag.pcp()), (10, 3));
    // A port-VLAN VF gets the frame as sent, the tag reported for its RX descriptor.
    let vf1 = out.to(PortId::Vf(1)).unwrap();
    assert_eq!(vf1.frame, sent);
    assert_eq!(vf1.stripped_tci, Some(VlanTci::new(10, 3)));
}

#[test]
fn a_spoofed_frame_comes_back_as_a_drop_record_and_nothing_else() {
    let mut sw = switch();
    let out = sw.process(PortId::Vf(0), arp_request(STRANGER, None));
    assert!(out.deliveries.is_empty());
    assert_eq!(
        out.drops.to_vec(),
        vec![DropRecord {
            port: PortId::Vf(0),
            reason: DropReason::SpoofMac
        }]
    );
}

#[test]
fn device_model_drops_are_counted_on_the_port() {
    let mut sw = switch();
    sw.count_drop(PortId::Vf(2), DropReason::RxFull).unwrap();
    assert_eq!(sw.counters(PortId::Vf(2)).unwrap().drops.rx_full, 1);
    sw.reset_counters(PortId::Vf(2)).unwrap();
    assert_eq!(
        sw.counters(PortId::Vf(2)).unwrap(),
        &PortCounters::default()
    );
}

#[test]
fn process_moves_a_single_copy_without_cloning() {
    let mut sw = switch();
    let sent = frame(vf_mac(1), vf_mac(0), None);
    let ptr = sent.as_ptr();
    let out = sw.process(PortId::Vf(0), sent);
    assert_eq!(out.to(PortId::Vf(1)).unwrap().frame.as_ptr(), ptr);
}

#[test]
fn config_limits() {
    assert!(matches!(
        Eswitch::new(EswitchConfig {
            num_vfs: MAX_VFS + 1,
            ..EswitchConfig::default()
        }),
        Err(ConfigError::TooManyVfs(_))
    ));
    let sw = Eswitch::new(EswitchConfig::default()).unwrap();
    assert_eq!(sw.ports().count(), 1 + 1 + 7);
}

#[test]
fn mac_table_finds_every_key_and_nothing_else() {
    let entries: Vec<(u64, u32, u32)> = (0..1000u64)
        .map(|k| (k * 0x1_0000_0001, k as u32, k as u32 + 1))
        .collect();
    let table = MacTable::build(&entries);
    for &(key, start, end) in &entries {
        assert_eq!(table.get(key), (start, end));
    }
    assert_eq!(table.get(0xffff_ffff_fffe), (0, 0));
    assert_eq!(MacTable::default().get(5), (0, 0));
}

#[test]
fn many_vfs_with_filters_and_a_shared_mac_all_switch_correctly() {
    let mut sw = switch_with(64);
    for n in 0..64u16 {
        let mut p = sw.policy(n).unwrap().clone();
        p.mac_filters = vec![MacAddr([0x06, 0, 0, 0, n as u8, 1]), STRANGER];
        sw.set_policy(n, p).unwrap();
    }
    for n in 0..64u16 {
        let out = sw.process(
            UPLINK,
            frame(MacAddr([0x06, 0, 0, 0, n as u8, 1]), REMOTE, None),
        );
        assert_eq!(ports(&out), vec![PortId::Vf(n)]);
    }
    // Every VF owns STRANGER: each gets a copy, as each RAR entry's pool would.
    let out = sw.process(UPLINK, frame(STRANGER, REMOTE, None));
    assert_eq!(out.len(), 64);
}

#[test]
fn the_switch_can_move_to_another_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<Eswitch>();
    assert_send::<Deliveries>();
}

#[test]
fn a_port_without_carrier_is_down_alone_even_with_link_state_enable_and_comes_back() {
    let mut sw = switch();
    sw.set_vf_link_state(1, LinkState::Enable).unwrap();
    sw.set_port_carrier(PortId::Vf(1), false).unwrap();
    assert_eq!(sw.port_up(PortId::Vf(1)), Ok(false));
    assert_eq!(
        sw.port_up(PortId::Vf(0)),
        Ok(true),
        "the others keep theirs"
    );
    let out = sw.process(PortId::Vf(1), arp_request(vf_mac(1), None));
    assert_eq!(drops(&out), vec![(PortId::Vf(1), DropReason::LinkDown)]);
    let out = sw.process(PortId::Vf(0), arp_request(vf_mac(0), None));
    assert!(out.to(PortId::Vf(1)).is_none());
    assert!(out.to(PortId::Vf(2)).is_some());
    // The PF port too (its link is otherwise always up).
    sw.set_port_carrier(PortId::Pf, false).unwrap();
    assert_eq!(sw.port_up(PortId::Pf), Ok(false));
    sw.set_port_carrier(PortId::Pf, true).unwrap();
    sw.set_port_carrier(PortId::Vf(1), true).unwrap();
    assert_eq!(sw.port_carrier(PortId::Vf(1)), Ok(true));
    assert_eq!(sw.port_up(PortId::Vf(1)), Ok(true));
    let out = sw.process(PortId::Vf(0), arp_request(vf_mac(0), None));
    assert!(out.to(PortId::Vf(1)).is_some());
    assert!(sw.set_port_carrier(PortId::Vf(99), false).is_err());
}
