//! The device layer: one PCI function's logic — config space, register file, rings,
//! descriptors, interrupts, offloads, reset — as plain single-threaded state. No locks, no
//! threads, no clock: a function is driven by `&mut self` calls and answers each with the
//! [`Effects`] the caller must carry out (vectors to signal, frames to switch), so that the
//! NIC runtime can do them after releasing its locks.
//!
//! Shared by every personality: the advanced descriptors ([`desc`], the format the 82576 and
//! the 82599 share), the TX offload engine ([`offload`]), the RX checksum status ([`rxcsum`])
//! and the counters with their named reasons ([`stats`]), the TX engine ([`tx`]), the vector
//! bank of the extended interrupts ([`vectors`]) and the bus helpers ([`mmio`]); a VF's
//! shell ([`vf_shell`]: the PCI side, resets and datapath steps every VF has, around a card's
//! register file) and its interrupt registers ([`vf_intr`]). One module per card on top:
//! [`i82576`] (igb/igbvf) and [`x82599`] (the 82599 VF, ixgbevf).

use bytes::Bytes;

use rxcsum::L4Checksum;
use stats::{AccessError, RxDrop, VfStats};

pub mod card_vf;
pub mod desc;
pub mod faults;
pub(crate) mod guest;
pub mod i82576;
pub mod mmio;
pub mod offload;
pub mod ram;
pub mod rxcsum;
pub mod stats;
pub mod tx;
pub mod vectors;
pub mod vf_intr;
pub mod vf_shell;
pub mod x82599;

/// Which function of the card a log line is about: the PF, or VF n.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FunctionId {
    Pf,
    Vf(u16),
}

impl std::fmt::Display for FunctionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FunctionId::Pf => f.write_str("pf"),
            FunctionId::Vf(n) => write!(f, "vf{n}"),
        }
    }
}

/// A set of MSI-X vectors to signal (bit n: vector n).
#[must_use = "the vectors must be signalled"]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fire(u32);

impl Fire {
    pub const NONE: Fire = Fire(0);

    pub fn from_bits(bits: u32) -> Fire {
        Fire(bits)
    }

    pub fn bits(self) -> u32 {
        self.0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn union(self, o: Fire) -> Fire {
        Fire(self.0 | o.0)
    }

    /// The vectors, lowest first.
    pub fn vectors(self) -> impl Iterator<Item = u16> {
        (0..32u16).filter(move |v| self.0 & (1 << v) != 0)
    }
}

/// What a function asks its caller to do after an access: signal vectors, switch the frames
/// it transmitted (in order), retry frames waiting for RX buffers.
#[must_use = "the effects of a register access must be carried out"]
#[derive(Debug, Default)]
pub struct Effects {
    pub fire: Fire,
    /// Frames the TX engine produced (offloads applied, short frames padded), in order.
    pub frames: Vec<TxFrame>,
    /// The driver posted RX buffers (an RDT write).
    pub rx_posted: bool,
    /// The function reset itself (a function-level reset through its config space).
    pub reset: bool,
}

impl Effects {
    pub fn fire(fire: Fire) -> Effects {
        Effects {
            fire,
            ..Effects::default()
        }
    }

    /// Adds `other`'s effects after this one's.
    pub fn merge(&mut self, other: Effects) {
        self.fire = self.fire.union(other.fire);
        if self.frames.is_empty() {
            self.frames = other.frames;
        } else {
            self.frames.extend(other.frames);
        }
        self.rx_posted |= other.rx_posted;
        self.reset |= other.reset;
    }

    pub fn is_empty(&self) -> bool {
        self.fire.is_empty() && self.frames.is_empty() && !self.rx_posted && !self.reset
    }
}

pub use ram::{GuestMem, GuestRam, RamRegion};

/// The link a function's status register reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkStatus {
    pub up: bool,
    pub speed_mbps: u32,
    pub full_duplex: bool,
}

impl LinkStatus {
    pub const UP_1000_FD: LinkStatus = LinkStatus {
        up: true,
        speed_mbps: 1000,
        full_duplex: true,
    };
    /// The 82599's link: 10 Gb/s, full duplex.
    pub const UP_10G_FD: LinkStatus = LinkStatus {
        up: true,
        speed_mbps: 10_000,
        full_duplex: true,
    };
    pub const DOWN: LinkStatus = LinkStatus {
        up: false,
        speed_mbps: 0,
        full_duplex: false,
    };
}

/// One queue's ring as the device sees it (for `ctl show` and debugging).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RingState {
    pub enabled: bool,
    pub base: u64,
    /// Descriptors in the ring.
    pub len: u32,
    pub head: u32,
    pub tail: u32,
}

/// A VF's queues and interrupt registers (queue 0 of each direction: the one igbvf uses, the
/// first of ixgbevf's two), the same for the 82576 and the 82599 VF.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct VfState {
    pub rx: RingState,
    pub tx: RingState,
    /// A TX queue paused by the shaper, until this time (ns).
    pub tx_paused_until: Option<u64>,
    pub eicr: u32,
    pub eims: u32,
    pub ivar: u32,
    pub ivar_misc: u32,
    pub bus_master: bool,
    pub attached: bool,
}

/// A function's regions and vectors, for the bus that serves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BusLayout {
    /// Size of BARs 0..5 (0 = absent).
    pub bar_sizes: [u64; 6],
    /// MSI-X vectors.
    pub msix_vectors: u16,
    /// MSI vectors (0: no MSI capability). When MSI-X is off, the function fires vector 0
    /// and the bus delivers it as MSI.
    pub msi_vectors: u16,
    /// Whether the function has an INTx pin.
    pub intx: bool,
}

/// Where a frame delivered to a function comes from, as the 82576's VF statistics tell apart:
/// the good-packet counters count both, the loopback counters (VFGPRLBC/VFGORLBC) only frames
/// the switch looped back from another function of the same port (a VF or the PF).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Origin {
    /// From the port's uplink (the wire).
    #[default]
    Wire,
    /// Looped back from a function of this port.
    Local,
}

/// One copy the switch delivered, as [`Function::receive_batch`] takes it: the frame, the
/// VLAN tag the switch stripped from it, where it comes from, and what the sender's TX offload
/// knows of its L4 checksum (the switch changes only the L2 tag, so that holds for every copy).
#[derive(Clone, Copy, Debug)]
pub struct RxCopy<'a> {
    pub frame: &'a Bytes,
    pub stripped_tci: Option<u16>,
    pub origin: Origin,
    pub l4_checksum: L4Checksum,
}

/// A frame a function's TX engine produced, and what its offload knows of the frame's L4
/// checksum ([`L4Checksum::Correct`] when the offload computed it from scratch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxFrame {
    pub bytes: Bytes,
    pub l4_checksum: L4Checksum,
}

impl From<Bytes> for TxFrame {
    /// A frame nothing is known of.
    fn from(bytes: Bytes) -> TxFrame {
        TxFrame {
            bytes,
            l4_checksum: L4Checksum::Unverified,
        }
    }
}

/// What the NIC runtime needs of a PCI function it hosts: the bus's accesses, the client's
/// memory, the frames the switch delivers, the function's timer and counters. Every call is
/// single-threaded (`&mut self`, the runtime holds the function's lock) and answers with the
/// [`Effects`] the runtime carries out after releasing it.
pub trait Function: Send + 'static {
    fn layout(&self) -> BusLayout;
    fn config_read(&mut self, offset: u64, data: &mut [u8]);
    fn config_write(&mut self, offset: u64, data: &[u8]) -> Effects;
    fn region_read(&mut self, index: u32, offset: u64, data: &mut [u8]) -> Result<(), AccessError>;
    fn region_write(
        &mut self,
        index: u32,
        offset: u64,
        data: &[u8],
    ) -> Result<Effects, AccessError>;
    /// DEVICE_RESET, or after the client disconnected.
    fn reset(&mut self) -> Effects;
    /// A client connected: its memory.
    fn attach(&mut self, mem: GuestMem);
    /// The client went away: no more DMA.
    fn detach(&mut self);
    /// A copy the switch delivered (`stripped_tci`: the tag it stripped; `origin`: from the
    /// wire or looped back from a function of this port). `RxDrop::RingFull` changes nothing
    /// and is not a drop: the runtime keeps the frame in its backlog.
    fn receive(
        &mut self,
        frame: &[u8],
        stripped_tci: Option<u16>,
        origin: Origin,
    ) -> (Result<(), RxDrop>, Fire);
    /// Copies for this function, in order, each as [`Function::receive`] takes it, until one
    /// finds the ring full: that one and the ones behind it are not taken (the runtime keeps
    /// them in its backlog). Returns how many were taken (delivered, or dropped and counted)
    /// and the vectors to signal. A function overrides it to take its memory once per batch.
    fn receive_batch(&mut self, copies: &[RxCopy<'_>]) -> (usize, Fire) {
        let mut fire = Fire::NONE;
        for (taken, c) in copies.iter().enumerate() {
            let (result, f) = self.receive(c.frame, c.stripped_tci, c.origin);
            fire = fire.union(f);
            if result == Err(RxDrop::RingFull) {
                return (taken, fire);
            }
        }
        (copies.len(), fire)
    }
    /// Frames this function sent that the switch looped back to functions of its own port
    /// (the VF loopback statistics, VFGPTLBC/VFGOTLBC); `bytes` without FCS.
    fn count_tx_loopback(&mut self, _packets: u64, _bytes: u64) {}
    /// The runtime dropped a frame for this function because its backlog was full.
    fn count_backlog_drop(&mut self);
    /// The time has come to `now` (see [`Function::next_wakeup`]).
    fn on_timer(&mut self, now: u64) -> Effects;
    /// When the function next needs [`Function::on_timer`].
    fn next_wakeup(&self) -> Option<u64>;
    /// The link its status register reports (and the interrupt a change raises).
    fn set_link(&mut self, link: LinkStatus) -> Effects;
    /// Its counters (interrupt counts are the runtime's).
    fn stats(&self) -> VfStats;
    /// Its injected DMA faults, if it can take them.
    fn dma_faults(&mut self) -> Option<&mut faults::DmaFaults> {
        None
    }
    /// Its queues in each direction, which a DMA fault's `queue` names (0: it takes none).
    fn dma_queues(&self) -> usize {
        0
    }
    /// Its armed DMA faults and what each has done.
    fn dma_fault_report(&self) -> Vec<faults::DmaFaultState> {
        Vec::new()
    }
    /// A VF's mailbox needs its PF driver (a request, an acknowledgement, a VF reset): a PF
    /// whose guest driver manages the VFs raises its VF mailbox cause (the 82576's ICR.VMMB,
    /// which igb's `igb_msix_other` answers with `igb_msg_task`). Other functions have none.
    fn raise_vf_mailbox(&mut self) -> Effects {
        Effects::default()
    }
}
