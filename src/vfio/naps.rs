//! How a connection whose socket is empty looks for its client's next message: awake for a
//! while, then napping with a sleep between looks that adapts to the client's pace. The policy
//! alone; the connection carries it out (`Connection::look_for_next_message`).

use std::time::Duration;

/// The shortest sleep between two looks while napping (the kernel rounds it up: about 140 µs
/// on the project's CI machine): where a connection starts, and where it settles while its
/// client's messages are sparse.
pub(crate) const NAP_STEP_MIN: Duration = Duration::from_micros(50);
/// The longest: where a connection settles while every look finds a message (a stream of
/// posted writes, as in a TCP transfer), batching them. A tail write waits up to this long
/// before its frames go out, and the guest's TCP keeps only about a millisecond of a socket's
/// pacing rate (at least two packets) in its qdisc and driver (`tcp_small_queue_check`): a
/// longer sleep lets a fast sender run dry and its vCPU idle. At 2 ms, on a host whose guest
/// sends over 1 Gbit/s, the vCPU was 88-99 % busy against 100-101 % at 1 ms, and 1 ms moved
/// 25 % more (medians of 8 alternating pairs, 1308 against 1043 Mbit/s) at 4 % more `serve`
/// CPU per packet; on a host with a slower guest (whose two packets last longer) 2 ms had
/// given the same throughput for 30 % less CPU. At 4 ms the throughput halved. The frames of
/// a tail write held back this long fit a receiving ring of 256 descriptors and the VF's
/// backlog of as many frames up to 6 Gbit/s.
pub(crate) const NAP_STEP_MAX: Duration = Duration::from_micros(1000);

/// The sleep between looks, and whether the client waits on the message served last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Naps {
    /// The current sleep between looks ([`NAP_STEP_MIN`]..=[`NAP_STEP_MAX`]).
    step: Duration,
    /// The last message served was one the client waits on (a reply went out).
    replied: bool,
}

/// What one look for the next message may spend: awake, then napping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Look {
    /// Looking awake, yielding the core between looks.
    pub spin: Duration,
    /// Then looking with a sleep of [`Naps::step`] before each look.
    pub nap: Duration,
}

impl Naps {
    pub(crate) fn new() -> Naps {
        Naps {
            step: NAP_STEP_MIN,
            replied: false,
        }
    }

    /// The sleep before each look while napping.
    pub(crate) fn step(&self) -> Duration {
        self.step
    }

    /// A message was served. A client that waits for the reply (a register read stalls the
    /// vCPU that made it) may send its next message as soon as it has the answer, and that
    /// must not wait out a sleep grown long on posted writes: the next look busy-polls and
    /// then leaves the connection to wait on its socket, and the sleep starts again at its
    /// shortest. Naps of the shortest step after every read would cost a timer wakeup each
    /// 50 µs while the client reads on.
    pub(crate) fn served(&mut self, replied: bool) {
        self.replied = replied;
        if replied {
            self.step = NAP_STEP_MIN;
        }
    }

    /// The socket was found empty: what this look may spend, of `busy_poll` awake and
    /// `nap_poll` napping. The busy poll runs only at the shortest sleep (messages sparse); no
    /// nap right after a reply.
    pub(crate) fn look(&mut self, busy_poll: Duration, nap_poll: Duration) -> Look {
        let nap = if std::mem::take(&mut self.replied) {
            Duration::ZERO
        } else {
            nap_poll
        };
        let spin = if self.step == NAP_STEP_MIN {
            busy_poll
        } else {
            Duration::ZERO
        };
        Look { spin, nap }
    }

    /// A look after a sleep found a message: the next sleep doubles, up to [`NAP_STEP_MAX`].
    pub(crate) fn found(&mut self) {
        self.step = (self.step * 2).min(NAP_STEP_MAX);
    }

    /// A look after a sleep found nothing: the next sleep halves, down to [`NAP_STEP_MIN`].
    pub(crate) fn missed(&mut self) {
        self.step = (self.step / 2).max(NAP_STEP_MIN);
    }

    /// Nothing came for the whole look: a stream ended, and the next message starts afresh.
    pub(crate) fn silence(&mut self) {
        self.step = NAP_STEP_MIN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUSY: Duration = Duration::from_micros(50);
    const NAP: Duration = Duration::from_micros(4000);

    /// Naps grown to their longest sleep by a stream of posted writes, each found after one.
    fn streaming() -> Naps {
        let mut n = Naps::new();
        for _ in 0..8 {
            n.served(false);
            let _ = n.look(BUSY, NAP);
            n.found();
        }
        assert_eq!(n.step(), NAP_STEP_MAX);
        n
    }

    #[test]
    fn a_fresh_connection_busy_polls_then_naps_at_the_shortest_sleep() {
        let mut n = Naps::new();
        assert_eq!(n.step(), NAP_STEP_MIN);
        assert_eq!(
            n.look(BUSY, NAP),
            Look {
                spin: BUSY,
                nap: NAP
            }
        );
    }

    #[test]
    fn after_a_reply_the_next_look_busy_polls_and_does_not_nap_even_mid_stream() {
        let mut n = streaming();
        n.served(true);
        assert_eq!(
            n.step(),
            NAP_STEP_MIN,
            "the sleep starts again at its shortest"
        );
        assert_eq!(
            n.look(BUSY, NAP),
            Look {
                spin: BUSY,
                nap: Duration::ZERO
            },
            "then the socket's wait"
        );
        // Only that look: once it found the socket empty too, the next one naps again.
        assert_eq!(n.look(BUSY, NAP).nap, NAP);
    }

    #[test]
    fn a_posted_write_keeps_a_grown_sleep_and_its_look_skips_the_busy_poll() {
        let mut n = streaming();
        n.served(false);
        assert_eq!(n.step(), NAP_STEP_MAX);
        assert_eq!(
            n.look(BUSY, NAP),
            Look {
                spin: Duration::ZERO,
                nap: NAP
            }
        );
    }

    #[test]
    fn the_sleep_doubles_on_a_find_halves_on_a_miss_and_resets_on_silence() {
        let mut n = Naps::new();
        n.found();
        assert_eq!(n.step(), NAP_STEP_MIN * 2);
        n.found();
        n.missed();
        assert_eq!(n.step(), NAP_STEP_MIN * 2);
        for _ in 0..8 {
            n.missed();
        }
        assert_eq!(n.step(), NAP_STEP_MIN, "never below the shortest");
        let mut n = streaming();
        n.found();
        assert_eq!(n.step(), NAP_STEP_MAX, "never above the longest");
        n.silence();
        assert_eq!(n.step(), NAP_STEP_MIN);
        assert_eq!(n.look(BUSY, NAP).spin, BUSY);
    }
}
