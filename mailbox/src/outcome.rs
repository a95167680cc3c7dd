//! What a PF agent decides for a VF: the reply it wrote, the change to the VF's `VfPolicy`,
//! and the refusals, named and counted per VF. Shared by the driver families: the outcome
//! types take the family's typed message as a parameter (igb's [`Message`] by default, ixgbe's
//! [`crate::ixgbe::IxgbeMessage`]).

use eswitch::{MacAddr, VfPolicy};

use crate::mailbox::MailboxEvents;
use crate::message::Message;
use crate::message::MsgFlags;
use crate::regs::{limits, MAILBOX_WORDS};
use tracing::{debug, warn};

/// Why the agent refused a VF's request (each is counted per VF).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RefusalReason {
    /// A message other than VF_RESET before the VF completed its reset handshake.
    NotClearToSend,
    /// The PF could not lock the mailbox (the VF held VFU over its REQ).
    MailboxBusy,
    /// REQ over a buffer whose word 0 already carries ACK/NACK (nothing new to read).
    AlreadyAnswered,
    /// SET_MAC_ADDR while the administrator set the MAC and the VF is not trusted.
    AdminMacOverride,
    /// SET_MAC_ADDR with a zero or multicast MAC.
    InvalidMac,
    /// MAC filter edit while the administrator set the MAC and the VF is not trusted.
    MacFilterDenied,
    /// MAC filter with a zero or multicast MAC (igbvf's FILTER_CLR always sends zeros).
    InvalidMacFilter,
    /// No spare RAR entry for this VF.
    MacFilterNoSpace,
    /// SET_MAC_ADDR sub-op other than set / clear / add.
    UnsupportedMacFilterOp,
    /// SET_VLAN while the administrator set a port VLAN.
    PortVlanOverride,
    /// The VF already uses its share of VLVF entries.
    VlanPerVfLimit,
    /// The VLVF table is full.
    VlanNoSpace,
    /// SET_PROMISC enabling a mode the VF is not trusted for.
    PromiscNotTrusted,
    /// SET_PROMISC with flags the PF does not support.
    UnsupportedPromiscFlags,
    /// A message id the PF does not handle.
    UnknownMessage,
    /// API_NEGOTIATE for a version the PF does not speak (ixgbe_negotiate_vf_api).
    UnsupportedApi,
    /// A message the negotiated API version does not have (ixgbe's per-handler version checks).
    NotInNegotiatedApi,
    /// GET_RETA / GET_RSS_KEY while the administrator has not enabled `query_rss`.
    RssQueryDisabled,
    /// UPDATE_XCAST_MODE with a mode this device cannot give (promiscuous on the 82599, or an
    /// undefined mode).
    UnsupportedXcastMode,
    /// SET_LPE with a frame size out of range, or one the 82599's shared max-frame rule forbids.
    InvalidMaxFrame,
    /// IPsec SA add/delete refused (VF IPsec offload is not offered, or the VF is not trusted).
    IpsecRefused,
}

impl RefusalReason {
    pub const ALL: [RefusalReason; 21] = [
        RefusalReason::NotClearToSend,
        RefusalReason::MailboxBusy,
        RefusalReason::AlreadyAnswered,
        RefusalReason::AdminMacOverride,
        RefusalReason::InvalidMac,
        RefusalReason::MacFilterDenied,
        RefusalReason::InvalidMacFilter,
        RefusalReason::MacFilterNoSpace,
        RefusalReason::UnsupportedMacFilterOp,
        RefusalReason::PortVlanOverride,
        RefusalReason::VlanPerVfLimit,
        RefusalReason::VlanNoSpace,
        RefusalReason::PromiscNotTrusted,
        RefusalReason::UnsupportedPromiscFlags,
        RefusalReason::UnknownMessage,
        RefusalReason::UnsupportedApi,
        RefusalReason::NotInNegotiatedApi,
        RefusalReason::RssQueryDisabled,
        RefusalReason::UnsupportedXcastMode,
        RefusalReason::InvalidMaxFrame,
        RefusalReason::IpsecRefused,
    ];
    pub const COUNT: usize = Self::ALL.len();

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// A short stable name (for counters in `ctl show`).
    pub fn name(self) -> &'static str {
        match self {
            RefusalReason::NotClearToSend => "not_clear_to_send",
            RefusalReason::MailboxBusy => "mailbox_busy",
            RefusalReason::AlreadyAnswered => "already_answered",
            RefusalReason::AdminMacOverride => "admin_mac_override",
            RefusalReason::InvalidMac => "invalid_mac",
            RefusalReason::MacFilterDenied => "mac_filter_denied",
            RefusalReason::InvalidMacFilter => "invalid_mac_filter",
            RefusalReason::MacFilterNoSpace => "mac_filter_no_space",
            RefusalReason::UnsupportedMacFilterOp => "unsupported_mac_filter_op",
            RefusalReason::PortVlanOverride => "port_vlan_override",
            RefusalReason::VlanPerVfLimit => "vlan_per_vf_limit",
            RefusalReason::VlanNoSpace => "vlan_no_space",
            RefusalReason::PromiscNotTrusted => "promisc_not_trusted",
            RefusalReason::UnsupportedPromiscFlags => "unsupported_promisc_flags",
            RefusalReason::UnknownMessage => "unknown_message",
            RefusalReason::UnsupportedApi => "unsupported_api",
            RefusalReason::NotInNegotiatedApi => "not_in_negotiated_api",
            RefusalReason::RssQueryDisabled => "rss_query_disabled",
            RefusalReason::UnsupportedXcastMode => "unsupported_xcast_mode",
            RefusalReason::InvalidMaxFrame => "invalid_max_frame",
            RefusalReason::IpsecRefused => "ipsec_refused",
        }
    }
}

/// A refused request: which VF, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub vf: usize,
    pub reason: RefusalReason,
}

/// Refusal counts of one VF, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RefusalCounters([u64; RefusalReason::COUNT]);

impl RefusalCounters {
    pub(crate) fn add(&mut self, reason: RefusalReason) {
        self.0[reason.index()] += 1;
    }
    pub fn get(&self, reason: RefusalReason) -> u64 {
        self.0[reason.index()]
    }
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
    /// Non-zero counters.
    pub fn iter(&self) -> impl Iterator<Item = (RefusalReason, u64)> + '_ {
        RefusalReason::ALL
            .into_iter()
            .map(|r| (r, self.get(r)))
            .filter(|(_, n)| *n > 0)
    }
}

/// VF-level reset state for the switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResetChange {
    /// The VF's MAC from now on (`None`: 00:00:00:00:00:00, no RAR entry).
    pub mac: Option<MacAddr>,
    /// VFRE/VFTE of the pool: false after VTCTRL.RST, true once the VF_RESET reply is sent.
    pub rx_tx_enabled: bool,
}

/// A change the eswitch must apply to one VF's `VfPolicy` (see `apply`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyChange {
    /// The VF reset: VF-requested state is forgotten (multicast list, VLANs it joined,
    /// promiscuous requests); admin settings stay; the MAC becomes `mac`. Extra unicast
    /// filters survive, as in igb.
    Reset(ResetChange),
    /// The VF reset as ixgbe resets it (`ixgbe_vf_reset_event`): the multicast list, the VLANs
    /// it joined and its extra unicast (MACVLAN) filters are forgotten; its xcast mode stays
    /// (ixgbe keeps `vfinfo.xcast_mode` and VMOLR.MPE/UPE across the reset); admin settings
    /// stay; the MAC becomes `mac`.
    ResetIxgbe(ResetChange),
    SetMac(MacAddr),
    ClearMacFilters,
    AddMacFilter(MacAddr),
    /// ixgbe's SET_MACVLAN with an index (`ixgbe_set_vf_macvlan_msg`): the VF's extra unicast
    /// filters restarted (index 1) and `add` appended (none when the shared list was full),
    /// and the VF's hardware anti-spoof turned off if its `spoofchk` is on.
    Macvlan {
        restart: bool,
        add: Option<MacAddr>,
    },
    /// The new multicast hash list; `overflow` is set when the VF asked for more groups than
    /// the list holds (igb: VMOLR.MPME, all multicast whether trusted or not).
    SetMulticast {
        hashes: Vec<u16>,
        overflow: bool,
    },
    AddVlan(u16),
    RemoveVlan(u16),
    SetMaxFrame(u16),
    /// The 82599's SET_LPE, whose VFs share the port's frame size (`ixgbe_set_vf_lpe`):
    /// `Some` accepted — the VF's receive on (VFRE) and its max frame set; `None` refused — its
    /// receive off until an accepted SET_LPE or a VF reset.
    SharedMaxFrame(Option<u16>),
    SetPromisc {
        allmulti: bool,
        promisc: bool,
    },
}

impl PolicyChange {
    /// Applies the change to a VF's policy.
    pub fn apply(&self, p: &mut VfPolicy) {
        match self {
            PolicyChange::Reset(r) => {
                p.mac = r.mac;
                p.mc_hashes.clear();
                p.vlan_filters.clear();
                p.allmulti = false;
                p.promisc = false;
                p.mc_overflow = false;
                // The 82576 clears the pool's VFRE/VFTE bits on VTCTRL.RST or FLR (QEMU's
                // `igb_vf_reset`); igb's `igb_vf_reset_msg` sets them before its VF_RESET reply.
                p.rx_enabled = r.rx_tx_enabled;
                p.tx_enabled = r.rx_tx_enabled;
            }
            PolicyChange::ResetIxgbe(r) => {
                p.mac = r.mac;
                p.mac_filters.clear();
                p.mc_hashes.clear();
                p.vlan_filters.clear();
                p.mc_overflow = false;
                // ixgbe_vf_reset_msg → ixgbe_set_vf_rx_tx: receive on again (the link state
                // gates it separately).
                p.rx_enabled = true;
                // ixgbe_vf_reset_event programs anti-spoof again only for a VF with a port VLAN.
                if p.port_vlan.is_some() && p.spoofchk {
                    p.spoofchk_suspended = false;
                }
            }
            PolicyChange::SetMac(mac) => p.mac = Some(*mac),
            PolicyChange::ClearMacFilters => p.mac_filters.clear(),
            PolicyChange::Macvlan { restart, add } => {
                if *restart {
                    p.mac_filters.clear();
                }
                if let Some(mac) = add.filter(|m| !p.mac_filters.contains(m)) {
                    p.mac_filters.push(mac);
                }
                if p.spoofchk {
                    p.spoofchk_suspended = true;
                }
            }
            PolicyChange::AddMacFilter(mac) => {
                if !p.mac_filters.contains(mac) {
                    p.mac_filters.push(*mac);
                }
            }
            PolicyChange::SetMulticast { hashes, overflow } => {
                p.mc_hashes = hashes.clone();
                p.mc_overflow = *overflow;
            }
            PolicyChange::AddVlan(vid) => {
                if !p.vlan_filters.contains(vid) {
                    p.vlan_filters.push(*vid);
                }
            }
            PolicyChange::RemoveVlan(vid) => p.vlan_filters.retain(|v| v != vid),
            PolicyChange::SetMaxFrame(n) => p.max_frame = *n,
            PolicyChange::SharedMaxFrame(Some(n)) => {
                p.max_frame = *n;
                p.rx_enabled = true;
            }
            PolicyChange::SharedMaxFrame(None) => p.rx_enabled = false,
            PolicyChange::SetPromisc { allmulti, promisc } => {
                p.allmulti = *allmulti;
                p.promisc = *promisc;
            }
        }
    }
}

/// What the agent wrote to a VF's mailbox; `M` is the family's typed message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply<M = Message> {
    /// The typed view of the reply as the VF will read it.
    pub message: M,
    pub(crate) words: [u32; MAILBOX_WORDS],
    pub(crate) len: usize,
    /// False when the PF could not lock the mailbox (the VF held it), so nothing was written.
    pub delivered: bool,
}

impl<M> Reply<M> {
    /// Builds a reply record from the words written (at most [`MAILBOX_WORDS`] are kept).
    pub(crate) fn new(message: M, words: &[u32], delivered: bool) -> Reply<M> {
        let mut fixed = [0u32; MAILBOX_WORDS];
        let len = words.len().min(MAILBOX_WORDS);
        fixed[..len].copy_from_slice(&words[..len]);
        Reply {
            message,
            words: fixed,
            len,
            delivered,
        }
    }

    /// The words written, starting at word 0 (igb: 1 word, or 3 for the VF_RESET reply;
    /// ixgbe: 1, 4 for the VF_RESET reply, or the whole 16-word buffer).
    pub fn words(&self) -> &[u32] {
        &self.words[..self.len]
    }
}

/// What made the agent act.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger<M = Message> {
    /// VFLRE: the VF wrote VTCTRL.RST (or was FLR'd).
    VfLevelReset,
    /// A VF message (REQ); `None` when the mailbox could not be read.
    Request(Option<M>),
    /// The VF acknowledged a PF message.
    Ack,
    /// A PF-initiated PF_CONTROL_MSG.
    Ping,
}

/// The result of one thing the agent handled for one VF.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentOutcome<M = Message> {
    pub vf: usize,
    pub trigger: Trigger<M>,
    pub reply: Option<Reply<M>>,
    pub policy_change: Option<PolicyChange>,
    pub refusal: Option<Refusal>,
    /// Events the agent's PF-side register writes caused on this VF's mailbox
    /// (`InterruptVf` → fire the VF's mailbox vector).
    pub events: MailboxEvents,
}

impl<M> AgentOutcome<M> {
    pub(crate) fn new(vf: usize, trigger: Trigger<M>) -> AgentOutcome<M> {
        AgentOutcome {
            vf,
            trigger,
            reply: None,
            policy_change: None,
            refusal: None,
            events: MailboxEvents::NONE,
        }
    }
}

/// Everything one `service` call did, in order (reset, request, ack).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceReport<M = Message> {
    pub outcomes: Vec<AgentOutcome<M>>,
    /// Union of the outcomes' events.
    pub events: MailboxEvents,
}

impl<M> Default for ServiceReport<M> {
    fn default() -> Self {
        ServiceReport {
            outcomes: Vec::new(),
            events: MailboxEvents::NONE,
        }
    }
}

impl<M> ServiceReport<M> {
    pub(crate) fn push(&mut self, o: AgentOutcome<M>) {
        self.events = self.events.union(o.events);
        self.outcomes.push(o);
    }

    /// The policy changes in order, ready to apply.
    pub fn policy_changes(&self) -> impl Iterator<Item = &PolicyChange> {
        self.outcomes
            .iter()
            .filter_map(|o| o.policy_change.as_ref())
    }
}

/// Mailbox traffic of one VF as the PF agent saw it (for `ctl show`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VfCounters {
    /// Requests read from the mailbox (one per serviced REQ).
    pub requests: u64,
    /// Requests answered with ACK.
    pub acked: u64,
    /// Requests answered with NACK (refusals, and VF_RESET without a MAC).
    pub nacked: u64,
    /// Requests that got no reply (not clear to send within 2 s, stale, or unreadable).
    pub unanswered: u64,
    /// VF-level resets (VFLRE) processed.
    pub vf_resets: u64,
    /// PF-initiated messages (pings, bare NACKs) written.
    pub pf_messages: u64,
    /// Messages the PF could not write because the VF held the buffer.
    pub lost_messages: u64,
}

/// What a PF agent keeps of one VF's history, whatever the driver family: its mailbox
/// counters, its refusals by reason, and when each reason last warned (repeats within
/// [`limits::REFUSAL_LOG_INTERVAL_NS`] go to debug).
#[derive(Clone, Debug)]
pub(crate) struct VfBook {
    pub refusals: RefusalCounters,
    pub counters: VfCounters,
    last_warn: [Option<u64>; RefusalReason::COUNT],
}

impl Default for VfBook {
    fn default() -> Self {
        VfBook {
            refusals: RefusalCounters::default(),
            counters: VfCounters::default(),
            last_warn: [None; RefusalReason::COUNT],
        }
    }
}

impl VfBook {
    /// Counts what `o` did: a request and its verdict (`flags` reads a reply's flags), a VF
    /// reset, a PF message written, a message lost because the VF held the buffer.
    pub(crate) fn count<M>(&mut self, o: &AgentOutcome<M>, flags: impl Fn(&M) -> MsgFlags) {
        let c = &mut self.counters;
        let delivered = o.reply.as_ref().filter(|r| r.delivered);
        if o.reply.as_ref().is_some_and(|r| !r.delivered) {
            c.lost_messages += 1;
        }
        match o.trigger {
            Trigger::VfLevelReset => c.vf_resets += 1,
            Trigger::Request(_) => {
                c.requests += 1;
                match delivered.map(|r| flags(&r.message)) {
                    Some(f) if f.ack => c.acked += 1,
                    Some(f) if f.nack => c.nacked += 1,
                    _ => c.unanswered += 1,
                }
            }
            Trigger::Ack | Trigger::Ping => {
                if delivered.is_some() {
                    c.pf_messages += 1;
                }
            }
        }
    }

    /// Counts a refusal of VF `vf` and logs it: warn at most once per interval per reason.
    pub(crate) fn refuse(
        &mut self,
        vf: usize,
        reason: RefusalReason,
        now: u64,
        detail: &str,
    ) -> Refusal {
        self.refusals.add(reason);
        let slot = &mut self.last_warn[reason.index()];
        let loud = slot.is_none_or(|t| now >= t.saturating_add(limits::REFUSAL_LOG_INTERVAL_NS));
        let text = describe(vf, reason);
        let count = self.refusals.get(reason);
        if loud {
            *slot = Some(now);
            warn!(vf, reason = reason.name(), count, detail, "{text}");
        } else {
            debug!(vf, reason = reason.name(), count, detail, "{text}");
        }
        Refusal { vf, reason }
    }
}

/// igb's wording, so that users recognise the messages.
pub(crate) fn describe(vf: usize, reason: RefusalReason) -> String {
    match reason {
        RefusalReason::NotClearToSend => format!("VF {vf} sent a message before completing its reset; NACK"),
        RefusalReason::MailboxBusy => format!("Error receiving message from VF {vf}"),
        RefusalReason::AlreadyAnswered => format!("VF {vf} posted a message that was already processed"),
        RefusalReason::AdminMacOverride => format!(
            "VF {vf} attempted to override administratively set MAC address; Reload the VF driver to resume operations"
        ),
        RefusalReason::InvalidMac => format!("VF {vf} attempted to set invalid MAC"),
        RefusalReason::MacFilterDenied => {
            format!("VF {vf} requested MAC filter but is administratively denied")
        }
        RefusalReason::InvalidMacFilter => format!("VF {vf} attempted to set invalid MAC filter"),
        RefusalReason::MacFilterNoSpace => {
            format!("VF {vf} has requested MAC filter but there is no space for it")
        }
        RefusalReason::UnsupportedMacFilterOp => format!("VF {vf} requested an unsupported MAC filter operation"),
        RefusalReason::PortVlanOverride => format!(
            "VF {vf} attempted to override administratively set VLAN tag; Reload the VF driver to resume operations"
        ),
        RefusalReason::VlanPerVfLimit => format!("VF {vf} has requested more VLANs than its share of the VLVF table"),
        RefusalReason::VlanNoSpace => format!("VF {vf} has requested a VLAN but the VLVF table is full"),
        RefusalReason::PromiscNotTrusted => format!("VF {vf} requested promiscuous mode but is not trusted"),
        RefusalReason::UnsupportedPromiscFlags => format!("VF {vf} requested unsupported promiscuous flags"),
        RefusalReason::UnknownMessage => format!("Unhandled Msg from VF {vf}"),
        RefusalReason::UnsupportedApi => format!("VF {vf} requested unsupported api version"),
        RefusalReason::NotInNegotiatedApi => {
            format!("VF {vf} sent a message its negotiated api version does not have")
        }
        RefusalReason::RssQueryDisabled => {
            format!("VF {vf} requested RSS information but query_rss is off")
        }
        RefusalReason::UnsupportedXcastMode => {
            format!("VF {vf} requested an xcast mode this device does not support")
        }
        RefusalReason::InvalidMaxFrame => format!("VF {vf} max_frame out of range"),
        RefusalReason::IpsecRefused => format!("VF {vf} attempted to add or delete an IPsec SA"),
    }
}
