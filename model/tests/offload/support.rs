//! Frames built as Linux igb hands them to the device, arithmetic done independently of the
//! engine, and the checks a receiver would make of its output.

use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::Bytes;
use model::function::offload::{
    apply, ChecksumSource, L3Type, L4Type, OffloadError, OffloadStats, TxContext, TxOffloads,
};
use pnet_packet::ethernet::{EtherTypes, EthernetPacket};
use pnet_packet::ipv4::{self, Ipv4Packet};
use pnet_packet::ipv6::Ipv6Packet;
use pnet_packet::tcp::{self, TcpFlags, TcpPacket};
use pnet_packet::udp::{self, UdpPacket};
use pnet_packet::vlan::VlanPacket;
use pnet_packet::Packet;

pub const DST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x00, 0x00, 0x02];
pub const SRC_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x00, 0x00, 0x01];
pub const V4_SRC: [u8; 4] = [10, 0, 0, 1];
pub const V4_DST: [u8; 4] = [10, 0, 0, 2];
pub const V6_SRC: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
pub const V6_DST: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_SCTP: u8 = 132;
pub const IPV4_ID: u16 = 0xFFF0; // wraps during a long TSO run
pub const TCP_SEQ: u32 = 0xFFFF_0000; // wraps too

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ip {
    V4,
    V6,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    Tcp,
    Udp,
}

// ---- independent arithmetic --------------------------------------------------------------

/// 16-bit one's-complement sum, word by word.
pub fn ones_sum(data: &[u8]) -> u32 {
    let mut sum = 0u32;
    for pair in data.chunks(2) {
        let word = (u32::from(pair[0]) << 8) | u32::from(*pair.get(1).unwrap_or(&0));
        sum += word;
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    sum
}

pub fn fold16(mut sum: u32) -> u16 {
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    sum as u16
}

/// Bitwise CRC32c (RFC 3720 B.4 polynomial, reflected).
pub fn crc32c_bitwise(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let lsb = crc & 1;
            crc >>= 1;
            if lsb != 0 {
                crc ^= 0x82F6_3B78;
            }
        }
    }
    !crc
}

/// Pseudo-header sum (no length), as the drivers' TSO seed carries it.
pub fn pseudo_sum(ip: Ip, proto: u8) -> u32 {
    match ip {
        Ip::V4 => ones_sum(&V4_SRC) + ones_sum(&V4_DST) + u32::from(proto),
        Ip::V6 => ones_sum(&V6_SRC) + ones_sum(&V6_DST) + u32::from(proto),
    }
}

// ---- frame builders ------------------------------------------------------------------------

pub fn eth_header(ethertype: u16) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&DST_MAC);
    f.extend_from_slice(&SRC_MAC);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

pub fn ipv4_header(proto: u8, total_len: u16, ident: u16) -> Vec<u8> {
    let mut h = vec![0x45, 0x00];
    h.extend_from_slice(&total_len.to_be_bytes());
    h.extend_from_slice(&ident.to_be_bytes());
    h.extend_from_slice(&[0x40, 0x00, 64, proto, 0, 0]); // DF, TTL 64, checksum 0
    h.extend_from_slice(&V4_SRC);
    h.extend_from_slice(&V4_DST);
    let c = !fold16(ones_sum(&h));
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h
}

pub fn ipv6_header(next: u8, payload_len: u16) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&payload_len.to_be_bytes());
    h.extend_from_slice(&[next, 64]);
    h.extend_from_slice(&V6_SRC);
    h.extend_from_slice(&V6_DST);
    h
}

/// TCP header with 12 bytes of options (NOP NOP timestamp), 32 bytes.
pub fn tcp_header(flags: u8) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&5001u16.to_be_bytes());
    h.extend_from_slice(&40000u16.to_be_bytes());
    h.extend_from_slice(&TCP_SEQ.to_be_bytes());
    h.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    h.extend_from_slice(&[8 << 4, flags]);
    h.extend_from_slice(&502u16.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent
    h.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
    h
}

pub fn udp_header(len: u16) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&4000u16.to_be_bytes());
    h.extend_from_slice(&4433u16.to_be_bytes());
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    h
}

pub fn payload_bytes(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt) ^ (i >> 8) as u8)
        .collect()
}

/// A packet as Linux igb hands it to the device, plus its context and offload bits.
pub struct Built {
    pub frame: Vec<u8>,
    pub ctx: TxContext,
    pub off: TxOffloads,
    pub l3_off: usize,
    pub l4_off: usize,
    pub hdr_len: usize,
}

/// A TSO/USO super-frame prepared the way `igb_tso` prepares it: IP length fields zeroed, IPv4
/// checksum 0xFFFF (fold of nothing), L4 checksum seeded with the length-less pseudo-header.
pub fn gso_frame(ip: Ip, l4: L4, payload: &[u8], mss: u16, flags: u8) -> Built {
    let (proto, l4h) = match l4 {
        L4::Tcp => (PROTO_TCP, tcp_header(flags)),
        L4::Udp => (PROTO_UDP, udp_header(0)),
    };
    let mut frame = match ip {
        Ip::V4 => {
            let mut f = eth_header(0x0800);
            let mut h = ipv4_header(proto, 0, IPV4_ID);
            h[10..12].copy_from_slice(&0xFFFFu16.to_be_bytes());
            f.extend_from_slice(&h);
            f
        }
        Ip::V6 => {
            let mut f = eth_header(0x86DD);
            f.extend_from_slice(&ipv6_header(proto, 0));
            f
        }
    };
    let l3_off = 14;
    let l4_off = frame.len();
    let seed = fold16(pseudo_sum(ip, proto));
    let mut l4h = l4h;
    let field = if l4 == L4::Tcp { 16 } else { 6 };
    l4h[field..field + 2].copy_from_slice(&seed.to_be_bytes());
    frame.extend_from_slice(&l4h);
    let hdr_len = frame.len();
    frame.extend_from_slice(payload);
    let ctx = TxContext {
        mac_len: 14,
        ip_len: (l4_off - l3_off) as u16,
        l4_len: l4h.len() as u8,
        mss,
        l3: if ip == Ip::V4 {
            L3Type::Ipv4
        } else {
            L3Type::Ipv6
        },
        l4: if l4 == L4::Tcp {
            L4Type::Tcp
        } else {
            L4Type::Udp
        },
        vlan: 0,
        idx: 0,
    };
    let off = TxOffloads {
        tse: true,
        ixsm: ip == Ip::V4,
        txsm: true,
        vle: false,
        paylen: payload.len() as u32,
    };
    Built {
        frame,
        ctx,
        off,
        l3_off,
        l4_off,
        hdr_len,
    }
}

/// A complete packet with `CHECKSUM_PARTIAL` semantics as `igb_tx_csum` hands it over:
/// TUCMD.IPV4 clear, IXSM clear, L4LEN/MSS 0, L4 field seeded with the pseudo-header
/// *including* the length (SCTP: field zero).
pub fn csum_frame(ip: Ip, proto: u8, payload: &[u8]) -> Built {
    let l4h = match proto {
        PROTO_TCP => tcp_header(TcpFlags::ACK | TcpFlags::PSH),
        PROTO_UDP => udp_header((8 + payload.len()) as u16),
        _ => {
            // SCTP common header: ports 2905, verification tag, checksum 0.
            vec![0x0B, 0x59, 0x0B, 0x59, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0]
        }
    };
    let l4_total = l4h.len() + payload.len();
    let mut frame = match ip {
        Ip::V4 => {
            let mut f = eth_header(0x0800);
            f.extend_from_slice(&ipv4_header(proto, (20 + l4_total) as u16, 7));
            f
        }
        Ip::V6 => {
            let mut f = eth_header(0x86DD);
            f.extend_from_slice(&ipv6_header(proto, l4_total as u16));
            f
        }
    };
    let l4_off = frame.len();
    let mut l4h = l4h;
    match proto {
        PROTO_TCP | PROTO_UDP => {
            let seed = fold16(pseudo_sum(ip, proto) + l4_total as u32);
            let field = if proto == PROTO_TCP { 16 } else { 6 };
            l4h[field..field + 2].copy_from_slice(&seed.to_be_bytes());
        }
        _ => {}
    }
    frame.extend_from_slice(&l4h);
    let hdr_len = frame.len();
    frame.extend_from_slice(payload);
    let ctx = TxContext {
        mac_len: 14,
        ip_len: (l4_off - 14) as u16,
        l4_len: 0,
        mss: 0,
        l3: L3Type::Ipv6, // igb_tx_csum never sets TUCMD.IPV4
        l4: match proto {
            PROTO_TCP => L4Type::Tcp,
            PROTO_UDP => L4Type::Udp,
            _ => L4Type::Sctp,
        },
        vlan: 0,
        idx: 0,
    };
    let off = TxOffloads {
        tse: false,
        ixsm: false,
        txsm: true,
        vle: false,
        paylen: frame.len() as u32,
    };
    Built {
        frame,
        ctx,
        off,
        l3_off: 14,
        l4_off,
        hdr_len,
    }
}

pub fn run(
    frame: &[u8],
    ctx: &TxContext,
    off: &TxOffloads,
) -> Result<(Vec<Bytes>, OffloadStats), OffloadError> {
    let mut frames = Vec::new();
    let stats = apply(frame, ctx, off, &mut |b: Bytes| frames.push(b))?;
    Ok((frames, stats))
}

// ---- verification ----------------------------------------------------------------------------

/// One output frame, parsed and verified: returns (L3 payload bytes after the L4 header, TCP
/// seq or 0, TCP flags or 0, IPv4 id or 0).
pub struct Seen {
    pub data: Vec<u8>,
    pub seq: u32,
    pub flags: u8,
    pub ident: u16,
}

/// Parses an output frame, checks every length and checksum with pnet, and returns its parts.
pub fn verify(frame: &[u8], ip: Ip, l4: L4, vlan: Option<u16>) -> Seen {
    let eth = EthernetPacket::new(frame).expect("ethernet");
    let l3_bytes: Vec<u8> = match vlan {
        Some(tci) => {
            assert_eq!(eth.get_ethertype(), EtherTypes::Vlan);
            let v = VlanPacket::new(eth.payload()).expect("vlan");
            let got = (u16::from(v.get_priority_code_point().0) << 13)
                | (u16::from(v.get_drop_eligible_indicator()) << 12)
                | v.get_vlan_identifier();
            assert_eq!(got, tci);
            v.payload().to_vec()
        }
        None => eth.payload().to_vec(),
    };
    let (l4_bytes, ident) = match ip {
        Ip::V4 => {
            let p = Ipv4Packet::new(&l3_bytes).expect("ipv4");
            assert_eq!(
                usize::from(p.get_total_length()),
                l3_bytes.len(),
                "IPv4 total length"
            );
            assert_eq!(ipv4::checksum(&p), p.get_checksum(), "IPv4 header checksum");
            (p.payload().to_vec(), p.get_identification())
        }
        Ip::V6 => {
            let p = Ipv6Packet::new(&l3_bytes).expect("ipv6");
            assert_eq!(
                usize::from(p.get_payload_length()) + 40,
                l3_bytes.len(),
                "IPv6 length"
            );
            (p.payload().to_vec(), 0)
        }
    };
    let (v4s, v4d) = (Ipv4Addr::from(V4_SRC), Ipv4Addr::from(V4_DST));
    let (v6s, v6d) = (Ipv6Addr::from(V6_SRC), Ipv6Addr::from(V6_DST));
    match l4 {
        L4::Tcp => {
            let t = TcpPacket::new(&l4_bytes).expect("tcp");
            let want = match ip {
                Ip::V4 => tcp::ipv4_checksum(&t, &v4s, &v4d),
                Ip::V6 => tcp::ipv6_checksum(&t, &v6s, &v6d),
            };
            assert_eq!(t.get_checksum(), want, "TCP checksum");
            Seen {
                data: t.payload().to_vec(),
                seq: t.get_sequence(),
                flags: t.get_flags(),
                ident,
            }
        }
        L4::Udp => {
            let u = UdpPacket::new(&l4_bytes).expect("udp");
            assert_eq!(usize::from(u.get_length()), l4_bytes.len(), "UDP length");
            let mut want = match ip {
                Ip::V4 => udp::ipv4_checksum(&u, &v4s, &v4d),
                Ip::V6 => udp::ipv6_checksum(&u, &v6s, &v6d),
            };
            if want == 0 {
                want = 0xFFFF;
            }
            assert_eq!(u.get_checksum(), want, "UDP checksum");
            Seen {
                data: u.payload().to_vec(),
                seq: 0,
                flags: 0,
                ident,
            }
        }
    }
}

/// Runs a segmentation case and checks everything a receiver would.
pub fn check_segmentation(
    ip: Ip,
    l4: L4,
    payload: &[u8],
    mss: u16,
    flags: u8,
    vlan: Option<u16>,
) -> usize {
    let mut b = gso_frame(ip, l4, payload, mss, flags);
    if let Some(tci) = vlan {
        b.ctx.vlan = tci;
        b.off.vle = true;
    }
    let (frames, stats) = run(&b.frame, &b.ctx, &b.off).expect("segmentation");
    let want = payload.len().div_ceil(usize::from(mss)).max(1);
    assert_eq!(frames.len(), want);
    assert_eq!(stats.frames as usize, want);
    assert!(stats.segmented);
    assert_eq!(stats.vlan_inserted, vlan.is_some());
    assert_eq!(stats.ip_checksum, ip == Ip::V4);
    assert_eq!(stats.l4_checksum, Some(ChecksumSource::FromScratch));
    assert_eq!(
        stats.bytes,
        frames.iter().map(|f| f.len() as u64).sum::<u64>()
    );
    let mut reassembled = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let seen = verify(f, ip, l4, vlan);
        let last = i + 1 == frames.len();
        assert!(seen.data.len() <= usize::from(mss));
        if !last {
            assert_eq!(seen.data.len(), usize::from(mss));
        }
        if l4 == L4::Tcp {
            assert_eq!(
                seen.seq,
                TCP_SEQ.wrapping_add(reassembled.len() as u32),
                "seq"
            );
            let fin_psh = flags & (TcpFlags::FIN | TcpFlags::PSH);
            assert_eq!(
                seen.flags & (TcpFlags::FIN | TcpFlags::PSH),
                if last { fin_psh } else { 0 }
            );
            assert_eq!(
                seen.flags & TcpFlags::CWR,
                if i == 0 { flags & TcpFlags::CWR } else { 0 }
            );
            let others = !(TcpFlags::FIN | TcpFlags::PSH | TcpFlags::CWR);
            assert_eq!(seen.flags & others, flags & others);
        }
        if ip == Ip::V4 {
            assert_eq!(seen.ident, IPV4_ID.wrapping_add(i as u16), "IPv4 id");
        }
        // Headers other than the rewritten fields are copied: MACs survive.
        assert_eq!(&f[0..12], &b.frame[0..12]);
        reassembled.extend_from_slice(&seen.data);
    }
    assert_eq!(reassembled, payload);
    frames.len()
}

/// A context from its fields as the descriptor words carry them (`l4`: the 2-bit L4T code),
/// each masked to its width there.
pub fn context_from_fields(
    mac_len: u8,
    ip_len: u16,
    l4_len: u8,
    mss: u16,
    l4: u32,
    ipv4: bool,
) -> TxContext {
    let tucmd = (l4 << 11) | if ipv4 { 1 << 10 } else { 0 };
    TxContext::from_words(
        u32::from(ip_len) | (u32::from(mac_len) << 9),
        tucmd,
        (u32::from(l4_len) << 8) | (u32::from(mss) << 16),
    )
}
