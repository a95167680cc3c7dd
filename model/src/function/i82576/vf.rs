//! One 82576 VF as a PCI function: config space, BAR0 registers (spec §3.2), BAR3 (MSI-X
//! table store and PBA), the RX/TX engines, interrupts and reset — the surface the vfio-user
//! adapter delegates `PciFunction` to.
//!
//! # Threads and locks
//! A [`Vf`] lives on its vfio-user connection thread (`&mut self`): config space, the BAR0
//! dispatch, the TX queues and the TX engine. What other threads need to deliver frames into
//! this VF is in [`VfShared`] (an `Arc`): the RX queues (`Mutex`), the interrupt registers
//! (`Mutex`), the guest memory and interrupt sink (`RwLock`s, only cloned out), bus-master
//! and link state (atomics) and the counters (atomics).
//!
//! Lock order: `rx` → `intr`; `mem` and `irq` are leaves (read, cloned, released). A VF's
//! TX engine holds no lock of its own (its state is `&mut`), so its sink may lock another
//! VF's `rx` (through [`VfShared::receive`]); nothing ever takes a TX path while holding an
//! `rx` or `intr` lock, and no VF lock is held while the TX sink (the switch) runs, nor while
//! the [`IrqSink`] or [`PfPort`] is called.
//!
//! # Wiring (the vfio-user adapter in `src/` and the NIC owner)
//! - `PciFunction::info` from [`Vf::info`] (BAR0 and BAR3 16 KiB, read/write; 3 MSI-X
//!   vectors); `config_read` / `config_write` / `region_read` / `region_write` / `reset` /
//!   `detach` delegate one to one ([`AccessError::BadAccess`] → `RegionError::BadAccess`,
//!   [`AccessError::NoSuchRegion`] → `RegionError::Invalid`).
//! - `attach(ctx)`: `vf.attach(ctx.dma.memory(), sink)` where `sink` is an [`IrqSink`] whose
//!   `fire(v)` signals MSI-X vector `v` through `ctx.irqs`. Only the memfd-mapped part of the
//!   client's memory is reachable; a descriptor or buffer elsewhere is a counted DMA error.
//! - TX: [`Vf::set_tx_sink`] with a closure that runs the switch for the VF's port and hands
//!   each delivery to the destination's [`VfShared::receive`] (no switch lock held while doing
//!   so), keeping a bounded per-destination backlog on [`RxDrop::RingFull`]
//!   ([`VfShared::count_backlog_drop`] when it overflows). A shaper that says "not yet"
//!   answers [`TxVerdict::Defer`]; the owner then calls [`Vf::tx_resume`] on the connection
//!   thread once the deadline has passed.
//! - RX backlog: [`Vf::set_rx_posted_hook`] is called after every RDT write; retry that VF's
//!   backlog from it.
//! - Mailbox: the owner implements [`PfPort`] over its PF side (`crate::pf`); when the PF agent
//!   writes to a VF's mailbox on its own (a ping), it calls [`VfShared::mailbox_interrupt`].
//! - Link: [`VfShared::set_link`] follows the switch port's link state (default: up, 1000 FD).
//!
//! # Access sizes
//! BAR0 registers are 32-bit. 4-byte aligned accesses are the norm; an 8-byte aligned access
//! is two 4-byte accesses (low dword first); a 1- or 2-byte read returns those bytes of the
//! containing dword (with that dword's read side effects); narrower writes and unaligned
//! accesses are refused with [`AccessError::BadAccess`] and counted. Nothing panics.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use tracing::{debug, info, warn};
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};

use crate::config::{pf_config_space, vf_config_space};
use crate::intr::{Cause, Fire, IntrRegs, IrqSink};
use crate::regs::{self, ctrl, status};
use crate::rx::{write_frame, RxOutcome, RxRing};
use crate::stats::{AccessError, Counters, RxDrop, VfStats};
use crate::tx::{HwOffload, TxOffload, TxRing, TxRun, TxSink, TxVerdict};
use pcie::{BuildError, ConfigSpace};

/// Guest memory as the vfio-user server hands it out.
pub type GuestMem = GuestMemoryAtomic<GuestMemoryMmap>;

// The PF side decides whether a mailbox access interrupts the VF (coordinator: the type moved
// to `pf.rs`, which owns the PF agent and the mailboxes).
pub use crate::pf::MailboxIrq;

/// The PF side of the VF's mailbox, implemented by the owner (who holds the
/// `mailbox::VfMailbox`es and the `mailbox::PfAgent`; see `mailbox`'s crate docs for the
/// wiring). Called on the VF's connection thread with no VF lock held.
pub trait PfPort: Send + Sync {
    /// V2PMAILBOX read (read-to-clear bits are the mailbox's business).
    fn read_v2p(&self, vf: u16) -> u32;
    /// V2PMAILBOX write; service the PF agent if the write posted something.
    fn write_v2p(&self, vf: u16, value: u32) -> MailboxIrq;
    fn read_vmbmem(&self, vf: u16, word: usize) -> u32;
    fn write_vmbmem(&self, vf: u16, word: usize, value: u32);
    /// VTCTRL.RST, FLR or device reset of the VF: `VfMailbox::vf_reset` + service.
    fn vf_reset(&self, vf: u16) -> MailboxIrq;
}

/// The link as VTSTATUS reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkState {
    pub up: bool,
    pub speed_mbps: u32,
    pub full_duplex: bool,
}

impl LinkState {
    pub const UP_1000_FD: LinkState = LinkState {
        up: true,
        speed_mbps: 1000,
        full_duplex: true,
    };
    pub const DOWN: LinkState = LinkState {
        up: false,
        speed_mbps: 0,
        full_duplex: false,
    };

    fn status_bits(self) -> u32 {
        if !self.up {
            return 0;
        }
        let speed = match self.speed_mbps {
            s if s >= 1000 => status::SPEED_1000,
            s if s >= 100 => status::SPEED_100,
            _ => status::SPEED_10,
        };
        status::LU | speed | if self.full_duplex { status::FD } else { 0 }
    }
}

/// One queue's ring as the device sees it (for `ctl show` and debugging).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RingState {
    pub enabled: bool,
    pub base: u64,
    /// Descriptors in the ring.
    pub len: u32,
    pub head: u32,
    pub tail: u32,
}

/// The VF's queues and interrupt registers (queue 0 of each direction: the ones igbvf uses).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct VfState {
    pub rx: RingState,
    pub tx: RingState,
    /// A TX queue paused by the shaper, until this time (ns).
    pub tx_paused_until: Option<u64>,
    pub eicr: u32,
    pub eims: u32,
    pub ivar: u32,
    pub ivar_misc: u32,
    pub bus_master: bool,
    pub attached: bool,
}

/// Region sizes and vector count, for the adapter's `FunctionInfo`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VfInfo {
    /// Size of BARs 0..5 (0 = absent): BAR0 16 KiB (CSRs), BAR3 16 KiB (MSI-X).
    pub bar_sizes: [u64; 6],
    /// MSI-X vectors (3).
    pub msix_vectors: u16,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The part of a VF other threads use: the RX entry point for the switch, the PF agent's
/// mailbox interrupt, the link, the counters.
pub struct VfShared {
    id: u16,
    rx: Mutex<[RxRing; regs::QUEUES]>,
    intr: Mutex<IntrRegs>,
    irq: RwLock<Option<Arc<dyn IrqSink>>>,
    mem: RwLock<Option<GuestMem>>,
    bus_master: AtomicBool,
    /// Report verified checksums in the RX write-back (default on).
    rx_checksum: AtomicBool,
    status: AtomicU32,
    pub(crate) counters: Counters,
}

impl std::fmt::Debug for VfShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VfShared")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl VfShared {
    fn new(id: u16) -> VfShared {
        VfShared {
            id,
            rx: Mutex::new([RxRing::reset_value(0), RxRing::reset_value(1)]),
            intr: Mutex::new(IntrRegs::default()),
            irq: RwLock::new(None),
            mem: RwLock::new(None),
            bus_master: AtomicBool::new(false),
            rx_checksum: AtomicBool::new(true),
            status: AtomicU32::new(LinkState::UP_1000_FD.status_bits()),
            counters: Counters::default(),
        }
    }

    /// The VF index (the pool).
    pub fn id(&self) -> u16 {
        self.id
    }

    /// Writes `frame` into the next free descriptors of RX queue 0 and raises the RX cause.
    /// `stripped_tci` is the VLAN tag the switch stripped (written back with VP).
    /// `Err(RxDrop::RingFull)` leaves everything unchanged: the caller may keep the frame in
    /// a bounded backlog and retry when the VF reports posted buffers.
    pub fn receive(&self, frame: &[u8], stripped_tci: Option<u16>) -> Result<(), RxDrop> {
        let r = self.receive_inner(frame, stripped_tci);
        if let Err(reason) = r {
            self.counters.rx_drop(reason);
        }
        r
    }

    fn receive_inner(&self, frame: &[u8], stripped_tci: Option<u16>) -> Result<(), RxDrop> {
        let Some(mem) = self.mem.read().unwrap_or_else(|e| e.into_inner()).clone() else {
            return Err(RxDrop::NotAttached);
        };
        if !self.bus_master.load(Ordering::Acquire) {
            return Err(RxDrop::BusMasterOff);
        }
        let outcome = {
            let mut rx = lock(&self.rx);
            let ring = &mut rx[0];
            if !ring.enabled() {
                ring.rqdpc = ring.rqdpc.wrapping_add(1);
                return Err(RxDrop::QueueDisabled);
            }
            let guard = mem.memory();
            let checksum = self.rx_checksum.load(Ordering::Relaxed);
            let o = write_frame(ring, &*guard, frame, stripped_tci, checksum, self.id);
            if let RxOutcome::Dropped(r) = &o {
                if !matches!(r, RxDrop::RingFull | RxDrop::BufferDma) {
                    ring.rqdpc = ring.rqdpc.wrapping_add(1);
                }
            }
            o
        };
        match outcome {
            RxOutcome::Delivered { .. } => {
                let c = &self.counters;
                Counters::add(&c.rx_packets, 1);
                Counters::add(&c.rx_bytes, frame.len() as u64);
                if frame.first().is_some_and(|b| b & 1 != 0) && frame.get(..6) != Some(&[0xFF; 6]) {
                    Counters::add(&c.rx_multicast, 1);
                }
                self.raise(Cause::Rx(0));
                Ok(())
            }
            RxOutcome::Dropped(RxDrop::BufferDma) => {
                Counters::add(&self.counters.dma_errors, 1);
                // The descriptors were completed (with RXE): tell the driver.
                self.raise(Cause::Rx(0));
                Err(RxDrop::BufferDma)
            }
            RxOutcome::Dropped(r) => {
                if r == RxDrop::RingDma {
                    Counters::add(&self.counters.dma_errors, 1);
                }
                Err(r)
            }
        }
    }

    /// Free RX descriptors on queue 0 (for the owner's backlog draining).
    pub fn rx_free_descriptors(&self) -> u32 {
        let rx = lock(&self.rx);
        if rx[0].enabled() {
            rx[0].free_descriptors()
        } else {
            0
        }
    }

    /// The owner dropped a frame for this VF because its backlog was full.
    pub fn count_backlog_drop(&self) {
        self.counters.rx_drop(RxDrop::BacklogOverflow);
        let mut rx = lock(&self.rx);
        rx[0].rqdpc = rx[0].rqdpc.wrapping_add(1);
    }

    /// Raise the mailbox cause (the PF agent wrote STS/ACK, e.g. a ping): fires the
    /// VTIVAR_MISC vector if enabled. Any thread.
    pub fn mailbox_interrupt(&self) {
        self.raise(Cause::Mailbox);
    }

    /// Whether RX write-backs carry the checksum status of verified-good IPv4 headers and
    /// TCP/UDP checksums (IPCS, L4CS, UDPCS; default on). Off: the bits stay clear and the
    /// guest verifies everything itself.
    pub fn set_rx_checksum(&self, on: bool) {
        self.rx_checksum.store(on, Ordering::Relaxed);
    }

    /// Set the link VTSTATUS reports.
    pub fn set_link(&self, link: LinkState) {
        self.status.store(link.status_bits(), Ordering::Release);
    }

    pub fn link_status(&self) -> u32 {
        self.status.load(Ordering::Acquire)
    }

    pub fn stats(&self) -> VfStats {
        self.counters.snapshot()
    }

    /// Whether the VF may DMA (its Bus Master Enable).
    pub fn bus_master(&self) -> bool {
        self.bus_master.load(Ordering::Acquire)
    }

    fn raise(&self, cause: Cause) {
        let fire = lock(&self.intr).raise(cause);
        self.deliver(fire);
    }

    fn deliver(&self, fire: Fire) {
        if fire.is_empty() {
            return;
        }
        let sink = self.irq.read().unwrap_or_else(|e| e.into_inner()).clone();
        for v in fire.vectors() {
            match &sink {
                Some(s) => {
                    s.fire(v);
                    Counters::add(&self.counters.irqs_fired, 1);
                }
                None => Counters::add(&self.counters.irqs_lost, 1),
            }
        }
    }

    fn memory(&self) -> Option<GuestMem> {
        self.mem.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Guest-visible VF statistics are the counters minus their value at the last function
/// reset (free-running between resets; VTCTRL.RST does not clear them, spec §2.7).
#[derive(Clone, Copy, Debug, Default)]
struct StatsBase {
    gprc: u64,
    gorc: u64,
    gptc: u64,
    gotc: u64,
    mprc: u64,
}

/// Called after the guest posts RX buffers (an RDT write), with the VF index and no lock
/// held: the owner retries its backlog for this VF.
pub type RxPostedHook = dyn Fn(u16) + Send + Sync;

/// One VF function.
pub struct Vf {
    shared: Arc<VfShared>,
    cfg: ConfigSpace,
    pf: Arc<dyn PfPort>,
    tx: [TxRing; regs::QUEUES],
    sink: Box<TxSink>,
    offload: Arc<dyn TxOffload>,
    rx_posted: Option<Arc<RxPostedHook>>,
    msix_table: [u8; (regs::VF_VECTORS as usize) * regs::MSIX_TABLE_ENTRY as usize],
    pbacl: u32,
    psrtype: u32,
    stats_base: StatsBase,
}

impl Vf {
    /// VF `id` with the 82576 VF config space (spec §1.4), mailbox through `pf`.
    pub fn new(id: u16, pf: Arc<dyn PfPort>) -> Result<Vf, BuildError> {
        let cfg = vf_config_space(&pf_config_space()?)?;
        Ok(Vf::with_config(id, cfg, pf))
    }

    /// VF `id` with a config space built by the caller.
    pub fn with_config(id: u16, cfg: ConfigSpace, pf: Arc<dyn PfPort>) -> Vf {
        let shared = Arc::new(VfShared::new(id));
        shared
            .bus_master
            .store(cfg.bus_master_enabled(), Ordering::Release);
        Vf {
            shared,
            cfg,
            pf,
            tx: [TxRing::reset_value(0), TxRing::reset_value(1)],
            sink: Box::new(|_| TxVerdict::Sent),
            offload: Arc::new(HwOffload),
            rx_posted: None,
            msix_table: [0; (regs::VF_VECTORS as usize) * regs::MSIX_TABLE_ENTRY as usize],
            pbacl: 0,
            psrtype: 0,
            stats_base: StatsBase::default(),
        }
    }

    pub fn id(&self) -> u16 {
        self.shared.id
    }

    pub fn info(&self) -> VfInfo {
        let mut bar_sizes = [0; 6];
        bar_sizes[0] = regs::BAR0_SIZE;
        bar_sizes[3] = regs::BAR3_SIZE;
        VfInfo {
            bar_sizes,
            msix_vectors: regs::VF_VECTORS,
        }
    }

    /// The handle other threads use (the switch's RX delivery, the PF agent's pings).
    pub fn shared(&self) -> Arc<VfShared> {
        self.shared.clone()
    }

    /// Where transmitted frames go (default: discarded). Runs on the thread that wrote TDT.
    pub fn set_tx_sink(&mut self, sink: Box<TxSink>) {
        self.sink = sink;
    }

    /// The TX offload engine (default: [`HwOffload`], the 82576 engine of `crate::offload`).
    pub fn set_offload(&mut self, offload: Arc<dyn TxOffload>) {
        self.offload = offload;
    }

    /// Called after every RDT write (buffers posted).
    pub fn set_rx_posted_hook(&mut self, hook: Arc<RxPostedHook>) {
        self.rx_posted = Some(hook);
    }

    pub fn config(&self) -> &ConfigSpace {
        &self.cfg
    }

    // ----- PciFunction surface -----

    pub fn config_read(&mut self, offset: u64, data: &mut [u8]) {
        match usize::try_from(offset) {
            Ok(o) => self.cfg.read(o, data),
            Err(_) => data.fill(0xFF),
        }
    }

    pub fn config_write(&mut self, offset: u64, data: &[u8]) {
        let Ok(o) = usize::try_from(offset) else {
            return;
        };
        let events = self.cfg.write(o, data);
        self.shared
            .bus_master
            .store(self.cfg.bus_master_enabled(), Ordering::Release);
        if events.iter().any(|e| matches!(e, pcie::ConfigEvent::Flr)) {
            info!(vf = self.id(), "function level reset");
            Counters::add(&self.shared.counters.flrs, 1);
            self.function_reset();
        }
    }

    pub fn region_read(
        &mut self,
        index: u32,
        offset: u64,
        data: &mut [u8],
    ) -> Result<(), AccessError> {
        let r = match index {
            0 => self.bar0_read(offset, data),
            3 => {
                self.bar3_read(offset, data);
                Ok(())
            }
            _ => Err(AccessError::NoSuchRegion),
        };
        if r.is_err() {
            data.fill(0);
            Counters::add(&self.shared.counters.bad_accesses, 1);
        }
        r
    }

    pub fn region_write(
        &mut self,
        index: u32,
        offset: u64,
        data: &[u8],
    ) -> Result<(), AccessError> {
        let r = match index {
            0 => self.bar0_write(offset, data),
            3 => {
                self.bar3_write(offset, data);
                Ok(())
            }
            _ => Err(AccessError::NoSuchRegion),
        };
        if r.is_err() {
            Counters::add(&self.shared.counters.bad_accesses, 1);
        }
        r
    }

    /// DEVICE_RESET, or after the client disconnected: config space, queues, interrupts and
    /// guest-visible statistics back to reset values; the mailbox sees a VF reset.
    pub fn reset(&mut self) {
        self.function_reset();
    }

    /// A client connected: its memory and interrupt sink.
    pub fn attach(&mut self, mem: GuestMem, irq: Arc<dyn IrqSink>) {
        *self.shared.mem.write().unwrap_or_else(|e| e.into_inner()) = Some(mem);
        *self.shared.irq.write().unwrap_or_else(|e| e.into_inner()) = Some(irq);
    }

    /// The client went away: no more DMA or interrupts.
    pub fn detach(&mut self) {
        *self.shared.mem.write().unwrap_or_else(|e| e.into_inner()) = None;
        *self.shared.irq.write().unwrap_or_else(|e| e.into_inner()) = None;
        for t in &mut self.tx {
            t.clear_pause();
        }
    }

    /// Resume TX queues paused by a [`TxVerdict::Defer`] (the owner's deadline passed).
    pub fn tx_resume(&mut self) -> TxRun {
        let mut all = TxRun::default();
        for q in 0..regs::QUEUES {
            if self.tx[q].pause().is_some() {
                let r = self.run_tx(q, true);
                all.wrote_back |= r.wrote_back;
                all.paused_until = match (all.paused_until, r.paused_until) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
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

    pub fn stats(&self) -> VfStats {
        self.shared.stats()
    }

    /// Queue and interrupt state, without side effects.
    pub fn state(&self) -> VfState {
        let rx = {
            let rx = lock(&self.shared.rx);
            let r = &rx[0];
            RingState {
                enabled: r.enabled(),
                base: r.base(),
                len: r.len(),
                head: r.rdh,
                tail: r.rdt,
            }
        };
        let t = &self.tx[0];
        let intr = lock(&self.shared.intr).clone();
        VfState {
            rx,
            tx: RingState {
                enabled: t.enabled(),
                base: t.base(),
                len: t.len(),
                head: t.tdh,
                tail: t.tdt,
            },
            tx_paused_until: self.tx_paused_until(),
            eicr: intr.eicr,
            eims: intr.eims,
            ivar: intr.ivar,
            ivar_misc: intr.ivar_misc,
            bus_master: self.shared.bus_master(),
            attached: self.shared.memory().is_some(),
        }
    }

    // ----- resets -----

    /// VTCTRL.RST (spec §4.2 step 1): queue enables cleared, interrupt state reset, the PF
    /// told (VFLRE). Statistics keep running.
    fn vf_software_reset(&mut self) {
        info!(vf = self.id(), "VTCTRL.RST");
        Counters::add(&self.shared.counters.vf_resets, 1);
        {
            let mut rx = lock(&self.shared.rx);
            for r in rx.iter_mut() {
                r.rxdctl &= !regs::dctl::ENABLE;
            }
        }
        for t in &mut self.tx {
            t.txdctl &= !regs::dctl::ENABLE;
            t.clear_pause();
        }
        lock(&self.shared.intr).reset();
        let irq = self.pf.vf_reset(self.id());
        self.mailbox_irq(irq);
    }

    fn function_reset(&mut self) {
        let _ = self.cfg.reset();
        self.shared
            .bus_master
            .store(self.cfg.bus_master_enabled(), Ordering::Release);
        *lock(&self.shared.rx) = [RxRing::reset_value(0), RxRing::reset_value(1)];
        self.tx = [TxRing::reset_value(0), TxRing::reset_value(1)];
        lock(&self.shared.intr).reset();
        self.msix_table.fill(0);
        self.pbacl = 0;
        self.psrtype = 0;
        let s = self.shared.stats();
        self.stats_base = StatsBase {
            gprc: s.rx_packets,
            gorc: s.rx_bytes,
            gptc: s.tx_packets,
            gotc: s.tx_bytes,
            mprc: s.rx_multicast,
        };
        let irq = self.pf.vf_reset(self.id());
        self.mailbox_irq(irq);
    }

    fn mailbox_irq(&self, irq: MailboxIrq) {
        if irq == MailboxIrq::Raise {
            self.shared.raise(Cause::Mailbox);
        }
    }

    // ----- BAR0 -----

    fn bar0_read(&mut self, offset: u64, data: &mut [u8]) -> Result<(), AccessError> {
        let len = data.len() as u64;
        if offset
            .checked_add(len)
            .is_none_or(|end| end > regs::BAR0_SIZE)
        {
            return Err(AccessError::BadAccess);
        }
        match data.len() {
            4 if offset.is_multiple_of(4) => {
                data.copy_from_slice(&self.read_reg(offset).to_le_bytes())
            }
            8 if offset.is_multiple_of(8) => {
                let lo = self.read_reg(offset);
                let hi = self.read_reg(offset + 4);
                data[..4].copy_from_slice(&lo.to_le_bytes());
                data[4..].copy_from_slice(&hi.to_le_bytes());
            }
            1 | 2 if offset % 4 + len <= 4 => {
                let dword = offset & !3;
                let v = self.read_reg(dword).to_le_bytes();
                let at = (offset - dword) as usize;
                data.copy_from_slice(&v[at..at + data.len()]);
            }
            _ => return Err(AccessError::BadAccess),
        }
        Ok(())
    }

    fn bar0_write(&mut self, offset: u64, data: &[u8]) -> Result<(), AccessError> {
        let len = data.len() as u64;
        if offset
            .checked_add(len)
            .is_none_or(|end| end > regs::BAR0_SIZE)
        {
            return Err(AccessError::BadAccess);
        }
        let dword = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        match data.len() {
            4 if offset.is_multiple_of(4) => self.write_reg(offset, dword(data)),
            8 if offset.is_multiple_of(8) => {
                self.write_reg(offset, dword(&data[..4]));
                self.write_reg(offset + 4, dword(&data[4..]));
            }
            _ => {
                debug!(
                    vf = self.id(),
                    offset, len, "BAR0 write of unsupported size refused"
                );
                return Err(AccessError::BadAccess);
            }
        }
        Ok(())
    }

    /// A 32-bit BAR0 register read, with its side effects.
    pub fn read_reg(&mut self, offset: u64) -> u32 {
        let id = self.id();
        match offset {
            regs::VTCTRL | regs::VTCTRL_ALIAS => 0,
            regs::VTSTATUS => self.shared.link_status(),
            regs::VTFRTIMER => 0,
            o if (regs::VMBMEM..regs::VMBMEM_END).contains(&o) => {
                self.pf.read_vmbmem(id, ((o - regs::VMBMEM) / 4) as usize)
            }
            regs::V2PMAILBOX => self.pf.read_v2p(id),
            regs::PBACL => self.pbacl,
            regs::PSRTYPE => self.psrtype,
            regs::VFGPRC..=regs::VFGOTLBC => self.read_stat(offset),
            o if (regs::VTEICS..=regs::VTIVAR_MISC).contains(&o) => {
                lock(&self.shared.intr).read(o).unwrap_or(0)
            }
            o if (regs::RX_BASE..regs::RX_BASE + 2 * regs::QUEUE_STRIDE).contains(&o) => {
                let q = ((o - regs::RX_BASE) / regs::QUEUE_STRIDE) as usize;
                lock(&self.shared.rx)[q].read(o % regs::QUEUE_STRIDE)
            }
            o if (regs::TX_BASE..regs::TX_BASE + 2 * regs::QUEUE_STRIDE).contains(&o) => {
                let q = ((o - regs::TX_BASE) / regs::QUEUE_STRIDE) as usize;
                self.tx[q].read(o % regs::QUEUE_STRIDE)
            }
            _ => 0,
        }
    }

    fn read_stat(&self, offset: u64) -> u32 {
        let s = self.shared.stats();
        let b = self.stats_base;
        let v = match offset {
            regs::VFGPRC => s.rx_packets.wrapping_sub(b.gprc),
            regs::VFGORC => s.rx_bytes.wrapping_sub(b.gorc),
            regs::VFGPTC => s.tx_packets.wrapping_sub(b.gptc),
            regs::VFGOTC => s.tx_bytes.wrapping_sub(b.gotc),
            regs::VFMPRC => s.rx_multicast.wrapping_sub(b.mprc),
            // Loopback counters: the switch does not tell the VF which frames looped.
            _ => 0,
        };
        v as u32
    }

    /// A 32-bit BAR0 register write, with its side effects (TX runs on a TDT write).
    pub fn write_reg(&mut self, offset: u64, value: u32) {
        let id = self.id();
        match offset {
            regs::VTCTRL | regs::VTCTRL_ALIAS if value & ctrl::RST != 0 => {
                self.vf_software_reset();
            }
            o if (regs::VMBMEM..regs::VMBMEM_END).contains(&o) => {
                self.pf
                    .write_vmbmem(id, ((o - regs::VMBMEM) / 4) as usize, value);
            }
            regs::V2PMAILBOX => {
                let irq = self.pf.write_v2p(id, value);
                self.mailbox_irq(irq);
            }
            regs::PBACL => self.pbacl = value & regs::VECTOR_MASK,
            regs::PSRTYPE => self.psrtype = value,
            o if (regs::VTEICS..=regs::VTIVAR_MISC).contains(&o) => {
                let fire = lock(&self.shared.intr)
                    .write(o, value)
                    .unwrap_or(Fire::NONE);
                self.shared.deliver(fire);
            }
            o if (regs::RX_BASE..regs::RX_BASE + 2 * regs::QUEUE_STRIDE).contains(&o) => {
                let q = ((o - regs::RX_BASE) / regs::QUEUE_STRIDE) as usize;
                let posted = lock(&self.shared.rx)[q].write(o % regs::QUEUE_STRIDE, value);
                if posted {
                    if let Some(hook) = &self.rx_posted {
                        hook(id);
                    }
                }
            }
            o if (regs::TX_BASE..regs::TX_BASE + 2 * regs::QUEUE_STRIDE).contains(&o) => {
                let q = ((o - regs::TX_BASE) / regs::QUEUE_STRIDE) as usize;
                if self.tx[q].write(o % regs::QUEUE_STRIDE, value) {
                    let _ = self.run_tx(q, false);
                }
            }
            _ => {}
        }
    }

    fn run_tx(&mut self, q: usize, resume: bool) -> TxRun {
        let ring = &mut self.tx[q];
        if !ring.enabled() {
            return TxRun::default();
        }
        if !self.shared.bus_master() {
            debug!(
                vf = self.shared.id,
                queue = q,
                "TX with bus mastering off: not fetched"
            );
            return TxRun::default();
        }
        let Some(mem) = self.shared.memory() else {
            return TxRun::default();
        };
        let guard = mem.memory();
        let run = ring.run(
            &*guard,
            &*self.offload,
            &mut *self.sink,
            &self.shared.counters,
            self.shared.id,
            resume,
        );
        if !ring.enabled() {
            warn!(vf = self.shared.id, queue = q, "TX queue stopped");
        }
        if run.wrote_back {
            self.shared.raise(Cause::Tx(q as u8));
        }
        run
    }

    // ----- BAR3 -----

    fn bar3_read(&mut self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            let o = offset.saturating_add(i as u64);
            *b = usize::try_from(o)
                .ok()
                .and_then(|o| self.msix_table.get(o))
                .copied()
                .unwrap_or(0);
        }
        // The PBA (at regs::MSIX_PBA) reads 0: QEMU emulates MSI-X and overlays it.
    }

    fn bar3_write(&mut self, offset: u64, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            let o = offset.saturating_add(i as u64);
            if let Some(slot) = usize::try_from(o)
                .ok()
                .and_then(|o| self.msix_table.get_mut(o))
            {
                *slot = *b;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_function_moves_to_its_connection_thread_and_the_shared_part_is_sync() {
        fn send<T: Send>() {}
        fn send_sync<T: Send + Sync>() {}
        send::<Vf>();
        send_sync::<VfShared>();
        send_sync::<Arc<VfShared>>();
    }

    #[test]
    fn link_state_maps_to_vtstatus_bits() {
        assert_eq!(LinkState::DOWN.status_bits(), 0);
        assert_eq!(
            LinkState::UP_1000_FD.status_bits(),
            status::LU | status::FD | status::SPEED_1000
        );
        let half_100 = LinkState {
            up: true,
            speed_mbps: 100,
            full_duplex: false,
        };
        assert_eq!(half_100.status_bits(), status::LU | status::SPEED_100);
    }
}
