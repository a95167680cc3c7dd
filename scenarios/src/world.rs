//! The NIC a scenario runs on and the endpoints attached to it. The NIC is a
//! [`model::Nic`], the same datapath `serve` runs: a VF endpoint is a guest of one VF (memory,
//! interrupts, the software igbvf driving the VF function's rings), a PF or uplink endpoint
//! sends into its port and receives through the port's sink. The world observes every frame the
//! switch handles and carries frames from endpoint to endpoint until nothing more is sent.

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
use model::testing::{DriverConfig, DrvError, SoftGuest, XmitOpts};
use model::{Clock, ManualClock, Nic, NicConfig, Observer, PortSink, Switched, VfHandle};

use crate::error::{MailboxError, SetupError};
use crate::format::{Attach, EndpointSpec, NicSpec};
use crate::stack::HostStack;

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
    /// Real time; the NIC's timer thread, when the world started one, runs while it lives.
    RealTime {
        _timer: Option<TimerHandle>,
    },
}

/// A frame seen at a port, as a capture on that port's function would see it.
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

/// What the NIC's observer saw, not yet attributed to a step.
#[derive(Clone, Debug)]
struct Seen {
    time_ns: u64,
    ingress: PortId,
    frame: Bytes,
    deliveries: Vec<Delivery>,
    drops: Vec<DropRecord>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The world's observer of the NIC and the sink of its PF and uplink endpoints.
#[derive(Default)]
struct Taps {
    seen: Mutex<Vec<Seen>>,
    /// Frames delivered to a PF or uplink endpoint's port, in order.
    inbox: Mutex<Vec<(PortId, Bytes)>>,
}

impl Observer for Taps {
    fn switched(&self, e: &Switched<'_>) {
        lock(&self.seen).push(Seen {
            time_ns: e.time_ns,
            ingress: e.ingress,
            frame: e.frame.clone(),
            deliveries: e.deliveries.to_vec(),
            drops: e.drops.to_vec(),
        });
    }
}

/// The sink of one PF or uplink endpoint's port.
struct Inbox(Arc<Taps>);

impl PortSink for Inbox {
    fn deliver(&self, d: &Delivery) {
        lock(&self.0.inbox).push((d.port, d.frame.clone()));
    }
}

/// An endpoint's guest on a VF.
pub struct VfGuest {
    pub guest: SoftGuest,
    /// Whether the software igbvf does the whole bring-up (`attach = "driver"`), or the
    /// endpoint scripts the mailbox itself over the VF's registers and only uses the rings.
    pub attach: Attach,
    fallback: Option<MacAddr>,
}

pub struct Endpoint {
    pub name: String,
    pub port: PortId,
    pub stack: HostStack,
    /// The guest behind a VF port; `None` for PF and uplink endpoints.
    pub vf: Option<Box<VfGuest>>,
}

pub struct World {
    pub nic: Arc<Nic>,
    clock: RunClock,
    taps: Arc<Taps>,
    pub endpoints: Vec<Endpoint>,
    /// Every frame at every port, both directions, since the start.
    pub captures: Vec<Captured>,
    /// Everything the switch did since the last [`World::take_events`].
    events: Vec<SwitchEvent>,
}

impl World {
    pub fn new(spec: &NicSpec, mode: TimeMode) -> Result<World, SetupError> {
        let config = NicConfig {
            num_vfs: spec.vfs,
            pf_mac: spec.pf_mac,
            mac_assignment: spec.mac_assignment.into(),
            num_uplinks: spec.uplinks,
            link_speed_mbps: spec.link_speed_mbps,
        };
        let (clock, nic) = match mode {
            TimeMode::Simulated => {
                let c = Arc::new(ManualClock::new(START_NS));
                let nic = Nic::new(&config, c.clone())?;
                (RunClock::Simulated(c), nic)
            }
            TimeMode::RealTime => {
                let c = Arc::new(RealClock(Instant::now()));
                let nic = Nic::new(&config, c.clone())?;
                // Without a timer thread a shaped queue would wait for the next step.
                let timer = nic.spawn_timer().ok();
                (RunClock::RealTime { _timer: timer }, nic)
            }
        };
        Ok(World::with_nic(nic, clock))
    }

    /// A world on a NIC someone else built (a `serve`-shaped one, say), in real time.
    pub fn on_nic(nic: Arc<Nic>) -> World {
        World::with_nic(nic, RunClock::RealTime { _timer: None })
    }

    fn with_nic(nic: Arc<Nic>, clock: RunClock) -> World {
        let taps = Arc::new(Taps::default());
        nic.set_observer(Some(taps.clone()));
        World {
            nic,
            clock,
            taps,
            endpoints: Vec::new(),
            captures: Vec::new(),
            events: Vec::new(),
        }
    }

    pub fn now(&self) -> u64 {
        self.nic.now()
    }

    /// Lets time pass until `t` (never backwards) and resumes the TX queues due by then.
    pub fn advance_to(&mut self, t: u64) {
        match &self.clock {
            RunClock::Simulated(c) => c.advance_to(t),
            RunClock::RealTime { .. } => {
                let now = self.now();
                if t > now {
                    std::thread::sleep(std::time::Duration::from_nanos(t - now));
                }
            }
        }
        let now = self.now();
        let _ = self.nic.poll(now);
    }

    pub fn endpoint(&self, name: &str) -> Option<usize> {
        self.endpoints.iter().position(|e| e.name == name)
    }

    fn endpoint_at(&self, port: PortId) -> Option<usize> {
        self.endpoints.iter().position(|e| e.port == port)
    }

    /// What the switch did since the last call (frames observed since are attributed first).
    pub fn take_events(&mut self) -> Vec<SwitchEvent> {
        self.collect(Origin::Step);
        std::mem::take(&mut self.events)
    }

    /// Moves what the observer saw into the events (attributed to `origin`) and the captures.
    fn collect(&mut self, origin: Origin) {
        let seen = std::mem::take(&mut *lock(&self.taps.seen));
        for s in seen {
            self.captures.push(Captured {
                port: s.ingress,
                direction: Direction::Tx,
                time_ns: s.time_ns,
                frame: s.frame,
                stripped_tci: None,
            });
            for d in &s.deliveries {
                self.captures.push(Captured {
                    port: d.port,
                    direction: Direction::Rx,
                    time_ns: s.time_ns,
                    frame: d.frame.clone(),
                    stripped_tci: d.stripped_tci,
                });
            }
            self.events.push(SwitchEvent {
                origin,
                ingress: s.ingress,
                deliveries: s.deliveries,
                drops: s.drops,
            });
        }
    }

    /// Adds an endpoint and, for a VF with `bring_up` (the default), brings its driver up.
    pub fn add_endpoint(&mut self, spec: &EndpointSpec) -> Result<(), SetupError> {
        let port = spec.port.0;
        let name = spec.name.clone();
        if self.endpoint_at(port).is_some() {
            return Err(SetupError::DuplicatePort(port));
        }
        if !self
            .nic
            .with_pf(|pf| pf.switch().ports().any(|p| p == port))
        {
            return Err(SetupError::NoSuchPort { name, port });
        }
        let mac = match (port, spec.mac) {
            (_, Some(mac)) => mac,
            (PortId::Pf, None) => self
                .nic
                .with_pf(|pf| pf.switch().config().pf_mac.unwrap_or_default()),
            (PortId::Uplink(_), None) => return Err(SetupError::NeedsMac { name, port }),
            (PortId::Vf(_), None) => MacAddr::ZERO,
        };
        let stack = HostStack::new(mac, spec.ip, spec.vlan);
        let vf = match (spec.attach, port) {
            (attach, PortId::Vf(vf)) => {
                let handle = self.nic.vf(vf).ok_or(SetupError::NoSuchPort {
                    name: name.clone(),
                    port,
                })?;
                let random_mac = spec
                    .fallback_mac
                    .map_or([0x02, 0x5a, 0x5a, 0x00, 0x00, vf as u8], |m| m.0);
                let guest =
                    SoftGuest::attach(handle, driver_config(random_mac)).map_err(|source| {
                        SetupError::Memory {
                            name: name.clone(),
                            source,
                        }
                    })?;
                Some(Box::new(VfGuest {
                    guest,
                    attach,
                    fallback: spec.fallback_mac,
                }))
            }
            (Attach::Driver, other) => {
                return Err(SetupError::DriverNeedsVf { name, port: other });
            }
            (Attach::Port, _) => {
                self.nic
                    .set_port_sink(port, Some(Arc::new(Inbox(self.taps.clone()))));
                None
            }
        };
        let is_vf = vf.is_some();
        self.endpoints.push(Endpoint {
            name: name.clone(),
            port,
            stack,
            vf,
        });
        let idx = self.endpoints.len() - 1;
        if is_vf {
            if spec.bring_up.unwrap_or(true) {
                self.bring_up(idx)
                    .map_err(|source| SetupError::BringUp { name, source })?;
            } else if let Some(g) = self.endpoints[idx].vf.as_mut() {
                // No mailbox conversation, but a guest whose rings are up.
                let VfGuest { guest, .. } = &mut **g;
                guest.drv.probe_bus(&guest.vf);
                guest.drv.open_rings(&guest.vf);
            }
        }
        Ok(())
    }

    /// The VF driver's bring-up (probe, or a reload). Port-attached: igbvf's reset handshake
    /// scripted over the VF's mailbox registers (VTCTRL.RST, RSTI/RSTD, VF_RESET); the MAC
    /// from the reply, or zeros on NACK, or the fallback registered with SET_MAC_ADDR; then the
    /// rings. Driver-attached: the software igbvf's probe and open. Returns the VF_RESET reply
    /// (port-attached only).
    pub fn bring_up(&mut self, idx: usize) -> Result<Option<Message>, MailboxError> {
        let Some(g) = self.endpoints[idx].vf.as_mut() else {
            return Ok(None);
        };
        let VfGuest {
            guest,
            attach,
            fallback,
        } = &mut **g;
        let fallback = *fallback;
        if *attach == Attach::Driver {
            // A reload: a fresh driver instance over the same function and memory.
            let random_mac = guest.drv.config().random_mac;
            guest.reload(driver_config(random_mac));
            let mac = guest.up()?;
            guest.drv.check_link(&guest.vf);
            self.endpoints[idx].stack.mac = MacAddr(mac);
            self.settle();
            return Ok(None);
        }
        guest.drv.probe_bus(&guest.vf);
        let vf = guest.vf.clone();
        wr(&vf, regs::VTCTRL, regs::ctrl::RST);
        let mut polls = 0;
        while rd(&vf, regs::V2PMAILBOX) & (v2p::RSTI | v2p::RSTD) != 0 {
            polls += 1;
            if polls > RESET_POLLS {
                return Err(MailboxError::PfInReset);
            }
        }
        let reply = raw_exchange(&vf, &[u32::from(msg::ID_VF_RESET)], RESET_REPLY_WORDS)?;
        let mut mac = match reply.msg {
            mailbox::MailboxMsg::VfResetReply { mac } if reply.flags.ack => mac,
            _ => MacAddr::ZERO,
        };
        if let (true, Some(own)) = (mac.is_zero(), fallback) {
            let set = Message::request(mailbox::MailboxMsg::SetMacAddr {
                op: mailbox::MacFilterOp::Set,
                mac: own,
            });
            let answer = raw_exchange(&vf, &set.to_words(), RESET_REPLY_WORDS)?;
            if answer.flags.ack {
                mac = own;
            }
        }
        guest.drv.open_rings(&vf);
        self.endpoints[idx].stack.mac = mac;
        self.settle();
        Ok(Some(reply))
    }

    /// igbvf's `write_posted` then `read_posted` of `reply_words` words, from endpoint `idx`'s
    /// VF: through the software igbvf (driver-attached), or scripted over the VF's registers.
    pub fn mailbox_exchange(
        &mut self,
        idx: usize,
        words: &[u32],
        reply_words: usize,
    ) -> Result<Message, MailboxError> {
        let name = self.endpoints[idx].name.clone();
        let Some(g) = self.endpoints[idx].vf.as_mut() else {
            return Err(MailboxError::NotAVf(name));
        };
        let reply = match g.attach {
            Attach::Driver => {
                let guest = &mut g.guest;
                guest.drv.write_posted(&guest.vf, words)?;
                let r = guest.drv.read_posted(&guest.vf, reply_words)?;
                guest.poll();
                Message::parse(&r)?
            }
            Attach::Port => raw_exchange(&g.guest.vf, words, reply_words)?,
        };
        self.settle();
        Ok(reply)
    }

    /// Lets every guest handle the interrupts it got (a PF ping, a link change: igbvf then
    /// re-checks its link) and answers what they received.
    pub fn settle(&mut self) {
        for ep in &mut self.endpoints {
            if let Some(g) = ep.vf.as_mut() {
                g.guest.poll();
                if g.attach == Attach::Driver {
                    g.guest.drv.check_link(&g.guest.vf);
                }
            }
        }
        self.pump(VecDeque::new());
    }

    /// Sends `frame` from endpoint `idx` and carries every frame it causes (answers included)
    /// until the network is quiet.
    pub fn send(&mut self, idx: usize, frame: Bytes) {
        self.pump(VecDeque::from([(idx, frame, Origin::Step)]));
    }

    fn pump(&mut self, mut queue: VecDeque<(usize, Bytes, Origin)>) {
        let mut budget = MAX_FRAMES_PER_PUMP;
        loop {
            // What arrived so far (bring-up traffic, a resumed queue) is answered too.
            self.collect(Origin::Reply);
            for (ep, answer) in self.receive_all() {
                queue.push_back((ep, answer, Origin::Reply));
            }
            let Some((from, frame, origin)) = queue.pop_front() else {
                return;
            };
            if budget == 0 {
                tracing::warn!("scenario: frame pump stopped after {MAX_FRAMES_PER_PUMP} frames");
                return;
            }
            budget -= 1;
            self.transmit(from, frame);
            self.collect(origin);
        }
    }

    /// Puts one frame on endpoint `idx`'s link: into its VF's TX ring (time passes while the
    /// shaper holds the queue, as the timer would let it), or into its PF/uplink port.
    fn transmit(&mut self, idx: usize, frame: Bytes) {
        let port = self.endpoints[idx].port;
        let Some(g) = self.endpoints[idx].vf.as_mut() else {
            self.nic.inject(port, frame);
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

    /// Hands every endpoint what it received; returns their answers.
    fn receive_all(&mut self) -> Vec<(usize, Bytes)> {
        let inbox = std::mem::take(&mut *lock(&self.taps.inbox));
        let mut answers = Vec::new();
        for (port, frame) in inbox {
            if let Some(idx) = self.endpoint_at(port) {
                let stack = &mut self.endpoints[idx].stack;
                answers.extend(stack.receive(&frame).into_iter().map(|a| (idx, a)));
            }
        }
        for (idx, ep) in self.endpoints.iter_mut().enumerate() {
            let Some(g) = ep.vf.as_mut() else {
                continue;
            };
            g.guest.poll();
            for f in g.guest.take_received() {
                answers.extend(ep.stack.receive(&f.data).into_iter().map(|a| (idx, a)));
            }
        }
        answers
    }

    /// Each switch port's counters now.
    pub fn port_counters(&self) -> BTreeMap<PortId, PortCounters> {
        self.nic.with_pf(|pf| {
            pf.switch()
                .all_counters()
                .map(|(p, c)| (p, c.clone()))
                .collect()
        })
    }

    /// The PF agent's refusals so far, per VF and reason.
    pub fn refusals(&self) -> Vec<Vec<(RefusalReason, u64)>> {
        self.nic.with_pf(|pf| {
            (0..pf.num_vfs())
                .map(|vf| {
                    pf.refusals(vf)
                        .map(|r| r.iter().collect())
                        .unwrap_or_default()
                })
                .collect()
        })
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
    fn drop(&mut self) {
        self.nic.set_observer(None);
    }
}

fn rd(vf: &VfHandle, offset: u64) -> u32 {
    let mut b = [0u8; 4];
    // A 4-byte aligned BAR0 read is always accepted.
    let _ = vf.region_read(0, offset, &mut b);
    u32::from_le_bytes(b)
}

fn wr(vf: &VfHandle, offset: u64, value: u32) {
    let _ = vf.region_write(0, offset, &value.to_le_bytes());
}

/// One request and its reply over VF `vf`'s mailbox registers, in igbvf's order: take VFU,
/// write the words, REQ; PFACK and PFSTS must be set; take VFU, read the reply, ACK.
fn raw_exchange(vf: &VfHandle, words: &[u32], reply_words: usize) -> Result<Message, MailboxError> {
    wr(vf, regs::V2PMAILBOX, v2p::VFU);
    if rd(vf, regs::V2PMAILBOX) & v2p::VFU == 0 {
        return Err(MailboxError::LockNotGranted);
    }
    for (w, &value) in words.iter().enumerate() {
        wr(vf, regs::VMBMEM + 4 * w as u64, value);
    }
    wr(vf, regs::V2PMAILBOX, v2p::REQ);
    let status = rd(vf, regs::V2PMAILBOX);
    if status & v2p::PFACK == 0 || status & v2p::PFSTS == 0 {
        return Err(MailboxError::NoReply(status));
    }
    wr(vf, regs::V2PMAILBOX, v2p::VFU);
    let reply: Vec<u32> = (0..reply_words)
        .map(|w| rd(vf, regs::VMBMEM + 4 * w as u64))
        .collect();
    wr(vf, regs::V2PMAILBOX, v2p::ACK);
    Ok(Message::parse(&reply)?)
}

fn driver_config(random_mac: [u8; 6]) -> DriverConfig {
    DriverConfig {
        random_mac,
        ..DriverConfig::default()
    }
}
