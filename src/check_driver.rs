//! `sriov-emu check-driver --kernel IMAGE | --modules DIR | --module FILE.ko ... [PATH...]`: a
//! driver developer's own build against the scenario library. Every library scenario that runs
//! with QEMU guests (`guests = true`), holds for the card's VF driver (`cards`, by default the
//! 82576's igbvf; `--model 82599` checks ixgbevf) and has a VF endpoint attached through its
//! driver (the
//! endpoints that become guests: bring-up, admin and zero MAC, MAC changes under trust, VLAN,
//! MTU, link state, faults, ...) runs with guests booting the user's kernel and modules,
//! then (unless `--no-baseline`) with the stock Debian ones, and the summary says per scenario
//! whether the user's build behaved as the stock driver did, naming the checks that differ.
//! Each guest is also checked to run the module brought (its file's checksum in the guest, and
//! loaded), so a run that silently fell back to a stock module fails.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use scenarios::format::Attach;
use scenarios::guests::Progress;
use scenarios::qemu::{Artifacts, BroughtModule, GuestBuild, PreparedBuild};
use scenarios::report::{Check, StepReport};
use scenarios::{collect, load, LoadError, Scenario, ScenarioReport};

use crate::scenario_cmd::{
    prepare_builds, run_guests_with, write_reports, GuestSetup, ScenarioCmdError,
};

/// What `check-driver` was asked.
#[derive(Clone, Default)]
pub struct CheckArgs<'a> {
    /// Scenario files or directories; empty: the library's guest scenarios.
    pub paths: Vec<PathBuf>,
    /// The user's kernel, modules and files.
    pub build: GuestBuild,
    /// Also run the stock guest and compare.
    pub baseline: bool,
    /// The card whose VF driver is checked (`--model`): igbvf on an 82576 (the default),
    /// ixgbevf on an 82599.
    pub model: Option<model::Card>,
    pub json: Option<&'a Path>,
    pub html: Option<&'a Path>,
    pub junit: Option<&'a Path>,
    pub progress: Option<Progress>,
}

/// The scenario library shipped in the repository.
pub fn library_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/library")
}

/// One scenario on the user's build, and on the stock one.
#[derive(Clone, Debug, Serialize)]
pub struct Compared {
    pub name: String,
    pub yours: ScenarioReport,
    pub stock: Option<ScenarioReport>,
    /// The checks whose verdicts differ between the two (empty: the same behaviour).
    pub differences: Vec<String>,
}

impl Compared {
    /// `None` without a baseline.
    pub fn same(&self) -> Option<bool> {
        self.stock.as_ref().map(|_| self.differences.is_empty())
    }
}

/// What the user's build is, as the JSON file says it.
#[derive(Clone, Debug, Serialize)]
pub struct BuildSummary {
    pub kernel: Option<PathBuf>,
    pub release: String,
    pub kernel_args: String,
    pub modules: Vec<BroughtModule>,
}

/// The whole check, as `--json FILE` writes it.
#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    pub build: BuildSummary,
    pub scenarios: Vec<Compared>,
    /// Every scenario passed on the user's build.
    pub pass: bool,
}

/// Runs the check, prints the user's reports and the summary on `out`. `Ok(true)` when every
/// scenario passed on the user's build.
pub fn check_driver(args: CheckArgs<'_>, out: &mut dyn Write) -> Result<bool, ScenarioCmdError> {
    if args.build.is_stock() {
        return Err(ScenarioCmdError::NothingBrought);
    }
    let from_library = args.paths.is_empty();
    let paths = if from_library {
        vec![library_dir()]
    } else {
        args.paths.clone()
    };
    let files = collect(&paths).map_err(ScenarioCmdError::Paths)?;
    let mut loaded: Vec<Scenario> = Vec::new();
    let mut errors: Vec<LoadError> = Vec::new();
    for f in &files {
        match load(f) {
            Ok(mut s) if !from_library || s.file.guests => {
                let card = args.model.unwrap_or_default();
                // The library's files whose expectations hold for this card's VF driver.
                if from_library && !s.file.cards.contains(&card) {
                    continue;
                }
                s.file.nic.model = card;
                loaded.push(s)
            }
            Ok(_) => {}
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(ScenarioCmdError::Load(errors));
    }
    // Only endpoints attached to a VF through its driver become guests: a scenario without
    // one would not run the user's driver at all.
    let (loaded, left_out): (Vec<Scenario>, Vec<Scenario>) =
        loaded.into_iter().partition(runs_a_driver);
    if loaded.is_empty() {
        return Err(ScenarioCmdError::NoFiles);
    }
    // Everything is checked before the first guest boots: the artifacts, the user's build
    // (a module built for another kernel stops here), the files' own builds.
    let artifacts = Artifacts::locate()?;
    // The library's guests send crafted frames and traffic through the in-guest helper.
    scenarios::guest_send::locate().map_err(ScenarioCmdError::Helper)?;
    let all: Vec<&Scenario> = loaded.iter().collect();
    let yours = prepare_builds(&all, &args.build, &artifacts)?;
    let stock = if args.baseline {
        prepare_builds(&all, &GuestBuild::default(), &artifacts)?
    } else {
        Vec::new()
    };
    let Some(Some(first)) = yours.first() else {
        return Err(ScenarioCmdError::NothingBrought);
    };
    let summary = BuildSummary {
        kernel: first.kernel.clone(),
        release: first.release.clone(),
        kernel_args: first.kernel_args.clone(),
        modules: first.modules.clone(),
    };
    let _ = writeln!(out, "{}", describe(first));
    if !left_out.is_empty() {
        let names: Vec<&str> = left_out.iter().map(|s| s.name.as_str()).collect();
        let _ = writeln!(
            out,
            "left out (no VF whose driver would run in a guest on this card): {}",
            names.join(", ")
        );
    }

    let tagged = |tag: &str| -> Option<Progress> {
        let p = args.progress.clone()?;
        let tag = tag.to_string();
        Some(Arc::new(move |line: &str| p(&format!("{tag}: {line}"))))
    };
    let mut compared = Vec::new();
    for (i, s) in loaded.iter().enumerate() {
        let setup = GuestSetup {
            build: yours[i].clone(),
            progress: tagged("your build"),
            tag: "-yours".into(),
        };
        let mut mine = run_guests_with(s, &artifacts, &setup).report;
        add_build_check(&mut mine);
        let theirs = args.baseline.then(|| {
            let setup = GuestSetup {
                build: stock.get(i).cloned().flatten(),
                progress: tagged("stock"),
                tag: "-stock".into(),
            };
            run_guests_with(s, &artifacts, &setup).report
        });
        let differences = theirs
            .as_ref()
            .map_or(Vec::new(), |t| differences(&mine, t));
        compared.push(Compared {
            name: s.name.clone(),
            yours: mine,
            stock: theirs,
            differences,
        });
    }

    let reports: Vec<ScenarioReport> = compared.iter().map(|c| c.yours.clone()).collect();
    write_reports(&reports, args.html, args.junit)?;
    let pass = reports.iter().all(|r| r.pass);
    if let Some(path) = args.json {
        let report = CheckReport {
            build: summary,
            scenarios: compared.clone(),
            pass,
        };
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text).map_err(|source| ScenarioCmdError::JsonFile {
            path: path.into(),
            source,
        })?;
    }
    for r in &reports {
        let _ = writeln!(out, "{}", r.render());
    }
    let _ = write!(out, "{}", summary_table(&compared));
    Ok(pass)
}

/// Whether `s` has an endpoint the guest mode boots as a guest: a VF endpoint attached through
/// its driver (or explicitly a guest).
fn runs_a_driver(s: &Scenario) -> bool {
    let vf_endpoints = || {
        s.file
            .endpoints
            .iter()
            .filter(|e| matches!(e.port.port, eswitch::PortId::Vf(_)))
    };
    let driven = vf_endpoints().any(|e| matches!(e.attach, Attach::Driver | Attach::Guest));
    // A port-attached VF endpoint scripts igb's mailbox over the VF's registers, which an
    // 82599's VFs do not speak.
    let in_process = vf_endpoints().any(|e| e.attach == Attach::Port);
    driven && (s.file.nic.model == model::Card::I82576 || !in_process)
}

/// `your build: kernel 6.1.0-50-amd64 (stock); modules: igbvf (/x/igbvf.ko, sha256 0123…)`.
fn describe(build: &PreparedBuild) -> String {
    let kernel = match &build.kernel {
        Some(p) => format!("{} ({})", build.release, p.display()),
        None => format!("{} (the stock kernel)", build.release),
    };
    let modules: Vec<String> = build
        .modules
        .iter()
        .map(|m| {
            format!(
                "{} ({}, sha256 {}…)",
                m.name,
                m.host.display(),
                &m.sha256[..12]
            )
        })
        .collect();
    let mut line = format!("your build: kernel {kernel}");
    if !modules.is_empty() {
        line += &format!("; modules: {}", modules.join(", "));
    }
    if !build.kernel_args.is_empty() {
        line += &format!("; kernel arguments: {}", build.kernel_args);
    }
    for note in &build.notes {
        line += &format!("\nnote: {note}");
    }
    line
}

/// A last step in the user's report: each guest runs each module brought (loaded, from a file
/// with the brought file's checksum).
fn add_build_check(report: &mut ScenarioReport) {
    let checks: Vec<Check> = report
        .guests
        .iter()
        .flat_map(|g| {
            g.modules.iter().map(move |m| Check {
                what: format!("{} runs {} from the build", g.endpoint, m.name),
                expected: format!("loaded, sha256 {}", m.expected_sha256),
                actual: format!(
                    "{}, sha256 {}",
                    if m.loaded { "loaded" } else { "not loaded" },
                    m.sha256.as_deref().unwrap_or("none (no such file)")
                ),
                pass: m.is_the_build(),
            })
        })
        .collect();
    if checks.is_empty() {
        return;
    }
    let pass = checks.iter().all(|c| c.pass);
    report.steps.push(StepReport {
        index: report.steps.len(),
        action: "the guests run the modules brought".into(),
        happened: report.guests.iter().map(|g| g.line()).collect(),
        frames: Vec::new(),
        counters: Vec::new(),
        logs: Vec::new(),
        cables: Vec::new(),
        checks,
        error: None,
        skipped: None,
        faults: Vec::new(),
        pass,
    });
    report.pass &= pass;
}

/// The checks whose verdicts differ between the user's run and the stock one, and a setup or
/// step error only one of them had.
pub fn differences(yours: &ScenarioReport, stock: &ScenarioReport) -> Vec<String> {
    let mut out = Vec::new();
    match (&yours.setup_error, &stock.setup_error) {
        (Some(e), None) => out.push(format!("setup failed on your build only: {}", first(e))),
        (None, Some(e)) => out.push(format!(
            "setup failed on the stock build only: {}",
            first(e)
        )),
        _ => {}
    }
    for (mine, theirs) in yours.steps.iter().zip(&stock.steps) {
        let step = format!("step {} ({})", mine.index + 1, mine.action);
        match (&mine.error, &theirs.error) {
            (Some(e), None) => out.push(format!("{step}: yours failed: {}", first(e))),
            (None, Some(e)) => out.push(format!("{step}: stock failed: {}", first(e))),
            _ => {}
        }
        for c in &mine.checks {
            let Some(t) = theirs.checks.iter().find(|t| t.what == c.what) else {
                continue;
            };
            if c.pass != t.pass {
                out.push(format!(
                    "{step}: {}: yours {} ({}), stock {} ({})",
                    c.what,
                    verdict(c.pass),
                    c.actual,
                    verdict(t.pass),
                    t.actual
                ));
            }
        }
    }
    out
}

fn verdict(pass: bool) -> &'static str {
    if pass {
        "pass"
    } else {
        "FAIL"
    }
}

fn first(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// The summary: per scenario the user's verdict, the stock one, same or what differs.
fn summary_table(compared: &[Compared]) -> String {
    let width = compared
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(8)
        .max(8);
    let mut out = format!(
        "{:<width$}  {:<10}  {:<6}  compared\n",
        "scenario", "your build", "stock"
    );
    for c in compared {
        let stock = c.stock.as_ref().map_or("-", |s| verdict(s.pass));
        let same = match c.same() {
            None => "no baseline".to_string(),
            Some(true) => "same".to_string(),
            Some(false) => format!("DIFFERS: {}", c.differences.join("; ")),
        };
        out += &format!(
            "{:<width$}  {:<10}  {:<6}  {same}\n",
            c.name,
            verdict(c.yours.pass),
            stock
        );
    }
    let passed = compared.iter().filter(|c| c.yours.pass).count();
    out += &format!("{passed}/{} scenarios passed on your build", compared.len());
    if compared.iter().all(|c| c.stock.is_some()) {
        let same = compared.iter().filter(|c| c.same() == Some(true)).count();
        out += &format!(
            ", {same}/{} behaved as with the stock driver",
            compared.len()
        );
    }
    out += "\n";
    out
}
