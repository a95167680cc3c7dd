//! The 82599 VF's configuration space as our vfio-user server presents it to a guest (Linux
//! `ixgbevf_probe`; what lspci shows of a VF behind the 82599's SR-IOV capability).
//!
//! A VF's config space is derived from its PF's SR-IOV capability (`pcie`'s `new_vf`: identity
//! and VF BARs from the PF, a Command register with only Memory Space and Bus Master
//! writable), so [`sriov_parent`] builds the part of the 82599 PF's config space that a VF
//! comes from; the PF function itself is not modelled.
//!
//! ixgbevf needs: 8086:10ED (`ixgbevf_pci_tbl`, board `board_82599_vf`), BAR0 with all CSRs
//! (`ioremap(pci_resource_start(pdev, 0), pci_resource_len(pdev, 0))`), MSI-X with 2 or 3
//! vectors (`ixgbevf_acquire_msix_vectors`: at least 2, one per queue pair and the mailbox;
//! MSI-X only — "Unable to allocate MSI-X interrupts" fails the probe), a 64-bit DMA mask and
//! nothing else from config space. vfio's reset and ixgbe's VF recovery use FLR.

use pcie::{
    Aer, Ari, Bar, BuildError, ConfigSpace, Header, LinkSpeed, Msix, MsixRegion, PciExpress, Sriov,
};

use super::regs;

pub const VENDOR_INTEL: u16 = 0x8086;
/// The 82599 PF (SFI/SFP+, the X520's).
pub const PF_DEVICE_ID: u16 = 0x10FB;
/// The 82599 VF (`IXGBE_DEV_ID_82599_VF`).
pub const VF_DEVICE_ID: u16 = 0x10ED;
/// Ethernet controller.
pub const CLASS_ETHERNET: u32 = 0x02_0000;
/// ⚠ The revision is only stored by ixgbevf (it shows in `ethtool -d`).
pub const REVISION: u8 = 0x01;
/// 64 pools, one of them the PF's; ixgbe enables at most 63 VFs (`pci_sriov_set_totalvfs`).
pub const TOTAL_VFS: u16 = 64;
/// First VF Offset / VF Stride: ixgbe decodes a VF's requester id as bit 7 set and the VF
/// index in bits 6:1 (`ixgbe_io_error_detected`).
pub const VF_OFFSET: u16 = 0x80;
pub const VF_STRIDE: u16 = 2;
/// MSI-X vectors of a VF.
pub const VF_MSIX_VECTORS: u16 = regs::VF_VECTORS;
/// MSI-X table and PBA live in BAR3.
pub const MSIX_BAR: u8 = 3;
pub const MSIX_PBA_OFFSET: u32 = regs::MSIX_PBA as u32;

/// PCIe 2.0 at 5 GT/s, x8 (the 82599's link), FLR, programmable completion timeout.
const PCIE: PciExpress = PciExpress::endpoint()
    .with_flr()
    .with_link(LinkSpeed::Gt5, 8)
    .with_completion_timeout(0xF, true);

/// The 82599 PF's header, PCIe, AER, ARI and SR-IOV capabilities: 8086:10FB with VF device 0x10ED and each
/// VF's BAR0 (16 KiB of CSRs) and BAR3 (16 KiB, MSI-X) 64-bit and non-prefetchable, as
/// ixgbevf maps them (`ioremap`, uncached).
pub fn sriov_parent() -> Result<ConfigSpace, BuildError> {
    let mut pf = ConfigSpace::new(&Header {
        vendor_id: VENDOR_INTEL,
        device_id: PF_DEVICE_ID,
        revision_id: REVISION,
        class_code: CLASS_ETHERNET,
        multi_function: true,
        interrupt_pin: 1,
        ..Header::default()
    });
    pf.add_capability(0xA0, &PCIE)?;
    pf.add_ext_capability(0x100, &Aer::new())?;
    pf.add_ext_capability(0x150, &Ari::new(0))?;
    pf.add_ext_capability(
        0x160,
        &Sriov::new(TOTAL_VFS, VF_DEVICE_ID)
            .with_routing(VF_OFFSET, VF_STRIDE)
            .with_vf_bar(0, Bar::mem64(regs::BAR0_SIZE))
            .with_vf_bar(3, Bar::mem64(regs::BAR3_SIZE)),
    )?;
    Ok(pf)
}

/// An 82599 VF as a VMM presents it: 8086:10ED (not the FFFF:FFFF of bare SR-IOV), class
/// 0x020000, its own 64-bit BAR0 and BAR3 (16 KiB each), MSI-X with 3 vectors (table at BAR3
/// offset 0, PBA at 0x2000), PCIe with FLR, AER, ARI; no INTx pin and no MSI.
pub fn vf_config_space() -> Result<ConfigSpace, BuildError> {
    let mut vf = sriov_parent()?.vf_config_space()?;
    vf.add_capability(
        0x70,
        &Msix::new(
            VF_MSIX_VECTORS,
            MsixRegion::new(MSIX_BAR, 0),
            MsixRegion::new(MSIX_BAR, MSIX_PBA_OFFSET),
        ),
    )?;
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
    fn the_vf_reads_as_an_82599_vf_with_msix_in_bar3_and_no_intx() {
        let vf = vf_config_space().unwrap();
        assert_eq!(vf.read_u16(header::VENDOR_ID), VENDOR_INTEL);
        assert_eq!(vf.read_u16(header::DEVICE_ID), VF_DEVICE_ID);
        assert_eq!(vf.read_u32(header::REVISION_ID) >> 8, CLASS_ETHERNET);
        assert_eq!(vf.read_u8(header::INTERRUPT_PIN), 0);
        assert_eq!(vf.read_u8(header::CAPABILITIES_POINTER), 0x70);
        assert_eq!(vf.read_u16(0x72) & 0x7FF, VF_MSIX_VECTORS - 1);
        assert_eq!(vf.read_u32(0x74), u32::from(MSIX_BAR));
        assert_eq!(vf.read_u32(0x78), MSIX_PBA_OFFSET | u32::from(MSIX_BAR));
        assert!(
            vf.bar(1).is_none(),
            "BAR0 is 64-bit: BAR1 is its upper half"
        );
    }
}
