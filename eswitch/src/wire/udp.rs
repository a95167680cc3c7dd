//! UDP datagrams (RFC 768), checksummed over the pseudo-header of either IP version.

use std::net::IpAddr;

use super::checksum;
use super::{be, Error, Field, IpNextHeaderProtocols, Result};

mod field {
    use super::Field;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    /// Header and payload.
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;
}

pub const HEADER_LEN: usize = field::CHECKSUM.end;

view! {
    /// A read/write view of a UDP datagram.
    Packet
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// `Err(Truncated)` unless the buffer holds the header. The length field is not checked
    /// here (segmentation rewrites it): [`Repr::parse`] checks it, and [`Packet::payload`]
    /// clamps to it.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::SRC_PORT.start)
    }
    #[inline]
    pub fn dst_port(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::DST_PORT.start)
    }
    /// The length field: header and payload.
    #[inline]
    pub fn len(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::LENGTH.start)
    }
    /// Whether the length field says there is no payload.
    #[inline]
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }
    #[inline]
    pub fn checksum(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// The datagram per the length field, cut at the buffer's end (the padding of a short
    /// frame is not part of it).
    #[inline]
    fn datagram(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        &data[..usize::from(self.len()).clamp(HEADER_LEN.min(data.len()), data.len())]
    }

    /// The bytes after the header up to the length field, cut at the buffer's end.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.datagram().get(HEADER_LEN..).unwrap_or_default()
    }

    /// Whether the datagram (per the length field) and its pseudo-header sum to 0xFFFF, or
    /// the checksum field is 0 over IPv4 ("no checksum", RFC 768). Over IPv6 a zero field is
    /// a failure (RFC 8200 §8.1).
    #[inline]
    pub fn verify_checksum(&self, src: &IpAddr, dst: &IpAddr) -> bool {
        if self.checksum() == 0 {
            return src.is_ipv4();
        }
        let datagram = self.datagram();
        let pseudo =
            checksum::pseudo_header(src, dst, IpNextHeaderProtocols::Udp, u32::from(self.len()));
        checksum::combine(&[pseudo, checksum::data(datagram)]) == 0xFFFF
    }
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
    pub fn set_len(&mut self, value: u16) {
        be::set_u16(self.buffer.as_mut(), field::LENGTH.start, value);
    }
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        be::set_u16(self.buffer.as_mut(), field::CHECKSUM.start, value);
    }

    /// Computes the checksum over the pseudo-header and the datagram (per the length field)
    /// and writes it; a result of 0 is sent as 0xFFFF (RFC 768: 0 means "no checksum").
    #[inline]
    pub fn fill_checksum(&mut self, src: &IpAddr, dst: &IpAddr) {
        self.set_checksum(0);
        let pseudo =
            checksum::pseudo_header(src, dst, IpNextHeaderProtocols::Udp, u32::from(self.len()));
        let sum = !checksum::combine(&[pseudo, checksum::data(self.datagram())]);
        self.set_checksum(if sum == 0 { 0xFFFF } else { sum });
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let len = self.buffer.as_ref().len();
        let end = usize::from(self.len()).clamp(HEADER_LEN.min(len), len);
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..end)
            .unwrap_or_default()
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The meaning of a UDP datagram, borrowing the payload from the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: &'a [u8],
}

impl<'a> Repr<'a> {
    /// Checks the length field against the buffer and the checksum over the pseudo-header of
    /// `src` and `dst`.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &Packet<&'a T>,
        src: &IpAddr,
        dst: &IpAddr,
    ) -> Result<Repr<'a>> {
        packet.check_len()?;
        let data = packet.buffer.as_ref();
        let len = usize::from(packet.len());
        if len < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if len > data.len() {
            return Err(Error::Truncated);
        }
        if !packet.verify_checksum(src, dst) {
            return Err(Error::Checksum);
        }
        Ok(Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload: &data[HEADER_LEN..len],
        })
    }

    #[inline]
    pub fn header_len(&self) -> usize {
        HEADER_LEN
    }

    #[inline]
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Writes the datagram into a buffer of at least [`Repr::buffer_len`] bytes and fills the
    /// checksum. A payload longer than 65527 bytes wraps the length field.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
        src: &IpAddr,
        dst: &IpAddr,
    ) {
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(self.buffer_len() as u16);
        packet.payload_mut().copy_from_slice(self.payload);
        packet.fill_checksum(src, dst);
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const SRC: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const DST: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

    /// 12345 → 53, 4 bytes of payload, then 2 bytes of frame padding.
    const DATAGRAM: [u8; 14] = [
        0x30, 0x39, 0x00, 0x35, // ports
        0x00, 0x0c, 0xb7, 0x5f, // length 12, checksum
        1, 2, 3, 4, // payload
        0, 0, // padding
    ];

    #[test]
    fn parses_literal_bytes_without_the_padding() {
        let packet = Packet::new_checked(&DATAGRAM[..]).unwrap();
        assert_eq!(packet.payload(), &[1, 2, 3, 4]);
        assert_eq!(
            Repr::parse(&packet, &SRC, &DST),
            Ok(Repr {
                src_port: 12345,
                dst_port: 53,
                payload: &[1, 2, 3, 4]
            })
        );
    }

    #[test]
    fn emits_literal_bytes() {
        let repr = Repr {
            src_port: 12345,
            dst_port: 53,
            payload: &[1, 2, 3, 4],
        };
        let mut bytes = [0u8; 14];
        repr.emit(&mut Packet::new_unchecked(&mut bytes[..]), &SRC, &DST);
        assert_eq!(bytes, DATAGRAM);
    }

    #[test]
    fn zero_checksum_means_none_over_ipv4_only() {
        let mut bytes = DATAGRAM;
        bytes[6..8].fill(0);
        let packet = Packet::new_unchecked(&bytes[..]);
        assert!(packet.verify_checksum(&SRC, &DST));
        let v6: IpAddr = "fe80::1".parse().unwrap();
        assert!(!packet.verify_checksum(&v6, &v6));
    }

    #[test]
    fn bad_lengths_and_checksums() {
        let mut bytes = DATAGRAM;
        let mut packet = Packet::new_unchecked(&mut bytes[..]);
        packet.set_len(7);
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(packet.as_ref()), &SRC, &DST),
            Err(Error::Malformed)
        );
        packet.set_len(15);
        assert_eq!(packet.payload().len(), 6, "clamped to the buffer");
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(packet.as_ref()), &SRC, &DST),
            Err(Error::Truncated)
        );
        packet.set_len(12);
        packet.payload_mut()[0] = 9;
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(packet.as_ref()), &SRC, &DST),
            Err(Error::Checksum)
        );
        assert_eq!(
            Packet::new_checked(&DATAGRAM[..7]).err(),
            Some(Error::Truncated)
        );
    }
}
