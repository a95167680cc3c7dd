//! ARP (RFC 826). The view reads any hardware/protocol pair; the [`Repr`] is IPv4 over
//! Ethernet, the only pair the emulator's endpoints speak.

use std::net::Ipv4Addr;

use super::ethernet::MacAddr;
use super::{be, Error, EtherType, EtherTypes, Field, Result};

/// The hardware address space (RFC 826 `ar$hrd`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hardware {
    /// 10 Mb Ethernet, number 1 (also every later Ethernet).
    Ethernet,
    Unknown(u16),
}

impl From<u16> for Hardware {
    fn from(raw: u16) -> Self {
        match raw {
            1 => Hardware::Ethernet,
            other => Hardware::Unknown(other),
        }
    }
}

impl From<Hardware> for u16 {
    fn from(h: Hardware) -> u16 {
        match h {
            Hardware::Ethernet => 1,
            Hardware::Unknown(raw) => raw,
        }
    }
}

/// The opcode (RFC 826 `ar$op`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    Request,
    Reply,
    Unknown(u16),
}

impl From<u16> for Operation {
    fn from(raw: u16) -> Self {
        match raw {
            1 => Operation::Request,
            2 => Operation::Reply,
            other => Operation::Unknown(other),
        }
    }
}

impl From<Operation> for u16 {
    fn from(op: Operation) -> u16 {
        match op {
            Operation::Request => 1,
            Operation::Reply => 2,
            Operation::Unknown(raw) => raw,
        }
    }
}

mod field {
    use super::Field;
    pub const HTYPE: Field = 0..2;
    pub const PTYPE: Field = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Field = 6..8;
    /// Where the four addresses start: sender hardware, sender protocol, target hardware,
    /// target protocol, of `HLEN` and `PLEN` bytes.
    pub const ADDRS: usize = 8;
}

/// The fixed part before the addresses.
pub const FIXED_LEN: usize = field::ADDRS;
/// An IPv4-over-Ethernet packet: the fixed part and 2 × (6 + 4) address bytes.
pub const ETHERNET_IPV4_LEN: usize = FIXED_LEN + 2 * (6 + 4);

view! {
    /// A read/write view of an ARP packet.
    Packet
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// `Err(Truncated)` unless the buffer holds the fixed part and the four addresses its
    /// length fields announce.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < FIXED_LEN || len < self.addrs_end() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    fn addrs_end(&self) -> usize {
        let (h, p) = (self.hardware_len(), self.protocol_len());
        field::ADDRS + 2 * (usize::from(h) + usize::from(p))
    }

    #[inline]
    pub fn hardware_type(&self) -> Hardware {
        Hardware::from(be::u16_at(self.buffer.as_ref(), field::HTYPE.start))
    }
    #[inline]
    pub fn protocol_type(&self) -> EtherType {
        EtherType(be::u16_at(self.buffer.as_ref(), field::PTYPE.start))
    }
    #[inline]
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref().get(field::HLEN).copied().unwrap_or(0)
    }
    #[inline]
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref().get(field::PLEN).copied().unwrap_or(0)
    }
    #[inline]
    pub fn operation(&self) -> Operation {
        Operation::from(be::u16_at(self.buffer.as_ref(), field::OPER.start))
    }

    /// Address `n` (0: sender hardware, 1: sender protocol, 2: target hardware, 3: target
    /// protocol) as its byte range.
    fn addr_field(&self, n: usize) -> Field {
        let h = usize::from(self.hardware_len());
        let p = usize::from(self.protocol_len());
        let (start, len) = match n {
            0 => (field::ADDRS, h),
            1 => (field::ADDRS + h, p),
            2 => (field::ADDRS + h + p, h),
            _ => (field::ADDRS + 2 * h + p, p),
        };
        start..start + len
    }

    fn addr(&self, n: usize) -> &[u8] {
        self.buffer
            .as_ref()
            .get(self.addr_field(n))
            .unwrap_or_default()
    }

    #[inline]
    pub fn sender_hardware_addr(&self) -> &[u8] {
        self.addr(0)
    }
    #[inline]
    pub fn sender_protocol_addr(&self) -> &[u8] {
        self.addr(1)
    }
    #[inline]
    pub fn target_hardware_addr(&self) -> &[u8] {
        self.addr(2)
    }
    #[inline]
    pub fn target_protocol_addr(&self) -> &[u8] {
        self.addr(3)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    pub fn set_hardware_type(&mut self, value: Hardware) {
        be::set_u16(self.buffer.as_mut(), field::HTYPE.start, value.into());
    }
    #[inline]
    pub fn set_protocol_type(&mut self, value: EtherType) {
        be::set_u16(self.buffer.as_mut(), field::PTYPE.start, value.0);
    }
    #[inline]
    pub fn set_hardware_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::HLEN] = value;
    }
    #[inline]
    pub fn set_protocol_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::PLEN] = value;
    }
    #[inline]
    pub fn set_operation(&mut self, value: Operation) {
        be::set_u16(self.buffer.as_mut(), field::OPER.start, value.into());
    }

    /// Writes address `n` (see `addr_field`); a value of the wrong length or out of the buffer
    /// is not written.
    fn set_addr(&mut self, n: usize, value: &[u8]) {
        let range = self.addr_field(n);
        if let Some(f) = self.buffer.as_mut().get_mut(range) {
            if f.len() == value.len() {
                f.copy_from_slice(value);
            }
        }
    }

    /// Writes the address if it has the packet's hardware length.
    #[inline]
    pub fn set_sender_hardware_addr(&mut self, value: &[u8]) {
        self.set_addr(0, value);
    }
    /// Writes the address if it has the packet's protocol length.
    #[inline]
    pub fn set_sender_protocol_addr(&mut self, value: &[u8]) {
        self.set_addr(1, value);
    }
    #[inline]
    pub fn set_target_hardware_addr(&mut self, value: &[u8]) {
        self.set_addr(2, value);
    }
    #[inline]
    pub fn set_target_protocol_addr(&mut self, value: &[u8]) {
        self.set_addr(3, value);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// An ARP packet for IPv4 over Ethernet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr {
    pub operation: Operation,
    pub sender_mac: MacAddr,
    pub sender_ip: Ipv4Addr,
    pub target_mac: MacAddr,
    pub target_ip: Ipv4Addr,
}

impl Repr {
    /// `Err(Unsupported)` for another hardware or protocol pair.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        if packet.hardware_type() != Hardware::Ethernet
            || packet.protocol_type() != EtherTypes::Ipv4
            || packet.hardware_len() != 6
            || packet.protocol_len() != 4
        {
            return Err(Error::Unsupported);
        }
        let ip = |b: &[u8]| <[u8; 4]>::try_from(b).map(Ipv4Addr::from);
        let mac = |b: &[u8]| MacAddr::from_bytes(b).ok_or(Error::Truncated);
        Ok(Repr {
            operation: packet.operation(),
            sender_mac: mac(packet.sender_hardware_addr())?,
            sender_ip: ip(packet.sender_protocol_addr()).map_err(|_| Error::Truncated)?,
            target_mac: mac(packet.target_hardware_addr())?,
            target_ip: ip(packet.target_protocol_addr()).map_err(|_| Error::Truncated)?,
        })
    }

    #[inline]
    pub fn buffer_len(&self) -> usize {
        ETHERNET_IPV4_LEN
    }

    /// Writes the packet into a buffer of at least [`Repr::buffer_len`] bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_hardware_type(Hardware::Ethernet);
        packet.set_protocol_type(EtherTypes::Ipv4);
        packet.set_hardware_len(6);
        packet.set_protocol_len(4);
        packet.set_operation(self.operation);
        packet.set_sender_hardware_addr(&self.sender_mac.0);
        packet.set_sender_protocol_addr(&self.sender_ip.octets());
        packet.set_target_hardware_addr(&self.target_mac.0);
        packet.set_target_protocol_addr(&self.target_ip.octets());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Who has 10.0.0.1? Tell 10.0.0.10 (02:00:00:00:00:10).
    const REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // htype, ptype, hlen, plen, op
        0x02, 0, 0, 0, 0, 0x10, 10, 0, 0, 10, // sender
        0, 0, 0, 0, 0, 0, 10, 0, 0, 1, // target
    ];

    fn request() -> Repr {
        Repr {
            operation: Operation::Request,
            sender_mac: MacAddr([2, 0, 0, 0, 0, 0x10]),
            sender_ip: Ipv4Addr::new(10, 0, 0, 10),
            target_mac: MacAddr::ZERO,
            target_ip: Ipv4Addr::new(10, 0, 0, 1),
        }
    }

    #[test]
    fn request_parses_from_literal_bytes() {
        let packet = Packet::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(packet.hardware_type(), Hardware::Ethernet);
        assert_eq!(packet.protocol_type(), EtherTypes::Ipv4);
        assert_eq!(packet.sender_protocol_addr(), &[10, 0, 0, 10]);
        assert_eq!(Repr::parse(&packet), Ok(request()));
    }

    #[test]
    fn request_emits_the_literal_bytes() {
        let repr = request();
        let mut bytes = vec![0xa5; repr.buffer_len()];
        repr.emit(&mut Packet::new_unchecked(&mut bytes[..]));
        assert_eq!(&bytes[..], &REQUEST[..]);
    }

    #[test]
    fn other_pairs_are_unsupported_and_short_packets_truncated() {
        let mut ipx = REQUEST;
        ipx[2..4].copy_from_slice(&[0x81, 0x37]);
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&ipx[..])),
            Err(Error::Unsupported)
        );
        assert_eq!(
            Packet::new_checked(&REQUEST[..27]).err(),
            Some(Error::Truncated)
        );
        assert_eq!(
            Packet::new_checked(&REQUEST[..7]).err(),
            Some(Error::Truncated)
        );
        let mut op = REQUEST;
        op[7] = 9;
        assert_eq!(
            Packet::new_unchecked(&op[..]).operation(),
            Operation::Unknown(9)
        );
    }
}
