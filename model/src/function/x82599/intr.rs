//! The 82599 VF's interrupt registers: VTEICR/VTEICS/VTEIMS/VTEIMC/VTEIAC/VTEIAM, VTEITR0..2,
//! VTIVAR(0) and VTIVAR_MISC for its three MSI-X vectors, as ixgbevf programs them
//! (`ixgbevf_configure_msix`, `ixgbevf_set_ivar`, `ixgbevf_write_eitr`, `ixgbevf_irq_enable`,
//! `ixgbevf_irq_disable`), over the vector bank the 82576 shares
//! ([`VectorBank`](crate::function::vectors::VectorBank)).
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
//! ends ([`VfIntr::on_timer`] at [`VfIntr::next_deadline`]), and one the driver masked or
//! cleared meanwhile stays pending (or gone) — never lost.

use super::regs::{self, ivar};
use crate::function::vectors::EitrFormat;
use crate::function::vf_intr::{VfIntr, VfIntrMap};

pub use crate::function::vf_intr::Bank;

/// The 82599 VF's interrupt registers.
pub const MAP: VfIntrMap = VfIntrMap {
    eicr: regs::VTEICR,
    eics: regs::VTEICS,
    eims: regs::VTEIMS,
    eimc: regs::VTEIMC,
    eiac: regs::VTEIAC,
    eiam: regs::VTEIAM,
    eitr0: regs::VTEITR0,
    ivar: regs::VTIVAR0,
    ivar_misc: regs::VTIVAR_MISC,
    eitr: EitrFormat::X82599,
    eics_reads_eicr: true,
    ivar_valid: ivar::VALID,
    ivar_vector_mask: ivar::VECTOR_MASK,
};

/// The interrupt registers of one 82599 VF.
pub type IntrRegs = VfIntr;

/// The registers at reset.
pub fn power_on() -> IntrRegs {
    VfIntr::new(&MAP)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::function::vectors::Cause;
    use crate::function::vectors::EITR_UNIT_NS;
    use crate::function::Fire;

    /// ixgbevf with two queue pairs (`ixgbevf_configure_msix`): RX0/TX0 → vector 0, RX1/TX1 →
    /// vector 1 (VTIVAR(0) = 0x81818080), mailbox → vector 2 (VTIVAR_MISC = 0x82), EITR 200
    /// | CNT_WDIS on the queue vectors; then `ixgbevf_irq_enable`: VTEIAM = VTEIAC = VTEIMS =
    /// 0x7.
    fn ixgbevf_configured(itr: u32) -> IntrRegs {
        let mut r = power_on();
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
        let mut r = power_on();
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
