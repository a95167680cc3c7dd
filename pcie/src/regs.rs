//! Named register offsets and bits (PCI Local Bus 3.0, PCI Express Base 3.0/4.0,
//! SR-IOV 1.1). Offsets inside a capability are relative to the capability's start.

/// Size of a PCI Express function's configuration space.
pub const CONFIG_SPACE_SIZE: usize = 4096;
/// Size of the conventional (PCI-compatible) part of configuration space.
pub const LEGACY_CONFIG_SIZE: usize = 256;
/// First offset after the type 0 header, where standard capabilities may live.
pub const CAP_AREA_START: usize = 0x40;
/// Where the extended capability chain starts (PCIe Base §7.6.3).
pub const EXT_CAP_START: usize = 0x100;

/// Type 0 header register offsets.
pub mod header {
    pub const VENDOR_ID: usize = 0x00;
    pub const DEVICE_ID: usize = 0x02;
    pub const COMMAND: usize = 0x04;
    pub const STATUS: usize = 0x06;
    pub const REVISION_ID: usize = 0x08;
    /// Programming interface, sub-class, base class (3 bytes, little-endian).
    pub const CLASS_CODE: usize = 0x09;
    pub const CACHE_LINE_SIZE: usize = 0x0C;
    pub const LATENCY_TIMER: usize = 0x0D;
    pub const HEADER_TYPE: usize = 0x0E;
    pub const BIST: usize = 0x0F;
    /// BAR n is at `BAR0 + 4 * n`, n in 0..6.
    pub const BAR0: usize = 0x10;
    pub const BAR_COUNT: usize = 6;
    pub const SUBSYSTEM_VENDOR_ID: usize = 0x2C;
    pub const SUBSYSTEM_ID: usize = 0x2E;
    pub const ROM_ADDRESS: usize = 0x30;
    pub const CAPABILITIES_POINTER: usize = 0x34;
    pub const INTERRUPT_LINE: usize = 0x3C;
    pub const INTERRUPT_PIN: usize = 0x3D;

    /// Header Type bit 7: the device has more than one function.
    pub const HEADER_TYPE_MULTI_FUNCTION: u8 = 0x80;
    /// Expansion ROM Base Address bit 0.
    pub const ROM_ENABLE: u32 = 0x1;
    /// Expansion ROM address bits are 31:11.
    pub const ROM_ADDRESS_MASK: u32 = 0xFFFF_F800;
}

/// Command register bits.
pub mod command {
    pub const IO_SPACE: u16 = 1 << 0;
    pub const MEMORY_SPACE: u16 = 1 << 1;
    pub const BUS_MASTER: u16 = 1 << 2;
    pub const PARITY_ERROR_RESPONSE: u16 = 1 << 6;
    pub const SERR_ENABLE: u16 = 1 << 8;
    pub const INTX_DISABLE: u16 = 1 << 10;
}

/// Status register bits.
pub mod status {
    pub const INTERRUPT: u16 = 1 << 3;
    pub const CAPABILITIES_LIST: u16 = 1 << 4;
    pub const MASTER_DATA_PARITY_ERROR: u16 = 1 << 8;
    pub const SIGNALED_TARGET_ABORT: u16 = 1 << 11;
    pub const RECEIVED_TARGET_ABORT: u16 = 1 << 12;
    pub const RECEIVED_MASTER_ABORT: u16 = 1 << 13;
    pub const SIGNALED_SYSTEM_ERROR: u16 = 1 << 14;
    pub const DETECTED_PARITY_ERROR: u16 = 1 << 15;
    /// All write-1-to-clear error bits of the Status register.
    pub const W1C_BITS: u16 = MASTER_DATA_PARITY_ERROR
        | SIGNALED_TARGET_ABORT
        | RECEIVED_TARGET_ABORT
        | RECEIVED_MASTER_ABORT
        | SIGNALED_SYSTEM_ERROR
        | DETECTED_PARITY_ERROR;
}

/// BAR register low bits.
pub mod bar {
    /// Bit 0: the BAR decodes I/O space.
    pub const IO_SPACE: u32 = 0x1;
    /// Bits 2:1 of a memory BAR = 10b: 64-bit BAR (uses the next register too).
    pub const MEM_TYPE_64: u32 = 0x4;
    pub const MEM_TYPE_MASK: u32 = 0x6;
    pub const MEM_PREFETCHABLE: u32 = 0x8;
    /// Address bits of a memory BAR's low dword.
    pub const MEM_ADDRESS_MASK: u32 = !0xF;
    /// Address bits of an I/O BAR.
    pub const IO_ADDRESS_MASK: u32 = !0x3;
}

/// Standard capability ids.
pub mod cap_id {
    pub const POWER_MANAGEMENT: u8 = 0x01;
    pub const MSI: u8 = 0x05;
    pub const PCI_EXPRESS: u8 = 0x10;
    pub const MSIX: u8 = 0x11;
}

/// Extended capability ids.
pub mod ext_cap_id {
    pub const AER: u16 = 0x0001;
    pub const ARI: u16 = 0x000E;
    pub const SRIOV: u16 = 0x0010;
}

/// Standard capability header: id at +0, next pointer at +1.
pub mod cap {
    pub const ID: usize = 0;
    pub const NEXT: usize = 1;
}

/// Extended capability header (one dword): id 15:0, version 19:16, next 31:20.
pub mod ext_cap {
    pub const HEADER: usize = 0;
    pub const VERSION_SHIFT: u32 = 16;
    pub const NEXT_SHIFT: u32 = 20;
}

/// Power Management capability (PCI PM 1.2).
pub mod pm {
    pub const PMC: usize = 0x02;
    pub const PMCSR: usize = 0x04;
    pub const SIZE: usize = 8;

    /// PMC bits 2:0 = 011b: PCI PM 1.2.
    pub const PMC_VERSION_1_2: u16 = 0x3;
    pub const PMC_D1_SUPPORT: u16 = 1 << 9;
    pub const PMC_D2_SUPPORT: u16 = 1 << 10;
    pub const PMC_PME_D0: u16 = 1 << 11;
    pub const PMC_PME_D1: u16 = 1 << 12;
    pub const PMC_PME_D2: u16 = 1 << 13;
    pub const PMC_PME_D3HOT: u16 = 1 << 14;
    pub const PMC_PME_D3COLD: u16 = 1 << 15;
    pub const PMC_PME_MASK: u16 = 0xF800;

    pub const PMCSR_STATE_MASK: u16 = 0x3;
    pub const PMCSR_NO_SOFT_RESET: u16 = 1 << 3;
    pub const PMCSR_PME_ENABLE: u16 = 1 << 8;
    pub const PMCSR_PME_STATUS: u16 = 1 << 15;
}

/// MSI capability. Register positions depend on 64-bit addressing.
pub mod msi {
    pub const CONTROL: usize = 0x02;
    pub const ADDRESS_LO: usize = 0x04;
    pub const ADDRESS_HI: usize = 0x08;
    /// Message Data with 32-bit addressing.
    pub const DATA_32: usize = 0x08;
    pub const DATA_64: usize = 0x0C;
    pub const MASK_32: usize = 0x0C;
    pub const MASK_64: usize = 0x10;
    pub const PENDING_32: usize = 0x10;
    pub const PENDING_64: usize = 0x14;

    pub const CONTROL_ENABLE: u16 = 1 << 0;
    pub const CONTROL_MMC_SHIFT: u16 = 1;
    pub const CONTROL_MMC_MASK: u16 = 0x7 << 1;
    pub const CONTROL_MME_SHIFT: u16 = 4;
    pub const CONTROL_MME_MASK: u16 = 0x7 << 4;
    pub const CONTROL_64BIT: u16 = 1 << 7;
    pub const CONTROL_PER_VECTOR_MASK: u16 = 1 << 8;
}

/// MSI-X capability.
pub mod msix {
    pub const CONTROL: usize = 0x02;
    pub const TABLE: usize = 0x04;
    pub const PBA: usize = 0x08;
    pub const SIZE: usize = 12;

    /// Table Size field: number of vectors minus one.
    pub const CONTROL_TABLE_SIZE_MASK: u16 = 0x07FF;
    pub const CONTROL_FUNCTION_MASK: u16 = 1 << 14;
    pub const CONTROL_ENABLE: u16 = 1 << 15;
    /// BAR Indicator Register bits of the Table / PBA registers.
    pub const BIR_MASK: u32 = 0x7;
    /// Size of one MSI-X table entry.
    pub const ENTRY_SIZE: usize = 16;
    pub const MAX_VECTORS: u16 = 2048;
}

/// PCI Express capability (version 2 layout, 0x3C bytes).
pub mod exp {
    pub const FLAGS: usize = 0x02;
    pub const DEVCAP: usize = 0x04;
    pub const DEVCTL: usize = 0x08;
    pub const DEVSTA: usize = 0x0A;
    pub const LNKCAP: usize = 0x0C;
    pub const LNKCTL: usize = 0x10;
    pub const LNKSTA: usize = 0x12;
    pub const DEVCAP2: usize = 0x24;
    pub const DEVCTL2: usize = 0x28;
    pub const LNKCAP2: usize = 0x2C;
    pub const LNKCTL2: usize = 0x30;
    pub const SIZE: usize = 0x3C;

    pub const FLAGS_VERSION_2: u16 = 0x2;
    pub const FLAGS_TYPE_SHIFT: u16 = 4;

    pub const DEVCAP_MPS_MASK: u32 = 0x7;
    pub const DEVCAP_EXT_TAG: u32 = 1 << 5;
    pub const DEVCAP_RBER: u32 = 1 << 15;
    pub const DEVCAP_FLR: u32 = 1 << 28;

    pub const DEVCTL_CERE: u16 = 1 << 0;
    pub const DEVCTL_NFERE: u16 = 1 << 1;
    pub const DEVCTL_FERE: u16 = 1 << 2;
    pub const DEVCTL_URRE: u16 = 1 << 3;
    pub const DEVCTL_RELAXED_ORDERING: u16 = 1 << 4;
    pub const DEVCTL_MPS_MASK: u16 = 0x7 << 5;
    pub const DEVCTL_EXT_TAG: u16 = 1 << 8;
    pub const DEVCTL_NO_SNOOP: u16 = 1 << 11;
    pub const DEVCTL_MRRS_MASK: u16 = 0x7 << 12;
    /// MRRS field value 010b: 512 bytes, the reset default.
    pub const DEVCTL_MRRS_512: u16 = 0x2 << 12;
    /// Initiate Function Level Reset: always reads 0.
    pub const DEVCTL_BCR_FLR: u16 = 1 << 15;

    pub const DEVSTA_CED: u16 = 1 << 0;
    pub const DEVSTA_NFED: u16 = 1 << 1;
    pub const DEVSTA_FED: u16 = 1 << 2;
    pub const DEVSTA_URD: u16 = 1 << 3;
    pub const DEVSTA_W1C: u16 = DEVSTA_CED | DEVSTA_NFED | DEVSTA_FED | DEVSTA_URD;

    pub const LNKCAP_SPEED_MASK: u32 = 0xF;
    pub const LNKCAP_WIDTH_SHIFT: u32 = 4;
    /// Link Control bits an endpoint implements: ASPM control, RCB, Common Clock,
    /// Extended Synch, Clock PM, HW Autonomous Width Disable.
    pub const LNKCTL_ENDPOINT_WRITABLE: u16 = 0x0003 | 0x0008 | 0x0040 | 0x0080 | 0x0100 | 0x0200;
    pub const LNKSTA_WIDTH_SHIFT: u16 = 4;

    pub const DEVCAP2_COMP_TIMEOUT_RANGES_MASK: u32 = 0xF;
    pub const DEVCAP2_COMP_TIMEOUT_DISABLE: u32 = 1 << 4;
    pub const DEVCTL2_COMP_TIMEOUT_VALUE_MASK: u16 = 0xF;
    pub const DEVCTL2_COMP_TIMEOUT_DISABLE: u16 = 1 << 4;
    pub const LNKCAP2_SPEEDS_SHIFT: u32 = 1;
    pub const LNKCTL2_TARGET_SPEED_MASK: u16 = 0xF;
}

/// Advanced Error Reporting extended capability.
pub mod aer {
    pub const UNCOR_STATUS: usize = 0x04;
    pub const UNCOR_MASK: usize = 0x08;
    pub const UNCOR_SEVERITY: usize = 0x0C;
    pub const COR_STATUS: usize = 0x10;
    pub const COR_MASK: usize = 0x14;
    pub const CAP_CONTROL: usize = 0x18;
    pub const HEADER_LOG: usize = 0x1C;
    /// With the root-port and TLP-prefix-log registers (as QEMU lays it out).
    pub const SIZE: usize = 0x48;
    pub const VERSION: u8 = 1;

    /// Uncorrectable errors an endpoint implements: DLP, SDES, Poisoned TLP, FCP,
    /// Completion Timeout, Completer Abort, Unexpected Completion, Receiver Overflow,
    /// Malformed TLP, ECRC, Unsupported Request, ACS Violation.
    pub const UNCOR_IMPLEMENTED: u32 = 0x003F_F030;
    /// Reset value of the severity register (DLP, SDES, FCP, RO, MTLP are fatal).
    pub const UNCOR_SEVERITY_DEFAULT: u32 = 0x0006_2030;
    /// Receiver Error, Bad TLP, Bad DLLP, Replay Rollover, Replay Timeout, Advisory
    /// Non-Fatal, Corrected Internal, Header Log Overflow.
    pub const COR_IMPLEMENTED: u32 = 0x0000_F1C1;
    /// Reset value of the correctable mask: Advisory Non-Fatal masked.
    pub const COR_MASK_DEFAULT: u32 = 0x0000_2000;
    pub const CAP_ECRC_GEN_CAPABLE: u32 = 1 << 5;
    pub const CAP_ECRC_GEN_ENABLE: u32 = 1 << 6;
    pub const CAP_ECRC_CHECK_CAPABLE: u32 = 1 << 7;
    pub const CAP_ECRC_CHECK_ENABLE: u32 = 1 << 8;
}

/// Alternative Routing-ID Interpretation extended capability.
pub mod ari {
    pub const CAP: usize = 0x04;
    pub const CONTROL: usize = 0x06;
    pub const SIZE: usize = 8;
    pub const VERSION: u8 = 1;
    pub const CAP_NEXT_FUNCTION_SHIFT: u16 = 8;
}

/// Single Root I/O Virtualization extended capability (SR-IOV 1.1 §3.3).
pub mod sriov {
    pub const CAP: usize = 0x04;
    pub const CONTROL: usize = 0x08;
    pub const STATUS: usize = 0x0A;
    pub const INITIAL_VFS: usize = 0x0C;
    pub const TOTAL_VFS: usize = 0x0E;
    pub const NUM_VFS: usize = 0x10;
    pub const FUNCTION_DEPENDENCY_LINK: usize = 0x12;
    pub const FIRST_VF_OFFSET: usize = 0x14;
    pub const VF_STRIDE: usize = 0x16;
    pub const VF_DEVICE_ID: usize = 0x1A;
    pub const SUPPORTED_PAGE_SIZES: usize = 0x1C;
    pub const SYSTEM_PAGE_SIZE: usize = 0x20;
    /// VF BAR n is at `VF_BAR0 + 4 * n`, n in 0..6.
    pub const VF_BAR0: usize = 0x24;
    pub const VF_MIGRATION_STATE_ARRAY: usize = 0x3C;
    pub const SIZE: usize = 0x40;
    pub const VERSION: u8 = 1;

    pub const CAP_ARI_HIERARCHY_PRESERVED: u32 = 1 << 1;

    pub const CONTROL_VF_ENABLE: u16 = 1 << 0;
    pub const CONTROL_VF_MIGRATION_ENABLE: u16 = 1 << 1;
    pub const CONTROL_VF_MIGRATION_INT_ENABLE: u16 = 1 << 2;
    pub const CONTROL_VF_MSE: u16 = 1 << 3;
    pub const CONTROL_ARI_CAPABLE_HIERARCHY: u16 = 1 << 4;

    /// 4K, 8K, 64K, 256K, 1M and 4M: the page sizes every PF must support.
    pub const REQUIRED_PAGE_SIZES: u32 = 0x553;
    /// System Page Size bit 0 = 4 KiB pages, the reset value.
    pub const PAGE_SIZE_4K: u32 = 0x1;
}
