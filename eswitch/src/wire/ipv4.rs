//! IPv4 headers (RFC 791 §3.1), options included in the view (IHL), not in the [`Repr`].

use std::net::Ipv4Addr;

use super::checksum;
use super::{be, check_header, Error, Field, IpNextHeaderProtocol, Result};

mod field {
    use super::Field;
    /// Version (4 bits) and IHL (4 bits, in 32-bit words).
    pub const VER_IHL: usize = 0;
    /// DSCP (6 bits, RFC 2474) and ECN (2 bits, RFC 3168).
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const IDENT: Field = 4..6;
    /// Flags (reserved, DF, MF) and the fragment offset in 8-octet units.
    pub const FLG_OFF: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC_ADDR: Field = 12..16;
    pub const DST_ADDR: Field = 16..20;
    /// Source and destination together: the addresses of the pseudo-header.
    pub const ADDRS: Field = 12..20;
}

/// The header without options (IHL 5).
pub const HEADER_LEN: usize = field::DST_ADDR.end;
/// The header with the most options (IHL 15).
pub const MAX_HEADER_LEN: usize = 60;

const DONT_FRAG: u16 = 0x4000;
const MORE_FRAGS: u16 = 0x2000;
/// The fragment offset bits; with `MORE_FRAGS` they say whether a packet is a fragment.
const FRAG_OFFSET: u16 = 0x1FFF;

view! {
    /// A read/write view of an IPv4 packet (header, options, payload).
    Packet
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// `Err(Truncated)` unless the buffer holds the fixed header and the options IHL announces;
    /// `Err(Malformed)` for an IHL below 5. The total length is not checked here (a TSO header
    /// carries 0 there): [`Repr::parse`] checks it, and [`Packet::payload`] clamps to it.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        check_header(self.buffer.as_ref().len(), HEADER_LEN, || self.header_len())
    }

    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }
    /// IHL in bytes.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0F) * 4
    }
    #[inline]
    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] >> 2
    }
    #[inline]
    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] & 0x03
    }
    /// The total length field: header and payload.
    #[inline]
    pub fn total_len(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::LENGTH.start)
    }
    #[inline]
    pub fn ident(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::IDENT.start)
    }
    #[inline]
    fn flg_off(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::FLG_OFF.start)
    }
    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.flg_off() & DONT_FRAG != 0
    }
    #[inline]
    pub fn more_frags(&self) -> bool {
        self.flg_off() & MORE_FRAGS != 0
    }
    /// The fragment offset in bytes (the field counts 8-octet units).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (self.flg_off() & FRAG_OFFSET) << 3
    }
    /// A fragment of a larger datagram: MF set or a non-zero offset. Its L4 header and checksum
    /// cover the reassembled datagram, not this packet.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.flg_off() & (MORE_FRAGS | FRAG_OFFSET) != 0
    }
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }
    #[inline]
    pub fn next_header(&self) -> IpNextHeaderProtocol {
        IpNextHeaderProtocol(self.buffer.as_ref()[field::PROTOCOL])
    }
    #[inline]
    pub fn checksum(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::CHECKSUM.start)
    }
    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(be::u32_at(self.buffer.as_ref(), field::SRC_ADDR.start))
    }
    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(be::u32_at(self.buffer.as_ref(), field::DST_ADDR.start))
    }

    /// The unfolded sum of source and destination, the addresses of the pseudo-header (add
    /// protocol and length, then [`checksum::fold`]).
    #[inline]
    pub fn pseudo_addrs_sum(&self) -> u64 {
        checksum::sum(&self.buffer.as_ref()[field::ADDRS], 0)
    }

    /// The options between the fixed header and IHL (empty past the buffer's end).
    #[inline]
    pub fn options(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        data.get(HEADER_LEN..self.header_len()).unwrap_or_default()
    }

    /// The header, options included, as the header checksum covers it.
    #[inline]
    pub fn header(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        &data[..self.header_len().max(HEADER_LEN).min(data.len())]
    }

    /// Whether the header sums to 0xFFFF with its checksum field (RFC 791 §3.1).
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::data(self.header()) == 0xFFFF
    }

    /// The bytes after the header up to the total length, cut at the buffer's end (padding
    /// after a short datagram is not payload).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        let start = self.header_len().max(HEADER_LEN).min(data.len());
        let end = usize::from(self.total_len()).clamp(start, data.len());
        &data[start..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    pub fn set_version(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0F) | (value << 4);
    }
    /// IHL from a length in bytes (truncated to 32-bit words).
    #[inline]
    pub fn set_header_len(&mut self, value: usize) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xF0) | ((value / 4) as u8 & 0x0F);
    }
    #[inline]
    pub fn set_dscp(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0x03) | (value << 2);
    }
    #[inline]
    pub fn set_ecn(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0xFC) | (value & 0x03);
    }
    #[inline]
    pub fn set_total_len(&mut self, value: u16) {
        be::set_u16(self.buffer.as_mut(), field::LENGTH.start, value);
    }
    #[inline]
    pub fn set_ident(&mut self, value: u16) {
        be::set_u16(self.buffer.as_mut(), field::IDENT.start, value);
    }
    #[inline]
    fn set_flg_off(&mut self, mask: u16, value: u16) {
        let word = (self.flg_off() & !mask) | (value & mask);
        be::set_u16(self.buffer.as_mut(), field::FLG_OFF.start, word);
    }
    /// Clears the flags and the fragment offset: an unfragmented packet that may be fragmented.
    #[inline]
    pub fn clear_flags(&mut self) {
        be::set_u16(self.buffer.as_mut(), field::FLG_OFF.start, 0);
    }
    #[inline]
    pub fn set_dont_frag(&mut self, value: bool) {
        self.set_flg_off(DONT_FRAG, if value { DONT_FRAG } else { 0 });
    }
    #[inline]
    pub fn set_more_frags(&mut self, value: bool) {
        self.set_flg_off(MORE_FRAGS, if value { MORE_FRAGS } else { 0 });
    }
    /// The fragment offset in bytes (a multiple of 8; the low 3 bits are dropped).
    #[inline]
    pub fn set_frag_offset(&mut self, value: u16) {
        self.set_flg_off(FRAG_OFFSET, value >> 3);
    }
    #[inline]
    pub fn set_ttl(&mut self, value: u8) {
        self.buffer.as_mut()[field::TTL] = value;
    }
    #[inline]
    pub fn set_next_header(&mut self, value: IpNextHeaderProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = value.0;
    }
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        be::set_u16(self.buffer.as_mut(), field::CHECKSUM.start, value);
    }
    #[inline]
    pub fn set_src_addr(&mut self, value: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&value.octets());
    }
    #[inline]
    pub fn set_dst_addr(&mut self, value: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&value.octets());
    }

    /// Computes the header checksum over the header and options and writes it.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::data(self.header());
        self.set_checksum(!sum);
    }

    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..end)
            .unwrap_or_default()
    }

    /// The payload per the total length, cut at the buffer's end (see [`Packet::payload`]).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let len = self.buffer.as_ref().len();
        let start = self.header_len().max(HEADER_LEN).min(len);
        let end = usize::from(self.total_len()).clamp(start, len);
        &mut self.buffer.as_mut()[start..end]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The meaning of an IPv4 header. Options are skipped by `parse` and never emitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr {
    pub src_addr: Ipv4Addr,
    pub dst_addr: Ipv4Addr,
    pub next_header: IpNextHeaderProtocol,
    /// Bytes after the header (total length − IHL·4).
    pub payload_len: usize,
    pub ttl: u8,
    pub ident: u16,
    pub dont_frag: bool,
    pub more_frags: bool,
    /// In bytes, a multiple of 8.
    pub frag_offset: u16,
    /// 6 bits.
    pub dscp: u8,
    /// 2 bits.
    pub ecn: u8,
}

impl Repr {
    /// Checks version, lengths and the header checksum.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        if packet.version() != 4 {
            return Err(Error::Malformed);
        }
        let total = usize::from(packet.total_len());
        let header = packet.header_len();
        if total < header {
            return Err(Error::Malformed);
        }
        if total > packet.buffer.as_ref().len() {
            return Err(Error::Truncated);
        }
        if !packet.verify_checksum() {
            return Err(Error::Checksum);
        }
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: total - header,
            ttl: packet.ttl(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
            more_frags: packet.more_frags(),
            frag_offset: packet.frag_offset(),
            dscp: packet.dscp(),
            ecn: packet.ecn(),
        })
    }

    /// The header without options.
    #[inline]
    pub fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Header and payload.
    #[inline]
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes the header (IHL 5, checksum filled) into a buffer of at least
    /// [`Repr::header_len`] bytes. A payload longer than 65515 bytes gets a wrapped total
    /// length: keep `payload_len` within what IPv4 carries.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_version(4);
        packet.set_header_len(HEADER_LEN);
        packet.set_dscp(self.dscp);
        packet.set_ecn(self.ecn);
        packet.set_total_len((HEADER_LEN + self.payload_len) as u16);
        packet.set_ident(self.ident);
        packet.clear_flags();
        packet.set_dont_frag(self.dont_frag);
        packet.set_more_frags(self.more_frags);
        packet.set_frag_offset(self.frag_offset);
        packet.set_ttl(self.ttl);
        packet.set_next_header(self.next_header);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::IpNextHeaderProtocols;

    /// 10.0.0.1 → 10.0.0.2, UDP, 12 bytes of payload, DF, TTL 64, ident 1.
    const UDP_PACKET: [u8; 32] = [
        0x45, 0x00, 0x00, 0x20, // version 4, IHL 5, total 32
        0x00, 0x01, 0x40, 0x00, // ident 1, DF
        0x40, 0x11, 0x26, 0xca, // TTL 64, UDP, checksum
        10, 0, 0, 1, 10, 0, 0, 2, // addresses
        0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa,
    ];

    fn repr() -> Repr {
        Repr {
            src_addr: Ipv4Addr::new(10, 0, 0, 1),
            dst_addr: Ipv4Addr::new(10, 0, 0, 2),
            next_header: IpNextHeaderProtocols::Udp,
            payload_len: 12,
            ttl: 64,
            ident: 1,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
            dscp: 0,
            ecn: 0,
        }
    }

    #[test]
    fn parses_literal_bytes() {
        let packet = Packet::new_checked(&UDP_PACKET[..]).unwrap();
        assert_eq!(packet.header_len(), 20);
        assert!(packet.verify_checksum());
        assert!(!packet.is_fragment());
        assert_eq!(packet.payload(), &[0xaa; 12]);
        assert_eq!(Repr::parse(&packet), Ok(repr()));
    }

    #[test]
    fn emits_literal_bytes() {
        let r = repr();
        let mut bytes = [0x55u8; 32];
        let mut packet = Packet::new_unchecked(&mut bytes[..]);
        r.emit(&mut packet);
        packet.payload_mut().fill(0xaa);
        assert_eq!(bytes, UDP_PACKET);
    }

    #[test]
    fn options_move_the_payload_and_count_in_the_checksum() {
        // IHL 6: one 4-byte option (four NOPs, RFC 791 §3.1 option type 1).
        let mut bytes = [0u8; 24 + 4];
        bytes[..20].copy_from_slice(&UDP_PACKET[..20]);
        bytes[0] = 0x46;
        bytes[3] = 28;
        bytes[20..24].fill(1);
        bytes[24..].fill(0xbb);
        let mut packet = Packet::new_checked(&mut bytes[..]).unwrap();
        packet.fill_checksum();
        assert_eq!(packet.options(), &[1, 1, 1, 1]);
        assert_eq!(packet.payload(), &[0xbb; 4]);
        let parsed = Repr::parse(&packet).unwrap();
        assert_eq!(parsed.payload_len, 4);
    }

    #[test]
    fn fragment_fields() {
        let mut bytes = UDP_PACKET;
        let mut packet = Packet::new_unchecked(&mut bytes[..]);
        packet.set_dont_frag(false);
        packet.set_more_frags(true);
        packet.set_frag_offset(1480);
        assert_eq!(&packet.as_ref()[6..8], &[0x20, 0xb9]);
        assert!(packet.is_fragment() && packet.more_frags() && !packet.dont_frag());
        assert_eq!(packet.frag_offset(), 1480);
    }

    #[test]
    fn errors_name_the_problem() {
        let mut bad = UDP_PACKET;
        bad[8] = 63; // TTL changed, checksum stale
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&bad[..])),
            Err(Error::Checksum)
        );
        let mut v6 = UDP_PACKET;
        v6[0] = 0x65;
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&v6[..])),
            Err(Error::Malformed)
        );
        let mut ihl = UDP_PACKET;
        ihl[0] = 0x44;
        assert_eq!(Packet::new_checked(&ihl[..]).err(), Some(Error::Malformed));
        assert_eq!(
            Packet::new_checked(&UDP_PACKET[..19]).err(),
            Some(Error::Truncated)
        );
        // A total length past the buffer: the view clamps, the repr refuses.
        let short = Packet::new_checked(&UDP_PACKET[..28]).unwrap();
        assert_eq!(short.payload().len(), 8);
        assert_eq!(Repr::parse(&short), Err(Error::Truncated));
        // A total length of 0, as a TSO header carries it: the view works, the repr refuses.
        let mut tso = UDP_PACKET;
        tso[2..4].fill(0);
        let tso = Packet::new_checked(&tso[..]).unwrap();
        assert_eq!(tso.payload(), &[] as &[u8]);
        assert_eq!(Repr::parse(&tso), Err(Error::Malformed));
    }
}
