//! The 82599 VF's BAR0 registers by offset and their bits, named as Linux ixgbevf's `regs.h`
//! and `defines.h` name them (`IXGBE_VFCTRL` ... `IXGBE_VFMPRC`; the interrupt registers are
//! `IXGBE_VTEICR` ... `IXGBE_VTIVAR_MISC` there). Offsets are byte offsets in the VF's 16 KiB
//! BAR0; every register is 32 bits wide. The mailbox registers (VFMBMEM, VFMAILBOX) are
//! `mailbox::ixgbe::regs::vf_bar`'s.

/// Size of the VF's BAR0 (all CSRs).
pub const BAR0_SIZE: u64 = 16 * 1024;
/// Size of the VF's BAR3 (MSI-X table at 0, PBA at [`MSIX_PBA`]).
pub const BAR3_SIZE: u64 = 16 * 1024;
/// BAR3: the PBA's offset (the table is at 0).
pub const MSIX_PBA: u64 = 0x2000;

// ----- General (ixgbevf `regs.h`) -----
/// VFCTRL: only RST does anything; reads 0 (the reset bit self-clears).
pub const VFCTRL: u64 = 0x0000;
/// VFSTATUS: read by ixgbevf as the flush after writes (`IXGBE_WRITE_FLUSH`) and as its
/// surprise-removal probe (`ixgbevf_read_reg`: all-ones means the adapter is gone).
pub const VFSTATUS: u64 = 0x0008;
/// VFLINKS: the PF's link as the VF sees it (`ixgbevf_check_mac_link_vf`).
pub const VFLINKS: u64 = 0x0010;
/// VFFRTIMER: free-running timer, read only by `ethtool -d`.
pub const VFFRTIMER: u64 = 0x0048;
/// VFRXMEMWRAP: read only by `ethtool -d`.
pub const VFRXMEMWRAP: u64 = 0x3190;
/// VFPSRTYPE: the pool's replication/split types (ixgbevf `ixgbevf_setup_psrtype`).
pub const VFPSRTYPE: u64 = 0x0300;

pub mod ctrl {
    /// VFCTRL.RST: VF software reset (ixgbevf `ixgbevf_reset_hw_vf`: `IXGBE_CTRL_RST`).
    pub const RST: u32 = 1 << 26;
}

pub mod links {
    /// VFLINKS.LINK_UP (`IXGBE_LINKS_UP`).
    pub const UP: u32 = 1 << 30;
    /// VFLINKS speed, bits 29:28 (`IXGBE_LINKS_SPEED_82599`): 11 10 Gb/s, 10 1 Gb/s,
    /// 01 100 Mb/s.
    pub const SPEED_MASK: u32 = 0x3000_0000;
    pub const SPEED_10G: u32 = 0x3000_0000;
    pub const SPEED_1G: u32 = 0x2000_0000;
    pub const SPEED_100: u32 = 0x1000_0000;
}

// ----- Interrupts (ixgbevf `ixgbevf_configure_msix`, `ixgbevf_irq_enable`) -----
pub const VTEICR: u64 = 0x0100;
pub const VTEICS: u64 = 0x0104;
pub const VTEIMS: u64 = 0x0108;
pub const VTEIMC: u64 = 0x010C;
pub const VTEIAC: u64 = 0x0110;
pub const VTEIAM: u64 = 0x0114;
/// VTEITR(n) = 0x820 + 4n, n = 0..2.
pub const VTEITR0: u64 = 0x0820;
/// VTIVAR(0): queues 0 and 1 (byte 0 RX0, byte 1 TX0, byte 2 RX1, byte 3 TX1).
pub const VTIVAR0: u64 = 0x0120;
pub const VTIVAR_MISC: u64 = 0x0140;

/// MSI-X vectors of a VF: ixgbevf uses two queue vectors and the mailbox vector last
/// (`ixgbevf_set_interrupt_capability`, `ixgbevf_configure_msix`).
pub const VF_VECTORS: u16 = 3;
/// Valid cause bits in VTEICR/VTEIMS/... (one per vector; ixgbevf's `IXGBE_VF_IRQ_CLEAR_MASK`).
pub const VECTOR_MASK: u32 = (1 << VF_VECTORS) - 1;

pub mod ivar {
    /// Each byte of VTIVAR / VTIVAR_MISC: `IXGBE_IVAR_ALLOC_VAL` (bit 7) and the vector number.
    /// ⚠ The vector field's width on a VF is a datasheet matter; two bits hold the VF's three
    /// vectors (as on the 82576 VF), and vector 3 routes nowhere.
    pub const VALID: u8 = 0x80;
    pub const VECTOR_MASK: u8 = 0x03;
    /// What a byte stores.
    pub const BYTE_MASK: u8 = VALID | VECTOR_MASK;
}

// ----- Queues (ixgbevf `ixgbevf_configure_rx_ring`, `ixgbevf_configure_tx_ring`) -----
/// RX queue q's registers at `RX_BASE + q * QUEUE_STRIDE`, TX queue q's at `TX_BASE + ...`.
pub const RX_BASE: u64 = 0x1000;
pub const TX_BASE: u64 = 0x2000;
pub const QUEUE_STRIDE: u64 = 0x40;
/// Queue pairs this VF model has (ixgbevf uses at most two: `ixgbevf_set_num_queues`).
pub const QUEUES: usize = 2;

/// RX registers inside one queue's 0x40 block (`IXGBE_VFRDBAL(x)` ...).
pub mod rxq {
    pub const RDBAL: u64 = 0x00;
    pub const RDBAH: u64 = 0x04;
    pub const RDLEN: u64 = 0x08;
    /// VFDCA_RXCTRL: storage (ixgbevf writes the relaxed-ordering bits).
    pub const DCA_RXCTRL: u64 = 0x0C;
    pub const RDH: u64 = 0x10;
    pub const SRRCTL: u64 = 0x14;
    pub const RDT: u64 = 0x18;
    pub const RXDCTL: u64 = 0x28;
    /// VFRSCCTL: storage (RSC is off with SR-IOV).
    pub const RSCCTL: u64 = 0x2C;
}

/// TX registers inside one queue's 0x40 block (`IXGBE_VFTDBAL(x)` ...).
pub mod txq {
    pub const TDBAL: u64 = 0x00;
    pub const TDBAH: u64 = 0x04;
    pub const TDLEN: u64 = 0x08;
    /// VFDCA_TXCTRL: storage.
    pub const DCA_TXCTRL: u64 = 0x0C;
    pub const TDH: u64 = 0x10;
    pub const TDT: u64 = 0x18;
    pub const TXDCTL: u64 = 0x28;
    pub const TDWBAL: u64 = 0x38;
    pub const TDWBAH: u64 = 0x3C;
}

/// The per-queue register masks ixgbevf's register test (`ethtool.c`, `reg_test_vf`) pins:
/// RDBAL/TDBAL bits 6:0 read 0, RDLEN/TDLEN hold bits 19:7, RDH/RDT/TDH/TDT bits 15:0.
pub const DBAL_MASK: u32 = !0x7F;
pub const DLEN_MASK: u32 = 0x000F_FF80;
pub const HEAD_TAIL_MASK: u32 = 0xFFFF;

pub mod rxdctl {
    /// `IXGBE_RXDCTL_ENABLE`.
    pub const ENABLE: u32 = 1 << 25;
    /// `IXGBE_RXDCTL_VME`: strip the VLAN tag of frames received on this queue.
    pub const VME: u32 = 1 << 30;
}

pub mod txdctl {
    /// `IXGBE_TXDCTL_ENABLE`.
    pub const ENABLE: u32 = crate::function::tx::TXDCTL_ENABLE;
    /// `IXGBE_TXDCTL_SWFLSH`: a one-shot flush of pending write-backs; not stored.
    pub const SWFLSH: u32 = 1 << 26;
}

pub mod srrctl {
    /// Packet buffer size in KiB (ixgbevf: `IXGBE_SRRCTL_BSIZEPKT_MASK`, shift 10).
    pub const BSIZEPKT_MASK: u32 = 0x7F;
    /// The 82599's largest receive buffer (ixgbe `IXGBE_MAX_RXBUFFER`: 16 KiB).
    pub const BSIZEPKT_MAX_KIB: u32 = 16;
    pub const DESCTYPE_SHIFT: u32 = 25;
    pub const DESCTYPE_MASK: u32 = 0x7 << DESCTYPE_SHIFT;
    /// Advanced one-buffer descriptors: the only type ixgbevf uses.
    pub const DESCTYPE_ADV_ONEBUF: u32 = 0b001;
    /// `IXGBE_SRRCTL_DROP_EN`.
    pub const DROP_EN: u32 = 1 << 28;
    /// The reset value DPDK's `ixgbe_virt_clr_reg` restores: 2 KiB, legacy descriptors.
    pub const RESET: u32 = 0x0000_0402;
}

/// VFDCA_RXCTRL / VFDCA_TXCTRL reset values (DPDK's `ixgbe_virt_clr_reg` restores them).
pub const DCA_RXCTRL_RESET: u32 = 0xA200;
pub const DCA_TXCTRL_RESET: u32 = 0x2A00;

// ----- Statistics (ixgbevf `ixgbevf_update_stats`): free-running, not clear-on-read -----
/// Good packets received, 32 bits, wraps.
pub const VFGPRC: u64 = 0x101C;
/// Good octets received, 36 bits: bits 31:0 here, 35:32 in VFGORC_MSB.
pub const VFGORC_LSB: u64 = 0x1020;
pub const VFGORC_MSB: u64 = 0x1024;
/// Multicast packets received, 32 bits.
pub const VFMPRC: u64 = 0x1034;
/// Good packets transmitted, 32 bits.
pub const VFGPTC: u64 = 0x201C;
/// Good octets transmitted, 36 bits as VFGORC.
pub const VFGOTC_LSB: u64 = 0x2020;
pub const VFGOTC_MSB: u64 = 0x2024;
/// The MSB registers hold bits 35:32 of their counter (ixgbevf's `UPDATE_VF_COUNTER_36bit`
/// masks the sum to 36 bits).
pub const OCTETS_MSB_MASK: u32 = 0xF;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_sit_inside_queue_0s_blocks_where_ixgbevf_reads_them() {
        // The statistics share the first queue's 0x40 blocks: the decode checks them first.
        for (stat, base) in [
            (VFGPRC, RX_BASE),
            (VFGORC_MSB, RX_BASE),
            (VFMPRC, RX_BASE),
            (VFGPTC, TX_BASE),
            (VFGOTC_MSB, TX_BASE),
        ] {
            assert!((base..base + QUEUE_STRIDE).contains(&stat));
        }
        assert_eq!(RX_BASE + QUEUE_STRIDE + rxq::RXDCTL, 0x1068);
        assert_eq!(TX_BASE + QUEUE_STRIDE + txq::TDWBAH, 0x207C);
    }
}
