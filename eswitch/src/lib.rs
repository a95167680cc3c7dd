//! The embedded switch of an SR-IOV NIC (legacy/VEB mode). Pure: no I/O, time passed in.
pub mod counters;
pub mod policy;
pub mod port;
pub mod shaper;
pub mod switch;
pub mod wire;

pub use counters::{DropCounters, DropReason, PortCounters};
pub use policy::{
    LinkState, MacAddr, PfPolicy, PolicyError, PortVlan, VfPolicy, VlanProto, DEFAULT_MAX_FRAME,
};
pub use port::{
    CaptureHook, CaptureRecord, Deliveries, Delivery, Direction, DropRecord, NoSuchPort, PortId,
};
pub use shaper::{NextSendAt, TokenBucket};
pub use switch::{ConfigError, Eswitch, EswitchConfig};
pub use wire::{build_frame, VlanTci};
