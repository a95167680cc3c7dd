//! Per-VF transmit shaping: a token bucket counted in bits, driven by a clock the caller passes.
//!
//! Shaping, not policing: the shaper never drops. When a frame does not fit, the caller is told
//! the earliest time it will, and pauses its TX queue until then, as the 82576's per-queue rate
//! scheduler (RTTBCNRC) holds descriptors back rather than discarding them.
//!
//! **Burst.** The bucket holds `max(2 × 1518 bytes, rate × 5 ms)` of credit
//! ([`TokenBucket::default_burst_bits`]): at least two full-size standard frames, so a low rate
//! still sends whole frames back to back, and five milliseconds of traffic at higher rates, so
//! that a paused queue whose timer fires late (a busy host, a thread scheduled milliseconds after
//! its deadline) finds the credit it earned meanwhile and the average rate holds. A frame larger
//! than the whole bucket (a jumbo frame on a slow VF) is sent once the bucket is full and leaves
//! the bucket in debt, so it is delayed, never starved.
//!
//! Over any interval of length T in which the sender always has a frame waiting and comes back at
//! the time it was told, the bits passed stay within `rate × T + burst` (plus at most one frame
//! larger than the burst) and, from the first refusal on, at least `rate × T − burst`.

/// Nanoseconds per second: credit is kept in bit·ns/s units ("nano-bits") so integer refill is
/// exact for any rate.
const NANOS_PER_SEC: i128 = 1_000_000_000;

/// Standard maximum frame (1500 MTU + header + FCS), the unit of the minimum burst.
pub const STD_FRAME_BYTES: u64 = 1518;
/// The minimum burst: two standard frames.
pub const MIN_BURST_BITS: u64 = 2 * STD_FRAME_BYTES * 8;
/// The burst window: five milliseconds of traffic at the shaped rate. Large against the wake-up
/// lateness of a timer thread on a loaded host, small against the intervals rates are measured
/// over (iperf3 reports per second).
pub const BURST_WINDOW_NS: u64 = 5_000_000;

/// The earliest time (ns on the caller's clock) at which the refused frame will be admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct NextSendAt(pub u64);

/// A token bucket of `burst_bits` filling at `rate_bps`. Starts full at its first use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    rate_bps: u64,
    burst_bits: u64,
    /// Credit in nano-bits; negative after a frame larger than the burst.
    tokens: i128,
    /// Clock of the last refill; `None` until first use.
    last_ns: Option<u64>,
}

impl TokenBucket {
    /// A bucket with the default burst for `rate_bps`.
    pub fn new(rate_bps: u64) -> TokenBucket {
        TokenBucket::with_burst(rate_bps, TokenBucket::default_burst_bits(rate_bps))
    }

    /// A bucket with an explicit burst (at least one bit).
    pub fn with_burst(rate_bps: u64, burst_bits: u64) -> TokenBucket {
        let burst_bits = burst_bits.max(1);
        TokenBucket {
            rate_bps,
            burst_bits,
            tokens: i128::from(burst_bits) * NANOS_PER_SEC,
            last_ns: None,
        }
    }

    /// `max(2 × 1518 bytes, rate × 5 ms)` in bits.
    pub fn default_burst_bits(rate_bps: u64) -> u64 {
        let window = u128::from(rate_bps) * u128::from(BURST_WINDOW_NS) / NANOS_PER_SEC as u128;
        MIN_BURST_BITS.max(u64::try_from(window).unwrap_or(u64::MAX))
    }

    pub fn rate_bps(&self) -> u64 {
        self.rate_bps
    }

    pub fn burst_bits(&self) -> u64 {
        self.burst_bits
    }

    /// Changes the rate (and resets the burst to the default for it), keeping the credit earned
    /// so far up to the new burst.
    pub fn set_rate(&mut self, rate_bps: u64) {
        self.rate_bps = rate_bps;
        self.burst_bits = TokenBucket::default_burst_bits(rate_bps);
        self.tokens = self.tokens.min(self.cap());
    }

    fn cap(&self) -> i128 {
        i128::from(self.burst_bits) * NANOS_PER_SEC
    }

    /// Adds the credit earned up to `now_ns`; a clock that goes backwards earns nothing.
    fn refill(&mut self, now_ns: u64) -> u64 {
        let last = *self.last_ns.get_or_insert(now_ns);
        if now_ns <= last {
            return last;
        }
        let earned = i128::from(now_ns - last) * i128::from(self.rate_bps);
        self.tokens = (self.tokens + earned).min(self.cap());
        self.last_ns = Some(now_ns);
        now_ns
    }

    /// Admits a frame of `frame_bits` at `now_ns`, or says when it will be admitted. A rate of 0
    /// means unlimited.
    pub fn try_send(&mut self, now_ns: u64, frame_bits: u64) -> Result<(), NextSendAt> {
        if self.rate_bps == 0 {
            return Ok(());
        }
        let now = self.refill(now_ns);
        // A frame larger than the bucket only needs a full bucket, then goes into debt.
        let need = i128::from(frame_bits.min(self.burst_bits)) * NANOS_PER_SEC;
        if self.tokens >= need {
            self.tokens -= i128::from(frame_bits) * NANOS_PER_SEC;
            return Ok(());
        }
        let deficit = need - self.tokens;
        let rate = i128::from(self.rate_bps);
        let wait = (deficit + rate - 1) / rate;
        let at = i128::from(now) + wait;
        Err(NextSendAt(u64::try_from(at).unwrap_or(u64::MAX)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MBIT: u64 = 1_000_000;

    #[test]
    fn burst_is_two_standard_frames_or_five_milliseconds() {
        assert_eq!(TokenBucket::default_burst_bits(4 * MBIT), 24_288);
        assert_eq!(TokenBucket::default_burst_bits(10 * MBIT), 50_000);
        assert_eq!(TokenBucket::default_burst_bits(1000 * MBIT), 5_000_000);
        assert_eq!(TokenBucket::default_burst_bits(0), 24_288);
    }

    #[test]
    fn full_bucket_passes_the_burst_then_waits_one_frame_time() {
        let mut tb = TokenBucket::new(4 * MBIT);
        let frame = 1518 * 8;
        assert_eq!(tb.try_send(0, frame), Ok(()));
        assert_eq!(tb.try_send(0, frame), Ok(()));
        // Empty: one frame at 4 Mbit/s takes 3036 µs.
        assert_eq!(tb.try_send(0, frame), Err(NextSendAt(3_036_000)));
        assert_eq!(tb.try_send(3_035_999, frame), Err(NextSendAt(3_036_000)));
        assert_eq!(tb.try_send(3_036_000, frame), Ok(()));
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let mut tb = TokenBucket::new(0);
        for _ in 0..1000 {
            assert_eq!(tb.try_send(0, 12_000), Ok(()));
        }
    }

    #[test]
    fn clock_going_backwards_earns_nothing_and_does_not_panic() {
        let mut tb = TokenBucket::with_burst(MBIT, 1000);
        assert_eq!(tb.try_send(1_000_000, 1000), Ok(()));
        let Err(NextSendAt(at)) = tb.try_send(0, 1000) else {
            panic!("empty bucket admitted a frame");
        };
        assert_eq!(at, 2_000_000);
    }

    #[test]
    fn jumbo_frame_larger_than_burst_goes_when_full_and_leaves_debt() {
        let mut tb = TokenBucket::new(MBIT);
        let jumbo = 9018 * 8;
        assert!(tb.burst_bits() < jumbo);
        assert_eq!(tb.try_send(0, jumbo), Ok(()));
        // Debt of (jumbo - burst) plus a full burst must be earned before the next jumbo.
        let Err(NextSendAt(at)) = tb.try_send(0, jumbo) else {
            panic!("jumbo admitted twice");
        };
        assert_eq!(at, jumbo * 1000);
    }

    #[test]
    fn lowering_the_rate_clamps_the_credit() {
        let mut tb = TokenBucket::new(1000 * MBIT);
        tb.try_send(0, 8).unwrap();
        tb.set_rate(4 * MBIT);
        assert_eq!(tb.burst_bits(), MIN_BURST_BITS);
        assert_eq!(tb.try_send(0, MIN_BURST_BITS), Ok(()));
        assert!(tb.try_send(0, 8).is_err());
    }
}
