//! Builders for the standard capabilities (PM, MSI, MSI-X, PCI Express) and the
//! extended ones (AER, ARI). SR-IOV lives in [`crate::sriov`].

use crate::config::{CapRegs, Capability, ExtCapability};
use crate::error::BuildError;
use crate::regs::{aer, ari, cap_id, exp, ext_cap_id, msi, msix, pm};

/// Power Management capability (PCI PM 1.2), 8 bytes.
///
/// PMCSR PowerState is read-write (unsupported D1/D2 writes are ignored); PME
/// Enable is read-write and PME Status write-1-to-clear when any `pme_support` bit
/// is set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PowerManagement {
    pub d1: bool,
    pub d2: bool,
    /// PMC PME_Support bits (`regs::pm::PMC_PME_*`).
    pub pme_support: u16,
    /// PMCSR No_Soft_Reset: D3hot to D0 keeps the function's state.
    pub no_soft_reset: bool,
}

impl Capability for PowerManagement {
    fn id(&self) -> u8 {
        cap_id::POWER_MANAGEMENT
    }

    fn size(&self) -> usize {
        pm::SIZE
    }

    fn install(&self, regs: &mut CapRegs<'_>) {
        let mut pmc = pm::PMC_VERSION_1_2 | (self.pme_support & pm::PMC_PME_MASK);
        if self.d1 {
            pmc |= pm::PMC_D1_SUPPORT;
        }
        if self.d2 {
            pmc |= pm::PMC_D2_SUPPORT;
        }
        regs.ro16(pm::PMC, pmc);
        let csr = if self.no_soft_reset {
            pm::PMCSR_NO_SOFT_RESET
        } else {
            0
        };
        let (pme_rw, pme_w1c) = if self.pme_support & pm::PMC_PME_MASK != 0 {
            (pm::PMCSR_PME_ENABLE, pm::PMCSR_PME_STATUS)
        } else {
            (0, 0)
        };
        regs.reg(
            pm::PMCSR,
            2,
            csr.into(),
            (pm::PMCSR_STATE_MASK | pme_rw).into(),
            pme_w1c.into(),
        );
    }
}

/// MSI capability: `vectors` (1, 2, 4, ..., 32), optionally 64-bit addressing and
/// per-vector masking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Msi {
    pub vectors: u8,
    pub address_64: bool,
    pub per_vector_mask: bool,
}

impl Msi {
    fn data_offset(&self) -> usize {
        if self.address_64 {
            msi::DATA_64
        } else {
            msi::DATA_32
        }
    }
}

impl Capability for Msi {
    fn id(&self) -> u8 {
        cap_id::MSI
    }

    fn size(&self) -> usize {
        match (self.address_64, self.per_vector_mask) {
            (false, false) => 0x0C,
            (true, false) => 0x10,
            (false, true) => 0x14,
            (true, true) => 0x18,
        }
    }

    fn validate(&self) -> Result<(), BuildError> {
        if !self.vectors.is_power_of_two() || self.vectors > 32 {
            return Err(BuildError::InvalidCapability {
                name: "MSI",
                reason: "vectors must be 1, 2, 4, 8, 16 or 32",
            });
        }
        Ok(())
    }

    fn install(&self, regs: &mut CapRegs<'_>) {
        let log2 = self.vectors.max(1).trailing_zeros() as u16;
        let mut control = (log2 << msi::CONTROL_MMC_SHIFT) & msi::CONTROL_MMC_MASK;
        if self.address_64 {
            control |= msi::CONTROL_64BIT;
        }
        if self.per_vector_mask {
            control |= msi::CONTROL_PER_VECTOR_MASK;
        }
        regs.rw16(
            msi::CONTROL,
            control,
            msi::CONTROL_ENABLE | msi::CONTROL_MME_MASK,
        );
        // Message Address is dword aligned: bits 1:0 are read-only zero.
        regs.rw32(msi::ADDRESS_LO, 0, !0x3);
        if self.address_64 {
            regs.rw32(msi::ADDRESS_HI, 0, u32::MAX);
        }
        regs.rw16(self.data_offset(), 0, u16::MAX);
        if self.per_vector_mask {
            let (mask, pending) = if self.address_64 {
                (msi::MASK_64, msi::PENDING_64)
            } else {
                (msi::MASK_32, msi::PENDING_32)
            };
            let implemented = u32::MAX >> (32 - u32::from(self.vectors.clamp(1, 32)));
            regs.rw32(mask, 0, implemented);
            regs.ro32(pending, 0);
        }
    }
}

/// Where an MSI-X structure lives: BAR Indicator and byte offset in that BAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsixRegion {
    pub bir: u8,
    pub offset: u32,
}

impl MsixRegion {
    pub const fn new(bir: u8, offset: u32) -> Self {
        MsixRegion { bir, offset }
    }

    fn register(&self) -> u32 {
        (self.offset & !msix::BIR_MASK) | (u32::from(self.bir) & msix::BIR_MASK)
    }
}

/// MSI-X capability, 12 bytes: `vectors` table entries (Table Size = vectors - 1),
/// the table and PBA locations. Enable and Function Mask are read-write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Msix {
    pub vectors: u16,
    pub table: MsixRegion,
    pub pba: MsixRegion,
}

impl Msix {
    pub const fn new(vectors: u16, table: MsixRegion, pba: MsixRegion) -> Self {
        Msix {
            vectors,
            table,
            pba,
        }
    }

    /// Size of the MSI-X table in bytes.
    pub const fn table_size(&self) -> usize {
        self.vectors as usize * msix::ENTRY_SIZE
    }
}

impl Capability for Msix {
    fn id(&self) -> u8 {
        cap_id::MSIX
    }

    fn size(&self) -> usize {
        msix::SIZE
    }

    fn validate(&self) -> Result<(), BuildError> {
        let fail = |reason| {
            Err(BuildError::InvalidCapability {
                name: "MSI-X",
                reason,
            })
        };
        if !(1..=msix::MAX_VECTORS).contains(&self.vectors) {
            return fail("vectors must be 1..=2048");
        }
        if self.table.bir > 5 || self.pba.bir > 5 {
            return fail("BIR must name BAR 0..=5");
        }
        if !self.table.offset.is_multiple_of(8) || !self.pba.offset.is_multiple_of(8) {
            return fail("table and PBA offsets must be qword aligned");
        }
        Ok(())
    }

    fn install(&self, regs: &mut CapRegs<'_>) {
        let table_size = self.vectors.saturating_sub(1) & msix::CONTROL_TABLE_SIZE_MASK;
        regs.rw16(
            msix::CONTROL,
            table_size,
            msix::CONTROL_ENABLE | msix::CONTROL_FUNCTION_MASK,
        );
        regs.ro32(msix::TABLE, self.table.register());
        regs.ro32(msix::PBA, self.pba.register());
    }
}

/// PCI Express Device/Port Type values an endpoint function may report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceType {
    Endpoint = 0x0,
    LegacyEndpoint = 0x1,
    RootComplexIntegratedEndpoint = 0x9,
}

/// Link speeds (Link Capabilities Max Link Speed encoding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkSpeed {
    Gt2_5 = 1,
    Gt5 = 2,
    Gt8 = 3,
}

/// PCI Express capability, version 2 layout (0x3C bytes), for an endpoint.
///
/// Device Control is writable in its error-reporting, payload, read-request,
/// extended-tag and no-snoop bits; Initiate FLR always reads 0 and, when `flr` is
/// set, a write of 1 produces [`crate::ConfigEvent::Flr`]. Device Status error bits
/// are write-1-to-clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciExpress {
    pub device_type: DeviceType,
    /// Max_Payload_Size Supported encoding (0 = 128 bytes, 1 = 256, 2 = 512 ...).
    pub max_payload_supported: u8,
    pub flr: bool,
    pub link_speed: LinkSpeed,
    pub link_width: u8,
    /// Completion Timeout Ranges Supported (Device Capabilities 2 bits 3:0); 0
    /// makes the Completion Timeout Value read-only.
    pub completion_timeout_ranges: u8,
    pub completion_timeout_disable: bool,
}

impl PciExpress {
    /// An endpoint at 2.5 GT/s x1, 128-byte payloads, no FLR.
    pub const fn endpoint() -> Self {
        PciExpress {
            device_type: DeviceType::Endpoint,
            max_payload_supported: 0,
            flr: false,
            link_speed: LinkSpeed::Gt2_5,
            link_width: 1,
            completion_timeout_ranges: 0,
            completion_timeout_disable: false,
        }
    }

    /// The same, Function Level Reset capable.
    pub const fn with_flr(self) -> Self {
        PciExpress { flr: true, ..self }
    }

    /// The same, with this negotiated (and maximum) link.
    pub const fn with_link(self, speed: LinkSpeed, width: u8) -> Self {
        PciExpress {
            link_speed: speed,
            link_width: width,
            ..self
        }
    }

    /// The same, with programmable completion timeouts.
    pub const fn with_completion_timeout(self, ranges: u8, disable: bool) -> Self {
        PciExpress {
            completion_timeout_ranges: ranges,
            completion_timeout_disable: disable,
            ..self
        }
    }
}

impl Capability for PciExpress {
    fn id(&self) -> u8 {
        cap_id::PCI_EXPRESS
    }

    fn size(&self) -> usize {
        exp::SIZE
    }

    fn validate(&self) -> Result<(), BuildError> {
        let fail = |reason| {
            Err(BuildError::InvalidCapability {
                name: "PCI Express",
                reason,
            })
        };
        if self.max_payload_supported > 5 {
            return fail("Max_Payload_Size Supported must be 0..=5 (128..4096 bytes)");
        }
        if !matches!(self.link_width, 1 | 2 | 4 | 8 | 12 | 16 | 32) {
            return fail("link width must be 1, 2, 4, 8, 12, 16 or 32");
        }
        if self.completion_timeout_ranges > 0xF {
            return fail("completion timeout ranges is a 4-bit field");
        }
        Ok(())
    }

    fn install(&self, regs: &mut CapRegs<'_>) {
        regs.ro16(
            exp::FLAGS,
            exp::FLAGS_VERSION_2 | ((self.device_type as u16) << exp::FLAGS_TYPE_SHIFT),
        );
        let mut devcap = u32::from(self.max_payload_supported) & exp::DEVCAP_MPS_MASK;
        devcap |= exp::DEVCAP_EXT_TAG | exp::DEVCAP_RBER;
        if self.flr {
            devcap |= exp::DEVCAP_FLR;
        }
        regs.ro32(exp::DEVCAP, devcap);
        let devctl_rw = exp::DEVCTL_CERE
            | exp::DEVCTL_NFERE
            | exp::DEVCTL_FERE
            | exp::DEVCTL_URRE
            | exp::DEVCTL_RELAXED_ORDERING
            | exp::DEVCTL_MPS_MASK
            | exp::DEVCTL_EXT_TAG
            | exp::DEVCTL_NO_SNOOP
            | exp::DEVCTL_MRRS_MASK;
        // PCIe Base §7.5.3.4 reset values: Relaxed Ordering and No Snoop enabled,
        // Max_Read_Request_Size 512 bytes.
        let devctl = exp::DEVCTL_RELAXED_ORDERING | exp::DEVCTL_NO_SNOOP | exp::DEVCTL_MRRS_512;
        regs.rw16(exp::DEVCTL, devctl, devctl_rw);
        regs.reg(exp::DEVSTA, 2, 0, 0, exp::DEVSTA_W1C.into());
        if self.device_type != DeviceType::RootComplexIntegratedEndpoint {
            let speed = self.link_speed as u32;
            let width = u32::from(self.link_width);
            regs.ro32(exp::LNKCAP, speed | (width << exp::LNKCAP_WIDTH_SHIFT));
            regs.rw16(exp::LNKCTL, 0, exp::LNKCTL_ENDPOINT_WRITABLE);
            regs.ro16(
                exp::LNKSTA,
                (speed as u16) | (u16::from(self.link_width) << exp::LNKSTA_WIDTH_SHIFT),
            );
            // Supported Link Speeds Vector: every speed up to the maximum.
            let speeds = (1u32 << speed) - 1;
            regs.ro32(exp::LNKCAP2, speeds << exp::LNKCAP2_SPEEDS_SHIFT);
            regs.rw16(exp::LNKCTL2, speed as u16, exp::LNKCTL2_TARGET_SPEED_MASK);
        }
        let mut devcap2 = u32::from(self.completion_timeout_ranges);
        let mut devctl2_rw = 0;
        if self.completion_timeout_ranges != 0 {
            devctl2_rw |= exp::DEVCTL2_COMP_TIMEOUT_VALUE_MASK;
        }
        if self.completion_timeout_disable {
            devcap2 |= exp::DEVCAP2_COMP_TIMEOUT_DISABLE;
            devctl2_rw |= exp::DEVCTL2_COMP_TIMEOUT_DISABLE;
        }
        regs.ro32(exp::DEVCAP2, devcap2);
        regs.rw16(exp::DEVCTL2, 0, devctl2_rw);
    }
}

/// Advanced Error Reporting (version 1, 0x48 bytes as QEMU lays it out). Error
/// status registers are write-1-to-clear, mask and severity registers read-write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Aer {
    pub ecrc_generation: bool,
    pub ecrc_check: bool,
}

impl Aer {
    pub const fn new() -> Self {
        Aer {
            ecrc_generation: false,
            ecrc_check: false,
        }
    }
}

impl ExtCapability for Aer {
    fn id(&self) -> u16 {
        ext_cap_id::AER
    }

    fn version(&self) -> u8 {
        aer::VERSION
    }

    fn size(&self) -> usize {
        aer::SIZE
    }

    fn install(&self, regs: &mut CapRegs<'_>) {
        regs.reg(aer::UNCOR_STATUS, 4, 0, 0, aer::UNCOR_IMPLEMENTED);
        regs.rw32(aer::UNCOR_MASK, 0, aer::UNCOR_IMPLEMENTED);
        regs.rw32(
            aer::UNCOR_SEVERITY,
            aer::UNCOR_SEVERITY_DEFAULT,
            aer::UNCOR_IMPLEMENTED,
        );
        regs.reg(aer::COR_STATUS, 4, 0, 0, aer::COR_IMPLEMENTED);
        regs.rw32(aer::COR_MASK, aer::COR_MASK_DEFAULT, aer::COR_IMPLEMENTED);
        let (mut cap, mut rw) = (0, 0);
        if self.ecrc_generation {
            cap |= aer::CAP_ECRC_GEN_CAPABLE;
            rw |= aer::CAP_ECRC_GEN_ENABLE;
        }
        if self.ecrc_check {
            cap |= aer::CAP_ECRC_CHECK_CAPABLE;
            rw |= aer::CAP_ECRC_CHECK_ENABLE;
        }
        regs.rw32(aer::CAP_CONTROL, cap, rw);
    }
}

/// Alternative Routing-ID Interpretation (version 1, 8 bytes), read-only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ari {
    /// Next Function Number: the next function of this device, 0 for the last.
    pub next_function: u8,
}

impl Ari {
    pub const fn new(next_function: u8) -> Self {
        Ari { next_function }
    }
}

impl ExtCapability for Ari {
    fn id(&self) -> u16 {
        ext_cap_id::ARI
    }

    fn version(&self) -> u8 {
        ari::VERSION
    }

    fn size(&self) -> usize {
        ari::SIZE
    }

    fn install(&self, regs: &mut CapRegs<'_>) {
        regs.ro16(
            ari::CAP,
            u16::from(self.next_function) << ari::CAP_NEXT_FUNCTION_SHIFT,
        );
        regs.ro16(ari::CONTROL, 0);
    }
}
