//! The reset handshake and every message, driven through the register semantics the way Linux
//! igbvf drives them, answered by the PF agent as igb would.

mod common;

use common::{mac_words, DrvError, Igbvf, Nic, Servicing, ADMIN_MAC, RANDOM_MAC};
use eswitch::{MacAddr, PortVlan};
use mailbox::regs::{msg, p2v, v2p, MAILBOX_WORDS};
use mailbox::{
    AgentConfig, MacAssignment, MailboxMsg, Owner, PolicyChange, PromiscPolicy, RefusalReason,
    ResetChange, Trigger,
};

const VLAN_ACK: u32 = msg::ID_SET_VLAN as u32 | msg::ACK;
const VLAN_NACK: u32 = msg::ID_SET_VLAN as u32 | msg::NACK;

fn refusals(nic: &Nic, vf: usize, r: RefusalReason) -> u64 {
    nic.agent.refusals(vf).get(r)
}

#[test]
fn reset_handshake_without_admin_mac_nacks_with_zero_mac_then_vf_registers_random_mac() {
    let mut nic = Nic::with_vfs(2);
    let mut drv = Igbvf::new(0);
    assert_eq!(drv.reset_hw(&mut nic), Err(DrvError::NoMac));
    // The reply: NACK, zero MAC, no CTS.
    assert_eq!(&nic.mbx[0].words()[..3], &[0x4000_0001, 0, 0]);
    assert_eq!(
        nic.policy[0].mac, None,
        "the seed report's 00:00:00:00:00:00"
    );
    assert!(nic.agent.is_clear_to_send(0));
    // A NACKed reset is not a refusal.
    assert_eq!(nic.agent.refusals(0).total(), 0);

    drv.addr = RANDOM_MAC;
    drv.init_hw(&mut nic).unwrap();
    assert_eq!(drv.addr, RANDOM_MAC);
    assert_eq!(nic.policy[0].mac, Some(RANDOM_MAC));
    assert_eq!(nic.mbx[0].last_word0(), 0xA000_0002, "ACK|CTS|SET_MAC_ADDR");
    assert!(
        drv.link_up(&mut nic),
        "word 0 of the last PF message carries CTS"
    );
    // The VF's ACK from the link check is ignored for a CTS VF.
    assert!(matches!(nic.last_outcome().trigger, Trigger::Request(_)));
    // The other VF was never touched.
    assert_eq!(nic.mbx[1].words(), &[0; MAILBOX_WORDS]);
    assert_eq!(nic.vf_irqs[1], 0);
}

#[test]
fn reset_handshake_with_admin_mac_acks_with_it() {
    let mut nic = Nic::with_vfs(2);
    nic.policy[1].mac = Some(ADMIN_MAC);
    nic.policy[1].admin_mac = true;
    let mut drv = Igbvf::new(1);
    assert_eq!(drv.reset_hw(&mut nic), Ok(ADMIN_MAC));
    assert_eq!(
        &nic.mbx[1].words()[..3],
        &[0x8000_0001, 0x0000_0002, 0x1000]
    );
    let reset = nic
        .outcomes
        .iter()
        .find_map(|o| match &o.policy_change {
            Some(PolicyChange::Reset(r)) if r.rx_tx_enabled => Some(*r),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        reset,
        ResetChange {
            mac: Some(ADMIN_MAC),
            rx_tx_enabled: true
        }
    );
    // igbvf then registers its MAC: igb refuses any SET_MAC_ADDR from an untrusted VF with an
    // admin MAC, even the same MAC, so this NACK (and igb's warning) is normal at VF load.
    drv.init_hw(&mut nic).unwrap();
    assert_eq!(nic.mbx[1].last_word0(), 0x6000_0002);
    assert_eq!(drv.addr, ADMIN_MAC);
    assert_eq!(nic.policy[1].mac, Some(ADMIN_MAC));
    assert!(drv.link_up(&mut nic), "NACK|CTS still brings the link up");
}

#[test]
fn vflre_alone_forgets_vf_mac_but_keeps_admin_mac_and_revokes_cts() {
    let mut nic = Nic::with_vfs(2);
    let mut drv = Igbvf::new(0);
    drv.probe(&mut nic, RANDOM_MAC).unwrap();
    nic.policy[0].vlan_filters = vec![5];
    nic.policy[0].mc_hashes = vec![0x10];
    assert!(nic.agent.is_clear_to_send(0));
    nic.vf_ctrl_rst(0);
    assert!(!nic.agent.is_clear_to_send(0));
    assert_eq!(nic.policy[0].mac, None);
    assert!(nic.policy[0].vlan_filters.is_empty());
    assert!(nic.policy[0].mc_hashes.is_empty());
    assert!(
        !nic.policy[0].rx_enabled && !nic.policy[0].tx_enabled,
        "VFRE/VFTE cleared"
    );
    assert_eq!(
        nic.last_outcome().policy_change,
        Some(PolicyChange::Reset(ResetChange {
            mac: None,
            rx_tx_enabled: false
        }))
    );

    nic.policy[1].mac = Some(ADMIN_MAC);
    nic.policy[1].admin_mac = true;
    nic.vf_ctrl_rst(1);
    assert_eq!(nic.policy[1].mac, Some(ADMIN_MAC));

    // The VF_RESET reply sets them again, a NACK (no MAC assigned) as well.
    assert_eq!(drv.reset_hw(&mut nic), Err(DrvError::NoMac));
    assert!(nic.policy[0].rx_enabled && nic.policy[0].tx_enabled);
}

#[test]
fn generated_mode_gives_each_vf_a_deterministic_locally_administered_mac() {
    let mut cfg = AgentConfig::new(3);
    cfg.mac_assignment = MacAssignment::Generated {
        seed: [0xAB, 0xCD, 0xEF],
    };
    let mut nic = Nic::new(cfg);
    let mut drv = Igbvf::new(2);
    let mac = drv.reset_hw(&mut nic).unwrap();
    assert_eq!(mac, MacAddr([0x02, 0xAB, 0xCD, 0xEF, 0x00, 0x02]));
    assert!(mac.is_valid_unicast());
    assert_eq!(nic.policy[2].mac, Some(mac));
    assert!(
        !nic.policy[2].admin_mac,
        "a generated MAC is not administrative"
    );
    // The VF may still change it.
    drv.addr = RANDOM_MAC;
    drv.init_hw(&mut nic).unwrap();
    assert_eq!(nic.policy[2].mac, Some(RANDOM_MAC));
    // And gets the same one back after a reset.
    assert_eq!(drv.reset_hw(&mut nic), Ok(mac));
}

#[test]
fn admin_mac_trust_matrix() {
    // (admin MAC set, trusted) → SET_MAC_ADDR to another MAC accepted?
    for (admin, trusted, accepted) in [
        (false, false, true),
        (false, true, true),
        (true, false, false),
        (true, true, true),
    ] {
        let mut nic = Nic::with_vfs(1);
        if admin {
            nic.policy[0].mac = Some(ADMIN_MAC);
            nic.policy[0].admin_mac = true;
        }
        nic.policy[0].trust = trusted;
        let mut drv = Igbvf::new(0);
        drv.probe(&mut nic, RANDOM_MAC).unwrap();
        let before = nic.agent.refusals(0).get(RefusalReason::AdminMacOverride);
        let wanted = MacAddr([0x02, 0x99, 0x88, 0x77, 0x66, 0x55]);
        drv.addr = wanted;
        drv.init_hw(&mut nic).unwrap();
        let case = format!("admin={admin} trusted={trusted}");
        if accepted {
            assert_eq!(nic.policy[0].mac, Some(wanted), "{case}");
            assert_eq!(drv.addr, wanted, "{case}");
            assert_eq!(nic.mbx[0].last_word0(), 0xA000_0002, "{case}");
        } else {
            // The guest thinks it changed; igbvf reverts to perm_addr; the log says it failed.
            assert_eq!(nic.policy[0].mac, Some(ADMIN_MAC), "{case}");
            assert_eq!(drv.addr, ADMIN_MAC, "{case}");
            assert_eq!(nic.mbx[0].last_word0(), 0x6000_0002, "{case}: NACK|CTS");
            assert_eq!(
                nic.agent.refusals(0).get(RefusalReason::AdminMacOverride),
                before + 1,
                "{case}"
            );
            let r = nic.last_outcome().refusal.unwrap();
            assert_eq!((r.vf, r.reason), (0, RefusalReason::AdminMacOverride));
        }
        // The link comes up either way: the reply carries CTS.
        assert!(drv.link_up(&mut nic), "{case}");
    }
}

#[test]
fn invalid_station_mac_is_nacked() {
    let mut nic = Nic::with_vfs(1);
    let mut drv = Igbvf::new(0);
    drv.probe(&mut nic, RANDOM_MAC).unwrap();
    for bad in [MacAddr::ZERO, MacAddr([0x01, 0, 0x5e, 0, 0, 1])] {
        let (lo, hi) = mac_words(bad);
        let r = drv
            .request(&mut nic, &[msg::ID_SET_MAC_ADDR as u32, lo, hi], 1)
            .unwrap();
        assert_eq!(r, 0x6000_0002);
    }
    assert_eq!(refusals(&nic, 0, RefusalReason::InvalidMac), 2);
    assert_eq!(nic.policy[0].mac, Some(RANDOM_MAC));
}

#[test]
fn mac_filter_subops() {
    let mut nic = Nic::with_vfs(2);
    let mut drv = Igbvf::new(0);
    drv.probe(&mut nic, RANDOM_MAC).unwrap();
    // igbvf's FILTER_CLR carries a zero MAC: igb NACKs it ("invalid MAC filter").
    let r = drv.request(&mut nic, &[0x0001_0002, 0, 0], 1).unwrap();
    assert_eq!(r, 0x6001_0002);
    assert_eq!(refusals(&nic, 0, RefusalReason::InvalidMacFilter), 1);
    // FILTER_ADD with a valid MAC is accepted (9 spare RAR entries for 2 VFs...).
    let extra = MacAddr([0x02, 1, 2, 3, 4, 5]);
    let (lo, hi) = mac_words(extra);
    let r = drv.request(&mut nic, &[0x0002_0002, lo, hi], 1).unwrap();
    assert_eq!(r, 0xA002_0002);
    assert_eq!(nic.policy[0].mac_filters, vec![extra]);
    // Adding it again is idempotent.
    drv.request(&mut nic, &[0x0002_0002, lo, hi], 1).unwrap();
    assert_eq!(nic.policy[0].mac_filters, vec![extra]);
    // CLR with a valid MAC clears.
    let r = drv.request(&mut nic, &[0x0001_0002, lo, hi], 1).unwrap();
    assert_eq!(r, 0xA001_0002);
    assert!(nic.policy[0].mac_filters.is_empty());
    // Unknown sub-op.
    let r = drv.request(&mut nic, &[0x0009_0002, lo, hi], 1).unwrap();
    assert_eq!(r, 0x6009_0002);
    assert_eq!(refusals(&nic, 0, RefusalReason::UnsupportedMacFilterOp), 1);
    // Admin MAC + untrusted: filters denied too.
    nic.policy[0].admin_mac = true;
    nic.policy[0].mac = Some(ADMIN_MAC);
    let r = drv.request(&mut nic, &[0x0002_0002, lo, hi], 1).unwrap();
    assert_eq!(r, 0x6002_0002);
    assert_eq!(refusals(&nic, 0, RefusalReason::MacFilterDenied), 1);
}

#[test]
fn mac_filters_are_bounded_per_vf() {
    // 7 VFs: 24 - 4 - 7 = 13 spare entries, 1 per VF.
    let mut nic = Nic::with_vfs(7);
    let mut drv = Igbvf::new(3);
    drv.probe(&mut nic, RANDOM_MAC).unwrap();
    let (lo, hi) = mac_words(MacAddr([0x02, 0, 0, 0, 0, 1]));
    assert_eq!(
        drv.request(&mut nic, &[0x0002_0002, lo, hi], 1).unwrap(),
        0xA002_0002
    );
    let (lo, hi) = mac_words(MacAddr([0x02, 0, 0, 0, 0, 2]));
    assert_eq!(
        drv.request(&mut nic, &[0x0002_0002, lo, hi], 1).unwrap(),
        0x6002_0002
    );
    assert_eq!(refusals(&nic, 3, RefusalReason::MacFilterNoSpace), 1);
}

#[test]
fn set_multicast_stores_hashes_and_overflow_means_all_multicast_even_untrusted() {
    let mut nic = Nic::with_vfs(1);
    let mut drv = Igbvf::new(0);
    drv.probe(&mut nic, RANDOM_MAC).unwrap();
    drv.set_multicast(&mut nic, &[0x0123, 0x0456, 0x0789])
        .unwrap();
    assert_eq!(nic.policy[0].mc_hashes, vec![0x123, 0x456, 0x789]);
    assert!(!nic.policy[0].mc_overflow && !nic.policy[0].effective_allmulti());
    assert_eq!(nic.mbx[0].last_word0(), 0xA003_0003);
    // A count above 30 (not what igbvf sends, but legal on the wire) → keep 30 and receive all
    // multicast, although the VF is not trusted (igb sets VMOLR.MPME).
    let mut words = [0u32; MAILBOX_WORDS];
    words[0] = 0x0028_0003;
    for (i, w) in words[1..].iter_mut().enumerate() {
        *w = ((2 * i as u32 + 1) << 16) | (2 * i as u32);
    }
    drv.write_posted(&mut nic, &words).unwrap();
    assert_eq!(nic.policy[0].mc_hashes.len(), 30);
    assert!(!nic.policy[0].trust);
    assert!(nic.policy[0].mc_overflow && nic.policy[0].effective_allmulti());
    assert!(
        !nic.policy[0].allmulti,
        "overflow is not a promiscuous request"
    );
    // Back to a short list clears it.
    drv.set_multicast(&mut nic, &[]).unwrap();
    assert!(nic.policy[0].mc_hashes.is_empty());
    assert!(!nic.policy[0].mc_overflow && !nic.policy[0].effective_allmulti());
}

#[test]
fn set_vlan_add_remove_and_vid_zero() {
    let mut nic = Nic::with_vfs(2);
    let mut drv = Igbvf::new(1);
    drv.probe(&mut nic, RANDOM_MAC).unwrap();
    assert_eq!(drv.set_vlan(&mut nic, 0, true).unwrap(), VLAN_ACK | 1 << 16);
    assert_eq!(
        drv.set_vlan(&mut nic, 100, true).unwrap(),
        VLAN_ACK | 1 << 16
    );
    assert_eq!(nic.policy[1].vlan_filters, vec![0, 100]);
    // Removing VID 0 is a no-op ACK.
    assert_eq!(drv.set_vlan(&mut nic, 0, false).unwrap(), VLAN_ACK);
    assert_eq!(nic.policy[1].vlan_filters, vec![0, 100]);
    assert_eq!(drv.set_vlan(&mut nic, 100, false).unwrap(), VLAN_ACK);
    assert_eq!(nic.policy[1].vlan_filters, vec![0]);
}

#[test]
fn set_vlan_is_refused_when_a_port_vlan_is_set() {
    let mut nic = Nic::with_vfs(1);
    nic.policy[0].port_vlan = Some(PortVlan { vid: 10, qos: 3 });
    let mut drv = Igbvf::new(0);
    drv.probe(&mut nic, RANDOM_MAC).unwrap();
    assert_eq!(
        drv.set_vlan(&mut nic, 20, true).unwrap(),
        VLAN_NACK | 1 << 16
    );
    assert_eq!(
        drv.set_vlan(&mut nic, 0, true).unwrap(),
        VLAN_NACK | 1 << 16
    );
    assert!(nic.policy[0].vlan_filters.is_empty());
    assert_eq!(refusals(&nic, 0, RefusalReason::PortVlanOverride), 2);
    // Priority-only tagging (VID 0) does not lock the VF's VLANs, as in igb.
    nic.policy[0].port_vlan = Some(PortVlan { vid: 0, qos: 5 });
    assert_eq!(
        drv.set_vlan(&mut nic, 20, true).unwrap(),
        VLAN_ACK | 1 << 16
    );
}

#[test]
fn vlvf_table_is_shared_with_a_per_vf_cap() {
    // 7 VFs share 31 VLVF entries: 4 each.
    let mut nic = Nic::with_vfs(7);
    let (cap, used) = nic.agent.vlan_budget();
    assert_eq!((cap, used), (4, 0));
    let mut greedy = Igbvf::new(0);
    greedy.probe(&mut nic, RANDOM_MAC).unwrap();
    for vid in 1..=4 {
        assert_eq!(
            greedy.set_vlan(&mut nic, vid, true).unwrap(),
            VLAN_ACK | 1 << 16
        );
    }
    assert_eq!(
        greedy.set_vlan(&mut nic, 5, true).unwrap(),
        VLAN_NACK | 1 << 16
    );
    assert_eq!(refusals(&nic, 0, RefusalReason::VlanPerVfLimit), 1);
    // Every other VF still gets its full share.
    for vf in 1..7 {
        let mut d = Igbvf::new(vf);
        d.probe(&mut nic, RANDOM_MAC).unwrap();
        for i in 0..4 {
            let vid = 100 + (vf as u16) * 10 + i;
            assert_eq!(
                d.set_vlan(&mut nic, vid, true).unwrap(),
                VLAN_ACK | 1 << 16,
                "vf {vf}"
            );
        }
    }
    assert_eq!(nic.agent.vlan_budget().1, 28);
}

#[test]
fn vlvf_table_full_is_refused() {
    let mut cfg = AgentConfig::new(2);
    cfg.limits.vlvf_slots = 3; // VID 0 + two shared entries
    cfg.vlans_per_vf = Some(2);
    let mut nic = Nic::new(cfg);
    let mut a = Igbvf::new(0);
    let mut b = Igbvf::new(1);
    a.probe(&mut nic, RANDOM_MAC).unwrap();
    b.probe(&mut nic, RANDOM_MAC).unwrap();
    assert_eq!(a.set_vlan(&mut nic, 7, true).unwrap(), VLAN_ACK | 1 << 16);
    assert_eq!(a.set_vlan(&mut nic, 8, true).unwrap(), VLAN_ACK | 1 << 16);
    // Joining a VID that already has an entry needs no new one.
    assert_eq!(b.set_vlan(&mut nic, 7, true).unwrap(), VLAN_ACK | 1 << 16);
    assert_eq!(b.set_vlan(&mut nic, 9, true).unwrap(), VLAN_NACK | 1 << 16);
    assert_eq!(refusals(&nic, 1, RefusalReason::VlanNoSpace), 1);
}

#[test]
fn set_lpe_is_bounded_to_rlpml_max() {
    let mut nic = Nic::with_vfs(1);
    let mut drv = Igbvf::new(0);
    drv.probe(&mut nic, RANDOM_MAC).unwrap();
    drv.set_lpe(&mut nic, 9018 + 4).unwrap();
    assert_eq!(nic.policy[0].max_frame, 9022);
    assert_eq!(nic.mbx[0].last_word0(), 0xA000_0005);
    drv.set_lpe(&mut nic, u32::MAX).unwrap();
    assert_eq!(nic.policy[0].max_frame, 0x3F00);
}

#[test]
fn under_the_trusted_only_policy_promiscuous_needs_trust() {
    for trusted in [false, true] {
        let mut cfg = AgentConfig::new(1);
        cfg.promisc = PromiscPolicy::TrustedOnly;
        let mut nic = Nic::new(cfg);
        nic.policy[0].trust = trusted;
        let mut drv = Igbvf::new(0);
        drv.probe(&mut nic, RANDOM_MAC).unwrap();
        let r = drv.request(&mut nic, &[0x0003_0006], 1).unwrap();
        if trusted {
            assert_eq!(r, 0xA003_0006);
            assert!(nic.policy[0].allmulti && nic.policy[0].promisc);
        } else {
            assert_eq!(r, 0x6003_0006);
            assert!(!nic.policy[0].allmulti && !nic.policy[0].promisc);
            assert_eq!(refusals(&nic, 0, RefusalReason::PromiscNotTrusted), 1);
        }
        // Turning promiscuous modes off is always accepted.
        assert_eq!(
            drv.request(&mut nic, &[0x0000_0006], 1).unwrap(),
            0xA000_0006
        );
        assert!(!nic.policy[0].allmulti && !nic.policy[0].promisc);
        // Undefined flags are refused.
        assert_eq!(
            drv.request(&mut nic, &[0x0080_0006], 1).unwrap(),
            0x6080_0006
        );
    }
}

#[test]
fn by_default_as_igb_multicast_promisc_for_anyone_and_unicast_never() {
    let cfg = AgentConfig::new(1);
    assert_eq!(
        cfg.promisc,
        PromiscPolicy::Igb,
        "igb's decision is the default"
    );
    let mut nic = Nic::new(cfg);
    let mut drv = Igbvf::new(0);
    drv.probe(&mut nic, RANDOM_MAC).unwrap();
    assert_eq!(
        drv.request(&mut nic, &[0x0002_0006], 1).unwrap(),
        0xA002_0006
    );
    assert!(nic.policy[0].allmulti);
    assert_eq!(
        drv.request(&mut nic, &[0x0001_0006], 1).unwrap(),
        0x6001_0006
    );
    assert!(!nic.policy[0].promisc && !nic.policy[0].allmulti);
    assert_eq!(refusals(&nic, 0, RefusalReason::UnsupportedPromiscFlags), 1);
}

#[test]
fn unknown_message_gets_nack_with_cts() {
    let mut nic = Nic::with_vfs(1);
    let mut drv = Igbvf::new(0);
    drv.probe(&mut nic, RANDOM_MAC).unwrap();
    assert_eq!(
        drv.request(&mut nic, &[0x0042_0077, 1, 2], 1).unwrap(),
        0x6042_0077
    );
    assert_eq!(refusals(&nic, 0, RefusalReason::UnknownMessage), 1);
    assert!(matches!(
        nic.last_outcome().trigger,
        Trigger::Request(Some(ref m)) if m.msg == MailboxMsg::Unknown { id: 0x77, info: 0x42 }
    ));
    // VF_RESET with junk in MSGINFO is not a reset for igb either.
    assert_eq!(
        drv.request(&mut nic, &[0x0005_0001], 1).unwrap(),
        0x6005_0001
    );
    // Words 1.. are left as the VF wrote them.
    assert_eq!(nic.mbx[0].words()[1], 1);
}

#[test]
fn messages_before_the_reset_handshake_are_nacked_without_cts_rate_limited() {
    let mut nic = Nic::with_vfs(1);
    let mut drv = Igbvf::new(0);
    // Not reset yet: a SET_MAC_ADDR gets NACK (no CTS) the first time...
    drv.arm_timeout();
    let (lo, hi) = mac_words(RANDOM_MAC);
    let r = drv
        .request(&mut nic, &[msg::ID_SET_MAC_ADDR as u32, lo, hi], 1)
        .unwrap();
    assert_eq!(r, 0x4000_0002);
    // ... after a VFLRE, within 2 s, nothing comes back: the VF times out.
    nic.vf_ctrl_rst(0);
    let mut drv = Igbvf::new(0);
    drv.arm_timeout();
    // The PF read it (PFACK) but sends no reply.
    assert_eq!(
        drv.request(&mut nic, &[msg::ID_SET_MAC_ADDR as u32, lo, hi], 1),
        Err(DrvError::Timeout)
    );
    assert_eq!(refusals(&nic, 0, RefusalReason::NotClearToSend), 2);
    assert_eq!(nic.policy[0].mac, None);
    // The mailbox is free again, not held by the PF.
    assert_eq!(nic.mbx[0].owner(), Owner::Nobody);
}

#[test]
fn ack_from_a_non_cts_vf_gets_a_bare_nack_at_most_every_2s() {
    let mut nic = Nic::with_vfs(1);
    // The VF reads the mailbox (link check) without ever having reset.
    let mut drv = Igbvf::new(0);
    assert!(!drv.link_up(&mut nic));
    assert_eq!(nic.mbx[0].last_word0(), msg::NACK);
    let nacks = |nic: &Nic| {
        nic.outcomes
            .iter()
            .filter(|o| o.trigger == Trigger::Ack)
            .count()
    };
    assert_eq!(nacks(&nic), 1);
    nic.advance(1_000_000_000);
    assert!(!drv.link_up(&mut nic));
    assert_eq!(nacks(&nic), 1);
    nic.advance(1_500_000_000);
    assert!(!drv.link_up(&mut nic));
    assert_eq!(nacks(&nic), 2);
}

#[test]
fn ping_carries_cts_only_after_the_handshake() {
    let mut nic = Nic::with_vfs(2);
    let mut drv = Igbvf::new(0);
    drv.probe(&mut nic, RANDOM_MAC).unwrap();
    let outs = nic.agent.ping_all(&mut nic.mbx);
    assert_eq!(outs.len(), 2);
    assert!(outs.iter().all(|o| o.reply.as_ref().unwrap().delivered));
    assert_eq!(nic.mbx[0].last_word0(), 0x2000_0100);
    assert_eq!(nic.mbx[1].last_word0(), 0x0000_0100);
    assert!(drv.link_up(&mut nic));
    // The PF posted STS: the VF sees PFSTS once.
    assert_eq!(nic.mbx[1].read_v2p() & v2p::PFSTS, v2p::PFSTS);
    // After a PF reset nobody is CTS until it resets.
    nic.agent.pf_reset();
    nic.agent.ping(0, &mut nic.mbx[0]);
    assert_eq!(nic.mbx[0].last_word0(), 0x0000_0100);
    assert!(!drv.link_up(&mut nic));
}

#[test]
fn ping_is_lost_while_the_vf_holds_the_buffer() {
    let mut nic = Nic::with_vfs(1);
    nic.mbx[0].write_v2p(v2p::VFU);
    let o = nic.agent.ping(0, &mut nic.mbx[0]);
    assert!(!o.reply.unwrap().delivered);
    assert_eq!(nic.mbx[0].words()[0], 0);
    assert_eq!(nic.mbx[0].owner(), Owner::Vf);
}

#[test]
fn pf_in_reset_fails_the_vf_probe_until_pfrstd() {
    let mut nic = Nic::with_vfs(1);
    nic.mbx[0].pf_reset_start();
    let mut drv = Igbvf::new(0);
    assert_eq!(drv.reset_hw(&mut nic), Err(DrvError::PfInReset));
    nic.mbx[0].pf_reset_done();
    assert_eq!(drv.reset_hw(&mut nic), Err(DrvError::NoMac));
    assert!(nic.agent.is_clear_to_send(0));
}

#[test]
fn deferred_servicing_works_the_same() {
    let mut nic = Nic::with_vfs(2);
    nic.servicing = Servicing::Deferred;
    nic.policy[0].mac = Some(ADMIN_MAC);
    nic.policy[0].admin_mac = true;
    let mut drv = Igbvf::new(0);
    assert_eq!(drv.reset_hw(&mut nic), Ok(ADMIN_MAC));
    drv.init_hw(&mut nic).unwrap();
    assert_eq!(
        drv.set_vlan(&mut nic, 42, true).unwrap(),
        VLAN_ACK | 1 << 16
    );
    assert!(drv.link_up(&mut nic));
    assert_eq!(nic.policy[0].vlan_filters, vec![42]);
}

#[test]
fn req_while_holding_vfu_cannot_be_read_and_revokes_cts() {
    let mut nic = Nic::with_vfs(1);
    let mut drv = Igbvf::new(0);
    drv.probe(&mut nic, RANDOM_MAC).unwrap();
    nic.write_v2p(0, v2p::VFU);
    nic.write_vmbmem(0, 0, 0x0001_0004);
    nic.write_vmbmem(0, 1, 9);
    nic.write_v2p(0, v2p::VFU | v2p::REQ);
    assert_eq!(refusals(&nic, 0, RefusalReason::MailboxBusy), 1);
    assert!(!nic.agent.is_clear_to_send(0));
    assert!(nic.policy[0].vlan_filters.is_empty());
    // The VF still holds its lock; the PF did not take it.
    assert_eq!(nic.mbx[0].owner(), Owner::Vf);
    assert_eq!(nic.mbx[0].read_p2v(), p2v::VFU);
}

#[test]
fn req_over_an_already_answered_buffer_is_ignored() {
    let mut nic = Nic::with_vfs(1);
    let mut drv = Igbvf::new(0);
    drv.probe(&mut nic, RANDOM_MAC).unwrap();
    let irqs = nic.vf_irqs[0];
    nic.write_v2p(0, v2p::REQ);
    assert_eq!(refusals(&nic, 0, RefusalReason::AlreadyAnswered), 1);
    assert!(nic.last_outcome().reply.is_none());
    // Only the PF's ACK of the read went out; no reply.
    assert_eq!(nic.vf_irqs[0], irqs + 1);
    assert_eq!(
        nic.mbx[0].read_v2p() & (v2p::PFSTS | v2p::PFACK),
        v2p::PFACK
    );
}

#[test]
fn one_vf_flooding_requests_does_not_disturb_another() {
    let mut nic = Nic::with_vfs(2);
    let mut good = Igbvf::new(1);
    good.probe(&mut nic, RANDOM_MAC).unwrap();
    let snapshot = nic.mbx[1].clone();
    let policy = nic.policy[1].clone();
    // VF 0 never resets, never ACKs, and posts 10 000 requests.
    for i in 0..10_000u32 {
        nic.write_v2p(0, v2p::VFU);
        nic.write_vmbmem(0, 0, 0x0001_0004);
        nic.write_vmbmem(0, 1, i);
        nic.write_v2p(0, v2p::REQ);
    }
    assert_eq!(nic.mbx[1], snapshot);
    assert_eq!(nic.policy[1], policy);
    assert_eq!(
        good.set_vlan(&mut nic, 77, true).unwrap(),
        VLAN_ACK | 1 << 16
    );
    // Exactly one outcome per REQ for VF 0: at most once per REQ.
    let vf0 = nic.outcomes.iter().filter(|o| o.vf == 0).count();
    assert_eq!(vf0, 10_000);
}

#[test]
fn policy_change_apply_round_trip() {
    let mut p = eswitch::VfPolicy::default();
    PolicyChange::SetMac(RANDOM_MAC).apply(&mut p);
    PolicyChange::AddVlan(5).apply(&mut p);
    PolicyChange::AddVlan(5).apply(&mut p);
    PolicyChange::SetMulticast {
        hashes: vec![1, 2],
        overflow: false,
    }
    .apply(&mut p);
    PolicyChange::SetMaxFrame(9000).apply(&mut p);
    assert_eq!(p.vlan_filters, vec![5]);
    PolicyChange::Reset(ResetChange {
        mac: None,
        rx_tx_enabled: false,
    })
    .apply(&mut p);
    assert_eq!(p.mac, None);
    assert!(p.vlan_filters.is_empty() && p.mc_hashes.is_empty());
    assert_eq!(p.max_frame, 9000, "igb leaves RLPML alone on reset");
}

#[test]
fn counters_follow_the_traffic() {
    let mut nic = Nic::with_vfs(1);
    let mut drv = Igbvf::new(0);
    drv.probe(&mut nic, RANDOM_MAC).unwrap();
    drv.set_vlan(&mut nic, 3, true).unwrap();
    nic.policy[0].port_vlan = Some(PortVlan { vid: 9, qos: 0 });
    drv.set_vlan(&mut nic, 4, true).unwrap();
    nic.agent.ping(0, &mut nic.mbx[0]);
    let c = nic.agent.counters(0);
    // VF_RESET (NACK: no MAC), SET_MAC_ADDR, two SET_VLANs.
    assert_eq!((c.requests, c.acked, c.nacked, c.unanswered), (4, 2, 2, 0));
    assert_eq!((c.vf_resets, c.pf_messages, c.lost_messages), (1, 1, 0));
    assert_eq!(nic.agent.refusals(0).total(), 1);
}

#[test]
fn a_vf_stuck_holding_its_lock_delays_nobody_else() {
    let mut nic = Nic::with_vfs(2);
    let mut a = Igbvf::new(0);
    let mut b = Igbvf::new(1);
    a.probe(&mut nic, RANDOM_MAC).unwrap();
    b.probe(&mut nic, RANDOM_MAC).unwrap();
    // VF 0 takes the buffer and never lets go, never ACKs.
    nic.write_v2p(0, v2p::VFU);
    let outs = nic.agent.ping_all(&mut nic.mbx);
    assert!(!outs[0].reply.as_ref().unwrap().delivered);
    assert!(outs[1].reply.as_ref().unwrap().delivered);
    assert_eq!(b.set_vlan(&mut nic, 5, true).unwrap(), VLAN_ACK | 1 << 16);
    assert!(b.link_up(&mut nic));
    assert_eq!(nic.agent.counters(0).lost_messages, 1);
}
