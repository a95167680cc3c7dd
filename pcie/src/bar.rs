//! Base Address Registers: kinds, sizes and their register encoding.
//!
//! Sizing needs no special code: a BAR's address bits below its size are read-only
//! zero, so writing all ones and reading back yields the size mask (PCI 3.0 §6.2.5.1).
//! This module computes the hardware-initialised value and the write mask of each
//! BAR register; [`crate::ConfigSpace`] applies them like any other register.

use crate::error::BuildError;
use crate::regs::bar;

/// What a BAR decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    /// 32-bit memory BAR.
    Memory32,
    /// 64-bit memory BAR: occupies this register and the next one.
    Memory64,
    /// I/O space BAR.
    Io,
}

/// One BAR: its kind, size in bytes, and (memory only) prefetchability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bar {
    pub kind: BarKind,
    pub size: u64,
    pub prefetchable: bool,
}

/// Smallest memory BAR (PCI 3.0 §6.2.5.1: 16 bytes).
const MIN_MEMORY_SIZE: u64 = 16;
/// Smallest I/O BAR.
const MIN_IO_SIZE: u64 = 4;
/// Largest I/O BAR (PCI 3.0 §6.2.5.1: 256 bytes).
const MAX_IO_SIZE: u64 = 256;
/// Largest 32-bit memory BAR: bit 31 must remain an address bit.
const MAX_MEMORY32_SIZE: u64 = 1 << 31;

impl Bar {
    /// A 32-bit, non-prefetchable memory BAR.
    pub const fn mem32(size: u64) -> Self {
        Bar {
            kind: BarKind::Memory32,
            size,
            prefetchable: false,
        }
    }

    /// A 64-bit, non-prefetchable memory BAR.
    pub const fn mem64(size: u64) -> Self {
        Bar {
            kind: BarKind::Memory64,
            size,
            prefetchable: false,
        }
    }

    /// An I/O BAR.
    pub const fn io(size: u64) -> Self {
        Bar {
            kind: BarKind::Io,
            size,
            prefetchable: false,
        }
    }

    /// The same memory BAR, marked prefetchable.
    pub const fn prefetchable(self) -> Self {
        Bar {
            prefetchable: true,
            ..self
        }
    }

    /// Number of BAR registers used (2 for a 64-bit BAR).
    pub const fn registers(&self) -> usize {
        match self.kind {
            BarKind::Memory64 => 2,
            BarKind::Memory32 | BarKind::Io => 1,
        }
    }

    /// Checks that this BAR can be encoded at register `index`.
    pub fn validate(&self, index: usize) -> Result<(), BuildError> {
        let fail = |reason| Err(BuildError::InvalidBar { index, reason });
        if index + self.registers() > crate::regs::header::BAR_COUNT {
            return fail("does not fit in the six BAR registers");
        }
        if !self.size.is_power_of_two() {
            return fail("size is not a power of two");
        }
        match self.kind {
            BarKind::Io if self.prefetchable => fail("an I/O BAR cannot be prefetchable"),
            BarKind::Io if !(MIN_IO_SIZE..=MAX_IO_SIZE).contains(&self.size) => {
                fail("I/O BAR size must be 4..=256 bytes")
            }
            BarKind::Memory32 if !(MIN_MEMORY_SIZE..=MAX_MEMORY32_SIZE).contains(&self.size) => {
                fail("32-bit memory BAR size must be 16 bytes..=2 GiB")
            }
            BarKind::Memory64 if self.size < MIN_MEMORY_SIZE || self.size > 1 << 63 => {
                fail("64-bit memory BAR size must be 16 bytes..=2^63")
            }
            _ => Ok(()),
        }
    }

    /// The read-only type bits of the (low) register.
    pub const fn type_bits(&self) -> u32 {
        let prefetch = if self.prefetchable {
            bar::MEM_PREFETCHABLE
        } else {
            0
        };
        match self.kind {
            BarKind::Io => bar::IO_SPACE,
            BarKind::Memory32 => prefetch,
            BarKind::Memory64 => bar::MEM_TYPE_64 | prefetch,
        }
    }

    /// Write masks of the low and (64-bit only) high register: the address bits at
    /// and above the size.
    pub const fn write_masks(&self) -> (u32, u32) {
        let address = !(self.size.wrapping_sub(1));
        match self.kind {
            BarKind::Io => (address as u32 & bar::IO_ADDRESS_MASK, 0),
            BarKind::Memory32 => (address as u32 & bar::MEM_ADDRESS_MASK, 0),
            BarKind::Memory64 => (
                address as u32 & bar::MEM_ADDRESS_MASK,
                (address >> 32) as u32,
            ),
        }
    }

    /// The address a BAR of this kind decodes, from its register values.
    pub const fn address(&self, low: u32, high: u32) -> u64 {
        match self.kind {
            BarKind::Io => (low & bar::IO_ADDRESS_MASK) as u64,
            BarKind::Memory32 => (low & bar::MEM_ADDRESS_MASK) as u64,
            BarKind::Memory64 => ((high as u64) << 32) | (low & bar::MEM_ADDRESS_MASK) as u64,
        }
    }
}

/// The size a driver computes from the value read back after writing all ones:
/// clear the type bits, invert, add one. `high` is the upper register of a 64-bit
/// BAR (ignored otherwise). Returns 0 for an unimplemented BAR.
pub fn size_from_readback(low: u32, high: u32) -> u64 {
    if low & bar::IO_SPACE != 0 {
        let mask = low & bar::IO_ADDRESS_MASK;
        return if mask == 0 {
            0
        } else {
            u64::from((!mask).wrapping_add(1))
        };
    }
    let low_mask = u64::from(low & bar::MEM_ADDRESS_MASK);
    let mask = if low & bar::MEM_TYPE_MASK == bar::MEM_TYPE_64 {
        (u64::from(high) << 32) | low_mask
    } else if low_mask == 0 {
        return 0;
    } else {
        low_mask | 0xFFFF_FFFF_0000_0000
    };
    (!mask).wrapping_add(1)
}
