//! The vfio-user face of one hosted function: [`FunctionAdapter`] implements the server's
//! [`PciFunction`] by delegating to the function's [`Handle`] in the running [`Nic`], and hands
//! the function an [`IrqSink`] that signals the client's eventfds.

use std::sync::Arc;

use model::nic::{Handle, Hosted};
use model::{AccessError, IrqSink, Nic, Vf};
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
pub type VfFunction = FunctionAdapter<Vf>;

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
        info.irq_counts[irq_index::INTX as usize] = u32::from(layout.intx);
        // ERR: one vector, as QEMU expects of a PCIe function with AER.
        info.irq_counts[irq_index::ERR as usize] = 1;
        info.needs_shared_memory = true; // the model DMAs only through `Dma::memory()`
        info
    }

    fn config_read(&mut self, offset: u64, data: &mut [u8]) {
        self.handle.config_read(offset, data)
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
