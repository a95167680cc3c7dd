//! The 4 KiB configuration space of one function, with per-bit write semantics.

use std::ops::Range;

use tracing::{debug, warn};

use crate::bar::Bar;
use crate::error::BuildError;
use crate::regs::{
    cap, cap_id, command, exp, ext_cap, ext_cap_id, header, msi, msix, pm, sriov, status,
    CAP_AREA_START, CONFIG_SPACE_SIZE, EXT_CAP_START, LEGACY_CONFIG_SIZE,
};

mod build;

pub use build::{CapRegs, Capability, ExtCapability};

/// Identity fields of a type 0 (endpoint) header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Header {
    pub vendor_id: u16,
    pub device_id: u16,
    pub revision_id: u8,
    /// Base class, sub-class, programming interface as `0xBBSSPP`.
    pub class_code: u32,
    pub subsystem_vendor_id: u16,
    pub subsystem_id: u16,
    /// Header Type bit 7.
    pub multi_function: bool,
    /// 0 = no INTx, 1..=4 = INTA..INTD.
    pub interrupt_pin: u8,
    /// Hardware-initialised Cache Line Size (the register stays writable).
    pub cache_line_size: u8,
}

/// A D-state of the Power Management capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerState {
    D0,
    D1,
    D2,
    D3Hot,
}

impl PowerState {
    fn from_bits(bits: u16) -> Self {
        match bits & pm::PMCSR_STATE_MASK {
            0 => PowerState::D0,
            1 => PowerState::D1,
            2 => PowerState::D2,
            _ => PowerState::D3Hot,
        }
    }
}

/// A state change caused by a guest config write (or [`ConfigSpace::reset`]) that
/// the owner of the function must act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigEvent {
    /// Bus Master Enable or Memory Space Enable changed; the device must gate DMA on
    /// `bus_master` and BAR decoding on `memory`.
    CommandChanged { bus_master: bool, memory: bool },
    /// Initiate Function Level Reset was written (PCIe DevCtl bit 15, FLR capable).
    /// The owner resets the function, typically with [`ConfigSpace::reset`].
    Flr,
    /// PMCSR PowerState moved between D-states.
    PmStateChanged { from: PowerState, to: PowerState },
    /// MSI Enable changed.
    MsiControlChanged { enabled: bool },
    /// MSI-X Enable or Function Mask changed.
    MsixControlChanged {
        enabled: bool,
        function_masked: bool,
    },
    /// SR-IOV VF Enable went from 0 to 1; `num_vfs` VFs now exist.
    SriovVfEnable { num_vfs: u16 },
    /// SR-IOV VF Enable went from 1 to 0; all VFs are gone.
    SriovVfDisable,
    /// SR-IOV NumVFs took a new (accepted) value.
    SriovNumVfs(u16),
    /// SR-IOV VF Memory Space Enable changed.
    SriovVfMemoryChanged { enabled: bool },
}

/// The list of events one access produced (usually empty; never allocates then).
pub type ConfigEvents = Vec<ConfigEvent>;

/// Offsets of the capabilities whose registers have side effects.
#[derive(Debug, Clone, Copy, Default)]
struct Special {
    pm: Option<usize>,
    msi: Option<usize>,
    msix: Option<usize>,
    exp: Option<usize>,
    sriov: Option<usize>,
}

/// Configuration space of one PCI Express function: 4096 bytes of register data
/// plus, per bit, whether a guest write may set it (read-write), clear it by
/// writing 1 (write-1-to-clear) or not change it at all (read-only).
///
/// Guest accesses ([`read`](Self::read), [`write`](Self::write)) never panic:
/// - reads accept any offset and length; bytes at or beyond 4096 read as 0xFF;
/// - writes must be 1, 2 or 4 bytes long and lie entirely inside the 4096 bytes;
///   they may start at any offset (even crossing a dword). Any other write is
///   ignored as a whole and logged at `warn`.
#[derive(Clone)]
pub struct ConfigSpace {
    data: Box<[u8; CONFIG_SPACE_SIZE]>,
    initial: Box<[u8; CONFIG_SPACE_SIZE]>,
    rw: Box<[u8; CONFIG_SPACE_SIZE]>,
    w1c: Box<[u8; CONFIG_SPACE_SIZE]>,
    bars: [Option<Bar>; header::BAR_COUNT],
    rom_size: Option<u64>,
    caps: Vec<(u8, Range<usize>)>,
    ext_caps: Vec<(u16, Range<usize>)>,
    special: Special,
    refused_writes: u64,
}

impl std::fmt::Debug for ConfigSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigSpace")
            .field("vendor_id", &self.read_u16(header::VENDOR_ID))
            .field("device_id", &self.read_u16(header::DEVICE_ID))
            .field("bars", &self.bars)
            .field("caps", &self.caps)
            .field("ext_caps", &self.ext_caps)
            .finish_non_exhaustive()
    }
}

/// The Command bits a physical function lets software write.
const PF_COMMAND_WRITABLE: u16 = command::IO_SPACE
    | command::MEMORY_SPACE
    | command::BUS_MASTER
    | command::PARITY_ERROR_RESPONSE
    | command::SERR_ENABLE
    | command::INTX_DISABLE;

/// The Command bits of a VF as a VMM presents it: Memory Space and Bus Master.
const VF_COMMAND_WRITABLE: u16 = command::MEMORY_SPACE | command::BUS_MASTER;

fn le_bytes(value: u32) -> [u8; 4] {
    value.to_le_bytes()
}

impl ConfigSpace {
    /// Offset of the first standard capability with this id.
    pub fn capability_offset(&self, id: u8) -> Option<usize> {
        self.caps
            .iter()
            .find(|(c, _)| *c == id)
            .map(|(_, r)| r.start)
    }

    /// Offset of the first extended capability with this id.
    pub fn ext_capability_offset(&self, id: u16) -> Option<usize> {
        self.ext_caps
            .iter()
            .find(|(c, _)| *c == id)
            .map(|(_, r)| r.start)
    }

    // ---- guest accesses -------------------------------------------------------

    /// Reads `data.len()` bytes from `offset`. Any length is accepted (QEMU reads
    /// all 4096 bytes at once); bytes at or beyond 4096 read as 0xFF, as from an
    /// absent function.
    pub fn read(&self, offset: usize, data: &mut [u8]) {
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = offset
                .checked_add(i)
                .and_then(|o| self.data.get(o))
                .copied()
                .unwrap_or(0xFF);
        }
    }

    /// One byte at `offset` (0xFF when out of range).
    pub fn read_u8(&self, offset: usize) -> u8 {
        let mut b = [0; 1];
        self.read(offset, &mut b);
        b[0]
    }

    /// A little-endian 16-bit value at `offset` (out-of-range bytes are 0xFF).
    pub fn read_u16(&self, offset: usize) -> u16 {
        let mut b = [0; 2];
        self.read(offset, &mut b);
        u16::from_le_bytes(b)
    }

    /// A little-endian 32-bit value at `offset` (out-of-range bytes are 0xFF).
    pub fn read_u32(&self, offset: usize) -> u32 {
        let mut b = [0; 4];
        self.read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    /// A guest write of 1, 2 or 4 bytes at `offset`. Per bit: read-write bits take
    /// the written value, write-1-to-clear bits are cleared where a 1 is written,
    /// read-only bits keep their value. Some registers then apply their own rules
    /// (refused NumVFs, unsupported D-states, Initiate FLR reading 0, ...) and the
    /// resulting state changes are returned.
    ///
    /// Writes of another length, or reaching past byte 4095, are ignored and
    /// logged; they return no event.
    pub fn write(&mut self, offset: usize, data: &[u8]) -> ConfigEvents {
        let mut events = ConfigEvents::new();
        if !matches!(data.len(), 1 | 2 | 4) {
            self.refused_writes += 1;
            warn!(
                offset,
                len = data.len(),
                "config write of unsupported length ignored"
            );
            return events;
        }
        let Some(end) = offset
            .checked_add(data.len())
            .filter(|&end| end <= CONFIG_SPACE_SIZE)
        else {
            self.refused_writes += 1;
            warn!(
                offset,
                len = data.len(),
                "config write beyond 4 KiB ignored"
            );
            return events;
        };
        let before = Snapshot::take(&self.data, offset, end);
        for (o, &value) in (offset..end).zip(data) {
            let keep = self.data[o] & !self.rw[o] & !(value & self.w1c[o]);
            self.data[o] = keep | (value & self.rw[o]);
        }
        let access = Access {
            range: offset..end,
            data,
            before: &before,
        };
        self.apply_side_effects(&access, &mut events);
        events
    }

    /// Raw update by the device itself, bypassing the write masks (status bits,
    /// link state, pending bits, ...). Bytes beyond 4096 are ignored. The reset
    /// values are not changed and no event is produced.
    pub fn hw_write(&mut self, offset: usize, data: &[u8]) {
        for (i, &value) in data.iter().enumerate() {
            if let Some(byte) = offset.checked_add(i).and_then(|o| self.data.get_mut(o)) {
                *byte = value;
            }
        }
    }

    /// Restores every register to its hardware-initialised value (power-on reset or
    /// FLR) and returns the events describing the state that was lost (Bus Master /
    /// Memory cleared, VFs disabled, NumVFs back to 0). Sticky bits (AER RW1CS
    /// status) are not kept apart: they reset too. The refused-write counter is
    /// not a register and is kept.
    pub fn reset(&mut self) -> ConfigEvents {
        let command_before = self.read_u16(header::COMMAND);
        let sriov_before = self.sriov();
        self.data.copy_from_slice(&self.initial[..]);
        let mut events = ConfigEvents::new();
        let command_after = self.read_u16(header::COMMAND);
        if (command_before ^ command_after) & (command::BUS_MASTER | command::MEMORY_SPACE) != 0 {
            events.push(self.command_event());
        }
        if let (Some(old), Some(new)) = (sriov_before, self.sriov()) {
            if old.vf_enabled && !new.vf_enabled {
                events.push(ConfigEvent::SriovVfDisable);
            }
            if old.num_vfs != new.num_vfs {
                events.push(ConfigEvent::SriovNumVfs(new.num_vfs));
            }
        }
        events
    }

    // ---- side effects ---------------------------------------------------------

    fn command_event(&self) -> ConfigEvent {
        ConfigEvent::CommandChanged {
            bus_master: self.bus_master_enabled(),
            memory: self.memory_enabled(),
        }
    }

    /// Writes `value` back into the read-write bits `mask` of the 16-bit register at
    /// `reg` (used to refuse a write).
    fn restore_bits16(&mut self, reg: usize, mask: u16, value: u16) {
        let current = self.read_u16(reg);
        let restored = (current & !mask) | (value & mask);
        self.data[reg..reg + 2].copy_from_slice(&restored.to_le_bytes());
    }

    fn apply_side_effects(&mut self, access: &Access<'_>, events: &mut ConfigEvents) {
        if access.touches(header::COMMAND, 2) {
            let old = access.before.u16(&self.data, header::COMMAND);
            let new = self.read_u16(header::COMMAND);
            if (old ^ new) & (command::BUS_MASTER | command::MEMORY_SPACE) != 0 {
                events.push(self.command_event());
            }
        }
        if let Some(base) = self.special.pm {
            self.pm_write(base, access, events);
        }
        if let Some(base) = self.special.msi {
            self.msi_write(base, access, events);
        }
        if let Some(base) = self.special.msix {
            let reg = base + msix::CONTROL;
            if access.touches(reg, 2) {
                let bits = msix::CONTROL_ENABLE | msix::CONTROL_FUNCTION_MASK;
                if (access.before.u16(&self.data, reg) ^ self.read_u16(reg)) & bits != 0 {
                    events.push(ConfigEvent::MsixControlChanged {
                        enabled: self.msix_enabled(),
                        function_masked: self.msix_function_masked(),
                    });
                }
            }
        }
        if let Some(base) = self.special.exp {
            let flr_byte = base + exp::DEVCTL + 1;
            let flr_bit = (exp::DEVCTL_BCR_FLR >> 8) as u8;
            let written = access.written_byte(flr_byte).unwrap_or(0);
            if written & flr_bit != 0 && self.read_u32(base + exp::DEVCAP) & exp::DEVCAP_FLR != 0 {
                events.push(ConfigEvent::Flr);
            }
        }
        if let Some(base) = self.special.sriov {
            self.sriov_write(base, access, events);
        }
    }

    fn pm_write(&mut self, base: usize, access: &Access<'_>, events: &mut ConfigEvents) {
        let reg = base + pm::PMCSR;
        if !access.touches(reg, 2) {
            return;
        }
        let old = access.before.u16(&self.data, reg);
        let new = self.read_u16(reg);
        let (from, to) = (PowerState::from_bits(old), PowerState::from_bits(new));
        let pmc = self.read_u16(base + pm::PMC);
        let supported = match to {
            PowerState::D1 => pmc & pm::PMC_D1_SUPPORT != 0,
            PowerState::D2 => pmc & pm::PMC_D2_SUPPORT != 0,
            PowerState::D0 | PowerState::D3Hot => true,
        };
        if !supported {
            // PCI PM 1.2 §5.4.1: a write of an unsupported state is ignored.
            self.refused_writes += 1;
            warn!(?to, "PMCSR write of an unsupported power state ignored");
            self.restore_bits16(reg, pm::PMCSR_STATE_MASK, old);
        } else if from != to {
            events.push(ConfigEvent::PmStateChanged { from, to });
        }
    }

    fn msi_write(&mut self, base: usize, access: &Access<'_>, events: &mut ConfigEvents) {
        let reg = base + msi::CONTROL;
        if !access.touches(reg, 2) {
            return;
        }
        let old = access.before.u16(&self.data, reg);
        let new = self.read_u16(reg);
        let capable = (new & msi::CONTROL_MMC_MASK) >> msi::CONTROL_MMC_SHIFT;
        let enabled = (new & msi::CONTROL_MME_MASK) >> msi::CONTROL_MME_SHIFT;
        if enabled > capable {
            self.refused_writes += 1;
            warn!(
                enabled,
                capable, "MSI Multiple Message Enable above capable ignored"
            );
            self.restore_bits16(reg, msi::CONTROL_MME_MASK, old);
        }
        if (old ^ new) & msi::CONTROL_ENABLE != 0 {
            events.push(ConfigEvent::MsiControlChanged {
                enabled: new & msi::CONTROL_ENABLE != 0,
            });
        }
    }

    fn sriov_write(&mut self, base: usize, access: &Access<'_>, events: &mut ConfigEvents) {
        let control_reg = base + sriov::CONTROL;
        let old_control = access.before.u16(&self.data, control_reg);
        let was_enabled = old_control & sriov::CONTROL_VF_ENABLE != 0;

        let num_reg = base + sriov::NUM_VFS;
        if access.touches(num_reg, 2) {
            let old = access.before.u16(&self.data, num_reg);
            let new = self.read_u16(num_reg);
            let total = self.read_u16(base + sriov::TOTAL_VFS);
            if new != old {
                if was_enabled {
                    // SR-IOV 1.1 §3.3.10: NumVFs may only change while VF Enable is
                    // clear.
                    self.refused_writes += 1;
                    warn!(
                        old,
                        new, "SR-IOV NumVFs write while VF Enable is set refused"
                    );
                    self.restore_bits16(num_reg, u16::MAX, old);
                } else if new > total {
                    self.refused_writes += 1;
                    warn!(new, total, "SR-IOV NumVFs above TotalVFs refused");
                    self.restore_bits16(num_reg, u16::MAX, old);
                } else {
                    events.push(ConfigEvent::SriovNumVfs(new));
                }
            }
        }

        let page_reg = base + sriov::SYSTEM_PAGE_SIZE;
        if access.touches(page_reg, 4) {
            let old = access.before.u32(&self.data, page_reg);
            let new = self.read_u32(page_reg);
            let supported = self.read_u32(base + sriov::SUPPORTED_PAGE_SIZES);
            if new != old && (was_enabled || new.count_ones() != 1 || new & supported == 0) {
                self.refused_writes += 1;
                warn!(old, new, supported, "SR-IOV System Page Size write refused");
                self.data[page_reg..page_reg + 4].copy_from_slice(&old.to_le_bytes());
            }
        }

        if access.touches(control_reg, 2) {
            let new_control = self.read_u16(control_reg);
            let changed = old_control ^ new_control;
            if was_enabled && changed & sriov::CONTROL_ARI_CAPABLE_HIERARCHY != 0 {
                self.refused_writes += 1;
                warn!("SR-IOV ARI Capable Hierarchy change while VF Enable is set refused");
                self.restore_bits16(
                    control_reg,
                    sriov::CONTROL_ARI_CAPABLE_HIERARCHY,
                    old_control,
                );
            }
            if changed & sriov::CONTROL_VF_ENABLE != 0 {
                events.push(if was_enabled {
                    ConfigEvent::SriovVfDisable
                } else {
                    ConfigEvent::SriovVfEnable {
                        num_vfs: self.read_u16(num_reg),
                    }
                });
            }
            if changed & sriov::CONTROL_VF_MSE != 0 {
                events.push(ConfigEvent::SriovVfMemoryChanged {
                    enabled: new_control & sriov::CONTROL_VF_MSE != 0,
                });
            }
        }
    }

    // ---- accessors ------------------------------------------------------------

    /// Command.Bus Master Enable: the function may issue DMA.
    pub fn bus_master_enabled(&self) -> bool {
        self.read_u16(header::COMMAND) & command::BUS_MASTER != 0
    }

    /// Command.Memory Space Enable: memory BARs decode.
    pub fn memory_enabled(&self) -> bool {
        self.read_u16(header::COMMAND) & command::MEMORY_SPACE != 0
    }

    /// Command.I/O Space Enable.
    pub fn io_enabled(&self) -> bool {
        self.read_u16(header::COMMAND) & command::IO_SPACE != 0
    }

    /// Command.Interrupt Disable (INTx masked).
    pub fn intx_disabled(&self) -> bool {
        self.read_u16(header::COMMAND) & command::INTX_DISABLE != 0
    }

    /// The BAR declared at `index` (None for unused and upper-half registers).
    pub fn bar(&self, index: usize) -> Option<Bar> {
        self.bars.get(index).copied().flatten()
    }

    /// The address BAR `index` is programmed with.
    pub fn bar_address(&self, index: usize) -> Option<u64> {
        let bar = self.bar(index)?;
        let reg = header::BAR0 + 4 * index;
        Some(bar.address(self.read_u32(reg), self.read_u32(reg + 4)))
    }

    /// Declared expansion ROM size, if any.
    pub fn rom_size(&self) -> Option<u64> {
        self.rom_size
    }

    /// PMCSR PowerState, if there is a Power Management capability.
    pub fn power_state(&self) -> Option<PowerState> {
        let base = self.special.pm?;
        Some(PowerState::from_bits(self.read_u16(base + pm::PMCSR)))
    }

    /// MSI Enable (false without an MSI capability).
    pub fn msi_enabled(&self) -> bool {
        self.special
            .msi
            .is_some_and(|b| self.read_u16(b + msi::CONTROL) & msi::CONTROL_ENABLE != 0)
    }

    /// MSI-X Enable (false without an MSI-X capability).
    pub fn msix_enabled(&self) -> bool {
        self.special
            .msix
            .is_some_and(|b| self.read_u16(b + msix::CONTROL) & msix::CONTROL_ENABLE != 0)
    }

    /// MSI-X Function Mask (false without an MSI-X capability).
    pub fn msix_function_masked(&self) -> bool {
        self.special
            .msix
            .is_some_and(|b| self.read_u16(b + msix::CONTROL) & msix::CONTROL_FUNCTION_MASK != 0)
    }

    /// Where the SR-IOV capability is, if there is one (its state: `ConfigSpace::sriov`).
    pub(crate) fn sriov_base(&self) -> Option<usize> {
        self.special.sriov
    }

    /// How many guest writes (or parts of writes) were refused and logged: bad
    /// length or range, NumVFs/System Page Size/ARI rules, unsupported D-states,
    /// MSI Multiple Message Enable above capable.
    pub fn refused_writes(&self) -> u64 {
        self.refused_writes
    }

    /// Write mask (read-write bits) of the byte at `offset`; 0 when out of range.
    pub fn writable_bits(&self, offset: usize) -> u8 {
        self.rw.get(offset).copied().unwrap_or(0)
    }

    /// Write-1-to-clear bits of the byte at `offset`; 0 when out of range.
    pub fn w1c_bits(&self, offset: usize) -> u8 {
        self.w1c.get(offset).copied().unwrap_or(0)
    }

    /// Hardware-initialised (reset) value of the byte at `offset`; 0xFF when out of
    /// range.
    pub fn reset_value(&self, offset: usize) -> u8 {
        self.initial.get(offset).copied().unwrap_or(0xFF)
    }

    pub(crate) fn masks_u32(&self, offset: usize) -> u32 {
        let mut bytes = [0; 4];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = self.writable_bits(offset + i);
        }
        u32::from_le_bytes(bytes)
    }
}

/// The bytes of the (at most two) dwords a write touched, as they were before it.
struct Snapshot {
    base: usize,
    bytes: [u8; 8],
    len: usize,
}

impl Snapshot {
    fn take(data: &[u8; CONFIG_SPACE_SIZE], start: usize, end: usize) -> Self {
        let base = start & !3;
        let len = ((end + 3) & !3).min(CONFIG_SPACE_SIZE) - base;
        let mut bytes = [0; 8];
        let len = len.min(bytes.len());
        bytes[..len].copy_from_slice(&data[base..base + len]);
        Snapshot { base, bytes, len }
    }

    fn byte(&self, data: &[u8; CONFIG_SPACE_SIZE], offset: usize) -> u8 {
        match offset.checked_sub(self.base) {
            Some(i) if i < self.len => self.bytes[i],
            _ => data.get(offset).copied().unwrap_or(0xFF),
        }
    }

    fn u16(&self, data: &[u8; CONFIG_SPACE_SIZE], offset: usize) -> u16 {
        u16::from_le_bytes([self.byte(data, offset), self.byte(data, offset + 1)])
    }

    fn u32(&self, data: &[u8; CONFIG_SPACE_SIZE], offset: usize) -> u32 {
        let mut b = [0; 4];
        for (i, byte) in b.iter_mut().enumerate() {
            *byte = self.byte(data, offset + i);
        }
        u32::from_le_bytes(b)
    }
}

/// One guest write being processed.
struct Access<'a> {
    range: Range<usize>,
    data: &'a [u8],
    before: &'a Snapshot,
}

impl Access<'_> {
    fn touches(&self, reg: usize, width: usize) -> bool {
        self.range.start < reg + width && reg < self.range.end
    }

    /// The byte the guest wrote at `offset`, if the write covered it.
    fn written_byte(&self, offset: usize) -> Option<u8> {
        offset
            .checked_sub(self.range.start)
            .and_then(|i| self.data.get(i))
            .copied()
    }
}
