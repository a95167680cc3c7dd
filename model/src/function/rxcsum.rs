//! RX checksum status (spec §2.8 write-back status: IPCS, L4CS, UDPCS), as the 82576 reports
//! it for the frames it receives: the device verifies the IPv4 header checksum and the TCP/UDP
//! checksum and tells the driver, so that igbvf can mark the skb CHECKSUM_UNNECESSARY
//! (`igbvf_rx_checksum_adv`).
//!
//! Only a checksum that was verified correct sets a bit. Anything else (not IP, fragments,
//! IPv6 extension headers, truncated or inconsistent lengths, a wrong checksum, UDP/IPv4
//! without a checksum) leaves the bits clear: the guest's stack then verifies in software,
//! which is always safe. Error bits (IPE/L4E) are never set.

use crate::function::desc::rx_status;
use crate::function::offload::{fold, sum_words};

const ETH_HLEN: usize = 14;
const TPID_8021Q: u16 = 0x8100;
const TPID_8021AD: u16 = 0x88A8;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86DD;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

fn be16(f: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*f.get(o)?, *f.get(o + 1)?]))
}

/// One's-complement sum of `data`, not folded (the offload engine's arithmetic).
fn sum(data: &[u8]) -> u64 {
    sum_words(data, 0)
}

/// The status bits to add to the EOP write-back of `frame`.
pub fn status(frame: &[u8]) -> u32 {
    let mut off = ETH_HLEN - 2;
    let Some(mut ethertype) = be16(frame, off) else {
        return 0;
    };
    off += 2;
    for _ in 0..2 {
        if ethertype == TPID_8021Q || ethertype == TPID_8021AD {
            let Some(inner) = be16(frame, off + 2) else {
                return 0;
            };
            ethertype = inner;
            off += 4;
        }
    }
    match ethertype {
        ETHERTYPE_IPV4 => ipv4(frame, off),
        ETHERTYPE_IPV6 => ipv6(frame, off),
        _ => 0,
    }
}

fn ipv4(frame: &[u8], off: usize) -> u32 {
    let Some(ip) = frame.get(off..) else {
        return 0;
    };
    let Some(&vihl) = ip.first() else {
        return 0;
    };
    let ihl = usize::from(vihl & 0x0F) * 4;
    if vihl >> 4 != 4 || ihl < 20 {
        return 0;
    }
    let (Some(total), Some(frag)) = (be16(ip, 2), be16(ip, 6)) else {
        return 0;
    };
    let total = usize::from(total);
    if total < ihl || total > ip.len() {
        return 0;
    }
    if fold(sum(&ip[..ihl])) != 0xFFFF {
        return 0;
    }
    let mut st = rx_status::IPCS;
    // Fragments: the L4 checksum covers the reassembled datagram.
    if frag & 0x3FFF != 0 {
        return st;
    }
    let proto = ip[9];
    let l4 = &ip[ihl..total];
    let pseudo = sum(&ip[12..20]) + u64::from(proto) + l4.len() as u64;
    st |= l4_status(proto, l4, pseudo, true);
    st
}

fn ipv6(frame: &[u8], off: usize) -> u32 {
    let Some(ip) = frame.get(off..) else {
        return 0;
    };
    if ip.len() < 40 || ip[0] >> 4 != 6 {
        return 0;
    }
    let Some(plen) = be16(ip, 4) else {
        return 0;
    };
    let plen = usize::from(plen);
    if 40 + plen > ip.len() {
        return 0;
    }
    let proto = ip[6];
    let l4 = &ip[40..40 + plen];
    let pseudo = sum(&ip[8..40]) + u64::from(proto) + l4.len() as u64;
    l4_status(proto, l4, pseudo, false)
}

fn l4_status(proto: u8, l4: &[u8], pseudo: u64, ipv4: bool) -> u32 {
    let ok = |l4: &[u8]| fold(pseudo + sum(l4)) == 0xFFFF;
    match proto {
        PROTO_TCP if l4.len() >= 20 && ok(l4) => rx_status::L4CS,
        PROTO_UDP if l4.len() >= 8 => {
            let Some(udp_len) = be16(l4, 4) else {
                return 0;
            };
            let Some(csum) = be16(l4, 6) else {
                return 0;
            };
            if usize::from(udp_len) != l4.len() || (csum == 0 && ipv4) {
                // No checksum (IPv4), or a length the pseudo-header does not cover.
                return 0;
            }
            if ok(l4) {
                rx_status::L4CS | rx_status::UDPCS
            } else {
                0
            }
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid IPv4/UDP frame with a 4-byte payload (checksums computed by hand).
    fn udp4() -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let mut ip = vec![
            0x45, 0, 0, 32, 0, 1, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let c = !fold(sum(&ip));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let mut udp = vec![0x30, 0x39, 0x00, 0x35, 0, 12, 0, 0, 1, 2, 3, 4];
        let pseudo = sum(&ip[12..20]) + 17 + 12;
        let uc = !fold(pseudo + sum(&udp));
        udp[6..8].copy_from_slice(&uc.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&udp);
        f
    }

    #[test]
    fn valid_udp4_reports_ip_and_l4_checksums() {
        assert_eq!(
            status(&udp4()),
            rx_status::IPCS | rx_status::L4CS | rx_status::UDPCS
        );
    }

    #[test]
    fn a_flipped_payload_bit_clears_the_l4_bits_only() {
        let mut f = udp4();
        let last = f.len() - 1;
        f[last] ^= 1;
        assert_eq!(status(&f), rx_status::IPCS);
    }

    #[test]
    fn a_bad_ip_header_reports_nothing() {
        let mut f = udp4();
        f[14 + 8] = 1;
        assert_eq!(status(&f), 0);
    }

    #[test]
    fn udp4_without_checksum_reports_no_l4() {
        let mut f = udp4();
        f[14 + 20 + 6..14 + 20 + 8].copy_from_slice(&[0, 0]);
        assert_eq!(status(&f), rx_status::IPCS);
    }

    #[test]
    fn vlan_tagged_frames_are_parsed_past_the_tag() {
        let f = udp4();
        let mut t = f[..12].to_vec();
        t.extend_from_slice(&[0x81, 0x00, 0x00, 0x0A]);
        t.extend_from_slice(&f[12..]);
        assert_eq!(status(&t), status(&f));
    }

    #[test]
    fn truncated_and_garbage_frames_report_nothing() {
        let f = udp4();
        for n in 0..f.len() {
            let _ = status(&f[..n]);
        }
        assert_eq!(status(&f[..30]), 0);
        assert_eq!(status(&[0xFF; 64]), 0);
    }
}
