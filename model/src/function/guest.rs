//! The device's DMA into guest memory. A range inside one memory region (the common case:
//! rings and buffers in the guest's RAM) is copied through that region's slice; a range that
//! crosses regions, or lies outside them, goes through `vm-memory`'s region-walking
//! `read_slice`/`write_slice`, which also gives the error.
//!
//! Why not always `read_slice`/`write_slice`: they walk the regions through a generic iterator
//! whose inlining the compiler decides afresh for every build, and on the per-frame path (many
//! accesses per frame) that alone moved the datapath's rate by a third between builds of the
//! same code.

use std::cell::Cell;
use std::sync::atomic::Ordering;

use vm_memory::{
    Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryError, GuestMemoryRegion, WriteVolatile,
};

/// Guest memory that remembers the region of its last access and looks there first: one run
/// of a ring (its descriptors, its buffers) stays in one region of the guest's RAM, and the
/// region search of `vm-memory` (a binary search through a pointer per region) was 7 % of the
/// CPU of the thread that moves a TCP stream between two VFs. The view of the memory map is
/// the borrowed one's, unchanged; only the search is skipped.
pub(crate) struct LastRegion<'m, M: GuestMemoryBackend> {
    mem: &'m M,
    last: Cell<Option<&'m M::R>>,
}

impl<'m, M: GuestMemoryBackend> LastRegion<'m, M> {
    pub(crate) fn new(mem: &'m M) -> Self {
        LastRegion {
            mem,
            last: Cell::new(None),
        }
    }
}

impl<M: GuestMemoryBackend> GuestMemoryBackend for LastRegion<'_, M> {
    type R = M::R;

    fn num_regions(&self) -> usize {
        self.mem.num_regions()
    }

    fn find_region(&self, addr: GuestAddress) -> Option<&M::R> {
        if let Some(r) = self.last.get() {
            if addr >= r.start_addr() && addr <= r.last_addr() {
                return Some(r);
            }
        }
        let r = self.mem.find_region(addr)?;
        self.last.set(Some(r));
        Some(r)
    }

    fn iter(&self) -> impl Iterator<Item = &M::R> {
        self.mem.iter()
    }
}

/// Reads `buf.len()` bytes at `addr`.
#[inline]
pub(crate) fn read<M: GuestMemoryBackend>(
    mem: &M,
    addr: u64,
    buf: &mut [u8],
) -> Result<(), GuestMemoryError> {
    match mem.get_slice(GuestAddress(addr), buf.len()) {
        Ok(s) => {
            s.copy_to(buf);
            Ok(())
        }
        Err(_) => mem.read_slice(buf, GuestAddress(addr)),
    }
}

/// Appends the `len` bytes at `addr` to `buf`, without zero-filling `buf` first (the TX gather
/// of a 64 KiB TSO packet would otherwise write every byte twice). On an error `buf` is as it
/// was.
#[inline]
pub(crate) fn append<M: GuestMemoryBackend>(
    mem: &M,
    addr: u64,
    len: usize,
    buf: &mut Vec<u8>,
) -> Result<(), GuestMemoryError> {
    if let Ok(s) = mem.get_slice(GuestAddress(addr), len) {
        if buf.write_all_volatile(&s).is_ok() {
            return Ok(());
        }
    }
    let at = buf.len();
    buf.resize(at + len, 0);
    mem.read_slice(&mut buf[at..], GuestAddress(addr))
        .inspect_err(|_| buf.truncate(at))
}

/// Writes `data` at `addr`.
#[inline]
pub(crate) fn write<M: GuestMemoryBackend>(
    mem: &M,
    addr: u64,
    data: &[u8],
) -> Result<(), GuestMemoryError> {
    match mem.get_slice(GuestAddress(addr), data.len()) {
        Ok(s) => {
            s.copy_from(data);
            Ok(())
        }
        Err(_) => mem.write_slice(data, GuestAddress(addr)),
    }
}

/// Reads a little-endian 32-bit word at `addr`.
#[inline]
pub(crate) fn read_u32<M: GuestMemoryBackend>(mem: &M, addr: u64) -> Result<u32, GuestMemoryError> {
    let mut b = [0u8; 4];
    read(mem, addr, &mut b)?;
    Ok(u32::from_le_bytes(b))
}

/// Writes a little-endian 32-bit word at `addr`.
#[inline]
pub(crate) fn write_u32<M: GuestMemoryBackend>(
    mem: &M,
    addr: u64,
    value: u32,
) -> Result<(), GuestMemoryError> {
    write(mem, addr, &value.to_le_bytes())
}

/// Writes the 8 bytes `data` at `addr` as one 8-byte store (release ordering) when `addr` is
/// 8-byte aligned inside one region, so that a driver polling any part of them sees all of
/// them change at once; otherwise as two 4-byte writes, the upper one first.
#[inline]
pub(crate) fn write_upper_half<M: GuestMemoryBackend>(
    mem: &M,
    addr: u64,
    data: &[u8; 8],
) -> Result<(), GuestMemoryError> {
    let value = u64::from_le_bytes(*data);
    if addr.is_multiple_of(8)
        && mem
            .store(value.to_le(), GuestAddress(addr), Ordering::Release)
            .is_ok()
    {
        return Ok(());
    }
    write(mem, addr.wrapping_add(4), &data[4..])?;
    write(mem, addr, &data[..4])
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    fn two_regions() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[
            (GuestAddress(0x1000), 0x1000),
            (GuestAddress(0x2000), 0x1000),
        ])
        .unwrap()
    }

    #[test]
    fn within_and_across_regions_and_outside() {
        let mem = two_regions();
        write(&mem, 0x1800, &[1, 2, 3, 4]).unwrap();
        let mut b = [0u8; 4];
        read(&mem, 0x1800, &mut b).unwrap();
        assert_eq!(b, [1, 2, 3, 4]);
        // Across the boundary: the region-walking path.
        write(&mem, 0x1ffe, &[5, 6, 7, 8]).unwrap();
        read(&mem, 0x1ffe, &mut b).unwrap();
        assert_eq!(b, [5, 6, 7, 8]);
        // Outside guest memory: an error, nothing written.
        assert!(write(&mem, 0x3ffe, &[9, 9, 9, 9]).is_err());
        assert!(read(&mem, 0x0ffe, &mut b).is_err());
        assert!(read(&mem, u64::MAX - 1, &mut b).is_err());
        write_u32(&mem, 0x2000, 0xDEAD_BEEF).unwrap();
        // One 8-byte store when aligned, two dwords when not: the same bytes either way.
        write_upper_half(&mem, 0x1808, &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        write_upper_half(&mem, 0x1814, &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        let mut eight = [0u8; 8];
        read(&mem, 0x1808, &mut eight).unwrap();
        assert_eq!(eight, [1, 2, 3, 4, 5, 6, 7, 8]);
        read(&mem, 0x1814, &mut eight).unwrap();
        assert_eq!(eight, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(write_upper_half(&mem, 0x3ff8, &[0; 8]).is_err());
        assert_eq!(read_u32(&mem, 0x2000).unwrap(), 0xDEAD_BEEF);
    }

    #[test]
    fn the_last_region_remembered_answers_only_for_its_own_addresses() {
        let mem = two_regions();
        write(&mem, 0x1010, &[1, 1]).unwrap();
        write(&mem, 0x2010, &[2, 2]).unwrap();
        let last = LastRegion::new(&mem);
        let mut b = [0u8; 2];
        // Alternating regions, each access sees its own region's bytes.
        for _ in 0..2 {
            read(&last, 0x1010, &mut b).unwrap();
            assert_eq!(b, [1, 1]);
            read(&last, 0x2010, &mut b).unwrap();
            assert_eq!(b, [2, 2]);
        }
        // Across the boundary, outside, and past the end of the remembered region.
        write(&last, 0x1fff, &[3, 4]).unwrap();
        read(&mem, 0x1fff, &mut b).unwrap();
        assert_eq!(b, [3, 4]);
        assert!(read(&last, 0x2fff, &mut b).is_err());
        assert!(read(&last, 0x3000, &mut b).is_err());
        assert!(write_upper_half(&last, 0x2ff8, &[5; 8]).is_ok());
        assert!(write_upper_half(&last, 0x2ffc, &[5; 8]).is_err());
        assert_eq!(last.num_regions(), 2);
    }

    #[test]
    fn append_within_across_and_outside() {
        let mem = two_regions();
        write(&mem, 0x1ffc, &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        let mut buf = vec![9];
        append(&mem, 0x1ffc, 2, &mut buf).unwrap();
        // Across the boundary.
        append(&mem, 0x1ffe, 6, &mut buf).unwrap();
        assert_eq!(buf, [9, 1, 2, 3, 4, 5, 6, 7, 8]);
        // Outside (partly or wholly): an error, `buf` unchanged.
        assert!(append(&mem, 0x2ffe, 4, &mut buf).is_err());
        assert!(append(&mem, u64::MAX - 1, 4, &mut buf).is_err());
        assert_eq!(buf, [9, 1, 2, 3, 4, 5, 6, 7, 8]);
    }
}
