//! Port names in scenario files. A card has one or more ports (`[nic] ports`), each a
//! `model::Nic` of its own: a PF, its VFs, its embedded switch and its uplinks. Port 0's switch
//! ports keep their plain names (`pf`, `vf3`, `uplink0`); another port's are qualified by its
//! PF: `pf1` is the PF of port 1, `pf1.vf3` and `pf1.uplink0` its VF and uplink. `pf0`,
//! `pf0.vf3` and `pf0.uplink0` name port 0's as well.
//!
//! A name prints in its shortest form (port 0's unqualified), so `parse(print(p)) == p` for
//! every port, and `print(parse(s)) == s` for every name already in that form.

use std::fmt;
use std::str::FromStr;

use eswitch::PortId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A switch port of one of the card's ports: `nic` is the card port (the index of its
/// `model::Nic`), `port` the port of that NIC's switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRef {
    pub nic: u8,
    pub port: PortId,
}

impl PortRef {
    pub const fn new(nic: u8, port: PortId) -> PortRef {
        PortRef { nic, port }
    }

    /// A port of port 0's switch (what a single-port card has).
    pub const fn local(port: PortId) -> PortRef {
        PortRef { nic: 0, port }
    }
}

/// The PF of one card port: `pf` or `pf0` (port 0), `pf1`, ... Names the port in policies, the
/// `set` and `link` steps and policy checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PfRef(pub u8);

impl From<PfRef> for PortRef {
    fn from(pf: PfRef) -> PortRef {
        PortRef::new(pf.0, PortId::Pf)
    }
}

/// An uplink of one card port: `uplink0` or `pf0.uplink0` (port 0), `pf1.uplink0`, ... The
/// ends of a cable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UplinkRef {
    pub nic: u8,
    pub uplink: u8,
}

impl From<UplinkRef> for PortRef {
    fn from(u: UplinkRef) -> PortRef {
        PortRef::new(u.nic, PortId::Uplink(u.uplink))
    }
}

/// A name that does not parse as what it must be.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PortNameError {
    #[error("`{0}` is not a port (expected pf, vfN, uplinkN, pfK, pfK.vfN or pfK.uplinkN)")]
    NotAPort(String),
    #[error("`{0}` is not a PF (expected pf or pfK)")]
    NotAPf(String),
    #[error("`{0}` is not an uplink (expected uplinkN or pfK.uplinkN)")]
    NotAnUplink(String),
}

/// A decimal number of plain digits (no sign, no spaces), in `T`'s range.
fn number<T: FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A port of one switch: `pf`, `vfN`, `uplinkN`.
fn switch_port(s: &str) -> Option<PortId> {
    if s == "pf" {
        return Some(PortId::Pf);
    }
    if let Some(n) = s.strip_prefix("uplink") {
        return number(n).map(PortId::Uplink);
    }
    s.strip_prefix("vf").and_then(number).map(PortId::Vf)
}

impl FromStr for PortRef {
    type Err = PortNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || PortNameError::NotAPort(s.to_string());
        // `pfK` or `pfK.<vfN | uplinkN>`.
        if let Some(rest) = s.strip_prefix("pf") {
            let (k, tail) = match rest.split_once('.') {
                Some((k, tail)) => (k, Some(tail)),
                None => (rest, None),
            };
            if let Some(nic) = number(k) {
                return match tail.map(switch_port) {
                    None => Ok(PortRef::new(nic, PortId::Pf)),
                    Some(Some(port)) if port != PortId::Pf => Ok(PortRef::new(nic, port)),
                    Some(_) => Err(bad()),
                };
            }
        }
        switch_port(s).map(PortRef::local).ok_or_else(bad)
    }
}

impl fmt::Display for PortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.nic, self.port) {
            (0, port) => port.fmt(f),
            (nic, PortId::Pf) => write!(f, "pf{nic}"),
            (nic, port) => write!(f, "pf{nic}.{port}"),
        }
    }
}

impl FromStr for PfRef {
    type Err = PortNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.parse::<PortRef>() {
            Ok(PortRef {
                nic,
                port: PortId::Pf,
            }) => Ok(PfRef(nic)),
            _ => Err(PortNameError::NotAPf(s.to_string())),
        }
    }
}

impl fmt::Display for PfRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        PortRef::from(*self).fmt(f)
    }
}

impl FromStr for UplinkRef {
    type Err = PortNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.parse::<PortRef>() {
            Ok(PortRef {
                nic,
                port: PortId::Uplink(uplink),
            }) => Ok(UplinkRef { nic, uplink }),
            _ => Err(PortNameError::NotAnUplink(s.to_string())),
        }
    }
}

impl fmt::Display for UplinkRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        PortRef::from(*self).fmt(f)
    }
}

/// Serde as the name: read with `FromStr` (its error, with the value's position, when it does
/// not parse), written with `Display`.
macro_rules! serde_by_name {
    ($($t:ty),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }

        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    )*};
}

serde_by_name!(PortRef, PfRef, UplinkRef);

/// A plugged cable between two uplinks (`a == b`: a loopback plug).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Cable {
    pub a: UplinkRef,
    pub b: UplinkRef,
}

impl Cable {
    /// The port at the other end of the cable from `end`, if `end` is one of its ends.
    pub fn peer(&self, end: PortRef) -> Option<PortRef> {
        if end == self.a.into() {
            Some(self.b.into())
        } else if end == self.b.into() {
            Some(self.a.into())
        } else {
            None
        }
    }

    /// Whether this cable joins `a` and `b`, either way round.
    pub fn joins(&self, a: UplinkRef, b: UplinkRef) -> bool {
        (self.a, self.b) == (a, b) || (self.a, self.b) == (b, a)
    }
}

impl fmt::Display for Cable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ↔ {}", self.a, self.b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(s: &str) -> Result<PortRef, PortNameError> {
        s.parse()
    }

    #[test]
    fn port_zero_keeps_the_plain_names() {
        assert_eq!(port("pf"), Ok(PortRef::local(PortId::Pf)));
        assert_eq!(port("vf12"), Ok(PortRef::local(PortId::Vf(12))));
        assert_eq!(port("uplink0"), Ok(PortRef::local(PortId::Uplink(0))));
        // Qualified with pf0, the same ports.
        assert_eq!(port("pf0"), port("pf"));
        assert_eq!(port("pf0.vf12"), port("vf12"));
        assert_eq!(port("pf0.uplink0"), port("uplink0"));
    }

    #[test]
    fn other_ports_are_qualified_by_their_pf() {
        assert_eq!(port("pf1"), Ok(PortRef::new(1, PortId::Pf)));
        assert_eq!(port("pf1.vf3"), Ok(PortRef::new(1, PortId::Vf(3))));
        assert_eq!(port("pf2.uplink1"), Ok(PortRef::new(2, PortId::Uplink(1))));
        assert_eq!(
            port("pf255.vf65535"),
            Ok(PortRef::new(255, PortId::Vf(65535)))
        );
    }

    #[test]
    fn malformed_names_are_errors_not_guesses() {
        for bad in [
            "",
            "eth0",
            "vf",
            "uplink",
            "pf.vf1",
            "pf1.",
            "pf1.pf",
            "pf1.pf1",
            "pf1.vf",
            "pf1.eth0",
            "pf1vf0",
            "pf1.vf0.vf1",
            "pf256",
            "pf1.uplink256",
            "vf65536",
            "vf+1",
            "vf 1",
            " vf1",
            "pf-1",
            "PF1",
            "pf1..vf0",
        ] {
            assert_eq!(
                port(bad),
                Err(PortNameError::NotAPort(bad.to_string())),
                "`{bad}`"
            );
        }
        assert_eq!(
            port("eth0").unwrap_err().to_string(),
            "`eth0` is not a port (expected pf, vfN, uplinkN, pfK, pfK.vfN or pfK.uplinkN)"
        );
    }

    #[test]
    fn every_port_round_trips_through_its_name() {
        for nic in [0, 1, 3, 255] {
            for p in [
                PortId::Pf,
                PortId::Vf(0),
                PortId::Vf(7),
                PortId::Vf(u16::MAX),
                PortId::Uplink(0),
                PortId::Uplink(u8::MAX),
            ] {
                let r = PortRef::new(nic, p);
                let name = r.to_string();
                assert_eq!(port(&name), Ok(r), "{name}");
            }
        }
        // Names in the shortest form print as they were written.
        for name in ["pf", "vf3", "uplink1", "pf1", "pf1.vf3", "pf2.uplink0"] {
            assert_eq!(port(name).unwrap().to_string(), name);
        }
        // pf0's qualified names print in the short form.
        assert_eq!(port("pf0.vf3").unwrap().to_string(), "vf3");
        assert_eq!(port("pf0").unwrap().to_string(), "pf");
    }

    #[test]
    fn pf_and_uplink_names_accept_only_their_kind() {
        assert_eq!("pf".parse(), Ok(PfRef(0)));
        assert_eq!("pf0".parse(), Ok(PfRef(0)));
        assert_eq!("pf1".parse(), Ok(PfRef(1)));
        for bad in ["vf0", "pf1.vf0", "uplink0", "eth0"] {
            assert_eq!(bad.parse::<PfRef>(), Err(PortNameError::NotAPf(bad.into())));
        }
        assert_eq!("pf1.uplink2".parse(), Ok(UplinkRef { nic: 1, uplink: 2 }));
        assert_eq!("uplink0".parse(), Ok(UplinkRef { nic: 0, uplink: 0 }));
        for bad in ["pf", "pf1", "pf1.vf0", "vf0", "eth0"] {
            assert_eq!(
                bad.parse::<UplinkRef>(),
                Err(PortNameError::NotAnUplink(bad.into()))
            );
        }
        for pf in [PfRef(0), PfRef(1), PfRef(200)] {
            assert_eq!(pf.to_string().parse(), Ok(pf));
        }
        for u in [
            UplinkRef { nic: 0, uplink: 0 },
            UplinkRef { nic: 1, uplink: 3 },
        ] {
            assert_eq!(u.to_string().parse(), Ok(u));
        }
        assert_eq!(PfRef(1).to_string(), "pf1");
        assert_eq!(UplinkRef { nic: 1, uplink: 0 }.to_string(), "pf1.uplink0");
    }

    #[test]
    fn serde_reads_and_writes_the_name() {
        #[derive(Deserialize, Serialize, Debug, PartialEq)]
        struct T {
            p: PortRef,
            pf: PfRef,
            u: UplinkRef,
        }
        let t: T = toml::from_str("p = \"pf1.vf2\"\npf = \"pf1\"\nu = \"pf0.uplink0\"").unwrap();
        assert_eq!(
            t,
            T {
                p: PortRef::new(1, PortId::Vf(2)),
                pf: PfRef(1),
                u: UplinkRef { nic: 0, uplink: 0 },
            }
        );
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"p":"pf1.vf2","pf":"pf1","u":"uplink0"}"#
        );
        let e = toml::from_str::<T>("p = \"vf0\"\npf = \"pf1.vf0\"\nu = \"uplink0\"").unwrap_err();
        assert!(e.message().contains("`pf1.vf0` is not a PF"), "{e}");
    }
}
