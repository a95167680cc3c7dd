//! The driver's datapath: igbvf_xmit_frame, igbvf_clean_tx_irq, igbvf_clean_rx_irq and the
//! three MSI-X handlers; ixgbevf's (`ixgbevf_xmit_frame_ring`, `ixgbevf_clean_tx_irq`,
//! `ixgbevf_clean_rx_irq`, `ixgbevf_msix_clean_rings`, `ixgbevf_msix_other`) where they
//! differ.

use eswitch::wire::{EtherTypes, EthernetFrame};
use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::function::desc::{
    rx_status, tx_bits, L3Type, L4Type, RxWriteBack, TxContext, TxDataDesc, TxDesc, TxOffloads,
};
use crate::testing::IrqLog;

/// olinfo_status.CC (bit 7): "check context", which ixgbevf sets on every packet
/// (`ixgbevf_tx_olinfo_status`).
const OLINFO_CC: u8 = 0x80;

impl SoftVf {
    // ----- TX -----

    fn tx_desc_unused(&self) -> u32 {
        let n = self.cfg.ring;
        if self.tx_next_to_clean > self.tx_next_to_use {
            self.tx_next_to_clean - self.tx_next_to_use - 1
        } else {
            n + self.tx_next_to_clean - self.tx_next_to_use - 1
        }
    }

    /// igbvf_xmit_frame_ring_adv: an optional context descriptor (igbvf_tso / igbvf_tx_csum),
    /// the data descriptors (igbvf_tx_map_adv + igbvf_tx_queue_adv), EOP|RS on the last, TDT.
    /// ixgbevf writes a context descriptor before every packet (index 1 for TSO, else 0) and
    /// sets CC on the data descriptors.
    pub fn xmit(&mut self, vf: &VfHandle, frame: &[u8], opts: &XmitOpts) -> Result<(), DrvError> {
        let frag = opts.frag.clamp(1, TX_SLOT as usize);
        let chunks: Vec<&[u8]> = frame.chunks(frag).collect();
        if chunks.is_empty() {
            return Ok(());
        }
        let need = chunks.len() as u32 + 1;
        if self.tx_desc_unused() < need + 3 {
            return Err(DrvError::TxRingFull);
        }
        let n = self.cfg.ring;
        let first = self.tx_next_to_use;
        let mut i = first;
        let mut hdr_len = 0u32;
        let ixgbevf = self.ixgbevf();
        // ixgbevf_tso: "use index 1 context for TSO".
        let tso_idx = u8::from(ixgbevf);
        let ctx = if let Some((maclen, iplen, l4len, mss, ipv4)) = opts.tso {
            hdr_len = u32::from(maclen) + u32::from(iplen) + u32::from(l4len);
            Some(TxContext {
                ip_len: iplen,
                mac_len: maclen,
                vlan: opts.vlan.unwrap_or(0),
                l3: if ipv4 { L3Type::Ipv4 } else { L3Type::Ipv6 },
                l4: L4Type::Tcp,
                l4_len: l4len,
                mss,
                idx: tso_idx,
            })
        } else if opts.csum.is_some() || opts.vlan.is_some() {
            let (maclen, iplen, tcp) = opts.csum.unwrap_or((14, 0, false));
            // igbvf_tx_csum sets TUCMD.IPV4 for an IPv4 CHECKSUM_PARTIAL packet: when the
            // protocol igbvf_xmit_frame_ring_adv takes from `vlan_get_protocol` (the ethertype
            // behind any VLAN tags) is IPv4.
            let ipv4 = opts.csum.is_some()
                && EthernetFrame::new_checked(frame)
                    .is_ok_and(|eth| eth.ethertype() == EtherTypes::Ipv4);
            Some(TxContext {
                ip_len: iplen,
                mac_len: maclen,
                vlan: opts.vlan.unwrap_or(0),
                l3: if ipv4 { L3Type::Ipv4 } else { L3Type::Ipv6 },
                l4: if tcp { L4Type::Tcp } else { L4Type::Udp },
                ..Default::default()
            })
        } else if ixgbevf {
            // ixgbevf_tx_csum's no_csum path: MACLEN (the network offset) alone.
            let mac_len = match EthernetFrame::new_checked(frame) {
                Ok(eth) if eth.ethertype() == EtherTypes::Vlan => 18,
                _ => 14,
            };
            Some(TxContext {
                mac_len,
                ..Default::default()
            })
        } else {
            None
        };
        if let Some(c) = ctx {
            let mut b = [0u8; DESC_LEN];
            TxDesc::Context(c).emit(&mut b);
            self.write_desc(self.tx_desc_addr(i), &b);
            i = (i + 1) % n;
        }
        let count = chunks.len();
        let mut eop = i;
        for (k, c) in chunks.into_iter().enumerate() {
            let buf = self.tx_buf(i);
            self.mem
                .write_slice(c, GuestAddress(buf))
                .expect("TX buffer inside driver memory");
            let last = k + 1 == count;
            let d = TxDataDesc {
                addr: buf,
                len: c.len() as u16,
                eop: last,
                ifcs: true,
                rs: last && opts.rs,
                idx: if opts.tso.is_some() { tso_idx } else { 0 },
                offloads: TxOffloads {
                    vle: opts.vlan.is_some(),
                    tse: opts.tso.is_some(),
                    ixsm: opts.tso.is_some_and(|t| t.4),
                    txsm: opts.tso.is_some() || opts.csum.is_some(),
                    paylen: frame.len() as u32 - hdr_len,
                },
            };
            let mut b = [0u8; DESC_LEN];
            TxDesc::Data(d).emit(&mut b);
            if ixgbevf {
                b[12] |= OLINFO_CC;
            }
            self.write_desc(self.tx_desc_addr(i), &b);
            eop = i;
            i = (i + 1) % n;
        }
        self.tx_pending.push_back((first, eop));
        self.tx_next_to_use = i;
        self.wr(vf, self.regs.tx + qreg::DT, i);
        Ok(())
    }

    /// igbvf_clean_tx_irq: reclaim packets whose EOP descriptor has DD. Returns packets
    /// cleaned.
    pub fn clean_tx(&mut self) -> usize {
        let n = self.cfg.ring;
        let mut cleaned = 0;
        while let Some(&(first, eop)) = self.tx_pending.front() {
            let b = self.read_desc(self.tx_desc_addr(eop));
            let status = u32::from_le_bytes([b[12], b[13], b[14], b[15]]);
            if status & tx_bits::STA_DD == 0 {
                break;
            }
            let mut i = first;
            loop {
                // tx_desc->wb.status = 0
                let at = self.tx_desc_addr(i) + 12;
                self.mem
                    .write_obj(0u32, GuestAddress(at))
                    .expect("driver ring");
                self.tx_cleaned += 1;
                let done = i == eop;
                i = (i + 1) % n;
                if done {
                    break;
                }
            }
            self.tx_next_to_clean = i;
            self.tx_pending.pop_front();
            cleaned += 1;
        }
        cleaned
    }

    /// Whether DD is set in descriptor `i` of the TX ring (status dword).
    pub fn tx_dd(&self, i: u32) -> bool {
        let b = self.read_desc(self.tx_desc_addr(i));
        u32::from_le_bytes([b[12], b[13], b[14], b[15]]) & tx_bits::STA_DD != 0
    }

    pub fn tx_pending(&self) -> usize {
        self.tx_pending.len()
    }

    // ----- RX -----

    /// The write-back of RX descriptor `i` as it stands.
    pub fn rx_write_back(&self, i: u32) -> RxWriteBack {
        RxWriteBack::parse(&self.read_desc(self.rx_desc_addr(i)))
    }

    /// igbvf_clean_rx_irq: hand every completed frame to the "stack" (`received`), then
    /// refill the ring. Returns frames received.
    pub fn clean_rx(&mut self, vf: &VfHandle) -> usize {
        let n = self.cfg.ring;
        let mut got = 0;
        let mut cleaned = 0;
        loop {
            let i = self.rx_next_to_clean;
            let at = self.rx_desc_addr(i);
            let wb = RxWriteBack::parse(&self.read_desc(at));
            if !wb.dd() {
                break;
            }
            cleaned += 1;
            let length = usize::from(wb.length);
            if self.rx_ps_hdr_size == 0 {
                let mut d = vec![0u8; length];
                self.mem
                    .read_slice(&mut d, GuestAddress(self.rx_buf(i)))
                    .expect("driver buffer");
                self.rx_partial.extend_from_slice(&d);
            } else {
                if self.rx_partial_descs == 0 {
                    let hlen = usize::from(wb.hdr_len).min(self.rx_ps_hdr_size as usize);
                    let mut h = vec![0u8; hlen];
                    self.mem
                        .read_slice(&mut h, GuestAddress(self.rx_hdr_buf(i)))
                        .expect("driver buffer");
                    self.rx_partial.extend_from_slice(&h);
                }
                if length > 0 {
                    let mut d = vec![0u8; length];
                    self.mem
                        .read_slice(&mut d, GuestAddress(self.rx_buf(i)))
                        .expect("driver buffer");
                    self.rx_partial.extend_from_slice(&d);
                }
            }
            self.rx_partial_descs += 1;
            if wb.eop() {
                let data = std::mem::take(&mut self.rx_partial);
                let descriptors = std::mem::take(&mut self.rx_partial_descs);
                if wb.status_error & rx_status::ERR_FRAME_MASK == 0 {
                    let vlan = (wb.status_error & rx_status::VP != 0).then_some(wb.vlan & 0x0FFF);
                    let se = wb.status_error;
                    let checksum_unnecessary = se & rx_status::IXSM == 0
                        && se & (rx_status::L4E | rx_status::IPE) == 0
                        && se & (rx_status::L4CS | rx_status::UDPCS) != 0;
                    self.received.push(RxFrame {
                        data,
                        vlan,
                        descriptors,
                        checksum_unnecessary,
                    });
                    got += 1;
                }
            }
            // rx_desc->wb.upper.status_error = 0
            self.mem
                .write_obj(0u32, GuestAddress(at + 8))
                .expect("driver ring");
            self.rx_next_to_clean = (i + 1) % n;
        }
        if cleaned > 0 {
            let unused = self.rx_desc_unused();
            if unused > 0 {
                self.alloc_rx_buffers(vf, unused);
            }
        }
        got
    }

    // ----- MSI-X handlers -----

    /// Runs the handlers of the vectors the VF fired: igbvf_intr_msix_tx (clean, then EIMS or
    /// EICS), igbvf_intr_msix_rx + igbvf_poll (clean, then EIMS), igbvf_msix_other (link
    /// re-check scheduled, EIMS); ixgbevf's queue vector cleans both rings
    /// (`ixgbevf_poll`) and its mailbox vector is the next one. Vectors fired by the
    /// handlers' own writes run too.
    pub fn handle_irqs(&mut self, vf: &VfHandle, log: &IrqLog) {
        for _ in 0..64 {
            let fired = log.take();
            if fired.is_empty() {
                return;
            }
            for v in fired {
                let bit = 1u32.checked_shl(u32::from(v)).unwrap_or(0);
                if bit & (self.eims_tx | self.eims_rx) != 0 {
                    if bit & self.eims_tx != 0 {
                        let _ = self.clean_tx();
                    }
                    if bit & self.eims_rx != 0 {
                        let _ = self.clean_rx(vf);
                    }
                    self.wr(vf, self.regs.eims, bit);
                } else {
                    self.other_irqs += 1;
                    self.get_link_status = true;
                    self.wr(vf, self.regs.eims, self.eims_other);
                }
            }
        }
    }
}
