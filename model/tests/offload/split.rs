//! Segmentation from parts (`offload::segment`): a packet whose head was gathered and whose
//! payload is read as the segments are cut (the TX ring reads it straight from the guest's
//! buffers) is cut exactly as the whole packet is, and a payload that cannot be read drops
//! the packet with nothing emitted.

use bytes::Bytes;
use model::function::offload::{
    segment, OffloadError, OffloadStats, Payload, PayloadUnreadable, TxContext, TxOffloads,
};
use pnet_packet::tcp::TcpFlags;
use proptest::prelude::*;

use crate::support::*;

fn run_split(
    frame: &[u8],
    at: usize,
    ctx: &TxContext,
    off: &TxOffloads,
) -> Result<(Vec<Bytes>, OffloadStats), OffloadError> {
    let mut frames = Vec::new();
    let stats = segment(&frame[..at], &&frame[at..], ctx, off, &mut |b: Bytes| {
        frames.push(b)
    })?;
    Ok((frames, stats))
}

/// A payload whose bytes from `bad` on cannot be read.
struct Holed<'a> {
    bytes: &'a [u8],
    bad: usize,
}

impl Payload for Holed<'_> {
    fn len(&self) -> usize {
        self.bytes.len()
    }

    fn append_to(&self, at: usize, len: usize, out: &mut Vec<u8>) -> Result<(), PayloadUnreadable> {
        if at + len > self.bad {
            return Err(PayloadUnreadable);
        }
        out.extend_from_slice(&self.bytes[at..at + len]);
        Ok(())
    }
}

#[test]
fn a_64k_packet_cut_from_its_headers_and_its_buffers_is_the_packet_cut_whole() {
    for ip in [Ip::V4, Ip::V6] {
        let b = gso_frame(ip, L4::Tcp, &payload_bytes(65_000, 5), 1448, TcpFlags::ACK);
        let whole = run(&b.frame, &b.ctx, &b.off).unwrap();
        // The head exactly the headers, and one byte into the payload.
        for at in [b.hdr_len, b.hdr_len + 1, b.frame.len()] {
            assert_eq!(
                run_split(&b.frame, at, &b.ctx, &b.off).unwrap(),
                whole,
                "{ip:?} at {at}"
            );
        }
    }
}

#[test]
fn an_unreadable_payload_byte_drops_the_packet_and_emits_nothing() {
    let b = gso_frame(
        Ip::V4,
        L4::Tcp,
        &payload_bytes(10_000, 2),
        1448,
        TcpFlags::ACK,
    );
    let rest = &b.frame[b.hdr_len..];
    let mut emitted = 0;
    for bad in [0, 1447, 1448, 5_000, rest.len() - 1] {
        let holed = Holed { bytes: rest, bad };
        let r = segment(
            &b.frame[..b.hdr_len],
            &holed,
            &b.ctx,
            &b.off,
            &mut |_: Bytes| emitted += 1,
        );
        assert_eq!(r, Err(OffloadError::PayloadUnreadable), "hole at {bad}");
    }
    assert_eq!(emitted, 0);
    // The hole past the end is never read.
    let holed = Holed {
        bytes: rest,
        bad: rest.len(),
    };
    let r = segment(
        &b.frame[..b.hdr_len],
        &holed,
        &b.ctx,
        &b.off,
        &mut |_: Bytes| {},
    );
    assert_eq!(r.map(|s| s.frames), Ok(7));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Any context (every field randomised, as in `mutated_contexts_never_panic`) and any cut
    /// at or after the headers the context describes: the same frames, or the same error, as
    /// the whole packet gives.
    #[test]
    fn any_cut_after_the_headers_gives_what_the_whole_packet_gives(
        len in 0usize..3_000,
        mac_len in 0u8..128,
        ip_len in 0u16..512,
        l4_len in any::<u8>(),
        mss in 1u16..2_000,
        l4 in 0u32..4,
        ipv4 in any::<bool>(),
        vle in any::<bool>(),
        v6 in any::<bool>(),
        udp in any::<bool>(),
        consistent_paylen in any::<bool>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let ip = if v6 { Ip::V6 } else { Ip::V4 };
        let b = gso_frame(ip, if udp { L4::Udp } else { L4::Tcp }, &payload_bytes(len, 1), 1448, TcpFlags::ACK);
        // What the TX ring gathers at least: MACLEN, IPLEN (an IPv6 header at least), L4LEN (a
        // TCP header at least).
        let headers = usize::from(mac_len) + usize::from(ip_len).max(40) + usize::from(l4_len).max(20);
        let frame = &b.frame;
        let from = headers.min(frame.len());
        let at = from + cut.index(frame.len() - from + 1);
        let hdr = usize::from(mac_len) + usize::from(ip_len) + usize::from(l4_len);
        let paylen = if consistent_paylen { frame.len().saturating_sub(hdr) as u32 } else { len as u32 };
        let ctx = context_from_fields(mac_len, ip_len, l4_len, mss, l4, ipv4);
        let off = TxOffloads { tse: true, ixsm: ipv4, txsm: true, vle, paylen };
        prop_assert_eq!(run_split(frame, at, &ctx, &off), run(frame, &ctx, &off));
    }

    /// Well-formed packets of any size and MSS: the same frames from any cut at or after the
    /// headers.
    #[test]
    fn well_formed_packets_cut_anywhere_after_their_headers(
        len in 0usize..20_000,
        mss in 64u16..9_000,
        v6 in any::<bool>(),
        udp in any::<bool>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let ip = if v6 { Ip::V6 } else { Ip::V4 };
        let b = gso_frame(ip, if udp { L4::Udp } else { L4::Tcp }, &payload_bytes(len, 3), mss, TcpFlags::ACK);
        let at = b.hdr_len + cut.index(b.frame.len() - b.hdr_len + 1);
        let whole = run(&b.frame, &b.ctx, &b.off);
        prop_assert!(whole.is_ok());
        prop_assert_eq!(run_split(&b.frame, at, &b.ctx, &b.off), whole);
    }
}
