//! Bounded, replayable fuzzing of `serve` over its real sockets, and a soak of attach cycles.
//!
//! - The vfio-user fuzzer drives one VF with a stateful mix of well-formed and malformed
//!   messages: every command with random fields, fds of every kind (eventfd, memfd, pipe,
//!   socket, its own socket, regular file), DMA maps with and without fds and unmaps, rings
//!   programmed into mapped memory holding random descriptors, config writes (FLR included),
//!   resets, garbage headers and abrupt disconnects. After every step this VF (or, if it closed
//!   the connection, a new client of it) and a bystander VF must answer a config read within
//!   [`DEADLINE`].
//! - The control-socket fuzzer sends garbage, JSON of the wrong shape, `vf` requests of random
//!   words, partial lines and disconnects; after every step `ctl show` must answer.
//! - The soak runs [`SOAK_CYCLES`] attach/handshake/map/disconnect cycles (every third one
//!   abrupt, mid-message) and checks that fds and threads come back to where they were and RSS
//!   stays flat.
//!
//! The suite runs a fixed seed set. For a longer hunt: `SRIOV_FUZZ_SEEDS=1000..1100
//! SRIOV_FUZZ_STEPS=5000 cargo test -p sriov-emu-tests --release --test serve_fuzz` (a failure
//! names its seed and step; rerun that seed alone to replay it).

mod vfio_support;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use model::function::i82576::regs;
use sriov_emu::control::{control_socket, request, Request};
use sriov_emu::serve::{vf_socket, ServeConfig, Serving};
use sriov_emu::vfio::region;
use sriov_emu_tests::workspace_root;
use vfio_support::*;
use vmm_sys_util::sock_ctrl_msg::ScmSocket;

/// How long a config read may take, after any step, on the fuzzed VF and on the bystander.
const DEADLINE: Duration = Duration::from_secs(5);
const SOAK_CYCLES: usize = 1000;

/// The tests count the process's fds and threads: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serve_dir(tag: &str) -> PathBuf {
    workspace_root()
        .join("target/e2e/run")
        .join(format!("fuzz-{tag}-{}", std::process::id()))
}

/// splitmix64: small, fast, and the same sequence for a seed everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// A "boundary-ish" u32: small, large, aligned or random.
    fn u32(&mut self) -> u32 {
        match self.below(5) {
            0 => self.below(8) as u32,
            1 => u32::MAX - self.below(8) as u32,
            2 => (self.below(64) as u32) << 12,
            _ => self.next() as u32,
        }
    }
    fn u64(&mut self) -> u64 {
        match self.below(5) {
            0 => self.below(8),
            1 => u64::MAX - self.below(0x2000),
            2 => self.below(1 << 20) << 12,
            _ => self.next(),
        }
    }
}

/// `SRIOV_FUZZ_SEEDS` (`A..B` or `A,B,C`), or `default`.
fn seeds(default: &[u64]) -> Vec<u64> {
    match std::env::var("SRIOV_FUZZ_SEEDS") {
        Ok(s) => match s.split_once("..") {
            Some((a, b)) => (a.parse().unwrap()..b.parse().unwrap()).collect(),
            None => s.split(',').map(|x| x.trim().parse().unwrap()).collect(),
        },
        Err(_) => default.to_vec(),
    }
}

fn steps(default: usize) -> usize {
    std::env::var("SRIOV_FUZZ_STEPS").map_or(default, |s| s.parse().unwrap())
}

/// The fds a fuzzed message may carry, one of each kind.
struct FdKinds {
    eventfd: OwnedFd,
    memfd: OwnedFd,
    pipe: (OwnedFd, OwnedFd),
    socket: (UnixStream, UnixStream),
    file: std::fs::File,
}

impl FdKinds {
    fn new() -> FdKinds {
        let mut p = [0; 2];
        // SAFETY: pipe into a local array; the fds are ours from here on.
        let pipe = unsafe {
            assert_eq!(libc::pipe(p.as_mut_ptr()), 0);
            (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1]))
        };
        // SAFETY: eventfd with no flags; the fd is ours.
        let eventfd = unsafe { OwnedFd::from_raw_fd(libc::eventfd(0, libc::EFD_NONBLOCK)) };
        FdKinds {
            eventfd,
            memfd: memfd(1 << 20),
            pipe,
            socket: UnixStream::pair().unwrap(),
            file: std::fs::File::open("/proc/self/exe").unwrap(),
        }
    }

    fn pick(&self, rng: &mut Rng, own: RawFd) -> RawFd {
        match rng.below(7) {
            0 | 1 => self.eventfd.as_raw_fd(),
            2 => self.memfd.as_raw_fd(),
            3 => self.pipe.0.as_raw_fd(),
            4 => self.socket.0.as_raw_fd(),
            5 => own,
            _ => self.file.as_raw_fd(),
        }
    }
}

/// One connection as the fuzzer uses it: sends may fail, replies are skipped until the probe's.
struct Conn {
    stream: UnixStream,
    id: u16,
}

impl Conn {
    fn open(path: &Path) -> Conn {
        let stream = UnixStream::connect(path).expect("connect");
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        stream.set_write_timeout(Some(DEADLINE)).unwrap();
        let mut c = Conn { stream, id: 0 };
        let v = P::default()
            .u16(0)
            .u16(0)
            .bytes(QEMU_VERSION_JSON.as_bytes())
            .bytes(&[0])
            .0;
        c.send(CMD_VERSION, 0, &v, &[]);
        c
    }

    fn next_id(&mut self) -> u16 {
        self.id = self.id.wrapping_add(1);
        self.id
    }

    /// Sends a command; false if the server has closed the connection.
    fn send(&mut self, command: u16, flags: u32, payload: &[u8], fds: &[RawFd]) -> bool {
        let id = self.next_id();
        self.send_bytes(&message(id, command, flags, payload), fds)
    }

    fn send_bytes(&mut self, bytes: &[u8], fds: &[RawFd]) -> bool {
        if fds.is_empty() {
            self.stream.write_all(bytes).is_ok()
        } else {
            matches!(self.stream.send_with_fds(&[bytes], fds), Ok(n) if n == bytes.len())
        }
    }

    /// A config read with a fresh id, and the messages up to its reply. `Ok(false)`: the server
    /// closed the connection; `Err`: nothing within the deadline.
    fn probe(&mut self) -> Result<bool, String> {
        let id = self.next_id();
        let p = P::default().u64(0).u32(region::CONFIG).u32(4).0;
        if !self.send_bytes(&message(id, CMD_REGION_READ, 0, &p), &[]) {
            return Ok(false);
        }
        let start = Instant::now();
        loop {
            let mut h = [0u8; 16];
            match self.stream.read_exact(&mut h) {
                Ok(()) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(format!("no reply within {:?}", start.elapsed()))
                }
                Err(_) => return Ok(false),
            }
            let size = u32::from_ne_bytes(h[4..8].try_into().unwrap()) as usize;
            if !(16..=(2 << 20)).contains(&size) {
                return Err(format!("the server sent a message of size {size}"));
            }
            let mut rest = vec![0u8; size - 16];
            if self.stream.read_exact(&mut rest).is_err() {
                return Ok(false);
            }
            let (rid, cmd, flags) = (
                u16::from_ne_bytes(h[0..2].try_into().unwrap()),
                u16::from_ne_bytes(h[2..4].try_into().unwrap()),
                u32::from_ne_bytes(h[8..12].try_into().unwrap()),
            );
            if flags & 0xf == F_REPLY && rid == id && cmd == CMD_REGION_READ {
                return if flags & F_ERROR == 0 {
                    Ok(true)
                } else {
                    Err("the config read was refused".into())
                };
            }
            if start.elapsed() > DEADLINE {
                return Err("no reply to the probe among the messages".into());
            }
        }
    }
}

/// One fuzz step on `c`: a message (or a disconnect). Returns false if the connection is to be
/// dropped by us (abrupt disconnect).
fn fuzz_step(rng: &mut Rng, c: &mut Conn, fds: &FdKinds) -> bool {
    let own = c.stream.as_raw_fd();
    let flags = if rng.chance(20) { F_NO_REPLY } else { 0 };
    let fd_list = |rng: &mut Rng, n: u64| -> Vec<RawFd> {
        (0..rng.below(n + 1)).map(|_| fds.pick(rng, own)).collect()
    };
    match rng.below(14) {
        // Any command number, random fields.
        0 => {
            let cmd = rng.below(18) as u16;
            let n = rng.below(72) as usize;
            let p = rng.bytes(n);
            let f = fd_list(rng, 2);
            c.send(cmd, flags, &p, &f);
        }
        // DMA_MAP with the memfd (or another fd), or without.
        1 | 2 => {
            let iova = rng.below(64) << 12;
            let size = match rng.below(4) {
                0 => rng.u64(),
                _ => (1 + rng.below(32)) << 12,
            };
            let offset = if rng.chance(80) {
                rng.below(256) << 12
            } else {
                rng.u64()
            };
            let p = P::default()
                .u32(32)
                .u32(rng.below(4) as u32)
                .u64(offset)
                .u64(iova)
                .u64(size)
                .0;
            let f: Vec<RawFd> = match rng.below(3) {
                0 => vec![],
                1 => vec![fds.memfd.as_raw_fd()],
                _ => fd_list(rng, 2),
            };
            c.send(CMD_DMA_MAP, flags, &p, &f);
        }
        3 => {
            let all = rng.chance(20);
            let p = P::default()
                .u32(32)
                .u32(if all { 2 } else { rng.below(8) as u32 & !2 })
                .u64(rng.below(64) << 12)
                .u64(if rng.chance(80) {
                    rng.below(64) << 12
                } else {
                    rng.u64()
                })
                .0;
            c.send(CMD_DMA_UNMAP, flags, &p, &[]);
        }
        // SET_IRQS: mostly well-shaped (an fd per vector), with fds of every kind.
        4 => {
            let f = fd_list(rng, 3);
            let (data, action) = if rng.chance(60) {
                (4, 32)
            } else {
                (
                    [1u32, 2, 4][rng.below(3) as usize],
                    [8u32, 16, 32][rng.below(3) as usize],
                )
            };
            let index = [0u32, 1, 2, 2, 2, 3, 4, 5][rng.below(8) as usize];
            let start = if rng.chance(80) {
                0
            } else {
                rng.below(4) as u32
            };
            let count = match rng.below(10) {
                0 => rng.u32(),
                1 => rng.below(4) as u32,
                _ => f.len() as u32,
            };
            let p = P::default()
                .u32(20)
                .u32(if rng.chance(95) {
                    data | action
                } else {
                    rng.u32()
                })
                .u32(index)
                .u32(start)
                .u32(count)
                .0;
            c.send(CMD_SET_IRQS, flags, &p, &f);
        }
        // Register writes anywhere in BAR0/BAR3, posted as QEMU posts them.
        5 | 6 => {
            let bar = if rng.chance(80) { 0 } else { 3 };
            let offset = rng.below(0x4000) & !3;
            let v = rng.u32();
            let p = P::default().u64(offset).u32(bar).u32(4).u32(v).0;
            c.send(CMD_REGION_WRITE, F_NO_REPLY, &p, &[]);
        }
        7 => {
            let p = P::default()
                .u64(rng.u64() % 0x5000)
                .u32(rng.below(10) as u32)
                .u32(rng.u32() % 0x2000)
                .0;
            c.send(CMD_REGION_READ, flags, &p, &[]);
        }
        // A ring in mapped memory full of random descriptors, and its tail moved.
        8 => {
            let ram = &fds.memfd;
            let junk = rng.bytes(4096);
            let at = (rng.below(256) << 12) as i64;
            // SAFETY: pwrite of a local buffer into our memfd.
            unsafe { libc::pwrite(ram.as_raw_fd(), junk.as_ptr().cast(), junk.len(), at) };
            let base = if rng.chance(50) {
                regs::RX_BASE
            } else {
                regs::TX_BASE
            } + rng.below(2) * regs::QUEUE_STRIDE;
            let iova = rng.below(64) << 12;
            for (reg, v) in [
                (regs::q::DBAL, iova as u32),
                (regs::q::DBAH, 0),
                (regs::q::DLEN, ((1 + rng.below(16)) << 7) as u32),
                (regs::q::DCTL, 1 << 25),
                (regs::q::DT, rng.below(64) as u32),
            ] {
                let p = P::default().u64(base + reg).u32(0).u32(4).u32(v).0;
                c.send(CMD_REGION_WRITE, F_NO_REPLY, &p, &[]);
            }
        }
        // Config writes: command register, MSI-X control, device control (FLR), anywhere.
        9 => {
            let offset = match rng.below(4) {
                0 => 0x04,
                1 => 0x72,
                2 => 0xA8,
                _ => rng.below(0x1000),
            };
            let len = [1usize, 2, 4][rng.below(3) as usize];
            let data = if offset == 0xA8 && rng.chance(50) {
                vec![0, 0x80][..len.min(2)].to_vec()
            } else {
                rng.bytes(len)
            };
            let p = P::default()
                .u64(offset)
                .u32(region::CONFIG)
                .u32(data.len() as u32)
                .bytes(&data)
                .0;
            c.send(CMD_REGION_WRITE, flags, &p, &[]);
        }
        10 => {
            c.send(CMD_DEVICE_RESET, flags, &[], &[]);
        }
        // A header of random bytes (may break the framing: the server closes the connection).
        11 => {
            let mut m = rng.bytes(16);
            if rng.chance(70) {
                let size = 16 + rng.below(64) as u32;
                m[4..8].copy_from_slice(&size.to_ne_bytes());
                m.extend(rng.bytes(size as usize - 16));
            }
            let f = fd_list(rng, 1);
            c.send_bytes(&m, &f);
        }
        // Go away, possibly mid-message.
        12 => {
            if rng.chance(50) {
                let m = message(1, CMD_REGION_READ, 0, &[0; 16]);
                let cut = rng.below(m.len() as u64) as usize;
                c.send_bytes(&m[..cut], &[]);
            }
            return false;
        }
        _ => {
            c.send(CMD_DEVICE_GET_INFO, flags, &P::default().u32(16).0, &[]);
        }
    }
    true
}

#[test]
fn fuzzed_vfio_user_clients_never_stop_their_vf_or_a_bystander_answering() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = serve_dir("vfio");
    let serving = Serving::start(&dir, &ServeConfig::default(), Some(2)).expect("serve");
    let (target, bystander_path) = (vf_socket(&dir, 0), vf_socket(&dir, 1));
    let mut bystander = Conn::open(&bystander_path);
    let fds = FdKinds::new();
    let n = steps(500);
    let mut closes = 0;
    for seed in seeds(&[1, 2, 3, 4, 5, 6, 7, 8]) {
        let mut rng = Rng(seed);
        let mut c = Conn::open(&target);
        for step in 0..n {
            let keep = fuzz_step(&mut rng, &mut c, &fds);
            let at = format!("seed {seed} step {step}");
            let alive = keep && c.probe().unwrap_or_else(|e| panic!("VF 0 after {at}: {e}"));
            if !alive {
                closes += 1;
                drop(c);
                c = Conn::open(&target);
                assert!(
                    c.probe()
                        .unwrap_or_else(|e| panic!("a new client of VF 0 after {at}: {e}")),
                    "a new client of VF 0 after {at} was closed"
                );
            }
            assert!(
                bystander
                    .probe()
                    .unwrap_or_else(|e| panic!("the bystander VF 1 after {at}: {e}")),
                "the bystander's connection was closed after {at}"
            );
        }
    }
    let stats = serving.server_stats();
    eprintln!(
        "fuzz: {closes} connections ended, VF 0 server: {:?}",
        stats[0]
    );
    assert!(closes > 0, "the fuzzer never broke a connection: too tame");
    assert_eq!(stats[0].panics, 0);
    assert_eq!(
        stats[1].protocol_closes, 0,
        "the bystander was never cut off"
    );
    serving.shutdown();
}

#[test]
fn a_fuzzed_control_socket_keeps_answering_ctl() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = serve_dir("ctl");
    let serving = Serving::start(&dir, &ServeConfig::default(), Some(2)).expect("serve");
    let path = control_socket(&dir);
    const WORDS: &[&str] = &[
        "mac",
        "vlan",
        "qos",
        "proto",
        "802.1Q",
        "802.1ad",
        "spoofchk",
        "trust",
        "state",
        "rate",
        "max_tx_rate",
        "min_tx_rate",
        "on",
        "off",
        "auto",
        "enable",
        "disable",
        "0",
        "1",
        "4095",
        "4096",
        "-1",
        "99999999999",
        "02:00:00:00:00:10",
        "ff:ff:ff:ff:ff:ff",
        "",
        "\u{0}",
        "ünïcode",
    ];
    let n = steps(300);
    for seed in seeds(&[11, 12]) {
        let mut rng = Rng(seed);
        for step in 0..n {
            let mut s = UnixStream::connect(&path).expect("connect");
            s.set_write_timeout(Some(DEADLINE)).unwrap();
            let line = match rng.below(5) {
                0 => {
                    let n = rng.below(200) as usize;
                    rng.bytes(n)
                }
                1 => {
                    let words: Vec<&str> = (0..rng.below(7))
                        .map(|_| WORDS[rng.below(WORDS.len() as u64) as usize])
                        .collect();
                    let port = ["pf0", "pf1", "pf9", "x"][rng.below(4) as usize];
                    serde_json::json!({
                        "cmd": "vf",
                        "port": port,
                        "vf": rng.below(5),
                        "words": words,
                    })
                    .to_string()
                    .into_bytes()
                }
                2 => {
                    let cmd = ["show", "vf", "nope", ""][rng.below(4) as usize];
                    let (port, vf, words) = (rng.u32(), rng.u64(), rng.u32());
                    serde_json::json!({"cmd": cmd, "port": port, "vf": vf, "words": words})
                        .to_string()
                        .into_bytes()
                }
                3 => br#"{"cmd":"show"}"#.to_vec(),
                _ => vec![b'{'; rng.below(70_000) as usize],
            };
            let _ = s.write_all(&line);
            if rng.chance(70) {
                let _ = s.write_all(b"\n");
            }
            // Half the clients leave at once; the others leave after their reply or deadline.
            drop(s);
            let at = format!("seed {seed} step {step}");
            let r = request(&dir, &Request::Show { port: None })
                .unwrap_or_else(|e| panic!("ctl show after {at}: {e}"));
            assert!(r.ok, "ctl show after {at}: {r:?}");
        }
    }
    serving.shutdown();
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn settle(what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < until, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_thousand_attach_cycles_leave_fds_threads_and_rss_flat() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = serve_dir("soak");
    let serving = Serving::start(&dir, &ServeConfig::default(), Some(2)).expect("serve");
    let path = vf_socket(&dir, 0);
    let ram = memfd(1 << 20);
    // SAFETY: eventfd with no flags; the fd is ours.
    let efd = unsafe { OwnedFd::from_raw_fd(libc::eventfd(0, libc::EFD_NONBLOCK)) };
    let cycle = |i: usize| {
        let mut c = RawClient::negotiated(&path);
        let info = c.call(CMD_DEVICE_GET_INFO, &P::default().u32(16).0, &[]);
        assert!(!info.is_error(), "cycle {i}: {info:?}");
        let map = dma_map_payload(0, 1 << 20, 0, true);
        assert!(!c.call(CMD_DMA_MAP, &map, &[ram.as_raw_fd()]).is_error());
        let irq = P::default().u32(20).u32(0x24).u32(2).u32(0).u32(1).0;
        assert!(!c.call(CMD_SET_IRQS, &irq, &[efd.as_raw_fd()]).is_error());
        assert_ne!(c.read_u32(region::CONFIG, 0), 0);
        match i % 3 {
            // Abrupt: half a message, then gone.
            0 => c.send_raw(&message(1, CMD_REGION_READ, 0, &[0; 16])[..20]),
            1 => {
                let _ = c.stream.shutdown(std::net::Shutdown::Both);
            }
            _ => {}
        }
    };
    // Warm up (lazily made buffers, thread-locals), then measure.
    for i in 0..30 {
        cycle(i);
    }
    let idle = || serving.server_stats()[0].held == sriov_emu::vfio::Held::default();
    settle("warm-up clients gone", idle);
    let (fds0, threads0, rss0) = (open_fds(), threads(), rss_kib());
    for i in 0..SOAK_CYCLES {
        cycle(i);
    }
    settle("soak clients gone", idle);
    settle("threads back", || threads() <= threads0);
    settle("fds back", || open_fds() <= fds0);
    let rss = rss_kib();
    assert!(
        rss <= rss0 + 8 * 1024,
        "RSS grew from {rss0} KiB to {rss} KiB over {SOAK_CYCLES} cycles"
    );
    let s = serving.server_stats()[0];
    assert_eq!(s.connections as usize, 30 + SOAK_CYCLES);
    assert_eq!(s.panics, 0);
    serving.shutdown();
}
