//! The 82599 (ixgbe / ixgbevf) driver family: the 82599's mailbox registers by offset, its
//! typed messages and API versions, and [`IxgbeAgent`], which answers VFs with the decisions of
//! Linux ixgbe 6.1 (`ixgbe_sriov.c`), as the 6.1 ixgbevf expects them.
//!
//! The per-VF register state machine is the crate's [`crate::VfMailbox`]: VFMAILBOX and
//! PFMAILBOX(v) behave as the 82576's V2PMAILBOX and P2VMAILBOX(n) (same bits, read-to-clear
//! set and lock rules). The outcome types ([`crate::AgentOutcome`], [`crate::PolicyChange`],
//! [`crate::RefusalReason`]) are shared with igb, parameterised by [`IxgbeMessage`].
//!
//! Driving it as the device model would (VF BAR0 → mailbox, then the agent):
//! ```
//! use mailbox::ixgbe::{vf_write, IxgbeAgent, IxgbeConfig, VfRegister};
//! use mailbox::ixgbe::regs::vfmailbox;
//! use mailbox::{MailboxEvent, VfMailbox};
//! use eswitch::VfPolicy;
//!
//! let mut agent = IxgbeAgent::new(IxgbeConfig::new(2)).unwrap();
//! let mut mbx = VfMailbox::new();
//! let mut policy = VfPolicy::default();
//! // ixgbevf: lock, write VF_RESET, post it with REQ alone (which drops VFU).
//! vf_write(&mut mbx, VfRegister::Vfmailbox, vfmailbox::VFU);
//! vf_write(&mut mbx, VfRegister::Vfmbmem(0), 0x0000_0001);
//! let ev = vf_write(&mut mbx, VfRegister::Vfmailbox, vfmailbox::REQ);
//! assert!(ev.contains(MailboxEvent::RequestPosted));
//! let report = agent.service(0, &mut mbx, &policy, 0);
//! for change in report.policy_changes() {
//!     change.apply(&mut policy);
//! }
//! // No admin MAC: NACK with zero MAC bytes, multicast filter type 0, no CTS.
//! assert_eq!(&mbx.words()[..4], &[0x4000_0001, 0, 0, 0]);
//! assert!(agent.is_clear_to_send(0));
//! ```

pub mod agent;
pub mod bar;
pub mod config;
pub mod message;
pub mod regs;

pub use agent::{IxgbeAgent, IxgbeOutcome, IxgbeReport};
pub use bar::{vf_read, vf_write, PfMailboxes, PfRegister, VfRegister};
pub use config::IxgbeConfig;
pub use message::{ApiVersion, IxgbeMessage, IxgbeMsg, McFilterType, SaRequest, XcastMode};
