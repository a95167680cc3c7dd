//! SCTP packets (RFC 9260 §3.1): the common header and the CRC32c over the whole packet
//! (Appendix A). Chunks stay bytes.

use super::checksum;
use super::{be, Error, Field, Rest, Result};

mod field {
    use super::{Field, Rest};
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const VERIFICATION_TAG: Field = 4..8;
    pub const CHECKSUM: Field = 8..12;
    pub const CHUNKS: Rest = 12..;
}

/// The common header.
pub const HEADER_LEN: usize = field::CHUNKS.start;

view! {
    /// A read/write view of an SCTP packet.
    Packet
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// `Err(Truncated)` unless the buffer holds the common header.
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
    #[inline]
    pub fn verification_tag(&self) -> u32 {
        be::u32_at(self.buffer.as_ref(), field::VERIFICATION_TAG.start)
    }

    /// The CRC32c the checksum field holds, as [`checksum::crc32c`] computes it: the field
    /// carries it least significant byte first (RFC 9260 Appendix A, the reflected CRC's bit
    /// order).
    #[inline]
    pub fn checksum(&self) -> u32 {
        let d = self.buffer.as_ref();
        u32::from_le_bytes([d[8], d[9], d[10], d[11]])
    }

    /// The CRC32c of the packet with the checksum field taken as zero.
    #[inline]
    pub fn compute_checksum(&self) -> u32 {
        let d = self.buffer.as_ref();
        checksum::crc32c_parts(&[
            &d[..field::CHECKSUM.start],
            &[0; 4],
            &d[field::CHECKSUM.end..],
        ])
    }

    #[inline]
    pub fn verify_checksum(&self) -> bool {
        self.checksum() == self.compute_checksum()
    }

    /// The chunks: everything after the common header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::CHUNKS]
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
    pub fn set_verification_tag(&mut self, value: u32) {
        be::set_u32(self.buffer.as_mut(), field::VERIFICATION_TAG.start, value);
    }
    /// Writes a CRC32c value (see [`Packet::checksum`] for the byte order).
    #[inline]
    pub fn set_checksum(&mut self, value: u32) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&value.to_le_bytes());
    }
    /// Computes the CRC32c over the whole buffer and writes it.
    #[inline]
    pub fn fill_checksum(&mut self) {
        let crc = self.compute_checksum();
        self.set_checksum(crc);
    }
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::CHUNKS]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The common header of an SCTP packet and its chunks, borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub verification_tag: u32,
    pub chunks: &'a [u8],
}

impl<'a> Repr<'a> {
    /// Checks the length and the CRC32c.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&'a T>) -> Result<Repr<'a>> {
        packet.check_len()?;
        if !packet.verify_checksum() {
            return Err(Error::Checksum);
        }
        let data: &'a [u8] = packet.buffer.as_ref();
        Ok(Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            verification_tag: packet.verification_tag(),
            chunks: &data[field::CHUNKS],
        })
    }

    #[inline]
    pub fn header_len(&self) -> usize {
        HEADER_LEN
    }

    #[inline]
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.chunks.len()
    }

    /// Writes the packet into a buffer of exactly [`Repr::buffer_len`] bytes (the CRC covers
    /// the whole buffer) and fills the checksum.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_verification_tag(self.verification_tag);
        packet.payload_mut().copy_from_slice(self.chunks);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An INIT chunk header alone (type 1, flags 0, length 4) from port 5000 to 5001, tag 0.
    const PACKET: [u8; 16] = [
        0x13, 0x88, 0x13, 0x89, // ports
        0x00, 0x00, 0x00, 0x00, // verification tag
        0x82, 0x57, 0x07, 0x40, // CRC32c 0x40075782, least significant byte first
        0x01, 0x00, 0x00, 0x04, // chunk
    ];

    /// A bitwise CRC32c, independent of the table in `checksum`.
    fn crc32c_bitwise(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = (crc >> 1) ^ (0x82F6_3B78 & (crc & 1).wrapping_neg());
            }
        }
        !crc
    }

    #[test]
    fn parses_and_emits_with_the_crc_least_significant_byte_first() {
        let mut zeroed = PACKET;
        zeroed[8..12].fill(0);
        let crc = crc32c_bitwise(&zeroed);
        assert_eq!(crc, 0x4007_5782);
        let bytes = PACKET;
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.checksum(), crc);
        let repr = Repr::parse(&packet).unwrap();
        assert_eq!(
            repr,
            Repr {
                src_port: 5000,
                dst_port: 5001,
                verification_tag: 0,
                chunks: &[1, 0, 0, 4]
            }
        );
        let mut out = [0xa5u8; 16];
        repr.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, bytes);
    }

    #[test]
    fn a_flipped_bit_is_a_checksum_error() {
        let mut bytes = PACKET;
        Packet::new_unchecked(&mut bytes[..]).fill_checksum();
        bytes[15] ^= 0x10;
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&bytes[..])),
            Err(Error::Checksum)
        );
        assert_eq!(
            Packet::new_checked(&PACKET[..11]).err(),
            Some(Error::Truncated)
        );
    }
}
