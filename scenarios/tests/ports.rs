//! Multi-port cards: each port is a NIC of its own, and a cable between two uplinks is the only
//! path from one port's switch to another's.

use std::path::Path;
use std::sync::Arc;

use eswitch::{Direction, PortId};
use scenarios::world::Captured;
use scenarios::{parse, run, run_on, PortRef, RunOptions, Scenario};

/// Two ports, two VFs each, no VLANs; an endpoint on each port's vf0 and on port 1's PF.
const CARD: &str = r#"
description = "d"
reproduces = "r"

[nic]
ports = 2
vfs = 2

[[policy]]
vf = 0
set = "mac 02:00:00:00:00:10"

[[policy]]
port = "pf1"
vf = 0
set = "mac 02:00:00:00:01:10"

[[endpoint]]
name = "a"
port = "vf0"
ip = "10.0.0.10"

[[endpoint]]
name = "b"
port = "pf1.vf0"
ip = "10.0.0.20"

[[endpoint]]
name = "pf1"
port = "pf1"
ip = "10.0.0.2"
"#;

fn scenario(text: &str) -> Scenario {
    parse(Path::new("ports.toml"), text).unwrap_or_else(|e| panic!("{e}"))
}

fn run_text(text: &str) -> scenarios::Run {
    run(&scenario(text), &RunOptions::default())
}

const PF1_UPLINK: PortRef = PortRef::new(1, PortId::Uplink(0));
const PF0_UPLINK: PortRef = PortRef::local(PortId::Uplink(0));

fn frames_at(caps: &[Captured], port: PortRef, dir: Direction) -> Vec<Vec<u8>> {
    caps.iter()
        .filter(|c| c.port == port && c.direction == dir)
        .map(|c| c.frame.to_vec())
        .collect()
}

/// Every frame, broadcast and unicast, from port 0's VF to port 1.
const TRAFFIC: &str = r#"
[[step]]
do = "arping"
from = "a"
target = "10.0.0.20"

[[step]]
do = "send"
from = "a"
dst = "02:00:00:00:01:10"

[[step]]
do = "send"
from = "a"
dst = "broadcast"
count = 2
"#;

#[test]
fn without_a_cable_nothing_reaches_the_other_port() {
    let r = run_text(&format!("{CARD}{TRAFFIC}"));
    assert!(r.report.pass, "{}", r.report.render());
    // Port 0's switch sent the frames to its uplink...
    assert_eq!(frames_at(&r.captures, PF0_UPLINK, Direction::Rx).len(), 4);
    // ...and port 1 saw nothing at all: no capture, no counter moved.
    let leaked: Vec<String> = r
        .captures
        .iter()
        .filter(|c| c.port.nic == 1)
        .map(|c| c.port.to_string())
        .collect();
    assert!(leaked.is_empty(), "{leaked:?}");
    for (port, c) in r.ports.iter().filter(|(p, _)| p.nic == 1) {
        assert_eq!(
            (c.rx_packets, c.tx_packets),
            (0, 0),
            "{port} moved without a cable"
        );
    }
    assert!(r.report.steps[0]
        .happened
        .contains(&"no ARP reply for 10.0.0.20".to_string()));
}

#[test]
fn a_cable_carries_exactly_what_one_uplink_sends_into_the_other() {
    let cable = "[[cable]]\na = \"pf0.uplink0\"\nb = \"pf1.uplink0\"\n";
    let r = run_text(&format!("{CARD}{cable}{TRAFFIC}"));
    assert!(r.report.pass, "{}", r.report.render());
    assert_eq!(
        r.report.steps[0].happened[0], "10.0.0.20 is at 02:00:00:00:01:10",
        "the ARP crossed both ways"
    );
    // What port 0's switch sent to its uplink is, frame for frame and in order, what entered
    // port 1's switch at its uplink, and the other way round.
    let out0 = frames_at(&r.captures, PF0_UPLINK, Direction::Rx);
    let in1 = frames_at(&r.captures, PF1_UPLINK, Direction::Tx);
    assert_eq!(out0.len(), 4, "ARP request, one unicast, two broadcasts");
    assert_eq!(out0, in1);
    let out1 = frames_at(&r.captures, PF1_UPLINK, Direction::Rx);
    let in0 = frames_at(&r.captures, PF0_UPLINK, Direction::Tx);
    assert_eq!(out1.len(), 1, "the ARP reply");
    assert_eq!(out1, in0);
    // Port 1's VF got the unicast and the broadcasts; port 1's PF the broadcasts.
    let vf = |nic, n| PortRef::new(nic, PortId::Vf(n));
    assert_eq!(r.ports[&vf(1, 0)].rx_packets, 4);
    assert_eq!(r.ports[&vf(1, 1)].rx_broadcast, 3);
    assert_eq!(r.ports[&PortRef::new(1, PortId::Pf)].rx_broadcast, 3);
    // The VF functions' own counters carry the qualified names too.
    assert!(r.vfs.contains_key(&vf(1, 1)) && r.vfs.contains_key(&vf(0, 1)));
}

#[test]
fn unplugging_the_cable_cuts_the_only_path() {
    let steps = r#"
[[step]]
do = "cable"
a = "pf0.uplink0"
b = "pf1.uplink0"
plug = true

[[step]]
do = "ping"
from = "a"
target = "10.0.0.20"
expect.answered = true
expect.delivered = ["uplink0", "pf", "vf1", "pf1", "pf1.vf0", "pf1.vf1"]

[[step]]
label = "the PF of port 1 answers with its own MAC"
do = "arping"
from = "a"
target = "10.0.0.2"
expect.endpoint = [{ name = "a", neighbour = ["10.0.0.2", "02:00:00:00:00:02"] }]

[[step]]
do = "cable"
a = "pf1.uplink0"
b = "uplink0"
plug = false

[[step]]
do = "send"
from = "a"
dst = "02:00:00:00:01:10"
expect.delivered = ["uplink0"]
expect.counters = [{ port = "pf1.vf0", name = "rx_packets", delta = 0 }]
"#;
    let r = run_text(&format!("{CARD}{steps}"));
    assert!(r.report.pass, "{}", r.report.render());
    let ping = &r.report.steps[1];
    assert!(
        ping.happened
            .iter()
            .any(|l| l.contains("over a cable into pf1.uplink0")),
        "{:?}",
        ping.happened
    );
    assert_eq!(
        r.report.steps[3].action,
        "pull the cable pf1.uplink0 ↔ uplink0 out"
    );
}

#[test]
fn a_loopback_plug_sends_an_uplinks_frames_back_into_its_own_switch() {
    let text = r#"
description = "d"
reproduces = "r"

[nic]
vfs = 2

[[policy]]
vf = 0
set = "mac 02:00:00:00:00:10"

[[endpoint]]
name = "a"
port = "vf0"
ip = "10.0.0.10"

[[cable]]
a = "uplink0"
b = "uplink0"

[[step]]
do = "arping"
from = "a"
target = "10.0.0.99"
expect.counters = [
  { port = "vf1", name = "rx_broadcast", delta = 2 },
  { port = "uplink0", name = "tx_broadcast", delta = 1 },
  { port = "vf0", name = "rx_broadcast", delta = 1 },
]
"#;
    let r = run_text(text);
    assert!(r.report.pass, "{}", r.report.render());
}

#[test]
fn policies_links_and_checks_name_their_port() {
    let steps = r#"
[[step]]
do = "set"
port = "pf1"
vf = 1
set = "vlan 20"
expect.ok = true
expect.policy = [
  { port = "pf1", vf = 1, field = "port_vlan.vid", equals = 20 },
  { vf = 1, field = "port_vlan", absent = true },
]

[[step]]
do = "link"
port = "pf1"
up = false
expect.endpoint = [{ name = "b", link_up = false }, { name = "a", link_up = true }]
"#;
    let r = run_text(&format!("{CARD}{steps}"));
    assert!(r.report.pass, "{}", r.report.render());
    assert_eq!(r.report.steps[0].action, "ip link set pf1 vf 1 vlan 20");
    assert_eq!(r.report.steps[1].action, "pf1 link down");
    assert_eq!(
        r.report.steps[0].checks[1].what,
        "pf1.vf1 policy port_vlan.vid"
    );
}

#[test]
fn wrong_cables_and_ports_fail_at_setup_or_in_their_step() {
    let setup_error = |extra: &str| {
        run_text(&format!("{CARD}{extra}"))
            .report
            .setup_error
            .unwrap_or_default()
    };
    let e = setup_error("[[cable]]\na = \"uplink0\"\nb = \"pf2.uplink0\"\n");
    assert_eq!(
        e,
        "cable uplink0 ↔ pf2.uplink0: the card has no port pf2.uplink0"
    );
    let e = setup_error(
        "[[cable]]\na = \"uplink0\"\nb = \"pf1.uplink0\"\n[[cable]]\na = \"pf1.uplink0\"\nb = \"pf1.uplink0\"\n",
    );
    assert!(
        e.ends_with("a cable is plugged into pf1.uplink0 already"),
        "{e}"
    );
    let e = setup_error(
        "[[cable]]\na = \"uplink0\"\nb = \"pf1.uplink0\"\n[[endpoint]]\nname = \"w\"\nport = \"pf1.uplink0\"\nmac = \"02:00:00:00:0f:01\"\n",
    );
    assert_eq!(e, "endpoint w: a cable is plugged into pf1.uplink0");
    let e = setup_error("[[policy]]\nport = \"pf3\"\nvf = 0\nset = \"trust on\"\n");
    assert_eq!(e, "policy pf3 vf 0: the card has no port pf3");
    let e = setup_error("[[endpoint]]\nname = \"c\"\nport = \"pf1.vf2\"\n");
    assert_eq!(e, "endpoint c: the card has no port pf1.vf2");

    // In a step: an endpoint's uplink, a cable not plugged.
    let steps = r#"
[[endpoint]]
name = "w"
port = "pf1.uplink0"
mac = "02:00:00:00:0f:01"

[[step]]
do = "cable"
a = "uplink0"
b = "pf1.uplink0"
plug = true

[[step]]
do = "cable"
a = "uplink0"
b = "pf1.uplink0"
plug = false
"#;
    let r = run_text(&format!("{CARD}{steps}"));
    assert!(r.report.setup_error.is_none());
    let errors: Vec<_> = r.report.steps.iter().map(|s| s.error.clone()).collect();
    assert_eq!(
        errors,
        [
            Some("cable: endpoint w sits on pf1.uplink0".to_string()),
            Some("cable: no cable uplink0 ↔ pf1.uplink0 is plugged in".to_string()),
        ]
    );
}

#[test]
fn malformed_port_names_and_counts_name_their_position() {
    let at = |text: &str, needle: &str| {
        let line = text.lines().position(|l| l.contains(needle)).unwrap() + 1;
        let col = text.lines().nth(line - 1).unwrap().find('"').unwrap_or(0) + 1;
        (line, col)
    };
    for (bad, message) in [
        ("a = \"pf1.vf0\"", "`pf1.vf0` is not an uplink"),
        ("a = \"pf1.uplink\"", "`pf1.uplink` is not an uplink"),
    ] {
        let text = format!("{CARD}[[cable]]\n{bad}\nb = \"uplink0\"\n");
        let e = parse(Path::new("c.toml"), &text).unwrap_err();
        assert!(e.message().contains(message), "{e}");
        let (line, col) = at(&text, bad);
        assert_eq!((e.line, e.column), (Some(line), Some(col)), "{e}");
    }
    let text = CARD.replace("port = \"pf1.vf0\"", "port = \"pf1.vf0.vf1\"");
    let e = parse(Path::new("p.toml"), &text).unwrap_err();
    assert!(e.message().contains("`pf1.vf0.vf1` is not a port"), "{e}");
    assert_eq!(e.line, Some(at(&text, "pf1.vf0.vf1").0));
    let text = CARD.replace("port = \"pf1\"\nvf = 0", "port = \"pf1.vf0\"\nvf = 0");
    let e = parse(Path::new("p.toml"), &text).unwrap_err();
    assert!(e.message().contains("`pf1.vf0` is not a PF"), "{e}");
    for n in ["0", "5", "300", "-1"] {
        let text = CARD.replace("ports = 2", &format!("ports = {n}"));
        let e = parse(Path::new("n.toml"), &text).unwrap_err();
        assert!(e.message().contains("1 to 4 ports"), "{n}: {e}");
        assert_eq!(
            (e.line, e.column),
            (Some(at(&text, "ports =").0), Some(9)),
            "{e}"
        );
    }
}

#[test]
fn run_on_takes_one_nic_per_port() {
    let s = scenario(&format!(
        "{CARD}[[cable]]\na = \"uplink0\"\nb = \"pf1.uplink0\"\n[[step]]\ndo = \"ping\"\nfrom = \"a\"\ntarget = \"10.0.0.20\"\nexpect.answered = true\n"
    ));
    let clock = Arc::new(model::MonotonicClock::new());
    let nics: Vec<_> = (0..2)
        .map(|k| model::Nic::new(&s.file.nic.config(k), clock.clone()).unwrap())
        .collect();
    let r = run_on(&s, &nics[..1]);
    assert_eq!(
        r.report.setup_error.as_deref(),
        Some("the scenario's card has 2 port(s) (`[nic] ports`), 1 NIC(s) given")
    );
    let r = run_on(&s, &nics);
    assert!(r.report.pass, "{}", r.report.render());
}
