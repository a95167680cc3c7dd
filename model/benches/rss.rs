//! `cargo bench -p model --bench rss`: the Toeplitz hash behind an 82599 VF's choice of RX
//! queue, over the inputs RSS hashes for TCP (IPv4: addresses and ports, 12 bytes; IPv6: 36
//! bytes). Prints nanoseconds per hash for the table `Rss` uses and for the specification's
//! bit-by-bit loop, and their ratio; then a whole queue choice on a TCP/IPv4 frame.

use std::hint::black_box;
use std::time::Instant;

use model::function::x82599::rss::{toeplitz, Rss, Toeplitz};

const ROUNDS: u32 = 2_000_000;
const RUNS: usize = 3;

/// The best of `RUNS` runs of `ROUNDS` calls, in ns per call; `f` gets the call's number,
/// to change its input with (so that the call is not hoisted out of the loop).
fn best_ns(mut f: impl FnMut(u32) -> usize) -> f64 {
    (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            black_box((0..ROUNDS).fold(0usize, |x, i| x ^ f(i)));
            start.elapsed().as_nanos() as f64 / f64::from(ROUNDS)
        })
        .fold(f64::INFINITY, f64::min)
}

/// [`best_ns`] of a hash of `input`.
fn hash_ns(input: &mut [u8], f: impl Fn(&[u8]) -> u32) -> f64 {
    best_ns(|i| {
        input[0] = i as u8;
        f(black_box(&*input)) as usize
    })
}

fn main() {
    let rss = Rss::ixgbe();
    let table = Toeplitz::new(rss.key());
    println!("Toeplitz hash, best of {RUNS} runs of {ROUNDS}:");
    for (name, len) in [("TCP/IPv4 (12 bytes)", 12), ("TCP/IPv6 (36 bytes)", 36)] {
        let mut input: Vec<u8> = (0..len as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let by_table = hash_ns(&mut input, |d| table.hash(d));
        let by_bit = hash_ns(&mut input, |d| toeplitz(rss.key(), d));
        println!(
            "  {name}: table {by_table:.1} ns, bit by bit {by_bit:.1} ns ({:.1}x the table)",
            by_bit / by_table
        );
    }
    // An untagged TCP/IPv4 frame: parse, hash, redirection table, pool mask.
    let mut frame = vec![0u8; 14 + 20 + 20];
    frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    frame[14] = 0x45;
    frame[16..18].copy_from_slice(&40u16.to_be_bytes());
    frame[22] = 64;
    frame[23] = 6;
    frame[26..34].copy_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
    frame[46] = 0x50;
    let best = best_ns(|i| {
        frame[35] = i as u8;
        rss.queue(black_box(&frame), 1, 2)
    });
    println!("  queue of a TCP/IPv4 frame (parse, hash, table): {best:.1} ns");
}
