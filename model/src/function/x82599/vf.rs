//! One 82599 VF as a PCI function: config space ([`super::config`]), BAR0 (the VF registers
//! Linux ixgbevf's `regs.h` names, [`super::regs`]), BAR3 (the MSI-X table store), two RX/TX
//! queue pairs ([`super::rx`], [`super::tx`]), interrupts ([`super::intr`]), statistics and
//! resets.
//!
//! The same shape as the 82576 VF (`i82576::vf`): plain single-threaded state the NIC runtime
//! owns behind a lock, called with `&mut self`, answering with the [`Effects`] to carry out
//! (vectors to signal, transmitted frames to switch, posted RX buffers); what it reaches of
//! its PF (VFMAILBOX, VFMBMEM, the VF reset notification, the shaper) goes through the
//! [`PfPort`] it was built with. Which RX queue a frame lands in is the caller's choice
//! ([`Vf::receive_on`]); [`Function::receive`] uses queue 0 (the PF's RETA picks the queue in
//! the 82599, ixgbe's `ixgbe_setup_reta` fills it with 0, 1, 2, 3 repeating).
//!
//! Guest input never panics: BAR0 accesses of any size become 32-bit register accesses
//! ([`crate::function::mmio`]), refused ones are counted; unknown offsets read 0 and ignore
//! writes (logged at debug); bad rings and addresses are the engines' documented errors.

use std::sync::Arc;

use mailbox::ixgbe::VfRegister;
use tracing::{debug, info};
use vm_memory::GuestAddressSpace;

use super::config::vf_config_space;
use super::intr::IntrRegs;
use super::regs::{self, ctrl, links};
use super::rx::{write_frame, RxOutcome, RxQueue};
use super::tx;
use crate::function::faults::{DmaFaultState, DmaFaults};
use crate::function::mmio::{read_dwords, write_dwords, MsixTable};
use crate::function::stats::{AccessError, Counters, RxDrop, VfStats};
use crate::function::tx::{TxRing, TxRun, VfTx};
use crate::function::vectors::Cause;
use crate::function::{
    BusLayout, Effects, Fire, Function, FunctionId, GuestMem, LinkStatus, Origin, RingState,
    VfState,
};
use crate::seams::{Clock, MailboxIrq, PfPort};
use pcie::{BuildError, ConfigSpace};

/// VFLINKS as ixgbevf's `ixgbevf_check_mac_link_vf` reads it: LINK_UP and the speed bits
/// (10 Gb/s, 1 Gb/s, 100 Mb/s; slower links read as 100 Mb/s).
pub fn links_bits(link: LinkStatus) -> u32 {
    if !link.up {
        return 0;
    }
    let speed = match link.speed_mbps {
        s if s >= 10_000 => links::SPEED_10G,
        s if s >= 1_000 => links::SPEED_1G,
        _ => links::SPEED_100,
    };
    links::UP | speed
}

/// The CRC every frame has on the wire. ⚠ Whether the 82599's VF octet counters include it
/// is a datasheet matter; its PF's GORC/GOTC count from the destination address through the
/// CRC, and so do these (as the 82576 VF's do here).
const FCS_LEN: u64 = 4;
/// The octet counters are 36 bits wide (`UPDATE_VF_COUNTER_36bit`).
const OCTETS_MASK: u64 = (1 << 36) - 1;

fn octets(bytes: u64, packets: u64) -> u64 {
    bytes.wrapping_add(packets.wrapping_mul(FCS_LEN))
}

/// What the statistics registers count from: the counters at the last FLR (a VF reset does
/// not clear them; ixgbevf rebases after each reset anyway, `ixgbevf_update_stats` keeps
/// the last value it read and handles the wrap).
#[derive(Clone, Copy, Debug, Default)]
struct StatsBase {
    gprc: u64,
    gorc: u64,
    gptc: u64,
    gotc: u64,
    mprc: u64,
}

impl StatsBase {
    fn of(c: &Counters) -> StatsBase {
        StatsBase {
            gprc: c.rx_packets,
            gorc: octets(c.rx_bytes, c.rx_packets),
            gptc: c.tx_packets,
            gotc: octets(c.tx_bytes, c.tx_packets),
            mprc: c.rx_multicast,
        }
    }
}

/// One 82599 VF function.
pub struct Vf {
    id: u16,
    cfg: ConfigSpace,
    pf: Arc<dyn PfPort>,
    clock: Arc<dyn Clock>,
    mem: Option<GuestMem>,
    rx: [RxQueue; regs::QUEUES],
    tx: [TxRing; regs::QUEUES],
    intr: IntrRegs,
    link: LinkStatus,
    /// Report verified checksums in the RX write-back (default on).
    rx_checksum: bool,
    msix: MsixTable<{ regs::VF_VECTORS as usize }>,
    psrtype: u32,
    stats_base: StatsBase,
    /// VFGORC_MSB / VFGOTC_MSB as latched by the last LSB read (⚠ the latch is assumed:
    /// ixgbevf reads LSB then MSB, `UPDATE_VF_COUNTER_36bit`, and a latch keeps the pair
    /// consistent when a frame is counted between the two reads).
    gorc_msb: Option<u32>,
    gotc_msb: Option<u32>,
    counters: Counters,
    dma_faults: DmaFaults,
}

impl std::fmt::Debug for Vf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("x82599::Vf")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Vf {
    /// VF `id` with the 82599 VF config space, reaching its PF through `pf`; time (for
    /// interrupt moderation) from `clock`.
    pub fn new(id: u16, pf: Arc<dyn PfPort>, clock: Arc<dyn Clock>) -> Result<Vf, BuildError> {
        Ok(Vf::with_config(id, vf_config_space()?, pf, clock))
    }

    /// VF `id` with a config space built by the caller.
    pub fn with_config(
        id: u16,
        cfg: ConfigSpace,
        pf: Arc<dyn PfPort>,
        clock: Arc<dyn Clock>,
    ) -> Vf {
        Vf {
            id,
            cfg,
            pf,
            clock,
            mem: None,
            rx: Default::default(),
            tx: [tx::reset_value(), tx::reset_value()],
            intr: IntrRegs::default(),
            link: LinkStatus::UP_10G_FD,
            rx_checksum: true,
            msix: MsixTable::default(),
            psrtype: 0,
            stats_base: StatsBase::default(),
            gorc_msb: None,
            gotc_msb: None,
            counters: Counters::default(),
            dma_faults: DmaFaults::default(),
        }
    }

    pub fn id(&self) -> u16 {
        self.id
    }

    pub fn config(&self) -> &ConfigSpace {
        &self.cfg
    }

    /// Whether the VF may DMA (its Bus Master Enable).
    pub fn bus_master(&self) -> bool {
        self.cfg.bus_master_enabled()
    }

    pub fn attached(&self) -> bool {
        self.mem.is_some()
    }

    // ----- the datapath -----

    /// Resumes TX queues the shaper paused (their time has come).
    pub fn tx_resume(&mut self) -> Effects {
        let mut all = Effects::default();
        for q in 0..regs::QUEUES {
            if self.tx[q].pause().is_some() {
                all.merge(self.run_tx(q, true).1);
            }
        }
        all
    }

    /// The earliest deadline of a paused TX queue.
    pub fn tx_paused_until(&self) -> Option<u64> {
        self.tx
            .iter()
            .filter_map(|t| t.pause())
            .map(|p| p.until_ns)
            .min()
    }

    /// Free RX descriptors on queue 0.
    pub fn rx_free_descriptors(&self) -> u32 {
        let q = &self.rx[0];
        if q.enabled() {
            q.free_descriptors()
        } else {
            0
        }
    }

    /// A frame for RX queue `queue` (0 or 1); see [`Function::receive`]. A queue the VF does
    /// not have drops the frame as a disabled one.
    pub fn receive_on(
        &mut self,
        queue: usize,
        frame: &[u8],
        stripped_tci: Option<u16>,
        origin: Origin,
    ) -> (Result<(), RxDrop>, Fire) {
        let (result, fire) = self.receive_inner(queue, frame, stripped_tci, origin);
        match result {
            // Not a drop: the caller keeps the frame (the runtime's backlog).
            Err(RxDrop::RingFull) | Ok(()) => {}
            Err(reason) => self.counters.rx_drop(reason),
        }
        (result, fire)
    }

    fn receive_inner(
        &mut self,
        queue: usize,
        frame: &[u8],
        stripped_tci: Option<u16>,
        origin: Origin,
    ) -> (Result<(), RxDrop>, Fire) {
        let Some(mem) = self.mem.clone() else {
            return (Err(RxDrop::NotAttached), Fire::NONE);
        };
        if !self.bus_master() {
            return (Err(RxDrop::BusMasterOff), Fire::NONE);
        }
        let Some(q) = self.rx.get_mut(queue).filter(|q| q.enabled()) else {
            return (Err(RxDrop::QueueDisabled), Fire::NONE);
        };
        let guard = mem.memory();
        let outcome = write_frame(
            q,
            &*guard,
            frame,
            stripped_tci,
            self.rx_checksum,
            FunctionId::Vf(self.id),
            (&mut self.dma_faults, queue),
        );
        let cause = Cause::Rx(queue as u8);
        match outcome {
            RxOutcome::Delivered { .. } => {
                self.counters.rx_delivered(frame);
                if origin == Origin::Local {
                    self.counters.rx_looped_packets += 1;
                    self.counters.rx_looped_bytes += frame.len() as u64;
                }
                (Ok(()), self.intr.raise(cause, self.clock.now_ns()))
            }
            RxOutcome::Dropped(RxDrop::BufferDma) => {
                self.counters.dma_errors += 1;
                (
                    Err(RxDrop::BufferDma),
                    self.intr.raise(cause, self.clock.now_ns()),
                )
            }
            RxOutcome::Dropped(r) => {
                if r == RxDrop::RingDma {
                    self.counters.dma_errors += 1;
                }
                (Err(r), Fire::NONE)
            }
        }
    }

    /// The PF agent wrote to this VF's mailbox on its own (a ping): the mailbox cause.
    pub fn mailbox_interrupt(&mut self) -> Fire {
        self.intr.raise(Cause::Mailbox, self.clock.now_ns())
    }

    /// Whether RX write-backs carry the checksum status of verified-good checksums.
    pub fn set_rx_checksum(&mut self, on: bool) {
        self.rx_checksum = on;
    }

    /// Sets the link VFLINKS reports (the PF agent pings the VF on a change; VFLINKS follows).
    pub fn set_link(&mut self, link: LinkStatus) {
        self.link = link;
    }

    /// VFLINKS as the guest reads it.
    pub fn link_status(&self) -> u32 {
        links_bits(self.link)
    }

    /// The PF zeroes the VF's TDWBAL/TDWBAH when it answers VF_RESET, since neither a VF reset
    /// nor an FLR clears them (ixgbe's `ixgbe_vf_reset_msg`).
    pub fn clear_tx_head_writeback(&mut self) {
        for t in &mut self.tx {
            t.tdwbal = 0;
            t.tdwbah = 0;
        }
    }

    /// Queue 0's rings and the interrupt registers, without side effects.
    pub fn state(&self) -> VfState {
        let (r, t) = (&self.rx[0], &self.tx[0]);
        VfState {
            rx: RingState {
                enabled: r.enabled(),
                base: r.base(),
                len: r.len(),
                head: r.rdh,
                tail: r.rdt,
            },
            tx: RingState {
                enabled: t.enabled(),
                base: t.base(),
                len: t.len(),
                head: t.tdh,
                tail: t.tdt,
            },
            tx_paused_until: self.tx_paused_until(),
            eicr: self.intr.bank.eicr,
            eims: self.intr.bank.eims,
            ivar: self.intr.ivar,
            ivar_misc: self.intr.ivar_misc,
            bus_master: self.bus_master(),
            attached: self.attached(),
        }
    }

    // ----- resets -----

    /// Queues and interrupt registers to their reset values; TDWBAL/TDWBAH stay (neither a
    /// VF reset nor an FLR clears them: ixgbe's `ixgbe_vf_reset_msg` zeroes them itself).
    fn reset_registers(&mut self) {
        self.rx = Default::default();
        for t in &mut self.tx {
            let (wbal, wbah) = (t.tdwbal, t.tdwbah);
            *t = tx::reset_value();
            t.tdwbal = wbal;
            t.tdwbah = wbah;
        }
        self.intr.reset();
        self.psrtype = 0;
        self.gorc_msb = None;
        self.gotc_msb = None;
    }

    /// VFCTRL.RST (ixgbevf `ixgbevf_reset_hw_vf`): queues disabled and back to their reset
    /// values, interrupts masked and unrouted, the PF told (VFLRE; the mailbox releases the
    /// VF's lock and, with the PF up, shows RSTD). Statistics keep running; config space and
    /// the MSI-X table are the PCI side's and stay.
    fn vf_software_reset(&mut self) -> Fire {
        info!(vf = self.id, "VFCTRL.RST");
        self.counters.vf_resets += 1;
        self.reset_registers();
        let irq = self.pf.vf_reset(self.id);
        self.mailbox_irq(irq)
    }

    /// FLR or device reset: power-on state — config space, MSI-X table, registers, and
    /// statistics registers back to 0; the PF told as for a VF reset.
    fn function_reset(&mut self) -> Fire {
        let _ = self.cfg.reset();
        self.reset_registers();
        self.msix.reset();
        self.stats_base = StatsBase::of(&self.counters);
        let irq = self.pf.vf_reset(self.id);
        self.mailbox_irq(irq)
    }

    fn mailbox_irq(&mut self, irq: MailboxIrq) -> Fire {
        match irq {
            MailboxIrq::Raise => self.intr.raise(Cause::Mailbox, self.clock.now_ns()),
            MailboxIrq::None => Fire::NONE,
        }
    }

    // ----- BAR0 -----

    fn bar0_read(&mut self, offset: u64, data: &mut [u8]) -> Result<(), AccessError> {
        read_dwords(regs::BAR0_SIZE, offset, data, |o| self.read_reg(o))
    }

    fn bar0_write(&mut self, offset: u64, data: &[u8]) -> Result<Effects, AccessError> {
        let r = write_dwords(regs::BAR0_SIZE, offset, data, |o, v| self.write_reg(o, v));
        if r.is_err() {
            debug!(
                vf = self.id,
                offset,
                len = data.len(),
                "BAR0 write of unsupported size refused"
            );
        }
        r
    }

    /// Which queue block `offset` falls in, and where in it.
    fn queue_reg(offset: u64, base: u64) -> Option<(usize, u64)> {
        let span = base..base + regs::QUEUES as u64 * regs::QUEUE_STRIDE;
        span.contains(&offset).then(|| {
            (
                ((offset - base) / regs::QUEUE_STRIDE) as usize,
                (offset - base) % regs::QUEUE_STRIDE,
            )
        })
    }

    /// A 32-bit BAR0 register read at a dword-aligned offset, with its side effects.
    pub fn read_reg(&mut self, offset: u64) -> u32 {
        let id = self.id;
        if let Some(reg) = VfRegister::decode(offset) {
            return match reg {
                VfRegister::Vfmailbox => self.pf.read_v2p(id),
                VfRegister::Vfmbmem(word) => self.pf.read_vmbmem(id, word),
            };
        }
        if IntrRegs::decodes(offset) {
            return self.intr.read(offset).unwrap_or(0);
        }
        let value = match offset {
            regs::VFCTRL => Some(0),
            // ixgbevf reads VFSTATUS only to flush writes and to tell a removed adapter
            // (all-ones); ⚠ what else it mirrors of the PF's STATUS is a datasheet matter.
            regs::VFSTATUS => Some(0),
            regs::VFLINKS => Some(self.link_status()),
            regs::VFFRTIMER | regs::VFRXMEMWRAP => Some(0),
            regs::VFPSRTYPE => Some(self.psrtype),
            regs::VFGPRC
            | regs::VFGORC_LSB
            | regs::VFGORC_MSB
            | regs::VFMPRC
            | regs::VFGPTC
            | regs::VFGOTC_LSB
            | regs::VFGOTC_MSB => Some(self.read_stat(offset)),
            o => {
                if let Some((q, rel)) = Self::queue_reg(o, regs::RX_BASE) {
                    self.rx[q].read(rel)
                } else if let Some((q, rel)) = Self::queue_reg(o, regs::TX_BASE) {
                    tx::read(&self.tx[q], rel)
                } else {
                    None
                }
            }
        };
        value.unwrap_or_else(|| {
            debug!(vf = id, offset, "read of an unknown VF register: 0");
            0
        })
    }

    fn read_stat(&mut self, offset: u64) -> u32 {
        let (now, b) = (StatsBase::of(&self.counters), self.stats_base);
        let gorc = now.gorc.wrapping_sub(b.gorc) & OCTETS_MASK;
        let gotc = now.gotc.wrapping_sub(b.gotc) & OCTETS_MASK;
        let msb = |v: u64| (v >> 32) as u32 & regs::OCTETS_MSB_MASK;
        match offset {
            regs::VFGPRC => now.gprc.wrapping_sub(b.gprc) as u32,
            regs::VFGPTC => now.gptc.wrapping_sub(b.gptc) as u32,
            regs::VFMPRC => now.mprc.wrapping_sub(b.mprc) as u32,
            regs::VFGORC_LSB => {
                self.gorc_msb = Some(msb(gorc));
                gorc as u32
            }
            regs::VFGORC_MSB => self.gorc_msb.take().unwrap_or(msb(gorc)),
            regs::VFGOTC_LSB => {
                self.gotc_msb = Some(msb(gotc));
                gotc as u32
            }
            regs::VFGOTC_MSB => self.gotc_msb.take().unwrap_or(msb(gotc)),
            _ => 0,
        }
    }

    /// A 32-bit BAR0 register write at a dword-aligned offset, with its effects.
    pub fn write_reg(&mut self, offset: u64, value: u32) -> Effects {
        let id = self.id;
        if let Some(reg) = VfRegister::decode(offset) {
            return match reg {
                VfRegister::Vfmailbox => {
                    let irq = self.pf.write_v2p(id, value);
                    Effects::fire(self.mailbox_irq(irq))
                }
                VfRegister::Vfmbmem(word) => {
                    self.pf.write_vmbmem(id, word, value);
                    Effects::default()
                }
            };
        }
        if IntrRegs::decodes(offset) {
            let now = self.clock.now_ns();
            return Effects::fire(self.intr.write(offset, value, now).unwrap_or(Fire::NONE));
        }
        match offset {
            regs::VFCTRL => {
                if value & ctrl::RST != 0 {
                    return Effects::fire(self.vf_software_reset());
                }
                Effects::default()
            }
            regs::VFPSRTYPE => {
                self.psrtype = value;
                Effects::default()
            }
            o => {
                if let Some((q, rel)) = Self::queue_reg(o, regs::RX_BASE) {
                    if let Some(posted) = self.rx[q].write(rel, value) {
                        return Effects {
                            rx_posted: posted,
                            ..Effects::default()
                        };
                    }
                } else if let Some((q, rel)) = Self::queue_reg(o, regs::TX_BASE) {
                    match tx::write(&mut self.tx[q], rel, value) {
                        Some(true) => return self.run_tx(q, false).1,
                        Some(false) => return Effects::default(),
                        None => {}
                    }
                }
                // Read-only registers (VFSTATUS, VFLINKS, statistics) and unknown offsets.
                debug!(
                    vf = id,
                    offset, value, "write to a read-only or unknown VF register ignored"
                );
                Effects::default()
            }
        }
    }

    fn run_tx(&mut self, q: usize, resume: bool) -> (TxRun, Effects) {
        let mut effects = Effects::default();
        let vf = VfTx {
            id: self.id,
            pf: &*self.pf,
            mem: self.mem.as_ref(),
            bus_master: self.cfg.bus_master_enabled(),
            counters: &mut self.counters,
            dma: &mut self.dma_faults,
            // ixgbe sets HLREG0.TXPADEN; the 82599 honours TDWBAL.Head_WB_En.
            head_writeback: true,
        };
        let run = self.tx[q].run_for_vf(vf, q, resume, &mut effects.frames);
        if run.wrote_back {
            effects.fire = self.intr.raise(Cause::Tx(q as u8), self.clock.now_ns());
        }
        (run, effects)
    }
}

impl Function for Vf {
    /// BAR0 16 KiB (CSRs), BAR3 16 KiB (MSI-X); 3 MSI-X vectors, no MSI, no INTx pin.
    fn layout(&self) -> BusLayout {
        let mut bar_sizes = [0; 6];
        bar_sizes[0] = regs::BAR0_SIZE;
        bar_sizes[3] = regs::BAR3_SIZE;
        BusLayout {
            bar_sizes,
            msix_vectors: regs::VF_VECTORS,
            msi_vectors: 0,
            intx: false,
        }
    }

    fn config_read(&mut self, offset: u64, data: &mut [u8]) {
        self.cfg
            .read(usize::try_from(offset).unwrap_or(usize::MAX), data);
    }

    fn config_write(&mut self, offset: u64, data: &[u8]) -> Effects {
        let o = usize::try_from(offset).unwrap_or(usize::MAX);
        let events = self.cfg.write(o, data);
        if events.iter().any(|e| matches!(e, pcie::ConfigEvent::Flr)) {
            info!(vf = self.id, "function level reset");
            self.counters.flrs += 1;
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
            self.counters.bad_accesses += 1;
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
            self.counters.bad_accesses += 1;
        }
        r
    }

    fn reset(&mut self) -> Effects {
        Effects::fire(self.function_reset())
    }

    fn attach(&mut self, mem: GuestMem) {
        self.mem = Some(mem);
    }

    fn detach(&mut self) {
        self.mem = None;
        for t in &mut self.tx {
            t.clear_pause();
        }
    }

    /// A frame for RX queue 0 (see [`Vf::receive_on`]).
    fn receive(
        &mut self,
        frame: &[u8],
        stripped_tci: Option<u16>,
        origin: Origin,
    ) -> (Result<(), RxDrop>, Fire) {
        self.receive_on(0, frame, stripped_tci, origin)
    }

    fn count_tx_loopback(&mut self, packets: u64, bytes: u64) {
        self.counters.tx_looped_packets += packets;
        self.counters.tx_looped_bytes += bytes;
    }

    fn count_backlog_drop(&mut self) {
        self.counters.rx_drop(RxDrop::BacklogOverflow);
    }

    fn on_timer(&mut self, now: u64) -> Effects {
        let mut all = Effects::fire(self.intr.on_timer(now));
        for q in 0..regs::QUEUES {
            if self.tx[q].pause().is_some_and(|p| p.until_ns <= now) {
                all.merge(self.run_tx(q, true).1);
            }
        }
        all
    }

    fn next_wakeup(&self) -> Option<u64> {
        match (self.tx_paused_until(), self.intr.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn set_link(&mut self, link: LinkStatus) -> Effects {
        Vf::set_link(self, link);
        Effects::default()
    }

    fn stats(&self) -> VfStats {
        self.counters.snapshot()
    }

    fn dma_faults(&mut self) -> Option<&mut DmaFaults> {
        Some(&mut self.dma_faults)
    }

    fn dma_fault_report(&self) -> Vec<DmaFaultState> {
        self.dma_faults.report()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_function_moves_between_threads() {
        fn send<T: Send>() {}
        send::<Vf>();
    }

    fn vf() -> Vf {
        use crate::function::x82599::IxgbePfSide;
        use crate::seams::ManualClock;
        use mailbox::ixgbe::IxgbeConfig;
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(0));
        let pf = Arc::new(IxgbePfSide::new(IxgbeConfig::new(1), clock.clone()).unwrap());
        Vf::new(0, pf, clock).unwrap()
    }

    #[test]
    fn packet_counters_wrap_at_32_bits_and_octets_at_36_split_lsb_msb() {
        let mut v = vf();
        v.counters.rx_packets = (1 << 32) + 7;
        v.counters.rx_bytes = (1 << 36) + 0x2_0000_0000 - 4 * v.counters.rx_packets + 5;
        assert_eq!(v.read_reg(regs::VFGPRC), 7);
        // ixgbevf's UPDATE_VF_COUNTER_36bit: LSB, then MSB (bits 35:32 only).
        assert_eq!(v.read_reg(regs::VFGORC_LSB), 5);
        assert_eq!(v.read_reg(regs::VFGORC_MSB), 2);
    }

    #[test]
    fn the_lsb_read_latches_the_msb_so_the_pair_stays_consistent() {
        let mut v = vf();
        v.counters.tx_bytes = 0xFFFF_FFF0;
        assert_eq!(v.read_reg(regs::VFGOTC_LSB), 0xFFFF_FFF0);
        // A frame is counted between the two reads and carries into bit 32.
        v.counters.tx_packets = 1;
        v.counters.tx_bytes += 60;
        assert_eq!(v.read_reg(regs::VFGOTC_MSB), 0, "latched with the LSB");
        assert_eq!(v.read_reg(regs::VFGOTC_MSB), 1, "no latch: the counter now");
    }

    #[test]
    fn link_maps_to_vflinks_as_ixgbevf_decodes_it() {
        assert_eq!(links_bits(LinkStatus::DOWN), 0);
        assert_eq!(links_bits(LinkStatus::UP_10G_FD), 0x7000_0000);
        assert_eq!(
            links_bits(LinkStatus::UP_1000_FD),
            links::UP | links::SPEED_1G
        );
        let slow = LinkStatus {
            up: true,
            speed_mbps: 10,
            full_duplex: false,
        };
        assert_eq!(links_bits(slow), links::UP | links::SPEED_100);
    }
}
