//! The 82599 VF's interrupt registers: VTEICR/VTEICS/VTEIMS/VTEIMC/VTEIAC/VTEIAM, VTEITR0..2,
//! VTIVAR(0) and VTIVAR_MISC for its three MSI-X vectors, as ixgbevf programs them
//! (`ixgbevf_configure_msix`, `ixgbevf_set_ivar`, `ixgbevf_write_eitr`, `ixgbevf_irq_enable`,
//! `ixgbevf_irq_disable`), over the vector bank the 82576 shares ([`VectorBank`]).
//!
//! Routing: RX queue q → VTIVAR(0) byte 2q, TX queue q → byte 2q+1 (`ixgbevf_set_ivar`:
//! index = 16 × (queue & 1) + 8 × direction), the mailbox → VTIVAR_MISC byte 0; an entry
//! without `IXGBE_IVAR_ALLOC_VAL` routes nowhere. ixgbevf puts RX0+TX0 on vector 0, RX1+TX1 on
//! vector 1 and the mailbox on the last vector.
//!
//! Firing: a routed cause sets its VTEICR bit; a vector fires when that bit and its VTEIMS bit
//! are set (also when VTEIMS is written while the bit is pending: nothing raised while masked
//! is lost). Firing clears the VTEICR bit if VTEIAC has it (ixgbevf never reads VTEICR in its
//! handlers and relies on auto-clear) and the VTEIMS bit if VTEIAM has it (ixgbevf re-enables
//! with a VTEIMS write after NAPI or after its mailbox handler, `ixgbevf_msix_other`). VTEICR
//! clears on read (ixgbevf reads it to flush pending causes in `ixgbevf_irq_disable` paths
//! and before enabling); a write clears the bits written (⚠ W1C assumed, as on the 82576).
//! VTEICS sets cause bits (ixgbevf's watchdog kicks its queue vectors that way) and reads
//! VTEICR without clearing it (`ixgbevf_get_regs` dumps it); VTEIMC reads 0.
//!
//! Moderation: VTEITR(n) bits 11:3 hold the interval, 2.048 µs per unit (256 ns per unit of
//! the register value: ixgbevf's 200 is 51.2 µs, its "20K" rate), bit 31 (CNT_WDIS) keeps the
//! running interval on a write; a vector ready inside its interval is held until the interval
//! ends ([`IntrRegs::on_timer`] at [`IntrRegs::next_deadline`]), and one the driver masked or
//! cleared meanwhile stays pending (or gone) — never lost.

use super::regs::{self, ivar, VF_VECTORS};
use crate::function::mmio::dword_index;
use crate::function::vectors::{Cause, EitrFormat, VectorBank};
use crate::function::Fire;

/// The 82599 VF's vector bank.
pub type Bank = VectorBank<{ VF_VECTORS as usize }>;

/// The interrupt registers of one 82599 VF.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntrRegs {
    pub bank: Bank,
    /// VTIVAR(0): queues 0 and 1.
    pub ivar: u32,
    pub ivar_misc: u32,
}

impl Default for IntrRegs {
    fn default() -> Self {
        IntrRegs {
            bank: Bank::new(EitrFormat::X82599),
            ivar: 0,
            ivar_misc: 0,
        }
    }
}

/// Each VTIVAR byte keeps VALID and the vector number.
const IVAR_STORED: u32 = u32::from_le_bytes([ivar::BYTE_MASK; 4]);

impl IntrRegs {
    /// Reset values: everything 0 (no vector routed, all masked, no moderation).
    pub fn reset(&mut self) {
        *self = IntrRegs::default();
    }

    /// The vector bit a cause routes to, if its IVAR entry is VALID and names a vector the VF
    /// has.
    pub fn route(&self, cause: Cause) -> Option<u32> {
        let byte = |word: u32, i: u32| (word >> (8 * i)) as u8;
        let entry = match cause {
            Cause::Rx(q) => byte(self.ivar, 2 * u32::from(q & 1)),
            Cause::Tx(q) => byte(self.ivar, 2 * u32::from(q & 1) + 1),
            Cause::Mailbox => byte(self.ivar_misc, 0),
        };
        if entry & ivar::VALID == 0 {
            return None;
        }
        let v = entry & ivar::VECTOR_MASK;
        (u16::from(v) < VF_VECTORS).then_some(1 << v)
    }

    /// A cause happened at `now`: set its VTEICR bit and fire it if enabled and not held back.
    pub fn raise(&mut self, cause: Cause, now: u64) -> Fire {
        match self.route(cause) {
            Some(bit) => self.bank.set_eicr(bit, now),
            None => Fire::NONE,
        }
    }

    /// When a held interrupt's interval ends, if one is held.
    pub fn next_deadline(&self) -> Option<u64> {
        self.bank.next_deadline()
    }

    /// See [`VectorBank::on_timer`].
    pub fn on_timer(&mut self, now: u64) -> Fire {
        self.bank.on_timer(now)
    }

    fn eitr_index(offset: u64) -> Option<usize> {
        dword_index(offset, regs::VTEITR0, u64::from(VF_VECTORS))
    }

    /// Whether `offset` is one of these registers.
    pub fn decodes(offset: u64) -> bool {
        matches!(
            offset,
            regs::VTEICR
                | regs::VTEICS
                | regs::VTEIMS
                | regs::VTEIMC
                | regs::VTEIAC
                | regs::VTEIAM
                | regs::VTIVAR0
                | regs::VTIVAR_MISC
        ) || Self::eitr_index(offset).is_some()
    }

    /// A register read with its side effects (VTEICR clears); `None` for other offsets.
    pub fn read(&mut self, offset: u64) -> Option<u32> {
        Some(match offset {
            regs::VTEICR => self.bank.read_eicr(),
            regs::VTEICS => self.bank.eicr,
            regs::VTEIMS => self.bank.eims,
            regs::VTEIMC => 0,
            regs::VTEIAC => self.bank.eiac,
            regs::VTEIAM => self.bank.eiam,
            regs::VTIVAR0 => self.ivar,
            regs::VTIVAR_MISC => self.ivar_misc,
            o => Self::eitr_index(o).and_then(|n| self.bank.eitr(n))?,
        })
    }

    /// A register write at `now`; the vectors that fire because of it. `None` for other
    /// offsets.
    pub fn write(&mut self, offset: u64, value: u32, now: u64) -> Option<Fire> {
        let mask = Bank::MASK;
        Some(match offset {
            regs::VTEICS => self.bank.write_eics(value, now),
            regs::VTEIMS => self.bank.write_eims(value, now),
            regs::VTEIMC => {
                self.bank.write_eimc(value);
                Fire::NONE
            }
            regs::VTEICR => {
                self.bank.write_eicr(value);
                Fire::NONE
            }
            regs::VTEIAC => {
                self.bank.eiac = value & mask;
                Fire::NONE
            }
            regs::VTEIAM => {
                self.bank.eiam = value & mask;
                Fire::NONE
            }
            regs::VTIVAR0 => {
                self.ivar = value & IVAR_STORED;
                Fire::NONE
            }
            regs::VTIVAR_MISC => {
                self.ivar_misc = value & u32::from(ivar::BYTE_MASK);
                Fire::NONE
            }
            o => {
                let n = Self::eitr_index(o)?;
                self.bank.write_eitr(n, value, now);
                Fire::NONE
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::function::vectors::EITR_UNIT_NS;

    /// ixgbevf with two queue pairs (`ixgbevf_configure_msix`): RX0/TX0 → vector 0, RX1/TX1 →
    /// vector 1 (VTIVAR(0) = 0x81818080), mailbox → vector 2 (VTIVAR_MISC = 0x82), EITR 200
    /// | CNT_WDIS on the queue vectors; then `ixgbevf_irq_enable`: VTEIAM = VTEIAC = VTEIMS =
    /// 0x7.
    fn ixgbevf_configured(itr: u32) -> IntrRegs {
        let mut r = IntrRegs::default();
        for (queue, vector) in [(0u32, 0u32), (1, 1)] {
            for direction in 0..2u32 {
                let index = 16 * (queue & 1) + 8 * direction;
                let v = r.read(regs::VTIVAR0).unwrap();
                let v = (v & !(0xFF << index)) | ((vector | 0x80) << index);
                assert_eq!(r.write(regs::VTIVAR0, v, 0), Some(Fire::NONE));
            }
            let _ = r.write(regs::VTEITR0 + 4 * u64::from(vector), itr | (1 << 31), 0);
        }
        let misc = (r.read(regs::VTIVAR_MISC).unwrap() & !0xFF) | 0x82;
        let _ = r.write(regs::VTIVAR_MISC, misc, 0);
        let _ = r.read(regs::VTEICR);
        for reg in [regs::VTEIAM, regs::VTEIAC, regs::VTEIMS] {
            assert_eq!(r.write(reg, 0x7, 0), Some(Fire::NONE));
        }
        r
    }

    #[test]
    fn ixgbevf_routes_queue_pairs_to_vectors_0_and_1_and_the_mailbox_last() {
        let mut r = ixgbevf_configured(0);
        assert_eq!(r.ivar, 0x8181_8080);
        assert_eq!(r.ivar_misc, 0x82);
        assert_eq!(r.raise(Cause::Rx(0), 0).bits(), 0b001);
        assert_eq!(r.raise(Cause::Tx(1), 0).bits(), 0b010);
        assert_eq!(r.raise(Cause::Mailbox, 0).bits(), 0b100);
        assert_eq!(r.bank.eicr, 0, "auto-cleared");
        assert_eq!(r.bank.eims, 0, "auto-masked");
    }

    #[test]
    fn a_cause_raised_while_masked_fires_when_eims_enables_it() {
        let mut r = ixgbevf_configured(0);
        // ixgbevf_irq_disable: VTEIAM = 0, VTEIMC = ~0, VTEIAC = 0.
        let _ = r.write(regs::VTEIAM, 0, 0);
        let _ = r.write(regs::VTEIMC, !0, 0);
        let _ = r.write(regs::VTEIAC, 0, 0);
        assert_eq!(r.raise(Cause::Rx(1), 0), Fire::NONE);
        assert_eq!(
            r.read(regs::VTEICS),
            Some(0b010),
            "VTEICS reads without clearing"
        );
        assert_eq!(r.bank.eicr, 0b010);
        assert_eq!(r.write(regs::VTEIMS, 0x7, 1), Some(Fire::from_bits(0b010)));
        // No auto-clear now: VTEICR still has it until read.
        assert_eq!(r.read(regs::VTEICR), Some(0b010));
        assert_eq!(r.read(regs::VTEICR), Some(0));
    }

    #[test]
    fn eitr_keeps_bits_11_to_3_and_cnt_wdis_and_holds_the_second_interrupt() {
        let mut r = ixgbevf_configured(200);
        assert_eq!(r.read(regs::VTEITR0), Some(200 | (1 << 31)));
        let _ = r.write(regs::VTEITR0 + 8, 0xFFFF_FFFF, 0);
        assert_eq!(r.read(regs::VTEITR0 + 8), Some(0x0FF8 | (1 << 31)));
        let interval = 200 * EITR_UNIT_NS; // 51.2 µs
        assert_eq!(r.raise(Cause::Rx(0), 1_000).bits(), 0b001);
        // The NAPI poll ends and re-enables the vector; another frame comes 10 µs later.
        let _ = r.write(regs::VTEIMS, 0b001, 5_000);
        assert_eq!(r.raise(Cause::Rx(0), 11_000), Fire::NONE, "held");
        assert_eq!(r.next_deadline(), Some(1_000 + interval));
        assert_eq!(r.on_timer(1_000 + interval - 1), Fire::NONE);
        assert_eq!(r.on_timer(1_000 + interval).bits(), 0b001);
    }

    #[test]
    fn unrouted_and_out_of_range_vectors_raise_nothing() {
        let mut r = IntrRegs::default();
        let _ = r.write(regs::VTEIMS, !0, 0);
        assert_eq!(r.bank.eims, 0x7);
        assert_eq!(r.raise(Cause::Rx(0), 0), Fire::NONE, "not VALID");
        let _ = r.write(regs::VTIVAR_MISC, 0xFFFF_FF83, 0);
        assert_eq!(r.ivar_misc, 0x83);
        assert_eq!(r.raise(Cause::Mailbox, 0), Fire::NONE, "vector 3");
        assert_eq!(r.read(0x0118), None);
        assert_eq!(r.write(0x082C, 1, 0), None);
    }
}
