//! How the ixgbe PF agent is set up: what ixgbe's configuration decides for VFs.

use crate::config::{ConfigError, MacAssignment};

use super::message::ApiVersion;
use super::regs::limits;

/// The ixgbe agent's configuration. `IxgbeConfig::new(n)` is ixgbe 6.1 on an 82599 with `n`
/// VFs, the PF up at MTU 1500.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IxgbeConfig {
    pub num_vfs: usize,
    /// What a VF without an administrator-set MAC gets in its VF_RESET reply. `AdminOnly` is
    /// ixgbe (NACK, zero MAC; ixgbevf then picks a random MAC).
    pub mac_assignment: MacAssignment,
    /// The PF's MTU: the 82599 keeps PF and VFs on one max-frame setting (`ixgbe_set_vf_lpe`).
    pub pf_mtu: u32,
    /// The newest API version the PF grants. ixgbe 6.1 grants 1.0–1.4; a lower value plays an
    /// older ixgbe (each older release added versions at the top only).
    pub max_api: ApiVersion,
    /// Queues per pool reported by GET_QUEUES. `None`: as ixgbe sizes the pools for `num_vfs`
    /// (`ixgbe_set_sriov_queues`): 4 with up to 31 VFs (32 pools), else 2 (64 pools).
    pub queues_per_pool: Option<u32>,
    /// The PF's RSS redirection table (the 82599's RETA is shared by PF and VFs); GET_RETA sends
    /// each entry's low two bits.
    pub reta: [u8; limits::RETA_ENTRIES],
    /// The PF's RSS hash key (shared likewise), sent by GET_RSS_KEY.
    pub rss_key: [u8; limits::RSS_KEY_BYTES],
    /// VLVF entries; entry 0 is VID 0's, the rest are shared by all VFs (82599: 64).
    pub vlvf_slots: usize,
    /// RAR entries; VF MACVLAN filters share `rar_entries - 16 - num_vfs` of them
    /// (`ixgbe_alloc_vf_macvlans`; 82599: 128).
    pub rar_entries: usize,
    /// VLANs (besides VID 0) one VF may join. `None` is ixgbe: no per-VF bound, only the table.
    pub vlans_per_vf: Option<usize>,
    /// MACVLAN filters one VF may hold. `None` is ixgbe: first come, first served.
    pub macvlans_per_vf: Option<usize>,
}

/// A fixed RSS key for a deterministic emulator (ixgbe fills its key at random at probe).
const DEFAULT_RSS_KEY: [u8; limits::RSS_KEY_BYTES] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

impl IxgbeConfig {
    pub fn new(num_vfs: usize) -> IxgbeConfig {
        let mut reta = [0u8; limits::RETA_ENTRIES];
        // ixgbe_setup_reta: entry i = i mod the RSS queue count; with SR-IOV at least 4
        // indices, so that a VF with four queues can use them all.
        for (i, e) in reta.iter_mut().enumerate() {
            *e = (i % 4) as u8;
        }
        IxgbeConfig {
            num_vfs,
            mac_assignment: MacAssignment::default(),
            pf_mtu: 1500,
            max_api: ApiVersion::V1_4,
            queues_per_pool: None,
            reta,
            rss_key: DEFAULT_RSS_KEY,
            vlvf_slots: limits::VLVF_SLOTS,
            rar_entries: limits::RAR_ENTRIES,
            vlans_per_vf: None,
            macvlans_per_vf: None,
        }
    }

    /// The queues per pool GET_QUEUES reports.
    pub fn effective_queues_per_pool(&self) -> u32 {
        self.queues_per_pool
            .unwrap_or(if self.num_vfs <= limits::VFS_WITH_FOUR_QUEUES {
                4
            } else {
                2
            })
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.num_vfs > crate::config::MAX_VFS {
            return Err(ConfigError::TooManyVfs(self.num_vfs));
        }
        if self.vlvf_slots == 0 {
            return Err(ConfigError::NoVlvfSlots);
        }
        match self.max_api.linux_minor() {
            Some(m) if m <= 4 => Ok(()),
            _ => Err(ConfigError::UnsupportedApi(self.max_api.to_wire())),
        }
    }
}
