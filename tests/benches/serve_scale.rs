//! What `serve` costs as VFs are added: resident memory and threads of a `serve` process with
//! 1, 64 and 256 VFs, idle and with a vfio-user client attached to every VF (the `vfio_user`
//! crate's client: VERSION negotiated, a config-space read answered). A VF with no client
//! costs a listening socket and its state; each attached client costs a connection thread and
//! its DMA writer.
//!
//! It also times a register read's round trip (client to `serve` and back), the cost every MMIO
//! read of a guest's driver pays.
//!
//! `cargo bench -p sriov-emu-tests --bench serve_scale`. The `serve` measured is this binary
//! re-run as a child (`SERVE_SCALE_CHILD=<vfs>`), so the figures are `serve`'s own.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sriov_emu::serve::{vf_socket, ServeConfig, Serving};
use sriov_emu::vfio::region;

const CHILD: &str = "SERVE_SCALE_CHILD";
const COUNTS: [u16; 3] = [1, 64, 256];

/// The child: serve `vfs` VFs in `dir` (busy polling `SERVE_SCALE_BUSY_POLL_US` if set), say
/// "ready", exit when stdin closes.
fn child(vfs: u16, dir: &Path) {
    let config = ServeConfig {
        busy_poll_us: std::env::var("SERVE_SCALE_BUSY_POLL_US")
            .ok()
            .and_then(|v| v.parse().ok()),
        ..ServeConfig::default()
    };
    let serving = Serving::start(dir, &config, Some(vfs)).expect("serve");
    println!("ready");
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    serving.shutdown();
}

/// VmRSS (KiB) and Threads of `pid`.
fn rss_and_threads(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("Threads:"))
}

fn start(vfs: u16, dir: &Path) -> Child {
    start_with(vfs, dir, None)
}

fn start_with(vfs: u16, dir: &Path, busy_poll_us: Option<u32>) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    if let Some(us) = busy_poll_us {
        cmd.env("SERVE_SCALE_BUSY_POLL_US", us.to_string());
    }
    let mut c = cmd
        .env(CHILD, vfs.to_string())
        .env("SERVE_SCALE_DIR", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("child serve");
    let mut ready = String::new();
    BufReader::new(c.stdout.as_mut().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "ready");
    c
}

/// Waits until `f` holds (the figures settle once every connection thread is up).
fn settle(mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !f() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn main() {
    if let Ok(n) = std::env::var(CHILD) {
        let dir = PathBuf::from(std::env::var("SERVE_SCALE_DIR").unwrap());
        child(n.parse().unwrap(), &dir);
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let base = std::env::temp_dir().join(format!("sriov-emu-scale-{}", std::process::id()));
    println!("serve_scale: a `serve` process with N VFs (VmRSS and threads)");
    println!(
        "{:>5}  {:>12} {:>8}  {:>16} {:>8}  {:>12}",
        "VFs", "idle RSS", "threads", "all-attached RSS", "threads", "per client"
    );
    for &n in &COUNTS {
        let dir = base.join(n.to_string());
        let mut c = start(n, &dir);
        let pid = c.id();
        std::thread::sleep(Duration::from_millis(200));
        let (idle_rss, idle_threads) = rss_and_threads(pid);
        let mut clients = Vec::with_capacity(usize::from(n));
        for vf in 0..n {
            let mut client = vfio_user::Client::new(&vf_socket(&dir, vf)).expect("client");
            let mut id = [0u8; 4];
            client
                .region_read(region::CONFIG, 0, &mut id)
                .expect("config read");
            assert_eq!(&id[..2], &[0x86, 0x80], "VF {vf}: Intel's vendor id");
            clients.push(client);
        }
        let want = idle_threads + 2 * u64::from(n);
        settle(|| rss_and_threads(pid).1 >= want);
        let (rss, threads) = rss_and_threads(pid);
        println!(
            "{:>5}  {:>8.1} MiB {:>8}  {:>12.1} MiB {:>8}  {:>6.1} KiB, {:.1} threads",
            n,
            idle_rss as f64 / 1024.0,
            idle_threads,
            rss as f64 / 1024.0,
            threads,
            (rss.saturating_sub(idle_rss)) as f64 / f64::from(n),
            (threads - idle_threads) as f64 / f64::from(n),
        );
        drop(clients);
        drop(c.stdin.take());
        let _ = c.wait();
        let _ = std::fs::remove_dir_all(&dir);
    }
    read_round_trips(&base);
    let _ = std::fs::remove_dir_all(&base);
}

/// What one register read costs the client: a guest's MMIO read of a vfio-user BAR is a
/// REGION_READ the vCPU waits for (QEMU's own igb answers it in process). Timed here with the
/// `vfio_user` client reading VF 0's STATUS, with `serve`'s default busy polling and with none.
fn read_round_trips(base: &Path) {
    const READS: u32 = 20_000;
    const STATUS: u64 = 0x8;
    println!("register read round trip (REGION_READ of BAR0 STATUS, {READS} reads):");
    for busy_poll in [None, Some(0)] {
        let dir = base.join("reads");
        let mut c = start_with(1, &dir, busy_poll);
        let mut client = vfio_user::Client::new(&vf_socket(&dir, 0)).expect("client");
        let mut v = [0u8; 4];
        let t = Instant::now();
        for _ in 0..READS {
            client.region_read(0, STATUS, &mut v).expect("STATUS read");
        }
        let per = t.elapsed().as_secs_f64() * 1e6 / f64::from(READS);
        let label = busy_poll.map_or("default busy polling".to_string(), |us| {
            format!("busy polling {us} us")
        });
        println!("  {label:<22} {per:>6.1} us per read");
        drop(client);
        drop(c.stdin.take());
        let _ = c.wait();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
