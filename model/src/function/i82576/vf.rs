//! One 82576 VF as a PCI function: the card's register file ([`Regs`]: BAR0 as Linux
//! igbvf's `regs.h` names it, the RX/TX queues, interrupts, statistics) inside the VF shell
//! every card shares ([`VfShell`]: config space, BAR3's MSI-X table, resets, the datapath
//! steps).
//!
//! BAR0 accesses of every size become 32-bit register accesses as [`crate::function::mmio`]
//! says; refused ones are counted. Nothing panics.

use std::sync::Arc;

use tracing::info;
use vm_memory::GuestMemoryBackend;

use super::config::{pf_config_space, vf_config_space};
use super::intr::IntrRegs;
use super::regs::{self, ctrl, status};
use super::rx::{write_frame, RxRing};
use super::tx::TxRing;
use crate::function::rxcsum::L4Checksum;
use crate::function::stats::{Counters, RxDrop, RxOutcome};
use crate::function::vf_intr::VF_MSIX_VECTORS;
use crate::function::vf_shell::{VfCore, VfRegisters, VfShell};
use crate::function::{Effects, Fire, FunctionId, LinkStatus};
pub use crate::function::{RingState, VfState};
use crate::seams::{Clock, PfPort};
use pcie::{BuildError, ConfigSpace};

fn status_bits(link: LinkStatus) -> u32 {
    if !link.up {
        return 0;
    }
    let speed = match link.speed_mbps {
        s if s >= 1000 => status::SPEED_1000,
        s if s >= 100 => status::SPEED_100,
        _ => status::SPEED_10,
    };
    status::LU | speed | if link.full_duplex { status::FD } else { 0 }
}

/// Guest-visible VF statistics are the counters minus their value at the last function
/// reset: free-running between resets, VTCTRL.RST does not clear them (igbvf's
/// `igbvf_update_stats` computes deltas and handles the 32-bit wrap).
#[derive(Clone, Copy, Debug, Default)]
struct StatsBase {
    gprc: u64,
    gorc: u64,
    gptc: u64,
    gotc: u64,
    mprc: u64,
    gprlbc: u64,
    gorlbc: u64,
    gptlbc: u64,
    gotlbc: u64,
}

/// The CRC at the end of every frame on the wire: the 82576's good-octet counters count it
/// (from the destination address through the CRC, 82576 datasheet 8.19 statistics registers),
/// while our frames and byte counters (as Linux's) leave it out.
const FCS_LEN: u64 = 4;

/// Octets as the statistics registers count them: each packet's bytes and its CRC.
fn octets(bytes: u64, packets: u64) -> u64 {
    bytes.wrapping_add(packets.wrapping_mul(FCS_LEN))
}

impl StatsBase {
    /// The registers' zero: the counters as they are now.
    fn of(c: &Counters) -> StatsBase {
        StatsBase {
            gprc: c.rx_packets,
            gorc: octets(c.rx_bytes, c.rx_packets),
            gptc: c.tx_packets,
            gotc: octets(c.tx_bytes, c.tx_packets),
            mprc: c.rx_multicast,
            gprlbc: c.rx_looped_packets,
            gorlbc: octets(c.rx_looped_bytes, c.rx_looped_packets),
            gptlbc: c.tx_looped_packets,
            gotlbc: octets(c.tx_looped_bytes, c.tx_looped_packets),
        }
    }
}

/// One 82576 VF function.
pub type Vf = VfShell<Regs>;

impl Vf {
    /// VF `id` with the 82576 VF config space, reaching its PF through `pf`; time (for
    /// interrupt moderation) from `clock`.
    pub fn new(id: u16, pf: Arc<dyn PfPort>, clock: Arc<dyn Clock>) -> Result<Vf, BuildError> {
        let cfg = vf_config_space(&pf_config_space()?)?;
        Ok(Vf::with_config(id, cfg, pf, clock))
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
}

/// The 82576 VF's register file.
pub struct Regs {
    rx: [RxRing; regs::QUEUES],
    tx: [TxRing; regs::QUEUES],
    intr: IntrRegs,
    /// VTSTATUS.
    status: u32,
    pbacl: u32,
    psrtype: u32,
    stats_base: StatsBase,
}

impl Regs {
    fn power_on() -> Regs {
        Regs {
            rx: [RxRing::reset_value(0), RxRing::reset_value(1)],
            tx: [TxRing::reset_value(0), TxRing::reset_value(1)],
            intr: super::intr::power_on(),
            status: status_bits(LinkStatus::UP_1000_FD),
            pbacl: 0,
            psrtype: 0,
            stats_base: StatsBase::default(),
        }
    }

    /// VTCTRL.RST (igbvf `e1000_reset_hw_vf`): queue enables cleared, interrupt state reset,
    /// the PF told (VFLRE). Statistics keep running.
    fn vf_software_reset(&mut self, core: &mut VfCore) -> Fire {
        info!(vf = core.id, "VTCTRL.RST");
        core.counters.vf_resets += 1;
        for r in &mut self.rx {
            r.rxdctl &= !regs::dctl::ENABLE;
        }
        for t in &mut self.tx {
            t.txdctl &= !regs::dctl::ENABLE;
            t.clear_pause();
        }
        self.intr.reset();
        core.tell_pf_reset(self)
    }

    fn read_stat(&self, counters: &Counters, offset: u64) -> u32 {
        let (now, b) = (StatsBase::of(counters), self.stats_base);
        let v = match offset {
            regs::VFGPRC => now.gprc.wrapping_sub(b.gprc),
            regs::VFGORC => now.gorc.wrapping_sub(b.gorc),
            regs::VFGPTC => now.gptc.wrapping_sub(b.gptc),
            regs::VFGOTC => now.gotc.wrapping_sub(b.gotc),
            regs::VFMPRC => now.mprc.wrapping_sub(b.mprc),
            regs::VFGPRLBC => now.gprlbc.wrapping_sub(b.gprlbc),
            regs::VFGORLBC => now.gorlbc.wrapping_sub(b.gorlbc),
            regs::VFGPTLBC => now.gptlbc.wrapping_sub(b.gptlbc),
            regs::VFGOTLBC => now.gotlbc.wrapping_sub(b.gotlbc),
            _ => 0,
        };
        v as u32
    }
}

/// Which queue of a block `offset` falls in, and where in it.
fn queue_reg(offset: u64, base: u64) -> Option<(usize, u64)> {
    let span = base..base + regs::QUEUES as u64 * regs::QUEUE_STRIDE;
    span.contains(&offset).then(|| {
        (
            ((offset - base) / regs::QUEUE_STRIDE) as usize,
            offset % regs::QUEUE_STRIDE,
        )
    })
}

// The shell's MSI-X table holds this card's vectors.
const _: () = assert!(regs::VF_VECTORS as usize == VF_MSIX_VECTORS);

impl VfRegisters for Regs {
    const NAME: &'static str = "i82576::Vf";
    const BAR0_SIZE: u64 = regs::BAR0_SIZE;
    const BAR3_SIZE: u64 = regs::BAR3_SIZE;
    // The 82576 model keeps TDWBAL as plain storage: igbvf never sets it.
    const HEAD_WRITEBACK: bool = false;

    fn read(&mut self, core: &mut VfCore, offset: u64) -> u32 {
        let id = core.id;
        match offset {
            regs::VTCTRL | regs::VTCTRL_ALIAS => 0,
            regs::VTSTATUS => self.status,
            regs::VTFRTIMER => 0,
            o if (regs::VMBMEM..regs::VMBMEM_END).contains(&o) => {
                core.pf.read_vmbmem(id, ((o - regs::VMBMEM) / 4) as usize)
            }
            regs::V2PMAILBOX => core.pf.read_v2p(id),
            regs::PBACL => self.pbacl,
            regs::PSRTYPE => self.psrtype,
            regs::VFGPRC..=regs::VFGOTLBC => self.read_stat(&core.counters, offset),
            o if self.intr.decodes(o) => self.intr.read(o).unwrap_or(0),
            o => {
                if let Some((q, rel)) = queue_reg(o, regs::RX_BASE) {
                    self.rx[q].read(rel)
                } else if let Some((q, rel)) = queue_reg(o, regs::TX_BASE) {
                    self.tx[q].read(rel)
                } else {
                    0
                }
            }
        }
    }

    /// TX runs on a TDT write.
    fn write(&mut self, core: &mut VfCore, offset: u64, value: u32) -> Effects {
        let id = core.id;
        match offset {
            regs::VTCTRL | regs::VTCTRL_ALIAS if value & ctrl::RST != 0 => {
                Effects::fire(self.vf_software_reset(core))
            }
            o if (regs::VMBMEM..regs::VMBMEM_END).contains(&o) => {
                core.pf
                    .write_vmbmem(id, ((o - regs::VMBMEM) / 4) as usize, value);
                Effects::default()
            }
            regs::V2PMAILBOX => {
                let irq = core.pf.write_v2p(id, value);
                Effects::fire(core.mailbox_irq(self, irq))
            }
            regs::PBACL => {
                self.pbacl = value & regs::VECTOR_MASK;
                Effects::default()
            }
            regs::PSRTYPE => {
                self.psrtype = value;
                Effects::default()
            }
            o if self.intr.decodes(o) => {
                Effects::fire(self.intr.write(o, value, core.now()).unwrap_or(Fire::NONE))
            }
            o => {
                if let Some((q, rel)) = queue_reg(o, regs::RX_BASE) {
                    Effects {
                        rx_posted: self.rx[q].write(rel, value),
                        ..Effects::default()
                    }
                } else if let Some((q, rel)) = queue_reg(o, regs::TX_BASE) {
                    if self.tx[q].write(rel, value) {
                        self.run_tx(core, q, false)
                    } else {
                        Effects::default()
                    }
                } else {
                    Effects::default()
                }
            }
        }
    }

    fn power_on_reset(&mut self, core: &VfCore) {
        *self = Regs {
            status: self.status,
            stats_base: StatsBase::of(&core.counters),
            ..Regs::power_on()
        };
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
            Some(ring) if ring.enabled() => write_frame(
                ring,
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

    /// RQDPC counts what the queue refused; a frame waiting for buffers is not refused yet,
    /// and a buffer fault was counted as the engine completed the descriptors.
    fn count_rx_drop(&mut self, queue: usize, reason: RxDrop) {
        if let Some(ring) = self.rx.get_mut(queue) {
            if !matches!(reason, RxDrop::RingFull | RxDrop::BufferDma) {
                ring.rqdpc = ring.rqdpc.wrapping_add(1);
            }
        }
    }

    fn rx_free_descriptors(&self) -> u32 {
        if self.rx[0].enabled() {
            self.rx[0].free_descriptors()
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
        self.status = status_bits(link);
    }

    /// VTSTATUS.
    fn link_status(&self) -> u32 {
        self.status
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

    #[test]
    fn link_status_maps_to_vtstatus_bits() {
        assert_eq!(status_bits(LinkStatus::DOWN), 0);
        assert_eq!(
            status_bits(LinkStatus::UP_1000_FD),
            status::LU | status::FD | status::SPEED_1000
        );
        let half_100 = LinkStatus {
            up: true,
            speed_mbps: 100,
            full_duplex: false,
        };
        assert_eq!(status_bits(half_100), status::LU | status::SPEED_100);
    }
}
