//! The 82576 PF/VF mailbox and the PF agent that answers VFs (spec §3–§5).
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
//! Pure: no I/O, no threads, no clock (time is passed in as nanoseconds).

pub mod agent;
pub mod mailbox;
pub mod message;
pub mod regs;

pub use agent::{
    AgentConfig, AgentOutcome, ConfigError, HwLimits, MacAssignment, PfAgent, PolicyChange,
    PromiscPolicy, Refusal, RefusalCounters, RefusalReason, Reply, ResetChange, ServiceReport,
    Trigger, VfCounters,
};
pub use mailbox::{MailboxEvent, MailboxEvents, MailboxStats, Owner, VfMailbox};
pub use message::{MacFilterOp, MailboxMsg, Message, MsgFlags, ParseError, PromiscFlags};
