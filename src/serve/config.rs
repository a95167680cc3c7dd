//! `serve`'s configuration: the `--config` file and the command line's options, checked into
//! one `PortPlan` per port of the card before anything starts.
//!
//! A card has one or more ports, each with its own PF, VFs, embedded switch and uplink (a
//! dual-port 82576 or ConnectX-4 Lx), named as in scenario files: `pf0`, `pf1`, ... ([`PfRef`];
//! `pf` is `pf0`). The file's top-level port fields (`vfs`, `mac_assignment`, `pf_mac`, `[vf]`,
//! `[uplink]`, `promisc_policy`, `model`, `pf_driver`) are port pf0's; a `[ports.pfK]` table
//! carries the same fields for port K (pf0's too, instead of the top level). The command line's
//! `--vfs`, `--uplink` and `--pf-driver` take an optional `PORT=` prefix (pf0 without one) and
//! `--ports N` gives the card N ports; what they set wins over the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use eswitch::{MacAddr, VfSetting};
use mailbox::{PromiscPolicy, UnknownPromiscPolicy};
use model::nic::Card;
use model::nic::{MacMode, NicBuildError, PfDriver, SetError};
use model::NicConfig;
use scenarios::format::MAX_PORTS;
use scenarios::ports::PortNameError;
use scenarios::PfRef;
use serde::Deserialize;
use thiserror::Error;

use crate::uplink::{UplinkConfig, UplinkError, UplinkSpec};
use crate::vfio::ClientLimits;

/// Most VFs `serve` accepts per port ([`model::nic::MAX_VFS_PER_PORT`]). A VF with no client
/// costs a listening socket and its state, not a thread.
pub const MAX_VFS: u16 = model::nic::MAX_VFS_PER_PORT;
/// The default number of VFs: the 82576's 7.
pub const DEFAULT_VFS: u16 = 7;
/// Most VFs of a port whose VFs the guest's igb manages: the 82576's eight pools.
pub const GUEST_MAX_VFS: u16 = 8;
/// How long a connection stays awake for its client's next message by default (µs).
pub const DEFAULT_BUSY_POLL_US: u64 = 50;
/// The most `busy_poll_us` accepts: beyond a millisecond the thread might as well spin.
pub const MAX_BUSY_POLL_US: u64 = 1000;
/// How long a connection then naps between looks for its client's next message by default
/// (µs): long enough to span the gaps of a TCP transfer's register writes, twice the longest
/// sleep between looks.
pub const DEFAULT_NAP_POLL_US: u64 = 4000;
/// The most `nap_poll_us` accepts.
pub const MAX_NAP_POLL_US: u64 = 100_000;

/// One port of the card: its PF, VFs, embedded switch and uplink. Every field is optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PortConfig {
    pub vfs: Option<u16>,
    /// What a VF without an administrative MAC gets. Generated MACs carry the port in their
    /// fourth octet (`02:52:54:K:vf_hi:vf_lo`), so that ports joined by a cable differ.
    pub mac_assignment: MacMode,
    /// Default: `02:00:00:00:00:01` with the port's number added to the last octet.
    pub pf_mac: Option<String>,
    /// Initial settings per VF, in the words of `ctl vf N ...`.
    pub vf: BTreeMap<String, String>,
    /// The uplink port's backend ([`UplinkConfig`]); `--uplink` replaces it.
    pub uplink: UplinkConfig,
    /// Who may enable promiscuous modes: `"igb"` (the default, igb's decision: multicast
    /// promiscuous for any VF, unicast never) or `"trusted-only"` (only trusted VFs, both).
    pub promisc_policy: Option<String>,
    /// Which card: `"82576"` (the default; igbvf VFs, igb's decisions, an igb PF socket) or
    /// `"82599"` (ixgbevf VFs at 10 Gb/s, ixgbe's decisions; no PF socket: the 82599's PF
    /// function is not modelled).
    pub model: Option<Card>,
    /// Who manages the VFs: `"embedded"` (the default: the emulator plays the host's PF
    /// driver, `ctl vf N ...` sets their policy) or `"guest"` (the guest's igb on the PF
    /// socket, through the PF's SR-IOV registers, with `ip link set <pf> vf N ...` in that
    /// guest; 82576 only, at most 8 VFs, no `[vf]` settings).
    pub pf_driver: Option<PfDriver>,
}

impl PortConfig {
    /// The fields set to something other than their default, by name.
    fn fields_set(&self) -> Vec<&'static str> {
        let d = PortConfig::default();
        [
            ("vfs", self.vfs != d.vfs),
            ("mac_assignment", self.mac_assignment != d.mac_assignment),
            ("pf_mac", self.pf_mac != d.pf_mac),
            ("vf", self.vf != d.vf),
            ("uplink", self.uplink != d.uplink),
            ("promisc_policy", self.promisc_policy != d.promisc_policy),
            ("model", self.model != d.model),
            ("pf_driver", self.pf_driver != d.pf_driver),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect()
    }

    /// Port `pf`'s NIC, each VF's initial settings and the uplink, checked (`at`: where the
    /// fields are written).
    fn resolve(&self, pf: u8, at: String) -> Result<PortPlan, PortError> {
        let num_vfs = self.vfs.unwrap_or(DEFAULT_VFS);
        if !(1..=MAX_VFS).contains(&num_vfs) {
            return Err(PortError::VfCount(num_vfs));
        }
        let card = self.model.unwrap_or_default();
        let pf_driver = self.pf_driver.unwrap_or_default();
        if pf_driver == PfDriver::Guest {
            if card != Card::I82576 {
                return Err(PortError::GuestPfDriver(format!(
                    "the {card} has no PF function a guest's driver could drive (82576 only)"
                )));
            }
            if num_vfs > GUEST_MAX_VFS {
                return Err(PortError::GuestPfDriver(format!(
                    "a guest's igb manages at most {GUEST_MAX_VFS} VFs (the 82576's pools), \
                     not vfs = {num_vfs}"
                )));
            }
            if !self.vf.is_empty() {
                return Err(PortError::GuestPfDriver(
                    "[vf] settings are the administrator's, and the guest's igb is it: use \
                     `ip link set <pf> vf N ...` in the guest"
                        .into(),
                ));
            }
            if self.promisc_policy.is_some() {
                return Err(PortError::GuestPfDriver(
                    "promisc_policy is the embedded PF agent's, and the guest's igb answers the \
                     VFs' SET_PROMISC itself (VMOLR)"
                        .into(),
                ));
            }
        }
        let mut nic = NicConfig {
            num_vfs,
            mac_assignment: self.mac_assignment.for_port(pf),
            pf_mac: default_pf_mac(pf),
            card,
            link_speed_mbps: card.link_speed_mbps(),
            pf_driver,
            ..NicConfig::default()
        };
        if let Some(m) = &self.pf_mac {
            let mac: MacAddr = m.parse().map_err(PortError::PfMac)?;
            if !mac.is_valid_unicast() {
                return Err(PortError::PfMacNotUnicast(mac));
            }
            nic.pf_mac = mac;
        }
        let promisc_policy = match &self.promisc_policy {
            Some(p) => p.parse().map_err(PortError::PromiscPolicy)?,
            None => PromiscPolicy::default(),
        };
        let mut settings = Vec::new();
        // Which key set each VF: `0` and `00` are one VF, whose settings would otherwise be
        // applied twice in the keys' order.
        let mut keys: BTreeMap<u16, &String> = BTreeMap::new();
        for (key, words) in &self.vf {
            let vf: u16 =
                key.parse()
                    .ok()
                    .filter(|&v| v < num_vfs)
                    .ok_or_else(|| PortError::VfKey {
                        key: key.clone(),
                        vfs: num_vfs,
                    })?;
            if let Some(first) = keys.insert(vf, key) {
                return Err(PortError::VfTwice {
                    key: key.clone(),
                    first: first.clone(),
                    vf,
                });
            }
            let w: Vec<&str> = words.split_whitespace().collect();
            let s = VfSetting::parse_words(&w).map_err(|e| PortError::VfSettings {
                vf,
                source: e.into(),
            })?;
            settings.push((vf, s));
        }
        Ok(PortPlan {
            pf,
            at,
            nic,
            settings,
            uplink: self.uplink.resolve()?,
            promisc_policy,
        })
    }
}

/// Port `pf`'s PF MAC unless configured: the 82576's default with `pf` added to the last
/// octet, as a scenario's card numbers its ports' PFs.
fn default_pf_mac(pf: u8) -> MacAddr {
    let mut mac = NicConfig::default().pf_mac;
    mac.0[5] = mac.0[5].wrapping_add(pf);
    mac
}

/// The `--config` file (TOML). Every field is optional. The top-level port fields are port
/// pf0's (the single-port form); `[ports.pfK]` tables configure the ports of a multi-port card.
///
/// ```toml
/// vfs = 2
/// mac_assignment = "generated"      # or "admin-only" (default)
/// pf_mac = "02:00:00:00:00:01"
/// model = "82576"                  # or "82599": ixgbevf VFs, ixgbe's decisions, no PF socket
/// [vf]
/// 0 = "mac 02:00:00:00:00:10 spoofchk on"
/// 1 = "mac 02:00:00:00:00:11 vlan 10 rate 100"
/// [uplink]                          # what stands behind the uplink port (default: none)
/// kind = "dgram"
/// local = "127.0.0.1:5555"
/// remote = "127.0.0.1:5556"
///
/// [ports.pf1]                       # a second port: the same fields
/// vfs = 2
/// uplink = { kind = "dgram", local = "127.0.0.1:5556", remote = "127.0.0.1:5555" }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// Port pf0's fields ([`PortConfig`]), in the single-port form.
    pub vfs: Option<u16>,
    pub mac_assignment: MacMode,
    pub pf_mac: Option<String>,
    pub vf: BTreeMap<String, String>,
    pub uplink: UplinkConfig,
    pub promisc_policy: Option<String>,
    pub model: Option<Card>,
    pub pf_driver: Option<PfDriver>,
    /// How long each connection looks for its client's next message before it sleeps
    /// (microseconds; default [`DEFAULT_BUSY_POLL_US`], 0 turns it off). See
    /// [`crate::vfio::Server::set_busy_poll`].
    pub busy_poll_us: Option<u64>,
    /// How long each connection then keeps looking, with a sleep between looks that grows
    /// while messages stream in, before it sleeps on the socket (microseconds; default [`DEFAULT_NAP_POLL_US`], 0 turns it off).
    /// See [`crate::vfio::Server::set_nap_poll`].
    pub nap_poll_us: Option<u64>,
    /// What each client (a VF's, a PF's) may make `serve` hold: DMA_MAP entries, mapped bytes,
    /// fds ([`ClientLimits`]; a request over a limit is refused with ENOSPC). The fd limit is
    /// lowered at start if need be, so that every function's client at its limit still leaves
    /// fds for accepting and for the control socket.
    pub client_limits: ClientLimits,
    /// The QEMU the guests will run (`qemu = "/path/qemu-system-x86_64"`). With a port in
    /// full-system mode (`pf_driver = "guest"`) `serve` runs it once and refuses to start when
    /// it does not compose SR-IOV from vfio-user VFs ([`crate::qemu_caps`]).
    pub qemu: Option<PathBuf>,
    /// The ports by name (`pf0`, `pf1`, ...).
    pub ports: BTreeMap<String, PortConfig>,
}

/// One value of a per-port option: `--vfs pf1=4` is port 1's 4; `--vfs 4` is port 0's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortArg<T> {
    pub pf: u8,
    pub value: T,
}

/// `[PORT=]VALUE`: the port and the value. A `PORT=` prefix is what comes before the first
/// `=` when that holds no `:` (so `dgram:local=...` is pf0's); it must name a port.
fn split_port<'a>(option: &'static str, arg: &'a str) -> Result<(u8, &'a str), ServeError> {
    match arg.split_once('=') {
        Some((name, rest)) if !name.contains(':') => {
            let pf: PfRef = name.parse().map_err(|e: PortNameError| ServeError::Cli {
                option,
                arg: arg.into(),
                reason: e.to_string(),
            })?;
            Ok((pf.0, rest))
        }
        _ => Ok((0, arg)),
    }
}

impl PortArg<u16> {
    /// `--vfs [PORT=]N`.
    pub fn vfs(arg: &str) -> Result<PortArg<u16>, ServeError> {
        let (pf, n) = split_port("--vfs", arg)?;
        let value = n.parse().map_err(|_| ServeError::Cli {
            option: "--vfs",
            arg: arg.into(),
            reason: format!("{n:?} is not a number of VFs"),
        })?;
        Ok(PortArg { pf, value })
    }
}

impl PortArg<PfDriver> {
    /// `--pf-driver [PORT=]embedded|guest`.
    pub fn pf_driver(arg: &str) -> Result<PortArg<PfDriver>, ServeError> {
        let (pf, d) = split_port("--pf-driver", arg)?;
        let value = d.parse().map_err(|reason| ServeError::Cli {
            option: "--pf-driver",
            arg: arg.into(),
            reason,
        })?;
        Ok(PortArg { pf, value })
    }
}

impl PortArg<UplinkConfig> {
    /// `--uplink [PORT=]KIND[:KEY=VALUE,...]`.
    pub fn uplink(arg: &str) -> Result<PortArg<UplinkConfig>, ServeError> {
        let (pf, spec) = split_port("--uplink", arg)?;
        let value = spec.parse().map_err(|e: UplinkError| ServeError::Cli {
            option: "--uplink",
            arg: arg.into(),
            reason: match e {
                UplinkError::Cli { reason, .. } => reason,
                e => e.to_string(),
            },
        })?;
        Ok(PortArg { pf, value })
    }
}

/// What the command line sets over the config file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandLine {
    /// `--ports N`: the card has ports pf0 to pf(N-1).
    pub ports: Option<u8>,
    /// `--vfs [PORT=]N`, per port.
    pub vfs: Vec<PortArg<u16>>,
    /// `--uplink [PORT=]SPEC`, per port.
    pub uplinks: Vec<PortArg<UplinkConfig>>,
    /// `--busy-poll-us`.
    pub busy_poll_us: Option<u64>,
    /// `--nap-poll-us`.
    pub nap_poll_us: Option<u64>,
    /// `--model`: every port's card.
    pub model: Option<Card>,
    /// `--pf-driver [PORT=]embedded|guest`, per port.
    pub pf_drivers: Vec<PortArg<PfDriver>>,
    /// `--qemu PATH`: the QEMU to check full-system mode against.
    pub qemu: Option<PathBuf>,
}

/// A configuration that cannot be served; nothing was started.
#[derive(Debug, Error)]
pub enum ServeError {
    /// Full-system mode with a QEMU that cannot show the guest the PF's VFs.
    #[error("pf_driver = \"guest\" (full-system mode): {0}")]
    Qemu(#[source] crate::qemu_caps::QemuCapsError),
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Toml {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("busy_poll_us must be 0..={MAX_BUSY_POLL_US}, got {0}")]
    BusyPoll(u64),
    #[error("nap_poll_us must be 0..={MAX_NAP_POLL_US}, got {0}")]
    NapPoll(u64),
    #[error("client_limits.{field} = {value}: {why}")]
    ClientLimit {
        field: &'static str,
        value: u64,
        why: &'static str,
    },
    #[error("the PF function's config space: {0}")]
    PfConfig(#[source] pcie::BuildError),
    /// A field of one port; `at` is where the port's fields are written (`ports.pf1.`, or
    /// nothing for the single-port form's top level).
    #[error("{at}{source}")]
    Port {
        pf: u8,
        at: String,
        source: PortError,
    },
    #[error("ports.{key}: {source}")]
    PortName { key: String, source: PortNameError },
    #[error("{what}: a card has 1 to {MAX_PORTS} ports, pf0 to pf{}", MAX_PORTS - 1)]
    PortCount { what: String },
    #[error("ports.{first} and ports.{second} are both port pf{pf}: name it once")]
    NamedTwice {
        pf: u8,
        first: String,
        second: String,
    },
    #[error(
        "port pf0 is configured twice: by the top-level {} and by [ports.{key}]; \
         move them into [ports.{key}]",
        fields.join(", ")
    )]
    TopLevelAndTable {
        key: String,
        fields: Vec<&'static str>,
    },
    #[error("port pf{pf} is configured ({by}) but --ports is {ports}")]
    BeyondPorts { pf: u8, by: String, ports: u8 },
    #[error("port pf{missing} is missing: a card's ports are pf0, pf1, ... without gaps, and pf{last} is configured (an empty [ports.pf{missing}] gives it the defaults)")]
    PortGap { missing: u8, last: u8 },
    #[error("{option}: port pf{pf} given twice")]
    CliTwice { option: &'static str, pf: u8 },
    #[error("{option} {arg:?}: {reason}")]
    Cli {
        option: &'static str,
        arg: String,
        reason: String,
    },
    #[error("building port pf{pf}: {source}")]
    Nic { pf: u8, source: NicBuildError },
    #[error("{path}: {source}")]
    Socket {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What is wrong with one port's configuration, named by its field within the port.
#[derive(Debug, Error)]
pub enum PortError {
    #[error("vfs = {0}: a port has 1..={MAX_VFS} VFs")]
    VfCount(u16),
    #[error("pf_mac: {0}")]
    PfMac(#[source] eswitch::policy::ParseMacError),
    #[error("pf_mac = {0}: not a unicast address")]
    PfMacNotUnicast(MacAddr),
    #[error("pf_mac = {mac}: port pf{other} has this PF MAC too; each port's PF needs its own")]
    SamePfMac { mac: MacAddr, other: u8 },
    #[error("vf.{key}: not a VF of this port (it has VFs 0..{})", vfs - 1)]
    VfKey { key: String, vfs: u16 },
    #[error("vf.{key}: VF {vf} has settings under vf.{first} already")]
    VfTwice { key: String, first: String, vf: u16 },
    #[error("vf.{vf}: {source}")]
    VfSettings { vf: u16, source: SetError },
    #[error("promisc_policy: {0}")]
    PromiscPolicy(#[source] UnknownPromiscPolicy),
    #[error("pf_driver = \"guest\": {0}")]
    GuestPfDriver(String),
    #[error(transparent)]
    Uplink(#[from] UplinkError),
    #[error("uplink.{field} = {value:?}: port pf{other}'s uplink takes it already")]
    SameWire {
        field: &'static str,
        value: String,
        other: u8,
    },
}

/// One port, checked: what `serve` builds and starts for it.
#[derive(Debug)]
pub(crate) struct PortPlan {
    pub pf: u8,
    /// Where the port's fields are written, for errors found later (`ports.pf1.`).
    pub at: String,
    pub nic: NicConfig,
    /// Per VF, the settings applied before serving.
    pub settings: Vec<(u16, Vec<VfSetting>)>,
    pub uplink: UplinkSpec,
    pub promisc_policy: PromiscPolicy,
}

impl PortPlan {
    /// `source`, as an error of this port's configuration.
    pub fn error(&self, source: impl Into<PortError>) -> ServeError {
        ServeError::Port {
            pf: self.pf,
            at: self.at.clone(),
            source: source.into(),
        }
    }

    /// What this port would share with `other`, an earlier port, that ports must not.
    fn clash(&self, other: &PortPlan) -> Option<PortError> {
        if self.nic.pf_mac == other.nic.pf_mac {
            return Some(PortError::SamePfMac {
                mac: self.nic.pf_mac,
                other: other.pf,
            });
        }
        let (field, value) = self.uplink.claim()?;
        (other.uplink.claim()?.1 == value).then_some(PortError::SameWire {
            field,
            value,
            other: other.pf,
        })
    }
}

/// The whole card, checked.
#[derive(Debug)]
pub(crate) struct CardPlan {
    /// Port 0 first, without gaps.
    pub ports: Vec<PortPlan>,
    /// The QEMU to check full-system mode against (`--qemu` over `qemu`).
    pub qemu: Option<PathBuf>,
    pub busy_poll_us: u64,
    pub nap_poll_us: u64,
    pub client_limits: ClientLimits,
}

/// A port's configuration and where it is written.
struct Entry {
    at: String,
    config: PortConfig,
}

impl Entry {
    fn table(pf: u8) -> Entry {
        Entry {
            at: format!("ports.pf{pf}."),
            config: PortConfig::default(),
        }
    }
}

fn check_port_count(what: impl FnOnce() -> String, pf: u8) -> Result<(), ServeError> {
    if pf >= MAX_PORTS {
        return Err(ServeError::PortCount { what: what() });
    }
    Ok(())
}

/// Sets what `option`'s `args` give each port (`set`), adding the ports they name; `ports` is
/// `--ports`, if given.
fn apply<T>(
    entries: &mut BTreeMap<u8, Entry>,
    ports: Option<u8>,
    option: &'static str,
    args: &[PortArg<T>],
    set: impl Fn(&mut PortConfig, &T),
) -> Result<(), ServeError> {
    for (i, a) in args.iter().enumerate() {
        let pf = a.pf;
        if args[..i].iter().any(|b| b.pf == pf) {
            return Err(ServeError::CliTwice { option, pf });
        }
        check_port_count(|| format!("{option} pf{pf}=..."), pf)?;
        if let Some(n) = ports.filter(|&n| pf >= n) {
            return Err(ServeError::BeyondPorts {
                pf,
                by: option.into(),
                ports: n,
            });
        }
        set(
            &mut entries.entry(pf).or_insert_with(|| Entry::table(pf)).config,
            &a.value,
        );
    }
    Ok(())
}

impl ServeConfig {
    pub fn load(path: &Path) -> Result<ServeConfig, ServeError> {
        let text = std::fs::read_to_string(path).map_err(|source| ServeError::Read {
            path: path.into(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ServeError::Toml {
            path: path.into(),
            source: Box::new(e),
        })
    }

    /// The single-port form's fields: port pf0's configuration unless `[ports.pf0]` is.
    fn top_level(&self) -> PortConfig {
        PortConfig {
            vfs: self.vfs,
            mac_assignment: self.mac_assignment,
            pf_mac: self.pf_mac.clone(),
            vf: self.vf.clone(),
            uplink: self.uplink.clone(),
            promisc_policy: self.promisc_policy.clone(),
            model: self.model,
            pf_driver: self.pf_driver,
        }
    }

    /// The ports the file configures, by number; pf0 always (from the top level when no
    /// `[ports.pf0]` does).
    fn entries(&self) -> Result<BTreeMap<u8, (String, Entry)>, ServeError> {
        let mut ports: BTreeMap<u8, (String, Entry)> = BTreeMap::new();
        for (key, config) in &self.ports {
            let pf = key
                .parse::<PfRef>()
                .map_err(|source| ServeError::PortName {
                    key: key.clone(),
                    source,
                })?
                .0;
            check_port_count(|| format!("ports.{key}"), pf)?;
            if let Some((first, _)) = ports.get(&pf) {
                return Err(ServeError::NamedTwice {
                    pf,
                    first: first.clone(),
                    second: key.clone(),
                });
            }
            let entry = Entry {
                at: format!("ports.{key}."),
                config: config.clone(),
            };
            ports.insert(pf, (key.clone(), entry));
        }
        let top = self.top_level();
        match ports.get(&0) {
            Some((key, _)) => {
                let fields = top.fields_set();
                if !fields.is_empty() {
                    return Err(ServeError::TopLevelAndTable {
                        key: key.clone(),
                        fields,
                    });
                }
            }
            None => {
                let entry = Entry {
                    at: String::new(),
                    config: top,
                };
                ports.insert(0, (String::new(), entry));
            }
        }
        Ok(ports)
    }

    /// Every port of the card, `cli` applied over the file, checked: names, numbering, each
    /// port's fields, and what ports must not share (PF MACs, the uplinks' wires).
    pub(crate) fn plan(&self, cli: &CommandLine) -> Result<CardPlan, ServeError> {
        let busy_poll_us = cli
            .busy_poll_us
            .or(self.busy_poll_us)
            .unwrap_or(DEFAULT_BUSY_POLL_US);
        if busy_poll_us > MAX_BUSY_POLL_US {
            return Err(ServeError::BusyPoll(busy_poll_us));
        }
        let nap_poll_us = cli
            .nap_poll_us
            .or(self.nap_poll_us)
            .unwrap_or(DEFAULT_NAP_POLL_US);
        if nap_poll_us > MAX_NAP_POLL_US {
            return Err(ServeError::NapPoll(nap_poll_us));
        }
        let mut ports: BTreeMap<u8, Entry> = self
            .entries()?
            .into_iter()
            .map(|(pf, (_, e))| (pf, e))
            .collect();
        if let Some(n) = cli.ports {
            let what = || format!("--ports {n}");
            if n == 0 {
                return Err(ServeError::PortCount { what: what() });
            }
            check_port_count(what, n - 1)?;
            // Ports the file names beyond the count (pf0, at the top level or not, is not).
            if let Some((&pf, e)) = ports.range(n..).next() {
                let by = format!("[{}]", e.at.trim_end_matches('.'));
                return Err(ServeError::BeyondPorts { pf, by, ports: n });
            }
            for pf in 0..n {
                ports.entry(pf).or_insert_with(|| Entry::table(pf));
            }
        }
        apply(&mut ports, cli.ports, "--vfs", &cli.vfs, |c, &n| {
            c.vfs = Some(n)
        })?;
        apply(&mut ports, cli.ports, "--uplink", &cli.uplinks, |c, u| {
            c.uplink = u.clone()
        })?;
        apply(
            &mut ports,
            cli.ports,
            "--pf-driver",
            &cli.pf_drivers,
            |c, &d| c.pf_driver = Some(d),
        )?;
        if let Some(card) = cli.model {
            for e in ports.values_mut() {
                e.config.model = Some(card);
            }
        }
        let last = ports.keys().next_back().copied().unwrap_or(0);
        if let Some(missing) = (0..last).find(|pf| !ports.contains_key(pf)) {
            return Err(ServeError::PortGap { missing, last });
        }
        let mut plans: Vec<PortPlan> = Vec::with_capacity(ports.len());
        for (pf, e) in ports {
            let plan = e
                .config
                .resolve(pf, e.at.clone())
                .map_err(|source| ServeError::Port {
                    pf,
                    at: e.at,
                    source,
                })?;
            if let Some(clash) = plans.iter().find_map(|other| plan.clash(other)) {
                return Err(plan.error(clash));
            }
            plans.push(plan);
        }
        Ok(CardPlan {
            ports: plans,
            busy_poll_us,
            nap_poll_us,
            client_limits: self.checked_limits()?,
            qemu: cli.qemu.clone().or_else(|| self.qemu.clone()),
        })
    }

    fn checked_limits(&self) -> Result<ClientLimits, ServeError> {
        let l = self.client_limits;
        let err = |field, value, why| ServeError::ClientLimit { field, value, why };
        if !(1..=crate::vfio::wire::MAX_DMA_MAPS as u64).contains(&l.dma_maps) {
            return Err(err("dma_maps", l.dma_maps, "must be 1..=65535"));
        }
        if l.mapped_bytes == 0 {
            return Err(err("mapped_bytes", 0, "must be above 0"));
        }
        if l.fds == 0 {
            return Err(err(
                "fds",
                0,
                "must be above 0 (QEMU passes eventfds and memfds)",
            ));
        }
        Ok(l)
    }
}

#[cfg(test)]
mod tests;
