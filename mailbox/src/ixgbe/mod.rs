//! The 82599 (ixgbe / ixgbevf) driver family: the 82599's mailbox registers by offset, its
//! typed messages and API versions.
//!
//! The per-VF register state machine is the crate's [`crate::VfMailbox`]: VFMAILBOX and
//! PFMAILBOX(v) behave as the 82576's V2PMAILBOX and P2VMAILBOX(n) (same bits, read-to-clear
//! set and lock rules). The outcome types ([`crate::AgentOutcome`], [`crate::PolicyChange`],
//! [`crate::RefusalReason`]) are shared with igb, parameterised by [`IxgbeMessage`].
//!
pub mod bar;
pub mod message;
pub mod regs;

pub use bar::{vf_read, vf_write, PfMailboxes, PfRegister, VfRegister};
pub use message::{ApiVersion, IxgbeMessage, IxgbeMsg, McFilterType, SaRequest, XcastMode};
