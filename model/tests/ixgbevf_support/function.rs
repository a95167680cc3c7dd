//! The 82599 VF function driven alone, as ixgbevf drives it: a guest's memory, the function's
//! effects (vectors fired, frames sent), ixgbevf's TX ring and its read-to-clear mailbox bits.

use std::sync::Arc;

use bytes::Bytes;
use eswitch::MacAddr;
use mailbox::ixgbe::IxgbeConfig;
use model::function::desc::{RxWriteBack, TxContext, TxDesc, TxOffloads};
use model::function::x82599::regs::{self, rxq, txq};
use model::function::x82599::{IxgbePfSide, Vf};
use model::function::{Effects, Function, Origin};
use model::GuestRam;
use model::{Clock, ManualClock, RxDrop};
use pcie::regs::header;
use vm_memory::{Bytes as _, GuestAddress, GuestMemoryAtomic};

use super::{one_buffer_frame, VfBar0, BASE, RING, RX_RING, SIZE, TX_BUF, TX_RING};

/// A guest with ixgbevf's view of one 82599 VF function, alone: its PF side an
/// [`IxgbePfSide`], its memory the rings and buffers of the parent module's layout.
pub struct Ixgbevf {
    pub vf: Vf,
    pub pf: Arc<IxgbePfSide>,
    pub clock: Arc<ManualClock>,
    pub mem: GuestRam,
    /// Vectors signalled, in order.
    pub fired: Vec<u16>,
    /// Frames the VF transmitted.
    pub sent: Vec<Bytes>,
    /// ixgbevf's software copy of the read-to-clear VFMAILBOX bits (`hw->mbx.v2p_mailbox`).
    pub r2c: u32,
    pub tx_tail: u32,
}

impl Ixgbevf {
    pub fn new(admin_mac: Option<[u8; 6]>) -> Ixgbevf {
        let clock = Arc::new(ManualClock::new(1_000_000_000));
        let pf = Arc::new(IxgbePfSide::new(IxgbeConfig::new(2), clock.clone()).unwrap());
        if let Some(mac) = admin_mac {
            pf.configure(0, |p| {
                p.mac = Some(MacAddr(mac));
                p.admin_mac = true;
            });
        }
        let mut vf = Vf::new(0, pf.clone(), clock.clone()).unwrap();
        let mem = model::function::ram::anonymous(&[(GuestAddress(BASE), SIZE)]).unwrap();
        vf.attach(GuestMemoryAtomic::new(mem.clone()));
        // pci_enable_device + pci_set_master: Memory Space and Bus Master.
        let _ = vf.config_write(header::COMMAND as u64, &0x6u16.to_le_bytes());
        Ixgbevf {
            vf,
            pf,
            clock,
            mem,
            fired: Vec::new(),
            sent: Vec::new(),
            r2c: 0,
            tx_tail: 0,
        }
    }

    pub fn take(&mut self, e: Effects) {
        self.fired.extend(e.fire.vectors());
        self.sent.extend(e.frames.into_iter().map(|f| f.bytes));
    }

    pub fn rd(&mut self, off: u64) -> u32 {
        let mut b = [0u8; 4];
        self.vf.region_read(0, off, &mut b).unwrap();
        u32::from_le_bytes(b)
    }

    pub fn wr(&mut self, off: u64, v: u32) {
        let e = self.vf.region_write(0, off, &v.to_le_bytes()).unwrap();
        self.take(e);
    }

    pub fn cfg16(&mut self, off: usize) -> u16 {
        let mut b = [0u8; 2];
        self.vf.config_read(off as u64, &mut b);
        u16::from_le_bytes(b)
    }

    pub fn cfg32(&mut self, off: usize) -> u32 {
        let mut b = [0u8; 4];
        self.vf.config_read(off as u64, &mut b);
        u32::from_le_bytes(b)
    }

    /// `ixgbevf_configure_rx_ring` for queue 0 with 2 KiB buffers and VLAN stripping, every
    /// buffer posted (RDT = count − 1).
    pub fn configure_rx(&mut self) {
        VfBar0::configure_rx(self, RX_RING, RING, true);
        for i in 0..RING {
            self.post_rx(i);
        }
        self.wr(regs::RX_BASE + rxq::RDT, RING - 1);
    }

    pub fn configure_tx(&mut self) {
        VfBar0::configure_tx(self, TX_RING, RING);
    }

    pub fn post_rx(&mut self, i: u32) {
        super::post_rx(&self.mem, i);
    }

    pub fn rx_wb(&self, i: u32) -> RxWriteBack {
        super::rx_wb(&self.mem, i)
    }

    pub fn rx_buf(&self, i: u32, len: usize) -> Vec<u8> {
        super::rx_buf(&self.mem, i, len)
    }

    pub fn put_desc(&mut self, d: TxDesc, cc: bool) {
        let mut b = [0u8; 16];
        d.emit(&mut b);
        if cc {
            // IXGBE_ADVTXD_CC on the first data descriptor (`ixgbevf_tx_olinfo_status`).
            b[12] |= 0x80;
        }
        let at = TX_RING + 16 * u64::from(self.tx_tail);
        self.mem.write_slice(&b, GuestAddress(at)).unwrap();
        self.tx_tail = (self.tx_tail + 1) % RING;
    }

    /// `ixgbevf_xmit_frame_ring`: a context descriptor (always), the frame in one data
    /// descriptor with CC, EOP, RS and IFCS, then TDT.
    pub fn xmit(&mut self, frame: &[u8], ctx: TxContext, offloads: TxOffloads) -> u32 {
        let buf = TX_BUF + u64::from(self.tx_tail) * 0x1_0000;
        self.mem.write_slice(frame, GuestAddress(buf)).unwrap();
        self.put_desc(TxDesc::Context(ctx), false);
        let eop_index = self.tx_tail;
        self.put_desc(one_buffer_frame(buf, frame.len(), ctx.idx, offloads), true);
        let tail = self.tx_tail;
        self.wr(regs::TX_BASE + txq::TDT, tail);
        eop_index
    }

    pub fn tx_dd(&self, i: u32) -> bool {
        let mut w = [0u8; 4];
        self.mem
            .read_slice(&mut w, GuestAddress(TX_RING + 16 * u64::from(i) + 12))
            .unwrap();
        u32::from_le_bytes(w) & 1 != 0
    }

    pub fn receive(&mut self, frame: &[u8]) -> Result<(), RxDrop> {
        let (r, fire) = self.vf.receive(frame, None, Origin::Wire);
        self.fired.extend(fire.vectors());
        r
    }

    pub fn advance(&mut self, ns: u64) {
        let now = self.clock.now_ns() + ns;
        self.clock.advance_to(now);
        let e = self.vf.on_timer(now);
        self.take(e);
    }
}

impl VfBar0 for Ixgbevf {
    fn rd(&mut self, off: u64) -> u32 {
        Ixgbevf::rd(self, off)
    }
    fn wr(&mut self, off: u64, v: u32) {
        Ixgbevf::wr(self, off, v)
    }
    fn r2c(&mut self) -> &mut u32 {
        &mut self.r2c
    }
}
