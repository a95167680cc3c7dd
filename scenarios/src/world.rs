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

    /// Makes the VF endpoints the mode names QEMU guests (before any endpoint is added).
    pub fn set_guest_mode(&mut self, mode: GuestMode) {
        self.guest_mode = Some(mode);
    }

    /// Whether any endpoint is a QEMU guest: answers then come in real time, from outside.
    pub fn has_guests(&self) -> bool {
        self.endpoints.iter().any(|e| e.guest)
    }

    /// Boots every guest endpoint's QEMU at once, then waits for each to be up (its igbvf
    /// netdev up with its IP, carrier on). The first guest that fails ends the boot phase with
    /// its error; the others are killed when the world drops.
    pub fn boot_guests(&mut self, scenario: &str) -> Result<(), GuestError> {
        let Some(mode) = &self.guest_mode else {
            return Ok(());
        };
        self.guest_scenario = scenario.to_string();
        let mut booting = Vec::new();
        for (idx, ep) in self.endpoints.iter().enumerate() {
            if !ep.guest {
                continue;
            }
            let socket = (mode.sockets)(ep.port).ok_or_else(|| GuestError::Boot {
                guest: ep.name.clone(),
                secs: 0.0,
                why: format!("no vfio-user socket for {}", ep.port),
                tail: String::new(),
            })?;
            let ip = ep.stack.ip;
            let card = self
                .nic(ep.port.nic)
                .map_or(model::Card::I82576, |n| n.card());
            booting.push((
                idx,
                Booting::spawn(scenario, &ep.name, &socket, ip, card, mode)?,
            ));
        }
        let names: Vec<&str> = booting
            .iter()
            .map(|(idx, _)| self.endpoints[*idx].name.as_str())
            .collect();
        if !names.is_empty() {
            mode.progress(&format!("{scenario}: booting {}", names.join(", ")));
        }
        let started = Instant::now();
        let until = started + mode.boot_timeout;
        let mut up = Vec::new();
        for (idx, b) in booting {
            let vm = b.wait(until)?;
            if let Some(mac) = vm.mac {
                self.endpoints[idx].stack.mac = mac;
            }
            mode.progress(&format!(
                "{scenario}: {} up ({}) in {:.1} s",
                self.endpoints[idx].name,
                vm.kernel.as_deref().unwrap_or("?"),
                started.elapsed().as_secs_f64()
            ));
            self.endpoints[idx].vm = Some(Box::new(vm));
            up.push(idx);
        }
        for idx in up {
            let modules = self.probe_brought_modules(idx)?;
            self.guest_modules.insert(idx, modules);
        }
        Ok(())
    }

    /// What endpoint `idx`'s guest has of the modules the user brought: loaded or not, the
    /// checksum of its file, the kernel's taint flags for it.
    fn probe_brought_modules(&mut self, idx: usize) -> Result<Vec<GuestModule>, GuestError> {
        let brought = match self.guest_mode.as_ref().and_then(|m| m.build.as_ref()) {
            Some(build) if !build.modules.is_empty() => build.modules.clone(),
            _ => return Ok(Vec::new()),
        };
        let mut script = String::new();
        for m in &brought {
            script += &format!(
                "echo \"@ {name} $(test -d /sys/module/{name} && echo 1 || echo 0) \
                 $(sha256sum {path} 2>/dev/null | cut -d' ' -f1) -$(cat /sys/module/{name}/taint 2>/dev/null)\"\n",
                name = m.name,
                path = m.guest
            );
        }
        let timeout = self.command_timeout();
        let answer = self.guest_command(idx, &script, timeout)?;
        Ok(brought
            .iter()
            .map(|m| {
                let line = answer
                    .output
                    .lines()
                    .find(|l| l.split_whitespace().nth(1) == Some(m.name.as_str()));
                let words: Vec<&str> = line.map_or(Vec::new(), |l| l.split_whitespace().collect());
                let sum = words.get(3).filter(|w| !w.starts_with('-'));
                GuestModule {
                    name: m.name.clone(),
                    path: m.guest.clone(),
                    loaded: words.get(2) == Some(&"1"),
                    sha256: sum.map(|w| w.to_string()),
                    expected_sha256: m.sha256.clone(),
                    taint: words
                        .last()
                        .and_then(|w| w.strip_prefix('-'))
                        .unwrap_or("")
                        .to_string(),
                }
            })
            .collect())
    }

    /// The run's QEMU guests: what each booted, its console's last lines.
    pub fn guest_infos(&self) -> Vec<GuestInfo> {
        self.endpoints
            .iter()
            .enumerate()
            .filter_map(|(idx, ep)| {
                let vm = ep.vm.as_ref()?;
                Some(GuestInfo {
                    endpoint: ep.name.clone(),
                    kernel: vm.kernel.clone(),
                    modules: self.guest_modules.get(&idx).cloned().unwrap_or_default(),
                    log: vm.log_path().display().to_string(),
                    console_tail: vm.console_tail(),
                })
            })
            .collect()
    }

    /// Reports a line of progress (the guest mode, on a terminal).
    pub fn progress(&self, line: &str) {
        if let Some(mode) = &self.guest_mode {
            mode.progress(line);
        }
    }

    /// Guest mode: kills endpoint `idx`'s QEMU (SIGKILL: its VF's client gone without a word,
    /// which `serve` answers by detaching and resetting the function), then boots a fresh guest
    /// on the same VF socket and waits until its igbvf is up.
    pub fn reattach_guest(&mut self, idx: usize) -> Result<(), GuestError> {
        let name = self.endpoints[idx].name.clone();
        let Some(mode) = &self.guest_mode else {
            return Err(GuestError::Gone {
                guest: name,
                tail: "not in the guest mode".into(),
            });
        };
        if let Some(vm) = self.endpoints[idx].vm.take() {
            vm.kill()?;
        }
        let ep = &self.endpoints[idx];
        let socket = (mode.sockets)(ep.port).ok_or_else(|| GuestError::Boot {
            guest: name.clone(),
            secs: 0.0,
            why: format!("no vfio-user socket for {}", ep.port),
            tail: String::new(),
        })?;
        let card = self
            .nic(ep.port.nic)
            .map_or(model::Card::I82576, |n| n.card());
        let booting = Booting::spawn(
            &self.guest_scenario,
            &name,
            &socket,
            ep.stack.ip,
            card,
            mode,
        )?;
        let vm = booting.wait(Instant::now() + mode.boot_timeout)?;
        // A fresh VM: a fresh stack, with the MAC its igbvf came up with.
        let ep = &mut self.endpoints[idx];
        ep.stack = HostStack::new(vm.mac.unwrap_or(MacAddr::ZERO), ep.stack.ip, ep.stack.vlan);
        ep.vm = Some(Box::new(vm));
        self.pump(VecDeque::new());
        let modules = self.probe_brought_modules(idx)?;
        self.guest_modules.insert(idx, modules);
        Ok(())
    }

    /// In process: what `serve` does when endpoint `idx`'s VF client disconnects (no more DMA
    /// or interrupts, frames waiting for it dropped, then the function-level reset, which the
    /// PF sees as a VF reset), then a fresh guest on the VF — new memory, a new driver, a new
    /// stack — brought up as at setup. Returns the VF_RESET reply of a port-attached endpoint.
    pub fn reattach(&mut self, idx: usize) -> Result<Option<Message>, crate::error::StepError> {
        let name = self.endpoints[idx].name.clone();
        let fail = |why: String| crate::error::StepError::Reattach {
            name: name.clone(),
            why,
        };
        let ep = &mut self.endpoints[idx];
        let Some(g) = ep.vf.as_mut() else {
            return Err(fail("not a VF endpoint".into()));
        };
        let handle = g.guest.vf.clone();
        handle.detach();
        handle.reset();
        let DriverConfig {
            card, random_mac, ..
        } = *g.guest.drv.config();
        g.guest = SoftGuest::attach(handle, driver_config(card, random_mac))
            .map_err(|e| fail(e.to_string()))?;
        g.next_watchdog_ns = 0;
        ep.stack = HostStack::new(MacAddr::ZERO, ep.stack.ip, ep.stack.vlan);
        // The reset's mailbox interrupt went nowhere: no client was attached.
        self.pump(VecDeque::new());
        self.bring_up(idx)
            .map_err(|e| fail(format!("bring-up: {e}")))
    }

    /// In process: endpoint `idx`'s interface joins (`join`) or leaves `group`; its software
    /// igbvf sends the whole list with SET_MULTICAST (`igbvf_set_multi`). Returns the list.
    pub fn multicast(
        &mut self,
        idx: usize,
        group: MacAddr,
        join: bool,
    ) -> Result<Vec<MacAddr>, crate::error::StepError> {
        use crate::error::StepError;
        if !group.is_multicast() {
            return Err(StepError::NotMulticast(group));
        }
        let ep = &mut self.endpoints[idx];
        let Some(g) = ep.vf.as_mut().filter(|g| g.attach == Attach::Driver) else {
            return Err(StepError::NoDriver(ep.name.clone()));
        };
        let mut list = g.guest.drv.mc_list.clone();
        list.retain(|&m| m != group.0);
        if join {
            list.push(group.0);
        }
        g.guest
            .drv
            .set_mc_list(&g.guest.vf, list)
            .map_err(MailboxError::from)?;
        g.guest.poll();
        let list = g.guest.drv.mc_list.iter().map(|&m| MacAddr(m)).collect();
        self.settle();
        Ok(list)
    }

    /// Where the card's threads log (guest mode), if the mode says.
    pub fn log_tap(&self) -> Option<&crate::logs::LogTap> {
        self.guest_mode.as_ref().and_then(|m| m.log_tap.as_ref())
    }

    /// The helper the guests run for `send` and `traffic` ([`crate::guest_send`]), or why
    /// there is none.
    pub fn guest_helper(&self) -> Result<(), String> {
        match &self.guest_mode {
            Some(m) => m.helper.as_ref().map(|_| ()).map_err(Clone::clone),
            None => Err("not in the guest mode".into()),
        }
    }

    /// The default timeout of a command in a guest.
    pub fn command_timeout(&self) -> std::time::Duration {
        self.guest_mode
            .as_ref()
            .map_or(crate::guests::DEFAULT_COMMAND_TIMEOUT, |m| {
                m.command_timeout
            })
    }

    /// Runs `command` in endpoint `idx`'s guest, answering what the in-process endpoints
    /// receive meanwhile (the guest's frames arrive in real time).
    pub fn guest_command(
        &mut self,
        idx: usize,
        command: &str,
        timeout: std::time::Duration,
    ) -> Result<Answer, GuestError> {
        let pending = self.guest_start(idx, command, timeout)?;
        self.guest_finish(idx, &pending)
    }

    /// Sends `command` to endpoint `idx`'s guest without waiting for its answer
    /// ([`World::guest_finish`] waits), so that several guests run commands at once.
    pub fn guest_start(
        &mut self,
        idx: usize,
        command: &str,
        timeout: std::time::Duration,
    ) -> Result<Pending, GuestError> {
        let name = self.endpoints[idx].name.clone();
        let Some(vm) = self.endpoints[idx].vm.as_mut() else {
            return Err(GuestError::Gone {
                guest: name,
                tail: "not booted".into(),
            });
        };
        vm.start(command, timeout)
    }

    /// Waits for the answer to `pending` in endpoint `idx`'s guest, answering what the
    /// in-process endpoints receive meanwhile.
    pub fn guest_finish(&mut self, idx: usize, pending: &Pending) -> Result<Answer, GuestError> {
        let name = self.endpoints[idx].name.clone();
        loop {
            self.pump(VecDeque::new());
            let Some(vm) = self.endpoints[idx].vm.as_mut() else {
                return Err(GuestError::Gone {
                    guest: name,
                    tail: "not booted".into(),
                });
            };
            if let Some(a) = vm.try_answer(pending)? {
                self.pump(VecDeque::new());
                return Ok(a);
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// The answer to `pending` in endpoint `idx`'s guest if it came, without waiting.
    pub fn guest_poll(
        &mut self,
        idx: usize,
        pending: &Pending,
    ) -> Result<Option<Answer>, GuestError> {
        let name = self.endpoints[idx].name.clone();
        let Some(vm) = self.endpoints[idx].vm.as_mut() else {
            return Err(GuestError::Gone {
                guest: name,
                tail: "not booted".into(),
            });
        };
        vm.try_answer(pending)
    }

    /// Carries frames (answers of the in-process endpoints to what guests send) until `done`
    /// holds or `within` has passed; whether `done` held.
    pub fn pump_until(
        &mut self,
        within: std::time::Duration,
        done: impl Fn(&World) -> bool,
    ) -> bool {
        let until = Instant::now() + within;
        loop {
            self.pump(VecDeque::new());
            if done(self) {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
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

    /// Adds an endpoint and, for a VF with `bring_up` (the default), brings its driver up.
    pub fn add_endpoint(&mut self, spec: &EndpointSpec) -> Result<(), SetupError> {
        let port = spec.port;
        let name = spec.name.clone();
        if self.endpoint_at(port).is_some() {
            return Err(SetupError::DuplicatePort(port));
        }
        let Some(nic) = self.nic(port.nic).filter(|_| self.has_port(port)).cloned() else {
            return Err(SetupError::NoSuchPort { name, port });
        };
        if self.peer(port).is_some() {
            return Err(SetupError::Cabled { name, port });
        }
        let mac = match (port.port, spec.mac) {
            (_, Some(mac)) => mac,
            (PortId::Pf, None) => nic.with_pf(|pf| pf.switch().config().pf_mac.unwrap_or_default()),
            (PortId::Uplink(_), None) => return Err(SetupError::NeedsMac { name, port }),
            (PortId::Vf(_), None) => MacAddr::ZERO,
        };
        let stack = HostStack::new(mac, spec.ip, spec.vlan);
        let driver_guests = self.guest_mode.as_ref().is_some_and(|m| m.driver_endpoints);
        let as_guest =
            spec.attach == Attach::Guest || (driver_guests && spec.attach == Attach::Driver);
        if as_guest {
            if self.guest_mode.is_none() {
                return Err(SetupError::GuestModeNeeded { name });
            }
            if !matches!(port.port, PortId::Vf(_)) {
                return Err(SetupError::DriverNeedsVf { name, port });
            }
            self.endpoints.push(Endpoint {
                name,
                port,
                stack,
                vf: None,
                vm: None,
                guest: true,
            });
            return Ok(());
        }
        if spec.attach == Attach::Port
            && matches!(port.port, PortId::Vf(_))
            && nic.card() != model::Card::I82576
        {
            return Err(SetupError::InProcessCard {
                name,
                card: nic.card(),
            });
        }
        let vf = match (spec.attach, port.port) {
            (attach, PortId::Vf(vf)) => {
                let handle = nic.vf(vf).ok_or(SetupError::NoSuchPort {
                    name: name.clone(),
                    port,
                })?;
                let random_mac = spec
                    .fallback_mac
                    .map_or([0x02, 0x5a, 0x5a, 0x00, port.nic, vf as u8], |m| m.0);
                let guest = SoftGuest::attach(handle, driver_config(nic.card(), random_mac))
                    .map_err(|source| SetupError::Memory {
                        name: name.clone(),
                        source,
                    })?;
                Some(Box::new(VfGuest {
                    guest,
                    attach,
                    fallback: spec.fallback_mac,
                    next_watchdog_ns: 0,
                }))
            }
            (Attach::Driver | Attach::Guest, _) => {
                return Err(SetupError::DriverNeedsVf { name, port });
            }
            (Attach::Port, _) => {
                self.set_sink(port, true);
                None
            }
        };
        let is_vf = vf.is_some();
        self.endpoints.push(Endpoint {
            name: name.clone(),
            port,
            stack,
            vf,
            vm: None,
            guest: false,
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
            ..
        } = &mut **g;
        let fallback = *fallback;
        if *attach == Attach::Driver {
            // A reload: a fresh driver instance over the same function and memory.
            let DriverConfig {
                card, random_mac, ..
            } = *guest.drv.config();
            guest.reload(driver_config(card, random_mac));
            let mac = guest.up()?;
            // igbvf_reset at the end of probe.
            guest.drv.last_reset_ns = self.nics.first().map_or(START_NS, |n| n.now());
            self.endpoints[idx].stack.mac = MacAddr(mac);
            // igbvf_open starts the watchdog at once.
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
            // A soft guest is never attached as a QEMU guest: treated as driver-attached.
            Attach::Driver | Attach::Guest => {
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

    /// The card's ports, each with its switch's ports.
    pub fn card(&self) -> Vec<CardPort> {
        self.nics
            .iter()
            .enumerate()
            .map(|(k, nic)| CardPort {
                port: PfRef(k as u8),
                ports: nic.with_pf(|pf| {
                    pf.switch()
                        .ports()
                        .map(|p| PortRef::new(k as u8, p))
                        .collect()
                }),
            })
            .collect()
    }

    /// Every endpoint and its port.
    pub fn endpoints_at(&self) -> Vec<EndpointAt> {
        self.endpoints
            .iter()
            .map(|e| EndpointAt {
                name: e.name.clone(),
                port: e.port,
            })
            .collect()
    }

    /// Each switch port's counters now, every port of the card.
    pub fn port_counters(&self) -> BTreeMap<PortRef, PortCounters> {
        let mut out = BTreeMap::new();
        for (k, nic) in self.nics.iter().enumerate() {
            nic.with_pf(|pf| {
                for (p, c) in pf.switch().all_counters() {
                    out.insert(PortRef::new(k as u8, p), c.clone());
                }
            });
        }
        out
    }

    /// Each VF function's counters now, every port of the card.
    pub fn vf_stats(&self) -> BTreeMap<PortRef, VfStats> {
        let mut out = BTreeMap::new();
        for (k, nic) in self.nics.iter().enumerate() {
            for v in 0..nic.num_vfs() {
                if let Some(h) = nic.vf(v) {
                    out.insert(PortRef::new(k as u8, PortId::Vf(v)), h.stats());
                }
            }
        }
        out
    }

    /// Each port's faults now: those carried out, by kind, and those armed, with what each has
    /// seen and hit. The one place the runner reads the NICs' faults.
    pub fn faults(&self) -> Vec<PortFaults> {
        self.nics
            .iter()
            .enumerate()
            .map(|(k, nic)| {
                let port = PfRef(k as u8);
                PortFaults {
                    port,
                    carried_out: nic
                        .counters()
                        .faults
                        .iter()
                        .map(|(kind, n)| (kind.to_string(), *n))
                        .collect(),
                    armed: nic
                        .faults()
                        .into_iter()
                        .map(|f| ArmedFault {
                            port,
                            fault: f.fault,
                            seen: f.seen,
                            fired: f.fired,
                        })
                        .collect(),
                }
            })
            .collect()
    }

    /// The PF agents' refusals so far, per VF and reason.
    pub fn refusals(&self) -> BTreeMap<PortRef, Vec<(RefusalReason, u64)>> {
        let mut out = BTreeMap::new();
        for (k, nic) in self.nics.iter().enumerate() {
            nic.with_pf(|pf| {
                for vf in 0..pf.num_vfs() {
                    let r = pf
                        .refusals(vf)
                        .map(|r| r.iter().collect())
                        .unwrap_or_default();
                    out.insert(PortRef::new(k as u8, PortId::Vf(vf)), r);
                }
            });
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

fn driver_config(card: model::Card, random_mac: [u8; 6]) -> DriverConfig {
    DriverConfig {
        card,
        random_mac,
        ..DriverConfig::default()
    }
}
