//! DMA into the client's memory: the DMA_MAP table, the memfd mmaps (`mmap`: how a map's file
//! is mapped), and server-to-client DMA_READ / DMA_WRITE messages for maps without an fd.
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
use vm_memory::{Bytes, GuestMemoryAtomic, GuestMemoryRegion, MemoryRegionAddress};

use super::limits::{Account, Limit};
use super::wire::{flags, Cursor, Header, MessageBuilder, MAX_DATA_XFER};
use mmap::mmap_shared;

mod mmap;

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

#[cfg(test)]
mod tests;
