//! Time modes and the machine-readable report.

use std::path::Path;
use std::time::Instant;

use scenarios::{parse, run, RunOptions, TimeMode};

const WAIT: &str = r#"
description = "d"
reproduces = "r"

[nic]
vfs = 1

[[step]]
do = "wait"
ms = 30
"#;

#[test]
fn simulated_time_jumps_and_real_time_sleeps() {
    let s = parse(Path::new("wait.toml"), WAIT).unwrap();
    let t = Instant::now();
    let sim = run(&s, &RunOptions::default()).report;
    assert!(sim.pass);
    assert_eq!(sim.scenario_ms, 30.0);
    assert!(
        t.elapsed().as_millis() < 30,
        "no sleeping in simulated time"
    );

    let t = Instant::now();
    let real = run(
        &s,
        &RunOptions {
            time: TimeMode::RealTime,
        },
    )
    .report;
    assert!(real.pass);
    assert!(t.elapsed().as_millis() >= 30);
    assert!(real.scenario_ms >= 30.0);
}

#[test]
fn the_json_report_carries_every_check_with_expected_and_actual() {
    let text = format!(
        "{WAIT}expect.counters = [{{ port = \"vf0\", name = \"rx_packets\", equals = 7 }}]\n"
    );
    let s = parse(Path::new("json.toml"), &text).unwrap();
    let report = run(&s, &RunOptions::default()).report;
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["name"], "json");
    assert_eq!(json["pass"], false);
    let check = &json["steps"][0]["checks"][0];
    assert_eq!(check["what"], "vf0 rx_packets");
    assert_eq!(check["expected"], "7");
    assert_eq!(check["actual"], "0");
    assert_eq!(check["pass"], false);
}
