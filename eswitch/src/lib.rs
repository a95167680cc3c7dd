//! The embedded switch of an SR-IOV NIC in legacy (VEB) mode, 82576 / igb personality.
//!
//! Pure: no threads, no sockets, no clock of its own. The caller passes frames in, gets the
//! copies to deliver and the drops back, and passes time in for shaping. It calls nothing:
//! capture, delivery and counting beyond its ports are the caller's, after the switch is done.
//!
//! # Using it
//! ```
//! use bytes::Bytes;
//! use eswitch::{build_frame, DropReason, Eswitch, EswitchConfig, MacAddr, PortId, VlanProto};
//! use eswitch::wire::EtherTypes;
//!
//! let vf0 = MacAddr([2, 0, 0, 0, 0, 0x10]);
//! let vf1 = MacAddr([2, 0, 0, 0, 0, 0x11]);
//! let mut sw = Eswitch::new(EswitchConfig { num_vfs: 2, ..EswitchConfig::default() }).unwrap();
//! sw.set_vf_mac(0, vf0).unwrap();
//! sw.set_vf_mac(1, vf1).unwrap();
//! sw.set_vf_vlan(0, 10, 3, VlanProto::Dot1Q).unwrap();
//! sw.set_vf_vlan(1, 10, 0, VlanProto::Dot1Q).unwrap();
//! sw.set_vf_rate(0, 0, 100).unwrap(); // max_tx_rate 100 Mbit/s
//!
//! // The VF's TX queue asks the shaper first, then hands the frame to the switch.
//! let frame: Bytes = build_frame(vf1, vf0, None, EtherTypes::Ipv4, &[0; 46]);
//! assert!(sw.tx_admit(0, 0, frame.len()).is_ok());
//! let out = sw.process(PortId::Vf(0), frame);
//! let copy = out.to(PortId::Vf(1)).unwrap();
//! assert_eq!(copy.stripped_tci.map(|t| (t.vid(), t.pcp())), Some((10, 3))); // for the RX descriptor
//!
//! // A spoofed source is dropped, reported and counted.
//! let spoofed = build_frame(vf1, MacAddr([2, 0, 0, 0, 0, 0x99]), None, EtherTypes::Ipv4, &[0; 46]);
//! let out = sw.process(PortId::Vf(0), spoofed);
//! assert!(out.is_empty() && out.dropped(DropReason::SpoofMac));
//! assert_eq!(sw.counters(PortId::Vf(0)).unwrap().drops.spoof_mac, 1);
//! ```
//!
//! # Rules (igb's `ndo_set_vf_*` and `igb_vmm_control`; QEMU `igb_receive_assign` and
//! `igb_tx_pkt_switch`, which cite 82576 datasheet 7.10.3.6)
//! **A frame a VF sends** is checked in this order, each failure a counted drop on the VF:
//! link (`state disable`, or `auto` with the link down: [`DropReason::LinkDown`]); MAC anti-spoof
//! when spoofchk is on (the source must be the VF's MAC or one of its extra unicast filters:
//! `SpoofMac`); VLAN anti-spoof when `vlan_spoofchk` is on, which `ip link ... spoofchk` sets
//! together with the MAC check (a port-VLAN VF may send no tag at all, a VGT VF only VLANs it
//! joined or VID 0: `SpoofVlan`); size against the VF's max frame (`Oversize`).
//! A port-VLAN VF's frame then gets the tag (VID, PCP = qos) inserted (VMVIR "always insert").
//! With VLAN anti-spoof off a VF tag stays as an inner tag behind the port VLAN: it cannot leave
//! the port VLAN either way.
//!
//! **Lookup** in the frame's VLAN (the port VLAN, else the frame's tag, else untagged = VID 0):
//! - unicast owned by ports (RAR-style: MAC + extra filters, several owners allowed) goes to the
//!   owners only, never also to the uplink (VEB local switching). An owner outside the frame's
//!   VLAN drops its copy with `VlanFilter` (no fallback to another port: a MAC never pulls a frame
//!   across VLANs). A frame to the sender's own address is not looped back (`NoRoute`).
//! - broadcast goes to every port of the VLAN except the ingress: PF, other VFs, uplinks.
//! - multicast goes to ports whose 82576 MTA hash matches or that are in allmulti, and to the
//!   uplinks.
//! - unknown unicast from inside goes to the uplinks (and to promiscuous ports); from an uplink
//!   to the PF, the default pool (VT_CTL.DEF_PL), if it is in the VLAN, else `NoRoute`.
//! - nothing from an uplink goes to another uplink: a NIC does not bridge its wires.
//!
//! **Each copy** is then checked against the destination: link up (`LinkDown`), a VF's receive
//! enable (VFRE, `RxDisabled`: off while an 82576 VF resets, until igb's VF_RESET reply, and
//! after the 82599's ixgbe refused its SET_LPE), max frame
//! (`Oversize`), and gets its VLAN form: towards an uplink the tag is always in the frame; a
//! port-VLAN VF always gets it stripped and reported in [`Delivery::stripped_tci`] (for the RX
//! descriptor's VP bit and VLAN field); other ports strip per
//! [`Eswitch::set_rx_vlan_strip`] (VMOLR.STRVLAN: on by default for VFs, off for the PF).
//!
//! # VLAN membership: the decisions
//! - **Port-VLAN VF (VST)**: only its VID. Untagged frames and other VIDs never reach it
//!   (VMOLR.AUPE off, one VLVF entry: `igb_enable_port_vlan`). `vlan 0 qos Q` is priority
//!   tagging only: the VF stays in the untagged VLAN and its frames carry a VID-0 tag with PCP Q.
//! - **Other VFs (VGT)**: untagged (all pools join VID 0 at VF reset, AUPE on) plus the VLANs
//!   they joined with SET_VLAN (`vlan_filters`).
//! - **PF**: untagged plus the VLANs in [`PfPolicy::vlans`] (its 8021q interfaces), or all VLANs
//!   with [`PfPolicy::vlan_promisc`]. Pool selection filters every pool, the PF's included, by
//!   VLVF membership when RCTL.VFE is on (QEMU `igb_receive_assign`), which igb always sets;
//!   igb adds the PF pool to a VID only when the PF uses it (`igb_vfta_set`). So a port-VLAN
//!   VF's broadcast does not reach a PF that has not joined that VLAN, and the PF is not a back
//!   door between VLANs. The PF is exempt from
//!   anti-spoof (igb never sets the PF pool's DTXSWC bits) and may send any tag.
//! - **Uplinks**: trunks, members of every VLAN, frames always carry their tag on the wire.
//!
//! # Divergences from the 82576, on purpose
//! - A unicast whose owner is outside the frame's VLAN is dropped (`VlanFilter`) rather than
//!   falling through to the default pool (VT_CTL.DEF_PL): clearer for scenarios, no leak.
//! - The shaper is a token bucket in bits (see [`shaper`]), not the RTTBCNRC rate factor.
//! - `state auto|enable|disable` is honoured, although the igb PF driver has no such ndo.
//! - More than 30 multicast hashes puts a VF in multicast promiscuous (MPME), as igb does.
pub mod admin;
pub mod counters;
pub mod filter;
pub mod policy;
pub mod port;
pub mod shaper;
pub mod switch;
pub mod wire;

pub use admin::{parse_mac, ParseError, VfSetting};
pub use counters::{DropCounters, DropReason, PortCounters};
pub use filter::{mta_hash, Bitmap4096};
pub use policy::{
    LinkState, MacAddr, PfPolicy, PolicyError, PortVlan, VfPolicy, VlanProto, DEFAULT_MAX_FRAME,
};
pub use port::{Deliveries, Delivery, Direction, DropRecord, NoSuchPort, PortId};
pub use shaper::{NextSendAt, TokenBucket};
pub use switch::{ConfigError, Eswitch, EswitchConfig};
pub use wire::{build_frame, VlanTci};
