//! The card a scenario runs on, its cables and the endpoints attached to it. Each port of the
//! card is a [`model::Nic`], the same datapath `serve` runs: a VF endpoint is a guest of one VF
//! (memory, interrupts, the software igbvf driving the VF function's rings), a PF or uplink
//! endpoint sends into its port and receives through the port's sink, and a cable takes what one
//! switch sends to an uplink and injects it at the uplink on its other end. The world observes
//! every frame each switch handles and carries frames from endpoint to endpoint, and over the
//! cables, until nothing more is sent.

use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use eswitch::{Delivery, Direction, DropRecord, MacAddr, PortCounters, PortId, VlanTci};
use mailbox::regs::{msg, v2p};
use mailbox::{Message, RefusalReason};
use model::function::i82576::regs;
use model::nic::TimerHandle;
use model::testing::{DriverConfig, DrvError, SoftGuest, XmitOpts, WATCHDOG_PERIOD_NS};
use model::{Clock, ManualClock, Nic, Observer, PortSink, Switched, VfHandle, VfStats};

use crate::error::{CableError, MailboxError, SetupError};
use crate::format::{Attach, EndpointSpec, NicSpec};
use crate::guests::{Answer, Booting, GuestError, GuestMode, GuestVm, Pending};
use crate::ports::{Cable, PfRef, PortRef, UplinkRef};
use crate::report::{ArmedFault, CardPort, EndpointAt, GuestInfo, GuestModule, PortFaults};
pub use crate::report::{Dropped, Origin};
use crate::stack::HostStack;

mod endpoints;
mod guest_mode;
mod report;

/// Where simulated time starts (1 s, so that pcap timestamps are never zero).
pub const START_NS: u64 = 1_000_000_000;
/// igbvf polls RSTI/RSTD at most this often after a VF reset.
const RESET_POLLS: u32 = 200;
/// The VF_RESET reply: word 0 and the MAC in words 1–2.
const RESET_REPLY_WORDS: usize = 3;
/// A frame pump that keeps going longer than this is a forwarding loop: stop it.
const MAX_FRAMES_PER_PUMP: usize = 100_000;

/// How time passes in a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimeMode {
    /// Simulated: `wait` and shaping jump the clock; runs are deterministic and fast.
    #[default]
    Simulated,
    /// Real time: the clock is the host's monotonic clock, `wait` sleeps and the NIC's timer
    /// thread resumes shaped queues, as in `serve`. For endpoints that cannot be paused.
    RealTime,
}

/// The host's monotonic clock, counting from [`START_NS`].
struct RealClock(Instant);

impl Clock for RealClock {
    fn now_ns(&self) -> u64 {
        START_NS.saturating_add(u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }
}

/// The run's clock, as the NIC reads it.
enum RunClock {
    Simulated(Arc<ManualClock>),
    /// Real time; the NICs' timer threads, when the world started them, run while it lives.
    RealTime {
        _timers: Vec<TimerHandle>,
    },
}

/// A frame seen at a port, as a capture on that port's function would see it.
#[derive(Clone, Debug)]
pub struct Captured {
    pub port: PortRef,
    pub direction: Direction,
    pub time_ns: u64,
    pub frame: Bytes,
    pub stripped_tci: Option<VlanTci>,
}

/// One frame through one port's switch.
#[derive(Clone, Debug)]
pub struct SwitchEvent {
    pub origin: Origin,
    /// The frame came over a cable (its ingress is the cable's end), not from an endpoint.
    pub over_cable: bool,
    pub ingress: PortRef,
    /// The ports that got a copy.
    pub delivered: Vec<PortRef>,
    pub drops: Vec<Dropped>,
}

/// What a NIC's observer saw, not yet attributed to a step.
#[derive(Clone, Debug)]
struct Seen {
    nic: u8,
    time_ns: u64,
    ingress: PortId,
    frame: Bytes,
    deliveries: Vec<Delivery>,
    drops: Vec<DropRecord>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the world's taps on the NICs collected.
#[derive(Default)]
struct Taps {
    seen: Mutex<Vec<Seen>>,
    /// Frames delivered to a PF or uplink endpoint's port or to a cable, in order.
    inbox: Mutex<Vec<(PortRef, Bytes)>>,
}

/// The world's observer of one NIC and the sink of its endpoint and cable ports.
struct Tap {
    nic: u8,
    taps: Arc<Taps>,
}

impl Observer for Tap {
    fn switched(&self, e: &Switched<'_>) {
        lock(&self.taps.seen).push(Seen {
            nic: self.nic,
            time_ns: e.time_ns,
            ingress: e.ingress,
            frame: e.frame.clone(),
            deliveries: e.deliveries.to_vec(),
            drops: e.drops.to_vec(),
        });
    }
}

impl PortSink for Tap {
    fn deliver(&self, d: &Delivery) {
        lock(&self.taps.inbox).push((PortRef::new(self.nic, d.port), d.frame.clone()));
    }
}

/// Who puts a frame on a port: an endpoint, or a cable at its end.
#[derive(Clone, Copy, Debug)]
enum Sender {
    Endpoint(usize),
    Cable(PortRef),
}

/// An endpoint's guest on a VF.
pub struct VfGuest {
    pub guest: SoftGuest,
    /// Whether the software igbvf does the whole bring-up (`attach = "driver"`), or the
    /// endpoint scripts the mailbox itself over the VF's registers and only uses the rings.
    pub attach: Attach,
    fallback: Option<MacAddr>,
    /// Driver-attached: when igbvf's watchdog timer runs next (the world's clock).
    next_watchdog_ns: u64,
}

pub struct Endpoint {
    pub name: String,
    pub port: PortRef,
    pub stack: HostStack,
    /// The guest behind a VF port; `None` for PF and uplink endpoints and QEMU guests.
    pub vf: Option<Box<VfGuest>>,
    /// A QEMU guest on the VF (guest mode), once booted.
    pub vm: Option<Box<GuestVm>>,
    /// The endpoint is a QEMU guest (booted by [`World::boot_guests`]).
    pub guest: bool,
}

pub struct World {
    /// One NIC per port of the card, port 0 first.
    nics: Vec<Arc<Nic>>,
    /// Each NIC's observer and sink.
    taps_of: Vec<Arc<Tap>>,
    clock: RunClock,
    taps: Arc<Taps>,
    cables: Vec<Cable>,
    pub endpoints: Vec<Endpoint>,
    /// Every frame at every port, both directions, since the start.
    pub captures: Vec<Captured>,
    /// Everything the switches did since the last [`World::take_events`].
    events: Vec<SwitchEvent>,
    /// Frames delivered to endpoint and cable ports and not yet taken on, with the origin of
    /// the frame that caused them.
    arrived: Vec<(PortRef, Bytes, Origin)>,
    /// Endpoints become QEMU guests ([`World::set_guest_mode`]).
    guest_mode: Option<GuestMode>,
    /// The brought modules as each guest endpoint (by index) has them.
    guest_modules: BTreeMap<usize, Vec<GuestModule>>,
    /// The scenario whose guests [`World::boot_guests`] booted (their QEMU names).
    guest_scenario: String,
}

impl World {
    /// A card of `spec.ports` NICs, set up as `spec` says, on one clock.
    pub fn new(spec: &NicSpec, mode: TimeMode) -> Result<World, SetupError> {
        let manual = Arc::new(ManualClock::new(START_NS));
        let clock: Arc<dyn Clock> = match mode {
            TimeMode::Simulated => manual.clone(),
            TimeMode::RealTime => Arc::new(RealClock(Instant::now())),
        };
        let mut nics = Vec::with_capacity(usize::from(spec.ports));
        for k in 0..spec.ports {
            let nic = Nic::new(&spec.config(k), clock.clone())?;
            nic.with_pf(|side| side.set_promisc_policy(spec.promisc_policy));
            nics.push(nic);
        }
        let clock = match mode {
            TimeMode::Simulated => RunClock::Simulated(manual),
            TimeMode::RealTime => RunClock::RealTime {
                // Without a timer thread a shaped queue would wait for the next step.
                _timers: nics.iter().filter_map(|n| n.spawn_timer().ok()).collect(),
            },
        };
        World::with_nics(nics, clock)
    }

    /// A world on NICs someone else built (`serve`-shaped ones, say), one per port of the
    /// card, in real time.
    pub fn on_nics(nics: Vec<Arc<Nic>>) -> Result<World, SetupError> {
        World::with_nics(
            nics,
            RunClock::RealTime {
                _timers: Vec::new(),
            },
        )
    }

    fn with_nics(nics: Vec<Arc<Nic>>, clock: RunClock) -> Result<World, SetupError> {
        if nics.is_empty() || nics.len() > usize::from(u8::MAX) {
            return Err(SetupError::NicCount {
                want: None,
                got: nics.len(),
            });
        }
        let taps = Arc::new(Taps::default());
        let taps_of: Vec<Arc<Tap>> = (0..nics.len())
            .map(|k| {
                Arc::new(Tap {
                    nic: k as u8,
                    taps: taps.clone(),
                })
            })
            .collect();
        for (nic, tap) in nics.iter().zip(&taps_of) {
            nic.set_observer(Some(tap.clone()));
        }
        Ok(World {
            nics,
            taps_of,
            clock,
            taps,
            cables: Vec::new(),
            endpoints: Vec::new(),
            captures: Vec::new(),
            events: Vec::new(),
            arrived: Vec::new(),
            guest_mode: None,
            guest_modules: BTreeMap::new(),
            guest_scenario: String::new(),
        })
    }

    /// The NIC of port `k`.
    pub fn nic(&self, k: u8) -> Option<&Arc<Nic>> {
        self.nics.get(usize::from(k))
    }

    /// Every port's NIC, port 0 first.
    pub fn nics(&self) -> &[Arc<Nic>] {
        &self.nics
    }

    pub fn now(&self) -> u64 {
        self.nics.first().map_or(START_NS, |n| n.now())
    }

    /// Lets time pass until `t` (never backwards) and resumes the TX queues due by then; the
    /// software igbvfs' watchdogs run at their times on the way.
    pub fn advance_to(&mut self, t: u64) {
        while let Some(due) = self.next_watchdog().filter(|&w| w <= t) {
            self.move_clock(due);
            self.run_watchdogs(due, false);
        }
        self.move_clock(t);
    }

    /// When the next software igbvf's watchdog is due, if any endpoint has one.
    fn next_watchdog(&self) -> Option<u64> {
        self.endpoints
            .iter()
            .filter_map(|e| e.vf.as_ref())
            .filter(|g| g.attach == Attach::Driver)
            .map(|g| g.next_watchdog_ns)
            .min()
    }

    /// Runs igbvf's watchdog in every driver-attached software guest whose timer is due at
    /// `now` (every one with `all`: an interrupt or a change asks each driver to look now),
    /// and logs what it found as igbvf does.
    fn run_watchdogs(&mut self, now: u64, all: bool) {
        for ep in &mut self.endpoints {
            let Some(g) = ep.vf.as_mut() else {
                continue;
            };
            if g.attach != Attach::Driver || (!all && g.next_watchdog_ns > now) {
                continue;
            }
            g.guest.poll();
            g.next_watchdog_ns = now.saturating_add(WATCHDOG_PERIOD_NS);
            let driver = g.guest.drv.name();
            match g.guest.drv.watchdog(&g.guest.vf, now) {
                Ok(run) => {
                    if run.reset {
                        tracing::info!(endpoint = %ep.name, "{driver}: link check failed: reset task (down, VF_RESET handshake, up)");
                    }
                    match run.carrier_change {
                        Some(true) => tracing::info!(endpoint = %ep.name, "{driver}: Link is Up"),
                        Some(false) => {
                            tracing::info!(endpoint = %ep.name, "{driver}: Link is Down")
                        }
                        None => {}
                    }
                }
                Err(e) => tracing::warn!(endpoint = %ep.name, error = ?e, "{driver}: reset failed"),
            }
            g.guest.poll();
        }
    }

    /// Sets the clock to `t` (never backwards) and resumes the TX queues due by then.
    fn move_clock(&mut self, t: u64) {
        match &self.clock {
            RunClock::Simulated(c) => c.advance_to(t),
            RunClock::RealTime { .. } => {
                let now = self.now();
                if t > now {
                    std::thread::sleep(std::time::Duration::from_nanos(t - now));
                }
            }
        }
        // Each on its own clock: NICs built elsewhere need not share one.
        for nic in &self.nics {
            let _ = nic.poll(nic.now());
        }
    }

    pub fn endpoint(&self, name: &str) -> Option<usize> {
        self.endpoints.iter().position(|e| e.name == name)
    }

    fn endpoint_at(&self, port: PortRef) -> Option<usize> {
        self.endpoints.iter().position(|e| e.port == port)
    }

    /// Whether the card has `port`.
    pub fn has_port(&self, port: PortRef) -> bool {
        self.nic(port.nic)
            .is_some_and(|n| n.with_pf(|pf| pf.switch().ports().any(|p| p == port.port)))
    }

    /// The cables plugged in now.
    pub fn cables(&self) -> &[Cable] {
        &self.cables
    }

    /// The port at the other end of the cable plugged into `port`, if one is.
    pub fn peer(&self, port: PortRef) -> Option<PortRef> {
        self.cables.iter().find_map(|c| c.peer(port))
    }

    /// Plugs a cable into uplinks `a` and `b` (the same one: a loopback plug). Both must exist
    /// and be free: no cable in them, no endpoint on them.
    pub fn plug(&mut self, a: UplinkRef, b: UplinkRef) -> Result<(), CableError> {
        for end in [a, b] {
            let port = PortRef::from(end);
            if !self.has_port(port) {
                return Err(CableError::NoSuchPort(port));
            }
            if self.peer(port).is_some() {
                return Err(CableError::InUse(port));
            }
            if let Some(idx) = self.endpoint_at(port) {
                return Err(CableError::Endpoint {
                    name: self.endpoints[idx].name.clone(),
                    port,
                });
            }
        }
        for end in [a, b] {
            self.set_sink(end.into(), true);
        }
        self.cables.push(Cable { a, b });
        Ok(())
    }

    /// Pulls the cable between `a` and `b` out: what the switches send to those uplinks goes
    /// nowhere again.
    pub fn unplug(&mut self, a: UplinkRef, b: UplinkRef) -> Result<(), CableError> {
        let at = self
            .cables
            .iter()
            .position(|c| c.joins(a, b))
            .ok_or(CableError::NotPlugged(Cable { a, b }))?;
        let cable = self.cables.remove(at);
        for end in [cable.a, cable.b] {
            self.set_sink(end.into(), false);
        }
        Ok(())
    }

    /// Makes the world (`on`) or nobody the sink of `port`.
    fn set_sink(&self, port: PortRef, on: bool) {
        let k = usize::from(port.nic);
        if let (Some(nic), Some(tap)) = (self.nics.get(k), self.taps_of.get(k)) {
            let sink: Option<Arc<dyn PortSink>> = on.then(|| tap.clone() as Arc<dyn PortSink>);
            nic.set_port_sink(port.port, sink);
        }
    }

    /// What the switches did since the last call (frames observed since are attributed first).
    pub fn take_events(&mut self) -> Vec<SwitchEvent> {
        self.collect(Origin::Step, false);
        std::mem::take(&mut self.events)
    }

    /// Moves what the observers saw into the events (attributed to `origin`, and as having
    /// come over a cable or not) and the captures, and what the sinks got into `arrived`.
    ///
    /// A QEMU guest sends in real time, so its frames can be seen while the runner carries a
    /// step's frame: they are answers whatever `origin` says (run_step makes those of a guest
    /// that carries the step out the step's), and so are the copies the sinks got of them.
    fn collect(&mut self, origin: Origin, over_cable: bool) {
        let seen = std::mem::take(&mut *lock(&self.taps.seen));
        let guest_ports: Vec<PortRef> = if origin == Origin::Step {
            self.endpoints
                .iter()
                .filter(|e| e.guest)
                .map(|e| e.port)
                .collect()
        } else {
            Vec::new()
        };
        let mut from_guests: Vec<(PortRef, Bytes)> = Vec::new();
        for s in seen {
            let at = |port| PortRef::new(s.nic, port);
            let from_guest = guest_ports.contains(&at(s.ingress));
            let origin = if from_guest { Origin::Reply } else { origin };
            if from_guest {
                from_guests.extend(s.deliveries.iter().map(|d| (at(d.port), d.frame.clone())));
            }
            self.captures.push(Captured {
                port: at(s.ingress),
                direction: Direction::Tx,
                time_ns: s.time_ns,
                frame: s.frame,
                stripped_tci: None,
            });
            for d in &s.deliveries {
                self.captures.push(Captured {
                    port: at(d.port),
                    direction: Direction::Rx,
                    time_ns: s.time_ns,
                    frame: d.frame.clone(),
                    stripped_tci: d.stripped_tci,
                });
            }
            self.events.push(SwitchEvent {
                origin,
                over_cable,
                ingress: at(s.ingress),
                delivered: s.deliveries.iter().map(|d| at(d.port)).collect(),
                drops: s
                    .drops
                    .iter()
                    .map(|d| Dropped {
                        port: at(d.port),
                        reason: d.reason,
                    })
                    .collect(),
            });
        }
        let inbox = std::mem::take(&mut *lock(&self.taps.inbox));
        self.arrived.extend(inbox.into_iter().map(|(port, frame)| {
            let guests = from_guests.iter().any(|(p, f)| *p == port && *f == frame);
            let origin = if guests { Origin::Reply } else { origin };
            (port, frame, origin)
        }));
    }

    /// Lets every guest handle the interrupts it got (a PF ping, a link change: igbvf's
    /// watchdog then re-checks its link) and answers what they received.
    pub fn settle(&mut self) {
        for ep in &mut self.endpoints {
            if let Some(g) = ep.vf.as_mut() {
                g.guest.poll();
            }
        }
        let now = self.now();
        self.run_watchdogs(now, true);
        self.pump(VecDeque::new());
    }

    /// Sends `frame` from endpoint `idx` and carries every frame it causes (answers and frames
    /// over cables included) until the network is quiet.
    pub fn send(&mut self, idx: usize, frame: Bytes) {
        self.pump(VecDeque::from([(
            Sender::Endpoint(idx),
            frame,
            Origin::Step,
        )]));
    }

    fn pump(&mut self, mut queue: VecDeque<(Sender, Bytes, Origin)>) {
        let mut budget = MAX_FRAMES_PER_PUMP;
        loop {
            // What arrived so far (bring-up traffic, a resumed queue) is answered too.
            self.collect(Origin::Reply, false);
            queue.extend(self.receive_all());
            let Some((from, frame, origin)) = queue.pop_front() else {
                return;
            };
            if budget == 0 {
                tracing::warn!("scenario: frame pump stopped after {MAX_FRAMES_PER_PUMP} frames");
                return;
            }
            budget -= 1;
            let over_cable = matches!(from, Sender::Cable(_));
            self.transmit(from, frame);
            self.collect(origin, over_cable);
        }
    }

    /// Puts one frame on a link: from a cable into the switch at its end; from endpoint `idx`
    /// into its VF's TX ring (time passes while the shaper holds the queue, as the timer would
    /// let it), or into its PF/uplink port.
    fn transmit(&mut self, from: Sender, frame: Bytes) {
        let idx = match from {
            Sender::Cable(end) => {
                if let Some(nic) = self.nic(end.nic) {
                    nic.inject(end.port, frame);
                }
                return;
            }
            Sender::Endpoint(idx) => idx,
        };
        let ep = &self.endpoints[idx];
        if ep
            .vf
            .as_ref()
            .is_some_and(|g| g.attach == Attach::Driver && !g.guest.drv.carrier)
        {
            // No carrier: the stack's queue is stopped (netif_carrier_off), nothing reaches
            // the driver.
            tracing::debug!(endpoint = %ep.name, "no carrier: frame not sent");
            return;
        }
        self.endpoints[idx].stack.tx_frames += 1;
        let port = self.endpoints[idx].port;
        let Some(g) = self.endpoints[idx].vf.as_mut() else {
            if let Some(nic) = self.nic(port.nic) {
                nic.inject(port.port, frame);
            }
            return;
        };
        let vf = g.guest.vf.clone();
        let mut waits = 0;
        loop {
            let Some(g) = self.endpoints[idx].vf.as_mut() else {
                return;
            };
            g.guest.poll();
            match g.guest.drv.xmit(&vf, &frame, &XmitOpts::default()) {
                Err(DrvError::TxRingFull) if waits < RESET_POLLS => {
                    // The ring is full behind a paused queue: let the shaper's time pass.
                    waits += 1;
                    match vf.tx_paused_until() {
                        Some(t) => self.advance_to(t),
                        None => break,
                    }
                }
                Err(e) => {
                    tracing::warn!(error = ?e, "scenario: endpoint could not transmit");
                    break;
                }
                Ok(()) => break,
            }
        }
        // A paused queue resumes at the time the shaper named, as the server's timer does.
        while let Some(t) = vf.tx_paused_until() {
            self.advance_to(t.max(self.now()));
            if vf.tx_paused_until() == Some(t) && self.now() >= t {
                // Resumed and paused again at the same deadline: nothing more will move.
                break;
            }
        }
    }

    /// Hands every endpoint what it received and every cable what its ends got; returns the
    /// endpoints' answers and the frames to carry over the cables.
    fn receive_all(&mut self) -> Vec<(Sender, Bytes, Origin)> {
        let arrived = std::mem::take(&mut self.arrived);
        let mut out = Vec::new();
        for (port, frame, origin) in arrived {
            if let Some(far) = self.peer(port) {
                out.push((Sender::Cable(far), frame, origin));
            } else if let Some(idx) = self.endpoint_at(port) {
                let stack = &mut self.endpoints[idx].stack;
                out.extend(
                    stack
                        .receive(&frame)
                        .into_iter()
                        .map(|a| (Sender::Endpoint(idx), a, Origin::Reply)),
                );
            }
        }
        for (idx, ep) in self.endpoints.iter_mut().enumerate() {
            let Some(g) = ep.vf.as_mut() else {
                continue;
            };
            g.guest.poll();
            for f in g.guest.take_received() {
                out.extend(
                    ep.stack
                        .receive(&f.data)
                        .into_iter()
                        .map(|a| (Sender::Endpoint(idx), a, Origin::Reply)),
                );
            }
        }
        out
    }

    /// The MAC the stack of endpoint `idx` believes it has.
    pub fn mac_of(&self, idx: usize) -> MacAddr {
        self.endpoints[idx].stack.mac
    }

    pub fn ip_of(&self, idx: usize) -> Option<Ipv4Addr> {
        self.endpoints[idx].stack.ip
    }
}

impl Drop for World {
    /// The NICs may outlive the world (`serve`'s): nothing of it stays attached to them.
    fn drop(&mut self) {
        let ports: Vec<PortRef> = self
            .endpoints
            .iter()
            .filter(|e| e.vf.is_none() && !e.guest)
            .map(|e| e.port)
            .chain(
                self.cables
                    .iter()
                    .flat_map(|c| [PortRef::from(c.a), PortRef::from(c.b)]),
            )
            .collect();
        for port in ports {
            self.set_sink(port, false);
        }
        for nic in &self.nics {
            nic.set_observer(None);
        }
    }
}
