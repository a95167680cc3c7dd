//! A function's counters and the named reasons behind them: every RX drop ([`RxDrop`]), every
//! TX error ([`TxError`]) and every refused register access ([`AccessError`]) has one. The
//! function owns them as plain numbers; [`VfStats`] is the snapshot `ctl show` prints.

use std::collections::BTreeMap;

use serde::Serialize;

/// Why a frame offered to a function's RX queue was not written into the guest's ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RxDrop {
    /// No client is attached (no guest memory).
    NotAttached,
    /// The VF's Bus Master Enable is off: no DMA.
    BusMasterOff,
    /// RXDCTL.ENABLE is clear (or the VF is in reset).
    QueueDisabled,
    /// RDLEN is 0, or RDH/RDT point beyond the ring.
    BadRing,
    /// SRRCTL.DESCTYPE is one igbvf never uses (legacy, header replication).
    UnsupportedDescType,
    /// An empty frame.
    Empty,
    /// The frame needs more descriptors than the ring can ever hold.
    TooLarge,
    /// No free descriptor between RDH and RDT. Not a drop and never counted: the NIC runtime
    /// keeps the frame in its backlog (and counts [`RxDrop::BacklogOverflow`] when that is full).
    RingFull,
    /// The caller's backlog overflowed (counted by the NIC runtime, which keeps the backlog).
    BacklogOverflow,
    /// A descriptor in the ring could not be read or written (ring outside guest memory);
    /// the queue is stopped.
    RingDma,
    /// A buffer address is outside guest memory: the frame is dropped and its descriptors
    /// completed with RXE so that the driver recycles them.
    BufferDma,
    /// The receiver is off (the PF's RCTL.EN clear).
    ReceiverDisabled,
    /// No receive filter of the PF takes the frame (address, multicast, broadcast, VLAN).
    Filtered,
    /// Longer than the PF's receive limit (RCTL.LPE / RLPML).
    Oversize,
    /// The PF's PHY or MAC is looping its own frames back: nothing from outside gets in.
    Isolated,
}

impl RxDrop {
    pub const ALL: [RxDrop; 15] = [
        RxDrop::NotAttached,
        RxDrop::BusMasterOff,
        RxDrop::QueueDisabled,
        RxDrop::BadRing,
        RxDrop::UnsupportedDescType,
        RxDrop::Empty,
        RxDrop::TooLarge,
        RxDrop::RingFull,
        RxDrop::BacklogOverflow,
        RxDrop::RingDma,
        RxDrop::BufferDma,
        RxDrop::ReceiverDisabled,
        RxDrop::Filtered,
        RxDrop::Oversize,
        RxDrop::Isolated,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RxDrop::NotAttached => "not_attached",
            RxDrop::BusMasterOff => "bus_master_off",
            RxDrop::QueueDisabled => "queue_disabled",
            RxDrop::BadRing => "bad_ring",
            RxDrop::UnsupportedDescType => "unsupported_desc_type",
            RxDrop::Empty => "empty",
            RxDrop::TooLarge => "too_large",
            RxDrop::RingFull => "ring_full",
            RxDrop::BacklogOverflow => "backlog_overflow",
            RxDrop::RingDma => "ring_dma",
            RxDrop::BufferDma => "buffer_dma",
            RxDrop::ReceiverDisabled => "receiver_disabled",
            RxDrop::Filtered => "filtered",
            RxDrop::Oversize => "oversize",
            RxDrop::Isolated => "isolated",
        }
    }

    fn index(self) -> usize {
        RxDrop::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

impl std::fmt::Display for RxDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::error::Error for RxDrop {}

/// Why TX descriptors were consumed without sending, or a TX queue stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TxError {
    /// A data descriptor with DTALEN 0.
    ZeroLength,
    /// The gathered packet is larger than the TX engine's limit (64 KiB).
    PacketTooLong,
    /// No EOP within the TX engine's limit descriptors.
    TooManyDescriptors,
    /// A legacy descriptor or an unknown DTYP.
    UnknownDescriptor,
    /// TDH or TDT beyond TDLEN: the tail write is not acted on.
    BadRing,
    /// The descriptor ring is outside guest memory: the queue stops (TXDCTL.ENABLE cleared).
    RingDma,
    /// A data buffer is outside guest memory: the packet is dropped.
    BufferDma,
    /// The offload engine refused the packet (bad context, headers, MSS...).
    Offload,
}

impl TxError {
    pub const ALL: [TxError; 8] = [
        TxError::ZeroLength,
        TxError::PacketTooLong,
        TxError::TooManyDescriptors,
        TxError::UnknownDescriptor,
        TxError::BadRing,
        TxError::RingDma,
        TxError::BufferDma,
        TxError::Offload,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TxError::ZeroLength => "zero_length",
            TxError::PacketTooLong => "packet_too_long",
            TxError::TooManyDescriptors => "too_many_descriptors",
            TxError::UnknownDescriptor => "unknown_descriptor",
            TxError::BadRing => "bad_ring",
            TxError::RingDma => "ring_dma",
            TxError::BufferDma => "buffer_dma",
            TxError::Offload => "offload",
        }
    }

    fn index(self) -> usize {
        TxError::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// Register accesses the VF refused or could not honour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum AccessError {
    /// A write narrower than 4 bytes, or an access not aligned to its size.
    #[error("unsupported access size or alignment")]
    BadAccess,
    /// An access to a region the VF does not have.
    #[error("no such region")]
    NoSuchRegion,
}

/// A VF's counters, owned by its function (the runtime reads them under the function's lock).
#[derive(Clone, Debug, Default)]
pub(crate) struct Counters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub rx_multicast: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Of the received frames, those looped back from a function of this port.
    pub rx_looped_packets: u64,
    pub rx_looped_bytes: u64,
    /// Of the transmitted frames, those the switch looped back to functions of this port.
    pub tx_looped_packets: u64,
    pub tx_looped_bytes: u64,
    /// Frames the shaper asked to defer (the queue paused).
    pub tx_deferred: u64,
    pub rx_drops: [u64; RxDrop::ALL.len()],
    pub tx_errors: [u64; TxError::ALL.len()],
    pub dma_errors: u64,
    pub bad_accesses: u64,
    pub vf_resets: u64,
    pub flrs: u64,
}

impl Counters {
    pub fn rx_drop(&mut self, r: RxDrop) {
        self.rx_drops[r.index()] += 1;
    }

    /// A frame written into a ring: packets, bytes, and multicast (not broadcast) frames.
    pub fn rx_delivered(&mut self, frame: &[u8]) {
        self.rx_packets += 1;
        self.rx_bytes += frame.len() as u64;
        let dst = eswitch::wire::EthernetFrame::new_unchecked(frame).dst_addr();
        if dst.is_multicast() && !dst.is_broadcast() {
            self.rx_multicast += 1;
        }
    }

    pub fn tx_error(&mut self, e: TxError) {
        self.tx_errors[e.index()] += 1;
    }

    /// The snapshot `ctl show` prints; interrupt counts come from the runtime, which fires them.
    pub fn snapshot(&self) -> VfStats {
        VfStats {
            rx_packets: self.rx_packets,
            rx_bytes: self.rx_bytes,
            rx_multicast: self.rx_multicast,
            tx_packets: self.tx_packets,
            tx_bytes: self.tx_bytes,
            tx_deferred: self.tx_deferred,
            rx_drops: RxDrop::ALL
                .iter()
                .filter(|&&r| r != RxDrop::RingFull)
                .map(|r| (r.name(), self.rx_drops[r.index()]))
                .collect(),
            tx_errors: TxError::ALL
                .iter()
                .map(|e| (e.name(), self.tx_errors[e.index()]))
                .collect(),
            dma_errors: self.dma_errors,
            irqs_fired: 0,
            irqs_lost: 0,
            bad_accesses: self.bad_accesses,
            vf_resets: self.vf_resets,
            flrs: self.flrs,
        }
    }
}

/// A snapshot of one VF's counters (cumulative for the VF's lifetime: resets do not clear
/// them; the guest-visible VF statistics registers are offsets from these, see `vf.rs`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VfStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub rx_multicast: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub tx_deferred: u64,
    pub rx_drops: BTreeMap<&'static str, u64>,
    pub tx_errors: BTreeMap<&'static str, u64>,
    pub dma_errors: u64,
    pub irqs_fired: u64,
    pub irqs_lost: u64,
    pub bad_accesses: u64,
    pub vf_resets: u64,
    pub flrs: u64,
}

impl VfStats {
    pub fn rx_drop(&self, r: RxDrop) -> u64 {
        self.rx_drops.get(r.name()).copied().unwrap_or(0)
    }

    pub fn tx_error(&self, e: TxError) -> u64 {
        self.tx_errors.get(e.name()).copied().unwrap_or(0)
    }

    pub fn total_rx_drops(&self) -> u64 {
        self.rx_drops.values().sum()
    }

    pub fn total_tx_errors(&self) -> u64 {
        self.tx_errors.values().sum()
    }
}

/// What became of a frame an RX engine was given.
#[derive(Debug, PartialEq, Eq)]
pub enum RxOutcome {
    /// Written and completed; `descriptors` consumed.
    Delivered { descriptors: u32 },
    /// Not written (nothing changed), or written with RXE (BufferDma) — see the reason.
    Dropped(RxDrop),
}
