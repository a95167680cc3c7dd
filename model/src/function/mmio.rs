//! What every function of the 82576 and the 82599 shares on the bus: how a BAR0 access of any
//! size becomes 32-bit register accesses (`read_dwords`, `write_dwords`), and the MSI-X
//! table store behind BAR3 ([`MsixTable`]).
//!
//! # Access sizes
//! BAR0 registers are 32-bit. 4-byte aligned accesses are the norm; an 8-byte aligned access
//! is two 4-byte accesses (low dword first); a 1- or 2-byte read returns those bytes of the
//! containing dword (with that dword's read side effects); narrower writes and unaligned
//! accesses are refused with [`AccessError::BadAccess`]. Nothing panics.

use crate::function::stats::AccessError;
use crate::function::Effects;

fn in_bar(bar_size: u64, offset: u64, len: usize) -> bool {
    offset
        .checked_add(len as u64)
        .is_some_and(|end| end <= bar_size)
}

/// Which of `count` dword registers from `base` `offset` is, if any.
pub(crate) fn dword_index(offset: u64, base: u64, count: u64) -> Option<usize> {
    let end = base.saturating_add(4 * count);
    ((base..end).contains(&offset) && offset.is_multiple_of(4))
        .then(|| ((offset - base) / 4) as usize)
}

/// A read of `data.len()` bytes at `offset` of a BAR of `bar_size` bytes, through `read`
/// (one 32-bit register read with its side effects, at a dword-aligned offset).
pub(crate) fn read_dwords(
    bar_size: u64,
    offset: u64,
    data: &mut [u8],
    mut read: impl FnMut(u64) -> u32,
) -> Result<(), AccessError> {
    if !in_bar(bar_size, offset, data.len()) {
        return Err(AccessError::BadAccess);
    }
    let len = data.len() as u64;
    match data.len() {
        4 if offset.is_multiple_of(4) => data.copy_from_slice(&read(offset).to_le_bytes()),
        8 if offset.is_multiple_of(8) => {
            let lo = read(offset);
            let hi = read(offset + 4);
            data[..4].copy_from_slice(&lo.to_le_bytes());
            data[4..].copy_from_slice(&hi.to_le_bytes());
        }
        1 | 2 if offset % 4 + len <= 4 => {
            let dword = offset & !3;
            let v = read(dword).to_le_bytes();
            let at = (offset - dword) as usize;
            data.copy_from_slice(&v[at..at + data.len()]);
        }
        _ => return Err(AccessError::BadAccess),
    }
    Ok(())
}

/// A write of `data` at `offset` of a BAR of `bar_size` bytes, through `write` (one 32-bit
/// register write with its side effects); the effects of an 8-byte write are merged in order.
pub(crate) fn write_dwords(
    bar_size: u64,
    offset: u64,
    data: &[u8],
    mut write: impl FnMut(u64, u32) -> Effects,
) -> Result<Effects, AccessError> {
    if !in_bar(bar_size, offset, data.len()) {
        return Err(AccessError::BadAccess);
    }
    let dword = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    match data.len() {
        4 if offset.is_multiple_of(4) => Ok(write(offset, dword(data))),
        8 if offset.is_multiple_of(8) => {
            let mut e = write(offset, dword(&data[..4]));
            e.merge(write(offset + 4, dword(&data[4..])));
            Ok(e)
        }
        _ => Err(AccessError::BadAccess),
    }
}

/// Bytes per MSI-X table entry (address, data, vector control).
pub const MSIX_TABLE_ENTRY: usize = 16;

/// The MSI-X table of `VECTORS` entries at offset 0 of BAR3, as plain storage: QEMU emulates
/// MSI-X itself (masking, the PBA) and overlays it on this BAR, so the function only keeps
/// what was written. The PBA and everything past the table read 0; writes there are dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MsixTable<const VECTORS: usize> {
    entries: [[u8; MSIX_TABLE_ENTRY]; VECTORS],
}

impl<const VECTORS: usize> Default for MsixTable<VECTORS> {
    fn default() -> Self {
        MsixTable {
            entries: [[0; MSIX_TABLE_ENTRY]; VECTORS],
        }
    }
}

impl<const VECTORS: usize> MsixTable<VECTORS> {
    fn byte(&mut self, offset: u64) -> Option<&mut u8> {
        let o = usize::try_from(offset).ok()?;
        self.entries
            .get_mut(o / MSIX_TABLE_ENTRY)
            .map(|e| &mut e[o % MSIX_TABLE_ENTRY])
    }

    pub fn read(&mut self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = offset
                .checked_add(i as u64)
                .and_then(|o| self.byte(o))
                .map_or(0, |v| *v);
        }
    }

    pub fn write(&mut self, offset: u64, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            if let Some(slot) = offset.checked_add(i as u64).and_then(|o| self.byte(o)) {
                *slot = *b;
            }
        }
    }

    pub fn reset(&mut self) {
        *self = MsixTable::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_alignment_decide_the_dword_accesses() {
        let mut seen = Vec::new();
        let mut data = [0u8; 8];
        read_dwords(0x100, 0x10, &mut data, |o| {
            seen.push(o);
            o as u32
        })
        .unwrap();
        assert_eq!(seen, vec![0x10, 0x14]);
        assert_eq!(data, [0x10, 0, 0, 0, 0x14, 0, 0, 0]);
        let mut b = [0u8; 2];
        read_dwords(0x100, 0x22, &mut b, |_| 0xAABB_CCDD).unwrap();
        assert_eq!(b, [0xBB, 0xAA]);
        assert_eq!(
            read_dwords(0x100, 0x23, &mut b, |_| 0),
            Err(AccessError::BadAccess)
        );
        assert_eq!(
            read_dwords(0x100, 0xFC, &mut data, |_| 0),
            Err(AccessError::BadAccess)
        );
        assert_eq!(
            read_dwords(0x100, u64::MAX - 1, &mut b, |_| 0),
            Err(AccessError::BadAccess)
        );
        let mut writes = Vec::new();
        let r = write_dwords(0x100, 0x8, &[1, 0, 0, 0, 2, 0, 0, 0], |o, v| {
            writes.push((o, v));
            Effects::default()
        });
        assert!(r.is_ok());
        assert_eq!(writes, vec![(0x8, 1), (0xC, 2)]);
        assert!(write_dwords(0x100, 0x8, &[1, 2], |_, _| Effects::default()).is_err());
    }

    #[test]
    fn dword_index_counts_aligned_registers_in_the_run() {
        assert_eq!(dword_index(0x1688, 0x1680, 3), Some(2));
        assert_eq!(dword_index(0x168C, 0x1680, 3), None);
        assert_eq!(dword_index(0x1682, 0x1680, 3), None);
        assert_eq!(dword_index(0x167C, 0x1680, 3), None);
        assert_eq!(dword_index(u64::MAX, u64::MAX - 3, 1), None);
    }

    #[test]
    fn msix_table_stores_its_entries_and_nothing_beyond() {
        let mut t = MsixTable::<2>::default();
        t.write(30, &[1, 2, 3, 4]);
        let mut b = [9u8; 4];
        t.read(30, &mut b);
        assert_eq!(b, [1, 2, 0, 0]);
        t.read(u64::MAX - 1, &mut b);
        assert_eq!(b, [0; 4]);
    }
}
