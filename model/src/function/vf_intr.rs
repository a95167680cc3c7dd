//! A VF's interrupt registers: VTEICR, VTEICS, VTEIMS, VTEIMC, VTEIAC, VTEIAM, VTEITR0..2,
//! VTIVAR and VTIVAR_MISC for its three MSI-X vectors. The 82576 VF and the 82599 VF have the
//! same set with the same meanings at different offsets, with their own EITR interval field
//! ([`VfIntrMap`]; each card's `intr` module has its map and what its driver does with them).
//!
//! Routing: RX queue q → VTIVAR byte 2q, TX queue q → byte 2q+1, the mailbox → VTIVAR_MISC
//! byte 0 (igbvf's `igbvf_assign_vector`, ixgbevf's `ixgbevf_set_ivar`: the bit index is
//! 16 × (queue & 1) + 8 × direction); an entry without VALID, or naming a vector the VF
//! lacks, routes nowhere. A routed cause sets its VTEICR bit in the [`VectorBank`], which fires, holds
//! (moderation) or keeps it pending (masked) — never loses it.

use super::mmio::dword_index;
use super::vectors::{Cause, EitrFormat, VectorBank};
use super::Fire;

/// MSI-X vectors of a VF: ixgbevf and igbvf give RX, TX and the mailbox one each (both
/// cards have three).
pub const VF_MSIX_VECTORS: usize = 3;

/// Where a card puts the VF interrupt registers, and how it differs.
#[derive(Debug, PartialEq, Eq)]
pub struct VfIntrMap {
    pub eicr: u64,
    pub eics: u64,
    pub eims: u64,
    pub eimc: u64,
    pub eiac: u64,
    pub eiam: u64,
    /// VTEITR(n) = `eitr0` + 4n.
    pub eitr0: u64,
    pub ivar: u64,
    pub ivar_misc: u64,
    pub eitr: EitrFormat,
    /// What a VTEICS read returns: the pending causes (82599, without clearing them) or 0
    /// (the 82576's write-only register).
    pub eics_reads_eicr: bool,
    /// VALID in each VTIVAR byte.
    pub ivar_valid: u8,
    /// The vector number in each VTIVAR byte.
    pub ivar_vector_mask: u8,
}

impl VfIntrMap {
    /// What each VTIVAR byte stores.
    fn ivar_byte(&self) -> u32 {
        u32::from(self.ivar_valid | self.ivar_vector_mask)
    }
}

/// The vector bank of a VF.
pub type Bank = VectorBank<VF_MSIX_VECTORS>;

/// One VF's interrupt registers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VfIntr {
    map: &'static VfIntrMap,
    pub bank: Bank,
    pub ivar: u32,
    pub ivar_misc: u32,
}

impl VfIntr {
    /// Reset values: everything 0 (no vector routed, all masked, no moderation).
    pub fn new(map: &'static VfIntrMap) -> VfIntr {
        VfIntr {
            map,
            bank: Bank::new(map.eitr),
            ivar: 0,
            ivar_misc: 0,
        }
    }

    pub fn reset(&mut self) {
        *self = VfIntr::new(self.map);
    }

    fn eitr_index(&self, offset: u64) -> Option<usize> {
        dword_index(offset, self.map.eitr0, VF_MSIX_VECTORS as u64)
    }

    /// Whether `offset` is one of these registers.
    pub fn decodes(&self, offset: u64) -> bool {
        let m = self.map;
        [
            m.eicr,
            m.eics,
            m.eims,
            m.eimc,
            m.eiac,
            m.eiam,
            m.ivar,
            m.ivar_misc,
        ]
        .contains(&offset)
            || self.eitr_index(offset).is_some()
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
        if entry & self.map.ivar_valid == 0 {
            return None;
        }
        let v = usize::from(entry & self.map.ivar_vector_mask);
        (v < VF_MSIX_VECTORS).then_some(1 << v)
    }

    /// A cause happened at `now`: set its VTEICR bit and fire it if enabled and not held back.
    pub fn raise(&mut self, cause: Cause, now: u64) -> Fire {
        self.raise_lazily(cause, || now)
    }

    /// [`VfIntr::raise`], reading the time only if the cause's vector is enabled
    /// ([`VectorBank::set_eicr_lazily`]).
    pub fn raise_lazily(&mut self, cause: Cause, now: impl FnOnce() -> u64) -> Fire {
        match self.route(cause) {
            Some(bit) => self.bank.set_eicr_lazily(bit, now),
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

    /// A register read with its side effects (VTEICR clears on read, as in QEMU's igb);
    /// `None` for other offsets. VTEIMC reads 0.
    pub fn read(&mut self, offset: u64) -> Option<u32> {
        let m = self.map;
        Some(match offset {
            o if o == m.eicr => self.bank.read_eicr(),
            o if o == m.eics => {
                if m.eics_reads_eicr {
                    self.bank.eicr
                } else {
                    0
                }
            }
            o if o == m.eims => self.bank.eims,
            o if o == m.eimc => 0,
            o if o == m.eiac => self.bank.eiac,
            o if o == m.eiam => self.bank.eiam,
            o if o == m.ivar => self.ivar,
            o if o == m.ivar_misc => self.ivar_misc,
            o => self.eitr_index(o).and_then(|n| self.bank.eitr(n))?,
        })
    }

    /// A register write at `now`; the vectors that fire because of it. `None` for other
    /// offsets. VTEICR is write-1-to-clear (⚠ assumed on the 82599, as on the 82576).
    pub fn write(&mut self, offset: u64, value: u32, now: u64) -> Option<Fire> {
        let m = self.map;
        let mask = Bank::MASK;
        Some(match offset {
            o if o == m.eics => self.bank.write_eics(value, now),
            o if o == m.eims => self.bank.write_eims(value, now),
            o if o == m.eimc => {
                self.bank.write_eimc(value);
                Fire::NONE
            }
            o if o == m.eicr => {
                self.bank.write_eicr(value);
                Fire::NONE
            }
            o if o == m.eiac => {
                self.bank.eiac = value & mask;
                Fire::NONE
            }
            o if o == m.eiam => {
                self.bank.eiam = value & mask;
                Fire::NONE
            }
            o if o == m.ivar => {
                self.ivar = value & u32::from_le_bytes([m.ivar_byte() as u8; 4]);
                Fire::NONE
            }
            o if o == m.ivar_misc => {
                self.ivar_misc = value & m.ivar_byte();
                Fire::NONE
            }
            o => {
                let n = self.eitr_index(o)?;
                self.bank.write_eitr(n, value, now);
                Fire::NONE
            }
        })
    }
}
