//! Running a scenario: setup, each step's action, then its checks (`expect`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eswitch::{DropReason, MacAddr, PortCounters};
use mailbox::ixgbe::regs::len as ixgbe_len;
use mailbox::ixgbe::{IxgbeMessage, IxgbeMsg, XcastMode};
use mailbox::{MacFilterOp, MailboxMsg, Message, PromiscFlags};
use model::nic::faults::Fault;

use crate::error::{SetupError, StepError};
use crate::expect::{counter_values, CheckCtx};
use crate::format::{Adopt, Expect, MailboxRequest, PromiscMode, Proto, ScenarioFile, Step, Xcast};
use crate::guest_send::{self, crafted_frame, FrameSpec};
use crate::iperf;
use crate::load::Scenario;
use crate::netview::{self, NetView};
use crate::outcome::{list, verdict, Outcome};
use crate::ports::Cable;
use crate::ports::{PfRef, PortRef};
use crate::report::{CounterChange, FramePath, PortFaults, ScenarioReport, StepReport};
use crate::world::{Captured, Origin, SwitchEvent, TimeMode, World};

mod act;
mod guest;
use act::act;
use guest::*;

/// Default traffic frame length: a full 1500-byte MTU frame without FCS.
const DEFAULT_TRAFFIC_FRAME_LEN: usize = 1514;
const DEFAULT_TRAFFIC_MS: u64 = 1000;
/// The 82576's link speed, for a sender whose NIC cannot be found.
const DEFAULT_LINK_MBPS: u32 = 1000;
const NS_PER_MS: u64 = 1_000_000;
/// Guest mode: how long an in-process endpoint waits for a guest's answer (an ARP reply, an
/// echo reply), and how long nobody answering takes.
const GUEST_ANSWER_WAIT: Duration = Duration::from_secs(2);
/// Guest mode: how long a step that changes the card (`set`, `link`, `fault`) lets the guests
/// react (igbvf's mailbox interrupt, its link check) inside the step's window.
const GUEST_REACT: Duration = Duration::from_millis(300);
/// Kernel log lines of one guest a step's report lists.
const GUEST_LOG_LINES: usize = 8;

/// How to run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub time: TimeMode,
}

/// A finished run: the report, every frame every port saw (for capture files), and the
/// card's counters at the end.
#[derive(Debug)]
pub struct Run {
    pub report: ScenarioReport,
    pub captures: Vec<Captured>,
    /// Each switch port's counters, every port of the card.
    pub ports: BTreeMap<PortRef, PortCounters>,
    /// Each VF function's counters, every port of the card.
    pub vfs: BTreeMap<PortRef, model::VfStats>,
}

type StepResult = Result<Outcome, StepError>;

/// Runs one scenario on a card of its own.
pub fn run(scenario: &Scenario, opts: &RunOptions) -> Run {
    run_in(scenario, World::new(&scenario.file.nic, opts.time))
}

/// Runs one scenario on NICs built elsewhere (`serve`-shaped ones, say), in real time: `nics`
/// are the card's ports, port 0 first, as many as the scenario's `[nic] ports` (else the run
/// fails at setup). The rest of the scenario's `[nic]` section is not applied: the NICs are
/// what they are. Its cables are plugged between them as in [`run`].
pub fn run_on(scenario: &Scenario, nics: &[Arc<model::Nic>]) -> Run {
    let want = scenario.file.nic.ports;
    let world = if nics.len() == usize::from(want) {
        World::on_nics(nics.to_vec())
    } else {
        Err(SetupError::NicCount {
            want: Some(want),
            got: nics.len(),
        })
    };
    run_in(scenario, world)
}

/// Runs one scenario on NICs built elsewhere (`serve`'s, whose VFs are served over vfio-user)
/// in real time, as [`run_on`], in the guest mode: the VF endpoints `mode` names
/// (`attach = "guest"`, and every driver-attached one with
/// [`GuestMode::driver_endpoints`](crate::guests::GuestMode::driver_endpoints)) are QEMU guests
/// running igbvf on their VF's socket, all booted at once before the first step. A guest that does
/// not come up ends the run at setup, naming it and quoting its console.
pub fn run_with_guests(
    scenario: &Scenario,
    nics: &[Arc<model::Nic>],
    mode: crate::guests::GuestMode,
) -> Run {
    let want = scenario.file.nic.ports;
    let world = if nics.len() == usize::from(want) {
        World::on_nics(nics.to_vec()).map(|mut w| {
            w.set_guest_mode(mode);
            w
        })
    } else {
        Err(SetupError::NicCount {
            want: Some(want),
            got: nics.len(),
        })
    };
    run_in(scenario, world)
}

fn run_in(scenario: &Scenario, world: Result<World, SetupError>) -> Run {
    let wall = Instant::now();
    let file = &scenario.file;
    let mut report = ScenarioReport {
        name: scenario.name.clone(),
        file: scenario.path.display().to_string(),
        description: file.description.clone(),
        reproduces: file.reproduces.clone(),
        setup_error: None,
        card: Vec::new(),
        endpoints: Vec::new(),
        steps: Vec::new(),
        faults: Vec::new(),
        pass: false,
        wall_ms: 0.0,
        scenario_ms: 0.0,
        guests: Vec::new(),
    };
    let mut world = match world.and_then(|w| setup(w, file, &scenario.name)) {
        Ok(w) => w,
        Err(e) => {
            report.setup_error = Some(e.to_string());
            report.wall_ms = wall.elapsed().as_secs_f64() * 1e3;
            return Run {
                report,
                captures: Vec::new(),
                ports: BTreeMap::new(),
                vfs: BTreeMap::new(),
            };
        }
    };
    report.card = world.card();
    report.endpoints = world.endpoints_at();
    let start_ns = world.now();
    let steps = file.steps.len();
    for (index, step) in file.steps.iter().enumerate() {
        let started = Instant::now();
        let r = run_step(&mut world, index, step);
        let mark = match (&r.skipped, r.pass) {
            (Some(_), _) => "skip",
            (None, true) => "ok",
            (None, false) => "FAIL",
        };
        world.progress(&format!(
            "{}: step {}/{steps} {mark}: {} ({:.1} s)",
            scenario.name,
            index + 1,
            r.action,
            started.elapsed().as_secs_f64()
        ));
        report.steps.push(r);
    }
    report.guests = world.guest_infos();
    report.faults = world
        .faults()
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect();
    report.pass = report.setup_error.is_none() && report.steps.iter().all(|s| s.pass);
    report.scenario_ms = (world.now() - start_ns) as f64 / NS_PER_MS as f64;
    report.wall_ms = wall.elapsed().as_secs_f64() * 1e3;
    Run {
        report,
        captures: std::mem::take(&mut world.captures),
        ports: world.port_counters(),
        vfs: world.vf_stats(),
    }
}

fn setup(mut world: World, file: &ScenarioFile, name: &str) -> Result<World, SetupError> {
    for p in &file.policies {
        let words: Vec<&str> = p.set.split_whitespace().collect();
        let nic = world.nic(p.port.0).ok_or(SetupError::NoSuchPf {
            port: p.port,
            vf: p.vf,
        })?;
        nic.configure_vf_words(p.vf, &words)
            .map_err(|source| SetupError::Policy {
                port: p.port,
                vf: p.vf,
                words: p.set.clone(),
                source,
            })?;
    }
    for c in &file.cables {
        world.plug(c.a, c.b).map_err(|source| SetupError::Cable {
            cable: Cable { a: c.a, b: c.b },
            source,
        })?;
    }
    for ep in &file.endpoints {
        world.add_endpoint(ep)?;
    }
    world.boot_guests(name)?;
    // Bring-up traffic is not part of any step.
    let _ = world.take_events();
    Ok(world)
}

fn label(step: &Step) -> (String, &Expect) {
    let with = |label: &Option<String>, what: String| match label {
        Some(l) => format!("{l} [{what}]"),
        None => what,
    };
    match step {
        Step::Ping {
            label: l,
            from,
            target,
            count,
            expect,
        } => (
            with(l, format!("{from} pings {target} ×{}", count.unwrap_or(1))),
            expect,
        ),
        Step::Arping {
            label: l,
            from,
            target,
            expect,
        } => (with(l, format!("{from} ARPs for {target}")), expect),
        Step::Send {
            label: l,
            from,
            dst,
            src,
            vlan,
            size,
            count,
            expect,
            ..
        } => {
            let mut what = format!("{from} sends {} frame(s) to {}", count.unwrap_or(1), dst.0);
            if let Some(s) = src {
                what += &format!(" from {s}");
            }
            if let Some(v) = vlan {
                what += &format!(" tagged vid {v}");
            }
            if let Some(n) = size {
                what += &format!(", {n} bytes");
            }
            (with(l, what), expect)
        }
        Step::Set {
            label: l,
            port,
            vf,
            set,
            expect,
        } => (with(l, format!("ip link set {port} vf {vf} {set}")), expect),
        Step::Mailbox {
            label: l,
            from,
            request,
            mac,
            groups,
            vid,
            promisc,
            expect,
            ..
        } => {
            let mut what = format!("{from} asks the PF over the mailbox: {}", request.name());
            if let Some(m) = mac {
                what += &format!(" {m}");
            }
            if !groups.is_empty() {
                what += &format!(" {}", list(groups.iter()));
            }
            if let Some(v) = vid {
                what += &format!(" vid {v}");
            }
            if let Some(p) = promisc {
                what += &format!(" {p:?}").to_lowercase();
            }
            (with(l, what), expect)
        }
        Step::Reload {
            label: l,
            endpoint,
            expect,
        } => (
            with(l, format!("reload the VF driver of {endpoint}")),
            expect,
        ),
        Step::Join {
            label: l,
            endpoint,
            group,
            expect,
        } => (
            with(l, format!("{endpoint} joins multicast group {group}")),
            expect,
        ),
        Step::Leave {
            label: l,
            endpoint,
            group,
            expect,
        } => (
            with(l, format!("{endpoint} leaves multicast group {group}")),
            expect,
        ),
        Step::Reattach {
            label: l,
            endpoint,
            expect,
        } => (
            with(
                l,
                format!("{endpoint}'s VM is killed; a fresh driver attaches to its VF"),
            ),
            expect,
        ),
        Step::Link {
            label: l,
            port,
            up,
            expect,
        } => {
            let which = if *port == PfRef::default() {
                "PF".to_string()
            } else {
                port.to_string()
            };
            let state = if *up { "up" } else { "down" };
            (with(l, format!("{which} link {state}")), expect)
        }
        Step::Cable {
            label: l,
            a,
            b,
            plug,
            expect,
        } => {
            let cable = Cable { a: *a, b: *b };
            let what = if *plug {
                format!("plug a cable into {cable}")
            } else {
                format!("pull the cable {cable} out")
            };
            (with(l, what), expect)
        }
        Step::Fault {
            label: l,
            port,
            fault,
            expect,
        } => (with(l, format!("fault {port}: {fault}")), expect),
        Step::Wait {
            label: l,
            ms,
            expect,
        } => (with(l, format!("wait {ms} ms")), expect),
        Step::Traffic {
            label: l,
            from,
            to,
            proto: Proto::Udp,
            offered_mbps,
            expect,
            ..
        } => {
            let offered = offered_mbps.map_or("line rate".to_string(), |r| format!("{r} Mbit/s"));
            (with(l, format!("UDP {from} → {to} at {offered}")), expect)
        }
        Step::Traffic {
            label: l,
            from,
            to,
            proto: Proto::Tcp,
            offered_mbps,
            expect,
            ..
        } => {
            let offered = offered_mbps.map_or(String::new(), |r| format!(" at {r} Mbit/s"));
            (
                with(l, format!("TCP {from} → {to}{offered} (iperf3)")),
                expect,
            )
        }
        Step::Shell {
            label: l,
            guest,
            command,
            expect,
            ..
        } => (with(l, format!("{guest} runs `{command}`")), expect),
        Step::Check { label: l, expect } => (with(l, "check".into()), expect),
    }
}

fn run_step(world: &mut World, index: usize, step: &Step) -> StepReport {
    let (action, expect) = label(step);
    // Read first: a guest's answer lets frames move, which are not the step's.
    let stats_before = endpoint_stats(world, expect);
    let capturing = start_captures(world, expect);
    let counters_before = world.port_counters();
    let refusals_before = world.refusals();
    let faults_before = world.faults();
    let _ = world.take_events();
    let capture_mark = world.captures.len();
    if let Some(tap) = world.log_tap() {
        tap.start();
    }
    let (result, mut logs) = crate::logs::capture(|| act(world, step));
    if let Some(tap) = world.log_tap() {
        logs.extend(tap.take());
    }
    let mut result = result;
    if world.has_guests() {
        // What each guest's kernel said during the step (and leaves it for the next).
        let guest_logs = guest_logs(world);
        if let Ok(o) = &mut result {
            for (name, log) in &guest_logs {
                let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
                for l in lines.iter().take(GUEST_LOG_LINES) {
                    o.happened.push(format!("{name} kernel: {}", l.trim()));
                }
                if lines.len() > GUEST_LOG_LINES {
                    o.happened.push(format!(
                        "{name} kernel: ... {} more line(s)",
                        lines.len() - GUEST_LOG_LINES
                    ));
                }
            }
            o.guest_logs = guest_logs;
        }
    }
    // Collected whatever became of the step, so that no capture outlives it.
    let captured = collect_captures(world, capturing);
    if let Ok(o) = &mut result {
        for (name, t) in &captured {
            o.happened.push(match t {
                Ok(t) if t.frames == 0 => format!("{name} captured nothing"),
                Ok(t) => format!(
                    "{name} captured {} frame(s): {}",
                    t.frames,
                    t.summary(GUEST_CAPTURE_KINDS)
                ),
                Err(e) => format!("{name} capture failed: {e}"),
            });
        }
        o.captures = captured;
    }
    let mut events = world.take_events();
    if let Some(port) = guest_sender(world, step) {
        // A guest's frames reach the switch in real time, while the runner waits for its
        // command: those that entered at its port are the step's own, not answers.
        for e in events
            .iter_mut()
            .filter(|e| e.ingress == port && !e.over_cable)
        {
            e.origin = Origin::Step;
        }
    }
    if let Ok(o) = &mut result {
        if o.skipped.is_none() {
            o.views = endpoint_views(world, expect);
        }
    }
    let faults_after = world.faults();
    let captures: Vec<Captured> = world.captures[capture_mark..].to_vec();
    let (outcome, error) = match result {
        Ok(o) => (o, None),
        Err(e) => (Outcome::default(), Some(e.to_string())),
    };
    let mut happened = outcome.happened.clone();
    happened.extend(summarise(&events));
    happened.extend(fault_changes(&faults_before, &faults_after));
    let ctx = CheckCtx {
        world,
        events: &events,
        captures: &captures,
        counters_before: &counters_before,
        refusals_before: &refusals_before,
        outcome: &outcome,
        logs: &logs,
        stats_before: &stats_before,
    };
    let skipped = outcome.skipped.clone();
    let checks = if skipped.is_some() {
        Vec::new()
    } else {
        ctx.checks(expect)
    };
    let pass = error.is_none() && checks.iter().all(|c| c.pass);
    StepReport {
        index,
        action,
        happened,
        frames: frame_paths(&events),
        counters: counter_changes(&counters_before, &world.port_counters()),
        logs,
        cables: world.cables().to_vec(),
        checks,
        error,
        skipped,
        faults: faults_after.into_iter().flat_map(|p| p.armed).collect(),
        pass,
    }
}

/// What a `send` step sends; `None` for other steps.
fn frame_spec(step: &Step) -> Option<FrameSpec> {
    let Step::Send {
        dst,
        src,
        vlan,
        pcp,
        ethertype,
        size,
        count,
        ..
    } = step
    else {
        return None;
    };
    Some(FrameSpec {
        dst: dst.0,
        src: *src,
        vlan: *vlan,
        pcp: *pcp,
        ethertype: *ethertype,
        size: *size,
        count: count.unwrap_or(1),
    })
}

/// What the step changed in the card's faults: faults carried out (by kind) and faults no
/// longer armed (cleared or replaced), with what they had done.
fn fault_changes(before: &[PortFaults], after: &[PortFaults]) -> Vec<String> {
    let mut out = Vec::new();
    for now in after {
        let was = before.iter().find(|b| b.port == now.port);
        let rose: Vec<String> = now
            .carried_out
            .iter()
            .filter_map(|(kind, &n)| {
                let had = was.and_then(|w| w.carried_out.get(kind)).copied();
                let more = n.saturating_sub(had.unwrap_or(0));
                (more > 0).then(|| format!("{kind} +{more}"))
            })
            .collect();
        if !rose.is_empty() {
            out.push(format!(
                "faults carried out on {}: {}",
                now.port,
                rose.join(", ")
            ));
        }
        for gone in was.iter().flat_map(|w| &w.armed) {
            if !now.armed.iter().any(|a| a.fault == gone.fault) {
                out.push(format!(
                    "fault disarmed on {}: {}: {} seen, {} fired",
                    gone.port, gone.fault, gone.seen, gone.fired
                ));
            }
        }
    }
    out
}

/// The step's events with alike ones (same origin, ingress, deliveries and drops) counted
/// together, in the order first seen: a traffic step's thousands of frames are a line or two.
fn frame_paths(events: &[SwitchEvent]) -> Vec<FramePath> {
    let mut out: Vec<FramePath> = Vec::new();
    for e in events {
        let alike = out.iter_mut().find(|p| {
            p.origin == e.origin
                && p.over_cable == e.over_cable
                && p.ingress == e.ingress
                && p.delivered == e.delivered
                && p.drops == e.drops
        });
        match alike {
            Some(p) => p.count += 1,
            None => out.push(FramePath {
                count: 1,
                origin: e.origin,
                over_cable: e.over_cable,
                ingress: e.ingress,
                delivered: e.delivered.clone(),
                drops: e.drops.clone(),
            }),
        }
    }
    out
}

/// The counters that differ between `before` and `after`, port by port.
fn counter_changes(
    before: &BTreeMap<PortRef, PortCounters>,
    after: &BTreeMap<PortRef, PortCounters>,
) -> Vec<CounterChange> {
    let mut out = Vec::new();
    for (port, now) in after {
        let was: BTreeMap<String, u64> = before
            .get(port)
            .map(|b| counter_values(b).into_iter().collect())
            .unwrap_or_default();
        for (name, value) in counter_values(now) {
            let old = was.get(&name).copied().unwrap_or(0);
            if old != value {
                out.push(CounterChange {
                    port: *port,
                    name,
                    before: old,
                    after: value,
                });
            }
        }
    }
    out
}

fn summarise(events: &[SwitchEvent]) -> Vec<String> {
    let mut out = Vec::new();
    let own = |over_cable: bool| -> Vec<&SwitchEvent> {
        events
            .iter()
            .filter(|e| e.origin == Origin::Step && e.over_cable == over_cable)
            .collect()
    };
    let delivered = |evs: &[&SwitchEvent]| -> String {
        let to: BTreeSet<PortRef> = evs
            .iter()
            .flat_map(|e| e.delivered.iter().copied())
            .collect();
        list(to.iter())
    };
    let sent = own(false);
    if let Some(first) = sent.first() {
        out.push(format!(
            "{} frame(s) from {} delivered to {}",
            sent.len(),
            first.ingress,
            delivered(&sent)
        ));
    }
    let carried = own(true);
    if !carried.is_empty() {
        let ends: BTreeSet<PortRef> = carried.iter().map(|e| e.ingress).collect();
        out.push(format!(
            "{} frame(s) over a cable into {}, delivered to {}",
            carried.len(),
            list(ends.iter()),
            delivered(&carried)
        ));
    }
    let replies = |over_cable: bool| {
        events
            .iter()
            .filter(|e| e.origin == Origin::Reply && e.over_cable == over_cable)
            .count()
    };
    match (replies(false), replies(true)) {
        (0, 0) => {}
        (n, 0) => out.push(format!("{n} answer frame(s)")),
        (n, m) => out.push(format!("{n} answer frame(s), {m} over a cable")),
    }
    let mut drops: BTreeMap<(PortRef, DropReason), u64> = BTreeMap::new();
    for d in events.iter().flat_map(|e| &e.drops) {
        *drops.entry((d.port, d.reason)).or_default() += 1;
    }
    if !drops.is_empty() {
        let parts: Vec<String> = drops
            .iter()
            .map(|((p, r), n)| format!("{r} at {p} ×{n}"))
            .collect();
        out.push(format!("dropped: {}", parts.join(", ")));
    }
    out
}

fn endpoint(world: &World, name: &str) -> Result<usize, StepError> {
    world
        .endpoint(name)
        .ok_or_else(|| StepError::NoEndpoint(name.to_string()))
}

/// Finds `target`'s MAC in `idx`'s neighbour table, ARPing once if it is not there.
fn resolve(world: &mut World, idx: usize, target: std::net::Ipv4Addr) -> Option<MacAddr> {
    if let Some(&mac) = world.endpoints[idx].stack.neighbours.get(&target) {
        return Some(mac);
    }
    let req = world.endpoints[idx].stack.arp_request(target);
    world.send(idx, req);
    if world.has_guests() {
        world.pump_until(GUEST_ANSWER_WAIT, |w| {
            w.endpoints[idx].stack.neighbours.contains_key(&target)
        });
    }
    world.endpoints[idx].stack.neighbours.get(&target).copied()
}

/// A `traffic` step's ends and numbers.
struct TrafficPlan {
    src: usize,
    dst: usize,
    target: std::net::Ipv4Addr,
    /// Frame length without FCS.
    size: usize,
    /// Mbit/s on the wire, FCS included.
    offered: u32,
    duration_ms: u64,
}

impl TrafficPlan {
    /// Mbit/s of `bits` received over the step's duration.
    fn rate(&self, bits: u64) -> f64 {
        bits as f64 / (self.duration_ms as f64 * 1000.0)
    }
}

fn traffic_plan(world: &World, step: &Step) -> Result<TrafficPlan, StepError> {
    let Step::Traffic {
        from,
        to,
        size,
        offered_mbps,
        duration_ms,
        ..
    } = step
    else {
        return Err(StepError::Guest("not a traffic step".into()));
    };
    let src = endpoint(world, from)?;
    let dst = endpoint(world, to)?;
    let target = world
        .ip_of(dst)
        .ok_or_else(|| StepError::NoIp(to.clone()))?;
    let link = world
        .nic(world.endpoints[src].port.nic)
        .map_or(DEFAULT_LINK_MBPS, |nic| {
            nic.with_pf(|pf| pf.switch().config().link_speed_mbps)
        });
    let duration_ms = duration_ms.unwrap_or(DEFAULT_TRAFFIC_MS);
    if duration_ms == 0 {
        return Err(StepError::ZeroDuration);
    }
    Ok(TrafficPlan {
        src,
        dst,
        target,
        size: size.unwrap_or(DEFAULT_TRAFFIC_FRAME_LEN),
        offered: offered_mbps.unwrap_or(link).max(1),
        duration_ms,
    })
}

/// The in-process UDP generator: one frame every gap at the offered rate for the step's
/// duration (the world's time: simulated, or real with guests); the frames sent.
fn generate(world: &mut World, t: &TrafficPlan, dst_mac: MacAddr) -> u64 {
    let wire_bits = ((t.size + eswitch::wire::ethernet::FCS_LEN) * 8) as u64;
    // ns between frames at the offered rate: bits / (Mbit/s) × 1000.
    let gap_ns = (wire_bits * 1000).div_ceil(u64::from(t.offered));
    let start = world.now();
    let end = start + t.duration_ms * NS_PER_MS;
    let mut next = start;
    let mut sent = 0u64;
    while next < end {
        world.advance_to(next);
        let f = world.endpoints[t.src]
            .stack
            .udp_datagram(dst_mac, t.target, t.size);
        world.send(t.src, f);
        sent += 1;
        next = world.now().max(next + gap_ns);
    }
    world.advance_to(end);
    sent
}
