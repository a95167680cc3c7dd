//! One port of the card as `serve` runs it: its NIC (PF side, VFs, embedded switch), the
//! uplink behind its switch, its timer, and the vfio-user servers of its functions: the 82576
//! PF for a guest's igb (`DIR/pfK.sock`) and each VF (`DIR/pfK-vfN.sock`).
//! Ports share nothing but the clock: frames go from one port to another only over a wire
//! between their uplinks.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use eswitch::PortId;
use model::function::i82576::Pf;
use model::nic::{Card, PfHandle, TimerHandle};
use model::{Clock, Nic};

use super::config::{PortError, PortPlan, ServeError};
use super::{qemu_device_json, raise_priority};
use crate::adapter::{FunctionAdapter, VfFunction};
use crate::capture::Capture;
use crate::control::{port_name, PortView};
use crate::uplink::Uplink;
use crate::vfio::{ClientLimits, Server, ServerHandle};

/// The socket of port `pf`'s PF function in `dir`: `pf1.sock`.
pub fn port_pf_socket(dir: &Path, pf: u8) -> PathBuf {
    dir.join(format!("{}.sock", port_name(pf)))
}

/// The socket of VF `vf` of port `pf` in `dir`: `pf1-vf0.sock`.
pub fn port_vf_socket(dir: &Path, pf: u8, vf: u16) -> PathBuf {
    dir.join(format!("{}-vf{vf}.sock", port_name(pf)))
}

/// A running port.
pub struct Port {
    pf: u8,
    nic: Arc<Nic>,
    /// The PF function the NIC hosts (a guest's igb drives it through `pfK.sock`).
    /// The PF function's handle (an 82576 port; the 82599's PF is not modelled).
    pf_function: Option<PfHandle>,
    uplink: Option<Uplink>,
    timer: Option<TimerHandle>,
    capture: Option<Arc<Capture>>,
    /// The VFs' vfio-user servers by VF, then the PF function's (once bound).
    servers: Vec<ServerHandle>,
}

impl Port {
    /// Builds the NIC of `plan` on `clock`, applies the VFs' initial settings and opens the
    /// uplink: all a port's configuration can still fail on, before the serving directory is
    /// touched. Dropping the port closes the uplink again.
    pub(super) fn build(plan: &PortPlan, clock: Arc<dyn Clock>) -> Result<Port, ServeError> {
        let nic = Nic::new(&plan.nic, clock.clone()).map_err(|source| ServeError::Nic {
            pf: plan.pf,
            source,
        })?;
        // The 82576 PF with the port's station address, its receive filters told to the
        // switch's PF port while a guest drives it. The 82599's PF function is not modelled:
        // an 82599 port serves its VFs only.
        let pf_function = match plan.nic.card {
            Card::I82576 => {
                let pf = Pf::new(plan.nic.pf_mac, nic.shared_pf(), clock)
                    .map_err(ServeError::PfConfig)?;
                Some(
                    nic.host_pf(Box::new(pf))
                        .expect("a new NIC hosts no PF function yet"),
                )
            }
            Card::X82599 => None,
        };
        nic.with_pf(|side| side.set_promisc_policy(plan.promisc_policy));
        for (vf, s) in &plan.settings {
            nic.configure_vf(*vf, s).map_err(|e| {
                plan.error(PortError::VfSettings {
                    vf: *vf,
                    source: e.into(),
                })
            })?;
        }
        let uplink =
            Uplink::start(&nic, PortId::Uplink(0), &plan.uplink).map_err(|e| plan.error(e))?;
        Ok(Port {
            pf: plan.pf,
            nic,
            pf_function,
            uplink,
            timer: None,
            capture: None,
            servers: Vec::new(),
        })
    }

    /// Starts the NIC's timer thread (paused TX queues, held interrupts).
    pub(super) fn start_timer(&mut self) -> std::io::Result<()> {
        self.timer = Some(self.nic.spawn_timer_with(raise_priority)?);
        Ok(())
    }

    /// Binds a vfio-user server for each VF and then the PF function in `dir`.
    pub(super) fn bind_servers(
        &mut self,
        dir: &Path,
        (busy_poll, nap_poll): (Duration, Duration),
        limits: ClientLimits,
    ) -> Result<Vec<Server>, ServeError> {
        let bind = |path: PathBuf, function: Box<dyn crate::vfio::PciFunction>| {
            let mut server =
                Server::bind_boxed(&path, function).map_err(|source| ServeError::Socket {
                    path: path.clone(),
                    source,
                })?;
            server.set_busy_poll(busy_poll);
            server.set_nap_poll(nap_poll);
            server.set_limits(limits);
            Ok(server)
        };
        let mut servers = (0..self.nic.num_vfs())
            .map(|vf| {
                let path = port_vf_socket(dir, self.pf, vf);
                let function =
                    VfFunction::new(&self.nic, vf).ok_or_else(|| ServeError::Socket {
                        path: path.clone(),
                        source: std::io::Error::other("the NIC has no such VF"),
                    })?;
                bind(path, Box::new(function))
            })
            .collect::<Result<Vec<Server>, ServeError>>()?;
        if let Some(f) = &self.pf_function {
            let pf = FunctionAdapter::from_handle(f.clone());
            servers.push(bind(port_pf_socket(dir, self.pf), Box::new(pf))?);
        }
        self.servers = servers.iter().map(Server::handle).collect();
        Ok(servers)
    }

    /// The card's port number: 0 for pf0.
    pub fn pf(&self) -> u8 {
        self.pf
    }

    pub fn nic(&self) -> &Arc<Nic> {
        &self.nic
    }

    /// The uplink's backend, if one was configured.
    pub fn uplink(&self) -> Option<&Uplink> {
        self.uplink.as_ref()
    }

    /// What the control socket reaches of this port.
    pub(super) fn view(&self) -> PortView {
        let vfs = usize::from(self.nic.num_vfs()).min(self.servers.len());
        PortView {
            nic: self.nic.clone(),
            uplinks: self.uplink.iter().map(Uplink::monitor).collect(),
            vf_servers: self.servers[..vfs].to_vec(),
            pf_server: self.servers.get(vfs).cloned(),
        }
    }

    /// Captures every switch port to `DIR/pfK-<port>.pcap` until stopped.
    pub(super) fn start_capture(&mut self, dir: &Path) -> std::io::Result<()> {
        if let Some(old) = self.capture.take() {
            old.stop(&self.nic);
        }
        self.capture = Some(Capture::start(&self.nic, dir, &port_name(self.pf))?);
        Ok(())
    }

    /// The port's lines of the start-up message: each VF's socket and QEMU arguments, and the
    /// uplink. On a multi-port card (`qualified`) the lines name the port, and the root ports'
    /// ids and chassis differ by port, so that one guest can take VFs of several ports.
    pub(super) fn banner(&self, dir: &Path, qualified: bool) -> String {
        let name = port_name(self.pf);
        let mut s = String::new();
        if qualified {
            let mac = self.nic.with_pf(|pf| {
                pf.switch()
                    .pf_policy()
                    .macs
                    .first()
                    .map_or_else(|| "none".to_string(), |m| m.to_string())
            });
            s += &format!("  {name}: PF mac {mac}, VFs: {}\n", self.nic.num_vfs());
        }
        let (label, id) = if qualified {
            (format!("{name} "), format!("{name}-"))
        } else {
            (String::new(), String::new())
        };
        let path = port_pf_socket(dir, self.pf);
        let mac = self.nic.with_pf(|pf| pf.switch().config().pf_mac);
        if self.pf_function.is_none() {
            let (pf_driver, vf_driver) = self.nic.card().drivers();
            s += &format!(
                "  {label}pf: no socket (the {} PF function is not modelled; the emulator plays {pf_driver} for the {vf_driver} VFs)\n",
                self.nic.card()
            );
        } else if self.nic.with_pf(|pf| pf.pf_driver()) == model::nic::PfDriver::Guest {
            // Full-system mode: the PF and its VFs on one root port, for the patched QEMU.
            s += &format!(
                "  {label}pf: {} (mac {}; full-system mode: the guest's igb enables the VFs with \
                 sriov_numvfs and sets them with `ip link set <pf> vf N ...`; needs a QEMU with \
                 qemu/patches/: VFs first, then the PF)\n   ",
                path.display(),
                mac.map_or_else(|| "none".to_string(), |m| m.to_string()),
            );
            let args = super::full_system_qemu_args(dir, self.pf, self.nic.num_vfs(), &id);
            for pair in args.chunks(2) {
                s += &format!(" {} '{}'", pair[0], pair[1]);
            }
            s += "\n";
            for vf in 0..self.nic.num_vfs() {
                s += &format!(
                    "  {label}vf {vf}: {}\n",
                    port_vf_socket(dir, self.pf, vf).display()
                );
            }
            if let Some(u) = &self.uplink {
                s += &format!("  {label}uplink {}: {}\n", u.port(), u.backend());
            }
            return s;
        } else {
            s += &format!(
            // The PF's root port is slot 0 of the port's chassis; its VFs' are slots 1 and up.
            "  {label}pf: {} (mac {}; igb sees no VFs: the emulator's PF agent drives them)\n    -device pcie-root-port,id={id}rppf,chassis={},slot=0 -device '{}'\n",
            path.display(),
            mac.map_or_else(|| "none".to_string(), |m| m.to_string()),
            u32::from(self.pf) + 1,
            qemu_device_json(&path, &format!("{id}rppf"), &format!("{id}pf")),
        );
        }
        for vf in 0..self.nic.num_vfs() {
            let path = port_vf_socket(dir, self.pf, vf);
            let mac = self
                .nic
                .with_pf(|pf| pf.policy(vf).and_then(|p| p.mac))
                .map_or_else(|| "assigned by the VF".to_string(), |m| m.to_string());
            s += &format!(
                // QEMU's chassis number is 8 bits: root ports differ by slot (13 bits).
                "  {label}vf {vf}: {} (mac {mac})\n    -device pcie-root-port,id={id}rp{vf},chassis={},slot={} -device '{}'\n",
                path.display(),
                u32::from(self.pf) + 1,
                u32::from(vf) + 1,
                qemu_device_json(&path, &format!("{id}rp{vf}"), &format!("{id}vf{vf}")),
            );
        }
        if let Some(u) = &self.uplink {
            s += &format!("  {label}uplink {}: {}\n", u.port(), u.backend());
        }
        s
    }

    /// Stops the uplink, the capture and the timer (the servers are the pool's).
    pub(super) fn stop(&mut self) {
        if let Some(u) = self.uplink.take() {
            u.stop();
        }
        if let Some(c) = self.capture.take() {
            c.stop(&self.nic);
        }
        self.timer.take();
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream;
    use std::time::Instant;

    use bytes::Bytes;
    use scenarios::PfRef;

    use super::super::{control_socket, vf_socket, ServeConfig, Serving};
    use super::*;
    use crate::control::{handle, request, Request};

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sriov-emu-port-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn start(dir: &Path, toml: &str) -> Serving {
        let config: ServeConfig = toml::from_str(toml).unwrap();
        Serving::start(dir, &config, None).unwrap_or_else(|e| panic!("{toml}: {e}"))
    }

    fn words(w: &str) -> Vec<String> {
        w.split(' ').map(String::from).collect()
    }

    /// A broadcast ARP-sized frame.
    fn broadcast() -> Bytes {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x42, 0x08, 0x06]);
        f.resize(60, 0);
        Bytes::from(f)
    }

    /// Frames switch port `port` of card port `pf` got (`rx`) or sent into its switch (`tx`).
    fn packets(s: &Serving, pf: u8, port: PortId) -> (u64, u64) {
        s.port(pf).unwrap().nic().with_pf(|p| {
            let c = p.switch().counters(port).unwrap();
            (c.rx_packets, c.tx_packets)
        })
    }

    #[test]
    fn each_port_has_its_sockets_and_ctl_addresses_one_port() {
        let dir = tmp("two");
        let serving = start(
            &dir,
            "vfs = 2\n[ports.pf1]\nvfs = 1\nvf.0 = \"mac 02:00:00:00:01:10\"\n\
             promisc_policy = \"trusted-only\"",
        );
        let sockets = [
            port_vf_socket(&dir, 0, 0),
            port_vf_socket(&dir, 0, 1),
            port_vf_socket(&dir, 1, 0),
            port_pf_socket(&dir, 0),
            port_pf_socket(&dir, 1),
        ];
        assert_eq!(sockets[0], vf_socket(&dir, 0), "pf0's names as before");
        assert!(sockets[2].ends_with("pf1-vf0.sock"));
        assert!(sockets[4].ends_with("pf1.sock"));
        // Each port's PF function has a server of its own.
        for pf in [0u8, 1] {
            assert!(
                serving.port_pf_server_stats(pf).is_some(),
                "pf{pf}'s PF server"
            );
        }
        for p in &sockets {
            assert!(p.exists(), "{}", p.display());
        }
        assert!(!port_vf_socket(&dir, 1, 1).exists());
        assert_eq!(
            serving.server_stats().len(),
            3,
            "one pool serves both ports"
        );
        let banner = serving.banner();
        assert!(
            banner.contains("serving a card with 2 ports (82576, 82576)"),
            "{banner}"
        );
        assert!(
            banner.contains("pf1 vf 0: ") && banner.contains("chassis=2,slot=1"),
            "{banner}"
        );

        // `ctl --port pf1 vf 0 vlan 10` changes pf1's VF 0, not pf0's.
        let ok = request(
            &dir,
            &Request::Vf {
                port: PfRef(1),
                vf: 0,
                words: words("vlan 10"),
            },
        )
        .unwrap();
        assert!(ok.ok, "{ok:?}");
        let vlan = |pf: u8| {
            serving
                .port(pf)
                .unwrap()
                .nic()
                .with_pf(|p| p.policy(0).unwrap().port_vlan.map(|v| v.vid))
        };
        assert_eq!((vlan(0), vlan(1)), (None, Some(10)));

        let views: Vec<PortView> = serving.ports().iter().map(Port::view).collect();
        let refused = |req: Request| handle(&views, &req).error.unwrap_or_default();
        assert_eq!(
            refused(Request::Vf {
                port: PfRef(1),
                vf: 1,
                words: words("trust on"),
            }),
            "no VF 1 on pf1: it has VFs 0..0"
        );
        assert_eq!(
            refused(Request::Show {
                port: Some(PfRef(2))
            }),
            "no port pf2: this card has ports pf0..pf1"
        );

        // `ctl show`: every port, grouped; `--port pf1`: that one.
        let all = request(&dir, &Request::Show { port: None }).unwrap();
        let text = all.text.unwrap();
        let (pf0, pf1) = (
            text.find("pf0: 82576 link/ether 02:00:00:00:00:01 state UP vfs 2 promisc-policy igb\n"),
            text.find(
                "pf1: 82576 link/ether 02:00:00:00:00:02 state UP vfs 1 promisc-policy trusted-only\n",
            ),
        );
        assert!(pf0.is_some() && pf1 > pf0, "{text}");
        let show = all.show.unwrap();
        assert_eq!(show["ports"][0]["port"], "pf0");
        assert_eq!(show["ports"][1]["port"], "pf1");
        assert_eq!(
            show["ports"][1]["vfs"][0]["policy"]["mac"],
            "02:00:00:00:01:10"
        );
        let one = request(
            &dir,
            &Request::Show {
                port: Some(PfRef(1)),
            },
        )
        .unwrap()
        .show
        .unwrap();
        assert_eq!(one["ports"].as_array().unwrap().len(), 1);
        assert_eq!(one["ports"][0]["port"], "pf1");
        assert_eq!(one["ports"][0]["vfs"][0]["policy"]["port_vlan"]["vid"], 10);
        assert_eq!(one["ports"][0]["promisc_policy"], "trusted-only");

        // `ctl --port pf0 promisc-policy trusted-only`; a name that is no policy changes nothing.
        let set = |pf: u8, policy: &str| {
            let req = Request::PromiscPolicy {
                port: PfRef(pf),
                policy: policy.into(),
            };
            request(&dir, &req).unwrap()
        };
        let policy = |pf: u8| {
            serving
                .port(pf)
                .unwrap()
                .nic()
                .with_pf(|p| p.promisc_policy())
        };
        assert!(set(0, "trusted-only").ok);
        assert_eq!(policy(0), mailbox::PromiscPolicy::TrustedOnly);
        let bad = set(1, "everyone");
        assert_eq!(
            bad.error.as_deref(),
            Some("promiscuous policy \"everyone\": expected \"igb\" or \"trusted-only\"")
        );
        assert_eq!(policy(1), mailbox::PromiscPolicy::TrustedOnly);
        assert!(set(1, "igb").ok);
        assert_eq!(policy(1), mailbox::PromiscPolicy::Igb);

        // The lines a client without ports sends still work, on pf0.
        let mut s = UnixStream::connect(control_socket(&dir)).unwrap();
        s.write_all(
            b"{\"cmd\":\"vf\",\"vf\":1,\"words\":[\"trust\",\"on\"]}\n{\"cmd\":\"show\"}\n",
        )
        .unwrap();
        let mut lines = BufReader::new(s).lines();
        let vf = lines.next().unwrap().unwrap();
        assert!(vf.starts_with("{\"ok\":true"), "{vf}");
        assert!(serving.nic().with_pf(|p| p.policy(1).unwrap().trust));
        let show = lines.next().unwrap().unwrap();
        assert!(show.contains("\"port\":\"pf1\""), "{show}");
        drop(lines);

        serving.shutdown();
        for p in sockets.iter().chain([&control_socket(&dir)]) {
            assert!(!p.exists(), "{} removed", p.display());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn ports_reach_each_other_only_over_a_cable_between_their_uplinks() {
        let dir = tmp("cable");
        // No cable: pf0's broadcast goes out pf0's uplink into nothing; pf1 sees nothing.
        let serving = start(&dir, "vfs = 1\n[ports.pf1]\nvfs = 1");
        serving.nic().inject(PortId::Pf, broadcast());
        assert_eq!(packets(&serving, 0, PortId::Vf(0)).0, 1);
        assert_eq!(serving.nic().counters().unclaimed.get("uplink0"), Some(&1));
        for port in [PortId::Uplink(0), PortId::Pf, PortId::Vf(0)] {
            assert_eq!(packets(&serving, 1, port), (0, 0), "pf1 {port}");
        }
        serving.shutdown();

        // A dgram cable between the uplinks: the broadcast crosses it into pf1's switch.
        let (a, b) = (dir.join("a.sock"), dir.join("b.sock"));
        let (a, b) = (a.display(), b.display());
        let serving = start(
            &dir,
            &format!(
                "vfs = 1\nuplink = {{ kind = \"dgram\", local = \"unix:{a}\", remote = \"unix:{b}\" }}\n\
                 [ports.pf1]\nvfs = 1\nuplink = {{ kind = \"dgram\", local = \"unix:{b}\", remote = \"unix:{a}\" }}"
            ),
        );
        serving.nic().inject(PortId::Pf, broadcast());
        let until = Instant::now() + Duration::from_secs(5);
        while packets(&serving, 1, PortId::Vf(0)).0 == 0 {
            assert!(Instant::now() < until, "nothing crossed the cable");
            std::thread::sleep(Duration::from_millis(10));
        }
        // In at pf1's uplink, out to its PF and VF.
        assert_eq!(packets(&serving, 1, PortId::Uplink(0)), (0, 1));
        assert_eq!(packets(&serving, 1, PortId::Pf).0, 1);
        let wire = |pf: u8| {
            serving
                .port(pf)
                .unwrap()
                .uplink()
                .unwrap()
                .report()
                .counters
        };
        assert_eq!((wire(0).tx_frames, wire(1).rx_frames), (1, 1));
        serving.shutdown();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_port_that_cannot_start_leaves_nothing_behind() {
        let dir = tmp("fail");
        let a = dir.with_extension("a.sock");
        let config: ServeConfig = toml::from_str(&format!(
            "uplink = {{ kind = \"dgram\", local = \"unix:{}\", remote = \"unix:/nowhere\" }}\n\
             [ports.pf1]\nuplink = {{ kind = \"tap\", name = \"lo\" }}",
            a.display()
        ))
        .unwrap();
        let e = Serving::start(&dir, &config, None)
            .err()
            .unwrap()
            .to_string();
        assert!(e.starts_with("ports.pf1.uplink.name = \"lo\": "), "{e}");
        assert!(!dir.exists(), "no sockets, no directory");
        assert!(!a.exists(), "pf0's uplink closed again");
    }
}
