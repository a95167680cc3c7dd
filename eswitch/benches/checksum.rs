//! `cargo bench -p eswitch --bench checksum`: the Internet checksum over a 1480-byte TCP
//! segment (a 1514-byte frame's IP payload), the per-byte work behind every TX checksum
//! offload and every RX checksum verification. Prints nanoseconds per segment for
//! `wire::checksum::sum`, for the big-endian 32-bit loop it replaced, for RFC 1071's 16-bit loop
//! as written and for `pnet_packet`'s checksum, and the ratios.

use std::hint::black_box;
use std::time::Instant;

use eswitch::wire::checksum;

const LEN: usize = 1480;
const ROUNDS: u32 = 2_000_000;
const RUNS: usize = 3;

/// RFC 1071 §4.1 as written: 16-bit big-endian words, end-around carry at the end.
fn rfc1071(data: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    for pair in data.chunks(2) {
        acc += u64::from(u16::from_be_bytes([
            pair[0],
            pair.get(1).copied().unwrap_or(0),
        ]));
    }
    checksum::fold(acc)
}

/// Big-endian 32-bit words into one `u64`: what `sum` did before it took native-endian words
/// in lanes.
fn be_words(data: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let mut tail = [0u8; 4];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    checksum::fold(acc + u64::from(u32::from_be_bytes(tail)))
}

/// The best of `RUNS` runs, in ns per call.
fn time(data: &mut [u8], f: impl Fn(&[u8]) -> u16) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..RUNS {
        let start = Instant::now();
        let mut x = 0u16;
        for i in 0..ROUNDS {
            // A changing byte keeps the call from being hoisted out of the loop.
            data[0] = i as u8;
            x ^= f(black_box(&*data));
        }
        black_box(x);
        best = best.min(start.elapsed().as_nanos() as f64 / f64::from(ROUNDS));
    }
    best
}

fn main() {
    let mut data: Vec<u8> = (0..LEN as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    assert_eq!(checksum::data(&data), rfc1071(&data));
    assert_eq!(checksum::data(&data), be_words(&data));
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let ours = time(&mut data, checksum::data);
    let plain = time(&mut data, rfc1071);
    let before = time(&mut data, be_words);
    let pnet = time(&mut data, |d| {
        !pnet_packet::util::checksum(d, usize::MAX / 2)
    });
    println!("checksum of {LEN} bytes, best of {RUNS} runs of {ROUNDS}:");
    println!(
        "  wire::checksum::sum  {ours:>7.1} ns ({:.1} GB/s)",
        LEN as f64 / ours
    );
    println!(
        "  big-endian u32 words {before:>7.1} ns ({:.2}x ours)",
        before / ours
    );
    println!(
        "  RFC 1071 16-bit loop {plain:>7.1} ns ({:.2}x ours)",
        plain / ours
    );
    println!(
        "  pnet_packet          {pnet:>7.1} ns ({:.2}x ours)",
        pnet / ours
    );
}
