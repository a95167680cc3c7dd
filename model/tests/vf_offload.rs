//! TX offloads as igbvf requests them (igbvf_tso, igbvf_tx_csum), through the VF model and the
//! 82576 offload engine, checked with pnet.

mod support;

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use model::testing::{DriverConfig, XmitOpts};
use model::{TxError, TxVerdict};
use pnet_packet::ipv4::{self, Ipv4Packet};
use pnet_packet::tcp::{self, TcpPacket};
use support::*;

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
/// pseudo-header sum without the length.
fn tso_prepared(payload: usize) -> Vec<u8> {
    let mut f = tcp4(DST, [0x02, 0x52, 0x54, 0, 0, 0], payload);
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

#[test]
fn tso_segments_come_out_with_valid_headers_and_the_whole_payload() {
    let port = port(1);
    let mut g = up(&port, 0, DriverConfig::default());
    let f = tso_prepared(4000);
    let opts = XmitOpts {
        tso: Some((14, 20, 20, 1000, true)),
        ..XmitOpts::default()
    };
    g.drv.xmit(&mut g.vf, &f, &opts).unwrap();
    let sent = g.sent.lock().unwrap().clone();
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

#[test]
fn checksum_offload_fills_the_tcp_checksum() {
    let port = port(1);
    let mut g = up(&port, 0, DriverConfig::default());
    let mut f = tcp4(DST, [0x02, 0x52, 0x54, 0, 0, 0], 300);
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
    g.drv.xmit(&mut g.vf, &f, &opts).unwrap();
    let sent = g.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert_valid_tcp4(&sent[0]);
}

#[test]
fn tso_deferred_between_segments_resumes_at_the_deferred_segment() {
    let port = port(1);
    let mut g = up(&port, 0, DriverConfig::default());
    let out: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let o = out.clone();
    let mut calls = 0u64;
    g.vf.set_tx_sink(Box::new(move |f| {
        calls += 1;
        if calls == 3 {
            return TxVerdict::Defer { until_ns: 77 };
        }
        o.lock().unwrap().push(f);
        TxVerdict::Sent
    }));
    let f = tso_prepared(5000);
    let opts = XmitOpts {
        tso: Some((14, 20, 20, 1000, true)),
        ..XmitOpts::default()
    };
    g.drv.xmit(&mut g.vf, &f, &opts).unwrap();
    assert_eq!(out.lock().unwrap().len(), 2);
    assert_eq!(g.vf.tx_paused_until(), Some(77));
    assert_eq!(g.drv.clean_tx(), 0, "not consumed while paused");
    let run = g.vf.tx_resume();
    assert!(run.wrote_back && run.paused_until.is_none());
    let seqs: Vec<u32> = out
        .lock()
        .unwrap()
        .iter()
        .map(|s| TcpPacket::new(&s[34..]).unwrap().get_sequence())
        .collect();
    assert_eq!(seqs, [0, 1000, 2000, 3000, 4000]);
    assert_eq!(g.drv.clean_tx(), 1);
}

#[test]
fn a_bad_offload_request_is_a_counted_drop_and_the_ring_moves_on() {
    let port = port(1);
    let mut g = up(&port, 0, DriverConfig::default());
    let f = tso_prepared(3000);
    // MSS 0.
    let opts = XmitOpts {
        tso: Some((14, 20, 20, 0, true)),
        ..XmitOpts::default()
    };
    g.drv.xmit(&mut g.vf, &f, &opts).unwrap();
    assert!(g.sent.lock().unwrap().is_empty());
    assert_eq!(g.vf.stats().tx_error(TxError::Offload), 1);
    assert_eq!(g.drv.clean_tx(), 1, "DD written back anyway");
}

#[test]
fn tso_segments_arrive_at_b_with_verified_checksum_status() {
    let port = port(2);
    let mut a = up(&port, 0, DriverConfig::default());
    let mut b = up(&port, 1, DriverConfig::default());
    let b_rx = b.vf.shared();
    a.vf.set_tx_sink(Box::new(move |f| {
        b_rx.receive(&f, None).unwrap();
        TxVerdict::Sent
    }));
    let f = tso_prepared(3000);
    let opts = XmitOpts {
        tso: Some((14, 20, 20, 1000, true)),
        ..XmitOpts::default()
    };
    a.drv.xmit(&mut a.vf, &f, &opts).unwrap();
    assert_eq!(b.drv.clean_rx(&mut b.vf), 3);
    for r in &b.drv.received {
        assert_valid_tcp4(&r.data);
        assert!(r.checksum_unnecessary, "IPCS + L4CS reported");
    }
}

#[test]
fn a_corrupted_checksum_or_checksum_reporting_off_leaves_the_stack_to_verify() {
    let port = port(1);
    let mut g = up(&port, 0, DriverConfig::default());
    let rx = g.vf.shared();
    let mut f = tso_prepared(100);
    // Not a valid TCP checksum (the TSO seed), valid IPv4 header after fixing it.
    f[16..18].copy_from_slice(&140u16.to_be_bytes());
    let ipc = ipv4::checksum(&Ipv4Packet::new(&f[14..]).unwrap());
    f[24..26].copy_from_slice(&ipc.to_be_bytes());
    rx.receive(&f, None).unwrap();
    let wb = g.drv.rx_write_back(0);
    assert_eq!(wb.status_error & 0x70, model::desc::rx_status::IPCS);
    // Now a valid one, with reporting switched off.
    let t = TcpPacket::new(&f[34..]).unwrap();
    let c = tcp::ipv4_checksum(&t, &Ipv4Addr::new(10, 0, 0, 1), &Ipv4Addr::new(10, 0, 0, 2));
    f[50..52].copy_from_slice(&c.to_be_bytes());
    rx.set_rx_checksum(false);
    rx.receive(&f, None).unwrap();
    assert_eq!(g.drv.rx_write_back(1).status_error & 0x70, 0);
    rx.set_rx_checksum(true);
    rx.receive(&f, None).unwrap();
    assert_eq!(
        g.drv.rx_write_back(2).status_error & 0x70,
        model::desc::rx_status::IPCS | model::desc::rx_status::L4CS
    );
    g.drv.clean_rx(&mut g.vf);
    let flags: Vec<bool> = g
        .drv
        .received
        .iter()
        .map(|r| r.checksum_unnecessary)
        .collect();
    assert_eq!(flags, [false, false, true]);
}
