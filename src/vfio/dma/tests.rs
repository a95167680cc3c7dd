use super::*;
use vm_memory::{GuestAddress, GuestAddressSpace, GuestMemoryBackend};

fn memfd(size: u64) -> OwnedFd {
    memfd_with(size, 0)
}

/// A memfd on hugetlbfs, as QEMU's `memory-backend-memfd,hugetlb=on` makes one.
fn huge_memfd(size: u64) -> OwnedFd {
    memfd_with(size, libc::MFD_HUGETLB)
}

fn memfd_with(size: u64, flags: libc::c_uint) -> OwnedFd {
    // SAFETY: memfd_create with a static C string; the fd is ours.
    unsafe {
        use std::os::fd::FromRawFd;
        let fd = libc::memfd_create(c"t".as_ptr(), libc::MFD_ALLOW_SEALING | flags);
        assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
        assert_eq!(libc::ftruncate(fd, size as i64), 0);
        OwnedFd::from_raw_fd(fd)
    }
}

const RW: u32 = 3;

#[test]
fn odd_maps_of_a_hugetlbfs_file_fall_back_or_are_refused_without_harm() {
    let page = scenarios::qemu::hugepages::page_bytes().unwrap();
    let _pages = scenarios::qemu::hugepages::reserve(1).unwrap();
    let fd = huge_memfd(page);
    let map = |iova, size, offset| dma_map_of(&fd, iova, size, offset);
    let dma = Dma::new(None, false);
    // Off a host page: no window can start there; the message path takes it.
    dma.map(0, 0x10, RW, 0x123, Some(fd.try_clone().unwrap()))
        .unwrap();
    // Past the file's end, or wrapping: not mmapped.
    assert!(map(0x10_0000, page, page).is_ok_and(|mmapped| !mmapped));
    assert!(map(0x40_0000, 0x1000, u64::MAX - 0x10).is_ok_and(|mmapped| !mmapped));
    // The whole file, and its last host page alone: windows; its last byte alone starts
    // off a host page, so the message path.
    assert_eq!(map(0x80_0000, page, 0), Ok(true));
    assert_eq!(map(0x100_0000, 0x1000, page - 0x1000), Ok(true));
    assert_eq!(map(0x100_0000, 1, page - 1), Ok(false));
    assert_eq!(dma.counters().mmapped_maps, 0, "a fresh table per map");
}

/// Maps `size` bytes of `fd` at `offset` to `iova` in a fresh table: whether it was
/// mmapped, or the refusal.
fn dma_map_of(fd: &OwnedFd, iova: u64, size: u64, offset: u64) -> Result<bool, MapRefusal> {
    let dma = Dma::new(None, false);
    dma.map(iova, size, RW, offset, Some(fd.try_clone().unwrap()))?;
    let ok = dma.write(iova + size - 1, &[7]).is_ok();
    Ok(dma.counters().mmapped_maps == 1 && ok)
}

#[test]
fn hugetlbfs_ram_is_mapped_where_qemu_splits_it_and_reaches_no_byte_outside_the_maps() {
    let page = scenarios::qemu::hugepages::page_bytes().unwrap();
    let _pages = scenarios::qemu::hugepages::reserve(2).unwrap();
    let fd = huge_memfd(2 * page);
    let file = File::from(fd.try_clone().unwrap());
    let dma = Dma::new(None, true);
    // QEMU's maps of the RAM below 4 MiB on q35: the VGA window (0xa0000..0xc0000) is not
    // RAM, and the RAM after it is split at 1 MiB.
    let (low, mid, high) = (0xa_0000, 0xc_0000, 0x10_0000);
    dma.map(0, low, RW, 0, Some(fd.try_clone().unwrap()))
        .unwrap();
    dma.map(mid, high - mid, RW, mid, Some(fd.try_clone().unwrap()))
        .unwrap();
    dma.map(high, 2 * page - high, RW, high, Some(fd)).unwrap();
    assert_eq!(dma.counters().mmapped_maps, 3);
    let held = |a: &AtomicU64| a.load(Ordering::Relaxed);
    assert_eq!(held(&dma.shared.account.shared_maps), 3);
    assert_eq!(held(&dma.shared.account.huge_page_maps), 3);
    let mem = dma.memory().memory();
    let r = mem.find_region(GuestAddress(high)).unwrap();
    assert_eq!(r.is_hugetlbfs(), Some(true));
    assert!(r.is_window());
    // Bytes across the huge page boundary, and at the very end of the first map.
    let across = page - 8;
    dma.write(across, &[0x5a; 16]).unwrap();
    dma.write(low - 2, &[0xa5, 0xa6]).unwrap();
    let mut b = [0u8; 16];
    use std::os::unix::fs::FileExt;
    file.read_exact_at(&mut b, across).unwrap();
    assert_eq!(b, [0x5a; 16]);
    file.read_exact_at(&mut b[..2], low - 2).unwrap();
    assert_eq!(b[..2], [0xa5, 0xa6]);
    // The mappings cover the VGA window's bytes of the file; the guest reaches none of them.
    for addr in [low, low + 0x1000, mid - 1] {
        assert!(dma.write(addr, &[1]).is_err(), "{addr:#x}");
        assert!(
            mem.write_slice(&[1], GuestAddress(addr)).is_err(),
            "{addr:#x}"
        );
    }
    assert!(mem.write_slice(&[1, 2], GuestAddress(low - 1)).is_err());
    assert!(mem.write_slice(&[1], GuestAddress(2 * page)).is_err());
    file.read_exact_at(&mut b, low).unwrap();
    assert_eq!(b, [0; 16]);
    // Unmapping the middle map leaves the others' windows working.
    dma.unmap(mid, high - mid, false).unwrap();
    assert_eq!(held(&dma.shared.account.huge_page_maps), 2);
    drop(mem);
    dma.write(high, &[9]).unwrap();
    file.read_exact_at(&mut b[..1], high).unwrap();
    assert_eq!(b[0], 9);
}

#[test]
fn memfd_map_is_reachable_through_memory_and_read_write() {
    let dma = Dma::new(None, false);
    dma.map(0x10000, 0x2000, RW, 0, Some(memfd(0x2000)))
        .unwrap();
    dma.write(0x10ff0, &[1, 2, 3, 4]).unwrap();
    let account = &dma.shared.account;
    assert_eq!(account.shared_maps.load(Ordering::Relaxed), 1);
    assert_eq!(account.huge_page_maps.load(Ordering::Relaxed), 0);
    let mut b = [0u8; 4];
    dma.memory()
        .memory()
        .read_slice(&mut b, GuestAddress(0x10ff0))
        .unwrap();
    assert_eq!(b, [1, 2, 3, 4]);
    assert_eq!(dma.counters().mmapped_maps, 1);
}

#[test]
fn overlapping_and_overflowing_maps_are_refused() {
    let dma = Dma::new(None, false);
    dma.map(0x1000, 0x1000, RW, 0, None).unwrap();
    let refused = |errno| Err(MapRefusal::Invalid(errno));
    assert_eq!(dma.map(0x1800, 0x1000, RW, 0, None), refused(libc::EEXIST));
    assert_eq!(dma.map(0x800, 0x1000, RW, 0, None), refused(libc::EEXIST));
    assert_eq!(dma.map(u64::MAX, 2, RW, 0, None), refused(libc::EINVAL));
    assert_eq!(dma.map(0x4000, 0, RW, 0, None), refused(libc::EINVAL));
    dma.map(0x2000, 0x1000, RW, 0, None).unwrap();
}

#[test]
fn short_memfd_falls_back_to_messages() {
    let dma = Dma::new(None, false);
    dma.map(0, 0x4000, RW, 0, Some(memfd(0x1000))).unwrap();
    assert_eq!(dma.counters().mmapped_maps, 0);
    assert_eq!(dma.counters().message_maps, 1);
}

#[test]
fn a_client_that_must_share_ram_gets_writable_unmappable_maps_refused_until_it_does() {
    let dma = Dma::new(None, true);
    let not_shared = |with_fd| Err(MapRefusal::NotShared { with_fd });
    // Read-only fd-less (ROM, BIOS): accepted on the message path.
    dma.map(0xfffc_0000, 0x4_0000, 1, 0, None).unwrap();
    // Writable without an fd, or with one that cannot be mmapped: refused.
    assert_eq!(dma.map(0, 0xa_0000, RW, 0, None), not_shared(false));
    assert_eq!(
        dma.map(0, 0xa_0000, RW, 0, Some(memfd(0x1000))),
        not_shared(true)
    );
    assert_eq!(not_shared(false).unwrap_err().errno(), libc::EOPNOTSUPP);
    // Shared RAM: mmapped; from then on fd-less writable maps (VGA VRAM) are accepted.
    dma.map(0, 0xa_0000, RW, 0, Some(memfd(0xa_0000))).unwrap();
    dma.map(0xfd00_0000, 0x1000, RW, 0, None).unwrap();
    assert_eq!(dma.counters().mmapped_maps, 1);
    assert_eq!(dma.counters().message_maps, 2);
    // Still so after the shared RAM has been unmapped again (a reset's remap storm).
    dma.unmap(0, 0xa_0000, false).unwrap();
    dma.map(0xc_0000, 0x1000, RW, 0, None).unwrap();
}

#[test]
fn unmap_removes_contained_maps_and_refuses_cuts() {
    let dma = Dma::new(None, false);
    dma.map(0x1000, 0x1000, RW, 0, Some(memfd(0x1000))).unwrap();
    dma.map(0x2000, 0x1000, RW, 0, None).unwrap();
    assert_eq!(dma.unmap(0x1800, 0x1000, false), Err(libc::EINVAL));
    dma.unmap(0x1000, 0x1000, false).unwrap();
    assert!(matches!(
        dma.write(0x1000, &[0]),
        Err(DmaError::Unmapped { .. })
    ));
    dma.unmap(0, 0, true).unwrap();
    assert_eq!(dma.counters().message_maps, 0);
}

#[test]
fn read_only_map_refuses_writes_and_detach_refuses_all() {
    let dma = Dma::new(None, false);
    dma.map(0, 0x1000, 1, 0, None).unwrap();
    assert!(matches!(
        dma.write(0, &[0]),
        Err(DmaError::Permission { .. })
    ));
    dma.detach();
    assert!(matches!(dma.read(0, &mut [0]), Err(DmaError::Detached)));
}

#[test]
fn message_read_is_refused_on_a_connection_thread() {
    let (ob, _rx) = Outbound::new();
    let dma = Dma::new(Some(ob), false);
    dma.map(0, 0x1000, RW, 0, None).unwrap();
    std::thread::spawn(move || {
        mark_connection_thread();
        assert!(matches!(
            dma.read(0, &mut [0; 4]),
            Err(DmaError::WouldBlock)
        ));
        assert!(matches!(
            dma.write_sync(0, &[0; 4]),
            Err(DmaError::WouldBlock)
        ));
        // Fire-and-forget is fine.
        dma.write(0, &[0; 4]).unwrap();
    })
    .join()
    .unwrap();
}
