//! Each function's timer: a rate-limited VF's paused TX queue resumes at the time its shaper named,
//! and an interrupt held back by moderation (VTEITR) fires when its interval ends; and the
//! timer of the NIC's injected faults (flapping links, held frames, delayed mailbox services).
//! [`Nic::wake`] is the one place that does either; it runs from [`Nic::poll`] (the timer
//! thread, or a scenario moving simulated time) and after a guest's own register write once the
//! deadline has passed (on a busy host the guest's next TDT or interrupt re-arm often comes
//! before the timer thread is scheduled).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use eswitch::PortId;

use super::{lock, DynFunction, Hosted, Nic, Slot, NO_DEADLINE};
use crate::function::card_vf::CardVf;

impl Nic {
    /// Where the deadline of the function behind `port` is kept.
    fn deadline(&self, port: PortId) -> Option<&AtomicU64> {
        let i = match port {
            PortId::Vf(v) => usize::from(v),
            PortId::Pf => self.slots.len(),
            _ => return None,
        };
        self.deadlines.get(i)
    }

    /// The port whose deadline is kept at `i`.
    fn deadline_port(&self, i: usize) -> PortId {
        if i < self.slots.len() {
            PortId::Vf(i as u16)
        } else {
            PortId::Pf
        }
    }

    pub(super) fn set_deadline(&self, port: PortId, until_ns: u64) {
        let Some(d) = self.deadline(port) else {
            return;
        };
        if d.fetch_min(until_ns, Ordering::AcqRel) <= until_ns {
            return;
        }
        let (m, cv) = &self.timer_wake;
        *lock(m) += 1;
        cv.notify_all();
    }

    /// Wakes the function behind `port` if its deadline has passed. Without a deadline (no
    /// held interrupt, no paused queue: most register writes) the clock is not read.
    pub(super) fn wake_if_due(&self, port: PortId) {
        let Some(d) = self.deadline(port) else {
            return;
        };
        let due = d.load(Ordering::Acquire);
        if due == NO_DEADLINE {
            return;
        }
        let now = self.now();
        if due <= now {
            self.wake_at(port, now);
        }
    }

    /// Runs the timer of the function behind `port`: resumes paused TX queues that are due
    /// (and switches what they send), fires held interrupts whose interval ended.
    fn wake(&self, port: PortId) {
        self.wake_at(port, self.now());
    }

    /// [`Nic::wake`] at `now`, read before the deadline was claimed.
    fn wake_at(&self, port: PortId, now: u64) {
        let Some(d) = self.deadline(port) else {
            return;
        };
        let due = d.load(Ordering::Acquire);
        if due == NO_DEADLINE {
            return;
        }
        // Claim it; what is still waiting afterwards sets it again.
        if d.compare_exchange(due, NO_DEADLINE, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        match port {
            PortId::Pf => self.timer_of::<DynFunction>(port, now),
            _ => self.timer_of::<CardVf>(port, now),
        }
    }

    fn timer_of<F: Hosted>(&self, port: PortId, now: u64) {
        let _ = self.with_slot(port, |s: &mut Slot<F>| ((), s.on_timer(now)));
    }

    /// The earliest time (on the NIC's clock) a function needs its timer.
    pub fn next_wakeup(&self) -> Option<u64> {
        self.deadlines
            .iter()
            .chain(std::iter::once(&self.fault_deadline))
            .map(|d| d.load(Ordering::Acquire))
            .filter(|&d| d != NO_DEADLINE)
            .min()
    }

    /// Wakes every function whose deadline is at or before `now` (resumes due TX queues,
    /// fires held interrupts). Returns the next deadline.
    pub fn poll(&self, now: u64) -> Option<u64> {
        for (i, d) in self.deadlines.iter().enumerate() {
            if d.load(Ordering::Acquire) <= now {
                self.wake(self.deadline_port(i));
            }
        }
        if self.fault_deadline.load(Ordering::Acquire) <= now {
            self.fault_timer(now);
        }
        self.next_wakeup()
    }

    /// A thread that runs [`Nic::poll`] at each deadline. Only for a clock that advances at
    /// real time; scenarios with a simulated clock call `poll` themselves.
    pub fn spawn_timer(self: &Arc<Self>) -> std::io::Result<TimerHandle> {
        self.spawn_timer_with(|| {})
    }

    /// [`Nic::spawn_timer`], running `on_start` on the timer thread first (the binary raises
    /// the thread's scheduling priority there: a late wakeup beyond the shaper's burst window
    /// is bandwidth a shaped VF never gets back).
    pub fn spawn_timer_with(
        self: &Arc<Self>,
        on_start: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<TimerHandle> {
        let stop = Arc::new(AtomicBool::new(false));
        let (nic, st) = (self.clone(), stop.clone());
        // The thread logs where its spawner logs (the global subscriber unless the spawner set
        // one of its own: a scenario run collecting each step's lines).
        let dispatch = tracing::dispatcher::get_default(|d| d.clone());
        let thread = std::thread::Builder::new()
            .name("nic-timer".into())
            .spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    on_start();
                    nic.timer_loop(&st)
                })
            })?;
        Ok(TimerHandle {
            stop,
            nic: self.clone(),
            thread: Some(thread),
        })
    }

    fn timer_loop(&self, stop: &AtomicBool) {
        const IDLE: Duration = Duration::from_millis(100);
        let (m, cv) = &self.timer_wake;
        let mut seen = *lock(m);
        while !stop.load(Ordering::Acquire) {
            let next = self.poll(self.now());
            let wait = match next {
                Some(t) => Duration::from_nanos(t.saturating_sub(self.now())).min(IDLE),
                None => IDLE,
            };
            if wait.is_zero() {
                continue;
            }
            let g = lock(m);
            if *g != seen {
                seen = *g;
                continue;
            }
            let (g, _) = cv.wait_timeout(g, wait).unwrap_or_else(|e| e.into_inner());
            seen = *g;
        }
    }
}

/// Stops the timer thread when dropped.
pub struct TimerHandle {
    stop: Arc<AtomicBool>,
    nic: Arc<Nic>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for TimerHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let (m, cv) = &self.nic.timer_wake;
        *lock(m) += 1;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
