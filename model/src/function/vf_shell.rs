//! What a VF function is whatever its card: the PCI side (config space with FLR, BAR3's MSI-X
//! table, bad accesses counted), the link to its PF, the client's memory, the counters and
//! injected DMA faults, and the datapath steps every card takes the same way (a frame into an
//! RX queue, a TX queue run, the shaper's pauses, the moderation timer, resets told to the PF).
//! A card brings its register file as a [`VfRegisters`]: BAR0's registers, its RX engine, its
//! interrupt registers and what its resets clear; [`VfShell`] is the [`Function`] around it.
//!
//! Plain single-threaded state: the NIC runtime owns each VF behind its lock, calls it with
//! `&mut self`, and carries out the [`Effects`] it answers with (MSI-X vectors to signal,
//! transmitted frames to switch, posted RX buffers) after releasing that lock. What the VF
//! reaches of its PF (mailbox registers, the VF reset notification, the shaper) goes through
//! the [`PfPort`] it was built with.
//!
//! Guest input never panics: BAR0 accesses of any size become 32-bit register accesses
//! ([`super::mmio`]), refused ones are counted; bad rings and addresses are the engines'
//! documented errors.

use std::sync::Arc;

use tracing::{debug, info};
use vm_memory::atomic::GuestMemoryLoadGuard;
use vm_memory::{GuestAddressSpace, GuestMemoryBackend};

use super::faults::{DmaFaultState, DmaFaults};
use super::mmio::{read_dwords, write_dwords, MsixTable};
use super::rxcsum::L4Checksum;
use super::stats::{AccessError, Counters, RxDrop, RxOutcome, VfStats};
use super::tx::{TxPause, TxRing, TxRun, VfTx};
use super::vectors::Cause;
use super::vf_intr::{VfIntr, VF_MSIX_VECTORS};
use super::{
    guest, BusLayout, Effects, Fire, Function, GuestMem, GuestRam, LinkStatus, Origin, RingState,
    RxCopy, VfState,
};
use crate::seams::{Clock, MailboxIrq, PfPort};
use pcie::ConfigSpace;

/// The state every VF has, whatever its card; the card's registers get it with each access.
pub struct VfCore {
    pub(crate) id: u16,
    pub(crate) cfg: ConfigSpace,
    pub(crate) pf: Arc<dyn PfPort>,
    /// Time for interrupt moderation.
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) mem: Option<GuestMem>,
    /// Report verified checksums in the RX write-back (default on).
    pub(crate) rx_checksum: bool,
    pub(crate) counters: Counters,
    /// Injected DMA faults (`ctl fault dma`).
    pub(crate) dma_faults: DmaFaults,
}

impl VfCore {
    pub(crate) fn now(&self) -> u64 {
        self.clock.now_ns()
    }

    /// Runs TX queue `q` on `ring` (the card's): descriptors fetched, frames built and handed
    /// to the shaper, completions written back. No interrupt is raised here: the card's
    /// registers route the TX cause ([`VfRegisters::run_tx`]).
    fn run_tx(
        &mut self,
        ring: &mut TxRing,
        q: usize,
        resume: bool,
        head_writeback: bool,
    ) -> (TxRun, Effects) {
        let mut effects = Effects::default();
        let vf = VfTx {
            id: self.id,
            pf: &*self.pf,
            mem: self.mem.as_ref(),
            bus_master: self.cfg.bus_master_enabled(),
            counters: &mut self.counters,
            dma: &mut self.dma_faults,
            head_writeback,
        };
        let run = ring.run_for_vf(vf, q, resume, &mut effects.frames);
        (run, effects)
    }

    /// The PF's answer to a VF reset or mailbox write: the mailbox cause, or nothing.
    pub(crate) fn mailbox_irq<R: VfRegisters>(&self, regs: &mut R, irq: MailboxIrq) -> Fire {
        match irq {
            MailboxIrq::Raise => regs.raise(Cause::Mailbox, &*self.clock),
            MailboxIrq::None => Fire::NONE,
        }
    }

    /// Tells the PF the VF reset (VFLRE; the mailbox shows the reset): the mailbox cause
    /// when the PF raises it.
    pub(crate) fn tell_pf_reset<R: VfRegisters>(&self, regs: &mut R) -> Fire {
        let irq = self.pf.vf_reset(self.id);
        self.mailbox_irq(regs, irq)
    }
}

/// A card's VF register file: BAR0, the RX engine, the interrupt registers, the TX rings'
/// register view and what each reset clears. [`VfShell`] does everything else.
pub trait VfRegisters: Send + Sized + 'static {
    /// The type's name in debug output.
    const NAME: &'static str;
    const BAR0_SIZE: u64;
    const BAR3_SIZE: u64;
    /// Whether a TX completion may be written to TDWBAL's head write-back address.
    const HEAD_WRITEBACK: bool;

    /// A 32-bit BAR0 register read at a dword-aligned offset, with its side effects.
    fn read(&mut self, core: &mut VfCore, offset: u64) -> u32;
    /// A 32-bit BAR0 register write at a dword-aligned offset, with its effects.
    fn write(&mut self, core: &mut VfCore, offset: u64, value: u32) -> Effects;
    /// FLR or device reset: the registers' power-on state (statistics registers count from
    /// `core`'s counters as they are now).
    fn power_on_reset(&mut self, core: &VfCore);

    fn tx_rings(&self) -> &[TxRing];
    fn tx_rings_mut(&mut self) -> &mut [TxRing];
    /// Writes `frame` into RX queue `queue` (a queue the card lacks or has disabled drops it
    /// as `QueueDisabled`, changing nothing). Attachment and bus mastering are checked.
    fn write_rx<M: GuestMemoryBackend>(
        &mut self,
        core: &mut VfCore,
        mem: &M,
        queue: usize,
        frame: &[u8],
        stripped_tci: Option<u16>,
        l4_checksum: L4Checksum,
    ) -> RxOutcome;
    /// A frame for `queue` was refused for `reason` (the card's own drop counter).
    fn count_rx_drop(&mut self, _queue: usize, _reason: RxDrop) {}
    /// The RX queue `frame` lands in: 0 unless the card spreads frames over its queues.
    fn rx_queue(&self, _frame: &[u8]) -> usize {
        0
    }
    /// Free RX descriptors on queue 0 (0 when it is disabled).
    fn rx_free_descriptors(&self) -> u32;

    /// The interrupt registers.
    fn intr(&self) -> &VfIntr;
    fn intr_mut(&mut self) -> &mut VfIntr;

    /// The link the link register reports.
    fn set_link(&mut self, link: LinkStatus);
    /// The link register as the guest reads it.
    fn link_status(&self) -> u32;
    /// RX queue 0's ring.
    fn rx0_state(&self) -> RingState;

    /// Raises `cause` at the time `clock` tells, read only when the cause's vector is
    /// enabled: the vectors to signal (none while masked or held).
    fn raise(&mut self, cause: Cause, clock: &dyn Clock) -> Fire {
        self.intr_mut().raise_lazily(cause, || clock.now_ns())
    }

    /// Runs TX queue `q` and raises its cause when it wrote completions back.
    fn run_tx(&mut self, core: &mut VfCore, q: usize, resume: bool) -> Effects {
        let Some(ring) = self.tx_rings_mut().get_mut(q) else {
            return Effects::default();
        };
        let (run, mut effects) = core.run_tx(ring, q, resume, Self::HEAD_WRITEBACK);
        if run.wrote_back {
            effects.fire = self.raise(Cause::Tx(q as u8), &*core.clock);
        }
        effects
    }
}

/// One VF function: the state every VF has and a card's registers.
pub struct VfShell<R> {
    pub(crate) core: VfCore,
    pub(crate) regs: R,
    /// BAR3: the MSI-X table (the PBA reads 0: QEMU emulates MSI-X and overlays it).
    msix: MsixTable<VF_MSIX_VECTORS>,
}

impl<R: VfRegisters> std::fmt::Debug for VfShell<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(R::NAME)
            .field("id", &self.core.id)
            .finish_non_exhaustive()
    }
}

impl<R: VfRegisters> VfShell<R> {
    /// VF `id` with config space `cfg` and the card's registers at power-on, reaching its PF
    /// through `pf`; time (for interrupt moderation) from `clock`.
    pub(crate) fn build(
        id: u16,
        cfg: ConfigSpace,
        pf: Arc<dyn PfPort>,
        clock: Arc<dyn Clock>,
        regs: R,
    ) -> VfShell<R> {
        VfShell {
            core: VfCore {
                id,
                cfg,
                pf,
                clock,
                mem: None,
                rx_checksum: true,
                counters: Counters::default(),
                dma_faults: DmaFaults::default(),
            },
            regs,
            msix: MsixTable::default(),
        }
    }

    pub fn id(&self) -> u16 {
        self.core.id
    }

    pub fn config(&self) -> &ConfigSpace {
        &self.core.cfg
    }

    /// Whether the VF may DMA (its Bus Master Enable).
    pub fn bus_master(&self) -> bool {
        self.core.cfg.bus_master_enabled()
    }

    pub fn attached(&self) -> bool {
        self.core.mem.is_some()
    }

    // ----- the datapath -----

    /// Resumes TX queues the shaper paused (their time has come).
    pub fn tx_resume(&mut self) -> Effects {
        self.resume_tx_paused_until(u64::MAX)
    }

    /// Runs the TX queues whose pause ends by `until`.
    fn resume_tx_paused_until(&mut self, until: u64) -> Effects {
        self.resume_tx_where(|p| p.until_ns <= until)
    }

    /// Runs the TX queues held while the VF's transmit was disabled (it is on again); queues
    /// the shaper paused keep their time.
    pub fn tx_resume_closed(&mut self) -> Effects {
        self.resume_tx_where(TxPause::closed)
    }

    /// Runs the TX queues whose pause `due` picks.
    fn resume_tx_where(&mut self, due: impl Fn(&TxPause) -> bool) -> Effects {
        let mut all = Effects::default();
        for q in 0..self.regs.tx_rings().len() {
            if self.regs.tx_rings()[q].pause().is_some_and(|p| due(&p)) {
                all.merge(self.regs.run_tx(&mut self.core, q, true));
            }
        }
        all
    }

    /// The earliest deadline of a paused TX queue.
    pub fn tx_paused_until(&self) -> Option<u64> {
        self.regs
            .tx_rings()
            .iter()
            .filter_map(|t| t.pause())
            .map(|p| p.until_ns)
            .min()
    }

    /// Free RX descriptors on queue 0.
    pub fn rx_free_descriptors(&self) -> u32 {
        self.regs.rx_free_descriptors()
    }

    /// A frame for RX queue `queue`; see [`Function::receive`], which uses queue 0.
    pub fn receive_on(
        &mut self,
        queue: usize,
        frame: &[u8],
        stripped_tci: Option<u16>,
        origin: Origin,
    ) -> (Result<(), RxDrop>, Fire) {
        let guard = match self.rx_memory() {
            Ok(guard) => guard,
            Err(reason) => {
                self.core.counters.rx_drop(reason);
                return (Err(reason), Fire::NONE);
            }
        };
        self.receive_one(
            queue,
            &guest::LastRegion::new(&*guard),
            frame,
            stripped_tci,
            origin,
            L4Checksum::Unverified,
        )
    }

    /// Copies for RX queue `queue`, in order, under one look at the memory map (its guard and
    /// the region of the last access kept across the batch); see [`Function::receive_batch`].
    pub fn receive_batch_on(&mut self, queue: usize, copies: &[RxCopy<'_>]) -> (usize, Fire) {
        let guard = match self.rx_memory() {
            Ok(guard) => guard,
            Err(reason) => {
                for _ in copies {
                    self.core.counters.rx_drop(reason);
                }
                return (copies.len(), Fire::NONE);
            }
        };
        let mem = guest::LastRegion::new(&*guard);
        let mut fire = Fire::NONE;
        for (taken, c) in copies.iter().enumerate() {
            let (result, f) = self.receive_one(
                queue,
                &mem,
                c.frame,
                c.stripped_tci,
                c.origin,
                c.l4_checksum,
            );
            fire = fire.union(f);
            if result == Err(RxDrop::RingFull) {
                return (taken, fire);
            }
        }
        (copies.len(), fire)
    }

    /// The memory the RX engine writes to: the client's, while bus mastering is on. The guard,
    /// not a clone of the memory's handle: no reference count per batch.
    fn rx_memory(&self) -> Result<GuestMemoryLoadGuard<GuestRam>, RxDrop> {
        let Some(mem) = &self.core.mem else {
            return Err(RxDrop::NotAttached);
        };
        if !self.bus_master() {
            return Err(RxDrop::BusMasterOff);
        }
        Ok(mem.memory())
    }

    /// One frame into queue `queue` of `mem`, its drop counted unless the ring was full.
    fn receive_one<M: GuestMemoryBackend>(
        &mut self,
        queue: usize,
        mem: &M,
        frame: &[u8],
        stripped_tci: Option<u16>,
        origin: Origin,
        l4_checksum: L4Checksum,
    ) -> (Result<(), RxDrop>, Fire) {
        let outcome =
            self.regs
                .write_rx(&mut self.core, mem, queue, frame, stripped_tci, l4_checksum);
        let cause = Cause::Rx(queue as u8);
        match outcome {
            RxOutcome::Delivered { .. } => {
                let c = &mut self.core.counters;
                c.rx_delivered(frame);
                if origin == Origin::Local {
                    c.rx_looped_packets += 1;
                    c.rx_looped_bytes += frame.len() as u64;
                }
                (Ok(()), self.regs.raise(cause, &*self.core.clock))
            }
            // The descriptors completed with RXE: the driver is told.
            RxOutcome::Dropped(RxDrop::BufferDma) => {
                self.core.counters.dma_errors += 1;
                self.core.counters.rx_drop(RxDrop::BufferDma);
                (
                    Err(RxDrop::BufferDma),
                    self.regs.raise(cause, &*self.core.clock),
                )
            }
            RxOutcome::Dropped(r) => {
                if r == RxDrop::RingDma {
                    self.core.counters.dma_errors += 1;
                }
                self.regs.count_rx_drop(queue, r);
                // Not a drop when the ring is full: the caller keeps the frame (the runtime's
                // backlog).
                if r != RxDrop::RingFull {
                    self.core.counters.rx_drop(r);
                }
                (Err(r), Fire::NONE)
            }
        }
    }

    /// The PF agent wrote to this VF's mailbox on its own (a ping): the mailbox cause.
    pub fn mailbox_interrupt(&mut self) -> Fire {
        self.regs.raise(Cause::Mailbox, &*self.core.clock)
    }

    /// Whether RX write-backs carry the checksum status of verified-good IPv4 headers and
    /// TCP/UDP checksums (default on). Off: the bits stay clear and the guest verifies
    /// everything itself.
    pub fn set_rx_checksum(&mut self, on: bool) {
        self.core.rx_checksum = on;
    }

    /// Sets the link the VF's link register reports (the PF agent pings the VF through its
    /// mailbox; the register just follows).
    pub fn set_link(&mut self, link: LinkStatus) {
        self.regs.set_link(link);
    }

    /// The link register as the guest reads it.
    pub fn link_status(&self) -> u32 {
        self.regs.link_status()
    }

    /// Queue 0's rings and the interrupt registers, without side effects.
    pub fn state(&self) -> VfState {
        let t = &self.regs.tx_rings()[0];
        let intr = self.regs.intr();
        VfState {
            rx: self.regs.rx0_state(),
            tx: RingState {
                enabled: t.enabled(),
                base: t.base(),
                len: t.len(),
                head: t.tdh,
                tail: t.tdt,
            },
            tx_paused_until: self.tx_paused_until(),
            eicr: intr.bank.eicr,
            eims: intr.bank.eims,
            ivar: intr.ivar,
            ivar_misc: intr.ivar_misc,
            bus_master: self.bus_master(),
            attached: self.attached(),
        }
    }

    /// A 32-bit BAR0 register read at a dword-aligned offset, with its side effects.
    pub fn read_reg(&mut self, offset: u64) -> u32 {
        self.regs.read(&mut self.core, offset)
    }

    /// A 32-bit BAR0 register write at a dword-aligned offset, with its effects.
    pub fn write_reg(&mut self, offset: u64, value: u32) -> Effects {
        let effects = self.regs.write(&mut self.core, offset, value);
        self.reopened_after(effects)
    }

    /// After a register write: TX queues held while the VF's transmit was disabled run now if
    /// the write turned it on again (its mailbox write got igb's VF_RESET reply, which sets
    /// VFTE), not at their next look. Only a VF with a held queue asks the PF side.
    fn reopened_after(&mut self, mut effects: Effects) -> Effects {
        let held = self
            .regs
            .tx_rings()
            .iter()
            .any(|t| t.pause().is_some_and(|p| p.closed()));
        if held {
            effects.merge(self.tx_resume_closed());
        }
        effects
    }

    // ----- resets -----

    /// FLR or device reset: power-on state — config space, MSI-X table, registers, and
    /// statistics registers back to 0; the PF told as for a VF reset.
    fn function_reset(&mut self) -> Fire {
        let _ = self.core.cfg.reset();
        self.regs.power_on_reset(&self.core);
        self.msix.reset();
        self.core.tell_pf_reset(&mut self.regs)
    }

    // ----- BAR0 -----

    fn bar0_read(&mut self, offset: u64, data: &mut [u8]) -> Result<(), AccessError> {
        let (regs, core) = (&mut self.regs, &mut self.core);
        read_dwords(R::BAR0_SIZE, offset, data, |o| regs.read(core, o))
    }

    fn bar0_write(&mut self, offset: u64, data: &[u8]) -> Result<Effects, AccessError> {
        let (regs, core) = (&mut self.regs, &mut self.core);
        let r = write_dwords(R::BAR0_SIZE, offset, data, |o, v| regs.write(core, o, v));
        if r.is_err() {
            debug!(
                vf = self.core.id,
                offset,
                len = data.len(),
                "BAR0 write of unsupported size refused"
            );
        }
        r.map(|effects| self.reopened_after(effects))
    }
}

impl<R: VfRegisters> Function for VfShell<R> {
    /// BAR0 (CSRs) and BAR3 (MSI-X); 3 MSI-X vectors, no MSI, no INTx pin (a VF has neither).
    fn layout(&self) -> BusLayout {
        let mut bar_sizes = [0; 6];
        bar_sizes[0] = R::BAR0_SIZE;
        bar_sizes[3] = R::BAR3_SIZE;
        BusLayout {
            bar_sizes,
            msix_vectors: VF_MSIX_VECTORS as u16,
            msi_vectors: 0,
            intx: false,
        }
    }

    /// Bytes beyond the config space read as 0xFF ([`pcie::ConfigSpace::read`]).
    fn config_read(&mut self, offset: u64, data: &mut [u8]) {
        self.core
            .cfg
            .read(usize::try_from(offset).unwrap_or(usize::MAX), data);
    }

    /// A write beyond the config space is refused and counted ([`pcie::ConfigSpace::write`]).
    fn config_write(&mut self, offset: u64, data: &[u8]) -> Effects {
        let o = usize::try_from(offset).unwrap_or(usize::MAX);
        let events = self.core.cfg.write(o, data);
        if events.iter().any(|e| matches!(e, pcie::ConfigEvent::Flr)) {
            info!(vf = self.core.id, "function level reset");
            self.core.counters.flrs += 1;
            return Effects::fire(self.function_reset());
        }
        Effects::default()
    }

    fn region_read(&mut self, index: u32, offset: u64, data: &mut [u8]) -> Result<(), AccessError> {
        let r = match index {
            0 => self.bar0_read(offset, data),
            3 => {
                self.msix.read(offset, data);
                Ok(())
            }
            _ => Err(AccessError::NoSuchRegion),
        };
        if r.is_err() {
            data.fill(0);
            self.core.counters.bad_accesses += 1;
        }
        r
    }

    fn region_write(
        &mut self,
        index: u32,
        offset: u64,
        data: &[u8],
    ) -> Result<Effects, AccessError> {
        let r = match index {
            0 => self.bar0_write(offset, data),
            3 => {
                self.msix.write(offset, data);
                Ok(Effects::default())
            }
            _ => Err(AccessError::NoSuchRegion),
        };
        if r.is_err() {
            self.core.counters.bad_accesses += 1;
        }
        r
    }

    /// DEVICE_RESET, or after the client disconnected: config space, queues, interrupts and
    /// guest-visible statistics back to reset values; the mailbox sees a VF reset.
    fn reset(&mut self) -> Effects {
        Effects::fire(self.function_reset())
    }

    /// A client connected: its memory.
    fn attach(&mut self, mem: GuestMem) {
        self.core.mem = Some(mem);
    }

    /// The client went away: no more DMA; paused queues forget their pause.
    fn detach(&mut self) {
        self.core.mem = None;
        for t in self.regs.tx_rings_mut() {
            t.clear_pause();
        }
    }

    /// Writes `frame` into the next free descriptors of its RX queue (queue 0 unless the card
    /// spreads frames over its queues: [`VfRegisters::rx_queue`]) and raises that queue's RX
    /// cause. `stripped_tci` is the VLAN tag the switch stripped (written back with VP). Returns what
    /// became of the frame and the vectors to signal: a frame dropped for a buffer outside
    /// guest memory still completed its descriptors (with RXE), and the driver is told.
    /// `Err(RxDrop::RingFull)` leaves everything unchanged and counts nothing: the caller keeps
    /// the frame in a bounded backlog and retries when the VF reports posted buffers. Every
    /// other refusal is a drop, counted here.
    fn receive(
        &mut self,
        frame: &[u8],
        stripped_tci: Option<u16>,
        origin: Origin,
    ) -> (Result<(), RxDrop>, Fire) {
        let queue = self.regs.rx_queue(frame);
        self.receive_on(queue, frame, stripped_tci, origin)
    }

    /// Each run of copies for one queue under one look at the memory map, in order; a full
    /// ring stops the batch there, whichever queue the rest would go to.
    fn receive_batch(&mut self, copies: &[RxCopy<'_>]) -> (usize, Fire) {
        let mut fire = Fire::NONE;
        let Some(first) = copies.first() else {
            return (0, fire);
        };
        let (mut start, mut queue) = (0, self.regs.rx_queue(first.frame));
        for end in 1..=copies.len() {
            let next = copies.get(end).map(|c| self.regs.rx_queue(c.frame));
            if next == Some(queue) {
                continue;
            }
            let (taken, f) = self.receive_batch_on(queue, &copies[start..end]);
            fire = fire.union(f);
            if taken < end - start {
                return (start + taken, fire);
            }
            start = end;
            queue = next.unwrap_or(queue);
        }
        (copies.len(), fire)
    }

    fn count_tx_loopback(&mut self, packets: u64, bytes: u64) {
        self.core.counters.tx_looped_packets += packets;
        self.core.counters.tx_looped_bytes += bytes;
    }

    /// The runtime dropped a frame for this VF because its backlog was full.
    fn count_backlog_drop(&mut self) {
        self.core.counters.rx_drop(RxDrop::BacklogOverflow);
        self.regs.count_rx_drop(0, RxDrop::BacklogOverflow);
    }

    /// The time has come to `now`: held interrupts whose moderation interval ended fire, TX
    /// queues whose pause ended resume.
    fn on_timer(&mut self, now: u64) -> Effects {
        let mut all = Effects::fire(self.regs.intr_mut().on_timer(now));
        all.merge(self.resume_tx_paused_until(now));
        all
    }

    /// When the VF next needs [`Function::on_timer`]: a paused TX queue's deadline or the end
    /// of a held interrupt's interval.
    fn next_wakeup(&self) -> Option<u64> {
        match (self.tx_paused_until(), self.regs.intr().next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn set_link(&mut self, link: LinkStatus) -> Effects {
        VfShell::set_link(self, link);
        Effects::default()
    }

    /// The VF's counters (interrupt counts are the runtime's: it signals them).
    fn stats(&self) -> VfStats {
        self.core.counters.snapshot()
    }

    fn dma_faults(&mut self) -> Option<&mut DmaFaults> {
        Some(&mut self.core.dma_faults)
    }

    /// Both cards' VFs have as many RX queues as TX queues.
    fn dma_queues(&self) -> usize {
        self.regs.tx_rings().len()
    }

    fn dma_fault_report(&self) -> Vec<DmaFaultState> {
        self.core.dma_faults.report()
    }
}
