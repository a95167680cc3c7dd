//! The switch proper: ports, forwarding database, the `process` decision function.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use thiserror::Error;
use tracing::debug;

use crate::counters::{Cast, DropReason, PortCounters};
use crate::filter::{mta_hash, Bitmap4096};
use crate::policy::{
    LinkState, MacAddr, PfPolicy, PolicyError, PortVlan, VfPolicy, VlanProto, MAX_FRAME_LIMIT,
};
use crate::port::{Deliveries, Delivery, DropRecord, NoSuchPort, PortId};
use crate::shaper::{NextSendAt, TokenBucket};
use crate::wire::ethernet::{FCS_LEN, VLAN_TAG_LEN};
use crate::wire::{EtherTypes, EthernetFrame, VlanTag, VlanTci};

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

/// The forwarding database: an open-addressing table from a 48-bit MAC key to the range of
/// `Eswitch::fdb_owners` that lists the ports owning that address. Rebuilt whole on every
/// configuration change, read once per unicast frame; sized to at most half full so a lookup
/// is one multiply and, almost always, one probe. It only holds administrator- and
/// VF-configured addresses, each VF bounded, so collision flooding is not a concern.
#[derive(Clone, Debug, Default)]
struct MacTable {
    /// (key, first owner, end of owners); `EMPTY_KEY` marks a free slot.
    slots: Vec<(u64, u32, u32)>,
    mask: usize,
}

/// No MAC key has bits above 47 set.
const EMPTY_KEY: u64 = u64::MAX;

impl MacTable {
    /// Builds the table from `(key, owner range)` entries with distinct keys.
    fn build(entries: &[(u64, u32, u32)]) -> MacTable {
        let size = (entries.len() * 2).next_power_of_two().max(8);
        let mut table = MacTable {
            slots: vec![(EMPTY_KEY, 0, 0); size],
            mask: size - 1,
        };
        for &(key, start, end) in entries {
            let mut slot = MacTable::home(key, table.mask);
            while table.slots[slot].0 != EMPTY_KEY {
                slot = (slot + 1) & table.mask;
            }
            table.slots[slot] = (key, start, end);
        }
        table
    }

    #[inline]
    fn home(key: u64, mask: usize) -> usize {
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as usize & mask
    }

    /// The owner range of `key`, or an empty range.
    #[inline]
    fn get(&self, key: u64) -> (u32, u32) {
        let mut slot = MacTable::home(key, self.mask);
        // At most half full, so a free slot always ends the probe.
        for _ in 0..self.slots.len() {
            match self.slots.get(slot) {
                Some(&(k, start, end)) if k == key => return (start, end),
                Some(&(EMPTY_KEY, _, _)) | None => return (0, 0),
                Some(_) => slot = (slot + 1) & self.mask,
            }
        }
        (0, 0)
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
    /// Strip any VLAN tag on delivery and report it (VMOLR.STRVLAN). Forced for port-VLAN VFs.
    rx_vlan_strip: bool,
    /// The port's own carrier ([`Eswitch::set_port_carrier`]): off, the port is down whatever
    /// its link state and the PF link say.
    carrier: bool,
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

/// What every destination's receive filter needs to know about the frame being switched.
#[derive(Clone, Copy)]
struct FrameCtx {
    /// Frame length without the outer tag (what frame-size limits are measured against).
    untagged_len: usize,
    /// The tag the frame carries inside the switch.
    wire_tci: Option<VlanTci>,
    /// True when `wire_tci` was inserted by the switch (port VLAN), not sent by the port.
    inserted: bool,
}

/// The copies to make: destination, variant, stripped tag; and which variants are needed.
#[derive(Default)]
struct Plan {
    copies: SmallVec<[(PortIdx, Form, Option<VlanTci>); 8]>,
    /// Copies of each variant (indexed by `Form as usize`).
    uses: [usize; 3],
}

/// A port's VLAN membership, as the receive path tests it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Membership {
    /// Uplinks (trunks) and a VLAN-promiscuous PF.
    All,
    /// A port-VLAN VF: only its VID.
    Only(u16),
    /// Untagged frames plus the VIDs in the port's VLAN bitmap.
    Joined,
}

/// What the datapath needs to know about a port, flattened from its policy so that the
/// per-frame path reads one small record per port. Refreshed on every configuration change.
#[derive(Clone, Copy, Debug)]
struct Profile {
    kind: Kind,
    up: bool,
    /// Strip the tag on delivery (port-VLAN VF, or RX VLAN stripping on; never for uplinks).
    strip: bool,
    /// Takes unicast nobody owns (trusted promiscuous VF, promiscuous PF).
    promisc: bool,
    /// Takes every multicast (uplinks, allmulti/promiscuous PF, effective allmulti on a VF).
    allmulti: bool,
    max_frame: u16,
    /// Receive enabled (a VF's VFRE bit; always on for the PF and uplinks).
    rx: bool,
    /// Transmit enabled (a VF's VFTE bit).
    tx: bool,
    /// Takes broadcast (a VF's VMOLR.BAM).
    bam: bool,
    /// Takes untagged frames when not a port-VLAN VF (a VF's VMOLR.AUPE).
    aupe: bool,
    vlan: Membership,
}

/// The embedded switch of one PF (legacy / VEB mode). See the crate documentation for the rules.
pub struct Eswitch {
    config: EswitchConfig,
    ports: Vec<Port>,
    vfs: Vec<VfState>,
    pf: PfState,
    pf_idx: PortIdx,
    /// One per port, same order as `ports`.
    profiles: Vec<Profile>,
    /// Destination MAC → the range of `fdb_owners` listing the ports owning it (several ports
    /// may own one MAC, as several RAR entries may carry the same address: each gets a copy).
    fdb: MacTable,
    fdb_owners: Vec<PortIdx>,
    link_up: bool,
    /// VM-to-VM loopback (DTXSWC.LOOPBACK_EN on the 82576): frames from the PF and the VFs may
    /// go to other internal ports; off, they all go to the wire.
    loopback: bool,
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
                rx_vlan_strip: false,
                carrier: true,
            });
        }
        let pf_idx = ports.len() as PortIdx;
        ports.push(Port {
            id: PortId::Pf,
            kind: Kind::Pf,
            counters: PortCounters::default(),
            rx_vlan_strip: false,
            carrier: true,
        });
        for n in 0..config.num_vfs {
            ports.push(Port {
                id: PortId::Vf(n),
                kind: Kind::Vf(usize::from(n)),
                counters: PortCounters::default(),
                // igb sets VMOLR.STRVLAN for a VF pool that joins a VLAN (`igb_set_vf_vlan_msg`).
                rx_vlan_strip: true,
                carrier: true,
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
            profiles: Vec::new(),
            fdb: MacTable::default(),
            fdb_owners: Vec::new(),
            link_up: true,
            loopback: true,
        };
        switch.refresh();
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
    // Shaping and counters

    /// Asks VF `vf`'s shaper whether a frame of `frame_len` bytes (without FCS; the shaper
    /// charges `(frame_len + 4) × 8` bits) may be sent at `now_ns`. `Err(NextSendAt(t))`: keep
    /// the frame queued and ask again at `t`. A VF without `max_tx_rate`, or an unknown VF, is
    /// never held back (an unknown VF's frame is then dropped by `process`).
    pub fn tx_admit(&mut self, vf: u16, now_ns: u64, frame_len: usize) -> Result<(), NextSendAt> {
        let n = usize::from(vf);
        let Some(shaper) = self.vfs.get_mut(n).and_then(|s| s.shaper.as_mut()) else {
            return Ok(());
        };
        let bits = (frame_len as u64 + FCS_LEN as u64) * 8;
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

    // ---------------------------------------------------------------------------------------
    // The datapath

    #[inline]
    fn member(&self, idx: PortIdx, vid: u16) -> bool {
        match self.profiles[idx as usize].vlan {
            Membership::All => true,
            Membership::Only(v) => v == vid,
            Membership::Joined => {
                if vid == UNTAGGED {
                    self.profiles[idx as usize].aupe
                } else {
                    self.joined(idx, vid)
                }
            }
        }
    }

    /// VLAN bitmap lookup, only for tagged frames.
    fn joined(&self, idx: PortIdx, vid: u16) -> bool {
        match self.profiles[idx as usize].kind {
            Kind::Uplink => true,
            Kind::Pf => self.pf.vlans.contains(vid),
            Kind::Vf(n) => self.vfs[n].vlans.contains(vid),
        }
    }

    /// Multicast acceptance by address (allmulti or MTA hash), before the VLAN check.
    fn wants_multicast(&self, idx: PortIdx, hash: u16) -> bool {
        let profile = &self.profiles[idx as usize];
        profile.allmulti
            || match profile.kind {
                Kind::Uplink => true,
                Kind::Pf => self.pf.mc.contains(hash),
                Kind::Vf(n) => self.vfs[n].mc.contains(hash),
            }
    }

    /// Receive filters of one destination (QEMU `igb_receive_assign`: per-pool size check, then
    /// VMOLR.STRVLAN): link, frame size, and
    /// which variant of the frame it gets.
    #[inline]
    fn admit(&mut self, out: &mut Deliveries, plan: &mut Plan, idx: PortIdx, ctx: FrameCtx) {
        let p = &self.profiles[idx as usize];
        if !p.up {
            return self.drop_frame(out, idx, DropReason::LinkDown);
        }
        if !p.rx {
            return self.drop_frame(out, idx, DropReason::RxDisabled);
        }
        if ctx.untagged_len + FCS_LEN > usize::from(p.max_frame) {
            return self.drop_frame(out, idx, DropReason::Oversize);
        }
        let copy = match (p.strip, ctx.wire_tci, ctx.inserted) {
            (true, Some(tci), true) => (idx, Form::Original, Some(tci)),
            (true, Some(tci), false) => (idx, Form::Stripped, Some(tci)),
            (false, Some(_), true) => (idx, Form::Tagged, None),
            _ => (idx, Form::Original, None),
        };
        plan.uses[copy.1 as usize] += 1;
        plan.copies.push(copy);
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
    #[inline]
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
        let Ok(eth) = EthernetFrame::new_checked(&frame[..]) else {
            return self.drop_frame(out, in_idx, DropReason::Malformed);
        };
        let (dst, src) = (eth.dst_addr(), eth.src_addr());
        // The switch's tag is an outer 802.1Q C-tag (VET default); behind any other TPID the
        // frame is untagged to it.
        let tag = eth
            .outer_tag()
            .filter(|t| t.tpid == EtherTypes::Vlan)
            .map(|t| t.tci);
        let inp = self.profiles[in_idx as usize];

        // ---- Ingress (TX) checks and VLAN insertion (QEMU `igb_tx_insert_vlan`; anti-spoof as
        // igb programs DTXSWC in `igb_vmm_control`).
        if !inp.up {
            return self.drop_frame(out, in_idx, DropReason::LinkDown);
        }
        if !inp.tx {
            return self.drop_frame(out, in_idx, DropReason::TxDisabled);
        }
        // The tag the frame carries inside the switch, and whether it was inserted here.
        let mut wire_tci = tag;
        let mut inserted = false;
        if let Kind::Vf(n) = inp.kind {
            let vf = &self.vfs[n];
            let mac_check = vf.policy.spoofchk && !vf.policy.spoofchk_suspended;
            let vlan_check = vf.policy.vlan_spoofchk && !vf.policy.spoofchk_suspended;
            if mac_check && !vf.policy.owns(src) {
                return self.drop_frame(out, in_idx, DropReason::SpoofMac);
            }
            match (vf.port_vlan, tag) {
                (Some(_), Some(_)) if vlan_check => {
                    return self.drop_frame(out, in_idx, DropReason::SpoofVlan);
                }
                (Some(pv), _) => {
                    // VMVIR "always insert": the port VLAN tag goes in front of whatever the VF
                    // sent (with spoofchk off a VF tag becomes an inner tag, still in VLAN pv).
                    wire_tci = Some(VlanTci::new(pv.vid, pv.qos));
                    inserted = true;
                }
                (None, Some(tag))
                    if vlan_check && tag.vid() != UNTAGGED && !vf.vlans.contains(tag.vid()) =>
                {
                    return self.drop_frame(out, in_idx, DropReason::SpoofVlan);
                }
                (None, _) => {}
            }
        }
        // Length without the outer 802.1Q tag: what frame-size limits are measured against
        // (igb adds the tag allowance to RLPML for VLAN pools).
        let untagged_len = if tag.is_some() && !inserted {
            frame.len() - VLAN_TAG_LEN
        } else {
            frame.len()
        };
        if untagged_len + FCS_LEN > usize::from(inp.max_frame) {
            return self.drop_frame(out, in_idx, DropReason::Oversize);
        }
        let vid = wire_tci.map_or(UNTAGGED, VlanTci::vid);
        let cast = if dst.is_broadcast() {
            Cast::Broadcast
        } else if dst.is_multicast() {
            Cast::Multicast
        } else {
            Cast::Unicast
        };
        self.ports[in_idx as usize]
            .counters
            .count_tx(frame.len(), cast);

        // ---- Lookup (QEMU `igb_receive_assign` and `igb_tx_pkt_switch`, which cite 82576
        // datasheet 7.10.3.6: VM-to-VM loopback).
        let from_uplink = inp.kind == Kind::Uplink;
        // A NIC does not bridge one wire to another: nothing from an uplink goes to an uplink.
        let first = if from_uplink {
            u32::from(self.config.num_uplinks)
        } else {
            0
        };
        let n_ports = self.profiles.len() as PortIdx;
        let ctx = FrameCtx {
            untagged_len,
            wire_tci,
            inserted,
        };
        let mut plan = Plan::default();
        // Without VM-to-VM loopback everything from inside goes to the wire alone, unicast to
        // an internal port's address included.
        let local = from_uplink || self.loopback;
        let n_ports = if local {
            n_ports
        } else {
            PortIdx::from(self.config.num_uplinks)
        };
        match cast {
            Cast::Broadcast => {
                for idx in first..n_ports {
                    if idx != in_idx && self.profiles[idx as usize].bam && self.member(idx, vid) {
                        self.admit(out, &mut plan, idx, ctx);
                    }
                }
            }
            Cast::Multicast => {
                let hash = mta_hash(dst);
                for idx in first..n_ports {
                    if idx != in_idx && self.wants_multicast(idx, hash) && self.member(idx, vid) {
                        self.admit(out, &mut plan, idx, ctx);
                    }
                }
            }
            Cast::Unicast => {
                let (start, end) = if local {
                    self.fdb.get(mac_key(dst))
                } else {
                    (0, 0)
                };
                if start != end {
                    let mut others = false;
                    for k in start..end {
                        let idx = self.fdb_owners[k as usize];
                        if idx == in_idx {
                            continue;
                        }
                        others = true;
                        if self.member(idx, vid) {
                            self.admit(out, &mut plan, idx, ctx);
                        } else {
                            self.drop_frame(out, idx, DropReason::VlanFilter);
                        }
                    }
                    if !others {
                        // The datasheet forbids looping a frame back to its own pool.
                        return self.drop_frame(out, in_idx, DropReason::NoRoute);
                    }
                } else {
                    let mut taken = false;
                    for idx in first..n_ports {
                        let p = &self.profiles[idx as usize];
                        let takes = match p.kind {
                            // Unknown unicast from inside goes out on the wire (VEB: no flood).
                            Kind::Uplink => true,
                            // From the wire the PF is the default pool (VT_CTL.DEF_PL).
                            Kind::Pf => from_uplink || p.promisc,
                            Kind::Vf(_) => p.promisc,
                        };
                        if takes && idx != in_idx && self.member(idx, vid) {
                            taken = true;
                            self.admit(out, &mut plan, idx, ctx);
                        }
                    }
                    if !taken {
                        return self.drop_frame(out, in_idx, DropReason::NoRoute);
                    }
                }
            }
        }

        // ---- Materialise: each variant built at most once, cloned for all copies but its last,
        // which takes it (so a single copy never touches a reference count).
        if let [(idx, form, stripped_tci)] = plan.copies[..] {
            let bytes = match (form, wire_tci) {
                (Form::Tagged, Some(tci)) => insert_tag(&frame, tci),
                (Form::Stripped, _) => strip_tag(&frame),
                _ => frame,
            };
            return self.deliver(out, idx, bytes, stripped_tci, cast);
        }
        out.deliveries.reserve(plan.copies.len());
        let mut variants: [Option<Bytes>; 3] = [None, None, None];
        if plan.uses[Form::Tagged as usize] > 0 {
            if let Some(tci) = wire_tci {
                variants[Form::Tagged as usize] = Some(insert_tag(&frame, tci));
            }
        }
        if plan.uses[Form::Stripped as usize] > 0 {
            variants[Form::Stripped as usize] = Some(strip_tag(&frame));
        }
        variants[Form::Original as usize] = Some(frame);
        let mut uses = plan.uses;
        for &(idx, form, stripped_tci) in &plan.copies {
            let slot = form as usize;
            uses[slot] -= 1;
            let bytes = if uses[slot] == 0 {
                variants[slot].take()
            } else {
                variants[slot].clone()
            }
            .unwrap_or_default();
            self.deliver(out, idx, bytes, stripped_tci, cast);
        }
    }

    /// Counts and records one copy.
    #[inline]
    fn deliver(
        &mut self,
        out: &mut Deliveries,
        idx: PortIdx,
        frame: Bytes,
        stripped_tci: Option<VlanTci>,
        cast: Cast,
    ) {
        let port = &mut self.ports[idx as usize];
        port.counters.count_rx(frame.len(), cast);
        out.deliveries.push(Delivery {
            port: port.id,
            frame,
            stripped_tci,
        });
    }
}

/// `frame` (checked by `process_into`) with an 802.1Q tag `tci` in front of its tags.
#[inline]
fn insert_tag(frame: &[u8], tci: VlanTci) -> Bytes {
    EthernetFrame::new_unchecked(frame).insert_tag(VlanTag::dot1q(tci))
}

/// `frame` (checked by `process_into`, and tagged) without its outer tag.
#[inline]
fn strip_tag(frame: &[u8]) -> Bytes {
    EthernetFrame::new_unchecked(frame).strip_tag()
}

// The administrator's and the PF agent's side: policies, PF receive configuration, link.
#[path = "switch_policy.rs"]
mod policy;

#[cfg(test)]
#[path = "switch_tests.rs"]
mod tests;
