//! Which RX queue of an 82599 VF a frame lands in: receive-side scaling as ixgbe sets it up
//! for the pools (`ixgbe_setup_mrqc`, `ixgbe_setup_reta`). The PF's Toeplitz key and its
//! 128-entry redirection table are shared by every pool; a pool uses as many low bits of the
//! entry as VFPSRTYPE.RQPL gives it (ixgbevf's `ixgbevf_setup_psrtype` sets RQPL = 1, two
//! queues, when it runs more than one RX queue).
//!
//! The hashed fields are the ones ixgbe enables in MRQC: TCP over IPv4 or IPv6 hashes the
//! addresses and ports, any other IP packet (UDP too: ixgbe leaves the UDP fields off by
//! default) and a fragment hash the addresses only, and a frame that is not IP hashes to 0.
//! The key and table are those `mailbox::ixgbe`'s agent reports with GET_RSS_KEY and
//! GET_RETA, so `ethtool -x` in the guest shows the table the device uses.

use std::sync::{Arc, OnceLock};

use eswitch::wire::{
    EtherTypes, EthernetFrame, IpNextHeaderProtocols, Ipv4Packet, Ipv6Packet, TcpPacket,
};
use mailbox::ixgbe::regs::limits::{RETA_ENTRIES, RSS_KEY_BYTES};

/// The longest input RSS hashes: two IPv6 addresses and two ports.
pub const MAX_HASH_INPUT: usize = 36;

/// The Toeplitz hash of `input` under `key` (the Microsoft RSS hash): for every set bit of
/// the input, XOR in the 32 key bits that start at the same bit position. Bit by bit, as the
/// specification defines it; [`Toeplitz`] computes the same by table.
pub fn toeplitz(key: &[u8; RSS_KEY_BYTES], input: &[u8]) -> u32 {
    let mut hash = 0u32;
    // The key's 32-bit window at the current input bit, and the key bits still to shift in.
    let mut window = u32::from_be_bytes([key[0], key[1], key[2], key[3]]);
    for (i, &byte) in input.iter().enumerate() {
        let next = key.get(i + 4).copied().unwrap_or(0);
        for bit in 0..8 {
            if byte & (0x80 >> bit) != 0 {
                hash ^= window;
            }
            window = (window << 1) | u32::from((next >> (7 - bit)) & 1);
        }
    }
    hash
}

/// The Toeplitz hash under one key, by table: for each byte position of the input and each
/// value of its high and low nibble, the XOR of the key windows those bits select. A hash is
/// then two lookups per input byte instead of eight conditional XORs and shifts.
#[derive(Clone, PartialEq, Eq)]
pub struct Toeplitz {
    /// `nibbles[2 * i]` for byte `i`'s high nibble, `nibbles[2 * i + 1]` for its low one.
    nibbles: Box<[[u32; 16]; 2 * MAX_HASH_INPUT]>,
}

impl Toeplitz {
    pub fn new(key: &[u8; RSS_KEY_BYTES]) -> Toeplitz {
        // The 32 key bits from bit `at` on (bit 0: the first byte's most significant); a
        // 40-byte key has them for every bit of a 36-byte input.
        let window = |at: usize| {
            (0..32).fold(0u32, |w, k| {
                let bit = at + k;
                let set = key
                    .get(bit / 8)
                    .is_some_and(|b| b & (0x80 >> (bit % 8)) != 0);
                (w << 1) | u32::from(set)
            })
        };
        let mut nibbles = Box::new([[0u32; 16]; 2 * MAX_HASH_INPUT]);
        for (half, table) in nibbles.iter_mut().enumerate() {
            for (value, entry) in table.iter_mut().enumerate() {
                // The nibble's bits, most significant first, are input bits 4 * half + 0..4.
                *entry = (0..4)
                    .filter(|b| value & (0x8 >> b) != 0)
                    .fold(0, |h, b| h ^ window(4 * half + b));
            }
        }
        Toeplitz { nibbles }
    }

    /// The hash of `input` (at most [`MAX_HASH_INPUT`] bytes; any beyond are not hashed).
    pub fn hash(&self, input: &[u8]) -> u32 {
        input
            .iter()
            .zip(self.nibbles.chunks_exact(2))
            .fold(0, |h, (&byte, t)| {
                h ^ t[0][usize::from(byte >> 4)] ^ t[1][usize::from(byte & 0xF)]
            })
    }
}

impl std::fmt::Debug for Toeplitz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Toeplitz").finish_non_exhaustive()
    }
}

/// The fields RSS hashes in `frame`: source and destination addresses, then source and
/// destination ports for TCP. `None` for a frame that is not IP.
fn hash_input(frame: &[u8], out: &mut [u8; MAX_HASH_INPUT]) -> Option<usize> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    match eth.ethertype() {
        EtherTypes::Ipv4 => {
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            out[..4].copy_from_slice(&ip.src_addr().octets());
            out[4..8].copy_from_slice(&ip.dst_addr().octets());
            let tcp = ip.next_header() == IpNextHeaderProtocols::Tcp && !ip.is_fragment();
            Some(8 + ports(tcp, ip.payload(), &mut out[8..12]))
        }
        EtherTypes::Ipv6 => {
            let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
            out[..16].copy_from_slice(&ip.src_addr().octets());
            out[16..32].copy_from_slice(&ip.dst_addr().octets());
            let tcp = ip.next_header() == IpNextHeaderProtocols::Tcp;
            Some(32 + ports(tcp, ip.payload(), &mut out[32..36]))
        }
        _ => None,
    }
}

/// Copies a TCP segment's two ports into `out`; the bytes written.
fn ports(tcp: bool, l4: &[u8], out: &mut [u8]) -> usize {
    match TcpPacket::new_checked(l4) {
        Ok(seg) if tcp => {
            out[..2].copy_from_slice(&seg.src_port().to_be_bytes());
            out[2..4].copy_from_slice(&seg.dst_port().to_be_bytes());
            4
        }
        _ => 0,
    }
}

/// The PF's RSS setup as a pool sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rss {
    /// The Toeplitz key: private, so that it cannot change under the tables built from it.
    key: [u8; RSS_KEY_BYTES],
    pub reta: [u8; RETA_ENTRIES],
    /// The hash under `key`, shared by every VF with the same key.
    toeplitz: Arc<Toeplitz>,
}

impl Rss {
    /// ixgbe's: the agent's default key and table. Its hash tables are built once per process.
    pub fn ixgbe() -> Rss {
        static DEFAULT: OnceLock<Rss> = OnceLock::new();
        DEFAULT
            .get_or_init(|| {
                let c = mailbox::ixgbe::IxgbeConfig::new(0);
                Rss {
                    key: c.rss_key,
                    reta: c.reta,
                    toeplitz: Arc::new(Toeplitz::new(&c.rss_key)),
                }
            })
            .clone()
    }

    /// The Toeplitz key the hash uses.
    pub fn key(&self) -> &[u8; RSS_KEY_BYTES] {
        &self.key
    }

    /// The RSS hash of `frame` (0 for a frame that is not IP).
    pub fn hash(&self, frame: &[u8]) -> u32 {
        let mut input = [0u8; MAX_HASH_INPUT];
        match hash_input(frame, &mut input) {
            Some(n) => self.toeplitz.hash(&input[..n]),
            None => 0,
        }
    }

    /// The queue in a pool of `1 << rqpl` queues (at most `queues`) that `frame` goes to.
    pub fn queue(&self, frame: &[u8], rqpl: u32, queues: usize) -> usize {
        if rqpl == 0 || queues < 2 {
            return 0;
        }
        let entry = self.reta[(self.hash(frame) & 0x7F) as usize];
        let mask = (1usize << rqpl.min(usize::BITS - 1)) - 1;
        (usize::from(entry) & mask).min(queues - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// The verification suite of Microsoft's RSS specification ("Verifying the RSS Hash
    /// Calculation"), with its key, which is also ixgbe's fixed default here.
    const V4: [(&str, u16, &str, u16, u32, u32); 5] = [
        (
            "66.9.149.187",
            2794,
            "161.142.100.80",
            1766,
            0x323e_8fc2,
            0x51cc_c178,
        ),
        (
            "199.92.111.2",
            14230,
            "65.69.140.83",
            4739,
            0xd718_262a,
            0xc626_b0ea,
        ),
        (
            "24.19.198.95",
            12898,
            "12.22.207.184",
            38024,
            0xd2d0_a5de,
            0x5c2b_394a,
        ),
        (
            "38.27.205.30",
            48228,
            "209.142.163.6",
            2217,
            0x8298_9176,
            0xafc7_327f,
        ),
        (
            "153.39.163.191",
            44251,
            "202.188.127.2",
            1303,
            0x5d18_09c5,
            0x10e8_28a2,
        ),
    ];

    fn v4(src: &str, dst: &str) -> Vec<u8> {
        let (s, d): (Ipv4Addr, Ipv4Addr) = (src.parse().unwrap(), dst.parse().unwrap());
        [s.octets(), d.octets()].concat()
    }

    #[test]
    fn the_hash_matches_the_rss_specifications_ipv4_vectors() {
        let key = *Rss::ixgbe().key();
        for (src, sport, dst, dport, ip_only, with_tcp) in V4 {
            let ip = v4(src, dst);
            assert_eq!(toeplitz(&key, &ip), ip_only, "{src} -> {dst}");
            let mut tcp = ip.clone();
            tcp.extend_from_slice(&sport.to_be_bytes());
            tcp.extend_from_slice(&dport.to_be_bytes());
            assert_eq!(
                toeplitz(&key, &tcp),
                with_tcp,
                "{src}:{sport} -> {dst}:{dport}"
            );
        }
    }

    #[test]
    fn the_hash_matches_the_rss_specifications_ipv6_vector() {
        let key = *Rss::ixgbe().key();
        let s: Ipv6Addr = "3ffe:2501:200:1fff::7".parse().unwrap();
        let d: Ipv6Addr = "3ffe:2501:200:3::1".parse().unwrap();
        let ip = [s.octets(), d.octets()].concat();
        assert_eq!(toeplitz(&key, &ip), 0x2cc1_8cd5);
        let mut tcp = ip.clone();
        tcp.extend_from_slice(&2794u16.to_be_bytes());
        tcp.extend_from_slice(&1766u16.to_be_bytes());
        assert_eq!(toeplitz(&key, &tcp), 0x4020_7d3d);
    }

    /// An untagged Ethernet frame around an IPv4 packet of `proto` from `src` to `dst`, with
    /// a 20-byte L4 header whose first four bytes are the ports.
    fn frame(src: &str, dst: &str, proto: u8, ports: (u16, u16), frag: bool) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20];
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[14] = 0x45;
        f[16..18].copy_from_slice(&40u16.to_be_bytes());
        if frag {
            f[20] = 0x20; // more fragments
        }
        f[22] = 64;
        f[23] = proto;
        f[26..34].copy_from_slice(&v4(src, dst));
        f[34..36].copy_from_slice(&ports.0.to_be_bytes());
        f[36..38].copy_from_slice(&ports.1.to_be_bytes());
        f[46] = 0x50; // TCP data offset 5
        f
    }

    #[test]
    fn tcp_hashes_its_ports_udp_and_fragments_their_addresses_and_non_ip_nothing() {
        let rss = Rss::ixgbe();
        let (src, sport, dst, dport, ip_only, with_tcp) = V4[0];
        assert_eq!(
            rss.hash(&frame(src, dst, 6, (sport, dport), false)),
            with_tcp
        );
        assert_eq!(
            rss.hash(&frame(src, dst, 17, (sport, dport), false)),
            ip_only
        );
        assert_eq!(rss.hash(&frame(src, dst, 6, (sport, dport), true)), ip_only);
        let mut arp = frame(src, dst, 6, (sport, dport), false);
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(rss.hash(&arp), 0);
        assert_eq!(rss.hash(&[0u8; 10]), 0);
    }

    proptest::proptest! {
        /// The table computes the specification's bit-by-bit hash, for any key and any input
        /// up to the longest RSS hashes.
        #[test]
        fn the_table_hash_is_the_bit_by_bit_hash(
            key in proptest::array::uniform32(proptest::num::u8::ANY),
            key_tail in proptest::array::uniform8(proptest::num::u8::ANY),
            input in proptest::collection::vec(proptest::num::u8::ANY, 0..=MAX_HASH_INPUT),
        ) {
            let mut k = [0u8; RSS_KEY_BYTES];
            k[..32].copy_from_slice(&key);
            k[32..].copy_from_slice(&key_tail);
            proptest::prop_assert_eq!(Toeplitz::new(&k).hash(&input), toeplitz(&k, &input));
        }

        /// Any bytes the guest's peer sends, with any VFPSRTYPE: no panic, and a queue the pool
        /// has; an IPv4 or IPv6 header, truncated anywhere, too.
        #[test]
        fn any_frame_gets_a_queue_of_the_pool(
            mut frame in proptest::collection::vec(proptest::num::u8::ANY, 0..128),
            ethertype in proptest::sample::select(vec![0x0800u16, 0x86dd, 0x8100, 0x0806]),
            psrtype in proptest::num::u32::ANY,
            queues in 0usize..4,
        ) {
            if frame.len() >= 14 {
                frame[12..14].copy_from_slice(&ethertype.to_be_bytes());
            }
            let q = Rss::ixgbe().queue(&frame, psrtype >> 29, queues);
            proptest::prop_assert!(q < queues.max(1));
        }
    }

    #[test]
    fn the_queue_is_the_table_entry_under_the_pools_mask() {
        let rss = Rss::ixgbe();
        let (src, sport, dst, dport, _, with_tcp) = V4[1];
        let f = frame(src, dst, 6, (sport, dport), false);
        let entry = usize::from(rss.reta[(with_tcp & 0x7F) as usize]);
        assert_eq!(rss.queue(&f, 1, 2), entry & 1);
        assert_eq!(rss.queue(&f, 0, 2), 0, "RQPL 0: one queue");
        assert_eq!(rss.queue(&f, 1, 1), 0, "a pool of one queue");
        assert!(rss.queue(&f, 7, 2) < 2, "never past the pool's queues");
        // Many flows spread over both queues.
        let mut seen = [0usize; 2];
        for port in 0..64 {
            seen[rss.queue(&frame(src, dst, 6, (40000 + port, 5201), false), 1, 2)] += 1;
        }
        assert!(seen[0] > 8 && seen[1] > 8, "{seen:?}");
    }
}
