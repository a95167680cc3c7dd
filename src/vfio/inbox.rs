//! A connection's read-ahead: one `recvmsg` takes every message that waits on the socket (a
//! nap's worth of posted register writes, say), not two syscalls per message (header, then
//! payload), and the fds that came with them are handed to the message they belong to.
//!
//! Which message an fd belongs to: a client sends each message with one `sendmsg`, its fds
//! attached, so the kernel queues them on the first buffer (`skb`) of that message. A stream
//! read joins buffers, but stops after the first one that carries fds
//! (`unix_stream_read_generic`), and takes those fds when it first touches that buffer. So the
//! fds one read returns belong to the last message that starts among the bytes it returned.
//! Fds sent with no message starting in their read (a client that attaches them to a later
//! part of a message) belong to none: they are closed, as a plain `read` would have closed
//! them.

use std::collections::VecDeque;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

use tracing::debug;

use super::scm;
use super::wire::{self, Header, HEADER_SIZE};

/// What the buffer holds: about a hundred posted register writes. It grows to hold a larger
/// message whole, and shrinks back once that is handled (a connection per VF keeps one).
const READ_AHEAD: usize = 4096;

/// The fds one read returned, and where its bytes lie in the stream.
struct Arrival {
    /// Stream offsets of the read's first byte and one past its last.
    from: u64,
    to: u64,
    fds: Vec<OwnedFd>,
    /// More fds came than the read had room for (the kernel closed the rest).
    truncated: bool,
}

/// The fds that came with a message.
pub(crate) enum Fds {
    Got(Vec<OwnedFd>),
    /// More than [`wire::MAX_MSG_FDS`]: all closed, the message is refused.
    TooMany,
}

/// Bytes read from the socket and not yet consumed, `buf[start..end]`, the first of them at
/// stream offset `base + start`. The buffer is allocated at the first read.
#[derive(Default)]
pub(crate) struct Inbox {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    base: u64,
    /// Fds not yet handed to a message, oldest first.
    arrivals: VecDeque<Arrival>,
}

impl Inbox {
    /// Bytes buffered.
    pub(crate) fn len(&self) -> usize {
        self.end - self.start
    }

    /// The header of the next message, once its bytes are buffered.
    pub(crate) fn header(&self) -> Option<Header> {
        let b: &[u8; HEADER_SIZE] = self
            .buf
            .get(self.start..self.start + HEADER_SIZE)?
            .try_into()
            .ok()?;
        Some(Header::parse(b))
    }

    /// Makes room for a message of `size` bytes (within [`wire::MAX_MESSAGE_SIZE`]) to be
    /// buffered whole from the current position.
    pub(crate) fn reserve(&mut self, size: usize) {
        if self.start + size <= self.buf.len() {
            return;
        }
        self.buf.copy_within(self.start..self.end, 0);
        self.base += self.start as u64;
        self.end -= self.start;
        self.start = 0;
        if self.buf.len() < size {
            self.buf.resize(size, 0);
        }
    }

    /// One `recvmsg` into the free space (which the caller made with [`Inbox::reserve`], or
    /// which is made here when the buffer is full). `Ok(0)`: end of stream.
    pub(crate) fn fill(&mut self, sock: &UnixStream, dontwait: bool) -> io::Result<usize> {
        if self.buf.len() < READ_AHEAD {
            self.buf.resize(READ_AHEAD, 0);
        }
        if self.end == self.buf.len() {
            self.reserve(self.len() + HEADER_SIZE);
            if self.end == self.buf.len() {
                let grown = self.buf.len() + READ_AHEAD;
                self.buf.resize(grown, 0);
            }
        }
        // Room for one more fd than a message may carry, to see that more came.
        let r = scm::recv(
            sock,
            &mut self.buf[self.end..],
            wire::MAX_MSG_FDS + 1,
            dontwait,
        )?;
        let from = self.base + self.end as u64;
        self.end += r.len;
        // Fds in a read that lies inside the message being read (after its first byte, before
        // the earliest place the next can start) can belong to no message: closed now, so that
        // a client sending its bytes one at a time, each with fds, makes us hold none of them.
        let at = self.base + self.start as u64;
        let size = self
            .header()
            .map_or(HEADER_SIZE, |h| (h.size as usize).max(HEADER_SIZE));
        if from > at && from + r.len as u64 <= at + size as u64 {
            if !r.fds.is_empty() {
                debug!(fds = r.fds.len(), "fds sent inside a message: closed");
            }
        } else if !r.fds.is_empty() || r.truncated {
            self.arrivals.push_back(Arrival {
                from,
                to: from + r.len as u64,
                fds: r.fds,
                truncated: r.truncated,
            });
        }
        Ok(r.len)
    }

    /// The fds of the next message, `size` bytes long: those of the read its first byte came
    /// in, if no other message starts among that read's bytes after it. Fds of reads in which
    /// no message started are closed.
    pub(crate) fn take_fds(&mut self, size: usize) -> Fds {
        let at = self.base + self.start as u64;
        while let Some(a) = self.arrivals.front() {
            if a.to > at {
                break;
            }
            debug!(
                fds = a.fds.len(),
                "fds that came with no message's start: closed"
            );
            self.arrivals.pop_front();
        }
        let ours = self
            .arrivals
            .front()
            .is_some_and(|a| a.from <= at && at + size as u64 >= a.to);
        if !ours {
            return Fds::Got(Vec::new());
        }
        let Some(a) = self.arrivals.pop_front() else {
            return Fds::Got(Vec::new());
        };
        if a.truncated || a.fds.len() > wire::MAX_MSG_FDS {
            Fds::TooMany
        } else {
            Fds::Got(a.fds)
        }
    }

    /// Fds held for messages not yet read.
    #[cfg(test)]
    fn held_fds(&self) -> usize {
        self.arrivals.iter().map(|a| a.fds.len()).sum()
    }

    /// The next message's bytes, `size` of them (all buffered).
    pub(crate) fn message(&self, size: usize) -> &[u8] {
        &self.buf[self.start..self.start + size]
    }

    /// Consumes the next `size` bytes (all buffered).
    pub(crate) fn consume(&mut self, size: usize) {
        self.start += size;
        if self.start == self.end {
            self.base += self.start as u64;
            self.start = 0;
            self.end = 0;
            if self.buf.len() > READ_AHEAD {
                self.buf.truncate(READ_AHEAD);
                self.buf.shrink_to_fit();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use vmm_sys_util::sock_ctrl_msg::ScmSocket;

    use super::*;

    /// A message of `size` bytes (a header saying so, then filler).
    fn message(id: u16, size: usize) -> Vec<u8> {
        let mut m = vec![0xA5u8; size];
        m[0..2].copy_from_slice(&id.to_le_bytes());
        m[4..8].copy_from_slice(&(size as u32).to_le_bytes());
        m
    }

    fn files(n: usize) -> Vec<std::fs::File> {
        (0..n)
            .map(|_| std::fs::File::open("/dev/null").unwrap())
            .collect()
    }

    /// Reads every message waiting: (id, size, fds or None for too many).
    fn drain(inbox: &mut Inbox, sock: &UnixStream) -> Vec<(u16, usize, Option<usize>)> {
        let mut out = Vec::new();
        loop {
            while inbox.len() < HEADER_SIZE {
                match inbox.fill(sock, true) {
                    Ok(0) => return out,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return out,
                    Err(e) => panic!("{e}"),
                }
            }
            let h = inbox.header().unwrap();
            let size = h.size as usize;
            let fds = inbox.take_fds(size);
            inbox.reserve(size);
            while inbox.len() < size {
                assert!(inbox.fill(sock, false).unwrap() > 0, "EOF inside a message");
            }
            assert_eq!(inbox.message(size).len(), size);
            inbox.consume(size);
            out.push((
                h.id,
                size,
                match fds {
                    Fds::Got(f) => Some(f.len()),
                    Fds::TooMany => None,
                },
            ));
        }
    }

    #[test]
    fn messages_glued_in_one_read_each_get_their_own_fds() {
        let (a, b) = UnixStream::pair().unwrap();
        let f = files(3);
        a.send_with_fds(&[&message(1, 40)[..]], &[]).unwrap();
        a.send_with_fds(&[&message(2, 24)[..]], &[f[0].as_raw_fd()])
            .unwrap();
        a.send_with_fds(&[&message(3, 16)[..]], &[]).unwrap();
        a.send_with_fds(
            &[&message(4, 32)[..]],
            &[f[1].as_raw_fd(), f[2].as_raw_fd()],
        )
        .unwrap();
        a.send_with_fds(&[&message(5, 16)[..]], &[]).unwrap();
        let mut inbox = Inbox::default();
        assert_eq!(
            drain(&mut inbox, &b),
            [
                (1, 40, Some(0)),
                (2, 24, Some(1)),
                (3, 16, Some(0)),
                (4, 32, Some(2)),
                (5, 16, Some(0))
            ]
        );
    }

    #[test]
    fn a_message_larger_than_the_buffer_is_read_whole() {
        let (a, b) = UnixStream::pair().unwrap();
        let big = message(7, 3 * READ_AHEAD + 5);
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            (&a).write_all(&message(6, 20)).unwrap();
            (&a).write_all(&big).unwrap();
            (&a).write_all(&message(8, 16)).unwrap();
        });
        let mut inbox = Inbox::default();
        let mut got = Vec::new();
        while got.len() < 3 {
            got.extend(drain(&mut inbox, &b));
        }
        writer.join().unwrap();
        assert_eq!(
            got,
            [
                (6, 20, Some(0)),
                (7, 3 * READ_AHEAD + 5, Some(0)),
                (8, 16, Some(0))
            ]
        );
    }

    #[test]
    fn fds_sent_with_a_later_part_of_a_message_go_with_it_or_with_nobody() {
        let (a, b) = UnixStream::pair().unwrap();
        let f = files(2);
        let mut inbox = Inbox::default();
        // The rest of message 1 comes in a second sendmsg with an fd, before the first part
        // was read: one read returns both, and message 1 starts in it.
        let m1 = message(1, 64);
        a.send_with_fds(&[&m1[..HEADER_SIZE]], &[]).unwrap();
        a.send_with_fds(&[&m1[HEADER_SIZE..]], &[f[0].as_raw_fd()])
            .unwrap();
        assert_eq!(drain(&mut inbox, &b), [(1, 64, Some(1))]);
        // After the first part was read: no message starts in the read that brings the fd,
        // which is closed; message 2 still comes whole, without it.
        let m2 = message(2, 64);
        a.send_with_fds(&[&m2[..32]], &[]).unwrap();
        assert_eq!(inbox.fill(&b, true).unwrap(), 32);
        a.send_with_fds(&[&m2[32..]], &[f[1].as_raw_fd()]).unwrap();
        a.send_with_fds(&[&message(3, 16)[..]], &[]).unwrap();
        assert_eq!(drain(&mut inbox, &b), [(2, 64, Some(0)), (3, 16, Some(0))]);
    }

    #[test]
    fn fds_sent_with_each_byte_of_a_message_are_closed_at_once() {
        let (a, b) = UnixStream::pair().unwrap();
        let f = files(1);
        let m = message(1, 200);
        let mut inbox = Inbox::default();
        a.send_with_fds(&[&m[..HEADER_SIZE]], &[]).unwrap();
        assert_eq!(inbox.fill(&b, true).unwrap(), HEADER_SIZE);
        for byte in &m[HEADER_SIZE..] {
            a.send_with_fds(&[std::slice::from_ref(byte)], &[f[0].as_raw_fd()])
                .unwrap();
            assert_eq!(inbox.fill(&b, true).unwrap(), 1);
            assert_eq!(inbox.held_fds(), 0);
        }
        a.send_with_fds(&[&message(2, 16)[..]], &[f[0].as_raw_fd()])
            .unwrap();
        assert_eq!(drain(&mut inbox, &b), [(1, 200, Some(0)), (2, 16, Some(1))]);
    }

    #[test]
    fn more_fds_than_a_message_may_carry_refuse_that_message_only() {
        let (a, b) = UnixStream::pair().unwrap();
        let f = files(wire::MAX_MSG_FDS + 2);
        let raw: Vec<i32> = f.iter().map(|f| f.as_raw_fd()).collect();
        a.send_with_fds(&[&message(1, 16)[..]], &[]).unwrap();
        a.send_with_fds(&[&message(2, 16)[..]], &raw).unwrap();
        a.send_with_fds(&[&message(3, 16)[..]], &raw[..1]).unwrap();
        let mut inbox = Inbox::default();
        assert_eq!(
            drain(&mut inbox, &b),
            [(1, 16, Some(0)), (2, 16, None), (3, 16, Some(1))]
        );
    }
}
