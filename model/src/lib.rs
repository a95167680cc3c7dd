//! The device model of sriov-emu, in three layers:
//!
//! - [`function`] — the device layer: one PCI function's config space, registers, rings,
//!   descriptors, interrupts and offloads, single-threaded and lock-free; shared descriptor,
//!   offload and counter code, and one module per card ([`function::i82576`]; the 82599 VF
//!   in [`function::x82599`]); the runtime hosts either card's VFs ([`function::card_vf`]).
//! - [`seams`] — the traits where the layers and the edges meet (the PF as a VF sees it,
//!   interrupt sinks, the clock, port sinks, the observer of switched frames).
//! - [`nic`] — the runtime: the NIC as it runs, the one datapath (TX → shaper → switch → RX
//!   rings, bounded backlogs), the shaping timer, the PF side the emulator plays, and the
//!   locking. `serve`, the scenario runner and the tests all drive a [`nic::Nic`].
//!
//! With the `soft-igbvf` feature, `testing` adds an in-process igbvf and ixgbevf that drive a
//! VF's registers and rings as Linux's drivers do, for scenarios and tests.

pub mod function;
pub mod nic;
pub mod seams;
#[cfg(feature = "soft-igbvf")]
pub mod testing;

pub use function::card_vf::CardVf;
pub use function::i82576::{RingState, Vf, VfState};
pub use function::stats::{AccessError, RxDrop, TxError, VfStats};
pub use function::{BusLayout, Function, GuestMem, GuestRam, LinkStatus, RamRegion};
pub use nic::{Card, Nic, NicConfig, VfHandle};
pub use seams::{Clock, IrqSink, ManualClock, MonotonicClock, Observer, PortSink, Switched};
