//! The VF's interrupt logic: VTEICR/VTEICS/VTEIMS/VTEIMC/VTEIAC/VTEIAM, VTEITR0..2, VTIVAR and
//! VTIVAR_MISC, for the VF's three MSI-X vectors, as Linux igbvf programs them
//! (`igbvf_configure_msix`, `igbvf_irq_enable`, `igbvf_set_itr`) and QEMU routes them
//! (`igb_set_vtivar`, `igb_msix_notify`, `igb_eitr_should_postpone`).
//!
//! Causes map to vectors: RX queue q → VTIVAR byte 2q, TX queue q → byte 2q+1, the mailbox →
//! VTIVAR_MISC byte 0; an entry without VALID routes nowhere. A routed cause sets its EICR
//! bit; a vector fires when its EICR bit is set and its EIMS bit is set. When it fires, its
//! EIAC bit clears it from EICR (auto-clear) and its EIAM bit clears it from EIMS (auto-mask:
//! no further interrupt until the driver re-enables the vector, which igbvf does with an EIMS
//! write when its handler or NAPI poll is done). A cause raised while its vector is masked stays
//! pending in EICR and fires when VTEIMS enables it. An EICS write raises its causes and also
//! re-enables auto-masked vectors among them — igbvf's TX handler re-arms an unfinished ring
//! that way (`igbvf_intr_msix_tx`: "auto mask will automatically re-enable the interrupt when
//! we write EICS").
//!
//! Moderation (VTEITR): a vector with a non-zero interval fires at most once per interval; a
//! vector ready to fire inside its interval is held and fires when the interval ends
//! ([`VfIntr::on_timer`], at [`VfIntr::next_deadline`]), unless the driver masked it or
//! cleared its cause meanwhile — then it stays pending (or gone) as it would on the hardware,
//! and nothing is lost. The interval is VTEITR bits 14:2 in 256 ns units of the register value
//! (igbvf's `IGBVF_4K_ITR` 980 is 251 µs: about 4000 interrupts a second), as QEMU's igb
//! counts it.
//!
//! The vector side (EICR, EIMS, EIAC, EIAM, EITR and the moderation state) is the shared
//! [`VectorBank`] (`function::vectors`), which the PF's MSI-X mode uses with its ten vectors;
//! [`VfIntr`] adds the VF's register decode and its VTIVAR routing (the same for the 82599's VF at
//! other offsets). Both are plain state; time comes in as
//! nanoseconds; they return the vectors to fire as a [`Fire`](crate::function::Fire) set, which the NIC runtime
//! signals after dropping its locks.

use super::regs::{self, ivar};
use crate::function::vectors::EitrFormat;
pub use crate::function::vectors::{
    Cause, VectorBank, EITR_CNT_IGNR, EITR_INTERVAL_MASK, EITR_UNIT_NS,
};
use crate::function::vf_intr::{VfIntr, VfIntrMap};

/// The 82576 VF's interrupt registers.
pub const MAP: VfIntrMap = VfIntrMap {
    eicr: regs::VTEICR,
    eics: regs::VTEICS,
    eims: regs::VTEIMS,
    eimc: regs::VTEIMC,
    eiac: regs::VTEIAC,
    eiam: regs::VTEIAM,
    eitr0: regs::VTEITR0,
    ivar: regs::VTIVAR,
    ivar_misc: regs::VTIVAR_MISC,
    eitr: EitrFormat::I82576,
    eics_reads_eicr: false,
    ivar_valid: ivar::VALID,
    ivar_vector_mask: ivar::VECTOR_MASK,
};

/// The interrupt registers of one 82576 VF: the vector bank of its three vectors and the
/// VTIVAR / VTIVAR_MISC routing.
pub type IntrRegs = VfIntr;

/// The registers at reset.
pub fn power_on() -> IntrRegs {
    VfIntr::new(&MAP)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::function::Fire;

    /// igbvf_configure_msix: TX0 → vector 0 (VTIVAR byte 1), RX0 → vector 1 (byte 0),
    /// mailbox → vector 2 in VTIVAR_MISC; then igbvf_irq_enable: EIAC = EIAM = EIMS = 0x7.
    fn igbvf_configured() -> IntrRegs {
        let mut r = power_on();
        // igbvf_assign_vector(tx 0, vector 0): read-modify-write of IVAR0.
        let ivar = r.read(regs::VTIVAR).unwrap();
        let ivar = (ivar & 0xFFFF_00FF) | (0x80 << 8);
        assert_eq!(r.write(regs::VTIVAR, ivar, 0), Some(Fire::NONE));
        // igbvf_assign_vector(rx 0, vector 1).
        let ivar = r.read(regs::VTIVAR).unwrap();
        let ivar = (ivar & 0xFFFF_FF00) | (0x80 | 1);
        assert_eq!(r.write(regs::VTIVAR, ivar, 0), Some(Fire::NONE));
        // EITR writes: 0 here, no moderation (the moderation tests set it).
        let _ = r.write(regs::VTEITR0, 0, 0);
        let _ = r.write(regs::VTEITR0 + 4, 0, 0);
        assert_eq!(r.write(regs::VTIVAR_MISC, 0x80 | 2, 0), Some(Fire::NONE));
        // igbvf_open: er32(EICR) to clear; igbvf_irq_enable.
        let _ = r.read(regs::VTEICR);
        for reg in [regs::VTEIAC, regs::VTEIAM, regs::VTEIMS] {
            assert_eq!(r.write(reg, 0x7, 0), Some(Fire::NONE));
        }
        r
    }

    #[test]
    fn igbvf_routing_rx_to_vector_1_tx_to_0_mailbox_to_2() {
        let mut r = igbvf_configured();
        assert_eq!(r.ivar, 0x0000_8081);
        assert_eq!(r.raise(Cause::Rx(0), 0).bits(), 0b010);
        assert_eq!(r.raise(Cause::Tx(0), 0).bits(), 0b001);
        assert_eq!(r.raise(Cause::Mailbox, 0).bits(), 0b100);
        // EIAC auto-cleared every fired cause.
        assert_eq!(r.bank.eicr, 0);
    }

    #[test]
    fn unrouted_queue_1_raises_nothing() {
        let mut r = igbvf_configured();
        assert_eq!(r.raise(Cause::Rx(1), 0), Fire::NONE);
        assert_eq!(r.raise(Cause::Tx(1), 0), Fire::NONE);
        assert_eq!(r.bank.eicr, 0);
    }

    #[test]
    fn masked_cause_stays_pending_and_fires_when_isr_rewrites_eims() {
        let mut r = igbvf_configured();
        // igbvf_irq_disable: EIMC = ~0, EIAC = 0.
        let _ = r.write(regs::VTEIMC, !0, 0);
        let _ = r.write(regs::VTEIAC, 0, 0);
        assert_eq!(r.raise(Cause::Rx(0), 0), Fire::NONE);
        assert_eq!(r.bank.eicr, 0b010);
        // igbvf_irq_enable again: the pending RX cause fires once EIMS has it.
        let _ = r.write(regs::VTEIAC, 0x7, 0);
        let _ = r.write(regs::VTEIAM, 0x7, 0);
        assert_eq!(r.write(regs::VTEIMS, 0x7, 0), Some(Fire::from_bits(0b010)));
        assert_eq!(r.bank.eicr, 0);
        // A second EIMS write with nothing pending fires nothing.
        assert_eq!(r.write(regs::VTEIMS, 0x2, 0), Some(Fire::NONE));
    }

    #[test]
    fn eics_fires_enabled_vectors_like_igbvf_watchdog_and_tx_rearm() {
        let mut r = igbvf_configured();
        // watchdog: ew32(EICS, rx_ring->eims_value).
        assert_eq!(
            r.write(regs::VTEICS, 0b010, 0),
            Some(Fire::from_bits(0b010))
        );
        // TX ISR, ring not fully cleaned: ew32(EICS, tx eims_value).
        assert_eq!(
            r.write(regs::VTEICS, 0b001, 0),
            Some(Fire::from_bits(0b001))
        );
        // Other ISR: ew32(EIMS, eims_other) with nothing pending.
        assert_eq!(r.write(regs::VTEIMS, 0b100, 0), Some(Fire::NONE));
    }

    #[test]
    fn without_eiac_eicr_latches_until_read_or_w1c() {
        let mut r = igbvf_configured();
        let _ = r.write(regs::VTEIAC, 0, 0);
        assert_eq!(r.raise(Cause::Mailbox, 0).bits(), 0b100);
        assert_eq!(r.bank.eicr, 0b100);
        // W1C of another bit leaves it.
        let _ = r.write(regs::VTEICR, 0b001, 0);
        assert_eq!(r.bank.eicr, 0b100);
        // Clear on read.
        assert_eq!(r.read(regs::VTEICR), Some(0b100));
        assert_eq!(r.read(regs::VTEICR), Some(0));
    }

    #[test]
    fn vector_3_and_high_bits_route_nowhere() {
        let mut r = power_on();
        let _ = r.write(regs::VTIVAR_MISC, 0x83, 0);
        let _ = r.write(regs::VTEIMS, !0, 0);
        assert_eq!(r.bank.eims, 0x7);
        assert_eq!(r.raise(Cause::Mailbox, 0), Fire::NONE);
        let _ = r.write(regs::VTEICS, !0, 0);
        assert_eq!(r.bank.eicr & !regs::VECTOR_MASK, 0);
    }

    #[test]
    fn unknown_offsets_are_not_interrupt_registers() {
        let mut r = power_on();
        assert_eq!(r.read(0x1534), None);
        assert_eq!(r.write(0x1690, 1, 0), None);
        assert_eq!(r.read(regs::VTEITR0 + 8), Some(0));
    }

    /// igbvf as it runs: EIAC = EIAM = EIMS = the three vectors, RX EITR at `itr`.
    fn moderated(itr: u32) -> IntrRegs {
        let mut r = igbvf_configured();
        let _ = r.write(regs::VTEITR0 + 4, itr, 0);
        r
    }

    const US: u64 = 1_000;

    #[test]
    fn an_interval_holds_the_second_interrupt_until_it_ends() {
        // igbvf's IGBVF_20K_ITR: 196 × 256 ns ≈ 50 µs.
        let mut r = moderated(196);
        let interval = 196 * EITR_UNIT_NS;
        assert_eq!(r.raise(Cause::Rx(0), 1_000 * US).bits(), 0b010);
        // Auto-masked until the driver's EIMS write at the end of its NAPI poll.
        assert_eq!(r.bank.eims & 0b010, 0);
        assert_eq!(r.write(regs::VTEIMS, 0b010, 1_010 * US), Some(Fire::NONE));
        // A frame 20 µs after the first interrupt: held.
        assert_eq!(r.raise(Cause::Rx(0), 1_020 * US), Fire::NONE);
        assert_eq!(r.next_deadline(), Some(1_000 * US + interval));
        assert_eq!(r.on_timer(1_000 * US + interval - 1), Fire::NONE, "not yet");
        assert_eq!(r.on_timer(1_000 * US + interval).bits(), 0b010);
        assert_eq!(r.next_deadline(), None);
        assert_eq!(r.bank.eicr & 0b010, 0, "auto-cleared when it fired");
    }

    #[test]
    fn a_held_interrupt_the_driver_masks_is_not_lost_but_waits_for_eims() {
        let mut r = moderated(980);
        assert_eq!(r.raise(Cause::Rx(0), 0).bits(), 0b010);
        let _ = r.write(regs::VTEIMS, 0b010, 1);
        assert_eq!(r.raise(Cause::Rx(0), 2), Fire::NONE, "held");
        // igbvf_irq_disable before the interval ends.
        let _ = r.write(regs::VTEIMC, !0, 3);
        let end = 980 * EITR_UNIT_NS;
        assert_eq!(r.on_timer(end), Fire::NONE, "masked: stays pending");
        assert_eq!(r.bank.eicr & 0b010, 0b010);
        assert_eq!(r.next_deadline(), None);
        // igbvf_irq_enable: the pending cause fires now.
        assert_eq!(
            r.write(regs::VTEIMS, 0b111, end + 5),
            Some(Fire::from_bits(0b010))
        );
    }

    #[test]
    fn eics_re_enables_an_auto_masked_tx_vector_as_igbvf_expects() {
        let mut r = igbvf_configured();
        assert_eq!(r.raise(Cause::Tx(0), 0).bits(), 0b001);
        assert_eq!(r.bank.eims & 0b001, 0, "auto-masked");
        // igbvf_intr_msix_tx with an unfinished ring: ew32(EICS, tx eims_value).
        assert_eq!(
            r.write(regs::VTEICS, 0b001, 1),
            Some(Fire::from_bits(0b001))
        );
    }

    #[test]
    fn without_eitr_nothing_is_held() {
        let mut r = igbvf_configured();
        for t in 0..5 {
            assert_eq!(r.raise(Cause::Rx(0), t).bits(), 0b010);
            let _ = r.write(regs::VTEIMS, 0b010, t);
        }
        assert_eq!(r.next_deadline(), None);
    }
}
