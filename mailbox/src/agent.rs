//! The PF agent: the part of a PF driver that answers VFs, following igb's decisions
//! (Linux `igb_main.c`: `igb_msg_task`, `igb_rcv_msg_from_vf`, `igb_rcv_ack_from_vf`,
//! `igb_vf_reset_event`, `igb_vf_reset_msg`, `igb_set_vf_mac_addr`, `igb_set_vf_mac_filter`,
//! `igb_set_vf_multicasts`, `igb_set_vf_vlan_msg`, `igb_set_vf_rlpml`, `igb_set_vf_promisc`,
//! `igb_ping_all_vfs`).
//!
//! The agent drives each VF's mailbox through the PF-side register semantics exactly as igb
//! does (lock with PFU, read the 16 words, write ACK|PFU, write the reply, write STS), reads the
//! VF's `VfPolicy` and returns the change the eswitch must apply. It never blocks and never
//! waits for a VF: every call does a bounded amount of work for one VF.

use std::collections::BTreeSet;

use eswitch::{MacAddr, VfPolicy};
use tracing::{debug, info, warn};

use crate::config::{AgentConfig, ConfigError, MacAssignment, PromiscPolicy};
use crate::config::{MAX_VFS, RLPML_MAX};
use crate::mailbox::{MailboxEvents, VfMailbox};
use crate::message::{MacFilterOp, MailboxMsg, Message, MsgFlags, PromiscFlags};
use crate::outcome::VfBook;
use crate::outcome::{
    AgentOutcome, PolicyChange, Refusal, RefusalCounters, RefusalReason, Reply, ResetChange,
    ServiceReport, Trigger, VfCounters,
};
use crate::regs::{limits, msg, p2v, MAILBOX_WORDS};

/// The agent's own view of one VF (igb `vf_data_storage`).
#[derive(Clone, Debug, Default)]
struct VfState {
    /// Clear to send: the VF completed the VF_RESET handshake.
    cts: bool,
    /// When the last unsolicited NACK went out (`None`: never).
    last_nack: Option<u64>,
    /// The VF's current MAC as the PF knows it.
    mac: Option<MacAddr>,
    /// The VF asked for more multicast groups than the list holds.
    mc_overflow: bool,
    /// Multicast promiscuous accepted for the VF.
    promisc_mc: bool,
    /// Non-zero VIDs whose VLVF entry includes this VF's pool (joined ones and port VLAN).
    vlans: BTreeSet<u16>,
    port_vid: Option<u16>,
    mac_filters: usize,
    /// Its counters and refusals.
    book: VfBook,
}

/// The PF driver's VF-facing half.
#[derive(Clone, Debug)]
pub struct PfAgent {
    config: AgentConfig,
    vlans_per_vf: usize,
    mac_filters_per_vf: usize,
    mac_filters_total: usize,
    vfs: Vec<VfState>,
}

impl PfAgent {
    pub fn new(config: AgentConfig) -> Result<PfAgent, ConfigError> {
        let l = config.limits;
        if config.num_vfs > MAX_VFS {
            return Err(ConfigError::TooManyVfs(config.num_vfs));
        }
        if l.mc_hashes > limits::MAX_MC_HASHES {
            return Err(ConfigError::TooManyMcHashes(l.mc_hashes));
        }
        if l.max_frame > RLPML_MAX {
            return Err(ConfigError::MaxFrameTooLarge(l.max_frame));
        }
        if l.vlvf_slots == 0 {
            return Err(ConfigError::NoVlvfSlots);
        }
        let n = config.num_vfs.max(1);
        // Entry 0 belongs to VID 0; the rest are shared by all VFs.
        let shared_vlvf = l.vlvf_slots - 1;
        let vlans_per_vf = config.vlans_per_vf.unwrap_or((shared_vlvf / n).max(1));
        let mac_filters_total = l
            .rar_entries
            .saturating_sub(limits::RAR_RESERVED_FOR_PF + config.num_vfs);
        let mac_filters_per_vf = config.mac_filters_per_vf.unwrap_or(mac_filters_total / n);
        Ok(PfAgent {
            vfs: vec![VfState::default(); config.num_vfs],
            config,
            vlans_per_vf,
            mac_filters_per_vf,
            mac_filters_total,
        })
    }

    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// Who may enable promiscuous modes from now on. Modes already granted stay until the VF
    /// changes them or resets.
    pub fn set_promisc_policy(&mut self, policy: PromiscPolicy) {
        self.config.promisc = policy;
    }

    pub fn num_vfs(&self) -> usize {
        self.vfs.len()
    }

    /// The VF completed its reset handshake and may send requests.
    pub fn is_clear_to_send(&self, vf: usize) -> bool {
        self.vfs.get(vf).is_some_and(|s| s.cts)
    }

    /// Refusal counters of one VF (zeros for an unknown VF).
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

    /// VLANs one VF may join, and the VLVF entries in use by all VFs.
    pub fn vlan_budget(&self) -> (usize, usize) {
        (self.vlans_per_vf, self.vlvf_in_use())
    }

    /// The MAC a VF without an admin MAC gets in `Generated` mode.
    pub fn generated_mac(&self, vf: usize) -> Option<MacAddr> {
        match self.config.mac_assignment {
            MacAssignment::AdminOnly => None,
            MacAssignment::Generated { seed } => {
                let [hi, lo] = u16::try_from(vf).ok()?.to_be_bytes();
                // 0x02: locally administered, unicast.
                Some(MacAddr([0x02, seed[0], seed[1], seed[2], hi, lo]))
            }
        }
    }

    /// Refreshes the agent's view of a VF from its policy (done at every `service`; call it
    /// after admin changes so shared resources such as VLVF entries are counted right).
    pub fn sync_policy(&mut self, vf: usize, policy: &VfPolicy) {
        let Some(s) = self.vfs.get_mut(vf) else {
            return;
        };
        s.mac = policy.mac.filter(|m| !m.is_zero());
        s.port_vid = policy.port_vlan.map(|p| p.vid).filter(|v| *v != 0);
        s.vlans = policy
            .vlan_filters
            .iter()
            .copied()
            .filter(|v| *v != 0)
            .collect();
        s.vlans.extend(s.port_vid);
        s.mac_filters = policy.mac_filters.len();
        s.promisc_mc = policy.allmulti;
    }

    /// PF reset (igb_reset): every VF loses CTS and must redo the handshake.
    pub fn pf_reset(&mut self) {
        for s in &mut self.vfs {
            s.cts = false;
        }
    }

    /// VF `vf` alone loses CTS, as after a PF reset it was notified of.
    pub fn forget_cts(&mut self, vf: usize) {
        if let Some(s) = self.vfs.get_mut(vf) {
            s.cts = false;
        }
    }

    /// Services VF `vf` after a mailbox event, in igb's order: VFLRE, then a posted message,
    /// then a posted ack. Each pending bit is consumed, so a message is handled at most once
    /// per REQ. Call it right after the VF's register write (or later); apply each outcome's
    /// `policy_change` to the VF's policy before the next call.
    pub fn service(
        &mut self,
        vf: usize,
        mbx: &mut VfMailbox,
        policy: &VfPolicy,
        now_ns: u64,
    ) -> ServiceReport {
        let mut report = ServiceReport::default();
        if vf >= self.vfs.len() {
            warn!(vf, "mailbox service for a VF that does not exist; ignored");
            return report;
        }
        self.sync_policy(vf, policy);
        if mbx.take_reset() {
            let o = self.reset_event(vf, policy, now_ns);
            self.count(&o);
            report.push(o);
        }
        if mbx.take_request() {
            let o = self.receive(vf, mbx, policy, now_ns);
            self.count(&o);
            report.push(o);
        }
        if mbx.take_ack() {
            if let Some(o) = self.receive_ack(vf, mbx, now_ns) {
                self.count(&o);
                report.push(o);
            }
        }
        report
    }

    fn count(&mut self, o: &AgentOutcome) {
        if let Some(s) = self.vfs.get_mut(o.vf) {
            s.book.count(o, |m| m.flags);
        }
    }

    /// Sends PF_CONTROL_MSG to one VF (with CTS if it is clear to send), as igb does on PF
    /// link changes. Lost, like igb's, if the VF holds the mailbox at that moment.
    pub fn ping(&mut self, vf: usize, mbx: &mut VfMailbox) -> AgentOutcome {
        let mut out = AgentOutcome::new(vf, Trigger::Ping);
        let Some(s) = self.vfs.get(vf) else {
            warn!(vf, "ping for a VF that does not exist; ignored");
            return out;
        };
        let flags = if s.cts { MsgFlags::CTS } else { MsgFlags::NONE };
        let message = Message::new(MailboxMsg::PfControl, flags);
        out.reply = Some(write_message(
            mbx,
            message.clone(),
            &[message.word0()],
            &mut out.events,
        ));
        self.count(&out);
        out
    }

    /// Pings every VF; `mailboxes[i]` is VF i's.
    pub fn ping_all(&mut self, mailboxes: &mut [VfMailbox]) -> Vec<AgentOutcome> {
        let n = self.vfs.len().min(mailboxes.len());
        (0..n).map(|vf| self.ping(vf, &mut mailboxes[vf])).collect()
    }

    // ----- igb's handlers -----

    /// igb_vf_reset_event + igb_vf_reset: forget the MAC unless the administrator set it, drop
    /// CTS and VF-requested state.
    fn reset_event(&mut self, vf: usize, policy: &VfPolicy, now: u64) -> AgentOutcome {
        let mac = if policy.admin_mac { policy.mac } else { None };
        self.reset_vf_state(vf, mac, now);
        info!(vf, "VF {vf} reset (VFLRE)");
        let mut out = AgentOutcome::new(vf, Trigger::VfLevelReset);
        out.policy_change = Some(PolicyChange::Reset(ResetChange {
            mac,
            rx_tx_enabled: false,
        }));
        out
    }

    fn reset_vf_state(&mut self, vf: usize, mac: Option<MacAddr>, now: u64) {
        let s = &mut self.vfs[vf];
        s.cts = false;
        s.last_nack = Some(now);
        s.mac = mac;
        s.mc_overflow = false;
        s.promisc_mc = false;
        s.vlans.clear();
        s.vlans.extend(s.port_vid);
    }

    /// igb_rcv_msg_from_vf.
    fn receive(
        &mut self,
        vf: usize,
        mbx: &mut VfMailbox,
        policy: &VfPolicy,
        now: u64,
    ) -> AgentOutcome {
        let mut out = AgentOutcome::new(vf, Trigger::Request(None));
        let Some((words, request)) = self.read_request(vf, mbx, now, &mut out) else {
            return out;
        };
        let w0 = words[0];

        if request.flags.is_response() {
            // "a message we already processed": nothing new in the buffer.
            out.events = out.events.union(mbx.write_p2v(0));
            out.refusal = Some(self.refuse(
                vf,
                RefusalReason::AlreadyAnswered,
                now,
                "REQ without a new message",
            ));
            return out;
        }

        if w0 == u32::from(msg::ID_VF_RESET) {
            return self.reset_msg(vf, mbx, policy, now, out);
        }

        if !self.vfs[vf].cts {
            let recent = self.vfs[vf]
                .last_nack
                .is_some_and(|t| now <= t.saturating_add(limits::NACK_INTERVAL_NS));
            out.refusal = Some(self.refuse(
                vf,
                RefusalReason::NotClearToSend,
                now,
                "message before reset handshake",
            ));
            if recent {
                out.events = out.events.union(mbx.write_p2v(0));
            } else {
                let reply = Message::parse(&reply_words(&words, w0 | msg::NACK)).unwrap_or(request);
                out.reply = Some(write_message(
                    mbx,
                    reply,
                    &[w0 | msg::NACK],
                    &mut out.events,
                ));
            }
            return out;
        }

        let (change, refused) = self.dispatch(vf, &request.msg, policy, w0, now);
        let verdict = if refused.is_some() {
            msg::NACK
        } else {
            msg::ACK
        };
        let rw0 = w0 | msg::CTS | verdict;
        let reply = Message::parse(&reply_words(&words, rw0)).unwrap_or(request);
        out.reply = Some(write_message(mbx, reply, &[rw0], &mut out.events));
        out.policy_change = change;
        out.refusal = refused;
        out
    }

    /// The first half of igb_rcv_msg_from_vf: lock the buffer, read the request, acknowledge
    /// it and keep the lock to answer. `None` (the outcome says why) when the buffer could not
    /// be locked or the words did not parse.
    fn read_request(
        &mut self,
        vf: usize,
        mbx: &mut VfMailbox,
        now: u64,
        out: &mut AgentOutcome,
    ) -> Option<([u32; MAILBOX_WORDS], Message)> {
        // Lock: write PFU and read it back.
        out.events = out.events.union(mbx.write_p2v(p2v::PFU));
        if mbx.read_p2v() & p2v::PFU == 0 {
            // igb: "Error receiving message from VF": CTS revoked; its NACK could not be
            // written either, since the VF still holds the buffer.
            self.vfs[vf].cts = false;
            out.refusal = Some(self.refuse(
                vf,
                RefusalReason::MailboxBusy,
                now,
                "Error receiving message from VF",
            ));
            return None;
        }
        let mut words = [0u32; MAILBOX_WORDS];
        for (i, w) in words.iter_mut().enumerate() {
            *w = mbx.pf_read_vmbmem(i);
        }
        out.events = out.events.union(mbx.write_p2v(p2v::ACK | p2v::PFU));
        let request = Message::parse(&words).ok();
        out.trigger = Trigger::Request(request.clone());
        if request.is_none() {
            // Sixteen words always parse; keep the guest-input path total anyway.
            out.events = out.events.union(mbx.write_p2v(0));
        }
        request.map(|r| (words, r))
    }

    /// Fault injection: answers VF `vf`'s posted request, if any, with NACK (and CTS as the VF
    /// has it) without acting on it, as a PF driver that refuses everything would. Counted as
    /// a nacked request. A pending VF reset or ack is left for [`PfAgent::service`].
    pub fn nack_request(
        &mut self,
        vf: usize,
        mbx: &mut VfMailbox,
        now_ns: u64,
    ) -> Option<AgentOutcome> {
        if vf >= self.vfs.len() || !mbx.take_request() {
            return None;
        }
        let mut out = AgentOutcome::new(vf, Trigger::Request(None));
        if let Some((words, request)) = self.read_request(vf, mbx, now_ns, &mut out) {
            let cts = if self.vfs[vf].cts { msg::CTS } else { 0 };
            let rw0 = words[0] | msg::NACK | cts;
            let reply = Message::parse(&reply_words(&words, rw0)).unwrap_or(request);
            out.reply = Some(write_message(mbx, reply, &[rw0], &mut out.events));
        }
        self.count(&out);
        Some(out)
    }

    /// igb_vf_reset_msg: reset VF state, program its MAC, enable its queues, mark it CTS and
    /// reply ACK + MAC, or NACK when the PF knows no MAC for it.
    fn reset_msg(
        &mut self,
        vf: usize,
        mbx: &mut VfMailbox,
        policy: &VfPolicy,
        now: u64,
        mut out: AgentOutcome,
    ) -> AgentOutcome {
        let known = if policy.admin_mac {
            policy.mac
        } else {
            self.vfs[vf].mac
        };
        let mac = known
            .filter(|m| m.is_valid_unicast())
            .or_else(|| self.generated_mac(vf));
        self.reset_vf_state(vf, mac, now);
        self.vfs[vf].cts = true;
        let (flags, wire_mac) = match mac {
            Some(m) => (MsgFlags::ACK, m),
            None => {
                info!(
                    vf,
                    "VF {vf} has no MAC address assigned; replying NACK with 00:00:00:00:00:00"
                );
                (MsgFlags::NACK, MacAddr::ZERO)
            }
        };
        let message = Message::new(MailboxMsg::VfResetReply { mac: wire_mac }, flags);
        let words = message.to_words();
        out.reply = Some(write_message(mbx, message, &words, &mut out.events));
        out.policy_change = Some(PolicyChange::Reset(ResetChange {
            mac,
            rx_tx_enabled: true,
        }));
        out
    }

    /// The switch in igb_rcv_msg_from_vf, for a clear-to-send VF.
    fn dispatch(
        &mut self,
        vf: usize,
        m: &MailboxMsg,
        policy: &VfPolicy,
        w0: u32,
        now: u64,
    ) -> (Option<PolicyChange>, Option<Refusal>) {
        let result = match m {
            MailboxMsg::SetMacAddr { op, mac } => self.set_mac(vf, *op, *mac, policy),
            MailboxMsg::SetMulticast { count, hashes } => {
                Ok(Some(self.set_multicast(vf, *count, hashes)))
            }
            MailboxMsg::SetVlan { add, vid } => self.set_vlan(vf, *add, *vid, policy),
            MailboxMsg::SetLpe { max_frame } => {
                let bounded = (*max_frame).min(u32::from(self.config.limits.max_frame));
                // `bounded` fits: it is at most `max_frame: u16`.
                Ok(Some(PolicyChange::SetMaxFrame(
                    u16::try_from(bounded).unwrap_or(u16::MAX),
                )))
            }
            MailboxMsg::SetPromisc { flags } => return self.set_promisc(vf, *flags, policy, now),
            _ => Err(RefusalReason::UnknownMessage),
        };
        match result {
            Ok(change) => (change, None),
            Err(reason) => {
                let detail = match reason {
                    RefusalReason::UnknownMessage => format!("Unhandled Msg {w0:08x}"),
                    RefusalReason::VlanPerVfLimit | RefusalReason::VlanNoSpace => {
                        format!("VLAN request {w0:08x}")
                    }
                    _ => String::new(),
                };
                (None, Some(self.refuse(vf, reason, now, &detail)))
            }
        }
    }

    /// igb_set_vf_mac_addr / igb_set_vf_mac_filter.
    fn set_mac(
        &mut self,
        vf: usize,
        op: MacFilterOp,
        mac: MacAddr,
        policy: &VfPolicy,
    ) -> Result<Option<PolicyChange>, RefusalReason> {
        let denied = policy.admin_mac && !policy.trust;
        if op == MacFilterOp::Set {
            if denied {
                return Err(RefusalReason::AdminMacOverride);
            }
            if !mac.is_valid_unicast() {
                return Err(RefusalReason::InvalidMac);
            }
            self.vfs[vf].mac = Some(mac);
            return Ok(Some(PolicyChange::SetMac(mac)));
        }
        if denied {
            return Err(RefusalReason::MacFilterDenied);
        }
        if !mac.is_valid_unicast() {
            return Err(RefusalReason::InvalidMacFilter);
        }
        match op {
            MacFilterOp::Clear => {
                self.vfs[vf].mac_filters = 0;
                Ok(Some(PolicyChange::ClearMacFilters))
            }
            MacFilterOp::Add => {
                if policy.mac_filters.contains(&mac) {
                    return Ok(Some(PolicyChange::AddMacFilter(mac)));
                }
                let in_use: usize = self.vfs.iter().map(|s| s.mac_filters).sum();
                if self.vfs[vf].mac_filters >= self.mac_filters_per_vf
                    || in_use >= self.mac_filters_total
                {
                    return Err(RefusalReason::MacFilterNoSpace);
                }
                self.vfs[vf].mac_filters += 1;
                Ok(Some(PolicyChange::AddMacFilter(mac)))
            }
            MacFilterOp::Set | MacFilterOp::Unknown(_) => {
                Err(RefusalReason::UnsupportedMacFilterOp)
            }
        }
    }

    /// igb_set_vf_multicasts: keep up to the limit; more than fit means multicast promiscuous.
    fn set_multicast(&mut self, vf: usize, count: u8, hashes: &[u16]) -> PolicyChange {
        let limit = self.config.limits.mc_hashes;
        let s = &mut self.vfs[vf];
        s.mc_overflow = usize::from(count) > limit;
        let hashes = hashes
            .iter()
            .take(limit)
            .map(|h| h & msg::MC_HASH_MASK)
            .collect();
        PolicyChange::SetMulticast {
            hashes,
            overflow: s.mc_overflow,
        }
    }

    fn vlvf_in_use(&self) -> usize {
        let all: BTreeSet<u16> = self
            .vfs
            .iter()
            .flat_map(|s| s.vlans.iter().copied())
            .collect();
        all.len()
    }

    /// igb_set_vf_vlan_msg, with the VLVF table bounded per VF.
    fn set_vlan(
        &mut self,
        vf: usize,
        add: bool,
        vid: u16,
        policy: &VfPolicy,
    ) -> Result<Option<PolicyChange>, RefusalReason> {
        // igb tests the port VLAN's VID: priority-only tagging (VID 0, qos) leaves the VF free
        // to manage its own VLANs.
        if policy.port_vlan.is_some_and(|p| p.vid != 0) {
            return Err(RefusalReason::PortVlanOverride);
        }
        if !add {
            if vid == 0 {
                // VLAN 0 cannot be removed: ACK, no change.
                return Ok(None);
            }
            self.vfs[vf].vlans.remove(&vid);
            return Ok(Some(PolicyChange::RemoveVlan(vid)));
        }
        if vid == 0 || self.vfs[vf].vlans.contains(&vid) {
            return Ok(Some(PolicyChange::AddVlan(vid)));
        }
        if self.vfs[vf].vlans.len() >= self.vlans_per_vf {
            return Err(RefusalReason::VlanPerVfLimit);
        }
        let shared = self.vfs.iter().any(|s| s.vlans.contains(&vid));
        if !shared && self.vlvf_in_use() >= self.config.limits.vlvf_slots - 1 {
            return Err(RefusalReason::VlanNoSpace);
        }
        self.vfs[vf].vlans.insert(vid);
        Ok(Some(PolicyChange::AddVlan(vid)))
    }

    /// igb_set_vf_promisc, gated by `PromiscPolicy`.
    fn set_promisc(
        &mut self,
        vf: usize,
        flags: PromiscFlags,
        policy: &VfPolicy,
        now: u64,
    ) -> (Option<PolicyChange>, Option<Refusal>) {
        match self.config.promisc {
            PromiscPolicy::TrustedOnly => {
                if flags.unknown_bits() != 0 {
                    let r = self.refuse(vf, RefusalReason::UnsupportedPromiscFlags, now, "");
                    return (None, Some(r));
                }
                if (flags.unicast() || flags.multicast()) && !policy.trust {
                    let r = self.refuse(vf, RefusalReason::PromiscNotTrusted, now, "");
                    return (None, Some(r));
                }
                let s = &mut self.vfs[vf];
                s.promisc_mc = flags.multicast();
                let change = PolicyChange::SetPromisc {
                    allmulti: s.promisc_mc,
                    promisc: flags.unicast(),
                };
                (Some(change), None)
            }
            PromiscPolicy::Igb => {
                // igb applies the multicast bit, then NACKs any flag left over.
                let s = &mut self.vfs[vf];
                s.promisc_mc = flags.multicast();
                let change = PolicyChange::SetPromisc {
                    allmulti: s.promisc_mc,
                    promisc: false,
                };
                let refusal = (flags.unicast() || flags.unknown_bits() != 0)
                    .then(|| self.refuse(vf, RefusalReason::UnsupportedPromiscFlags, now, ""));
                (Some(change), refusal)
            }
        }
    }

    /// igb_rcv_ack_from_vf: a VF that is not clear to send but reads the mailbox is told so
    /// with a bare NACK, at most once per 2 s.
    fn receive_ack(&mut self, vf: usize, mbx: &mut VfMailbox, now: u64) -> Option<AgentOutcome> {
        let s = &mut self.vfs[vf];
        if s.cts {
            return None;
        }
        let due = s
            .last_nack
            .is_none_or(|t| now > t.saturating_add(limits::NACK_INTERVAL_NS));
        if !due {
            return None;
        }
        s.last_nack = Some(now);
        let mut out = AgentOutcome::new(vf, Trigger::Ack);
        let message = Message::new(MailboxMsg::Bare, MsgFlags::NACK);
        debug!(vf, "VF {vf} is not clear to send; NACK");
        out.reply = Some(write_message(
            mbx,
            message.clone(),
            &[message.word0()],
            &mut out.events,
        ));
        Some(out)
    }

    /// Counts a refusal and logs it (warn at most once per interval per VF and reason).
    fn refuse(&mut self, vf: usize, reason: RefusalReason, now: u64, detail: &str) -> Refusal {
        self.vfs[vf].book.refuse(vf, reason, now, detail)
    }
}

/// The buffer as the VF will see it after the PF overwrites word 0 with `w0`.
fn reply_words(words: &[u32; MAILBOX_WORDS], w0: u32) -> [u32; MAILBOX_WORDS] {
    let mut r = *words;
    r[0] = w0;
    r
}

/// igb_write_mbx: lock (PFU), flush the VF's pending REQ/ACK, write the words, post with STS
/// (which also releases PFU). Nothing is written if the VF holds the buffer.
fn write_message(
    mbx: &mut VfMailbox,
    message: Message,
    words: &[u32],
    events: &mut MailboxEvents,
) -> Reply {
    *events = events.union(mbx.write_p2v(p2v::PFU));
    let delivered = mbx.read_p2v() & p2v::PFU != 0;
    if delivered {
        mbx.take_request();
        mbx.take_ack();
        for (i, w) in words.iter().enumerate() {
            mbx.pf_write_vmbmem(i, *w);
        }
        *events = events.union(mbx.write_p2v(p2v::STS));
    } else {
        debug!(
            "PF could not lock the mailbox to send {:08x}; message lost",
            words.first().copied().unwrap_or(0)
        );
    }
    Reply::new(message, words, delivered)
}
