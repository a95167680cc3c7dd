//! An endpoint's own view of its interface, as `expect.endpoint` reads it: its MAC, carrier,
//! neighbour table and interface counters. In process the runner's endpoint record; in guest
//! mode what the guest itself says, read with one shell command ([`GUEST_COMMAND`]) and parsed
//! without trusting it ([`parse`]: a line it cannot read is skipped, never a panic).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use eswitch::MacAddr;

use crate::world::World;

/// What an endpoint says about its interface.
#[derive(Clone, Debug, Default)]
pub(crate) struct NetView {
    /// Where the view comes from, for the report: `guest` or `runner`.
    pub(crate) source: &'static str,
    pub(crate) mac: Option<MacAddr>,
    pub(crate) carrier: Option<bool>,
    /// Each neighbour: its link-layer address if it has one, and its state
    /// (Linux's `REACHABLE`, `FAILED`, ...; `known` in process).
    pub(crate) neighbours: BTreeMap<Ipv4Addr, (Option<MacAddr>, String)>,
    pub(crate) stats: BTreeMap<String, u64>,
    /// The guest did not answer: why.
    pub(crate) error: Option<String>,
}

/// Prints the guest's view of eth0, one fact a line (`mac M`, `carrier 1`, `stat NAME N`,
/// `neigh IP lladdr M STATE`).
pub(crate) const GUEST_COMMAND: &str = r#"d=/sys/class/net/eth0
echo "mac $(cat $d/address 2>/dev/null)"
echo "carrier $(cat $d/carrier 2>/dev/null)"
for f in $d/statistics/*; do echo "stat ${f##*/} $(cat $f 2>/dev/null)"; done
ip neigh show dev eth0 2>/dev/null | sed 's/^/neigh /'
true"#;

/// Reads [`GUEST_COMMAND`]'s output.
pub(crate) fn parse(output: &str) -> NetView {
    let mut v = NetView {
        source: "guest",
        ..NetView::default()
    };
    for line in output.lines() {
        let mut w = line.split_whitespace();
        match w.next() {
            Some("mac") => v.mac = w.next().and_then(|m| m.parse().ok()),
            Some("carrier") => {
                v.carrier = match w.next() {
                    Some("1") => Some(true),
                    Some("0") => Some(false),
                    _ => None,
                }
            }
            Some("stat") => {
                if let (Some(name), Some(Ok(n))) = (w.next(), w.next().map(str::parse)) {
                    v.stats.insert(name.to_string(), n);
                }
            }
            Some("neigh") => {
                let Some(Ok(ip)) = w.next().map(str::parse::<Ipv4Addr>) else {
                    continue;
                };
                let rest: Vec<&str> = w.collect();
                let mac = rest
                    .iter()
                    .position(|&x| x == "lladdr")
                    .and_then(|i| rest.get(i + 1))
                    .and_then(|m| m.parse().ok());
                let state = rest.last().copied().unwrap_or("").to_string();
                v.neighbours.insert(ip, (mac, state));
            }
            _ => {}
        }
    }
    v
}

/// The in-process endpoint `idx`'s view: its stack's MAC, neighbours and frame counts; for the
/// carrier, a driver-attached VF's software igbvf's (what its watchdog made of the link), any
/// other endpoint's port as the switch sees it.
pub(crate) fn of_record(world: &World, idx: usize) -> NetView {
    let ep = &world.endpoints[idx];
    let driver = ep
        .vf
        .as_ref()
        .filter(|g| g.attach == crate::format::Attach::Driver);
    let up = match driver {
        Some(g) => Some(g.guest.drv.carrier),
        None => world
            .nic(ep.port.nic)
            .and_then(|nic| nic.with_pf(|pf| pf.switch().port_up(ep.port.port)).ok()),
    };
    NetView {
        source: "runner",
        mac: Some(ep.stack.mac),
        carrier: up,
        neighbours: ep
            .stack
            .neighbours
            .iter()
            .map(|(&ip, &mac)| (ip, (Some(mac), "known".to_string())))
            .collect(),
        stats: BTreeMap::from([
            ("rx_packets".to_string(), ep.stack.rx_frames),
            ("tx_packets".to_string(), ep.stack.tx_frames),
        ]),
        error: None,
    }
}

/// A neighbour state is `known` when the entry has a link-layer address.
pub(crate) fn is_known(entry: Option<&(Option<MacAddr>, String)>) -> bool {
    entry.is_some_and(|(mac, state)| {
        mac.is_some() && !matches!(state.as_str(), "FAILED" | "INCOMPLETE")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guest_view_is_read_line_by_line_and_garbage_is_skipped() {
        let v = parse(
            "mac 02:00:00:00:00:12\ncarrier 1\nstat rx_packets 17\nstat tx_packets x\n\
             neigh 10.0.0.1 lladdr 02:00:00:00:00:01 REACHABLE\nneigh 10.0.0.99 FAILED\n\
             neigh nonsense\nstat\nmac\n\u{0}\u{ff}",
        );
        assert_eq!(v.mac, None, "the last `mac` line had no address");
        assert_eq!(v.carrier, Some(true));
        assert_eq!(v.stats.get("rx_packets"), Some(&17));
        assert_eq!(v.stats.get("tx_packets"), None);
        let ip: Ipv4Addr = "10.0.0.1".parse().unwrap();
        assert!(is_known(v.neighbours.get(&ip)));
        let gone: Ipv4Addr = "10.0.0.99".parse().unwrap();
        assert_eq!(v.neighbours[&gone], (None, "FAILED".to_string()));
        assert!(!is_known(v.neighbours.get(&gone)));
        let v = parse("mac 02:00:00:00:00:12\ncarrier 0\n");
        assert_eq!(v.mac, Some("02:00:00:00:00:12".parse().unwrap()));
        assert_eq!(v.carrier, Some(false));
    }
}
