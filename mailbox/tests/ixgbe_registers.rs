//! Arbitrary sequences of 82599 mailbox register accesses — VF BAR0 reads and writes, PF BAR0
//! reads and writes of every mailbox register, VF and PF resets, and the ixgbe agent servicing
//! and pinging VFs in between — never panic and keep the mailbox's documented invariants.

use eswitch::VfPolicy;
use mailbox::ixgbe::regs::{pfmailbox, pfmbicr, vfmailbox, MAILBOX_WORDS};
use mailbox::ixgbe::{
    vf_read, vf_write, IxgbeAgent, IxgbeConfig, PfMailboxes, PfRegister, VfRegister,
};
use mailbox::{MailboxEvent, Owner, Trigger};
use proptest::prelude::*;

const VFS: usize = 3;

#[derive(Clone, Debug)]
enum Op {
    VfRead(usize, VfRegister),
    VfWrite(usize, VfRegister, u32),
    PfRead(PfRegister),
    PfWrite(PfRegister, u32),
    VfReset(usize),
    PfResetStart,
    PfResetDone,
    Service(usize),
    Ping(usize),
    /// A well-formed request posted the way ixgbevf posts one.
    Request(usize, Vec<u32>),
}

fn vf_reg() -> impl Strategy<Value = VfRegister> {
    prop_oneof![
        3 => Just(VfRegister::Vfmailbox),
        2 => (0..MAILBOX_WORDS + 1).prop_map(VfRegister::Vfmbmem),
    ]
}

fn pf_reg() -> impl Strategy<Value = PfRegister> {
    let vf = 0..VFS + 1;
    prop_oneof![
        (vf.clone()).prop_map(PfRegister::Pfmailbox),
        (vf, 0..MAILBOX_WORDS).prop_map(|(vf, word)| PfRegister::Pfmbmem { vf, word }),
        (0..4usize).prop_map(PfRegister::Pfmbicr),
        (0..4usize).prop_map(PfRegister::Pfmbimr),
        (0..2usize).prop_map(PfRegister::Vflre),
        (0..2usize).prop_map(PfRegister::Vflrec),
    ]
}

fn value() -> impl Strategy<Value = u32> {
    prop_oneof![0u32..0x100, any::<u32>()]
}

fn request() -> impl Strategy<Value = Vec<u32>> {
    (
        0u32..0x12,
        0u32..0x20,
        proptest::collection::vec(any::<u32>(), 0..MAILBOX_WORDS),
    )
        .prop_map(|(id, info, rest)| {
            let mut w = vec![id | (info << 16)];
            w.extend(rest);
            w.truncate(MAILBOX_WORDS);
            w
        })
}

fn op() -> impl Strategy<Value = Op> {
    let vf = 0..VFS;
    prop_oneof![
        4 => (vf.clone(), vf_reg()).prop_map(|(v, r)| Op::VfRead(v, r)),
        4 => (vf.clone(), vf_reg(), value()).prop_map(|(v, r, x)| Op::VfWrite(v, r, x)),
        2 => pf_reg().prop_map(Op::PfRead),
        2 => (pf_reg(), value()).prop_map(|(r, x)| Op::PfWrite(r, x)),
        1 => vf.clone().prop_map(Op::VfReset),
        1 => Just(Op::PfResetStart),
        1 => Just(Op::PfResetDone),
        2 => vf.clone().prop_map(Op::Service),
        1 => vf.clone().prop_map(Op::Ping),
        3 => (vf, request()).prop_map(|(v, w)| Op::Request(v, w)),
    ]
}

fn owner_bits(v: u32) -> (bool, bool) {
    (v & vfmailbox::VFU != 0, v & vfmailbox::PFU != 0)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn register_sequences_keep_the_mailbox_invariants(ops in proptest::collection::vec(op(), 1..80)) {
        let mut pf = PfMailboxes::new(VFS);
        let mut agent = IxgbeAgent::new(IxgbeConfig::new(VFS)).unwrap();
        let mut policy = vec![VfPolicy::default(); VFS];
        let mut in_pf_reset = false;

        for op in ops {
            let before = pf.clone();
            // The VF an op addresses, if it is a per-VF op; the others must not change.
            let target: Option<usize> = match &op {
                Op::VfRead(v, _) | Op::VfWrite(v, _, _) | Op::VfReset(v) | Op::Service(v)
                | Op::Ping(v) | Op::Request(v, _) => Some(*v),
                Op::PfRead(_) => None,
                Op::PfWrite(PfRegister::Pfmailbox(v), _)
                | Op::PfWrite(PfRegister::Pfmbmem { vf: v, .. }, _) => Some(*v),
                _ => None,
            };
            match &op {
                Op::VfRead(v, reg) => {
                    let m = pf.mailbox_mut(*v).unwrap();
                    let x = vf_read(m, *reg);
                    if *reg == VfRegister::Vfmailbox {
                        prop_assert_eq!(x & !vfmailbox::DEFINED, 0);
                        prop_assert_eq!(x & (vfmailbox::REQ | vfmailbox::ACK), 0);
                        prop_assert!(owner_bits(x) != (true, true));
                        prop_assert_eq!(x & vfmailbox::RSTI != 0, in_pf_reset);
                        // Read-to-clear: a second read shows none of PFSTS, PFACK, RSTD.
                        let again = vf_read(m, VfRegister::Vfmailbox);
                        prop_assert_eq!(again & vfmailbox::R2C, 0);
                        prop_assert_eq!(again & !vfmailbox::R2C, x & !vfmailbox::R2C);
                    }
                }
                Op::VfWrite(v, reg, x) => {
                    let m = pf.mailbox_mut(*v).unwrap();
                    let held = m.owner() == Owner::Vf;
                    let words_before = *m.words();
                    let ev = vf_write(m, *reg, *x);
                    match reg {
                        VfRegister::Vfmbmem(w) => {
                            // Only the VF holding VFU writes the buffer, and only words 0..16.
                            let changed = m.words() != &words_before;
                            prop_assert!(!changed || (held && *w < MAILBOX_WORDS));
                            if held && *w < MAILBOX_WORDS {
                                prop_assert_eq!(m.words()[*w], *x);
                            }
                        }
                        VfRegister::Vfmailbox => {
                            prop_assert_eq!(
                                ev.contains(MailboxEvent::RequestPosted),
                                x & vfmailbox::REQ != 0
                            );
                            prop_assert_eq!(
                                ev.contains(MailboxEvent::InterruptPf),
                                x & (vfmailbox::REQ | vfmailbox::ACK) != 0
                            );
                        }
                    }
                }
                Op::PfRead(reg) => {
                    let x = pf.read(*reg);
                    match reg {
                        PfRegister::Pfmailbox(_) => {
                            prop_assert_eq!(x & !(pfmailbox::VFU | pfmailbox::PFU), 0);
                            prop_assert!(x != pfmailbox::VFU | pfmailbox::PFU);
                        }
                        PfRegister::Pfmbicr(i) => {
                            for v in 0..VFS {
                                let m = pf.mailbox(v).unwrap();
                                let shown = v / 16 == *i;
                                let bit = (v % 16) as u32;
                                prop_assert_eq!(
                                    x & (pfmbicr::VFREQ_VF1 << bit) != 0,
                                    shown && m.request_pending()
                                );
                                prop_assert_eq!(
                                    x & (pfmbicr::VFACK_VF1 << bit) != 0,
                                    shown && m.ack_pending()
                                );
                            }
                        }
                        PfRegister::Vflre(i) => {
                            for v in 0..VFS {
                                let shown = v / 32 == *i && pf.mailbox(v).unwrap().reset_pending();
                                prop_assert_eq!(x & (1 << (v % 32)) != 0, shown);
                            }
                        }
                        _ => {}
                    }
                    // PF reads have no side effects.
                    prop_assert_eq!(&pf, &before);
                }
                Op::PfWrite(reg, x) => {
                    let held = match reg {
                        PfRegister::Pfmbmem { vf, .. } => {
                            pf.mailbox(*vf).map(|m| m.owner() == Owner::Pf)
                        }
                        _ => None,
                    };
                    pf.write(*reg, *x);
                    match reg {
                        PfRegister::Pfmbmem { vf, word } => {
                            if let Some(m) = pf.mailbox(*vf) {
                                let stored = m.words()[*word] == *x;
                                let unchanged = m.words() == before.mailbox(*vf).unwrap().words();
                                let ok = if held == Some(true) { stored } else { unchanged };
                                prop_assert!(ok);
                            }
                        }
                        PfRegister::Pfmbicr(i) => {
                            for v in (i * 16..(i + 1) * 16).filter(|v| *v < VFS) {
                                let bit = (v % 16) as u32;
                                let m = pf.mailbox(v).unwrap();
                                if x & (pfmbicr::VFREQ_VF1 << bit) != 0 {
                                    prop_assert!(!m.request_pending());
                                }
                                if x & (pfmbicr::VFACK_VF1 << bit) != 0 {
                                    prop_assert!(!m.ack_pending());
                                }
                            }
                        }
                        PfRegister::Pfmbimr(i) => prop_assert_eq!(pf.read(*reg), *x, "PFMBIMR({})", i),
                        _ => {}
                    }
                }
                Op::VfReset(v) => {
                    pf.mailbox_mut(*v).unwrap().vf_reset();
                    prop_assert!(pf.mailbox(*v).unwrap().reset_pending());
                    prop_assert!(pf.mailbox(*v).unwrap().owner() != Owner::Vf);
                }
                Op::PfResetStart => {
                    for m in pf.mailboxes_mut() {
                        m.pf_reset_start();
                    }
                    in_pf_reset = true;
                }
                Op::PfResetDone => {
                    for m in pf.mailboxes_mut() {
                        m.pf_reset_done();
                    }
                    in_pf_reset = false;
                }
                Op::Service(v) | Op::Ping(v) | Op::Request(v, _) => {
                    let v = *v;
                    if let Op::Request(_, words) = &op {
                        let m = pf.mailbox_mut(v).unwrap();
                        vf_write(m, VfRegister::Vfmailbox, vfmailbox::VFU);
                        for (i, w) in words.iter().enumerate() {
                            vf_write(m, VfRegister::Vfmbmem(i), *w);
                        }
                        vf_write(m, VfRegister::Vfmailbox, vfmailbox::REQ);
                    }
                    let m = pf.mailbox_mut(v).unwrap();
                    let outcomes = if matches!(op, Op::Ping(_)) {
                        vec![agent.ping(v, m)]
                    } else {
                        let r = agent.service(v, m, &policy[v], 0);
                        for c in r.policy_changes() {
                            c.apply(&mut policy[v]);
                        }
                        r.outcomes
                    };
                    // The agent leaves no lock of its own behind (a PF-side lock taken by a
                    // register write stays until the agent touches the mailbox) and consumes
                    // what it serviced.
                    let m = pf.mailbox(v).unwrap();
                    if m.owner() == Owner::Pf {
                        let held_before = before.mailbox(v).unwrap().owner() == Owner::Pf;
                        let untouched = outcomes.iter().all(|o| {
                            o.reply.is_none() && !matches!(o.trigger, Trigger::Request(_))
                        });
                        prop_assert!(held_before && untouched);
                    }
                    if !matches!(op, Op::Ping(_)) {
                        prop_assert!(!m.request_pending() && !m.ack_pending() && !m.reset_pending());
                    }
                    for o in &outcomes {
                        let Some(reply) = &o.reply else { continue };
                        let w0 = reply.words()[0];
                        if reply.delivered {
                            prop_assert_eq!(m.words()[0], w0);
                        }
                        match o.trigger {
                            Trigger::Request(_) | Trigger::Ack => {
                                // A verdict: exactly one of ACK and NACK.
                                prop_assert!((w0 >> 30) == 0b10 || (w0 >> 30) == 0b01, "{:#x}", w0);
                            }
                            Trigger::Ping => prop_assert_eq!(w0 & 0xFFFF, 0x100),
                            Trigger::VfLevelReset => prop_assert!(false, "a VFLR sends nothing"),
                        }
                    }
                    // The policies the agent produced stay within the hardware's ranges.
                    let p = &policy[v];
                    prop_assert!(p.vlan_filters.iter().all(|vid| *vid <= 0xFFF));
                    prop_assert!(p.mc_hashes.iter().all(|h| *h <= 0xFFF) && p.mc_hashes.len() <= 30);
                    prop_assert!((68..=9728).contains(&p.max_frame) || p.max_frame == 1518);
                }
            }
            // Whatever the op, the mailbox never has two owners and no other VF changed.
            for v in 0..VFS {
                let m = pf.mailbox(v).unwrap();
                prop_assert!(owner_bits(m.peek_v2p()) != (true, true));
                if target.is_some_and(|t| t != v) {
                    prop_assert_eq!(m, before.mailbox(v).unwrap(), "VF {} touched", v);
                }
            }
        }
    }

    #[test]
    fn register_offsets_decode_back(offset in 0u64..0x14000) {
        if let Some(r) = PfRegister::decode(offset) {
            prop_assert_eq!(r.offset(), offset);
        }
        if let Some(r) = VfRegister::decode(offset) {
            prop_assert_eq!(r.offset(), offset);
        }
    }
}

#[test]
fn offsets_name_the_registers_ixgbe_uses() {
    assert_eq!(VfRegister::decode(0x2FC), Some(VfRegister::Vfmailbox));
    assert_eq!(VfRegister::decode(0x23C), Some(VfRegister::Vfmbmem(15)));
    assert_eq!(VfRegister::decode(0x240), None);
    assert_eq!(VfRegister::decode(0x201), None);
    assert_eq!(PfRegister::decode(0x4B04), Some(PfRegister::Pfmailbox(1)));
    assert_eq!(
        PfRegister::decode(0x13044),
        Some(PfRegister::Pfmbmem { vf: 1, word: 1 })
    );
    assert_eq!(PfRegister::decode(0x714), Some(PfRegister::Pfmbicr(1)));
    assert_eq!(PfRegister::decode(0x720), Some(PfRegister::Pfmbimr(0)));
    assert_eq!(PfRegister::decode(0x600), Some(PfRegister::Vflre(0)));
    assert_eq!(PfRegister::decode(0x1C0), Some(PfRegister::Vflre(1)));
    assert_eq!(PfRegister::decode(0x704), Some(PfRegister::Vflrec(1)));
    assert_eq!(
        PfRegister::decode(0x13FFC),
        Some(PfRegister::Pfmbmem { vf: 63, word: 15 })
    );
    assert_eq!(PfRegister::decode(0x14000), None);
}

#[test]
fn pfmbicr_shows_requests_and_acks_sixteen_vfs_per_register_and_clears_on_write() {
    let mut pf = PfMailboxes::new(20);
    vf_write(
        pf.mailbox_mut(1).unwrap(),
        VfRegister::Vfmailbox,
        vfmailbox::REQ,
    );
    vf_write(
        pf.mailbox_mut(17).unwrap(),
        VfRegister::Vfmailbox,
        vfmailbox::ACK,
    );
    assert_eq!(pf.read(PfRegister::Pfmbicr(0)), 0x0000_0002);
    assert_eq!(pf.read(PfRegister::Pfmbicr(1)), 0x0002_0000);
    pf.write(PfRegister::Pfmbicr(0), 0x0000_0002);
    assert_eq!(pf.read(PfRegister::Pfmbicr(0)), 0);
    pf.mailbox_mut(17).unwrap().vf_reset();
    assert_eq!(pf.read(PfRegister::Vflre(0)), 1 << 17);
    pf.write(PfRegister::Vflrec(0), 1 << 17);
    assert_eq!(pf.read(PfRegister::Vflre(0)), 0);
}
