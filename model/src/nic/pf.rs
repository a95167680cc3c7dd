//! The PF side of the NIC as the emulator plays it. Stock QEMU hides SR-IOV from guests, so no
//! guest `igb` drives our VFs' mailboxes: the emulator is the host's PF driver (in full-system
//! mode a guest's igb is instead, `guest.rs`). [`PfSide`] owns what that driver owns: the
//! embedded switch, the PF agent and every VF's mailbox.
//!
//! Three users share it (behind one lock in a running NIC):
//! - each VF function forwards its V2PMAILBOX / VMBMEM registers and its VF reset here, and
//!   raises its mailbox interrupt when told to ([`MailboxIrq`]);
//! - the administrator (`sriov-emu ctl`, scenario steps) changes a VF's settings with
//!   [`PfSide::configure_vf`], all or nothing;
//! - the datapath reaches the switch through [`PfSide::switch_mut`].
//!
//! Pure: time comes in as nanoseconds.

use eswitch::{
    Eswitch, EswitchConfig, MacAddr, PfPolicy, PolicyError, PortId, VfPolicy, VfSetting,
    DEFAULT_MAX_FRAME,
};
use mailbox::{
    MacAssignment, MailboxEvent, MailboxEvents, PromiscPolicy, RefusalCounters, VfMailbox,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use thiserror::Error;
use tracing::{info, warn};

use super::agent::{Agent, Card, Served};
use super::faults::{FaultReport, MailboxFault};
pub(super) use guest::Route;
use guest::{guest_mailboxes, GuestPf};
pub use guest::{GuestPfCounters, PfDriver};

mod guest;
use crate::seams::{Clock, MailboxIrq, PfFilters, PfPort, TxGate};
use eswitch::NextSendAt;
use std::sync::Arc;

/// How long a VF's TX queue with descriptors waiting and its transmit disabled (VFTE) waits
/// before it asks again whether it may fetch them. A PF write that sets VFTE runs the held
/// queues at once (`Nic::guest_finish`); this look is for the other ways VFTE comes back on
/// (a PF reset), and costs a VF whose PF driver never sets it 100 timer wakeups a second.
const TX_CLOSED_RECHECK_NS: u64 = 10_000_000;

/// How the NIC's PF side is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NicConfig {
    pub num_vfs: u16,
    /// The PF's station MAC (NVM words 0–2).
    pub pf_mac: MacAddr,
    /// What a VF without an administrative MAC gets in its VF_RESET reply.
    pub mac_assignment: MacAssignment,
    pub num_uplinks: u8,
    /// Mbit/s (the 82576: 1000); bounds `max_tx_rate`.
    pub link_speed_mbps: u32,
    /// Which card: the VFs' personality and the PF driver whose decisions they get.
    pub card: Card,
    /// Who plays the VFs' PF driver: the emulator, or the guest's igb on the PF function.
    pub pf_driver: PfDriver,
}

impl Default for NicConfig {
    fn default() -> Self {
        NicConfig {
            num_vfs: 7,
            pf_mac: MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x01]),
            mac_assignment: MacAssignment::AdminOnly,
            num_uplinks: 1,
            link_speed_mbps: 1000,
            card: Card::default(),
            pf_driver: PfDriver::default(),
        }
    }
}

/// How VFs without an administrative MAC get one: the words of a configuration file (`serve
/// --config` and a scenario's `[nic]` both use them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub enum MacMode {
    /// igb's behaviour: the VF_RESET reply is NACKed with a zero MAC and igbvf picks a random
    /// one (which the agent then accepts).
    #[default]
    #[serde(rename = "admin-only", alias = "admin_only")]
    AdminOnly,
    /// `02:52:54:00:vf_hi:vf_lo` with ACK, which the VF may still change (port K of a
    /// multi-port card: `02:52:54:K:vf_hi:vf_lo`).
    #[serde(rename = "generated")]
    Generated,
}

impl MacMode {
    /// The first three octets after 02 of generated MACs (QEMU's OUI-like 52:54:00).
    pub const GENERATED_SEED: [u8; 3] = [0x52, 0x54, 0x00];

    /// The assignment on port `port` of a card: generated MACs carry the port in the seed's
    /// last octet, so that the VFs of two ports joined by a cable do not share MACs. Port 0's
    /// are [`MacMode::GENERATED_SEED`]'s.
    pub fn for_port(self, port: u8) -> MacAssignment {
        match self {
            MacMode::AdminOnly => MacAssignment::AdminOnly,
            MacMode::Generated => {
                let mut seed = MacMode::GENERATED_SEED;
                seed[2] = seed[2].wrapping_add(port);
                MacAssignment::Generated { seed }
            }
        }
    }
}

impl From<MacMode> for MacAssignment {
    /// The assignment of a single-port NIC.
    fn from(m: MacMode) -> MacAssignment {
        m.for_port(0)
    }
}

/// A PF side that cannot be built.
#[derive(Debug, Error)]
pub enum NicError {
    #[error("switch: {0}")]
    Switch(#[from] eswitch::ConfigError),
    #[error("PF agent: {0}")]
    Agent(#[from] mailbox::ConfigError),
    /// A PF driver this port cannot have.
    #[error("pf_driver = {driver}: {why}")]
    PfDriver { driver: PfDriver, why: String },
}

/// An administrative change that was refused; nothing changed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AdminError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The card's PF driver refuses the setting, with the error `ip link` prints for it.
    #[error("{driver} refuses `{setting}`: {why} (RTNETLINK answers: {errno})")]
    Refused {
        driver: &'static str,
        setting: String,
        why: &'static str,
        errno: &'static str,
    },
    /// The guest's igb is the VFs' PF driver on this port: the administrator is `ip link` in
    /// that guest.
    #[error(
        "the guest's igb manages this port's VFs: use `ip link set <pf> vf {vf} ...` in the guest"
    )]
    GuestManaged { vf: u16 },
}

/// `ip link set PF vf N <words>` that was not applied: the words did not parse, or the switch
/// refused the settings. Nothing changed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SetError {
    #[error(transparent)]
    Words(#[from] eswitch::ParseError),
    #[error(transparent)]
    Refused(#[from] AdminError),
}

fn irq_from(events: MailboxEvents) -> MailboxIrq {
    if events.contains(MailboxEvent::InterruptVf) {
        MailboxIrq::Raise
    } else {
        MailboxIrq::None
    }
}

/// Counters of the PF side itself, per VF.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PfCounters {
    /// Agent decisions the switch refused to apply (a mailbox request within the agent's limits
    /// but outside the switch's): logged, the VF's policy left as it was.
    pub policy_apply_failures: u64,
    /// Accesses naming a VF that does not exist (a wiring bug, never guest input).
    pub bad_vf: u64,
    /// PF reset notifications the VF was sent ([`PfSide::notify_pf_reset`]).
    pub pf_resets: u64,
}

pub struct PfSide {
    switch: Eswitch,
    agent: Agent,
    mailboxes: Vec<VfMailbox>,
    counters: Vec<PfCounters>,
    /// The guest's igb plays the VFs' PF driver ([`PfDriver::Guest`]): its registers.
    guest: Option<GuestPf>,
    bad_vf: u64,
    /// Injected mailbox faults, per VF ([`PfSide::arm_mailbox_fault`]).
    mailbox_faults: Vec<Option<ArmedMailboxFault>>,
}

/// A mailbox fault on one VF and what it has done.
#[derive(Clone, Copy, Debug)]
struct ArmedMailboxFault {
    fault: MailboxFault,
    /// Mailbox events (REQ, ACK, VFLRE) the PF was interrupted for while armed.
    seen: u64,
    /// Requests dropped or NACKed, services delayed.
    fired: u64,
    /// A delayed service: when it is due.
    due: Option<u64>,
}

impl PfSide {
    pub fn new(config: &NicConfig) -> Result<PfSide, NicError> {
        let switch = Eswitch::new(EswitchConfig {
            num_vfs: config.num_vfs,
            num_uplinks: config.num_uplinks,
            link_speed_mbps: config.link_speed_mbps,
            pf_mac: Some(config.pf_mac),
            ..EswitchConfig::default()
        })?;
        let agent = Agent::new(
            config.card,
            usize::from(config.num_vfs),
            config.mac_assignment,
        )?;
        let n = usize::from(config.num_vfs);
        let guest = match config.pf_driver {
            PfDriver::Embedded => None,
            PfDriver::Guest => {
                let why = if config.card != Card::I82576 {
                    Some(format!(
                        "the {} has no PF function for a guest driver (82576 only)",
                        config.card
                    ))
                } else if n > crate::function::i82576::pf_vmm::POOLS {
                    Some(format!(
                        "a guest's igb manages at most {} VFs (the 82576's pools), not {n}",
                        crate::function::i82576::pf_vmm::POOLS
                    ))
                } else {
                    None
                };
                if let Some(why) = why {
                    return Err(NicError::PfDriver {
                        driver: config.pf_driver,
                        why,
                    });
                }
                Some(GuestPf::new())
            }
        };
        let mailboxes = match guest {
            Some(_) => guest_mailboxes(n),
            None => (0..n).map(|_| VfMailbox::new()).collect(),
        };
        let mut side = PfSide {
            switch,
            agent,
            mailboxes,
            counters: vec![PfCounters::default(); n],
            bad_vf: 0,
            mailbox_faults: vec![None; n],
            guest,
        };
        side.guest_apply();
        Ok(side)
    }

    pub fn num_vfs(&self) -> u16 {
        self.mailboxes.len() as u16
    }

    pub fn switch(&self) -> &Eswitch {
        &self.switch
    }

    pub fn switch_mut(&mut self) -> &mut Eswitch {
        &mut self.switch
    }

    /// The PF driver the emulator plays for this card's VFs.
    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    pub fn agent_mut(&mut self) -> &mut Agent {
        &mut self.agent
    }

    pub fn card(&self) -> Card {
        self.agent.card()
    }

    /// Who may enable promiscuous modes with SET_PROMISC ([`PromiscPolicy::Igb`] unless set;
    /// an 82599's ixgbe gates them by trust, whatever is set: `false`).
    pub fn set_promisc_policy(&mut self, policy: PromiscPolicy) -> bool {
        self.agent.set_promisc_policy(policy)
    }

    pub fn promisc_policy(&self) -> PromiscPolicy {
        self.agent.promisc_policy()
    }

    /// What a VF sees when the PF driver resets (igb_reset with VFs): its mailbox shows RSTI
    /// while the PF is down, then RSTD once the PF is back (CTRL_EXT.PFRSTD), and the agent
    /// forgets its clear-to-send, so the VF must redo the reset handshake. igbvf notices on its
    /// next link check (`e1000_check_for_rst_vf`), drops the link and reinitialises. Applied to
    /// `vf`, or to every VF; returns the VFs notified (to raise their mailbox interrupt).
    pub fn notify_pf_reset(&mut self, vf: Option<u16>) -> Vec<u16> {
        let targets: Vec<u16> = match vf {
            Some(v) => self.index(v).map(|_| v).into_iter().collect(),
            None => (0..self.num_vfs()).collect(),
        };
        for &v in &targets {
            let i = usize::from(v);
            self.mailboxes[i].pf_reset_start();
            self.mailboxes[i].pf_reset_done();
            self.agent.forget_cts(i);
            self.counters[i].pf_resets += 1;
            info!(vf = v, "PF reset notification sent");
        }
        targets
    }

    /// VF `vf`'s policy as the switch enforces it.
    pub fn policy(&self, vf: u16) -> Option<&VfPolicy> {
        self.switch.policy(vf)
    }

    pub fn refusals(&self, vf: u16) -> Option<RefusalCounters> {
        self.index(vf).map(|i| self.agent.refusals(i))
    }

    pub fn counters(&self, vf: u16) -> Option<PfCounters> {
        self.index(vf).map(|i| self.counters[i])
    }

    /// The mailbox of VF `vf`, for inspection (last PF message, ownership, stats).
    pub fn mailbox(&self, vf: u16) -> Option<&VfMailbox> {
        self.index(vf).map(|i| &self.mailboxes[i])
    }

    fn index(&self, vf: u16) -> Option<usize> {
        let i = usize::from(vf);
        (i < self.mailboxes.len()).then_some(i)
    }

    fn checked(&mut self, vf: u16) -> Option<usize> {
        let i = self.index(vf);
        if i.is_none() {
            self.bad_vf += 1;
            warn!(vf, "mailbox access for a VF this NIC does not have");
        }
        i
    }

    // -----------------------------------------------------------------------------------------
    // The VF's mailbox registers (V2PMAILBOX and VMBMEM, as igbvf's `mbx.c` uses them),
    // forwarded by the VF function.

    /// V2PMAILBOX read (PFSTS, PFACK and RSTD clear on read).
    pub fn read_v2p(&mut self, vf: u16) -> u32 {
        match self.checked(vf) {
            Some(i) => self.mailboxes[i].read_v2p(),
            None => 0,
        }
    }

    /// V2PMAILBOX write. A posted request or ack is answered at once by the PF agent.
    pub fn write_v2p(&mut self, vf: u16, value: u32, now_ns: u64) -> MailboxIrq {
        let Some(i) = self.checked(vf) else {
            return MailboxIrq::None;
        };
        let events = self.mailboxes[i].write_v2p(value);
        self.serve_if_asked(i, events, now_ns)
    }

    pub fn read_vmbmem(&mut self, vf: u16, word: usize) -> u32 {
        match self.checked(vf) {
            Some(i) => self.mailboxes[i].read_vmbmem(word),
            None => 0,
        }
    }

    /// VMBMEM write; dropped by the mailbox unless the VF holds the buffer.
    pub fn write_vmbmem(&mut self, vf: u16, word: usize, value: u32) {
        if let Some(i) = self.checked(vf) {
            self.mailboxes[i].write_vmbmem(word, value);
        }
    }

    /// The VF reset itself (VTCTRL.RST or FLR): VFLRE to the PF, which forgets the VF's
    /// requested state (QEMU's `igb_vf_reset`; igb's `igb_vf_reset_event`).
    pub fn vf_reset(&mut self, vf: u16, now_ns: u64) -> MailboxIrq {
        let Some(i) = self.checked(vf) else {
            return MailboxIrq::None;
        };
        let events = self.mailboxes[i].vf_reset();
        if self.guest.is_some() {
            return self.guest_vf_reset(i, events);
        }
        self.serve_if_asked(i, events, now_ns)
    }

    fn serve_if_asked(&mut self, i: usize, events: MailboxEvents, now_ns: u64) -> MailboxIrq {
        if self.guest.is_some() {
            return self.guest_vf_event(i, events);
        }
        let mut all = events;
        if !events.contains(MailboxEvent::InterruptPf) {
            return irq_from(all);
        }
        let Some(armed) = self.mailbox_faults[i].as_mut() else {
            return irq_from(all.union(self.serve(i, now_ns).events));
        };
        armed.seen += 1;
        match armed.fault {
            MailboxFault::Drop => {
                if self.mailboxes[i].take_request() {
                    armed.fired += 1;
                    info!(
                        vf = i,
                        "fault fired: mailbox request dropped, never answered"
                    );
                }
            }
            MailboxFault::Nack => {
                if let Some(events) = self.agent.nack_request(i, &mut self.mailboxes[i], now_ns) {
                    armed.fired += 1;
                    info!(vf = i, "fault fired: mailbox request NACKed");
                    all = all.union(events);
                }
            }
            MailboxFault::Delay { ns } => {
                if armed.due.is_none() {
                    armed.due = Some(now_ns.saturating_add(ns));
                    armed.fired += 1;
                    info!(vf = i, "fault fired: mailbox service delayed");
                }
                return irq_from(all);
            }
        }
        irq_from(all.union(self.serve(i, now_ns).events))
    }

    // -----------------------------------------------------------------------------------------
    // Injected mailbox faults.

    /// Arms `fault` on VF `vf`'s mailbox (replacing one there). Returns the VFs whose mailbox
    /// interrupt must fire (a delayed service the new fault replaces is carried out now).
    pub fn arm_mailbox_fault(&mut self, vf: u16, fault: MailboxFault, now_ns: u64) -> Vec<u16> {
        let Some(i) = self.index(vf) else {
            return Vec::new();
        };
        let ended = self.mailbox_faults[i].take();
        self.mailbox_faults[i] = Some(ArmedMailboxFault {
            fault,
            seen: 0,
            fired: 0,
            due: None,
        });
        match ended {
            Some(a) => self.end_mailbox_fault(i, a, now_ns),
            None => Vec::new(),
        }
    }

    /// What ending fault `a` on VF `i` leaves to do: a delayed service is carried out now; after
    /// dropped requests the PF says it is back with a PF_CONTROL_MSG (igb's ping), which is
    /// what a VF driver whose mailbox timed out waits for to reinitialise (igbvf's
    /// `e1000_check_for_link_vf`: "the PF is talking, if we timed out in the past we reinit").
    /// Returns the VFs whose mailbox interrupt must fire.
    fn end_mailbox_fault(&mut self, i: usize, a: ArmedMailboxFault, now_ns: u64) -> Vec<u16> {
        if a.due.is_some() {
            return self.serve_now(i, now_ns);
        }
        if a.fault == MailboxFault::Drop && a.fired > 0 {
            info!(vf = i, "mailbox drop fault ended: the PF pings the VF");
            return self.ping_vf(i as u16).into_iter().collect();
        }
        Vec::new()
    }

    /// Disarms every mailbox fault (`PfSide::end_mailbox_fault` for each). Returns how many
    /// were armed and the VFs whose mailbox interrupt must fire.
    pub fn clear_mailbox_faults(&mut self, now_ns: u64) -> (usize, Vec<u16>) {
        let mut armed = 0;
        let mut irqs = Vec::new();
        for i in 0..self.mailbox_faults.len() {
            if let Some(a) = self.mailbox_faults[i].take() {
                armed += 1;
                irqs.extend(self.end_mailbox_fault(i, a, now_ns));
            }
        }
        (armed, irqs)
    }

    /// Carries out the delayed services that are due at `now_ns`; returns the VFs whose
    /// mailbox interrupt must fire.
    pub fn serve_delayed(&mut self, now_ns: u64) -> Vec<u16> {
        let mut irqs = Vec::new();
        for i in 0..self.mailbox_faults.len() {
            let due = self.mailbox_faults[i]
                .as_mut()
                .filter(|a| a.due.is_some_and(|d| d <= now_ns));
            if let Some(a) = due {
                a.due = None;
                irqs.extend(self.serve_now(i, now_ns));
            }
        }
        irqs
    }

    /// When the next delayed mailbox service is due.
    pub fn next_mailbox_deadline(&self) -> Option<u64> {
        self.mailbox_faults
            .iter()
            .flatten()
            .filter_map(|a| a.due)
            .min()
    }

    /// The armed mailbox faults and what each has done.
    pub fn mailbox_fault_report(&self) -> Vec<FaultReport> {
        self.mailbox_faults
            .iter()
            .enumerate()
            .filter_map(|(i, a)| {
                a.map(|a| FaultReport {
                    fault: format!("mailbox vf{i} {}", a.fault),
                    seen: a.seen,
                    fired: a.fired,
                })
            })
            .collect()
    }

    fn serve_now(&mut self, i: usize, now_ns: u64) -> Vec<u16> {
        let events = self.serve(i, now_ns).events;
        if irq_from(events) == MailboxIrq::Raise {
            vec![i as u16]
        } else {
            Vec::new()
        }
    }

    /// Lets the agent answer VF `i` and hands its decisions to the switch.
    fn serve(&mut self, i: usize, now_ns: u64) -> Served {
        let vf = i as u16;
        let mut policy = self.switch.policy(vf).cloned().unwrap_or_default();
        let report = self
            .agent
            .service(i, &mut self.mailboxes[i], &policy, now_ns);
        if !report.changes.is_empty() {
            for change in &report.changes {
                change.apply(&mut policy);
            }
            if let Err(e) = self.switch.set_policy(vf, policy) {
                self.counters[i].policy_apply_failures += 1;
                warn!(vf, error = %e, "PF agent's change for the VF refused by the switch");
                let current = self.switch.policy(vf).cloned().unwrap_or_default();
                self.agent.sync_policy(i, &current);
            }
        }
        report
    }

    // -----------------------------------------------------------------------------------------
    // The administrator: `ip link set PF vf N ...`.

    /// Applies the settings all or nothing. A changed MAC or port VLAN takes effect in the
    /// switch at once; igb then logs "Reload the VF driver to make this change effective", and
    /// so do we; we also ping the VF (PF_CONTROL_MSG), which makes a running igbvf re-check its
    /// link. A `state` that takes the VF's link down or up pings it too (as ixgbe's
    /// `ixgbe_set_vf_link_state` does), or its driver would not notice. Returns whether that
    /// VF must raise its mailbox interrupt.
    pub fn configure_vf(
        &mut self,
        vf: u16,
        settings: &[VfSetting],
    ) -> Result<MailboxIrq, AdminError> {
        if self.guest.is_some() {
            return Err(AdminError::GuestManaged { vf });
        }
        for s in settings {
            self.check_for_card(s)?;
        }
        let before = self.switch.policy(vf).cloned();
        let link_before = self.switch.port_up(PortId::Vf(vf)).ok();
        self.switch.configure_vf(vf, settings)?;
        let link_after = self.switch.port_up(PortId::Vf(vf)).ok();
        let Some(i) = self.index(vf) else {
            return Ok(MailboxIrq::None);
        };
        let mut after = self.switch.policy(vf).cloned().unwrap_or_default();
        // Under the trusted-only policy, promiscuous modes go with the trust that allowed them.
        let untrusted = before.as_ref().is_some_and(|b| b.trust) && !after.trust;
        if untrusted
            && self.agent.promisc_policy() == PromiscPolicy::TrustedOnly
            && (after.allmulti || after.promisc)
        {
            after.allmulti = false;
            after.promisc = false;
            if let Err(e) = self.switch.set_policy(vf, after.clone()) {
                warn!(vf, error = %e, "clearing promiscuous modes refused by the switch");
            }
            info!(
                vf,
                "trust off: promiscuous modes cleared (trusted-only policy)"
            );
        }
        for s in settings {
            if let (VfSetting::QueryRss(on), Some(agent)) = (s, self.agent.ixgbe_mut()) {
                agent.set_query_rss(i, *on);
                info!(
                    vf,
                    on,
                    "VF RSS query {}",
                    if *on { "enabled" } else { "disabled" }
                );
            }
        }
        let moved = (link_before != link_after).then(|| link_after.unwrap_or(false));
        let before = before.unwrap_or_default();
        let events = self
            .agent
            .admin_changed(i, &before, &after, moved, &mut self.mailboxes[i]);
        Ok(irq_from(events))
    }

    /// Refuses what the card's PF driver refuses of `ip link set PF vf N ...`, with its error:
    /// igb has no `query_rss` (no `ndo_set_vf_rss_query_en`: EOPNOTSUPP); ixgbe takes no
    /// `min_tx_rate` and no `max_tx_rate` of 10 Mbit/s or less (`ixgbe_ndo_set_vf_bw`:
    /// EINVAL).
    fn check_for_card(&self, setting: &VfSetting) -> Result<(), AdminError> {
        let card = self.agent.card();
        let refuse = |setting: String, why, errno| {
            Err(AdminError::Refused {
                driver: card.drivers().0,
                setting,
                why,
                errno,
            })
        };
        match (card, setting) {
            (Card::I82576, VfSetting::QueryRss(on)) => refuse(
                format!("query_rss {}", if *on { "on" } else { "off" }),
                "igb has no RSS query setting",
                "Operation not supported",
            ),
            (Card::X82599, VfSetting::Rate { min: Some(m), .. }) if *m > 0 => refuse(
                format!("min_tx_rate {m}"),
                "ixgbe sets no minimum rate",
                "Invalid argument",
            ),
            (Card::X82599, VfSetting::Rate { max: Some(m), .. }) if (1..=10).contains(m) => refuse(
                format!("max_tx_rate {m}"),
                "ixgbe's rate limiter takes more than 10 Mbit/s",
                "Invalid argument",
            ),
            _ => Ok(()),
        }
    }

    /// Sends VF `vf` a PF_CONTROL_MSG (as igb does when something about its link changed), so
    /// that its driver checks its link. Returns the VF if its mailbox interrupt must fire.
    pub fn ping_vf(&mut self, vf: u16) -> Option<u16> {
        let i = self.index(vf)?;
        let events = self.agent.ping(i, &mut self.mailboxes[i]);
        (irq_from(events) == MailboxIrq::Raise).then_some(vf)
    }

    /// The PF link went up or down: the switch follows, every VF is told as the card's PF
    /// driver tells them ([`Agent::pf_link`]). Returns the VFs whose mailbox interrupt must fire.
    pub fn set_link(&mut self, up: bool) -> Vec<u16> {
        self.switch.set_link(up);
        if self.guest.is_some() {
            // The guest's igb pings its VFs itself (`igb_ping_all_vfs` on a link change).
            return Vec::new();
        }
        let policies: Vec<VfPolicy> = (0..self.num_vfs())
            .map(|vf| self.switch.policy(vf).cloned().unwrap_or_default())
            .collect();
        self.agent
            .pf_link(up, &policies, &mut self.mailboxes)
            .into_iter()
            .filter(|(_, events)| events.contains(MailboxEvent::InterruptVf))
            .map(|(vf, _)| vf as u16)
            .collect()
    }

    /// Largest frame a VF may receive, after its SET_LPE.
    pub fn max_frame(&self, vf: u16) -> u16 {
        self.policy(vf).map_or(DEFAULT_MAX_FRAME, |p| p.max_frame)
    }
}

/// The PF side behind its lock, with the runtime's clock: the [`PfPort`] every VF function of
/// a NIC is given. A VF calls in with its own lock held (the order is always VF, then PF).
pub struct SharedPf {
    side: Mutex<PfSide>,
    clock: Arc<dyn Clock>,
    /// A VF's mailbox access left a delayed service (a mailbox fault) for the NIC's timer.
    mailbox_delayed: AtomicBool,
    /// A VF's mailbox event owes the guest's PF driver ICR.VMMB ([`PfDriver::Guest`]).
    vmmb: AtomicBool,
}

impl SharedPf {
    pub fn new(side: PfSide, clock: Arc<dyn Clock>) -> SharedPf {
        SharedPf {
            side: Mutex::new(side),
            clock,
            mailbox_delayed: AtomicBool::new(false),
            vmmb: AtomicBool::new(false),
        }
    }

    /// The PF side, locked. A panic elsewhere while it was held leaves it usable: every
    /// operation on it keeps its own invariants.
    pub fn side(&self) -> MutexGuard<'_, PfSide> {
        self.side.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn now(&self) -> u64 {
        self.clock.now_ns()
    }

    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// Whether a VF's mailbox access left a delayed service since the last call.
    pub fn take_mailbox_delayed(&self) -> bool {
        self.mailbox_delayed.load(Ordering::Relaxed)
            && self.mailbox_delayed.swap(false, Ordering::AcqRel)
    }

    /// Whether ICR.VMMB is owed to the guest's PF driver since the last call.
    pub fn take_vmmb(&self) -> bool {
        self.vmmb.load(Ordering::Relaxed) && self.vmmb.swap(false, Ordering::AcqRel)
    }

    /// Notes that an access owes the guest's PF driver ICR.VMMB, for [`SharedPf::take_vmmb`].
    fn note_vmmb(&self, side: &mut PfSide) {
        if side.take_guest_vmmb() {
            self.vmmb.store(true, Ordering::Release);
        }
    }

    /// Notes a delayed service left by an access, for [`SharedPf::take_mailbox_delayed`].
    fn note_delayed(&self, side: &PfSide) {
        if side
            .mailbox_faults
            .iter()
            .flatten()
            .any(|a| a.due.is_some())
        {
            self.mailbox_delayed.store(true, Ordering::Release);
        }
    }
}

impl PfPort for SharedPf {
    fn read_v2p(&self, vf: u16) -> u32 {
        self.side().read_v2p(vf)
    }

    fn write_v2p(&self, vf: u16, value: u32) -> MailboxIrq {
        let now = self.now();
        let mut side = self.side();
        let irq = side.write_v2p(vf, value, now);
        self.note_delayed(&side);
        self.note_vmmb(&mut side);
        irq
    }

    fn read_vmbmem(&self, vf: u16, word: usize) -> u32 {
        self.side().read_vmbmem(vf, word)
    }

    fn write_vmbmem(&self, vf: u16, word: usize, value: u32) {
        self.side().write_vmbmem(vf, word, value)
    }

    fn vf_reset(&self, vf: u16) -> MailboxIrq {
        let now = self.now();
        let mut side = self.side();
        let irq = side.vf_reset(vf, now);
        self.note_delayed(&side);
        self.note_vmmb(&mut side);
        irq
    }

    fn tx_admit(&self, vf: u16, frame_len: usize) -> Result<(), NextSendAt> {
        let mut side = self.side();
        let switch = side.switch_mut();
        // Asked for each frame of a run that started rate-limited: the clock is read only if
        // the limit is still there.
        if switch.shaper(vf).is_none() {
            return Ok(());
        }
        switch.tx_admit(vf, self.now(), frame_len)
    }

    fn tx_gate(&self, vf: u16) -> TxGate {
        let side = self.side();
        let switch = side.switch();
        let Some(policy) = switch.policy(vf) else {
            return TxGate::OPEN;
        };
        let fetch = if policy.tx_enabled {
            Ok(())
        } else {
            Err(NextSendAt(self.now().saturating_add(TX_CLOSED_RECHECK_NS)))
        };
        TxGate {
            fetch,
            shaped: switch.shaper(vf).is_some(),
            descriptor_vlan: policy.port_vlan.is_none() && !policy.tx_vlan_never,
        }
    }
}

/// The PF function's filters reach the switch's PF port. The PF function calls in with its own
/// lock held (the order is always function, then PF side).
impl PfFilters for SharedPf {
    fn set_pf_policy(&self, policy: PfPolicy) {
        let mut side = self.side();
        // With the guest's igb managing VFs, its RAR entries of VF pools are not the PF's.
        let policy = match side.guest_pf_filters(policy.clone()) {
            Some(filtered) => filtered,
            None => policy,
        };
        if let Err(e) = side.switch_mut().set_pf_policy(policy) {
            // The PF function only builds valid policies; keep the switch's if one is not.
            warn!(error = %e, "PF receive filters refused by the switch");
        }
    }

    fn set_rx_vlan_strip(&self, on: bool) {
        if let Err(e) = self.side().switch_mut().set_rx_vlan_strip(PortId::Pf, on) {
            warn!(error = %e, "PF port missing from the switch");
        }
    }
}

#[cfg(test)]
mod tests;
