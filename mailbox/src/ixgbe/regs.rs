//! Named offsets, bits and limits of the 82599 PF/VF mailbox.
//!
//! Facts restated from Linux `ixgbe/ixgbe_mbx.h`, `ixgbe_type.h`, `ixgbe_sriov.c` and
//! `ixgbevf/mbx.h`, `defines.h` (6.1); no code copied. Where the 82599 matches the 82576 bit
//! for bit (the VF and PF mailbox control registers), the shared [`crate::VfMailbox`] state
//! machine implements it; the constants here name the bits as ixgbe does.

/// Dwords in one VF's mailbox buffer (VFMBMEM / PFMBMEM(v); `IXGBE_VFMAILBOX_SIZE`).
pub const MAILBOX_WORDS: usize = 16;

/// VF BAR0 offsets (ixgbevf `regs.h`, `mbx.h`).
pub mod vf_bar {
    /// VFMBMEM: the 16-dword buffer, 0x200..0x23F.
    pub const VFMBMEM: u64 = 0x0200;
    /// One past the last byte of VFMBMEM.
    pub const VFMBMEM_END: u64 = VFMBMEM + 4 * super::MAILBOX_WORDS as u64;
    /// VFMAILBOX: the VF's mailbox control register.
    pub const VFMAILBOX: u64 = 0x02FC;
}

/// PF BAR0 offsets (ixgbe `ixgbe_type.h`).
pub mod pf_bar {
    /// PFMAILBOX(v): VF v's mailbox control register as the PF sees it (64 of them).
    pub const PFMAILBOX_BASE: u64 = 0x04B00;
    /// PFMBMEM(v): VF v's 16-dword buffer, 64 bytes per VF.
    pub const PFMBMEM_BASE: u64 = 0x13000;
    /// Bytes of PFMBMEM per VF.
    pub const PFMBMEM_STRIDE: u64 = 64;
    /// PFMBICR(i) (Linux: MBVFICR(i)), i = 0..4: 16 VFs per register, VFREQ in bits 15:0 and
    /// VFACK in bits 31:16 (`IXGBE_MBVFICR_VFREQ_MASK` / `_VFACK_MASK`), write 1 to clear.
    pub const PFMBICR_BASE: u64 = 0x00710;
    /// PFMBIMR(i), i = 0..4: per-VF mailbox interrupt mask, one bit per VF, 32 VFs per register
    /// (FreeBSD's ixgbe sets VF v's bit in PFMBIMR(v / 32) when it brings a VF up; Linux ixgbe
    /// never writes it).
    pub const PFMBIMR_BASE: u64 = 0x00720;
    /// Number of PFMBICR / PFMBIMR registers.
    pub const PFMBICR_COUNT: usize = 4;
    /// VFs per PFMBICR register.
    pub const VFS_PER_PFMBICR: usize = 16;
    /// VFs per PFMBIMR, VFLRE and VFLREC register.
    pub const VFS_PER_WORD: usize = 32;
    /// VFLRE(0): VF-level reset events of VFs 0–31 (read only; `IXGBE_VFLRE(0)`).
    pub const VFLRE0: u64 = 0x00600;
    /// VFLRE(1): VFs 32–63 (`IXGBE_VFLRE(1)`).
    pub const VFLRE1: u64 = 0x001C0;
    /// VFLREC(i): write 1 to clear VFLRE bits (`ixgbe_check_for_rst_pf`).
    pub const VFLREC_BASE: u64 = 0x00700;
    /// Number of VFLRE / VFLREC registers.
    pub const VFLRE_COUNT: usize = 2;
    /// VFs the 82599's mailbox registers can address (64 pools).
    pub const MAX_VFS: usize = 64;

    /// PFMAILBOX(v).
    pub const fn pfmailbox(vf: usize) -> u64 {
        PFMAILBOX_BASE + 4 * vf as u64
    }
    /// PFMBMEM(v), word 0.
    pub const fn pfmbmem(vf: usize) -> u64 {
        PFMBMEM_BASE + PFMBMEM_STRIDE * vf as u64
    }
    /// PFMBICR(i).
    pub const fn pfmbicr(i: usize) -> u64 {
        PFMBICR_BASE + 4 * i as u64
    }
    /// PFMBIMR(i).
    pub const fn pfmbimr(i: usize) -> u64 {
        PFMBIMR_BASE + 4 * i as u64
    }
    /// VFLREC(i).
    pub const fn vflrec(i: usize) -> u64 {
        VFLREC_BASE + 4 * i as u64
    }
}

/// VFMAILBOX bits (ixgbevf `mbx.h`: `IXGBE_VFMAILBOX_*`).
pub mod vfmailbox {
    /// Write 1: the VF posted a message (PFMBICR.VFREQ, PF interrupt). Reads 0.
    pub const REQ: u32 = 1 << 0;
    /// Write 1: the VF consumed the PF's message (PFMBICR.VFACK). Reads 0.
    pub const ACK: u32 = 1 << 1;
    /// Write 1: take the buffer (only if the PF does not hold it); write 0: release it.
    pub const VFU: u32 = 1 << 2;
    /// Read only: the PF holds the buffer.
    pub const PFU: u32 = 1 << 3;
    /// Read only, clear on read: the PF posted a message.
    pub const PFSTS: u32 = 1 << 4;
    /// Read only, clear on read: the PF acknowledged the VF's message.
    pub const PFACK: u32 = 1 << 5;
    /// Read only, level: a PF reset is in progress.
    pub const RSTI: u32 = 1 << 6;
    /// Read only, clear on read: the PF reset completed.
    pub const RSTD: u32 = 1 << 7;
    /// The bits a read clears (`IXGBE_VFMAILBOX_R2C_BITS`, which ixgbevf caches in software).
    pub const R2C: u32 = PFSTS | PFACK | RSTD;
    /// Every bit the register defines.
    pub const DEFINED: u32 = REQ | ACK | VFU | PFU | PFSTS | PFACK | RSTI | RSTD;
}

/// PFMAILBOX(v) bits (ixgbe `ixgbe_mbx.h`: `IXGBE_PFMAILBOX_*`).
pub mod pfmailbox {
    /// Write 1: the PF posted a message (VFMAILBOX.PFSTS, VF interrupt). Reads 0.
    pub const STS: u32 = 1 << 0;
    /// Write 1: the PF consumed the VF's message (VFMAILBOX.PFACK, VF interrupt). Reads 0.
    pub const ACK: u32 = 1 << 1;
    /// Read only: the VF holds the buffer.
    pub const VFU: u32 = 1 << 2;
    /// Write 1: take the buffer (only if the VF does not hold it); write 0: release it.
    pub const PFU: u32 = 1 << 3;
    /// Write 1: force-release a stuck VF lock ("Reset VFU - used when VF stuck").
    pub const RVFU: u32 = 1 << 4;
    /// Every bit the register defines.
    pub const DEFINED: u32 = STS | ACK | VFU | PFU | RVFU;
}

/// PFMBICR bits of one VF within its register (ixgbe `IXGBE_MBVFICR_*`).
pub mod pfmbicr {
    /// VFREQ of the register's first VF; VF v's is `VFREQ_VF1 << (v % 16)`.
    pub const VFREQ_VF1: u32 = 0x0000_0001;
    /// VFACK of the register's first VF; VF v's is `VFACK_VF1 << (v % 16)`.
    pub const VFACK_VF1: u32 = 0x0001_0000;
    pub const VFREQ_MASK: u32 = 0x0000_FFFF;
    pub const VFACK_MASK: u32 = 0xFFFF_0000;
}

/// Word 0 of every message and the message ids (ixgbe `ixgbe_mbx.h`, ixgbevf `mbx.h`).
pub mod msg {
    /// Bits 15:0: the message id (ixgbe dispatches on `msgbuf[0] & 0xFFFF`).
    pub const ID_MASK: u32 = 0x0000_FFFF;
    /// Bits 23:16: MSGINFO (`IXGBE_VT_MSGINFO_SHIFT` / `_MASK`).
    pub const INFO_SHIFT: u32 = 16;
    pub const INFO_MASK: u32 = 0x00FF_0000;
    /// Bits 28:24 are unused by the protocol.
    pub const RESERVED_MASK: u32 = 0x1F00_0000;
    /// `IXGBE_VT_MSGTYPE_ACK` (ixgbevf: `_SUCCESS`).
    pub const ACK: u32 = 0x8000_0000;
    /// `IXGBE_VT_MSGTYPE_NACK` (ixgbevf: `_FAILURE`).
    pub const NACK: u32 = 0x4000_0000;
    /// `IXGBE_VT_MSGTYPE_CTS`: the VF is clear to send.
    pub const CTS: u32 = 0x2000_0000;
    pub const FLAGS_MASK: u32 = ACK | NACK | CTS;

    pub const ID_VF_RESET: u16 = 0x01;
    pub const ID_SET_MAC_ADDR: u16 = 0x02;
    pub const ID_SET_MULTICAST: u16 = 0x03;
    pub const ID_SET_VLAN: u16 = 0x04;
    /// API 1.0.
    pub const ID_SET_LPE: u16 = 0x05;
    pub const ID_SET_MACVLAN: u16 = 0x06;
    pub const ID_API_NEGOTIATE: u16 = 0x08;
    /// API 1.1.
    pub const ID_GET_QUEUES: u16 = 0x09;
    /// API 1.2.
    pub const ID_GET_RETA: u16 = 0x0A;
    pub const ID_GET_RSS_KEY: u16 = 0x0B;
    pub const ID_UPDATE_XCAST_MODE: u16 = 0x0C;
    /// API 1.4.
    pub const ID_IPSEC_ADD: u16 = 0x0D;
    pub const ID_IPSEC_DEL: u16 = 0x0E;
    /// Answered by the PF from API 1.2 on; ixgbevf sends it at any version.
    pub const ID_GET_LINK_STATE: u16 = 0x10;
    /// PF → VF: a control message (link change, reset request).
    pub const ID_PF_CONTROL: u16 = 0x0100;

    /// SET_VLAN: MSGINFO non-zero means "add" (ixgbe tests it as a whole).
    pub const VLAN_INFO_ADD: u8 = 1;
    /// SET_VLAN word 1: the VID is bits 11:0 (`IXGBE_VLVF_VLANID_MASK`).
    pub const VLAN_VID_MASK: u32 = 0x0FFF;
    /// Word 2 of a MAC payload: bytes 4 and 5 are bits 15:0.
    pub const MAC_HI_MASK: u32 = 0x0000_FFFF;
}

/// Words of each message as ixgbevf sends it and ixgbe answers it.
pub mod len {
    /// The VF_RESET reply: header, MAC (2 words), multicast filter type
    /// (`IXGBE_VF_PERMADDR_MSG_LEN`).
    pub const RESET_REPLY: usize = 4;
    /// SET_MAC_ADDR, SET_MACVLAN: header + MAC.
    pub const MAC: usize = 3;
    /// API_NEGOTIATE: header, API, a zero word.
    pub const API_NEGOTIATE: usize = 3;
    /// GET_QUEUES request and reply: header + 4 words (`IXGBE_VF_DEF_QUEUE` + 1).
    pub const GET_QUEUES: usize = 5;
    /// GET_RETA reply: header + 128 two-bit entries packed 16 per word.
    pub const RETA_REPLY: usize = 1 + RETA_WORDS;
    pub const RETA_WORDS: usize = super::limits::RETA_ENTRIES / 16;
    /// GET_RSS_KEY reply: header + the 40-byte key.
    pub const RSS_KEY_REPLY: usize = 1 + super::limits::RSS_KEY_BYTES / 4;
    /// IPSEC_ADD request: header + `struct sa_mbx_msg` (44 bytes).
    pub const IPSEC_ADD: usize = 1 + 11;
}

/// MSGINFO / payload words of GET_QUEUES (`IXGBE_VF_TX_QUEUES` ...).
pub mod queues {
    pub const TX_QUEUES: usize = 1;
    pub const RX_QUEUES: usize = 2;
    pub const TRANS_VLAN: usize = 3;
    pub const DEF_QUEUE: usize = 4;
}

/// `enum ixgbe_pfvf_api_rev`: API_NEGOTIATE carries the enum's value, not a version number.
pub mod api {
    pub const V1_0: u32 = 0;
    /// The Solaris phase-1 API; Linux ixgbe never grants it.
    pub const V2_0: u32 = 1;
    pub const V1_1: u32 = 2;
    pub const V1_2: u32 = 3;
    pub const V1_3: u32 = 4;
    pub const V1_4: u32 = 5;
    /// ixgbevf 6.1 asks for it first; the 6.1 ixgbe PF refuses it.
    pub const V1_5: u32 = 6;
    /// Later 6.1.y ixgbevf asks for these before 1.5; ixgbe 6.1 refuses them.
    pub const V1_6: u32 = 7;
    pub const V1_7: u32 = 8;
}

/// UPDATE_XCAST_MODE word 1 (ixgbevf `enum ixgbevf_xcast_modes`).
pub mod xcast {
    pub const NONE: u32 = 0;
    pub const MULTI: u32 = 1;
    pub const ALLMULTI: u32 = 2;
    pub const PROMISC: u32 = 3;
}

/// Linux errno values ixgbe writes into reply words.
pub mod errno {
    pub const EPERM: i32 = 1;
    pub const EACCES: i32 = 13;
    pub const EINVAL: i32 = 22;
    pub const EOPNOTSUPP: i32 = 95;
}

/// Hardware and driver limits the ixgbe agent enforces.
pub mod limits {
    /// SET_MULTICAST hashes kept (`IXGBE_MAX_VF_MC_ENTRIES`).
    pub const MAX_MC_HASHES: usize = 30;
    /// The multicast table is indexed by 12 hash bits (`(hash >> 5) & 0x7F`, `hash & 0x1F`).
    pub const MC_HASH_MASK: u16 = 0x0FFF;
    /// SET_LPE lower bound (`ETH_MIN_MTU`).
    pub const MIN_FRAME: u32 = 68;
    /// SET_LPE upper bound (`IXGBE_MAX_JUMBO_FRAME_SIZE`).
    pub const MAX_FRAME: u32 = 9728;
    /// `ETH_FRAME_LEN`: the PF's frame (MTU + 14) above which the 82599 counts it as jumbo.
    pub const ETH_FRAME_LEN: u32 = 1514;
    /// The largest frame a VF may ask for while the PF is not jumbo (`ETH_FRAME_LEN +
    /// ETH_FCS_LEN`).
    pub const LEGACY_MAX_FRAME: u32 = 1518;
    /// `ETH_HLEN`, added to the PF's MTU for its frame size.
    pub const ETH_HLEN: u32 = 14;
    /// VLVF entries of the 82599 (`IXGBE_VLVF_ENTRIES`); entry 0 holds VID 0.
    pub const VLVF_SLOTS: usize = 64;
    /// RAR entries of the 82599.
    pub const RAR_ENTRIES: usize = 128;
    /// RAR entries ixgbe keeps for the PF's own macvlans besides its station address
    /// (`IXGBE_MAX_PF_MACVLANS`).
    pub const MAX_PF_MACVLANS: usize = 15;
    /// Entries of the PF's RSS redirection table on the 82599 (`ixgbe_rss_indir_tbl_entries`).
    pub const RETA_ENTRIES: usize = 128;
    /// `IXGBE_RSS_KEY_SIZE`.
    pub const RSS_KEY_BYTES: usize = 40;
    /// VFs the 82599 can give four queues each (32 pools, one of them the PF's).
    pub const VFS_WITH_FOUR_QUEUES: usize = 31;
    /// IPsec SA table size per direction (`IXGBE_IPSEC_MAX_SA_COUNT`); RX handles start at 0
    /// (`IXGBE_IPSEC_BASE_RX_INDEX`), TX handles at this value (`IXGBE_IPSEC_BASE_TX_INDEX`).
    pub const IPSEC_MAX_SA_COUNT: u32 = 1024;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regs::{p2v, v2p};

    #[test]
    fn the_82599_mailbox_control_bits_are_the_82576_ones() {
        // The shared VfMailbox implements both; this pins the assumption.
        assert_eq!(vfmailbox::DEFINED, v2p::DEFINED);
        assert_eq!(vfmailbox::R2C, v2p::R2C);
        assert_eq!(
            [
                vfmailbox::REQ,
                vfmailbox::ACK,
                vfmailbox::VFU,
                vfmailbox::PFU
            ],
            [v2p::REQ, v2p::ACK, v2p::VFU, v2p::PFU]
        );
        assert_eq!(
            [
                vfmailbox::PFSTS,
                vfmailbox::PFACK,
                vfmailbox::RSTI,
                vfmailbox::RSTD
            ],
            [v2p::PFSTS, v2p::PFACK, v2p::RSTI, v2p::RSTD]
        );
        assert_eq!(pfmailbox::DEFINED, p2v::DEFINED);
        assert_eq!(
            [
                pfmailbox::STS,
                pfmailbox::ACK,
                pfmailbox::VFU,
                pfmailbox::PFU,
                pfmailbox::RVFU
            ],
            [p2v::STS, p2v::ACK, p2v::VFU, p2v::PFU, p2v::RVFU]
        );
        assert_eq!(MAILBOX_WORDS, crate::regs::MAILBOX_WORDS);
    }

    #[test]
    fn pf_register_offsets_follow_ixgbe_type_h() {
        assert_eq!(pf_bar::pfmailbox(63), 0x4BFC);
        assert_eq!(pf_bar::pfmbmem(1), 0x13040);
        assert_eq!(pf_bar::pfmbicr(3), 0x71C);
        assert_eq!(pf_bar::pfmbimr(1), 0x724);
        assert_eq!(pf_bar::vflrec(1), 0x704);
        assert_eq!(vf_bar::VFMBMEM_END, 0x240);
        assert_eq!(len::RETA_REPLY, 9);
        assert_eq!(len::RSS_KEY_REPLY, 11);
    }
}
