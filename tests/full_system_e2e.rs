//! End-to-end, full-system mode: one guest drives the 82576 PF (`pf0.sock`) with the
//! unmodified Linux `igb` and enables the VFs itself, through the SR-IOV capability that the
//! patched QEMU of `qemu/patches/` composes from seven vfio-user VF devices named after the PF
//! (`"sriov-pf":"pf"`, each on its own socket at the 82576's routing IDs: PF + 0x80 + 2n).
//!
//! Inside the guest: igb binds, `sriov_totalvfs` reads 7, `echo 2 > sriov_numvfs` brings two
//! igbvf netdevs with `virtfn0`/`virtfn1` links under the PF and `physfn` links back, `echo 0`
//! removes them and `echo 2` creates them again; then the two VFs, each moved into a network
//! namespace of its own, ping each other through the eswitch. In that first test the VFs'
//! mailboxes are answered by the emulator's embedded PF agent; in the second
//! (`--pf-driver guest`) the guest's igb answers them and sets the policies the switch
//! enforces; the third has `serve` refuse full-system mode with a QEMU that hides SR-IOV.
//!
//! Needs the artifacts of `scripts/fetch-e2e.py` and the patched QEMU that
//! `scripts/build-qemu-sriov.py` builds (both run by `scripts/test.sh`); skips, saying why,
//! when that QEMU is absent.

mod serve_support;

use std::path::Path;
use std::time::{Duration, Instant};

use serve_support::{assert_shaped_tcp, serve_dir};
use sriov_emu::qemu_caps::{sriov_qemu_path, BUILD_SCRIPT, SRIOV_QEMU_ENV};
use sriov_emu::serve::{ServeConfig, Serving};
use sriov_emu_tests::{Guest, GuestConfig, GuestOutput};

const PF_MAC: &str = "02:00:00:00:00:0a";
/// VFs on the QEMU command line: the 82576's seven, as igb enables at most.
const VFS: u16 = 7;

const SCRIPT: &str = r#"
check modprobe-igb modprobe igb
if wait_for 30 test -e /sys/class/net/eth0/device/driver; then
    result netdev pass "$(grep DRIVER /sys/class/net/eth0/device/uevent)"
else
    result netdev fail "no eth0: $(ls /sys/class/net | tr '\n' ' ')"
fi
PF=/sys/class/net/eth0/device
PF_BDF=$(basename "$(readlink -f $PF)")
value pf-bdf echo "$PF_BDF"
check_eq totalvfs 7 cat $PF/sriov_totalvfs
check_eq numvfs-initial 0 cat $PF/sriov_numvfs
check modprobe-igbvf modprobe igbvf

# The netdevs igbvf drives, and the links between the functions.
vf_netdevs() {
    for n in /sys/class/net/*; do
        [ "$(basename "$(readlink $n/device/driver 2>/dev/null)")" = igbvf ] && basename $n
    done
}
count_vf_netdevs() { vf_netdevs | wc -l; }
have_vf_netdevs() { [ "$(count_vf_netdevs)" -eq "$1" ]; }
links() {
    for i in 0 1; do
        if [ -L $PF/virtfn$i ]; then
            vf=$(readlink -f $PF/virtfn$i)
            echo "virtfn$i=$(basename $vf) physfn=$(basename "$(readlink -f $vf/physfn)") driver=$(basename "$(readlink $vf/driver)")"
        else
            echo "virtfn$i=none"
        fi
    done | tr '\n' ' '
}

enable_two() {
    check "numvfs-2-$1" sh -c "echo 2 > $PF/sriov_numvfs"
    if wait_for 60 have_vf_netdevs 2; then
        result "vf-netdevs-$1" pass "$(vf_netdevs | tr '\n' ' ')"
    else
        result "vf-netdevs-$1" fail "igbvf netdevs: $(vf_netdevs | tr '\n' ' '); all: $(ls /sys/class/net | tr '\n' ' ')"
    fi
    check_eq "numvfs-$1" 2 cat $PF/sriov_numvfs
    value "links-$1" links
}

enable_two first
check numvfs-0 sh -c "echo 0 > $PF/sriov_numvfs"
if wait_for 30 have_vf_netdevs 0; then
    result vf-netdevs-gone pass "$(ls /sys/class/net | tr '\n' ' ')"
else
    result vf-netdevs-gone fail "igbvf netdevs left: $(vf_netdevs | tr '\n' ' ')"
fi
check_eq numvfs-after-0 0 cat $PF/sriov_numvfs
value links-after-0 links
enable_two again

# The two VFs, each in a namespace of its own, ping each other through the eswitch.
set -- $(vf_netdevs)
A=$1
B=$2
value vf-macs echo "$A=$(cat /sys/class/net/$A/address) $B=$(cat /sys/class/net/$B/address)"
ip netns add a && ip netns add b
ip link set "$A" netns a && ip link set "$B" netns b
ip -n a addr add 10.0.0.1/24 dev "$A" && ip -n a link set "$A" up
ip -n b addr add 10.0.0.2/24 dev "$B" && ip -n b link set "$B" up
if wait_for 90 ip netns exec a ping -c 1 -W 1 10.0.0.2; then
    result vf-reach pass "10.0.0.2 answers 10.0.0.1"
else
    result vf-reach fail "no answer; a: $(ip -n a -br addr | tr '\n' ';') b: $(ip -n b -br addr | tr '\n' ';')"
fi
check vf-ping sh -c "/usr/sbin/ip netns exec b ping -c 5 -W 3 10.0.0.1 > /tmp/ping; rc=\$?; grep 'packet loss' /tmp/ping; exit \$rc"
"#;

/// QEMU's arguments for port pf0 in full-system mode, as `serve`'s banner prints them.
fn devices(dir: &Path) -> Vec<String> {
    sriov_emu::serve::full_system_qemu_args(dir, 0, VFS, "")
}

/// The patched QEMU, or `None` after saying why the test is skipped.
fn patched_qemu() -> Option<std::path::PathBuf> {
    let qemu = sriov_qemu_path();
    if qemu.exists() {
        return Some(qemu);
    }
    eprintln!(
        "skipped: full-system mode needs the patched QEMU, and {} is absent (build it with \
         `python3 {BUILD_SCRIPT}`, as scripts/test.sh does, or point {SRIOV_QEMU_ENV} at one)",
        qemu.display()
    );
    None
}

/// The guest's kernel log between the markers `/init` prints after the script.
fn dmesg(out: &GuestOutput) -> &str {
    let c = &out.console;
    let start = c.find("SRIOV-EMU-DMESG-BEGIN").map_or(0, |i| i + 21);
    let end = c.find("SRIOV-EMU-DMESG-END").unwrap_or(c.len());
    &c[start..end.max(start)]
}

#[test]
fn the_guests_igb_enables_the_vfs_of_the_pf_it_drives() {
    let Some(qemu) = patched_qemu() else {
        return;
    };
    let dir = serve_dir("full-system");
    let config = ServeConfig {
        pf_mac: Some(PF_MAC.into()),
        ..ServeConfig::default()
    };
    let serving = Serving::start(&dir, &config, Some(VFS)).expect("serve");
    eprint!("{}", serving.banner());

    let t = Instant::now();
    let out = Guest::new(
        GuestConfig::new("full-system", SCRIPT)
            .qemu(&qemu)
            .qemu_args(devices(&dir))
            .timeout(Duration::from_secs(240)),
    )
    .run()
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("guest ran {:?}", t.elapsed());
    serving.shutdown();
    let _ = std::fs::remove_dir_all(&dir);

    let log = dmesg(&out);
    eprintln!(
        "igb/igbvf/pci:\n     {}",
        log.lines()
            .filter(|l| ["igb", "pci", "iov"].iter().any(|w| l.contains(w)))
            .collect::<Vec<_>>()
            .join("\n     ")
    );
    for r in &out.results {
        eprintln!("  {} {:?}: {}", r.name, r.status, r.detail);
    }
    out.assert_completed();

    // igb bound to the PF, which has the SR-IOV capability QEMU composed from the 7 VFs.
    assert!(out.expect_pass("netdev").detail.contains("DRIVER=igb"));
    assert_eq!(out.expect_pass("totalvfs").detail.trim(), "7");
    out.expect_pass("numvfs-initial");
    let pf = out.expect_pass("pf-bdf").detail.trim().to_string();

    // echo 2: two igbvf netdevs, linked both ways; echo 0: gone; echo 2: back.
    for round in ["first", "again"] {
        for name in [
            format!("numvfs-2-{round}"),
            format!("vf-netdevs-{round}"),
            format!("numvfs-{round}"),
        ] {
            out.expect_pass(&name);
        }
        let links = out.expect_pass(&format!("links-{round}")).detail.clone();
        for i in 0..2 {
            let field = |key: &str| {
                links
                    .split_whitespace()
                    .skip_while(|w| !w.starts_with(&format!("virtfn{i}=")))
                    .take(3)
                    .find_map(|w| w.strip_prefix(key).map(str::to_string))
                    .unwrap_or_default()
            };
            let vf = field(&format!("virtfn{i}="));
            assert!(vf.contains(':'), "{round}: no virtfn{i}: {links}");
            assert_eq!(field("physfn="), pf, "{round}: virtfn{i}'s physfn: {links}");
            assert_eq!(field("driver="), "igbvf", "{round}: virtfn{i}: {links}");
        }
    }
    for name in ["numvfs-0", "vf-netdevs-gone", "numvfs-after-0"] {
        out.expect_pass(name);
    }
    assert_eq!(
        out.expect_pass("links-after-0").detail.trim(),
        "virtfn0=none virtfn1=none"
    );

    // The two VFs ping each other, one namespace each.
    out.expect_pass("vf-reach");
    let ping = &out.expect_pass("vf-ping").detail;
    assert!(ping.contains(" 0% packet loss"), "{ping}");

    let bad: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("igb") || l.contains("iov"))
        .filter(|l| {
            let l = l.to_lowercase();
            ["error", "fail", "timeout", "timed out", "hang"]
                .iter()
                .any(|w| l.contains(w))
        })
        .collect();
    assert!(bad.is_empty(), "igb/igbvf complained: {bad:#?}\n{log}");
}

/// The guest's igb manages the VFs (`--pf-driver guest`): it answers their mailboxes itself
/// and the switch takes each VF's policy from the registers igb writes. Inside the guest, with
/// the PF up at 10.0.0.254: `echo 2 > sriov_numvfs` (driver autoprobe off), `ip link set eth0
/// vf 0 mac ...` and `vf 1 mac ...`, then igbvf bound: both netdevs come up with those MACs
/// (the reset handshake answered by igb through P2VMAILBOX/VMBMEM); the VFs, one namespace
/// each, ping each other; VF 0's ARP for the PF reaches it (and VF 1: the broadcast counter);
/// `vf 0 max_tx_rate 100` holds iperf3 within ±10 % of its TCP goodput; frames VF 0 sends
/// from a MAC that is not its own are dropped as `spoof_mac` (spoofchk on, as igb sets it);
/// `vf 1 vlan 10` cuts VF 1 off from untagged VF 0 while the PF's eth0.10 reaches it (tag
/// inserted on the way out, stripped on the way in); `vlan 0` restores the ping; `echo 0`
/// removes the VFs and `echo 2` (autoprobe on) brings two new ones whose igbvf gets a link from
/// igb again.
const GUEST_PF_SCRIPT: &str = r#"
check modprobe-igb modprobe igb
if wait_for 30 test -e /sys/class/net/eth0/device/driver; then
    result netdev pass "$(grep DRIVER /sys/class/net/eth0/device/uevent)"
else
    result netdev fail "no eth0: $(ls /sys/class/net | tr '\n' ' ')"
fi
PF=/sys/class/net/eth0/device
ip addr add 10.0.0.254/24 dev eth0
ip link set eth0 up
if wait_for 30 grep -qx 1 /sys/class/net/eth0/carrier; then
    result pf-carrier pass up
else
    result pf-carrier fail "$(cat /sys/class/net/eth0/operstate)"
fi
check_eq totalvfs 7 cat $PF/sriov_totalvfs
echo 0 > $PF/sriov_drivers_autoprobe
check numvfs-2 sh -c "echo 2 > $PF/sriov_numvfs"
check_eq numvfs 2 cat $PF/sriov_numvfs
check vf0-admin-mac ip link set eth0 vf 0 mac 02:00:00:00:01:00
check vf1-admin-mac ip link set eth0 vf 1 mac 02:00:00:00:01:01
check modprobe-igbvf modprobe igbvf
# With autoprobe off a VF binds only where its driver_override points.
for i in 0 1; do
    VF=$(basename "$(readlink -f $PF/virtfn$i)")
    echo igbvf > /sys/bus/pci/devices/$VF/driver_override
    echo $VF > /sys/bus/pci/drivers_probe
done
vf_netdev() { ls $PF/virtfn$1/net 2>/dev/null; }
if wait_for 60 sh -c "[ -n \"\$(ls $PF/virtfn0/net 2>/dev/null)\" ] && [ -n \"\$(ls $PF/virtfn1/net 2>/dev/null)\" ]"; then
    result vf-netdevs pass "$(vf_netdev 0) $(vf_netdev 1)"
else
    result vf-netdevs fail "$(ls /sys/class/net | tr '\n' ' ')"
fi
A=$(vf_netdev 0)
B=$(vf_netdev 1)
check_eq vf0-netdev-mac 02:00:00:00:01:00 cat /sys/class/net/$A/address
check_eq vf1-netdev-mac 02:00:00:00:01:01 cat /sys/class/net/$B/address
value ip-link-vfs sh -c "/usr/sbin/ip link show eth0 | grep -E '^ *vf [01] ' | tr -s ' ' | tr '\n' ';'"
ip netns add a && ip netns add b
ip link set "$A" netns a && ip link set "$B" netns b
ip -n a addr add 10.0.0.1/24 dev "$A" && ip -n a link set "$A" up
ip -n b addr add 10.0.0.2/24 dev "$B" && ip -n b addr add 10.0.10.2/24 dev "$B" && ip -n b link set "$B" up
if wait_for 90 ip netns exec a ping -c 1 -W 1 10.0.0.2; then
    result vf-reach pass "10.0.0.2 answers 10.0.0.1"
else
    result vf-reach fail "no answer; a: $(ip -n a -br addr | tr '\n' ';') b: $(ip -n b -br addr | tr '\n' ';')"
fi
check vf-ping sh -c "/usr/sbin/ip netns exec b ping -c 5 -W 3 10.0.0.1 > /tmp/ping; rc=\$?; grep 'packet loss' /tmp/ping; exit \$rc"
check vf0-reaches-pf sh -c "/usr/sbin/ip netns exec a ping -c 2 -W 3 10.0.0.254 | grep 'packet loss'"

# A rate limit igb programs (RTTDQSEL/RTTBCNRC), enforced on VF 0's transmit queue.
# iperf3 leaves out its first second (TCP's slow start).
check rate-100 ip link set eth0 vf 0 max_tx_rate 100
ip netns exec b iperf3 -s -1 -D
sleep 1
value iperf-100 sh -c "/usr/sbin/ip netns exec a iperf3 -c 10.0.0.2 -t 5 -O 1 -f m 2>&1 | grep receiver"
check rate-0 ip link set eth0 vf 0 max_tx_rate 0

# Anti-spoof: frames from a MAC VF 0 does not own.
value spoofchk sh -c "/usr/sbin/ip link show eth0 | grep -E '^ *vf 0 ' | grep -o 'spoof checking [a-z]*'"
check spoof-send ip netns exec a sriov-emu-guest-send frames dev=$A dst=02:00:00:00:01:01 src=02:00:00:00:09:99 count=5

# A port VLAN on VF 1 (VMVIR, VLVF): VF 0 no longer reaches it, the PF's VLAN 10 does.
check vf1-vlan-10 ip link set eth0 vf 1 vlan 10
check modprobe-8021q modprobe 8021q
ip link add link eth0 name eth0.10 type vlan id 10
ip addr add 10.0.10.254/24 dev eth0.10
ip link set eth0.10 up
check_fails vlan-isolates ip netns exec a ping -c 2 -W 1 10.0.0.2
if wait_for 30 ping -c 1 -W 1 10.0.10.2; then
    result pf-vlan-reaches-vf1 pass "10.0.10.2 answers over eth0.10"
else
    result pf-vlan-reaches-vf1 fail "no answer over eth0.10"
fi
check vf1-vlan-0 ip link set eth0 vf 1 vlan 0
if wait_for 30 ip netns exec a ping -c 1 -W 1 10.0.0.2; then
    result vlan-removed pass "10.0.0.2 answers again"
else
    result vlan-removed fail "no answer"
fi

check numvfs-0 sh -c "echo 0 > $PF/sriov_numvfs"
check_eq numvfs-after 0 cat $PF/sriov_numvfs
check_fails virtfn0-gone test -e $PF/virtfn0
# Enabled again (autoprobe on): igb answers the new VFs' reset handshakes, igbvf gets a link.
echo 1 > $PF/sriov_drivers_autoprobe
check numvfs-2-again sh -c "echo 2 > $PF/sriov_numvfs"
carriers() {
    for i in 0 1; do
        n=$(ls $PF/virtfn$i/net 2>/dev/null) || continue
        ip link set "$n" up
        cat /sys/class/net/$n/carrier
    done | tr -d '\n'
}
both_up() { [ "$(carriers)" = 11 ]; }
if wait_for 60 both_up; then
    result vf-links-again pass "$(carriers)"
else
    result vf-links-again fail "carriers: $(carriers); $(ls /sys/class/net | tr '\n' ' ')"
fi
"#;

#[test]
fn the_guests_igb_manages_the_vfs_and_the_switch_enforces_its_settings() {
    let Some(qemu) = patched_qemu() else {
        return;
    };
    sriov_emu_tests::build_guest_helper();
    let dir = serve_dir("full-system-guest-pf");
    let config = ServeConfig {
        pf_mac: Some(PF_MAC.into()),
        pf_driver: Some(model::nic::PfDriver::Guest),
        ..ServeConfig::default()
    };
    let serving = Serving::start(&dir, &config, Some(VFS)).expect("serve");
    eprint!("{}", serving.banner());
    let helper = scenarios::guest_send::locate().unwrap_or_else(|e| panic!("{e}"));
    let cfg = GuestConfig::new("full-system-guest-pf", GUEST_PF_SCRIPT)
        .qemu(&qemu)
        .qemu_args(devices(&dir))
        .timeout(Duration::from_secs(300));
    let cfg = scenarios::guests::with_helper(cfg, &helper, &dir).expect("the guest helper");
    let t = Instant::now();
    let out = Guest::new(cfg).run().unwrap_or_else(|e| panic!("{e}"));
    eprintln!("guest ran {:?}", t.elapsed());
    let s = serve_support::show(&dir);
    serving.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    for r in &out.results {
        eprintln!("  {} {:?}: {}", r.name, r.status, r.detail);
    }
    out.assert_completed();
    assert!(out.expect_pass("netdev").detail.contains("DRIVER=igb"));
    for name in [
        "pf-carrier",
        "totalvfs",
        "numvfs-2",
        "numvfs",
        "vf0-admin-mac",
        "vf1-admin-mac",
        "vf-netdevs",
        // igb's answer to each VF's reset handshake carried the MAC it was told.
        "vf0-netdev-mac",
        "vf1-netdev-mac",
        "vf-reach",
        "vf0-reaches-pf",
        "rate-100",
        "rate-0",
        "spoof-send",
        "vf1-vlan-10",
        "vlan-isolates",
        "pf-vlan-reaches-vf1",
        "vf1-vlan-0",
        "vlan-removed",
        "numvfs-0",
        "numvfs-after",
        "virtfn0-gone",
        "numvfs-2-again",
        "vf-links-again",
    ] {
        out.expect_pass(name);
    }
    let vfs = &out.expect_pass("ip-link-vfs").detail;
    assert!(vfs.contains("02:00:00:00:01:00"), "{vfs}");
    let ping = &out.expect_pass("vf-ping").detail;
    assert!(ping.contains(" 0% packet loss"), "{ping}");
    // iperf3's receiver line: "... 59.6 MBytes  100 Mbits/sec  receiver".
    let iperf = &out.expect_pass("iperf-100").detail;
    let mbps: f64 = iperf
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .find(|w| w[1] == "Mbits/sec")
        .and_then(|w| w[0].parse().ok())
        .unwrap_or_else(|| panic!("no rate in {iperf:?}"));
    assert_shaped_tcp(mbps, 100.0, &format!("max_tx_rate 100: {iperf}"));
    assert_eq!(
        out.expect_pass("spoofchk").detail.trim(),
        "spoof checking on"
    );
    // The switch's word: the forged frames dropped at VF 0, VF 0's ARP broadcast at VF 1.
    let vf = |n: usize| &s["vfs"][n]["port"];
    assert!(
        vf(0)["drops"]["spoof_mac"].as_u64() >= Some(5),
        "spoof_mac at vf0: {}",
        vf(0)
    );
    assert!(
        vf(1)["rx_broadcast"].as_u64() >= Some(1),
        "VF 0's ARP at vf1: {}",
        vf(1)
    );
    assert_eq!(s["pf_driver"], "guest", "{s}");
}

/// `serve` told about the QEMU its guests run (`--qemu`, `qemu = ...`) refuses full-system mode
/// with the stock QEMU, which hides SR-IOV, saying so; the patched one passes; without a
/// guest-mode port the QEMU is not run at all.
#[test]
fn serve_refuses_full_system_mode_with_a_qemu_that_hides_sriov() {
    let stock = sriov_emu_tests::Artifacts::locate()
        .unwrap_or_else(|e| panic!("{e}"))
        .qemu;
    let dir = serve_dir("full-system-refused");
    let guest = |qemu: &Path| ServeConfig {
        pf_driver: Some(model::nic::PfDriver::Guest),
        qemu: Some(qemu.into()),
        ..ServeConfig::default()
    };
    let err = match Serving::start(&dir, &guest(&stock), Some(2)) {
        Err(e) => e.to_string(),
        Ok(s) => {
            s.shutdown();
            panic!("serve started full-system mode with the stock QEMU");
        }
    };
    eprintln!("{err}");
    assert!(err.contains("full-system mode"), "{err}");
    assert!(err.contains("lacks SR-IOV for vfio-user devices"), "{err}");
    assert!(err.contains(&stock.display().to_string()), "{err}");
    assert!(!dir.join("pf0.sock").exists(), "nothing was started");
    let embedded = ServeConfig {
        qemu: Some(stock.clone()),
        ..ServeConfig::default()
    };
    Serving::start(&dir, &embedded, Some(2))
        .expect("embedded mode does not need the patch")
        .shutdown();
    if let Some(patched) = patched_qemu() {
        let s = Serving::start(&dir, &guest(&patched), Some(2)).expect("the patched QEMU");
        assert!(s.banner().contains("full-system mode"), "{}", s.banner());
        assert!(s.banner().contains("\"sriov-pf\":\"pf\""), "{}", s.banner());
        s.shutdown();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
