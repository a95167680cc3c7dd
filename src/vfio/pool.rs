//! Many servers on one accepting thread: a function with no client costs a listening socket,
//! not a thread. [`Pool::start`] takes the bound [`Server`]s; one thread polls every idle
//! listener, and each accepted client gets a connection thread (and its DMA writer thread) that
//! serves it and hands the server back when the client goes away. Threads therefore scale with
//! attached clients: one for the pool, two per client.
//!
//! A function serves one client at a time, as a device is one VM's. A second client of a busy
//! function (a second QEMU started on the same socket) is not left waiting in the listen queue
//! until the first goes: if the first is still served after [`BUSY_GRACE`], the second's first
//! request is answered with EBUSY and the connection closed, so that QEMU fails naming the
//! error rather than after its reply timeout. The grace serves a client that reconnects at
//! once, before the server has seen its old connection end.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tracing::{debug, error, info, warn};

use super::dma::mark_connection_thread;
use super::server::{Server, ServerHandle};
use super::wire::{self, Header, HEADER_SIZE};

/// How long a second client of a busy function waits in the listen queue for the function to
/// be free before it is refused.
const BUSY_GRACE: Duration = Duration::from_secs(1);
/// Refusals of clients of busy functions under way at once; more are closed unanswered.
const MAX_REFUSALS: usize = 4;
/// How long a refused client has to send its first request.
const REFUSAL_READ_TIMEOUT: Duration = Duration::from_secs(1);

/// The servers of a [`Pool`], running; dropping it (or [`Pool::shutdown`]) stops them all and
/// removes their sockets.
pub struct Pool {
    handles: Vec<ServerHandle>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

/// Wakes the pool's poll: a byte on a socket pair.
struct Waker {
    tx: UnixStream,
}

impl Waker {
    fn wake(&self) {
        // A full pipe already wakes it: ignore WouldBlock.
        let _ = (&self.tx).write(&[1]);
    }
}

impl Pool {
    /// Starts accepting on every server's socket (each listener becomes non-blocking).
    pub fn start(servers: Vec<Server>) -> io::Result<Pool> {
        let (tx, rx) = UnixStream::pair()?;
        tx.set_nonblocking(true)?;
        rx.set_nonblocking(true)?;
        for s in &servers {
            s.listener.set_nonblocking(true)?;
        }
        let waker = Arc::new(Waker { tx });
        let handles = servers.iter().map(Server::handle).collect();
        let w = waker.clone();
        // The pool's threads log where its starter logs (the global subscriber unless the
        // starter set one of its own: a scenario run collecting each step's lines).
        let dispatch = tracing::dispatcher::get_default(|d| d.clone());
        let thread = thread::Builder::new()
            .name("vfio-accept".into())
            .spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || accept_loop(servers, rx, w))
            })?;
        Ok(Pool {
            handles,
            waker,
            thread: Some(thread),
        })
    }

    /// Each server's handle, in the order given to [`Pool::start`].
    pub fn handles(&self) -> &[ServerHandle] {
        &self.handles
    }

    /// Stops every server (clients are disconnected) and waits for their threads.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        for h in &self.handles {
            h.shutdown();
        }
        self.waker.wake();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                error!("the accepting thread panicked");
            }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the pool keeps for each server: idle (listening, polled), or lent to a connection.
enum Place {
    Idle(Server),
    Connected(Busy),
    Gone,
}

/// A server lent to a connection: its listener is still polled, through a duplicate, to refuse
/// a second client.
struct Busy {
    listener: Option<UnixListener>,
    handle: ServerHandle,
    /// Since when a second client waits (its listener then not polled until [`BUSY_GRACE`]
    /// has passed).
    waiting_since: Option<Instant>,
}

impl Busy {
    /// The listener to poll: while the client is served and no second one waits already.
    fn poll_fd(&self) -> Option<i32> {
        let l = self.listener.as_ref()?;
        (self.waiting_since.is_none() && self.handle.serving_a_client()).then(|| l.as_raw_fd())
    }

    /// After a poll: a second client whose grace has run out is refused if the function still
    /// serves the first (else it waits on, to be accepted as the server comes back).
    fn refuse_after_grace(&mut self, now: Instant, refusing: &Arc<AtomicUsize>) {
        let (Some(l), Some(since)) = (&self.listener, self.waiting_since) else {
            return;
        };
        if now < since + BUSY_GRACE {
            return;
        }
        self.waiting_since = None;
        if !self.handle.serving_a_client() {
            return;
        }
        match l.accept() {
            Ok((stream, _)) => refuse_busy(stream, self.handle.path(), refusing),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => warn!(error = %e, "accept failed on a busy function's socket"),
        }
    }
}

/// Answers the first request of a client of a busy function with EBUSY and closes, on a thread
/// of its own (the client may be slow to send it); at most [`MAX_REFUSALS`] at once.
fn refuse_busy(stream: UnixStream, socket: &std::path::Path, refusing: &Arc<AtomicUsize>) {
    let socket = socket.display().to_string();
    if refusing.fetch_add(1, Ordering::AcqRel) >= MAX_REFUSALS {
        refusing.fetch_sub(1, Ordering::AcqRel);
        warn!(%socket, "a second client of a busy function: closed (too many refusals under way)");
        return;
    }
    let in_flight = refusing.clone();
    let dispatch = tracing::dispatcher::get_default(|d| d.clone());
    let spawned = thread::Builder::new()
        .name("vfio-busy".into())
        .spawn(move || {
            let _log = tracing::dispatcher::set_default(&dispatch);
            if answer_busy(stream) {
                warn!(%socket, "a second client of a busy function: refused with EBUSY");
            } else {
                debug!(%socket, "a second connection to a busy function closed unanswered");
            }
            in_flight.fetch_sub(1, Ordering::AcqRel);
        });
    if spawned.is_err() {
        refusing.fetch_sub(1, Ordering::AcqRel);
        warn!("a second client of a busy function: closed (no thread to refuse it)");
    }
}

/// Reads the client's first message and, if it asks for a reply, sends an EBUSY error reply.
/// Whether the reply went out.
fn answer_busy(mut stream: UnixStream) -> bool {
    if stream.set_read_timeout(Some(REFUSAL_READ_TIMEOUT)).is_err()
        || stream
            .set_write_timeout(Some(REFUSAL_READ_TIMEOUT))
            .is_err()
    {
        return false;
    }
    let mut head = [0u8; HEADER_SIZE];
    if stream.read_exact(&mut head).is_err() {
        return false;
    }
    let h = Header::parse(&head);
    let size = h.size as usize;
    if !h.is_command() || h.no_reply() || !(HEADER_SIZE..=wire::MAX_MESSAGE_SIZE).contains(&size) {
        return false;
    }
    // The rest of the message, so that the client's write completes before the close.
    let mut rest = (&mut stream).take((size - HEADER_SIZE) as u64);
    if io::copy(&mut rest, &mut io::sink()).is_err() {
        return false;
    }
    stream
        .write_all(&wire::error_reply(&h, libc::EBUSY))
        .is_ok()
}

fn accept_loop(servers: Vec<Server>, wake_rx: UnixStream, waker: Arc<Waker>) {
    mark_connection_thread();
    let mut places: Vec<Place> = servers.into_iter().map(Place::Idle).collect();
    let refusing = Arc::new(AtomicUsize::new(0));
    // Servers coming back from their connection threads, by index.
    let (back_tx, back_rx) = crossbeam_channel::unbounded::<(usize, Server)>();
    for p in &places {
        if let Place::Idle(s) = p {
            s.span().in_scope(|| info!("listening"));
        }
    }
    loop {
        // Servers whose client went away come back; stopped ones are dropped (which removes
        // their socket files).
        while let Ok((i, server)) = back_rx.try_recv() {
            places[i] = Place::Idle(server);
        }
        for p in places.iter_mut() {
            if matches!(p, Place::Idle(s) if s.stopped()) {
                if let Place::Idle(s) = std::mem::replace(p, Place::Gone) {
                    s.span().in_scope(|| info!("stopped"));
                }
            }
        }
        if places.iter().all(|p| matches!(p, Place::Gone)) {
            return;
        }
        let mut fds = vec![libc::pollfd {
            fd: wake_rx.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        let mut which = Vec::new();
        let now = Instant::now();
        let mut timeout: Option<Duration> = None;
        for (i, p) in places.iter().enumerate() {
            let fd = match p {
                Place::Idle(s) => s.listener.as_raw_fd(),
                Place::Connected(b) => {
                    if let Some(since) = b.waiting_since {
                        let left = (since + BUSY_GRACE).saturating_duration_since(now);
                        timeout = Some(timeout.map_or(left, |t| t.min(left)));
                    }
                    match b.poll_fd() {
                        Some(fd) => fd,
                        None => continue,
                    }
                }
                Place::Gone => continue,
            };
            fds.push(libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
            which.push(i);
        }
        // Whole milliseconds, rounded up, so that the grace has passed when poll returns.
        let timeout_ms = timeout.map_or(-1, |t| t.as_micros().div_ceil(1000).min(60_000) as i32);
        // SAFETY: `fds` is a live, correctly sized array of pollfd for the whole call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                error!(error = %e, "poll failed");
                thread::sleep(std::time::Duration::from_millis(100));
            }
            continue;
        }
        if fds[0].revents != 0 {
            let mut buf = [0u8; 64];
            while matches!((&wake_rx).read(&mut buf), Ok(n) if n > 0) {}
        }
        let now = Instant::now();
        for p in places.iter_mut() {
            if let Place::Connected(b) = p {
                b.refuse_after_grace(now, &refusing);
            }
        }
        for (k, fd) in fds[1..].iter().enumerate() {
            if fd.revents == 0 {
                continue;
            }
            let i = which[k];
            let server = match &mut places[i] {
                Place::Idle(server) => server,
                Place::Connected(b) => {
                    // A second client: it waits out the grace (refuse_after_grace).
                    b.waiting_since = Some(Instant::now());
                    continue;
                }
                Place::Gone => continue,
            };
            if server.stopped() {
                continue;
            }
            let stream = match server.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    server
                        .span()
                        .in_scope(|| warn!(error = %e, "accept failed"));
                    continue;
                }
            };
            // A duplicate of the listener, non-blocking as the original is, to refuse others
            // while this client is served (without it they wait in the listen queue).
            let busy = server.listener.try_clone().ok();
            let handle = server.handle();
            handle.take_on_client();
            let busy = Busy {
                listener: busy,
                handle,
                waiting_since: None,
            };
            let Place::Idle(mut server) = std::mem::replace(&mut places[i], Place::Connected(busy))
            else {
                continue;
            };
            let (back, w) = (back_tx.clone(), waker.clone());
            let name = server
                .path()
                .file_stem()
                .map_or_else(|| "vfio-conn".into(), |s| s.to_string_lossy().into_owned());
            let dispatch = tracing::dispatcher::get_default(|d| d.clone());
            let spawned = thread::Builder::new().name(name).spawn(move || {
                let _log = tracing::dispatcher::set_default(&dispatch);
                mark_connection_thread();
                let span = server.span();
                span.in_scope(|| server.serve_client(stream));
                let _ = back.send((i, server));
                w.wake();
            });
            if let Err(e) = spawned {
                // The server went with the closure, and its socket with it.
                error!(error = %e, "no thread for a client: its function is no longer served");
                places[i] = Place::Gone;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfio::region;
    use crate::vfio::test_function::ConfigOnly;
    use std::time::{Duration, Instant};

    /// Threads of this process whose name starts with `prefix`.
    fn threads_named(prefix: &str) -> usize {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|c| c.starts_with(prefix))
            .count()
    }

    fn eventually(what: &str, mut f: impl FnMut() -> bool) {
        let until = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < until, "{what}");
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn config_byte(client: &mut vfio_user::Client) -> u8 {
        let mut b = [0u8; 1];
        client.region_read(region::CONFIG, 0, &mut b).unwrap();
        b[0]
    }

    #[test]
    fn idle_functions_cost_no_thread_and_each_client_gets_one_that_ends_with_it() {
        let dir = std::env::temp_dir().join(format!("sriov-emu-pool-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let paths: Vec<_> = (0..3).map(|i| dir.join(format!("pq{i}.sock"))).collect();
        let servers = paths
            .iter()
            .enumerate()
            .map(|(i, p)| Server::bind(p, ConfigOnly::new(i as u8 + 1)).unwrap())
            .collect();
        let pool = Pool::start(servers).unwrap();
        assert_eq!(pool.handles().len(), 3);
        assert_eq!(threads_named("pq"), 0, "no client, no connection thread");

        let mut c1 = vfio_user::Client::new(&paths[1]).unwrap();
        assert_eq!(config_byte(&mut c1), 2);
        // A new thread carries its parent's name until it names itself (the DMA writer the
        // connection thread starts is briefly "pq1" too): wait for the names to settle.
        eventually("one connection thread for the client", || {
            threads_named("pq1") == 1
        });
        let mut c0 = vfio_user::Client::new(&paths[0]).unwrap();
        assert_eq!(
            config_byte(&mut c0),
            1,
            "one client does not hold up another"
        );
        eventually("a connection thread per client", || {
            threads_named("pq") == 2
        });
        assert_eq!(threads_named("pq2"), 0);

        drop(c1);
        eventually("the connection thread ends with its client", || {
            threads_named("pq1") == 0
        });
        // The server came back to the pool: the next client is served.
        let mut again = vfio_user::Client::new(&paths[1]).unwrap();
        assert_eq!(config_byte(&mut again), 2);
        assert_eq!(pool.handles()[1].stats().connections, 2);

        // Shutdown disconnects the clients and removes every socket.
        pool.shutdown();
        eventually("no connection thread outlives shutdown", || {
            threads_named("pq") == 0
        });
        for p in &paths {
            assert!(!p.exists(), "{} left behind", p.display());
        }
        drop((c0, again));
    }

    /// A pool of one function whose config space reads `fill`, and its first client, served.
    fn busy_function(name: &str, fill: u8) -> (Pool, std::path::PathBuf, vfio_user::Client) {
        let dir = std::env::temp_dir().join(format!("sriov-emu-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.sock"));
        let pool = Pool::start(vec![Server::bind(&path, ConfigOnly::new(fill)).unwrap()]).unwrap();
        let mut first = vfio_user::Client::new(&path).unwrap();
        assert_eq!(config_byte(&mut first), fill);
        (pool, path, first)
    }

    /// A second client of a function that serves one (a second QEMU on the same socket) gets
    /// its first request answered with EBUSY after the grace, within QEMU's reply timeout (5 s),
    /// rather than waiting in the listen queue until the first leaves; the first is unaffected.
    /// A client that connects at once after the first closed is served (the grace covers the
    /// server's noticing the close).
    #[test]
    fn a_second_client_of_a_busy_function_is_refused_with_ebusy() {
        let (pool, path, mut first) = busy_function("busy", 9);

        // VERSION 0.1 with no capabilities, as a client's first request.
        let caps = b"{}\0";
        let mut version = Vec::new();
        Header {
            id: 7,
            command: 1,
            size: (HEADER_SIZE + 4 + caps.len()) as u32,
            flags: wire::flags::TYPE_COMMAND,
            error: 0,
        }
        .emit(&mut version);
        version.extend_from_slice(&0u16.to_ne_bytes());
        version.extend_from_slice(&1u16.to_ne_bytes());
        version.extend_from_slice(caps);
        let started = Instant::now();
        let mut second = UnixStream::connect(&path).unwrap();
        second
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        second.write_all(&version).unwrap();
        let mut head = [0u8; HEADER_SIZE];
        second.read_exact(&mut head).expect("an answer, not a wait");
        let reply = Header::parse(&head);
        assert_eq!(reply.id, 7);
        assert!(reply.is_reply() && reply.is_error(), "{reply:?}");
        assert_eq!(reply.error, libc::EBUSY as u32);
        let waited = started.elapsed();
        assert!(waited >= BUSY_GRACE, "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        assert_eq!(second.read(&mut head).unwrap(), 0, "then closed");

        assert_eq!(config_byte(&mut first), 9, "the first client is unaffected");
        assert_eq!(pool.handles()[0].stats().connections, 1);
        drop(first);
        // Once the first has left (its teardown over), the next client is served.
        let mut next = vfio_user::Client::new(&path).unwrap();
        assert_eq!(config_byte(&mut next), 9);
        pool.shutdown();
        drop(next);
    }

    /// A hostile second client of a busy function (garbage for a header, a silent one, a reply
    /// where a command belongs) is closed unanswered; the first client is unaffected.
    #[test]
    fn garbage_from_a_second_client_of_a_busy_function_is_closed_unanswered() {
        let (pool, path, mut first) = busy_function("busyg", 5);
        let mut reply_header = Vec::new();
        Header {
            id: 1,
            command: 1,
            size: HEADER_SIZE as u32,
            flags: wire::flags::TYPE_REPLY,
            error: 0,
        }
        .emit(&mut reply_header);
        let garbage: [&[u8]; 4] = [&[0xff; 16], &[0x00; 16], b"short", &reply_header];
        for bytes in garbage {
            let mut c = UnixStream::connect(&path).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            c.write_all(bytes).unwrap();
            let mut buf = [0u8; HEADER_SIZE];
            assert_eq!(
                c.read(&mut buf).unwrap_or(0),
                0,
                "{bytes:?}: closed unanswered"
            );
        }
        let silent = UnixStream::connect(&path).unwrap();
        assert_eq!(config_byte(&mut first), 5, "the first client is unaffected");
        drop((silent, first));
        pool.shutdown();
    }
}
