//! Port identities, and what `process` hands back.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use thiserror::Error;

use crate::counters::DropReason;
use crate::wire::VlanTci;

/// A port of the switch: an uplink (the wire side), the PF, or a VF.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortId {
    Uplink(u8),
    Pf,
    Vf(u16),
}

impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortId::Uplink(n) => write!(f, "uplink{n}"),
            PortId::Pf => f.write_str("pf"),
            PortId::Vf(n) => write!(f, "vf{n}"),
        }
    }
}

/// The port named does not exist on this switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
#[error("no such port: {0}")]
pub struct NoSuchPort(pub PortId);

/// Direction of a captured frame, seen from the function attached to the port (as a capture on
/// that function's netdev would see it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The function sent it into the switch (captured as sent, before any check or VLAN
    /// insertion, so dropped frames are captured too).
    Tx,
    /// The switch delivered it to the function (captured as delivered: after VLAN stripping).
    Rx,
}

/// One copy of a frame for one port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub port: PortId,
    /// The frame as the port receives it: tag stripped for a port-VLAN VF (or a port with RX VLAN
    /// stripping on), tag present towards the uplink.
    pub frame: Bytes,
    /// The stripped tag, for the RX descriptor (VP status bit + VLAN field).
    pub stripped_tci: Option<VlanTci>,
}

/// A frame (or one copy of it) the switch dropped, and where it was counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DropRecord {
    pub port: PortId,
    pub reason: DropReason,
}

/// The outcome of [`crate::Eswitch::process`]: the copies to deliver and the drops. Inline
/// storage keeps the usual cases (unicast: one copy; up to 2 copies and 2 drops) free of heap
/// allocation; a broadcast to many ports spills to one allocation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deliveries {
    pub deliveries: SmallVec<[Delivery; 2]>,
    pub drops: SmallVec<[DropRecord; 2]>,
}

impl Deliveries {
    #[inline]
    pub fn clear(&mut self) {
        self.deliveries.clear();
        self.drops.clear();
    }
    #[inline]
    pub fn len(&self) -> usize {
        self.deliveries.len()
    }
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.deliveries.is_empty()
    }
    #[inline]
    pub fn iter(&self) -> std::slice::Iter<'_, Delivery> {
        self.deliveries.iter()
    }
    /// The copy for `port`, if it got one.
    pub fn to(&self, port: PortId) -> Option<&Delivery> {
        self.deliveries.iter().find(|d| d.port == port)
    }
    /// The ports that got a copy, in port order (uplinks, PF, VFs).
    pub fn ports(&self) -> impl Iterator<Item = PortId> + '_ {
        self.deliveries.iter().map(|d| d.port)
    }
    /// True if a drop for `reason` was recorded (on any port).
    pub fn dropped(&self, reason: DropReason) -> bool {
        self.drops.iter().any(|d| d.reason == reason)
    }
}

impl IntoIterator for Deliveries {
    type Item = Delivery;
    type IntoIter = smallvec::IntoIter<[Delivery; 2]>;
    fn into_iter(self) -> Self::IntoIter {
        self.deliveries.into_iter()
    }
}

impl<'a> IntoIterator for &'a Deliveries {
    type Item = &'a Delivery;
    type IntoIter = std::slice::Iter<'a, Delivery>;
    fn into_iter(self) -> Self::IntoIter {
        self.deliveries.iter()
    }
}
