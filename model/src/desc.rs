//! Advanced RX and TX descriptors (spec §2.8) as typed views over their 16 bytes, in the
//! smoltcp style: field positions in `field`, a `parse` from bytes and an `emit` to bytes,
//! no accessor that can panic (the buffer is always exactly [`DESC_LEN`] bytes).

/// Every advanced descriptor is 16 bytes.
pub const DESC_LEN: usize = 16;
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
    pub const CTX_SEQNUM_SEED: Field = 4..8;
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
    /// write-back data and must be ignored, spec §2.8).
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
    /// RSS hash / IP id + checksum dword: 0 (no RSS on VF queues here).
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

/// TX descriptor command/type bits (cmd_type_len, dword 2), spec §2.8.
pub mod tx_cmd {
    pub const DTALEN_MASK: u32 = 0xFFFF;
    pub const DTYP_SHIFT: u32 = 20;
    pub const DTYP_MASK: u32 = 0xF << DTYP_SHIFT;
    pub const DTYP_CTXT: u32 = 0b0010;
    pub const DTYP_DATA: u32 = 0b0011;
    pub const EOP: u32 = 1 << 24;
    pub const IFCS: u32 = 1 << 25;
    pub const RS: u32 = 1 << 27;
    pub const DEXT: u32 = 1 << 29;
    pub const VLE: u32 = 1 << 30;
    pub const TSE: u32 = 1 << 31;
}

/// TX olinfo_status (dword 3) bits.
pub mod tx_olinfo {
    /// Written back by the device when RS was set.
    pub const DD: u32 = 1 << 0;
    pub const IDX_SHIFT: u32 = 4;
    pub const IDX_MASK: u32 = 0x7 << IDX_SHIFT;
    pub const POPTS_IXSM: u32 = 1 << 8;
    pub const POPTS_TXSM: u32 = 1 << 9;
    pub const PAYLEN_SHIFT: u32 = 14;
}

/// TX context descriptor fields.
pub mod tx_ctx {
    pub const IPLEN_MASK: u32 = 0x1FF;
    pub const MACLEN_SHIFT: u32 = 9;
    pub const MACLEN_MASK: u32 = 0x7F << MACLEN_SHIFT;
    pub const VLAN_SHIFT: u32 = 16;
    pub const TUCMD_IPV4: u32 = 1 << 10;
    pub const TUCMD_L4T_SHIFT: u32 = 11;
    pub const TUCMD_L4T_MASK: u32 = 0x3 << TUCMD_L4T_SHIFT;
    pub const IDX_SHIFT: u32 = 4;
    pub const IDX_MASK: u32 = 0x7 << IDX_SHIFT;
    pub const L4LEN_SHIFT: u32 = 8;
    pub const L4LEN_MASK: u32 = 0xFF << L4LEN_SHIFT;
    pub const MSS_SHIFT: u32 = 16;
}

/// The L4 type of a context descriptor (TUCMD.L4T).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum L4Type {
    #[default]
    Udp,
    Tcp,
    Sctp,
    /// The reserved encoding 11.
    Unknown(u8),
}

impl L4Type {
    fn from_bits(v: u8) -> L4Type {
        match v {
            0 => L4Type::Udp,
            1 => L4Type::Tcp,
            2 => L4Type::Sctp,
            other => L4Type::Unknown(other),
        }
    }

    fn bits(self) -> u32 {
        match self {
            L4Type::Udp => 0,
            L4Type::Tcp => 1,
            L4Type::Sctp => 2,
            L4Type::Unknown(v) => u32::from(v & 3),
        }
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
    pub vle: bool,
    pub tse: bool,
    /// Context slot (olinfo IDX).
    pub idx: u8,
    /// POPTS.IXSM: insert the IPv4 header checksum.
    pub ixsm: bool,
    /// POPTS.TXSM: insert the L4 checksum.
    pub txsm: bool,
    /// PAYLEN: the packet's payload length (TSO: excluding headers).
    pub paylen: u32,
}

/// An advanced TX context descriptor (DTYP 0010, DEXT 1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxContextDesc {
    pub iplen: u16,
    pub maclen: u8,
    /// VLAN tag to insert when a data descriptor has VLE.
    pub vlan: u16,
    pub seqnum_seed: u32,
    pub ipv4: bool,
    pub l4t: L4Type,
    /// Context slot (IDX).
    pub idx: u8,
    pub l4len: u8,
    pub mss: u16,
}

/// What a TX descriptor slot holds, told apart by DEXT and DTYP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxDesc {
    Data(TxDataDesc),
    Context(TxContextDesc),
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
        let dext = cmd & tx_cmd::DEXT != 0;
        let dtyp = ((cmd & tx_cmd::DTYP_MASK) >> tx_cmd::DTYP_SHIFT) as u8;
        match (dext, u32::from(dtyp)) {
            (true, tx_cmd::DTYP_DATA) => {
                let ol = get_u32(b, field::TX_OLINFO_STATUS);
                TxDesc::Data(TxDataDesc {
                    addr: get_u64(b, field::TX_ADDR),
                    len: (cmd & tx_cmd::DTALEN_MASK) as u16,
                    eop: cmd & tx_cmd::EOP != 0,
                    ifcs: cmd & tx_cmd::IFCS != 0,
                    rs: cmd & tx_cmd::RS != 0,
                    vle: cmd & tx_cmd::VLE != 0,
                    tse: cmd & tx_cmd::TSE != 0,
                    idx: ((ol & tx_olinfo::IDX_MASK) >> tx_olinfo::IDX_SHIFT) as u8,
                    ixsm: ol & tx_olinfo::POPTS_IXSM != 0,
                    txsm: ol & tx_olinfo::POPTS_TXSM != 0,
                    paylen: ol >> tx_olinfo::PAYLEN_SHIFT,
                })
            }
            (true, tx_cmd::DTYP_CTXT) => {
                let lens = get_u32(b, field::CTX_VLAN_MACIP_LENS);
                let tucmd = get_u32(b, field::CTX_TYPE_TUCMD);
                let mli = get_u32(b, field::CTX_MSS_L4LEN_IDX);
                TxDesc::Context(TxContextDesc {
                    iplen: (lens & tx_ctx::IPLEN_MASK) as u16,
                    maclen: ((lens & tx_ctx::MACLEN_MASK) >> tx_ctx::MACLEN_SHIFT) as u8,
                    vlan: (lens >> tx_ctx::VLAN_SHIFT) as u16,
                    seqnum_seed: get_u32(b, field::CTX_SEQNUM_SEED),
                    ipv4: tucmd & tx_ctx::TUCMD_IPV4 != 0,
                    l4t: L4Type::from_bits(
                        ((tucmd & tx_ctx::TUCMD_L4T_MASK) >> tx_ctx::TUCMD_L4T_SHIFT) as u8,
                    ),
                    idx: ((mli & tx_ctx::IDX_MASK) >> tx_ctx::IDX_SHIFT) as u8,
                    l4len: ((mli & tx_ctx::L4LEN_MASK) >> tx_ctx::L4LEN_SHIFT) as u8,
                    mss: (mli >> tx_ctx::MSS_SHIFT) as u16,
                })
            }
            _ => TxDesc::Unknown {
                dext,
                dtyp,
                eop: cmd & tx_cmd::EOP != 0,
            },
        }
    }

    /// The descriptor's bytes as a driver would write them.
    pub fn emit(&self, b: &mut DescBytes) {
        match self {
            TxDesc::Data(d) => {
                let mut cmd = u32::from(d.len) | (tx_cmd::DTYP_DATA << tx_cmd::DTYP_SHIFT);
                cmd |= tx_cmd::DEXT;
                for (on, bit) in [
                    (d.eop, tx_cmd::EOP),
                    (d.ifcs, tx_cmd::IFCS),
                    (d.rs, tx_cmd::RS),
                    (d.vle, tx_cmd::VLE),
                    (d.tse, tx_cmd::TSE),
                ] {
                    if on {
                        cmd |= bit;
                    }
                }
                let mut ol = (u32::from(d.idx) << tx_olinfo::IDX_SHIFT) & tx_olinfo::IDX_MASK;
                if d.ixsm {
                    ol |= tx_olinfo::POPTS_IXSM;
                }
                if d.txsm {
                    ol |= tx_olinfo::POPTS_TXSM;
                }
                ol |= d.paylen << tx_olinfo::PAYLEN_SHIFT;
                b[field::TX_ADDR].copy_from_slice(&d.addr.to_le_bytes());
                b[field::TX_CMD_TYPE_LEN].copy_from_slice(&cmd.to_le_bytes());
                b[field::TX_OLINFO_STATUS].copy_from_slice(&ol.to_le_bytes());
            }
            TxDesc::Context(c) => {
                let lens = (u32::from(c.iplen) & tx_ctx::IPLEN_MASK)
                    | ((u32::from(c.maclen) << tx_ctx::MACLEN_SHIFT) & tx_ctx::MACLEN_MASK)
                    | (u32::from(c.vlan) << tx_ctx::VLAN_SHIFT);
                let mut tucmd = tx_cmd::DEXT | (tx_cmd::DTYP_CTXT << tx_cmd::DTYP_SHIFT);
                if c.ipv4 {
                    tucmd |= tx_ctx::TUCMD_IPV4;
                }
                tucmd |= c.l4t.bits() << tx_ctx::TUCMD_L4T_SHIFT;
                let mli = ((u32::from(c.idx) << tx_ctx::IDX_SHIFT) & tx_ctx::IDX_MASK)
                    | (u32::from(c.l4len) << tx_ctx::L4LEN_SHIFT)
                    | (u32::from(c.mss) << tx_ctx::MSS_SHIFT);
                b[field::CTX_VLAN_MACIP_LENS].copy_from_slice(&lens.to_le_bytes());
                b[field::CTX_SEQNUM_SEED].copy_from_slice(&c.seqnum_seed.to_le_bytes());
                b[field::CTX_TYPE_TUCMD].copy_from_slice(&tucmd.to_le_bytes());
                b[field::CTX_MSS_L4LEN_IDX].copy_from_slice(&mli.to_le_bytes());
            }
            TxDesc::Unknown { dext, dtyp, eop } => {
                let mut cmd = u32::from(*dtyp & 0xF) << tx_cmd::DTYP_SHIFT;
                if *dext {
                    cmd |= tx_cmd::DEXT;
                }
                if *eop {
                    cmd |= tx_cmd::EOP;
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
        let cmd: u32 = 60 | (3 << 20) | tx_cmd::IFCS | tx_cmd::DEXT | tx_cmd::EOP | tx_cmd::RS;
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
        assert!(data.eop && data.rs && data.ifcs && !data.tse && !data.vle);
        assert_eq!(data.paylen, 60);
        let mut out = [0u8; 16];
        d.emit(&mut out);
        assert_eq!(out, b);
    }

    #[test]
    fn igbvf_tso_context_descriptor_round_trips() {
        let c = TxContextDesc {
            iplen: 20,
            maclen: 14,
            vlan: 0x2005,
            seqnum_seed: 0,
            ipv4: true,
            l4t: L4Type::Tcp,
            idx: 0,
            l4len: 20,
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
