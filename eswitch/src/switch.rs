//! The switch proper: ports, forwarding database, the `process` decision function.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use thiserror::Error;
use tracing::debug;

use crate::counters::{Cast, DropReason, PortCounters};
use crate::policy::{
    LinkState, MacAddr, PfPolicy, PolicyError, PortVlan, VfPolicy, VlanProto, MAX_FRAME_LIMIT,
    MAX_QOS, MAX_VID,
};
use crate::port::{
    CaptureHook, CaptureRecord, Deliveries, Delivery, Direction, DropRecord, NoSuchPort, PortId,
};
use crate::shaper::{NextSendAt, TokenBucket};
use crate::wire::{insert_tag, mta_hash, strip_tag, Bitmap4096, EthHeader, VlanTci, ETH_FCS_LEN};

/// Bits per Mbit/s of `max_tx_rate`.
const BPS_PER_MBPS: u64 = 1_000_000;
/// The untagged VLAN (and the VID of priority-tagged frames).
const UNTAGGED: u16 = 0;

/// Shape of the switch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EswitchConfig {
    pub num_vfs: u16,
    pub num_uplinks: u8,
    /// Link speed in Mbit/s; bounds `max_tx_rate` (82576: 1000).
    pub link_speed_mbps: u32,
    /// The PF's station MAC (NVM words 0–2); more PF filters via [`Eswitch::set_pf_policy`].
    pub pf_mac: Option<MacAddr>,
    /// Largest frame (with FCS) the PF and the uplinks take and send.
    pub port_max_frame: u16,
}

impl Default for EswitchConfig {
    fn default() -> Self {
        EswitchConfig {
            num_vfs: 7,
            num_uplinks: 1,
            link_speed_mbps: 1000,
            pf_mac: None,
            port_max_frame: MAX_FRAME_LIMIT,
        }
    }
}

/// The most VFs one switch carries (the SR-IOV TotalVFs field is 16 bits; we stay well below).
pub const MAX_VFS: u16 = 4096;

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ConfigError {
    #[error("{0} VFs is more than the switch supports ({MAX_VFS})")]
    TooManyVfs(u16),
    #[error("PF MAC {0} is not a valid unicast address")]
    InvalidPfMac(MacAddr),
}

/// A multiply-mix hasher for the 48-bit MAC keys of the forwarding database (the default SipHash
/// costs more than the rest of a lookup). The table only holds administrator- and VF-configured
/// addresses, each VF bounded, so collision flooding is not a concern.
#[derive(Default)]
struct MacHasher(u64);

impl Hasher for MacHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, x: u64) {
        let mixed = (self.0 ^ x).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = mixed ^ (mixed >> 29);
    }
}

fn mac_key(mac: MacAddr) -> u64 {
    let b = mac.0;
    u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
}

/// Port index: uplinks first, then the PF, then the VFs. Port order is delivery order.
type PortIdx = u32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Uplink,
    Pf,
    Vf(usize),
}

struct Port {
    id: PortId,
    kind: Kind,
    counters: PortCounters,
    capture: Option<CaptureHook>,
    /// Strip any VLAN tag on delivery and report it (VMOLR.STRVLAN). Forced for port-VLAN VFs.
    rx_vlan_strip: bool,
}

/// A VF's policy with the derived lookup state the datapath needs.
struct VfState {
    policy: VfPolicy,
    port_vlan: Option<PortVlan>,
    vlans: Bitmap4096,
    mc: Bitmap4096,
    allmulti: bool,
    promisc: bool,
    shaper: Option<TokenBucket>,
}

impl VfState {
    fn new(policy: VfPolicy) -> VfState {
        let mut state = VfState {
            policy: VfPolicy::default(),
            port_vlan: None,
            vlans: Bitmap4096::default(),
            mc: Bitmap4096::default(),
            allmulti: false,
            promisc: false,
            shaper: None,
        };
        state.apply(policy);
        state
    }

    fn apply(&mut self, policy: VfPolicy) {
        self.port_vlan = policy.effective_port_vlan();
        self.vlans = Bitmap4096::from_values(&policy.vlan_filters);
        self.mc = Bitmap4096::from_values(&policy.mc_hashes);
        self.allmulti = policy.effective_allmulti();
        self.promisc = policy.effective_promisc();
        let rate = u64::from(policy.max_tx_rate) * BPS_PER_MBPS;
        match (&mut self.shaper, rate) {
            (_, 0) => self.shaper = None,
            (Some(shaper), rate) if shaper.rate_bps() != rate => shaper.set_rate(rate),
            (Some(_), _) => {}
            (None, rate) => self.shaper = Some(TokenBucket::new(rate)),
        }
        self.policy = policy;
    }

    fn member(&self, vid: u16) -> bool {
        match self.port_vlan {
            Some(pv) => vid == pv.vid,
            None => vid == UNTAGGED || self.vlans.contains(vid),
        }
    }
}

struct PfState {
    policy: PfPolicy,
    vlans: Bitmap4096,
    mc: Bitmap4096,
}

impl PfState {
    fn new(policy: PfPolicy) -> PfState {
        PfState {
            vlans: Bitmap4096::from_values(&policy.vlans),
            mc: Bitmap4096::from_values(&policy.mc_hashes),
            policy,
        }
    }

    fn member(&self, vid: u16) -> bool {
        vid == UNTAGGED || self.policy.vlan_promisc || self.vlans.contains(vid)
    }
}

/// How a destination receives the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    /// The bytes the ingress port sent.
    Original,
    /// The original with the port VLAN tag inserted (ingress is a port-VLAN VF).
    Tagged,
    /// The original with its outer tag removed.
    Stripped,
}

/// The embedded switch of one PF (legacy / VEB mode). See the crate documentation for the rules.
pub struct Eswitch {
    config: EswitchConfig,
    ports: Vec<Port>,
    vfs: Vec<VfState>,
    pf: PfState,
    pf_idx: PortIdx,
    /// Destination MAC → ports owning it (several ports may own one MAC, as several RAR entries
    /// may carry the same address: each gets a copy).
    fdb: HashMap<u64, SmallVec<[PortIdx; 2]>, BuildHasherDefault<MacHasher>>,
    link_up: bool,
    now_ns: u64,
}

impl Eswitch {
    pub fn new(config: EswitchConfig) -> Result<Eswitch, ConfigError> {
        if config.num_vfs > MAX_VFS {
            return Err(ConfigError::TooManyVfs(config.num_vfs));
        }
        if let Some(mac) = config.pf_mac.filter(|m| !m.is_valid_unicast()) {
            return Err(ConfigError::InvalidPfMac(mac));
        }
        let mut ports = Vec::new();
        for n in 0..config.num_uplinks {
            ports.push(Port {
                id: PortId::Uplink(n),
                kind: Kind::Uplink,
                counters: PortCounters::default(),
                capture: None,
                rx_vlan_strip: false,
            });
        }
        let pf_idx = ports.len() as PortIdx;
        ports.push(Port {
            id: PortId::Pf,
            kind: Kind::Pf,
            counters: PortCounters::default(),
            capture: None,
            rx_vlan_strip: false,
        });
        for n in 0..config.num_vfs {
            ports.push(Port {
                id: PortId::Vf(n),
                kind: Kind::Vf(usize::from(n)),
                counters: PortCounters::default(),
                capture: None,
                // igb sets VMOLR.STRVLAN for a VF pool that joins a VLAN (spec §4.3 SET_VLAN).
                rx_vlan_strip: true,
            });
        }
        let vfs = (0..config.num_vfs)
            .map(|_| VfState::new(VfPolicy::default()))
            .collect();
        let pf = PfState::new(PfPolicy {
            macs: config.pf_mac.into_iter().collect(),
            ..PfPolicy::default()
        });
        let mut switch = Eswitch {
            config,
            ports,
            vfs,
            pf,
            pf_idx,
            fdb: HashMap::default(),
            link_up: true,
            now_ns: 0,
        };
        switch.rebuild_fdb();
        Ok(switch)
    }

    pub fn config(&self) -> &EswitchConfig {
        &self.config
    }

    /// Every port, in delivery order: uplinks, PF, VFs.
    pub fn ports(&self) -> impl Iterator<Item = PortId> + '_ {
        self.ports.iter().map(|p| p.id)
    }

    fn index(&self, port: PortId) -> Option<PortIdx> {
        let uplinks = u32::from(self.config.num_uplinks);
        match port {
            PortId::Uplink(n) if u32::from(n) < uplinks => Some(u32::from(n)),
            PortId::Pf => Some(self.pf_idx),
            PortId::Vf(n) if n < self.config.num_vfs => Some(self.pf_idx + 1 + u32::from(n)),
            _ => None,
        }
    }

    fn vf_index(&self, vf: u16) -> Result<usize, PolicyError> {
        if vf < self.config.num_vfs {
            Ok(usize::from(vf))
        } else {
            Err(PolicyError::NoSuchVf {
                vf,
                num_vfs: self.config.num_vfs,
            })
        }
    }

    // ---------------------------------------------------------------------------------------
    // Policy

    /// Replaces VF `vf`'s policy after validating it (see [`VfPolicy::validate`]). On error
    /// nothing changes. A changed `max_tx_rate` re-rates the VF's shaper, keeping earned credit.
    pub fn set_policy(&mut self, vf: u16, policy: VfPolicy) -> Result<(), PolicyError> {
        let n = self.vf_index(vf)?;
        policy.validate(self.config.link_speed_mbps)?;
        self.vfs[n].apply(policy);
        self.rebuild_fdb();
        Ok(())
    }

    pub fn policy(&self, vf: u16) -> Option<&VfPolicy> {
        self.vfs.get(usize::from(vf)).map(|s| &s.policy)
    }

    fn update_policy(
        &mut self,
        vf: u16,
        change: impl FnOnce(&mut VfPolicy),
    ) -> Result<(), PolicyError> {
        let n = self.vf_index(vf)?;
        let mut policy = self.vfs[n].policy.clone();
        change(&mut policy);
        self.set_policy(vf, policy)
    }

    /// `ip link set PF vf N mac M`: the all-zero address clears the administrative MAC.
    pub fn set_vf_mac(&mut self, vf: u16, mac: MacAddr) -> Result<(), PolicyError> {
        if !mac.is_zero() && !mac.is_valid_unicast() {
            return Err(PolicyError::InvalidMac { mac });
        }
        self.update_policy(vf, |p| {
            if mac.is_zero() {
                p.mac = None;
                p.admin_mac = false;
            } else {
                p.mac = Some(mac);
                p.admin_mac = true;
            }
        })
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
        self.vf_index(vf)?;
        if vid > MAX_VID {
            return Err(PolicyError::InvalidVid { vid });
        }
        if qos > MAX_QOS {
            return Err(PolicyError::InvalidQos { qos });
        }
        if proto != VlanProto::Dot1Q {
            return Err(PolicyError::VlanProtoNotSupported { proto });
        }
        self.update_policy(vf, |p| {
            p.port_vlan = (vid != 0 || qos != 0).then_some(PortVlan { vid, qos });
        })
    }

    /// `ip link set PF vf N min_tx_rate MIN max_tx_rate MAX` (Mbit/s; MIN must be 0).
    pub fn set_vf_rate(
        &mut self,
        vf: u16,
        min_mbps: u32,
        max_mbps: u32,
    ) -> Result<(), PolicyError> {
        self.update_policy(vf, |p| {
            p.min_tx_rate = min_mbps;
            p.max_tx_rate = max_mbps;
        })
    }

    /// `ip link set PF vf N spoofchk on|off`.
    pub fn set_vf_spoofchk(&mut self, vf: u16, on: bool) -> Result<(), PolicyError> {
        self.update_policy(vf, |p| p.spoofchk = on)
    }

    /// `ip link set PF vf N trust on|off`.
    pub fn set_vf_trust(&mut self, vf: u16, on: bool) -> Result<(), PolicyError> {
        self.update_policy(vf, |p| p.trust = on)
    }

    /// `ip link set PF vf N state auto|enable|disable`.
    pub fn set_vf_link_state(&mut self, vf: u16, state: LinkState) -> Result<(), PolicyError> {
        self.update_policy(vf, |p| p.link_state = state)
    }

    /// The PF pool's receive configuration (its MACs, multicast, VLANs, promiscuous modes).
    pub fn set_pf_policy(&mut self, policy: PfPolicy) -> Result<(), PolicyError> {
        policy.validate()?;
        self.pf = PfState::new(policy);
        self.rebuild_fdb();
        Ok(())
    }

    pub fn pf_policy(&self) -> &PfPolicy {
        &self.pf.policy
    }

    /// The physical link (PF link / uplink carrier). Down: the uplinks send and receive nothing
    /// and VFs in `state auto` are down; VFs in `state enable` still talk to each other and the PF.
    pub fn set_link(&mut self, up: bool) {
        self.link_up = up;
    }

    pub fn link_up(&self) -> bool {
        self.link_up
    }

    /// RX VLAN stripping of a port (the device model mirrors VMOLR.STRVLAN / CTRL.VME here).
    /// Default: on for VFs, off for the PF. Port-VLAN VFs always strip; uplinks never do.
    pub fn set_rx_vlan_strip(&mut self, port: PortId, on: bool) -> Result<(), NoSuchPort> {
        let idx = self.index(port).ok_or(NoSuchPort(port))?;
        self.ports[idx as usize].rx_vlan_strip = on;
        Ok(())
    }

    fn rebuild_fdb(&mut self) {
        self.fdb.clear();
        for &mac in &self.pf.policy.macs {
            let owners = self.fdb.entry(mac_key(mac)).or_default();
            if !owners.contains(&self.pf_idx) {
                owners.push(self.pf_idx);
            }
        }
        for (n, vf) in self.vfs.iter().enumerate() {
            let idx = self.pf_idx + 1 + n as PortIdx;
            for &mac in vf.policy.mac.iter().chain(&vf.policy.mac_filters) {
                let owners = self.fdb.entry(mac_key(mac)).or_default();
                if !owners.contains(&idx) {
                    owners.push(idx);
                }
            }
        }
        for owners in self.fdb.values_mut() {
            owners.sort_unstable();
        }
    }

    // ---------------------------------------------------------------------------------------
    // Time, shaping, counters, capture

    /// Sets the clock used for capture timestamps (ns, the caller's clock).
    pub fn set_time(&mut self, now_ns: u64) {
        self.now_ns = now_ns;
    }

    /// Asks VF `vf`'s shaper whether a frame of `frame_len` bytes (without FCS; the shaper
    /// charges `(frame_len + 4) × 8` bits) may be sent at `now_ns`. `Err(NextSendAt(t))`: keep
    /// the frame queued and ask again at `t`. A VF without `max_tx_rate`, or an unknown VF, is
    /// never held back (an unknown VF's frame is then dropped by `process`).
    pub fn tx_admit(&mut self, vf: u16, now_ns: u64, frame_len: usize) -> Result<(), NextSendAt> {
        self.now_ns = now_ns;
        let n = usize::from(vf);
        let Some(shaper) = self.vfs.get_mut(n).and_then(|s| s.shaper.as_mut()) else {
            return Ok(());
        };
        let bits = (frame_len as u64 + ETH_FCS_LEN as u64) * 8;
        let verdict = shaper.try_send(now_ns, bits);
        if verdict.is_err() {
            let idx = (self.pf_idx as usize) + 1 + n;
            self.ports[idx].counters.tx_deferred += 1;
        }
        verdict
    }

    /// VF `vf`'s shaper, if it has a rate limit.
    pub fn shaper(&self, vf: u16) -> Option<&TokenBucket> {
        self.vfs
            .get(usize::from(vf))
            .and_then(|s| s.shaper.as_ref())
    }

    pub fn counters(&self, port: PortId) -> Option<&PortCounters> {
        self.index(port)
            .map(|idx| &self.ports[idx as usize].counters)
    }

    /// Every port's counters, in port order.
    pub fn all_counters(&self) -> impl Iterator<Item = (PortId, &PortCounters)> + '_ {
        self.ports.iter().map(|p| (p.id, &p.counters))
    }

    pub fn reset_counters(&mut self, port: PortId) -> Result<(), NoSuchPort> {
        let idx = self.index(port).ok_or(NoSuchPort(port))?;
        self.ports[idx as usize].counters = PortCounters::default();
        Ok(())
    }

    /// Records a drop that happened outside the switch (the device model's full RX ring:
    /// [`DropReason::RxFull`]; a policing caller: [`DropReason::Rate`]) in `port`'s counters.
    pub fn count_drop(&mut self, port: PortId, reason: DropReason) -> Result<(), NoSuchPort> {
        let idx = self.index(port).ok_or(NoSuchPort(port))?;
        self.ports[idx as usize].counters.drops.add(reason);
        Ok(())
    }

    /// Installs (or with `None` removes) the capture callback of `port`.
    pub fn set_capture(
        &mut self,
        port: PortId,
        hook: Option<CaptureHook>,
    ) -> Result<(), NoSuchPort> {
        let idx = self.index(port).ok_or(NoSuchPort(port))?;
        self.ports[idx as usize].capture = hook;
        Ok(())
    }

    // ---------------------------------------------------------------------------------------
    // The datapath

    fn port_up(&self, idx: PortIdx) -> bool {
        match self.ports[idx as usize].kind {
            Kind::Uplink => self.link_up,
            Kind::Pf => true,
            Kind::Vf(n) => match self.vfs[n].policy.link_state {
                LinkState::Auto => self.link_up,
                LinkState::Enable => true,
                LinkState::Disable => false,
            },
        }
    }

    fn member(&self, idx: PortIdx, vid: u16) -> bool {
        match self.ports[idx as usize].kind {
            Kind::Uplink => true,
            Kind::Pf => self.pf.member(vid),
            Kind::Vf(n) => self.vfs[n].member(vid),
        }
    }

    fn max_frame(&self, idx: PortIdx) -> u16 {
        match self.ports[idx as usize].kind {
            Kind::Uplink | Kind::Pf => self.config.port_max_frame,
            Kind::Vf(n) => self.vfs[n].policy.max_frame,
        }
    }

    /// Multicast acceptance by address (MTA hash / allmulti), before the VLAN check.
    fn wants_multicast(&self, idx: PortIdx, hash: u16) -> bool {
        match self.ports[idx as usize].kind {
            Kind::Uplink => true,
            Kind::Pf => {
                let pf = &self.pf;
                pf.policy.allmulti || pf.policy.promisc || pf.mc.contains(hash)
            }
            Kind::Vf(n) => {
                let vf = &self.vfs[n];
                vf.allmulti || vf.mc.contains(hash)
            }
        }
    }

    /// Unicast promiscuous (takes unicast nobody owns, in its VLANs).
    fn promiscuous(&self, idx: PortIdx) -> bool {
        match self.ports[idx as usize].kind {
            Kind::Uplink => false,
            Kind::Pf => self.pf.policy.promisc,
            Kind::Vf(n) => self.vfs[n].promisc,
        }
    }

    fn drop_frame(&mut self, out: &mut Deliveries, idx: PortIdx, reason: DropReason) {
        let port = &mut self.ports[idx as usize];
        port.counters.drops.add(reason);
        debug!(port = %port.id, %reason, "eswitch drop");
        out.drops.push(DropRecord {
            port: port.id,
            reason,
        });
    }

    /// Switches one frame sent by `ingress`. Allocates only the returned copies' tagged or
    /// stripped variants when needed; see [`Eswitch::process_into`] to reuse the result buffer.
    pub fn process(&mut self, ingress: PortId, frame: Bytes) -> Deliveries {
        let mut out = Deliveries::default();
        self.process_into(ingress, frame, &mut out);
        out
    }

    /// [`Eswitch::process`] into a caller-owned result (cleared first).
    pub fn process_into(&mut self, ingress: PortId, frame: Bytes, out: &mut Deliveries) {
        out.clear();
        let Some(in_idx) = self.index(ingress) else {
            debug!(port = %ingress, "eswitch: frame from unknown port");
            out.drops.push(DropRecord {
                port: ingress,
                reason: DropReason::UnknownPort,
            });
            return;
        };
        let now = self.now_ns;
        if let Some(hook) = self.ports[in_idx as usize].capture.as_mut() {
            hook(&CaptureRecord {
                port: ingress,
                direction: Direction::Tx,
                time_ns: now,
                frame: &frame,
                stripped_tci: None,
            });
        }
        let hdr = match EthHeader::parse(&frame) {
            Ok(hdr) => hdr,
            Err(_) => return self.drop_frame(out, in_idx, DropReason::Malformed),
        };
        let in_kind = self.ports[in_idx as usize].kind;

        // ---- Ingress (TX) checks and VLAN insertion (spec §6.2 steps 1–3).
        if !self.port_up(in_idx) {
            return self.drop_frame(out, in_idx, DropReason::LinkDown);
        }
        // The tag the frame carries inside the switch, and whether it was inserted here.
        let mut wire_tci = hdr.tag;
        let mut inserted = false;
        if let Kind::Vf(n) = in_kind {
            let vf = &self.vfs[n];
            if vf.policy.spoofchk && !vf.policy.owns(hdr.src) {
                return self.drop_frame(out, in_idx, DropReason::SpoofMac);
            }
            match (vf.port_vlan, hdr.tag) {
                (Some(_), Some(_)) if vf.policy.spoofchk => {
                    return self.drop_frame(out, in_idx, DropReason::SpoofVlan);
                }
                (Some(pv), _) => {
                    // VMVIR "always insert": the port VLAN tag goes in front of whatever the VF
                    // sent (with spoofchk off a VF tag becomes an inner tag, still in VLAN pv).
                    wire_tci = Some(VlanTci::new(pv.vid, pv.qos));
                    inserted = true;
                }
                (None, Some(tag))
                    if vf.policy.spoofchk
                        && tag.vid() != UNTAGGED
                        && !vf.vlans.contains(tag.vid()) =>
                {
                    return self.drop_frame(out, in_idx, DropReason::SpoofVlan);
                }
                (None, _) => {}
            }
        }
        let in_tagged_len = if hdr.tag.is_some() {
            crate::wire::VLAN_TAG_LEN
        } else {
            0
        };
        // Length without any 802.1Q tag: what frame-size limits are measured against (igb adds
        // the tag allowance to RLPML for VLAN pools).
        let untagged_len = frame.len() - if inserted { 0 } else { in_tagged_len };
        if untagged_len + ETH_FCS_LEN > usize::from(self.max_frame(in_idx)) {
            return self.drop_frame(out, in_idx, DropReason::Oversize);
        }
        let vid = wire_tci.map_or(UNTAGGED, VlanTci::vid);
        let cast = if hdr.dst.is_broadcast() {
            Cast::Broadcast
        } else if hdr.dst.is_multicast() {
            Cast::Multicast
        } else {
            Cast::Unicast
        };
        self.ports[in_idx as usize]
            .counters
            .count_tx(frame.len(), cast);

        // ---- Lookup (spec §6.1 / §6.2 step 4, anchors §2.3).
        let from_uplink = in_kind == Kind::Uplink;
        let mut dests: SmallVec<[PortIdx; 8]> = SmallVec::new();
        let n_ports = self.ports.len() as PortIdx;
        // A NIC does not bridge one wire to another: nothing from an uplink goes to an uplink.
        let candidate = |idx: PortIdx, this: &Self| {
            idx != in_idx && !(from_uplink && this.ports[idx as usize].kind == Kind::Uplink)
        };
        match cast {
            Cast::Broadcast => {
                for idx in 0..n_ports {
                    if candidate(idx, self) && self.member(idx, vid) {
                        dests.push(idx);
                    }
                }
            }
            Cast::Multicast => {
                let hash = mta_hash(hdr.dst);
                for idx in 0..n_ports {
                    if candidate(idx, self)
                        && self.wants_multicast(idx, hash)
                        && self.member(idx, vid)
                    {
                        dests.push(idx);
                    }
                }
            }
            Cast::Unicast => {
                let owners = self.fdb.get(&mac_key(hdr.dst)).cloned().unwrap_or_default();
                if !owners.is_empty() {
                    for &idx in &owners {
                        if idx == in_idx {
                            continue;
                        }
                        if self.member(idx, vid) {
                            dests.push(idx);
                        } else {
                            self.drop_frame(out, idx, DropReason::VlanFilter);
                        }
                    }
                    if owners.iter().all(|&o| o == in_idx) {
                        // The datasheet forbids looping a frame back to its own pool.
                        return self.drop_frame(out, in_idx, DropReason::NoRoute);
                    }
                } else {
                    for idx in 0..n_ports {
                        if !candidate(idx, self) || !self.member(idx, vid) {
                            continue;
                        }
                        let takes = match self.ports[idx as usize].kind {
                            // Unknown unicast from inside goes out on the wire (VEB: no flood).
                            Kind::Uplink => true,
                            // From the wire the PF is the default pool (VT_CTL.DEF_PL).
                            Kind::Pf => from_uplink || self.promiscuous(idx),
                            Kind::Vf(_) => self.promiscuous(idx),
                        };
                        if takes {
                            dests.push(idx);
                        }
                    }
                    if dests.is_empty() {
                        return self.drop_frame(out, in_idx, DropReason::NoRoute);
                    }
                }
            }
        }

        // ---- Per-destination RX filters: link, size, VLAN strip (spec §6.1 steps 8, 11).
        let mut plan: SmallVec<[(PortIdx, Form, Option<VlanTci>); 8]> = SmallVec::new();
        for idx in dests {
            if !self.port_up(idx) {
                self.drop_frame(out, idx, DropReason::LinkDown);
                continue;
            }
            if untagged_len + ETH_FCS_LEN > usize::from(self.max_frame(idx)) {
                self.drop_frame(out, idx, DropReason::Oversize);
                continue;
            }
            let port = &self.ports[idx as usize];
            let strip = match port.kind {
                Kind::Uplink => false,
                Kind::Pf => port.rx_vlan_strip,
                Kind::Vf(n) => port.rx_vlan_strip || self.vfs[n].port_vlan.is_some(),
            };
            let entry = match (strip, wire_tci, inserted) {
                (true, Some(tci), true) => (idx, Form::Original, Some(tci)),
                (true, Some(tci), false) => (idx, Form::Stripped, Some(tci)),
                (false, Some(_), true) => (idx, Form::Tagged, None),
                _ => (idx, Form::Original, None),
            };
            plan.push(entry);
        }

        // ---- Materialise: each variant built at most once; the original moves into its last use.
        let tagged = match wire_tci {
            Some(tci) if inserted && plan.iter().any(|p| p.1 == Form::Tagged) => {
                Some(insert_tag(&frame, tci))
            }
            _ => None,
        };
        let stripped = if plan.iter().any(|p| p.1 == Form::Stripped) {
            Some(strip_tag(&frame))
        } else {
            None
        };
        let mut original_uses = plan.iter().filter(|p| p.1 == Form::Original).count();
        let mut original = Some(frame);
        for (idx, form, stripped_tci) in plan {
            let bytes = match form {
                Form::Original => {
                    original_uses -= 1;
                    if original_uses == 0 {
                        original.take().unwrap_or_default()
                    } else {
                        original.clone().unwrap_or_default()
                    }
                }
                Form::Tagged => tagged.clone().unwrap_or_default(),
                Form::Stripped => stripped.clone().unwrap_or_default(),
            };
            let port = &mut self.ports[idx as usize];
            port.counters.count_rx(bytes.len(), cast);
            if let Some(hook) = port.capture.as_mut() {
                hook(&CaptureRecord {
                    port: port.id,
                    direction: Direction::Rx,
                    time_ns: now,
                    frame: &bytes,
                    stripped_tci,
                });
            }
            out.deliveries.push(Delivery {
                port: port.id,
                frame: bytes,
                stripped_tci,
            });
        }
    }
}

#[cfg(test)]
#[path = "switch_tests.rs"]
mod tests;
