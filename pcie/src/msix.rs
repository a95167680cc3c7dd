//! MSI-X Pending Bit Array helper.
//!
//! The PBA is an array of qwords in a BAR (bit n of the array = vector n pending),
//! read-only to software (PCI 3.0 §6.8.2.10). The device model sets a bit when a
//! vector fires while masked and clears it when the message is finally sent.

use crate::regs::msix;

/// Pending bits of `vectors` MSI-X vectors, readable as the PBA structure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsixPba {
    vectors: u16,
    qwords: Vec<u64>,
}

impl MsixPba {
    /// A PBA for `vectors` vectors (clamped to 1..=2048), nothing pending.
    pub fn new(vectors: u16) -> Self {
        let vectors = vectors.clamp(1, msix::MAX_VECTORS);
        MsixPba {
            vectors,
            qwords: vec![0; usize::from(vectors).div_ceil(64)],
        }
    }

    /// Number of vectors.
    pub fn vectors(&self) -> u16 {
        self.vectors
    }

    /// Size of the PBA structure in bytes (a whole number of qwords).
    pub fn size(&self) -> usize {
        self.qwords.len() * 8
    }

    /// Marks `vector` pending; returns false (and does nothing) if out of range.
    pub fn set_pending(&mut self, vector: u16) -> bool {
        self.update(vector, true)
    }

    /// Clears `vector`'s pending bit; returns whether it was pending.
    pub fn clear_pending(&mut self, vector: u16) -> bool {
        let was = self.is_pending(vector);
        self.update(vector, false);
        was
    }

    /// Whether `vector` is pending (false when out of range).
    pub fn is_pending(&self, vector: u16) -> bool {
        let (word, bit) = Self::position(vector);
        vector < self.vectors && self.qwords.get(word).is_some_and(|q| q & bit != 0)
    }

    /// The pending vectors, lowest first.
    pub fn pending(&self) -> impl Iterator<Item = u16> + '_ {
        (0..self.vectors).filter(|&v| self.is_pending(v))
    }

    /// Reads PBA bytes at `offset` (relative to the PBA start). Bytes past the end
    /// of the PBA read as 0. Any length and alignment is accepted.
    pub fn read(&self, offset: usize, data: &mut [u8]) {
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = offset
                .checked_add(i)
                .and_then(|o| {
                    let word = self.qwords.get(o / 8)?;
                    Some(word.to_le_bytes()[o % 8])
                })
                .unwrap_or(0);
        }
    }

    fn position(vector: u16) -> (usize, u64) {
        (usize::from(vector) / 64, 1u64 << (vector % 64))
    }

    fn update(&mut self, vector: u16, pending: bool) -> bool {
        if vector >= self.vectors {
            return false;
        }
        let (word, bit) = Self::position(vector);
        match self.qwords.get_mut(word) {
            Some(q) if pending => *q |= bit,
            Some(q) => *q &= !bit,
            None => return false,
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pba_bits_read_as_little_endian_qwords() {
        let mut pba = MsixPba::new(70);
        assert_eq!(pba.size(), 16);
        assert!(pba.set_pending(0));
        assert!(pba.set_pending(9));
        assert!(pba.set_pending(69));
        let mut bytes = [0u8; 16];
        pba.read(0, &mut bytes);
        assert_eq!(
            bytes,
            [0x01, 0x02, 0, 0, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(pba.pending().collect::<Vec<_>>(), vec![0, 9, 69]);
        assert!(pba.clear_pending(9));
        assert!(!pba.clear_pending(9));
        assert!(!pba.is_pending(9));
    }

    #[test]
    fn out_of_range_vectors_and_reads_are_harmless() {
        let mut pba = MsixPba::new(3);
        assert_eq!(pba.size(), 8);
        assert!(!pba.set_pending(3));
        assert!(!pba.is_pending(3));
        assert!(!pba.clear_pending(u16::MAX));
        pba.set_pending(2);
        let mut bytes = [0xAAu8; 4];
        pba.read(6, &mut bytes);
        assert_eq!(bytes, [0, 0, 0, 0], "past the end reads 0");
        pba.read(usize::MAX, &mut bytes);
        assert_eq!(bytes, [0; 4]);
        pba.read(0, &mut bytes[..1]);
        assert_eq!(bytes[0], 0x04);
    }

    #[test]
    fn vector_count_is_clamped() {
        assert_eq!(MsixPba::new(0).vectors(), 1);
        assert_eq!(MsixPba::new(5000).vectors(), 2048);
        assert_eq!(MsixPba::new(2048).size(), 256);
    }
}
