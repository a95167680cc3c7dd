//! What the host charges for waking a thread: the floor under `serve`'s CPU per vfio-user
//! message, and so under its CPU per packet.
//!
//! Every posted register write QEMU sends reaches a `serve` connection thread that is either
//! asleep in `recvmsg` (and must be woken) or busy polling for it; every moderation timer that
//! fires and every interrupt QEMU's I/O thread injects is another wakeup. This bench measures,
//! with nothing of the emulator in the way:
//!
//! - a timer wakeup: one thread sleeping 100 µs at a time;
//! - a socket hand-off: two threads passing one byte back and forth over a UNIX stream pair,
//!   each asleep in `read` until the other writes (the shape of QEMU's posted write reaching a
//!   sleeping connection thread);
//! - the same hand-off with the reader polling the socket without sleeping (non-blocking reads
//!   and `sched_yield` between them, as `serve --busy-poll-us` does);
//! - a stream of posted writes taken in naps: one thread writing a 36-byte message (the size
//!   of QEMU's posted REGION_WRITE of a 32-bit register) every 100 µs, each its own `write`,
//!   and the other sleeping 1 ms at a time and then reading whatever waits until the socket is
//!   empty, as a `serve` connection does while a TCP stream runs; the line gives the reading
//!   thread's CPU per message: the price of receiving the client's messages at all;
//! - an interrupt: a write to an eventfd that a thread waits on in `poll` (as QEMU's thread
//!   that injects a vfio-user device's interrupts waits on the eventfds `serve` writes), every
//!   500 µs; the write alone is timed by the writing thread's CPU clock, so the line gives what
//!   `serve` pays for each interrupt it raises, and what the woken thread pays; and the same
//!   write with nobody waiting.
//!
//! Each line gives wakeups (or messages) per second and the CPU time each one cost its threads.
//!
//! ```sh
//! cargo bench -p sriov-emu-tests --bench host_wake
//! ```

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::{Duration, Instant};

/// How long each measurement runs.
const RUN: Duration = Duration::from_secs(3);

/// CPU time the calling thread has used so far (user + system).
fn thread_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given; CLOCK_THREAD_CPUTIME_ID names
    // this thread's CPU clock, precise enough to time one call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// A thread sleeping `period` at a time for [`RUN`]: (wakeups, its CPU time).
fn timer(period: Duration) -> (u64, Duration) {
    thread::spawn(move || {
        let start = Instant::now();
        let cpu = thread_cpu();
        let mut wakeups = 0;
        while start.elapsed() < RUN {
            thread::sleep(period);
            wakeups += 1;
        }
        (wakeups, thread_cpu() - cpu)
    })
    .join()
    .expect("timer thread")
}

/// One byte to and fro between two threads for [`RUN`]; the echoing side reads blocking, the
/// other one blocking or, with `poll`, non-blocking with a yield between looks. Returns the
/// messages that crossed (both ways) and the CPU time of both threads.
fn handoff(poll: bool) -> (u64, Duration) {
    let (mut a, mut b) = UnixStream::pair().expect("socketpair");
    let echo = thread::spawn(move || {
        let cpu = thread_cpu();
        let mut byte = [0u8; 1];
        while b.read_exact(&mut byte).is_ok() && byte[0] != 0 {
            if b.write_all(&byte).is_err() {
                break;
            }
        }
        thread_cpu() - cpu
    });
    if poll {
        a.set_nonblocking(true).expect("non-blocking");
    }
    let cpu = thread_cpu();
    let start = Instant::now();
    let mut round_trips = 0u64;
    let mut byte = [1u8; 1];
    while start.elapsed() < RUN {
        write_all_retrying(&mut a, &[1]);
        loop {
            match a.read(&mut byte) {
                Ok(1) => break,
                Ok(_) => panic!("echo thread closed its end"),
                Err(e) if e.kind() == ErrorKind::WouldBlock => thread::yield_now(),
                Err(e) => panic!("read: {e}"),
            }
        }
        round_trips += 1;
    }
    let mine = thread_cpu() - cpu;
    write_all_retrying(&mut a, &[0]);
    let theirs = echo.join().expect("echo thread");
    (round_trips * 2, mine + theirs)
}

/// A writer posting [`POSTED_WRITE_LEN`]-byte messages every 100 µs for [`RUN`], and a reader
/// that sleeps 1 ms, then reads non-blocking until the socket is empty. Returns the messages
/// read and the reader's CPU time.
fn posted_stream() -> (u64, Duration) {
    let (mut a, mut b) = UnixStream::pair().expect("socketpair");
    b.set_nonblocking(true).expect("non-blocking");
    let writer = thread::spawn(move || {
        let start = Instant::now();
        let msg = [0x5au8; POSTED_WRITE_LEN];
        while start.elapsed() < RUN {
            write_all_retrying(&mut a, &msg);
            thread::sleep(Duration::from_micros(100));
        }
    });
    let cpu = thread_cpu();
    let mut buf = vec![0u8; 64 * 1024];
    let mut bytes = 0usize;
    let mut open = true;
    while open {
        thread::sleep(Duration::from_millis(1));
        loop {
            match b.read(&mut buf) {
                Ok(0) => {
                    open = false;
                    break;
                }
                Ok(n) => bytes += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("read: {e}"),
            }
        }
    }
    let cpu = thread_cpu() - cpu;
    writer.join().expect("writer thread");
    ((bytes / POSTED_WRITE_LEN) as u64, cpu)
}

/// A posted REGION_WRITE of one 32-bit register as QEMU sends it: the 16-byte header, the
/// 16-byte offset/region/count, the 4 bytes of data.
const POSTED_WRITE_LEN: usize = 36;

/// An eventfd written every 500 µs for [`RUN`], with a thread waiting for it in `poll` (and
/// reading it) when `waiter`. Returns the writes, the CPU the writes themselves took, and the
/// waiting thread's CPU.
fn eventfd_writes(waiter: bool) -> (u64, Duration, Duration) {
    // SAFETY: eventfd(2) takes two integers and returns a new fd or -1.
    let raw = unsafe { libc::eventfd(0, 0) };
    assert!(raw >= 0, "eventfd: {}", std::io::Error::last_os_error());
    // SAFETY: `raw` is a new fd nothing else owns; `fd` closes it after both threads are done.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = done.clone();
    let reader = waiter.then(|| {
        thread::spawn(move || {
            let cpu = thread_cpu();
            let mut pfd = libc::pollfd {
                fd: raw,
                events: libc::POLLIN,
                revents: 0,
            };
            let mut counter = [0u8; 8];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // SAFETY: one pollfd, and an 8-byte read into an 8-byte buffer, on our fd.
                unsafe {
                    if libc::poll(&mut pfd, 1, 100) > 0 {
                        libc::read(raw, counter.as_mut_ptr().cast(), 8);
                    }
                }
            }
            thread_cpu() - cpu
        })
    });
    let start = Instant::now();
    let (mut writes, mut in_writes) = (0u64, Duration::ZERO);
    while start.elapsed() < RUN {
        thread::sleep(Duration::from_micros(500));
        let before = thread_cpu();
        // SAFETY: an 8-byte write from an 8-byte buffer to our eventfd.
        let n = unsafe { libc::write(raw, 1u64.to_ne_bytes().as_ptr().cast(), 8) };
        in_writes += thread_cpu() - before;
        assert_eq!(n, 8, "eventfd write");
        writes += 1;
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let woken = reader.map_or(Duration::ZERO, |r| r.join().expect("waiting thread"));
    drop(fd);
    (writes, in_writes, woken)
}

fn write_all_retrying(s: &mut UnixStream, data: &[u8]) {
    loop {
        match s.write_all(data) {
            Ok(()) => return,
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::yield_now(),
            Err(e) => panic!("write: {e}"),
        }
    }
}

fn report(what: &str, count: u64, cpu: Duration) {
    let per_second = count as f64 / RUN.as_secs_f64();
    let per_event = cpu.as_secs_f64() * 1e6 / count.max(1) as f64;
    println!("{what:<58} {per_second:>9.0}/s  {per_event:>6.1} µs CPU each");
}

fn main() {
    let cpus = thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "host wakeups: {cpus} CPUs; each line runs {} s",
        RUN.as_secs()
    );
    let (n, cpu) = timer(Duration::from_micros(100));
    report(
        "timer: a thread sleeping 100 µs at a time (wakeups)",
        n,
        cpu,
    );
    let (n, cpu) = handoff(false);
    report(
        "socket hand-off, both threads asleep in read (messages)",
        n,
        cpu,
    );
    let (n, cpu) = handoff(true);
    report("socket hand-off, one side polling (messages)", n, cpu);
    let (n, cpu) = posted_stream();
    report(
        "posted writes every 100 µs, read after 1 ms naps (messages)",
        n,
        cpu,
    );
    let (n, writes, woken) = eventfd_writes(true);
    report(
        "interrupt: eventfd write waking a thread in poll (writer)",
        n,
        writes,
    );
    report("interrupt: the same, the woken thread", n, woken);
    let (n, writes, _) = eventfd_writes(false);
    report(
        "interrupt: eventfd write with nobody waiting (writer)",
        n,
        writes,
    );
}
