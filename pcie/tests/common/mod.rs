//! The Intel 82576 layouts (QEMU's `igb_pci_realize` / `igbvf_pci_realize`, as Linux
//! `igb_probe` / `igbvf_probe` read them): the device model builds them from this crate's
//! public builder API, and these tests check the bytes a driver reads.

#![allow(dead_code)]

use pcie::{BuildError, ConfigSpace};

pub const KIB: u64 = 1024;

/// The PF (function 0), QEMU's `igb_pci_realize` layout, as the device model lays it out with
/// this crate's builders.
pub fn pf_82576() -> Result<ConfigSpace, BuildError> {
    model::function::i82576::config::pf_config_space()
}

/// A VF as our vfio-user server presents it: QEMU's `igbvf_pci_realize` layout, with
/// vendor/device 8086:10CA instead of FFFF:FFFF (what a VF's own ID registers read under SR-IOV,
/// and what QEMU's `hw/pci/pcie_sriov.c` gives them).
pub fn vf_82576(pf: &ConfigSpace) -> Result<ConfigSpace, BuildError> {
    model::function::i82576::config::vf_config_space(pf)
}

/// Standard capability chain as a driver walks it: (offset, id) pairs.
pub fn cap_chain(space: &ConfigSpace) -> Vec<(usize, u8)> {
    let mut chain = Vec::new();
    let mut next = usize::from(space.read_u8(pcie::regs::header::CAPABILITIES_POINTER));
    while next != 0 && chain.len() < 48 {
        chain.push((next, space.read_u8(next)));
        next = usize::from(space.read_u8(next + 1));
    }
    chain
}

/// Extended capability chain: (offset, id, version) triples.
pub fn ext_cap_chain(space: &ConfigSpace) -> Vec<(usize, u16, u8)> {
    let mut chain = Vec::new();
    let mut next = pcie::regs::EXT_CAP_START;
    while next != 0 && chain.len() < 960 {
        let head = space.read_u32(next);
        if head == 0 {
            break;
        }
        chain.push((next, head as u16, ((head >> 16) & 0xF) as u8));
        next = (head >> 20) as usize;
    }
    chain
}

/// A 32-bit guest write.
pub fn write32(space: &mut ConfigSpace, offset: usize, value: u32) -> pcie::ConfigEvents {
    space.write(offset, &value.to_le_bytes())
}

/// A 16-bit guest write.
pub fn write16(space: &mut ConfigSpace, offset: usize, value: u16) -> pcie::ConfigEvents {
    space.write(offset, &value.to_le_bytes())
}
