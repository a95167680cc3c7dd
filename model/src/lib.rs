//! The Intel 82576 device model. So far: the PCI configuration-space layouts of its PF and VFs
//! (spec §1), built with the `pcie` crate's builders. The register files, rings and DMA follow.

pub mod config;
pub mod desc;
pub mod intr;
pub mod regs;
pub mod rx;
pub mod rxcsum;
pub mod stats;
pub mod testing;
pub mod tx;
pub mod vf;
pub mod offload;
pub mod pf;

pub use intr::{Cause, IrqSink};
pub use stats::{AccessError, RxDrop, TxError, VfStats};
pub use tx::{TxOffload, TxRequest, TxRun, TxSink, TxVerdict};
pub use vf::{GuestMem, LinkState, MailboxIrq, PfPort, RingState, Vf, VfInfo, VfShared, VfState};
