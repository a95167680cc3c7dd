//! The administrator's per-VF settings, `ip link set PF vf N ...` in typed form, and the parser
//! for their `ip link` words (`mac M vlan V qos Q rate R spoofchk on trust off state auto`) that
//! `sriov-emu ctl` and scenario scripts share.

use thiserror::Error;

use crate::policy::{LinkState, MacAddr, PolicyError, PortVlan, VfPolicy, VlanProto};
use crate::policy::{MAX_QOS, MAX_VID};

/// One `ip link set PF vf N ...` setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VfSetting {
    /// `mac M`: the administrative MAC; all zeros clears it.
    Mac(MacAddr),
    /// `vlan V [qos Q] [proto P]`: the port VLAN; `vlan 0 qos 0` removes it.
    Vlan {
        vid: u16,
        qos: u8,
        proto: VlanProto,
    },
    /// `rate R` / `max_tx_rate R` / `min_tx_rate R` (Mbit/s). `None` leaves that bound as is.
    Rate {
        min: Option<u32>,
        max: Option<u32>,
    },
    SpoofChk(bool),
    Trust(bool),
    State(LinkState),
    /// `query_rss on|off`: whether the VF may read the PF's RSS redirection table and key
    /// (ixgbe's `ndo_set_vf_rss_query_en`). The PF driver's setting, not the switch's: the
    /// switch leaves it to whoever plays the PF (an 82576's igb has none and refuses it).
    QueryRss(bool),
}

impl VfSetting {
    /// Applies the setting to `policy` with the checks igb makes for it. The whole policy is
    /// validated afterwards by [`crate::Eswitch::configure_vf`].
    pub fn apply_to(&self, policy: &mut VfPolicy) -> Result<(), PolicyError> {
        match *self {
            VfSetting::Mac(mac) => {
                if mac.is_zero() {
                    policy.mac = None;
                    policy.admin_mac = false;
                } else if mac.is_valid_unicast() {
                    policy.mac = Some(mac);
                    policy.admin_mac = true;
                } else {
                    return Err(PolicyError::InvalidMac { mac });
                }
            }
            VfSetting::Vlan { vid, qos, proto } => {
                if vid > MAX_VID {
                    return Err(PolicyError::InvalidVid { vid });
                }
                if qos > MAX_QOS {
                    return Err(PolicyError::InvalidQos { qos });
                }
                if proto != VlanProto::Dot1Q {
                    return Err(PolicyError::VlanProtoNotSupported { proto });
                }
                policy.port_vlan = (vid != 0 || qos != 0).then_some(PortVlan { vid, qos });
            }
            VfSetting::Rate { min, max } => {
                if let Some(min) = min {
                    policy.min_tx_rate = min;
                }
                if let Some(max) = max {
                    policy.max_tx_rate = max;
                }
            }
            VfSetting::SpoofChk(on) => {
                // Both checks, as igb_ndo_set_vf_spoofchk and ixgbe_ndo_set_vf_spoofchk program
                // them; ixgbe programs the hardware again.
                policy.spoofchk = on;
                policy.vlan_spoofchk = on;
                policy.spoofchk_suspended = false;
            }
            VfSetting::Trust(on) => policy.trust = on,
            VfSetting::State(state) => policy.link_state = state,
            VfSetting::QueryRss(_) => {}
        }
        Ok(())
    }

    /// Parses `ip link` VF words, e.g. `["mac", "02:00:00:00:00:10", "vlan", "10", "qos", "3"]`.
    /// `qos` and `proto` belong to the `vlan` before them.
    pub fn parse_words(words: &[&str]) -> Result<Vec<VfSetting>, ParseError> {
        let mut out = Vec::new();
        let mut it = words.iter().copied().peekable();
        while let Some(key) = it.next() {
            let mut value = || it.next().ok_or(ParseError::MissingValue(key.to_string()));
            let setting = match key {
                "mac" => VfSetting::Mac(parse_mac(value()?)?),
                "vlan" => {
                    let vid = parse_num(key, value()?)?;
                    let mut qos = 0;
                    let mut proto = VlanProto::Dot1Q;
                    while let Some(&sub) = it.peek() {
                        match sub {
                            "qos" => {
                                it.next();
                                let v = it.next().ok_or(ParseError::MissingValue(sub.into()))?;
                                qos = parse_num(sub, v)?;
                            }
                            "proto" => {
                                it.next();
                                let v = it.next().ok_or(ParseError::MissingValue(sub.into()))?;
                                proto = parse_proto(v)?;
                            }
                            _ => break,
                        }
                    }
                    VfSetting::Vlan { vid, qos, proto }
                }
                "rate" | "max_tx_rate" => VfSetting::Rate {
                    min: None,
                    max: Some(parse_num(key, value()?)?),
                },
                "min_tx_rate" => VfSetting::Rate {
                    min: Some(parse_num(key, value()?)?),
                    max: None,
                },
                "spoofchk" => VfSetting::SpoofChk(parse_on_off(key, value()?)?),
                "trust" => VfSetting::Trust(parse_on_off(key, value()?)?),
                "query_rss" => VfSetting::QueryRss(parse_on_off(key, value()?)?),
                "state" => VfSetting::State(match value()? {
                    "auto" => LinkState::Auto,
                    "enable" => LinkState::Enable,
                    "disable" => LinkState::Disable,
                    other => {
                        return Err(ParseError::BadValue {
                            key: key.into(),
                            value: other.into(),
                            expected: "auto, enable or disable",
                        })
                    }
                }),
                "qos" | "proto" => return Err(ParseError::OutsideVlan(key.into())),
                other => return Err(ParseError::UnknownSetting(other.into())),
            };
            out.push(setting);
        }
        if out.is_empty() {
            return Err(ParseError::Empty);
        }
        Ok(out)
    }
}

/// A malformed `ip link` VF word list.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ParseError {
    #[error("no setting given (expected mac, vlan, rate, max_tx_rate, min_tx_rate, spoofchk, trust, state or query_rss)")]
    Empty,
    #[error("unknown setting `{0}` (expected mac, vlan, rate, max_tx_rate, min_tx_rate, spoofchk, trust, state or query_rss)")]
    UnknownSetting(String),
    #[error("`{0}` needs a value")]
    MissingValue(String),
    #[error("`{0}` only follows `vlan V`")]
    OutsideVlan(String),
    #[error("bad value `{value}` for `{key}`: expected {expected}")]
    BadValue {
        key: String,
        value: String,
        expected: &'static str,
    },
}

fn parse_on_off(key: &str, value: &str) -> Result<bool, ParseError> {
    match value {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(ParseError::BadValue {
            key: key.into(),
            value: value.into(),
            expected: "on or off",
        }),
    }
}

fn parse_num<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, ParseError> {
    value.parse().map_err(|_| ParseError::BadValue {
        key: key.into(),
        value: value.into(),
        expected: "a non-negative number in range",
    })
}

fn parse_proto(value: &str) -> Result<VlanProto, ParseError> {
    match value.to_ascii_lowercase().as_str() {
        "802.1q" => Ok(VlanProto::Dot1Q),
        "802.1ad" => Ok(VlanProto::Dot1Ad),
        _ => Err(ParseError::BadValue {
            key: "proto".into(),
            value: value.into(),
            expected: "802.1Q or 802.1ad",
        }),
    }
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(value: &str) -> Result<MacAddr, ParseError> {
    value.parse().map_err(|_| ParseError::BadValue {
        key: "mac".into(),
        value: value.into(),
        expected: "six hex bytes like 02:00:00:00:00:10",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_ip_link_word_list_with_qos_bound_to_vlan() {
        let words =
            "mac 02:00:00:00:00:10 vlan 10 qos 3 rate 100 spoofchk on trust off state disable query_rss on";
        let got = VfSetting::parse_words(&words.split(' ').collect::<Vec<_>>()).unwrap();
        assert_eq!(
            got,
            vec![
                VfSetting::Mac(MacAddr([2, 0, 0, 0, 0, 0x10])),
                VfSetting::Vlan {
                    vid: 10,
                    qos: 3,
                    proto: VlanProto::Dot1Q
                },
                VfSetting::Rate {
                    min: None,
                    max: Some(100)
                },
                VfSetting::SpoofChk(true),
                VfSetting::Trust(false),
                VfSetting::State(LinkState::Disable),
                VfSetting::QueryRss(true),
            ]
        );
    }

    #[test]
    fn malformed_words_are_clear_errors() {
        let parse = |s: &str| VfSetting::parse_words(&s.split_whitespace().collect::<Vec<_>>());
        assert_eq!(parse(""), Err(ParseError::Empty));
        assert_eq!(
            parse("speed 10"),
            Err(ParseError::UnknownSetting("speed".into()))
        );
        assert_eq!(parse("mac"), Err(ParseError::MissingValue("mac".into())));
        assert_eq!(parse("qos 3"), Err(ParseError::OutsideVlan("qos".into())));
        assert!(matches!(
            parse("trust yes"),
            Err(ParseError::BadValue { .. })
        ));
        assert!(matches!(parse("vlan -1"), Err(ParseError::BadValue { .. })));
        assert!(matches!(
            parse("vlan 99999"),
            Err(ParseError::BadValue { .. })
        ));
        assert!(matches!(
            parse("mac 02:00:00:00:00"),
            Err(ParseError::BadValue { .. })
        ));
        assert!(matches!(
            parse("mac 02:00:00:00:00:10:11"),
            Err(ParseError::BadValue { .. })
        ));
        assert!(matches!(
            parse("mac 02:00:00:00:00:1g"),
            Err(ParseError::BadValue { .. })
        ));
        assert!(matches!(
            parse("vlan 10 proto 802.1x"),
            Err(ParseError::BadValue { .. })
        ));
    }

    #[test]
    fn apply_checks_each_setting_like_igb() {
        let mut p = VfPolicy::default();
        let multicast = MacAddr([1, 0, 0x5e, 0, 0, 1]);
        assert_eq!(
            VfSetting::Mac(multicast).apply_to(&mut p),
            Err(PolicyError::InvalidMac { mac: multicast })
        );
        let dot1ad = VfSetting::Vlan {
            vid: 10,
            qos: 0,
            proto: VlanProto::Dot1Ad,
        };
        assert_eq!(
            dot1ad.apply_to(&mut p),
            Err(PolicyError::VlanProtoNotSupported {
                proto: VlanProto::Dot1Ad
            })
        );
        VfSetting::Mac(MacAddr([2, 0, 0, 0, 0, 1]))
            .apply_to(&mut p)
            .unwrap();
        assert!(p.admin_mac);
        VfSetting::Mac(MacAddr::ZERO).apply_to(&mut p).unwrap();
        assert_eq!((p.mac, p.admin_mac), (None, false));
    }

    #[test]
    fn configure_vf_is_all_or_nothing() {
        let mut sw = crate::Eswitch::new(crate::EswitchConfig::default()).unwrap();
        let before = sw.policy(0).unwrap().clone();
        let words = "mac 02:00:00:00:00:10 vlan 10 qos 3 rate 5000";
        let settings = VfSetting::parse_words(&words.split(' ').collect::<Vec<_>>()).unwrap();
        assert_eq!(
            sw.configure_vf(0, &settings),
            Err(PolicyError::RateAboveLink {
                max: 5000,
                link: 1000
            })
        );
        assert_eq!(
            sw.policy(0).unwrap(),
            &before,
            "a refused command changes nothing"
        );
        sw.configure_vf(0, &settings[..2]).unwrap();
        let p = sw.policy(0).unwrap();
        assert_eq!(p.mac, Some(MacAddr([2, 0, 0, 0, 0, 0x10])));
        assert_eq!(p.port_vlan, Some(PortVlan { vid: 10, qos: 3 }));
    }
}
