//! The PF's interrupt logic: ICR/ICS/IMS/IMC/IAM for the causes of the MAC, and in MSI-X mode
//! the extended registers (a [`VectorBank`] of ten vectors, IVAR0..7, IVAR_MISC, GPIE) as igb
//! programs them (`igb_configure_msix`, `igb_assign_vector`, `igb_write_ivar`,
//! `igb_irq_enable`, `igb_irq_disable`, `igb_msix_other`, `igb_intr_msi`, `igb_intr`,
//! `igb_intr_test`).
//!
//! Two modes:
//! - **Single vector** (MSI, INTx, or MSI-X with GPIE.MSIX_MODE clear, the state after every
//!   reset): queue write-backs raise ICR.RXT0 / ICR.TXDW, and when ICR & IMS gains a bit,
//!   vector 0 fires (the front end maps it to MSI or INTx). igb's interrupt test runs here.
//!   Reading ICR acknowledges: IAM's bits are cleared from IMS (igb's MSI mode writes IAM =
//!   IMS and re-enables from its NAPI poll).
//! - **Multiple vectors** (MSI-X enabled and GPIE.MSIX_MODE set): RX queue q's write-back sets
//!   the EICR bit its IVAR entry names (IVAR0(q & 7) byte 0 or 2), TX likewise (byte 1 or 3);
//!   a MAC cause that ICR gains while enabled in IMS sets the EICR bit IVAR_MISC byte 1 names
//!   (igb's "other" vector). The bank fires, auto-clears (EIAC) and auto-masks (EIAM, with
//!   GPIE.EIAME) as for a VF.
//!
//! ICR reads return INT_ASSERTED while an enabled cause is pending and clear the causes (always
//! with GPIE.NSICR, which igb sets, and in single-vector mode; otherwise when a cause was
//! asserted or IMS is 0, as QEMU does).

use tracing::debug;

use super::intr::VectorBank;
use super::pf_regs::{
    self, gpie, icr, ivar, EICR, EIMC, EIMS, EITR0, EITR_COUNT, GPIE, IAM, ICR, ICS, IMC, IMS,
    IVAR0, IVAR_COUNT, IVAR_MISC,
};
use crate::function::mmio::dword_index;
use crate::function::Fire;

/// The PF's MSI-X vectors.
pub const VECTORS: usize = super::config::PF_MSIX_VECTORS as usize;

/// A queue's write-back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueCause {
    Rx(usize),
    Tx(usize),
}

/// The PF's interrupt registers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PfIntr {
    pub icr: u32,
    pub ims: u32,
    pub iam: u32,
    pub gpie: u32,
    /// EIAM as written; the bank's auto-mask follows it while GPIE.EIAME is set.
    pub eiam: u32,
    pub bank: VectorBank<VECTORS>,
    pub ivar: [u32; IVAR_COUNT],
    pub ivar_misc: u32,
}

impl PfIntr {
    pub fn reset(&mut self) {
        *self = PfIntr::default();
    }

    /// Multiple-vector mode: MSI-X is enabled and the driver set GPIE.MSIX_MODE.
    pub fn multi_vector(&self, msix: bool) -> bool {
        msix && self.gpie & gpie::MSIX_MODE != 0
    }

    /// The vector bit of an IVAR byte, if VALID and the vector exists.
    fn route(entry: u8) -> Option<u32> {
        if entry & ivar::VALID == 0 {
            return None;
        }
        let v = entry & ivar::VECTOR_MASK;
        if usize::from(v) < VECTORS {
            Some(1 << v)
        } else {
            debug!(vector = v, "IVAR names a vector the PF does not have");
            None
        }
    }

    fn queue_entry(&self, cause: QueueCause) -> u8 {
        // igb_assign_vector (82576): index q & 7; RX at bit 0 or 16, TX at 8 or 24 (q & 8).
        let (q, tx) = match cause {
            QueueCause::Rx(q) => (q, 0),
            QueueCause::Tx(q) => (q, 8),
        };
        let word = self.ivar[q & 7];
        let shift = if q & 8 != 0 { 16 } else { 0 } + tx;
        (word >> shift) as u8
    }

    /// MAC causes raised at `now` (ICS, link change, MDIO done, single-vector queue causes).
    pub fn raise(&mut self, causes: u32, msix: bool, now: u64) -> Fire {
        let causes = causes & icr::CAUSES;
        let newly = causes & !self.icr;
        self.icr |= causes;
        self.signal(newly & self.ims, msix, now)
    }

    /// Causes that just became pending and enabled.
    fn signal(&mut self, newly: u32, msix: bool, now: u64) -> Fire {
        if newly == 0 {
            return Fire::NONE;
        }
        if !self.multi_vector(msix) {
            return Fire::from_bits(1);
        }
        match Self::route((self.ivar_misc >> ivar::MISC_OTHER_SHIFT) as u8) {
            Some(bit) => self.bank.set_eicr(bit, now),
            None => Fire::NONE,
        }
    }

    /// A queue's write-back at `now`.
    pub fn raise_queue(&mut self, cause: QueueCause, msix: bool, now: u64) -> Fire {
        if !self.multi_vector(msix) {
            let bit = match cause {
                QueueCause::Rx(_) => icr::RXT0,
                QueueCause::Tx(_) => icr::TXDW,
            };
            return self.raise(bit, msix, now);
        }
        match Self::route(self.queue_entry(cause)) {
            Some(bit) => self.bank.set_eicr(bit, now),
            None => Fire::NONE,
        }
    }

    fn update_auto_mask(&mut self) {
        self.bank.eiam = if self.gpie & gpie::EIAME != 0 {
            self.eiam & VectorBank::<VECTORS>::MASK
        } else {
            0
        };
    }

    /// A register read with its side effects; `None` when `offset` is not an interrupt
    /// register.
    pub fn read(&mut self, offset: u64, msix: bool) -> Option<u32> {
        if let Some(n) = dword_index(offset, EITR0, EITR_COUNT) {
            // EITR 10..24 exist on the 82576 but have no vector behind them here.
            return Some(self.bank.eitr(n).unwrap_or(0));
        }
        if let Some(i) = dword_index(offset, IVAR0, IVAR_COUNT as u64) {
            return Some(self.ivar[i]);
        }
        Some(match offset {
            ICR => self.read_icr(msix),
            IMS => self.ims,
            IAM => self.iam,
            GPIE => self.gpie,
            EICR => self.bank.read_eicr(),
            EIMS => self.bank.eims,
            pf_regs::EIAC => self.bank.eiac,
            pf_regs::EIAM => self.eiam,
            IVAR_MISC => self.ivar_misc,
            ICS | IMC | pf_regs::EICS | EIMC => 0,
            _ => return None,
        })
    }

    fn read_icr(&mut self, msix: bool) -> u32 {
        let asserted = self.icr & self.ims != 0;
        let value = self.icr | if asserted { icr::INT_ASSERTED } else { 0 };
        let clears =
            self.gpie & gpie::NSICR != 0 || !self.multi_vector(msix) || asserted || self.ims == 0;
        if clears {
            self.icr = 0;
        }
        if asserted {
            // The read acknowledges the interrupt: IAM auto-masks.
            self.ims &= !self.iam;
        }
        value
    }

    /// A register write at `now`; returns the vectors that fire because of it, `None` when
    /// `offset` is not an interrupt register.
    pub fn write(&mut self, offset: u64, value: u32, msix: bool, now: u64) -> Option<Fire> {
        let bank_mask = VectorBank::<VECTORS>::MASK;
        if let Some(n) = dword_index(offset, EITR0, EITR_COUNT) {
            self.bank.write_eitr(n, value, now);
            return Some(Fire::NONE);
        }
        if let Some(i) = dword_index(offset, IVAR0, IVAR_COUNT as u64) {
            self.ivar[i] = value & ivar::BYTE_MASK;
            return Some(Fire::NONE);
        }
        let multi = self.multi_vector(msix);
        Some(match offset {
            ICR => {
                self.icr &= !value;
                Fire::NONE
            }
            ICS => self.raise(value, msix, now),
            IMS => {
                let added = value & icr::CAUSES & !self.ims;
                self.ims |= value & icr::CAUSES;
                // Causes pending while masked fire when enabled.
                self.signal(added & self.icr, msix, now)
            }
            IMC => {
                self.ims &= !value;
                Fire::NONE
            }
            IAM => {
                self.iam = value & icr::CAUSES;
                Fire::NONE
            }
            GPIE => {
                self.gpie = value & gpie::STORED;
                self.update_auto_mask();
                Fire::NONE
            }
            pf_regs::EICS if multi => self.bank.write_eics(value, now),
            pf_regs::EICS => {
                // Without multiple vectors EICR only records the causes.
                self.bank.eicr |= value & bank_mask;
                Fire::NONE
            }
            EIMS if multi => self.bank.write_eims(value, now),
            EIMS => {
                self.bank.eims |= value & bank_mask;
                Fire::NONE
            }
            EIMC => {
                self.bank.write_eimc(value);
                Fire::NONE
            }
            EICR => {
                self.bank.write_eicr(value);
                Fire::NONE
            }
            pf_regs::EIAC => {
                self.bank.eiac = value & bank_mask;
                Fire::NONE
            }
            pf_regs::EIAM => {
                self.eiam = value & bank_mask;
                self.update_auto_mask();
                Fire::NONE
            }
            IVAR_MISC => {
                self.ivar_misc = value & ivar::MISC_MASK;
                Fire::NONE
            }
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::function::i82576::pf_regs::{EIAC, EIAM, EICS};

    /// igb_configure_msix (82576) with one queue pair: GPIE, other → vector 0, RX0/TX0 →
    /// vector 1; then igb_irq_enable.
    fn igb_msix() -> PfIntr {
        let mut r = PfIntr::default();
        let w = |r: &mut PfIntr, o, v| assert_eq!(r.write(o, v, true, 0), Some(Fire::NONE));
        w(
            &mut r,
            GPIE,
            gpie::MSIX_MODE | gpie::PBA | gpie::EIAME | gpie::NSICR,
        );
        w(&mut r, IVAR_MISC, 0x80 << 8);
        w(&mut r, IVAR0, 0x0000_8181);
        w(&mut r, EIAC, 0b11);
        w(&mut r, EIAM, 0b11);
        w(&mut r, EIMS, 0b11);
        w(&mut r, IMS, icr::LSC | icr::DOUTSYNC | icr::DRSTA);
        r
    }

    #[test]
    fn msix_routes_queues_through_ivar_and_mac_causes_to_the_other_vector() {
        let mut r = igb_msix();
        assert_eq!(r.raise_queue(QueueCause::Rx(0), true, 0).bits(), 0b10);
        // Auto-masked until igb_msix_ring's napi poll writes EIMS again.
        assert_eq!(r.raise_queue(QueueCause::Tx(0), true, 0), Fire::NONE);
        assert_eq!(r.write(EIMS, 0b10, true, 0), Some(Fire::from_bits(0b10)));
        // Queue 1 has no IVAR entry: nothing.
        assert_eq!(r.raise_queue(QueueCause::Rx(1), true, 0), Fire::NONE);
        // LSC: ICR and the other vector; igb_msix_other reads ICR (clears) and re-enables.
        assert_eq!(r.raise(icr::LSC, true, 0).bits(), 0b01);
        assert_eq!(r.read(ICR, true), Some(icr::LSC | icr::INT_ASSERTED));
        assert_eq!(r.read(ICR, true), Some(0));
        assert_eq!(r.write(EIMS, 0b01, true, 0), Some(Fire::NONE));
        // A cause not in IMS stays in ICR and signals nothing.
        assert_eq!(r.raise(icr::RXDMT0, true, 0), Fire::NONE);
        assert_eq!(r.icr, icr::RXDMT0);
        // The watchdog's EICS fires the queue vectors.
        assert_eq!(r.write(EICS, 0b10, true, 0), Some(Fire::from_bits(0b10)));
    }

    #[test]
    fn queue_8_and_up_use_the_upper_ivar_bytes() {
        let mut r = igb_msix();
        r.write(IVAR0 + 4 * 2, 0x8382_0000, true, 0);
        r.write(EIMS, 0b1100, true, 0);
        assert_eq!(r.raise_queue(QueueCause::Rx(10), true, 0).bits(), 1 << 2);
        assert_eq!(r.raise_queue(QueueCause::Tx(10), true, 0).bits(), 1 << 3);
        // Vector 31 does not exist.
        r.write(IVAR0 + 4 * 3, 0x9F, true, 0);
        assert_eq!(r.raise_queue(QueueCause::Rx(3), true, 0), Fire::NONE);
    }

    #[test]
    fn after_reset_msix_signals_vector_0_without_ivar_as_igb_intr_test_needs() {
        let mut r = PfIntr::default();
        // igb_intr_test, MSI-X (shared) path: phase B only, IMS accumulates.
        for bit in (0..31).filter(|b| 0x77D4_FBFDu32 & (1 << b) != 0) {
            let mask = 1u32 << bit;
            assert_eq!(r.write(ICR, !0, true, 0), Some(Fire::NONE));
            assert_eq!(r.write(IMS, mask, true, 0), Some(Fire::NONE));
            assert_eq!(
                r.write(ICS, mask, true, 0),
                Some(Fire::from_bits(1)),
                "{bit}"
            );
            assert_ne!(r.read(ICR, true).unwrap() & mask, 0);
        }
    }

    #[test]
    fn msi_masked_causes_do_not_signal_and_icr_read_auto_masks() {
        let mut r = PfIntr::default();
        // Phase A: masked.
        r.write(IMC, icr::LSC, false, 0);
        assert_eq!(r.write(ICS, icr::LSC, false, 0), Some(Fire::NONE));
        // Phase C: only other causes forced.
        r.write(ICR, !0, false, 0);
        r.write(IMS, icr::LSC, false, 0);
        r.write(IMC, !icr::LSC, false, 0);
        assert_eq!(r.write(ICS, !icr::LSC, false, 0), Some(Fire::NONE));
        // igb_irq_enable (MSI): IMS = IAM = the enable mask; the handler's ICR read masks.
        let enable = icr::RXT0 | icr::TXDW | icr::RXDMT0 | icr::RXSEQ | icr::LSC;
        r.write(ICR, !0, false, 0);
        r.write(IMS, enable, false, 0);
        r.write(IAM, enable, false, 0);
        assert_eq!(r.raise_queue(QueueCause::Rx(0), false, 0).bits(), 1);
        assert_eq!(r.read(ICR, false), Some(icr::RXT0 | icr::INT_ASSERTED));
        assert_eq!(r.ims, 0, "auto-masked by the read");
        assert_eq!(r.raise_queue(QueueCause::Tx(0), false, 0), Fire::NONE);
        // The napi poll's igb_irq_enable: the pending TXDW fires now.
        assert_eq!(r.write(IMS, enable, false, 0), Some(Fire::from_bits(1)));
    }

    #[test]
    fn reserved_bits_do_not_stick() {
        let mut r = PfIntr::default();
        for o in [ICS, IMS, IAM, GPIE, IVAR0, IVAR_MISC, EIAC, EIAM, EIMS] {
            r.write(o, !0, true, 0);
        }
        assert_eq!(r.icr & !icr::CAUSES, 0);
        assert_eq!(r.ims & !icr::CAUSES, 0);
        assert_eq!(r.read(GPIE, true), Some(gpie::STORED));
        assert_eq!(r.read(IVAR0, true), Some(ivar::BYTE_MASK));
        assert_eq!(r.read(EIMS, true), Some(0x3FF));
        assert_eq!(r.read(pf_regs::EITR0 + 4 * 20, true), Some(0));
    }
}
