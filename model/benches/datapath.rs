//! Frames per second through the one datapath: VF A's software igbvf transmits, the NIC
//! switches, VF B's software igbvf cleans its RX ring (driver work on both ends included).
//!
//! `cargo bench -p model --bench datapath` prints the rates for 64- and 1514-byte frames.
//! Without `--bench` (`cargo test --benches`, `--all-targets`) it only checks, with a few
//! frames, that every frame A sends reaches B intact, and prints nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mailbox::MacAssignment;
use model::testing::{DriverConfig, SoftGuest};
use model::{MonotonicClock, Nic, NicConfig};

const SIZES: [usize; 2] = [64, 1514];
const WARMUP: Duration = Duration::from_millis(200);
const MEASURE: Duration = Duration::from_secs(2);
/// Frames per size when only checking.
const CHECK_FRAMES: u64 = 2_000;

struct Pair {
    a: SoftGuest,
    b: SoftGuest,
}

fn pair() -> Pair {
    let config = NicConfig {
        num_vfs: 2,
        mac_assignment: MacAssignment::Generated {
            seed: [0x52, 0x54, 0x00],
        },
        ..NicConfig::default()
    };
    let nic = Nic::new(&config, Arc::new(MonotonicClock::new())).expect("NIC");
    let cfg = DriverConfig {
        ring: 256,
        ..DriverConfig::default()
    };
    let mut guests = (0..2).map(|i| {
        let mut g = SoftGuest::attach(nic.vf(i).expect("VF"), cfg).expect("guest memory");
        g.up().expect("igbvf probe and open");
        g
    });
    let (a, b) = (guests.next().unwrap(), guests.next().unwrap());
    Pair { a, b }
}

fn frame(dst: [u8; 6], src: [u8; 6], len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0xB5]);
    f.extend((0..len - 14).map(|i| i as u8));
    f
}

impl Pair {
    /// Sends `frame` `n` times from A; B's igbvf handles its interrupt after every frame
    /// (igbvf_intr_msix_rx → igbvf_clean_rx_irq), A's cleans its TX ring when it is full
    /// (igbvf_clean_tx_irq). Returns the frames B received; with `check`, asserts each is
    /// `frame`.
    fn run(&mut self, frame: &[u8], n: u64, check: bool) -> u64 {
        let mut got = 0;
        for _ in 0..n {
            while self.a.send(frame).is_err() {
                self.a.poll();
            }
            self.b.poll();
            got += self.b.drv.received.len() as u64;
            if check {
                assert!(self.b.drv.received.iter().all(|r| r.data == frame));
            }
            self.b.drv.received.clear();
        }
        got
    }
}

const BATCH: u64 = 4096;

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let mut p = pair();
    let (src, dst) = (p.a.drv.mac, p.b.drv.mac);
    for len in SIZES {
        let f = frame(dst, src, len);
        if !bench {
            assert_eq!(
                p.run(&f, CHECK_FRAMES, true),
                CHECK_FRAMES,
                "{len}-byte frames"
            );
            continue;
        }
        let warm = Instant::now();
        while warm.elapsed() < WARMUP {
            p.run(&f, BATCH, false);
        }
        let (mut sent, mut got) = (0, 0);
        let start = Instant::now();
        while start.elapsed() < MEASURE {
            got += p.run(&f, BATCH, false);
            sent += BATCH;
        }
        let dt = start.elapsed().as_secs_f64();
        assert_eq!(got, sent, "B received every frame A sent");
        println!(
            "{len:>5}-byte frames, VF A -> switch -> VF B: {:>10.0} frames/s ({:.2} Gbit/s)",
            got as f64 / dt,
            got as f64 * len as f64 * 8.0 / dt / 1e9
        );
    }
    let s = p.b.vf.stats();
    assert_eq!(s.total_rx_drops(), 0, "B dropped nothing: {:?}", s.rx_drops);
}
