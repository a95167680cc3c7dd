//! An 82599 NIC in the one runtime: its VFs (8086:10ed) hosted by `model::Nic` beside nothing
//! card-specific — the same switch, PF side and datapath as the 82576's — driven through their
//! `VfHandle`s the way ixgbevf 6.1 drives them: the reset handshake answered with ixgbe's
//! decisions, a frame from VF 0's TX ring switched into VF 1's RX ring, anti-spoof dropping a
//! forged source, VFLINKS reporting the 10 Gb/s link.

use std::sync::{Arc, Mutex};

use eswitch::{DropReason, PortId};
use model::function::desc::{rx_status, RxWriteBack, TxContext, TxDesc, TxOffloads};
use model::function::x82599::regs::{self, rxq, txq};
use model::nic::Card;
use model::GuestRam;
use model::{IrqSink, ManualClock, Nic, NicConfig, VfHandle};
use pcie::regs::header;
use vm_memory::{Bytes as _, GuestAddress, GuestMemoryAtomic};

mod ixgbevf_support;
use ixgbevf_support::{one_buffer_frame, VfBar0, ACK, BASE, RING, RX_RING, SIZE, TX_BUF, TX_RING};

#[derive(Default)]
struct Vectors(Mutex<Vec<u16>>);

impl IrqSink for Vectors {
    fn fire(&self, vector: u16) {
        self.0.lock().unwrap().push(vector);
    }
}

/// ixgbevf's view of one VF of the NIC, through its handle.
struct Driver {
    vf: VfHandle,
    mem: GuestRam,
    /// Vectors signalled, in order.
    irqs: Arc<Vectors>,
    r2c: u32,
    tx_tail: u32,
}

impl Driver {
    fn attach(nic: &Arc<Nic>, vf: u16) -> Driver {
        let handle = nic.vf(vf).expect("VF");
        let mem = model::function::ram::anonymous(&[(GuestAddress(BASE), SIZE)]).unwrap();
        let irqs = Arc::new(Vectors::default());
        handle.attach(GuestMemoryAtomic::new(mem.clone()), irqs.clone());
        handle.config_write(header::COMMAND as u64, &0x6u16.to_le_bytes());
        Driver {
            vf: handle,
            mem,
            irqs,
            r2c: 0,
            tx_tail: 0,
        }
    }

    fn read(&self, off: u64) -> u32 {
        let mut b = [0u8; 4];
        self.vf.region_read(0, off, &mut b).unwrap();
        u32::from_le_bytes(b)
    }

    fn write(&self, off: u64, v: u32) {
        self.vf.region_write(0, off, &v.to_le_bytes()).unwrap();
    }

    fn cfg16(&self, off: usize) -> u16 {
        let mut b = [0u8; 2];
        self.vf.config_read(off as u64, &mut b);
        u16::from_le_bytes(b)
    }

    /// Queue 0's RX ring with every buffer posted.
    fn configure_rx(&mut self) {
        VfBar0::configure_rx(self, RX_RING, RING, false);
        for i in 0..RING {
            ixgbevf_support::post_rx(&self.mem, i);
        }
        self.wr(regs::RX_BASE + rxq::RDT, RING - 1);
    }

    fn xmit(&mut self, frame: &[u8]) {
        let buf = TX_BUF + u64::from(self.tx_tail) * 0x1000;
        self.mem.write_slice(frame, GuestAddress(buf)).unwrap();
        for d in [
            TxDesc::Context(TxContext::default()),
            one_buffer_frame(buf, frame.len(), 0, TxOffloads::default()),
        ] {
            let mut b = [0u8; 16];
            d.emit(&mut b);
            let at = TX_RING + 16 * u64::from(self.tx_tail);
            self.mem.write_slice(&b, GuestAddress(at)).unwrap();
            self.tx_tail = (self.tx_tail + 1) % RING;
        }
        self.write(regs::TX_BASE + txq::TDT, self.tx_tail);
    }

    fn rx_wb(&self, i: u32) -> RxWriteBack {
        ixgbevf_support::rx_wb(&self.mem, i)
    }

    fn rx_buf(&self, i: u32, len: usize) -> Vec<u8> {
        ixgbevf_support::rx_buf(&self.mem, i, len)
    }
}

impl VfBar0 for Driver {
    fn rd(&mut self, off: u64) -> u32 {
        self.read(off)
    }
    fn wr(&mut self, off: u64, v: u32) {
        self.write(off, v)
    }
    fn r2c(&mut self) -> &mut u32 {
        &mut self.r2c
    }
}

fn frame(dst: [u8; 6], src: [u8; 6], fill: u8) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.resize(64, fill);
    f
}

#[test]
fn an_82599_nic_switches_between_its_vfs_with_ixgbes_decisions_and_the_shared_switch() {
    let config = NicConfig {
        num_vfs: 2,
        card: Card::X82599,
        link_speed_mbps: 10_000,
        ..NicConfig::default()
    };
    let nic = Nic::new(&config, Arc::new(ManualClock::new(1_000_000_000))).unwrap();
    let macs = [[2, 0, 0, 0, 0, 0x10], [2, 0, 0, 0, 0, 0x11]];
    for (vf, mac) in macs.iter().enumerate() {
        let words = format!("mac {}", eswitch::MacAddr(*mac));
        let words: Vec<&str> = words.split_whitespace().collect();
        nic.configure_vf_words(vf as u16, &words).unwrap();
    }
    let mut a = Driver::attach(&nic, 0);
    let mut b = Driver::attach(&nic, 1);
    // The 82599's VF, with the 82599's config space.
    assert_eq!(a.cfg16(header::VENDOR_ID), 0x8086);
    assert_eq!(a.cfg16(header::DEVICE_ID), 0x10ed);
    assert_eq!(a.vf.card(), Card::X82599);
    // ixgbe's VF_RESET reply: ACK (no CTS in it: `ixgbe_vf_reset_msg`), the admin MAC in
    // words 1–2; the VF is clear to send from then on.
    for (d, mac) in [(&mut a, macs[0]), (&mut b, macs[1])] {
        let reset = d.probe();
        assert_eq!(reset[0], 0x01 | ACK, "{reset:x?}");
        assert_eq!(reset[1].to_le_bytes(), mac[..4]);
        assert_eq!(
            reset[2] & 0xffff,
            u32::from(u16::from_le_bytes([mac[4], mac[5]]))
        );
    }
    // VFLINKS: up at 10 Gb/s (bit 30, speed 29:28 = 11).
    assert!(a.vf.link_up());
    assert_eq!(a.vf.link_status() & 0x7000_0000, 0x7000_0000);

    a.configure_tx(TX_RING, RING);
    b.configure_msix(0);
    b.configure_rx();
    let sent = frame(macs[1], macs[0], 0xab);
    a.xmit(&sent);
    let wb = b.rx_wb(0);
    let done = rx_status::DD | rx_status::EOP;
    assert_eq!(wb.status_error & done, done, "{wb:?}");
    assert_eq!(usize::from(wb.length), sent.len());
    assert_eq!(b.rx_buf(0, sent.len()), sent);
    assert!(b.vf.state().rx.enabled);
    assert!(
        b.irqs.0.lock().unwrap().contains(&0),
        "VF 1's RX queue vector"
    );

    // A forged source: the shared switch's anti-spoof drops it at VF 0's port.
    a.xmit(&frame(macs[1], [2, 0, 0, 0, 0, 0x99], 0xcd));
    let spoofed = nic.with_pf(|pf| {
        pf.switch()
            .counters(PortId::Vf(0))
            .map(|c| c.drops.get(DropReason::SpoofMac))
    });
    assert_eq!(spoofed, Some(1));
    assert_eq!(
        b.rx_wb(1).status_error & rx_status::DD,
        0,
        "nothing more reached VF 1"
    );
    // ixgbe's decisions: the agent of this NIC is ixgbe's and has VF 0 at API 1.4.
    let api = nic.with_pf(|pf| pf.agent().ixgbe().and_then(|x| x.api_version(0)));
    assert_eq!(api, Some(mailbox::ixgbe::ApiVersion::V1_4));
}

/// Two software ixgbevf guests (`model::testing`, the driver the scenario runner uses in
/// process) on an 82599 NIC: probe and open as ixgbevf 6.1 does them, a frame each way and a
/// broadcast, the link from VFLINKS and the PF's CTS, ixgbe's SET_LPE refusing a jumbo MTU
/// while the PF's MTU is standard (ixgbevf's `ixgbevf_change_mtu` returns -EINVAL and keeps
/// running), a TSO send segmented through context slot 1, and the reset task after a PF
/// control message revoked CTS.
#[test]
fn software_ixgbevf_guests_come_up_and_exchange_frames_on_an_82599() {
    use model::testing::{DriverConfig, DrvError, SoftGuest, XmitOpts};
    let config = NicConfig {
        num_vfs: 3,
        card: Card::X82599,
        link_speed_mbps: 10_000,
        ..NicConfig::default()
    };
    let nic = Nic::new(&config, Arc::new(ManualClock::new(1_000_000_000))).unwrap();
    let admin = [2, 0, 0, 0, 0, 0x10];
    nic.configure_vf_words(0, &["mac", "02:00:00:00:00:10"])
        .unwrap();
    let cfg = |last: u8| DriverConfig {
        card: Card::X82599,
        random_mac: [2, 0x5a, 0x5a, 0, 0, last],
        ..DriverConfig::default()
    };
    let mut guests: Vec<SoftGuest> = (0..3)
        .map(|i| SoftGuest::attach(nic.vf(i).unwrap(), cfg(i as u8 + 1)).unwrap())
        .collect();
    let macs: Vec<[u8; 6]> = guests.iter_mut().map(|g| g.up().unwrap()).collect();
    assert_eq!(macs[0], admin, "the admin MAC from the RESET reply");
    assert_eq!(
        macs[1],
        [2, 0x5a, 0x5a, 0, 0, 2],
        "no admin MAC: a random one"
    );
    for g in &mut guests {
        assert_eq!(g.drv.api, mailbox::ixgbe::regs::api::V1_4);
        assert!(g.drv.check_link(&g.vf), "VFLINKS up and CTS");
    }
    // VF 1's random MAC is in the switch (SET_MAC_ADDR at up).
    let learned = nic.with_pf(|pf| pf.policy(1).and_then(|p| p.mac));
    assert_eq!(learned.map(|m| m.0), Some(macs[1]));

    let sent = frame(macs[1], macs[0], 0x11);
    guests[0].send(&sent).unwrap();
    guests[1].poll();
    let got = guests[1].take_received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, sent);
    let back = frame(macs[0], macs[1], 0x22);
    guests[1].send(&back).unwrap();
    guests[0].poll();
    assert_eq!(guests[0].take_received()[0].data, back);
    let bcast = frame([0xff; 6], macs[2], 0x33);
    guests[2].send(&bcast).unwrap();
    for g in &mut guests[..2] {
        g.poll();
        assert_eq!(g.take_received().len(), 1, "the broadcast reached both");
    }
    guests[0].poll();
    assert_eq!(
        guests[0].drv.clean_tx(),
        0,
        "TX already cleaned by the handler"
    );

    // Jumbo: the PF's MTU is 1500, so ixgbe refuses a VF frame above 1518 and clears the
    // VF's receive enable with the refusal (`ixgbe_set_vf_lpe`); the interface keeps its MTU
    // but receives nothing until its next reset (`ip link set eth0 down; ... up`).
    let refused = {
        let g = &mut guests[1];
        g.drv.change_mtu(&g.vf, 9000)
    };
    assert_eq!(refused, Err(DrvError::MtuRefused));
    assert_eq!(guests[1].drv.mtu, 1500);
    guests[0].send(&sent).unwrap();
    guests[1].poll();
    assert!(guests[1].take_received().is_empty());
    let rx_disabled = nic.with_pf(|pf| {
        pf.switch()
            .counters(PortId::Vf(1))
            .map(|c| c.drops.get(DropReason::RxDisabled))
    });
    assert_eq!(rx_disabled, Some(1));
    {
        let g = &mut guests[1];
        g.drv.reinit(&g.vf, 2_000_000_000).unwrap();
    }
    guests[0].send(&sent).unwrap();
    guests[1].poll();
    assert_eq!(
        guests[1].take_received().len(),
        1,
        "receive on again after the reset"
    );

    // TSO through context slot 1: 3000 bytes of TCP payload in MSS 1000 segments.
    let seg = support_tcp_frame(macs[1], macs[0], 3000);
    let opts = XmitOpts {
        tso: Some((14, 20, 20, 1000, true)),
        frag: 4096,
        ..XmitOpts::default()
    };
    {
        let g = &mut guests[0];
        g.drv.xmit(&g.vf, &seg, &opts).unwrap();
    }
    guests[1].poll();
    let segs = guests[1].take_received();
    assert_eq!(segs.len(), 3, "segmented with context 1's MSS");
    assert!(segs.iter().all(|s| s.data.len() == 14 + 20 + 20 + 1000));

    // `vf 2 trust on` makes ixgbe revoke CTS and ping the VF (`ixgbe_ndo_set_vf_trust`):
    // the mailbox vector runs and the link check finds the ping without CTS, so the link is
    // down (`ixgbevf_check_mac_link_vf`). The next request the driver makes is NACKed
    // (`ixgbe_rcv_msg_from_vf` refuses a VF that is not clear to send), which the link check
    // reads as a lost CTS: the reset task redoes the handshake and the link is back.
    nic.configure_vf_words(2, &["trust", "on"]).unwrap();
    let g = &mut guests[2];
    g.poll();
    assert!(g.drv.other_irqs > 0, "the PF's control message interrupted");
    let run = g.drv.watchdog(&g.vf, 60_000_000_000).unwrap();
    assert!(!run.link && !run.reset, "{run:?}");
    let _ = g.drv.set_mc_list(&g.vf, vec![[0x01, 0, 0x5e, 0, 0, 0xfb]]);
    let run = g.drv.watchdog(&g.vf, 62_000_000_000).unwrap();
    assert!(run.reset && run.link, "{run:?}");
    assert_eq!(g.drv.resets, 1);
    let trusted = nic.with_pf(|pf| pf.agent().ixgbe().map(|x| x.is_clear_to_send(2)));
    assert_eq!(trusted, Some(true), "clear to send again after the reset");
}

/// An IPv4/TCP frame with `payload` bytes, checksums left to the NIC.
fn support_tcp_frame(dst: [u8; 6], src: [u8; 6], payload: usize) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + 20 + payload) as u16;
    f.extend_from_slice(&[
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0x40,
        0,
        64,
        6,
        0,
        0,
    ]);
    f.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
    f.extend_from_slice(&[
        0x30, 0x39, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff,
    ]);
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend((0..payload).map(|i| i as u8));
    f
}

/// 63 VFs, as an 82599 port enables at most (64 pools, one the PF's), and 256 beyond the
/// hardware (the emulator's limit for every card): the highest VF's software ixgbevf comes up
/// with ixgbe's answers and reaches VF 0 through the one switch.
#[test]
fn the_highest_vf_of_63_and_of_256_works_as_vf_0_does() {
    use model::testing::{DriverConfig, SoftGuest};
    for num_vfs in [63u16, 256] {
        let config = NicConfig {
            num_vfs,
            card: Card::X82599,
            link_speed_mbps: 10_000,
            ..NicConfig::default()
        };
        let nic = Nic::new(&config, Arc::new(ManualClock::new(1_000_000_000))).unwrap();
        let last = num_vfs - 1;
        let cfg = |n: u16| DriverConfig {
            card: Card::X82599,
            random_mac: [2, 0x5a, (n >> 8) as u8, n as u8, 0, 1],
            ..DriverConfig::default()
        };
        let mut a = SoftGuest::attach(nic.vf(0).unwrap(), cfg(0)).unwrap();
        let mut z = SoftGuest::attach(nic.vf(last).unwrap(), cfg(last)).unwrap();
        let (ma, mz) = (a.up().unwrap(), z.up().unwrap());
        assert!(z.drv.check_link(&z.vf), "{num_vfs} VFs: VF {last}'s link");
        let f = frame(ma, mz, 0x5a);
        z.send(&f).unwrap();
        a.poll();
        assert_eq!(
            a.take_received().len(),
            1,
            "{num_vfs} VFs: VF {last} → VF 0"
        );
        a.send(&frame(mz, ma, 0xa5)).unwrap();
        z.poll();
        assert_eq!(
            z.take_received().len(),
            1,
            "{num_vfs} VFs: VF 0 → VF {last}"
        );
    }
}
