//! An in-process VF driver for scenarios and tests (the `soft-igbvf` feature): it drives a VF
//! of a running [`Nic`](crate::Nic) through its [`VfHandle`] — registers, rings, mailbox — as
//! Linux `igbvf` does on an 82576 VF and `ixgbevf` on an 82599 VF, so that what it exercises
//! is the same datapath `serve` runs.
//!
//! - [`SoftVf`]: the driver. igbvf's register sequences follow its `netdev.c`, `vf.c` and
//!   `mbx.c`: probe (`e1000_reset_hw_vf` handshake, `read_mac_addr`, `init_hw` SET_MAC_ADDR),
//!   open (`igbvf_configure`: SET_MULTICAST, `igbvf_configure_tx`, `igbvf_setup_srrctl`,
//!   `igbvf_configure_rx` + SET_LPE, `igbvf_alloc_rx_buffers`; `igbvf_configure_msix`;
//!   `er32(EICR)`; `igbvf_irq_enable`), link check (`e1000_check_for_link_vf`), transmit
//!   (`igbvf_tx_csum`/`igbvf_tso` context descriptor + `igbvf_tx_queue_adv` data descriptors +
//!   TDT), `igbvf_clean_tx_irq`, `igbvf_clean_rx_irq` and the three MSI-X handlers.
//!   ixgbevf's follow `ixgbevf_main.c` and `vf.c` (6.1) where they differ: API negotiation,
//!   GET_QUEUES, xcast mode, SET_LPE before the rings, the MAC registered at up, a context
//!   descriptor before every packet, VFLINKS, one queue vector and one mailbox vector.
//! - [`IrqLog`]: an [`IrqSink`] that records the vectors fired, for the driver's handlers.
//! - [`SoftGuest`]: a guest of its own — memory, interrupt log, driver — attached to one VF.
//! - [`SoftIgbPf`]: the VF management of a guest's igb, for a port whose VFs it manages: the
//!   register sequences of `sriov_numvfs`, of its mailbox task and of `ip link set <pf> vf N`.

use std::sync::{Arc, Mutex, MutexGuard};

use vm_memory::{GuestAddress, GuestMemoryAtomic};

use crate::function::ram::{self, GuestRam};

use crate::nic::VfHandle;
use crate::seams::IrqSink;

mod igb_pf;
mod vfdrv;

pub use igb_pf::{Handled, PfBar0, SoftIgbPf};
pub use vfdrv::{
    DriverConfig, DrvError, RegMap, RxFrame, SoftVf, WatchdogRun, XmitOpts, RESET_THROTTLE_NS,
    WATCHDOG_PERIOD_NS,
};

/// Where a [`SoftGuest`]'s memory starts, and how much it has.
pub const GUEST_BASE: u64 = 0x10_0000;
pub const GUEST_SIZE: usize = 0x40_0000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Records the MSI-X vectors a VF fires.
#[derive(Debug, Default)]
pub struct IrqLog {
    fired: Mutex<Vec<u16>>,
}

impl IrqLog {
    pub fn new() -> Arc<IrqLog> {
        Arc::new(IrqLog::default())
    }

    /// The vectors fired since the last call, in order.
    pub fn take(&self) -> Vec<u16> {
        std::mem::take(&mut lock(&self.fired))
    }
}

impl IrqSink for IrqLog {
    fn fire(&self, vector: u16) {
        lock(&self.fired).push(vector);
    }
}

/// Guest memory that could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("guest memory: {0}")]
pub struct MemoryError(#[from] vm_memory::mmap::FromRangesError);

/// One VF with a guest of its own attached: [`GUEST_SIZE`] bytes of memory at [`GUEST_BASE`],
/// an [`IrqLog`], and a [`SoftVf`] (not probed yet).
pub struct SoftGuest {
    pub vf: VfHandle,
    pub drv: SoftVf,
    pub irqs: Arc<IrqLog>,
    pub mem: GuestRam,
}

impl SoftGuest {
    /// Attaches fresh guest memory and an interrupt log to `vf`.
    pub fn attach(vf: VfHandle, cfg: DriverConfig) -> Result<SoftGuest, MemoryError> {
        let mem = ram::anonymous(&[(GuestAddress(GUEST_BASE), GUEST_SIZE)])?;
        let irqs = IrqLog::new();
        vf.attach(GuestMemoryAtomic::new(mem.clone()), irqs.clone());
        let drv = SoftVf::new(mem.clone(), GUEST_BASE, cfg);
        Ok(SoftGuest { vf, drv, irqs, mem })
    }

    /// The driver's probe and open, then the interrupts they raised. Returns the netdev's MAC.
    pub fn up(&mut self) -> Result<[u8; 6], DrvError> {
        let mac = self.drv.probe(&self.vf)?;
        self.drv.open(&self.vf)?;
        self.poll();
        Ok(mac)
    }

    /// Runs the MSI-X handlers for every vector fired so far.
    pub fn poll(&mut self) {
        self.drv.handle_irqs(&self.vf, &self.irqs);
    }

    /// The driver's transmit of one frame, without offloads.
    pub fn send(&mut self, frame: &[u8]) -> Result<(), DrvError> {
        self.drv.xmit(&self.vf, frame, &XmitOpts::default())
    }

    /// The frames the RX handler handed to the stack since the last call.
    pub fn take_received(&mut self) -> Vec<RxFrame> {
        std::mem::take(&mut self.drv.received)
    }

    /// A fresh driver over the same function and memory (a module reload).
    pub fn reload(&mut self, cfg: DriverConfig) {
        self.drv = SoftVf::new(self.mem.clone(), GUEST_BASE, cfg);
    }
}
