//! The 82599 VF's RX queues: their registers (VFRDBAL ... VFRXDCTL, 0x40 apart from 0x1000)
//! as ixgbevf's `ixgbevf_configure_rx_ring` and `ixgbevf_configure_srrctl` program them, and
//! the engine that writes a frame into the guest's ring in the advanced one-buffer layout
//! ixgbevf reads (`ixgbevf_clean_rx_irq`, `ixgbevf_is_non_eop`, `ixgbevf_process_skb_fields`).
//!
//! Where the 82599 differs from the 82576 (whose engine is `i82576::rx`):
//! - one-buffer advanced descriptors only (SRRCTL.DESCTYPE 001; ixgbevf never splits
//!   headers); the header-address half of a read descriptor is ignored, since ixgbevf never
//!   fills it and zeroes the next descriptor's length there (`ixgbevf_alloc_rx_buffers`);
//! - SRRCTL.BSIZEPKT in KiB up to 16 KiB (ixgbevf: 2 or 3 KiB), no per-queue RLPML: a frame
//!   longer than a buffer spans descriptors, EOP on the last (`ixgbevf_is_non_eop`);
//! - ixgbevf's completion test is a non-zero length (`ixgbevf_clean_rx_irq` reads
//!   `wb.upper.length`), so no descriptor is ever written back with length 0, and the upper
//!   half (status, errors, length, VLAN) is stored in one 8-byte write after the lower half;
//! - VLAN stripping per queue (RXDCTL.VME, ixgbevf sets it with CTAG_RX): the outer 802.1Q tag
//!   is taken out of the frame and written back with VP in the EOP descriptor
//!   (`ixgbevf_process_skb_fields`). A tag the switch already stripped (a port VLAN) is
//!   written back the same way with VME, and hidden without it, as ixgbe hides a port VLAN
//!   from its VF (`ixgbe_set_vf_vlan_msg`'s "hide VLAN" queue setting);
//! - the error bits are the 82599's: a buffer outside guest memory completes the frame's
//!   descriptors with RXE (bit 29, in ixgbevf's `IXGBE_RXDADV_ERR_FRAME_ERR_MASK`, so it
//!   drops the frame and recycles the buffers); checksum errors (TCPE b30, IPE b31) are never
//!   reported — only verified-good checksums ([`crate::function::rxcsum`]: IPCS, L4CS, UDPCS
//!   sit at the same bits on both cards).
//!
//! DMA faults as on the 82576: a ring outside guest memory stops the queue (RXDCTL.ENABLE
//! cleared), a buffer outside it drops the frame with RXE.

use eswitch::wire::{EtherTypes, EthernetFrame};
use smallvec::SmallVec;
use std::borrow::Cow;
use tracing::{debug, warn};
use vm_memory::GuestMemoryBackend;

use super::regs::{rxdctl, rxq, srrctl, DBAL_MASK, DCA_RXCTRL_RESET, DLEN_MASK, HEAD_TAIL_MASK};
use crate::function::desc::{
    rx_status, DescBytes, RxReadDesc, RxWriteBack, DESC_LEN, RX_DESCS_INLINE,
};
use crate::function::faults::{DmaFaults, DmaTarget, QueueDir};
use crate::function::rxcsum::{self, L4Checksum};
use crate::function::stats::{RxDrop, RxOutcome};
use crate::function::{guest, FunctionId};

/// The 82599's RXE error bit in the write-back (`IXGBE_RXDADV_ERR_USE` in ixgbevf's names,
/// part of the frame-error mask it drops on).
pub const ERR_RXE: u32 = 1 << 29;

/// The registers of one RX queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RxQueue {
    pub rdbal: u32,
    pub rdbah: u32,
    pub rdlen: u32,
    pub dca_rxctrl: u32,
    pub rdh: u32,
    pub srrctl: u32,
    pub rdt: u32,
    pub rxdctl: u32,
    pub rscctl: u32,
}

impl Default for RxQueue {
    /// After power-on, VF reset or FLR: disabled, SRRCTL and VFDCA_RXCTRL at the values DPDK's
    /// `ixgbe_virt_clr_reg` restores, everything else 0.
    fn default() -> Self {
        RxQueue {
            rdbal: 0,
            rdbah: 0,
            rdlen: 0,
            dca_rxctrl: DCA_RXCTRL_RESET,
            rdh: 0,
            srrctl: srrctl::RESET,
            rdt: 0,
            rxdctl: 0,
            rscctl: 0,
        }
    }
}

impl RxQueue {
    pub fn enabled(&self) -> bool {
        self.rxdctl & rxdctl::ENABLE != 0
    }

    /// RXDCTL.VME: strip VLAN tags on this queue.
    pub fn strips_vlan(&self) -> bool {
        self.rxdctl & rxdctl::VME != 0
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

    /// Free descriptors the device may fill: from RDH up to (not including) RDT.
    pub fn free_descriptors(&self) -> u32 {
        let n = self.len();
        if n == 0 || self.rdh >= n || self.rdt >= n {
            return 0;
        }
        (self.rdt + n - self.rdh) % n
    }

    /// SRRCTL.BSIZEPKT in bytes: KiB units, 0 read as the reset value's 2 KiB, at most the
    /// 82599's 16 KiB.
    pub fn pkt_buf_size(&self) -> usize {
        let kib = match self.srrctl & srrctl::BSIZEPKT_MASK {
            0 => 2,
            k => k.min(srrctl::BSIZEPKT_MAX_KIB),
        };
        kib as usize * 1024
    }

    pub fn desc_type(&self) -> u32 {
        (self.srrctl & srrctl::DESCTYPE_MASK) >> srrctl::DESCTYPE_SHIFT
    }

    fn desc_addr(&self, index: u32) -> u64 {
        self.base().wrapping_add(u64::from(index) * DESC_LEN as u64)
    }

    /// A read inside the queue's 0x40 block; `None` where the block has no register.
    pub fn read(&self, rel: u64) -> Option<u32> {
        Some(match rel {
            rxq::RDBAL => self.rdbal,
            rxq::RDBAH => self.rdbah,
            rxq::RDLEN => self.rdlen,
            rxq::DCA_RXCTRL => self.dca_rxctrl,
            rxq::RDH => self.rdh,
            rxq::SRRCTL => self.srrctl,
            rxq::RDT => self.rdt,
            rxq::RXDCTL => self.rxdctl,
            rxq::RSCCTL => self.rscctl,
            _ => return None,
        })
    }

    /// A write inside the queue's block: `Some(true)` when it posted buffers (an RDT write);
    /// `None` where the block has no register. RXDCTL.ENABLE reads back at once, as
    /// ixgbevf's `ixgbevf_rx_desc_queue_enable` polls for it.
    pub fn write(&mut self, rel: u64, v: u32) -> Option<bool> {
        match rel {
            rxq::RDBAL => self.rdbal = v & DBAL_MASK,
            rxq::RDBAH => self.rdbah = v,
            rxq::RDLEN => self.rdlen = v & DLEN_MASK,
            rxq::DCA_RXCTRL => self.dca_rxctrl = v,
            rxq::RDH => self.rdh = v & HEAD_TAIL_MASK,
            rxq::SRRCTL => self.srrctl = v,
            rxq::RDT => {
                self.rdt = v & HEAD_TAIL_MASK;
                return Some(true);
            }
            rxq::RXDCTL => self.rxdctl = v,
            rxq::RSCCTL => self.rscctl = v,
            _ => return None,
        }
        Some(false)
    }
}

/// The frame as it goes into the buffers and the tag the write-back reports (VP), after
/// RXDCTL.VME: the outer 802.1Q tag stripped by the queue, or the one the switch stripped.
fn vlan_strip<'f>(
    queue: &RxQueue,
    frame: &'f [u8],
    stripped_tci: Option<u16>,
) -> (Cow<'f, [u8]>, Option<u16>) {
    if !queue.strips_vlan() {
        return (Cow::Borrowed(frame), None);
    }
    if stripped_tci.is_some() {
        return (Cow::Borrowed(frame), stripped_tci);
    }
    let eth = EthernetFrame::new_unchecked(frame);
    match eth.outer_tag() {
        Some(tag) if tag.tpid == EtherTypes::Vlan => {
            (Cow::Owned(eth.strip_tag().to_vec()), Some(tag.tci.0))
        }
        _ => (Cow::Borrowed(frame), None),
    }
}

/// Writes `frame` into `queue` in guest memory `mem`. The caller has checked attachment, bus
/// mastering and the queue enable.
/// `checksum`: with the function's RX checksum reporting on, what is already known of the
/// frame's L4 checksum ([`rxcsum::status_for`]); `None` reports no checksum status.
pub(crate) fn write_frame<M: GuestMemoryBackend>(
    queue: &mut RxQueue,
    mem: &M,
    frame: &[u8],
    stripped_tci: Option<u16>,
    checksum: Option<L4Checksum>,
    func: FunctionId,
    dma: (&mut DmaFaults, usize),
) -> RxOutcome {
    let (faults, index) = dma;
    let mut fail = |target| faults.fail(QueueDir::Rx, index, target);
    let n = queue.len();
    if n == 0 || queue.rdh >= n || queue.rdt >= n {
        debug!(%func, rdlen = queue.rdlen, rdh = queue.rdh, rdt = queue.rdt, "RX ring not usable");
        return RxOutcome::Dropped(RxDrop::BadRing);
    }
    if queue.desc_type() != srrctl::DESCTYPE_ADV_ONEBUF {
        debug!(%func, srrctl = queue.srrctl, "RX descriptor type other than advanced one-buffer");
        return RxOutcome::Dropped(RxDrop::UnsupportedDescType);
    }
    let (data, vlan) = vlan_strip(queue, frame, stripped_tci);
    if data.is_empty() {
        return RxOutcome::Dropped(RxDrop::Empty);
    }
    let buf = queue.pkt_buf_size();
    let needed = data.len().div_ceil(buf);
    // One slot always stays empty (RDH == RDT means "no buffers").
    if needed as u64 > u64::from(n - 1) {
        return RxOutcome::Dropped(RxDrop::TooLarge);
    }
    let needed = needed as u32;
    if needed > queue.free_descriptors() {
        return RxOutcome::Dropped(RxDrop::RingFull);
    }

    // Read the descriptors first: a ring outside memory changes nothing in the guest.
    let mut descs: SmallVec<[_; RX_DESCS_INLINE]> = SmallVec::with_capacity(needed as usize);
    for i in 0..needed {
        let idx = (queue.rdh + i) % n;
        let mut b: DescBytes = [0; DESC_LEN];
        if fail(DmaTarget::Descriptor) || guest::read(mem, queue.desc_addr(idx), &mut b).is_err() {
            warn!(%func, index = idx, base = queue.base(), "RX descriptor ring outside guest memory; queue stopped");
            queue.rxdctl &= !rxdctl::ENABLE;
            return RxOutcome::Dropped(RxDrop::RingDma);
        }
        descs.push((idx, RxReadDesc::parse(&b).pkt_addr));
    }

    // Place the data: every descriptor gets at least one byte, so no length is 0.
    let mut buffer_fault = false;
    let mut wbs: SmallVec<[RxWriteBack; RX_DESCS_INLINE]> = SmallVec::with_capacity(descs.len());
    for (chunk, (_, addr)) in data.chunks(buf).zip(&descs) {
        if fail(DmaTarget::Buffer) || guest::write(mem, *addr, chunk).is_err() {
            buffer_fault = true;
        }
        wbs.push(RxWriteBack {
            status_error: rx_status::DD,
            length: chunk.len() as u16,
            ..RxWriteBack::default()
        });
    }
    if let Some(last) = wbs.last_mut() {
        last.status_error |= rx_status::EOP;
        if let Some(tci) = vlan {
            last.status_error |= rx_status::VP;
            last.vlan = tci;
        }
        if buffer_fault {
            last.status_error |= ERR_RXE;
        } else if let Some(known) = checksum {
            last.status_error |= rxcsum::status_for(&data, known);
        }
    }

    // Write back: the lower half, then the upper half (status, length, VLAN) in one store.
    for ((idx, _), wb) in descs.iter().zip(&wbs) {
        let mut b: DescBytes = [0; DESC_LEN];
        wb.emit(&mut b);
        let mut upper = [0u8; 8];
        upper.copy_from_slice(&b[8..16]);
        let at = queue.desc_addr(*idx);
        let ok = !fail(DmaTarget::Descriptor)
            && guest::write(mem, at, &b[0..8]).is_ok()
            && guest::write_upper_half(mem, at.wrapping_add(8), &upper).is_ok();
        if !ok {
            warn!(%func, index = idx, "RX write-back failed; queue stopped");
            queue.rxdctl &= !rxdctl::ENABLE;
            return RxOutcome::Dropped(RxDrop::RingDma);
        }
    }
    queue.rdh = (queue.rdh + needed) % n;
    if buffer_fault {
        warn!(%func, "RX buffer outside guest memory; frame dropped with RXE");
        return RxOutcome::Dropped(RxDrop::BufferDma);
    }
    RxOutcome::Delivered {
        descriptors: needed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srrctl_buffer_sizes_follow_ixgbevf_and_the_82599_limit() {
        let mut q = RxQueue::default();
        assert_eq!(q.pkt_buf_size(), 2048, "reset value 0x402");
        assert_eq!(q.desc_type(), 0, "legacy until ixgbevf sets one-buffer");
        q.srrctl = 0x1200_0403; // ixgbevf with 3 KiB buffers
        assert_eq!((q.pkt_buf_size(), q.desc_type()), (3072, 1));
        q.srrctl = 0x7F;
        assert_eq!(q.pkt_buf_size(), 16 * 1024);
        q.srrctl = 0;
        assert_eq!(q.pkt_buf_size(), 2048);
    }

    #[test]
    fn free_descriptors_never_trust_out_of_range_pointers() {
        let q = RxQueue {
            rdlen: 8 * DESC_LEN as u32,
            rdh: 9,
            rdt: 3,
            ..RxQueue::default()
        };
        assert_eq!(q.free_descriptors(), 0);
        let q = RxQueue { rdh: 6, ..q };
        assert_eq!(q.free_descriptors(), 5);
    }
}
