//! The vfio-user face of one VF: [`VfFunction`] implements the server's [`PciFunction`] by
//! delegating to the VF's [`VfHandle`] in the running [`Nic`], and hands the VF an
//! [`IrqSink`] that signals the client's MSI-X eventfds.

use std::sync::Arc;

use model::{AccessError, IrqSink, Nic, VfHandle};
use tracing::{debug, info};

use crate::vfio::{
    irq_index, FunctionContext, FunctionInfo, Interrupts, PciFunction, RegionError, RegionInfo,
};

/// MSI-X vector `v` of the VF → the client's eventfd for (MSI-X, v).
struct MsixSink(Interrupts);

impl IrqSink for MsixSink {
    fn fire(&self, vector: u16) {
        // A vector the guest has not enabled is counted by `Interrupts`, not an error here.
        let _ = self.0.fire(irq_index::MSIX, u32::from(vector));
    }
}

/// One VF of a NIC as a vfio-user PCI function.
pub struct VfFunction {
    vf: VfHandle,
}

impl VfFunction {
    /// VF `id` of `nic`, or `None` if the NIC has no such VF.
    pub fn new(nic: &Arc<Nic>, id: u16) -> Option<VfFunction> {
        Some(VfFunction { vf: nic.vf(id)? })
    }
}

fn region_error(e: AccessError) -> RegionError {
    match e {
        AccessError::BadAccess => RegionError::BadAccess,
        AccessError::NoSuchRegion => RegionError::Invalid,
    }
}

impl PciFunction for VfFunction {
    fn info(&self) -> FunctionInfo {
        let vi = self.vf.layout();
        let mut info = FunctionInfo::default();
        for (i, &size) in vi.bar_sizes.iter().enumerate() {
            if size != 0 {
                info.regions[i] = RegionInfo::rw(size);
            }
        }
        info.irq_counts[irq_index::MSIX as usize] = u32::from(vi.msix_vectors);
        // ERR: one vector, as QEMU expects of a PCIe function with AER.
        info.irq_counts[irq_index::ERR as usize] = 1;
        info.needs_shared_memory = true; // the model DMAs only through `Dma::memory()`
        info
    }

    fn config_read(&mut self, offset: u64, data: &mut [u8]) {
        self.vf.config_read(offset, data)
    }

    fn config_write(&mut self, offset: u64, data: &[u8]) {
        self.vf.config_write(offset, data)
    }

    fn region_read(&mut self, index: u32, offset: u64, data: &mut [u8]) -> Result<(), RegionError> {
        self.vf
            .region_read(index, offset, data)
            .map_err(region_error)
    }

    fn region_write(&mut self, index: u32, offset: u64, data: &[u8]) -> Result<(), RegionError> {
        self.vf
            .region_write(index, offset, data)
            .map_err(region_error)
    }

    fn reset(&mut self) {
        debug!(vf = self.vf.id(), "device reset");
        self.vf.reset()
    }

    fn attach(&mut self, ctx: FunctionContext) {
        info!(vf = self.vf.id(), "client attached");
        let sink: Arc<dyn IrqSink> = Arc::new(MsixSink(ctx.irqs.clone()));
        self.vf.attach(ctx.dma.memory(), sink);
    }

    fn detach(&mut self) {
        info!(vf = self.vf.id(), "client detached");
        // Frames waiting for this guest are dropped (counted as not_attached), not kept for
        // the next one.
        self.vf.detach();
    }
}
