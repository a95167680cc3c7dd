//! Frames per second through the one datapath: VF A's software igbvf transmits, the NIC
//! switches, VF B's software igbvf cleans its RX ring (driver work on both ends included).
//!
//! `cargo bench -p model --bench datapath` prints the rates for 64- and 1514-byte frames, and
//! for TCP/IPv4 packets A hands over for segmentation (TSO, as igbvf_tso prepares them): the
//! offload engine cuts each into 1514-byte segments, writing their checksums, and B's RX
//! reports them intact (the work a TCP stream between two VFs costs per segment; the TCP
//! checksums on the offload's word, which the check below confirms by summing each segment).
//! Without `--bench` (`cargo test --benches`, `--all-targets`) it only checks, with a few
//! frames, that every frame A sends reaches B intact, and prints nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mailbox::MacAssignment;
use model::function::desc::rx_status;
use model::function::rxcsum;
use model::testing::{DriverConfig, SoftGuest, XmitOpts};
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

/// TSO: TCP payload bytes per segment, and segments per packet (a packet of 63,766 bytes,
/// within the 64 KiB the engine takes).
const MSS: usize = 1448;
const TSO_SEGMENTS: usize = 44;

/// A TCP/IPv4 packet of `TSO_SEGMENTS` × `MSS` payload bytes from `src` to `dst` as igbvf_tso
/// leaves it for the hardware: IP total length and header checksum 0, the TCP checksum field
/// seeded with the pseudo-header sum without the length.
fn tso_packet(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let (sip, dip) = ([10, 0, 0, 1], [10, 0, 0, 2]);
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    // IPv4: version 4, IHL 5, DF, TTL 64, TCP.
    f.extend_from_slice(&[0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&sip);
    f.extend_from_slice(&dip);
    // TCP: ports, seq, ack, data offset 5, ACK|PSH, window; checksum at 50..52.
    f.extend_from_slice(&[
        0x30, 0x39, 0x14, 0x51, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x18, 0xFF, 0xFF,
    ]);
    f.extend_from_slice(&[0, 0, 0, 0]);
    let word = |b: [u8; 4]| {
        u32::from(u16::from_be_bytes([b[0], b[1]])) + u32::from(u16::from_be_bytes([b[2], b[3]]))
    };
    let mut seed = word(sip) + word(dip) + 6;
    while seed > 0xFFFF {
        seed = (seed & 0xFFFF) + (seed >> 16);
    }
    f[50..52].copy_from_slice(&(seed as u16).to_be_bytes());
    f.extend((0..TSO_SEGMENTS * MSS).map(|i| (i * 7) as u8));
    f
}

const TSO: XmitOpts = XmitOpts {
    vlan: None,
    frag: 2048,
    rs: true,
    csum: None,
    tso: Some((14, 20, 20, MSS as u16, true)),
};

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
    // TSO: one packet at a time; B's RX cleans the segments of each.
    let packet = tso_packet(dst, src);
    let mut tso = |n: u64| -> (u64, u64) {
        let (mut got, mut verified) = (0, 0);
        for _ in 0..n {
            while p.a.drv.xmit(&p.a.vf, &packet, &TSO).is_err() {
                p.a.poll();
            }
            p.b.poll();
            for r in p.b.take_received() {
                got += 1;
                // Checking only: each segment summed here as well, so that the flag B's RX
                // reports stands for checksums that are right.
                let summed = bench || rxcsum::status(&r.data) & rx_status::L4CS != 0;
                verified +=
                    u64::from(r.checksum_unnecessary && summed && r.data.len() == 14 + 40 + MSS);
            }
        }
        (got, verified)
    };
    if !bench {
        let n = CHECK_FRAMES / TSO_SEGMENTS as u64;
        assert_eq!(
            tso(n),
            (n * TSO_SEGMENTS as u64, n * TSO_SEGMENTS as u64),
            "TSO segments, checksums verified"
        );
    } else {
        let warm = Instant::now();
        while warm.elapsed() < WARMUP {
            tso(64);
        }
        let (mut packets, mut got) = (0, 0);
        let start = Instant::now();
        while start.elapsed() < MEASURE {
            got += tso(64).1;
            packets += 64;
        }
        let dt = start.elapsed().as_secs_f64();
        assert_eq!(
            got,
            packets * TSO_SEGMENTS as u64,
            "every segment arrived, checksum verified"
        );
        println!(
            "TSO {} KiB TCP packets -> {TSO_SEGMENTS} segments of 1514 bytes each: {:>10.0} segments/s ({:.2} Gbit/s)",
            packet.len() / 1024,
            got as f64 / dt,
            got as f64 * 1514.0 * 8.0 / dt / 1e9
        );
    }
    let s = p.b.vf.stats();
    assert_eq!(s.total_rx_drops(), 0, "B dropped nothing: {:?}", s.rx_drops);
}
