//! Hostile clients against `serve` in process (real VF functions, real sockets, the real control
//! socket): one client must never wedge its VF, take another VF's resources, or block the admin
//! path. Each test first makes the attack that broke an earlier build.

mod vfio_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use sriov_emu::control::{control_socket, request, Request, CLIENT_DEADLINE};
use sriov_emu::serve::{vf_socket, ServeConfig, Serving};
use sriov_emu::vfio::{region, ClientLimits};
use sriov_emu_tests::workspace_root;
use vfio_support::*;

fn serve_dir(tag: &str) -> PathBuf {
    workspace_root()
        .join("target/e2e/run")
        .join(format!("hardening-{tag}-{}", std::process::id()))
}

fn serve(tag: &str, vfs: u16) -> (Serving, PathBuf) {
    let dir = serve_dir(tag);
    let serving = Serving::start(&dir, &ServeConfig::default(), Some(vfs)).expect("serve");
    (serving, dir)
}

/// The tests count the process's fds and threads: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn show(dir: &Path) -> Value {
    let r = request(dir, &Request::Show { port: None }).expect("ctl show answers");
    assert!(r.ok, "{r:?}");
    r.show.expect("show JSON")
}

fn client_of(show: &Value, vf: usize) -> &Value {
    &show["ports"][0]["vfs"][vf]["client"]
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < until, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A config read on this connection answers (any value: a VF's vendor id reads 0xffff).
fn answers(c: &mut RawClient) {
    let r = c.region_read(region::CONFIG, 0, 4);
    assert!(!r.is_error(), "config read refused: {r:?}");
}

#[test]
fn one_clients_mappings_cannot_take_the_fds_another_vf_needs() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (serving, dir) = serve("maps", 3);
    let limits = ClientLimits::default();
    let before = open_fds();
    let mut hog = RawClient::negotiated(&vf_socket(&dir, 0));
    // What broke an earlier build: ~20,000 mappings, each keeping an fd open in `serve`, until
    // a new client on another VF was closed with "Too many open files". (Each map here has a
    // file of its own: maps of one file share one fd, below.)
    let (mut ok, mut refused) = (0u64, 0u64);
    for i in 0..20_000u64 {
        let p = dma_map_payload(0x1_0000_0000 + i * 0x1000, 0x1000, 0, true);
        let r = hog.call(CMD_DMA_MAP, &p, &[memfd(4096).as_raw_fd()]);
        if r.is_error() {
            assert_eq!(r.error as i32, libc::ENOSPC, "the refusal is ENOSPC");
            refused += 1;
        } else {
            ok += 1;
        }
    }
    assert_eq!(
        ok, limits.fds,
        "maps of distinct files stop at the fd limit"
    );
    assert_eq!(refused, 20_000 - limits.fds);
    // Maps without an fd keep no fd; they stop at the table limit.
    let mut table_ok = 0;
    for i in 0..1000u64 {
        let p = dma_map_payload(0x10_0000_0000 + i * 0x1000, 0x1000, 0, false);
        if !hog.call(CMD_DMA_MAP, &p, &[]).is_error() {
            table_ok += 1;
        }
    }
    assert_eq!(ok + table_ok, limits.dma_maps);
    answers(&mut hog);
    let held = open_fds() - before;
    assert!(
        held as u64 <= limits.fds + 8,
        "the hog makes serve hold {held} fds (limit {})",
        limits.fds
    );

    // Another VF's client is served, and the admin path works. Its maps of one file (QEMU's
    // RAM memfd, sent again with every map, as with a virtual IOMMU) keep one fd.
    let mut other = RawClient::negotiated(&vf_socket(&dir, 1));
    answers(&mut other);
    let ram = memfd(1 << 20);
    for i in 0..100u64 {
        let p = dma_map_payload(i * 0x2000, 0x1000, i * 0x1000, true);
        let r = other.call(CMD_DMA_MAP, &p, &[ram.as_raw_fd()]);
        assert!(!r.is_error(), "map {i} of one file: {r:?}");
    }
    assert_served_quickly(&dir);
    let s = show(&dir);
    let hog_view = client_of(&s, 0);
    assert_eq!(hog_view["held"]["connected"], true);
    assert_eq!(hog_view["held"]["fds"], limits.fds);
    assert_eq!(hog_view["held"]["dma_maps"], limits.dma_maps);
    assert_eq!(hog_view["held"]["mapped_bytes"], limits.dma_maps * 0x1000);
    assert_eq!(
        hog_view["limit_refusals"],
        20_000 - limits.fds + 1000 - table_ok
    );
    assert_eq!(client_of(&s, 1)["held"]["connected"], true);
    assert_eq!(client_of(&s, 1)["held"]["dma_maps"], 100);
    assert_eq!(client_of(&s, 1)["held"]["fds"], 1, "one file, one fd");
    assert_eq!(
        client_of(&s, 1)["held"]["shared_maps"],
        100,
        "each map mmapped"
    );
    assert_eq!(client_of(&s, 1)["held"]["huge_page_maps"], 0);
    let text = request(&dir, &Request::Show { port: None })
        .unwrap()
        .text
        .unwrap();
    assert!(
        text.contains(&format!(
            "client: attached, holds {0}/{0} maps",
            limits.dma_maps
        )),
        "{text}"
    );
    let limit = limits.dma_maps;
    assert!(
        text.contains(&format!("holds 100/{limit} maps (100 shared), ")),
        "{text}"
    );

    // Gone with the client: nothing held, every fd back. The connection's thread releases the
    // maps and their fds, then detaches and resets the function, and only then reports the
    // client gone: wait for both.
    drop(hog);
    eventually("the hog's fds are released and it is gone", || {
        let s = show(&dir);
        let held = &client_of(&s, 0)["held"];
        held["fds"] == 0 && held["connected"] == false
    });
    drop(other);
    eventually("fds back to where they were", || open_fds() <= before + 2);
    serving.shutdown();
}

/// A new client on VF 2 completes the crate client's handshake at once.
fn assert_served_quickly(dir: &Path) {
    let start = Instant::now();
    assert_served(&vf_socket(dir, 2));
    assert!(start.elapsed() < Duration::from_secs(5));
}

/// A request to the control socket, with the time it took.
fn timed_show(dir: &Path) -> Duration {
    let start = Instant::now();
    show(dir);
    start.elapsed()
}

#[test]
fn a_silent_or_dripping_control_client_costs_only_itself() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (serving, dir) = serve("ctl", 1);
    let path = control_socket(&dir);
    // What broke an earlier build: the control socket served one client at a time, so a silent
    // client held up `ctl show` for 5 s, and one byte every 2 s made every other `ctl` fail.
    let _silent = UnixStream::connect(&path).unwrap();
    let mut drip = UnixStream::connect(&path).unwrap();
    let dripping = std::thread::spawn(move || {
        let start = Instant::now();
        // `{"cmd":"show"` ... one byte at a time, never finishing the line.
        for b in br#"{"cmd":"show","port":"pf0"   "#.iter().cycle() {
            if drip.write_all(&[*b]).is_err() {
                return start.elapsed();
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        unreachable!()
    });
    let mut hogs: Vec<UnixStream> = (0..8)
        .map(|_| UnixStream::connect(&path).unwrap())
        .collect();
    for _ in 0..5 {
        let took = timed_show(&dir);
        assert!(
            took < Duration::from_secs(2),
            "ctl show took {took:?} next to stuck clients"
        );
    }
    // The dripping client is cut off at its deadline (writes then fail).
    let cut = dripping.join().unwrap();
    assert!(
        cut >= CLIENT_DEADLINE && cut < CLIENT_DEADLINE + Duration::from_secs(3),
        "the dripping client was cut after {cut:?}"
    );
    // The silent ones too: EOF after the deadline.
    let mut buf = [0u8; 16];
    hogs[0].set_read_timeout(Some(CLIENT_DEADLINE * 2)).unwrap();
    assert_eq!(hogs[0].read(&mut buf).unwrap_or(0), 0);
    // Garbage and an oversized line get an error or a close, never an answer for someone else.
    let mut junk = UnixStream::connect(&path).unwrap();
    junk.write_all(b"\x00\xff not json\n").unwrap();
    let mut line = String::new();
    BufReader::new(junk.try_clone().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.contains("\"ok\":false") && line.contains("bad request"),
        "{line}"
    );
    let mut big = UnixStream::connect(&path).unwrap();
    let _ = big.write_all(&vec![b'x'; 200 * 1024]);
    big.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = String::new();
    let _ = BufReader::new(big.try_clone().unwrap()).read_line(&mut answer);
    assert!(
        answer.contains("\"ok\":false") && answer.contains("request longer than 65536 bytes"),
        "{answer}"
    );
    assert_eq!(big.read(&mut buf).unwrap_or(0), 0, "then closed");
    // The last request without its newline is answered when the client shuts its side down,
    // and blank lines are skipped, not errors.
    let mut last = UnixStream::connect(&path).unwrap();
    last.write_all(b"\n\n{\"cmd\":\"show\"}").unwrap();
    last.shutdown(std::net::Shutdown::Write).unwrap();
    last.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut replies = String::new();
    let _ = last.read_to_string(&mut replies);
    assert_eq!(replies.lines().count(), 1, "{replies}");
    assert!(replies.contains("\"ok\":true"), "{replies}");
    assert!(timed_show(&dir) < Duration::from_secs(2));
    hogs.clear();
    // Shutdown does not wait for connected control clients.
    let _lingering = UnixStream::connect(&path).unwrap();
    let start = Instant::now();
    serving.shutdown();
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}",
        start.elapsed()
    );
}

/// With a virtual IOMMU the guest's DMA addresses come and go. A VF whose ring points at an
/// IOVA the client has unmapped must not write there (nor anywhere else of the client's), and
/// the failed access is counted on that VF.
#[test]
fn a_ring_at_an_unmapped_iova_is_never_written_and_counted_on_its_vf() {
    use model::function::i82576::regs::{self, q};
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = serve_dir("iova");
    let config: ServeConfig =
        toml::from_str("vfs = 2\n[vf]\n0 = \"mac 02:00:00:00:00:10\"\n").unwrap();
    let serving = Serving::start(&dir, &config, None).expect("serve");
    let mut c = RawClient::negotiated(&vf_socket(&dir, 0));
    let ram = memfd(1 << 20);
    let ring_iova = 0x10_0000u64;
    let map = dma_map_payload(ring_iova, 1 << 20, 0, true);
    assert!(!c.call(CMD_DMA_MAP, &map, &[ram.as_raw_fd()]).is_error());
    // Bus master on; RX queue 0: a 4 KiB ring at the IOVA, enabled, buffers "posted".
    let cmd = P::default()
        .u64(4)
        .u32(region::CONFIG)
        .u32(2)
        .bytes(&[0x06, 0x00])
        .0;
    assert!(!c.call(CMD_REGION_WRITE, &cmd, &[]).is_error());
    for (reg, v) in [
        (q::DBAL, ring_iova as u32),
        (q::DBAH, 0),
        (q::DLEN, 4096),
        (q::DCTL, regs::dctl::ENABLE),
        (q::DT, 16),
    ] {
        c.region_write(0, regs::RX_BASE + reg, &v.to_le_bytes(), true);
    }
    answers(&mut c);
    // The client takes the ring's memory away; a frame for the VF arrives from the wire.
    let unmap = P::default().u32(32).u32(0).u64(ring_iova).u64(1 << 20).0;
    assert!(!c.call(CMD_DMA_UNMAP, &unmap, &[]).is_error());
    let mut frame = vec![0u8; 60];
    frame[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x10]);
    frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x99]);
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    serving
        .nic()
        .inject(eswitch::PortId::Uplink(0), bytes::Bytes::from(frame));
    let s = show(&dir);
    let dev = &s["ports"][0]["vfs"][0]["device"];
    assert_eq!(dev["dma_errors"], 1, "{dev}");
    assert_eq!(dev["rx_packets"], 0, "{dev}");
    assert_eq!(s["ports"][0]["vfs"][1]["device"]["dma_errors"], 0);
    assert!(
        pread(&ram, 0, 1 << 20).iter().all(|&b| b == 0),
        "nothing written into the client's memory"
    );
    answers(&mut c);
    drop(c);
    serving.shutdown();
}
