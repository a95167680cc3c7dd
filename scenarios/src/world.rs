//! The NIC a scenario runs on and the endpoints attached to it: the PF side (eswitch, PF agent,
//! every VF mailbox) behind one lock, the clock, the capture log, and the frame pump that
//! carries frames from endpoint to switch to endpoint until nothing more is sent.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use eswitch::{Delivery, Direction, DropRecord, MacAddr, NextSendAt, PortId, VlanTci};
use mailbox::regs::{msg, v2p};
use mailbox::{MacAssignment, Message};
use model::pf::{NicConfig, PfSide, SharedPf};
use model::testing::{DriverConfig, DrvError, IrqLog, SoftIgbvf, XmitOpts};
use model::{PfPort, TxVerdict, Vf};
use vm_memory::{GuestAddress, GuestMemoryAtomic, GuestMemoryMmap};

use crate::format::{Attach, EndpointSpec, MacAssignmentSpec, NicSpec};
use crate::stack::HostStack;

/// Where simulated time starts (1 s, so that pcap timestamps are never zero).
pub const START_NS: u64 = 1_000_000_000;
/// igbvf polls RSTI/RSTD at most this often after a VF reset.
const RESET_POLLS: u32 = 200;
/// The VF_RESET reply: word 0 and the MAC in words 1–2.
const RESET_REPLY_WORDS: usize = 3;
/// A frame pump that keeps going longer than this is a forwarding loop: stop it.
const MAX_FRAMES_PER_PUMP: usize = 100_000;
/// The seed of generated VF MACs (`02:52:54:00:vf_hi:vf_lo`, QEMU's OUI-like prefix).
const GENERATED_MAC_SEED: [u8; 3] = [0x52, 0x54, 0x00];
/// Guest memory of a driver-attached VF: its own range, for rings and buffers.
const GUEST_BASE: u64 = 0x10_0000;
const GUEST_SIZE: usize = 0x40_0000;

/// How time passes in a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimeMode {
    /// Simulated: `wait` and shaping jump the clock; runs are deterministic and fast.
    #[default]
    Simulated,
    /// Real time: the clock is the host's monotonic clock and `wait` sleeps. The hook for
    /// endpoints that live outside the process (QEMU guests), which cannot be paused.
    RealTime,
}

/// The run's clock.
pub struct Clock {
    mode: TimeMode,
    sim_ns: u64,
    epoch: Instant,
}

impl Clock {
    pub fn new(mode: TimeMode) -> Clock {
        Clock {
            mode,
            sim_ns: START_NS,
            epoch: Instant::now(),
        }
    }

    pub fn now_ns(&self) -> u64 {
        match self.mode {
            TimeMode::Simulated => self.sim_ns,
            TimeMode::RealTime => START_NS
                .saturating_add(self.epoch.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64),
        }
    }

    /// Lets time pass until `t` (never backwards).
    pub fn advance_to(&mut self, t: u64) {
        match self.mode {
            TimeMode::Simulated => self.sim_ns = self.sim_ns.max(t),
            TimeMode::RealTime => {
                let now = self.now_ns();
                if t > now {
                    std::thread::sleep(Duration::from_nanos(t - now));
                }
            }
        }
    }
}

/// A frame seen by a capture hook.
#[derive(Clone, Debug)]
pub struct Captured {
    pub port: PortId,
    pub direction: Direction,
    pub time_ns: u64,
    pub frame: Bytes,
    pub stripped_tci: Option<VlanTci>,
}

/// Who sent a frame: the step's own sender, or an endpoint answering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Step,
    Reply,
}

/// One frame through the switch.
#[derive(Clone, Debug)]
pub struct SwitchEvent {
    pub origin: Origin,
    pub ingress: PortId,
    pub deliveries: Vec<Delivery>,
    pub drops: Vec<DropRecord>,
}

/// A software igbvf driving the VF model.
pub struct DriverLink {
    vf: Vf,
    drv: SoftIgbvf,
    irqs: Arc<IrqLog>,
    mem: GuestMemoryMmap,
    random_mac: [u8; 6],
}

pub enum Link {
    Port,
    Driver(Box<DriverLink>),
}

pub struct Endpoint {
    pub name: String,
    pub port: PortId,
    pub stack: HostStack,
    pub link: Link,
}

/// A VF-side mailbox exchange that did not complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailboxFailure(pub String);

impl From<DrvError> for MailboxFailure {
    fn from(e: DrvError) -> Self {
        MailboxFailure(format!("igbvf: {e:?}"))
    }
}

pub struct World {
    pub pf: Arc<SharedPf>,
    /// The PF side's view of the run's clock, moved by [`World::advance_to`].
    pf_now: Arc<AtomicU64>,
    pub endpoints: Vec<Endpoint>,
    pub clock: Clock,
    pub captures: Arc<Mutex<Vec<Captured>>>,
    /// Frames the driver endpoints' TX sinks switched, waiting to be delivered.
    outbox: Arc<Mutex<Vec<(PortId, eswitch::Deliveries)>>>,
    /// Everything the switch did since the last [`World::take_events`].
    events: Vec<SwitchEvent>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl World {
    pub fn new(nic: &NicSpec, mode: TimeMode) -> Result<World, String> {
        let config = NicConfig {
            num_vfs: nic.vfs,
            pf_mac: nic.pf_mac,
            mac_assignment: match nic.mac_assignment {
                MacAssignmentSpec::AdminOnly => MacAssignment::AdminOnly,
                MacAssignmentSpec::Generated => MacAssignment::Generated {
                    seed: GENERATED_MAC_SEED,
                },
            },
            num_uplinks: nic.uplinks,
            link_speed_mbps: nic.link_speed_mbps,
        };
        let side = PfSide::new(&config).map_err(|e| format!("NIC: {e}"))?;
        let clock = Clock::new(mode);
        let pf_now = Arc::new(AtomicU64::new(clock.now_ns()));
        let pf_clock = {
            let t = pf_now.clone();
            Arc::new(move || t.load(Ordering::Relaxed))
        };
        let pf = Arc::new(SharedPf::new(side, pf_clock));
        let captures: Arc<Mutex<Vec<Captured>>> = Arc::default();
        {
            let mut side = pf.side();
            let ports: Vec<PortId> = side.switch().ports().collect();
            for port in ports {
                let log = captures.clone();
                let hook: eswitch::CaptureHook = Box::new(move |r| {
                    lock(&log).push(Captured {
                        port: r.port,
                        direction: r.direction,
                        time_ns: r.time_ns,
                        frame: Bytes::copy_from_slice(r.frame),
                        stripped_tci: r.stripped_tci,
                    })
                });
                side.switch_mut()
                    .set_capture(port, Some(hook))
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(World {
            pf,
            pf_now,
            endpoints: Vec::new(),
            clock,
            captures,
            outbox: Arc::default(),
            events: Vec::new(),
        })
    }

    pub fn now(&self) -> u64 {
        self.clock.now_ns()
    }

    /// Moves the clock (and the PF side's copy of it) to `t`.
    pub fn advance_to(&mut self, t: u64) {
        self.clock.advance_to(t);
        self.sync_time();
    }

    fn sync_time(&mut self) {
        let now = self.clock.now_ns();
        self.pf_now.store(now, Ordering::Relaxed);
        self.pf.side().switch_mut().set_time(now);
    }

    pub fn endpoint(&self, name: &str) -> Option<usize> {
        self.endpoints.iter().position(|e| e.name == name)
    }

    fn endpoint_at(&self, port: PortId) -> Option<usize> {
        self.endpoints.iter().position(|e| e.port == port)
    }

    pub fn take_events(&mut self) -> Vec<SwitchEvent> {
        std::mem::take(&mut self.events)
    }

    /// Adds an endpoint and, for a VF with `bring_up` (the default), runs its driver's bring-up.
    pub fn add_endpoint(&mut self, spec: &EndpointSpec) -> Result<(), String> {
        let port = spec.port.0;
        if self.endpoint_at(port).is_some() {
            return Err(format!("two endpoints on {port}"));
        }
        if !self.pf.side().switch().ports().any(|p| p == port) {
            return Err(format!(
                "endpoint {}: the NIC has no port {port}",
                spec.name
            ));
        }
        let mac = match (port, spec.mac) {
            (_, Some(mac)) => mac,
            (PortId::Pf, None) => self.pf.side().switch().config().pf_mac.unwrap_or_default(),
            (PortId::Uplink(_), None) => {
                return Err(format!("endpoint {} on {port} needs a `mac`", spec.name))
            }
            (PortId::Vf(_), None) => MacAddr::ZERO,
        };
        let stack = HostStack::new(mac, spec.ip, spec.vlan);
        let link = match (spec.attach, port) {
            (Attach::Port, _) => Link::Port,
            (Attach::Driver, PortId::Vf(vf)) => {
                Link::Driver(Box::new(self.new_driver(vf, spec.fallback_mac)?))
            }
            (Attach::Driver, other) => {
                return Err(format!(
                    "endpoint {}: attach = \"driver\" needs a VF port, not {other}",
                    spec.name
                ))
            }
        };
        self.endpoints.push(Endpoint {
            name: spec.name.clone(),
            port,
            stack,
            link,
        });
        let idx = self.endpoints.len() - 1;
        if matches!(port, PortId::Vf(_)) && spec.bring_up.unwrap_or(true) {
            self.bring_up(idx, spec.fallback_mac)
                .map_err(|e| format!("endpoint {}: bring-up: {}", spec.name, e.0))?;
        }
        Ok(())
    }

    fn new_driver(&mut self, vf: u16, fallback: Option<MacAddr>) -> Result<DriverLink, String> {
        let port: Arc<dyn PfPort> = self.pf.clone();
        let mut model_vf = Vf::new(vf, port).map_err(|e| format!("VF {vf} model: {e:?}"))?;
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(GUEST_BASE), GUEST_SIZE)])
            .map_err(|e| format!("guest memory: {e}"))?;
        let irqs = IrqLog::new();
        model_vf.attach(GuestMemoryAtomic::new(mem.clone()), irqs.clone());
        let (pf, outbox) = (self.pf.clone(), self.outbox.clone());
        model_vf.set_tx_sink(Box::new(move |frame| {
            let now = pf.now();
            let mut side = pf.side();
            if let Err(NextSendAt(t)) = side.switch_mut().tx_admit(vf, now, frame.len()) {
                return TxVerdict::Defer { until_ns: t };
            }
            let out = side.switch_mut().process(PortId::Vf(vf), frame);
            lock(&outbox).push((PortId::Vf(vf), out));
            TxVerdict::Sent
        }));
        let random_mac = fallback.map_or([0x02, 0x5a, 0x5a, 0x00, 0x00, vf as u8], |m| m.0);
        let drv = SoftIgbvf::new(mem.clone(), GUEST_BASE, driver_config(random_mac));
        Ok(DriverLink {
            vf: model_vf,
            drv,
            irqs,
            mem,
            random_mac,
        })
    }

    /// The VF driver's bring-up (probe, or a reload). Port-attached: igbvf's reset handshake
    /// through the forwarded mailbox registers; the MAC from the VF_RESET reply, or zeros on
    /// NACK, or `fallback` registered with SET_MAC_ADDR. Driver-attached: the software
    /// igbvf's probe and open. Returns the VF_RESET reply (port-attached only).
    pub fn bring_up(
        &mut self,
        idx: usize,
        fallback: Option<MacAddr>,
    ) -> Result<Option<Message>, MailboxFailure> {
        let PortId::Vf(vf) = self.endpoints[idx].port else {
            return Ok(None);
        };
        let now = self.now();
        if let Link::Driver(d) = &mut self.endpoints[idx].link {
            // A reload: a fresh driver instance over the same function and memory.
            d.drv = SoftIgbvf::new(d.mem.clone(), GUEST_BASE, driver_config(d.random_mac));
            let mac = d.drv.probe(&mut d.vf)?;
            d.drv.open(&mut d.vf)?;
            d.drv.handle_irqs(&mut d.vf, &d.irqs);
            d.drv.check_link(&mut d.vf);
            self.endpoints[idx].stack.mac = MacAddr(mac);
            return Ok(None);
        }
        let _ = self.pf.side().vf_reset(vf, now);
        let mut polls = 0;
        while self.pf.side().read_v2p(vf) & (v2p::RSTI | v2p::RSTD) != 0 {
            polls += 1;
            if polls > RESET_POLLS {
                return Err(MailboxFailure("PF still in reset state".into()));
            }
        }
        let reply =
            self.mailbox_exchange(idx, &[u32::from(msg::ID_VF_RESET)], RESET_REPLY_WORDS)?;
        let mac = match reply.msg {
            mailbox::MailboxMsg::VfResetReply { mac } if reply.flags.ack => mac,
            _ => MacAddr::ZERO,
        };
        self.endpoints[idx].stack.mac = mac;
        if let (true, Some(own)) = (mac.is_zero(), fallback) {
            let set = Message::request(mailbox::MailboxMsg::SetMacAddr {
                op: mailbox::MacFilterOp::Set,
                mac: own,
            });
            let answer = self.mailbox_exchange(idx, &set.to_words(), RESET_REPLY_WORDS)?;
            if answer.flags.ack {
                self.endpoints[idx].stack.mac = own;
            }
        }
        Ok(Some(reply))
    }

    /// igbvf's `write_posted` then `read_posted` of `reply_words` words, from endpoint `idx`'s
    /// VF: through the software igbvf and the VF model, or straight at the PF side's
    /// forwarded registers.
    pub fn mailbox_exchange(
        &mut self,
        idx: usize,
        words: &[u32],
        reply_words: usize,
    ) -> Result<Message, MailboxFailure> {
        let PortId::Vf(vf) = self.endpoints[idx].port else {
            return Err(MailboxFailure(format!(
                "{} is not a VF endpoint",
                self.endpoints[idx].name
            )));
        };
        let now = self.now();
        let reply = match &mut self.endpoints[idx].link {
            Link::Driver(d) => {
                d.drv.write_posted(&mut d.vf, words)?;
                let r = d.drv.read_posted(&mut d.vf, reply_words)?;
                d.drv.handle_irqs(&mut d.vf, &d.irqs);
                r
            }
            Link::Port => {
                let mut side = self.pf.side();
                let _ = side.write_v2p(vf, v2p::VFU, now);
                if side.read_v2p(vf) & v2p::VFU == 0 {
                    return Err(MailboxFailure("mailbox lock not granted".into()));
                }
                for (w, &value) in words.iter().enumerate() {
                    side.write_vmbmem(vf, w, value);
                }
                let _ = side.write_v2p(vf, v2p::REQ, now);
                let status = side.read_v2p(vf);
                if status & v2p::PFACK == 0 || status & v2p::PFSTS == 0 {
                    return Err(MailboxFailure(format!(
                        "no reply from the PF (V2PMAILBOX {status:#x})"
                    )));
                }
                let _ = side.write_v2p(vf, v2p::VFU, now);
                let reply: Vec<u32> = (0..reply_words).map(|w| side.read_vmbmem(vf, w)).collect();
                let _ = side.write_v2p(vf, v2p::ACK, now);
                reply
            }
        };
        Message::parse(&reply).map_err(|e| MailboxFailure(format!("reply: {e}")))
    }

    /// Fires the mailbox interrupt of driver-attached VFs the PF side asked for, and lets
    /// their drivers handle it (igbvf re-checks the link).
    pub fn mailbox_irqs(&mut self, vfs: &[u16]) {
        for &vf in vfs {
            if let Some(idx) = self.endpoint_at(PortId::Vf(vf)) {
                if let Link::Driver(d) = &mut self.endpoints[idx].link {
                    d.vf.shared().mailbox_interrupt();
                    d.drv.handle_irqs(&mut d.vf, &d.irqs);
                    d.drv.check_link(&mut d.vf);
                }
            }
        }
    }

    /// Sends `frame` from endpoint `idx` and carries every frame it causes (answers included)
    /// until the network is quiet.
    pub fn send(&mut self, idx: usize, frame: Bytes) {
        let mut queue: VecDeque<(usize, Bytes, Origin)> = VecDeque::new();
        queue.push_back((idx, frame, Origin::Step));
        let mut budget = MAX_FRAMES_PER_PUMP;
        while let Some((from, frame, origin)) = queue.pop_front() {
            if budget == 0 {
                tracing::warn!("scenario: frame pump stopped after {MAX_FRAMES_PER_PUMP} frames");
                return;
            }
            budget -= 1;
            for (ingress, out) in self.transmit(from, frame) {
                let deliveries: Vec<Delivery> = out.deliveries.to_vec();
                self.events.push(SwitchEvent {
                    origin,
                    ingress,
                    deliveries: deliveries.clone(),
                    drops: out.drops.to_vec(),
                });
                for d in deliveries {
                    for (ep, answer) in self.deliver(d) {
                        queue.push_back((ep, answer, Origin::Reply));
                    }
                }
            }
        }
    }

    /// Puts one frame on endpoint `idx`'s link; returns what the switch made of it (several
    /// results when a driver's queue also released earlier frames).
    fn transmit(&mut self, idx: usize, frame: Bytes) -> Vec<(PortId, eswitch::Deliveries)> {
        let port = self.endpoints[idx].port;
        if let Link::Driver(_) = self.endpoints[idx].link {
            return self.transmit_driver(idx, &frame);
        }
        if let PortId::Vf(vf) = port {
            // Shaping: the frame waits in the queue until the VF's shaper admits it.
            loop {
                let now = self.now();
                let verdict = self.pf.side().switch_mut().tx_admit(vf, now, frame.len());
                match verdict {
                    Ok(()) => break,
                    Err(NextSendAt(t)) => self.advance_to(t),
                }
            }
        }
        self.sync_time();
        let out = self.pf.side().switch_mut().process(port, frame);
        vec![(port, out)]
    }

    fn transmit_driver(&mut self, idx: usize, frame: &[u8]) -> Vec<(PortId, eswitch::Deliveries)> {
        self.sync_time();
        let mut waits = 0;
        loop {
            let Link::Driver(d) = &mut self.endpoints[idx].link else {
                return Vec::new();
            };
            d.drv.handle_irqs(&mut d.vf, &d.irqs);
            match d.drv.xmit(&mut d.vf, frame, &XmitOpts::default()) {
                Err(DrvError::TxRingFull) if waits < RESET_POLLS => {
                    // The ring is full behind a paused queue: let the shaper's time pass.
                    waits += 1;
                    match d.vf.tx_paused_until() {
                        Some(t) => {
                            self.advance_to(t);
                            if let Link::Driver(d) = &mut self.endpoints[idx].link {
                                let _ = d.vf.tx_resume();
                            }
                        }
                        None => break,
                    }
                }
                Err(e) => {
                    tracing::warn!(error = ?e, "scenario: driver endpoint could not transmit");
                    break;
                }
                Ok(()) => break,
            }
        }
        // A paused queue resumes at the time the shaper named, as the server's timer does.
        while let Some(t) = self.paused_until(idx) {
            self.advance_to(t);
            if let Link::Driver(d) = &mut self.endpoints[idx].link {
                let _ = d.vf.tx_resume();
                d.drv.handle_irqs(&mut d.vf, &d.irqs);
            }
        }
        std::mem::take(&mut *lock(&self.outbox))
    }

    fn paused_until(&self, idx: usize) -> Option<u64> {
        match &self.endpoints[idx].link {
            Link::Driver(d) => d.vf.tx_paused_until(),
            Link::Port => None,
        }
    }

    /// Hands one delivery to the endpoint on its port; returns that endpoint's answers.
    fn deliver(&mut self, d: Delivery) -> Vec<(usize, Bytes)> {
        let Some(idx) = self.endpoint_at(d.port) else {
            // No endpoint: a driver-less VF still takes the frame into its counters (the
            // switch counted it); nothing answers.
            return Vec::new();
        };
        let frames: Vec<Vec<u8>> = match &mut self.endpoints[idx].link {
            Link::Port => vec![d.frame.to_vec()],
            Link::Driver(dl) => {
                let shared = dl.vf.shared();
                if let Err(drop) = shared.receive(&d.frame, d.stripped_tci.map(|t| t.0)) {
                    tracing::debug!(?drop, port = %d.port, "scenario: VF model refused a frame");
                }
                dl.drv.handle_irqs(&mut dl.vf, &dl.irqs);
                dl.drv.received.drain(..).map(|r| r.data).collect()
            }
        };
        let stack = &mut self.endpoints[idx].stack;
        frames
            .iter()
            .flat_map(|f| stack.receive(f))
            .map(|answer| (idx, answer))
            .collect()
    }

    /// The MAC the stack of endpoint `idx` believes it has.
    pub fn mac_of(&self, idx: usize) -> MacAddr {
        self.endpoints[idx].stack.mac
    }

    pub fn ip_of(&self, idx: usize) -> Option<Ipv4Addr> {
        self.endpoints[idx].stack.ip
    }
}

fn driver_config(random_mac: [u8; 6]) -> DriverConfig {
    DriverConfig {
        random_mac,
        ..DriverConfig::default()
    }
}
