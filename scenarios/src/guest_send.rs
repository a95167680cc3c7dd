//! `sriov-emu-guest-send`, the helper the guest mode ships into each QEMU guest (this crate's
//! binary of that name, packed into the guest's initramfs at [`GUEST_PATH`]): what a `send` or
//! `traffic` step does from an endpoint that is a guest.
//!
//! - `frames`: crafted frames ([`crafted_frame`], the very frames the in-process `send` step
//!   builds) written to the interface through an `AF_PACKET` socket: any destination, a spoofed
//!   source, a VLAN tag, an ethertype, a size, a count.
//! - `udp`: UDP datagrams through the guest's own IP stack to the traffic port, paced at an
//!   offered rate for a while (the in-process generator's pacing: one frame per gap, no catching
//!   up).
//! - `meter`: counts the UDP datagrams that reach the traffic port, in frame + FCS bits, as the
//!   in-process meter does.
//! - `capture`: what the interface receives (an `AF_PACKET` socket, the guest's own frames left
//!   out), until stopped (SIGTERM or SIGINT), `count` frames or `ms`; it says `listening` once
//!   the socket is bound, then prints each kind of frame it got (source, destination,
//!   ethertype, VLAN tag in the frame or stripped by igbvf) with its count
//!   ([`crate::received::Tally::lines`]). The guest mode starts it in the background at a
//!   step's start and collects it after the step (`expect.guest_captured`).
//!
//! Arguments are `key=value` words after the mode ([`Command::to_args`] writes them,
//! [`Command::parse`] reads them); the helper prints one line of `key=value` results
//! ([`parse_results`]) and exits 0, or says what went wrong on standard error and exits 1.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use eswitch::wire::ethernet::{FCS_LEN, HEADER_LEN, MIN_FRAME_LEN, VLAN_TAG_LEN};
use eswitch::{MacAddr, VlanTci};
use pnet_packet::ethernet::EtherType;

/// The helper's file name, next to `sriov-emu` after a `cargo build`.
pub const HELPER: &str = "sriov-emu-guest-send";
/// Where it is in a guest.
pub const GUEST_PATH: &str = "/usr/bin/sriov-emu-guest-send";
/// Names the helper to use instead of looking next to the running program.
pub const HELPER_ENV: &str = "SRIOV_EMU_GUEST_SEND";
/// Ethertype of crafted frames unless a step names one: IEEE 802 local experimental 1.
pub const LOCAL_EXPERIMENTAL: u16 = 0x88b5;
/// Default crafted-frame length (without FCS): the Ethernet minimum.
pub const DEFAULT_FRAME_LEN: usize = MIN_FRAME_LEN;
/// IPv4 and UDP headers.
const IP_UDP_HEADERS: usize = 20 + 8;
/// How long the meter waits for the first datagram beyond the measured time, and how long it
/// keeps counting once datagrams stop coming.
const METER_GRACE: Duration = Duration::from_millis(1500);
const METER_IDLE: Duration = Duration::from_millis(400);

/// What to send: the keys of the `send` step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameSpec {
    pub dst: MacAddr,
    /// The sender's own MAC unless spoofed.
    pub src: Option<MacAddr>,
    pub vlan: Option<u16>,
    pub pcp: Option<u8>,
    pub ethertype: Option<u16>,
    /// Without FCS; default [`DEFAULT_FRAME_LEN`].
    pub size: Option<usize>,
    pub count: u32,
}

/// The frame a `send` step sends, from `own` unless its source is spoofed.
pub fn crafted_frame(spec: &FrameSpec, own: MacAddr) -> Bytes {
    let src = spec.src.unwrap_or(own);
    let tag = spec.vlan.map(|v| VlanTci::new(v, spec.pcp.unwrap_or(0)));
    let header = HEADER_LEN + tag.map_or(0, |_| VLAN_TAG_LEN);
    let payload = vec![
        0u8;
        spec.size
            .unwrap_or(DEFAULT_FRAME_LEN)
            .saturating_sub(header)
    ];
    let ethertype = EtherType(spec.ethertype.unwrap_or(LOCAL_EXPERIMENTAL));
    eswitch::build_frame(spec.dst, src, tag, ethertype, &payload)
}

/// UDP to `to`'s `port`, frames of `size` bytes (without FCS), at `mbps` on the wire (FCS
/// included), for `ms`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpSpec {
    pub to: Ipv4Addr,
    pub port: u16,
    pub size: usize,
    pub mbps: u32,
    pub ms: u64,
}

/// One run of the helper.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Crafted frames on `dev`.
    Frames { dev: String, spec: FrameSpec },
    /// Paced UDP.
    Udp(UdpSpec),
    /// Counts UDP at `port` for `ms` (and a grace period).
    Meter { port: u16, ms: u64 },
    /// What `dev` receives, until stopped, `count` frames or `ms`.
    Capture {
        dev: String,
        ms: u64,
        count: Option<u64>,
    },
}

impl Command {
    /// The helper's arguments for this command.
    pub fn to_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut kv = |k: &str, v: String| out.push(format!("{k}={v}"));
        match self {
            Command::Frames { dev, spec } => {
                kv("dev", dev.clone());
                kv("dst", spec.dst.to_string());
                if let Some(s) = spec.src {
                    kv("src", s.to_string());
                }
                if let Some(v) = spec.vlan {
                    kv("vlan", v.to_string());
                }
                if let Some(p) = spec.pcp {
                    kv("pcp", p.to_string());
                }
                if let Some(e) = spec.ethertype {
                    kv("ethertype", format!("{e:#06x}"));
                }
                if let Some(s) = spec.size {
                    kv("size", s.to_string());
                }
                kv("count", spec.count.to_string());
                out.insert(0, "frames".into());
            }
            Command::Udp(u) => {
                kv("to", u.to.to_string());
                kv("port", u.port.to_string());
                kv("size", u.size.to_string());
                kv("mbps", u.mbps.to_string());
                kv("ms", u.ms.to_string());
                out.insert(0, "udp".into());
            }
            Command::Meter { port, ms } => {
                kv("port", port.to_string());
                kv("ms", ms.to_string());
                out.insert(0, "meter".into());
            }
            Command::Capture { dev, ms, count } => {
                kv("dev", dev.clone());
                kv("ms", ms.to_string());
                if let Some(n) = count {
                    kv("count", n.to_string());
                }
                out.insert(0, "capture".into());
            }
        }
        out
    }

    /// A shell command line running the helper at [`GUEST_PATH`] with these arguments.
    pub fn command_line(&self) -> String {
        let mut s = GUEST_PATH.to_string();
        for a in self.to_args() {
            s.push(' ');
            s.push_str(&a);
        }
        s
    }

    /// Reads the helper's arguments (without the program name).
    pub fn parse(args: &[String]) -> Result<Command, String> {
        let (mode, rest) = args
            .split_first()
            .ok_or("usage: sriov-emu-guest-send frames|udp|meter|capture key=value...")?;
        let mut kv: BTreeMap<&str, &str> = BTreeMap::new();
        for a in rest {
            let (k, v) = a
                .split_once('=')
                .ok_or_else(|| format!("`{a}`: expected key=value"))?;
            kv.insert(k, v);
        }
        let known: &[&str] = match mode.as_str() {
            "frames" => &[
                "dev",
                "dst",
                "src",
                "vlan",
                "pcp",
                "ethertype",
                "size",
                "count",
            ],
            "udp" => &["to", "port", "size", "mbps", "ms"],
            "meter" => &["port", "ms"],
            "capture" => &["dev", "ms", "count"],
            other => {
                return Err(format!(
                    "unknown mode `{other}` (frames, udp, meter, capture)"
                ))
            }
        };
        if let Some(k) = kv.keys().find(|k| !known.contains(k)) {
            return Err(format!("{mode}: unknown key `{k}` ({})", known.join(", ")));
        }
        fn val<T: std::str::FromStr>(
            kv: &BTreeMap<&str, &str>,
            key: &str,
        ) -> Result<Option<T>, String>
        where
            T::Err: std::fmt::Display,
        {
            kv.get(key)
                .map(|v| v.parse::<T>().map_err(|e| format!("{key}=`{v}`: {e}")))
                .transpose()
        }
        let need = |key: &str| format!("{mode}: `{key}` is required");
        Ok(match mode.as_str() {
            "frames" => {
                let ethertype = match kv.get("ethertype") {
                    None => None,
                    Some(v) => {
                        let hex = v.strip_prefix("0x").unwrap_or(v);
                        Some(
                            u16::from_str_radix(hex, 16)
                                .map_err(|e| format!("ethertype=`{v}`: {e}"))?,
                        )
                    }
                };
                let vlan: Option<u16> = val(&kv, "vlan")?;
                if vlan.is_some_and(|v| v > 4095) {
                    return Err("vlan: at most 4095".into());
                }
                let pcp: Option<u8> = val(&kv, "pcp")?;
                if pcp.is_some_and(|p| p > 7) {
                    return Err("pcp: at most 7".into());
                }
                Command::Frames {
                    dev: val(&kv, "dev")?.unwrap_or_else(|| "eth0".to_string()),
                    spec: FrameSpec {
                        dst: val(&kv, "dst")?.ok_or_else(|| need("dst"))?,
                        src: val(&kv, "src")?,
                        vlan,
                        pcp,
                        ethertype,
                        size: val(&kv, "size")?,
                        count: val(&kv, "count")?.unwrap_or(1),
                    },
                }
            }
            "udp" => Command::Udp(UdpSpec {
                to: val(&kv, "to")?.ok_or_else(|| need("to"))?,
                port: val(&kv, "port")?.unwrap_or(crate::stack::TRAFFIC_PORT),
                size: val(&kv, "size")?.unwrap_or(1514),
                mbps: val::<u32>(&kv, "mbps")?.ok_or_else(|| need("mbps"))?.max(1),
                ms: val(&kv, "ms")?.ok_or_else(|| need("ms"))?,
            }),
            "capture" => Command::Capture {
                dev: val(&kv, "dev")?.unwrap_or_else(|| "eth0".to_string()),
                ms: val(&kv, "ms")?.ok_or_else(|| need("ms"))?,
                count: val(&kv, "count")?,
            },
            _ => Command::Meter {
                port: val(&kv, "port")?.unwrap_or(crate::stack::TRAFFIC_PORT),
                ms: val(&kv, "ms")?.ok_or_else(|| need("ms"))?,
            },
        })
    }

    /// Carries the command out; the result line on success.
    pub fn run(&self) -> Result<String, String> {
        match self {
            Command::Frames { dev, spec } => send_frames(dev, spec),
            Command::Udp(u) => send_udp(u),
            Command::Meter { port, ms } => meter(*port, *ms),
            Command::Capture { dev, ms, count } => capture(dev, *ms, *count),
        }
    }
}

pub use crate::received::parse_results;

/// The helper on this host: [`HELPER_ENV`], else next to the running program (or one directory
/// up, where `cargo build` puts binaries for the test programs of `target/*/deps`).
pub fn locate() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os(HELPER_ENV) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("{HELPER_ENV}={} is not a file", p.display()))
        };
    }
    let exe = std::env::current_exe().map_err(|e| format!("the running program: {e}"))?;
    let mut looked = Vec::new();
    for dir in exe
        .parent()
        .into_iter()
        .chain(exe.parent().and_then(Path::parent))
    {
        let p = dir.join(HELPER);
        if p.is_file() {
            return Ok(p);
        }
        looked.push(dir.display().to_string());
    }
    Err(format!(
        "the guest helper {HELPER} is not built (looked in {}): build it with \
         `cargo build -p scenarios --bin {HELPER}` (add --release for a release sriov-emu), \
         or name it in {HELPER_ENV}",
        looked.join(", ")
    ))
}

fn os_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn read_sys(dev: &str, what: &str) -> Result<String, String> {
    let path = format!("/sys/class/net/{dev}/{what}");
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("{path}: {e}"))
}

/// The interface index of `dev`.
fn ifindex(dev: &str) -> Result<u32, String> {
    let name = std::ffi::CString::new(dev).map_err(|_| format!("`{dev}`: not an interface"))?;
    // SAFETY: a NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(os_err(&format!("interface {dev}")));
    }
    Ok(ifindex)
}

fn send_frames(dev: &str, spec: &FrameSpec) -> Result<String, String> {
    let own: MacAddr = read_sys(dev, "address")?
        .parse()
        .map_err(|e| format!("{dev}'s address: {e}"))?;
    let frame = crafted_frame(spec, own);
    let ifindex = ifindex(dev)?;
    // Protocol 0: this socket sends and receives nothing.
    // SAFETY: plain socket creation.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    if fd < 0 {
        return Err(os_err("AF_PACKET socket"));
    }
    // SAFETY: an all-zero sockaddr_ll is valid; the fields are set below.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_ifindex = ifindex as i32;
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(&spec.dst.0);
    let mut sent = 0u32;
    let mut error = None;
    for _ in 0..spec.count {
        // SAFETY: `frame` and `addr` outlive the call; their lengths are passed.
        let n = unsafe {
            libc::sendto(
                fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                std::ptr::addr_of!(addr).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENOBUFS) {
                // The queue is full: let it drain.
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            error = Some(format!("sendto on {dev}: {e}"));
            break;
        }
        sent += 1;
    }
    // SAFETY: our own descriptor.
    unsafe { libc::close(fd) };
    if let Some(e) = error {
        return Err(format!("{e} (after {sent} frame(s))"));
    }
    Ok(format!(
        "result sent={sent} len={} src={} dst={}",
        frame.len(),
        spec.src.unwrap_or(own),
        spec.dst
    ))
}

/// Frame bits on the wire (FCS included) of a datagram with `payload` bytes.
fn wire_bits(payload: usize) -> u64 {
    ((payload + HEADER_LEN + IP_UDP_HEADERS + FCS_LEN) * 8) as u64
}

fn send_udp(u: &UdpSpec) -> Result<String, String> {
    let UdpSpec {
        to,
        port,
        size,
        mbps,
        ms,
    } = *u;
    let payload = size
        .checked_sub(HEADER_LEN + IP_UDP_HEADERS)
        .ok_or_else(|| format!("size {size}: below the {} bytes of the headers", 42))?;
    let sock = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(|e| e.to_string())?;
    sock.connect((to, port))
        .map_err(|e| format!("UDP to {to}: {e}"))?;
    let data = vec![0u8; payload];
    let gap = Duration::from_nanos((wire_bits(payload) * 1000).div_ceil(u64::from(mbps.max(1))));
    let start = Instant::now();
    let end = start + Duration::from_millis(ms);
    let mut next = start;
    let (mut sent, mut refused) = (0u64, 0u64);
    while next < end {
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        match sock.send(&data) {
            Ok(_) => sent += 1,
            // A full queue, or an ICMP port unreachable from a receiver not yet listening.
            Err(_) => refused += 1,
        }
        // On schedule, not after the last send: a late wakeup (a busy TCG vCPU oversleeps by
        // tenths of a millisecond) is made up by sending at once, so the offered rate is the
        // average the step names, as `iperf3 -b` paces.
        next += gap;
    }
    Ok(format!(
        "result sent={sent} refused={refused} len={size} ms={}",
        start.elapsed().as_millis()
    ))
}

fn meter(port: u16, ms: u64) -> Result<String, String> {
    let sock = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port))
        .map_err(|e| format!("UDP port {port}: {e}"))?;
    let start = Instant::now();
    let end = start + Duration::from_millis(ms) + METER_GRACE;
    let mut buf = vec![0u8; 65536];
    let (mut frames, mut bits) = (0u64, 0u64);
    let mut first: Option<Instant> = None;
    let mut last = start;
    loop {
        let now = Instant::now();
        let mut until = end;
        if let Some(f) = first {
            // Counting stops once the sender is done: its time is up and nothing comes.
            if now >= f + Duration::from_millis(ms) {
                until = until.min(last + METER_IDLE);
            }
        }
        if now >= until {
            break;
        }
        let wait = (until - now).max(Duration::from_millis(1));
        sock.set_read_timeout(Some(wait))
            .map_err(|e| e.to_string())?;
        match sock.recv(&mut buf) {
            Ok(n) => {
                let t = Instant::now();
                first.get_or_insert(t);
                last = t;
                frames += 1;
                bits += wire_bits(n);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(format!("UDP port {port}: {e}")),
        }
    }
    let span = first.map_or(0, |f| last.duration_since(f).as_millis());
    Ok(format!("result frames={frames} bits={bits} span_ms={span}"))
}

/// Set by SIGTERM or SIGINT: a capture ends (after taking in what is already queued).
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// How long a capture's receive call waits before it looks at the clock and [`STOP`] again.
const CAPTURE_POLL: Duration = Duration::from_millis(50);

/// Receives on `dev` until stopped, `count` frames or `ms`; the guest's own outgoing frames
/// are left out. Prints `listening` once the socket is bound (whoever started the capture in
/// the background waits for that line), then the tally.
fn capture(dev: &str, ms: u64, count: Option<u64>) -> Result<String, String> {
    let ifindex = ifindex(dev)?;
    let all = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket creation.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(all)) };
    if fd < 0 {
        return Err(os_err("AF_PACKET socket"));
    }
    let r = capture_on(fd, dev, ifindex, all, ms, count);
    // SAFETY: our own descriptor.
    unsafe { libc::close(fd) };
    r
}

fn capture_on(
    fd: libc::c_int,
    dev: &str,
    ifindex: u32,
    protocol: u16,
    ms: u64,
    count: Option<u64>,
) -> Result<String, String> {
    // SAFETY: an all-zero sockaddr_ll is valid; the fields are set below.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = protocol;
    addr.sll_ifindex = ifindex as i32;
    // SAFETY: `addr` outlives the call; its length is passed.
    let bound = unsafe {
        libc::bind(
            fd,
            std::ptr::addr_of!(addr).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if bound < 0 {
        return Err(os_err(&format!("binding to {dev}")));
    }
    let on: libc::c_int = 1;
    let poll = libc::timeval {
        tv_sec: 0,
        tv_usec: CAPTURE_POLL.as_micros() as libc::suseconds_t,
    };
    // SAFETY: the option values outlive the calls; their lengths are passed.
    let set = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_AUXDATA,
            std::ptr::addr_of!(on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
            && libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                std::ptr::addr_of!(poll).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            ) == 0
    };
    if !set {
        return Err(os_err("socket options"));
    }
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic; no SA_RESTART, so a receive call
        // returns at once.
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_stop as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(sig, &act, std::ptr::null_mut());
        }
    }
    println!("listening dev={dev}");
    let end = Instant::now() + Duration::from_millis(ms);
    let mut tally = crate::received::Tally::default();
    let mut buf = vec![0u8; 65536];
    // Room for one tpacket_auxdata control message.
    let mut control = [0u64; 8];
    loop {
        if count.is_some_and(|n| tally.frames >= n) {
            break;
        }
        // Once stopped or out of time, what is queued is still taken in, then no more.
        let draining = STOP.load(Ordering::SeqCst) || Instant::now() >= end;
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: an all-zero msghdr is valid; its pointers are set to live buffers below.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = std::ptr::addr_of_mut!(from).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        let flags = if draining { libc::MSG_DONTWAIT } else { 0 };
        // SAFETY: `msg` points at `from`, `iov` (into `buf`) and `control`, all alive.
        let n = unsafe { libc::recvmsg(fd, &mut msg, flags) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) if draining => break,
                Some(libc::EAGAIN) | Some(libc::EINTR) => continue,
                _ => return Err(format!("receiving on {dev}: {e}")),
            }
        }
        if from.sll_pkttype == libc::PACKET_OUTGOING {
            continue;
        }
        let len = (n as usize).min(buf.len());
        // SAFETY: the kernel filled `msg`'s control buffer; the macros walk it within
        // msg_controllen.
        let stripped = unsafe { stripped_tag(&msg) };
        if let Some(kind) = crate::received::FrameKind::of(&buf[..len], stripped) {
            tally.add(kind);
        }
    }
    Ok(tally.lines())
}

/// The VLAN tag the driver took out of a received frame (`PACKET_AUXDATA`), if any.
///
/// # Safety
/// `msg` is a header `recvmsg` filled, its control buffer still alive.
unsafe fn stripped_tag(msg: &libc::msghdr) -> Option<VlanTci> {
    let mut c = libc::CMSG_FIRSTHDR(msg);
    while !c.is_null() {
        let h = &*c;
        if h.cmsg_level == libc::SOL_PACKET && h.cmsg_type == libc::PACKET_AUXDATA {
            let aux: libc::tpacket_auxdata = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
            return (aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0)
                .then_some(VlanTci(aux.tp_vlan_tci));
        }
        c = libc::CMSG_NXTHDR(msg, c);
    }
    None
}

/// The helper's `main`: the process's arguments, its exit status.
pub fn main_with(args: &[String]) -> i32 {
    match Command::parse(args).and_then(|c| c.run()) {
        Ok(line) => {
            println!("{line}");
            0
        }
        Err(e) => {
            eprintln!("{HELPER}: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn frames_arguments_round_trip() {
        let c = Command::Frames {
            dev: "eth0".into(),
            spec: FrameSpec {
                dst: MacAddr::BROADCAST,
                src: Some(MacAddr([2, 0, 0, 0, 0, 0x99])),
                vlan: Some(10),
                pcp: Some(3),
                ethertype: Some(0x88b5),
                size: Some(128),
                count: 3,
            },
        };
        assert_eq!(Command::parse(&c.to_args()), Ok(c.clone()));
        assert!(c.command_line().starts_with(GUEST_PATH));
        let u = Command::Udp(UdpSpec {
            to: Ipv4Addr::new(10, 0, 0, 1),
            port: 5001,
            size: 1514,
            mbps: 5,
            ms: 800,
        });
        assert_eq!(Command::parse(&u.to_args()), Ok(u));
        let m = Command::Meter { port: 5001, ms: 1 };
        assert_eq!(Command::parse(&m.to_args()), Ok(m));
        for count in [None, Some(3)] {
            let c = Command::Capture {
                dev: "eth0".into(),
                ms: 600_000,
                count,
            };
            assert_eq!(Command::parse(&c.to_args()), Ok(c));
        }
    }

    #[test]
    fn bad_arguments_are_errors_not_panics() {
        for bad in [
            "",
            "launch",
            "frames",
            "frames dst=ff:ff",
            "frames dst=ff:ff:ff:ff:ff:ff vlan=5000",
            "frames dst=ff:ff:ff:ff:ff:ff pcp=9",
            "frames dst=ff:ff:ff:ff:ff:ff ethertype=zz",
            "frames dst=ff:ff:ff:ff:ff:ff colour=red",
            "frames nokey",
            "udp to=10.0.0.1 mbps=1",
            "meter ms=-1",
            "capture",
            "capture ms=10 count=x",
            "capture ms=10 port=1",
        ] {
            assert!(Command::parse(&args(bad)).is_err(), "{bad}");
        }
        assert_eq!(main_with(&args("frames")), 1);
    }

    #[test]
    fn crafted_frames_carry_the_tag_source_ethertype_and_size() {
        let own = MacAddr([2, 0, 0, 0, 0, 1]);
        let spec = FrameSpec {
            dst: MacAddr::BROADCAST,
            src: Some(MacAddr([2, 0, 0, 0, 0, 0x99])),
            vlan: Some(10),
            pcp: Some(3),
            ethertype: None,
            size: Some(100),
            count: 1,
        };
        let f = crafted_frame(&spec, own);
        assert_eq!(f.len(), 100);
        assert_eq!(&f[..6], &[0xff; 6]);
        assert_eq!(&f[6..12], &[2, 0, 0, 0, 0, 0x99]);
        assert_eq!(&f[12..16], &[0x81, 0x00, 0x60, 0x0a]);
        assert_eq!(&f[16..18], &[0x88, 0xb5]);
        let plain = crafted_frame(
            &FrameSpec {
                src: None,
                vlan: None,
                size: None,
                ..spec
            },
            own,
        );
        assert_eq!(plain.len(), DEFAULT_FRAME_LEN);
        assert_eq!(&plain[6..12], &own.0);
    }

    #[test]
    fn results_are_read_from_the_result_line() {
        let r = parse_results("noise\nresult frames=3 bits=36480 span_ms=2\n");
        assert_eq!(r["frames"], "3");
        assert_eq!(r["bits"], "36480");
        assert_eq!(wire_bits(1472), 1518 * 8);
    }
}
