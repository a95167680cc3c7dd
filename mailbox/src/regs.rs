//! Named bits and limits of the 82576 PF/VF mailbox.
//!
//! Facts restated from Linux `igb/e1000_mbx.h`, `igbvf/mbx.h`, `igb/e1000_defines.h` and
//! `igb_main.c` (`igb_rcv_msg_from_vf` and the handlers it calls); no code copied.

/// Dwords in one VF's mailbox buffer (VMBMEM), shared by the VF and the PF.
pub const MAILBOX_WORDS: usize = 16;

/// V2PMAILBOX: the VF's view of its mailbox control register (VF BAR0 0x0C40; igbvf `mbx.h`).
pub mod v2p {
    /// Write 1: the VF posted a message (sets MBVFICR.VFREQ, interrupts the PF). Reads 0.
    pub const REQ: u32 = 1 << 0;
    /// Write 1: the VF consumed the PF's message (sets MBVFICR.VFACK, interrupts the PF). Reads 0.
    pub const ACK: u32 = 1 << 1;
    /// Write 1: take the buffer (only if the PF does not hold it); write 0: release it.
    pub const VFU: u32 = 1 << 2;
    /// Read only: the PF holds the buffer.
    pub const PFU: u32 = 1 << 3;
    /// Read only, clear on read: the PF posted a message.
    pub const PFSTS: u32 = 1 << 4;
    /// Read only, clear on read: the PF acknowledged the VF's message.
    pub const PFACK: u32 = 1 << 5;
    /// Read only, sticky: a PF reset is in progress.
    pub const RSTI: u32 = 1 << 6;
    /// Read only, clear on read: the PF reset completed.
    pub const RSTD: u32 = 1 << 7;
    /// The bits a read clears (igbvf's `E1000_V2PMAILBOX_R2C_BITS`).
    pub const R2C: u32 = PFSTS | PFACK | RSTD;
    /// Every bit the register defines.
    pub const DEFINED: u32 = REQ | ACK | VFU | PFU | PFSTS | PFACK | RSTI | RSTD;
    /// The bits a VF write acts on.
    pub const WRITABLE: u32 = REQ | ACK | VFU;
}

/// P2VMAILBOX(n): the PF's view of VF n's mailbox control register (PF BAR0 0x0C00 + 4n).
pub mod p2v {
    /// Write 1: the PF posted a message (sets V2P.PFSTS, interrupts the VF). Reads 0.
    pub const STS: u32 = 1 << 0;
    /// Write 1: the PF consumed the VF's message (sets V2P.PFACK, interrupts the VF). Reads 0.
    pub const ACK: u32 = 1 << 1;
    /// Read only: the VF holds the buffer.
    pub const VFU: u32 = 1 << 2;
    /// Write 1: take the buffer (only if the VF does not hold it); write 0: release it.
    pub const PFU: u32 = 1 << 3;
    /// Write 1: force-release a stuck VF lock and drop the VF's pending REQ/ACK. Reads 0.
    pub const RVFU: u32 = 1 << 4;
    /// Every bit the register defines.
    pub const DEFINED: u32 = STS | ACK | VFU | PFU | RVFU;
}

/// Word 0 of every mailbox message (`E1000_VT_MSGTYPE_*`, `E1000_VT_MSGINFO_*` in igb's
/// `e1000_mbx.h` and igbvf's `mbx.h`).
pub mod msg {
    /// Bits 15:0: the message id.
    pub const ID_MASK: u32 = 0x0000_FFFF;
    /// Bits 23:16: MSGINFO, a per-message argument (count, add flag, sub-op).
    pub const INFO_SHIFT: u32 = 16;
    pub const INFO_MASK: u32 = 0x00FF_0000;
    /// Bits 28:24 are unused by the protocol.
    pub const RESERVED_MASK: u32 = 0x1F00_0000;
    /// The PF accepted the message.
    pub const ACK: u32 = 0x8000_0000;
    /// The PF refused the message.
    pub const NACK: u32 = 0x4000_0000;
    /// The VF is clear to send (it completed its reset handshake).
    pub const CTS: u32 = 0x2000_0000;
    pub const FLAGS_MASK: u32 = ACK | NACK | CTS;

    /// Message ids (igb `e1000_mbx.h`).
    pub const ID_VF_RESET: u16 = 0x0001;
    pub const ID_SET_MAC_ADDR: u16 = 0x0002;
    pub const ID_SET_MULTICAST: u16 = 0x0003;
    pub const ID_SET_VLAN: u16 = 0x0004;
    pub const ID_SET_LPE: u16 = 0x0005;
    pub const ID_SET_PROMISC: u16 = 0x0006;
    pub const ID_PF_CONTROL: u16 = 0x0100;

    /// SET_MAC_ADDR sub-ops carried in MSGINFO.
    pub const MAC_OP_SET: u8 = 0;
    pub const MAC_OP_FILTER_CLR: u8 = 1;
    pub const MAC_OP_FILTER_ADD: u8 = 2;

    /// SET_PROMISC flags carried in MSGINFO. igb defines only MULTICAST (0x02) and NACKs any
    /// other bit; UNICAST (0x01) is accepted from trusted VFs under `PromiscPolicy::TrustedOnly`.
    pub const PROMISC_UNICAST: u8 = 0x01;
    pub const PROMISC_MULTICAST: u8 = 0x02;

    /// SET_VLAN: MSGINFO non-zero means "add".
    pub const VLAN_INFO_ADD: u8 = 1;
    /// SET_VLAN word 1: the VID is bits 11:0 (igb masks with VLVF.VLANID).
    pub const VLAN_VID_MASK: u32 = 0x0FFF;

    /// Multicast hashes are 12-bit MTA indices (MO = 0).
    pub const MC_HASH_MASK: u16 = 0x0FFF;
    /// Word 2 of a MAC payload: bytes 4 and 5 are bits 15:0.
    pub const MAC_HI_MASK: u32 = 0x0000_FFFF;
}

/// Hardware limits the PF agent enforces (igb, 82576).
pub mod limits {
    /// SET_MULTICAST carries at most 30 hashes (15 words × 2); more means "many" → MPME.
    pub const MAX_MC_HASHES: usize = 30;
    /// VMOLR.RLPML bound igb applies to SET_LPE (`MAX_JUMBO_FRAME_SIZE`).
    pub const MAX_FRAME: u16 = 0x3F00;
    /// VLVF entries; entry 0 is reserved for VID 0, which every pool joins without a slot.
    pub const VLVF_SLOTS: usize = 32;
    /// RAR entries of the 82576.
    pub const RAR_ENTRIES: usize = 24;
    /// RAR entries igb keeps for itself besides the VFs' own: RAR0 and three PF spares.
    pub const RAR_RESERVED_FOR_PF: usize = 1 + 3;
    /// Non-CTS VFs get at most one NACK per this interval (igb: `2 * HZ`).
    pub const NACK_INTERVAL_NS: u64 = 2_000_000_000;
    /// Repeated refusals of one kind from one VF are logged at warn level at most once per this
    /// interval (the rest go to debug) so that a flooding VF cannot flood the log.
    pub const REFUSAL_LOG_INTERVAL_NS: u64 = 1_000_000_000;
}
