//! Wire faults: frames of one port and direction dropped, corrupted or duplicated, for a
//! probability (with a seed, so a run can be replayed) or every Nth frame. The datapath asks
//! [`WireFaults::apply`] for each frame a port sends into the switch (TX) and each copy the
//! switch delivers to a port (RX).

use std::fmt;

use bytes::{Bytes, BytesMut};
use eswitch::PortId;

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
        let action = match self.action {
            WireAction::Drop => "drop",
            WireAction::Corrupt => "corrupt",
            WireAction::Duplicate => "duplicate",
        };
        match self.every {
            Every::Percent { percent, seed } => {
                write!(f, "{} {dir} {action} {percent}% seed {seed}", self.port)
            }
            Every::Nth(n) => write!(f, "{} {dir} {action} every {n}", self.port),
        }
    }
}

/// A fault `ctl fault` injects on one port of the card.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The PF driver reset, as `vf` (or every VF) sees it ([`crate::Nic::notify_pf_reset`]).
    PfReset { vf: Option<u16> },
    /// The port's cable pulled (`up: false`) or plugged back.
    Link { up: bool },
    /// A wire fault armed.
    Wire(WireFault),
    /// Every wire fault off.
    Clear,
}

impl Fault {
    /// `pf-reset [vf N]`, `link down|up`, `wire ...` ([`WireFault::parse`]) or `clear`, on a
    /// port whose switch has `ports`.
    pub fn parse(words: &[&str], ports: &[PortId]) -> Result<Fault, String> {
        match words {
            ["pf-reset"] => Ok(Fault::PfReset { vf: None }),
            ["pf-reset", "vf", n] => match n.parse::<u16>() {
                Ok(v) if ports.contains(&PortId::Vf(v)) => Ok(Fault::PfReset { vf: Some(v) }),
                _ => Err(format!(
                    "pf-reset vf {n}: no such VF (ports: {})",
                    names(ports)
                )),
            },
            ["link", "down"] => Ok(Fault::Link { up: false }),
            ["link", "up"] => Ok(Fault::Link { up: true }),
            ["wire", spec @ ..] => WireFault::parse(spec, ports)
                .map(Fault::Wire)
                .map_err(|e| format!("wire: {e}")),
            ["clear"] => Ok(Fault::Clear),
            _ => Err(format!(
                "{:?}: expected `pf-reset [vf N]`, `link down|up`, `wire ...` or `clear`",
                words.join(" ")
            )),
        }
    }
}

impl WireFault {
    /// `PORT rx|tx drop|corrupt|duplicate N% [seed S]` or `PORT rx|tx ACTION every N`, with
    /// PORT one of `ports` (`vf0`, `pf`, `uplink0`, ...).
    pub fn parse(words: &[&str], ports: &[PortId]) -> Result<WireFault, String> {
        let usage = "expected PORT rx|tx drop|corrupt|duplicate (N% [seed S] | every N)";
        let [port, dir, action, rest @ ..] = words else {
            return Err(usage.into());
        };
        let port = *ports
            .iter()
            .find(|p| p.to_string() == *port)
            .ok_or_else(|| format!("no port {port:?} (ports: {})", names(ports)))?;
        let direction = match *dir {
            "rx" => Direction::Rx,
            "tx" => Direction::Tx,
            d => return Err(format!("direction {d:?}: rx or tx")),
        };
        let action = match *action {
            "drop" => WireAction::Drop,
            "corrupt" => WireAction::Corrupt,
            "duplicate" => WireAction::Duplicate,
            a => return Err(format!("action {a:?}: drop, corrupt or duplicate")),
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

fn names(ports: &[PortId]) -> String {
    ports
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
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

/// A fault and its counts, for reports.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct WireFaultReport {
    pub fault: String,
    /// Frames that crossed the port in its direction while it was armed.
    pub seen: u64,
    /// Frames it dropped, corrupted or duplicated.
    pub fired: u64,
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

    pub fn report(&self) -> Vec<WireFaultReport> {
        self.armed
            .iter()
            .map(|a| WireFaultReport {
                fault: a.fault.to_string(),
                seen: a.seen,
                fired: a.fired,
            })
            .collect()
    }

    /// The frames `frame` becomes on `port` going `direction`, and whether a fault fired.
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
        let action = a.fault.action;
        let out = match action {
            WireAction::Drop => Vec::new(),
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
    fn the_words_of_ctl_fault_parse_or_say_what_is_wrong() {
        let ports = [PortId::Uplink(0), PortId::Pf, PortId::Vf(0), PortId::Vf(1)];
        let p = |s: &str| Fault::parse(&s.split(' ').collect::<Vec<_>>(), &ports);
        assert_eq!(p("pf-reset"), Ok(Fault::PfReset { vf: None }));
        assert_eq!(p("pf-reset vf 1"), Ok(Fault::PfReset { vf: Some(1) }));
        assert_eq!(p("link down"), Ok(Fault::Link { up: false }));
        assert_eq!(p("clear"), Ok(Fault::Clear));
        assert!(matches!(p("wire vf0 tx drop every 2"), Ok(Fault::Wire(_))));
        for (bad, why) in [
            ("pf-reset vf 2", "no such VF"),
            ("pf-reset vf x", "no such VF"),
            ("link sideways", "expected"),
            ("wire vf9 rx drop 5%", "wire: no port"),
            ("", "expected"),
        ] {
            let e = p(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
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
