//! Per-port counters and the reasons a frame is dropped.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why the switch (or, through [`crate::Eswitch::count_drop`], the device model) dropped a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Shorter than an Ethernet header, or a truncated 802.1Q tag.
    Malformed,
    /// MAC anti-spoof: a VF with spoofchk on sent a source address it does not own.
    SpoofMac,
    /// VLAN anti-spoof: a VF with a port VLAN sent a tagged frame, or a VF with spoofchk on sent
    /// a VLAN it has not joined.
    SpoofVlan,
    /// Addressed to a port that is not a member of the frame's VLAN.
    VlanFilter,
    /// The sending or receiving port's link is down (`state disable`, or `auto` with the PF
    /// link down, or the uplink is down).
    LinkDown,
    /// Longer than the port's maximum frame size (LPE / RLPML).
    Oversize,
    /// The receiving VF's receive is disabled (its VFRE bit: the 82599's ixgbe clears it when
    /// it refuses the VF's SET_LPE).
    RxDisabled,
    /// The sending VF's transmit is disabled (its VFTE bit, cleared by the PF driver).
    TxDisabled,
    /// No port takes the frame (e.g. unknown unicast from the uplink while the default pool is
    /// not in the frame's VLAN, or unicast to the sender's own address).
    NoRoute,
    /// Refused by a rate limit (recorded by a caller that polices instead of shaping).
    Rate,
    /// The receiving function's RX ring and backlog are full (recorded by the device model).
    RxFull,
    /// `process` was called with a port this switch does not have (not counted anywhere).
    UnknownPort,
    /// Dropped by an injected fault (`ctl fault wire ...`; recorded by the device model).
    Fault,
}

impl DropReason {
    pub const ALL: [DropReason; 13] = [
        DropReason::Malformed,
        DropReason::SpoofMac,
        DropReason::SpoofVlan,
        DropReason::VlanFilter,
        DropReason::LinkDown,
        DropReason::Oversize,
        DropReason::RxDisabled,
        DropReason::TxDisabled,
        DropReason::NoRoute,
        DropReason::Rate,
        DropReason::RxFull,
        DropReason::UnknownPort,
        DropReason::Fault,
    ];

    /// The snake_case name used in counters, logs and scenario files.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::SpoofMac => "spoof_mac",
            DropReason::SpoofVlan => "spoof_vlan",
            DropReason::VlanFilter => "vlan_filter",
            DropReason::LinkDown => "link_down",
            DropReason::Oversize => "oversize",
            DropReason::RxDisabled => "rx_disabled",
            DropReason::TxDisabled => "tx_disabled",
            DropReason::NoRoute => "no_route",
            DropReason::Rate => "rate",
            DropReason::RxFull => "rx_full",
            DropReason::UnknownPort => "unknown_port",
            DropReason::Fault => "fault",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Drops of one port, one field per [`DropReason`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DropCounters {
    pub malformed: u64,
    pub spoof_mac: u64,
    pub spoof_vlan: u64,
    pub vlan_filter: u64,
    pub link_down: u64,
    pub oversize: u64,
    pub rx_disabled: u64,
    pub tx_disabled: u64,
    pub no_route: u64,
    pub rate: u64,
    pub rx_full: u64,
    pub unknown_port: u64,
    pub fault: u64,
}

impl DropCounters {
    fn slot(&mut self, reason: DropReason) -> &mut u64 {
        match reason {
            DropReason::Malformed => &mut self.malformed,
            DropReason::SpoofMac => &mut self.spoof_mac,
            DropReason::SpoofVlan => &mut self.spoof_vlan,
            DropReason::VlanFilter => &mut self.vlan_filter,
            DropReason::LinkDown => &mut self.link_down,
            DropReason::Oversize => &mut self.oversize,
            DropReason::RxDisabled => &mut self.rx_disabled,
            DropReason::TxDisabled => &mut self.tx_disabled,
            DropReason::NoRoute => &mut self.no_route,
            DropReason::Rate => &mut self.rate,
            DropReason::RxFull => &mut self.rx_full,
            DropReason::UnknownPort => &mut self.unknown_port,
            DropReason::Fault => &mut self.fault,
        }
    }

    pub fn get(&self, reason: DropReason) -> u64 {
        match reason {
            DropReason::Malformed => self.malformed,
            DropReason::SpoofMac => self.spoof_mac,
            DropReason::SpoofVlan => self.spoof_vlan,
            DropReason::VlanFilter => self.vlan_filter,
            DropReason::LinkDown => self.link_down,
            DropReason::Oversize => self.oversize,
            DropReason::RxDisabled => self.rx_disabled,
            DropReason::TxDisabled => self.tx_disabled,
            DropReason::NoRoute => self.no_route,
            DropReason::Rate => self.rate,
            DropReason::RxFull => self.rx_full,
            DropReason::UnknownPort => self.unknown_port,
            DropReason::Fault => self.fault,
        }
    }

    pub fn add(&mut self, reason: DropReason) {
        let slot = self.slot(reason);
        *slot = slot.wrapping_add(1);
    }

    pub fn total(&self) -> u64 {
        DropReason::ALL.iter().map(|&r| self.get(r)).sum()
    }
}

/// Counters of one port, seen from the function attached to it (as `ip -s link` on that
/// function would show them): `tx_*` are frames it sent into the switch and the switch accepted,
/// `rx_*` frames the switch delivered to it. For an uplink, `tx_*` are frames that came in from
/// the wire and `rx_*` frames the switch sent out to it. Bytes are frame bytes as delivered
/// (after VLAN insertion or stripping), without FCS.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PortCounters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub rx_broadcast: u64,
    pub rx_multicast: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub tx_broadcast: u64,
    pub tx_multicast: u64,
    /// Times the port's shaper told it to wait ([`crate::Eswitch::tx_admit`] refusals).
    pub tx_deferred: u64,
    pub drops: DropCounters,
}

/// Destination class of a frame, for the broadcast / multicast counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cast {
    Unicast,
    Multicast,
    Broadcast,
}

impl PortCounters {
    pub(crate) fn count_rx(&mut self, len: usize, cast: Cast) {
        self.rx_packets += 1;
        self.rx_bytes += len as u64;
        match cast {
            Cast::Unicast => {}
            Cast::Multicast => self.rx_multicast += 1,
            Cast::Broadcast => self.rx_broadcast += 1,
        }
    }

    pub(crate) fn count_tx(&mut self, len: usize, cast: Cast) {
        self.tx_packets += 1;
        self.tx_bytes += len as u64;
        match cast {
            Cast::Unicast => {}
            Cast::Multicast => self.tx_multicast += 1,
            Cast::Broadcast => self.tx_broadcast += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_counter() {
        let mut drops = DropCounters::default();
        for (i, &reason) in DropReason::ALL.iter().enumerate() {
            for _ in 0..=i {
                drops.add(reason);
            }
        }
        for (i, &reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(drops.get(reason), i as u64 + 1, "{reason}");
        }
        assert_eq!(drops.total(), 91, "1 + 2 + ... + 13");
    }

    #[test]
    fn reason_names_are_snake_case() {
        assert_eq!(DropReason::SpoofMac.as_str(), "spoof_mac");
        assert_eq!(DropReason::RxFull.to_string(), "rx_full");
    }
}

#[cfg(test)]
mod serde_tests {
    use super::*;

    #[test]
    fn counters_serialise_with_snake_case_drop_names() {
        let mut c = PortCounters::default();
        c.drops.add(DropReason::SpoofMac);
        c.rx_broadcast = 2;
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["rx_broadcast"], 2);
        assert_eq!(json["drops"]["spoof_mac"], 1);
        assert_eq!(json["drops"]["rx_full"], 0);
        let reason: DropReason = serde_json::from_str("\"vlan_filter\"").unwrap();
        assert_eq!(reason, DropReason::VlanFilter);
        for reason in DropReason::ALL {
            assert_eq!(
                serde_json::to_value(reason).unwrap(),
                serde_json::Value::from(reason.as_str())
            );
        }
    }
}
