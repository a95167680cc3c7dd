//! The PF's internal copper PHY, IGP03-compatible at MDIO address 1, reached through MDIC
//! (igb's `igb_read_phy_reg_mdic` / `igb_write_phy_reg_mdic`, `igb_read_phy_reg_igp`).
//!
//! What igb needs of it: the IGP03 identifier (`igb_get_phy_id`, `igb_init_phy_params_82575`),
//! BMCR with reset, autonegotiation restart, power-down and loopback
//! (`igb_copper_link_autoneg`, `igb_power_up_phy_copper`, `igb_integrated_phy_loopback`,
//! `igb_phy_sw_reset`), BMSR with link and autonegotiation complete (`igb_phy_has_link`), the
//! link partner's abilities for flow control (`igb_config_fc_after_link_up`), 1000BASE-T
//! status with the remote receiver OK (`igb_watchdog_task` waits for it), and the IGP port
//! registers it reads and modifies (`igb_copper_link_setup_igp`, `igb_check_downshift`,
//! `igb_get_cable_length_igp_2`).
//!
//! Autonegotiation completes at once: the link partner is the emulator's switch, always
//! 1000/full with symmetric pause. Registers past 0x0F are reached through the page select
//! register; the page is stored and otherwise ignored (the AGC reads of
//! `igb_get_cable_length_igp_2` land on the port status register and give a short cable).

use crate::function::LinkStatus;

use super::pf_regs::mdic;

/// PHY register numbers (igb `e1000_defines.h`, `e1000_phy.h`).
pub mod reg {
    pub const BMCR: u8 = 0x00;
    pub const BMSR: u8 = 0x01;
    pub const ID1: u8 = 0x02;
    pub const ID2: u8 = 0x03;
    pub const ANAR: u8 = 0x04;
    pub const ANLPAR: u8 = 0x05;
    pub const ANER: u8 = 0x06;
    pub const GTCR: u8 = 0x09;
    pub const GTSR: u8 = 0x0A;
    pub const EXT_STATUS: u8 = 0x0F;
    pub const PORT_CONFIG: u8 = 0x10;
    pub const PORT_STATUS: u8 = 0x11;
    pub const PORT_CTRL: u8 = 0x12;
    pub const LINK_HEALTH: u8 = 0x13;
    pub const POWER_MGMT: u8 = 0x19;
    pub const PAGE_SELECT: u8 = 0x1F;
}

/// BMCR bits (igb's `MII_CR_*`).
pub mod bmcr {
    pub const SPEED_MSB: u16 = 1 << 6;
    pub const FULL_DUPLEX: u16 = 1 << 8;
    pub const RESTART_AN: u16 = 1 << 9;
    pub const ISOLATE: u16 = 1 << 10;
    pub const POWER_DOWN: u16 = 1 << 11;
    pub const AN_ENABLE: u16 = 1 << 12;
    pub const SPEED_LSB: u16 = 1 << 13;
    pub const LOOPBACK: u16 = 1 << 14;
    pub const RESET: u16 = 1 << 15;
    /// After a reset: autonegotiation on, 1000 Mb/s full duplex selected.
    pub const RESET_VALUE: u16 = AN_ENABLE | FULL_DUPLEX | SPEED_MSB;
}

/// BMSR bits (igb's `MII_SR_*`).
pub mod bmsr {
    pub const EXTENDED_CAPS: u16 = 1 << 0;
    pub const LINK_STATUS: u16 = 1 << 2;
    pub const AUTONEG_CAPS: u16 = 1 << 3;
    pub const AUTONEG_COMPLETE: u16 = 1 << 5;
    pub const PREAMBLE_SUPPRESS: u16 = 1 << 6;
    pub const EXTENDED_STATUS: u16 = 1 << 8;
    pub const CAPS_10T: u16 = (1 << 11) | (1 << 12);
    pub const CAPS_100X: u16 = (1 << 13) | (1 << 14);
    /// What the PHY can do, link or not.
    pub const ABILITIES: u16 =
        EXTENDED_CAPS | AUTONEG_CAPS | PREAMBLE_SUPPRESS | EXTENDED_STATUS | CAPS_10T | CAPS_100X;
}

/// The IGP03E1000 identifier igb accepts (`IGP03E1000_E_PHY_ID` 0x02A80390), revision 1.
pub const ID1_VALUE: u16 = 0x02A8;
pub const ID2_VALUE: u16 = 0x0391;

/// Our advertisement after reset: 10/100 half and full duplex, 802.3.
const ANAR_RESET: u16 = 0x01E1;
/// The link partner: acknowledges, symmetric pause, 10/100 half and full, 802.3.
const ANLPAR_PARTNER: u16 = 0x45E1;
/// ANER: the link partner autonegotiates.
const ANER_PARTNER_ABLE: u16 = 0x0001;
/// 1000BASE-T control after reset: 1000 half and full advertised.
const GTCR_RESET: u16 = 0x0300;
/// 1000BASE-T status: local and remote receivers OK (`SR_1000T_REMOTE_RX_STATUS` b12), the
/// partner 1000 half and full capable.
const GTSR_LINK_1000: u16 = 0x3C00;
/// Extended status: 1000BASE-T half and full capable.
const EXT_STATUS_VALUE: u16 = 0x3000;
/// IGP port status: speed b15:14, link b10, full duplex b9 (`IGP01E1000_PSSR_*`).
const PSSR_SPEED_1000: u16 = 0b11 << 14;
const PSSR_SPEED_100: u16 = 0b10 << 14;
const PSSR_SPEED_10: u16 = 0b01 << 14;
const PSSR_LINK_UP: u16 = 1 << 10;
const PSSR_FULL_DUPLEX: u16 = 1 << 9;
/// IGP port configuration after reset: SmartSpeed on (`IGP01E1000_PSCFR_SMART_SPEED`).
const PORT_CONFIG_RESET: u16 = 0x0080;

/// The link the PHY has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhyLink {
    pub speed_mbps: u32,
    pub full_duplex: bool,
}

/// The PHY's registers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Phy {
    regs: [u16; 32],
}

impl Default for Phy {
    fn default() -> Self {
        let mut phy = Phy { regs: [0; 32] };
        phy.reset();
        phy
    }
}

impl Phy {
    /// A PHY reset (CTRL.PHY_RST, BMCR.RESET): every register to its default.
    pub fn reset(&mut self) {
        self.regs = [0; 32];
        self.regs[usize::from(reg::BMCR)] = bmcr::RESET_VALUE;
        self.regs[usize::from(reg::ANAR)] = ANAR_RESET;
        self.regs[usize::from(reg::GTCR)] = GTCR_RESET;
        self.regs[usize::from(reg::PORT_CONFIG)] = PORT_CONFIG_RESET;
    }

    fn bmcr(&self) -> u16 {
        self.regs[usize::from(reg::BMCR)]
    }

    /// BMCR.LOOPBACK: what the MAC transmits comes back to it; the wire is cut off.
    pub fn loopback(&self) -> bool {
        self.bmcr() & bmcr::LOOPBACK != 0
    }

    pub fn powered_down(&self) -> bool {
        self.bmcr() & bmcr::POWER_DOWN != 0
    }

    pub fn autoneg(&self) -> bool {
        self.bmcr() & bmcr::AN_ENABLE != 0
    }

    /// Speed and duplex as BMCR forces them (autonegotiation off, or loopback).
    fn forced(&self) -> PhyLink {
        let b = self.bmcr();
        let speed_mbps = match (b & bmcr::SPEED_MSB != 0, b & bmcr::SPEED_LSB != 0) {
            (true, _) => 1000,
            (false, true) => 100,
            (false, false) => 10,
        };
        PhyLink {
            speed_mbps,
            full_duplex: b & bmcr::FULL_DUPLEX != 0,
        }
    }

    /// The link the PHY has, given the wire's and whether the MAC holds it in reset
    /// (CTRL.PHY_RST). Loopback has a link of its own at the forced speed; otherwise a
    /// powered, non-isolated PHY has the wire's link: negotiated with the partner, or forced.
    pub fn link(&self, wire: LinkStatus, in_reset: bool) -> Option<PhyLink> {
        if in_reset {
            return None;
        }
        if self.loopback() {
            return Some(self.forced());
        }
        if self.powered_down() || self.bmcr() & bmcr::ISOLATE != 0 || !wire.up {
            return None;
        }
        if self.autoneg() {
            Some(PhyLink {
                speed_mbps: wire.speed_mbps,
                full_duplex: wire.full_duplex,
            })
        } else {
            Some(self.forced())
        }
    }

    /// Register `r` as read with link `link`.
    pub fn read(&self, r: u8, link: Option<PhyLink>) -> u16 {
        let negotiated = link.is_some() && self.autoneg() && !self.loopback();
        match r & 0x1F {
            reg::BMSR => {
                let mut v = bmsr::ABILITIES;
                if link.is_some() {
                    v |= bmsr::LINK_STATUS;
                }
                if negotiated {
                    v |= bmsr::AUTONEG_COMPLETE;
                }
                v
            }
            reg::ID1 => ID1_VALUE,
            reg::ID2 => ID2_VALUE,
            reg::ANLPAR if negotiated => ANLPAR_PARTNER,
            reg::ANER if negotiated => ANER_PARTNER_ABLE,
            reg::ANLPAR | reg::ANER => 0,
            reg::GTSR => match link {
                Some(l) if l.speed_mbps >= 1000 => GTSR_LINK_1000,
                _ => 0,
            },
            reg::EXT_STATUS => EXT_STATUS_VALUE,
            reg::PORT_STATUS => link.map_or(0, |l| {
                let speed = match l.speed_mbps {
                    s if s >= 1000 => PSSR_SPEED_1000,
                    s if s >= 100 => PSSR_SPEED_100,
                    _ => PSSR_SPEED_10,
                };
                let duplex = if l.full_duplex { PSSR_FULL_DUPLEX } else { 0 };
                speed | PSSR_LINK_UP | duplex
            }),
            // No downshift ever happened.
            reg::LINK_HEALTH => 0,
            other => self.regs[usize::from(other)],
        }
    }

    /// Register `r` written with `value`. BMCR.RESET resets the PHY; RESET and RESTART_AN
    /// self-clear (the restart completes at once). Status and identifier registers ignore
    /// writes.
    pub fn write(&mut self, r: u8, value: u16) {
        match r & 0x1F {
            reg::BMCR if value & bmcr::RESET != 0 => self.reset(),
            reg::BMCR => {
                self.regs[usize::from(reg::BMCR)] = value & !(bmcr::RESET | bmcr::RESTART_AN)
            }
            reg::BMSR
            | reg::ID1
            | reg::ID2
            | reg::ANLPAR
            | reg::ANER
            | reg::GTSR
            | reg::EXT_STATUS
            | reg::PORT_STATUS
            | reg::LINK_HEALTH => {}
            other => self.regs[usize::from(other)] = value,
        }
    }

    /// An MDIC write: performs the access at once and answers what MDIC then reads (READY,
    /// the data of a read, ERROR for another PHY address or an opcode that is neither read nor
    /// write). `link` is the link the PHY has before the access.
    pub fn mdic(&mut self, value: u32, link: Option<PhyLink>) -> u32 {
        let addr = (value & mdic::PHY_MASK) >> mdic::PHY_SHIFT;
        let r = ((value & mdic::REG_MASK) >> mdic::REG_SHIFT) as u8;
        let fields = value & (mdic::REG_MASK | mdic::PHY_MASK | mdic::OP_MASK | mdic::INT_EN);
        let data = value & mdic::DATA_MASK;
        if addr != mdic::INTERNAL_PHY {
            return fields | data | mdic::READY | mdic::ERROR;
        }
        match value & mdic::OP_MASK {
            mdic::OP_READ => fields | u32::from(self.read(r, link)) | mdic::READY,
            mdic::OP_WRITE => {
                self.write(r, data as u16);
                fields | data | mdic::READY
            }
            _ => fields | data | mdic::READY | mdic::ERROR,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UP: LinkStatus = LinkStatus::UP_1000_FD;

    fn op_read(r: u8) -> u32 {
        mdic::OP_READ | (mdic::INTERNAL_PHY << mdic::PHY_SHIFT) | (u32::from(r) << mdic::REG_SHIFT)
    }

    fn op_write(r: u8, v: u16) -> u32 {
        mdic::OP_WRITE
            | (mdic::INTERNAL_PHY << mdic::PHY_SHIFT)
            | (u32::from(r) << mdic::REG_SHIFT)
            | u32::from(v)
    }

    #[test]
    fn igb_reads_the_igp03_id_at_address_1_and_errors_elsewhere() {
        let mut phy = Phy::default();
        let id1 = phy.mdic(op_read(reg::ID1), None);
        let id2 = phy.mdic(op_read(reg::ID2), None);
        assert_ne!(id1 & mdic::READY, 0);
        assert_eq!(id1 & mdic::ERROR, 0);
        // igb_get_phy_id: id = ID1 << 16 | (ID2 & PHY_REVISION_MASK).
        let id = ((id1 & 0xFFFF) << 16) | (id2 & 0xFFF0);
        assert_eq!(id, 0x02A8_0390);
        let other = phy.mdic(op_read(reg::ID1) + (1 << mdic::PHY_SHIFT), None);
        assert_ne!(other & mdic::ERROR, 0);
        assert_ne!(other & mdic::READY, 0);
    }

    #[test]
    fn autoneg_completes_at_once_with_the_wire_up() {
        let mut phy = Phy::default();
        let link = phy.link(UP, false);
        assert_eq!(
            link,
            Some(PhyLink {
                speed_mbps: 1000,
                full_duplex: true
            })
        );
        let bmsr = phy.read(reg::BMSR, link);
        assert_ne!(bmsr & bmsr::LINK_STATUS, 0);
        assert_ne!(bmsr & bmsr::AUTONEG_COMPLETE, 0);
        assert_ne!(phy.read(reg::GTSR, link) & 0x1000, 0, "remote receiver OK");
        assert_ne!(phy.read(reg::ANLPAR, link) & 0x0400, 0, "partner pauses");
        // Power down: no link; the driver's read-modify-write powers it up again.
        phy.write(reg::BMCR, bmcr::RESET_VALUE | bmcr::POWER_DOWN);
        assert_eq!(phy.link(UP, false), None);
        let b = phy.mdic(op_read(reg::BMCR), None) as u16;
        phy.mdic(op_write(reg::BMCR, b & !bmcr::POWER_DOWN), None);
        assert!(phy.link(UP, false).is_some());
        // Restart self-clears.
        phy.write(reg::BMCR, bmcr::RESET_VALUE | bmcr::RESTART_AN);
        assert_eq!(phy.read(reg::BMCR, None), bmcr::RESET_VALUE);
        // Wire down or PHY held in reset: no link.
        assert_eq!(phy.link(LinkStatus::DOWN, false), None);
        assert_eq!(phy.link(UP, true), None);
    }

    #[test]
    fn loopback_links_without_the_wire_until_a_soft_reset() {
        let mut phy = Phy::default();
        // igb_integrated_phy_loopback: BMCR = 0x4140.
        phy.mdic(op_write(reg::BMCR, 0x4140), None);
        assert!(phy.loopback());
        assert_eq!(
            phy.link(LinkStatus::DOWN, false),
            Some(PhyLink {
                speed_mbps: 1000,
                full_duplex: true
            })
        );
        // igb_loopback_cleanup: clear LOOPBACK, then a soft reset.
        phy.write(reg::BMCR, 0x0140);
        phy.write(reg::BMCR, 0x0140 | bmcr::RESET);
        assert!(!phy.loopback());
        assert_eq!(phy.read(reg::BMCR, None), bmcr::RESET_VALUE);
    }

    #[test]
    fn status_registers_ignore_writes_and_others_store() {
        let mut phy = Phy::default();
        phy.write(reg::ID1, 0);
        phy.write(reg::BMSR, 0xFFFF);
        assert_eq!(phy.read(reg::ID1, None), ID1_VALUE);
        assert_eq!(phy.read(reg::BMSR, None), bmsr::ABILITIES);
        phy.write(reg::POWER_MGMT, 0x1234);
        assert_eq!(phy.read(reg::POWER_MGMT, None), 0x1234);
        let bad_op = phy.mdic(op_read(reg::ID1) | mdic::OP_MASK, None);
        assert_ne!(bad_op & mdic::ERROR, 0);
    }
}
