//! The codec's unit tests: each message kind parsed and emitted again, short and
//! unemittable input refused, and a round-trip property over arbitrary messages.

use super::*;
use proptest::prelude::*;

const MAC: MacAddr = MacAddr([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);

/// Parses `words`, checks the typed value, and checks that emitting it gives the same words.
fn round_trip(words: &[u32], expected: IxgbeMessage) {
    let parsed = IxgbeMessage::parse(words).expect("parse");
    assert_eq!(parsed, expected);
    let emitted = expected.to_words().expect("emit");
    assert_eq!(&emitted[..], &words[..emitted.len()]);
}

fn req(m: IxgbeMsg) -> IxgbeMessage {
    IxgbeMessage::request(m)
}

#[test]
fn reset_request_and_replies() {
    round_trip(&[0x0000_0001], req(IxgbeMsg::Reset));
    round_trip(
        &[0x8000_0001, 0x3322_1102, 0x0000_5544, 0],
        IxgbeMessage::new(
            IxgbeMsg::ResetReply {
                mac: MAC,
                mc_filter_type: McFilterType::Bits47To36,
            },
            MsgFlags::ACK,
        ),
    );
    round_trip(
        &[0x4000_0001, 0, 0, 2],
        IxgbeMessage::new(
            IxgbeMsg::ResetReply {
                mac: MacAddr::ZERO,
                mc_filter_type: McFilterType::Bits45To34,
            },
            MsgFlags::NACK,
        ),
    );
    // ixgbe only takes a word 0 of exactly 1 for a reset.
    round_trip(&[0x0001_0001], req(IxgbeMsg::Unknown { id: 1, info: 1 }));
}

#[test]
fn mac_messages() {
    round_trip(
        &[0x0000_0002, 0x3322_1102, 0x0000_5544],
        req(IxgbeMsg::SetMacAddr { mac: MAC }),
    );
    round_trip(
        &[0x0003_0006, 0x3322_1102, 0x0000_5544],
        req(IxgbeMsg::SetMacvlan { index: 3, mac: MAC }),
    );
    // MAC word 2's upper half is not part of the address.
    let m = IxgbeMessage::parse(&[0x0000_0002, 0x3322_1102, 0xBEEF_5544]).unwrap();
    assert_eq!(m.msg, IxgbeMsg::SetMacAddr { mac: MAC });
}

#[test]
fn set_multicast_packs_two_hashes_per_word_and_keeps_at_most_30() {
    let mut words = [0u32; MAILBOX_WORDS];
    words[0] = 0x0003_0003;
    words[1] = 0x0456_0123;
    words[2] = 0x0000_0789;
    round_trip(
        &words,
        req(IxgbeMsg::SetMulticast {
            count: 3,
            hashes: vec![0x123, 0x456, 0x789],
        }),
    );
    words[0] = 0x0028_0003; // count 40
    for (i, w) in words[1..].iter_mut().enumerate() {
        *w = ((2 * i as u32 + 1) << 16) | (2 * i as u32);
    }
    let m = IxgbeMessage::parse(&words).unwrap();
    let IxgbeMsg::SetMulticast { count, ref hashes } = m.msg else {
        panic!("{m:?}")
    };
    assert_eq!((count, hashes.len(), hashes[29]), (40, 30, 29));
    assert_eq!(m.to_words().unwrap(), words.to_vec());
}

#[test]
fn vlan_lpe_api_xcast_link() {
    round_trip(
        &[0x0001_0004, 100],
        req(IxgbeMsg::SetVlan {
            add: true,
            vid: 100,
        }),
    );
    round_trip(
        &[0x0000_0004, 0],
        req(IxgbeMsg::SetVlan { add: false, vid: 0 }),
    );
    // The VID is bits 11:0 (IXGBE_VLVF_VLANID_MASK).
    let m = IxgbeMessage::parse(&[0x0001_0004, 0xF064]).unwrap();
    assert_eq!(
        m.msg,
        IxgbeMsg::SetVlan {
            add: true,
            vid: 100
        }
    );
    round_trip(
        &[0x0000_0005, 1518],
        req(IxgbeMsg::SetLpe { max_frame: 1518 }),
    );
    round_trip(
        &[0x0000_0008, 5, 0],
        req(IxgbeMsg::ApiNegotiate {
            api: ApiVersion::V1_4,
        }),
    );
    round_trip(
        &[0xA000_0008, 6, 0],
        IxgbeMessage::new(
            IxgbeMsg::ApiNegotiate {
                api: ApiVersion::V1_5,
            },
            MsgFlags::ACK_CTS,
        ),
    );
    round_trip(
        &[0x0000_000C, 2],
        req(IxgbeMsg::UpdateXcastMode {
            mode: XcastMode::AllMulti,
        }),
    );
    round_trip(
        &[0x0000_000C, 9],
        req(IxgbeMsg::UpdateXcastMode {
            mode: XcastMode::Unknown(9),
        }),
    );
    round_trip(&[0x0000_0010, 0], req(IxgbeMsg::GetLinkState));
    round_trip(
        &[0xA000_0010, 1],
        IxgbeMessage::new(IxgbeMsg::LinkState { enabled: true }, MsgFlags::ACK_CTS),
    );
}

#[test]
fn queue_and_rss_queries_and_their_replies() {
    round_trip(&[0x0000_0009, 0, 0, 0, 0], req(IxgbeMsg::GetQueues));
    round_trip(
        &[0xA000_0009, 4, 4, 1, 0],
        IxgbeMessage::new(
            IxgbeMsg::Queues {
                tx_queues: 4,
                rx_queues: 4,
                trans_vlan: 1,
                default_queue: 0,
            },
            MsgFlags::ACK_CTS,
        ),
    );
    round_trip(&[0x0000_000A], req(IxgbeMsg::GetReta));
    let mut entries = [0u8; limits::RETA_ENTRIES];
    for (i, e) in entries.iter_mut().enumerate() {
        *e = (i % 4) as u8;
    }
    // Entries 0,1,2,3 repeating: 0b11_10_01_00 per byte.
    let mut words = vec![0xA000_000A];
    words.extend([0xE4E4_E4E4u32; 8]);
    round_trip(
        &words,
        IxgbeMessage::new(IxgbeMsg::Reta { entries }, MsgFlags::ACK_CTS),
    );
    round_trip(&[0x0000_000B], req(IxgbeMsg::GetRssKey));
    let mut key = [0u8; limits::RSS_KEY_BYTES];
    for (i, b) in key.iter_mut().enumerate() {
        *b = i as u8;
    }
    let m = IxgbeMessage::new(IxgbeMsg::RssKey { key }, MsgFlags::ACK_CTS);
    let w = m.to_words().unwrap();
    assert_eq!((w.len(), w[1], w[10]), (11, 0x0302_0100, 0x2726_2524));
    round_trip(&w, m);
}

#[test]
fn ipsec_messages() {
    let sa = SaRequest {
        spi: 0x1234_5678,
        flags: 0x02,
        proto: 50,
        family: 2,
        daddr: [192, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        key: [0xAB; 20],
    };
    let m = req(IxgbeMsg::IpsecAdd { sa });
    let w = m.to_words().unwrap();
    assert_eq!(w.len(), 12);
    // SPI big-endian in memory; flags, proto, family (LE) in word 2.
    assert_eq!(w[1].to_le_bytes(), [0x12, 0x34, 0x56, 0x78]);
    assert_eq!(w[2], 0x0002_3202);
    assert_eq!(w[3].to_le_bytes(), [192, 0, 2, 1]);
    round_trip(&w, m);
    round_trip(
        &[0x6000_000D, (-13i32) as u32],
        IxgbeMessage::new(IxgbeMsg::IpsecAddReply { result: -13 }, MsgFlags::NACK_CTS),
    );
    round_trip(&[0x0000_000E, 7], req(IxgbeMsg::IpsecDel { handle: 7 }));
}

#[test]
fn pf_control_bare_nack_and_unknown_ids() {
    round_trip(
        &[0x2000_0100],
        IxgbeMessage::new(IxgbeMsg::PfControl, MsgFlags::CTS),
    );
    round_trip(
        &[0x4000_0000],
        IxgbeMessage::new(IxgbeMsg::Bare, MsgFlags::NACK),
    );
    round_trip(
        &[0x0042_0077],
        req(IxgbeMsg::Unknown {
            id: 0x77,
            info: 0x42,
        }),
    );
    round_trip(&[0x0000_0007], req(IxgbeMsg::Unknown { id: 7, info: 0 }));
}

#[test]
fn short_input_is_an_error_not_a_panic() {
    let short: &[&[u32]] = &[
        &[],
        &[0x0000_0002, 1],
        &[0x0000_0004],
        &[0x0000_0005],
        &[0x0001_0006, 0],
        &[0x0000_0008],
        &[0x001E_0003, 0, 0],
        &[0x8000_0001, 0, 0],
        &[0x8000_0009, 4, 4, 0],
        &[0x8000_000A, 0, 0],
        &[0x8000_000B, 0],
        &[0x0000_000C],
        &[0x8000_0010],
        &[0x0000_000D, 0, 0],
        &[0x8000_000D],
        &[0x0000_000E],
    ];
    for words in short {
        assert!(
            matches!(
                IxgbeMessage::parse(words),
                Err(ParseError::Truncated { .. })
            ),
            "{words:x?}"
        );
    }
}

#[test]
fn values_the_wire_cannot_carry_are_refused_on_emit() {
    let bad = [
        req(IxgbeMsg::SetVlan {
            add: true,
            vid: 4096,
        }),
        req(IxgbeMsg::SetMulticast {
            count: 2,
            hashes: vec![1],
        }),
        req(IxgbeMsg::SetMulticast {
            count: 40,
            hashes: vec![0; 31],
        }),
        IxgbeMessage::new(
            IxgbeMsg::Reta {
                entries: [4; limits::RETA_ENTRIES],
            },
            MsgFlags::ACK,
        ),
        // Direction and flags disagree: these would read back as something else.
        req(IxgbeMsg::Queues {
            tx_queues: 1,
            rx_queues: 1,
            trans_vlan: 0,
            default_queue: 0,
        }),
        IxgbeMessage::new(IxgbeMsg::GetQueues, MsgFlags::ACK),
        IxgbeMessage::new(IxgbeMsg::Reset, MsgFlags::NACK),
        req(IxgbeMsg::Unknown { id: 2, info: 0 }),
        req(IxgbeMsg::Unknown { id: 1, info: 0 }),
    ];
    for m in bad {
        assert!(
            matches!(m.to_words(), Err(ParseError::OutOfRange { .. })),
            "{m:?}"
        );
    }
    let mut small = [0u32; 2];
    assert_eq!(
        req(IxgbeMsg::SetMacAddr { mac: MAC }).emit(&mut small),
        Err(ParseError::BufferTooSmall { needed: 3, got: 2 })
    );
}

#[test]
fn api_versions_are_the_enum_values_not_version_numbers() {
    let all = [
        (ApiVersion::V1_0, 0, "1.0"),
        (ApiVersion::V2_0, 1, "2.0"),
        (ApiVersion::V1_1, 2, "1.1"),
        (ApiVersion::V1_2, 3, "1.2"),
        (ApiVersion::V1_3, 4, "1.3"),
        (ApiVersion::V1_4, 5, "1.4"),
        (ApiVersion::V1_5, 6, "1.5"),
        (ApiVersion::V1_6, 7, "1.6"),
        (ApiVersion::V1_7, 8, "1.7"),
    ];
    for (v, raw, name) in all {
        assert_eq!((v.to_wire(), ApiVersion::from_wire(raw)), (raw, v));
        assert_eq!(v.to_string(), name);
    }
    assert_eq!(ApiVersion::from_wire(0x14), ApiVersion::Unknown(0x14));
}

fn mac() -> impl Strategy<Value = MacAddr> {
    any::<[u8; 6]>().prop_map(MacAddr)
}

fn flags() -> impl Strategy<Value = MsgFlags> {
    (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(ack, nack, cts)| MsgFlags {
        ack,
        nack,
        cts,
    })
}

/// Any message `emit` accepts: the variant's fields anywhere in their types' ranges.
fn message() -> impl Strategy<Value = IxgbeMessage> {
    let body = prop_oneof![
        Just(IxgbeMsg::Reset),
        (mac(), any::<u32>()).prop_map(|(mac, t)| IxgbeMsg::ResetReply {
            mac,
            mc_filter_type: McFilterType::from_wire(t),
        }),
        mac().prop_map(|mac| IxgbeMsg::SetMacAddr { mac }),
        any::<u8>().prop_flat_map(|count| {
            proptest::collection::vec(any::<u16>(), usize::from(count).min(30))
                .prop_map(move |hashes| IxgbeMsg::SetMulticast { count, hashes })
        }),
        (any::<bool>(), 0u16..4096).prop_map(|(add, vid)| IxgbeMsg::SetVlan { add, vid }),
        any::<u32>().prop_map(|max_frame| IxgbeMsg::SetLpe { max_frame }),
        (any::<u8>(), mac()).prop_map(|(index, mac)| IxgbeMsg::SetMacvlan { index, mac }),
        any::<u32>().prop_map(|a| IxgbeMsg::ApiNegotiate {
            api: ApiVersion::from_wire(a),
        }),
        Just(IxgbeMsg::GetQueues),
        any::<[u32; 4]>().prop_map(|q| IxgbeMsg::Queues {
            tx_queues: q[0],
            rx_queues: q[1],
            trans_vlan: q[2],
            default_queue: q[3],
        }),
        Just(IxgbeMsg::GetReta),
        proptest::collection::vec(0u8..4, limits::RETA_ENTRIES).prop_map(|v| {
            let mut entries = [0u8; limits::RETA_ENTRIES];
            entries.copy_from_slice(&v);
            IxgbeMsg::Reta { entries }
        }),
        Just(IxgbeMsg::GetRssKey),
        proptest::collection::vec(any::<u8>(), limits::RSS_KEY_BYTES).prop_map(|v| {
            let mut key = [0u8; limits::RSS_KEY_BYTES];
            key.copy_from_slice(&v);
            IxgbeMsg::RssKey { key }
        }),
        any::<u32>().prop_map(|m| IxgbeMsg::UpdateXcastMode {
            mode: XcastMode::from_wire(m),
        }),
        Just(IxgbeMsg::GetLinkState),
        any::<bool>().prop_map(|enabled| IxgbeMsg::LinkState { enabled }),
        (
            any::<u32>(),
            any::<[u8; 4]>(),
            any::<[u8; 16]>(),
            any::<[u8; 20]>()
        )
            .prop_map(|(spi, b, daddr, key)| IxgbeMsg::IpsecAdd {
                sa: SaRequest {
                    spi,
                    flags: b[0],
                    proto: b[1],
                    family: u16::from_le_bytes([b[2], b[3]]),
                    daddr,
                    key,
                },
            }),
        any::<i32>().prop_map(|result| IxgbeMsg::IpsecAddReply { result }),
        any::<u32>().prop_map(|handle| IxgbeMsg::IpsecDel { handle }),
        Just(IxgbeMsg::PfControl),
        Just(IxgbeMsg::Bare),
        (0x11u16.., any::<u8>())
            .prop_filter("not PF_CONTROL", |(id, _)| *id != msg::ID_PF_CONTROL)
            .prop_map(|(id, info)| IxgbeMsg::Unknown { id, info }),
    ];
    (body, flags()).prop_map(|(msg, mut flags)| {
        let m = IxgbeMessage::new(msg, flags);
        // Give direction-bound variants the flags that read back as them.
        if let Some(reply) = m.direction() {
            if reply && !flags.is_response() {
                flags.ack = true;
            }
            if !reply {
                flags.ack = false;
                flags.nack = false;
            }
        }
        IxgbeMessage::new(m.msg, flags)
    })
}

proptest! {
    #[test]
    fn parse_of_emit_is_identity(m in message()) {
        let words = m.to_words().unwrap();
        prop_assert_eq!(words.len(), m.msg.wire_len());
        prop_assert_eq!(IxgbeMessage::parse(&words).unwrap(), m);
    }

    #[test]
    fn any_words_parse_or_error_without_panic(
        words in proptest::collection::vec(any::<u32>(), 0..=MAILBOX_WORDS)
    ) {
        match IxgbeMessage::parse(&words) {
            Ok(m) => {
                // What parsed emits again, and reads back the same.
                let again = m.to_words().unwrap();
                prop_assert_eq!(IxgbeMessage::parse(&again).unwrap(), m.clone());
                // Word 0 keeps the id and flags (MSGINFO only where the message uses it).
                let mask = msg::ID_MASK | msg::FLAGS_MASK;
                prop_assert_eq!(again[0] & mask, words[0] & mask);
            }
            Err(ParseError::Truncated { needed, got, .. }) => prop_assert!(got < needed),
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
    }
}
