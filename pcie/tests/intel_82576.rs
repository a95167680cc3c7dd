//! The 82576 PF and VF layouts (QEMU's `igb_pci_realize` / `igbvf_pci_realize`) built with the
//! public builders, checked byte by byte as `igb`, `igbvf`, Linux's PCI core and QEMU read them.

mod common;

use common::{cap_chain, ext_cap_chain, pf_82576, vf_82576, write16, write32, KIB};
use pcie::regs::{cap_id, command, ext_cap_id, header, sriov, status};
use pcie::{ConfigEvent, ConfigSpace};

const SRIOV: usize = 0x160;

fn pf() -> ConfigSpace {
    pf_82576().expect("82576 PF layout builds")
}

fn whole(space: &ConfigSpace) -> Vec<u8> {
    let mut bytes = vec![0; 4096];
    space.read(0, &mut bytes);
    bytes
}

#[test]
fn pf_header_reads_as_an_82576() {
    let bytes = whole(&pf());
    assert_eq!(&bytes[0..4], &[0x86, 0x80, 0xC9, 0x10]);
    assert_eq!(bytes[header::REVISION_ID], 0x01);
    assert_eq!(&bytes[0x09..0x0C], &[0x00, 0x00, 0x02], "class 020000");
    assert_eq!(bytes[header::CACHE_LINE_SIZE], 0x10);
    assert_eq!(bytes[header::HEADER_TYPE], 0x80, "multi-function");
    assert_eq!(bytes[header::CAPABILITIES_POINTER], 0x40);
    assert_eq!(bytes[header::INTERRUPT_PIN], 1);
    let st = u16::from_le_bytes([bytes[6], bytes[7]]);
    assert_eq!(st, status::CAPABILITIES_LIST);
    // BAR type bits: BAR0/1 mem32, BAR2 I/O, BAR3 mem64 (BAR4 its upper half).
    assert_eq!(
        &bytes[0x10..0x28],
        &[0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    );
}

#[test]
fn pf_capability_chains_match_the_spec_offsets() {
    let pf = pf();
    assert_eq!(
        cap_chain(&pf),
        vec![
            (0x40, cap_id::POWER_MANAGEMENT),
            (0x50, cap_id::MSI),
            (0x70, cap_id::MSIX),
            (0xA0, cap_id::PCI_EXPRESS)
        ]
    );
    assert_eq!(
        ext_cap_chain(&pf),
        vec![
            (0x100, ext_cap_id::AER, 1),
            (0x150, ext_cap_id::ARI, 1),
            (0x160, ext_cap_id::SRIOV, 1)
        ]
    );
}

#[test]
fn pf_msi_and_msix_registers() {
    let pf = pf();
    // MSI: 1 vector (MMC 0), 64-bit, per-vector masking.
    assert_eq!(pf.read_u16(0x52), 0x0180);
    // MSI-X: Table Size 9 (10 vectors), table BIR 3 offset 0, PBA BIR 3 offset 0x2000.
    assert_eq!(pf.read_u16(0x72), 9);
    assert_eq!(pf.read_u32(0x74), 0x0000_0003);
    assert_eq!(pf.read_u32(0x78), 0x0000_2003);
}

#[test]
fn pf_pci_express_registers() {
    let pf = pf();
    assert_eq!(pf.read_u16(0xA2), 0x0002, "version 2, endpoint");
    assert_ne!(pf.read_u32(0xA4) & (1 << 28), 0, "FLR capable");
    assert_eq!(pf.read_u32(0xAC) & 0x3FF, 0x41, "Max Link 2.5 GT/s x4");
    assert_eq!(pf.read_u16(0xB2) & 0x3FF, 0x41, "Link Status 2.5 GT/s x4");
    assert_eq!(
        pf.read_u32(0xC4) & 0x1F,
        0x1F,
        "completion timeout ranges + disable"
    );
}

#[test]
fn igb_can_program_the_completion_timeout() {
    let mut pf = pf();
    // igb_set_pcie_completion_timeout: 16-55 ms range (value 0x5).
    write16(&mut pf, 0xA0 + 0x28, 0x0005);
    assert_eq!(pf.read_u16(0xC8), 0x0005);
}

#[test]
fn pf_sriov_capability_fields() {
    let pf = pf();
    assert_eq!(pf.read_u32(SRIOV + sriov::CAP), 0);
    assert_eq!(pf.read_u16(SRIOV + sriov::CONTROL), 0);
    assert_eq!(pf.read_u16(SRIOV + sriov::INITIAL_VFS), 8);
    assert_eq!(pf.read_u16(SRIOV + sriov::TOTAL_VFS), 8);
    assert_eq!(pf.read_u16(SRIOV + sriov::NUM_VFS), 0);
    assert_eq!(pf.read_u16(SRIOV + sriov::FIRST_VF_OFFSET), 0x80);
    assert_eq!(pf.read_u16(SRIOV + sriov::VF_STRIDE), 2);
    assert_eq!(pf.read_u16(SRIOV + sriov::VF_DEVICE_ID), 0x10CA);
    assert_eq!(pf.read_u32(SRIOV + sriov::SUPPORTED_PAGE_SIZES), 0x553);
    assert_eq!(pf.read_u32(SRIOV + sriov::SYSTEM_PAGE_SIZE), 1);
    // VF BAR0 and BAR3: 64-bit prefetchable (type 0xC); others 0.
    assert_eq!(pf.read_u32(SRIOV + sriov::VF_BAR0), 0xC);
    assert_eq!(pf.read_u32(SRIOV + sriov::VF_BAR0 + 12), 0xC);
    for other in [1, 2, 4, 5] {
        assert_eq!(pf.read_u32(SRIOV + sriov::VF_BAR0 + 4 * other), 0);
    }
    let state = pf.sriov().expect("SR-IOV state");
    assert_eq!(
        (state.total_vfs, state.num_vfs, state.vf_enabled),
        (8, 0, false)
    );
    assert_eq!(state.vf_bars[0].map(|b| b.bar.size), Some(16 * KIB));
    assert_eq!(state.vf_bars[3].map(|b| b.bar.size), Some(16 * KIB));
    assert!(state.vf_bars[1].is_none() && state.vf_bars[4].is_none());
}

#[test]
fn pf_bars_size_like_the_hardware() {
    let mut pf = pf();
    for reg in 0..6 {
        write32(&mut pf, header::BAR0 + 4 * reg, u32::MAX);
    }
    assert_eq!(pf.read_u32(0x10), 0xFFFE_0000, "BAR0 128 KiB mem32");
    assert_eq!(pf.read_u32(0x14), 0xFFFE_0000, "BAR1 128 KiB mem32");
    assert_eq!(pf.read_u32(0x18), 0xFFFF_FFE1, "BAR2 32-byte I/O");
    assert_eq!(pf.read_u32(0x1C), 0xFFFF_C004, "BAR3 16 KiB mem64 low");
    assert_eq!(pf.read_u32(0x20), 0xFFFF_FFFF, "BAR3 high");
    assert_eq!(pf.read_u32(0x24), 0, "BAR5 unused");
    assert_eq!(
        pcie::bar::size_from_readback(pf.read_u32(0x1C), pf.read_u32(0x20)),
        16 * KIB
    );
}

#[test]
fn pf_sriov_vf_bars_size_per_vf() {
    let mut pf = pf();
    write32(&mut pf, SRIOV + sriov::VF_BAR0, u32::MAX);
    write32(&mut pf, SRIOV + sriov::VF_BAR0 + 4, u32::MAX);
    assert_eq!(pf.read_u32(SRIOV + sriov::VF_BAR0), 0xFFFF_C00C);
    assert_eq!(pf.read_u32(SRIOV + sriov::VF_BAR0 + 4), 0xFFFF_FFFF);
    write32(&mut pf, SRIOV + sriov::VF_BAR0 + 8, u32::MAX);
    assert_eq!(
        pf.read_u32(SRIOV + sriov::VF_BAR0 + 8),
        0,
        "VF BAR2 not implemented"
    );
}

#[test]
fn linux_sriov_enable_sequence() {
    let mut pf = pf();
    // sriov_enable(): NumVFs, VF BARs, then VF Enable | VF MSE (ARI set earlier).
    assert_eq!(
        write16(
            &mut pf,
            SRIOV + sriov::CONTROL,
            sriov::CONTROL_ARI_CAPABLE_HIERARCHY
        ),
        vec![]
    );
    assert_eq!(
        write16(&mut pf, SRIOV + sriov::NUM_VFS, 7),
        vec![ConfigEvent::SriovNumVfs(7)]
    );
    write32(&mut pf, SRIOV + sriov::VF_BAR0, 0xE000_0000);
    write32(&mut pf, SRIOV + sriov::VF_BAR0 + 4, 0x1);
    write32(&mut pf, SRIOV + sriov::VF_BAR0 + 12, 0xE100_0000);
    let events = write16(
        &mut pf,
        SRIOV + sriov::CONTROL,
        sriov::CONTROL_VF_ENABLE | sriov::CONTROL_VF_MSE | sriov::CONTROL_ARI_CAPABLE_HIERARCHY,
    );
    assert_eq!(
        events,
        vec![
            ConfigEvent::SriovVfEnable { num_vfs: 7 },
            ConfigEvent::SriovVfMemoryChanged { enabled: true }
        ]
    );
    let state = pf.sriov().unwrap();
    assert!(state.vf_enabled && state.vf_mse && state.ari_capable_hierarchy);
    assert_eq!(state.vf_bar_address(0, 0), Some(0x1_E000_0000));
    assert_eq!(state.vf_bar_address(2, 0), Some(0x1_E000_8000));
    assert_eq!(state.vf_bar_address(1, 3), Some(0xE100_4000));
    assert_eq!(state.vf_routing_id(0x0100, 0), Some(0x0180));
    assert_eq!(state.vf_routing_id(0x0100, 6), Some(0x018C));

    // NumVFs is frozen while VFs are enabled.
    assert_eq!(write16(&mut pf, SRIOV + sriov::NUM_VFS, 3), vec![]);
    assert_eq!(pf.read_u16(SRIOV + sriov::NUM_VFS), 7);

    // sriov_disable(): clear VF Enable and MSE, then NumVFs 0.
    let events = write16(
        &mut pf,
        SRIOV + sriov::CONTROL,
        sriov::CONTROL_ARI_CAPABLE_HIERARCHY,
    );
    assert_eq!(
        events,
        vec![
            ConfigEvent::SriovVfDisable,
            ConfigEvent::SriovVfMemoryChanged { enabled: false }
        ]
    );
    assert_eq!(
        write16(&mut pf, SRIOV + sriov::NUM_VFS, 0),
        vec![ConfigEvent::SriovNumVfs(0)]
    );
}

#[test]
fn numvfs_above_totalvfs_is_refused() {
    let mut pf = pf();
    assert_eq!(write16(&mut pf, SRIOV + sriov::NUM_VFS, 9), vec![]);
    assert_eq!(pf.read_u16(SRIOV + sriov::NUM_VFS), 0);
    assert_eq!(
        write16(&mut pf, SRIOV + sriov::NUM_VFS, 8),
        vec![ConfigEvent::SriovNumVfs(8)]
    );
}

#[test]
fn pf_flr_is_reported_and_reset_disables_vfs() {
    let mut pf = pf();
    write16(&mut pf, SRIOV + sriov::NUM_VFS, 2);
    write16(&mut pf, SRIOV + sriov::CONTROL, sriov::CONTROL_VF_ENABLE);
    write16(
        &mut pf,
        header::COMMAND,
        command::MEMORY_SPACE | command::BUS_MASTER,
    );
    let events = write16(&mut pf, 0xA8, 0x8000 | 0x2810);
    assert_eq!(events, vec![ConfigEvent::Flr]);
    assert_eq!(pf.read_u16(0xA8), 0x2810, "Initiate FLR reads 0");
    let events = pf.reset();
    assert_eq!(
        events,
        vec![
            ConfigEvent::CommandChanged {
                bus_master: false,
                memory: false
            },
            ConfigEvent::SriovVfDisable,
            ConfigEvent::SriovNumVfs(0)
        ]
    );
    assert_eq!(pf.read_u16(SRIOV + sriov::CONTROL), 0);
}

#[test]
fn vf_header_reads_as_an_82576_vf() {
    let vf = vf_82576(&pf()).unwrap();
    let bytes = whole(&vf);
    assert_eq!(&bytes[0..4], &[0x86, 0x80, 0xCA, 0x10]);
    assert_eq!(bytes[header::REVISION_ID], 0x01);
    assert_eq!(&bytes[0x09..0x0C], &[0x00, 0x00, 0x02]);
    assert_eq!(bytes[header::HEADER_TYPE], 0x00);
    assert_eq!(bytes[header::CAPABILITIES_POINTER], 0x70);
    assert_eq!(bytes[header::INTERRUPT_PIN], 0, "no INTx");
    assert_eq!(
        u32::from_le_bytes(bytes[0x10..0x14].try_into().unwrap()),
        0xC,
        "BAR0 mem64 pf"
    );
    assert_eq!(
        u32::from_le_bytes(bytes[0x1C..0x20].try_into().unwrap()),
        0xC,
        "BAR3 mem64 pf"
    );
    assert_eq!(
        cap_chain(&vf),
        vec![(0x70, cap_id::MSIX), (0xA0, cap_id::PCI_EXPRESS)]
    );
    assert_eq!(
        ext_cap_chain(&vf),
        vec![(0x100, ext_cap_id::AER, 1), (0x150, ext_cap_id::ARI, 1)]
    );
    // igbvf demands exactly 3 MSI-X vectors.
    assert_eq!(vf.read_u16(0x72), 2);
    assert_eq!(vf.read_u32(0x74), 0x3);
    assert_eq!(vf.read_u32(0x78), 0x2003);
    assert_ne!(vf.read_u32(0xA4) & (1 << 28), 0, "FLR capable");
    assert!(vf.sriov().is_none());
}

#[test]
fn vf_bars_size_like_the_pf_vf_bars() {
    let mut vf = vf_82576(&pf()).unwrap();
    for reg in 0..6 {
        write32(&mut vf, header::BAR0 + 4 * reg, u32::MAX);
    }
    let regs: Vec<u32> = (0..6).map(|r| vf.read_u32(header::BAR0 + 4 * r)).collect();
    assert_eq!(
        regs,
        vec![0xFFFF_C00C, 0xFFFF_FFFF, 0, 0xFFFF_C00C, 0xFFFF_FFFF, 0]
    );
}

#[test]
fn vf_command_has_only_memory_and_bus_master() {
    let mut vf = vf_82576(&pf()).unwrap();
    let events = write16(&mut vf, header::COMMAND, 0xFFFF);
    assert_eq!(
        vf.read_u16(header::COMMAND),
        command::MEMORY_SPACE | command::BUS_MASTER
    );
    assert_eq!(
        events,
        vec![ConfigEvent::CommandChanged {
            bus_master: true,
            memory: true
        }]
    );
    assert!(vf.bus_master_enabled() && vf.memory_enabled());
    let events = write16(&mut vf, header::COMMAND, command::MEMORY_SPACE);
    assert_eq!(
        events,
        vec![ConfigEvent::CommandChanged {
            bus_master: false,
            memory: true
        }]
    );
}

#[test]
fn vf_flr_write_is_reported() {
    let mut vf = vf_82576(&pf()).unwrap();
    // A byte write of just the top byte of Device Control, as a guest may do.
    assert_eq!(vf.write(0xA9, &[0x80]), vec![ConfigEvent::Flr]);
    assert_eq!(vf.read_u16(0xA8) & 0x8000, 0);
}

#[test]
fn qemu_realize_and_reset_sequence_on_a_vf() {
    let mut vf = vf_82576(&pf()).unwrap();
    // One 4096-byte read equals the bytes read one by one.
    let bytes = whole(&vf);
    assert!(bytes.iter().enumerate().all(|(i, &b)| vf.read_u8(i) == b));
    // ROM probe: no ROM, so the sized ROM BAR reads 0.
    write32(&mut vf, header::ROM_ADDRESS, 0xFFFF_F800);
    assert_eq!(vf.read_u32(header::ROM_ADDRESS), 0);
    // Guest enables the function, then system reset: COMMAND with IO/MEM/BM
    // cleared, zero into all six BARs.
    write16(
        &mut vf,
        header::COMMAND,
        command::MEMORY_SPACE | command::BUS_MASTER,
    );
    write32(&mut vf, header::BAR0, 0xFEB0_0000);
    let events = write16(&mut vf, header::COMMAND, 0);
    assert_eq!(
        events,
        vec![ConfigEvent::CommandChanged {
            bus_master: false,
            memory: false
        }]
    );
    for reg in 0..6 {
        assert_eq!(write32(&mut vf, header::BAR0 + 4 * reg, 0), vec![]);
    }
    assert_eq!(vf.bar_address(0), Some(0));
    assert_eq!(vf.read_u32(header::BAR0), 0xC, "type bits survive");
}
