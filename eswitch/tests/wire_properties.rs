//! Property tests of `eswitch::wire`: no input makes a view or a parser panic, every `Repr`
//! survives emit → parse, and the checksum module agrees with `pnet_packet`'s checksum
//! functions and with a plain 16-bit-word reference.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use eswitch::wire::{
    self, arp, checksum, ArpPacket, ArpRepr, EtherType, EtherTypes, EthernetFrame, EthernetRepr,
    Icmpv4Message, Icmpv4Packet, Icmpv4Repr, IpNextHeaderProtocol, Ipv4Packet, Ipv4Repr,
    Ipv6FragmentHeader, Ipv6Packet, Ipv6Repr, MacAddr, SctpPacket, SctpRepr, TcpFlags, TcpPacket,
    TcpRepr, UdpPacket, UdpRepr, VlanTag, VlanTags, VlanTci,
};
use pnet_packet::icmp::{self as pnet_icmp, IcmpPacket};
use pnet_packet::ipv4::{self as pnet_ipv4, Ipv4Packet as PnetIpv4};
use pnet_packet::tcp::{self as pnet_tcp, TcpPacket as PnetTcp};
use pnet_packet::udp::{self as pnet_udp, UdpPacket as PnetUdp};
use proptest::prelude::*;

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn mac() -> impl Strategy<Value = MacAddr> {
    any::<[u8; 6]>().prop_map(MacAddr)
}

fn ipv4() -> impl Strategy<Value = Ipv4Addr> {
    any::<[u8; 4]>().prop_map(Ipv4Addr::from)
}

fn ipv6() -> impl Strategy<Value = Ipv6Addr> {
    any::<[u8; 16]>().prop_map(Ipv6Addr::from)
}

/// A source/destination pair of one family.
fn ip_pair() -> impl Strategy<Value = (IpAddr, IpAddr)> {
    prop_oneof![
        (ipv4(), ipv4()).prop_map(|(s, d)| (IpAddr::V4(s), IpAddr::V4(d))),
        (ipv6(), ipv6()).prop_map(|(s, d)| (IpAddr::V6(s), IpAddr::V6(d))),
    ]
}

// ---------------------------------------------------------------------------------------------
// Every view and every parser is total.

/// Reads every accessor of every view that accepts `data`, and runs every parser on it.
fn read_everything(data: &[u8], src: &IpAddr, dst: &IpAddr) {
    // The Ethernet view is total even unchecked.
    let eth = EthernetFrame::new_unchecked(data);
    let _ = (eth.dst_addr(), eth.src_addr(), eth.tags(), eth.tag_count());
    let _ = (
        eth.outer_tag(),
        eth.inner_tag(),
        eth.ethertype(),
        eth.payload(),
    );
    let _ = (
        eth.header_len(),
        eth.strip_tag(),
        eth.insert_tag(VlanTag::dot1q(VlanTci(1))),
    );
    let _ = EthernetRepr::parse(&eth);

    if let Ok(p) = ArpPacket::new_checked(data) {
        let _ = (p.hardware_type(), p.protocol_type(), p.operation());
        let _ = (p.sender_hardware_addr(), p.sender_protocol_addr());
        let _ = (p.target_hardware_addr(), p.target_protocol_addr());
    }
    let _ = ArpRepr::parse(&ArpPacket::new_unchecked(data));

    if let Ok(p) = Ipv4Packet::new_checked(data) {
        let _ = (
            p.version(),
            p.header_len(),
            p.dscp(),
            p.ecn(),
            p.total_len(),
            p.ident(),
        );
        let _ = (
            p.dont_frag(),
            p.more_frags(),
            p.frag_offset(),
            p.is_fragment(),
            p.ttl(),
        );
        let _ = (p.next_header(), p.checksum(), p.src_addr(), p.dst_addr());
        let _ = (p.options(), p.header(), p.payload(), p.verify_checksum());
        let _ = p.pseudo_addrs_sum();
    }
    let _ = Ipv4Repr::parse(&Ipv4Packet::new_unchecked(data));

    let v6 = Ipv6Packet::new_unchecked(data);
    let _ = v6.upper_layer();
    let _ = v6.ext_headers().count();
    if let Ok(p) = Ipv6Packet::new_checked(data) {
        let _ = (
            p.version(),
            p.traffic_class(),
            p.flow_label(),
            p.payload_len(),
        );
        let _ = (
            p.next_header(),
            p.hop_limit(),
            p.src_addr(),
            p.dst_addr(),
            p.payload(),
        );
        let _ = p.pseudo_addrs_sum();
    }
    let _ = Ipv6Repr::parse(&v6);
    if let Ok(f) = Ipv6FragmentHeader::new_checked(data) {
        let _ = (f.next_header(), f.frag_offset(), f.more_frags(), f.ident());
    }

    if let Ok(p) = TcpPacket::new_checked(data) {
        let _ = (
            p.src_port(),
            p.dst_port(),
            p.seq_number(),
            p.ack_number(),
            p.header_len(),
        );
        let _ = (p.flags(), p.window_len(), p.checksum(), p.urgent_at());
        let _ = (p.options(), p.payload(), p.verify_checksum(src, dst));
    }
    let _ = TcpRepr::parse(&TcpPacket::new_unchecked(data), src, dst);

    if let Ok(p) = UdpPacket::new_checked(data) {
        let _ = (
            p.src_port(),
            p.dst_port(),
            p.len(),
            p.checksum(),
            p.payload(),
        );
        let _ = p.verify_checksum(src, dst);
    }
    let _ = UdpRepr::parse(&UdpPacket::new_unchecked(data), src, dst);

    if let Ok(p) = SctpPacket::new_checked(data) {
        let _ = (
            p.src_port(),
            p.dst_port(),
            p.verification_tag(),
            p.checksum(),
        );
        let _ = (p.payload(), p.verify_checksum());
    }
    let _ = SctpRepr::parse(&SctpPacket::new_unchecked(data));

    if let Ok(p) = Icmpv4Packet::new_checked(data) {
        let _ = (p.msg_type(), p.msg_code(), p.checksum(), p.rest_of_header());
        let _ = (
            p.echo_ident(),
            p.echo_seq_no(),
            p.data(),
            p.verify_checksum(),
        );
    }
    let _ = Icmpv4Repr::parse(&Icmpv4Packet::new_unchecked(data));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in bytes(128), (src, dst) in ip_pair()) {
        read_everything(&data, &src, &dst);
    }

    /// Arbitrary bytes behind plausible first bytes, so that the parsers get past their
    /// version and length checks and into the variable parts.
    #[test]
    fn plausible_headers_never_panic(
        first in prop::sample::select(vec![0x45u8, 0x46, 0x4f, 0x60, 0x50, 0xf0, 0x00, 0x08]),
        mut data in bytes(128),
        (src, dst) in ip_pair(),
    ) {
        data.insert(0, first);
        read_everything(&data, &src, &dst);
        // As an IPv6 packet whose next header is an extension header, the walker runs.
        if data.len() > 6 {
            for next in [0u8, 43, 44, 51, 60] {
                data[6] = next;
                let _ = Ipv6Packet::new_unchecked(&data[..]).upper_layer();
            }
        }
    }

    /// Setters write within the buffer of a checked view, whatever the values.
    #[test]
    fn setters_never_panic_on_checked_views(mut data in bytes(96), v in any::<u16>(), w in any::<u32>()) {
        if let Ok(mut p) = Ipv4Packet::new_checked(&mut data[..]) {
            p.set_total_len(v);
            p.set_ident(v);
            p.set_frag_offset(v);
            p.set_header_len(usize::from(v));
            let _ = (p.payload_mut().len(), p.options_mut().len(), p.payload().len());
            p.fill_checksum();
        }
        if let Ok(mut p) = TcpPacket::new_checked(&mut data[..]) {
            p.set_seq_number(w);
            p.set_header_len(usize::from(v));
            let _ = (p.payload_mut().len(), p.options_mut().len(), p.options().len());
        }
        if let Ok(mut p) = UdpPacket::new_checked(&mut data[..]) {
            p.set_len(v);
            let _ = p.payload_mut().len();
            p.fill_checksum(&IpAddr::V4(Ipv4Addr::LOCALHOST), &IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        if let Ok(mut p) = Ipv6Packet::new_checked(&mut data[..]) {
            p.set_payload_len(v);
            p.set_flow_label(w);
            let _ = p.payload_mut().len();
        }
        let mut f = EthernetFrame::new_unchecked(&mut data[..]);
        f.set_ethertype(EtherType(v));
        f.set_tag_tci(0, VlanTci(v));
        let _ = (f.payload_mut().len(), f.tags());
    }
}

// ---------------------------------------------------------------------------------------------
// parse(emit(repr)) == repr, for every protocol.

fn vlan_tag() -> impl Strategy<Value = VlanTag> {
    (any::<bool>(), any::<u16>()).prop_map(|(s_tag, tci)| {
        if s_tag {
            VlanTag::dot1ad(VlanTci(tci))
        } else {
            VlanTag::dot1q(VlanTci(tci))
        }
    })
}

fn ethernet_repr() -> impl Strategy<Value = EthernetRepr> {
    let tags = prop_oneof![
        Just(VlanTags::NONE),
        vlan_tag().prop_map(VlanTags::one),
        (vlan_tag(), vlan_tag()).prop_map(|(o, i)| VlanTags::two(o, i)),
    ];
    (mac(), mac(), tags, any::<u16>()).prop_map(|(dst, src, tags, raw)| {
        // Behind fewer than two tags a TPID would read back as one more tag.
        let ethertype = EtherType(raw);
        let ethertype = if tags.len() < 2 && wire::ethernet::is_tpid(ethertype) {
            EtherTypes::Ipv4
        } else {
            ethertype
        };
        EthernetRepr {
            dst,
            src,
            tags,
            ethertype,
        }
    })
}

fn arp_repr() -> impl Strategy<Value = ArpRepr> {
    (any::<u16>(), mac(), ipv4(), mac(), ipv4()).prop_map(|(op, sm, si, tm, ti)| ArpRepr {
        operation: arp::Operation::from(op),
        sender_mac: sm,
        sender_ip: si,
        target_mac: tm,
        target_ip: ti,
    })
}

fn ipv4_repr() -> impl Strategy<Value = Ipv4Repr> {
    (
        (
            ipv4(),
            ipv4(),
            any::<u8>(),
            0usize..1480,
            any::<u8>(),
            any::<u16>(),
        ),
        (any::<bool>(), any::<bool>(), 0u16..8192, 0u8..64, 0u8..4),
    )
        .prop_map(
            |((src, dst, proto, payload_len, ttl, ident), (df, mf, frag, dscp, ecn))| Ipv4Repr {
                src_addr: src,
                dst_addr: dst,
                next_header: IpNextHeaderProtocol(proto),
                payload_len,
                ttl,
                ident,
                dont_frag: df,
                more_frags: mf,
                frag_offset: frag * 8,
                dscp,
                ecn,
            },
        )
}

fn ipv6_repr() -> impl Strategy<Value = Ipv6Repr> {
    (
        ipv6(),
        ipv6(),
        any::<u8>(),
        0usize..1460,
        any::<u8>(),
        any::<u8>(),
        0u32..(1 << 20),
    )
        .prop_map(|(src, dst, next, payload_len, hops, tc, flow)| Ipv6Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpNextHeaderProtocol(next),
            payload_len,
            hop_limit: hops,
            traffic_class: tc,
            flow_label: flow,
        })
}

/// TCP options: whole 32-bit words, at most 40 bytes.
fn tcp_options() -> impl Strategy<Value = Vec<u8>> {
    (0usize..=10).prop_flat_map(|words| prop::collection::vec(any::<u8>(), words * 4))
}

proptest! {
    #[test]
    fn ethernet_round_trips(repr in ethernet_repr(), payload in bytes(64)) {
        let mut buf = vec![0u8; repr.buffer_len() + payload.len()];
        let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
        repr.emit(&mut frame);
        frame.payload_mut().copy_from_slice(&payload);
        let frame = EthernetFrame::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(EthernetRepr::parse(&frame), Ok(repr));
        prop_assert_eq!(frame.header_len(), repr.header_len());
        prop_assert_eq!(frame.payload(), &payload[..]);
    }

    #[test]
    fn insert_then_strip_gives_the_frame_back(repr in ethernet_repr(), tag in vlan_tag(), payload in bytes(64)) {
        prop_assume!(repr.tags.len() < 2);
        let mut buf = vec![0u8; repr.buffer_len() + payload.len()];
        repr.emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
        buf[repr.header_len()..].copy_from_slice(&payload);
        let tagged = EthernetFrame::new_unchecked(&buf[..]).insert_tag(tag);
        let view = EthernetFrame::new_checked(&tagged[..]).unwrap();
        prop_assert_eq!(view.outer_tag(), Some(tag));
        prop_assert_eq!(view.tag_count(), repr.tags.len() + 1);
        prop_assert_eq!(&view.strip_tag()[..], &buf[..]);
    }

    #[test]
    fn arp_round_trips(repr in arp_repr()) {
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut ArpPacket::new_unchecked(&mut buf[..]));
        prop_assert_eq!(ArpRepr::parse(&ArpPacket::new_checked(&buf[..]).unwrap()), Ok(repr));
    }

    #[test]
    fn ipv4_round_trips(repr in ipv4_repr(), padding in 0usize..8) {
        let mut buf = vec![0u8; repr.buffer_len() + padding];
        repr.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]));
        let packet = Ipv4Packet::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(Ipv4Repr::parse(&packet), Ok(repr));
        prop_assert_eq!(packet.payload().len(), repr.payload_len);
    }

    #[test]
    fn ipv6_round_trips(repr in ipv6_repr()) {
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Ipv6Packet::new_unchecked(&mut buf[..]));
        prop_assert_eq!(Ipv6Repr::parse(&Ipv6Packet::new_checked(&buf[..]).unwrap()), Ok(repr));
    }

    #[test]
    fn tcp_round_trips(
        (src_port, dst_port, seq, ack, flags, window, urgent) in
            (any::<u16>(), any::<u16>(), any::<u32>(), any::<u32>(), any::<u8>(), any::<u16>(), any::<u16>()),
        options in tcp_options(),
        payload in bytes(64),
        (src, dst) in ip_pair(),
    ) {
        let repr = TcpRepr {
            src_port,
            dst_port,
            seq_number: seq,
            ack_number: ack,
            flags: TcpFlags(flags),
            window_len: window,
            urgent_at: urgent,
            options: &options,
            payload: &payload,
        };
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut TcpPacket::new_unchecked(&mut buf[..]), &src, &dst);
        prop_assert_eq!(TcpRepr::parse(&TcpPacket::new_checked(&buf[..]).unwrap(), &src, &dst), Ok(repr));
    }

    #[test]
    fn udp_round_trips(
        (src_port, dst_port) in (any::<u16>(), any::<u16>()),
        payload in bytes(64),
        (src, dst) in ip_pair(),
        padding in 0usize..8,
    ) {
        let repr = UdpRepr { src_port, dst_port, payload: &payload };
        let mut buf = vec![0u8; repr.buffer_len() + padding];
        repr.emit(&mut UdpPacket::new_unchecked(&mut buf[..]), &src, &dst);
        let packet = UdpPacket::new_checked(&buf[..]).unwrap();
        prop_assert_ne!(packet.checksum(), 0, "0 means no checksum: never sent");
        prop_assert_eq!(UdpRepr::parse(&packet, &src, &dst), Ok(repr));
    }

    #[test]
    fn sctp_round_trips(src_port in any::<u16>(), dst_port in any::<u16>(), tag in any::<u32>(), chunks in bytes(64)) {
        let repr = SctpRepr { src_port, dst_port, verification_tag: tag, chunks: &chunks };
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut SctpPacket::new_unchecked(&mut buf[..]));
        prop_assert_eq!(SctpRepr::parse(&SctpPacket::new_checked(&buf[..]).unwrap()), Ok(repr));
    }

    #[test]
    fn icmpv4_round_trips(
        data in bytes(64),
        kind in 0u8..3,
        (msg, code, rest) in (any::<u8>(), any::<u8>(), any::<u32>()),
        (ident, seq_no) in (any::<u16>(), any::<u16>()),
    ) {
        let repr = match kind {
            0 => Icmpv4Repr::EchoRequest { ident, seq_no, data: &data },
            1 => Icmpv4Repr::EchoReply { ident, seq_no, data: &data },
            _ => {
                let message = Icmpv4Message::from(msg);
                let echo = matches!(message, Icmpv4Message::EchoRequest | Icmpv4Message::EchoReply);
                // An echo with code 0 parses as the echo variant, not as `Other`.
                let code = if echo && code == 0 { 1 } else { code };
                Icmpv4Repr::Other { message, code, rest_of_header: rest, data: &data }
            }
        };
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Icmpv4Packet::new_unchecked(&mut buf[..]));
        prop_assert_eq!(Icmpv4Repr::parse(&Icmpv4Packet::new_checked(&buf[..]).unwrap()), Ok(repr));
    }
}

// ---------------------------------------------------------------------------------------------
// The checksum module against pnet_packet and a plain reference.

/// RFC 1071 as written: 16-bit big-endian words, an odd byte padded, end-around carry.
fn reference_sum16(data: &[u8]) -> u16 {
    let mut acc: u32 = 0;
    for pair in data.chunks(2) {
        let word = u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
        acc += u32::from(word);
        acc = (acc & 0xFFFF) + (acc >> 16);
    }
    acc as u16
}

proptest! {
    #[test]
    fn data_matches_the_16_bit_reference(data in bytes(2048)) {
        prop_assert_eq!(checksum::data(&data), reference_sum16(&data));
    }

    #[test]
    fn sum_and_fold_agree_with_data(data in bytes(2048), split in any::<prop::sample::Index>(), initial in 0u64..(1 << 48)) {
        prop_assert_eq!(checksum::fold(checksum::sum(&data, 0)), checksum::data(&data));
        // Continuing a sum from any 16-bit-aligned split point, with any carry-in.
        let at = split.index(data.len() + 1) & !1;
        let (head, tail) = data.split_at(at);
        let chained = checksum::fold(checksum::sum(tail, checksum::sum(head, initial)));
        let combined = checksum::combine(&[checksum::fold(initial), checksum::data(&data)]);
        prop_assert_eq!(chained, combined);
    }

    #[test]
    fn crc32c_matches_a_bitwise_reference(data in bytes(256), split in any::<prop::sample::Index>()) {
        let mut crc = !0u32;
        for &b in &data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = (crc >> 1) ^ (0x82F6_3B78 & (crc & 1).wrapping_neg());
            }
        }
        prop_assert_eq!(checksum::crc32c(&data), !crc);
        let (a, b) = data.split_at(split.index(data.len() + 1));
        prop_assert_eq!(checksum::crc32c_parts(&[a, b]), !crc);
    }

    #[test]
    fn ipv4_header_checksum_matches_pnet(ihl in 5u8..16, mut header in prop::collection::vec(any::<u8>(), 60)) {
        header[0] = 0x40 | ihl;
        header.truncate(usize::from(ihl) * 4);
        let expected = pnet_ipv4::checksum(&PnetIpv4::new(&header).unwrap());
        let mut packet = Ipv4Packet::new_checked(&mut header[..]).unwrap();
        packet.fill_checksum();
        prop_assert_eq!(packet.checksum(), expected);
        prop_assert!(packet.verify_checksum());
    }

    #[test]
    fn tcp_checksum_matches_pnet(mut segment in prop::collection::vec(any::<u8>(), 20..200), (src, dst) in ip_pair()) {
        segment[12] = 0x50; // data offset 5
        let expected = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => pnet_tcp::ipv4_checksum(&PnetTcp::new(&segment).unwrap(), &s, &d),
            (IpAddr::V6(s), IpAddr::V6(d)) => pnet_tcp::ipv6_checksum(&PnetTcp::new(&segment).unwrap(), &s, &d),
            _ => unreachable!("ip_pair draws one family"),
        };
        let mut packet = TcpPacket::new_checked(&mut segment[..]).unwrap();
        packet.fill_checksum(&src, &dst);
        prop_assert_eq!(packet.checksum(), expected);
        prop_assert!(packet.verify_checksum(&src, &dst));
    }

    #[test]
    fn udp_checksum_matches_pnet(mut datagram in prop::collection::vec(any::<u8>(), 8..200), (src, dst) in ip_pair()) {
        let len = datagram.len() as u16;
        datagram[4..6].copy_from_slice(&len.to_be_bytes());
        let expected = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => pnet_udp::ipv4_checksum(&PnetUdp::new(&datagram).unwrap(), &s, &d),
            (IpAddr::V6(s), IpAddr::V6(d)) => pnet_udp::ipv6_checksum(&PnetUdp::new(&datagram).unwrap(), &s, &d),
            _ => unreachable!("ip_pair draws one family"),
        };
        let mut packet = UdpPacket::new_checked(&mut datagram[..]).unwrap();
        packet.fill_checksum(&src, &dst);
        // RFC 768: a computed 0 is sent as all ones; pnet leaves that to the caller.
        prop_assert_eq!(packet.checksum(), if expected == 0 { 0xFFFF } else { expected });
        prop_assert!(packet.verify_checksum(&src, &dst));
    }

    #[test]
    fn icmpv4_checksum_matches_pnet(mut message in prop::collection::vec(any::<u8>(), 8..200)) {
        let expected = pnet_icmp::checksum(&IcmpPacket::new(&message).unwrap());
        let mut packet = Icmpv4Packet::new_checked(&mut message[..]).unwrap();
        packet.fill_checksum();
        prop_assert_eq!(packet.checksum(), expected);
        prop_assert!(packet.verify_checksum());
    }

    #[test]
    fn pseudo_headers_match_pnet_on_empty_payloads((src, dst) in ip_pair(), proto in any::<u8>()) {
        // pnet's UDP checksum of a bare header with zero fields is !(pseudo + length word).
        let header = [0u8, 0, 0, 0, 0, 8, 0, 0];
        let udp = PnetUdp::new(&header).unwrap();
        let proto = IpNextHeaderProtocol(proto);
        let (ours, theirs) = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => (
                checksum::pseudo_header_v4(&s, &d, wire::IpNextHeaderProtocols::Udp, 8),
                pnet_udp::ipv4_checksum(&udp, &s, &d),
            ),
            (IpAddr::V6(s), IpAddr::V6(d)) => (
                checksum::pseudo_header_v6(&s, &d, wire::IpNextHeaderProtocols::Udp, 8),
                pnet_udp::ipv6_checksum(&udp, &s, &d),
            ),
            _ => unreachable!("ip_pair draws one family"),
        };
        prop_assert_eq!(!checksum::combine(&[ours, checksum::data(&header)]), theirs);
        // The family-generic form is the same sum.
        prop_assert_eq!(
            checksum::pseudo_header(&src, &dst, proto, 8),
            match (src, dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => checksum::pseudo_header_v4(&s, &d, proto, 8),
                (IpAddr::V6(s), IpAddr::V6(d)) => checksum::pseudo_header_v6(&s, &d, proto, 8),
                _ => unreachable!("ip_pair draws one family"),
            }
        );
    }
}
