//! `sriov-emu serve`: a card of one or more ports ([`Port`]: a [`model::nic::Nic`] each, its
//! PF side, VFs, embedded switch and uplink) whose functions are served over vfio-user, one
//! socket per function (`DIR/pfK.sock` for an 82576's PF, `DIR/pfK-vf<N>.sock` per VF),
//! administered through `DIR/control.sock` ([`crate::control`]).
//! The configuration ([`ServeConfig`], [`CommandLine`]) is checked in [`config`].
//!
//! Threads: one thread accepting on every port's sockets, a connection thread (and its DMA
//! writer) per attached client, a timer per port, each uplink's thread (when `[uplink]` or
//! `--uplink` names a backend, [`crate::uplink`]), and the control socket's thread. The
//! caller's thread waits for SIGINT/SIGTERM (the binary) or
//! calls [`Serving::shutdown`] (tests).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use model::nic::MacMode;
use model::{MonotonicClock, Nic};
use tracing::{debug, info};

pub use crate::control::control_socket;
use crate::control::ControlServer;
use crate::uplink::Uplink;
use crate::vfio::{fd_budget, raise_nofile_limit, Pool};

pub mod config;
mod port;

pub use config::{
    CommandLine, PortArg, PortConfig, PortError, ServeConfig, ServeError, DEFAULT_BUSY_POLL_US,
    DEFAULT_VFS, MAX_BUSY_POLL_US, MAX_VFS,
};
pub use port::{port_pf_socket, port_vf_socket, Port};

/// The socket of pf0's PF function in `dir`.
pub fn pf_socket(dir: &Path) -> PathBuf {
    port_pf_socket(dir, 0)
}

/// The socket of VF `vf` of port pf0 in `dir`.
pub fn vf_socket(dir: &Path, vf: u16) -> PathBuf {
    port_vf_socket(dir, 0, vf)
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

/// QEMU's `-device` arguments for port `pf` in full-system mode (the patched QEMU of
/// `qemu/patches/`): one root port, each VF on the PF's bus at its routing ID (PF + 0x80 + 2n)
/// naming the PF (`"sriov-pf"`), the VFs first (QEMU wants them to exist when the PF is
/// realized), then the PF at 0.0. `prefix` starts every id (`pf1-` on a multi-port card).
pub fn full_system_qemu_args(dir: &Path, pf: u8, num_vfs: u16, prefix: &str) -> Vec<String> {
    let rp = format!("{prefix}rp");
    let pf_id = format!("{prefix}pf");
    let mut args = vec![
        "-device".to_string(),
        serde_json::json!({"driver": "pcie-root-port", "id": rp, "chassis": u32::from(pf) + 1})
            .to_string(),
    ];
    // The routing IDs the PF's SR-IOV capability gives (First VF Offset, VF Stride).
    use model::function::i82576::config::{VF_OFFSET, VF_STRIDE};
    for vf in 0..num_vfs {
        let devfn = VF_OFFSET + VF_STRIDE * vf;
        args.push("-device".into());
        args.push(
            serde_json::json!({
                "driver": "vfio-user-pci",
                "id": format!("{prefix}vf{vf}"),
                "bus": rp,
                "addr": format!("{:#x}.{}", devfn >> 3, devfn & 7),
                "sriov-pf": pf_id,
                "socket": {"type": "unix", "path": port_vf_socket(dir, pf, vf).display().to_string()},
            })
            .to_string(),
        );
    }
    args.push("-device".into());
    args.push(
        serde_json::json!({
            "driver": "vfio-user-pci",
            "id": pf_id,
            "bus": rp,
            "addr": "0x0.0",
            "socket": {"type": "unix", "path": port_pf_socket(dir, pf).display().to_string()},
        })
        .to_string(),
    );
    args
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

/// Keeps freed heap memory up to [`HEAP_KEEP`] instead of handing it back to the kernel at once.
/// glibc returns a heap's free top to the kernel once it exceeds 128 KiB, and a TSO packet's
/// gather and segments (about 130 KiB, allocated and freed per packet) cross that line every
/// time: the heap shrank and grew again per packet, and each growth page-faulted in fresh
/// pages (2 % of `serve`'s CPU during a TCP stream, in `sysmalloc`). A process-wide setting, made where the
/// process becomes a server; glibc's mmap threshold stays at its 128 KiB default.
fn keep_heap() {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: mallopt takes two integers and only changes the allocator's tunables.
        let ok = unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, HEAP_KEEP) };
        if ok != 1 {
            debug!("mallopt(M_TRIM_THRESHOLD) refused; the heap trims at glibc's default");
        }
    }
}

/// Free heap memory each of glibc's arenas keeps (a few TSO packets' worth).
#[cfg(target_env = "gnu")]
const HEAP_KEEP: libc::c_int = 1 << 20;

/// A running `serve`: the card's ports, their vfio-user servers and the control socket.
pub struct Serving {
    dir: PathBuf,
    /// Port 0 first.
    ports: Vec<Port>,
    /// Every port's VF servers, accepting on one thread.
    pool: Option<Pool>,
    control: Option<ControlServer>,
}

impl Serving {
    /// [`Serving::start_with`] with `vfs_override` as `--vfs` (port pf0's VFs).
    pub fn start(
        dir: &Path,
        config: &ServeConfig,
        vfs_override: Option<u16>,
    ) -> Result<Serving, ServeError> {
        let cli = CommandLine {
            vfs: vfs_override
                .map(|value| PortArg { pf: 0, value })
                .into_iter()
                .collect(),
            ..CommandLine::default()
        };
        Serving::start_with(dir, config, &cli)
    }

    /// Builds every port's NIC, applies the initial settings, opens the uplinks (all checked
    /// before any socket in `dir` exists) and starts serving in `dir` (created if missing).
    pub fn start_with(
        dir: &Path,
        config: &ServeConfig,
        cli: &CommandLine,
    ) -> Result<Serving, ServeError> {
        let plan = config.plan(cli)?;
        keep_heap();
        // Full-system mode needs a QEMU that shows the guest the PF's VFs: check the one named.
        let full_system = plan
            .ports
            .iter()
            .any(|p| p.nic.pf_driver == model::nic::PfDriver::Guest);
        if let (true, Some(qemu)) = (full_system, &plan.qemu) {
            crate::qemu_caps::probe_vfio_user_sriov(qemu).map_err(ServeError::Qemu)?;
        }
        // One clock for the card: the ports' captures and counters share a time base.
        let clock = Arc::new(MonotonicClock::new());
        let ports = plan
            .ports
            .iter()
            .map(|p| Port::build(p, clock.clone()))
            .collect::<Result<Vec<Port>, ServeError>>()?;
        let socket_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ServeError::Socket { path, source }
        };
        crate::create_dir(dir).map_err(socket_error(dir))?;
        let mut serving = Serving {
            dir: dir.into(),
            ports,
            pool: None,
            control: None,
        };
        let polling = (
            Duration::from_micros(plan.busy_poll_us),
            Duration::from_micros(plan.nap_poll_us),
        );
        let functions: u64 = serving
            .ports
            .iter()
            .map(|p| u64::from(p.nic().num_vfs()) + 1)
            .sum();
        let limits = fd_budget(plan.client_limits, functions, raise_nofile_limit());
        let mut servers = Vec::new();
        for port in &mut serving.ports {
            port.start_timer().map_err(socket_error(dir))?;
            servers.extend(port.bind_servers(dir, polling, limits)?);
        }
        serving.pool = Some(Pool::start(servers).map_err(socket_error(dir))?);
        let path = control_socket(dir);
        let views = serving.ports.iter().map(Port::view).collect();
        serving.control = Some(ControlServer::start(&path, views).map_err(socket_error(&path))?);
        info!(dir = %dir.display(), ports = serving.ports.len(), "serving");
        Ok(serving)
    }

    /// Port pf0's NIC.
    pub fn nic(&self) -> &Arc<Nic> {
        self.ports[0].nic()
    }

    /// The card's ports, port 0 first.
    pub fn ports(&self) -> &[Port] {
        &self.ports
    }

    /// Port `pf` (0 for pf0).
    pub fn port(&self, pf: u8) -> Option<&Port> {
        self.ports.get(usize::from(pf))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Port pf0's uplink backend, if one was configured.
    pub fn uplink(&self) -> Option<&Uplink> {
        self.ports[0].uplink()
    }

    /// Captures every switch port of every card port to `DIR/pfK-<port>.pcap` until shutdown
    /// (see [`crate::capture`]).
    pub fn start_capture(&mut self, dir: &Path) -> std::io::Result<()> {
        self.ports.iter_mut().try_for_each(|p| p.start_capture(dir))
    }

    /// Each VF's vfio-user server counters (connections, error replies, panics...), port by
    /// port, by VF.
    pub fn server_stats(&self) -> Vec<crate::vfio::ServerStats> {
        let vf_sockets: Vec<PathBuf> = self
            .ports
            .iter()
            .flat_map(|p| (0..p.nic().num_vfs()).map(|vf| port_vf_socket(&self.dir, p.pf(), vf)))
            .collect();
        vf_sockets
            .iter()
            .filter_map(|path| self.server_at(path))
            .collect()
    }

    /// The vfio-user server counters of port `pf`'s PF function.
    pub fn port_pf_server_stats(&self, pf: u8) -> Option<crate::vfio::ServerStats> {
        self.server_at(&port_pf_socket(&self.dir, pf))
    }

    /// The vfio-user server counters of pf0's PF function.
    pub fn pf_server_stats(&self) -> Option<crate::vfio::ServerStats> {
        self.port_pf_server_stats(0)
    }

    fn server_at(&self, path: &Path) -> Option<crate::vfio::ServerStats> {
        self.pool
            .as_ref()?
            .handles()
            .iter()
            .find(|h| h.path() == path)
            .map(|h| h.stats())
    }

    /// What is served and how to attach it, for the start-up message.
    pub fn banner(&self) -> String {
        let mut s = match &self.ports[..] {
            [one] => format!(
                "sriov-emu: serving one {} NIC with {} VFs in {}\n",
                one.nic().card(),
                one.nic().num_vfs(),
                self.dir.display()
            ),
            ports => format!(
                "sriov-emu: serving a card with {} ports ({}) in {}\n",
                ports.len(),
                ports
                    .iter()
                    .map(|p| p.nic().card().name())
                    .collect::<Vec<_>>()
                    .join(", "),
                self.dir.display()
            ),
        };
        s += &format!("  control: {}\n", control_socket(&self.dir).display());
        let qualified = self.ports.len() > 1;
        for p in &self.ports {
            s += &p.banner(&self.dir, qualified);
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
        for p in &mut self.ports {
            p.stop();
        }
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
    use scenarios::PfRef;

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
    fn bad_configs_are_refused_before_anything_starts() {
        assert!(
            toml::from_str::<ServeConfig>("vf_count = 2").is_err(),
            "unknown key"
        );
        // Out of range: refused by the switch before any socket exists.
        let dir = std::env::temp_dir().join(format!("sriov-emu-bad-{}", std::process::id()));
        assert!(matches!(
            Serving::start(&dir, &cfg("[vf]\n0 = \"vlan 9999\""), Some(1)),
            Err(ServeError::Port {
                pf: 0,
                source: PortError::VfSettings { vf: 0, .. },
                ..
            })
        ));
        assert!(!dir.exists());
        assert!(matches!(
            Serving::start(&dir, &ServeConfig::default(), Some(0)),
            Err(ServeError::Port {
                source: PortError::VfCount(0),
                ..
            })
        ));
        assert!(!dir.exists());
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
        let show = request(&dir, &Request::Show { port: None })
            .unwrap()
            .show
            .unwrap();
        assert_eq!(show["ports"][0]["pf_function"]["attached"], true);
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
                "-device pcie-root-port,id=rppf,chassis=1,slot=0 -device '{}'",
                qemu_device_json(&pf_socket(&dir), "rppf", "pf")
            )),
            "{banner}"
        );
        assert!(banner.contains("vf 1: "), "{banner}");
        let show = request(&dir, &Request::Show { port: None }).unwrap();
        assert!(show.ok);
        let text = show.text.unwrap();
        // The PF function, under the PF port: no client yet.
        assert!(
            text.contains("    port pf: ")
                && text.contains("        device: 0 rx, 0 tx, attached false, rx drops: none"),
            "{text}"
        );
        assert_eq!(
            show.show.as_ref().unwrap()["ports"][0]["pf_function"]["attached"],
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
                port: PfRef(0),
                vf: 1,
                words: words("vlan 10 qos 3 rate 100"),
            },
        )
        .unwrap();
        assert!(ok.ok, "{ok:?}");
        // Invalid input: a clear error, nothing changes (all or nothing).
        let views: Vec<_> = serving.ports().iter().map(Port::view).collect();
        let before = serving.nic().with_pf(|pf| pf.policy(1).cloned());
        for bad in ["trust on vlan 5000", "spoofchk maybe", "frobnicate 1"] {
            let r = handle(
                &views,
                &Request::Vf {
                    port: PfRef(0),
                    vf: 1,
                    words: words(bad),
                },
            );
            assert!(!r.ok && r.error.is_some(), "{bad}: {r:?}");
        }
        let r = handle(
            &views,
            &Request::Vf {
                port: PfRef(0),
                vf: 5,
                words: words("trust on"),
            },
        );
        assert!(!r.ok);
        assert_eq!(serving.nic().with_pf(|pf| pf.policy(1).cloned()), before);
        let show = request(&dir, &Request::Show { port: None })
            .unwrap()
            .show
            .unwrap();
        let vf1 = &show["ports"][0]["vfs"][1];
        assert_eq!(vf1["policy"]["max_tx_rate"], 100);
        assert_eq!(vf1["policy"]["port_vlan"]["vid"], 10);
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
