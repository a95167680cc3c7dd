//! One datapath: the scenario library run on the NIC `serve` builds (`Serving::start`, real
//! clock, vfio-user sockets, shaping timer, control socket; a multi-port card as one `serve`
//! with a `[ports.pfK]` table per port) gives the same deliveries, drops, captured frames and counters, step by
//! step, as `scenario run` on its own in-process NICs.
//! The scenarios that measure rates over simulated time are left out: in real time their
//! figures depend on the host. So are those with a PF reset: the VF driver's recovery runs on
//! its watchdog (every 2 s) against the PF's NACK interval (2 s), which in real time land on
//! either side of each other, so how many NACKs (interrupts) the recovery takes is the host's
//! timing, as it is for a guest's igbvf.

use std::path::{Path, PathBuf};

use eswitch::Direction;
use scenarios::{Run, RunOptions, Scenario};
use sriov_emu::serve::Serving;

fn library() -> Vec<Scenario> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("scenarios")
        .join("library");
    let files = scenarios::collect(&[dir]).expect("the library");
    files
        .iter()
        .map(|f| scenarios::load(f).unwrap_or_else(|e| panic!("{e}")))
        .filter(|s| {
            !s.file.steps.iter().any(|st| match st {
                scenarios::format::Step::Traffic { .. } => true,
                scenarios::format::Step::Fault { fault, .. } => fault.starts_with("pf-reset"),
                _ => false,
            })
        })
        .collect()
}

/// What must be the same: each step's account and checks, every frame at every port, and
/// the counters of every switch port and every VF function at the end.
#[derive(Debug, PartialEq)]
struct Essence {
    steps: Vec<String>,
    frames: Vec<(String, Direction, Vec<u8>)>,
    ports: String,
    vfs: String,
}

fn essence(r: &Run) -> Essence {
    let steps = r
        .report
        .steps
        .iter()
        .map(|s| {
            let checks: Vec<String> = s
                .checks
                .iter()
                .map(|c| format!("{}: {} / {} / {}", c.what, c.expected, c.actual, c.pass))
                .collect();
            format!(
                "{} | {} | {} | {:?}",
                s.action,
                s.happened.join("; "),
                checks.join("; "),
                s.error
            )
        })
        .collect();
    let frames = r
        .captures
        .iter()
        .map(|c| (c.port.to_string(), c.direction, c.frame.to_vec()))
        .collect();
    let ports: Vec<(String, &eswitch::PortCounters)> =
        r.ports.iter().map(|(p, c)| (p.to_string(), c)).collect();
    let ports = serde_json::to_string(&ports).expect("counters serialise");
    let vfs = serde_json::to_string(&r.vfs).expect("counters serialise");
    Essence {
        steps,
        frames,
        ports,
        vfs,
    }
}

#[test]
fn the_library_on_a_serve_nic_matches_the_in_process_run() {
    let scenarios = library();
    assert!(scenarios.len() >= 10, "{} scenarios", scenarios.len());
    assert!(
        scenarios.iter().any(|s| s.file.nic.ports > 1),
        "a multi-port card among them"
    );
    let base: PathBuf =
        std::env::temp_dir().join(format!("sriov-emu-equal-{}", std::process::id()));
    for s in &scenarios {
        let alone = scenarios::run(s, &RunOptions::default());
        assert!(alone.report.pass, "{}", alone.report.render());

        // One `serve` with the card's ports, each with that port's PF MAC.
        let nic = &s.file.nic;
        let config = sriov_emu::scenario_cmd::serve_config(nic);
        let serving = Serving::start(&base.join(&s.name), &config, None)
            .unwrap_or_else(|e| panic!("{}: serve: {e}", s.name));
        assert_eq!(serving.ports().len(), usize::from(nic.ports));
        let nics: Vec<_> = serving.ports().iter().map(|p| p.nic().clone()).collect();
        let served = scenarios::run_on(s, &nics);
        drop(nics);
        serving.shutdown();
        assert!(served.report.pass, "{}", served.report.render());

        let (a, b) = (essence(&alone), essence(&served));
        for (i, (x, y)) in a.steps.iter().zip(&b.steps).enumerate() {
            assert_eq!(x, y, "{} step {}", s.name, i + 1);
        }
        assert_eq!(a.steps.len(), b.steps.len(), "{}: steps", s.name);
        assert_eq!(
            a.frames.len(),
            b.frames.len(),
            "{}: frames captured",
            s.name
        );
        assert!(
            a.frames == b.frames,
            "{}: the same frames at the same ports",
            s.name
        );
        assert_eq!(a.ports, b.ports, "{}: switch port counters", s.name);
        assert_eq!(a.vfs, b.vfs, "{}: VF counters", s.name);
    }
    let _ = std::fs::remove_dir_all(base);
}
