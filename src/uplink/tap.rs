//! A TAP device behind the uplink: `/dev/net/tun` with `IFF_TAP | IFF_NO_PI`, as Linux's
//! `Documentation/networking/tuntap.rst` describes. `TUNSETIFF` with a name creates the TAP
//! if no interface has that name and attaches to it if a TAP of that name exists (a
//! persistent one, made with `ip tuntap add`); either needs `CAP_NET_ADMIN`, or a persistent
//! TAP owned by this user. A TAP we created goes away when we close it.
//!
//! Each `read` gives one frame and each `write` sends one (`IFF_NO_PI`: no packet-information
//! header; no `IFF_VNET_HDR`, so no offloads and frames of the TAP's MTU). The TAP can be
//! moved to another network namespace while we hold it open. Its carrier is up while we hold
//! it: the kernel turns a TAP's carrier on when a file attaches (`tun_attach` in
//! `drivers/net/tun.c`). A write to a TAP whose interface is down fails with `EIO` (the frame
//! is counted as dropped).

use std::ffi::c_char;
use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;

use model::{Nic, PortSink};
use tracing::{info, warn};

use super::{Backend, IfName, Shared, Stop, UplinkError, Wait, MAX_IFNAME};
use eswitch::Delivery;

/// `TUNSETIFF`: `_IOW('T', 202, int)` (`include/uapi/linux/if_tun.h`).
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
/// `ifr_flags` of `TUNSETIFF` (`include/uapi/linux/if_tun.h`).
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
/// The TUN clone device.
const TUN_DEVICE: &str = "/dev/net/tun";
/// One read: larger than any frame a TAP without offloads hands us (the oversize check
/// follows).
const READ_BUF: usize = 65536;

/// `struct ifreq` as `TUNSETIFF` reads and writes it: the name, then the flags, in a 40-byte
/// union (`include/uapi/linux/if.h`).
#[repr(C)]
struct IfReq {
    name: [c_char; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// An open TAP: the file and the interface's name as the kernel has it.
#[derive(Debug)]
pub struct TapFd {
    pub(super) fd: OwnedFd,
    pub(super) name: String,
}

/// Opens `/dev/net/tun` and creates or attaches the TAP `name`.
pub fn open(name: &IfName) -> Result<TapFd, UplinkError> {
    let io = |what: &str, e| UplinkError::io("name", name, what, e);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(TUN_DEVICE)
        .map_err(|e| io(&format!("opening {TUN_DEVICE}"), e))?;
    let existed = std::path::Path::new("/sys/class/net")
        .join(name.as_str())
        .exists();
    let mut req = IfReq {
        name: [0; 16],
        flags: IFF_TAP | IFF_NO_PI,
        _pad: [0; 22],
    };
    for (d, s) in req
        .name
        .iter_mut()
        .zip(name.as_str().bytes().take(MAX_IFNAME))
    {
        *d = s as c_char;
    }
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which `req` is (40 bytes,
    // NUL-terminated name); the descriptor is ours.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, &mut req as *mut IfReq) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        let what = match e.raw_os_error() {
            Some(libc::EPERM) => "TUNSETIFF (creating or attaching a TAP needs CAP_NET_ADMIN, or a persistent TAP this user owns)",
            Some(libc::EBUSY) => "TUNSETIFF (the TAP is already attached to another file)",
            Some(libc::EINVAL) => "TUNSETIFF (an interface of this name exists and is not a TAP)",
            _ => "TUNSETIFF",
        };
        return Err(io(what, e));
    }
    let actual: String = req
        .name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8 as char)
        .collect();
    info!(tap = %actual, existed, "TAP {}", if existed { "attached" } else { "created" });
    Ok(TapFd {
        fd: file.into(),
        name: actual,
    })
}

/// Frames the switch sends to the uplink, written to the TAP (one `write` each).
struct TapSink {
    fd: Arc<OwnedFd>,
    shared: Arc<Shared>,
}

impl PortSink for TapSink {
    fn deliver(&self, d: &Delivery) {
        let frame = &d.frame[..];
        // SAFETY: writes `frame.len()` bytes from a live slice to a descriptor we own.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len()) };
        if n >= 0 {
            self.shared.counters.sent(frame.len());
            return;
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN) => self.shared.tx_dropped("the TAP's queue is full"),
            Some(libc::EIO) => self.shared.tx_dropped("the TAP interface is down"),
            _ => self.shared.tx_error(&e),
        }
    }
}

/// Registers the sink and starts the thread that reads the TAP.
pub(super) fn run(
    nic: Arc<Nic>,
    shared: Arc<Shared>,
    stop: Arc<Stop>,
    tap: TapFd,
) -> Result<Backend, UplinkError> {
    let fd = Arc::new(tap.fd);
    let sink = Arc::new(TapSink {
        fd: fd.clone(),
        shared: shared.clone(),
    });
    // The TAP is open: its carrier is on.
    shared.set_carrier(&nic, true);
    let thread = std::thread::Builder::new()
        .name(format!("uplink-{}", tap.name))
        .spawn(move || read_loop(&nic, &shared, &stop, &fd))
        .map_err(UplinkError::Thread)?;
    Ok(Backend {
        sink,
        thread,
        cleanup: Vec::new(),
    })
}

fn read_loop(nic: &Nic, shared: &Shared, stop: &Stop, fd: &OwnedFd) {
    let mut buf = vec![0u8; READ_BUF];
    loop {
        match stop.wait_for(Some(fd.as_raw_fd()), None, None) {
            Wait::Stop => return,
            Wait::Ready => {}
            Wait::Second | Wait::Timeout => continue,
        }
        // SAFETY: reads at most `buf.len()` bytes into a live buffer from our descriptor.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            shared.received(nic, &buf[..n as usize]);
            continue;
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) => {}
            _ => {
                // The interface was deleted (EBADFD) or the file broke: no carrier until
                // the uplink is restarted.
                shared.rx_error(&e);
                warn!(backend = %shared.backend, error = %e, "TAP unreadable: uplink carrier down");
                shared.set_carrier(nic, false);
                let _ = stop.wait_for(None, None, None);
                return;
            }
        }
    }
}
