//! Switching and delivery: frames from a port through the switch to their destinations, the
//! RX backlogs, and the observer.

use bytes::Bytes;
use eswitch::{Deliveries, Delivery, DropReason, DropRecord, PortId};
use tracing::{debug, warn};

use super::{lock, Nic, Pending, BACKLOG_FRAMES};
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
        match d.port {
            PortId::Vf(v) => self.deliver_to_vf(v, &d.frame, d.stripped_tci.map(|t| t.0)),
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

    /// Into VF `v`'s RX ring, or its backlog when the ring is full. `false` when the backlog
    /// is full too: the frame is dropped (counted by the VF as `backlog_overflow`).
    pub(super) fn deliver_to_vf(&self, v: u16, frame: &Bytes, stripped_tci: Option<u16>) -> bool {
        let Some(slot) = self.slots.get(usize::from(v)) else {
            warn!(vf = v, "delivery to a VF this NIC does not have");
            return true;
        };
        let (taken, irq) = {
            let mut s = lock(slot);
            let mut fire = crate::function::Fire::NONE;
            // Frames already waiting go first: a new one waits behind them.
            let wait = if s.backlog.is_empty() {
                let (result, f) = s.vf.receive(frame, stripped_tci);
                fire = f;
                // Delivered, or dropped and counted by the VF (not attached, queue off...).
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
                s.vf.count_backlog_drop();
                debug!(vf = v, "RX ring and backlog full: frame dropped (rx_full)");
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
