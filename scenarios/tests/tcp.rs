//! `traffic` with `proto = "tcp"` runs iperf3 between two QEMU guests: in process the step is
//! skipped with a note (as a `shell` step is), and a file whose TCP step has an end that no run
//! can make a guest (the PF, an uplink, a port-attached VF) is refused at load, pointing at it.

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

[[policy]]
vf = 1
set = "mac 02:00:00:00:00:11"

[[endpoint]]
name = "pf"
port = "pf"
ip = "10.0.0.1"

[[endpoint]]
name = "vm0"
port = "vf0"
attach = "driver"
ip = "10.0.0.10"

[[endpoint]]
name = "vm1"
port = "vf1"
attach = "driver"
ip = "10.0.0.11"
"#;

#[test]
fn tcp_between_driver_endpoints_is_skipped_in_process_with_a_note() {
    let text = format!(
        r#"{BASE}
[[step]]
do = "traffic"
proto = "tcp"
from = "vm0"
to = "vm1"
offered_mbps = 10
expect.rate_mbps = {{ min = 1 }}

[[step]]
do = "traffic"
proto = "udp"
from = "vm0"
to = "vm1"
offered_mbps = 10
duration_ms = 100
expect.rate_mbps = {{ target = 10, tolerance_pct = 5 }}
"#
    );
    let s = parse(Path::new("tcp.toml"), &text).unwrap_or_else(|e| panic!("{e}"));
    let r = run(&s, &RunOptions::default()).report;
    let text = r.render();
    assert!(r.pass, "{text}");
    let why = r.steps[0].skipped.as_deref().unwrap_or_default();
    assert!(why.contains("vm0 is in process"), "{text}");
    assert!(why.contains("iperf3 between two QEMU guests"), "{text}");
    assert!(r.steps[0].checks.is_empty(), "{text}");
    assert!(
        text.contains("TCP vm0 → vm1 at 10 Mbit/s (iperf3)"),
        "{text}"
    );
    // `proto = "udp"` is the default's spelling: the step runs as before.
    assert!(r.steps[1].skipped.is_none(), "{text}");
    assert!(text.contains("UDP vm0 → vm1 at 10 Mbit/s"), "{text}");
}

#[test]
fn tcp_with_an_end_that_cannot_be_a_guest_is_refused_at_load() {
    for (from, to, key, who) in [
        ("pf", "vm1", "from", "pf (pf)"),
        ("vm0", "pf", "to", "pf (pf)"),
    ] {
        let text = format!(
            "{BASE}\n[[step]]\ndo = \"traffic\"\nproto = \"tcp\"\nfrom = \"{from}\"\nto = \"{to}\"\n"
        );
        let e = parse(Path::new("tcp.toml"), &text).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("step 1 (traffic)"), "{msg}");
        assert!(msg.contains(&format!("{who} can never be one")), "{msg}");
        let line = text
            .lines()
            .position(|l| l.starts_with(&format!("{key} =")))
            .unwrap()
            + 1;
        assert_eq!(e.line, Some(line), "{msg}");
    }
    let port_attached = BASE.replace(
        "attach = \"driver\"\nip = \"10.0.0.11\"",
        "ip = \"10.0.0.11\"",
    );
    let text = format!(
        "{port_attached}\n[[step]]\ndo = \"traffic\"\nproto = \"tcp\"\nfrom = \"vm0\"\nto = \"vm1\"\n"
    );
    let msg = parse(Path::new("tcp.toml"), &text).unwrap_err().to_string();
    assert!(msg.contains("vm1 (vf1) can never be one"), "{msg}");
    let text = format!(
        "{BASE}\n[[step]]\ndo = \"traffic\"\nproto = \"tcp\"\nfrom = \"vm0\"\nto = \"vm1\"\nsize = 100\n"
    );
    let msg = parse(Path::new("tcp.toml"), &text).unwrap_err().to_string();
    assert!(msg.contains("`size` is a UDP frame's length"), "{msg}");
    let text = format!(
        "{BASE}\n[[step]]\ndo = \"traffic\"\nproto = \"sctp\"\nfrom = \"vm0\"\nto = \"vm1\"\n"
    );
    let msg = parse(Path::new("tcp.toml"), &text).unwrap_err().to_string();
    assert!(msg.contains("sctp"), "{msg}");
}
