//! The full-system mode ([`PfDriver::Guest`]): the guest's igb, played by [`SoftIgbPf`] on the
//! PF function's BAR0, manages VFs that unmodified igbvf drivers ([`SoftGuest`]) bring up.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use eswitch::wire::EtherTypes;
use eswitch::{build_frame, DropReason, MacAddr, PortId, PortVlan, VlanTci};
use mailbox::regs::{msg, v2p};
use proptest::prelude::*;
use vm_memory::{GuestAddress, GuestMemoryAtomic};

use super::*;
use crate::function::i82576::pf_regs::{self as r, icr};
use crate::function::i82576::pf_vmm::vmvir;
use crate::function::i82576::regs as vfr;
use crate::function::i82576::Pf;
use crate::seams::{IrqSink, ManualClock};
use crate::testing::{DriverConfig, DrvError, Handled, PfBar0, SoftGuest, SoftIgbPf, XmitOpts};

const PF_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);

fn guest_config(n: u16) -> NicConfig {
    NicConfig {
        num_vfs: n,
        pf_mac: PF_MAC,
        pf_driver: PfDriver::Guest,
        ..NicConfig::default()
    }
}

/// The guest's igb behind the PF's interrupt: `igb_msix_other` reads ICR and, on VMMB, runs
/// `igb_msg_task` at once, on the thread that raised it (no NIC lock is held then), so that
/// an igbvf polling its mailbox finds the answer.
struct GuestIgb {
    pf: PfHandle,
    igb: Mutex<SoftIgbPf>,
    handled: Mutex<Vec<Handled>>,
    vmmb: Mutex<u32>,
}

impl IrqSink for GuestIgb {
    fn fire(&self, _vector: u16) {
        let mut pf = self.pf.clone();
        if pf.rd(r::ICR) & icr::VMMB == 0 {
            return;
        }
        *self.vmmb.lock().unwrap() += 1;
        let Ok(mut igb) = self.igb.try_lock() else {
            return;
        };
        let done = igb.msg_task(&mut pf);
        self.handled.lock().unwrap().extend(done);
    }
}

struct Rig {
    nic: Arc<Nic>,
    clock: Arc<ManualClock>,
    igb: Arc<GuestIgb>,
    vfs: Vec<SoftGuest>,
}

impl Rig {
    /// A guest-mode NIC with `n` VFs, the PF hosted and attached to the guest's igb, which
    /// enabled `n` VFs; no VF driver loaded yet.
    fn new(n: u16) -> Rig {
        let clock = Arc::new(ManualClock::new(1_000_000_000));
        let nic = Nic::new(&guest_config(n), clock.clone()).unwrap();
        let pf = Pf::new(PF_MAC, nic.shared_pf(), clock.clone()).unwrap();
        let handle = nic.host_pf(Box::new(pf)).unwrap();
        let igb = Arc::new(GuestIgb {
            pf: handle.clone(),
            igb: Mutex::new(SoftIgbPf::new(usize::from(n), PF_MAC.0)),
            handled: Mutex::new(Vec::new()),
            vmmb: Mutex::new(0),
        });
        let mem = crate::function::ram::anonymous(&[(GuestAddress(0x10_0000), 0x10_0000)]).unwrap();
        handle.attach(GuestMemoryAtomic::new(mem), igb.clone());
        // PCI: memory decoding and bus mastering.
        handle.config_write(0x04, &0x0006u16.to_le_bytes());
        Rig {
            nic,
            clock,
            igb,
            vfs: Vec::new(),
        }
    }

    fn pf(&self) -> PfHandle {
        self.igb.pf.clone()
    }

    /// `echo N > sriov_numvfs`.
    fn enable_vfs(&mut self) {
        let mut pf = self.pf();
        self.igb.igb.lock().unwrap().enable_vfs(&mut pf);
    }

    /// The guest's igb on its own (an `ip link` command), with the PF's BAR0.
    fn igb<R>(&self, f: impl FnOnce(&mut SoftIgbPf, &mut PfHandle) -> R) -> R {
        let mut pf = self.pf();
        f(&mut self.igb.igb.lock().unwrap(), &mut pf)
    }

    /// igbvf probes and opens VF `vf` in a guest of its own.
    fn load_vf(&mut self, vf: u16) -> [u8; 6] {
        let cfg = DriverConfig {
            random_mac: [2, 0x66, 0, 0, 0, vf as u8],
            ..DriverConfig::default()
        };
        let mut g = SoftGuest::attach(self.nic.vf(vf).unwrap(), cfg).unwrap();
        let mac = g.up().expect("igbvf comes up");
        assert!(g.drv.check_link(&g.vf), "VF {vf} link up");
        self.vfs.push(g);
        mac
    }

    fn policy(&self, vf: u16) -> eswitch::VfPolicy {
        self.nic.with_pf(|p| p.policy(vf).cloned().unwrap())
    }

    fn drops(&self, port: PortId, reason: DropReason) -> u64 {
        self.nic
            .with_pf(|p| p.switch().counters(port).unwrap().drops.get(reason))
    }
}

fn frame(dst: [u8; 6], src: [u8; 6], tag: Option<VlanTci>) -> Vec<u8> {
    build_frame(
        MacAddr(dst),
        MacAddr(src),
        tag,
        EtherTypes::Ipv4,
        &[0x45; 46],
    )
    .to_vec()
}

#[test]
fn guest_mode_is_the_82576s_with_at_most_eight_vfs() {
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(0));
    let x = NicConfig {
        card: Card::X82599,
        ..guest_config(2)
    };
    let err = Nic::new(&x, clock.clone()).unwrap_err().to_string();
    assert!(err.contains("82576 only"), "{err}");
    let err = Nic::new(&guest_config(9), clock.clone()).unwrap_err();
    assert!(err.to_string().contains("at most 8 VFs"), "{err}");
    let nic = Nic::new(&guest_config(2), clock).unwrap();
    assert_eq!(nic.pf_driver(), PfDriver::Guest);
    assert_eq!(nic.with_pf(|p| p.pf_driver()), PfDriver::Guest);
}

#[test]
fn ctl_vf_commands_are_refused_while_the_guests_igb_manages_the_vfs() {
    let rig = Rig::new(2);
    let err = rig
        .nic
        .configure_vf_words(1, &["mac", "02:00:00:00:00:10"])
        .unwrap_err();
    assert!(err.to_string().contains("ip link set <pf> vf 1"), "{err}");
    assert_eq!(rig.policy(1).mac, None);
}

#[test]
fn faults_of_the_embedded_agent_are_refused_while_the_guests_igb_manages_the_vfs() {
    use crate::nic::faults::Fault;
    let rig = Rig::new(2);
    let ports = rig.nic.ports();
    for words in [&["mailbox", "vf0", "drop"][..], &["pf-reset"][..]] {
        let fault = Fault::parse(words, &ports).unwrap();
        let err = rig.nic.inject_fault(fault).unwrap_err();
        assert!(err.contains("full-system mode"), "{words:?}: {err}");
    }
    let wire = Fault::parse(&["link", "vf1", "down"], &ports).unwrap();
    assert!(rig.nic.inject_fault(wire).is_ok());
}

#[test]
fn vfs_wait_for_the_pf_driver_then_see_it_reset_done() {
    let mut rig = Rig::new(1);
    let vf = rig.nic.vf(0).unwrap();
    let rd = |o| {
        let mut b = [0u8; 4];
        vf.region_read(0, o, &mut b).unwrap();
        u32::from_le_bytes(b)
    };
    // No PF driver yet: "PF still in reset state".
    assert_eq!(rd(vfr::V2PMAILBOX) & v2p::RSTI, v2p::RSTI);
    rig.enable_vfs();
    assert_eq!(rd(vfr::V2PMAILBOX), v2p::RSTD);
    assert_eq!(rd(vfr::V2PMAILBOX), 0);
}

#[test]
fn vf_reset_reaches_the_guests_igb_and_the_vf_reads_its_reply() {
    let mut rig = Rig::new(2);
    rig.enable_vfs();
    let admin = [2, 0, 0, 0, 0, 0x10];
    rig.igb(|igb, pf| igb.set_vf_mac(pf, 0, admin));
    let mac = rig.load_vf(0);
    assert_eq!(
        mac, admin,
        "the VF_RESET reply carried the administrator's MAC"
    );
    let handled = rig.igb.handled.lock().unwrap().clone();
    let reset = u32::from(msg::ID_VF_RESET);
    assert!(handled.contains(&Handled::ResetEvent(0)), "{handled:?}");
    assert!(
        handled.contains(&Handled::Message {
            vf: 0,
            request: reset,
            reply: Some(reset | msg::ACK),
        }),
        "{handled:?}"
    );
    assert!(handled.contains(&Handled::Ack(0)), "{handled:?}");
    assert!(
        *rig.igb.vmmb.lock().unwrap() >= 3,
        "VMMB per reset, request and ack"
    );
    // igbvf's init_hw SET_MAC_ADDR is answered clear to send: NACKed, as igb refuses an
    // untrusted VF's change of an administrative MAC (igbvf keeps the MAC it was given).
    let set_mac = |vf: usize, handled: &[Handled]| {
        handled.iter().find_map(|h| match h {
            Handled::Message {
                vf: v,
                request,
                reply,
            } if *v == vf && request & msg::ID_MASK == u32::from(msg::ID_SET_MAC_ADDR) => *reply,
            _ => None,
        })
    };
    let flags = msg::ACK | msg::NACK | msg::CTS;
    assert_eq!(
        set_mac(0, &handled).map(|w| w & flags),
        Some(msg::NACK | msg::CTS)
    );
    // The switch has the MAC from RAR[23] pool 0; VFRE/VFTE are set again.
    assert_eq!(rig.policy(0).mac, Some(MacAddr(admin)));
    let regs = rig.nic.with_pf(|p| p.guest_regs().cloned().unwrap());
    assert!(regs.rx_enabled(0) && regs.tx_enabled(0));
    // A VF without an administrative MAC gets a NACK and its own random MAC is accepted.
    let mac1 = rig.load_vf(1);
    assert_eq!(mac1, [2, 0x66, 0, 0, 0, 1]);
    let handled = rig.igb.handled.lock().unwrap().clone();
    assert_eq!(
        set_mac(1, &handled).map(|w| w & flags),
        Some(msg::ACK | msg::CTS)
    );
    assert_eq!(rig.policy(1).mac, Some(MacAddr(mac1)));
}

#[test]
fn a_vf_reset_sets_vflre_and_stops_its_pool_until_the_pf_clears_it() {
    let mut rig = Rig::new(2);
    rig.enable_vfs();
    // A PF driver that is not listening: mask the VF mailbox interrupts.
    let mut pf = rig.pf();
    pf.wr(r::MBVFIMR, 0);
    let vf = rig.nic.vf(1).unwrap();
    vf.region_write(0, vfr::VTCTRL, &vfr::ctrl::RST.to_le_bytes())
        .unwrap();
    assert_eq!(pf.rd(r::VFLRE), 1 << 1);
    assert_eq!(pf.rd(r::VFRE) & 0b11, 0b01);
    assert_eq!(pf.rd(r::VFTE) & 0b11, 0b01);
    assert_eq!(*rig.igb.vmmb.lock().unwrap(), 0, "masked by MBVFIMR");
    pf.wr(r::VFLRE, 1 << 1);
    assert_eq!(pf.rd(r::VFLRE), 0);
    // A function reset of VF 0 (DEVICE_RESET) does the same.
    let vf0 = rig.nic.vf(0).unwrap();
    vf0.reset();
    assert_eq!(pf.rd(r::VFLRE), 1 << 0);
    // Unmasking with the reset pending interrupts the PF, whose igb takes it.
    pf.wr(r::MBVFIMR, 0xFF);
    assert_eq!(*rig.igb.vmmb.lock().unwrap(), 1);
    assert_eq!(pf.rd(r::VFLRE), 0);
}

#[test]
fn the_pf_mailbox_registers_are_the_vfs_mailbox_seen_from_the_pf() {
    let mut rig = Rig::new(1);
    rig.enable_vfs();
    let mut pf = rig.pf();
    pf.wr(r::MBVFIMR, 0);
    let vf = rig.nic.vf(0).unwrap();
    let wr = |o, v: u32| vf.region_write(0, o, &v.to_le_bytes()).unwrap();
    let rd = |o| {
        let mut b = [0u8; 4];
        vf.region_read(0, o, &mut b).unwrap();
        u32::from_le_bytes(b)
    };
    // The VF locks the buffer: the PF cannot, and its buffer writes are dropped.
    wr(vfr::V2PMAILBOX, v2p::VFU);
    pf.wr(r::P2VMAILBOX0, mailbox::regs::p2v::PFU);
    assert_eq!(pf.rd(r::P2VMAILBOX0), mailbox::regs::p2v::VFU);
    wr(vfr::VMBMEM, 0x1234_0003);
    wr(vfr::V2PMAILBOX, v2p::REQ);
    assert_eq!(pf.rd(r::MBVFICR), 1);
    assert_eq!(pf.rd(r::VMBMEM0), 0x1234_0003);
    pf.wr(r::MBVFICR, 1);
    assert_eq!(pf.rd(r::MBVFICR), 0);
    wr(vfr::V2PMAILBOX, v2p::ACK);
    assert_eq!(pf.rd(r::MBVFICR), 1 << 16);
    // The PF answers: STS reaches the VF as PFSTS (read to clear) and its mailbox vector.
    assert!(SoftIgbPf::write_mbx(&mut pf, 0, &[0x8000_0003]));
    assert_eq!(pf.rd(r::MBVFICR), 0, "igb_write_mbx_pf flushed REQ and ACK");
    assert_eq!(rd(vfr::V2PMAILBOX) & v2p::PFSTS, v2p::PFSTS);
    assert_eq!(rd(vfr::VMBMEM), 0x8000_0003);
    // A VF this port does not have: reads 0, writes dropped and counted.
    pf.wr(r::P2VMAILBOX0 + 4 * 5, mailbox::regs::p2v::STS);
    assert_eq!(pf.rd(r::VMBMEM0 + 0x40 * 7), 0);
    let counters = rig.nic.with_pf(|p| p.guest_counters().unwrap());
    assert_eq!(counters.absent_vf, 2);
    // A two-byte access to a mailbox register is refused.
    let mut two = [0u8; 2];
    assert!(pf.region_read(0, r::MBVFICR, &mut two).is_err());
}

/// Two VFs up under the guest's igb, VF 0 with an administrative MAC.
fn two_vfs() -> (Rig, [u8; 6], [u8; 6]) {
    let mut rig = Rig::new(2);
    rig.enable_vfs();
    let m0 = [2, 0, 0, 0, 0, 0x10];
    rig.igb(|igb, pf| igb.set_vf_mac(pf, 0, m0));
    let m0 = rig.load_vf(0);
    let m1 = rig.load_vf(1);
    (rig, m0, m1)
}

#[test]
fn vf_to_vf_traffic_flows_with_the_guests_policies() {
    let (mut rig, m0, m1) = two_vfs();
    rig.vfs[0].send(&frame(m1, m0, None)).unwrap();
    rig.vfs[1].poll();
    let got = rig.vfs[1].take_received();
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].data[6..12], &m0);
    // A VF's MAC does not reach the PF's port.
    let pf_policy = rig.nic.with_pf(|p| p.switch().pf_policy().clone());
    assert_eq!(pf_policy.macs, vec![PF_MAC]);
}

#[test]
fn a_pool_with_vfte_off_leaves_its_frames_in_the_ring_until_the_pf_sets_it() {
    let (mut rig, m0, m1) = two_vfs();
    let mut pf = rig.pf();
    let vfte = pf.rd(r::VFTE);
    pf.wr(r::VFTE, vfte & !1);
    assert!(!rig.policy(0).tx_enabled);
    rig.vfs[0].send(&frame(m1, m0, None)).unwrap();
    // Not fetched: no frame, no drop, the descriptor still the device's.
    let tx = rig.vfs[0].vf.state().tx;
    assert_ne!(tx.head, tx.tail, "the descriptor stays in the ring");
    assert!(!rig.vfs[0].drv.tx_dd(tx.head));
    rig.vfs[1].poll();
    assert!(rig.vfs[1].take_received().is_empty());
    assert_eq!(rig.drops(PortId::Vf(0), DropReason::TxDisabled), 0);
    // The queue asks again at its deadline: still off, still held.
    let due = rig.nic.next_wakeup().expect("the held queue asks again");
    rig.clock.advance_to(due);
    rig.nic.poll(due);
    assert_eq!(rig.vfs[0].vf.state().tx.head, tx.head);
    // Another tail write while it is off changes nothing either.
    rig.vfs[0].send(&frame(m1, m0, None)).unwrap();
    assert_eq!(rig.vfs[0].vf.state().tx.head, tx.head);
    // The PF sets VFTE: both frames go at once, in order, with DD written back.
    pf.wr(r::VFTE, vfte);
    let tx = rig.vfs[0].vf.state().tx;
    assert_eq!(tx.head, tx.tail);
    assert!(rig.vfs[0].vf.tx_paused_until().is_none());
    rig.vfs[1].poll();
    assert_eq!(rig.vfs[1].take_received().len(), 2);
    rig.vfs[0].poll();
    assert_eq!(rig.vfs[0].drv.tx_pending(), 0, "igbvf cleaned both");
    assert_eq!(rig.drops(PortId::Vf(0), DropReason::TxDisabled), 0);
    // The look the held queue had asked for finds nothing left to do.
    if let Some(due) = rig.nic.next_wakeup() {
        rig.clock.advance_to(due);
        rig.nic.poll(due);
    }
    assert_eq!(rig.nic.next_wakeup(), None);
    assert_eq!(rig.vfs[0].vf.state().tx.head, tx.tail);
}

#[test]
fn spoofchk_from_dtxswc_drops_a_forged_source_until_turned_off() {
    let (mut rig, _, m1) = two_vfs();
    let forged = [2, 0xde, 0xad, 0, 0, 1];
    rig.vfs[0].send(&frame(m1, forged, None)).unwrap();
    assert_eq!(rig.drops(PortId::Vf(0), DropReason::SpoofMac), 1);
    rig.igb(|_, pf| SoftIgbPf::set_vf_spoofchk(pf, 0, false));
    assert!(!rig.policy(0).spoofchk);
    rig.vfs[0].send(&frame(m1, forged, None)).unwrap();
    assert_eq!(rig.drops(PortId::Vf(0), DropReason::SpoofMac), 1);
    rig.vfs[1].poll();
    assert_eq!(rig.vfs[1].take_received().len(), 1);
}

#[test]
fn a_dtxswc_vlan_anti_spoof_bit_cleared_alone_frees_tags_but_not_sources() {
    let (mut rig, m0, m1) = two_vfs();
    let foreign = || frame(m1, m0, Some(VlanTci::new(20, 0)));
    let forged = frame(m1, [2, 0xde, 0xad, 0, 0, 1], None);
    rig.vfs[0].send(&foreign()).unwrap();
    assert_eq!(rig.drops(PortId::Vf(0), DropReason::SpoofVlan), 1);
    // Pool 0's VLAN bit (8) off, its MAC bit kept: what igb never does, another driver may.
    rig.igb(|_, pf| {
        let v = pf.rd(r::DTXSWC);
        pf.wr(r::DTXSWC, v & !(1 << 8));
    });
    let p = rig.policy(0);
    assert_eq!((p.spoofchk, p.vlan_spoofchk), (true, false));
    rig.vfs[0].send(&foreign()).unwrap();
    rig.vfs[0].send(&forged).unwrap();
    assert_eq!(rig.drops(PortId::Vf(0), DropReason::SpoofVlan), 1);
    assert_eq!(rig.drops(PortId::Vf(0), DropReason::SpoofMac), 1);
}

/// igbvf hands VF `vf` a frame whose tag the device is to insert (VLE, as for an skb with a
/// hardware-accelerated tag: a VLAN device on top of igbvf).
fn send_vle(rig: &mut Rig, vf: usize, f: &[u8], vid: u16) {
    try_send_vle(rig, vf, f, vid).unwrap();
}

fn try_send_vle(rig: &mut Rig, vf: usize, f: &[u8], vid: u16) -> Result<(), DrvError> {
    let g = &mut rig.vfs[vf];
    let opts = XmitOpts {
        vlan: Some(vid),
        ..XmitOpts::default()
    };
    g.drv.xmit(&g.vf, f, &opts)
}

#[test]
fn vmvir_never_insert_has_the_descriptors_vlan_ignored() {
    let (mut rig, m0, m1) = two_vfs();
    // VLANA 00: the descriptor's tag goes in, and VLAN anti-spoof drops a VLAN VF 0 is not in.
    send_vle(&mut rig, 0, &frame(m1, m0, None), 20);
    assert_eq!(rig.drops(PortId::Vf(0), DropReason::SpoofVlan), 1);
    rig.vfs[1].poll();
    assert!(rig.vfs[1].take_received().is_empty());
    // VLANA 10, "never insert" (igb never writes it; another PF driver may).
    rig.igb(|_, pf| pf.wr(r::VMVIR0, vmvir::VLANA_NEVER | 20));
    let p = rig.policy(0);
    assert!(p.tx_vlan_never && p.port_vlan.is_none());
    send_vle(&mut rig, 0, &frame(m1, m0, None), 20);
    assert_eq!(rig.drops(PortId::Vf(0), DropReason::SpoofVlan), 1);
    rig.vfs[1].poll();
    let got = rig.vfs[1].take_received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].vlan, None);
    assert_eq!(
        got[0].data,
        frame(m1, m0, None),
        "untagged, as the driver wrote it"
    );
    // Back to 00: the tag goes in again.
    rig.igb(|_, pf| pf.wr(r::VMVIR0, 0));
    send_vle(&mut rig, 0, &frame(m1, m0, None), 20);
    assert_eq!(rig.drops(PortId::Vf(0), DropReason::SpoofVlan), 2);
}

#[test]
fn a_port_vlan_replaces_the_descriptors_tag() {
    let (mut rig, m0, m1) = two_vfs();
    rig.igb(|igb, pf| {
        igb.set_vf_vlan(pf, 0, 10, 0);
        igb.set_vf_vlan(pf, 1, 10, 0);
    });
    // VLANA "always insert the default tag": the VLE tag 20 is not inserted, the port's is,
    // so the frame is in VLAN 10 only (no inner tag, no anti-spoof drop).
    send_vle(&mut rig, 0, &frame(m1, m0, None), 20);
    assert_eq!(rig.drops(PortId::Vf(0), DropReason::SpoofVlan), 0);
    rig.vfs[1].poll();
    let got = rig.vfs[1].take_received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].vlan, Some(10), "VF 1's port tag, stripped");
    assert_eq!(got[0].data, frame(m1, m0, None));
    // A tag written into the frame by the driver (no VLE) is still the VF's own: dropped.
    rig.vfs[0]
        .send(&frame(m1, m0, Some(VlanTci::new(20, 0))))
        .unwrap();
    assert_eq!(rig.drops(PortId::Vf(0), DropReason::SpoofVlan), 1);
}

#[test]
fn vf_mac_set_by_the_guests_igb_moves_the_vfs_address() {
    let (mut rig, m0, m1) = two_vfs();
    let new = [2, 0, 0, 0, 0, 0x42];
    rig.igb(|igb, pf| igb.set_vf_mac(pf, 1, new));
    assert_eq!(rig.policy(1).mac, Some(MacAddr(new)));
    rig.vfs[0].send(&frame(new, m0, None)).unwrap();
    rig.vfs[0].send(&frame(m1, m0, None)).unwrap();
    rig.vfs[1].poll();
    let got = rig.vfs[1].take_received();
    assert_eq!(got.len(), 1, "only the frame for the new MAC");
    assert_eq!(&got[0].data[0..6], &new);
}

#[test]
fn port_vlan_from_vmvir_tags_and_separates_the_vf() {
    let (mut rig, m0, m1) = two_vfs();
    rig.igb(|igb, pf| igb.set_vf_vlan(pf, 1, 10, 0));
    assert_eq!(rig.policy(1).port_vlan, Some(PortVlan { vid: 10, qos: 0 }));
    assert_eq!(rig.policy(0).port_vlan, None, "VF 0 never gets VF 1's VLAN");
    // VF 0 (untagged) cannot reach VF 1 in VLAN 10; the uplink sees VF 1's frames tagged.
    rig.vfs[0].send(&frame(m1, m0, None)).unwrap();
    rig.vfs[1].poll();
    assert!(rig.vfs[1].take_received().is_empty());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    rig.nic.set_port_sink(
        PortId::Uplink(0),
        Some(Arc::new(move |d: &eswitch::Delivery| {
            log.lock().unwrap().push(d.frame.clone())
        })),
    );
    rig.vfs[1]
        .send(&frame([2, 0, 0, 0, 0, 0x99], m1, None))
        .unwrap();
    let out: Vec<Bytes> = seen.lock().unwrap().clone();
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0][12..16], &[0x81, 0x00, 0x00, 10]);
}

#[test]
fn max_tx_rate_from_rttbcnrc_limits_the_vfs_queue() {
    let (mut rig, m0, m1) = two_vfs();
    rig.igb(|igb, pf| igb.set_vf_rate(pf, 0, 10));
    assert_eq!(rig.policy(0).max_tx_rate, 10);
    assert_eq!(rig.policy(1).max_tx_rate, 0);
    // 10 Mbit/s: a burst of 64 full frames cannot all leave at once.
    let big = build_frame(MacAddr(m1), MacAddr(m0), None, EtherTypes::Ipv4, &[0; 1400]);
    for _ in 0..64 {
        let _ = rig.vfs[0].send(&big);
    }
    let deferred = rig
        .nic
        .with_pf(|p| p.switch().counters(PortId::Vf(0)).unwrap().tx_deferred);
    assert!(deferred > 0, "the shaper held VF 0's queue");
    assert!(rig.vfs[0].vf.tx_paused_until().is_some());
    let _ = rig.clock.now_ns();
}

#[test]
fn a_shaped_queue_held_by_vfte_off_resumes_where_it_stopped() {
    let (mut rig, m0, m1) = two_vfs();
    rig.igb(|igb, pf| igb.set_vf_rate(pf, 0, 10));
    let frames: Vec<Bytes> = (0..48u8)
        .map(|i| build_frame(MacAddr(m1), MacAddr(m0), None, EtherTypes::Ipv4, &[i; 1400]))
        .collect();
    for f in &frames {
        rig.vfs[0].send(f).unwrap();
    }
    rig.vfs[1].poll();
    let mut got = rig.vfs[1].take_received();
    assert!(got.len() < frames.len(), "the shaper held VF 0's queue");
    let deferred = || {
        rig.nic
            .with_pf(|p| p.switch().counters(PortId::Vf(0)).unwrap().tx_deferred)
    };
    let (held, until) = (deferred(), rig.vfs[0].vf.tx_paused_until());
    // VFTE off and on again before the shaper's time: the shaper's pause keeps its time.
    let mut pf = rig.pf();
    let vfte = pf.rd(r::VFTE);
    pf.wr(r::VFTE, vfte & !1);
    pf.wr(r::VFTE, vfte);
    assert_eq!(deferred(), held, "not run before the shaper's time");
    assert_eq!(rig.vfs[0].vf.tx_paused_until(), until);
    // VFTE off while the shaper holds the queue: its deadline passes, nothing is fetched.
    pf.wr(r::VFTE, vfte & !1);
    for _ in 0..3 {
        let due = rig.nic.next_wakeup().expect("the held queue asks again");
        rig.clock.advance_to(due);
        rig.nic.poll(due);
    }
    rig.vfs[1].poll();
    assert!(rig.vfs[1].take_received().is_empty());
    // VFTE on: the shaper paces the rest out, none lost, none twice, in order.
    pf.wr(r::VFTE, vfte);
    while let Some(due) = rig.nic.next_wakeup() {
        rig.clock.advance_to(due);
        rig.nic.poll(due);
        rig.vfs[1].poll();
        got.extend(rig.vfs[1].take_received());
    }
    let seq: Vec<u8> = got.iter().map(|f| f.data[20]).collect();
    assert_eq!(seq, (0..48u8).collect::<Vec<_>>());
    assert_eq!(rig.drops(PortId::Vf(0), DropReason::TxDisabled), 0);
}

#[test]
fn a_pf_reset_shows_the_vfs_rsti_until_pfrstd() {
    let (rig, _, _) = two_vfs();
    let mut pf = rig.pf();
    let c = pf.rd(r::CTRL);
    pf.wr(r::CTRL, c | r::ctrl::RST);
    let vf = rig.nic.vf(0).unwrap();
    let mut b = [0u8; 4];
    vf.region_read(0, vfr::V2PMAILBOX, &mut b).unwrap();
    assert_ne!(u32::from_le_bytes(b) & v2p::RSTI, 0);
    // The VF-management registers are back to reset: no VF has a MAC or anti-spoof.
    assert_eq!(rig.policy(0).mac, None);
    assert!(!rig.policy(0).spoofchk);
    let e = pf.rd(r::CTRL_EXT);
    pf.wr(r::CTRL_EXT, e | r::ctrl_ext::PFRSTD);
    vf.region_read(0, vfr::V2PMAILBOX, &mut b).unwrap();
    assert_eq!(u32::from_le_bytes(b) & (v2p::RSTI | v2p::RSTD), v2p::RSTD);
}

#[test]
fn a_pf_flr_resets_the_vfs_view_of_the_pf_as_a_device_reset_does() {
    let (rig, _, _) = two_vfs();
    assert!(rig.policy(0).mac.is_some());
    // PCIe Device Control (capability at 0xA0, + 8): Initiate Function Level Reset (b15).
    let pf = rig.pf();
    let mut dc = [0u8; 2];
    pf.config_read(0xA8, &mut dc);
    let dc = u16::from_le_bytes(dc) | 0x8000;
    pf.config_write(0xA8, &dc.to_le_bytes());
    let vf = rig.nic.vf(0).unwrap();
    let mut b = [0u8; 4];
    vf.region_read(0, vfr::V2PMAILBOX, &mut b).unwrap();
    assert_ne!(
        u32::from_le_bytes(b) & v2p::RSTI,
        0,
        "the VFs see the PF in reset"
    );
    assert_eq!(
        rig.policy(0).mac,
        None,
        "the VF-management registers are reset"
    );
}

fn pf_offset() -> impl Strategy<Value = u64> {
    prop_oneof![
        (0u64..0x100).prop_map(|i| r::VMBMEM0 + 4 * i),
        (0u64..8).prop_map(|i| r::P2VMAILBOX0 + 4 * i),
        prop::sample::select(vec![
            r::MBVFICR,
            r::MBVFIMR,
            r::VFLRE,
            r::VFRE,
            r::VFTE,
            r::DTXSWC,
            r::RTTDQSEL,
            r::RTTBCNRC,
            r::WVBR,
            r::VT_CTL,
            r::CTRL_EXT,
            r::IMS,
        ]),
        (0u64..48).prop_map(|i| r::RA + 4 * i),
        (0u64..16).prop_map(|i| r::RA2 + 4 * i),
        (0u64..32).prop_map(|i| r::VLVF0 + 4 * i),
        (0u64..8).prop_map(|i| r::VMOLR0 + 4 * i),
        (0u64..8).prop_map(|i| r::VMVIR0 + 4 * i),
        (0u64..128).prop_map(|i| r::VFTA + 4 * i),
        (0u64..0x2_0000),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random PF writes in guest mode never panic, leave every VF's policy valid, and touch
    /// nothing on another port.
    #[test]
    fn random_pf_writes_in_guest_mode_are_contained(
        writes in proptest::collection::vec(
            (pf_offset(), any::<u32>(), prop::sample::select(vec![1usize, 2, 4, 8])),
            1..48,
        ),
    ) {
        let mut rig = Rig::new(2);
        rig.enable_vfs();
        let other = Rig::new(2);
        let before: Vec<_> = (0..2).map(|v| other.policy(v)).collect();
        let other_mbx: Vec<_> = (0..2)
            .map(|v| other.nic.with_pf(|p| p.mailbox(v).cloned().unwrap()))
            .collect();
        let pf = rig.pf();
        for (o, v, len) in writes {
            let bytes = v.to_le_bytes();
            let data: Vec<u8> = bytes.iter().copied().cycle().take(len).collect();
            let _ = pf.region_write(0, o, &data);
            let mut back = vec![0u8; len];
            let _ = pf.region_read(0, o, &mut back);
        }
        for v in 0..2 {
            let p = rig.policy(v);
            prop_assert_eq!(p.validate(1000), Ok(()));
            prop_assert_eq!(other.policy(v), before[usize::from(v)].clone());
            let m = other.nic.with_pf(|p| p.mailbox(v).cloned().unwrap());
            prop_assert_eq!(&m, &other_mbx[usize::from(v)]);
        }
        // A VF still probes under the guest's igb after the noise, once it re-enables the VFs.
        rig.enable_vfs();
        let mut g = SoftGuest::attach(rig.nic.vf(0).unwrap(), DriverConfig::default()).unwrap();
        prop_assert!(g.drv.probe(&g.vf).is_ok());
    }

    /// VFTE and VMVIR written at random between a VF's sends (with and without the
    /// descriptor's tag), with time moving or not: nothing panics, the device sends no frame
    /// twice and loses none, and once the PF sets VFTE every frame has left the ring.
    #[test]
    fn vfte_and_vmvir_at_random_between_sends_repeat_and_lose_nothing(
        ops in proptest::collection::vec(
            (any::<u8>(), any::<u32>(), any::<bool>(), any::<bool>()),
            1..24,
        ),
    ) {
        let (mut rig, m0, m1) = two_vfs();
        let mut pf = rig.pf();
        let mut sent = 0u8;
        for (vfte, vmvir, vle, wait) in ops {
            pf.wr(r::VFTE, u32::from(vfte));
            pf.wr(r::VMVIR0, vmvir);
            let mut f = frame(m1, m0, None);
            f[14] = sent;
            let queued = if vle {
                try_send_vle(&mut rig, 0, &f, 20)
            } else {
                rig.vfs[0].send(&f)
            };
            if queued.is_ok() {
                sent += 1;
            }
            if let (true, Some(due)) = (wait, rig.nic.next_wakeup()) {
                rig.clock.advance_to(due);
                rig.nic.poll(due);
            }
        }
        pf.wr(r::VFTE, 0xFF);
        pf.wr(r::VMVIR0, 0);
        while let Some(due) = rig.nic.next_wakeup() {
            rig.clock.advance_to(due);
            rig.nic.poll(due);
        }
        let tx = rig.vfs[0].vf.state().tx;
        prop_assert_eq!(tx.head, tx.tail, "every descriptor consumed");
        prop_assert_eq!(rig.vfs[0].vf.stats().tx_packets, u64::from(sent));
        rig.vfs[0].poll();
        prop_assert_eq!(rig.vfs[0].drv.tx_pending(), 0);
        rig.vfs[1].poll();
        let mut seen: Vec<u8> = rig.vfs[1].take_received().iter().map(|g| g.data[14]).collect();
        let n = seen.len();
        seen.sort_unstable();
        seen.dedup();
        prop_assert_eq!(seen.len(), n, "no frame delivered twice");
        prop_assert!(seen.iter().all(|&s| s < sent));
    }
}
