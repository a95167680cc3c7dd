//! The Intel 82576 (igb / igbvf): its configuration spaces ([`config`]), the VF register map
//! ([`regs`]), interrupt logic ([`intr`]), RX and TX queues ([`rx`], [`tx`]) and the VF
//! function that puts them together ([`vf`]).

pub mod config;
pub mod intr;
pub mod mmio;
pub mod regs;
pub mod rx;
pub mod tx;
pub mod vf;

pub use vf::{RingState, Vf, VfState};
