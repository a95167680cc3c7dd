//! The vfio-user server: serves one PCI function per UNIX socket to a vfio-user client (QEMU 11.1's
//! `vfio-user-pci`, or the `vfio_user` crate's `Client`).
//!
//! # Shape
//! - [`PciFunction`] is what a device model implements (config and region accesses, reset,
//!   attach/detach). The server knows nothing about NICs.
//! - [`Server::bind`] creates the socket; [`Server::run`] (on its own thread) accepts one client
//!   at a time; [`ServerHandle::shutdown`] stops it and the socket file is removed.
//! - While a client is connected the function holds a [`FunctionContext`]: a [`Dma`] handle
//!   (memfd mmaps as `vm-memory` guest memory, DMA_READ/WRITE messages for fd-less maps) and an
//!   [`Interrupts`] handle (eventfds per vector). Both are `Clone + Send + Sync`, usable from
//!   any thread, and follow DMA_MAP/UNMAP and SET_IRQS changes.
//! - A function that DMAs only through the mmaps sets [`FunctionInfo::needs_shared_memory`]: a
//!   client whose RAM is not shared (QEMU without [`QEMU_SHARED_MEMORY_OPTIONS`]) is then refused
//!   at attach, with one error naming those options, instead of getting a device whose DMA fails.
//!
//! # Threads
//! - One **connection thread** per connected client (the thread running [`Server::run`], or
//!   one a [`Pool`] starts when it accepts a client; a pool polls all its idle sockets from one
//!   thread, so a function without a client costs no thread): it reads every message and calls
//!   the [`PciFunction`] methods, strictly in message order, so posted writes are applied
//!   before any later read.
//! - One small **writer thread** per connection sends our DMA requests, so that a thread asking
//!   for a DMA (another VF's datapath, say) never blocks on this client's socket.
//! - Replies from the client to our DMA requests arrive on the same stream as its commands; the
//!   connection thread tells them apart by the header's type bits and hands them to the waiter.
//! - DMA blocking rules (details on [`Dma`]): mmap accesses never block; message-path writes
//!   are fire-and-forget; message-path reads (and [`Dma::write_sync`]) wait for the client's
//!   reply and are refused with [`DmaError::WouldBlock`] on any connection thread, ours or
//!   another function's. Run them on a worker thread.
//!
//! # Why not the `vfio_user` crate's `Server` (0.1.7)
//! We use the crate's [`Command`](vfio_user::Command) numbers and
//! [`DmaMapFlags`](vfio_user::DmaMapFlags), the kernel's VFIO constants through `vfio-bindings`
//! (the crate's own dependency), and the crate's `Client` in our conformance tests. The crate
//! keeps its header and payload structs private, so [`wire`] lays them out again. Its `Server`
//! cannot serve this device (line numbers are the crate's `src/lib.rs`):
//! - **No server-to-client requests**: `run()` accepts the stream and keeps it private
//!   (1431–1432), and DMA_READ/DMA_WRITE exist only as inbound "unsupported" commands (977–985).
//!   So no DMA at all for maps without an fd, and no demultiplexing of client replies from
//!   client commands on the shared stream.
//! - **Error replies carry errno 0** unless the error is `InvalidInput` (1465–1480). QEMU reads
//!   errno 0 as success and uses its own request bytes as the answer.
//! - **Error replies to NO_REPLY messages** (same lines, no `no_reply()` check), e.g. for a failed
//!   posted BAR write: QEMU logs "unexpected reply" and loses the stream.
//! - **Payloads left unread on early errors**, so the stream desynchronises: unknown command
//!   numbers (the enum stops at 14; the return at 977 comes before any read), a NO_REPLY VERSION
//!   (988), a REGION_WRITE to a bad region (1378, before the data is read at 1382).
//! - **Client input can panic it or make it allocate 4 GiB**: `CString::from_vec_with_nul(..)
//!   .unwrap()` on the VERSION payload (1005), `vec![0; count]` from an unchecked `count`
//!   (1345, 1382), fixed-size struct reads that ignore the header's size.
//! - SET_IRQS hands the backend `count` and a possibly shorter `Vec<File>` without saying which
//!   vectors the fds are for; `max_msg_fds` is fixed at 1 (93); a region fd is sent only with a
//!   sparse-mmap capability; `DmaUnmapFlags` has the wrong bit values (124–125: UNMAP_ALL is
//!   1<<1 in Linux and QEMU, not 1<<2).
//! - One blocking `run()` per connection, no shutdown handle, no reset on disconnect.
//!
//! The message trace is logged with `tracing`: one `vfio` span per socket, a `conn` span per
//! client, a `msg` span per message (`debug` level: commands and errors; `trace`: every message,
//! reply, DMA and interrupt). `sriov-emu -v`/`-vv` or `RUST_LOG=sriov_emu::vfio=trace` show it.

mod conn;
mod dma;
mod function;
mod inbox;
mod irq;
mod limits;
mod naps;
mod pool;
mod scm;
mod server;
mod stats;
#[cfg(test)]
mod test_function;
pub mod wire;

/// The QEMU options that give a vfio-user server shared guest RAM (DMA_MAPs with a memfd it can
/// mmap): what a [`FunctionInfo::needs_shared_memory`] function requires. `<RAM>` is the `-m`
/// size.
pub const QEMU_SHARED_MEMORY_OPTIONS: &str =
    "-object memory-backend-memfd,id=mem,size=<RAM>,share=on -machine memory-backend=mem";

pub use dma::{on_connection_thread, Dma, DmaCounters, DmaError, DMA_REPLY_TIMEOUT};
pub use function::{
    region, FunctionContext, FunctionInfo, PciFunction, RegionError, RegionInfo, CONFIG_SPACE_SIZE,
    NUM_REGIONS,
};
pub use irq::{index as irq_index, Interrupts, IrqCounters, NUM_IRQS};
pub use limits::{fd_budget, raise_nofile_limit, ClientLimits, FDS_PER_FUNCTION, FD_RESERVE};
pub use pool::Pool;
pub use server::{Held, Server, ServerHandle, ServerStats};
