//! The software igb: probe, open and the rings, in the order Linux igb (6.1) does them.

use super::*;

/// What an igb step reported when it failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IgbError {
    /// `-E1000_ERR_PHY`: MDIC did not complete, or reported an error.
    Phy,
    /// `-E1000_ERR_NVM`: an EERD read did not complete.
    Nvm,
    /// "The NVM Checksum Is Not Valid".
    Checksum,
    /// "Invalid MAC Address".
    Mac,
    /// The semaphores could not be taken.
    Semaphore,
    /// The PHY id is not one igb supports.
    PhyId(u32),
}

/// igb's `E1000_SWFW_PHY0_SM`.
const SWFW_PHY0: u32 = 0x02;
/// Polls igb makes before giving up (EERD: 100 000; MDIC: 1920; here the model answers at
/// once, so a handful proves it).
const POLLS: usize = 8;

/// The software igb: the driver's state between calls.
#[derive(Debug)]
pub struct Igb {
    pub mode: IrqMode,
    pub mac: MacAddr,
    pub phy_id: u32,
    /// Whether the netdev is running (igb_reset powers the PHY down when it is not).
    pub running: bool,
    /// TX next_to_use.
    pub tx_next: u32,
    /// RX next_to_clean and next_to_use.
    pub rx_clean: u32,
    pub rx_use: u32,
}

impl Igb {
    pub fn new(mode: IrqMode) -> Igb {
        Igb {
            mode,
            mac: MacAddr::ZERO,
            phy_id: 0,
            running: false,
            tx_next: 0,
            rx_clean: 0,
            rx_use: 0,
        }
    }

    // ----- semaphores (igb_get_hw_semaphore, igb_acquire_swfw_sync_82575) -----

    fn get_hw_semaphore(rig: &mut Rig) -> Result<(), IgbError> {
        let free = (0..POLLS).any(|_| rig.rd(r::SWSM) & swsm::SMBI == 0);
        if !free {
            return Err(IgbError::Semaphore);
        }
        for _ in 0..POLLS {
            let v = rig.rd(r::SWSM);
            rig.wr(r::SWSM, v | swsm::SWESMBI);
            if rig.rd(r::SWSM) & swsm::SWESMBI != 0 {
                return Ok(());
            }
        }
        Self::put_hw_semaphore(rig);
        Err(IgbError::Semaphore)
    }

    fn put_hw_semaphore(rig: &mut Rig) {
        let v = rig.rd(r::SWSM);
        rig.wr(r::SWSM, v & !(swsm::SMBI | swsm::SWESMBI));
    }

    fn acquire_swfw(rig: &mut Rig, mask: u32) -> Result<(), IgbError> {
        for _ in 0..POLLS {
            Self::get_hw_semaphore(rig)?;
            let sync = rig.rd(r::SW_FW_SYNC);
            if sync & (mask | mask << 16) == 0 {
                rig.wr(r::SW_FW_SYNC, sync | mask);
                Self::put_hw_semaphore(rig);
                return Ok(());
            }
            Self::put_hw_semaphore(rig);
        }
        Err(IgbError::Semaphore)
    }

    fn release_swfw(rig: &mut Rig, mask: u32) {
        while Self::get_hw_semaphore(rig).is_err() {}
        let sync = rig.rd(r::SW_FW_SYNC);
        rig.wr(r::SW_FW_SYNC, sync & !mask);
        Self::put_hw_semaphore(rig);
    }

    // ----- PHY (igb_read_phy_reg_igp, igb_read_phy_reg_mdic) -----

    fn mdic(rig: &mut Rig, cmd: u32) -> Result<u16, IgbError> {
        rig.wr(r::MDIC, cmd);
        for _ in 0..POLLS {
            let v = rig.rd(r::MDIC);
            if v & mdic::READY != 0 {
                if v & mdic::ERROR != 0 {
                    return Err(IgbError::Phy);
                }
                return Ok(v as u16);
            }
        }
        Err(IgbError::Phy)
    }

    fn mdic_cmd(op: u32, offset: u32, data: u16) -> u32 {
        op | ((offset & 0x1F) << mdic::REG_SHIFT)
            | (mdic::INTERNAL_PHY << mdic::PHY_SHIFT)
            | u32::from(data)
    }

    /// One access to PHY register `offset` under the PHY semaphore, through the page select
    /// for registers past 0x0F (`igb_read_phy_reg_igp`, `igb_write_phy_reg_igp`).
    fn phy_access(rig: &mut Rig, offset: u32, op: u32, data: u16) -> Result<u16, IgbError> {
        Self::acquire_swfw(rig, SWFW_PHY0)?;
        let page = u32::from(reg::PAGE_SELECT);
        let result = if offset > 0xF {
            Self::mdic(rig, Self::mdic_cmd(mdic::OP_WRITE, page, offset as u16))
        } else {
            Ok(0)
        }
        .and_then(|_| Self::mdic(rig, Self::mdic_cmd(op, offset, data)));
        Self::release_swfw(rig, SWFW_PHY0);
        result
    }

    pub fn read_phy(rig: &mut Rig, offset: u32) -> Result<u16, IgbError> {
        Self::phy_access(rig, offset, mdic::OP_READ, 0)
    }

    pub fn write_phy(rig: &mut Rig, offset: u32, data: u16) -> Result<(), IgbError> {
        Self::phy_access(rig, offset, mdic::OP_WRITE, data).map(|_| ())
    }

    // ----- NVM (igb_read_nvm_eerd) -----

    pub fn read_nvm(rig: &mut Rig, word: u32) -> Result<u16, IgbError> {
        rig.wr(r::EERD, (word << eerd::ADDR_SHIFT) | eerd::START);
        for _ in 0..POLLS {
            let v = rig.rd(r::EERD);
            if v & eerd::DONE != 0 {
                return Ok((v >> eerd::DATA_SHIFT) as u16);
            }
        }
        Err(IgbError::Nvm)
    }

    /// `igb_validate_nvm_checksum`.
    pub fn validate_nvm(rig: &mut Rig) -> Result<(), IgbError> {
        let mut sum = 0u16;
        for w in 0..=0x3F {
            sum = sum.wrapping_add(Self::read_nvm(rig, w)?);
        }
        if sum == 0xBABA {
            Ok(())
        } else {
            Err(IgbError::Checksum)
        }
    }

    // ----- probe -----

    /// `igb_get_invariants_82575` and `igb_init_phy_params_82575`: link mode, NVM size, the
    /// PHY id at address 1.
    pub fn get_invariants(&mut self, rig: &mut Rig) -> Result<(), IgbError> {
        let link_mode = rig.rd(r::CTRL_EXT) & r::ctrl_ext::LINK_MODE_MASK;
        assert_eq!(link_mode, 0, "internal copper PHY");
        let eecd_v = rig.rd(r::EECD);
        let size = ((eecd_v & eecd::SIZE_MASK) >> eecd::SIZE_SHIFT) + 6;
        assert!(size < 15, "EERD reads, not bit-banged SPI");
        let _function = (rig.rd(r::STATUS) >> 2) & 3;
        let _fwsm = rig.rd(r::FWSM);
        let id1 = Self::read_phy(rig, u32::from(reg::ID1))?;
        let id2 = Self::read_phy(rig, u32::from(reg::ID2))?;
        self.phy_id = (u32::from(id1) << 16) | u32::from(id2 & 0xFFF0);
        if self.phy_id != 0x02A8_0390 {
            return Err(IgbError::PhyId(self.phy_id));
        }
        Ok(())
    }

    /// `igb_reset_hw_82575`.
    pub fn reset_hw(&mut self, rig: &mut Rig) -> Result<(), IgbError> {
        // igb_disable_pcie_master.
        let c = rig.rd(r::CTRL);
        rig.wr(r::CTRL, c | ctrl::GIO_MASTER_DISABLE);
        assert!(
            (0..POLLS).any(|_| rig.rd(r::STATUS) & status::GIO_MASTER_ENABLE == 0),
            "master disable takes effect"
        );
        // igb_set_pcie_completion_timeout.
        let gcr = rig.rd(r::GCR);
        rig.wr(r::GCR, gcr & !(1 << 16));
        rig.wr(r::IMC, 0xFFFF_FFFF);
        rig.wr(r::RCTL, 0);
        rig.wr(r::TCTL, tctl::PSP);
        let _ = rig.rd(r::STATUS);
        rig.sleep(10_000_000);
        let c = rig.rd(r::CTRL);
        rig.wr(r::CTRL, c | ctrl::RST);
        // igb_get_auto_rd_done.
        assert!((0..POLLS).any(|_| rig.rd(r::EECD) & eecd::AUTO_RD != 0));
        assert_ne!(rig.rd(r::EECD) & eecd::PRES, 0, "NVM present");
        rig.wr(r::IMC, 0xFFFF_FFFF);
        let _ = rig.rd(r::ICR);
        // igb_check_alt_mac_addr.
        let alt = Self::read_nvm(rig, 0x37)?;
        assert!(alt == 0xFFFF || alt == 0, "no alternate MAC");
        Ok(())
    }

    /// `igb_read_mac_addr`: RAL0/RAH0.
    pub fn read_mac(&mut self, rig: &mut Rig) -> Result<MacAddr, IgbError> {
        let l = rig.rd(r::RA).to_le_bytes();
        let h = rig.rd(r::RA + 4).to_le_bytes();
        let mac = MacAddr([l[0], l[1], l[2], l[3], h[0], h[1]]);
        if !mac.is_valid_unicast() {
            return Err(IgbError::Mac);
        }
        self.mac = mac;
        Ok(mac)
    }

    /// `igb_phy_hw_reset` and `igb_get_cfg_done_82575`.
    pub fn phy_hw_reset(&mut self, rig: &mut Rig) -> Result<(), IgbError> {
        assert_eq!(rig.rd(r::MANC) & (1 << 18), 0, "PHY reset not blocked");
        Self::acquire_swfw(rig, SWFW_PHY0)?;
        let c = rig.rd(r::CTRL);
        rig.wr(r::CTRL, c | ctrl::PHY_RST);
        let _ = rig.rd(r::STATUS);
        rig.wr(r::CTRL, c);
        let _ = rig.rd(r::STATUS);
        Self::release_swfw(rig, SWFW_PHY0);
        assert!((0..POLLS).any(|_| rig.rd(r::EEMNGCTL) & eemngctl::CFG_DONE_PORT_0 != 0));
        Ok(())
    }

    /// `igb_setup_link` for copper: SLU, the IGP setup (PHY reset, LPLU off, auto-MDIX),
    /// advertisement and autonegotiation restart, then the link check.
    pub fn setup_link(&mut self, rig: &mut Rig) -> Result<bool, IgbError> {
        let c = rig.rd(r::CTRL);
        rig.wr(r::CTRL, (c | ctrl::SLU) & !(ctrl::FRCSPD | ctrl::FRCDPX));
        // igb_copper_link_setup_igp.
        self.phy_hw_reset(rig)?;
        rig.sleep(100_000_000);
        let pm = Self::read_phy(rig, u32::from(reg::POWER_MGMT))?;
        Self::write_phy(rig, u32::from(reg::POWER_MGMT), pm & !0x2)?;
        let pc = Self::read_phy(rig, u32::from(reg::PORT_CTRL))?;
        Self::write_phy(rig, u32::from(reg::PORT_CTRL), pc | 0x1000)?;
        let gt = Self::read_phy(rig, u32::from(reg::GTCR))?;
        Self::write_phy(rig, u32::from(reg::GTCR), gt & !0x1000)?;
        // igb_copper_link_autoneg: 10/100/1000 full and half, symmetric pause.
        let anar = Self::read_phy(rig, u32::from(reg::ANAR))?;
        Self::write_phy(rig, u32::from(reg::ANAR), anar | 0x01E0 | 0x0C00)?;
        Self::write_phy(rig, u32::from(reg::GTCR), 0x0200)?;
        let b = Self::read_phy(rig, u32::from(reg::BMCR))?;
        Self::write_phy(
            rig,
            u32::from(reg::BMCR),
            b | bmcr::AN_ENABLE | bmcr::RESTART_AN,
        )?;
        // igb_phy_has_link: BMSR twice.
        let _ = Self::read_phy(rig, u32::from(reg::BMSR))?;
        let bmsr_v = Self::read_phy(rig, u32::from(reg::BMSR))?;
        Ok(bmsr_v & bmsr::LINK_STATUS != 0)
    }

    /// `igb_init_hw_82575`: VFTA, RAR, MTA, UTA cleared, link set up, counters cleared.
    pub fn init_hw(&mut self, rig: &mut Rig) -> Result<bool, IgbError> {
        for i in 0..128 {
            rig.wr(r::VFTA + 4 * i, 0);
        }
        // igb_init_rx_addrs: RAR0 = the MAC, the rest zero.
        let m = self.mac.0;
        rig.wr(r::RA, u32::from_le_bytes([m[0], m[1], m[2], m[3]]));
        rig.wr(
            r::RA + 4,
            u32::from(u16::from_le_bytes([m[4], m[5]])) | r::rah::AV,
        );
        for i in 1..24u64 {
            let at = if i < 16 {
                r::RA + 8 * i
            } else {
                r::RA2 + 8 * (i - 16)
            };
            rig.wr(at, 0);
            rig.wr(at + 4, 0);
        }
        for i in 0..128 {
            rig.wr(r::MTA + 4 * i, 0);
            rig.wr(r::UTA + 4 * i, 0);
        }
        let link = self.setup_link(rig)?;
        for off in (r::STATS_START..r::STATS_END).step_by(4) {
            let _ = rig.rd(off);
        }
        Ok(link)
    }

    /// `igb_power_up_link` (copper): BMCR power-down cleared, the link set up again.
    pub fn power_up_link(&mut self, rig: &mut Rig) -> Result<(), IgbError> {
        let b = Self::read_phy(rig, u32::from(reg::BMCR))?;
        Self::write_phy(rig, u32::from(reg::BMCR), b & !bmcr::POWER_DOWN)?;
        self.setup_link(rig)?;
        Ok(())
    }

    /// igb's `igb_reset` (no VFs): reset_hw, WUC, init_hw, RAR0, the PHY powered down when the
    /// netdev is not running, VET.
    pub fn igb_reset(&mut self, rig: &mut Rig) -> Result<(), IgbError> {
        let pba = rig.rd(r::RXPBS) & 0x7F;
        assert!(pba > 0, "RXPBS gives the packet buffer size");
        self.reset_hw(rig)?;
        rig.wr(r::WUC, 0);
        self.init_hw(rig)?;
        if !self.running {
            let b = Self::read_phy(rig, u32::from(reg::BMCR))?;
            Self::write_phy(rig, u32::from(reg::BMCR), b | bmcr::POWER_DOWN)?;
        }
        rig.wr(r::VET, 0x8100);
        Ok(())
    }

    /// `igb_probe`: invariants, reset, NVM checksum, MAC, `igb_reset`.
    pub fn probe(&mut self, rig: &mut Rig) -> Result<MacAddr, IgbError> {
        self.get_invariants(rig)?;
        self.reset_hw(rig)?;
        Self::validate_nvm(rig)?;
        let mac = self.read_mac(rig)?;
        self.igb_reset(rig)?;
        Ok(mac)
    }

    // ----- open -----

    /// `__igb_open` with one queue pair in the requested interrupt mode: power up, rings,
    /// RCTL/TCTL, MSI-X vectors (other → 0, the queue pair → 1), interrupts enabled.
    pub fn open(&mut self, rig: &mut Rig) -> Result<(), IgbError> {
        self.running = true;
        self.power_up_link(rig)?;
        // igb_get_hw_control.
        let ce = rig.rd(r::CTRL_EXT);
        rig.wr(r::CTRL_EXT, ce | r::ctrl_ext::DRV_LOAD);
        // igb_setup_tctl.
        rig.wr(r::TX_LOW + q::DCTL, 0);
        let t = rig.rd(r::TCTL);
        rig.wr(
            r::TCTL,
            (t & !tctl::CT_MASK) | tctl::PSP | tctl::RTLC | (15 << 4) | tctl::EN,
        );
        // igb_setup_rctl.
        let rc = rig.rd(r::RCTL);
        let rc = (rc & !(rctl::MO_MASK | rctl::LBM_MASK))
            | rctl::EN
            | rctl::BAM
            | rctl::SECRC
            | rctl::LPE
            | rctl::VFE;
        rig.wr(r::RX_LOW + q::DCTL, 0);
        rig.wr(r::RCTL, rc);
        rig.wr(r::RLPML, 1522);
        self.configure_tx_ring(rig, 0);
        self.configure_rx_ring(rig, 0);
        self.alloc_rx(rig, 0, RING - 1);
        if self.mode == IrqMode::Msix {
            // igb_configure_msix (82576).
            rig.wr(
                r::GPIE,
                gpie::MSIX_MODE | gpie::PBA | gpie::EIAME | gpie::NSICR,
            );
            rig.wr(r::IVAR_MISC, 0x80 << 8);
            // igb_assign_vector(q_vector 0 = RX0 + TX0, vector 1).
            rig.wr(r::IVAR0, 0x0000_8181);
            rig.wr(r::EITR0 + 4, 0x8000_0000);
        }
        let _ = rig.rd(r::TSICR);
        let _ = rig.rd(r::ICR);
        self.irq_enable(rig);
        Ok(())
    }

    /// `igb_irq_enable`.
    pub fn irq_enable(&mut self, rig: &mut Rig) {
        match self.mode {
            IrqMode::Msix => {
                let mask = 0b11;
                let v = rig.rd(r::EIAC);
                rig.wr(r::EIAC, v | mask);
                let v = rig.rd(r::EIAM);
                rig.wr(r::EIAM, v | mask);
                rig.wr(r::EIMS, mask);
                rig.wr(r::IMS, icr::LSC | icr::DOUTSYNC | icr::DRSTA);
            }
            IrqMode::Msi => {
                let enable =
                    icr::RXT0 | icr::TXDW | icr::RXDMT0 | icr::RXSEQ | icr::LSC | icr::DRSTA;
                rig.wr(r::IMS, enable);
                rig.wr(r::IAM, enable);
            }
        }
    }

    /// `igb_configure_tx_ring` for queue `qn` (rings of [`RING`] descriptors).
    pub fn configure_tx_ring(&mut self, rig: &mut Rig, qn: u64) {
        let base = r::TX_HIGH + qn * r::HIGH_STRIDE;
        rig.wr(base + q::DCTL, 0);
        rig.wr(base + q::DLEN, RING * 16);
        rig.wr(base + q::DBAL, TX_RING as u32);
        rig.wr(base + q::DBAH, (TX_RING >> 32) as u32);
        rig.wr(base + q::DH, 0);
        rig.wr(base + q::DT, 0);
        rig.wr(base + q::DCTL, 8 | (1 << 8) | (1 << 16) | (1 << 25));
        self.tx_next = 0;
    }

    /// `igb_configure_rx_ring` and `igb_setup_srrctl` for queue `qn`: 2 KiB buffers, a
    /// 256-byte header size, one-buffer advanced descriptors.
    pub fn configure_rx_ring(&mut self, rig: &mut Rig, qn: u64) {
        let base = r::RX_HIGH + qn * r::HIGH_STRIDE;
        rig.wr(base + q::DCTL, 0);
        rig.wr(base + q::DBAL, RX_RING as u32);
        rig.wr(base + q::DBAH, (RX_RING >> 32) as u32);
        rig.wr(base + q::DLEN, RING * 16);
        rig.wr(base + q::DH, 0);
        rig.wr(base + q::DT, 0);
        rig.wr(base + q::SRRCTL, 2 | (4 << 8) | (1 << 25));
        rig.wr(base + q::DCTL, 8 | (8 << 8) | (1 << 16) | (1 << 25));
        self.rx_clean = 0;
        self.rx_use = 0;
    }

    /// `igb_alloc_rx_buffers`: `count` descriptors from next_to_use get their packet address
    /// (only bytes 0..8: the rest is stale write-back), and the length of the descriptor after
    /// each is cleared; then RDT.
    pub fn alloc_rx(&mut self, rig: &mut Rig, qn: u64, count: u32) {
        for _ in 0..count {
            let i = self.rx_use;
            let desc = RX_RING + 16 * u64::from(i);
            rig.write_mem(desc, &(RX_BUFS + BUF * u64::from(i)).to_le_bytes());
            self.rx_use = (i + 1) % RING;
            rig.write_mem(RX_RING + 16 * u64::from(self.rx_use) + 12, &[0, 0]);
        }
        rig.wr(r::RX_HIGH + qn * r::HIGH_STRIDE + q::DT, self.rx_use);
    }

    /// One frame on TX queue `qn` as `igb_tx_map` writes it for a packet without offloads
    /// (one data descriptor: DTYP data, DEXT, IFCS, EOP, RS; PAYLEN), then TDT.
    pub fn xmit(&mut self, rig: &mut Rig, qn: u64, frame: &[u8]) {
        let i = self.tx_next;
        let buf = TX_BUFS + BUF * u64::from(i);
        rig.write_mem(buf, frame);
        let cmd = (0b0011 << 20) | (1 << 29) | (1 << 25) | (1 << 24) | (1 << 27);
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&buf.to_le_bytes());
        d[8..12].copy_from_slice(&(cmd | frame.len() as u32).to_le_bytes());
        d[12..16].copy_from_slice(&((frame.len() as u32) << 14).to_le_bytes());
        rig.write_mem(TX_RING + 16 * u64::from(i), &d);
        self.tx_next = (i + 1) % RING;
        rig.wr(r::TX_HIGH + qn * r::HIGH_STRIDE + q::DT, self.tx_next);
    }

    /// Whether TX descriptor `i` has DD written back.
    pub fn tx_done(rig: &Rig, i: u32) -> bool {
        rig.read_u32(TX_RING + 16 * u64::from(i) + 12) & 1 != 0
    }

    /// `igb_clean_rx_irq` for one-buffer frames: every descriptor from next_to_clean with a
    /// non-zero length, as (frame, status/error dword, VLAN); buffers re-armed after.
    pub fn clean_rx(&mut self, rig: &mut Rig, qn: u64) -> Vec<(Vec<u8>, u32, u16)> {
        let mut out = Vec::new();
        loop {
            let desc = RX_RING + 16 * u64::from(self.rx_clean);
            let len = rig.read_u16(desc + 12);
            if len == 0 {
                break;
            }
            let staterr = rig.read_u32(desc + 8);
            let vlan = rig.read_u16(desc + 14);
            let data = rig.read_mem(RX_BUFS + BUF * u64::from(self.rx_clean), usize::from(len));
            out.push((data, staterr, vlan));
            self.rx_clean = (self.rx_clean + 1) % RING;
        }
        if !out.is_empty() {
            self.alloc_rx(rig, qn, out.len() as u32);
        }
        out
    }
}
