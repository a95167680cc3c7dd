//! The control socket of `serve` (`DIR/control.sock`, mode 0600) and its client, `ctl`.
//!
//! Protocol: one JSON object per line each way. Requests:
//! `{"cmd":"vf","port":"pf1","vf":N,"words":["mac","02:..","vlan","10"]}` (the words of
//! `ip link set PF vf N ...`, applied all or nothing; `port` defaults to pf0),
//! `{"cmd":"promisc_policy","port":"pf0","policy":"igb"}` (or `"trusted-only"`),
//! `{"cmd":"fault","port":"pf0","words":["link","down"]}` (the words of `ctl fault`), and
//! `{"cmd":"show"}` (every port of the card) or `{"cmd":"show","port":"pf1"}`. Replies:
//! `{"ok":true,"text":"...","show":{"ports":[...]}}` or `{"ok":false,"error":"..."}`.
//! Blank lines are skipped; a last request without its newline is answered at the client's
//! EOF; a line over [`MAX_REQUEST`] bytes gets an error reply and the connection is closed, as
//! is a client whose request is not whole within [`CLIENT_DEADLINE`].

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use eswitch::{PortCounters, PortId, VfPolicy};
use model::nic::faults::{Fault, FaultReport};
use model::nic::NicCounters;
use model::{Nic, VfState, VfStats};
use scenarios::PfRef;
use serde::{Deserialize, Serialize};
use tracing::info;

mod server;

pub use server::{ControlServer, CLIENT_DEADLINE, MAX_CLIENTS, MAX_REQUEST};

use crate::uplink::{UplinkMonitor, UplinkReport};
use crate::vfio::{ClientLimits, Held, ServerHandle};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// `ip link set PF vf N WORDS` on port `port`'s PF.
    Vf {
        #[serde(default)]
        port: PfRef,
        vf: u16,
        words: Vec<String>,
    },
    /// Who may enable promiscuous modes on port `port`'s VFs: `igb` or `trusted-only`.
    PromiscPolicy {
        #[serde(default)]
        port: PfRef,
        policy: String,
    },
    /// A fault injected on port `port`, in the words of `model::nic::faults::Fault::parse`
    /// (`pf-reset`, `link`, `wire`, `mailbox`, `dma`, `irq`, `rx-hold`, `clear`).
    Fault {
        #[serde(default)]
        port: PfRef,
        words: Vec<String>,
    },
    /// Port `port`, or every port of the card.
    Show {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<PfRef>,
    },
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub show: Option<serde_json::Value>,
}

impl Reply {
    fn error(e: impl Into<String>) -> Reply {
        Reply {
            ok: false,
            error: Some(e.into()),
            ..Reply::default()
        }
    }
}

/// Everything `ctl show` reports about one VF.
#[derive(Clone, Debug, Serialize)]
pub struct VfReport {
    pub vf: u16,
    pub policy: VfPolicy,
    /// The switch port's counters (drops by reason included).
    pub port: PortCounters,
    /// The VF device's counters (RX drops by reason, TX errors, DMA errors, interrupts).
    pub device: VfStats,
    pub state: VfState,
    /// Mailbox requests the PF agent refused, by reason.
    pub refusals: std::collections::BTreeMap<&'static str, u64>,
    pub backlog: usize,
    /// PF reset notifications the VF was sent (`ctl fault pf-reset`).
    pub pf_resets: u64,
    /// `query_rss` as the PF driver has it (an 82599's ixgbe; `None`: igb has no such setting).
    pub query_rss: Option<bool>,
    /// The VF's socket: its client and what the client makes the server hold.
    pub client: Option<ClientReport>,
}

/// What `ctl show` reports of a function's socket: whether a client is attached, what it makes
/// the server hold against its limits, and how its connections went.
#[derive(Clone, Debug, Serialize)]
pub struct ClientReport {
    pub held: Held,
    pub limits: ClientLimits,
    /// Requests refused because the client would have held more than its limits.
    pub limit_refusals: u64,
    /// Clients accepted so far.
    pub connections: u64,
    /// Connections closed because their stream could not be trusted any more.
    pub protocol_closes: u64,
    /// Error replies sent.
    pub error_replies: u64,
}

impl ClientReport {
    fn of(server: &ServerHandle) -> ClientReport {
        let s = server.stats();
        ClientReport {
            held: s.held,
            limits: s.limits,
            limit_refusals: s.limit_refusals,
            connections: s.connections,
            protocol_closes: s.protocol_closes,
            error_replies: s.error_replies,
        }
    }

    fn line(&self) -> String {
        let (h, l) = (&self.held, &self.limits);
        format!(
            "client: {}, holds {}/{} maps ({} shared{}), {}/{} MiB, {}/{} fds; refused over limits {}; connections {}, closed for protocol errors {}, error replies {}",
            if h.connected { "attached" } else { "none" },
            h.dma_maps,
            l.dma_maps,
            h.shared_maps,
            match h.huge_page_maps {
                0 => String::new(),
                n => format!(", {n} on huge pages"),
            },
            h.mapped_bytes >> 20,
            l.mapped_bytes >> 20,
            h.fds,
            l.fds,
            self.limit_refusals,
            self.connections,
            self.protocol_closes,
            self.error_replies,
        )
    }
}

/// What `ctl show` reports about the PF function a guest's igb drives (`DIR/pfK.sock`).
#[derive(Clone, Debug, Serialize)]
pub struct PfFunctionReport {
    /// The PF device's counters (RX drops by reason, TX errors, DMA errors, interrupts).
    pub device: VfStats,
    pub attached: bool,
    pub backlog: usize,
    /// The PF function's socket: its client and what the client makes the server hold.
    pub client: Option<ClientReport>,
}

/// What `ctl show` reports of one port of the card.
#[derive(Clone, Debug, Serialize)]
pub struct ShowReport {
    /// The card's port: `pf0`, `pf1`, ...
    pub port: String,
    /// Which card: `82576` (igb/igbvf) or `82599` (ixgbe/ixgbevf).
    pub card: String,
    pub pf_mac: String,
    pub link_up: bool,
    /// Who may enable promiscuous modes (`igb` or `trusted-only`).
    pub promisc_policy: String,
    /// Where the VFs' policies come from: `embedded` (the emulator's PF agent and `ctl vf`)
    /// or `guest` (the guest's igb on the PF function, through the PF's registers).
    pub pf_driver: String,
    /// The guest PF driver's accesses the device refused (guest mode only).
    pub guest_pf: Option<model::nic::GuestPfCounters>,
    /// The armed faults and what each has done.
    pub faults_armed: Vec<FaultReport>,
    /// The PF and uplink ports of the port's switch.
    pub switch_ports: Vec<(String, PortCounters)>,
    /// The PF function, when the NIC hosts one.
    pub pf_function: Option<PfFunctionReport>,
    pub vfs: Vec<VfReport>,
    pub nic: NicCounters,
    /// The uplink backends: what each uplink port's wire is, its carrier and counters.
    pub uplinks: Vec<UplinkReport>,
}

/// What `ctl show` reports: the ports asked for, port 0 first.
#[derive(Clone, Debug, Serialize)]
pub struct CardReport {
    pub ports: Vec<ShowReport>,
}

/// One port of the card as the control socket reaches it: its NIC and its running uplinks.
#[derive(Clone, Debug)]
pub struct PortView {
    pub nic: Arc<Nic>,
    pub uplinks: Vec<UplinkMonitor>,
    /// Each VF's vfio-user server, by VF (empty when the port is not served over sockets).
    pub vf_servers: Vec<ServerHandle>,
    /// The PF function's vfio-user server.
    pub pf_server: Option<ServerHandle>,
}

/// The name of port `pf` in reports and file names: `pf0`, `pf1`, ...
pub fn port_name(pf: u8) -> String {
    format!("pf{pf}")
}

/// Collects port `pf`'s report (locks the PF side, then each VF's function briefly, one at a
/// time).
pub fn show_report(pf: u8, view: &PortView) -> ShowReport {
    let (nic, uplinks) = (&view.nic, &view.uplinks);
    let (pf_driver, guest_pf) = nic.with_pf(|pf| (pf.pf_driver(), pf.guest_counters()));
    let (pf_mac, link_up, ports, per_vf, promisc) = nic.with_pf(|pf| {
        let sw = pf.switch();
        let ports = sw
            .all_counters()
            .filter(|(p, _)| !matches!(p, PortId::Vf(_)))
            .map(|(p, c)| (p.to_string(), c.clone()))
            .collect::<Vec<_>>();
        let per_vf = (0..pf.num_vfs())
            .map(|v| {
                let refusals = pf
                    .refusals(v)
                    .map(|r| r.iter().map(|(reason, n)| (reason.name(), n)).collect())
                    .unwrap_or_default();
                (
                    pf.policy(v).cloned().unwrap_or_default(),
                    sw.counters(PortId::Vf(v)).cloned().unwrap_or_default(),
                    refusals,
                    pf.counters(v).map_or(0, |c| c.pf_resets),
                    pf.agent().ixgbe().map(|x| x.query_rss(usize::from(v))),
                )
            })
            .collect::<Vec<_>>();
        let pf_mac = sw
            .pf_policy()
            .macs
            .first()
            .map_or_else(|| "00:00:00:00:00:00".into(), |m| m.to_string());
        (pf_mac, sw.link_up(), ports, per_vf, pf.promisc_policy())
    });
    let nic_counters = nic.counters();
    let vfs = per_vf
        .into_iter()
        .enumerate()
        .map(|(i, (policy, port, refusals, pf_resets, query_rss))| {
            let v = i as u16;
            let (device, state) = match nic.vf(v) {
                Some(f) => (f.stats(), f.state()),
                None => (VfStats::default(), VfState::default()),
            };
            VfReport {
                vf: v,
                policy,
                port,
                device,
                state,
                refusals,
                backlog: nic_counters.backlog.get(&v).copied().unwrap_or(0),
                pf_resets,
                query_rss,
                client: view.vf_servers.get(i).map(ClientReport::of),
            }
        })
        .collect();
    let pf_function = nic.pf().map(|pf| PfFunctionReport {
        device: pf.stats(),
        attached: pf.attached(),
        backlog: nic_counters.pf_backlog.unwrap_or(0),
        client: view.pf_server.as_ref().map(ClientReport::of),
    });
    ShowReport {
        port: port_name(pf),
        card: nic.card().name().into(),
        pf_mac,
        link_up,
        promisc_policy: promisc.name().into(),
        pf_driver: pf_driver.to_string(),
        guest_pf,
        faults_armed: nic.faults(),
        switch_ports: ports,
        pf_function,
        vfs,
        nic: nic_counters,
        uplinks: uplinks.iter().map(UplinkMonitor::report).collect(),
    }
}

fn port_line(c: &PortCounters) -> String {
    format!(
        "RX: {} packets {} bytes ({} broadcast, {} multicast)  TX: {} packets {} bytes ({} broadcast, {} multicast, {} deferred)",
        c.rx_packets,
        c.rx_bytes,
        c.rx_broadcast,
        c.rx_multicast,
        c.tx_packets,
        c.tx_bytes,
        c.tx_broadcast,
        c.tx_multicast,
        c.tx_deferred
    )
}

fn drops_line(c: &PortCounters) -> String {
    let d: Vec<String> = eswitch::DropReason::ALL
        .iter()
        .filter(|&&r| c.drops.get(r) > 0)
        .map(|&r| format!("{r} {}", c.drops.get(r)))
        .collect();
    if d.is_empty() {
        "none".into()
    } else {
        d.join(", ")
    }
}

fn nonzero(m: &std::collections::BTreeMap<&'static str, u64>) -> String {
    let v: Vec<String> = m
        .iter()
        .filter(|(_, &n)| n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// A function's device counters: what it moved, what it dropped and why, its interrupts.
fn device_line(d: &VfStats, attached: bool, backlog: usize) -> String {
    format!(
        "device: {} rx, {} tx, attached {attached}, rx drops: {}; tx errors: {}; dma errors {}, irqs {} (lost {}), backlog {backlog}",
        d.rx_packets,
        d.tx_packets,
        nonzero(&d.rx_drops),
        nonzero(&d.tx_errors),
        d.dma_errors,
        d.irqs_fired,
        d.irqs_lost,
    )
}

/// The wire behind an uplink port: backend, carrier, peer, counters.
fn uplink_lines(u: &UplinkReport) -> String {
    let c = &u.counters;
    let mut s = format!(
        "        wire: {}, carrier {}",
        u.backend,
        if u.carrier { "up" } else { "down" }
    );
    if let Some(p) = &u.peer {
        s += &format!(", peer {p}");
    }
    s += &format!(
        "\n        wire RX: {} frames {} bytes  TX: {} frames {} bytes\n",
        c.rx_frames, c.rx_bytes, c.tx_frames, c.tx_bytes
    );
    s += &format!(
        "        wire errors: runt {}, oversize {}, rx errors {}, tx dropped {}, tx errors {}, framing {}; connections {}, refused {}, carrier changes {}\n",
        c.rx_runt,
        c.rx_oversize,
        c.rx_errors,
        c.tx_dropped,
        c.tx_errors,
        c.framing_errors,
        c.connections,
        c.refused,
        c.carrier_changes
    );
    s
}

/// `ip link show`-shaped text of a card's report, port by port.
pub fn format_card(r: &CardReport) -> String {
    r.ports.iter().map(format_show).collect()
}

/// What a PF driver turned off in a VF's pool, only when it did: VFTE (its TX queues are held)
/// and VFRE, cleared by the VF's reset until its VF_RESET is answered (by the PF agent, or by
/// a guest's igb in full-system mode, which may also leave them off), and VMVIR's "never
/// insert".
fn pool_enables(p: &eswitch::VfPolicy) -> String {
    let mut s = String::new();
    if !p.tx_enabled {
        s += ", transmit off (VFTE: TX queues held)";
    }
    if !p.rx_enabled {
        s += ", receive off (VFRE)";
    }
    if p.tx_vlan_never {
        s += ", VLAN insertion never (VMVIR)";
    }
    s
}

/// `ip link show`-shaped text of a port's report.
pub fn format_show(r: &ShowReport) -> String {
    let mut s = format!(
        "{}: {} link/ether {} state {} vfs {} promisc-policy {}\n",
        r.port,
        r.card,
        r.pf_mac,
        if r.link_up { "UP" } else { "DOWN" },
        r.vfs.len(),
        r.promisc_policy
    );
    if let Some(g) = &r.guest_pf {
        s += &format!(
            "    pf-driver guest: the guest's igb sets the VFs' policies; refused: {} absent-VF mailbox, {} bad-width, {} policies\n",
            g.absent_vf, g.bad_width, g.policy_refused
        );
    }
    if !r.nic.faults.is_empty() {
        s += &format!("    faults fired: {}\n", nonzero(&r.nic.faults));
    }
    for f in &r.faults_armed {
        s += &format!(
            "    fault {}: {} seen, {} fired\n",
            f.fault, f.seen, f.fired
        );
    }
    for (name, c) in &r.switch_ports {
        let unclaimed = r.nic.unclaimed.get(name).copied().unwrap_or(0);
        s += &format!("    port {name}: {}\n", port_line(c));
        s += &format!("        drops: {}; unclaimed {unclaimed}\n", drops_line(c));
        if *name == PortId::Pf.to_string() {
            if let Some(f) = &r.pf_function {
                s += &format!(
                    "        {}\n",
                    device_line(&f.device, f.attached, f.backlog)
                );
                if let Some(c) = &f.client {
                    s += &format!("        {}\n", c.line());
                }
            }
        }
        for u in r.uplinks.iter().filter(|u| &u.port == name) {
            s += &uplink_lines(u);
        }
    }
    for v in &r.vfs {
        let p = &v.policy;
        let mac = p
            .mac
            .map_or_else(|| "00:00:00:00:00:00".into(), |m| m.to_string());
        let (vlan, qos) = p.port_vlan.map_or((0, 0), |pv| (pv.vid, pv.qos));
        let on = |b: bool| if b { "on" } else { "off" };
        let state = match p.link_state {
            eswitch::LinkState::Auto => "auto",
            eswitch::LinkState::Enable => "enable",
            eswitch::LinkState::Disable => "disable",
        };
        // igb and ixgbe set both checks together; a guest's PF driver may not.
        let spoof = if p.spoofchk == p.vlan_spoofchk {
            on(p.spoofchk).to_string()
        } else {
            format!("MAC {} VLAN {}", on(p.spoofchk), on(p.vlan_spoofchk))
        };
        let query_rss = v
            .query_rss
            .map_or(String::new(), |q| format!(", query_rss {}", on(q)));
        s += &format!(
            "    vf {} link/ether {mac}, vlan {vlan}, qos {qos}, spoof checking {spoof}, link-state {state}, trust {}{query_rss}, max_tx_rate {}{}\n",
            v.vf,
            on(p.trust),
            p.max_tx_rate,
            pool_enables(p)
        );
        s += &format!("        port: {}\n", port_line(&v.port));
        s += &format!("        drops: {}\n", drops_line(&v.port));
        s += &format!(
            "        {}\n",
            device_line(&v.device, v.state.attached, v.backlog)
        );
        s += &format!(
            "        mailbox refusals: {}; PF resets notified {}\n",
            nonzero(&v.refusals),
            v.pf_resets
        );
        if let Some(c) = &v.client {
            s += &format!("        {}\n", c.line());
        }
    }
    s
}

/// Answers one request for the card whose ports are `ports` (port 0 first).
pub fn handle(ports: &[PortView], req: &Request) -> Reply {
    let port = |pf: PfRef| {
        ports.get(usize::from(pf.0)).ok_or_else(|| {
            Reply::error(format!(
                "no port {}: this card has {}",
                port_name(pf.0),
                match ports.len() {
                    1 => "port pf0 only".to_string(),
                    n => format!("ports pf0..pf{}", n - 1),
                }
            ))
        })
    };
    match req {
        Request::Show { port: asked } => {
            let chosen: Vec<(u8, &PortView)> = match asked {
                Some(pf) => match port(*pf) {
                    Ok(p) => vec![(pf.0, p)],
                    Err(reply) => return reply,
                },
                None => (0..).zip(ports).collect(),
            };
            let r = CardReport {
                ports: chosen
                    .into_iter()
                    .map(|(pf, p)| show_report(pf, p))
                    .collect(),
            };
            Reply {
                ok: true,
                text: Some(format_card(&r)),
                show: serde_json::to_value(&r).ok(),
                ..Reply::default()
            }
        }
        Request::Fault { port: pf, words } => {
            let nic = match port(*pf) {
                Ok(p) => &p.nic,
                Err(reply) => return reply,
            };
            let w: Vec<&str> = words.iter().map(String::as_str).collect();
            match Fault::parse(&w, &nic.ports()).and_then(|f| nic.inject_fault(f)) {
                Ok(done) => {
                    info!(port = %port_name(pf.0), "ctl: fault: {done}");
                    Reply {
                        ok: true,
                        text: Some(format!("{done}\n")),
                        ..Reply::default()
                    }
                }
                Err(e) => Reply::error(format!("fault {e}")),
            }
        }
        Request::PromiscPolicy { port: pf, policy } => {
            let nic = match port(*pf) {
                Ok(p) => &p.nic,
                Err(reply) => return reply,
            };
            if nic.with_pf(|side| side.pf_driver()) == model::nic::PfDriver::Guest {
                return Reply::error(
                    "the guest's igb manages this port's VFs and answers their SET_PROMISC \
                     itself (VMOLR): the promiscuous policy is the embedded PF agent's",
                );
            }
            match policy.parse::<mailbox::PromiscPolicy>() {
                Ok(p) => {
                    nic.with_pf(|side| side.set_promisc_policy(p));
                    info!(port = %port_name(pf.0), policy = %p, "ctl: promiscuous policy set");
                    Reply {
                        ok: true,
                        ..Reply::default()
                    }
                }
                Err(e) => Reply::error(e.to_string()),
            }
        }
        Request::Vf {
            port: pf,
            vf,
            words,
        } => {
            let nic = match port(*pf) {
                Ok(p) => &p.nic,
                Err(reply) => return reply,
            };
            if *vf >= nic.num_vfs() {
                return Reply::error(format!(
                    "no VF {vf} on {}: it has VFs 0..{}",
                    port_name(pf.0),
                    nic.num_vfs().saturating_sub(1)
                ));
            }
            let w: Vec<&str> = words.iter().map(String::as_str).collect();
            match nic.configure_vf_words(*vf, &w) {
                Ok(()) => {
                    info!(port = %port_name(pf.0), vf, words = %words.join(" "), "ctl: VF configured");
                    Reply {
                        ok: true,
                        ..Reply::default()
                    }
                }
                Err(e) => Reply::error(e.to_string()),
            }
        }
    }
}

/// The control socket in `dir`.
pub fn control_socket(dir: &Path) -> PathBuf {
    dir.join("control.sock")
}

/// Why `ctl` got no answer.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("cannot reach {}: {source}{}", path.display(), connect_hint(source))]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("sending the request: {0}")]
    Send(std::io::Error),
    #[error("no reply: {}", no_reply(.0))]
    NoReply(std::io::Error),
    #[error("bad reply: {0}")]
    BadReply(serde_json::Error),
    #[error("encoding the request: {0}")]
    Encode(serde_json::Error),
}

/// What a failed connect to the control socket most likely means.
fn connect_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            " (is `sriov-emu serve` running with this --dir?)"
        }
        std::io::ErrorKind::PermissionDenied => {
            " (the socket is mode 0600: run ctl as the user that runs serve)"
        }
        _ => "",
    }
}

/// Why no reply came: a timeout said as one.
fn no_reply(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            format!("none within {} s", REPLY_TIMEOUT.as_secs())
        }
        _ => e.to_string(),
    }
}

/// How long `ctl` waits for a reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// `ctl`: sends one request to `DIR/control.sock` and returns the reply.
pub fn request(dir: &Path, req: &Request) -> Result<Reply, CtlError> {
    let path = control_socket(dir);
    let mut s = UnixStream::connect(&path).map_err(|source| CtlError::Connect {
        path: path.clone(),
        source,
    })?;
    let _ = s.set_read_timeout(Some(REPLY_TIMEOUT));
    let mut line = serde_json::to_string(req).map_err(CtlError::Encode)?;
    line.push('\n');
    s.write_all(line.as_bytes()).map_err(CtlError::Send)?;
    let mut reply = String::new();
    BufReader::new(s)
        .read_line(&mut reply)
        .map_err(CtlError::NoReply)?;
    serde_json::from_str(&reply).map_err(CtlError::BadReply)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Request, serde_json::Error> {
        serde_json::from_str(line)
    }

    /// `ctl`'s errors say what a failure to connect or to hear back most likely means.
    #[test]
    fn ctl_errors_say_what_they_mean() {
        let missing = request(
            Path::new("/nonexistent-sriov-emu-dir"),
            &Request::Show { port: None },
        )
        .unwrap_err()
        .to_string();
        assert!(
            missing.contains("is `sriov-emu serve` running with this --dir?"),
            "{missing}"
        );
        let denied = CtlError::Connect {
            path: "x".into(),
            source: std::io::ErrorKind::PermissionDenied.into(),
        };
        assert!(
            denied
                .to_string()
                .contains("run ctl as the user that runs serve"),
            "{denied}"
        );
        let slow = CtlError::NoReply(std::io::ErrorKind::WouldBlock.into());
        assert_eq!(slow.to_string(), "no reply: none within 10 s");
    }

    #[test]
    fn requests_name_a_port_or_mean_pf0_and_every_port() {
        assert_eq!(
            parse(r#"{"cmd":"vf","vf":3,"words":["trust","on"]}"#).unwrap(),
            Request::Vf {
                port: PfRef(0),
                vf: 3,
                words: vec!["trust".into(), "on".into()]
            }
        );
        assert_eq!(
            parse(r#"{"cmd":"vf","port":"pf1","vf":0,"words":[]}"#).unwrap(),
            Request::Vf {
                port: PfRef(1),
                vf: 0,
                words: vec![]
            }
        );
        assert_eq!(
            parse(r#"{"cmd":"show"}"#).unwrap(),
            Request::Show { port: None }
        );
        assert_eq!(
            parse(r#"{"cmd":"show","port":"pf0"}"#).unwrap(),
            Request::Show {
                port: Some(PfRef(0))
            }
        );
        for bad in [
            r#"{"cmd":"show","port":"eth0"}"#,
            r#"{"cmd":"show","port":"pf1.vf0"}"#,
            r#"{"cmd":"show","port":1}"#,
            r#"{"cmd":"vf","port":"pf999","vf":0,"words":[]}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        // What `ctl` sends reads back as itself.
        for req in [
            Request::Show { port: None },
            Request::Show {
                port: Some(PfRef(2)),
            },
            Request::Vf {
                port: PfRef(1),
                vf: 7,
                words: vec!["vlan".into(), "10".into()],
            },
        ] {
            let line = serde_json::to_string(&req).unwrap();
            assert_eq!(parse(&line).unwrap(), req, "{line}");
        }
    }

    #[test]
    fn a_port_whose_vfs_the_guests_igb_manages_refuses_ctl_vf_and_says_so_in_show() {
        let config = model::NicConfig {
            num_vfs: 2,
            pf_driver: model::nic::PfDriver::Guest,
            ..model::NicConfig::default()
        };
        let clock = Arc::new(model::seams::ManualClock::new(0));
        let view = PortView {
            nic: Nic::new(&config, clock).unwrap(),
            uplinks: Vec::new(),
            vf_servers: Vec::new(),
            pf_server: None,
        };
        let vf = Request::Vf {
            port: PfRef(0),
            vf: 1,
            words: vec!["mac".into(), "02:00:00:00:00:10".into()],
        };
        let reply = handle(std::slice::from_ref(&view), &vf);
        assert!(!reply.ok);
        let err = reply.error.unwrap_or_default();
        assert!(
            err.contains("the guest's igb manages this port's VFs")
                && err.contains("ip link set <pf> vf 1"),
            "{err}"
        );
        // The promiscuous policy is the embedded agent's, which answers no VF here.
        let policy = Request::PromiscPolicy {
            port: PfRef(0),
            policy: "trusted-only".into(),
        };
        let reply = handle(std::slice::from_ref(&view), &policy);
        assert!(!reply.ok);
        assert!(
            reply
                .error
                .unwrap_or_default()
                .contains("SET_PROMISC itself"),
            "refused"
        );
        assert_eq!(
            view.nic.with_pf(|side| side.promisc_policy()),
            mailbox::PromiscPolicy::Igb,
            "unchanged"
        );
        let show = handle(std::slice::from_ref(&view), &Request::Show { port: None });
        let text = show.text.unwrap();
        assert!(text.contains("pf-driver guest"), "{text}");
        assert!(text.contains("    vf 1 link/ether"), "{text}");
        assert!(!text.contains("transmit off"), "{text}");
        // What the guest's igb turned off in a pool is shown on its VF's line.
        view.nic.with_pf(|pf| {
            let mut p = pf.policy(1).cloned().unwrap();
            p.tx_enabled = false;
            p.rx_enabled = false;
            pf.switch_mut().set_policy(1, p).unwrap();
        });
        let show = handle(&[view], &Request::Show { port: None });
        let text = show.text.unwrap();
        let vf1 = text
            .lines()
            .find(|l| l.contains("vf 1 link/ether"))
            .unwrap();
        assert!(
            vf1.ends_with("max_tx_rate 0, transmit off (VFTE: TX queues held), receive off (VFRE)"),
            "{vf1}"
        );
        let vf0 = text
            .lines()
            .find(|l| l.contains("vf 0 link/ether"))
            .unwrap();
        assert!(vf0.ends_with("max_tx_rate 0"), "{vf0}");
        let p = &show.show.as_ref().unwrap()["ports"][0]["vfs"][1]["policy"];
        assert_eq!(p["tx_enabled"], false, "{p}");
        assert_eq!(p["rx_enabled"], false, "{p}");
        assert_eq!(p["tx_vlan_never"], false, "{p}");
        let json = show.show.unwrap();
        assert_eq!(json["ports"][0]["pf_driver"], "guest");
    }
}
