//! One 82576 VF as a PCI function: config space, BAR0 registers (the VF register set Linux
//! igbvf's `regs.h` names), BAR3 (the MSI-X table store), the RX/TX engines,
//! interrupts and reset.
//!
//! Plain single-threaded state: the NIC runtime owns each [`Vf`] behind its lock, calls it with
//! `&mut self`, and carries out the [`Effects`] it answers with (MSI-X vectors to signal,
//! transmitted frames to switch, posted RX buffers) after releasing that lock. What the VF
//! reaches of its PF (mailbox registers, the shaper) goes through the [`PfPort`] it was built
//! with.
//!
//! BAR0 accesses of every size become 32-bit register accesses as [`super::mmio`] says;
//! refused ones are counted. Nothing panics.

use std::sync::Arc;

use tracing::{debug, info};
use vm_memory::GuestAddressSpace;

use super::config::{pf_config_space, vf_config_space};
use super::intr::{Cause, IntrRegs};
use super::regs::{self, ctrl, status};
use super::rx::{write_frame, RxOutcome, RxRing};
use super::tx::{TxRing, TxRun, VfTx};
use crate::function::faults::{DmaFaultState, DmaFaults};
use crate::function::mmio::{read_dwords, write_dwords, MsixTable};
use crate::function::stats::{AccessError, Counters, RxDrop, VfStats};
use crate::function::Origin;
use crate::function::{BusLayout, Effects, Fire, Function, FunctionId, GuestMem, LinkStatus};
pub use crate::function::{RingState, VfState};
use crate::seams::{Clock, MailboxIrq, PfPort};
use pcie::{BuildError, ConfigSpace};

fn status_bits(link: LinkStatus) -> u32 {
    if !link.up {
        return 0;
    }
    let speed = match link.speed_mbps {
        s if s >= 1000 => status::SPEED_1000,
        s if s >= 100 => status::SPEED_100,
        _ => status::SPEED_10,
    };
    status::LU | speed | if link.full_duplex { status::FD } else { 0 }
}

/// Guest-visible VF statistics are the counters minus their value at the last function
/// reset: free-running between resets, VTCTRL.RST does not clear them (igbvf's
/// `igbvf_update_stats` computes deltas and handles the 32-bit wrap).
#[derive(Clone, Copy, Debug, Default)]
struct StatsBase {
    gprc: u64,
    gorc: u64,
    gptc: u64,
    gotc: u64,
    mprc: u64,
    gprlbc: u64,
    gorlbc: u64,
    gptlbc: u64,
    gotlbc: u64,
}

/// The CRC at the end of every frame on the wire: the 82576's good-octet counters count it
/// (from the destination address through the CRC, 82576 datasheet 8.19 statistics registers),
/// while our frames and byte counters (as Linux's) leave it out.
const FCS_LEN: u64 = 4;

/// Octets as the statistics registers count them: each packet's bytes and its CRC.
fn octets(bytes: u64, packets: u64) -> u64 {
    bytes.wrapping_add(packets.wrapping_mul(FCS_LEN))
}

impl StatsBase {
    /// The registers' zero: the counters as they are now.
    fn of(c: &Counters) -> StatsBase {
        StatsBase {
            gprc: c.rx_packets,
            gorc: octets(c.rx_bytes, c.rx_packets),
            gptc: c.tx_packets,
            gotc: octets(c.tx_bytes, c.tx_packets),
            mprc: c.rx_multicast,
            gprlbc: c.rx_looped_packets,
            gorlbc: octets(c.rx_looped_bytes, c.rx_looped_packets),
            gptlbc: c.tx_looped_packets,
            gotlbc: octets(c.tx_looped_bytes, c.tx_looped_packets),
        }
    }
}

/// One VF function.
pub struct Vf {
    id: u16,
    cfg: ConfigSpace,
    pf: Arc<dyn PfPort>,
    /// Time for interrupt moderation.
    clock: Arc<dyn Clock>,
    mem: Option<GuestMem>,
    rx: [RxRing; regs::QUEUES],
    tx: [TxRing; regs::QUEUES],
    intr: IntrRegs,
    /// VTSTATUS.
    status: u32,
    /// Report verified checksums in the RX write-back (default on).
    rx_checksum: bool,
    /// BAR3: the MSI-X table (the PBA reads 0: QEMU emulates MSI-X and overlays it).
    msix: MsixTable<{ regs::VF_VECTORS as usize }>,
    pbacl: u32,
    psrtype: u32,
    stats_base: StatsBase,
    counters: Counters,
    /// Injected DMA faults (`ctl fault dma`).
    dma_faults: DmaFaults,
}

impl std::fmt::Debug for Vf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vf")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Vf {
    /// VF `id` with the 82576 VF config space, reaching its PF through `pf`; time (for
    /// interrupt moderation) from `clock`.
    pub fn new(id: u16, pf: Arc<dyn PfPort>, clock: Arc<dyn Clock>) -> Result<Vf, BuildError> {
        let cfg = vf_config_space(&pf_config_space()?)?;
        Ok(Vf::with_config(id, cfg, pf, clock))
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
            rx: [RxRing::reset_value(0), RxRing::reset_value(1)],
            tx: [TxRing::reset_value(0), TxRing::reset_value(1)],
            intr: IntrRegs::default(),
            status: status_bits(LinkStatus::UP_1000_FD),
            rx_checksum: true,
            msix: MsixTable::default(),
            pbacl: 0,
            psrtype: 0,
            stats_base: StatsBase::default(),
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

    // ----- the bus: config space, regions, reset, the client's memory -----

    pub fn attached(&self) -> bool {
        self.mem.is_some()
    }

    // ----- the datapath -----

    /// Resumes TX queues the shaper paused (their time has come).
    pub fn tx_resume(&mut self) -> Effects {
        let mut all = Effects::default();
        for q in 0..regs::QUEUES {
            if self.tx[q].pause().is_some() {
                let (_, effects) = self.run_tx(q, true);
                all.merge(effects);
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

    fn receive_inner(
        &mut self,
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
        let ring = &mut self.rx[0];
        if !ring.enabled() {
            ring.rqdpc = ring.rqdpc.wrapping_add(1);
            return (Err(RxDrop::QueueDisabled), Fire::NONE);
        }
        let guard = mem.memory();
        let outcome = write_frame(
            ring,
            &*guard,
            frame,
            stripped_tci,
            self.rx_checksum,
            FunctionId::Vf(self.id),
            (&mut self.dma_faults, 0),
        );
        if let RxOutcome::Dropped(r) = &outcome {
            if !matches!(r, RxDrop::RingFull | RxDrop::BufferDma) {
                ring.rqdpc = ring.rqdpc.wrapping_add(1);
            }
        }
        match outcome {
            RxOutcome::Delivered { .. } => {
                self.counters.rx_delivered(frame);
                if origin == Origin::Local {
                    self.counters.rx_looped_packets += 1;
                    self.counters.rx_looped_bytes += frame.len() as u64;
                }
                (Ok(()), self.intr.raise(Cause::Rx(0), self.clock.now_ns()))
            }
            RxOutcome::Dropped(RxDrop::BufferDma) => {
                self.counters.dma_errors += 1;
                (
                    Err(RxDrop::BufferDma),
                    self.intr.raise(Cause::Rx(0), self.clock.now_ns()),
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

    /// Free RX descriptors on queue 0.
    pub fn rx_free_descriptors(&self) -> u32 {
        if self.rx[0].enabled() {
            self.rx[0].free_descriptors()
        } else {
            0
        }
    }

    /// The PF agent wrote to this VF's mailbox on its own (a ping): the mailbox cause.
    pub fn mailbox_interrupt(&mut self) -> Fire {
        self.intr.raise(Cause::Mailbox, self.clock.now_ns())
    }

    /// Whether RX write-backs carry the checksum status of verified-good IPv4 headers and
    /// TCP/UDP checksums (IPCS, L4CS, UDPCS; default on). Off: the bits stay clear and the
    /// guest verifies everything itself.
    pub fn set_rx_checksum(&mut self, on: bool) {
        self.rx_checksum = on;
    }

    /// Sets the link VTSTATUS reports.
    pub fn set_link(&mut self, link: LinkStatus) {
        self.status = status_bits(link);
    }

    /// VTSTATUS as the guest reads it.
    pub fn link_status(&self) -> u32 {
        self.status
    }

    /// Queue and interrupt state, without side effects.
    pub fn state(&self) -> VfState {
        let r = &self.rx[0];
        let t = &self.tx[0];
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

    /// VTCTRL.RST (igbvf `e1000_reset_hw_vf`): queue enables cleared,
    /// interrupt state reset, the PF told (VFLRE). Statistics keep running.
    fn vf_software_reset(&mut self) -> Fire {
        info!(vf = self.id, "VTCTRL.RST");
        self.counters.vf_resets += 1;
        for r in &mut self.rx {
            r.rxdctl &= !regs::dctl::ENABLE;
        }
        for t in &mut self.tx {
            t.txdctl &= !regs::dctl::ENABLE;
            t.clear_pause();
        }
        self.intr.reset();
        let irq = self.pf.vf_reset(self.id);
        self.mailbox_irq(irq)
    }

    fn function_reset(&mut self) -> Fire {
        let _ = self.cfg.reset();
        self.rx = [RxRing::reset_value(0), RxRing::reset_value(1)];
        self.tx = [TxRing::reset_value(0), TxRing::reset_value(1)];
        self.intr.reset();
        self.msix.reset();
        self.pbacl = 0;
        self.psrtype = 0;
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

    /// A 32-bit BAR0 register read, with its side effects.
    pub fn read_reg(&mut self, offset: u64) -> u32 {
        let id = self.id;
        match offset {
            regs::VTCTRL | regs::VTCTRL_ALIAS => 0,
            regs::VTSTATUS => self.status,
            regs::VTFRTIMER => 0,
            o if (regs::VMBMEM..regs::VMBMEM_END).contains(&o) => {
                self.pf.read_vmbmem(id, ((o - regs::VMBMEM) / 4) as usize)
            }
            regs::V2PMAILBOX => self.pf.read_v2p(id),
            regs::PBACL => self.pbacl,
            regs::PSRTYPE => self.psrtype,
            regs::VFGPRC..=regs::VFGOTLBC => self.read_stat(offset),
            o if (regs::VTEICS..=regs::VTIVAR_MISC).contains(&o) => self.intr.read(o).unwrap_or(0),
            o if (regs::RX_BASE..regs::RX_BASE + 2 * regs::QUEUE_STRIDE).contains(&o) => {
                let q = ((o - regs::RX_BASE) / regs::QUEUE_STRIDE) as usize;
                self.rx[q].read(o % regs::QUEUE_STRIDE)
            }
            o if (regs::TX_BASE..regs::TX_BASE + 2 * regs::QUEUE_STRIDE).contains(&o) => {
                let q = ((o - regs::TX_BASE) / regs::QUEUE_STRIDE) as usize;
                self.tx[q].read(o % regs::QUEUE_STRIDE)
            }
            _ => 0,
        }
    }

    fn read_stat(&self, offset: u64) -> u32 {
        let (now, b) = (StatsBase::of(&self.counters), self.stats_base);
        let v = match offset {
            regs::VFGPRC => now.gprc.wrapping_sub(b.gprc),
            regs::VFGORC => now.gorc.wrapping_sub(b.gorc),
            regs::VFGPTC => now.gptc.wrapping_sub(b.gptc),
            regs::VFGOTC => now.gotc.wrapping_sub(b.gotc),
            regs::VFMPRC => now.mprc.wrapping_sub(b.mprc),
            regs::VFGPRLBC => now.gprlbc.wrapping_sub(b.gprlbc),
            regs::VFGORLBC => now.gorlbc.wrapping_sub(b.gorlbc),
            regs::VFGPTLBC => now.gptlbc.wrapping_sub(b.gptlbc),
            regs::VFGOTLBC => now.gotlbc.wrapping_sub(b.gotlbc),
            _ => 0,
        };
        v as u32
    }

    /// A 32-bit BAR0 register write, with its side effects (TX runs on a TDT write).
    pub fn write_reg(&mut self, offset: u64, value: u32) -> Effects {
        let id = self.id;
        match offset {
            regs::VTCTRL | regs::VTCTRL_ALIAS if value & ctrl::RST != 0 => {
                Effects::fire(self.vf_software_reset())
            }
            o if (regs::VMBMEM..regs::VMBMEM_END).contains(&o) => {
                self.pf
                    .write_vmbmem(id, ((o - regs::VMBMEM) / 4) as usize, value);
                Effects::default()
            }
            regs::V2PMAILBOX => {
                let irq = self.pf.write_v2p(id, value);
                Effects::fire(self.mailbox_irq(irq))
            }
            regs::PBACL => {
                self.pbacl = value & regs::VECTOR_MASK;
                Effects::default()
            }
            regs::PSRTYPE => {
                self.psrtype = value;
                Effects::default()
            }
            o if (regs::VTEICS..=regs::VTIVAR_MISC).contains(&o) => Effects::fire(
                self.intr
                    .write(o, value, self.clock.now_ns())
                    .unwrap_or(Fire::NONE),
            ),
            o if (regs::RX_BASE..regs::RX_BASE + 2 * regs::QUEUE_STRIDE).contains(&o) => {
                let q = ((o - regs::RX_BASE) / regs::QUEUE_STRIDE) as usize;
                let posted = self.rx[q].write(o % regs::QUEUE_STRIDE, value);
                Effects {
                    rx_posted: posted,
                    ..Effects::default()
                }
            }
            o if (regs::TX_BASE..regs::TX_BASE + 2 * regs::QUEUE_STRIDE).contains(&o) => {
                let q = ((o - regs::TX_BASE) / regs::QUEUE_STRIDE) as usize;
                if self.tx[q].write(o % regs::QUEUE_STRIDE, value) {
                    self.run_tx(q, false).1
                } else {
                    Effects::default()
                }
            }
            _ => Effects::default(),
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
            // The 82576 model keeps TDWBAL as plain storage: igbvf never sets it.
            head_writeback: false,
        };
        let run = self.tx[q].run_for_vf(vf, q, resume, &mut effects.frames);
        if run.wrote_back {
            effects.fire = self.intr.raise(Cause::Tx(q as u8), self.clock.now_ns());
        }
        (run, effects)
    }
}

impl Function for Vf {
    /// BAR0 16 KiB (CSRs), BAR3 16 KiB (MSI-X); 3 MSI-X vectors, no MSI, no INTx pin (a VF
    /// has neither).
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

    /// Bytes beyond the config space read as 0xFF ([`pcie::ConfigSpace::read`]).
    fn config_read(&mut self, offset: u64, data: &mut [u8]) {
        self.cfg
            .read(usize::try_from(offset).unwrap_or(usize::MAX), data);
    }

    /// A write beyond the config space is refused and counted ([`pcie::ConfigSpace::write`]).
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

    /// DEVICE_RESET, or after the client disconnected: config space, queues, interrupts and
    /// guest-visible statistics back to reset values; the mailbox sees a VF reset.
    fn reset(&mut self) -> Effects {
        Effects::fire(self.function_reset())
    }

    /// A client connected: its memory.
    fn attach(&mut self, mem: GuestMem) {
        self.mem = Some(mem);
    }

    /// The client went away: no more DMA; paused queues forget their pause.
    fn detach(&mut self) {
        self.mem = None;
        for t in &mut self.tx {
            t.clear_pause();
        }
    }

    /// Writes `frame` into the next free descriptors of RX queue 0 and raises the RX cause.
    /// `stripped_tci` is the VLAN tag the switch stripped (written back with VP). Returns what
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
        let (result, fire) = self.receive_inner(frame, stripped_tci, origin);
        match result {
            // Not a drop: the caller keeps the frame (the runtime's backlog).
            Err(RxDrop::RingFull) | Ok(()) => {}
            Err(reason) => self.counters.rx_drop(reason),
        }
        (result, fire)
    }

    fn count_tx_loopback(&mut self, packets: u64, bytes: u64) {
        self.counters.tx_looped_packets += packets;
        self.counters.tx_looped_bytes += bytes;
    }

    /// The runtime dropped a frame for this VF because its backlog was full.
    fn count_backlog_drop(&mut self) {
        self.counters.rx_drop(RxDrop::BacklogOverflow);
        self.rx[0].rqdpc = self.rx[0].rqdpc.wrapping_add(1);
    }

    /// The time has come to `now`: TX queues whose pause ended resume, held interrupts whose
    /// moderation interval ended fire.
    fn on_timer(&mut self, now: u64) -> Effects {
        let mut all = Effects::fire(self.intr.on_timer(now));
        for q in 0..regs::QUEUES {
            if self.tx[q].pause().is_some_and(|p| p.until_ns <= now) {
                let (_, effects) = self.run_tx(q, true);
                all.merge(effects);
            }
        }
        all
    }

    /// When the VF next needs [`Vf::on_timer`]: a paused TX queue's deadline or the end of a
    /// held interrupt's interval.
    fn next_wakeup(&self) -> Option<u64> {
        match (self.tx_paused_until(), self.intr.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn set_link(&mut self, link: LinkStatus) -> Effects {
        // The PF agent pings the VF through its mailbox; VTSTATUS just follows.
        Vf::set_link(self, link);
        Effects::default()
    }

    /// The VF's counters (interrupt counts are the runtime's: it signals them).
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

    #[test]
    fn link_status_maps_to_vtstatus_bits() {
        assert_eq!(status_bits(LinkStatus::DOWN), 0);
        assert_eq!(
            status_bits(LinkStatus::UP_1000_FD),
            status::LU | status::FD | status::SPEED_1000
        );
        let half_100 = LinkStatus {
            up: true,
            speed_mbps: 100,
            full_duplex: false,
        };
        assert_eq!(status_bits(half_100), status::LU | status::SPEED_100);
    }
}
