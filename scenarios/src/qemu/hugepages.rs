//! The kernel's pool of huge pages (`/proc/sys/vm/nr_hugepages`, pages of the default size),
//! for guests whose RAM is hugetlbfs-backed ([`super::GuestConfig::hugetlb`]): grown by what a
//! guest needs before it boots and shrunk back when the guest is gone. Growing the pool needs
//! root, as the end-to-end tests already do for their namespaces and TAP devices.

use std::sync::Mutex;

use super::HarnessError;

const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";
const COMPACT_MEMORY: &str = "/proc/sys/vm/compact_memory";

/// Read-modify-write of the pool is serialised within the process. The value: pages promised
/// to this process's live reservations, which their guests may not have taken yet (counted as
/// still needed, so that two guests starting together do not count the same free pages).
static POOL: Mutex<u64> = Mutex::new(0);

/// Huge pages promised to one user, and those added to the pool for it; dropping it takes the
/// added ones out again (pages still in use are freed by the kernel when their last user lets
/// go).
#[derive(Debug)]
pub struct Reservation {
    pages: u64,
    added: u64,
}

/// The pool's figures from `/proc/meminfo`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool {
    pub total: u64,
    pub free: u64,
    /// Promised to mappings that have not touched them yet: free, but not for us.
    pub reserved: u64,
    pub page_kib: u64,
}

impl Pool {
    /// Pages a new mapping can have.
    pub fn available(&self) -> u64 {
        self.free.saturating_sub(self.reserved)
    }
}

/// Parses the huge page lines of `/proc/meminfo`.
pub fn parse_meminfo(text: &str) -> Option<Pool> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
    };
    Some(Pool {
        total: field("HugePages_Total")?,
        free: field("HugePages_Free")?,
        reserved: field("HugePages_Rsvd")?,
        page_kib: field("Hugepagesize")?,
    })
}

fn pool() -> Result<Pool, HarnessError> {
    let text = std::fs::read_to_string("/proc/meminfo").map_err(|e| HarnessError::Io {
        what: "reading /proc/meminfo".into(),
        source: e,
    })?;
    parse_meminfo(&text).ok_or_else(|| HarnessError::Io {
        what: "/proc/meminfo".into(),
        source: std::io::Error::other("no HugePages_* lines: a kernel without hugetlbfs"),
    })
}

fn set_total(pages: u64) -> Result<(), HarnessError> {
    std::fs::write(NR_HUGEPAGES, pages.to_string()).map_err(|e| HarnessError::Io {
        what: format!("writing {pages} to {NR_HUGEPAGES} (growing the huge page pool needs root)"),
        source: e,
    })
}

/// The size of a huge page of the default size, in bytes.
pub fn page_bytes() -> Result<u64, HarnessError> {
    Ok(pool()?.page_kib * 1024)
}

/// Makes sure `pages` huge pages are available, growing the pool by the shortfall. Fails if
/// the kernel cannot find them (memory too fragmented or too small).
pub fn reserve(pages: u64) -> Result<Reservation, HarnessError> {
    let mut promised = POOL.lock().unwrap_or_else(|e| e.into_inner());
    let before = pool()?;
    let wanted = pages + *promised;
    let short = wanted.saturating_sub(before.available());
    if short == 0 {
        *promised += pages;
        return Ok(Reservation { pages, added: 0 });
    }
    set_total(before.total + short)?;
    let mut after = pool()?;
    if after.available() < wanted {
        // The kernel found too few free 2 MiB blocks: compact memory once and ask again.
        let _ = std::fs::write(COMPACT_MEMORY, "1");
        set_total(before.total + short)?;
        after = pool()?;
    }
    let added = after.total.saturating_sub(before.total);
    if after.available() < wanted {
        let _ = set_total(before.total);
        return Err(HarnessError::Io {
            what: format!("reserving {pages} huge pages of {} KiB", before.page_kib),
            source: std::io::Error::other(format!(
                "the kernel gave {added} of the {short} more asked for; {} available",
                after.available()
            )),
        });
    }
    *promised += pages;
    Ok(Reservation { pages, added })
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut promised = POOL.lock().unwrap_or_else(|e| e.into_inner());
        *promised = promised.saturating_sub(self.pages);
        if self.added == 0 {
            return;
        }
        if let Ok(now) = pool() {
            let _ = set_total(now.total.saturating_sub(self.added));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_is_read_from_meminfo() {
        let text = "MemTotal: 1 kB\nHugePages_Total:     700\nHugePages_Free:      638\n\
                    HugePages_Rsvd:        6\nHugePages_Surp:        0\nHugepagesize:       2048 kB\n";
        let p = parse_meminfo(text).unwrap();
        assert_eq!(
            p,
            Pool {
                total: 700,
                free: 638,
                reserved: 6,
                page_kib: 2048
            }
        );
        assert_eq!(p.available(), 632);
        assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None);
    }

    /// On this machine's kernel (root): two reservations held together are both backed, even
    /// before either's pages are taken, and the pool is as it was once both are dropped.
    #[test]
    fn reservations_held_together_each_get_their_pages_and_give_them_back() {
        let start = pool().unwrap();
        let a = reserve(2).unwrap();
        let b = reserve(3).unwrap();
        assert!(pool().unwrap().available() >= 5, "{:?}", pool().unwrap());
        drop(a);
        drop(b);
        let end = pool().unwrap();
        assert_eq!(end.total, start.total);
    }
}
