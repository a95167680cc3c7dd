use super::*;
use crate::uplink::SockAddr;
use mailbox::MacAssignment;

fn cfg(text: &str) -> ServeConfig {
    toml::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn plan(text: &str, cli: &CommandLine) -> Result<CardPlan, ServeError> {
    cfg(text).plan(cli)
}

fn cli(ports: Option<u8>, vfs: &[&str], uplinks: &[&str]) -> CommandLine {
    CommandLine {
        ports,
        vfs: vfs.iter().map(|a| PortArg::vfs(a).unwrap()).collect(),
        uplinks: uplinks
            .iter()
            .map(|a| PortArg::uplink(a).unwrap())
            .collect(),
        busy_poll_us: None,
        nap_poll_us: None,
        model: None,
        pf_drivers: Vec::new(),
        qemu: None,
    }
}

fn error(text: &str, cli: &CommandLine) -> String {
    match plan(text, cli) {
        Ok(p) => panic!("{text}: accepted as {p:?}"),
        Err(e) => e.to_string(),
    }
}

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

#[test]
fn the_single_port_form_is_port_pf0_as_before() {
    let p = plan("", &CommandLine::default()).unwrap();
    assert_eq!(p.ports.len(), 1);
    let pf0 = &p.ports[0];
    assert_eq!((pf0.pf, pf0.at.as_str()), (0, ""));
    assert_eq!(pf0.nic.num_vfs, DEFAULT_VFS);
    assert_eq!(pf0.nic.pf_mac, NicConfig::default().pf_mac);
    assert_eq!(pf0.nic.mac_assignment, MacAssignment::AdminOnly);
    assert!(pf0.settings.is_empty());
    assert_eq!(pf0.uplink, UplinkSpec::None);
    assert_eq!(p.busy_poll_us, DEFAULT_BUSY_POLL_US);
    assert_eq!(p.nap_poll_us, DEFAULT_NAP_POLL_US);

    let text = "vfs = 3\nmac_assignment = \"generated\"\nbusy_poll_us = 0\nnap_poll_us = 0\n\
                [vf]\n1 = \"mac 02:00:00:00:00:11 vlan 10\"\n";
    let p = plan(text, &cli(None, &["2"], &[])).unwrap();
    let pf0 = &p.ports[0];
    assert_eq!(pf0.nic.num_vfs, 2, "--vfs wins over the file");
    assert_eq!(
        pf0.nic.mac_assignment,
        MacAssignment::Generated {
            seed: MacMode::GENERATED_SEED
        },
        "pf0's generated MACs as before"
    );
    assert_eq!(pf0.settings.len(), 1);
    assert_eq!(pf0.settings[0].0, 1);
    assert_eq!(p.busy_poll_us, 0);
    assert_eq!(p.nap_poll_us, 0);
}

#[test]
fn ports_tables_configure_each_port_of_a_card() {
    let text = r#"
        vfs = 2
        [uplink]
        kind = "dgram"
        local = "127.0.0.1:5555"
        remote = "127.0.0.1:5556"

        [ports.pf1]
        vfs = 1
        mac_assignment = "generated"
        vf = { 0 = "vlan 10" }
        uplink = { kind = "dgram", local = "127.0.0.1:5556", remote = "127.0.0.1:5555" }

        [ports.pf2]
    "#;
    let p = plan(text, &CommandLine::default()).unwrap();
    let ports: Vec<(u8, &str, u16)> = p
        .ports
        .iter()
        .map(|p| (p.pf, p.at.as_str(), p.nic.num_vfs))
        .collect();
    assert_eq!(
        ports,
        [
            (0, "", 2),
            (1, "ports.pf1.", 1),
            (2, "ports.pf2.", DEFAULT_VFS)
        ]
    );
    // Each port's PF has its own MAC, numbered like a scenario card's.
    let macs: Vec<MacAddr> = p.ports.iter().map(|p| p.nic.pf_mac).collect();
    assert_eq!(
        macs,
        [
            mac("02:00:00:00:00:01"),
            mac("02:00:00:00:00:02"),
            mac("02:00:00:00:00:03")
        ]
    );
    // Generated VF MACs carry the port, so that VF 0 of pf0 and of pf1 differ on a cable.
    assert_eq!(
        p.ports[1].nic.mac_assignment,
        MacAssignment::Generated {
            seed: [0x52, 0x54, 0x01]
        }
    );
    assert_eq!(p.ports[1].settings.len(), 1);
    let dgram = |l: &str, r: &str| UplinkSpec::Dgram {
        local: SockAddr::Inet(l.parse().unwrap()),
        remote: SockAddr::Inet(r.parse().unwrap()),
    };
    assert_eq!(p.ports[0].uplink, dgram("127.0.0.1:5555", "127.0.0.1:5556"));
    assert_eq!(p.ports[1].uplink, dgram("127.0.0.1:5556", "127.0.0.1:5555"));
    assert_eq!(p.ports[2].uplink, UplinkSpec::None);
}

#[test]
fn pf0_may_be_a_table_and_pf_names_it_too() {
    for key in ["pf0", "pf"] {
        let p = plan(
            &format!("[ports.{key}]\nvfs = 3\n[ports.pf1]\nvfs = 4"),
            &cli(None, &["pf1=5"], &[]),
        )
        .unwrap();
        assert_eq!(p.ports[0].nic.num_vfs, 3);
        assert_eq!(p.ports[0].at, format!("ports.{key}."));
        assert_eq!(p.ports[1].nic.num_vfs, 5, "--vfs pf1=5 wins over the file");
    }
}

#[test]
fn the_command_line_adds_ports_and_sets_them_one_by_one() {
    // `--ports 3 --vfs 2 --vfs pf2=4 --uplink pf1=tap:name=t1 --uplink dgram:...`.
    let c = cli(
        Some(3),
        &["2", "pf2=4"],
        &[
            "pf1=tap:name=t1",
            "dgram:local=127.0.0.1:7000,remote=127.0.0.1:7001",
        ],
    );
    assert_eq!(c.vfs[1], PortArg { pf: 2, value: 4 });
    assert_eq!(c.uplinks[0].pf, 1);
    assert_eq!(c.uplinks[1].pf, 0, "a KIND:KEY=... spec is pf0's");
    let p = plan("", &c).unwrap();
    let vfs: Vec<u16> = p.ports.iter().map(|p| p.nic.num_vfs).collect();
    assert_eq!(vfs, [2, DEFAULT_VFS, 4]);
    assert_eq!(
        p.ports[1].uplink,
        UplinkSpec::Tap {
            name: "t1".parse().unwrap()
        }
    );
    assert!(matches!(p.ports[0].uplink, UplinkSpec::Dgram { .. }));
    // A port named by an option alone exists with the defaults otherwise.
    let p = plan("", &cli(None, &[], &["pf1=none"])).unwrap();
    assert_eq!(p.ports.len(), 2);
    // `--uplink` replaces the file's table of that port only.
    let p = plan(
        "[uplink]\nkind = \"tap\"\nname = \"t0\"\n[ports.pf1.uplink]\nkind = \"tap\"\nname = \"t1\"",
        &cli(None, &[], &["pf1=none"]),
    )
    .unwrap();
    assert!(matches!(p.ports[0].uplink, UplinkSpec::Tap { .. }));
    assert_eq!(p.ports[1].uplink, UplinkSpec::None);
}

#[test]
fn option_values_are_checked_with_their_port_prefix() {
    let e = |r: Result<PortArg<u16>, ServeError>| r.unwrap_err().to_string();
    assert_eq!(
        e(PortArg::vfs("px=3")),
        "--vfs \"px=3\": `px` is not a PF (expected pf or pfK)"
    );
    assert_eq!(
        e(PortArg::vfs("pf1=many")),
        "--vfs \"pf1=many\": \"many\" is not a number of VFs"
    );
    assert_eq!(PortArg::vfs("pf=3").unwrap(), PortArg { pf: 0, value: 3 });
    assert_eq!(
        PortArg::uplink("pf1=bogus").unwrap_err().to_string(),
        "--uplink \"pf1=bogus\": unknown kind \"bogus\": one of none, tap, stream, dgram"
    );
    assert_eq!(
        PortArg::uplink("local=127.0.0.1:1")
            .unwrap_err()
            .to_string(),
        "--uplink \"local=127.0.0.1:1\": `local` is not a PF (expected pf or pfK)"
    );
    assert_eq!(PortArg::uplink("none").unwrap().pf, 0);
}

/// Each configuration, file and command line, refused with its message.
fn refused(cases: &[(&str, CommandLine, &str)]) {
    for (text, cli, want) in cases {
        assert_eq!(error(text, cli), *want, "{text} {cli:?}");
    }
}

#[test]
fn port_names_and_numbering_are_checked() {
    let none = CommandLine::default;
    refused(&[
        (
            "[ports.eth1]",
            none(),
            "ports.eth1: `eth1` is not a PF (expected pf or pfK)",
        ),
        (
            "[ports.\"pf1.vf0\"]",
            none(),
            "ports.pf1.vf0: `pf1.vf0` is not a PF (expected pf or pfK)",
        ),
        (
            "[ports.pf]\n[ports.pf0]",
            none(),
            "ports.pf and ports.pf0 are both port pf0: name it once",
        ),
        (
            "vfs = 2\nuplink.kind = \"none\"\n[ports.pf0]\nvfs = 1",
            none(),
            "port pf0 is configured twice: by the top-level vfs and by [ports.pf0]; \
             move them into [ports.pf0]",
        ),
        (
            "[ports.pf2]",
            none(),
            "port pf1 is missing: a card's ports are pf0, pf1, ... without gaps, and pf2 is \
             configured (an empty [ports.pf1] gives it the defaults)",
        ),
        (
            "[ports.pf4]",
            none(),
            "ports.pf4: a card has 1 to 4 ports, pf0 to pf3",
        ),
        (
            "[ports.pf2]",
            cli(Some(2), &[], &[]),
            "port pf2 is configured ([ports.pf2]) but --ports is 2",
        ),
        (
            "",
            cli(Some(1), &["pf1=2"], &[]),
            "port pf1 is configured (--vfs) but --ports is 1",
        ),
        (
            "",
            cli(Some(0), &[], &[]),
            "--ports 0: a card has 1 to 4 ports, pf0 to pf3",
        ),
        (
            "",
            cli(Some(5), &[], &[]),
            "--ports 5: a card has 1 to 4 ports, pf0 to pf3",
        ),
        (
            "",
            cli(None, &["2", "pf0=3"], &[]),
            "--vfs: port pf0 given twice",
        ),
        (
            "",
            cli(None, &[], &["pf1=none", "pf1=none"]),
            "--uplink: port pf1 given twice",
        ),
    ]);
    assert!(
        toml::from_str::<ServeConfig>("[ports.pf1]\nvf_count = 2").is_err(),
        "unknown key in a port table"
    );
    assert!(
        toml::from_str::<ServeConfig>("[ports.pf1]\n[ports.pf1]").is_err(),
        "a table twice"
    );
}

#[test]
fn errors_name_the_port_and_the_field() {
    let none = CommandLine::default;
    refused(&[
        // The single-port form's fields have no prefix.
        ("vfs = 0", none(), "vfs = 0: a port has 1..=256 VFs"),
        (
            "[ports.pf1]\nvfs = 300",
            none(),
            "ports.pf1.vfs = 300: a port has 1..=256 VFs",
        ),
        (
            "[ports.pf1]\nuplink.kind = \"tap\"",
            none(),
            "ports.pf1.uplink.name is required with kind = \"tap\"",
        ),
        (
            "",
            cli(None, &[], &["pf1=dgram:local=nowhere,remote=127.0.0.1:1"]),
            "ports.pf1.uplink.local = \"nowhere\": not HOST:PORT or unix:PATH \
             (invalid socket address)",
        ),
        (
            "[ports.pf1]\nvfs = 2\nvf.3 = \"trust on\"",
            none(),
            "ports.pf1.vf.3: not a VF of this port (it has VFs 0..1)",
        ),
        (
            // One VF under two keys: refused, not applied twice in the keys' order.
            "[vf]\n0 = \"trust off\"\n00 = \"trust on\"",
            none(),
            "vf.00: VF 0 has settings under vf.0 already",
        ),
        (
            "[ports.pf1]\npf_mac = \"ff:ff:ff:ff:ff:ff\"",
            none(),
            "ports.pf1.pf_mac = ff:ff:ff:ff:ff:ff: not a unicast address",
        ),
        (
            "[ports.pf1]\npf_mac = \"02:00:00:00:00:01\"",
            none(),
            "ports.pf1.pf_mac = 02:00:00:00:00:01: port pf0 has this PF MAC too; \
             each port's PF needs its own",
        ),
        (
            "busy_poll_us = 5000",
            none(),
            "busy_poll_us must be 0..=1000, got 5000",
        ),
        (
            "nap_poll_us = 200000",
            none(),
            "nap_poll_us must be 0..=100000, got 200000",
        ),
        (
            "[ports.pf1]\npromisc_policy = \"all\"",
            none(),
            "ports.pf1.promisc_policy: promiscuous policy \"all\": expected \"igb\" or \"trusted-only\"",
        ),
        (
            "[client_limits]\ndma_maps = 70000",
            none(),
            "client_limits.dma_maps = 70000: must be 1..=65535",
        ),
        (
            "[client_limits]\nfds = 0",
            none(),
            "client_limits.fds = 0: must be above 0 (QEMU passes eventfds and memfds)",
        ),
    ]);
    assert!(error("[ports.pf1]\nvf.0 = \"vlan ten\"", &none()).starts_with("ports.pf1.vf.0: "));
}

#[test]
fn two_ports_cannot_take_one_wire() {
    let none = CommandLine::default();
    for (uplink, field) in [
        ("{ kind = \"tap\", name = \"t0\" }", "name"),
        (
            "{ kind = \"stream\", listen = \"127.0.0.1:5555\" }",
            "listen",
        ),
        (
            "{ kind = \"dgram\", local = \"unix:/tmp/c.sock\", remote = \"unix:/tmp/d.sock\" }",
            "local",
        ),
    ] {
        let text = format!("uplink = {uplink}\n[ports.pf1]\nuplink = {uplink}");
        let e = error(&text, &none);
        assert!(
            e.starts_with(&format!("ports.pf1.uplink.{field} = "))
                && e.ends_with(": port pf0's uplink takes it already"),
            "{e}"
        );
    }
    // Clients of one stream server, and UDP ports the kernel picks, take nothing.
    for uplink in [
        "{ kind = \"stream\", connect = \"127.0.0.1:5555\" }",
        "{ kind = \"dgram\", local = \"127.0.0.1:0\", remote = \"127.0.0.1:5555\" }",
    ] {
        let text = format!("uplink = {uplink}\n[ports.pf1]\nuplink = {uplink}");
        assert!(plan(&text, &none).is_ok(), "{text}");
    }
}

#[test]
fn client_limits_default_and_are_set_field_by_field() {
    let p = plan("", &CommandLine::default()).unwrap();
    assert_eq!(p.client_limits, ClientLimits::default());
    let p = plan("[client_limits]\nfds = 200", &CommandLine::default()).unwrap();
    assert_eq!(
        p.client_limits,
        ClientLimits {
            fds: 200,
            ..ClientLimits::default()
        }
    );
    assert!(toml::from_str::<ServeConfig>("[client_limits]\nmaps = 1").is_err());
}

#[test]
fn the_card_comes_from_the_file_per_port_or_from_the_command_line_for_all() {
    use model::nic::Card;
    let p = plan(
        "model = \"82599\"\n[ports.pf1]\nvfs = 2\n",
        &CommandLine::default(),
    )
    .unwrap();
    assert_eq!(p.ports[0].nic.card, Card::X82599);
    assert_eq!(
        p.ports[0].nic.link_speed_mbps, 10_000,
        "the 82599's 10 Gb/s"
    );
    assert_eq!(
        p.ports[1].nic.card,
        Card::I82576,
        "pf1 says nothing: the default"
    );
    assert_eq!(p.ports[1].nic.link_speed_mbps, 1000);
    let all = CommandLine {
        model: Some(Card::X82599),
        ..cli(Some(2), &[], &[])
    };
    let p = plan("", &all).unwrap();
    assert!(p.ports.iter().all(|port| port.nic.card == Card::X82599));
    let e = toml::from_str::<ServeConfig>("model = \"82598\"").unwrap_err();
    assert!(e.to_string().contains("expected `82576` or `82599`"), "{e}");
}

#[test]
fn pf_driver_guest_is_per_port_and_82576_only() {
    let p = plan("pf_driver = \"guest\"\nvfs = 4", &cli(None, &[], &[])).unwrap();
    assert_eq!(p.ports[0].nic.pf_driver, PfDriver::Guest);
    let two = CommandLine {
        pf_drivers: vec![PortArg::pf_driver("pf1=guest").unwrap()],
        ..cli(Some(2), &[], &[])
    };
    let p = plan("", &two).unwrap();
    assert_eq!(p.ports[0].nic.pf_driver, PfDriver::Embedded);
    assert_eq!(p.ports[1].nic.pf_driver, PfDriver::Guest);
    let e = plan(
        "pf_driver = \"guest\"\nmodel = \"82599\"",
        &cli(None, &[], &[]),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("82576 only"), "{e}");
    let e = plan("pf_driver = \"guest\"\nvfs = 9", &cli(None, &[], &[]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("at most 8 VFs"), "{e}");
    let e = plan(
        "pf_driver = \"guest\"\n[vf]\n0 = \"mac 02:00:00:00:00:10\"",
        &cli(None, &[], &[]),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("ip link set <pf> vf N"), "{e}");
    let e = plan(
        "pf_driver = \"guest\"\npromisc_policy = \"trusted-only\"",
        &cli(None, &[], &[]),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("SET_PROMISC itself"), "{e}");
    let e = PortArg::pf_driver("host").unwrap_err().to_string();
    assert!(e.contains("`embedded`") && e.contains("`guest`"), "{e}");
    assert!(toml::from_str::<ServeConfig>("pf_driver = \"host\"").is_err());
}
