//! The PF as an 82599 VF function sees it, without the NIC runtime: one [`VfMailbox`] per VF
//! reached through `mailbox::ixgbe`'s VF register decode ([`vf_read`] / [`vf_write`]), an
//! [`IxgbeAgent`] answering each posted request or ack at once (as ixgbe's `ixgbe_msg_task`
//! does on the PF's mailbox interrupt), and each VF's [`VfPolicy`] with the agent's changes
//! applied. No switch: every frame is admitted.
//!
//! It implements the same [`PfPort`] seam the 82576 VF reaches its PF through (VFMAILBOX has
//! V2PMAILBOX's bits, VFMBMEM is VMBMEM), which the NIC runtime's own PF side implements for
//! both cards; this one is for tests and for studying the VF alone, without the runtime.
//!
//! VF reset (VFCTRL.RST or FLR): the mailbox raises VFLRE (the agent runs ixgbe's
//! `ixgbe_vf_reset_event`) and, with the PF up (RSTI clear), reports the reset done with RSTD,
//! which ixgbevf's `ixgbevf_reset_hw_vf` sees once before it sends VF_RESET.

use std::sync::{Mutex, MutexGuard};

use eswitch::{NextSendAt, VfPolicy};
use mailbox::ixgbe::regs::vfmailbox;
use mailbox::ixgbe::{vf_read, vf_write, IxgbeAgent, IxgbeConfig, IxgbeReport, VfRegister};
use mailbox::{ConfigError, MailboxEvent, MailboxEvents, VfMailbox};
use tracing::debug;

use crate::seams::{Clock, MailboxIrq, PfPort, TxGate};

struct Inner {
    agent: IxgbeAgent,
    mailboxes: Vec<VfMailbox>,
    policies: Vec<VfPolicy>,
}

/// The ixgbe PF side of `num_vfs` 82599 VFs.
pub struct IxgbePfSide {
    inner: Mutex<Inner>,
    clock: std::sync::Arc<dyn Clock>,
}

impl std::fmt::Debug for IxgbePfSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IxgbePfSide").finish_non_exhaustive()
    }
}

fn irq_from(events: MailboxEvents) -> MailboxIrq {
    if events.contains(MailboxEvent::InterruptVf) {
        MailboxIrq::Raise
    } else {
        MailboxIrq::None
    }
}

impl IxgbePfSide {
    pub fn new(
        config: IxgbeConfig,
        clock: std::sync::Arc<dyn Clock>,
    ) -> Result<IxgbePfSide, ConfigError> {
        let n = config.num_vfs;
        Ok(IxgbePfSide {
            inner: Mutex::new(Inner {
                agent: IxgbeAgent::new(config)?,
                mailboxes: vec![VfMailbox::new(); n],
                policies: vec![VfPolicy::default(); n],
            }),
            clock,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind: keep going with it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// VF `vf`'s policy as the agent's answers left it.
    pub fn policy(&self, vf: u16) -> Option<VfPolicy> {
        self.lock().policies.get(usize::from(vf)).cloned()
    }

    /// Changes VF `vf`'s policy as an administrator would (`ip link set PF vf N ...`).
    pub fn configure(&self, vf: u16, change: impl FnOnce(&mut VfPolicy)) {
        let mut g = self.lock();
        let Inner {
            agent, policies, ..
        } = &mut *g;
        if let Some(p) = policies.get_mut(usize::from(vf)) {
            change(p);
            agent.sync_policy(usize::from(vf), p);
        }
    }

    /// Runs `f` on the agent (its state per VF, its PF-initiated messages) and VF `vf`'s
    /// mailbox; whether the VF's mailbox interrupt must be raised.
    pub fn with_agent(
        &self,
        vf: u16,
        f: impl FnOnce(&mut IxgbeAgent, &mut VfMailbox) -> MailboxEvents,
    ) -> MailboxIrq {
        let mut g = self.lock();
        let Inner {
            agent, mailboxes, ..
        } = &mut *g;
        match mailboxes.get_mut(usize::from(vf)) {
            Some(m) => irq_from(f(agent, m)),
            None => MailboxIrq::None,
        }
    }

    /// VF `vf`'s mailbox as it stands.
    pub fn mailbox(&self, vf: u16) -> Option<VfMailbox> {
        self.lock().mailboxes.get(usize::from(vf)).cloned()
    }

    fn serve(inner: &mut Inner, vf: usize, events: MailboxEvents, now: u64) -> MailboxEvents {
        if !events.contains(MailboxEvent::InterruptPf) {
            return events;
        }
        let Inner {
            agent,
            mailboxes,
            policies,
        } = inner;
        let (Some(mbx), Some(policy)) = (mailboxes.get_mut(vf), policies.get_mut(vf)) else {
            return events;
        };
        let report: IxgbeReport = agent.service(vf, mbx, policy, now);
        for change in report.policy_changes() {
            change.apply(policy);
        }
        events.union(report.events)
    }
}

impl PfPort for IxgbePfSide {
    fn read_v2p(&self, vf: u16) -> u32 {
        let mut g = self.lock();
        g.mailboxes
            .get_mut(usize::from(vf))
            .map_or(0, |m| vf_read(m, VfRegister::Vfmailbox))
    }

    fn write_v2p(&self, vf: u16, value: u32) -> MailboxIrq {
        let now = self.clock.now_ns();
        let mut g = self.lock();
        let Some(m) = g.mailboxes.get_mut(usize::from(vf)) else {
            return MailboxIrq::None;
        };
        let events = vf_write(m, VfRegister::Vfmailbox, value);
        irq_from(Self::serve(&mut g, usize::from(vf), events, now))
    }

    fn read_vmbmem(&self, vf: u16, word: usize) -> u32 {
        let mut g = self.lock();
        g.mailboxes
            .get_mut(usize::from(vf))
            .map_or(0, |m| vf_read(m, VfRegister::Vfmbmem(word)))
    }

    fn write_vmbmem(&self, vf: u16, word: usize, value: u32) {
        let mut g = self.lock();
        if let Some(m) = g.mailboxes.get_mut(usize::from(vf)) {
            let _ = vf_write(m, VfRegister::Vfmbmem(word), value);
        }
    }

    fn vf_reset(&self, vf: u16) -> MailboxIrq {
        let now = self.clock.now_ns();
        let mut g = self.lock();
        let Some(m) = g.mailboxes.get_mut(usize::from(vf)) else {
            return MailboxIrq::None;
        };
        let events = m.vf_reset();
        if m.peek_v2p() & vfmailbox::RSTI == 0 {
            // The PF is up: the VF's reset is done at once (RSTD, read-to-clear).
            m.pf_reset_done();
        } else {
            debug!(vf, "VF reset while the PF is in reset: RSTI stays");
        }
        irq_from(Self::serve(&mut g, usize::from(vf), events, now))
    }

    fn tx_admit(&self, _vf: u16, _frame_len: usize) -> Result<(), NextSendAt> {
        Ok(())
    }

    fn tx_gate(&self, _vf: u16) -> TxGate {
        TxGate::OPEN
    }
}
