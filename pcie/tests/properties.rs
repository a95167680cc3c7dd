//! Property tests: read-only bits, write-1-to-clear, BAR sizing, SR-IOV invariants.

mod common;

use common::{pf_82576, vf_82576};
use pcie::bar::size_from_readback;
use pcie::regs::{aer, exp, header, sriov, status};
use pcie::{Bar, BarKind, ConfigEvent, ConfigSpace, Header, Sriov};
use proptest::prelude::*;

const SRIOV: usize = 0x160;

/// A guest write: offset, length 1/2/4, value.
fn guest_write() -> impl Strategy<Value = (usize, usize, u32)> {
    (
        0usize..4096,
        prop_oneof![Just(1usize), Just(2), Just(4)],
        any::<u32>(),
    )
}

/// Writes aimed at the interesting part (header, capabilities, SR-IOV) more often.
fn focused_write() -> impl Strategy<Value = (usize, usize, u32)> {
    prop_oneof![
        guest_write(),
        (
            0usize..0x100,
            prop_oneof![Just(1usize), Just(2), Just(4)],
            any::<u32>()
        ),
        (
            0x100usize..0x1A0,
            prop_oneof![Just(1usize), Just(2), Just(4)],
            any::<u32>()
        ),
    ]
}

fn apply(space: &mut ConfigSpace, (offset, len, value): (usize, usize, u32)) -> Vec<ConfigEvent> {
    space.write(offset, &value.to_le_bytes()[..len])
}

fn spaces() -> Vec<ConfigSpace> {
    let pf = pf_82576().unwrap();
    let vf = vf_82576(&pf).unwrap();
    vec![pf, vf]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Bits that are neither read-write nor write-1-to-clear keep their
    /// hardware-initialised value whatever the guest writes.
    #[test]
    fn read_only_bits_never_change(writes in prop::collection::vec(focused_write(), 1..64)) {
        for mut space in spaces() {
            for w in &writes {
                apply(&mut space, *w);
            }
            for offset in 0..4096 {
                let ro = !(space.writable_bits(offset) | space.w1c_bits(offset));
                prop_assert_eq!(
                    space.read_u8(offset) & ro,
                    space.reset_value(offset) & ro,
                    "byte {:#x}", offset
                );
            }
        }
    }

    /// The identity and layout registers a driver keys on, listed independently of
    /// the masks, never change.
    #[test]
    fn identity_and_layout_never_change(writes in prop::collection::vec(focused_write(), 1..64)) {
        let mut pf = pf_82576().unwrap();
        // (offset, width) of read-only registers.
        let fixed = [
            (header::VENDOR_ID, 4), (header::REVISION_ID, 4), (header::HEADER_TYPE, 1),
            (header::CAPABILITIES_POINTER, 1), (header::INTERRUPT_PIN, 1),
            (0x40, 4), (0x50, 2), (0x70, 2), (0x74, 4), (0x78, 4), (0xA0, 4), (0xA4, 4),
            (0x100, 4), (0x150, 4), (SRIOV, 4), (SRIOV + sriov::INITIAL_VFS, 4),
            (SRIOV + sriov::FIRST_VF_OFFSET, 4), (SRIOV + sriov::VF_DEVICE_ID, 2),
            (SRIOV + sriov::SUPPORTED_PAGE_SIZES, 4),
        ];
        let read = |pf: &ConfigSpace| -> Vec<Vec<u8>> {
            fixed.iter().map(|&(o, w)| { let mut b = vec![0; w]; pf.read(o, &mut b); b }).collect()
        };
        let before = read(&pf);
        for w in &writes {
            apply(&mut pf, *w);
        }
        prop_assert_eq!(before, read(&pf));
        prop_assert_eq!(pf.read_u16(0x72) & 0x7FF, 9, "MSI-X Table Size");
        prop_assert_eq!(pf.read_u8(header::HEADER_TYPE), 0x80);
    }

    /// Writing 1 clears a write-1-to-clear bit, writing 0 leaves it; device-set
    /// read-only bits beside them stay.
    #[test]
    fn write_one_to_clear(set in any::<u32>(), written in any::<u32>(), which in 0usize..4) {
        let mut pf = pf_82576().unwrap();
        let (reg, w1c): (usize, u32) = match which {
            0 => (header::STATUS, status::W1C_BITS.into()),
            1 => (0xA0 + exp::DEVSTA, exp::DEVSTA_W1C.into()),
            2 => (0x100 + aer::UNCOR_STATUS, aer::UNCOR_IMPLEMENTED),
            _ => (0x100 + aer::COR_STATUS, aer::COR_IMPLEMENTED),
        };
        let width = if which < 2 { 2 } else { 4 };
        pf.hw_write(reg, &set.to_le_bytes()[..width]);
        let before = pf.read_u32(reg) & (u32::MAX >> (32 - 8 * width));
        pf.write(reg, &written.to_le_bytes()[..width]);
        let after = pf.read_u32(reg) & (u32::MAX >> (32 - 8 * width));
        prop_assert_eq!(after & w1c, before & w1c & !written);
        prop_assert_eq!(after & !w1c, before & !w1c);
    }

    /// All ones reads back the size mask (with the type bits), a driver's size
    /// computation gives the BAR's size, and an aligned address round-trips.
    #[test]
    fn bar_sizing_round_trip(
        kind in prop_oneof![Just(BarKind::Memory32), Just(BarKind::Memory64), Just(BarKind::Io)],
        prefetchable in any::<bool>(),
        size_log2 in 2u32..40,
        index in 0usize..5,
        address in any::<u64>(),
    ) {
        let size = 1u64 << match kind {
            BarKind::Io => size_log2.clamp(2, 8),
            BarKind::Memory32 => size_log2.clamp(4, 31),
            BarKind::Memory64 => size_log2.max(4),
        };
        let bar = Bar { kind, size, prefetchable: prefetchable && kind != BarKind::Io };
        let mut space = ConfigSpace::new(&Header::default());
        space.set_bar(index, bar).unwrap();
        let reg = header::BAR0 + 4 * index;
        space.write(reg, &u32::MAX.to_le_bytes());
        space.write(reg + 4, &u32::MAX.to_le_bytes());
        let (low, high) = (space.read_u32(reg), space.read_u32(reg + 4));
        prop_assert_eq!(low & 0xF & !bar.type_bits() & if kind == BarKind::Io { 0x3 } else { 0xF }, 0);
        prop_assert_eq!(size_from_readback(low, high), size);
        let address = match kind {
            BarKind::Memory64 => address,
            _ => address & 0xFFFF_FFFF,
        } & !(size - 1);
        space.write(reg, &(address as u32).to_le_bytes());
        space.write(reg + 4, &((address >> 32) as u32).to_le_bytes());
        prop_assert_eq!(space.bar_address(index), Some(address));
    }

    /// The same for SR-IOV VF BARs: per-VF size mask, and VF n's copy at base + n * size.
    #[test]
    fn vf_bar_sizing_round_trip(size_log2 in 4u32..40, is_64 in any::<bool>(), base in any::<u64>(), vf in 0u16..8) {
        let size_log2 = if is_64 { size_log2 } else { size_log2.min(31) };
        let bar = if is_64 { Bar::mem64(1 << size_log2) } else { Bar::mem32(1 << size_log2) };
        let mut space = ConfigSpace::new(&Header::default());
        space.add_ext_capability(0x100, &Sriov::new(8, 1).with_vf_bar(2, bar)).unwrap();
        let reg = 0x100 + sriov::VF_BAR0 + 8;
        space.write(reg, &u32::MAX.to_le_bytes());
        space.write(reg + 4, &u32::MAX.to_le_bytes());
        let high = if is_64 { space.read_u32(reg + 4) } else { 0 };
        prop_assert_eq!(size_from_readback(space.read_u32(reg), high), bar.size);
        let base = if is_64 { base } else { base & 0xFFFF_FFFF } & !(bar.size - 1);
        space.write(reg, &(base as u32).to_le_bytes());
        if is_64 {
            space.write(reg + 4, &((base >> 32) as u32).to_le_bytes());
        }
        let state = space.sriov().unwrap();
        prop_assert_eq!(state.vf_bars[2].map(|b| b.bar), Some(bar));
        prop_assert_eq!(
            state.vf_bar_address(vf, 2),
            Some(base.wrapping_add(u64::from(vf) * bar.size))
        );
    }

    /// NumVFs never exceeds TotalVFs, never changes while VF Enable is set, and
    /// the events describe exactly the changes that happened.
    #[test]
    fn numvfs_and_vf_enable_invariants(
        writes in prop::collection::vec(prop_oneof![
            (Just(SRIOV + sriov::NUM_VFS), Just(2usize), 0u32..12),
            (Just(SRIOV + sriov::NUM_VFS), prop_oneof![Just(1usize), Just(2), Just(4)], any::<u32>()),
            (Just(SRIOV + sriov::CONTROL), Just(2usize), 0u32..32),
            (Just(SRIOV + sriov::CONTROL), prop_oneof![Just(1usize), Just(4)], any::<u32>()),
            (SRIOV..SRIOV + 0x40, prop_oneof![Just(1usize), Just(2), Just(4)], any::<u32>()),
        ], 1..48)
    ) {
        let mut pf = pf_82576().unwrap();
        for w in writes {
            let before = pf.sriov().unwrap();
            let events = apply(&mut pf, w);
            let after = pf.sriov().unwrap();
            prop_assert!(after.num_vfs <= after.total_vfs);
            if before.vf_enabled {
                prop_assert_eq!(after.num_vfs, before.num_vfs);
                prop_assert_eq!(after.system_page_size, before.system_page_size);
            }
            let mut expected = Vec::new();
            if after.num_vfs != before.num_vfs {
                expected.push(ConfigEvent::SriovNumVfs(after.num_vfs));
            }
            match (before.vf_enabled, after.vf_enabled) {
                (false, true) => expected.push(ConfigEvent::SriovVfEnable { num_vfs: after.num_vfs }),
                (true, false) => expected.push(ConfigEvent::SriovVfDisable),
                _ => {}
            }
            if before.vf_mse != after.vf_mse {
                expected.push(ConfigEvent::SriovVfMemoryChanged { enabled: after.vf_mse });
            }
            prop_assert_eq!(events, expected);
            prop_assert_eq!(after.total_vfs, 8);
            prop_assert_eq!((after.first_vf_offset, after.vf_stride), (0x80, 2));
        }
    }

    /// Reads never panic and bytes beyond 4 KiB read as 0xFF; out-of-range writes
    /// change nothing.
    #[test]
    fn accesses_anywhere_never_panic(offset in any::<usize>(), len in 0usize..16, value in any::<u64>()) {
        let mut pf = pf_82576().unwrap();
        let reference = pf.clone();
        let mut buf = vec![0u8; len];
        pf.read(offset, &mut buf);
        for (i, b) in buf.iter().enumerate() {
            if offset.checked_add(i).is_none_or(|o| o >= 4096) {
                prop_assert_eq!(*b, 0xFF);
            }
        }
        let bytes = value.to_le_bytes();
        let data = &bytes[..len.min(8)];
        pf.write(offset, data);
        if offset.checked_add(data.len()).is_none_or(|end| end > 4096) || !matches!(data.len(), 1 | 2 | 4) {
            let (mut a, mut b) = (vec![0u8; 4096], vec![0u8; 4096]);
            pf.read(0, &mut a);
            reference.read(0, &mut b);
            prop_assert_eq!(a, b);
        }
    }
}
