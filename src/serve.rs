//! `sriov-emu serve`: one NIC ([`model::nic::Nic`]) whose functions are served over vfio-user,
//! one socket per function: the PF (`DIR/pf0.sock`, the 82576 PF for a guest's igb) and each VF
//! (`DIR/pf0-vf<N>.sock`); administered through `DIR/control.sock` ([`crate::control`]).
//!
//! Threads: one thread accepting on every function's socket, a connection thread (and its DMA
//! writer) per attached client, the NIC's timer, the uplink's thread (when `[uplink]` or
//! `--uplink` names a backend, [`crate::uplink`]), and the control socket's thread. The
//! caller's thread waits for SIGINT/SIGTERM (the binary) or
//! calls [`Serving::shutdown`] (tests).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use eswitch::{MacAddr, PortId, VfSetting};
use model::function::i82576::Pf;
pub use model::nic::MacMode;
use model::nic::{NicBuildError, SetError, TimerHandle};
use model::{Clock, MonotonicClock, Nic, NicConfig};
use serde::Deserialize;
use thiserror::Error;
use tracing::{debug, info};

use crate::adapter::{FunctionAdapter, VfFunction};
use crate::capture::Capture;
pub use crate::control::control_socket;
use crate::control::ControlServer;
use crate::uplink::{Uplink, UplinkConfig, UplinkError, UplinkSpec};
use crate::vfio::{Pool, Server};

/// Most VFs `serve` accepts per port: 256, as a current card's port has (an E810's). A VF
/// with no client costs a listening socket and its state, not a thread.
pub const MAX_VFS: u16 = 256;
/// The default number of VFs: the 82576's 7.
pub const DEFAULT_VFS: u16 = 7;
/// How long a connection stays awake for its client's next message by default (µs).
pub const DEFAULT_BUSY_POLL_US: u64 = 50;
/// The most `busy_poll_us` accepts: beyond a millisecond the thread might as well spin.
pub const MAX_BUSY_POLL_US: u64 = 1000;
/// The `--config` file (TOML). Every field is optional.
///
/// ```toml
/// vfs = 2
/// mac_assignment = "generated"      # or "admin-only" (default)
/// pf_mac = "02:00:00:00:00:01"
/// [vf]
/// 0 = "mac 02:00:00:00:00:10 spoofchk on"
/// 1 = "mac 02:00:00:00:00:11 vlan 10 rate 100"
/// [uplink]                          # what stands behind the uplink port (default: none)
/// kind = "dgram"
/// local = "127.0.0.1:5555"
/// remote = "127.0.0.1:5556"
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    pub vfs: Option<u16>,
    pub mac_assignment: MacMode,
    pub pf_mac: Option<String>,
    /// Initial settings per VF, in the words of `ctl vf N ...`.
    pub vf: BTreeMap<String, String>,
    /// How long each connection looks for its client's next message before it sleeps
    /// (microseconds; default [`DEFAULT_BUSY_POLL_US`], 0 turns it off). See
    /// [`Server::set_busy_poll`].
    pub busy_poll_us: Option<u64>,
    /// The uplink port's backend ([`UplinkConfig`]); `--uplink` replaces it.
    pub uplink: UplinkConfig,
}

/// A configuration that cannot be served; nothing was started.
#[derive(Debug, Error)]
pub enum ServeError {
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
    #[error("number of VFs must be 1..={MAX_VFS}, got {0}")]
    VfCount(u16),
    #[error("busy_poll_us must be 0..={MAX_BUSY_POLL_US}, got {0}")]
    BusyPoll(u64),
    #[error("pf_mac: {0}")]
    PfMac(#[source] eswitch::policy::ParseMacError),
    #[error("pf_mac: {0} is not a unicast address")]
    PfMacNotUnicast(MacAddr),
    #[error("[vf] key `{0}` is not a VF index of this NIC")]
    VfKey(String),
    #[error("VF {vf}: {source}")]
    VfSettings { vf: u16, source: SetError },
    #[error(transparent)]
    Uplink(#[from] UplinkError),
    #[error("building the NIC: {0}")]
    Nic(#[from] NicBuildError),
    #[error("the PF function's config space: {0}")]
    PfConfig(#[from] pcie::BuildError),
    #[error("{path}: {source}")]
    Socket {
        path: PathBuf,
        source: std::io::Error,
    },
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

    /// The NIC this configuration describes, each VF's initial settings and the uplink,
    /// checked.
    fn resolve(&self, vfs_override: Option<u16>) -> Result<Resolved, ServeError> {
        let num_vfs = vfs_override.or(self.vfs).unwrap_or(DEFAULT_VFS);
        if !(1..=MAX_VFS).contains(&num_vfs) {
            return Err(ServeError::VfCount(num_vfs));
        }
        let mut nic = NicConfig {
            num_vfs,
            mac_assignment: self.mac_assignment.into(),
            ..NicConfig::default()
        };
        if let Some(m) = &self.pf_mac {
            let mac: MacAddr = m.parse().map_err(ServeError::PfMac)?;
            if !mac.is_valid_unicast() {
                return Err(ServeError::PfMacNotUnicast(mac));
            }
            nic.pf_mac = mac;
        }
        let mut settings = Vec::new();
        for (key, words) in &self.vf {
            let vf: u16 = key
                .parse()
                .ok()
                .filter(|&v| v < num_vfs)
                .ok_or_else(|| ServeError::VfKey(key.clone()))?;
            let w: Vec<&str> = words.split_whitespace().collect();
            let s = VfSetting::parse_words(&w).map_err(|e| ServeError::VfSettings {
                vf,
                source: e.into(),
            })?;
            settings.push((vf, s));
        }
        let uplink = self.uplink.resolve()?;
        Ok(Resolved {
            nic,
            settings,
            uplink,
        })
    }
}

/// A checked [`ServeConfig`].
#[derive(Debug)]
struct Resolved {
    nic: NicConfig,
    /// Per VF, the settings `serve` applies before serving.
    settings: Vec<(u16, Vec<VfSetting>)>,
    uplink: UplinkSpec,
}

/// The socket of the PF function in `dir`.
pub fn pf_socket(dir: &Path) -> PathBuf {
    dir.join("pf0.sock")
}

/// The socket of VF `vf` in `dir`.
pub fn vf_socket(dir: &Path, vf: u16) -> PathBuf {
    dir.join(format!("pf0-vf{vf}.sock"))
}

/// The `-device` argument that attaches `socket` to QEMU on root port `bus`.
pub fn qemu_device_json(socket: &Path, bus: &str, id: &str) -> String {
    serde_json::json!({
        "driver": "vfio-user-pci",
        "id": id,
        "bus": bus,
        "socket": {"type": "unix", "path": socket.display().to_string()},
    })
    .to_string()
}

/// Asks for a higher scheduling priority for the calling thread (nice −10), so that the
/// shaping timer runs on time on a host busy with guests. Without the privilege it stays as is.
fn raise_priority() {
    // SAFETY: gettid and setpriority take no pointers; they only affect this thread.
    let r = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, -10)
    };
    if r != 0 {
        debug!(
            "timer thread keeps its priority: {}",
            std::io::Error::last_os_error()
        );
    }
    // The default 50 µs timer slack is small against the shaper's 5 ms burst window, but a tight
    // slack keeps the paused queues' resume times close to the rate's schedule.
    // SAFETY: prctl(PR_SET_TIMERSLACK) takes an integer and affects this thread only.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
}

/// A running `serve`: the NIC, its vfio-user servers, the timer and the control socket.
pub struct Serving {
    nic: Arc<Nic>,
    dir: PathBuf,
    /// Every VF's server, then the PF function's, accepting on one thread.
    pool: Option<Pool>,
    control: Option<ControlServer>,
    timer: Option<TimerHandle>,
    capture: Option<Arc<Capture>>,
    uplink: Option<Uplink>,
}

impl Serving {
    /// Builds the NIC, applies the initial settings, opens the uplink (all checked before any
    /// socket in `dir` exists) and starts serving in `dir` (created if missing).
    pub fn start(
        dir: &Path,
        config: &ServeConfig,
        vfs_override: Option<u16>,
    ) -> Result<Serving, ServeError> {
        let Resolved {
            nic: nic_config,
            settings,
            uplink,
        } = config.resolve(vfs_override)?;
        let busy_poll = config.busy_poll_us.unwrap_or(DEFAULT_BUSY_POLL_US);
        if busy_poll > MAX_BUSY_POLL_US {
            return Err(ServeError::BusyPoll(busy_poll));
        }
        let clock: Arc<dyn Clock> = Arc::new(MonotonicClock::new());
        let nic = Nic::new(&nic_config, clock.clone())?;
        for (vf, s) in &settings {
            nic.configure_vf(*vf, s)
                .map_err(|e| ServeError::VfSettings {
                    vf: *vf,
                    source: e.into(),
                })?;
        }
        let uplink = Uplink::start(&nic, PortId::Uplink(0), &uplink)?;
        std::fs::create_dir_all(dir).map_err(|source| ServeError::Socket {
            path: dir.into(),
            source,
        })?;
        let mut serving = Serving {
            nic: nic.clone(),
            dir: dir.into(),
            pool: None,
            control: None,
            timer: None,
            capture: None,
            uplink,
        };
        serving.timer =
            Some(
                nic.spawn_timer_with(raise_priority)
                    .map_err(|source| ServeError::Socket {
                        path: dir.into(),
                        source,
                    })?,
            );
        let bind = |path: PathBuf, function: Box<dyn crate::vfio::PciFunction>| {
            let mut server =
                Server::bind_boxed(&path, function).map_err(|source| ServeError::Socket {
                    path: path.clone(),
                    source,
                })?;
            server.set_busy_poll(std::time::Duration::from_micros(busy_poll));
            Ok::<Server, ServeError>(server)
        };
        let mut servers = Vec::with_capacity(usize::from(nic.num_vfs()) + 1);
        for vf in 0..nic.num_vfs() {
            let function = VfFunction::new(&nic, vf).ok_or(ServeError::VfCount(vf))?;
            servers.push(bind(vf_socket(dir, vf), Box::new(function))?);
        }
        // The PF function: the 82576 PF with the NIC's station address, its receive filters
        // told to the switch's PF port.
        let pf = Pf::new(nic_config.pf_mac, nic.shared_pf(), clock)?;
        let pf = nic
            .host_pf(Box::new(pf))
            .expect("a new NIC hosts no PF function yet");
        servers.push(bind(
            pf_socket(dir),
            Box::new(FunctionAdapter::from_handle(pf)),
        )?);
        serving.pool = Some(Pool::start(servers).map_err(|source| ServeError::Socket {
            path: dir.into(),
            source,
        })?);
        let path = control_socket(dir);
        serving.control = Some(
            ControlServer::start(
                &path,
                nic.clone(),
                serving.uplink.iter().map(Uplink::monitor).collect(),
            )
            .map_err(|source| ServeError::Socket { path, source })?,
        );
        info!(dir = %dir.display(), vfs = nic.num_vfs(), "serving");
        Ok(serving)
    }

    pub fn nic(&self) -> &Arc<Nic> {
        &self.nic
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The uplink's backend, if one was configured.
    pub fn uplink(&self) -> Option<&Uplink> {
        self.uplink.as_ref()
    }

    /// Captures every port to `DIR/pf0-<port>.pcap` until shutdown (see [`crate::capture`]).
    pub fn start_capture(&mut self, dir: &Path) -> std::io::Result<()> {
        if let Some(old) = self.capture.take() {
            old.stop(&self.nic);
        }
        self.capture = Some(Capture::start(&self.nic, dir)?);
        Ok(())
    }

    /// Each VF's vfio-user server counters (connections, error replies, panics...), by VF.
    pub fn server_stats(&self) -> Vec<crate::vfio::ServerStats> {
        self.pool
            .iter()
            .flat_map(|p| p.handles().iter().take(usize::from(self.nic.num_vfs())))
            .map(|h| h.stats())
            .collect()
    }

    /// The PF function's vfio-user server counters.
    pub fn pf_server_stats(&self) -> Option<crate::vfio::ServerStats> {
        self.pool
            .as_ref()
            .and_then(|p| p.handles().get(usize::from(self.nic.num_vfs())))
            .map(|h| h.stats())
    }

    /// What is served and how to attach it, for the start-up message.
    pub fn banner(&self) -> String {
        let mut s = format!(
            "sriov-emu: serving one 82576 NIC with {} VFs in {}\n  control: {}\n",
            self.nic.num_vfs(),
            self.dir.display(),
            control_socket(&self.dir).display()
        );
        let path = pf_socket(&self.dir);
        let mac = self.nic.with_pf(|pf| pf.switch().config().pf_mac);
        s += &format!(
            // A root port of its own (chassis 2): the VFs' ports are chassis 1, slots 1 and up.
            "  pf: {} (mac {}; igb sees no VFs: the emulator's PF agent drives them)\n    -device pcie-root-port,id=rppf,chassis=2,slot=1 -device '{}'\n",
            path.display(),
            mac.unwrap_or(MacAddr::ZERO),
            qemu_device_json(&path, "rppf", "pf"),
        );
        for vf in 0..self.nic.num_vfs() {
            let path = vf_socket(&self.dir, vf);
            let mac = self
                .nic
                .with_pf(|pf| pf.policy(vf).and_then(|p| p.mac))
                .map_or_else(|| "assigned by the VF".to_string(), |m| m.to_string());
            s += &format!(
                // QEMU's chassis number is 8 bits: root ports differ by slot (13 bits).
                "  vf {vf}: {} (mac {mac})\n    -device pcie-root-port,id=rp{vf},chassis=1,slot={} -device '{}'\n",
                path.display(),
                u32::from(vf) + 1,
                qemu_device_json(&path, &format!("rp{vf}"), &format!("vf{vf}")),
            );
        }
        if let Some(u) = &self.uplink {
            s += &format!("  uplink {}: {}\n", u.port(), u.backend());
        }
        s += &format!(
            "  QEMU also needs shared guest memory (<RAM> = its -m size; without it the functions fail to realize): {}\n",
            crate::vfio::QEMU_SHARED_MEMORY_OPTIONS
        );
        s
    }

    /// Stops every server and the control socket, and removes the sockets.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(pool) = self.pool.take() {
            let paths: Vec<PathBuf> = pool.handles().iter().map(|h| h.path().into()).collect();
            pool.shutdown();
            // The servers remove their sockets when they drop; make sure.
            for p in paths {
                let _ = std::fs::remove_file(p);
            }
        }
        if let Some(c) = self.control.take() {
            c.shutdown();
        }
        if let Some(u) = self.uplink.take() {
            u.stop();
        }
        if let Some(c) = self.capture.take() {
            c.stop(&self.nic);
        }
        self.timer.take();
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{handle, request, Request};

    fn cfg(text: &str) -> ServeConfig {
        toml::from_str(text).expect("valid TOML")
    }

    #[test]
    fn pcap_capture_records_every_port_and_flushes_on_shutdown() {
        let base = std::env::temp_dir().join(format!("sriov-emu-pcap-{}", std::process::id()));
        let (dir, pcap) = (base.join("run"), base.join("pcap"));
        let mut serving = Serving::start(&dir, &ServeConfig::default(), Some(2)).unwrap();
        serving.start_capture(&pcap).unwrap();
        // An ARP-sized broadcast from the wire reaches the PF and both VFs.
        let mut frame = vec![0xFF; 6];
        frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x42, 0x08, 0x06]);
        frame.resize(60, 0);
        serving.nic().inject(
            eswitch::PortId::Uplink(0),
            bytes::Bytes::from(frame.clone()),
        );
        serving.shutdown();
        for port in ["uplink0", "pf", "vf0", "vf1"] {
            let data = std::fs::read(pcap.join(format!("pf0-{port}.pcap"))).unwrap();
            assert_eq!(data.len(), 24 + 16 + 60, "{port}: header + one record");
            assert_eq!(&data[..4], &0xa1b2_c3d4u32.to_le_bytes());
            assert_eq!(&data[40..], &frame[..], "{port}");
        }
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn config_defaults_and_per_vf_words() {
        let r = ServeConfig::default().resolve(None).unwrap();
        assert_eq!(r.nic.num_vfs, DEFAULT_VFS);
        assert_eq!(r.nic.mac_assignment, mailbox::MacAssignment::AdminOnly);
        assert!(r.settings.is_empty());
        assert_eq!(r.uplink, UplinkSpec::None);
        let c = cfg("vfs = 3\nmac_assignment = \"generated\"\n[vf]\n1 = \"mac 02:00:00:00:00:11 vlan 10\"\n");
        let r = c.resolve(Some(2)).unwrap();
        assert_eq!(r.nic.num_vfs, 2, "--vfs wins over the file");
        assert!(matches!(
            r.nic.mac_assignment,
            mailbox::MacAssignment::Generated { .. }
        ));
        assert_eq!(r.settings.len(), 1);
        assert_eq!(r.settings[0].0, 1);
    }

    #[test]
    fn bad_configs_are_refused_before_anything_starts() {
        assert!(
            toml::from_str::<ServeConfig>("vf_count = 2").is_err(),
            "unknown key"
        );
        assert!(matches!(
            cfg("[vf]\n7 = \"trust on\"").resolve(Some(2)),
            Err(ServeError::VfKey(_))
        ));
        assert!(matches!(
            cfg("[vf]\n0 = \"vlan ten\"").resolve(None),
            Err(ServeError::VfSettings { vf: 0, .. })
        ));
        // Out of range: refused by the switch before any socket exists.
        let dir = std::env::temp_dir().join(format!("sriov-emu-bad-{}", std::process::id()));
        assert!(matches!(
            Serving::start(&dir, &cfg("[vf]\n0 = \"vlan 9999\""), Some(1)),
            Err(ServeError::VfSettings { vf: 0, .. })
        ));
        assert!(!dir.exists());
        assert!(matches!(
            ServeConfig::default().resolve(Some(0)),
            Err(ServeError::VfCount(0))
        ));
        assert!(matches!(
            cfg("pf_mac = \"ff:ff:ff:ff:ff:ff\"").resolve(None),
            Err(ServeError::PfMacNotUnicast(_))
        ));
    }

    #[test]
    fn pf0_sock_serves_the_82576_pf_with_its_bars_and_vectors() {
        use crate::vfio::{irq_index, region};
        let dir = std::env::temp_dir().join(format!("sriov-emu-pf0-{}", std::process::id()));
        let serving = Serving::start(&dir, &ServeConfig::default(), Some(1)).unwrap();
        let mut c = vfio_user::Client::new(&pf_socket(&dir)).expect("handshake");
        let sizes: Vec<u64> = (0..9).map(|i| c.region(i).map_or(0, |r| r.size)).collect();
        assert_eq!(
            sizes,
            [128 << 10, 128 << 10, 32, 16 << 10, 0, 0, 0, 4096, 0]
        );
        let count = |c: &mut vfio_user::Client, i| c.get_irq_info(i).unwrap().count;
        assert_eq!(count(&mut c, irq_index::MSIX), 10);
        assert_eq!(count(&mut c, irq_index::MSI), 1);
        assert_eq!(count(&mut c, irq_index::INTX), 0);
        let mut id = [0u8; 4];
        c.region_read(region::CONFIG, 0, &mut id).unwrap();
        assert_eq!(id, [0x86, 0x80, 0xC9, 0x10]);
        let mut pin = [0xFFu8];
        c.region_read(region::CONFIG, 0x3D, &mut pin).unwrap();
        assert_eq!(pin, [0]);
        let show = request(&dir, &Request::Show).unwrap().show.unwrap();
        assert_eq!(show["pf_function"]["attached"], true);
        drop(c);
        serving.shutdown();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn serve_creates_the_sockets_ctl_changes_policy_and_shutdown_removes_them() {
        let dir = std::env::temp_dir().join(format!("sriov-emu-serve-{}", std::process::id()));
        let c = cfg("[vf]\n0 = \"mac 02:00:00:00:00:10\"");
        let serving = Serving::start(&dir, &c, Some(2)).unwrap();
        for p in [
            pf_socket(&dir),
            vf_socket(&dir, 0),
            vf_socket(&dir, 1),
            control_socket(&dir),
        ] {
            assert!(p.exists(), "{}", p.display());
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(control_socket(&dir))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let banner = serving.banner();
        assert!(
            banner.contains(&format!(
                "-device pcie-root-port,id=rppf,chassis=2,slot=1 -device '{}'",
                qemu_device_json(&pf_socket(&dir), "rppf", "pf")
            )),
            "{banner}"
        );
        assert!(banner.contains("vf 1: "), "{banner}");
        let show = request(&dir, &Request::Show).unwrap();
        assert!(show.ok);
        let text = show.text.unwrap();
        // The PF function, under the PF port: no client yet.
        assert!(
            text.contains("    port pf: ")
                && text.contains("        device: 0 rx, 0 tx, attached false, rx drops: none"),
            "{text}"
        );
        assert_eq!(
            show.show.as_ref().unwrap()["pf_function"]["attached"],
            false
        );
        assert!(
            text.contains("vf 0 link/ether 02:00:00:00:00:10, vlan 0, qos 0, spoof checking on, link-state auto, trust off, max_tx_rate 0"),
            "{text}"
        );
        let words = |w: &str| w.split(' ').map(String::from).collect::<Vec<_>>();
        let ok = request(
            &dir,
            &Request::Vf {
                vf: 1,
                words: words("vlan 10 qos 3 rate 100"),
            },
        )
        .unwrap();
        assert!(ok.ok, "{ok:?}");
        // Invalid input: a clear error, nothing changes (all or nothing).
        let before = serving.nic().with_pf(|pf| pf.policy(1).cloned());
        for bad in ["trust on vlan 5000", "spoofchk maybe", "frobnicate 1"] {
            let r = handle(
                serving.nic(),
                &[],
                &Request::Vf {
                    vf: 1,
                    words: words(bad),
                },
            );
            assert!(!r.ok && r.error.is_some(), "{bad}: {r:?}");
        }
        let r = handle(
            serving.nic(),
            &[],
            &Request::Vf {
                vf: 5,
                words: words("trust on"),
            },
        );
        assert!(!r.ok);
        assert_eq!(serving.nic().with_pf(|pf| pf.policy(1).cloned()), before);
        let show = request(&dir, &Request::Show).unwrap().show.unwrap();
        assert_eq!(show["vfs"][1]["policy"]["max_tx_rate"], 100);
        assert_eq!(show["vfs"][1]["policy"]["port_vlan"]["vid"], 10);
        // A garbage line gets an error reply, not a hang or a crash.
        {
            use std::io::{BufRead, BufReader, Write};
            let mut s = std::os::unix::net::UnixStream::connect(control_socket(&dir)).unwrap();
            s.write_all(b"{not json\n").unwrap();
            let mut line = String::new();
            BufReader::new(s).read_line(&mut line).unwrap();
            assert!(line.contains("\"ok\":false"), "{line}");
        }
        serving.shutdown();
        for p in [
            pf_socket(&dir),
            vf_socket(&dir, 0),
            vf_socket(&dir, 1),
            control_socket(&dir),
        ] {
            assert!(!p.exists(), "{} removed", p.display());
        }
        let _ = std::fs::remove_dir(&dir);
    }
}
