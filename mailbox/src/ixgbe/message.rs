//! 82599 mailbox messages: a typed view of the 16-word buffer as Linux ixgbevf (`vf.c`,
//! `ipsec.c`) writes requests and ixgbe (`ixgbe_sriov.c`, `ixgbe_ipsec.c`) writes replies.
//!
//! [`IxgbeMessage::parse`] reads words as they sit in VFMBMEM; [`IxgbeMessage::emit`] writes
//! them. Parsing is total over guest input: too few words is a [`ParseError::Truncated`],
//! unknown ids are [`IxgbeMsg::Unknown`] and unknown enum values are `Unknown(raw)` variants,
//! so the PF can refuse them. Emitting refuses values the wire cannot carry
//! ([`ParseError::OutOfRange`]) rather than truncating them, so `parse(emit(x)) == x` whenever
//! `emit` succeeds.
//!
//! The same id names a request and its reply; a word 0 with ACK or NACK is read as the reply
//! (the PF's answer overwrites the request in place, ixgbe `ixgbe_rcv_msg_from_vf`).

use eswitch::MacAddr;

use super::regs::{len, limits, msg, MAILBOX_WORDS};
use crate::message::{mac_from_words, mac_to_words, MsgFlags, ParseError};

/// `enum ixgbe_pfvf_api_rev` (ixgbe `ixgbe_mbx.h`, ixgbevf `mbx.h`): the value API_NEGOTIATE
/// carries in word 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ApiVersion {
    V1_0,
    /// The Solaris phase-1 API.
    V2_0,
    V1_1,
    V1_2,
    V1_3,
    V1_4,
    V1_5,
    V1_6,
    V1_7,
    Unknown(u32),
}

impl ApiVersion {
    /// The versions the 6.1 ixgbevf proposes, newest first (`ixgbevf_negotiate_api`; later
    /// 6.1.y releases put 1.7 and 1.6 in front).
    pub const IXGBEVF_6_1_ORDER: [ApiVersion; 6] = [
        ApiVersion::V1_5,
        ApiVersion::V1_4,
        ApiVersion::V1_3,
        ApiVersion::V1_2,
        ApiVersion::V1_1,
        ApiVersion::V1_0,
    ];

    pub fn from_wire(raw: u32) -> ApiVersion {
        use super::regs::api;
        match raw {
            api::V1_0 => ApiVersion::V1_0,
            api::V2_0 => ApiVersion::V2_0,
            api::V1_1 => ApiVersion::V1_1,
            api::V1_2 => ApiVersion::V1_2,
            api::V1_3 => ApiVersion::V1_3,
            api::V1_4 => ApiVersion::V1_4,
            api::V1_5 => ApiVersion::V1_5,
            api::V1_6 => ApiVersion::V1_6,
            api::V1_7 => ApiVersion::V1_7,
            other => ApiVersion::Unknown(other),
        }
    }

    pub fn to_wire(self) -> u32 {
        use super::regs::api;
        match self {
            ApiVersion::V1_0 => api::V1_0,
            ApiVersion::V2_0 => api::V2_0,
            ApiVersion::V1_1 => api::V1_1,
            ApiVersion::V1_2 => api::V1_2,
            ApiVersion::V1_3 => api::V1_3,
            ApiVersion::V1_4 => api::V1_4,
            ApiVersion::V1_5 => api::V1_5,
            ApiVersion::V1_6 => api::V1_6,
            ApiVersion::V1_7 => api::V1_7,
            ApiVersion::Unknown(raw) => raw,
        }
    }

    /// The Linux 1.x versions in release order (1.0 < 1.1 < ... < 1.7); `None` for 2.0 and
    /// unknown values, which no ordering applies to.
    pub fn linux_minor(self) -> Option<u8> {
        match self {
            ApiVersion::V1_0 => Some(0),
            ApiVersion::V1_1 => Some(1),
            ApiVersion::V1_2 => Some(2),
            ApiVersion::V1_3 => Some(3),
            ApiVersion::V1_4 => Some(4),
            ApiVersion::V1_5 => Some(5),
            ApiVersion::V1_6 => Some(6),
            ApiVersion::V1_7 => Some(7),
            ApiVersion::V2_0 | ApiVersion::Unknown(_) => None,
        }
    }
}

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self, self.linux_minor()) {
            (_, Some(m)) => write!(f, "1.{m}"),
            (ApiVersion::V2_0, None) => f.write_str("2.0"),
            _ => write!(f, "unknown ({})", self.to_wire()),
        }
    }
}

/// UPDATE_XCAST_MODE word 1 (ixgbevf `enum ixgbevf_xcast_modes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum XcastMode {
    /// Broadcast only.
    None,
    /// Broadcast and the multicast groups of its hash list.
    Multi,
    /// All multicast.
    AllMulti,
    /// Unicast and multicast promiscuous.
    Promisc,
    Unknown(u32),
}

impl XcastMode {
    pub fn from_wire(raw: u32) -> XcastMode {
        use super::regs::xcast;
        match raw {
            xcast::NONE => XcastMode::None,
            xcast::MULTI => XcastMode::Multi,
            xcast::ALLMULTI => XcastMode::AllMulti,
            xcast::PROMISC => XcastMode::Promisc,
            other => XcastMode::Unknown(other),
        }
    }

    pub fn to_wire(self) -> u32 {
        use super::regs::xcast;
        match self {
            XcastMode::None => xcast::NONE,
            XcastMode::Multi => xcast::MULTI,
            XcastMode::AllMulti => xcast::ALLMULTI,
            XcastMode::Promisc => xcast::PROMISC,
            XcastMode::Unknown(raw) => raw,
        }
    }
}

/// Word 3 of the VF_RESET reply: which destination-address bits the multicast hash uses
/// (`hw->mac.mc_filter_type`, MCSTCTRL.MO). ixgbe uses type 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum McFilterType {
    /// 0: address bits 47:36 (ixgbe's choice).
    Bits47To36,
    /// 1: bits 46:35.
    Bits46To35,
    /// 2: bits 45:34.
    Bits45To34,
    /// 3: bits 43:32.
    Bits43To32,
    Unknown(u32),
}

impl McFilterType {
    pub fn from_wire(raw: u32) -> McFilterType {
        match raw {
            0 => McFilterType::Bits47To36,
            1 => McFilterType::Bits46To35,
            2 => McFilterType::Bits45To34,
            3 => McFilterType::Bits43To32,
            other => McFilterType::Unknown(other),
        }
    }

    pub fn to_wire(self) -> u32 {
        match self {
            McFilterType::Bits47To36 => 0,
            McFilterType::Bits46To35 => 1,
            McFilterType::Bits45To34 => 2,
            McFilterType::Bits43To32 => 3,
            McFilterType::Unknown(raw) => raw,
        }
    }
}

/// `struct sa_mbx_msg` (ixgbe `ixgbe_ipsec.h`): the IPsec SA a VF asks the PF to offload,
/// words 1..=11 of IPSEC_ADD.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SaRequest {
    /// SPI (big-endian on the wire).
    pub spi: u32,
    /// Byte 4: the XFRM offload flags in 6.1 (inbound = 0x02, IPv6 = 0x01); later kernels
    /// put the direction here.
    pub flags: u8,
    /// Byte 5: the IP protocol (ESP = 50).
    pub proto: u8,
    /// Bytes 6–7: the address family (AF_INET = 2, AF_INET6 = 10), little-endian.
    pub family: u16,
    /// Bytes 8–23: the destination address in network order (IPv4 in the first 4 bytes).
    pub daddr: [u8; 16],
    /// Bytes 24–43: key (16 bytes) and salt (4 bytes) as the VF stored them.
    pub key: [u8; 20],
}

impl SaRequest {
    fn to_bytes(self) -> [u8; 44] {
        let mut b = [0u8; 44];
        b[0..4].copy_from_slice(&self.spi.to_be_bytes());
        b[4] = self.flags;
        b[5] = self.proto;
        b[6..8].copy_from_slice(&self.family.to_le_bytes());
        b[8..24].copy_from_slice(&self.daddr);
        b[24..44].copy_from_slice(&self.key);
        b
    }

    fn from_bytes(b: &[u8; 44]) -> SaRequest {
        let mut daddr = [0u8; 16];
        daddr.copy_from_slice(&b[8..24]);
        let mut key = [0u8; 20];
        key.copy_from_slice(&b[24..44]);
        SaRequest {
            spi: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            flags: b[4],
            proto: b[5],
            family: u16::from_le_bytes([b[6], b[7]]),
            daddr,
            key,
        }
    }
}

/// What a message says, per message id and direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IxgbeMsg {
    /// 0x01 from the VF (word 0 exactly 0x00000001): "I reset, give me my MAC". 1 word.
    Reset,
    /// 0x01 from the PF with ACK or NACK: the MAC (zero with NACK) and the multicast filter
    /// type. 4 words.
    ResetReply {
        mac: MacAddr,
        mc_filter_type: McFilterType,
    },
    /// 0x02: the VF's station MAC. 3 words.
    SetMacAddr { mac: MacAddr },
    /// 0x03: `count` (MSGINFO) multicast groups, of which up to 30 12-bit hashes travel, two
    /// per word, low half first. 16 words, as ixgbevf always sends them.
    SetMulticast { count: u8, hashes: Vec<u16> },
    /// 0x04: join (`add`) or leave a VLAN. 2 words.
    SetVlan { add: bool, vid: u16 },
    /// 0x05: the largest frame the VF will receive (MTU + 18). 2 words.
    SetLpe { max_frame: u32 },
    /// 0x06: extra unicast filter `index` (MSGINFO; 0 = drop all, 1 restarts the list). 3 words.
    SetMacvlan { index: u8, mac: MacAddr },
    /// 0x08: propose an API version. 3 words.
    ApiNegotiate { api: ApiVersion },
    /// 0x09 from the VF: how many queues may I use? 5 words (zeros).
    GetQueues,
    /// 0x09 from the PF: the queue configuration. 5 words.
    Queues {
        tx_queues: u32,
        rx_queues: u32,
        /// Number of traffic classes, or 1 when a port VLAN / QoS makes the VF's traffic
        /// tagged behind its back (`IXGBE_VF_TRANS_VLAN`), else 0.
        trans_vlan: u32,
        /// `IXGBE_VF_DEF_QUEUE`.
        default_queue: u32,
    },
    /// 0x0A from the VF: send me the RSS redirection table. 1 word.
    GetReta,
    /// 0x0A from the PF: the 128 RETA entries, 2 bits each (0..=3), 16 per word. 9 words.
    Reta { entries: [u8; limits::RETA_ENTRIES] },
    /// 0x0B from the VF: send me the RSS hash key. 1 word.
    GetRssKey,
    /// 0x0B from the PF: the 40-byte key. 11 words.
    RssKey { key: [u8; limits::RSS_KEY_BYTES] },
    /// 0x0C: request (VF) or the mode applied (PF). 2 words.
    UpdateXcastMode { mode: XcastMode },
    /// 0x10 from the VF. 2 words (word 1 zero).
    GetLinkState,
    /// 0x10 from the PF: whether the administrator lets the VF's link up. 2 words.
    LinkState { enabled: bool },
    /// 0x0D from the VF: offload this SA. 12 words.
    IpsecAdd { sa: SaRequest },
    /// 0x0D from the PF: the PF's SA handle, or a negative errno. 2 words.
    IpsecAddReply { result: i32 },
    /// 0x0E: delete the SA with this PF handle. 2 words.
    IpsecDel { handle: u32 },
    /// 0x100 from the PF (1 word).
    PfControl,
    /// Id 0: the PF's bare NACK to a VF that is not clear to send.
    Bare,
    /// Any other id (or id 1 from the VF with MSGINFO set, which ixgbe does not take for a
    /// reset), kept so the PF can refuse it.
    Unknown { id: u16, info: u8 },
}

impl IxgbeMsg {
    /// The message id (word 0 bits 15:0).
    pub fn id(&self) -> u16 {
        match self {
            IxgbeMsg::Reset | IxgbeMsg::ResetReply { .. } => msg::ID_VF_RESET,
            IxgbeMsg::SetMacAddr { .. } => msg::ID_SET_MAC_ADDR,
            IxgbeMsg::SetMulticast { .. } => msg::ID_SET_MULTICAST,
            IxgbeMsg::SetVlan { .. } => msg::ID_SET_VLAN,
            IxgbeMsg::SetLpe { .. } => msg::ID_SET_LPE,
            IxgbeMsg::SetMacvlan { .. } => msg::ID_SET_MACVLAN,
            IxgbeMsg::ApiNegotiate { .. } => msg::ID_API_NEGOTIATE,
            IxgbeMsg::GetQueues | IxgbeMsg::Queues { .. } => msg::ID_GET_QUEUES,
            IxgbeMsg::GetReta | IxgbeMsg::Reta { .. } => msg::ID_GET_RETA,
            IxgbeMsg::GetRssKey | IxgbeMsg::RssKey { .. } => msg::ID_GET_RSS_KEY,
            IxgbeMsg::UpdateXcastMode { .. } => msg::ID_UPDATE_XCAST_MODE,
            IxgbeMsg::GetLinkState | IxgbeMsg::LinkState { .. } => msg::ID_GET_LINK_STATE,
            IxgbeMsg::IpsecAdd { .. } | IxgbeMsg::IpsecAddReply { .. } => msg::ID_IPSEC_ADD,
            IxgbeMsg::IpsecDel { .. } => msg::ID_IPSEC_DEL,
            IxgbeMsg::PfControl => msg::ID_PF_CONTROL,
            IxgbeMsg::Bare => 0,
            IxgbeMsg::Unknown { id, .. } => *id,
        }
    }

    /// MSGINFO of word 0.
    pub fn info(&self) -> u8 {
        match self {
            IxgbeMsg::SetMulticast { count, .. } => *count,
            IxgbeMsg::SetVlan { add: true, .. } => msg::VLAN_INFO_ADD,
            IxgbeMsg::SetMacvlan { index, .. } => *index,
            IxgbeMsg::Unknown { info, .. } => *info,
            _ => 0,
        }
    }

    /// Words this message occupies, word 0 included, as ixgbevf sends it or as ixgbe fills
    /// it (ixgbe writes the whole 16-word buffer back for most replies; the words past these
    /// are the request's).
    pub fn wire_len(&self) -> usize {
        match self {
            IxgbeMsg::ResetReply { .. } => len::RESET_REPLY,
            IxgbeMsg::SetMacAddr { .. } | IxgbeMsg::SetMacvlan { .. } => len::MAC,
            IxgbeMsg::SetMulticast { .. } => MAILBOX_WORDS,
            IxgbeMsg::SetVlan { .. }
            | IxgbeMsg::SetLpe { .. }
            | IxgbeMsg::UpdateXcastMode { .. }
            | IxgbeMsg::GetLinkState
            | IxgbeMsg::LinkState { .. }
            | IxgbeMsg::IpsecAddReply { .. }
            | IxgbeMsg::IpsecDel { .. } => 2,
            IxgbeMsg::ApiNegotiate { .. } => len::API_NEGOTIATE,
            IxgbeMsg::GetQueues | IxgbeMsg::Queues { .. } => len::GET_QUEUES,
            IxgbeMsg::Reta { .. } => len::RETA_REPLY,
            IxgbeMsg::RssKey { .. } => len::RSS_KEY_REPLY,
            IxgbeMsg::IpsecAdd { .. } => len::IPSEC_ADD,
            IxgbeMsg::Reset
            | IxgbeMsg::GetReta
            | IxgbeMsg::GetRssKey
            | IxgbeMsg::PfControl
            | IxgbeMsg::Bare
            | IxgbeMsg::Unknown { .. } => 1,
        }
    }
}

/// A message with its flags: the typed form of the words in VFMBMEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IxgbeMessage {
    pub msg: IxgbeMsg,
    pub flags: MsgFlags,
}

mod field {
    /// Word holding MAC bytes 0–3 (byte 0 in bits 7:0).
    pub const MAC_LO: usize = 1;
    /// Word holding MAC bytes 4–5 in bits 15:0.
    pub const MAC_HI: usize = 2;
    /// VF_RESET reply: the multicast filter type (`IXGBE_VF_MC_TYPE_WORD`).
    pub const MC_TYPE: usize = 3;
    /// First word of a multi-word payload (hash list, RETA, key, SA).
    pub const PAYLOAD: usize = 1;
    /// The single argument word of SET_VLAN, SET_LPE, API_NEGOTIATE, UPDATE_XCAST_MODE,
    /// GET_LINK_STATE, IPSEC_DEL and the IPSEC_ADD reply.
    pub const ARG: usize = 1;
}

/// Bytes as they sit in memory behind consecutive little-endian mailbox words.
fn bytes_from_words<const N: usize>(words: &[u32]) -> [u8; N] {
    let mut out = [0u8; N];
    for (chunk, w) in out.chunks_mut(4).zip(words) {
        let b = w.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
    out
}

fn bytes_to_words(bytes: &[u8], out: &mut [u32]) {
    for (w, chunk) in out.iter_mut().zip(bytes.chunks(4)) {
        let mut b = [0u8; 4];
        b[..chunk.len()].copy_from_slice(chunk);
        *w = u32::from_le_bytes(b);
    }
}

impl IxgbeMessage {
    pub fn new(msg: IxgbeMsg, flags: MsgFlags) -> IxgbeMessage {
        IxgbeMessage { msg, flags }
    }

    /// A VF request (no flags).
    pub fn request(msg: IxgbeMsg) -> IxgbeMessage {
        IxgbeMessage::new(msg, MsgFlags::NONE)
    }

    /// Word 0 as emitted.
    pub fn word0(&self) -> u32 {
        u32::from(self.msg.id())
            | (u32::from(self.msg.info()) << msg::INFO_SHIFT)
            | self.flags.to_word()
    }

    /// Reads a message from mailbox words; payload words past what the id needs are ignored.
    pub fn parse(words: &[u32]) -> Result<IxgbeMessage, ParseError> {
        let Some(&w0) = words.first() else {
            return Err(ParseError::Truncated {
                id: 0,
                needed: 1,
                got: 0,
            });
        };
        let id = (w0 & msg::ID_MASK) as u16;
        let info = ((w0 & msg::INFO_MASK) >> msg::INFO_SHIFT) as u8;
        let flags = MsgFlags::from_word(w0);
        let reply = flags.is_response();
        let need = |n: usize| -> Result<(), ParseError> {
            if words.len() < n {
                Err(ParseError::Truncated {
                    id,
                    needed: n,
                    got: words.len(),
                })
            } else {
                Ok(())
            }
        };
        let mac = |words: &[u32]| mac_from_words(words[field::MAC_LO], words[field::MAC_HI]);
        let m = match id {
            msg::ID_VF_RESET if reply => {
                need(len::RESET_REPLY)?;
                IxgbeMsg::ResetReply {
                    mac: mac(words),
                    mc_filter_type: McFilterType::from_wire(words[field::MC_TYPE]),
                }
            }
            msg::ID_VF_RESET if info == 0 => IxgbeMsg::Reset,
            msg::ID_SET_MAC_ADDR => {
                need(len::MAC)?;
                IxgbeMsg::SetMacAddr { mac: mac(words) }
            }
            msg::ID_SET_MULTICAST => {
                let n = usize::from(info).min(limits::MAX_MC_HASHES);
                need(field::PAYLOAD + n.div_ceil(2))?;
                let hashes = (0..n)
                    .map(|i| {
                        let w = words[field::PAYLOAD + i / 2];
                        let half = if i % 2 == 0 { w } else { w >> 16 };
                        half as u16
                    })
                    .collect();
                IxgbeMsg::SetMulticast {
                    count: info,
                    hashes,
                }
            }
            msg::ID_SET_VLAN => {
                need(2)?;
                IxgbeMsg::SetVlan {
                    add: info != 0,
                    vid: (words[field::ARG] & msg::VLAN_VID_MASK) as u16,
                }
            }
            msg::ID_SET_LPE => {
                need(2)?;
                IxgbeMsg::SetLpe {
                    max_frame: words[field::ARG],
                }
            }
            msg::ID_SET_MACVLAN => {
                need(len::MAC)?;
                IxgbeMsg::SetMacvlan {
                    index: info,
                    mac: mac(words),
                }
            }
            msg::ID_API_NEGOTIATE => {
                need(2)?;
                IxgbeMsg::ApiNegotiate {
                    api: ApiVersion::from_wire(words[field::ARG]),
                }
            }
            msg::ID_GET_QUEUES if reply => {
                need(len::GET_QUEUES)?;
                use super::regs::queues as q;
                IxgbeMsg::Queues {
                    tx_queues: words[q::TX_QUEUES],
                    rx_queues: words[q::RX_QUEUES],
                    trans_vlan: words[q::TRANS_VLAN],
                    default_queue: words[q::DEF_QUEUE],
                }
            }
            msg::ID_GET_QUEUES => IxgbeMsg::GetQueues,
            msg::ID_GET_RETA if reply => {
                need(len::RETA_REPLY)?;
                let mut entries = [0u8; limits::RETA_ENTRIES];
                for (i, e) in entries.iter_mut().enumerate() {
                    let w = words[field::PAYLOAD + i / 16];
                    *e = ((w >> (2 * (i % 16))) & 0x3) as u8;
                }
                IxgbeMsg::Reta { entries }
            }
            msg::ID_GET_RETA => IxgbeMsg::GetReta,
            msg::ID_GET_RSS_KEY if reply => {
                need(len::RSS_KEY_REPLY)?;
                IxgbeMsg::RssKey {
                    key: bytes_from_words(&words[field::PAYLOAD..len::RSS_KEY_REPLY]),
                }
            }
            msg::ID_GET_RSS_KEY => IxgbeMsg::GetRssKey,
            msg::ID_UPDATE_XCAST_MODE => {
                need(2)?;
                IxgbeMsg::UpdateXcastMode {
                    mode: XcastMode::from_wire(words[field::ARG]),
                }
            }
            msg::ID_GET_LINK_STATE if reply => {
                need(2)?;
                IxgbeMsg::LinkState {
                    enabled: words[field::ARG] != 0,
                }
            }
            msg::ID_GET_LINK_STATE => IxgbeMsg::GetLinkState,
            msg::ID_IPSEC_ADD if reply => {
                need(2)?;
                IxgbeMsg::IpsecAddReply {
                    result: words[field::ARG] as i32,
                }
            }
            msg::ID_IPSEC_ADD => {
                need(len::IPSEC_ADD)?;
                let bytes: [u8; 44] = bytes_from_words(&words[field::PAYLOAD..len::IPSEC_ADD]);
                IxgbeMsg::IpsecAdd {
                    sa: SaRequest::from_bytes(&bytes),
                }
            }
            msg::ID_IPSEC_DEL => {
                need(2)?;
                IxgbeMsg::IpsecDel {
                    handle: words[field::ARG],
                }
            }
            msg::ID_PF_CONTROL => IxgbeMsg::PfControl,
            0 => IxgbeMsg::Bare,
            _ => IxgbeMsg::Unknown { id, info },
        };
        Ok(IxgbeMessage { msg: m, flags })
    }

    /// Whether the variant exists only as a reply (`Some(true)`), only as a request
    /// (`Some(false)`), or both ways (`None`): the flags decide which one `parse` reads.
    fn direction(&self) -> Option<bool> {
        match self.msg {
            IxgbeMsg::ResetReply { .. }
            | IxgbeMsg::Queues { .. }
            | IxgbeMsg::Reta { .. }
            | IxgbeMsg::RssKey { .. }
            | IxgbeMsg::LinkState { .. }
            | IxgbeMsg::IpsecAddReply { .. } => Some(true),
            IxgbeMsg::Reset
            | IxgbeMsg::GetQueues
            | IxgbeMsg::GetReta
            | IxgbeMsg::GetRssKey
            | IxgbeMsg::GetLinkState
            | IxgbeMsg::IpsecAdd { .. } => Some(false),
            _ => None,
        }
    }

    /// Checks that every field fits its place on the wire and that the message reads back as
    /// itself.
    fn check_ranges(&self) -> Result<(), ParseError> {
        let out = |what: &'static str, value: u64| Err(ParseError::OutOfRange { what, value });
        if self
            .direction()
            .is_some_and(|reply| reply != self.flags.is_response())
        {
            return out(
                "ACK/NACK flags for this direction",
                u64::from(self.flags.to_word()),
            );
        }
        match &self.msg {
            IxgbeMsg::SetVlan { vid, .. } if u32::from(*vid) > msg::VLAN_VID_MASK => {
                out("VLAN id", u64::from(*vid))
            }
            IxgbeMsg::SetMulticast { count, hashes }
                if hashes.len() != usize::from(*count).min(limits::MAX_MC_HASHES) =>
            {
                out("multicast hash list length", hashes.len() as u64)
            }
            IxgbeMsg::Reta { entries } => match entries.iter().find(|e| **e > 3) {
                Some(e) => out("RETA entry", u64::from(*e)),
                None => Ok(()),
            },
            IxgbeMsg::Unknown { id, info } => {
                let known = matches!(
                    *id,
                    0 | msg::ID_SET_MAC_ADDR
                        | msg::ID_SET_MULTICAST
                        | msg::ID_SET_VLAN
                        | msg::ID_SET_LPE
                        | msg::ID_SET_MACVLAN
                        | msg::ID_API_NEGOTIATE
                        | msg::ID_GET_QUEUES
                        | msg::ID_GET_RETA
                        | msg::ID_GET_RSS_KEY
                        | msg::ID_UPDATE_XCAST_MODE
                        | msg::ID_IPSEC_ADD
                        | msg::ID_IPSEC_DEL
                        | msg::ID_GET_LINK_STATE
                        | msg::ID_PF_CONTROL
                );
                // Id 1 is unknown only as a request with MSGINFO set.
                let reset_like =
                    *id == msg::ID_VF_RESET && (*info == 0 || self.flags.is_response());
                if known || reset_like {
                    out("unknown-message id", u64::from(*id))
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    /// Writes the message's `wire_len()` words into `buf`; returns how many were written.
    pub fn emit(&self, buf: &mut [u32]) -> Result<usize, ParseError> {
        self.check_ranges()?;
        let n = self.msg.wire_len();
        if buf.len() < n {
            return Err(ParseError::BufferTooSmall {
                needed: n,
                got: buf.len(),
            });
        }
        let buf = &mut buf[..n];
        buf.fill(0);
        buf[0] = self.word0();
        match &self.msg {
            IxgbeMsg::ResetReply {
                mac,
                mc_filter_type,
            } => {
                (buf[field::MAC_LO], buf[field::MAC_HI]) = mac_to_words(*mac);
                buf[field::MC_TYPE] = mc_filter_type.to_wire();
            }
            IxgbeMsg::SetMacAddr { mac } | IxgbeMsg::SetMacvlan { mac, .. } => {
                (buf[field::MAC_LO], buf[field::MAC_HI]) = mac_to_words(*mac);
            }
            IxgbeMsg::SetMulticast { hashes, .. } => {
                for (i, h) in hashes.iter().enumerate() {
                    let shift = if i % 2 == 0 { 0 } else { 16 };
                    buf[field::PAYLOAD + i / 2] |= u32::from(*h) << shift;
                }
            }
            IxgbeMsg::SetVlan { vid, .. } => buf[field::ARG] = u32::from(*vid),
            IxgbeMsg::SetLpe { max_frame } => buf[field::ARG] = *max_frame,
            IxgbeMsg::ApiNegotiate { api } => buf[field::ARG] = api.to_wire(),
            IxgbeMsg::Queues {
                tx_queues,
                rx_queues,
                trans_vlan,
                default_queue,
            } => {
                use super::regs::queues as q;
                buf[q::TX_QUEUES] = *tx_queues;
                buf[q::RX_QUEUES] = *rx_queues;
                buf[q::TRANS_VLAN] = *trans_vlan;
                buf[q::DEF_QUEUE] = *default_queue;
            }
            IxgbeMsg::Reta { entries } => {
                for (i, e) in entries.iter().enumerate() {
                    buf[field::PAYLOAD + i / 16] |= u32::from(*e) << (2 * (i % 16));
                }
            }
            IxgbeMsg::RssKey { key } => bytes_to_words(key, &mut buf[field::PAYLOAD..]),
            IxgbeMsg::UpdateXcastMode { mode } => buf[field::ARG] = mode.to_wire(),
            IxgbeMsg::LinkState { enabled } => buf[field::ARG] = u32::from(*enabled),
            IxgbeMsg::IpsecAdd { sa } => bytes_to_words(&sa.to_bytes(), &mut buf[field::PAYLOAD..]),
            IxgbeMsg::IpsecAddReply { result } => buf[field::ARG] = *result as u32,
            IxgbeMsg::IpsecDel { handle } => buf[field::ARG] = *handle,
            IxgbeMsg::Reset
            | IxgbeMsg::GetQueues
            | IxgbeMsg::GetReta
            | IxgbeMsg::GetRssKey
            | IxgbeMsg::GetLinkState
            | IxgbeMsg::PfControl
            | IxgbeMsg::Bare
            | IxgbeMsg::Unknown { .. } => {}
        }
        Ok(n)
    }

    /// The words of this message as a vector; an error when a field does not fit.
    pub fn to_words(&self) -> Result<Vec<u32>, ParseError> {
        let mut buf = vec![0; self.msg.wire_len()];
        self.emit(&mut buf)?;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests;
