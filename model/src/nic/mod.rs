//! The running NIC: the PF side ([`PfSide`]: eswitch, PF agent, mailboxes) behind one lock,
//! one [`Vf`] function per VF, and the datapath between them. No sockets and no threads of its
//! own: the vfio-user adapter in `src/` hands each [`Vf`] to its connection thread, and whoever
//! owns the NIC drives the shaping timer ([`Nic::next_wakeup`] + [`Nic::poll`], or
//! [`Nic::spawn_timer`] with a real clock).
//!
//! # The datapath
//! A guest writes TDT → the VF's TX engine (on that VF's connection thread) hands each frame
//! to its sink → [`Eswitch::tx_admit`](eswitch::Eswitch::tx_admit) (a rate-limited VF whose
//! shaper says "not yet" gets [`TxVerdict::Defer`]: the queue pauses and the timer resumes it)
//! → [`Eswitch::process`](eswitch::Eswitch::process) → for each delivery, with the PF-side
//! lock released:
//! - to a VF: [`VfShared::receive`] into its RX ring; on [`RxDrop::RingFull`] the frame waits
//!   in that VF's bounded backlog ([`BACKLOG_FRAMES`]), drained in order when that VF's guest
//!   posts buffers (writes RDT); beyond it the frame is dropped and counted as
//!   [`DropReason::RxFull`] on the port and `backlog_overflow` in the VF's counters;
//! - to the PF or an uplink: the [`PortSink`] registered for that port, or, without one,
//!   counted in [`NicCounters::unclaimed`] and dropped.
//!
//! # Locks
//! Order: `Vf` (one function's mutex, the TX state of A) → `PfSide` → (released) → backlog of
//! B → `rx` of B → `intr` of B. The PF-side lock is never held while writing into a VF's RX
//! ring or calling a sink; no VF mutex is taken by the datapath of another VF (only its
//! [`VfShared`]), so one VF's connection can never block on another's. The admin path takes
//! the PF-side lock alone, then raises mailbox interrupts after releasing it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use eswitch::{Delivery, DropReason, NextSendAt, PortId, VfSetting};
use tracing::{debug, info, warn};

use crate::pf::{AdminError, MailboxIrq, NicConfig, NicError, PfSide, SharedPf};
use crate::stats::RxDrop;
use crate::tx::TxVerdict;
use crate::vf::{LinkState, PfPort, Vf, VfShared};

/// Frames one VF's backlog holds while its RX ring is full.
pub const BACKLOG_FRAMES: usize = 256;

/// The NIC's clock: monotonic nanoseconds. Injected so that scenarios can simulate time.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// A monotonic real-time clock (nanoseconds since it was made).
pub fn monotonic_clock() -> Clock {
    let start = Instant::now();
    Arc::new(move || u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX))
}

/// Where frames the switch delivers to the PF or an uplink go. Called with no NIC lock held,
/// on the thread of the sending function.
pub trait PortSink: Send + Sync {
    fn deliver(&self, delivery: &Delivery);
}

impl<F: Fn(&Delivery) + Send + Sync> PortSink for F {
    fn deliver(&self, delivery: &Delivery) {
        self(delivery)
    }
}

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

/// Everything the VFs' sinks and hooks need (no `Vf` inside: no reference cycle).
struct Datapath {
    pf: Arc<SharedPf>,
    shared: Vec<Arc<VfShared>>,
    backlogs: Vec<Mutex<VecDeque<Pending>>>,
    sinks: RwLock<BTreeMap<PortId, Arc<dyn PortSink>>>,
    unclaimed: Mutex<BTreeMap<PortId, u64>>,
    /// Per VF: the earliest deadline of a paused TX queue ([`NO_DEADLINE`]: none).
    deadlines: Vec<AtomicU64>,
    /// Wakes the timer thread when a deadline is set.
    timer_wake: (Mutex<u64>, Condvar),
}

impl Datapath {
    /// VF `from`'s TX sink: shape, switch, deliver.
    fn transmit(&self, from: u16, frame: Bytes) -> TxVerdict {
        let now = self.pf.now();
        let out = {
            let mut side = self.pf.side();
            if let Err(NextSendAt(until_ns)) = side.switch_mut().tx_admit(from, now, frame.len()) {
                drop(side);
                self.set_deadline(from, until_ns);
                return TxVerdict::Defer { until_ns };
            }
            side.switch_mut().process(PortId::Vf(from), frame)
        };
        for d in out.deliveries {
            self.deliver(d);
        }
        TxVerdict::Sent
    }

    fn deliver(&self, d: Delivery) {
        match d.port {
            PortId::Vf(v) => self.deliver_to_vf(v, d.frame, d.stripped_tci.map(|t| t.0)),
            port => {
                let sink = self
                    .sinks
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&port)
                    .cloned();
                match sink {
                    Some(s) => s.deliver(&d),
                    None => *lock(&self.unclaimed).entry(port).or_default() += 1,
                }
            }
        }
    }

    fn deliver_to_vf(&self, v: u16, frame: Bytes, stripped_tci: Option<u16>) {
        let (Some(dst), Some(backlog)) = (
            self.shared.get(usize::from(v)),
            self.backlogs.get(usize::from(v)),
        ) else {
            warn!(vf = v, "delivery to a VF this NIC does not have");
            return;
        };
        let overflow = {
            let mut q = lock(backlog);
            if q.is_empty() {
                match dst.receive(&frame, stripped_tci) {
                    // Delivered, or dropped and counted by the VF (not attached, queue off...).
                    Ok(()) => return,
                    Err(RxDrop::RingFull) => {}
                    Err(_) => return,
                }
            }
            if q.len() < BACKLOG_FRAMES {
                q.push_back(Pending {
                    frame,
                    stripped_tci,
                });
                false
            } else {
                true
            }
        };
        if overflow {
            dst.count_backlog_drop();
            let _ = self
                .pf
                .side()
                .switch_mut()
                .count_drop(PortId::Vf(v), DropReason::RxFull);
            debug!(vf = v, "RX ring and backlog full: frame dropped (rx_full)");
        }
    }

    /// Delivers VF `v`'s backlog, in order, until its ring is full again. A frame the VF
    /// refuses for another reason (detached, queue disabled) is dropped, counted by the VF.
    fn drain(&self, v: u16) {
        let (Some(dst), Some(backlog)) = (
            self.shared.get(usize::from(v)),
            self.backlogs.get(usize::from(v)),
        ) else {
            return;
        };
        let mut q = lock(backlog);
        while let Some(p) = q.front() {
            match dst.receive(&p.frame, p.stripped_tci) {
                Err(RxDrop::RingFull) => break,
                Ok(()) | Err(_) => {
                    q.pop_front();
                }
            }
        }
    }

    fn set_deadline(&self, vf: u16, until_ns: u64) {
        if let Some(d) = self.deadlines.get(usize::from(vf)) {
            d.fetch_min(until_ns, Ordering::AcqRel);
        }
        let (m, cv) = &self.timer_wake;
        *lock(m) += 1;
        cv.notify_all();
    }

    /// Makes VTSTATUS of VF `v` follow its switch port (link state, PF link).
    fn sync_link(&self, v: u16, up: bool) {
        if let Some(s) = self.shared.get(usize::from(v)) {
            s.set_link(if up {
                LinkState::UP_1000_FD
            } else {
                LinkState::DOWN
            });
        }
    }
}

/// One running NIC. See the module docs for the datapath and the lock order.
pub struct Nic {
    dp: Arc<Datapath>,
    vfs: Vec<Arc<Mutex<Vf>>>,
}

impl std::fmt::Debug for Nic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nic")
            .field("vfs", &self.vfs.len())
            .finish_non_exhaustive()
    }
}

impl Nic {
    /// A NIC with `config.num_vfs` VFs, its PF side and datapath wired, time from `clock`.
    pub fn new(config: &NicConfig, clock: Clock) -> Result<Arc<Nic>, NicBuildError> {
        let side = PfSide::new(config)?;
        let pf = Arc::new(SharedPf::new(side, clock));
        let n = config.num_vfs;
        let mut vfs = Vec::with_capacity(usize::from(n));
        for i in 0..n {
            let port: Arc<dyn PfPort> = pf.clone();
            vfs.push(Vf::new(i, port)?);
        }
        let dp = Arc::new(Datapath {
            pf,
            shared: vfs.iter().map(|v| v.shared()).collect(),
            backlogs: (0..n).map(|_| Mutex::new(VecDeque::new())).collect(),
            sinks: RwLock::new(BTreeMap::new()),
            unclaimed: Mutex::new(BTreeMap::new()),
            deadlines: (0..n).map(|_| AtomicU64::new(NO_DEADLINE)).collect(),
            timer_wake: (Mutex::new(0), Condvar::new()),
        });
        for vf in &mut vfs {
            let me = vf.id();
            let d = dp.clone();
            vf.set_tx_sink(Box::new(move |frame| d.transmit(me, frame)));
            let d = dp.clone();
            vf.set_rx_posted_hook(Arc::new(move |v| d.drain(v)));
        }
        let nic = Nic {
            dp,
            vfs: vfs.into_iter().map(|v| Arc::new(Mutex::new(v))).collect(),
        };
        for v in 0..n {
            nic.sync_vf_link(v);
        }
        Ok(Arc::new(nic))
    }

    pub fn num_vfs(&self) -> u16 {
        self.vfs.len() as u16
    }

    /// VF `vf`'s function, for its connection thread (lock it for every access; the timer
    /// locks it to resume a paused TX queue).
    pub fn vf(&self, vf: u16) -> Option<Arc<Mutex<Vf>>> {
        self.vfs.get(usize::from(vf)).cloned()
    }

    /// VF `vf`'s shared part (RX, interrupts, counters).
    pub fn vf_shared(&self, vf: u16) -> Option<Arc<VfShared>> {
        self.dp.shared.get(usize::from(vf)).cloned()
    }

    /// The current time of the NIC's clock.
    pub fn now(&self) -> u64 {
        self.dp.pf.now()
    }

    /// Runs `f` with the PF side locked (inspection: counters, policies, refusals). Do not
    /// call back into the NIC from `f`.
    pub fn with_pf<R>(&self, f: impl FnOnce(&mut PfSide) -> R) -> R {
        f(&mut self.dp.pf.side())
    }

    /// Where frames for the PF or an uplink go (`None`: counted as unclaimed and dropped).
    pub fn set_port_sink(&self, port: PortId, sink: Option<Arc<dyn PortSink>>) {
        let mut sinks = self.dp.sinks.write().unwrap_or_else(|e| e.into_inner());
        match sink {
            Some(s) => sinks.insert(port, s),
            None => sinks.remove(&port),
        };
    }

    /// A frame arriving from the PF or an uplink (no shaping: only VFs are rate-limited).
    pub fn inject(&self, ingress: PortId, frame: Bytes) {
        let now = self.now();
        let out = {
            let mut side = self.dp.pf.side();
            side.switch_mut().set_time(now);
            side.switch_mut().process(ingress, frame)
        };
        for d in out.deliveries {
            self.dp.deliver(d);
        }
    }

    /// `ip link set PF vf N ...`: all or nothing. A changed MAC or port VLAN pings the VF
    /// through its mailbox; the VF's link follows its `state`.
    pub fn configure_vf(&self, vf: u16, settings: &[VfSetting]) -> Result<(), AdminError> {
        let irq = self.dp.pf.side().configure_vf(vf, settings)?;
        info!(vf, ?settings, "VF configured");
        if irq == MailboxIrq::Raise {
            if let Some(s) = self.dp.shared.get(usize::from(vf)) {
                s.mailbox_interrupt();
            }
        }
        self.sync_vf_link(vf);
        Ok(())
    }

    /// The PF's link went up or down: every VF is pinged and its link follows.
    pub fn set_link(&self, up: bool) {
        let pinged = self.dp.pf.side().set_link(up);
        for v in 0..self.num_vfs() {
            self.sync_vf_link(v);
        }
        for v in pinged {
            if let Some(s) = self.dp.shared.get(usize::from(v)) {
                s.mailbox_interrupt();
            }
        }
    }

    fn sync_vf_link(&self, vf: u16) {
        let up = self
            .dp
            .pf
            .side()
            .switch()
            .port_up(PortId::Vf(vf))
            .unwrap_or(false);
        self.dp.sync_link(vf, up);
    }

    /// Retries VF `vf`'s backlog (the posted-buffers hook does this on every RDT write; the
    /// adapter also calls it when a client goes away, so that waiting frames are counted as
    /// `not_attached` instead of reaching the next guest).
    pub fn drain_backlog(&self, vf: u16) {
        self.dp.drain(vf);
    }

    /// The datapath's own counters.
    pub fn counters(&self) -> NicCounters {
        NicCounters {
            unclaimed: lock(&self.dp.unclaimed)
                .iter()
                .map(|(p, n)| (p.to_string(), *n))
                .collect(),
            backlog: self
                .dp
                .backlogs
                .iter()
                .enumerate()
                .map(|(i, q)| (i as u16, lock(q).len()))
                .collect(),
        }
    }

    // ----- the shaping timer -----

    /// The earliest time (on the NIC's clock) a paused TX queue wants to resume.
    pub fn next_wakeup(&self) -> Option<u64> {
        self.dp
            .deadlines
            .iter()
            .map(|d| d.load(Ordering::Acquire))
            .filter(|&d| d != NO_DEADLINE)
            .min()
    }

    /// Resumes every paused TX queue whose deadline is at or before `now`. Returns the next
    /// deadline. Locks each due VF's function (briefly contending with its connection thread).
    pub fn poll(&self, now: u64) -> Option<u64> {
        for (i, d) in self.dp.deadlines.iter().enumerate() {
            let due = d.load(Ordering::Acquire);
            if due == NO_DEADLINE || due > now {
                continue;
            }
            // Claim it; a new Defer during the resume sets it again.
            if d.compare_exchange(due, NO_DEADLINE, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                continue;
            }
            let mut vf = lock(&self.vfs[i]);
            let _ = vf.tx_resume();
            if let Some(t) = vf.tx_paused_until() {
                d.fetch_min(t, Ordering::AcqRel);
            }
        }
        self.next_wakeup()
    }

    /// A thread that runs [`Nic::poll`] at each deadline. Only for a clock that advances at
    /// real time ([`monotonic_clock`]); scenarios with a simulated clock call `poll` themselves.
    pub fn spawn_timer(self: &Arc<Self>) -> std::io::Result<TimerHandle> {
        self.spawn_timer_with(|| {})
    }

    /// [`Nic::spawn_timer`], running `on_start` on the timer thread first (the binary raises
    /// the thread's scheduling priority there: a late wakeup beyond the shaper's burst window
    /// is bandwidth a shaped VF never gets back).
    pub fn spawn_timer_with(
        self: &Arc<Self>,
        on_start: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<TimerHandle> {
        let stop = Arc::new(AtomicBool::new(false));
        let (nic, st) = (self.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("nic-timer".into())
            .spawn(move || {
                on_start();
                nic.timer_loop(&st)
            })?;
        Ok(TimerHandle {
            stop,
            nic: self.clone(),
            thread: Some(thread),
        })
    }

    fn timer_loop(&self, stop: &AtomicBool) {
        const IDLE: Duration = Duration::from_millis(100);
        let (m, cv) = &self.dp.timer_wake;
        let mut seen = *lock(m);
        while !stop.load(Ordering::Acquire) {
            let next = self.poll(self.now());
            let wait = match next {
                Some(t) => Duration::from_nanos(t.saturating_sub(self.now())).min(IDLE),
                None => IDLE,
            };
            if wait.is_zero() {
                continue;
            }
            let g = lock(m);
            if *g != seen {
                seen = *g;
                continue;
            }
            let (g, _) = cv.wait_timeout(g, wait).unwrap_or_else(|e| e.into_inner());
            seen = *g;
        }
    }
}

/// Stops the timer thread when dropped.
pub struct TimerHandle {
    stop: Arc<AtomicBool>,
    nic: Arc<Nic>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for TimerHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let (m, cv) = &self.nic.dp.timer_wake;
        *lock(m) += 1;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{DriverConfig, IrqLog, SoftIgbvf, XmitOpts};
    use eswitch::MacAddr;
    use mailbox::MacAssignment;
    use vm_memory::{GuestAddress, GuestMemoryAtomic, GuestMemoryMmap};

    const BASE: u64 = 0x10_0000;
    const SIZE: usize = 0x40_0000;

    struct Node {
        vf: Arc<Mutex<Vf>>,
        drv: SoftIgbvf,
        irqs: Arc<IrqLog>,
    }

    struct Rig {
        nic: Arc<Nic>,
        now: Arc<AtomicU64>,
        nodes: Vec<Node>,
    }

    fn rig(n: u16, cfgs: &[DriverConfig]) -> Rig {
        let now = Arc::new(AtomicU64::new(1_000_000_000));
        let t = now.clone();
        let config = NicConfig {
            num_vfs: n,
            mac_assignment: MacAssignment::Generated {
                seed: [0x52, 0x54, 0x00],
            },
            ..NicConfig::default()
        };
        let nic = Nic::new(&config, Arc::new(move || t.load(Ordering::Relaxed))).unwrap();
        let nodes = (0..n)
            .map(|i| {
                let cfg = cfgs.get(usize::from(i)).copied().unwrap_or_default();
                let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(BASE), SIZE)]).unwrap();
                let irqs = IrqLog::new();
                let vf = nic.vf(i).unwrap();
                let mut drv = SoftIgbvf::new(mem.clone(), BASE, cfg);
                {
                    let mut f = vf.lock().unwrap();
                    f.attach(GuestMemoryAtomic::new(mem), irqs.clone());
                    drv.probe(&mut f).unwrap();
                    drv.open(&mut f).unwrap();
                    drv.handle_irqs(&mut f, &irqs);
                    assert!(drv.check_link(&mut f));
                }
                Node { vf, drv, irqs }
            })
            .collect();
        Rig { nic, now, nodes }
    }

    impl Rig {
        fn send(&mut self, from: usize, f: &[u8]) {
            let n = &mut self.nodes[from];
            let mut vf = n.vf.lock().unwrap();
            n.drv.xmit(&mut vf, f, &XmitOpts::default()).unwrap();
        }

        fn poll_guest(&mut self, i: usize) {
            let n = &mut self.nodes[i];
            let mut vf = n.vf.lock().unwrap();
            n.drv.handle_irqs(&mut vf, &n.irqs);
        }

        fn poll_guests(&mut self) {
            for i in 0..self.nodes.len() {
                self.poll_guest(i);
            }
        }

        fn mac(&self, i: usize) -> [u8; 6] {
            self.nodes[i].drv.mac
        }

        fn port(&self, p: PortId) -> eswitch::PortCounters {
            self.nic
                .with_pf(|pf| pf.switch().counters(p).cloned())
                .unwrap()
        }
    }

    fn frame(dst: [u8; 6], src: [u8; 6], len: usize, seq: u16) -> Vec<u8> {
        let mut f = Vec::with_capacity(len);
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        f.extend_from_slice(&[0x88, 0xB5]);
        f.extend_from_slice(&seq.to_be_bytes());
        f.resize(len.max(60), 0xA5);
        f
    }

    #[test]
    fn unicast_and_broadcast_reach_vfs_and_the_uplink_sink() {
        let mut r = rig(3, &[]);
        let up: Arc<Mutex<Vec<Bytes>>> = Arc::default();
        let u = up.clone();
        r.nic.set_port_sink(
            PortId::Uplink(0),
            Some(Arc::new(move |d: &Delivery| {
                u.lock().unwrap().push(d.frame.clone())
            })),
        );
        let (a, b) = (r.mac(0), r.mac(1));
        let f = frame(b, a, 98, 1);
        r.send(0, &f);
        r.poll_guests();
        assert_eq!(r.nodes[1].drv.received.len(), 1);
        assert_eq!(r.nodes[1].drv.received[0].data, f);
        assert!(r.nodes[2].drv.received.is_empty());
        let bc = frame([0xFF; 6], a, 60, 2);
        r.send(0, &bc);
        r.poll_guests();
        assert_eq!(r.nodes[1].drv.received.len(), 2);
        assert_eq!(r.nodes[2].drv.received.len(), 1);
        assert_eq!(
            up.lock().unwrap().len(),
            1,
            "the uplink sink got the broadcast"
        );
        assert_eq!(
            r.nic.counters().unclaimed.get("pf"),
            Some(&1),
            "no PF sink: counted"
        );
        assert_eq!(r.port(PortId::Vf(2)).rx_broadcast, 1);
        assert_eq!(r.port(PortId::Vf(0)).tx_packets, 2);
    }

    #[test]
    fn a_full_ring_backlogs_in_order_and_overflow_is_counted_as_rx_full() {
        let small = DriverConfig {
            ring: 16,
            ..DriverConfig::default()
        };
        let mut r = rig(2, &[DriverConfig::default(), small]);
        let (a, b) = (r.mac(0), r.mac(1));
        let free = r.nic.vf_shared(1).unwrap().rx_free_descriptors() as usize;
        let total = free + BACKLOG_FRAMES + 5;
        let frames: Vec<Vec<u8>> = (0..total).map(|i| frame(b, a, 64, i as u16)).collect();
        for f in &frames {
            r.send(0, f);
            // A cleans its TX ring; B does nothing yet.
            r.poll_guest(0);
        }
        assert_eq!(r.nic.counters().backlog[&1], BACKLOG_FRAMES);
        assert_eq!(r.port(PortId::Vf(1)).drops.rx_full, 5);
        let s = r.nic.vf_shared(1).unwrap().stats();
        assert_eq!(s.rx_drop(RxDrop::BacklogOverflow), 5);
        // B cleans and posts buffers; each RDT write drains the backlog.
        for _ in 0..200 {
            r.poll_guest(1);
            if r.nic.counters().backlog[&1] == 0 {
                break;
            }
        }
        r.poll_guest(1);
        let got: Vec<Vec<u8>> = r.nodes[1]
            .drv
            .received
            .iter()
            .map(|f| f.data.clone())
            .collect();
        assert_eq!(got, frames[..free + BACKLOG_FRAMES].to_vec(), "in order");
    }

    #[test]
    fn a_rate_limited_vf_pauses_and_poll_resumes_it_on_the_injected_clock() {
        let mut r = rig(2, &[]);
        r.nic
            .configure_vf(
                0,
                &VfSetting::parse_words(&["rate", "10"]).expect("valid words"),
            )
            .unwrap();
        let (a, b) = (r.mac(0), r.mac(1));
        let frames: Vec<Vec<u8>> = (0..20).map(|i| frame(b, a, 1514, i)).collect();
        for f in &frames {
            r.send(0, f);
        }
        let due = r.nic.next_wakeup().expect("the shaper deferred");
        r.poll_guests();
        assert!(r.nodes[1].drv.received.len() < 20);
        assert_eq!(r.nic.poll(due - 1), Some(due), "not yet due");
        let mut t = due;
        while r.nic.next_wakeup().is_some() {
            r.now.store(t, Ordering::Relaxed);
            if let Some(next) = r.nic.poll(t) {
                t = next.max(t);
            }
            r.poll_guests();
        }
        r.poll_guests();
        let got: Vec<Vec<u8>> = r.nodes[1]
            .drv
            .received
            .iter()
            .map(|f| f.data.clone())
            .collect();
        assert_eq!(got, frames);
        let elapsed = r.now.load(Ordering::Relaxed) - 1_000_000_000;
        // 20 × 1518 B at 10 Mbit/s, minus the bucket's burst.
        assert!(elapsed > 10_000_000, "shaped: {elapsed} ns");
        assert!(r.port(PortId::Vf(0)).tx_deferred >= 1);
    }

    #[test]
    fn admin_mac_reaches_the_vf_and_refused_settings_change_nothing() {
        let mut r = rig(2, &[]);
        let mac = MacAddr([0x02, 0, 0, 0, 0, 0x10]);
        r.nic
            .configure_vf(0, &[VfSetting::Mac(mac), VfSetting::Trust(false)])
            .unwrap();
        r.poll_guests();
        {
            let n = &mut r.nodes[0];
            let mut vf = n.vf.lock().unwrap();
            n.drv.probe(&mut vf).unwrap();
        }
        assert_eq!(r.mac(0), mac.0, "VF_RESET reply carries the admin MAC");
        let before = r.nic.with_pf(|pf| pf.policy(1).cloned());
        let bad = VfSetting::parse_words(&["spoofchk", "off", "min_tx_rate", "5"]).unwrap();
        assert!(r.nic.configure_vf(1, &bad).is_err());
        assert_eq!(r.nic.with_pf(|pf| pf.policy(1).cloned()), before);
        // `state disable` takes the VF's link down.
        r.nic
            .configure_vf(1, &VfSetting::parse_words(&["state", "disable"]).unwrap())
            .unwrap();
        assert_eq!(
            r.nic.vf_shared(1).unwrap().link_status() & crate::regs::status::LU,
            0,
            "LU clear"
        );
    }

    #[test]
    fn the_timer_thread_resumes_a_paused_queue_in_real_time() {
        let config = NicConfig {
            num_vfs: 2,
            mac_assignment: MacAssignment::Generated { seed: [2, 3, 4] },
            ..NicConfig::default()
        };
        let nic = Nic::new(&config, monotonic_clock()).unwrap();
        let timer = nic.spawn_timer().unwrap();
        let mut nodes: Vec<(Arc<Mutex<Vf>>, SoftIgbvf, Arc<IrqLog>)> = (0..2)
            .map(|i| {
                let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(BASE), SIZE)]).unwrap();
                let irqs = IrqLog::new();
                let vf = nic.vf(i).unwrap();
                let mut drv = SoftIgbvf::new(mem.clone(), BASE, DriverConfig::default());
                {
                    let mut f = vf.lock().unwrap();
                    f.attach(GuestMemoryAtomic::new(mem), irqs.clone());
                    drv.probe(&mut f).unwrap();
                    drv.open(&mut f).unwrap();
                    drv.handle_irqs(&mut f, &irqs);
                }
                (vf, drv, irqs)
            })
            .collect();
        nic.configure_vf(
            0,
            &[VfSetting::Rate {
                min: None,
                max: Some(10),
            }],
        )
        .unwrap();
        let (a, b) = (nodes[0].1.mac, nodes[1].1.mac);
        for i in 0..10 {
            let (vf, drv, _) = &mut nodes[0];
            drv.xmit(
                &mut vf.lock().unwrap(),
                &frame(b, a, 1514, i),
                &XmitOpts::default(),
            )
            .unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while nic.vf_shared(1).unwrap().stats().rx_packets < 10 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(nic.vf_shared(1).unwrap().stats().rx_packets, 10);
        drop(timer);
    }
}
