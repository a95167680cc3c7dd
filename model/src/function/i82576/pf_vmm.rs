//! The PF's VF-management registers as a guest's own igb programs them when it manages the VFs
//! (the full-system mode: [`crate::nic::PfDriver::Guest`]), and what they mean for each VF: a
//! pure translation from this register file to the VF's [`VfPolicy`], which the runtime hands to
//! the one switch.
//!
//! The file holds the registers only the VF management owns (VLVF, VMOLR, VMVIR, DTXSWC,
//! VFRE/VFTE, MBVFIMR, RTTDQSEL/RTTBCNRM/RTTBCNRC), and a copy of the PF's receive filter
//! registers the pools share with the PF itself (RAL/RAH with their pool select bits, MTA, VFTA,
//! VT_CTL), which the PF function keeps too. The mailbox registers (P2VMAILBOX, VMBMEM,
//! MBVFICR, VFLRE) are each VF's [`mailbox::VfMailbox`], not here.
//!
//! How igb writes them (igb_main.c, 6.1), and what each VF's policy takes from them:
//! - **MAC**: `igb_set_vf_mac` puts VF n's address in RAR[23−n] with POOLSEL bit n
//!   (`igb_rar_set_index`); extra filters (`igb_set_vf_mac_filter`) take other entries with that
//!   bit. The pool's station MAC is its highest-indexed valid entry, the others its filters.
//! - **Port VLAN**: `igb_enable_port_vlan` writes VMVIR(n) = VID | PCP << 13 | VLANA "always
//!   insert" (`igb_set_vmvir`); VLANA 00 (the descriptor's tag) or 10 (never insert) means
//!   none, and 10 also has the VF's descriptor VLAN insertion ignored (`tx_vlan_never`).
//! - **VLAN membership**: `igb_vfta_set` puts pool n in an enabled VLVF entry for the VID and
//!   sets the VID's VFTA bit; a VF is in the VLANs whose entry has its pool bit and whose VFTA
//!   bit is set, and in no other (a VF never gets another pool's VLAN).
//! - **VMOLR(n)** (`igb_set_vmolr`, `igb_set_vf_rlpml`, `igb_set_vf_promisc`): ROMPE → the
//!   multicast hashes of the MTA (shared by all pools, as on the 82576), MPME → all multicast,
//!   ROPE → unicast promiscuous, LPE → RLPML is the largest frame, STRVLAN → RX VLAN stripping.
//! - **DTXSWC** (`igb_vmdq_set_anti_spoofing_pf`, `igb_ndo_set_vf_spoofchk`): MAC anti-spoof bit
//!   n is the VF's `spoofchk`, VLAN anti-spoof bit n+8 its `vlan_spoofchk` (igb sets and clears
//!   the two together; another PF driver may not).
//! - **RTTDQSEL + RTTBCNRC** (`igb_set_vf_rate_limit`): VF n's queue n gets the rate factor
//!   RF = RF_INT + RF_DEC/2^14; its rate is the link speed / RF, rounded to the Mbit/s.
//!
//! VFRE and VFTE (the receive and transmit enables) are the policy's `rx_enabled` and
//! `tx_enabled`, VMOLR.BAM and AUPE its `accept_broadcast` and `accept_untagged`, and
//! DTXSWC.LOOPBACK_EN the switch's loopback ([`VmmRegs::loopback`]).
//!
//! Guest input never panics: every value a register can hold translates to a valid policy
//! (addresses that are not unicast, rates above the link, frame sizes out of range are left
//! out or clamped, and logged).

use eswitch::policy::{MAX_FRAME_LIMIT, MIN_FRAME_LIMIT};
use eswitch::{MacAddr, PortVlan, VfPolicy, DEFAULT_MAX_FRAME};
use tracing::debug;

use super::pf_filter::{RAR_ENTRIES, TABLE_WORDS};
use super::pf_regs::{self as r, rah};
use crate::function::mmio::dword_index;

/// VMDq pools of the 82576: VF pools 0..7 and the PF's (igb: pool N, N the VF count).
pub const POOLS: usize = 8;
/// TX queues RTTBCNRC can select.
const RATE_QUEUES: usize = 16;
/// VLVF entries.
pub const VLVF_ENTRIES: usize = 32;

pub mod vmolr {
    //! VMOLR(p) fields (igb `e1000_82575.h`).
    pub const RLPML_MASK: u32 = 0x3FFF;
    pub const LPE: u32 = 1 << 16;
    pub const RSSE: u32 = 1 << 17;
    pub const AUPE: u32 = 1 << 24;
    pub const ROMPE: u32 = 1 << 25;
    pub const ROPE: u32 = 1 << 26;
    pub const BAM: u32 = 1 << 27;
    pub const MPME: u32 = 1 << 28;
    pub const STRVLAN: u32 = 1 << 30;
    pub const STRCRC: u32 = 1 << 31;
}

pub mod vmvir {
    //! VMVIR(p) fields (igb `e1000_82575.h`).
    pub const TAG_MASK: u32 = 0xFFFF;
    pub const VLANA_MASK: u32 = 0b11 << 30;
    /// Always insert the default tag.
    pub const VLANA_DEFAULT: u32 = 1 << 30;
    /// Never insert.
    pub const VLANA_NEVER: u32 = 1 << 31;
}

pub mod vlvf {
    //! VLVF(i) fields (igb `e1000_82575.h`).
    pub const VLANID_MASK: u32 = 0xFFF;
    pub const POOLSEL_SHIFT: u32 = 12;
    pub const POOLSEL_MASK: u32 = 0xFF << POOLSEL_SHIFT;
    pub const LVLAN: u32 = 1 << 20;
    pub const VLANID_ENABLE: u32 = 1 << 31;
}

pub mod dtxswc {
    //! DTXSWC fields (igb `e1000_82575.h`): MAC anti-spoof per pool b7:0, VLAN anti-spoof per
    //! pool b15:8, VM-to-VM loopback b31.
    pub const MAC_SPOOF_MASK: u32 = 0xFF;
    pub const VLAN_SPOOF_SHIFT: u32 = 8;
    pub const VLAN_SPOOF_MASK: u32 = 0xFF << VLAN_SPOOF_SHIFT;
    pub const LOOPBACK_EN: u32 = 1 << 31;
}

pub mod rttbcnrc {
    //! RTTBCNRC fields (igb `e1000_defines.h`): the rate factor of the selected TX queue.
    pub const RF_DEC_MASK: u32 = 0x3FFF;
    pub const RF_INT_SHIFT: u32 = 14;
    pub const RF_INT_MASK: u32 = 0x3FFF << RF_INT_SHIFT;
    pub const RS_ENA: u32 = 1 << 31;
}

/// What a register write changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Some VF's policy may be different now.
    Policy,
    /// MBVFIMR: the VF mailbox interrupts that are enabled changed.
    MailboxMask,
    /// Nothing a VF's policy depends on.
    Stored,
}

/// The VF-management register file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmmRegs {
    ral: [u32; RAR_ENTRIES],
    rah: [u32; RAR_ENTRIES],
    mta: [u32; TABLE_WORDS],
    vfta: [u32; TABLE_WORDS],
    vt_ctl: u32,
    vlvf: [u32; VLVF_ENTRIES],
    vmolr: [u32; POOLS],
    vmvir: [u32; POOLS],
    dtxswc: u32,
    vfre: u32,
    vfte: u32,
    mbvfimr: u32,
    rttdqsel: u32,
    rttbcnrm: u32,
    rttbcnrc: [u32; RATE_QUEUES],
}

impl Default for VmmRegs {
    fn default() -> Self {
        VmmRegs::new()
    }
}

/// The bits a stored register keeps and its reset value, as the PF function's plain storage
/// has them ([`r::STORAGE`]), so both views of a register agree.
fn storage(offset: u64) -> (u32, u32) {
    r::storage_slot(offset)
        .and_then(|(run, _)| r::STORAGE.get(run))
        .map_or((u32::MAX, 0), |s| (s.mask, s.reset))
}

impl VmmRegs {
    /// After power-on or CTRL.RST: the pools enabled (VFRE = VFTE = 0xFF, so the PF pool keeps
    /// working after `igb_reset`), everything else clear.
    pub fn new() -> VmmRegs {
        VmmRegs {
            ral: [0; RAR_ENTRIES],
            rah: [0; RAR_ENTRIES],
            mta: [0; TABLE_WORDS],
            vfta: [0; TABLE_WORDS],
            vt_ctl: 0,
            vlvf: [0; VLVF_ENTRIES],
            vmolr: [storage(r::VMOLR0).1; POOLS],
            vmvir: [0; POOLS],
            dtxswc: storage(r::DTXSWC).1,
            vfre: storage(r::VFRE).1,
            vfte: storage(r::VFTE).1,
            mbvfimr: 0,
            rttdqsel: 0,
            rttbcnrm: 0,
            rttbcnrc: [0; RATE_QUEUES],
        }
    }

    /// The RAR entry and half (`true`: RAH) at `offset`.
    fn rar_slot(offset: u64) -> Option<(usize, bool)> {
        let (base, first) = if (r::RA..r::RA + 16 * 8).contains(&offset) {
            (r::RA, 0)
        } else if (r::RA2..r::RA2 + 8 * 8).contains(&offset) {
            (r::RA2, 16)
        } else {
            return None;
        };
        let rel = offset - base;
        rel.is_multiple_of(4)
            .then(|| (first + (rel / 8) as usize, rel % 8 == 4))
    }

    /// Whether `offset` is one of the registers the PF function keeps too (the receive
    /// filters), which this file copies: the PF function answers reads of them.
    pub fn copies(offset: u64) -> bool {
        Self::rar_slot(offset).is_some()
            || dword_index(offset, r::MTA, TABLE_WORDS as u64).is_some()
            || dword_index(offset, r::VFTA, TABLE_WORDS as u64).is_some()
            || offset == r::VT_CTL
    }

    /// Whether `offset` is one of the registers only the VF management has.
    pub fn owns(offset: u64) -> bool {
        dword_index(offset, r::VLVF0, VLVF_ENTRIES as u64).is_some()
            || dword_index(offset, r::VMOLR0, POOLS as u64).is_some()
            || dword_index(offset, r::VMVIR0, POOLS as u64).is_some()
            || matches!(
                offset,
                r::DTXSWC
                    | r::VFRE
                    | r::VFTE
                    | r::MBVFIMR
                    | r::RTTDQSEL
                    | r::RTTBCNRM
                    | r::RTTBCNRC
            )
    }

    /// A read of a register this file has (`None`: not one of them).
    pub fn read(&self, offset: u64) -> Option<u32> {
        if let Some((i, high)) = Self::rar_slot(offset) {
            return Some(if high { self.rah[i] } else { self.ral[i] });
        }
        if let Some(i) = dword_index(offset, r::MTA, TABLE_WORDS as u64) {
            return Some(self.mta[i]);
        }
        if let Some(i) = dword_index(offset, r::VFTA, TABLE_WORDS as u64) {
            return Some(self.vfta[i]);
        }
        if let Some(i) = dword_index(offset, r::VLVF0, VLVF_ENTRIES as u64) {
            return Some(self.vlvf[i]);
        }
        if let Some(i) = dword_index(offset, r::VMOLR0, POOLS as u64) {
            return Some(self.vmolr[i]);
        }
        if let Some(i) = dword_index(offset, r::VMVIR0, POOLS as u64) {
            return Some(self.vmvir[i]);
        }
        Some(match offset {
            r::VT_CTL => self.vt_ctl,
            r::DTXSWC => self.dtxswc,
            r::VFRE => self.vfre,
            r::VFTE => self.vfte,
            r::MBVFIMR => self.mbvfimr,
            r::RTTDQSEL => self.rttdqsel,
            r::RTTBCNRM => self.rttbcnrm,
            r::RTTBCNRC => self.rttbcnrc[self.rate_queue()],
            _ => return None,
        })
    }

    /// The TX queue RTTDQSEL selects.
    fn rate_queue(&self) -> usize {
        self.rttdqsel as usize % RATE_QUEUES
    }

    /// A write of a register this file has, with the bits it keeps (`None`: not one of them).
    pub fn write(&mut self, offset: u64, value: u32) -> Option<Change> {
        let (mask, _) = storage(offset);
        let v = value & mask;
        if let Some((i, high)) = Self::rar_slot(offset) {
            if high {
                self.rah[i] = value & rah::STORED;
            } else {
                self.ral[i] = value;
            }
            return Some(Change::Policy);
        }
        let table = |base| dword_index(offset, base, TABLE_WORDS as u64);
        if let Some(i) = table(r::MTA) {
            self.mta[i] = value;
        } else if let Some(i) = table(r::VFTA) {
            self.vfta[i] = value;
        } else if let Some(i) = dword_index(offset, r::VLVF0, VLVF_ENTRIES as u64) {
            self.vlvf[i] = v;
        } else if let Some(i) = dword_index(offset, r::VMOLR0, POOLS as u64) {
            self.vmolr[i] = v;
        } else if let Some(i) = dword_index(offset, r::VMVIR0, POOLS as u64) {
            self.vmvir[i] = v;
        } else {
            match offset {
                r::VT_CTL => self.vt_ctl = value & r::vt_ctl::STORED,
                r::DTXSWC => self.dtxswc = v,
                r::VFRE => self.vfre = v,
                r::VFTE => self.vfte = v,
                r::MBVFIMR => {
                    self.mbvfimr = v;
                    return Some(Change::MailboxMask);
                }
                r::RTTDQSEL => self.rttdqsel = v,
                r::RTTBCNRM => {
                    self.rttbcnrm = v;
                    return Some(Change::Stored);
                }
                r::RTTBCNRC => {
                    let q = self.rate_queue();
                    self.rttbcnrc[q] = v;
                }
                _ => return None,
            }
        }
        Some(Change::Policy)
    }

    /// VF `vf` reset itself (VTCTRL.RST or FLR): its pool stops receiving and transmitting
    /// until its PF driver enables it again (igb's `igb_vf_reset_msg` sets VFRE/VFTE).
    pub fn vf_reset(&mut self, vf: usize) {
        if vf < POOLS {
            self.vfre &= !(1 << vf);
            self.vfte &= !(1 << vf);
        }
    }

    /// Whether VF mailbox interrupts of VF `vf` are enabled (MBVFIMR).
    pub fn mailbox_irq_enabled(&self, vf: usize) -> bool {
        vf < POOLS && self.mbvfimr & (1 << vf) != 0
    }

    /// VFRE bit of pool `pool`.
    pub fn rx_enabled(&self, pool: usize) -> bool {
        pool < POOLS && self.vfre & (1 << pool) != 0
    }

    /// VFTE bit of pool `pool`.
    pub fn tx_enabled(&self, pool: usize) -> bool {
        pool < POOLS && self.vfte & (1 << pool) != 0
    }

    /// The PF's pool (VT_CTL.DEF_PL; igb writes the VF count there).
    pub fn pf_pool(&self) -> usize {
        ((self.vt_ctl & r::vt_ctl::DEF_PL_MASK) >> r::vt_ctl::DEF_PL_SHIFT) as usize
    }

    /// The valid destination-address entries (AV, ASEL 00): index, address, POOLSEL.
    fn entries(&self) -> impl Iterator<Item = (usize, MacAddr, u32)> + '_ {
        (0..RAR_ENTRIES).filter_map(|i| {
            let h = self.rah[i];
            if h & rah::AV == 0 || h & rah::ASEL_MASK != 0 {
                return None;
            }
            let l = self.ral[i].to_le_bytes();
            let hb = h.to_le_bytes();
            let mac = MacAddr([l[0], l[1], l[2], l[3], hb[0], hb[1]]);
            Some((i, mac, (h & rah::POOLSEL_MASK) >> 18))
        })
    }

    /// Whether `mac` is an address of the PF's own pool: a valid entry holds it with the PF
    /// pool's bit, or with no pool bit at all (the PF's filters outside VMDq).
    pub fn pf_owns(&self, mac: MacAddr) -> bool {
        let pf = self.pf_pool();
        self.entries()
            .any(|(_, m, pools)| m == mac && (pools == 0 || pools & (1 << pf) != 0))
    }

    /// The VLANs pool `pool` is a member of: enabled VLVF entries with its bit whose VID is in
    /// the VFTA, in ascending order, without repeats.
    pub fn pool_vlans(&self, pool: usize) -> Vec<u16> {
        let mut vids = Vec::new();
        if pool >= POOLS {
            return vids;
        }
        for &e in &self.vlvf {
            let member =
                e & vlvf::VLANID_ENABLE != 0 && (e >> vlvf::POOLSEL_SHIFT) & (1 << pool) != 0;
            let vid = (e & vlvf::VLANID_MASK) as u16;
            if member && self.vfta_bit(vid) && !vids.contains(&vid) {
                vids.push(vid);
            }
        }
        vids.sort_unstable();
        vids
    }

    fn vfta_bit(&self, vid: u16) -> bool {
        let v = usize::from(vid & 0xFFF);
        self.vfta[v >> 5] & (1 << (v & 31)) != 0
    }

    /// The 12-bit hashes whose MTA bits are set, in order.
    fn mta_hashes(&self) -> Vec<u16> {
        let mut out = Vec::new();
        for (i, &w) in self.mta.iter().enumerate() {
            for b in 0..32u16 {
                if w & (1 << b) != 0 {
                    out.push(i as u16 * 32 + b);
                }
            }
        }
        out
    }

    /// Whether pool `pool` strips the VLAN tag of what it receives (VMOLR.STRVLAN).
    pub fn rx_vlan_strip(&self, pool: usize) -> bool {
        self.vmolr
            .get(pool)
            .is_some_and(|v| v & vmolr::STRVLAN != 0)
    }

    /// The rate VF `vf`'s queue is limited to, in Mbit/s (0: unlimited), for a link of
    /// `link_mbps` (`igb_set_vf_rate_limit` in reverse).
    pub fn rate_mbps(&self, vf: usize, link_mbps: u32) -> u32 {
        let Some(&v) = self.rttbcnrc.get(vf) else {
            return 0;
        };
        if v & rttbcnrc::RS_ENA == 0 {
            return 0;
        }
        let factor = u64::from((v & rttbcnrc::RF_INT_MASK) >> rttbcnrc::RF_INT_SHIFT)
            * (1 << rttbcnrc::RF_INT_SHIFT)
            + u64::from(v & rttbcnrc::RF_DEC_MASK);
        if factor == 0 {
            debug!(vf, "RTTBCNRC enabled with a zero rate factor: unlimited");
            return 0;
        }
        let link = u64::from(link_mbps);
        // Rounded to the nearest Mbit/s; a factor below 1 cannot send faster than the link.
        let rate = (link * (1 << rttbcnrc::RF_INT_SHIFT) + factor / 2) / factor;
        u32::try_from(rate.clamp(1, link.max(1))).unwrap_or(link_mbps)
    }

    /// VF `vf`'s policy as these registers set it, for a link of `link_mbps`. Always valid
    /// ([`VfPolicy::validate`]).
    pub fn vf_policy(&self, vf: usize, link_mbps: u32) -> VfPolicy {
        let mut p = VfPolicy::default();
        if vf >= POOLS {
            return p;
        }
        let bit = 1u32 << vf;
        // The pool's addresses, highest entry first: igb_set_vf_mac fills from the top.
        let mut macs = Vec::new();
        for (i, mac, pools) in self.entries() {
            if pools & bit == 0 {
                continue;
            }
            if !mac.is_valid_unicast() {
                debug!(vf, entry = i, %mac, "RAR entry of a VF pool is not unicast: ignored");
                continue;
            }
            if !macs.contains(&mac) {
                macs.push(mac);
            }
        }
        p.mac = macs.pop();
        p.mac_filters = macs;
        let vmolr = self.vmolr[vf];
        if vmolr & vmolr::ROMPE != 0 {
            p.mc_hashes = self.mta_hashes();
        }
        p.allmulti = vmolr & vmolr::MPME != 0;
        // Unicast promiscuous is the PF driver's grant here: no trust of ours gates it.
        p.promisc = vmolr & vmolr::ROPE != 0;
        p.trust = p.promisc;
        if vmolr & vmolr::LPE != 0 {
            let rlpml = (vmolr & vmolr::RLPML_MASK) as u16;
            p.max_frame = rlpml.clamp(MIN_FRAME_LIMIT, MAX_FRAME_LIMIT);
        } else {
            p.max_frame = DEFAULT_MAX_FRAME;
        }
        let vmvir = self.vmvir[vf];
        p.tx_vlan_never = vmvir & vmvir::VLANA_MASK == vmvir::VLANA_NEVER;
        if vmvir & vmvir::VLANA_MASK == vmvir::VLANA_DEFAULT {
            let tag = vmvir & vmvir::TAG_MASK;
            let pv = PortVlan {
                vid: (tag & 0xFFF) as u16,
                qos: (tag >> 13) as u8,
            };
            if pv.vid != 0 || pv.qos != 0 {
                p.port_vlan = Some(pv);
            }
        }
        let port_vid = p.port_vlan.map(|pv| pv.vid);
        p.vlan_filters = self
            .pool_vlans(vf)
            .into_iter()
            .filter(|&vid| vid != 0 && Some(vid) != port_vid)
            .collect();
        p.spoofchk = self.dtxswc & (bit & dtxswc::MAC_SPOOF_MASK) != 0;
        p.vlan_spoofchk =
            self.dtxswc & ((bit << dtxswc::VLAN_SPOOF_SHIFT) & dtxswc::VLAN_SPOOF_MASK) != 0;
        p.max_tx_rate = self.rate_mbps(vf, link_mbps);
        // VFRE: a pool whose receive is off gets nothing (igb clears it at a VF reset and
        // sets it again in `igb_vf_reset_msg`).
        p.rx_enabled = self.vfre & bit != 0;
        p.tx_enabled = self.vfte & bit != 0;
        // igb_set_vmolr: BAM on every VF pool, AUPE unless the pool has a port VLAN.
        p.accept_broadcast = vmolr & vmolr::BAM != 0;
        p.accept_untagged = vmolr & vmolr::AUPE != 0;
        p
    }

    /// DTXSWC.LOOPBACK_EN: VM-to-VM loopback (`e1000_vmdq_set_loopback_pf`, which
    /// `igb_vmm_control` turns on with VFs allocated).
    pub fn loopback(&self) -> bool {
        self.dtxswc & dtxswc::LOOPBACK_EN != 0
    }
}

#[cfg(test)]
#[path = "pf_vmm_tests.rs"]
mod tests;
