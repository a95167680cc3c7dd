//! Classic libpcap files: a 24-byte global header, then a 16-byte record header before each
//! frame (format as documented by tcpdump.org's pcap(5) / the libpcap file format draft).
//! Little-endian, microsecond timestamps, link type 1 (Ethernet).

use std::io::{self, Write};

/// The magic number for microsecond-resolution files, written in our byte order.
const MAGIC_USEC: u32 = 0xa1b2_c3d4;
const VERSION_MAJOR: u16 = 2;
const VERSION_MINOR: u16 = 4;
/// LINKTYPE_ETHERNET.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Largest frame kept per record.
pub const SNAPLEN: u32 = 65_535;
pub const GLOBAL_HEADER_LEN: usize = 24;
pub const RECORD_HEADER_LEN: usize = 16;
const NANOS_PER_USEC: u64 = 1_000;
const USEC_PER_SEC: u64 = 1_000_000;

/// Writes a pcap stream to `out`.
pub struct PcapWriter<W: Write> {
    out: W,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the global header.
    pub fn new(mut out: W) -> io::Result<PcapWriter<W>> {
        let mut h = Vec::with_capacity(GLOBAL_HEADER_LEN);
        h.extend_from_slice(&MAGIC_USEC.to_le_bytes());
        h.extend_from_slice(&VERSION_MAJOR.to_le_bytes());
        h.extend_from_slice(&VERSION_MINOR.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes()); // thiszone: UTC
        h.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
        h.extend_from_slice(&SNAPLEN.to_le_bytes());
        h.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&h)?;
        Ok(PcapWriter { out })
    }

    /// Writes one frame captured at `time_ns`.
    pub fn record(&mut self, time_ns: u64, frame: &[u8]) -> io::Result<()> {
        let usec = time_ns / NANOS_PER_USEC;
        let secs = u32::try_from(usec / USEC_PER_SEC).unwrap_or(u32::MAX);
        let frac = (usec % USEC_PER_SEC) as u32;
        let orig = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        let kept = &frame[..frame.len().min(SNAPLEN as usize)];
        let mut h = Vec::with_capacity(RECORD_HEADER_LEN);
        h.extend_from_slice(&secs.to_le_bytes());
        h.extend_from_slice(&frac.to_le_bytes());
        h.extend_from_slice(&(kept.len() as u32).to_le_bytes());
        h.extend_from_slice(&orig.to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(kept)
    }

    /// Flushes the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_record_are_the_documented_bytes() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.record(1_500_002_000, &[0xaa; 3]).unwrap();
        let bytes = w.into_inner();
        assert_eq!(
            &bytes[..GLOBAL_HEADER_LEN],
            &[
                0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0,
                0, 0
            ]
        );
        assert_eq!(
            &bytes[GLOBAL_HEADER_LEN..],
            &[
                1, 0, 0, 0, // 1 s
                0x22, 0xa1, 0x07, 0, // 500 002 µs
                3, 0, 0, 0, 3, 0, 0, 0, // lengths
                0xaa, 0xaa, 0xaa
            ]
        );
    }
}
