//! A wrong expectation fails with a message naming what was expected and what happened, and a
//! malformed file is refused with its file, line and column.

use std::path::Path;

use scenarios::{parse, run, RunOptions};

const BASE: &str = r#"
description = "d"
reproduces = "r"

[nic]
vfs = 2

[[policy]]
vf = 0
set = "mac 02:00:00:00:00:10"

[[endpoint]]
name = "vm0"
port = "vf0"
ip = "10.0.0.10"
"#;

fn run_text(steps: &str) -> scenarios::ScenarioReport {
    let text = format!("{BASE}{steps}");
    let s = parse(Path::new("wrong.toml"), &text).unwrap_or_else(|e| panic!("{e}"));
    run(&s, &RunOptions::default()).report
}

#[test]
fn a_wrong_delivery_expectation_fails_with_expected_and_actual() {
    let report = run_text(
        r#"
[[step]]
do = "arping"
from = "vm0"
target = "10.0.0.99"
expect.delivered = ["pf"]
expect.counters = [{ port = "vf1", name = "rx_broadcast", delta = 1 }]
"#,
    );
    assert!(!report.pass);
    let step = &report.steps[0];
    assert!(!step.pass);
    let failed: Vec<_> = step.checks.iter().filter(|c| !c.pass).collect();
    assert_eq!(failed.len(), 1, "only the delivery check is wrong");
    assert_eq!(failed[0].what, "delivered to");
    assert_eq!(failed[0].expected, "pf");
    assert_eq!(failed[0].actual, "uplink0, pf, vf1");
    let text = report.render();
    assert!(text.contains("== FAIL"), "{text}");
    assert!(
        text.contains("FAIL delivered to: expected pf, got uplink0, pf, vf1"),
        "{text}"
    );
}

#[test]
fn wrong_reply_drop_and_rate_expectations_each_fail() {
    let report = run_text(
        r#"
[[step]]
do = "mailbox"
from = "vm0"
request = "set_mac"
mac = "02:00:00:00:00:99"
expect.reply = "ack"

[[step]]
do = "send"
from = "vm0"
dst = "broadcast"
expect.dropped = [{ port = "vf0", reason = "spoof_mac" }]

[[step]]
do = "check"
expect.rate_mbps = { min = 1 }
"#,
    );
    let verdicts: Vec<(bool, String)> = report
        .steps
        .iter()
        .map(|s| (s.pass, format!("{:?}", s.checks[0])))
        .collect();
    assert!(verdicts.iter().all(|(pass, _)| !pass), "{verdicts:?}");
    let c = &report.steps[0].checks[0];
    assert_eq!((c.expected.as_str(), c.actual.as_str()), ("ACK", "NACK"));
    let c = &report.steps[1].checks[0];
    assert_eq!(
        (c.expected.as_str(), c.actual.as_str()),
        ("at least 1", "0")
    );
    assert_eq!(report.steps[2].checks[0].actual, "not a traffic step");
}

#[test]
fn a_step_that_cannot_run_fails_with_its_error() {
    let report = run_text(
        r#"
[[step]]
do = "ping"
from = "nobody"
target = "10.0.0.1"
"#,
    );
    assert!(!report.pass);
    assert_eq!(
        report.steps[0].error.as_deref(),
        Some("no endpoint named `nobody`")
    );
}

#[test]
fn setup_errors_fail_the_scenario() {
    let text = BASE.replace("port = \"vf0\"", "port = \"vf7\"");
    let s = parse(Path::new("bad.toml"), &text).unwrap();
    let report = run(&s, &RunOptions::default()).report;
    assert!(!report.pass);
    assert!(report
        .setup_error
        .as_deref()
        .is_some_and(|e| e.contains("no port vf7")));
}

#[test]
fn malformed_files_name_file_line_and_column() {
    // A syntax error: line 3, the unterminated string.
    let e = parse(
        Path::new("syntax.toml"),
        "description = \"d\"\nreproduces = \"r\"\nname = \"x\n",
    )
    .unwrap_err();
    assert_eq!(e.file, Path::new("syntax.toml"));
    assert_eq!(e.line, Some(3));
    assert!(e.to_string().starts_with("syntax.toml:3:"), "{e}");

    // An unknown key inside a step: its line and column.
    let text = format!("{BASE}\n[[step]]\ndo = \"wait\"\nms = 5\nmss = 6\n");
    let e = parse(Path::new("typo.toml"), &text).unwrap_err();
    let line = text.lines().position(|l| l.starts_with("mss")).unwrap() + 1;
    assert_eq!(e.line, Some(line), "{e}");
    assert!(e.message().contains("mss"), "{e}");

    // A bad value: a port that does not parse, pointed at the value.
    let text = BASE.replace("port = \"vf0\"", "port = \"eth0\"");
    let e = parse(Path::new("port.toml"), &text).unwrap_err();
    let line = text.lines().position(|l| l.contains("eth0")).unwrap() + 1;
    assert_eq!((e.line, e.column), (Some(line), Some(8)), "{e}");
    assert!(e.message().contains("`eth0` is not a port"), "{e}");

    // A missing required key.
    let e = parse(Path::new("missing.toml"), "description = \"d\"\n").unwrap_err();
    assert!(e.message().contains("reproduces"), "{e}");
    assert!(e.line.is_some(), "{e}");
}

#[test]
fn driver_attach_on_a_non_vf_port_is_refused() {
    let text = format!("{BASE}\n[[endpoint]]\nname = \"p\"\nport = \"pf\"\nattach = \"driver\"\n");
    let s = parse(Path::new("drv.toml"), &text).unwrap();
    let report = run(&s, &RunOptions::default()).report;
    assert!(report
        .setup_error
        .as_deref()
        .is_some_and(|e| e.contains("needs a VF port")));
}

#[test]
fn the_run_keeps_every_frame_each_port_saw() {
    let text =
        format!("{BASE}\n[[step]]\ndo = \"arping\"\nfrom = \"vm0\"\ntarget = \"10.0.0.99\"\n");
    let s = parse(Path::new("cap.toml"), &text).unwrap();
    let r = run(&s, &RunOptions::default());
    assert!(r.report.pass);
    let arp: Vec<_> = r
        .captures
        .iter()
        .filter(|c| c.frame.get(12..14) == Some(&[0x08, 0x06]))
        .map(|c| (c.port.to_string(), c.direction))
        .collect();
    // Sent by vf0 (its Tx), delivered to every other port of the NIC (their Rx).
    assert!(
        arp.contains(&("vf0".into(), eswitch::Direction::Tx)),
        "{arp:?}"
    );
    for port in ["uplink0", "pf", "vf1"] {
        assert!(
            arp.contains(&(port.into(), eswitch::Direction::Rx)),
            "{port}: {arp:?}"
        );
    }
    assert!(r.captures.iter().all(|c| c.time_ns >= 1_000_000_000));
}

/// A file's name names its capture files (`--pcap DIR`: `DIR/NAME-PORT.pcap`): a name with a
/// `/` would write them elsewhere, so it is refused at load, at the name.
#[test]
fn a_name_that_is_a_path_is_refused_at_the_name() {
    for name in ["../escaped", "a/b", ""] {
        let text = format!("name = \"{name}\"\n{BASE}");
        let e = parse(Path::new("n.toml"), &text).unwrap_err();
        assert_eq!((e.line, e.column), (Some(1), Some(8)), "{e}");
        assert!(e.message().starts_with("name: "), "{e}");
        assert!(e.message().contains("no `/`"), "{e}");
    }
    let text = format!("name = \"port-vlan.v2\"\n{BASE}");
    assert_eq!(
        parse(Path::new("n.toml"), &text).unwrap().name,
        "port-vlan.v2"
    );
}

/// Steps name endpoints: two of one name are refused, at the second.
#[test]
fn two_endpoints_of_one_name_are_refused_at_the_second() {
    let text = format!("{BASE}\n[[endpoint]]\nname = \"vm0\"\nport = \"vf1\"\n");
    let e = parse(Path::new("dup.toml"), &text).unwrap_err();
    let lines: Vec<&str> = text.lines().collect();
    let line = lines.iter().rposition(|l| *l == "name = \"vm0\"").unwrap() + 1;
    assert_eq!(e.line, Some(line), "{e}");
    assert!(
        e.message().contains("two endpoints are named \"vm0\""),
        "{e}"
    );
}

/// Simulated time counts nanoseconds: a wait (or a run) longer than a day is refused at load
/// rather than wrapping the clock.
#[test]
fn a_wait_longer_than_a_day_is_refused() {
    let text = format!("{BASE}\n[[step]]\ndo = \"wait\"\nms = 18446744073709\n");
    let e = parse(Path::new("w.toml"), &text).unwrap_err();
    let line = text.lines().position(|l| l.starts_with("ms = ")).unwrap() + 1;
    assert_eq!(e.line, Some(line), "{e}");
    assert!(e.message().contains("more than a day"), "{e}");
    // A traffic step's run too, whatever its protocol.
    for proto in ["udp", "tcp"] {
        let text = format!(
            "{BASE}\n[[step]]\ndo = \"traffic\"\nfrom = \"vm0\"\nto = \"vm0\"\nproto = \"{proto}\"\nduration_ms = 90000000\n"
        );
        let e = parse(Path::new("t.toml"), &text).unwrap_err();
        assert!(e.message().contains("more than a day"), "{e}");
    }
    let day = scenarios::MAX_STEP_MS;
    let text = format!("{BASE}\n[[step]]\ndo = \"wait\"\nms = {day}\n");
    let s = parse(Path::new("w.toml"), &text).unwrap();
    let report = run(&s, &RunOptions::default()).report;
    assert!(report.pass, "{}", report.render());
    assert!(
        report.render().contains("86400000.0 ms simulated"),
        "{}",
        report.render()
    );
}

/// A `set` step that expects nothing of its outcome expects its words taken: a refusal fails
/// it, as it fails `[[policy]]`; with `expect.ok = false` it passes.
#[test]
fn a_refused_set_step_without_expectations_fails() {
    let report = run_text("\n[[step]]\ndo = \"set\"\nvf = 0\nset = \"vlan 5000\"\n");
    assert!(!report.pass);
    let failed: Vec<_> = report.steps[0].checks.iter().filter(|c| !c.pass).collect();
    assert_eq!(failed.len(), 1, "{}", report.render());
    assert_eq!(failed[0].what, "command accepted");
    assert!(
        failed[0].actual.contains("VLAN id 5000"),
        "{}",
        failed[0].actual
    );
    let report =
        run_text("\n[[step]]\ndo = \"set\"\nvf = 0\nset = \"vlan 5000\"\nexpect.ok = false\n");
    assert!(report.pass, "{}", report.render());
    let report = run_text("\n[[step]]\ndo = \"set\"\nvf = 0\nset = \"vlan 10\"\n");
    assert!(report.pass, "{}", report.render());
}

/// A port has 1 to 256 VFs, as `serve` builds it (which runs the file in the guest mode).
#[test]
fn a_port_without_vfs_or_with_more_than_serve_takes_is_refused() {
    for vfs in [0, 257] {
        let text = BASE.replace("vfs = 2", &format!("vfs = {vfs}"));
        let e = parse(Path::new("v.toml"), &text).unwrap_err();
        assert!(e.message().contains("a port has 1..=256 VFs"), "{e}");
        assert!(e.line.is_some(), "{e}");
    }
    let text = BASE.replace("vfs = 2", "vfs = 256");
    assert!(parse(Path::new("v.toml"), &text).is_ok());
}
