//! The vector side of the extended interrupts the 82576 and the 82599 share: per MSI-X vector
//! a cause bit (EICR), an enable (EIMS), auto-clear (EIAC), auto-mask (EIAM) and a moderation
//! interval (EITR), as [`VectorBank`]; and the causes a VF routes to its vectors ([`Cause`]).
//! The cards differ in where the registers sit and in the EITR interval field
//! ([`EitrFormat`]); each card's interrupt module adds its register decode and its IVAR
//! routing on top (`i82576::intr`, `x82599::intr`).

use crate::function::Fire;

/// A source of interrupts inside a VF (the 82576's and the 82599's have the same three).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// RX write-back on queue 0 or 1.
    Rx(u8),
    /// TX write-back (RS) on queue 0 or 1.
    Tx(u8),
    /// The PF wrote STS/ACK into the mailbox (or pinged the VF).
    Mailbox,
}

/// The 82576's interval bits of VTEITR / EITR (14:2).
pub const EITR_INTERVAL_MASK: u32 = 0x7FFC;
/// VTEITR.CNT_IGNR / EITR.CNT_IGNR (82576), VTEITR.CNT_WDIS (82599): the write does not
/// restart the interval counter.
pub const EITR_CNT_IGNR: u32 = 1 << 31;
/// Nanoseconds per unit of the EITR interval field as the register holds it.
pub const EITR_UNIT_NS: u64 = 256;

/// Where a card keeps the moderation interval in its EITR registers. Both count it in 256 ns
/// per unit of the register value (the field's own unit times its shift): the 82576 in bits
/// 14:2 (1.024 µs per field unit, as QEMU's igb counts it), the 82599 in bits 11:3 (2.048 µs
/// per field unit at 1 and 10 Gb/s: DPDK's `IXGBE_EITR_INTERVAL_UNIT_NS`; ixgbevf writes
/// µs × 4, `IXGBE_20K_ITR` = 200 for 50 µs, and masks with `IXGBE_MAX_EITR` = 0xFF8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EitrFormat {
    /// The interval bits of the register.
    pub interval_mask: u32,
}

impl EitrFormat {
    pub const I82576: EitrFormat = EitrFormat {
        interval_mask: EITR_INTERVAL_MASK,
    };
    pub const X82599: EitrFormat = EitrFormat {
        interval_mask: 0x0FF8,
    };
}

/// The per-vector side of the extended interrupts, the same for an 82576 VF (3 vectors), the
/// 82576 PF in MSI-X mode (10) and an 82599 VF (3): EICR, EIMS, EIAC, EIAM and EITR with the
/// moderation state behind it. Causes arrive as EICR bits (the owner routes them through its IVARs); the bank
/// answers with the vectors to fire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VectorBank<const N: usize> {
    pub eicr: u32,
    pub eims: u32,
    pub eiac: u32,
    /// Auto-mask bits in effect (the PF gates them with GPIE.EIAME).
    pub eiam: u32,
    pub eitr: [u32; N],
    /// Per vector: before this time (ns) it may not fire again.
    quiet_until: [u64; N],
    /// Vectors ready to fire, held until their interval ends.
    held: u32,
    format: EitrFormat,
}

/// The 82576's bank.
impl<const N: usize> Default for VectorBank<N> {
    fn default() -> Self {
        VectorBank::new(EitrFormat::I82576)
    }
}

impl<const N: usize> VectorBank<N> {
    /// Everything 0 (all masked, nothing pending), EITR as `format` lays it out.
    pub fn new(format: EitrFormat) -> Self {
        VectorBank {
            eicr: 0,
            eims: 0,
            eiac: 0,
            eiam: 0,
            eitr: [0; N],
            quiet_until: [0; N],
            held: 0,
            format,
        }
    }
}

impl<const N: usize> VectorBank<N> {
    /// One bit per vector.
    pub const MASK: u32 = if N >= 32 { u32::MAX } else { (1u32 << N) - 1 };

    /// EICR |= bits; fire the enabled ones (moderation permitting).
    pub fn set_eicr(&mut self, bits: u32, now: u64) -> Fire {
        self.set_eicr_lazily(bits, || now)
    }

    /// [`VectorBank::set_eicr`], asking for the time only when a vector among `bits` is
    /// enabled: a cause raised while its vector is masked (as EIAM leaves it for the whole of
    /// a driver's poll) costs no clock read.
    pub fn set_eicr_lazily(&mut self, bits: u32, now: impl FnOnce() -> u64) -> Fire {
        let bits = bits & Self::MASK;
        self.eicr |= bits;
        if self.eims & bits == 0 {
            return Fire::NONE;
        }
        self.pending_enabled(bits, now())
    }

    /// The moderation interval of vector `v`.
    fn interval_ns(&self, v: usize) -> u64 {
        u64::from(self.eitr[v] & self.format.interval_mask) * EITR_UNIT_NS
    }

    /// Fire the vectors in `candidates` that are pending in EICR and enabled in EIMS, but hold
    /// those still inside their interval; auto-clear (EIAC) and auto-mask (EIAM) what fired.
    fn pending_enabled(&mut self, candidates: u32, now: u64) -> Fire {
        let ready = self.eicr & self.eims & candidates & Self::MASK;
        let mut fire = 0;
        for v in 0..N {
            let bit = 1u32 << v;
            if ready & bit == 0 {
                continue;
            }
            if now < self.quiet_until[v] {
                self.held |= bit;
                continue;
            }
            fire |= bit;
            self.quiet_until[v] = now.saturating_add(self.interval_ns(v));
        }
        self.held &= !fire;
        self.eicr &= !(fire & self.eiac);
        self.eims &= !(fire & self.eiam);
        Fire::from_bits(fire)
    }

    /// When a held interrupt's interval ends, if one is held.
    pub fn next_deadline(&self) -> Option<u64> {
        (0..N)
            .filter(|&v| self.held & (1 << v) != 0)
            .map(|v| self.quiet_until[v])
            .min()
    }

    /// Time has come to `now`: held vectors whose interval ended fire if they are still
    /// pending and enabled; one the driver masked or cleared meanwhile is no longer held (a
    /// pending cause fires when the vector is enabled again).
    pub fn on_timer(&mut self, now: u64) -> Fire {
        let due = (0..N)
            .filter(|&v| self.held & (1 << v) != 0 && self.quiet_until[v] <= now)
            .fold(0u32, |m, v| m | 1 << v);
        self.held &= !due;
        self.pending_enabled(due, now)
    }

    /// EICR read: clears on read (as QEMU does).
    pub fn read_eicr(&mut self) -> u32 {
        std::mem::take(&mut self.eicr)
    }

    /// EICS write: raises its causes and re-enables auto-masked vectors among them (igbvf's
    /// `igbvf_intr_msix_tx`: "auto mask will automatically re-enable the interrupt when we
    /// write EICS").
    pub fn write_eics(&mut self, value: u32, now: u64) -> Fire {
        let v = value & Self::MASK;
        self.eims |= v & self.eiam;
        self.set_eicr(v, now)
    }

    /// EIMS write: enables vectors; causes that arrived while masked fire now.
    pub fn write_eims(&mut self, value: u32, now: u64) -> Fire {
        let v = value & Self::MASK;
        self.eims |= v;
        self.pending_enabled(v, now)
    }

    /// EIMC write: masks vectors.
    pub fn write_eimc(&mut self, value: u32) {
        self.eims &= !(value & Self::MASK);
    }

    /// EICR write: W1C.
    pub fn write_eicr(&mut self, value: u32) {
        self.eicr &= !(value & Self::MASK);
    }

    /// EITR(n) read (`None`: no such vector).
    pub fn eitr(&self, n: usize) -> Option<u32> {
        self.eitr.get(n).copied()
    }

    /// EITR(n) write at `now`: the interval (and CNT_IGNR) is stored; without CNT_IGNR the
    /// interval counter restarts from now. Returns false when vector `n` does not exist.
    pub fn write_eitr(&mut self, n: usize, value: u32, now: u64) -> bool {
        if n >= N {
            return false;
        }
        self.eitr[n] = value & (EITR_CNT_IGNR | self.format.interval_mask);
        if value & EITR_CNT_IGNR == 0 && self.quiet_until[n] > now {
            self.quiet_until[n] = now.saturating_add(self.interval_ns(n));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn a_masked_cause_is_latched_without_asking_the_time_and_fires_when_enabled() {
        let mut bank = VectorBank::<3>::default();
        bank.write_eitr(1, 40, 0); // 40 × 256 ns
        let asked = Cell::new(0);
        let now = |t: u64| {
            asked.set(asked.get() + 1);
            t
        };
        assert_eq!(bank.set_eicr_lazily(0b010, || now(5)), Fire::NONE);
        assert_eq!(asked.get(), 0, "a masked vector needs no time");
        assert_eq!(bank.eicr, 0b010, "the cause is latched");
        assert_eq!(
            bank.write_eims(0b010, 6).bits(),
            0b010,
            "fires when enabled"
        );
        // Enabled (auto-mask off): the time is read and moderation applies.
        assert_eq!(bank.set_eicr_lazily(0b010, || now(7)), Fire::NONE, "held");
        assert_eq!(asked.get(), 1);
        assert_eq!(bank.next_deadline(), Some(6 + 40 * EITR_UNIT_NS));
        assert_eq!(
            bank.set_eicr_lazily(0b010, || now(6 + 40 * EITR_UNIT_NS))
                .bits(),
            0b010
        );
        assert_eq!(asked.get(), 2);
    }
}
