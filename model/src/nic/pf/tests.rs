//! The PF side alone: mailbox requests answered into the switch, the pings of admin changes,
//! missing VFs counted, the PF function's filters reaching the switch.

use super::*;
use mailbox::regs::{msg, v2p};
use mailbox::{MailboxMsg, Message};

/// igbvf's posted write then posted read, through the forwarded registers.
fn request(pf: &mut PfSide, vf: u16, words: &[u32]) -> (Message, MailboxIrq) {
    let _ = pf.write_v2p(vf, v2p::VFU, 0);
    assert_ne!(pf.read_v2p(vf) & v2p::VFU, 0, "lock granted");
    for (w, &v) in words.iter().enumerate() {
        pf.write_vmbmem(vf, w, v);
    }
    let irq = pf.write_v2p(vf, v2p::REQ, 0);
    let status = pf.read_v2p(vf);
    assert_eq!(status & (v2p::PFACK | v2p::PFSTS), v2p::PFACK | v2p::PFSTS);
    let _ = pf.write_v2p(vf, v2p::VFU, 0);
    let reply: Vec<u32> = (0..3).map(|w| pf.read_vmbmem(vf, w)).collect();
    let _ = pf.write_v2p(vf, v2p::ACK, 0);
    (Message::parse(&reply).unwrap(), irq)
}

fn reset(pf: &mut PfSide, vf: u16) -> Message {
    let _ = pf.vf_reset(vf, 0);
    while pf.read_v2p(vf) & (v2p::RSTI | v2p::RSTD) != 0 {}
    request(pf, vf, &[u32::from(msg::ID_VF_RESET)]).0
}

#[test]
fn mailbox_requests_are_answered_and_reach_the_switch() {
    let mut pf = PfSide::new(&NicConfig::default()).unwrap();
    let admin = MacAddr([2, 0, 0, 0, 0, 0x10]);
    let _ = pf.configure_vf(1, &[VfSetting::Mac(admin)]).unwrap();
    let reply = reset(&mut pf, 1);
    assert_eq!(reply.msg, MailboxMsg::VfResetReply { mac: admin });
    assert!(reply.flags.ack);
    // A VF without an admin MAC: NACK + zeros, then its own MAC is accepted.
    let reply = reset(&mut pf, 2);
    assert!(reply.flags.nack);
    let own = MacAddr([2, 0xee, 0, 0, 0, 2]);
    let set = Message::request(MailboxMsg::SetMacAddr {
        op: mailbox::MacFilterOp::Set,
        mac: own,
    });
    let (answer, irq) = request(&mut pf, 2, &set.to_words());
    assert!(answer.flags.ack && answer.flags.cts);
    assert_eq!(
        irq,
        MailboxIrq::Raise,
        "the VF is interrupted for the PF's ACK and reply"
    );
    assert_eq!(pf.policy(2).unwrap().mac, Some(own));
    // The admin MAC of VF 1 cannot be overridden by an untrusted VF.
    let set = Message::request(MailboxMsg::SetMacAddr {
        op: mailbox::MacFilterOp::Set,
        mac: own,
    });
    let (answer, _) = request(&mut pf, 1, &set.to_words());
    assert!(answer.flags.nack);
    assert_eq!(pf.policy(1).unwrap().mac, Some(admin));
    assert!(pf.refusals(1).unwrap().total() >= 1);
}

#[test]
fn a_state_that_moves_the_vf_link_pings_the_vf_one_that_does_not_stays_quiet() {
    let mut pf = PfSide::new(&NicConfig::default()).unwrap();
    let _ = reset(&mut pf, 0);
    let state = |s: &str| VfSetting::parse_words(&["state", s]).unwrap();
    let pinged = |pf: &PfSide| pf.mailbox(0).unwrap().last_word0() & 0xffff;
    assert_eq!(pf.configure_vf(0, &state("disable")), Ok(MailboxIrq::Raise));
    assert_eq!(pinged(&pf), u32::from(msg::ID_PF_CONTROL));
    // Down already: no news.
    assert_eq!(pf.configure_vf(0, &state("disable")), Ok(MailboxIrq::None));
    assert_eq!(pf.configure_vf(0, &state("auto")), Ok(MailboxIrq::Raise));
    // `enable` with the PF link up: the link stays up.
    assert_eq!(pf.configure_vf(0, &state("enable")), Ok(MailboxIrq::None));
}

#[test]
fn admin_vlan_change_pings_the_vf_and_a_refused_command_changes_nothing() {
    let mut pf = PfSide::new(&NicConfig::default()).unwrap();
    let _ = reset(&mut pf, 0);
    let vlan = VfSetting::Vlan {
        vid: 10,
        qos: 3,
        proto: eswitch::VlanProto::Dot1Q,
    };
    let irq = pf.configure_vf(0, &[vlan]).unwrap();
    assert_eq!(irq, MailboxIrq::Raise);
    let word0 = pf.mailbox(0).unwrap().last_word0();
    assert_eq!(word0 & 0xffff, u32::from(msg::ID_PF_CONTROL));
    assert_ne!(word0 & msg::CTS, 0, "a clear-to-send VF keeps its link");
    // Trust alone changes no MAC or VLAN: no ping.
    assert_eq!(
        pf.configure_vf(0, &[VfSetting::Trust(true)]),
        Ok(MailboxIrq::None)
    );
    let before = pf.policy(0).unwrap().clone();
    let bad = [
        VfSetting::SpoofChk(false),
        VfSetting::Rate {
            min: Some(10),
            max: None,
        },
    ];
    assert!(pf.configure_vf(0, &bad).is_err());
    assert_eq!(pf.policy(0).unwrap(), &before);
}

#[test]
fn accesses_for_a_missing_vf_are_counted_not_fatal() {
    let mut pf = PfSide::new(&NicConfig {
        num_vfs: 2,
        ..NicConfig::default()
    })
    .unwrap();
    assert_eq!(pf.read_v2p(9), 0);
    assert_eq!(pf.write_v2p(9, v2p::REQ, 0), MailboxIrq::None);
    assert!(pf.configure_vf(9, &[VfSetting::Trust(true)]).is_err());
    assert_eq!(pf.bad_vf, 2);
}

#[test]
fn the_pf_functions_filters_reach_the_switch() {
    let clock: Arc<dyn Clock> = Arc::new(crate::seams::ManualClock::new(0));
    let shared = SharedPf::new(PfSide::new(&NicConfig::default()).unwrap(), clock);
    let mac = MacAddr([2, 0, 0, 0, 0, 0x42]);
    let policy = PfPolicy {
        macs: vec![mac],
        mc_hashes: vec![0x123],
        vlans: vec![10],
        allmulti: true,
        ..PfPolicy::default()
    };
    shared.set_pf_policy(policy.clone());
    assert_eq!(shared.side().switch().pf_policy(), &policy);
    // An invalid policy is refused and the switch keeps the last one.
    shared.set_pf_policy(PfPolicy {
        vlans: vec![5000],
        ..PfPolicy::default()
    });
    assert_eq!(shared.side().switch().pf_policy(), &policy);
    // A frame for the PF in VLAN 10 from the uplink: the tag stays on until the PF asks
    // for stripping.
    let tagged = eswitch::build_frame(
        mac,
        MacAddr([2, 0, 0, 0, 0, 0x99]),
        Some(eswitch::VlanTci::new(10, 0)),
        eswitch::wire::EtherTypes::Ipv4,
        &[0u8; 46],
    );
    let to_pf = |shared: &SharedPf| {
        let out = shared
            .side()
            .switch_mut()
            .process(PortId::Uplink(0), tagged.clone());
        out.deliveries
            .iter()
            .find(|d| d.port == PortId::Pf)
            .map(|d| d.stripped_tci)
    };
    assert_eq!(to_pf(&shared), Some(None));
    shared.set_rx_vlan_strip(true);
    assert_eq!(to_pf(&shared), Some(Some(eswitch::VlanTci::new(10, 0))));
}
