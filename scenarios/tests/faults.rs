//! The `fault` step: the words of `sriov-emu ctl fault` injected on a port of the card, a bad
//! fault refused when the file loads (naming the step), drops as `fault` counted and expected
//! like any other reason, and the report showing what was armed, what it saw and what it hit.

use std::path::Path;
use std::sync::Arc;

use eswitch::PortId;
use scenarios::{parse, run, run_on, ArmedFault, PfRef, RunOptions, Scenario};

/// Two VFs with their MACs and an endpoint on each.
const BASE: &str = r#"
description = "d"
reproduces = "r"

[nic]
vfs = 2

[[policy]]
vf = 0
set = "mac 02:00:00:00:00:10"

[[policy]]
vf = 1
set = "mac 02:00:00:00:00:11"

[[endpoint]]
name = "vm0"
port = "vf0"
ip = "10.0.0.10"

[[endpoint]]
name = "vm1"
port = "vf1"
ip = "10.0.0.11"
"#;

fn scenario(steps: &str) -> Scenario {
    let text = format!("{BASE}{steps}");
    parse(Path::new("faults.toml"), &text).unwrap_or_else(|e| panic!("{e}"))
}

fn run_steps(steps: &str) -> scenarios::Run {
    run(&scenario(steps), &RunOptions::default())
}

/// `count` frames from vm0 to vm1's MAC.
fn send(count: u32) -> String {
    format!(
        "\n[[step]]\ndo = \"send\"\nfrom = \"vm0\"\ndst = \"02:00:00:00:00:11\"\ncount = {count}\n"
    )
}

fn fault(words: &str) -> String {
    format!("\n[[step]]\ndo = \"fault\"\nfault = \"{words}\"\n")
}

fn armed(fault: &str, seen: u64, fired: u64) -> ArmedFault {
    ArmedFault {
        port: PfRef(0),
        fault: fault.into(),
        seen,
        fired,
    }
}

#[test]
fn an_rx_drop_every_second_frame_halves_what_arrives_and_counts_each_as_a_fault_drop() {
    let steps = format!(
        "{}{}expect.captured = [{{ port = \"vf1\", direction = \"rx\", count = 5 }}]
expect.dropped = [{{ port = \"vf1\", reason = \"fault\", count = 5 }}]
expect.counters = [{{ port = \"vf1\", name = \"drops.fault\", delta = 5 }}]
{}{}expect.no_drops = true
expect.captured = [{{ port = \"vf1\", direction = \"rx\", count = 10 }}]
",
        fault("wire vf1 rx drop every 2"),
        send(10),
        fault("clear"),
        send(10),
    );
    let r = run_steps(&steps);
    let report = &r.report;
    assert!(report.pass, "{}", report.render());

    // The fault step says what it did; the armed fault is in the report, nothing seen yet.
    let arm = &report.steps[0];
    assert_eq!(arm.action, "fault pf: wire vf1 rx drop every 2");
    assert_eq!(arm.happened[0], "wire fault armed: vf1 rx drop every 2");
    assert_eq!(arm.faults, [armed("wire vf1 rx drop every 2", 0, 0)]);

    // 10 frames: the fault saw each and hit every second one.
    let sent = &report.steps[1];
    assert_eq!(sent.faults, [armed("wire vf1 rx drop every 2", 10, 5)]);
    assert!(
        sent.happened
            .contains(&"dropped: fault at vf1 ×5".to_string()),
        "{:?}",
        sent.happened
    );

    // Cleared: the step says what the fault had done; nothing is armed any more.
    let clear = &report.steps[2];
    assert_eq!(
        clear.happened,
        [
            "1 fault(s) cleared",
            "fault disarmed on pf: wire vf1 rx drop every 2: 10 seen, 5 fired"
        ]
    );
    assert!(clear.faults.is_empty());
    assert!(report.steps[3].faults.is_empty());

    // The switch's counters: 20 delivered to vf1's port, 5 of them lost to the fault.
    let vf1 = &r.ports[&scenarios::PortRef::local(PortId::Vf(1))];
    assert_eq!((vf1.rx_packets, vf1.drops.fault), (20, 5));
    // What vf1's function took in: the 15 that reached it.
    assert_eq!(
        r.vfs[&scenarios::PortRef::local(PortId::Vf(1))].rx_packets,
        15
    );
    // The captures (and pcap files) hold what reached the port, not what the fault took.
    let at_vf1 = r
        .captures
        .iter()
        .filter(|c| {
            c.port == scenarios::PortRef::local(PortId::Vf(1))
                && c.direction == eswitch::Direction::Rx
        })
        .count();
    assert_eq!(at_vf1, 15);

    let text = report.render();
    assert!(
        text.contains("fault armed on pf: wire vf1 rx drop every 2: 10 seen, 5 fired"),
        "{text}"
    );
    let json = serde_json::to_value(report).unwrap();
    assert_eq!(
        json["steps"][1]["faults"][0],
        serde_json::json!({ "port": "pf", "fault": "wire vf1 rx drop every 2", "seen": 10, "fired": 5 })
    );
}

#[test]
fn a_tx_drop_is_the_senders_fault_drop_though_the_switch_never_saw_the_frame() {
    let steps = format!(
        "{}{}expect.dropped = [{{ port = \"vf0\", reason = \"fault\", count = 3 }}]
expect.captured = [{{ port = \"vf1\", direction = \"rx\", count = 3 }}]
expect.counters = [
  {{ port = \"vf0\", name = \"drops.fault\", delta = 3 }},
  {{ port = \"vf1\", name = \"drops.fault\", delta = 0 }},
]
",
        fault("wire vf0 tx drop every 2"),
        send(6),
    );
    let r = run_steps(&steps);
    assert!(r.report.pass, "{}", r.report.render());
    let step = &r.report.steps[1];
    assert!(
        step.happened
            .contains(&"dropped: fault at vf0 ×3".to_string()),
        "{:?}",
        step.happened
    );
    assert_eq!(step.faults, [armed("wire vf0 tx drop every 2", 6, 3)]);
    // No drops is false: the step lost frames.
    let no_drops = run_steps(&format!(
        "{}{}expect.no_drops = true\n",
        fault("wire vf0 tx drop every 1"),
        send(1)
    ));
    assert!(!no_drops.report.pass);
}

#[test]
fn a_ping_through_the_fault_gets_the_answers_that_got_through() {
    let ping = "\n[[step]]\ndo = \"ping\"\nfrom = \"vm0\"\ntarget = \"10.0.0.11\"\ncount = 4\n";
    let steps = format!(
        "{ping}expect.answered = true\n{}{ping}expect.answered = false
expect.dropped = [{{ port = \"vf1\", reason = \"fault\", count = 2 }}]
expect.captured = [{{ port = \"vf0\", direction = \"rx\", count = 2 }}]
",
        fault("wire vf1 rx drop every 2"),
    );
    let r = run_steps(&steps);
    assert!(r.report.pass, "{}", r.report.render());
    assert_eq!(r.report.steps[2].happened[0], "2/4 echo replies");
    // Still armed at the end of the run: the run's report says so.
    assert_eq!(r.report.faults.len(), 1);
    assert_eq!(
        r.report.faults[0].armed,
        [armed("wire vf1 rx drop every 2", 4, 2)]
    );
    assert!(r
        .report
        .render()
        .contains("fault still armed on pf: wire vf1 rx drop every 2: 4 seen, 2 fired"));
}

#[test]
fn faults_carried_out_are_counted_per_port_in_the_step_and_the_run() {
    let steps = format!(
        "{}expect.endpoint = [{{ name = \"vm0\", link_up = false }}]\n{}{}",
        fault("link down"),
        fault("link up"),
        fault("pf-reset"),
    );
    let r = run_steps(&steps);
    assert!(r.report.pass, "{}", r.report.render());
    assert!(
        r.report.steps[0]
            .happened
            .contains(&"faults carried out on pf: link_down +1".to_string()),
        "{:?}",
        r.report.steps[0].happened
    );
    let faults = &r.report.faults;
    assert_eq!(faults.len(), 1, "{faults:?}");
    assert_eq!(faults[0].port, PfRef(0));
    let kinds: Vec<(&str, u64)> = faults[0]
        .carried_out
        .iter()
        .map(|(k, n)| (k.as_str(), *n))
        .collect();
    assert_eq!(kinds, [("link_down", 1), ("link_up", 1), ("pf_reset", 1)]);
    assert!(r
        .report
        .render()
        .contains("faults carried out on pf: link_down 1, link_up 1, pf_reset 1"));
    let json = serde_json::to_value(&r.report).unwrap();
    assert_eq!(json["faults"][0]["carried_out"]["link_down"], 1);
    // A run without faults reports none.
    assert!(run_steps(&send(1)).report.faults.is_empty());
}

#[test]
fn on_a_multi_port_card_the_fault_goes_to_the_port_the_step_names() {
    let text = r#"
description = "d"
reproduces = "r"

[nic]
ports = 2
vfs = 2

[[policy]]
port = "pf1"
vf = 0
set = "mac 02:00:00:00:01:10"

[[endpoint]]
name = "pf1"
port = "pf1"
ip = "10.0.0.2"

[[endpoint]]
name = "b"
port = "pf1.vf0"
ip = "10.0.0.20"

[[step]]
do = "fault"
port = "pf1"
fault = "wire vf0 rx drop every 1"

[[step]]
do = "send"
from = "pf1"
dst = "02:00:00:00:01:10"
count = 3
expect.delivered = []
expect.dropped = [{ port = "pf1.vf0", reason = "fault", count = 3 }]
expect.counters = [
  { port = "pf1.vf0", name = "drops.fault", delta = 3 },
  { port = "vf0", name = "drops.fault", delta = 0 },
]
"#;
    let s = parse(Path::new("two.toml"), text).unwrap_or_else(|e| panic!("{e}"));
    let r = run(&s, &RunOptions::default()).report;
    assert!(r.pass, "{}", r.render());
    assert_eq!(r.steps[0].action, "fault pf1: wire vf0 rx drop every 1");
    assert_eq!(
        r.steps[1].faults,
        [ArmedFault {
            port: PfRef(1),
            fault: "wire vf0 rx drop every 1".into(),
            seen: 3,
            fired: 3,
        }]
    );
}

#[test]
fn a_fault_the_grammar_refuses_stops_the_file_from_loading_naming_the_step_and_line() {
    for (words, why) in [
        ("wire vf9 rx drop every 2", "wire: no port \"vf9\""),
        ("wire vf1 sideways drop every 2", "direction"),
        ("wire vf1 rx drop every 0", "a number from 1"),
        ("unplug everything", "expected"),
        ("", "expected"),
    ] {
        let text = format!("{BASE}{}{}", send(1), fault(words));
        let e = parse(Path::new("bad.toml"), &text).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("step 2 (fault)"), "{words}: {msg}");
        assert!(msg.contains(why), "{words}: {msg}");
        assert!(msg.contains(&format!("`{words}`")), "{words}: {msg}");
        let line = text.lines().position(|l| l.starts_with("fault =")).unwrap() + 1;
        assert_eq!((e.line, e.column), (Some(line), Some(9)), "{words}: {msg}");
        assert!(msg.starts_with(&format!("bad.toml:{line}:9: ")), "{msg}");
    }
    // Found by the TOML structure, not by the text: a `[[step]]` line inside a string and an
    // inline step do not mislead it.
    let text = format!(
        "step = [{{ do = \"fault\", fault = \"wire vf9 rx drop every 2\" }}]\n{}",
        BASE.replace(
            "description = \"d\"",
            "description = \"\"\"\n[[step]]\n\"\"\""
        )
    );
    let e = parse(Path::new("inline.toml"), &text).unwrap_err();
    let column = text.find("\"wire vf9").unwrap() + 1;
    assert_eq!((e.line, e.column), (Some(1), Some(column)), "{e}");
    assert!(e.message().starts_with("step 1 (fault)"), "{e}");

    // A port the card does not have.
    let text = format!("{BASE}\n[[step]]\ndo = \"fault\"\nport = \"pf1\"\nfault = \"clear\"\n");
    let e = parse(Path::new("port.toml"), &text).unwrap_err();
    let line = text
        .lines()
        .position(|l| l.starts_with("port = \"pf1\""))
        .unwrap()
        + 1;
    assert_eq!(e.line, Some(line), "{e}");
    assert!(
        e.message()
            .contains("step 1 (fault): the card has no port pf1"),
        "{e}"
    );
    // A step key the fault step does not know is a TOML error as for any step.
    let text = format!("{BASE}\n[[step]]\ndo = \"fault\"\nfualt = \"clear\"\n");
    assert!(parse(Path::new("typo.toml"), &text).is_err());
}

#[test]
fn on_nics_built_elsewhere_a_fault_their_ports_lack_fails_the_step() {
    // The file declares 2 VFs; the NIC it runs on has 1: vf1 is not there.
    let s = scenario(&fault("wire vf1 rx drop every 2"));
    let mut config = s.file.nic.config(0);
    config.num_vfs = 1;
    let nic = model::Nic::new(&config, Arc::new(model::MonotonicClock::new())).unwrap();
    // Without vf1 the endpoint on it cannot come up: run the fault step alone.
    let mut alone = s.clone();
    alone.file.endpoints.clear();
    alone.file.policies.truncate(1);
    let r = run_on(&alone, &[nic]).report;
    assert!(!r.pass);
    let error = r.steps[0].error.as_deref().unwrap_or_default();
    assert!(
        error.starts_with("fault `wire vf1 rx drop every 2`: wire: no port \"vf1\""),
        "{error}"
    );
}

#[test]
fn the_switch_ports_a_file_declares_are_those_its_nic_has() {
    for (vfs, uplinks) in [(0, 1), (2, 1), (7, 2)] {
        let s = scenario("");
        let mut spec = s.file.nic.clone();
        spec.vfs = vfs;
        spec.uplinks = uplinks;
        let nic = model::Nic::new(&spec.config(0), Arc::new(model::MonotonicClock::new())).unwrap();
        assert_eq!(
            spec.switch_ports(),
            nic.ports(),
            "{vfs} VFs, {uplinks} uplinks"
        );
    }
}
