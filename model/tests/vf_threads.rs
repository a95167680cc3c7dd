//! The datapath across threads, as the server will run it: VF A's connection thread transmits
//! into VF B's RX ring (through a bounded backlog when B's ring is full) while B's connection
//! thread cleans its ring and posts buffers, and the posted-buffers hook drains the backlog.

mod support;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use model::testing::{DriverConfig, XmitOpts};
use model::{RxDrop, TxVerdict, VfShared};
use support::*;

const FRAMES: usize = 2000;
const BACKLOG: usize = 64;

struct Backlog {
    frames: VecDeque<bytes::Bytes>,
    overflow: u64,
}

/// Deliver what the backlog holds, in order, until B's ring is full again.
fn drain(backlog: &Mutex<Backlog>, b: &VfShared) {
    let mut bl = backlog.lock().unwrap();
    while let Some(f) = bl.frames.front() {
        match b.receive(f, None) {
            Ok(()) => {
                bl.frames.pop_front();
            }
            Err(RxDrop::RingFull) => break,
            Err(other) => panic!("unexpected drop {other}"),
        }
    }
}

#[test]
fn a_to_b_across_threads_with_a_backlog_loses_and_reorders_nothing() {
    let port = port(2);
    let cfg = DriverConfig {
        ring: 16,
        ..DriverConfig::default()
    };
    let mut a = up(&port, 0, DriverConfig::default());
    let mut b = up(&port, 1, cfg);
    let b_rx = b.vf.shared();
    let backlog = Arc::new(Mutex::new(Backlog {
        frames: VecDeque::new(),
        overflow: 0,
    }));

    // A's sink: in order behind the backlog; a full backlog drops (counted at B).
    let (bl, brx) = (backlog.clone(), b_rx.clone());
    a.vf.set_tx_sink(Box::new(move |f| {
        let mut q = bl.lock().unwrap();
        if q.frames.is_empty() {
            match brx.receive(&f, None) {
                Ok(()) => return TxVerdict::Sent,
                Err(RxDrop::RingFull) => {}
                Err(other) => panic!("unexpected drop {other}"),
            }
        }
        if q.frames.len() < BACKLOG {
            q.frames.push_back(f);
        } else {
            q.overflow += 1;
            brx.count_backlog_drop();
        }
        TxVerdict::Sent
    }));
    // B's hook: buffers were posted, retry the backlog.
    let (bl, brx) = (backlog.clone(), b_rx.clone());
    b.vf.set_rx_posted_hook(Arc::new(move |_| drain(&bl, &brx)));

    let src = a.drv.mac;
    let dst = b.drv.mac;
    let tx = thread::spawn(move || {
        for i in 0..FRAMES {
            let f = frame(dst, src, 60 + i % 900, i as u8);
            // Back-pressure like the netdev queue: clean TX when the ring is full.
            loop {
                match a.drv.xmit(&mut a.vf, &f, &XmitOpts::default()) {
                    Ok(()) => break,
                    Err(_) => {
                        a.drv.handle_irqs(&mut a.vf, &a.irqs);
                        a.drv.clean_tx();
                        thread::yield_now();
                    }
                }
            }
            if i % 7 == 0 {
                thread::yield_now();
            }
        }
        a
    });

    let deadline = Instant::now() + Duration::from_secs(60);
    let expected_total = loop {
        b.drv.handle_irqs(&mut b.vf, &b.irqs);
        // igbvf's watchdog: EICS on the RX vector (covers an interrupt that raced the clean).
        b.drv.wr(&mut b.vf, model::regs::VTEICS, 1 << 1);
        b.drv.handle_irqs(&mut b.vf, &b.irqs);
        let overflow = backlog.lock().unwrap().overflow;
        let expected = FRAMES as u64 - overflow;
        if tx.is_finished()
            && backlog.lock().unwrap().frames.is_empty()
            && b.drv.received.len() as u64 == expected
        {
            break expected;
        }
        assert!(
            Instant::now() < deadline,
            "stalled at {} frames",
            b.drv.received.len()
        );
        thread::sleep(Duration::from_micros(50));
    };
    let a = tx.join().unwrap();

    // In order, each exactly once; only backlog overflows are missing, and they are counted.
    assert_eq!(b.drv.received.len() as u64, expected_total);
    let mut last: Option<usize> = None;
    for r in &b.drv.received {
        let len = r.data.len();
        let i = (0..FRAMES)
            .filter(|i| 60 + i % 900 == len && (*i as u8) == r.data[14])
            .find(|i| last.is_none_or(|l| *i > l))
            .expect("a frame A sent, after the previous one");
        assert!(r.data == frame(dst, src, len, i as u8));
        last = Some(i);
    }
    let bs = b.vf.stats();
    assert!(
        bs.rx_drop(RxDrop::RingFull) > 0,
        "the backlog was exercised"
    );
    assert_eq!(
        bs.rx_drop(RxDrop::BacklogOverflow),
        FRAMES as u64 - expected_total
    );
    assert_eq!(bs.rx_packets, expected_total);
    assert_eq!(a.vf.stats().tx_packets, FRAMES as u64);
}
