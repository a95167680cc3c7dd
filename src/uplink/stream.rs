//! QEMU's `-netdev stream` behind the uplink: a TCP or UNIX stream socket carrying Ethernet
//! frames, each after its length as a 4-byte big-endian number (the prefix not counted), and
//! nothing else — no virtio-net header. That is what QEMU writes in
//! `net_stream_data_receive` (`net/stream_data.c`: `htonl(size)`, then the frame) and reads
//! back with `net_fill_rstate` (`net/net.c`, without `vnet_hdr`). QEMU ends a connection whose
//! length prefix exceeds its receive buffer (`NET_BUFSIZE`, `include/net/net.h`); we end one
//! whose prefix exceeds [`MAX_WIRE_FRAME`].
//!
//! As QEMU's `server=on` we listen and serve one peer at a time (a second connection while
//! one is up is refused and counted); as `server=off` we connect, and reconnect after
//! `reconnect_ms` when the connection ends (QEMU's `reconnect-ms`). TCP connections have
//! Nagle off, as `net_stream_data_client_connected` sets. Without a peer the carrier is down,
//! as QEMU marks its side `link_down` until a peer connects.

use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eswitch::Delivery;
use model::{Nic, PortSink};
use thiserror::Error;
use tracing::{debug, info, warn};

use super::{
    bump, clear_stale_socket, loud, set_nonblocking, Backend, Shared, SockAddr, Stop, StreamRole,
    UplinkError, Wait, MAX_WIRE_FRAME,
};

/// Bytes of the length prefix.
pub const PREFIX_LEN: usize = 4;
/// One read from the socket.
const READ_BUF: usize = 65536;
/// How long a frame already partly written may wait for room for the rest before the
/// connection is reset (its framing would be lost otherwise).
const FINISH_WRITE: Duration = Duration::from_millis(200);
/// How long a connection attempt to a TCP peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A length prefix the stream cannot carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
#[error("length prefix {len} is beyond the largest frame ({max} bytes)")]
pub struct FrameTooLong {
    pub len: u64,
    pub max: usize,
}

/// The length prefix of a frame of `len` bytes.
pub fn length_prefix(len: usize) -> Result<[u8; PREFIX_LEN], FrameTooLong> {
    u32::try_from(len)
        .map(u32::to_be_bytes)
        .map_err(|_| FrameTooLong {
            len: len as u64,
            max: u32::MAX as usize,
        })
}

/// Appends `frame`, framed, to `out`.
pub fn encode(frame: &[u8], out: &mut Vec<u8>) -> Result<(), FrameTooLong> {
    out.extend_from_slice(&length_prefix(frame.len())?);
    out.extend_from_slice(frame);
    Ok(())
}

/// Where the decoder is in the byte stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading the length prefix; `have` of its bytes are in `prefix`.
    Length { have: usize },
    /// Reading a frame of `len` bytes; what has come is in `buf`.
    Payload { len: usize },
}

/// Takes the byte stream as it arrives, in pieces of any size, and gives back whole frames —
/// `net_fill_rstate`'s state machine (without the vnet header state), bounded by
/// `max_frame`. A frame of length 0 is given back as an empty frame, as QEMU does; judging
/// frame lengths is the caller's.
#[derive(Clone, Debug)]
pub struct Decoder {
    state: State,
    prefix: [u8; PREFIX_LEN],
    buf: Vec<u8>,
    max_frame: usize,
}

impl Decoder {
    pub fn new(max_frame: usize) -> Decoder {
        Decoder {
            state: State::Length { have: 0 },
            prefix: [0; PREFIX_LEN],
            buf: Vec::new(),
            max_frame,
        }
    }

    /// Starts over, for a new connection.
    pub fn reset(&mut self) {
        self.state = State::Length { have: 0 };
        self.buf.clear();
    }

    /// Whether a frame or prefix has begun and not ended.
    pub fn mid_frame(&self) -> bool {
        self.state != State::Length { have: 0 }
    }

    /// Feeds `data` in and calls `frame` with every frame it completes, in order. A length
    /// prefix beyond `max_frame` is an error; the decoder then starts over (the connection
    /// should be reset: its framing is lost).
    pub fn push(
        &mut self,
        mut data: &[u8],
        mut frame: impl FnMut(&[u8]),
    ) -> Result<(), FrameTooLong> {
        while !data.is_empty() {
            match self.state {
                State::Length { have } => {
                    let take = (PREFIX_LEN - have).min(data.len());
                    self.prefix[have..have + take].copy_from_slice(&data[..take]);
                    data = &data[take..];
                    let have = have + take;
                    if have < PREFIX_LEN {
                        self.state = State::Length { have };
                        continue;
                    }
                    let len = u32::from_be_bytes(self.prefix);
                    let len = match usize::try_from(len) {
                        Ok(l) if l <= self.max_frame => l,
                        _ => {
                            self.reset();
                            return Err(FrameTooLong {
                                len: u64::from(len),
                                max: self.max_frame,
                            });
                        }
                    };
                    self.state = State::Length { have: 0 };
                    if len == 0 {
                        frame(&[]);
                    } else if data.len() >= len {
                        // The whole frame is here: no copy.
                        frame(&data[..len]);
                        data = &data[len..];
                    } else {
                        self.buf.clear();
                        self.buf.reserve(len);
                        self.state = State::Payload { len };
                    }
                }
                State::Payload { len } => {
                    let take = (len - self.buf.len()).min(data.len());
                    self.buf.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.buf.len() == len {
                        frame(&self.buf);
                        self.buf.clear();
                        self.state = State::Length { have: 0 };
                    }
                }
            }
        }
        Ok(())
    }
}

// ----- the backend -----

/// The connected peer's socket, shared by the sink (writes) and the thread (reads).
type Slot = Mutex<Option<Arc<OwnedFd>>>;

fn lock(slot: &Slot) -> std::sync::MutexGuard<'_, Option<Arc<OwnedFd>>> {
    slot.lock().unwrap_or_else(|e| e.into_inner())
}

/// Frames the switch sends to the uplink, framed onto the peer's socket.
struct StreamSink {
    slot: Arc<Slot>,
    shared: Arc<Shared>,
}

/// What writing one framed frame ended with.
enum Written {
    Whole,
    /// Not a byte went: the socket buffer is full.
    Busy,
    /// The connection must end: a write failed, or a frame was cut.
    Broken(std::io::Error),
}

/// Writes the prefix and the frame with `sendmsg`, without blocking while nothing is written
/// and for at most [`FINISH_WRITE`] to finish a frame once begun.
fn write_framed(fd: RawFd, prefix: &[u8; PREFIX_LEN], frame: &[u8]) -> Written {
    let total = PREFIX_LEN + frame.len();
    let mut sent = 0usize;
    while sent < total {
        let (a, b): (&[u8], &[u8]) = if sent < PREFIX_LEN {
            (&prefix[sent..], frame)
        } else {
            (&frame[sent - PREFIX_LEN..], &[])
        };
        let mut iov = [
            libc::iovec {
                iov_base: a.as_ptr() as *mut libc::c_void,
                iov_len: a.len(),
            },
            libc::iovec {
                iov_base: b.as_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            },
        ];
        // SAFETY: a zeroed msghdr is valid; we set only the iovec array, which points at
        // live slices for the duration of the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = if b.is_empty() { 1 } else { 2 };
        // SAFETY: sendmsg reads the iovecs described above from a socket we hold open.
        let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) };
        if n >= 0 {
            sent += n as usize;
            continue;
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::EAGAIN) if sent == 0 => return Written::Busy,
            Some(libc::EAGAIN) => {
                let mut p = libc::pollfd {
                    fd,
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                let r = unsafe { libc::poll(&mut p, 1, FINISH_WRITE.as_millis() as i32) };
                if r == 0 {
                    return Written::Broken(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the peer took no more of a frame already begun",
                    ));
                }
            }
            _ => return Written::Broken(e),
        }
    }
    Written::Whole
}

impl PortSink for StreamSink {
    fn deliver(&self, d: &Delivery) {
        let frame = &d.frame[..];
        let Ok(prefix) = length_prefix(frame.len()) else {
            return self.shared.tx_dropped("frame too long for the stream");
        };
        let mut slot = lock(&self.slot);
        let Some(fd) = slot.as_ref() else {
            drop(slot);
            return self.shared.tx_dropped("no stream peer connected");
        };
        match write_framed(fd.as_raw_fd(), &prefix, frame) {
            Written::Whole => self.shared.counters.sent(frame.len()),
            Written::Busy => self
                .shared
                .tx_dropped("the peer is not reading fast enough"),
            Written::Broken(e) => {
                // The thread sees the shutdown as the end of the connection and cleans up.
                // SAFETY: shutdown on a socket we hold open.
                unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR) };
                *slot = None;
                drop(slot);
                if e.kind() == std::io::ErrorKind::TimedOut {
                    bump(&self.shared.counters.framing_errors);
                }
                self.shared.tx_error(&e);
            }
        }
    }
}

/// A listening socket.
enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    fn fd(&self) -> RawFd {
        match self {
            Listener::Tcp(l) => l.as_raw_fd(),
            Listener::Unix(l) => l.as_raw_fd(),
        }
    }

    /// The next connection and a name for its peer.
    fn accept(&self) -> std::io::Result<(OwnedFd, String)> {
        match self {
            Listener::Tcp(l) => {
                let (s, peer) = l.accept()?;
                // QEMU turns Nagle off on its stream sockets; so do we.
                let _ = s.set_nodelay(true);
                Ok((s.into(), peer.to_string()))
            }
            Listener::Unix(l) => {
                let (s, _) = l.accept()?;
                Ok((s.into(), "unix peer".into()))
            }
        }
    }
}

/// Connects to `addr` once.
fn connect(addr: &SockAddr) -> std::io::Result<OwnedFd> {
    match addr {
        SockAddr::Inet(a) => {
            let s = TcpStream::connect_timeout(a, CONNECT_TIMEOUT)?;
            let _ = s.set_nodelay(true);
            Ok(s.into())
        }
        SockAddr::Unix(p) => Ok(UnixStream::connect(p)?.into()),
    }
}

/// Binds the listening socket of `addr` (field `listen`).
fn listen(addr: &SockAddr) -> Result<(Listener, Option<std::path::PathBuf>), UplinkError> {
    let io = |e| UplinkError::io("listen", addr, "binding", e);
    let (l, path) = match addr {
        SockAddr::Inet(a) => (Listener::Tcp(TcpListener::bind(a).map_err(io)?), None),
        SockAddr::Unix(p) => {
            if UnixStream::connect(p).is_ok() {
                return Err(UplinkError::io(
                    "listen",
                    addr,
                    "binding",
                    std::io::Error::new(
                        std::io::ErrorKind::AddrInUse,
                        "another process listens on this socket",
                    ),
                ));
            }
            clear_stale_socket("listen", p)?;
            (
                Listener::Unix(UnixListener::bind(p).map_err(io)?),
                Some(p.clone()),
            )
        }
    };
    match &l {
        Listener::Tcp(t) => t.set_nonblocking(true),
        Listener::Unix(u) => u.set_nonblocking(true),
    }
    .map_err(io)?;
    Ok((l, path))
}

/// Binds or prepares the socket, registers nothing yet, and starts the thread that accepts
/// or connects and then reads the peer.
pub(super) fn run(
    nic: Arc<Nic>,
    shared: Arc<Shared>,
    stop: Arc<Stop>,
    role: StreamRole,
    addr: &SockAddr,
) -> Result<Backend, UplinkError> {
    let slot: Arc<Slot> = Arc::new(Mutex::new(None));
    let sink = Arc::new(StreamSink {
        slot: slot.clone(),
        shared: shared.clone(),
    });
    let mut cleanup = Vec::new();
    let conn = Conn {
        nic,
        shared: shared.clone(),
        stop,
        slot,
    };
    let thread = std::thread::Builder::new().name("uplink-stream".into());
    let thread = match role {
        StreamRole::Listen => {
            let (listener, path) = listen(addr)?;
            cleanup.extend(path);
            // No peer yet: no carrier.
            shared.set_carrier(&conn.nic, false);
            thread.spawn(move || conn.serve_listener(&listener))
        }
        StreamRole::Connect { reconnect } => {
            shared.set_carrier(&conn.nic, false);
            let addr = addr.clone();
            thread.spawn(move || conn.serve_connector(&addr, reconnect))
        }
    }
    .map_err(UplinkError::Thread)?;
    Ok(Backend {
        sink,
        thread,
        cleanup,
    })
}

/// The stream thread's state.
struct Conn {
    nic: Arc<Nic>,
    shared: Arc<Shared>,
    stop: Arc<Stop>,
    slot: Arc<Slot>,
}

impl Conn {
    fn serve_listener(&self, listener: &Listener) {
        loop {
            match self.stop.wait_for(Some(listener.fd()), None, None) {
                Wait::Stop => return,
                Wait::Ready => {}
                Wait::Second | Wait::Timeout => continue,
            }
            match listener.accept() {
                Ok((fd, peer)) => {
                    if self.serve_peer(fd, peer, Some(listener)) {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    warn!(backend = %self.shared.backend, error = %e, "uplink: accept failed");
                    if self.stop.sleep(Duration::from_millis(100)) {
                        return;
                    }
                }
            }
        }
    }

    fn serve_connector(&self, addr: &SockAddr, reconnect: Duration) {
        let mut failures = 0u64;
        loop {
            if self.stop.stopped() {
                return;
            }
            match connect(addr) {
                Ok(fd) => {
                    failures = 0;
                    if self.serve_peer(fd, addr.to_string(), None) {
                        return;
                    }
                }
                Err(e) => {
                    failures += 1;
                    if loud(failures) {
                        warn!(backend = %self.shared.backend, error = %e, attempts = failures, "uplink: cannot connect; retrying every {reconnect:?}");
                    } else {
                        debug!(backend = %self.shared.backend, error = %e, "uplink: cannot connect");
                    }
                }
            }
            if self.stop.sleep(reconnect) {
                return;
            }
        }
    }

    /// Serves one connected peer until it goes, breaks the framing, or the uplink stops
    /// (`true`). While it is connected, further connections to `listener` are refused.
    fn serve_peer(&self, fd: OwnedFd, peer: String, listener: Option<&Listener>) -> bool {
        let fd = Arc::new(fd);
        if let Err(e) = set_nonblocking(fd.as_raw_fd()) {
            warn!(backend = %self.shared.backend, error = %e, "uplink: connection unusable");
            return false;
        }
        *lock(&self.slot) = Some(fd.clone());
        bump(&self.shared.counters.connections);
        self.shared.set_peer(Some(peer.clone()));
        info!(backend = %self.shared.backend, %peer, "uplink: stream peer connected");
        self.shared.set_carrier(&self.nic, true);

        let mut decoder = Decoder::new(MAX_WIRE_FRAME);
        let mut buf = vec![0u8; READ_BUF];
        let mut stopped = false;
        loop {
            match self
                .stop
                .wait_for(Some(fd.as_raw_fd()), listener.map(Listener::fd), None)
            {
                Wait::Stop => {
                    stopped = true;
                    break;
                }
                Wait::Second => {
                    if let Some(Ok((extra, who))) = listener.map(Listener::accept) {
                        drop(extra);
                        let n = bump(&self.shared.counters.refused);
                        if loud(n) {
                            warn!(backend = %self.shared.backend, refused = %who, connected = %peer, "uplink: a stream peer is already connected; connection refused");
                        }
                    }
                    continue;
                }
                Wait::Timeout => continue,
                Wait::Ready => {}
            }
            // SAFETY: reads at most `buf.len()` bytes into a live buffer from our socket.
            let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n == 0 {
                info!(backend = %self.shared.backend, %peer, "uplink: stream peer closed the connection");
                break;
            }
            if n < 0 {
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN) | Some(libc::EINTR) => continue,
                    _ => {
                        self.shared.rx_error(&e);
                        break;
                    }
                }
            }
            let (shared, nic) = (&self.shared, &self.nic);
            if let Err(e) = decoder.push(&buf[..n as usize], |f| shared.received(nic, f)) {
                let n = bump(&shared.counters.framing_errors);
                if loud(n) {
                    warn!(backend = %shared.backend, %peer, error = %e, resets = n, "uplink: bad length prefix from the stream peer; connection reset");
                }
                break;
            }
        }
        {
            let mut slot = lock(&self.slot);
            if slot.as_ref().is_some_and(|s| Arc::ptr_eq(s, &fd)) {
                *slot = None;
            }
        }
        // SAFETY: shutdown on a socket we hold open; the last Arc closes it.
        unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR) };
        self.shared.set_peer(None);
        self.shared.set_carrier(&self.nic, false);
        stopped
    }
}
