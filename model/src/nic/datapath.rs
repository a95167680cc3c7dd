//! Switching and delivery: frames from a port through the switch to their destinations, the
//! RX backlogs, and the observer.

use bytes::Bytes;
use eswitch::{Deliveries, Delivery, DropReason, DropRecord, PortId};
use tracing::{debug, warn};

use super::{lock, DynFunction, Hosted, Nic, Pending, BACKLOG_FRAMES};
use crate::function::i82576::Vf;
use crate::function::stats::RxDrop;
use crate::seams::Switched;

impl Nic {
    /// Switches `frames` sent by `ingress`, in order, and delivers every copy. The PF side is
    /// locked once for the batch and released before any delivery.
    pub(super) fn switch_frames(&self, ingress: PortId, frames: Vec<Bytes>) {
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
        let mut rx_full: Vec<PortId> = Vec::new();
        for (sent, mut out) in switched {
            let before = out.drops.len();
            for d in &out.deliveries {
                if !self.deliver(d) {
                    out.drops.push(DropRecord {
                        port: d.port,
                        reason: DropReason::RxFull,
                    });
                }
            }
            rx_full.extend(out.drops[before..].iter().map(|d| d.port));
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
        if !rx_full.is_empty() {
            let mut side = self.pf.side();
            for port in rx_full {
                let _ = side.switch_mut().count_drop(port, DropReason::RxFull);
            }
        }
    }

    /// Hands one copy to its port. `false`: dropped for want of room (`rx_full`).
    fn deliver(&self, d: &Delivery) -> bool {
        let tci = d.stripped_tci.map(|t| t.0);
        match d.port {
            PortId::Vf(_) => self.deliver_into::<Vf>(d.port, &d.frame, tci),
            PortId::Pf if self.pf_driven() => {
                self.deliver_into::<DynFunction>(d.port, &d.frame, tci)
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
                let (result, f) = s.func.receive(frame, stripped_tci);
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
