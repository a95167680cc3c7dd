//! The SR-IOV extended capability (SR-IOV 1.1 §3.3) and the state it holds.
//!
//! Register semantics (applied by [`crate::ConfigSpace::write`]):
//! - SR-IOV Control: VF Enable, VF MSE and ARI Capable Hierarchy are read-write;
//!   VF migration is not supported (its bits read 0). ARI Capable Hierarchy changes
//!   are refused while VF Enable is set.
//! - NumVFs: read-write while VF Enable is clear. A write while VF Enable is set,
//!   or of a value above TotalVFs, is refused: the register keeps its old value and
//!   the refusal is logged at `warn`.
//! - System Page Size: read-write while VF Enable is clear; only a single bit that
//!   is also set in Supported Page Sizes is accepted, anything else is refused.
//! - VF BAR0..5: like ordinary BARs, sized per VF (all ones reads back the per-VF
//!   size mask). VF n's BAR is at `VF BAR address + n * per-VF size`.
//! - First VF Offset and VF Stride are constant (they do not follow NumVFs or ARI
//!   Capable Hierarchy; the values given at build time must suit both).

use crate::bar::{Bar, BarKind};
use crate::config::{CapRegs, ConfigSpace, ExtCapability};
use crate::error::BuildError;
use crate::regs::{ext_cap_id, sriov};

/// Parameters of an SR-IOV capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sriov {
    pub initial_vfs: u16,
    pub total_vfs: u16,
    pub first_vf_offset: u16,
    pub vf_stride: u16,
    pub vf_device_id: u16,
    /// Supported Page Sizes; must include at least 4 KiB (bit 0).
    pub supported_page_sizes: u32,
    pub function_dependency_link: u8,
    /// VF BARs as each VF sees them (kind and per-VF size). Memory only.
    pub vf_bars: [Option<Bar>; 6],
}

impl Sriov {
    /// `total_vfs` VFs (InitialVFs = TotalVFs) with device id `vf_device_id`,
    /// offset 1, stride 1, the required page sizes, no VF BARs yet.
    pub const fn new(total_vfs: u16, vf_device_id: u16) -> Self {
        Sriov {
            initial_vfs: total_vfs,
            total_vfs,
            first_vf_offset: 1,
            vf_stride: 1,
            vf_device_id,
            supported_page_sizes: sriov::REQUIRED_PAGE_SIZES,
            function_dependency_link: 0,
            vf_bars: [None; 6],
        }
    }

    /// The same, with this First VF Offset and VF Stride.
    pub const fn with_routing(self, first_vf_offset: u16, vf_stride: u16) -> Self {
        Sriov {
            first_vf_offset,
            vf_stride,
            ..self
        }
    }

    /// The same, with VF BAR `index` set to `bar` (per-VF size). Checked by
    /// `validate` when the capability is added.
    pub const fn with_vf_bar(mut self, index: usize, bar: Bar) -> Self {
        if index < self.vf_bars.len() {
            self.vf_bars[index] = Some(bar);
        }
        self
    }
}

impl ExtCapability for Sriov {
    fn id(&self) -> u16 {
        ext_cap_id::SRIOV
    }

    fn version(&self) -> u8 {
        sriov::VERSION
    }

    fn size(&self) -> usize {
        sriov::SIZE
    }

    fn validate(&self) -> Result<(), BuildError> {
        let fail = |reason| {
            Err(BuildError::InvalidCapability {
                name: "SR-IOV",
                reason,
            })
        };
        if self.initial_vfs > self.total_vfs {
            return fail("InitialVFs exceeds TotalVFs");
        }
        if self.total_vfs > 0 && self.first_vf_offset == 0 {
            return fail("First VF Offset must be non-zero");
        }
        if self.total_vfs > 1 && self.vf_stride == 0 {
            return fail("VF Stride must be non-zero with more than one VF");
        }
        if self.supported_page_sizes & sriov::PAGE_SIZE_4K == 0 {
            return fail("Supported Page Sizes must include 4 KiB");
        }
        for (index, bar) in self.vf_bars.iter().enumerate() {
            let Some(bar) = bar else { continue };
            bar.validate(index)?;
            if bar.kind == BarKind::Io {
                return Err(BuildError::InvalidBar {
                    index,
                    reason: "VF BARs decode memory only",
                });
            }
            if bar.kind == BarKind::Memory64 && self.vf_bars[index + 1].is_some() {
                return Err(BuildError::InvalidBar {
                    index: index + 1,
                    reason: "register is the upper half of a 64-bit VF BAR",
                });
            }
        }
        Ok(())
    }

    fn install(&self, regs: &mut CapRegs<'_>) {
        regs.ro32(sriov::CAP, 0);
        regs.rw16(
            sriov::CONTROL,
            0,
            sriov::CONTROL_VF_ENABLE | sriov::CONTROL_VF_MSE | sriov::CONTROL_ARI_CAPABLE_HIERARCHY,
        );
        regs.ro16(sriov::STATUS, 0);
        regs.ro16(sriov::INITIAL_VFS, self.initial_vfs);
        regs.ro16(sriov::TOTAL_VFS, self.total_vfs);
        regs.rw16(sriov::NUM_VFS, 0, u16::MAX);
        regs.ro16(
            sriov::FUNCTION_DEPENDENCY_LINK,
            self.function_dependency_link.into(),
        );
        regs.ro16(sriov::FIRST_VF_OFFSET, self.first_vf_offset);
        regs.ro16(sriov::VF_STRIDE, self.vf_stride);
        regs.ro16(sriov::VF_DEVICE_ID, self.vf_device_id);
        regs.ro32(sriov::SUPPORTED_PAGE_SIZES, self.supported_page_sizes);
        regs.rw32(sriov::SYSTEM_PAGE_SIZE, sriov::PAGE_SIZE_4K, u32::MAX);
        for (index, bar) in self.vf_bars.iter().enumerate() {
            let Some(bar) = bar else { continue };
            let reg = sriov::VF_BAR0 + 4 * index;
            let (low, high) = bar.write_masks();
            regs.rw32(reg, bar.type_bits(), low);
            if bar.registers() == 2 {
                regs.rw32(reg + 4, 0, high);
            }
        }
        regs.ro32(sriov::VF_MIGRATION_STATE_ARRAY, 0);
    }
}

/// One VF BAR of a PF: its kind and per-VF size, and the address programmed into
/// the PF's VF BAR register (the base of VF 0's copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VfBar {
    pub bar: Bar,
    pub base: u64,
}

/// A snapshot of a PF's SR-IOV capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SriovState {
    /// Offset of the capability in the PF's config space.
    pub offset: usize,
    pub initial_vfs: u16,
    pub total_vfs: u16,
    pub num_vfs: u16,
    pub vf_enabled: bool,
    pub vf_mse: bool,
    pub ari_capable_hierarchy: bool,
    pub first_vf_offset: u16,
    pub vf_stride: u16,
    pub vf_device_id: u16,
    pub supported_page_sizes: u32,
    /// System Page Size register (bit n set = pages of 4 KiB << n).
    pub system_page_size: u32,
    pub vf_bars: [Option<VfBar>; 6],
}

impl SriovState {
    /// System page size in bytes.
    pub fn page_size_bytes(&self) -> u64 {
        4096u64 << self.system_page_size.trailing_zeros().min(52)
    }

    /// Address of VF `vf`'s (0-based) copy of VF BAR `index`, when that BAR exists.
    pub fn vf_bar_address(&self, vf: u16, index: usize) -> Option<u64> {
        let bar = self.vf_bars.get(index).copied().flatten()?;
        Some(
            bar.base
                .wrapping_add(u64::from(vf).wrapping_mul(bar.bar.size)),
        )
    }

    /// Routing ID of VF `vf` (0-based) for a PF at routing ID `pf_rid`
    /// (SR-IOV 1.1 §3.3.9/§3.3.10); None if it would pass 0xFFFF.
    pub fn vf_routing_id(&self, pf_rid: u16, vf: u16) -> Option<u16> {
        let rid = u32::from(pf_rid)
            + u32::from(self.first_vf_offset)
            + u32::from(vf) * u32::from(self.vf_stride);
        u16::try_from(rid).ok()
    }
}

/// Decodes a VF BAR from its registers' type bits and write masks (the kinds and
/// sizes are not stored anywhere else).
fn vf_bar(space: &ConfigSpace, reg: usize) -> Option<VfBar> {
    let low = space.read_u32(reg);
    let low_mask = space.masks_u32(reg);
    let is_64 = low & crate::regs::bar::MEM_TYPE_MASK == crate::regs::bar::MEM_TYPE_64;
    let (high, high_mask) = if is_64 {
        (space.read_u32(reg + 4), space.masks_u32(reg + 4))
    } else {
        (0, 0)
    };
    // A 64-bit BAR of 4 GiB or more has no writable bits in its low register.
    if low_mask == 0 && high_mask == 0 {
        return None;
    }
    let size = crate::bar::size_from_readback(low_mask | (low & 0xF), high_mask);
    let kind = if is_64 {
        BarKind::Memory64
    } else {
        BarKind::Memory32
    };
    let bar = Bar {
        kind,
        size,
        prefetchable: low & crate::regs::bar::MEM_PREFETCHABLE != 0,
    };
    Some(VfBar {
        bar,
        base: bar.address(low, high),
    })
}

impl ConfigSpace {
    /// The SR-IOV capability's state, if there is one.
    pub fn sriov(&self) -> Option<SriovState> {
        Some(read_state(self, self.sriov_base()?))
    }
}

fn read_state(space: &ConfigSpace, base: usize) -> SriovState {
    let control = space.read_u16(base + sriov::CONTROL);
    let mut vf_bars = [None; 6];
    let mut index = 0;
    while index < vf_bars.len() {
        let found = vf_bar(space, base + sriov::VF_BAR0 + 4 * index);
        let step = found.map_or(1, |b| b.bar.registers());
        vf_bars[index] = found;
        index += step;
    }
    SriovState {
        offset: base,
        initial_vfs: space.read_u16(base + sriov::INITIAL_VFS),
        total_vfs: space.read_u16(base + sriov::TOTAL_VFS),
        num_vfs: space.read_u16(base + sriov::NUM_VFS),
        vf_enabled: control & sriov::CONTROL_VF_ENABLE != 0,
        vf_mse: control & sriov::CONTROL_VF_MSE != 0,
        ari_capable_hierarchy: control & sriov::CONTROL_ARI_CAPABLE_HIERARCHY != 0,
        first_vf_offset: space.read_u16(base + sriov::FIRST_VF_OFFSET),
        vf_stride: space.read_u16(base + sriov::VF_STRIDE),
        vf_device_id: space.read_u16(base + sriov::VF_DEVICE_ID),
        supported_page_sizes: space.read_u32(base + sriov::SUPPORTED_PAGE_SIZES),
        system_page_size: space.read_u32(base + sriov::SYSTEM_PAGE_SIZE),
        vf_bars,
    }
}
