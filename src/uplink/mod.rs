//! Uplink backends: what stands behind one of the eswitch's uplink ports
//! ([`PortId::Uplink`]). Without one, frames the switch sends to the uplink are counted as
//! unclaimed and dropped. With one, they go to a wire and frames from the wire come in:
//!
//! - [`tap`]: a Linux TAP device (`/dev/net/tun`, `IFF_TAP | IFF_NO_PI`), created by name or
//!   attached to an existing one, so the NIC can be plugged into a bridge or Open vSwitch;
//! - [`stream`]: QEMU's `-netdev stream` framing on a TCP or UNIX stream socket (each frame
//!   after a 4-byte big-endian length), as server or client, so an ordinary QEMU guest NIC on
//!   `-netdev stream,...` plugs into the uplink;
//! - [`dgram`]: QEMU's `-netdev dgram` framing (one frame per datagram, `local` and `remote`
//!   addresses, UDP or UNIX datagram sockets): a cable between two sriov-emu processes, or
//!   sriov-emu and QEMU, on one host or across hosts.
//!
//! Each backend is a [`PortSink`] registered for its port (frames the switch sends out go to the
//! wire, on the sending function's thread) plus one thread that reads the wire and calls
//! [`Nic::inject`]. Frames from the wire are checked for length: a runt (shorter than an Ethernet
//! header) or an oversize frame is dropped and counted. The backend's carrier drives the NIC's link
//! ([`Nic::set_link`], which VFs in link state `auto` follow): a stream uplink without a peer is
//! down, a TAP is up while it is open, a dgram cable is always up.
//!
//! The configuration ([`UplinkConfig`]) is one self-contained table (`[uplink]` of the `serve`
//! config, or `--uplink KIND:KEY=VALUE,...`, in `config.rs`), checked into an [`UplinkSpec`] before anything
//! starts.

use std::fmt;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use eswitch::policy::MAX_FRAME_LIMIT;
use eswitch::wire::ethernet::HEADER_LEN;
use eswitch::PortId;
use model::{Nic, PortSink};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

mod config;
pub mod dgram;
pub mod stream;
pub mod tap;

pub use config::*;

/// Shortest frame taken from the wire: an Ethernet header. QEMU's virtio-net and a TAP pass
/// frames shorter than the 60-byte Ethernet minimum (no padding), so that is not the bound.
pub const MIN_WIRE_FRAME: usize = HEADER_LEN;
/// Longest frame taken from or sent to the wire (without FCS, one 802.1Q tag allowed): the
/// largest frame the switch's ports take.
pub const MAX_WIRE_FRAME: usize = MAX_FRAME_LIMIT as usize;
/// Counters of one uplink, seen from the NIC: `rx` came from the wire, `tx` went to it.
#[derive(Debug, Default)]
struct Counters {
    rx_frames: AtomicU64,
    rx_bytes: AtomicU64,
    rx_runt: AtomicU64,
    rx_oversize: AtomicU64,
    rx_errors: AtomicU64,
    tx_frames: AtomicU64,
    tx_bytes: AtomicU64,
    tx_dropped: AtomicU64,
    tx_errors: AtomicU64,
    framing_errors: AtomicU64,
    connections: AtomicU64,
    refused: AtomicU64,
    carrier_changes: AtomicU64,
}

/// A snapshot of an uplink's counters (`ctl show`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UplinkCounters {
    /// Frames (and their bytes) from the wire handed to the switch.
    pub rx_frames: u64,
    pub rx_bytes: u64,
    /// Frames from the wire shorter than an Ethernet header (dropped).
    pub rx_runt: u64,
    /// Frames from the wire longer than [`MAX_WIRE_FRAME`] (dropped).
    pub rx_oversize: u64,
    /// Failed reads of the wire.
    pub rx_errors: u64,
    /// Frames (and their bytes) the switch sent that went onto the wire.
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// Frames to the wire dropped because it had no room or no peer (a full socket buffer, a
    /// TAP that is down, no stream peer connected).
    pub tx_dropped: u64,
    /// Failed writes to the wire.
    pub tx_errors: u64,
    /// Stream connections reset because the peer broke the framing (a length prefix beyond
    /// [`MAX_WIRE_FRAME`]) or a frame could not be written whole.
    pub framing_errors: u64,
    /// Stream connections made (accepted or connected).
    pub connections: u64,
    /// Stream connections refused because a peer was already connected.
    pub refused: u64,
    /// Times the carrier went up or down.
    pub carrier_changes: u64,
}

fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

fn bump(a: &AtomicU64) -> u64 {
    a.fetch_add(1, Ordering::Relaxed) + 1
}

impl Counters {
    fn snapshot(&self) -> UplinkCounters {
        UplinkCounters {
            rx_frames: get(&self.rx_frames),
            rx_bytes: get(&self.rx_bytes),
            rx_runt: get(&self.rx_runt),
            rx_oversize: get(&self.rx_oversize),
            rx_errors: get(&self.rx_errors),
            tx_frames: get(&self.tx_frames),
            tx_bytes: get(&self.tx_bytes),
            tx_dropped: get(&self.tx_dropped),
            tx_errors: get(&self.tx_errors),
            framing_errors: get(&self.framing_errors),
            connections: get(&self.connections),
            refused: get(&self.refused),
            carrier_changes: get(&self.carrier_changes),
        }
    }

    fn sent(&self, len: usize) {
        self.tx_frames.fetch_add(1, Ordering::Relaxed);
        self.tx_bytes.fetch_add(len as u64, Ordering::Relaxed);
    }
}

/// Whether the `n`th event of a kind is logged at `warn` (the first, then every 1024th); the
/// others go to `debug`, so that a peer flooding bad frames cannot flood the log.
fn loud(n: u64) -> bool {
    n == 1 || n.is_multiple_of(1024)
}

/// What an uplink's sink, its thread and its monitor share.
struct Shared {
    port: PortId,
    kind: UplinkKind,
    /// What the backend is, for people: `tap tap0`, `stream listen 127.0.0.1:5555`...
    backend: String,
    carrier: AtomicBool,
    /// The connected stream peer.
    peer: Mutex<Option<String>>,
    counters: Counters,
}

impl Shared {
    fn new(port: PortId, kind: UplinkKind, backend: String) -> Arc<Shared> {
        Arc::new(Shared {
            port,
            kind,
            backend,
            // The NIC starts with its link up.
            carrier: AtomicBool::new(true),
            peer: Mutex::new(None),
            counters: Counters::default(),
        })
    }

    /// The wire's carrier: the NIC's link follows a change (and VFs in state `auto` with it).
    fn set_carrier(&self, nic: &Nic, up: bool) {
        if self.carrier.swap(up, Ordering::AcqRel) != up {
            bump(&self.counters.carrier_changes);
            info!(port = %self.port, backend = %self.backend, up, "uplink carrier");
            nic.set_link(up);
        }
    }

    fn set_peer(&self, peer: Option<String>) {
        *self.peer.lock().unwrap_or_else(|e| e.into_inner()) = peer;
    }

    /// A frame from the wire: checked for length, counted, switched.
    fn received(&self, nic: &Nic, frame: &[u8]) {
        let len = frame.len();
        if len < MIN_WIRE_FRAME {
            let n = bump(&self.counters.rx_runt);
            if loud(n) {
                warn!(port = %self.port, len, dropped = n, "uplink: runt frame from the wire dropped");
            } else {
                debug!(port = %self.port, len, "uplink: runt frame dropped");
            }
            return;
        }
        if len > MAX_WIRE_FRAME {
            let n = bump(&self.counters.rx_oversize);
            if loud(n) {
                warn!(port = %self.port, len, max = MAX_WIRE_FRAME, dropped = n, "uplink: oversize frame from the wire dropped");
            } else {
                debug!(port = %self.port, len, "uplink: oversize frame dropped");
            }
            return;
        }
        self.counters.rx_frames.fetch_add(1, Ordering::Relaxed);
        self.counters
            .rx_bytes
            .fetch_add(len as u64, Ordering::Relaxed);
        nic.inject(self.port, Bytes::copy_from_slice(frame));
    }

    /// A write to the wire failed for want of room or of a peer.
    fn tx_dropped(&self, why: &str) {
        let n = bump(&self.counters.tx_dropped);
        if loud(n) {
            warn!(port = %self.port, backend = %self.backend, dropped = n, "uplink: frame to the wire dropped: {why}");
        }
    }

    /// A write to the wire failed.
    fn tx_error(&self, e: &std::io::Error) {
        let n = bump(&self.counters.tx_errors);
        if loud(n) {
            warn!(port = %self.port, backend = %self.backend, errors = n, error = %e, "uplink: write to the wire failed");
        } else {
            debug!(port = %self.port, error = %e, "uplink: write failed");
        }
    }

    fn rx_error(&self, e: &std::io::Error) {
        let n = bump(&self.counters.rx_errors);
        if loud(n) {
            warn!(port = %self.port, backend = %self.backend, errors = n, error = %e, "uplink: read from the wire failed");
        }
    }
}

/// What `ctl show` reports of one uplink.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UplinkReport {
    /// The switch port: `uplink0`.
    pub port: String,
    pub kind: UplinkKind,
    /// The backend and its address: `tap tap0`, `stream listen 127.0.0.1:5555`...
    pub backend: String,
    pub carrier: bool,
    /// The connected stream peer, if any.
    pub peer: Option<String>,
    pub counters: UplinkCounters,
}

/// A handle that reads an uplink's state while it runs (the control socket holds one).
#[derive(Clone)]
pub struct UplinkMonitor(Arc<Shared>);

impl UplinkMonitor {
    pub fn report(&self) -> UplinkReport {
        let s = &self.0;
        UplinkReport {
            port: s.port.to_string(),
            kind: s.kind,
            backend: s.backend.clone(),
            carrier: s.carrier.load(Ordering::Acquire),
            peer: s.peer.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            counters: s.counters.snapshot(),
        }
    }
}

impl fmt::Debug for UplinkMonitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("UplinkMonitor")
            .field(&self.0.backend)
            .finish()
    }
}

/// Tells an uplink's thread to end: an eventfd it polls beside the wire.
struct Stop(EventFd);

/// What a wait for a readable descriptor ended with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
    /// The first descriptor is readable (or has an error or hang-up to read).
    Ready,
    /// The second one (when given) is.
    Second,
    Stop,
    Timeout,
}

impl Stop {
    fn new() -> std::io::Result<Stop> {
        EventFd::new(EFD_NONBLOCK).map(Stop)
    }

    fn signal(&self) {
        let _ = self.0.write(1);
    }

    fn stopped(&self) -> bool {
        matches!(self.wait_for(None, None, Some(Duration::ZERO)), Wait::Stop)
    }

    /// Sleeps for `d` or until stopped; `true` when stopped.
    fn sleep(&self, d: Duration) -> bool {
        matches!(self.wait_for(None, None, Some(d)), Wait::Stop)
    }

    /// Waits until `fd` (or `second`) is readable, the uplink is stopped, or `timeout` passes
    /// (`None`: no limit).
    fn wait_for(
        &self,
        fd: Option<RawFd>,
        second: Option<RawFd>,
        timeout: Option<Duration>,
    ) -> Wait {
        let mut fds = [
            libc::pollfd {
                fd: self.0.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: fd.unwrap_or(-1),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: second.unwrap_or(-1),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let ms = timeout.map_or(-1, |d| i32::try_from(d.as_millis()).unwrap_or(i32::MAX));
        // SAFETY: `fds` is a valid array of 3 pollfd for the length given; a negative fd is
        // ignored by poll(2).
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if n < 0 {
            // EINTR: the caller loops and waits again.
            return Wait::Timeout;
        }
        if fds[0].revents != 0 {
            Wait::Stop
        } else if fds[1].revents != 0 {
            Wait::Ready
        } else if fds[2].revents != 0 {
            Wait::Second
        } else {
            Wait::Timeout
        }
    }
}

/// A running backend: its sink and its thread, and the paths to remove when it stops.
struct Backend {
    sink: Arc<dyn PortSink>,
    thread: JoinHandle<()>,
    cleanup: Vec<PathBuf>,
}

/// A running uplink on one port of a NIC. Dropping it stops it.
pub struct Uplink {
    nic: Arc<Nic>,
    shared: Arc<Shared>,
    stop: Arc<Stop>,
    thread: Option<JoinHandle<()>>,
    cleanup: Vec<PathBuf>,
}

impl fmt::Debug for Uplink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Uplink")
            .field("port", &self.shared.port)
            .field("backend", &self.shared.backend)
            .finish_non_exhaustive()
    }
}

impl Uplink {
    /// Opens the wire of `spec` and connects it to `port` of `nic` (`None` for
    /// [`UplinkSpec::None`]). A stream uplink starts with the NIC's link down until its peer
    /// connects. Nothing is left running on an error.
    pub fn start(
        nic: &Arc<Nic>,
        port: PortId,
        spec: &UplinkSpec,
    ) -> Result<Option<Uplink>, UplinkError> {
        let stop = Arc::new(Stop::new().map_err(UplinkError::Thread)?);
        let (shared, backend) = match spec {
            UplinkSpec::None => return Ok(None),
            UplinkSpec::Tap { name } => {
                let fd = tap::open(name)?;
                let shared = Shared::new(port, UplinkKind::Tap, format!("tap {}", fd.name));
                let b = tap::run(nic.clone(), shared.clone(), stop.clone(), fd)?;
                (shared, b)
            }
            UplinkSpec::Stream { role, addr } => {
                let what = match role {
                    StreamRole::Listen => "listen",
                    StreamRole::Connect { .. } => "connect",
                };
                let shared = Shared::new(port, UplinkKind::Stream, format!("stream {what} {addr}"));
                let b = stream::run(nic.clone(), shared.clone(), stop.clone(), *role, addr)?;
                (shared, b)
            }
            UplinkSpec::Dgram { local, remote } => {
                let shared = Shared::new(
                    port,
                    UplinkKind::Dgram,
                    format!("dgram local {local} remote {remote}"),
                );
                let b = dgram::run(nic.clone(), shared.clone(), stop.clone(), local, remote)?;
                (shared, b)
            }
        };
        nic.set_port_sink(port, Some(backend.sink));
        info!(%port, backend = %shared.backend, "uplink started");
        Ok(Some(Uplink {
            nic: nic.clone(),
            shared,
            stop,
            thread: Some(backend.thread),
            cleanup: backend.cleanup,
        }))
    }

    pub fn port(&self) -> PortId {
        self.shared.port
    }

    /// `tap tap0`, `stream listen 127.0.0.1:5555`, ...
    pub fn backend(&self) -> &str {
        &self.shared.backend
    }

    pub fn monitor(&self) -> UplinkMonitor {
        UplinkMonitor(self.shared.clone())
    }

    pub fn report(&self) -> UplinkReport {
        self.monitor().report()
    }

    /// Stops the thread, unregisters the sink, closes the wire and removes socket files.
    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        let Some(t) = self.thread.take() else {
            return;
        };
        self.nic.set_port_sink(self.shared.port, None);
        self.stop.signal();
        if t.join().is_err() {
            warn!(port = %self.shared.port, "uplink thread panicked");
        }
        for p in self.cleanup.drain(..) {
            let _ = std::fs::remove_file(p);
        }
        info!(port = %self.shared.port, backend = %self.shared.backend, "uplink stopped");
    }
}

impl Drop for Uplink {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Removes a stale UNIX socket at `path` (one nobody listens on) before binding it, as the
/// control socket does; refuses to remove anything that is not a socket.
fn clear_stale_socket(field: &'static str, path: &Path) -> Result<(), UplinkError> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    let value = format!("unix:{}", path.display());
    if !meta.file_type().is_socket() {
        return Err(UplinkError::invalid(
            field,
            &value,
            "the path exists and is not a socket",
        ));
    }
    std::fs::remove_file(path)
        .map_err(|e| UplinkError::io(field, &value, "removing the stale socket", e))
}

/// Sets `O_NONBLOCK` on `fd`.
fn set_nonblocking(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: fcntl on a descriptor we own, with integer arguments only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
