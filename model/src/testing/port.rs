//! The PF side for tests: [`MailboxPort`] (real mailboxes and PF agent) and [`IrqLog`].

use std::sync::{Arc, Mutex};

use eswitch::VfPolicy;
use mailbox::{AgentConfig, AgentOutcome, ConfigError, MailboxEvent, PfAgent, VfMailbox};

use super::lock;
use crate::intr::IrqSink;
use crate::vf::{MailboxIrq, PfPort, VfShared};

struct PortState {
    agent: PfAgent,
    mbx: Vec<VfMailbox>,
    policy: Vec<VfPolicy>,
    now_ns: u64,
    outcomes: Vec<AgentOutcome>,
}

/// The PF side of every VF's mailbox: real `VfMailbox`es, one `PfAgent`, the VFs' policies.
pub struct MailboxPort {
    state: Mutex<PortState>,
}

impl MailboxPort {
    pub fn new(config: AgentConfig) -> Result<Arc<MailboxPort>, ConfigError> {
        let n = config.num_vfs;
        Ok(Arc::new(MailboxPort {
            state: Mutex::new(PortState {
                agent: PfAgent::new(config)?,
                mbx: vec![VfMailbox::new(); n],
                policy: vec![VfPolicy::default(); n],
                now_ns: 1_000_000_000,
                outcomes: Vec::new(),
            }),
        }))
    }

    /// A VF's policy as the agent left it.
    pub fn policy(&self, vf: u16) -> VfPolicy {
        lock(&self.state)
            .policy
            .get(usize::from(vf))
            .cloned()
            .unwrap_or_default()
    }

    /// Administrator change of a VF's policy (`ctl vf N ...`).
    pub fn admin(&self, vf: u16, f: impl FnOnce(&mut VfPolicy)) {
        let mut st = lock(&self.state);
        let PortState { agent, policy, .. } = &mut *st;
        if let Some(p) = policy.get_mut(usize::from(vf)) {
            f(p);
            agent.sync_policy(usize::from(vf), p);
        }
    }

    /// Whether the agent considers VF `vf` clear to send (it completed the reset handshake).
    pub fn is_clear_to_send(&self, vf: u16) -> bool {
        lock(&self.state).agent.is_clear_to_send(usize::from(vf))
    }

    /// The agent's outcomes so far (drained).
    pub fn take_outcomes(&self) -> Vec<AgentOutcome> {
        std::mem::take(&mut lock(&self.state).outcomes)
    }

    pub fn advance(&self, ns: u64) {
        lock(&self.state).now_ns += ns;
    }

    /// The PF pings VF `vf` (PF_CONTROL_MSG, as igb on a link change) and fires its mailbox
    /// vector through `target` — the asynchronous path the owner uses.
    pub fn ping(&self, vf: u16, target: &VfShared) {
        let raise = {
            let mut st = lock(&self.state);
            let PortState {
                agent,
                mbx,
                outcomes,
                ..
            } = &mut *st;
            let Some(m) = mbx.get_mut(usize::from(vf)) else {
                return;
            };
            let o = agent.ping(usize::from(vf), m);
            let raise = o.events.contains(MailboxEvent::InterruptVf);
            outcomes.push(o);
            raise
        };
        if raise {
            target.mailbox_interrupt();
        }
    }

    fn service(st: &mut PortState, vf: usize) -> MailboxIrq {
        let PortState {
            agent,
            mbx,
            policy,
            now_ns,
            outcomes,
        } = st;
        let (Some(m), Some(p)) = (mbx.get_mut(vf), policy.get_mut(vf)) else {
            return MailboxIrq::None;
        };
        let report = agent.service(vf, m, p, *now_ns);
        for change in report.policy_changes() {
            change.apply(p);
        }
        outcomes.extend(report.outcomes);
        if report.events.contains(MailboxEvent::InterruptVf) {
            MailboxIrq::Raise
        } else {
            MailboxIrq::None
        }
    }
}

impl PfPort for MailboxPort {
    fn read_v2p(&self, vf: u16) -> u32 {
        lock(&self.state)
            .mbx
            .get_mut(usize::from(vf))
            .map_or(0, |m| m.read_v2p())
    }

    fn write_v2p(&self, vf: u16, value: u32) -> MailboxIrq {
        let mut st = lock(&self.state);
        let Some(m) = st.mbx.get_mut(usize::from(vf)) else {
            return MailboxIrq::None;
        };
        let ev = m.write_v2p(value);
        if ev.contains(MailboxEvent::InterruptPf) {
            MailboxPort::service(&mut st, usize::from(vf))
        } else {
            MailboxIrq::None
        }
    }

    fn read_vmbmem(&self, vf: u16, word: usize) -> u32 {
        lock(&self.state)
            .mbx
            .get_mut(usize::from(vf))
            .map_or(0, |m| m.read_vmbmem(word))
    }

    fn write_vmbmem(&self, vf: u16, word: usize, value: u32) {
        if let Some(m) = lock(&self.state).mbx.get_mut(usize::from(vf)) {
            let _ = m.write_vmbmem(word, value);
        }
    }

    fn vf_reset(&self, vf: u16) -> MailboxIrq {
        let mut st = lock(&self.state);
        let Some(m) = st.mbx.get_mut(usize::from(vf)) else {
            return MailboxIrq::None;
        };
        let ev = m.vf_reset();
        if ev.contains(MailboxEvent::InterruptPf) {
            MailboxPort::service(&mut st, usize::from(vf))
        } else {
            MailboxIrq::None
        }
    }
}

/// Records the MSI-X vectors a VF fires.
#[derive(Debug, Default)]
pub struct IrqLog {
    fired: Mutex<Vec<u16>>,
}

impl IrqLog {
    pub fn new() -> Arc<IrqLog> {
        Arc::new(IrqLog::default())
    }

    /// The vectors fired since the last call, in order.
    pub fn take(&self) -> Vec<u16> {
        std::mem::take(&mut lock(&self.fired))
    }
}

impl IrqSink for IrqLog {
    fn fire(&self, vector: u16) {
        lock(&self.fired).push(vector);
    }
}
