//! ixgbevf's side of an 82599 VF, shared by the tests that drive one (the function alone, or
//! through its handle in a NIC): the legacy mailbox operations of ixgbevf 6.1's `mbx.c`, the
//! reset handshake of `ixgbevf_reset_hw_vf`, the interrupt set-up of `ixgbevf_configure_msix`
//! and queue 0's ring registers as `ixgbevf_configure_{tx,rx}_ring` write them. Whoever
//! implements [`VfBar0`] gets them.
#![allow(dead_code)]

pub mod function;

use mailbox::ixgbe::regs::{vf_bar, vfmailbox};
use model::function::desc::{RxReadDesc, RxWriteBack, TxDataDesc, TxDesc, TxOffloads};
use model::function::x82599::regs::{self, rxq, txq};
use model::GuestRam;
use vm_memory::{Bytes as _, GuestAddress};

/// The guest memory the tests give a VF, and where ixgbevf's rings and buffers sit in it.
pub const BASE: u64 = 0x10_0000;
pub const SIZE: usize = 0x10_0000;
pub const TX_RING: u64 = BASE;
pub const RX_RING: u64 = BASE + 0x1000;
pub const TX_BUF: u64 = BASE + 0x8000;
pub const RX_BUF: u64 = BASE + 0x4_0000;
/// Descriptors per ring (ixgbevf's minimum is 64; these rings are small to read easily).
pub const RING: u32 = 16;

/// `ixgbevf_alloc_rx_buffers` for descriptor `i`: its packet buffer (4 KiB apart), the
/// write-back's length zeroed as the "not done" marker.
pub fn post_rx(mem: &GuestRam, i: u32) {
    let mut d = [0u8; 16];
    RxReadDesc {
        pkt_addr: RX_BUF + u64::from(i) * 0x1000,
        hdr_addr: 0,
    }
    .emit(&mut d);
    mem.write_slice(&d, GuestAddress(RX_RING + 16 * u64::from(i)))
        .unwrap();
}

/// RX descriptor `i` as the VF wrote it back.
pub fn rx_wb(mem: &GuestRam, i: u32) -> RxWriteBack {
    let mut d = [0u8; 16];
    mem.read_slice(&mut d, GuestAddress(RX_RING + 16 * u64::from(i)))
        .unwrap();
    RxWriteBack::parse(&d)
}

/// The first `len` bytes of RX buffer `i`.
pub fn rx_buf(mem: &GuestRam, i: u32, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    mem.read_slice(&mut b, GuestAddress(RX_BUF + u64::from(i) * 0x1000))
        .unwrap();
    b
}

/// API_NEGOTIATE's values of API 1.4 and 1.5 (`enum ixgbe_pfvf_api_rev`).
pub const API_1_4: u32 = 5;
pub const API_1_5: u32 = 6;
pub const ACK: u32 = 0x8000_0000;
pub const NACK: u32 = 0x4000_0000;
pub const CTS: u32 = 0x2000_0000;
/// VTEITR value with CNT_WDIS, as `ixgbevf_write_eitr` writes it.
pub const CNT_WDIS: u32 = 1 << 31;

/// The data descriptor `ixgbevf_tx_map` writes for a frame in one buffer: EOP, IFCS and RS,
/// under the context in slot `idx`.
pub fn one_buffer_frame(addr: u64, len: usize, idx: u8, offloads: TxOffloads) -> TxDesc {
    TxDesc::Data(TxDataDesc {
        addr,
        len: len as u16,
        eop: true,
        ifcs: true,
        rs: true,
        idx,
        offloads,
    })
}

/// The VF's BAR0 as ixgbevf reaches it, and ixgbevf's software copy of the read-to-clear
/// VFMAILBOX bits (`hw->mbx.v2p_mailbox`).
pub trait VfBar0 {
    fn rd(&mut self, off: u64) -> u32;
    fn wr(&mut self, off: u64, v: u32);
    fn r2c(&mut self) -> &mut u32;

    /// `ixgbevf_check_for_bit_vf`: read VFMAILBOX, keep its read-to-clear bits, test and
    /// consume `mask`.
    fn check_bit(&mut self, mask: u32) -> bool {
        let v = self.rd(vf_bar::VFMAILBOX);
        let r2c = self.r2c();
        *r2c |= v & vfmailbox::R2C;
        let hit = (v | *r2c) & mask != 0;
        *r2c &= !mask;
        hit
    }

    fn lock(&mut self) {
        self.wr(vf_bar::VFMAILBOX, vfmailbox::VFU);
        let v = self.rd(vf_bar::VFMAILBOX);
        *self.r2c() |= v & vfmailbox::R2C;
        assert_ne!(v & vfmailbox::VFU, 0, "VFU granted");
    }

    /// `ixgbevf_write_mbx_vf_legacy`: lock, flush stale PFSTS/PFACK, words, REQ alone.
    fn send(&mut self, words: &[u32]) {
        self.lock();
        self.check_bit(vfmailbox::PFSTS);
        self.check_bit(vfmailbox::PFACK);
        for (i, w) in words.iter().enumerate() {
            self.wr(vf_bar::VFMBMEM + 4 * i as u64, *w);
        }
        self.wr(vf_bar::VFMAILBOX, vfmailbox::REQ);
    }

    /// `ixgbevf_poll_for_msg` + `ixgbevf_read_mbx_vf_legacy`: the PF answered synchronously.
    fn recv(&mut self, n: usize) -> Vec<u32> {
        assert!(self.check_bit(vfmailbox::PFSTS), "PF posted a reply");
        self.lock();
        let words = (0..n)
            .map(|i| self.rd(vf_bar::VFMBMEM + 4 * i as u64))
            .collect();
        self.wr(vf_bar::VFMAILBOX, vfmailbox::ACK);
        words
    }

    fn request(&mut self, words: &[u32], reply: usize) -> Vec<u32> {
        self.send(words);
        self.recv(reply)
    }

    /// `ixgbevf_reset_hw_vf`: VFCTRL.RST, wait until neither RSTI nor RSTD reads set, send
    /// VF_RESET and read the 4-word reply.
    fn reset_hw(&mut self) -> Vec<u32> {
        self.wr(regs::VTEIMC, 0x7);
        let _ = self.rd(regs::VTEICR);
        self.wr(regs::VFCTRL, regs::ctrl::RST);
        let _ = self.rd(regs::VFSTATUS);
        let mut timeout = 200;
        while self.check_bit(vfmailbox::RSTD | vfmailbox::RSTI) && timeout > 0 {
            timeout -= 1;
        }
        assert!(timeout > 0, "PF still in reset state");
        self.request(&[0x01], 4)
    }

    /// Probe: reset, API 1.5 (refused by ixgbe 6.1) then 1.4. Returns the VF_RESET reply.
    fn probe(&mut self) -> Vec<u32> {
        let reset = self.reset_hw();
        let nack = self.request(&[0x08, API_1_5, 0], 3);
        assert_eq!(nack[0], 0x08 | NACK | CTS, "1.5 refused");
        let ack = self.request(&[0x08, API_1_4, 0], 3);
        assert_eq!(ack[0], 0x08 | ACK | CTS, "1.4 granted");
        reset
    }

    /// `ixgbevf_configure_msix` with two queue vectors and `ixgbevf_irq_enable`.
    fn configure_msix(&mut self, itr: u32) {
        self.wr(regs::VTIVAR0, 0x8181_8080);
        self.wr(regs::VTIVAR_MISC, 0x82);
        self.wr(regs::VTEITR0, itr | CNT_WDIS);
        self.wr(regs::VTEITR0 + 4, itr | CNT_WDIS);
        let _ = self.rd(regs::VTEICR);
        for r in [regs::VTEIAM, regs::VTEIAC, regs::VTEIMS] {
            self.wr(r, 0x7);
        }
    }

    /// `ixgbevf_configure_tx_ring` for queue 0: `count` descriptors at `ring`.
    fn configure_tx(&mut self, ring: u64, count: u32) {
        let b = regs::TX_BASE;
        self.wr(b + txq::TXDCTL, regs::txdctl::SWFLSH);
        self.wr(b + txq::TDBAL, ring as u32);
        self.wr(b + txq::TDBAH, (ring >> 32) as u32);
        self.wr(b + txq::TDLEN, count * 16);
        self.wr(b + txq::DCA_TXCTRL, 0x2200);
        self.wr(b + txq::TDH, 0);
        self.wr(b + txq::TDT, 0);
        self.wr(b + txq::TDWBAL, 0);
        self.wr(b + txq::TDWBAH, 0);
        self.wr(b + txq::TXDCTL, 0x0208_0120);
        assert_ne!(self.rd(b + txq::TXDCTL) & regs::txdctl::ENABLE, 0);
    }

    /// `ixgbevf_configure_rx_ring` for queue 0: `count` descriptors at `ring`, 2 KiB buffers,
    /// VLAN stripping as asked; the buffers are not posted (RDT stays 0).
    fn configure_rx(&mut self, ring: u64, count: u32, vlan_strip: bool) {
        self.configure_rx_queue(0, ring, count, vlan_strip);
    }

    /// [`VfBar0::configure_rx`] for queue `q`.
    fn configure_rx_queue(&mut self, q: u64, ring: u64, count: u32, vlan_strip: bool) {
        let b = regs::RX_BASE + q * regs::QUEUE_STRIDE;
        self.wr(b + rxq::RXDCTL, 0);
        self.wr(b + rxq::RDBAL, ring as u32);
        self.wr(b + rxq::RDBAH, (ring >> 32) as u32);
        self.wr(b + rxq::RDLEN, count * 16);
        self.wr(b + rxq::DCA_RXCTRL, 0x200);
        self.wr(b + rxq::RDH, 0);
        self.wr(b + rxq::RDT, 0);
        self.wr(b + rxq::SRRCTL, 0x1200_0402);
        let vme = if vlan_strip { regs::rxdctl::VME } else { 0 };
        self.wr(b + rxq::RXDCTL, regs::rxdctl::ENABLE | vme);
        assert_ne!(self.rd(b + rxq::RXDCTL) & regs::rxdctl::ENABLE, 0);
    }
}
