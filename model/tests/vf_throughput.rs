//! A rough in-process throughput figure for the VF datapath (A's TX ring → B's RX ring, both
//! driven by the software igbvf). Ignored by default: `cargo test --release -p model --test
//! vf_throughput -- --ignored --nocapture`.

mod support;

use std::time::Instant;

use model::testing::{DriverConfig, XmitOpts};
use model::TxVerdict;
use support::*;

#[test]
#[ignore]
fn a_to_b_frames_per_second() {
    let port = port(2);
    let cfg = DriverConfig {
        ring: 256,
        ..DriverConfig::default()
    };
    let mut a = up(&port, 0, cfg);
    let mut b = up(&port, 1, cfg);
    let b_rx = b.vf.shared();
    a.vf.set_tx_sink(Box::new(move |f| {
        let _ = b_rx.receive(&f, None);
        TxVerdict::Sent
    }));
    for &len in &[64usize, 1514] {
        let f = frame(b.drv.mac, a.drv.mac, len, 1);
        let n = 200_000;
        let start = Instant::now();
        for _ in 0..n {
            while a.drv.xmit(&mut a.vf, &f, &XmitOpts::default()).is_err() {
                a.drv.clean_tx();
            }
            if b.drv.clean_rx(&mut b.vf) > 0 {
                b.drv.received.clear();
            }
            a.irqs.take();
            b.irqs.take();
        }
        let dt = start.elapsed().as_secs_f64();
        println!(
            "{len}-byte frames: {:.0} kpps, {:.2} Gbit/s (driver side included)",
            n as f64 / dt / 1e3,
            n as f64 * len as f64 * 8.0 / dt / 1e9
        );
    }
}
