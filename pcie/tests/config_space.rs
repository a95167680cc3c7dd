//! Guest-access edge cases, register rules and builder errors of `ConfigSpace`.

mod common;

use common::{pf_82576, write16, write32, KIB};
use pcie::regs::{aer, command, exp, header, msi, pm, sriov, status};
use pcie::{
    Aer, Ari, Bar, BuildError, ConfigEvent, ConfigSpace, Header, Msi, Msix, MsixRegion, PciExpress,
    PowerManagement, PowerState, Sriov,
};

fn plain() -> ConfigSpace {
    ConfigSpace::new(&Header {
        vendor_id: 0x1234,
        device_id: 0x5678,
        ..Header::default()
    })
}

// ---- reads and writes at the edges -------------------------------------------

#[test]
fn reads_past_the_end_return_ff() {
    let space = plain();
    let mut buf = [0u8; 4];
    space.read(4094, &mut buf);
    assert_eq!(buf, [0, 0, 0xFF, 0xFF]);
    space.read(usize::MAX - 1, &mut buf);
    assert_eq!(buf, [0xFF; 4]);
    let mut big = vec![0u8; 5000];
    space.read(0, &mut big);
    assert_eq!(&big[0..4], &[0x34, 0x12, 0x78, 0x56]);
    assert!(big[4096..].iter().all(|&b| b == 0xFF));
    assert_eq!(space.read_u32(4096), 0xFFFF_FFFF);
}

#[test]
fn writes_of_other_sizes_or_out_of_range_are_ignored() {
    let mut space = plain();
    assert!(space.write(header::COMMAND, &[0x06, 0, 0]).is_empty());
    assert!(space.write(header::COMMAND, &[0x06; 8]).is_empty());
    assert!(space.write(header::COMMAND, &[]).is_empty());
    assert_eq!(space.read_u16(header::COMMAND), 0);
    assert!(space.write(4094, &[1, 2, 3, 4]).is_empty());
    assert!(space.write(usize::MAX, &[1]).is_empty());
    assert!(space.write(usize::MAX - 1, &[1, 2]).is_empty());
    assert_eq!(space.refused_writes(), 6);
}

#[test]
fn unaligned_write_crossing_registers_applies_each_bytes_masks() {
    let mut space = plain();
    space.hw_write(header::STATUS, &status::RECEIVED_MASTER_ABORT.to_le_bytes());
    // Bytes 0x05..0x07: Command high byte (INTx Disable is bit 10) and Status low
    // byte (read-only), written with all ones.
    assert!(space.write(0x05, &[0xFF, 0xFF]).is_empty());
    assert_eq!(
        space.read_u16(header::COMMAND),
        command::INTX_DISABLE | command::SERR_ENABLE
    );
    assert_eq!(
        space.read_u16(header::STATUS),
        status::RECEIVED_MASTER_ABORT
    );
    // A dword write at 0x04 reaches Status: W1C clears the abort bit.
    write32(
        &mut space,
        header::COMMAND,
        u32::from(status::RECEIVED_MASTER_ABORT) << 16,
    );
    assert_eq!(space.read_u16(header::STATUS), 0);
    assert_eq!(space.read_u16(header::COMMAND), 0);
}

#[test]
fn identity_registers_are_read_only() {
    let mut space = plain();
    write32(&mut space, header::VENDOR_ID, 0xFFFF_FFFF);
    write32(&mut space, header::REVISION_ID, 0xFFFF_FFFF);
    write32(&mut space, header::SUBSYSTEM_VENDOR_ID, 0xFFFF_FFFF);
    assert_eq!(space.read_u32(header::VENDOR_ID), 0x5678_1234);
    assert_eq!(space.read_u32(header::REVISION_ID), 0);
    assert_eq!(space.read_u32(header::SUBSYSTEM_VENDOR_ID), 0);
    write32(&mut space, header::INTERRUPT_LINE, 0xFFFF_FFFF);
    assert_eq!(
        space.read_u8(header::INTERRUPT_LINE),
        0xFF,
        "Interrupt Line is RW"
    );
    assert_eq!(space.read_u8(header::INTERRUPT_PIN), 0);
}

#[test]
fn command_event_only_on_bus_master_or_memory_change() {
    let mut space = plain();
    assert!(write16(&mut space, header::COMMAND, command::INTX_DISABLE).is_empty());
    assert!(space.intx_disabled());
    assert_eq!(
        write16(&mut space, header::COMMAND, command::BUS_MASTER),
        vec![ConfigEvent::CommandChanged {
            bus_master: true,
            memory: false
        }]
    );
    assert!(space.bus_master_enabled() && !space.memory_enabled());
    assert!(write16(
        &mut space,
        header::COMMAND,
        command::BUS_MASTER | command::IO_SPACE
    )
    .is_empty());
    assert!(space.io_enabled());
}

// ---- BARs and ROM ------------------------------------------------------------

#[test]
fn rom_bar_sizes_when_present() {
    let mut space = plain();
    space.set_rom(64 * KIB).unwrap();
    write32(&mut space, header::ROM_ADDRESS, 0xFFFF_F800);
    assert_eq!(space.read_u32(header::ROM_ADDRESS), 0xFFFF_0000);
    write32(&mut space, header::ROM_ADDRESS, 0xFEC0_0001);
    assert_eq!(space.read_u32(header::ROM_ADDRESS), 0xFEC0_0001);
    assert_eq!(
        space.set_rom(1000),
        Err(BuildError::InvalidRom { size: 1000 })
    );
}

#[test]
fn prefetchable_32bit_bar_sizing() {
    let mut space = plain();
    space
        .set_bar(2, Bar::mem32(1 << 20).prefetchable())
        .unwrap();
    write32(&mut space, 0x18, u32::MAX);
    assert_eq!(space.read_u32(0x18), 0xFFF0_0008);
    write32(&mut space, 0x18, 0xC010_0000);
    assert_eq!(space.bar_address(2), Some(0xC010_0000));
}

#[test]
fn bar_layout_errors() {
    let mut space = plain();
    assert!(matches!(
        space.set_bar(5, Bar::mem64(4096)),
        Err(BuildError::InvalidBar { index: 5, .. })
    ));
    assert!(matches!(
        space.set_bar(6, Bar::mem32(4096)),
        Err(BuildError::InvalidBar { index: 6, .. })
    ));
    assert!(matches!(
        space.set_bar(0, Bar::mem32(3000)),
        Err(BuildError::InvalidBar { .. })
    ));
    assert!(matches!(
        space.set_bar(0, Bar::io(512)),
        Err(BuildError::InvalidBar { .. })
    ));
    assert!(matches!(
        space.set_bar(0, Bar::mem32(8)),
        Err(BuildError::InvalidBar { .. })
    ));
    space.set_bar(0, Bar::mem64(4096)).unwrap();
    assert!(matches!(
        space.set_bar(1, Bar::mem32(4096)),
        Err(BuildError::InvalidBar { index: 1, .. })
    ));
    assert!(matches!(
        space.set_bar(0, Bar::mem32(4096)),
        Err(BuildError::InvalidBar { index: 0, .. })
    ));
    space.set_bar(2, Bar::mem32(4096)).unwrap();
    assert_eq!(space.bar(0), Some(Bar::mem64(4096)));
    assert_eq!(space.bar(1), None);
}

// ---- capability builder errors -----------------------------------------------

#[test]
fn capability_placement_errors() {
    let mut space = plain();
    let pm = PowerManagement::default();
    assert_eq!(
        space.add_capability(0x42, &pm),
        Err(BuildError::Misaligned { offset: 0x42 })
    );
    assert!(matches!(
        space.add_capability(0x3C, &pm),
        Err(BuildError::Overflow { offset: 0x3C, .. })
    ));
    let msix = Msix::new(4, MsixRegion::new(0, 0), MsixRegion::new(0, 0x40));
    assert!(matches!(
        space.add_capability(0xF8, &msix),
        Err(BuildError::Overflow { .. })
    ));
    space.add_capability(0x40, &pm).unwrap();
    assert_eq!(
        space.add_capability(0x44, &msix),
        Err(BuildError::Overlap {
            offset: 0x44,
            size: 12,
            other: 0x40
        })
    );
    assert!(matches!(
        space.add_capability(0x60, &pm),
        Err(BuildError::Duplicate { offset: 0x40, .. })
    ));
    assert!(matches!(
        space.add_ext_capability(0x140, &Aer::new()),
        Err(BuildError::FirstExtendedNotAtStart { offset: 0x140 })
    ));
    space.add_ext_capability(0x100, &Aer::new()).unwrap();
    assert!(matches!(
        space.add_ext_capability(0x140, &Ari::new(0)),
        Err(BuildError::Overlap { .. })
    ));
    assert!(matches!(
        space.add_ext_capability(0xFFC, &Ari::new(0)),
        Err(BuildError::Overflow { .. })
    ));
    // A failed add leaves the chain untouched.
    assert_eq!(space.read_u8(0x41), 0);
    assert_eq!(space.read_u32(0x100) >> 20, 0);
}

#[test]
fn capability_parameter_errors() {
    let mut space = plain();
    let bad_msi = Msi {
        vectors: 3,
        address_64: false,
        per_vector_mask: false,
    };
    assert!(matches!(
        space.add_capability(0x50, &bad_msi),
        Err(BuildError::InvalidCapability { .. })
    ));
    let bad_msix = Msix::new(0, MsixRegion::new(0, 0), MsixRegion::new(0, 0x40));
    assert!(matches!(
        space.add_capability(0x70, &bad_msix),
        Err(BuildError::InvalidCapability { .. })
    ));
    let bad_msix = Msix::new(4, MsixRegion::new(6, 0), MsixRegion::new(0, 0x40));
    assert!(matches!(
        space.add_capability(0x70, &bad_msix),
        Err(BuildError::InvalidCapability { .. })
    ));
    space.add_ext_capability(0x100, &Aer::new()).unwrap();
    let io_vf_bar = Sriov::new(4, 1).with_vf_bar(0, Bar::io(16));
    assert!(matches!(
        space.add_ext_capability(0x160, &io_vf_bar),
        Err(BuildError::InvalidBar { .. })
    ));
    let overlapping = Sriov::new(4, 1)
        .with_vf_bar(0, Bar::mem64(4096))
        .with_vf_bar(1, Bar::mem32(4096));
    assert!(matches!(
        space.add_ext_capability(0x160, &overlapping),
        Err(BuildError::InvalidBar { index: 1, .. })
    ));
    let mut initial = Sriov::new(4, 1);
    initial.initial_vfs = 5;
    assert!(matches!(
        space.add_ext_capability(0x160, &initial),
        Err(BuildError::InvalidCapability { .. })
    ));
    space.add_ext_capability(0x160, &Sriov::new(4, 1)).unwrap();
    assert!(matches!(
        space.add_ext_capability(0x200, &Sriov::new(4, 1)),
        Err(BuildError::Duplicate { .. })
    ));
    assert_eq!(plain().vf_config_space().err(), Some(BuildError::NoSriov));
}

// ---- capability registers ----------------------------------------------------

#[test]
fn power_state_changes_and_unsupported_states_are_ignored() {
    let mut pf = pf_82576().unwrap();
    let pmcsr = 0x40 + pm::PMCSR;
    assert_eq!(pf.power_state(), Some(PowerState::D0));
    assert_eq!(
        write16(&mut pf, pmcsr, 3),
        vec![ConfigEvent::PmStateChanged {
            from: PowerState::D0,
            to: PowerState::D3Hot
        }]
    );
    assert!(write16(&mut pf, pmcsr, 1).is_empty(), "D1 not supported");
    assert_eq!(pf.power_state(), Some(PowerState::D3Hot));
    // PME Status is write-1-to-clear, PME Enable read-write.
    pf.hw_write(pmcsr, &(pm::PMCSR_PME_STATUS | 3).to_le_bytes());
    write16(
        &mut pf,
        pmcsr,
        pm::PMCSR_PME_STATUS | pm::PMCSR_PME_ENABLE | 3,
    );
    assert_eq!(pf.read_u16(pmcsr), pm::PMCSR_PME_ENABLE | 3);
}

#[test]
fn msi_enable_and_mme_limits() {
    let mut pf = pf_82576().unwrap();
    let control = 0x50 + 2;
    assert_eq!(
        write16(&mut pf, control, 0x0071),
        vec![ConfigEvent::MsiControlChanged { enabled: true }]
    );
    assert_eq!(
        pf.read_u16(control) & 0x70,
        0,
        "1 vector capable: MME stays 0"
    );
    assert!(pf.msi_enabled());
    write32(&mut pf, 0x54, 0xFEE0_0003);
    assert_eq!(pf.read_u32(0x54), 0xFEE0_0000, "address bits 1:0 read-only");
    write32(&mut pf, 0x50 + msi::MASK_64, 0xFFFF_FFFF);
    assert_eq!(pf.read_u32(0x60), 1, "one mask bit per vector");
    write32(&mut pf, 0x50 + msi::PENDING_64, 0xFFFF_FFFF);
    assert_eq!(pf.read_u32(0x64), 0, "pending bits are read-only");
}

#[test]
fn msix_control_event_and_accessors() {
    let mut pf = pf_82576().unwrap();
    assert_eq!(
        write16(&mut pf, 0x72, 0xFFFF),
        vec![ConfigEvent::MsixControlChanged {
            enabled: true,
            function_masked: true
        }]
    );
    assert_eq!(pf.read_u16(0x72), 0xC009, "Table Size is read-only");
    assert!(pf.msix_enabled() && pf.msix_function_masked());
    assert!(write16(&mut pf, 0x72, 0xC000).is_empty());
}

#[test]
fn flr_is_not_reported_without_the_capability() {
    let mut space = plain();
    space.add_capability(0x40, &PciExpress::endpoint()).unwrap();
    assert!(write16(&mut space, 0x40 + exp::DEVCTL, exp::DEVCTL_BCR_FLR).is_empty());
    assert_eq!(space.read_u16(0x40 + exp::DEVCTL) & exp::DEVCTL_BCR_FLR, 0);
}

#[test]
fn pcie_device_status_and_aer_status_are_w1c() {
    let mut pf = pf_82576().unwrap();
    let devsta = 0xA0 + exp::DEVSTA;
    pf.hw_write(devsta, &(exp::DEVSTA_CED | exp::DEVSTA_URD).to_le_bytes());
    write16(&mut pf, devsta, exp::DEVSTA_URD);
    assert_eq!(pf.read_u16(devsta), exp::DEVSTA_CED);
    let uncor = 0x100 + aer::UNCOR_STATUS;
    pf.hw_write(uncor, &((1u32 << 14) | (1 << 20)).to_le_bytes());
    write32(&mut pf, uncor, 1 << 20);
    assert_eq!(pf.read_u32(uncor), 1 << 14);
    assert_eq!(
        pf.read_u32(0x100 + aer::UNCOR_SEVERITY),
        aer::UNCOR_SEVERITY_DEFAULT
    );
    write32(&mut pf, 0x100 + aer::UNCOR_MASK, u32::MAX);
    assert_eq!(pf.read_u32(0x100 + aer::UNCOR_MASK), aer::UNCOR_IMPLEMENTED);
}

// ---- SR-IOV register rules ----------------------------------------------------

#[test]
fn system_page_size_accepts_one_supported_bit_while_disabled() {
    let mut pf = pf_82576().unwrap();
    let reg = 0x160 + sriov::SYSTEM_PAGE_SIZE;
    write32(&mut pf, reg, 0x3);
    assert_eq!(pf.read_u32(reg), 1, "two bits refused");
    write32(&mut pf, reg, 0x4);
    assert_eq!(pf.read_u32(reg), 1, "16 KiB not supported");
    write32(&mut pf, reg, 0x10);
    assert_eq!(pf.read_u32(reg), 0x10);
    assert_eq!(pf.sriov().unwrap().page_size_bytes(), 64 * KIB);
    write16(&mut pf, 0x160 + sriov::CONTROL, sriov::CONTROL_VF_ENABLE);
    write32(&mut pf, reg, 0x1);
    assert_eq!(pf.read_u32(reg), 0x10, "frozen while VFs are enabled");
}

#[test]
fn ari_capable_hierarchy_is_frozen_while_enabled() {
    let mut pf = pf_82576().unwrap();
    let control = 0x160 + sriov::CONTROL;
    write16(&mut pf, control, sriov::CONTROL_VF_ENABLE);
    write16(
        &mut pf,
        control,
        sriov::CONTROL_VF_ENABLE | sriov::CONTROL_ARI_CAPABLE_HIERARCHY,
    );
    assert!(!pf.sriov().unwrap().ari_capable_hierarchy);
    // Migration bits are not implemented.
    write16(&mut pf, control, 0xFFFF);
    assert_eq!(
        pf.read_u16(control),
        sriov::CONTROL_VF_ENABLE | sriov::CONTROL_VF_MSE
    );
}

#[test]
fn enabling_with_zero_vfs_reports_zero() {
    let mut pf = pf_82576().unwrap();
    assert_eq!(
        write16(&mut pf, 0x160 + sriov::CONTROL, sriov::CONTROL_VF_ENABLE),
        vec![ConfigEvent::SriovVfEnable { num_vfs: 0 }]
    );
}

#[test]
fn byte_writes_to_numvfs_are_checked_as_a_whole() {
    let mut pf = pf_82576().unwrap();
    let reg = 0x160 + sriov::NUM_VFS;
    // High byte 1 would make NumVFs 256 > TotalVFs: refused.
    assert!(pf.write(reg + 1, &[1]).is_empty());
    assert_eq!(pf.read_u16(reg), 0);
    assert_eq!(pf.write(reg, &[5]), vec![ConfigEvent::SriovNumVfs(5)]);
}
