//! The scenario file format: what a TOML scenario says, typed. Every table refuses keys it does
//! not know, so a typo is an error with its line and column rather than a silently ignored
//! expectation. See the crate docs for an example file.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use eswitch::{DropReason, MacAddr, PortId};
use mailbox::PromiscPolicy;
use model::nic::MacMode;
use serde::{Deserialize, Deserializer};

pub use crate::ports::{PfRef, PortRef, UplinkRef};
use crate::qemu::{GuestBuild, GuestFile};

/// One scenario file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// Defaults to the file name without `.toml`.
    pub name: Option<String>,
    /// What the scenario shows.
    pub description: String,
    /// Which real behaviour (hardware, driver, product) it reproduces, with its source.
    pub reproduces: String,
    #[serde(default)]
    pub nic: NicSpec,
    /// Administrative settings applied before any endpoint comes up (`ip link set PF vf N ...`).
    #[serde(default, rename = "policy")]
    pub policies: Vec<PolicySpec>,
    /// Cables plugged before any endpoint comes up.
    #[serde(default, rename = "cable")]
    pub cables: Vec<CableSpec>,
    #[serde(default, rename = "endpoint")]
    pub endpoints: Vec<EndpointSpec>,
    #[serde(default, rename = "step")]
    pub steps: Vec<Step>,
    /// The scenario passes with its driver-attached VF endpoints as QEMU guests too
    /// (`scenario run --guests`): the guest test runs every file that says so.
    #[serde(default)]
    pub guests: bool,
    /// The cards whose VF drivers the file's expectations hold for (default: the 82576 alone);
    /// `check-driver --model 82599` runs the files that list the 82599.
    #[serde(default = "default_cards")]
    pub cards: Vec<model::Card>,
    /// What the guests of the guest mode boot: a user's kernel, modules and files (paths
    /// relative to the file). `scenario run --kernel/--modules/--module/...` go on top.
    #[serde(default)]
    pub run: RunSpec,
}

fn default_cards() -> Vec<model::Card> {
    vec![model::Card::I82576]
}

/// A scenario file's `[run]` table: the guests' kernel, modules and files
/// ([`crate::qemu::GuestBuild`]).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    /// A bzImage or an ELF vmlinux.
    pub kernel: Option<PathBuf>,
    /// A `make modules_install INSTALL_MOD_PATH=...` tree, or its `lib/modules/<release>`.
    pub modules: Option<PathBuf>,
    /// Single `.ko` files replacing the stock modules of the same name.
    #[serde(default)]
    pub module: Vec<PathBuf>,
    /// Extra files: `{ host = "...", guest = "/..." }`.
    #[serde(default)]
    pub files: Vec<GuestFile>,
    /// Appended to the guest kernel's command line.
    pub kernel_args: Option<String>,
}

impl RunSpec {
    /// The build this table asks for, its relative paths taken from `dir` (the file's).
    pub fn build(&self, dir: &Path) -> GuestBuild {
        let at = |p: &PathBuf| {
            if p.is_absolute() {
                p.clone()
            } else {
                dir.join(p)
            }
        };
        GuestBuild {
            kernel: self.kernel.as_ref().map(at),
            modules: self.modules.as_ref().map(at),
            module_files: self.module.iter().map(at).collect(),
            files: self
                .files
                .iter()
                .map(|f| GuestFile {
                    host: at(&f.host),
                    guest: f.guest.clone(),
                })
                .collect(),
            kernel_args: self
                .kernel_args
                .iter()
                .flat_map(|a| a.split_whitespace())
                .map(str::to_string)
                .collect(),
        }
    }
}

/// The card: one or more ports, each an 82576 PF with its VFs, embedded switch and uplinks,
/// all set up alike.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NicSpec {
    /// Ports of the card, 1 to [`MAX_PORTS`]: one `model::Nic` each.
    #[serde(deserialize_with = "port_count")]
    pub ports: u8,
    /// VFs per port.
    pub vfs: u16,
    /// Uplinks per port.
    pub uplinks: u8,
    /// Port 0's PF MAC; port K's is this with K added to the last octet ([`NicSpec::pf_mac_of`]).
    pub pf_mac: MacAddr,
    pub link_speed_mbps: u32,
    /// What a VF without an administrative MAC gets from VF_RESET.
    pub mac_assignment: MacMode,
    /// Who may enable promiscuous modes: `"igb"` (the default) or `"trusted-only"`.
    #[serde(deserialize_with = "promisc_policy")]
    pub promisc_policy: PromiscPolicy,
    /// Which card: `"82576"` (the default) or `"82599"`. An 82599's VF endpoints are
    /// driver-attached (a software ixgbevf in process) or QEMU guests (ixgbevf): its VF
    /// mailbox is not scripted port by port.
    pub model: model::Card,
}

impl Default for NicSpec {
    fn default() -> Self {
        let defaults = model::NicConfig::default();
        NicSpec {
            ports: 1,
            vfs: 4,
            uplinks: defaults.num_uplinks,
            pf_mac: defaults.pf_mac,
            link_speed_mbps: defaults.link_speed_mbps,
            mac_assignment: MacMode::AdminOnly,
            promisc_policy: PromiscPolicy::default(),
            model: model::Card::default(),
        }
    }
}

fn promisc_policy<'de, D: Deserializer<'de>>(d: D) -> Result<PromiscPolicy, D::Error> {
    String::deserialize(d)?
        .parse()
        .map_err(serde::de::Error::custom)
}

/// Ports a card can have: the 82576 comes in dual- and quad-port adapters.
pub const MAX_PORTS: u8 = 4;

fn port_count<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    let n = i64::deserialize(d)?;
    match u8::try_from(n) {
        Ok(n @ 1..=MAX_PORTS) => Ok(n),
        _ => Err(serde::de::Error::custom(format!(
            "ports = {n}: a card has 1 to {MAX_PORTS} ports"
        ))),
    }
}

impl NicSpec {
    /// The PF MAC of port `k`: [`NicSpec::pf_mac`] with `k` added to its last octet, so that
    /// the ports' PFs differ (`02:00:00:00:00:01`, `...:02`, ...).
    pub fn pf_mac_of(&self, k: u8) -> MacAddr {
        let mut mac = self.pf_mac;
        mac.0[5] = mac.0[5].wrapping_add(k);
        mac
    }

    /// The ports of each port's switch, as `model::Nic::ports` lists them: uplinks, PF, VFs.
    pub fn switch_ports(&self) -> Vec<PortId> {
        (0..self.uplinks)
            .map(PortId::Uplink)
            .chain(std::iter::once(PortId::Pf))
            .chain((0..self.vfs).map(PortId::Vf))
            .collect()
    }

    /// The NIC of port `k`.
    pub fn config(&self, k: u8) -> model::NicConfig {
        model::NicConfig {
            num_vfs: self.vfs,
            pf_mac: self.pf_mac_of(k),
            mac_assignment: self.mac_assignment.for_port(k),
            num_uplinks: self.uplinks,
            link_speed_mbps: self.link_speed_mbps,
            card: self.model,
            ..model::NicConfig::default()
        }
    }
}

/// `ip link set PF vf N <set>`, e.g. `set = "mac 02:00:00:00:00:10 vlan 10 qos 3"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// Whose VF: `pf` (the default, port 0), `pf1`, ...
    #[serde(default)]
    pub port: PfRef,
    pub vf: u16,
    pub set: String,
}

/// A cable between two uplinks (of two ports, or of one), or from an uplink back to itself (a
/// loopback plug): what one switch sends to its end enters the switch at the other end.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CableSpec {
    pub a: UplinkRef,
    pub b: UplinkRef,
}

/// How an endpoint is attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Attach {
    /// The endpoint's stack sits on the port. On a VF its frames still go through the VF's
    /// rings (a software igbvf opens them), but the mailbox conversation is the scenario's: the
    /// reset handshake and every request are scripted over the VF's V2PMAILBOX / VMBMEM
    /// registers, and the stack adopts MACs as the step says.
    #[default]
    Port,
    /// VF only: a software igbvf does the whole bring-up as Linux igbvf does (probe: reset handshake,
    /// SET_MAC_ADDR with a random MAC when the PF assigns none; open: SET_MULTICAST, rings,
    /// SET_LPE, interrupts) and keeps its own MAC on a NACK.
    Driver,
    /// VF only: a QEMU guest running the unmodified igbvf on the VF, served over vfio-user
    /// (the guest mode of `sriov-emu scenario run`; an in-process run refuses it).
    Guest,
}

/// A host with a small IP stack on one port.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    pub name: String,
    pub port: PortRef,
    #[serde(default)]
    pub attach: Attach,
    pub ip: Option<Ipv4Addr>,
    /// Required on an uplink; the PF defaults to the NIC's PF MAC; a VF learns its MAC from
    /// VF_RESET (a `mac` here is what its stack uses when `bring_up = false`).
    pub mac: Option<MacAddr>,
    /// VF: the MAC the driver registers with SET_MAC_ADDR when the PF assigned none (igbvf's
    /// `eth_hw_addr_random`). Without it a port-attached VF keeps the all-zero MAC.
    pub fallback_mac: Option<MacAddr>,
    /// VF: run the reset handshake (VF_RESET over the mailbox) at start. Default true.
    pub bring_up: Option<bool>,
    /// 802.1Q VID the stack tags its frames with (a VGT interface, e.g. `eth0.20`).
    pub vlan: Option<u16>,
}

/// A destination MAC for crafted frames: an address, `broadcast`, or `unknown` (a unicast
/// address nobody owns).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DstMac(pub MacAddr);

/// The unicast address `dst = "unknown"` stands for: locally administered, owned by no port.
pub const UNKNOWN_UNICAST: MacAddr = MacAddr([0x02, 0xde, 0xad, 0xbe, 0xef, 0x01]);

impl<'de> Deserialize<'de> for DstMac {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "broadcast" => Ok(DstMac(MacAddr::BROADCAST)),
            "unknown" => Ok(DstMac(UNKNOWN_UNICAST)),
            _ => s.parse().map(DstMac).map_err(serde::de::Error::custom),
        }
    }
}

/// A VF-side mailbox request, as igbvf sends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailboxRequest {
    /// SET_MAC_ADDR (set the station MAC): needs `mac`.
    SetMac,
    /// SET_MAC_ADDR with the filter-add sub-op: needs `mac`.
    AddMacFilter,
    /// SET_MULTICAST with the hashes of `groups`.
    Multicast,
    /// SET_VLAN: needs `vid`; `add` defaults to true.
    Vlan,
    /// SET_PROMISC: `promisc` = off, multicast or unicast.
    Promisc,
    /// SET_LPE: needs `max_frame`.
    Lpe,
    /// ixgbevf's UPDATE_XCAST_MODE (an 82599 VF): needs `xcast`.
    Xcast,
    /// ixgbevf's GET_RETA (an 82599 VF; `ethtool -x` in the guest): the RSS redirection table.
    Reta,
    /// ixgbevf's SET_MACVLAN index 1 (an 82599 VF; a macvlan on the guest's interface): an
    /// extra unicast filter, needs `mac`.
    Macvlan,
}

impl MailboxRequest {
    /// The name scenario files use.
    pub fn name(self) -> &'static str {
        match self {
            MailboxRequest::SetMac => "set_mac",
            MailboxRequest::AddMacFilter => "add_mac_filter",
            MailboxRequest::Multicast => "multicast",
            MailboxRequest::Vlan => "vlan",
            MailboxRequest::Promisc => "promisc",
            MailboxRequest::Lpe => "lpe",
            MailboxRequest::Xcast => "xcast",
            MailboxRequest::Reta => "reta",
            MailboxRequest::Macvlan => "macvlan",
        }
    }
}

/// The mode an UPDATE_XCAST_MODE asks for (ixgbevf's `enum ixgbevf_xcast_modes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Xcast {
    None,
    Multi,
    Allmulti,
    Promisc,
}

/// Which promiscuous modes a SET_PROMISC asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromiscMode {
    Off,
    Multicast,
    Unicast,
}

/// When the endpoint's stack takes the MAC it asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Adopt {
    /// Only if the PF ACKs (igbvf's `igbvf_set_mac`).
    #[default]
    OnAck,
    /// Whatever the PF says: the guest's configuration path changed the address anyway (the
    /// vSphere flow), so the guest and the switch now disagree.
    Always,
}

/// One step: an action (`do`) and what must hold after it.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// ICMP echo from an endpoint to an address (ARP first if the neighbour is unknown).
    Ping {
        label: Option<String>,
        from: String,
        target: Ipv4Addr,
        count: Option<u16>,
        #[serde(default)]
        expect: Expect,
    },
    /// One ARP request (broadcast) for an address.
    Arping {
        label: Option<String>,
        from: String,
        target: Ipv4Addr,
        #[serde(default)]
        expect: Expect,
    },
    /// Crafted frames: any source (spoofing), any tag, any size.
    Send {
        label: Option<String>,
        from: String,
        dst: DstMac,
        /// Default: the endpoint's MAC.
        src: Option<MacAddr>,
        /// Add an 802.1Q tag with this VID (and `pcp`).
        vlan: Option<u16>,
        pcp: Option<u8>,
        /// Default 0x88b5 (IEEE local experimental).
        ethertype: Option<u16>,
        /// Frame length without FCS; default 60.
        size: Option<usize>,
        count: Option<u32>,
        #[serde(default)]
        expect: Expect,
    },
    /// An administrative change, in `ip link` / `sriov-emu ctl` words.
    Set {
        label: Option<String>,
        /// Whose VF: `pf` (the default), `pf1`, ...
        #[serde(default)]
        port: PfRef,
        vf: u16,
        set: String,
        #[serde(default)]
        expect: Expect,
    },
    /// A VF-side mailbox request.
    Mailbox {
        label: Option<String>,
        from: String,
        request: MailboxRequest,
        mac: Option<MacAddr>,
        #[serde(default)]
        groups: Vec<MacAddr>,
        vid: Option<u16>,
        add: Option<bool>,
        promisc: Option<PromiscMode>,
        max_frame: Option<u32>,
        xcast: Option<Xcast>,
        #[serde(default)]
        adopt: Adopt,
        #[serde(default)]
        expect: Expect,
    },
    /// The VF driver is reloaded (reset handshake again; igb's "Reload the VF driver").
    Reload {
        label: Option<String>,
        endpoint: String,
        #[serde(default)]
        expect: Expect,
    },
    /// The endpoint's interface joins a link-layer multicast group, as `ip maddr add GROUP dev
    /// eth0` does: igbvf sends its whole multicast list to the PF with SET_MULTICAST
    /// (`igbvf_set_multi`). A QEMU guest runs `ip maddr add`; in process the driver-attached
    /// endpoint's software igbvf adds the group to its list and sends it.
    Join {
        label: Option<String>,
        endpoint: String,
        group: MacAddr,
        #[serde(default)]
        expect: Expect,
    },
    /// The endpoint's interface leaves a group it joined (`ip maddr del`): SET_MULTICAST with
    /// the list that remains.
    Leave {
        label: Option<String>,
        endpoint: String,
        group: MacAddr,
        #[serde(default)]
        expect: Expect,
    },
    /// The VF's client goes away without a word (its VM killed) and a fresh driver attaches
    /// to the same VF: with a QEMU guest, SIGKILL to its QEMU and a new guest booted on the
    /// same vfio-user socket, up once its igbvf is; in process, what `serve` does when a
    /// client disconnects (the function detached and reset: the PF sees a VF reset) and a
    /// fresh software igbvf with fresh memory and a fresh stack.
    Reattach {
        label: Option<String>,
        endpoint: String,
        #[serde(default)]
        expect: Expect,
    },
    /// A port's PF link (uplink carrier) goes up or down.
    Link {
        label: Option<String>,
        /// Which port: `pf` (the default), `pf1`, ...
        #[serde(default)]
        port: PfRef,
        up: bool,
        #[serde(default)]
        expect: Expect,
    },
    /// A cable between two uplinks is plugged in or pulled out.
    Cable {
        label: Option<String>,
        a: UplinkRef,
        b: UplinkRef,
        plug: bool,
        #[serde(default)]
        expect: Expect,
    },
    /// A fault injected on one port of the card, in `sriov-emu ctl fault` words: `pf-reset
    /// [vf N]`, `link down|up`, `wire PORT rx|tx drop|corrupt|duplicate (N% [seed S] | every N)`,
    /// `clear`, ... (`model::nic::faults::Fault::parse`, the grammar `ctl` uses).
    Fault {
        label: Option<String>,
        /// Which port of the card: `pf` (the default), `pf1`, ...; the fault's own port names
        /// (`vf1`, `uplink0`) are that port's switch ports, as with `ctl --port`.
        #[serde(default)]
        port: PfRef,
        fault: String,
        #[serde(default)]
        expect: Expect,
    },
    /// Time passes.
    Wait {
        label: Option<String>,
        ms: u64,
        #[serde(default)]
        expect: Expect,
    },
    /// Traffic from one endpoint to another, measured at the receiver: UDP (the default) or
    /// TCP (iperf3 between two QEMU guests).
    Traffic {
        label: Option<String>,
        from: String,
        to: String,
        #[serde(default)]
        proto: Proto,
        /// UDP: frame length without FCS; default 1514.
        size: Option<usize>,
        /// Offered rate in Mbit/s; default: the link speed (UDP, on the wire, FCS included) or
        /// as fast as it goes (TCP: iperf3's `-b`, payload bits).
        offered_mbps: Option<u32>,
        /// Default 1000; TCP runs whole seconds (rounded up).
        duration_ms: Option<u64>,
        #[serde(default)]
        expect: Expect,
    },
    /// A shell command in a guest endpoint (busybox sh, iproute2), with a timeout.
    Shell {
        label: Option<String>,
        guest: String,
        command: String,
        /// Seconds; default 30.
        timeout_s: Option<u64>,
        #[serde(default)]
        expect: Expect,
    },
    /// Nothing happens; only the expectations are checked.
    Check {
        label: Option<String>,
        #[serde(default)]
        expect: Expect,
    },
}

/// A `traffic` step's protocol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Proto {
    /// UDP at an offered rate, counted at the receiver in frame + FCS bits: in process, or
    /// from and to guests (`sriov-emu-guest-send udp` / `meter`).
    #[default]
    Udp,
    /// TCP through iperf3 from one QEMU guest to another, the receiver's payload throughput:
    /// guest mode only, both ends guests.
    Tcp,
}

/// What must hold after a step. Every field is optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Exactly these ports got a copy of a frame the step's sender sent.
    pub delivered: Option<Vec<PortRef>>,
    /// None of these ports got one.
    #[serde(default)]
    pub not_delivered: Vec<PortRef>,
    /// Each of these drops happened during the step (any frame, replies included).
    #[serde(default)]
    pub dropped: Vec<DropSpec>,
    /// No drop at all during the step.
    pub no_drops: Option<bool>,
    #[serde(default)]
    pub counters: Vec<CounterSpec>,
    #[serde(default)]
    pub captured: Vec<CaptureSpec>,
    /// The PF's verdict on the step's mailbox request (or, for `reload`, on VF_RESET).
    pub reply: Option<ReplyKind>,
    /// The PF agent's refusal reason for the step (its log line), or `none`.
    pub refused: Option<String>,
    /// Each of these texts appears in a log line (INFO and above) of the step: the PF agent's
    /// refusals, igb's "Reload the VF driver".
    #[serde(default)]
    pub log_contains: Vec<String>,
    /// Ping / arping: the sender got its answers.
    pub answered: Option<bool>,
    /// `set`: the command was accepted.
    pub ok: Option<bool>,
    /// `set`: the refusal message contains this.
    pub error_contains: Option<String>,
    /// `traffic`: the measured rate at the receiver, Mbit/s.
    pub rate_mbps: Option<Band>,
    #[serde(default)]
    pub policy: Vec<PolicyCheck>,
    #[serde(default)]
    pub endpoint: Vec<EndpointCheck>,
    /// `shell`: the command's exit status.
    pub exit: Option<i32>,
    /// `shell`: each of these texts is in the command's output.
    #[serde(default)]
    pub output_contains: Vec<String>,
    /// A guest's kernel logged a line containing `contains` during the step (guest mode).
    #[serde(default)]
    pub guest_log_contains: Vec<GuestLogCheck>,
    /// Frames an endpoint's own interface received during the step: a QEMU guest's eth0 (a
    /// capture in the guest), else what the switch delivered to the endpoint's function.
    #[serde(default)]
    pub guest_captured: Vec<GuestCaptureSpec>,
}

/// Frames the endpoint `guest` received during the step. At least one frame (or exactly
/// `count`) must match every field given.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestCaptureSpec {
    pub guest: String,
    /// The frame came with a VLAN tag, in the frame or stripped by the NIC (a guest's kernel
    /// hands both over alike).
    pub tagged: Option<bool>,
    pub vid: Option<u16>,
    pub pcp: Option<u8>,
    pub src: Option<MacAddr>,
    pub dst: Option<DstMac>,
    pub ethertype: Option<Ethertype>,
    pub count: Option<u64>,
}

impl GuestCaptureSpec {
    pub fn filter(&self) -> crate::received::Filter {
        crate::received::Filter {
            vlan: self.tagged,
            vid: self.vid,
            pcp: self.pcp,
            src: self.src,
            dst: self.dst.map(|d| d.0),
            ethertype: self.ethertype.map(|e| e.0),
            ..Default::default()
        }
    }
}

/// An ethertype: a number (`0x0806`, `2054`) or a name (`arp`, `ipv4`, `ipv6`, `lldp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ethertype(pub u16);

impl<'de> Deserialize<'de> for Ethertype {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u16),
            Text(String),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Number(n) => return Ok(Ethertype(n)),
            Raw::Text(t) => t,
        };
        let named = match text.as_str() {
            "arp" => Some(0x0806),
            "ipv4" => Some(0x0800),
            "ipv6" => Some(0x86dd),
            "lldp" => Some(0x88cc),
            _ => None,
        };
        let hex = text.strip_prefix("0x").map(|h| u16::from_str_radix(h, 16));
        match (named, hex) {
            (Some(n), _) | (None, Some(Ok(n))) => Ok(Ethertype(n)),
            _ => Err(serde::de::Error::custom(format!(
                "ethertype `{text}`: a number (0x0806) or arp, ipv4, ipv6, lldp"
            ))),
        }
    }
}

/// A kernel log line of a guest endpoint (its dmesg), e.g. igbvf's `Link is Up`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestLogCheck {
    pub guest: String,
    pub contains: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropSpec {
    pub port: PortRef,
    pub reason: DropReason,
    /// Exactly this many drops of that reason at that port during the step.
    pub count: Option<u64>,
}

/// A port counter (`rx_packets`, `rx_broadcast`, `drops.spoof_mac`, ...): its value after the
/// step, or its change during the step.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CounterSpec {
    pub port: PortRef,
    pub name: String,
    pub equals: Option<u64>,
    pub delta: Option<u64>,
    pub at_least: Option<u64>,
}

/// A frame captured during the step at `port` (`rx`: as delivered to the function, `tx`: as
/// the function sent it). At least one captured frame must match every field given.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureSpec {
    pub port: PortRef,
    #[serde(default = "default_direction")]
    pub direction: eswitch::Direction,
    /// The frame itself carries an 802.1Q tag.
    pub tagged: Option<bool>,
    /// The switch stripped a tag and reported it (the RX descriptor's VP bit).
    pub stripped: Option<bool>,
    /// VID / PCP of the tag, in the frame or stripped.
    pub vid: Option<u16>,
    pub pcp: Option<u8>,
    pub src: Option<MacAddr>,
    pub dst: Option<DstMac>,
    /// The payload's protocol, behind any tag.
    pub ethertype: Option<Ethertype>,
    /// How many captured frames must match (default: at least one).
    pub count: Option<usize>,
}

impl CaptureSpec {
    pub fn filter(&self) -> crate::received::Filter {
        crate::received::Filter {
            tagged: self.tagged,
            stripped: self.stripped,
            vid: self.vid,
            pcp: self.pcp,
            src: self.src,
            dst: self.dst.map(|d| d.0),
            ethertype: self.ethertype.map(|e| e.0),
            ..Default::default()
        }
    }
}

fn default_direction() -> eswitch::Direction {
    eswitch::Direction::Rx
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyKind {
    Ack,
    Nack,
}

/// A band: `{ min = 95, max = 105 }`, or `{ target = 100, tolerance_pct = 5 }`.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Band {
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub target: Option<f64>,
    pub tolerance_pct: Option<f64>,
}

impl Band {
    /// `(min, max)`, open ends as infinities.
    pub fn bounds(&self) -> (f64, f64) {
        if let Some(t) = self.target {
            let tol = t * self.tolerance_pct.unwrap_or(0.0) / 100.0;
            return (t - tol, t + tol);
        }
        (
            self.min.unwrap_or(f64::NEG_INFINITY),
            self.max.unwrap_or(f64::INFINITY),
        )
    }
}

/// A field of a VF's policy as the switch enforces it (`mac`, `trust`, `promisc`,
/// `port_vlan.vid`, ...), compared as JSON.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyCheck {
    /// Whose VF: `pf` (the default), `pf1`, ...
    #[serde(default)]
    pub port: PfRef,
    pub vf: u16,
    pub field: String,
    pub equals: Option<toml::Value>,
    /// The field is unset (`null`): e.g. no MAC.
    pub absent: Option<bool>,
}

/// An endpoint's own view: its MAC (what the guest believes), its neighbour table, its carrier
/// and interface counters. In process they are the runner's endpoint record; in guest mode, for
/// a QEMU guest, what the guest itself says (`/sys/class/net/eth0/address`, `carrier`,
/// `statistics/*`, `ip neigh`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointCheck {
    pub name: String,
    pub mac: Option<MacAddr>,
    /// `[ip, mac]`, or `{ ip, mac }` / `{ ip, state = "known" | "unknown" }`.
    pub neighbour: Option<NeighbourCheck>,
    /// The port is up as the switch sees it (both worlds).
    pub link_up: Option<bool>,
    /// The endpoint's carrier: a guest's netdev carrier; in process a driver-attached VF's
    /// software igbvf's (its watchdog's view of the link), any other endpoint's port as the
    /// switch sees it.
    pub carrier: Option<bool>,
    /// Interface counters (`rx_packets`, `tx_packets`; a guest has every file of
    /// `/sys/class/net/eth0/statistics`): their change during the step or their value after.
    #[serde(default)]
    pub stats: Vec<StatCheck>,
}

/// A neighbour table entry an endpoint must (or must not) have.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum NeighbourCheck {
    Pair(Ipv4Addr, MacAddr),
    Entry {
        ip: Ipv4Addr,
        mac: Option<MacAddr>,
        state: Option<NeighbourState>,
    },
}

impl NeighbourCheck {
    pub fn ip(&self) -> Ipv4Addr {
        match self {
            NeighbourCheck::Pair(ip, _) | NeighbourCheck::Entry { ip, .. } => *ip,
        }
    }

    pub fn mac(&self) -> Option<MacAddr> {
        match self {
            NeighbourCheck::Pair(_, mac) => Some(*mac),
            NeighbourCheck::Entry { mac, .. } => *mac,
        }
    }

    pub fn state(&self) -> Option<NeighbourState> {
        match self {
            NeighbourCheck::Pair(..) => Some(NeighbourState::Known),
            NeighbourCheck::Entry { state, mac, .. } => {
                state.or(mac.map(|_| NeighbourState::Known))
            }
        }
    }
}

/// `known`: the entry has a link-layer address (Linux: REACHABLE, STALE, DELAY, PROBE,
/// PERMANENT); `unknown`: no entry, or one without (INCOMPLETE, FAILED).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NeighbourState {
    Known,
    Unknown,
}

/// An interface counter of an endpoint: `delta` (its change during the step), `equals` or
/// `at_least` (its value after).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatCheck {
    pub name: String,
    pub delta: Option<u64>,
    pub delta_at_least: Option<u64>,
    pub equals: Option<u64>,
    pub at_least: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_card_has_one_port_unless_it_says_more_each_with_its_pf_mac() {
        let one: ScenarioFile = toml::from_str("description = \"d\"\nreproduces = \"r\"").unwrap();
        assert_eq!(one.nic.ports, 1);
        assert!(one.cables.is_empty());
        let two: ScenarioFile = toml::from_str(
            r#"
            description = "d"
            reproduces = "r"
            [nic]
            ports = 2
            pf_mac = "02:00:00:00:00:ff"
            [[cable]]
            a = "pf0.uplink0"
            b = "pf1.uplink0"
            [[policy]]
            port = "pf1"
            vf = 0
            set = "trust on"
            "#,
        )
        .unwrap();
        assert_eq!(two.nic.ports, 2);
        assert_eq!(two.nic.pf_mac_of(0), two.nic.pf_mac);
        assert_eq!(two.nic.pf_mac_of(1).to_string(), "02:00:00:00:00:00");
        assert_eq!(two.nic.config(1).pf_mac, two.nic.pf_mac_of(1));
        assert_eq!(two.nic.config(1).num_vfs, two.nic.vfs);
        assert_eq!(
            (two.cables[0].a, two.cables[0].b),
            (
                UplinkRef { nic: 0, uplink: 0 },
                UplinkRef { nic: 1, uplink: 0 }
            )
        );
        assert_eq!(two.policies[0].port, PfRef(1));
    }

    #[test]
    fn port_defaults_to_pf0_and_the_cable_step_needs_its_ends_and_plug() {
        let f: ScenarioFile = toml::from_str(
            r#"
            description = "d"
            reproduces = "r"
            [[step]]
            do = "set"
            vf = 0
            set = "trust on"
            [[step]]
            do = "link"
            port = "pf1"
            up = true
            [[step]]
            do = "cable"
            a = "uplink0"
            b = "pf1.uplink0"
            plug = false
            "#,
        )
        .unwrap();
        assert!(matches!(f.steps[0], Step::Set { port: PfRef(0), .. }));
        assert!(matches!(
            f.steps[1],
            Step::Link {
                port: PfRef(1),
                up: true,
                ..
            }
        ));
        assert!(matches!(
            f.steps[2],
            Step::Cable {
                a: UplinkRef { nic: 0, uplink: 0 },
                b: UplinkRef { nic: 1, uplink: 0 },
                plug: false,
                ..
            }
        ));
        let no_plug = toml::from_str::<ScenarioFile>(
            "description = \"d\"\nreproduces = \"r\"\n[[step]]\ndo = \"cable\"\na = \"uplink0\"\nb = \"uplink0\"\n",
        );
        assert!(no_plug.unwrap_err().message().contains("plug"));
    }

    #[test]
    fn steps_are_tagged_by_do_and_refuse_unknown_keys() {
        let ok: ScenarioFile = toml::from_str(
            r#"
            description = "d"
            reproduces = "r"
            [[step]]
            do = "link"
            up = false
            expect.counters = [{ port = "vf0", name = "rx_packets", delta = 0 }]
            "#,
        )
        .unwrap();
        assert!(matches!(ok.steps[0], Step::Link { up: false, .. }));
        let reattach: ScenarioFile = toml::from_str(
            "description = \"d\"\nreproduces = \"r\"\n[[step]]\ndo = \"reattach\"\nendpoint = \"vm1\"\n",
        )
        .unwrap();
        assert!(matches!(&reattach.steps[0], Step::Reattach { endpoint, .. } if endpoint == "vm1"));
        let join: ScenarioFile = toml::from_str(
            "description = \"d\"\nreproduces = \"r\"\n[[step]]\ndo = \"join\"\nendpoint = \"vm1\"\ngroup = \"01:00:5e:01:02:03\"\n[[step]]\ndo = \"leave\"\nendpoint = \"vm1\"\ngroup = \"01:00:5e:01:02:03\"\n",
        )
        .unwrap();
        assert!(matches!(&join.steps[0], Step::Join { group, .. } if group.is_multicast()));
        assert!(matches!(&join.steps[1], Step::Leave { .. }));
        let typo = toml::from_str::<ScenarioFile>(
            r#"
            description = "d"
            reproduces = "r"
            [[step]]
            do = "link"
            upp = false
            "#,
        );
        assert!(typo.is_err());
    }
}
