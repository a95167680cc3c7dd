//! ICMP for IPv4 (RFC 792): every message as a view, echo request and reply as a [`Repr`],
//! other messages representable with their raw fields.

use super::checksum;
use super::{be, Error, Field, Rest, Result};

/// The message type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Message {
    EchoReply,
    DstUnreachable,
    Redirect,
    EchoRequest,
    TimeExceeded,
    ParamProblem,
    Timestamp,
    TimestampReply,
    Unknown(u8),
}

impl From<u8> for Message {
    fn from(raw: u8) -> Self {
        match raw {
            0 => Message::EchoReply,
            3 => Message::DstUnreachable,
            5 => Message::Redirect,
            8 => Message::EchoRequest,
            11 => Message::TimeExceeded,
            12 => Message::ParamProblem,
            13 => Message::Timestamp,
            14 => Message::TimestampReply,
            other => Message::Unknown(other),
        }
    }
}

impl From<Message> for u8 {
    fn from(m: Message) -> u8 {
        match m {
            Message::EchoReply => 0,
            Message::DstUnreachable => 3,
            Message::Redirect => 5,
            Message::EchoRequest => 8,
            Message::TimeExceeded => 11,
            Message::ParamProblem => 12,
            Message::Timestamp => 13,
            Message::TimestampReply => 14,
            Message::Unknown(raw) => raw,
        }
    }
}

mod field {
    use super::{Field, Rest};
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    /// The four bytes every message has after the checksum; echo messages keep identifier and
    /// sequence number there.
    pub const REST_OF_HEADER: Field = 4..8;
    pub const ECHO_IDENT: Field = 4..6;
    pub const ECHO_SEQNO: Field = 6..8;
    pub const DATA: Rest = 8..;
}

/// Type, code, checksum and the four bytes after them.
pub const HEADER_LEN: usize = field::DATA.start;

view! {
    /// A read/write view of an ICMPv4 message.
    Packet
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// `Err(Truncated)` unless the buffer holds the 8-byte header.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    #[inline]
    pub fn msg_type(&self) -> Message {
        Message::from(self.buffer.as_ref()[field::TYPE])
    }
    #[inline]
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }
    #[inline]
    pub fn checksum(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::CHECKSUM.start)
    }
    /// The four bytes after the checksum, as one word.
    #[inline]
    pub fn rest_of_header(&self) -> u32 {
        be::u32_at(self.buffer.as_ref(), field::REST_OF_HEADER.start)
    }
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::ECHO_IDENT.start)
    }
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::ECHO_SEQNO.start)
    }
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA]
    }
    /// Whether the message (the whole buffer) sums to 0xFFFF with its checksum.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::data(self.buffer.as_ref()) == 0xFFFF
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    pub fn set_msg_type(&mut self, value: Message) {
        self.buffer.as_mut()[field::TYPE] = value.into();
    }
    #[inline]
    pub fn set_msg_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        be::set_u16(self.buffer.as_mut(), field::CHECKSUM.start, value);
    }
    #[inline]
    pub fn set_rest_of_header(&mut self, value: u32) {
        be::set_u32(self.buffer.as_mut(), field::REST_OF_HEADER.start, value);
    }
    #[inline]
    pub fn set_echo_ident(&mut self, value: u16) {
        be::set_u16(self.buffer.as_mut(), field::ECHO_IDENT.start, value);
    }
    #[inline]
    pub fn set_echo_seq_no(&mut self, value: u16) {
        be::set_u16(self.buffer.as_mut(), field::ECHO_SEQNO.start, value);
    }
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA]
    }
    /// Computes the checksum over the whole buffer and writes it.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::data(self.buffer.as_ref());
        self.set_checksum(!sum);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The meaning of an ICMPv4 message, borrowing its data from the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repr<'a> {
    EchoRequest {
        ident: u16,
        seq_no: u16,
        data: &'a [u8],
    },
    EchoReply {
        ident: u16,
        seq_no: u16,
        data: &'a [u8],
    },
    /// Any other message (or an echo with a code other than 0), with its raw fields.
    Other {
        message: Message,
        code: u8,
        rest_of_header: u32,
        data: &'a [u8],
    },
}

impl<'a> Repr<'a> {
    /// Checks the length and the checksum over the whole buffer.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&'a T>) -> Result<Repr<'a>> {
        packet.check_len()?;
        if !packet.verify_checksum() {
            return Err(Error::Checksum);
        }
        let data: &'a [u8] = &packet.buffer.as_ref()[field::DATA];
        let (ident, seq_no) = (packet.echo_ident(), packet.echo_seq_no());
        Ok(match (packet.msg_type(), packet.msg_code()) {
            (Message::EchoRequest, 0) => Repr::EchoRequest {
                ident,
                seq_no,
                data,
            },
            (Message::EchoReply, 0) => Repr::EchoReply {
                ident,
                seq_no,
                data,
            },
            (message, code) => Repr::Other {
                message,
                code,
                rest_of_header: packet.rest_of_header(),
                data,
            },
        })
    }

    #[inline]
    pub fn header_len(&self) -> usize {
        HEADER_LEN
    }

    fn data(&self) -> &'a [u8] {
        match *self {
            Repr::EchoRequest { data, .. }
            | Repr::EchoReply { data, .. }
            | Repr::Other { data, .. } => data,
        }
    }

    #[inline]
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.data().len()
    }

    /// Writes the message into a buffer of exactly [`Repr::buffer_len`] bytes (the checksum
    /// covers the whole buffer) and fills the checksum.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        match *self {
            Repr::EchoRequest { ident, seq_no, .. } | Repr::EchoReply { ident, seq_no, .. } => {
                let message = if matches!(self, Repr::EchoRequest { .. }) {
                    Message::EchoRequest
                } else {
                    Message::EchoReply
                };
                packet.set_msg_type(message);
                packet.set_msg_code(0);
                packet.set_echo_ident(ident);
                packet.set_echo_seq_no(seq_no);
            }
            Repr::Other {
                message,
                code,
                rest_of_header,
                ..
            } => {
                packet.set_msg_type(message);
                packet.set_msg_code(code);
                packet.set_rest_of_header(rest_of_header);
            }
        }
        packet.data_mut().copy_from_slice(self.data());
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Echo request, identifier 0x1234, sequence 1, data "ping".
    const ECHO_REQUEST: [u8; 12] = [
        0x08, 0x00, 0x06, 0xfa, // type, code, checksum
        0x12, 0x34, 0x00, 0x01, // identifier, sequence
        b'p', b'i', b'n', b'g',
    ];

    #[test]
    fn echo_request_parses_and_emits_literal_bytes() {
        let packet = Packet::new_checked(&ECHO_REQUEST[..]).unwrap();
        assert_eq!(packet.msg_type(), Message::EchoRequest);
        let repr = Repr::parse(&packet).unwrap();
        assert_eq!(
            repr,
            Repr::EchoRequest {
                ident: 0x1234,
                seq_no: 1,
                data: b"ping"
            }
        );
        let mut out = [0xa5u8; 12];
        repr.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, ECHO_REQUEST);
    }

    #[test]
    fn other_messages_keep_their_raw_fields() {
        // Destination unreachable, port unreachable (code 3), unused word, 4 bytes of the
        // offending datagram.
        let repr = Repr::Other {
            message: Message::DstUnreachable,
            code: 3,
            rest_of_header: 0,
            data: &[0x45, 0, 0, 28],
        };
        let mut out = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out[0], 3);
        assert_eq!(Repr::parse(&Packet::new_unchecked(&out[..])), Ok(repr));
        assert_eq!(Message::from(200), Message::Unknown(200));
    }

    #[test]
    fn bad_checksum_and_short_buffers() {
        let mut bad = ECHO_REQUEST;
        bad[11] ^= 1;
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&bad[..])),
            Err(Error::Checksum)
        );
        assert_eq!(
            Packet::new_checked(&ECHO_REQUEST[..7]).err(),
            Some(Error::Truncated)
        );
    }
}
