//! The scenario library (scenarios/library/) runs in the test suite: every scenario passes, on
//! its own card and on every other card its `cards` list names (a driver-attached VF of an 82599
//! runs the software ixgbevf), and the library holds the scenarios it is documented to hold.

use std::path::PathBuf;

const EXPECTED: [&str; 20] = [
    "arp-broadcast",
    "dual-port",
    "fault-under-igbvf",
    "igb-promisc",
    "jumbo-frames",
    "jumbo-ixgbevf",
    "link-flap",
    "link-state",
    "macvlan-ixgbevf",
    "mac-change-refused",
    "mac-change-trusted",
    "multicast",
    "port-vlan-qos",
    "rate-ixgbevf",
    "rate-limit",
    "trusted-promisc",
    "unknown-unicast",
    "wire-fault",
    "xcast-ixgbevf",
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

#[test]
fn files_that_hold_on_both_cards_pass_on_both_in_process() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("library");
    let mut on_82599 = Vec::new();
    for f in &scenarios::collect(&[dir]).unwrap() {
        let s = scenarios::load(f).unwrap_or_else(|e| panic!("{e}"));
        for &card in &s.file.cards {
            let mut on = s.clone();
            on.file.nic.model = card;
            let r = scenarios::run(&on, &scenarios::RunOptions::default()).report;
            assert!(r.pass, "{} on the {card}:\n{}", s.name, r.render());
            if card == model::Card::X82599 {
                on_82599.push(s.name.clone());
            }
        }
    }
    for want in [
        "fault-under-igbvf",
        "mac-change-trusted-igbvf",
        "port-vlan-igbvf",
        "rate-ixgbevf",
        "jumbo-ixgbevf",
        "xcast-ixgbevf",
        "macvlan-ixgbevf",
    ] {
        assert!(
            on_82599.iter().any(|n| n == want),
            "{want} runs on the 82599"
        );
    }
}
