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
//!
//! No I/O, no threads, no clocks.
//!
//! ```
//! use pcie::{Aer, Ari, Bar, ConfigEvent, ConfigSpace, Header, Msix, MsixRegion, PciExpress, Sriov};
//! use pcie::regs::sriov;
//!
//! # fn main() -> Result<(), pcie::BuildError> {
//! let mut pf = ConfigSpace::new(&Header {
//!     vendor_id: 0x8086,
//!     device_id: 0x10C9,
//!     class_code: 0x02_0000,
//!     interrupt_pin: 1,
//!     ..Header::default()
//! });
//! pf.set_bar(0, Bar::mem32(128 * 1024))?;
//! pf.add_capability(0x70, &Msix::new(10, MsixRegion::new(3, 0), MsixRegion::new(3, 0x2000)))?;
//! pf.add_capability(0xA0, &PciExpress::endpoint().with_flr())?;
//! pf.add_ext_capability(0x100, &Aer::new())?;
//! pf.add_ext_capability(0x150, &Ari::new(0))?;
//! pf.add_ext_capability(
//!     0x160,
//!     &Sriov::new(8, 0x10CA)
//!         .with_routing(0x80, 2)
//!         .with_vf_bar(0, Bar::mem64(16 * 1024)),
//! )?;
//!
//! // The guest (or the PF agent) asks for 2 VFs and enables them.
//! assert_eq!(pf.write(0x160 + sriov::NUM_VFS, &2u16.to_le_bytes()), [ConfigEvent::SriovNumVfs(2)]);
//! let events = pf.write(0x160 + sriov::CONTROL, &sriov::CONTROL_VF_ENABLE.to_le_bytes());
//! assert_eq!(events, [ConfigEvent::SriovVfEnable { num_vfs: 2 }]);
//!
//! // Each VF's own config space, derived from the PF's SR-IOV capability.
//! let mut vf = pf.vf_config_space()?;
//! vf.add_capability(0x70, &Msix::new(3, MsixRegion::new(3, 0), MsixRegion::new(3, 0x2000)))?;
//! vf.add_capability(0xA0, &PciExpress::endpoint().with_flr())?;
//! assert_eq!(vf.read_u32(0), 0x10CA_8086);
//! # Ok(())
//! # }
//! ```

pub mod bar;
pub mod caps;
pub mod config;
pub mod error;
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
pub use sriov::{Sriov, SriovState, VfBar};
