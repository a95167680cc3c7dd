//! [`RegMap`]: where each card's VF has the registers both drivers program alike.

use crate::function::card_vf::Card;

/// Where a card's VF keeps the registers both drivers program alike: byte offsets in BAR0.
/// Queue registers are queue 0's; inside a queue's block both cards put the ring base, length,
/// head, tail and control at the same offsets and only SRRCTL and the DCA control differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegMap {
    pub ctrl: u64,
    pub status: u64,
    pub mailbox: u64,
    pub mbmem: u64,
    pub eicr: u64,
    pub eims: u64,
    pub eimc: u64,
    pub eiac: u64,
    pub eiam: u64,
    pub eitr0: u64,
    pub ivar0: u64,
    pub ivar_misc: u64,
    /// Queue 0's RX and TX blocks.
    pub rx: u64,
    pub tx: u64,
    /// Offsets inside a queue block.
    pub srrctl: u64,
    pub dca: u64,
}

/// Offsets inside a queue block the two cards share.
pub(super) mod qreg {
    pub const DBAL: u64 = 0x00;
    pub const DBAH: u64 = 0x04;
    pub const DLEN: u64 = 0x08;
    pub const DH: u64 = 0x10;
    pub const DT: u64 = 0x18;
    pub const DCTL: u64 = 0x28;
}

impl RegMap {
    /// The 82576 VF (igbvf `regs.h`).
    pub fn i82576() -> RegMap {
        use crate::function::i82576::regs as r;
        RegMap {
            ctrl: r::VTCTRL,
            status: r::VTSTATUS,
            mailbox: r::V2PMAILBOX,
            mbmem: r::VMBMEM,
            eicr: r::VTEICR,
            eims: r::VTEIMS,
            eimc: r::VTEIMC,
            eiac: r::VTEIAC,
            eiam: r::VTEIAM,
            eitr0: r::VTEITR0,
            ivar0: r::VTIVAR,
            ivar_misc: r::VTIVAR_MISC,
            rx: r::RX_BASE,
            tx: r::TX_BASE,
            srrctl: r::q::SRRCTL,
            dca: r::q::DCA_CTL,
        }
    }

    /// The 82599 VF (ixgbevf `regs.h`; the mailbox is `mailbox::ixgbe`'s).
    pub fn x82599() -> RegMap {
        use crate::function::x82599::regs as r;
        use mailbox::ixgbe::regs::vf_bar;
        RegMap {
            ctrl: r::VFCTRL,
            status: r::VFSTATUS,
            mailbox: vf_bar::VFMAILBOX,
            mbmem: vf_bar::VFMBMEM,
            eicr: r::VTEICR,
            eims: r::VTEIMS,
            eimc: r::VTEIMC,
            eiac: r::VTEIAC,
            eiam: r::VTEIAM,
            eitr0: r::VTEITR0,
            ivar0: r::VTIVAR0,
            ivar_misc: r::VTIVAR_MISC,
            rx: r::RX_BASE,
            tx: r::TX_BASE,
            srrctl: r::rxq::SRRCTL,
            dca: r::rxq::DCA_RXCTRL,
        }
    }

    pub fn of(card: Card) -> RegMap {
        match card {
            Card::I82576 => RegMap::i82576(),
            Card::X82599 => RegMap::x82599(),
        }
    }
}
