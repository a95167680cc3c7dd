//! Interrupt delivery: per index, per vector, the eventfd the client gave in SET_IRQS.
//!
//! See [`Interrupts`].

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tracing::trace;

use super::limits::Account;

/// Number of interrupt indexes every function reports: INTx, MSI, MSI-X, ERR, REQ.
pub const NUM_IRQS: usize = 5;

/// Interrupt indexes (VFIO's PCI numbering).
pub mod index {
    pub const INTX: u32 = 0;
    pub const MSI: u32 = 1;
    pub const MSIX: u32 = 2;
    pub const ERR: u32 = 3;
    pub const REQ: u32 = 4;
}

/// Vectors per index we keep at most (the MSI-X maximum).
pub const MAX_VECTORS: u32 = 2048;

#[derive(Default, Debug)]
struct Vector {
    trigger: Option<Arc<File>>,
    /// INTx only: the resample eventfd QEMU passes with UNMASK|EVENTFD (KVM signals it on EOI).
    resample: Option<Arc<File>>,
    masked: bool,
}

#[derive(Debug)]
struct Shared {
    table: [RwLock<Vec<Vector>>; NUM_IRQS],
    detached: AtomicBool,
    fired: AtomicU64,
    suppressed: AtomicU64,
    failed: AtomicU64,
    /// What the client holds through this table (its eventfds), against its limits.
    account: Arc<Account>,
}

/// Counters of an [`Interrupts`] handle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IrqCounters {
    /// Eventfd written.
    pub fired: u64,
    /// `fire` on a vector with no eventfd, masked, out of range, or after detach.
    pub suppressed: u64,
    /// The eventfd write failed.
    pub failed: u64,
}

/// The function's interrupt lines: per index, per vector, the eventfd the client gave in
/// SET_IRQS. Cheap to clone, `Send + Sync`, usable from any thread.
///
/// Firing a vector is one 8-byte write of 1 to its eventfd (with KVM that is an irqfd, so the
/// interrupt goes straight into the guest). The table is behind a `RwLock`: `fire` takes a read
/// lock, so any number of threads (another VF's datapath included) fire concurrently; SET_IRQS
/// takes the write lock briefly to swap fds. Fds are set non-blocking on receipt so that a bad fd
/// (a full pipe instead of an eventfd) can never block the firing thread; QEMU's eventfds are
/// non-blocking already.
#[derive(Clone, Debug)]
pub struct Interrupts {
    shared: Arc<Shared>,
}

/// Why a SET_IRQS request was refused (mapped to EINVAL / EOPNOTSUPP by the server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SetIrqsError {
    Invalid(&'static str),
    NotSupported(&'static str),
    /// The client would keep more fds than its limit allows.
    Limit,
}

impl Interrupts {
    /// A table with `counts[index]` vectors per index (at most [`MAX_VECTORS`]), all without
    /// eventfd.
    #[cfg(test)]
    pub(crate) fn new(counts: [u32; NUM_IRQS]) -> Interrupts {
        Interrupts::accounted(counts, Arc::new(Account::unlimited()))
    }

    /// [`Interrupts::new`], with the eventfds counted in (and limited by) `account`.
    pub(crate) fn accounted(counts: [u32; NUM_IRQS], account: Arc<Account>) -> Interrupts {
        let table = counts.map(|n| {
            let mut v = Vec::new();
            v.resize_with(n.min(MAX_VECTORS) as usize, Vector::default);
            RwLock::new(v)
        });
        Interrupts {
            shared: Arc::new(Shared {
                table,
                detached: AtomicBool::new(false),
                fired: AtomicU64::new(0),
                suppressed: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                account,
            }),
        }
    }

    /// Signal `vector` of irq `index` ([`index::MSIX`] for the data path). Returns whether an
    /// eventfd was written. Absent, masked or out-of-range vectors are a counted no-op. An INTx
    /// assertion auto-masks the line until the client unmasks it (level-triggered semantics).
    pub fn fire(&self, index: u32, vector: u32) -> bool {
        let s = &self.shared;
        if s.detached.load(Ordering::Acquire) {
            s.suppressed.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let Some(lock) = s.table.get(index as usize) else {
            s.suppressed.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        let fd = {
            let t = lock.read().unwrap_or_else(|e| e.into_inner());
            match t.get(vector as usize) {
                Some(Vector {
                    trigger: Some(fd),
                    masked: false,
                    ..
                }) => Some(fd.clone()),
                _ => None,
            }
        };
        let Some(fd) = fd else {
            s.suppressed.fetch_add(1, Ordering::Relaxed);
            trace!(index, vector, "interrupt suppressed");
            return false;
        };
        if index == index::INTX {
            let mut t = lock.write().unwrap_or_else(|e| e.into_inner());
            if let Some(v) = t.get_mut(vector as usize) {
                v.masked = true;
            }
        }
        match (&*fd).write(&1u64.to_ne_bytes()) {
            Ok(8) => {
                s.fired.fetch_add(1, Ordering::Relaxed);
                trace!(index, vector, "interrupt fired");
                true
            }
            _ => {
                s.failed.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Whether `fire(index, vector)` would signal an eventfd now.
    pub fn is_enabled(&self, index: u32, vector: u32) -> bool {
        if self.shared.detached.load(Ordering::Acquire) {
            return false;
        }
        self.shared.table.get(index as usize).is_some_and(|l| {
            let t = l.read().unwrap_or_else(|e| e.into_inner());
            matches!(
                t.get(vector as usize),
                Some(Vector {
                    trigger: Some(_),
                    masked: false,
                    ..
                })
            )
        })
    }

    /// Number of vectors of `index` (from the function's info).
    pub fn count(&self, index: u32) -> u32 {
        self.shared.table.get(index as usize).map_or(0, |l| {
            l.read().unwrap_or_else(|e| e.into_inner()).len() as u32
        })
    }

    pub fn counters(&self) -> IrqCounters {
        let s = &self.shared;
        IrqCounters {
            fired: s.fired.load(Ordering::Relaxed),
            suppressed: s.suppressed.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
        }
    }

    /// Drop every eventfd and make `fire` a no-op from now on.
    pub(crate) fn detach(&self) {
        self.shared.detached.store(true, Ordering::Release);
        for lock in &self.shared.table {
            let mut t = lock.write().unwrap_or_else(|e| e.into_inner());
            t.iter_mut().for_each(|v| *v = Vector::default());
        }
        self.shared.account.irq_fds.store(0, Ordering::Relaxed);
    }

    /// Whether replacing `replaced` of the table's eventfds by `incoming` ones keeps the client
    /// within its fd limit.
    fn check_fds(&self, replaced: usize, incoming: usize) -> Result<(), SetIrqsError> {
        let account = &self.shared.account;
        let now = account.irq_fds.load(Ordering::Relaxed);
        let after = (now + incoming as u64).saturating_sub(replaced as u64);
        account
            .check_irq_fds(now, after)
            .map_err(|_| SetIrqsError::Limit)
    }

    /// Updates the account's eventfd gauge from the table.
    fn recount(&self) {
        let held = self.held();
        self.shared.account.irq_fds.store(held, Ordering::Relaxed);
    }

    /// Eventfds the table holds.
    fn held(&self) -> u64 {
        let per_index = |l: &RwLock<Vec<Vector>>| {
            let t = l.read().unwrap_or_else(|e| e.into_inner());
            t.iter()
                .map(|v| u64::from(v.trigger.is_some()) + u64::from(v.resample.is_some()))
                .sum::<u64>()
        };
        self.shared.table.iter().map(per_index).sum()
    }

    /// Apply one SET_IRQS. `index` is already checked; `fds` are the message's fds (the server
    /// checked there are no more than `count`).
    pub(crate) fn set_irqs(
        &self,
        index: u32,
        flags: u32,
        start: u32,
        count: u32,
        fds: Vec<OwnedFd>,
    ) -> Result<(), SetIrqsError> {
        use vfio_bindings::bindings::vfio::*;
        use SetIrqsError::*;
        let data = flags & VFIO_IRQ_SET_DATA_TYPE_MASK;
        let action = flags & VFIO_IRQ_SET_ACTION_TYPE_MASK;
        if flags & !(VFIO_IRQ_SET_DATA_TYPE_MASK | VFIO_IRQ_SET_ACTION_TYPE_MASK) != 0 {
            return Err(Invalid("unknown flag bits"));
        }
        if !data.is_power_of_two() || !action.is_power_of_two() {
            return Err(Invalid("need exactly one data type and one action"));
        }
        if data == VFIO_IRQ_SET_DATA_BOOL {
            return Err(NotSupported("DATA_BOOL"));
        }
        if data == VFIO_IRQ_SET_DATA_NONE && !fds.is_empty() {
            return Err(Invalid("fds with DATA_NONE"));
        }
        if !fds.iter().all(is_eventfd) {
            return Err(Invalid("an fd that is not an eventfd"));
        }
        let lock = self
            .shared
            .table
            .get(index as usize)
            .ok_or(Invalid("irq index"))?;
        let mut t = lock.write().unwrap_or_else(|e| e.into_inner());

        // "Disable the index": count 0 with TRIGGER (QEMU sends DATA_NONE; we accept any data).
        if count == 0 {
            if action == VFIO_IRQ_SET_ACTION_TRIGGER {
                if !fds.is_empty() {
                    return Err(Invalid("fds with count 0"));
                }
                t.iter_mut().for_each(|v| *v = Vector::default());
                drop(t);
                self.recount();
            }
            return Ok(());
        }
        let end = start
            .checked_add(count)
            .filter(|&e| e as usize <= t.len())
            .ok_or(Invalid("start + count beyond the index's vectors"))?;
        let range = start as usize..end as usize;

        match (data, action) {
            (VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_ACTION_TRIGGER) => {
                // QEMU sends runs of "no eventfd" vectors as a message with a count and no fds.
                if !fds.is_empty() && fds.len() != count as usize {
                    return Err(Invalid("fd count neither 0 nor count"));
                }
                let replaced = t[range.clone()]
                    .iter()
                    .filter(|v| v.trigger.is_some())
                    .count();
                self.check_fds(replaced, fds.len())?;
                if fds.is_empty() {
                    t[range].iter_mut().for_each(|v| v.trigger = None);
                } else {
                    for (v, fd) in t[range].iter_mut().zip(fds) {
                        v.trigger = Some(Arc::new(nonblocking(fd)));
                        v.masked = false;
                    }
                }
                drop(t);
                self.recount();
            }
            (VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_ACTION_UNMASK) => {
                if index != index::INTX {
                    return Err(NotSupported("unmask eventfd outside INTx"));
                }
                if !fds.is_empty() && fds.len() != count as usize {
                    return Err(Invalid("fd count neither 0 nor count"));
                }
                let replaced = t[range.clone()]
                    .iter()
                    .filter(|v| v.resample.is_some())
                    .count();
                self.check_fds(replaced, fds.len())?;
                let mut fds = fds.into_iter();
                for v in &mut t[range] {
                    v.resample = fds.next().map(|fd| Arc::new(nonblocking(fd)));
                }
                drop(t);
                self.recount();
            }
            (VFIO_IRQ_SET_DATA_EVENTFD, _) => return Err(NotSupported("mask eventfd")),
            (_, VFIO_IRQ_SET_ACTION_MASK) => t[range].iter_mut().for_each(|v| v.masked = true),
            (_, VFIO_IRQ_SET_ACTION_UNMASK) => t[range].iter_mut().for_each(|v| v.masked = false),
            (_, _) => {
                // DATA_NONE|TRIGGER with a count: loopback-fire those vectors.
                drop(t);
                for v in range {
                    self.fire(index, v as u32);
                }
            }
        }
        Ok(())
    }
}

/// Whether `fd` is an eventfd: an anonymous inode (no file type bits) that `/proc` names
/// `anon_inode:[eventfd]`. Interrupts are written to these fds and they are kept while the
/// client is attached, so nothing else may be taken: a socket kept here could be the client's
/// own end of the connection, and the server would then never see it close.
fn is_eventfd(fd: &OwnedFd) -> bool {
    // SAFETY: fstat into a zeroed struct we own, on an fd we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 || st.st_mode & libc::S_IFMT != 0 {
        return false;
    }
    match std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())) {
        Ok(target) => target.as_os_str() == "anon_inode:[eventfd]",
        // Without /proc, an anonymous inode (eventfd, timerfd, signalfd, epoll...) is the best
        // we can tell; none of those keeps a socket open.
        Err(_) => true,
    }
}

fn nonblocking(fd: OwnedFd) -> File {
    // SAFETY: fcntl on an fd we own; no memory is involved.
    unsafe {
        let raw = fd.as_raw_fd();
        let fl = libc::fcntl(raw, libc::F_GETFL);
        if fl >= 0 {
            libc::fcntl(raw, libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
    }
    File::from(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vfio_bindings::bindings::vfio::*;
    use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

    fn efd() -> (EventFd, OwnedFd) {
        use std::os::fd::FromRawFd;
        let e = EventFd::new(EFD_NONBLOCK).unwrap();
        // SAFETY: dup returns a fresh fd that we own from here on.
        let owned = unsafe { OwnedFd::from_raw_fd(libc::dup(e.as_raw_fd())) };
        (e, owned)
    }

    const TRIG_FD: u32 = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;

    #[test]
    fn fire_writes_the_vectors_eventfd_and_counts_the_rest() {
        let irqs = Interrupts::new([0, 0, 3, 1, 0]);
        let (e, fd) = efd();
        irqs.set_irqs(index::MSIX, TRIG_FD, 1, 1, vec![fd]).unwrap();
        assert!(irqs.fire(index::MSIX, 1));
        assert_eq!(e.read().unwrap(), 1);
        assert!(!irqs.fire(index::MSIX, 0));
        assert!(!irqs.fire(index::MSIX, 7));
        assert!(!irqs.fire(9, 0));
        assert_eq!(
            irqs.counters(),
            IrqCounters {
                fired: 1,
                suppressed: 3,
                failed: 0
            }
        );
    }

    #[test]
    fn fd_less_run_clears_vectors_and_count_zero_disables() {
        let irqs = Interrupts::new([0, 0, 3, 0, 0]);
        let (_e0, f0) = efd();
        let (_e1, f1) = efd();
        irqs.set_irqs(index::MSIX, TRIG_FD, 0, 2, vec![f0, f1])
            .unwrap();
        assert!(irqs.is_enabled(index::MSIX, 1));
        irqs.set_irqs(index::MSIX, TRIG_FD, 1, 1, vec![]).unwrap();
        assert!(!irqs.is_enabled(index::MSIX, 1));
        assert!(irqs.is_enabled(index::MSIX, 0));
        let none_trig = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER;
        irqs.set_irqs(index::MSIX, none_trig, 0, 0, vec![]).unwrap();
        assert!(!irqs.is_enabled(index::MSIX, 0));
    }

    #[test]
    fn replacing_one_vector_keeps_the_others() {
        let irqs = Interrupts::new([0, 0, 3, 0, 0]);
        let (e0, f0) = efd();
        let (e1, f1) = efd();
        irqs.set_irqs(index::MSIX, TRIG_FD, 0, 1, vec![f0]).unwrap();
        irqs.set_irqs(index::MSIX, TRIG_FD, 0, 1, vec![f1]).unwrap();
        irqs.fire(index::MSIX, 0);
        assert_eq!(e1.read().unwrap(), 1);
        assert!(e0.read().is_err());
    }

    #[test]
    fn bad_requests_are_refused() {
        let irqs = Interrupts::new([1, 0, 3, 0, 0]);
        let (_e, f) = efd();
        assert!(irqs.set_irqs(index::MSIX, TRIG_FD, 2, 2, vec![]).is_err());
        assert!(irqs
            .set_irqs(index::MSIX, TRIG_FD, u32::MAX, 2, vec![])
            .is_err());
        let (_e2, f2) = efd();
        assert!(irqs
            .set_irqs(index::MSIX, TRIG_FD, 0, 3, vec![f, f2])
            .is_err());
        assert!(irqs
            .set_irqs(
                index::MSIX,
                VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER,
                0,
                1,
                vec![]
            )
            .is_err());
        assert!(irqs.set_irqs(index::MSIX, 0, 0, 1, vec![]).is_err());
    }

    #[test]
    fn intx_resample_fd_does_not_replace_trigger_and_assert_automasks() {
        let irqs = Interrupts::new([1, 0, 0, 0, 0]);
        let (e, f) = efd();
        let (_r, rf) = efd();
        irqs.set_irqs(index::INTX, TRIG_FD, 0, 1, vec![f]).unwrap();
        let unmask_fd = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_UNMASK;
        irqs.set_irqs(index::INTX, unmask_fd, 0, 1, vec![rf])
            .unwrap();
        assert!(irqs.fire(index::INTX, 0));
        assert!(!irqs.fire(index::INTX, 0), "auto-masked after assertion");
        let unmask = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK;
        irqs.set_irqs(index::INTX, unmask, 0, 1, vec![]).unwrap();
        assert!(irqs.fire(index::INTX, 0));
        assert_eq!(e.read().unwrap(), 2);
    }
}
