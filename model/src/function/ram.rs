//! Guest RAM as the device model reaches it: `vm-memory`'s region collection, over regions
//! that may be windows into a larger mapping.
//!
//! Why a region type of our own: `vm-memory`'s `MmapRegion` maps exactly the file range it is
//! given, and a hugetlbfs file (QEMU's `memory-backend-memfd,hugetlb=on`) can be mapped only
//! from an offset that is a multiple of its huge page size, while QEMU's DMA maps of guest RAM
//! start where its memory map splits the RAM (0xc0000, 0x100000: around the VGA window). So the
//! vfio-user server maps the huge-page-aligned range around such a map, and the model gets a
//! region that covers the map and nothing more: a window into that mapping
//! (`MmapRegionBuilder::with_raw_mmap_pointer`). Such a window does not own its mapping, so the
//! [`RamRegion`] holds the mapping that does: a snapshot of the memory map that a datapath thread
//! still holds keeps alive every mapping it points into, as a snapshot of plain
//! `GuestRegionMmap`s does.

use std::sync::Arc;

use vm_memory::bitmap::BS;
use vm_memory::mmap::{FromRangesError, MmapRegionBuilder};
use vm_memory::{
    GuestAddress, GuestMemoryAtomic, GuestMemoryError, GuestMemoryRegion, GuestMemoryRegionBytes,
    GuestRegionCollection, GuestRegionMmap, GuestUsize, MemoryRegionAddress, MmapRegion,
    VolatileSlice,
};

/// One region of guest RAM: a mapping of its own, or a window into a shared one.
#[derive(Debug)]
pub struct RamRegion {
    region: GuestRegionMmap,
    /// The mapping `region` is a window into; `None` when `region` owns its mapping.
    window_of: Option<Arc<MmapRegion>>,
}

/// Guest RAM: the regions the client has mapped, sorted and disjoint.
pub type GuestRam = GuestRegionCollection<RamRegion>;

/// Guest memory as the vfio-user server hands it out.
pub type GuestMem = GuestMemoryAtomic<GuestRam>;

/// Why a window could not be made.
#[derive(Debug, PartialEq, Eq)]
pub enum WindowError {
    /// `start + len` lies beyond the mapping, or `len` is 0.
    OutOfMapping,
    /// The window's first byte is not on a page boundary of the host.
    Unaligned,
    /// The window's guest range wraps around the address space.
    GuestRange,
}

impl RamRegion {
    /// A region that owns its mapping.
    pub fn new(region: GuestRegionMmap) -> RamRegion {
        RamRegion {
            region,
            window_of: None,
        }
    }

    /// The `len` bytes of `mapping` from byte `start`, at guest address `base`. The region
    /// holds `mapping` for as long as it lives.
    pub fn window(
        mapping: Arc<MmapRegion>,
        start: usize,
        len: usize,
        base: GuestAddress,
    ) -> Result<RamRegion, WindowError> {
        let end = start.checked_add(len).ok_or(WindowError::OutOfMapping)?;
        if len == 0 || end > mapping.size() {
            return Err(WindowError::OutOfMapping);
        }
        // SAFETY: `start < mapping.size()`, so the pointer stays inside the mapping.
        let ptr = unsafe { mapping.as_ptr().add(start) };
        // SAFETY: `[ptr, ptr + len)` lies inside `mapping` (checked above), a live mapping of
        // this process that the returned region holds (`window_of`) for as long as it exists.
        let view = unsafe {
            MmapRegionBuilder::new(len)
                .with_mmap_prot(mapping.prot())
                .with_mmap_flags(mapping.flags())
                .with_raw_mmap_pointer(ptr)
        }
        .build()
        .map_err(|_| WindowError::Unaligned)?;
        let region = GuestRegionMmap::new(view, base).ok_or(WindowError::GuestRange)?;
        Ok(RamRegion {
            region,
            window_of: Some(mapping),
        })
    }

    /// Whether this region is a window into a mapping it shares.
    pub fn is_window(&self) -> bool {
        self.window_of.is_some()
    }
}

impl GuestMemoryRegion for RamRegion {
    type B = ();

    #[inline]
    fn len(&self) -> GuestUsize {
        self.region.len()
    }

    #[inline]
    fn start_addr(&self) -> GuestAddress {
        self.region.start_addr()
    }

    #[inline]
    fn bitmap(&self) -> BS<'_, ()> {
        self.region.bitmap()
    }

    #[inline]
    fn get_host_address(&self, addr: MemoryRegionAddress) -> Result<*mut u8, GuestMemoryError> {
        self.region.get_host_address(addr)
    }

    #[inline]
    fn get_slice(
        &self,
        offset: MemoryRegionAddress,
        count: usize,
    ) -> Result<VolatileSlice<'_, BS<'_, ()>>, GuestMemoryError> {
        self.region.get_slice(offset, count)
    }

    fn is_hugetlbfs(&self) -> Option<bool> {
        match &self.window_of {
            Some(m) => m.is_hugetlbfs(),
            None => self.region.is_hugetlbfs(),
        }
    }
}

impl GuestMemoryRegionBytes for RamRegion {}

/// Anonymous guest RAM at `ranges` (guest address, length): what the in-process tests and
/// drivers use in place of a client's memory.
pub fn anonymous(ranges: &[(GuestAddress, usize)]) -> Result<GuestRam, FromRangesError> {
    let regions = ranges
        .iter()
        .map(|&(base, len)| GuestRegionMmap::from_range(base, len, None).map(RamRegion::new))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(GuestRam::from_regions(regions)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{Bytes, GuestMemoryBackend};

    fn mapping(len: usize) -> Arc<MmapRegion> {
        Arc::new(MmapRegion::new(len).unwrap())
    }

    #[test]
    fn a_window_reaches_its_bytes_of_the_mapping_and_no_others() {
        let m = mapping(0x4000);
        let r = RamRegion::window(m.clone(), 0x1000, 0x2000, GuestAddress(0x10_0000)).unwrap();
        let ram = GuestRam::from_regions(vec![r]).unwrap();
        ram.write_obj(0xabcd_u16, GuestAddress(0x10_0000)).unwrap();
        ram.write_obj(0x1234_u16, GuestAddress(0x10_1ffe)).unwrap();
        // SAFETY: reading bytes of a live anonymous mapping we own.
        let at = |i: usize| unsafe { *m.as_ptr().add(i) };
        assert_eq!((at(0x1000), at(0x1001)), (0xcd, 0xab));
        assert_eq!((at(0x2ffe), at(0x2fff)), (0x34, 0x12));
        // The bytes on either side of the window are not guest memory.
        assert!(ram.write_obj(0_u8, GuestAddress(0x0f_ffff)).is_err());
        assert!(ram.write_obj(0_u8, GuestAddress(0x10_2000)).is_err());
        assert!(ram.write_obj(0_u16, GuestAddress(0x10_1fff)).is_err());
        assert_eq!(ram.last_addr(), GuestAddress(0x10_1fff));
    }

    #[test]
    fn a_window_keeps_its_mapping_after_every_other_holder_is_gone() {
        let m = mapping(0x2000);
        let r = RamRegion::window(m.clone(), 0x1000, 0x1000, GuestAddress(0)).unwrap();
        assert_eq!(Arc::strong_count(&m), 2);
        drop(m);
        let ram = GuestRam::from_regions(vec![r]).unwrap();
        ram.write_obj(7_u32, GuestAddress(0xffc)).unwrap();
        assert_eq!(ram.read_obj::<u32>(GuestAddress(0xffc)).unwrap(), 7);
        assert!(ram.find_region(GuestAddress(0)).unwrap().is_window());
    }

    #[test]
    fn a_window_outside_its_mapping_or_off_a_page_is_refused() {
        let m = mapping(0x2000);
        let base = GuestAddress(0);
        assert_eq!(
            RamRegion::window(m.clone(), 0x1000, 0x1001, base).unwrap_err(),
            WindowError::OutOfMapping
        );
        assert_eq!(
            RamRegion::window(m.clone(), 0, 0, base).unwrap_err(),
            WindowError::OutOfMapping
        );
        assert_eq!(
            RamRegion::window(m.clone(), usize::MAX, 2, base).unwrap_err(),
            WindowError::OutOfMapping
        );
        assert_eq!(
            RamRegion::window(m.clone(), 0x10, 0x100, base).unwrap_err(),
            WindowError::Unaligned
        );
        assert_eq!(
            RamRegion::window(m, 0, 0x1000, GuestAddress(u64::MAX - 0x10)).unwrap_err(),
            WindowError::GuestRange
        );
    }

    #[test]
    fn anonymous_ram_has_the_ranges_asked_for() {
        let ram = anonymous(&[(GuestAddress(0), 0x1000), (GuestAddress(0x8000), 0x2000)]).unwrap();
        assert_eq!(ram.num_regions(), 2);
        assert!(ram.address_in_range(GuestAddress(0x9fff)));
        assert!(!ram.address_in_range(GuestAddress(0x1000)));
        assert!(ram.iter().all(|r| !r.is_window()));
    }
}
