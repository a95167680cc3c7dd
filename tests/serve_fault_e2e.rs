//! Faults the VF driver must survive, with the unmodified igbvf in a TCG guest: `ctl fault
//! pf-reset vf 0` tells VF 0 that the PF driver reset (its mailbox shows the reset, its
//! clear-to-send is gone). igbvf notices, takes the link down, resets itself through the PF
//! agent and brings the link back; traffic resumes without reloading the driver, and VF 1 in
//! the same guest never loses its link. Then `ctl fault link down` / `link up`, the port's
//! cable pulled and plugged back: both VFs (link state `auto`) lose their carrier and get it
//! back, and pings resume. Then 10 % of VF 1's received frames dropped on the wire (`ctl fault
//! wire vf1 rx drop 10% seed 7`): iperf3's TCP still completes, and VF 1's `fault` drop counter
//! is what the fault dropped.
//!
//! The second test gives VF 0 the driver's error paths while VF 2 pings VF 1 all along: the
//! next TX descriptor fetch fails (`ctl fault dma vf0 tx desc 1`), so the queue stops until the
//! ring fills, the stack declares a TX timeout and igbvf's reset task brings it back; three
//! MSI-X messages lost (`irq vf0 lose 3`); then the PF's mailbox replies dropped (`mailbox vf0
//! drop`): a MAC change times out, igbvf takes its link down, and once the fault is cleared the
//! PF's ping makes it reinitialise, and the next MAC change goes through. Needs the artifacts of
//! `scripts/fetch-e2e.py`.

mod serve_support;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use scenarios::PfRef;
use serve_support::{channel_args, connect_channel, serve_dir, vf_devices, GUEST_CHANNEL};
use sriov_emu::control::{request, Request};
use sriov_emu::serve::{ServeConfig, Serving};
use sriov_emu_tests::{Guest, GuestConfig, RunningGuest};

const SCRIPT: &str = r#"
ME=g
check modprobe modprobe igbvf
wait_for 30 test -e /sys/class/net/eth1
# eth0 is VF 0 (the first root port), eth1 VF 1: each in its namespace.
A=$(for n in eth0 eth1; do [ "$(cat /sys/class/net/$n/address)" = 02:00:00:00:00:10 ] && echo $n; done)
B=$(for n in eth0 eth1; do [ "$(cat /sys/class/net/$n/address)" = 02:00:00:00:00:11 ] && echo $n; done)
result vfs pass "$A $B"
ip netns add a
ip netns add b
ip link set "$A" netns a
ip link set "$B" netns b
ip -n a addr add 10.0.0.1/24 dev "$A"
ip -n b addr add 10.0.0.2/24 dev "$B"
ip -n a link set "$A" up
ip -n b link set "$B" up
carrier() { ip netns exec "$1" cat /sys/class/net/$2/carrier 2>/dev/null; }
if wait_for 90 ip netns exec a ping -c 1 -W 1 10.0.0.2; then
    result before pass "10.0.0.2 answers"
else
    result before fail "$(ip -n a link show)"
fi
BLINKS=$(dmesg | grep -c "Link is Down")
mark READY
await reset
# igbvf's watchdog sees the reset: link down, then its reset task brings it back.
if wait_for 30 sh -c "[ \"\$(/usr/sbin/ip netns exec a cat /sys/class/net/$A/carrier)\" = 0 ]"; then
    result carrier-down pass "down"
else
    result carrier-down fail "carrier stayed $(carrier a $A)"
fi
if wait_for 90 sh -c "[ \"\$(/usr/sbin/ip netns exec a cat /sys/class/net/$A/carrier)\" = 1 ]"; then
    result carrier-up pass "up"
else
    result carrier-up fail "carrier $(carrier a $A)"
fi
check after ip netns exec a sh -c "ping -c 5 -W 3 10.0.0.2 > /tmp/ping; rc=\$?; grep 'packet loss' /tmp/ping; exit \$rc"
value downs sh -c "echo \$(( \$(dmesg | grep -c 'Link is Down') - $BLINKS ))"
value b-carrier carrier b "$B"
value still-loaded sh -c "grep -c '^igbvf ' /proc/modules"
# The port's cable pulled and plugged back: both VFs (link state auto) follow.
both() { [ "$(/usr/sbin/ip netns exec a cat /sys/class/net/$A/carrier)" = "$1" ] && \
         [ "$(/usr/sbin/ip netns exec b cat /sys/class/net/$B/carrier)" = "$1" ]; }
mark LINK
await linkdown
if wait_for 30 both 0; then
    result flap-down pass "both down"
else
    result flap-down fail "carriers $(carrier a $A) $(carrier b $B)"
fi
mark DOWN
await linkup
if wait_for 60 both 1; then
    result flap-up pass "both up"
else
    result flap-up fail "carriers $(carrier a $A) $(carrier b $B)"
fi
check flap-ping ip netns exec a sh -c "ping -c 5 -W 3 10.0.0.2 > /tmp/ping; rc=\$?; grep 'packet loss' /tmp/ping; exit \$rc"
# 10 % of what VF 1 receives is lost on the wire: TCP still gets through.
ip netns exec b iperf3 -s -D -1
mark LOSS
await lossy
check iperf ip netns exec a sh -c "iperf3 -c 10.0.0.2 -t 4 > /tmp/iperf 2>&1; rc=\$?; grep -E 'receiver|error' /tmp/iperf | tail -n 1; exit \$rc"
mark LOSSDONE
dmesg | grep -i igbvf | tail -n 12
await done
"#;

/// `serve` with `config` (TOML) and a guest on `vfs` running `script` after the channel
/// helpers, named `serve-<tag>`.
fn start(
    tag: &str,
    config: &str,
    vfs: &[u16],
    script: &str,
) -> (PathBuf, Serving, RunningGuest, UnixStream) {
    let dir = serve_dir(tag);
    let config: ServeConfig = toml::from_str(config).unwrap();
    let serving = Serving::start(&dir, &config, None).expect("serve");
    let chan = dir.join("g.tty");
    let cfg = GuestConfig::new(format!("serve-{tag}"), format!("{GUEST_CHANNEL}{script}"))
        .qemu_args(vf_devices(&dir, vfs))
        .qemu_args(channel_args(&chan))
        .timeout(Duration::from_secs(600));
    let guest = Guest::new(cfg).spawn().unwrap_or_else(|e| panic!("{e}"));
    let tty = connect_channel(&chan);
    (dir, serving, guest, tty)
}

/// `ctl fault WORDS` on pf0, which must succeed.
fn fault(dir: &Path, words: &str) {
    let req = Request::Fault {
        port: PfRef(0),
        words: words.split(' ').map(String::from).collect(),
    };
    let r = request(dir, &req).expect("ctl fault");
    assert!(r.ok, "fault {words}: {r:?}");
}

#[test]
fn igbvf_recovers_from_a_pf_reset_notification_without_a_reload() {
    let (dir, serving, guest, mut tty) = start(
        "fault",
        "vfs = 2\n[vf]\n0 = \"mac 02:00:00:00:00:10\"\n1 = \"mac 02:00:00:00:00:11\"\n",
        &[0, 1],
        SCRIPT,
    );
    assert!(
        guest.wait_for_console("@@g-READY@@", Duration::from_secs(300)),
        "{}",
        guest.console()
    );
    let r = request(
        &dir,
        &Request::Fault {
            port: PfRef(0),
            words: vec!["pf-reset".into(), "vf".into(), "0".into()],
        },
    )
    .expect("ctl fault");
    assert!(r.ok, "{r:?}");
    tty.write_all(b"reset\n").unwrap();
    let fault = |words: &str| fault(&dir, words);
    let link = guest.wait_for_console("@@g-LINK@@", Duration::from_secs(300));
    fault("link down");
    tty.write_all(b"linkdown\n").unwrap();
    let down = guest.wait_for_console("@@g-DOWN@@", Duration::from_secs(120));
    fault("link up");
    tty.write_all(b"linkup\n").unwrap();
    let loss = guest.wait_for_console("@@g-LOSS@@", Duration::from_secs(120));
    fault("wire vf1 rx drop 10% seed 7");
    tty.write_all(b"lossy\n").unwrap();
    let lossdone = guest.wait_for_console("@@g-LOSSDONE@@", Duration::from_secs(120));
    let during = request(&dir, &Request::Show { port: None }).expect("ctl show");
    fault("clear");
    let done = lossdone;
    tty.write_all(b"done\n").unwrap();
    let out = guest.wait();
    let show = request(&dir, &Request::Show { port: None }).expect("ctl show");
    serving.shutdown();
    eprintln!("{}", out.diagnostics());
    assert!(link && down && loss && done, "the guest never finished");
    for name in [
        "modprobe",
        "vfs",
        "before",
        "carrier-down",
        "carrier-up",
        "after",
        "flap-down",
        "flap-up",
        "flap-ping",
        "iperf",
    ] {
        out.expect_pass(name);
    }
    assert!(out.expect_pass("after").detail.contains(" 0% packet loss"));
    let downs: u32 = out.expect_pass("downs").detail.trim().parse().unwrap();
    assert!(downs >= 1, "igbvf logged its link going down");
    assert_eq!(
        out.expect_pass("still-loaded").detail.trim(),
        "1",
        "no reload"
    );
    assert_eq!(
        out.expect_pass("b-carrier").detail.trim(),
        "1",
        "VF 1 kept its link"
    );
    let report = show.show.expect("report");
    let vfs = &report["ports"][0]["vfs"];
    assert_eq!(vfs[0]["pf_resets"], 1);
    assert_eq!(vfs[1]["pf_resets"], 0);
    let faults = &report["ports"][0]["nic"]["faults"];
    assert_eq!(
        (
            &faults["pf_reset"],
            &faults["link_down"],
            &faults["link_up"]
        ),
        (&1.into(), &1.into(), &1.into()),
        "{faults}"
    );
    // The loss: what the fault dropped is what VF 1's port counts as dropped by a fault.
    let during = during.show.expect("report");
    let wire = &during["ports"][0]["faults_armed"][0];
    let fired = wire["fired"].as_u64().unwrap();
    let seen = wire["seen"].as_u64().unwrap();
    eprintln!("wire fault: {wire}");
    assert!(fired > 0 && seen > 10 * fired / 2, "{wire}");
    assert_eq!(
        during["ports"][0]["vfs"][1]["port"]["drops"]["fault"],
        fired
    );
    assert_eq!(
        report["ports"][0]["faults_armed"],
        serde_json::json!([]),
        "cleared"
    );
    let text = show.text.unwrap_or_default();
    assert!(text.contains("PF resets notified 1"), "{text}");
    assert!(
        text.contains("faults fired: link_down 1, link_up 1, pf_reset 1"),
        "{text}"
    );
}

/// VF 0 in namespace a (no administrative MAC: its driver's own MAC), VF 1 in b, VF 2 in c;
/// c pings b all along, VF 0 takes the faults.
const ERRORS_SCRIPT: &str = r#"
ME=g
check modprobe modprobe igbvf
wait_for 30 test -e /sys/class/net/eth2
by_mac() { for n in eth0 eth1 eth2; do [ "$(cat /sys/class/net/$n/address)" = "$1" ] && echo $n; done; }
# VF 0 is the first root port's.
A=$(for n in eth0 eth1 eth2; do case $(readlink /sys/class/net/$n/device) in *01:00.0) echo $n;; esac; done)
B=$(by_mac 02:00:00:00:00:11)
C=$(by_mac 02:00:00:00:00:12)
result vfs pass "$A $B $C"
ip link set "$A" address 02:00:00:00:00:10
for x in "a $A 1" "b $B 2" "c $C 3"; do
    set -- $x
    ip netns add $1
    ip link set "$2" netns $1
    ip -n $1 addr add 10.0.0.$3/24 dev "$2"
    ip -n $1 link set "$2" up
done
if wait_for 90 ip netns exec a ping -c 1 -W 1 10.0.0.2 && wait_for 90 ip netns exec c ping -c 1 -W 1 10.0.0.2; then
    result before pass "10.0.0.2 answers a and c"
else
    result before fail "$(ip -n a link show)"
fi
# The bystander: VF 2 pings VF 1 through everything VF 0 goes through.
ip netns exec c ping -i 0.5 10.0.0.2 > /tmp/cping 2>&1 &
CPING=$!
ping_ok() { ip netns exec a sh -c "ping -c 5 -W 3 10.0.0.2 > /tmp/ping; rc=\$?; grep 'packet loss' /tmp/ping; exit \$rc"; }
carrier_a() { [ "$(/usr/sbin/ip netns exec a cat /sys/class/net/$A/carrier)" = "$1" ]; }
mark READY
await dma
# The next TX descriptor fetch fails as a bad address would: the queue stops. The ring fills,
# the stack's watchdog declares a TX timeout and igbvf's reset task brings the queue back.
# More frames than igbvf's TX ring holds (1024 descriptors), from sockets whose send buffers
# take them all while no transmit completes.
echo 4194304 > /proc/sys/net/core/wmem_default
burst() {
    _pids=
    for i in 1 2 3 4; do
        ip netns exec a ping -c 300 -i 0.01 -W 1 10.0.0.2 > /tmp/burst$i 2>&1 &
        _pids="$_pids $!"
    done
    wait $_pids
}
# recovers NAME: a burst, then VF 0 must answer again: NAME-recovered, NAME-ping (no loss),
# NAME-timeouts (the stack's TX timeouts so far).
recovers() {
    burst
    if wait_for 120 ip netns exec a ping -c 1 -W 2 10.0.0.2; then
        result $1-recovered pass "answers again"
    else
        result $1-recovered fail "$(dmesg | tail -n 3)"
    fi
    check $1-ping ping_ok
    value $1-timeouts ip netns exec a cat /sys/class/net/$A/queues/tx-0/tx_timeout
}
recovers dma
mark IRQ
await irq
# Three MSI-X messages lost: igbvf's watchdog (its EICS) or its reset path gets things moving.
recovers irq
mark MBX
await mbx
# A MAC change is a mailbox request (SET_MAC_ADDR). The PF never answers: igbvf's wait for the
# ACK times out, its mailbox is disarmed, and its next link check takes the link down.
ip -n a link set "$A" address 02:00:00:00:00:aa
if wait_for 60 carrier_a 0; then
    result mbx-timeout pass "link down"
else
    result mbx-timeout fail "carrier stayed up"
fi
mark MBXFAILED
await mbxclear
# The PF is back: igbvf hears it, reinitialises (its reset handshake through the mailbox) and
# the link comes back with the MAC it set.
if wait_for 90 carrier_a 1; then
    result mbx-recovered pass "link up"
else
    result mbx-recovered fail "$(dmesg | grep -i igbvf | tail -n 3)"
fi
wait_for 60 ip netns exec a ping -c 1 -W 2 10.0.0.2
check mbx-ping ping_ok
# The next request goes through: a new MAC, which the PF must take for frames to pass.
ip -n a link set "$A" address 02:00:00:00:00:bb
wait_for 30 ip netns exec a ping -c 1 -W 2 10.0.0.2
check mbx-next ping_ok
# `ip netns exec` may run ping as its child, which outlives a kill of $CPING: stop every
# process of namespace c, then count from one copy of the output, so that a reply landing
# between two reads cannot make them disagree.
kill $CPING
ip netns pids c | xargs -r kill
sleep 1
cp /tmp/cping /tmp/cping.end
value bystander sh -c "grep -c 'bytes from' /tmp/cping.end; grep 'bytes from' /tmp/cping.end | tail -n 1"
value bystander-seqs sh -c "grep -o 'seq=[0-9]*' /tmp/cping.end | cut -d= -f2 | tr '\n' ' '"
value b-carrier ip netns exec b cat /sys/class/net/$B/carrier
value c-carrier ip netns exec c cat /sys/class/net/$C/carrier
value still-loaded sh -c "grep -c '^igbvf ' /proc/modules"
dmesg | grep -iE 'igbvf|timed out' | tail -n 20
mark DONE
await done
"#;

#[test]
fn igbvf_survives_a_dma_failure_lost_interrupts_and_dropped_mailbox_replies() {
    let (dir, serving, guest, mut tty) = start(
        "fault-errors",
        "vfs = 3\n[vf]\n1 = \"mac 02:00:00:00:00:11\"\n2 = \"mac 02:00:00:00:00:12\"\n",
        &[0, 1, 2],
        ERRORS_SCRIPT,
    );
    let fault = |words: &str| fault(&dir, words);
    let show = || {
        request(&dir, &Request::Show { port: None })
            .expect("ctl show")
            .show
            .expect("report")
    };
    let mut reached = Vec::new();
    let mut shows = Vec::new();
    for (mark, wait, arm, say) in [
        ("READY", 300, "dma vf0 tx desc 1", "dma"),
        ("IRQ", 200, "irq vf0 lose 3", "irq"),
        ("MBX", 200, "mailbox vf0 drop", "mbx"),
        ("MBXFAILED", 120, "clear", "mbxclear"),
    ] {
        let ok = guest.wait_for_console(&format!("@@g-{mark}@@"), Duration::from_secs(wait));
        reached.push((mark, ok));
        if !ok {
            break;
        }
        shows.push(show());
        fault(arm);
        tty.write_all(format!("{say}\n").as_bytes()).unwrap();
    }
    let done = guest.wait_for_console("@@g-DONE@@", Duration::from_secs(300));
    let end = show();
    tty.write_all(b"done\n").unwrap();
    let out = guest.wait();
    serving.shutdown();
    eprintln!("{}", out.diagnostics());
    assert!(
        done && reached.iter().all(|(_, ok)| *ok),
        "the guest never finished: {reached:?}"
    );
    for name in [
        "modprobe",
        "vfs",
        "before",
        "dma-recovered",
        "dma-ping",
        "irq-recovered",
        "irq-ping",
        "mbx-timeout",
        "mbx-recovered",
        "mbx-ping",
        "mbx-next",
    ] {
        out.expect_pass(name);
    }
    for name in ["dma-ping", "irq-ping", "mbx-ping", "mbx-next"] {
        assert!(
            out.expect_pass(name).detail.contains(" 0% packet loss"),
            "{name}"
        );
    }
    assert_eq!(
        out.expect_pass("still-loaded").detail.trim(),
        "1",
        "no reload"
    );
    eprintln!(
        "TX timeouts after the DMA fault: {}, after the lost interrupts: {}; VF 2's pings answered: {}",
        out.expect_pass("dma-timeouts").detail.trim(),
        out.expect_pass("irq-timeouts").detail.trim(),
        out.expect_pass("bystander").detail.split_whitespace().next().unwrap_or("?"),
    );
    let timeouts: u32 = out
        .expect_pass("dma-timeouts")
        .detail
        .trim()
        .parse()
        .unwrap();
    assert!(
        timeouts >= 1,
        "the stack declared the stopped queue timed out"
    );
    // The bystanders never noticed: carrier up all along, every ping answered in order.
    assert_eq!(out.expect_pass("b-carrier").detail.trim(), "1");
    assert_eq!(out.expect_pass("c-carrier").detail.trim(), "1");
    let bystander = &out.expect_pass("bystander").detail;
    let replies: u64 = bystander
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let last_seq: u64 = bystander
        .split("seq=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    let rx_drops = |v: usize| end["ports"][0]["vfs"][v]["device"]["rx_drops"].clone();
    // The sequence numbers no reply came for (each 0.5 s after the one before), to place a
    // loss among the phases.
    let seqs: Vec<u64> = out
        .expect_pass("bystander-seqs")
        .detail
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    let missing: Vec<u64> = (0..=last_seq).filter(|s| !seqs.contains(s)).collect();
    eprintln!("RX drops: VF 1 {}, VF 2 {}", rx_drops(1), rx_drops(2));
    assert!(
        replies >= 20 && replies == last_seq + 1,
        "VF 2's pings: {bystander}; no reply to seq {missing:?}; RX drops: VF 1 {}, VF 2 {}",
        rx_drops(1),
        rx_drops(2)
    );
    // The device's side: what each fault did, counted, and on VF 0 alone.
    let port = |r: &serde_json::Value| r["ports"][0].clone();
    let (before_irq, before_mbx, before_clear) =
        (port(&shows[1]), port(&shows[2]), port(&shows[3]));
    // (seen, fired) of the armed fault `name`.
    let armed = |p: &serde_json::Value, name: &str| {
        let f = p["faults_armed"]
            .as_array()
            .and_then(|a| a.iter().find(|f| f["fault"] == name).cloned())
            .unwrap_or_else(|| panic!("no fault {name} in {}", p["faults_armed"]));
        (f["seen"].as_u64().unwrap(), f["fired"].as_u64().unwrap())
    };
    assert_eq!(armed(&before_irq, "dma vf0 tx queue 0 desc fail 1"), (1, 1));
    assert_eq!(before_irq["vfs"][0]["device"]["dma_errors"], 1);
    assert_eq!(armed(&before_mbx, "irq vf0 lose 3").1, 3);
    assert_eq!(before_mbx["vfs"][0]["device"]["irqs_lost"], 3);
    assert!(armed(&before_clear, "mailbox vf0 drop").1 >= 1);
    assert_ne!(
        before_clear["vfs"][0]["policy"]["mac"], "02:00:00:00:00:aa",
        "the PF never took the MAC it never answered"
    );
    let end = port(&end);
    assert_eq!(end["vfs"][0]["policy"]["mac"], "02:00:00:00:00:bb");
    for v in [1, 2] {
        let d = &end["vfs"][v]["device"];
        assert_eq!(
            (d["dma_errors"].as_u64(), d["irqs_lost"].as_u64()),
            (Some(0), Some(0)),
            "VF {v}: {d}"
        );
        assert_eq!(end["vfs"][v]["port"]["drops"]["fault"], 0, "VF {v}");
    }
}
