//! DMA faults a function's queues suffer on demand: the next N descriptor or buffer accesses of
//! one queue fail as an access to an address outside the client's memory would (the queue
//! engines then do what they do for a bad address: a descriptor fault stops the queue, a
//! buffer fault drops that packet — see the RX and TX engines). Armed and cleared by the NIC
//! runtime (`ctl fault dma ...`); a function carries them and asks before each access.

use std::fmt;

use tracing::info;

/// Which ring of a function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QueueDir {
    Rx,
    Tx,
}

/// Which kind of access fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DmaTarget {
    /// Descriptor fetches and write-backs.
    Descriptor,
    /// Packet (and header) buffers.
    Buffer,
}

/// The next `count` accesses of `target` kind by queue `queue` of direction `dir` fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaFault {
    pub dir: QueueDir,
    pub queue: u16,
    pub target: DmaTarget,
    pub count: u32,
}

impl fmt::Display for DmaFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = match self.dir {
            QueueDir::Rx => "rx",
            QueueDir::Tx => "tx",
        };
        let target = match self.target {
            DmaTarget::Descriptor => "desc",
            DmaTarget::Buffer => "buffer",
        };
        write!(f, "{dir} queue {} {target} fail {}", self.queue, self.count)
    }
}

#[derive(Clone, Debug)]
struct Armed {
    fault: DmaFault,
    fired: u32,
}

/// The armed DMA faults of one function (usually none: then every check is one branch).
#[derive(Clone, Debug, Default)]
pub struct DmaFaults {
    armed: Vec<Armed>,
}

/// An armed DMA fault and how far it has gone, for reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaFaultState {
    pub fault: DmaFault,
    /// Accesses failed so far; the fault is spent at `fault.count`.
    pub fired: u32,
}

impl DmaFaults {
    /// Arms `fault`, replacing one on the same queue and target.
    pub fn arm(&mut self, fault: DmaFault) {
        self.armed.retain(|a| !same_place(&a.fault, &fault));
        self.armed.push(Armed { fault, fired: 0 });
    }

    /// Disarms every fault; returns how many were armed.
    pub fn clear(&mut self) -> usize {
        std::mem::take(&mut self.armed).len()
    }

    /// The armed faults, spent ones included (until cleared).
    pub fn report(&self) -> Vec<DmaFaultState> {
        self.armed
            .iter()
            .map(|a| DmaFaultState {
                fault: a.fault,
                fired: a.fired,
            })
            .collect()
    }

    /// Whether this access must fail (and counts it if so). Called before each access.
    #[inline]
    pub fn fail(&mut self, dir: QueueDir, queue: usize, target: DmaTarget) -> bool {
        if self.armed.is_empty() {
            return false;
        }
        self.fail_slow(dir, queue, target)
    }

    #[cold]
    fn fail_slow(&mut self, dir: QueueDir, queue: usize, target: DmaTarget) -> bool {
        let hit = self.armed.iter_mut().find(|a| {
            a.fault.dir == dir
                && usize::from(a.fault.queue) == queue
                && a.fault.target == target
                && a.fired < a.fault.count
        });
        match hit {
            Some(a) => {
                a.fired += 1;
                info!(fault = %a.fault, fired = a.fired, "fault fired: DMA access failed");
                true
            }
            None => false,
        }
    }
}

fn same_place(a: &DmaFault, b: &DmaFault) -> bool {
    (a.dir, a.queue, a.target) == (b.dir, b.queue, b.target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fails_exactly_the_next_n_accesses_of_its_queue_and_kind() {
        let mut f = DmaFaults::default();
        assert!(!f.fail(QueueDir::Tx, 0, DmaTarget::Descriptor));
        f.arm(DmaFault {
            dir: QueueDir::Tx,
            queue: 0,
            target: DmaTarget::Descriptor,
            count: 2,
        });
        assert!(
            !f.fail(QueueDir::Rx, 0, DmaTarget::Descriptor),
            "other ring"
        );
        assert!(
            !f.fail(QueueDir::Tx, 1, DmaTarget::Descriptor),
            "other queue"
        );
        assert!(!f.fail(QueueDir::Tx, 0, DmaTarget::Buffer), "other kind");
        let hits: Vec<bool> = (0..4)
            .map(|_| f.fail(QueueDir::Tx, 0, DmaTarget::Descriptor))
            .collect();
        assert_eq!(hits, [true, true, false, false]);
        assert_eq!(f.report()[0].fired, 2);
        assert_eq!(f.clear(), 1);
        assert!(f.report().is_empty());
    }
}
