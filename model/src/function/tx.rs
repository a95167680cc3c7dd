//! The TX engine the 82576 and the 82599 share: one queue's ring state ([`TxRing`]; each card
//! decodes its own queue registers onto it: `i82576::tx`, `x82599::tx`) and the engine
//! that runs when the guest writes TDT (the advanced descriptors igbvf's `igbvf_tx_queue_adv`,
//! `igbvf_tso` and `igbvf_tx_csum` build, igb's `igb_tx_map`, `igb_tso` and `igb_tx_csum`, and
//! ixgbevf's `ixgbevf_tx_map`, `ixgbevf_tso` and `ixgbevf_tx_csum` alike; QEMU's
//! `igb_process_tx_desc`): advanced context (DTYP 0010) and data (DTYP 0011) descriptors from
//! TDH up to TDT, a packet gathered across data descriptors until EOP (a packet to segment: its
//! headers, its payload read from the buffers as the segments are cut), offloads applied, the
//! frames collected for the caller to switch, DD written back into every descriptor with RS
//! once its packet is consumed (or, where the card honours it, the head written to the
//! TDWBAL/TDWBAH address instead: `TxEnv::head_writeback`), TDH advanced.
//!
//! Hostile input is an error on this queue only, counted by [`TxError`]:
//! - a packet whose descriptors are bad (DTALEN 0, unknown type, > [`MAX_TX_PACKET`] bytes, a
//!   buffer outside guest memory, an offload the engine refuses) is consumed and dropped, with
//!   DD written back as usual so the driver's ring keeps moving;
//! - no EOP within [`MAX_DESC_PER_PACKET`] descriptors: those descriptors are consumed;
//! - TDH/TDT beyond TDLEN: the tail write is not acted on;
//! - the descriptor ring outside guest memory: the queue stops (TXDCTL.ENABLE cleared).
//!
//! Shaping: each frame is admitted through `TxEnv::admit` — for a VF, its PF's
//! `PfPort::tx_admit` (the switch's rate limiter); the PF is not rate-limited. A frame that must
//! wait pauses the queue with that frame not consumed (TDH stays on its packet) until the NIC
//! runtime calls `Vf::tx_resume` at the time the shaper named. A TSO packet paused between
//! segments resumes at the segment that was deferred: no loss, no duplicate.
//!
//! A VF whose transmit is disabled (`PfPort::tx_gate`: the 82576's VFTE bit of its pool) has
//! its queues left unfetched, descriptors and all, as a disabled queue's are; the queue pauses
//! and asks again at the time the PF side names, so that it sends once VFTE is set.

use bytes::Bytes;
use eswitch::wire::{ipv6, tcp};
use eswitch::NextSendAt;
use smallvec::SmallVec;
use tracing::{debug, trace, warn};
use vm_memory::{GuestAddress, GuestAddressSpace, GuestMemoryBackend};

use crate::function::desc::{
    tx_bits, DescBytes, TxContext, TxDataDesc, TxDesc, TxOffloads, DESC_LEN, TX_STATUS_OFFSET,
};
use crate::function::faults::{DmaFaults, DmaTarget, QueueDir};
use crate::function::offload::{
    ChecksumSource, OffloadError, OffloadStats, Payload, PayloadUnreadable,
};
use crate::function::rxcsum::L4Checksum;
use crate::function::stats::{Counters, TxError};
use crate::function::{guest, offload, FunctionId, GuestMem, TxFrame};
use crate::seams::PfPort;

/// TXDCTL.ENABLE, the same bit 25 on the 82576 and the 82599 (ixgbevf `IXGBE_TXDCTL_ENABLE`).
pub const TXDCTL_ENABLE: u32 = 1 << 25;
/// TDWBAL.Head_WB_En (bit 0): write the head back to memory instead of DD into descriptors.
pub const TDWBAL_HEAD_WB_EN: u32 = 1 << 0;

/// Largest packet (all data descriptors of one packet) the engine gathers: 64 KiB, the TSO
/// limit of the 82576 and more than any igbvf skb.
pub const MAX_TX_PACKET: usize = 64 * 1024;
/// Most descriptors (context + data) one packet may span.
pub const MAX_DESC_PER_PACKET: u32 = 64;
/// The bytes of a packet to segment gathered before its segments are cut: room for the headers
/// of a plain TCP/IP packet with options and a VLAN tag. Longer headers grow it (see
/// `one_packet`).
const SEGMENT_HEAD: usize = 256;
/// Frames shorter than this (60 bytes: 64 on the wire with the FCS) are zero-padded when
/// TCTL.PSP is set, which igb always does (`igb_setup_tctl`); VFs are padded always (our PF
/// side stands in for igb).
pub const MIN_TX_FRAME: usize = 60;
/// Context slots per queue (IDX is masked to this).
pub const CONTEXT_SLOTS: usize = 2;

/// The offload request of one packet: its first data descriptor's offload bits and the context
/// of the slot it names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxRequest {
    pub ctx: TxContext,
    pub offloads: TxOffloads,
}

impl TxRequest {
    pub fn needs_offload(&self) -> bool {
        let o = &self.offloads;
        o.tse || o.ixsm || o.txsm || o.vle
    }
}

/// Who the engine works for: which function (for its logs), who admits each frame (a VF's
/// PF: the shaper; the PF: nobody, it is not rate-limited), whether short frames are padded
/// (TCTL.PSP), the function's counters, and where admitted frames go.
pub(crate) struct TxEnv<'a> {
    pub func: FunctionId,
    pub admit: &'a dyn Fn(usize) -> Result<(), NextSendAt>,
    pub pad: bool,
    pub counters: &'a mut Counters,
    pub out: &'a mut Vec<TxFrame>,
    /// The function's injected DMA faults, and which queue this is.
    pub dma: &'a mut DmaFaults,
    pub queue: usize,
    /// The card honours TDWBAL.Head_WB_En: with it set, a consumed packet that asked for
    /// status (RS) writes the new TDH as a 32-bit word at TDWBAH:TDWBAL (bits 1:0 cleared)
    /// and no DD goes into the descriptors (the 82599; the 82576 model keeps TDWBAL as plain
    /// storage since igbvf and igb never set it).
    pub head_writeback: bool,
    /// The data descriptors' VLAN insertion (VLE) applies; off, it is ignored and the frame
    /// goes out as the driver wrote it (`PfPort::tx_gate`).
    pub descriptor_vlan: bool,
}

/// A VF's side of a TX run: which VF, the PF that admits its frames (the shaper), whether it
/// may fetch (its memory, Bus Master Enable), its counters and DMA faults, and whether the card
/// honours head write-back.
pub(crate) struct VfTx<'a> {
    pub id: u16,
    pub pf: &'a dyn PfPort,
    pub mem: Option<&'a GuestMem>,
    pub bus_master: bool,
    pub counters: &'a mut Counters,
    pub dma: &'a mut DmaFaults,
    pub head_writeback: bool,
}

/// A pause the shaper asked for, or a queue held while its VF's transmit is disabled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxPause {
    pub until_ns: u64,
    /// TDH of the paused packet.
    tdh: u32,
    /// Frames of that packet already admitted.
    frames_done: usize,
    /// Held because the VF's transmit was disabled, not by the shaper.
    closed: bool,
}

impl TxPause {
    /// Whether the queue is held because its VF's transmit was disabled (VFTE).
    pub fn closed(&self) -> bool {
        self.closed
    }
}

/// The registers and engine state of one TX queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxRing {
    pub tdbal: u32,
    pub tdbah: u32,
    pub tdlen: u32,
    pub tdh: u32,
    pub txctl: u32,
    pub tdt: u32,
    pub txdctl: u32,
    pub tdwbal: u32,
    pub tdwbah: u32,
    ctx: [TxContext; CONTEXT_SLOTS],
    pause: Option<TxPause>,
}

/// What one engine run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxRun {
    /// DD was written back (raise the queue's TX cause).
    pub wrote_back: bool,
    /// The queue paused on a deferred frame.
    pub paused_until: Option<u64>,
}

impl TxRing {
    /// Every register 0 but TXDCTL, no context, no pause.
    pub fn new(txdctl: u32) -> TxRing {
        TxRing {
            tdbal: 0,
            tdbah: 0,
            tdlen: 0,
            tdh: 0,
            txctl: 0,
            tdt: 0,
            txdctl,
            tdwbal: 0,
            tdwbah: 0,
            ctx: [TxContext::default(); CONTEXT_SLOTS],
            pause: None,
        }
    }

    pub fn enabled(&self) -> bool {
        self.txdctl & TXDCTL_ENABLE != 0
    }

    pub fn base(&self) -> u64 {
        (u64::from(self.tdbah) << 32) | u64::from(self.tdbal)
    }

    pub fn len(&self) -> u32 {
        self.tdlen / DESC_LEN as u32
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn pause(&self) -> Option<TxPause> {
        self.pause
    }

    /// Forget a pause (queue reset / disable).
    pub fn clear_pause(&mut self) {
        self.pause = None;
    }

    fn desc_addr(&self, index: u32) -> u64 {
        self.base().wrapping_add(u64::from(index) * DESC_LEN as u64)
    }

    /// Runs queue `q` of a VF, if the VF may fetch (queue enabled, bus mastering on, memory
    /// attached); admitted frames go to `out`, short ones padded (the 82576's TCTL.PSP and
    /// the 82599's HLREG0.TXPADEN as the PF drivers set them). Logs a queue the run stopped.
    pub(crate) fn run_for_vf(
        &mut self,
        vf: VfTx<'_>,
        q: usize,
        resume: bool,
        out: &mut Vec<TxFrame>,
    ) -> TxRun {
        if !self.enabled() {
            return TxRun::default();
        }
        if !vf.bus_master {
            debug!(
                vf = vf.id,
                queue = q,
                "TX with bus mastering off: not fetched"
            );
            return TxRun::default();
        }
        let Some(mem) = vf.mem else {
            return TxRun::default();
        };
        let (pf, id) = (vf.pf, vf.id);
        // The PF side is asked once per run, not per frame, whether the VF may send, whether
        // it is rate-limited and whether its descriptors' VLAN insertion applies.
        let gate = pf.tx_gate(id);
        if let Err(NextSendAt(until_ns)) = gate.fetch {
            return self.hold_closed(id, q, until_ns);
        }
        let shaped = gate.shaped;
        let guard = mem.memory();
        let admit = |len: usize| if shaped { pf.tx_admit(id, len) } else { Ok(()) };
        let mut env = TxEnv {
            func: FunctionId::Vf(id),
            admit: &admit,
            pad: true,
            counters: vf.counters,
            out,
            dma: vf.dma,
            queue: q,
            head_writeback: vf.head_writeback,
            descriptor_vlan: gate.descriptor_vlan,
        };
        let run = self.run(&guest::LastRegion::new(&*guard), &mut env, resume);
        if !self.enabled() {
            warn!(vf = id, queue = q, "TX queue stopped");
        }
        run
    }

    /// A run of a VF whose transmit is disabled: nothing is fetched. With descriptors waiting
    /// the queue pauses until `until_ns` and then asks again (a packet the shaper had paused
    /// part-way keeps its admitted segments); with none, the next tail write asks.
    fn hold_closed(&mut self, vf: u16, q: usize, until_ns: u64) -> TxRun {
        if self.tdh == self.tdt && self.pause.is_none() {
            return TxRun::default();
        }
        if self.pause.is_none() {
            debug!(
                vf,
                queue = q,
                tdh = self.tdh,
                tdt = self.tdt,
                "TX with the VF's transmit disabled (VFTE): descriptors left in the ring"
            );
        }
        let frames_done = self
            .pause
            .filter(|p| p.tdh == self.tdh)
            .map_or(0, |p| p.frames_done);
        self.pause = Some(TxPause {
            until_ns,
            tdh: self.tdh,
            frames_done,
            closed: true,
        });
        TxRun {
            wrote_back: false,
            paused_until: Some(until_ns),
        }
    }

    /// Runs the engine from TDH to TDT. `resume` lifts a pause (the owner's deadline passed).
    pub(crate) fn run<M: GuestMemoryBackend>(
        &mut self,
        mem: &M,
        env: &mut TxEnv<'_>,
        resume: bool,
    ) -> TxRun {
        let func = env.func;
        let mut run = TxRun::default();
        if let Some(p) = self.pause {
            if !resume {
                run.paused_until = Some(p.until_ns);
                return run;
            }
        }
        let n = self.len();
        if self.tdh == self.tdt && self.pause.is_none() {
            return run;
        }
        if n == 0 || self.tdh >= n || self.tdt >= n {
            warn!(
                %func,
                tdlen = self.tdlen,
                tdh = self.tdh,
                tdt = self.tdt,
                "TX ring registers out of range; tail write ignored"
            );
            env.counters.tx_error(TxError::BadRing);
            self.pause = None;
            return run;
        }
        while self.tdh != self.tdt {
            let frames_done = match self.pause.take() {
                Some(p) if p.tdh == self.tdh => p.frames_done,
                _ => 0,
            };
            match self.one_packet(mem, env, frames_done) {
                Step::Consumed { wrote_back } => run.wrote_back |= wrote_back,
                Step::Incomplete => break,
                Step::Stopped => break,
                Step::Paused(p) => {
                    run.paused_until = Some(p.until_ns);
                    self.pause = Some(p);
                    break;
                }
            }
        }
        run
    }

    fn read_desc<M: GuestMemoryBackend>(
        &mut self,
        mem: &M,
        idx: u32,
        func: FunctionId,
        injected: bool,
    ) -> Option<TxDesc> {
        let mut b: DescBytes = [0; DESC_LEN];
        let read = if injected {
            Err(vm_memory::GuestMemoryError::InvalidGuestAddress(
                vm_memory::GuestAddress(self.desc_addr(idx)),
            ))
        } else {
            guest::read(mem, self.desc_addr(idx), &mut b)
        };
        match read {
            Ok(()) => Some(TxDesc::parse(&b)),
            Err(e) => {
                warn!(%func, index = idx, base = self.base(), error = %e, "TX descriptor ring outside guest memory; queue stopped");
                self.txdctl &= !TXDCTL_ENABLE;
                None
            }
        }
    }

    fn one_packet<M: GuestMemoryBackend>(
        &mut self,
        mem: &M,
        env: &mut TxEnv<'_>,
        frames_done: usize,
    ) -> Step {
        let func = env.func;
        let n = self.len();
        // Scan for EOP without consuming anything.
        let mut descs: Vec<(u32, TxDesc)> = Vec::new();
        let mut i = self.tdh;
        let mut error: Option<TxError> = None;
        loop {
            if i == self.tdt {
                // The driver has not written the rest of the packet yet.
                return Step::Incomplete;
            }
            let injected = env.dma.fail(QueueDir::Tx, env.queue, DmaTarget::Descriptor);
            let Some(d) = self.read_desc(mem, i, func, injected) else {
                env.counters.tx_error(TxError::RingDma);
                env.counters.dma_errors += 1;
                return Step::Stopped;
            };
            descs.push((i, d));
            i = (i + 1) % n;
            if matches!(
                d,
                TxDesc::Data(TxDataDesc { eop: true, .. }) | TxDesc::Unknown { eop: true, .. }
            ) {
                break;
            }
            if descs.len() as u32 >= MAX_DESC_PER_PACKET {
                error = Some(TxError::TooManyDescriptors);
                break;
            }
        }
        let next = i;

        // Gather, into one allocation of the packet's size.
        let total: usize = descs
            .iter()
            .map(|(_, d)| match d {
                TxDesc::Data(dd) => usize::from(dd.len),
                _ => 0,
            })
            .sum();
        // A packet to segment (TSE in its first data descriptor) gathers only its first
        // [`SEGMENT_HEAD`] bytes; the rest of its payload is read from its buffers as the
        // segments are cut, each byte copied once.
        let segmenting = descs.iter().find_map(|(_, d)| match d {
            TxDesc::Data(dd) => Some(dd.offloads.tse),
            _ => None,
        }) == Some(true);
        let mut data: Vec<u8> =
            Vec::with_capacity(if segmenting { SEGMENT_HEAD } else { total }.min(MAX_TX_PACKET));
        let mut pieces: SmallVec<[(u64, usize); 8]> = SmallVec::new();
        let mut gathered = 0;
        let mut first: Option<TxDataDesc> = None;
        for (_, d) in &descs {
            if error.is_some() {
                break;
            }
            match d {
                TxDesc::Context(c) => self.ctx[usize::from(c.idx) % CONTEXT_SLOTS] = *c,
                TxDesc::Data(dd) => {
                    first.get_or_insert(*dd);
                    let len = usize::from(dd.len);
                    if len == 0 {
                        error = Some(TxError::ZeroLength);
                    } else if gathered + len > MAX_TX_PACKET {
                        error = Some(TxError::PacketTooLong);
                    } else {
                        gathered += len;
                        let now = if segmenting {
                            SEGMENT_HEAD.saturating_sub(data.len()).min(len)
                        } else {
                            len
                        };
                        // The part of a buffer not gathered now is checked now all the same.
                        if env.dma.fail(QueueDir::Tx, env.queue, DmaTarget::Buffer)
                            || (now < len && !mem.check_range(GuestAddress(dd.addr), len))
                            || guest::append(mem, dd.addr, now, &mut data).is_err()
                        {
                            env.counters.dma_errors += 1;
                            error = Some(TxError::BufferDma);
                        } else if segmenting {
                            pieces.push((dd.addr, len));
                        }
                    }
                }
                TxDesc::Unknown { .. } => error = Some(TxError::UnknownDescriptor),
            }
        }

        if error.is_none() {
            if let Some(fd) = first {
                let mut req = TxRequest {
                    ctx: self.ctx[usize::from(fd.idx) % CONTEXT_SLOTS],
                    offloads: fd.offloads,
                };
                if req.offloads.vle && !env.descriptor_vlan {
                    // The pool's VMVIR says the tag is not the descriptor's to give.
                    trace!(%func, vlan = req.ctx.vlan, "descriptor VLAN insertion ignored (VMVIR)");
                    req.offloads.vle = false;
                }
                // Room for every frame up front (a 64 KiB TSO packet at an MSS of 1448 cuts
                // 46): growing the list segment by segment reallocated it at each doubling.
                let expected = if segmenting {
                    gathered / usize::from(req.ctx.mss).max(64) + 1
                } else {
                    1
                };
                let mut frames: Vec<Bytes> = Vec::with_capacity(expected);
                // What the receiving side may take as known of the frames' L4 checksums.
                let mut l4_checksum = L4Checksum::Unverified;
                if segmenting {
                    let mut rest = GuestPayload {
                        mem,
                        pieces: &pieces,
                        skip: data.len(),
                        len: gathered - data.len(),
                    };
                    // Headers longer than the head gathered (options, tunnels): the head grows
                    // to hold everything the plan reads.
                    let ctx = &req.ctx;
                    let headers = usize::from(ctx.mac_len)
                        + usize::from(ctx.ip_len).max(ipv6::HEADER_LEN)
                        + usize::from(ctx.l4_len).max(tcp::HEADER_LEN);
                    let more = headers.min(gathered).saturating_sub(data.len());
                    let grown = more == 0 || rest.append_to(0, more, &mut data).is_ok();
                    rest.skip += more;
                    rest.len -= more;
                    let cut = if grown {
                        offload::segment(&data, &rest, ctx, &req.offloads, &mut |f| frames.push(f))
                    } else {
                        Err(OffloadError::PayloadUnreadable)
                    };
                    match cut {
                        Ok(stats) => l4_checksum = checksum_fact(&stats),
                        Err(OffloadError::PayloadUnreadable) => {
                            debug!(%func, "TX payload outside guest memory");
                            env.counters.dma_errors += 1;
                            error = Some(TxError::BufferDma);
                            frames.clear();
                        }
                        Err(e) => {
                            debug!(%func, reason = %e, "TX offload refused the packet");
                            error = Some(TxError::Offload);
                            frames.clear();
                        }
                    }
                } else if req.needs_offload() {
                    match offload::apply(&data, &req.ctx, &req.offloads, &mut |f| frames.push(f)) {
                        Ok(stats) => l4_checksum = checksum_fact(&stats),
                        Err(e) => {
                            debug!(%func, reason = %e, "TX offload refused the packet");
                            error = Some(TxError::Offload);
                            frames.clear();
                        }
                    }
                } else {
                    frames.push(Bytes::from(data));
                }
                env.out.reserve(frames.len().saturating_sub(frames_done));
                for (k, f) in frames.into_iter().enumerate().skip(frames_done) {
                    let f = if env.pad { pad_short(f) } else { f };
                    let len = f.len() as u64;
                    match (env.admit)(f.len()) {
                        Ok(()) => {
                            env.counters.tx_packets += 1;
                            env.counters.tx_bytes += len;
                            env.out.push(TxFrame {
                                bytes: f,
                                l4_checksum,
                            });
                        }
                        Err(NextSendAt(until_ns)) => {
                            env.counters.tx_deferred += 1;
                            return Step::Paused(TxPause {
                                until_ns,
                                tdh: self.tdh,
                                frames_done: k,
                                closed: false,
                            });
                        }
                    }
                }
            }
        }
        if let Some(e) = error {
            debug!(%func, reason = e.name(), tdh = self.tdh, "TX packet dropped");
            env.counters.tx_error(e);
        }

        // Consumed: write DD where RS is set (or the head, with head write-back on), then move
        // TDH past the packet.
        let head_wb = env.head_writeback && self.tdwbal & TDWBAL_HEAD_WB_EN != 0;
        let wants_status = descs
            .iter()
            .any(|(_, d)| matches!(d, TxDesc::Data(TxDataDesc { rs: true, .. })));
        let mut wrote_back = false;
        if head_wb {
            self.tdh = next;
            if wants_status {
                wrote_back = self.write_head(mem, env);
            }
            return Step::Consumed { wrote_back };
        }
        for (idx, d) in &descs {
            if let TxDesc::Data(dd) = d {
                if dd.rs {
                    let at = self.desc_addr(*idx).wrapping_add(TX_STATUS_OFFSET);
                    let injected = env.dma.fail(QueueDir::Tx, env.queue, DmaTarget::Descriptor);
                    let ok = !injected
                        && guest::read_u32(mem, at)
                            .and_then(|s| guest::write_u32(mem, at, s | tx_bits::STA_DD))
                            .is_ok();
                    if ok {
                        wrote_back = true;
                    } else {
                        env.counters.dma_errors += 1;
                    }
                }
            }
        }
        self.tdh = next;
        Step::Consumed { wrote_back }
    }

    /// Head write-back: TDH as a little-endian dword at TDWBAH:TDWBAL with the enable and the
    /// low address bits masked off. A failed write is a DMA error; the ring goes on.
    fn write_head<M: GuestMemoryBackend>(&self, mem: &M, env: &mut TxEnv<'_>) -> bool {
        let at = ((u64::from(self.tdwbah) << 32) | u64::from(self.tdwbal)) & !0x3;
        let injected = env.dma.fail(QueueDir::Tx, env.queue, DmaTarget::Descriptor);
        if !injected && guest::write_u32(mem, at, self.tdh).is_ok() {
            return true;
        }
        warn!(func = %env.func, addr = at, "TX head write-back outside guest memory");
        env.counters.dma_errors += 1;
        false
    }
}

/// What the offload's work says of its frames' L4 checksums: correct when computed from
/// scratch over the plain packet (the pseudo-header rebuilt from the IP header and the segment's
/// real length); a seed the driver gave is continued as the silicon does, and may be wrong.
fn checksum_fact(stats: &OffloadStats) -> L4Checksum {
    if stats.l4_checksum == Some(ChecksumSource::FromScratch) {
        L4Checksum::Correct
    } else {
        L4Checksum::Unverified
    }
}

fn pad_short(f: Bytes) -> Bytes {
    if f.len() >= MIN_TX_FRAME {
        return f;
    }
    let mut v = Vec::with_capacity(MIN_TX_FRAME);
    v.extend_from_slice(&f);
    v.resize(MIN_TX_FRAME, 0);
    Bytes::from(v)
}

enum Step {
    Consumed { wrote_back: bool },
    Incomplete,
    Stopped,
    Paused(TxPause),
}

/// The payload of a packet to segment still in the guest's buffers: `len` bytes from `skip`
/// bytes into the data descriptors' buffers `pieces` (address, length), each checked to lie in
/// guest memory when gathered.
struct GuestPayload<'a, M> {
    mem: &'a M,
    pieces: &'a [(u64, usize)],
    skip: usize,
    len: usize,
}

impl<M: GuestMemoryBackend> Payload for GuestPayload<'_, M> {
    fn len(&self) -> usize {
        self.len
    }

    fn append_to(&self, at: usize, len: usize, out: &mut Vec<u8>) -> Result<(), PayloadUnreadable> {
        // Bytes of the pieces still to pass before the range starts, and still to copy.
        let (mut pass, mut left) = (self.skip + at, len);
        for &(addr, piece) in self.pieces {
            if left == 0 {
                break;
            }
            if pass >= piece {
                pass -= piece;
                continue;
            }
            let n = (piece - pass).min(left);
            guest::append(self.mem, addr.wrapping_add(pass as u64), n, out)
                .map_err(|_| PayloadUnreadable)?;
            pass = 0;
            left -= n;
        }
        if left == 0 {
            Ok(())
        } else {
            Err(PayloadUnreadable)
        }
    }
}
