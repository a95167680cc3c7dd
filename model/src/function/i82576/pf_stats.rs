//! The PF's statistics registers (0x4000..0x4140): clear-on-read counters as igb's
//! `igb_update_stats` reads them every two seconds and `igb_clear_hw_cntrs_82575` clears them.
//! 32-bit counters stick at 0xFFFFFFFF; the 64-bit octet counters are read low then high, and
//! reading the high half clears the counter.
//!
//! What the function counts: good frames received and transmitted (GPRC/GPTC with their
//! octets, broadcast, multicast and size buckets), all frames seen (TPR/TOR, TPT/TOT), missed
//! frames (MPC) and oversize ones (ROC). Octets count the FCS, as the wire does. The error
//! counters of a physical link (CRC, alignment, collisions, ...) stay 0.

use eswitch::wire::ethernet::FCS_LEN;
use eswitch::MacAddr;

use super::pf_regs::{stat, STATS_END, STATS_START};

const CELLS: usize = ((STATS_END - STATS_START) / 4) as usize;

/// The statistics counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HwStats {
    cells: [u64; CELLS],
}

impl Default for HwStats {
    fn default() -> Self {
        HwStats { cells: [0; CELLS] }
    }
}

/// The counters of good frames in one direction.
struct Good {
    packets: u64,
    /// Good octets, and the host's and total octets where the direction counts them here.
    octets: &'static [u64],
    size_64: u64,
    broadcast: u64,
    multicast: u64,
}

const RX: Good = Good {
    packets: stat::GPRC,
    octets: &[stat::GORCL, stat::HGORCL],
    size_64: stat::PRC64,
    broadcast: stat::BPRC,
    multicast: stat::MPRC,
};

const TX: Good = Good {
    packets: stat::GPTC,
    octets: &[stat::GOTCL, stat::HGOTCL, stat::TOTL],
    size_64: stat::PTC64,
    broadcast: stat::BPTC,
    multicast: stat::MPTC,
};

fn cell(offset: u64) -> usize {
    ((offset - STATS_START) / 4) as usize
}

/// The size bucket (64, 65–127, 128–255, 256–511, 512–1023, 1024 and up) of a frame of
/// `wire_len` bytes, as an offset from the 64-byte counter.
fn bucket(wire_len: usize) -> u64 {
    4 * match wire_len {
        0..=64 => 0,
        65..=127 => 1,
        128..=255 => 2,
        256..=511 => 3,
        512..=1023 => 4,
        _ => 5,
    }
}

impl HwStats {
    pub fn reset(&mut self) {
        self.cells = [0; CELLS];
    }

    fn add(&mut self, offset: u64, n: u64) {
        let c = &mut self.cells[cell(offset)];
        *c = c.saturating_add(n);
    }

    /// A frame of `len` bytes (without FCS) that reached the MAC from the wire or the switch.
    pub fn seen(&mut self, len: usize) {
        self.add(stat::TPR, 1);
        self.add(stat::TORL, (len + FCS_LEN) as u64);
    }

    /// A good frame of `len` bytes to `dst`, counted in the registers of its direction.
    fn good(&mut self, dir: &Good, len: usize, dst: MacAddr) {
        let wire = (len + FCS_LEN) as u64;
        self.add(dir.packets, 1);
        for &octets in dir.octets {
            self.add(octets, wire);
        }
        self.add(dir.size_64 + bucket(wire as usize), 1);
        if dst.is_broadcast() {
            self.add(dir.broadcast, 1);
        } else if dst.is_multicast() {
            self.add(dir.multicast, 1);
        }
    }

    /// A received frame delivered into a ring.
    pub fn received(&mut self, len: usize, dst: MacAddr) {
        self.good(&RX, len, dst);
    }

    /// A transmitted frame of `len` bytes.
    pub fn transmitted(&mut self, len: usize, dst: MacAddr) {
        self.add(stat::TPT, 1);
        self.good(&TX, len, dst);
    }

    /// A frame dropped for want of descriptors.
    pub fn missed(&mut self) {
        self.add(stat::MPC, 1);
    }

    /// A frame refused as longer than the receive limit.
    pub fn oversize(&mut self) {
        self.add(stat::ROC, 1);
    }

    /// A counter register read (clears it); `None` outside the statistics range.
    pub fn read(&mut self, offset: u64) -> Option<u32> {
        if !(STATS_START..STATS_END).contains(&offset) || !offset.is_multiple_of(4) {
            return None;
        }
        for (lo, hi) in stat::WIDE {
            if offset == lo {
                return Some(self.cells[cell(lo)] as u32);
            }
            if offset == hi {
                let v = std::mem::take(&mut self.cells[cell(lo)]);
                return Some((v >> 32) as u32);
            }
        }
        let v = std::mem::take(&mut self.cells[cell(offset)]);
        Some(u32::try_from(v).unwrap_or(u32::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BCAST: MacAddr = MacAddr([0xFF; 6]);

    #[test]
    fn counters_clear_on_read_and_octets_read_low_then_high() {
        let mut s = HwStats::default();
        s.received(60, BCAST);
        s.received(1514, MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(s.read(stat::GPRC), Some(2));
        assert_eq!(s.read(stat::GPRC), Some(0));
        assert_eq!(s.read(stat::BPRC), Some(1));
        assert_eq!(s.read(stat::PRC64), Some(1));
        assert_eq!(s.read(stat::PRC1522), Some(1));
        assert_eq!(s.read(stat::GORCL), Some(64 + 1518));
        assert_eq!(
            s.read(stat::GORCL),
            Some(64 + 1518),
            "low half does not clear"
        );
        assert_eq!(s.read(stat::GORCH), Some(0));
        assert_eq!(s.read(stat::GORCL), Some(0), "the high half cleared it");
        assert_eq!(s.read(stat::CRCERRS), Some(0));
        assert_eq!(s.read(STATS_END), None);
        assert_eq!(s.read(stat::GPRC + 1), None);
    }

    #[test]
    fn thirty_two_bit_counters_stick_at_all_ones() {
        let mut s = HwStats::default();
        s.add(stat::MPC, u64::from(u32::MAX) + 5);
        assert_eq!(s.read(stat::MPC), Some(u32::MAX));
        s.add(stat::TORL, 1 << 33);
        assert_eq!(s.read(stat::TORH), Some(2));
    }
}
