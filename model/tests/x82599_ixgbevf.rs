//! The 82599 VF function driven as Linux ixgbevf 6.1 drives it, alone (no NIC runtime): its
//! PF side is `IxgbePfSide` (the mailbox through `mailbox::ixgbe` and an `IxgbeAgent` with
//! ixgbe's decisions). Probe (config space, BARs, MSI-X), the reset handshake and API
//! negotiation, ring setup, TX with checksum offload, TSO and VLAN insertion, RX with the
//! write-back ixgbevf reads, interrupts, statistics, VF reset and FLR; and proptests that no
//! register sequence panics and that no interrupt raised while masked is lost.

mod ixgbevf_support;
mod support;

use std::net::Ipv4Addr;

use bytes::Bytes;
use ixgbevf_support::function::Ixgbevf;
use ixgbevf_support::{VfBar0, ACK, BASE, CNT_WDIS, CTS, NACK, RING, RX_BUF, RX_RING};
use mailbox::ixgbe::regs::{vf_bar, vfmailbox};
use mailbox::ixgbe::ApiVersion;
use model::function::desc::{
    rx_status, L3Type, L4Type, RxReadDesc, RxWriteBack, TxContext, TxOffloads,
};
use model::function::rxcsum::L4Checksum;
use model::function::vectors::{Cause, EITR_UNIT_NS};
use model::function::x82599::config::{MSIX_BAR, MSIX_PBA_OFFSET, VF_DEVICE_ID};
use model::function::x82599::intr;
use model::function::x82599::regs::{self, rxq, txq};
use model::function::x82599::rss::Rss;
use model::function::{Function, Origin, RxCopy};
use model::{Clock, RxDrop};
use pcie::regs::header;
use pnet_packet::ipv4::{self, Ipv4Packet, MutableIpv4Packet};
use pnet_packet::tcp::{self, MutableTcpPacket, TcpPacket};
use proptest::prelude::*;
use support::tcp4;
use vm_memory::{Bytes as _, GuestAddress};

const DST: [u8; 6] = [0x02, 0, 0, 0, 0, 0x22];
const ADMIN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];

fn fold(mut s: u32) -> u16 {
    while s > 0xFFFF {
        s = (s & 0xFFFF) + (s >> 16);
    }
    s as u16
}

/// The IPv4 pseudo-header sum of `f` (not complemented) with L4 length `len`.
fn pseudo(f: &[u8], len: u16) -> u16 {
    let w = |o: usize| u32::from(u16::from_be_bytes([f[o], f[o + 1]]));
    fold(w(26) + w(28) + w(30) + w(32) + 6 + u32::from(len))
}

fn assert_valid_tcp4(f: &[u8]) {
    let ip = Ipv4Packet::new(&f[14..]).unwrap();
    assert_eq!(
        ip.get_checksum(),
        ipv4::checksum(&ip),
        "IPv4 header checksum"
    );
    assert_eq!(usize::from(ip.get_total_length()), f.len() - 14);
    let t = TcpPacket::new(&f[34..]).unwrap();
    let (s, d) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
    assert_eq!(
        t.get_checksum(),
        tcp::ipv4_checksum(&t, &s, &d),
        "TCP checksum"
    );
}

/// A TCP/IPv4 frame with both checksums right.
fn valid_tcp4(dst: [u8; 6], payload: usize) -> Vec<u8> {
    let mut f = tcp4(dst, ADMIN_MAC, payload);
    let c = ipv4::checksum(&Ipv4Packet::new(&f[14..]).unwrap());
    MutableIpv4Packet::new(&mut f[14..])
        .unwrap()
        .set_checksum(c);
    let (s, d) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
    let c = tcp::ipv4_checksum(&TcpPacket::new(&f[34..]).unwrap(), &s, &d);
    MutableTcpPacket::new(&mut f[34..]).unwrap().set_checksum(c);
    f
}

fn tagged(f: &[u8], tci: u16) -> Vec<u8> {
    let mut t = f[..12].to_vec();
    t.extend_from_slice(&[0x81, 0x00]);
    t.extend_from_slice(&tci.to_be_bytes());
    t.extend_from_slice(&f[12..]);
    t
}

// ----- probe -----

#[test]
fn probe_finds_an_82599_vf_with_two_16k_bars_and_three_msix_vectors() {
    let mut g = Ixgbevf::new(None);
    assert_eq!(g.cfg16(header::VENDOR_ID), 0x8086);
    assert_eq!(g.cfg16(header::DEVICE_ID), VF_DEVICE_ID);
    assert_eq!(g.cfg32(header::REVISION_ID) >> 8, 0x02_0000);
    let layout = g.vf.layout();
    assert_eq!(layout.bar_sizes, [16384, 0, 0, 16384, 0, 0]);
    assert_eq!(
        (layout.msix_vectors, layout.msi_vectors, layout.intx),
        (3, 0, false)
    );
    // BAR0 and BAR3 size as 64-bit non-prefetchable 16 KiB BARs.
    for bar in [0x10usize, 0x1C] {
        let _ = g.vf.config_write(bar as u64, &[0xFF; 4]);
        let _ = g.vf.config_write(bar as u64 + 4, &[0xFF; 4]);
        assert_eq!(g.cfg32(bar), 0xFFFF_C004, "BAR at {bar:#x}");
        assert_eq!(g.cfg32(bar + 4), 0xFFFF_FFFF);
    }
    // MSI-X: 3 vectors, table and PBA in BAR3 (ixgbevf_acquire_msix_vectors asks for 3 with
    // two CPUs).
    let msix = g.vf.config().capability_offset(0x11).expect("MSI-X");
    assert_eq!(g.cfg16(msix + 2) & 0x7FF, 2);
    assert_eq!(g.cfg32(msix + 4), u32::from(MSIX_BAR));
    assert_eq!(g.cfg32(msix + 8), MSIX_PBA_OFFSET | u32::from(MSIX_BAR));
    // PCIe with FLR (DevCap bit 28).
    let pcie = g.vf.config().capability_offset(0x10).expect("PCIe");
    assert_ne!(g.cfg32(pcie + 4) & (1 << 28), 0);
    assert_eq!(g.cfg16(header::INTERRUPT_PIN) & 0xFF, 0);
    // VFSTATUS never reads all-ones (ixgbevf_read_reg's removal check); VFLINKS: 10G up.
    assert_ne!(g.rd(regs::VFSTATUS), u32::MAX);
    assert_eq!(g.rd(regs::VFLINKS), 0x7000_0000);
}

#[test]
fn reset_handshake_without_admin_mac_is_nacked_with_zero_mac_and_filter_type_0() {
    let mut g = Ixgbevf::new(None);
    let reply = g.probe();
    assert_eq!(reply, vec![0x01 | NACK, 0, 0, 0]);
    assert!(
        g.pf.with_agent(0, |a, _| {
            assert!(a.is_clear_to_send(0));
            assert_eq!(a.api_version(0), Some(ApiVersion::V1_4));
            Default::default()
        }) == model::seams::MailboxIrq::None
    );
}

#[test]
fn reset_handshake_hands_over_the_admin_mac_and_get_queues_reports_the_pool() {
    let mut g = Ixgbevf::new(Some(ADMIN_MAC));
    let reply = g.probe();
    assert_eq!(reply[0], 0x01 | ACK, "no CTS in the VF_RESET reply");
    assert_eq!(reply[1].to_le_bytes(), ADMIN_MAC[..4]);
    assert_eq!(
        reply[2] & 0xFFFF,
        u32::from(u16::from_le_bytes([ADMIN_MAC[4], ADMIN_MAC[5]]))
    );
    assert_eq!(reply[3], 0);
    // GET_QUEUES (API 1.1+): 4 queues per pool with 2 VFs, no port VLAN, default queue 0.
    let q = g.request(&[0x09, 0, 0, 0, 0], 5);
    assert_eq!(q, vec![0x09 | ACK | CTS, 4, 4, 0, 0]);
    // The link check reads word 0 with CTS (ixgbevf_check_mac_link_vf).
    assert_ne!(g.rd(vf_bar::VFMBMEM) & CTS, 0);
}

#[test]
fn the_mailbox_vector_fires_for_the_pfs_replies_once_routed() {
    let mut g = Ixgbevf::new(None);
    g.probe();
    g.configure_msix(0);
    g.fired.clear();
    let _ = g.request(&[0x09, 0, 0, 0, 0], 5);
    // PFACK and PFSTS each raise the mailbox cause; auto-mask leaves one interrupt until the
    // handler's VTEIMS write (ixgbevf_msix_other).
    assert_eq!(g.fired, vec![2]);
    g.wr(regs::VTEIMS, 0b100);
    let _ = g.request(&[0x10, 0], 2);
    assert_eq!(g.fired, vec![2, 2]);
}

// ----- TX -----

#[test]
fn a_frame_goes_out_through_the_tx_ring_with_dd_and_the_queue_vector() {
    let mut g = Ixgbevf::new(None);
    g.probe();
    g.configure_msix(0);
    g.configure_tx();
    let f = support::frame(DST, ADMIN_MAC, 60, 3);
    // ixgbevf writes a context descriptor even without offloads (ixgbevf_tx_csum).
    let ctx = TxContext {
        mac_len: 14,
        ..TxContext::default()
    };
    let eop = g.xmit(
        &f,
        ctx,
        TxOffloads {
            paylen: 60,
            ..TxOffloads::default()
        },
    );
    assert_eq!(g.sent, vec![Bytes::from(f)]);
    assert!(g.tx_dd(eop));
    assert_eq!(g.rd(regs::TX_BASE + txq::TDH), 2);
    assert_eq!(g.fired, vec![0], "TX0 on vector 0");
    assert_eq!(g.rd(regs::VFGPTC), 1);
    assert_eq!(g.rd(regs::VFGOTC_LSB), 64, "with the CRC");
    assert_eq!(g.rd(regs::VFGOTC_MSB), 0);
}

#[test]
fn checksum_offload_and_vlan_insertion_as_ixgbevf_tx_csum_asks() {
    let mut g = Ixgbevf::new(None);
    g.probe();
    g.configure_tx();
    // CHECKSUM_PARTIAL: IP checksum done by the stack, TCP checksum field = the pseudo-header
    // sum with the length.
    let mut f = valid_tcp4(DST, 100);
    let seed = pseudo(&f, 120);
    f[50..52].copy_from_slice(&seed.to_be_bytes());
    let ctx = TxContext {
        mac_len: 14,
        ip_len: 20,
        l4: L4Type::Tcp,
        vlan: 100,
        ..TxContext::default()
    };
    let off = TxOffloads {
        txsm: true,
        vle: true,
        paylen: f.len() as u32,
        ..TxOffloads::default()
    };
    g.xmit(&f, ctx, off);
    assert_eq!(g.sent.len(), 1);
    let out = &g.sent[0];
    assert_eq!(&out[12..16], &[0x81, 0x00, 0x00, 100], "tag inserted");
    let untagged = [&out[..12], &out[16..]].concat();
    assert_valid_tcp4(&untagged);
}

#[test]
fn tso_through_context_slot_1_cuts_mss_sized_segments() {
    let mut g = Ixgbevf::new(None);
    g.probe();
    g.configure_tx();
    // ixgbevf_tso: IP total length and checksum 0, TCP checksum = pseudo-header without the
    // length, context in slot 1 with MSS and L4LEN, IXSM for IPv4, CC.
    let mut f = tcp4(DST, ADMIN_MAC, 3000);
    f[16..18].copy_from_slice(&[0, 0]);
    f[24..26].copy_from_slice(&[0, 0]);
    let seed = pseudo(&f, 0);
    f[50..52].copy_from_slice(&seed.to_be_bytes());
    let ctx = TxContext {
        mac_len: 14,
        ip_len: 20,
        l4_len: 20,
        mss: 1000,
        l3: L3Type::Ipv4,
        l4: L4Type::Tcp,
        vlan: 0,
        idx: 1,
    };
    let off = TxOffloads {
        tse: true,
        ixsm: true,
        txsm: true,
        vle: false,
        paylen: 3000,
    };
    g.xmit(&f, ctx, off);
    assert_eq!(g.sent.len(), 3);
    for (i, seg) in g.sent.iter().enumerate() {
        assert_eq!(seg.len(), 54 + 1000);
        assert_valid_tcp4(seg);
        let t = TcpPacket::new(&seg[34..]).unwrap();
        assert_eq!(t.get_sequence(), 1000 * i as u32);
        assert_eq!(&seg[54..], &f[54 + 1000 * i..54 + 1000 * (i + 1)]);
    }
    assert_eq!(g.rd(regs::VFGPTC), 3);
}

#[test]
fn head_write_back_replaces_dd_when_tdwbal_enables_it() {
    let mut g = Ixgbevf::new(None);
    g.probe();
    g.configure_tx();
    let head_at = BASE + 0xF000;
    g.wr(regs::TX_BASE + txq::TDWBAL, head_at as u32 | 1);
    let f = support::frame(DST, ADMIN_MAC, 64, 1);
    let eop = g.xmit(&f, TxContext::default(), TxOffloads::default());
    assert!(!g.tx_dd(eop), "no DD with head write-back");
    let mut w = [0u8; 4];
    g.mem.read_slice(&mut w, GuestAddress(head_at)).unwrap();
    assert_eq!(u32::from_le_bytes(w), 2);
}

// ----- RX -----

#[test]
fn a_received_frame_is_written_back_as_ixgbevf_reads_it_with_vlan_stripped() {
    let mut g = Ixgbevf::new(None);
    g.probe();
    g.configure_msix(0);
    g.configure_rx();
    g.fired.clear();
    let f = valid_tcp4(ADMIN_MAC, 200);
    let tci = 0x6005; // PCP 3, VID 5
    assert_eq!(g.receive(&tagged(&f, tci)), Ok(()));
    let wb = g.rx_wb(0);
    assert_eq!(
        usize::from(wb.length),
        f.len(),
        "the tag is out of the buffer"
    );
    assert_eq!(
        wb.status_error,
        rx_status::DD | rx_status::EOP | rx_status::VP | rx_status::IPCS | rx_status::L4CS
    );
    assert_eq!(wb.vlan, tci);
    assert_eq!(g.rx_buf(0, f.len()), f);
    assert_eq!(g.rd(regs::RX_BASE + rxq::RDH), 1);
    assert_eq!(g.fired, vec![0], "RX0 on vector 0");
    // Without VME the tag stays in the frame and there is no VP.
    g.wr(regs::RX_BASE + rxq::RXDCTL, regs::rxdctl::ENABLE);
    let t = tagged(&f, tci);
    assert_eq!(g.receive(&t), Ok(()));
    let wb = g.rx_wb(1);
    assert_eq!(usize::from(wb.length), t.len());
    assert_eq!(wb.status_error & rx_status::VP, 0);
    // Statistics: two good frames, their octets as received (tag and CRC included).
    assert_eq!(g.rd(regs::VFGPRC), 2);
    let octets = 2 * (t.len() + 4) as u32;
    assert_eq!(g.rd(regs::VFGORC_LSB), octets);
    assert_eq!(g.rd(regs::VFGORC_MSB), 0);
}

#[test]
fn a_jumbo_frame_spans_2k_buffers_with_eop_on_the_last_and_no_zero_length() {
    let mut g = Ixgbevf::new(None);
    g.probe();
    g.configure_rx();
    let f = support::frame([0x01, 0, 0x5E, 0, 0, 1], DST, 5000, 9);
    assert_eq!(g.receive(&f), Ok(()));
    let lens: Vec<u16> = (0..3).map(|i| g.rx_wb(i).length).collect();
    assert_eq!(lens, vec![2048, 2048, 904]);
    assert_eq!(g.rx_wb(1).status_error, rx_status::DD);
    assert_eq!(g.rx_wb(2).status_error & rx_status::EOP, rx_status::EOP);
    assert_eq!(
        [g.rx_buf(0, 2048), g.rx_buf(1, 2048), g.rx_buf(2, 904)].concat(),
        f
    );
    assert_eq!(g.rd(regs::VFMPRC), 1, "multicast");
}

#[test]
fn a_full_ring_keeps_the_frame_for_the_backlog_and_a_disabled_queue_drops() {
    let mut g = Ixgbevf::new(None);
    g.probe();
    g.configure_rx();
    let f = support::frame(DST, ADMIN_MAC, 100, 1);
    for _ in 0..RING - 1 {
        assert_eq!(g.receive(&f), Ok(()));
    }
    assert_eq!(g.receive(&f), Err(RxDrop::RingFull));
    assert_eq!(g.vf.stats().total_rx_drops(), 0, "not a drop");
    g.wr(regs::RX_BASE + rxq::RXDCTL, 0);
    assert_eq!(g.receive(&f), Err(RxDrop::QueueDisabled));
    assert_eq!(g.vf.stats().rx_drop(RxDrop::QueueDisabled), 1);
}

#[test]
fn with_two_rx_queues_rss_puts_each_flow_on_its_queue_in_order_and_fires_its_vector() {
    let mut g = Ixgbevf::new(None);
    g.probe();
    g.configure_msix(0);
    g.configure_rx();
    // Queue 1 as `ixgbevf_configure_rx_ring` sets it, every buffer posted, and the pool's
    // two queues (`ixgbevf_setup_psrtype`: RQPL = 1).
    const RX1_RING: u64 = BASE + 0x2000;
    const RX1_BUF: u64 = BASE + 0x6_0000;
    VfBar0::configure_rx_queue(&mut g, 1, RX1_RING, RING, true);
    for i in 0..RING {
        let mut d = [0u8; 16];
        let pkt_addr = RX1_BUF + u64::from(i) * 0x1000;
        RxReadDesc {
            pkt_addr,
            hdr_addr: 0,
        }
        .emit(&mut d);
        g.mem
            .write_slice(&d, GuestAddress(RX1_RING + 16 * u64::from(i)))
            .unwrap();
    }
    g.wr(regs::RX_BASE + regs::QUEUE_STRIDE + rxq::RDT, RING - 1);
    g.wr(regs::VFPSRTYPE, 0x1330 | 1 << 29);
    g.fired.clear();

    // Twelve TCP flows, one segment each, in one batch.
    let frames: Vec<Bytes> = (0..12u16)
        .map(|i| {
            let mut f = valid_tcp4(ADMIN_MAC, 64 + usize::from(i));
            f[34..36].copy_from_slice(&(40_000 + i).to_be_bytes());
            f[36..38].copy_from_slice(&5201u16.to_be_bytes());
            Bytes::from(f)
        })
        .collect();
    let copies: Vec<RxCopy<'_>> = frames
        .iter()
        .map(|frame| RxCopy {
            frame,
            stripped_tci: None,
            origin: Origin::Wire,
            l4_checksum: L4Checksum::Unverified,
        })
        .collect();
    let rss = Rss::ixgbe();
    let queues: Vec<usize> = frames.iter().map(|f| rss.queue(f, 1, 2)).collect();
    assert!(queues.contains(&0) && queues.contains(&1), "{queues:?}");
    let (taken, fire) = g.vf.receive_batch(&copies);
    assert_eq!(taken, frames.len());
    let mut vectors: Vec<u16> = fire.vectors().collect();
    vectors.sort_unstable();
    assert_eq!(vectors, vec![0, 1], "RX0 on vector 0, RX1 on vector 1");

    // Each queue's descriptors hold its flows' frames, in the order they came.
    let mut next = [0u32; 2];
    for (f, &q) in frames.iter().zip(&queues) {
        let (ring, buf) = [(RX_RING, RX_BUF), (RX1_RING, RX1_BUF)][q];
        let i = u64::from(next[q]);
        let mut d = [0u8; 16];
        g.mem
            .read_slice(&mut d, GuestAddress(ring + 16 * i))
            .unwrap();
        let wb = RxWriteBack::parse(&d);
        assert_ne!(
            wb.status_error & rx_status::DD,
            0,
            "queue {q} descriptor {i}"
        );
        assert_eq!(usize::from(wb.length), f.len(), "queue {q} descriptor {i}");
        let mut b = vec![0u8; f.len()];
        g.mem
            .read_slice(&mut b, GuestAddress(buf + i * 0x1000))
            .unwrap();
        assert_eq!(b, f[..], "queue {q} descriptor {i}");
        next[q] += 1;
    }
    for (q, n) in next.into_iter().enumerate() {
        let rdh = regs::RX_BASE + q as u64 * regs::QUEUE_STRIDE + rxq::RDH;
        assert_eq!(g.rd(rdh), n, "queue {q}'s head");
    }

    // A pool of one queue (RQPL 0) takes every flow on queue 0.
    g.wr(regs::VFPSRTYPE, 0x1330);
    let on_one = frames.iter().zip(&queues).find(|(_, &q)| q == 1).unwrap().0;
    assert_eq!(g.receive(on_one), Ok(()));
    assert_eq!(g.rd(regs::RX_BASE + rxq::RDH), next[0] + 1);
}

// ----- interrupts -----

#[test]
fn eitr_holds_the_next_interrupt_back_and_fires_it_at_the_intervals_end() {
    let mut g = Ixgbevf::new(None);
    g.probe();
    // IXGBE_20K_ITR: 200 (51.2 µs).
    g.configure_msix(200);
    g.configure_rx();
    g.fired.clear();
    let f = support::frame(DST, ADMIN_MAC, 100, 1);
    g.receive(&f).unwrap();
    assert_eq!(g.fired, vec![0]);
    // NAPI done: VTEIMS for the vector (auto-mask took it out).
    g.wr(regs::VTEIMS, 0b001);
    g.advance(10_000);
    g.receive(&f).unwrap();
    assert_eq!(g.fired, vec![0], "held inside the interval");
    let due = g.vf.next_wakeup().expect("a held interrupt");
    g.advance(due - g.clock.now_ns() - 1);
    assert_eq!(g.fired, vec![0]);
    g.advance(1);
    assert_eq!(g.fired, vec![0, 0], "fired at the interval's end");
    assert_eq!(200 * EITR_UNIT_NS, 51_200);
}

#[test]
fn a_cause_raised_while_masked_fires_when_unmasked_and_eiac_clears_it() {
    let mut g = Ixgbevf::new(None);
    g.probe();
    g.configure_msix(0);
    g.configure_rx();
    g.fired.clear();
    g.wr(regs::VTEIMC, 0b001);
    let f = support::frame(DST, ADMIN_MAC, 100, 1);
    g.receive(&f).unwrap();
    assert!(g.fired.is_empty());
    assert_eq!(
        g.rd(regs::VTEICS),
        0b001,
        "pending, VTEICS reads it without clearing"
    );
    g.wr(regs::VTEIMS, 0b001);
    assert_eq!(g.fired, vec![0]);
    assert_eq!(g.rd(regs::VTEICS), 0, "auto-cleared (VTEIAC)");
    // The watchdog's kick: VTEICS with the queue vectors fires the enabled ones.
    g.wr(regs::VTEIMS, 0b011);
    g.wr(regs::VTEICS, 0b011);
    assert_eq!(g.fired, vec![0, 0, 1]);
}

// ----- resets -----

#[test]
fn vf_reset_returns_queues_and_interrupts_to_reset_values_and_tells_the_pf() {
    let mut g = Ixgbevf::new(Some(ADMIN_MAC));
    g.probe();
    g.configure_msix(200);
    g.configure_tx();
    g.configure_rx();
    g.wr(regs::TX_BASE + txq::TDWBAL, 0x1000);
    g.wr(regs::VFPSRTYPE, 0x1330);
    let f = support::frame(DST, ADMIN_MAC, 100, 1);
    g.receive(&f).unwrap();
    g.xmit(&f, TxContext::default(), TxOffloads::default());
    g.wr(regs::VFCTRL, regs::ctrl::RST);
    assert_eq!(g.rd(regs::VFCTRL), 0, "self-clearing");
    for (reg, want) in [
        (regs::RX_BASE + rxq::RXDCTL, 0),
        (regs::RX_BASE + rxq::RDBAL, 0),
        (regs::RX_BASE + rxq::RDH, 0),
        (regs::RX_BASE + rxq::SRRCTL, 0x402),
        (regs::TX_BASE + txq::TXDCTL, 0),
        (regs::TX_BASE + txq::TDT, 0),
        (regs::TX_BASE + txq::TDWBAL, 0x1000),
        (regs::VTEIMS, 0),
        (regs::VTIVAR0, 0),
        (regs::VTIVAR_MISC, 0),
        (regs::VTEITR0, 0),
        (regs::VFPSRTYPE, 0),
    ] {
        assert_eq!(g.rd(reg), want, "register {reg:#x}");
    }
    // The PF saw VFLRE: API back to 1.0; the mailbox shows RSTD once, then nothing.
    let _ = g.pf.with_agent(0, |a, _| {
        assert_eq!(a.api_version(0), Some(ApiVersion::V1_0));
        Default::default()
    });
    assert_eq!(g.rd(vf_bar::VFMAILBOX) & vfmailbox::RSTD, vfmailbox::RSTD);
    assert_eq!(g.rd(vf_bar::VFMAILBOX), 0);
    // Statistics keep running across a VF reset.
    assert_eq!(g.rd(regs::VFGPRC), 1);
    assert_eq!(g.vf.stats().vf_resets, 2, "the probe's and this one");
    // And the driver comes back the same way.
    assert_eq!(g.probe()[0], 0x01 | ACK);
    assert_eq!(g.receive(&f), Err(RxDrop::QueueDisabled));
}

#[test]
fn flr_returns_the_function_to_power_on_state() {
    let mut g = Ixgbevf::new(None);
    g.probe();
    g.configure_msix(0);
    g.configure_rx();
    let f = support::frame(DST, ADMIN_MAC, 100, 1);
    g.receive(&f).unwrap();
    let _ = g.vf.region_write(3, 0, &[0xAB; 4]).unwrap();
    let pcie = g.vf.config().capability_offset(0x10).unwrap();
    let _ =
        g.vf.config_write((pcie + 8) as u64, &0x8000u16.to_le_bytes());
    assert_eq!(g.vf.stats().flrs, 1);
    assert_eq!(g.cfg16(header::COMMAND), 0, "bus master and memory off");
    assert_eq!(g.rd(regs::VFGPRC), 0, "statistics from zero");
    assert_eq!(g.rd(regs::RX_BASE + rxq::RXDCTL), 0);
    let mut entry = [0u8; 4];
    g.vf.region_read(3, 0, &mut entry).unwrap();
    assert_eq!(entry, [0; 4], "MSI-X table cleared");
    assert_eq!(g.receive(&f), Err(RxDrop::BusMasterOff));
    let _ = g.pf.with_agent(0, |a, _| {
        assert_eq!(a.api_version(0), Some(ApiVersion::V1_0));
        Default::default()
    });
}

#[test]
fn unknown_offsets_read_zero_and_ignore_writes() {
    let mut g = Ixgbevf::new(None);
    for off in [
        0x0004, 0x0118, 0x082C, 0x1030, 0x1080, 0x2080, 0x3000, 0x3FFC,
    ] {
        g.wr(off, 0xFFFF_FFFF);
        assert_eq!(g.rd(off), 0, "offset {off:#x}");
    }
    // Read-only registers ignore writes too.
    g.wr(regs::VFLINKS, 0);
    assert_eq!(g.rd(regs::VFLINKS), 0x7000_0000);
    // Narrow writes and accesses beyond the BAR are refused and counted.
    assert!(g.vf.region_write(0, 0x100, &[1, 2]).is_err());
    let mut b = [0u8; 4];
    assert!(g.vf.region_read(0, regs::BAR0_SIZE, &mut b).is_err());
    assert!(g.vf.region_read(1, 0, &mut b).is_err());
    assert_eq!(g.vf.stats().bad_accesses, 3);
}

// ----- proptests -----

#[derive(Clone, Debug)]
enum Op {
    Write(u64, u32),
    Read(u64),
    Mem(u64, [u8; 16]),
    Receive(usize, Option<u16>),
    Advance(u64),
    Flr,
    Region(u32, u64, usize, bool),
}

fn offset() -> impl Strategy<Value = u64> {
    let named = prop::sample::select(vec![
        regs::VFCTRL,
        regs::VFSTATUS,
        regs::VFLINKS,
        regs::VFPSRTYPE,
        vf_bar::VFMAILBOX,
        regs::VTEICR,
        regs::VTEICS,
        regs::VTEIMS,
        regs::VTEIMC,
        regs::VTEIAC,
        regs::VTEIAM,
        regs::VTEITR0,
        regs::VTIVAR0,
        regs::VTIVAR_MISC,
        regs::VFGPRC,
        regs::VFGORC_LSB,
        regs::VFGORC_MSB,
    ]);
    let queue = (
        prop::sample::select(vec![regs::RX_BASE, regs::TX_BASE]),
        0u64..2,
        (0u64..16).prop_map(|w| 4 * w),
    )
        .prop_map(|(b, q, r)| b + q * regs::QUEUE_STRIDE + r);
    prop_oneof![
        named,
        queue,
        (0u64..16).prop_map(|w| vf_bar::VFMBMEM + 4 * w),
        (0u64..regs::BAR0_SIZE / 4).prop_map(|w| 4 * w),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (offset(), prop_oneof![any::<u32>(), Just(0x8181_8080), Just(0x0208_0120),
            Just(0x4200_0000), Just(0x1200_0402), Just(BASE as u32), Just(256), Just(3)])
            .prop_map(|(o, v)| Op::Write(o, v)),
        2 => offset().prop_map(Op::Read),
        2 => (0u64..0x2_0000, any::<[u8; 16]>()).prop_map(|(o, b)| Op::Mem(o & !0xF, b)),
        2 => (0usize..9000, prop::option::of(any::<u16>())).prop_map(|(l, t)| Op::Receive(l, t)),
        1 => (0u64..200_000).prop_map(Op::Advance),
        1 => Just(Op::Flr),
        1 => (0u32..6, any::<u64>(), 0usize..9, any::<bool>())
            .prop_map(|(i, o, l, w)| Op::Region(i, o, l, w)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the guest writes, reads, puts in its rings or sends, the function answers
    /// without panicking, VFSTATUS never reads all-ones and DMA stays in guest memory (the
    /// memory map has nothing else).
    #[test]
    fn no_register_sequence_panics(ops in prop::collection::vec(op(), 1..120)) {
        let mut g = Ixgbevf::new(None);
        for op in ops {
            match op {
                Op::Write(o, v) => g.wr(o, v),
                Op::Read(o) => { let _ = g.rd(o); }
                Op::Mem(o, b) => g.mem.write_slice(&b, GuestAddress(BASE + o)).unwrap(),
                Op::Receive(len, tci) => {
                    let f = support::frame(DST, ADMIN_MAC, len, 7);
                    let (_, fire) = g.vf.receive(&f, tci, Origin::Local);
                    g.fired.extend(fire.vectors());
                }
                Op::Advance(ns) => g.advance(ns),
                Op::Flr => {
                    let _ = g.vf.config_write(0xA8, &0x8000u16.to_le_bytes());
                    let _ = g.vf.config_write(header::COMMAND as u64, &0x6u16.to_le_bytes());
                }
                Op::Region(i, o, l, w) => {
                    let mut b = vec![0xA5u8; l];
                    if w {
                        if let Ok(e) = g.vf.region_write(i, o, &b) { g.take(e); }
                    } else {
                        let _ = g.vf.region_read(i, o, &mut b);
                    }
                }
            }
            prop_assert!(g.fired.iter().all(|v| *v < 3));
        }
        prop_assert_ne!(g.rd(regs::VFSTATUS), u32::MAX);
        let e = g.vf.tx_resume();
        g.take(e);
    }
}

#[derive(Clone, Debug)]
enum IntrOp {
    Raise(Cause),
    Eims(u32),
    Eimc(u32),
    Eiac(u32),
    Eiam(u32),
    Eitr(u8, u32),
    Advance(u64),
}

fn intr_op() -> impl Strategy<Value = IntrOp> {
    let cause = prop_oneof![
        (0u8..2).prop_map(Cause::Rx),
        (0u8..2).prop_map(Cause::Tx),
        Just(Cause::Mailbox),
    ];
    prop_oneof![
        4 => cause.prop_map(IntrOp::Raise),
        2 => any::<u32>().prop_map(IntrOp::Eims),
        2 => any::<u32>().prop_map(IntrOp::Eimc),
        1 => any::<u32>().prop_map(IntrOp::Eiac),
        1 => any::<u32>().prop_map(IntrOp::Eiam),
        1 => (0u8..3, 0u32..0x1000).prop_map(|(n, v)| IntrOp::Eitr(n, v | CNT_WDIS)),
        2 => (0u64..2_000_000).prop_map(IntrOp::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// ixgbevf's routing; then any mix of causes, masking, auto-clear/mask changes, EITR
    /// writes and time: every cause raised either fired its vector or is still pending, and
    /// once the driver enables everything and time passes every interval, nothing is left
    /// unfired.
    #[test]
    fn a_masked_cause_is_never_lost(ops in prop::collection::vec(intr_op(), 1..80)) {
        let mut r = intr::power_on();
        let _ = r.write(regs::VTIVAR0, 0x8181_8080, 0);
        let _ = r.write(regs::VTIVAR_MISC, 0x82, 0);
        let mut now = 0u64;
        // Vectors owed an interrupt: raised since they last fired.
        let mut owed = 0u32;
        for op in ops {
            let fired = match op {
                IntrOp::Raise(c) => {
                    owed |= r.route(c).unwrap();
                    r.raise(c, now)
                }
                IntrOp::Eims(v) => r.write(regs::VTEIMS, v, now).unwrap(),
                IntrOp::Eimc(v) => r.write(regs::VTEIMC, v, now).unwrap(),
                IntrOp::Eiac(v) => r.write(regs::VTEIAC, v, now).unwrap(),
                IntrOp::Eiam(v) => r.write(regs::VTEIAM, v, now).unwrap(),
                IntrOp::Eitr(n, v) => r.write(regs::VTEITR0 + 4 * u64::from(n), v, now).unwrap(),
                IntrOp::Advance(ns) => {
                    now += ns;
                    r.on_timer(now)
                }
            };
            owed &= !fired.bits();
            // Owed vectors are pending in VTEICR (nothing clears it but a fire here).
            prop_assert_eq!(r.bank.eicr & owed, owed);
        }
        let mut fired = r.write(regs::VTEIMS, 0x7, now).unwrap();
        while let Some(t) = r.next_deadline() {
            fired = fired.union(r.on_timer(t));
        }
        prop_assert_eq!(owed & !fired.bits(), 0);
    }
}

#[test]
fn the_second_queue_pair_raises_the_second_vector() {
    let mut g = Ixgbevf::new(None);
    g.probe();
    g.configure_msix(0);
    // RX queue 1 (ixgbevf with two CPUs): its own ring, one 2 KiB buffer posted.
    let b = regs::RX_BASE + regs::QUEUE_STRIDE;
    let ring = BASE + 0x3000;
    g.wr(b + rxq::RDBAL, ring as u32);
    g.wr(b + rxq::RDLEN, 8 * 16);
    g.wr(b + rxq::SRRCTL, 0x1200_0402);
    g.wr(b + rxq::RXDCTL, regs::rxdctl::ENABLE);
    let mut d = [0u8; 16];
    RxReadDesc {
        pkt_addr: RX_BUF,
        hdr_addr: 0,
    }
    .emit(&mut d);
    g.mem.write_slice(&d, GuestAddress(ring)).unwrap();
    g.wr(b + rxq::RDT, 1);
    g.fired.clear();
    let f = support::frame(DST, ADMIN_MAC, 80, 2);
    let (r, fire) = g.vf.receive_on(1, &f, None, Origin::Wire);
    assert_eq!(r, Ok(()));
    assert_eq!(fire.vectors().collect::<Vec<_>>(), vec![1]);
    assert_eq!(g.rd(b + rxq::RDH), 1);
    assert_eq!(g.rd(regs::RX_BASE + rxq::RDH), 0, "queue 0 untouched");
    // A queue the VF does not have drops as disabled.
    assert_eq!(
        g.vf.receive_on(2, &f, None, Origin::Wire).0,
        Err(RxDrop::QueueDisabled)
    );
}
