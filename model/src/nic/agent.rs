//! The PF driver the emulator plays for a card's VFs, per card: igb's decisions for the 82576
//! ([`mailbox::PfAgent`]), ixgbe's for the 82599 ([`mailbox::ixgbe::IxgbeAgent`]). Both answer
//! the same per-VF mailbox ([`mailbox::VfMailbox`]: the 82599's VFMAILBOX/PFMAILBOX bits are the
//! 82576's V2PMAILBOX/P2VMAILBOX bits) and both hand their decisions to the one switch as
//! [`PolicyChange`]s; [`PfSide`](super::PfSide) sees only this, so the switch, the mailbox
//! registers and the fault injection are shared, not copied per card.

use eswitch::VfPolicy;
use mailbox::ixgbe::{IxgbeAgent, IxgbeConfig};
use mailbox::{
    AgentConfig, MacAssignment, MailboxEvents, PfAgent, PolicyChange, PromiscPolicy,
    RefusalCounters, VfCounters, VfMailbox,
};
use tracing::info;

pub use crate::function::card_vf::Card;

/// What answering a VF did, whatever the card: the events on its mailbox (fire its mailbox
/// vector on `InterruptVf`) and the changes to make to its policy, in order.
#[derive(Debug, Default)]
pub struct Served {
    pub events: MailboxEvents,
    pub changes: Vec<PolicyChange>,
}

/// The PF driver of the card.
#[derive(Debug)]
pub enum Agent {
    Igb(PfAgent),
    Ixgbe(IxgbeAgent),
}

impl Agent {
    pub fn new(
        card: Card,
        num_vfs: usize,
        mac_assignment: MacAssignment,
    ) -> Result<Agent, mailbox::ConfigError> {
        Ok(match card {
            Card::I82576 => {
                let mut config = AgentConfig::new(num_vfs);
                config.mac_assignment = mac_assignment;
                Agent::Igb(PfAgent::new(config)?)
            }
            Card::X82599 => {
                let mut config = IxgbeConfig::new(num_vfs);
                config.mac_assignment = mac_assignment;
                Agent::Ixgbe(IxgbeAgent::new(config)?)
            }
        })
    }

    pub fn card(&self) -> Card {
        match self {
            Agent::Igb(_) => Card::I82576,
            Agent::Ixgbe(_) => Card::X82599,
        }
    }

    /// igb's agent, for what only igb has (its promiscuous policy, its counters' details).
    pub fn igb(&self) -> Option<&PfAgent> {
        match self {
            Agent::Igb(a) => Some(a),
            Agent::Ixgbe(_) => None,
        }
    }

    /// ixgbe's agent, for what only ixgbe has (API versions, xcast modes, `query_rss`).
    pub fn ixgbe(&self) -> Option<&IxgbeAgent> {
        match self {
            Agent::Ixgbe(a) => Some(a),
            Agent::Igb(_) => None,
        }
    }

    pub fn ixgbe_mut(&mut self) -> Option<&mut IxgbeAgent> {
        match self {
            Agent::Ixgbe(a) => Some(a),
            Agent::Igb(_) => None,
        }
    }

    /// Who may enable promiscuous modes (igb's SET_PROMISC; ixgbe gates UPDATE_XCAST_MODE by
    /// trust itself, as ixgbe does: `TrustedOnly`).
    pub fn promisc_policy(&self) -> PromiscPolicy {
        match self {
            Agent::Igb(a) => a.config().promisc,
            Agent::Ixgbe(_) => PromiscPolicy::TrustedOnly,
        }
    }

    /// Sets igb's promiscuous policy; ixgbe has none to set (`false`).
    pub fn set_promisc_policy(&mut self, policy: PromiscPolicy) -> bool {
        match self {
            Agent::Igb(a) => {
                a.set_promisc_policy(policy);
                true
            }
            Agent::Ixgbe(_) => false,
        }
    }

    pub fn is_clear_to_send(&self, vf: usize) -> bool {
        match self {
            Agent::Igb(a) => a.is_clear_to_send(vf),
            Agent::Ixgbe(a) => a.is_clear_to_send(vf),
        }
    }

    /// VF `vf` loses clear-to-send, as after a PF reset it was told of.
    pub fn forget_cts(&mut self, vf: usize) {
        match self {
            Agent::Igb(a) => a.forget_cts(vf),
            Agent::Ixgbe(a) => a.forget_cts(vf),
        }
    }

    pub fn counters(&self, vf: usize) -> VfCounters {
        match self {
            Agent::Igb(a) => a.counters(vf),
            Agent::Ixgbe(a) => a.counters(vf),
        }
    }

    pub fn refusals(&self, vf: usize) -> RefusalCounters {
        match self {
            Agent::Igb(a) => a.refusals(vf),
            Agent::Ixgbe(a) => a.refusals(vf),
        }
    }

    /// The agent learns the VF's policy as the administrator or the switch left it.
    pub fn sync_policy(&mut self, vf: usize, policy: &VfPolicy) {
        match self {
            Agent::Igb(a) => a.sync_policy(vf, policy),
            Agent::Ixgbe(a) => a.sync_policy(vf, policy),
        }
    }

    /// Answers VF `vf` after a mailbox event (its VF reset, a posted request, an ack).
    pub fn service(
        &mut self,
        vf: usize,
        mbx: &mut VfMailbox,
        policy: &VfPolicy,
        now_ns: u64,
    ) -> Served {
        match self {
            Agent::Igb(a) => {
                let r = a.service(vf, mbx, policy, now_ns);
                Served {
                    events: r.events,
                    changes: r.policy_changes().cloned().collect(),
                }
            }
            Agent::Ixgbe(a) => {
                let r = a.service(vf, mbx, policy, now_ns);
                Served {
                    events: r.events,
                    changes: r.policy_changes().cloned().collect(),
                }
            }
        }
    }

    /// PF_CONTROL_MSG to VF `vf` (with CTS if it is clear to send).
    pub fn ping(&mut self, vf: usize, mbx: &mut VfMailbox) -> MailboxEvents {
        match self {
            Agent::Igb(a) => a.ping(vf, mbx).events,
            Agent::Ixgbe(a) => a.ping(vf, mbx).events,
        }
    }

    /// The PF's link changed: igb pings every VF (`igb_ping_all_vfs`); ixgbe sets every VF's
    /// link from its state, revokes CTS and pings (`ixgbe_set_all_vfs`). Returns each VF's
    /// events, by VF.
    pub fn pf_link(
        &mut self,
        up: bool,
        policies: &[VfPolicy],
        mailboxes: &mut [VfMailbox],
    ) -> Vec<(usize, MailboxEvents)> {
        match self {
            Agent::Igb(a) => a
                .ping_all(mailboxes)
                .into_iter()
                .map(|o| (o.vf, o.events))
                .collect(),
            Agent::Ixgbe(a) => a
                .set_pf_up(up, policies, mailboxes)
                .into_iter()
                .map(|o| (o.vf, o.events))
                .collect(),
        }
    }

    /// What the PF driver does when the administrator changed VF `vf`'s settings from
    /// `before` to `after` (the switch already has them; `link_moved`: the VF's link went to
    /// this). igb pings the VF when its MAC or port VLAN changed ("Reload the VF driver to make
    /// this change effective"), and when a `state` moved its link, or a running igbvf would
    /// not notice; ixgbe says the same on a MAC change without a ping (`ixgbe_ndo_set_vf_mac`),
    /// and revokes the VF's CTS and pings on a trust change (`ixgbe_ndo_set_vf_trust`) and a
    /// link state change (`ixgbe_ndo_set_vf_link_state`).
    pub fn admin_changed(
        &mut self,
        vf: usize,
        before: &VfPolicy,
        after: &VfPolicy,
        link_moved: Option<bool>,
        mbx: &mut VfMailbox,
    ) -> MailboxEvents {
        let reload = before.mac != after.mac || before.port_vlan != after.port_vlan;
        if reload {
            info!(
                vf,
                mac = %after.mac.unwrap_or(eswitch::MacAddr::ZERO),
                vlan = after.port_vlan.map_or(0, |v| v.vid),
                "VF settings changed; Reload the VF driver to make this change effective"
            );
        }
        match self {
            Agent::Igb(a) => {
                a.sync_policy(vf, after);
                if !reload {
                    let Some(up) = link_moved else {
                        return MailboxEvents::NONE;
                    };
                    info!(vf, up, "VF link state changed; pinging the VF");
                }
                a.ping(vf, mbx).events
            }
            Agent::Ixgbe(a) => {
                let mut events = MailboxEvents::NONE;
                if let Some(o) = a.trust_changed(vf, after, mbx) {
                    events = events.union(o.events);
                }
                if before.link_state != after.link_state {
                    if let Some(o) = a.admin_link_state(vf, after.link_state, mbx) {
                        info!(vf, "VF link state changed; pinging the VF");
                        events = events.union(o.events);
                    }
                }
                a.sync_policy(vf, after);
                events
            }
        }
    }

    /// Fault injection: NACK VF `vf`'s posted request without acting on it. igb's agent only;
    /// on ixgbe's nothing is taken (`None`) and the request is served as usual.
    pub fn nack_request(
        &mut self,
        vf: usize,
        mbx: &mut VfMailbox,
        now_ns: u64,
    ) -> Option<MailboxEvents> {
        match self {
            Agent::Igb(a) => a.nack_request(vf, mbx, now_ns).map(|o| o.events),
            Agent::Ixgbe(_) => None,
        }
    }
}
