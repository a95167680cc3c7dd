//! TCP segments (RFC 9293 §3.1). Options stay bytes; the checksum covers the pseudo-header of
//! either IP version.

use std::fmt;
use std::net::IpAddr;

use super::checksum;
use super::{be, check_header, Error, Field, IpNextHeaderProtocols, Rest, Result};

mod field {
    use super::{Field, Rest};
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const SEQ_NUM: Field = 4..8;
    pub const ACK_NUM: Field = 8..12;
    /// Data offset (4 bits, in 32-bit words) and 4 reserved bits.
    pub const DATA_OFFSET: usize = 12;
    /// The eight control bits, CWR (MSB) to FIN (LSB).
    pub const FLAGS: usize = 13;
    pub const WIN_SIZE: Field = 14..16;
    pub const CHECKSUM: Field = 16..18;
    pub const URGENT: Field = 18..20;
    pub const OPTIONS: Rest = 20..;
}

/// The header without options (data offset 5).
pub const HEADER_LEN: usize = field::OPTIONS.start;
/// The header with the most options (data offset 15).
pub const MAX_HEADER_LEN: usize = 60;

/// The control bits (RFC 9293 §3.1; CWR and ECE from RFC 3168 §6.1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u8);

impl Flags {
    pub const FIN: Flags = Flags(0x01);
    pub const SYN: Flags = Flags(0x02);
    pub const RST: Flags = Flags(0x04);
    pub const PSH: Flags = Flags(0x08);
    pub const ACK: Flags = Flags(0x10);
    pub const URG: Flags = Flags(0x20);
    pub const ECE: Flags = Flags(0x40);
    pub const CWR: Flags = Flags(0x80);
    pub const NONE: Flags = Flags(0);

    /// Whether every bit of `other` is set.
    #[inline]
    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
    #[inline]
    pub fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }
    /// These flags without those of `other`.
    #[inline]
    pub fn without(self, other: Flags) -> Flags {
        Flags(self.0 & !other.0)
    }
}

impl core::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        self.union(rhs)
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
        let mut list = f.debug_set();
        for (bit, name) in NAMES.iter().enumerate() {
            if self.0 & (1 << bit) != 0 {
                list.entry(&format_args!("{name}"));
            }
        }
        list.finish()
    }
}

view! {
    /// A read/write view of a TCP segment: header, options, payload.
    Packet
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// `Err(Truncated)` unless the buffer holds the header and the options the data offset
    /// announces; `Err(Malformed)` for a data offset below 5.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        check_header(self.buffer.as_ref().len(), HEADER_LEN, || self.header_len())
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::SRC_PORT.start)
    }
    #[inline]
    pub fn dst_port(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::DST_PORT.start)
    }
    #[inline]
    pub fn seq_number(&self) -> u32 {
        be::u32_at(self.buffer.as_ref(), field::SEQ_NUM.start)
    }
    #[inline]
    pub fn ack_number(&self) -> u32 {
        be::u32_at(self.buffer.as_ref(), field::ACK_NUM.start)
    }
    /// The data offset in bytes: header and options.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFFSET] >> 4) * 4
    }
    #[inline]
    pub fn flags(&self) -> Flags {
        Flags(self.buffer.as_ref()[field::FLAGS])
    }
    #[inline]
    pub fn window_len(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::WIN_SIZE.start)
    }
    #[inline]
    pub fn checksum(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::CHECKSUM.start)
    }
    #[inline]
    pub fn urgent_at(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::URGENT.start)
    }

    /// The options between the fixed header and the data offset (empty past the buffer's end).
    #[inline]
    pub fn options(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        data.get(HEADER_LEN..self.header_len()).unwrap_or_default()
    }

    /// The bytes after the header: the rest of the buffer, which is the segment.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        &data[self.header_len().max(HEADER_LEN).min(data.len())..]
    }

    /// Whether the segment (the whole buffer) and its pseudo-header sum to 0xFFFF.
    #[inline]
    pub fn verify_checksum(&self, src: &IpAddr, dst: &IpAddr) -> bool {
        let data = self.buffer.as_ref();
        let pseudo = checksum::pseudo_header(src, dst, IpNextHeaderProtocols::Tcp, len32(data));
        checksum::combine(&[pseudo, checksum::data(data)]) == 0xFFFF
    }
}

/// A buffer length as the pseudo-header's 32-bit length.
#[inline]
fn len32(data: &[u8]) -> u32 {
    u32::try_from(data.len()).unwrap_or(u32::MAX)
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    pub fn set_src_port(&mut self, value: u16) {
        be::set_u16(self.buffer.as_mut(), field::SRC_PORT.start, value);
    }
    #[inline]
    pub fn set_dst_port(&mut self, value: u16) {
        be::set_u16(self.buffer.as_mut(), field::DST_PORT.start, value);
    }
    #[inline]
    pub fn set_seq_number(&mut self, value: u32) {
        be::set_u32(self.buffer.as_mut(), field::SEQ_NUM.start, value);
    }
    #[inline]
    pub fn set_ack_number(&mut self, value: u32) {
        be::set_u32(self.buffer.as_mut(), field::ACK_NUM.start, value);
    }
    /// The data offset from a length in bytes (truncated to 32-bit words); clears the reserved
    /// bits.
    #[inline]
    pub fn set_header_len(&mut self, value: usize) {
        self.buffer.as_mut()[field::DATA_OFFSET] = ((value / 4) as u8) << 4;
    }
    #[inline]
    pub fn set_flags(&mut self, value: Flags) {
        self.buffer.as_mut()[field::FLAGS] = value.0;
    }
    #[inline]
    pub fn set_window_len(&mut self, value: u16) {
        be::set_u16(self.buffer.as_mut(), field::WIN_SIZE.start, value);
    }
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        be::set_u16(self.buffer.as_mut(), field::CHECKSUM.start, value);
    }
    #[inline]
    pub fn set_urgent_at(&mut self, value: u16) {
        be::set_u16(self.buffer.as_mut(), field::URGENT.start, value);
    }

    /// Computes the checksum over the pseudo-header and the whole buffer, and writes it.
    #[inline]
    pub fn fill_checksum(&mut self, src: &IpAddr, dst: &IpAddr) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let pseudo = checksum::pseudo_header(src, dst, IpNextHeaderProtocols::Tcp, len32(data));
        let sum = checksum::combine(&[pseudo, checksum::data(data)]);
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

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let len = self.buffer.as_ref().len();
        let start = self.header_len().max(HEADER_LEN).min(len);
        &mut self.buffer.as_mut()[start..]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The meaning of a TCP segment, borrowing options and payload from the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq_number: u32,
    pub ack_number: u32,
    pub flags: Flags,
    pub window_len: u16,
    pub urgent_at: u16,
    /// Raw option bytes, padded to a multiple of 4, at most 40.
    pub options: &'a [u8],
    pub payload: &'a [u8],
}

impl<'a> Repr<'a> {
    /// Checks lengths and the checksum over the pseudo-header of `src` and `dst`.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &Packet<&'a T>,
        src: &IpAddr,
        dst: &IpAddr,
    ) -> Result<Repr<'a>> {
        packet.check_len()?;
        if !packet.verify_checksum(src, dst) {
            return Err(Error::Checksum);
        }
        let data = packet.buffer.as_ref();
        let header = packet.header_len();
        Ok(Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq_number: packet.seq_number(),
            ack_number: packet.ack_number(),
            flags: packet.flags(),
            window_len: packet.window_len(),
            urgent_at: packet.urgent_at(),
            options: &data[HEADER_LEN..header],
            payload: &data[header..],
        })
    }

    /// Header and options.
    #[inline]
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options.len()
    }

    #[inline]
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload.len()
    }

    /// Writes the segment into a buffer of exactly [`Repr::buffer_len`] bytes (the checksum
    /// covers the whole buffer) and fills the checksum. Options that are not a multiple of 4
    /// bytes or longer than 40 make a segment that does not parse back.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
        src: &IpAddr,
        dst: &IpAddr,
    ) {
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_seq_number(self.seq_number);
        packet.set_ack_number(self.ack_number);
        packet.set_header_len(self.header_len());
        packet.set_flags(self.flags);
        packet.set_window_len(self.window_len);
        packet.set_urgent_at(self.urgent_at);
        packet.options_mut().copy_from_slice(self.options);
        packet.payload_mut().copy_from_slice(self.payload);
        packet.fill_checksum(src, dst);
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const SRC: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1));
    const DST: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 2));

    /// Port 49152 → 80, seq 1, ack 2, PSH|ACK, window 512, a 4-byte MSS option (RFC 9293
    /// §3.2: kind 2, length 4, 1460), payload "hi".
    const SEGMENT: [u8; 26] = [
        0xc0, 0x00, 0x00, 0x50, // ports
        0x00, 0x00, 0x00, 0x01, // seq
        0x00, 0x00, 0x00, 0x02, // ack
        0x60, 0x18, 0x02, 0x00, // data offset 6, PSH|ACK, window
        0xe9, 0xfd, 0x00, 0x00, // checksum, urgent
        0x02, 0x04, 0x05, 0xb4, // MSS 1460
        b'h', b'i',
    ];

    fn repr() -> Repr<'static> {
        Repr {
            src_port: 49152,
            dst_port: 80,
            seq_number: 1,
            ack_number: 2,
            flags: Flags::PSH | Flags::ACK,
            window_len: 512,
            urgent_at: 0,
            options: &SEGMENT[20..24],
            payload: b"hi",
        }
    }

    #[test]
    fn parses_literal_bytes() {
        let packet = Packet::new_checked(&SEGMENT[..]).unwrap();
        assert_eq!(packet.header_len(), 24);
        assert_eq!(packet.options(), &[2, 4, 5, 0xb4]);
        assert_eq!(packet.payload(), b"hi");
        assert!(packet.flags().contains(Flags::ACK) && !packet.flags().contains(Flags::SYN));
        assert_eq!(Repr::parse(&packet, &SRC, &DST), Ok(repr()));
    }

    #[test]
    fn emits_literal_bytes() {
        let r = repr();
        let mut bytes = vec![0xa5u8; r.buffer_len()];
        r.emit(&mut Packet::new_unchecked(&mut bytes[..]), &SRC, &DST);
        assert_eq!(&bytes[..], &SEGMENT[..]);
    }

    #[test]
    fn errors_and_setters() {
        let mut bytes = SEGMENT;
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&bytes[..]), &DST, &SRC).err(),
            None,
            "the pseudo-header sum does not depend on the address order"
        );
        let mut packet = Packet::new_unchecked(&mut bytes[..]);
        packet.set_seq_number(7);
        packet.set_flags(packet.flags().without(Flags::PSH));
        assert_eq!(packet.flags(), Flags::ACK);
        assert!(!packet.verify_checksum(&SRC, &DST));
        packet.fill_checksum(&SRC, &DST);
        assert!(packet.verify_checksum(&SRC, &DST));
        packet.set_header_len(16);
        assert_eq!(packet.check_len(), Err(Error::Malformed));
        packet.set_header_len(60);
        assert_eq!(packet.check_len(), Err(Error::Truncated));
        assert_eq!(packet.options().len(), 0, "options past the end read empty");
        assert_eq!(
            Packet::new_checked(&SEGMENT[..19]).err(),
            Some(Error::Truncated)
        );
        assert_eq!(format!("{:?}", Flags::SYN | Flags::ACK), "{SYN, ACK}");
    }
}
