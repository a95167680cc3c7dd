//! PCI Express configuration space for emulated functions: NIC-agnostic.
//!
//! - [`ConfigSpace`]: 4 KiB of registers with per-bit read-only / read-write /
//!   write-1-to-clear semantics, guest [`read`](ConfigSpace::read) and
//!   [`write`](ConfigSpace::write) that never panic, and the state changes the
//!   owner must act on as [`ConfigEvent`]s.
//! - BARs ([`Bar`]) with working size masks, the expansion ROM BAR.
//! - Capability builders laid out with [`ConfigSpace::add_capability`] /
//!   [`ConfigSpace::add_ext_capability`]: [`PowerManagement`], [`Msi`], [`Msix`],
//!   [`PciExpress`], [`Aer`], [`Ari`], [`Sriov`].
//! - [`SriovState`] and [`ConfigSpace::new_vf`]: a VF's config space derived from
//!   its PF's SR-IOV capability.
//! - [`MsixPba`]: the MSI-X Pending Bit Array.
//!
//! No I/O, no threads, no clocks.

pub mod bar;
pub mod caps;
pub mod config;
pub mod error;
pub mod msix;
pub mod regs;
pub mod sriov;

pub use bar::{Bar, BarKind};
pub use caps::{
    Aer, Ari, DeviceType, LinkSpeed, Msi, Msix, MsixRegion, PciExpress, PowerManagement,
};
pub use config::{
    CapRegs, Capability, ConfigEvent, ConfigEvents, ConfigSpace, ExtCapability, Header, PowerState,
};
pub use error::BuildError;
pub use msix::MsixPba;
pub use sriov::{Sriov, SriovState, VfBar};
