//! The TX queues of an 82576 function (a VF's two, the PF's sixteen): their registers as
//! igbvf's `igbvf_configure_tx` and igb's `igb_configure_tx_ring` program them, decoded onto
//! the shared TX engine ([`crate::function::tx`], re-exported here).

pub use crate::function::tx::*;

use super::regs::{dctl, q, DBAL_MASK, DLEN_MASK};

impl TxRing {
    /// QEMU's reset values (`igb_mac_reg_init`): TXDCTL0 = ENABLE.
    pub fn reset_value(queue: usize) -> TxRing {
        TxRing::new(if queue == 0 { dctl::ENABLE } else { 0 })
    }

    /// Register read inside the queue's 0x100 block (`rel` = offset from the block start).
    pub fn read(&self, rel: u64) -> u32 {
        match rel {
            q::DBAL => self.tdbal,
            q::DBAH => self.tdbah,
            q::DLEN => self.tdlen,
            q::DH => self.tdh,
            q::DCA_CTL => self.txctl,
            q::DT => self.tdt,
            q::DCTL => self.txdctl,
            q::TDWBAL => self.tdwbal,
            q::TDWBAH => self.tdwbah,
            _ => 0,
        }
    }

    /// Register write; returns true when the engine should run (TDT written, or the queue
    /// enabled with work pending).
    pub fn write(&mut self, rel: u64, v: u32) -> bool {
        match rel {
            q::DBAL => self.tdbal = v & DBAL_MASK,
            q::DBAH => self.tdbah = v,
            q::DLEN => self.tdlen = v & DLEN_MASK,
            q::DH => {
                self.tdh = v & 0xFFFF;
                self.clear_pause();
            }
            q::DCA_CTL => self.txctl = v,
            q::DT => {
                self.tdt = v & 0xFFFF;
                return true;
            }
            q::DCTL => {
                let was = self.enabled();
                self.txdctl = v;
                if !self.enabled() {
                    self.clear_pause();
                }
                return !was && self.enabled();
            }
            q::TDWBAL => self.tdwbal = v,
            q::TDWBAH => self.tdwbah = v,
            _ => {}
        }
        false
    }
}
