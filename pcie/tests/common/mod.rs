//! The Intel 82576 layouts (spec §1.1–1.4), built only from the public builder API
//! so the device model can make the same calls.

#![allow(dead_code)]

use pcie::regs::pm;
use pcie::{
    Aer, Ari, Bar, BuildError, ConfigSpace, Header, LinkSpeed, Msi, Msix, MsixRegion, PciExpress,
    PowerManagement, Sriov,
};

pub const KIB: u64 = 1024;

/// PCIe: 2.5 GT/s x4, FLR, programmable completion timeout (igb writes DevCtl2).
pub const PCIE_82576: PciExpress = PciExpress::endpoint()
    .with_flr()
    .with_link(LinkSpeed::Gt2_5, 4)
    .with_completion_timeout(0xF, true);

/// MSI-X in BAR3: table at 0, PBA at 0x2000.
pub const fn msix_82576(vectors: u16) -> Msix {
    Msix::new(vectors, MsixRegion::new(3, 0), MsixRegion::new(3, 0x2000))
}

/// The PF (function 0): spec §1.1–1.3.
pub fn pf_82576() -> Result<ConfigSpace, BuildError> {
    let mut pf = ConfigSpace::new(&Header {
        vendor_id: 0x8086,
        device_id: 0x10C9,
        revision_id: 0x01,
        class_code: 0x02_0000,
        multi_function: true,
        interrupt_pin: 1,
        cache_line_size: 0x10,
        ..Header::default()
    });
    pf.set_bar(0, Bar::mem32(128 * KIB))?;
    pf.set_bar(1, Bar::mem32(128 * KIB))?;
    pf.set_bar(2, Bar::io(32))?;
    pf.set_bar(3, Bar::mem64(16 * KIB))?;
    pf.add_capability(
        0x40,
        &PowerManagement {
            pme_support: pm::PMC_PME_D0 | pm::PMC_PME_D3HOT | pm::PMC_PME_D3COLD,
            ..PowerManagement::default()
        },
    )?;
    pf.add_capability(
        0x50,
        &Msi {
            vectors: 1,
            address_64: true,
            per_vector_mask: true,
        },
    )?;
    pf.add_capability(0x70, &msix_82576(10))?;
    pf.add_capability(0xA0, &PCIE_82576)?;
    pf.add_ext_capability(0x100, &Aer::new())?;
    pf.add_ext_capability(0x150, &Ari::new(0))?;
    pf.add_ext_capability(
        0x160,
        &Sriov::new(8, 0x10CA)
            .with_routing(0x80, 2)
            .with_vf_bar(0, Bar::mem64(16 * KIB).prefetchable())
            .with_vf_bar(3, Bar::mem64(16 * KIB).prefetchable()),
    )?;
    Ok(pf)
}

/// A VF as our vfio-user server presents it: spec §1.4, with vendor/device
/// 8086:10CA instead of FFFF:FFFF.
pub fn vf_82576(pf: &ConfigSpace) -> Result<ConfigSpace, BuildError> {
    let mut vf = pf.vf_config_space()?;
    vf.add_capability(0x70, &msix_82576(3))?;
    vf.add_capability(0xA0, &PCIE_82576)?;
    vf.add_ext_capability(0x100, &Aer::new())?;
    vf.add_ext_capability(0x150, &Ari::new(0))?;
    Ok(vf)
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
