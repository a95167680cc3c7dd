//! The NIC runtime: the one datapath that `serve`, the scenario runner and the tests all drive.
//! A [`Nic`] owns the PF side ([`PfSide`]: eswitch, PF agent, every VF's mailbox) behind one
//! lock, each hosted function — every VF, and the PF function once [`Nic::host_pf`] gave it
//! one — behind a lock of its own (a [`Slot`]), the bounded RX backlogs, the functions'
//! timer deadlines and the sinks and observer at its edges. It has no sockets and no threads
//! of its own: a vfio-user connection (or an in-process driver) reaches a function through
//! its [`Handle`] ([`VfHandle`], [`PfHandle`]), and whoever owns the NIC drives the timer
//! ([`Nic::poll`] on an injected clock, or [`Nic::spawn_timer`] in real time).
//!
//! # The datapath
//! A guest writes TDT → [`Handle::region_write`] runs the VF's TX engine under the VF's lock;
//! each frame is admitted by the switch's shaper as the engine takes it (a rate-limited VF's
//! queue pauses, with the frame not consumed, until the time the shaper names) → with the VF's
//! lock released, [`Eswitch::process`](eswitch::Eswitch::process) switches the frames → each
//! delivery goes:
//! - to a VF: into its RX ring ([`CardVf::receive`]); on a full ring the frame waits in that VF's
//!   bounded backlog ([`BACKLOG_FRAMES`]), drained in order when its driver posts buffers;
//!   beyond it the frame is dropped and counted as
//!   [`DropReason::RxFull`](eswitch::DropReason::RxFull) on the port and `backlog_overflow` in the
//!   VF's counters;
//! - to the PF, while a client drives the hosted PF function: into its RX rings, with a
//!   backlog like a VF's;
//! - to an uplink, or to the PF when no client drives a PF function (none is hosted, or its
//!   guest is not attached: the emulator plays the PF's host side): the [`PortSink`]
//!   registered for that port, or, without one, counted in [`NicCounters::unclaimed`] and
//!   dropped;
//!
//! and the [`Observer`], if any, sees the frame, its copies and its drops.
//!
//! # Locks
//! Order: a function's lock → the PF side's lock. The PF side's lock is never held while a
//! function's is taken; no function's lock is held while another's is taken; and no lock of the NIC is held while
//! an interrupt is signalled ([`IrqSink`]), a sink or the observer is called. So one VF's
//! guest can hold up another only for the length of one of its own register accesses.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, RwLock};

use bytes::Bytes;
use eswitch::{PfPolicy, PortId, VfSetting};
use tracing::{info, warn};

use crate::function::card_vf::CardVf;
use crate::function::rxcsum::L4Checksum;
use crate::function::stats::{AccessError, RxDrop, VfStats};
use crate::function::{
    BusLayout, Effects, Fire, Function, GuestMem, LinkStatus, Origin, RxCopy, TxFrame,
};
use crate::seams::{Clock, IrqSink, Observer, PortSink};
use faults::{SlotFaults, WireFaults};
use inject::NicFaults;

pub mod agent;
mod datapath;
pub mod faults;
mod handle;
mod inject;
pub mod pf;
mod timer;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_faults;
#[cfg(test)]
mod tests_guest;
#[cfg(test)]
mod tests_ixgbe;

pub use agent::{Agent, Card};
pub use handle::{Handle, PfHandle, VfHandle};
pub use pf::{
    AdminError, GuestPfCounters, MacMode, NicConfig, NicError, PfCounters, PfDriver, PfSide,
    SetError, SharedPf,
};
pub use timer::TimerHandle;

/// Most VFs a port is built with by `serve` and the scenario runner: 256, as a current card's
/// port has (an E810's). A VF with no client costs a listening socket and its state.
pub const MAX_VFS_PER_PORT: u16 = 256;

/// Frames one VF's backlog holds while its RX ring is full.
pub const BACKLOG_FRAMES: usize = 256;

/// Counters of the NIC's own datapath (the switch and the VFs count the rest).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct NicCounters {
    /// Frames delivered to a PF or uplink port that has no [`PortSink`] (dropped).
    pub unclaimed: BTreeMap<String, u64>,
    /// Frames waiting in each VF's backlog now.
    pub backlog: BTreeMap<u16, usize>,
    /// Frames waiting in the PF function's backlog now (`None`: no PF function hosted).
    pub pf_backlog: Option<usize>,
    /// Faults injected on the port and carried out, by kind (`pf_reset`, `link_down`, ...).
    pub faults: BTreeMap<&'static str, u64>,
}

/// A NIC that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum NicBuildError {
    #[error(transparent)]
    Pf(#[from] NicError),
    #[error("VF config space: {0}")]
    VfConfig(#[from] pcie::BuildError),
}

const NO_DEADLINE: u64 = u64::MAX;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A frame waiting for room in a function's RX ring.
struct Pending {
    frame: Bytes,
    stripped_tci: Option<u16>,
    origin: Origin,
    l4_checksum: L4Checksum,
}

/// A PF function hosted by the runtime, of whatever card ([`Nic::host_pf`]).
pub type DynFunction = Box<dyn Function>;

impl Function for DynFunction {
    fn layout(&self) -> BusLayout {
        (**self).layout()
    }
    fn config_read(&mut self, offset: u64, data: &mut [u8]) {
        (**self).config_read(offset, data)
    }
    fn config_write(&mut self, offset: u64, data: &[u8]) -> Effects {
        (**self).config_write(offset, data)
    }
    fn region_read(&mut self, index: u32, offset: u64, data: &mut [u8]) -> Result<(), AccessError> {
        (**self).region_read(index, offset, data)
    }
    fn region_write(
        &mut self,
        index: u32,
        offset: u64,
        data: &[u8],
    ) -> Result<Effects, AccessError> {
        (**self).region_write(index, offset, data)
    }
    fn reset(&mut self) -> Effects {
        (**self).reset()
    }
    fn attach(&mut self, mem: GuestMem) {
        (**self).attach(mem)
    }
    fn detach(&mut self) {
        (**self).detach()
    }
    fn receive(
        &mut self,
        frame: &[u8],
        stripped_tci: Option<u16>,
        origin: Origin,
    ) -> (Result<(), RxDrop>, Fire) {
        (**self).receive(frame, stripped_tci, origin)
    }
    fn receive_batch(&mut self, copies: &[RxCopy<'_>]) -> (usize, Fire) {
        (**self).receive_batch(copies)
    }
    fn count_tx_loopback(&mut self, packets: u64, bytes: u64) {
        (**self).count_tx_loopback(packets, bytes)
    }
    fn count_backlog_drop(&mut self) {
        (**self).count_backlog_drop()
    }
    fn on_timer(&mut self, now: u64) -> Effects {
        (**self).on_timer(now)
    }
    fn next_wakeup(&self) -> Option<u64> {
        (**self).next_wakeup()
    }
    fn set_link(&mut self, link: LinkStatus) -> Effects {
        (**self).set_link(link)
    }
    fn stats(&self) -> VfStats {
        (**self).stats()
    }
    fn dma_faults(&mut self) -> Option<&mut crate::function::faults::DmaFaults> {
        (**self).dma_faults()
    }
    fn dma_queues(&self) -> usize {
        (**self).dma_queues()
    }
    fn dma_fault_report(&self) -> Vec<crate::function::faults::DmaFaultState> {
        (**self).dma_fault_report()
    }
    fn raise_vf_mailbox(&mut self) -> Effects {
        (**self).raise_vf_mailbox()
    }
}

/// One hosted function as the runtime keeps it: the function, the frames waiting for its RX
/// ring, and where its interrupts go. Behind one lock; opaque outside the runtime.
pub struct Slot<F> {
    func: F,
    backlog: VecDeque<Pending>,
    irq: Option<Arc<dyn IrqSink>>,
    irqs_fired: u64,
    irqs_lost: u64,
    /// Injected interrupt and RX-hold faults.
    faults: SlotFaults,
    clock: Arc<dyn Clock>,
}

/// A function type the runtime hosts, and where it keeps the one behind a port: the VFs
/// ([`CardVf`], `PortId::Vf(n)`) and the PF function ([`DynFunction`], `PortId::Pf`).
pub trait Hosted: Function + Sized {
    /// The slot of the function behind `port`, if this NIC hosts one of this type there.
    fn slot(nic: &Nic, port: PortId) -> Option<&Mutex<Slot<Self>>>;
}

impl Hosted for CardVf {
    fn slot(nic: &Nic, port: PortId) -> Option<&Mutex<Slot<CardVf>>> {
        match port {
            PortId::Vf(v) => nic.slots.get(usize::from(v)),
            _ => None,
        }
    }
}

impl Hosted for DynFunction {
    fn slot(nic: &Nic, port: PortId) -> Option<&Mutex<Slot<DynFunction>>> {
        match port {
            PortId::Pf => nic.pf_fn.get(),
            _ => None,
        }
    }
}

/// What is left to do after a function's lock is released.
#[must_use]
#[derive(Default)]
struct Work {
    irq: Option<(Arc<dyn IrqSink>, Fire)>,
    frames: Vec<TxFrame>,
    /// When the function next needs its timer (a paused TX queue, a held interrupt).
    wakeup: Option<u64>,
}

impl<F: Function> Slot<F> {
    fn new(func: F, clock: Arc<dyn Clock>) -> Slot<F> {
        Slot {
            func,
            backlog: VecDeque::new(),
            irq: None,
            irqs_fired: 0,
            irqs_lost: 0,
            faults: SlotFaults::default(),
            clock,
        }
    }

    /// When the function or its faults next need the timer.
    fn next_wakeup(&self) -> Option<u64> {
        match (self.func.next_wakeup(), self.faults.next_wakeup()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The timer of the function and of its faults at `now`: what a delay held goes out, and
    /// the backlog an RX hold kept back goes into the ring.
    fn on_timer(&mut self, now: u64) -> Work {
        let effects = self.func.on_timer(now);
        let (released, hold_ended) = self.faults.on_timer(now);
        let mut work = self.settle(effects);
        if hold_ended {
            let fire = self.drain();
            let irq = self.signal(fire);
            work.irq = merge_irq(work.irq, irq);
        }
        let irq = self.signal_unfaulted(released);
        work.irq = merge_irq(work.irq, irq);
        work.wakeup = self.next_wakeup();
        work
    }

    /// Whether a client (a vfio-user connection, an in-process driver) is attached: it gave
    /// the function an interrupt sink ([`Handle::attach`]) and has not detached.
    fn attached(&self) -> bool {
        self.irq.is_some()
    }

    /// Takes a function's effects under the lock: drains the backlog when buffers were posted,
    /// and says what to do once the lock is released.
    fn settle(&mut self, effects: Effects) -> Work {
        let mut fire = effects.fire;
        if effects.rx_posted {
            fire = fire.union(self.drain());
        }
        Work {
            irq: self.signal(fire),
            frames: effects.frames,
            wakeup: self.next_wakeup(),
        }
    }

    /// Delivers the backlog, in order and as one batch, until the ring is full again. A frame
    /// the function refuses for another reason (detached, queue disabled) is dropped, counted
    /// by it.
    fn drain(&mut self) -> Fire {
        if self.backlog.is_empty()
            || (!self.faults.is_empty() && self.faults.rx_holding(self.clock.now_ns()))
        {
            return Fire::NONE;
        }
        let copies: Vec<RxCopy<'_>> = self
            .backlog
            .iter()
            .map(|p| RxCopy {
                frame: &p.frame,
                stripped_tci: p.stripped_tci,
                origin: p.origin,
                l4_checksum: p.l4_checksum,
            })
            .collect();
        let (taken, fire) = self.func.receive_batch(&copies);
        self.backlog.drain(..taken);
        fire
    }

    /// The sink and vectors to signal after the lock is released, after the interrupt faults;
    /// counts them.
    fn signal(&mut self, fire: Fire) -> Option<(Arc<dyn IrqSink>, Fire)> {
        if fire.is_empty() {
            return None;
        }
        let fire = if self.faults.is_empty() {
            fire
        } else {
            let (fire, lost) = self.faults.filter_irq(fire, self.clock.now_ns());
            // A message lost on the way counts as one the client never got.
            self.irqs_lost += lost;
            fire
        };
        self.signal_unfaulted(fire)
    }

    /// [`Slot::signal`] for vectors the faults already let through (a delay that ended).
    fn signal_unfaulted(&mut self, fire: Fire) -> Option<(Arc<dyn IrqSink>, Fire)> {
        if fire.is_empty() {
            return None;
        }
        let n = fire.vectors().count() as u64;
        match &self.irq {
            Some(sink) => {
                self.irqs_fired += n;
                Some((sink.clone(), fire))
            }
            None => {
                self.irqs_lost += n;
                None
            }
        }
    }
}

type Irq = Option<(Arc<dyn IrqSink>, Fire)>;

fn merge_irq(a: Irq, b: Irq) -> Irq {
    match (a, b) {
        (Some((sink, x)), Some((_, y))) => Some((sink, x.union(y))),
        (a, b) => a.or(b),
    }
}

/// One running NIC. See the module docs for the datapath and the lock order.
pub struct Nic {
    pf: Arc<SharedPf>,
    /// The guest's igb on the PF function manages the VFs ([`PfDriver::Guest`]): the PF
    /// function's VF-management registers are routed to the PF side.
    guest_pf: bool,
    slots: Vec<Mutex<Slot<CardVf>>>,
    /// The link speed a function reports when its link is up (the card's).
    link_speed_mbps: u32,
    /// The PF function, once hosted ([`Nic::host_pf`]): frames to `PortId::Pf` go to it
    /// while a client is attached.
    pf_fn: OnceLock<Mutex<Slot<DynFunction>>>,
    /// The switch's PF port as the host side had it (receive filters, VLAN stripping), kept
    /// while a client drives the PF function and its driver's filters stand there instead.
    pf_host_filters: Mutex<Option<(PfPolicy, bool)>>,
    sinks: RwLock<BTreeMap<PortId, Arc<dyn PortSink>>>,
    observer: RwLock<Option<Arc<dyn Observer>>>,
    unclaimed: Mutex<BTreeMap<PortId, u64>>,
    /// Faults carried out, by kind ([`NicCounters::faults`]).
    faults: Mutex<BTreeMap<&'static str, u64>>,
    /// Armed wire faults ([`Nic::arm_wire_fault`]).
    wire_faults: Mutex<WireFaults>,
    /// Whether any wire fault is armed or a frame is held: the datapath looks at the faults
    /// only then.
    wire_armed: AtomicBool,
    /// Link faults and the frames wire faults hold back.
    nic_faults: Mutex<NicFaults>,
    /// When the NIC's own faults next need the timer (a flap, a held frame, a delayed
    /// mailbox service; [`NO_DEADLINE`]: none).
    fault_deadline: AtomicU64,
    /// Per VF, then the PF function: when it next needs its timer — a paused TX queue, a
    /// held interrupt ([`NO_DEADLINE`]: none).
    deadlines: Vec<AtomicU64>,
    /// Wakes the timer thread when a deadline is set.
    timer_wake: (Mutex<u64>, Condvar),
}

impl std::fmt::Debug for Nic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nic")
            .field("vfs", &self.slots.len())
            .finish_non_exhaustive()
    }
}

impl Nic {
    /// A NIC with `config.num_vfs` VFs, its PF side and datapath wired, time from `clock`.
    pub fn new(config: &NicConfig, clock: Arc<dyn Clock>) -> Result<Arc<Nic>, NicBuildError> {
        let side = PfSide::new(config)?;
        let pf = Arc::new(SharedPf::new(side, clock.clone()));
        let n = config.num_vfs;
        let mut slots = Vec::with_capacity(usize::from(n));
        for i in 0..n {
            let port: Arc<dyn crate::seams::PfPort> = pf.clone();
            slots.push(Mutex::new(Slot::new(
                CardVf::new(config.card, i, port, clock.clone())?,
                clock.clone(),
            )));
        }
        let nic = Nic {
            pf,
            guest_pf: config.pf_driver == PfDriver::Guest,
            slots,
            link_speed_mbps: config.link_speed_mbps,
            pf_fn: OnceLock::new(),
            pf_host_filters: Mutex::new(None),
            sinks: RwLock::new(BTreeMap::new()),
            observer: RwLock::new(None),
            unclaimed: Mutex::new(BTreeMap::new()),
            faults: Mutex::new(BTreeMap::new()),
            wire_faults: Mutex::new(WireFaults::default()),
            wire_armed: AtomicBool::new(false),
            nic_faults: Mutex::new(NicFaults::default()),
            fault_deadline: AtomicU64::new(NO_DEADLINE),
            deadlines: (0..=n).map(|_| AtomicU64::new(NO_DEADLINE)).collect(),
            timer_wake: (Mutex::new(0), Condvar::new()),
        };
        for v in 0..n {
            nic.sync_vf_link(v);
        }
        Ok(Arc::new(nic))
    }

    pub fn num_vfs(&self) -> u16 {
        self.slots.len() as u16
    }

    /// Who plays the VFs' PF driver on this port.
    pub fn pf_driver(&self) -> PfDriver {
        if self.guest_pf {
            PfDriver::Guest
        } else {
            PfDriver::Embedded
        }
    }

    /// VF `vf`, as its bus (a vfio-user connection, an in-process driver) reaches it.
    pub fn vf(self: &Arc<Self>, vf: u16) -> Option<VfHandle> {
        (usize::from(vf) < self.slots.len()).then(|| Handle::new(self.clone(), PortId::Vf(vf)))
    }

    /// Hosts `pf` as the PF function: from now on, while a client is attached to it, frames
    /// the switch sends to the PF port go into its RX rings (not to a [`PortSink`]), what it
    /// transmits enters the switch at the PF port, and the port's receive filters are its
    /// driver's. Without a client the PF port stays the sink's, with the host side's filters.
    /// Once per NIC; `None` if a PF function is hosted already.
    pub fn host_pf(self: &Arc<Self>, pf: DynFunction) -> Option<PfHandle> {
        if self.pf_fn.get().is_some() {
            return None;
        }
        let mut pf = pf;
        let _ = pf.set_link(self.link_status(PortId::Pf));
        let clock = self.pf.clock();
        self.pf_fn.set(Mutex::new(Slot::new(pf, clock))).ok()?;
        Some(Handle::new(self.clone(), PortId::Pf))
    }

    /// The PF function, if one is hosted.
    pub fn pf(self: &Arc<Self>) -> Option<PfHandle> {
        self.pf_fn
            .get()
            .map(|_| Handle::new(self.clone(), PortId::Pf))
    }

    /// The PF side as the PF function reaches it (its filters feed the switch's PF port).
    pub fn shared_pf(&self) -> Arc<SharedPf> {
        self.pf.clone()
    }

    /// The current time of the NIC's clock.
    pub fn now(&self) -> u64 {
        self.pf.now()
    }

    /// Which card the NIC is.
    pub fn card(&self) -> Card {
        self.pf.side().card()
    }

    /// Runs `f` with the PF side locked (inspection: counters, policies, refusals). Do not
    /// call back into the NIC from `f`.
    pub fn with_pf<R>(&self, f: impl FnOnce(&mut PfSide) -> R) -> R {
        f(&mut self.pf.side())
    }

    /// Runs `f` on VF `vf`'s function, locked (inspection and tests). Effects of what `f`
    /// does are not carried out: drive the function through its [`VfHandle`] instead.
    pub fn with_vf<R>(&self, vf: u16, f: impl FnOnce(&CardVf) -> R) -> Option<R> {
        self.slots.get(usize::from(vf)).map(|s| f(&lock(s).func))
    }

    /// Where frames for the PF or an uplink go (`None`: counted as unclaimed and dropped).
    pub fn set_port_sink(&self, port: PortId, sink: Option<Arc<dyn PortSink>>) {
        let mut sinks = self.sinks.write().unwrap_or_else(|e| e.into_inner());
        match sink {
            Some(s) => sinks.insert(port, s),
            None => sinks.remove(&port),
        };
    }

    /// Who sees every switched frame (pcap capture, a scenario's event log); `None` removes it.
    pub fn set_observer(&self, observer: Option<Arc<dyn Observer>>) {
        *self.observer.write().unwrap_or_else(|e| e.into_inner()) = observer;
    }

    /// A frame arriving from the PF or an uplink (no shaping: only VFs are rate-limited).
    pub fn inject(&self, ingress: PortId, frame: Bytes) {
        // Nothing is known of its checksums; as a TX frame it goes past the TX faults without
        // a second list made to carry that.
        self.switch_tx(ingress, vec![frame.into()]);
    }

    /// `ip link set PF vf N ...`: all or nothing. A changed MAC or port VLAN pings the VF
    /// through its mailbox; the VF's link follows its `state`.
    pub fn configure_vf(&self, vf: u16, settings: &[VfSetting]) -> Result<(), AdminError> {
        let irq = self.pf.side().configure_vf(vf, settings)?;
        info!(vf, ?settings, "VF configured");
        // The link first: a pinged igbvf reads it as soon as its interrupt fires.
        self.sync_vf_link(vf);
        if irq == crate::seams::MailboxIrq::Raise {
            self.mailbox_interrupt(vf);
        }
        Ok(())
    }

    /// [`Nic::configure_vf`] from the words of `ip link set PF vf N ...` (`sriov-emu ctl`).
    pub fn configure_vf_words(&self, vf: u16, words: &[&str]) -> Result<(), SetError> {
        if self.guest_pf {
            return Err(AdminError::GuestManaged { vf }.into());
        }
        let settings = VfSetting::parse_words(words)?;
        Ok(self.configure_vf(vf, &settings)?)
    }

    /// A client is about to drive the PF function: keep the PF port's filters for its return.
    fn pf_client_attaching(&self) {
        let side = self.pf.side();
        let sw = side.switch();
        let host = (
            sw.pf_policy().clone(),
            sw.rx_vlan_strip(PortId::Pf).unwrap_or(false),
        );
        lock(&self.pf_host_filters).get_or_insert(host);
    }

    /// The PF function's client went away: the PF port's filters are the host side's again.
    fn pf_client_detached(&self) {
        let Some((policy, strip)) = lock(&self.pf_host_filters).take() else {
            return;
        };
        let mut side = self.pf.side();
        let sw = side.switch_mut();
        if let Err(e) = sw.set_pf_policy(policy) {
            warn!(error = %e, "the PF port's own filters refused by the switch");
        }
        let _ = sw.set_rx_vlan_strip(PortId::Pf, strip);
    }

    /// The PF's link went up or down: every VF is pinged and its link follows.
    pub fn set_link(&self, up: bool) {
        let pinged = self.pf.side().set_link(up);
        for v in 0..self.num_vfs() {
            self.sync_vf_link(v);
        }
        self.sync_pf_link();
        for v in pinged {
            self.mailbox_interrupt(v);
        }
    }

    /// The datapath's own counters.
    pub fn counters(&self) -> NicCounters {
        NicCounters {
            unclaimed: lock(&self.unclaimed)
                .iter()
                .map(|(p, n)| (p.to_string(), *n))
                .collect(),
            backlog: self
                .slots
                .iter()
                .enumerate()
                .map(|(i, s)| (i as u16, lock(s).backlog.len()))
                .collect(),
            pf_backlog: self.pf_fn.get().map(|s| lock(s).backlog.len()),
            faults: lock(&self.faults).clone(),
        }
    }

    /// The ports of the port's switch (uplinks, PF, VFs).
    pub fn ports(&self) -> Vec<PortId> {
        self.pf.side().switch().ports().collect()
    }

    // ----- per function, under its lock -----

    /// Runs `f` on the slot of the function behind `port` and carries out what is left once
    /// the lock is released. `None`: no function of type `F` there.
    fn with_slot<F: Hosted, R>(
        &self,
        port: PortId,
        f: impl FnOnce(&mut Slot<F>) -> (R, Work),
    ) -> Option<R> {
        let slot = F::slot(self, port)?;
        let (r, work) = {
            let mut s = lock(slot);
            f(&mut s)
        };
        self.finish(port, work);
        Some(r)
    }

    /// Signals, switches and schedules what a function's access left to do, with no lock held.
    fn finish(&self, port: PortId, work: Work) {
        if self.pf.take_mailbox_delayed() {
            self.reschedule_faults();
        }
        if self.guest_pf {
            self.raise_guest_vmmb();
        }
        if let Some((sink, fire)) = work.irq {
            for v in fire.vectors() {
                sink.fire(v);
            }
        }
        if let Some(t) = work.wakeup {
            self.set_deadline(port, t);
        }
        if !work.frames.is_empty() {
            self.switch_tx(port, work.frames);
        }
    }

    /// The link the function behind `port` reports: a VF's is its switch port's (link state,
    /// the NIC's link); the PF's is the wire's.
    fn link_status(&self, port: PortId) -> LinkStatus {
        let up = {
            let side = self.pf.side();
            match port {
                PortId::Pf => {
                    side.switch().link_up() && side.switch().port_carrier(port).unwrap_or(true)
                }
                _ => side.switch().port_up(port).unwrap_or(false),
            }
        };
        if up {
            LinkStatus {
                up: true,
                speed_mbps: self.link_speed_mbps,
                full_duplex: true,
            }
        } else {
            LinkStatus::DOWN
        }
    }

    fn mailbox_interrupt(&self, vf: u16) {
        let _ = self.with_slot(PortId::Vf(vf), |s: &mut Slot<CardVf>| {
            let fire = s.func.mailbox_interrupt();
            (
                (),
                Work {
                    irq: s.signal(fire),
                    wakeup: s.faults.next_wakeup(),
                    ..Work::default()
                },
            )
        });
    }

    /// Makes the hosted PF function's link follow the wire and its port's carrier.
    fn sync_pf_link(&self) {
        if let Some(slot) = self.pf_fn.get() {
            let link = self.link_status(PortId::Pf);
            self.finish(PortId::Pf, {
                let mut s = lock(slot);
                let effects = s.func.set_link(link);
                s.settle(effects)
            });
        }
    }

    /// Makes VTSTATUS of VF `vf` follow its switch port (link state, PF link).
    fn sync_vf_link(&self, vf: u16) {
        let link = self.link_status(PortId::Vf(vf));
        if let Some(slot) = self.slots.get(usize::from(vf)) {
            // A VF learns of link changes through its mailbox, not an interrupt cause.
            lock(slot).func.set_link(link);
        } else {
            warn!(vf, "link change for a VF this NIC does not have");
        }
    }
}
