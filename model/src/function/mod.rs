//! The device layer: one PCI function's logic — config space, register file, rings,
//! descriptors, interrupts, offloads, reset — as plain single-threaded state. No locks, no
//! threads, no clock: a function is driven by `&mut self` calls and answers each with the
//! [`Effects`] the caller must carry out (vectors to signal, frames to switch), so that the
//! NIC runtime can do them after releasing its locks.
//!
//! Shared by every personality: the advanced descriptors ([`desc`], the format the 82576 and
//! the 82599 share), the TX offload engine ([`offload`]), the RX checksum status ([`rxcsum`])
//! and the counters with their named reasons ([`stats`]). One module per card on top:
//! [`i82576`] (igb/igbvf).

use bytes::Bytes;

pub mod desc;
pub(crate) mod guest;
pub mod i82576;
pub mod offload;
pub mod rxcsum;
pub mod stats;

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
    pub frames: Vec<Bytes>,
    /// The driver posted RX buffers (an RDT write).
    pub rx_posted: bool,
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
    }

    pub fn is_empty(&self) -> bool {
        self.fire.is_empty() && self.frames.is_empty() && !self.rx_posted
    }
}
