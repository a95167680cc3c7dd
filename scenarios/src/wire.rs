//! The few packet formats the host stack speaks, as `Repr`s with `parse` / `emit` over
//! `pnet_packet` views: Ethernet II (with an optional 802.1Q tag), ARP for IPv4 over Ethernet
//! (RFC 826), IPv4 (RFC 791, no options, no fragments), ICMP echo (RFC 792) and UDP (RFC 768).
//!
//! `parse` is total: any byte string gives a `Repr` or a [`WireError`], never a panic.

use std::net::Ipv4Addr;

use bytes::Bytes;
use eswitch::wire::{Error as EthError, EthernetFrame, EthernetRepr};
use eswitch::{build_frame, MacAddr, VlanTci};
use pnet_packet::arp::{
    ArpHardwareTypes, ArpOperation, ArpOperations, ArpPacket, MutableArpPacket,
};
use pnet_packet::ethernet::{EtherType, EtherTypes};
use pnet_packet::icmp::echo_request::{EchoRequestPacket, MutableEchoRequestPacket};
use pnet_packet::icmp::{self, IcmpPacket, IcmpType, IcmpTypes};
use pnet_packet::ip::{IpNextHeaderProtocol, IpNextHeaderProtocols};
use pnet_packet::ipv4::{self, Ipv4Packet, MutableIpv4Packet};
use pnet_packet::udp::{self, MutableUdpPacket, UdpPacket};
use pnet_packet::Packet as _;
use thiserror::Error;

/// Lengths and constants of the formats (RFC 826, 791, 792, 768).
pub mod len {
    /// ARP for IPv4 over Ethernet: 8 fixed bytes + 2 × (6 + 4).
    pub const ARP: usize = 28;
    /// Hardware address length in an Ethernet ARP packet.
    pub const ARP_HLEN: u8 = 6;
    /// Protocol address length in an IPv4 ARP packet.
    pub const ARP_PLEN: u8 = 4;
    /// IPv4 header without options (IHL 5).
    pub const IPV4_HEADER: usize = 20;
    /// IHL in 32-bit words for a header without options.
    pub const IPV4_IHL: u8 = 5;
    pub const IPV4_VERSION: u8 = 4;
    /// ICMP echo header: type, code, checksum, identifier, sequence.
    pub const ICMP_ECHO_HEADER: usize = 8;
    pub const UDP_HEADER: usize = 8;
    /// Ethernet header without a tag.
    pub const ETH_HEADER: usize = eswitch::wire::ethernet::HEADER_LEN;
    /// The shortest Ethernet frame without FCS; shorter frames are padded.
    pub const ETH_MIN_FRAME: usize = 60;
    /// The frame check sequence, counted on the wire but not carried in our frames.
    pub const ETH_FCS: usize = eswitch::wire::ethernet::FCS_LEN;
}

/// Default TTL of the packets the host stack sends (Linux `ip_default_ttl`).
pub const DEFAULT_TTL: u8 = 64;
/// IPv4 flags field: Don't Fragment, as Linux sets it on PMTU-discovering sockets.
const IPV4_FLAG_DF: u8 = 0b010;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum WireError {
    #[error("shorter than an Ethernet header")]
    EthTooShort,
    #[error("truncated 802.1Q tag")]
    TruncatedTag,
    #[error("ARP packet too short or not IPv4 over Ethernet")]
    BadArp,
    #[error("IPv4 header too short, wrong version, options or bad length")]
    BadIpv4,
    #[error("IPv4 header checksum mismatch")]
    Ipv4Checksum,
    #[error("ICMP packet too short or bad checksum")]
    BadIcmp,
    #[error("UDP datagram too short or bad length")]
    BadUdp,
}

impl From<EthError> for WireError {
    fn from(e: EthError) -> Self {
        match e {
            EthError::Truncated => WireError::EthTooShort,
            _ => WireError::TruncatedTag,
        }
    }
}

/// ARP request or reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArpOp {
    Request,
    Reply,
    Unknown(u16),
}

impl ArpOp {
    fn from_pnet(op: ArpOperation) -> ArpOp {
        match op {
            ArpOperations::Request => ArpOp::Request,
            ArpOperations::Reply => ArpOp::Reply,
            other => ArpOp::Unknown(other.0),
        }
    }
    fn to_pnet(self) -> ArpOperation {
        match self {
            ArpOp::Request => ArpOperations::Request,
            ArpOp::Reply => ArpOperations::Reply,
            ArpOp::Unknown(raw) => ArpOperation(raw),
        }
    }
}

/// An ARP packet for IPv4 over Ethernet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpRepr {
    pub op: ArpOp,
    pub sender_mac: MacAddr,
    pub sender_ip: Ipv4Addr,
    pub target_mac: MacAddr,
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    pub fn parse(payload: &[u8]) -> Result<ArpRepr, WireError> {
        let arp = ArpPacket::new(payload).ok_or(WireError::BadArp)?;
        if arp.get_hardware_type() != ArpHardwareTypes::Ethernet
            || arp.get_protocol_type() != EtherTypes::Ipv4
            || arp.get_hw_addr_len() != len::ARP_HLEN
            || arp.get_proto_addr_len() != len::ARP_PLEN
        {
            return Err(WireError::BadArp);
        }
        Ok(ArpRepr {
            op: ArpOp::from_pnet(arp.get_operation()),
            sender_mac: MacAddr(arp.get_sender_hw_addr().octets()),
            sender_ip: arp.get_sender_proto_addr(),
            target_mac: MacAddr(arp.get_target_hw_addr().octets()),
            target_ip: arp.get_target_proto_addr(),
        })
    }

    pub fn emit(&self) -> [u8; len::ARP] {
        let mut buf = [0u8; len::ARP];
        if let Some(mut arp) = MutableArpPacket::new(&mut buf) {
            arp.set_hardware_type(ArpHardwareTypes::Ethernet);
            arp.set_protocol_type(EtherTypes::Ipv4);
            arp.set_hw_addr_len(len::ARP_HLEN);
            arp.set_proto_addr_len(len::ARP_PLEN);
            arp.set_operation(self.op.to_pnet());
            arp.set_sender_hw_addr(self.sender_mac.0.into());
            arp.set_sender_proto_addr(self.sender_ip);
            arp.set_target_hw_addr(self.target_mac.0.into());
            arp.set_target_proto_addr(self.target_ip);
        }
        buf
    }
}

/// An IPv4 header without options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: IpNextHeaderProtocol,
    pub ttl: u8,
    /// Identification field.
    pub ident: u16,
}

/// ICMP echo request or reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IcmpEcho {
    pub reply: bool,
    pub ident: u16,
    pub seq: u16,
    pub data: Vec<u8>,
}

impl IcmpEcho {
    fn icmp_type(&self) -> IcmpType {
        if self.reply {
            IcmpTypes::EchoReply
        } else {
            IcmpTypes::EchoRequest
        }
    }

    pub fn parse(payload: &[u8]) -> Result<Option<IcmpEcho>, WireError> {
        let generic = IcmpPacket::new(payload).ok_or(WireError::BadIcmp)?;
        if payload.len() < len::ICMP_ECHO_HEADER
            || icmp::checksum(&generic) != generic.get_checksum()
        {
            return Err(WireError::BadIcmp);
        }
        let reply = match generic.get_icmp_type() {
            IcmpTypes::EchoRequest => false,
            IcmpTypes::EchoReply => true,
            _ => return Ok(None),
        };
        // Echo request and reply share one layout (RFC 792).
        let echo = EchoRequestPacket::new(payload).ok_or(WireError::BadIcmp)?;
        Ok(Some(IcmpEcho {
            reply,
            ident: echo.get_identifier(),
            seq: echo.get_sequence_number(),
            data: echo.payload().to_vec(),
        }))
    }

    pub fn emit(&self) -> Vec<u8> {
        let mut buf = vec![0u8; len::ICMP_ECHO_HEADER + self.data.len()];
        if let Some(mut echo) = MutableEchoRequestPacket::new(&mut buf) {
            echo.set_icmp_type(self.icmp_type());
            echo.set_identifier(self.ident);
            echo.set_sequence_number(self.seq);
            echo.set_payload(&self.data);
        }
        let sum = IcmpPacket::new(&buf).map_or(0, |p| icmp::checksum(&p));
        if let Some(mut echo) = MutableEchoRequestPacket::new(&mut buf) {
            echo.set_checksum(sum);
        }
        buf
    }
}

/// A UDP datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpRepr {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: Vec<u8>,
}

impl UdpRepr {
    pub fn parse(payload: &[u8]) -> Result<UdpRepr, WireError> {
        let udp = UdpPacket::new(payload).ok_or(WireError::BadUdp)?;
        let total = usize::from(udp.get_length());
        if total < len::UDP_HEADER || total > payload.len() {
            return Err(WireError::BadUdp);
        }
        Ok(UdpRepr {
            src_port: udp.get_source(),
            dst_port: udp.get_destination(),
            payload: payload[len::UDP_HEADER..total].to_vec(),
        })
    }

    fn emit(&self, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
        let total = len::UDP_HEADER + self.payload.len();
        let mut buf = vec![0u8; total];
        if let Some(mut udp) = MutableUdpPacket::new(&mut buf) {
            udp.set_source(self.src_port);
            udp.set_destination(self.dst_port);
            udp.set_length(u16::try_from(total).unwrap_or(u16::MAX));
            udp.set_payload(&self.payload);
        }
        let sum = UdpPacket::new(&buf).map_or(0, |p| udp::ipv4_checksum(&p, &src, &dst));
        if let Some(mut udp) = MutableUdpPacket::new(&mut buf) {
            udp.set_checksum(sum);
        }
        buf
    }
}

/// What an Ethernet frame carries, as far as the host stack cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    Arp(ArpRepr),
    Icmp(Ipv4Repr, IcmpEcho),
    Udp(Ipv4Repr, UdpRepr),
    /// Another IPv4 protocol or ICMP type.
    OtherIpv4(Ipv4Repr),
    /// Any other ethertype, with the bytes after the header.
    Other(EtherType, Vec<u8>),
}

/// An Ethernet frame and what it carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub dst: MacAddr,
    pub src: MacAddr,
    pub tag: Option<VlanTci>,
    pub body: Body,
}

fn parse_ipv4(bytes: &[u8]) -> Result<(Ipv4Repr, &[u8]), WireError> {
    let ip = Ipv4Packet::new(bytes).ok_or(WireError::BadIpv4)?;
    let total = usize::from(ip.get_total_length());
    if ip.get_version() != len::IPV4_VERSION
        || ip.get_header_length() != len::IPV4_IHL
        || total < len::IPV4_HEADER
        || total > bytes.len()
    {
        return Err(WireError::BadIpv4);
    }
    if ipv4::checksum(&ip) != ip.get_checksum() {
        return Err(WireError::Ipv4Checksum);
    }
    let repr = Ipv4Repr {
        src: ip.get_source(),
        dst: ip.get_destination(),
        protocol: ip.get_next_level_protocol(),
        ttl: ip.get_ttl(),
        ident: ip.get_identification(),
    };
    Ok((repr, &bytes[len::IPV4_HEADER..total]))
}

fn emit_ipv4(ip: &Ipv4Repr, payload: &[u8]) -> Vec<u8> {
    let total = len::IPV4_HEADER + payload.len();
    let mut buf = vec![0u8; total];
    if let Some(mut p) = MutableIpv4Packet::new(&mut buf) {
        p.set_version(len::IPV4_VERSION);
        p.set_header_length(len::IPV4_IHL);
        p.set_total_length(u16::try_from(total).unwrap_or(u16::MAX));
        p.set_identification(ip.ident);
        p.set_flags(IPV4_FLAG_DF);
        p.set_ttl(ip.ttl);
        p.set_next_level_protocol(ip.protocol);
        p.set_source(ip.src);
        p.set_destination(ip.dst);
        p.set_payload(payload);
    }
    let sum = Ipv4Packet::new(&buf).map_or(0, |p| ipv4::checksum(&p));
    if let Some(mut p) = MutableIpv4Packet::new(&mut buf) {
        p.set_checksum(sum);
    }
    buf
}

impl Frame {
    pub fn parse(bytes: &[u8]) -> Result<Frame, WireError> {
        let eth = EthernetRepr::parse(&EthernetFrame::new_unchecked(bytes))?;
        let rest = &bytes[eth.header_len()..];
        let body = match eth.ethertype {
            EtherTypes::Arp => Body::Arp(ArpRepr::parse(rest)?),
            EtherTypes::Ipv4 => {
                let (ip, payload) = parse_ipv4(rest)?;
                match ip.protocol {
                    IpNextHeaderProtocols::Icmp => match IcmpEcho::parse(payload)? {
                        Some(echo) => Body::Icmp(ip, echo),
                        None => Body::OtherIpv4(ip),
                    },
                    IpNextHeaderProtocols::Udp => Body::Udp(ip, UdpRepr::parse(payload)?),
                    _ => Body::OtherIpv4(ip),
                }
            }
            other => Body::Other(other, rest.to_vec()),
        };
        Ok(Frame {
            dst: eth.dst,
            src: eth.src,
            tag: eth.dot1q_tci(),
            body,
        })
    }

    /// The frame's bytes, padded to the 60-byte minimum as a NIC pads them.
    pub fn emit(&self) -> Bytes {
        let (ethertype, payload) = match &self.body {
            Body::Arp(arp) => (EtherTypes::Arp, arp.emit().to_vec()),
            Body::Icmp(ip, echo) => (EtherTypes::Ipv4, emit_ipv4(ip, &echo.emit())),
            Body::Udp(ip, udp) => (EtherTypes::Ipv4, emit_ipv4(ip, &udp.emit(ip.src, ip.dst))),
            Body::OtherIpv4(ip) => (EtherTypes::Ipv4, emit_ipv4(ip, &[])),
            Body::Other(t, bytes) => (*t, bytes.clone()),
        };
        let header = len::ETH_HEADER
            + self
                .tag
                .map_or(0, |_| eswitch::wire::ethernet::VLAN_TAG_LEN);
        let mut padded = payload;
        let min_payload = len::ETH_MIN_FRAME.saturating_sub(header);
        if padded.len() < min_payload {
            padded.resize(min_payload, 0);
        }
        build_frame(self.dst, self.src, self.tag, ethertype, &padded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC_A: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x10]);
    const MAC_B: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x11]);

    /// An ARP request from 02:00:00:00:00:10 / 10.0.0.10 for 10.0.0.1, padded to 60 bytes.
    const ARP_REQUEST: [u8; 60] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0x10, 0x08, 0x06, // Ethernet
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // htype, ptype, hlen, plen, op
        0x02, 0, 0, 0, 0, 0x10, 10, 0, 0, 10, // sender
        0, 0, 0, 0, 0, 0, 10, 0, 0, 1, // target
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // padding
    ];

    #[test]
    fn arp_request_emits_the_literal_bytes_and_parses_back() {
        let frame = Frame {
            dst: MacAddr::BROADCAST,
            src: MAC_A,
            tag: None,
            body: Body::Arp(ArpRepr {
                op: ArpOp::Request,
                sender_mac: MAC_A,
                sender_ip: Ipv4Addr::new(10, 0, 0, 10),
                target_mac: MacAddr::ZERO,
                target_ip: Ipv4Addr::new(10, 0, 0, 1),
            }),
        };
        assert_eq!(&frame.emit()[..], &ARP_REQUEST[..]);
        assert_eq!(Frame::parse(&ARP_REQUEST).unwrap(), frame);
    }

    fn ip(protocol: IpNextHeaderProtocol) -> Ipv4Repr {
        Ipv4Repr {
            src: Ipv4Addr::new(10, 0, 0, 10),
            dst: Ipv4Addr::new(10, 0, 0, 11),
            protocol,
            ttl: DEFAULT_TTL,
            ident: 7,
        }
    }

    #[test]
    fn icmp_echo_round_trips_with_valid_checksums() {
        let echo = IcmpEcho {
            reply: false,
            ident: 0x1234,
            seq: 1,
            data: b"sriov-emu".to_vec(),
        };
        let frame = Frame {
            dst: MAC_B,
            src: MAC_A,
            tag: Some(VlanTci::new(10, 3)),
            body: Body::Icmp(ip(IpNextHeaderProtocols::Icmp), echo),
        };
        let bytes = frame.emit();
        // Header + tag + IPv4 + ICMP echo + 9 bytes of data is 55: padded to the 60-byte
        // minimum, and the IPv4 total length keeps the padding out of the echo data.
        assert_eq!(bytes.len(), 60);
        assert_eq!(&bytes[18 + 2..18 + 4], &(20u16 + 8 + 9).to_be_bytes());
        assert_eq!(&bytes[18..20], &[0x45, 0x00], "version 4, IHL 5");
        assert_eq!(bytes[18 + 9], 1, "protocol ICMP");
        assert_eq!(bytes[18 + 20], 8, "echo request");
        assert_eq!(Frame::parse(&bytes).unwrap(), frame);
        // One flipped bit in the IPv4 header is a checksum error, not a panic.
        let mut bad = bytes.to_vec();
        bad[18 + 8] ^= 1;
        assert_eq!(Frame::parse(&bad), Err(WireError::Ipv4Checksum));
    }

    #[test]
    fn udp_round_trips() {
        let udp = UdpRepr {
            src_port: 40000,
            dst_port: 5001,
            payload: vec![0xab; 100],
        };
        let frame = Frame {
            dst: MAC_B,
            src: MAC_A,
            tag: None,
            body: Body::Udp(ip(IpNextHeaderProtocols::Udp), udp),
        };
        let bytes = frame.emit();
        assert_eq!(bytes.len(), 14 + 20 + 8 + 100);
        assert_eq!(&bytes[14 + 20 + 4..14 + 20 + 6], &108u16.to_be_bytes());
        assert_eq!(Frame::parse(&bytes).unwrap(), frame);
    }

    #[test]
    fn every_truncation_is_an_error_or_a_frame_never_a_panic() {
        let udp = Frame {
            dst: MAC_B,
            src: MAC_A,
            tag: Some(VlanTci::new(5, 0)),
            body: Body::Udp(
                ip(IpNextHeaderProtocols::Udp),
                UdpRepr {
                    src_port: 1,
                    dst_port: 2,
                    payload: vec![1, 2, 3],
                },
            ),
        }
        .emit();
        for bytes in [&udp[..], &ARP_REQUEST[..]] {
            for n in 0..bytes.len() {
                let _ = Frame::parse(&bytes[..n]);
            }
        }
        assert_eq!(Frame::parse(&[0; 10]), Err(WireError::EthTooShort));
    }
}
