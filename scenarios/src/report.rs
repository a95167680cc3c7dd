//! What a run found: per scenario, per step, each check with its expected and actual value.
//! Printed for people ([`ScenarioReport::render`]) or serialised for machines (`--json`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use eswitch::DropReason;

use crate::ports::{Cable, PfRef, PortRef};

/// Who sent a frame: the step's own sender, or an endpoint answering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Step,
    Reply,
}

/// A frame (or one copy of it) a switch dropped, and where it was counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Dropped {
    pub port: PortRef,
    pub reason: DropReason,
}

/// A fault armed on one port of the card (a wire fault, say) and what it has done so far.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ArmedFault {
    /// The port of the card it is armed on (`pf`, `pf1`).
    pub port: PfRef,
    /// The fault as the NIC prints it (`vf1 rx drop every 2`).
    pub fault: String,
    /// What it looked at while armed (a wire fault: the frames crossing its port and direction).
    pub seen: u64,
    /// What it acted on (a wire fault: the frames it dropped, corrupted or duplicated).
    pub fired: u64,
}

impl ArmedFault {
    /// `vf1 rx drop every 2: 10 seen, 5 fired`.
    pub(crate) fn line(&self) -> String {
        format!("{}: {} seen, {} fired", self.fault, self.seen, self.fired)
    }
}

/// The faults of one port of the card: those carried out, by kind, and those armed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PortFaults {
    pub port: PfRef,
    /// Faults carried out on the port, by kind (`pf_reset`, `link_down`, ...).
    pub carried_out: BTreeMap<String, u64>,
    pub armed: Vec<ArmedFault>,
}

impl PortFaults {
    pub fn is_empty(&self) -> bool {
        self.carried_out.is_empty() && self.armed.is_empty()
    }
}

/// One port of the card as the report draws it: its switch's ports, in the switch's order
/// (uplinks, the PF, the VFs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CardPort {
    pub port: PfRef,
    pub ports: Vec<PortRef>,
}

/// An endpoint and the switch port it is on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EndpointAt {
    pub name: String,
    pub port: PortRef,
}

/// Frames one switch handled during a step that went the same way: from `ingress` to the ports
/// in `delivered` (each got a copy), with the same drops, counted together.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FramePath {
    pub count: u64,
    /// `step` (the step's sender's frames) or `reply` (an endpoint answering).
    pub origin: Origin,
    /// The frames came in over a cable (`ingress` is its end), not from an endpoint.
    pub over_cable: bool,
    pub ingress: PortRef,
    pub delivered: Vec<PortRef>,
    /// Each frame's drops (a copy dropped at a port, or the frame at its ingress).
    pub drops: Vec<Dropped>,
}

/// A switch port counter the step changed (`rx_packets`, `drops.spoof_mac`: the names
/// `expect.counters` takes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CounterChange {
    pub port: PortRef,
    pub name: String,
    pub before: u64,
    pub after: u64,
}

/// One expectation checked.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub what: String,
    pub expected: String,
    pub actual: String,
    pub pass: bool,
}

/// One step: what it did, what happened, and its checks.
#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    pub index: usize,
    pub action: String,
    /// What happened, in a line or two (where frames went, the mailbox verdict).
    pub happened: Vec<String>,
    /// Where the step's frames went (its sender's, the answers, those over cables), per
    /// switch, alike frames counted together, in the order first seen.
    pub frames: Vec<FramePath>,
    /// The switch port counters the step changed.
    pub counters: Vec<CounterChange>,
    /// The step's INFO+ log lines.
    pub logs: Vec<String>,
    /// The cables plugged in after the step.
    pub cables: Vec<Cable>,
    pub checks: Vec<Check>,
    /// The step could not be carried out (unknown endpoint, mailbox timeout...).
    pub error: Option<String>,
    /// The step was skipped, and why: in the guest mode, what only the in-process world can do
    /// (a crafted frame or a hand-made mailbox request from a guest); `shell` without a guest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// The faults armed on the card after the step, with what each has seen and hit so far.
    pub faults: Vec<ArmedFault>,
    pub pass: bool,
}

/// A QEMU guest of the run (the guest mode): what it booted, and its console at the end.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GuestInfo {
    /// The endpoint it is.
    pub endpoint: String,
    /// `uname -r` in the guest.
    pub kernel: Option<String>,
    /// The modules the user brought ([`crate::qemu::GuestBuild`]), as the guest has them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<GuestModule>,
    /// The whole console log, on disk.
    pub log: String,
    /// The console's last lines when the scenario ended.
    pub console_tail: String,
}

/// A module the user brought, as a guest has it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GuestModule {
    pub name: String,
    /// Its path in the guest.
    pub path: String,
    /// `/sys/module/<name>` exists: the kernel has it loaded.
    pub loaded: bool,
    /// The checksum of the guest's file.
    pub sha256: Option<String>,
    /// The checksum of the file brought.
    pub expected_sha256: String,
    /// `/sys/module/<name>/taint` (`E`: an unsigned module, `O`: out of tree).
    pub taint: String,
}

impl GuestModule {
    /// The guest runs the module that was brought: loaded, from a file with its checksum.
    pub fn is_the_build(&self) -> bool {
        self.loaded && self.sha256.as_deref() == Some(self.expected_sha256.as_str())
    }
}

impl GuestInfo {
    /// `guest vf0: kernel 6.1.0-50-amd64; igbvf loaded, sha256 0123abcd… (the build's), taint E`.
    pub fn line(&self) -> String {
        let mut line = format!(
            "guest {}: kernel {}",
            self.endpoint,
            self.kernel.as_deref().unwrap_or("?")
        );
        for m in &self.modules {
            let sum = m.sha256.as_deref().unwrap_or("none");
            let whose = if m.is_the_build() {
                "the build's"
            } else if m.loaded {
                "NOT the build's"
            } else {
                "not loaded"
            };
            let _ = write!(
                line,
                "; {} {}, sha256 {}… ({whose})",
                m.name,
                if m.loaded { "loaded" } else { "not loaded" },
                &sum[..sum.len().min(12)]
            );
            if !m.taint.is_empty() {
                let _ = write!(line, ", taint {}", m.taint);
            }
        }
        line
    }
}

/// One scenario file.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioReport {
    pub name: String,
    pub file: String,
    pub description: String,
    pub reproduces: String,
    /// Setting the scenario up failed (NIC, policies, endpoints): no step ran.
    pub setup_error: Option<String>,
    /// The card's ports and their switches' ports (empty when setup failed before the card
    /// was there).
    pub card: Vec<CardPort>,
    pub endpoints: Vec<EndpointAt>,
    pub steps: Vec<StepReport>,
    /// The faults of each port of the card at the end of the run (ports with none left out):
    /// those carried out and those still armed.
    pub faults: Vec<PortFaults>,
    pub pass: bool,
    /// Wall-clock time of the run, milliseconds.
    pub wall_ms: f64,
    /// Simulated (or real) time the scenario covered, milliseconds.
    pub scenario_ms: f64,
    /// The QEMU guests of the run (the guest mode).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub guests: Vec<GuestInfo>,
}

impl ScenarioReport {
    pub fn checks(&self) -> (usize, usize) {
        let all = self.steps.iter().flat_map(|s| &s.checks);
        let total = all.clone().count();
        (all.filter(|c| c.pass).count(), total)
    }

    /// The human-readable report: every step with its checks, failures spelled out.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let verdict = if self.pass { "PASS" } else { "FAIL" };
        let _ = writeln!(out, "== {verdict} {} ({})", self.name, self.file);
        let _ = writeln!(out, "   {}", one_line(&self.description));
        let _ = writeln!(out, "   reproduces: {}", one_line(&self.reproduces));
        if let Some(e) = &self.setup_error {
            let _ = writeln!(out, "   setup failed: {e}");
        }
        for g in &self.guests {
            let _ = writeln!(out, "   {}", g.line());
        }
        for step in &self.steps {
            let mark = match (step.pass, &step.skipped) {
                (_, Some(_)) => "skip",
                (true, None) => "ok  ",
                (false, None) => "FAIL",
            };
            let _ = writeln!(out, "  {mark} step {}: {}", step.index + 1, step.action);
            if let Some(why) = &step.skipped {
                let _ = writeln!(out, "         skipped: {why}");
            }
            for line in &step.happened {
                let _ = writeln!(out, "         {line}");
            }
            for line in &step.logs {
                let _ = writeln!(out, "         log: {line}");
            }
            if let Some(e) = &step.error {
                let _ = writeln!(out, "         error: {e}");
            }
            for f in &step.faults {
                let _ = writeln!(out, "         fault armed on {}: {}", f.port, f.line());
            }
            for c in &step.checks {
                if c.pass {
                    let _ = writeln!(out, "         ok   {}: {}", c.what, c.actual);
                } else {
                    let _ = writeln!(
                        out,
                        "         FAIL {}: expected {}, got {}",
                        c.what, c.expected, c.actual
                    );
                }
            }
        }
        for p in &self.faults {
            if !p.carried_out.is_empty() {
                let kinds: Vec<String> = p
                    .carried_out
                    .iter()
                    .map(|(kind, n)| format!("{kind} {n}"))
                    .collect();
                let _ = writeln!(
                    out,
                    "   faults carried out on {}: {}",
                    p.port,
                    kinds.join(", ")
                );
            }
            for f in &p.armed {
                let _ = writeln!(out, "   fault still armed on {}: {}", p.port, f.line());
            }
        }
        let (ok, total) = self.checks();
        let _ = writeln!(
            out,
            "   {ok}/{total} checks passed, {:.1} ms simulated, {:.1} ms wall",
            self.scenario_ms, self.wall_ms
        );
        out
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
