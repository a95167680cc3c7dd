//! Faults the VF driver must survive, with the unmodified igbvf in a TCG guest: `ctl fault
//! pf-reset vf 0` tells VF 0 that the PF driver reset (its mailbox shows the reset, its
//! clear-to-send is gone). igbvf notices, takes the link down, resets itself through the PF
//! agent and brings the link back; traffic resumes without reloading the driver, and VF 1 in
//! the same guest never loses its link. Then `ctl fault link down` / `link up`, the port's
//! cable pulled and plugged back: both VFs (link state `auto`) lose their carrier and get it
//! back, and pings resume. Then 10 % of VF 1's received frames dropped on the wire (`ctl fault
//! wire vf1 rx drop 10% seed 7`): iperf3's TCP still completes, and VF 1's `fault` drop counter
//! is what the fault dropped. Needs the artifacts of `scripts/fetch-e2e.py`.

mod serve_support;

use std::io::Write;
use std::time::Duration;

use scenarios::PfRef;
use serve_support::{channel_args, connect_channel, serve_dir, vf_devices, GUEST_CHANNEL};
use sriov_emu::control::{request, Request};
use sriov_emu::serve::{ServeConfig, Serving};
use sriov_emu_tests::{Guest, GuestConfig};

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

#[test]
fn igbvf_recovers_from_a_pf_reset_notification_without_a_reload() {
    let dir = serve_dir("fault");
    let config: ServeConfig = toml::from_str(
        "vfs = 2\n[vf]\n0 = \"mac 02:00:00:00:00:10\"\n1 = \"mac 02:00:00:00:00:11\"\n",
    )
    .unwrap();
    let serving = Serving::start(&dir, &config, None).expect("serve");
    let chan = dir.join("g.tty");
    let cfg = GuestConfig::new("serve-fault", format!("{GUEST_CHANNEL}{SCRIPT}"))
        .qemu_args(vf_devices(&dir, &[0, 1]))
        .qemu_args(channel_args(&chan))
        .timeout(Duration::from_secs(400));
    let guest = Guest::new(cfg).spawn().unwrap_or_else(|e| panic!("{e}"));
    let mut tty = connect_channel(&chan);
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
    let fault = |words: &str| {
        let req = Request::Fault {
            port: PfRef(0),
            words: words.split(' ').map(String::from).collect(),
        };
        let r = request(&dir, &req).expect("ctl fault");
        assert!(r.ok, "fault {words}: {r:?}");
    };
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
