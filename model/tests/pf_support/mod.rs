//! A rig for the PF tests: one [`Pf`] with guest memory, a simulated clock and a switch stand-in
//! that records what the PF tells it; and a software igb that drives the PF's registers, NVM,
//! PHY and rings in the order Linux igb (6.1) does — probe (`igb_probe`, `igb_reset_hw_82575`,
//! `igb_validate_nvm_checksum`, `igb_init_hw_82575`), open (`igb_configure`,
//! `igb_configure_msix`, `igb_irq_enable`), and the five parts of `igb_diag_test` with the
//! result codes igb reports.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use eswitch::{MacAddr, PfPolicy};
use model::function::i82576::pf_regs::{
    self as r, ctrl, eecd, eemngctl, eerd, gpie, icr, mdic, q, rctl, status, swsm, tctl,
};
use model::function::i82576::phy::{bmcr, bmsr, reg};
use model::function::i82576::Pf;
use model::function::{Effects, Function, GuestMem, LinkStatus};
use model::seams::PfFilters;
use model::GuestRam;
use model::{Clock, ManualClock, RxDrop};
use pcie::regs::{command, header};
use vm_memory::{Bytes as _, GuestAddress, GuestMemoryAtomic};

mod diag;
mod igb;

pub use igb::*;

pub const MAC: MacAddr = MacAddr([0x02, 0x1B, 0x21, 0x00, 0x00, 0x01]);
pub const T0: u64 = 1_000_000_000;
pub const GUEST_BASE: u64 = 0x10_0000;
pub const GUEST_SIZE: usize = 0x40_0000;

/// Where the software igb keeps its rings and buffers.
pub const TX_RING: u64 = GUEST_BASE;
pub const RX_RING: u64 = GUEST_BASE + 0x1000;
pub const TX_BUFS: u64 = GUEST_BASE + 0x10_0000;
pub const RX_BUFS: u64 = GUEST_BASE + 0x20_0000;
pub const BUF: u64 = 2048;
pub const RING: u32 = 256;

/// MSI-X Message Control of the PF (capability at 0x70).
const MSIX_CONTROL: u64 = 0x72;
const MSIX_ENABLE: u16 = 1 << 15;
/// MSI Message Control (capability at 0x50).
const MSI_CONTROL: u64 = 0x52;
const MSI_ENABLE: u16 = 1;

/// The switch's PF port as the PF tells it.
#[derive(Debug, Default)]
pub struct SwitchLog {
    pub policies: Mutex<Vec<PfPolicy>>,
    pub strip: Mutex<Vec<bool>>,
}

impl PfFilters for SwitchLog {
    fn set_pf_policy(&self, policy: PfPolicy) {
        self.policies.lock().unwrap().push(policy);
    }
    fn set_rx_vlan_strip(&self, on: bool) {
        self.strip.lock().unwrap().push(on);
    }
}

impl SwitchLog {
    pub fn last_policy(&self) -> Option<PfPolicy> {
        self.policies.lock().unwrap().last().cloned()
    }
}

/// How the guest's interrupts are set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqMode {
    Msix,
    Msi,
}

pub struct Rig {
    pub pf: Pf,
    pub mem: GuestRam,
    pub clock: Arc<ManualClock>,
    pub switch: Arc<SwitchLog>,
    /// Vectors signalled, in order, not yet handled.
    pub fired: Vec<u16>,
    /// Frames the PF handed to the switch.
    pub sent: Vec<Bytes>,
}

impl Rig {
    /// A PF with guest memory attached, memory decoding and bus mastering on, interrupts in
    /// `mode`.
    pub fn new(mode: IrqMode) -> Rig {
        let clock = Arc::new(ManualClock::new(T0));
        let switch = Arc::new(SwitchLog::default());
        let mut pf = Pf::new(MAC, switch.clone(), clock.clone()).expect("PF");
        let mem = model::function::ram::anonymous(&[(GuestAddress(GUEST_BASE), GUEST_SIZE)])
            .expect("guest memory");
        let atomic: GuestMem = GuestMemoryAtomic::new(mem.clone());
        pf.attach(atomic);
        let mut rig = Rig {
            pf,
            mem,
            clock,
            switch,
            fired: Vec::new(),
            sent: Vec::new(),
        };
        rig.config_write16(
            header::COMMAND as u64,
            command::MEMORY_SPACE | command::BUS_MASTER,
        );
        match mode {
            IrqMode::Msix => rig.config_write16(MSIX_CONTROL, MSIX_ENABLE | 9),
            IrqMode::Msi => rig.config_write16(MSI_CONTROL, MSI_ENABLE),
        }
        rig
    }

    pub fn config_write16(&mut self, offset: u64, v: u16) {
        let e = self.pf.config_write(offset, &v.to_le_bytes());
        self.take(e);
    }

    pub fn config_read16(&mut self, offset: u64) -> u16 {
        let mut b = [0u8; 2];
        self.pf.config_read(offset, &mut b);
        u16::from_le_bytes(b)
    }

    pub fn take(&mut self, e: Effects) {
        self.fired.extend(e.fire.vectors());
        self.sent.extend(e.frames.into_iter().map(|f| f.bytes));
    }

    /// The wire's link changes (the runtime's PF port), with what the PF fires.
    pub fn set_link(&mut self, link: LinkStatus) {
        let e = self.pf.set_link(link);
        self.take(e);
    }

    /// igb's `rd32`.
    pub fn rd(&mut self, off: u64) -> u32 {
        let mut b = [0u8; 4];
        self.pf.region_read(0, off, &mut b).expect("BAR0 read");
        u32::from_le_bytes(b)
    }

    /// igb's `wr32`.
    pub fn wr(&mut self, off: u64, v: u32) {
        let e = self
            .pf
            .region_write(0, off, &v.to_le_bytes())
            .expect("BAR0 write");
        self.take(e);
    }

    /// The vectors fired since the last call.
    pub fn irqs(&mut self) -> Vec<u16> {
        std::mem::take(&mut self.fired)
    }

    /// Simulated time moves on by `ns`; the PF's timer runs if it asked for it.
    pub fn sleep(&mut self, ns: u64) {
        let now = self.clock.now_ns() + ns;
        self.clock.advance_to(now);
        if self.pf.next_wakeup().is_some_and(|t| t <= now) {
            let e = self.pf.on_timer(now);
            self.take(e);
        }
    }

    /// A frame the switch delivers to the PF.
    pub fn deliver(&mut self, frame: &[u8], tci: Option<u16>) -> Result<(), RxDrop> {
        let (result, fire) = self.pf.receive(frame, tci, model::function::Origin::Wire);
        self.fired.extend(fire.vectors());
        result
    }

    pub fn write_mem(&self, addr: u64, data: &[u8]) {
        self.mem
            .write_slice(data, GuestAddress(addr))
            .expect("guest write");
    }

    pub fn read_mem(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.mem
            .read_slice(&mut v, GuestAddress(addr))
            .expect("guest read");
        v
    }

    pub fn read_u16(&self, addr: u64) -> u16 {
        let b = self.read_mem(addr, 2);
        u16::from_le_bytes([b[0], b[1]])
    }

    pub fn read_u32(&self, addr: u64) -> u32 {
        let b = self.read_mem(addr, 4);
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
}
