//! The 82576 TX offload engine: VLAN insertion, IPv4 header checksum, TCP/UDP/SCTP checksums,
//! TCP segmentation (TSO) and UDP segmentation, applied to one packet the ring engine has
//! gathered from its data descriptors (QEMU's `igb_tx_pkt_send`).
//!
//! Everything here is a pure function of the packet bytes, the context descriptor
//! ([`TxContext`]) and the offload bits of the packet's first data descriptor
//! ([`TxOffloads`]); it does no I/O and allocates only the output frames. Every length and
//! offset comes from the guest, so every one is checked before a byte is written: a packet the
//! engine cannot process returns an [`OffloadError`] (the ring engine counts it and drops the
//! packet) and nothing is emitted.
//!
//! # What the drivers hand over (Linux `igb_tso`, `igb_tx_csum`, `igbvf_tso`, `igbvf_tx_csum`)
//!
//! * MACLEN is the L2 header length *as the frame sits in guest memory*
//!   (`skb_network_offset`). With hardware VLAN insertion (VLE) the frame in memory is untagged,
//!   so MACLEN is 14 and the tag from the context descriptor is inserted after the source MAC on
//!   the way out; a tag the stack inserted itself is part of the frame and of MACLEN (18).
//! * IPLEN is `checksum start − network offset`: the IP header (with IPv6 extension headers) for
//!   a plain packet, but for an encapsulated packet (igb/igbvf advertise GSO_PARTIAL and
//!   `hw_enc_features`) it spans outer IP + UDP/GRE + inner Ethernet + inner IP, and the L3
//!   header at MACLEN is the *outer* one.
//! * Checksum only (no TSE): L4LEN and MSS are 0, `TUCMD.IPV4` is **not** set even for IPv4
//!   and neither is IXSM (the stack already wrote the IPv4 checksum); the L4 checksum field
//!   holds the standard `CHECKSUM_PARTIAL` seed, the folded pseudo-header sum *including* the
//!   L4 length. PAYLEN is the whole frame length.
//! * TSO: `TUCMD.IPV4`, IXSM and TXSM are set for IPv4; the IPv4 total length (IPv6 payload
//!   length) is zeroed; the IPv4 checksum holds `csum_fold` of the bytes between the IPv4
//!   header and the L4 header (0xFFFF for a plain packet) so that a sum over IPLEN bytes comes
//!   out right; the L4 checksum holds the pseudo-header sum *without* the length; L4LEN is the
//!   TCP header length (8 for UDP segmentation, igb only); PAYLEN is the bytes after
//!   MACLEN+IPLEN+L4LEN.
//!
//! # How checksums are computed
//!
//! For a *plain* packet — the header at MACLEN is IPv4 with IHL·4 = IPLEN, or IPv6 whose
//! hop-by-hop/destination-option extension headers end exactly at MACLEN+IPLEN, and the
//! protocol there is the one L4T names — the L4 checksum is computed from scratch: the field is
//! cleared and the pseudo-header is rebuilt from the IP addresses and the real L4 length. The
//! driver's seed is ignored, so any seed gives the same output ([`ChecksumSource::FromScratch`]).
//!
//! Anything else (tunnels, IPv6 routing or fragment headers, a non-IP L3) cannot be parsed from
//! the context alone, so the engine does what the silicon does: a one's-complement sum from
//! MACLEN+IPLEN to the end of the packet *continuing the seed* in the checksum field, plus the
//! segment's L4 length when segmenting ([`ChecksumSource::Seeded`]). That is exact for every
//! driver that works on real hardware, which includes the encapsulated GSO_PARTIAL packets of
//! both Linux drivers.
//!
//! The IPv4 header checksum is likewise computed from scratch over IHL·4 bytes for a plain
//! header and, when IPLEN is longer than the IPv4 header (tunnels), summed over IPLEN bytes
//! including the driver's compensating value, as the hardware does. SCTP gets CRC32c over the
//! whole SCTP packet with the checksum field cleared (stored least significant byte first, as
//! Linux `sctp_compute_cksum`). A UDP checksum that computes to 0 is sent as 0xFFFF.
//!
//! # Segmentation
//!
//! With TSE the payload after MACLEN+IPLEN+L4LEN is cut into MSS-sized pieces (the last may be
//! shorter; an empty payload gives one header-only frame). Every segment gets a copy of the
//! headers with: IPv4 total length, identification + segment index, header checksum; or IPv6
//! payload length; TCP sequence number + offset, FIN and PSH only on the last segment, CWR only
//! on the first (Linux GSO semantics; the datasheet's DTXTCPFLGL/H flag-mask registers are not
//! modelled); or UDP length; and a full L4 checksum. TSE implies the L4 checksum and, for IPv4,
//! the header checksum, whatever TXSM/IXSM say — a segment with stale lengths is never valid.
//! In the tunnel case only the outer L3 header and the L4 header are touched, which is what
//! GSO_PARTIAL expects of the device.
//!
//! Limits: MSS 0 is refused; at most [`MAX_SEGMENTS`] segments per packet (Linux's smallest
//! TCP MSS, 48 bytes, over a 64 KiB super-frame needs 1366); PAYLEN must equal the payload the
//! frame carries; a segment whose IP length would overflow 16 bits is refused. SCTP and the
//! reserved L4T value cannot be segmented (igb never asks for it).

use bytes::{BufMut, Bytes, BytesMut};
use eswitch::wire::{
    checksum, ethernet, ip_version, ipv4, ipv6, sctp, tcp, udp, IpNextHeaderProtocol,
    IpNextHeaderProtocols, Ipv4Packet, Ipv6Packet, SctpPacket, TcpFlags, TcpPacket, UdpPacket,
    VlanTag, VlanTci,
};
use thiserror::Error;

// The descriptor fields the engine consumes are `desc`'s.
pub use crate::function::desc::{tx_bits as bits, L3Type, L4Type, TxContext, TxOffloads};

/// At most this many segments are cut from one packet.
pub const MAX_SEGMENTS: usize = 4096;

impl L4Type {
    /// The IP protocol this L4 type stands for.
    fn ip_protocol(self) -> Option<IpNextHeaderProtocol> {
        match self {
            L4Type::Udp => Some(IpNextHeaderProtocols::Udp),
            L4Type::Tcp => Some(IpNextHeaderProtocols::Tcp),
            L4Type::Sctp => Some(IpNextHeaderProtocols::Sctp),
            L4Type::Other => None,
        }
    }

    /// The shortest L4 header, the one that holds the checksum field; `None` for a type
    /// without a checksum the engine can write.
    fn min_header_len(self) -> Option<usize> {
        match self {
            L4Type::Udp => Some(udp::HEADER_LEN),
            L4Type::Tcp => Some(tcp::HEADER_LEN),
            L4Type::Sctp => Some(sctp::HEADER_LEN),
            L4Type::Other => None,
        }
    }
}

/// Why a packet could not be processed; the ring engine drops it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum OffloadError {
    #[error("frame of {len} bytes is shorter than the {needed} bytes the context needs")]
    FrameTooShort { len: usize, needed: usize },
    #[error("MACLEN {0} is shorter than an Ethernet header")]
    MacLenTooShort(u8),
    #[error("the L3 header has IP version {found}, the offload needs {expected:?}")]
    IpVersionMismatch { expected: L3Type, found: u8 },
    #[error("IPv4 IHL {ihl} does not fit IPLEN {ip_len}")]
    Ipv4HeaderLength { ihl: u8, ip_len: u16 },
    #[error("IPLEN {0} is shorter than an IPv6 header")]
    Ipv6HeaderLength(u16),
    #[error("L4LEN {l4_len} does not match the {l4:?} header")]
    L4HeaderLength { l4: L4Type, l4_len: u8 },
    #[error("segmentation with MSS 0")]
    ZeroMss,
    #[error("segmentation of {0:?} is not supported")]
    UnsupportedSegmentation(L4Type),
    #[error("checksum offload for L4 type {0:?} is not supported")]
    UnsupportedChecksum(L4Type),
    #[error("PAYLEN {paylen} disagrees with the {actual} payload bytes after the headers")]
    PaylenMismatch { paylen: u32, actual: usize },
    #[error("{segments} segments exceed the limit of {max}")]
    TooManySegments { segments: usize, max: usize },
    #[error("a segment's IP length {0} overflows 16 bits")]
    SegmentTooLarge(usize),
    #[error("payload bytes could not be read from their buffer")]
    PayloadUnreadable,
}

/// The payload of a packet to segment: its bytes after the headers, read as each segment is
/// cut. A slice of the gathered packet, or the guest's buffers themselves, so that a TSO
/// packet's payload is copied once, into its segments, rather than gathered first.
pub trait Payload {
    /// Bytes of payload.
    fn len(&self) -> usize;
    /// No payload at all (a header-only request).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Appends payload bytes `at..at + len` (within [`Payload::len`]) to `out`. On an error
    /// `out` may hold some of them.
    fn append_to(&self, at: usize, len: usize, out: &mut Vec<u8>) -> Result<(), PayloadUnreadable>;
}

/// A payload byte could not be read (a buffer outside guest memory, say).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayloadUnreadable;

impl Payload for &[u8] {
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }

    fn append_to(&self, at: usize, len: usize, out: &mut Vec<u8>) -> Result<(), PayloadUnreadable> {
        out.extend_from_slice(self.get(at..at + len).ok_or(PayloadUnreadable)?);
        Ok(())
    }
}

/// The bytes of `head` after the headers, then `rest`.
struct Joined<'a> {
    head: &'a [u8],
    rest: &'a dyn Payload,
}

impl Payload for Joined<'_> {
    fn len(&self) -> usize {
        self.head.len() + self.rest.len()
    }

    fn append_to(&self, at: usize, len: usize, out: &mut Vec<u8>) -> Result<(), PayloadUnreadable> {
        let from_head = self.head.len().saturating_sub(at).min(len);
        if from_head > 0 {
            Payload::append_to(&self.head, at, from_head, out)?;
        }
        if len > from_head {
            let at = (at + from_head) - self.head.len();
            self.rest.append_to(at, len - from_head, out)?;
        }
        Ok(())
    }
}

/// How the L4 checksum was produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChecksumSource {
    /// Pseudo-header rebuilt from the IP header; the driver's seed was ignored.
    FromScratch,
    /// Hardware semantics: the driver's seed was continued (tunnels and other packets whose
    /// pseudo-header is not at MACLEN).
    Seeded,
    /// SCTP CRC32c.
    Crc32c,
}

/// What [`apply`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OffloadStats {
    /// Frames handed to the output.
    pub frames: u32,
    /// Bytes handed to the output (VLAN tags included, no FCS).
    pub bytes: u64,
    /// The packet was segmented (TSE).
    pub segmented: bool,
    /// A VLAN tag was inserted into every frame.
    pub vlan_inserted: bool,
    /// The IPv4 header checksum was written.
    pub ip_checksum: bool,
    /// The L4 checksum was written, and how.
    pub l4_checksum: Option<ChecksumSource>,
}

/// Applies the offloads `off` with context `ctx` to `frame` (the packet's bytes as gathered from
/// its data descriptors, no FCS) and hands the resulting frame(s) to `out`, in order. On error
/// nothing has been emitted. `out` may be a closure or a `&mut dyn FnMut(Bytes)`.
///
/// The result depends only on the arguments, so a packet re-offered after a pause is cut into
/// the same frames again.
pub fn apply<F: FnMut(Bytes) + ?Sized>(
    frame: &[u8],
    ctx: &TxContext,
    off: &TxOffloads,
    out: &mut F,
) -> Result<OffloadStats, OffloadError> {
    if off.tse {
        return segment(frame, &&[][..], ctx, off, out);
    }
    if off.vle {
        need(frame, ethernet::ADDRS_LEN)?;
    }
    let vlan = off.vle.then(|| VlanTag::dot1q(VlanTci(ctx.vlan)));
    let plan = plan_checksums(frame, ctx, off)?;
    Ok(emit_single(frame, &plan, vlan, out))
}

/// [`apply`] for a packet to segment (TSE) whose bytes are `head`, then `rest`: `head` holds at
/// least the headers the context describes (or the whole packet), `rest` is read only as the
/// segments are cut. The checks and the frames are those of [`apply`] on the two joined; a
/// `rest` that cannot be read is [`OffloadError::PayloadUnreadable`], with nothing emitted.
pub fn segment<F: FnMut(Bytes) + ?Sized>(
    head: &[u8],
    rest: &dyn Payload,
    ctx: &TxContext,
    off: &TxOffloads,
    out: &mut F,
) -> Result<OffloadStats, OffloadError> {
    if off.vle {
        need(head, ethernet::ADDRS_LEN)?;
    }
    let vlan = off.vle.then(|| VlanTag::dot1q(VlanTci(ctx.vlan)));
    let plan = plan_segmentation(head, head.len() + rest.len(), ctx, off)?;
    tracing::trace!(
        segments = plan.segments,
        mss = plan.mss,
        hdr_len = plan.hdr_len,
        source = ?plan.source,
        "tx offload: segmenting"
    );
    let payload = Joined {
        head: &head[plan.hdr_len..],
        rest,
    };
    emit_segments(head, &payload, &plan, vlan, out)
}

// ---------------------------------------------------------------------------------------------
// Planning: every check happens here, before anything is emitted.

/// The IPv4 header checksum to write.
#[derive(Clone, Copy, Debug)]
struct Ipv4Checksum {
    /// Offset of the IPv4 header in the input frame.
    off: usize,
    /// Bytes summed: IHL·4 from scratch, or IPLEN continuing the field (tunnels).
    len: usize,
    /// Clear the field before summing.
    from_scratch: bool,
}

/// The L4 checksum to write (checksum-only path).
#[derive(Clone, Copy, Debug)]
struct L4ChecksumPlan {
    kind: L4Type,
    /// Offset of the L4 header in the input frame.
    off: usize,
    /// End of the region summed (the IP length for plain packets, else the frame end).
    end: usize,
    /// For [`ChecksumSource::FromScratch`]: the pseudo-header sum including the length.
    pseudo: Option<u64>,
}

#[derive(Clone, Copy, Debug)]
struct ChecksumPlan {
    ip: Option<Ipv4Checksum>,
    l4: Option<L4ChecksumPlan>,
}

#[derive(Clone, Copy, Debug)]
struct SegmentPlan {
    l3: L3Type,
    l3_off: usize,
    l4: L4Type,
    l4_off: usize,
    hdr_len: usize,
    mss: usize,
    segments: usize,
    ip_checksum: Option<Ipv4Checksum>,
    /// Pseudo-header sum without the length for a plain packet; `None` continues the seed.
    pseudo: Option<u64>,
    source: ChecksumSource,
}

fn need(frame: &[u8], needed: usize) -> Result<(), OffloadError> {
    if frame.len() < needed {
        Err(OffloadError::FrameTooShort {
            len: frame.len(),
            needed,
        })
    } else {
        Ok(())
    }
}

fn check_mac_len(ctx: &TxContext) -> Result<usize, OffloadError> {
    if usize::from(ctx.mac_len) < ethernet::HEADER_LEN {
        return Err(OffloadError::MacLenTooShort(ctx.mac_len));
    }
    Ok(usize::from(ctx.mac_len))
}

/// Checks the IPv4 header at `l3_off` against IPLEN and says how to checksum it.
fn ipv4_checksum_plan(
    frame: &[u8],
    l3_off: usize,
    ip_len: u16,
) -> Result<Ipv4Checksum, OffloadError> {
    // The fixed header first, then IHL against IPLEN, then IPLEN against the frame: each
    // failure names the value the driver got wrong (not `Ipv4Packet::check_len`'s order).
    need(frame, l3_off + ipv4::HEADER_LEN)?;
    let ip = Ipv4Packet::new_unchecked(&frame[l3_off..]);
    if ip.version() != 4 {
        return Err(OffloadError::IpVersionMismatch {
            expected: L3Type::Ipv4,
            found: ip.version(),
        });
    }
    let header_len = ip.header_len();
    if header_len < ipv4::HEADER_LEN || header_len > usize::from(ip_len) {
        return Err(OffloadError::Ipv4HeaderLength {
            ihl: (header_len / 4) as u8,
            ip_len,
        });
    }
    need(frame, l3_off + usize::from(ip_len))?;
    let from_scratch = header_len == usize::from(ip_len);
    Ok(Ipv4Checksum {
        off: l3_off,
        len: if from_scratch {
            header_len
        } else {
            usize::from(ip_len)
        },
        from_scratch,
    })
}

/// Where a plain packet's L4 data ends according to its IP header, if it says so sensibly.
#[derive(Clone, Copy, Debug)]
struct PlainL3 {
    /// Pseudo-header sum of addresses and protocol (no length).
    pseudo_base: u64,
    /// End of the L4 data per the IP length field, when that lies within the frame.
    l4_end: Option<usize>,
}

/// Recognises a plain packet: an IP header at `l3_off` whose L4 header (of protocol `proto`)
/// starts exactly at `l4_off`, so the pseudo-header can be rebuilt. `None` for anything else.
fn plain_l3(
    frame: &[u8],
    l3_off: usize,
    l4_off: usize,
    proto: IpNextHeaderProtocol,
    min_l4: usize,
) -> Option<PlainL3> {
    let l3 = frame.get(l3_off..)?;
    let (pseudo_base, ip_end) = match ip_version(l3)? {
        4 => {
            let ip = Ipv4Packet::new_checked(l3).ok()?;
            // A fragment's L4 header and checksum cover the reassembled datagram.
            if l3_off + ip.header_len() != l4_off || ip.next_header() != proto || ip.is_fragment() {
                return None;
            }
            let base = ip.pseudo_addrs_sum() + u64::from(proto.0);
            (base, l3_off + usize::from(ip.total_len()))
        }
        6 => {
            let ip = Ipv6Packet::new_checked(l3).ok()?;
            // Only hop-by-hop and destination options may sit between the fixed header and
            // L4: a routing header changes the pseudo-header's destination (RFC 8200 §8.1) and
            // a fragment header makes L4 span several packets.
            let mut walk = ip.ext_headers();
            for ext in &mut walk {
                let ext = ext.ok()?;
                if !matches!(
                    ext.kind,
                    IpNextHeaderProtocols::Hopopt | IpNextHeaderProtocols::Ipv6Opts
                ) {
                    return None;
                }
            }
            let upper = walk.upper_layer();
            if l3_off + upper.offset != l4_off || upper.protocol != proto {
                return None;
            }
            let base = ip.pseudo_addrs_sum() + u64::from(proto.0);
            (
                base,
                l3_off + ipv6::HEADER_LEN + usize::from(ip.payload_len()),
            )
        }
        _ => return None,
    };
    let l4_end = (ip_end >= l4_off + min_l4 && ip_end <= frame.len()).then_some(ip_end);
    Some(PlainL3 {
        pseudo_base,
        l4_end,
    })
}

fn plan_checksums(
    frame: &[u8],
    ctx: &TxContext,
    off: &TxOffloads,
) -> Result<ChecksumPlan, OffloadError> {
    if !off.ixsm && !off.txsm {
        return Ok(ChecksumPlan { ip: None, l4: None });
    }
    let l3_off = check_mac_len(ctx)?;
    let l4_off = l3_off + usize::from(ctx.ip_len);
    let ip = if off.ixsm {
        Some(ipv4_checksum_plan(frame, l3_off, ctx.ip_len)?)
    } else {
        None
    };
    let l4 = if off.txsm {
        let min_header = ctx
            .l4
            .min_header_len()
            .ok_or(OffloadError::UnsupportedChecksum(ctx.l4))?;
        need(frame, l4_off + min_header)?;
        let pseudo = match (ctx.l4, ctx.l4.ip_protocol()) {
            (L4Type::Sctp, _) | (_, None) => None,
            (_, Some(proto)) => plain_l3(frame, l3_off, l4_off, proto, min_header),
        };
        Some(match pseudo {
            Some(plain) => {
                let end = plain.l4_end.unwrap_or(frame.len());
                L4ChecksumPlan {
                    kind: ctx.l4,
                    off: l4_off,
                    end,
                    pseudo: Some(plain.pseudo_base + (end - l4_off) as u64),
                }
            }
            None => L4ChecksumPlan {
                kind: ctx.l4,
                off: l4_off,
                end: frame.len(),
                pseudo: None,
            },
        })
    } else {
        None
    };
    Ok(ChecksumPlan { ip, l4 })
}

/// `frame` holds the headers (at least), of a packet `total` bytes long.
fn plan_segmentation(
    frame: &[u8],
    total: usize,
    ctx: &TxContext,
    off: &TxOffloads,
) -> Result<SegmentPlan, OffloadError> {
    let proto = match ctx.l4 {
        L4Type::Tcp => IpNextHeaderProtocols::Tcp,
        L4Type::Udp => IpNextHeaderProtocols::Udp,
        other => return Err(OffloadError::UnsupportedSegmentation(other)),
    };
    if ctx.mss == 0 {
        return Err(OffloadError::ZeroMss);
    }
    let l3_off = check_mac_len(ctx)?;
    let l4_off = l3_off + usize::from(ctx.ip_len);
    let ip_checksum = match ctx.l3 {
        L3Type::Ipv4 => Some(ipv4_checksum_plan(frame, l3_off, ctx.ip_len)?),
        L3Type::Ipv6 => {
            need(frame, l3_off + ipv6::HEADER_LEN)?;
            let version = Ipv6Packet::new_unchecked(&frame[l3_off..]).version();
            if version != 6 {
                return Err(OffloadError::IpVersionMismatch {
                    expected: L3Type::Ipv6,
                    found: version,
                });
            }
            if usize::from(ctx.ip_len) < ipv6::HEADER_LEN {
                return Err(OffloadError::Ipv6HeaderLength(ctx.ip_len));
            }
            None
        }
    };
    let l4_len = usize::from(ctx.l4_len);
    let l4_header_ok = match ctx.l4 {
        L4Type::Tcp => {
            // The fixed header must be there to read the data offset; the options L4LEN
            // announces are checked against the frame with the rest of the headers below.
            need(frame, l4_off + tcp::HEADER_LEN)?;
            let data_offset = TcpPacket::new_unchecked(&frame[l4_off..]).header_len();
            l4_len >= tcp::HEADER_LEN && l4_len == data_offset
        }
        _ => l4_len == udp::HEADER_LEN,
    };
    if !l4_header_ok {
        return Err(OffloadError::L4HeaderLength {
            l4: ctx.l4,
            l4_len: ctx.l4_len,
        });
    }
    let hdr_len = l4_off + l4_len;
    need(frame, hdr_len)?;
    let payload = total - hdr_len;
    if payload != off.paylen as usize {
        return Err(OffloadError::PaylenMismatch {
            paylen: off.paylen,
            actual: payload,
        });
    }
    let mss = usize::from(ctx.mss);
    let segments = payload.div_ceil(mss).max(1);
    if segments > MAX_SEGMENTS {
        return Err(OffloadError::TooManySegments {
            segments,
            max: MAX_SEGMENTS,
        });
    }
    let largest_ip_len = match ctx.l3 {
        L3Type::Ipv4 => hdr_len - l3_off + mss.min(payload),
        L3Type::Ipv6 => hdr_len - l3_off - ipv6::HEADER_LEN + mss.min(payload),
    };
    if largest_ip_len > usize::from(u16::MAX) {
        return Err(OffloadError::SegmentTooLarge(largest_ip_len));
    }
    let pseudo = plain_l3(frame, l3_off, l4_off, proto, l4_len).map(|p| p.pseudo_base);
    Ok(SegmentPlan {
        l3: ctx.l3,
        l3_off,
        l4: ctx.l4,
        l4_off,
        hdr_len,
        mss,
        segments,
        ip_checksum,
        pseudo,
        source: if pseudo.is_some() {
            ChecksumSource::FromScratch
        } else {
            ChecksumSource::Seeded
        },
    })
}

// ---------------------------------------------------------------------------------------------
// Emission: infallible once planned. The plan checked that every header written here lies in
// the frame, so the views below are built without a check.

/// Copies `frame[..end]` into `buf`, inserting `vlan` after the MAC addresses; offsets in
/// `buf` are then shifted by [`ethernet::VLAN_TAG_LEN`].
fn put_with_tag(buf: &mut impl BufMut, frame: &[u8], end: usize, vlan: Option<VlanTag>) {
    match vlan {
        Some(tag) => {
            buf.put_slice(&frame[..ethernet::ADDRS_LEN]);
            buf.put_slice(&tag.to_bytes());
            buf.put_slice(&frame[ethernet::ADDRS_LEN..end]);
        }
        None => buf.put_slice(&frame[..end]),
    }
}

/// The sum of a plain IPv4 header at `plan.off` in `head` with its total length,
/// identification and checksum taken as zero: what every segment's header sums to but for
/// the two words the segments differ in, which each adds (RFC 1624's incremental update).
fn ipv4_rest_sum(head: &[u8], plan: &Ipv4Checksum) -> u64 {
    let mut header = [0u8; ipv4::MAX_HEADER_LEN];
    let header = &mut header[..plan.len];
    header.copy_from_slice(&head[plan.off..plan.off + plan.len]);
    let mut ip = Ipv4Packet::new_unchecked(&mut header[..]);
    ip.set_total_len(0);
    ip.set_ident(0);
    ip.set_checksum(0);
    checksum::sum(header, 0)
}

fn write_ipv4_checksum(buf: &mut [u8], plan: &Ipv4Checksum, shift: usize) {
    let at = shift + plan.off;
    let mut ip = Ipv4Packet::new_unchecked(&mut buf[at..at + plan.len]);
    if plan.from_scratch {
        ip.fill_checksum();
    } else {
        // A tunnel: sum IPLEN bytes, the driver's compensating value in the field included.
        let sum = checksum::data(ip.as_ref());
        ip.set_checksum(!sum);
    }
}

/// Writes the TCP or UDP checksum of `l4` (the L4 header and everything it covers). With
/// `pseudo` the field is cleared and the pseudo-header sum added; without, the field's seed is
/// continued and `seed_extra` (the segment's L4 length, for TSO) added, as the hardware does.
fn write_inet_checksum(l4: &mut [u8], kind: L4Type, pseudo: Option<u64>, seed_extra: u64) {
    let initial = match pseudo {
        Some(p) => {
            set_inet_checksum(l4, kind, 0);
            p
        }
        None => seed_extra,
    };
    let mut csum = !checksum::fold(checksum::sum(l4, initial));
    if kind == L4Type::Udp && csum == 0 {
        // RFC 768: zero means "no checksum"; a computed zero is sent as all ones.
        csum = 0xFFFF;
    }
    set_inet_checksum(l4, kind, csum);
}

fn set_inet_checksum(l4: &mut [u8], kind: L4Type, value: u16) {
    if kind == L4Type::Tcp {
        TcpPacket::new_unchecked(l4).set_checksum(value);
    } else {
        UdpPacket::new_unchecked(l4).set_checksum(value);
    }
}

fn emit_single<F: FnMut(Bytes) + ?Sized>(
    frame: &[u8],
    plan: &ChecksumPlan,
    vlan: Option<VlanTag>,
    out: &mut F,
) -> OffloadStats {
    let shift = if vlan.is_some() {
        ethernet::VLAN_TAG_LEN
    } else {
        0
    };
    let mut buf = BytesMut::with_capacity(frame.len() + shift);
    put_with_tag(&mut buf, frame, frame.len(), vlan);
    if let Some(ip) = &plan.ip {
        write_ipv4_checksum(&mut buf, ip, shift);
    }
    let l4_checksum = plan.l4.map(|l4| {
        let region = &mut buf[shift + l4.off..shift + l4.end];
        match l4.kind {
            L4Type::Sctp => {
                // CRC32c over the whole SCTP packet, field cleared (Linux `sctp_compute_cksum`).
                SctpPacket::new_unchecked(region).fill_checksum();
                ChecksumSource::Crc32c
            }
            kind => {
                write_inet_checksum(region, kind, l4.pseudo, 0);
                if l4.pseudo.is_some() {
                    ChecksumSource::FromScratch
                } else {
                    ChecksumSource::Seeded
                }
            }
        }
    });
    let bytes = buf.len() as u64;
    out(buf.freeze());
    OffloadStats {
        frames: 1,
        bytes,
        segmented: false,
        vlan_inserted: vlan.is_some(),
        ip_checksum: plan.ip.is_some(),
        l4_checksum,
    }
}

fn emit_segments<F: FnMut(Bytes) + ?Sized>(
    head: &[u8],
    payload: &dyn Payload,
    plan: &SegmentPlan,
    vlan: Option<VlanTag>,
    out: &mut F,
) -> Result<OffloadStats, OffloadError> {
    let shift = if vlan.is_some() {
        ethernet::VLAN_TAG_LEN
    } else {
        0
    };
    let total = payload.len();
    let chunk = |index: usize| {
        let start = (index * plan.mss).min(total);
        (start, (start + plan.mss).min(total) - start)
    };
    let (l3, l4) = (shift + plan.l3_off, shift + plan.l4_off);
    // The plan checked both headers: IPv4 (20+) or IPv6 (40) at l3_off, TCP (20+) or UDP at
    // l4_off.
    let ident = match plan.l3 {
        L3Type::Ipv4 => Ipv4Packet::new_unchecked(&head[plan.l3_off..]).ident(),
        L3Type::Ipv6 => 0,
    };
    let (seq, flags) = match plan.l4 {
        L4Type::Tcp => {
            let tcp = TcpPacket::new_unchecked(&head[plan.l4_off..]);
            (tcp.seq_number(), tcp.flags())
        }
        _ => (0, TcpFlags::NONE),
    };
    // Every segment in one allocation, all cut before any is emitted (a payload byte that
    // cannot be read drops the whole packet); each is then split off its front and shares its
    // buffer, which is freed when the last segment is dropped.
    let mut arena: Vec<u8> = Vec::with_capacity(plan.segments * (shift + plan.hdr_len) + total);
    let ip_rest = plan
        .ip_checksum
        .filter(|c| c.from_scratch)
        .map(|c| ipv4_rest_sum(head, &c));
    for index in 0..plan.segments {
        let (start, len) = chunk(index);
        let at = arena.len();
        put_with_tag(&mut arena, head, plan.hdr_len, vlan);
        payload
            .append_to(start, len, &mut arena)
            .map_err(|PayloadUnreadable| OffloadError::PayloadUnreadable)?;
        let buf = &mut arena[at..];
        let last = index + 1 == plan.segments;
        let l4_total = plan.hdr_len - plan.l4_off + len;
        match plan.l3 {
            L3Type::Ipv4 => {
                let total_len = (plan.hdr_len - plan.l3_off + len) as u16;
                let seg_ident = ident.wrapping_add(index as u16);
                let mut ip = Ipv4Packet::new_unchecked(&mut buf[l3..]);
                ip.set_total_len(total_len);
                ip.set_ident(seg_ident);
                if let Some(rest) = ip_rest {
                    let sum = rest + u64::from(total_len) + u64::from(seg_ident);
                    ip.set_checksum(!checksum::fold(sum));
                }
            }
            L3Type::Ipv6 => {
                let payload_len = plan.hdr_len - plan.l3_off - ipv6::HEADER_LEN + len;
                Ipv6Packet::new_unchecked(&mut buf[l3..]).set_payload_len(payload_len as u16);
            }
        }
        if let Some(ip) = plan.ip_checksum.filter(|_| ip_rest.is_none()) {
            write_ipv4_checksum(buf, &ip, shift);
        }
        match plan.l4 {
            L4Type::Tcp => {
                let mut tcp = TcpPacket::new_unchecked(&mut buf[l4..]);
                tcp.set_seq_number(seq.wrapping_add((index * plan.mss) as u32));
                // Linux GSO: CWR on the first segment only, FIN and PSH on the last only.
                let mut f = flags;
                if index > 0 {
                    f = f.without(TcpFlags::CWR);
                }
                if !last {
                    f = f.without(TcpFlags::FIN | TcpFlags::PSH);
                }
                tcp.set_flags(f);
            }
            _ => UdpPacket::new_unchecked(&mut buf[l4..]).set_len(l4_total as u16),
        }
        let pseudo = plan.pseudo.map(|p| p + l4_total as u64);
        write_inet_checksum(&mut buf[l4..], plan.l4, pseudo, l4_total as u64);
    }
    let mut segments = Bytes::from(arena);
    let bytes = segments.len() as u64;
    for index in 0..plan.segments {
        out(segments.split_to(shift + plan.hdr_len + chunk(index).1));
    }
    Ok(OffloadStats {
        frames: plan.segments as u32,
        bytes,
        segmented: true,
        vlan_inserted: vlan.is_some(),
        ip_checksum: plan.ip_checksum.is_some(),
        l4_checksum: Some(plan.source),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_words_round_trip() {
        let ctx = TxContext {
            mac_len: 14,
            ip_len: 20,
            l4_len: 32,
            mss: 1448,
            l3: L3Type::Ipv4,
            l4: L4Type::Tcp,
            vlan: 0xE00A,
            idx: 0,
        };
        let (a, b, c) = ctx.to_words();
        assert_eq!(a, 20 | (14 << 9) | (0xE00A << 16));
        assert_eq!(b, (1 << 29) | (0b0010 << 20) | (1 << 10) | (1 << 11));
        assert_eq!(c, (32 << 8) | (1448 << 16));
        assert_eq!(TxContext::from_words(a, b, c), ctx);
        for l4 in [L4Type::Udp, L4Type::Tcp, L4Type::Sctp, L4Type::Other] {
            let ctx = TxContext { l4, ..ctx };
            let (a, b, c) = ctx.to_words();
            assert_eq!(TxContext::from_words(a, b, c), ctx);
        }
    }

    #[test]
    fn data_words_round_trip() {
        let off = TxOffloads {
            tse: true,
            ixsm: true,
            txsm: true,
            vle: true,
            paylen: 65_000,
        };
        let (cmd, ol) = off.to_words();
        assert_eq!(cmd & bits::DCMD_TSE, bits::DCMD_TSE);
        assert_eq!(ol >> 14, 65_000);
        assert_eq!(TxOffloads::from_words(cmd, ol), off);
    }
}
