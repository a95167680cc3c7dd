//! The scenario library (scenarios/library/) runs in the test suite: every scenario passes, and
//! the library holds the scenarios it is documented to hold.

use std::path::PathBuf;

const EXPECTED: [&str; 16] = [
    "arp-broadcast",
    "dual-port",
    "fault-under-igbvf",
    "igb-promisc",
    "jumbo-frames",
    "link-flap",
    "link-state",
    "mac-change-refused",
    "mac-change-trusted",
    "multicast",
    "port-vlan-qos",
    "rate-limit",
    "trusted-promisc",
    "unknown-unicast",
    "wire-fault",
    "zero-mac",
];

#[test]
fn every_library_scenario_passes() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("library");
    let files = scenarios::collect(&[dir]).unwrap();
    let mut names = Vec::new();
    let mut failed = Vec::new();
    for f in &files {
        let s = scenarios::load(f).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !s.file.description.trim().is_empty() && !s.file.reproduces.trim().is_empty(),
            "{}: says what it shows and what it reproduces",
            s.name
        );
        assert!(!s.file.steps.is_empty(), "{}: has steps", s.name);
        let r = scenarios::run(&s, &scenarios::RunOptions::default()).report;
        if !r.pass {
            failed.push(r.render());
        }
        names.push(s.name);
    }
    assert!(failed.is_empty(), "failed:\n{}", failed.join("\n"));
    for want in EXPECTED {
        assert!(names.iter().any(|n| n == want), "library lacks {want}");
    }
}
