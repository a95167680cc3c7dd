//! Shared by the `serve` end-to-end tests: a guest on one VF with a host channel (a second
//! serial port, `/dev/ttyS1` in the guest, a QEMU UNIX socket chardev on the host) to step it
//! through phases, and the control-protocol calls.

#![allow(dead_code)]

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use model::nic::Card;
use scenarios::PfRef;
use serde_json::Value;
use sriov_emu::control::{request, Request};
use sriov_emu::serve::{port_vf_socket, qemu_device_json, vf_socket, MacMode, ServeConfig};
use sriov_emu_tests::{workspace_root, Artifacts, Guest, GuestConfig, GuestOutput, RunningGuest};

/// Guest-side helpers: `await WORD` (blocks until the host sends the line WORD; false on
/// `quit` or EOF) and `mark NAME` (prints `@@$ME-NAME@@` for [`Node::wait_mark`]).
pub const GUEST_CHANNEL: &str = r#"
exec 3</dev/ttyS1
stty -F /dev/ttyS1 -echo 2>/dev/null
await() {
    while read -r _l <&3; do
        _l=$(printf '%s' "$_l" | tr -d '\r')
        [ "$_l" = "$1" ] && return 0
        [ "$_l" = quit ] && return 1
    done
    return 1
}
mark() { echo "@@$ME-$1@@"; }
"#;

/// A per-run directory for the sockets.
pub fn serve_dir(tag: &str) -> PathBuf {
    workspace_root()
        .join("target/e2e/run")
        .join(format!("{tag}-{}", std::process::id()))
}

pub struct Node {
    pub guest: RunningGuest,
    ctl: UnixStream,
    me: &'static str,
}

impl Node {
    /// A guest on VF `vf` of port pf0.
    pub fn boot(dir: &Path, name: &str, me: &'static str, vf: u16, script: String) -> Node {
        Node::boot_on(dir, name, me, &vf_socket(dir, vf), script)
    }

    /// A guest on VF `vf` of port `pf` (`DIR/pfK-vfN.sock`).
    pub fn boot_on_port(
        dir: &Path,
        name: &str,
        me: &'static str,
        pf: u8,
        vf: u16,
        script: String,
    ) -> Node {
        Node::boot_on(dir, name, me, &port_vf_socket(dir, pf, vf), script)
    }

    /// A guest on the function served at `socket` (a VF's, or a PF's `pfK.sock`).
    pub fn boot_on(
        dir: &Path,
        name: &str,
        me: &'static str,
        socket: &Path,
        script: String,
    ) -> Node {
        let chan = dir.join(format!("{me}.tty"));
        let cfg = GuestConfig::new(name, script)
            .qemu_args([
                "-device".to_string(),
                "pcie-root-port,id=rp1,chassis=1".to_string(),
                "-device".to_string(),
                qemu_device_json(socket, "rp1", "fn"),
            ])
            .qemu_args(channel_args(&chan))
            .timeout(Duration::from_secs(600));
        let guest = Guest::new(cfg).spawn().unwrap_or_else(|e| panic!("{e}"));
        let ctl = connect_channel(&chan);
        Node { guest, ctl, me }
    }

    pub fn wait_mark(&self, mark: &str, secs: u64) {
        let needle = format!("@@{}-{mark}@@", self.me);
        assert!(
            self.guest
                .wait_for_console(&needle, Duration::from_secs(secs)),
            "{}: no {needle}\n{}",
            self.me,
            self.guest.console()
        );
    }

    pub fn say(&mut self, line: &str) {
        self.ctl
            .write_all(format!("{line}\n").as_bytes())
            .expect("host channel");
    }

    pub fn finish(mut self) -> GuestOutput {
        self.say("done");
        self.guest.wait()
    }
}

/// QEMU arguments for the host channel at `chan`: a UNIX socket chardev on a second serial
/// port (`/dev/ttyS1`, [`GUEST_CHANNEL`]).
pub fn channel_args(chan: &Path) -> Vec<String> {
    vec![
        "-chardev".to_string(),
        format!("socket,id=host,path={},server=on,wait=off", chan.display()),
        "-device".to_string(),
        "isa-serial,chardev=host".to_string(),
    ]
}

/// The host end of a spawned guest's channel ([`channel_args`]).
pub fn connect_channel(chan: &Path) -> UnixStream {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        match UnixStream::connect(chan) {
            Ok(s) => return s,
            Err(e) if Instant::now() > until => panic!("no host channel {}: {e}", chan.display()),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// QEMU arguments for VFs `vfs` of port pf0 in one guest, each at 0.0 of its own root port
/// (slots 2, 3, ... of bus 0), so the guest enumerates them in this order.
pub fn vf_devices(dir: &Path, vfs: &[u16]) -> Vec<String> {
    vfs.iter()
        .enumerate()
        .flat_map(|(i, &vf)| {
            let rp = format!("rp{}", i + 1);
            [
                "-device".to_string(),
                format!(
                    "pcie-root-port,id={rp},chassis=1,slot={},addr={:#x}",
                    i + 1,
                    i + 2
                ),
                "-device".to_string(),
                qemu_device_json(&vf_socket(dir, vf), &rp, &format!("vf{vf}")),
            ]
        })
        .collect()
}

/// `ctl show --port pfK --json`: port `pf`'s report.
pub fn show_port(dir: &Path, pf: u8) -> Value {
    let r = request(
        dir,
        &Request::Show {
            port: Some(PfRef(pf)),
        },
    )
    .expect("ctl show");
    assert!(r.ok, "{r:?}");
    let mut card = r.show.expect("report");
    card["ports"][0].take()
}

/// Port pf0's report.
pub fn show(dir: &Path) -> Value {
    show_port(dir, 0)
}

/// `ctl --port pfK vf N WORDS`.
pub fn ctl_port(dir: &Path, pf: u8, vf: u16, words: &str) {
    let r = request(
        dir,
        &Request::Vf {
            port: PfRef(pf),
            vf,
            words: words.split(' ').map(String::from).collect(),
        },
    )
    .expect("ctl");
    assert!(r.ok, "ctl --port pf{pf} vf {vf} {words}: {r:?}");
}

/// `ctl vf N WORDS` (port pf0).
pub fn ctl(dir: &Path, vf: u16, words: &str) {
    ctl_port(dir, 0, vf, words)
}

/// A NIC whose VF `i` has the administrative MAC `macs[i]` (igb's admin-only assignment).
pub fn admin_macs(macs: &[&str]) -> ServeConfig {
    ServeConfig {
        mac_assignment: MacMode::AdminOnly,
        vf: macs
            .iter()
            .enumerate()
            .map(|(i, mac)| (i.to_string(), format!("mac {mac}")))
            .collect(),
        ..ServeConfig::default()
    }
}

/// Guest side: load `$DRIVER`, wait for eth0 (result `netdev`: the driver bound), check its
/// address is `$MAC`, bring the link up and wait for the carrier, `$CARRIER_WAIT` seconds at
/// most (default 30; result `carrier`).
pub const DRIVER_UP: &str = r#"
check modprobe modprobe "$DRIVER"
if wait_for 30 test -e /sys/class/net/eth0; then
    result netdev pass "$(grep DRIVER /sys/class/net/eth0/device/uevent 2>/dev/null)"
else
    result netdev fail "no eth0: $(ls /sys/class/net | tr '\n' ' ')"
fi
check_eq mac "$MAC" cat /sys/class/net/eth0/address
check link-up ip link set eth0 up
if wait_for "${CARRIER_WAIT:-30}" grep -qx 1 /sys/class/net/eth0/carrier; then
    result carrier pass up
else
    result carrier fail "carrier $(cat /sys/class/net/eth0/carrier 2>&1)"
fi
"#;

/// Guest side: ping `$PEER` until it answers, at most `$REACH_WAIT` seconds (result `reach`),
/// then `$PINGS` times more (result `ping`: busybox's loss line; it exits 0 when any reply
/// came).
pub const REACH_AND_PING: &str = r#"
if wait_for "$REACH_WAIT" ping -c 1 -W 1 "$PEER"; then
    result reach pass "$PEER answers"
else
    result reach fail "$PEER never answered; neigh: $(ip neigh show dev eth0)"
fi
check ping sh -c "ping -c $PINGS -W 3 $PEER > /tmp/ping; rc=\$?; grep 'packet loss' /tmp/ping; exit \$rc"
"#;

/// Guest side: [`REACH_AND_PING`] waiting up to 120 s, then `count` pings.
pub fn ping_peer(count: u32) -> String {
    format!("REACH_WAIT=120\nPINGS={count}\n{REACH_AND_PING}")
}

/// The number a guest reported as the passing result `name`.
pub fn num(out: &GuestOutput, name: &str) -> u64 {
    let r = out.expect_pass(name);
    r.detail
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{name}: not a number: {}", r.detail))
}

/// A guest script: its identity, the host channel, igbvf brought up ([`DRIVER_UP`]) with
/// `$IP/24`, then `body`.
pub fn guest_script(me: &str, ip: &str, peer: &str, mac: &str, body: &str) -> String {
    card_guest_script(Card::I82576, me, ip, peer, mac, body)
}

/// [`guest_script`] with `card`'s VF driver (igbvf, ixgbevf).
pub fn card_guest_script(
    card: Card,
    me: &str,
    ip: &str,
    peer: &str,
    mac: &str,
    body: &str,
) -> String {
    let (_, driver) = card.drivers();
    format!(
        "ME={me}\nIP={ip}\nPEER={peer}\nMAC={mac}\nDRIVER={driver}\n{GUEST_CHANNEL}{DRIVER_UP}\
         check addr ip addr add \"$IP/24\" dev eth0\n{body}"
    )
}

/// A free loopback port, TCP or UDP (bound and released: tests that use one take turns).
pub fn free_port(udp: bool) -> u16 {
    if udp {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .unwrap()
            .port()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .unwrap()
            .port()
    }
}

/// Runs `cmd`, which must succeed; its standard output.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A pcap file as `tcpdump -r FILE -e -nn` prints it (link-level headers, nothing resolved),
/// with the tcpdump that `scripts/fetch-e2e.py` installs.
pub fn tcpdump(file: &Path) -> String {
    let tcpdump = Artifacts::locate()
        .and_then(|a| a.host_tool("tcpdump"))
        .unwrap_or_else(|e| panic!("{e}"));
    run(Command::new(&tcpdump)
        .args(["-r", &file.display().to_string(), "-e", "-nn"])
        .args(["-Z", "root"]))
}

/// A guest on the VF served at `socket` (its own root port), running `script`.
pub fn vf_guest(name: &str, socket: &Path, script: String, timeout: Duration) -> GuestConfig {
    GuestConfig::new(name, script)
        .qemu_args([
            "-device".to_string(),
            "pcie-root-port,id=rp1,chassis=1".to_string(),
            "-device".to_string(),
            qemu_device_json(socket, "rp1", "vf"),
        ])
        .timeout(timeout)
}

/// The guest's driver came up ([`DRIVER_UP`]) with `mac`, reached its peer and lost none of
/// its pings ([`REACH_AND_PING`]).
pub fn assert_up_with_mac_and_pinged(out: &GuestOutput, mac: &str) {
    for name in ["modprobe", "netdev", "mac", "carrier", "reach", "ping"] {
        out.expect_pass(name);
    }
    assert_eq!(out.expect_pass("mac").detail.trim(), mac);
    assert!(
        out.expect_pass("ping").detail.contains(" 0% packet loss"),
        "{}: {}",
        out.name,
        out.expect_pass("ping").detail
    );
}

/// The TCP goodput (Mbit/s) a VF rate-limited to `rate_mbps` can carry: the shaper charges each
/// frame with its FCS (1,518 bytes for a full-size TCP segment), of which 1,448 are payload
/// (IPv4, and TCP with the timestamps option Linux sends). A rate check compares iperf3's
/// figure with this, not with the rate itself.
pub fn tcp_goodput_mbps(rate_mbps: f64) -> f64 {
    const FRAME: f64 = 1518.0;
    const PAYLOAD: f64 = 1448.0;
    rate_mbps * PAYLOAD / FRAME
}

/// Panics unless `measured` (iperf3's receiver figure, Mbit/s) is within ±10 % of the TCP
/// goodput a `rate_mbps` limit can carry ([`tcp_goodput_mbps`]).
pub fn assert_shaped_tcp(measured: f64, rate_mbps: f64, context: &str) {
    let expected = tcp_goodput_mbps(rate_mbps);
    assert!(
        (expected * 0.9..=expected * 1.1).contains(&measured),
        "rate {rate_mbps}: measured {measured:.1} Mbit/s, outside {expected:.1} ± 10 % (the TCP \
         goodput of that rate): {context}"
    );
}
