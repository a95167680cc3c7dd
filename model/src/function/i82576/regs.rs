//! VF BAR0 register offsets and bit fields, named as in Linux igbvf's `regs.h` / `defines.h`;
//! QEMU's `vf_to_pf_addr` (`hw/net/igbvf.c`) maps the same window onto the PF's registers.
//! Offsets are byte offsets in the VF's 16 KiB BAR0.

/// Size of the VF's BAR0 (all CSRs).
pub const BAR0_SIZE: u64 = 16 * 1024;
/// Size of the VF's BAR3 (MSI-X table at 0, PBA at [`MSIX_PBA`]).
pub const BAR3_SIZE: u64 = 16 * 1024;

// ----- General -----
/// VTCTRL: only RST (b26) does anything; reads 0. Also decoded at 0x0004 (QEMU's
/// `vf_to_pf_addr`: `E1000_CTRL_DUP`).
pub const VTCTRL: u64 = 0x0000;
pub const VTCTRL_ALIAS: u64 = 0x0004;
/// VTSTATUS: read-only mirror of the link (LU, FD, SPEED).
pub const VTSTATUS: u64 = 0x0008;
/// VTFRTIMER: free-running timer, read-only.
pub const VTFRTIMER: u64 = 0x1048;

pub mod ctrl {
    /// VTCTRL.RST: VF software reset (igbvf's `e1000_reset_hw_vf`; QEMU's `igb_vf_reset`).
    pub const RST: u32 = 1 << 26;
}

pub mod status {
    pub const FD: u32 = 1 << 0;
    pub const LU: u32 = 1 << 1;
    pub const SPEED_SHIFT: u32 = 6;
    pub const SPEED_10: u32 = 0b00 << SPEED_SHIFT;
    pub const SPEED_100: u32 = 0b01 << SPEED_SHIFT;
    pub const SPEED_1000: u32 = 0b10 << SPEED_SHIFT;
}

// ----- Mailbox (igbvf `mbx.c`) -----
/// VMBMEM: 16 dwords shared with the PF.
pub const VMBMEM: u64 = 0x0800;
pub const VMBMEM_END: u64 = 0x0840;
/// V2PMAILBOX: the VF's mailbox control register.
pub const V2PMAILBOX: u64 = 0x0C40;

// ----- Storage-only -----
pub const PBACL: u64 = 0x0F04;
pub const PSRTYPE: u64 = 0x0F0C;

// ----- VF statistics (igbvf `igbvf_update_stats`): free-running, not clear-on-read -----
pub const VFGPRC: u64 = 0x0F10;
pub const VFGPTC: u64 = 0x0F14;
pub const VFGORC: u64 = 0x0F18;
pub const VFGOTC: u64 = 0x0F34;
pub const VFMPRC: u64 = 0x0F3C;
pub const VFGPRLBC: u64 = 0x0F40;
pub const VFGPTLBC: u64 = 0x0F44;
pub const VFGORLBC: u64 = 0x0F48;
pub const VFGOTLBC: u64 = 0x0F50;

// ----- Interrupts (igbvf `igbvf_configure_msix`, `igbvf_irq_enable`) -----
pub const VTEICS: u64 = 0x1520;
pub const VTEIMS: u64 = 0x1524;
pub const VTEIMC: u64 = 0x1528;
pub const VTEIAC: u64 = 0x152C;
pub const VTEIAM: u64 = 0x1530;
pub const VTEICR: u64 = 0x1580;
/// VTEITR(n) = 0x1680 + 4n, n = 0..2.
pub const VTEITR0: u64 = 0x1680;
pub const VTIVAR: u64 = 0x1700;
pub const VTIVAR_MISC: u64 = 0x1740;

/// The three MSI-X vectors of a VF (igbvf: 0 = TX, 1 = RX, 2 = mailbox).
pub const VF_VECTORS: u16 = 3;
/// Valid cause bits in VTEICR/VTEIMS/... (one per vector).
pub const VECTOR_MASK: u32 = (1 << VF_VECTORS) - 1;

pub mod ivar {
    /// Each byte of VTIVAR / VTIVAR_MISC: vector in b1:0, VALID b7.
    pub const VECTOR_MASK: u8 = 0x03;
    pub const VALID: u8 = 0x80;
}

// ----- Queues (igbvf `igbvf_configure_tx`, `igbvf_configure_rx`) -----
/// RX queue q (0 or 1) at `RX_BASE + q * QUEUE_STRIDE`, TX queue q at `TX_BASE + ...`.
pub const RX_BASE: u64 = 0x2800;
pub const TX_BASE: u64 = 0x3800;
pub const QUEUE_STRIDE: u64 = 0x100;
/// Queues per direction in the VF window.
pub const QUEUES: usize = 2;

/// Register offsets inside one queue's 0x100 block.
pub mod q {
    pub const DBAL: u64 = 0x00;
    pub const DBAH: u64 = 0x04;
    pub const DLEN: u64 = 0x08;
    /// RX only: SRRCTL.
    pub const SRRCTL: u64 = 0x0C;
    pub const DH: u64 = 0x10;
    /// RXCTL / TXCTL (DCA control): storage.
    pub const DCA_CTL: u64 = 0x14;
    pub const DT: u64 = 0x18;
    pub const DCTL: u64 = 0x28;
    /// RX only: RQDPC, per-queue drop count (clear on read).
    pub const RQDPC: u64 = 0x30;
    /// TX only: head write-back address (storage; igbvf does not use it).
    pub const TDWBAL: u64 = 0x38;
    pub const TDWBAH: u64 = 0x3C;
}

pub mod srrctl {
    /// Packet buffer size in KiB units.
    pub const BSIZEPKT_MASK: u32 = 0x7F;
    /// Header buffer size in 64-byte units, bits 11:8.
    pub const BSIZEHDR_SHIFT: u32 = 8;
    pub const BSIZEHDR_MASK: u32 = 0xF << BSIZEHDR_SHIFT;
    pub const DESCTYPE_SHIFT: u32 = 25;
    pub const DESCTYPE_MASK: u32 = 0x7 << DESCTYPE_SHIFT;
    pub const DESCTYPE_ADV_ONEBUF: u32 = 0b001;
    pub const DESCTYPE_HDR_SPLIT: u32 = 0b010;
    pub const DESCTYPE_HDR_REPLICATION: u32 = 0b011;
    pub const DESCTYPE_HDR_REPLICATION_LARGE: u32 = 0b100;
    pub const DESCTYPE_HDR_SPLIT_ALWAYS: u32 = 0b101;
    pub const DROP_EN: u32 = 1 << 31;
}

pub mod dctl {
    /// RXDCTL / TXDCTL.ENABLE.
    pub const ENABLE: u32 = 1 << 25;
    /// QEMU's reset value of RXDCTL: WTHRESH = 1.
    pub const WTHRESH_1: u32 = 1 << 16;
}

/// Ring length granularity drivers use (RDLEN/TDLEN multiples of 128 bytes).
pub const DLEN_ALIGN: u32 = 128;
/// The bits RDLEN/TDLEN store: 19:4 (igb's `igb_reg_test` pattern-tests exactly these on the
/// PF; QEMU keeps the same width, and a VF's window maps onto the same registers).
pub const DLEN_MASK: u32 = 0x000F_FFF0;
/// RDBAL/TDBAL: the low 5 bits are not stored (QEMU's mask; igbvf's rings are 4 KiB aligned).
pub const DBAL_MASK: u32 = !0x1F;

/// BAR3: MSI-X table (3 × 16 bytes) at 0, PBA at 0x2000.
pub const MSIX_TABLE_ENTRY: u64 = 16;
pub const MSIX_PBA: u64 = 0x2000;
