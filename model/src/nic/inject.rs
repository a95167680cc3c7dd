//! Carrying out injected faults ([`Fault`]): where each kind lives, how the runtime's timer
//! moves the ones that take time (a flapping link, frames a wire fault holds, a delayed mailbox
//! service, a function's delayed interrupts and RX hold), what `clear` gives back, and the
//! report of what is armed and what fired. A fault on one port or function touches only that
//! port's or function's state.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use eswitch::{Delivery, PortId};
use tracing::{info, warn};

use super::faults::{Direction, Fault, FaultReport, IrqFault, LinkChange, WireFault};
use super::{lock, DynFunction, Nic, Slot, Work, NO_DEADLINE};
use crate::function::card_vf::CardVf;
use crate::function::faults::DmaFault;
use crate::function::{Function, Origin};

/// The NIC's own fault state: links a fault took down or flaps, and held frames.
#[derive(Default)]
pub(super) struct NicFaults {
    links: Vec<LinkFault>,
    held: Vec<HeldFrame>,
}

/// A link a fault took down, or flaps.
struct LinkFault {
    /// `None`: the card's wire.
    port: Option<PortId>,
    change: LinkChange,
    down: bool,
    /// A flap's next toggle.
    next: Option<u64>,
    /// A flap's downs still to come after the current one (`None`: until cleared).
    downs_left: Option<u32>,
    toggles: u64,
}

/// A frame a wire fault holds back.
pub(super) struct HeldFrame {
    pub due: u64,
    pub port: PortId,
    pub direction: Direction,
    /// Released after the next frame of its port and direction (or at `due`).
    pub reorder: bool,
    pub payload: Held,
}

pub(super) enum Held {
    /// Sent by `port` into the switch.
    Tx(Bytes),
    /// A copy for `port`, and where it came from.
    Rx(Delivery, Origin),
}

/// What is done to a hosted function's faults.
enum SlotOp {
    Dma(DmaFault),
    Irq(IrqFault),
    RxHold(u64),
    Clear,
}

/// The PORT of `link PORT ...` as the grammar takes it back: the card's wire is `uplink0`.
fn link_name(port: Option<PortId>) -> String {
    port.map_or("uplink0".to_string(), |p| p.to_string())
}

impl<F: Function> Slot<F> {
    /// Carries out `op` on this function's faults; `Err` when it cannot take it. Returns how
    /// many faults a clear disarmed.
    fn fault_op(&mut self, op: SlotOp, now: u64) -> (Result<usize, String>, Work) {
        let mut irq = None;
        let result = match op {
            SlotOp::Dma(fault) if usize::from(fault.queue) >= self.func.dma_queues() => {
                Err(match self.func.dma_queues() {
                    0 => "this function takes no DMA faults".to_string(),
                    n => format!(
                        "queue {}: this function has queues 0..={}",
                        fault.queue,
                        n - 1
                    ),
                })
            }
            SlotOp::Dma(fault) => match self.func.dma_faults() {
                Some(d) => {
                    d.arm(fault);
                    Ok(1)
                }
                None => Err("this function takes no DMA faults".to_string()),
            },
            SlotOp::Irq(fault) => {
                let released = self.faults.arm_irq(fault);
                irq = self.signal_unfaulted(released);
                Ok(1)
            }
            SlotOp::RxHold(ns) => {
                self.faults.arm_rx_hold(ns, now);
                Ok(1)
            }
            SlotOp::Clear => {
                let (n, held) = self.faults.clear();
                let dma = self.func.dma_faults().map_or(0, |d| d.clear());
                let fire = self.drain().union(held);
                irq = self.signal_unfaulted(fire);
                Ok(n + dma)
            }
        };
        let work = Work {
            irq,
            wakeup: self.next_wakeup(),
            ..Work::default()
        };
        (result, work)
    }

    fn fault_report(&self, port: PortId) -> Vec<FaultReport> {
        let name = port.to_string();
        let mut out = self.faults.report(&name);
        out.extend(
            self.func
                .dma_fault_report()
                .into_iter()
                .map(|d| FaultReport {
                    fault: format!("dma {name} {}", d.fault),
                    seen: u64::from(d.fired),
                    fired: u64::from(d.fired),
                }),
        );
        out
    }
}

impl Nic {
    /// Carries out `fault` on this port; returns what happened, in a line, or why it could
    /// not be done (then nothing changed).
    pub fn inject_fault(&self, fault: Fault) -> Result<String, String> {
        // With the guest's igb as the PF driver there is no embedded agent whose answers or
        // resets a fault could bend.
        if matches!(fault, Fault::Mailbox { .. } | Fault::PfReset { .. })
            && self.with_pf(|pf| pf.pf_driver()) == super::PfDriver::Guest
        {
            return Err(format!(
                "{}: the guest's igb is this port's PF driver (full-system mode), so the \
                 emulator has no mailbox answers or PF resets of its own to fault; reset the PF \
                 in the guest instead (`ip link set <pf> down; ip link set <pf> up`)",
                fault_kind(&fault)
            ));
        }
        let line = match fault {
            Fault::PfReset { vf } => {
                let notified = self.notify_pf_reset(vf);
                format!("PF reset notified to {} VF(s)", notified.len())
            }
            Fault::Link { port, change } => {
                self.link_fault(port, change);
                format!("link {} {change}", link_name(port))
            }
            Fault::Wire(f) => {
                let line = format!("wire fault armed: {f}");
                self.arm_wire_fault(f);
                line
            }
            Fault::Mailbox { vf, fault } => {
                let now = self.now();
                let irqs = self.pf.side().arm_mailbox_fault(vf, fault, now);
                for v in irqs {
                    self.mailbox_interrupt(v);
                }
                self.reschedule_faults();
                info!(vf, %fault, "mailbox fault armed");
                format!("mailbox fault armed: vf{vf} {fault}")
            }
            Fault::Dma { port, fault } => {
                self.slot_op(port, SlotOp::Dma(fault))?;
                info!(%port, %fault, "DMA fault armed");
                format!("DMA fault armed: {port} {fault}")
            }
            Fault::Irq { port, fault } => {
                self.slot_op(port, SlotOp::Irq(fault))?;
                info!(%port, %fault, "interrupt fault armed");
                format!("interrupt fault armed: {port} {fault}")
            }
            Fault::RxHold { port, ns } => {
                self.slot_op(port, SlotOp::RxHold(ns))?;
                let d = super::faults::fmt_duration(ns);
                info!(%port, hold = %d, "RX hold armed");
                format!("RX held on {port} for {d}")
            }
            Fault::Clear => format!("{} fault(s) cleared", self.clear_faults()),
        };
        Ok(line)
    }

    /// Runs `op` on the function behind `port`.
    fn slot_op(&self, port: PortId, op: SlotOp) -> Result<usize, String> {
        let now = self.now();
        let done = match port {
            PortId::Pf => self.with_slot(port, |s: &mut Slot<DynFunction>| s.fault_op(op, now)),
            _ => self.with_slot(port, |s: &mut Slot<CardVf>| s.fault_op(op, now)),
        };
        done.unwrap_or_else(|| Err(format!("no function is hosted behind {port}")))
    }

    /// Tells `vf` (or every VF) that the PF driver reset ([`super::PfSide::notify_pf_reset`]),
    /// with a mailbox interrupt. Returns the VFs notified.
    pub fn notify_pf_reset(&self, vf: Option<u16>) -> Vec<u16> {
        let notified = self.pf.side().notify_pf_reset(vf);
        for &v in &notified {
            self.mailbox_interrupt(v);
        }
        if !notified.is_empty() {
            self.fault_fired("pf_reset");
        }
        notified
    }

    /// Fault: the card's wire goes down or comes back, as a pulled or re-plugged cable would;
    /// VFs whose link state is `auto` follow it.
    pub fn fault_link(&self, up: bool) {
        let change = if up { LinkChange::Up } else { LinkChange::Down };
        self.link_fault(None, change);
    }

    fn link_fault(&self, port: Option<PortId>, change: LinkChange) {
        info!(link = %link_name(port), %change, "link fault");
        let now = self.now();
        let down_now = {
            let mut f = lock(&self.nic_faults);
            f.links.retain(|l| l.port != port);
            match change {
                LinkChange::Up => false,
                LinkChange::Down => {
                    f.links.push(LinkFault {
                        port,
                        change,
                        down: true,
                        next: None,
                        downs_left: None,
                        toggles: 1,
                    });
                    true
                }
                LinkChange::Flap { period_ns, count } => {
                    f.links.push(LinkFault {
                        port,
                        change,
                        down: true,
                        next: Some(now.saturating_add(period_ns)),
                        downs_left: count.map(|c| c.saturating_sub(1)),
                        toggles: 1,
                    });
                    true
                }
            }
        };
        self.set_target_link(port, !down_now);
        self.reschedule_faults();
    }

    /// Takes `port`'s link (`None`: the card's wire) up or down, and counts it.
    fn set_target_link(&self, port: Option<PortId>, up: bool) {
        match port {
            None => self.set_link(up),
            Some(p) => {
                let ping = {
                    let mut side = self.pf.side();
                    if let Err(e) = side.switch_mut().set_port_carrier(p, up) {
                        warn!(error = %e, "link fault on a port the switch does not have");
                        return;
                    }
                    match p {
                        PortId::Vf(v) => side.ping_vf(v),
                        _ => None,
                    }
                };
                match p {
                    PortId::Vf(v) => {
                        self.sync_vf_link(v);
                        if let Some(v) = ping {
                            self.mailbox_interrupt(v);
                        }
                    }
                    PortId::Pf => self.sync_pf_link(),
                    _ => {}
                }
            }
        }
        // A flap's toggles are counted, not each logged at info (a flap runs until cleared).
        tracing::debug!(link = %link_name(port), up, "fault: link {}", if up { "up" } else { "down" });
        self.fault_fired(if up { "link_up" } else { "link_down" });
    }

    /// Arms a wire fault (replacing one on the same port and direction).
    pub fn arm_wire_fault(&self, fault: WireFault) {
        info!(fault = %fault, "wire fault armed");
        lock(&self.wire_faults).arm(fault);
        self.wire_armed.store(true, Ordering::Release);
    }

    /// Every fault off at once: links a fault took down come back, held frames, mailbox
    /// services and interrupts go out, held RX backlogs drain. Returns how many were armed.
    pub fn clear_faults(&self) -> usize {
        let mut n = {
            let mut w = lock(&self.wire_faults);
            w.clear()
        };
        let (links, held) = {
            let mut f = lock(&self.nic_faults);
            (std::mem::take(&mut f.links), std::mem::take(&mut f.held))
        };
        self.wire_armed.store(false, Ordering::Release);
        n += links.len();
        for l in links.iter().filter(|l| l.down) {
            self.set_target_link(l.port, true);
        }
        self.release(held);
        let now = self.now();
        let (m, irqs) = self.pf.side().clear_mailbox_faults(now);
        n += m;
        for v in irqs {
            self.mailbox_interrupt(v);
        }
        for v in 0..self.num_vfs() {
            n += self.slot_op(PortId::Vf(v), SlotOp::Clear).unwrap_or(0);
        }
        if self.pf_fn.get().is_some() {
            n += self.slot_op(PortId::Pf, SlotOp::Clear).unwrap_or(0);
        }
        self.reschedule_faults();
        tracing::debug!(cleared = n, "faults cleared");
        n
    }

    /// Every armed fault and what each has done.
    pub fn faults(&self) -> Vec<FaultReport> {
        let mut out = lock(&self.wire_faults).report();
        out.extend(lock(&self.nic_faults).links.iter().map(|l| FaultReport {
            fault: format!("link {} {}", link_name(l.port), l.change),
            seen: l.toggles,
            fired: l.toggles,
        }));
        out.extend(self.pf.side().mailbox_fault_report());
        for (v, s) in self.slots.iter().enumerate() {
            out.extend(lock(s).fault_report(PortId::Vf(v as u16)));
        }
        if let Some(s) = self.pf_fn.get() {
            out.extend(lock(s).fault_report(PortId::Pf));
        }
        out
    }

    /// A fault of kind `kind` was carried out: counted and logged.
    pub(super) fn fault_fired(&self, kind: &'static str) {
        *lock(&self.faults).entry(kind).or_default() += 1;
        tracing::debug!(fault = kind, "fault carried out");
    }

    /// Holds frames a wire fault took; the timer releases them. Each keeps a copy of its own
    /// bytes: a TSO segment is a slice of its packet's one allocation, which a held slice
    /// would keep whole (64 KiB for one frame of 1.5 KiB) for as long as the fault holds it.
    pub(super) fn hold(&self, mut frames: Vec<HeldFrame>) {
        if frames.is_empty() {
            return;
        }
        for h in &mut frames {
            let frame = match &mut h.payload {
                Held::Tx(frame) => frame,
                Held::Rx(d, _) => &mut d.frame,
            };
            *frame = Bytes::copy_from_slice(frame);
        }
        lock(&self.nic_faults).held.extend(frames);
        self.reschedule_faults();
    }

    /// The frames held now, in the order they were taken.
    #[cfg(test)]
    pub(super) fn held_frames(&self) -> Vec<Bytes> {
        lock(&self.nic_faults)
            .held
            .iter()
            .map(|h| match &h.payload {
                Held::Tx(frame) => frame.clone(),
                Held::Rx(d, _) => d.frame.clone(),
            })
            .collect()
    }

    /// The frames held for reorder on `port` going `direction`: the frame that just passed
    /// overtook them.
    pub(super) fn overtaken(&self, port: PortId, direction: Direction) -> Vec<HeldFrame> {
        let mut f = lock(&self.nic_faults);
        if f.held.is_empty() {
            return Vec::new();
        }
        let (out, keep) = std::mem::take(&mut f.held)
            .into_iter()
            .partition(|h| h.reorder && h.port == port && h.direction == direction);
        f.held = keep;
        out
    }

    /// Sends held frames on: into the switch (TX) or to their port (RX), past the faults.
    pub(super) fn release(&self, frames: Vec<HeldFrame>) {
        for h in frames {
            match h.payload {
                Held::Tx(frame) => self.switch_past_faults(h.port, vec![frame.into()]),
                Held::Rx(d, origin) => {
                    self.deliver_counted(&d, origin);
                }
            }
        }
    }

    /// The NIC's own fault timer at `now`: flaps toggle, held frames and delayed mailbox
    /// services that are due go out.
    pub(super) fn fault_timer(&self, now: u64) {
        let mut toggles = Vec::new();
        let due = {
            let mut f = lock(&self.nic_faults);
            for l in &mut f.links {
                let LinkChange::Flap { period_ns, .. } = l.change else {
                    continue;
                };
                if l.next.is_none_or(|t| t > now) {
                    continue;
                }
                l.down = !l.down;
                l.toggles += 1;
                if l.down {
                    l.downs_left = l.downs_left.map(|n| n.saturating_sub(1));
                }
                let last = !l.down && l.downs_left == Some(0);
                l.next = (!last).then(|| now.saturating_add(period_ns));
                toggles.push((l.port, !l.down));
            }
            f.links.retain(|l| l.down || l.next.is_some());
            let (due, keep) = std::mem::take(&mut f.held)
                .into_iter()
                .partition(|h| h.due <= now);
            f.held = keep;
            due
        };
        for (port, up) in toggles {
            self.set_target_link(port, up);
        }
        self.release(due);
        let irqs = self.pf.side().serve_delayed(now);
        for v in irqs {
            self.mailbox_interrupt(v);
        }
        self.reschedule_faults();
    }

    /// Sets the fault timer's deadline from what is waiting.
    pub(super) fn reschedule_faults(&self) {
        let next = {
            let f = lock(&self.nic_faults);
            let links = f.links.iter().filter_map(|l| l.next).min();
            let held = f.held.iter().map(|h| h.due).min();
            links.into_iter().chain(held).min()
        };
        let mailbox = self.pf.side().next_mailbox_deadline();
        let next = next.into_iter().chain(mailbox).min().unwrap_or(NO_DEADLINE);
        let before = self.fault_deadline.swap(next, Ordering::AcqRel);
        if next < before {
            let (m, cv) = &self.timer_wake;
            *lock(m) += 1;
            cv.notify_all();
        }
    }
}

/// A fault's kind, as `ctl fault` names it.
fn fault_kind(fault: &Fault) -> &'static str {
    match fault {
        Fault::PfReset { .. } => "pf-reset",
        Fault::Mailbox { .. } => "mailbox",
        Fault::Link { .. } => "link",
        Fault::Wire(_) => "wire",
        Fault::Dma { .. } => "dma",
        Fault::Irq { .. } => "irq",
        Fault::RxHold { .. } => "rx-hold",
        Fault::Clear => "clear",
    }
}
