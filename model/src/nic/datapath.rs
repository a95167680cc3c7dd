//! Switching and delivery: frames from a port through the switch to their destinations, the
//! RX backlogs, and the observer.

use bytes::Bytes;
use eswitch::{Deliveries, Delivery, DropReason, DropRecord, PortId};
use tracing::{debug, warn};

use super::faults::{Direction, WireAction, REORDER_HOLD_NS};
use super::inject::{Held, HeldFrame};
use super::{lock, DynFunction, Hosted, Nic, Pending, BACKLOG_FRAMES};
use crate::function::card_vf::CardVf;
use crate::function::rxcsum::L4Checksum;
use crate::function::Function;
use crate::function::{Fire, Origin, RxCopy, TxFrame};
use crate::seams::Switched;

impl Nic {
    /// Switches `frames` sent by `ingress`, in order, and delivers every copy. The PF side is
    /// locked once for the batch and released before any delivery.
    pub(super) fn switch_frames(&self, ingress: PortId, frames: Vec<Bytes>) {
        let (frames, faulted) = self.tx_faults(ingress, frames);
        if !faulted.is_empty() {
            {
                let mut side = self.pf.side();
                for _ in &faulted {
                    let _ = side.switch_mut().count_drop(ingress, DropReason::Fault);
                }
            }
            let observer = self
                .observer
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if let Some(o) = observer {
                let drops = [DropRecord {
                    port: ingress,
                    reason: DropReason::Fault,
                }];
                for frame in &faulted {
                    o.switched(&Switched {
                        time_ns: self.now(),
                        ingress,
                        frame,
                        deliveries: &[],
                        drops: &drops,
                    });
                }
            }
        }
        self.switch_past_faults(ingress, frames.into_iter().map(TxFrame::from).collect());
    }

    /// [`Nic::switch_frames`] for frames with what is known of their checksums (a function's
    /// TX engine's, or an injected frame's: nothing). A TX wire fault may change a frame's
    /// bytes: with one armed, nothing is known of them.
    pub(super) fn switch_tx(&self, ingress: PortId, frames: Vec<TxFrame>) {
        if self.wire_armed() {
            self.switch_frames(ingress, frames.into_iter().map(|f| f.bytes).collect());
        } else {
            self.switch_past_faults(ingress, frames);
        }
    }

    /// [`Nic::switch_frames`] for frames past `ingress`'s TX faults (and frames they held).
    pub(super) fn switch_past_faults(&self, ingress: PortId, frames: Vec<TxFrame>) {
        let observer = self
            .observer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        // The switching time is only the observer's: without one the clock is not read.
        let now = observer.as_ref().map_or(0, |_| self.now());
        let switched: Vec<Outcome> = {
            let mut side = self.pf.side();
            let sw = side.switch_mut();
            frames
                .into_iter()
                .map(|f| Outcome {
                    sent: observer.as_ref().map(|_| f.bytes.clone()),
                    out: sw.process(ingress, f.bytes),
                    l4_checksum: f.l4_checksum,
                })
                .collect()
        };
        let origin = match ingress {
            PortId::Uplink(_) => Origin::Wire,
            _ => Origin::Local,
        };
        let mut switched = switched;
        // The drops the switch gave each frame: delivery adds its own after them.
        let befores: Vec<usize> = switched.iter().map(|o| o.out.drops.len()).collect();
        let armed = self.wire_armed();
        if !armed {
            self.deliver_in_runs(&mut switched, origin);
        }
        let mut rx_full: Vec<PortId> = Vec::new();
        // Frames (and their bytes) the switch looped back to this port's functions.
        let mut looped = (0u64, 0u64);
        for (Outcome { sent, mut out, .. }, before) in switched.into_iter().zip(befores) {
            if let Some(d) = out
                .deliveries
                .iter()
                .find(|d| matches!(d.port, PortId::Vf(_) | PortId::Pf))
            {
                looped.0 += 1;
                looped.1 += d.frame.len() as u64;
            }
            let mut faulted = Vec::new();
            // With faults armed, the copies the ports got (or will get): what the observer sees.
            let mut handed: Vec<Delivery> = Vec::new();
            for d in out.deliveries.iter().filter(|_| armed) {
                let (copies, listed, dropped) = self.rx_faults(d, origin);
                if dropped {
                    faulted.push(d.port);
                }
                handed.extend(listed);
                for (copy, origin) in copies {
                    if !self.deliver(&copy, origin) {
                        out.drops.push(DropRecord {
                            port: d.port,
                            reason: DropReason::RxFull,
                        });
                    }
                }
            }
            if armed {
                out.deliveries = handed.into_iter().collect();
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

    /// Hands every frame's copies to their ports, in order, a run of copies to one function
    /// at a time: its lock, its memory and its interrupt taken once per run (the segments of
    /// a TSO packet make one run). A copy its port had no room for gets an `RxFull` drop in
    /// its frame's record.
    fn deliver_in_runs(&self, switched: &mut [Outcome], origin: Origin) {
        let mut full: Vec<(usize, PortId)> = Vec::new();
        {
            // Room for a copy of every frame: a TSO packet's segments make one run.
            let mut run = Run {
                port: None,
                copies: Vec::with_capacity(switched.len()),
                frames: Vec::with_capacity(switched.len()),
            };
            for (i, o) in switched.iter().enumerate() {
                for d in o.out.deliveries.iter() {
                    let function = match d.port {
                        PortId::Vf(_) => true,
                        PortId::Pf => self.pf_driven(),
                        _ => false,
                    };
                    if run.port != Some(d.port) || !function {
                        self.deliver_run(&mut run, &mut full);
                    }
                    if !function {
                        if !self.deliver(d, origin) {
                            full.push((i, d.port));
                        }
                        continue;
                    }
                    run.port = Some(d.port);
                    run.copies.push(RxCopy {
                        frame: &d.frame,
                        stripped_tci: d.stripped_tci.map(|t| t.0),
                        origin,
                        l4_checksum: o.l4_checksum,
                    });
                    run.frames.push(i);
                }
            }
            self.deliver_run(&mut run, &mut full);
        }
        for (i, port) in full {
            switched[i].out.drops.push(DropRecord {
                port,
                reason: DropReason::RxFull,
            });
        }
    }

    /// Hands `run` to its function and empties it; the frames of copies it had no room for
    /// go to `full`.
    fn deliver_run(&self, run: &mut Run<'_>, full: &mut Vec<(usize, PortId)>) {
        let Some(port) = run.port.take() else {
            return;
        };
        let taken = match port {
            PortId::Vf(_) => self.deliver_into::<CardVf>(port, &run.copies),
            _ => self.deliver_into::<DynFunction>(port, &run.copies),
        };
        full.extend(run.frames[taken..].iter().map(|&i| (i, port)));
        run.copies.clear();
        run.frames.clear();
    }

    /// `frames` after the TX wire fault of `ingress`, if one is armed, and the ones it dropped.
    /// Frames it holds are kept for later; frames held for reorder go right after the next
    /// frame that passes.
    fn tx_faults(&self, ingress: PortId, frames: Vec<Bytes>) -> (Vec<Bytes>, Vec<Bytes>) {
        if !self.wire_armed() {
            return (frames, Vec::new());
        }
        let now = self.now();
        let mut out = Vec::with_capacity(frames.len());
        let mut held = Vec::new();
        let mut dropped = Vec::new();
        let mut reordered: Vec<Bytes> = Vec::new();
        let mut first_pass = true;
        let mut faults = lock(&self.wire_faults);
        for f in frames {
            let (mut copies, fired) = faults.apply(ingress, Direction::Tx, f.clone());
            match fired {
                Some(WireAction::Drop) => dropped.push(f),
                Some(WireAction::Reorder) => reordered.extend(copies.pop()),
                Some(a @ WireAction::Delay { ns }) => {
                    if let Some(frame) = copies.pop() {
                        held.push(held_frame(
                            now,
                            ns,
                            ingress,
                            Direction::Tx,
                            a,
                            Held::Tx(frame),
                        ));
                    }
                }
                _ => {
                    out.extend(copies);
                    if first_pass {
                        first_pass = false;
                        drop(faults);
                        out.extend(
                            self.overtaken(ingress, Direction::Tx)
                                .into_iter()
                                .filter_map(|h| match h.payload {
                                    Held::Tx(f) => Some(f),
                                    Held::Rx(..) => None,
                                }),
                        );
                        faults = lock(&self.wire_faults);
                    }
                    out.append(&mut reordered);
                }
            }
        }
        drop(faults);
        held.extend(reordered.into_iter().map(|f| {
            held_frame(
                now,
                REORDER_HOLD_NS,
                ingress,
                Direction::Tx,
                WireAction::Reorder,
                Held::Tx(f),
            )
        }));
        self.hold(held);
        (out, dropped)
    }

    /// Whether a wire fault is armed (without taking the faults' lock).
    fn wire_armed(&self) -> bool {
        self.wire_armed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The copies to hand to `d`'s port now after its RX wire fault, the copies it gets of
    /// `d` (now or held for later: what the observer is told), and whether the fault dropped
    /// `d`. Copies held for reorder before go right after one that passes.
    fn rx_faults(
        &self,
        d: &Delivery,
        origin: Origin,
    ) -> (Vec<(Delivery, Origin)>, Vec<Delivery>, bool) {
        let (copies, fired) = {
            let mut faults = lock(&self.wire_faults);
            faults.apply(d.port, Direction::Rx, d.frame.clone())
        };
        let now = self.now();
        let with = |frame: Bytes| Delivery { frame, ..d.clone() };
        match fired {
            Some(WireAction::Drop) => (Vec::new(), Vec::new(), true),
            Some(a @ (WireAction::Reorder | WireAction::Delay { .. })) => {
                let ns = match a {
                    WireAction::Delay { ns } => ns,
                    _ => REORDER_HOLD_NS,
                };
                let listed: Vec<Delivery> = copies.into_iter().map(with).collect();
                let held = listed
                    .iter()
                    .map(|c| {
                        let payload = Held::Rx(c.clone(), origin);
                        held_frame(now, ns, d.port, Direction::Rx, a, payload)
                    })
                    .collect();
                self.hold(held);
                (Vec::new(), listed, false)
            }
            _ => {
                let listed: Vec<Delivery> = copies.into_iter().map(with).collect();
                let mut out: Vec<(Delivery, Origin)> =
                    listed.iter().map(|c| (c.clone(), origin)).collect();
                out.extend(
                    self.overtaken(d.port, Direction::Rx)
                        .into_iter()
                        .filter_map(|h| match h.payload {
                            Held::Rx(d, o) => Some((d, o)),
                            Held::Tx(_) => None,
                        }),
                );
                (out, listed, false)
            }
        }
    }

    /// [`Nic::deliver`] for a frame the switch's accounting has already seen: a drop for want
    /// of room is counted on the port here.
    pub(super) fn deliver_counted(&self, d: &Delivery, origin: Origin) {
        if !self.deliver(d, origin) {
            let _ = self
                .pf
                .side()
                .switch_mut()
                .count_drop(d.port, DropReason::RxFull);
        }
    }

    /// Tells the function behind `ingress` how many of its frames were looped back.
    fn count_tx_loopback(&self, ingress: PortId, (packets, bytes): (u64, u64)) {
        match ingress {
            PortId::Vf(_) => {
                if let Some(slot) = CardVf::slot(self, ingress) {
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

    /// Hands one copy to its port, nothing known of its checksum (a fault's copy may be
    /// altered). `false`: dropped for want of room (`rx_full`).
    fn deliver(&self, d: &Delivery, origin: Origin) -> bool {
        let copy = [RxCopy {
            frame: &d.frame,
            stripped_tci: d.stripped_tci.map(|t| t.0),
            origin,
            l4_checksum: L4Checksum::Unverified,
        }];
        match d.port {
            PortId::Vf(_) => self.deliver_into::<CardVf>(d.port, &copy) == 1,
            PortId::Pf if self.pf_driven() => self.deliver_into::<DynFunction>(d.port, &copy) == 1,
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

    /// Into the RX ring of the function behind `port`, in order, or its backlog when the ring
    /// is full (a copy behind one that waits waits too). Returns how many were taken: the
    /// ones after them found the backlog full too and are dropped (counted by the function as
    /// `backlog_overflow`).
    pub(super) fn deliver_into<F: Hosted>(&self, port: PortId, copies: &[RxCopy<'_>]) -> usize {
        let Some(slot) = F::slot(self, port) else {
            warn!(%port, "delivery to a function this NIC does not have");
            return copies.len();
        };
        let (taken, irq, wakeup) = {
            let mut s = lock(slot);
            // An injected RX hold keeps every frame in the backlog.
            let held = !s.faults.is_empty() && s.faults.rx_held(self.now());
            // Frames already waiting go first: a new one waits behind them.
            let (received, fire) = if s.backlog.is_empty() && !held {
                // Each delivered, or dropped and counted by the function (not attached,
                // queue off...), up to the first that finds the ring full.
                s.func.receive_batch(copies)
            } else {
                (0, Fire::NONE)
            };
            let room = BACKLOG_FRAMES.saturating_sub(s.backlog.len());
            let waiting = &copies[received..];
            let kept = waiting.len().min(room);
            s.backlog.extend(waiting[..kept].iter().map(|c| Pending {
                frame: c.frame.clone(),
                stripped_tci: c.stripped_tci,
                origin: c.origin,
                l4_checksum: c.l4_checksum,
            }));
            let dropped = waiting.len() - kept;
            if dropped > 0 {
                for _ in 0..dropped {
                    s.func.count_backlog_drop();
                }
                debug!(%port, dropped, "RX ring and backlog full: frames dropped (rx_full)");
            }
            let irq = s.signal(fire);
            let wakeup = if s.faults.is_empty() {
                None
            } else {
                s.faults.next_wakeup()
            };
            (received + kept, irq, wakeup)
        };
        if let Some((sink, fire)) = irq {
            for vector in fire.vectors() {
                sink.fire(vector);
            }
        }
        if let Some(t) = wakeup {
            self.set_deadline(port, t);
        }
        taken
    }
}

/// One frame through the switch: a copy for the observer, its deliveries and drops, and what
/// its sender's offload knows of its L4 checksum.
struct Outcome {
    sent: Option<Bytes>,
    out: Deliveries,
    l4_checksum: L4Checksum,
}

/// Copies on their way to one function, and the frame (by its place in the batch) each is a
/// copy of.
struct Run<'a> {
    port: Option<PortId>,
    copies: Vec<RxCopy<'a>>,
    frames: Vec<usize>,
}

/// A frame a wire fault holds: until `now + ns`, or (reorder) until a frame overtakes it.
fn held_frame(
    now: u64,
    ns: u64,
    port: PortId,
    direction: Direction,
    action: WireAction,
    payload: Held,
) -> HeldFrame {
    HeldFrame {
        due: now.saturating_add(ns),
        port,
        direction,
        reorder: action == WireAction::Reorder,
        payload,
    }
}
