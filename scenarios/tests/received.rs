//! `expect.guest_captured` in process: what an endpoint's function received during the step
//! (the guest mode reads the same expectation from a capture inside the QEMU guest), and the
//! ethertype both it and `expect.captured` take.

use std::path::Path;

use scenarios::{parse, run, RunOptions, ScenarioReport};

/// vm0 on vf0, vm1 on vf1 with a port VLAN (its frames arrive with the tag stripped), vm2 on
/// vf2 in VLAN 20 with a VLAN interface of its own, and a host on the wire.
const BASE: &str = r#"
description = "d"
reproduces = "r"

[nic]
vfs = 3

[[policy]]
vf = 0
set = "mac 02:00:00:00:00:10"

[[policy]]
vf = 1
set = "mac 02:00:00:00:00:11 vlan 10"

[[policy]]
vf = 2
set = "mac 02:00:00:00:00:12"

[[endpoint]]
name = "vm0"
port = "vf0"
attach = "driver"
ip = "10.0.0.10"

[[endpoint]]
name = "vm1"
port = "vf1"
ip = "10.0.10.11"

[[endpoint]]
name = "vm2"
port = "vf2"
ip = "10.0.20.12"
vlan = 20

[[endpoint]]
name = "wire"
port = "uplink0"
mac = "02:00:00:00:0f:01"
ip = "10.0.0.254"
"#;

fn run_steps(steps: &str) -> ScenarioReport {
    let text = format!("{BASE}{steps}");
    let s = parse(Path::new("received.toml"), &text).unwrap_or_else(|e| panic!("{e}"));
    run(&s, &RunOptions::default()).report
}

#[test]
fn an_in_process_endpoint_reads_what_its_function_received() {
    let r = run_steps(
        r#"
[[step]]
do = "send"
from = "wire"
dst = "broadcast"
ethertype = 0x0806
count = 2
expect.guest_captured = [
  { guest = "vm0", src = "02:00:00:00:0f:01", dst = "broadcast", ethertype = "arp", tagged = false, count = 2 },
  { guest = "vm0", ethertype = "0x0806" },
  { guest = "vm0", ethertype = 2054, count = 2 },
  { guest = "vm1", count = 0 },
]
expect.captured = [{ port = "vf0", ethertype = "arp", count = 2 }]
"#,
    );
    assert!(r.pass, "{}", r.render());
    let first = r.steps[0]
        .checks
        .iter()
        .find(|c| {
            c.what
                .starts_with("vm0 (runner view) received tagged=false")
        })
        .unwrap_or_else(|| panic!("{}", r.render()));
    assert!(first.what.ends_with("ethertype=arp"), "{}", first.what);
    assert!(
        first.actual.starts_with("2 of 2 frame(s) matched"),
        "{}",
        first.actual
    );
}

#[test]
fn a_stripped_tag_counts_only_in_the_vlan_the_endpoint_joined() {
    let r = run_steps(
        r#"
[[step]]
label = "VLAN 10 to vf1, whose port VLAN strips it: its stack sees an untagged frame"
do = "send"
from = "wire"
dst = "broadcast"
vlan = 10
pcp = 2
expect.guest_captured = [{ guest = "vm1", tagged = false, count = 1 }]
expect.captured = [{ port = "vf1", stripped = true, vid = 10, pcp = 2, count = 1 }]

[[step]]
do = "mailbox"
from = "vm2"
request = "vlan"
vid = 20

[[step]]
label = "VLAN 20 to vf2, which joined it: its VLAN interface's"
do = "send"
from = "wire"
dst = "broadcast"
vlan = 20
pcp = 5
expect.guest_captured = [{ guest = "vm2", tagged = true, vid = 20, pcp = 5, count = 1 }]
"#,
    );
    assert!(r.pass, "{}", r.render());
}

#[test]
fn wrong_counts_and_unknown_endpoints_fail_with_what_was_seen() {
    let r = run_steps(
        r#"
[[step]]
do = "send"
from = "wire"
dst = "broadcast"
expect.guest_captured = [
  { guest = "vm0", count = 3 },
  { guest = "vm0", ethertype = "ipv6" },
  { guest = "nobody" },
]
"#,
    );
    assert!(!r.pass);
    let checks = &r.steps[0].checks;
    assert_eq!(checks.len(), 3);
    assert!(checks.iter().all(|c| !c.pass), "{}", r.render());
    assert_eq!(checks[0].expected, "3 frame(s)");
    assert!(
        checks[0]
            .actual
            .contains("1 of 1 frame(s) matched (seen: 02:00:00:00:0f:01 → ff:ff:ff:ff:ff:ff 0x88b5 untagged ×1)"),
        "{}",
        checks[0].actual
    );
    assert!(
        checks[1].actual.starts_with("0 of 1"),
        "{}",
        checks[1].actual
    );
    assert_eq!(checks[2].actual, "no such endpoint");
}

#[test]
fn a_bad_ethertype_is_refused_at_load() {
    for bad in [r#""apple""#, r#""0xzz""#, "70000", "-1"] {
        let text = format!(
            "{BASE}\n[[step]]\ndo = \"check\"\nexpect.guest_captured = [{{ guest = \"vm0\", ethertype = {bad} }}]\n"
        );
        let e = parse(Path::new("bad.toml"), &text).expect_err(bad);
        assert!(e.to_string().contains("bad.toml:"), "{e}");
    }
}
