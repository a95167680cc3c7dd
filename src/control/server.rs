//! The control socket's server: every admin client on its own thread, each request with a
//! deadline, so that a client that is silent, slow or hostile costs only itself.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::{handle, PortView, Reply, Request};

/// Longest request line accepted.
pub const MAX_REQUEST: usize = 64 * 1024;
/// A client must send each request line whole within this time (from its connection or its
/// previous reply), and take each reply within it; otherwise it is disconnected.
pub const CLIENT_DEADLINE: Duration = Duration::from_secs(5);
/// Admin clients served at once; one more gets a "busy" error and is closed.
pub const MAX_CLIENTS: usize = 64;

/// The control socket: an accepting thread and one thread per client.
pub struct ControlServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    clients: Arc<Clients>,
    thread: Option<JoinHandle<()>>,
}

/// The connected clients (a clone of each stream, to disconnect them at shutdown).
#[derive(Default)]
struct Clients {
    open: Mutex<HashMap<u64, UnixStream>>,
    next: AtomicU64,
}

impl Clients {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, UnixStream>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ControlServer {
    /// Binds `path` (mode 0600; a stale socket file is replaced) and serves the card whose
    /// ports are `ports` (port 0 first).
    pub fn start(path: &Path, ports: Vec<PortView>) -> std::io::Result<ControlServer> {
        if std::fs::symlink_metadata(path).is_ok() {
            if UnixStream::connect(path).is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    "another sriov-emu serves this directory",
                ));
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        let stop = Arc::new(AtomicBool::new(false));
        let clients = Arc::new(Clients::default());
        let (st, cl) = (stop.clone(), clients.clone());
        let ports = Arc::new(ports);
        let thread = std::thread::Builder::new()
            .name("control".into())
            .spawn(move || accept_loop(listener, ports, st, cl))?;
        Ok(ControlServer {
            path: path.into(),
            stop,
            clients,
            thread: Some(thread),
        })
    }

    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wake the accept loop.
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // Disconnect the clients; their threads end at once.
        for s in self.clients.lock().values() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        let until = Instant::now() + Duration::from_secs(1);
        while !self.clients.lock().is_empty() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop_now();
        }
    }
}

fn accept_loop(
    listener: UnixListener,
    ports: Arc<Vec<PortView>>,
    stop: Arc<AtomicBool>,
    clients: Arc<Clients>,
) {
    for conn in listener.incoming() {
        if stop.load(Ordering::Acquire) {
            break;
        }
        let stream = match conn {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "control socket accept failed");
                // EMFILE and the like: do not spin.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let _ = stream.set_write_timeout(Some(CLIENT_DEADLINE));
        if clients.lock().len() >= MAX_CLIENTS {
            warn!(
                max = MAX_CLIENTS,
                "control client refused: too many at once"
            );
            let _ = reply_to(&stream, &Reply::error("busy: too many control clients"));
            continue;
        }
        let id = clients.next.fetch_add(1, Ordering::Relaxed);
        let Ok(clone) = stream.try_clone() else {
            continue;
        };
        clients.lock().insert(id, clone);
        let (ports, cl) = (ports.clone(), clients.clone());
        let spawned = std::thread::Builder::new()
            .name("control-client".into())
            .spawn(move || {
                serve_client(&ports, stream);
                cl.lock().remove(&id);
            });
        if let Err(e) = spawned {
            warn!(error = %e, "no thread for a control client");
            clients.lock().remove(&id);
        }
    }
}

/// Why a request line could not be read.
enum LineError {
    /// The client closed the connection between requests.
    Closed,
    /// A line over [`MAX_REQUEST`] bytes.
    TooLong,
    Gone(String),
}

/// Reads request lines from one client, each one whole within [`CLIENT_DEADLINE`].
struct Lines {
    stream: UnixStream,
    buf: Vec<u8>,
}

impl Lines {
    fn next(&mut self) -> Result<String, LineError> {
        let deadline = Instant::now() + CLIENT_DEADLINE;
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                return Ok(String::from_utf8_lossy(&line).into_owned());
            }
            if self.buf.len() > MAX_REQUEST {
                return Err(LineError::TooLong);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(LineError::Gone("request not complete in time".into()));
            }
            let _ = self.stream.set_read_timeout(Some(left));
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) if self.buf.is_empty() => return Err(LineError::Closed),
                // The last request, sent without its newline (`printf '{...}' | socat`): the
                // client may still read the reply (it shut down its writing side only).
                Ok(0) => {
                    let line = std::mem::take(&mut self.buf);
                    return Ok(String::from_utf8_lossy(&line).into_owned());
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(LineError::Gone(e.to_string())),
            }
        }
    }
}

fn reply_to(mut stream: &UnixStream, reply: &Reply) -> std::io::Result<()> {
    let mut text = serde_json::to_string(reply).map_err(std::io::Error::other)?;
    text.push('\n');
    stream.write_all(text.as_bytes())
}

fn serve_client(ports: &[PortView], stream: UnixStream) {
    let Ok(out) = stream.try_clone() else {
        return;
    };
    let mut lines = Lines {
        stream,
        buf: Vec::new(),
    };
    loop {
        let line = match lines.next() {
            Ok(l) => l,
            Err(LineError::Closed) => return,
            Err(LineError::TooLong) => {
                debug!("control request over {MAX_REQUEST} bytes: refused, closed");
                let why = format!("request longer than {MAX_REQUEST} bytes: closed");
                let _ = reply_to(&out, &Reply::error(why));
                return;
            }
            Err(LineError::Gone(why)) => {
                debug!(why, "control client disconnected");
                return;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let reply = match serde_json::from_str::<Request>(line.trim()) {
            Ok(req) => handle(ports, &req),
            Err(e) => Reply::error(format!("bad request: {e}")),
        };
        if reply_to(&out, &reply).is_err() {
            return;
        }
    }
}
