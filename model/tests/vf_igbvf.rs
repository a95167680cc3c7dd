//! The VF model driven exactly as Linux igbvf drives it, in process.

mod support;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use model::desc::rx_status;
use model::regs::{self, q};
use model::testing::{DriverConfig, XmitOpts};
use model::{LinkState, RxDrop, TxError, TxVerdict};
use support::*;
use vm_memory::{Bytes as _, GuestAddress};

const BCAST: [u8; 6] = [0xFF; 6];

#[test]
fn probe_gets_the_mac_the_pf_agent_assigned_and_link_reads_up() {
    let port = port(2);
    let mut g = guest(&port, 1, DriverConfig::default());
    let mac = g.drv.probe(&mut g.vf).expect("probe");
    // Generated mode: 02:52:54:00:00:01 for VF 1.
    assert_eq!(mac, [0x02, 0x52, 0x54, 0x00, 0x00, 0x01]);
    assert_eq!(port.policy(1).mac.map(|m| m.0), Some(mac));
    g.drv.open(&mut g.vf).expect("open");
    assert!(g.drv.check_link(&mut g.vf), "link up: STATUS.LU and CTS");
    let status = g.drv.rd(&mut g.vf, regs::VTSTATUS);
    assert_eq!(
        status & (regs::status::LU | regs::status::FD),
        regs::status::LU | regs::status::FD
    );
    assert_eq!(status & (0b11 << 6), regs::status::SPEED_1000);
}

#[test]
fn admin_mac_is_what_the_probe_reads() {
    let port = port(2);
    let admin = [0x02, 0, 0, 0, 0, 0x10];
    port.admin(0, |p| {
        p.mac = Some(model::testing::mac(admin));
        p.admin_mac = true;
    });
    let mut g = guest(&port, 0, DriverConfig::default());
    assert_eq!(g.drv.probe(&mut g.vf).unwrap(), admin);
}

#[test]
fn without_an_assigned_mac_igbvf_registers_its_random_one() {
    let port = model::testing::MailboxPort::new(mailbox::AgentConfig::new(1)).unwrap();
    let cfg = DriverConfig::default();
    let mut g = guest(&port, 0, cfg);
    assert_eq!(g.drv.probe(&mut g.vf).unwrap(), cfg.random_mac);
    assert_eq!(g.drv.perm_addr, [0; 6]);
    assert_eq!(port.policy(0).mac.map(|m| m.0), Some(cfg.random_mac));
}

#[test]
fn link_down_reads_down() {
    let port = port(1);
    let mut g = up(&port, 0, DriverConfig::default());
    g.vf.shared().set_link(LinkState::DOWN);
    assert_eq!(g.drv.rd(&mut g.vf, regs::VTSTATUS), 0);
}

#[test]
fn transmitted_frame_comes_out_byte_exact_with_dd_and_the_tx_vector() {
    let port = port(1);
    let mut g = up(&port, 0, DriverConfig::default());
    let f = frame(BCAST, g.drv.mac, 60, 1);
    g.drv.xmit(&mut g.vf, &f, &XmitOpts::default()).unwrap();
    assert_eq!(g.sent.lock().unwrap().as_slice(), &[Bytes::from(f.clone())]);
    // TX0 is routed to vector 0 by igbvf_configure_msix.
    assert_eq!(g.irqs.take(), vec![0]);
    assert!(g.drv.tx_dd(0));
    assert_eq!(g.drv.clean_tx(), 1);
    assert_eq!(g.drv.rd(&mut g.vf, regs::TX_BASE + q::DH), 1);
    let s = g.vf.stats();
    assert_eq!((s.tx_packets, s.tx_bytes), (1, 60));
    assert_eq!(g.drv.rd(&mut g.vf, regs::VFGPTC), 1);
    assert_eq!(g.drv.rd(&mut g.vf, regs::VFGOTC), 60);
}

#[test]
fn a_packet_gathered_from_many_descriptors_is_one_frame() {
    let port = port(1);
    let mut g = up(&port, 0, DriverConfig::default());
    let f = frame(BCAST, g.drv.mac, 1514, 9);
    let opts = XmitOpts {
        frag: 100,
        ..XmitOpts::default()
    };
    g.drv.xmit(&mut g.vf, &f, &opts).unwrap();
    assert_eq!(g.sent.lock().unwrap().as_slice(), &[Bytes::from(f)]);
    // Only the EOP descriptor (index 15) carries RS: DD there, not before.
    assert!(g.drv.tx_dd(15));
    assert!(!g.drv.tx_dd(14));
}

#[test]
fn without_rs_there_is_no_dd_and_no_interrupt_but_the_frame_goes() {
    let port = port(1);
    let mut g = up(&port, 0, DriverConfig::default());
    let f = frame(BCAST, g.drv.mac, 64, 2);
    let opts = XmitOpts {
        rs: false,
        ..XmitOpts::default()
    };
    g.drv.xmit(&mut g.vf, &f, &opts).unwrap();
    assert_eq!(g.sent.lock().unwrap().len(), 1);
    assert!(!g.drv.tx_dd(0));
    assert!(g.irqs.take().is_empty());
    assert_eq!(g.drv.rd(&mut g.vf, regs::TX_BASE + q::DH), 1);
}

#[test]
fn short_frames_are_padded_to_60_bytes() {
    let port = port(1);
    let mut g = up(&port, 0, DriverConfig::default());
    // An ARP request as the stack hands it: 42 bytes.
    let f = frame(BCAST, g.drv.mac, 42, 8);
    g.drv.xmit(&mut g.vf, &f, &XmitOpts::default()).unwrap();
    let sent = g.sent.lock().unwrap();
    assert_eq!(sent[0].len(), 60);
    assert_eq!(&sent[0][..42], &f[..]);
    assert!(sent[0][42..].iter().all(|b| *b == 0));
}

#[test]
fn vlan_insertion_from_the_context_descriptor() {
    let port = port(1);
    let mut g = up(&port, 0, DriverConfig::default());
    let f = frame(BCAST, g.drv.mac, 64, 3);
    let opts = XmitOpts {
        vlan: Some(0x2005),
        ..XmitOpts::default()
    };
    g.drv.xmit(&mut g.vf, &f, &opts).unwrap();
    let sent = g.sent.lock().unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(&sent[0][12..16], &[0x81, 0x00, 0x20, 0x05]);
    assert_eq!(&sent[0][..12], &f[..12]);
    assert_eq!(&sent[0][16..], &f[12..]);
}

#[test]
fn vf_a_to_vf_b_lands_in_b_posted_buffer_and_fires_b_rx_vector() {
    let port = port(2);
    let mut a = up(&port, 0, DriverConfig::default());
    let mut b = up(&port, 1, DriverConfig::default());
    // A's sink delivers to B, as the eswitch will.
    let b_rx = b.vf.shared();
    let results: Arc<Mutex<Vec<Result<(), RxDrop>>>> = Arc::default();
    let r = results.clone();
    a.vf.set_tx_sink(Box::new(move |f| {
        r.lock().unwrap().push(b_rx.receive(&f, None));
        TxVerdict::Sent
    }));
    let f = frame(b.drv.mac, a.drv.mac, 98, 4);
    a.drv.xmit(&mut a.vf, &f, &XmitOpts::default()).unwrap();
    assert_eq!(results.lock().unwrap().as_slice(), &[Ok(())]);
    // Write-back in B's ring: length, DD, EOP, no VP.
    let wb = b.drv.rx_write_back(0);
    assert_eq!(wb.length, 98);
    assert_eq!(wb.status_error & 0xFFFFF, rx_status::DD | rx_status::EOP);
    // RX0 → vector 1 (igbvf_configure_msix).
    assert_eq!(b.irqs.take(), vec![1]);
    // igbvf_intr_msix_rx → igbvf_poll → igbvf_clean_rx_irq.
    assert_eq!(b.drv.clean_rx(&mut b.vf), 1);
    assert_eq!(b.drv.received.len(), 1);
    assert_eq!(b.drv.received[0].data, f);
    assert_eq!(b.drv.received[0].vlan, None);
    let s = b.vf.stats();
    assert_eq!((s.rx_packets, s.rx_bytes), (1, 98));
    assert_eq!(b.drv.rd(&mut b.vf, regs::VFGPRC), 1);
    assert_eq!(b.drv.rd(&mut b.vf, regs::VFGORC), 98);
}

#[test]
fn stripped_tag_is_written_back_with_vp() {
    let port = port(1);
    let mut g = up(&port, 0, DriverConfig::default());
    let f = frame(g.drv.mac, [2, 0, 0, 0, 0, 9], 60, 5);
    g.vf.shared().receive(&f, Some(0x6010)).unwrap();
    let wb = g.drv.rx_write_back(0);
    assert_ne!(wb.status_error & rx_status::VP, 0);
    assert_eq!(wb.vlan, 0x6010);
    g.drv.handle_irqs(&mut g.vf, &g.irqs);
    assert_eq!(g.drv.received[0].vlan, Some(0x010));
}

#[test]
fn a_jumbo_frame_spans_descriptors_with_eop_on_the_last() {
    let port = port(1);
    let mut g = up(&port, 0, DriverConfig::default());
    let f = frame(g.drv.mac, [2, 0, 0, 0, 0, 9], 5000, 6);
    g.vf.shared().receive(&f, None).unwrap();
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
    g.drv.handle_irqs(&mut g.vf, &g.irqs);
    assert_eq!(g.drv.received.len(), 1);
    assert_eq!(g.drv.received[0].data, f);
    assert_eq!(g.drv.received[0].descriptors, 3);
}

#[test]
fn header_split_puts_the_headers_in_the_header_buffer() {
    let port = port(1);
    let cfg = DriverConfig {
        rx_buffer_len: 2048,
        ..DriverConfig::default()
    };
    let mut g = up(&port, 0, cfg);
    let srrctl = g.drv.rd(&mut g.vf, regs::RX_BASE + q::SRRCTL);
    assert_eq!((srrctl >> 25) & 7, 0b101, "igbvf: header split always");
    assert_eq!((srrctl >> 8) & 0xF, 2, "128-byte header buffer");
    let f = tcp4(g.drv.mac, [2, 0, 0, 0, 0, 9], 1400);
    g.vf.shared().receive(&f, None).unwrap();
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
    let small = frame(g.drv.mac, [2, 0, 0, 0, 0, 9], 60, 7);
    g.vf.shared().receive(&small, None).unwrap();
    let wb = g.drv.rx_write_back(1);
    assert_eq!((wb.hdr_len, wb.length), (60, 0));
    // A jumbo TCP frame: headers + 2 KiB, then 2 KiB pieces.
    let big = tcp4(g.drv.mac, [2, 0, 0, 0, 0, 9], 6000);
    g.vf.shared().receive(&big, None).unwrap();
    g.drv.handle_irqs(&mut g.vf, &g.irqs);
    let got: Vec<_> = g.drv.received.iter().map(|r| r.data.clone()).collect();
    assert_eq!(got, vec![f, small, big]);
}

#[test]
fn a_full_ring_refuses_without_writing_and_posting_buffers_notifies_the_owner() {
    let port = port(1);
    let cfg = DriverConfig {
        ring: 8,
        ..DriverConfig::default()
    };
    let mut g = up(&port, 0, cfg);
    let posted: Arc<Mutex<Vec<u16>>> = Arc::default();
    let p = posted.clone();
    g.vf.set_rx_posted_hook(Arc::new(move |vf| p.lock().unwrap().push(vf)));
    let rx = g.vf.shared();
    // 8 descriptors: igbvf fills 7 and writes RDT = 6 (the last one it filled), so the device
    // owns 6.
    assert_eq!(rx.rx_free_descriptors(), 6);
    for i in 0..6 {
        rx.receive(&frame(g.drv.mac, [2, 0, 0, 0, 0, 9], 60, i), None)
            .unwrap();
    }
    let mut ring_before = vec![0u8; 8 * 16];
    g.mem
        .read_slice(&mut ring_before, GuestAddress(g.drv.rx_ring_addr()))
        .unwrap();
    assert_eq!(
        rx.receive(&frame(g.drv.mac, [2, 0, 0, 0, 0, 9], 60, 99), None),
        Err(RxDrop::RingFull)
    );
    let mut ring_after = vec![0u8; 8 * 16];
    g.mem
        .read_slice(&mut ring_after, GuestAddress(g.drv.rx_ring_addr()))
        .unwrap();
    assert_eq!(ring_before, ring_after);
    assert_eq!(g.vf.stats().rx_drop(RxDrop::RingFull), 1);
    // The driver cleans and re-posts: the owner hears about it and can retry.
    g.drv.handle_irqs(&mut g.vf, &g.irqs);
    assert_eq!(g.drv.received.len(), 6);
    assert_eq!(posted.lock().unwrap().as_slice(), &[0]);
    rx.receive(&frame(g.drv.mac, [2, 0, 0, 0, 0, 9], 60, 99), None)
        .unwrap();
}

#[test]
fn disabled_queue_bus_master_off_and_detached_are_named_drops() {
    let port = port(1);
    let mut g = up(&port, 0, DriverConfig::default());
    let rx = g.vf.shared();
    let f = frame(g.drv.mac, [2, 0, 0, 0, 0, 9], 60, 1);
    let rxdctl = g.drv.rd(&mut g.vf, regs::RX_BASE + q::DCTL);
    g.drv.wr(
        &mut g.vf,
        regs::RX_BASE + q::DCTL,
        rxdctl & !regs::dctl::ENABLE,
    );
    assert_eq!(rx.receive(&f, None), Err(RxDrop::QueueDisabled));
    assert_eq!(g.drv.rd(&mut g.vf, regs::RX_BASE + q::RQDPC), 1);
    assert_eq!(
        g.drv.rd(&mut g.vf, regs::RX_BASE + q::RQDPC),
        0,
        "RQDPC clears on read"
    );
    g.drv.wr(&mut g.vf, regs::RX_BASE + q::DCTL, rxdctl);
    g.vf.config_write(0x04, &0x0002u16.to_le_bytes());
    assert_eq!(rx.receive(&f, None), Err(RxDrop::BusMasterOff));
    g.vf.config_write(0x04, &0x0006u16.to_le_bytes());
    rx.receive(&f, None).unwrap();
    g.vf.detach();
    assert_eq!(rx.receive(&f, None), Err(RxDrop::NotAttached));
    let s = g.vf.stats();
    for r in [
        RxDrop::QueueDisabled,
        RxDrop::BusMasterOff,
        RxDrop::NotAttached,
    ] {
        assert_eq!(s.rx_drop(r), 1, "{r}");
    }
}

#[test]
fn tx_with_bus_master_off_waits_until_the_next_tail_write() {
    let port = port(1);
    let mut g = up(&port, 0, DriverConfig::default());
    g.vf.config_write(0x04, &0x0002u16.to_le_bytes());
    let f = frame(BCAST, g.drv.mac, 60, 1);
    g.drv.xmit(&mut g.vf, &f, &XmitOpts::default()).unwrap();
    assert!(g.sent.lock().unwrap().is_empty());
    g.vf.config_write(0x04, &0x0006u16.to_le_bytes());
    g.drv.xmit(&mut g.vf, &f, &XmitOpts::default()).unwrap();
    assert_eq!(g.sent.lock().unwrap().len(), 2);
}

#[test]
fn defer_pauses_the_queue_and_resume_continues_without_loss_or_duplication() {
    let port = port(1);
    let mut g = up(&port, 0, DriverConfig::default());
    let out: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let o = out.clone();
    let mut calls = 0;
    g.vf.set_tx_sink(Box::new(move |f| {
        calls += 1;
        // The rate limiter refuses the 2nd and the 4th offers.
        if calls == 2 || calls == 4 {
            return TxVerdict::Defer {
                until_ns: 1000 * calls,
            };
        }
        o.lock().unwrap().push(f);
        TxVerdict::Sent
    }));
    let frames: Vec<Vec<u8>> = (0..5)
        .map(|i| frame(BCAST, g.drv.mac, 60 + i, i as u8))
        .collect();
    for f in &frames {
        g.drv.xmit(&mut g.vf, f, &XmitOpts::default()).unwrap();
    }
    // Paused on frame 1: TDH points at it, it is not DD.
    assert_eq!(out.lock().unwrap().len(), 1);
    assert_eq!(g.vf.tx_paused_until(), Some(2000));
    assert_eq!(g.drv.rd(&mut g.vf, regs::TX_BASE + q::DH), 1);
    assert!(g.drv.tx_dd(0) && !g.drv.tx_dd(1));
    let run = g.vf.tx_resume();
    assert_eq!(run.paused_until, Some(4000));
    assert_eq!(out.lock().unwrap().len(), 2);
    let run = g.vf.tx_resume();
    assert_eq!(run.paused_until, None);
    let got: Vec<Vec<u8>> = out.lock().unwrap().iter().map(|b| b.to_vec()).collect();
    assert_eq!(got, frames);
    assert_eq!(g.drv.rd(&mut g.vf, regs::TX_BASE + q::DH), 5);
    assert_eq!(g.vf.stats().tx_deferred, 2);
    assert_eq!(g.vf.stats().tx_packets, 5);
}

#[test]
fn hostile_tx_descriptors_are_counted_errors_and_the_ring_moves_on() {
    let port = port(1);
    let mut g = up(&port, 0, DriverConfig::default());
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
    g.drv.wr(&mut g.vf, regs::TX_BASE + q::DT, 4);
    assert_eq!(g.sent.lock().unwrap().as_slice(), &[Bytes::from(f)]);
    let s = g.vf.stats();
    assert_eq!(s.tx_error(TxError::ZeroLength), 1);
    assert_eq!(s.tx_error(TxError::BufferDma), 1);
    assert_eq!(s.tx_error(TxError::UnknownDescriptor), 1);
    assert_eq!(g.drv.rd(&mut g.vf, regs::TX_BASE + q::DH), 4);
    // Errors still complete the descriptors that asked for status (RS).
    assert!(g.drv.tx_dd(0) && g.drv.tx_dd(1) && g.drv.tx_dd(3));
    // A tail beyond the ring is refused and counted.
    g.drv.wr(&mut g.vf, regs::TX_BASE + q::DT, 4096);
    assert_eq!(g.vf.stats().tx_error(TxError::BadRing), 1);
}

#[test]
fn tx_ring_outside_memory_stops_the_queue() {
    let port = port(1);
    let mut g = up(&port, 0, DriverConfig::default());
    g.drv.wr(&mut g.vf, regs::TX_BASE + q::DBAL, 0);
    g.drv.wr(&mut g.vf, regs::TX_BASE + q::DBAH, 0x10);
    g.drv.wr(&mut g.vf, regs::TX_BASE + q::DT, 3);
    assert_eq!(g.vf.stats().tx_error(TxError::RingDma), 1);
    assert_eq!(
        g.drv.rd(&mut g.vf, regs::TX_BASE + q::DCTL) & regs::dctl::ENABLE,
        0
    );
}

#[test]
fn rx_ring_outside_memory_stops_the_queue_and_writes_nothing() {
    let port = port(1);
    let mut g = up(&port, 0, DriverConfig::default());
    let before = {
        let mut v = vec![0u8; GUEST_SIZE];
        g.mem.read_slice(&mut v, GuestAddress(GUEST_BASE)).unwrap();
        v
    };
    g.drv.wr(&mut g.vf, regs::RX_BASE + q::DBAH, 0x10);
    let rx = g.vf.shared();
    let f = frame(g.drv.mac, [2, 0, 0, 0, 0, 9], 60, 1);
    assert_eq!(rx.receive(&f, None), Err(RxDrop::RingDma));
    assert_eq!(
        g.drv.rd(&mut g.vf, regs::RX_BASE + q::DCTL) & regs::dctl::ENABLE,
        0
    );
    assert_eq!(rx.receive(&f, None), Err(RxDrop::QueueDisabled));
    let mut after = vec![0u8; GUEST_SIZE];
    g.mem
        .read_slice(&mut after, GuestAddress(GUEST_BASE))
        .unwrap();
    assert!(before == after);
    assert_eq!(g.vf.stats().dma_errors, 1);
    assert!(g.irqs.take().is_empty());
}

#[test]
fn rx_buffer_outside_memory_drops_the_frame_but_completes_the_descriptor() {
    let port = port(1);
    let mut g = up(&port, 0, DriverConfig::default());
    // Point descriptor 0's buffer outside guest memory.
    g.mem
        .write_obj(0xFFFF_0000_0000u64, GuestAddress(g.drv.rx_desc_addr(0)))
        .unwrap();
    let rx = g.vf.shared();
    let f = frame(g.drv.mac, [2, 0, 0, 0, 0, 9], 60, 1);
    assert_eq!(rx.receive(&f, None), Err(RxDrop::BufferDma));
    let wb = g.drv.rx_write_back(0);
    assert!(wb.dd() && wb.eop());
    assert_ne!(wb.status_error & rx_status::ERR_FRAME_MASK, 0);
    g.drv.handle_irqs(&mut g.vf, &g.irqs);
    assert!(g.drv.received.is_empty(), "igbvf drops frames with RXE");
    rx.receive(&f, None).unwrap();
    g.drv.handle_irqs(&mut g.vf, &g.irqs);
    assert_eq!(g.drv.received.len(), 1);
}

#[test]
fn vtctrl_rst_disables_queues_and_interrupts_but_statistics_keep_running() {
    let port = port(1);
    let mut g = up(&port, 0, DriverConfig::default());
    g.vf.shared()
        .receive(&frame(g.drv.mac, [2, 0, 0, 0, 0, 9], 60, 1), None)
        .unwrap();
    g.drv.wr(&mut g.vf, regs::VTCTRL, regs::ctrl::RST);
    assert_eq!(
        g.drv.rd(&mut g.vf, regs::RX_BASE + q::DCTL) & regs::dctl::ENABLE,
        0
    );
    assert_eq!(
        g.drv.rd(&mut g.vf, regs::TX_BASE + q::DCTL) & regs::dctl::ENABLE,
        0
    );
    assert_eq!(g.drv.rd(&mut g.vf, regs::VTEIMS), 0);
    assert_eq!(g.drv.rd(&mut g.vf, regs::VTIVAR), 0);
    assert_eq!(
        g.drv.rd(&mut g.vf, regs::VFGPRC),
        1,
        "free-running across VTCTRL.RST"
    );
    // The PF forgot the VF (VFLRE) and igbvf's handshake works again.
    g.drv.reset_hw(&mut g.vf).unwrap();
    assert_eq!(g.drv.perm_addr, [0x02, 0x52, 0x54, 0x00, 0x00, 0x00]);
}

#[test]
fn flr_resets_config_space_queues_and_visible_statistics() {
    let port = port(1);
    let mut g = up(&port, 0, DriverConfig::default());
    g.vf.shared()
        .receive(&frame(g.drv.mac, [2, 0, 0, 0, 0, 9], 60, 1), None)
        .unwrap();
    // PCIe capability at 0xA0: Device Control (0xA8) bit 15 = Initiate FLR.
    g.vf.config_write(0xA8, &0x8000u16.to_le_bytes());
    assert_eq!(g.vf.stats().flrs, 1);
    assert!(!g.vf.shared().bus_master());
    assert_eq!(g.drv.rd(&mut g.vf, regs::VFGPRC), 0);
    assert_eq!(g.drv.rd(&mut g.vf, regs::RX_BASE + q::DLEN), 0);
    assert_eq!(
        g.drv.rd(&mut g.vf, regs::RX_BASE + q::DCTL),
        regs::dctl::ENABLE | regs::dctl::WTHRESH_1,
        "QEMU reset value"
    );
    assert_eq!(
        g.drv.rd(&mut g.vf, regs::TX_BASE + q::DCTL),
        regs::dctl::ENABLE
    );
    // The driver comes back up.
    g.drv.probe(&mut g.vf).unwrap();
    g.drv.open(&mut g.vf).unwrap();
    g.vf.shared()
        .receive(&frame(g.drv.mac, [2, 0, 0, 0, 0, 9], 60, 2), None)
        .unwrap();
    assert_eq!(g.drv.rd(&mut g.vf, regs::VFGPRC), 1);
}

#[test]
fn pf_ping_fires_the_mailbox_vector_and_igbvf_rechecks_link() {
    let port = port(2);
    let mut g = up(&port, 1, DriverConfig::default());
    assert!(g.drv.check_link(&mut g.vf));
    port.ping(1, &g.vf.shared());
    assert_eq!(g.irqs.take(), vec![2]);
    // Replay the vector to the handler.
    g.vf.shared().mailbox_interrupt();
    g.drv.handle_irqs(&mut g.vf, &g.irqs);
    assert_eq!(g.drv.other_irqs, 1);
    // PF_CONTROL_MSG with CTS is in the mailbox: link still up.
    assert!(g.drv.check_link(&mut g.vf));
}

#[test]
fn watchdog_eics_fires_the_rx_vector() {
    let port = port(1);
    let mut g = up(&port, 0, DriverConfig::default());
    g.drv.wr(&mut g.vf, regs::VTEICS, 1 << 1);
    assert_eq!(g.irqs.take(), vec![1]);
}

#[test]
fn access_sizes_are_handled_without_panics() {
    let port = port(1);
    let mut g = up(&port, 0, DriverConfig::default());
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
    let port = port(1);
    let mut g = up(&port, 0, DriverConfig::default());
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
    assert_eq!(g.vf.info().bar_sizes, [16384, 0, 0, 16384, 0, 0]);
    assert_eq!(g.vf.info().msix_vectors, 3);
}

#[test]
fn device_reset_tells_the_pf_and_the_next_probe_works() {
    let port = port(1);
    let mut g = up(&port, 0, DriverConfig::default());
    g.vf.reset();
    assert!(!port.is_clear_to_send(0));
    g.drv.probe(&mut g.vf).unwrap();
    g.drv.open(&mut g.vf).unwrap();
    assert!(g.drv.check_link(&mut g.vf));
}

#[test]
fn vlan_and_multicast_requests_reach_the_pf_agent() {
    let port = port(1);
    let mut g = up(&port, 0, DriverConfig::default());
    assert!(g.drv.set_vlan(&mut g.vf, 10, true).unwrap());
    assert_eq!(port.policy(0).vlan_filters, vec![10]);
    assert!(g.drv.set_vlan(&mut g.vf, 10, false).unwrap());
    assert!(port.policy(0).vlan_filters.is_empty());
    let group = [0x01, 0x00, 0x5E, 0x00, 0x00, 0xFB];
    g.drv.set_multicast(&mut g.vf, &[group]).unwrap();
    // e1000_hash_mc_addr_vf: (addr[4] >> 4 | addr[5] << 4) & 0xFFF, addr[4] = 0.
    let h = 0xFFF & (0xFBu16 << 4);
    assert_eq!(port.policy(0).mc_hashes, vec![h]);
    assert!(g.drv.check_link(&mut g.vf));
}

#[test]
fn port_vlan_set_by_the_admin_refuses_the_vf_vlan_request() {
    let port = port(1);
    let mut g = up(&port, 0, DriverConfig::default());
    port.admin(0, |p| {
        p.port_vlan = Some(eswitch::PortVlan { vid: 10, qos: 0 });
    });
    assert!(!g.drv.set_vlan(&mut g.vf, 20, true).unwrap());
}

#[test]
fn mtu_change_goes_down_and_up_into_header_split_and_traffic_still_flows() {
    let port = port(1);
    let mut g = up(&port, 0, DriverConfig::default());
    g.drv.change_mtu(&mut g.vf, 9000).unwrap();
    let srrctl = g.drv.rd(&mut g.vf, regs::RX_BASE + q::SRRCTL);
    assert_eq!((srrctl >> 25) & 7, 0b101);
    assert_eq!(port.policy(0).max_frame, 9000 + 22);
    g.drv.handle_irqs(&mut g.vf, &g.irqs);
    let big = tcp4(g.drv.mac, [2, 0, 0, 0, 0, 9], 8900);
    g.vf.shared().receive(&big, None).unwrap();
    g.drv.handle_irqs(&mut g.vf, &g.irqs);
    assert_eq!(g.drv.received.last().map(|r| &r.data), Some(&big));
    let f = frame(BCAST, g.drv.mac, 100, 1);
    g.drv.xmit(&mut g.vf, &f, &XmitOpts::default()).unwrap();
    assert_eq!(g.sent.lock().unwrap().last().map(|b| b.to_vec()), Some(f));
    assert!(g.drv.check_link(&mut g.vf));
}

#[test]
fn state_shows_the_rings_igbvf_configured() {
    let port = port(1);
    let g = up(&port, 0, DriverConfig::default());
    let st = g.vf.state();
    assert!(st.rx.enabled && st.tx.enabled && st.bus_master && st.attached);
    assert_eq!(
        (st.rx.base, st.rx.len, st.rx.head, st.rx.tail),
        (g.drv.rx_ring_addr(), 64, 0, 62)
    );
    assert_eq!((st.tx.base, st.tx.len), (g.drv.tx_ring_addr(), 64));
    assert_eq!((st.eims, st.ivar, st.ivar_misc), (0x7, 0x8081, 0x82));
    let json = serde_json::to_string(&st).unwrap();
    assert!(json.contains("\"ivar_misc\":130"));
    let stats = serde_json::to_value(g.vf.stats()).unwrap();
    assert_eq!(stats["rx_drops"]["ring_full"], 0);
}
