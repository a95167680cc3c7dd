//! sriov-emu: a software SR-IOV NIC (Intel 82576 personality) whose functions are served to
//! QEMU guests over vfio-user. The device logic lives in the workspace crates (`pcie`,
//! `mailbox`, `eswitch`, `model`, `scenarios`); this package holds the I/O edges: the vfio-user
//! server and its adapter, the uplink backends (TAP, QEMU's stream and dgram netdevs), the
//! control socket, pcap files, and the CLI.

pub mod adapter;
pub mod capture;
pub mod check_driver;
pub mod control;
pub mod pcap;
pub mod qemu_caps;
pub mod scenario_cmd;
pub mod serve;
pub mod signals;
pub mod uplink;
pub mod vfio;
