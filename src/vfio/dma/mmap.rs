//! How a DMA_MAP's file becomes guest memory the device reaches directly: a memfd mapped
//! shared, once it is known to cover the map and is sealed against shrinking; a hugetlbfs file
//! mapped over the whole huge pages around the map, of which the device reaches the map's
//! bytes alone. Anything else falls to the message path.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use model::RamRegion;
use tracing::warn;
use vm_memory::{FileOffset, GuestAddress, GuestRegionMmap, MmapRegion};

/// mmap a DMA_MAP fd shared, if it is safe to: a regular file (memfd) long enough and sealed
/// against shrinking. `None` sends the map to the message path.
///
/// A hugetlbfs file (`memory-backend-memfd,hugetlb=on`) can be mapped only from an offset that
/// is a multiple of its huge page size, and QEMU's maps of guest RAM start where its memory
/// map splits the RAM (0xc0000, 0x100000). Such a file is mapped over the whole huge pages
/// around the map, and the region is the window of that mapping the map covers (see
/// [`RamRegion`]): the guest reaches the map's bytes and no others.
pub(super) fn mmap_shared(
    file: &Arc<File>,
    offset: u64,
    size: u64,
    iova: u64,
) -> Option<Arc<RamRegion>> {
    let raw = file.as_raw_fd();
    // SAFETY: fstat into a zeroed struct we own, on an fd we hold.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(raw, &mut st) } != 0 {
        warn!("DMA_MAP fd: fstat failed; using DMA messages");
        return None;
    }
    let long_enough = offset
        .checked_add(size)
        .is_some_and(|e| e <= st.st_size as u64);
    if st.st_mode & libc::S_IFMT != libc::S_IFREG || !long_enough {
        warn!(
            file_size = st.st_size,
            offset, size, "DMA_MAP fd is not a file covering the map; using DMA messages"
        );
        return None;
    }
    // SAFETY: fcntl seal queries/updates on an fd we own.
    let seals = unsafe { libc::fcntl(raw, libc::F_GET_SEALS) };
    let sealed = seals >= 0
        && (seals & libc::F_SEAL_SHRINK != 0
            || unsafe { libc::fcntl(raw, libc::F_ADD_SEALS, libc::F_SEAL_SHRINK) } == 0);
    if !sealed {
        warn!("DMA_MAP fd cannot be sealed against shrinking; using DMA messages");
        return None;
    }
    let len = usize::try_from(size).ok()?;
    if let Some(huge) = hugetlb_page_size(raw) {
        return mmap_huge_window(file, offset, len, iova, huge, st.st_size as u64);
    }
    let mmap = match MmapRegion::from_file(FileOffset::from_arc(file.clone(), offset), len) {
        Ok(m) => m,
        Err(e) => {
            warn!(error = %e, "DMA_MAP mmap failed; using DMA messages");
            return None;
        }
    };
    GuestRegionMmap::new(mmap, GuestAddress(iova)).map(|r| Arc::new(RamRegion::new(r)))
}

/// The huge page size of the file `fd` names, if it is on hugetlbfs.
fn hugetlb_page_size(fd: std::os::fd::RawFd) -> Option<u64> {
    // SAFETY: fstatfs into a zeroed struct we own, on an fd we hold.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatfs(fd, &mut fs) } != 0 || fs.f_type != libc::HUGETLBFS_MAGIC {
        return None;
    }
    u64::try_from(fs.f_bsize)
        .ok()
        .filter(|b| b.is_power_of_two())
}

/// The window `[offset, offset + len)` of a hugetlbfs file, mapped over the huge pages
/// around it (`file_size`, a whole number of huge pages, bounds them).
fn mmap_huge_window(
    file: &Arc<File>,
    offset: u64,
    len: usize,
    iova: u64,
    huge: u64,
    file_size: u64,
) -> Option<Arc<RamRegion>> {
    let start = offset / huge * huge;
    let end = (offset + len as u64).checked_next_multiple_of(huge)?;
    if end > file_size {
        warn!(
            offset,
            len,
            file_size,
            "DMA_MAP of a hugetlbfs file past its last huge page; using DMA messages"
        );
        return None;
    }
    let mut mapping = match MmapRegion::from_file(
        FileOffset::from_arc(file.clone(), start),
        usize::try_from(end - start).ok()?,
    ) {
        Ok(m) => m,
        Err(e) => {
            warn!(error = %e, huge, "DMA_MAP mmap of a hugetlbfs file failed; using DMA messages");
            return None;
        }
    };
    mapping.set_hugetlbfs(true);
    let at = usize::try_from(offset - start).ok()?;
    match RamRegion::window(Arc::new(mapping), at, len, GuestAddress(iova)) {
        Ok(r) => Some(Arc::new(r)),
        Err(e) => {
            warn!(
                ?e,
                offset, len, "DMA_MAP window of a hugetlbfs mapping refused; using DMA messages"
            );
            None
        }
    }
}
