//! One 82599 VF as a PCI function: the card's register file ([`Regs`]: BAR0 as Linux
//! ixgbevf's `regs.h` names it ([`super::regs`]), two RX/TX queue pairs ([`super::rx`],
//! [`super::tx`]), interrupts ([`super::intr`]), statistics) inside the VF shell every card
//! shares ([`VfShell`]: config space, BAR3's MSI-X table, resets, the datapath steps).
//!
//! Which RX queue a frame lands in: [`crate::function::Function::receive`] picks it by RSS, as
//! the PF's key and redirection table and the pool's VFPSRTYPE.RQPL decide ([`super::rss`]);
//! [`VfShell::receive_on`] takes the caller's choice.
//!
//! Guest input never panics: BAR0 accesses of any size become 32-bit register accesses
//! ([`crate::function::mmio`]), refused ones are counted; unknown offsets read 0 and ignore
//! writes (logged at debug); bad rings and addresses are the engines' documented errors.

use std::sync::Arc;

use mailbox::ixgbe::VfRegister;
use tracing::{debug, info};
use vm_memory::GuestMemoryBackend;

use super::config::vf_config_space;
use super::intr::IntrRegs;
use super::regs::{self, ctrl, links};
use super::rss::Rss;
use super::rx::{write_frame, RxQueue};
use super::tx;
use crate::function::rxcsum::L4Checksum;
use crate::function::stats::{Counters, RxDrop, RxOutcome};
use crate::function::tx::TxRing;
use crate::function::vf_intr::VF_MSIX_VECTORS;
use crate::function::vf_shell::{VfCore, VfRegisters, VfShell};
use crate::function::{Effects, Fire, FunctionId, LinkStatus, RingState};
use crate::seams::{Clock, PfPort};
use pcie::{BuildError, ConfigSpace};

/// VFLINKS as ixgbevf's `ixgbevf_check_mac_link_vf` reads it: LINK_UP and the speed bits
/// (10 Gb/s, 1 Gb/s, 100 Mb/s; slower links read as 100 Mb/s).
pub fn links_bits(link: LinkStatus) -> u32 {
    if !link.up {
        return 0;
    }
    let speed = match link.speed_mbps {
        s if s >= 10_000 => links::SPEED_10G,
        s if s >= 1_000 => links::SPEED_1G,
        _ => links::SPEED_100,
    };
    links::UP | speed
}

/// The CRC every frame has on the wire. ⚠ Whether the 82599's VF octet counters include it
/// is a datasheet matter; its PF's GORC/GOTC count from the destination address through the
/// CRC, and so do these (as the 82576 VF's do here).
const FCS_LEN: u64 = 4;
/// The octet counters are 36 bits wide (`UPDATE_VF_COUNTER_36bit`).
const OCTETS_MASK: u64 = (1 << 36) - 1;

fn octets(bytes: u64, packets: u64) -> u64 {
    bytes.wrapping_add(packets.wrapping_mul(FCS_LEN))
}

/// What the statistics registers count from: the counters at the last FLR (a VF reset does
/// not clear them; ixgbevf rebases after each reset anyway, `ixgbevf_update_stats` keeps
/// the last value it read and handles the wrap).
#[derive(Clone, Copy, Debug, Default)]
struct StatsBase {
    gprc: u64,
    gorc: u64,
    gptc: u64,
    gotc: u64,
    mprc: u64,
}

impl StatsBase {
    fn of(c: &Counters) -> StatsBase {
        StatsBase {
            gprc: c.rx_packets,
            gorc: octets(c.rx_bytes, c.rx_packets),
            gptc: c.tx_packets,
            gotc: octets(c.tx_bytes, c.tx_packets),
            mprc: c.rx_multicast,
        }
    }
}

/// One 82599 VF function.
pub type Vf = VfShell<Regs>;

impl Vf {
    /// VF `id` with the 82599 VF config space, reaching its PF through `pf`; time (for
    /// interrupt moderation) from `clock`.
    pub fn new(id: u16, pf: Arc<dyn PfPort>, clock: Arc<dyn Clock>) -> Result<Vf, BuildError> {
        Ok(Vf::with_config(id, vf_config_space()?, pf, clock))
    }

    /// VF `id` with a config space built by the caller.
    pub fn with_config(
        id: u16,
        cfg: ConfigSpace,
        pf: Arc<dyn PfPort>,
        clock: Arc<dyn Clock>,
    ) -> Vf {
        VfShell::build(id, cfg, pf, clock, Regs::power_on())
    }

    /// The PF zeroes the VF's TDWBAL/TDWBAH when it answers VF_RESET, since neither a VF reset
    /// nor an FLR clears them (ixgbe's `ixgbe_vf_reset_msg`).
    pub fn clear_tx_head_writeback(&mut self) {
        for t in &mut self.regs.tx {
            t.tdwbal = 0;
            t.tdwbah = 0;
        }
    }
}

/// The 82599 VF's register file.
pub struct Regs {
    rx: [RxQueue; regs::QUEUES],
    tx: [TxRing; regs::QUEUES],
    intr: IntrRegs,
    link: LinkStatus,
    psrtype: u32,
    /// The PF's RSS key and redirection table, which pick a frame's queue in the pool.
    rss: Rss,
    stats_base: StatsBase,
    /// VFGORC_MSB / VFGOTC_MSB as latched by the last LSB read (⚠ the latch is assumed:
    /// ixgbevf reads LSB then MSB, `UPDATE_VF_COUNTER_36bit`, and a latch keeps the pair
    /// consistent when a frame is counted between the two reads).
    gorc_msb: Option<u32>,
    gotc_msb: Option<u32>,
}

impl Regs {
    fn power_on() -> Regs {
        Regs {
            rx: Default::default(),
            tx: [tx::reset_value(), tx::reset_value()],
            intr: super::intr::power_on(),
            link: LinkStatus::UP_10G_FD,
            psrtype: 0,
            rss: Rss::ixgbe(),
            stats_base: StatsBase::default(),
            gorc_msb: None,
            gotc_msb: None,
        }
    }

    /// Queues and interrupt registers to their reset values; TDWBAL/TDWBAH stay (neither a
    /// VF reset nor an FLR clears them: ixgbe's `ixgbe_vf_reset_msg` zeroes them itself).
    fn reset_registers(&mut self) {
        self.rx = Default::default();
        for t in &mut self.tx {
            let (wbal, wbah) = (t.tdwbal, t.tdwbah);
            *t = tx::reset_value();
            t.tdwbal = wbal;
            t.tdwbah = wbah;
        }
        self.intr.reset();
        self.psrtype = 0;
        self.gorc_msb = None;
        self.gotc_msb = None;
    }

    /// VFCTRL.RST (ixgbevf `ixgbevf_reset_hw_vf`): queues disabled and back to their reset
    /// values, interrupts masked and unrouted, the PF told (VFLRE; the mailbox releases the
    /// VF's lock and, with the PF up, shows RSTD). Statistics keep running; config space and
    /// the MSI-X table are the PCI side's and stay.
    fn vf_software_reset(&mut self, core: &mut VfCore) -> Fire {
        info!(vf = core.id, "VFCTRL.RST");
        core.counters.vf_resets += 1;
        self.reset_registers();
        core.tell_pf_reset(self)
    }

    /// Which queue block `offset` falls in, and where in it.
    fn queue_reg(offset: u64, base: u64) -> Option<(usize, u64)> {
        let span = base..base + regs::QUEUES as u64 * regs::QUEUE_STRIDE;
        span.contains(&offset).then(|| {
            (
                ((offset - base) / regs::QUEUE_STRIDE) as usize,
                (offset - base) % regs::QUEUE_STRIDE,
            )
        })
    }

    fn read_stat(&mut self, counters: &Counters, offset: u64) -> u32 {
        let (now, b) = (StatsBase::of(counters), self.stats_base);
        let gorc = now.gorc.wrapping_sub(b.gorc) & OCTETS_MASK;
        let gotc = now.gotc.wrapping_sub(b.gotc) & OCTETS_MASK;
        let msb = |v: u64| (v >> 32) as u32 & regs::OCTETS_MSB_MASK;
        match offset {
            regs::VFGPRC => now.gprc.wrapping_sub(b.gprc) as u32,
            regs::VFGPTC => now.gptc.wrapping_sub(b.gptc) as u32,
            regs::VFMPRC => now.mprc.wrapping_sub(b.mprc) as u32,
            regs::VFGORC_LSB => {
                self.gorc_msb = Some(msb(gorc));
                gorc as u32
            }
            regs::VFGORC_MSB => self.gorc_msb.take().unwrap_or(msb(gorc)),
            regs::VFGOTC_LSB => {
                self.gotc_msb = Some(msb(gotc));
                gotc as u32
            }
            regs::VFGOTC_MSB => self.gotc_msb.take().unwrap_or(msb(gotc)),
            _ => 0,
        }
    }
}

// The shell's MSI-X table holds this card's vectors.
const _: () = assert!(regs::VF_VECTORS as usize == VF_MSIX_VECTORS);

impl VfRegisters for Regs {
    const NAME: &'static str = "x82599::Vf";
    const BAR0_SIZE: u64 = regs::BAR0_SIZE;
    const BAR3_SIZE: u64 = regs::BAR3_SIZE;
    // ixgbe sets HLREG0.TXPADEN; the 82599 honours TDWBAL.Head_WB_En.
    const HEAD_WRITEBACK: bool = true;

    fn read(&mut self, core: &mut VfCore, offset: u64) -> u32 {
        let id = core.id;
        if let Some(reg) = VfRegister::decode(offset) {
            return match reg {
                VfRegister::Vfmailbox => core.pf.read_v2p(id),
                VfRegister::Vfmbmem(word) => core.pf.read_vmbmem(id, word),
            };
        }
        if self.intr.decodes(offset) {
            return self.intr.read(offset).unwrap_or(0);
        }
        let value = match offset {
            regs::VFCTRL => Some(0),
            // ixgbevf reads VFSTATUS only to flush writes and to tell a removed adapter
            // (all-ones); ⚠ what else it mirrors of the PF's STATUS is a datasheet matter.
            regs::VFSTATUS => Some(0),
            regs::VFLINKS => Some(self.link_status()),
            regs::VFFRTIMER | regs::VFRXMEMWRAP => Some(0),
            regs::VFPSRTYPE => Some(self.psrtype),
            regs::VFGPRC
            | regs::VFGORC_LSB
            | regs::VFGORC_MSB
            | regs::VFMPRC
            | regs::VFGPTC
            | regs::VFGOTC_LSB
            | regs::VFGOTC_MSB => Some(self.read_stat(&core.counters, offset)),
            o => {
                if let Some((q, rel)) = Self::queue_reg(o, regs::RX_BASE) {
                    self.rx[q].read(rel)
                } else if let Some((q, rel)) = Self::queue_reg(o, regs::TX_BASE) {
                    tx::read(&self.tx[q], rel)
                } else {
                    None
                }
            }
        };
        value.unwrap_or_else(|| {
            debug!(vf = id, offset, "read of an unknown VF register: 0");
            0
        })
    }

    fn write(&mut self, core: &mut VfCore, offset: u64, value: u32) -> Effects {
        let id = core.id;
        if let Some(reg) = VfRegister::decode(offset) {
            return match reg {
                VfRegister::Vfmailbox => {
                    let irq = core.pf.write_v2p(id, value);
                    Effects::fire(core.mailbox_irq(self, irq))
                }
                VfRegister::Vfmbmem(word) => {
                    core.pf.write_vmbmem(id, word, value);
                    Effects::default()
                }
            };
        }
        if self.intr.decodes(offset) {
            return Effects::fire(
                self.intr
                    .write(offset, value, core.now())
                    .unwrap_or(Fire::NONE),
            );
        }
        match offset {
            regs::VFCTRL => {
                if value & ctrl::RST != 0 {
                    return Effects::fire(self.vf_software_reset(core));
                }
                Effects::default()
            }
            regs::VFPSRTYPE => {
                self.psrtype = value;
                Effects::default()
            }
            o => {
                if let Some((q, rel)) = Self::queue_reg(o, regs::RX_BASE) {
                    if let Some(posted) = self.rx[q].write(rel, value) {
                        return Effects {
                            rx_posted: posted,
                            ..Effects::default()
                        };
                    }
                } else if let Some((q, rel)) = Self::queue_reg(o, regs::TX_BASE) {
                    match tx::write(&mut self.tx[q], rel, value) {
                        Some(true) => return self.run_tx(core, q, false),
                        Some(false) => return Effects::default(),
                        None => {}
                    }
                }
                // Read-only registers (VFSTATUS, VFLINKS, statistics) and unknown offsets.
                debug!(
                    vf = id,
                    offset, value, "write to a read-only or unknown VF register ignored"
                );
                Effects::default()
            }
        }
    }

    /// Statistics registers back to 0; TDWBAL/TDWBAH and the link stay.
    fn power_on_reset(&mut self, core: &VfCore) {
        self.reset_registers();
        self.stats_base = StatsBase::of(&core.counters);
    }

    fn tx_rings(&self) -> &[TxRing] {
        &self.tx
    }

    fn tx_rings_mut(&mut self) -> &mut [TxRing] {
        &mut self.tx
    }

    fn write_rx<M: GuestMemoryBackend>(
        &mut self,
        core: &mut VfCore,
        mem: &M,
        queue: usize,
        frame: &[u8],
        stripped_tci: Option<u16>,
        l4_checksum: L4Checksum,
    ) -> RxOutcome {
        match self.rx.get_mut(queue) {
            Some(q) if q.enabled() => write_frame(
                q,
                mem,
                frame,
                stripped_tci,
                core.rx_checksum.then_some(l4_checksum),
                FunctionId::Vf(core.id),
                (&mut core.dma_faults, queue),
            ),
            _ => RxOutcome::Dropped(RxDrop::QueueDisabled),
        }
    }

    /// RSS over the pool's queues: VFPSRTYPE.RQPL (bits 31:29) low bits of the redirection
    /// table's entry for the frame's hash.
    fn rx_queue(&self, frame: &[u8]) -> usize {
        self.rss.queue(frame, self.psrtype >> 29, regs::QUEUES)
    }

    fn rx_free_descriptors(&self) -> u32 {
        let q = &self.rx[0];
        if q.enabled() {
            q.free_descriptors()
        } else {
            0
        }
    }

    fn intr(&self) -> &IntrRegs {
        &self.intr
    }

    fn intr_mut(&mut self) -> &mut IntrRegs {
        &mut self.intr
    }

    fn set_link(&mut self, link: LinkStatus) {
        self.link = link;
    }

    /// VFLINKS.
    fn link_status(&self) -> u32 {
        links_bits(self.link)
    }

    fn rx0_state(&self) -> RingState {
        let r = &self.rx[0];
        RingState {
            enabled: r.enabled(),
            base: r.base(),
            len: r.len(),
            head: r.rdh,
            tail: r.rdt,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_function_moves_between_threads() {
        fn send<T: Send>() {}
        send::<Vf>();
    }

    fn vf() -> Vf {
        use crate::function::x82599::IxgbePfSide;
        use crate::seams::ManualClock;
        use mailbox::ixgbe::IxgbeConfig;
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(0));
        let pf = Arc::new(IxgbePfSide::new(IxgbeConfig::new(1), clock.clone()).unwrap());
        Vf::new(0, pf, clock).unwrap()
    }

    #[test]
    fn packet_counters_wrap_at_32_bits_and_octets_at_36_split_lsb_msb() {
        let mut v = vf();
        v.core.counters.rx_packets = (1 << 32) + 7;
        v.core.counters.rx_bytes = (1 << 36) + 0x2_0000_0000 - 4 * v.core.counters.rx_packets + 5;
        assert_eq!(v.read_reg(regs::VFGPRC), 7);
        // ixgbevf's UPDATE_VF_COUNTER_36bit: LSB, then MSB (bits 35:32 only).
        assert_eq!(v.read_reg(regs::VFGORC_LSB), 5);
        assert_eq!(v.read_reg(regs::VFGORC_MSB), 2);
    }

    #[test]
    fn the_lsb_read_latches_the_msb_so_the_pair_stays_consistent() {
        let mut v = vf();
        v.core.counters.tx_bytes = 0xFFFF_FFF0;
        assert_eq!(v.read_reg(regs::VFGOTC_LSB), 0xFFFF_FFF0);
        // A frame is counted between the two reads and carries into bit 32.
        v.core.counters.tx_packets = 1;
        v.core.counters.tx_bytes += 60;
        assert_eq!(v.read_reg(regs::VFGOTC_MSB), 0, "latched with the LSB");
        assert_eq!(v.read_reg(regs::VFGOTC_MSB), 1, "no latch: the counter now");
    }

    #[test]
    fn link_maps_to_vflinks_as_ixgbevf_decodes_it() {
        assert_eq!(links_bits(LinkStatus::DOWN), 0);
        assert_eq!(links_bits(LinkStatus::UP_10G_FD), 0x7000_0000);
        assert_eq!(
            links_bits(LinkStatus::UP_1000_FD),
            links::UP | links::SPEED_1G
        );
        let slow = LinkStatus {
            up: true,
            speed_mbps: 10,
            full_duplex: false,
        };
        assert_eq!(links_bits(slow), links::UP | links::SPEED_100);
    }
}
