//! Switching and delivery: frames from a port through the switch to their destinations, the
//! RX backlogs, and the observer.

use bytes::Bytes;
use eswitch::{Deliveries, Delivery, DropReason, DropRecord, PortId};
use tracing::{debug, warn};

use super::faults::{Direction, WireAction};
use super::{lock, DynFunction, Hosted, Nic, Pending, BACKLOG_FRAMES};
use crate::function::i82576::Vf;
use crate::function::stats::RxDrop;
use crate::function::Function;
use crate::function::Origin;
use crate::seams::Switched;

impl Nic {
    /// Switches `frames` sent by `ingress`, in order, and delivers every copy. The PF side is
    /// locked once for the batch and released before any delivery.
    pub(super) fn switch_frames(&self, ingress: PortId, frames: Vec<Bytes>) {
        let (frames, faulted) = self.tx_faults(ingress, frames);
        if faulted > 0 {
            let mut side = self.pf.side();
            for _ in 0..faulted {
                let _ = side.switch_mut().count_drop(ingress, DropReason::Fault);
            }
        }
        let now = self.now();
        let observer = self
            .observer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let switched: Vec<(Option<Bytes>, Deliveries)> = {
            let mut side = self.pf.side();
            let sw = side.switch_mut();
            frames
                .into_iter()
                .map(|f| {
                    let sent = observer.as_ref().map(|_| f.clone());
                    (sent, sw.process(ingress, f))
                })
                .collect()
        };
        let origin = match ingress {
            PortId::Uplink(_) => Origin::Wire,
            _ => Origin::Local,
        };
        let mut rx_full: Vec<PortId> = Vec::new();
        // Frames (and their bytes) the switch looped back to this port's functions.
        let mut looped = (0u64, 0u64);
        for (sent, mut out) in switched {
            let before = out.drops.len();
            if let Some(d) = out
                .deliveries
                .iter()
                .find(|d| matches!(d.port, PortId::Vf(_) | PortId::Pf))
            {
                looped.0 += 1;
                looped.1 += d.frame.len() as u64;
            }
            let mut faulted = Vec::new();
            let armed = self.wire_armed();
            for d in &out.deliveries {
                if !armed {
                    if !self.deliver(d, origin) {
                        out.drops.push(DropRecord {
                            port: d.port,
                            reason: DropReason::RxFull,
                        });
                    }
                    continue;
                }
                for copy in self.rx_faults(d) {
                    let Some(copy) = copy else {
                        faulted.push(d.port);
                        continue;
                    };
                    if !self.deliver(&copy, origin) {
                        out.drops.push(DropRecord {
                            port: d.port,
                            reason: DropReason::RxFull,
                        });
                    }
                }
            }
            rx_full.extend(out.drops[before..].iter().map(|d| d.port));
            if !faulted.is_empty() {
                let mut side = self.pf.side();
                for &port in &faulted {
                    let _ = side.switch_mut().count_drop(port, DropReason::Fault);
                }
            }
            out.drops.extend(faulted.into_iter().map(|port| DropRecord {
                port,
                reason: DropReason::Fault,
            }));
            if let (Some(o), Some(frame)) = (&observer, &sent) {
                o.switched(&Switched {
                    time_ns: now,
                    ingress,
                    frame,
                    deliveries: &out.deliveries,
                    drops: &out.drops,
                });
            }
        }
        if looped.0 > 0 {
            self.count_tx_loopback(ingress, looped);
        }
        if !rx_full.is_empty() {
            let mut side = self.pf.side();
            for port in rx_full {
                let _ = side.switch_mut().count_drop(port, DropReason::RxFull);
            }
        }
    }

    /// `frames` after the TX wire fault of `ingress`, if one is armed, and how many it dropped.
    fn tx_faults(&self, ingress: PortId, frames: Vec<Bytes>) -> (Vec<Bytes>, usize) {
        if !self.wire_armed() {
            return (frames, 0);
        }
        let mut faults = lock(&self.wire_faults);
        let mut out = Vec::with_capacity(frames.len());
        let mut dropped = 0;
        for f in frames {
            let (copies, fired) = faults.apply(ingress, Direction::Tx, f);
            dropped += usize::from(fired == Some(WireAction::Drop));
            out.extend(copies);
        }
        (out, dropped)
    }

    /// Whether a wire fault is armed (without taking the faults' lock).
    fn wire_armed(&self) -> bool {
        self.wire_armed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The copies to hand to `d`'s port after its RX wire fault: `None` for a dropped one.
    fn rx_faults(&self, d: &Delivery) -> Vec<Option<Delivery>> {
        let mut faults = lock(&self.wire_faults);
        let (copies, fired) = faults.apply(d.port, Direction::Rx, d.frame.clone());
        if fired == Some(WireAction::Drop) {
            return vec![None];
        }
        copies
            .into_iter()
            .map(|frame| Some(Delivery { frame, ..d.clone() }))
            .collect()
    }

    /// Tells the function behind `ingress` how many of its frames were looped back.
    fn count_tx_loopback(&self, ingress: PortId, (packets, bytes): (u64, u64)) {
        match ingress {
            PortId::Vf(_) => {
                if let Some(slot) = Vf::slot(self, ingress) {
                    lock(slot).func.count_tx_loopback(packets, bytes);
                }
            }
            PortId::Pf if self.pf_driven() => {
                if let Some(slot) = DynFunction::slot(self, ingress) {
                    lock(slot).func.count_tx_loopback(packets, bytes);
                }
            }
            _ => {}
        }
    }

    /// Hands one copy to its port. `false`: dropped for want of room (`rx_full`).
    fn deliver(&self, d: &Delivery, origin: Origin) -> bool {
        let tci = d.stripped_tci.map(|t| t.0);
        match d.port {
            PortId::Vf(_) => self.deliver_into::<Vf>(d.port, &d.frame, tci, origin),
            PortId::Pf if self.pf_driven() => {
                self.deliver_into::<DynFunction>(d.port, &d.frame, tci, origin)
            }
            port => {
                let sink = self
                    .sinks
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&port)
                    .cloned();
                match sink {
                    Some(s) => s.deliver(d),
                    None => *lock(&self.unclaimed).entry(port).or_default() += 1,
                }
                true
            }
        }
    }

    /// Whether a client drives the hosted PF function, which then owns the PF port's frames.
    fn pf_driven(&self) -> bool {
        self.pf_fn.get().is_some_and(|s| lock(s).attached())
    }

    /// Into the RX ring of the function behind `port`, or its backlog when the ring is full.
    /// `false` when the backlog is full too: the frame is dropped (counted by the function as
    /// `backlog_overflow`).
    pub(super) fn deliver_into<F: Hosted>(
        &self,
        port: PortId,
        frame: &Bytes,
        stripped_tci: Option<u16>,
        origin: Origin,
    ) -> bool {
        let Some(slot) = F::slot(self, port) else {
            warn!(%port, "delivery to a function this NIC does not have");
            return true;
        };
        let (taken, irq) = {
            let mut s = lock(slot);
            let mut fire = crate::function::Fire::NONE;
            // Frames already waiting go first: a new one waits behind them.
            let wait = if s.backlog.is_empty() {
                let (result, f) = s.func.receive(frame, stripped_tci, origin);
                fire = f;
                // Delivered, or dropped and counted by the function (not attached, queue off...).
                result == Err(RxDrop::RingFull)
            } else {
                true
            };
            let taken = if !wait {
                true
            } else if s.backlog.len() < BACKLOG_FRAMES {
                s.backlog.push_back(Pending {
                    frame: frame.clone(),
                    stripped_tci,
                    origin,
                });
                true
            } else {
                s.func.count_backlog_drop();
                debug!(%port, "RX ring and backlog full: frame dropped (rx_full)");
                false
            };
            (taken, s.signal(fire))
        };
        if let Some((sink, fire)) = irq {
            for vector in fire.vectors() {
                sink.fire(vector);
            }
        }
        taken
    }
}
