//! PF BAR0 register offsets and bit fields, named as in Linux igb's `e1000_regs.h`,
//! `e1000_defines.h` and `e1000_82575.h`. Offsets are byte offsets in the PF's 128 KiB BAR0.
//!
//! The registers with side effects are modelled by [`super::pf`] and its parts; the ones the
//! function only stores (flow control, wake-up, the VMDq registers no guest driver uses with
//! zero VFs, RSS tables, ...) are listed in [`STORAGE`] with the bits they keep and their reset
//! values. Anything else reads 0 and ignores writes.

use super::config::{MSIX_BAR_SIZE, PF_BAR0_SIZE};
pub use super::regs::{dctl, q, srrctl};

/// BAR0: all CSRs.
pub const BAR0_SIZE: u64 = PF_BAR0_SIZE;
/// BAR1: the flash window (igb never touches it); reads as erased flash, ignores writes.
pub const BAR1_SIZE: u64 = 128 * 1024;
/// BAR2: IOADDR at 0 and IODATA at 4 (indirect CSR access).
pub const BAR2_SIZE: u64 = 32;
/// BAR3: the MSI-X table at 0 and the PBA at 0x2000.
pub const BAR3_SIZE: u64 = MSIX_BAR_SIZE;
/// IOADDR / IODATA inside BAR2.
pub const IOADDR: u64 = 0x0;
pub const IODATA: u64 = 0x4;

// ----- General (igb `e1000_regs.h`) -----
pub const CTRL: u64 = 0x0000;
/// CTRL is decoded here too (QEMU's `E1000_CTRL_DUP`).
pub const CTRL_DUP: u64 = 0x0004;
pub const STATUS: u64 = 0x0008;
pub const EECD: u64 = 0x0010;
pub const EERD: u64 = 0x0014;
pub const CTRL_EXT: u64 = 0x0018;
pub const MDIC: u64 = 0x0020;
pub const SCTL: u64 = 0x0024;
pub const FCAL: u64 = 0x0028;
pub const FCAH: u64 = 0x002C;
pub const FCT: u64 = 0x0030;
pub const CONNSW: u64 = 0x0034;
pub const VET: u64 = 0x0038;
pub const ICR: u64 = 0x00C0;
pub const ITR: u64 = 0x00C4;
pub const ICS: u64 = 0x00C8;
pub const IMS: u64 = 0x00D0;
pub const IMC: u64 = 0x00D8;
pub const IAM: u64 = 0x00E0;
pub const RCTL: u64 = 0x0100;
pub const FCTTV: u64 = 0x0170;
pub const TXCW: u64 = 0x0178;
pub const TCTL: u64 = 0x0400;
pub const TCTL_EXT: u64 = 0x0404;
pub const TIPG: u64 = 0x0410;
pub const AIT: u64 = 0x0458;
pub const LEDCTL: u64 = 0x0E00;
pub const EEMNGCTL: u64 = 0x1010;
pub const FRTIMER: u64 = 0x1048;
pub const FCRTL: u64 = 0x2160;
pub const FCRTH: u64 = 0x2168;
pub const RXPBS: u64 = 0x2404;
pub const QDE: u64 = 0x2408;
pub const FCRTV: u64 = 0x2460;
pub const TXPBS: u64 = 0x3404;
pub const DTXSWC: u64 = 0x3500;
pub const DTXCTL: u64 = 0x3590;
pub const RTTDQSEL: u64 = 0x3604;
pub const RTTBCNRM: u64 = 0x3690;
pub const RTTBCNRC: u64 = 0x36B0;
/// VMVIR(p) = 0x3700 + 4p, p = 0..7.
pub const VMVIR0: u64 = 0x3700;
pub const RXCSUM: u64 = 0x5000;
pub const RLPML: u64 = 0x5004;
pub const RFCTL: u64 = 0x5008;
/// MTA[0..128].
pub const MTA: u64 = 0x5200;
/// RAL(i)/RAH(i) = 0x5400 + 8i for i < 16, 0x54E0 + 8(i - 16) for 16 <= i < 24.
pub const RA: u64 = 0x5400;
pub const RA2: u64 = 0x54E0;
/// PSRTYPE(p) = 0x5480 + 4p.
pub const PSRTYPE0: u64 = 0x5480;
/// VFTA[0..128].
pub const VFTA: u64 = 0x5600;
pub const WUC: u64 = 0x5800;
pub const WUFC: u64 = 0x5808;
pub const MRQC: u64 = 0x5818;
pub const VT_CTL: u64 = 0x581C;
pub const MANC: u64 = 0x5820;
/// IMIR(i) = 0x5A80 + 4i, IMIREXT(i) = 0x5AA0 + 4i, i = 0..7.
pub const IMIR0: u64 = 0x5A80;
pub const IMIREXT0: u64 = 0x5AA0;
pub const IMIRVP: u64 = 0x5AC0;
/// VMOLR(p) = 0x5AD0 + 4p.
pub const VMOLR0: u64 = 0x5AD0;
pub const RPLOLR: u64 = 0x5AF0;
pub const GCR: u64 = 0x5B00;
pub const SWSM: u64 = 0x5B50;
pub const FWSM: u64 = 0x5B54;
pub const SW_FW_SYNC: u64 = 0x5B5C;
pub const DCA_CTRL: u64 = 0x5B74;
pub const IOVCTL: u64 = 0x5BBC;
/// RETA(i) = 0x5C00 + 4i, i = 0..31 (four one-byte entries each).
pub const RETA: u64 = 0x5C00;
/// RSSRK(i) = 0x5C80 + 4i, i = 0..9.
pub const RSSRK: u64 = 0x5C80;
/// ETQF(i) = 0x5CB0 + 4i, i = 0..7.
pub const ETQF0: u64 = 0x5CB0;
/// VLVF(i) = 0x5D00 + 4i, i = 0..31.
pub const VLVF0: u64 = 0x5D00;
pub const TSYNCRXCFG: u64 = 0x5F50;
/// UTA[0..128].
pub const UTA: u64 = 0xA000;
pub const SYSTIML: u64 = 0xB600;
pub const SYSTIMH: u64 = 0xB604;
pub const TIMINCA: u64 = 0xB608;
pub const TSYNCTXCTL: u64 = 0xB614;
pub const TSYNCRXCTL: u64 = 0xB620;
pub const TSAUXC: u64 = 0xB640;
pub const TSICR: u64 = 0xB66C;
pub const TSIM: u64 = 0xB674;

// ----- MSI-X and the extended interrupt registers -----
pub const GPIE: u64 = 0x1514;
pub const EICS: u64 = 0x1520;
pub const EIMS: u64 = 0x1524;
pub const EIMC: u64 = 0x1528;
pub const EIAC: u64 = 0x152C;
pub const EIAM: u64 = 0x1530;
pub const EICR: u64 = 0x1580;
/// EITR(n) = 0x1680 + 4n; the 82576 has 25 of them, of which the PF's 10 MSI-X vectors use
/// the first 10.
pub const EITR0: u64 = 0x1680;
pub const EITR_COUNT: u64 = 25;
/// IVAR0(i) = 0x1700 + 4i, i = 0..7.
pub const IVAR0: u64 = 0x1700;
pub const IVAR_COUNT: usize = 8;
pub const IVAR_MISC: u64 = 0x1740;

// ----- VMDq / SR-IOV registers of the PF (stored; no VF is enabled behind a guest's igb) -----
/// VMBMEM(n) = 0x0800 + 0x40n: 16 dwords per VF.
pub const VMBMEM0: u64 = 0x0800;
/// P2VMAILBOX(n) = 0x0C00 + 4n.
pub const P2VMAILBOX0: u64 = 0x0C00;
pub const MBVFICR: u64 = 0x0C80;
pub const MBVFIMR: u64 = 0x0C84;
pub const VFLRE: u64 = 0x0C88;
pub const VFRE: u64 = 0x0C8C;
pub const VFTE: u64 = 0x0C90;
pub const WVBR: u64 = 0x3554;

// ----- Queues -----
/// RX queue q < 4 also at 0x2800 + 0x100q; every queue at 0xC000 + 0x40q (igb's
/// `E1000_RDBAL(_n)`); the TX queues likewise at 0x3800 / 0xE000.
pub const RX_LOW: u64 = 0x2800;
pub const TX_LOW: u64 = 0x3800;
pub const LOW_STRIDE: u64 = 0x100;
pub const LOW_QUEUES: u64 = 4;
pub const RX_HIGH: u64 = 0xC000;
pub const TX_HIGH: u64 = 0xE000;
pub const HIGH_STRIDE: u64 = 0x40;
/// Queues per direction.
pub const QUEUES: usize = 16;

/// The queue and register (relative to the queue's block) an offset names in one of the
/// queue windows at `low` / `high`.
pub fn queue_reg(offset: u64, low: u64, high: u64) -> Option<(usize, u64)> {
    let (q, rel) = if (low..low + LOW_QUEUES * LOW_STRIDE).contains(&offset) {
        ((offset - low) / LOW_STRIDE, (offset - low) % LOW_STRIDE)
    } else if (high..high + QUEUES as u64 * HIGH_STRIDE).contains(&offset) {
        ((offset - high) / HIGH_STRIDE, (offset - high) % HIGH_STRIDE)
    } else {
        return None;
    };
    (rel < HIGH_STRIDE).then_some((q as usize, rel))
}

// ----- Statistics: every dword in this range is a clear-on-read counter -----
pub const STATS_START: u64 = 0x4000;
pub const STATS_END: u64 = 0x4140;

pub mod stat {
    //! The counters the function counts (igb's `igb_update_stats` reads them all).
    pub const CRCERRS: u64 = 0x4000;
    pub const MPC: u64 = 0x4010;
    pub const PRC64: u64 = 0x405C;
    pub const PRC127: u64 = 0x4060;
    pub const PRC255: u64 = 0x4064;
    pub const PRC511: u64 = 0x4068;
    pub const PRC1023: u64 = 0x406C;
    pub const PRC1522: u64 = 0x4070;
    pub const GPRC: u64 = 0x4074;
    pub const BPRC: u64 = 0x4078;
    pub const MPRC: u64 = 0x407C;
    pub const GPTC: u64 = 0x4080;
    pub const GORCL: u64 = 0x4088;
    pub const GORCH: u64 = 0x408C;
    pub const GOTCL: u64 = 0x4090;
    pub const GOTCH: u64 = 0x4094;
    pub const RNBC: u64 = 0x40A0;
    pub const RUC: u64 = 0x40A4;
    pub const ROC: u64 = 0x40AC;
    pub const TORL: u64 = 0x40C0;
    pub const TORH: u64 = 0x40C4;
    pub const TOTL: u64 = 0x40C8;
    pub const TOTH: u64 = 0x40CC;
    pub const TPR: u64 = 0x40D0;
    pub const TPT: u64 = 0x40D4;
    pub const PTC64: u64 = 0x40D8;
    pub const PTC127: u64 = 0x40DC;
    pub const PTC255: u64 = 0x40E0;
    pub const PTC511: u64 = 0x40E4;
    pub const PTC1023: u64 = 0x40E8;
    pub const PTC1522: u64 = 0x40EC;
    pub const MPTC: u64 = 0x40F0;
    pub const BPTC: u64 = 0x40F4;
    pub const TSCTC: u64 = 0x40F8;
    pub const IAC: u64 = 0x4100;
    pub const HGORCL: u64 = 0x4128;
    pub const HGORCH: u64 = 0x412C;
    pub const HGOTCL: u64 = 0x4130;
    pub const HGOTCH: u64 = 0x4134;
    /// The 64-bit counters: (low, high). The driver reads low then high; reading high clears
    /// the counter.
    pub const WIDE: [(u64, u64); 6] = [
        (GORCL, GORCH),
        (GOTCL, GOTCH),
        (TORL, TORH),
        (TOTL, TOTH),
        (HGORCL, HGORCH),
        (HGOTCL, HGOTCH),
    ];
}

// ----- Bit fields (igb `e1000_defines.h`) -----

pub mod ctrl {
    pub const FD: u32 = 1 << 0;
    pub const GIO_MASTER_DISABLE: u32 = 1 << 2;
    pub const LRST: u32 = 1 << 3;
    pub const ASDE: u32 = 1 << 5;
    pub const SLU: u32 = 1 << 6;
    pub const ILOS: u32 = 1 << 7;
    pub const SPD_SHIFT: u32 = 8;
    pub const SPD_MASK: u32 = 0b11 << SPD_SHIFT;
    pub const SPD_100: u32 = 0b01 << SPD_SHIFT;
    pub const SPD_1000: u32 = 0b10 << SPD_SHIFT;
    pub const FRCSPD: u32 = 1 << 11;
    pub const FRCDPX: u32 = 1 << 12;
    pub const SWDPIN0: u32 = 1 << 18;
    pub const SWDPIN1: u32 = 1 << 19;
    pub const SWDPIO0: u32 = 1 << 22;
    pub const SWDPIO1: u32 = 1 << 23;
    /// Device (MAC) reset; self-clearing (igb's `igb_reset_hw_82575`).
    pub const RST: u32 = 1 << 26;
    pub const RFCE: u32 = 1 << 27;
    pub const TFCE: u32 = 1 << 28;
    /// Strip/insert VLAN tags on the PF's queues (non-VMDq mode).
    pub const VME: u32 = 1 << 30;
    /// PHY reset, held while set (igb's `igb_phy_hw_reset` pulses it).
    pub const PHY_RST: u32 = 1 << 31;
    /// The bits CTRL stores (RST reads 0, so CTRL never reads all-ones, which igb's `igb_rd32`
    /// would take for a removed device).
    pub const STORED: u32 = FD
        | GIO_MASTER_DISABLE
        | LRST
        | ASDE
        | SLU
        | ILOS
        | SPD_MASK
        | FRCSPD
        | FRCDPX
        | SWDPIN0
        | SWDPIN1
        | SWDPIO0
        | SWDPIO1
        | RFCE
        | TFCE
        | VME
        | PHY_RST;
    /// Reset value: full duplex, auto-speed detection.
    pub const RESET: u32 = FD | ASDE;
}

pub mod status {
    pub use crate::function::i82576::regs::status::{
        FD, LU, SPEED_10, SPEED_100, SPEED_1000, SPEED_SHIFT,
    };
    /// PHY reset asserted: set by a PHY reset, cleared by writing 0 (the only writable bit).
    pub const PHYRA: u32 = 1 << 10;
    /// Cleared while CTRL.GIO_MASTER_DISABLE is set (`igb_disable_pcie_master` polls it).
    pub const GIO_MASTER_ENABLE: u32 = 1 << 19;
}

pub mod eecd {
    pub const SK: u32 = 1 << 0;
    pub const CS: u32 = 1 << 1;
    pub const DI: u32 = 1 << 2;
    pub const REQ: u32 = 1 << 6;
    pub const GNT: u32 = 1 << 7;
    /// An NVM is present (igb otherwise runs no-EEPROM init scripts).
    pub const PRES: u32 = 1 << 8;
    /// The post-reset auto read finished (`igb_get_auto_rd_done` polls it).
    pub const AUTO_RD: u32 = 1 << 9;
    /// 16-bit SPI addresses.
    pub const ADDR_BITS: u32 = 1 << 10;
    /// Word count = 2^(SIZE + 6) (`igb_init_nvm_params_82575`).
    pub const SIZE_SHIFT: u32 = 11;
    pub const SIZE_MASK: u32 = 0xF << SIZE_SHIFT;
    /// The bits software may write: the bit-bang pins and the access request.
    pub const WRITABLE: u32 = SK | CS | DI | REQ;
}

pub mod eerd {
    pub const START: u32 = 1 << 0;
    pub const DONE: u32 = 1 << 1;
    pub const ADDR_SHIFT: u32 = 2;
    pub const ADDR_MASK: u32 = 0x3FFF << ADDR_SHIFT;
    pub const DATA_SHIFT: u32 = 16;
}

pub mod ctrl_ext {
    pub const SDP3_DATA: u32 = 1 << 7;
    /// Reload from the NVM; self-clearing.
    pub const EE_RST: u32 = 1 << 13;
    /// PF reset done (tells VFs; inert without VFs).
    pub const PFRSTD: u32 = 1 << 14;
    /// 00 = internal copper PHY, the only mode this function has; read-only.
    pub const LINK_MODE_MASK: u32 = 0b11 << 22;
    pub const I2C_ENA: u32 = 1 << 25;
    pub const DRV_LOAD: u32 = 1 << 28;
    /// Clears the PBA; self-clearing.
    pub const PBA_CLR: u32 = 1 << 31;
    pub const STORED: u32 = !(LINK_MODE_MASK | EE_RST | PBA_CLR);
}

pub mod mdic {
    pub const DATA_MASK: u32 = 0xFFFF;
    pub const REG_SHIFT: u32 = 16;
    pub const REG_MASK: u32 = 0x1F << REG_SHIFT;
    pub const PHY_SHIFT: u32 = 21;
    pub const PHY_MASK: u32 = 0x1F << PHY_SHIFT;
    pub const OP_SHIFT: u32 = 26;
    pub const OP_MASK: u32 = 0b11 << OP_SHIFT;
    pub const OP_WRITE: u32 = 0b01 << OP_SHIFT;
    pub const OP_READ: u32 = 0b10 << OP_SHIFT;
    pub const READY: u32 = 1 << 28;
    /// Raise ICR.MDAC when the access completes.
    pub const INT_EN: u32 = 1 << 29;
    pub const ERROR: u32 = 1 << 30;
    /// External MDIO (SGMII only; read by `igb_sgmii_uses_mdio_82575`).
    pub const DEST: u32 = 1 << 31;
    /// The internal PHY's address (`igb_get_phy_id_82575`: "an address of 1 should work").
    pub const INTERNAL_PHY: u32 = 1;
}

pub mod swsm {
    /// Read-to-set software semaphore.
    pub const SMBI: u32 = 1 << 0;
    /// Software/firmware semaphore: latches when written 1 (no firmware competes).
    pub const SWESMBI: u32 = 1 << 1;
}

pub mod sw_fw_sync {
    /// The software half; the firmware half (31:16) always reads 0.
    pub const SW_MASK: u32 = 0xFFFF;
}

pub mod eemngctl {
    /// NVM configuration of port 0 done (`igb_get_cfg_done_82575` polls it after a PHY reset).
    pub const CFG_DONE_PORT_0: u32 = 1 << 18;
}

pub mod gcr {
    /// PCIe capability version 2: igb programs the completion timeout in DevCtl2.
    pub const CAP_VER2: u32 = 1 << 18;
}

pub mod icr {
    pub const TXDW: u32 = 1 << 0;
    pub const LSC: u32 = 1 << 2;
    pub const RXSEQ: u32 = 1 << 3;
    pub const RXDMT0: u32 = 1 << 4;
    pub const RXO: u32 = 1 << 6;
    pub const RXT0: u32 = 1 << 7;
    pub const VMMB: u32 = 1 << 8;
    pub const MDAC: u32 = 1 << 9;
    pub const TS: u32 = 1 << 19;
    pub const DOUTSYNC: u32 = 1 << 28;
    pub const DRSTA: u32 = 1 << 30;
    /// Read-only: a cause is pending and enabled (igb's INTx handler `igb_intr` checks it).
    pub const INT_ASSERTED: u32 = 1 << 31;
    /// The causes ICR holds and ICS/IMS/IMC/IAM take: the 82576 ICS mask of igb's
    /// `igb_intr_test` (0x77D4FBFD) and the time-sync cause.
    pub const CAUSES: u32 = 0x77D4_FBFD | TS;
}

pub mod gpie {
    /// ICR clears on read whatever the interrupt state.
    pub const NSICR: u32 = 1 << 0;
    /// Multiple-vector MSI-X: causes go through IVAR to EICR bits.
    pub const MSIX_MODE: u32 = 1 << 4;
    /// EIAM auto-masking on.
    pub const EIAME: u32 = 1 << 30;
    pub const PBA: u32 = 1 << 31;
    pub const STORED: u32 = NSICR | MSIX_MODE | EIAME | PBA;
}

pub mod ivar {
    /// Each IVAR byte: vector b4:0, VALID b7.
    pub const VECTOR_MASK: u8 = 0x1F;
    pub const VALID: u8 = 0x80;
    pub const BYTE_MASK: u32 = 0x9F9F_9F9F;
    /// IVAR_MISC byte 1: the "other causes" vector (igb's `igb_configure_msix`).
    pub const MISC_OTHER_SHIFT: u32 = 8;
    pub const MISC_MASK: u32 = 0x9F9F;
}

pub mod rctl {
    pub const EN: u32 = 1 << 1;
    pub const SBP: u32 = 1 << 2;
    pub const UPE: u32 = 1 << 3;
    pub const MPE: u32 = 1 << 4;
    pub const LPE: u32 = 1 << 5;
    pub const LBM_SHIFT: u32 = 6;
    pub const LBM_MASK: u32 = 0b11 << LBM_SHIFT;
    /// MAC loopback (`RCTL.LBM = 01`).
    pub const LBM_MAC: u32 = 0b01 << LBM_SHIFT;
    pub const RDMTS_MASK: u32 = 0b11 << 8;
    pub const MO_SHIFT: u32 = 12;
    pub const MO_MASK: u32 = 0b11 << MO_SHIFT;
    pub const BAM: u32 = 1 << 15;
    pub const BSIZE_MASK: u32 = 0b11 << 16;
    pub const VFE: u32 = 1 << 18;
    pub const CFIEN: u32 = 1 << 19;
    pub const CFI: u32 = 1 << 20;
    pub const DPF: u32 = 1 << 22;
    pub const PMCF: u32 = 1 << 23;
    pub const BSEX: u32 = 1 << 25;
    pub const SECRC: u32 = 1 << 26;
    /// The bits RCTL stores: every field above (igb's register test writes 0x04CFB0FE and
    /// reads it back; reserved bits read 0).
    pub const STORED: u32 = EN
        | SBP
        | UPE
        | MPE
        | LPE
        | LBM_MASK
        | RDMTS_MASK
        | MO_MASK
        | BAM
        | BSIZE_MASK
        | VFE
        | CFIEN
        | CFI
        | DPF
        | PMCF
        | BSEX
        | SECRC;
}

pub mod tctl {
    pub const EN: u32 = 1 << 1;
    /// Pad short packets.
    pub const PSP: u32 = 1 << 3;
    pub const CT_MASK: u32 = 0xFF << 4;
    pub const COLD_MASK: u32 = 0x3FF << 12;
    pub const SWXOFF: u32 = 1 << 22;
    pub const RTLC: u32 = 1 << 24;
    pub const STORED: u32 = EN | PSP | CT_MASK | COLD_MASK | SWXOFF | RTLC;
    /// Reset value: PSP, CT 0x0F, COLD 0x3F (writing 0 must clear them: igb's register test).
    pub const RESET: u32 = PSP | (0x0F << 4) | (0x3F << 12);
}

pub mod rah {
    /// Address valid.
    pub const AV: u32 = 1 << 31;
    /// Pool select, one bit per pool (VMDq).
    pub const POOLSEL_MASK: u32 = 0xFF << 18;
    /// Address select: 00 destination.
    pub const ASEL_MASK: u32 = 0b11 << 16;
    pub const ADDR_MASK: u32 = 0xFFFF;
    pub const STORED: u32 = AV | POOLSEL_MASK | ASEL_MASK | ADDR_MASK;
}

pub mod rxcsum {
    pub const IPOFL: u32 = 1 << 8;
    pub const TUOFL: u32 = 1 << 9;
    pub const CRCOFL: u32 = 1 << 11;
    pub const IPPCSE: u32 = 1 << 12;
    pub const PCSD: u32 = 1 << 13;
    /// PCSS 7:0 and the flags above.
    pub const STORED: u32 = 0xFF | IPOFL | TUOFL | CRCOFL | IPPCSE | PCSD;
}

pub mod mrqc {
    pub const MRQE_MASK: u32 = 0b111;
    pub const MRQE_NONE: u32 = 0b000;
    pub const MRQE_RSS: u32 = 0b010;
    pub const MRQE_VMDQ: u32 = 0b011;
    pub const MRQE_VMDQ_RSS: u32 = 0b101;
    /// With MRQE 000: the queue every frame goes to (igb's `igb_setup_desc_rings` writes the
    /// test queue here).
    pub const DEF_Q_SHIFT: u32 = 3;
    pub const DEF_Q_MASK: u32 = 0b111 << DEF_Q_SHIFT;
    /// MRQE, Def_Q and the RSS field enables (b24:16).
    pub const STORED: u32 = MRQE_MASK | DEF_Q_MASK | (0x1FF << 16);
}

pub mod vt_ctl {
    pub const DEF_PL_SHIFT: u32 = 7;
    pub const DEF_PL_MASK: u32 = 0b111 << DEF_PL_SHIFT;
    pub const IGNORE_MAC: u32 = 1 << 28;
    pub const DIS_DEF_POOL: u32 = 1 << 29;
    pub const REPL_EN: u32 = 1 << 30;
    pub const STORED: u32 = DEF_PL_MASK | IGNORE_MAC | DIS_DEF_POOL | REPL_EN;
}

pub mod timinca {
    /// Increment period, in 16 ns units.
    pub const PERIOD_SHIFT: u32 = 24;
    pub const VALUE_MASK: u32 = 0x00FF_FFFF;
}

/// One run of plain storage registers: `count` dwords from `base`, keeping `mask` of what is
/// written (other bits keep their reset value), `reset` after a reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Storage {
    pub name: &'static str,
    pub base: u64,
    pub count: u64,
    pub mask: u32,
    pub reset: u32,
}

const fn one(name: &'static str, base: u64, mask: u32, reset: u32) -> Storage {
    Storage {
        name,
        base,
        count: 1,
        mask,
        reset,
    }
}

const fn array(name: &'static str, base: u64, count: u64, mask: u32) -> Storage {
    Storage {
        name,
        base,
        count,
        mask,
        reset: 0,
    }
}

const ALL: u32 = u32::MAX;

/// The registers the function stores without acting on them, by offset. Masks keep what igb's
/// register test (`reg_test_82576`) expects and the fields `e1000_defines.h` names.
pub const STORAGE: &[Storage] = &[
    one("SCTL", SCTL, ALL, 0),
    one("FCAL", FCAL, ALL, 0),
    one("FCAH", FCAH, 0xFFFF, 0),
    one("FCT", FCT, 0xFFFF, 0),
    one("CONNSW", CONNSW, ALL, 0),
    one("VET", VET, ALL, 0x8100),
    one("ITR", ITR, 0xFFFF, 0),
    one("FCTTV", FCTTV, 0xFFFF, 0),
    one("TXCW", TXCW, ALL, 0),
    one("TCTL_EXT", TCTL_EXT, 0x000F_FFFF, 0),
    one("TIPG", TIPG, 0x3FFF_FFFF, 0x0060_200A),
    one("AIT", AIT, 0xFFFF, 0),
    array("VMBMEM", VMBMEM0, 8 * 16, ALL),
    array("P2VMAILBOX", P2VMAILBOX0, 8, 0x1F),
    one("MBVFIMR", MBVFIMR, 0xFF, 0),
    one("VFRE", VFRE, 0xFF, 0xFF),
    one("VFTE", VFTE, 0xFF, 0xFF),
    one("LEDCTL", LEDCTL, ALL, 0),
    one("FCRTL", FCRTL, 0x8000_FFF8, 0),
    one("FCRTH", FCRTH, 0xFFF8, 0),
    one("RXPBS", RXPBS, 0x7F, 0x40),
    one("QDE", QDE, 0xFFFF, 0),
    one("FCRTV", FCRTV, 0xFFFF, 0),
    one("TXPBS", TXPBS, 0x3F, 0x28),
    one("DTXSWC", DTXSWC, 0x80FF_FFFF, 0),
    one("DTXCTL", DTXCTL, 0xFF, 0x44),
    one("RTTDQSEL", RTTDQSEL, 0xF, 0),
    one("RTTBCNRM", RTTBCNRM, ALL, 0),
    one("RTTBCNRC", RTTBCNRC, 0x8FFF_FFFF, 0),
    array("VMVIR", VMVIR0, 8, 0xC000_FFFF),
    one(
        "RXCSUM",
        RXCSUM,
        rxcsum::STORED,
        rxcsum::IPOFL | rxcsum::TUOFL,
    ),
    one("RLPML", RLPML, 0x3FFF, 0x2600),
    one("RFCTL", RFCTL, ALL, 0),
    array("PSRTYPE", PSRTYPE0, 8, ALL),
    one("WUC", WUC, ALL, 0),
    one("WUFC", WUFC, ALL, 0),
    one("MRQC", MRQC, mrqc::STORED, 0),
    one("VT_CTL", VT_CTL, vt_ctl::STORED, 0),
    one("MANC", MANC, ALL, 0),
    array("IMIR", IMIR0, 8, ALL),
    array("IMIREXT", IMIREXT0, 8, ALL),
    one("IMIRVP", IMIRVP, ALL, 0),
    array("VMOLR", VMOLR0, 8, 0xDF03_3FFF),
    one("RPLOLR", RPLOLR, 0xC000_0000, 0),
    one("GCR", GCR, !gcr::CAP_VER2, gcr::CAP_VER2),
    one("DCA_CTRL", DCA_CTRL, 0x3, 0),
    one("IOVCTL", IOVCTL, 0x1, 0),
    array("RETA", RETA, 32, ALL),
    array("RSSRK", RSSRK, 10, ALL),
    array("ETQF", ETQF0, 8, ALL),
    array("VLVF", VLVF0, 32, 0x801F_FFFF),
    one("TSYNCRXCFG", TSYNCRXCFG, ALL, 0),
    array("UTA", UTA, 128, ALL),
    one("TSYNCTXCTL", TSYNCTXCTL, 0x10, 0),
    one("TSYNCRXCTL", TSYNCRXCTL, 0x1E, 0),
    one("TSAUXC", TSAUXC, ALL, 0),
    one("TSIM", TSIM, ALL, 0),
];

/// Where `offset` lies in [`STORAGE`]: (index of the run, dword within the run).
pub fn storage_slot(offset: u64) -> Option<(usize, u64)> {
    if !offset.is_multiple_of(4) {
        return None;
    }
    let i = STORAGE.partition_point(|s| s.base + 4 * s.count <= offset);
    let s = STORAGE.get(i)?;
    (offset >= s.base).then(|| (i, (offset - s.base) / 4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_runs_are_sorted_and_disjoint_and_miss_the_modelled_registers() {
        for w in STORAGE.windows(2) {
            assert!(
                w[0].base + 4 * w[0].count <= w[1].base,
                "{} overlaps {}",
                w[0].name,
                w[1].name
            );
        }
        for modelled in [
            CTRL,
            STATUS,
            EECD,
            EERD,
            CTRL_EXT,
            MDIC,
            ICR,
            ICS,
            IMS,
            IMC,
            IAM,
            RCTL,
            TCTL,
            GPIE,
            EICR,
            IVAR0,
            IVAR_MISC,
            SWSM,
            SW_FW_SYNC,
            FWSM,
            EEMNGCTL,
            MTA,
            RA,
            RA2,
            VFTA,
            SYSTIML,
            SYSTIMH,
            TIMINCA,
            STATS_START,
        ] {
            assert_eq!(storage_slot(modelled), None, "{modelled:#x}");
        }
        assert_eq!(storage_slot(FCAH), Some((2, 0)));
        assert_eq!(storage_slot(RETA + 4 * 31).map(|(_, d)| d), Some(31));
        assert_eq!(storage_slot(RETA + 4 * 32), storage_slot(RSSRK));
        assert_eq!(storage_slot(RSSRK + 4 * 10), None);
        assert_eq!(storage_slot(FCAL + 1), None);
        assert_eq!(storage_slot(u64::MAX - 3), None);
    }

    #[test]
    fn queue_windows_alias_the_first_four_queues() {
        assert_eq!(queue_reg(0x2818, RX_LOW, RX_HIGH), Some((0, q::DT)));
        assert_eq!(queue_reg(0xC018, RX_LOW, RX_HIGH), Some((0, q::DT)));
        assert_eq!(queue_reg(0x2B28, RX_LOW, RX_HIGH), Some((3, q::DCTL)));
        assert_eq!(queue_reg(0xC128, RX_LOW, RX_HIGH), Some((4, q::DCTL)));
        assert_eq!(queue_reg(0xC3FC, RX_LOW, RX_HIGH), Some((15, 0x3C)));
        assert_eq!(queue_reg(0xC400, RX_LOW, RX_HIGH), None);
        // Beyond the 0x40 bytes of a queue in the low window: not a queue register.
        assert_eq!(queue_reg(0x2840, RX_LOW, RX_HIGH), None);
        assert_eq!(queue_reg(0x3810, TX_LOW, TX_HIGH), Some((0, q::DH)));
        assert_eq!(queue_reg(0xE3D0, TX_LOW, TX_HIGH), Some((15, q::DH)));
    }
}
