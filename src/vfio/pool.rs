//! Many servers on one accepting thread: a function with no client costs a listening socket,
//! not a thread. [`Pool::start`] takes the bound [`Server`]s; one thread polls every idle
//! listener, and each accepted client gets a connection thread (and its DMA writer thread) that
//! serves it and hands the server back when the client goes away. Threads therefore scale with
//! attached clients: one for the pool, two per client.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use tracing::{error, info, warn};

use super::dma::mark_connection_thread;
use super::server::{Server, ServerHandle};

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
    Connected,
    Gone,
}

fn accept_loop(servers: Vec<Server>, wake_rx: UnixStream, waker: Arc<Waker>) {
    mark_connection_thread();
    let mut places: Vec<Place> = servers.into_iter().map(Place::Idle).collect();
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
        for (i, p) in places.iter().enumerate() {
            if let Place::Idle(s) = p {
                fds.push(libc::pollfd {
                    fd: s.listener.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
                which.push(i);
            }
        }
        // SAFETY: `fds` is a live, correctly sized array of pollfd for the whole call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
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
        for (k, fd) in fds[1..].iter().enumerate() {
            if fd.revents == 0 {
                continue;
            }
            let i = which[k];
            let Place::Idle(server) = &places[i] else {
                continue;
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
            let Place::Idle(mut server) = std::mem::replace(&mut places[i], Place::Connected)
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
}
