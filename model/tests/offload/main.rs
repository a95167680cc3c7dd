//! The TX offload engine against independently built frames: outputs are parsed with
//! `pnet_packet` and checked with its checksum functions and a bitwise CRC32c written here.

use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::Bytes;
use model::function::offload::{
    apply, ChecksumSource, L3Type, L4Type, OffloadError, OffloadStats, TxContext, TxOffloads,
    MAX_SEGMENTS,
};
use model::function::rxcsum::{self, L4Checksum};
use model::function::tx::MIN_TX_FRAME;
use pnet_packet::ipv4::{self, Ipv4Packet};
use pnet_packet::tcp::{self, TcpFlags, TcpPacket};
use pnet_packet::Packet;
use proptest::prelude::*;

mod split;
mod support;

use support::*;

// ---- TSO -----------------------------------------------------------------------------------

#[test]
fn tso_64k_ipv4_mss_1448() {
    let payload = payload_bytes(65_483, 3); // the largest igb TSO payload behind 14+20+32
    let flags = TcpFlags::ACK | TcpFlags::PSH | TcpFlags::CWR;
    assert_eq!(
        check_segmentation(Ip::V4, L4::Tcp, &payload, 1448, flags, None),
        46
    );
}

#[test]
fn tso_64k_ipv6_mss_1428() {
    let payload = payload_bytes(65_463, 9);
    let flags = TcpFlags::ACK | TcpFlags::PSH | TcpFlags::FIN;
    assert_eq!(
        check_segmentation(Ip::V6, L4::Tcp, &payload, 1428, flags, None),
        46
    );
}

#[test]
fn tso_64k_ipv6_mss_1448_with_vlan() {
    let payload = payload_bytes(64 * 1024, 1);
    let flags = TcpFlags::ACK | TcpFlags::CWR | TcpFlags::ECE | TcpFlags::PSH;
    assert_eq!(
        check_segmentation(Ip::V6, L4::Tcp, &payload, 1448, flags, Some(0xA00A)),
        46
    );
}

#[test]
fn tso_exact_multiple_and_single_segment() {
    let flags = TcpFlags::ACK | TcpFlags::PSH;
    assert_eq!(
        check_segmentation(
            Ip::V4,
            L4::Tcp,
            &payload_bytes(1448 * 4, 0),
            1448,
            flags,
            None
        ),
        4
    );
    assert_eq!(
        check_segmentation(Ip::V4, L4::Tcp, &payload_bytes(100, 0), 1448, flags, None),
        1
    );
    // A header-only TSO request gives one frame carrying the headers.
    assert_eq!(
        check_segmentation(Ip::V6, L4::Tcp, &[], 1448, flags, None),
        1
    );
}

#[test]
fn tso_frames_are_mss_plus_headers() {
    let b = gso_frame(
        Ip::V4,
        L4::Tcp,
        &payload_bytes(3000, 0),
        1448,
        TcpFlags::ACK,
    );
    let (frames, _) = run(&b.frame, &b.ctx, &b.off).unwrap();
    let lens: Vec<usize> = frames.iter().map(Bytes::len).collect();
    assert_eq!(lens, vec![66 + 1448, 66 + 1448, 66 + 104]);
}

// ---- UDP segmentation ------------------------------------------------------------------------

#[test]
fn uso_ipv4_and_ipv6() {
    let payload = payload_bytes(64_000, 5);
    assert_eq!(
        check_segmentation(Ip::V4, L4::Udp, &payload, 1472, 0, None),
        44
    );
    assert_eq!(
        check_segmentation(Ip::V6, L4::Udp, &payload, 1200, 0, None),
        54
    );
    assert_eq!(
        check_segmentation(Ip::V4, L4::Udp, &payload[..3000], 1000, 0, Some(7)),
        3
    );
}

// ---- checksum only ---------------------------------------------------------------------------

#[test]
fn checksum_only_tcp_and_udp_like_igb_tx_csum() {
    for ip in [Ip::V4, Ip::V6] {
        for (proto, l4) in [(PROTO_TCP, L4::Tcp), (PROTO_UDP, L4::Udp)] {
            let payload = payload_bytes(1001, proto);
            let b = csum_frame(ip, proto, &payload);
            let (frames, stats) = run(&b.frame, &b.ctx, &b.off).unwrap();
            assert_eq!(frames.len(), 1);
            assert_eq!(stats.l4_checksum, Some(ChecksumSource::FromScratch));
            assert!(!stats.segmented && !stats.ip_checksum);
            let seen = verify(&frames[0], ip, l4, None);
            assert_eq!(seen.data, payload);
            // Only the checksum field changed.
            let field = b.l4_off + if l4 == L4::Tcp { 16 } else { 6 };
            assert_eq!(frames[0][..field], b.frame[..field]);
            assert_eq!(frames[0][field + 2..], b.frame[field + 2..]);
        }
    }
}

#[test]
fn ipv4_header_checksum_with_ixsm() {
    let mut b = csum_frame(Ip::V4, PROTO_UDP, &payload_bytes(64, 2));
    b.frame[14 + 10] = 0xAB; // garbage IPv4 checksum
    b.frame[14 + 11] = 0xCD;
    b.off.ixsm = true;
    b.ctx.l3 = L3Type::Ipv4;
    let (frames, stats) = run(&b.frame, &b.ctx, &b.off).unwrap();
    assert!(stats.ip_checksum);
    verify(&frames[0], Ip::V4, L4::Udp, None);
}

#[test]
fn udp_checksum_zero_is_sent_as_ffff() {
    // Choose the last payload word so that the UDP checksum computes to 0.
    let mut payload = payload_bytes(40, 11);
    payload[38] = 0;
    payload[39] = 0;
    let l4_total = 8 + payload.len() as u32;
    let mut udp_bytes = udp_header(l4_total as u16);
    udp_bytes.extend_from_slice(&payload);
    let s = fold16(pseudo_sum(Ip::V4, PROTO_UDP) + l4_total + ones_sum(&udp_bytes));
    let fix = 0xFFFF - s;
    payload[38..40].copy_from_slice(&fix.to_be_bytes());
    let b = csum_frame(Ip::V4, PROTO_UDP, &payload);
    let (frames, _) = run(&b.frame, &b.ctx, &b.off).unwrap();
    let f = &frames[0];
    assert_eq!(&f[b.l4_off + 6..b.l4_off + 8], &[0xFF, 0xFF]);
    verify(f, Ip::V4, L4::Udp, None);
}

#[test]
fn sctp_crc32c() {
    for ip in [Ip::V4, Ip::V6] {
        let payload = payload_bytes(333, 4);
        let mut b = csum_frame(ip, PROTO_SCTP, &payload);
        b.frame[b.l4_off + 8..b.l4_off + 12].copy_from_slice(&[1, 2, 3, 4]); // junk in the field
        let (frames, stats) = run(&b.frame, &b.ctx, &b.off).unwrap();
        assert_eq!(stats.l4_checksum, Some(ChecksumSource::Crc32c));
        let mut sctp = frames[0][b.l4_off..].to_vec();
        let stored = u32::from_le_bytes([sctp[8], sctp[9], sctp[10], sctp[11]]);
        sctp[8..12].fill(0);
        assert_eq!(stored, crc32c_bitwise(&sctp));
        assert_eq!(&frames[0][b.l4_off + 12..], &payload[..]);
    }
    assert_eq!(crc32c_bitwise(b"123456789"), 0xE306_9283);
}

#[test]
fn ipv6_hop_by_hop_extension_header_is_walked() {
    let payload = payload_bytes(500, 8);
    let b = csum_frame(Ip::V6, PROTO_TCP, &payload);
    // Splice an 8-byte hop-by-hop header (next = TCP, len 0, PadN) after the IPv6 header.
    let mut frame = b.frame[..54].to_vec();
    frame[14 + 6] = 0; // next header: hop-by-hop
    let pl = u16::from_be_bytes([frame[18], frame[19]]) + 8;
    frame[18..20].copy_from_slice(&pl.to_be_bytes());
    frame.extend_from_slice(&[PROTO_TCP, 0, 1, 4, 0, 0, 0, 0]);
    frame.extend_from_slice(&b.frame[54..]);
    let ctx = TxContext {
        ip_len: 48,
        ..b.ctx
    };
    let (frames, stats) = run(&frame, &ctx, &b.off).unwrap();
    assert_eq!(stats.l4_checksum, Some(ChecksumSource::FromScratch));
    let t = TcpPacket::new(&frames[0][62..]).unwrap();
    let want = tcp::ipv6_checksum(&t, &Ipv6Addr::from(V6_SRC), &Ipv6Addr::from(V6_DST));
    assert_eq!(t.get_checksum(), want);
}

#[test]
fn trailing_padding_is_not_summed_for_a_plain_packet() {
    let payload = payload_bytes(6, 1);
    let mut b = csum_frame(Ip::V4, PROTO_UDP, &payload);
    b.frame.extend_from_slice(&[0xEE; 10]); // Ethernet padding beyond the IPv4 length
    b.off.paylen = b.frame.len() as u32;
    let (frames, _) = run(&b.frame, &b.ctx, &b.off).unwrap();
    let f = &frames[0];
    assert_eq!(&f[f.len() - 10..], &[0xEE; 10]);
    verify(&f[..f.len() - 10], Ip::V4, L4::Udp, None);
}

// ---- VLAN ------------------------------------------------------------------------------------

#[test]
fn vlan_insertion_alone_and_with_checksum() {
    let b = csum_frame(Ip::V4, PROTO_TCP, &payload_bytes(200, 0));
    // VLAN only: no checksum requested, the frame is otherwise untouched.
    let off = TxOffloads {
        tse: false,
        ixsm: false,
        txsm: false,
        vle: true,
        paylen: 0,
    };
    let ctx = TxContext {
        vlan: 0x6064,
        ..b.ctx
    };
    let (frames, stats) = run(&b.frame, &ctx, &off).unwrap();
    assert!(stats.vlan_inserted && stats.l4_checksum.is_none());
    let f = &frames[0];
    assert_eq!(f.len(), b.frame.len() + 4);
    assert_eq!(&f[..12], &b.frame[..12]);
    assert_eq!(&f[12..16], &[0x81, 0x00, 0x60, 0x64]);
    assert_eq!(&f[16..], &b.frame[12..]);
    // With TXSM: tag and checksum together, MACLEN still 14 (the untagged frame).
    let off = TxOffloads { vle: true, ..b.off };
    let (frames, _) = run(&b.frame, &ctx, &off).unwrap();
    verify(&frames[0], Ip::V4, L4::Tcp, Some(0x6064));
}

#[test]
fn no_offload_passes_the_frame_through() {
    let frame = payload_bytes(60, 0);
    let (frames, stats) = run(&frame, &TxContext::default(), &TxOffloads::default()).unwrap();
    assert_eq!(frames, vec![Bytes::from(frame)]);
    assert_eq!(stats.frames, 1);
    assert_eq!(stats.l4_checksum, None);
}

// ---- descriptor words ------------------------------------------------------------------------

#[test]
fn parses_the_words_igb_writes_for_tso() {
    // igb_tso for an IPv4 TCP skb with VLAN 100 and MSS 1448, then igb_tx_map.
    let vlan_macip_lens = 20 | (14 << 9) | (100 << 16);
    let type_tucmd = (1 << 11) | (1 << 10) | (1 << 29) | (0b0010 << 20);
    let mss_l4len_idx = (32 << 8) | (1448 << 16);
    let ctx = TxContext::from_words(vlan_macip_lens, type_tucmd, mss_l4len_idx);
    assert_eq!(
        ctx,
        TxContext {
            mac_len: 14,
            ip_len: 20,
            l4_len: 32,
            mss: 1448,
            l3: L3Type::Ipv4,
            l4: L4Type::Tcp,
            vlan: 100,
            idx: 0
        }
    );
    let cmd_type_len = 0x8000_0000 | 0x4000_0000 | 0x2000_0000 | 0x0200_0000 | (0b0011 << 20) | 66;
    let olinfo = (65_483 << 14) | (1 << 9) | (1 << 8);
    let off = TxOffloads::from_words(cmd_type_len, olinfo);
    assert_eq!(
        off,
        TxOffloads {
            tse: true,
            ixsm: true,
            txsm: true,
            vle: true,
            paylen: 65_483
        }
    );
    let mut desc = [0u8; 16];
    desc[0..4].copy_from_slice(&vlan_macip_lens.to_le_bytes());
    desc[8..12].copy_from_slice(&type_tucmd.to_le_bytes());
    desc[12..16].copy_from_slice(&mss_l4len_idx.to_le_bytes());
    assert_eq!(TxContext::from_desc(&desc), ctx);
    desc[8..12].copy_from_slice(&cmd_type_len.to_le_bytes());
    desc[12..16].copy_from_slice(&olinfo.to_le_bytes());
    assert_eq!(TxOffloads::from_desc(&desc), off);
}

// ---- tunnels: the seed is continued ----------------------------------------------------------

/// VXLAN over IPv4 carrying IPv4/TCP, prepared the way igb_tso prepares a GSO_PARTIAL packet:
/// IPLEN spans outer IPv4 + UDP + VXLAN + inner Ethernet + inner IPv4; the outer IPv4 checksum
/// holds the fold of the bytes between the outer IPv4 header and the inner TCP header; the
/// outer UDP length and the inner IPv4 header are already right for an MSS-sized segment.
#[test]
fn vxlan_gso_partial_keeps_inner_headers_and_continues_the_seed() {
    let mss = 1000usize;
    let payload = payload_bytes(mss * 3, 6);
    let inner_ip_src = [192, 168, 0, 1];
    let inner_ip_dst = [192, 168, 0, 2];
    let tcp_len = 32;
    // Inner headers for one MSS segment.
    let mut inner = eth_header(0x0800);
    let mut iip = vec![0x45, 0];
    iip.extend_from_slice(&((20 + tcp_len + mss) as u16).to_be_bytes());
    iip.extend_from_slice(&[0, 9, 0x40, 0, 64, PROTO_TCP, 0, 0]);
    iip.extend_from_slice(&inner_ip_src);
    iip.extend_from_slice(&inner_ip_dst);
    let c = !fold16(ones_sum(&iip));
    iip[10..12].copy_from_slice(&c.to_be_bytes());
    inner.extend_from_slice(&iip);
    let mut gap = udp_header((8 + 8 + inner.len() + tcp_len + mss) as u16);
    gap.extend_from_slice(&[0x08, 0, 0, 0, 0, 0, 42, 0]); // VXLAN, VNI 42
    gap.extend_from_slice(&inner);
    let mut frame = eth_header(0x0800);
    let mut oip = ipv4_header(PROTO_UDP, 0, 0x100);
    let gap_fold = !fold16(ones_sum(&gap));
    oip[10..12].copy_from_slice(&gap_fold.to_be_bytes());
    frame.extend_from_slice(&oip);
    frame.extend_from_slice(&gap);
    let l4_off = frame.len();
    let mut th = tcp_header(TcpFlags::ACK);
    let seed = fold16(ones_sum(&inner_ip_src) + ones_sum(&inner_ip_dst) + u32::from(PROTO_TCP));
    th[16..18].copy_from_slice(&seed.to_be_bytes());
    frame.extend_from_slice(&th);
    frame.extend_from_slice(&payload);
    let ctx = TxContext {
        mac_len: 14,
        ip_len: (l4_off - 14) as u16,
        l4_len: 32,
        mss: mss as u16,
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
        paylen: payload.len() as u32,
    };
    let (frames, stats) = run(&frame, &ctx, &off).unwrap();
    assert_eq!(stats.l4_checksum, Some(ChecksumSource::Seeded));
    assert_eq!(frames.len(), 3);
    for (i, f) in frames.iter().enumerate() {
        let outer = Ipv4Packet::new(&f[14..]).unwrap();
        assert_eq!(usize::from(outer.get_total_length()), f.len() - 14);
        assert_eq!(outer.get_identification(), 0x100 + i as u16);
        assert_eq!(
            ipv4::checksum(&outer),
            outer.get_checksum(),
            "outer IPv4 checksum"
        );
        // Everything between the outer IPv4 header and the inner TCP header is untouched.
        assert_eq!(&f[34..l4_off], &gap[..]);
        let t = TcpPacket::new(&f[l4_off..]).unwrap();
        let want = tcp::ipv4_checksum(
            &t,
            &Ipv4Addr::from(inner_ip_src),
            &Ipv4Addr::from(inner_ip_dst),
        );
        assert_eq!(t.get_checksum(), want, "inner TCP checksum");
        assert_eq!(t.get_sequence(), TCP_SEQ.wrapping_add((i * mss) as u32));
        assert_eq!(t.payload(), &payload[i * mss..(i + 1) * mss]);
    }
}

/// IPv4-in-IPv4 (igb's GSO_PARTIAL IPXIP4) with a checksum-only request: IPLEN covers both
/// IPv4 headers, so the pseudo-header is not at MACLEN and the driver's seed (the inner
/// pseudo-header with length) is continued.
#[test]
fn ipip_checksum_only_continues_the_seed() {
    let payload = payload_bytes(777, 2);
    let inner_src = [172, 16, 0, 1];
    let inner_dst = [172, 16, 0, 2];
    let tcp_total = 32 + payload.len();
    let mut inner_ip = vec![0x45, 0];
    inner_ip.extend_from_slice(&((20 + tcp_total) as u16).to_be_bytes());
    inner_ip.extend_from_slice(&[0, 1, 0x40, 0, 64, PROTO_TCP, 0, 0]);
    inner_ip.extend_from_slice(&inner_src);
    inner_ip.extend_from_slice(&inner_dst);
    let c = !fold16(ones_sum(&inner_ip));
    inner_ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut frame = eth_header(0x0800);
    frame.extend_from_slice(&ipv4_header(4, (40 + tcp_total) as u16, 3));
    frame.extend_from_slice(&inner_ip);
    let l4_off = frame.len();
    let mut th = tcp_header(TcpFlags::ACK);
    let seed = fold16(
        ones_sum(&inner_src) + ones_sum(&inner_dst) + u32::from(PROTO_TCP) + tcp_total as u32,
    );
    th[16..18].copy_from_slice(&seed.to_be_bytes());
    frame.extend_from_slice(&th);
    frame.extend_from_slice(&payload);
    let ctx = TxContext {
        mac_len: 14,
        ip_len: 40,
        l4: L4Type::Tcp,
        ..TxContext::default()
    };
    let off = TxOffloads {
        txsm: true,
        paylen: frame.len() as u32,
        ..TxOffloads::default()
    };
    let (frames, stats) = run(&frame, &ctx, &off).unwrap();
    assert_eq!(stats.l4_checksum, Some(ChecksumSource::Seeded));
    let t = TcpPacket::new(&frames[0][l4_off..]).unwrap();
    let want = tcp::ipv4_checksum(&t, &Ipv4Addr::from(inner_src), &Ipv4Addr::from(inner_dst));
    assert_eq!(t.get_checksum(), want);
    // The outer IPv4 header is left alone without IXSM.
    assert_eq!(&frames[0][..l4_off], &frame[..l4_off]);
}

#[test]
fn output_can_be_a_dyn_fnmut() {
    let b = gso_frame(
        Ip::V4,
        L4::Tcp,
        &payload_bytes(3000, 0),
        1448,
        TcpFlags::ACK,
    );
    let mut frames = Vec::new();
    let mut push = |f: Bytes| frames.push(f);
    let sink: &mut dyn FnMut(Bytes) = &mut push;
    let stats = apply(&b.frame, &b.ctx, &b.off, sink).unwrap();
    assert_eq!(stats.frames, 3);
    assert_eq!(frames.len(), 3);
}

// ---- errors ----------------------------------------------------------------------------------

#[test]
fn inconsistent_contexts_are_typed_errors() {
    let good = gso_frame(
        Ip::V4,
        L4::Tcp,
        &payload_bytes(5000, 0),
        1448,
        TcpFlags::ACK,
    );
    let err = |frame: &[u8], ctx: TxContext, off: TxOffloads| run(frame, &ctx, &off).unwrap_err();
    let (f, c, o) = (&good.frame[..], good.ctx, good.off);
    assert_eq!(err(f, TxContext { mss: 0, ..c }, o), OffloadError::ZeroMss);
    assert_eq!(
        err(f, TxContext { mac_len: 6, ..c }, o),
        OffloadError::MacLenTooShort(6)
    );
    assert_eq!(
        err(
            f,
            TxContext {
                l3: L3Type::Ipv6,
                ..c
            },
            o
        ),
        OffloadError::IpVersionMismatch {
            expected: L3Type::Ipv6,
            found: 4
        }
    );
    assert_eq!(
        err(f, TxContext { ip_len: 16, ..c }, o),
        OffloadError::Ipv4HeaderLength { ihl: 5, ip_len: 16 }
    );
    assert_eq!(
        err(f, TxContext { l4_len: 20, ..c }, o),
        OffloadError::L4HeaderLength {
            l4: L4Type::Tcp,
            l4_len: 20
        }
    );
    assert_eq!(
        err(
            f,
            TxContext {
                l4: L4Type::Sctp,
                ..c
            },
            o
        ),
        OffloadError::UnsupportedSegmentation(L4Type::Sctp)
    );
    assert_eq!(
        err(
            f,
            TxContext {
                l4: L4Type::Other,
                ..c
            },
            TxOffloads { tse: false, ..o }
        ),
        OffloadError::UnsupportedChecksum(L4Type::Other)
    );
    assert_eq!(
        err(f, c, TxOffloads { paylen: 4999, ..o }),
        OffloadError::PaylenMismatch {
            paylen: 4999,
            actual: 5000
        }
    );
    assert_eq!(
        err(&f[..40], c, o),
        OffloadError::FrameTooShort {
            len: 40,
            needed: 54
        }
    );
    // MACLEN pointing into the payload finds no IPv4 header there.
    let found = f[127] >> 4;
    assert_ne!(found, 4);
    assert_eq!(
        err(f, TxContext { mac_len: 127, ..c }, o),
        OffloadError::IpVersionMismatch {
            expected: L3Type::Ipv4,
            found
        }
    );
    // MSS 1 over 5000 bytes: too many segments.
    assert_eq!(
        err(f, TxContext { mss: 1, ..c }, o),
        OffloadError::TooManySegments {
            segments: 5000,
            max: MAX_SEGMENTS
        }
    );
    // A segment whose IPv4 total length would not fit 16 bits.
    let big = gso_frame(
        Ip::V4,
        L4::Tcp,
        &payload_bytes(70_000, 0),
        65_535,
        TcpFlags::ACK,
    );
    assert_eq!(
        err(&big.frame, big.ctx, big.off),
        OffloadError::SegmentTooLarge(20 + 32 + 65_535)
    );
    // IPv6 context with a too-short IPLEN.
    let v6 = gso_frame(Ip::V6, L4::Udp, &payload_bytes(100, 0), 50, 0);
    assert_eq!(
        err(
            &v6.frame,
            TxContext {
                ip_len: 20,
                ..v6.ctx
            },
            v6.off
        ),
        OffloadError::Ipv6HeaderLength(20)
    );
    assert_eq!(
        err(
            &v6.frame,
            TxContext {
                l4_len: 20,
                ..v6.ctx
            },
            v6.off
        ),
        OffloadError::L4HeaderLength {
            l4: L4Type::Udp,
            l4_len: 20
        }
    );
    // VLAN insertion into a runt.
    let vle = TxOffloads {
        vle: true,
        ..TxOffloads::default()
    };
    assert_eq!(
        err(&[0u8; 8], TxContext::default(), vle),
        OffloadError::FrameTooShort { len: 8, needed: 12 }
    );
}

#[test]
fn error_emits_nothing() {
    let good = gso_frame(
        Ip::V4,
        L4::Tcp,
        &payload_bytes(5000, 0),
        1448,
        TcpFlags::ACK,
    );
    let mut count = 0;
    let off = TxOffloads {
        paylen: 1,
        ..good.off
    };
    assert!(apply(&good.frame, &good.ctx, &off, &mut |_b: Bytes| count += 1).is_err());
    assert_eq!(count, 0);
}

// ---- property tests --------------------------------------------------------------------------

/// The fact the TX engine hands the receiving side (an L4 checksum computed from scratch is
/// correct) holds for every frame the offload emitted: the receive status with the fact is
/// the one summing the frame gives. Frames are padded as the engine pads them.
fn assert_fact_holds(frames: &[Bytes], stats: &OffloadStats) -> Result<(), TestCaseError> {
    if stats.l4_checksum != Some(ChecksumSource::FromScratch) {
        return Ok(());
    }
    for f in frames {
        let mut padded = f.to_vec();
        if padded.len() < MIN_TX_FRAME {
            padded.resize(MIN_TX_FRAME, 0);
        }
        prop_assert_eq!(
            rxcsum::status_for(&padded, L4Checksum::Correct),
            rxcsum::status(&padded),
            "frame {:02x?}",
            padded
        );
    }
    Ok(())
}

/// A plain TCP or UDP packet as the driver hands it over: for segmentation at `mss`, or for
/// its checksums only (IXSM too for IPv4).
fn plain_packet(ip: Ip, udp: bool, payload: &[u8], mss: u16, segment: bool) -> Built {
    if segment {
        let l4 = if udp { L4::Udp } else { L4::Tcp };
        gso_frame(ip, l4, payload, mss, TcpFlags::ACK)
    } else {
        let mut b = csum_frame(ip, if udp { PROTO_UDP } else { PROTO_TCP }, payload);
        b.off.ixsm = ip == Ip::V4;
        b
    }
}

fn tcp_flags() -> impl Strategy<Value = u8> {
    // Any flags a TSO super-frame could carry (no SYN/RST in practice, but harmless).
    any::<u8>().prop_map(|f| f | TcpFlags::ACK)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Random sizes, MSS, flags, IP version, L4 and VLAN: reassembly equals the input and every
    /// header and checksum verifies (check_segmentation asserts all of it).
    #[test]
    fn segmentation_reassembles_and_verifies(
        len in 0usize..20_000,
        mss in 64u16..9_000,
        flags in tcp_flags(),
        v6 in any::<bool>(),
        udp in any::<bool>(),
        vlan in proptest::option::of(any::<u16>()),
        salt in any::<u8>(),
    ) {
        let ip = if v6 { Ip::V6 } else { Ip::V4 };
        let l4 = if udp { L4::Udp } else { L4::Tcp };
        let payload = payload_bytes(len, salt);
        check_segmentation(ip, l4, &payload, mss, flags, vlan);
        let b = gso_frame(ip, l4, &payload, mss, flags);
        let (frames, stats) = run(&b.frame, &b.ctx, &b.off).unwrap();
        prop_assert_eq!(stats.l4_checksum, Some(ChecksumSource::FromScratch));
        assert_fact_holds(&frames, &stats)?;
    }

    /// Every segment's IPv4 header checksum is the one summing its header gives, whatever
    /// the header holds: options of any length, any TOS, TTL, identification and addresses.
    #[test]
    fn every_segments_ipv4_header_checksum_verifies(
        option_words in 0usize..=10,
        tos in any::<u8>(),
        ttl in any::<u8>(),
        ident in any::<u16>(),
        src in any::<[u8; 4]>(),
        len in 1usize..6_000,
        mss in 64u16..1_500,
    ) {
        let mut b = gso_frame(Ip::V4, L4::Tcp, &payload_bytes(len, 5), mss, TcpFlags::ACK);
        let opts = 4 * option_words;
        // NOPs, then the header's own fields.
        let at = b.l3_off + 20;
        b.frame.splice(at..at, std::iter::repeat_n(1u8, opts));
        let ip = &mut b.frame[b.l3_off..];
        ip[0] = 0x40 | (5 + option_words) as u8;
        ip[1] = tos;
        ip[4..6].copy_from_slice(&ident.to_be_bytes());
        ip[8] = ttl;
        ip[12..16].copy_from_slice(&src);
        b.ctx.ip_len += opts as u16;
        // The L4 seed covers the pseudo-header, which a new source address changes; the
        // engine rebuilds it from scratch for a plain packet anyway.
        let (frames, stats) = run(&b.frame, &b.ctx, &b.off).unwrap();
        prop_assert!(stats.ip_checksum);
        for (i, f) in frames.iter().enumerate() {
            let header = &f[14..14 + 20 + opts];
            prop_assert_eq!(fold16(ones_sum(header)), 0xFFFF, "segment {}", i);
            let seen = ipv4::Ipv4Packet::new(&f[14..]).unwrap();
            prop_assert_eq!(seen.get_identification(), ident.wrapping_add(i as u16));
            prop_assert_eq!(usize::from(seen.get_total_length()), f.len() - 14);
        }
    }

    /// The driver's seeds (IPv4 checksum, L4 checksum) do not change the output of a plain packet.
    #[test]
    fn seeds_are_irrelevant(
        len in 0usize..4_000,
        mss in 100u16..2_000,
        ip_seed in any::<u16>(),
        l4_seed in any::<u16>(),
        v6 in any::<bool>(),
        udp in any::<bool>(),
        segment in any::<bool>(),
    ) {
        let ip = if v6 { Ip::V6 } else { Ip::V4 };
        let payload = payload_bytes(len, 0);
        let b = plain_packet(ip, udp, &payload, mss, segment);
        let (reference, _) = run(&b.frame, &b.ctx, &b.off).unwrap();
        let mut seeded = b.frame.clone();
        if ip == Ip::V4 {
            seeded[b.l3_off + 10..b.l3_off + 12].copy_from_slice(&ip_seed.to_be_bytes());
        }
        let field = b.l4_off + if udp { 6 } else { 16 };
        seeded[field..field + 2].copy_from_slice(&l4_seed.to_be_bytes());
        let (out, _) = run(&seeded, &b.ctx, &b.off).unwrap();
        prop_assert_eq!(out, reference);
        prop_assert!(b.hdr_len <= b.frame.len());
    }

    /// Arbitrary bytes under arbitrary descriptor words never panic; success emits what the
    /// stats say.
    #[test]
    fn garbage_never_panics(
        frame in proptest::collection::vec(any::<u8>(), 0..400),
        lens in any::<u32>(),
        tucmd in any::<u32>(),
        mli in any::<u32>(),
        cmd in any::<u32>(),
        olinfo in any::<u32>(),
    ) {
        let ctx = TxContext::from_words(lens, tucmd, mli);
        let off = TxOffloads::from_words(cmd, olinfo);
        let mut frames = 0u32;
        let mut bytes = 0u64;
        if let Ok(stats) = apply(&frame, &ctx, &off, &mut |b: Bytes| { frames += 1; bytes += b.len() as u64; }) {
            prop_assert_eq!(stats.frames, frames);
            prop_assert_eq!(stats.bytes, bytes);
        }
    }

    /// Well-formed frames under mutated contexts (every field randomised, PAYLEN kept
    /// consistent half the time so segmentation is reached) never panic.
    #[test]
    fn mutated_contexts_never_panic(
        len in 0usize..3_000,
        mac_len in 0u8..128,
        ip_len in 0u16..512,
        l4_len in any::<u8>(),
        mss in any::<u16>(),
        l4 in 0u32..4,
        ipv4 in any::<bool>(),
        tse in any::<bool>(),
        ixsm in any::<bool>(),
        txsm in any::<bool>(),
        vle in any::<bool>(),
        consistent_paylen in any::<bool>(),
        v6 in any::<bool>(),
        udp in any::<bool>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let ip = if v6 { Ip::V6 } else { Ip::V4 };
        let b = gso_frame(ip, if udp { L4::Udp } else { L4::Tcp }, &payload_bytes(len, 1), 1448, 0);
        let frame = &b.frame[..cut.index(b.frame.len() + 1)];
        let hdr = usize::from(mac_len) + usize::from(ip_len) + usize::from(l4_len);
        let paylen = if consistent_paylen { frame.len().saturating_sub(hdr) as u32 } else { len as u32 };
        let ctx = context_from_fields(mac_len, ip_len, l4_len, mss, l4, ipv4);
        let off = TxOffloads { tse, ixsm, txsm, vle, paylen };
        let _ = run(frame, &ctx, &off);
    }

    /// Whatever the guest wrote (the seeds in its checksum fields, a header's bytes, any
    /// context), a checksum the offload reports computed from scratch is one the receiving
    /// side would find intact: carrying that fact past the switch never changes what the
    /// receiver reports.
    #[test]
    fn a_checksum_computed_from_scratch_verifies_on_receive(
        len in 0usize..3_000,
        mss in 64u16..2_000,
        v6 in any::<bool>(),
        udp in any::<bool>(),
        segment in any::<bool>(),
        vle in any::<bool>(),
        poke in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        mutate_ctx in any::<bool>(),
        mac_len in prop_oneof![Just(14u8), Just(18), 0u8..64],
        ip_len in prop_oneof![Just(20u16), Just(24), Just(40), Just(48), 0u16..128],
        l4_len in prop_oneof![Just(8u8), Just(20), Just(32), 0u8..64],
    ) {
        let ip = if v6 { Ip::V6 } else { Ip::V4 };
        let payload = payload_bytes(len, 3);
        let mut b = plain_packet(ip, udp, &payload, mss, segment);
        // Bytes anywhere in the headers (or the payload) changed after the driver built them.
        for (at, byte) in &poke {
            let i = at.index(b.frame.len().min(b.hdr_len + 16));
            b.frame[i] = *byte;
        }
        b.off.vle = vle;
        if mutate_ctx {
            b.ctx = context_from_fields(mac_len, ip_len, l4_len, mss, if udp { 1 } else { 0 }, !v6);
            if segment {
                let hdr = usize::from(mac_len) + usize::from(ip_len) + usize::from(l4_len);
                b.off.paylen = b.frame.len().saturating_sub(hdr) as u32;
            }
        }
        if let Ok((frames, stats)) = run(&b.frame, &b.ctx, &b.off) {
            assert_fact_holds(&frames, &stats)?;
        }
    }
}
