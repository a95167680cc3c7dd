//! Errors of the config-space builders. Guest accesses never produce errors: they
//! are either applied, partly applied per the write masks, or ignored and logged.

use thiserror::Error;

/// Why a header, BAR or capability could not be laid out.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BuildError {
    /// Capabilities start on a dword boundary (PCI 3.0 §6.7, PCIe §7.6.3).
    #[error("capability offset {offset:#x} is not dword aligned")]
    Misaligned { offset: usize },
    /// The capability does not fit in its area (0x40..0x100 or 0x100..0x1000).
    #[error("capability at {offset:#x} ({size:#x} bytes) does not fit in {start:#x}..{end:#x}")]
    Overflow {
        offset: usize,
        size: usize,
        start: usize,
        end: usize,
    },
    /// The capability would share bytes with one already placed.
    #[error("capability at {offset:#x} ({size:#x} bytes) overlaps the capability at {other:#x}")]
    Overlap {
        offset: usize,
        size: usize,
        other: usize,
    },
    /// The extended capability chain must start at 0x100.
    #[error("the first extended capability must be at 0x100, not {offset:#x}")]
    FirstExtendedNotAtStart { offset: usize },
    /// A capability whose registers this crate interprets may appear only once.
    #[error("a {name} capability is already present at {offset:#x}")]
    Duplicate { name: &'static str, offset: usize },
    /// A BAR (or SR-IOV VF BAR) that cannot be encoded.
    #[error("BAR {index}: {reason}")]
    InvalidBar { index: usize, reason: &'static str },
    /// The expansion ROM size is not a power of two of at least 2 KiB.
    #[error("expansion ROM size {size:#x} is not a power of two of at least 2 KiB")]
    InvalidRom { size: u64 },
    /// A capability's parameters are outside what its registers can express.
    #[error("{name} capability: {reason}")]
    InvalidCapability {
        name: &'static str,
        reason: &'static str,
    },
    /// A VF config space was asked of a function without an SR-IOV capability.
    #[error("the physical function has no SR-IOV capability")]
    NoSriov,
}
