//! The VF function driven exactly as Linux igbvf drives it, in process, on a `Nic`: what the
//! VF transmits is seen by the NIC's observer as it left the TX engine; frames for its RX ring
//! come through the switch or `VfHandle::deliver` (the datapath's own delivery).

mod support;

use bytes::Bytes;
use eswitch::{MacAddr, PortId, VfSetting, VlanProto};
use model::function::desc::rx_status;
use model::function::i82576::regs::{self, q};
use model::nic::BACKLOG_FRAMES;
use model::testing::{DriverConfig, SoftGuest, XmitOpts};
use model::{IrqSink, NicConfig, RxDrop, TxError};
use support::*;
use vm_memory::{Bytes as _, GuestAddress};

const BCAST: [u8; 6] = [0xFF; 6];
const OTHER: [u8; 6] = [2, 0, 0, 0, 0, 9];

fn deliver(g: &SoftGuest, f: &[u8], tci: Option<u16>) -> bool {
    g.vf.deliver(&Bytes::copy_from_slice(f), tci)
}

fn rd(g: &SoftGuest, off: u64) -> u32 {
    g.drv.rd(&g.vf, off)
}

fn wr(g: &SoftGuest, off: u64, v: u32) {
    g.drv.wr(&g.vf, off, v)
}

fn bytes(frames: &[Vec<u8>]) -> Vec<Bytes> {
    frames.iter().map(|f| Bytes::from(f.clone())).collect()
}

#[test]
fn probe_gets_the_mac_the_pf_agent_assigned_and_link_reads_up() {
    let r = rig(2);
    let mut g = r.guest(1, DriverConfig::default());
    let mac = g.drv.probe(&g.vf).expect("probe");
    // Generated mode: 02:52:54:00:00:01 for VF 1.
    assert_eq!(mac, generated_mac(1));
    assert_eq!(r.policy(1).mac.map(|m| m.0), Some(mac));
    g.drv.open(&g.vf).expect("open");
    assert!(g.drv.check_link(&g.vf), "link up: STATUS.LU and CTS");
    let status = rd(&g, regs::VTSTATUS);
    assert_eq!(
        status & (regs::status::LU | regs::status::FD),
        regs::status::LU | regs::status::FD
    );
    assert_eq!(status & (0b11 << 6), regs::status::SPEED_1000);
}

#[test]
fn admin_mac_is_what_the_probe_reads() {
    let r = rig(2);
    let admin = [0x02, 0, 0, 0, 0, 0x10];
    r.nic
        .configure_vf(0, &[VfSetting::Mac(MacAddr(admin))])
        .unwrap();
    let mut g = r.guest(0, DriverConfig::default());
    assert_eq!(g.drv.probe(&g.vf).unwrap(), admin);
    assert_eq!(g.drv.perm_addr, admin);
    assert!(r.policy(0).admin_mac);
}

#[test]
fn without_an_assigned_mac_igbvf_registers_its_random_one() {
    // The default PF side assigns only administrative MACs.
    let r = rig_with(&NicConfig {
        num_vfs: 1,
        ..NicConfig::default()
    });
    let cfg = DriverConfig::default();
    let mut g = r.guest(0, cfg);
    assert_eq!(g.drv.probe(&g.vf).unwrap(), cfg.random_mac);
    assert_eq!(g.drv.perm_addr, [0; 6]);
    assert_eq!(r.policy(0).mac.map(|m| m.0), Some(cfg.random_mac));
}

#[test]
fn link_down_reads_down_and_igbvf_sees_it_after_the_ping() {
    let r = rig(1);
    let mut g = r.up(0, DriverConfig::default());
    assert!(g.drv.check_link(&g.vf));
    r.nic.set_link(false);
    assert_eq!(rd(&g, regs::VTSTATUS), 0);
    // igb pings every VF on a link change: igbvf_msix_other schedules a link re-check.
    assert_eq!(g.irqs.take(), vec![2]);
    g.irqs.fire(2);
    g.poll();
    assert!(!g.drv.check_link(&g.vf));
    r.nic.set_link(true);
    g.poll();
    assert_ne!(rd(&g, regs::VTSTATUS) & regs::status::LU, 0);
    assert!(g.drv.check_link(&g.vf));
}

#[test]
fn transmitted_frame_comes_out_byte_exact_with_dd_and_the_tx_vector() {
    let r = rig(1);
    let mut g = r.up(0, DriverConfig::default());
    let f = frame(BCAST, g.drv.mac, 60, 1);
    g.send(&f).unwrap();
    assert_eq!(r.sent_by(0), bytes(&[f]));
    // TX0 is routed to vector 0 by igbvf_configure_msix.
    assert_eq!(g.irqs.take(), vec![0]);
    assert!(g.drv.tx_dd(0));
    assert_eq!(g.drv.clean_tx(), 1);
    assert_eq!(rd(&g, regs::TX_BASE + q::DH), 1);
    let s = g.vf.stats();
    assert_eq!((s.tx_packets, s.tx_bytes), (1, 60));
    assert_eq!(rd(&g, regs::VFGPTC), 1);
    // The good-octet counters count the CRC too (QEMU's igb adds it the same way).
    assert_eq!(rd(&g, regs::VFGOTC), 64);
}

#[test]
fn a_packet_gathered_from_many_descriptors_is_one_frame() {
    let r = rig(1);
    let mut g = r.up(0, DriverConfig::default());
    let f = frame(BCAST, g.drv.mac, 1514, 9);
    let opts = XmitOpts {
        frag: 100,
        ..XmitOpts::default()
    };
    g.drv.xmit(&g.vf, &f, &opts).unwrap();
    assert_eq!(r.sent_by(0), bytes(&[f]));
    // Only the EOP descriptor (index 15) carries RS: DD there, not before.
    assert!(g.drv.tx_dd(15));
    assert!(!g.drv.tx_dd(14));
}

#[test]
fn without_rs_there_is_no_dd_and_no_interrupt_but_the_frame_goes() {
    let r = rig(1);
    let mut g = r.up(0, DriverConfig::default());
    let f = frame(BCAST, g.drv.mac, 64, 2);
    let opts = XmitOpts {
        rs: false,
        ..XmitOpts::default()
    };
    g.drv.xmit(&g.vf, &f, &opts).unwrap();
    assert_eq!(r.sent_by(0), bytes(&[f]));
    assert!(!g.drv.tx_dd(0));
    assert!(g.irqs.take().is_empty());
    assert_eq!(rd(&g, regs::TX_BASE + q::DH), 1);
}

#[test]
fn short_frames_are_padded_to_60_bytes() {
    let r = rig(1);
    let mut g = r.up(0, DriverConfig::default());
    // An ARP request as the stack hands it: 42 bytes.
    let f = frame(BCAST, g.drv.mac, 42, 8);
    g.send(&f).unwrap();
    let sent = r.sent_by(0);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].len(), 60);
    assert_eq!(&sent[0][..42], &f[..]);
    assert!(sent[0][42..].iter().all(|b| *b == 0));
}

#[test]
fn vlan_insertion_from_the_context_descriptor() {
    let r = rig(1);
    let mut g = r.up(0, DriverConfig::default());
    let f = frame(BCAST, g.drv.mac, 64, 3);
    let opts = XmitOpts {
        vlan: Some(0x2005),
        ..XmitOpts::default()
    };
    g.drv.xmit(&g.vf, &f, &opts).unwrap();
    let sent = r.sent_by(0);
    assert_eq!(sent.len(), 1);
    assert_eq!(&sent[0][12..16], &[0x81, 0x00, 0x20, 0x05]);
    assert_eq!(&sent[0][..12], &f[..12]);
    assert_eq!(&sent[0][16..], &f[12..]);
}

#[test]
fn vf_a_to_vf_b_lands_in_b_posted_buffer_and_fires_b_rx_vector() {
    let r = rig(2);
    let mut a = r.up(0, DriverConfig::default());
    let mut b = r.up(1, DriverConfig::default());
    let f = frame(b.drv.mac, a.drv.mac, 98, 4);
    a.send(&f).unwrap();
    // The switch delivered it to B alone, without a drop.
    let seen = r.seen.all();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].to.as_slice(), seen[0].drops.as_slice()),
        (&[PortId::Vf(1)][..], &[][..])
    );
    // Write-back in B's ring: length, DD, EOP, no VP.
    let wb = b.drv.rx_write_back(0);
    assert_eq!(wb.length, 98);
    assert_eq!(wb.status_error & 0xFFFFF, rx_status::DD | rx_status::EOP);
    // RX0 → vector 1 (igbvf_configure_msix).
    assert_eq!(b.irqs.take(), vec![1]);
    // igbvf_intr_msix_rx → igbvf_poll → igbvf_clean_rx_irq.
    assert_eq!(b.drv.clean_rx(&b.vf), 1);
    assert_eq!(b.drv.received.len(), 1);
    assert_eq!(b.drv.received[0].data, f);
    assert_eq!(b.drv.received[0].vlan, None);
    let s = b.vf.stats();
    assert_eq!((s.rx_packets, s.rx_bytes), (1, 98));
    assert_eq!(rd(&b, regs::VFGPRC), 1);
    assert_eq!(rd(&b, regs::VFGORC), 102, "98 bytes and the CRC");
    // VF to VF is loopback: counted on both sides, with the CRC.
    assert_eq!(
        [regs::VFGPRLBC, regs::VFGORLBC].map(|r| rd(&b, r)),
        [1, 102]
    );
    assert_eq!(
        [regs::VFGPTLBC, regs::VFGOTLBC].map(|r| rd(&a, r)),
        [1, 102]
    );
    assert_eq!([regs::VFGPTC, regs::VFGOTC].map(|r| rd(&a, r)), [1, 102]);
    assert!(
        a.take_received().is_empty(),
        "not looped back to the sender"
    );
}

#[test]
fn stripped_tag_is_written_back_with_vp() {
    let r = rig(1);
    let mut g = r.up(0, DriverConfig::default());
    let f = frame(g.drv.mac, OTHER, 60, 5);
    assert!(deliver(&g, &f, Some(0x6010)));
    let wb = g.drv.rx_write_back(0);
    assert_ne!(wb.status_error & rx_status::VP, 0);
    assert_eq!(wb.vlan, 0x6010);
    g.poll();
    assert_eq!(g.drv.received[0].vlan, Some(0x010));
    // From the wire: a good packet, not a looped one.
    assert_eq!([regs::VFGPRC, regs::VFGORC].map(|r| rd(&g, r)), [1, 64]);
    assert_eq!([regs::VFGPRLBC, regs::VFGORLBC].map(|r| rd(&g, r)), [0, 0]);
}

#[test]
fn a_jumbo_frame_spans_descriptors_with_eop_on_the_last() {
    let r = rig(1);
    let mut g = r.up(0, DriverConfig::default());
    let f = frame(g.drv.mac, OTHER, 5000, 6);
    assert!(deliver(&g, &f, None));
    let wbs: Vec<_> = (0..3).map(|i| g.drv.rx_write_back(i)).collect();
    assert_eq!(
        wbs.iter().map(|w| w.length).collect::<Vec<_>>(),
        [2048, 2048, 904]
    );
    assert!(wbs.iter().all(|w| w.dd()));
    assert_eq!(
        wbs.iter().map(|w| w.eop()).collect::<Vec<_>>(),
        [false, false, true]
    );
    g.poll();
    assert_eq!(g.drv.received.len(), 1);
    assert_eq!(g.drv.received[0].data, f);
    assert_eq!(g.drv.received[0].descriptors, 3);
}

#[test]
fn header_split_puts_the_headers_in_the_header_buffer() {
    let r = rig(1);
    let cfg = DriverConfig {
        rx_buffer_len: 2048,
        ..DriverConfig::default()
    };
    let mut g = r.up(0, cfg);
    let srrctl = rd(&g, regs::RX_BASE + q::SRRCTL);
    assert_eq!((srrctl >> 25) & 7, 0b101, "igbvf: header split always");
    assert_eq!((srrctl >> 8) & 0xF, 2, "128-byte header buffer");
    let f = tcp4(g.drv.mac, OTHER, 1400);
    assert!(deliver(&g, &f, None));
    let wb = g.drv.rx_write_back(0);
    assert!(wb.sph);
    assert_eq!(wb.hdr_len, 54);
    assert_eq!(usize::from(wb.length), f.len() - 54);
    let mut hdr = [0u8; 54];
    g.mem
        .read_slice(&mut hdr, GuestAddress(g.drv.rx_hdr_buf(0)))
        .unwrap();
    assert_eq!(&hdr[..], &f[..54]);
    // A small non-IP frame goes entirely into the header buffer (length 0).
    let small = frame(g.drv.mac, OTHER, 60, 7);
    assert!(deliver(&g, &small, None));
    let wb = g.drv.rx_write_back(1);
    assert_eq!((wb.hdr_len, wb.length), (60, 0));
    // A jumbo TCP frame: headers + 2 KiB, then 2 KiB pieces.
    let big = tcp4(g.drv.mac, OTHER, 6000);
    assert!(deliver(&g, &big, None));
    g.poll();
    let got: Vec<_> = g.drv.received.iter().map(|r| r.data.clone()).collect();
    assert_eq!(got, vec![f, small, big]);
}

/// A frame for a full RX ring: the ring is left untouched, the frame waits in the VF's backlog
/// (the NIC's, not the function's), and the driver's RDT write delivers it.
#[test]
fn a_full_ring_is_left_untouched_and_the_frame_waits_until_buffers_are_posted() {
    let r = rig(1);
    let cfg = DriverConfig {
        ring: 8,
        ..DriverConfig::default()
    };
    let mut g = r.up(0, cfg);
    // 8 descriptors: igbvf fills 7 and writes RDT = 6 (the last one it filled), so the device
    // owns 6.
    assert_eq!(g.vf.rx_free_descriptors(), 6);
    let frames: Vec<Vec<u8>> = (0..7).map(|i| frame(g.drv.mac, OTHER, 60, i)).collect();
    for f in &frames[..6] {
        assert!(deliver(&g, f, None));
    }
    assert_eq!(g.vf.rx_free_descriptors(), 0);
    let mut ring_before = vec![0u8; 8 * 16];
    g.mem
        .read_slice(&mut ring_before, GuestAddress(g.drv.rx_ring_addr()))
        .unwrap();
    assert!(deliver(&g, &frames[6], None), "taken into the backlog");
    let mut ring_after = vec![0u8; 8 * 16];
    g.mem
        .read_slice(&mut ring_after, GuestAddress(g.drv.rx_ring_addr()))
        .unwrap();
    assert_eq!(ring_before, ring_after);
    assert_eq!(g.vf.backlog(), 1);
    assert_eq!(g.vf.stats().rx_packets, 6);
    assert_eq!(g.vf.stats().total_rx_drops(), 0, "waiting is not a drop");
    assert_eq!(g.vf.stats().rx_drop(RxDrop::BacklogOverflow), 0);
    // The driver cleans and re-posts: the waiting frame lands in the fresh buffers.
    g.poll();
    assert_eq!(g.vf.backlog(), 0);
    let got: Vec<Vec<u8>> = g.take_received().into_iter().map(|f| f.data).collect();
    assert_eq!(got, frames, "in order, the waiting one last");
}

#[test]
fn deliver_reports_a_drop_only_when_the_backlog_overflows() {
    let r = rig(1);
    let g = r.up(0, DriverConfig::default());
    let f = frame(g.drv.mac, OTHER, 60, 1);
    let room = g.vf.rx_free_descriptors() as usize + BACKLOG_FRAMES;
    for _ in 0..room {
        assert!(deliver(&g, &f, None));
    }
    assert_eq!(g.vf.backlog(), BACKLOG_FRAMES);
    assert!(!deliver(&g, &f, None), "ring and backlog full");
    let s = g.vf.stats();
    assert_eq!(s.rx_drop(RxDrop::BacklogOverflow), 1);
    assert_eq!(s.rx_packets as usize + g.vf.backlog(), room);
    // RQDPC counts the frame the queue lost.
    assert_eq!(rd(&g, regs::RX_BASE + q::RQDPC), 1);
}

#[test]
fn disabled_queue_bus_master_off_and_detached_are_named_drops() {
    let r = rig(1);
    let g = r.up(0, DriverConfig::default());
    let f = frame(g.drv.mac, OTHER, 60, 1);
    let rxdctl = rd(&g, regs::RX_BASE + q::DCTL);
    wr(&g, regs::RX_BASE + q::DCTL, rxdctl & !regs::dctl::ENABLE);
    assert!(deliver(&g, &f, None), "dropped by the VF, not backlogged");
    assert_eq!(g.vf.stats().rx_drop(RxDrop::QueueDisabled), 1);
    assert_eq!(rd(&g, regs::RX_BASE + q::RQDPC), 1);
    assert_eq!(rd(&g, regs::RX_BASE + q::RQDPC), 0, "RQDPC clears on read");
    wr(&g, regs::RX_BASE + q::DCTL, rxdctl);
    g.vf.config_write(0x04, &0x0002u16.to_le_bytes());
    assert!(deliver(&g, &f, None));
    assert_eq!(g.vf.stats().rx_drop(RxDrop::BusMasterOff), 1);
    g.vf.config_write(0x04, &0x0006u16.to_le_bytes());
    assert!(deliver(&g, &f, None));
    assert_eq!(g.vf.stats().rx_packets, 1);
    g.vf.detach();
    assert!(deliver(&g, &f, None));
    let s = g.vf.stats();
    for reason in [
        RxDrop::QueueDisabled,
        RxDrop::BusMasterOff,
        RxDrop::NotAttached,
    ] {
        assert_eq!(s.rx_drop(reason), 1, "{reason}");
    }
    assert_eq!((s.rx_packets, s.total_rx_drops()), (1, 3));
    assert_eq!(g.vf.backlog(), 0);
}

#[test]
fn tx_with_bus_master_off_waits_until_the_next_tail_write() {
    let r = rig(1);
    let mut g = r.up(0, DriverConfig::default());
    g.vf.config_write(0x04, &0x0002u16.to_le_bytes());
    let f = frame(BCAST, g.drv.mac, 60, 1);
    g.send(&f).unwrap();
    assert!(r.sent_by(0).is_empty());
    assert_eq!(rd(&g, regs::TX_BASE + q::DH), 0, "not fetched");
    g.vf.config_write(0x04, &0x0006u16.to_le_bytes());
    g.send(&f).unwrap();
    assert_eq!(r.sent_by(0).len(), 2);
}

/// 1514-byte frames at `rate 1` (1 Mbit/s): the shaper's bucket holds two standard frames
/// (24 288 bits), so two go at once and each further one waits 1518 × 8 bits / 1 Mbit/s.
#[test]
fn a_shaped_queue_pauses_on_the_frame_it_may_not_send_and_resumes_there() {
    const FRAME_NS: u64 = 1518 * 8 * 1000;
    let r = rig(1);
    r.nic
        .configure_vf(0, &VfSetting::parse_words(&["rate", "1"]).unwrap())
        .unwrap();
    let mut g = r.up(0, DriverConfig::default());
    let frames: Vec<Vec<u8>> = (0..5).map(|i| frame(BCAST, g.drv.mac, 1514, i)).collect();
    for f in &frames {
        g.send(f).unwrap();
    }
    // Paused on frame 2: TDH points at it, it is not DD.
    assert_eq!(r.sent_by(0), bytes(&frames[..2]));
    assert_eq!(g.vf.tx_paused_until(), Some(T0 + FRAME_NS));
    assert_eq!(r.nic.next_wakeup(), Some(T0 + FRAME_NS));
    assert_eq!(rd(&g, regs::TX_BASE + q::DH), 2);
    assert!(g.drv.tx_dd(1) && !g.drv.tx_dd(2));
    assert_eq!(g.vf.stats().tx_deferred, 1);
    // Each deadline lets exactly one more frame go; the last leaves no deadline.
    for k in 1..=3u64 {
        let next = (k < 3).then_some(T0 + (k + 1) * FRAME_NS);
        assert_eq!(r.advance_to(T0 + k * FRAME_NS), next);
        assert_eq!(r.sent_by(0), bytes(&frames[..2 + k as usize]));
        assert_eq!(rd(&g, regs::TX_BASE + q::DH), 2 + k as u32);
    }
    assert_eq!(r.sent_by(0), bytes(&frames), "none lost, none twice");
    assert!(g.vf.tx_paused_until().is_none());
    let s = g.vf.stats();
    assert_eq!((s.tx_deferred, s.tx_packets), (3, 5));
    assert_eq!(r.port(PortId::Vf(0)).tx_deferred, 3);
    g.poll();
    assert_eq!(g.drv.tx_pending(), 0, "every packet cleaned");
}

#[test]
fn hostile_tx_descriptors_are_counted_errors_and_the_ring_moves_on() {
    let r = rig(1);
    let g = r.up(0, DriverConfig::default());
    let ring = g.drv.tx_ring_addr();
    // Descriptor 0: data, length 0, EOP|RS.  Descriptor 1: data far outside memory, EOP|RS.
    // Descriptor 2: legacy (DEXT 0).  Descriptor 3: a good frame.
    let put = |i: u64, addr: u64, cmd: u32, ol: u32| {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&addr.to_le_bytes());
        b[8..12].copy_from_slice(&cmd.to_le_bytes());
        b[12..].copy_from_slice(&ol.to_le_bytes());
        g.mem.write_slice(&b, GuestAddress(ring + 16 * i)).unwrap();
    };
    let data = (3 << 20) | (1 << 29) | (1 << 24) | (1 << 27) | (1 << 25);
    put(0, GUEST_BASE + 0x3_0000, data, 0);
    put(1, 0xFFFF_0000_0000, data | 64, 64 << 14);
    put(2, GUEST_BASE + 0x3_0000, (1 << 24) | (1 << 27) | 64, 0);
    let f = frame(BCAST, g.drv.mac, 64, 1);
    g.mem
        .write_slice(&f, GuestAddress(GUEST_BASE + 0x3_0000))
        .unwrap();
    put(3, GUEST_BASE + 0x3_0000, data | 64, 64 << 14);
    wr(&g, regs::TX_BASE + q::DT, 4);
    assert_eq!(r.sent_by(0), bytes(&[f]));
    let s = g.vf.stats();
    assert_eq!(s.tx_error(TxError::ZeroLength), 1);
    assert_eq!(s.tx_error(TxError::BufferDma), 1);
    assert_eq!(s.tx_error(TxError::UnknownDescriptor), 1);
    assert_eq!(rd(&g, regs::TX_BASE + q::DH), 4);
    // Errors still complete the descriptors that asked for status (RS).
    assert!(g.drv.tx_dd(0) && g.drv.tx_dd(1) && g.drv.tx_dd(3));
    // A tail beyond the ring is refused and counted.
    wr(&g, regs::TX_BASE + q::DT, 4096);
    assert_eq!(g.vf.stats().tx_error(TxError::BadRing), 1);
}

#[test]
fn tx_ring_outside_memory_stops_the_queue() {
    let r = rig(1);
    let g = r.up(0, DriverConfig::default());
    wr(&g, regs::TX_BASE + q::DBAL, 0);
    wr(&g, regs::TX_BASE + q::DBAH, 0x10);
    wr(&g, regs::TX_BASE + q::DT, 3);
    assert_eq!(g.vf.stats().tx_error(TxError::RingDma), 1);
    assert_eq!(rd(&g, regs::TX_BASE + q::DCTL) & regs::dctl::ENABLE, 0);
    assert!(r.sent_by(0).is_empty());
}

#[test]
fn rx_ring_outside_memory_stops_the_queue_and_writes_nothing() {
    let r = rig(1);
    let g = r.up(0, DriverConfig::default());
    let before = {
        let mut v = vec![0u8; GUEST_SIZE];
        g.mem.read_slice(&mut v, GuestAddress(GUEST_BASE)).unwrap();
        v
    };
    wr(&g, regs::RX_BASE + q::DBAH, 0x10);
    let f = frame(g.drv.mac, OTHER, 60, 1);
    assert!(deliver(&g, &f, None));
    assert_eq!(g.vf.stats().rx_drop(RxDrop::RingDma), 1);
    assert_eq!(rd(&g, regs::RX_BASE + q::DCTL) & regs::dctl::ENABLE, 0);
    assert!(deliver(&g, &f, None));
    assert_eq!(g.vf.stats().rx_drop(RxDrop::QueueDisabled), 1);
    let mut after = vec![0u8; GUEST_SIZE];
    g.mem
        .read_slice(&mut after, GuestAddress(GUEST_BASE))
        .unwrap();
    assert!(before == after);
    assert_eq!(g.vf.stats().dma_errors, 1);
    assert_eq!(g.vf.backlog(), 0);
    assert!(g.irqs.take().is_empty());
}

#[test]
fn rx_buffer_outside_memory_drops_the_frame_but_completes_the_descriptor() {
    let r = rig(1);
    let mut g = r.up(0, DriverConfig::default());
    // Point descriptor 0's buffer outside guest memory.
    g.mem
        .write_obj(0xFFFF_0000_0000u64, GuestAddress(g.drv.rx_desc_addr(0)))
        .unwrap();
    let f = frame(g.drv.mac, OTHER, 60, 1);
    assert!(deliver(&g, &f, None));
    assert_eq!(g.vf.stats().rx_drop(RxDrop::BufferDma), 1);
    let wb = g.drv.rx_write_back(0);
    assert!(wb.dd() && wb.eop());
    assert_ne!(wb.status_error & rx_status::ERR_FRAME_MASK, 0);
    g.poll();
    assert!(g.drv.received.is_empty(), "igbvf drops frames with RXE");
    assert!(deliver(&g, &f, None));
    g.poll();
    assert_eq!(g.drv.received.len(), 1);
}

#[test]
fn vtctrl_rst_disables_queues_and_interrupts_but_statistics_keep_running() {
    let r = rig(1);
    let mut g = r.up(0, DriverConfig::default());
    assert!(deliver(&g, &frame(g.drv.mac, OTHER, 60, 1), None));
    wr(&g, regs::VTCTRL, regs::ctrl::RST);
    assert_eq!(rd(&g, regs::RX_BASE + q::DCTL) & regs::dctl::ENABLE, 0);
    assert_eq!(rd(&g, regs::TX_BASE + q::DCTL) & regs::dctl::ENABLE, 0);
    assert_eq!(rd(&g, regs::VTEIMS), 0);
    assert_eq!(rd(&g, regs::VTIVAR), 0);
    assert_eq!(rd(&g, regs::VFGPRC), 1, "free-running across VTCTRL.RST");
    assert_eq!(
        g.vf.stats().vf_resets,
        3,
        "probe's two (igbvf_probe, igbvf_reset) and ours"
    );
    // The PF forgot the VF (VFLRE) and igbvf's handshake works again.
    assert!(!r.nic.with_pf(|pf| pf.agent().is_clear_to_send(0)));
    g.drv.reset_hw(&g.vf).unwrap();
    assert_eq!(g.drv.perm_addr, generated_mac(0));
}

#[test]
fn flr_resets_config_space_queues_and_visible_statistics() {
    let r = rig(1);
    let mut g = r.up(0, DriverConfig::default());
    assert!(deliver(&g, &frame(g.drv.mac, OTHER, 60, 1), None));
    // PCIe capability at 0xA0: Device Control (0xA8) bit 15 = Initiate FLR.
    g.vf.config_write(0xA8, &0x8000u16.to_le_bytes());
    assert_eq!(g.vf.stats().flrs, 1);
    assert!(!g.vf.state().bus_master);
    assert_eq!(rd(&g, regs::VFGPRC), 0);
    assert_eq!(rd(&g, regs::RX_BASE + q::DLEN), 0);
    assert_eq!(
        rd(&g, regs::RX_BASE + q::DCTL),
        regs::dctl::ENABLE | regs::dctl::WTHRESH_1,
        "QEMU reset value"
    );
    assert_eq!(rd(&g, regs::TX_BASE + q::DCTL), regs::dctl::ENABLE);
    // The driver comes back up.
    g.drv.probe(&g.vf).unwrap();
    g.drv.open(&g.vf).unwrap();
    assert!(deliver(&g, &frame(g.drv.mac, OTHER, 60, 2), None));
    assert_eq!(rd(&g, regs::VFGPRC), 1);
}

#[test]
fn pf_ping_fires_the_mailbox_vector_and_igbvf_rechecks_link() {
    let r = rig(2);
    let mut g = r.up(1, DriverConfig::default());
    assert!(g.drv.check_link(&g.vf));
    // igb pings every VF on a link event.
    r.nic.set_link(true);
    assert_eq!(g.irqs.take(), vec![2]);
    // Replay the vector to the handler.
    g.irqs.fire(2);
    let before = g.drv.other_irqs;
    g.poll();
    assert_eq!(g.drv.other_irqs, before + 1);
    // PF_CONTROL_MSG with CTS is in the mailbox: link still up.
    let word0 = r.nic.with_pf(|pf| pf.mailbox(1).unwrap().last_word0());
    assert_ne!(word0 & mailbox::regs::msg::CTS, 0);
    assert!(g.drv.check_link(&g.vf));
}

#[test]
fn watchdog_eics_fires_the_rx_vector() {
    let r = rig(1);
    let g = r.up(0, DriverConfig::default());
    wr(&g, regs::VTEICS, 1 << 1);
    assert_eq!(g.irqs.take(), vec![1]);
}

#[test]
fn access_sizes_are_handled_without_panics() {
    let r = rig(1);
    let g = r.up(0, DriverConfig::default());
    // 8-byte write of RDBAL/RDBAH, 8-byte read back.
    let v = 0x0000_0001_2345_6000u64;
    g.vf.region_write(0, regs::RX_BASE + 0x100, &v.to_le_bytes())
        .unwrap();
    let mut b = [0u8; 8];
    g.vf.region_read(0, regs::RX_BASE + 0x100, &mut b).unwrap();
    assert_eq!(u64::from_le_bytes(b), v);
    // 1- and 2-byte reads of a dword.
    let mut one = [0u8; 1];
    g.vf.region_read(0, regs::RX_BASE + 0x101, &mut one)
        .unwrap();
    assert_eq!(one[0], 0x60);
    let mut two = [0u8; 2];
    g.vf.region_read(0, regs::RX_BASE + 0x102, &mut two)
        .unwrap();
    assert_eq!(two, [0x45, 0x23]);
    // Narrow writes, unaligned accesses, beyond the BAR, other regions: refused.
    assert!(g.vf.region_write(0, 0x1524, &[1]).is_err());
    assert!(g.vf.region_read(0, 0x1522, &mut [0u8; 4]).is_err());
    assert!(g
        .vf
        .region_read(0, regs::BAR0_SIZE - 2, &mut [0u8; 4])
        .is_err());
    assert!(g.vf.region_read(2, 0, &mut [0u8; 4]).is_err());
    assert!(g.vf.region_write(0, u64::MAX - 1, &[0u8; 4]).is_err());
    assert_eq!(g.vf.stats().bad_accesses, 5);
}

#[test]
fn msix_table_stores_and_pba_reads_zero() {
    let r = rig(1);
    let g = r.up(0, DriverConfig::default());
    g.vf.region_write(3, 16, &0xFEE0_0000u32.to_le_bytes())
        .unwrap();
    g.vf.region_write(3, 28, &1u32.to_le_bytes()).unwrap();
    let mut b = [0u8; 4];
    g.vf.region_read(3, 16, &mut b).unwrap();
    assert_eq!(u32::from_le_bytes(b), 0xFEE0_0000);
    g.vf.region_read(3, 28, &mut b).unwrap();
    assert_eq!(u32::from_le_bytes(b), 1);
    let mut pba = [0xAAu8; 8];
    g.vf.region_read(3, regs::MSIX_PBA, &mut pba).unwrap();
    assert_eq!(pba, [0; 8]);
    assert_eq!(g.vf.layout().bar_sizes, [16384, 0, 0, 16384, 0, 0]);
    assert_eq!(g.vf.layout().msix_vectors, 3);
}

#[test]
fn device_reset_tells_the_pf_and_the_next_probe_works() {
    let r = rig(1);
    let mut g = r.up(0, DriverConfig::default());
    assert!(r.nic.with_pf(|pf| pf.agent().is_clear_to_send(0)));
    g.vf.reset();
    assert!(!r.nic.with_pf(|pf| pf.agent().is_clear_to_send(0)));
    g.drv.probe(&g.vf).unwrap();
    g.drv.open(&g.vf).unwrap();
    assert!(g.drv.check_link(&g.vf));
}

#[test]
fn vlan_and_multicast_requests_reach_the_pf_agent() {
    let r = rig(1);
    let mut g = r.up(0, DriverConfig::default());
    assert!(g.drv.set_vlan(&g.vf, 10, true).unwrap());
    assert_eq!(r.policy(0).vlan_filters, vec![10]);
    assert!(g.drv.set_vlan(&g.vf, 10, false).unwrap());
    assert!(r.policy(0).vlan_filters.is_empty());
    let group = [0x01, 0x00, 0x5E, 0x00, 0x00, 0xFB];
    g.drv.set_multicast(&g.vf, &[group]).unwrap();
    // e1000_hash_mc_addr_vf: (addr[4] >> 4 | addr[5] << 4) & 0xFFF, addr[4] = 0.
    let h = 0xFFF & (0xFBu16 << 4);
    assert_eq!(r.policy(0).mc_hashes, vec![h]);
    assert!(g.drv.check_link(&g.vf));
}

#[test]
fn port_vlan_set_by_the_admin_refuses_the_vf_vlan_request() {
    let r = rig(1);
    let mut g = r.up(0, DriverConfig::default());
    r.nic
        .configure_vf(
            0,
            &[VfSetting::Vlan {
                vid: 10,
                qos: 0,
                proto: VlanProto::Dot1Q,
            }],
        )
        .unwrap();
    g.poll();
    assert!(!g.drv.set_vlan(&g.vf, 20, true).unwrap());
    assert!(r.policy(0).vlan_filters.is_empty());
}

#[test]
fn mtu_change_goes_down_and_up_into_header_split_and_traffic_still_flows() {
    let r = rig(1);
    let mut g = r.up(0, DriverConfig::default());
    g.drv.change_mtu(&g.vf, 9000).unwrap();
    let srrctl = rd(&g, regs::RX_BASE + q::SRRCTL);
    assert_eq!((srrctl >> 25) & 7, 0b101);
    assert_eq!(r.policy(0).max_frame, 9000 + 22);
    g.poll();
    let big = tcp4(g.drv.mac, OTHER, 8900);
    assert!(deliver(&g, &big, None));
    g.poll();
    assert_eq!(g.drv.received.last().map(|r| &r.data), Some(&big));
    let f = frame(BCAST, g.drv.mac, 100, 1);
    g.send(&f).unwrap();
    assert_eq!(r.sent_by(0).last(), Some(&Bytes::from(f)));
    assert!(g.drv.check_link(&g.vf));
}

#[test]
fn state_shows_the_rings_igbvf_configured() {
    let r = rig(1);
    let g = r.up(0, DriverConfig::default());
    let st = g.vf.state();
    assert!(st.rx.enabled && st.tx.enabled && st.bus_master && st.attached);
    assert_eq!(
        (st.rx.base, st.rx.len, st.rx.head, st.rx.tail),
        (g.drv.rx_ring_addr(), 64, 0, 62)
    );
    assert_eq!((st.tx.base, st.tx.len), (g.drv.tx_ring_addr(), 64));
    assert_eq!((st.eims, st.ivar, st.ivar_misc), (0x7, 0x8081, 0x82));
    assert_eq!(st.tx_paused_until, None);
    let json = serde_json::to_string(&st).unwrap();
    assert!(json.contains("\"ivar_misc\":130"));
    let stats = serde_json::to_value(g.vf.stats()).unwrap();
    assert_eq!(stats["rx_drops"]["backlog_overflow"], 0);
    assert!(
        stats["rx_drops"].get("ring_full").is_none(),
        "a full ring is not a drop"
    );
}

#[test]
fn the_watchdog_recovers_from_a_pf_reset_with_its_reset_task_ten_seconds_after_the_last() {
    use model::testing::{RESET_THROTTLE_NS, WATCHDOG_PERIOD_NS};
    let r = rig(1);
    let mut a = r.up(0, DriverConfig::default());
    a.drv.last_reset_ns = T0;
    let up = a.drv.watchdog(&a.vf, T0).unwrap();
    assert_eq!(
        (up.link, up.carrier_change, up.reset),
        (true, Some(true), false)
    );
    r.nic.notify_pf_reset(Some(0));
    a.poll();
    // RSTD, and no clear-to-send message: "Link is Down", no error yet.
    let down = a.drv.watchdog(&a.vf, T0).unwrap();
    assert_eq!(
        (down.link, down.carrier_change, down.reset),
        (false, Some(false), false)
    );
    assert!(!a.drv.carrier);
    // Every 2 s the check reads the mailbox again; the PF answers the VF's ACK with a bare
    // NACK (at most every 2 s), which is an error, but within 10 s of the last reset nothing
    // is done about it.
    let mut t = T0;
    while t + WATCHDOG_PERIOD_NS <= T0 + RESET_THROTTLE_NS {
        t += WATCHDOG_PERIOD_NS;
        r.clock.advance_to(t);
        let run = a.drv.watchdog(&a.vf, t).unwrap();
        assert!(
            !run.link && !run.reset,
            "at +{} s",
            (t - T0) / 1_000_000_000
        );
    }
    t += WATCHDOG_PERIOD_NS;
    r.clock.advance_to(t);
    let back = a.drv.watchdog(&a.vf, t).unwrap();
    assert_eq!(
        (back.link, back.carrier_change, back.reset),
        (true, Some(true), true)
    );
    assert_eq!((a.drv.resets, a.drv.last_reset_ns), (1, t));
    a.poll();
    let f = frame(BCAST, a.drv.mac, 100, 1);
    a.send(&f).unwrap();
    assert_eq!(r.sent_by(0).last(), Some(&Bytes::from(f)));
}

#[test]
fn a_pf_reset_notification_drops_one_vfs_link_until_it_redoes_the_handshake() {
    let r = rig(2);
    let mut a = r.up(0, DriverConfig::default());
    let mut b = r.up(1, DriverConfig::default());
    assert!(a.drv.check_link(&a.vf) && b.drv.check_link(&b.vf));
    assert_eq!(r.nic.notify_pf_reset(Some(0)), vec![0]);
    // The mailbox vector (igbvf_msix_other → watchdog).
    assert_eq!(a.irqs.take(), vec![2]);
    assert!(b.irqs.take().is_empty(), "VF 1 is not told");
    // e1000_check_for_rst_vf sees RSTD; no PF message with CTS: the link is down.
    assert!(!a.drv.check_link(&a.vf));
    assert!(b.drv.check_link(&b.vf));
    // igbvf's reset task (igbvf_reinit_locked): e1000_reset_hw_vf's VF_RESET handshake, then
    // igbvf_up's requests, whose replies carry CTS again: the link is back.
    a.drv.reset_hw(&a.vf).unwrap();
    a.drv.set_multicast(&a.vf, &[]).unwrap();
    let word0 = r.nic.with_pf(|pf| pf.mailbox(0).unwrap().last_word0());
    assert_ne!(word0 & mailbox::regs::msg::CTS, 0, "{word0:#x}");
    assert!(a.drv.check_link(&a.vf));
    let counters = r
        .nic
        .with_pf(|pf| (pf.counters(0).unwrap(), pf.counters(1).unwrap()));
    assert_eq!((counters.0.pf_resets, counters.1.pf_resets), (1, 0));
}
