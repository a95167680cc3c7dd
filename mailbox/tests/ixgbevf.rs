//! The ixgbe agent driven the way Linux ixgbevf 6.1 drives an 82599 VF's mailbox: the legacy
//! mailbox operations of ixgbevf `mbx.c` (lock with VFU, post with REQ alone, poll PFSTS, read,
//! ACK alone; the read-to-clear bits cached in software) and the requests of `vf.c` and
//! `ixgbevf_main.c` (`ixgbevf_reset_hw_vf`, `ixgbevf_negotiate_api`, `ixgbevf_get_queues`,
//! `ixgbevf_update_xcast_mode`, `ixgbevf_get_reta_locked`, `ixgbevf_set_uc_addr_vf`, ...).

use eswitch::{LinkState, MacAddr, PortVlan, VfPolicy};
use mailbox::ixgbe::regs::{api, msg, vfmailbox, xcast, MAILBOX_WORDS};
use mailbox::ixgbe::{
    vf_read, vf_write, ApiVersion, IxgbeAgent, IxgbeConfig, IxgbeMessage, IxgbeMsg, IxgbeOutcome,
    VfRegister, XcastMode,
};
use mailbox::{MacAssignment, MailboxEvent, PolicyChange, RefusalReason, Trigger, VfMailbox};

const ADMIN_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x10]);
const OTHER_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x99]);

/// A PF with its VFs' mailboxes and policies, serviced inside the VF's register write as the
/// device model does.
struct Nic {
    agent: IxgbeAgent,
    mbx: Vec<VfMailbox>,
    policy: Vec<VfPolicy>,
    outcomes: Vec<IxgbeOutcome>,
    vf_irqs: Vec<u64>,
    now: u64,
}

impl Nic {
    fn new(config: IxgbeConfig) -> Nic {
        let n = config.num_vfs;
        Nic {
            agent: IxgbeAgent::new(config).expect("config"),
            mbx: vec![VfMailbox::new(); n],
            policy: vec![VfPolicy::default(); n],
            outcomes: Vec::new(),
            vf_irqs: vec![0; n],
            now: 1_000_000_000,
        }
    }

    fn with_vfs(n: usize) -> Nic {
        Nic::new(IxgbeConfig::new(n))
    }

    fn service(&mut self, vf: usize) {
        let report = self
            .agent
            .service(vf, &mut self.mbx[vf], &self.policy[vf], self.now);
        for c in report.policy_changes() {
            c.apply(&mut self.policy[vf]);
        }
        if report.events.contains(MailboxEvent::InterruptVf) {
            self.vf_irqs[vf] += 1;
        }
        self.outcomes.extend(report.outcomes);
    }

    fn read(&mut self, vf: usize, reg: VfRegister) -> u32 {
        vf_read(&mut self.mbx[vf], reg)
    }

    fn write(&mut self, vf: usize, reg: VfRegister, value: u32) {
        let ev = vf_write(&mut self.mbx[vf], reg, value);
        if ev.contains(MailboxEvent::InterruptPf) {
            self.service(vf);
        }
    }

    /// VFCTRL.RST (or FLR): the VF's reset raises VFLRE.
    fn vf_reset(&mut self, vf: usize) {
        let ev = self.mbx[vf].vf_reset();
        if ev.contains(MailboxEvent::InterruptPf) {
            self.service(vf);
        }
    }

    fn last(&self) -> &IxgbeOutcome {
        self.outcomes.last().expect("an outcome")
    }

    fn last_refusal(&self) -> Option<RefusalReason> {
        self.last().refusal.map(|r| r.reason)
    }
}

/// ixgbevf's mailbox and the requests it sends.
struct Ixgbevf {
    vf: usize,
    /// `mbx->vf_mailbox`: the read-to-clear bits seen and not yet consumed.
    cache: u32,
    api: ApiVersion,
    perm_addr: MacAddr,
}

/// ixgbevf polls 2000 times (`IXGBE_VF_MBX_INIT_TIMEOUT`).
const POLLS: u32 = 2000;

impl Ixgbevf {
    fn new(vf: usize) -> Ixgbevf {
        Ixgbevf {
            vf,
            cache: 0,
            api: ApiVersion::V1_0,
            perm_addr: MacAddr::ZERO,
        }
    }

    /// ixgbevf_read_v2p_mailbox.
    fn read_mailbox(&mut self, nic: &mut Nic) -> u32 {
        let v = nic.read(self.vf, VfRegister::Vfmailbox) | self.cache;
        self.cache |= v & vfmailbox::R2C;
        v
    }

    /// ixgbevf_check_for_bit_vf: a cached bit is consumed once seen.
    fn check_bit(&mut self, nic: &mut Nic, mask: u32) -> bool {
        let v = self.read_mailbox(nic);
        self.cache &= !mask;
        v & mask != 0
    }

    /// ixgbevf_obtain_mbx_lock_vf.
    fn lock(&mut self, nic: &mut Nic) -> Result<(), &'static str> {
        for _ in 0..POLLS {
            let cached = self.read_mailbox(nic);
            nic.write(self.vf, VfRegister::Vfmailbox, cached | vfmailbox::VFU);
            if self.read_mailbox(nic) & vfmailbox::VFU != 0 {
                return Ok(());
            }
        }
        Err("lock timeout")
    }

    /// ixgbevf_write_mbx_vf_legacy: lock, flush stale PFSTS/PFACK, write, REQ alone.
    fn send(&mut self, nic: &mut Nic, words: &[u32]) -> Result<(), &'static str> {
        self.lock(nic)?;
        self.check_bit(nic, vfmailbox::PFSTS);
        self.check_bit(nic, vfmailbox::PFACK);
        for (i, w) in words.iter().enumerate() {
            nic.write(self.vf, VfRegister::Vfmbmem(i), *w);
        }
        nic.write(self.vf, VfRegister::Vfmailbox, vfmailbox::REQ);
        Ok(())
    }

    /// ixgbevf_poll_for_msg + ixgbevf_read_mbx_vf_legacy: wait for PFSTS, lock, read, ACK alone.
    fn receive(&mut self, nic: &mut Nic, n: usize) -> Result<Vec<u32>, &'static str> {
        let mut seen = false;
        for _ in 0..POLLS {
            if self.check_bit(nic, vfmailbox::PFSTS) {
                seen = true;
                break;
            }
        }
        if !seen {
            return Err("no PFSTS");
        }
        self.lock(nic)?;
        let words = (0..n)
            .map(|i| nic.read(self.vf, VfRegister::Vfmbmem(i)))
            .collect();
        nic.write(self.vf, VfRegister::Vfmailbox, vfmailbox::ACK);
        Ok(words)
    }

    /// ixgbevf_write_msg_read_ack: a request and its reply, `n` words each way.
    fn exchange(&mut self, nic: &mut Nic, request: &[u32], n: usize) -> Vec<u32> {
        self.send(nic, request).expect("send");
        self.receive(nic, n).expect("reply")
    }

    fn exchange_typed(&mut self, nic: &mut Nic, m: IxgbeMsg, n: usize) -> IxgbeMessage {
        let words = IxgbeMessage::request(m).to_words().expect("request fits");
        let reply = self.exchange(nic, &words, n);
        IxgbeMessage::parse(&reply).expect("reply parses")
    }

    /// ixgbevf_reset_hw_vf: VFCTRL.RST, wait out RSTI/RSTD, VF_RESET, read 4 words. A NACK
    /// keeps the previous permanent address. Returns word 0 of the reply.
    fn reset_hw(&mut self, nic: &mut Nic) -> u32 {
        self.api = ApiVersion::V1_0;
        nic.vf_reset(self.vf);
        let mut polls = 200;
        while polls > 0 && self.check_bit(nic, vfmailbox::RSTD | vfmailbox::RSTI) {
            polls -= 1;
        }
        assert!(polls > 0, "PF still in reset state");
        let reply = self.exchange(nic, &[u32::from(msg::ID_VF_RESET)], 4);
        assert!(
            reply[0] == 0x8000_0001 || reply[0] == 0x4000_0001,
            "ixgbevf takes any other word 0 for a PF still in reset: {:#x}",
            reply[0]
        );
        if reply[0] & msg::ACK != 0 {
            let m = IxgbeMessage::parse(&reply).unwrap();
            let IxgbeMsg::ResetReply { mac, .. } = m.msg else {
                panic!("{m:?}")
            };
            self.perm_addr = mac;
        }
        assert_eq!(reply[3], 0, "multicast filter type 0 (bits 47:36)");
        reply[0]
    }

    /// ixgbevf_negotiate_api_version_vf for one version: ACK (CTS aside) accepts it.
    fn propose(&mut self, nic: &mut Nic, v: ApiVersion) -> bool {
        let reply = self.exchange(nic, &[u32::from(msg::ID_API_NEGOTIATE), v.to_wire(), 0], 3);
        let accepted = reply[0] & !msg::CTS == (u32::from(msg::ID_API_NEGOTIATE) | msg::ACK);
        if accepted {
            self.api = v;
        }
        accepted
    }

    /// ixgbevf_negotiate_api: newest first, stop at the first ACK. Returns what was tried.
    fn negotiate(&mut self, nic: &mut Nic, order: &[ApiVersion]) -> Vec<(ApiVersion, bool)> {
        let mut tried = Vec::new();
        for v in order {
            let ok = self.propose(nic, *v);
            tried.push((*v, ok));
            if ok {
                break;
            }
        }
        tried
    }

    /// ixgbevf_get_queues: only from API 1.1 on; `None` when not asked or refused.
    fn get_queues(&mut self, nic: &mut Nic) -> Option<[u32; 4]> {
        if matches!(self.api, ApiVersion::V1_0) {
            return None;
        }
        let reply = self.exchange(nic, &[u32::from(msg::ID_GET_QUEUES), 0, 0, 0, 0], 5);
        if reply[0] & !msg::CTS != (u32::from(msg::ID_GET_QUEUES) | msg::ACK) {
            return None;
        }
        Some([reply[1], reply[2], reply[3], reply[4]])
    }

    /// ixgbevf_probe's mailbox part: reset, negotiate newest first, GET_QUEUES.
    fn probe(&mut self, nic: &mut Nic) -> (u32, Vec<(ApiVersion, bool)>, Option<[u32; 4]>) {
        let w0 = self.reset_hw(nic);
        let tried = self.negotiate(nic, &ApiVersion::IXGBEVF_6_1_ORDER);
        let queues = self.get_queues(nic);
        (w0, tried, queues)
    }

    /// ixgbevf_update_xcast_mode: word 1 of the reply is the mode the PF applied.
    fn xcast(&mut self, nic: &mut Nic, mode: u32) -> (bool, u32) {
        let reply = self.exchange(nic, &[u32::from(msg::ID_UPDATE_XCAST_MODE), mode], 2);
        (reply[0] & msg::NACK == 0, reply[1])
    }

    /// ixgbevf_set_rar_vf: SET_MAC_ADDR; NACK (CTS aside) means refused.
    fn set_mac(&mut self, nic: &mut Nic, mac: MacAddr) -> bool {
        let r = self.exchange_typed(nic, IxgbeMsg::SetMacAddr { mac }, 3);
        !r.flags.nack
    }
}

fn acked(m: &IxgbeMessage) -> bool {
    m.flags.ack && !m.flags.nack && m.flags.cts
}

fn nacked(m: &IxgbeMessage) -> bool {
    m.flags.nack && !m.flags.ack && m.flags.cts
}

/// A VF through ixgbevf's probe, at the API it lands on.
fn probed(nic: &mut Nic, vf: usize) -> Ixgbevf {
    let mut d = Ixgbevf::new(vf);
    d.probe(nic);
    d
}

#[test]
fn probe_resets_negotiates_1_4_after_1_5_is_refused_then_gets_queues() {
    let mut nic = Nic::with_vfs(4);
    let mut d = Ixgbevf::new(2);
    let (w0, tried, queues) = d.probe(&mut nic);
    // No admin MAC: NACK with zero MAC bytes (ixgbevf then picks a random one).
    assert_eq!(w0, 0x4000_0001);
    assert_eq!(d.perm_addr, MacAddr::ZERO);
    assert!(nic.agent.is_clear_to_send(2));
    assert_eq!(
        tried,
        vec![(ApiVersion::V1_5, false), (ApiVersion::V1_4, true)]
    );
    assert_eq!(nic.agent.api_version(2), Some(ApiVersion::V1_4));
    // 4 VFs: 32 pools of 4 queues; no port VLAN; default queue 0.
    assert_eq!(queues, Some([4, 4, 0, 0]));
    // The refused proposal carried CTS (the VF is clear to send) and NACK.
    let refused = nic
        .outcomes
        .iter()
        .find(|o| o.refusal.map(|r| r.reason) == Some(RefusalReason::UnsupportedApi))
        .expect("1.5 refused");
    assert!(nacked(&refused.reply.as_ref().unwrap().message));
    assert_eq!(nic.agent.refusals(2).get(RefusalReason::UnsupportedApi), 1);
    // Every request and reply raised the VF's mailbox interrupt.
    assert!(nic.vf_irqs[2] >= 4);
}

#[test]
fn later_6_1_releases_ask_for_1_7_and_1_6_first_and_land_on_1_4() {
    let mut nic = Nic::with_vfs(1);
    let mut d = Ixgbevf::new(0);
    d.reset_hw(&mut nic);
    let order = [
        ApiVersion::V1_7,
        ApiVersion::V1_6,
        ApiVersion::V1_5,
        ApiVersion::V1_4,
    ];
    let tried = d.negotiate(&mut nic, &order);
    assert_eq!(tried.iter().filter(|(_, ok)| !ok).count(), 3);
    assert_eq!(d.api, ApiVersion::V1_4);
}

#[test]
fn a_pf_that_refuses_a_version_makes_ixgbevf_try_the_next_lower_one() {
    // An older ixgbe grants up to 1.2: the VF walks down 1.5, 1.4, 1.3 to 1.2.
    for (max, lands) in [
        (ApiVersion::V1_4, ApiVersion::V1_4),
        (ApiVersion::V1_3, ApiVersion::V1_3),
        (ApiVersion::V1_2, ApiVersion::V1_2),
        (ApiVersion::V1_1, ApiVersion::V1_1),
        (ApiVersion::V1_0, ApiVersion::V1_0),
    ] {
        let mut config = IxgbeConfig::new(1);
        config.max_api = max;
        let mut nic = Nic::new(config);
        let mut d = Ixgbevf::new(0);
        let (_, tried, queues) = d.probe(&mut nic);
        let expected: Vec<_> = ApiVersion::IXGBEVF_6_1_ORDER
            .iter()
            .map(|v| (*v, *v == lands))
            .take_while(|(v, _)| v.linux_minor() >= lands.linux_minor())
            .collect();
        assert_eq!(tried, expected, "PF up to {max}");
        assert_eq!(d.api, lands);
        // GET_QUEUES only from 1.1 on.
        assert_eq!(queues.is_some(), lands != ApiVersion::V1_0);
    }
}

#[test]
fn every_version_ixgbevf_may_ask_for_is_accepted_or_refused_as_ixgbe_does() {
    let mut nic = Nic::with_vfs(1);
    let mut d = Ixgbevf::new(0);
    d.reset_hw(&mut nic);
    for raw in [
        api::V1_0,
        api::V2_0,
        api::V1_1,
        api::V1_2,
        api::V1_3,
        api::V1_4,
        api::V1_5,
        api::V1_6,
        api::V1_7,
        0x14,
        u32::MAX,
    ] {
        let v = ApiVersion::from_wire(raw);
        let granted = matches!(raw, 0 | 2 | 3 | 4 | 5);
        assert_eq!(d.propose(&mut nic, v), granted, "API {v}");
        if granted {
            assert_eq!(nic.agent.api_version(0), Some(v));
        }
    }
}

#[test]
fn admin_mac_is_acked_in_the_reset_reply_without_cts() {
    let mut nic = Nic::with_vfs(2);
    nic.policy[1].mac = Some(ADMIN_MAC);
    nic.policy[1].admin_mac = true;
    let mut d = Ixgbevf::new(1);
    let w0 = d.reset_hw(&mut nic);
    assert_eq!(w0, 0x8000_0001);
    assert_eq!(d.perm_addr, ADMIN_MAC);
    assert_eq!(nic.policy[1].mac, Some(ADMIN_MAC));
    // ixgbe_vf_clear_mbx: the rest of the buffer is zero.
    assert!(nic.mbx[1].words()[4..].iter().all(|w| *w == 0));
}

#[test]
fn a_mac_the_vf_chose_is_kept_but_answered_with_nack_at_reset() {
    let mut nic = Nic::with_vfs(1);
    let mut d = probed(&mut nic, 0);
    assert!(d.set_mac(&mut nic, OTHER_MAC));
    assert_eq!(nic.policy[0].mac, Some(OTHER_MAC));
    assert_eq!(d.reset_hw(&mut nic), 0x4000_0001);
    assert_eq!(nic.policy[0].mac, Some(OTHER_MAC));
}

#[test]
fn generated_macs_are_acked_at_every_reset() {
    let mut config = IxgbeConfig::new(2);
    config.mac_assignment = MacAssignment::Generated {
        seed: [0xAA, 0xBB, 0xCC],
    };
    let mut nic = Nic::new(config);
    let mut d = Ixgbevf::new(1);
    let mac = MacAddr([0x02, 0xAA, 0xBB, 0xCC, 0x00, 0x01]);
    for _ in 0..2 {
        assert_eq!(d.reset_hw(&mut nic), 0x8000_0001);
        assert_eq!(d.perm_addr, mac);
    }
}

#[test]
fn mac_change_refused_under_an_admin_mac_unless_trusted_or_unchanged() {
    let mut nic = Nic::with_vfs(1);
    nic.policy[0].mac = Some(ADMIN_MAC);
    nic.policy[0].admin_mac = true;
    let mut d = probed(&mut nic, 0);
    // ixgbe_set_vf_mac_addr: another MAC from an untrusted VF is refused...
    assert!(!d.set_mac(&mut nic, OTHER_MAC));
    assert_eq!(nic.last_refusal(), Some(RefusalReason::AdminMacOverride));
    assert_eq!(nic.policy[0].mac, Some(ADMIN_MAC));
    // ...the admin MAC itself is accepted (ixgbevf re-sends it at every open)...
    assert!(d.set_mac(&mut nic, ADMIN_MAC));
    // ...and a trusted VF may change it.
    nic.policy[0].trust = true;
    assert!(d.set_mac(&mut nic, OTHER_MAC));
    assert_eq!(nic.policy[0].mac, Some(OTHER_MAC));
    assert_eq!(
        nic.last().policy_change,
        Some(PolicyChange::SetMac(OTHER_MAC))
    );
    // Invalid MACs never.
    for bad in [MacAddr::ZERO, MacAddr([0x01, 0, 0x5e, 0, 0, 1])] {
        assert!(!d.set_mac(&mut nic, bad));
        assert_eq!(nic.last_refusal(), Some(RefusalReason::InvalidMac));
    }
}

#[test]
fn mac_change_without_admin_mac_is_accepted() {
    let mut nic = Nic::with_vfs(1);
    let mut d = probed(&mut nic, 0);
    assert!(d.set_mac(&mut nic, OTHER_MAC));
    assert_eq!(nic.policy[0].mac, Some(OTHER_MAC));
}

#[test]
fn trust_change_revokes_cts_and_pings_without_it() {
    let mut nic = Nic::with_vfs(1);
    let mut d = probed(&mut nic, 0);
    nic.policy[0].trust = true;
    let o = nic
        .agent
        .trust_changed(0, &nic.policy[0], &mut nic.mbx[0])
        .expect("trust changed");
    assert_eq!(o.reply.unwrap().words(), &[0x0000_0100]);
    assert!(!nic.agent.is_clear_to_send(0));
    assert!(nic
        .agent
        .trust_changed(0, &nic.policy[0], &mut nic.mbx[0])
        .is_none());
    // ixgbevf's link check reads word 0: no CTS → it resets, which restores CTS.
    assert_eq!(nic.mbx[0].words()[0] & msg::CTS, 0);
    d.reset_hw(&mut nic);
    assert!(nic.agent.is_clear_to_send(0));
}

#[test]
fn xcast_modes_are_gated_by_trust_as_ixgbe_gates_them() {
    let mut nic = Nic::with_vfs(1);
    let mut d = probed(&mut nic, 0);
    // Untrusted: NONE and MULTI as asked; ALLMULTI and PROMISC silently become MULTI (ACK).
    assert_eq!(d.xcast(&mut nic, xcast::NONE), (true, xcast::NONE));
    assert_eq!(d.xcast(&mut nic, xcast::MULTI), (true, xcast::MULTI));
    assert_eq!(d.xcast(&mut nic, xcast::ALLMULTI), (true, xcast::MULTI));
    assert!(!nic.policy[0].allmulti);
    assert_eq!(d.xcast(&mut nic, xcast::PROMISC), (true, xcast::MULTI));
    assert!(!nic.policy[0].promisc);
    // An undefined mode above MULTI is downgraded too; a "negative" one is refused.
    assert_eq!(d.xcast(&mut nic, 7), (true, xcast::MULTI));
    assert!(!d.xcast(&mut nic, 0xFFFF_FFFF).0);
    assert_eq!(
        nic.last_refusal(),
        Some(RefusalReason::UnsupportedXcastMode)
    );
    // Trusted: ALLMULTI granted; PROMISC refused on the 82599 even then.
    nic.policy[0].trust = true;
    assert_eq!(d.xcast(&mut nic, xcast::ALLMULTI), (true, xcast::ALLMULTI));
    assert!(nic.policy[0].allmulti);
    assert!(!d.xcast(&mut nic, xcast::PROMISC).0);
    assert_eq!(
        nic.last_refusal(),
        Some(RefusalReason::UnsupportedXcastMode)
    );
    assert_eq!(nic.agent.xcast_mode(0), Some(XcastMode::AllMulti));
    // The same mode again: ACK without a change.
    assert_eq!(d.xcast(&mut nic, xcast::ALLMULTI), (true, xcast::ALLMULTI));
    assert_eq!(nic.last().policy_change, None);
    // Back to MULTI.
    assert_eq!(d.xcast(&mut nic, xcast::MULTI), (true, xcast::MULTI));
    assert!(!nic.policy[0].allmulti);
}

#[test]
fn xcast_needs_api_1_2_and_promisc_needs_1_3() {
    for (v, multi_ok, promisc_refused_for_api) in [
        (ApiVersion::V1_0, false, true),
        (ApiVersion::V1_1, false, true),
        (ApiVersion::V1_2, true, true),
        (ApiVersion::V1_3, true, false),
        (ApiVersion::V1_4, true, false),
    ] {
        let mut nic = Nic::with_vfs(1);
        let mut d = Ixgbevf::new(0);
        d.reset_hw(&mut nic);
        assert!(d.propose(&mut nic, v));
        assert_eq!(d.xcast(&mut nic, xcast::MULTI).0, multi_ok, "MULTI at {v}");
        let (ok, _) = d.xcast(&mut nic, xcast::PROMISC);
        if promisc_refused_for_api {
            assert!(!ok);
            assert_eq!(
                nic.last_refusal(),
                Some(RefusalReason::NotInNegotiatedApi),
                "{v}"
            );
        } else {
            // Untrusted at 1.3+: downgraded to MULTI.
            assert!(ok, "{v}");
        }
    }
}

#[test]
fn reta_and_rss_key_need_query_rss_and_api_1_2() {
    let mut nic = Nic::with_vfs(2);
    let mut d = probed(&mut nic, 1);
    let reta = d.exchange_typed(&mut nic, IxgbeMsg::GetReta, 9);
    assert!(nacked(&reta));
    assert_eq!(nic.last_refusal(), Some(RefusalReason::RssQueryDisabled));
    let key = d.exchange_typed(&mut nic, IxgbeMsg::GetRssKey, 11);
    assert!(nacked(&key));

    nic.agent.set_query_rss(1, true);
    let reta = d.exchange_typed(&mut nic, IxgbeMsg::GetReta, 9);
    assert!(acked(&reta));
    let IxgbeMsg::Reta { entries } = reta.msg else {
        panic!("{reta:?}")
    };
    assert_eq!(&entries[..8], &[0, 1, 2, 3, 0, 1, 2, 3]);
    let key = d.exchange_typed(&mut nic, IxgbeMsg::GetRssKey, 11);
    assert!(acked(&key));
    assert_eq!(
        key.msg,
        IxgbeMsg::RssKey {
            key: nic.agent.config().rss_key
        }
    );

    // query_rss on but API 1.1: refused for the version.
    d.reset_hw(&mut nic);
    assert!(d.propose(&mut nic, ApiVersion::V1_1));
    assert!(nacked(&d.exchange_typed(&mut nic, IxgbeMsg::GetReta, 9)));
    assert_eq!(nic.last_refusal(), Some(RefusalReason::NotInNegotiatedApi));
}

#[test]
fn link_state_is_answered_from_api_1_2_and_follows_the_admin() {
    let mut nic = Nic::with_vfs(1);
    let mut d = probed(&mut nic, 0);
    let r = d.exchange_typed(&mut nic, IxgbeMsg::GetLinkState, 2);
    assert!(acked(&r));
    assert_eq!(r.msg, IxgbeMsg::LinkState { enabled: true });

    // `state disable`: CTS revoked and a ping; after its reset the VF reads "disabled".
    let o = nic
        .agent
        .admin_link_state(0, LinkState::Disable, &mut nic.mbx[0])
        .expect("pinged");
    assert_eq!(o.trigger, Trigger::Ping);
    d.probe(&mut nic);
    let r = d.exchange_typed(&mut nic, IxgbeMsg::GetLinkState, 2);
    assert_eq!(r.msg, IxgbeMsg::LinkState { enabled: false });
    // The reset reply left the VF's queues off.
    assert!(nic.outcomes.iter().rev().any(|o| matches!(
        o.policy_change,
        Some(PolicyChange::ResetIxgbe(r)) if !r.rx_tx_enabled
    )));
    // `state enable` is not supported by ixgbe 6.1: nothing changes, nothing is sent.
    assert!(nic
        .agent
        .admin_link_state(0, LinkState::Enable, &mut nic.mbx[0])
        .is_none());
    assert!(!nic.agent.link_enabled(0));
    // `state auto` follows the PF, which is up.
    nic.agent
        .admin_link_state(0, LinkState::Auto, &mut nic.mbx[0])
        .unwrap();
    assert!(nic.agent.link_enabled(0));

    // API 1.1: GET_LINK_STATE is refused (ixgbevf keeps its previous view).
    d.reset_hw(&mut nic);
    assert!(d.propose(&mut nic, ApiVersion::V1_1));
    assert!(nacked(&d.exchange_typed(
        &mut nic,
        IxgbeMsg::GetLinkState,
        2
    )));
}

#[test]
fn pf_down_and_up_revoke_cts_and_follow_link_state_auto() {
    let mut nic = Nic::with_vfs(2);
    probed(&mut nic, 0);
    probed(&mut nic, 1);
    let pols = nic.policy.clone();
    let outs = nic.agent.set_pf_up(false, &pols, &mut nic.mbx);
    assert_eq!(outs.len(), 2);
    assert!(!nic.agent.is_clear_to_send(0) && !nic.agent.link_enabled(1));
    assert_eq!(nic.mbx[0].words()[0], 0x0000_0100);
    nic.agent.set_pf_up(true, &pols, &mut nic.mbx);
    assert!(nic.agent.link_enabled(0));
    // A plain link change pings with CTS once the VF is back.
    probed(&mut nic, 0);
    nic.agent.ping_all(&mut nic.mbx);
    assert_eq!(nic.mbx[0].words()[0], 0x2000_0100);
    assert_eq!(nic.mbx[1].words()[0], 0x0000_0100);
}

#[test]
fn get_queues_reports_pools_and_port_vlan() {
    let mut nic = Nic::with_vfs(40);
    let mut d = probed(&mut nic, 39);
    // More than 31 VFs: 64 pools of 2 queues.
    assert_eq!(d.get_queues(&mut nic), Some([2, 2, 0, 0]));
    nic.policy[39].port_vlan = Some(PortVlan { vid: 0, qos: 3 });
    assert_eq!(d.get_queues(&mut nic), Some([2, 2, 1, 0]));
    // API 1.0: refused.
    d.reset_hw(&mut nic);
    d.api = ApiVersion::V1_1; // pretend, as a misbehaving VF would
    assert_eq!(d.get_queues(&mut nic), None);
    assert_eq!(nic.last_refusal(), Some(RefusalReason::NotInNegotiatedApi));
}

#[test]
fn vlans_refused_under_a_port_vlan_and_vlan_0_cannot_be_removed() {
    let mut nic = Nic::with_vfs(2);
    let mut d = probed(&mut nic, 0);
    let add = |vid| IxgbeMsg::SetVlan { add: true, vid };
    assert!(acked(&d.exchange_typed(&mut nic, add(0), 2)));
    assert!(acked(&d.exchange_typed(&mut nic, add(100), 2)));
    assert_eq!(nic.policy[0].vlan_filters, vec![0, 100]);
    let r = d.exchange_typed(&mut nic, IxgbeMsg::SetVlan { add: false, vid: 0 }, 2);
    assert!(acked(&r));
    assert_eq!(nic.last().policy_change, None);
    // A priority alone does not lock the VF's VLANs; a port VLAN's VID does.
    nic.policy[0].port_vlan = Some(PortVlan { vid: 0, qos: 5 });
    assert!(acked(&d.exchange_typed(&mut nic, add(200), 2)));
    nic.policy[0].port_vlan = Some(PortVlan { vid: 10, qos: 0 });
    assert!(nacked(&d.exchange_typed(&mut nic, add(300), 2)));
    assert_eq!(nic.last_refusal(), Some(RefusalReason::PortVlanOverride));
}

#[test]
fn the_vlvf_table_is_shared_and_full_means_nack() {
    let mut config = IxgbeConfig::new(2);
    config.vlvf_slots = 3; // VID 0 and two more
    let mut nic = Nic::new(config);
    let mut a = probed(&mut nic, 0);
    let mut b = probed(&mut nic, 1);
    let add = |vid| IxgbeMsg::SetVlan { add: true, vid };
    assert!(acked(&a.exchange_typed(&mut nic, add(10), 2)));
    assert!(acked(&b.exchange_typed(&mut nic, add(20), 2)));
    // A VID another VF holds shares its entry; a new one finds none.
    assert!(acked(&a.exchange_typed(&mut nic, add(20), 2)));
    assert!(nacked(&a.exchange_typed(&mut nic, add(30), 2)));
    assert_eq!(nic.last_refusal(), Some(RefusalReason::VlanNoSpace));
    // ixgbe_find_vlvf_slot: removing a VID nobody holds needs a free entry too.
    let del = IxgbeMsg::SetVlan {
        add: false,
        vid: 40,
    };
    assert!(nacked(&a.exchange_typed(&mut nic, del, 2)));
}

fn rx_on(nic: &Nic) -> bool {
    nic.policy[0].rx_enabled
}

#[test]
fn set_lpe_follows_the_82599_shared_max_frame_rule() {
    // PF at MTU 1500: nothing above 1518.
    let mut nic = Nic::with_vfs(1);
    let mut d = probed(&mut nic, 0);
    let lpe = |max_frame| IxgbeMsg::SetLpe { max_frame };
    assert!(acked(&d.exchange_typed(&mut nic, lpe(1518), 2)));
    assert_eq!(nic.policy[0].max_frame, 1518);
    assert!(rx_on(&nic));
    assert!(nacked(&d.exchange_typed(&mut nic, lpe(9018), 2)));
    assert_eq!(nic.last_refusal(), Some(RefusalReason::InvalidMaxFrame));
    // "disable Rx for VF": the refusal clears the VF's VFRE bit; its max frame stays.
    assert!(!rx_on(&nic));
    assert_eq!(nic.policy[0].max_frame, 1518);
    // A range refusal comes before the 82599 rule and leaves VFRE alone.
    for out_of_range in [0, 67, 9729, u32::MAX] {
        assert!(nacked(&d.exchange_typed(&mut nic, lpe(out_of_range), 2)));
    }
    assert!(!rx_on(&nic));
    // An accepted SET_LPE turns receive on again; so does a VF reset.
    assert!(acked(&d.exchange_typed(&mut nic, lpe(1500), 2)));
    assert!(rx_on(&nic));
    assert!(nacked(&d.exchange_typed(&mut nic, lpe(9018), 2)));
    d.reset_hw(&mut nic);
    assert!(rx_on(&nic));
    // Jumbo PF: jumbo VFs at API 1.1+, but no API 1.0 VF at all.
    let mut config = IxgbeConfig::new(1);
    config.pf_mtu = 9000;
    let mut nic = Nic::new(config);
    let mut d = probed(&mut nic, 0);
    assert!(acked(&d.exchange_typed(&mut nic, lpe(9018), 2)));
    d.reset_hw(&mut nic);
    assert!(nacked(&d.exchange_typed(&mut nic, lpe(1518), 2)));
}

#[test]
fn macvlans_need_trust_under_an_admin_mac_and_share_one_pool() {
    let mut config = IxgbeConfig::new(2);
    config.rar_entries = 16 + 2 + 3; // a pool of 3 VF MACVLAN entries
    let mut nic = Nic::new(config);
    let mut a = probed(&mut nic, 0);
    let mut b = probed(&mut nic, 1);
    let mv = |index, last| IxgbeMsg::SetMacvlan {
        index,
        mac: MacAddr([0x02, 0, 0, 0, 1, last]),
    };
    assert!(acked(&a.exchange_typed(&mut nic, mv(1, 1), 3)));
    assert!(acked(&a.exchange_typed(&mut nic, mv(2, 2), 3)));
    assert_eq!(nic.policy[0].mac_filters.len(), 2);
    assert!(acked(&b.exchange_typed(&mut nic, mv(1, 3), 3)));
    assert!(nacked(&b.exchange_typed(&mut nic, mv(2, 4), 3)));
    assert_eq!(nic.last_refusal(), Some(RefusalReason::MacFilterNoSpace));
    // Index 1 restarts the VF's list; index 0 drops it.
    assert!(acked(&a.exchange_typed(&mut nic, mv(1, 5), 3)));
    assert_eq!(nic.policy[0].mac_filters, vec![MacAddr([2, 0, 0, 0, 1, 5])]);
    assert!(acked(&a.exchange_typed(&mut nic, mv(0, 0), 3)));
    assert!(nic.policy[0].mac_filters.is_empty());
    // Invalid MACs are refused; an untrusted VF under an admin MAC may only clear.
    let bad = IxgbeMsg::SetMacvlan {
        index: 1,
        mac: MacAddr::ZERO,
    };
    assert!(nacked(&a.exchange_typed(&mut nic, bad, 3)));
    nic.policy[0].mac = Some(ADMIN_MAC);
    nic.policy[0].admin_mac = true;
    assert!(nacked(&a.exchange_typed(&mut nic, mv(1, 6), 3)));
    assert_eq!(nic.last_refusal(), Some(RefusalReason::MacFilterDenied));
    assert!(acked(&a.exchange_typed(&mut nic, mv(0, 0), 3)));
    nic.policy[0].trust = true;
    assert!(acked(&a.exchange_typed(&mut nic, mv(1, 6), 3)));
}

#[test]
fn reset_forgets_vf_state_but_keeps_the_xcast_mode() {
    let mut nic = Nic::with_vfs(1);
    nic.policy[0].trust = true;
    let mut d = probed(&mut nic, 0);
    d.exchange_typed(&mut nic, IxgbeMsg::SetVlan { add: true, vid: 7 }, 2);
    d.exchange_typed(
        &mut nic,
        IxgbeMsg::SetMulticast {
            count: 1,
            hashes: vec![0x123],
        },
        MAILBOX_WORDS,
    );
    d.exchange_typed(
        &mut nic,
        IxgbeMsg::SetMacvlan {
            index: 1,
            mac: OTHER_MAC,
        },
        3,
    );
    d.xcast(&mut nic, xcast::ALLMULTI);
    assert!(nic.policy[0].allmulti && !nic.policy[0].mc_hashes.is_empty());
    d.reset_hw(&mut nic);
    let p = &nic.policy[0];
    assert!(p.vlan_filters.is_empty() && p.mc_hashes.is_empty() && p.mac_filters.is_empty());
    // ixgbe_vf_reset_event leaves vfinfo.xcast_mode and VMOLR.MPE alone.
    assert!(p.allmulti);
    assert_eq!(nic.agent.api_version(0), Some(ApiVersion::V1_0));
    // At 1.0 again: GET_QUEUES refused until the VF renegotiates.
    let r = d.exchange(&mut nic, &[u32::from(msg::ID_GET_QUEUES), 0, 0, 0, 0], 5);
    assert_eq!(r[0], 0x6000_0009);
}

#[test]
fn requests_before_the_reset_handshake_get_a_one_word_nack_every_time() {
    let mut nic = Nic::with_vfs(1);
    let mut d = Ixgbevf::new(0);
    for _ in 0..3 {
        let r = d.exchange(
            &mut nic,
            &[u32::from(msg::ID_API_NEGOTIATE), api::V1_4, 0],
            3,
        );
        // Word 0 | NACK, no CTS; the words after it are the request's.
        assert_eq!(r, vec![0x4000_0008, api::V1_4, 0]);
        let request = nic
            .outcomes
            .iter()
            .rev()
            .find(|o| matches!(o.trigger, Trigger::Request(_)))
            .unwrap();
        assert_eq!(
            request.refusal.map(|r| r.reason),
            Some(RefusalReason::NotClearToSend)
        );
        assert_eq!(request.reply.as_ref().unwrap().words().len(), 1);
        // ixgbevf's ACK of that NACK earns a bare NACK (ixgbe_rcv_ack_from_vf).
        assert_eq!(nic.last().trigger, Trigger::Ack);
        assert_eq!(nic.mbx[0].words()[0], 0x4000_0000);
    }
    // The VF's ACK of a PF message while not clear to send: a bare NACK, every time.
    nic.write(0, VfRegister::Vfmailbox, vfmailbox::ACK);
    assert_eq!(nic.last().trigger, Trigger::Ack);
    assert_eq!(nic.mbx[0].words()[0], 0x4000_0000);
    nic.write(0, VfRegister::Vfmailbox, vfmailbox::ACK);
    assert_eq!(nic.last().trigger, Trigger::Ack);
}

#[test]
fn ipsec_requests_and_unknown_ids_are_refused() {
    let mut nic = Nic::with_vfs(1);
    let mut d = probed(&mut nic, 0);
    let mut add = vec![0u32; 12];
    add[0] = u32::from(msg::ID_IPSEC_ADD);
    let r = d.exchange(&mut nic, &add, 2);
    // ixgbe_ipsec_vf_add_sa: NACK with -EACCES in word 1.
    assert_eq!(r, vec![0x6000_000D, (-13i32) as u32]);
    assert_eq!(nic.last_refusal(), Some(RefusalReason::IpsecRefused));
    let del = |d: &mut Ixgbevf, nic: &mut Nic, h| {
        d.exchange_typed(nic, IxgbeMsg::IpsecDel { handle: h }, 2)
    };
    assert!(nacked(&del(&mut d, &mut nic, 0)));
    // Trusted: deleting an unused in-range handle succeeds without action (ixgbe); out of
    // range is refused.
    nic.policy[0].trust = true;
    assert!(acked(&del(&mut d, &mut nic, 5)));
    assert!(acked(&del(&mut d, &mut nic, 1024 + 5)));
    assert!(nacked(&del(&mut d, &mut nic, 2048)));

    for w0 in [
        0x0000_0007,
        0x0000_000F,
        0x0000_0011,
        0x0000_0100,
        0x0001_0001,
    ] {
        let r = d.exchange(&mut nic, &[w0], 1);
        assert_eq!(r[0], w0 | msg::NACK | msg::CTS, "{w0:#x}");
        assert_eq!(nic.last_refusal(), Some(RefusalReason::UnknownMessage));
    }
}

#[test]
fn replies_are_the_whole_buffer_and_stale_replies_are_ignored() {
    let mut nic = Nic::with_vfs(1);
    let mut d = probed(&mut nic, 0);
    d.exchange_typed(&mut nic, IxgbeMsg::SetLpe { max_frame: 1518 }, 2);
    assert_eq!(
        nic.last().reply.as_ref().unwrap().words().len(),
        MAILBOX_WORDS
    );
    // REQ over a buffer that already holds a reply: nothing new, no answer.
    let before = nic.vf_irqs[0];
    d.lock(&mut nic).unwrap();
    nic.write(0, VfRegister::Vfmailbox, vfmailbox::REQ);
    assert_eq!(nic.last_refusal(), Some(RefusalReason::AlreadyAnswered));
    assert!(nic.last().reply.is_none());
    // Only the PF's ACK of the read interrupts the VF.
    assert_eq!(nic.vf_irqs[0], before + 1);
}

#[test]
fn a_vf_holding_its_lock_over_req_loses_the_message_but_keeps_cts() {
    let mut nic = Nic::with_vfs(1);
    let mut d = probed(&mut nic, 0);
    d.lock(&mut nic).unwrap();
    nic.write(0, VfRegister::Vfmbmem(0), u32::from(msg::ID_GET_QUEUES));
    nic.write(0, VfRegister::Vfmailbox, vfmailbox::VFU | vfmailbox::REQ);
    assert_eq!(nic.last_refusal(), Some(RefusalReason::MailboxBusy));
    // ixgbe_rcv_msg_from_vf only logs "Error receiving message from VF" (igb revokes CTS).
    assert!(nic.agent.is_clear_to_send(0));
    nic.write(0, VfRegister::Vfmailbox, 0);
}

#[test]
fn a_macvlan_filter_turns_the_vfs_hardware_anti_spoof_off_behind_spoofchk_on() {
    let mut nic = Nic::with_vfs(2);
    let mut a = probed(&mut nic, 0);
    let mut b = probed(&mut nic, 1);
    let mv = |index, last| IxgbeMsg::SetMacvlan {
        index,
        mac: MacAddr([0x02, 0, 0, 0, 2, last]),
    };
    // Clearing the list (index 0) leaves anti-spoof alone.
    assert!(acked(&a.exchange_typed(&mut nic, mv(0, 0), 3)));
    assert!(!nic.policy[0].spoofchk_suspended);
    // Adding one turns it off "to avoid false positives"; `ip link` still says spoofchk on.
    assert!(acked(&a.exchange_typed(&mut nic, mv(1, 1), 3)));
    assert!(nic.policy[0].spoofchk && nic.policy[0].spoofchk_suspended);
    assert_eq!(nic.policy[0].mac_filters, vec![MacAddr([2, 0, 0, 0, 2, 1])]);
    assert!(
        !nic.policy[1].spoofchk_suspended,
        "VF 1's anti-spoof is its own"
    );
    // A VF reset without a port VLAN does not turn it back on.
    a.reset_hw(&mut nic);
    assert!(nic.policy[0].spoofchk_suspended);
    // With spoofchk off there is nothing to turn off.
    nic.policy[1].spoofchk = false;
    assert!(acked(&b.exchange_typed(&mut nic, mv(1, 2), 3)));
    assert!(!nic.policy[1].spoofchk_suspended);
}
