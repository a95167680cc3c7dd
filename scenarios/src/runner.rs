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

mod guest;
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
/// (`attach = "guest"`, and every driver-attached one with [`GuestMode::driver_endpoints`])
/// are QEMU guests running igbvf on their VF's socket, all booted at once before the first
/// step. A guest that does not come up ends the run at setup, naming it and quoting its
/// console.
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

fn act(world: &mut World, step: &Step) -> StepResult {
    let mut o = Outcome::default();
    // Guest mode: what a guest endpoint does itself, and what only the in-process world can.
    let guest_of = |name: &str| world.endpoint(name).filter(|&i| is_guest(world, i));
    match step {
        Step::Ping { from, .. } | Step::Arping { from, .. } if guest_of(from).is_some() => {
            let idx = endpoint(world, from)?;
            return act_in_guest(world, idx, step);
        }
        Step::Reload { endpoint: name, .. } if guest_of(name).is_some() => {
            let idx = endpoint(world, name)?;
            return act_in_guest(world, idx, step);
        }
        Step::Join { endpoint: name, .. } | Step::Leave { endpoint: name, .. }
            if guest_of(name).is_some() =>
        {
            let idx = endpoint(world, name)?;
            return act_in_guest(world, idx, step);
        }
        Step::Reattach { endpoint: name, .. } if guest_of(name).is_some() => {
            let idx = endpoint(world, name)?;
            return reattach_guest(world, idx);
        }
        Step::Shell { guest, .. } => {
            let idx = endpoint(world, guest)?;
            if !is_guest(world, idx) {
                return skip(
                    &mut o,
                    format!("{guest} is not a QEMU guest: `shell` runs in the guest mode only"),
                );
            }
            return act_in_guest(world, idx, step);
        }
        Step::Send { from, .. } if guest_of(from).is_some() => {
            let idx = endpoint(world, from)?;
            return act_in_guest(world, idx, step);
        }
        Step::Mailbox { from, .. } if guest_of(from).is_some() => {
            return skip(
                &mut o,
                format!(
                    "{from} is a QEMU guest: hand-made mailbox requests come from the \
                     in-process world only"
                ),
            );
        }
        Step::Traffic {
            from,
            to,
            proto: Proto::Tcp,
            ..
        } => {
            for name in [from, to] {
                if !is_guest(world, endpoint(world, name)?) {
                    let world_is = if world.has_guests() {
                        "not a QEMU guest in this run"
                    } else {
                        "in process (TCP runs in the guest mode only)"
                    };
                    return skip(
                        &mut o,
                        format!(
                            "{name} is {world_is}: `proto = \"tcp\"` runs iperf3 between two \
                             QEMU guests"
                        ),
                    );
                }
            }
            return tcp_between_guests(world, step);
        }
        Step::Traffic { from, to, .. } if guest_of(from).is_some() || guest_of(to).is_some() => {
            return traffic_with_guests(world, step);
        }
        _ => {}
    }
    let guests = world.has_guests();
    match step {
        Step::Ping {
            from,
            target,
            count,
            ..
        } => {
            let idx = endpoint(world, from)?;
            let Some(mac) = resolve(world, idx, *target) else {
                o.happened.push(format!("no ARP reply for {target}"));
                o.answered = Some(false);
                return Ok(o);
            };
            let before = world.endpoints[idx].stack.echo_replies.len();
            let n = count.unwrap_or(1);
            for seq in 1..=n {
                let f = world.endpoints[idx].stack.echo_request(mac, *target, seq);
                world.send(idx, f);
                if guests {
                    let want = before + usize::from(seq);
                    world.pump_until(GUEST_ANSWER_WAIT, |w| {
                        w.endpoints[idx].stack.echo_replies.len() >= want
                    });
                }
            }
            let got = world.endpoints[idx].stack.echo_replies.len() - before;
            o.happened.push(format!("{got}/{n} echo replies"));
            o.answered = Some(got == usize::from(n));
        }
        Step::Arping { from, target, .. } => {
            let idx = endpoint(world, from)?;
            world.endpoints[idx].stack.neighbours.remove(target);
            let req = world.endpoints[idx].stack.arp_request(*target);
            world.send(idx, req);
            if guests {
                world.pump_until(GUEST_ANSWER_WAIT, |w| {
                    w.endpoints[idx].stack.neighbours.contains_key(target)
                });
            }
            let got = world.endpoints[idx].stack.neighbours.get(target).copied();
            o.happened.push(match got {
                Some(mac) => format!("{target} is at {mac}"),
                None => format!("no ARP reply for {target}"),
            });
            o.answered = Some(got.is_some());
        }
        Step::Send { from, .. } => {
            let idx = endpoint(world, from)?;
            let spec = frame_spec(step).ok_or_else(|| StepError::Guest("not a send".into()))?;
            let f = crafted_frame(&spec, world.mac_of(idx));
            for _ in 0..spec.count {
                world.send(idx, f.clone());
            }
        }
        Step::Set { port, vf, set, .. } => {
            let words: Vec<&str> = set.split_whitespace().collect();
            let nic = world.nic(port.0).ok_or(StepError::NoSuchPf(*port))?;
            let result = nic.configure_vf_words(*vf, &words);
            match &result {
                Ok(()) => o.happened.push("accepted".into()),
                Err(e) => o.happened.push(format!("refused: {e}")),
            }
            // A changed MAC or VLAN pinged the VF: its driver re-checks the link.
            world.settle();
            o.set_result = Some(result);
        }
        Step::Mailbox {
            from,
            request,
            mac,
            groups,
            vid,
            add,
            promisc,
            max_frame,
            xcast,
            adopt,
            ..
        } => {
            let idx = endpoint(world, from)?;
            let need_mac = || {
                mac.ok_or(StepError::MissingKey {
                    request: request.name(),
                    key: "mac",
                })
            };
            // The PF's reply echoes the request's layout (its payload words included).
            let igb = |msg: MailboxMsg| {
                let reply_words = msg.wire_len();
                (Message::request(msg).to_words(), reply_words)
            };
            // ixgbevf's own messages (an 82599 VF's): the reply's flags read from word 0 as igb's.
            let ixgbe = |msg: IxgbeMsg, reply_words: usize| {
                let words = IxgbeMessage::request(msg)
                    .to_words()
                    .expect("a request within the wire's ranges");
                (words, reply_words)
            };
            let (words, reply_words) = match request {
                MailboxRequest::SetMac => igb(MailboxMsg::SetMacAddr {
                    op: MacFilterOp::Set,
                    mac: need_mac()?,
                }),
                MailboxRequest::AddMacFilter => igb(MailboxMsg::SetMacAddr {
                    op: MacFilterOp::Add,
                    mac: need_mac()?,
                }),
                MailboxRequest::Multicast => {
                    let hashes: Vec<u16> = groups.iter().map(|&g| eswitch::mta_hash(g)).collect();
                    let count = u8::try_from(hashes.len()).unwrap_or(u8::MAX);
                    igb(MailboxMsg::SetMulticast { count, hashes })
                }
                MailboxRequest::Vlan => igb(MailboxMsg::SetVlan {
                    add: add.unwrap_or(true),
                    vid: vid.ok_or(StepError::MissingKey {
                        request: "vlan",
                        key: "vid",
                    })?,
                }),
                MailboxRequest::Promisc => {
                    let flags = match promisc.ok_or(StepError::MissingKey {
                        request: "promisc",
                        key: "promisc",
                    })? {
                        PromiscMode::Off => PromiscFlags::NONE,
                        PromiscMode::Multicast => PromiscFlags::MULTICAST,
                        PromiscMode::Unicast => {
                            PromiscFlags(PromiscFlags::UNICAST.0 | PromiscFlags::MULTICAST.0)
                        }
                    };
                    igb(MailboxMsg::SetPromisc { flags })
                }
                MailboxRequest::Lpe => igb(MailboxMsg::SetLpe {
                    max_frame: max_frame.ok_or(StepError::MissingKey {
                        request: "lpe",
                        key: "max_frame",
                    })?,
                }),
                MailboxRequest::Xcast => {
                    let mode = match xcast.ok_or(StepError::MissingKey {
                        request: "xcast",
                        key: "xcast",
                    })? {
                        Xcast::None => XcastMode::None,
                        Xcast::Multi => XcastMode::Multi,
                        Xcast::Allmulti => XcastMode::AllMulti,
                        Xcast::Promisc => XcastMode::Promisc,
                    };
                    ixgbe(IxgbeMsg::UpdateXcastMode { mode }, 2)
                }
                MailboxRequest::Reta => ixgbe(IxgbeMsg::GetReta, ixgbe_len::RETA_REPLY),
                MailboxRequest::Macvlan => ixgbe(
                    IxgbeMsg::SetMacvlan {
                        index: 1,
                        mac: need_mac()?,
                    },
                    ixgbe_len::MAC,
                ),
            };
            let reply = world.mailbox_exchange(idx, &words, reply_words)?;
            o.happened.push(format!("PF answered {}", verdict(&reply)));
            if let MailboxRequest::SetMac = request {
                if reply.flags.ack || *adopt == Adopt::Always {
                    world.endpoints[idx].stack.mac = need_mac()?;
                }
            }
            o.reply = Some(reply);
        }
        Step::Reload { endpoint: name, .. } => {
            let idx = endpoint(world, name)?;
            let reply = world.bring_up(idx)?;
            if let Some(r) = &reply {
                o.happened.push(format!("VF_RESET answered {}", verdict(r)));
            }
            o.happened
                .push(format!("{name} has MAC {}", world.mac_of(idx)));
            o.reply = reply;
        }
        Step::Join {
            endpoint: name,
            group,
            ..
        }
        | Step::Leave {
            endpoint: name,
            group,
            ..
        } => {
            let idx = endpoint(world, name)?;
            let join = matches!(step, Step::Join { .. });
            let list = world.multicast(idx, *group, join)?;
            o.happened.push(format!(
                "{name}'s igbvf sent its multicast list with SET_MULTICAST: {}",
                if list.is_empty() {
                    "empty".to_string()
                } else {
                    list.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ));
        }
        Step::Reattach { endpoint: name, .. } => {
            let idx = endpoint(world, name)?;
            let reply = world.reattach(idx)?;
            o.happened.push(format!(
                "{name}'s client detached, its VF reset; a fresh driver attached"
            ));
            if let Some(r) = &reply {
                o.happened.push(format!("VF_RESET answered {}", verdict(r)));
            }
            o.happened
                .push(format!("{name} has MAC {}", world.mac_of(idx)));
            o.reply = reply;
        }
        Step::Link { port, up, .. } => {
            world
                .nic(port.0)
                .ok_or(StepError::NoSuchPf(*port))?
                .set_link(*up);
            world.settle();
        }
        Step::Cable { a, b, plug, .. } => {
            if *plug {
                world.plug(*a, *b)?;
                o.happened.push(format!("{a} and {b} are cabled"));
            } else {
                world.unplug(*a, *b)?;
                o.happened.push(format!("{a} and {b} are no longer cabled"));
            }
        }
        Step::Fault { port, fault, .. } => {
            let nic = world.nic(port.0).ok_or(StepError::NoSuchPf(*port))?.clone();
            let words: Vec<&str> = fault.split_whitespace().collect();
            // Checked at load against the card the file declares; the NIC may be another.
            let done = Fault::parse(&words, &nic.ports())
                .and_then(|parsed| nic.inject_fault(parsed))
                .map_err(|message| StepError::Fault {
                    words: fault.clone(),
                    message,
                })?;
            o.happened.push(done);
            // A PF reset or a link change pinged the VFs: their drivers look.
            world.settle();
        }
        Step::Wait { ms, .. } => {
            let t = world.now() + ms * NS_PER_MS;
            world.advance_to(t);
        }
        Step::Traffic { .. } => {
            let t = traffic_plan(world, step)?;
            let Some(dst_mac) = resolve(world, t.src, t.target) else {
                o.happened.push(format!("no ARP reply for {}", t.target));
                o.rate_mbps = Some(0.0);
                return Ok(o);
            };
            let bits_before = world.endpoints[t.dst].stack.udp.wire_bits;
            let sent = generate(world, &t, dst_mac);
            let bits = world.endpoints[t.dst].stack.udp.wire_bits - bits_before;
            let rate = t.rate(bits);
            o.happened.push(format!(
                "{sent} frames of {} bytes offered at {} Mbit/s; received {rate:.2} Mbit/s",
                t.size, t.offered
            ));
            o.rate_mbps = Some(rate);
        }
        Step::Shell { .. } | Step::Check { .. } => {}
    }
    if guests
        && matches!(
            step,
            Step::Set { .. } | Step::Link { .. } | Step::Fault { .. } | Step::Send { .. }
        )
    {
        // The guests react in real time (a PF ping's interrupt, a link check, an answer).
        world.pump_until(GUEST_REACT, |_| false);
    }
    Ok(o)
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
