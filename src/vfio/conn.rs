//! One client connection: read a message whole, demultiplex replies to our DMA requests from the
//! client's commands, handle commands strictly in order, reply (or not, for NO_REPLY).

use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{debug, debug_span, error, trace, warn};
use vfio_bindings::bindings::vfio::*;
use vfio_user::Command;

use super::dma::{Dma, MapRefusal, Outbound};
use super::function::{region, FunctionContext, FunctionInfo, PciFunction, NUM_REGIONS};
use super::inbox::{Fds, Inbox};
use super::irq::{index as irq, Interrupts, SetIrqsError, NUM_IRQS};
use super::naps::{Look, Naps};
use super::stats::Stats;
use super::wire::{self, payload, Cursor, Header, MessageBuilder, HEADER_SIZE};

/// The socket read timeout: how often an idle connection checks for shutdown.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Default for how long a message that has started may take to arrive whole before the
/// connection is closed ([`Server::set_stall_timeout`](super::Server::set_stall_timeout)).
pub(crate) const STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// A reply that cannot be written within this time closes the connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a connection ended.
#[derive(Debug)]
pub(crate) enum End {
    /// The client closed the socket.
    Eof,
    /// Shutdown was requested.
    Stopped,
    /// The stream cannot be trusted any more (framing error, stalled message, I/O error).
    Protocol(Broken),
}

/// Why a connection's stream cannot be trusted any more.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Broken {
    #[error("message size {0} out of bounds")]
    Size(usize),
    #[error("write: {0}")]
    Write(std::io::Error),
    #[error("EOF inside a header")]
    EofInHeader,
    #[error("header stalled")]
    HeaderStalled,
    #[error("recvmsg: {0}")]
    Recv(std::io::Error),
    #[error("EOF inside a message")]
    EofInMessage,
    #[error("message stalled")]
    MessageStalled,
    #[error("read: {0}")]
    Read(std::io::Error),
    #[error("socket setup: {0}")]
    Setup(std::io::Error),
    #[error("the function panicked in attach")]
    PanicInAttach,
    #[error("the function panicked")]
    Panic,
}

/// Result of handling one command: a reply, nothing (NO_REPLY or nothing to say), or an errno.
type Handled = Result<Option<Vec<u8>>, i32>;

pub(crate) struct Connection<'a> {
    reader: UnixStream,
    writer: Arc<Mutex<UnixStream>>,
    function: &'a mut dyn PciFunction,
    info: FunctionInfo,
    dma: Dma,
    irqs: Interrupts,
    outbound: Arc<Outbound>,
    negotiated: bool,
    /// A writable DMA_MAP was refused because the client's RAM is not shared (see
    /// [`Connection::device_info`]); logged once.
    ram_not_shared: bool,
    /// DEVICE_GET_INFO has been answered (QEMU has realized the device or is about to).
    info_served: bool,
    stats: &'a Stats,
    stop: &'a AtomicBool,
    timing: Timing,
    /// How the next look for a message naps.
    naps: Naps,
    /// Bytes read and not yet handled.
    inbox: Inbox,
}

/// How a connection waits for its client.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    /// A message that has started must arrive whole within this.
    pub stall_timeout: Duration,
    /// When no message waits, look for the next one awake this long (while the client's
    /// messages are sparse)...
    pub busy_poll: Duration,
    /// ...then this long with a sleep between looks, off the socket's wait queue, before
    /// sleeping in the kernel's `recvmsg`.
    pub nap_poll: Duration,
}

impl<'a> Connection<'a> {
    pub(crate) fn new(
        stream: UnixStream,
        function: &'a mut dyn PciFunction,
        ctx: FunctionContext,
        outbound: Arc<Outbound>,
        stats: &'a Stats,
        stop: &'a AtomicBool,
        timing: Timing,
    ) -> io::Result<(Connection<'a>, Arc<Mutex<UnixStream>>)> {
        stream.set_read_timeout(Some(POLL_INTERVAL))?;
        stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
        let writer = Arc::new(Mutex::new(stream.try_clone()?));
        let info = function.info();
        let conn = Connection {
            reader: stream,
            writer: writer.clone(),
            function,
            info,
            dma: ctx.dma,
            irqs: ctx.irqs,
            outbound,
            negotiated: false,
            ram_not_shared: false,
            info_served: false,
            stats,
            stop,
            timing,
            naps: Naps::new(),
            inbox: Inbox::default(),
        };
        Ok((conn, writer))
    }

    /// The client's VERSION was accepted (nothing else is served before it).
    pub(crate) fn negotiated(&self) -> bool {
        self.negotiated
    }

    /// Serve until the client goes away, shutdown, or a framing error.
    pub(crate) fn serve(&mut self) -> End {
        loop {
            let h = match self.read_header() {
                Ok(Some(h)) => h,
                Ok(None) => return End::Eof,
                Err(end) => return end,
            };
            let size = h.size as usize;
            if !(HEADER_SIZE..=wire::MAX_MESSAGE_SIZE).contains(&size) {
                // The stream cannot be resynchronised (or only by draining garbage): answer if
                // we may, then close.
                if h.is_command() && !h.no_reply() && size > wire::MAX_MESSAGE_SIZE {
                    let _ = self.send(&wire::error_reply(&h, libc::E2BIG));
                }
                return End::Protocol(Broken::Size(size));
            }
            let fds = self.inbox.take_fds(size);
            if let Err(end) = self.read_rest(size) {
                return end;
            }
            self.stats.messages.fetch_add(1, Ordering::Relaxed);
            // The message is handled in place, in the read-ahead buffer (taken out of `self`
            // meanwhile: handling never reads the socket).
            let mut inbox = std::mem::take(&mut self.inbox);
            let ended = self.dispatch(&h, &inbox.message(size)[HEADER_SIZE..], fds);
            inbox.consume(size);
            self.inbox = inbox;
            if let Some(end) = ended {
                return end;
            }
        }
    }

    /// Handles one message whose bytes are all read: a reply to one of our DMA requests, or a
    /// command, answered unless it is NO_REPLY. `Some` ends the connection.
    fn dispatch(&mut self, h: &Header, payload: &[u8], fds: Fds) -> Option<End> {
        let h = *h;

        let fds = match fds {
            Fds::Got(fds) => fds,
            Fds::TooMany => {
                // Refused whatever the message is (the fds are closed already).
                debug!(id = h.id, "more than max_msg_fds fds: refused");
                if h.is_command() && !h.no_reply() {
                    self.stats.error_replies.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = self.send(&wire::error_reply(&h, libc::EINVAL)) {
                        return Some(End::Protocol(Broken::Write(e)));
                    }
                }
                return None;
            }
        };
        if h.is_reply() {
            drop(fds);
            if !self
                .outbound
                .complete(&h, payload.to_vec(), self.dma.error_counter())
            {
                warn!(
                    id = h.id,
                    command = h.command,
                    "reply to no request of ours; dropped"
                );
            }
            return None;
        }

        let cmd = h.known_command();
        let _span = debug_span!("msg", id = h.id, cmd = ?cmd.unwrap_or_default(), raw = h.command)
            .entered();
        trace!(size = h.size, flags = h.flags, fds = fds.len(), "received");
        let result = if h.is_command() {
            self.handle(&h, payload, fds)
        } else {
            Err(libc::EINVAL)
        };
        // A client waiting for this reply gets its next message looked for without a nap.
        self.naps.served(!h.no_reply());
        match (result, h.no_reply()) {
            (Ok(Some(reply)), false) => {
                trace!(size = reply.len(), "reply");
                if let Err(e) = self.send(&reply) {
                    return Some(End::Protocol(Broken::Write(e)));
                }
            }
            (Ok(_), _) => {}
            (Err(errno), false) => {
                self.stats.error_replies.fetch_add(1, Ordering::Relaxed);
                debug!(errno, "error reply");
                if let Err(e) = self.send(&wire::error_reply(&h, errno)) {
                    return Some(End::Protocol(Broken::Write(e)));
                }
            }
            (Err(errno), true) => {
                // Never reply to NO_REPLY, not even with an error. A guest hammering a
                // register can produce these at line rate: warn for the first few only.
                let n = self.stats.silent_errors.fetch_add(1, Ordering::Relaxed);
                if n < 16 {
                    warn!(errno, "posted message failed (no reply allowed)");
                } else {
                    debug!(errno, "posted message failed (no reply allowed)");
                }
            }
        }
        None
    }

    /// Called when the socket was found empty: looks for the client's next message before the
    /// blocking read, first awake for up to [`Timing::busy_poll`], then for up to
    /// [`Timing::nap_poll`] more with a sleep between looks.
    ///
    /// A client that posts a message to a thread asleep in `recvmsg` pays for waking it inside
    /// its `sendmsg` (`sock_def_readable`): QEMU does that on its vCPU thread for every posted
    /// register write, and under TCG the vCPU is the scarce resource. A burst's next write
    /// usually comes within microseconds and finds this thread awake. A napping thread is not
    /// waiting on the socket either, so a write that comes while it naps wakes nobody; the
    /// thread's own timer wakes it, once for every message that arrived meanwhile.
    ///
    /// The sleep adapts ([`Naps`]): a look that finds a message doubles the next one (up to
    /// [`NAP_STEP_MAX`](super::naps::NAP_STEP_MAX)), an empty look halves it, and a silence
    /// as long as the whole nap resets it. After a reply (a client that waits for one is
    /// stalled until it comes) the look is the busy poll alone, then the socket's wait.
    /// A stream of posted writes is thus taken in batches,
    /// at about a wakeup every millisecond, and the driver's interrupt re-enables in it come
    /// later, so its adaptive interrupt rate settles lower; sparse exchanges (a ping) get the
    /// short sleep, and the busy poll, which only runs at the short sleep.
    ///
    /// Each look is a non-blocking read into the inbox. `Some`: what the look that found
    /// something read (bytes, EOF or an error, for the caller to handle as its own read's);
    /// `None`: nothing came while looking.
    fn look_for_next_message(&mut self) -> Option<io::Result<usize>> {
        let Look { spin, nap } = self.naps.look(self.timing.busy_poll, self.timing.nap_poll);
        if spin.is_zero() && nap.is_zero() {
            return None;
        }
        // The caller has just found the socket empty: wait first, then look.
        let start = Instant::now();
        let mut napped = false;
        loop {
            let spent = start.elapsed();
            if spent < spin {
                // Let a thread that shares this core run (QEMU's own I/O thread, which
                // injects the interrupts this device raises), rather than spin it out.
                std::thread::yield_now();
            } else if spent < spin + nap && !self.stop.load(Ordering::Relaxed) {
                std::thread::sleep(self.naps.step());
                napped = true;
            } else {
                self.naps.silence();
                return None;
            }
            // The look is the read itself: what it finds is already in the inbox.
            match self.inbox.fill(&self.reader, true) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                found => {
                    if napped {
                        self.naps.found();
                    }
                    return Some(found);
                }
            }
            if napped {
                self.naps.missed();
            }
        }
    }

    fn send(&self, msg: &[u8]) -> io::Result<()> {
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        w.write_all(msg)
    }

    /// Reads until the next message's 16-byte header is buffered. `Ok(None)` on a clean EOF
    /// before a message starts.
    fn read_header(&mut self) -> Result<Option<Header>, End> {
        let mut started: Option<Instant> = None;
        // A message already waiting is read at once; only when none is does the connection
        // look for one (busy polling, napping) before the blocking read.
        let mut looked = false;
        while self.inbox.len() < HEADER_SIZE {
            let first = self.inbox.len() == 0 && !looked;
            if self.inbox.len() > 0 {
                started.get_or_insert_with(Instant::now);
            }
            let read = match self.inbox.fill(&self.reader, first) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && first => {
                    looked = true;
                    match self.look_for_next_message() {
                        Some(found) => found,
                        // Nothing came while looking: the blocking read next.
                        None => continue,
                    }
                }
                read => read,
            };
            match read {
                Ok(0) => {
                    return if self.inbox.len() == 0 {
                        Ok(None)
                    } else {
                        Err(End::Protocol(Broken::EofInHeader))
                    };
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.stop.load(Ordering::Relaxed) {
                        return Err(End::Stopped);
                    }
                    if started.is_some_and(|t| t.elapsed() > self.timing.stall_timeout) {
                        return Err(End::Protocol(Broken::HeaderStalled));
                    }
                }
                Err(e) => return Err(End::Protocol(Broken::Recv(e))),
            }
        }
        Ok(self.inbox.header())
    }

    /// Reads until the whole message of `size` bytes (header included) is buffered.
    fn read_rest(&mut self, size: usize) -> Result<(), End> {
        self.inbox.reserve(size);
        let start = Instant::now();
        while self.inbox.len() < size {
            match self.inbox.fill(&self.reader, false) {
                Ok(0) => return Err(End::Protocol(Broken::EofInMessage)),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    if self.stop.load(Ordering::Relaxed) {
                        return Err(End::Stopped);
                    }
                    if start.elapsed() > self.timing.stall_timeout {
                        return Err(End::Protocol(Broken::MessageStalled));
                    }
                }
                Err(e) => return Err(End::Protocol(Broken::Read(e))),
            }
        }
        Ok(())
    }

    fn handle(&mut self, h: &Header, p: &[u8], fds: Vec<OwnedFd>) -> Handled {
        let Some(cmd) = h.known_command() else {
            debug!("unknown command");
            return Err(libc::EOPNOTSUPP);
        };
        if !self.negotiated && !matches!(cmd, Command::Version) {
            debug!("command before VERSION");
            return Err(libc::EINVAL);
        }
        // Only DMA_MAP (one) and SET_IRQS (up to count) may carry fds.
        if !fds.is_empty() && !matches!(cmd, Command::DmaMap | Command::SetIrqs) {
            debug!(fds = fds.len(), "unexpected fds");
            return Err(libc::EINVAL);
        }
        let wants_reply = matches!(
            cmd,
            Command::Version
                | Command::DeviceGetInfo
                | Command::DeviceGetRegionInfo
                | Command::GetIrqInfo
                | Command::RegionRead
        );
        if wants_reply && h.no_reply() {
            // We could never answer; executing a read for nobody could clear read-to-clear bits.
            warn!("NO_REPLY on a command whose only effect is its reply; ignored");
            return Ok(None);
        }
        match cmd {
            Command::Version => self.version(h, p),
            Command::DeviceGetInfo => self.device_info(h, p),
            Command::DeviceGetRegionInfo => self.region_info(h, p),
            Command::GetIrqInfo => self.irq_info(h, p),
            Command::SetIrqs => self.set_irqs(h, p, fds),
            Command::RegionRead => self.region_read(h, p),
            Command::RegionWrite => self.region_write(h, p),
            Command::DmaMap => self.dma_map(h, p, fds),
            Command::DmaUnmap => self.dma_unmap(h, p),
            Command::DeviceReset => {
                debug!("DEVICE_RESET");
                self.function.reset();
                Ok(Some(MessageBuilder::reply_to(h).finish()))
            }
            Command::Unknown
            | Command::GetRegionIoFds
            | Command::DmaRead
            | Command::DmaWrite
            | Command::UserDirtyPages => Err(libc::EOPNOTSUPP),
        }
    }

    fn version(&mut self, h: &Header, p: &[u8]) -> Handled {
        if self.negotiated {
            return Err(libc::EINVAL);
        }
        let mut c = Cursor::new(p);
        let (major, minor) = (
            c.u16().map_err(|_| libc::EINVAL)?,
            c.u16().map_err(|_| libc::EINVAL)?,
        );
        let json = c.rest();
        if major != 0 {
            warn!(major, minor, "unsupported protocol major version");
            return Err(libc::ENOTSUP);
        }
        if !json.is_empty() {
            let text = json
                .strip_suffix(&[0])
                .and_then(|t| std::str::from_utf8(t).ok())
                .ok_or(libc::EINVAL)?;
            match serde_json::from_str::<serde_json::Value>(text) {
                Ok(v) if v.is_object() => debug!(major, minor, caps = %v, "VERSION"),
                _ => return Err(libc::EINVAL),
            }
        }
        // Our reply must fit in the buffer QEMU sized from its own request.
        // (+1 for the NUL.)
        let fits = |j: &&&str| HEADER_SIZE + payload::VERSION + j.len() < h.size as usize;
        let caps = wire::VERSION_CAPS_CHOICES
            .iter()
            .find(fits)
            .unwrap_or(&wire::VERSION_CAPS_CHOICES[3]);
        self.negotiated = true;
        Ok(Some(
            MessageBuilder::reply_to(h)
                .u16(0)
                .u16(0) // min(client's minor, ours = 0): always 0
                .bytes(caps.as_bytes())
                .bytes(&[0])
                .finish(),
        ))
    }

    fn device_info(&mut self, h: &Header, p: &[u8]) -> Handled {
        let argsz = Cursor::new(p).u32().map_err(|_| libc::EINVAL)?;
        if (argsz as usize) < payload::DEVICE_INFO {
            return Err(libc::EINVAL);
        }
        // A function that needs shared RAM fails here, not only at the refused DMA_MAP, because
        // QEMU does not fail on a refused map. Its container sends the maps of a memory
        // transaction without waiting (`hw/vfio-user/container.c` `vfio_user_listener_begin`,
        // `vfio_user_dma_map` → `vfio_user_send_nowait`, returning 0), so
        // `hw/vfio/listener.c` `vfio_listener_region_add` never sees the error and never records
        // it in `bcontainer->error` for `vfio_listener_register` to fail realize with. Our error
        // reply is only printed ("error reply on async request", `hw/vfio-user/proxy.c`
        // `vfio_user_process` / `vfio_user_wait_reqs`, at `vfio_user_listener_commit`), and the
        // device would realize and run with no DMA. DEVICE_GET_INFO is the first request after
        // the maps whose error QEMU propagates: `vfio_user_device_attach` registers the listener
        // (all the maps of the address space, collected at its commit), then
        // `vfio_user_device_get` → `hw/vfio-user/device.c` `vfio_user_get_device_info`, and
        // `vfio_user_pci_realize` fails with that error: QEMU exits at start-up (a `-device`),
        // or `device_add` fails (hotplug). Closing the connection instead is worse: QEMU's
        // reader does not wake the request waiting for its reply (`vfio_user_recv_one`), which
        // fails only after `x-msg-timeout` (5 s) with "timed out waiting for reply". QEMU 11.1.3
        // prints "vfio vfio-user:<socket>: VFIO_USER_DEVICE_GET_INFO failed: Unknown error -95"
        // (`vfio_user_get_device_info` negates the errno); our log names the fix.
        if self.ram_not_shared {
            debug!("DEVICE_GET_INFO refused: the client's RAM is not shared");
            return Err(MapRefusal::NotShared { with_fd: false }.errno());
        }
        self.info_served = true;
        let mut flags = VFIO_DEVICE_FLAGS_PCI;
        if self.info.resettable {
            flags |= VFIO_DEVICE_FLAGS_RESET;
        }
        Ok(Some(
            MessageBuilder::reply_to(h)
                .u32(payload::DEVICE_INFO as u32)
                .u32(flags)
                .u32(NUM_REGIONS as u32)
                .u32(NUM_IRQS as u32)
                .finish(),
        ))
    }

    fn region_info(&mut self, h: &Header, p: &[u8]) -> Handled {
        if p.len() < payload::REGION_INFO {
            return Err(libc::EINVAL);
        }
        let mut c = Cursor::new(p);
        let argsz = c.u32().map_err(|_| libc::EINVAL)?;
        let _flags = c.u32().map_err(|_| libc::EINVAL)?;
        let index = c.u32().map_err(|_| libc::EINVAL)?;
        if (argsz as usize) < payload::REGION_INFO {
            return Err(libc::EINVAL);
        }
        let r = *self.info.regions.get(index as usize).ok_or(libc::EINVAL)?;
        let mut flags = 0;
        if r.size != 0 && r.readable {
            flags |= VFIO_REGION_INFO_FLAG_READ;
        }
        if r.size != 0 && r.writable {
            flags |= VFIO_REGION_INFO_FLAG_WRITE;
        }
        trace!(index, size = r.size, flags, "GET_REGION_INFO");
        // No capabilities (no sparse mmap, no fd), so the reply always fits in argsz 32 and the
        // client never needs to re-ask with a larger argsz.
        Ok(Some(
            MessageBuilder::reply_to(h)
                .u32(payload::REGION_INFO as u32)
                .u32(flags)
                .u32(index)
                .u32(0)
                .u64(r.size)
                .u64(0)
                .finish(),
        ))
    }

    fn irq_info(&mut self, h: &Header, p: &[u8]) -> Handled {
        let mut c = Cursor::new(p);
        let argsz = c.u32().map_err(|_| libc::EINVAL)?;
        let _flags = c.u32().map_err(|_| libc::EINVAL)?;
        let index = c.u32().map_err(|_| libc::EINVAL)?;
        if (argsz as usize) < payload::IRQ_INFO {
            return Err(libc::EINVAL);
        }
        if index as usize >= NUM_IRQS {
            return Err(libc::EINVAL);
        }
        // The table's size: the function's count, capped at MAX_VECTORS.
        let count = self.irqs.count(index);
        let flags = VFIO_IRQ_INFO_EVENTFD
            | match index {
                irq::INTX => VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED,
                irq::MSI => VFIO_IRQ_INFO_NORESIZE,
                _ => 0,
            };
        trace!(index, count, flags, "GET_IRQ_INFO");
        Ok(Some(
            MessageBuilder::reply_to(h)
                .u32(payload::IRQ_INFO as u32)
                .u32(flags)
                .u32(index)
                .u32(count)
                .finish(),
        ))
    }

    fn set_irqs(&mut self, h: &Header, p: &[u8], fds: Vec<OwnedFd>) -> Handled {
        let mut c = Cursor::new(p);
        let mut next = || c.u32().map_err(|_| libc::EINVAL);
        let (argsz, flags, index, start, count) = (next()?, next()?, next()?, next()?, next()?);
        if (argsz as usize) < payload::SET_IRQS || index as usize >= NUM_IRQS {
            return Err(libc::EINVAL);
        }
        if fds.len() > count as usize {
            return Err(libc::EINVAL);
        }
        debug!(index, flags, start, count, fds = fds.len(), "SET_IRQS");
        match self.irqs.set_irqs(index, flags, start, count, fds) {
            Ok(()) => Ok(Some(MessageBuilder::reply_to(h).finish())),
            Err(SetIrqsError::Invalid(why)) => {
                debug!(why, "SET_IRQS refused");
                Err(libc::EINVAL)
            }
            Err(SetIrqsError::NotSupported(why)) => {
                debug!(why, "SET_IRQS not supported");
                Err(libc::EOPNOTSUPP)
            }
            Err(SetIrqsError::Limit) => Err(libc::ENOSPC),
        }
    }

    /// Check a region access: index, direction, count bound, range. Returns the region index.
    fn check_access(&self, index: u32, offset: u64, count: u32, write: bool) -> Result<(), i32> {
        let r = self.info.regions.get(index as usize).ok_or(libc::EINVAL)?;
        if count as usize > wire::MAX_DATA_XFER {
            return Err(libc::E2BIG);
        }
        let allowed = if write { r.writable } else { r.readable };
        let end = offset.checked_add(u64::from(count)).ok_or(libc::EINVAL)?;
        if count == 0 || !allowed || end > r.size {
            return Err(libc::EINVAL);
        }
        Ok(())
    }

    fn region_read(&mut self, h: &Header, p: &[u8]) -> Handled {
        let mut c = Cursor::new(p);
        let offset = c.u64().map_err(|_| libc::EINVAL)?;
        let index = c.u32().map_err(|_| libc::EINVAL)?;
        let count = c.u32().map_err(|_| libc::EINVAL)?;
        self.check_access(index, offset, count, false)?;
        self.stats.region_reads.fetch_add(1, Ordering::Relaxed);
        let mut data = vec![0u8; count as usize];
        if index == region::CONFIG {
            self.function.config_read(offset, &mut data);
        } else {
            self.function
                .region_read(index, offset, &mut data)
                .map_err(|e| e.errno())?;
        }
        trace!(
            index,
            offset = format_args!("{offset:#x}"),
            count,
            "REGION_READ"
        );
        Ok(Some(
            MessageBuilder::reply_to(h)
                .u64(offset)
                .u32(index)
                .u32(count)
                .bytes(&data)
                .finish(),
        ))
    }

    fn region_write(&mut self, h: &Header, p: &[u8]) -> Handled {
        let mut c = Cursor::new(p);
        let offset = c.u64().map_err(|_| libc::EINVAL)?;
        let index = c.u32().map_err(|_| libc::EINVAL)?;
        let count = c.u32().map_err(|_| libc::EINVAL)?;
        let data = c.rest();
        if data.len() != count as usize {
            return Err(libc::EINVAL);
        }
        self.check_access(index, offset, count, true)?;
        trace!(
            index,
            offset = format_args!("{offset:#x}"),
            count,
            posted = h.no_reply(),
            "REGION_WRITE"
        );
        if index == region::CONFIG {
            self.function.config_write(offset, data);
        } else {
            self.function
                .region_write(index, offset, data)
                .map_err(|e| e.errno())?;
        }
        if h.no_reply() {
            // Posted (QEMU posts every BAR write): no reply to build.
            return Ok(None);
        }
        Ok(Some(
            MessageBuilder::reply_to(h)
                .u64(offset)
                .u32(index)
                .u32(count)
                .finish(),
        ))
    }

    fn dma_map(&mut self, h: &Header, p: &[u8], mut fds: Vec<OwnedFd>) -> Handled {
        let mut c = Cursor::new(p);
        let argsz = c.u32().map_err(|_| libc::EINVAL)?;
        let flags = c.u32().map_err(|_| libc::EINVAL)?;
        let offset = c.u64().map_err(|_| libc::EINVAL)?;
        let iova = c.u64().map_err(|_| libc::EINVAL)?;
        let size = c.u64().map_err(|_| libc::EINVAL)?;
        if (argsz as usize) < payload::DMA_MAP || fds.len() > 1 {
            return Err(libc::EINVAL);
        }
        match self.dma.map(iova, size, flags, offset, fds.pop()) {
            Ok(()) => Ok(Some(MessageBuilder::reply_to(h).finish())),
            Err(refusal @ MapRefusal::NotShared { with_fd }) => {
                self.stats
                    .unshared_maps_refused
                    .fetch_add(1, Ordering::Relaxed);
                if !self.ram_not_shared {
                    self.ram_not_shared = true;
                    let why = if with_fd {
                        "came with an fd the server cannot mmap (see the warning above)"
                    } else {
                        "came without an fd: the guest RAM is not shared"
                    };
                    let outcome = if self.info_served {
                        "DMA into this range will fail"
                    } else {
                        "QEMU will fail to realize the device"
                    };
                    error!(
                        iova = format_args!("{iova:#x}"),
                        size = format_args!("{size:#x}"),
                        "refusing writable guest memory that {why}: this device DMAs only into \
                         shared guest memory. Start QEMU with {} (<RAM> = its -m size). \
                         {outcome}.",
                        super::QEMU_SHARED_MEMORY_OPTIONS
                    );
                }
                Err(refusal.errno())
            }
            Err(refusal) => Err(refusal.errno()),
        }
    }

    fn dma_unmap(&mut self, h: &Header, p: &[u8]) -> Handled {
        let mut c = Cursor::new(p);
        let argsz = c.u32().map_err(|_| libc::EINVAL)?;
        let flags = c.u32().map_err(|_| libc::EINVAL)?;
        let iova = c.u64().map_err(|_| libc::EINVAL)?;
        let size = c.u64().map_err(|_| libc::EINVAL)?;
        if (argsz as usize) < payload::DMA_UNMAP {
            return Err(libc::EINVAL);
        }
        // The crate's DmaUnmapFlags has these bits wrong; read the kernel's values.
        if flags & (VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP | VFIO_DMA_UNMAP_FLAG_VADDR) != 0 {
            return Err(libc::EOPNOTSUPP);
        }
        self.dma
            .unmap(iova, size, flags & VFIO_DMA_UNMAP_FLAG_ALL != 0)?;
        // Echo the request's fixed part (the crate's Client reads exactly that; QEMU accepts it).
        Ok(Some(
            MessageBuilder::reply_to(h)
                .bytes(&p[..payload::DMA_UNMAP])
                .finish(),
        ))
    }
}
