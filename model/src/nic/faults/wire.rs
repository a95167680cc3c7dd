//! Wire faults: frames of one port and direction dropped, corrupted, duplicated, reordered or
//! delayed, for a probability (with a seed, so a run can be replayed) or every Nth frame. The
//! datapath asks [`WireFaults::apply`] for each frame a port sends into the switch (TX) and each
//! copy the switch delivers to a port (RX); it holds the frames a reorder or delay takes and
//! sends them on after the next frame (reorder) or when the runtime's timer says (delay).

use std::fmt;

use bytes::{Bytes, BytesMut};
use eswitch::PortId;
use tracing::debug;

use super::FaultReport;

/// Which way a frame crosses the port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the port's function (or wire) into the switch.
    Tx,
    /// From the switch to the port.
    Rx,
}

/// What happens to a frame the fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireAction {
    Drop,
    /// One payload bit (after the Ethernet header) flipped.
    Corrupt,
    /// Delivered twice.
    Duplicate,
    /// Held and sent after the next frame of the port and direction (at most
    /// [`REORDER_HOLD_NS`] later).
    Reorder,
    /// Held for `ns`.
    Delay {
        ns: u64,
    },
}

/// The longest a reordered frame waits for a frame to overtake it.
pub const REORDER_HOLD_NS: u64 = 10_000_000;

impl WireAction {
    /// Whether the frame is held back (to be sent later) rather than dropped or passed.
    pub fn holds(self) -> bool {
        matches!(self, WireAction::Reorder | WireAction::Delay { .. })
    }
}

impl fmt::Display for WireAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireAction::Drop => f.write_str("drop"),
            WireAction::Corrupt => f.write_str("corrupt"),
            WireAction::Duplicate => f.write_str("duplicate"),
            WireAction::Reorder => f.write_str("reorder"),
            WireAction::Delay { ns } => write!(f, "delay {}", super::fmt_duration(*ns)),
        }
    }
}

/// Which frames the fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Every {
    /// Each frame with this probability (percent, 1..=100), from a seeded generator.
    Percent { percent: u8, seed: u64 },
    /// Every Nth frame (N ≥ 1).
    Nth(u32),
}

/// One armed wire fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireFault {
    pub port: PortId,
    pub direction: Direction,
    pub action: WireAction,
    pub every: Every,
}

impl fmt::Display for WireFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = match self.direction {
            Direction::Tx => "tx",
            Direction::Rx => "rx",
        };
        let action = self.action;
        match self.every {
            Every::Percent { percent, seed } => {
                write!(f, "{} {dir} {action} {percent}% seed {seed}", self.port)
            }
            Every::Nth(n) => write!(f, "{} {dir} {action} every {n}", self.port),
        }
    }
}

impl WireFault {
    /// `PORT rx|tx ACTION N% [seed S]` or `PORT rx|tx ACTION every N`, with PORT one of
    /// `ports` (`vf0`, `pf`, `uplink0`, ...) and ACTION `drop`, `corrupt`, `duplicate`,
    /// `reorder` or `delay D`.
    pub fn parse(words: &[&str], ports: &[PortId]) -> Result<WireFault, String> {
        let usage =
            "expected PORT rx|tx drop|corrupt|duplicate|reorder|delay D (N% [seed S] | every N)";
        let [port, dir, action, rest @ ..] = words else {
            return Err(usage.into());
        };
        let port = super::find_port(port, ports)?;
        let direction = match *dir {
            "rx" => Direction::Rx,
            "tx" => Direction::Tx,
            d => return Err(format!("direction {d:?}: rx or tx")),
        };
        let (action, rest) = match (*action, rest) {
            ("drop", rest) => (WireAction::Drop, rest),
            ("corrupt", rest) => (WireAction::Corrupt, rest),
            ("duplicate", rest) => (WireAction::Duplicate, rest),
            ("reorder", rest) => (WireAction::Reorder, rest),
            ("delay", [d, rest @ ..]) => (
                WireAction::Delay {
                    ns: super::duration(d)?,
                },
                rest,
            ),
            (a, _) => {
                return Err(format!(
                    "action {a:?}: drop, corrupt, duplicate, reorder or delay D"
                ))
            }
        };
        let every = match rest {
            ["every", n] => match n.parse::<u32>() {
                Ok(n) if n >= 1 => Every::Nth(n),
                _ => return Err(format!("every {n:?}: a number from 1")),
            },
            [pct, tail @ ..] if pct.ends_with('%') => {
                let percent = match pct.trim_end_matches('%').parse::<u8>() {
                    Ok(p) if (1..=100).contains(&p) => p,
                    _ => return Err(format!("{pct}: 1% to 100%")),
                };
                let seed = match tail {
                    [] => 1,
                    ["seed", s] => s.parse().map_err(|_| format!("seed {s:?}: a number"))?,
                    _ => return Err(usage.into()),
                };
                Every::Percent { percent, seed }
            }
            _ => return Err(usage.into()),
        };
        Ok(WireFault {
            port,
            direction,
            action,
            every,
        })
    }
}

/// An armed fault and what it has done.
#[derive(Clone, Debug)]
struct Armed {
    fault: WireFault,
    rng: u64,
    seen: u64,
    fired: u64,
}

/// The wire faults of one port of the card.
#[derive(Debug, Default)]
pub struct WireFaults {
    armed: Vec<Armed>,
}

impl WireFaults {
    /// Arms `fault`, replacing one on the same port and direction.
    pub fn arm(&mut self, fault: WireFault) {
        self.armed
            .retain(|a| (a.fault.port, a.fault.direction) != (fault.port, fault.direction));
        let rng = match fault.every {
            Every::Percent { seed, .. } => seed,
            Every::Nth(_) => 0,
        };
        self.armed.push(Armed {
            fault,
            rng,
            seen: 0,
            fired: 0,
        });
    }

    /// Clears every wire fault; returns how many were armed.
    pub fn clear(&mut self) -> usize {
        std::mem::take(&mut self.armed).len()
    }

    pub fn is_empty(&self) -> bool {
        self.armed.is_empty()
    }

    pub fn report(&self) -> Vec<FaultReport> {
        self.armed
            .iter()
            .map(|a| FaultReport {
                fault: format!("wire {}", a.fault),
                seen: a.seen,
                fired: a.fired,
            })
            .collect()
    }

    /// The frames `frame` becomes on `port` going `direction`, and whether a fault fired. A
    /// fault that [holds](WireAction::holds) the frame returns it unchanged: the caller keeps
    /// it back.
    pub fn apply(
        &mut self,
        port: PortId,
        direction: Direction,
        frame: Bytes,
    ) -> (Vec<Bytes>, Option<WireAction>) {
        let Some(a) = self
            .armed
            .iter_mut()
            .find(|a| a.fault.port == port && a.fault.direction == direction)
        else {
            return (vec![frame], None);
        };
        a.seen += 1;
        let hit = match a.fault.every {
            Every::Nth(n) => a.seen % u64::from(n.max(1)) == 0,
            Every::Percent { percent, .. } => next(&mut a.rng) % 100 < u64::from(percent),
        };
        if !hit {
            return (vec![frame], None);
        }
        a.fired += 1;
        debug!(fault = %a.fault, fired = a.fired, "fault fired");
        let action = a.fault.action;
        let out = match action {
            WireAction::Drop => Vec::new(),
            WireAction::Reorder | WireAction::Delay { .. } => vec![frame],
            WireAction::Duplicate => vec![frame.clone(), frame],
            WireAction::Corrupt => {
                let mut f = BytesMut::from(&frame[..]);
                if f.len() > 14 {
                    let r = next(&mut a.rng);
                    let at = 14 + (r as usize) % (f.len() - 14);
                    f[at] ^= 1 << ((r >> 32) % 8);
                }
                vec![f.freeze()]
            }
        };
        (out, Some(action))
    }
}

/// splitmix64.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: u8) -> Bytes {
        Bytes::from(vec![n; 64])
    }

    #[test]
    fn the_words_of_ctl_fault_wire_parse_or_say_what_is_wrong() {
        let ports = [PortId::Uplink(0), PortId::Pf, PortId::Vf(0), PortId::Vf(1)];
        let p = |s: &str| WireFault::parse(&s.split(' ').collect::<Vec<_>>(), &ports);
        assert_eq!(
            p("vf1 rx drop 10% seed 7"),
            Ok(WireFault {
                port: PortId::Vf(1),
                direction: Direction::Rx,
                action: WireAction::Drop,
                every: Every::Percent {
                    percent: 10,
                    seed: 7
                },
            })
        );
        assert_eq!(
            p("uplink0 tx duplicate every 3").unwrap().every,
            Every::Nth(3)
        );
        assert_eq!(
            p("pf rx corrupt 100%").unwrap().to_string(),
            "pf rx corrupt 100% seed 1"
        );
        for (bad, why) in [
            ("vf2 rx drop 10%", "no port \"vf2\""),
            ("vf0 up drop 10%", "direction"),
            ("vf0 rx eat 10%", "action"),
            ("vf0 rx drop 0%", "1% to 100%"),
            ("vf0 rx drop 101%", "1% to 100%"),
            ("vf0 rx drop every 0", "a number from 1"),
            ("vf0 rx drop 5% seed x", "seed"),
            ("vf0 rx", "expected"),
        ] {
            let e = p(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn every_nth_drops_exactly_those_and_only_on_its_port_and_direction() {
        let mut w = WireFaults::default();
        w.arm(WireFault {
            port: PortId::Vf(0),
            direction: Direction::Rx,
            action: WireAction::Drop,
            every: Every::Nth(3),
        });
        let kept: Vec<usize> = (0..9)
            .map(|i| w.apply(PortId::Vf(0), Direction::Rx, frame(i)).0.len())
            .collect();
        assert_eq!(kept, [1, 1, 0, 1, 1, 0, 1, 1, 0]);
        assert_eq!(w.apply(PortId::Vf(1), Direction::Rx, frame(0)).0.len(), 1);
        assert_eq!(w.apply(PortId::Vf(0), Direction::Tx, frame(0)).0.len(), 1);
        assert_eq!((w.report()[0].seen, w.report()[0].fired), (9, 3));
        assert_eq!(w.clear(), 1);
        assert_eq!(w.apply(PortId::Vf(0), Direction::Rx, frame(0)).0.len(), 1);
    }

    #[test]
    fn a_percentage_is_replayable_from_its_seed_and_near_its_rate() {
        let run = |seed| {
            let mut w = WireFaults::default();
            w.arm(WireFault {
                port: PortId::Uplink(0),
                direction: Direction::Tx,
                action: WireAction::Drop,
                every: Every::Percent { percent: 10, seed },
            });
            (0..10_000)
                .map(|_| {
                    w.apply(PortId::Uplink(0), Direction::Tx, frame(1))
                        .1
                        .is_some()
                })
                .collect::<Vec<bool>>()
        };
        let (a, b) = (run(7), run(7));
        assert_eq!(a, b, "same seed, same frames");
        assert_ne!(a, run(8));
        let dropped = a.iter().filter(|&&d| d).count();
        assert!((900..1100).contains(&dropped), "{dropped} of 10000 at 10%");
    }

    #[test]
    fn corrupt_flips_one_payload_bit_and_duplicate_makes_two() {
        let mut w = WireFaults::default();
        w.arm(WireFault {
            port: PortId::Vf(2),
            direction: Direction::Rx,
            action: WireAction::Corrupt,
            every: Every::Nth(1),
        });
        let (out, _) = w.apply(PortId::Vf(2), Direction::Rx, frame(0));
        let diff: u32 = out[0].iter().map(|b| b.count_ones()).sum();
        assert_eq!(diff, 1);
        assert!(
            out[0][..14].iter().all(|&b| b == 0),
            "the header is left alone"
        );
        w.arm(WireFault {
            port: PortId::Vf(2),
            direction: Direction::Rx,
            action: WireAction::Duplicate,
            every: Every::Nth(1),
        });
        assert_eq!(w.report().len(), 1, "one fault per port and direction");
        assert_eq!(
            w.apply(PortId::Vf(2), Direction::Rx, frame(5)).0,
            vec![frame(5), frame(5)]
        );
    }
}
