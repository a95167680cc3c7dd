//! IPv6 (RFC 8200): the fixed header (§3) as a view and a [`Repr`], and a walker over the
//! extension headers (§4) that finds the upper-layer header.

use std::net::Ipv6Addr;

use super::checksum;
use super::{be, Error, Field, IpNextHeaderProtocol, IpNextHeaderProtocols, Result};

mod field {
    use super::Field;
    /// Version (4 bits), traffic class (8 bits), flow label (20 bits).
    pub const VER_TC_FLOW: Field = 0..4;
    pub const PAYLOAD_LEN: Field = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Field = 8..24;
    pub const DST_ADDR: Field = 24..40;
    /// Source and destination together: the addresses of the pseudo-header.
    pub const ADDRS: Field = 8..40;
}

/// The fixed header.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

view! {
    /// A read/write view of an IPv6 packet: fixed header, then extension headers and payload.
    Packet
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// `Err(Truncated)` unless the buffer holds the fixed header. The payload length is not
    /// checked here (a TSO header carries 0 there): [`Repr::parse`] checks it, and
    /// [`Packet::payload`] clamps to it.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    #[inline]
    fn ver_tc_flow(&self) -> u32 {
        be::u32_at(self.buffer.as_ref(), field::VER_TC_FLOW.start)
    }
    #[inline]
    pub fn version(&self) -> u8 {
        (self.ver_tc_flow() >> 28) as u8
    }
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (self.ver_tc_flow() >> 20) as u8
    }
    #[inline]
    pub fn flow_label(&self) -> u32 {
        self.ver_tc_flow() & 0x000F_FFFF
    }
    /// Bytes after the fixed header: extension headers and upper-layer packet.
    #[inline]
    pub fn payload_len(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::PAYLOAD_LEN.start)
    }
    /// The header after the fixed one: an extension header or the upper layer.
    #[inline]
    pub fn next_header(&self) -> IpNextHeaderProtocol {
        IpNextHeaderProtocol(self.buffer.as_ref()[field::NEXT_HEADER])
    }
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }
    #[inline]
    pub fn src_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(addr16(&self.buffer.as_ref()[field::SRC_ADDR]))
    }
    #[inline]
    pub fn dst_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(addr16(&self.buffer.as_ref()[field::DST_ADDR]))
    }

    /// The unfolded sum of source and destination, the addresses of the pseudo-header (add the
    /// upper-layer protocol and length, then [`checksum::fold`]).
    #[inline]
    pub fn pseudo_addrs_sum(&self) -> u64 {
        checksum::sum(&self.buffer.as_ref()[field::ADDRS], 0)
    }

    /// The bytes after the fixed header up to the payload length, cut at the buffer's end.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        let start = HEADER_LEN.min(data.len());
        let end = (HEADER_LEN + usize::from(self.payload_len())).clamp(start, data.len());
        &data[start..end]
    }

    /// The extension headers in order, with offsets from the start of this header. They are
    /// walked within the buffer, not the payload length (a TSO header carries 0 there).
    #[inline]
    pub fn ext_headers(&self) -> ExtHeaders<'_> {
        ExtHeaders::new(self.buffer.as_ref())
    }

    /// Walks every extension header to the upper-layer header.
    #[inline]
    pub fn upper_layer(&self) -> Result<UpperLayer> {
        let mut walk = self.ext_headers();
        for ext in &mut walk {
            ext?;
        }
        Ok(walk.upper_layer())
    }
}

fn addr16(bytes: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(bytes);
    out
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    fn set_ver_tc_flow(&mut self, mask: u32, value: u32) {
        let word = (self.ver_tc_flow() & !mask) | (value & mask);
        be::set_u32(self.buffer.as_mut(), field::VER_TC_FLOW.start, word);
    }
    #[inline]
    pub fn set_version(&mut self, value: u8) {
        self.set_ver_tc_flow(0xF000_0000, u32::from(value) << 28);
    }
    #[inline]
    pub fn set_traffic_class(&mut self, value: u8) {
        self.set_ver_tc_flow(0x0FF0_0000, u32::from(value) << 20);
    }
    /// 20 bits; higher bits are dropped.
    #[inline]
    pub fn set_flow_label(&mut self, value: u32) {
        self.set_ver_tc_flow(0x000F_FFFF, value);
    }
    #[inline]
    pub fn set_payload_len(&mut self, value: u16) {
        be::set_u16(self.buffer.as_mut(), field::PAYLOAD_LEN.start, value);
    }
    #[inline]
    pub fn set_next_header(&mut self, value: IpNextHeaderProtocol) {
        self.buffer.as_mut()[field::NEXT_HEADER] = value.0;
    }
    #[inline]
    pub fn set_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = value;
    }
    #[inline]
    pub fn set_src_addr(&mut self, value: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&value.octets());
    }
    #[inline]
    pub fn set_dst_addr(&mut self, value: Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&value.octets());
    }

    /// The payload per the payload length, cut at the buffer's end.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let len = self.buffer.as_ref().len();
        let start = HEADER_LEN.min(len);
        let end = (HEADER_LEN + usize::from(self.payload_len())).clamp(start, len);
        &mut self.buffer.as_mut()[start..end]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// One extension header met on the way to the upper layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtHeader {
    /// Hop-by-hop options, routing, fragment, destination options or authentication.
    pub kind: IpNextHeaderProtocol,
    /// Offset from the start of the IPv6 header.
    pub offset: usize,
    /// Length in bytes.
    pub len: usize,
    /// The header after this one.
    pub next_header: IpNextHeaderProtocol,
}

/// Where the upper-layer header is: what the walk over the extension headers ends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpperLayer {
    /// The upper-layer protocol (or an extension header this walker does not enter: ESP,
    /// No Next Header).
    pub protocol: IpNextHeaderProtocol,
    /// Offset from the start of the IPv6 header.
    pub offset: usize,
}

/// The Authentication Header (RFC 4302), which RFC 8200 §4.1 lists among the extension headers.
const AUTHENTICATION: IpNextHeaderProtocol = IpNextHeaderProtocols::Ah;

/// Whether the walker steps over `next_header` as an extension header.
#[inline]
pub fn is_ext_header(next_header: IpNextHeaderProtocol) -> bool {
    matches!(
        next_header,
        IpNextHeaderProtocols::Hopopt
            | IpNextHeaderProtocols::Ipv6Route
            | IpNextHeaderProtocols::Ipv6Frag
            | IpNextHeaderProtocols::Ipv6Opts
            | AUTHENTICATION
    )
}

/// Iterates over the extension headers of an IPv6 packet (RFC 8200 §4): hop-by-hop options,
/// routing, fragment and destination options (length in 8-octet units after the first 8,
/// §4.3–4.6; the fragment header is 8 bytes), and the authentication header (RFC 4302 §2.2:
/// length in 4-octet units, minus 2). An item is `Err(Truncated)` when a header runs past the
/// buffer, and ends the walk. After the walk, [`ExtHeaders::upper_layer`] tells where the
/// upper-layer header starts.
#[derive(Clone, Debug)]
pub struct ExtHeaders<'a> {
    data: &'a [u8],
    next: IpNextHeaderProtocol,
    offset: usize,
    /// An error was reported (or is due, for a short fixed header): the walk is over.
    error: Option<bool>,
}

impl<'a> ExtHeaders<'a> {
    /// The walk over `data`, an IPv6 packet from its fixed header on. A buffer shorter than
    /// the fixed header yields `Err(Truncated)`.
    pub fn new(data: &'a [u8]) -> ExtHeaders<'a> {
        ExtHeaders {
            data,
            next: IpNextHeaderProtocol(data.get(field::NEXT_HEADER).copied().unwrap_or(0)),
            offset: HEADER_LEN,
            error: (data.len() < HEADER_LEN).then_some(false),
        }
    }

    /// The header the walk stands on: once it has ended without error, the upper layer.
    #[inline]
    pub fn upper_layer(&self) -> UpperLayer {
        UpperLayer {
            protocol: self.next,
            offset: self.offset,
        }
    }
}

impl ExtHeaders<'_> {
    /// Reports a header past the buffer's end, once.
    fn fail(&mut self) -> Option<Result<ExtHeader>> {
        self.error = Some(true);
        Some(Err(Error::Truncated))
    }
}

impl Iterator for ExtHeaders<'_> {
    type Item = Result<ExtHeader>;

    fn next(&mut self) -> Option<Result<ExtHeader>> {
        match self.error {
            Some(true) => return None,
            Some(false) => return self.fail(),
            None => {}
        }
        if !is_ext_header(self.next) {
            return None;
        }
        let Some(&[next, len_field]) = self.data.get(self.offset..self.offset + 2) else {
            return self.fail();
        };
        let len = match self.next {
            IpNextHeaderProtocols::Ipv6Frag => FRAGMENT_HEADER_LEN,
            AUTHENTICATION => (usize::from(len_field) + 2) * 4,
            _ => (usize::from(len_field) + 1) * 8,
        };
        if self.offset + len > self.data.len() {
            return self.fail();
        }
        let ext = ExtHeader {
            kind: self.next,
            offset: self.offset,
            len,
            next_header: IpNextHeaderProtocol(next),
        };
        self.next = ext.next_header;
        self.offset += len;
        Some(Ok(ext))
    }
}

/// The fragment header's length (RFC 8200 §4.5).
pub const FRAGMENT_HEADER_LEN: usize = 8;

mod frag_field {
    use super::Field;
    pub const NEXT_HEADER: usize = 0;
    /// Fragment offset (13 bits, 8-octet units), 2 reserved bits, M flag.
    pub const OFF_M: Field = 2..4;
    pub const IDENT: Field = 4..8;
}

view! {
    /// A read/write view of a fragment header (RFC 8200 §4.5).
    FragmentHeader
}

impl<T: AsRef<[u8]>> FragmentHeader<T> {
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < FRAGMENT_HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }
    #[inline]
    pub fn next_header(&self) -> IpNextHeaderProtocol {
        IpNextHeaderProtocol(self.buffer.as_ref()[frag_field::NEXT_HEADER])
    }
    /// In bytes (the field counts 8-octet units).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), frag_field::OFF_M.start) & !0x7
    }
    #[inline]
    pub fn more_frags(&self) -> bool {
        be::u16_at(self.buffer.as_ref(), frag_field::OFF_M.start) & 1 != 0
    }
    #[inline]
    pub fn ident(&self) -> u32 {
        be::u32_at(self.buffer.as_ref(), frag_field::IDENT.start)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> FragmentHeader<T> {
    #[inline]
    pub fn set_next_header(&mut self, value: IpNextHeaderProtocol) {
        let data = self.buffer.as_mut();
        data[frag_field::NEXT_HEADER] = value.0;
        data[frag_field::NEXT_HEADER + 1] = 0;
    }
    /// Offset in bytes (a multiple of 8) and the M flag.
    #[inline]
    pub fn set_frag(&mut self, offset: u16, more_frags: bool) {
        let word = (offset & !0x7) | u16::from(more_frags);
        be::set_u16(self.buffer.as_mut(), frag_field::OFF_M.start, word);
    }
    #[inline]
    pub fn set_ident(&mut self, value: u32) {
        be::set_u32(self.buffer.as_mut(), frag_field::IDENT.start, value);
    }
}

/// The meaning of an IPv6 fixed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr {
    pub src_addr: Ipv6Addr,
    pub dst_addr: Ipv6Addr,
    /// The header after the fixed one.
    pub next_header: IpNextHeaderProtocol,
    /// Bytes after the fixed header.
    pub payload_len: usize,
    pub hop_limit: u8,
    pub traffic_class: u8,
    /// 20 bits.
    pub flow_label: u32,
}

impl Repr {
    /// Checks the version and that the payload length lies within the buffer.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        if packet.version() != 6 {
            return Err(Error::Malformed);
        }
        let payload_len = usize::from(packet.payload_len());
        if HEADER_LEN + payload_len > packet.buffer.as_ref().len() {
            return Err(Error::Truncated);
        }
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len,
            hop_limit: packet.hop_limit(),
            traffic_class: packet.traffic_class(),
            flow_label: packet.flow_label(),
        })
    }

    #[inline]
    pub fn header_len(&self) -> usize {
        HEADER_LEN
    }

    #[inline]
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes the fixed header into a buffer of at least [`Repr::header_len`] bytes.
    /// `payload_len` above 65535 wraps: jumbograms (RFC 2675) are not represented.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        be::set_u32(packet.buffer.as_mut(), field::VER_TC_FLOW.start, 6 << 28);
        packet.set_traffic_class(self.traffic_class);
        packet.set_flow_label(self.flow_label);
        packet.set_payload_len(self.payload_len as u16);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// fe80::1 → fe80::2, hop-by-hop (8 bytes), fragment (8), destination options (16), then
    /// UDP (8 bytes); traffic class 0x12, flow label 0x34567, hop limit 64.
    fn chained() -> Vec<u8> {
        let mut p = vec![
            0x61, 0x23, 0x45, 0x67, // version 6, TC 0x12, flow 0x34567
            0x00, 0x28, 0x00, 0x40, // payload 40, next: hop-by-hop, hop limit 64
        ];
        p.extend_from_slice(&"fe80::1".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&"fe80::2".parse::<Ipv6Addr>().unwrap().octets());
        // Hop-by-hop: next fragment (44), length 0 (8 bytes), PadN of 4.
        p.extend_from_slice(&[44, 0, 1, 4, 0, 0, 0, 0]);
        // Fragment: next destination options (60), offset 0, M = 1, ident 0xdeadbeef.
        p.extend_from_slice(&[60, 0, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef]);
        // Destination options: next UDP (17), length 1 (16 bytes), PadN of 12.
        p.extend_from_slice(&[17, 1, 1, 12]);
        p.extend_from_slice(&[0; 12]);
        // UDP header.
        p.extend_from_slice(&[0x30, 0x39, 0x00, 0x35, 0x00, 0x08, 0x00, 0x00]);
        p
    }

    #[test]
    fn fixed_header_parses_and_emits_literal_bytes() {
        let bytes = chained();
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        let repr = Repr::parse(&packet).unwrap();
        assert_eq!(
            repr,
            Repr {
                src_addr: "fe80::1".parse().unwrap(),
                dst_addr: "fe80::2".parse().unwrap(),
                next_header: IpNextHeaderProtocols::Hopopt,
                payload_len: 40,
                hop_limit: 64,
                traffic_class: 0x12,
                flow_label: 0x34567,
            }
        );
        assert_eq!(packet.payload().len(), 40);
        let mut out = [0xffu8; 40];
        repr.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(&out[..], &bytes[..40]);
    }

    #[test]
    fn the_walker_steps_over_every_extension_header_to_udp() {
        let bytes = chained();
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        let exts: Vec<ExtHeader> = packet.ext_headers().map(Result::unwrap).collect();
        let kinds: Vec<(u8, usize, usize)> =
            exts.iter().map(|e| (e.kind.0, e.offset, e.len)).collect();
        assert_eq!(kinds, vec![(0, 40, 8), (44, 48, 8), (60, 56, 16)]);
        assert_eq!(
            packet.upper_layer(),
            Ok(UpperLayer {
                protocol: IpNextHeaderProtocols::Udp,
                offset: 72
            })
        );
        let frag = FragmentHeader::new_checked(&bytes[48..56]).unwrap();
        assert_eq!(frag.next_header(), IpNextHeaderProtocols::Ipv6Opts);
        assert_eq!((frag.frag_offset(), frag.more_frags()), (0, true));
        assert_eq!(frag.ident(), 0xdead_beef);
    }

    #[test]
    fn a_header_past_the_buffer_is_truncated() {
        let bytes = chained();
        // Cut inside the destination options header.
        let packet = Packet::new_unchecked(&bytes[..60]);
        assert_eq!(packet.upper_layer(), Err(Error::Truncated));
        let mut walk = packet.ext_headers();
        assert!(walk.next().unwrap().is_ok());
        assert!(walk.next().unwrap().is_ok());
        assert_eq!(walk.next(), Some(Err(Error::Truncated)));
        assert_eq!(walk.next(), None);
        assert_eq!(
            Packet::new_unchecked(&bytes[..39]).upper_layer(),
            Err(Error::Truncated)
        );
    }

    #[test]
    fn no_extension_headers_means_the_upper_layer_follows_the_fixed_header() {
        let mut bytes = chained();
        bytes[6] = 6; // TCP
        let packet = Packet::new_unchecked(&bytes[..]);
        assert_eq!(packet.ext_headers().count(), 0);
        assert_eq!(
            packet.upper_layer(),
            Ok(UpperLayer {
                protocol: IpNextHeaderProtocols::Tcp,
                offset: 40
            })
        );
    }

    #[test]
    fn setters_and_errors() {
        let mut bytes = chained();
        let mut packet = Packet::new_unchecked(&mut bytes[..]);
        packet.set_payload_len(100);
        assert_eq!(packet.payload().len(), 40, "clamped to the buffer");
        assert_eq!(Repr::parse(&packet), Err(Error::Truncated));
        packet.set_version(4);
        assert_eq!(Repr::parse(&packet), Err(Error::Malformed));
        assert_eq!(packet.traffic_class(), 0x12);
        assert_eq!(packet.flow_label(), 0x34567);
    }
}
