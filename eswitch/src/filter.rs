//! The switch's receive filter tables: the 82576 multicast table hash and a 4096-bit set for
//! VLAN membership and multicast hashes.

use crate::wire::MacAddr;

/// The 82576 multicast table array hash with RCTL.MO = 0 (Linux `igb_hash_mc_addr`, filter
/// type 0): 12 bits taken from the last two bytes of the destination address.
#[inline]
pub fn mta_hash(mac: MacAddr) -> u16 {
    let b = mac.0;
    ((u16::from(b[4]) >> 4) | (u16::from(b[5]) << 4)) & 0x0FFF
}

/// A 4096-bit set indexed by a 12-bit value (a VLAN id or an MTA hash).
#[derive(Clone, PartialEq, Eq)]
pub struct Bitmap4096([u64; 64]);

impl Default for Bitmap4096 {
    fn default() -> Self {
        Bitmap4096([0; 64])
    }
}

impl std::fmt::Debug for Bitmap4096 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl Bitmap4096 {
    pub fn from_values<'a>(values: impl IntoIterator<Item = &'a u16>) -> Bitmap4096 {
        let mut map = Bitmap4096::default();
        for &v in values {
            map.insert(v);
        }
        map
    }
    /// Values above 4095 are ignored (callers validate first).
    pub fn insert(&mut self, v: u16) {
        if let Some(word) = self.0.get_mut(usize::from(v >> 6)) {
            *word |= 1 << (v & 63);
        }
    }
    #[inline]
    pub fn contains(&self, v: u16) -> bool {
        self.0
            .get(usize::from(v >> 6))
            .is_some_and(|word| word & (1 << (v & 63)) != 0)
    }
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (0..4096u16).filter(|&v| self.contains(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mta_hash_matches_igb_for_all_hosts_group() {
        // 01:00:5e:00:00:01: (0x00 >> 4) | (0x01 << 4) = 0x010.
        assert_eq!(mta_hash(MacAddr([1, 0, 0x5e, 0, 0, 1])), 0x010);
        // 33:33:ff:12:34:56: (0x34 >> 4) | (0x56 << 4) = 0x563.
        assert_eq!(
            mta_hash(MacAddr([0x33, 0x33, 0xff, 0x12, 0x34, 0x56])),
            0x563
        );
    }

    #[test]
    fn bitmap_holds_12_bit_values() {
        let map = Bitmap4096::from_values(&[0, 10, 4095]);
        assert!(map.contains(0) && map.contains(10) && map.contains(4095));
        assert!(!map.contains(11) && !map.contains(4096));
        assert_eq!(map.iter().collect::<Vec<_>>(), vec![0, 10, 4095]);
    }
}
