//! The Intel 82576 device model. So far: the PCI configuration-space layouts of its PF and VFs
//! (spec §1), built with the `pcie` crate's builders. The register files, rings and DMA follow.

pub mod config;
pub mod offload;
pub mod pf;
