//! The listening socket of one PCI function and its accept loop.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use tracing::{debug, error, info, info_span, warn};

use super::conn::{Broken, Connection, End, Timing, STALL_TIMEOUT};
use super::dma::{mark_connection_thread, Dma, Outbound};
use super::function::{FunctionContext, PciFunction};
use super::irq::Interrupts;
use super::limits::{Account, ClientLimits};
use super::stats::Stats;
pub use super::stats::{Held, ServerStats};

#[derive(Debug)]
struct HandleInner {
    path: PathBuf,
    stop: AtomicBool,
    current: Mutex<Option<UnixStream>>,
    /// A client is taken on and its connection has not ended (set by a pool as it hands the
    /// client over; cleared when the connection ends, before the function's teardown).
    serving: AtomicBool,
    /// A clone of the listening socket, shut down to wake `accept()`.
    listener: Option<UnixListener>,
    stats: Stats,
    /// What the current client holds, and the limits.
    account: Arc<Account>,
}

/// Stops a running [`Server`] and reads its counters; cheap to clone, usable from any thread.
#[derive(Clone, Debug)]
pub struct ServerHandle {
    inner: Arc<HandleInner>,
}

impl ServerHandle {
    /// Ask the server to stop: the current client (if any) is disconnected, `run` returns and
    /// the socket file is removed. Idempotent.
    pub fn shutdown(&self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        if let Some(s) = self
            .inner
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        // Wake accept(): shutting a listening socket down makes a blocked accept() fail on
        // Linux; connecting covers the rest (and works even if that ever changes).
        if let Some(l) = &self.inner.listener {
            // SAFETY: shutdown(2) on a socket fd we own; no memory is involved.
            unsafe { libc::shutdown(l.as_raw_fd(), libc::SHUT_RDWR) };
        }
        let _ = UnixStream::connect(&self.inner.path);
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// A client is taken on: from here until its connection ends (not in the function's
    /// teardown after it) [`ServerHandle::serving_a_client`] holds.
    pub(crate) fn take_on_client(&self) {
        self.inner.serving.store(true, Ordering::SeqCst);
    }

    /// A client is being served (taken on, its connection not ended), and the server is not
    /// stopping.
    pub(crate) fn serving_a_client(&self) -> bool {
        self.inner.serving.load(Ordering::SeqCst) && !self.inner.stop.load(Ordering::SeqCst)
    }

    pub fn stats(&self) -> ServerStats {
        let s = &self.inner.stats;
        let a = &self.inner.account;
        ServerStats {
            connections: s.connections.load(Ordering::Relaxed),
            messages: s.messages.load(Ordering::Relaxed),
            region_reads: s.region_reads.load(Ordering::Relaxed),
            error_replies: s.error_replies.load(Ordering::Relaxed),
            silent_errors: s.silent_errors.load(Ordering::Relaxed),
            protocol_closes: s.protocol_closes.load(Ordering::Relaxed),
            panics: s.panics.load(Ordering::Relaxed),
            unshared_maps_refused: s.unshared_maps_refused.load(Ordering::Relaxed),
            held: Held {
                connected: self
                    .inner
                    .current
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_some(),
                dma_maps: a.maps.load(Ordering::Relaxed),
                mapped_bytes: a.mapped_bytes.load(Ordering::Relaxed),
                shared_maps: a.shared_maps.load(Ordering::Relaxed),
                huge_page_maps: a.huge_page_maps.load(Ordering::Relaxed),
                fds: a.fds(),
            },
            limits: a.limits(),
            limit_refusals: a.refusals.load(Ordering::Relaxed),
        }
    }
}

/// A vfio-user server for one PCI function: one listening UNIX socket, one client at a time.
/// When a client goes away the function is detached and reset and the next client is accepted.
pub struct Server {
    pub(super) listener: UnixListener,
    function: Box<dyn PciFunction>,
    handle: ServerHandle,
    timing: Timing,
    /// Clients served so far (for the `conn` span).
    conn_no: u64,
}

impl Server {
    /// Bind the socket at `path`. A stale socket file nobody listens on is replaced; a live one
    /// is an `AddrInUse` error.
    pub fn bind(
        path: impl AsRef<Path>,
        function: impl PciFunction + 'static,
    ) -> io::Result<Server> {
        Self::bind_boxed(path.as_ref(), Box::new(function))
    }

    /// [`Server::bind`] for an already boxed function.
    pub fn bind_boxed(path: &Path, function: Box<dyn PciFunction>) -> io::Result<Server> {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "the path exists and is not a socket",
                ));
            }
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another process serves this socket",
                ));
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        let wake = listener.try_clone().ok();
        Ok(Server {
            listener,
            function,
            conn_no: 0,
            timing: Timing {
                stall_timeout: STALL_TIMEOUT,
                busy_poll: Duration::ZERO,
                nap_poll: Duration::ZERO,
            },
            handle: ServerHandle {
                inner: Arc::new(HandleInner {
                    path: path.to_path_buf(),
                    stop: AtomicBool::new(false),
                    current: Mutex::new(None),
                    serving: AtomicBool::new(false),
                    listener: wake,
                    stats: Stats::default(),
                    account: Arc::new(Account::default()),
                }),
            },
        })
    }

    /// How long a message that has started may take to arrive whole; a client that stalls
    /// mid-message longer than this is disconnected (default 10 s). An idle client between
    /// messages is never timed out.
    pub fn set_stall_timeout(&mut self, timeout: Duration) {
        self.timing.stall_timeout = timeout;
    }

    /// How long a connection that finds no message waiting looks for its client's next one,
    /// awake, before it naps or sleeps in the kernel (default 0); it does while the client's
    /// messages are sparse (its naps at their shortest). A client posting to an awake
    /// connection does not pay for a wakeup; the price is this thread's CPU while it looks.
    pub fn set_busy_poll(&mut self, busy_poll: Duration) {
        self.timing.busy_poll = busy_poll;
    }

    /// After busy polling, how long a connection keeps looking for its client's next message
    /// with a sleep between looks before it sleeps in `recvmsg` (default 0). While it naps it
    /// is not waiting on the socket, so a client posting to it wakes nobody; the thread pays a
    /// timer wakeup per look instead, for every message that arrived meanwhile. The sleep
    /// grows from 50 to 500 µs while every look finds a message and shrinks when one finds
    /// none.
    pub fn set_nap_poll(&mut self, nap_poll: Duration) {
        self.timing.nap_poll = nap_poll;
    }

    /// What each client may make the server hold ([`ClientLimits::default`] unless set); a
    /// request over a limit is refused with ENOSPC. Takes effect from the next client.
    pub fn set_limits(&mut self, limits: ClientLimits) {
        self.handle.inner.account.set_limits(limits);
    }

    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    pub fn path(&self) -> &Path {
        self.handle.path()
    }

    /// The accept loop. Run it on its own thread; it returns after [`ServerHandle::shutdown`]
    /// (and removes the socket file when the `Server` drops, which is here). Many servers can
    /// share one accepting thread instead: [`super::Pool`].
    pub fn run(mut self) -> io::Result<()> {
        mark_connection_thread();
        let inner = self.handle.inner.clone();
        let _span = self.span().entered();
        info!("listening");
        loop {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if inner.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    error!(error = %e, "accept failed");
                    thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            if inner.stop.load(Ordering::SeqCst) {
                break;
            }
            self.serve_client(stream);
            if inner.stop.load(Ordering::SeqCst) {
                break;
            }
        }
        info!("stopped");
        Ok(())
    }

    /// The `vfio` span every message of this socket is logged in.
    pub(super) fn span(&self) -> tracing::Span {
        info_span!("vfio", socket = %self.handle.inner.path.display())
    }

    pub(super) fn stopped(&self) -> bool {
        self.handle.inner.stop.load(Ordering::SeqCst)
    }

    /// Serves one accepted client until it goes away (or shutdown), then detaches and resets
    /// the function. Runs on the connection's thread.
    pub(super) fn serve_client(&mut self, stream: UnixStream) {
        let inner = self.handle.inner.clone();
        self.conn_no += 1;
        inner.stats.connections.fetch_add(1, Ordering::Relaxed);
        let _conn_span = info_span!("conn", n = self.conn_no).entered();
        info!("client connected");
        *inner.current.lock().unwrap_or_else(|e| e.into_inner()) = stream.try_clone().ok();
        self.serve_one(stream);
        *inner.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn serve_one(&mut self, stream: UnixStream) {
        let inner = self.handle.inner.clone();
        let info = self.function.info();
        let (outbound, out_rx) = Outbound::new();
        let account = inner.account.clone();
        account.begin();
        let dma = Dma::accounted(
            Some(outbound.clone()),
            info.needs_shared_memory,
            account.clone(),
        );
        let irqs = Interrupts::accounted(info.irq_counts, account);
        let ctx = FunctionContext {
            dma: dma.clone(),
            irqs: irqs.clone(),
        };
        let function = &mut self.function;
        let attached = catch_unwind(AssertUnwindSafe(|| function.attach(ctx.clone())));

        let closed = Arc::new(AtomicBool::new(false));
        // Whether the client got past VERSION: before it every command is refused, so a
        // connection that ends there (a look at whether the socket is alive: a second `serve`
        // on the same directory, a health check) changed nothing the reset must undo.
        let mut negotiated = true;
        let end = match attached.map(|()| {
            Connection::new(
                stream,
                &mut *self.function,
                ctx,
                outbound.clone(),
                &inner.stats,
                &inner.stop,
                self.timing,
            )
        }) {
            Err(_) => {
                inner.stats.panics.fetch_add(1, Ordering::Relaxed);
                End::Protocol(Broken::PanicInAttach)
            }
            Ok(Err(e)) => End::Protocol(Broken::Setup(e)),
            Ok(Ok((mut conn, writer))) => {
                // The writer thread sends our DMA requests, so that no thread that asks for a
                // DMA ever blocks on this client's socket.
                let closed2 = closed.clone();
                let writer_thread =
                    thread::Builder::new()
                        .name("vfio-dma-out".into())
                        .spawn(move || loop {
                            match out_rx.recv_timeout(Duration::from_millis(200)) {
                                Ok(msg) if msg.is_empty() => break,
                                Ok(msg) => {
                                    use std::io::Write;
                                    let mut w = writer.lock().unwrap_or_else(|e| e.into_inner());
                                    if w.write_all(&msg).is_err() {
                                        break;
                                    }
                                }
                                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                                    if closed2.load(Ordering::Acquire) {
                                        break;
                                    }
                                }
                                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                            }
                        });
                let end = match catch_unwind(AssertUnwindSafe(|| conn.serve())) {
                    Ok(end) => {
                        negotiated = conn.negotiated();
                        end
                    }
                    Err(_) => {
                        inner.stats.panics.fetch_add(1, Ordering::Relaxed);
                        End::Protocol(Broken::Panic)
                    }
                };
                closed.store(true, Ordering::Release);
                outbound.wake_writer();
                if let Ok(t) = writer_thread {
                    let _ = t.join();
                }
                end
            }
        };
        // The client is gone: what follows is the function's teardown, after which the next
        // client is served (a pool refuses others only while one is served).
        inner.serving.store(false, Ordering::SeqCst);
        match &end {
            End::Eof => info!("client disconnected"),
            End::Stopped => info!("connection closed for shutdown"),
            End::Protocol(why) => {
                inner.stats.protocol_closes.fetch_add(1, Ordering::Relaxed);
                warn!(why = %why, "connection closed")
            }
        }
        outbound.close();
        dma.detach();
        irqs.detach();
        let function = &mut self.function;
        if catch_unwind(AssertUnwindSafe(|| {
            function.detach();
            if negotiated {
                function.reset();
            } else {
                debug!("the client left before VERSION: no reset");
            }
        }))
        .is_err()
        {
            inner.stats.panics.fetch_add(1, Ordering::Relaxed);
            error!("the function panicked in detach/reset");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.handle.inner.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfio::region;
    use crate::vfio::test_function::ConfigOnly;
    use std::io::Write;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// What `sriov-emu -vv` (or `RUST_LOG=trace`) shows: every message, in its spans.
    #[test]
    fn trace_level_logs_every_message_with_its_connection() {
        let dir = std::env::temp_dir().join(format!("sriov-emu-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("trace.sock");
        let server = Server::bind(&path, ConfigOnly::new(0xab)).unwrap();
        let handle = server.handle();
        let log = Captured::default();
        let sink = log.clone();
        let t = thread::spawn(move || {
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_writer(move || sink.clone())
                .finish();
            tracing::subscriber::with_default(subscriber, || server.run())
        });
        let mut client = vfio_user::Client::new(&path).unwrap();
        let mut b = [0u8; 4];
        client.region_read(region::CONFIG, 0, &mut b).unwrap();
        assert_eq!(b, [0xab; 4]);
        drop(client);
        handle.shutdown();
        t.join().unwrap().unwrap();
        let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        for needle in [
            "listening",
            "client connected",
            "VERSION",
            "DeviceGetRegionInfo",
            "REGION_READ",
            "conn{n=1}",
            "client disconnected",
        ] {
            assert!(text.contains(needle), "no {needle:?} in the trace:\n{text}");
        }
        assert!(!path.exists());
    }

    /// Sends `msg` and reads the reply's header.
    fn call(s: &mut UnixStream, msg: &[u8]) -> crate::vfio::wire::Header {
        use std::io::Read;
        s.write_all(msg).unwrap();
        let mut h = [0u8; crate::vfio::wire::HEADER_SIZE];
        s.read_exact(&mut h).unwrap();
        let h = crate::vfio::wire::Header::parse(&h);
        let mut rest = vec![0u8; h.size as usize - h.size.min(16) as usize];
        s.read_exact(&mut rest).unwrap();
        h
    }

    /// QEMU without shared RAM: one error line per connection, naming the QEMU options, however
    /// many maps are refused; every refusal counted.
    #[test]
    fn unshared_ram_is_logged_once_per_connection_with_the_fix() {
        use crate::vfio::wire::MessageBuilder;
        let dir = std::env::temp_dir().join(format!("sriov-emu-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("unshared.sock");
        let server = Server::bind(
            &path,
            ConfigOnly {
                fill: 0xab,
                shared: true,
            },
        )
        .unwrap();
        let handle = server.handle();
        let log = Captured::default();
        let sink = log.clone();
        let t = thread::spawn(move || {
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::ERROR)
                .with_ansi(false)
                .with_writer(move || sink.clone())
                .finish();
            tracing::subscriber::with_default(subscriber, || server.run())
        });
        let map = |id, iova: u64| {
            MessageBuilder::new(id, vfio_user::Command::DmaMap as u16, 0)
                .u32(32)
                .u32(3)
                .u64(0)
                .u64(iova)
                .u64(0x1000)
                .finish()
        };
        for _ in 0..2 {
            let mut s = UnixStream::connect(&path).unwrap();
            let version = MessageBuilder::new(1, vfio_user::Command::Version as u16, 0)
                .u16(0)
                .u16(0)
                .finish();
            assert!(!call(&mut s, &version).is_error());
            for (id, iova) in [(2, 0), (3, 0x10_0000), (4, 0x20_0000)] {
                let h = call(&mut s, &map(id, iova));
                assert!(h.is_error());
                assert_eq!(h.error, libc::EOPNOTSUPP as u32);
            }
        }
        handle.shutdown();
        t.join().unwrap().unwrap();
        assert_eq!(handle.stats().unshared_maps_refused, 6);
        let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().filter(|l| l.contains("ERROR")).collect();
        assert_eq!(lines.len(), 2, "one per connection:\n{text}");
        for l in lines {
            assert!(l.contains(crate::vfio::QEMU_SHARED_MEMORY_OPTIONS), "{l}");
            assert!(l.contains("QEMU will fail to realize the device"), "{l}");
        }
    }

    #[test]
    fn shutdown_wakes_accept_even_without_the_socket_file() {
        let dir = std::env::temp_dir().join(format!("sriov-emu-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gone.sock");
        let server = Server::bind(&path, ConfigOnly::new(0xab)).unwrap();
        let handle = server.handle();
        let t = thread::spawn(move || server.run());
        thread::sleep(Duration::from_millis(50));
        std::fs::remove_file(&path).unwrap();
        handle.shutdown();
        t.join().unwrap().unwrap();
    }
}
