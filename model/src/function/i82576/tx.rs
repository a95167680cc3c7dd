//! The TX queues of an 82576 function (a VF's two, the PF's sixteen): their registers (as
//! igbvf's `igbvf_configure_tx` and igb's `igb_configure_tx_ring` program them) and the engine
//! that runs when the guest writes TDT (the descriptors igbvf's `igbvf_tx_queue_adv`,
//! `igbvf_tso` and `igbvf_tx_csum` build, and igb's `igb_tx_map`, `igb_tso` and `igb_tx_csum`
//! alike; QEMU's `igb_process_tx_desc`): advanced context
//! (DTYP 0010) and data (DTYP 0011) descriptors from TDH up to TDT, a packet gathered across data
//! descriptors until EOP, offloads applied, the frames collected for the caller to switch, DD
//! written back into every descriptor with RS once its packet is consumed, TDH advanced.
//!
//! Hostile input is an error on this queue only, counted by [`TxError`]:
//! - a packet whose descriptors are bad (DTALEN 0, unknown type, > [`MAX_TX_PACKET`] bytes, a
//!   buffer outside guest memory, an offload the engine refuses) is consumed and dropped, with
//!   DD written back as usual so the driver's ring keeps moving;
//! - no EOP within [`MAX_DESC_PER_PACKET`] descriptors: those descriptors are consumed;
//! - TDH/TDT beyond TDLEN: the tail write is not acted on;
//! - the descriptor ring outside guest memory: the queue stops (TXDCTL.ENABLE cleared).
//!
//! Shaping: each frame is admitted through [`TxEnv::admit`] — for a VF, its PF's
//! `PfPort::tx_admit` (the switch's rate limiter); the PF is not rate-limited. A frame that must
//! wait pauses the queue with that frame not consumed (TDH stays on its packet) until the NIC
//! runtime calls `Vf::tx_resume` at the time the shaper named. A TSO packet paused between
//! segments resumes at the segment that was deferred: no loss, no duplicate.

use bytes::Bytes;
use eswitch::NextSendAt;
use tracing::{debug, warn};
use vm_memory::GuestMemoryBackend;

use super::regs::{dctl, q, DBAL_MASK, DLEN_MASK};
use crate::function::desc::{
    tx_bits, DescBytes, TxContext, TxDataDesc, TxDesc, TxOffloads, DESC_LEN, TX_STATUS_OFFSET,
};
use crate::function::faults::{DmaFaults, DmaTarget, QueueDir};
use crate::function::stats::{Counters, TxError};
use crate::function::{guest, offload, FunctionId};

/// Largest packet (all data descriptors of one packet) the engine gathers: 64 KiB, the TSO
/// limit of the 82576 and more than any igbvf skb.
pub const MAX_TX_PACKET: usize = 64 * 1024;
/// Most descriptors (context + data) one packet may span.
pub const MAX_DESC_PER_PACKET: u32 = 64;
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
    pub out: &'a mut Vec<Bytes>,
    /// The function's injected DMA faults, and which queue this is.
    pub dma: &'a mut DmaFaults,
    pub queue: usize,
}

/// A pause the shaper asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxPause {
    pub until_ns: u64,
    /// TDH of the paused packet.
    tdh: u32,
    /// Frames of that packet already admitted.
    frames_done: usize,
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
    /// QEMU's reset values (`igb_mac_reg_init`): TXDCTL0 = ENABLE.
    pub fn reset_value(queue: usize) -> TxRing {
        TxRing {
            tdbal: 0,
            tdbah: 0,
            tdlen: 0,
            tdh: 0,
            txctl: 0,
            tdt: 0,
            txdctl: if queue == 0 { dctl::ENABLE } else { 0 },
            tdwbal: 0,
            tdwbah: 0,
            ctx: [TxContext::default(); CONTEXT_SLOTS],
            pause: None,
        }
    }

    pub fn enabled(&self) -> bool {
        self.txdctl & dctl::ENABLE != 0
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

    pub fn read(&self, rel: u64) -> u32 {
        match rel {
            q::DBAL => self.tdbal,
            q::DBAH => self.tdbah,
            q::DLEN => self.tdlen,
            q::DH => self.tdh,
            q::DCA_CTL => self.txctl,
            q::DT => self.tdt,
            q::DCTL => self.txdctl,
            q::TDWBAL => self.tdwbal,
            q::TDWBAH => self.tdwbah,
            _ => 0,
        }
    }

    /// Register write; returns true when the engine should run (TDT written, or the queue
    /// enabled with work pending).
    pub fn write(&mut self, rel: u64, v: u32) -> bool {
        match rel {
            q::DBAL => self.tdbal = v & DBAL_MASK,
            q::DBAH => self.tdbah = v,
            q::DLEN => self.tdlen = v & DLEN_MASK,
            q::DH => {
                self.tdh = v & 0xFFFF;
                self.pause = None;
            }
            q::DCA_CTL => self.txctl = v,
            q::DT => {
                self.tdt = v & 0xFFFF;
                return true;
            }
            q::DCTL => {
                let was = self.enabled();
                self.txdctl = v;
                if !self.enabled() {
                    self.pause = None;
                }
                return !was && self.enabled();
            }
            q::TDWBAL => self.tdwbal = v,
            q::TDWBAH => self.tdwbah = v,
            _ => {}
        }
        false
    }

    fn desc_addr(&self, index: u32) -> u64 {
        self.base().wrapping_add(u64::from(index) * DESC_LEN as u64)
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
                self.txdctl &= !dctl::ENABLE;
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

        // Gather.
        let mut data: Vec<u8> = Vec::new();
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
                    } else if data.len() + len > MAX_TX_PACKET {
                        error = Some(TxError::PacketTooLong);
                    } else {
                        let at = data.len();
                        data.resize(at + len, 0);
                        if env.dma.fail(QueueDir::Tx, env.queue, DmaTarget::Buffer)
                            || guest::read(mem, dd.addr, &mut data[at..]).is_err()
                        {
                            env.counters.dma_errors += 1;
                            error = Some(TxError::BufferDma);
                        }
                    }
                }
                TxDesc::Unknown { .. } => error = Some(TxError::UnknownDescriptor),
            }
        }

        if error.is_none() {
            if let Some(fd) = first {
                let req = TxRequest {
                    ctx: self.ctx[usize::from(fd.idx) % CONTEXT_SLOTS],
                    offloads: fd.offloads,
                };
                let mut frames: Vec<Bytes> = Vec::new();
                if req.needs_offload() {
                    if let Err(e) =
                        offload::apply(&data, &req.ctx, &req.offloads, &mut |f| frames.push(f))
                    {
                        debug!(%func, reason = %e, "TX offload refused the packet");
                        error = Some(TxError::Offload);
                        frames.clear();
                    }
                } else {
                    frames.push(Bytes::from(data));
                }
                for (k, f) in frames.into_iter().enumerate().skip(frames_done) {
                    let f = if env.pad { pad_short(f) } else { f };
                    let len = f.len() as u64;
                    match (env.admit)(f.len()) {
                        Ok(()) => {
                            env.counters.tx_packets += 1;
                            env.counters.tx_bytes += len;
                            env.out.push(f);
                        }
                        Err(NextSendAt(until_ns)) => {
                            env.counters.tx_deferred += 1;
                            return Step::Paused(TxPause {
                                until_ns,
                                tdh: self.tdh,
                                frames_done: k,
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

        // Consumed: write DD where RS is set, then move TDH past the packet.
        let mut wrote_back = false;
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
