//! Injected faults: the error paths of a driver that no real card takes on demand. One
//! grammar ([`Fault::parse`], the words of `sriov-emu ctl fault ...` and of a scenario's
//! `fault` step) names each fault and its target; the NIC runtime carries it out
//! ([`crate::Nic::inject_fault`]):
//!
//! - `pf-reset [vf N]`: the PF driver's reset as the VFs see it;
//! - `link [PORT] down|up|flap PERIOD [count N]`: the card's wire (no PORT, or `uplink0`:
//!   what VFs in `state auto` follow), or one port's own carrier (`pf`, `vfN`, `uplinkN`);
//! - `wire PORT rx|tx ACTION (N% [seed S] | every N)` ([`WireFault`]);
//! - `mailbox vfN drop|nack|delay D`: the PF's handling of that VF's mailbox;
//! - `dma PORT rx|tx desc|buffer N [queue Q]`: the next N accesses fail as a bad address would;
//! - `irq PORT lose N | delay D`: the function's next N MSI-X messages lost, or each held D;
//! - `rx-hold PORT D`: nothing is written into the function's RX ring for D (its backlog
//!   fills, then frames drop as `rx_full`);
//! - `clear`: every fault off, and what they held back released at once.
//!
//! Durations are `Nms`, `Nus` or `Ns`.

use std::fmt;

use eswitch::PortId;

use crate::function::faults::{DmaFault, DmaTarget, QueueDir};

mod slot;
mod wire;

pub(super) use slot::SlotFaults;
pub use wire::{Direction, Every, WireAction, WireFault, WireFaults, REORDER_HOLD_NS};

/// A fault and what it has done, for reports (`ctl show`, scenario reports).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FaultReport {
    /// The fault in the words that arm it.
    pub fault: String,
    /// The events it looked at while armed (frames, mailbox events, interrupts, accesses).
    pub seen: u64,
    /// The ones it acted on (dropped, held, lost, failed, toggled...).
    pub fired: u64,
}

/// What a link fault does to its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkChange {
    Down,
    Up,
    /// Down, then up after `period_ns`, then down again..., `count` times down (or until
    /// cleared).
    Flap {
        period_ns: u64,
        count: Option<u32>,
    },
}

/// The PF's handling of one VF's mailbox, faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailboxFault {
    /// Requests are taken and never answered: the VF's wait for the PF's ACK times out.
    Drop,
    /// Every request is answered with NACK, nothing is acted on.
    Nack,
    /// The PF services the mailbox `ns` after the VF posted (a busy PF driver).
    Delay { ns: u64 },
}

/// A function's MSI-X messages, faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqFault {
    /// The next `count` messages are lost on the way (the device sent them).
    Lose { count: u32 },
    /// Each message arrives `ns` late.
    Delay { ns: u64 },
}

/// A fault `ctl fault` injects on one port of the card.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The PF driver reset, as `vf` (or every VF) sees it ([`crate::Nic::notify_pf_reset`]).
    PfReset {
        vf: Option<u16>,
    },
    /// `port`'s link (`None`: the card's wire, the PF link).
    Link {
        port: Option<PortId>,
        change: LinkChange,
    },
    /// A wire fault armed.
    Wire(WireFault),
    Mailbox {
        vf: u16,
        fault: MailboxFault,
    },
    Dma {
        port: PortId,
        fault: DmaFault,
    },
    Irq {
        port: PortId,
        fault: IrqFault,
    },
    RxHold {
        port: PortId,
        ns: u64,
    },
    /// Every fault off.
    Clear,
}

const USAGE: &str = "expected `pf-reset [vf N]`, `link [PORT] down|up|flap PERIOD [count N]`, \
     `wire PORT ...`, `mailbox vfN drop|nack|delay D`, `dma PORT rx|tx desc|buffer N [queue Q]`, \
     `irq PORT lose N|delay D`, `rx-hold PORT D` or `clear`";

impl Fault {
    /// The words of `ctl fault`, on a port whose switch has `ports`.
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
            ["link", rest @ ..] => parse_link(rest, ports).map_err(|e| format!("link: {e}")),
            ["wire", spec @ ..] => WireFault::parse(spec, ports)
                .map(Fault::Wire)
                .map_err(|e| format!("wire: {e}")),
            ["mailbox", port, action @ ..] => {
                parse_mailbox(port, action, ports).map_err(|e| format!("mailbox: {e}"))
            }
            ["dma", port, rest @ ..] => {
                let port = function_port(port, ports).map_err(|e| format!("dma: {e}"))?;
                let fault = parse_dma(rest).map_err(|e| format!("dma: {e}"))?;
                Ok(Fault::Dma { port, fault })
            }
            ["irq", port, rest @ ..] => {
                let port = function_port(port, ports).map_err(|e| format!("irq: {e}"))?;
                let fault = match rest {
                    ["lose", n] => IrqFault::Lose {
                        count: count(n).map_err(|e| format!("irq: {e}"))?,
                    },
                    ["delay", d] => IrqFault::Delay {
                        ns: duration(d).map_err(|e| format!("irq: {e}"))?,
                    },
                    _ => return Err("irq: expected `irq PORT lose N` or `irq PORT delay D`".into()),
                };
                Ok(Fault::Irq { port, fault })
            }
            ["rx-hold", port, d] => {
                let port = function_port(port, ports).map_err(|e| format!("rx-hold: {e}"))?;
                let ns = duration(d).map_err(|e| format!("rx-hold: {e}"))?;
                Ok(Fault::RxHold { port, ns })
            }
            ["clear"] => Ok(Fault::Clear),
            _ => Err(format!("{:?}: {USAGE}", words.join(" "))),
        }
    }
}

fn parse_link(words: &[&str], ports: &[PortId]) -> Result<Fault, String> {
    let (port, rest) = match words {
        [p, rest @ ..] if !matches!(*p, "down" | "up" | "flap") => {
            let port = find_port(p, ports)?;
            // uplink0 is the card's wire: the PF link every VF in `auto` follows.
            let port = (port != PortId::Uplink(0)).then_some(port);
            (port, rest)
        }
        rest => (None, rest),
    };
    let change = match rest {
        ["down"] => LinkChange::Down,
        ["up"] => LinkChange::Up,
        ["flap", period, tail @ ..] => {
            let period_ns = duration(period)?;
            let count = match tail {
                [] => None,
                ["count", n] => Some(self::count(n)?),
                _ => return Err("expected `flap PERIOD [count N]`".into()),
            };
            LinkChange::Flap { period_ns, count }
        }
        _ => {
            return Err(
                "expected `[PORT] down`, `[PORT] up` or `[PORT] flap PERIOD [count N]`".into(),
            )
        }
    };
    Ok(Fault::Link { port, change })
}

fn parse_mailbox(port: &str, action: &[&str], ports: &[PortId]) -> Result<Fault, String> {
    let vf = match find_port(port, ports)? {
        PortId::Vf(v) => v,
        p => return Err(format!("{p} has no mailbox: a VF (vf0, vf1, ...)")),
    };
    let fault = match action {
        ["drop"] => MailboxFault::Drop,
        ["nack"] => MailboxFault::Nack,
        ["delay", d] => MailboxFault::Delay { ns: duration(d)? },
        _ => return Err("expected `drop`, `nack` or `delay D`".into()),
    };
    Ok(Fault::Mailbox { vf, fault })
}

fn parse_dma(words: &[&str]) -> Result<DmaFault, String> {
    let usage = "expected `rx|tx desc|buffer N [queue Q]`";
    let [dir, target, n, tail @ ..] = words else {
        return Err(usage.into());
    };
    let dir = match *dir {
        "rx" => QueueDir::Rx,
        "tx" => QueueDir::Tx,
        d => return Err(format!("direction {d:?}: rx or tx")),
    };
    let target = match *target {
        "desc" => DmaTarget::Descriptor,
        "buffer" => DmaTarget::Buffer,
        t => return Err(format!("{t:?}: desc or buffer")),
    };
    let count = count(n)?;
    let queue = match tail {
        [] => 0,
        ["queue", q] => q
            .parse()
            .map_err(|_| format!("queue {q:?}: a queue number (0 to 65535)"))?,
        _ => return Err(usage.into()),
    };
    Ok(DmaFault {
        dir,
        queue,
        target,
        count,
    })
}

/// A port with a function behind it: `pf` or a VF.
fn function_port(word: &str, ports: &[PortId]) -> Result<PortId, String> {
    match find_port(word, ports)? {
        p @ (PortId::Pf | PortId::Vf(_)) => Ok(p),
        p => Err(format!("{p} is not a function: pf or a VF")),
    }
}

fn find_port(word: &str, ports: &[PortId]) -> Result<PortId, String> {
    ports
        .iter()
        .find(|p| p.to_string() == word)
        .copied()
        .ok_or_else(|| format!("no port {word:?} (ports: {})", names(ports)))
}

fn count(word: &str) -> Result<u32, String> {
    match word.parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{word:?}: a number from 1")),
    }
}

/// `250ms`, `500us`, `2s` (at most an hour) in nanoseconds.
pub fn duration(word: &str) -> Result<u64, String> {
    let err = || format!("{word:?}: a duration such as 250ms, 500us or 2s");
    let (num, unit) = if let Some(n) = word.strip_suffix("ms") {
        (n, 1_000_000)
    } else if let Some(n) = word.strip_suffix("us") {
        (n, 1_000)
    } else if let Some(n) = word.strip_suffix('s') {
        (n, 1_000_000_000)
    } else {
        return Err(err());
    };
    let n: u64 = num.parse().map_err(|_| err())?;
    match n.checked_mul(unit) {
        Some(ns) if ns > 0 && ns <= 3_600_000_000_000 => Ok(ns),
        _ => Err(err()),
    }
}

/// A duration as the words that give it.
pub fn fmt_duration(ns: u64) -> String {
    if ns.is_multiple_of(1_000_000_000) {
        format!("{}s", ns / 1_000_000_000)
    } else if ns.is_multiple_of(1_000_000) {
        format!("{}ms", ns / 1_000_000)
    } else {
        format!("{}us", ns / 1_000)
    }
}

pub(crate) fn names(ports: &[PortId]) -> String {
    ports
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for MailboxFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MailboxFault::Drop => f.write_str("drop"),
            MailboxFault::Nack => f.write_str("nack"),
            MailboxFault::Delay { ns } => write!(f, "delay {}", fmt_duration(*ns)),
        }
    }
}

impl fmt::Display for IrqFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IrqFault::Lose { count } => write!(f, "lose {count}"),
            IrqFault::Delay { ns } => write!(f, "delay {}", fmt_duration(*ns)),
        }
    }
}

impl fmt::Display for LinkChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkChange::Down => f.write_str("down"),
            LinkChange::Up => f.write_str("up"),
            LinkChange::Flap { period_ns, count } => {
                write!(f, "flap {}", fmt_duration(*period_ns))?;
                match count {
                    Some(n) => write!(f, " count {n}"),
                    None => Ok(()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PORTS: [PortId; 4] = [PortId::Uplink(0), PortId::Pf, PortId::Vf(0), PortId::Vf(1)];

    fn p(s: &str) -> Result<Fault, String> {
        Fault::parse(&s.split(' ').collect::<Vec<_>>(), &PORTS)
    }

    #[test]
    fn the_words_of_ctl_fault_parse_or_say_what_is_wrong() {
        assert_eq!(p("pf-reset"), Ok(Fault::PfReset { vf: None }));
        assert_eq!(p("pf-reset vf 1"), Ok(Fault::PfReset { vf: Some(1) }));
        assert_eq!(
            p("link down"),
            Ok(Fault::Link {
                port: None,
                change: LinkChange::Down
            })
        );
        assert_eq!(
            p("link uplink0 up"),
            p("link up"),
            "uplink0 is the card's wire"
        );
        assert_eq!(
            p("link vf1 flap 500ms count 3"),
            Ok(Fault::Link {
                port: Some(PortId::Vf(1)),
                change: LinkChange::Flap {
                    period_ns: 500_000_000,
                    count: Some(3)
                }
            })
        );
        assert_eq!(p("clear"), Ok(Fault::Clear));
        assert!(matches!(p("wire vf0 tx drop every 2"), Ok(Fault::Wire(_))));
        assert_eq!(
            p("mailbox vf1 delay 2s"),
            Ok(Fault::Mailbox {
                vf: 1,
                fault: MailboxFault::Delay { ns: 2_000_000_000 }
            })
        );
        assert_eq!(
            p("mailbox vf0 nack"),
            Ok(Fault::Mailbox {
                vf: 0,
                fault: MailboxFault::Nack
            })
        );
        assert_eq!(
            p("dma vf0 tx desc 3"),
            Ok(Fault::Dma {
                port: PortId::Vf(0),
                fault: DmaFault {
                    dir: QueueDir::Tx,
                    queue: 0,
                    target: DmaTarget::Descriptor,
                    count: 3
                }
            })
        );
        assert!(matches!(
            p("dma pf rx buffer 1 queue 2"),
            Ok(Fault::Dma { port: PortId::Pf, fault }) if fault.queue == 2
        ));
        assert_eq!(
            p("irq vf1 lose 4"),
            Ok(Fault::Irq {
                port: PortId::Vf(1),
                fault: IrqFault::Lose { count: 4 }
            })
        );
        assert_eq!(
            p("rx-hold vf0 250ms"),
            Ok(Fault::RxHold {
                port: PortId::Vf(0),
                ns: 250_000_000
            })
        );
        for (bad, why) in [
            ("pf-reset vf 2", "no such VF"),
            ("pf-reset vf x", "no such VF"),
            ("link sideways", "link: no port"),
            ("link vf0 sideways", "link: expected"),
            ("link flap 0ms", "a duration"),
            ("link flap 10ms count 0", "a number from 1"),
            ("wire vf9 rx drop 5%", "wire: no port"),
            ("mailbox pf drop", "has no mailbox"),
            ("mailbox vf0 eat", "expected"),
            ("mailbox vf0 delay 5", "a duration"),
            ("dma uplink0 rx desc 1", "not a function"),
            ("dma vf0 up desc 1", "direction"),
            ("dma vf0 rx ring 1", "desc or buffer"),
            ("dma vf0 rx desc 0", "a number from 1"),
            ("irq vf0 lose", "expected"),
            ("irq vf0 delay 2h", "a duration"),
            ("rx-hold vf7 1s", "no port"),
            ("", "expected"),
        ] {
            let e = p(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn durations_read_and_print_in_the_same_words() {
        for (w, ns) in [
            ("250ms", 250_000_000),
            ("500us", 500_000),
            ("2s", 2_000_000_000),
        ] {
            assert_eq!(duration(w), Ok(ns));
            assert_eq!(fmt_duration(ns), w);
        }
        for bad in ["", "ms", "1", "-1s", "0s", "5000s", "1.5s"] {
            assert!(duration(bad).is_err(), "{bad}");
        }
    }
}
