use std::io::{Read, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use eswitch::PortId;
use model::{MonotonicClock, Nic, NicConfig};
use proptest::prelude::*;

use super::stream::{encode, length_prefix, Decoder, FrameTooLong};
use super::*;

fn cfg(text: &str) -> UplinkConfig {
    toml::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn resolve(text: &str) -> Result<UplinkSpec, UplinkError> {
    cfg(text).resolve()
}

#[test]
fn config_kinds_resolve_to_typed_specs() {
    assert_eq!(resolve("").unwrap(), UplinkSpec::None);
    assert_eq!(
        resolve("kind = \"tap\"\nname = \"tap7\"").unwrap(),
        UplinkSpec::Tap {
            name: "tap7".parse().unwrap()
        }
    );
    assert_eq!(
        resolve("kind = \"stream\"\nlisten = \"127.0.0.1:5555\"").unwrap(),
        UplinkSpec::Stream {
            role: StreamRole::Listen,
            addr: SockAddr::Inet("127.0.0.1:5555".parse().unwrap())
        }
    );
    assert_eq!(
        resolve("kind = \"stream\"\nconnect = \"unix:/run/x.sock\"\nreconnect_ms = 250").unwrap(),
        UplinkSpec::Stream {
            role: StreamRole::Connect {
                reconnect: Duration::from_millis(250)
            },
            addr: SockAddr::Unix("/run/x.sock".into())
        }
    );
    assert_eq!(
        resolve("kind = \"dgram\"\nlocal = \"[::1]:5555\"\nremote = \"[::1]:5556\"").unwrap(),
        UplinkSpec::Dgram {
            local: SockAddr::Inet("[::1]:5555".parse().unwrap()),
            remote: SockAddr::Inet("[::1]:5556".parse().unwrap()),
        }
    );
}

#[test]
fn bad_configs_name_the_field() {
    let err = |text: &str| resolve(text).unwrap_err().to_string();
    assert!(toml::from_str::<UplinkConfig>("kind = \"tap\"\nnmae = \"x\"").is_err());
    assert!(toml::from_str::<UplinkConfig>("kind = \"vde\"").is_err());
    assert_eq!(
        err("kind = \"tap\""),
        "uplink.name is required with kind = \"tap\""
    );
    assert_eq!(
        err("kind = \"tap\"\nname = \"tap0\"\nlisten = \"1.2.3.4:5\""),
        "uplink.listen does not apply to kind = \"tap\""
    );
    assert_eq!(
        err("name = \"tap0\""),
        "uplink.name does not apply to kind = \"none\""
    );
    assert_eq!(
        err("kind = \"stream\"\nlisten = \"127.0.0.1:1\"\nconnect = \"127.0.0.1:2\""),
        "uplink.listen and uplink.connect conflict: give one of them"
    );
    assert_eq!(
        err("kind = \"stream\"\nlisten = \"127.0.0.1:1\"\nreconnect_ms = 5"),
        "uplink.reconnect_ms applies only with uplink.connect"
    );
    assert_eq!(
        err("kind = \"stream\""),
        "uplink.listen or uplink.connect is required with kind = \"stream\""
    );
    assert!(
        err("kind = \"stream\"\nconnect = \"127.0.0.1:1\"\nreconnect_ms = 0")
            .starts_with("uplink.reconnect_ms = \"0\"")
    );
    assert!(err("kind = \"stream\"\nlisten = \"nonsense\"")
        .starts_with("uplink.listen = \"nonsense\": not HOST:PORT or unix:PATH"));
    assert!(err("kind = \"stream\"\nlisten = \"unix:\"").contains("empty UNIX socket path"));
    let long = format!("kind = \"stream\"\nlisten = \"unix:/{}\"", "x".repeat(200));
    assert!(err(&long).contains("at most 107 bytes"));
    assert!(err("kind = \"tap\"\nname = \"a-name-that-is-too-long\"").contains("1..=15 bytes"));
    assert!(err("kind = \"tap\"\nname = \"a/b\"").starts_with("uplink.name = \"a/b\""));
    assert_eq!(
        err("kind = \"dgram\"\nlocal = \"127.0.0.1:1\""),
        "uplink.remote is required with kind = \"dgram\""
    );
    assert!(
        err("kind = \"dgram\"\nlocal = \"127.0.0.1:1\"\nremote = \"unix:/x\"")
            .contains("not of the same address family")
    );
    assert!(
        err("kind = \"dgram\"\nlocal = \"127.0.0.1:1\"\nremote = \"239.1.1.1:5\"")
            .contains("multicast is not supported")
    );
}

#[test]
fn an_uplink_claims_its_tap_listening_address_or_local_address() {
    let claim = |text: &str| resolve(text).unwrap().claim();
    assert_eq!(claim(""), None);
    assert_eq!(
        claim("kind = \"tap\"\nname = \"tap7\""),
        Some(("name", "tap7".into()))
    );
    assert_eq!(
        claim("kind = \"stream\"\nlisten = \"unix:/run/x.sock\""),
        Some(("listen", "unix:/run/x.sock".into()))
    );
    assert_eq!(
        claim("kind = \"dgram\"\nlocal = \"127.0.0.1:5555\"\nremote = \"127.0.0.1:5556\""),
        Some(("local", "127.0.0.1:5555".into()))
    );
    // A client, and a UDP port the kernel picks, take nothing of their own.
    assert_eq!(
        claim("kind = \"stream\"\nconnect = \"127.0.0.1:5555\""),
        None
    );
    assert_eq!(
        claim("kind = \"dgram\"\nlocal = \"127.0.0.1:0\"\nremote = \"127.0.0.1:5556\""),
        None
    );
}

#[test]
fn cli_syntax_maps_onto_the_table() {
    let p = |s: &str| s.parse::<UplinkConfig>();
    assert_eq!(p("none").unwrap(), UplinkConfig::default());
    assert_eq!(
        p("tap:name=tap0").unwrap(),
        cfg("kind = \"tap\"\nname = \"tap0\"")
    );
    assert!(
        p("stream:connect=unix:/run/a,b.sock").is_err(),
        "a comma splits pairs"
    );
    assert_eq!(
        p("stream:connect=127.0.0.1:5555,reconnect_ms=500").unwrap(),
        cfg("kind = \"stream\"\nconnect = \"127.0.0.1:5555\"\nreconnect_ms = 500")
    );
    assert_eq!(
        p("dgram:local=127.0.0.1:1,remote=127.0.0.1:2").unwrap(),
        cfg("kind = \"dgram\"\nlocal = \"127.0.0.1:1\"\nremote = \"127.0.0.1:2\"")
    );
    for bad in [
        "vde:x=1",
        "tap:name",
        "tap:name=a,name=b",
        "tap:colour=red",
        "stream:reconnect_ms=soon",
    ] {
        let e = p(bad).unwrap_err();
        assert!(
            matches!(e, UplinkError::Cli { .. }) && e.to_string().starts_with("--uplink"),
            "{bad}: {e}"
        );
    }
    // Parsed, then checked like the file.
    assert!(matches!(
        p("tap:listen=1.2.3.4:5").unwrap().resolve(),
        Err(UplinkError::NotForKind {
            field: "listen",
            ..
        })
    ));
}

#[test]
fn framing_round_trips_and_splits_anywhere() {
    let frames: Vec<Vec<u8>> = vec![vec![], vec![1; 14], (0..=255).collect(), vec![7; 1514]];
    let mut wire = Vec::new();
    for f in &frames {
        encode(f, &mut wire).unwrap();
    }
    assert_eq!(&wire[..4], &[0, 0, 0, 0]);
    assert_eq!(
        &wire[4..8],
        &[0, 0, 0, 14],
        "big-endian length, prefix not counted"
    );
    assert_eq!(length_prefix(1514).unwrap(), [0, 0, 5, 0xea]);
    for chunk in [1, 2, 3, 5, 4096, wire.len()] {
        let mut d = Decoder::new(MAX_WIRE_FRAME);
        let mut got = Vec::new();
        for c in wire.chunks(chunk) {
            d.push(c, |f| got.push(f.to_vec())).unwrap();
        }
        assert_eq!(got, frames, "chunk {chunk}");
        assert!(!d.mid_frame());
    }
}

#[test]
fn a_length_beyond_the_largest_frame_is_an_error_and_the_decoder_starts_over() {
    let mut d = Decoder::new(100);
    let mut got = Vec::new();
    let err = d
        .push(&[0, 0, 0, 101, 1, 2, 3], |f| got.push(f.to_vec()))
        .unwrap_err();
    assert_eq!(err, FrameTooLong { len: 101, max: 100 });
    assert!(got.is_empty());
    assert!(!d.mid_frame());
    d.push(&[0, 0, 0, 2, 9, 9], |f| got.push(f.to_vec()))
        .unwrap();
    assert_eq!(got, vec![vec![9, 9]]);
    let mut d = Decoder::new(MAX_WIRE_FRAME);
    assert!(d.push(&[0xff, 0xff, 0xff, 0xff], |_| ()).is_err());
}

proptest! {
    /// Whatever bytes a peer sends, in whatever pieces, the decoder neither panics nor hands
    /// back a frame longer than its bound.
    #[test]
    fn arbitrary_streams_never_panic_the_decoder(
        data in proptest::collection::vec(any::<u8>(), 0..4096),
        cuts in proptest::collection::vec(1usize..64, 1..32),
        max in 0usize..2048,
    ) {
        let mut d = Decoder::new(max);
        let mut rest = &data[..];
        let mut i = 0;
        while !rest.is_empty() {
            let n = cuts[i % cuts.len()].min(rest.len());
            i += 1;
            let mut longest = 0;
            let _ = d.push(&rest[..n], |f| longest = longest.max(f.len()));
            prop_assert!(longest <= max);
            rest = &rest[n..];
        }
    }

    /// Every well-framed frame comes back whole and in order, however the stream is cut.
    #[test]
    fn every_well_framed_frame_is_recovered(
        frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20),
        cuts in proptest::collection::vec(1usize..700, 1..16),
    ) {
        let mut wire = Vec::new();
        for f in &frames {
            encode(f, &mut wire).unwrap();
        }
        let mut d = Decoder::new(300);
        let mut got = Vec::new();
        let mut rest = &wire[..];
        let mut i = 0;
        while !rest.is_empty() {
            let n = cuts[i % cuts.len()].min(rest.len());
            i += 1;
            d.push(&rest[..n], |f| got.push(f.to_vec())).unwrap();
            rest = &rest[n..];
        }
        prop_assert_eq!(got, frames);
        prop_assert!(!d.mid_frame());
    }
}

// ----- backends on real sockets, in process -----

fn nic() -> Arc<Nic> {
    let c = NicConfig {
        num_vfs: 1,
        ..NicConfig::default()
    };
    Nic::new(&c, Arc::new(MonotonicClock::new())).unwrap()
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sriov-emu-uplink-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A broadcast ARP-sized frame from source MAC `02:..:src`.
fn broadcast(src: u8) -> Bytes {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, src, 0x08, 0x06]);
    f.resize(60, 0);
    Bytes::from(f)
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn link_up(nic: &Nic) -> bool {
    nic.with_pf(|pf| pf.switch().link_up())
}

#[test]
fn stream_server_carries_frames_both_ways_and_resets_a_peer_with_a_bad_prefix() {
    let dir = tmp("stream");
    let sock = dir.join("up.sock");
    let nic = nic();
    let spec = UplinkSpec::Stream {
        role: StreamRole::Listen,
        addr: SockAddr::Unix(sock.clone()),
    };
    let up = Uplink::start(&nic, PortId::Uplink(0), &spec)
        .unwrap()
        .unwrap();
    assert!(!link_up(&nic), "no peer: link down");
    assert!(!up.report().carrier);

    let mut peer = UnixStream::connect(&sock).unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    wait_until("carrier", || link_up(&nic));
    // A second peer is refused while the first is connected.
    let mut second = UnixStream::connect(&sock).unwrap();
    second
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(second.read(&mut [0u8; 1]).unwrap_or(0), 0, "refused");
    wait_until("refusal counted", || up.report().counters.refused == 1);

    // Wire → switch: one good frame in two pieces, a runt.
    let mut wire = Vec::new();
    encode(&broadcast(0x42), &mut wire).unwrap();
    encode(&[1, 2, 3], &mut wire).unwrap();
    peer.write_all(&wire[..7]).unwrap();
    peer.write_all(&wire[7..]).unwrap();
    wait_until("frames in", || {
        let c = up.report().counters;
        c.rx_frames == 1 && c.rx_runt == 1
    });
    assert_eq!(up.report().counters.rx_bytes, 60);

    // Switch → wire: the PF's broadcast reaches the uplink, framed.
    nic.inject(PortId::Pf, broadcast(0x01));
    let mut got = [0u8; 64];
    peer.read_exact(&mut got).unwrap();
    assert_eq!(&got[..4], &[0, 0, 0, 60]);
    assert_eq!(&got[4..], &broadcast(0x01)[..]);
    let r = up.report();
    assert_eq!((r.counters.tx_frames, r.counters.tx_bytes), (1, 60));
    assert!(r.peer.is_some());

    // A bad length prefix resets this connection; the VF side never notices.
    peer.write_all(&[0x7f, 0xff, 0xff, 0xff]).unwrap();
    assert_eq!(peer.read(&mut got).unwrap_or(0), 0, "connection reset");
    wait_until("carrier down", || !link_up(&nic));
    let r = up.report();
    assert_eq!(r.counters.framing_errors, 1);
    assert!(r.peer.is_none() && !r.carrier);

    // The next peer is served.
    let _again = UnixStream::connect(&sock).unwrap();
    wait_until("carrier again", || link_up(&nic));
    assert_eq!(up.report().counters.connections, 2);
    up.stop();
    assert!(!sock.exists(), "socket removed");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn stream_client_reconnects_until_the_server_is_there() {
    let dir = tmp("client");
    let sock = dir.join("qemu.sock");
    let nic = nic();
    let spec = UplinkSpec::Stream {
        role: StreamRole::Connect {
            reconnect: Duration::from_millis(20),
        },
        addr: SockAddr::Unix(sock.clone()),
    };
    let up = Uplink::start(&nic, PortId::Uplink(0), &spec)
        .unwrap()
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(!link_up(&nic));
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let (mut s, _) = listener.accept().unwrap();
    wait_until("carrier", || link_up(&nic));
    s.write_all(&[0, 0, 0, 60]).unwrap();
    s.write_all(&broadcast(7)).unwrap();
    wait_until("frame in", || up.report().counters.rx_frames == 1);
    drop(s);
    wait_until("carrier down", || !link_up(&nic));
    let (_s2, _) = listener.accept().unwrap();
    wait_until("reconnected", || up.report().counters.connections == 2);
    drop(up);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dgram_cable_connects_two_nics() {
    let dir = tmp("dgram");
    let (a_path, b_path) = (dir.join("a.sock"), dir.join("b.sock"));
    let (nic_a, nic_b) = (nic(), nic());
    let a = Uplink::start(
        &nic_a,
        PortId::Uplink(0),
        &UplinkSpec::Dgram {
            local: SockAddr::Unix(a_path.clone()),
            remote: SockAddr::Unix(b_path.clone()),
        },
    )
    .unwrap()
    .unwrap();
    // Before the far end exists, frames go nowhere, counted.
    nic_a.inject(PortId::Pf, broadcast(1));
    assert_eq!(a.report().counters.tx_dropped, 1);
    let b = Uplink::start(
        &nic_b,
        PortId::Uplink(0),
        &UplinkSpec::Dgram {
            local: SockAddr::Unix(b_path.clone()),
            remote: SockAddr::Unix(a_path.clone()),
        },
    )
    .unwrap()
    .unwrap();
    nic_a.inject(PortId::Pf, broadcast(2));
    wait_until("frame across", || b.report().counters.rx_frames == 1);
    assert_eq!(a.report().counters.tx_frames, 1);
    // B's PF and VF got it from B's uplink.
    let rx = nic_b.with_pf(|pf| pf.switch().counters(PortId::Pf).unwrap().rx_packets);
    assert_eq!(rx, 1);
    // Runts and oversize datagrams from anyone are dropped and counted.
    let stranger = UnixDatagram::unbound().unwrap();
    stranger.send_to(&[0u8; 10], &b_path).unwrap();
    stranger
        .send_to(&vec![0u8; MAX_WIRE_FRAME + 1], &b_path)
        .unwrap();
    wait_until("drops", || {
        let c = b.report().counters;
        c.rx_runt == 1 && c.rx_oversize == 1
    });
    assert!(b.report().carrier && link_up(&nic_b));
    assert!(b.report().backend.starts_with("dgram local unix:"));
    drop((a, b));
    assert!(!a_path.exists() && !b_path.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn binding_an_address_in_use_names_the_field() {
    let held = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap();
    let e = Uplink::start(
        &nic(),
        PortId::Uplink(0),
        &UplinkSpec::Dgram {
            local: SockAddr::Inet(addr),
            remote: SockAddr::Inet(addr),
        },
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("uplink.local = \"{addr}\": binding:")),
        "{e}"
    );
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap();
    let e = Uplink::start(
        &nic(),
        PortId::Uplink(0),
        &UplinkSpec::Stream {
            role: StreamRole::Listen,
            addr: SockAddr::Inet(addr),
        },
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("uplink.listen = "), "{e}");
}

#[test]
fn tap_errors_name_the_field() {
    // Whether or not this host lets us create TAPs, a name that exists and is not a TAP is
    // refused with the field named.
    let e = tap::open(&"lo".parse().unwrap()).unwrap_err();
    assert!(e.to_string().starts_with("uplink.name = \"lo\": "), "{e}");
}

#[test]
fn tap_is_created_by_name_counts_writes_while_down_and_goes_away_on_stop() {
    if !std::path::Path::new("/dev/net/tun").exists() {
        eprintln!("skipped: no /dev/net/tun on this host");
        return;
    }
    let name = format!("sremu-u{}", std::process::id() % 100_000);
    let nic = nic();
    let up = match Uplink::start(
        &nic,
        PortId::Uplink(0),
        &UplinkSpec::Tap {
            name: name.parse().unwrap(),
        },
    ) {
        Ok(u) => u.unwrap(),
        Err(e) => {
            // No CAP_NET_ADMIN here: the error names the field and the cause.
            assert!(e.to_string().starts_with("uplink.name = "), "{e}");
            eprintln!("skipped: {e}");
            return;
        }
    };
    let sys = std::path::Path::new("/sys/class/net").join(&name);
    assert!(sys.exists(), "TAP created");
    assert!(up.report().carrier && link_up(&nic));
    assert_eq!(up.backend(), format!("tap {name}"));
    // The interface is down: the kernel refuses the write (EIO), counted as dropped.
    nic.inject(PortId::Pf, broadcast(1));
    assert_eq!(up.report().counters.tx_dropped, 1);
    up.stop();
    assert!(!sys.exists(), "a TAP we created goes away with us");
}
