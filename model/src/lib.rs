//! The Intel 82576 device model. So far: the PCI configuration-space layouts of its PF and VFs
//! (spec §1, `config`), the TX offload engine (`offload`), the PF side the emulator plays
//! (`pf`), and the VF function (`vf`: BAR0 registers in `regs`, interrupts in `intr`, RX/TX
//! rings in `rx`/`tx` over the descriptors of `desc`, counters in `stats`), with `testing`'s
//! in-process igbvf to drive it. The PF's own register file follows.

pub mod config;
pub mod desc;
pub mod intr;
pub mod nic;
pub mod offload;
pub mod pf;
pub mod regs;
pub mod rx;
pub mod rxcsum;
pub mod stats;
pub mod testing;
pub mod tx;
pub mod vf;

pub use intr::{Cause, IrqSink};
pub use stats::{AccessError, RxDrop, TxError, VfStats};
pub use tx::{TxOffload, TxRequest, TxRun, TxSink, TxVerdict};
pub use vf::{GuestMem, LinkState, MailboxIrq, PfPort, RingState, Vf, VfInfo, VfShared, VfState};
