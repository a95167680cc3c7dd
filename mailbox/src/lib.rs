//! PF/VF mailboxes and the PF agents that answer VFs, per driver family:
//!
//! - igb (82576): the crate root ([`PfAgent`], [`Message`], [`regs`]), also reachable as
//!   [`igb`];
//! - ixgbe (82599): [`ixgbe`] ([`ixgbe::IxgbeAgent`], [`ixgbe::IxgbeMessage`],
//!   [`ixgbe::regs`]).
//!
//! Both share the per-VF register state machine ([`VfMailbox`]; the two parts' mailbox control
//! registers are alike bit for bit) and the outcome types ([`AgentOutcome`], [`PolicyChange`],
//! [`RefusalReason`]).
//!
//! The 82576 PF/VF mailbox and the PF agent that answers VFs: the protocol of Linux igb's
//! `e1000_mbx.c` and `igb_rcv_msg_from_vf` and of igbvf's `mbx.c` and `vf.c`, with the register
//! behaviour of QEMU's `igb_set_pfmailbox` / `igb_set_vfmailbox` (`hw/net/igb_core.c`).
//!
//! - [`VfMailbox`]: one VF's mailbox as hardware: the 16-word buffer, V2PMAILBOX (VF side) and
//!   P2VMAILBOX (PF side) with their read-to-clear and write semantics, buffer ownership, and
//!   the [`MailboxEvent`]s an access raises. The device model maps registers onto it.
//! - [`Message`] / [`MailboxMsg`]: the typed messages with `parse` / `emit`.
//! - [`PfAgent`]: igb's decisions for each VF request, returned as [`AgentOutcome`]s carrying
//!   the reply, the [`PolicyChange`] for the eswitch, and any [`Refusal`].
//!
//! Driving it from a VF's BAR0 (one `VfMailbox` per VF, one `PfAgent` per PF):
//! ```
//! use mailbox::{regs::v2p, AgentConfig, MailboxEvent, PfAgent, VfMailbox};
//! use eswitch::VfPolicy;
//!
//! let mut agent = PfAgent::new(AgentConfig::new(2)).unwrap();
//! let mut mbx = VfMailbox::new();
//! let mut policy = VfPolicy::default();
//! // igbvf: lock, write VF_RESET, post it.
//! mbx.write_v2p(v2p::VFU);
//! mbx.write_vmbmem(0, 0x0000_0001);
//! let ev = mbx.write_v2p(v2p::REQ);
//! if ev.contains(MailboxEvent::RequestPosted) {
//!     let report = agent.service(0, &mut mbx, &policy, 0);
//!     for change in report.policy_changes() {
//!         change.apply(&mut policy);
//!     }
//!     assert!(report.events.contains(MailboxEvent::InterruptVf));
//! }
//! assert_eq!(mbx.read_v2p() & (v2p::PFACK | v2p::PFSTS), v2p::PFACK | v2p::PFSTS);
//! ```
//!
//! Wiring in the VF device model (VF n):
//! - V2PMAILBOX (0x0C40) read → `mbx.read_v2p()`; write → `mbx.write_v2p(v)`. If the returned
//!   events contain [`MailboxEvent::InterruptPf`], call `agent.service(n, &mut mbx, &policy,
//!   now_ns)` (right away, or as the next step; both work because PFACK/PFSTS are sticky until
//!   the VF reads them and igbvf caches them). Apply every `policy_change` in the report to the
//!   VF's `VfPolicy` before the next `service`, and fire the VF's mailbox MSI-X vector
//!   (VTIVAR_MISC) if `report.events` contains [`MailboxEvent::InterruptVf`].
//! - VMBMEM (0x0800..0x083F) → `read_vmbmem(word)` / `write_vmbmem(word, v)`, word = offset/4.
//! - VTCTRL.RST → `mbx.vf_reset()` (also clear the VF's queue enables), then `service`.
//!   A [`PolicyChange::Reset`] with `rx_tx_enabled: false` follows; `true` comes with the
//!   VF_RESET reply (VFRE/VFTE set).
//! - PF link change → `agent.ping_all(..)`; PF reset → `mbx.pf_reset_start()` on every VF and
//!   `agent.pf_reset()`, then `mbx.pf_reset_done()` (CTRL_EXT.PFRSTD).
//! - `InterruptPf` is for whoever plays the VFs' PF driver: the PF agent, or, when a guest's igb
//!   manages the VFs, that guest (the device model raises ICR.VMMB on its PF function, and its
//!   P2VMAILBOX/VMBMEM/MBVFICR/VFLRE accesses go to the PF-side methods of [`VfMailbox`]).
//!
//! Pure: no I/O, no threads, no clock (time is passed in as nanoseconds).

pub mod agent;
pub mod config;
pub mod ixgbe;
pub mod mailbox;
pub mod message;
pub mod outcome;
pub mod regs;

pub use agent::PfAgent;
pub use config::{
    AgentConfig, ConfigError, HwLimits, MacAssignment, PromiscPolicy, UnknownPromiscPolicy,
};
pub use mailbox::{MailboxEvent, MailboxEvents, MailboxStats, Owner, VfMailbox};
pub use message::{MacFilterOp, MailboxMsg, Message, MsgFlags, ParseError, PromiscFlags};
pub use outcome::{
    AgentOutcome, PolicyChange, Refusal, RefusalCounters, RefusalReason, Reply, ResetChange,
    ServiceReport, Trigger, VfCounters,
};

/// The igb (82576) family under its own name, beside [`ixgbe`]; the same items as the crate
/// root.
pub mod igb {
    pub use crate::agent::PfAgent;
    pub use crate::config::{AgentConfig, HwLimits, MacAssignment, PromiscPolicy};
    pub use crate::message::{MacFilterOp, MailboxMsg, Message, PromiscFlags};
    pub use crate::regs;
}
