//! Per-VF administrative and VF-requested state: what `ip link set PF vf N ...` and the VF's
//! mailbox requests configure, and what the switch enforces.

use std::fmt;

/// A 48-bit Ethernet address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const ZERO: MacAddr = MacAddr([0; 6]);
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
    pub fn is_broadcast(&self) -> bool {
        self.0 == [0xff; 6]
    }
    /// A valid unicast station address: not multicast, not all zeros.
    pub fn is_valid_unicast(&self) -> bool {
        !self.is_zero() && !self.is_multicast()
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `ip link ... vf N state ...`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortVlan {
    /// 1..=4095.
    pub vid: u16,
    /// PCP, 0..=7.
    pub qos: u8,
}

/// Everything the switch and the PF agent know about one VF.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// MAC and VLAN anti-spoof (default on).
    pub spoofchk: bool,
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
    /// Largest frame the VF accepts (SET_LPE), including the Ethernet header and FCS.
    pub max_frame: u16,
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
            trust: false,
            link_state: LinkState::Auto,
            max_tx_rate: 0,
            min_tx_rate: 0,
            allmulti: false,
            promisc: false,
            max_frame: DEFAULT_MAX_FRAME,
        }
    }
}
