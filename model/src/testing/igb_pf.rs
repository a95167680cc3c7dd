//! The VF management of Linux igb (6.1) as a guest's igb drives it through the PF's BAR0 when
//! it manages the VFs itself ([`PfDriver::Guest`](crate::nic::PfDriver::Guest)): the register
//! sequences of `echo N > sriov_numvfs` (`igb_reset`, `igb_setup_mrqc`, `igb_vmm_control`,
//! `igb_set_default_mac_filter`, `igb_irq_enable`, `igb_up`'s CTRL_EXT.PFRSTD), of the mailbox
//! task (`igb_msg_task`: `igb_check_for_rst/msg/ack`, `igb_vf_reset_event`,
//! `igb_rcv_msg_from_vf`, `igb_vf_reset_msg`, `igb_read_mbx_pf`, `igb_write_mbx_pf`) and of
//! `ip link set <pf> vf N mac/vlan/spoofchk/max_tx_rate` (`igb_ndo_set_vf_mac`,
//! `igb_enable_port_vlan`, `igb_disable_port_vlan`, `igb_ndo_set_vf_spoofchk`,
//! `igb_set_vf_rate_limit`).
//!
//! It writes through a [`PfBar0`]: the PF function of a running NIC ([`PfHandle`]) or the bare
//! register file ([`VmmRegs`]), so the same sequences test the translation and the runtime.

use mailbox::regs::{msg, p2v, MAILBOX_WORDS};

use crate::function::i82576::pf_regs::{self as r, ctrl, ctrl_ext, icr, mrqc, rah, vt_ctl};
use crate::function::i82576::pf_vmm::{dtxswc, rttbcnrc, vlvf, vmolr, vmvir, VmmRegs, POOLS};
use crate::nic::PfHandle;

/// 32-bit accesses to the PF's BAR0.
pub trait PfBar0 {
    fn rd(&mut self, off: u64) -> u32;
    fn wr(&mut self, off: u64, v: u32);
}

impl PfBar0 for VmmRegs {
    fn rd(&mut self, off: u64) -> u32 {
        self.read(off).unwrap_or(0)
    }
    fn wr(&mut self, off: u64, v: u32) {
        let _ = self.write(off, v);
    }
}

impl PfBar0 for PfHandle {
    fn rd(&mut self, off: u64) -> u32 {
        let mut b = [0u8; 4];
        self.region_read(0, off, &mut b)
            .expect("4-byte PF BAR0 read");
        u32::from_le_bytes(b)
    }
    fn wr(&mut self, off: u64, v: u32) {
        self.region_write(0, off, &v.to_le_bytes())
            .expect("4-byte PF BAR0 write");
    }
}

/// igb's 82576 VF data: 24 RAR entries, VF n's MAC in entry 23 − n.
const RAR_ENTRIES: usize = 24;
/// DTXSWC's VLAN anti-spoof bits start at pool 8 (`E1000_DTXSWC_VLAN_SPOOF_SHIFT`).
const VLAN_SPOOF_SHIFT: u32 = dtxswc::VLAN_SPOOF_SHIFT;

fn vlvf(i: usize) -> u64 {
    r::VLVF0 + 4 * i as u64
}
fn vmolr_reg(p: usize) -> u64 {
    r::VMOLR0 + 4 * p as u64
}
fn rar(i: usize) -> (u64, u64) {
    let base = if i < 16 {
        r::RA + 8 * i as u64
    } else {
        r::RA2 + 8 * (i as u64 - 16)
    };
    (base, base + 4)
}
fn p2v_reg(vf: usize) -> u64 {
    r::P2VMAILBOX0 + 4 * vf as u64
}
fn vmbmem(vf: usize, w: usize) -> u64 {
    r::VMBMEM0 + 0x40 * vf as u64 + 4 * w as u64
}

/// What igb's mailbox task did for one VF.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handled {
    /// VFLRE was set: `igb_vf_reset_event`.
    ResetEvent(usize),
    /// A message was read and answered with this word 0 (`None`: not answered, the mailbox
    /// was unlocked, as for a VF that is not clear to send).
    Message {
        vf: usize,
        request: u32,
        reply: Option<u32>,
    },
    /// VFACK was set.
    Ack(usize),
}

/// igb's state of the VFs it manages (`adapter->vf_data`).
#[derive(Clone, Debug)]
pub struct SoftIgbPf {
    pub num_vfs: usize,
    pub pf_mac: [u8; 6],
    /// `vf_mac_addresses`.
    pub vf_macs: Vec<[u8; 6]>,
    /// IGB_VF_FLAG_PF_SET_MAC.
    pub admin_mac: Vec<bool>,
    /// IGB_VF_FLAG_CTS.
    pub cts: Vec<bool>,
    /// `pf_vlan` / `pf_qos`.
    pub port_vlan: Vec<(u16, u8)>,
    /// `trusted`.
    pub trusted: Vec<bool>,
    pub link_mbps: u32,
}

impl SoftIgbPf {
    pub fn new(num_vfs: usize, pf_mac: [u8; 6]) -> SoftIgbPf {
        let n = num_vfs.min(POOLS - 1);
        SoftIgbPf {
            num_vfs: n,
            pf_mac,
            vf_macs: vec![[0; 6]; n],
            admin_mac: vec![false; n],
            cts: vec![false; n],
            port_vlan: vec![(0, 0); n],
            trusted: vec![false; n],
            link_mbps: 1000,
        }
    }

    /// The PF's pool: the VF count (`adapter->vfs_allocated_count`).
    pub fn pf_pool(&self) -> usize {
        self.num_vfs
    }

    // ----- registers (igb_main.c, e1000_mac.c) -----

    /// `igb_rar_set_index`: the address, AV when valid, POOLSEL bit `pool`.
    pub fn rar_set(bar: &mut impl PfBar0, index: usize, mac: [u8; 6], pool: usize) {
        let low = u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]);
        let mut high = u32::from(u16::from_le_bytes([mac[4], mac[5]]));
        let valid = mac != [0; 6] && mac[0] & 1 == 0;
        if valid {
            high |= rah::AV;
        }
        high |= 1 << (18 + pool);
        let (l, h) = rar(index);
        bar.wr(l, low);
        bar.wr(h, high);
    }

    /// `igb_set_vmolr`: strip VLANs, AUPE as asked, BAM for VF pools and the PF's.
    pub fn set_vmolr(&self, bar: &mut impl PfBar0, pool: usize, aupe: bool) {
        let mut v = bar.rd(vmolr_reg(pool)) | vmolr::STRVLAN;
        if aupe {
            v |= vmolr::AUPE;
        } else {
            v &= !vmolr::AUPE;
        }
        v &= !(vmolr::BAM | vmolr::RSSE);
        if pool <= self.pf_pool() {
            v |= vmolr::BAM;
        }
        bar.wr(vmolr_reg(pool), v);
    }

    /// `igb_vfta_set` with VFs: pool `vf` joins or leaves `vid` in its VLVF entry (searched
    /// from the top, VID 0 in entry 0), and the VFTA bit follows the entry's pools.
    pub fn vfta_set(bar: &mut impl PfBar0, vid: u16, vf: usize, on: bool) -> bool {
        let slot = if vid == 0 {
            Some(0)
        } else {
            let mut empty = None;
            let mut found = None;
            for i in (1..32).rev() {
                let bits = bar.rd(vlvf(i)) & vlvf::VLANID_MASK;
                if bits == u32::from(vid) {
                    found = Some(i);
                    break;
                }
                if empty.is_none() && bits == 0 {
                    empty = Some(i);
                }
            }
            found.or(if on { empty } else { None })
        };
        let Some(i) = slot else {
            return false;
        };
        let vfta = r::VFTA + 4 * u64::from(vid / 32);
        let bit = 1 << (vid % 32);
        let mut bits = bar.rd(vlvf(i)) | 1 << (vlvf::POOLSEL_SHIFT as usize + vf);
        if on {
            bar.wr(vlvf(i), bits | u32::from(vid) | vlvf::VLANID_ENABLE);
            let v = bar.rd(vfta);
            bar.wr(vfta, v | bit);
            return true;
        }
        bits ^= 1 << (vlvf::POOLSEL_SHIFT as usize + vf);
        if bits & vlvf::POOLSEL_MASK == 0 {
            bar.wr(vlvf(i), 0);
            let v = bar.rd(vfta);
            bar.wr(vfta, v & !bit);
        } else {
            bar.wr(vlvf(i), bits);
        }
        true
    }

    /// `igb_vmm_control` on an 82576 with VFs: loopback, replication, and anti-spoofing for
    /// every pool but the PF's.
    pub fn vmm_control(&self, bar: &mut impl PfBar0) {
        let v = bar.rd(r::DTXSWC) | dtxswc::LOOPBACK_EN;
        bar.wr(r::DTXSWC, v);
        let v = bar.rd(r::VT_CTL) | vt_ctl::REPL_EN;
        bar.wr(r::VT_CTL, v);
        let pf = self.pf_pool() as u32;
        let mut v = bar.rd(r::DTXSWC) | dtxswc::MAC_SPOOF_MASK | 0xFF << VLAN_SPOOF_SHIFT;
        v ^= (1 << pf) | (1 << (pf + VLAN_SPOOF_SHIFT));
        bar.wr(r::DTXSWC, v);
    }

    /// What `echo N > sriov_numvfs` makes igb write: the MAC reset of `igb_reset`, VMDq
    /// (`igb_setup_mrqc`: MRQC, VT_CTL.DEF_PL = N), `igb_vmm_control`, the PF's MAC in RAR0 for
    /// pool N, the PF pool's VMOLR, MBVFIMR and IMS.VMMB (`igb_irq_enable`), then
    /// CTRL_EXT.PFRSTD (`igb_up`).
    pub fn enable_vfs(&mut self, bar: &mut impl PfBar0) {
        let c = bar.rd(r::CTRL);
        bar.wr(r::CTRL, c | ctrl::RST);
        bar.wr(r::MRQC, mrqc::MRQE_VMDQ);
        let pf = self.pf_pool() as u32;
        bar.wr(
            r::VT_CTL,
            (pf << vt_ctl::DEF_PL_SHIFT) & vt_ctl::DEF_PL_MASK,
        );
        self.vmm_control(bar);
        Self::rar_set(bar, 0, self.pf_mac, self.pf_pool());
        self.set_vmolr(bar, self.pf_pool(), true);
        bar.wr(r::MBVFIMR, 0xFF);
        bar.wr(r::IMS, icr::VMMB | icr::LSC);
        let e = bar.rd(r::CTRL_EXT);
        bar.wr(r::CTRL_EXT, e | ctrl_ext::PFRSTD);
    }

    // ----- the mailbox (e1000_mbx.c) -----

    fn obtain_lock(bar: &mut impl PfBar0, vf: usize) -> bool {
        bar.wr(p2v_reg(vf), p2v::PFU);
        bar.rd(p2v_reg(vf)) & p2v::PFU != 0
    }

    /// `igb_check_for_bit_pf`: a set bit of MBVFICR is cleared by writing it back.
    fn check_bit(bar: &mut impl PfBar0, mask: u32) -> bool {
        if bar.rd(r::MBVFICR) & mask != 0 {
            bar.wr(r::MBVFICR, mask);
            true
        } else {
            false
        }
    }

    /// `igb_write_mbx_pf`: lock, flush REQ/ACK, write the words, STS (which unlocks).
    pub fn write_mbx(bar: &mut impl PfBar0, vf: usize, words: &[u32]) -> bool {
        if !Self::obtain_lock(bar, vf) {
            return false;
        }
        Self::check_bit(bar, 1 << vf);
        Self::check_bit(bar, 1 << (16 + vf));
        for (i, w) in words.iter().take(MAILBOX_WORDS).enumerate() {
            bar.wr(vmbmem(vf, i), *w);
        }
        bar.wr(p2v_reg(vf), p2v::STS);
        true
    }

    /// `igb_read_mbx_pf`: lock, read, ACK (and keep the lock unless `unlock`).
    pub fn read_mbx(bar: &mut impl PfBar0, vf: usize, unlock: bool) -> Option<Vec<u32>> {
        if !Self::obtain_lock(bar, vf) {
            return None;
        }
        let words = (0..MAILBOX_WORDS).map(|i| bar.rd(vmbmem(vf, i))).collect();
        bar.wr(
            p2v_reg(vf),
            if unlock {
                p2v::ACK
            } else {
                p2v::ACK | p2v::PFU
            },
        );
        Some(words)
    }

    /// `igb_msg_task`: for each VF, a reset, then a message, then an acknowledgement.
    pub fn msg_task(&mut self, bar: &mut impl PfBar0) -> Vec<Handled> {
        let mut out = Vec::new();
        for vf in 0..self.num_vfs {
            let vflre = bar.rd(r::VFLRE);
            if vflre & (1 << vf) != 0 {
                bar.wr(r::VFLRE, 1 << vf);
                self.vf_reset_event(bar, vf);
                out.push(Handled::ResetEvent(vf));
            }
            if Self::check_bit(bar, 1 << vf) {
                out.extend(self.rcv_msg(bar, vf));
            }
            if Self::check_bit(bar, 1 << (16 + vf)) {
                out.push(Handled::Ack(vf));
            }
        }
        out
    }

    /// `igb_vf_reset_event`: forget a MAC the VF chose, then `igb_vf_reset`.
    fn vf_reset_event(&mut self, bar: &mut impl PfBar0, vf: usize) {
        if !self.admin_mac[vf] {
            self.vf_macs[vf] = [0; 6];
        }
        self.vf_reset(bar, vf);
    }

    /// `igb_vf_reset`: not clear to send, VMOLR back, the VF's VLANs gone (the port VLAN
    /// stays), VMVIR as the port VLAN says.
    fn vf_reset(&mut self, bar: &mut impl PfBar0, vf: usize) {
        self.cts[vf] = false;
        let (pv, qos) = self.port_vlan[vf];
        self.set_vmolr(bar, vf, pv == 0);
        for i in 0..32 {
            let e = bar.rd(vlvf(i));
            let vid = (e & vlvf::VLANID_MASK) as u16;
            if e & (1 << (vlvf::POOLSEL_SHIFT as usize + vf)) != 0 && vid != pv {
                Self::vfta_set(bar, vid, vf, false);
            }
        }
        let v = if pv != 0 || qos != 0 {
            u32::from(pv) | u32::from(qos) << 13 | vmvir::VLANA_DEFAULT
        } else {
            0
        };
        bar.wr(r::VMVIR0 + 4 * vf as u64, v);
    }

    /// `igb_vf_reset_msg`: reset, the MAC in RAR[23 − vf], VFTE/VFRE on, clear to send, the
    /// reply with the MAC (ACK) or without one (NACK).
    fn vf_reset_msg(&mut self, bar: &mut impl PfBar0, vf: usize) -> u32 {
        self.vf_reset(bar, vf);
        let mac = self.vf_macs[vf];
        Self::rar_set(bar, RAR_ENTRIES - 1 - vf, mac, vf);
        let v = bar.rd(r::VFTE);
        bar.wr(r::VFTE, v | 1 << vf);
        let v = bar.rd(r::VFRE);
        bar.wr(r::VFRE, v | 1 << vf);
        self.cts[vf] = true;
        let id = u32::from(msg::ID_VF_RESET);
        let w0 = if mac != [0; 6] {
            id | msg::ACK
        } else {
            id | msg::NACK
        };
        let w1 = u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]);
        let w2 = u32::from(u16::from_le_bytes([mac[4], mac[5]]));
        Self::write_mbx(bar, vf, &[w0, w1, w2]);
        w0
    }

    /// `igb_rcv_msg_from_vf` for the messages igbvf sends.
    fn rcv_msg(&mut self, bar: &mut impl PfBar0, vf: usize) -> Option<Handled> {
        let words = Self::read_mbx(bar, vf, false)?;
        let w0 = words[0];
        if w0 & (msg::ACK | msg::NACK) != 0 {
            return None;
        }
        let id = (w0 & msg::ID_MASK) as u16;
        if id == msg::ID_VF_RESET {
            let reply = self.vf_reset_msg(bar, vf);
            return Some(Handled::Message {
                vf,
                request: w0,
                reply: Some(reply),
            });
        }
        if !self.cts[vf] {
            // igb_unlock_mbx.
            bar.wr(p2v_reg(vf), 0);
            return Some(Handled::Message {
                vf,
                request: w0,
                reply: None,
            });
        }
        let ok = match id {
            msg::ID_SET_MAC_ADDR => {
                let a = words[1].to_le_bytes();
                let b = words[2].to_le_bytes();
                let mac = [a[0], a[1], a[2], a[3], b[0], b[1]];
                let info = (w0 & msg::INFO_MASK) >> msg::INFO_SHIFT;
                let allowed = !self.admin_mac[vf] || self.trusted[vf];
                let valid = mac != [0; 6] && mac[0] & 1 == 0;
                if info == 0 && allowed && valid {
                    self.vf_macs[vf] = mac;
                    Self::rar_set(bar, RAR_ENTRIES - 1 - vf, mac, vf);
                    true
                } else {
                    false
                }
            }
            msg::ID_SET_MULTICAST => {
                let count = ((w0 & msg::INFO_MASK) >> msg::INFO_SHIFT) as usize;
                let mut v = bar.rd(vmolr_reg(vf));
                for k in 0..count.min(30) {
                    let word = words[1 + k / 2];
                    let h = ((word >> (16 * (k % 2))) & 0xFFF) as u64;
                    let reg = r::MTA + 4 * (h >> 5);
                    let m = bar.rd(reg);
                    bar.wr(reg, m | 1 << (h & 31));
                }
                if count > 30 {
                    v |= vmolr::MPME;
                } else if count > 0 {
                    v |= vmolr::ROMPE;
                }
                bar.wr(vmolr_reg(vf), v);
                true
            }
            msg::ID_SET_VLAN => {
                let add = (w0 & msg::INFO_MASK) >> msg::INFO_SHIFT != 0;
                let vid = (words[1] & msg::VLAN_VID_MASK) as u16;
                if self.port_vlan[vf].0 != 0 {
                    false
                } else {
                    Self::vfta_set(bar, vid, vf, add)
                }
            }
            msg::ID_SET_LPE => {
                let size = words[1].min(0x3F00);
                let v = bar.rd(vmolr_reg(vf)) & !vmolr::RLPML_MASK;
                bar.wr(vmolr_reg(vf), v | size | vmolr::LPE);
                true
            }
            _ => false,
        };
        let reply = w0 | msg::CTS | if ok { msg::ACK } else { msg::NACK };
        Self::write_mbx(bar, vf, &[reply]);
        Some(Handled::Message {
            vf,
            request: w0,
            reply: Some(reply),
        })
    }

    // ----- ip link set <pf> vf N ... -----

    /// `igb_ndo_set_vf_mac`: the MAC is the administrator's (zero clears that), in RAR[23 − vf].
    pub fn set_vf_mac(&mut self, bar: &mut impl PfBar0, vf: usize, mac: [u8; 6]) {
        self.admin_mac[vf] = mac != [0; 6];
        self.vf_macs[vf] = mac;
        Self::rar_set(bar, RAR_ENTRIES - 1 - vf, mac, vf);
    }

    /// `igb_ndo_set_vf_vlan`: `igb_enable_port_vlan` (VLVF/VFTA, VMVIR "always insert", VMOLR
    /// without AUPE, the old port VLAN revoked) or `igb_disable_port_vlan`.
    pub fn set_vf_vlan(&mut self, bar: &mut impl PfBar0, vf: usize, vid: u16, qos: u8) {
        let (old, _) = self.port_vlan[vf];
        if vid != 0 || qos != 0 {
            Self::vfta_set(bar, vid, vf, true);
            let v = u32::from(vid) | u32::from(qos) << 13 | vmvir::VLANA_DEFAULT;
            bar.wr(r::VMVIR0 + 4 * vf as u64, v);
            self.set_vmolr(bar, vf, vid == 0);
            if vid != old {
                Self::vfta_set(bar, old, vf, false);
            }
            self.port_vlan[vf] = (vid, qos);
        } else {
            Self::vfta_set(bar, 0, vf, true);
            bar.wr(r::VMVIR0 + 4 * vf as u64, 0);
            self.set_vmolr(bar, vf, true);
            if old != 0 {
                Self::vfta_set(bar, old, vf, false);
            }
            self.port_vlan[vf] = (0, 0);
        }
    }

    /// `igb_ndo_set_vf_spoofchk`: DTXSWC bits vf (MAC) and vf + 8 (VLAN).
    pub fn set_vf_spoofchk(bar: &mut impl PfBar0, vf: usize, on: bool) {
        let bits = (1 << vf) | (1 << (vf as u32 + VLAN_SPOOF_SHIFT));
        let v = bar.rd(r::DTXSWC);
        bar.wr(r::DTXSWC, if on { v | bits } else { v & !bits });
    }

    /// `igb_set_vf_rate_limit`: queue `vf` selected, RTTBCNRM 0x14, the rate factor.
    pub fn set_vf_rate(&self, bar: &mut impl PfBar0, vf: usize, rate_mbps: u32) {
        bar.wr(r::RTTDQSEL, vf as u32);
        bar.wr(r::RTTBCNRM, 0x14);
        bar.wr(r::RTTBCNRC, Self::rate_factor(self.link_mbps, rate_mbps));
    }

    /// RTTBCNRC for `rate` Mbit/s on a link of `link` Mbit/s (0: unlimited).
    pub fn rate_factor(link: u32, rate: u32) -> u32 {
        if rate == 0 {
            return 0;
        }
        let rf_int = link / rate;
        let rf_dec = ((link - rf_int * rate) << rttbcnrc::RF_INT_SHIFT) / rate;
        rttbcnrc::RS_ENA
            | ((rf_int << rttbcnrc::RF_INT_SHIFT) & rttbcnrc::RF_INT_MASK)
            | (rf_dec & rttbcnrc::RF_DEC_MASK)
    }
}
