//! The run's reports as one self-contained HTML page: inline CSS and SVG, no script, nothing
//! loaded from elsewhere. Per scenario and step, a picture of the card — each port's uplinks, PF
//! and VFs as boxes around its switch, the cables between uplinks — with an arrow for every
//! delivery of the step (ingress port to each port that got a copy, the count when more than
//! one frame went that way), a red cross with the reason at every port where a frame was
//! dropped; then what happened, the checks with expected and actual values (failures in red,
//! class `fail`), the counters the step changed, the faults armed and the step's log lines.
//!
//! Everything the page shows comes from [`ScenarioReport`]s and is escaped; elements carry
//! classes and `data-` attributes (`port`, `arrow`, `drop`, `check fail`, `data-port`,
//! `data-from`, `data-to`, `data-reason`, `data-count`) for tests and for people's own styles.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use eswitch::{DropReason, PortId};

use crate::ports::{Cable, PortRef};
use crate::report::{CardPort, Check, CounterChange, ScenarioReport, StepReport};
use crate::world::Origin;

/// A port box.
const BOX_W: f64 = 84.0;
const BOX_H: f64 = 40.0;
/// Between two boxes of a row.
const GAP: f64 = 14.0;
/// Around a card port's switch, and between two card ports.
const PAD: f64 = 18.0;
/// Highest point of a cable's arc.
const CABLE_TOP: f64 = 8.0;
/// Top of the uplink row.
const UPLINK_Y: f64 = 52.0;
/// The switch bar.
const SWITCH_Y: f64 = 126.0;
const SWITCH_H: f64 = 30.0;
/// Top of the PF and VF row.
const FUNCTION_Y: f64 = 200.0;
/// A line of drop reasons under a box (or beside an uplink).
const LABEL_LINE: f64 = 14.0;
/// Characters of an endpoint name inside a box before it is cut.
const NAME_CHARS: usize = 11;

/// `s` escaped for HTML text and attribute values (double- or single-quoted).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page for `reports`, one section per scenario.
pub fn render(reports: &[ScenarioReport]) -> String {
    let passed = reports.iter().filter(|r| r.pass).count();
    let (checks_ok, checks) = reports.iter().fold((0, 0), |(ok, all), r| {
        let (o, a) = r.checks();
        (ok + o, all + a)
    });
    let verdict = class(passed == reports.len());
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>sriov-emu scenarios: {passed}/{} passed</title>\n<style>{CSS}</style>\n\
         </head>\n<body>\n<header>\n<h1>sriov-emu scenario report</h1>\n\
         <p class=\"summary {verdict}\">{passed} of {} scenarios passed, {checks_ok} of {checks} \
         checks</p>\n",
        reports.len(),
        reports.len(),
    );
    out.push_str("<nav><ul>\n");
    for (i, r) in reports.iter().enumerate() {
        let _ = writeln!(
            out,
            "<li class=\"{}\"><a href=\"#s{i}\">{} {}</a></li>",
            class(r.pass),
            verdict_word(r.pass),
            escape(&r.name)
        );
    }
    out.push_str("</ul></nav>\n");
    out.push_str(LEGEND);
    out.push_str("</header>\n<main>\n");
    for (i, r) in reports.iter().enumerate() {
        scenario(&mut out, i, r);
    }
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

fn class(pass: bool) -> &'static str {
    if pass {
        "pass"
    } else {
        "fail"
    }
}

fn verdict_word(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "FAIL"
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn scenario(out: &mut String, i: usize, r: &ScenarioReport) {
    let _ = write!(
        out,
        "<section class=\"scenario {c}\" id=\"s{i}\" data-name=\"{name}\">\n\
         <h2><span class=\"verdict {c}\">{v}</span> {name}</h2>\n\
         <p class=\"file\">{file}</p>\n<p class=\"description\">{desc}</p>\n\
         <p class=\"reproduces\"><b>Reproduces:</b> {repr}</p>\n",
        c = class(r.pass),
        v = verdict_word(r.pass),
        name = escape(&r.name),
        file = escape(&r.file),
        desc = escape(&one_line(&r.description)),
        repr = escape(&one_line(&r.reproduces)),
    );
    if let Some(e) = &r.setup_error {
        let _ = writeln!(
            out,
            "<p class=\"setup-error fail\">setup failed: {}</p>",
            escape(e)
        );
    }
    if !r.endpoints.is_empty() {
        let eps: Vec<String> = r
            .endpoints
            .iter()
            .map(|e| {
                format!(
                    "<b>{}</b> on <code>{}</code>",
                    escape(&e.name),
                    escape(&e.port.to_string())
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "<p class=\"endpoints\">Endpoints: {}</p>",
            eps.join(", ")
        );
    }
    for g in &r.guests {
        let _ = writeln!(
            out,
            "<details class=\"guest\"><summary>{}</summary><pre>{}</pre></details>",
            escape(&g.line()),
            escape(&g.console_tail)
        );
    }
    for step in &r.steps {
        step_html(out, i, r, step);
    }
    for p in &r.faults {
        let port = escape(&p.port.to_string());
        if !p.carried_out.is_empty() {
            let kinds: Vec<String> = p
                .carried_out
                .iter()
                .map(|(kind, n)| format!("{} {n}", escape(kind)))
                .collect();
            let _ = writeln!(
                out,
                "<p class=\"faults\">Faults carried out on <code>{port}</code>: {}</p>",
                kinds.join(", ")
            );
        }
        for f in &p.armed {
            let _ = writeln!(
                out,
                "<p class=\"faults\">Fault still armed on <code>{port}</code>: {}</p>",
                escape(&f.line())
            );
        }
    }
    let (ok, total) = r.checks();
    let _ = writeln!(
        out,
        "<p class=\"totals {}\">{ok}/{total} checks passed, {:.1} ms simulated, {:.1} ms \
         wall</p>\n</section>",
        class(r.pass),
        r.scenario_ms,
        r.wall_ms
    );
}

fn step_html(out: &mut String, si: usize, r: &ScenarioReport, step: &StepReport) {
    let n = step.index + 1;
    let _ = write!(
        out,
        "<article class=\"step {c}\" id=\"s{si}-{n}\">\n\
         <h3><span class=\"verdict {c}\">{v}</span> Step {n}: {action}</h3>\n",
        c = class(step.pass),
        v = match (step.pass, &step.skipped) {
            (_, Some(_)) => "skip",
            (true, None) => "ok",
            (false, None) => "FAIL",
        },
        action = escape(&step.action),
    );
    if let Some(why) = &step.skipped {
        let _ = writeln!(out, "<p class=\"skipped\">skipped: {}</p>", escape(why));
    }
    if !r.card.is_empty() {
        out.push_str("<figure class=\"nic\">");
        Picture::new(r, step).draw(out);
        out.push_str("</figure>\n");
    }
    out.push_str("<div class=\"facts\">\n");
    if !step.happened.is_empty() || step.error.is_some() {
        out.push_str("<div class=\"happened\"><h4>What happened</h4><ul>\n");
        for line in &step.happened {
            let _ = writeln!(out, "<li>{}</li>", escape(line));
        }
        if let Some(e) = &step.error {
            let _ = writeln!(out, "<li class=\"error fail\">error: {}</li>", escape(e));
        }
        out.push_str("</ul></div>\n");
    }
    if !step.checks.is_empty() {
        checks_table(out, &step.checks);
    }
    if !step.counters.is_empty() {
        counters_table(out, &step.counters);
    }
    if !step.faults.is_empty() {
        out.push_str("<div class=\"faults\"><h4>Faults armed</h4><ul>\n");
        for f in &step.faults {
            let _ = writeln!(
                out,
                "<li><code>{}</code>: {}</li>",
                escape(&f.port.to_string()),
                escape(&f.line())
            );
        }
        out.push_str("</ul></div>\n");
    }
    if !step.logs.is_empty() {
        out.push_str("<div class=\"logs\"><h4>Log</h4><pre>");
        for line in &step.logs {
            let _ = writeln!(out, "{}", escape(line));
        }
        out.push_str("</pre></div>\n");
    }
    out.push_str("</div>\n</article>\n");
}

/// The counters the step changed: a row per port, a column per counter, each cell the change
/// and the value after it (the value before in its title).
fn counters_table(out: &mut String, counters: &[CounterChange]) {
    let mut names: Vec<&str> = Vec::new();
    let mut rows: BTreeMap<PortRef, BTreeMap<&str, &CounterChange>> = BTreeMap::new();
    for c in counters {
        if !names.contains(&c.name.as_str()) {
            names.push(&c.name);
        }
        rows.entry(c.port).or_default().insert(&c.name, c);
    }
    names.sort_unstable();
    out.push_str("<div class=\"counters\"><h4>Counters</h4><table>\n<thead><tr><th>port</th>");
    for n in &names {
        let _ = write!(out, "<th>{}</th>", escape(n));
    }
    out.push_str("</tr></thead><tbody>\n");
    for (port, cells) in &rows {
        let p = escape(&port.to_string());
        let _ = write!(out, "<tr data-port=\"{p}\"><td>{p}</td>");
        for n in &names {
            let Some(c) = cells.get(n) else {
                out.push_str("<td></td>");
                continue;
            };
            let change = if c.after >= c.before {
                format!("+{}", c.after - c.before)
            } else {
                format!("-{}", c.before - c.after)
            };
            let _ = write!(
                out,
                "<td data-counter=\"{name}\" data-before=\"{b}\" data-after=\"{a}\" \
                 title=\"{p} {name}: {b} → {a}\">{change} <span class=\"after\">→ {a}</span></td>",
                name = escape(n),
                b = c.before,
                a = c.after,
            );
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table></div>\n");
}

fn checks_table(out: &mut String, checks: &[Check]) {
    out.push_str(
        "<div class=\"checks\"><h4>Checks</h4><table>\n<thead><tr><th></th><th>check</th>\
         <th>expected</th><th>actual</th></tr></thead><tbody>\n",
    );
    for c in checks {
        let _ = writeln!(
            out,
            "<tr class=\"check {cl}\"><td class=\"verdict\">{v}</td><td>{}</td>\
             <td class=\"expected\">{}</td><td class=\"actual\">{}</td></tr>",
            escape(&c.what),
            escape(&c.expected),
            escape(&c.actual),
            cl = class(c.pass),
            v = if c.pass { "ok" } else { "FAIL" },
        );
    }
    out.push_str("</tbody></table></div>\n");
}

/// Where a port's box is, and which side faces its switch.
#[derive(Clone, Copy)]
struct Slot {
    /// Left edge of the box.
    x: f64,
    /// Top edge of the box.
    y: f64,
    /// An uplink (above its switch), or a function (below).
    uplink: bool,
}

impl Slot {
    fn centre(&self) -> f64 {
        self.x + BOX_W / 2.0
    }

    /// Where arrows meet the box: the edge facing the switch.
    fn edge(&self) -> f64 {
        if self.uplink {
            self.y + BOX_H
        } else {
            self.y
        }
    }
}

/// Whose frames an arrow carries: the step sender's, or answers.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Way {
    Step,
    Reply,
}

impl From<Origin> for Way {
    fn from(o: Origin) -> Way {
        match o {
            Origin::Step => Way::Step,
            Origin::Reply => Way::Reply,
        }
    }
}

impl Way {
    fn name(self) -> &'static str {
        match self {
            Way::Step => "step",
            Way::Reply => "reply",
        }
    }

    /// How far from a box's centre its arrows leave (−) and arrive (+).
    fn offset(self) -> f64 {
        match self {
            Way::Step => 7.0,
            Way::Reply => 15.0,
        }
    }
}

/// The step's picture: the card's ports laid out, and what went where.
struct Picture<'a> {
    report: &'a ScenarioReport,
    step: &'a StepReport,
    slots: BTreeMap<PortRef, Slot>,
    /// Each card port's switch: its left edge and width.
    switches: Vec<(&'a CardPort, f64, f64)>,
    width: f64,
    /// Deliveries inside a switch: (from, to, way) → frames.
    arrows: BTreeMap<(PortRef, PortRef, Way), u64>,
    /// Frames carried over a cable: (from uplink, to uplink, way) → frames.
    carried: BTreeMap<(PortRef, PortRef, Way), u64>,
    /// Drops: (port, reason, ingress) → frames.
    drops: BTreeMap<(PortRef, DropReason, PortRef), u64>,
}

impl<'a> Picture<'a> {
    fn new(report: &'a ScenarioReport, step: &'a StepReport) -> Picture<'a> {
        let mut slots = BTreeMap::new();
        let mut switches = Vec::new();
        let mut x = PAD;
        for card_port in &report.card {
            let uplinks: Vec<PortRef> = card_port
                .ports
                .iter()
                .copied()
                .filter(|p| matches!(p.port, PortId::Uplink(_)))
                .collect();
            let mut functions: Vec<PortRef> = card_port
                .ports
                .iter()
                .copied()
                .filter(|p| !matches!(p.port, PortId::Uplink(_)))
                .collect();
            // The PF first, then the VFs in order (PortId orders uplinks, PF, VFs).
            functions.sort();
            let row = |n: usize| n as f64 * (BOX_W + GAP) - GAP;
            let width = row(uplinks.len().max(functions.len()).max(1));
            let place = |ports: &[PortRef], y: f64, uplink: bool, slots: &mut BTreeMap<_, _>| {
                let left = x + (width - row(ports.len())) / 2.0;
                for (i, p) in ports.iter().enumerate() {
                    let sx = left + i as f64 * (BOX_W + GAP);
                    slots.insert(*p, Slot { x: sx, y, uplink });
                }
            };
            place(&uplinks, UPLINK_Y, true, &mut slots);
            place(&functions, FUNCTION_Y, false, &mut slots);
            switches.push((card_port, x, width));
            x += width + 2.0 * PAD;
        }
        let mut arrows = BTreeMap::new();
        let mut carried = BTreeMap::new();
        let mut drops = BTreeMap::new();
        for path in &step.frames {
            let way = Way::from(path.origin);
            for to in &path.delivered {
                *arrows.entry((path.ingress, *to, way)).or_insert(0) += path.count;
            }
            for d in &path.drops {
                *drops.entry((d.port, d.reason, path.ingress)).or_insert(0) += path.count;
            }
            if path.over_cable {
                if let Some(far) = step
                    .cables
                    .iter()
                    .find_map(|c: &Cable| c.peer(path.ingress))
                {
                    *carried.entry((far, path.ingress, way)).or_insert(0) += path.count;
                }
            }
        }
        Picture {
            report,
            step,
            slots,
            switches,
            width: x - PAD,
            arrows,
            carried,
            drops,
        }
    }

    /// How many drop labels stand under a function's box (beside an uplink's): the height
    /// the picture needs below the function row.
    fn label_lines(&self) -> usize {
        let mut per_port: BTreeMap<PortRef, BTreeSet<DropReason>> = BTreeMap::new();
        for (port, reason, _) in self.drops.keys() {
            per_port.entry(*port).or_default().insert(*reason);
        }
        per_port
            .iter()
            .filter(|(p, _)| self.slots.get(p).is_some_and(|s| !s.uplink))
            .map(|(_, r)| r.len())
            .max()
            .unwrap_or(0)
    }

    fn draw(&self, out: &mut String) {
        // Room above the uplinks for cables only where the scenario has any.
        let cabled =
            self.report.card.len() > 1 || self.report.steps.iter().any(|s| !s.cables.is_empty());
        let top = if cabled { 0.0 } else { UPLINK_Y - 12.0 };
        let height = FUNCTION_Y + BOX_H + 12.0 + self.label_lines() as f64 * LABEL_LINE - top;
        let _ = writeln!(
            out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"card\" width=\"{w:.0}\" \
             height=\"{height:.0}\" viewBox=\"0 {top:.0} {w:.0} {height:.0}\" role=\"img\" \
             aria-label=\"the card during step {}\">",
            self.step.index + 1,
            w = self.width,
        );
        for (card_port, x, width) in &self.switches {
            let name = escape(&card_port.port.to_string());
            let _ = writeln!(
                out,
                "<g class=\"switch\" data-port=\"{name}\"><rect x=\"{x:.1}\" y=\"{SWITCH_Y:.1}\" \
                 width=\"{width:.1}\" height=\"{SWITCH_H:.1}\" rx=\"6\"/><text x=\"{:.1}\" \
                 y=\"{:.1}\">eswitch · {name}</text></g>",
                x + 8.0,
                SWITCH_Y + SWITCH_H / 2.0 + 4.0,
            );
        }
        for cable in &self.step.cables {
            self.cable(out, cable);
        }
        for (port, slot) in &self.slots {
            self.port_box(out, *port, *slot);
        }
        for (&(from, to, way), &count) in &self.arrows {
            self.arrow(out, from, to, way, count);
        }
        for (&(from, to, way), &count) in &self.carried {
            self.carried_arrow(out, from, to, way, count);
        }
        self.drop_marks(out);
        out.push_str("</svg>");
    }

    fn port_box(&self, out: &mut String, port: PortRef, s: Slot) {
        let kind = match port.port {
            PortId::Uplink(_) => "uplink",
            PortId::Pf => "pf",
            PortId::Vf(_) => "vf",
        };
        let active = self
            .arrows
            .keys()
            .any(|(from, to, _)| *from == port || *to == port)
            || self.drops.keys().any(|(p, _, _)| *p == port);
        let name = escape(&port.to_string());
        let endpoint = self
            .report
            .endpoints
            .iter()
            .find(|e| e.port == port && e.name != port.to_string())
            .map(|e| e.name.as_str());
        let _ = write!(
            out,
            "<g class=\"port {kind}{}\" data-port=\"{name}\"><title>{name}{}</title>\
             <rect x=\"{:.1}\" y=\"{:.1}\" width=\"{BOX_W:.1}\" height=\"{BOX_H:.1}\" rx=\"4\"/>\
             <text class=\"name\" x=\"{:.1}\" y=\"{:.1}\">{name}</text>",
            if active { " active" } else { "" },
            endpoint.map_or(String::new(), |e| format!(": endpoint {}", escape(e))),
            s.x,
            s.y,
            s.centre(),
            s.y + if endpoint.is_some() { 17.0 } else { 25.0 },
        );
        if let Some(e) = endpoint {
            let short: String = if e.chars().count() > NAME_CHARS {
                e.chars()
                    .take(NAME_CHARS - 1)
                    .chain(std::iter::once('…'))
                    .collect()
            } else {
                e.to_string()
            };
            let _ = write!(
                out,
                "<text class=\"endpoint\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                s.centre(),
                s.y + 32.0,
                escape(&short)
            );
        }
        out.push_str("</g>\n");
    }

    /// A cable's arc over the uplink row (a loop over the box for a loopback plug).
    fn cable_path(&self, from: Slot, to: Slot, lift: f64) -> String {
        let (a, b) = (from.centre(), to.centre());
        if (a - b).abs() < f64::EPSILON {
            format!(
                "M{:.1},{UPLINK_Y:.1} C{:.1},{:.1} {:.1},{:.1} {:.1},{UPLINK_Y:.1}",
                a - 12.0,
                a - 34.0,
                CABLE_TOP + lift,
                a + 34.0,
                CABLE_TOP + lift,
                a + 12.0
            )
        } else {
            format!(
                "M{a:.1},{UPLINK_Y:.1} C{a:.1},{:.1} {b:.1},{:.1} {b:.1},{UPLINK_Y:.1}",
                CABLE_TOP + lift,
                CABLE_TOP + lift
            )
        }
    }

    fn cable(&self, out: &mut String, cable: &Cable) {
        let (a, b) = (PortRef::from(cable.a), PortRef::from(cable.b));
        let (Some(sa), Some(sb)) = (self.slots.get(&a), self.slots.get(&b)) else {
            return;
        };
        let _ = writeln!(
            out,
            "<path class=\"cable\" data-from=\"{}\" data-to=\"{}\" d=\"{}\"><title>cable {}</title>\
             </path>",
            escape(&a.to_string()),
            escape(&b.to_string()),
            self.cable_path(*sa, *sb, 0.0),
            escape(&cable.to_string()),
        );
    }

    fn carried_arrow(&self, out: &mut String, from: PortRef, to: PortRef, way: Way, count: u64) {
        let (Some(sa), Some(sb)) = (self.slots.get(&from), self.slots.get(&to)) else {
            return;
        };
        // Above the cable, the answers above the step's frames; the counts side by side.
        let (lift, shift) = match way {
            Way::Step => (8.0, -16.0),
            Way::Reply => (16.0, 16.0),
        };
        let (f, t) = (escape(&from.to_string()), escape(&to.to_string()));
        let mid_x = (sa.centre() + sb.centre()) / 2.0 + shift;
        // The arc's highest point: a quarter of the way from its ends to its control points.
        let mid_y = (UPLINK_Y + 3.0 * (CABLE_TOP + lift)) / 4.0;
        let _ = writeln!(
            out,
            "<g class=\"arrow carried {w}\" data-from=\"{f}\" data-to=\"{t}\" data-count=\"{count}\">\
             <title>{f} → {t} over the cable: {count} frame(s)</title><path d=\"{}\" \
             marker-end=\"url(#arrow-cable)\"/><text x=\"{mid_x:.1}\" y=\"{:.1}\">×{count}</text></g>",
            self.cable_path(*sa, *sb, lift),
            mid_y + 11.0,
            w = way.name(),
        );
    }

    fn arrow(&self, out: &mut String, from: PortRef, to: PortRef, way: Way, count: u64) {
        let (Some(sa), Some(sb)) = (self.slots.get(&from), self.slots.get(&to)) else {
            return;
        };
        let (ax, ay) = (sa.centre() - way.offset(), sa.edge());
        let (bx, by) = (sb.centre() + way.offset(), sb.edge());
        let mid = SWITCH_Y + SWITCH_H / 2.0;
        // The Bézier's point at t = ½, where the count stands.
        let (lx, ly) = ((ax + bx) / 2.0, (ay + 6.0 * mid + by) / 8.0);
        let (f, t) = (escape(&from.to_string()), escape(&to.to_string()));
        let _ = write!(
            out,
            "<g class=\"arrow {w}\" data-from=\"{f}\" data-to=\"{t}\" data-count=\"{count}\">\
             <title>{f} → {t}: {count} frame(s){}</title><path d=\"M{ax:.1},{ay:.1} \
             C{ax:.1},{mid:.1} {bx:.1},{mid:.1} {bx:.1},{by:.1}\" \
             marker-end=\"url(#arrow-{w})\"/>",
            if way == Way::Reply { ", answers" } else { "" },
            w = way.name(),
        );
        if count > 1 {
            let _ = write!(
                out,
                "<text x=\"{lx:.1}\" y=\"{:.1}\">×{count}</text>",
                ly - 3.0
            );
        }
        out.push_str("</g>\n");
    }

    /// A red cross where each frame stopped, a dashed line from where it came in, and the
    /// reason with the count beside the port.
    fn drop_marks(&self, out: &mut String) {
        let mut line_of: BTreeMap<PortRef, usize> = BTreeMap::new();
        let mut labelled: BTreeSet<(PortRef, DropReason)> = BTreeSet::new();
        let mut totals: BTreeMap<(PortRef, DropReason), u64> = BTreeMap::new();
        for (&(port, reason, _), &n) in &self.drops {
            *totals.entry((port, reason)).or_insert(0) += n;
        }
        for (&(port, reason, ingress), &count) in &self.drops {
            let Some(s) = self.slots.get(&port) else {
                continue;
            };
            let (x, y) = (s.centre(), s.edge());
            let p = escape(&port.to_string());
            let from = escape(&ingress.to_string());
            let _ = write!(
                out,
                "<g class=\"drop\" data-port=\"{p}\" data-reason=\"{reason}\" data-from=\"{from}\" \
                 data-count=\"{count}\"><title>dropped at {p} as {reason}: {count} frame(s) from \
                 {from}</title>"
            );
            if ingress != port {
                if let Some(si) = self.slots.get(&ingress) {
                    let (ax, ay) = (si.centre(), si.edge());
                    let mid = SWITCH_Y + SWITCH_H / 2.0;
                    let _ = write!(
                        out,
                        "<path d=\"M{ax:.1},{ay:.1} C{ax:.1},{mid:.1} {x:.1},{mid:.1} {x:.1},{y:.1}\"/>"
                    );
                }
            }
            let r = 6.0;
            let _ = write!(
                out,
                "<path class=\"cross\" d=\"M{:.1},{:.1} L{:.1},{:.1} M{:.1},{:.1} L{:.1},{:.1}\"/>",
                x - r,
                y - r,
                x + r,
                y + r,
                x - r,
                y + r,
                x + r,
                y - r
            );
            if labelled.insert((port, reason)) {
                let line = line_of.entry(port).or_insert(0);
                let total = totals.get(&(port, reason)).copied().unwrap_or(count);
                let (lx, ly, anchor) = if s.uplink {
                    (
                        s.x + BOX_W + 6.0,
                        s.y + 12.0 + *line as f64 * LABEL_LINE,
                        "start",
                    )
                } else {
                    (
                        s.centre(),
                        s.y + BOX_H + 14.0 + *line as f64 * LABEL_LINE,
                        "middle",
                    )
                };
                *line += 1;
                let _ = write!(
                    out,
                    "<text class=\"reason\" x=\"{lx:.1}\" y=\"{ly:.1}\" text-anchor=\"{anchor}\">\
                     {reason} ×{total}</text>"
                );
            }
            out.push_str("</g>\n");
        }
    }
}

/// What the pictures' colours and marks mean; it also holds the arrowheads every picture uses.
const LEGEND: &str = r##"<div class="legend"><svg xmlns="http://www.w3.org/2000/svg" width="760" height="34" viewBox="0 0 760 34" aria-label="legend">
<defs>
<marker id="arrow-step" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#1f5fbf"/></marker>
<marker id="arrow-reply" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#2e8b57"/></marker>
<marker id="arrow-cable" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#7b3fb5"/></marker>
</defs>
<g class="arrow step"><path d="M10,17 L60,17" marker-end="url(#arrow-step)"/></g><text x="68" y="21">the step's frames</text>
<g class="arrow reply"><path d="M205,17 L255,17" marker-end="url(#arrow-reply)"/></g><text x="263" y="21">answers</text>
<g class="arrow carried"><path d="M340,17 L390,17" marker-end="url(#arrow-cable)"/></g><text x="398" y="21">over a cable</text>
<path class="cable" d="M505,17 L555,17"/><text x="563" y="21">cable</text>
<g class="drop"><path class="cross" d="M620,11 L632,23 M620,23 L632,11"/></g><text x="640" y="21">dropped (reason)</text>
</svg></div>
"##;

const CSS: &str = r#"
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f; margin: 0; background: #f6f7f9; }
header { background: #fff; border-bottom: 1px solid #d8dbe0; padding: 12px 24px; }
main { padding: 8px 24px 40px; max-width: 1400px; }
h1 { font-size: 20px; margin: 4px 0; }
h2 { font-size: 18px; margin: 0 0 6px; }
h3 { font-size: 15px; margin: 0 0 8px; }
h4 { font-size: 12px; text-transform: uppercase; letter-spacing: .04em; color: #5c6370; margin: 6px 0 4px; }
code, .file, pre, td { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12.5px; }
nav ul { list-style: none; padding: 0; margin: 6px 0; display: flex; flex-wrap: wrap; gap: 6px; }
nav li a { display: block; padding: 2px 8px; border-radius: 10px; text-decoration: none; color: inherit; border: 1px solid #cfd3da; background: #fff; }
nav li.fail a { background: #fde8e8; border-color: #e0a3a3; color: #a30d0d; }
.summary.pass { color: #1e6b34; } .summary.fail { color: #a30d0d; font-weight: 600; }
.scenario { background: #fff; border: 1px solid #d8dbe0; border-radius: 8px; padding: 14px 18px; margin: 16px 0; }
.scenario.fail { border-left: 5px solid #c62828; }
.scenario.pass { border-left: 5px solid #2e7d32; }
.description, .reproduces, .endpoints, .file { margin: 3px 0; }
.file { color: #5c6370; }
.verdict { display: inline-block; min-width: 36px; padding: 0 6px; border-radius: 4px; font-size: 12px; text-align: center; }
.verdict.pass { background: #e3f4e6; color: #1e6b34; }
.verdict.fail { background: #c62828; color: #fff; }
.step { border-top: 1px solid #e6e8ec; padding: 12px 0 4px; margin-top: 10px; }
.step.fail h3 { color: #a30d0d; }
figure.nic { margin: 4px 0 6px; overflow-x: auto; }
.facts { display: flex; flex-wrap: wrap; gap: 6px 28px; }
.facts > div { min-width: 260px; }
.counters td { white-space: nowrap; }
.counters .after { color: #8a94a6; }
.happened ul, .faults ul { margin: 0; padding-left: 18px; }
table { border-collapse: collapse; }
th { text-align: left; font-size: 12px; color: #5c6370; font-weight: 600; padding: 2px 8px 2px 0; border-bottom: 1px solid #e6e8ec; }
td { padding: 2px 10px 2px 0; vertical-align: top; }
tr.check.pass td.verdict { color: #1e6b34; }
tr.check.fail { background: #fde8e8; color: #a30d0d; font-weight: 600; }
tr.check.fail td.verdict { background: #c62828; color: #fff; text-align: center; }
.setup-error, .error { color: #a30d0d; font-weight: 600; }
pre { background: #f3f4f6; padding: 6px 8px; margin: 0; white-space: pre-wrap; border-radius: 4px; }
.totals { color: #5c6370; margin: 10px 0 0; }
.totals.fail { color: #a30d0d; }
svg text { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 11px; fill: #1d1d1f; }
svg .switch rect { fill: #eef1f6; stroke: #8a94a6; }
svg .switch text { fill: #5c6370; }
svg .port rect { fill: #fff; stroke: #9aa3b2; stroke-width: 1.2; }
svg .port.active rect { stroke: #1d1d1f; stroke-width: 1.8; }
svg .port.uplink rect { fill: #f7f3e8; }
svg .port.pf rect { fill: #eef4fb; }
svg .port text { text-anchor: middle; }
svg .port text.endpoint { fill: #5c6370; font-size: 10px; }
svg .cable { fill: none; stroke: #444; stroke-width: 2.5; }
svg .arrow path { fill: none; stroke-width: 1.8; }
svg .arrow text { font-size: 10.5px; text-anchor: middle; }
svg .arrow.step path { stroke: #1f5fbf; }
svg .arrow.step text { fill: #1f5fbf; }
svg .arrow.reply path { stroke: #2e8b57; stroke-dasharray: 5 3; }
svg .arrow.reply text { fill: #2e8b57; }
svg .arrow.carried path { stroke: #7b3fb5; }
svg .arrow.carried text { fill: #7b3fb5; }
svg .drop path { fill: none; stroke: #c62828; stroke-width: 1.5; stroke-dasharray: 3 3; }
svg .drop path.cross { stroke-width: 3; stroke-dasharray: none; }
svg .drop text.reason { fill: #c62828; font-weight: 600; }
.legend { margin: 4px 0 2px; }
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{EndpointAt, FramePath};
    use crate::world::Dropped;
    use crate::PfRef;

    fn port(s: &str) -> PortRef {
        s.parse().unwrap()
    }

    fn report() -> ScenarioReport {
        let check = |what: &str, pass| Check {
            what: what.into(),
            expected: "pf".into(),
            actual: "uplink0, <pf>".into(),
            pass,
        };
        ScenarioReport {
            name: "a<b>&\"c\"".into(),
            file: "x.toml".into(),
            description: "<script>alert(1)</script>".into(),
            reproduces: "r".into(),
            setup_error: None,
            card: vec![CardPort {
                port: PfRef(0),
                ports: ["uplink0", "pf", "vf0", "vf1"].map(port).to_vec(),
            }],
            endpoints: vec![EndpointAt {
                name: "vm'0".into(),
                port: port("vf0"),
            }],
            steps: vec![StepReport {
                index: 0,
                action: "vm0 ARPs".into(),
                happened: vec!["1 frame(s)".into()],
                frames: vec![FramePath {
                    count: 3,
                    origin: Origin::Step,
                    over_cable: false,
                    ingress: port("vf0"),
                    delivered: vec![port("uplink0"), port("pf")],
                    drops: vec![Dropped {
                        port: port("vf1"),
                        reason: DropReason::LinkDown,
                    }],
                }],
                counters: vec![CounterChange {
                    port: port("pf"),
                    name: "rx_broadcast".into(),
                    before: 1,
                    after: 4,
                }],
                logs: vec!["INFO x: <b>".into()],
                cables: Vec::new(),
                checks: vec![check("delivered to", false), check("answered", true)],
                error: None,
                faults: Vec::new(),
                skipped: None,
                pass: false,
            }],
            faults: Vec::new(),
            pass: false,
            wall_ms: 1.0,
            scenario_ms: 2.0,
            guests: Vec::new(),
        }
    }

    #[test]
    fn text_is_escaped_everywhere() {
        assert_eq!(
            escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        let page = render(&[report()]);
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("a&lt;b&gt;&amp;&quot;c&quot;"));
        assert!(page.contains("vm&#39;0"));
        assert!(page.contains("INFO x: &lt;b&gt;"));
        assert!(page.contains("uplink0, &lt;pf&gt;"));
    }

    #[test]
    fn the_picture_has_boxes_arrows_and_the_drop() {
        let page = render(&[report()]);
        for p in ["uplink0", "pf", "vf0", "vf1"] {
            assert!(page.contains(&format!("data-port=\"{p}\"><title>")), "{p}");
        }
        assert_eq!(
            page.matches("<g class=\"arrow step\" data-from=\"vf0\"")
                .count(),
            2
        );
        assert!(page.contains("data-to=\"uplink0\" data-count=\"3\""));
        assert!(page.contains("<g class=\"drop\" data-port=\"vf1\" data-reason=\"link_down\""));
        assert!(page.contains(">link_down ×3</text>"));
        assert!(page.contains("<tr class=\"check fail\">"));
        assert!(page.contains("<tr class=\"check pass\">"));
        // Nothing the page needs comes from elsewhere.
        assert!(!page.contains("<script"));
        assert!(!page.contains("src="));
        assert!(!page.contains("<link"));
    }

    #[test]
    fn a_report_without_a_card_still_renders() {
        let mut r = report();
        r.card.clear();
        r.setup_error = Some("no <such> port".into());
        let page = render(&[r]);
        assert!(page.contains("setup failed: no &lt;such&gt; port"));
        assert!(!page.contains("<figure"));
        assert!(render(&[]).contains("0 of 0 scenarios passed"));
    }

    #[test]
    fn guests_show_what_they_booted_and_their_console_escaped() {
        let mut r = report();
        r.guests.push(crate::report::GuestInfo {
            endpoint: "vm1".into(),
            kernel: Some("6.1.0-50-amd64".into()),
            modules: Vec::new(),
            log: "vm1.log".into(),
            console_tail: "igbvf <eth0>: Link is Up".into(),
        });
        let page = render(&[r]);
        assert!(page.contains("<summary>guest vm1: kernel 6.1.0-50-amd64</summary>"));
        assert!(page.contains("igbvf &lt;eth0&gt;: Link is Up"));
    }
}
