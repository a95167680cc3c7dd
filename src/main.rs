use clap::{Parser, Subcommand};

/// A full-system SR-IOV NIC emulator (Intel 82576: igb PF, igbvf VFs) served over vfio-user.
#[derive(Parser, Debug)]
#[command(name = "sriov-emu", version, about)]
struct Cli {
    /// More logging (-v: debug, -vv: trace). `RUST_LOG` overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {}

fn main() {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    match cli.command {}
}

fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
