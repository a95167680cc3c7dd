//! The ixgbe PF agent: the part of Linux ixgbe that answers 82599 VFs (`ixgbe_sriov.c`:
//! `ixgbe_msg_task`, `ixgbe_rcv_msg_from_vf`, `ixgbe_rcv_ack_from_vf`, `ixgbe_vf_reset_event`,
//! `ixgbe_vf_reset_msg` and the `ixgbe_set_vf_*` / `ixgbe_get_vf_*` handlers; `ixgbe_ipsec.c`
//! for the IPsec requests; `ixgbe_mbx.c` for the PF side of the mailbox).
//!
//! Where ixgbe decides differently from igb, this agent decides as ixgbe: requests from a VF
//! that is not clear to send are always answered with a one-word NACK (igb rate-limits them),
//! a failed mailbox lock does not revoke CTS, replies are the whole 16-word buffer, the VF_RESET
//! reply ACKs only an administrator's MAC, a VF reset drops MACVLAN filters but keeps the xcast
//! mode, and every request is checked against the negotiated API version.
//!
//! Pure: it drives the shared [`VfMailbox`] through PF-side register accesses and returns
//! [`IxgbeOutcome`]s; it never blocks.

use std::collections::BTreeSet;

use eswitch::{LinkState, MacAddr, VfPolicy};
use tracing::{debug, info, warn};

use super::config::IxgbeConfig;
use super::message::{ApiVersion, IxgbeMessage, IxgbeMsg, McFilterType, XcastMode};
use super::regs::{errno, limits, msg, pfmailbox, MAILBOX_WORDS};
use crate::config::{ConfigError, MacAssignment};
use crate::mailbox::{MailboxEvents, VfMailbox};
use crate::message::MsgFlags;
use crate::outcome::{
    AgentOutcome, PolicyChange, Refusal, RefusalCounters, RefusalReason, Reply, ResetChange,
    ServiceReport, Trigger, VfBook, VfCounters,
};

/// What the ixgbe agent did for one VF event.
pub type IxgbeOutcome = AgentOutcome<IxgbeMessage>;
/// Everything one [`IxgbeAgent::service`] call did.
pub type IxgbeReport = ServiceReport<IxgbeMessage>;

/// The agent's view of one VF (ixgbe `struct vf_data_storage`).
#[derive(Clone, Debug)]
struct VfState {
    clear_to_send: bool,
    /// `vf_api`: 1.0 after every reset.
    api: ApiVersion,
    /// `vf_mac_addresses`: the admin's MAC or the one the VF set; kept across resets.
    mac: Option<MacAddr>,
    /// `pf_set_mac`: the administrator set `mac`.
    pf_set_mac: bool,
    trusted: bool,
    /// `pf_vlan`: the port VLAN's VID (0: none).
    pf_vlan: u16,
    /// `pf_qos`: the port VLAN's priority.
    pf_qos: u8,
    /// `xcast_mode`: starts at NONE (`__ixgbe_enable_sriov`), survives VF resets.
    xcast: XcastMode,
    /// Non-zero VIDs whose VLVF entry holds this VF's pool (joined ones and the port VLAN).
    vlans: BTreeSet<u16>,
    /// VF MACVLAN list entries this VF holds.
    macvlans: usize,
    /// `rss_query_enabled` (`ip link set ... vf N query_rss on`), off by default.
    query_rss: bool,
    /// `link_enable`: what GET_LINK_STATE answers and VFRE/VFTE follow.
    link_enable: bool,
    /// Its counters and refusals.
    book: VfBook,
}

impl Default for VfState {
    fn default() -> Self {
        VfState {
            clear_to_send: false,
            api: ApiVersion::V1_0,
            mac: None,
            pf_set_mac: false,
            trusted: false,
            pf_vlan: 0,
            pf_qos: 0,
            xcast: XcastMode::None,
            vlans: BTreeSet::new(),
            macvlans: 0,
            query_rss: false,
            link_enable: true,
            book: VfBook::default(),
        }
    }
}

/// A handler's accepted result: the switch-facing change and the reply payload, if any.
struct Handled {
    change: Option<PolicyChange>,
    reply: Option<IxgbeMsg>,
}

impl Handled {
    fn none() -> Handled {
        Handled {
            change: None,
            reply: None,
        }
    }
    fn change(c: PolicyChange) -> Handled {
        Handled {
            change: Some(c),
            reply: None,
        }
    }
    fn reply(m: IxgbeMsg) -> Handled {
        Handled {
            change: None,
            reply: Some(m),
        }
    }
}

/// A handler's refusal: why, a change made before failing (SET_MACVLAN index 1 clears the
/// list first), and the errno IPSEC_ADD reports in word 1.
struct Refused {
    reason: RefusalReason,
    change: Option<PolicyChange>,
    ipsec_errno: Option<i32>,
}

impl From<RefusalReason> for Refused {
    fn from(reason: RefusalReason) -> Refused {
        Refused {
            reason,
            change: None,
            ipsec_errno: None,
        }
    }
}

/// The ixgbe PF driver's VF-facing half for one PF.
#[derive(Clone, Debug)]
pub struct IxgbeAgent {
    config: IxgbeConfig,
    /// The PF is up (`!__IXGBE_DOWN`): `link_state auto` VFs follow it.
    pf_up: bool,
    macvlan_pool: usize,
    vfs: Vec<VfState>,
}

impl IxgbeAgent {
    pub fn new(config: IxgbeConfig) -> Result<IxgbeAgent, ConfigError> {
        config.validate()?;
        // ixgbe_alloc_vf_macvlans: the RAR entries left after the PF's 16 and one per VF.
        let macvlan_pool = config
            .rar_entries
            .saturating_sub(limits::MAX_PF_MACVLANS + 1 + config.num_vfs);
        Ok(IxgbeAgent {
            vfs: vec![VfState::default(); config.num_vfs],
            config,
            pf_up: true,
            macvlan_pool,
        })
    }

    pub fn config(&self) -> &IxgbeConfig {
        &self.config
    }

    pub fn num_vfs(&self) -> usize {
        self.vfs.len()
    }

    /// The VF completed its reset handshake and may send requests.
    pub fn is_clear_to_send(&self, vf: usize) -> bool {
        self.vfs.get(vf).is_some_and(|s| s.clear_to_send)
    }

    /// VF `vf` alone loses CTS, as after a PF reset it was told of (ixgbe's reset path clears
    /// `clear_to_send` for every VF before telling them).
    pub fn forget_cts(&mut self, vf: usize) {
        if let Some(s) = self.vfs.get_mut(vf) {
            s.clear_to_send = false;
        }
    }

    /// The API version negotiated with a VF (1.0 until it negotiates, and after each reset).
    pub fn api_version(&self, vf: usize) -> Option<ApiVersion> {
        self.vfs.get(vf).map(|s| s.api)
    }

    /// The xcast mode ixgbe holds for a VF.
    pub fn xcast_mode(&self, vf: usize) -> Option<XcastMode> {
        self.vfs.get(vf).map(|s| s.xcast)
    }

    /// What GET_LINK_STATE answers for a VF.
    pub fn link_enabled(&self, vf: usize) -> bool {
        self.vfs.get(vf).is_some_and(|s| s.link_enable)
    }

    pub fn counters(&self, vf: usize) -> VfCounters {
        self.vfs
            .get(vf)
            .map(|s| s.book.counters)
            .unwrap_or_default()
    }

    pub fn refusals(&self, vf: usize) -> RefusalCounters {
        self.vfs
            .get(vf)
            .map(|s| s.book.refusals)
            .unwrap_or_default()
    }

    /// `ip link set PF vf N query_rss on|off` (ixgbe_ndo_set_vf_rss_query_en): whether the VF
    /// may read the shared RETA and RSS key. Takes effect at the VF's next request.
    pub fn set_query_rss(&mut self, vf: usize, on: bool) {
        if let Some(s) = self.vfs.get_mut(vf) {
            s.query_rss = on;
        }
    }

    pub fn query_rss(&self, vf: usize) -> bool {
        self.vfs.get(vf).is_some_and(|s| s.query_rss)
    }

    /// The MAC a VF without an admin MAC gets in `Generated` mode.
    pub fn generated_mac(&self, vf: usize) -> Option<MacAddr> {
        match self.config.mac_assignment {
            MacAssignment::AdminOnly => None,
            MacAssignment::Generated { seed } => {
                let [hi, lo] = u16::try_from(vf).ok()?.to_be_bytes();
                Some(MacAddr([0x02, seed[0], seed[1], seed[2], hi, lo]))
            }
        }
    }

    /// Refreshes the agent's view of a VF from its policy (done at every `service`; call it
    /// after admin changes so that shared tables are counted right).
    pub fn sync_policy(&mut self, vf: usize, policy: &VfPolicy) {
        let Some(s) = self.vfs.get_mut(vf) else {
            return;
        };
        s.mac = policy.mac.filter(|m| !m.is_zero());
        s.pf_set_mac = policy.admin_mac && s.mac.is_some();
        s.trusted = policy.trust;
        s.pf_vlan = policy.port_vlan.map_or(0, |p| p.vid);
        s.pf_qos = policy.port_vlan.map_or(0, |p| p.qos);
        s.vlans = policy
            .vlan_filters
            .iter()
            .copied()
            .filter(|v| *v != 0)
            .collect();
        if s.pf_vlan != 0 {
            s.vlans.insert(s.pf_vlan);
        }
        s.macvlans = policy.mac_filters.len();
    }

    /// Services VF `vf` after a mailbox event, in ixgbe_msg_task's order: VFLRE, then a posted
    /// message, then a posted ack. Apply each outcome's `policy_change` to the VF's policy
    /// before the next call.
    pub fn service(
        &mut self,
        vf: usize,
        mbx: &mut VfMailbox,
        policy: &VfPolicy,
        now_ns: u64,
    ) -> IxgbeReport {
        let mut report = IxgbeReport::default();
        if vf >= self.vfs.len() {
            warn!(vf, "mailbox service for a VF that does not exist; ignored");
            return report;
        }
        self.sync_policy(vf, policy);
        if mbx.take_reset() {
            let o = self.reset_event(vf);
            self.count(&o);
            report.push(o);
        }
        if mbx.take_request() {
            let o = self.receive(vf, mbx, now_ns);
            self.count(&o);
            report.push(o);
        }
        if mbx.take_ack() {
            if let Some(o) = self.receive_ack(vf, mbx) {
                self.count(&o);
                report.push(o);
            }
        }
        report
    }

    // ----- PF-initiated -----

    /// ixgbe_ping_vf: PF_CONTROL_MSG, with CTS if the VF is clear to send. Lost if the VF
    /// holds the mailbox.
    pub fn ping(&mut self, vf: usize, mbx: &mut VfMailbox) -> IxgbeOutcome {
        let mut out = IxgbeOutcome::new(vf, Trigger::Ping);
        let Some(s) = self.vfs.get(vf) else {
            warn!(vf, "ping for a VF that does not exist; ignored");
            return out;
        };
        let flags = if s.clear_to_send {
            MsgFlags::CTS
        } else {
            MsgFlags::NONE
        };
        let message = IxgbeMessage::new(IxgbeMsg::PfControl, flags);
        let w0 = message.word0();
        out.reply = Some(post(mbx, message, &[w0], 1, &mut out.events));
        self.count(&out);
        out
    }

    /// ixgbe_ping_all_vfs (PF link up or down); `mailboxes[i]` is VF i's.
    pub fn ping_all(&mut self, mailboxes: &mut [VfMailbox]) -> Vec<IxgbeOutcome> {
        let n = self.vfs.len().min(mailboxes.len());
        (0..n).map(|vf| self.ping(vf, &mut mailboxes[vf])).collect()
    }

    /// The PF goes down or comes up (ixgbe_down / ixgbe_up_complete → ixgbe_set_all_vfs):
    /// every VF's link follows its `link_state` and loses CTS, and is pinged without CTS, which
    /// sends ixgbevf through its reset.
    pub fn set_pf_up(
        &mut self,
        up: bool,
        policies: &[VfPolicy],
        mailboxes: &mut [VfMailbox],
    ) -> Vec<IxgbeOutcome> {
        self.pf_up = up;
        let n = self.vfs.len().min(mailboxes.len()).min(policies.len());
        (0..n)
            .map(|vf| self.set_link_state(vf, policies[vf].link_state, &mut mailboxes[vf]))
            .collect()
    }

    /// `ip link set PF vf N state auto|enable|disable` (ixgbe_ndo_set_vf_link_state). `enable`
    /// is not supported by ixgbe 6.1: nothing changes and nothing is sent (`None`).
    pub fn admin_link_state(
        &mut self,
        vf: usize,
        state: LinkState,
        mbx: &mut VfMailbox,
    ) -> Option<IxgbeOutcome> {
        if vf >= self.vfs.len() {
            return None;
        }
        match state {
            // ixgbe_ndo_set_vf_link_state: "NDO set VF %d link state %d - not supported".
            LinkState::Enable => {
                info!(vf, "NDO set VF {vf} link state enable - not supported");
                None
            }
            LinkState::Auto | LinkState::Disable => Some(self.set_link_state(vf, state, mbx)),
        }
    }

    /// ixgbe_set_vf_link_state: link_enable from the state, CTS revoked, ping.
    fn set_link_state(&mut self, vf: usize, state: LinkState, mbx: &mut VfMailbox) -> IxgbeOutcome {
        let pf_up = self.pf_up;
        let s = &mut self.vfs[vf];
        match state {
            LinkState::Auto => s.link_enable = pf_up,
            LinkState::Disable => s.link_enable = false,
            // ixgbe_set_vf_link_state sets it for ENABLE, which only ixgbe_set_all_vfs passes
            // on (the ndo refuses to).
            LinkState::Enable => s.link_enable = true,
        }
        s.clear_to_send = false;
        self.ping(vf, mbx)
    }

    /// `ip link set PF vf N trust on|off` changed the VF's trust (ixgbe_ndo_set_vf_trust):
    /// "reset VF to reconfigure features" — CTS revoked and a ping without CTS. Call it after
    /// updating the policy; nothing happens if the agent already saw this trust value.
    pub fn trust_changed(
        &mut self,
        vf: usize,
        policy: &VfPolicy,
        mbx: &mut VfMailbox,
    ) -> Option<IxgbeOutcome> {
        let s = self.vfs.get_mut(vf)?;
        if s.trusted == policy.trust {
            return None;
        }
        s.trusted = policy.trust;
        s.clear_to_send = false;
        Some(self.ping(vf, mbx))
    }

    // ----- ixgbe's handlers -----

    /// ixgbe_vf_reset_event: forget the VF's VLANs, multicast hashes, MAC and MACVLAN filters
    /// and IPsec SAs; API back to 1.0. CTS and the xcast mode are left alone.
    fn reset_event(&mut self, vf: usize) -> IxgbeOutcome {
        self.reset_vf_state(vf);
        info!(vf, "VF {vf} reset (VFLRE)");
        let mut out = IxgbeOutcome::new(vf, Trigger::VfLevelReset);
        out.policy_change = Some(PolicyChange::ResetIxgbe(ResetChange {
            mac: self.vfs[vf].mac,
            rx_tx_enabled: false,
        }));
        out
    }

    fn reset_vf_state(&mut self, vf: usize) {
        let s = &mut self.vfs[vf];
        s.vlans.clear();
        if s.pf_vlan != 0 {
            s.vlans.insert(s.pf_vlan);
        }
        s.macvlans = 0;
        s.api = ApiVersion::V1_0;
    }

    /// ixgbe_rcv_msg_from_vf.
    fn receive(&mut self, vf: usize, mbx: &mut VfMailbox, now: u64) -> IxgbeOutcome {
        let mut out = IxgbeOutcome::new(vf, Trigger::Request(None));
        // ixgbe_read_mbx_pf: one try at the lock, read all 16 words, ACK (which releases PFU).
        out.events = out.events.union(mbx.write_p2v(pfmailbox::PFU));
        if mbx.read_p2v() & pfmailbox::PFU == 0 {
            // ixgbe_rcv_msg_from_vf: "Error receiving message from VF"; unlike igb, CTS stays.
            out.refusal = Some(self.refuse(vf, RefusalReason::MailboxBusy, now, ""));
            return out;
        }
        let mut words = [0u32; MAILBOX_WORDS];
        for (i, w) in words.iter_mut().enumerate() {
            *w = mbx.pf_read_vmbmem(i);
        }
        out.events = out.events.union(mbx.write_p2v(pfmailbox::ACK));
        let Ok(request) = IxgbeMessage::parse(&words) else {
            // Sixteen words always parse; keep the guest-input path total anyway.
            return out;
        };
        out.trigger = Trigger::Request(Some(request.clone()));
        let w0 = words[0];

        // ixgbe_rcv_msg_from_vf: "this is a message we already processed, do nothing".
        if request.flags.is_response() {
            out.refusal = Some(self.refuse(vf, RefusalReason::AlreadyAnswered, now, ""));
            return out;
        }
        // ixgbe_rcv_msg_from_vf: only a word 0 of exactly VF_RESET is a reset.
        if w0 == u32::from(msg::ID_VF_RESET) {
            return self.reset_msg(vf, mbx, out);
        }
        // ixgbe_rcv_msg_from_vf: not clear to send → one word, request | NACK, every time.
        if !self.vfs[vf].clear_to_send {
            out.refusal = Some(self.refuse(vf, RefusalReason::NotClearToSend, now, ""));
            let rw0 = w0 | msg::NACK;
            let mut seen = words;
            seen[0] = rw0;
            let typed = IxgbeMessage::parse(&seen).unwrap_or(request);
            out.reply = Some(post(mbx, typed, &[rw0], 1, &mut out.events));
            return out;
        }

        let result = self.dispatch(vf, &request.msg, now);
        let (verdict, change, payload, refusal) = match result {
            Ok(h) => (msg::ACK, h.change, h.reply, None),
            Err(r) => {
                let detail = if r.reason == RefusalReason::UnknownMessage {
                    format!("Unhandled Msg {w0:08x}")
                } else {
                    String::new()
                };
                let refusal = self.refuse(vf, r.reason, now, &detail);
                let payload = r
                    .ipsec_errno
                    .map(|result| IxgbeMsg::IpsecAddReply { result });
                (msg::NACK, r.change, payload, Some(refusal))
            }
        };
        // The reply is the request's 16 words with word 0 flagged and the handler's words.
        let mut reply = words;
        let flags = MsgFlags::from_word(verdict | msg::CTS);
        if let Some(m) = payload {
            if let Err(e) = IxgbeMessage::new(m, flags).emit(&mut reply) {
                debug!(vf, error = %e, "reply payload does not fit; sending the verdict alone");
            }
        }
        reply[0] = w0 | verdict | msg::CTS;
        let typed = IxgbeMessage::parse(&reply).unwrap_or(request);
        out.reply = Some(post(mbx, typed, &reply, MAILBOX_WORDS, &mut out.events));
        out.policy_change = change;
        out.refusal = refusal;
        out
    }

    /// ixgbe_vf_reset_msg: reset event, clear the buffer, re-install the VF's MAC, enable its
    /// queues as its link allows, mark it clear to send, and reply ACK with the MAC only when
    /// the administrator set it (NACK with zero MAC bytes otherwise); word 3 is the multicast
    /// filter type. No CTS in this reply.
    fn reset_msg(&mut self, vf: usize, mbx: &mut VfMailbox, mut out: IxgbeOutcome) -> IxgbeOutcome {
        self.reset_vf_state(vf);
        let generated = self.generated_mac(vf);
        let s = &mut self.vfs[vf];
        s.clear_to_send = true;
        if s.mac.is_none() {
            s.mac = generated;
        }
        // ixgbe_vf_reset_msg: ACK only for `pf_set_mac`; a MAC the VF chose itself is
        // re-installed but answered with NACK. A generated MAC stands in for an admin one.
        let ack = s.mac.is_some() && (s.pf_set_mac || s.mac == generated);
        let (flags, wire_mac) = match s.mac {
            Some(m) if ack => (MsgFlags::ACK, m),
            _ => {
                info!(
                    vf,
                    "VF {vf} has no administrator-set MAC; replying NACK with 00:00:00:00:00:00"
                );
                (MsgFlags::NACK, MacAddr::ZERO)
            }
        };
        let message = IxgbeMessage::new(
            IxgbeMsg::ResetReply {
                mac: wire_mac,
                mc_filter_type: McFilterType::Bits47To36,
            },
            flags,
        );
        // ixgbe_vf_clear_mbx zeroes all 16 words before the 4-word reply is written.
        let mut words = [0u32; MAILBOX_WORDS];
        if let Err(e) = message.emit(&mut words) {
            debug!(vf, error = %e, "reset reply does not fit");
        }
        let mac = s.mac;
        let link = s.link_enable;
        out.reply = Some(post(
            mbx,
            message,
            &words,
            super::regs::len::RESET_REPLY,
            &mut out.events,
        ));
        out.policy_change = Some(PolicyChange::ResetIxgbe(ResetChange {
            mac,
            rx_tx_enabled: link,
        }));
        out
    }

    /// The switch in ixgbe_rcv_msg_from_vf, for a clear-to-send VF.
    fn dispatch(&mut self, vf: usize, m: &IxgbeMsg, now: u64) -> Result<Handled, Refused> {
        match m {
            IxgbeMsg::SetMacAddr { mac } => self.set_mac_addr(vf, *mac),
            IxgbeMsg::SetMulticast { hashes, .. } => Ok(self.set_multicasts(hashes)),
            IxgbeMsg::SetVlan { add, vid } => self.set_vlan_msg(vf, *add, *vid),
            IxgbeMsg::SetLpe { max_frame } => self.set_lpe(vf, *max_frame),
            IxgbeMsg::SetMacvlan { index, mac } => self.set_macvlan_msg(vf, *index, *mac),
            IxgbeMsg::ApiNegotiate { api } => self.negotiate_api(vf, *api, now),
            IxgbeMsg::GetQueues => self.get_queues(vf),
            IxgbeMsg::GetReta => self.get_reta(vf),
            IxgbeMsg::GetRssKey => self.get_rss_key(vf),
            IxgbeMsg::UpdateXcastMode { mode } => self.update_xcast_mode(vf, *mode),
            IxgbeMsg::GetLinkState => self.get_link_state(vf),
            IxgbeMsg::IpsecAdd { .. } => Err(self.ipsec_add_sa(vf)),
            IxgbeMsg::IpsecDel { handle } => self.ipsec_del_sa(vf, *handle),
            // ixgbe_rcv_msg_from_vf: "Unhandled Msg" for every other id (id 1 with MSGINFO and
            // PF-to-VF ids included).
            _ => Err(RefusalReason::UnknownMessage.into()),
        }
    }

    /// ixgbe_set_vf_mac_addr: a valid unicast MAC, and no admin MAC unless trusted or the
    /// same address.
    fn set_mac_addr(&mut self, vf: usize, mac: MacAddr) -> Result<Handled, Refused> {
        let s = &mut self.vfs[vf];
        if !mac.is_valid_unicast() {
            return Err(RefusalReason::InvalidMac.into());
        }
        if s.pf_set_mac && !s.trusted && s.mac != Some(mac) {
            return Err(RefusalReason::AdminMacOverride.into());
        }
        s.mac = Some(mac);
        Ok(Handled::change(PolicyChange::SetMac(mac)))
    }

    /// ixgbe_set_vf_multicasts: keep the first 30 hashes; no fallback to all-multicast.
    fn set_multicasts(&mut self, hashes: &[u16]) -> Handled {
        let hashes = hashes
            .iter()
            .take(limits::MAX_MC_HASHES)
            .map(|h| h & limits::MC_HASH_MASK)
            .collect();
        Handled::change(PolicyChange::SetMulticast {
            hashes,
            overflow: false,
        })
    }

    fn vlvf_in_use(&self) -> usize {
        let all: BTreeSet<u16> = self
            .vfs
            .iter()
            .flat_map(|s| s.vlans.iter().copied())
            .collect();
        all.len()
    }

    /// ixgbe_set_vf_vlan_msg → ixgbe_set_vf_vlan → ixgbe_set_vfta_generic.
    fn set_vlan_msg(&mut self, vf: usize, add: bool, vid: u16) -> Result<Handled, Refused> {
        // ixgbe_set_vf_vlan_msg: a port VLAN's VID (not a priority alone) locks the VF's VLANs.
        if self.vfs[vf].pf_vlan != 0 {
            return Err(RefusalReason::PortVlanOverride.into());
        }
        // ixgbe_set_vf_vlan_msg: VLAN 0 cannot be removed; ACK without action.
        if vid == 0 && !add {
            return Ok(Handled::none());
        }
        let shared = self.vfs.iter().any(|s| s.vlans.contains(&vid));
        // ixgbe_find_vlvf_slot: VID 0 has entry 0; any other VID needs its entry or a free one,
        // for removal too.
        let free = self.vlvf_in_use() < self.config.vlvf_slots - 1;
        if !add {
            if vid != 0 && !shared && !free {
                return Err(RefusalReason::VlanNoSpace.into());
            }
            self.vfs[vf].vlans.remove(&vid);
            return Ok(Handled::change(PolicyChange::RemoveVlan(vid)));
        }
        if vid != 0 && !self.vfs[vf].vlans.contains(&vid) {
            if self
                .config
                .vlans_per_vf
                .is_some_and(|cap| self.vfs[vf].vlans.len() >= cap)
            {
                return Err(RefusalReason::VlanPerVfLimit.into());
            }
            if !shared && !free {
                return Err(RefusalReason::VlanNoSpace.into());
            }
            self.vfs[vf].vlans.insert(vid);
        }
        Ok(Handled::change(PolicyChange::AddVlan(vid)))
    }

    /// ixgbe_set_vf_lpe: 68..=9728 bytes, and the 82599's rule that PF and VFs share one max
    /// frame: with the PF at a standard MTU no VF frame above 1518; with a jumbo PF only VFs at
    /// API 1.1 or later. The 82599 rule also sets the VF's receive enable (VFRE): off with the
    /// refusal, on with the grant.
    fn set_lpe(&mut self, vf: usize, max_frame: u32) -> Result<Handled, Refused> {
        if !(limits::MIN_FRAME..=limits::MAX_FRAME).contains(&max_frame) {
            return Err(RefusalReason::InvalidMaxFrame.into());
        }
        let pf_jumbo = self.config.pf_mtu.saturating_add(limits::ETH_HLEN) > limits::ETH_FRAME_LEN;
        let jumbo_api = matches!(
            self.vfs[vf].api,
            ApiVersion::V1_1 | ApiVersion::V1_2 | ApiVersion::V1_3 | ApiVersion::V1_4
        );
        let allowed = if pf_jumbo {
            jumbo_api
        } else {
            max_frame <= limits::LEGACY_MAX_FRAME
        };
        if !allowed {
            // "disable Rx for VF": VFRE cleared with the refusal.
            return Err(Refused {
                reason: RefusalReason::InvalidMaxFrame,
                change: Some(PolicyChange::SharedMaxFrame(None)),
                ipsec_errno: None,
            });
        }
        // max_frame ≤ 9728 fits.
        let frame = u16::try_from(max_frame).unwrap_or(u16::MAX);
        Ok(Handled::change(PolicyChange::SharedMaxFrame(Some(frame))))
    }

    /// ixgbe_set_vf_macvlan_msg → ixgbe_set_vf_macvlan: index 0 drops the VF's list, index 1
    /// drops it and adds, higher indices add; adding needs trust when an admin MAC is set, a
    /// valid MAC and a free entry in the shared VF MACVLAN list.
    fn set_macvlan_msg(&mut self, vf: usize, index: u8, mac: MacAddr) -> Result<Handled, Refused> {
        let s = &self.vfs[vf];
        if index > 0 && s.pf_set_mac && !s.trusted {
            return Err(RefusalReason::MacFilterDenied.into());
        }
        if index > 0 && !mac.is_valid_unicast() {
            return Err(RefusalReason::InvalidMacFilter.into());
        }
        if index == 0 {
            self.vfs[vf].macvlans = 0;
            return Ok(Handled::change(PolicyChange::ClearMacFilters));
        }
        let restart = index == 1;
        if restart {
            self.vfs[vf].macvlans = 0;
        }
        let in_use: usize = self.vfs.iter().map(|s| s.macvlans).sum();
        let over_cap = self
            .config
            .macvlans_per_vf
            .is_some_and(|cap| self.vfs[vf].macvlans >= cap);
        // Anti-spoof goes off before the list is touched, so a full list leaves it off too.
        if in_use >= self.macvlan_pool || over_cap {
            return Err(Refused {
                reason: RefusalReason::MacFilterNoSpace,
                change: Some(PolicyChange::Macvlan { restart, add: None }),
                ipsec_errno: None,
            });
        }
        self.vfs[vf].macvlans += 1;
        Ok(Handled::change(PolicyChange::Macvlan {
            restart,
            add: Some(mac),
        }))
    }

    /// ixgbe_negotiate_vf_api: 1.0, 1.1, 1.2, 1.3 and 1.4 (up to `max_api`); anything else,
    /// 1.5 and later and the Solaris 2.0 included, is refused.
    fn negotiate_api(&mut self, vf: usize, api: ApiVersion, now: u64) -> Result<Handled, Refused> {
        let max = self.config.max_api.linux_minor().unwrap_or(0);
        match api.linux_minor() {
            Some(minor) if minor <= max => {
                self.vfs[vf].api = api;
                Ok(Handled::none())
            }
            _ => {
                debug!(vf, %api, now, "VF {vf} requested unsupported api version {api}");
                Err(RefusalReason::UnsupportedApi.into())
            }
        }
    }

    /// ixgbe_get_vf_queues: API 1.1 or later; queues per pool for TX and RX, whether a port
    /// VLAN tags the VF's traffic, default queue 0 (no DCB here).
    fn get_queues(&mut self, vf: usize) -> Result<Handled, Refused> {
        let s = &self.vfs[vf];
        if !matches!(
            s.api,
            ApiVersion::V2_0
                | ApiVersion::V1_1
                | ApiVersion::V1_2
                | ApiVersion::V1_3
                | ApiVersion::V1_4
        ) {
            return Err(RefusalReason::NotInNegotiatedApi.into());
        }
        let qpp = self.config.effective_queues_per_pool();
        Ok(Handled::reply(IxgbeMsg::Queues {
            tx_queues: qpp,
            rx_queues: qpp,
            trans_vlan: u32::from(s.pf_vlan != 0 || s.pf_qos != 0),
            default_queue: 0,
        }))
    }

    /// API 1.2, 1.3 and 1.4: the versions with GET_RETA, GET_RSS_KEY, UPDATE_XCAST_MODE and
    /// GET_LINK_STATE.
    fn api_12_or_later(&self, vf: usize) -> bool {
        matches!(
            self.vfs[vf].api,
            ApiVersion::V1_2 | ApiVersion::V1_3 | ApiVersion::V1_4
        )
    }

    /// ixgbe_get_vf_reta: `query_rss` first (-EPERM), then the API version (-EOPNOTSUPP).
    fn get_reta(&mut self, vf: usize) -> Result<Handled, Refused> {
        if !self.vfs[vf].query_rss {
            return Err(RefusalReason::RssQueryDisabled.into());
        }
        if !self.api_12_or_later(vf) {
            return Err(RefusalReason::NotInNegotiatedApi.into());
        }
        let mut entries = self.config.reta;
        for e in &mut entries {
            *e &= 0x3;
        }
        Ok(Handled::reply(IxgbeMsg::Reta { entries }))
    }

    /// ixgbe_get_vf_rss_key: gated as GET_RETA.
    fn get_rss_key(&mut self, vf: usize) -> Result<Handled, Refused> {
        if !self.vfs[vf].query_rss {
            return Err(RefusalReason::RssQueryDisabled.into());
        }
        if !self.api_12_or_later(vf) {
            return Err(RefusalReason::NotInNegotiatedApi.into());
        }
        Ok(Handled::reply(IxgbeMsg::RssKey {
            key: self.config.rss_key,
        }))
    }

    /// ixgbe_update_vf_xcast_mode: API 1.2 (without PROMISC), 1.3 or 1.4; an untrusted VF asking
    /// for more than MULTI gets MULTI (ACK, word 1 says so); PROMISC is refused on the 82599
    /// even when trusted; the applied mode is echoed in word 1.
    fn update_xcast_mode(&mut self, vf: usize, requested: XcastMode) -> Result<Handled, Refused> {
        let s = &mut self.vfs[vf];
        match s.api {
            ApiVersion::V1_2 if requested == XcastMode::Promisc => {
                return Err(RefusalReason::NotInNegotiatedApi.into())
            }
            ApiVersion::V1_2 | ApiVersion::V1_3 | ApiVersion::V1_4 => {}
            _ => return Err(RefusalReason::NotInNegotiatedApi.into()),
        }
        // ixgbe compares the mode as a signed int: values above MULTI (wire values 2 up to
        // 0x7FFFFFFF) are downgraded for untrusted VFs; "negative" ones are not.
        let raw = requested.to_wire() as i32;
        let mode = if raw > super::regs::xcast::MULTI as i32 && !s.trusted {
            XcastMode::Multi
        } else {
            requested
        };
        let echo = IxgbeMsg::UpdateXcastMode { mode };
        if s.xcast == mode {
            return Ok(Handled::reply(echo));
        }
        let change = match mode {
            XcastMode::None | XcastMode::Multi => PolicyChange::SetPromisc {
                allmulti: false,
                promisc: false,
            },
            XcastMode::AllMulti => PolicyChange::SetPromisc {
                allmulti: true,
                promisc: false,
            },
            // ixgbe_update_vf_xcast_mode: "if (hw->mac.type <= ixgbe_mac_82599EB)" → -EOPNOTSUPP.
            XcastMode::Promisc | XcastMode::Unknown(_) => {
                return Err(RefusalReason::UnsupportedXcastMode.into())
            }
        };
        s.xcast = mode;
        Ok(Handled {
            change: Some(change),
            reply: Some(echo),
        })
    }

    /// ixgbe_get_vf_link_state: API 1.2 or later; word 1 = link_enable.
    fn get_link_state(&mut self, vf: usize) -> Result<Handled, Refused> {
        if !self.api_12_or_later(vf) {
            return Err(RefusalReason::NotInNegotiatedApi.into());
        }
        Ok(Handled::reply(IxgbeMsg::LinkState {
            enabled: self.vfs[vf].link_enable,
        }))
    }

    /// ixgbe_ipsec_vf_add_sa: refused with -EACCES in word 1 unless the VF is trusted and the
    /// PF's `vf-ipsec` flag is on; this PF never offers VF IPsec offload, so always refused.
    fn ipsec_add_sa(&mut self, _vf: usize) -> Refused {
        Refused {
            reason: RefusalReason::IpsecRefused,
            change: None,
            ipsec_errno: Some(-errno::EACCES),
        }
    }

    /// ixgbe_ipsec_vf_del_sa: untrusted → -EPERM; a handle outside the RX and TX tables →
    /// -EINVAL; an unused entry → success without action. No SA is ever added here, so every
    /// in-range handle is unused.
    fn ipsec_del_sa(&mut self, vf: usize, handle: u32) -> Result<Handled, Refused> {
        if !self.vfs[vf].trusted {
            return Err(RefusalReason::IpsecRefused.into());
        }
        let max = limits::IPSEC_MAX_SA_COUNT;
        if handle >= max {
            // ixgbe computes the TX index into a u16.
            let sa_idx = u32::from(handle.wrapping_sub(max) as u16);
            if sa_idx >= max {
                return Err(RefusalReason::IpsecRefused.into());
            }
        }
        Ok(Handled::none())
    }

    /// ixgbe_rcv_ack_from_vf: a VF that is not clear to send gets a bare NACK, every time.
    fn receive_ack(&mut self, vf: usize, mbx: &mut VfMailbox) -> Option<IxgbeOutcome> {
        if self.vfs[vf].clear_to_send {
            return None;
        }
        let mut out = IxgbeOutcome::new(vf, Trigger::Ack);
        let message = IxgbeMessage::new(IxgbeMsg::Bare, MsgFlags::NACK);
        let w0 = message.word0();
        debug!(vf, "VF {vf} is not clear to send; NACK");
        out.reply = Some(post(mbx, message, &[w0], 1, &mut out.events));
        Some(out)
    }

    fn count(&mut self, o: &IxgbeOutcome) {
        if let Some(s) = self.vfs.get_mut(o.vf) {
            s.book.count(o, |m| m.flags);
        }
    }

    /// Counts a refusal and logs it (warn at most once per interval per VF and reason).
    fn refuse(&mut self, vf: usize, reason: RefusalReason, now: u64, detail: &str) -> Refusal {
        self.vfs[vf].book.refuse(vf, reason, now, detail)
    }
}

/// ixgbe_write_mbx_pf: lock (PFU, one try), drop the VF's pending REQ/ACK, write `words`, post
/// with STS (which releases PFU). Nothing is written if the VF holds the buffer. The reply
/// records the first `record` words.
fn post(
    mbx: &mut VfMailbox,
    message: IxgbeMessage,
    words: &[u32],
    record: usize,
    events: &mut MailboxEvents,
) -> Reply<IxgbeMessage> {
    *events = events.union(mbx.write_p2v(pfmailbox::PFU));
    let delivered = mbx.read_p2v() & pfmailbox::PFU != 0;
    if delivered {
        mbx.take_request();
        mbx.take_ack();
        for (i, w) in words.iter().enumerate() {
            mbx.pf_write_vmbmem(i, *w);
        }
        *events = events.union(mbx.write_p2v(pfmailbox::STS));
    } else {
        debug!(
            "PF could not lock the mailbox to send {:08x}; message lost",
            words.first().copied().unwrap_or(0)
        );
    }
    Reply::new(message, &words[..record.min(words.len())], delivered)
}
