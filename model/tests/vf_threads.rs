//! The datapath across threads, as `serve` runs it: VF A's connection thread transmits through
//! the NIC into VF B's RX ring (through B's bounded backlog when the ring is full) while B's
//! connection thread cleans its ring and posts buffers, which drains the backlog. Both threads
//! drive their own `VfHandle` of one `Nic`.

mod support;

use std::thread;
use std::time::{Duration, Instant};

use eswitch::PortId;
use model::function::i82576::regs;
use model::nic::BACKLOG_FRAMES;
use model::testing::{DriverConfig, XmitOpts};
use model::RxDrop;
use support::*;

const FRAMES: usize = 2000;

/// Frame `i` from A to B: its sequence number in the first two payload bytes.
fn numbered(dst: [u8; 6], src: [u8; 6], i: usize) -> Vec<u8> {
    let mut f = frame(dst, src, 60 + i % 900, i as u8);
    f[14..16].copy_from_slice(&(i as u16).to_be_bytes());
    f
}

#[test]
fn a_to_b_across_threads_loses_and_reorders_nothing_but_counted_backlog_overflow() {
    let r = rig(2);
    let mut a = r.up(0, DriverConfig::default());
    let mut b = r.up(
        1,
        DriverConfig {
            ring: 16,
            ..DriverConfig::default()
        },
    );
    let (src, dst) = (a.drv.mac, b.drv.mac);

    let tx = thread::spawn(move || {
        for i in 0..FRAMES {
            let f = numbered(dst, src, i);
            // Back-pressure like the netdev queue: clean TX when the ring is full.
            while a.drv.xmit(&a.vf, &f, &XmitOpts::default()).is_err() {
                a.poll();
                a.drv.clean_tx();
                thread::yield_now();
            }
            if i % 7 == 0 {
                thread::yield_now();
            }
        }
        a
    });

    let deadline = Instant::now() + Duration::from_secs(60);
    // B's guest is slow to start: it cleans nothing until its ring and its backlog are full
    // and a frame was lost. From then on it cleans while A keeps transmitting.
    while b.vf.stats().rx_drop(RxDrop::BacklogOverflow) == 0 {
        assert!(Instant::now() < deadline, "A never filled B's backlog");
        thread::sleep(Duration::from_micros(50));
    }
    assert_eq!(
        b.vf.backlog(),
        BACKLOG_FRAMES,
        "nobody drains B's backlog but B"
    );
    loop {
        b.poll();
        // igbvf's watchdog: EICS on the RX vector (covers an interrupt that raced the clean).
        b.drv.wr(&b.vf, regs::VTEICS, 1 << 1);
        b.poll();
        let lost = b.vf.stats().rx_drop(RxDrop::BacklogOverflow);
        if tx.is_finished()
            && b.vf.backlog() == 0
            && b.drv.received.len() as u64 + lost == FRAMES as u64
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stalled at {} frames",
            b.drv.received.len()
        );
        thread::sleep(Duration::from_micros(50));
    }
    let a = tx.join().unwrap();

    // In order, each exactly once and byte-exact; only backlog overflows are missing.
    let mut last: Option<usize> = None;
    for rx in &b.drv.received {
        let i = usize::from(u16::from_be_bytes([rx.data[14], rx.data[15]]));
        assert!(last.is_none_or(|l| i > l), "frame {i} after {last:?}");
        assert_eq!(rx.data, numbered(dst, src, i));
        last = Some(i);
    }
    let bs = b.vf.stats();
    let lost = FRAMES as u64 - b.drv.received.len() as u64;
    assert!(lost >= 1, "the stall overflowed the backlog");
    assert_eq!(bs.rx_drop(RxDrop::BacklogOverflow), lost);
    assert_eq!(
        r.port(PortId::Vf(1)).drops.rx_full,
        lost,
        "the switch counts them as rx_full"
    );
    assert_eq!(bs.rx_packets, FRAMES as u64 - lost);
    assert_eq!(bs.total_rx_drops(), lost, "no other drop");
    assert_eq!(a.vf.stats().tx_packets, FRAMES as u64);
    assert_eq!(r.sent_by(0).len(), FRAMES);
}
