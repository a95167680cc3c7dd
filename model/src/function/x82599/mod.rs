//! The Intel 82599 VF (8086:10ED, Linux ixgbevf): its configuration space ([`config`]), its
//! BAR0 register map ([`regs`]), the interrupt registers over the shared vector bank
//! ([`intr`]), RX queues with their one-buffer engine ([`rx`]), TX queue registers over the
//! shared TX engine ([`tx`]), the VF function ([`vf`]), and a PF side answering its mailbox
//! with ixgbe's decisions for tests and study without the NIC runtime ([`pf_side`]).
//!
//! The mailbox registers and the PF agent are `mailbox::ixgbe`'s; the descriptors, offload
//! engine, RX checksum status, counters and DMA faults are the ones the 82576 uses
//! ([`crate::function`]).

pub mod config;
pub mod intr;
pub mod pf_side;
pub mod regs;
pub mod rss;
pub mod rx;
pub mod tx;
pub mod vf;

pub use pf_side::IxgbePfSide;
pub use vf::Vf;
