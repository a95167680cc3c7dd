//! Laying out a configuration space: the header, BARs, the ROM BAR and capability chains. The
//! guest-visible semantics of what is laid out here live in the parent module.

use super::*;

/// A standard capability (in 0x40..0x100) that can be laid out in a config space.
pub trait Capability {
    /// Capability ID (`regs::cap_id`).
    fn id(&self) -> u8;
    /// Size in bytes, header included.
    fn size(&self) -> usize;
    /// Checks the parameters; called before anything is written.
    fn validate(&self) -> Result<(), BuildError> {
        Ok(())
    }
    /// Writes the registers after the 2-byte header (values and write masks).
    fn install(&self, regs: &mut CapRegs<'_>);
}

/// An extended capability (in 0x100..0x1000).
pub trait ExtCapability {
    /// Extended capability ID (`regs::ext_cap_id`).
    fn id(&self) -> u16;
    /// Capability version (bits 19:16 of the header).
    fn version(&self) -> u8;
    /// Size in bytes, header included.
    fn size(&self) -> usize;
    /// Checks the parameters; called before anything is written.
    fn validate(&self) -> Result<(), BuildError> {
        Ok(())
    }
    /// Writes the registers after the 4-byte header (values and write masks).
    fn install(&self, regs: &mut CapRegs<'_>);
}

/// Register writer for one capability being installed. Offsets are relative to
/// the capability start; bytes outside the capability are silently ignored.
pub struct CapRegs<'a> {
    space: &'a mut ConfigSpace,
    base: usize,
    size: usize,
}

impl CapRegs<'_> {
    /// Defines a register of `width` bytes at `rel`: its hardware-initialised
    /// `value`, its read-write bits `rw` and its write-1-to-clear bits `w1c`. All
    /// other bits are read-only.
    pub fn reg(&mut self, rel: usize, width: usize, value: u32, rw: u32, w1c: u32) {
        if rel.saturating_add(width) > self.size {
            debug!(rel, width, "register outside its capability ignored");
            return;
        }
        self.space
            .define_register(self.base + rel, width, value, rw, w1c);
    }

    /// A read-only 16-bit register.
    pub fn ro16(&mut self, rel: usize, value: u16) {
        self.reg(rel, 2, value.into(), 0, 0);
    }

    /// A read-only 32-bit register.
    pub fn ro32(&mut self, rel: usize, value: u32) {
        self.reg(rel, 4, value, 0, 0);
    }

    /// A 16-bit register with read-write bits `rw`.
    pub fn rw16(&mut self, rel: usize, value: u16, rw: u16) {
        self.reg(rel, 2, value.into(), rw.into(), 0);
    }

    /// A 32-bit register with read-write bits `rw`.
    pub fn rw32(&mut self, rel: usize, value: u32, rw: u32) {
        self.reg(rel, 4, value, rw, 0);
    }

    /// The capability's absolute offset.
    pub fn base(&self) -> usize {
        self.base
    }
}

impl ConfigSpace {
    /// A type 0 header with no BARs and no capabilities. Command is writable in its
    /// IO, Memory, Bus Master, Parity, SERR and INTx Disable bits; Status error bits
    /// are write-1-to-clear; Cache Line Size and Interrupt Line are read-write.
    pub fn new(id: &Header) -> Self {
        let mut space = ConfigSpace {
            data: Box::new([0; CONFIG_SPACE_SIZE]),
            initial: Box::new([0; CONFIG_SPACE_SIZE]),
            rw: Box::new([0; CONFIG_SPACE_SIZE]),
            w1c: Box::new([0; CONFIG_SPACE_SIZE]),
            bars: [None; header::BAR_COUNT],
            rom_size: None,
            caps: Vec::new(),
            ext_caps: Vec::new(),
            special: Special::default(),
            refused_writes: 0,
        };
        space.define_register(header::VENDOR_ID, 2, id.vendor_id.into(), 0, 0);
        space.define_register(header::DEVICE_ID, 2, id.device_id.into(), 0, 0);
        space.define_register(header::COMMAND, 2, 0, PF_COMMAND_WRITABLE.into(), 0);
        space.define_register(header::STATUS, 2, 0, 0, status::W1C_BITS.into());
        space.define_register(header::REVISION_ID, 1, id.revision_id.into(), 0, 0);
        space.define_register(header::CLASS_CODE, 3, id.class_code & 0x00FF_FFFF, 0, 0);
        space.define_register(
            header::CACHE_LINE_SIZE,
            1,
            id.cache_line_size.into(),
            0xFF,
            0,
        );
        let header_type = if id.multi_function {
            header::HEADER_TYPE_MULTI_FUNCTION
        } else {
            0
        };
        space.define_register(header::HEADER_TYPE, 1, header_type.into(), 0, 0);
        space.define_register(
            header::SUBSYSTEM_VENDOR_ID,
            2,
            id.subsystem_vendor_id.into(),
            0,
            0,
        );
        space.define_register(header::SUBSYSTEM_ID, 2, id.subsystem_id.into(), 0, 0);
        space.define_register(header::INTERRUPT_LINE, 1, 0, 0xFF, 0);
        space.define_register(header::INTERRUPT_PIN, 1, id.interrupt_pin.into(), 0, 0);
        space
    }

    /// The config space of one VF of a PF with SR-IOV state `pf`, as a VMM presents
    /// it to a guest: vendor, revision, class and subsystem ids from `identity`,
    /// device id = the PF's VF Device ID, header type 0, Interrupt Pin 0, the VF
    /// BARs of the PF's SR-IOV capability as the VF's own BARs (same kinds and
    /// per-VF sizes, so they size like real BARs), and a Command register with only
    /// Memory Space and Bus Master writable. No capabilities yet: add MSI-X, PCIe
    /// (with FLR), AER, ARI with [`add_capability`](Self::add_capability).
    pub fn new_vf(identity: &Header, pf: &crate::SriovState) -> Result<Self, BuildError> {
        let mut space = ConfigSpace::new(&Header {
            device_id: pf.vf_device_id,
            multi_function: false,
            interrupt_pin: 0,
            ..*identity
        });
        space.define_register(header::COMMAND, 2, 0, VF_COMMAND_WRITABLE.into(), 0);
        for (index, bar) in pf.vf_bars.iter().enumerate() {
            if let Some(vf_bar) = bar {
                space.set_bar(index, vf_bar.bar)?;
            }
        }
        Ok(space)
    }

    /// [`new_vf`](Self::new_vf) with the identity taken from this PF's header.
    pub fn vf_config_space(&self) -> Result<Self, BuildError> {
        let pf = self.sriov().ok_or(BuildError::NoSriov)?;
        Self::new_vf(&self.header(), &pf)
    }

    /// The identity fields of the header as they read now.
    pub fn header(&self) -> Header {
        Header {
            vendor_id: self.read_u16(header::VENDOR_ID),
            device_id: self.read_u16(header::DEVICE_ID),
            revision_id: self.read_u8(header::REVISION_ID),
            class_code: self.read_u32(header::REVISION_ID) >> 8,
            subsystem_vendor_id: self.read_u16(header::SUBSYSTEM_VENDOR_ID),
            subsystem_id: self.read_u16(header::SUBSYSTEM_ID),
            multi_function: self.read_u8(header::HEADER_TYPE) & header::HEADER_TYPE_MULTI_FUNCTION
                != 0,
            interrupt_pin: self.read_u8(header::INTERRUPT_PIN),
            cache_line_size: self.initial[header::CACHE_LINE_SIZE],
        }
    }

    /// Installs a register: value (also the reset value) and masks. Out-of-range
    /// bytes are ignored.
    fn define_register(&mut self, offset: usize, width: usize, value: u32, rw: u32, w1c: u32) {
        let (value, rw, w1c) = (le_bytes(value), le_bytes(rw), le_bytes(w1c));
        for i in 0..width.min(4) {
            let Some(o) = offset.checked_add(i).filter(|&o| o < CONFIG_SPACE_SIZE) else {
                return;
            };
            self.data[o] = value[i];
            self.initial[o] = value[i];
            self.w1c[o] = w1c[i];
            // A bit is never both read-write and write-1-to-clear.
            self.rw[o] = rw[i] & !w1c[i];
        }
    }

    /// Places `bar` at BAR register `index` (a 64-bit BAR also takes `index + 1`).
    pub fn set_bar(&mut self, index: usize, bar: Bar) -> Result<(), BuildError> {
        bar.validate(index)?;
        let taken = |i: usize| {
            self.bars.get(i).is_some_and(Option::is_some)
                || i.checked_sub(1)
                    .and_then(|prev| self.bars[prev])
                    .is_some_and(|b| b.registers() == 2)
        };
        if (index..index + bar.registers()).any(taken) {
            return Err(BuildError::InvalidBar {
                index,
                reason: "register already used by another BAR",
            });
        }
        self.bars[index] = Some(bar);
        let (low, high) = bar.write_masks();
        let reg = header::BAR0 + 4 * index;
        self.define_register(reg, 4, bar.type_bits(), low, 0);
        if bar.registers() == 2 {
            self.define_register(reg + 4, 4, 0, high, 0);
        }
        Ok(())
    }

    /// Declares an expansion ROM of `size` bytes. Without one the ROM BAR has no
    /// writable bits, so it reads 0 after sizing and QEMU concludes there is no ROM.
    pub fn set_rom(&mut self, size: u64) -> Result<(), BuildError> {
        if !size.is_power_of_two() || !(2048..=1 << 31).contains(&size) {
            return Err(BuildError::InvalidRom { size });
        }
        self.rom_size = Some(size);
        let mask = (!(size - 1) as u32 & header::ROM_ADDRESS_MASK) | header::ROM_ENABLE;
        self.define_register(header::ROM_ADDRESS, 4, 0, mask, 0);
        Ok(())
    }

    fn check_area(
        &self,
        offset: usize,
        size: usize,
        area: Range<usize>,
        placed: impl Iterator<Item = Range<usize>>,
    ) -> Result<(), BuildError> {
        if !offset.is_multiple_of(4) {
            return Err(BuildError::Misaligned { offset });
        }
        if offset < area.start || offset.saturating_add(size) > area.end || size == 0 {
            return Err(BuildError::Overflow {
                offset,
                size,
                start: area.start,
                end: area.end,
            });
        }
        for other in placed {
            if offset < other.end && other.start < offset + size {
                return Err(BuildError::Overlap {
                    offset,
                    size,
                    other: other.start,
                });
            }
        }
        Ok(())
    }

    /// Appends a standard capability at `offset` (dword aligned, inside
    /// 0x40..0x100) to the capability list. The list follows the order of the
    /// calls; the Capabilities List status bit and pointer are set by the first.
    pub fn add_capability(
        &mut self,
        offset: u8,
        capability: &dyn Capability,
    ) -> Result<(), BuildError> {
        let offset = usize::from(offset);
        let size = capability.size();
        let id = capability.id();
        self.check_area(
            offset,
            size,
            CAP_AREA_START..LEGACY_CONFIG_SIZE,
            self.caps.iter().map(|(_, r)| r.clone()),
        )?;
        capability.validate()?;
        let slot = match id {
            cap_id::POWER_MANAGEMENT => Some(("Power Management", self.special.pm)),
            cap_id::MSI => Some(("MSI", self.special.msi)),
            cap_id::MSIX => Some(("MSI-X", self.special.msix)),
            cap_id::PCI_EXPRESS => Some(("PCI Express", self.special.exp)),
            _ => None,
        };
        if let Some((name, Some(existing))) = slot {
            return Err(BuildError::Duplicate {
                name,
                offset: existing,
            });
        }
        let previous_next = match self.caps.last() {
            Some((_, prev)) => prev.start + cap::NEXT,
            None => header::CAPABILITIES_POINTER,
        };
        self.define_register(previous_next, 1, offset as u32, 0, 0);
        if self.caps.is_empty() {
            let st = self.read_u16(header::STATUS) | status::CAPABILITIES_LIST;
            self.define_register(header::STATUS, 2, st.into(), 0, status::W1C_BITS.into());
        }
        self.define_register(offset + cap::ID, 1, id.into(), 0, 0);
        self.define_register(offset + cap::NEXT, 1, 0, 0, 0);
        self.caps.push((id, offset..offset + size));
        capability.install(&mut CapRegs {
            space: self,
            base: offset,
            size,
        });
        match id {
            cap_id::POWER_MANAGEMENT => self.special.pm = Some(offset),
            cap_id::MSI => self.special.msi = Some(offset),
            cap_id::MSIX => self.special.msix = Some(offset),
            cap_id::PCI_EXPRESS => self.special.exp = Some(offset),
            _ => {}
        }
        Ok(())
    }

    /// Appends an extended capability at `offset` (dword aligned, inside
    /// 0x100..0x1000; the first one must be at 0x100) to the extended chain.
    pub fn add_ext_capability(
        &mut self,
        offset: u16,
        capability: &dyn ExtCapability,
    ) -> Result<(), BuildError> {
        let offset = usize::from(offset);
        let size = capability.size();
        let id = capability.id();
        self.check_area(
            offset,
            size,
            EXT_CAP_START..CONFIG_SPACE_SIZE,
            self.ext_caps.iter().map(|(_, r)| r.clone()),
        )?;
        if self.ext_caps.is_empty() && offset != EXT_CAP_START {
            return Err(BuildError::FirstExtendedNotAtStart { offset });
        }
        capability.validate()?;
        if let (ext_cap_id::SRIOV, Some(existing)) = (id, self.special.sriov) {
            return Err(BuildError::Duplicate {
                name: "SR-IOV",
                offset: existing,
            });
        }
        if let Some((_, prev)) = self.ext_caps.last() {
            let link = self.read_u32(prev.start) | ((offset as u32) << ext_cap::NEXT_SHIFT);
            self.define_register(prev.start, 4, link, 0, 0);
        }
        let head =
            u32::from(id) | (u32::from(capability.version() & 0xF) << ext_cap::VERSION_SHIFT);
        self.define_register(offset + ext_cap::HEADER, 4, head, 0, 0);
        self.ext_caps.push((id, offset..offset + size));
        capability.install(&mut CapRegs {
            space: self,
            base: offset,
            size,
        });
        if id == ext_cap_id::SRIOV {
            self.special.sriov = Some(offset);
        }
        Ok(())
    }
}
