//! sriov-emu: a software SR-IOV NIC (Intel 82576 personality) whose functions are served to
//! QEMU guests over vfio-user. The pure device logic lives in the workspace crates (`pcie`,
//! `mailbox`, `eswitch`); this package holds the I/O edges: the vfio-user server and the CLI.

pub mod adapter;
pub mod capture;
pub mod control;
pub mod serve;
pub mod signals;
pub mod vfio;
