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
//!
//! # Threads
//! - One **connection thread** per function (the thread running [`Server::run`]): it reads
//!   every message and calls the [`PciFunction`] methods, strictly in message order, so posted
//!   writes are applied before any later read.
//! - One small **writer thread** per connection sends our DMA requests, so that a thread asking
//!   for a DMA (another VF's datapath, say) never blocks on this client's socket.
//! - Replies from the client to our DMA requests arrive on the same stream as its commands; the
//!   connection thread tells them apart by the header's type bits and hands them to the waiter.
//! - Blocking rules for DMA are in [`dma`](self::Dma): mmap accesses never block; message-path
//!   writes are fire-and-forget; message-path reads (and [`Dma::write_sync`]) wait for the
//!   client and are refused with [`DmaError::WouldBlock`] on any connection thread.
//!
//! # Why not the `vfio_user` crate's `Server` (0.1.7)
//! We use the crate's [`Command`](vfio_user::Command) numbers and
//! [`DmaMapFlags`](vfio_user::DmaMapFlags), the kernel's VFIO constants through `vfio-bindings`
//! (the crate's own dependency), and the crate's `Client` in our conformance tests. Its `Server`
//! (`src/lib.rs` of 0.1.7) cannot serve this device:
//! - it keeps the stream private inside `run()`, so it can never send a server-to-client request:
//!   no DMA_READ/DMA_WRITE, hence no DMA at all for maps without an fd, and no demultiplexing of
//!   replies from commands on the shared stream;
//! - its error replies carry errno 0 unless the error is `InvalidInput`; QEMU reads errno 0 as
//!   success and uses garbage as the answer;
//! - it sends error replies to NO_REPLY messages (e.g. a failed posted BAR write), which QEMU
//!   sees as an "unexpected reply" and loses the stream;
//! - it does not read the payload before some early errors (unknown command numbers, a NO_REPLY
//!   VERSION, a REGION_WRITE to a bad region), so the stream desynchronises;
//! - it reads fixed-size structs regardless of the header's size, `unwrap`s the VERSION JSON
//!   (`CString::from_vec_with_nul`), and trusts `count` for allocations: client input can panic
//!   it or make it allocate 4 GiB;
//! - SET_IRQS hands the backend fewer fds than `count` without saying which vectors they are
//!   for; `max_msg_fds` is fixed at 1; `DmaUnmapFlags` has the wrong bit values (UNMAP_ALL is
//!   1<<1 in Linux and QEMU, not 1<<2);
//! - one blocking `run()` per connection, no shutdown handle, no reset on disconnect.
//!
//! The message trace is logged with `tracing`: one `vfio` span per socket, a `conn` span per
//! client, a `msg` span per message (`debug` level: commands and errors; `trace`: every message,
//! reply, DMA and interrupt). `sriov-emu -v`/`-vv` or `RUST_LOG=sriov_emu::vfio=trace` show it.

mod conn;
mod dma;
mod function;
mod irq;
mod server;
pub mod wire;

pub use dma::{on_connection_thread, Dma, DmaCounters, DmaError, DMA_REPLY_TIMEOUT};
pub use function::{
    irq as irq_index, region, FunctionContext, FunctionInfo, PciFunction, RegionError, RegionInfo,
    CONFIG_SPACE_SIZE, NUM_IRQS, NUM_REGIONS,
};
pub use irq::{Interrupts, IrqCounters};
pub use server::{Server, ServerHandle, ServerStats};
