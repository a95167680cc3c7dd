//! The NIC runtime: the one datapath that `serve`, the scenario runner and the tests all drive.
//! A [`Nic`] owns the PF side ([`PfSide`]: eswitch, PF agent, every VF's mailbox) behind one
//! lock, each VF function behind a lock of its own, the bounded RX backlogs, the shaping
//! deadlines and the sinks and observer at its edges. It has no sockets and no threads of its
//! own: a vfio-user connection (or an in-process driver) reaches VF n through its
//! [`VfHandle`], and whoever owns the NIC drives the shaping timer ([`Nic::poll`] on an
//! injected clock, or [`Nic::spawn_timer`] in real time).
//!
//! # The datapath
//! A guest writes TDT → [`VfHandle::region_write`] runs the VF's TX engine under the VF's lock;
//! each frame is admitted by the switch's shaper as the engine takes it (a rate-limited VF's
//! queue pauses, with the frame not consumed, until the time the shaper names) → with the VF's
//! lock released, [`Eswitch::process`](eswitch::Eswitch::process) switches the frames → each
//! delivery goes:
//! - to a VF: into its RX ring ([`Vf::receive`]); on a full ring the frame waits in that VF's
//!   bounded backlog ([`BACKLOG_FRAMES`]), drained in order when its driver posts buffers;
//!   beyond it the frame is dropped and counted as
//!   [`DropReason::RxFull`](eswitch::DropReason::RxFull) on the port and `backlog_overflow` in the
//!   VF's counters;
//! - to the PF or an uplink: the [`PortSink`] registered for that port, or, without one,
//!   counted in [`NicCounters::unclaimed`] and dropped;
//!
//! and the [`Observer`], if any, sees the frame, its copies and its drops.
//!
//! # Locks
//! Order: a VF's lock → the PF side's lock. The PF side's lock is never held while a VF's is
//! taken; no VF's lock is held while another's is taken; and no lock of the NIC is held while
//! an interrupt is signalled ([`IrqSink`]), a sink or the observer is called. So one VF's
//! guest can hold up another only for the length of one of its own register accesses.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};

use bytes::Bytes;
use eswitch::{PortId, VfSetting};
use tracing::{info, warn};

use crate::function::i82576::Vf;
use crate::function::LinkStatus;
use crate::function::{Effects, Fire};
use crate::seams::{Clock, IrqSink, Observer, PortSink};

mod datapath;
mod handle;
pub mod pf;
mod timer;

#[cfg(test)]
mod tests;

pub use handle::VfHandle;
pub use pf::{AdminError, MacMode, NicConfig, NicError, PfCounters, PfSide, SetError, SharedPf};
pub use timer::TimerHandle;

/// Frames one VF's backlog holds while its RX ring is full.
pub const BACKLOG_FRAMES: usize = 256;

/// Counters of the NIC's own datapath (the switch and the VFs count the rest).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct NicCounters {
    /// Frames delivered to a PF or uplink port that has no [`PortSink`] (dropped).
    pub unclaimed: BTreeMap<String, u64>,
    /// Frames waiting in each VF's backlog now.
    pub backlog: BTreeMap<u16, usize>,
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

/// A frame waiting for room in a VF's RX ring.
struct Pending {
    frame: Bytes,
    stripped_tci: Option<u16>,
}

/// One VF as the runtime keeps it: the function, the frames waiting for its RX ring, and where
/// its interrupts go. Behind one lock.
struct Slot {
    vf: Vf,
    backlog: VecDeque<Pending>,
    irq: Option<Arc<dyn IrqSink>>,
    irqs_fired: u64,
    irqs_lost: u64,
}

/// What is left to do after a VF's lock is released.
#[must_use]
#[derive(Default)]
struct Work {
    irq: Option<(Arc<dyn IrqSink>, Fire)>,
    frames: Vec<Bytes>,
    /// When the VF next needs its timer (a paused TX queue, a held interrupt).
    wakeup: Option<u64>,
}

impl Slot {
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
            wakeup: self.vf.next_wakeup(),
        }
    }

    /// Delivers the backlog, in order, until the ring is full again. A frame the VF refuses
    /// for another reason (detached, queue disabled) is dropped, counted by the VF.
    fn drain(&mut self) -> Fire {
        let mut fire = Fire::NONE;
        while let Some(p) = self.backlog.front() {
            let (result, f) = self.vf.receive(&p.frame, p.stripped_tci);
            fire = fire.union(f);
            if result == Err(crate::function::stats::RxDrop::RingFull) {
                break;
            }
            self.backlog.pop_front();
        }
        fire
    }

    /// The sink and vectors to signal after the lock is released; counts them.
    fn signal(&mut self, fire: Fire) -> Option<(Arc<dyn IrqSink>, Fire)> {
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

/// One running NIC. See the module docs for the datapath and the lock order.
pub struct Nic {
    pf: Arc<SharedPf>,
    slots: Vec<Mutex<Slot>>,
    sinks: RwLock<BTreeMap<PortId, Arc<dyn PortSink>>>,
    observer: RwLock<Option<Arc<dyn Observer>>>,
    unclaimed: Mutex<BTreeMap<PortId, u64>>,
    /// Per VF: when it next needs its timer — a paused TX queue, a held interrupt
    /// ([`NO_DEADLINE`]: none).
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
            slots.push(Mutex::new(Slot {
                vf: Vf::new(i, port, clock.clone())?,
                backlog: VecDeque::new(),
                irq: None,
                irqs_fired: 0,
                irqs_lost: 0,
            }));
        }
        let nic = Nic {
            pf,
            slots,
            sinks: RwLock::new(BTreeMap::new()),
            observer: RwLock::new(None),
            unclaimed: Mutex::new(BTreeMap::new()),
            deadlines: (0..n).map(|_| AtomicU64::new(NO_DEADLINE)).collect(),
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

    /// VF `vf`, as its bus (a vfio-user connection, an in-process driver) reaches it.
    pub fn vf(self: &Arc<Self>, vf: u16) -> Option<VfHandle> {
        (usize::from(vf) < self.slots.len()).then(|| VfHandle::new(self.clone(), vf))
    }

    /// The current time of the NIC's clock.
    pub fn now(&self) -> u64 {
        self.pf.now()
    }

    /// Runs `f` with the PF side locked (inspection: counters, policies, refusals). Do not
    /// call back into the NIC from `f`.
    pub fn with_pf<R>(&self, f: impl FnOnce(&mut PfSide) -> R) -> R {
        f(&mut self.pf.side())
    }

    /// Runs `f` on VF `vf`'s function, locked (inspection and tests). Effects of what `f`
    /// does are not carried out: drive the function through its [`VfHandle`] instead.
    pub fn with_vf<R>(&self, vf: u16, f: impl FnOnce(&Vf) -> R) -> Option<R> {
        self.slots.get(usize::from(vf)).map(|s| f(&lock(s).vf))
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
        self.switch_frames(ingress, vec![frame]);
    }

    /// `ip link set PF vf N ...`: all or nothing. A changed MAC or port VLAN pings the VF
    /// through its mailbox; the VF's link follows its `state`.
    pub fn configure_vf(&self, vf: u16, settings: &[VfSetting]) -> Result<(), AdminError> {
        let irq = self.pf.side().configure_vf(vf, settings)?;
        info!(vf, ?settings, "VF configured");
        if irq == crate::seams::MailboxIrq::Raise {
            self.mailbox_interrupt(vf);
        }
        self.sync_vf_link(vf);
        Ok(())
    }

    /// [`Nic::configure_vf`] from the words of `ip link set PF vf N ...` (`sriov-emu ctl`).
    pub fn configure_vf_words(&self, vf: u16, words: &[&str]) -> Result<(), SetError> {
        let settings = VfSetting::parse_words(words)?;
        Ok(self.configure_vf(vf, &settings)?)
    }

    /// The PF's link went up or down: every VF is pinged and its link follows.
    pub fn set_link(&self, up: bool) {
        let pinged = self.pf.side().set_link(up);
        for v in 0..self.num_vfs() {
            self.sync_vf_link(v);
        }
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
        }
    }

    // ----- per VF, under its lock -----

    /// Runs `f` on VF `vf`'s slot and carries out what is left once the lock is released.
    fn with_slot<R>(&self, vf: u16, f: impl FnOnce(&mut Slot) -> (R, Work)) -> Option<R> {
        let slot = self.slots.get(usize::from(vf))?;
        let (r, work) = {
            let mut s = lock(slot);
            f(&mut s)
        };
        self.finish(vf, work);
        Some(r)
    }

    /// Signals, switches and schedules what a VF's access left to do, with no lock held.
    fn finish(&self, vf: u16, work: Work) {
        if let Some((sink, fire)) = work.irq {
            for v in fire.vectors() {
                sink.fire(v);
            }
        }
        if let Some(t) = work.wakeup {
            self.set_deadline(vf, t);
        }
        if !work.frames.is_empty() {
            self.switch_frames(PortId::Vf(vf), work.frames);
        }
    }

    fn mailbox_interrupt(&self, vf: u16) {
        let _ = self.with_slot(vf, |s| {
            let fire = s.vf.mailbox_interrupt();
            (
                (),
                Work {
                    irq: s.signal(fire),
                    ..Work::default()
                },
            )
        });
    }

    /// Makes VTSTATUS of VF `vf` follow its switch port (link state, PF link).
    fn sync_vf_link(&self, vf: u16) {
        let up = self
            .pf
            .side()
            .switch()
            .port_up(PortId::Vf(vf))
            .unwrap_or(false);
        if let Some(slot) = self.slots.get(usize::from(vf)) {
            lock(slot).vf.set_link(if up {
                LinkStatus::UP_1000_FD
            } else {
                LinkStatus::DOWN
            });
        } else {
            warn!(vf, "link change for a VF this NIC does not have");
        }
    }
}
