//! A server's counters: atomics the connection loop bumps, and the snapshot
//! [`ServerHandle::stats`](super::ServerHandle::stats) hands out.

use std::sync::atomic::AtomicU64;

use serde::Serialize;

use super::limits::ClientLimits;

/// Server-wide counters (atomics, readable from any thread through [`ServerHandle::stats`]).
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub connections: AtomicU64,
    pub messages: AtomicU64,
    pub region_reads: AtomicU64,
    pub error_replies: AtomicU64,
    pub silent_errors: AtomicU64,
    pub protocol_closes: AtomicU64,
    pub panics: AtomicU64,
    pub unshared_maps_refused: AtomicU64,
}

/// A snapshot of a server's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Clients accepted.
    pub connections: u64,
    /// Messages received (commands and replies).
    pub messages: u64,
    /// REGION_READs answered: each one a round trip the client's vCPU waits for (a posted
    /// REGION_WRITE is not).
    pub region_reads: u64,
    /// Error replies sent.
    pub error_replies: u64,
    /// Failed NO_REPLY messages (logged, never answered).
    pub silent_errors: u64,
    /// Connections closed because the stream could not be trusted any more.
    pub protocol_closes: u64,
    /// Connections ended by a panic in the function (caught; the function was reset).
    pub panics: u64,
    /// Writable DMA_MAPs refused because the function needs shared guest RAM and the client's
    /// is not ([`FunctionInfo::needs_shared_memory`](super::FunctionInfo)).
    pub unshared_maps_refused: u64,
    /// What the current client makes the server hold (all zero without a client).
    pub held: Held,
    /// What a client may make it hold.
    pub limits: ClientLimits,
    /// DMA_MAPs and SET_IRQS refused because the client would have held more than its limits.
    pub limit_refusals: u64,
}

/// What a function's current client makes the server hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Held {
    /// A client is attached.
    pub connected: bool,
    /// DMA_MAP table entries.
    pub dma_maps: u64,
    /// Bytes of client memory in the table.
    pub mapped_bytes: u64,
    /// Maps mmapped from the client's memfd, reached without a message.
    pub shared_maps: u64,
    /// Of those, maps of guest RAM on huge pages (a hugetlbfs memfd).
    pub huge_page_maps: u64,
    /// Fds kept: mmapped maps' memfds and the interrupt eventfds.
    pub fds: u64,
}
