//! The packet formats the emulator reads and writes, one module per protocol, in one shape:
//!
//! * a typed view over a byte buffer (`ethernet::Frame`, `ipv4::Packet`, ...) built with
//!   `new_unchecked` (no check) or `new_checked` (runs `check_len`), taken apart again with
//!   `into_inner`. Once `check_len` has passed no accessor can panic; accessors of length
//!   fields whose value the buffer contradicts (a total length past the end, say) clamp instead
//!   of panicking, and the `Repr::parse` of the protocol is what reports the contradiction.
//!   Setters exist when the buffer is mutable (`T: AsRef<[u8]> + AsMut<[u8]>`);
//! * a `Repr` (the parsed meaning) with `parse(&view) -> Result<Repr>`, `emit(&self, &mut view)`
//!   and `buffer_len()` / `header_len()`, so that `parse(emit(repr)) == repr`;
//! * ids whose unknown values stay representable: ethertypes and IP protocol numbers are
//!   `pnet_packet`'s newtypes ([`EtherType`], [`IpNextHeaderProtocol`]), other ids are enums with
//!   an `Unknown(raw)` variant. No input makes a parser panic.
//!
//! Every protocol computes its checksum with [`checksum`]; every failure is one [`Error`].

use core::ops::{Range, RangeFrom};

/// Declares a view of this layer's shape: the struct over its buffer, `new_unchecked`,
/// `new_checked` (which runs the view's own `check_len`) and `into_inner`. Each module writes
/// `check_len` and the accessors in an `impl` of its own: what a view checks and reads is all
/// that differs between them.
macro_rules! view {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name<T: AsRef<[u8]>> {
            buffer: T,
        }

        impl<T: AsRef<[u8]>> $name<T> {
            /// A view without any check: call `check_len` before trusting its accessors.
            #[inline]
            pub fn new_unchecked(buffer: T) -> $name<T> {
                $name { buffer }
            }

            /// A view of a buffer that passes `check_len`.
            #[inline]
            pub fn new_checked(buffer: T) -> $crate::wire::Result<$name<T>> {
                let view = Self::new_unchecked(buffer);
                view.check_len()?;
                Ok(view)
            }

            /// The buffer the view was made of.
            #[inline]
            pub fn into_inner(self) -> T {
                self.buffer
            }
        }
    };
}

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmpv4;
pub mod ipv4;
pub mod ipv6;
pub mod sctp;
pub mod tcp;
pub mod udp;

pub use pnet_packet::ethernet::{EtherType, EtherTypes};
pub use pnet_packet::ip::{IpNextHeaderProtocol, IpNextHeaderProtocols};

pub use arp::{Operation as ArpOperation, Packet as ArpPacket, Repr as ArpRepr};
pub use ethernet::{
    build_frame, Frame as EthernetFrame, MacAddr, ParseMacError, Repr as EthernetRepr, VlanTag,
    VlanTags, VlanTci,
};
pub use icmpv4::{Message as Icmpv4Message, Packet as Icmpv4Packet, Repr as Icmpv4Repr};
pub use ipv4::{Packet as Ipv4Packet, Repr as Ipv4Repr};
pub use ipv6::{
    ExtHeader as Ipv6ExtHeader, ExtHeaders as Ipv6ExtHeaders, FragmentHeader as Ipv6FragmentHeader,
    Packet as Ipv6Packet, Repr as Ipv6Repr, UpperLayer as Ipv6UpperLayer,
};
pub use sctp::{Packet as SctpPacket, Repr as SctpRepr};
pub use tcp::{Flags as TcpFlags, Packet as TcpPacket, Repr as TcpRepr};
pub use udp::{Packet as UdpPacket, Repr as UdpRepr};

/// Why bytes are not a packet of the format asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Error {
    /// The buffer ends before the header, or before a length the header declares.
    #[error("truncated: the buffer ends before the header or a length it declares")]
    Truncated,
    /// A field holds a value its format forbids (a version, a header length, a length field
    /// shorter than the header).
    #[error("malformed: a field holds a value its format forbids")]
    Malformed,
    /// The checksum does not match the contents.
    #[error("checksum mismatch")]
    Checksum,
    /// Well-formed, but a variant this layer does not represent (ARP for other than IPv4 over
    /// Ethernet, say).
    #[error("unsupported: a well-formed variant this layer does not represent")]
    Unsupported,
}

/// The result of every parse in this layer.
pub type Result<T> = core::result::Result<T, Error>;

/// `Err(Truncated)` unless a buffer of `len` bytes holds a header's `fixed` part and the
/// `header` bytes its length field announces; `Err(Malformed)` when that length is below the
/// fixed part. For headers with options (IPv4's IHL, TCP's data offset): read the length field
/// only once `len >= fixed`, so pass it as a closure.
#[inline]
fn check_header(len: usize, fixed: usize, header: impl FnOnce() -> usize) -> Result<()> {
    if len < fixed {
        return Err(Error::Truncated);
    }
    let header = header();
    if header < fixed {
        return Err(Error::Malformed);
    }
    if len < header {
        return Err(Error::Truncated);
    }
    Ok(())
}

/// A field's byte positions in a header.
type Field = Range<usize>;
/// Where the variable part of a header or the payload starts.
type Rest = RangeFrom<usize>;

/// The version field IPv4 and IPv6 headers share, the high four bits of their first octet
/// (RFC 791 §3.1, RFC 8200 §3): what tells the two apart where no ethertype says which header
/// follows (the TX offload engine's checksum-only context, which igb fills without
/// TUCMD.IPV4). `None` for an empty buffer.
#[inline]
pub fn ip_version(packet: &[u8]) -> Option<u8> {
    packet.first().map(|b| b >> 4)
}

/// Network-order (big-endian) reads and writes at a fixed position, for accessors whose length
/// check has already passed.
mod be {
    #[inline]
    pub fn u16_at(data: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([data[at], data[at + 1]])
    }
    #[inline]
    pub fn u32_at(data: &[u8], at: usize) -> u32 {
        u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
    }
    #[inline]
    pub fn set_u16(data: &mut [u8], at: usize, value: u16) {
        data[at..at + 2].copy_from_slice(&value.to_be_bytes());
    }
    #[inline]
    pub fn set_u32(data: &mut [u8], at: usize, value: u32) {
        data[at..at + 4].copy_from_slice(&value.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_version_reads_the_shared_first_nibble() {
        assert_eq!(ip_version(&[0x45, 0x00]), Some(4));
        assert_eq!(ip_version(&[0x60, 0x00, 0x00, 0x00]), Some(6));
        assert_eq!(ip_version(&[]), None);
    }
}
