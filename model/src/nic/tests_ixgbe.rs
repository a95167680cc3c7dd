//! The PF side of an 82599: ixgbevf's mailbox exchanges through the registers a VF forwards
//! (VFMAILBOX / VFMBMEM, the 82576's V2PMAILBOX / VMBMEM bit for bit), answered with ixgbe's
//! decisions and applied to the same switch as the 82576's; and where ixgbe decides unlike igb.

use eswitch::{MacAddr, VfSetting};
use mailbox::ixgbe::{ApiVersion, IxgbeMessage, IxgbeMsg, XcastMode};
use mailbox::regs::v2p;

use super::agent::Card;
use super::pf::{NicConfig, PfSide};
use crate::seams::MailboxIrq;

fn ixgbe(num_vfs: u16) -> PfSide {
    PfSide::new(&NicConfig {
        num_vfs,
        card: Card::X82599,
        ..NicConfig::default()
    })
    .unwrap()
}

/// ixgbevf's `ixgbevf_write_posted_mbx` then `ixgbevf_read_posted_mbx`: lock, write, REQ,
/// wait for the PF's ACK, then read its reply and ACK it. Returns the reply.
fn request(pf: &mut PfSide, vf: u16, msg: IxgbeMsg) -> IxgbeMessage {
    let words = IxgbeMessage::request(msg).to_words().unwrap();
    let _ = pf.write_v2p(vf, v2p::VFU, 0);
    assert_ne!(pf.read_v2p(vf) & v2p::VFU, 0, "lock granted");
    for (w, &v) in words.iter().enumerate() {
        pf.write_vmbmem(vf, w, v);
    }
    let _ = pf.write_v2p(vf, v2p::REQ, 0);
    let status = pf.read_v2p(vf);
    assert_ne!(status & v2p::PFACK, 0, "the PF took the request");
    assert_ne!(status & v2p::PFSTS, 0, "and answered");
    let reply: Vec<u32> = (0..16).map(|w| pf.read_vmbmem(vf, w)).collect();
    let _ = pf.write_v2p(vf, v2p::ACK, 0);
    IxgbeMessage::parse(&reply).unwrap()
}

/// ixgbevf's probe: VF reset (VFLRE to the PF), VF_RESET, API negotiation newest first.
fn probe(pf: &mut PfSide, vf: u16) -> (IxgbeMessage, ApiVersion) {
    let _ = pf.vf_reset(vf, 0);
    while pf.read_v2p(vf) & (v2p::RSTI | v2p::RSTD) != 0 {}
    let reset = request(pf, vf, IxgbeMsg::Reset);
    for api in [
        ApiVersion::V1_5,
        ApiVersion::V1_4,
        ApiVersion::V1_3,
        ApiVersion::V1_2,
        ApiVersion::V1_1,
        ApiVersion::V1_0,
    ] {
        if request(pf, vf, IxgbeMsg::ApiNegotiate { api }).flags.ack {
            return (reset, api);
        }
    }
    panic!("no API version accepted");
}

#[test]
fn ixgbevf_probes_through_the_forwarded_registers_and_ixgbes_answers_reach_the_switch() {
    let mut pf = ixgbe(4);
    assert_eq!(pf.card(), Card::X82599);
    let admin = MacAddr([2, 0, 0, 0, 0, 0x10]);
    let _ = pf.configure_vf(1, &[VfSetting::Mac(admin)]).unwrap();
    let (reset, api) = probe(&mut pf, 1);
    assert!(reset.flags.ack, "{reset:?}");
    assert!(matches!(reset.msg, IxgbeMsg::ResetReply { mac, .. } if mac == admin));
    assert_eq!(api, ApiVersion::V1_4, "ixgbe grants 1.4, refuses 1.5");
    let queues = request(&mut pf, 1, IxgbeMsg::GetQueues);
    assert!(queues.flags.ack);
    assert!(matches!(queues.msg, IxgbeMsg::Queues { tx_queues, .. } if tx_queues >= 1));
    // Untrusted under an admin MAC: another MAC is refused, and the switch keeps the admin's.
    let other = MacAddr([2, 0, 0, 0, 0, 0x99]);
    assert!(
        request(&mut pf, 1, IxgbeMsg::SetMacAddr { mac: other })
            .flags
            .nack
    );
    assert_eq!(pf.policy(1).unwrap().mac, Some(admin));
    // An untrusted VF asking for promiscuous gets multicast (ixgbe's downgrade), ACKed.
    let x = request(
        &mut pf,
        1,
        IxgbeMsg::UpdateXcastMode {
            mode: XcastMode::AllMulti,
        },
    );
    assert!(x.flags.ack, "{x:?}");
    assert!(matches!(
        x.msg,
        IxgbeMsg::UpdateXcastMode {
            mode: XcastMode::Multi
        }
    ));
    assert!(!pf.policy(1).unwrap().allmulti);
}

#[test]
fn where_ixgbe_decides_unlike_igb_the_82599s_pf_side_follows_ixgbe() {
    let admin = MacAddr([2, 0, 0, 0, 0, 0x20]);
    let mut igb = PfSide::new(&NicConfig::default()).unwrap();
    let mut x = ixgbe(2);
    let _ = probe(&mut x, 0);
    // A new admin MAC: igb pings the VF, ixgbe only logs "Reload the VF driver".
    assert_eq!(
        igb.configure_vf(0, &[VfSetting::Mac(admin)]),
        Ok(MailboxIrq::Raise)
    );
    assert_eq!(
        x.configure_vf(0, &[VfSetting::Mac(admin)]),
        Ok(MailboxIrq::None)
    );
    // Trust: ixgbe resets the VF's features (CTS revoked, a ping without CTS, which sends
    // ixgbevf through its reset); igb changes nothing the VF sees.
    assert_eq!(
        igb.configure_vf(0, &[VfSetting::Trust(true)]),
        Ok(MailboxIrq::None)
    );
    assert_eq!(
        x.configure_vf(0, &[VfSetting::Trust(true)]),
        Ok(MailboxIrq::Raise)
    );
    assert!(!x.agent().is_clear_to_send(0));
    let ping = x.mailbox(0).unwrap().last_word0();
    assert_eq!(ping & 0xffff, 0x100, "PF_CONTROL_MSG");
    assert_eq!(ping & mailbox::regs::msg::CTS, 0, "without CTS");
    // Trusted now: after the reset ixgbevf does, the MAC change is accepted and switched.
    let _ = probe(&mut x, 0);
    let own = MacAddr([2, 0, 0, 0, 0, 0x21]);
    assert!(
        request(&mut x, 0, IxgbeMsg::SetMacAddr { mac: own })
            .flags
            .ack
    );
    assert_eq!(x.policy(0).unwrap().mac, Some(own));
    // The promiscuous policy is igb's to set; ixgbe gates by trust whatever is asked.
    assert!(!x.set_promisc_policy(mailbox::PromiscPolicy::Igb));
    assert_eq!(x.promisc_policy(), mailbox::PromiscPolicy::TrustedOnly);
    // A link state change pings the VF without CTS on ixgbe (ixgbe_set_vf_link_state).
    let state = VfSetting::parse_words(&["state", "disable"]).unwrap();
    assert_eq!(x.configure_vf(1, &state), Ok(MailboxIrq::Raise));
}

#[test]
fn each_card_takes_the_ip_link_words_its_pf_driver_takes_and_refuses_the_rest_with_its_error() {
    let words = |w: &str| VfSetting::parse_words(&w.split_whitespace().collect::<Vec<_>>());
    let mut x = ixgbe(2);
    let _ = probe(&mut x, 0);
    // query_rss gates GET_RETA (ixgbe_get_vf_reta): refused until the administrator allows it.
    assert!(request(&mut x, 0, IxgbeMsg::GetReta).flags.nack);
    let _ = x.configure_vf(0, &words("query_rss on").unwrap()).unwrap();
    assert!(x.agent().ixgbe().unwrap().query_rss(0));
    let reta = request(&mut x, 0, IxgbeMsg::GetReta);
    assert!(reta.flags.ack, "{reta:?}");
    // ixgbe_ndo_set_vf_bw: no minimum, no maximum of 10 Mbit/s or less; nothing changes.
    let before = x.policy(0).unwrap().clone();
    for w in [
        "min_tx_rate 50",
        "max_tx_rate 10 trust on",
        "trust on min_tx_rate 1",
    ] {
        let e = x.configure_vf(0, &words(w).unwrap()).unwrap_err();
        assert!(e.to_string().contains("Invalid argument"), "{w}: {e}");
        assert_eq!(x.policy(0).unwrap(), &before, "{w}: all or nothing");
    }
    let _ = x
        .configure_vf(0, &words("max_tx_rate 100 min_tx_rate 0").unwrap())
        .unwrap();
    assert_eq!(x.policy(0).unwrap().max_tx_rate, 100);
    // igb has no RSS query setting: `ip link` gets EOPNOTSUPP; its minimum rate is another
    // matter (the switch's).
    let mut igb = PfSide::new(&NicConfig::default()).unwrap();
    let e = igb
        .configure_vf(0, &words("query_rss on").unwrap())
        .unwrap_err();
    assert!(
        e.to_string().contains("igb refuses `query_rss on`")
            && e.to_string().contains("Operation not supported"),
        "{e}"
    );
}
