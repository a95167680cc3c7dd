//! The Internet checksum (RFC 1071) and the CRC32c of SCTP (RFC 9260 Appendix A): the one place
//! every protocol of this layer, and the device model's offload engines, compute them.
//!
//! Two levels:
//! * folded 16-bit sums, as the RFCs describe them: [`data`], [`combine`],
//!   [`pseudo_header_v4`], [`pseudo_header_v6`]. A header's checksum field holds the one's
//!   complement of the folded sum over the header (and pseudo-header) with the field zeroed:
//!   `!combine(&[pseudo, data(bytes)])`. A received packet is intact when the sum over it,
//!   field included, folds to `0xFFFF`.
//! * the unfolded accumulator the offload engines run over whole frames: [`sum`] adds `data`
//!   to a `u64`, [`fold`] reduces to 16 bits at the end. The sum is exact modulo 2^16 − 1,
//!   which is all the one's-complement sum is: callers may add pseudo-header terms to it
//!   before they fold.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::IpNextHeaderProtocol;

/// Adds `data` to the unfolded one's-complement sum `initial`, as big-endian 16-bit words (an
/// odd last byte padded with zero). Fold the result with [`fold`].
///
/// This is the per-byte cost of every checksum the model computes or verifies, so it is written
/// to vectorise: it sums native-endian 32-bit words in eight independent lanes. Both shortcuts
/// are exact modulo 2^16 − 1: a 32-bit word is two 16-bit words because 2^16 ≡ 1 (RFC 1071
/// §2(C), parallel summation), and summing in the other byte order gives the byte-swapped sum
/// (§2(B), byte-order independence), swapped back once at the end. A lane cannot carry out of
/// its `u64` for any buffer shorter than 2^32 words.
#[inline]
pub fn sum(data: &[u8], initial: u64) -> u64 {
    const LANES: usize = 8;
    let word = |w: &[u8]| u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
    let mut lanes = [0u64; LANES];
    let mut blocks = data.chunks_exact(4 * LANES);
    for block in &mut blocks {
        for (lane, w) in lanes.iter_mut().zip(block.chunks_exact(4)) {
            *lane += word(w);
        }
    }
    let mut acc: u64 = lanes.iter().sum();
    let mut words = blocks.remainder().chunks_exact(4);
    for w in &mut words {
        acc += word(w);
    }
    let rest = words.remainder();
    let mut tail = [0u8; 4];
    tail[..rest.len()].copy_from_slice(rest);
    acc += word(&tail);
    // Folding first keeps the swap exact: a folded sum is 0 only for all-zero data, as the
    // big-endian sum is.
    initial + u64::from(u16::from_be(fold(acc)))
}

/// Folds an unfolded one's-complement sum to 16 bits with end-around carries (RFC 1071 §4.1).
#[inline]
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xFFFF {
        acc = (acc & 0xFFFF) + (acc >> 16);
    }
    acc as u16
}

/// The folded one's-complement sum of `data` as 16-bit big-endian words (an odd last byte
/// padded with zero). Not complemented.
#[inline]
pub fn data(data: &[u8]) -> u16 {
    fold(sum(data, 0))
}

/// The folded one's-complement sum of partial sums, each from [`data`] or a pseudo-header.
#[inline]
pub fn combine(checksums: &[u16]) -> u16 {
    fold(checksums.iter().map(|&c| u64::from(c)).sum())
}

/// The folded sum of the IPv4 pseudo-header of a TCP, UDP or other upper-layer checksum
/// (RFC 9293 §3.1, RFC 768): source, destination, zero + protocol, and the upper-layer length.
#[inline]
pub fn pseudo_header_v4(
    src: &Ipv4Addr,
    dst: &Ipv4Addr,
    protocol: IpNextHeaderProtocol,
    length: u32,
) -> u16 {
    let acc = sum(&src.octets(), 0) + sum(&dst.octets(), 0);
    fold(acc + u64::from(protocol.0) + u64::from(length))
}

/// The folded sum of the IPv6 pseudo-header (RFC 8200 §8.1): source, destination, the 32-bit
/// upper-layer packet length, zero + next header (the upper-layer protocol, not an extension
/// header's).
#[inline]
pub fn pseudo_header_v6(
    src: &Ipv6Addr,
    dst: &Ipv6Addr,
    next_header: IpNextHeaderProtocol,
    length: u32,
) -> u16 {
    let acc = sum(&src.octets(), 0) + sum(&dst.octets(), 0);
    fold(acc + u64::from(next_header.0) + u64::from(length))
}

/// The pseudo-header of either family. A mixed pair (which no packet carries) sums each address
/// in its own width.
#[inline]
pub fn pseudo_header(
    src: &IpAddr,
    dst: &IpAddr,
    protocol: IpNextHeaderProtocol,
    length: u32,
) -> u16 {
    let addr = |a: &IpAddr| match a {
        IpAddr::V4(v4) => sum(&v4.octets(), 0),
        IpAddr::V6(v6) => sum(&v6.octets(), 0),
    };
    fold(addr(src) + addr(dst) + u64::from(protocol.0) + u64::from(length))
}

/// The reflected CRC32c (Castagnoli) polynomial.
const CRC32C_POLY: u32 = 0x82F6_3B78;

/// CRC32c of every byte value, built at compile time.
const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ CRC32C_POLY
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// CRC32c of the concatenation of `parts` (initial value and final xor `0xFFFF_FFFF`,
/// RFC 9260 Appendix A), without copying them together.
pub fn crc32c_parts(parts: &[&[u8]]) -> u32 {
    let mut crc = !0u32;
    for part in parts {
        for &b in *part {
            crc = CRC32C_TABLE[usize::from((crc as u8) ^ b)] ^ (crc >> 8);
        }
    }
    !crc
}

/// CRC32c of `data`, as SCTP uses it (RFC 9260 Appendix A).
#[inline]
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c_parts(&[data])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::IpNextHeaderProtocols;

    #[test]
    fn rfc1071_example_sums_to_ddf2() {
        // RFC 1071 §3 example: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2.
        let bytes = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(data(&bytes), 0xddf2);
        assert_eq!(fold(sum(&bytes, 0)), 0xddf2);
    }

    #[test]
    fn odd_lengths_pad_with_zero_and_carries_wrap() {
        assert_eq!(data(&[0xFF, 0xFF, 0xFF, 0xFF]), 0xFFFF);
        assert_eq!(data(&[0x12]), 0x1200);
        assert_eq!(data(&[0x00, 0x01, 0xFF]), 0xFF01);
        assert_eq!(fold(0x1_FFFF), 0x0001);
        assert_eq!(data(&[]), 0);
    }

    #[test]
    fn combine_adds_with_end_around_carry() {
        assert_eq!(combine(&[0xFFFF, 0x0001]), 0x0001);
        assert_eq!(combine(&[0x1234, 0x4321]), 0x5555);
        assert_eq!(combine(&[]), 0);
    }

    #[test]
    fn pseudo_headers_sum_addresses_protocol_and_length() {
        let v4 = pseudo_header_v4(
            &Ipv4Addr::new(10, 0, 0, 1),
            &Ipv4Addr::new(10, 0, 0, 2),
            IpNextHeaderProtocols::Udp,
            12,
        );
        // 0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 17 + 12.
        assert_eq!(v4, 0x1420);
        let mixed = pseudo_header(
            &IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            &IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            IpNextHeaderProtocols::Udp,
            12,
        );
        assert_eq!(mixed, v4);
        let v6 = pseudo_header_v6(
            &"fe80::1".parse().unwrap(),
            &"fe80::2".parse().unwrap(),
            IpNextHeaderProtocols::Tcp,
            0x1_0000,
        );
        // 2 × 0xfe80 + 1 + 2 + 6 + 0x1_0000 (the length's high word counts too).
        assert_eq!(v6, fold(2 * 0xfe80 + 3 + 6 + 0x1_0000));
    }

    #[test]
    fn crc32c_check_values() {
        // The CRC catalogue's check value for CRC-32C ("123456789").
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
        assert_eq!(crc32c_parts(&[b"1234", b"", b"56789"]), 0xE306_9283);
    }
}
