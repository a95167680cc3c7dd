//! The vfio-user face of one hosted function: [`FunctionAdapter`] implements the server's
//! [`PciFunction`] by delegating to the function's [`Handle`] in the running [`Nic`], and hands
//! the function an [`IrqSink`] that signals the client's eventfds.
//!
//! Interrupts reach the client as MSI-X, or as MSI when the guest's driver turned MSI-X off.
//! INTx is not offered: a level-triggered line would need the function's level re-read each
//! time the client unmasks it, and an edge on an eventfd loses the interrupts that come while
//! the line is masked. So a function with an INTx pin (the PF) reads Interrupt Pin 0 here, as
//! Linux vfio-pci presents a device whose INTx it cannot mask, and reports no INTx vector:
//! QEMU then never sets INTx up, and a guest driver uses MSI-X or MSI (igb's
//! `igb_set_interrupt_capability` tries them first).

use std::sync::Arc;

use model::nic::{Handle, Hosted};
use model::{AccessError, CardVf, IrqSink, Nic};
use pcie::regs::header;
use tracing::{debug, info};

use crate::vfio::{
    irq_index, FunctionContext, FunctionInfo, Interrupts, PciFunction, RegionError, RegionInfo,
};

/// Vector `v` of the function → the client's eventfd for (MSI-X, v); when the client has no
/// MSI-X vector there (MSI-X off: the guest's driver fell back to MSI), vector 0 → MSI.
struct VectorSink(Interrupts);

impl IrqSink for VectorSink {
    fn fire(&self, vector: u16) {
        // A vector the guest has not enabled is counted by `Interrupts`, not an error here.
        let irqs = &self.0;
        if !irqs.fire(irq_index::MSIX, u32::from(vector))
            && vector == 0
            && irqs.count(irq_index::MSI) > 0
        {
            let _ = irqs.fire(irq_index::MSI, 0);
        }
    }
}

/// One function of a NIC (a VF, the PF function) as a vfio-user PCI function.
pub struct FunctionAdapter<F> {
    handle: Handle<F>,
}

/// One VF of a NIC as a vfio-user PCI function.
pub type VfFunction = FunctionAdapter<CardVf>;

impl VfFunction {
    /// VF `id` of `nic`, or `None` if the NIC has no such VF.
    pub fn new(nic: &Arc<Nic>, id: u16) -> Option<VfFunction> {
        Some(FunctionAdapter {
            handle: nic.vf(id)?,
        })
    }
}

impl<F: Hosted> FunctionAdapter<F> {
    /// The function behind `handle`.
    pub fn from_handle(handle: Handle<F>) -> FunctionAdapter<F> {
        FunctionAdapter { handle }
    }
}

fn region_error(e: AccessError) -> RegionError {
    match e {
        AccessError::BadAccess => RegionError::BadAccess,
        AccessError::NoSuchRegion => RegionError::Invalid,
    }
}

impl<F: Hosted> PciFunction for FunctionAdapter<F> {
    fn info(&self) -> FunctionInfo {
        let layout = self.handle.layout();
        let mut info = FunctionInfo::default();
        for (i, &size) in layout.bar_sizes.iter().enumerate() {
            if size != 0 {
                info.regions[i] = RegionInfo::rw(size);
            }
        }
        info.irq_counts[irq_index::MSIX as usize] = u32::from(layout.msix_vectors);
        info.irq_counts[irq_index::MSI as usize] = u32::from(layout.msi_vectors);
        // No INTx (see the module docs): the count stays 0.
        // ERR: one vector, as QEMU expects of a PCIe function with AER.
        info.irq_counts[irq_index::ERR as usize] = 1;
        info.needs_shared_memory = true; // the model DMAs only through `Dma::memory()`
        info
    }

    fn config_read(&mut self, offset: u64, data: &mut [u8]) {
        self.handle.config_read(offset, data);
        // Interrupt Pin 0: no INTx on this bus (see the module docs).
        let pin = header::INTERRUPT_PIN as u64;
        if let Some(byte) = pin
            .checked_sub(offset)
            .and_then(|i| data.get_mut(usize::try_from(i).ok()?))
        {
            *byte = 0;
        }
    }

    fn config_write(&mut self, offset: u64, data: &[u8]) {
        self.handle.config_write(offset, data)
    }

    fn region_read(&mut self, index: u32, offset: u64, data: &mut [u8]) -> Result<(), RegionError> {
        self.handle
            .region_read(index, offset, data)
            .map_err(region_error)
    }

    fn region_write(&mut self, index: u32, offset: u64, data: &[u8]) -> Result<(), RegionError> {
        self.handle
            .region_write(index, offset, data)
            .map_err(region_error)
    }

    fn reset(&mut self) {
        debug!(port = %self.handle.port(), "device reset");
        self.handle.reset()
    }

    fn attach(&mut self, ctx: FunctionContext) {
        info!(port = %self.handle.port(), "client attached");
        let sink: Arc<dyn IrqSink> = Arc::new(VectorSink(ctx.irqs.clone()));
        self.handle.attach(ctx.dma.memory(), sink);
    }

    fn detach(&mut self) {
        info!(port = %self.handle.port(), "client detached");
        // Frames waiting for this guest are dropped (counted as not_attached), not kept for
        // the next one.
        self.handle.detach();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfio::region;
    use model::function::i82576::Pf;
    use model::{MonotonicClock, NicConfig};

    fn pf_adapter() -> FunctionAdapter<model::nic::DynFunction> {
        let clock: Arc<dyn model::Clock> = Arc::new(MonotonicClock::new());
        let nic = Nic::new(&NicConfig::default(), clock.clone()).unwrap();
        let pf = Pf::new(NicConfig::default().pf_mac, nic.shared_pf(), clock).unwrap();
        FunctionAdapter::from_handle(nic.host_pf(Box::new(pf)).unwrap())
    }

    /// An eventfd, and a duplicate of it for SET_IRQS.
    fn eventfd() -> (vmm_sys_util::eventfd::EventFd, std::os::fd::OwnedFd) {
        use std::os::fd::{AsRawFd, FromRawFd};
        let e = vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK).unwrap();
        // SAFETY: dup returns a fresh fd that we own from here on.
        let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(libc::dup(e.as_raw_fd())) };
        (e, owned)
    }

    #[test]
    fn the_pfs_one_vector_goes_out_as_msi_when_its_driver_turned_msix_off() {
        use crate::vfio::Dma;
        use model::function::i82576::pf_regs::{icr, ICR, ICS, IMS};
        use vfio_bindings::bindings::vfio::{
            VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_DATA_EVENTFD,
        };
        let mut pf = pf_adapter();
        let irqs = Interrupts::new(pf.info().irq_counts);
        pf.attach(FunctionContext {
            dma: Dma::new(None, true),
            irqs: irqs.clone(),
        });
        // QEMU's vfio_msi_enable: the guest enabled MSI (igb's fallback), one eventfd.
        let (msi, fd) = eventfd();
        let trigger = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
        irqs.set_irqs(irq_index::MSI, trigger, 0, 1, vec![fd])
            .unwrap();
        // igb_intr_test's forced cause: LSC enabled, then set through ICS.
        let wr = |pf: &mut FunctionAdapter<_>, off: u64, v: u32| {
            pf.region_write(region::BAR0, off, &v.to_le_bytes())
                .unwrap()
        };
        wr(&mut pf, IMS, icr::LSC);
        wr(&mut pf, ICS, icr::LSC);
        assert_eq!(msi.read().unwrap(), 1);
        // With MSI-X on and its vector 0 given an eventfd, the same goes there instead.
        // MSI-X Message Control (the capability at 0x70): MSI-X Enable.
        pf.config_write(0x72, &(1u16 << 15).to_le_bytes());
        let (msix, fd) = eventfd();
        irqs.set_irqs(irq_index::MSIX, trigger, 0, 1, vec![fd])
            .unwrap();
        wr(&mut pf, ICR, !0);
        wr(&mut pf, ICS, icr::LSC);
        assert_eq!(msix.read().unwrap(), 1);
        assert!(msi.read().is_err(), "nothing more on MSI");
    }

    #[test]
    fn the_pf_has_its_six_bars_msix_and_msi_and_no_intx() {
        let mut pf = pf_adapter();
        let info = pf.info();
        let sizes: Vec<u64> = (region::BAR0..=region::BAR5)
            .map(|i| info.regions[i as usize].size)
            .collect();
        // BAR0 CSRs, BAR1 flash, BAR2 I/O, BAR3 64-bit MSI-X (BAR4 is its upper half).
        assert_eq!(sizes, [128 << 10, 128 << 10, 32, 16 << 10, 0, 0]);
        assert_eq!(info.irq_counts[irq_index::MSIX as usize], 10);
        assert_eq!(info.irq_counts[irq_index::MSI as usize], 1);
        assert_eq!(info.irq_counts[irq_index::INTX as usize], 0);
        assert_eq!(info.irq_counts[irq_index::ERR as usize], 1);
        // Interrupt Pin reads 0 in any access that covers it; Interrupt Line is untouched.
        pf.config_write(0x3C, &[0x0B]);
        let mut dword = [0u8; 4];
        pf.config_read(0x3C, &mut dword);
        assert_eq!(dword[..2], [0x0B, 0]);
        let mut byte = [0xFF];
        pf.config_read(0x3D, &mut byte);
        assert_eq!(byte, [0]);
        let mut whole = vec![0u8; 4096];
        pf.config_read(0, &mut whole);
        assert_eq!(whole[0x3D], 0);
        assert_eq!(whole[..4], [0x86, 0x80, 0xC9, 0x10]);
        // The I/O BAR reaches the registers: IOADDR = STATUS, IODATA reads it (link up).
        pf.region_write(region::BAR2, 0, &8u32.to_le_bytes())
            .unwrap();
        let mut status = [0u8; 4];
        pf.region_read(region::BAR2, 4, &mut status).unwrap();
        assert_ne!(u32::from_le_bytes(status) & 2, 0, "STATUS.LU");
    }
}
