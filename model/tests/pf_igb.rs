//! The PF function driven as Linux igb drives it: probe (PHY id, NVM checksum, MAC, reset),
//! bring-up with MSI-X or MSI, the datapath through guest memory, link changes, the receive
//! filters the switch is told about, and every part of `ethtool -t DEV offline`.

mod pf_support;

use eswitch::wire::{EtherTypes, EthernetFrame, EthernetRepr, VlanTag, VlanTags, VlanTci};
use eswitch::MacAddr;
use model::function::desc::{
    rx_status, L3Type, L4Type, TxContext, TxDataDesc, TxDesc, TxOffloads, DESC_LEN,
};
use model::function::i82576::config::{PF_DEVICE_ID, PF_MSIX_VECTORS, VENDOR_INTEL};
use model::function::i82576::pf_regs::{self as r, ctrl, gpie, icr, q, rctl, stat, status, tctl};
use model::function::i82576::phy::{bmcr, bmsr, reg};
use model::function::stats::RxDrop;
use model::function::{Function, LinkStatus};
use pcie::regs::{command, header};
use pf_support::*;

const PEER: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x77]);
const BCAST: MacAddr = MacAddr([0xFF; 6]);

fn frame(dst: MacAddr, src: MacAddr, tags: VlanTags, len: usize, seed: u8) -> Vec<u8> {
    let eth = EthernetRepr {
        dst,
        src,
        tags,
        ethertype: eswitch::wire::EtherType(0x88B5),
    };
    let mut f = vec![0u8; len];
    eth.emit(&mut EthernetFrame::new_unchecked(&mut f[..]));
    for (i, b) in f[eth.header_len()..].iter_mut().enumerate() {
        *b = seed.wrapping_add(i as u8);
    }
    f
}

/// Probed and opened in `mode`, every bring-up interrupt handled.
fn up(mode: IrqMode) -> (Rig, Igb) {
    let mut rig = Rig::new(mode);
    let mut igb = Igb::new(mode);
    igb.probe(&mut rig).expect("probe");
    igb.open(&mut rig).expect("open");
    rig.irqs();
    let _ = rig.rd(r::ICR);
    (rig, igb)
}

#[test]
fn config_space_and_bars_are_the_82576_pf() {
    let mut rig = Rig::new(IrqMode::Msix);
    assert_eq!(rig.config_read16(header::VENDOR_ID as u64), VENDOR_INTEL);
    assert_eq!(rig.config_read16(header::DEVICE_ID as u64), PF_DEVICE_ID);
    let layout = rig.pf.layout();
    assert_eq!(layout.bar_sizes[0], 128 * 1024);
    assert_eq!(layout.bar_sizes[2], 32);
    assert_eq!(layout.bar_sizes[3], 16 * 1024);
    assert_eq!(layout.msix_vectors, PF_MSIX_VECTORS);
    let sriov = rig.pf.config().sriov().expect("SR-IOV capability");
    assert_eq!(sriov.total_vfs, 8);
    assert!(!sriov.vf_enabled);
    // Accesses outside the regions are refused, not fatal.
    let mut b = [0u8; 4];
    assert!(rig.pf.region_read(0, 128 * 1024, &mut b).is_err());
    assert!(rig.pf.region_read(5, 0, &mut b).is_err());
    assert!(rig.pf.region_write(0, 0x100, &[1, 2]).is_err());
    assert_eq!(rig.pf.stats().bad_accesses, 3);
}

#[test]
fn probe_finds_the_igp03_phy_a_valid_nvm_and_the_mac_and_links_at_1000_full() {
    let mut rig = Rig::new(IrqMode::Msix);
    let mut igb = Igb::new(IrqMode::Msix);
    assert_eq!(igb.probe(&mut rig), Ok(MAC));
    assert_eq!(igb.phy_id, 0x02A8_0390);
    // Not running after probe: igb_reset powered the PHY down.
    assert_eq!(rig.rd(r::STATUS) & status::LU, 0);
    igb.open(&mut rig).expect("open");
    let s = rig.rd(r::STATUS);
    assert_eq!(
        s & (status::LU | status::FD | (0b11 << status::SPEED_SHIFT)),
        status::LU | status::FD | status::SPEED_1000
    );
    let bmsr_v = Igb::read_phy(&mut rig, u32::from(reg::BMSR)).unwrap();
    assert_eq!(
        bmsr_v & (bmsr::LINK_STATUS | bmsr::AUTONEG_COMPLETE),
        bmsr::LINK_STATUS | bmsr::AUTONEG_COMPLETE
    );
    // igb_watchdog_task waits for the remote receiver at 1000 Mb/s.
    let gtsr = Igb::read_phy(&mut rig, u32::from(reg::GTSR)).unwrap();
    assert_ne!(gtsr & 0x1000, 0);
    // The IGP registers igb reads through the page select (cable length, downshift).
    assert!(Igb::read_phy(&mut rig, 0x11B1).is_ok());
    assert_eq!(Igb::read_phy(&mut rig, u32::from(reg::LINK_HEALTH)), Ok(0));
    // The semaphores are free again.
    assert_eq!(rig.rd(r::SW_FW_SYNC), 0);
}

#[test]
fn ctrl_rst_resets_the_mac_at_once_and_reloads_rar0_but_not_the_phy() {
    let (mut rig, _igb) = up(IrqMode::Msix);
    rig.wr(r::RA, 0x1234_5678);
    rig.wr(r::MTA, 0xFFFF_FFFF);
    rig.wr(r::FCAL, 0xDEAD_BEEF);
    let c = rig.rd(r::CTRL);
    rig.wr(r::CTRL, c | ctrl::RST);
    let m = MAC.0;
    assert_eq!(rig.rd(r::RA), u32::from_le_bytes([m[0], m[1], m[2], m[3]]));
    assert_eq!(
        rig.rd(r::RA + 4),
        u32::from(u16::from_le_bytes([m[4], m[5]])) | r::rah::AV
    );
    for (reg, reset) in [
        (r::MTA, 0),
        (r::FCAL, 0),
        (r::IMS, 0),
        (r::IAM, 0),
        (r::GPIE, 0),
        (r::EIMS, 0),
        (r::EIAC, 0),
        (r::IVAR0, 0),
        (r::RCTL, 0),
        (r::TCTL, tctl::RESET),
        (r::RLPML, 0x2600),
        (r::TX_HIGH + q::DT, 0),
    ] {
        assert_eq!(rig.rd(reg), reset, "{reg:#x}");
    }
    assert_eq!(rig.rd(r::CTRL) & ctrl::RST, 0, "self-clearing");
    assert_ne!(rig.rd(r::EECD) & r::eecd::AUTO_RD, 0);
    // The PHY kept its link.
    assert_ne!(rig.rd(r::STATUS) & status::LU, 0);
    // No write makes CTRL read all-ones (igb_rd32 would detach the device).
    rig.wr(r::CTRL, !ctrl::RST);
    assert_ne!(rig.rd(r::CTRL), 0xFFFF_FFFF);
}

#[test]
fn ethtool_offline_self_test_passes_with_msix() {
    let mut rig = Rig::new(IrqMode::Msix);
    let mut igb = Igb::new(IrqMode::Msix);
    igb.probe(&mut rig).expect("probe");
    assert_eq!(igb.diag_test_offline(&mut rig), Ok([0, 0, 0, 0, 0]));
}

#[test]
fn ethtool_offline_self_test_passes_with_msi_and_an_open_interface() {
    let (mut rig, mut igb) = up(IrqMode::Msi);
    assert_eq!(igb.diag_test_offline(&mut rig), Ok([0, 0, 0, 0, 0]));
    // igb_open again after the test: traffic flows.
    igb.open(&mut rig).expect("reopen");
    let f = frame(PEER, MAC, VlanTags::NONE, 100, 1);
    igb.xmit(&mut rig, 0, &f);
    assert_eq!(rig.sent.last().map(|b| b.to_vec()), Some(f));
}

#[test]
fn register_test_reports_the_status_check_and_the_first_bad_register() {
    let (mut rig, mut igb) = up(IrqMode::Msix);
    let c = rig.rd(r::CTRL);
    rig.wr(r::CTRL, c | ctrl::RST);
    assert_eq!(igb.reg_test(&mut rig), 0);
    // STATUS stays what the link says whatever is written, PHYRA aside.
    let before = rig.rd(r::STATUS);
    rig.wr(r::STATUS, 0);
    assert_eq!(rig.rd(r::STATUS) & !status::PHYRA, before & !status::PHYRA);
    // The RCTL entries: 0 reads back 0; no reserved bit sticks.
    rig.wr(r::RCTL, 0xFFFF_FFFF);
    assert_eq!(rig.rd(r::RCTL) & !rctl::STORED, 0);
    rig.wr(r::TCTL, 0);
    assert_eq!(rig.rd(r::TCTL), 0);
}

#[test]
fn interrupt_test_fails_as_igb_would_if_a_masked_cause_fired() {
    // A self-check of the test driver: a cause that fires although masked is reported as 3.
    let mut rig = Rig::new(IrqMode::Msi);
    let mut igb = Igb::new(IrqMode::Msi);
    igb.probe(&mut rig).unwrap();
    assert_eq!(igb.intr_test(&mut rig), 0);
    rig.wr(r::IMS, icr::LSC);
    rig.fired.push(0);
    let mut test_icr = 0;
    rig.wr(r::ICS, icr::LSC);
    for v in rig.irqs() {
        if v == 0 {
            test_icr |= rig.rd(r::ICR);
        }
    }
    assert_ne!(test_icr & icr::LSC, 0);
}

#[test]
fn eeprom_words_sum_to_0xbaba_and_the_mac_words_match() {
    let mut rig = Rig::new(IrqMode::Msix);
    let mut igb = Igb::new(IrqMode::Msix);
    assert_eq!(igb.eeprom_test(&mut rig), 0);
    let words: Vec<u16> = (0..3)
        .map(|w| Igb::read_nvm(&mut rig, w).unwrap())
        .collect();
    let m = MAC.0;
    assert_eq!(
        words,
        vec![
            u16::from_le_bytes([m[0], m[1]]),
            u16::from_le_bytes([m[2], m[3]]),
            u16::from_le_bytes([m[4], m[5]])
        ]
    );
    // igb_set_default_fc: full flow control from NVM word 0x0F b13:12.
    assert_eq!(Igb::read_nvm(&mut rig, 0x0F).unwrap() & 0x3000, 0x3000);
}

#[test]
fn phy_loopback_returns_every_frame_to_the_own_ring_and_cuts_off_the_switch() {
    let mut rig = Rig::new(IrqMode::Msix);
    let mut igb = Igb::new(IrqMode::Msix);
    igb.probe(&mut rig).unwrap();
    igb.power_up_link(&mut rig).unwrap();
    // The test's own steps, one round by hand.
    assert_eq!(igb.loopback_test(&mut rig), 0);
    assert!(rig.sent.is_empty(), "nothing reached the switch");
    // In PHY loopback, frames from the switch do not get in, and the link is up without it.
    Igb::write_phy(&mut rig, u32::from(reg::BMCR), 0x4140).unwrap();
    rig.set_link(LinkStatus::DOWN);
    assert_ne!(rig.rd(r::STATUS) & status::LU, 0);
    let stray = frame(BCAST, PEER, VlanTags::NONE, 60, 3);
    assert_eq!(rig.deliver(&stray, None), Err(RxDrop::Isolated));
    assert_eq!(rig.pf.stats().rx_drop(RxDrop::Isolated), 1);
    // The cleanup's soft reset ends it: the wire's link again (down here).
    Igb::write_phy(&mut rig, u32::from(reg::BMCR), bmcr::RESET).unwrap();
    assert_eq!(rig.rd(r::STATUS) & status::LU, 0);
}

#[test]
fn mac_loopback_returns_frames_through_the_receive_filters() {
    let (mut rig, mut igb) = up(IrqMode::Msix);
    let rc = rig.rd(r::RCTL);
    rig.wr(r::RCTL, (rc & !rctl::LBM_MASK) | rctl::LBM_MAC);
    let to_self = frame(MAC, MAC, VlanTags::NONE, 200, 9);
    let to_peer = frame(PEER, MAC, VlanTags::NONE, 200, 10);
    igb.xmit(&mut rig, 0, &to_self);
    igb.xmit(&mut rig, 0, &to_peer);
    assert!(rig.sent.is_empty());
    let got = igb.clean_rx(&mut rig, 0);
    assert_eq!(got.len(), 1, "the peer's frame is not for this MAC");
    assert_eq!(got[0].0, to_self);
    assert_eq!(rig.pf.stats().rx_drop(RxDrop::Filtered), 1);
    // Both were transmitted (GPTC) and one received (GPRC).
    assert_eq!(rig.rd(stat::GPTC), 2);
    assert_eq!(rig.rd(stat::GPRC), 1);
}

#[test]
fn msix_transmit_and_receive_signal_the_queue_vector_through_ivar() {
    let (mut rig, mut igb) = up(IrqMode::Msix);
    let f = frame(PEER, MAC, VlanTags::NONE, 60, 1);
    igb.xmit(&mut rig, 0, &f);
    assert_eq!(rig.sent.len(), 1);
    assert_eq!(rig.sent[0].to_vec(), f);
    assert!(Igb::tx_done(&rig, 0));
    assert_eq!(rig.irqs(), vec![1], "TX0 → vector 1");
    // Auto-masked (EIAM): igb's napi poll re-enables with EIMS.
    let rx = frame(MAC, PEER, VlanTags::NONE, 300, 5);
    assert_eq!(rig.deliver(&rx, None), Ok(()));
    assert!(rig.irqs().is_empty(), "masked until EIMS");
    rig.wr(r::EIMS, 0b10);
    assert_eq!(rig.irqs(), vec![1], "the pending RX cause fires");
    let got = igb.clean_rx(&mut rig, 0);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, rx);
    let staterr = got[0].1;
    assert_eq!(
        staterr & (rx_status::DD | rx_status::EOP),
        rx_status::DD | rx_status::EOP
    );
    // A short frame is padded to 60 bytes (TCTL.PSP).
    igb.xmit(&mut rig, 0, &f[..42]);
    assert_eq!(rig.sent[1].len(), 60);
    // Not for this MAC: dropped and counted, no descriptor used.
    let other = frame(PEER, MAC, VlanTags::NONE, 60, 2);
    assert_eq!(rig.deliver(&other, None), Err(RxDrop::Filtered));
    assert!(igb.clean_rx(&mut rig, 0).is_empty());
    let s = rig.pf.stats();
    assert_eq!((s.rx_packets, s.tx_packets), (1, 2));
}

#[test]
fn msi_signals_vector_0_and_the_icr_read_acknowledges() {
    let (mut rig, mut igb) = up(IrqMode::Msi);
    let rx = frame(MAC, PEER, VlanTags::NONE, 100, 5);
    assert_eq!(rig.deliver(&rx, None), Ok(()));
    assert_eq!(rig.irqs(), vec![0]);
    // igb_intr_msi reads ICR: RXT0; IAM masks until igb_irq_enable.
    assert_eq!(rig.rd(r::ICR) & icr::RXT0, icr::RXT0);
    igb.xmit(&mut rig, 0, &frame(PEER, MAC, VlanTags::NONE, 60, 1));
    assert!(rig.irqs().is_empty());
    igb.irq_enable(&mut rig);
    assert_eq!(rig.irqs(), vec![0], "TXDW was pending");
    assert_eq!(rig.rd(r::ICR) & icr::TXDW, icr::TXDW);
}

#[test]
fn a_full_ring_is_not_a_drop_and_the_tail_write_says_buffers_came() {
    let (mut rig, mut igb) = up(IrqMode::Msix);
    let rx = frame(MAC, PEER, VlanTags::NONE, 100, 5);
    for _ in 0..RING - 1 {
        assert_eq!(rig.deliver(&rx, None), Ok(()));
    }
    assert_eq!(rig.deliver(&rx, None), Err(RxDrop::RingFull));
    assert_eq!(rig.pf.stats().total_rx_drops(), 0);
    // igb's clean and refill writes RDT: the runtime learns it may retry.
    let got = igb.clean_rx(&mut rig, 0);
    assert_eq!(got.len(), RING as usize - 1);
    let e = rig
        .pf
        .region_write(0, r::RX_HIGH + q::DT, &igb.rx_use.to_le_bytes())
        .unwrap();
    assert!(e.rx_posted);
    assert_eq!(rig.deliver(&rx, None), Ok(()));
    // The runtime's backlog overflowed: a missed frame.
    rig.pf.count_backlog_drop();
    assert_eq!(rig.rd(stat::MPC), 1);
}

#[test]
fn link_changes_raise_lsc_on_the_other_vector_and_status_follows() {
    let (mut rig, _igb) = up(IrqMode::Msix);
    rig.set_link(LinkStatus::DOWN);
    assert_eq!(rig.irqs(), vec![0]);
    // igb_msix_other: ICR says LSC; the watchdog sees no link.
    assert_eq!(rig.rd(r::ICR) & icr::LSC, icr::LSC);
    assert_eq!(rig.rd(r::STATUS) & status::LU, 0);
    let b = Igb::read_phy(&mut rig, u32::from(reg::BMSR)).unwrap();
    assert_eq!(b & bmsr::LINK_STATUS, 0);
    rig.wr(r::EIMS, 1);
    rig.set_link(LinkStatus::UP_1000_FD);
    assert_eq!(rig.irqs(), vec![0]);
    rig.wr(r::EIMS, 0b10);
    assert!(rig.irqs().is_empty());
    assert_eq!(rig.pf.next_wakeup(), None);
    assert_ne!(rig.rd(r::STATUS) & status::LU, 0);
}

#[test]
fn phy_power_down_takes_the_link_and_power_up_brings_it_back() {
    let (mut rig, _igb) = up(IrqMode::Msix);
    let b = Igb::read_phy(&mut rig, u32::from(reg::BMCR)).unwrap();
    Igb::write_phy(&mut rig, u32::from(reg::BMCR), b | bmcr::POWER_DOWN).unwrap();
    assert_eq!(rig.rd(r::STATUS) & status::LU, 0);
    assert_eq!(rig.irqs(), vec![0], "LSC");
    let _ = rig.rd(r::ICR);
    rig.wr(r::EIMS, 1);
    Igb::write_phy(&mut rig, u32::from(reg::BMCR), b & !bmcr::POWER_DOWN).unwrap();
    assert_ne!(rig.rd(r::STATUS) & status::LU, 0);
    assert_eq!(rig.irqs(), vec![0], "LSC again");
}

#[test]
fn the_switch_learns_the_filters_igb_programs() {
    let (mut rig, _igb) = up(IrqMode::Msix);
    let p = rig
        .switch
        .last_policy()
        .expect("told at attach and on change");
    assert_eq!(p.macs, vec![MAC]);
    assert!(
        p.vlans.is_empty() && !p.vlan_promisc,
        "VFE with an empty VFTA"
    );
    // igb_set_rx_mode: a multicast group (MTA), a VLAN (VFTA), then promiscuous.
    let group = MacAddr([0x01, 0x00, 0x5E, 0x00, 0x00, 0x01]);
    let h = eswitch::mta_hash(group);
    rig.wr(r::MTA + 4 * u64::from(h >> 5), 1 << (h & 31));
    rig.wr(r::VFTA, 1 << 5);
    let p = rig.switch.last_policy().unwrap();
    assert_eq!(p.mc_hashes, vec![h]);
    assert_eq!(p.vlans, vec![5]);
    let rc = rig.rd(r::RCTL);
    rig.wr(r::RCTL, rc | rctl::UPE | rctl::MPE);
    let p = rig.switch.last_policy().unwrap();
    assert!(p.promisc && p.allmulti);
    // A second MAC filter (igb_uc_sync → RAR1).
    rig.wr(r::RA + 8, 0x0000_0002);
    rig.wr(r::RA + 12, 0x0900 | r::rah::AV);
    assert_eq!(
        rig.switch.last_policy().unwrap().macs,
        vec![MAC, MacAddr([2, 0, 0, 0, 0, 9])]
    );
    // CTRL.VME: the switch strips the PF's VLAN tags.
    let c = rig.rd(r::CTRL);
    rig.wr(r::CTRL, c | ctrl::VME);
    assert_eq!(rig.switch.strip.lock().unwrap().last(), Some(&true));
    // Unchanged registers tell the switch nothing new.
    let n = rig.switch.policies.lock().unwrap().len();
    rig.wr(r::VFTA, 1 << 5);
    assert_eq!(rig.switch.policies.lock().unwrap().len(), n);
}

#[test]
fn vlan_frames_pass_the_vfta_and_are_stripped_with_vme() {
    let (mut rig, mut igb) = up(IrqMode::Msix);
    rig.wr(r::VFTA, 1 << 10);
    let c = rig.rd(r::CTRL);
    rig.wr(r::CTRL, c | ctrl::VME);
    let tagged = frame(
        MAC,
        PEER,
        VlanTags::one(VlanTag::dot1q(VlanTci::new(10, 3))),
        100,
        4,
    );
    // A tag the switch already stripped, and one left on: both come out stripped with VP.
    assert_eq!(rig.deliver(&tagged, None), Ok(()));
    let stripped = EthernetFrame::new_unchecked(&tagged[..]).strip_tag();
    assert_eq!(rig.deliver(&stripped, Some(VlanTci::new(10, 3).0)), Ok(()));
    let got = igb.clean_rx(&mut rig, 0);
    assert_eq!(got.len(), 2);
    for (data, staterr, vlan) in &got {
        assert_eq!(data, &stripped.to_vec());
        assert_ne!(staterr & rx_status::VP, 0);
        assert_eq!(*vlan, VlanTci::new(10, 3).0);
    }
    // VLAN 11 is not in the VFTA.
    let other = frame(
        MAC,
        PEER,
        VlanTags::one(VlanTag::dot1q(VlanTci::new(11, 0))),
        100,
        4,
    );
    assert_eq!(rig.deliver(&other, None), Err(RxDrop::Filtered));
}

#[test]
fn tso_is_done_by_the_shared_offload_engine() {
    let (mut rig, _igb) = up(IrqMode::Msix);
    // An IPv4/TCP packet of 54 bytes of headers and 3000 bytes of payload, MSS 1000.
    let mut pkt = vec![0u8; 54 + 3000];
    {
        let mut eth = EthernetFrame::new_unchecked(&mut pkt[..]);
        eth.set_dst_addr(PEER);
        eth.set_src_addr(MAC);
        eth.set_ethertype(EtherTypes::Ipv4);
    }
    pkt[14] = 0x45;
    pkt[16..18].copy_from_slice(&(20u16 + 20 + 3000).to_be_bytes());
    pkt[22] = 64;
    pkt[23] = 6;
    pkt[26..30].copy_from_slice(&[10, 0, 0, 1]);
    pkt[30..34].copy_from_slice(&[10, 0, 0, 2]);
    pkt[46] = 0x50;
    let ctx = TxContext {
        mac_len: 14,
        ip_len: 20,
        l4_len: 20,
        mss: 1000,
        l3: L3Type::Ipv4,
        l4: L4Type::Tcp,
        ..TxContext::default()
    };
    let buf = TX_BUFS;
    rig.write_mem(buf, &pkt);
    let data = TxDataDesc {
        addr: buf,
        len: pkt.len() as u16,
        eop: true,
        ifcs: true,
        rs: true,
        idx: 0,
        offloads: TxOffloads {
            vle: false,
            tse: true,
            ixsm: true,
            txsm: true,
            paylen: 3000,
        },
    };
    let mut b = [0u8; DESC_LEN];
    TxDesc::Context(ctx).emit(&mut b);
    rig.write_mem(TX_RING, &b);
    TxDesc::Data(data).emit(&mut b);
    rig.write_mem(TX_RING + 16, &b);
    rig.wr(r::TX_HIGH + q::DT, 2);
    assert_eq!(rig.sent.len(), 3);
    for seg in &rig.sent {
        assert!(seg.len() <= 54 + 1000);
        assert_eq!(EthernetFrame::new_unchecked(&seg[..]).dst_addr(), PEER);
    }
    assert!(Igb::tx_done(&rig, 1));
}

#[test]
fn statistics_count_frames_and_octets_and_clear_on_read() {
    let (mut rig, mut igb) = up(IrqMode::Msix);
    igb.xmit(&mut rig, 0, &frame(BCAST, MAC, VlanTags::NONE, 60, 1));
    igb.xmit(&mut rig, 0, &frame(PEER, MAC, VlanTags::NONE, 1000, 1));
    assert_eq!(
        rig.deliver(&frame(MAC, PEER, VlanTags::NONE, 200, 1), None),
        Ok(())
    );
    assert_eq!(rig.rd(stat::GPTC), 2);
    assert_eq!(rig.rd(stat::BPTC), 1);
    assert_eq!(rig.rd(stat::GOTCL), 64 + 1004);
    assert_eq!(rig.rd(stat::GOTCH), 0);
    assert_eq!(rig.rd(stat::GPRC), 1);
    assert_eq!(rig.rd(stat::GORCL), 204);
    assert_eq!(rig.rd(stat::PRC255), 1);
    assert_eq!(rig.rd(stat::GPTC), 0, "cleared by the read");
    assert_eq!(rig.rd(stat::CRCERRS), 0);
}

#[test]
fn no_dma_without_bus_master_tctl_or_rctl() {
    let (mut rig, mut igb) = up(IrqMode::Msix);
    rig.config_write16(header::COMMAND as u64, command::MEMORY_SPACE);
    igb.xmit(&mut rig, 0, &frame(PEER, MAC, VlanTags::NONE, 60, 1));
    assert!(rig.sent.is_empty());
    let rx = frame(MAC, PEER, VlanTags::NONE, 60, 1);
    assert_eq!(rig.deliver(&rx, None), Err(RxDrop::BusMasterOff));
    rig.config_write16(
        header::COMMAND as u64,
        command::MEMORY_SPACE | command::BUS_MASTER,
    );
    // The pending descriptor goes when TCTL.EN is set again.
    let t = rig.rd(r::TCTL);
    rig.wr(r::TCTL, t & !tctl::EN);
    rig.wr(r::TCTL, t);
    assert_eq!(rig.sent.len(), 1);
    let rc = rig.rd(r::RCTL);
    rig.wr(r::RCTL, rc & !rctl::EN);
    assert_eq!(rig.deliver(&rx, None), Err(RxDrop::ReceiverDisabled));
    rig.pf.detach();
    assert_eq!(rig.deliver(&rx, None), Err(RxDrop::NotAttached));
}

#[test]
fn the_io_bar_reaches_the_registers() {
    let mut rig = Rig::new(IrqMode::Msix);
    let io = |rig: &mut Rig, off: u64, v: u32| {
        let e = rig.pf.region_write(2, off, &v.to_le_bytes()).unwrap();
        rig.take(e);
    };
    io(&mut rig, 0, r::FCAL as u32);
    io(&mut rig, 4, 0x1234_5678);
    assert_eq!(rig.rd(r::FCAL), 0x1234_5678);
    let mut b = [0u8; 4];
    rig.pf.region_read(2, 4, &mut b).unwrap();
    assert_eq!(u32::from_le_bytes(b), 0x1234_5678);
    // IOADDR beyond BAR0: IODATA reads 0.
    io(&mut rig, 0, 0xFFFF_FFF0);
    rig.pf.region_read(2, 4, &mut b).unwrap();
    assert_eq!(b, [0; 4]);
}

#[test]
fn function_level_reset_restores_the_power_on_state() {
    let (mut rig, _igb) = up(IrqMode::Msix);
    // Initiate FLR: PCIe Device Control (capability at 0xA0, +8) bit 15.
    rig.config_write16(0xA8, 1 << 15);
    assert_eq!(rig.pf.stats().flrs, 1);
    assert_eq!(
        rig.config_read16(header::COMMAND as u64) & command::BUS_MASTER,
        0
    );
    assert_eq!(rig.rd(r::RCTL), 0);
    assert_eq!(rig.rd(r::GPIE) & gpie::MSIX_MODE, 0);
    assert_eq!(
        Igb::read_phy(&mut rig, u32::from(reg::BMCR)).unwrap(),
        bmcr::RESET_VALUE
    );
}
