//! The VF's interrupt logic: VTEICR/VTEICS/VTEIMS/VTEIMC/VTEIAC/VTEIAM, VTEITR0..2, VTIVAR and
//! VTIVAR_MISC, for the VF's three MSI-X vectors, as Linux igbvf programs them
//! (`igbvf_configure_msix`, `igbvf_irq_enable`) and QEMU routes them (`igb_set_vtivar`,
//! `igb_msix_notify`).
//!
//! Causes map to vectors: RX queue q → VTIVAR byte 2q, TX queue q → byte 2q+1, the mailbox →
//! VTIVAR_MISC byte 0; an entry without VALID routes nowhere. A routed cause sets its EICR
//! bit; if the vector is enabled in EIMS it fires, and EIAC bits are cleared from EICR when
//! the vector fires. A cause raised while its vector is masked stays pending in EICR and fires
//! when VTEIMS enables it (nothing is lost across igbvf's "ISR re-enables EIMS" sequence).
//!
//! EIAM (auto-mask) is stored but not applied, as in QEMU: igbvf rewrites EIMS after every
//! interrupt anyway, and its TX handler re-arms with EICS, which auto-masking would turn into
//! a lost interrupt. EITR throttling is stored, not applied.
//!
//! [`IntrRegs`] is plain state; it returns the vectors to fire as a [`Fire`] set, which the
//! NIC runtime signals after dropping its locks.

use super::regs::{self, ivar, VECTOR_MASK, VF_VECTORS};
use crate::function::Fire;

/// A source of interrupts inside the VF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// RX write-back on queue 0 or 1.
    Rx(u8),
    /// TX write-back (RS) on queue 0 or 1.
    Tx(u8),
    /// The PF wrote STS/ACK into the mailbox (or pinged the VF).
    Mailbox,
}

/// The interrupt registers of one VF.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IntrRegs {
    pub eicr: u32,
    pub eims: u32,
    pub eiac: u32,
    pub eiam: u32,
    pub eitr: [u32; VF_VECTORS as usize],
    pub ivar: u32,
    pub ivar_misc: u32,
}

impl IntrRegs {
    /// Reset values: everything 0 (no vector routed, all masked).
    pub fn reset(&mut self) {
        *self = IntrRegs::default();
    }

    /// The vector bit a cause routes to, if its IVAR entry is VALID.
    pub fn route(&self, cause: Cause) -> Option<u32> {
        let entry = match cause {
            Cause::Rx(q) => self.ivar.checked_shr(16 * u32::from(q & 1)).unwrap_or(0) as u8,
            Cause::Tx(q) => (self.ivar.checked_shr(16 * u32::from(q & 1)).unwrap_or(0) >> 8) as u8,
            Cause::Mailbox => self.ivar_misc as u8,
        };
        if entry & ivar::VALID == 0 {
            return None;
        }
        let v = entry & ivar::VECTOR_MASK;
        // Vector 3 does not exist on a VF (3 MSI-X vectors): routes nowhere.
        (u16::from(v) < VF_VECTORS).then_some(1 << v)
    }

    /// A cause happened: set its EICR bit and fire it if enabled.
    pub fn raise(&mut self, cause: Cause) -> Fire {
        match self.route(cause) {
            Some(bit) => self.set_eicr(bit),
            None => Fire::NONE,
        }
    }

    /// EICR |= bits; fire the enabled ones; auto-clear (EIAC) what fired.
    fn set_eicr(&mut self, bits: u32) -> Fire {
        let bits = bits & VECTOR_MASK;
        self.eicr |= bits;
        self.pending_enabled(bits)
    }

    /// Fire the vectors in `candidates` that are pending in EICR and enabled in EIMS.
    fn pending_enabled(&mut self, candidates: u32) -> Fire {
        let fire = self.eicr & self.eims & candidates & VECTOR_MASK;
        self.eicr &= !(fire & self.eiac);
        Fire::from_bits(fire)
    }

    /// A register read (side effects: VTEICR clears on read, as in QEMU). `None` when
    /// `offset` is not an interrupt register.
    pub fn read(&mut self, offset: u64) -> Option<u32> {
        Some(match offset {
            regs::VTEICR => std::mem::take(&mut self.eicr),
            regs::VTEIMS => self.eims,
            regs::VTEIAC => self.eiac,
            regs::VTEIAM => self.eiam,
            // Write-only registers read 0.
            regs::VTEICS | regs::VTEIMC => 0,
            o if (regs::VTEITR0..regs::VTEITR0 + 4 * u64::from(VF_VECTORS)).contains(&o)
                && o.is_multiple_of(4) =>
            {
                self.eitr[((o - regs::VTEITR0) / 4) as usize]
            }
            regs::VTIVAR => self.ivar,
            regs::VTIVAR_MISC => self.ivar_misc,
            _ => return None,
        })
    }

    /// A register write; returns the vectors that fire because of it. `None` when `offset`
    /// is not an interrupt register.
    pub fn write(&mut self, offset: u64, value: u32) -> Option<Fire> {
        let v = value & VECTOR_MASK;
        Some(match offset {
            regs::VTEICS => self.set_eicr(v),
            regs::VTEIMS => {
                self.eims |= v;
                // Causes that arrived while masked fire now.
                self.pending_enabled(v)
            }
            regs::VTEIMC => {
                self.eims &= !v;
                Fire::NONE
            }
            regs::VTEICR => {
                // W1C.
                self.eicr &= !v;
                Fire::NONE
            }
            regs::VTEIAC => {
                self.eiac = v;
                Fire::NONE
            }
            regs::VTEIAM => {
                self.eiam = v;
                Fire::NONE
            }
            o if (regs::VTEITR0..regs::VTEITR0 + 4 * u64::from(VF_VECTORS)).contains(&o)
                && o.is_multiple_of(4) =>
            {
                self.eitr[((o - regs::VTEITR0) / 4) as usize] = value & 0x8000_7FFC;
                Fire::NONE
            }
            regs::VTIVAR => {
                // Each byte: vector b1:0, VALID b7.
                self.ivar = value & 0x8383_8383;
                Fire::NONE
            }
            regs::VTIVAR_MISC => {
                self.ivar_misc = value & 0x83;
                Fire::NONE
            }
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// igbvf_configure_msix: TX0 → vector 0 (VTIVAR byte 1), RX0 → vector 1 (byte 0),
    /// mailbox → vector 2 in VTIVAR_MISC; then igbvf_irq_enable: EIAC = EIAM = EIMS = 0x7.
    fn igbvf_configured() -> IntrRegs {
        let mut r = IntrRegs::default();
        // igbvf_assign_vector(tx 0, vector 0): read-modify-write of IVAR0.
        let ivar = r.read(regs::VTIVAR).unwrap();
        let ivar = (ivar & 0xFFFF_00FF) | (0x80 << 8);
        assert_eq!(r.write(regs::VTIVAR, ivar), Some(Fire::NONE));
        // igbvf_assign_vector(rx 0, vector 1).
        let ivar = r.read(regs::VTIVAR).unwrap();
        let ivar = (ivar & 0xFFFF_FF00) | (0x80 | 1);
        assert_eq!(r.write(regs::VTIVAR, ivar), Some(Fire::NONE));
        // EITR writes.
        let _ = r.write(regs::VTEITR0, 0x0000_0FA0);
        let _ = r.write(regs::VTEITR0 + 4, 0x0000_0FA0);
        assert_eq!(r.write(regs::VTIVAR_MISC, 0x80 | 2), Some(Fire::NONE));
        // igbvf_open: er32(EICR) to clear; igbvf_irq_enable.
        let _ = r.read(regs::VTEICR);
        for reg in [regs::VTEIAC, regs::VTEIAM, regs::VTEIMS] {
            assert_eq!(r.write(reg, 0x7), Some(Fire::NONE));
        }
        r
    }

    #[test]
    fn igbvf_routing_rx_to_vector_1_tx_to_0_mailbox_to_2() {
        let mut r = igbvf_configured();
        assert_eq!(r.ivar, 0x0000_8081);
        assert_eq!(r.raise(Cause::Rx(0)).bits(), 0b010);
        assert_eq!(r.raise(Cause::Tx(0)).bits(), 0b001);
        assert_eq!(r.raise(Cause::Mailbox).bits(), 0b100);
        // EIAC auto-cleared every fired cause.
        assert_eq!(r.eicr, 0);
    }

    #[test]
    fn unrouted_queue_1_raises_nothing() {
        let mut r = igbvf_configured();
        assert_eq!(r.raise(Cause::Rx(1)), Fire::NONE);
        assert_eq!(r.raise(Cause::Tx(1)), Fire::NONE);
        assert_eq!(r.eicr, 0);
    }

    #[test]
    fn masked_cause_stays_pending_and_fires_when_isr_rewrites_eims() {
        let mut r = igbvf_configured();
        // igbvf_irq_disable: EIMC = ~0, EIAC = 0.
        let _ = r.write(regs::VTEIMC, !0);
        let _ = r.write(regs::VTEIAC, 0);
        assert_eq!(r.raise(Cause::Rx(0)), Fire::NONE);
        assert_eq!(r.eicr, 0b010);
        // igbvf_irq_enable again: the pending RX cause fires once EIMS has it.
        let _ = r.write(regs::VTEIAC, 0x7);
        let _ = r.write(regs::VTEIAM, 0x7);
        assert_eq!(r.write(regs::VTEIMS, 0x7), Some(Fire::from_bits(0b010)));
        assert_eq!(r.eicr, 0);
        // A second EIMS write with nothing pending fires nothing.
        assert_eq!(r.write(regs::VTEIMS, 0x2), Some(Fire::NONE));
    }

    #[test]
    fn eics_fires_enabled_vectors_like_igbvf_watchdog_and_tx_rearm() {
        let mut r = igbvf_configured();
        // watchdog: ew32(EICS, rx_ring->eims_value).
        assert_eq!(r.write(regs::VTEICS, 0b010), Some(Fire::from_bits(0b010)));
        // TX ISR, ring not fully cleaned: ew32(EICS, tx eims_value).
        assert_eq!(r.write(regs::VTEICS, 0b001), Some(Fire::from_bits(0b001)));
        // Other ISR: ew32(EIMS, eims_other) with nothing pending.
        assert_eq!(r.write(regs::VTEIMS, 0b100), Some(Fire::NONE));
    }

    #[test]
    fn without_eiac_eicr_latches_until_read_or_w1c() {
        let mut r = igbvf_configured();
        let _ = r.write(regs::VTEIAC, 0);
        assert_eq!(r.raise(Cause::Mailbox).bits(), 0b100);
        assert_eq!(r.eicr, 0b100);
        // W1C of another bit leaves it.
        let _ = r.write(regs::VTEICR, 0b001);
        assert_eq!(r.eicr, 0b100);
        // Clear on read.
        assert_eq!(r.read(regs::VTEICR), Some(0b100));
        assert_eq!(r.read(regs::VTEICR), Some(0));
    }

    #[test]
    fn vector_3_and_high_bits_route_nowhere() {
        let mut r = IntrRegs::default();
        let _ = r.write(regs::VTIVAR_MISC, 0x83);
        let _ = r.write(regs::VTEIMS, !0);
        assert_eq!(r.eims, 0x7);
        assert_eq!(r.raise(Cause::Mailbox), Fire::NONE);
        let _ = r.write(regs::VTEICS, !0);
        assert_eq!(r.eicr & !VECTOR_MASK, 0);
    }

    #[test]
    fn unknown_offsets_are_not_interrupt_registers() {
        let mut r = IntrRegs::default();
        assert_eq!(r.read(0x1534), None);
        assert_eq!(r.write(0x1690, 1), None);
        assert_eq!(r.read(regs::VTEITR0 + 8), Some(0));
    }
}
