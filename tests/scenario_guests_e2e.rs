//! The scenario runner's guest mode, through the code path of `sriov-emu scenario run
//! --guests` (`sriov_emu::scenario_cmd::run_guests`): every library scenario marked
//! `guests = true` passes with its driver-attached VF endpoints as QEMU guests running the
//! unmodified igbvf on `serve`'s datapath (counters, captures and answers checked as in
//! process; a `send` from a guest through the helper `sriov-emu-guest-send`, which the test
//! builds; what a guest's eth0 received from a capture inside the guest); a file with an `attach = "guest"` endpoint runs shell commands, a driver reload and
//! a ping in its guest, UDP traffic from and to it, and skips what only the in-process world can
//! do; two guests at once boot together, ping each other and carry TCP (iperf3) and UDP between
//! them; a guest that cannot
//! attach ends its scenario at once with an error that names it and says why. Needs the
//! artifacts of `scripts/fetch-e2e.py`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use scenarios::guests::{GuestMode, DEFAULT_COMMAND_TIMEOUT};
use scenarios::{RunOptions, Scenario};
use sriov_emu::scenario_cmd::{run_guests, serve_config};
use sriov_emu::serve::Serving;
use sriov_emu_tests::{build_guest_helper, workspace_root, Artifacts};

fn load(path: &Path) -> Scenario {
    scenarios::load(path).unwrap_or_else(|e| panic!("{e}"))
}

fn marked() -> Vec<Scenario> {
    let dir = workspace_root().join("scenarios").join("library");
    scenarios::collect(&[dir])
        .expect("the library")
        .iter()
        .map(|f| load(f))
        .filter(|s| s.file.guests)
        .collect()
}

fn tools() -> Scenario {
    load(&workspace_root().join("tests/scenarios/guest-tools.toml"))
}

/// The marked scenarios run in two tests, the first half of the sorted list and the second,
/// which the test harness runs side by side: each scenario boots its own guests, and one TCG
/// guest keeps one core busy.
#[test]
fn the_first_half_of_the_marked_library_scenarios_pass_with_their_guests() {
    let all = marked();
    assert!(all.len() >= 2, "{} marked scenarios", all.len());
    let half = all.len() / 2;
    pass_with_guests(all.into_iter().take(half).collect());
}

#[test]
fn the_second_half_of_the_marked_library_scenarios_pass_with_their_guests() {
    let all = marked();
    let half = all.len() / 2;
    pass_with_guests(all.into_iter().skip(half).collect());
}

/// Each of `scenarios` passes in process and with its driver-attached endpoints as guests,
/// and both worlds saw the same frames.
fn pass_with_guests(scenarios: Vec<Scenario>) {
    let artifacts = Artifacts::locate().unwrap_or_else(|e| panic!("{e}"));
    build_guest_helper();
    let all = Instant::now();
    for s in &scenarios {
        let alone = scenarios::run(s, &RunOptions::default());
        assert!(alone.report.pass, "{}", alone.report.render());
        let t = Instant::now();
        let r = run_guests(s, &artifacts);
        eprintln!("{}: {:.1} s with guests", s.name, t.elapsed().as_secs_f64());
        assert!(r.report.pass, "{}", r.report.render());
        assert_eq!(r.report.steps.len(), s.file.steps.len());
        // What a guest's interface received is read from a capture inside it, where the
        // in-process run reads the switch's deliveries.
        for (a, g) in alone.report.steps.iter().zip(&r.report.steps) {
            if a.skipped.is_some() || g.skipped.is_some() {
                continue;
            }
            let received = |step: &scenarios::StepReport, view: &str| {
                step.checks
                    .iter()
                    .filter(|c| c.what.contains(view) && c.what.contains(") received"))
                    .count()
            };
            assert_eq!(
                received(a, "(runner view)"),
                received(g, "(guest view)") + received(g, "(runner view)"),
                "{}: step {}",
                s.name,
                a.index + 1
            );
        }
        if s.name == "arp-broadcast" {
            let first = &r.report.steps[0];
            assert!(
                first.checks.iter().any(|c| c.pass
                    && c.what.starts_with("vf2 (guest view) received")
                    && c.what.contains("ethertype=arp")),
                "{}",
                r.report.render()
            );
            assert!(
                first
                    .happened
                    .iter()
                    .any(|h| h.starts_with("vf2 captured 1 frame(s)")),
                "{}",
                r.report.render()
            );
        }
        // A step only one world can take (a hand-made mailbox request from the software
        // igbvf, a shell command in the real one) is skipped in the other, never in both.
        for (a, g) in alone.report.steps.iter().zip(&r.report.steps) {
            assert!(
                a.skipped.is_none() || g.skipped.is_none(),
                "{}: step {} is skipped in both worlds",
                s.name,
                a.index + 1
            );
        }
    }
    eprintln!(
        "{} marked scenarios: {:.1} s with guests",
        scenarios.len(),
        all.elapsed().as_secs_f64()
    );
}

#[test]
fn a_guest_endpoint_runs_commands_reloads_igbvf_pings_sends_udp_and_skips_mailbox_steps() {
    let artifacts = Artifacts::locate().unwrap_or_else(|e| panic!("{e}"));
    build_guest_helper();
    let s = tools();
    let r = run_guests(&s, &artifacts);
    let report = r.report.render();
    assert!(r.report.pass, "{report}");
    let steps = &r.report.steps;
    assert!(
        steps[2].happened.iter().any(|h| h.contains("Link is Up")),
        "{report}"
    );
    assert!(
        steps[3]
            .happened
            .iter()
            .any(|h| h.contains("2/2 echo replies")),
        "{report}"
    );
    // The guest's own frames are the ping step's, delivered to the PF.
    assert!(
        steps[3]
            .happened
            .iter()
            .any(|h| h.contains("from vf0 delivered to") && h.contains("pf")),
        "{report}"
    );
    let skipped = steps[4].skipped.as_deref().unwrap_or_default();
    assert!(skipped.contains("g0 is a QEMU guest"), "{report}");
    assert!(report.contains("skip step 5"), "{report}");
    // UDP from the guest's stack to the PF, and from the PF to a meter in the guest.
    for st in &steps[5..7] {
        assert!(st.skipped.is_none(), "{report}");
        assert!(
            st.happened.iter().any(|h| h.contains("received")),
            "{report}"
        );
    }
    assert!(
        steps[5]
            .happened
            .iter()
            .any(|h| h.contains("from vf0 delivered to pf")),
        "{report}"
    );
}

#[test]
fn two_guests_boot_together_ping_each_other_and_carry_tcp_and_udp() {
    let artifacts = Artifacts::locate().unwrap_or_else(|e| panic!("{e}"));
    build_guest_helper();
    let s = load(&workspace_root().join("tests/scenarios/two-guests.toml"));
    let t = Instant::now();
    let r = run_guests(&s, &artifacts);
    eprintln!("two-guests: {:.1} s with guests", t.elapsed().as_secs_f64());
    let report = r.report.render();
    assert!(r.report.pass, "{report}");
    let steps = &r.report.steps;
    assert_eq!(steps.len(), 4, "{report}");
    assert!(steps.iter().all(|st| st.skipped.is_none()), "{report}");
    // The line of step `i`'s report that says `what`.
    let said = |i: usize, what: &str| {
        steps[i]
            .happened
            .iter()
            .find(|h| h.contains(what))
            .cloned()
            .unwrap_or_else(|| panic!("step {}: no `{what}`\n{report}", i + 1))
    };
    said(0, "2/2 echo replies");
    // iperf3's receiver count, TCP payload; its segments went through the switch VF to VF.
    eprintln!("two-guests TCP: {}", said(1, "of TCP payload"));
    said(1, "from vf0 delivered to vf1");
    eprintln!("two-guests TCP at 20 Mbit/s: {}", said(2, "of TCP payload"));
    said(2, "from vf1 delivered to vf0");
    eprintln!("two-guests UDP: {}", said(3, "received"));
}

#[test]
fn a_guest_endpoint_without_the_guest_mode_is_a_clear_setup_error() {
    let r = scenarios::run(&tools(), &RunOptions::default());
    let e = r.report.setup_error.expect("a setup error");
    assert!(e.contains("endpoint g0 is a QEMU guest"), "{e}");
    assert!(e.contains("scripts/fetch-e2e.py"), "{e}");
    assert!(r.report.steps.is_empty());
}

#[test]
fn a_guest_that_cannot_attach_ends_its_scenario_fast_naming_it_and_the_cause() {
    Artifacts::locate().unwrap_or_else(|e| panic!("{e}"));
    let s = tools();
    let dir: PathBuf = workspace_root()
        .join("target/e2e/run")
        .join(format!("scen-broken-{}", std::process::id()));
    let serving = Serving::start(&dir, &serve_config(&s.file.nic), None).expect("serve");
    let nics: Vec<_> = serving.ports().iter().map(|p| p.nic().clone()).collect();
    let nowhere = dir.join("no-such-vf.sock");
    let mode = GuestMode {
        sockets: Box::new(move |_| Some(nowhere.clone())),
        driver_endpoints: true,
        run_dir: dir.clone(),
        boot_timeout: Duration::from_secs(60),
        command_timeout: DEFAULT_COMMAND_TIMEOUT,
        log_tap: None,
        helper: Err("not needed".into()),
        build: None,
        progress: None,
    };
    let t = Instant::now();
    let r = scenarios::runner::run_with_guests(&s, &nics, mode);
    let took = t.elapsed();
    drop(nics);
    serving.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    let e = r.report.setup_error.expect("a setup error");
    eprintln!("{e}");
    assert!(e.starts_with("guest g0: not up after"), "{e}");
    assert!(e.contains("QEMU exited"), "{e}");
    assert!(e.contains("no-such-vf.sock"), "QEMU's own words: {e}");
    assert!(took < Duration::from_secs(30), "{took:?}: {e}");
    assert!(!r.report.pass);
}

#[test]
fn an_82599_scenario_runs_ixgbevf_guests_and_shows_where_ixgbe_decides_unlike_igb() {
    let artifacts = Artifacts::locate().unwrap_or_else(|e| panic!("{e}"));
    build_guest_helper();
    let s = load(&workspace_root().join("tests/scenarios/ixgbe-xcast-and-rss.toml"));
    assert_eq!(s.file.nic.model, model::nic::Card::X82599);
    let r = run_guests(&s, &artifacts);
    let report = r.report.render();
    assert!(r.report.pass, "{report}");
    assert_eq!(
        r.report.guests[0].kernel.as_deref().map(|k| !k.is_empty()),
        Some(true)
    );
}

#[test]
fn an_82599_port_attached_vf_endpoint_in_process_is_a_clear_setup_error() {
    // A port-attached VF scripts igb's mailbox; a driver-attached one runs the software
    // ixgbevf.
    let text = |attach: &str| {
        format!(
            "description = \"d\"\nreproduces = \"r\"\n[nic]\nmodel = \"82599\"\nvfs = 1\n\
             [[endpoint]]\nname = \"v\"\nport = \"vf0\"\nattach = \"{attach}\"\n"
        )
    };
    let s = scenarios::load::parse(Path::new("x.toml"), &text("port"))
        .unwrap_or_else(|e| panic!("{e}"));
    let r = scenarios::run(&s, &RunOptions::default());
    let e = r.report.setup_error.expect("a setup error");
    assert!(e.contains("scripts igb's mailbox"), "{e}");
    assert!(e.contains("software ixgbevf"), "{e}");
    let s = scenarios::load::parse(Path::new("x.toml"), &text("driver"))
        .unwrap_or_else(|e| panic!("{e}"));
    let r = scenarios::run(&s, &RunOptions::default());
    assert!(r.report.setup_error.is_none(), "{}", r.report.render());
    assert!(r.report.pass, "{}", r.report.render());
}

#[test]
fn library_scenarios_that_behave_alike_pass_with_ixgbevf_guests_on_an_82599() {
    let artifacts = Artifacts::locate().unwrap_or_else(|e| panic!("{e}"));
    build_guest_helper();
    // The library's 82576 files that say their expectations hold on the 82599 too (`cards`);
    // the 82599's own files run in the test above.
    let both: Vec<Scenario> = marked()
        .into_iter()
        .filter(|s| {
            s.file.cards.contains(&model::nic::Card::X82599)
                && s.file.nic.model != model::nic::Card::X82599
        })
        .collect();
    assert!(both.len() >= 3, "{} files for both cards", both.len());
    for mut s in both {
        // Named as `scenario run` names such a run: its sockets and guest logs are its own
        // while the 82576 run of the same file may be under way in the other test.
        s.name = format!("{}@82599", s.name);
        let name = s.name.clone();
        s.file.nic.model = model::nic::Card::X82599;
        let r = run_guests(&s, &artifacts);
        assert!(r.report.pass, "{}", r.report.render());
        let k = r.report.guests.first().and_then(|g| g.kernel.clone());
        assert!(k.is_some(), "{name}: a guest ran");
    }
}
