//! An 82599 NIC in the one runtime: its VFs (8086:10ed) hosted by `model::Nic` beside nothing
//! card-specific — the same switch, PF side and datapath as the 82576's — driven through their
//! `VfHandle`s the way ixgbevf 6.1 drives them: the reset handshake answered with ixgbe's
//! decisions, a frame from VF 0's TX ring switched into VF 1's RX ring, anti-spoof dropping a
//! forged source, VFLINKS reporting the 10 Gb/s link.

use std::sync::{Arc, Mutex};

use eswitch::{DropReason, PortId};
use model::function::desc::{rx_status, RxWriteBack, TxContext, TxDataDesc, TxDesc, TxOffloads};
use model::function::x82599::regs::{self, rxq, txq};
use model::nic::Card;
use model::{IrqSink, ManualClock, Nic, NicConfig, VfHandle};
use pcie::regs::header;
use vm_memory::{Bytes as _, GuestAddress, GuestMemoryAtomic, GuestMemoryMmap};

mod ixgbevf_support;
use ixgbevf_support::{VfBar0, ACK, BASE, RING, RX_RING, SIZE, TX_BUF, TX_RING};

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
    mem: GuestMemoryMmap,
    /// Vectors signalled, in order.
    irqs: Arc<Vectors>,
    r2c: u32,
    tx_tail: u32,
}

impl Driver {
    fn attach(nic: &Arc<Nic>, vf: u16) -> Driver {
        let handle = nic.vf(vf).expect("VF");
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(BASE), SIZE)]).unwrap();
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
            TxDesc::Data(TxDataDesc {
                addr: buf,
                len: frame.len() as u16,
                eop: true,
                ifcs: true,
                rs: true,
                idx: 0,
                offloads: TxOffloads::default(),
            }),
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
