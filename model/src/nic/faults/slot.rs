//! Faults of one hosted function, kept with it under its lock: its MSI-X messages lost or
//! delayed on the way to the client, and its RX delivery held (RX starvation). Pure: time
//! comes in as nanoseconds.

use tracing::info;

use super::{fmt_duration, FaultReport, IrqFault};
use crate::function::Fire;

#[derive(Debug)]
struct ArmedIrq {
    fault: IrqFault,
    seen: u64,
    fired: u64,
    /// Vectors held back by a delay, and when they go out.
    held: Fire,
    due: Option<u64>,
}

#[derive(Debug)]
struct RxHold {
    ns: u64,
    until: u64,
    /// Frames that arrived while held (kept in the backlog, or dropped when it was full).
    seen: u64,
}

/// The armed faults of one function.
#[derive(Debug, Default)]
pub(crate) struct SlotFaults {
    irq: Option<ArmedIrq>,
    rx_hold: Option<RxHold>,
}

impl SlotFaults {
    pub fn arm_irq(&mut self, fault: IrqFault) -> Fire {
        let released = self.irq.take().map_or(Fire::NONE, |a| a.held);
        self.irq = Some(ArmedIrq {
            fault,
            seen: 0,
            fired: 0,
            held: Fire::NONE,
            due: None,
        });
        released
    }

    pub fn arm_rx_hold(&mut self, ns: u64, now: u64) {
        self.rx_hold = Some(RxHold {
            ns,
            until: now.saturating_add(ns),
            seen: 0,
        });
    }

    /// Disarms everything; returns how many faults were armed and the vectors a delay held
    /// (to be signalled now). The caller drains the RX backlog.
    pub fn clear(&mut self) -> (usize, Fire) {
        let held = self.irq.as_ref().map_or(Fire::NONE, |a| a.held);
        let n = usize::from(self.irq.take().is_some()) + usize::from(self.rx_hold.take().is_some());
        (n, held)
    }

    pub fn is_empty(&self) -> bool {
        self.irq.is_none() && self.rx_hold.is_none()
    }

    /// What of `fire` reaches the client now (a lost message is gone, a delayed one held),
    /// and how many messages were lost.
    pub fn filter_irq(&mut self, fire: Fire, now: u64) -> (Fire, u64) {
        let Some(a) = self.irq.as_mut() else {
            return (fire, 0);
        };
        let n = fire.vectors().count() as u64;
        a.seen += n;
        match a.fault {
            IrqFault::Lose { count } => {
                let mut out = Fire::NONE;
                let mut lost = 0;
                for v in fire.vectors() {
                    if a.fired < u64::from(count) {
                        a.fired += 1;
                        lost += 1;
                        info!(
                            vector = v,
                            fired = a.fired,
                            "fault fired: MSI-X message lost"
                        );
                    } else {
                        out = out.union(Fire::from_bits(1 << v));
                    }
                }
                (out, lost)
            }
            IrqFault::Delay { ns } => {
                a.fired += n;
                a.held = a.held.union(fire);
                a.due.get_or_insert(now.saturating_add(ns));
                (Fire::NONE, 0)
            }
        }
    }

    /// Whether RX delivery is held at `now` (and counts the frame that asked).
    pub fn rx_held(&mut self, now: u64) -> bool {
        match self.rx_hold.as_mut() {
            Some(h) if now < h.until => {
                h.seen += 1;
                true
            }
            _ => false,
        }
    }

    /// Whether RX delivery is held at `now`, without counting.
    pub fn rx_holding(&self, now: u64) -> bool {
        self.rx_hold.as_ref().is_some_and(|h| now < h.until)
    }

    /// At `now`: the delayed vectors that are due, and whether an RX hold ended (the caller
    /// drains the backlog then). An ended hold is disarmed.
    pub fn on_timer(&mut self, now: u64) -> (Fire, bool) {
        let mut fire = Fire::NONE;
        if let Some(a) = self.irq.as_mut() {
            if a.due.is_some_and(|d| d <= now) {
                fire = std::mem::take(&mut a.held);
                a.due = None;
            }
        }
        let ended = self.rx_hold.as_ref().is_some_and(|h| h.until <= now);
        if ended {
            if let Some(h) = self.rx_hold.take() {
                info!(held_frames = h.seen, "RX hold ended");
            }
        }
        (fire, ended)
    }

    /// When [`SlotFaults::on_timer`] next has something to do.
    pub fn next_wakeup(&self) -> Option<u64> {
        let irq = self.irq.as_ref().and_then(|a| a.due);
        let hold = self.rx_hold.as_ref().map(|h| h.until);
        match (irq, hold) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn report(&self, port: &str) -> Vec<FaultReport> {
        let mut out = Vec::new();
        if let Some(a) = &self.irq {
            out.push(FaultReport {
                fault: format!("irq {port} {}", a.fault),
                seen: a.seen,
                fired: a.fired,
            });
        }
        if let Some(h) = &self.rx_hold {
            out.push(FaultReport {
                fault: format!("rx-hold {port} {}", fmt_duration(h.ns)),
                seen: h.seen,
                fired: h.seen,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(n: u32) -> Fire {
        Fire::from_bits(1 << n)
    }

    #[test]
    fn lose_drops_exactly_the_next_n_messages() {
        let mut f = SlotFaults::default();
        assert_eq!(f.filter_irq(v(0), 0), (v(0), 0), "nothing armed");
        let _ = f.arm_irq(IrqFault::Lose { count: 2 });
        assert_eq!(f.filter_irq(v(0).union(v(1)), 0), (Fire::NONE, 2));
        assert_eq!(f.filter_irq(v(2), 0), (v(2), 0));
        let r = &f.report("vf0")[0];
        assert_eq!(
            (r.fault.as_str(), r.seen, r.fired),
            ("irq vf0 lose 2", 3, 2)
        );
    }

    #[test]
    fn a_delayed_message_goes_out_when_its_time_comes_or_when_cleared() {
        let mut f = SlotFaults::default();
        let _ = f.arm_irq(IrqFault::Delay { ns: 100 });
        assert_eq!(f.filter_irq(v(0), 10), (Fire::NONE, 0));
        assert_eq!(f.filter_irq(v(1), 50), (Fire::NONE, 0));
        assert_eq!(f.next_wakeup(), Some(110));
        assert_eq!(f.on_timer(109), (Fire::NONE, false));
        assert_eq!(f.on_timer(110), (v(0).union(v(1)), false));
        assert_eq!(f.next_wakeup(), None);
        assert_eq!(f.filter_irq(v(2), 200), (Fire::NONE, 0));
        assert_eq!(f.clear(), (1, v(2)), "clearing releases what was held");
        assert_eq!(f.filter_irq(v(2), 300), (v(2), 0));
    }

    #[test]
    fn an_rx_hold_lasts_its_time_then_ends_once() {
        let mut f = SlotFaults::default();
        f.arm_rx_hold(1_000, 500);
        assert!(f.rx_held(600));
        assert!(f.rx_holding(1_499));
        assert_eq!(f.next_wakeup(), Some(1_500));
        assert_eq!(f.report("vf1")[0].fault, "rx-hold vf1 1us");
        assert!(!f.rx_held(1_500));
        assert_eq!(f.on_timer(1_500), (Fire::NONE, true));
        assert!(f.is_empty());
    }
}
