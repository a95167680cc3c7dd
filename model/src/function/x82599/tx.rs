//! The 82599 VF's TX queue registers (VFTDBAL ... VFTDWBAH, 0x40 apart from 0x2000) as
//! ixgbevf's `ixgbevf_configure_tx_ring` programs them, decoded onto the shared TX engine
//! ([`crate::function::tx`]). The descriptors are the advanced ones the 82576 also uses;
//! ixgbevf writes a context descriptor before every packet and sets CC (olinfo bit 7) on the
//! first data descriptor (`ixgbevf_tx_olinfo_status`): the engine keeps the two context slots
//! per queue (IDX 0 and 1) and applies the one the data descriptor names.
//!
//! The 82599 honours TDWBAL.Head_WB_En (the Tx head write-back of the 82599 datasheet): with
//! it set, the engine writes TDH to TDWBAH:TDWBAL instead of DD into the descriptors.
//! ixgbevf leaves it off (it writes 0 to both).

use super::regs::{txdctl, txq, DBAL_MASK, DCA_TXCTRL_RESET, DLEN_MASK, HEAD_TAIL_MASK};
use crate::function::tx::TxRing;

/// A queue after power-on, VF reset or FLR: disabled, every register 0 but VFDCA_TXCTRL.
pub fn reset_value() -> TxRing {
    let mut ring = TxRing::new(0);
    ring.txctl = DCA_TXCTRL_RESET;
    ring
}

/// A read inside the queue's 0x40 block (`rel` = offset from its start); `None` where the
/// block has no register.
pub fn read(ring: &TxRing, rel: u64) -> Option<u32> {
    Some(match rel {
        txq::TDBAL => ring.tdbal,
        txq::TDBAH => ring.tdbah,
        txq::TDLEN => ring.tdlen,
        txq::DCA_TXCTRL => ring.txctl,
        txq::TDH => ring.tdh,
        txq::TDT => ring.tdt,
        txq::TXDCTL => ring.txdctl,
        txq::TDWBAL => ring.tdwbal,
        txq::TDWBAH => ring.tdwbah,
        _ => return None,
    })
}

/// A write inside the queue's block: `Some(true)` when the engine should run (TDT written,
/// or the queue just enabled); `None` where the block has no register.
pub fn write(ring: &mut TxRing, rel: u64, v: u32) -> Option<bool> {
    match rel {
        txq::TDBAL => ring.tdbal = v & DBAL_MASK,
        txq::TDBAH => ring.tdbah = v,
        txq::TDLEN => ring.tdlen = v & DLEN_MASK,
        txq::DCA_TXCTRL => ring.txctl = v,
        txq::TDH => {
            ring.tdh = v & HEAD_TAIL_MASK;
            ring.clear_pause();
        }
        txq::TDT => {
            ring.tdt = v & HEAD_TAIL_MASK;
            return Some(true);
        }
        txq::TXDCTL => {
            // SWFLSH is a one-shot request (ixgbevf writes it alone to stop a queue,
            // `ixgbevf_configure_tx_ring`); write-backs are never pending here.
            let was = ring.enabled();
            ring.txdctl = v & !txdctl::SWFLSH;
            if !ring.enabled() {
                ring.clear_pause();
            }
            return Some(!was && ring.enabled());
        }
        txq::TDWBAL => ring.tdwbal = v,
        txq::TDWBAH => ring.tdwbah = v,
        _ => return None,
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ixgbevf_ring_setup_reads_back_with_the_register_test_masks() {
        let mut r = reset_value();
        assert_eq!(read(&r, txq::DCA_TXCTRL), Some(DCA_TXCTRL_RESET));
        assert_eq!(write(&mut r, txq::TDBAL, 0xFFFF_FFFF), Some(false));
        assert_eq!(read(&r, txq::TDBAL), Some(0xFFFF_FF80));
        let _ = write(&mut r, txq::TDLEN, 0xFFFF_FFFF);
        assert_eq!(read(&r, txq::TDLEN), Some(0x000F_FF80));
        // ixgbevf: SWFLSH alone to stop, then 0x02080120 (ENABLE, WTHRESH 8, HTHRESH 1,
        // PTHRESH 32), and it polls ENABLE.
        assert_eq!(write(&mut r, txq::TXDCTL, txdctl::SWFLSH), Some(false));
        assert_eq!(read(&r, txq::TXDCTL), Some(0));
        assert_eq!(write(&mut r, txq::TXDCTL, 0x0208_0120), Some(true));
        assert_eq!(read(&r, txq::TXDCTL), Some(0x0208_0120));
        assert_eq!(write(&mut r, txq::TDT, 0x1_0005), Some(true));
        assert_eq!(r.tdt, 5);
        assert_eq!(read(&r, 0x1C), None);
        assert_eq!(write(&mut r, 0x30, 1), None);
    }
}
