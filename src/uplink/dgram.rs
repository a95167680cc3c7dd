//! QEMU's `-netdev dgram` behind the uplink: one Ethernet frame per datagram, nothing added,
//! on a UDP socket bound to `local` and sending to `remote`, or the same with UNIX datagram
//! sockets — `net_init_dgram` and `net_dgram_receive`/`net_dgram_send` in `net/dgram.c`. As
//! there, datagrams are taken from any sender (the socket is not connected), both addresses
//! must be of one family, and a stale UNIX socket at `local` is replaced. Multicast `remote`
//! addresses (QEMU's hub mode) are not supported.
//!
//! A cable has no carrier to lose: the uplink's carrier stays up.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Arc;

use eswitch::Delivery;
use model::{Nic, PortSink};

use super::{
    clear_stale_socket, Backend, Shared, SockAddr, Stop, UplinkError, Wait, MAX_WIRE_FRAME,
};

/// One receive: the largest datagram (the oversize check follows).
const READ_BUF: usize = 65536;

/// The bound socket and where frames go.
enum Socket {
    Udp(UdpSocket, SocketAddr),
    Unix(UnixDatagram, PathBuf),
}

impl Socket {
    fn send(&self, frame: &[u8]) -> std::io::Result<usize> {
        match self {
            Socket::Udp(s, to) => s.send_to(frame, to),
            Socket::Unix(s, to) => s.send_to(frame, to),
        }
    }

    fn recv(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Socket::Udp(s, _) => s.recv_from(buf).map(|(n, _)| n),
            Socket::Unix(s, _) => s.recv(buf),
        }
    }

    fn fd(&self) -> std::os::fd::RawFd {
        match self {
            Socket::Udp(s, _) => s.as_raw_fd(),
            Socket::Unix(s, _) => s.as_raw_fd(),
        }
    }
}

/// Frames the switch sends to the uplink, one datagram each.
struct DgramSink {
    socket: Arc<Socket>,
    shared: Arc<Shared>,
}

impl PortSink for DgramSink {
    fn deliver(&self, d: &Delivery) {
        let frame = &d.frame[..];
        if frame.len() > MAX_WIRE_FRAME {
            return self.shared.tx_dropped("frame too long for the cable");
        }
        match self.socket.send(frame) {
            Ok(_) => self.shared.counters.sent(frame.len()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                self.shared.tx_dropped("the socket's buffer is full")
            }
            // The far end of a UNIX cable is not there (yet): like a cable into nothing.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOENT) | Some(libc::ECONNREFUSED)
                ) =>
            {
                self.shared.tx_dropped("nobody at the remote address")
            }
            Err(e) => self.shared.tx_error(&e),
        }
    }
}

/// Binds `local` and starts the thread that receives from it.
pub(super) fn run(
    nic: Arc<Nic>,
    shared: Arc<Shared>,
    stop: Arc<Stop>,
    local: &SockAddr,
    remote: &SockAddr,
) -> Result<Backend, UplinkError> {
    let io = |e| UplinkError::io("local", local, "binding", e);
    let mut cleanup = Vec::new();
    let socket = match (local, remote) {
        (SockAddr::Inet(l), SockAddr::Inet(r)) => {
            let s = UdpSocket::bind(l).map_err(io)?;
            s.set_nonblocking(true).map_err(io)?;
            Socket::Udp(s, *r)
        }
        (SockAddr::Unix(l), SockAddr::Unix(r)) => {
            clear_stale_socket("local", l)?;
            let s = UnixDatagram::bind(l).map_err(io)?;
            cleanup.push(l.clone());
            s.set_nonblocking(true).map_err(io)?;
            Socket::Unix(s, r.clone())
        }
        _ => {
            return Err(UplinkError::invalid(
                "remote",
                &remote.to_string(),
                "not of the same address family as uplink.local",
            ))
        }
    };
    let socket = Arc::new(socket);
    let sink = Arc::new(DgramSink {
        socket: socket.clone(),
        shared: shared.clone(),
    });
    shared.set_carrier(&nic, true);
    let thread = std::thread::Builder::new()
        .name("uplink-dgram".into())
        .spawn(move || read_loop(&nic, &shared, &stop, &socket))
        .map_err(UplinkError::Thread)?;
    Ok(Backend {
        sink,
        thread,
        cleanup,
    })
}

fn read_loop(nic: &Nic, shared: &Shared, stop: &Stop, socket: &Socket) {
    let mut buf = vec![0u8; READ_BUF];
    loop {
        match stop.wait_for(Some(socket.fd()), None, None) {
            Wait::Stop => return,
            Wait::Ready => {}
            Wait::Second | Wait::Timeout => continue,
        }
        match socket.recv(&mut buf) {
            Ok(n) => shared.received(nic, &buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) => {}
            // An ICMP error of an earlier send (port unreachable) surfaces on the next
            // receive of a UDP socket: counted, and the cable stays.
            Err(e) => shared.rx_error(&e),
        }
    }
}
