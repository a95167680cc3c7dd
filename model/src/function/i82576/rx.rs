//! The RX queues of an 82576 function: their registers (as igbvf's `igbvf_configure_rx` and
//! `igbvf_setup_srrctl`, and igb's `igb_configure_rx_ring` and `igb_setup_srrctl`, program
//! them) and the engine that writes a frame into the guest's ring (the write-back igbvf's
//! `igbvf_clean_rx_irq` and igb's `igb_clean_rx_irq` read; QEMU's `igb_write_adv_rx_descr`):
//! advanced one-buffer mode
//! (SRRCTL.DESCTYPE 001) and header split (010 / 101, as igbvf uses it with a 128-byte header
//! buffer), frames spanning several descriptors with EOP on the last, write-back of length, DD,
//! EOP, VP + VLAN, and the checksum status of [`crate::function::rxcsum`] (verified-good bits
//! only).
//!
//! Which queue receives is the function's choice: a VF's queue 0 (the only one igbvf uses), the
//! PF's by MRQC.
//!
//! The write-back's upper half (status, errors, length, VLAN) is stored as one 8-byte access,
//! after the lower half: igbvf takes DD in the status as the sign of a complete descriptor,
//! igb a non-zero length (`igb_clean_rx_irq`), and each reads the other field after it.
//!
//! DMA faults: a descriptor ring outside guest memory stops the queue (RXDCTL.ENABLE is
//! cleared, as a device that got a completion error would stop fetching); a packet or header
//! buffer outside guest memory drops that frame, and its descriptors are still completed with
//! DD and RXE (an error igbvf drops on) so the driver recycles them and the ring keeps moving.

use eswitch::wire::{
    ipv6, udp, EtherTypes, EthernetFrame, IpNextHeaderProtocols, Ipv4Packet, Ipv6Packet, TcpPacket,
    UdpPacket,
};
use smallvec::SmallVec;
use tracing::{debug, warn};
use vm_memory::GuestMemoryBackend;

use super::regs::{dctl, q, srrctl, DBAL_MASK, DLEN_MASK};
use crate::function::desc::{
    rx_status, DescBytes, RxReadDesc, RxWriteBack, DESC_LEN, RX_DESCS_INLINE,
};
use crate::function::faults::{DmaFaults, DmaTarget, QueueDir};
use crate::function::rxcsum::{self, L4Checksum};
use crate::function::stats::{RxDrop, RxOutcome};
use crate::function::{guest, FunctionId};

/// igbvf's header buffer in header-split mode (`rx_ps_hdr_size`).
pub const IGBVF_HDR_SIZE: usize = 128;
/// RXE: frame error bit in the write-back (igbvf drops frames with it).
const RXE: u32 = 1 << 31;

/// The registers of one RX queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RxRing {
    pub rdbal: u32,
    pub rdbah: u32,
    pub rdlen: u32,
    pub srrctl: u32,
    pub rdh: u32,
    pub rxctl: u32,
    pub rdt: u32,
    pub rxdctl: u32,
    /// RQDPC: frames dropped on this queue; clear on read.
    pub rqdpc: u32,
}

impl RxRing {
    /// QEMU's reset values (`igb_mac_reg_init`): RXDCTL0 = ENABLE | WTHRESH 1, other queues
    /// WTHRESH 1; SRRCTL: 2 KiB buffers, one-buffer advanced descriptors.
    pub fn reset_value(queue: usize) -> RxRing {
        RxRing {
            rdbal: 0,
            rdbah: 0,
            rdlen: 0,
            srrctl: 2 | (srrctl::DESCTYPE_ADV_ONEBUF << srrctl::DESCTYPE_SHIFT),
            rdh: 0,
            rxctl: 0,
            rdt: 0,
            rxdctl: if queue == 0 {
                dctl::ENABLE | dctl::WTHRESH_1
            } else {
                dctl::WTHRESH_1
            },
            rqdpc: 0,
        }
    }

    pub fn enabled(&self) -> bool {
        self.rxdctl & dctl::ENABLE != 0
    }

    pub fn base(&self) -> u64 {
        (u64::from(self.rdbah) << 32) | u64::from(self.rdbal)
    }

    /// Descriptors in the ring.
    pub fn len(&self) -> u32 {
        self.rdlen / DESC_LEN as u32
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Register read inside the queue's block (`rel` = offset from the block start).
    pub fn read(&mut self, rel: u64) -> u32 {
        match rel {
            q::DBAL => self.rdbal,
            q::DBAH => self.rdbah,
            q::DLEN => self.rdlen,
            q::SRRCTL => self.srrctl,
            q::DH => self.rdh,
            q::DCA_CTL => self.rxctl,
            q::DT => self.rdt,
            q::DCTL => self.rxdctl,
            q::RQDPC => std::mem::take(&mut self.rqdpc),
            _ => 0,
        }
    }

    /// Register write; returns true when it posted buffers (an RDT write).
    pub fn write(&mut self, rel: u64, v: u32) -> bool {
        match rel {
            q::DBAL => self.rdbal = v & DBAL_MASK,
            q::DBAH => self.rdbah = v,
            q::DLEN => self.rdlen = v & DLEN_MASK,
            q::SRRCTL => self.srrctl = v,
            q::DH => self.rdh = v & 0xFFFF,
            q::DCA_CTL => self.rxctl = v,
            q::DT => {
                self.rdt = v & 0xFFFF;
                return true;
            }
            q::DCTL => self.rxdctl = v,
            _ => {}
        }
        false
    }

    /// Free descriptors the device may fill: from RDH up to (not including) RDT.
    pub fn free_descriptors(&self) -> u32 {
        let n = self.len();
        if n == 0 {
            return 0;
        }
        (self.rdt + n - self.rdh) % n
    }

    /// Packet buffer size (SRRCTL.BSIZEPKT, KiB; 0 reads as 2 KiB as in QEMU). At most
    /// 63 KiB are used per descriptor, so that the 16-bit length field always holds it.
    pub fn pkt_buf_size(&self) -> usize {
        match (self.srrctl & srrctl::BSIZEPKT_MASK) as usize {
            0 => 2048,
            k => k.min(63) * 1024,
        }
    }

    /// Header buffer size (SRRCTL.BSIZEHDR, 64-byte units).
    pub fn hdr_buf_size(&self) -> usize {
        (((self.srrctl & srrctl::BSIZEHDR_MASK) >> srrctl::BSIZEHDR_SHIFT) as usize) * 64
    }

    pub fn desc_type(&self) -> u32 {
        (self.srrctl & srrctl::DESCTYPE_MASK) >> srrctl::DESCTYPE_SHIFT
    }

    fn desc_addr(&self, index: u32) -> u64 {
        self.base().wrapping_add(u64::from(index) * DESC_LEN as u64)
    }
}

/// How a frame is laid out over descriptors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    OneBuffer {
        buf: usize,
    },
    /// `always`: DESCTYPE 101 (igbvf) puts the first bytes of an unsplittable frame in the
    /// header buffer; 010 puts such a frame in the packet buffers only.
    HeaderSplit {
        buf: usize,
        hdr: usize,
        always: bool,
    },
}

impl Layout {
    /// (header bytes, descriptors needed) for a frame of `len` bytes.
    fn plan(self, frame: &[u8]) -> (usize, usize) {
        match self {
            Layout::OneBuffer { buf } => (0, frame.len().div_ceil(buf)),
            Layout::HeaderSplit { buf, hdr, always } => {
                let h = match split_point(frame, hdr) {
                    Split::Headers(h) => h,
                    Split::Unparsed(h) if always => h,
                    Split::Unparsed(_) => 0,
                };
                let rest = frame.len() - h;
                (h, rest.div_ceil(buf).max(1))
            }
        }
    }
}

/// Where the header ends for header split, at most `hdr` bytes: the L2..L4 headers of an
/// IPv4/IPv6 TCP or UDP frame; otherwise (or if they do not fit) the first `hdr` bytes —
/// "split always" puts something in the header buffer, and igbvf needs the Ethernet header
/// in the linear part of the skb.
fn split_point(frame: &[u8], hdr: usize) -> Split {
    if frame.len() <= hdr {
        return Split::Headers(frame.len());
    }
    match parse_headers_len(frame) {
        Some(h) if h <= hdr => Split::Headers(h),
        _ => Split::Unparsed(frame.len().min(hdr)),
    }
}

/// Where header split cuts a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Split {
    /// After the parsed headers (or the whole frame, when it fits the header buffer).
    Headers(usize),
    /// Headers not recognised (or too long): the header buffer's size.
    Unparsed(usize),
}

/// Length of Ethernet (+ up to two VLAN tags, 802.1Q or 802.1ad) + IP + TCP/UDP headers, if
/// they are all in the frame. The IP header is taken as the ethertype says (its version is not
/// checked), and an IPv6 header's next header is read as the L4 protocol: extension headers are
/// not walked, so they end the headers at the fixed IPv6 header.
fn parse_headers_len(f: &[u8]) -> Option<usize> {
    let eth = EthernetFrame::new_checked(f).ok()?;
    let l3 = eth.payload();
    let (proto, ip_len) = match eth.ethertype() {
        EtherTypes::Ipv4 => {
            let ip = Ipv4Packet::new_checked(l3).ok()?;
            (ip.next_header(), ip.header_len())
        }
        EtherTypes::Ipv6 => {
            let ip = Ipv6Packet::new_checked(l3).ok()?;
            (ip.next_header(), ipv6::HEADER_LEN)
        }
        _ => return None,
    };
    let l4 = &l3[ip_len..];
    let l4_len = match proto {
        IpNextHeaderProtocols::Tcp => TcpPacket::new_checked(l4).ok()?.header_len(),
        IpNextHeaderProtocols::Udp => {
            UdpPacket::new_checked(l4).ok()?;
            udp::HEADER_LEN
        }
        _ => 0,
    };
    Some(eth.header_len() + ip_len + l4_len)
}

/// Bytes 8..16 of a descriptor.
fn upper(b: &DescBytes) -> [u8; 8] {
    let mut u = [0u8; 8];
    u.copy_from_slice(&b[8..16]);
    u
}

/// Writes `frame` into queue `ring` of guest memory `mem`. The caller has checked
/// attachment, bus mastering and the queue enable.
/// `checksum`: with the function's RX checksum reporting on, what is already known of the
/// frame's L4 checksum ([`rxcsum::status_for`]); `None` reports no checksum status.
pub(crate) fn write_frame<M: GuestMemoryBackend>(
    ring: &mut RxRing,
    mem: &M,
    frame: &[u8],
    stripped_tci: Option<u16>,
    checksum: Option<L4Checksum>,
    func: FunctionId,
    dma: (&mut DmaFaults, usize),
) -> RxOutcome {
    let (faults, queue) = dma;
    let mut fail = |target| faults.fail(QueueDir::Rx, queue, target);
    let n = ring.len();
    if n == 0 || ring.rdh >= n || ring.rdt >= n {
        debug!(
            %func,
            rdlen = ring.rdlen,
            rdh = ring.rdh,
            rdt = ring.rdt,
            "RX ring not usable"
        );
        return RxOutcome::Dropped(RxDrop::BadRing);
    }
    if frame.is_empty() {
        return RxOutcome::Dropped(RxDrop::Empty);
    }
    let buf = ring.pkt_buf_size();
    let layout = match ring.desc_type() {
        srrctl::DESCTYPE_ADV_ONEBUF => Layout::OneBuffer { buf },
        t @ (srrctl::DESCTYPE_HDR_SPLIT | srrctl::DESCTYPE_HDR_SPLIT_ALWAYS) => {
            match ring.hdr_buf_size() {
                0 => Layout::OneBuffer { buf },
                hdr => Layout::HeaderSplit {
                    buf,
                    hdr,
                    always: t == srrctl::DESCTYPE_HDR_SPLIT_ALWAYS,
                },
            }
        }
        _ => return RxOutcome::Dropped(RxDrop::UnsupportedDescType),
    };
    let (hdr_len, needed) = layout.plan(frame);
    // One slot always stays empty (RDH == RDT means "no buffers").
    if needed as u64 > u64::from(n - 1) {
        return RxOutcome::Dropped(RxDrop::TooLarge);
    }
    let needed = needed as u32;
    if needed > ring.free_descriptors() {
        return RxOutcome::Dropped(RxDrop::RingFull);
    }

    // Read the descriptors first: a ring outside memory changes nothing in the guest.
    let mut descs: SmallVec<[_; RX_DESCS_INLINE]> = SmallVec::with_capacity(needed as usize);
    for i in 0..needed {
        let idx = (ring.rdh + i) % n;
        let mut b: DescBytes = [0; DESC_LEN];
        if fail(DmaTarget::Descriptor) || guest::read(mem, ring.desc_addr(idx), &mut b).is_err() {
            warn!(
                %func,
                index = idx,
                base = ring.base(),
                "RX descriptor ring outside guest memory; queue stopped"
            );
            ring.rxdctl &= !dctl::ENABLE;
            return RxOutcome::Dropped(RxDrop::RingDma);
        }
        descs.push((idx, RxReadDesc::parse(&b)));
    }

    // Place the data.
    let mut buffer_fault = false;
    let mut rest = &frame[hdr_len..];
    let mut wbs: SmallVec<[RxWriteBack; RX_DESCS_INLINE]> = SmallVec::with_capacity(descs.len());
    for (i, (_, d)) in descs.iter().enumerate() {
        let mut wb = RxWriteBack::default();
        if i == 0 && hdr_len > 0 {
            if fail(DmaTarget::Buffer) || guest::write(mem, d.hdr_addr, &frame[..hdr_len]).is_err()
            {
                buffer_fault = true;
            }
            wb.hdr_len = hdr_len as u16;
            wb.sph = true;
        }
        let take = rest.len().min(buf);
        if take > 0
            && (fail(DmaTarget::Buffer) || guest::write(mem, d.pkt_addr, &rest[..take]).is_err())
        {
            buffer_fault = true;
        }
        wb.length = take as u16;
        rest = &rest[take..];
        wb.status_error = rx_status::DD;
        wbs.push(wb);
    }
    if let Some(last) = wbs.last_mut() {
        last.status_error |= rx_status::EOP;
        if let Some(tci) = stripped_tci {
            last.status_error |= rx_status::VP;
            last.vlan = tci;
        }
        if buffer_fault {
            last.status_error |= RXE;
        } else if let Some(known) = checksum {
            last.status_error |= rxcsum::status_for(frame, known);
        }
    }

    // Write back: the lower half, then the upper half (status, length, VLAN) in one store so
    // that neither igbvf's DD nor igb's length can be seen before the rest.
    for ((idx, _), wb) in descs.iter().zip(&wbs) {
        let mut b: DescBytes = [0; DESC_LEN];
        wb.emit(&mut b);
        let at = ring.desc_addr(*idx);
        let ok = !fail(DmaTarget::Descriptor)
            && guest::write(mem, at, &b[0..8]).is_ok()
            && guest::write_upper_half(mem, at.wrapping_add(8), &upper(&b)).is_ok();
        if !ok {
            // Readable but not writable through this map: stop like a ring fault.
            warn!(%func, index = idx, "RX write-back failed; queue stopped");
            ring.rxdctl &= !dctl::ENABLE;
            return RxOutcome::Dropped(RxDrop::RingDma);
        }
    }
    ring.rdh = (ring.rdh + needed) % n;
    if buffer_fault {
        warn!(%func, "RX buffer outside guest memory; frame dropped with RXE");
        ring.rqdpc = ring.rqdpc.wrapping_add(1);
        return RxOutcome::Dropped(RxDrop::BufferDma);
    }
    RxOutcome::Delivered {
        descriptors: needed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use eswitch::wire::{
        ethernet, EtherType, EthernetRepr, IpNextHeaderProtocol, Ipv4Repr, Ipv6Repr, MacAddr,
        TcpFlags, TcpRepr, UdpRepr, VlanTag, VlanTags, VlanTci,
    };

    const V4: (Ipv4Addr, Ipv4Addr) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
    const V6: (Ipv6Addr, Ipv6Addr) = (
        Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1),
        Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2),
    );

    /// The Ethernet header with `tags` and `ethertype`, then `l3`.
    fn frame(tags: VlanTags, ethertype: EtherType, l3: &[u8]) -> Vec<u8> {
        let eth = EthernetRepr {
            dst: MacAddr([0x02, 0, 0, 0, 0, 0x02]),
            src: MacAddr([0x02, 0, 0, 0, 0, 0x01]),
            tags,
            ethertype,
        };
        let mut f = vec![0u8; eth.buffer_len() + l3.len()];
        eth.emit(&mut EthernetFrame::new_unchecked(&mut f[..]));
        f[eth.header_len()..].copy_from_slice(l3);
        f
    }

    /// An IPv4 packet carrying `l4` as `proto`.
    fn ipv4(proto: IpNextHeaderProtocol, l4: &[u8]) -> Vec<u8> {
        let ip = Ipv4Repr {
            src_addr: V4.0,
            dst_addr: V4.1,
            next_header: proto,
            payload_len: l4.len(),
            ttl: 64,
            ident: 0,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
            dscp: 0,
            ecn: 0,
        };
        let mut p = vec![0u8; ip.buffer_len()];
        let mut view = Ipv4Packet::new_unchecked(&mut p[..]);
        ip.emit(&mut view);
        view.payload_mut().copy_from_slice(l4);
        p
    }

    /// An IPv6 packet carrying `l4` as `proto`, no extension headers.
    fn ipv6(proto: IpNextHeaderProtocol, l4: &[u8]) -> Vec<u8> {
        let ip = Ipv6Repr {
            src_addr: V6.0,
            dst_addr: V6.1,
            next_header: proto,
            payload_len: l4.len(),
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
        };
        let mut p = vec![0u8; ip.buffer_len()];
        let mut view = Ipv6Packet::new_unchecked(&mut p[..]);
        ip.emit(&mut view);
        view.payload_mut().copy_from_slice(l4);
        p
    }

    /// A TCP segment with `options` and `payload` zero bytes (the checksum is over IPv4's
    /// addresses; header split does not look at it).
    fn tcp(options: &[u8], payload: usize) -> Vec<u8> {
        let payload = vec![0u8; payload];
        let seg = TcpRepr {
            src_port: 5001,
            dst_port: 40000,
            seq_number: 1,
            ack_number: 0,
            flags: TcpFlags::ACK,
            window_len: 512,
            urgent_at: 0,
            options,
            payload: &payload,
        };
        let mut s = vec![0u8; seg.buffer_len()];
        let (src, dst) = (IpAddr::V4(V4.0), IpAddr::V4(V4.1));
        seg.emit(&mut TcpPacket::new_unchecked(&mut s[..]), &src, &dst);
        s
    }

    fn udp(payload: usize) -> Vec<u8> {
        let payload = vec![0u8; payload];
        let dgram = UdpRepr {
            src_port: 4000,
            dst_port: 4433,
            payload: &payload,
        };
        let mut d = vec![0u8; dgram.buffer_len()];
        let (src, dst) = (IpAddr::V4(V4.0), IpAddr::V4(V4.1));
        dgram.emit(&mut UdpPacket::new_unchecked(&mut d[..]), &src, &dst);
        d
    }

    #[test]
    fn split_point_is_after_tcp_header() {
        let f = frame(
            VlanTags::NONE,
            EtherTypes::Ipv4,
            &ipv4(IpNextHeaderProtocols::Tcp, &tcp(&[], 1000)),
        );
        assert_eq!(split_point(&f, 128), Split::Headers(54));
    }

    #[test]
    fn split_point_of_unknown_ethertype_is_the_header_buffer() {
        let f = frame(
            VlanTags::NONE,
            EtherType(0x88B5),
            &[0u8; 300 - ethernet::HEADER_LEN],
        );
        assert_eq!(split_point(&f, 128), Split::Unparsed(128));
        // A frame that fits goes entirely into the header buffer.
        assert_eq!(split_point(&f[..100], 128), Split::Headers(100));
    }

    #[test]
    fn vlan_tagged_udp_split_point() {
        let tag = VlanTags::one(VlanTag::dot1q(VlanTci::new(10, 0)));
        let f = frame(
            tag,
            EtherTypes::Ipv4,
            &ipv4(IpNextHeaderProtocols::Udp, &udp(500)),
        );
        assert_eq!(split_point(&f, 128), Split::Headers(18 + 20 + 8));
    }

    #[test]
    fn double_tagged_ipv6_tcp_split_point_counts_the_options() {
        let tags = VlanTags::two(
            VlanTag::dot1ad(VlanTci::new(100, 0)),
            VlanTag::dot1q(VlanTci::new(10, 0)),
        );
        // NOP, NOP, timestamp: 12 bytes of options.
        let options = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
        let f = frame(
            tags,
            EtherTypes::Ipv6,
            &ipv6(IpNextHeaderProtocols::Tcp, &tcp(&options, 500)),
        );
        assert_eq!(split_point(&f, 128), Split::Headers(22 + 40 + 32));
        // Headers longer than the header buffer: unparsed.
        assert_eq!(split_point(&f, 64), Split::Unparsed(64));
    }

    #[test]
    fn the_tcp_data_offset_moves_the_split_point() {
        let mut f = frame(
            VlanTags::NONE,
            EtherTypes::Ipv4,
            &ipv4(IpNextHeaderProtocols::Tcp, &tcp(&[], 200)),
        );
        let mut eth = EthernetFrame::new_unchecked(&mut f[..]);
        let mut ip = Ipv4Packet::new_unchecked(eth.payload_mut());
        TcpPacket::new_unchecked(ip.payload_mut()).set_header_len(60);
        assert_eq!(split_point(&f, 128), Split::Headers(14 + 20 + 60));
    }

    #[test]
    fn free_descriptors_wrap() {
        let mut r = RxRing::reset_value(0);
        r.rdlen = 8 * 16;
        r.rdh = 6;
        r.rdt = 2;
        assert_eq!(r.free_descriptors(), 4);
        r.rdt = 6;
        assert_eq!(r.free_descriptors(), 0);
    }
}
