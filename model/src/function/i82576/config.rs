//! The 82576's configuration space: the PF (as QEMU's `igb_pci_realize` lays it out and Linux
//! `igb_probe` reads it) and a VF as our vfio-user server presents it to a guest (QEMU's
//! `igbvf_pci_realize`; Linux `igbvf_probe`).

use pcie::regs::pm;
use pcie::{
    Aer, Ari, Bar, BuildError, ConfigSpace, Header, LinkSpeed, Msi, Msix, MsixRegion, PciExpress,
    PowerManagement, Sriov,
};

pub const VENDOR_INTEL: u16 = 0x8086;
pub const PF_DEVICE_ID: u16 = 0x10C9;
pub const VF_DEVICE_ID: u16 = 0x10CA;
/// Pools are 8, one is the PF's; Linux's igb enables at most 7 VFs but TotalVFs reads 8.
pub const TOTAL_VFS: u16 = 8;
/// First VF Offset / VF Stride (VF n RID = PF RID + 0x80 + 2n).
pub const VF_OFFSET: u16 = 0x80;
pub const VF_STRIDE: u16 = 2;
/// MSI-X vectors: igb needs up to 10; igbvf demands exactly 3.
pub const PF_MSIX_VECTORS: u16 = 10;
pub const VF_MSIX_VECTORS: u16 = 3;

const KIB: u64 = 1024;
/// BAR0: all CSRs (PF 128 KiB, VF 16 KiB); BAR3: MSI-X table and PBA (16 KiB).
pub const PF_BAR0_SIZE: u64 = 128 * KIB;
pub const VF_BAR0_SIZE: u64 = 16 * KIB;
pub const MSIX_BAR_SIZE: u64 = 16 * KIB;
/// MSI-X table at offset 0 of BAR3, PBA at 0x2000.
pub const MSIX_BAR: u8 = 3;
pub const MSIX_PBA_OFFSET: u32 = 0x2000;

/// PCIe: 2.5 GT/s x4, FLR, programmable completion timeout (igb writes DevCtl2).
const PCIE: PciExpress = PciExpress::endpoint()
    .with_flr()
    .with_link(LinkSpeed::Gt2_5, 4)
    .with_completion_timeout(0xF, true);

const fn msix(vectors: u16) -> Msix {
    Msix::new(
        vectors,
        MsixRegion::new(MSIX_BAR, 0),
        MsixRegion::new(MSIX_BAR, MSIX_PBA_OFFSET),
    )
}

/// The PF, function 0: 8086:10C9 with PM, MSI, MSI-X, PCIe, AER, ARI and SR-IOV.
pub fn pf_config_space() -> Result<ConfigSpace, BuildError> {
    let mut pf = ConfigSpace::new(&Header {
        vendor_id: VENDOR_INTEL,
        device_id: PF_DEVICE_ID,
        revision_id: 0x01,
        class_code: 0x02_0000,
        multi_function: true,
        interrupt_pin: 1,
        cache_line_size: 0x10,
        ..Header::default()
    });
    pf.set_bar(0, Bar::mem32(PF_BAR0_SIZE))?;
    pf.set_bar(1, Bar::mem32(128 * KIB))?; // flash window, unused by igb
    pf.set_bar(2, Bar::io(32))?; // IOADDR/IODATA
    pf.set_bar(3, Bar::mem64(MSIX_BAR_SIZE))?;
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
    pf.add_capability(0x70, &msix(PF_MSIX_VECTORS))?;
    pf.add_capability(0xA0, &PCIE)?;
    pf.add_ext_capability(0x100, &Aer::new())?;
    pf.add_ext_capability(0x150, &Ari::new(0))?;
    pf.add_ext_capability(
        0x160,
        &Sriov::new(TOTAL_VFS, VF_DEVICE_ID)
            .with_routing(VF_OFFSET, VF_STRIDE)
            .with_vf_bar(0, Bar::mem64(VF_BAR0_SIZE).prefetchable())
            .with_vf_bar(3, Bar::mem64(MSIX_BAR_SIZE).prefetchable()),
    )?;
    Ok(pf)
}

/// A VF as a VMM presents it: 8086:10CA (not the FFFF:FFFF of bare SR-IOV, since QEMU does not
/// emulate those bits), its own 64-bit BAR0/BAR3, MSI-X with 3 vectors, PCIe with FLR, AER,
/// ARI, Interrupt Pin 0.
pub fn vf_config_space(pf: &ConfigSpace) -> Result<ConfigSpace, BuildError> {
    let mut vf = pf.vf_config_space()?;
    vf.add_capability(0x70, &msix(VF_MSIX_VECTORS))?;
    vf.add_capability(0xA0, &PCIE)?;
    vf.add_ext_capability(0x100, &Aer::new())?;
    vf.add_ext_capability(0x150, &Ari::new(0))?;
    Ok(vf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcie::regs::header;

    #[test]
    fn vf_reads_as_an_82576_vf_with_three_msix_vectors_and_no_intx() {
        let pf = pf_config_space().unwrap();
        let vf = vf_config_space(&pf).unwrap();
        assert_eq!(vf.read_u16(header::VENDOR_ID), 0x8086);
        assert_eq!(vf.read_u16(header::DEVICE_ID), 0x10CA);
        assert_eq!(vf.read_u8(header::INTERRUPT_PIN), 0);
        assert_eq!(vf.read_u8(header::CAPABILITIES_POINTER), 0x70);
        // MSI-X Message Control: Table Size = vectors - 1.
        assert_eq!(vf.read_u16(0x72) & 0x7FF, VF_MSIX_VECTORS - 1);
        // Table in BAR3 at 0, PBA in BAR3 at 0x2000.
        assert_eq!(vf.read_u32(0x74), u32::from(MSIX_BAR));
        assert_eq!(vf.read_u32(0x78), MSIX_PBA_OFFSET | u32::from(MSIX_BAR));
    }

    #[test]
    fn pf_carries_the_sriov_capability_at_0x160() {
        let pf = pf_config_space().unwrap();
        let sriov = pf.sriov().unwrap();
        assert_eq!(pf.ext_capability_offset(0x10), Some(0x160));
        assert_eq!(sriov.total_vfs, TOTAL_VFS);
        assert_eq!(sriov.vf_device_id, VF_DEVICE_ID);
    }
}
