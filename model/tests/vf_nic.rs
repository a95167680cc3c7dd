//! VFs of one `Nic` talking through its datapath (TX ring → shaper → switch → RX rings), with
//! a software igbvf on every VF: the agent's MAC assignment, switching, port VLANs and rate
//! limits as the guests see them.

mod support;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use eswitch::{Delivery, PortId, VfSetting, VlanProto};
use model::testing::{DriverConfig, SoftGuest};
use support::{frame, generated_mac, rig, Rig, T0};

/// A rig whose VFs are all up and see their link up, with a sink on uplink 0.
fn up_all(n: u16) -> (Rig, Vec<SoftGuest>, Arc<Mutex<Vec<Bytes>>>) {
    let r = rig(n);
    let uplink: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let u = uplink.clone();
    r.nic.set_port_sink(
        PortId::Uplink(0),
        Some(Arc::new(move |d: &Delivery| {
            u.lock().unwrap().push(d.frame.clone())
        })),
    );
    let guests = (0..n)
        .map(|i| {
            let mut g = r.up(i, DriverConfig::default());
            assert!(g.drv.check_link(&g.vf), "VF {i}: link up and CTS");
            g
        })
        .collect();
    (r, guests, uplink)
}

fn poll(guests: &mut [SoftGuest]) {
    for g in guests {
        g.poll();
    }
}

fn received(g: &SoftGuest) -> Vec<Vec<u8>> {
    g.drv.received.iter().map(|r| r.data.clone()).collect()
}

#[test]
fn igbvf_pair_gets_agent_macs_and_talks_through_the_switch() {
    let (r, mut gs, uplink) = up_all(3);
    let macs: Vec<[u8; 6]> = gs.iter().map(|g| g.drv.mac).collect();
    for (i, mac) in macs.iter().enumerate() {
        assert_eq!(*mac, generated_mac(i as u8));
        assert_eq!(r.policy(i as u16).mac.map(|m| m.0), Some(*mac));
    }
    // Unicast A → B only.
    let f = frame(macs[1], macs[0], 98, 1);
    gs[0].send(&f).unwrap();
    poll(&mut gs);
    assert_eq!(received(&gs[1]), vec![f.clone()]);
    assert!(gs[2].drv.received.is_empty());
    // Broadcast reaches every other VF and the uplink, not the sender.
    let b = frame([0xFF; 6], macs[0], 60, 2);
    gs[0].send(&b).unwrap();
    poll(&mut gs);
    assert_eq!(received(&gs[1]), vec![f, b.clone()]);
    assert_eq!(received(&gs[2]), vec![b.clone()]);
    assert!(gs[0].drv.received.is_empty());
    assert_eq!(uplink.lock().unwrap().as_slice(), &[Bytes::from(b)]);
    let seen = r.seen.all();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].to, [PortId::Vf(1)]);
    assert!(seen[1].to.contains(&PortId::Uplink(0)) && !seen[1].to.contains(&PortId::Vf(0)));
}

#[test]
fn port_vlan_strips_into_the_write_back_and_isolates() {
    let (r, mut gs, uplink) = up_all(3);
    for vf in [0, 1] {
        r.nic
            .configure_vf(
                vf,
                &[VfSetting::Vlan {
                    vid: 10,
                    qos: 0,
                    proto: VlanProto::Dot1Q,
                }],
            )
            .unwrap();
    }
    // igb pings a VF whose port VLAN changed (PF_CONTROL_MSG): its mailbox vector, and
    // igbvf_msix_other runs.
    let before: Vec<u32> = gs.iter().map(|g| g.drv.other_irqs).collect();
    poll(&mut gs);
    let pinged: Vec<u32> = gs
        .iter()
        .zip(before)
        .map(|(g, b)| g.drv.other_irqs - b)
        .collect();
    assert_eq!(pinged, [1, 1, 0], "VFs 0 and 1 pinged, VF 2 not");
    let g = &mut gs[0];
    assert!(g.drv.check_link(&g.vf), "CTS kept: link stays up");
    let mac0 = gs[0].drv.mac;
    let b = frame([0xFF; 6], mac0, 60, 3);
    gs[0].send(&b).unwrap();
    poll(&mut gs);
    let got = &gs[1].drv.received;
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].vlan,
        Some(10),
        "tag stripped into the descriptor (VP)"
    );
    assert_eq!(got[0].data, b);
    assert!(gs[2].drv.received.is_empty(), "VF 2 is outside VLAN 10");
    let up = uplink.lock().unwrap();
    assert_eq!(up.len(), 1);
    assert_eq!(
        &up[0][12..16],
        &[0x81, 0x00, 0x00, 0x0A],
        "tagged on the wire"
    );
    assert_eq!(&up[0][16..], &b[12..]);
}

#[test]
fn rate_limit_pauses_the_queue_and_poll_resumes_it_without_loss() {
    let (r, mut gs, _uplink) = up_all(2);
    r.nic
        .configure_vf(0, &VfSetting::parse_words(&["rate", "10"]).unwrap())
        .unwrap();
    let (a, b) = (gs[0].drv.mac, gs[1].drv.mac);
    let frames: Vec<Vec<u8>> = (0..40).map(|i| frame(b, a, 1514, i)).collect();
    for f in &frames[..30] {
        gs[0].send(f).unwrap();
    }
    let until = gs[0].vf.tx_paused_until().expect("the shaper deferred");
    assert_eq!(r.nic.next_wakeup(), Some(until));
    poll(&mut gs);
    let delivered = gs[1].vf.stats().rx_packets;
    assert!(delivered < 30);
    assert_eq!(received(&gs[1]), frames[..delivered as usize]);
    // Not due yet: nothing moves.
    assert_eq!(r.advance_to(until - 1), Some(until));
    assert_eq!(gs[1].vf.stats().rx_packets, delivered);
    // The owner's timer: advance the clock to each deadline until the queue drains.
    let mut next = Some(until);
    while let Some(t) = next {
        next = r.advance_to(t);
        poll(&mut gs);
    }
    assert_eq!(gs[1].vf.stats().rx_packets, 30);
    // The rest one at a time, each waiting for its deadline.
    for f in &frames[30..] {
        gs[0].send(f).unwrap();
        while let Some(t) = r.nic.next_wakeup() {
            r.advance_to(t);
            poll(&mut gs);
        }
    }
    poll(&mut gs);
    assert_eq!(received(&gs[1]), frames, "in order, none lost, none twice");
    assert_eq!(gs[0].vf.stats().tx_packets, 40);
    assert!(gs[0].vf.stats().tx_deferred >= 1);
    assert!(gs[0].vf.tx_paused_until().is_none());
    // 40 × 1518 bytes at 10 Mbit/s take at least (40 × 1518 × 8 − burst) / 10e6 s.
    let elapsed = r.nic.now() - T0;
    assert!(elapsed > 30_000_000, "shaped: {elapsed} ns");
}
