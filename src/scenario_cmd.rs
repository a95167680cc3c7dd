//! `sriov-emu scenario run PATH... [--json] [--pcap DIR] [--html FILE] [--junit FILE]
//! [--real-time] [--guests] [--kernel IMAGE] [--modules DIR] [--module FILE.ko]...`: loads every
//! scenario first (a malformed file stops the run before anything runs), runs them, prints the
//! reports (or one JSON array) and a summary, and writes the capture files, the HTML page and
//! the JUnit XML.
//!
//! The guest mode (`--guests`, or a file with an `attach = "guest"` endpoint): the scenario's
//! card is a [`Serving`] (one NIC per port, real time, each VF on its vfio-user socket) and its
//! driver-attached VF endpoints are QEMU guests running igbvf on those sockets
//! ([`scenarios::runner::run_with_guests`]). The guests boot the fetched Debian kernel and
//! modules, or what the user brings (each file's `[run]` table, the command line on top:
//! [`scenarios::qemu::GuestBuild`]), checked before any guest boots.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use eswitch::PortId;
use scenarios::format::{Attach, NicSpec};
use scenarios::guests::{GuestMode, Progress, DEFAULT_BOOT_TIMEOUT, DEFAULT_COMMAND_TIMEOUT};
use scenarios::logs::LogTap;
use scenarios::qemu::{Artifacts, BuildError, GuestBuild, HarnessError, PreparedBuild};
use scenarios::world::Captured;
use scenarios::{
    collect, load, run, LoadError, PortRef, RunOptions, Scenario, ScenarioReport, TimeMode,
};

use crate::pcap::PcapWriter;
use crate::serve::{port_vf_socket, PortConfig, ServeConfig, Serving};

/// A run that could not be carried out (as opposed to scenarios that failed their checks).
#[derive(Debug, thiserror::Error)]
pub enum ScenarioCmdError {
    #[error("reading scenario paths: {0}")]
    Paths(std::io::Error),
    #[error("no scenario files found")]
    NoFiles,
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Load(Vec<LoadError>),
    #[error("writing the reports: {0}")]
    Json(#[from] serde_json::Error),
    #[error("guest mode: {0}")]
    Artifacts(#[from] HarnessError),
    #[error("writing pcap files to {dir}: {source}")]
    Pcap {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("writing the HTML report {path}: {source}")]
    Html {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing the JUnit report {path}: {source}")]
    Junit {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The guests' kernel or modules cannot boot (checked before any guest boots).
    #[error("{what}: {source}")]
    Build { what: String, source: BuildError },
    #[error(
        "--kernel, --modules, --module, --guest-file and --kernel-arg build QEMU guests: add \
         --guests (or give a file with `attach = \"guest\"` endpoints)"
    )]
    BuildWithoutGuests,
    #[error("nothing to check: bring a kernel (--kernel), modules (--modules DIR) or a module (--module FILE.ko)")]
    NothingBrought,
    #[error("{0}")]
    Helper(String),
    #[error("writing the JSON report {path}: {source}")]
    JsonFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// How `scenario run` runs and what it writes besides the reports on its output.
#[derive(Clone, Default)]
pub struct RunArgs<'a> {
    /// The reports as one JSON array instead of text.
    pub json: bool,
    /// Where each port's capture goes, a pcap file per port and scenario.
    pub pcap_dir: Option<&'a Path>,
    /// Where the reports go as one HTML page.
    pub html: Option<&'a Path>,
    /// Where the reports go as JUnit XML.
    pub junit: Option<&'a Path>,
    pub time: TimeMode,
    /// Every driver-attached VF endpoint a QEMU guest (`--guests`).
    pub guests: bool,
    /// Every file's card (`--model`), whatever its `[nic] model` says.
    pub model: Option<model::Card>,
    /// The command line's guest kernel, modules and files, on top of each file's `[run]`.
    pub build: GuestBuild,
    /// Where guest boots and steps are reported as they happen.
    pub progress: Option<Progress>,
}

/// What the guest mode's guests boot and where their progress goes.
#[derive(Clone, Default)]
pub struct GuestSetup {
    /// The user's kernel, modules and files, prepared; `None`: the stock guest.
    pub build: Option<Arc<PreparedBuild>>,
    pub progress: Option<Progress>,
    /// Tells runs of the same scenario apart (their directories under `run/`).
    pub tag: String,
}

/// The builds the guest scenarios of a run ask for (each file's `[run]` with `cli` on top),
/// checked and packed before anything boots; the same build is prepared once.
pub fn prepare_builds(
    scenarios: &[&Scenario],
    cli: &GuestBuild,
    artifacts: &Artifacts,
) -> Result<Vec<Option<Arc<PreparedBuild>>>, ScenarioCmdError> {
    let mut prepared: Vec<(GuestBuild, Arc<PreparedBuild>)> = Vec::new();
    let mut out = Vec::new();
    for s in scenarios {
        let build = s.guest_build().overlay(cli);
        if build.is_stock() {
            out.push(None);
            continue;
        }
        if let Some((_, p)) = prepared.iter().find(|(b, _)| *b == build) {
            out.push(Some(p.clone()));
            continue;
        }
        let what = if s.guest_build().is_stock() {
            "the guests' build".to_string()
        } else {
            format!("the guests' build of {} ([run])", s.path.display())
        };
        let p = Arc::new(
            build
                .prepare(artifacts)
                .map_err(|source| ScenarioCmdError::Build { what, source })?,
        );
        prepared.push((build, p.clone()));
        out.push(Some(p));
    }
    Ok(out)
}

/// Writes `text` to `path`, the error naming the report it is.
fn write_report(
    path: &Path,
    text: &str,
    err: fn(PathBuf, std::io::Error) -> ScenarioCmdError,
) -> Result<(), ScenarioCmdError> {
    std::fs::write(path, text).map_err(|e| err(path.into(), e))
}

/// Writes the reports that go to files: the HTML page, the JUnit XML.
pub fn write_reports(
    reports: &[ScenarioReport],
    html: Option<&Path>,
    junit: Option<&Path>,
) -> Result<(), ScenarioCmdError> {
    if let Some(path) = html {
        write_report(path, &scenarios::html::render(reports), |path, source| {
            ScenarioCmdError::Html { path, source }
        })?;
    }
    if let Some(path) = junit {
        let xml = scenarios::junit::render("sriov-emu scenarios", reports);
        write_report(path, &xml, |path, source| ScenarioCmdError::Junit {
            path,
            source,
        })?;
    }
    Ok(())
}

/// Runs the scenarios under `paths`, prints the reports and a summary on `out` (stdout for
/// the CLI) and writes what `args` asks for. `Ok(true)` when every scenario passed.
pub fn run_command(
    paths: &[PathBuf],
    args: RunArgs<'_>,
    out: &mut dyn Write,
) -> Result<bool, ScenarioCmdError> {
    let RunArgs {
        json,
        pcap_dir,
        html,
        junit,
        time,
        guests,
        model,
        build,
        progress,
    } = args;
    let files = collect(paths).map_err(ScenarioCmdError::Paths)?;
    if files.is_empty() {
        return Err(ScenarioCmdError::NoFiles);
    }
    let mut loaded: Vec<Scenario> = Vec::new();
    let mut errors: Vec<LoadError> = Vec::new();
    for f in &files {
        match load(f) {
            Ok(mut s) => {
                if let Some(card) = model {
                    s.file.nic.model = card;
                    loaded.push(s);
                } else {
                    loaded.extend(on_each_card(s));
                }
            }
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(ScenarioCmdError::Load(errors));
    }
    let opts = RunOptions { time };
    let with_guests = |s: &Scenario| guests || has_guest_endpoint(s);
    if !build.is_stock() && !loaded.iter().any(with_guests) {
        return Err(ScenarioCmdError::BuildWithoutGuests);
    }
    // Missing artifacts and builds that cannot boot stop the run before anything boots.
    let artifacts = if loaded.iter().any(with_guests) {
        Some(Artifacts::locate()?)
    } else {
        None
    };
    let guest_scenarios: Vec<&Scenario> = loaded.iter().filter(|s| with_guests(s)).collect();
    let mut builds = match &artifacts {
        Some(a) => prepare_builds(&guest_scenarios, &build, a)?,
        None => Vec::new(),
    }
    .into_iter();
    if !json {
        let mut said: Vec<&str> = Vec::new();
        for note in builds.as_slice().iter().flatten().flat_map(|b| &b.notes) {
            if !said.contains(&note.as_str()) {
                let _ = writeln!(out, "note: {note}");
                said.push(note);
            }
        }
    }
    let wall = std::time::Instant::now();
    let mut reports: Vec<ScenarioReport> = Vec::new();
    for s in &loaded {
        let r = match &artifacts {
            Some(a) if with_guests(s) => {
                let setup = GuestSetup {
                    build: builds.next().flatten(),
                    progress: progress.clone(),
                    tag: String::new(),
                };
                run_guests_with(s, a, &setup)
            }
            _ => run(s, &opts),
        };
        if let Some(dir) = pcap_dir {
            write_pcaps(dir, &s.name, &r.captures).map_err(|source| ScenarioCmdError::Pcap {
                dir: dir.into(),
                source,
            })?;
        }
        reports.push(r.report);
    }
    write_reports(&reports, html, junit)?;
    let passed = reports.iter().filter(|r| r.pass).count();
    // A closed stdout (`| head`) is not an error of the run: the verdict stands.
    if json {
        let text = serde_json::to_string_pretty(&reports)?;
        let _ = writeln!(out, "{text}");
    } else {
        for r in &reports {
            let _ = writeln!(out, "{}", r.render());
        }
        let _ = writeln!(
            out,
            "{passed}/{} scenarios passed in {:.2} s",
            reports.len(),
            wall.elapsed().as_secs_f64()
        );
    }
    Ok(passed == reports.len())
}

/// A file as `scenario run` runs it without `--model`: on its own card, then on every other
/// card its `cards` list names (its expectations hold for that card's VF driver too), each such
/// run named `NAME@CARD`.
fn on_each_card(s: Scenario) -> Vec<Scenario> {
    let mut runs = vec![s.clone()];
    for &card in &s.file.cards {
        if card != s.file.nic.model {
            let mut other = s.clone();
            other.file.nic.model = card;
            other.name = format!("{}@{card}", s.name);
            runs.push(other);
        }
    }
    runs
}

/// Whether a scenario has an endpoint that only a guest can be.
pub fn has_guest_endpoint(s: &Scenario) -> bool {
    s.file.endpoints.iter().any(|e| e.attach == Attach::Guest)
}

/// `serve`'s configuration for a scenario's card: its ports, each with the scenario's VFs,
/// MAC assignment, PF MAC and promiscuous policy.
pub fn serve_config(nic: &NicSpec) -> ServeConfig {
    ServeConfig {
        ports: (0..nic.ports)
            .map(|k| {
                let port = PortConfig {
                    vfs: Some(nic.vfs),
                    mac_assignment: nic.mac_assignment,
                    pf_mac: Some(nic.pf_mac_of(k).to_string()),
                    promisc_policy: Some(nic.promisc_policy.name().into()),
                    model: Some(nic.model),
                    ..PortConfig::default()
                };
                (format!("pf{k}"), port)
            })
            .collect(),
        ..ServeConfig::default()
    }
}

/// Runs `s` in the guest mode ([`scenarios::runner::run_with_guests`]): `serve`'s datapath for
/// its card, in real time, in a directory of its own under the artifacts' `run/`, and its
/// driver-attached VF endpoints (and `attach = "guest"` ones) as QEMU guests on the VF sockets.
pub fn run_guests(s: &Scenario, artifacts: &Artifacts) -> scenarios::Run {
    run_guests_with(s, artifacts, &GuestSetup::default())
}

/// [`run_guests`] with guests that boot `setup`'s build and report progress where it says.
pub fn run_guests_with(s: &Scenario, artifacts: &Artifacts, setup: &GuestSetup) -> scenarios::Run {
    // Runs of one process may overlap (tests in threads): each gets a directory of its own.
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = artifacts.run.join(format!(
        "scen-{}-{run}-{}{}",
        std::process::id(),
        s.name,
        setup.tag
    ));
    let failed = |why: String| {
        let mut r = run_setup_failure(s);
        r.report.setup_error = Some(why);
        r
    };
    let defaults = NicSpec::default();
    // The file's link speed: unsaid (the default) or the card's own, as `serve` builds it.
    let speed = s.file.nic.link_speed_mbps;
    let card_speed = s.file.nic.model.link_speed_mbps();
    if s.file.nic.uplinks != defaults.uplinks
        || (speed != defaults.link_speed_mbps && speed != card_speed)
    {
        return failed(format!(
            "guest mode: the card is served as `serve` builds it ({} uplink(s), {} Mbit/s), \
             the file asks for {} uplink(s) at {} Mbit/s",
            defaults.uplinks, card_speed, s.file.nic.uplinks, s.file.nic.link_speed_mbps
        ));
    }
    // The card's threads log through the tap: each step lists the PF agent's lines.
    let tap = LogTap::default();
    let started = tracing::dispatcher::with_default(&tap.dispatch(), || {
        Serving::start(&dir, &serve_config(&s.file.nic), None)
    });
    let serving = match started {
        Ok(serving) => serving,
        Err(e) => return failed(format!("guest mode: serve: {e}")),
    };
    let nics: Vec<_> = serving.ports().iter().map(|p| p.nic().clone()).collect();
    let sockets_dir = dir.clone();
    let mode = GuestMode {
        sockets: Box::new(move |p| match p.port {
            PortId::Vf(vf) => Some(port_vf_socket(&sockets_dir, p.nic, vf)),
            _ => None,
        }),
        driver_endpoints: true,
        run_dir: dir.clone(),
        boot_timeout: DEFAULT_BOOT_TIMEOUT,
        command_timeout: DEFAULT_COMMAND_TIMEOUT,
        log_tap: Some(tap),
        helper: scenarios::guest_send::locate(),
        build: setup.build.clone(),
        progress: setup.progress.clone(),
    };
    let r = scenarios::runner::run_with_guests(s, &nics, mode);
    drop(nics);
    serving.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    r
}

/// An empty run of `s` (no NIC, no step), for a setup error found before any NIC exists.
fn run_setup_failure(s: &Scenario) -> scenarios::Run {
    scenarios::runner::run_with_guests(
        s,
        &[],
        GuestMode {
            sockets: Box::new(|_| None),
            driver_endpoints: true,
            run_dir: PathBuf::new(),
            boot_timeout: DEFAULT_BOOT_TIMEOUT,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            log_tap: None,
            helper: Err("no guests".into()),
            build: None,
            progress: None,
        },
    )
}

/// One pcap file per port that saw frames: `DIR/<scenario>-<port>.pcap` (`vf1`, `uplink0`;
/// `pf1.vf0` for another port of the card than port 0), simulated time.
fn write_pcaps(dir: &Path, name: &str, captures: &[Captured]) -> std::io::Result<()> {
    crate::create_dir(dir)?;
    let mut by_port: BTreeMap<PortRef, Vec<&Captured>> = BTreeMap::new();
    for c in captures {
        by_port.entry(c.port).or_default().push(c);
    }
    for (port, records) in by_port {
        let path = dir.join(format!("{name}-{port}.pcap"));
        let file = std::io::BufWriter::new(std::fs::File::create(path)?);
        let mut w = PcapWriter::new(file)?;
        for r in records {
            w.record(r.time_ns, &r.frame)?;
        }
        w.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use eswitch::PortId;

    #[test]
    fn pcap_files_are_written_per_port_in_capture_order() {
        let dir = std::env::temp_dir().join(format!("scenario-pcap-{}", std::process::id()));
        let frame = |b: u8| Bytes::from(vec![b; 60]);
        let cap = |port, t, b| Captured {
            port,
            direction: eswitch::Direction::Rx,
            time_ns: t,
            frame: frame(b),
            stripped_tci: None,
        };
        let caps = [
            cap(PortRef::local(PortId::Vf(1)), 1_000_000_000, 1),
            cap(PortRef::local(PortId::Pf), 1_000_000_000, 2),
            cap(PortRef::local(PortId::Vf(1)), 2_500_000_000, 3),
            cap(PortRef::new(1, PortId::Vf(1)), 2_600_000_000, 4),
            cap(PortRef::new(1, PortId::Pf), 2_600_000_000, 5),
        ];
        write_pcaps(&dir, "s", &caps).unwrap();
        let vf1 = std::fs::read(dir.join("s-vf1.pcap")).unwrap();
        assert_eq!(vf1.len(), 24 + 2 * (16 + 60));
        assert_eq!(&vf1[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(&vf1[20..24], &[1, 0, 0, 0], "linktype Ethernet");
        // The second record: 2.5 s, then the frame of 3s.
        let second = 24 + 16 + 60;
        assert_eq!(&vf1[second..second + 8], &[2, 0, 0, 0, 0x20, 0xa1, 0x07, 0]);
        assert!(vf1[second + 16..].iter().all(|&b| b == 3));
        let pf = std::fs::read(dir.join("s-pf.pcap")).unwrap();
        assert_eq!(pf.len(), 24 + 16 + 60);
        // Port 1's ports under their qualified names, each in a file of its own.
        for (file, byte) in [("s-pf1.vf1.pcap", 4), ("s-pf1.pcap", 5)] {
            let f = std::fs::read(dir.join(file)).unwrap();
            assert_eq!(f.len(), 24 + 16 + 60, "{file}");
            assert!(f[24 + 16..].iter().all(|&b| b == byte), "{file}");
        }
        assert!(!dir.join("s-pf0.pcap").exists());
        let _ = std::fs::remove_dir_all(dir);
    }
}
