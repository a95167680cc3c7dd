//! The vfio-user face of one VF: [`VfFunction`] implements the server's [`PciFunction`] by
//! delegating to the model's [`Vf`] (which lives in the running [`Nic`]), and hands the VF an
//! [`IrqSink`] that signals the client's MSI-X eventfds.

use std::sync::{Arc, Mutex, MutexGuard};

use model::nic::Nic;
use model::{AccessError, IrqSink, Vf};
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

/// One VF of a [`Nic`] as a vfio-user PCI function.
pub struct VfFunction {
    nic: Arc<Nic>,
    vf: Arc<Mutex<Vf>>,
    id: u16,
}

impl VfFunction {
    /// VF `id` of `nic`, or `None` if the NIC has no such VF.
    pub fn new(nic: Arc<Nic>, id: u16) -> Option<VfFunction> {
        let vf = nic.vf(id)?;
        Some(VfFunction { nic, vf, id })
    }

    fn vf(&self) -> MutexGuard<'_, Vf> {
        self.vf.lock().unwrap_or_else(|e| e.into_inner())
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
        let vi = self.vf().info();
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
        self.vf().config_read(offset, data)
    }

    fn config_write(&mut self, offset: u64, data: &[u8]) {
        self.vf().config_write(offset, data)
    }

    fn region_read(&mut self, index: u32, offset: u64, data: &mut [u8]) -> Result<(), RegionError> {
        self.vf()
            .region_read(index, offset, data)
            .map_err(region_error)
    }

    fn region_write(&mut self, index: u32, offset: u64, data: &[u8]) -> Result<(), RegionError> {
        let now = self.nic.now();
        let mut vf = self.vf();
        let r = vf.region_write(index, offset, data).map_err(region_error);
        // A TX queue paused by the shaper resumes here too once its deadline has passed, not
        // only on the timer thread: on a busy host the guest's next register write (TDT, an
        // interrupt re-arm) often comes before the timer thread is scheduled.
        if vf.tx_paused_until().is_some_and(|t| t <= now) {
            let _ = vf.tx_resume();
        }
        r
    }

    fn reset(&mut self) {
        debug!(vf = self.id, "device reset");
        self.vf().reset()
    }

    fn attach(&mut self, ctx: FunctionContext) {
        info!(vf = self.id, "client attached");
        let sink: Arc<dyn IrqSink> = Arc::new(MsixSink(ctx.irqs.clone()));
        self.vf().attach(ctx.dma.memory(), sink);
    }

    fn detach(&mut self) {
        info!(vf = self.id, "client detached");
        self.vf().detach();
        // Frames waiting for this guest are dropped (counted as not_attached), not kept for
        // the next one.
        self.nic.drain_backlog(self.id);
    }
}
