//! How the PF agent is set up: MAC assignment, promiscuous policy and the hardware limits it
//! enforces.

use thiserror::Error;

use crate::regs::limits;

/// What a VF without an administrator-set MAC gets in its VF_RESET reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MacAssignment {
    /// igb's behaviour: NACK with a zero MAC ("MAC address not assigned by administrator");
    /// igbvf then picks a random MAC and registers it with SET_MAC_ADDR. Until it does, the
    /// VF's MAC reads 00:00:00:00:00:00.
    #[default]
    AdminOnly,
    /// ACK with a deterministic locally administered MAC `02:s0:s1:s2:vf_hi:vf_lo`. It is not
    /// an administrative MAC: the VF may still change it.
    Generated { seed: [u8; 3] },
}

/// Who may enable promiscuous modes with SET_PROMISC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PromiscPolicy {
    /// Exactly igb (`igb_set_vf_promisc`): multicast promiscuous for any VF, unicast
    /// promiscuous never (NACK). The 82576 personality's default.
    #[default]
    Igb,
    /// Stricter, as ixgbe, i40e, ice and mlx5 gate it: only trusted VFs (`vf N trust on`) may
    /// enable unicast or multicast promiscuous mode; others get NACK. Switching them off is
    /// always accepted.
    TrustedOnly,
}

impl PromiscPolicy {
    pub const ALL: [PromiscPolicy; 2] = [PromiscPolicy::Igb, PromiscPolicy::TrustedOnly];

    /// The policy's name in configuration files, `ctl` and reports.
    pub fn name(self) -> &'static str {
        match self {
            PromiscPolicy::Igb => "igb",
            PromiscPolicy::TrustedOnly => "trusted-only",
        }
    }
}

impl std::fmt::Display for PromiscPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A promiscuous policy name that is none of [`PromiscPolicy::ALL`].
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("promiscuous policy {0:?}: expected \"igb\" or \"trusted-only\"")]
pub struct UnknownPromiscPolicy(pub String);

impl std::str::FromStr for PromiscPolicy {
    type Err = UnknownPromiscPolicy;
    fn from_str(s: &str) -> Result<PromiscPolicy, UnknownPromiscPolicy> {
        PromiscPolicy::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| UnknownPromiscPolicy(s.into()))
    }
}

/// Hardware resources of the emulated NIC that bound what VFs may request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HwLimits {
    /// Multicast hashes kept per VF (the message carries at most 30).
    pub mc_hashes: usize,
    /// SET_LPE upper bound (VMOLR.RLPML).
    pub max_frame: u16,
    /// VLVF entries (entry 0 is VID 0's, shared by every pool).
    pub vlvf_slots: usize,
    /// RAR entries (unicast exact-match filters).
    pub rar_entries: usize,
}

impl Default for HwLimits {
    fn default() -> Self {
        HwLimits {
            mc_hashes: limits::MAX_MC_HASHES,
            max_frame: limits::MAX_FRAME,
            vlvf_slots: limits::VLVF_SLOTS,
            rar_entries: limits::RAR_ENTRIES,
        }
    }
}

/// How the agent is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentConfig {
    pub num_vfs: usize,
    pub mac_assignment: MacAssignment,
    pub promisc: PromiscPolicy,
    pub limits: HwLimits,
    /// VLANs (besides VID 0) one VF may join. Default: a fair share of the VLVF slots, so
    /// that no VF can exhaust the table for the others.
    pub vlans_per_vf: Option<usize>,
    /// Extra unicast filters one VF may add. Default: a fair share of the spare RAR entries.
    pub mac_filters_per_vf: Option<usize>,
}

impl AgentConfig {
    /// igb's defaults for `num_vfs` VFs.
    pub fn new(num_vfs: usize) -> AgentConfig {
        AgentConfig {
            num_vfs,
            mac_assignment: MacAssignment::default(),
            promisc: PromiscPolicy::default(),
            limits: HwLimits::default(),
            vlans_per_vf: None,
            mac_filters_per_vf: None,
        }
    }
}

/// A configuration the agent cannot honour.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{0} VFs: at most 65536 (generated MACs hold the VF index in two bytes)")]
    TooManyVfs(usize),
    #[error("{0} multicast hashes per VF: the message carries at most 30")]
    TooManyMcHashes(usize),
    #[error("max frame {0:#x} exceeds the 14-bit RLPML field")]
    MaxFrameTooLarge(u16),
    #[error("the VLVF table needs at least one entry (VID 0)")]
    NoVlvfSlots,
    #[error(
        "mailbox API value {0} cannot be the newest granted: the ixgbe agent speaks 1.0 to 1.4"
    )]
    UnsupportedApi(u32),
}

/// 14-bit VMOLR.RLPML.
pub(crate) const RLPML_MAX: u16 = 0x3FFF;
pub(crate) const MAX_VFS: usize = 1 << 16;
