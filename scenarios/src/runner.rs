//! Loading scenario files and running them: setup, each step's action, its checks.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use eswitch::{DropReason, MacAddr, PortCounters, PortId, VfSetting, VlanTci};
use mailbox::{MacFilterOp, MailboxMsg, Message, PromiscFlags, RefusalReason};
use pnet_packet::ethernet::EtherType;

use crate::format::{
    Adopt, Band, CaptureSpec, CounterSpec, Expect, MailboxRequest, PolicyCheck, PromiscMode,
    ReplyKind, ScenarioFile, Step,
};
use crate::pcap::PcapWriter;
use crate::report::{Check, ScenarioReport, StepReport};
use crate::world::{Captured, Origin, SwitchEvent, TimeMode, World};

/// Ethertype of crafted frames unless a step names one: IEEE 802 local experimental 1.
const LOCAL_EXPERIMENTAL: u16 = 0x88b5;
/// Default crafted-frame length (without FCS): the Ethernet minimum.
const DEFAULT_FRAME_LEN: usize = crate::wire::len::ETH_MIN_FRAME;
/// Default traffic frame length: a full 1500-byte MTU frame without FCS.
const DEFAULT_TRAFFIC_FRAME_LEN: usize = 1514;
const DEFAULT_TRAFFIC_MS: u64 = 1000;
const NS_PER_MS: u64 = 1_000_000;

/// A scenario file that could not be read: where and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadError {
    pub file: PathBuf,
    /// 1-based line and column, when the parser knows the position.
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{}:{l}:{c}: {}", self.file.display(), self.message),
            _ => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for LoadError {}

/// A parsed scenario file.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub path: PathBuf,
    pub name: String,
    pub file: ScenarioFile,
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, col)
}

/// Steps are an internally tagged enum, for which the parser reports an unknown key at the
/// start of its table; point at the key itself when the table holds it.
fn refine_unknown_key(text: &str, span: std::ops::Range<usize>, message: &str) -> usize {
    let Some(key) = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next())
    else {
        return span.start;
    };
    // The table runs from its header to the next header.
    let mut offset = span.start;
    let rest = text.get(span.start..).unwrap_or("");
    for (n, line) in rest.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_start();
        if n > 0 && trimmed.starts_with('[') {
            break;
        }
        let after = trimmed.strip_prefix(key).unwrap_or("");
        if !after.is_empty() && after.trim_start().starts_with(['=', '.']) {
            return offset + (line.len() - trimmed.len());
        }
        offset += line.len();
    }
    span.start
}

/// Parses scenario text; `path` names it in errors.
pub fn parse(path: &Path, text: &str) -> Result<Scenario, LoadError> {
    let file: ScenarioFile = toml::from_str(text).map_err(|e| {
        let pos = e
            .span()
            .map(|s| line_col(text, refine_unknown_key(text, s, e.message())));
        LoadError {
            file: path.to_path_buf(),
            line: pos.map(|p| p.0),
            column: pos.map(|p| p.1),
            message: e.message().trim().to_string(),
        }
    })?;
    let name = file.name.clone().unwrap_or_else(|| {
        path.file_stem()
            .map_or("scenario".into(), |s| s.to_string_lossy().into_owned())
    });
    Ok(Scenario {
        path: path.to_path_buf(),
        name,
        file,
    })
}

pub fn load(path: &Path) -> Result<Scenario, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|e| LoadError {
        file: path.to_path_buf(),
        line: None,
        column: None,
        message: e.to_string(),
    })?;
    parse(path, &text)
}

/// The scenario files named: files as given; directories searched recursively for `*.toml`,
/// sorted, leaving out `Cargo.toml` (so a crate directory such as `scenarios/` works) and
/// `target` and hidden directories.
pub fn collect(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found = Vec::new();
            walk(p, &mut found)?;
            found.sort();
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                walk(&path, out)?;
            }
        } else if path.extension().is_some_and(|e| e == "toml") && name != "Cargo.toml" {
            out.push(path);
        }
    }
    Ok(())
}

/// How to run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub time: TimeMode,
    /// Write one pcap file per port that saw frames: `DIR/<scenario>-<port>.pcap`.
    pub pcap_dir: Option<PathBuf>,
}

/// What a step's action produced, for the checks.
#[derive(Default)]
struct Outcome {
    happened: Vec<String>,
    reply: Option<Message>,
    answered: Option<bool>,
    set_result: Option<Result<(), String>>,
    rate_mbps: Option<f64>,
}

type StepResult = Result<Outcome, String>;

/// Runs one scenario.
pub fn run(scenario: &Scenario, opts: &RunOptions) -> ScenarioReport {
    let wall = Instant::now();
    let file = &scenario.file;
    let mut report = ScenarioReport {
        name: scenario.name.clone(),
        file: scenario.path.display().to_string(),
        description: file.description.clone(),
        reproduces: file.reproduces.clone(),
        setup_error: None,
        steps: Vec::new(),
        pass: false,
        wall_ms: 0.0,
        scenario_ms: 0.0,
    };
    let mut world = match setup(file, opts.time) {
        Ok(w) => w,
        Err(e) => {
            report.setup_error = Some(e);
            report.wall_ms = wall.elapsed().as_secs_f64() * 1e3;
            return report;
        }
    };
    let start_ns = world.now();
    for (index, step) in file.steps.iter().enumerate() {
        report.steps.push(run_step(&mut world, file, index, step));
    }
    if let Some(dir) = &opts.pcap_dir {
        if let Err(e) = write_pcaps(
            dir,
            &scenario.name,
            &world.captures.lock().unwrap_or_else(|e| e.into_inner()),
        ) {
            report.setup_error = Some(format!("writing pcap files to {}: {e}", dir.display()));
        }
    }
    report.pass = report.setup_error.is_none() && report.steps.iter().all(|s| s.pass);
    report.scenario_ms = (world.now() - start_ns) as f64 / NS_PER_MS as f64;
    report.wall_ms = wall.elapsed().as_secs_f64() * 1e3;
    report
}

fn setup(file: &ScenarioFile, mode: TimeMode) -> Result<World, String> {
    let mut world = World::new(&file.nic, mode)?;
    for p in &file.policies {
        let words: Vec<&str> = p.set.split_whitespace().collect();
        let settings =
            VfSetting::parse_words(&words).map_err(|e| format!("policy vf {}: {e}", p.vf))?;
        // No driver is up yet, so the PF's ping to the VF needs no interrupt.
        let _ = world
            .pf
            .side()
            .configure_vf(p.vf, &settings)
            .map_err(|e| format!("policy vf {} `{}`: {e}", p.vf, p.set))?;
    }
    for ep in &file.endpoints {
        world.add_endpoint(ep)?;
    }
    // Bring-up traffic is not part of any step.
    let _ = world.take_events();
    Ok(world)
}

fn counters_snapshot(world: &World) -> BTreeMap<PortId, PortCounters> {
    let side = world.pf.side();
    side.switch()
        .all_counters()
        .map(|(p, c)| (p, c.clone()))
        .collect()
}

fn refusals_snapshot(world: &World) -> Vec<Vec<(RefusalReason, u64)>> {
    let side = world.pf.side();
    (0..side.num_vfs())
        .map(|vf| {
            side.refusals(vf)
                .map(|r| r.iter().collect())
                .unwrap_or_default()
        })
        .collect()
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
            vf,
            set,
            expect,
        } => (with(l, format!("ip link set pf vf {vf} {set}")), expect),
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
        Step::Link {
            label: l,
            up,
            expect,
        } => (
            with(l, format!("PF link {}", if *up { "up" } else { "down" })),
            expect,
        ),
        Step::Wait {
            label: l,
            ms,
            expect,
        } => (with(l, format!("wait {ms} ms")), expect),
        Step::Traffic {
            label: l,
            from,
            to,
            offered_mbps,
            expect,
            ..
        } => {
            let offered = offered_mbps.map_or("line rate".to_string(), |r| format!("{r} Mbit/s"));
            (with(l, format!("UDP {from} → {to} at {offered}")), expect)
        }
        Step::Check { label: l, expect } => (with(l, "check".into()), expect),
    }
}

fn run_step(world: &mut World, file: &ScenarioFile, index: usize, step: &Step) -> StepReport {
    let (action, expect) = label(step);
    let counters_before = counters_snapshot(world);
    let refusals_before = refusals_snapshot(world);
    let capture_mark = world.captures.lock().map_or(0, |c| c.len());
    let _ = world.take_events();
    let (result, logs) = crate::logs::capture(|| act(world, file, step));
    let events = world.take_events();
    let captures: Vec<Captured> = world
        .captures
        .lock()
        .map(|c| c[capture_mark.min(c.len())..].to_vec())
        .unwrap_or_default();
    let (outcome, error) = match result {
        Ok(o) => (o, None),
        Err(e) => (Outcome::default(), Some(e)),
    };
    let mut happened = outcome.happened.clone();
    happened.extend(summarise(&events));
    happened.extend(logs.iter().map(|l| format!("log: {l}")));
    let ctx = CheckCtx {
        world,
        events: &events,
        captures: &captures,
        counters_before: &counters_before,
        refusals_before: &refusals_before,
        outcome: &outcome,
        logs: &logs,
    };
    let checks = ctx.checks(expect);
    let pass = error.is_none() && checks.iter().all(|c| c.pass);
    StepReport {
        index,
        action,
        happened,
        checks,
        error,
        pass,
    }
}

fn summarise(events: &[SwitchEvent]) -> Vec<String> {
    let mut out = Vec::new();
    let own: Vec<&SwitchEvent> = events.iter().filter(|e| e.origin == Origin::Step).collect();
    if !own.is_empty() {
        let to: BTreeSet<PortId> = own
            .iter()
            .flat_map(|e| e.deliveries.iter().map(|d| d.port))
            .collect();
        out.push(format!(
            "{} frame(s) from {} delivered to {}",
            own.len(),
            own[0].ingress,
            list(to.iter())
        ));
    }
    let replies = events.len() - own.len();
    if replies > 0 {
        out.push(format!("{replies} answer frame(s)"));
    }
    let mut drops: BTreeMap<(PortId, DropReason), u64> = BTreeMap::new();
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

fn list<T: fmt::Display>(items: impl Iterator<Item = T>) -> String {
    let v: Vec<String> = items.map(|i| i.to_string()).collect();
    if v.is_empty() {
        "nowhere".into()
    } else {
        v.join(", ")
    }
}

fn endpoint(world: &World, name: &str) -> Result<usize, String> {
    world
        .endpoint(name)
        .ok_or_else(|| format!("no endpoint named `{name}`"))
}

/// Finds `target`'s MAC in `idx`'s neighbour table, ARPing once if it is not there.
fn resolve(world: &mut World, idx: usize, target: std::net::Ipv4Addr) -> Option<MacAddr> {
    if let Some(&mac) = world.endpoints[idx].stack.neighbours.get(&target) {
        return Some(mac);
    }
    let req = world.endpoints[idx].stack.arp_request(target);
    world.send(idx, req);
    world.endpoints[idx].stack.neighbours.get(&target).copied()
}

fn verdict(m: &Message) -> &'static str {
    match (m.flags.ack, m.flags.nack) {
        (true, _) => "ACK",
        (_, true) => "NACK",
        _ => "no verdict",
    }
}

fn act(world: &mut World, file: &ScenarioFile, step: &Step) -> StepResult {
    let mut o = Outcome::default();
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
            let got = world.endpoints[idx].stack.neighbours.get(target).copied();
            o.happened.push(match got {
                Some(mac) => format!("{target} is at {mac}"),
                None => format!("no ARP reply for {target}"),
            });
            o.answered = Some(got.is_some());
        }
        Step::Send {
            from,
            dst,
            src,
            vlan,
            pcp,
            ethertype,
            size,
            count,
            ..
        } => {
            let idx = endpoint(world, from)?;
            let src = src.unwrap_or(world.mac_of(idx));
            let tag = vlan.map(|v| VlanTci::new(v, pcp.unwrap_or(0)));
            let header =
                crate::wire::len::ETH_HEADER + tag.map_or(0, |_| eswitch::wire::VLAN_TAG_LEN);
            let payload = vec![0u8; size.unwrap_or(DEFAULT_FRAME_LEN).saturating_sub(header)];
            let ethertype = EtherType(ethertype.unwrap_or(LOCAL_EXPERIMENTAL));
            for _ in 0..count.unwrap_or(1) {
                let f = eswitch::build_frame(dst.0, src, tag, ethertype, &payload);
                world.send(idx, f);
            }
        }
        Step::Set { vf, set, .. } => {
            let words: Vec<&str> = set.split_whitespace().collect();
            let result = VfSetting::parse_words(&words)
                .map_err(|e| e.to_string())
                .and_then(|s| {
                    world
                        .pf
                        .side()
                        .configure_vf(*vf, &s)
                        .map_err(|e| e.to_string())
                });
            match &result {
                Ok(irq) => {
                    o.happened.push("accepted".into());
                    if *irq == model::MailboxIrq::Raise {
                        world.mailbox_irqs(&[*vf]);
                    }
                }
                Err(e) => o.happened.push(format!("refused: {e}")),
            }
            o.set_result = Some(result.map(|_| ()));
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
            adopt,
            ..
        } => {
            let idx = endpoint(world, from)?;
            let need_mac = || mac.ok_or_else(|| format!("{request:?} needs `mac`"));
            let msg = match request {
                MailboxRequest::SetMac => MailboxMsg::SetMacAddr {
                    op: MacFilterOp::Set,
                    mac: need_mac()?,
                },
                MailboxRequest::AddMacFilter => MailboxMsg::SetMacAddr {
                    op: MacFilterOp::Add,
                    mac: need_mac()?,
                },
                MailboxRequest::Multicast => {
                    let hashes: Vec<u16> =
                        groups.iter().map(|&g| eswitch::wire::mta_hash(g)).collect();
                    let count = u8::try_from(hashes.len()).unwrap_or(u8::MAX);
                    MailboxMsg::SetMulticast { count, hashes }
                }
                MailboxRequest::Vlan => MailboxMsg::SetVlan {
                    add: add.unwrap_or(true),
                    vid: vid.ok_or("vlan needs `vid`")?,
                },
                MailboxRequest::Promisc => {
                    let flags = match promisc.ok_or("promisc needs `promisc`")? {
                        PromiscMode::Off => PromiscFlags::NONE,
                        PromiscMode::Multicast => PromiscFlags::MULTICAST,
                        PromiscMode::Unicast => {
                            PromiscFlags(PromiscFlags::UNICAST.0 | PromiscFlags::MULTICAST.0)
                        }
                    };
                    MailboxMsg::SetPromisc { flags }
                }
                MailboxRequest::Lpe => MailboxMsg::SetLpe {
                    max_frame: max_frame.ok_or("lpe needs `max_frame`")?,
                },
            };
            // The PF's reply echoes the request's layout (its payload words included).
            let reply_words = msg.wire_len();
            let words = Message::request(msg).to_words();
            let reply = world
                .mailbox_exchange(idx, &words, reply_words)
                .map_err(|e| e.0)?;
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
            let fallback = file
                .endpoints
                .iter()
                .find(|e| &e.name == name)
                .and_then(|e| e.fallback_mac);
            let reply = world.bring_up(idx, fallback).map_err(|e| e.0)?;
            if let Some(r) = &reply {
                o.happened.push(format!("VF_RESET answered {}", verdict(r)));
            }
            o.happened
                .push(format!("{name} has MAC {}", world.mac_of(idx)));
            o.reply = reply;
        }
        Step::Link { up, .. } => {
            let pinged = world.pf.side().set_link(*up);
            world.mailbox_irqs(&pinged);
        }
        Step::Wait { ms, .. } => {
            let t = world.now() + ms * NS_PER_MS;
            world.advance_to(t);
        }
        Step::Traffic {
            from,
            to,
            size,
            offered_mbps,
            duration_ms,
            ..
        } => {
            let src = endpoint(world, from)?;
            let dst = endpoint(world, to)?;
            let target = world
                .ip_of(dst)
                .ok_or_else(|| format!("{to} has no IP address"))?;
            let Some(dst_mac) = resolve(world, src, target) else {
                o.happened.push(format!("no ARP reply for {target}"));
                o.rate_mbps = Some(0.0);
                return Ok(o);
            };
            let size = size.unwrap_or(DEFAULT_TRAFFIC_FRAME_LEN);
            let offered = u64::from(offered_mbps.unwrap_or(file.nic.link_speed_mbps).max(1));
            let wire_bits = ((size + crate::wire::len::ETH_FCS) * 8) as u64;
            // ns between frames at the offered rate: bits / (Mbit/s) × 1000.
            let gap_ns = (wire_bits * 1000).div_ceil(offered);
            let duration_ms = duration_ms.unwrap_or(DEFAULT_TRAFFIC_MS);
            if duration_ms == 0 {
                return Err("traffic needs duration_ms > 0".into());
            }
            let start = world.now();
            let end = start + duration_ms * NS_PER_MS;
            let bits_before = world.endpoints[dst].stack.udp.wire_bits;
            let mut next = start;
            let mut sent = 0u64;
            while next < end {
                world.advance_to(next);
                let f = world.endpoints[src]
                    .stack
                    .udp_datagram(dst_mac, target, size);
                world.send(src, f);
                sent += 1;
                next = world.now().max(next + gap_ns);
            }
            world.advance_to(end);
            let bits = world.endpoints[dst].stack.udp.wire_bits - bits_before;
            let rate = bits as f64 * 1000.0 / (end - start) as f64;
            o.happened.push(format!(
                "{sent} frames of {size} bytes offered at {offered} Mbit/s; received {rate:.2} Mbit/s"
            ));
            o.rate_mbps = Some(rate);
        }
        Step::Check { .. } => {}
    }
    Ok(o)
}

struct CheckCtx<'a> {
    world: &'a World,
    events: &'a [SwitchEvent],
    captures: &'a [Captured],
    counters_before: &'a BTreeMap<PortId, PortCounters>,
    refusals_before: &'a [Vec<(RefusalReason, u64)>],
    outcome: &'a Outcome,
    logs: &'a [String],
}

fn check(
    what: impl Into<String>,
    expected: impl fmt::Display,
    actual: impl fmt::Display,
    pass: bool,
) -> Check {
    Check {
        what: what.into(),
        expected: expected.to_string(),
        actual: actual.to_string(),
        pass,
    }
}

fn missing(what: impl Into<String>, expected: impl fmt::Display, why: &str) -> Check {
    check(what, expected, why, false)
}

fn counter_value(c: &PortCounters, name: &str) -> Option<u64> {
    let json = serde_json::to_value(c).ok()?;
    let pointer = format!("/{}", name.replace('.', "/"));
    json.pointer(&pointer)?.as_u64()
}

fn json_equal(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

impl CheckCtx<'_> {
    fn checks(&self, e: &Expect) -> Vec<Check> {
        let mut out = Vec::new();
        let own_delivered: BTreeSet<PortId> = self
            .events
            .iter()
            .filter(|ev| ev.origin == Origin::Step)
            .flat_map(|ev| ev.deliveries.iter().map(|d| d.port))
            .collect();
        if let Some(want) = &e.delivered {
            let want: BTreeSet<PortId> = want.iter().map(|p| p.0).collect();
            out.push(check(
                "delivered to",
                list(want.iter()),
                list(own_delivered.iter()),
                want == own_delivered,
            ));
        }
        for p in &e.not_delivered {
            let got = own_delivered.contains(&p.0);
            out.push(check(
                format!("nothing delivered to {p}"),
                "no copy",
                if got { "got a copy" } else { "no copy" },
                !got,
            ));
        }
        let drops: Vec<_> = self.events.iter().flat_map(|ev| &ev.drops).collect();
        for d in &e.dropped {
            let n = drops
                .iter()
                .filter(|r| r.port == d.port.0 && r.reason == d.reason)
                .count() as u64;
            let what = format!("dropped at {} as {}", d.port, d.reason);
            match d.count {
                Some(c) => out.push(check(what, c, n, n == c)),
                None => out.push(check(what, "at least 1", n, n >= 1)),
            }
        }
        if let Some(want) = e.no_drops {
            let n = drops.len();
            out.push(check("no drops", want, n == 0, (n == 0) == want));
        }
        for c in &e.counters {
            out.push(self.counter(c));
        }
        for c in &e.captured {
            out.push(self.captured(c));
        }
        if let Some(want) = e.reply {
            let want_s = match want {
                ReplyKind::Ack => "ACK",
                ReplyKind::Nack => "NACK",
            };
            match &self.outcome.reply {
                Some(r) => {
                    let ok = match want {
                        ReplyKind::Ack => r.flags.ack && !r.flags.nack,
                        ReplyKind::Nack => r.flags.nack,
                    };
                    out.push(check("mailbox reply", want_s, verdict(r), ok));
                }
                None => out.push(missing("mailbox reply", want_s, "no mailbox exchange")),
            }
        }
        if let Some(want) = &e.refused {
            let after = {
                let side = self.world.pf.side();
                (0..side.num_vfs())
                    .map(|vf| {
                        side.refusals(vf)
                            .map(|r| r.iter().collect::<Vec<_>>())
                            .unwrap_or_default()
                    })
                    .collect::<Vec<_>>()
            };
            let mut rose = BTreeSet::new();
            for (vf, now) in after.iter().enumerate() {
                for &(reason, n) in now {
                    let before = self
                        .refusals_before
                        .get(vf)
                        .and_then(|b| b.iter().find(|(r, _)| *r == reason))
                        .map_or(0, |(_, n)| *n);
                    if n > before {
                        rose.insert(reason.name());
                    }
                }
            }
            let actual = if rose.is_empty() {
                "none".to_string()
            } else {
                list(rose.iter())
            };
            let ok = if want == "none" {
                rose.is_empty()
            } else {
                rose.contains(want.as_str())
            };
            out.push(check("PF agent refusal", want, actual, ok));
        }
        for want in &e.log_contains {
            let hit = self.logs.iter().find(|l| l.contains(want.as_str()));
            out.push(check(
                "log line",
                format!("one containing `{want}`"),
                hit.map_or(format!("none of {} line(s)", self.logs.len()), |l| {
                    l.clone()
                }),
                hit.is_some(),
            ));
        }
        if let Some(want) = e.answered {
            match self.outcome.answered {
                Some(got) => out.push(check("answered", want, got, got == want)),
                None => out.push(missing("answered", want, "not a ping or arping step")),
            }
        }
        if let Some(want) = e.ok {
            match &self.outcome.set_result {
                Some(r) => out.push(check(
                    "command accepted",
                    want,
                    match r {
                        Ok(()) => "accepted".to_string(),
                        Err(e) => format!("refused: {e}"),
                    },
                    r.is_ok() == want,
                )),
                None => out.push(missing("command accepted", want, "not a set step")),
            }
        }
        if let Some(want) = &e.error_contains {
            let got = match &self.outcome.set_result {
                Some(Err(e)) => e.clone(),
                Some(Ok(())) => "accepted".into(),
                None => "not a set step".into(),
            };
            out.push(check(
                "refusal message",
                format!("contains `{want}`"),
                &got,
                got.contains(want.as_str()),
            ));
        }
        if let Some(band) = &e.rate_mbps {
            out.push(self.rate(band));
        }
        for p in &e.policy {
            out.push(self.policy(p));
        }
        for ep in &e.endpoint {
            out.extend(self.endpoint(ep));
        }
        out
    }

    fn counter(&self, c: &CounterSpec) -> Check {
        let what = format!("{} {}", c.port, c.name);
        let side = self.world.pf.side();
        let Some(now) = side.switch().counters(c.port.0) else {
            return missing(what, "a counter", "no such port");
        };
        let Some(after) = counter_value(now, &c.name) else {
            return missing(what, "a counter", "no such counter");
        };
        let before = self
            .counters_before
            .get(&c.port.0)
            .and_then(|b| counter_value(b, &c.name))
            .unwrap_or(0);
        let delta = after.saturating_sub(before);
        if let Some(want) = c.delta {
            return check(format!("{what} delta"), want, delta, delta == want);
        }
        if let Some(want) = c.equals {
            return check(what, want, after, after == want);
        }
        if let Some(want) = c.at_least {
            return check(what, format!("at least {want}"), after, after >= want);
        }
        missing(what, "delta, equals or at_least", "no comparison given")
    }

    fn captured(&self, c: &CaptureSpec) -> Check {
        let mut conds = vec![format!("{} {:?}", c.port, c.direction).to_lowercase()];
        if let Some(t) = c.tagged {
            conds.push(format!("tagged={t}"));
        }
        if let Some(s) = c.stripped {
            conds.push(format!("stripped={s}"));
        }
        if let Some(v) = c.vid {
            conds.push(format!("vid={v}"));
        }
        if let Some(p) = c.pcp {
            conds.push(format!("pcp={p}"));
        }
        if let Some(s) = c.src {
            conds.push(format!("src={s}"));
        }
        if let Some(d) = c.dst {
            conds.push(format!("dst={}", d.0));
        }
        let at_port: Vec<&Captured> = self
            .captures
            .iter()
            .filter(|r| r.port == c.port.0 && r.direction == c.direction)
            .collect();
        let matching = at_port
            .iter()
            .filter(|r| {
                let Ok(h) = eswitch::wire::EthHeader::parse(&r.frame) else {
                    return false;
                };
                let tci = h.tag.or(r.stripped_tci);
                c.tagged.is_none_or(|t| t == h.tag.is_some())
                    && c.stripped.is_none_or(|s| s == r.stripped_tci.is_some())
                    && c.vid.is_none_or(|v| tci.is_some_and(|t| t.vid() == v))
                    && c.pcp.is_none_or(|p| tci.is_some_and(|t| t.pcp() == p))
                    && c.src.is_none_or(|s| s == h.src)
                    && c.dst.is_none_or(|d| d.0 == h.dst)
            })
            .count();
        let seen: Vec<String> = at_port
            .iter()
            .take(3)
            .map(|r| describe_capture(r))
            .collect();
        let actual = format!(
            "{matching} of {} frame(s) matched{}",
            at_port.len(),
            if seen.is_empty() {
                String::new()
            } else {
                format!(" (seen: {})", seen.join("; "))
            }
        );
        let (expected, ok) = match c.count {
            Some(n) => (format!("{n} frame(s)"), matching == n),
            None => ("at least 1 frame".to_string(), matching >= 1),
        };
        check(
            format!("captured {}", conds.join(" ")),
            expected,
            actual,
            ok,
        )
    }

    fn rate(&self, band: &Band) -> Check {
        let (lo, hi) = band.bounds();
        let expected = match band.target {
            Some(t) => format!(
                "{t} Mbit/s ±{}% ({lo:.2}..{hi:.2})",
                band.tolerance_pct.unwrap_or(0.0)
            ),
            None => format!("{lo:.2}..{hi:.2} Mbit/s"),
        };
        match self.outcome.rate_mbps {
            Some(r) => check(
                "measured rate",
                expected,
                format!("{r:.2} Mbit/s"),
                (lo..=hi).contains(&r),
            ),
            None => missing("measured rate", expected, "not a traffic step"),
        }
    }

    fn policy(&self, p: &PolicyCheck) -> Check {
        let what = format!("vf{} policy {}", p.vf, p.field);
        let side = self.world.pf.side();
        let Some(policy) = side.policy(p.vf) else {
            return missing(what, "a policy", "no such VF");
        };
        let json = serde_json::to_value(policy).unwrap_or_default();
        let pointer = format!("/{}", p.field.replace('.', "/"));
        let got = json
            .pointer(&pointer)
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        if let Some(want) = &p.equals {
            let want = serde_json::to_value(want).unwrap_or_default();
            return check(what, &want, &got, json_equal(&want, &got));
        }
        if let Some(absent) = p.absent {
            let is_absent = got.is_null();
            return check(
                what,
                if absent { "absent" } else { "present" },
                &got,
                is_absent == absent,
            );
        }
        missing(what, "equals or absent", "no comparison given")
    }

    fn endpoint(&self, c: &crate::format::EndpointCheck) -> Vec<Check> {
        let Some(idx) = self.world.endpoint(&c.name) else {
            return vec![missing(
                format!("endpoint {}", c.name),
                "an endpoint",
                "no such endpoint",
            )];
        };
        let ep = &self.world.endpoints[idx];
        let mut out = Vec::new();
        if let Some(want) = c.mac {
            out.push(check(
                format!("{} MAC (its own view)", c.name),
                want,
                ep.stack.mac,
                ep.stack.mac == want,
            ));
        }
        if let Some((ip, mac)) = c.neighbour {
            let got = ep.stack.neighbours.get(&ip);
            out.push(check(
                format!("{} neighbour {ip}", c.name),
                mac,
                got.map_or("none".to_string(), |m| m.to_string()),
                got == Some(&mac),
            ));
        }
        if let Some(want) = c.link_up {
            let up = self
                .world
                .pf
                .side()
                .switch()
                .port_up(ep.port)
                .unwrap_or(false);
            out.push(check(format!("{} link up", c.name), want, up, up == want));
        }
        out
    }
}

fn describe_capture(r: &Captured) -> String {
    match eswitch::wire::EthHeader::parse(&r.frame) {
        Ok(h) => {
            let tag = match (h.tag, r.stripped_tci) {
                (Some(t), _) => format!(" tag vid {} pcp {}", t.vid(), t.pcp()),
                (None, Some(t)) => format!(" stripped vid {} pcp {}", t.vid(), t.pcp()),
                _ => " untagged".into(),
            };
            format!("{} → {}{tag}", h.src, h.dst)
        }
        Err(_) => format!("{} malformed bytes", r.frame.len()),
    }
}

fn write_pcaps(dir: &Path, name: &str, captures: &[Captured]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut by_port: BTreeMap<PortId, Vec<&Captured>> = BTreeMap::new();
    for c in captures {
        by_port.entry(c.port).or_default().push(c);
    }
    for (port, records) in by_port {
        let path = dir.join(format!("{name}-{port}.pcap"));
        let file = std::io::BufWriter::new(std::fs::File::create(path)?);
        let mut w = PcapWriter::new(file)?;
        for r in records {
            w.record(r.time_ns, &r.frame)?;
        }
        std::io::Write::flush(&mut w.into_inner())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("ab", 99), (1, 3));
        // An offset inside a multi-byte character is clamped, not a panic.
        assert_eq!(line_col("é", 1), (1, 1));
    }
}
