//! The switch's policy side: VF policies (validated, all or nothing), the PF pool's receive
//! configuration, the link, and the per-port profiles the datapath reads, rebuilt on each change.

use super::*;
use crate::admin::VfSetting;

impl Eswitch {
    /// Replaces VF `vf`'s policy after validating it (see [`VfPolicy::validate`]). On error
    /// nothing changes. A changed `max_tx_rate` re-rates the VF's shaper, keeping earned credit.
    pub fn set_policy(&mut self, vf: u16, policy: VfPolicy) -> Result<(), PolicyError> {
        let n = self.vf_index(vf)?;
        policy.validate(self.config.link_speed_mbps)?;
        self.vfs[n].apply(policy);
        self.refresh();
        Ok(())
    }

    pub fn policy(&self, vf: u16) -> Option<&VfPolicy> {
        self.vfs.get(usize::from(vf)).map(|s| &s.policy)
    }

    /// Applies `ip link set PF vf N ...` settings all or nothing: each is checked as igb checks
    /// it, then the resulting policy is validated; on any error nothing changes.
    pub fn configure_vf(&mut self, vf: u16, settings: &[VfSetting]) -> Result<(), PolicyError> {
        let n = self.vf_index(vf)?;
        let mut policy = self.vfs[n].policy.clone();
        for setting in settings {
            setting.apply_to(&mut policy)?;
        }
        self.set_policy(vf, policy)
    }

    /// `ip link set PF vf N mac M`: the all-zero address clears the administrative MAC.
    pub fn set_vf_mac(&mut self, vf: u16, mac: MacAddr) -> Result<(), PolicyError> {
        self.configure_vf(vf, &[VfSetting::Mac(mac)])
    }

    /// `ip link set PF vf N vlan V qos Q proto P`: `vlan 0 qos 0` removes the port VLAN. The
    /// igb profile takes 802.1Q only; 802.1ad fails with [`PolicyError::VlanProtoNotSupported`]
    /// (EPROTONOSUPPORT, as igb_ndo_set_vf_vlan answers).
    pub fn set_vf_vlan(
        &mut self,
        vf: u16,
        vid: u16,
        qos: u8,
        proto: VlanProto,
    ) -> Result<(), PolicyError> {
        self.configure_vf(vf, &[VfSetting::Vlan { vid, qos, proto }])
    }

    /// `ip link set PF vf N min_tx_rate MIN max_tx_rate MAX` (Mbit/s; MIN must be 0).
    pub fn set_vf_rate(
        &mut self,
        vf: u16,
        min_mbps: u32,
        max_mbps: u32,
    ) -> Result<(), PolicyError> {
        let rate = VfSetting::Rate {
            min: Some(min_mbps),
            max: Some(max_mbps),
        };
        self.configure_vf(vf, &[rate])
    }

    /// `ip link set PF vf N spoofchk on|off`.
    pub fn set_vf_spoofchk(&mut self, vf: u16, on: bool) -> Result<(), PolicyError> {
        self.configure_vf(vf, &[VfSetting::SpoofChk(on)])
    }

    /// `ip link set PF vf N trust on|off`.
    pub fn set_vf_trust(&mut self, vf: u16, on: bool) -> Result<(), PolicyError> {
        self.configure_vf(vf, &[VfSetting::Trust(on)])
    }

    /// `ip link set PF vf N state auto|enable|disable`.
    pub fn set_vf_link_state(&mut self, vf: u16, state: LinkState) -> Result<(), PolicyError> {
        self.configure_vf(vf, &[VfSetting::State(state)])
    }

    /// The PF pool's receive configuration (its MACs, multicast, VLANs, promiscuous modes).
    pub fn set_pf_policy(&mut self, policy: PfPolicy) -> Result<(), PolicyError> {
        policy.validate()?;
        self.pf = PfState::new(policy);
        self.refresh();
        Ok(())
    }

    pub fn pf_policy(&self) -> &PfPolicy {
        &self.pf.policy
    }

    /// The physical link (PF link / uplink carrier). Down: the uplinks send and receive nothing
    /// and VFs in `state auto` are down; VFs in `state enable` still talk to each other and the PF.
    pub fn set_link(&mut self, up: bool) {
        self.link_up = up;
        self.refresh();
    }

    pub fn link_up(&self) -> bool {
        self.link_up
    }

    /// VM-to-VM loopback (the 82576's DTXSWC.LOOPBACK_EN, which igb sets with VFs enabled):
    /// on (the default), frames from the PF and the VFs reach other internal ports; off, they
    /// all go to the uplinks only.
    pub fn set_loopback(&mut self, on: bool) {
        self.loopback = on;
    }

    pub fn loopback(&self) -> bool {
        self.loopback
    }

    /// Whether `port` is up as the switch sees it: uplinks follow the link; a VF follows its
    /// `state` (auto: the link). The device model reports this as the function's link status
    /// (VF STATUS.LU and the PF's link pings to the VF).
    pub fn port_up(&self, port: PortId) -> Result<bool, NoSuchPort> {
        let idx = self.index(port).ok_or(NoSuchPort(port))?;
        Ok(self.profiles[idx as usize].up)
    }

    /// One port's own carrier, apart from the PF link: off takes that port alone down (its
    /// frames are dropped as `link_down` both ways), as a fault on its cable would; on gives it
    /// back the state its link state and the PF link give it.
    pub fn set_port_carrier(&mut self, port: PortId, on: bool) -> Result<(), NoSuchPort> {
        let idx = self.index(port).ok_or(NoSuchPort(port))?;
        self.ports[idx as usize].carrier = on;
        self.refresh();
        Ok(())
    }

    /// Whether `port`'s own carrier is on ([`Eswitch::set_port_carrier`]).
    pub fn port_carrier(&self, port: PortId) -> Result<bool, NoSuchPort> {
        let idx = self.index(port).ok_or(NoSuchPort(port))?;
        Ok(self.ports[idx as usize].carrier)
    }

    /// RX VLAN stripping of a port (the device model mirrors VMOLR.STRVLAN / CTRL.VME here).
    /// Default: on for VFs, off for the PF. Port-VLAN VFs always strip; uplinks never do.
    pub fn set_rx_vlan_strip(&mut self, port: PortId, on: bool) -> Result<(), NoSuchPort> {
        let idx = self.index(port).ok_or(NoSuchPort(port))?;
        self.ports[idx as usize].rx_vlan_strip = on;
        self.refresh();
        Ok(())
    }

    /// Whether `port` strips the outer tag of what it receives ([`Eswitch::set_rx_vlan_strip`]).
    pub fn rx_vlan_strip(&self, port: PortId) -> Result<bool, NoSuchPort> {
        let idx = self.index(port).ok_or(NoSuchPort(port))?;
        Ok(self.ports[idx as usize].rx_vlan_strip)
    }

    /// Recomputes the per-port profiles and the forwarding database after a change.
    pub(super) fn refresh(&mut self) {
        let profiles: Vec<Profile> = (0..self.ports.len()).map(|idx| self.profile(idx)).collect();
        self.profiles = profiles;

        let mut owners: Vec<(u64, PortIdx)> = Vec::new();
        owners.extend(
            self.pf
                .policy
                .macs
                .iter()
                .map(|&m| (mac_key(m), self.pf_idx)),
        );
        for (n, vf) in self.vfs.iter().enumerate() {
            let idx = self.pf_idx + 1 + n as PortIdx;
            let macs = vf.policy.mac.iter().chain(&vf.policy.mac_filters);
            owners.extend(macs.map(|&m| (mac_key(m), idx)));
        }
        owners.sort_unstable();
        owners.dedup();
        self.fdb_owners.clear();
        let mut entries: Vec<(u64, u32, u32)> = Vec::new();
        for (key, idx) in owners {
            let next = self.fdb_owners.len() as u32;
            match entries.last_mut() {
                Some(last) if last.0 == key => last.2 = next + 1,
                _ => entries.push((key, next, next + 1)),
            }
            self.fdb_owners.push(idx);
        }
        self.fdb = MacTable::build(&entries);
    }

    fn profile(&self, idx: usize) -> Profile {
        let mut profile = self.policy_profile(idx);
        profile.up &= self.ports[idx].carrier;
        profile
    }

    fn policy_profile(&self, idx: usize) -> Profile {
        let port = &self.ports[idx];
        match port.kind {
            Kind::Uplink => Profile {
                kind: port.kind,
                up: self.link_up,
                strip: false,
                promisc: false,
                allmulti: true,
                max_frame: self.config.port_max_frame,
                rx: true,
                tx: true,
                bam: true,
                aupe: true,
                vlan: Membership::All,
            },
            Kind::Pf => {
                let pf = &self.pf.policy;
                Profile {
                    kind: port.kind,
                    up: true,
                    strip: port.rx_vlan_strip,
                    promisc: pf.promisc,
                    allmulti: pf.allmulti || pf.promisc,
                    max_frame: self.config.port_max_frame,
                    rx: true,
                    tx: true,
                    bam: true,
                    aupe: true,
                    vlan: if pf.vlan_promisc {
                        Membership::All
                    } else {
                        Membership::Joined
                    },
                }
            }
            Kind::Vf(n) => {
                let vf = &self.vfs[n];
                Profile {
                    kind: port.kind,
                    up: match vf.policy.link_state {
                        LinkState::Auto => self.link_up,
                        LinkState::Enable => true,
                        LinkState::Disable => false,
                    },
                    strip: port.rx_vlan_strip || vf.port_vlan.is_some(),
                    promisc: vf.promisc,
                    allmulti: vf.allmulti,
                    max_frame: vf.policy.max_frame,
                    rx: vf.policy.rx_enabled,
                    tx: vf.policy.tx_enabled,
                    bam: vf.policy.accept_broadcast,
                    aupe: vf.policy.accept_untagged,
                    vlan: match vf.port_vlan {
                        Some(pv) => Membership::Only(pv.vid),
                        None => Membership::Joined,
                    },
                }
            }
        }
    }
}
