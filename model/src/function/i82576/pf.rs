//! The 82576 PF (function 0, 8086:10C9) as a PCI function, for an unmodified Linux igb: config
//! space ([`pf_config_space`]), BAR0 with the registers igb's probe, reset, bring-up, link
//! handling and `ethtool -t` use, BAR1 (the flash window, inert), BAR2 (IOADDR/IODATA), BAR3
//! (the MSI-X table store), sixteen RX and TX queues with the VF's advanced descriptors and
//! offloads, the receive filters, the NVM ([`super::nvm`]), the internal PHY ([`super::phy`]),
//! interrupts ([`super::pf_intr`]), statistics ([`super::pf_stats`]) and the MAC/PHY loopback
//! modes.
//!
//! Plain single-threaded state, like the VF: the NIC runtime owns the [`Pf`] behind its lock,
//! calls it with `&mut self`, and carries out the [`Effects`] it answers with. Frames igb
//! transmits come out as [`Effects::frames`] (the runtime switches them from the PF's port);
//! frames the switch delivers come in through [`Function::receive`]. Its receive filters reach the
//! switch through the [`PfFilters`] it was built with whenever the guest changes them, while a
//! client is attached (attach tells the switch the filters as they stand).
//!
//! # What happens when
//! - **CTRL.RST** resets the MAC: every register but the PHY's, the PCI config space and the
//!   MSI-X table goes back to its reset value, RAR0 is loaded from the NVM, and the reset is
//!   complete when the write returns (igb's `igb_reset_hw_82575`). A function reset (FLR,
//!   [`Function::reset`]) also resets the PHY, the config space and the MSI-X table.
//! - **Link**: STATUS.LU is the PHY's link: the wire's (set by [`Function::set_link`]) while the PHY is
//!   powered and not held in reset, autonegotiation completing at once; in PHY loopback it is
//!   up at the forced speed. Every change raises ICR.LSC, signalled with the effects of the
//!   call that caused it ([`Function::set_link`] included).
//! - **Loopback** (BMCR.LOOPBACK, `igb_integrated_phy_loopback`; or RCTL.LBM): frames the TX
//!   queues send go through the receive filters into the PF's own RX queues, not to the
//!   switch, and frames from the switch are dropped ([`RxDrop::Isolated`]).
//! - **DMA** needs the client's memory and Bus Master Enable; TX also TCTL.EN and the queue's
//!   TXDCTL.ENABLE, RX also RCTL.EN and the chosen queue's RXDCTL.ENABLE.
//! - **RX queue**: MRQC.MRQE 000 takes MRQC's default queue (b5:3, igb's `igb_setup_desc_rings`
//!   writes its test queue there), VMDq modes the default pool's queue (VT_CTL.DEF_PL), RSS
//!   modes the queue of redirection entry 0: no RSS hash is computed (the RSS type of the
//!   write-back is 0), so every frame is an unhashed one.
//!
//! The VF-related PF registers (mailboxes, VFRE/VFTE, VMOLR, VLVF, VT_CTL, ...) are stored and
//! read back while the emulator plays the VFs' PF driver. When the guest's igb manages the VFs
//! ([`crate::nic::PfDriver::Guest`]) the runtime answers them instead, from the VFs' mailboxes
//! and [`super::pf_vmm`], and asks this function to raise ICR.VMMB
//! ([`Function::raise_vf_mailbox`]). Guest input never panics: what a register cannot hold is
//! dropped, what the hardware refuses is refused, and both are logged.

use std::sync::Arc;

use eswitch::wire::{EtherTypes, EthernetFrame};
use eswitch::{MacAddr, PfPolicy};
use tracing::{debug, info, warn};
use vm_memory::GuestAddressSpace;

use super::config::pf_config_space;
use super::nvm::{Nvm, NvmRegs};
use super::pf_filter::{Refusal, RxFilter};
use super::pf_intr::{PfIntr, QueueCause, VECTORS};
use super::pf_regs::{self as r, ctrl, ctrl_ext, eemngctl, mrqc, status, tctl, vt_ctl};
use super::pf_stats::HwStats;
use super::phy::{Phy, PhyLink};
use super::rx::{write_frame, RxRing};
use super::tx::{TxEnv, TxRing};
use super::vf::RingState;
use crate::function::faults::{DmaFaultState, DmaFaults};
use crate::function::mmio::{read_dwords, write_dwords, MsixTable};
use crate::function::stats::{AccessError, Counters, RxDrop, RxOutcome, VfStats};
use crate::function::{
    BusLayout, Effects, Fire, Function, FunctionId, GuestMem, LinkStatus, Origin,
};
use crate::seams::{Clock, PfFilters};
use pcie::{BuildError, ConfigEvent, ConfigSpace};

mod datapath;

/// Where a frame comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// The switch (the wire, a VF, the host).
    Switch,
    /// The PF's own TX queues, looped back by the PHY or the MAC.
    Loopback,
}

/// SYSTIM: the 1588 clock, advancing TIMINCA's increment every TIMINCA period (in 16 ns
/// units) of the function's clock; frozen while TIMINCA is 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Systim {
    /// SYSTIM at `base_ns`.
    base: u64,
    base_ns: u64,
    timinca: u32,
    /// SYSTIMH as latched by the last SYSTIML read.
    latched_high: u32,
}

impl Systim {
    fn value(&self, now: u64) -> u64 {
        let period = u64::from(self.timinca >> r::timinca::PERIOD_SHIFT) * 16;
        let inc = u64::from(self.timinca & r::timinca::VALUE_MASK);
        if period == 0 || inc == 0 {
            return self.base;
        }
        let ticks = now.saturating_sub(self.base_ns) / period;
        self.base.wrapping_add(ticks.wrapping_mul(inc))
    }

    fn rebase(&mut self, now: u64, value: u64) {
        self.base = value;
        self.base_ns = now;
    }
}

/// The 82576 PF function.
pub struct Pf {
    cfg: ConfigSpace,
    filters: Arc<dyn PfFilters>,
    clock: Arc<dyn Clock>,
    mem: Option<GuestMem>,
    nvm: Nvm,
    nvm_regs: NvmRegs,
    ctrl: u32,
    ctrl_ext: u32,
    /// STATUS.PHYRA.
    phyra: bool,
    phy: Phy,
    mdic: u32,
    swsm: u32,
    sw_fw_sync: u32,
    intr: PfIntr,
    filter: RxFilter,
    tctl: u32,
    rx: [RxRing; r::QUEUES],
    tx: [TxRing; r::QUEUES],
    /// The plain registers, one vector per run of [`r::STORAGE`].
    storage: Vec<Vec<u32>>,
    hw_stats: HwStats,
    counters: Counters,
    /// Injected DMA faults (`ctl fault dma pf ...`).
    dma_faults: DmaFaults,
    systim: Systim,
    /// The wire's link ([`Function::set_link`]).
    wire: LinkStatus,
    /// STATUS.LU as last reported: a change raises LSC.
    link_up: bool,
    msix: MsixTable<VECTORS>,
    /// BAR2's IOADDR.
    ioaddr: u32,
    /// What the switch was last told.
    pushed_policy: Option<PfPolicy>,
    pushed_strip: Option<bool>,
}

impl std::fmt::Debug for Pf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pf")
            .field("mac", &self.nvm.mac())
            .finish_non_exhaustive()
    }
}

fn storage_reset() -> Vec<Vec<u32>> {
    r::STORAGE
        .iter()
        .map(|s| vec![s.reset; s.count as usize])
        .collect()
}

impl Pf {
    /// The PF with station address `mac` (NVM words 0–2, RAR0 after every reset), the 82576 PF
    /// config space, telling the switch its receive filters through `filters`, with time (for
    /// interrupt moderation and SYSTIM) from `clock`. The link starts up at 1000/full.
    pub fn new(
        mac: MacAddr,
        filters: Arc<dyn PfFilters>,
        clock: Arc<dyn Clock>,
    ) -> Result<Pf, BuildError> {
        Ok(Pf::with_config(pf_config_space()?, mac, filters, clock))
    }

    /// The PF with a config space built by the caller.
    pub fn with_config(
        cfg: ConfigSpace,
        mac: MacAddr,
        filters: Arc<dyn PfFilters>,
        clock: Arc<dyn Clock>,
    ) -> Pf {
        let nvm = Nvm::new(mac);
        let mut pf = Pf {
            cfg,
            filters,
            clock,
            mem: None,
            filter: RxFilter::new(nvm.mac()),
            nvm,
            nvm_regs: NvmRegs::default(),
            ctrl: ctrl::RESET,
            ctrl_ext: 0,
            phyra: false,
            phy: Phy::default(),
            mdic: 0,
            swsm: 0,
            sw_fw_sync: 0,
            intr: PfIntr::default(),
            tctl: tctl::RESET,
            rx: std::array::from_fn(RxRing::reset_value),
            tx: std::array::from_fn(TxRing::reset_value),
            storage: storage_reset(),
            hw_stats: HwStats::default(),
            counters: Counters::default(),
            dma_faults: DmaFaults::default(),
            systim: Systim::default(),
            wire: LinkStatus::UP_1000_FD,
            link_up: false,
            msix: MsixTable::default(),
            ioaddr: 0,
            pushed_policy: None,
            pushed_strip: None,
        };
        pf.link_up = pf.phy_link().is_some();
        pf
    }

    /// The station address of the NVM.
    pub fn mac(&self) -> MacAddr {
        self.nvm.mac()
    }

    pub fn config(&self) -> &ConfigSpace {
        &self.cfg
    }

    fn now(&self) -> u64 {
        self.clock.now_ns()
    }

    fn msix_enabled(&self) -> bool {
        self.cfg.msix_enabled()
    }

    // ----- the bus: BAR1 and BAR2 (the trait implementation below has the rest) -----

    fn in_region(size: u64, offset: u64, len: usize) -> Result<(), AccessError> {
        match offset.checked_add(len as u64) {
            Some(end) if end <= size => Ok(()),
            _ => Err(AccessError::BadAccess),
        }
    }

    /// BAR2: a 4-byte access to IOADDR or IODATA (IODATA reaches the register IOADDR names);
    /// the rest of the 32 bytes reads 0.
    fn io_read(&mut self, offset: u64, data: &mut [u8]) -> Result<(), AccessError> {
        Self::in_region(r::BAR2_SIZE, offset, data.len())?;
        if data.len() != 4 || !offset.is_multiple_of(4) {
            return Err(AccessError::BadAccess);
        }
        let v = match offset {
            r::IOADDR => self.ioaddr,
            r::IODATA => self.io_target().map_or(0, |o| self.read_reg(o)),
            _ => 0,
        };
        data.copy_from_slice(&v.to_le_bytes());
        Ok(())
    }

    fn io_write(&mut self, offset: u64, data: &[u8]) -> Result<Effects, AccessError> {
        Self::in_region(r::BAR2_SIZE, offset, data.len())?;
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            return Err(AccessError::BadAccess);
        };
        if !offset.is_multiple_of(4) {
            return Err(AccessError::BadAccess);
        }
        let v = u32::from_le_bytes(bytes);
        Ok(match offset {
            r::IOADDR => {
                self.ioaddr = v;
                Effects::default()
            }
            r::IODATA => match self.io_target() {
                Some(o) => self.write_reg(o, v),
                None => Effects::default(),
            },
            _ => Effects::default(),
        })
    }

    /// The BAR0 register IOADDR names, if it is a dword inside BAR0.
    fn io_target(&self) -> Option<u64> {
        let o = u64::from(self.ioaddr);
        (o < r::BAR0_SIZE && o.is_multiple_of(4)).then_some(o)
    }

    pub fn attached(&self) -> bool {
        self.mem.is_some()
    }

    // ----- resets -----

    /// FLR or power-on: the config space, the PHY and the MSI-X table too.
    fn function_reset(&mut self) {
        let _ = self.cfg.reset();
        self.phy.reset();
        self.msix.reset();
        self.ioaddr = 0;
        self.mac_reset();
    }

    /// CTRL.RST (igb's `igb_reset_hw_82575`): the MAC's registers to their reset values,
    /// RAR0 from the NVM, no pending interrupt. The PHY keeps its state.
    fn mac_reset(&mut self) {
        self.ctrl = ctrl::RESET;
        self.ctrl_ext = 0;
        self.nvm_regs.reset();
        self.mdic = 0;
        self.swsm = 0;
        self.sw_fw_sync = 0;
        self.intr.reset();
        self.filter = RxFilter::new(self.nvm.mac());
        self.tctl = tctl::RESET;
        self.rx = std::array::from_fn(RxRing::reset_value);
        self.tx = std::array::from_fn(TxRing::reset_value);
        self.storage = storage_reset();
        self.hw_stats.reset();
        self.systim = Systim::default();
        self.link_up = self.phy_link().is_some();
        self.sync_filters();
    }

    // ----- link -----

    fn phy_link(&self) -> Option<PhyLink> {
        self.phy.link(self.wire, self.ctrl & ctrl::PHY_RST != 0)
    }

    /// STATUS: the link as the MAC sees it (speed and duplex forced by CTRL when FRCSPD /
    /// FRCDPX), GIO master enable, PHYRA.
    fn status(&self) -> u32 {
        let mut v = 0;
        if let Some(l) = self.phy_link() {
            v |= status::LU;
            let speed = if self.ctrl & ctrl::FRCSPD != 0 {
                match self.ctrl & ctrl::SPD_MASK {
                    ctrl::SPD_1000 => 1000,
                    ctrl::SPD_100 => 100,
                    _ => 10,
                }
            } else {
                l.speed_mbps
            };
            v |= match speed {
                s if s >= 1000 => status::SPEED_1000,
                s if s >= 100 => status::SPEED_100,
                _ => status::SPEED_10,
            };
            let fd = if self.ctrl & ctrl::FRCDPX != 0 {
                self.ctrl & ctrl::FD != 0
            } else {
                l.full_duplex
            };
            if fd {
                v |= status::FD;
            }
        }
        if self.ctrl & ctrl::GIO_MASTER_DISABLE == 0 {
            v |= status::GIO_MASTER_ENABLE;
        }
        if self.phyra {
            v |= status::PHYRA;
        }
        v
    }

    /// Raises LSC if STATUS.LU changed.
    fn update_link(&mut self) -> Fire {
        let up = self.phy_link().is_some();
        if up == self.link_up {
            return Fire::NONE;
        }
        self.link_up = up;
        // Worth a line when a guest's driver will see it; the NIC logs its own link anyway.
        if self.attached() {
            info!(up, "PF link changed");
        } else {
            debug!(up, "PF link changed, no client attached");
        }
        let now = self.now();
        let msix = self.msix_enabled();
        self.intr.raise(r::icr::LSC, msix, now)
    }

    /// STATUS as the guest reads it.
    pub fn link_status(&self) -> u32 {
        self.status()
    }

    // ----- the switch's view of the filters -----

    /// Tells the switch the filters and VLAN stripping, if they changed since it was last told.
    /// Only while a client drives the function: without one the PF port is the runtime's
    /// (attach tells the switch the filters as they stand).
    fn sync_filters(&mut self) {
        if !self.attached() {
            return;
        }
        let policy = self.filter.policy();
        if self.pushed_policy.as_ref() != Some(&policy) {
            debug!(?policy, "PF receive filters changed");
            self.filters.set_pf_policy(policy.clone());
            self.pushed_policy = Some(policy);
        }
        let strip = self.ctrl & ctrl::VME != 0;
        if self.pushed_strip != Some(strip) {
            self.filters.set_rx_vlan_strip(strip);
            self.pushed_strip = Some(strip);
        }
    }

    /// The PF port's policy the receive filters amount to.
    pub fn policy(&self) -> PfPolicy {
        self.filter.policy()
    }

    // ----- BAR0 registers -----

    fn storage(&self, offset: u64) -> Option<u32> {
        let (run, i) = r::storage_slot(offset)?;
        self.storage.get(run)?.get(i as usize).copied()
    }

    fn storage_write(&mut self, offset: u64, value: u32) -> bool {
        let Some((run, i)) = r::storage_slot(offset) else {
            return false;
        };
        let mask = r::STORAGE[run].mask;
        if let Some(slot) = self
            .storage
            .get_mut(run)
            .and_then(|v| v.get_mut(i as usize))
        {
            *slot = (*slot & !mask) | (value & mask);
        }
        true
    }

    /// A 32-bit BAR0 register read, with its side effects (clear-on-read causes and
    /// counters, SWSM.SMBI's read-to-set).
    pub fn read_reg(&mut self, offset: u64) -> u32 {
        let msix = self.msix_enabled();
        if let Some(v) = self.intr.read(offset, msix) {
            return v;
        }
        if let Some(v) = self.filter.read(offset) {
            return v;
        }
        if let Some((q, rel)) = r::queue_reg(offset, r::RX_LOW, r::RX_HIGH) {
            return self.rx[q].read(rel);
        }
        if let Some((q, rel)) = r::queue_reg(offset, r::TX_LOW, r::TX_HIGH) {
            return self.tx[q].read(rel);
        }
        if let Some(v) = self.hw_stats.read(offset) {
            return v;
        }
        if let Some(v) = self.storage(offset) {
            return v;
        }
        match offset {
            r::CTRL | r::CTRL_DUP => self.ctrl,
            r::STATUS => self.status(),
            r::EECD => self.nvm_regs.eecd(),
            r::EERD => self.nvm_regs.eerd(),
            r::CTRL_EXT => self.ctrl_ext,
            r::MDIC => self.mdic,
            r::TCTL => self.tctl,
            r::SWSM => {
                let v = self.swsm;
                self.swsm |= r::swsm::SMBI;
                v
            }
            r::SW_FW_SYNC => self.sw_fw_sync,
            r::EEMNGCTL => eemngctl::CFG_DONE_PORT_0,
            r::SYSTIML => {
                let v = self.systim.value(self.now());
                self.systim.latched_high = (v >> 32) as u32;
                v as u32
            }
            r::SYSTIMH => self.systim.latched_high,
            r::TIMINCA => self.systim.timinca,
            // FWSM (no firmware), TSICR, WVBR, MBVFICR, VFLRE and unimplemented registers.
            _ => 0,
        }
    }

    /// A 32-bit BAR0 register write, with its side effects.
    pub fn write_reg(&mut self, offset: u64, value: u32) -> Effects {
        let msix = self.msix_enabled();
        let now = self.now();
        if let Some(fire) = self.intr.write(offset, value, msix, now) {
            return Effects::fire(fire);
        }
        if offset == r::RCTL {
            return self.write_rctl(value);
        }
        if self.filter.write(offset, value).is_some() {
            self.sync_filters();
            return Effects::default();
        }
        if let Some((q, rel)) = r::queue_reg(offset, r::RX_LOW, r::RX_HIGH) {
            let was = self.rx[q].enabled();
            let posted = self.rx[q].write(rel, value);
            return Effects {
                rx_posted: posted || (!was && self.rx[q].enabled()),
                ..Effects::default()
            };
        }
        if let Some((q, rel)) = r::queue_reg(offset, r::TX_LOW, r::TX_HIGH) {
            return if self.tx[q].write(rel, value) {
                self.run_tx(q)
            } else {
                Effects::default()
            };
        }
        if (r::STATS_START..r::STATS_END).contains(&offset) || self.storage_write(offset, value) {
            return Effects::default();
        }
        match offset {
            r::CTRL | r::CTRL_DUP => return self.write_ctrl(value),
            r::STATUS => {
                // Only PHYRA is writable, and only to clear it.
                if value & status::PHYRA == 0 {
                    self.phyra = false;
                }
            }
            r::EECD => self.nvm_regs.write_eecd(value),
            r::EERD => self.nvm_regs.write_eerd(value, &self.nvm),
            r::CTRL_EXT => self.ctrl_ext = value & ctrl_ext::STORED,
            r::MDIC => return self.write_mdic(value),
            r::TCTL => return self.write_tctl(value),
            r::SWSM => self.swsm = value & (r::swsm::SMBI | r::swsm::SWESMBI),
            r::SW_FW_SYNC => self.sw_fw_sync = value & r::sw_fw_sync::SW_MASK,
            r::SYSTIML => {
                let v = self.systim.value(now);
                self.systim
                    .rebase(now, (v & !0xFFFF_FFFF) | u64::from(value));
            }
            r::SYSTIMH => {
                let v = self.systim.value(now);
                self.systim
                    .rebase(now, (v & 0xFFFF_FFFF) | (u64::from(value) << 32));
            }
            r::TIMINCA => {
                let v = self.systim.value(now);
                self.systim.rebase(now, v);
                self.systim.timinca = value;
            }
            _ => debug!(
                offset,
                value, "PF write to a register without function ignored"
            ),
        }
        Effects::default()
    }

    fn write_ctrl(&mut self, value: u32) -> Effects {
        if value & ctrl::RST != 0 {
            info!("PF CTRL.RST: MAC reset");
            self.mac_reset();
            return Effects::fire(self.update_link());
        }
        let old = self.ctrl;
        self.ctrl = value & ctrl::STORED;
        if self.ctrl & !old & ctrl::PHY_RST != 0 {
            debug!("PF CTRL.PHY_RST: PHY reset");
            self.phy.reset();
            self.phyra = true;
        }
        if (old ^ self.ctrl) & ctrl::VME != 0 {
            self.sync_filters();
        }
        Effects::fire(self.update_link())
    }

    /// MDIC: the PHY access completes at once (READY); INT_EN raises ICR.MDAC.
    fn write_mdic(&mut self, value: u32) -> Effects {
        let link = self.phy_link();
        self.mdic = self.phy.mdic(value, link);
        let mut fire = Fire::NONE;
        if value & r::mdic::INT_EN != 0 {
            let msix = self.msix_enabled();
            let now = self.now();
            fire = self.intr.raise(r::icr::MDAC, msix, now);
        }
        Effects::fire(fire.union(self.update_link()))
    }

    fn write_rctl(&mut self, value: u32) -> Effects {
        let was = self.filter.enabled();
        let _ = self.filter.write(r::RCTL, value);
        self.sync_filters();
        Effects {
            // Frames waiting for the receiver may go in now.
            rx_posted: !was && self.filter.enabled(),
            ..Effects::default()
        }
    }

    fn write_tctl(&mut self, value: u32) -> Effects {
        let was = self.tctl & tctl::EN != 0;
        self.tctl = value & tctl::STORED;
        let mut all = Effects::default();
        if !was && self.tctl & tctl::EN != 0 {
            for q in 0..r::QUEUES {
                all.merge(self.run_tx(q));
            }
        }
        all
    }
}

impl Function for Pf {
    /// BAR0 128 KiB (CSRs), BAR1 128 KiB (flash), BAR2 32 bytes (I/O), BAR3 16 KiB (MSI-X,
    /// 64-bit); 10 MSI-X vectors.
    fn layout(&self) -> BusLayout {
        let mut bar_sizes = [0; 6];
        for (i, size) in bar_sizes.iter_mut().enumerate() {
            *size = self.cfg.bar(i).map_or(0, |b| b.size);
        }
        BusLayout {
            bar_sizes,
            msix_vectors: VECTORS as u16,
            msi_vectors: 1,
            intx: true,
        }
    }

    /// Bytes beyond the config space read as 0xFF ([`pcie::ConfigSpace::read`]).
    fn config_read(&mut self, offset: u64, data: &mut [u8]) {
        self.cfg
            .read(usize::try_from(offset).unwrap_or(usize::MAX), data);
    }

    /// A write beyond the config space is refused and counted ([`pcie::ConfigSpace::write`]).
    fn config_write(&mut self, offset: u64, data: &[u8]) -> Effects {
        let o = usize::try_from(offset).unwrap_or(usize::MAX);
        let mut effects = Effects::default();
        for event in self.cfg.write(o, data) {
            match event {
                ConfigEvent::Flr => {
                    info!("PF function level reset");
                    self.counters.flrs += 1;
                    self.function_reset();
                    return Effects {
                        reset: true,
                        ..Effects::default()
                    };
                }
                // Frames waiting for this function may be delivered now.
                ConfigEvent::CommandChanged {
                    bus_master: true, ..
                } => effects.rx_posted = true,
                _ => {}
            }
        }
        effects
    }

    fn region_read(&mut self, index: u32, offset: u64, data: &mut [u8]) -> Result<(), AccessError> {
        let result = match index {
            0 => read_dwords(r::BAR0_SIZE, offset, data, |o| self.read_reg(o)),
            1 => Self::in_region(r::BAR1_SIZE, offset, data.len()).map(|()| data.fill(0xFF)),
            2 => self.io_read(offset, data),
            3 => {
                self.msix.read(offset, data);
                Ok(())
            }
            _ => Err(AccessError::NoSuchRegion),
        };
        if result.is_err() {
            data.fill(0);
            self.counters.bad_accesses += 1;
            debug!(index, offset, len = data.len(), "PF region read refused");
        }
        result
    }

    fn region_write(
        &mut self,
        index: u32,
        offset: u64,
        data: &[u8],
    ) -> Result<Effects, AccessError> {
        let result = match index {
            0 => write_dwords(r::BAR0_SIZE, offset, data, |o, v| self.write_reg(o, v)),
            1 => Self::in_region(r::BAR1_SIZE, offset, data.len()).map(|()| Effects::default()),
            2 => self.io_write(offset, data),
            3 => {
                self.msix.write(offset, data);
                Ok(Effects::default())
            }
            _ => Err(AccessError::NoSuchRegion),
        };
        match result {
            Ok(effects) => Ok(effects),
            Err(e) => {
                self.counters.bad_accesses += 1;
                debug!(index, offset, len = data.len(), "PF region write refused");
                Err(e)
            }
        }
    }

    /// DEVICE_RESET, or after the client disconnected: the function's power-on state.
    fn reset(&mut self) -> Effects {
        self.function_reset();
        Effects::default()
    }

    /// A client connected: its memory. The switch learns the filters as they stand.
    fn attach(&mut self, mem: GuestMem) {
        self.mem = Some(mem);
        self.pushed_policy = None;
        self.pushed_strip = None;
        self.sync_filters();
    }

    /// The client went away: no more DMA.
    fn detach(&mut self) {
        self.mem = None;
    }

    /// A copy the switch delivered (`stripped_tci`: the tag it stripped), through the receive
    /// filters into the chosen RX queue. `Err(RxDrop::RingFull)` changes nothing and is not a
    /// drop: the runtime keeps the frame and retries when the driver posts buffers. Every
    /// other refusal is a drop, counted here.
    fn receive(
        &mut self,
        frame: &[u8],
        stripped_tci: Option<u16>,
        _origin: Origin,
    ) -> (Result<(), RxDrop>, Fire) {
        let (result, fire) = self.rx_frame(frame, stripped_tci, Source::Switch);
        match result {
            Ok(()) | Err(RxDrop::RingFull) => {}
            Err(reason) => self.counters.rx_drop(reason),
        }
        (result, fire)
    }

    /// The runtime dropped a frame for the PF because its backlog was full: a missed frame.
    fn count_backlog_drop(&mut self) {
        self.counters.rx_drop(RxDrop::BacklogOverflow);
        self.hw_stats.missed();
        let q = self.rx_queue();
        self.rx[q].rqdpc = self.rx[q].rqdpc.wrapping_add(1);
    }

    /// The time has come to `now`: held interrupts whose moderation interval ended fire.
    fn on_timer(&mut self, now: u64) -> Effects {
        Effects::fire(self.intr.bank.on_timer(now))
    }

    /// When a held interrupt's interval ends.
    fn next_wakeup(&self) -> Option<u64> {
        self.intr.bank.next_deadline()
    }

    /// The wire's link (the runtime's PF port). STATUS.LU follows unless the PHY is powered
    /// down, held in reset or looping back; a change raises LSC.
    fn set_link(&mut self, link: LinkStatus) -> Effects {
        self.wire = link;
        let fire = self.update_link();
        Effects::fire(fire)
    }

    /// The PF's counters (interrupt counts are the runtime's).
    fn stats(&self) -> VfStats {
        self.counters.snapshot()
    }

    fn dma_faults(&mut self) -> Option<&mut DmaFaults> {
        Some(&mut self.dma_faults)
    }

    fn dma_queues(&self) -> usize {
        r::QUEUES
    }

    fn dma_fault_report(&self) -> Vec<DmaFaultState> {
        self.dma_faults.report()
    }

    /// ICR.VMMB, which `igb_irq_enable` unmasks in IMS when igb has VFs.
    fn raise_vf_mailbox(&mut self) -> Effects {
        let msix = self.msix_enabled();
        let now = self.now();
        Effects::fire(self.intr.raise(r::icr::VMMB, msix, now))
    }
}
