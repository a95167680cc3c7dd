//! Support for sriov-emu's integration and QEMU end-to-end tests.
//!
//! The end-to-end harness boots stock QEMU 11.1 (fetched by
//! `scripts/fetch-e2e.py` into `target/e2e/`) with a Debian bookworm kernel
//! and a busybox initramfs, runs a shell script in the guest and parses the
//! results it prints on the serial console.
//!
//! ```no_run
//! use std::time::Duration;
//! use sriov_emu_tests::{Guest, GuestConfig};
//!
//! let out = Guest::new(
//!     GuestConfig::new("example", "check kernel uname -r\ncheck igbvf modprobe igbvf\n")
//!         .qemu_args(["-device", "pcie-root-port,id=rp0,chassis=1"])
//!         .timeout(Duration::from_secs(60)),
//! )
//! .run()
//! .expect("artifacts present");
//! out.assert_all_passed();
//! println!("{}", out.expect_pass("kernel").detail);
//! ```
//!
//! Guest scripts are busybox `sh`, sourced by `/init` after the helpers of
//! `tests/guest/helpers.sh` (`result`, `check`, `check_fails`, `check_eq`,
//! `value`, `wait_for`).

//! The harness itself lives in the `scenarios` crate (`scenarios::qemu`), whose guest mode
//! boots the same guests; it is re-exported here unchanged.

pub use scenarios::qemu::{artifacts, cpio, guest, results};

pub use artifacts::{workspace_root, Artifacts, HarnessError, FETCH_SCRIPT};
pub use guest::{kvm_requested, Guest, GuestConfig, GuestOutput, RunningGuest, KVM_ENV};
pub use results::{parse_console, GuestResult, ParsedConsole, Status};

/// Builds the guest helper (`sriov-emu-guest-send`, a binary of the `scenarios` crate, which
/// `cargo test -p sriov-emu-tests` does not build) where the guest mode looks for it: next to
/// the test programs' directory, `target/debug/`. Once per test program.
pub fn build_guest_helper() {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let st = std::process::Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "scenarios", "--bin"])
            .arg(scenarios::guest_send::HELPER)
            .current_dir(workspace_root())
            .status()
            .expect("cargo");
        assert!(st.success(), "building the guest helper: {st}");
        scenarios::guest_send::locate().unwrap_or_else(|e| panic!("{e}"));
    });
}
