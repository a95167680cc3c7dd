use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A full-system SR-IOV NIC emulator (Intel 82576: igb PF, igbvf VFs) served over vfio-user.
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
    /// Run one NIC in process (no QEMU): SR-IOV enable, every VF's mailbox bring-up, and the
    /// eswitch switching an ARP broadcast, a spoofed frame and a port VLAN.
    Demo {
        /// Number of VFs to enable (1..=7, as igb allows).
        #[arg(long, default_value_t = 4)]
        vfs: u16,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let result = match cli.command {
        Command::Demo { vfs } => sriov_emu::demo::run(vfs),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sriov-emu: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
