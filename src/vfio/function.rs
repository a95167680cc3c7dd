//! The seam between the vfio-user server and a device model: [`PciFunction`].

use super::dma::Dma;
use super::irq::{Interrupts, NUM_IRQS};

/// Number of regions every function reports: BAR0–5 (0–5), ROM (6), config (7), VGA (8).
pub const NUM_REGIONS: usize = 9;

/// Region indexes (VFIO's PCI numbering).
pub mod region {
    pub const BAR0: u32 = 0;
    pub const BAR1: u32 = 1;
    pub const BAR2: u32 = 2;
    pub const BAR3: u32 = 3;
    pub const BAR4: u32 = 4;
    pub const BAR5: u32 = 5;
    pub const ROM: u32 = 6;
    pub const CONFIG: u32 = 7;
    pub const VGA: u32 = 8;
}

/// Size of the PCIe config region (index 7). With 4096, QEMU treats the function as Express.
pub const CONFIG_SPACE_SIZE: u64 = 4096;

/// One region as the function describes it. Size 0 means "absent". There is deliberately no
/// mmap flag: a NIC's registers have side effects, and any mmappable region would also make
/// QEMU drop posted writes for the whole device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegionInfo {
    pub size: u64,
    pub readable: bool,
    pub writable: bool,
}

impl RegionInfo {
    pub const ABSENT: RegionInfo = RegionInfo {
        size: 0,
        readable: false,
        writable: false,
    };

    /// A read/write region of `size` bytes.
    pub const fn rw(size: u64) -> RegionInfo {
        RegionInfo {
            size,
            readable: true,
            writable: true,
        }
    }
}

/// What the server reports in DEVICE_GET_INFO, GET_REGION_INFO and GET_IRQ_INFO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FunctionInfo {
    /// Indexed by [`region`] number. The config region (7) must be [`CONFIG_SPACE_SIZE`] (or
    /// 256 for a conventional PCI function); the server always routes it to
    /// [`PciFunction::config_read`]/[`PciFunction::config_write`].
    pub regions: [RegionInfo; NUM_REGIONS],
    /// Vector count per [`irq_index`](super::irq_index) (0 = not supported; at most 2048). A VF:
    /// `[0, 0, 3, 1, 0]`.
    pub irq_counts: [u32; NUM_IRQS],
    /// Report the RESET device flag, so that QEMU sends DEVICE_RESET at system reset.
    pub resettable: bool,
    /// The function DMAs only through the client's mmapped memory ([`Dma::memory`]), never
    /// through DMA_READ/DMA_WRITE messages, so its client must share its RAM (QEMU:
    /// [`QEMU_SHARED_MEMORY_OPTIONS`](super::QEMU_SHARED_MEMORY_OPTIONS)). The server then
    /// refuses writable DMA_MAPs it cannot mmap until the client has shown shared RAM, and a
    /// client whose RAM it had to refuse fails at DEVICE_GET_INFO, that is when QEMU realizes
    /// the device (see [`Dma`] for the rule and why it is enforced there). Default: `false`
    /// (fd-less maps go to the message path).
    pub needs_shared_memory: bool,
}

impl Default for FunctionInfo {
    fn default() -> Self {
        let mut regions = [RegionInfo::ABSENT; NUM_REGIONS];
        regions[region::CONFIG as usize] = RegionInfo::rw(CONFIG_SPACE_SIZE);
        FunctionInfo {
            regions,
            irq_counts: [0; NUM_IRQS],
            resettable: true,
            needs_shared_memory: false,
        }
    }
}

/// Why a region access failed. Each maps to a non-zero errno in the error reply (posted writes
/// get no reply; the failure is logged and counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RegionError {
    /// The access is inside the region but the model does not accept it there (EINVAL).
    #[error("access not accepted at this offset")]
    Invalid,
    /// Size or alignment the register does not support (EINVAL).
    #[error("unsupported access size or alignment")]
    BadAccess,
    /// The region exists but the model does not implement accesses to it (EOPNOTSUPP).
    #[error("region not implemented")]
    NotSupported,
    /// The device cannot answer now (EIO).
    #[error("device error")]
    Device,
}

impl RegionError {
    pub fn errno(self) -> i32 {
        match self {
            RegionError::Invalid | RegionError::BadAccess => libc::EINVAL,
            RegionError::NotSupported => libc::EOPNOTSUPP,
            RegionError::Device => libc::EIO,
        }
    }
}

/// The handles a function gets while a client is connected. Both are cheap to clone,
/// `Send + Sync`, usable from any thread, and keep working across DMA_MAP/UNMAP and SET_IRQS
/// changes. When the client goes away they are invalidated (DMA fails with
/// [`DmaError::Detached`](super::DmaError::Detached), interrupts become counted no-ops) before
/// [`PciFunction::detach`] is called.
#[derive(Clone, Debug)]
pub struct FunctionContext {
    pub dma: Dma,
    pub irqs: Interrupts,
}

/// A PCI function as the vfio-user server sees it. The server knows nothing about NICs: it checks
/// every index, offset and length from the client against [`FunctionInfo`] before calling in, so
/// implementations may assume `offset + data.len() <= region size` and `data.len() >= 1`.
///
/// Threading: every method is called on the function's connection thread (one client at a time),
/// so `&mut self` is never contended by the server. The trait object must be `Send` because the
/// server (and the function) move onto that thread. State the function shares with other threads
/// (its NIC's datapath) is its own business to synchronise.
///
/// Call order per client: `attach` → (config/region accesses, `reset` on DEVICE_RESET)* →
/// `detach` → `reset`, the last only if the client's VERSION was accepted (a connection that
/// closes before it could change nothing). Bus Master Enable gating is the model's job: it
/// reads its own config space.
pub trait PciFunction: Send {
    /// Region sizes, irq counts, reset flag. Read once per connection, at accept.
    fn info(&self) -> FunctionInfo;

    /// Read config space at `offset` (already bounds-checked against the config region size).
    fn config_read(&mut self, offset: u64, data: &mut [u8]);

    /// Write config space (masks are the function's job).
    fn config_write(&mut self, offset: u64, data: &[u8]);

    /// Read `data.len()` bytes at `offset` of region `index` (a BAR, ROM or VGA; never 7).
    fn region_read(&mut self, index: u32, offset: u64, data: &mut [u8]) -> Result<(), RegionError>;

    /// Write region `index`. Posted writes (NO_REPLY) come here too; they are applied in order
    /// before any later message is processed.
    fn region_write(&mut self, index: u32, offset: u64, data: &[u8]) -> Result<(), RegionError>;

    /// Function-level reset: on DEVICE_RESET and after a client that negotiated disconnects.
    fn reset(&mut self);

    /// A client connected: keep the handles (clones may go to other threads).
    fn attach(&mut self, ctx: FunctionContext);

    /// The client went away. The handles given in `attach` are already invalidated.
    fn detach(&mut self);
}
