//! Hostile guests: random register writes, descriptors with random contents and addresses,
//! random frames and config writes against VF A never panic, stay inside A's guest memory,
//! leave VF B (another guest on the same NIC) untouched, and every frame offered to A is
//! delivered, counted as a named drop, or still waiting in A's backlog. Resets and VF_RESET
//! requests mixed in: nothing of A's is sent while its pool's transmit is off.

mod support;

use bytes::Bytes;
use eswitch::{PortId, VfSetting};
use model::GuestRam;
use proptest::prelude::*;
use vm_memory::{Bytes as _, GuestAddress, GuestMemoryAtomic};

use model::function::i82576::regs::{self, q};
use model::function::i82576::tx::MAX_TX_PACKET;
use model::testing::{DriverConfig, SoftGuest, XmitOpts};
use model::VfStats;
use support::*;

/// A unicast MAC no VF owns.
const ELSEWHERE: [u8; 6] = [0x02, 0, 0, 0, 0, 0x77];

#[derive(Clone, Debug)]
enum Op {
    Reg(u64, u32),
    Read(u64),
    Mem(u64, [u8; 16]),
    Receive(usize, Option<u16>),
    /// A's driver transmits a frame to a MAC no VF owns (it leaves through the uplink).
    Xmit(usize),
    Config(u16, Vec<u8>),
    Region(u32, u64, usize, bool),
    /// Simulated time moves on by this much and the NIC resumes what is due.
    Advance(u64),
    Reset,
    Reattach,
    /// A's driver brings its rings up without the reset handshake (as after a CTRL.RST that
    /// the PF has not answered yet).
    RingsUp,
    /// A's driver sends VF_RESET (`e1000_reset_hw_vf`'s request) and reads the reply.
    AskVfReset,
}

/// Registers a driver (or an attacker) would write, biased towards the queue and interrupt
/// blocks, plus anywhere in the BAR.
fn offset() -> impl Strategy<Value = u64> {
    let queue_regs = prop::sample::select(vec![
        q::DBAL,
        q::DBAH,
        q::DLEN,
        q::SRRCTL,
        q::DH,
        q::DCA_CTL,
        q::DT,
        q::DCTL,
        q::RQDPC,
        q::TDWBAL,
    ]);
    prop_oneof![
        (
            prop::sample::select(vec![
                regs::RX_BASE,
                regs::RX_BASE + 0x100,
                regs::TX_BASE,
                regs::TX_BASE + 0x100
            ]),
            queue_regs
        )
            .prop_map(|(b, r)| b + r),
        prop::sample::select(vec![
            regs::VTCTRL,
            regs::VTSTATUS,
            regs::V2PMAILBOX,
            regs::VTEICS,
            regs::VTEIMS,
            regs::VTEIMC,
            regs::VTEIAC,
            regs::VTEIAM,
            regs::VTEICR,
            regs::VTIVAR,
            regs::VTIVAR_MISC,
            regs::VTEITR0,
            regs::PSRTYPE,
            regs::VFGPRC,
        ]),
        (0u64..0x40).prop_map(|w| regs::VMBMEM + 4 * (w % 16)),
        (0u64..0x1000).prop_map(|w| w * 4),
    ]
}

/// Values: small ring indices and lengths, addresses in and around guest memory, anything.
fn value() -> impl Strategy<Value = u32> {
    prop_oneof![
        0u32..16,
        (0u32..64).prop_map(|n| n * 128),
        (0u32..0x50).prop_map(|k| GUEST_BASE as u32 + k * 0x1_0000),
        Just(regs::dctl::ENABLE),
        Just(0x0A00_0002),
        Just(0x0400_0002 | (2 << 8)),
        any::<u32>(),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (offset(), value()).prop_map(|(o, v)| Op::Reg(o, v)),
        2 => offset().prop_map(Op::Read),
        6 => (0u64..(GUEST_SIZE as u64 / 16), any::<[u8; 16]>())
            .prop_map(|(i, b)| Op::Mem(GUEST_BASE + 16 * (i % 0x4000), b)),
        3 => (0usize..10_000, prop::option::of(any::<u16>())).prop_map(|(l, t)| Op::Receive(l, t)),
        3 => (14usize..1515).prop_map(Op::Xmit),
        1 => (0u16..0x1000, prop::collection::vec(any::<u8>(), 1..5)).prop_map(|(o, d)| Op::Config(o, d)),
        1 => (0u32..9, any::<u64>(), 0usize..17, any::<bool>()).prop_map(|(i, o, l, w)| Op::Region(i, o % 0x5000, l, w)),
        1 => (0u64..20_000_000).prop_map(Op::Advance),
        1 => Just(Op::Reset),
        1 => Just(Op::Reattach),
        1 => Just(Op::RingsUp),
        1 => Just(Op::AskVfReset),
    ]
}

/// B's register state that must not change (registers without read side effects).
fn b_regs(g: &SoftGuest) -> Vec<u32> {
    let mut v = Vec::new();
    for base in [regs::RX_BASE, regs::TX_BASE] {
        for r in [q::DBAL, q::DBAH, q::DLEN, q::DH, q::DT, q::DCTL] {
            v.push(g.drv.rd(&g.vf, base + r));
        }
    }
    for r in [
        regs::VTEIMS,
        regs::VTEIAC,
        regs::VTIVAR,
        regs::VTIVAR_MISC,
        regs::VTSTATUS,
    ] {
        v.push(g.drv.rd(&g.vf, r));
    }
    v
}

fn snapshot(mem: &GuestRam) -> Vec<u8> {
    let mut v = vec![0u8; GUEST_SIZE];
    mem.read_slice(&mut v, GuestAddress(GUEST_BASE)).unwrap();
    v
}

/// Frames offered to a VF: delivered, dropped for a named reason, or still waiting in the
/// backlog (a full ring is not a drop).
fn accounted(s: &VfStats, backlog: usize) -> u64 {
    s.rx_packets + s.total_rx_drops() + backlog as u64
}

/// Offers A a frame of `len` bytes (0: empty) as the switch would.
fn offer(g: &SoftGuest, len: usize, seed: u8, tci: Option<u16>) {
    let f = frame(g.drv.mac, [2, 0, 0, 0, 0, 9], len, seed);
    let _ =
        g.vf.deliver(&Bytes::copy_from_slice(&f[..len.min(f.len())]), tci);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn garbage_against_vf_a_never_panics_and_never_reaches_vf_b(
        ops in prop::collection::vec(op(), 1..120),
        probe_first in any::<bool>(),
        shaped in any::<bool>(),
    ) {
        let r = rig(2);
        if shaped {
            // A's TX queue pauses and resumes under the garbage too.
            r.nic
                .configure_vf(0, &VfSetting::parse_words(&["rate", "1"]).unwrap())
                .unwrap();
        }
        let mut a = if probe_first {
            r.up(0, DriverConfig::default())
        } else {
            r.guest(0, DriverConfig::default())
        };
        let mut b = r.up(1, DriverConfig::default());
        let b_mem_before = snapshot(&b.mem);
        let b_regs_before = b_regs(&b);
        let b_stats_before = b.vf.stats();
        let b_policy_before = r.policy(1);
        let b_refusals_before = r.nic.with_pf(|pf| pf.refusals(1));

        let mut receives = 0u64;
        for op in ops {
            let sent_before = r.seen.all().len();
            match op {
                Op::Reg(o, v) => {
                    let _ = a.vf.region_write(0, o, &v.to_le_bytes());
                }
                Op::Read(o) => {
                    let mut d = [0u8; 4];
                    let _ = a.vf.region_read(0, o, &mut d);
                }
                Op::Mem(at, bytes) => {
                    let _ = a.mem.write_slice(&bytes, GuestAddress(at));
                }
                Op::Receive(len, tci) => {
                    receives += 1;
                    offer(&a, len, len as u8, tci);
                }
                Op::Xmit(len) => {
                    let f = frame(ELSEWHERE, a.drv.mac, len, len as u8);
                    let _ = a.drv.xmit(&a.vf, &f, &XmitOpts::default());
                }
                Op::Config(o, d) => a.vf.config_write(u64::from(o), &d),
                Op::Region(i, o, l, w) => {
                    let mut d = vec![0xA5u8; l];
                    if w {
                        let _ = a.vf.region_write(i, o, &d);
                    } else {
                        let _ = a.vf.region_read(i, o, &mut d);
                    }
                }
                Op::Advance(ns) => {
                    let _ = r.advance_to(r.nic.now() + ns);
                }
                Op::Reset => a.vf.reset(),
                Op::Reattach => {
                    a.vf.detach();
                    a.vf.attach(GuestMemoryAtomic::new(a.mem.clone()), a.irqs.clone());
                }
                Op::RingsUp => a.drv.open_rings(&a.vf),
                Op::AskVfReset => {
                    let request = [u32::from(mailbox::regs::msg::ID_VF_RESET)];
                    if a.drv.write_posted(&a.vf, &request).is_ok() {
                        let _ = a.drv.read_posted(&a.vf, 3);
                    }
                }
            }
            // While A's pool has transmit off (a reset not yet answered with VF_RESET),
            // nothing of A's reaches the switch.
            if !r.policy(0).tx_enabled {
                prop_assert_eq!(r.seen.all().len(), sent_before, "A sent with VFTE clear");
            }
        }

        // Every frame offered to A was delivered, counted under a named reason, or waits.
        let s = a.vf.stats();
        prop_assert_eq!(accounted(&s, a.vf.backlog()), receives);
        // Every frame A's TX engine counted went to the switch.
        let seen = r.seen.all();
        prop_assert!(seen.iter().all(|e| e.ingress == PortId::Vf(0)), "only A sent");
        prop_assert_eq!(s.tx_packets, seen.len() as u64);
        // None of A's garbage was switched to B (anti-spoof: its source is never A's MAC).
        prop_assert!(seen.iter().all(|e| !e.to.contains(&PortId::Vf(1))));

        // B: memory, registers, counters and PF-side state untouched.
        prop_assert!(snapshot(&b.mem) == b_mem_before, "B's guest memory changed");
        prop_assert_eq!(b_regs(&b), b_regs_before);
        prop_assert_eq!(b.vf.stats(), b_stats_before);
        prop_assert_eq!(r.policy(1), b_policy_before);
        prop_assert_eq!(r.nic.with_pf(|pf| pf.refusals(1)), b_refusals_before);
        prop_assert_eq!(b.vf.backlog(), 0);
        // And B still works.
        prop_assert!(b.drv.check_link(&b.vf));
        let f = frame(b.drv.mac, [2, 0, 0, 0, 0, 9], 60, 1);
        prop_assert!(b.vf.deliver(&Bytes::from(f.clone()), None));
        b.poll();
        prop_assert_eq!(b.take_received().len(), 1);
        b.send(&f).unwrap();
        prop_assert_eq!(r.sent_by(1), vec![Bytes::from(f)]);
    }

    /// A driver that brought its rings up properly, then posts random TX descriptors: the
    /// engine consumes or refuses them, counts errors, and never panics.
    #[test]
    fn random_tx_descriptors_are_consumed_or_refused(
        descs in prop::collection::vec((any::<u64>(), any::<u32>(), any::<u32>(), any::<bool>()), 1..60),
    ) {
        let r = rig(1);
        let g = r.up(0, DriverConfig::default());
        let ring = g.drv.tx_ring_addr();
        for (i, (addr, cmd, ol, inside)) in descs.iter().enumerate() {
            let addr = if *inside { GUEST_BASE + addr % GUEST_SIZE as u64 } else { *addr };
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&addr.to_le_bytes());
            b[8..12].copy_from_slice(&cmd.to_le_bytes());
            b[12..].copy_from_slice(&ol.to_le_bytes());
            g.mem.write_slice(&b, GuestAddress(ring + 16 * i as u64)).unwrap();
        }
        g.drv.wr(&g.vf, regs::TX_BASE + q::DT, descs.len() as u32);
        let s = g.vf.stats();
        let tdh = g.drv.rd(&g.vf, regs::TX_BASE + q::DH);
        prop_assert!(tdh <= descs.len() as u32);
        let sent = r.sent_by(0);
        prop_assert_eq!(s.tx_packets, sent.len() as u64);
        for f in &sent {
            // A TSO segment repeats the headers; a VLAN tag adds 4 bytes.
            prop_assert!(f.len() <= MAX_TX_PACKET + 4 * 64);
        }
    }

    /// Random RX ring registers and descriptor contents, then frames of every size: each is
    /// delivered, dropped with a reason, or waits; the ring indices stay inside the ring.
    #[test]
    fn random_rx_rings_deliver_or_drop_with_a_reason(
        srrctl in any::<u32>(),
        dlen in 0u32..40,
        rdh in 0u32..48,
        rdt in 0u32..48,
        descs in prop::collection::vec((any::<u64>(), any::<u64>(), any::<bool>()), 0..40),
        frames in prop::collection::vec((0usize..20_000, any::<bool>()), 1..12),
    ) {
        let r = rig(1);
        let g = r.up(0, DriverConfig::default());
        let ring = g.drv.rx_ring_addr();
        for (i, (pkt, hdr, inside)) in descs.iter().enumerate() {
            let fix = |a: u64| if *inside { GUEST_BASE + a % GUEST_SIZE as u64 } else { a };
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&fix(*pkt).to_le_bytes());
            b[8..].copy_from_slice(&fix(*hdr).to_le_bytes());
            g.mem.write_slice(&b, GuestAddress(ring + 16 * i as u64)).unwrap();
        }
        g.drv.wr(&g.vf, regs::RX_BASE + q::SRRCTL, srrctl);
        g.drv.wr(&g.vf, regs::RX_BASE + q::DLEN, dlen * 128);
        g.drv.wr(&g.vf, regs::RX_BASE + q::DH, rdh);
        g.drv.wr(&g.vf, regs::RX_BASE + q::DT, rdt);
        let n = frames.len() as u64;
        for (len, tag) in frames {
            offer(&g, len, 3, tag.then_some(5));
        }
        let s = g.vf.stats();
        prop_assert_eq!(accounted(&s, g.vf.backlog()), n);
        let len = dlen * 8;
        let head = g.drv.rd(&g.vf, regs::RX_BASE + q::DH);
        if s.rx_packets > 0 {
            prop_assert!(head < len);
        }
    }
}
