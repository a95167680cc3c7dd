//! Just enough of the Ethernet / 802.1Q wire format for switching: a checked header view
//! (parsed with `pnet_packet`), the VLAN TCI, tag insertion and stripping, and the 82576 MTA hash.

use bytes::{BufMut, Bytes, BytesMut};
use pnet_packet::ethernet::{EtherType, EtherTypes, EthernetPacket};
use pnet_packet::vlan::VlanPacket;
use serde::{Deserialize, Serialize};

use crate::policy::MacAddr;

/// Field positions of an Ethernet II header and of an 802.1Q tag that follows it (the addresses
/// are read through `pnet_packet`).
mod field {
    use std::ops::Range;
    /// Ethertype of an untagged frame, or the TPID of a tagged one.
    pub const ETHERTYPE: Range<usize> = 12..14;
    /// The TCI of a tag at `ETHERTYPE`.
    pub const TCI: Range<usize> = 14..16;
}

/// Destination + source + ethertype.
pub const ETH_HEADER_LEN: usize = 14;
/// TPID + TCI.
pub const VLAN_TAG_LEN: usize = 4;
/// The frame check sequence, not carried in our frames but counted against frame-size limits.
pub const ETH_FCS_LEN: usize = 4;
/// The TPID the 82576 recognises (VET register default): 802.1Q C-tag.
pub const TPID_8021Q: EtherType = EtherTypes::Vlan;

/// An 802.1Q tag control information word: PCP (3 bits), DEI (1 bit), VID (12 bits).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct VlanTci(pub u16);

impl VlanTci {
    const VID_MASK: u16 = 0x0FFF;
    const DEI_BIT: u16 = 1 << 12;
    const PCP_SHIFT: u16 = 13;

    /// `vid` is truncated to 12 bits and `pcp` to 3.
    #[inline]
    pub fn new(vid: u16, pcp: u8) -> VlanTci {
        VlanTci((u16::from(pcp & 0x7) << Self::PCP_SHIFT) | (vid & Self::VID_MASK))
    }
    #[inline]
    pub fn vid(self) -> u16 {
        self.0 & Self::VID_MASK
    }
    #[inline]
    pub fn pcp(self) -> u8 {
        (self.0 >> Self::PCP_SHIFT) as u8
    }
    #[inline]
    pub fn dei(self) -> bool {
        self.0 & Self::DEI_BIT != 0
    }
}

/// Why a frame could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// Shorter than an Ethernet header.
    TooShort,
    /// TPID 0x8100 but not enough bytes for the TCI and inner ethertype.
    TruncatedTag,
}

/// The switching-relevant header of a frame: addresses and the outer 802.1Q tag, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EthHeader {
    pub dst: MacAddr,
    pub src: MacAddr,
    pub tag: Option<VlanTci>,
    /// The ethertype after the tag (or the only one).
    pub ethertype: EtherType,
}

impl EthHeader {
    /// Parses the header; never panics on any input.
    #[inline]
    pub fn parse(frame: &[u8]) -> Result<EthHeader, WireError> {
        let eth = EthernetPacket::new(frame).ok_or(WireError::TooShort)?;
        let dst = MacAddr(eth.get_destination().octets());
        let src = MacAddr(eth.get_source().octets());
        let outer = eth.get_ethertype();
        if outer != TPID_8021Q {
            return Ok(EthHeader {
                dst,
                src,
                tag: None,
                ethertype: outer,
            });
        }
        let vlan = VlanPacket::new(&frame[field::TCI.start..]).ok_or(WireError::TruncatedTag)?;
        // Read the TCI as one word rather than rebuilding it from pnet's PCP/DEI/VID fields.
        let tci = u16::from_be_bytes([frame[field::TCI.start], frame[field::TCI.start + 1]]);
        Ok(EthHeader {
            dst,
            src,
            tag: Some(VlanTci(tci)),
            ethertype: vlan.get_ethertype(),
        })
    }

    /// Length of the header including the tag.
    pub fn len(&self) -> usize {
        ETH_HEADER_LEN + if self.tag.is_some() { VLAN_TAG_LEN } else { 0 }
    }

    /// Always false: a header is never empty (clippy's `len` companion).
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Builds an Ethernet II frame: addresses, an optional 802.1Q tag, `ethertype`, `payload`. For
/// tests, scenarios and host stacks; the datapath never builds frames from scratch.
pub fn build_frame(
    dst: MacAddr,
    src: MacAddr,
    tag: Option<VlanTci>,
    ethertype: EtherType,
    payload: &[u8],
) -> Bytes {
    let mut out = BytesMut::with_capacity(ETH_HEADER_LEN + VLAN_TAG_LEN + payload.len());
    out.put_slice(&dst.0);
    out.put_slice(&src.0);
    if let Some(tci) = tag {
        out.put_u16(TPID_8021Q.0);
        out.put_u16(tci.0);
    }
    out.put_u16(ethertype.0);
    out.put_slice(payload);
    out.freeze()
}

/// `frame` (untagged) with an 802.1Q tag `tci` inserted after the source address.
pub fn insert_tag(frame: &[u8], tci: VlanTci) -> Bytes {
    let mut out = BytesMut::with_capacity(frame.len() + VLAN_TAG_LEN);
    out.put_slice(&frame[..field::ETHERTYPE.start]);
    out.put_u16(TPID_8021Q.0);
    out.put_u16(tci.0);
    out.put_slice(&frame[field::ETHERTYPE.start..]);
    out.freeze()
}

/// `frame` (tagged) without its outer tag.
pub fn strip_tag(frame: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(frame.len().saturating_sub(VLAN_TAG_LEN));
    out.put_slice(&frame[..field::ETHERTYPE.start]);
    out.put_slice(&frame[field::TCI.end..]);
    out.freeze()
}

/// The 82576 multicast table array hash with RCTL.MO = 0 (spec §2.6): 12 bits taken from the
/// last two bytes of the destination address.
#[inline]
pub fn mta_hash(mac: MacAddr) -> u16 {
    let b = mac.0;
    ((u16::from(b[4]) >> 4) | (u16::from(b[5]) << 4)) & 0x0FFF
}

/// A 4096-bit set indexed by a 12-bit value (a VLAN id or an MTA hash).
#[derive(Clone, PartialEq, Eq)]
pub struct Bitmap4096([u64; 64]);

impl Default for Bitmap4096 {
    fn default() -> Self {
        Bitmap4096([0; 64])
    }
}

impl std::fmt::Debug for Bitmap4096 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl Bitmap4096 {
    pub fn from_values<'a>(values: impl IntoIterator<Item = &'a u16>) -> Bitmap4096 {
        let mut map = Bitmap4096::default();
        for &v in values {
            map.insert(v);
        }
        map
    }
    /// Values above 4095 are ignored (callers validate first).
    pub fn insert(&mut self, v: u16) {
        if let Some(word) = self.0.get_mut(usize::from(v >> 6)) {
            *word |= 1 << (v & 63);
        }
    }
    #[inline]
    pub fn contains(&self, v: u16) -> bool {
        self.0
            .get(usize::from(v >> 6))
            .is_some_and(|word| word & (1 << (v & 63)) != 0)
    }
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (0..4096u16).filter(|&v| self.contains(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARP_UNTAGGED: [u8; 16] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst
        0x02, 0, 0, 0, 0, 0x10, // src
        0x08, 0x06, // ARP
        0xaa, 0xbb,
    ];
    const ARP_TAGGED: [u8; 20] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst
        0x02, 0, 0, 0, 0, 0x10, // src
        0x81, 0x00, 0x60, 0x0a, // TPID, PCP 3, VID 10
        0x08, 0x06, // ARP
        0xaa, 0xbb,
    ];

    #[test]
    fn tci_fields() {
        let tci = VlanTci::new(10, 3);
        assert_eq!(tci.0, 0x600a);
        assert_eq!((tci.vid(), tci.pcp(), tci.dei()), (10, 3, false));
        assert!(VlanTci(0x1000).dei());
    }

    #[test]
    fn parses_untagged_and_tagged_headers() {
        let h = EthHeader::parse(&ARP_UNTAGGED).unwrap();
        assert_eq!(h.dst, MacAddr::BROADCAST);
        assert_eq!(h.src, MacAddr([2, 0, 0, 0, 0, 0x10]));
        assert_eq!(h.tag, None);
        assert_eq!(h.ethertype, EtherTypes::Arp);
        assert_eq!(h.len(), 14);
        let t = EthHeader::parse(&ARP_TAGGED).unwrap();
        assert_eq!(t.tag, Some(VlanTci::new(10, 3)));
        assert_eq!(t.ethertype, EtherTypes::Arp);
        assert_eq!(t.len(), 18);
    }

    #[test]
    fn short_and_truncated_frames_are_errors_not_panics() {
        for n in 0..14 {
            assert_eq!(EthHeader::parse(&ARP_TAGGED[..n]), Err(WireError::TooShort));
        }
        for n in 14..18 {
            assert_eq!(
                EthHeader::parse(&ARP_TAGGED[..n]),
                Err(WireError::TruncatedTag)
            );
        }
        assert!(EthHeader::parse(&ARP_TAGGED[..18]).is_ok());
    }

    #[test]
    fn build_frame_matches_literal_bytes() {
        let src = MacAddr([2, 0, 0, 0, 0, 0x10]);
        let tagged = build_frame(
            MacAddr::BROADCAST,
            src,
            Some(VlanTci::new(10, 3)),
            EtherTypes::Arp,
            &[0xaa, 0xbb],
        );
        assert_eq!(&tagged[..], &ARP_TAGGED[..]);
        let plain = build_frame(
            MacAddr::BROADCAST,
            src,
            None,
            EtherTypes::Arp,
            &[0xaa, 0xbb],
        );
        assert_eq!(&plain[..], &ARP_UNTAGGED[..]);
    }

    #[test]
    fn insert_and_strip_round_trip() {
        let tagged = insert_tag(&ARP_UNTAGGED, VlanTci::new(10, 3));
        assert_eq!(&tagged[..], &ARP_TAGGED[..]);
        assert_eq!(&strip_tag(&tagged)[..], &ARP_UNTAGGED[..]);
    }

    #[test]
    fn mta_hash_matches_igb_for_all_hosts_group() {
        // 01:00:5e:00:00:01: (0x00 >> 4) | (0x01 << 4) = 0x010.
        assert_eq!(mta_hash(MacAddr([1, 0, 0x5e, 0, 0, 1])), 0x010);
        // 33:33:ff:12:34:56: (0x34 >> 4) | (0x56 << 4) = 0x563.
        assert_eq!(
            mta_hash(MacAddr([0x33, 0x33, 0xff, 0x12, 0x34, 0x56])),
            0x563
        );
    }

    #[test]
    fn bitmap_holds_12_bit_values() {
        let map = Bitmap4096::from_values(&[0, 10, 4095]);
        assert!(map.contains(0) && map.contains(10) && map.contains(4095));
        assert!(!map.contains(11) && !map.contains(4096));
        assert_eq!(map.iter().collect::<Vec<_>>(), vec![0, 10, 4095]);
    }
}
