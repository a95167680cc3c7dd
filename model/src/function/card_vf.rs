//! A VF of whichever card the NIC is: the 82576's ([`i82576::Vf`], igbvf) or the 82599's
//! ([`x82599::Vf`], ixgbevf). The NIC runtime hosts this, so one datapath, one switch and one
//! PF side serve both personalities; each access goes to the card's own function.

use std::sync::Arc;

use pcie::{BuildError, ConfigSpace};

use super::stats::{AccessError, RxDrop, VfStats};
use super::{
    i82576, x82599, BusLayout, Effects, Fire, Function, GuestMem, LinkStatus, Origin, RxCopy,
};
use crate::function::faults::{DmaFaultState, DmaFaults};
use crate::function::VfState;
use crate::seams::{Clock, PfPort};

/// Which card a NIC is: its VF personality and the PF driver whose decisions its VFs get.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Deserialize)]
pub enum Card {
    /// Intel 82576 (VF 8086:10ca): igb on the PF, igbvf on the VFs.
    #[default]
    #[serde(rename = "82576")]
    I82576,
    /// Intel 82599 (VF 8086:10ed): ixgbe on the PF, ixgbevf on the VFs.
    #[serde(rename = "82599")]
    X82599,
}

impl Card {
    /// `82576`, `82599`.
    pub fn name(self) -> &'static str {
        match self {
            Card::I82576 => "82576",
            Card::X82599 => "82599",
        }
    }

    /// The PF and VF drivers of the card.
    pub fn drivers(self) -> (&'static str, &'static str) {
        match self {
            Card::I82576 => ("igb", "igbvf"),
            Card::X82599 => ("ixgbe", "ixgbevf"),
        }
    }

    /// The card's link speed, Mbit/s.
    pub fn link_speed_mbps(self) -> u32 {
        match self {
            Card::I82576 => 1000,
            Card::X82599 => 10_000,
        }
    }

    /// VFs a port of the real card has: the 82576's 8 pools less the PF's (igb's
    /// `max_vfs` limit, 7), the 82599's 64 pools less the PF's (ixgbe's
    /// IXGBE_MAX_VFS_DRV_LIMIT, 63).
    pub fn hardware_vfs(self) -> u16 {
        match self {
            Card::I82576 => 7,
            Card::X82599 => 63,
        }
    }
}

impl std::fmt::Display for Card {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Card {
    type Err = String;

    fn from_str(s: &str) -> Result<Card, String> {
        match s {
            "82576" | "i82576" => Ok(Card::I82576),
            "82599" | "x82599" => Ok(Card::X82599),
            other => Err(format!("unknown card `{other}`: 82576 or 82599")),
        }
    }
}

/// A VF of the card.
#[derive(Debug)]
pub enum CardVf {
    I82576(i82576::Vf),
    X82599(x82599::Vf),
}

/// The call, on whichever VF it is.
macro_rules! each {
    ($self:expr, $vf:ident => $e:expr) => {
        match $self {
            CardVf::I82576($vf) => $e,
            CardVf::X82599($vf) => $e,
        }
    };
}

impl CardVf {
    /// VF `id` of `card`, its mailbox and VF reset going to `pf`.
    pub fn new(
        card: Card,
        id: u16,
        pf: Arc<dyn PfPort>,
        clock: Arc<dyn Clock>,
    ) -> Result<CardVf, BuildError> {
        Ok(match card {
            Card::I82576 => CardVf::I82576(i82576::Vf::new(id, pf, clock)?),
            Card::X82599 => CardVf::X82599(x82599::Vf::new(id, pf, clock)?),
        })
    }

    pub fn card(&self) -> Card {
        match self {
            CardVf::I82576(_) => Card::I82576,
            CardVf::X82599(_) => Card::X82599,
        }
    }

    /// The 82576's VF, if this is one (for what only it has).
    pub fn i82576(&self) -> Option<&i82576::Vf> {
        match self {
            CardVf::I82576(vf) => Some(vf),
            CardVf::X82599(_) => None,
        }
    }

    pub fn x82599(&self) -> Option<&x82599::Vf> {
        match self {
            CardVf::X82599(vf) => Some(vf),
            CardVf::I82576(_) => None,
        }
    }

    pub fn id(&self) -> u16 {
        each!(self, vf => vf.id())
    }

    pub fn config(&self) -> &ConfigSpace {
        each!(self, vf => vf.config())
    }

    /// Whether the VF may DMA (its Bus Master Enable).
    pub fn bus_master(&self) -> bool {
        each!(self, vf => vf.bus_master())
    }

    pub fn attached(&self) -> bool {
        each!(self, vf => vf.attached())
    }

    /// Resumes TX queues the shaper paused (their time has come).
    pub fn tx_resume(&mut self) -> Effects {
        each!(self, vf => vf.tx_resume())
    }

    /// Runs the TX queues held while the VF's transmit was disabled.
    pub fn tx_resume_closed(&mut self) -> Effects {
        each!(self, vf => vf.tx_resume_closed())
    }

    /// The earliest deadline of a paused TX queue.
    pub fn tx_paused_until(&self) -> Option<u64> {
        each!(self, vf => vf.tx_paused_until())
    }

    /// Free RX descriptors on queue 0.
    pub fn rx_free_descriptors(&self) -> u32 {
        each!(self, vf => vf.rx_free_descriptors())
    }

    /// The PF wrote to the VF's mailbox: its mailbox cause.
    pub fn mailbox_interrupt(&mut self) -> Fire {
        each!(self, vf => vf.mailbox_interrupt())
    }

    /// Whether RX write-backs report verified checksums (default on).
    pub fn set_rx_checksum(&mut self, on: bool) {
        each!(self, vf => vf.set_rx_checksum(on))
    }

    /// The link its status register reports; a VF learns of the change through its mailbox
    /// (the PF's ping), not an interrupt cause.
    pub fn set_link(&mut self, link: LinkStatus) {
        each!(self, vf => vf.set_link(link))
    }

    /// The link register as the guest reads it (the 82576's VTSTATUS, the 82599's VFLINKS).
    pub fn link_status(&self) -> u32 {
        each!(self, vf => vf.link_status())
    }

    /// Whether that register says the link is up.
    pub fn link_up(&self) -> bool {
        match self {
            CardVf::I82576(vf) => vf.link_status() & i82576::regs::status::LU != 0,
            CardVf::X82599(vf) => vf.link_status() & x82599::regs::links::UP != 0,
        }
    }

    /// Queue and interrupt state.
    pub fn state(&self) -> VfState {
        each!(self, vf => vf.state())
    }

    /// A 32-bit BAR0 register read, as a driver in process makes it.
    pub fn read_reg(&mut self, offset: u64) -> u32 {
        each!(self, vf => vf.read_reg(offset))
    }

    /// A 32-bit BAR0 register write, as a driver in process makes it.
    pub fn write_reg(&mut self, offset: u64, value: u32) -> Effects {
        each!(self, vf => vf.write_reg(offset, value))
    }
}

impl Function for CardVf {
    fn layout(&self) -> BusLayout {
        each!(self, vf => vf.layout())
    }
    fn config_read(&mut self, offset: u64, data: &mut [u8]) {
        each!(self, vf => vf.config_read(offset, data))
    }
    fn config_write(&mut self, offset: u64, data: &[u8]) -> Effects {
        each!(self, vf => vf.config_write(offset, data))
    }
    fn region_read(&mut self, index: u32, offset: u64, data: &mut [u8]) -> Result<(), AccessError> {
        each!(self, vf => vf.region_read(index, offset, data))
    }
    fn region_write(
        &mut self,
        index: u32,
        offset: u64,
        data: &[u8],
    ) -> Result<Effects, AccessError> {
        each!(self, vf => vf.region_write(index, offset, data))
    }
    fn reset(&mut self) -> Effects {
        each!(self, vf => Function::reset(vf))
    }
    fn attach(&mut self, mem: GuestMem) {
        each!(self, vf => Function::attach(vf, mem))
    }
    fn detach(&mut self) {
        each!(self, vf => Function::detach(vf))
    }
    fn receive(
        &mut self,
        frame: &[u8],
        stripped_tci: Option<u16>,
        origin: Origin,
    ) -> (Result<(), RxDrop>, Fire) {
        each!(self, vf => Function::receive(vf, frame, stripped_tci, origin))
    }
    fn receive_batch(&mut self, copies: &[RxCopy<'_>]) -> (usize, Fire) {
        each!(self, vf => Function::receive_batch(vf, copies))
    }
    fn count_tx_loopback(&mut self, packets: u64, bytes: u64) {
        each!(self, vf => vf.count_tx_loopback(packets, bytes))
    }
    fn count_backlog_drop(&mut self) {
        each!(self, vf => vf.count_backlog_drop())
    }
    fn on_timer(&mut self, now: u64) -> Effects {
        each!(self, vf => vf.on_timer(now))
    }
    fn next_wakeup(&self) -> Option<u64> {
        each!(self, vf => vf.next_wakeup())
    }
    fn set_link(&mut self, link: LinkStatus) -> Effects {
        each!(self, vf => Function::set_link(vf, link))
    }
    fn stats(&self) -> VfStats {
        each!(self, vf => Function::stats(vf))
    }
    fn dma_faults(&mut self) -> Option<&mut DmaFaults> {
        each!(self, vf => vf.dma_faults())
    }
    fn dma_queues(&self) -> usize {
        each!(self, vf => vf.dma_queues())
    }
    fn dma_fault_report(&self) -> Vec<DmaFaultState> {
        each!(self, vf => vf.dma_fault_report())
    }
}
