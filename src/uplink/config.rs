//! The uplink's configuration: one self-contained table (`[uplink]` of the `serve` config, or
//! `--uplink KIND:KEY=VALUE,...`), checked into an [`UplinkSpec`] before anything starts.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The default wait of a stream client between connection attempts.
pub const DEFAULT_RECONNECT_MS: u64 = 1000;
/// The longest wait between connection attempts `reconnect_ms` accepts (one minute).
pub const MAX_RECONNECT_MS: u64 = 60_000;
/// Longest interface name (Linux `IFNAMSIZ` minus the terminating NUL).
pub const MAX_IFNAME: usize = 15;
/// Longest UNIX socket path (`sun_path` is 108 bytes with its NUL).
const MAX_UNIX_PATH: usize = 107;

/// Which backend stands behind the uplink.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UplinkKind {
    /// Nothing: frames to the uplink are counted as unclaimed.
    #[default]
    None,
    Tap,
    Stream,
    Dgram,
}

impl UplinkKind {
    pub fn name(self) -> &'static str {
        match self {
            UplinkKind::None => "none",
            UplinkKind::Tap => "tap",
            UplinkKind::Stream => "stream",
            UplinkKind::Dgram => "dgram",
        }
    }
}

impl fmt::Display for UplinkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for UplinkKind {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "none" => Ok(UplinkKind::None),
            "tap" => Ok(UplinkKind::Tap),
            "stream" => Ok(UplinkKind::Stream),
            "dgram" => Ok(UplinkKind::Dgram),
            _ => Err(()),
        }
    }
}

/// One uplink's configuration, as written: the `[uplink]` table of the `serve` config, or
/// what `--uplink` parses into ([`UplinkConfig::from_str`]). Addresses are `HOST:PORT` (TCP or
/// UDP; `[::1]:5555` for IPv6) or `unix:PATH`.
///
/// ```toml
/// [uplink]
/// kind = "tap"                      # name = "tap0"
/// # kind = "stream", listen = "127.0.0.1:5555" | connect = "unix:/run/nic.sock",
/// #                  reconnect_ms = 1000 (client only)
/// # kind = "dgram",  local = "127.0.0.1:5555", remote = "127.0.0.1:5556"
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct UplinkConfig {
    pub kind: UplinkKind,
    /// tap: the interface to create, or the existing TAP to attach to.
    pub name: Option<String>,
    /// stream: the address to listen on (QEMU's `server=on`).
    pub listen: Option<String>,
    /// stream: the address to connect to (QEMU's `server=off`).
    pub connect: Option<String>,
    /// stream client: milliseconds between connection attempts (QEMU's `reconnect-ms`).
    pub reconnect_ms: Option<u64>,
    /// dgram: the address this end binds.
    pub local: Option<String>,
    /// dgram: the address frames are sent to.
    pub remote: Option<String>,
}

/// A socket address of a stream or dgram uplink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SockAddr {
    Inet(SocketAddr),
    Unix(PathBuf),
}

impl fmt::Display for SockAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SockAddr::Inet(a) => write!(f, "{a}"),
            SockAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A network interface name Linux accepts (`dev_valid_name` in `net/core/dev.c`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfName(String);

impl IfName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for IfName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > MAX_IFNAME {
            return Err(format!("an interface name has 1..={MAX_IFNAME} bytes"));
        }
        if s == "." || s == ".." {
            return Err("not an interface name".into());
        }
        if s.bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
        {
            return Err("an interface name has no '/', ':', NUL or whitespace".into());
        }
        Ok(IfName(s.to_string()))
    }
}

/// Whether a stream uplink listens or connects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamRole {
    /// QEMU's `server=on`: one peer at a time.
    Listen,
    /// QEMU's `server=off`, retrying every `reconnect`.
    Connect { reconnect: Duration },
}

/// A checked uplink configuration: what [`Uplink::start`](super::Uplink::start) opens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UplinkSpec {
    None,
    Tap { name: IfName },
    Stream { role: StreamRole, addr: SockAddr },
    Dgram { local: SockAddr, remote: SockAddr },
}

impl UplinkSpec {
    /// What the uplink takes for itself on this host, and the field that names it: a TAP's
    /// name, the address a stream listens on, the address a dgram cable binds (port 0 is the
    /// kernel's pick and takes nothing). Two uplinks of one process must not share one: the
    /// second bind would fail, or replace the first one's UNIX socket file under it.
    pub fn claim(&self) -> Option<(&'static str, String)> {
        let addr = |field, a: &SockAddr| match a {
            SockAddr::Inet(i) if i.port() == 0 => None,
            a => Some((field, a.to_string())),
        };
        match self {
            UplinkSpec::None => None,
            UplinkSpec::Tap { name } => Some(("name", name.to_string())),
            UplinkSpec::Stream {
                role: StreamRole::Listen,
                addr: a,
            } => addr("listen", a),
            UplinkSpec::Stream { .. } => None,
            UplinkSpec::Dgram { local, .. } => addr("local", local),
        }
    }
}

/// An uplink that cannot be configured or opened. Each names the field it is about.
#[derive(Debug, Error)]
pub enum UplinkError {
    #[error("uplink.{field} is required with kind = \"{kind}\"")]
    Missing {
        kind: UplinkKind,
        field: &'static str,
    },
    #[error("uplink.{field} does not apply to kind = \"{kind}\"")]
    NotForKind {
        kind: UplinkKind,
        field: &'static str,
    },
    #[error("uplink.{0} or uplink.{1} is required with kind = \"{2}\"")]
    MissingEither(&'static str, &'static str, UplinkKind),
    #[error("uplink.{0} and uplink.{1} conflict: give one of them")]
    Conflict(&'static str, &'static str),
    #[error("uplink.{0} applies only with uplink.{1}")]
    OnlyWith(&'static str, &'static str),
    #[error("uplink.{field} = {value:?}: {reason}")]
    Invalid {
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error("uplink.{field} = {value:?}: {what}: {source}")]
    Io {
        field: &'static str,
        value: String,
        what: String,
        source: std::io::Error,
    },
    #[error("--uplink {arg:?}: {reason}")]
    Cli { arg: String, reason: String },
    #[error("uplink: starting its thread: {0}")]
    Thread(std::io::Error),
}

impl UplinkError {
    pub(super) fn invalid(
        field: &'static str,
        value: &str,
        reason: impl Into<String>,
    ) -> UplinkError {
        UplinkError::Invalid {
            field,
            value: value.into(),
            reason: reason.into(),
        }
    }

    pub(super) fn io(
        field: &'static str,
        value: impl fmt::Display,
        what: impl Into<String>,
        source: std::io::Error,
    ) -> UplinkError {
        UplinkError::Io {
            field,
            value: value.to_string(),
            what: what.into(),
            source,
        }
    }
}

/// Parses a `HOST:PORT` or `unix:PATH` address of field `field`.
fn parse_addr(field: &'static str, value: &str) -> Result<SockAddr, UplinkError> {
    if let Some(path) = value.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(UplinkError::invalid(field, value, "empty UNIX socket path"));
        }
        if path.len() > MAX_UNIX_PATH {
            return Err(UplinkError::invalid(
                field,
                value,
                format!("a UNIX socket path has at most {MAX_UNIX_PATH} bytes"),
            ));
        }
        return Ok(SockAddr::Unix(PathBuf::from(path)));
    }
    let mut addrs = value.to_socket_addrs().map_err(|e| {
        UplinkError::invalid(field, value, format!("not HOST:PORT or unix:PATH ({e})"))
    })?;
    addrs
        .next()
        .map(SockAddr::Inet)
        .ok_or_else(|| UplinkError::invalid(field, value, "the host has no address"))
}

impl UplinkConfig {
    /// The fields that are set, by name, for the checks of [`UplinkConfig::resolve`].
    fn fields(&self) -> [(&'static str, bool); 6] {
        [
            ("name", self.name.is_some()),
            ("listen", self.listen.is_some()),
            ("connect", self.connect.is_some()),
            ("reconnect_ms", self.reconnect_ms.is_some()),
            ("local", self.local.is_some()),
            ("remote", self.remote.is_some()),
        ]
    }

    /// Checks the configuration: fields of the kind only, required ones present, no
    /// conflicts, names and addresses parsed (host names resolved).
    pub fn resolve(&self) -> Result<UplinkSpec, UplinkError> {
        let kind = self.kind;
        let allowed: &[&str] = match kind {
            UplinkKind::None => &[],
            UplinkKind::Tap => &["name"],
            UplinkKind::Stream => &["listen", "connect", "reconnect_ms"],
            UplinkKind::Dgram => &["local", "remote"],
        };
        if let Some((field, _)) = self
            .fields()
            .into_iter()
            .find(|(f, set)| *set && !allowed.contains(f))
        {
            return Err(UplinkError::NotForKind { kind, field });
        }
        let need = |field: &'static str, v: &Option<String>| -> Result<String, UplinkError> {
            v.clone().ok_or(UplinkError::Missing { kind, field })
        };
        match kind {
            UplinkKind::None => Ok(UplinkSpec::None),
            UplinkKind::Tap => {
                let name = need("name", &self.name)?;
                let name = name
                    .parse()
                    .map_err(|reason| UplinkError::invalid("name", &name, reason))?;
                Ok(UplinkSpec::Tap { name })
            }
            UplinkKind::Stream => {
                let (role, field, value) = match (&self.listen, &self.connect) {
                    (Some(_), Some(_)) => return Err(UplinkError::Conflict("listen", "connect")),
                    (None, None) => {
                        return Err(UplinkError::MissingEither("listen", "connect", kind))
                    }
                    (Some(l), None) => {
                        if self.reconnect_ms.is_some() {
                            // A listening uplink waits for its peer; only a connecting one
                            // tries again.
                            return Err(UplinkError::OnlyWith("reconnect_ms", "connect"));
                        }
                        (StreamRole::Listen, "listen", l)
                    }
                    (None, Some(c)) => {
                        let ms = self.reconnect_ms.unwrap_or(DEFAULT_RECONNECT_MS);
                        if !(1..=MAX_RECONNECT_MS).contains(&ms) {
                            return Err(UplinkError::invalid(
                                "reconnect_ms",
                                &ms.to_string(),
                                format!("must be 1..={MAX_RECONNECT_MS}"),
                            ));
                        }
                        let reconnect = Duration::from_millis(ms);
                        (StreamRole::Connect { reconnect }, "connect", c)
                    }
                };
                let addr = parse_addr(field, value)?;
                Ok(UplinkSpec::Stream { role, addr })
            }
            UplinkKind::Dgram => {
                let local = need("local", &self.local)?;
                let remote = need("remote", &self.remote)?;
                let local_addr = parse_addr("local", &local)?;
                let remote_addr = parse_addr("remote", &remote)?;
                // QEMU's net_init_dgram: "remote and local types must be the same".
                let same = match (&local_addr, &remote_addr) {
                    (SockAddr::Inet(l), SockAddr::Inet(r)) => l.is_ipv4() == r.is_ipv4(),
                    (SockAddr::Unix(_), SockAddr::Unix(_)) => true,
                    _ => false,
                };
                if !same {
                    return Err(UplinkError::invalid(
                        "remote",
                        &remote,
                        format!("not of the same address family as uplink.local = {local:?}"),
                    ));
                }
                if let (SockAddr::Inet(r), SockAddr::Inet(_)) = (&remote_addr, &local_addr) {
                    if r.ip().is_multicast() || r.ip().is_unspecified() || r.port() == 0 {
                        return Err(UplinkError::invalid(
                            "remote",
                            &remote,
                            "a unicast address with a port is needed (multicast is not supported)",
                        ));
                    }
                }
                Ok(UplinkSpec::Dgram {
                    local: local_addr,
                    remote: remote_addr,
                })
            }
        }
    }
}

/// `--uplink KIND[:KEY=VALUE[,KEY=VALUE...]]`, the keys those of the `[uplink]` table:
/// `none`, `tap:name=tap0`, `stream:listen=127.0.0.1:5555`,
/// `stream:connect=unix:/run/nic.sock,reconnect_ms=500`,
/// `dgram:local=127.0.0.1:5555,remote=127.0.0.1:5556`. Values hold no commas.
impl FromStr for UplinkConfig {
    type Err = UplinkError;
    fn from_str(arg: &str) -> Result<Self, UplinkError> {
        let cli = |reason: String| UplinkError::Cli {
            arg: arg.to_string(),
            reason,
        };
        let (kind, rest) = match arg.split_once(':') {
            Some((k, rest)) => (k, Some(rest)),
            None => (arg, None),
        };
        let kind: UplinkKind = kind.parse().map_err(|()| {
            cli(format!(
                "unknown kind {kind:?}: one of none, tap, stream, dgram"
            ))
        })?;
        let mut c = UplinkConfig {
            kind,
            ..UplinkConfig::default()
        };
        for pair in rest.into_iter().flat_map(|r| r.split(',')) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| cli(format!("{pair:?} is not KEY=VALUE")))?;
            let slot = match key {
                "name" => &mut c.name,
                "listen" => &mut c.listen,
                "connect" => &mut c.connect,
                "local" => &mut c.local,
                "remote" => &mut c.remote,
                "reconnect_ms" => {
                    let ms = value
                        .parse()
                        .map_err(|_| cli(format!("reconnect_ms={value:?} is not a number")))?;
                    if c.reconnect_ms.replace(ms).is_some() {
                        return Err(cli("reconnect_ms given twice".into()));
                    }
                    continue;
                }
                _ => {
                    return Err(cli(format!(
                        "unknown key {key:?}: name, listen, connect, reconnect_ms, local, remote"
                    )))
                }
            };
            if slot.replace(value.to_string()).is_some() {
                return Err(cli(format!("{key} given twice")));
            }
        }
        Ok(c)
    }
}
