//! DMA into the client's memory: the DMA_MAP table, the memfd mmaps, and server-to-client
//! DMA_READ / DMA_WRITE messages for maps without an fd.
//!
//! See [`Dma`] for the two access paths and for what may block.

use std::cell::Cell;
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use model::{GuestMem, GuestRam, RamRegion};
use tracing::{debug, trace, warn};
use vm_memory::{
    Bytes, FileOffset, GuestAddress, GuestMemoryAtomic, GuestMemoryRegion, GuestRegionMmap,
    MemoryRegionAddress, MmapRegion,
};

use super::limits::{Account, Limit};
use super::wire::{flags, Cursor, Header, MessageBuilder, MAX_DATA_XFER};

/// How long a blocking message-path DMA waits for the client's reply (QEMU's own default).
pub const DMA_REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Outstanding server-to-client requests per connection, and queued outgoing messages.
const MAX_PENDING: usize = 1024;

const CMD_DMA_READ: u16 = vfio_user::Command::DmaRead as u16;
const CMD_DMA_WRITE: u16 = vfio_user::Command::DmaWrite as u16;

thread_local! {
    static ON_CONNECTION_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Mark the current thread as a vfio-user connection thread (blocking DMA is refused there).
pub(crate) fn mark_connection_thread() {
    ON_CONNECTION_THREAD.with(|c| c.set(true));
}

/// Whether the current thread is a vfio-user connection thread.
pub fn on_connection_thread() -> bool {
    ON_CONNECTION_THREAD.with(|c| c.get())
}

/// Why a DMA access failed.
#[derive(Debug, thiserror::Error)]
pub enum DmaError {
    #[error("the client has disconnected")]
    Detached,
    #[error("[{addr:#x}, +{len:#x}) is not mapped")]
    Unmapped { addr: u64, len: usize },
    #[error("[{addr:#x}, +{len:#x}) is mapped without {access} permission")]
    Permission {
        addr: u64,
        len: usize,
        access: &'static str,
    },
    #[error("message-path DMA read would block a vfio-user connection thread")]
    WouldBlock,
    #[error("too many outstanding DMA messages")]
    QueueFull,
    #[error("no DMA reply from the client in time")]
    Timeout,
    #[error("the client answered with errno {0}")]
    Client(u32),
    #[error("malformed DMA reply")]
    BadReply,
    #[error("guest memory access failed: {0}")]
    Memory(#[from] vm_memory::GuestMemoryError),
}

/// Why [`Dma::map`] refused a DMA_MAP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MapRefusal {
    /// Malformed or overlapping: this errno.
    Invalid(i32),
    /// Writable memory the server cannot mmap, from a client that must share its RAM and has not
    /// shown any shared RAM yet (see [`Dma`]). `with_fd`: an fd came, but it failed the mmap
    /// checks (a warning says why); otherwise there was none (QEMU's default anonymous RAM).
    NotShared { with_fd: bool },
    /// The client would hold more than its [`ClientLimits`](super::ClientLimits) allow.
    Limit(Limit),
}

impl MapRefusal {
    /// The errno of the error reply. [`MapRefusal::NotShared`] is EOPNOTSUPP, which QEMU prints
    /// as "error reply on async request command 2 error Operation not supported"
    /// (`hw/vfio-user/proxy.c` `vfio_user_process`, `vfio_user_wait_reqs`).
    pub(crate) fn errno(self) -> i32 {
        match self {
            MapRefusal::Invalid(errno) => errno,
            MapRefusal::NotShared { .. } => libc::EOPNOTSUPP,
            MapRefusal::Limit(_) => libc::ENOSPC,
        }
    }
}

/// Counters of a [`Dma`] handle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DmaCounters {
    pub msg_reads: u64,
    pub msg_writes: u64,
    /// Failures of any kind, including error replies to fire-and-forget writes.
    pub errors: u64,
    pub mmapped_maps: u64,
    pub message_maps: u64,
}

#[derive(Debug)]
struct MapEntry {
    iova: u64,
    size: u64,
    readable: bool,
    writable: bool,
    /// `Some` for the mmap path.
    region: Option<Arc<RamRegion>>,
    /// The mmapped file (the client's RAM memfd), shared by every map of the same file.
    file: Option<(FileKey, Arc<File>)>,
}

/// A file's identity (`st_dev`, `st_ino`): QEMU sends the same memfd again with every map, a
/// new fd each time; we keep one per file.
type FileKey = (u64, u64);

fn file_key(file: &File) -> Option<FileKey> {
    // SAFETY: fstat into a zeroed struct we own, on an fd we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    (unsafe { libc::fstat(file.as_raw_fd(), &mut st) } == 0).then_some((st.st_dev, st.st_ino))
}

impl MapEntry {
    /// One past the last byte; 2^64 for a map that ends at the top of the address space.
    fn end(&self) -> u128 {
        u128::from(self.iova) + u128::from(self.size)
    }
}

/// The end (one past the last byte) of `[iova, iova + size)`, if it is a range: it may be 2^64
/// exactly, as the kernel's type1 IOMMU allows (`vfio_dma_do_map`/`vfio_dma_do_unmap` check
/// `iova + size - 1 < iova`), but not beyond.
fn range_end(iova: u64, size: u64) -> Option<u128> {
    let end = u128::from(iova) + u128::from(size);
    (end <= 1u128 << 64).then_some(end)
}

#[derive(Debug)]
enum Pending {
    /// Fire-and-forget DMA_WRITE: check and drop the reply.
    Discard,
    Waiter(Sender<Result<Vec<u8>, u32>>),
}

/// Server-to-client requests of one connection: id allocation, the queue to the writer thread,
/// and the replies awaited.
#[derive(Debug)]
pub(crate) struct Outbound {
    queue: Sender<Vec<u8>>,
    pending: Mutex<HashMap<u16, Pending>>,
    next_id: AtomicU16,
}

impl Outbound {
    /// A new outbound side and the receiver the writer thread drains.
    pub(crate) fn new() -> (Arc<Outbound>, Receiver<Vec<u8>>) {
        let (tx, rx) = bounded(MAX_PENDING);
        let ob = Outbound {
            queue: tx,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU16::new(0),
        };
        (Arc::new(ob), rx)
    }

    fn send(
        &self,
        command: u16,
        build: impl FnOnce(MessageBuilder) -> MessageBuilder,
        pending: Pending,
    ) -> Result<u16, DmaError> {
        let mut table = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if table.len() >= MAX_PENDING {
            return Err(DmaError::QueueFull);
        }
        // Skip ids still outstanding (after 64 Ki requests the counter wraps).
        let id = loop {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            if !table.contains_key(&id) {
                break id;
            }
        };
        let msg = build(MessageBuilder::new(id, command, flags::TYPE_COMMAND)).finish();
        match self.queue.try_send(msg) {
            Ok(()) => {
                table.insert(id, pending);
                Ok(id)
            }
            Err(TrySendError::Full(_)) => Err(DmaError::QueueFull),
            Err(TrySendError::Disconnected(_)) => Err(DmaError::Detached),
        }
    }

    fn forget(&self, id: u16) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// A reply arrived on the connection thread. Returns false if no request had that id.
    pub(crate) fn complete(&self, h: &Header, payload: Vec<u8>, errors: &AtomicU64) -> bool {
        let p = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&h.id);
        let result = if h.is_error() {
            Err(if h.error == 0 {
                libc::EIO as u32
            } else {
                h.error
            })
        } else {
            Ok(payload)
        };
        match p {
            None => false,
            Some(Pending::Discard) => {
                if let Err(errno) = result {
                    errors.fetch_add(1, Ordering::Relaxed);
                    warn!(id = h.id, errno, "client refused a DMA_WRITE");
                }
                true
            }
            Some(Pending::Waiter(tx)) => {
                let _ = tx.try_send(result);
                true
            }
        }
    }

    /// Wake the writer thread so that it notices the connection is closing (an empty message
    /// is its stop sign; if the queue is full it notices within its poll interval anyway).
    pub(crate) fn wake_writer(&self) {
        let _ = self.queue.try_send(Vec::new());
    }

    /// Fail every waiter (the connection is closing).
    pub(crate) fn close(&self) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

#[derive(Debug)]
struct Shared {
    memory: GuestMem,
    maps: Mutex<Vec<MapEntry>>,
    outbound: RwLock<Option<Arc<Outbound>>>,
    detached: AtomicBool,
    /// Refuse writable maps that cannot be mmapped until `shared_seen` (see [`Dma`]).
    require_shared: bool,
    /// A writable map was mmapped on this connection: the client's RAM is shared.
    shared_seen: AtomicBool,
    msg_reads: AtomicU64,
    msg_writes: AtomicU64,
    errors: AtomicU64,
    /// What the client holds through this table, against its limits.
    account: Arc<Account>,
}

/// DMA access to the connected client's memory. Cheap to clone, `Send + Sync`, usable from any
/// thread; follows DMA_MAP/UNMAP (a clone taken before a remap sees the new maps).
///
/// # Two paths
/// - **mmap** — a DMA_MAP that carries an fd (QEMU's `memory-backend-memfd,share=on` RAM) and
///   allows read and write is mmapped `MAP_SHARED` and joins [`Dma::memory`], a
///   `GuestMemoryAtomic<GuestMemoryMmap>` that is swapped (RCU-style) on every map/unmap. Accesses
///   never block and never touch the socket. Before mapping, the fd must be a file at least
///   `offset + size` long and sealed against shrinking (we add `F_SEAL_SHRINK` if the client did
///   not forbid it): otherwise a client truncating its memfd would SIGBUS us. Maps that fail these
///   checks fall back to the message path.
/// - **messages** — maps without an fd (default anonymous RAM, QEMU's ROM/PAM windows) are
///   recorded with their permissions and reached with DMA_READ/DMA_WRITE requests, in chunks of at
///   most [`MAX_DATA_XFER`] bytes. Requests are queued to the connection's writer thread; replies
///   come back on the connection thread, which demultiplexes them by id.
///
/// # What may block (the deadlock rule)
/// QEMU serves our DMA requests in its main loop. If we wait for a DMA reply while QEMU waits for
/// our reply to its request, both stall. The connection thread is the only reader of the socket, so
/// waiting there for a DMA reply could never succeed anyway. Hence:
/// - [`Dma::read`] and [`Dma::write`] on mmapped memory never block.
/// - [`Dma::write`] on message-path memory is fire-and-forget: it queues the request and returns
///   (errors in the client's reply are logged and counted). It never waits, on any thread. Note it
///   is not ordered against an interrupt fired right after it.
/// - A message-path read ([`Dma::read`]) and [`Dma::write_sync`] wait for the client's reply (at
///   most [`DMA_REPLY_TIMEOUT`]). They are **refused with [`DmaError::WouldBlock`] on any vfio-user
///   connection thread** (ours or another function's: two connection threads waiting on each other
///   would deadlock). Run them on a worker thread.
///
/// # Clients that must share their RAM
/// A function that sets [`FunctionInfo::needs_shared_memory`](super::FunctionInfo) reaches guest
/// memory only through [`Dma::memory`]. For it, a writable map that cannot be mmapped (no fd,
/// or an fd that fails the checks above) is **refused** (EOPNOTSUPP) as long as no writable map
/// of this connection has been mmapped yet; the connection then reports the missing QEMU options
/// and fails the device at DEVICE_GET_INFO. Once shared RAM has been seen, such maps are accepted
/// on the message path as before: they are device memory, not guest RAM. QEMU 11.1.3 with
/// `memory-backend-memfd,share=on` RAM does map one: the VGA frame buffer (`vga.vram`, its own
/// anonymous RAM block) at its BAR, 16 MiB writable and fd-less, as soon as the firmware has
/// placed the BAR. Guest RAM comes first: QEMU's memory listener reports the sections of a flat
/// view in address order (`memory_listener_register` → `listener_add_address_space`), and on the
/// x86 machines RAM starts at address 0, below every BAR. Read-only fd-less maps (ROM, BIOS, the
/// PAM windows) are always accepted on the message path.
#[derive(Clone, Debug)]
pub struct Dma {
    shared: Arc<Shared>,
}

/// One contiguous piece of an access, inside one map.
struct Piece {
    addr: u64,
    len: usize,
    region: Option<Arc<RamRegion>>,
    region_base: u64,
}

impl Dma {
    #[cfg(test)]
    /// `require_shared`: the function's [`FunctionInfo::needs_shared_memory`](super::FunctionInfo).
    pub(crate) fn new(outbound: Option<Arc<Outbound>>, require_shared: bool) -> Dma {
        Dma::accounted(outbound, require_shared, Arc::new(Account::unlimited()))
    }

    /// [`Dma::new`], with the maps counted in (and limited by) `account`.
    pub(crate) fn accounted(
        outbound: Option<Arc<Outbound>>,
        require_shared: bool,
        account: Arc<Account>,
    ) -> Dma {
        Dma {
            shared: Arc::new(Shared {
                memory: GuestMemoryAtomic::new(GuestRam::new()),
                maps: Mutex::new(Vec::new()),
                outbound: RwLock::new(outbound),
                detached: AtomicBool::new(false),
                require_shared,
                shared_seen: AtomicBool::new(false),
                msg_reads: AtomicU64::new(0),
                msg_writes: AtomicU64::new(0),
                errors: AtomicU64::new(0),
                account,
            }),
        }
    }

    /// The mmapped (memfd-backed) part of the client's memory, for `vm-memory` accessors
    /// (`read_obj`, `write_slice`, ...). Only read+write maps with an fd are in it; use
    /// [`Dma::read`]/[`Dma::write`] to reach fd-less maps too. Never blocks.
    pub fn memory(&self) -> GuestMem {
        self.shared.memory.clone()
    }

    /// Read guest memory at `addr`. mmap path: never blocks. Message path: waits for the client
    /// (refused on connection threads, see [`Dma`]).
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        let r = self.read_inner(addr, buf);
        if r.is_err() {
            self.shared.errors.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    /// Write guest memory at `addr`. mmap path: done on return. Message path: queued, not
    /// awaited (never blocks).
    pub fn write(&self, addr: u64, data: &[u8]) -> Result<(), DmaError> {
        let r = self.write_inner(addr, data, false);
        if r.is_err() {
            self.shared.errors.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    /// Like [`Dma::write`], but on the message path waits until the client has applied it.
    /// Refused on connection threads.
    pub fn write_sync(&self, addr: u64, data: &[u8]) -> Result<(), DmaError> {
        let r = self.write_inner(addr, data, true);
        if r.is_err() {
            self.shared.errors.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    pub fn counters(&self) -> DmaCounters {
        let s = &self.shared;
        let maps = s.maps.lock().unwrap_or_else(|e| e.into_inner());
        let mmapped = maps.iter().filter(|m| m.region.is_some()).count() as u64;
        DmaCounters {
            msg_reads: s.msg_reads.load(Ordering::Relaxed),
            msg_writes: s.msg_writes.load(Ordering::Relaxed),
            errors: s.errors.load(Ordering::Relaxed),
            mmapped_maps: mmapped,
            message_maps: maps.len() as u64 - mmapped,
        }
    }

    fn pieces(&self, addr: u64, len: usize, write: bool) -> Result<Vec<Piece>, DmaError> {
        if self.shared.detached.load(Ordering::Acquire) {
            return Err(DmaError::Detached);
        }
        let unmapped = || DmaError::Unmapped { addr, len };
        let end = range_end(addr, len as u64).ok_or_else(unmapped)?;
        let maps = self.shared.maps.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        let mut cur = u128::from(addr);
        // Maps are sorted and disjoint: start at the last map beginning at or before `cur`.
        let mut i = maps.partition_point(|m| m.iova <= addr).checked_sub(1);
        while cur < end {
            let m = i.and_then(|i| maps.get(i)).ok_or_else(unmapped)?;
            if !(u128::from(m.iova) <= cur && cur < m.end()) {
                return Err(unmapped());
            }
            if (write && !m.writable) || (!write && !m.readable) {
                let access = if write { "write" } else { "read" };
                return Err(DmaError::Permission { addr, len, access });
            }
            let piece_end = end.min(m.end());
            out.push(Piece {
                // Below `end`, so below 2^64.
                addr: cur as u64,
                len: (piece_end - cur) as usize,
                region: m.region.clone(),
                region_base: m.iova,
            });
            cur = piece_end;
            i = i.map(|i| i + 1);
        }
        Ok(out)
    }

    fn outbound(&self) -> Result<Arc<Outbound>, DmaError> {
        self.shared
            .outbound
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(DmaError::Detached)
    }

    fn read_inner(&self, addr: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        let pieces = self.pieces(addr, buf.len(), false)?;
        let mut done = 0;
        for p in pieces {
            let dst = &mut buf[done..done + p.len];
            match &p.region {
                Some(r) => r
                    .read_slice(dst, MemoryRegionAddress(p.addr - p.region_base))
                    .map_err(DmaError::Memory)?,
                None => self.msg_read(p.addr, dst)?,
            }
            done += p.len;
        }
        Ok(())
    }

    fn write_inner(&self, addr: u64, data: &[u8], sync: bool) -> Result<(), DmaError> {
        let pieces = self.pieces(addr, data.len(), true)?;
        if sync && on_connection_thread() && pieces.iter().any(|p| p.region.is_none()) {
            return Err(DmaError::WouldBlock);
        }
        let mut done = 0;
        for p in pieces {
            let src = &data[done..done + p.len];
            match &p.region {
                Some(r) => r
                    .write_slice(src, MemoryRegionAddress(p.addr - p.region_base))
                    .map_err(DmaError::Memory)?,
                None => self.msg_write(p.addr, src, sync)?,
            }
            done += p.len;
        }
        Ok(())
    }

    fn msg_read(&self, addr: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        if on_connection_thread() {
            return Err(DmaError::WouldBlock);
        }
        let ob = self.outbound()?;
        for (i, chunk) in buf.chunks_mut(MAX_DATA_XFER).enumerate() {
            let a = addr + (i * MAX_DATA_XFER) as u64;
            let n = chunk.len() as u64;
            let (tx, rx) = bounded(1);
            let id = ob.send(CMD_DMA_READ, |m| m.u64(a).u64(n), Pending::Waiter(tx))?;
            self.shared.msg_reads.fetch_add(1, Ordering::Relaxed);
            trace!(id, addr = a, count = n, "DMA_READ sent");
            let payload = wait(&ob, id, &rx)?;
            let mut c = Cursor::new(&payload);
            let (ra, rn) = (c.u64(), c.u64());
            let data = c.rest();
            if ra != Ok(a) || rn != Ok(n) || data.len() != chunk.len() {
                return Err(DmaError::BadReply);
            }
            chunk.copy_from_slice(data);
        }
        Ok(())
    }

    fn msg_write(&self, addr: u64, data: &[u8], sync: bool) -> Result<(), DmaError> {
        let ob = self.outbound()?;
        for (i, chunk) in data.chunks(MAX_DATA_XFER).enumerate() {
            let a = addr + (i * MAX_DATA_XFER) as u64;
            let n = chunk.len() as u64;
            let build = |m: MessageBuilder| m.u64(a).u64(n).bytes(chunk);
            self.shared.msg_writes.fetch_add(1, Ordering::Relaxed);
            if sync {
                let (tx, rx) = bounded(1);
                let id = ob.send(CMD_DMA_WRITE, build, Pending::Waiter(tx))?;
                trace!(id, addr = a, count = n, "DMA_WRITE sent, waiting");
                wait(&ob, id, &rx)?;
            } else {
                let id = ob.send(CMD_DMA_WRITE, build, Pending::Discard)?;
                trace!(id, addr = a, count = n, "DMA_WRITE queued");
            }
        }
        Ok(())
    }

    // ---- called by the connection thread ----

    /// The counter that error replies to fire-and-forget DMA_WRITEs are added to.
    pub(crate) fn error_counter(&self) -> &AtomicU64 {
        &self.shared.errors
    }

    /// DMA_MAP (refusals: see [`MapRefusal`] and "Clients that must share their RAM" on [`Dma`]).
    pub(crate) fn map(
        &self,
        iova: u64,
        size: u64,
        map_flags: u32,
        offset: u64,
        fd: Option<OwnedFd>,
    ) -> Result<(), MapRefusal> {
        let invalid = MapRefusal::Invalid;
        let end = range_end(iova, size).ok_or(invalid(libc::EINVAL))?;
        if size == 0 {
            return Err(invalid(libc::EINVAL));
        }
        let readable = map_flags & vfio_user::DmaMapFlags::READ.bits() != 0;
        let writable = map_flags & vfio_user::DmaMapFlags::WRITE.bits() != 0;
        let mut maps = self.shared.maps.lock().unwrap_or_else(|e| e.into_inner());
        let at = maps.partition_point(|m| m.iova < iova);
        let overlaps_prev = at > 0 && maps[at - 1].end() > u128::from(iova);
        let overlaps_next = maps.get(at).is_some_and(|m| u128::from(m.iova) < end);
        if overlaps_prev || overlaps_next {
            return Err(invalid(libc::EEXIST));
        }
        let with_fd = fd.is_some();
        // The file this map's fd names: one we hold already (the new fd is closed), or new.
        let file = fd.map(File::from).and_then(|f| {
            let key = file_key(&f)?;
            let held = maps
                .iter()
                .find_map(|m| m.file.as_ref().filter(|(k, _)| *k == key));
            Some(match held {
                Some((_, arc)) => (key, arc.clone(), false),
                None => (key, Arc::new(f), true),
            })
        });
        let new_fd = file.as_ref().is_some_and(|(_, _, new)| *new);
        let bytes = mapped_bytes(&maps);
        self.shared
            .account
            .check_map(maps.len() as u64, bytes, size, u64::from(new_fd))
            .map_err(MapRefusal::Limit)?;
        let (region, file) = match file {
            Some((key, f, _)) if readable && writable => {
                match mmap_shared(&f, offset, size, iova) {
                    Some(r) => (Some(r), Some((key, f))),
                    None => (None, None),
                }
            }
            _ => (None, None),
        };
        if writable && region.is_some() {
            self.shared.shared_seen.store(true, Ordering::Relaxed);
        }
        if writable
            && region.is_none()
            && self.shared.require_shared
            && !self.shared.shared_seen.load(Ordering::Relaxed)
        {
            debug!(
                iova = format_args!("{iova:#x}"),
                size = format_args!("{size:#x}"),
                with_fd,
                "DMA_MAP refused: writable and not mmappable, and no shared RAM yet"
            );
            return Err(MapRefusal::NotShared { with_fd });
        }
        debug!(
            iova = format_args!("{iova:#x}"),
            size = format_args!("{size:#x}"),
            readable,
            writable,
            mmapped = region.is_some(),
            "DMA_MAP"
        );
        let mmapped = region.is_some();
        maps.insert(
            at,
            MapEntry {
                iova,
                size,
                readable,
                writable,
                region,
                file,
            },
        );
        self.count(&maps);
        if mmapped {
            self.publish(&maps);
        }
        Ok(())
    }

    /// Updates the account's gauges from the table.
    fn count(&self, maps: &[MapEntry]) {
        let a = &self.shared.account;
        a.maps.store(maps.len() as u64, Ordering::Relaxed);
        a.mapped_bytes.store(mapped_bytes(maps), Ordering::Relaxed);
        let shared = maps.iter().filter_map(|m| m.region.as_ref());
        a.shared_maps
            .store(shared.clone().count() as u64, Ordering::Relaxed);
        let huge = shared.filter(|r| r.is_hugetlbfs() == Some(true)).count();
        a.huge_page_maps.store(huge as u64, Ordering::Relaxed);
        let mut files: Vec<FileKey> = maps
            .iter()
            .filter_map(|m| Some(m.file.as_ref()?.0))
            .collect();
        files.sort_unstable();
        files.dedup();
        a.map_fds.store(files.len() as u64, Ordering::Relaxed);
    }

    /// DMA_UNMAP of every map inside `[iova, iova + size)`, or of all maps. A range that cuts a
    /// map in two is refused (EINVAL), as the kernel's type1 IOMMU does.
    pub(crate) fn unmap(&self, iova: u64, size: u64, all: bool) -> Result<(), i32> {
        let mut maps = self.shared.maps.lock().unwrap_or_else(|e| e.into_inner());
        let before = maps.len();
        let had_mmap = if all {
            let had = maps.iter().any(|m| m.region.is_some());
            maps.clear();
            had
        } else {
            let end = range_end(iova, size).ok_or(libc::EINVAL)?;
            let start = u128::from(iova);
            let inside = |m: &MapEntry| m.iova >= iova && m.end() <= end;
            let cut = maps.iter().any(|m| {
                u128::from(m.iova) < end && m.end() > start && (m.iova < iova || m.end() > end)
            });
            if cut {
                return Err(libc::EINVAL);
            }
            let had = maps.iter().any(|m| inside(m) && m.region.is_some());
            maps.retain(|m| !inside(m));
            had
        };
        debug!(
            iova = format_args!("{iova:#x}"),
            size = format_args!("{size:#x}"),
            all,
            removed = before - maps.len(),
            "DMA_UNMAP"
        );
        self.count(&maps);
        if had_mmap {
            self.publish(&maps);
        }
        Ok(())
    }

    /// Swap in a new [`GuestRam`] built from the mmapped maps (holders of the old snapshot
    /// keep their mappings alive until they drop it).
    fn publish(&self, maps: &[MapEntry]) {
        let regions: Vec<Arc<RamRegion>> = maps.iter().filter_map(|m| m.region.clone()).collect();
        let mem = if regions.is_empty() {
            GuestRam::new()
        } else {
            // Sorted and disjoint by construction of the table.
            GuestRam::from_arc_regions(regions).unwrap_or_default()
        };
        match self.shared.memory.lock() {
            Ok(g) => g.replace(mem),
            Err(e) => e.into_inner().replace(mem),
        }
    }

    /// The client went away: every later access fails with [`DmaError::Detached`].
    pub(crate) fn detach(&self) {
        self.shared.detached.store(true, Ordering::Release);
        *self
            .shared
            .outbound
            .write()
            .unwrap_or_else(|e| e.into_inner()) = None;
        let mut maps = self.shared.maps.lock().unwrap_or_else(|e| e.into_inner());
        maps.clear();
        self.count(&maps);
        self.publish(&maps);
    }
}

fn wait(ob: &Outbound, id: u16, rx: &Receiver<Result<Vec<u8>, u32>>) -> Result<Vec<u8>, DmaError> {
    match rx.recv_timeout(DMA_REPLY_TIMEOUT) {
        Ok(Ok(p)) => Ok(p),
        Ok(Err(errno)) => Err(DmaError::Client(errno)),
        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
            ob.forget(id);
            Err(DmaError::Timeout)
        }
        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(DmaError::Detached),
    }
}

/// Bytes in the table (saturating: a map may be nearly 2^64 bytes).
fn mapped_bytes(maps: &[MapEntry]) -> u64 {
    maps.iter().fold(0u64, |n, m| n.saturating_add(m.size))
}

/// mmap a DMA_MAP fd shared, if it is safe to: a regular file (memfd) long enough and sealed
/// against shrinking. `None` sends the map to the message path.
///
/// A hugetlbfs file (`memory-backend-memfd,hugetlb=on`) can be mapped only from an offset that
/// is a multiple of its huge page size, and QEMU's maps of guest RAM start where its memory
/// map splits the RAM (0xc0000, 0x100000). Such a file is mapped over the whole huge pages
/// around the map, and the region is the window of that mapping the map covers (see
/// [`RamRegion`]): the guest reaches the map's bytes and no others.
fn mmap_shared(file: &Arc<File>, offset: u64, size: u64, iova: u64) -> Option<Arc<RamRegion>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{GuestAddressSpace, GuestMemoryBackend};

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
}
