//! Ethernet II frames (RFC 894: addresses, then a type field) with up to two VLAN tags in front
//! of the ethertype: IEEE 802.1Q C-tags (TPID 0x8100) and S-tags (TPID 0x88A8), outer first.
//! The FCS is not part of our frames; [`FCS_LEN`] is counted against frame-size limits only.

use std::fmt;

use super::{be, Error, EtherType, EtherTypes, Field, Rest, Result};
use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};

/// A 48-bit Ethernet address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const ZERO: MacAddr = MacAddr([0; 6]);
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// The address in the first six bytes of `bytes`; `None` when there are fewer.
    #[inline]
    pub fn from_bytes(bytes: &[u8]) -> Option<MacAddr> {
        bytes.get(..6)?.try_into().ok().map(MacAddr)
    }
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    #[inline]
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }
    /// The group bit (the first octet's least significant): broadcast included.
    #[inline]
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
    #[inline]
    pub fn is_broadcast(&self) -> bool {
        self.0 == [0xff; 6]
    }
    /// A valid unicast station address: not multicast, not all zeros.
    #[inline]
    pub fn is_valid_unicast(&self) -> bool {
        !self.is_zero() && !self.is_multicast()
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a string is not a MAC address.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a MAC address (want six hex octets separated by ':'): {0:?}")]
pub struct ParseMacError(pub String);

impl std::str::FromStr for MacAddr {
    type Err = ParseMacError;

    fn from_str(s: &str) -> core::result::Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in out.iter_mut() {
            let part = parts.next().ok_or_else(|| ParseMacError(s.to_owned()))?;
            if part.is_empty() || part.len() > 2 {
                return Err(ParseMacError(s.to_owned()));
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| ParseMacError(s.to_owned()))?;
        }
        if parts.next().is_some() {
            return Err(ParseMacError(s.to_owned()));
        }
        Ok(MacAddr(out))
    }
}

impl Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> core::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> core::result::Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An 802.1Q tag control information word: PCP (3 bits), DEI (1 bit), VID (12 bits)
/// (IEEE 802.1Q §9.6).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default, Serialize, Deserialize)]
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

/// Destination + source: where an inserted tag goes.
pub const ADDRS_LEN: usize = 12;
/// Destination + source + ethertype, without tags.
pub const HEADER_LEN: usize = ADDRS_LEN + 2;
/// One tag: TPID + TCI.
pub const VLAN_TAG_LEN: usize = 4;
/// Tags a frame view recognises in front of the ethertype; a third TPID reads as the ethertype.
pub const MAX_TAGS: usize = 2;
/// The frame check sequence, not carried in our frames but counted against frame-size limits.
pub const FCS_LEN: usize = 4;
/// The shortest frame without FCS: the header and 46 bytes of data (RFC 894); shorter ones get
/// padded.
pub const MIN_FRAME_LEN: usize = 60;

/// Whether an ethertype field holds a TPID this layer reads as a tag.
#[inline]
pub fn is_tpid(ethertype: EtherType) -> bool {
    ethertype == EtherTypes::Vlan || ethertype == EtherTypes::PBridge
}

/// One VLAN tag: its TPID (0x8100 C-tag or 0x88A8 S-tag) and its TCI.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct VlanTag {
    pub tpid: EtherType,
    pub tci: VlanTci,
}

impl VlanTag {
    /// An 802.1Q C-tag (TPID 0x8100), the tag the 82576 inserts and strips (VET default).
    #[inline]
    pub fn dot1q(tci: VlanTci) -> VlanTag {
        VlanTag {
            tpid: EtherTypes::Vlan,
            tci,
        }
    }
    /// An 802.1ad S-tag (TPID 0x88A8).
    #[inline]
    pub fn dot1ad(tci: VlanTci) -> VlanTag {
        VlanTag {
            tpid: EtherTypes::PBridge,
            tci,
        }
    }
    /// The tag as it sits on the wire.
    #[inline]
    pub fn to_bytes(self) -> [u8; VLAN_TAG_LEN] {
        let [t0, t1] = self.tpid.0.to_be_bytes();
        let [c0, c1] = self.tci.0.to_be_bytes();
        [t0, t1, c0, c1]
    }
}

/// The tags of a frame, outer first: none, one or two. Copy, no allocation.
#[derive(Clone, Copy)]
pub struct VlanTags {
    len: u8,
    tags: [VlanTag; MAX_TAGS],
}

impl VlanTags {
    const EMPTY_SLOT: VlanTag = VlanTag {
        tpid: EtherType(0),
        tci: VlanTci(0),
    };
    pub const NONE: VlanTags = VlanTags {
        len: 0,
        tags: [Self::EMPTY_SLOT; MAX_TAGS],
    };

    pub fn one(tag: VlanTag) -> VlanTags {
        VlanTags {
            len: 1,
            tags: [tag, Self::EMPTY_SLOT],
        }
    }
    pub fn two(outer: VlanTag, inner: VlanTag) -> VlanTags {
        VlanTags {
            len: 2,
            tags: [outer, inner],
        }
    }
    /// The tags of an optional single tag.
    pub fn from_outer(tag: Option<VlanTag>) -> VlanTags {
        tag.map_or(VlanTags::NONE, VlanTags::one)
    }
    /// Adds `tag` behind the present ones; `Err(Unsupported)` when [`MAX_TAGS`] are there.
    pub fn push(&mut self, tag: VlanTag) -> Result<()> {
        let slot = self
            .tags
            .get_mut(usize::from(self.len))
            .ok_or(Error::Unsupported)?;
        *slot = tag;
        self.len += 1;
        Ok(())
    }
    #[inline]
    pub fn as_slice(&self) -> &[VlanTag] {
        &self.tags[..usize::from(self.len)]
    }
    #[inline]
    pub fn outer(&self) -> Option<VlanTag> {
        self.as_slice().first().copied()
    }
    /// The second tag, when there are two.
    #[inline]
    pub fn inner(&self) -> Option<VlanTag> {
        self.as_slice().get(1).copied()
    }
    #[inline]
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Default for VlanTags {
    fn default() -> Self {
        VlanTags::NONE
    }
}

impl PartialEq for VlanTags {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for VlanTags {}

impl fmt::Debug for VlanTags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

mod field {
    use super::{Field, Rest};
    pub const DESTINATION: Field = 0..6;
    pub const SOURCE: Field = 6..12;
    /// The ethertype of an untagged frame, or the TPID of the outer tag; each tag moves the
    /// next type field [`super::VLAN_TAG_LEN`] further.
    pub const ETHERTYPE: Field = 12..14;
    /// The TCI behind the type field at `ETHERTYPE`.
    pub const TCI: Field = 14..16;
    /// Where the outer tag starts (an inserted tag goes here).
    pub const TAGS: Rest = 12..;
}

view! {
    /// A read/write view of an Ethernet II frame with up to [`MAX_TAGS`] VLAN tags.
    ///
    /// The layout (how many tags) is read from the TPIDs each time, so a setter that writes a
    /// TPID changes it; accessors stay within the buffer whatever the bytes say, but read
    /// defaults (zero addresses, no tags) from one shorter than the header.
    Frame
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// `Err(Truncated)` unless the buffer holds the addresses, every tag its TPIDs announce
    /// (at most [`MAX_TAGS`]) and the ethertype behind them.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        let mut header = HEADER_LEN;
        if data.len() < header {
            return Err(Error::Truncated);
        }
        for _ in 0..MAX_TAGS {
            if !is_tpid(EtherType(be::u16_at(data, header - 2))) {
                break;
            }
            header += VLAN_TAG_LEN;
            if data.len() < header {
                return Err(Error::Truncated);
            }
        }
        Ok(())
    }

    /// The type field at `at`, if the buffer holds it.
    #[inline]
    fn type_at(&self, at: usize) -> Option<EtherType> {
        let data = self.buffer.as_ref();
        let bytes = data.get(at..at + 2)?;
        Some(EtherType(u16::from_be_bytes([bytes[0], bytes[1]])))
    }

    /// How many tags precede the ethertype (0..=[`MAX_TAGS`]).
    #[inline]
    pub fn tag_count(&self) -> usize {
        self.tags().len()
    }

    /// Header length: addresses, tags, ethertype.
    #[inline]
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.tag_count() * VLAN_TAG_LEN
    }

    #[inline]
    pub fn dst_addr(&self) -> MacAddr {
        MacAddr::from_bytes(self.buffer.as_ref()).unwrap_or_default()
    }

    #[inline]
    pub fn src_addr(&self) -> MacAddr {
        self.buffer
            .as_ref()
            .get(field::SOURCE)
            .and_then(MacAddr::from_bytes)
            .unwrap_or_default()
    }

    /// All tags, outer first. A TPID counts only when its tag and the type field behind it lie
    /// in the buffer, which [`Frame::check_len`] guarantees.
    #[inline]
    pub fn tags(&self) -> VlanTags {
        let data = self.buffer.as_ref();
        let mut tags = VlanTags::NONE;
        let mut at = field::ETHERTYPE.start;
        while tags.len() < MAX_TAGS {
            let Some(b) = data.get(at..at + VLAN_TAG_LEN + 2) else {
                break;
            };
            let tpid = EtherType(u16::from_be_bytes([b[0], b[1]]));
            if !is_tpid(tpid) {
                break;
            }
            tags.tags[tags.len()] = VlanTag {
                tpid,
                tci: VlanTci(u16::from_be_bytes([b[2], b[3]])),
            };
            tags.len += 1;
            at += VLAN_TAG_LEN;
        }
        tags
    }

    /// Tag `index` (0 = outer), if the frame has that many.
    #[inline]
    pub fn tag(&self, index: usize) -> Option<VlanTag> {
        self.tags().as_slice().get(index).copied()
    }

    /// The outer tag; the switch's per-frame question, so read without walking further.
    #[inline]
    pub fn outer_tag(&self) -> Option<VlanTag> {
        let b = self
            .buffer
            .as_ref()
            .get(field::ETHERTYPE.start..field::TCI.end + 2)?;
        let tpid = EtherType(u16::from_be_bytes([b[0], b[1]]));
        is_tpid(tpid).then(|| VlanTag {
            tpid,
            tci: VlanTci(u16::from_be_bytes([b[2], b[3]])),
        })
    }

    /// The second tag of a double-tagged frame.
    #[inline]
    pub fn inner_tag(&self) -> Option<VlanTag> {
        self.tags().inner()
    }

    /// The ethertype behind the tags (the payload's protocol); `EtherType(0)` in a buffer too
    /// short to hold one.
    #[inline]
    pub fn ethertype(&self) -> EtherType {
        self.type_at(self.header_len() - 2).unwrap_or(EtherType(0))
    }

    /// The bytes after the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        data.get(self.header_len()..).unwrap_or_default()
    }

    /// The frame with `tag` inserted in front of its tags, after the source address, in one
    /// new buffer. A buffer shorter than the addresses is copied unchanged.
    #[inline]
    pub fn insert_tag(&self, tag: VlanTag) -> Bytes {
        let data = self.buffer.as_ref();
        let Some((addrs, rest)) = data.split_first_chunk::<ADDRS_LEN>() else {
            return Bytes::copy_from_slice(data);
        };
        // Fixed-size pieces first, so that only the payload copy is a variable-length one.
        let mut out = Vec::with_capacity(data.len() + VLAN_TAG_LEN);
        out.extend_from_slice(addrs);
        out.extend_from_slice(&tag.to_bytes());
        out.extend_from_slice(rest);
        Bytes::from(out)
    }

    /// The frame without its outer tag, in one new buffer; a copy when it has none.
    #[inline]
    pub fn strip_tag(&self) -> Bytes {
        let data = self.buffer.as_ref();
        if self.outer_tag().is_none() {
            return Bytes::copy_from_slice(data);
        }
        // An outer tag means the addresses, the tag and a type field are in the buffer.
        let (addrs, tagged) = data.split_at(ADDRS_LEN);
        let mut out = Vec::with_capacity(data.len() - VLAN_TAG_LEN);
        out.extend_from_slice(addrs);
        out.extend_from_slice(&tagged[VLAN_TAG_LEN..]);
        Bytes::from(out)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    #[inline]
    pub fn set_dst_addr(&mut self, addr: MacAddr) {
        if let Some(f) = self.buffer.as_mut().get_mut(field::DESTINATION) {
            f.copy_from_slice(&addr.0);
        }
    }

    #[inline]
    pub fn set_src_addr(&mut self, addr: MacAddr) {
        if let Some(f) = self.buffer.as_mut().get_mut(field::SOURCE) {
            f.copy_from_slice(&addr.0);
        }
    }

    /// Rewrites the TCI of tag `index` (its TPID, and so the layout, stay). Nothing happens when
    /// the frame has no such tag.
    #[inline]
    pub fn set_tag_tci(&mut self, index: usize, tci: VlanTci) {
        if index < self.tag_count() {
            let at = field::TCI.start + index * VLAN_TAG_LEN;
            be::set_u16(self.buffer.as_mut(), at, tci.0);
        }
    }

    /// Writes the ethertype behind the present tags. Writing a TPID there adds a tag to the
    /// layout the accessors read.
    #[inline]
    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        let at = self.header_len() - 2;
        if let Some(f) = self.buffer.as_mut().get_mut(at..at + 2) {
            f.copy_from_slice(&ethertype.0.to_be_bytes());
        }
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let at = self.header_len();
        self.buffer.as_mut().get_mut(at..).unwrap_or_default()
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Frame<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The header of an Ethernet II frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr {
    pub dst: MacAddr,
    pub src: MacAddr,
    /// Outer first. A frame can only carry an ethertype that is a TPID behind two tags: with
    /// fewer, that TPID would read back as another tag.
    pub tags: VlanTags,
    /// The payload's protocol, behind the tags.
    pub ethertype: EtherType,
}

impl Repr {
    pub fn parse<T: AsRef<[u8]>>(frame: &Frame<T>) -> Result<Repr> {
        frame.check_len()?;
        Ok(Repr {
            dst: frame.dst_addr(),
            src: frame.src_addr(),
            tags: frame.tags(),
            ethertype: frame.ethertype(),
        })
    }

    /// Addresses, tags and ethertype.
    #[inline]
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.tags.len() * VLAN_TAG_LEN
    }

    /// The header alone; the payload follows it in the buffer.
    #[inline]
    pub fn buffer_len(&self) -> usize {
        self.header_len()
    }

    /// The 802.1Q outer tag's TCI, the tag the 82576 inserts, strips and filters by.
    #[inline]
    pub fn dot1q_tci(&self) -> Option<VlanTci> {
        self.tags
            .outer()
            .filter(|t| t.tpid == EtherTypes::Vlan)
            .map(|t| t.tci)
    }

    /// Writes the header into the start of `frame`, whose buffer must hold
    /// [`Repr::header_len`] bytes (a shorter one is left unchanged).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut Frame<T>) {
        let header = self.header_len();
        let Some(data) = frame.buffer.as_mut().get_mut(..header) else {
            return;
        };
        data[field::DESTINATION].copy_from_slice(&self.dst.0);
        data[field::SOURCE].copy_from_slice(&self.src.0);
        let mut at = field::TAGS.start;
        for tag in self.tags.as_slice() {
            data[at..at + VLAN_TAG_LEN].copy_from_slice(&tag.to_bytes());
            at += VLAN_TAG_LEN;
        }
        be::set_u16(data, at, self.ethertype.0);
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
    let repr = Repr {
        dst,
        src,
        tags: VlanTags::from_outer(tag.map(VlanTag::dot1q)),
        ethertype,
    };
    let mut out = BytesMut::zeroed(repr.buffer_len() + payload.len());
    repr.emit(&mut Frame::new_unchecked(&mut out[..]));
    out[repr.header_len()..].copy_from_slice(payload);
    out.freeze()
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
    /// 802.1ad S-tag VID 100 outside an 802.1Q C-tag VID 10 (IEEE 802.1Q S-tag and C-tag).
    const IPV4_DOUBLE_TAGGED: [u8; 24] = [
        0x02, 0, 0, 0, 0, 0x11, // dst
        0x02, 0, 0, 0, 0, 0x10, // src
        0x88, 0xa8, 0x20, 0x64, // S-tag: PCP 1, VID 100
        0x81, 0x00, 0x00, 0x0a, // C-tag: VID 10
        0x08, 0x00, // IPv4
        0x45, 0x00,
    ];

    fn src() -> MacAddr {
        MacAddr([2, 0, 0, 0, 0, 0x10])
    }

    #[test]
    fn tci_fields() {
        let tci = VlanTci::new(10, 3);
        assert_eq!(tci.0, 0x600a);
        assert_eq!((tci.vid(), tci.pcp(), tci.dei()), (10, 3, false));
        assert!(VlanTci(0x1000).dei());
    }

    #[test]
    fn parses_untagged_and_tagged_headers() {
        let f = Frame::new_checked(&ARP_UNTAGGED[..]).unwrap();
        let h = Repr::parse(&f).unwrap();
        assert_eq!(h.dst, MacAddr::BROADCAST);
        assert_eq!(h.src, src());
        assert_eq!(h.tags, VlanTags::NONE);
        assert_eq!(h.ethertype, EtherTypes::Arp);
        assert_eq!((f.header_len(), f.payload()), (14, &[0xaa, 0xbb][..]));
        let t = Frame::new_checked(&ARP_TAGGED[..]).unwrap();
        let h = Repr::parse(&t).unwrap();
        assert_eq!(h.tags, VlanTags::one(VlanTag::dot1q(VlanTci::new(10, 3))));
        assert_eq!(h.dot1q_tci(), Some(VlanTci::new(10, 3)));
        assert_eq!(h.ethertype, EtherTypes::Arp);
        assert_eq!((t.header_len(), t.payload()), (18, &[0xaa, 0xbb][..]));
    }

    #[test]
    fn parses_two_tags_outer_first() {
        let f = Frame::new_checked(&IPV4_DOUBLE_TAGGED[..]).unwrap();
        assert_eq!(f.tag_count(), 2);
        assert_eq!(f.outer_tag(), Some(VlanTag::dot1ad(VlanTci::new(100, 1))));
        assert_eq!(f.inner_tag(), Some(VlanTag::dot1q(VlanTci::new(10, 0))));
        assert_eq!(f.ethertype(), EtherTypes::Ipv4);
        assert_eq!(f.payload(), &[0x45, 0x00]);
        let repr = Repr::parse(&f).unwrap();
        assert_eq!(repr.dot1q_tci(), None, "the outer tag is an S-tag");
        let mut out = [0u8; 22];
        repr.emit(&mut Frame::new_unchecked(&mut out[..]));
        assert_eq!(&out[..], &IPV4_DOUBLE_TAGGED[..22]);
    }

    #[test]
    fn a_third_tpid_is_the_ethertype() {
        let mut bytes = IPV4_DOUBLE_TAGGED;
        bytes[20..22].copy_from_slice(&[0x81, 0x00]);
        let f = Frame::new_checked(&bytes[..]).unwrap();
        assert_eq!((f.tag_count(), f.ethertype()), (2, EtherTypes::Vlan));
    }

    #[test]
    fn short_and_truncated_frames_are_errors_not_panics() {
        for n in 0..18 {
            assert_eq!(
                Frame::new_checked(&ARP_TAGGED[..n]),
                Err(Error::Truncated),
                "{n} bytes"
            );
            // Unchecked accessors stay within the buffer.
            let f = Frame::new_unchecked(&ARP_TAGGED[..n]);
            let _ = (
                f.dst_addr(),
                f.src_addr(),
                f.tags(),
                f.ethertype(),
                f.payload(),
            );
        }
        assert!(Frame::new_checked(&ARP_TAGGED[..18]).is_ok());
        for n in 18..22 {
            assert_eq!(
                Frame::new_checked(&IPV4_DOUBLE_TAGGED[..n]),
                Err(Error::Truncated)
            );
        }
    }

    #[test]
    fn setters_write_fields_in_place() {
        let mut bytes = ARP_TAGGED;
        let mut f = Frame::new_unchecked(&mut bytes[..]);
        f.set_dst_addr(src());
        f.set_src_addr(MacAddr::BROADCAST);
        f.set_tag_tci(0, VlanTci::new(20, 0));
        f.set_tag_tci(1, VlanTci::new(30, 0)); // no second tag: no-op
        f.set_ethertype(EtherTypes::Ipv4);
        f.payload_mut().copy_from_slice(&[1, 2]);
        assert_eq!(
            &bytes[..12],
            &[2, 0, 0, 0, 0, 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(&bytes[12..], &[0x81, 0x00, 0x00, 0x14, 0x08, 0x00, 1, 2]);
    }

    #[test]
    fn build_frame_matches_literal_bytes() {
        let tagged = build_frame(
            MacAddr::BROADCAST,
            src(),
            Some(VlanTci::new(10, 3)),
            EtherTypes::Arp,
            &[0xaa, 0xbb],
        );
        assert_eq!(&tagged[..], &ARP_TAGGED[..]);
        let plain = build_frame(
            MacAddr::BROADCAST,
            src(),
            None,
            EtherTypes::Arp,
            &[0xaa, 0xbb],
        );
        assert_eq!(&plain[..], &ARP_UNTAGGED[..]);
    }

    #[test]
    fn insert_and_strip_round_trip() {
        let tagged =
            Frame::new_unchecked(&ARP_UNTAGGED[..]).insert_tag(VlanTag::dot1q(VlanTci::new(10, 3)));
        assert_eq!(&tagged[..], &ARP_TAGGED[..]);
        assert_eq!(
            &Frame::new_unchecked(&tagged).strip_tag()[..],
            &ARP_UNTAGGED[..]
        );
        // Stripping an untagged frame copies it; inserting into a runt copies it.
        assert_eq!(
            &Frame::new_unchecked(&ARP_UNTAGGED[..]).strip_tag()[..],
            &ARP_UNTAGGED[..]
        );
        assert_eq!(
            &Frame::new_unchecked(&ARP_UNTAGGED[..5]).insert_tag(VlanTag::dot1q(VlanTci(1)))[..],
            &ARP_UNTAGGED[..5]
        );
    }

    #[test]
    fn stripping_a_double_tagged_frame_leaves_the_inner_tag_outside() {
        let f = Frame::new_checked(&IPV4_DOUBLE_TAGGED[..]).unwrap();
        let stripped = f.strip_tag();
        let g = Frame::new_checked(&stripped).unwrap();
        assert_eq!(g.tags(), VlanTags::one(VlanTag::dot1q(VlanTci::new(10, 0))));
        assert_eq!(g.ethertype(), EtherTypes::Ipv4);
    }

    #[test]
    fn mac_addresses_parse_print_and_serialise() {
        let mac: MacAddr = "02:00:00:00:00:1a".parse().unwrap();
        assert_eq!(mac, MacAddr([2, 0, 0, 0, 0, 0x1a]));
        assert_eq!(mac.to_string(), "02:00:00:00:00:1a");
        assert!("02:00:00:00:00".parse::<MacAddr>().is_err());
        assert!("02:00:00:00:00:00:00".parse::<MacAddr>().is_err());
        assert!("02:00:00:00:00:zz".parse::<MacAddr>().is_err());
        assert!(MacAddr([1, 0, 0x5e, 0, 0, 1]).is_multicast());
        assert!(!mac.is_multicast() && mac.is_valid_unicast());
        assert_eq!(MacAddr::from_bytes(&[1, 2, 3]), None);
    }
}
