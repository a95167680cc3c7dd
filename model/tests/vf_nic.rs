//! The VF function wired to the PF side (`model::pf::PfSide`: eswitch + PF agent + mailboxes)
//! the way the server will wire it: a `PfPort` over the locked PF side, a TX sink that asks
//! the VF's shaper, runs the switch and hands each delivery to the destination VF's
//! `VfShared::receive`. Software igbvf drivers on both ends.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use eswitch::{NextSendAt, PortId, VfSetting, VlanProto};
use mailbox::MacAssignment;
use model::pf::{NicConfig, PfSide, SharedPf};
use model::testing::{DriverConfig, IrqLog, SoftIgbvf, XmitOpts};
use model::{MailboxIrq, TxVerdict, Vf, VfShared};
use support::{frame, guest_memory, GUEST_BASE};
use vm_memory::GuestMemoryAtomic;

struct Node {
    vf: Vf,
    drv: SoftIgbvf,
    irqs: Arc<IrqLog>,
}

struct Nic {
    pf: Arc<SharedPf>,
    /// The simulated time the PF side reads.
    now_ns: Arc<AtomicU64>,
    nodes: Vec<Node>,
    uplink: Arc<Mutex<Vec<bytes::Bytes>>>,
}

fn nic(n: u16) -> Nic {
    let config = NicConfig {
        num_vfs: n,
        mac_assignment: MacAssignment::Generated {
            seed: [0x52, 0x54, 0x00],
        },
        ..NicConfig::default()
    };
    let now_ns = Arc::new(AtomicU64::new(1_000_000_000));
    let clock = {
        let t = now_ns.clone();
        Arc::new(move || t.load(Ordering::Relaxed))
    };
    let pf = Arc::new(SharedPf::new(PfSide::new(&config).unwrap(), clock));
    let mut nodes: Vec<Node> = (0..n)
        .map(|i| {
            let mut vf = Vf::new(i, pf.clone()).unwrap();
            let mem = guest_memory();
            let irqs = IrqLog::new();
            vf.attach(GuestMemoryAtomic::new(mem.clone()), irqs.clone());
            let drv = SoftIgbvf::new(mem, GUEST_BASE, DriverConfig::default());
            Node { vf, drv, irqs }
        })
        .collect();
    let shared: Arc<Vec<Arc<VfShared>>> = Arc::new(nodes.iter().map(|n| n.vf.shared()).collect());
    let uplink: Arc<Mutex<Vec<bytes::Bytes>>> = Arc::default();
    for (i, node) in nodes.iter_mut().enumerate() {
        let (pf, shared, uplink) = (pf.clone(), shared.clone(), uplink.clone());
        let me = i as u16;
        node.vf.set_tx_sink(Box::new(move |f| {
            let now = pf.now();
            let out = {
                let mut side = pf.side();
                if let Err(NextSendAt(t)) = side.switch_mut().tx_admit(me, now, f.len()) {
                    return TxVerdict::Defer { until_ns: t };
                }
                side.switch_mut().process(PortId::Vf(me), f)
            };
            // No PF-side lock held while writing into other VFs' rings.
            for d in out.deliveries {
                match d.port {
                    PortId::Vf(v) => {
                        let _ =
                            shared[usize::from(v)].receive(&d.frame, d.stripped_tci.map(|t| t.0));
                    }
                    PortId::Uplink(_) => uplink.lock().unwrap().push(d.frame),
                    PortId::Pf => {}
                }
            }
            TxVerdict::Sent
        }));
    }
    for node in &mut nodes {
        node.drv.probe(&mut node.vf).unwrap();
        node.drv.open(&mut node.vf).unwrap();
        node.drv.handle_irqs(&mut node.vf, &node.irqs);
        assert!(node.drv.check_link(&mut node.vf));
    }
    Nic {
        pf,
        now_ns,
        nodes,
        uplink,
    }
}

impl Nic {
    fn send(&mut self, from: usize, f: &[u8]) {
        let n = &mut self.nodes[from];
        n.drv.xmit(&mut n.vf, f, &XmitOpts::default()).unwrap();
    }

    fn poll(&mut self) {
        for n in &mut self.nodes {
            n.drv.handle_irqs(&mut n.vf, &n.irqs);
        }
    }
}

#[test]
fn igbvf_pair_gets_agent_macs_and_talks_through_the_switch() {
    let mut nic = nic(3);
    let macs: Vec<[u8; 6]> = nic.nodes.iter().map(|n| n.drv.mac).collect();
    assert_eq!(macs[2], [0x02, 0x52, 0x54, 0x00, 0x00, 0x02]);
    // Unicast A → B only.
    let f = frame(macs[1], macs[0], 98, 1);
    nic.send(0, &f);
    nic.poll();
    assert_eq!(nic.nodes[1].drv.received.len(), 1);
    assert_eq!(nic.nodes[1].drv.received[0].data, f);
    assert!(nic.nodes[2].drv.received.is_empty());
    // Broadcast reaches every other VF and the uplink, not the sender.
    let b = frame([0xFF; 6], macs[0], 60, 2);
    nic.send(0, &b);
    nic.poll();
    assert_eq!(nic.nodes[1].drv.received.len(), 2);
    assert_eq!(nic.nodes[2].drv.received.len(), 1);
    assert!(nic.nodes[0].drv.received.is_empty());
    assert_eq!(nic.uplink.lock().unwrap().len(), 1);
}

#[test]
fn port_vlan_strips_into_the_write_back_and_isolates() {
    let mut nic = nic(3);
    {
        let mut side = nic.pf.side();
        for vf in [0, 1] {
            let irq = side
                .configure_vf(
                    vf,
                    &[VfSetting::Vlan {
                        vid: 10,
                        qos: 0,
                        proto: VlanProto::Dot1Q,
                    }],
                )
                .unwrap();
            if irq == MailboxIrq::Raise {
                // The owner fires the VF's mailbox vector (the agent pinged it).
                nic.nodes[usize::from(vf)].vf.shared().mailbox_interrupt();
            }
        }
    }
    nic.poll();
    assert!(nic.nodes[0].drv.other_irqs >= 1, "ping reached igbvf");
    let macs: Vec<[u8; 6]> = nic.nodes.iter().map(|n| n.drv.mac).collect();
    let b = frame([0xFF; 6], macs[0], 60, 3);
    nic.send(0, &b);
    nic.poll();
    let got = &nic.nodes[1].drv.received;
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].vlan,
        Some(10),
        "tag stripped into the descriptor (VP)"
    );
    assert_eq!(got[0].data, b);
    assert!(
        nic.nodes[2].drv.received.is_empty(),
        "VF 2 is outside VLAN 10"
    );
    let up = nic.uplink.lock().unwrap();
    assert_eq!(&up[0][12..16], &[0x81, 0x00, 0x00, 0x0A]);
}

#[test]
fn rate_limit_pauses_the_queue_and_the_timer_resumes_it_without_loss() {
    let mut nic = nic(2);
    nic.pf.side().switch_mut().set_vf_rate(0, 0, 10).unwrap();
    let macs: Vec<[u8; 6]> = nic.nodes.iter().map(|n| n.drv.mac).collect();
    let frames: Vec<Vec<u8>> = (0..40).map(|i| frame(macs[1], macs[0], 1514, i)).collect();
    for f in &frames[..30] {
        nic.send(0, f);
    }
    let until = nic.nodes[0]
        .vf
        .tx_paused_until()
        .expect("the shaper deferred");
    let delivered_before = nic.nodes[1].vf.stats().rx_packets;
    assert!(delivered_before < 30);
    // The owner's timer: advance the clock and resume until the queue drains.
    let mut t = until;
    for _ in 0..1000 {
        nic.now_ns.store(t, Ordering::Relaxed);
        match nic.nodes[0].vf.tx_resume().paused_until {
            Some(next) => t = next,
            None => break,
        }
        nic.poll();
    }
    for f in &frames[30..] {
        nic.send(0, f);
        while let Some(next) = nic.nodes[0].vf.tx_paused_until() {
            nic.now_ns.store(next, Ordering::Relaxed);
            let _ = nic.nodes[0].vf.tx_resume();
            nic.poll();
        }
    }
    nic.poll();
    let got: Vec<Vec<u8>> = nic.nodes[1]
        .drv
        .received
        .iter()
        .map(|r| r.data.clone())
        .collect();
    assert_eq!(got, frames, "in order, none lost, none twice");
    // 40 × 1518 bytes at 10 Mbit/s take at least (40 × 1518 × 8 − burst) / 10e6 s.
    let elapsed = nic.pf.now() - 1_000_000_000;
    assert!(elapsed > 30_000_000, "shaped: {elapsed} ns");
}
