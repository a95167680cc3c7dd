//! Booting QEMU guests: stock QEMU 11.1 (TCG unless `SRIOV_EMU_KVM=1`) with a Debian bookworm
//! kernel and a busybox initramfs, fetched by `scripts/fetch-e2e.py` into `target/e2e/`; a shell
//! script run in the guest, results parsed from the serial console. The end-to-end tests
//! (`sriov-emu-tests`, which re-exports this module) and the scenario runner's guest mode
//! ([`crate::guests`]) boot their guests through it.
//!
//! Guest scripts are busybox `sh`, sourced by `/init` after the helpers of
//! `tests/guest/helpers.sh` (`result`, `check`, `check_fails`, `check_eq`, `value`,
//! `wait_for`).

pub mod artifacts;
pub mod cpio;
pub mod custom;
pub mod guest;
pub mod hugepages;
pub mod kernel;
pub mod results;

pub use artifacts::{workspace_root, Artifacts, HarnessError, FETCH_SCRIPT};
pub use custom::{BroughtModule, BuildError, GuestBuild, GuestFile, PreparedBuild};
pub use guest::{kvm_requested, Guest, GuestConfig, GuestOutput, RunningGuest, KVM_ENV};
pub use results::{parse_console, GuestResult, ParsedConsole, Status};
