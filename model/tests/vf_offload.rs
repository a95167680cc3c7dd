//! TX offloads as igbvf requests them (igbvf_tso, igbvf_tx_csum), through a VF of a `Nic` and
//! the 82576 offload engine, checked with pnet; the RX checksum status igbvf_rx_checksum_adv
//! reads.

mod support;

use std::net::Ipv4Addr;

use bytes::Bytes;
use eswitch::{PortId, VfSetting};
use model::function::desc::rx_status;
use model::function::offload::{self, L3Type, L4Type, TxContext, TxOffloads};
use model::nic::faults::Fault;
use model::testing::{DriverConfig, XmitOpts};
use model::TxError;
use pnet_packet::ipv4::{self, Ipv4Packet};
use pnet_packet::tcp::{self, TcpPacket};
use support::*;

/// A unicast destination no VF owns (it goes to the uplink).
const DST: [u8; 6] = [0x02, 0, 0, 0, 0, 0x22];

fn fold(mut s: u32) -> u16 {
    while s > 0xFFFF {
        s = (s & 0xFFFF) + (s >> 16);
    }
    s as u16
}

/// The IPv4 pseudo-header sum (not complemented), with `len` as the L4 length.
fn pseudo(f: &[u8], len: u16) -> u16 {
    let w = |o: usize| u32::from(u16::from_be_bytes([f[o], f[o + 1]]));
    fold(w(26) + w(28) + w(30) + w(32) + 6 + u32::from(len))
}

/// What igbvf_tso leaves in the frame: IP total length and checksum 0, TCP checksum = the
/// pseudo-header sum without the length. From VF 0's generated MAC.
fn tso_prepared(dst: [u8; 6], payload: usize) -> Vec<u8> {
    let mut f = tcp4(dst, generated_mac(0), payload);
    f[16..18].copy_from_slice(&[0, 0]);
    f[24..26].copy_from_slice(&[0, 0]);
    let seed = pseudo(&f, 0);
    f[50..52].copy_from_slice(&seed.to_be_bytes());
    f
}

fn assert_valid_tcp4(f: &[u8]) {
    let ip = Ipv4Packet::new(&f[14..]).unwrap();
    assert_eq!(
        ip.get_checksum(),
        ipv4::checksum(&ip),
        "IPv4 header checksum"
    );
    assert_eq!(usize::from(ip.get_total_length()), f.len() - 14);
    let t = TcpPacket::new(&f[34..]).unwrap();
    let (s, d) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
    assert_eq!(
        t.get_checksum(),
        tcp::ipv4_checksum(&t, &s, &d),
        "TCP checksum"
    );
}

fn seqs(frames: &[Bytes]) -> Vec<u32> {
    frames
        .iter()
        .map(|s| TcpPacket::new(&s[34..]).unwrap().get_sequence())
        .collect()
}

const TSO_1000: XmitOpts = XmitOpts {
    vlan: None,
    frag: 2048,
    rs: true,
    csum: None,
    tso: Some((14, 20, 20, 1000, true)),
};

#[test]
fn tso_segments_come_out_with_valid_headers_and_the_whole_payload() {
    let r = rig(1);
    let mut g = r.up(0, DriverConfig::default());
    let f = tso_prepared(DST, 4000);
    g.drv.xmit(&g.vf, &f, &TSO_1000).unwrap();
    let sent = r.sent_by(0);
    assert_eq!(sent.len(), 4);
    let mut payload = Vec::new();
    for (i, s) in sent.iter().enumerate() {
        assert_eq!(s.len(), 54 + 1000);
        assert_valid_tcp4(s);
        let t = TcpPacket::new(&s[34..]).unwrap();
        assert_eq!(t.get_sequence(), 1000 * i as u32);
        payload.extend_from_slice(&s[54..]);
    }
    assert_eq!(payload, f[54..]);
    assert_eq!(g.vf.stats().tx_packets, 4);
    assert_eq!(g.drv.clean_tx(), 1);
}

/// The ring gathers a TSO packet's first bytes and reads the rest of its payload from its
/// buffers as the segments are cut: with 100-byte buffers the headers span two descriptors,
/// and every segment's payload several.
#[test]
fn tso_from_many_small_buffers_cuts_the_same_segments() {
    let r = rig(1);
    let mut g = r.up(0, DriverConfig::default());
    let f = tso_prepared(DST, 4000);
    let opts = XmitOpts {
        frag: 100,
        ..TSO_1000
    };
    g.drv.xmit(&g.vf, &f, &opts).unwrap();
    let sent = r.sent_by(0);
    assert_eq!(sent.len(), 4);
    let mut payload = Vec::new();
    for s in &sent {
        assert_valid_tcp4(s);
        assert_eq!(&s[..14], &f[..14]);
        payload.extend_from_slice(&s[54..]);
    }
    assert_eq!(payload, f[54..]);
    assert_eq!(seqs(&sent), [0, 1000, 2000, 3000]);
    assert_eq!(g.vf.stats().tx_packets, 4);

    // A context announcing headers longer than the first bytes gathered (IPLEN 320: an IPv4
    // header continued by what follows it, as for a tunnel): the head grows to hold them, and
    // the packet is cut as the whole of it would be.
    let long = XmitOpts {
        tso: Some((14, 320, 20, 1000, true)),
        ..opts
    };
    let ctx = TxContext {
        mac_len: 14,
        ip_len: 320,
        l4_len: 20,
        mss: 1000,
        l3: L3Type::Ipv4,
        l4: L4Type::Tcp,
        vlan: 0,
        idx: 0,
    };
    let off = TxOffloads {
        tse: true,
        ixsm: true,
        txsm: true,
        vle: false,
        paylen: (f.len() - 354) as u32,
    };
    let whole = offload::apply(&f, &ctx, &off, &mut |_| {});
    g.drv.clean_tx();
    g.drv.xmit(&g.vf, &f, &long).unwrap();
    let sent = r.sent_by(0).len() - 4;
    match whole {
        Ok(stats) => assert_eq!(sent, stats.frames as usize),
        Err(e) => {
            assert_eq!(sent, 0, "{e}");
            assert_eq!(g.vf.stats().tx_error(TxError::Offload), 1, "{e}");
        }
    }
}

#[test]
fn checksum_offload_fills_the_tcp_checksum() {
    let r = rig(1);
    let mut g = r.up(0, DriverConfig::default());
    let mut f = tcp4(DST, g.drv.mac, 300);
    // The stack wrote the IPv4 checksum; CHECKSUM_PARTIAL seeds TCP with the pseudo-header.
    let ipc = {
        let ip = Ipv4Packet::new(&f[14..]).unwrap();
        ipv4::checksum(&ip)
    };
    f[24..26].copy_from_slice(&ipc.to_be_bytes());
    let seed = pseudo(&f, 320);
    f[50..52].copy_from_slice(&seed.to_be_bytes());
    let opts = XmitOpts {
        csum: Some((14, 20, true)),
        ..XmitOpts::default()
    };
    g.drv.xmit(&g.vf, &f, &opts).unwrap();
    let sent = r.sent_by(0);
    assert_eq!(sent.len(), 1);
    assert_valid_tcp4(&sent[0]);
    assert_eq!(&sent[0][..50], &f[..50], "only the TCP checksum changed");
    assert_eq!(&sent[0][52..], &f[52..]);
}

/// Five 1054-byte segments at `rate 1` (1 Mbit/s, a 24 288-bit bucket): two fit the bucket,
/// the third is deferred. The queue pauses inside the packet and resumes at that segment.
#[test]
fn tso_deferred_between_segments_resumes_at_the_deferred_segment() {
    let r = rig(1);
    r.nic
        .configure_vf(0, &VfSetting::parse_words(&["rate", "1"]).unwrap())
        .unwrap();
    let mut g = r.up(0, DriverConfig::default());
    let f = tso_prepared(DST, 5000);
    g.drv.xmit(&g.vf, &f, &TSO_1000).unwrap();
    assert_eq!(seqs(&r.sent_by(0)), [0, 1000]);
    let mut next = g.vf.tx_paused_until();
    assert!(next.is_some(), "paused between segments");
    assert_eq!(g.drv.clean_tx(), 0, "not consumed while paused");
    assert_eq!(g.vf.state().tx.head, 0, "TDH still on the packet");
    while let Some(t) = next {
        let before = r.sent_by(0).len();
        next = r.advance_to(t);
        assert_eq!(r.sent_by(0).len(), before + 1, "one segment per deadline");
        if next.is_some() {
            assert_eq!(g.drv.clean_tx(), 0, "not consumed while paused");
        }
    }
    let sent = r.sent_by(0);
    assert_eq!(seqs(&sent), [0, 1000, 2000, 3000, 4000]);
    for s in &sent {
        assert_valid_tcp4(s);
    }
    let payload: Vec<u8> = sent.iter().flat_map(|s| s[54..].to_vec()).collect();
    assert_eq!(payload, f[54..], "no segment lost or repeated");
    assert_eq!(g.drv.clean_tx(), 1);
    let s = g.vf.stats();
    assert_eq!((s.tx_packets, s.tx_deferred), (5, 3));
}

#[test]
fn a_bad_offload_request_is_a_counted_drop_and_the_ring_moves_on() {
    let r = rig(1);
    let mut g = r.up(0, DriverConfig::default());
    let f = tso_prepared(DST, 3000);
    // MSS 0.
    let opts = XmitOpts {
        tso: Some((14, 20, 20, 0, true)),
        ..XmitOpts::default()
    };
    g.drv.xmit(&g.vf, &f, &opts).unwrap();
    assert!(r.sent_by(0).is_empty());
    assert_eq!(g.vf.stats().tx_error(TxError::Offload), 1);
    assert_eq!(g.vf.stats().tx_packets, 0);
    assert_eq!(g.drv.clean_tx(), 1, "DD written back anyway");
}

#[test]
fn tso_segments_arrive_at_b_through_the_switch_with_verified_checksum_status() {
    let r = rig(2);
    let mut a = r.up(0, DriverConfig::default());
    let mut b = r.up(1, DriverConfig::default());
    let f = tso_prepared(b.drv.mac, 3000);
    a.drv.xmit(&a.vf, &f, &TSO_1000).unwrap();
    assert!(r.seen.all().iter().all(|s| s.to == [PortId::Vf(1)]));
    b.poll();
    let got = b.take_received();
    assert_eq!(got.len(), 3);
    for rx in &got {
        assert_valid_tcp4(&rx.data);
        assert!(rx.checksum_unnecessary, "IPCS + L4CS reported");
    }
    let sent: Vec<Vec<u8>> = r.sent_by(0).iter().map(|s| s.to_vec()).collect();
    let got: Vec<Vec<u8>> = got.into_iter().map(|r| r.data).collect();
    assert_eq!(got, sent, "byte-exact through the switch");
}

/// The TX offload's "this checksum is correct" travels with a segment only while its bytes are
/// the ones it summed: a wire fault that flips a bit on either side of the switch leaves the
/// receiver to find the damage, as it would on hardware.
#[test]
fn a_segment_a_fault_corrupts_is_not_reported_intact() {
    for words in ["vf0 tx corrupt every 1", "vf1 rx corrupt every 1"] {
        let r = rig(2);
        let mut a = r.up(0, DriverConfig::default());
        let mut b = r.up(1, DriverConfig::default());
        let w: Vec<&str> = ["wire"].into_iter().chain(words.split(' ')).collect();
        let fault = Fault::parse(&w, &r.nic.ports()).unwrap();
        r.nic.inject_fault(fault).unwrap();
        let f = tso_prepared(b.drv.mac, 3000);
        a.drv.xmit(&a.vf, &f, &TSO_1000).unwrap();
        b.poll();
        let got = b.take_received();
        assert_eq!(got.len(), 3, "{words}");
        for rx in &got {
            assert!(
                !rx.checksum_unnecessary,
                "{words}: a flipped bit reported intact"
            );
        }
    }
}

#[test]
fn a_corrupted_checksum_or_checksum_reporting_off_leaves_the_stack_to_verify() {
    let r = rig(1);
    let mut g = r.up(0, DriverConfig::default());
    let mut f = tso_prepared(g.drv.mac, 100);
    // Not a valid TCP checksum (the TSO seed), valid IPv4 header after fixing it.
    f[16..18].copy_from_slice(&140u16.to_be_bytes());
    let ipc = ipv4::checksum(&Ipv4Packet::new(&f[14..]).unwrap());
    f[24..26].copy_from_slice(&ipc.to_be_bytes());
    assert!(g.vf.deliver(&Bytes::from(f.clone()), None));
    let wb = g.drv.rx_write_back(0);
    assert_eq!(wb.status_error & 0x70, rx_status::IPCS);
    // Now a valid one, with reporting switched off.
    let t = TcpPacket::new(&f[34..]).unwrap();
    let c = tcp::ipv4_checksum(&t, &Ipv4Addr::new(10, 0, 0, 1), &Ipv4Addr::new(10, 0, 0, 2));
    f[50..52].copy_from_slice(&c.to_be_bytes());
    g.vf.set_rx_checksum(false);
    assert!(g.vf.deliver(&Bytes::from(f.clone()), None));
    assert_eq!(g.drv.rx_write_back(1).status_error & 0x70, 0);
    g.vf.set_rx_checksum(true);
    assert!(g.vf.deliver(&Bytes::from(f.clone()), None));
    assert_eq!(
        g.drv.rx_write_back(2).status_error & 0x70,
        rx_status::IPCS | rx_status::L4CS
    );
    g.drv.clean_rx(&g.vf);
    let flags: Vec<bool> = g
        .drv
        .received
        .iter()
        .map(|r| r.checksum_unnecessary)
        .collect();
    assert_eq!(flags, [false, false, true]);
}
