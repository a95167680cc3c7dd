//! Shared rig for the VF tests: one [`Nic`] (the one datapath) on a simulated clock, software
//! igbvf guests on its VFs, and an observer that records every frame the switch handled — each
//! as its VF transmitted it, before any switch check — with where its copies went.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use eswitch::wire::{
    ethernet, ipv4, tcp, EtherTypes, EthernetFrame, IpNextHeaderProtocols, Ipv4Packet, MacAddr,
    TcpPacket,
};
use eswitch::{DropReason, PortCounters, PortId, VfPolicy};
use mailbox::MacAssignment;
use model::testing::{DriverConfig, SoftGuest};
use model::{ManualClock, Nic, NicConfig, Observer, Switched};

#[allow(unused_imports)]
pub use model::testing::{GUEST_BASE, GUEST_SIZE};

/// The simulated clock's start (ns).
pub const T0: u64 = 1_000_000_000;

/// One frame the switch handled.
#[derive(Clone, Debug)]
pub struct Seen {
    pub ingress: PortId,
    /// As the ingress port sent it.
    pub frame: Bytes,
    /// The ports that got a copy.
    pub to: Vec<PortId>,
    pub drops: Vec<DropReason>,
}

/// The observer: every switched frame, in order.
#[derive(Debug, Default)]
pub struct Recorder(Mutex<Vec<Seen>>);

impl Observer for Recorder {
    fn switched(&self, e: &Switched<'_>) {
        self.0.lock().unwrap().push(Seen {
            ingress: e.ingress,
            frame: e.frame.clone(),
            to: e.deliveries.iter().map(|d| d.port).collect(),
            drops: e.drops.iter().map(|d| d.reason).collect(),
        });
    }
}

impl Recorder {
    pub fn all(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }
}

/// A NIC with `num_vfs` VFs whose PF agent hands out generated MACs
/// (02:52:54:00:00:<vf>), as `serve` does by default.
pub fn config(num_vfs: u16) -> NicConfig {
    NicConfig {
        num_vfs,
        mac_assignment: MacAssignment::Generated {
            seed: [0x52, 0x54, 0x00],
        },
        ..NicConfig::default()
    }
}

/// The MAC the PF agent generates for VF `vf` with [`config`].
pub fn generated_mac(vf: u8) -> [u8; 6] {
    [0x02, 0x52, 0x54, 0x00, 0x00, vf]
}

pub struct Rig {
    pub nic: Arc<Nic>,
    pub clock: Arc<ManualClock>,
    pub seen: Arc<Recorder>,
}

pub fn rig(num_vfs: u16) -> Rig {
    rig_with(&config(num_vfs))
}

pub fn rig_with(config: &NicConfig) -> Rig {
    let clock = Arc::new(ManualClock::new(T0));
    let nic = Nic::new(config, clock.clone()).expect("NIC");
    let seen = Arc::new(Recorder::default());
    nic.set_observer(Some(seen.clone()));
    Rig { nic, clock, seen }
}

impl Rig {
    /// VF `vf` attached to a fresh guest; not probed.
    pub fn guest(&self, vf: u16, cfg: DriverConfig) -> SoftGuest {
        SoftGuest::attach(self.nic.vf(vf).expect("VF"), cfg).expect("guest memory")
    }

    /// Probed and opened, interrupts enabled, the interrupts that raised handled.
    pub fn up(&self, vf: u16, cfg: DriverConfig) -> SoftGuest {
        let mut g = self.guest(vf, cfg);
        g.up().expect("igbvf probe and open");
        assert!(
            g.irqs.take().is_empty(),
            "bring-up left no vector unhandled"
        );
        g
    }

    /// The frames VF `vf` transmitted, in order, as it transmitted them.
    pub fn sent_by(&self, vf: u16) -> Vec<Bytes> {
        self.seen
            .all()
            .into_iter()
            .filter(|s| s.ingress == PortId::Vf(vf))
            .map(|s| s.frame)
            .collect()
    }

    /// Moves simulated time to `t` and lets the NIC resume what is due. Returns the next
    /// deadline.
    pub fn advance_to(&self, t: u64) -> Option<u64> {
        self.clock.advance_to(t);
        self.nic.poll(t)
    }

    pub fn policy(&self, vf: u16) -> VfPolicy {
        self.nic
            .with_pf(|pf| pf.policy(vf).cloned())
            .expect("VF policy")
    }

    pub fn port(&self, p: PortId) -> PortCounters {
        self.nic
            .with_pf(|pf| pf.switch().counters(p).cloned())
            .expect("port counters")
    }
}

/// An Ethernet frame from `src` to `dst` with a recognisable payload.
pub fn frame(dst: [u8; 6], src: [u8; 6], len: usize, seed: u8) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0xB5]);
    let mut x = seed;
    while f.len() < len {
        f.push(x);
        x = x.wrapping_mul(31).wrapping_add(7);
    }
    f
}

/// An IPv4/TCP frame (54 bytes of headers, 10.0.0.1 → 10.0.0.2) with `payload` bytes. Both
/// checksums are left zero: tests fill them, or have the offload engine fill them.
pub fn tcp4(dst: [u8; 6], src: [u8; 6], payload: usize) -> Vec<u8> {
    let mut f = vec![0u8; ethernet::HEADER_LEN + ipv4::HEADER_LEN + tcp::HEADER_LEN + payload];
    let mut eth = EthernetFrame::new_unchecked(&mut f[..]);
    eth.set_dst_addr(MacAddr(dst));
    eth.set_src_addr(MacAddr(src));
    eth.set_ethertype(EtherTypes::Ipv4);
    let mut ip = Ipv4Packet::new_unchecked(eth.payload_mut());
    ip.set_version(4);
    ip.set_header_len(ipv4::HEADER_LEN);
    ip.set_total_len((ipv4::HEADER_LEN + tcp::HEADER_LEN + payload) as u16);
    ip.set_ttl(64);
    ip.set_next_header(IpNextHeaderProtocols::Tcp);
    ip.set_src_addr(Ipv4Addr::new(10, 0, 0, 1));
    ip.set_dst_addr(Ipv4Addr::new(10, 0, 0, 2));
    let mut seg = TcpPacket::new_unchecked(ip.payload_mut());
    seg.set_header_len(tcp::HEADER_LEN);
    for (i, b) in seg.payload_mut().iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    f
}
