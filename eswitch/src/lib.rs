//! The embedded switch of an SR-IOV NIC (legacy/VEB mode). Pure: no I/O, time passed in.

pub mod policy;

pub use policy::{LinkState, MacAddr, PortVlan, VfPolicy, DEFAULT_MAX_FRAME};
