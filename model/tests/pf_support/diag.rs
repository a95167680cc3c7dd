//! `ethtool -t` offline: the five parts of igb's `igb_diag_test`, with the result codes igb
//! reports.

use super::*;

/// Register test entry types of igb's `reg_test_82576`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegTest {
    Pattern,
    SetRead,
    WriteNoTest,
    Table32,
    Table64Lo,
    Table64Hi,
}

/// One entry of the 82576 register test: offset, stride, count, type, mask, write.
pub type RegEntry = (u64, u64, u64, RegTest, u32, u32);

/// igb's `reg_test_82576`, in execution order (igb_ethtool.c).
pub const REG_TEST_82576: &[RegEntry] = &[
    (0x0028, 0, 1, RegTest::Pattern, 0xFFFF_FFFF, 0xFFFF_FFFF),
    (0x002C, 0, 1, RegTest::Pattern, 0x0000_FFFF, 0xFFFF_FFFF),
    (0x0030, 0, 1, RegTest::Pattern, 0x0000_FFFF, 0xFFFF_FFFF),
    (0x0038, 0, 1, RegTest::Pattern, 0xFFFF_FFFF, 0xFFFF_FFFF),
    (0x2800, 0x100, 4, RegTest::Pattern, 0xFFFF_FF80, 0xFFFF_FFFF),
    (0x2804, 0x100, 4, RegTest::Pattern, 0xFFFF_FFFF, 0xFFFF_FFFF),
    (0x2808, 0x100, 4, RegTest::Pattern, 0x000F_FFF0, 0x000F_FFFF),
    (0xC100, 0x40, 12, RegTest::Pattern, 0xFFFF_FF80, 0xFFFF_FFFF),
    (0xC104, 0x40, 12, RegTest::Pattern, 0xFFFF_FFFF, 0xFFFF_FFFF),
    (0xC108, 0x40, 12, RegTest::Pattern, 0x000F_FFF0, 0x000F_FFFF),
    (0x2828, 0x100, 4, RegTest::WriteNoTest, 0, 0x0200_0000),
    (0xC128, 0x40, 12, RegTest::WriteNoTest, 0, 0x0200_0000),
    (0x2818, 0x100, 4, RegTest::Pattern, 0x0000_FFFF, 0x0000_FFFF),
    (0xC118, 0x40, 12, RegTest::Pattern, 0x0000_FFFF, 0x0000_FFFF),
    (0x2828, 0x100, 4, RegTest::WriteNoTest, 0, 0),
    (0xC128, 0x40, 12, RegTest::WriteNoTest, 0, 0),
    (0x2168, 0, 1, RegTest::Pattern, 0x0000_FFF0, 0x0000_FFF0),
    (0x0170, 0, 1, RegTest::Pattern, 0x0000_FFFF, 0x0000_FFFF),
    (0x0410, 0, 1, RegTest::Pattern, 0x3FFF_FFFF, 0x3FFF_FFFF),
    (0x3800, 0x100, 4, RegTest::Pattern, 0xFFFF_FF80, 0xFFFF_FFFF),
    (0x3804, 0x100, 4, RegTest::Pattern, 0xFFFF_FFFF, 0xFFFF_FFFF),
    (0x3808, 0x100, 4, RegTest::Pattern, 0x000F_FFF0, 0x000F_FFFF),
    (0xE100, 0x40, 12, RegTest::Pattern, 0xFFFF_FF80, 0xFFFF_FFFF),
    (0xE104, 0x40, 12, RegTest::Pattern, 0xFFFF_FFFF, 0xFFFF_FFFF),
    (0xE108, 0x40, 12, RegTest::Pattern, 0x000F_FFF0, 0x000F_FFFF),
    (0x0100, 0, 1, RegTest::SetRead, 0xFFFF_FFFF, 0x0000_0000),
    (0x0100, 0, 1, RegTest::SetRead, 0x04CF_B0FE, 0x003F_FFFB),
    (0x0100, 0, 1, RegTest::SetRead, 0x04CF_B0FE, 0xFFFF_FFFF),
    (0x0400, 0, 1, RegTest::SetRead, 0xFFFF_FFFF, 0x0000_0000),
    (0x5400, 0, 16, RegTest::Table64Lo, 0xFFFF_FFFF, 0xFFFF_FFFF),
    (0x5400, 0, 16, RegTest::Table64Hi, 0x83FF_FFFF, 0xFFFF_FFFF),
    (0x54E0, 0, 8, RegTest::Table64Lo, 0xFFFF_FFFF, 0xFFFF_FFFF),
    (0x54E0, 0, 8, RegTest::Table64Hi, 0x83FF_FFFF, 0xFFFF_FFFF),
    (0x5200, 0, 128, RegTest::Table32, 0xFFFF_FFFF, 0xFFFF_FFFF),
];

impl Igb {
    /// `reg_pattern_test`: 0 or the offset of the failing register.
    fn pattern(rig: &mut Rig, off: u64, mask: u32, write: u32) -> u64 {
        for p in [0x5A5A_5A5A, 0xA5A5_A5A5, 0x0000_0000, 0xFFFF_FFFF] {
            rig.wr(off, p & write);
            let v = rig.rd(off);
            if v & mask != p & write & mask {
                return off;
            }
        }
        0
    }

    /// `reg_set_and_check`.
    fn set_read(rig: &mut Rig, off: u64, mask: u32, write: u32) -> u64 {
        rig.wr(off, write & mask);
        if rig.rd(off) & mask != write & mask {
            return off;
        }
        0
    }

    /// `igb_reg_test`: the STATUS check (1 on failure), then `reg_test_82576` in order; the
    /// offset of the first failing register.
    pub fn reg_test(&mut self, rig: &mut Rig) -> u64 {
        let toggle = 0x7FFF_F3FF;
        let before = rig.rd(r::STATUS);
        let value = rig.rd(r::STATUS) & toggle;
        rig.wr(r::STATUS, toggle);
        let after = rig.rd(r::STATUS) & toggle;
        if value != after {
            return 1;
        }
        rig.wr(r::STATUS, before);
        for &(reg0, stride, count, kind, mask, write) in REG_TEST_82576 {
            for i in 0..count {
                let failed = match kind {
                    RegTest::Pattern => Self::pattern(rig, reg0 + i * stride, mask, write),
                    RegTest::SetRead => Self::set_read(rig, reg0 + i * stride, mask, write),
                    RegTest::WriteNoTest => {
                        rig.wr(reg0 + i * stride, write);
                        0
                    }
                    RegTest::Table32 => Self::pattern(rig, reg0 + 4 * i, mask, write),
                    RegTest::Table64Lo => Self::pattern(rig, reg0 + 8 * i, mask, write),
                    RegTest::Table64Hi => Self::pattern(rig, reg0 + 4 + 8 * i, mask, write),
                };
                if failed != 0 {
                    return failed;
                }
            }
        }
        0
    }

    /// `igb_eeprom_test`: 2 on a bad checksum or a read that does not complete.
    pub fn eeprom_test(&mut self, rig: &mut Rig) -> u64 {
        match Self::validate_nvm(rig) {
            Ok(()) => 0,
            Err(_) => 2,
        }
    }

    /// The test handler `igb_test_intr`: runs for each vector-0 interrupt, reads ICR.
    fn test_handler(rig: &mut Rig, test_icr: &mut u32) {
        let fired = rig.irqs();
        for v in fired {
            if v == 0 {
                *test_icr |= rig.rd(r::ICR);
            }
        }
    }

    /// `igb_intr_test`: MSI-X takes the shared path (phase B only), MSI all three phases;
    /// 0, 3 (masked cause delivered), 4 (enabled cause not delivered) or 5 (cause delivered
    /// while only others were forced).
    pub fn intr_test(&mut self, rig: &mut Rig) -> u64 {
        let shared = self.mode == IrqMode::Msix;
        if shared {
            rig.wr(r::IVAR_MISC, 0x80 << 8);
            rig.wr(r::EIMS, 1);
        }
        rig.wr(r::IMC, 0xFFFF_FFFF);
        let _ = rig.rd(r::STATUS);
        rig.sleep(10_000_000);
        // What was signalled before went to the handlers igb_close freed.
        rig.irqs();
        let ics_mask = 0x77D4_FBFDu32;
        let mut result = 0;
        for i in 0..31 {
            let mask = 1u32 << i;
            if ics_mask & mask == 0 {
                continue;
            }
            let mut test_icr = 0;
            if !shared {
                rig.wr(r::ICR, 0xFFFF_FFFF);
                rig.wr(r::IMC, mask);
                rig.wr(r::ICS, mask);
                let _ = rig.rd(r::STATUS);
                rig.sleep(10_000_000);
                Self::test_handler(rig, &mut test_icr);
                if test_icr & mask != 0 {
                    result = 3;
                    break;
                }
            }
            test_icr = 0;
            rig.wr(r::ICR, 0xFFFF_FFFF);
            rig.wr(r::IMS, mask);
            rig.wr(r::ICS, mask);
            let _ = rig.rd(r::STATUS);
            rig.sleep(10_000_000);
            Self::test_handler(rig, &mut test_icr);
            if test_icr & mask == 0 {
                result = 4;
                break;
            }
            if !shared {
                test_icr = 0;
                rig.wr(r::ICR, 0xFFFF_FFFF);
                rig.wr(r::IMC, !mask);
                rig.wr(r::ICS, !mask);
                let _ = rig.rd(r::STATUS);
                rig.sleep(10_000_000);
                Self::test_handler(rig, &mut test_icr);
                if test_icr & mask != 0 {
                    result = 5;
                    break;
                }
            }
        }
        rig.wr(r::IMC, 0xFFFF_FFFF);
        let _ = rig.rd(r::STATUS);
        rig.sleep(10_000_000);
        Self::test_handler(rig, &mut 0);
        result
    }

    /// `igb_create_lbtest_frame`: 256 bytes of 0xFF, the second half 0xAA but for 0xBE at 138,
    /// 0xAF at 140 and the last byte.
    pub fn lbtest_frame() -> Vec<u8> {
        let mut f = vec![0xFFu8; 256];
        f[128..255].fill(0xAA);
        f[138] = 0xBE;
        f[140] = 0xAF;
        f
    }

    /// `igb_setup_desc_rings` for test queue 0 (no VFs).
    fn setup_desc_rings(&mut self, rig: &mut Rig) {
        rig.wr(r::TX_LOW + q::DCTL, 0);
        let t = rig.rd(r::TCTL);
        rig.wr(
            r::TCTL,
            (t & !tctl::CT_MASK) | tctl::PSP | tctl::RTLC | (15 << 4) | tctl::EN,
        );
        self.configure_tx_ring(rig, 0);
        rig.wr(r::MRQC, 0);
        let rc = rig.rd(r::RCTL);
        let rc = (rc & !(rctl::MO_MASK | rctl::LBM_MASK | rctl::SBP | rctl::BSIZE_MASK))
            | rctl::EN
            | rctl::BAM
            | rctl::SECRC
            | rctl::LPE;
        rig.wr(r::RCTL, rc);
        rig.wr(r::RX_LOW + q::DCTL, 0);
        self.configure_rx_ring(rig, 0);
        let vmolr = rig.rd(r::VMOLR0);
        rig.wr(r::VMOLR0, vmolr | (1 << 27));
        self.alloc_rx(rig, 0, RING - 1);
    }

    /// `igb_integrated_phy_loopback` (IGP3): BMCR = 0x4140, CTRL forced to 1000/full.
    fn phy_loopback(&mut self, rig: &mut Rig) -> Result<(), IgbError> {
        rig.sleep(50_000_000);
        Self::write_phy(rig, u32::from(reg::BMCR), 0x4140)?;
        let c = rig.rd(r::CTRL);
        let c = (c & !ctrl::SPD_MASK)
            | ctrl::FRCSPD
            | ctrl::FRCDPX
            | ctrl::SPD_1000
            | ctrl::FD
            | ctrl::SLU;
        rig.wr(r::CTRL, c);
        rig.sleep(500_000_000);
        Ok(())
    }

    /// `igb_loopback_cleanup`.
    fn loopback_cleanup(&mut self, rig: &mut Rig) -> Result<(), IgbError> {
        let rc = rig.rd(r::RCTL);
        rig.wr(r::RCTL, rc & !rctl::LBM_MASK);
        let b = Self::read_phy(rig, u32::from(reg::BMCR))?;
        if b & bmcr::LOOPBACK != 0 {
            Self::write_phy(rig, u32::from(reg::BMCR), b & !bmcr::LOOPBACK)?;
            let b = Self::read_phy(rig, u32::from(reg::BMCR))?;
            Self::write_phy(rig, u32::from(reg::BMCR), b | bmcr::RESET)?;
        }
        Ok(())
    }

    /// `igb_run_loopback_test`: 10 rounds of 64 frames; 12 if a frame is refused, 13 if a
    /// round does not bring exactly 64 good frames back.
    fn run_loopback(&mut self, rig: &mut Rig) -> u64 {
        let frame = Self::lbtest_frame();
        for _ in 0..10 {
            for _ in 0..64 {
                self.xmit(rig, 0, &frame);
            }
            rig.sleep(200_000_000);
            let got = self.clean_rx(rig, 0);
            let good = got
                .iter()
                .filter(|(f, _, _)| f[3] == 0xFF && f[138] == 0xBE && f[140] == 0xAF)
                .count();
            if got.len() != 64 || good != 64 {
                return 13;
            }
        }
        0
    }

    /// `igb_loopback_test` with PHY loopback (copper): 0 or the error code.
    pub fn loopback_test(&mut self, rig: &mut Rig) -> u64 {
        if rig.rd(r::MANC) & (1 << 18) != 0 {
            return 0;
        }
        self.setup_desc_rings(rig);
        if self.phy_loopback(rig).is_err() {
            return 11;
        }
        let result = self.run_loopback(rig);
        let _ = self.loopback_cleanup(rig);
        result
    }

    /// `igb_link_test` (copper, autoneg): the link check, five seconds, STATUS.LU.
    pub fn link_test(&mut self, rig: &mut Rig) -> u64 {
        let _ = Self::read_phy(rig, u32::from(reg::BMSR));
        let _ = Self::read_phy(rig, u32::from(reg::BMSR));
        rig.sleep(5_000_000_000);
        if rig.rd(r::STATUS) & status::LU == 0 {
            1
        } else {
            0
        }
    }

    /// `igb_diag_test`, offline, with the interface down: the five results in ethtool's order
    /// (register, EEPROM, interrupt, loopback, link).
    pub fn diag_test_offline(&mut self, rig: &mut Rig) -> Result<[u64; 5], IgbError> {
        let mut data = [0u64; 5];
        self.power_up_link(rig)?;
        data[4] = self.link_test(rig);
        self.igb_reset(rig)?;
        data[0] = self.reg_test(rig);
        self.igb_reset(rig)?;
        data[1] = self.eeprom_test(rig);
        self.igb_reset(rig)?;
        data[2] = self.intr_test(rig);
        self.igb_reset(rig)?;
        self.power_up_link(rig)?;
        data[3] = self.loopback_test(rig);
        // Restore: igb_reset, then wait for autonegotiation (BMSR.AN_COMPLETE).
        self.igb_reset(rig)?;
        if self.running {
            self.power_up_link(rig)?;
        }
        Ok(data)
    }
}
