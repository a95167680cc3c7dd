//! What one client may make the server hold, what it holds now, and the process's fd budget.
//!
//! Every DMA_MAP and SET_IRQS a client sends makes the server keep something: a table entry, a
//! mapping of the client's memory, an fd (the map's memfd, a vector's eventfd). Unbounded, one
//! client could take the process's fds (the limit is per process) and leave another VF's new
//! client unable to connect. So each connection has an [`Account`]: gauges of what it holds,
//! checked against its [`ClientLimits`] before anything is taken; a request over a limit gets
//! ENOSPC (the kernel's type1 IOMMU answers a full DMA table the same way) and a warning naming
//! the limit. [`fd_budget`] then sizes the fd limit so that every function's client at its limit
//! still leaves a reserve for accepting connections and for the control socket.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::wire::{MAX_DMA_MAPS, MAX_MSG_FDS};

/// What one client connection may make the server hold. QEMU attaching a VF needs a few dozen of
/// each; a guest behind a virtual IOMMU that maps every buffer may need more (raise them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientLimits {
    /// DMA_MAP table entries (with or without an fd), at most [`MAX_DMA_MAPS`].
    pub dma_maps: u64,
    /// Bytes of client memory in the DMA_MAP table (the mmapped part takes our address space).
    pub mapped_bytes: u64,
    /// Fds kept: DMA_MAP memfds that are mmapped, and SET_IRQS eventfds.
    pub fds: u64,
}

impl Default for ClientLimits {
    fn default() -> ClientLimits {
        ClientLimits {
            dma_maps: 256,
            mapped_bytes: 256 << 30,
            fds: 64,
        }
    }
}

/// Which limit a request would have gone over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Limit {
    DmaMaps,
    MappedBytes,
    Fds,
}

impl Limit {
    fn name(self) -> &'static str {
        match self {
            Limit::DmaMaps => "dma_maps",
            Limit::MappedBytes => "mapped_bytes",
            Limit::Fds => "fds",
        }
    }
}

/// One function's account of what its current client holds (zero while none is attached), and
/// how many requests its limits refused. Shared by the connection's [`Dma`](super::Dma) and
/// [`Interrupts`](super::Interrupts), read by [`ServerHandle::stats`](super::ServerHandle).
#[derive(Debug)]
pub(crate) struct Account {
    limit_maps: AtomicU64,
    limit_bytes: AtomicU64,
    limit_fds: AtomicU64,
    pub maps: AtomicU64,
    pub mapped_bytes: AtomicU64,
    /// Maps mmapped from the client's memfd (the rest go through DMA messages).
    pub shared_maps: AtomicU64,
    /// Of those, maps of a hugetlbfs file.
    pub huge_page_maps: AtomicU64,
    /// Fds kept by mmapped DMA maps.
    pub map_fds: AtomicU64,
    /// Eventfds kept by the interrupt table.
    pub irq_fds: AtomicU64,
    pub refusals: AtomicU64,
    /// The current connection has been warned about a refusal.
    warned: AtomicBool,
}

impl Default for Account {
    fn default() -> Account {
        Account::new(ClientLimits::default())
    }
}

impl Account {
    pub(crate) fn new(limits: ClientLimits) -> Account {
        let a = Account {
            limit_maps: AtomicU64::new(0),
            limit_bytes: AtomicU64::new(0),
            limit_fds: AtomicU64::new(0),
            maps: AtomicU64::new(0),
            mapped_bytes: AtomicU64::new(0),
            shared_maps: AtomicU64::new(0),
            huge_page_maps: AtomicU64::new(0),
            map_fds: AtomicU64::new(0),
            irq_fds: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
            warned: AtomicBool::new(false),
        };
        a.set_limits(limits);
        a
    }

    #[cfg(test)]
    /// No limits beyond the protocol's own (for handles outside a server, and tests).
    pub(crate) fn unlimited() -> Account {
        Account::new(ClientLimits {
            dma_maps: MAX_DMA_MAPS as u64,
            mapped_bytes: u64::MAX,
            fds: u64::MAX,
        })
    }

    pub(crate) fn set_limits(&self, l: ClientLimits) {
        self.limit_maps
            .store(l.dma_maps.min(MAX_DMA_MAPS as u64), Ordering::Relaxed);
        self.limit_bytes.store(l.mapped_bytes, Ordering::Relaxed);
        self.limit_fds.store(l.fds, Ordering::Relaxed);
    }

    pub(crate) fn limits(&self) -> ClientLimits {
        ClientLimits {
            dma_maps: self.limit_maps.load(Ordering::Relaxed),
            mapped_bytes: self.limit_bytes.load(Ordering::Relaxed),
            fds: self.limit_fds.load(Ordering::Relaxed),
        }
    }

    /// Fds the client makes us keep now.
    pub(crate) fn fds(&self) -> u64 {
        self.map_fds.load(Ordering::Relaxed) + self.irq_fds.load(Ordering::Relaxed)
    }

    /// Whether the DMA table may grow from `maps` entries and `bytes` to one more entry of
    /// `size` bytes that keeps `new_fds` fds.
    pub(crate) fn check_map(
        &self,
        maps: u64,
        bytes: u64,
        size: u64,
        new_fds: u64,
    ) -> Result<(), Limit> {
        let l = self.limits();
        if maps >= l.dma_maps {
            return Err(self.refuse(Limit::DmaMaps));
        }
        if bytes.saturating_add(size) > l.mapped_bytes {
            return Err(self.refuse(Limit::MappedBytes));
        }
        if self.fds().saturating_add(new_fds) > l.fds {
            return Err(self.refuse(Limit::Fds));
        }
        Ok(())
    }

    /// Whether the interrupt table may go from `now` eventfds to `after`.
    pub(crate) fn check_irq_fds(&self, now: u64, after: u64) -> Result<(), Limit> {
        let others = self.fds().saturating_sub(now);
        if after > now && others.saturating_add(after) > self.limits().fds {
            return Err(self.refuse(Limit::Fds));
        }
        Ok(())
    }

    fn refuse(&self, limit: Limit) -> Limit {
        self.refusals.fetch_add(1, Ordering::Relaxed);
        let l = self.limits();
        let value = match limit {
            Limit::DmaMaps => l.dma_maps,
            Limit::MappedBytes => l.mapped_bytes,
            Limit::Fds => l.fds,
        };
        if !self.warned.swap(true, Ordering::Relaxed) {
            warn!(
                limit = limit.name(),
                value,
                "request refused (ENOSPC): the client would hold more than its limit \
                 (serve's [client_limits] {} = {value}); later refusals of this connection \
                 are only counted",
                limit.name()
            );
        }
        limit
    }

    /// A new connection starts: nothing held, warn again on its first refusal.
    pub(crate) fn begin(&self) {
        for g in [&self.maps, &self.mapped_bytes, &self.map_fds, &self.irq_fds] {
            g.store(0, Ordering::Relaxed);
        }
        self.warned.store(false, Ordering::Relaxed);
    }
}

/// Fds one function may use besides what its client's limits allow: its listening socket and
/// the pool's clone of it, a connection's stream and its two clones (writer, shutdown), and the
/// fds of one message being received ([`MAX_MSG_FDS`], plus one to tell "more" apart).
pub const FDS_PER_FUNCTION: u64 = 2 + 3 + MAX_MSG_FDS as u64 + 1;

/// Fds the process keeps for everything else: accepting, the control socket and its clients,
/// uplinks, captures, log files, timers.
pub const FD_RESERVE: u64 = 256;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit now in force.
pub fn raise_nofile_limit() -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return 1024;
        }
        if rl.rlim_cur < rl.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: rl.rlim_max,
                rlim_max: rl.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                rl.rlim_cur = rl.rlim_max;
            }
        }
    }
    rl.rlim_cur
}

/// `limits` with the fd limit lowered, if need be, so that `functions` clients all at their
/// limits leave [`FD_RESERVE`] of the process's `nofile` fds free: one client can then never
/// take the fds another function needs to accept its client.
pub fn fd_budget(limits: ClientLimits, functions: u64, nofile: u64) -> ClientLimits {
    let per_function = nofile.saturating_sub(FD_RESERVE) / functions.max(1);
    let room = per_function.saturating_sub(FDS_PER_FUNCTION);
    if room >= limits.fds {
        return limits;
    }
    let fits = room.max(1);
    if room < 8 {
        warn!(
            nofile,
            functions,
            "too few fds for this many functions: each client may keep only {fits} fds \
             (QEMU needs about 8 for a VF); raise the hard RLIMIT_NOFILE or serve fewer VFs"
        );
    } else {
        info!(
            nofile,
            functions,
            configured = limits.fds,
            "each client may keep {fits} fds, so that all functions fit in RLIMIT_NOFILE"
        );
    }
    ClientLimits {
        fds: fits,
        ..limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_limit_refuses_and_is_counted() {
        let a = Account::new(ClientLimits {
            dma_maps: 2,
            mapped_bytes: 0x3000,
            fds: 1,
        });
        assert_eq!(a.check_map(0, 0, 0x1000, 1), Ok(()));
        a.map_fds.store(1, Ordering::Relaxed);
        assert_eq!(a.check_map(1, 0x1000, 0x1000, 1), Err(Limit::Fds));
        assert_eq!(a.check_map(1, 0x1000, 0x1000, 0), Ok(()));
        assert_eq!(a.check_map(1, 0x1000, 0x3000, 0), Err(Limit::MappedBytes));
        assert_eq!(a.check_map(2, 0x2000, 0x1000, 0), Err(Limit::DmaMaps));
        // Replacing an eventfd by another keeps the count; adding one goes over.
        a.irq_fds.store(0, Ordering::Relaxed);
        assert_eq!(a.check_irq_fds(0, 1), Err(Limit::Fds));
        a.map_fds.store(0, Ordering::Relaxed);
        a.irq_fds.store(1, Ordering::Relaxed);
        assert_eq!(a.check_irq_fds(1, 1), Ok(()));
        assert_eq!(a.check_irq_fds(1, 0), Ok(()));
        assert_eq!(a.refusals.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn the_fd_budget_leaves_the_reserve_for_every_function_at_its_limit() {
        let l = ClientLimits::default();
        assert_eq!(fd_budget(l, 4, 1 << 20), l, "room enough: unchanged");
        for (functions, nofile) in [(257, 20_000), (514, 20_000), (65, 4096), (3, 1024)] {
            let b = fd_budget(l, functions, nofile);
            assert!(b.fds <= l.fds);
            assert!(
                functions * (b.fds + FDS_PER_FUNCTION) + FD_RESERVE <= nofile,
                "{functions} functions, {nofile} fds: {} each",
                b.fds
            );
        }
    }
}
