//! A step's expectations checked against what happened: deliveries and drops, counters,
//! captured frames, mailbox replies and refusals, log lines, rates, and the switch's and the
//! endpoints' state.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use eswitch::{PortCounters, PortId, VlanTci};
use mailbox::RefusalReason;

use crate::format::{
    Band, CaptureSpec, CounterSpec, Expect, GuestCaptureSpec, NeighbourState, PolicyCheck,
    ReplyKind,
};
use crate::outcome::{list, verdict, Outcome};
use crate::ports::PortRef;
use crate::received::{Filter, FrameKind, Tally};
use crate::report::Check;
use crate::world::{Captured, Origin, SwitchEvent, World};

pub(crate) struct CheckCtx<'a> {
    pub(crate) world: &'a World,
    pub(crate) events: &'a [SwitchEvent],
    /// Drops no switch event carries (frames a TX wire fault dropped before the switch).
    pub(crate) captures: &'a [Captured],
    pub(crate) counters_before: &'a BTreeMap<PortRef, PortCounters>,
    pub(crate) refusals_before: &'a BTreeMap<PortRef, Vec<(RefusalReason, u64)>>,
    pub(crate) outcome: &'a Outcome,
    pub(crate) logs: &'a [String],
    /// The interface counters of the endpoints `expect.endpoint` names, before the step.
    pub(crate) stats_before: &'a BTreeMap<String, BTreeMap<String, u64>>,
}

pub(crate) fn check(
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

fn missing(what: impl Into<String>, expected: impl fmt::Display, why: impl fmt::Display) -> Check {
    check(what, expected, why, false)
}

fn counter_value(c: &PortCounters, name: &str) -> Option<u64> {
    let json = serde_json::to_value(c).ok()?;
    let pointer = format!("/{}", name.replace('.', "/"));
    json.pointer(&pointer)?.as_u64()
}

/// Every counter of a port by the name `expect.counters` takes (`rx_packets`,
/// `drops.spoof_mac`), in the order the counters are declared.
pub(crate) fn counter_values(c: &PortCounters) -> Vec<(String, u64)> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, u64)>) {
        match v {
            serde_json::Value::Object(fields) => {
                for (k, v) in fields {
                    let name = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&name, v, out);
                }
            }
            v => {
                if let Some(n) = v.as_u64() {
                    out.push((prefix.to_string(), n));
                }
            }
        }
    }
    let mut out = Vec::new();
    if let Ok(json) = serde_json::to_value(c) {
        walk("", &json, &mut out);
    }
    out
}

fn json_equal(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

impl CheckCtx<'_> {
    pub(crate) fn checks(&self, e: &Expect) -> Vec<Check> {
        let mut out = Vec::new();
        let own_delivered: BTreeSet<PortRef> = self
            .events
            .iter()
            .filter(|ev| ev.origin == Origin::Step)
            .flat_map(|ev| ev.delivered.iter().copied())
            .collect();
        if let Some(want) = &e.delivered {
            let want: BTreeSet<PortRef> = want.iter().copied().collect();
            out.push(check(
                "delivered to",
                list(want.iter()),
                list(own_delivered.iter()),
                want == own_delivered,
            ));
        }
        for p in &e.not_delivered {
            let got = own_delivered.contains(p);
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
                .filter(|r| r.port == d.port && r.reason == d.reason)
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
        for c in &e.guest_captured {
            out.push(self.guest_captured(c));
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
            let after = self.world.refusals();
            let mut rose = BTreeSet::new();
            for (vf, now) in &after {
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
        if e.ok.is_none() && e.error_contains.is_none() {
            // A `set` step that says nothing of the outcome expects its words taken, as the
            // `[[policy]]` table does: a refusal fails it.
            if let Some(Err(err)) = &self.outcome.set_result {
                out.push(check(
                    "command accepted",
                    "true (the step has no expect.ok or expect.error_contains)",
                    format!("refused: {err}"),
                    false,
                ));
            }
        }
        if let Some(want) = &e.error_contains {
            let got = match &self.outcome.set_result {
                Some(Err(e)) => e.to_string(),
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
        if let Some(want) = e.exit {
            match self.outcome.exit {
                Some(got) => out.push(check("exit status", want, got, got == want)),
                None => out.push(missing("exit status", want, "not a shell step in a guest")),
            }
        }
        for text in &e.output_contains {
            let what = format!("output contains `{text}`");
            match &self.outcome.output {
                Some(o) => {
                    let last = o.lines().last().unwrap_or("");
                    out.push(check(
                        what,
                        "a line with it",
                        last,
                        o.contains(text.as_str()),
                    ));
                }
                None => out.push(missing(
                    what,
                    "a line with it",
                    "not a shell step in a guest",
                )),
            }
        }
        for g in &e.guest_log_contains {
            let what = format!("{} kernel log contains `{}`", g.guest, g.contains);
            match self.outcome.guest_logs.get(&g.guest) {
                Some(log) => {
                    let hit = log.lines().find(|l| l.contains(g.contains.as_str()));
                    let actual = match hit {
                        Some(l) => l.trim().to_string(),
                        None => format!("{} line(s), none with it", log.lines().count()),
                    };
                    out.push(check(what, "a line with it", actual, hit.is_some()));
                }
                // One file checks both worlds: an in-process endpoint has no kernel.
                None if self
                    .world
                    .endpoint(&g.guest)
                    .is_some_and(|i| !self.world.endpoints[i].guest) =>
                {
                    out.push(check(
                        what,
                        "a line with it",
                        "not checked: in process, no kernel (guest mode only)",
                        true,
                    ))
                }
                None => out.push(missing(what, "a line with it", "no such guest")),
            }
        }
        out
    }

    fn counter(&self, c: &CounterSpec) -> Check {
        let what = format!("{} {}", c.port, c.name);
        let Some(now) = self
            .world
            .nic(c.port.nic)
            .and_then(|nic| nic.with_pf(|pf| pf.switch().counters(c.port.port).cloned()))
        else {
            return missing(what, "a counter", "no such port");
        };
        let Some(after) = counter_value(&now, &c.name) else {
            return missing(what, "a counter", "no such counter");
        };
        let before = self
            .counters_before
            .get(&c.port)
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
        let tally = self.received_at(c.port, c.direction, |_| true);
        let port = format!("{} {:?}", c.port, c.direction).to_lowercase();
        frames_check(
            format!("captured {port}"),
            &c.filter(),
            &tally,
            c.count.map(|n| n as u64),
        )
    }

    /// What the observer captured at `port` in `direction` during the step; a tag the switch
    /// stripped counts where `keep_stripped` takes it.
    fn received_at(
        &self,
        port: PortRef,
        direction: eswitch::Direction,
        keep_stripped: impl Fn(VlanTci) -> bool,
    ) -> Tally {
        let mut tally = Tally::default();
        for r in self
            .captures
            .iter()
            .filter(|r| r.port == port && r.direction == direction)
        {
            match FrameKind::of(&r.frame, r.stripped_tci.filter(|t| keep_stripped(*t))) {
                Some(kind) => tally.add(kind),
                // Counted, matching nothing.
                None => tally.frames += 1,
            }
        }
        tally
    }

    /// `expect.guest_captured`: a guest's own capture of its eth0; an in-process endpoint's,
    /// what its function received (the observer's `rx` captures at its port), with a tag the
    /// switch stripped only in the VLAN the endpoint's stack uses: igbvf hands the stack a
    /// stripped tag only for a VLAN it joined, and the guest's capture sees no other.
    fn guest_captured(&self, c: &GuestCaptureSpec) -> Check {
        let filter = c.filter();
        let conds = filter.conds().join(" ");
        let idx = self.world.endpoint(&c.guest);
        let (whose, tally) = match (self.outcome.captures.get(&c.guest), idx) {
            (Some(Ok(t)), _) => ("guest", t.clone()),
            (Some(Err(e)), _) => {
                return missing(
                    format!("{} (guest view) received {conds}", c.guest),
                    "a capture",
                    e,
                )
            }
            (None, Some(i)) if !self.world.endpoints[i].guest => {
                let ep = &self.world.endpoints[i];
                let joined = ep.stack.vlan;
                let tally =
                    self.received_at(ep.port, eswitch::Direction::Rx, |t| joined == Some(t.vid()));
                ("runner", tally)
            }
            (None, Some(_)) => {
                return missing(
                    format!("{} (guest view) received {conds}", c.guest),
                    "a capture",
                    "not captured",
                )
            }
            (None, None) => {
                return missing(
                    format!("{} received {conds}", c.guest),
                    "an endpoint",
                    "no such endpoint",
                )
            }
        };
        frames_check(
            format!("{} ({whose} view) received", c.guest),
            &filter,
            &tally,
            c.count,
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
        let vf = PortRef::new(p.port.0, PortId::Vf(p.vf));
        let what = format!("{vf} policy {}", p.field);
        let Some(policy) = self
            .world
            .nic(vf.nic)
            .and_then(|nic| nic.with_pf(|pf| pf.policy(p.vf).cloned()))
        else {
            return missing(what, "a policy", "no such VF");
        };
        let json = serde_json::to_value(&policy).unwrap_or_default();
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
        let Some(view) = self.outcome.views.get(&c.name) else {
            return vec![missing(
                format!("endpoint {}", c.name),
                "its view",
                "not read",
            )];
        };
        let whose = format!("{} ({} view)", c.name, view.source);
        if let Some(e) = &view.error {
            out.push(missing(whose, "an answer", e));
            return out;
        }
        if let Some(want) = c.mac {
            out.push(check(
                format!("{whose} MAC"),
                want,
                view.mac.map_or("none".to_string(), |m| m.to_string()),
                view.mac == Some(want),
            ));
        }
        if let Some(n) = &c.neighbour {
            let ip = n.ip();
            let got = view.neighbours.get(&ip);
            let actual = match got {
                Some((Some(mac), state)) => format!("{mac} {state}"),
                Some((None, state)) => state.clone(),
                None => "no entry".to_string(),
            };
            let known = crate::netview::is_known(got);
            let (expected, ok) = match (n.mac(), n.state()) {
                (Some(mac), _) => (
                    mac.to_string(),
                    known && got.is_some_and(|(m, _)| *m == Some(mac)),
                ),
                (None, Some(NeighbourState::Known)) => ("known".to_string(), known),
                (None, Some(NeighbourState::Unknown)) => ("unknown".to_string(), !known),
                (None, None) => ("an entry".to_string(), got.is_some()),
            };
            out.push(check(
                format!("{whose} neighbour {ip}"),
                expected,
                actual,
                ok,
            ));
        }
        if let Some(want) = c.link_up {
            let up = self
                .world
                .nic(ep.port.nic)
                .and_then(|nic| nic.with_pf(|pf| pf.switch().port_up(ep.port.port)).ok())
                .unwrap_or(false);
            out.push(check(
                format!("{} link up (switch view)", c.name),
                want,
                up,
                up == want,
            ));
        }
        if let Some(want) = c.carrier {
            out.push(check(
                format!("{whose} carrier"),
                want,
                view.carrier
                    .map_or("unknown".to_string(), |c| c.to_string()),
                view.carrier == Some(want),
            ));
        }
        for s in &c.stats {
            let what = format!("{whose} {}", s.name);
            let Some(&after) = view.stats.get(&s.name) else {
                let known: Vec<&String> = view.stats.keys().collect();
                out.push(missing(
                    what,
                    "a counter",
                    format!("no such counter (it has {})", list(known.into_iter())),
                ));
                continue;
            };
            let before = self
                .stats_before
                .get(&c.name)
                .and_then(|b| b.get(&s.name))
                .copied();
            let delta = before.map(|b| after.saturating_sub(b));
            let delta_s = delta.map_or("unknown".to_string(), |d| d.to_string());
            if let Some(want) = s.delta {
                out.push(check(
                    format!("{what} delta"),
                    want,
                    &delta_s,
                    delta == Some(want),
                ));
            }
            if let Some(want) = s.delta_at_least {
                out.push(check(
                    format!("{what} delta"),
                    format!("at least {want}"),
                    &delta_s,
                    delta.is_some_and(|d| d >= want),
                ));
            }
            if let Some(want) = s.equals {
                out.push(check(what.clone(), want, after, after == want));
            }
            if let Some(want) = s.at_least {
                out.push(check(
                    what,
                    format!("at least {want}"),
                    after,
                    after >= want,
                ));
            }
        }
        out
    }
}

/// Frames of `tally` that `filter` takes, against `count` (or at least one).
fn frames_check(what: String, filter: &Filter, tally: &Tally, count: Option<u64>) -> Check {
    let mut what = what;
    for c in filter.conds() {
        what.push(' ');
        what.push_str(&c);
    }
    let matching = tally.count(|k| filter.matches(k));
    let seen = tally.summary(3);
    let actual = format!(
        "{matching} of {} frame(s) matched{}",
        tally.frames,
        if seen.is_empty() {
            String::new()
        } else {
            format!(" (seen: {seen})")
        }
    );
    let (expected, ok) = match count {
        Some(n) => (format!("{n} frame(s)"), matching == n),
        None => ("at least 1 frame".to_string(), matching >= 1),
    };
    check(what, expected, actual, ok)
}
