//! Per-VF administrative and VF-requested state: what `ip link set PF vf N ...` and the VF's
//! mailbox requests configure, and what the switch enforces.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

// The Ethernet address lives with the wire formats; policies name it from here too.
pub use crate::wire::ethernet::{MacAddr, ParseMacError};

/// `ip link ... vf N state ...`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// Follow the PF's link.
    #[default]
    Auto,
    /// Up even when the PF link is down (VF-to-VF traffic still flows).
    Enable,
    /// The switch drops everything the VF sends and delivers nothing to it.
    Disable,
}

/// A port VLAN (VST): every frame the VF sends is tagged with it, only frames of that VLAN reach
/// the VF, stripped. 802.1Q only in the igb profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortVlan {
    /// 1..=4095; 0 together with a non-zero `qos` means priority tagging only (igb enables a
    /// port VLAN when `vlan || qos`): frames get a VID-0 tag carrying the PCP and the VF stays in
    /// the untagged VLAN.
    pub vid: u16,
    /// PCP, 0..=7.
    pub qos: u8,
}

/// Everything the switch and the PF agent know about one VF.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VfPolicy {
    /// The VF's station MAC (the RAR entry of its pool), if it has one.
    pub mac: Option<MacAddr>,
    /// True when `mac` was set by the administrator (`vf N mac M`): an untrusted VF may then
    /// not change it.
    pub admin_mac: bool,
    /// Extra unicast filters the VF requested (SET_MAC_ADDR / MAC_FILTER_ADD).
    pub mac_filters: Vec<MacAddr>,
    /// 12-bit multicast hashes the VF joined (SET_MULTICAST); matching is by hash, as on the
    /// 82576, so it may over-deliver.
    pub mc_hashes: Vec<u16>,
    /// VLANs the VF joined itself (SET_VLAN, VGT mode).
    pub vlan_filters: Vec<u16>,
    /// Administrator's port VLAN (VST), if any.
    pub port_vlan: Option<PortVlan>,
    /// MAC anti-spoof (default on): what `ip link ... spoofchk` sets, with `vlan_spoofchk`.
    pub spoofchk: bool,
    /// VLAN anti-spoof (default on): a VF sends tags only of VLANs it is in, and none with a
    /// port VLAN. igb sets and clears it with `spoofchk` (`igb_ndo_set_vf_spoofchk` writes both
    /// DTXSWC bits of the pool); a PF driver that writes the two bits apart (full-system mode)
    /// sets it alone.
    pub vlan_spoofchk: bool,
    /// Trusted VFs may change an admin MAC and use promiscuous modes (default off).
    pub trust: bool,
    pub link_state: LinkState,
    /// Mbit/s, 0 = unlimited.
    pub max_tx_rate: u32,
    /// Mbit/s; must be 0 in the igb profile.
    pub min_tx_rate: u32,
    /// Multicast promiscuous requested by the VF (effective only when trusted).
    pub allmulti: bool,
    /// Unicast promiscuous requested by the VF (effective only when trusted).
    pub promisc: bool,
    /// The VF joined more multicast groups than its hash list holds, so it receives all
    /// multicast whether trusted or not (igb sets VMOLR.MPME for it).
    pub mc_overflow: bool,
    /// Largest frame the VF accepts (SET_LPE), including the Ethernet header and FCS.
    pub max_frame: u16,
    /// The VF's receive enable (VFRE): off, the switch delivers it nothing (`rx_disabled`).
    /// An 82576 VF's reset (VTCTRL.RST, FLR) turns it off until igb's VF_RESET reply turns it
    /// on (`igb_vf_reset_msg`); the 82599's ixgbe turns it off when it refuses the VF's
    /// SET_LPE (`ixgbe_set_vf_lpe`), and an accepted SET_LPE or a VF reset turns it on again.
    pub rx_enabled: bool,
    /// The VF's transmit enable (VFTE): off, the device model leaves the VF's TX queues
    /// unfetched, and a frame that reaches the switch anyway (sent before VFTE went off and
    /// held on the way) is dropped (`tx_disabled`). An 82576 VF's reset clears it with VFRE
    /// until its PF driver (the PF agent playing igb, or a guest's igb in full-system mode)
    /// answers VF_RESET.
    pub tx_enabled: bool,
    /// Broadcast accepted (VMOLR.BAM, which igb sets on every VF pool).
    pub accept_broadcast: bool,
    /// Untagged frames accepted when the VF has no port VLAN (VMOLR.AUPE, which igb sets on
    /// every VF pool without one).
    pub accept_untagged: bool,
    /// The hardware anti-spoof of a VF whose `spoofchk` is on has been turned off behind the
    /// administrator's back: ixgbe does so when the VF adds a MACVLAN filter
    /// (`ixgbe_set_vf_macvlan_msg`, "to avoid false positives"), while `ip link` still shows
    /// spoof checking on. Setting `spoofchk` again turns it back on.
    pub spoofchk_suspended: bool,
    /// VMVIR.VLANA "never insert": nothing the VF sends gets a tag from the device, its
    /// descriptors' VLAN insertion is ignored. Only a PF driver in full-system mode can set
    /// it (Linux igb and ixgbe never do); the device model applies it, the switch does not
    /// look at it.
    pub tx_vlan_never: bool,
}

/// Standard Ethernet: 1500 MTU + 14 header + 4 FCS.
pub const DEFAULT_MAX_FRAME: u16 = 1518;

impl Default for VfPolicy {
    fn default() -> Self {
        VfPolicy {
            mac: None,
            admin_mac: false,
            mac_filters: Vec::new(),
            mc_hashes: Vec::new(),
            vlan_filters: Vec::new(),
            port_vlan: None,
            spoofchk: true,
            vlan_spoofchk: true,
            trust: false,
            link_state: LinkState::Auto,
            max_tx_rate: 0,
            min_tx_rate: 0,
            allmulti: false,
            promisc: false,
            mc_overflow: false,
            max_frame: DEFAULT_MAX_FRAME,
            rx_enabled: true,
            tx_enabled: true,
            accept_broadcast: true,
            accept_untagged: true,
            spoofchk_suspended: false,
            tx_vlan_never: false,
        }
    }
}

/// Largest VLAN id `ip link` accepts (12-bit field).
pub const MAX_VID: u16 = 4095;
/// Largest 802.1p priority.
pub const MAX_QOS: u8 = 7;
/// Largest per-pool receive length igb programs (RLPML / SET_LPE are clamped to 0x3F00).
pub const MAX_FRAME_LIMIT: u16 = 0x3F00;
/// Smallest frame size a policy may announce: the Ethernet minimum including FCS.
pub const MIN_FRAME_LIMIT: u16 = 64;
/// The 82576 MTA hash is 12 bits wide (igb's `igb_hash_mc_addr` with `mta_reg_count` 128).
pub const MAX_MC_HASH: u16 = 0x0FFF;
/// Above this many multicast hashes igb puts the pool in multicast promiscuous (MPME) instead
/// of using the MTA (`igb_set_vf_multicasts`, SET_MULTICAST).
pub const MAX_VF_MC_HASHES: usize = 30;
/// Extra unicast filters one VF may hold. The 82576 has 24 RAR entries shared by all pools;
/// since our VF count may exceed the hardware's, we bound each VF on its own instead, so one VF
/// can never exhaust a table another VF needs.
pub const MAX_VF_MAC_FILTERS: usize = 32;
/// VGT VLAN filters one VF may hold (the 82576 has 32 VLVF entries in all).
pub const MAX_VF_VLAN_FILTERS: usize = 32;

/// `errno` values of the kernel's answers, so the control plane can report them as `ip` does.
pub mod errno {
    pub const EINVAL: i32 = 22;
    pub const EPROTONOSUPPORT: i32 = 93;
    pub const EOPNOTSUPP: i32 = 95;
}

/// The tag protocol of `ip link ... vf N vlan V proto P`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum VlanProto {
    /// C-tag, TPID 0x8100.
    #[default]
    #[serde(rename = "802.1Q")]
    Dot1Q,
    /// S-tag, TPID 0x88a8. The igb profile refuses it (igb_ndo_set_vf_vlan: EPROTONOSUPPORT).
    #[serde(rename = "802.1ad")]
    Dot1Ad,
}

impl fmt::Display for VlanProto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VlanProto::Dot1Q => "802.1Q",
            VlanProto::Dot1Ad => "802.1ad",
        })
    }
}

/// Why a policy (or one `ip link set vf` knob) was refused. Each maps to the errno igb returns.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum PolicyError {
    #[error("VF {vf} does not exist (this port has {num_vfs} VFs)")]
    NoSuchVf { vf: u16, num_vfs: u16 },
    #[error("{mac} is not a valid unicast address for a VF (multicast or all-zero)")]
    InvalidMac { mac: MacAddr },
    #[error("VLAN id {vid} out of range (0..=4095)")]
    InvalidVid { vid: u16 },
    #[error("VLAN qos {qos} out of range (0..=7)")]
    InvalidQos { qos: u8 },
    #[error("VLAN protocol {proto} not supported (igb and ixgbe take 802.1Q only)")]
    VlanProtoNotSupported { proto: VlanProto },
    #[error("min_tx_rate {min} Mbit/s not supported (igb and ixgbe take 0 only)")]
    MinRateNotSupported { min: u32 },
    #[error("max_tx_rate {max} Mbit/s exceeds the link speed of {link} Mbit/s")]
    RateAboveLink { max: u32, link: u32 },
    #[error("multicast hash {hash:#x} is wider than the 12-bit MTA hash")]
    InvalidMcHash { hash: u16 },
    #[error("max frame {size} out of range (64..=16128)")]
    InvalidMaxFrame { size: u16 },
    #[error("too many {what} filters: {count} (limit {limit})")]
    TooManyFilters {
        what: &'static str,
        count: usize,
        limit: usize,
    },
}

impl PolicyError {
    /// The errno the Linux igb driver returns for the same request.
    pub fn errno(&self) -> i32 {
        match self {
            PolicyError::VlanProtoNotSupported { .. } => errno::EPROTONOSUPPORT,
            _ => errno::EINVAL,
        }
    }
}

impl VfPolicy {
    /// Checks every field against the igb profile's limits; `link_mbps` bounds `max_tx_rate`.
    pub fn validate(&self, link_mbps: u32) -> Result<(), PolicyError> {
        if let Some(mac) = self.mac {
            if !mac.is_valid_unicast() {
                return Err(PolicyError::InvalidMac { mac });
            }
        }
        if self.mac_filters.len() > MAX_VF_MAC_FILTERS {
            return Err(PolicyError::TooManyFilters {
                what: "unicast MAC",
                count: self.mac_filters.len(),
                limit: MAX_VF_MAC_FILTERS,
            });
        }
        if let Some(&mac) = self.mac_filters.iter().find(|m| !m.is_valid_unicast()) {
            return Err(PolicyError::InvalidMac { mac });
        }
        // The MTA has 4096 bits; a longer list can only repeat hashes.
        if self.mc_hashes.len() > usize::from(MAX_MC_HASH) + 1 {
            return Err(PolicyError::TooManyFilters {
                what: "multicast hash",
                count: self.mc_hashes.len(),
                limit: usize::from(MAX_MC_HASH) + 1,
            });
        }
        if let Some(&hash) = self.mc_hashes.iter().find(|&&h| h > MAX_MC_HASH) {
            return Err(PolicyError::InvalidMcHash { hash });
        }
        if self.vlan_filters.len() > MAX_VF_VLAN_FILTERS {
            return Err(PolicyError::TooManyFilters {
                what: "VLAN",
                count: self.vlan_filters.len(),
                limit: MAX_VF_VLAN_FILTERS,
            });
        }
        if let Some(&vid) = self.vlan_filters.iter().find(|&&v| v > MAX_VID) {
            return Err(PolicyError::InvalidVid { vid });
        }
        if let Some(pv) = self.port_vlan {
            if pv.vid > MAX_VID {
                return Err(PolicyError::InvalidVid { vid: pv.vid });
            }
            if pv.qos > MAX_QOS {
                return Err(PolicyError::InvalidQos { qos: pv.qos });
            }
        }
        if self.min_tx_rate != 0 {
            return Err(PolicyError::MinRateNotSupported {
                min: self.min_tx_rate,
            });
        }
        if self.max_tx_rate > link_mbps {
            return Err(PolicyError::RateAboveLink {
                max: self.max_tx_rate,
                link: link_mbps,
            });
        }
        if !(MIN_FRAME_LIMIT..=MAX_FRAME_LIMIT).contains(&self.max_frame) {
            return Err(PolicyError::InvalidMaxFrame {
                size: self.max_frame,
            });
        }
        Ok(())
    }

    /// The port VLAN as the switch applies it: `vid 0, qos 0` means none.
    pub fn effective_port_vlan(&self) -> Option<PortVlan> {
        self.port_vlan.filter(|pv| pv.vid != 0 || pv.qos != 0)
    }

    /// Unicast promiscuous, as the switch applies it: only a trusted VF gets it.
    pub fn effective_promisc(&self) -> bool {
        self.trust && self.promisc
    }

    /// Multicast promiscuous, as the switch applies it: a VF the PF agent granted allmulti
    /// (whether trust is needed for that is the agent's policy: igb grants it to any VF), a
    /// trusted VF in unicast promiscuous mode, or any VF that joined more groups than the MTA
    /// path takes (igb sets MPME when a VF sends more than 30 hashes, trusted or not).
    pub fn effective_allmulti(&self) -> bool {
        self.allmulti || (self.trust && self.promisc) || self.mc_overflow
    }

    /// True if `mac` is one of the addresses this VF owns: its station MAC or an extra filter.
    /// This is the MAC anti-spoof rule (the source must hit a RAR entry of the VF's pool).
    #[inline]
    pub fn owns(&self, mac: MacAddr) -> bool {
        self.mac == Some(mac) || self.mac_filters.contains(&mac)
    }
}

/// The PF's own receive configuration (what the PF driver programs for its pool).
///
/// The PF is exempt from anti-spoof (igb never sets the PF pool's DTXSWC bits) and is the default
/// pool (VT_CTL.DEF_PL): unicast from the uplink that no port owns goes to it.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PfPolicy {
    /// Station MAC and extra unicast filters of the PF pool (RAR entries with the PF pool bit).
    pub macs: Vec<MacAddr>,
    /// 12-bit MTA hashes the PF joined.
    pub mc_hashes: Vec<u16>,
    /// VLANs the PF joined (its 8021q interfaces). The PF always takes untagged frames.
    pub vlans: Vec<u16>,
    /// Accept every VLAN (the igb PF in IFF_PROMISC sets its pool in every VLVF entry).
    pub vlan_promisc: bool,
    /// Multicast promiscuous (RCTL.MPE / IFF_ALLMULTI).
    pub allmulti: bool,
    /// Unicast promiscuous: also receive unicast no port owns when it comes from a VF
    /// (UTA all-ones + VMOLR.ROPE on the PF pool).
    pub promisc: bool,
}

impl PfPolicy {
    pub fn validate(&self) -> Result<(), PolicyError> {
        if let Some(&mac) = self.macs.iter().find(|m| !m.is_valid_unicast()) {
            return Err(PolicyError::InvalidMac { mac });
        }
        if let Some(&hash) = self.mc_hashes.iter().find(|&&h| h > MAX_MC_HASH) {
            return Err(PolicyError::InvalidMcHash { hash });
        }
        if let Some(&vid) = self.vlans.iter().find(|&&v| v > MAX_VID) {
            return Err(PolicyError::InvalidVid { vid });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINK: u32 = 1000;

    #[test]
    fn mac_parses_and_prints_round_trip() {
        let mac: MacAddr = "02:00:00:00:00:1a".parse().unwrap();
        assert_eq!(mac, MacAddr([2, 0, 0, 0, 0, 0x1a]));
        assert_eq!(mac.to_string(), "02:00:00:00:00:1a");
        assert!("02:00:00:00:00".parse::<MacAddr>().is_err());
        assert!("02:00:00:00:00:00:00".parse::<MacAddr>().is_err());
        assert!("02:00:00:00:00:zz".parse::<MacAddr>().is_err());
    }

    #[test]
    fn default_policy_is_valid_with_spoofchk_on_and_trust_off() {
        let p = VfPolicy::default();
        assert!(p.spoofchk);
        assert!(!p.trust);
        assert_eq!(p.validate(LINK), Ok(()));
    }

    #[test]
    fn multicast_admin_mac_is_refused_with_einval() {
        let p = VfPolicy {
            mac: Some(MacAddr([0x01, 0, 0x5e, 0, 0, 1])),
            ..Default::default()
        };
        let err = p.validate(LINK).unwrap_err();
        assert!(matches!(err, PolicyError::InvalidMac { .. }));
        assert_eq!(err.errno(), errno::EINVAL);
    }

    #[test]
    fn vid_and_qos_ranges_are_checked() {
        let vid = VfPolicy {
            port_vlan: Some(PortVlan { vid: 4096, qos: 0 }),
            ..Default::default()
        };
        assert_eq!(
            vid.validate(LINK),
            Err(PolicyError::InvalidVid { vid: 4096 })
        );
        let qos = VfPolicy {
            port_vlan: Some(PortVlan { vid: 10, qos: 8 }),
            ..Default::default()
        };
        assert_eq!(qos.validate(LINK), Err(PolicyError::InvalidQos { qos: 8 }));
        let ok = VfPolicy {
            port_vlan: Some(PortVlan { vid: 4095, qos: 7 }),
            ..Default::default()
        };
        assert_eq!(ok.validate(LINK), Ok(()));
    }

    #[test]
    fn min_rate_is_refused_and_max_rate_is_bounded_by_link_speed() {
        let min = VfPolicy {
            min_tx_rate: 10,
            max_tx_rate: 100,
            ..Default::default()
        };
        assert_eq!(
            min.validate(LINK),
            Err(PolicyError::MinRateNotSupported { min: 10 })
        );
        let max = VfPolicy {
            max_tx_rate: 1001,
            ..Default::default()
        };
        assert_eq!(
            max.validate(LINK),
            Err(PolicyError::RateAboveLink {
                max: 1001,
                link: 1000
            })
        );
    }

    #[test]
    fn dot1ad_error_maps_to_eprotonosupport() {
        let err = PolicyError::VlanProtoNotSupported {
            proto: VlanProto::Dot1Ad,
        };
        assert_eq!(err.errno(), errno::EPROTONOSUPPORT);
        assert!(err.to_string().contains("802.1ad"));
    }

    #[test]
    fn mc_hash_wider_than_12_bits_is_refused() {
        let p = VfPolicy {
            mc_hashes: vec![0x1000],
            ..Default::default()
        };
        assert_eq!(
            p.validate(LINK),
            Err(PolicyError::InvalidMcHash { hash: 0x1000 })
        );
    }

    #[test]
    fn unicast_promisc_needs_trust_and_granted_allmulti_does_not() {
        let mut p = VfPolicy {
            promisc: true,
            ..Default::default()
        };
        assert!(!p.effective_allmulti());
        assert!(!p.effective_promisc());
        p.trust = true;
        assert!(
            p.effective_allmulti(),
            "unicast promiscuous takes multicast too"
        );
        assert!(p.effective_promisc());
        let granted = VfPolicy {
            allmulti: true,
            ..Default::default()
        };
        assert!(granted.effective_allmulti() && !granted.effective_promisc());
    }

    #[test]
    fn multicast_overflow_means_multicast_promiscuous_even_untrusted() {
        let p = VfPolicy {
            mc_hashes: (0..30).collect(),
            mc_overflow: true,
            ..Default::default()
        };
        assert!(!p.trust);
        assert!(p.effective_allmulti());
        assert!(!p.effective_promisc());
    }
}
