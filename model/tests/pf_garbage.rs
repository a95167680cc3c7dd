//! A hostile guest on the PF: random register writes and reads anywhere in the BARs, random
//! descriptors and buffer addresses, random frames, config writes, link changes and resets,
//! after igb brought the PF up. Nothing panics; the registers never keep bits outside what
//! they store; every frame delivered is taken, left waiting (ring full) or counted as a drop.

mod pf_support;

use proptest::prelude::*;

use model::function::i82576::pf_regs::{self as r, icr, q, rah, rctl, tctl, STORAGE};
use model::function::stats::RxDrop;
use model::function::{Function, LinkStatus};
use pf_support::*;

#[derive(Clone, Debug)]
enum Op {
    Reg(u64, u32),
    Read(u64),
    /// 16 bytes written into the rings' area of guest memory.
    Mem(u64, [u8; 16]),
    /// A frame of this length to this destination (0: own MAC, 1: broadcast, 2: multicast,
    /// 3: someone else), maybe with a stripped tag.
    Receive(usize, u8, Option<u16>),
    /// An access of any size to any region.
    Region(u32, u64, usize, bool),
    Config(u16, Vec<u8>),
    Link(bool),
    Advance(u64),
    Reset,
}

/// Registers igb (or an attacker) writes, biased towards those with side effects.
fn offset() -> impl Strategy<Value = u64> {
    let named = prop::sample::select(vec![
        r::CTRL,
        r::CTRL_DUP,
        r::STATUS,
        r::EECD,
        r::EERD,
        r::CTRL_EXT,
        r::MDIC,
        r::ICR,
        r::ICS,
        r::IMS,
        r::IMC,
        r::IAM,
        r::RCTL,
        r::TCTL,
        r::GPIE,
        r::EICS,
        r::EIMS,
        r::EIMC,
        r::EIAC,
        r::EIAM,
        r::EICR,
        r::EITR0,
        r::IVAR0,
        r::IVAR_MISC,
        r::SWSM,
        r::SW_FW_SYNC,
        r::RA,
        r::RA + 4,
        r::RA2 + 4,
        r::MTA,
        r::VFTA,
        r::MRQC,
        r::RETA,
        r::VT_CTL,
        r::RLPML,
        r::RXCSUM,
        r::SYSTIML,
        r::SYSTIMH,
        r::TIMINCA,
        r::STATS_START,
    ]);
    let queue = (
        prop::sample::select(vec![r::RX_LOW, r::TX_LOW, r::RX_HIGH, r::TX_HIGH]),
        0u64..4,
        prop::sample::select(vec![
            q::DBAL,
            q::DBAH,
            q::DLEN,
            q::SRRCTL,
            q::DH,
            q::DT,
            q::DCTL,
            q::RQDPC,
        ]),
    )
        .prop_map(|(base, n, reg)| {
            let stride = if base < 0x4000 {
                r::LOW_STRIDE
            } else {
                r::HIGH_STRIDE
            };
            base + n * stride + reg
        });
    prop_oneof![
        3 => named,
        3 => queue,
        1 => (0u64..0x8000).prop_map(|d| d * 4),
    ]
}

fn value() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        Just(u32::MAX),
        Just(1u32 << 25),
        Just(ctrl_rst()),
        any::<u32>(),
    ]
}

fn ctrl_rst() -> u32 {
    1 << 26
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (offset(), value()).prop_map(|(o, v)| Op::Reg(o, v)),
        3 => offset().prop_map(Op::Read),
        3 => ((0u64..0x200), any::<[u8; 16]>())
            .prop_map(|(i, b)| Op::Mem(TX_RING + 16 * i, b)),
        4 => (0usize..2000, 0u8..4, prop::option::of(any::<u16>()))
            .prop_map(|(l, d, t)| Op::Receive(l, d, t)),
        1 => (0u32..7, any::<u64>(), prop::sample::select(vec![0usize, 1, 2, 3, 4, 8, 16]), any::<bool>())
            .prop_map(|(i, o, l, w)| Op::Region(i, o % 0x2_0010, l, w)),
        1 => (0u16..0x1000, prop::collection::vec(any::<u8>(), 0..5))
            .prop_map(|(o, d)| Op::Config(o, d)),
        1 => any::<bool>().prop_map(Op::Link),
        1 => (0u64..2_000_000).prop_map(Op::Advance),
        1 => Just(Op::Reset),
    ]
}

fn rx_frame(len: usize, dst: u8) -> Vec<u8> {
    let mut f = vec![0x5Au8; len];
    let d: [u8; 6] = match dst {
        0 => MAC.0,
        1 => [0xFF; 6],
        2 => [0x01, 0x00, 0x5E, 0, 0, 1],
        _ => [0x02, 0, 0, 0, 0, 0x77],
    };
    if len >= 6 {
        f[..6].copy_from_slice(&d);
    }
    f
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn hostile_guests_never_break_the_pf(ops in prop::collection::vec(op(), 1..120)) {
        let mut rig = Rig::new(IrqMode::Msix);
        let mut igb = Igb::new(IrqMode::Msix);
        igb.probe(&mut rig).expect("probe");
        igb.open(&mut rig).expect("open");
        let (mut offered_drops, mut taken) = (0u64, 0u64);
        for op in ops {
            match op {
                Op::Reg(o, v) => rig.wr(o, v),
                Op::Read(o) => {
                    let _ = rig.rd(o);
                }
                Op::Mem(at, b) => rig.write_mem(at, &b),
                Op::Receive(len, dst, tci) => match rig.deliver(&rx_frame(len, dst), tci) {
                    Ok(()) => taken += 1,
                    Err(RxDrop::RingFull) => {}
                    Err(_) => offered_drops += 1,
                },
                Op::Region(i, o, len, write) => {
                    if write {
                        if let Ok(e) = rig.pf.region_write(i, o, &vec![0xA5; len]) {
                            rig.take(e);
                        }
                    } else {
                        let mut b = vec![0u8; len];
                        let _ = rig.pf.region_read(i, o, &mut b);
                    }
                }
                Op::Config(o, d) => {
                    let e = rig.pf.config_write(u64::from(o), &d);
                    rig.take(e);
                }
                Op::Link(up) => rig.set_link(if up {
                    LinkStatus::UP_1000_FD
                } else {
                    LinkStatus::DOWN
                }),
                Op::Advance(ns) => rig.sleep(ns),
                Op::Reset => {
                    let e = rig.pf.reset();
                    rig.take(e);
                }
            }
        }
        // No register keeps bits it does not store.
        for s in STORAGE {
            for i in 0..s.count {
                let v = rig.rd(s.base + 4 * i);
                prop_assert_eq!(v & !s.mask, s.reset & !s.mask, "{}[{}]", s.name, i);
            }
        }
        prop_assert_eq!(rig.rd(r::RCTL) & !rctl::STORED, 0);
        prop_assert_eq!(rig.rd(r::TCTL) & !tctl::STORED, 0);
        prop_assert_eq!(rig.rd(r::IMS) & !icr::CAUSES, 0);
        prop_assert_eq!(rig.rd(r::ICR) & !(icr::CAUSES | icr::INT_ASSERTED), 0);
        for i in 0..16 {
            prop_assert_eq!(rig.rd(r::RA + 4 + 8 * i) & !rah::STORED, 0);
        }
        prop_assert_ne!(rig.rd(r::CTRL), u32::MAX);
        // Every frame offered was taken, left waiting, or counted.
        let s = rig.pf.stats();
        prop_assert!(s.rx_packets >= taken);
        prop_assert!(s.total_rx_drops() >= offered_drops);
    }
}
