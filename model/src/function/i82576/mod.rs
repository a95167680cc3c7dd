//! The Intel 82576 (igb / igbvf): its configuration spaces ([`config`]), RX and TX queues
//! ([`rx`], [`tx`]: the 82576's queue registers over the shared TX engine) and the VF's
//! interrupt registers ([`intr`], over the shared vector bank); the VF's register map
//! ([`regs`]) and the VF function ([`vf`]); the PF's register map ([`pf_regs`]), NVM
//! ([`nvm`]), PHY ([`phy`]), interrupts ([`pf_intr`]), receive filters ([`pf_filter`]),
//! statistics ([`pf_stats`]), the VF-management registers a guest's igb drives ([`pf_vmm`]) and
//! the PF function ([`pf`]).

pub mod config;
pub mod intr;
pub mod nvm;
pub mod pf;
pub mod pf_filter;
pub mod pf_intr;
pub mod pf_regs;
pub mod pf_stats;
pub mod pf_vmm;
pub mod phy;
pub mod regs;
pub mod rx;
pub mod tx;
pub mod vf;

pub use pf::Pf;
pub use vf::{RingState, Vf, VfState};
