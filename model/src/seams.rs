//! The seams between the model's layers and the edges that drive it. Every trait the device
//! layer, the NIC runtime and their users meet at is here, so that the layers import this
//! module and never each other in a circle:
//!
//! - [`PfPort`]: what a VF function reaches of its PF, implemented by the runtime: the PF side
//!   of the mailbox registers and the switch's admission of the VF's TX frames (the shaper).
//!   Called by the function with the function's lock held; it takes the PF side's lock.
//! - [`PfFilters`]: what the PF function tells the switch about its own port (the receive
//!   filters its driver programmed, RX VLAN stripping), implemented by the runtime. Called by
//!   the PF function with its lock held; it takes the PF side's lock.
//! - [`IrqSink`]: where a function's MSI-X vectors go. Given by the vfio-user adapter (eventfds)
//!   or by an in-process driver; the runtime calls it after releasing every lock.
//! - [`Clock`]: the runtime's time. [`MonotonicClock`] for `serve`, [`ManualClock`] for
//!   scenarios and tests that move time themselves.
//! - [`PortSink`]: where frames the switch delivers to the PF or an uplink port go.
//! - [`Observer`]: sees every frame the switch handled, with where its copies went and where
//!   it was dropped ([`Switched`]); pcap capture and the scenario runner are observers.
//!
//! Sinks and observers run on the thread of the function that sent the frame, with no lock of
//! the NIC held: they may do I/O.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use eswitch::{Delivery, DropRecord, NextSendAt, PfPolicy, PortId};

/// Whether a mailbox access asks the VF to raise its mailbox interrupt cause (its VTIVAR_MISC
/// vector): the PF side decides, the VF function raises it.
#[must_use]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MailboxIrq {
    #[default]
    None,
    Raise,
}

/// The PF as one VF function sees it.
pub trait PfPort: Send + Sync {
    /// V2PMAILBOX read (read-to-clear bits are the mailbox's business).
    fn read_v2p(&self, vf: u16) -> u32;
    /// V2PMAILBOX write; the PF agent answers at once if the write posted a request or ack.
    fn write_v2p(&self, vf: u16, value: u32) -> MailboxIrq;
    fn read_vmbmem(&self, vf: u16, word: usize) -> u32;
    fn write_vmbmem(&self, vf: u16, word: usize, value: u32);
    /// VTCTRL.RST, FLR or device reset of the VF.
    fn vf_reset(&self, vf: u16) -> MailboxIrq;
    /// May VF `vf` send a frame of `frame_len` bytes now? `Err(NextSendAt(t))`: its rate limit
    /// says not before `t` (ns on the runtime's clock); the TX queue pauses until then.
    fn tx_admit(&self, vf: u16, frame_len: usize) -> Result<(), NextSendAt>;
    /// What VF `vf`'s TX run may do, asked once at its start (a change during a run applies
    /// from the next).
    fn tx_gate(&self, _vf: u16) -> TxGate {
        TxGate {
            shaped: true,
            ..TxGate::OPEN
        }
    }
}

/// What a VF's TX queues may do now ([`PfPort::tx_gate`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxGate {
    /// `Err(NextSendAt(t))`: the VF's transmit is disabled (the 82576's VFTE bit of its pool
    /// clear; a queue transmits only with TCTL.EN, its TXDCTL.ENABLE and that bit, as QEMU's
    /// igb checks in `igb_tx_enabled`). Its queues are not fetched, their descriptors stay the
    /// device's, and a queue with descriptors waiting asks again at `t`.
    pub fetch: Result<(), NextSendAt>,
    /// Each frame is admitted by [`PfPort::tx_admit`] (a rate limit); without one the run asks
    /// it nothing.
    pub shaped: bool,
    /// The data descriptors' VLAN insertion (VLE with the context's tag) applies: the pool's
    /// VMVIR.VLANA is "use the descriptor". With a port VLAN (VLANA "always insert the default
    /// tag") the switch inserts that tag instead, and with "never insert" no tag goes in; in
    /// both the descriptor's request is ignored (QEMU's igb: `igb_tx_insert_vlan`).
    pub descriptor_vlan: bool,
}

impl TxGate {
    /// Fetch and send as the descriptors say, no rate limit.
    pub const OPEN: TxGate = TxGate {
        fetch: Ok(()),
        shaped: false,
        descriptor_vlan: true,
    };
}

/// The switch's PF port as the PF function sees it: the function tells it what its driver
/// programmed, so that the switch delivers to the PF what its filters would take (the
/// function still filters exactly what it receives).
pub trait PfFilters: Send + Sync {
    /// The PF pool's receive filters changed (RAL/RAH, MTA, VFTA, RCTL.UPE/MPE/VFE/MO).
    fn set_pf_policy(&self, policy: PfPolicy);
    /// RX VLAN stripping of the PF port (CTRL.VME) changed.
    fn set_rx_vlan_strip(&self, on: bool);
}

/// Where a function's MSI-X vectors go.
pub trait IrqSink: Send + Sync {
    /// Signal vector `vector` of this function.
    fn fire(&self, vector: u16);
}

/// Monotonic time in nanoseconds.
pub trait Clock: Send + Sync {
    fn now_ns(&self) -> u64;
}

/// The host's monotonic clock, counting from its creation.
#[derive(Debug)]
pub struct MonotonicClock {
    start: Instant,
}

impl MonotonicClock {
    pub fn new() -> MonotonicClock {
        MonotonicClock {
            start: Instant::now(),
        }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        MonotonicClock::new()
    }
}

impl Clock for MonotonicClock {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A clock that moves only when told to: simulated time.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn new(start_ns: u64) -> ManualClock {
        ManualClock(AtomicU64::new(start_ns))
    }

    /// Moves the clock to `t`; never backwards.
    pub fn advance_to(&self, t: u64) {
        self.0.fetch_max(t, Ordering::AcqRel);
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// Where frames the switch delivers to the PF or an uplink port go.
pub trait PortSink: Send + Sync {
    fn deliver(&self, delivery: &Delivery);
}

impl<F: Fn(&Delivery) + Send + Sync> PortSink for F {
    fn deliver(&self, delivery: &Delivery) {
        self(delivery)
    }
}

/// One frame the switch handled: what came in, where its copies went, where it was dropped.
/// Drops include the ones after the switch (a full RX ring and backlog: `rx_full`).
#[derive(Clone, Copy, Debug)]
pub struct Switched<'a> {
    /// The runtime's clock when the frame was switched.
    pub time_ns: u64,
    pub ingress: PortId,
    /// The frame as the ingress port sent it (before any check or VLAN insertion).
    pub frame: &'a Bytes,
    pub deliveries: &'a [Delivery],
    pub drops: &'a [DropRecord],
}

/// Sees every frame the switch handles.
pub trait Observer: Send + Sync {
    fn switched(&self, event: &Switched<'_>);
}
