use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A full-system SR-IOV NIC emulator (Intel 82576: igb PF, igbvf VFs; Intel 82599: ixgbevf VFs)
/// served over vfio-user.
#[derive(Parser, Debug)]
#[command(name = "sriov-emu", version, about)]
struct Cli {
    /// More logging (-v: info, -vv: debug, -vvv: trace, which shows every vfio-user message).
    /// `RUST_LOG` overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve a NIC over vfio-user, a port or several: per port K `DIR/pfK.sock` (the PF, for a
    /// guest's igb) and `DIR/pfK-vf<N>.sock` per VF, and `DIR/control.sock`, until
    /// SIGINT/SIGTERM.
    Serve(ServeArgs),
    /// Scenario files: a NIC in process, endpoints, steps and expectations (QEMU guests with
    /// `scenario run --guests`).
    Scenario {
        #[command(subcommand)]
        what: ScenarioCommand,
    },
    /// Test your own driver build: run the library's guest scenarios with QEMU guests booting
    /// your kernel and/or modules, then with the stock ones, and say which behaviours matched.
    /// Exits non-zero if any scenario fails on your build.
    CheckDriver {
        /// Scenario files or directories (default: the library's `guests = true` scenarios).
        paths: Vec<PathBuf>,
        #[command(flatten)]
        build: GuestBuildArgs,
        /// Do not run the stock guests for comparison (half the time).
        #[arg(long)]
        no_baseline: bool,
        /// The card whose VF driver you check: 82576 (igbvf, the default) or 82599 (ixgbevf;
        /// the library files whose VFs all run in guests).
        #[arg(long, value_name = "CARD")]
        model: Option<model::nic::Card>,
        /// Write the whole check as JSON: the build, per scenario both reports and what differs.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Write your build's reports as one HTML page.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// Write your build's reports as JUnit XML (a case per check) for CI systems.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        #[command(flatten)]
        progress: ProgressArgs,
    },
    /// Administer a running `serve` through DIR/control.sock.
    Ctl {
        /// The directory `serve` was given.
        #[arg(long)]
        dir: PathBuf,
        /// The card's port: pf0 (or pf), pf1, ... `vf` defaults to pf0, `show` to every port.
        /// Before `vf`'s words.
        #[arg(long, global = true, value_name = "PORT")]
        port: Option<scenarios::PfRef>,
        #[command(subcommand)]
        what: CtlCommand,
    },
}

#[derive(Subcommand, Debug)]
enum ScenarioCommand {
    /// Run scenario files, or directories searched for `*.toml`; exits non-zero if any fails.
    Run {
        /// Scenario files, or directories searched for `*.toml` (`scenarios/` runs the library).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Print the reports as one JSON array.
        #[arg(long)]
        json: bool,
        /// Keep the captures: DIR/<scenario>-<port>.pcap.
        #[arg(long)]
        pcap: Option<PathBuf>,
        /// Also write the reports as one self-contained HTML page: per step a picture of the
        /// card with the step's deliveries and drops, its checks, counters and log lines.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// Run on the host's clock (`wait` sleeps) instead of simulated time: the mode for
        /// endpoints that cannot be paused, such as QEMU guests. Rates are then the host's real
        /// ones (an unshaped in-process sender may not reach line rate).
        #[arg(long)]
        real_time: bool,
        /// Guest mode: the card is `serve`'s datapath (real time) and every driver-attached VF
        /// endpoint a QEMU guest running igbvf (the artifacts of scripts/fetch-e2e.py). Files
        /// with an `attach = "guest"` endpoint run this way without it.
        #[arg(long)]
        guests: bool,
        /// Run every file on this card (82576 or 82599) whatever its `[nic] model` says; an
        /// 82599's VF endpoints must be driver-attached (a software ixgbevf in process) or
        /// guests.
        #[arg(long, value_name = "CARD")]
        model: Option<model::nic::Card>,
        /// Also write the reports as JUnit XML (a test case per check) for CI systems.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        #[command(flatten)]
        build: GuestBuildArgs,
        #[command(flatten)]
        progress: ProgressArgs,
    },
}

/// What QEMU guests boot instead of the fetched Debian kernel and modules.
#[derive(clap::Args, Debug, Default)]
struct GuestBuildArgs {
    /// The guests' kernel: a bzImage or an ELF vmlinux (PVH).
    #[arg(long, value_name = "IMAGE")]
    kernel: Option<PathBuf>,
    /// Modules: a `make modules_install INSTALL_MOD_PATH=DIR` tree, or its
    /// lib/modules/<release>. Their vermagic must match the kernel.
    #[arg(long, value_name = "DIR")]
    modules: Option<PathBuf>,
    /// A module replacing the stock one of the same name (repeatable).
    #[arg(long = "module", value_name = "FILE.ko")]
    module_files: Vec<PathBuf>,
    /// An extra file for the guests, HOST=GUEST (repeatable).
    #[arg(long = "guest-file", value_name = "HOST=GUEST", value_parser = parse_guest_file)]
    files: Vec<scenarios::qemu::GuestFile>,
    /// Appended to the guests' kernel command line (repeatable).
    #[arg(long = "kernel-arg", value_name = "ARG", allow_hyphen_values = true)]
    kernel_args: Vec<String>,
}

fn parse_guest_file(s: &str) -> Result<scenarios::qemu::GuestFile, String> {
    scenarios::qemu::GuestFile::parse(s)
}

impl GuestBuildArgs {
    fn build(self) -> scenarios::qemu::GuestBuild {
        scenarios::qemu::GuestBuild {
            kernel: self.kernel,
            modules: self.modules,
            module_files: self.module_files,
            files: self.files,
            kernel_args: self.kernel_args,
        }
    }
}

/// Whether guest boots and steps are reported as they happen, on standard error.
#[derive(clap::Args, Debug, Default)]
struct ProgressArgs {
    /// Report guest boots and steps as they happen (default: on a terminal, unless `CI` is set).
    #[arg(long, conflicts_with = "quiet")]
    progress: bool,
    /// Report nothing as it happens.
    #[arg(long)]
    quiet: bool,
}

impl ProgressArgs {
    fn sink(&self) -> Option<scenarios::guests::Progress> {
        use std::io::IsTerminal;
        let auto = std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
        if self.quiet || !(self.progress || auto) {
            return None;
        }
        let started = std::time::Instant::now();
        Some(std::sync::Arc::new(move |line: &str| {
            eprintln!("[{:>6.1} s] {line}", started.elapsed().as_secs_f64());
        }))
    }
}

#[derive(Subcommand, Debug)]
enum CtlCommand {
    /// `ip link set PF vf N ...`: mac M, vlan V [qos Q] [proto 802.1Q], rate R, max_tx_rate R,
    /// min_tx_rate R, spoofchk on|off, trust on|off, state auto|enable|disable, query_rss on|off
    /// (an 82599's ixgbe only). What the card's PF driver refuses is refused with its error. All
    /// or nothing.
    Vf {
        /// The VF's number on the port (0-based, as `ip link` counts).
        vf: u16,
        /// The settings, in `ip link set PF vf N` words (`mac 02:00:00:00:00:10 vlan 10`).
        #[arg(required = true, num_args = 1.., allow_hyphen_values = true)]
        words: Vec<String>,
    },
    /// Inject a fault: `pf-reset [vf N]` tells the VF (or every VF) that the PF driver reset,
    /// as igb's reset does: the VF driver must notice, drop its link and redo its handshake.
    /// `link [PORT] down|up|flap PERIOD [count N]`: the port's cable (no PORT or `uplink0`:
    /// VFs in `auto` follow) or one port's own (`pf`, `vfN`). `wire PORT rx|tx
    /// drop|corrupt|duplicate|reorder|delay D (N% [seed S] | every N)`: frames of one port and
    /// direction. `mailbox vfN drop|nack|delay D`: the PF's mailbox handling. `dma PORT
    /// rx|tx desc|buffer N [queue Q]`: the next N accesses fail as a bad address would. `irq
    /// PORT lose N|delay D`: MSI-X messages lost or late. `rx-hold PORT D`: nothing received
    /// for D. `clear`: every fault off. Durations: 250ms, 500us, 2s.
    Fault {
        /// The fault, in the words above (`link vf1 flap 100ms count 2`).
        #[arg(required = true, num_args = 1..)]
        words: Vec<String>,
    },
    /// Who may enable promiscuous modes on the port: `igb` (the default, igb's decision:
    /// multicast promiscuous for any VF, unicast never) or `trusted-only` (only trusted VFs).
    PromiscPolicy { policy: String },
    /// PF and VF lines as `ip link show` prints them, with counters and drop reasons, port by
    /// port.
    Show {
        /// Print the full report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Why the command failed.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Serve(#[from] sriov_emu::serve::ServeError),
    #[error("signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("--pcap {}: {source}", path.display())]
    Pcap {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Ctl(#[from] sriov_emu::control::CtlError),
    /// The server's own words.
    #[error("{0}")]
    Refused(String),
    #[error("printing the report: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Scenario(#[from] sriov_emu::scenario_cmd::ScenarioCmdError),
    #[error("some scenarios failed")]
    ScenariosFailed,
}

/// `serve`'s options.
#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Directory for the sockets (created if missing).
    #[arg(long)]
    dir: PathBuf,
    /// Ports of the card: pf0 to pf(N-1), 1 to 4 (default: those the config file and the
    /// options name, at least pf0).
    #[arg(long, value_name = "N")]
    ports: Option<u8>,
    /// Number of VFs of port pf0, or of PORT with `pf1=4` (default 7, or the config file's
    /// `vfs`). Once per port.
    #[arg(long, value_name = "[PORT=]N")]
    vfs: Vec<String>,
    /// TOML configuration: vfs, mac_assignment ("admin-only" or "generated"), pf_mac,
    /// per-VF initial settings under [vf] (`0 = "mac 02:00:00:00:00:10 vlan 10"`), the
    /// uplink's backend under [uplink] (kind = "tap" | "stream" | "dgram" | "none", ...),
    /// promisc_policy, model and pf_driver for port pf0; the same fields under [ports.pf1],
    /// ... for more ports; and for the whole card busy_poll_us, nap_poll_us, [client_limits]
    /// and qemu.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Capture every switch port to DIR/pfK-<port>.pcap (pf0-uplink0, pf0-pf, pf1-vf0, ...).
    #[arg(long, value_name = "DIR")]
    pcap: Option<PathBuf>,
    /// Microseconds each VF's connection stays awake for QEMU's next message before it
    /// sleeps (default 50; 0: sleep at once). Spares the guest's vCPU a wakeup per posted
    /// register write, for some of a host core.
    #[arg(long, value_name = "US")]
    busy_poll_us: Option<u64>,
    /// Microseconds each VF's connection then keeps looking for QEMU's next message, sleeping
    /// between looks (50 µs, growing to 1000 while messages stream in), before it sleeps on the
    /// socket (default 4000; 0: off). QEMU's posted writes to a napping connection wake nobody.
    #[arg(long, value_name = "US")]
    nap_poll_us: Option<u64>,
    /// What stands behind port pf0's uplink, or PORT's with a `pf1=` prefix (replaces the
    /// config file's [uplink]): `none`; `tap:name=tap0` (create or attach a TAP);
    /// `stream:listen=ADDR` or `stream:connect=ADDR[,reconnect_ms=N]` (QEMU's -netdev stream
    /// framing); `dgram:local=ADDR,remote=ADDR` (QEMU's -netdev dgram). ADDR is HOST:PORT or
    /// unix:PATH. Once per port.
    #[arg(long, value_name = "[PORT=]KIND[:KEY=VALUE,...]")]
    uplink: Vec<String>,
    /// The card of every port: 82576 (default: igbvf VFs, igb's decisions, and the igb PF
    /// socket) or 82599 (ixgbevf VFs at 10 Gb/s with ixgbe's decisions; VF sockets only).
    #[arg(long, value_name = "CARD")]
    model: Option<model::nic::Card>,
    /// Who manages port pf0's VFs, or PORT's with a `pf1=` prefix: `embedded` (default: the
    /// emulator plays the host's PF driver, `ctl vf N ...` sets policy) or `guest` (the
    /// guest's igb on the PF socket, as with a QEMU that shows it SR-IOV; 82576 only).
    #[arg(long, value_name = "[PORT=]embedded|guest")]
    pf_driver: Vec<String>,
    /// The QEMU your guests run: with `--pf-driver guest` serve runs it once (about 50 ms) and
    /// refuses to start if it cannot show the guest the PF's VFs (stock QEMU cannot; the
    /// patched one of qemu/patches/ can).
    #[arg(long, value_name = "PATH")]
    qemu: Option<PathBuf>,
}

fn serve(args: ServeArgs) -> Result<(), CliError> {
    use sriov_emu::serve::{CommandLine, PortArg, ServeConfig, Serving};
    let ServeArgs {
        dir,
        ports,
        vfs,
        config,
        pcap,
        busy_poll_us,
        nap_poll_us,
        uplink,
        model,
        pf_driver,
        qemu,
    } = args;
    let cfg = match &config {
        Some(p) => ServeConfig::load(p)?,
        None => ServeConfig::default(),
    };
    let cli = CommandLine {
        ports,
        vfs: vfs
            .iter()
            .map(|a| PortArg::vfs(a))
            .collect::<Result<_, _>>()?,
        uplinks: uplink
            .iter()
            .map(|a| PortArg::uplink(a))
            .collect::<Result<_, _>>()?,
        busy_poll_us,
        nap_poll_us,
        model,
        pf_drivers: pf_driver
            .iter()
            .map(|a| PortArg::pf_driver(a))
            .collect::<Result<_, _>>()?,
        qemu,
    };
    sriov_emu::signals::install().map_err(CliError::Signals)?;
    let mut serving = Serving::start_with(&dir, &cfg, &cli)?;
    if let Some(p) = &pcap {
        serving.start_capture(p).map_err(|source| CliError::Pcap {
            path: p.clone(),
            source,
        })?;
    }
    print!("{}", serving.banner());
    if let Some(p) = &pcap {
        println!("  capturing every port to {}/pfK-<port>.pcap", p.display());
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    sriov_emu::signals::wait();
    eprintln!("sriov-emu: shutting down");
    serving.shutdown();
    Ok(())
}

fn ctl(dir: PathBuf, port: Option<scenarios::PfRef>, what: CtlCommand) -> Result<(), CliError> {
    use sriov_emu::control::{request, Request};
    let (req, json) = match what {
        CtlCommand::Vf { vf, words } => (
            Request::Vf {
                port: port.unwrap_or_default(),
                vf,
                words,
            },
            false,
        ),
        CtlCommand::Fault { words } => (
            Request::Fault {
                port: port.unwrap_or_default(),
                words,
            },
            false,
        ),
        CtlCommand::PromiscPolicy { policy } => (
            Request::PromiscPolicy {
                port: port.unwrap_or_default(),
                policy,
            },
            false,
        ),
        CtlCommand::Show { json } => (Request::Show { port }, json),
    };
    let reply = request(&dir, &req)?;
    if !reply.ok {
        return Err(CliError::Refused(
            reply.error.unwrap_or_else(|| "refused".into()),
        ));
    }
    if json {
        let v = reply.show.unwrap_or_default();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if let Some(t) = reply.text {
        print!("{t}");
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Scenario runs list each step's log lines in their reports: on standard error only errors,
    // unless asked (-v), so that a CI log holds the reports and nothing twice.
    let reports_logs = matches!(
        cli.command,
        Command::Scenario { .. } | Command::CheckDriver { .. }
    );
    init_tracing(cli.verbose, reports_logs);
    let result: Result<(), CliError> = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Ctl { dir, port, what } => ctl(dir, port, what),
        Command::Scenario {
            what:
                ScenarioCommand::Run {
                    paths,
                    json,
                    pcap,
                    html,
                    real_time,
                    guests,
                    model,
                    junit,
                    build,
                    progress,
                },
        } => {
            let time = if real_time {
                scenarios::TimeMode::RealTime
            } else {
                scenarios::TimeMode::Simulated
            };
            let args = sriov_emu::scenario_cmd::RunArgs {
                json,
                pcap_dir: pcap.as_deref(),
                html: html.as_deref(),
                junit: junit.as_deref(),
                time,
                guests,
                model,
                build: build.build(),
                progress: progress.sink(),
            };
            match sriov_emu::scenario_cmd::run_command(&paths, args, &mut std::io::stdout().lock())
            {
                Ok(true) => Ok(()),
                Ok(false) => Err(CliError::ScenariosFailed),
                Err(e) => Err(e.into()),
            }
        }
        Command::CheckDriver {
            paths,
            build,
            no_baseline,
            model,
            json,
            html,
            junit,
            progress,
        } => {
            let args = sriov_emu::check_driver::CheckArgs {
                paths,
                build: build.build(),
                baseline: !no_baseline,
                model,
                json: json.as_deref(),
                html: html.as_deref(),
                junit: junit.as_deref(),
                progress: progress.sink(),
            };
            match sriov_emu::check_driver::check_driver(args, &mut std::io::stdout().lock()) {
                Ok(true) => Ok(()),
                Ok(false) => Err(CliError::ScenariosFailed),
                Err(e) => Err(e.into()),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sriov-emu: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(verbose: u8, reports_logs: bool) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 if reports_logs => "error",
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(log_colour(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR"),
        ))
        .with_writer(std::io::stderr)
        .init();
}

/// Whether log lines carry colour codes: only on a terminal, and not when `NO_COLOR` is set to
/// anything non-empty (<https://no-color.org>). A log redirected to a file stays plain text.
fn log_colour(stderr_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::{log_colour, Cli, Command, ScenarioCommand};
    use clap::Parser as _;

    #[test]
    fn scenario_run_takes_an_html_file_besides_the_text_report() {
        let cli = Cli::try_parse_from([
            "sriov-emu",
            "scenario",
            "run",
            "scenarios/",
            "--html",
            "r.html",
        ])
        .unwrap();
        let Command::Scenario {
            what: ScenarioCommand::Run { html, json, .. },
        } = cli.command
        else {
            panic!("not scenario run: {cli:?}");
        };
        assert_eq!(html.as_deref(), Some(std::path::Path::new("r.html")));
        assert!(!json);
        assert!(Cli::try_parse_from(["sriov-emu", "scenario", "run", "s/", "--html"]).is_err());
    }

    #[test]
    fn check_driver_takes_the_users_build_and_the_ci_outputs() {
        let cli = Cli::try_parse_from([
            "sriov-emu",
            "check-driver",
            "--kernel",
            "bzImage",
            "--modules",
            "mods",
            "--module",
            "a.ko",
            "--module",
            "b.ko",
            "--guest-file",
            "n.txt=/etc/n",
            "--kernel-arg",
            "igbvf.debug=16",
            "--junit",
            "j.xml",
            "--no-baseline",
            "--quiet",
        ])
        .unwrap();
        let Command::CheckDriver {
            paths,
            build,
            no_baseline,
            junit,
            progress,
            ..
        } = cli.command
        else {
            panic!("not check-driver: {cli:?}");
        };
        assert!(paths.is_empty(), "the library by default");
        let build = build.build();
        assert_eq!(
            build.kernel.as_deref(),
            Some(std::path::Path::new("bzImage"))
        );
        assert_eq!(build.module_files.len(), 2);
        assert_eq!(build.files[0].guest, "/etc/n");
        assert_eq!(build.kernel_args, ["igbvf.debug=16"]);
        assert!(no_baseline && junit.is_some());
        assert!(progress.sink().is_none(), "--quiet");
        // A guest path must be absolute; --progress and --quiet exclude each other.
        assert!(Cli::try_parse_from(["sriov-emu", "check-driver", "--guest-file", "a=b"]).is_err());
        assert!(
            Cli::try_parse_from(["sriov-emu", "check-driver", "--progress", "--quiet"]).is_err()
        );
    }

    #[test]
    fn logs_are_coloured_only_on_a_terminal_without_no_color() {
        assert!(!log_colour(false, None), "a file or pipe gets no escapes");
        assert!(log_colour(true, None));
        assert!(!log_colour(true, Some("1".into())));
        assert!(
            log_colour(true, Some("".into())),
            "an empty NO_COLOR is unset"
        );
    }
}
