//! A small host stack for scenario endpoints: it answers ARP for its address and learns
//! neighbours (RFC 826), answers ICMP echo (RFC 792), counts UDP it receives for rate
//! measurement, and builds the frames the steps send.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use bytes::Bytes;
use eswitch::{MacAddr, VlanTci};
use pnet_packet::ip::IpNextHeaderProtocols;

use crate::wire::{len, ArpOp, ArpRepr, Body, Frame, IcmpEcho, Ipv4Repr, UdpRepr, DEFAULT_TTL};

/// The UDP port the traffic generator sends to (iperf's default).
pub const TRAFFIC_PORT: u16 = 5001;
/// The UDP source port of generated traffic.
const TRAFFIC_SRC_PORT: u16 = 40_000;
/// The ICMP identifier of the stack's pings.
const PING_IDENT: u16 = 0x5e4d;
/// Echo payload (Linux ping sends 56 bytes by default).
const PING_DATA_LEN: usize = 56;

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
    ip_ident: u16,
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
            ip_ident: 0,
        }
    }

    fn tag(&self) -> Option<VlanTci> {
        self.vlan.map(|vid| VlanTci::new(vid, 0))
    }

    fn ipv4(&mut self, dst: Ipv4Addr, protocol: pnet_packet::ip::IpNextHeaderProtocol) -> Ipv4Repr {
        self.ip_ident = self.ip_ident.wrapping_add(1);
        Ipv4Repr {
            src: self.ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
            dst,
            protocol,
            ttl: DEFAULT_TTL,
            ident: self.ip_ident,
        }
    }

    /// Handles one received frame; returns the frames the stack answers with.
    pub fn receive(&mut self, bytes: &[u8]) -> Vec<Bytes> {
        self.rx_frames += 1;
        let frame = match Frame::parse(bytes) {
            Ok(f) => f,
            Err(_) => {
                self.malformed += 1;
                return Vec::new();
            }
        };
        // Answer in the VLAN the question came in (a tag the switch did not strip).
        let reply_tag = frame.tag.or(self.tag());
        let for_me = frame.dst == self.mac || frame.dst.is_multicast();
        let mut out = Vec::new();
        match frame.body {
            Body::Arp(arp) => {
                let mine = self.ip.is_some_and(|ip| ip == arp.target_ip);
                match arp.op {
                    ArpOp::Request if mine && for_me => {
                        self.neighbours.insert(arp.sender_ip, arp.sender_mac);
                        let reply = ArpRepr {
                            op: ArpOp::Reply,
                            sender_mac: self.mac,
                            sender_ip: arp.target_ip,
                            target_mac: arp.sender_mac,
                            target_ip: arp.sender_ip,
                        };
                        out.push(
                            Frame {
                                dst: arp.sender_mac,
                                src: self.mac,
                                tag: reply_tag,
                                body: Body::Arp(reply),
                            }
                            .emit(),
                        );
                    }
                    ArpOp::Reply if mine && frame.dst == self.mac => {
                        self.neighbours.insert(arp.sender_ip, arp.sender_mac);
                    }
                    _ => {}
                }
            }
            Body::Icmp(ip, echo) if frame.dst == self.mac && Some(ip.dst) == self.ip => {
                if echo.reply {
                    self.echo_replies.push(echo.seq);
                } else {
                    let answer = IcmpEcho {
                        reply: true,
                        ..echo
                    };
                    let ip_out = self.ipv4(ip.src, IpNextHeaderProtocols::Icmp);
                    out.push(
                        Frame {
                            dst: frame.src,
                            src: self.mac,
                            tag: reply_tag,
                            body: Body::Icmp(ip_out, answer),
                        }
                        .emit(),
                    );
                }
            }
            Body::Udp(ip, udp)
                if frame.dst == self.mac
                    && Some(ip.dst) == self.ip
                    && udp.dst_port == TRAFFIC_PORT =>
            {
                self.udp.frames += 1;
                self.udp.wire_bits += ((bytes.len() + len::ETH_FCS) * 8) as u64;
            }
            _ => {}
        }
        out
    }

    /// A broadcast ARP request for `target`.
    pub fn arp_request(&self, target: Ipv4Addr) -> Bytes {
        Frame {
            dst: MacAddr::BROADCAST,
            src: self.mac,
            tag: self.tag(),
            body: Body::Arp(ArpRepr {
                op: ArpOp::Request,
                sender_mac: self.mac,
                sender_ip: self.ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
                target_mac: MacAddr::ZERO,
                target_ip: target,
            }),
        }
        .emit()
    }

    /// An ICMP echo request to a resolved neighbour.
    pub fn echo_request(&mut self, dst_mac: MacAddr, target: Ipv4Addr, seq: u16) -> Bytes {
        let ip = self.ipv4(target, IpNextHeaderProtocols::Icmp);
        Frame {
            dst: dst_mac,
            src: self.mac,
            tag: self.tag(),
            body: Body::Icmp(
                ip,
                IcmpEcho {
                    reply: false,
                    ident: PING_IDENT,
                    seq,
                    data: (0..PING_DATA_LEN).map(|i| i as u8).collect(),
                },
            ),
        }
        .emit()
    }

    /// A UDP datagram to the traffic port whose frame is `frame_len` bytes (without FCS), or
    /// as small as the headers allow.
    pub fn udp_datagram(&mut self, dst_mac: MacAddr, target: Ipv4Addr, frame_len: usize) -> Bytes {
        let tag_len = self
            .vlan
            .map_or(0, |_| eswitch::wire::ethernet::VLAN_TAG_LEN);
        let headers = len::ETH_HEADER + tag_len + len::IPV4_HEADER + len::UDP_HEADER;
        let payload = frame_len.saturating_sub(headers);
        let ip = self.ipv4(target, IpNextHeaderProtocols::Udp);
        Frame {
            dst: dst_mac,
            src: self.mac,
            tag: self.tag(),
            body: Body::Udp(
                ip,
                UdpRepr {
                    src_port: TRAFFIC_SRC_PORT,
                    dst_port: TRAFFIC_PORT,
                    payload: vec![0; payload],
                },
            ),
        }
        .emit()
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

    #[test]
    fn garbage_is_counted_not_fatal() {
        let (_, mut b) = pair();
        assert!(b.receive(&[0xff; 5]).is_empty());
        assert_eq!(b.malformed, 1);
    }
}
