//! Shared rig for the VF tests: a PF side (real mailbox + agent), VFs with their own guest
//! memory, a software igbvf per VF, TX sinks that record frames.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use mailbox::{AgentConfig, MacAssignment};
use model::testing::{DriverConfig, IrqLog, MailboxPort, SoftIgbvf};
use model::{TxVerdict, Vf};
use vm_memory::{GuestAddress, GuestMemoryAtomic, GuestMemoryMmap};

pub const GUEST_BASE: u64 = 0x10_0000;
pub const GUEST_SIZE: usize = 0x40_0000;

pub type Frames = Arc<Mutex<Vec<Bytes>>>;

pub struct Guest {
    pub vf: Vf,
    pub drv: SoftIgbvf,
    pub irqs: Arc<IrqLog>,
    pub mem: GuestMemoryMmap,
    pub sent: Frames,
}

pub fn port(num_vfs: usize) -> Arc<MailboxPort> {
    let mut cfg = AgentConfig::new(num_vfs);
    cfg.mac_assignment = MacAssignment::Generated {
        seed: [0x52, 0x54, 0x00],
    };
    MailboxPort::new(cfg).expect("agent config")
}

pub fn guest_memory() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(GUEST_BASE), GUEST_SIZE)]).expect("guest memory")
}

/// A VF attached to a fresh guest, with a recording TX sink; not probed yet.
pub fn guest(port: &Arc<MailboxPort>, id: u16, cfg: DriverConfig) -> Guest {
    let mut vf = Vf::new(id, port.clone()).expect("VF config space");
    let mem = guest_memory();
    let irqs = IrqLog::new();
    vf.attach(GuestMemoryAtomic::new(mem.clone()), irqs.clone());
    let sent: Frames = Arc::default();
    let s = sent.clone();
    vf.set_tx_sink(Box::new(move |f| {
        s.lock().unwrap().push(f);
        TxVerdict::Sent
    }));
    let drv = SoftIgbvf::new(mem.clone(), GUEST_BASE, cfg);
    Guest {
        vf,
        drv,
        irqs,
        mem,
        sent,
    }
}

/// Probed and opened, interrupts enabled, pending interrupts handled.
pub fn up(port: &Arc<MailboxPort>, id: u16, cfg: DriverConfig) -> Guest {
    let mut g = guest(port, id, cfg);
    g.drv.probe(&mut g.vf).expect("probe");
    g.drv.open(&mut g.vf).expect("open");
    g.drv.handle_irqs(&mut g.vf, &g.irqs);
    g.irqs.take();
    g
}

/// An Ethernet frame from `src` to `dst` with a recognisable payload.
pub fn frame(dst: [u8; 6], src: [u8; 6], len: usize, seed: u8) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0xB5]);
    let mut x = seed;
    while f.len() < len {
        f.push(x);
        x = x.wrapping_mul(31).wrapping_add(7);
    }
    f
}

/// An IPv4/TCP frame (54 bytes of headers) with `payload` bytes.
pub fn tcp4(dst: [u8; 6], src: [u8; 6], payload: usize) -> Vec<u8> {
    let mut f = vec![0u8; 54 + payload];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12] = 0x08;
    f[14] = 0x45;
    let tot = (40 + payload) as u16;
    f[16..18].copy_from_slice(&tot.to_be_bytes());
    f[22] = 64;
    f[23] = 6;
    f[26..30].copy_from_slice(&[10, 0, 0, 1]);
    f[30..34].copy_from_slice(&[10, 0, 0, 2]);
    f[46] = 5 << 4;
    for (i, b) in f[54..].iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    f
}
