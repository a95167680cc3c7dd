//! Advanced RX and TX descriptors (Linux `e1000_82575.h`: `union e1000_adv_rx_desc`,
//! `union e1000_adv_tx_desc`, `struct e1000_adv_tx_context_desc`) as typed views over their 16
//! bytes, in the smoltcp style: field positions in `field`, a `parse` from bytes and an `emit` to
//! bytes, no accessor that can panic (the buffer is always exactly [`DESC_LEN`] bytes).

/// Every advanced descriptor is 16 bytes.
pub const DESC_LEN: usize = 16;
/// RX descriptors one frame is placed in without a heap allocation on the RX path: a 9018-byte
/// jumbo frame in 2 KiB buffers takes 5. Larger spreads still work, on the heap.
pub const RX_DESCS_INLINE: usize = 5;
/// One descriptor's bytes as read from or written to guest memory.
pub type DescBytes = [u8; DESC_LEN];

mod field {
    use core::ops::Range;
    pub type Field = Range<usize>;
    // RX read format.
    pub const RX_PKT_ADDR: Field = 0..8;
    pub const RX_HDR_ADDR: Field = 8..16;
    // RX write-back format.
    pub const RX_WB_LO: Field = 0..4;
    pub const RX_WB_RSS: Field = 4..8;
    pub const RX_WB_STATUS_ERROR: Field = 8..12;
    pub const RX_WB_LENGTH: Field = 12..14;
    pub const RX_WB_VLAN: Field = 14..16;
    // TX data descriptor.
    pub const TX_ADDR: Field = 0..8;
    pub const TX_CMD_TYPE_LEN: Field = 8..12;
    pub const TX_OLINFO_STATUS: Field = 12..16;
    // TX context descriptor.
    pub const CTX_VLAN_MACIP_LENS: Field = 0..4;
    pub const CTX_TYPE_TUCMD: Field = 8..12;
    pub const CTX_MSS_L4LEN_IDX: Field = 12..16;
}

fn get_u32(b: &DescBytes, f: field::Field) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[f]);
    u32::from_le_bytes(w)
}

fn get_u64(b: &DescBytes, f: field::Field) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[f]);
    u64::from_le_bytes(w)
}

fn get_u16(b: &DescBytes, f: field::Field) -> u16 {
    let mut w = [0u8; 2];
    w.copy_from_slice(&b[f]);
    u16::from_le_bytes(w)
}

/// RX status (dword 2, bits 19:0) and error (bits 31:20) bits.
pub mod rx_status {
    pub const DD: u32 = 1 << 0;
    pub const EOP: u32 = 1 << 1;
    pub const IXSM: u32 = 1 << 2;
    pub const VP: u32 = 1 << 3;
    pub const UDPCS: u32 = 1 << 4;
    pub const L4CS: u32 = 1 << 5;
    pub const IPCS: u32 = 1 << 6;
    pub const LB: u32 = 1 << 18;
    /// TCP/UDP checksum error (igbvf: E1000_RXDEXT_STATERR_TCPE).
    pub const L4E: u32 = 1 << 29;
    /// IPv4 header checksum error.
    pub const IPE: u32 = 1 << 30;
    /// igbvf drops a frame with any of these (E1000_RXDEXT_ERR_FRAME_ERR_MASK).
    pub const ERR_FRAME_MASK: u32 = 0x9700_0000;
}

/// RX write-back dword 0: HDR_LEN (b30:21) and SPH (b31).
pub mod rx_hdr {
    pub const HDR_LEN_SHIFT: u32 = 21;
    pub const HDR_LEN_MASK: u32 = 0x3FF << HDR_LEN_SHIFT;
    pub const SPH: u32 = 1 << 31;
}

/// The RX descriptor as the driver posts it: buffer addresses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxReadDesc {
    pub pkt_addr: u64,
    /// Header buffer (header-split modes only; in one-buffer mode these bytes are stale
    /// write-back data and must be ignored: igb's `igb_alloc_rx_buffers` writes only the packet
    /// address).
    pub hdr_addr: u64,
}

impl RxReadDesc {
    pub fn parse(b: &DescBytes) -> RxReadDesc {
        RxReadDesc {
            pkt_addr: get_u64(b, field::RX_PKT_ADDR),
            hdr_addr: get_u64(b, field::RX_HDR_ADDR),
        }
    }

    pub fn emit(&self, b: &mut DescBytes) {
        b[field::RX_PKT_ADDR].copy_from_slice(&self.pkt_addr.to_le_bytes());
        b[field::RX_HDR_ADDR].copy_from_slice(&self.hdr_addr.to_le_bytes());
    }
}

/// The RX descriptor as the device writes it back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxWriteBack {
    /// Bytes placed in the header buffer (header split), 0 otherwise.
    pub hdr_len: u16,
    /// The header was split into the header buffer.
    pub sph: bool,
    /// RSS hash / IP id + checksum dword: written as 0 (neither igbvf nor ixgbevf reads the hash:
    /// neither offers NETIF_F_RXHASH).
    pub rss: u32,
    /// Status and error bits ([`rx_status`]).
    pub status_error: u32,
    /// Bytes written to the packet buffer of this descriptor.
    pub length: u16,
    /// Stripped VLAN tag (meaningful with `VP`).
    pub vlan: u16,
}

impl RxWriteBack {
    pub fn parse(b: &DescBytes) -> RxWriteBack {
        let lo = get_u32(b, field::RX_WB_LO);
        RxWriteBack {
            hdr_len: ((lo & rx_hdr::HDR_LEN_MASK) >> rx_hdr::HDR_LEN_SHIFT) as u16,
            sph: lo & rx_hdr::SPH != 0,
            rss: get_u32(b, field::RX_WB_RSS),
            status_error: get_u32(b, field::RX_WB_STATUS_ERROR),
            length: get_u16(b, field::RX_WB_LENGTH),
            vlan: get_u16(b, field::RX_WB_VLAN),
        }
    }

    /// The 16 bytes to write. RSS type and packet type (dword 0, b15:0) are 0.
    pub fn emit(&self, b: &mut DescBytes) {
        let mut lo = (u32::from(self.hdr_len) << rx_hdr::HDR_LEN_SHIFT) & rx_hdr::HDR_LEN_MASK;
        if self.sph {
            lo |= rx_hdr::SPH;
        }
        b[field::RX_WB_LO].copy_from_slice(&lo.to_le_bytes());
        b[field::RX_WB_RSS].copy_from_slice(&self.rss.to_le_bytes());
        b[field::RX_WB_STATUS_ERROR].copy_from_slice(&self.status_error.to_le_bytes());
        b[field::RX_WB_LENGTH].copy_from_slice(&self.length.to_le_bytes());
        b[field::RX_WB_VLAN].copy_from_slice(&self.vlan.to_le_bytes());
    }

    pub fn dd(&self) -> bool {
        self.status_error & rx_status::DD != 0
    }

    pub fn eop(&self) -> bool {
        self.status_error & rx_status::EOP != 0
    }
}

/// Raw bit layout of the advanced TX descriptors (Linux e1000_82575.h names).
pub mod tx_bits {
    // ---- data descriptor, dword 2 (cmd_type_len) ----
    /// Buffer length of this descriptor (DTALEN).
    pub const DTALEN_MASK: u32 = 0xFFFF;
    /// Descriptor type field position (b23:20), in both data and context descriptors.
    pub const DTYP_SHIFT: u32 = 20;
    pub const DTYP_MASK: u32 = 0xF << DTYP_SHIFT;
    /// DTYP of a context descriptor.
    pub const DTYP_CONTEXT: u32 = 0b0010;
    /// DTYP of a data descriptor.
    pub const DTYP_DATA: u32 = 0b0011;
    /// End of packet.
    pub const DCMD_EOP: u32 = 1 << 24;
    /// Insert FCS.
    pub const DCMD_IFCS: u32 = 1 << 25;
    /// Report status.
    pub const DCMD_RS: u32 = 1 << 27;
    /// Descriptor extension (advanced format).
    pub const DCMD_DEXT: u32 = 1 << 29;
    /// VLAN insertion enable: insert the context descriptor's VLAN tag.
    pub const DCMD_VLE: u32 = 1 << 30;
    /// TCP/UDP segmentation enable.
    pub const DCMD_TSE: u32 = 1 << 31;

    // ---- data descriptor, dword 3 (olinfo_status) ----
    /// Context slot used by this packet (82575 only; 0 from igb on the 82576).
    pub const OLINFO_IDX_SHIFT: u32 = 4;
    pub const OLINFO_IDX_MASK: u32 = 0x7 << OLINFO_IDX_SHIFT;
    /// POPTS.IXSM: insert the IPv4 header checksum.
    /// Descriptor done, written back into olinfo_status when RS was set.
    pub const STA_DD: u32 = 1 << 0;
    pub const POPTS_IXSM: u32 = 1 << 8;
    /// POPTS.TXSM: insert the L4 checksum.
    pub const POPTS_TXSM: u32 = 1 << 9;
    /// PAYLEN, b31:14.
    pub const PAYLEN_SHIFT: u32 = 14;
    /// Largest PAYLEN the 18-bit field can hold.
    pub const PAYLEN_MAX: u32 = (1 << 18) - 1;

    // ---- context descriptor, dword 0 (vlan_macip_lens) ----
    pub const IPLEN_MASK: u32 = 0x1FF;
    pub const MACLEN_SHIFT: u32 = 9;
    pub const MACLEN_MASK: u32 = 0x7F << MACLEN_SHIFT;
    pub const VLAN_SHIFT: u32 = 16;

    // ---- context descriptor, dword 2 (type_tucmd_mlhl) ----
    /// TUCMD.IPV4: the L3 header is IPv4 (clear: IPv6, or "not told" for checksum-only).
    pub const TUCMD_IPV4: u32 = 1 << 10;
    pub const TUCMD_L4T_SHIFT: u32 = 11;
    pub const TUCMD_L4T_MASK: u32 = 0x3 << TUCMD_L4T_SHIFT;
    pub const L4T_UDP: u32 = 0b00;
    pub const L4T_TCP: u32 = 0b01;
    pub const L4T_SCTP: u32 = 0b10;

    // ---- context descriptor, dword 3 (mss_l4len_idx) ----
    pub const CTX_IDX_SHIFT: u32 = 4;
    pub const CTX_IDX_MASK: u32 = 0x7 << CTX_IDX_SHIFT;
    pub const L4LEN_SHIFT: u32 = 8;
    pub const L4LEN_MASK: u32 = 0xFF << L4LEN_SHIFT;
    pub const MSS_SHIFT: u32 = 16;
}

/// The L3 type a context descriptor declares (TUCMD.IPV4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum L3Type {
    /// TUCMD.IPV4 set.
    Ipv4,
    /// TUCMD.IPV4 clear: IPv6 for TSO. For checksum-only contexts igb leaves the bit clear for
    /// IPv4 too, so there the engine reads the IP version from the frame instead.
    #[default]
    Ipv6,
}

/// The L4 type of a context descriptor (TUCMD.L4T).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum L4Type {
    /// 00 (also what igb writes for a VLAN-only context).
    #[default]
    Udp,
    /// 01.
    Tcp,
    /// 10: CRC32c.
    Sctp,
    /// 11, reserved: no L4 offload possible.
    Other,
}

impl L4Type {
    pub(crate) fn from_bits(v: u32) -> L4Type {
        match v {
            tx_bits::L4T_UDP => L4Type::Udp,
            tx_bits::L4T_TCP => L4Type::Tcp,
            tx_bits::L4T_SCTP => L4Type::Sctp,
            _ => L4Type::Other,
        }
    }

    pub(crate) fn to_bits(self) -> u32 {
        match self {
            L4Type::Udp => tx_bits::L4T_UDP,
            L4Type::Tcp => tx_bits::L4T_TCP,
            L4Type::Sctp => tx_bits::L4T_SCTP,
            L4Type::Other => 0b11,
        }
    }
}

/// The offload context of an advanced TX context descriptor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxContext {
    /// MACLEN (7 bits): bytes before the L3 header in the frame as gathered from guest memory
    /// (untagged when VLE inserts the tag).
    pub mac_len: u8,
    /// IPLEN (9 bits): bytes from the L3 header to the L4 header.
    pub ip_len: u16,
    /// L4LEN (8 bits): the L4 header length; used only for segmentation.
    pub l4_len: u8,
    /// MSS (16 bits): payload bytes per segment; used only for segmentation.
    pub mss: u16,
    /// TUCMD.IPV4.
    pub l3: L3Type,
    /// TUCMD.L4T.
    pub l4: L4Type,
    /// The 802.1Q TCI (priority, DEI, VID) inserted when a data descriptor has VLE.
    pub vlan: u16,
    /// Context slot (IDX, 3 bits); 0 from igb/igbvf on the 82576.
    pub idx: u8,
}

impl TxContext {
    /// Decodes the four little-endian dwords of a context descriptor (as CPU integers).
    /// Dword 1 (seqnum/seed) is not used by the 82576 and is ignored; the DTYP/DEXT bits of
    /// dword 2 are the caller's to check.
    pub fn from_words(vlan_macip_lens: u32, type_tucmd_mlhl: u32, mss_l4len_idx: u32) -> Self {
        TxContext {
            mac_len: ((vlan_macip_lens & tx_bits::MACLEN_MASK) >> tx_bits::MACLEN_SHIFT) as u8,
            ip_len: (vlan_macip_lens & tx_bits::IPLEN_MASK) as u16,
            vlan: (vlan_macip_lens >> tx_bits::VLAN_SHIFT) as u16,
            l3: if type_tucmd_mlhl & tx_bits::TUCMD_IPV4 != 0 {
                L3Type::Ipv4
            } else {
                L3Type::Ipv6
            },
            l4: L4Type::from_bits(
                (type_tucmd_mlhl & tx_bits::TUCMD_L4T_MASK) >> tx_bits::TUCMD_L4T_SHIFT,
            ),
            idx: ((mss_l4len_idx & tx_bits::CTX_IDX_MASK) >> tx_bits::CTX_IDX_SHIFT) as u8,
            l4_len: ((mss_l4len_idx & tx_bits::L4LEN_MASK) >> tx_bits::L4LEN_SHIFT) as u8,
            mss: (mss_l4len_idx >> tx_bits::MSS_SHIFT) as u16,
        }
    }

    /// Decodes a context descriptor's 16 bytes as read from the ring.
    pub fn from_desc(desc: &[u8; 16]) -> Self {
        let dword = |i: usize| {
            u32::from_le_bytes([
                desc[4 * i],
                desc[4 * i + 1],
                desc[4 * i + 2],
                desc[4 * i + 3],
            ])
        };
        Self::from_words(dword(0), dword(2), dword(3))
    }

    /// The dwords 0, 2 and 3 a driver would write for this context (DTYP and DEXT included);
    /// out-of-range fields are truncated to their widths.
    pub fn to_words(&self) -> (u32, u32, u32) {
        let lens = (u32::from(self.ip_len) & tx_bits::IPLEN_MASK)
            | ((u32::from(self.mac_len) << tx_bits::MACLEN_SHIFT) & tx_bits::MACLEN_MASK)
            | (u32::from(self.vlan) << tx_bits::VLAN_SHIFT);
        let mut tucmd = tx_bits::DCMD_DEXT
            | (tx_bits::DTYP_CONTEXT << tx_bits::DTYP_SHIFT)
            | (self.l4.to_bits() << tx_bits::TUCMD_L4T_SHIFT);
        if self.l3 == L3Type::Ipv4 {
            tucmd |= tx_bits::TUCMD_IPV4;
        }
        let mli = ((u32::from(self.idx) << tx_bits::CTX_IDX_SHIFT) & tx_bits::CTX_IDX_MASK)
            | (u32::from(self.l4_len) << tx_bits::L4LEN_SHIFT)
            | (u32::from(self.mss) << tx_bits::MSS_SHIFT);
        (lens, tucmd, mli)
    }
}

/// The per-packet offload requests of a packet's first data descriptor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxOffloads {
    /// DCMD.TSE: segment the packet (TCP, or UDP when L4T is UDP).
    pub tse: bool,
    /// POPTS.IXSM: insert the IPv4 header checksum.
    pub ixsm: bool,
    /// POPTS.TXSM: insert the L4 checksum.
    pub txsm: bool,
    /// DCMD.VLE: insert the context's VLAN tag.
    pub vle: bool,
    /// PAYLEN (18 bits): with TSE the bytes after the headers, otherwise the frame length.
    pub paylen: u32,
}

impl TxOffloads {
    /// Decodes dwords 2 (cmd_type_len) and 3 (olinfo_status) of a data descriptor.
    pub fn from_words(cmd_type_len: u32, olinfo_status: u32) -> Self {
        TxOffloads {
            tse: cmd_type_len & tx_bits::DCMD_TSE != 0,
            vle: cmd_type_len & tx_bits::DCMD_VLE != 0,
            ixsm: olinfo_status & tx_bits::POPTS_IXSM != 0,
            txsm: olinfo_status & tx_bits::POPTS_TXSM != 0,
            paylen: olinfo_status >> tx_bits::PAYLEN_SHIFT,
        }
    }

    /// Decodes a data descriptor's 16 bytes as read from the ring.
    pub fn from_desc(desc: &[u8; 16]) -> Self {
        let cmd = u32::from_le_bytes([desc[8], desc[9], desc[10], desc[11]]);
        let ol = u32::from_le_bytes([desc[12], desc[13], desc[14], desc[15]]);
        Self::from_words(cmd, ol)
    }

    /// The offload bits of dwords 2 and 3 (DTYP data, DEXT, no length, EOP/RS/IFCS clear).
    pub fn to_words(&self) -> (u32, u32) {
        let mut cmd = tx_bits::DCMD_DEXT | (tx_bits::DTYP_DATA << tx_bits::DTYP_SHIFT);
        if self.tse {
            cmd |= tx_bits::DCMD_TSE;
        }
        if self.vle {
            cmd |= tx_bits::DCMD_VLE;
        }
        let mut ol = (self.paylen & tx_bits::PAYLEN_MAX) << tx_bits::PAYLEN_SHIFT;
        if self.ixsm {
            ol |= tx_bits::POPTS_IXSM;
        }
        if self.txsm {
            ol |= tx_bits::POPTS_TXSM;
        }
        (cmd, ol)
    }
}

/// An advanced TX data descriptor (DTYP 0011, DEXT 1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxDataDesc {
    pub addr: u64,
    /// Bytes in this buffer (DTALEN).
    pub len: u16,
    pub eop: bool,
    pub ifcs: bool,
    pub rs: bool,
    /// Context slot (olinfo IDX).
    pub idx: u8,
    /// TSE, VLE, IXSM, TXSM and PAYLEN: what the offload engine is asked to do (meaningful on
    /// a packet's first data descriptor).
    pub offloads: TxOffloads,
}

/// What a TX descriptor slot holds, told apart by DEXT and DTYP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxDesc {
    Data(TxDataDesc),
    Context(TxContext),
    /// A legacy descriptor (DEXT 0) or an unknown DTYP: not used by igbvf, refused. `eop`
    /// is bit 24 of dword 2 (EOP in both the legacy and the advanced layouts), so that a
    /// refused packet ends where the driver meant it to.
    Unknown {
        dext: bool,
        dtyp: u8,
        eop: bool,
    },
}

impl TxDesc {
    pub fn parse(b: &DescBytes) -> TxDesc {
        let cmd = get_u32(b, field::TX_CMD_TYPE_LEN);
        let dext = cmd & tx_bits::DCMD_DEXT != 0;
        let dtyp = ((cmd & tx_bits::DTYP_MASK) >> tx_bits::DTYP_SHIFT) as u8;
        match (dext, u32::from(dtyp)) {
            (true, tx_bits::DTYP_DATA) => {
                let ol = get_u32(b, field::TX_OLINFO_STATUS);
                TxDesc::Data(TxDataDesc {
                    addr: get_u64(b, field::TX_ADDR),
                    len: (cmd & tx_bits::DTALEN_MASK) as u16,
                    eop: cmd & tx_bits::DCMD_EOP != 0,
                    ifcs: cmd & tx_bits::DCMD_IFCS != 0,
                    rs: cmd & tx_bits::DCMD_RS != 0,
                    idx: ((ol & tx_bits::OLINFO_IDX_MASK) >> tx_bits::OLINFO_IDX_SHIFT) as u8,
                    offloads: TxOffloads::from_words(cmd, ol),
                })
            }
            (true, tx_bits::DTYP_CONTEXT) => TxDesc::Context(TxContext::from_words(
                get_u32(b, field::CTX_VLAN_MACIP_LENS),
                get_u32(b, field::CTX_TYPE_TUCMD),
                get_u32(b, field::CTX_MSS_L4LEN_IDX),
            )),
            _ => TxDesc::Unknown {
                dext,
                dtyp,
                eop: cmd & tx_bits::DCMD_EOP != 0,
            },
        }
    }

    /// The descriptor's bytes as a driver would write them.
    pub fn emit(&self, b: &mut DescBytes) {
        match self {
            TxDesc::Data(d) => {
                let (mut cmd, mut ol) = d.offloads.to_words();
                cmd |= u32::from(d.len);
                for (on, bit) in [
                    (d.eop, tx_bits::DCMD_EOP),
                    (d.ifcs, tx_bits::DCMD_IFCS),
                    (d.rs, tx_bits::DCMD_RS),
                ] {
                    if on {
                        cmd |= bit;
                    }
                }
                ol |= (u32::from(d.idx) << tx_bits::OLINFO_IDX_SHIFT) & tx_bits::OLINFO_IDX_MASK;
                b[field::TX_ADDR].copy_from_slice(&d.addr.to_le_bytes());
                b[field::TX_CMD_TYPE_LEN].copy_from_slice(&cmd.to_le_bytes());
                b[field::TX_OLINFO_STATUS].copy_from_slice(&ol.to_le_bytes());
            }
            TxDesc::Context(c) => {
                // Dword 1 (seqnum/seed) is unused by the 82576 and written as 0.
                let (lens, tucmd, mli) = c.to_words();
                *b = [0; DESC_LEN];
                b[field::CTX_VLAN_MACIP_LENS].copy_from_slice(&lens.to_le_bytes());
                b[field::CTX_TYPE_TUCMD].copy_from_slice(&tucmd.to_le_bytes());
                b[field::CTX_MSS_L4LEN_IDX].copy_from_slice(&mli.to_le_bytes());
            }
            TxDesc::Unknown { dext, dtyp, eop } => {
                let mut cmd = u32::from(*dtyp & 0xF) << tx_bits::DTYP_SHIFT;
                if *dext {
                    cmd |= tx_bits::DCMD_DEXT;
                }
                if *eop {
                    cmd |= tx_bits::DCMD_EOP;
                }
                *b = [0; DESC_LEN];
                b[field::TX_CMD_TYPE_LEN].copy_from_slice(&cmd.to_le_bytes());
            }
        }
    }
}

/// Offset of the TX write-back status dword (olinfo_status) inside a descriptor.
pub const TX_STATUS_OFFSET: u64 = field::TX_OLINFO_STATUS.start as u64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn igbvf_data_descriptor_parses_from_literal_bytes() {
        // addr 0x1234_5000, len 60, DTYP data | IFCS | DEXT | EOP | RS, PAYLEN 60.
        let cmd: u32 = 60
            | (3 << 20)
            | tx_bits::DCMD_IFCS
            | tx_bits::DCMD_DEXT
            | tx_bits::DCMD_EOP
            | tx_bits::DCMD_RS;
        let ol: u32 = 60 << 14;
        let mut b = [0u8; 16];
        b[0..8].copy_from_slice(&0x1234_5000u64.to_le_bytes());
        b[8..12].copy_from_slice(&cmd.to_le_bytes());
        b[12..16].copy_from_slice(&ol.to_le_bytes());
        let d = TxDesc::parse(&b);
        let TxDesc::Data(data) = d else {
            panic!("not data: {d:?}")
        };
        assert_eq!(data.addr, 0x1234_5000);
        assert_eq!(data.len, 60);
        assert!(data.eop && data.rs && data.ifcs && !data.offloads.tse && !data.offloads.vle);
        assert_eq!(data.offloads.paylen, 60);
        let mut out = [0u8; 16];
        d.emit(&mut out);
        assert_eq!(out, b);
    }

    #[test]
    fn igbvf_tso_context_descriptor_round_trips() {
        let c = TxContext {
            ip_len: 20,
            mac_len: 14,
            vlan: 0x2005,
            l3: L3Type::Ipv4,
            l4: L4Type::Tcp,
            idx: 0,
            l4_len: 20,
            mss: 1448,
        };
        let mut b = [0u8; 16];
        TxDesc::Context(c).emit(&mut b);
        // vlan_macip_lens = VLAN << 16 | MACLEN << 9 | IPLEN
        assert_eq!(
            u32::from_le_bytes(b[0..4].try_into().unwrap()),
            (0x2005 << 16) | (14 << 9) | 20
        );
        assert_eq!(TxDesc::parse(&b), TxDesc::Context(c));
    }

    #[test]
    fn legacy_descriptor_is_unknown() {
        let b = [0xFFu8; 16];
        // DEXT set, DTYP 0xF: unknown.
        assert_eq!(
            TxDesc::parse(&b),
            TxDesc::Unknown {
                dext: true,
                dtyp: 0xF,
                eop: true
            }
        );
        assert!(matches!(
            TxDesc::parse(&[0u8; 16]),
            TxDesc::Unknown { dext: false, .. }
        ));
    }

    #[test]
    fn rx_write_back_round_trips_and_places_fields_where_igbvf_reads_them() {
        let wb = RxWriteBack {
            hdr_len: 54,
            sph: true,
            rss: 0,
            status_error: rx_status::DD | rx_status::EOP | rx_status::VP,
            length: 1000,
            vlan: 10,
        };
        let mut b = [0u8; 16];
        wb.emit(&mut b);
        // hdr_info (le16 at byte 2): HDRBUFLEN mask 0x7FE0 >> 5.
        let hdr_info = u16::from_le_bytes([b[2], b[3]]);
        assert_eq!((hdr_info & 0x7FE0) >> 5, 54);
        assert_eq!(hdr_info & 0x8000, 0x8000);
        assert_eq!(u16::from_le_bytes([b[12], b[13]]), 1000);
        assert_eq!(u16::from_le_bytes([b[14], b[15]]), 10);
        assert_eq!(RxWriteBack::parse(&b), wb);
    }

    #[test]
    fn rx_read_descriptor_round_trips() {
        let d = RxReadDesc {
            pkt_addr: 0xdead_b000,
            hdr_addr: 0xbeef_0000,
        };
        let mut b = [0u8; 16];
        d.emit(&mut b);
        assert_eq!(RxReadDesc::parse(&b), d);
    }
}
