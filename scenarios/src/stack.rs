//! A small host stack for scenario endpoints: it answers ARP for its address and learns
//! neighbours (RFC 826), answers ICMP echo (RFC 792), counts UDP it receives for rate
//! measurement, and builds the frames the steps send. The formats are [`eswitch::wire`]'s.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use bytes::{Bytes, BytesMut};
use eswitch::wire::ethernet::{FCS_LEN, HEADER_LEN, MIN_FRAME_LEN, VLAN_TAG_LEN};
use eswitch::wire::{
    self, ArpOperation, ArpPacket, ArpRepr, EtherTypes, EthernetFrame, EthernetRepr, Icmpv4Packet,
    Icmpv4Repr, IpNextHeaderProtocol, IpNextHeaderProtocols, Ipv4Packet, Ipv4Repr, UdpPacket,
    UdpRepr, VlanTag, VlanTags,
};
use eswitch::{MacAddr, VlanTci};

/// The UDP port the traffic generator sends to (iperf's default).
pub const TRAFFIC_PORT: u16 = 5001;
/// The UDP source port of generated traffic.
const TRAFFIC_SRC_PORT: u16 = 40_000;
/// The ICMP identifier of the stack's pings.
const PING_IDENT: u16 = 0x5e4d;
/// Echo payload (Linux ping sends 56 bytes by default).
const PING_DATA_LEN: usize = 56;
/// Default TTL of the packets the stack sends (Linux `ip_default_ttl`).
const DEFAULT_TTL: u8 = 64;

/// UDP received for the traffic generator's measurement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpMeter {
    pub frames: u64,
    /// Frame bits on the wire (frame + FCS), as a shaper counts them.
    pub wire_bits: u64,
}

#[derive(Clone, Debug)]
pub struct HostStack {
    pub mac: MacAddr,
    pub ip: Option<Ipv4Addr>,
    /// VID the stack tags what it sends with (a VGT VLAN interface).
    pub vlan: Option<u16>,
    pub neighbours: BTreeMap<Ipv4Addr, MacAddr>,
    /// Sequence numbers of echo replies received.
    pub echo_replies: Vec<u16>,
    pub udp: UdpMeter,
    /// Frames handed to the stack that it could not parse (counted, never a panic).
    pub malformed: u64,
    pub rx_frames: u64,
    /// Frames the endpoint sent (its own and its answers).
    pub tx_frames: u64,
    ip_ident: u16,
}

/// What a frame the stack sends carries after its Ethernet header.
enum Body<'a> {
    Arp(ArpRepr),
    Icmp(Ipv4Repr, Icmpv4Repr<'a>),
    Udp(Ipv4Repr, UdpRepr<'a>),
}

impl Body<'_> {
    fn ethertype(&self) -> wire::EtherType {
        match self {
            Body::Arp(_) => EtherTypes::Arp,
            Body::Icmp(..) | Body::Udp(..) => EtherTypes::Ipv4,
        }
    }

    fn len(&self) -> usize {
        match self {
            Body::Arp(arp) => arp.buffer_len(),
            Body::Icmp(ip, _) | Body::Udp(ip, _) => ip.buffer_len(),
        }
    }
}

/// The frame `src` sends to `dst` in VLAN `tag` carrying `body`, padded to the 60-byte
/// minimum as a NIC pads it (the IPv4 total length keeps the padding out of the packet).
fn emit(dst: MacAddr, src: MacAddr, tag: Option<VlanTci>, body: &Body<'_>) -> Bytes {
    let eth = EthernetRepr {
        dst,
        src,
        tags: VlanTags::from_outer(tag.map(VlanTag::dot1q)),
        ethertype: body.ethertype(),
    };
    let mut buf = BytesMut::zeroed((eth.buffer_len() + body.len()).max(MIN_FRAME_LEN));
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut frame);
    let payload = frame.payload_mut();
    match body {
        Body::Arp(arp) => arp.emit(&mut ArpPacket::new_unchecked(payload)),
        Body::Icmp(ip, icmp) => {
            let mut packet = Ipv4Packet::new_unchecked(payload);
            ip.emit(&mut packet);
            icmp.emit(&mut Icmpv4Packet::new_unchecked(packet.payload_mut()));
        }
        Body::Udp(ip, udp) => {
            let mut packet = Ipv4Packet::new_unchecked(payload);
            ip.emit(&mut packet);
            let (src, dst) = (IpAddr::V4(ip.src_addr), IpAddr::V4(ip.dst_addr));
            udp.emit(
                &mut UdpPacket::new_unchecked(packet.payload_mut()),
                &src,
                &dst,
            );
        }
    }
    buf.freeze()
}

impl HostStack {
    pub fn new(mac: MacAddr, ip: Option<Ipv4Addr>, vlan: Option<u16>) -> HostStack {
        HostStack {
            mac,
            ip,
            vlan,
            neighbours: BTreeMap::new(),
            echo_replies: Vec::new(),
            udp: UdpMeter::default(),
            malformed: 0,
            rx_frames: 0,
            tx_frames: 0,
            ip_ident: 0,
        }
    }

    fn tag(&self) -> Option<VlanTci> {
        self.vlan.map(|vid| VlanTci::new(vid, 0))
    }

    /// The IPv4 header of the next packet to `dst`, with a fresh identification.
    fn ipv4(
        &mut self,
        dst: Ipv4Addr,
        next_header: IpNextHeaderProtocol,
        payload_len: usize,
    ) -> Ipv4Repr {
        self.ip_ident = self.ip_ident.wrapping_add(1);
        Ipv4Repr {
            src_addr: self.ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
            dst_addr: dst,
            next_header,
            payload_len,
            ttl: DEFAULT_TTL,
            ident: self.ip_ident,
            // As Linux sets it on PMTU-discovering sockets.
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
            dscp: 0,
            ecn: 0,
        }
    }

    /// Handles one received frame; returns the frames the stack answers with.
    pub fn receive(&mut self, bytes: &[u8]) -> Vec<Bytes> {
        self.rx_frames += 1;
        match self.answer(bytes) {
            Ok(reply) => reply.into_iter().collect(),
            Err(_) => {
                self.malformed += 1;
                Vec::new()
            }
        }
    }

    fn answer(&mut self, bytes: &[u8]) -> wire::Result<Option<Bytes>> {
        let frame = EthernetFrame::new_checked(bytes)?;
        let eth = EthernetRepr::parse(&frame)?;
        // An interface of this stack is untagged or in one 802.1Q VLAN: frames with other
        // tags are not for it.
        if eth.tags.len() > 1 || (!eth.tags.is_empty() && eth.dot1q_tci().is_none()) {
            return Ok(None);
        }
        match eth.ethertype {
            EtherTypes::Arp => self.answer_arp(&eth, frame.payload()),
            EtherTypes::Ipv4 => self.answer_ipv4(&eth, frame.payload(), bytes.len()),
            _ => Ok(None),
        }
    }

    /// Answer in the VLAN the question came in (a tag the switch did not strip).
    fn reply_tag(&self, eth: &EthernetRepr) -> Option<VlanTci> {
        eth.dot1q_tci().or(self.tag())
    }

    fn answer_arp(&mut self, eth: &EthernetRepr, payload: &[u8]) -> wire::Result<Option<Bytes>> {
        let arp = ArpRepr::parse(&ArpPacket::new_checked(payload)?)?;
        let mine = self.ip.is_some_and(|ip| ip == arp.target_ip);
        let for_me = eth.dst == self.mac || eth.dst.is_multicast();
        match arp.operation {
            ArpOperation::Request if mine && for_me => {
                self.neighbours.insert(arp.sender_ip, arp.sender_mac);
                let reply = ArpRepr {
                    operation: ArpOperation::Reply,
                    sender_mac: self.mac,
                    sender_ip: arp.target_ip,
                    target_mac: arp.sender_mac,
                    target_ip: arp.sender_ip,
                };
                let tag = self.reply_tag(eth);
                Ok(Some(emit(arp.sender_mac, self.mac, tag, &Body::Arp(reply))))
            }
            ArpOperation::Reply if mine && eth.dst == self.mac => {
                self.neighbours.insert(arp.sender_ip, arp.sender_mac);
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    fn answer_ipv4(
        &mut self,
        eth: &EthernetRepr,
        payload: &[u8],
        frame_len: usize,
    ) -> wire::Result<Option<Bytes>> {
        let packet = Ipv4Packet::new_checked(payload)?;
        let ip = Ipv4Repr::parse(&packet)?;
        let to_me = eth.dst == self.mac && Some(ip.dst_addr) == self.ip;
        match ip.next_header {
            IpNextHeaderProtocols::Icmp => {
                match Icmpv4Repr::parse(&Icmpv4Packet::new_checked(packet.payload())?)? {
                    Icmpv4Repr::EchoReply { seq_no, .. } if to_me => {
                        self.echo_replies.push(seq_no);
                        Ok(None)
                    }
                    Icmpv4Repr::EchoRequest {
                        ident,
                        seq_no,
                        data,
                    } if to_me => {
                        let reply = Icmpv4Repr::EchoReply {
                            ident,
                            seq_no,
                            data,
                        };
                        let len = reply.buffer_len();
                        let ip_out = self.ipv4(ip.src_addr, IpNextHeaderProtocols::Icmp, len);
                        let tag = self.reply_tag(eth);
                        Ok(Some(emit(
                            eth.src,
                            self.mac,
                            tag,
                            &Body::Icmp(ip_out, reply),
                        )))
                    }
                    _ => Ok(None),
                }
            }
            IpNextHeaderProtocols::Udp => {
                let (src, dst) = (IpAddr::V4(ip.src_addr), IpAddr::V4(ip.dst_addr));
                let udp = UdpRepr::parse(&UdpPacket::new_checked(packet.payload())?, &src, &dst)?;
                if to_me && udp.dst_port == TRAFFIC_PORT {
                    self.udp.frames += 1;
                    self.udp.wire_bits += ((frame_len + FCS_LEN) * 8) as u64;
                }
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// A broadcast ARP request for `target`.
    pub fn arp_request(&self, target: Ipv4Addr) -> Bytes {
        let request = ArpRepr {
            operation: ArpOperation::Request,
            sender_mac: self.mac,
            sender_ip: self.ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
            target_mac: MacAddr::ZERO,
            target_ip: target,
        };
        emit(
            MacAddr::BROADCAST,
            self.mac,
            self.tag(),
            &Body::Arp(request),
        )
    }

    /// An ICMP echo request to a resolved neighbour.
    pub fn echo_request(&mut self, dst_mac: MacAddr, target: Ipv4Addr, seq: u16) -> Bytes {
        let data: Vec<u8> = (0..PING_DATA_LEN).map(|i| i as u8).collect();
        let echo = Icmpv4Repr::EchoRequest {
            ident: PING_IDENT,
            seq_no: seq,
            data: &data,
        };
        let ip = self.ipv4(target, IpNextHeaderProtocols::Icmp, echo.buffer_len());
        emit(dst_mac, self.mac, self.tag(), &Body::Icmp(ip, echo))
    }

    /// A UDP datagram to the traffic port whose frame is `frame_len` bytes (without FCS), or
    /// as small as the headers allow.
    pub fn udp_datagram(&mut self, dst_mac: MacAddr, target: Ipv4Addr, frame_len: usize) -> Bytes {
        let tag_len = self.vlan.map_or(0, |_| VLAN_TAG_LEN);
        let headers = HEADER_LEN + tag_len + wire::ipv4::HEADER_LEN + wire::udp::HEADER_LEN;
        let payload = vec![0; frame_len.saturating_sub(headers)];
        let udp = UdpRepr {
            src_port: TRAFFIC_SRC_PORT,
            dst_port: TRAFFIC_PORT,
            payload: &payload,
        };
        let ip = self.ipv4(target, IpNextHeaderProtocols::Udp, udp.buffer_len());
        emit(dst_mac, self.mac, self.tag(), &Body::Udp(ip, udp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xa]);
    const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xb]);

    fn pair() -> (HostStack, HostStack) {
        (
            HostStack::new(A, Some(Ipv4Addr::new(10, 0, 0, 1)), None),
            HostStack::new(B, Some(Ipv4Addr::new(10, 0, 0, 2)), None),
        )
    }

    #[test]
    fn arp_request_is_answered_and_both_sides_learn() {
        let (mut a, mut b) = pair();
        let req = a.arp_request(Ipv4Addr::new(10, 0, 0, 2));
        let replies = b.receive(&req);
        assert_eq!(replies.len(), 1);
        assert_eq!(b.neighbours.get(&Ipv4Addr::new(10, 0, 0, 1)), Some(&A));
        assert!(a.receive(&replies[0]).is_empty());
        assert_eq!(a.neighbours.get(&Ipv4Addr::new(10, 0, 0, 2)), Some(&B));
    }

    #[test]
    fn arp_for_someone_else_is_ignored() {
        let (a, mut b) = pair();
        assert!(b
            .receive(&a.arp_request(Ipv4Addr::new(10, 0, 0, 99)))
            .is_empty());
        assert!(b.neighbours.is_empty());
    }

    #[test]
    fn echo_request_gets_a_reply_with_the_same_sequence() {
        let (mut a, mut b) = pair();
        let req = a.echo_request(B, Ipv4Addr::new(10, 0, 0, 2), 7);
        let replies = b.receive(&req);
        assert_eq!(replies.len(), 1);
        a.receive(&replies[0]);
        assert_eq!(a.echo_replies, vec![7]);
    }

    #[test]
    fn udp_is_metered_in_wire_bits() {
        let (mut a, mut b) = pair();
        let d = a.udp_datagram(B, Ipv4Addr::new(10, 0, 0, 2), 1514);
        assert_eq!(d.len(), 1514);
        assert!(b.receive(&d).is_empty());
        assert_eq!(
            b.udp,
            UdpMeter {
                frames: 1,
                wire_bits: 1518 * 8
            }
        );
    }

    /// An ARP request from 02:00:00:00:00:0a / 10.0.0.1 for 10.0.0.2, padded to 60 bytes.
    const ARP_REQUEST: [u8; 60] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0x0a, 0x08, 0x06, // Ethernet
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // htype, ptype, hlen, plen, op
        0x02, 0, 0, 0, 0, 0x0a, 10, 0, 0, 1, // sender
        0, 0, 0, 0, 0, 0, 10, 0, 0, 2, // target
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // padding
    ];

    #[test]
    fn arp_request_is_the_literal_padded_frame() {
        let (a, _) = pair();
        assert_eq!(
            &a.arp_request(Ipv4Addr::new(10, 0, 0, 2))[..],
            &ARP_REQUEST[..]
        );
    }

    #[test]
    fn a_tagged_echo_request_is_padded_and_answered_in_its_vlan() {
        let mut a = HostStack::new(A, Some(Ipv4Addr::new(10, 0, 0, 1)), Some(10));
        let mut b = HostStack::new(B, Some(Ipv4Addr::new(10, 0, 0, 2)), None);
        let req = a.echo_request(B, Ipv4Addr::new(10, 0, 0, 2), 3);
        // Header + tag + IPv4 + ICMP echo + 56 bytes of data.
        assert_eq!(req.len(), 18 + 20 + 8 + 56);
        assert_eq!(&req[12..16], &[0x81, 0x00, 0x00, 0x0a], "802.1Q VID 10");
        assert_eq!(&req[18..20], &[0x45, 0x00], "version 4, IHL 5");
        assert_eq!(&req[18 + 6..18 + 8], &[0x40, 0x00], "DF");
        assert_eq!((req[18 + 9], req[18 + 20]), (1, 8), "ICMP echo request");
        let replies = b.receive(&req);
        assert_eq!(replies.len(), 1);
        assert_eq!(
            &replies[0][12..16],
            &[0x81, 0x00, 0x00, 0x0a],
            "answered in VLAN 10"
        );
        a.receive(&replies[0]);
        assert_eq!(a.echo_replies, vec![3]);
    }

    #[test]
    fn a_flipped_ip_header_bit_is_malformed() {
        let (mut a, mut b) = pair();
        let mut req = a.echo_request(B, Ipv4Addr::new(10, 0, 0, 2), 1).to_vec();
        req[14 + 8] ^= 1;
        assert!(b.receive(&req).is_empty());
        assert_eq!(b.malformed, 1);
    }

    #[test]
    fn every_truncation_is_counted_never_a_panic() {
        let (mut a, mut b) = pair();
        let udp = a.udp_datagram(B, Ipv4Addr::new(10, 0, 0, 2), 100);
        let ping = a.echo_request(B, Ipv4Addr::new(10, 0, 0, 2), 1);
        for bytes in [&udp[..], &ping[..], &ARP_REQUEST[..]] {
            for n in 0..bytes.len() {
                let _ = b.receive(&bytes[..n]);
            }
        }
        assert!(b.malformed > 0);
        assert_eq!(b.udp.frames, 0);
    }

    #[test]
    fn garbage_is_counted_not_fatal() {
        let (_, mut b) = pair();
        assert!(b.receive(&[0xff; 5]).is_empty());
        assert_eq!(b.malformed, 1);
    }
}
