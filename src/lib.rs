//! sriov-emu: a software SR-IOV NIC (an Intel 82576; an 82599's VFs the second card) whose
//! functions are served to QEMU guests over vfio-user. The device logic lives in the workspace
//! crates (`pcie`, `mailbox`, `eswitch`, `model`, `scenarios`); this package holds the I/O
//! edges: the vfio-user server and its adapter, the uplink backends (TAP, QEMU's stream and
//! dgram netdevs), the control socket, pcap files, and the CLI.

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

/// Creates `dir` and its parents. Where a file is in the way, says so ("exists and is not a
/// directory"), not `create_dir_all`'s "File exists"; callers name the path.
pub(crate) fn create_dir(dir: &std::path::Path) -> std::io::Result<()> {
    match std::fs::create_dir_all(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(std::io::Error::new(
            std::io::ErrorKind::NotADirectory,
            "exists and is not a directory",
        )),
        r => r,
    }
}
