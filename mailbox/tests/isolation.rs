//! Property tests: whatever a VF writes to its mailbox registers, no other VF's buffer or state
//! changes, nothing panics, and the ownership rules hold after every access.

mod common;

use common::{Igbvf, Nic, RANDOM_MAC};
use mailbox::regs::{msg, p2v, v2p, MAILBOX_WORDS};
use mailbox::{AgentConfig, MacAssignment, Owner, VfMailbox};
use proptest::prelude::*;

/// One access by a misbehaving (or just random) VF driver.
#[derive(Clone, Debug)]
enum VfOp {
    WriteV2p(u32),
    ReadV2p,
    WriteMem(usize, u32),
    ReadMem(usize),
    CtrlRst,
    Advance(u64),
    /// Lock, write a message whose id is one the PF knows (or not), post it.
    Post(Vec<u32>),
}

fn word0() -> impl Strategy<Value = u32> {
    let ids = prop_oneof![
        Just(u32::from(msg::ID_VF_RESET)),
        Just(u32::from(msg::ID_SET_MAC_ADDR)),
        Just(u32::from(msg::ID_SET_MULTICAST)),
        Just(u32::from(msg::ID_SET_VLAN)),
        Just(u32::from(msg::ID_SET_LPE)),
        Just(u32::from(msg::ID_SET_PROMISC)),
        Just(u32::from(msg::ID_PF_CONTROL)),
        any::<u16>().prop_map(u32::from),
    ];
    (ids, any::<u8>(), 0u32..8).prop_map(|(id, info, flags)| {
        // Mostly plain requests, sometimes with stray flag bits.
        let f = if flags < 6 { 0 } else { flags << 29 };
        id | (u32::from(info) << msg::INFO_SHIFT) | f
    })
}

fn vf_op() -> impl Strategy<Value = VfOp> {
    prop_oneof![
        3 => any::<u32>().prop_map(VfOp::WriteV2p),
        3 => prop_oneof![Just(v2p::VFU), Just(v2p::REQ), Just(v2p::ACK), Just(v2p::VFU | v2p::REQ), Just(0)]
            .prop_map(VfOp::WriteV2p),
        2 => Just(VfOp::ReadV2p),
        3 => (0usize..20, any::<u32>()).prop_map(|(w, v)| VfOp::WriteMem(w, v)),
        1 => (0usize..20).prop_map(VfOp::ReadMem),
        1 => Just(VfOp::CtrlRst),
        1 => (0u64..3_000_000_000).prop_map(VfOp::Advance),
        4 => (word0(), proptest::collection::vec(any::<u32>(), 0..4)).prop_map(|(w0, mut rest)| {
            rest.insert(0, w0);
            VfOp::Post(rest)
        }),
    ]
}

fn apply(nic: &mut Nic, vf: usize, op: &VfOp) {
    match op {
        VfOp::WriteV2p(v) => nic.write_v2p(vf, *v),
        VfOp::ReadV2p => {
            nic.read_v2p(vf);
        }
        VfOp::WriteMem(w, v) => nic.write_vmbmem(vf, *w, *v),
        VfOp::ReadMem(w) => {
            nic.read_vmbmem(vf, *w);
        }
        VfOp::CtrlRst => nic.vf_ctrl_rst(vf),
        VfOp::Advance(ns) => nic.advance(*ns),
        VfOp::Post(words) => {
            nic.write_v2p(vf, v2p::VFU);
            for (i, w) in words.iter().enumerate() {
                nic.write_vmbmem(vf, i, *w);
            }
            nic.write_v2p(vf, v2p::REQ);
        }
    }
}

fn check_ownership(m: &VfMailbox) -> Result<(), TestCaseError> {
    let v = m.peek_v2p();
    prop_assert!(
        v & v2p::VFU == 0 || v & v2p::PFU == 0,
        "both sides hold the buffer: {v:#x}"
    );
    prop_assert!(m.owner() != Owner::Pf, "the agent left the PF lock held");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_vf_accesses_never_touch_another_vf(
        ops in proptest::collection::vec((prop_oneof![Just(0usize), Just(2usize)], vf_op()), 1..120),
        generated in any::<bool>(),
    ) {
        let mut cfg = AgentConfig::new(3);
        if generated {
            cfg.mac_assignment = MacAssignment::Generated { seed: [1, 2, 3] };
        }
        let mut nic = Nic::new(cfg);
        // VF 1 is a well-behaved igbvf: reset, MAC, a VLAN and multicast.
        let mut good = Igbvf::new(1);
        good.probe(&mut nic, RANDOM_MAC).unwrap();
        good.set_vlan(&mut nic, 11, true).unwrap();
        good.set_multicast(&mut nic, &[0x10, 0x20]).unwrap();
        let mbx1 = nic.mbx[1].clone();
        let policy1 = nic.policy[1].clone();
        let refusals1 = nic.agent.refusals(1);
        let irqs1 = nic.vf_irqs[1];

        for (vf, op) in &ops {
            let before = nic.mbx[*vf].clone();
            let outcomes_before = nic.outcomes.len();
            apply(&mut nic, *vf, op);
            let after = &nic.mbx[*vf];
            check_ownership(after)?;
            // A VF buffer write lands only while the VF holds the buffer.
            if let VfOp::WriteMem(w, v) = op {
                if before.owner() == Owner::Vf && *w < MAILBOX_WORDS {
                    prop_assert_eq!(after.words()[*w], *v);
                } else {
                    prop_assert_eq!(after.words(), before.words());
                }
            }
            // Any other change to the buffer came from a PF reply the agent delivered.
            if !matches!(op, VfOp::WriteMem(..) | VfOp::Post(..)) && after.words() != before.words() {
                let delivered = nic.outcomes[outcomes_before..]
                    .iter()
                    .any(|o| o.vf == *vf && o.reply.as_ref().is_some_and(|r| r.delivered));
                prop_assert!(delivered, "buffer changed without a delivered reply: {op:?}");
            }
            // Nothing the agent did concerned VF 1.
            prop_assert!(nic.outcomes[outcomes_before..].iter().all(|o| o.vf == *vf));
            prop_assert_eq!(&nic.mbx[1], &mbx1);
            prop_assert_eq!(&nic.policy[1], &policy1);
            prop_assert_eq!(nic.agent.refusals(1), refusals1);
            prop_assert_eq!(nic.vf_irqs[1], irqs1);
        }

        // VF 1 still gets its full VLAN share and its answers.
        let (share, _) = nic.agent.vlan_budget();
        for i in 1..share as u16 {
            let r = good.set_vlan(&mut nic, 1000 + i, true).unwrap();
            prop_assert_eq!(r, u32::from(msg::ID_SET_VLAN) | msg::ACK | (1 << msg::INFO_SHIFT));
        }
        prop_assert!(good.link_up(&mut nic));
    }

    #[test]
    fn interleaved_vf_and_pf_register_accesses_keep_ownership(
        ops in proptest::collection::vec((any::<bool>(), 0u8..4, 0usize..18, any::<u32>()), 1..200)
    ) {
        let mut m = VfMailbox::new();
        let mut reqs = 0u32;
        let mut taken = 0u32;
        for (pf, kind, word, value) in ops {
            let owner = m.owner();
            match (pf, kind) {
                (false, 0) => {
                    if value & v2p::REQ != 0 {
                        reqs += 1;
                    }
                    m.write_v2p(value);
                }
                (false, 1) => {
                    let v = m.read_v2p();
                    prop_assert_eq!(m.peek_v2p() & v2p::R2C, 0);
                    prop_assert_eq!(v & (v2p::REQ | v2p::ACK), 0);
                }
                (false, _) => {
                    let stored = m.write_vmbmem(word, value);
                    prop_assert_eq!(stored, owner == Owner::Vf && word < MAILBOX_WORDS);
                }
                (true, 0) => {
                    if value & p2v::RVFU != 0 && m.request_pending() {
                        // RVFU drops a pending request.
                        reqs -= 1;
                    }
                    m.write_p2v(value);
                }
                (true, 1) => {
                    if m.take_request() {
                        taken += 1;
                    }
                }
                (true, _) => {
                    let stored = m.pf_write_vmbmem(word, value);
                    prop_assert_eq!(stored, owner == Owner::Pf && word < MAILBOX_WORDS);
                }
            }
            let v = m.peek_v2p();
            prop_assert!(v & v2p::VFU == 0 || v & v2p::PFU == 0);
            // P2V and V2P agree on who holds the buffer.
            prop_assert_eq!(m.read_p2v() & p2v::VFU != 0, v & v2p::VFU != 0);
            prop_assert_eq!(m.read_p2v() & p2v::PFU != 0, v & v2p::PFU != 0);
            // Pending REQs coalesce like the MBVFICR bit: never more taken than posted.
            prop_assert!(taken <= reqs);
            if m.request_pending() {
                prop_assert!(taken < reqs);
            }
        }
    }
}
