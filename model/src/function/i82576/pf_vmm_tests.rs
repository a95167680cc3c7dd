use super::*;
use crate::testing::{PfBar0, SoftIgbPf};
use eswitch::policy::MAX_VID;
use proptest::prelude::*;

const PF_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const LINK: u32 = 1000;

/// The registers after `echo 4 > sriov_numvfs`.
fn enabled() -> (VmmRegs, SoftIgbPf) {
    let mut regs = VmmRegs::new();
    let mut igb = SoftIgbPf::new(4, PF_MAC);
    igb.enable_vfs(&mut regs);
    (regs, igb)
}

#[test]
fn sriov_numvfs_turns_anti_spoof_on_for_every_vf_pool_but_not_the_pfs() {
    let (regs, _) = enabled();
    for vf in 0..4 {
        let p = regs.vf_policy(vf, LINK);
        assert!(p.spoofchk, "VF {vf}");
        assert_eq!(p.validate(LINK), Ok(()));
    }
    assert_eq!(regs.pf_pool(), 4);
    assert_eq!(regs.read(r::DTXSWC).unwrap() & (1 << 4 | 1 << 12), 0);
    assert!(regs.pf_owns(MacAddr(PF_MAC)));
}

#[test]
fn vf_mac_is_the_rar_entry_of_its_pool() {
    let (mut regs, mut igb) = enabled();
    let mac = [2, 0, 0, 0, 0, 0x10];
    igb.set_vf_mac(&mut regs, 0, mac);
    assert_eq!(regs.vf_policy(0, LINK).mac, Some(MacAddr(mac)));
    assert_eq!(regs.vf_policy(1, LINK).mac, None);
    assert!(
        !regs.pf_owns(MacAddr(mac)),
        "a VF pool's MAC is not the PF's"
    );
    // `vf 0 mac 00:00:00:00:00:00`: the entry is no longer valid.
    igb.set_vf_mac(&mut regs, 0, [0; 6]);
    assert_eq!(regs.vf_policy(0, LINK).mac, None);
}

#[test]
fn port_vlan_comes_from_vmvir_and_membership_from_vlvf_and_vfta() {
    let (mut regs, mut igb) = enabled();
    igb.set_vf_vlan(&mut regs, 1, 10, 3);
    let p = regs.vf_policy(1, LINK);
    assert_eq!(p.port_vlan, Some(PortVlan { vid: 10, qos: 3 }));
    assert!(
        p.vlan_filters.is_empty(),
        "the port VLAN is not a VGT filter"
    );
    assert_eq!(regs.pool_vlans(1), vec![10]);
    assert!(regs.rx_vlan_strip(1));
    assert_eq!(regs.read(r::VMOLR0 + 4).unwrap() & vmolr::AUPE, 0);
    assert!(regs.vf_policy(0, LINK).port_vlan.is_none());
    // Moving to VLAN 20 revokes 10; `vlan 0` removes the port VLAN.
    igb.set_vf_vlan(&mut regs, 1, 20, 0);
    assert_eq!(regs.pool_vlans(1), vec![20]);
    igb.set_vf_vlan(&mut regs, 1, 0, 0);
    assert_eq!(regs.vf_policy(1, LINK).port_vlan, None);
    assert!(!regs.pool_vlans(1).contains(&20));
}

#[test]
fn vmvir_vlana_chooses_the_port_tag_never_or_the_descriptors() {
    let (mut regs, _) = enabled();
    let policy = |regs: &mut VmmRegs, v: u32| {
        regs.write(r::VMVIR0 + 4 * 2, v);
        let p = regs.vf_policy(2, LINK);
        (p.port_vlan, p.tx_vlan_never)
    };
    // 00: the descriptor's tag; the VID field means nothing then.
    assert_eq!(policy(&mut regs, 30), (None, false));
    // 01: always insert the default tag.
    assert_eq!(
        policy(&mut regs, vmvir::VLANA_DEFAULT | 3 << 13 | 30),
        (Some(PortVlan { vid: 30, qos: 3 }), false)
    );
    // 10: never insert.
    assert_eq!(policy(&mut regs, vmvir::VLANA_NEVER | 30), (None, true));
    // 11 is reserved: neither.
    assert_eq!(policy(&mut regs, vmvir::VLANA_MASK | 30), (None, false));
    assert!(!regs.vf_policy(1, LINK).tx_vlan_never, "pool 2's alone");
}

#[test]
fn vgt_vlans_of_one_vf_are_not_anothers() {
    let (mut regs, _) = enabled();
    SoftIgbPf::vfta_set(&mut regs, 100, 2, true);
    SoftIgbPf::vfta_set(&mut regs, 100, 3, true);
    SoftIgbPf::vfta_set(&mut regs, 200, 3, true);
    assert_eq!(regs.vf_policy(2, LINK).vlan_filters, vec![100]);
    assert_eq!(regs.vf_policy(3, LINK).vlan_filters, vec![100, 200]);
    assert!(regs.vf_policy(0, LINK).vlan_filters.is_empty());
    // Pool 2 leaves 100; pool 3 stays in it.
    SoftIgbPf::vfta_set(&mut regs, 100, 2, false);
    assert!(regs.vf_policy(2, LINK).vlan_filters.is_empty());
    assert_eq!(regs.vf_policy(3, LINK).vlan_filters, vec![100, 200]);
}

#[test]
fn spoofchk_off_clears_both_dtxswc_bits() {
    let (mut regs, _) = enabled();
    SoftIgbPf::set_vf_spoofchk(&mut regs, 2, false);
    let (two, one) = (regs.vf_policy(2, LINK), regs.vf_policy(1, LINK));
    assert!(!two.spoofchk && !two.vlan_spoofchk);
    assert!(one.spoofchk && one.vlan_spoofchk);
    assert_eq!(regs.read(r::DTXSWC).unwrap() & (1 << 2 | 1 << 10), 0);
}

#[test]
fn each_dtxswc_anti_spoof_bit_is_its_own_check() {
    let (mut regs, _) = enabled();
    let v = regs.read(r::DTXSWC).unwrap();
    // Pool 2's VLAN bit (10) off, pool 3's MAC bit (3) off: as a PF driver other than igb may.
    let _ = regs.write(r::DTXSWC, v & !(1 << 10 | 1 << 3));
    let (two, three) = (regs.vf_policy(2, LINK), regs.vf_policy(3, LINK));
    assert_eq!((two.spoofchk, two.vlan_spoofchk), (true, false));
    assert_eq!((three.spoofchk, three.vlan_spoofchk), (false, true));
    let one = regs.vf_policy(1, LINK);
    assert_eq!((one.spoofchk, one.vlan_spoofchk), (true, true));
}

#[test]
fn max_tx_rate_300_programs_0x8000d555_and_reads_back_300() {
    let (mut regs, igb) = enabled();
    igb.set_vf_rate(&mut regs, 3, 300);
    assert_eq!(regs.read(r::RTTBCNRC), Some(0x8000_D555));
    assert_eq!(regs.vf_policy(3, LINK).max_tx_rate, 300);
    assert_eq!(regs.vf_policy(2, LINK).max_tx_rate, 0);
    igb.set_vf_rate(&mut regs, 3, 0);
    assert_eq!(regs.vf_policy(3, LINK).max_tx_rate, 0);
}

#[test]
fn lpe_sets_the_largest_frame() {
    let (mut regs, _) = enabled();
    let v = regs.read(r::VMOLR0).unwrap();
    let _ = regs.write(r::VMOLR0, v | vmolr::LPE | 9022);
    assert_eq!(regs.vf_policy(0, LINK).max_frame, 9022);
    let _ = regs.write(r::VMOLR0, v | vmolr::LPE | 10);
    assert_eq!(regs.vf_policy(0, LINK).max_frame, MIN_FRAME_LIMIT);
    let _ = regs.write(r::VMOLR0, v & !vmolr::LPE);
    assert_eq!(regs.vf_policy(0, LINK).max_frame, DEFAULT_MAX_FRAME);
}

#[test]
fn a_vf_reset_stops_its_pool_only() {
    let (mut regs, _) = enabled();
    regs.vf_reset(1);
    assert!(!regs.rx_enabled(1) && !regs.tx_enabled(1));
    assert!(regs.rx_enabled(0) && regs.tx_enabled(2));
    // The switch delivers nothing to a pool whose receive is off.
    assert!(!regs.vf_policy(1, LINK).rx_enabled);
    assert!(regs.vf_policy(0, LINK).rx_enabled);
    regs.vf_reset(99);
}

#[test]
fn vmolr_bam_and_aupe_vfte_and_loopback_reach_the_policy_and_the_switch() {
    let (mut regs, _) = enabled();
    assert!(
        regs.loopback(),
        "igb_vmm_control turns VM-to-VM loopback on with VFs"
    );
    // igb_vf_reset → igb_set_vmolr(adapter, vf, true): BAM and AUPE on the VF's pool.
    for vf in 0..2u64 {
        let vmolr = regs.read(r::VMOLR0 + 4 * vf).unwrap();
        regs.write(r::VMOLR0 + 4 * vf, vmolr | vmolr::BAM | vmolr::AUPE);
    }
    let p = regs.vf_policy(0, LINK);
    assert!(p.accept_broadcast && p.accept_untagged && p.tx_enabled);
    let vmolr = regs.read(r::VMOLR0).unwrap();
    regs.write(r::VMOLR0, vmolr & !(vmolr::BAM | vmolr::AUPE));
    let p = regs.vf_policy(0, LINK);
    assert!(!p.accept_broadcast && !p.accept_untagged);
    assert!(
        regs.vf_policy(1, LINK).accept_broadcast,
        "VF 1's VMOLR is its own"
    );
    let vfte = regs.read(r::VFTE).unwrap();
    regs.write(r::VFTE, vfte & !(1 << 2));
    assert!(!regs.vf_policy(2, LINK).tx_enabled);
    let dtxswc = regs.read(r::DTXSWC).unwrap();
    regs.write(r::DTXSWC, dtxswc & !dtxswc::LOOPBACK_EN);
    assert!(!regs.loopback());
}

#[test]
fn rttbcnrc_reads_back_the_selected_queue() {
    let mut regs = VmmRegs::new();
    let _ = regs.write(r::RTTDQSEL, 2);
    let _ = regs.write(r::RTTBCNRC, 0x8000_4000);
    let _ = regs.write(r::RTTDQSEL, 3);
    assert_eq!(regs.read(r::RTTBCNRC), Some(0));
    let _ = regs.write(r::RTTDQSEL, 2);
    assert_eq!(regs.read(r::RTTBCNRC), Some(0x8000_4000));
    assert_eq!(regs.rate_mbps(2, LINK), 1000);
}

fn vmm_offset() -> impl Strategy<Value = u64> {
    prop_oneof![
        (0u64..24).prop_map(|i| if i < 16 {
            r::RA + 8 * i
        } else {
            r::RA2 + 8 * (i - 16)
        }),
        (0u64..24).prop_map(|i| 4 + if i < 16 {
            r::RA + 8 * i
        } else {
            r::RA2 + 8 * (i - 16)
        }),
        (0u64..128).prop_map(|i| r::MTA + 4 * i),
        (0u64..128).prop_map(|i| r::VFTA + 4 * i),
        (0u64..32).prop_map(|i| r::VLVF0 + 4 * i),
        (0u64..8).prop_map(|i| r::VMOLR0 + 4 * i),
        (0u64..8).prop_map(|i| r::VMVIR0 + 4 * i),
        Just(r::DTXSWC),
        Just(r::VFRE),
        Just(r::VFTE),
        Just(r::RTTDQSEL),
        Just(r::RTTBCNRC),
        Just(r::VT_CTL),
        Just(r::MBVFIMR),
        any::<u64>(),
    ]
}

fn mac_of(regs: &mut VmmRegs, index: usize) -> (MacAddr, u32) {
    let (l, h) = if index < 16 {
        (r::RA + 8 * index as u64, r::RA + 8 * index as u64 + 4)
    } else {
        let b = r::RA2 + 8 * (index as u64 - 16);
        (b, b + 4)
    };
    let l = regs.rd(l).to_le_bytes();
    let h = regs.rd(h);
    let hb = h.to_le_bytes();
    (MacAddr([l[0], l[1], l[2], l[3], hb[0], hb[1]]), h)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the guest writes, every VF's policy is valid, its addresses are RAR entries
    /// of its own pool, and its VLANs are VLVF entries with its own pool bit.
    #[test]
    fn any_register_writes_give_valid_policies_of_the_vfs_own_pool(
        writes in proptest::collection::vec((vmm_offset(), any::<u32>()), 0..64),
        link in prop_oneof![Just(100u32), Just(1000u32), Just(10u32)],
    ) {
        let (mut regs, _) = enabled();
        for (o, v) in writes {
            let _ = regs.write(o, v);
            let _ = regs.read(o);
        }
        for vf in 0..POOLS {
            let p = regs.vf_policy(vf, link);
            prop_assert_eq!(p.validate(link), Ok(()));
            let own: Vec<MacAddr> = (0..24)
                .map(|i| mac_of(&mut regs, i))
                .filter(|(_, h)| h & rah::AV != 0 && h & rah::ASEL_MASK == 0
                    && h & (1 << (18 + vf)) != 0)
                .map(|(m, _)| m)
                .collect();
            for m in p.mac.iter().chain(&p.mac_filters) {
                prop_assert!(own.contains(m), "VF {} got {} from another pool", vf, m);
            }
            for vid in &p.vlan_filters {
                let member = (0..32).any(|i| {
                    let e = regs.read(r::VLVF0 + 4 * i).unwrap();
                    e & vlvf::VLANID_ENABLE != 0
                        && (e & vlvf::VLANID_MASK) as u16 == *vid
                        && e & (1 << (vlvf::POOLSEL_SHIFT as usize + vf)) != 0
                });
                prop_assert!(member, "VF {} got VLAN {} it is not a member of", vf, vid);
                prop_assert!(*vid <= MAX_VID);
            }
            prop_assert!(p.max_tx_rate <= link);
        }
        prop_assert_eq!(regs.vf_policy(POOLS, link), VfPolicy::default());
    }

    /// igb's rate factor for any rate up to the link reads back as that rate.
    #[test]
    fn rate_limit_round_trips(rate in 1u32..=1000, vf in 0usize..7) {
        let (mut regs, igb) = enabled();
        igb.set_vf_rate(&mut regs, vf, rate);
        prop_assert_eq!(regs.vf_policy(vf, LINK).max_tx_rate, rate);
    }

    /// DTXSWC's MAC bit is the VF's spoof check, whatever else is written there.
    #[test]
    fn spoofchk_is_the_pools_mac_anti_spoof_bit(v in any::<u32>(), vf in 0usize..8) {
        let mut regs = VmmRegs::new();
        let _ = regs.write(r::DTXSWC, v);
        prop_assert_eq!(regs.vf_policy(vf, LINK).spoofchk, v & (1 << vf) != 0);
    }
}
