//! vfio-user message framing: the 16-byte header, the payload layouts we parse and emit, and the
//! limits we apply to what a client sends.
//!
//! Command numbers are the `vfio_user` crate's [`Command`] enum; VFIO flag and index values are
//! the kernel's (`vfio-bindings`). The crate keeps its header and payload structs private, so the
//! layouts are written out here, smoltcp-style: field positions in `mod field`, a checked view for
//! parsing and plain byte vectors for emitting. Everything is host endian, as the vfio-user
//! protocol specification (QEMU's `docs/interop/vfio-user.rst`) says.

use vfio_user::Command;

/// Size of the message header.
pub const HEADER_SIZE: usize = 16;

/// `max_data_xfer_size` we advertise: the largest REGION_READ/WRITE or DMA_READ/WRITE payload.
pub const MAX_DATA_XFER: usize = 1 << 20;

/// `max_msg_fds` we advertise.
pub const MAX_MSG_FDS: usize = 16;

/// `max_dma_maps` we advertise and enforce.
pub const MAX_DMA_MAPS: usize = 65535;

/// The largest message we accept: a REGION_WRITE (or a DMA_READ reply) carrying
/// [`MAX_DATA_XFER`] bytes, plus slack for the fixed fields. Anything larger closes the
/// connection (it cannot be a valid message, and we do not drain gigabytes of garbage).
pub const MAX_MESSAGE_SIZE: usize = HEADER_SIZE + 16 + MAX_DATA_XFER;

/// Header flag bits.
pub mod flags {
    /// Bits 0–3: message type.
    pub const TYPE_MASK: u32 = 0xf;
    pub const TYPE_COMMAND: u32 = 0;
    pub const TYPE_REPLY: u32 = 1;
    /// The sender wants no reply, not even an error.
    pub const NO_REPLY: u32 = 1 << 4;
    /// The reply is an error; `error` holds the errno.
    pub const ERROR: u32 = 1 << 5;
}

mod field {
    use std::ops::Range;
    pub const ID: Range<usize> = 0..2;
    pub const COMMAND: Range<usize> = 2..4;
    pub const SIZE: Range<usize> = 4..8;
    pub const FLAGS: Range<usize> = 8..12;
    pub const ERROR: Range<usize> = 12..16;
}

/// Parsed message header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub id: u16,
    pub command: u16,
    /// Whole message size, header included.
    pub size: u32,
    pub flags: u32,
    pub error: u32,
}

impl Header {
    pub fn parse(b: &[u8; HEADER_SIZE]) -> Header {
        Header {
            id: u16::from_ne_bytes([b[field::ID.start], b[field::ID.start + 1]]),
            command: u16::from_ne_bytes([b[field::COMMAND.start], b[field::COMMAND.start + 1]]),
            size: u32_at(b, field::SIZE.start),
            flags: u32_at(b, field::FLAGS.start),
            error: u32_at(b, field::ERROR.start),
        }
    }

    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.id.to_ne_bytes());
        out.extend_from_slice(&self.command.to_ne_bytes());
        out.extend_from_slice(&self.size.to_ne_bytes());
        out.extend_from_slice(&self.flags.to_ne_bytes());
        out.extend_from_slice(&self.error.to_ne_bytes());
    }

    pub fn is_reply(&self) -> bool {
        self.flags & flags::TYPE_MASK == flags::TYPE_REPLY
    }

    pub fn is_command(&self) -> bool {
        self.flags & flags::TYPE_MASK == flags::TYPE_COMMAND
    }

    pub fn no_reply(&self) -> bool {
        self.flags & flags::NO_REPLY != 0
    }

    pub fn is_error(&self) -> bool {
        self.flags & flags::ERROR != 0
    }

    /// The command as the crate's enum; `None` for numbers it does not know (15–18 and above).
    pub fn known_command(&self) -> Option<Command> {
        Command::n(self.command)
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A bounds-checked cursor over a payload: every read either succeeds or reports that the payload
/// is too short, so no accessor can panic on client input.
pub struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// The payload is shorter than its fixed fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncated;

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], Truncated> {
        let end = self.pos.checked_add(n).ok_or(Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(Truncated)?;
        self.pos = end;
        Ok(s)
    }

    pub fn u16(&mut self) -> Result<u16, Truncated> {
        let b = self.bytes(2)?;
        Ok(u16::from_ne_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self) -> Result<u32, Truncated> {
        let b = self.bytes(4)?;
        Ok(u32_at(b, 0))
    }

    pub fn u64(&mut self) -> Result<u64, Truncated> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_ne_bytes(a))
    }

    /// What follows the fixed fields.
    pub fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }
}

/// Builds one outgoing message: header first, size patched in by [`MessageBuilder::finish`].
pub struct MessageBuilder {
    buf: Vec<u8>,
}

impl MessageBuilder {
    pub fn new(id: u16, command: u16, flags: u32) -> Self {
        let mut buf = Vec::with_capacity(64);
        Header {
            id,
            command,
            size: 0,
            flags,
            error: 0,
        }
        .emit(&mut buf);
        MessageBuilder { buf }
    }

    pub fn reply_to(h: &Header) -> Self {
        Self::new(h.id, h.command, flags::TYPE_REPLY)
    }

    pub fn u16(mut self, v: u16) -> Self {
        self.buf.extend_from_slice(&v.to_ne_bytes());
        self
    }

    pub fn u32(mut self, v: u32) -> Self {
        self.buf.extend_from_slice(&v.to_ne_bytes());
        self
    }

    pub fn u64(mut self, v: u64) -> Self {
        self.buf.extend_from_slice(&v.to_ne_bytes());
        self
    }

    pub fn bytes(mut self, v: &[u8]) -> Self {
        self.buf.extend_from_slice(v);
        self
    }

    /// Patches the size field and returns the message bytes.
    pub fn finish(mut self) -> Vec<u8> {
        let size = self.buf.len() as u32;
        self.buf[field::SIZE].copy_from_slice(&size.to_ne_bytes());
        self.buf
    }
}

/// An error reply: header only, REPLY|ERROR, and a non-zero errno (errno 0 reads as success to
/// QEMU, so it is replaced by EINVAL).
pub fn error_reply(h: &Header, errno: i32) -> Vec<u8> {
    let errno = if errno == 0 { libc::EINVAL } else { errno };
    let mut out = Vec::with_capacity(HEADER_SIZE);
    Header {
        id: h.id,
        command: h.command,
        size: HEADER_SIZE as u32,
        flags: flags::TYPE_REPLY | flags::ERROR,
        error: errno as u32,
    }
    .emit(&mut out);
    out
}

/// The VERSION reply's JSON (NUL-terminated on the wire). Only the keys QEMU 11.1 checks; no
/// `write_multiple`, since we do not implement REGION_WRITE_MULTI.
pub const VERSION_CAPS_JSON: &str = concat!(
    r#"{"capabilities":{"max_msg_fds":16,"max_data_xfer_size":1048576,"#,
    r#""pgsizes":4096,"max_dma_maps":65535}}"#
);

/// VERSION reply JSONs, best first. QEMU sizes its receive buffer to its own request (214 bytes
/// in 11.1.3, which the first fits); a client with a smaller request (the `vfio_user` crate's is
/// about 110 bytes) gets the largest one that fits in its request. The last is always accepted:
/// capabilities are optional in the vfio-user specification.
pub const VERSION_CAPS_CHOICES: [&str; 4] = [
    VERSION_CAPS_JSON,
    r#"{"capabilities":{"max_msg_fds":16,"max_data_xfer_size":1048576}}"#,
    r#"{"capabilities":{}}"#,
    "{}",
];

/// Payload sizes of the fixed parts (after the header).
pub mod payload {
    /// `u16 major, u16 minor`.
    pub const VERSION: usize = 4;
    /// `argsz, flags, num_regions, num_irqs`.
    pub const DEVICE_INFO: usize = 16;
    /// `struct vfio_region_info`: argsz, flags, index, cap_offset, size, offset.
    pub const REGION_INFO: usize = 32;
    /// `argsz, flags, index, count`.
    pub const IRQ_INFO: usize = 16;
    /// `argsz, flags, index, start, count`.
    pub const SET_IRQS: usize = 20;
    /// `u64 offset, u32 region, u32 count`.
    pub const REGION_ACCESS: usize = 16;
    /// `argsz, flags, u64 offset, u64 iova, u64 size`.
    pub const DMA_MAP: usize = 32;
    /// `argsz, flags, u64 iova, u64 size`.
    pub const DMA_UNMAP: usize = 24;
    /// `u64 address, u64 count` (the vfio-user specification's layout, which QEMU 11.1.3 uses).
    pub const DMA_ACCESS: usize = 16;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_through_bytes() {
        let h = Header {
            id: 0x1234,
            command: 9,
            size: 48,
            flags: flags::TYPE_REPLY | flags::ERROR,
            error: 22,
        };
        let mut out = Vec::new();
        h.emit(&mut out);
        let arr: [u8; HEADER_SIZE] = out.as_slice().try_into().unwrap();
        assert_eq!(Header::parse(&arr), h);
        assert!(h.is_reply() && h.is_error() && !h.no_reply());
    }

    #[test]
    fn builder_patches_size() {
        let msg = MessageBuilder::new(7, 1, 0)
            .u16(0)
            .u16(0)
            .bytes(b"{}\0")
            .finish();
        assert_eq!(msg.len(), 23);
        let arr: [u8; HEADER_SIZE] = msg[..16].try_into().unwrap();
        assert_eq!(Header::parse(&arr).size, 23);
    }

    #[test]
    fn cursor_never_reads_past_the_end() {
        let mut c = Cursor::new(&[1, 0, 0, 0, 2]);
        assert_eq!(c.u32(), Ok(1));
        assert_eq!(c.u32(), Err(Truncated));
        assert_eq!(c.rest(), &[2]);
        assert_eq!(c.bytes(usize::MAX), Err(Truncated));
    }

    #[test]
    fn error_reply_never_carries_errno_zero() {
        let h = Header::default();
        let msg = error_reply(&h, 0);
        let arr: [u8; HEADER_SIZE] = msg.as_slice().try_into().unwrap();
        assert_eq!(Header::parse(&arr).error, libc::EINVAL as u32);
    }

    #[test]
    fn version_reply_fits_qemus_request() {
        // QEMU 11.1.3's VERSION request is 214 bytes; our reply must not be larger.
        let reply_size = HEADER_SIZE + payload::VERSION + VERSION_CAPS_JSON.len() + 1;
        assert!(reply_size <= 214, "{reply_size}");
    }
}
