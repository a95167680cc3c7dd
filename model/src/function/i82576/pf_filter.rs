//! The PF's receive filters: RCTL, the 24 receive address registers (RAL/RAH), the multicast
//! table (MTA) and the VLAN filter table (VFTA), as igb programs them (`igb_rar_set_index`,
//! `igb_write_mc_addr_list`, `igb_update_mc_addr_list`, `igb_vfta_set`, `igb_set_rx_mode`,
//! `igb_setup_rctl`), and the decision the MAC takes on every frame in non-VMDq mode (classic
//! filtering: exact address, multicast hash, promiscuous bits, broadcast, VLAN table, length).
//!
//! The same registers, summarised as an [`eswitch::PfPolicy`], tell the switch what to send to
//! the PF's port ([`RxFilter::policy`]); the function still filters exactly what it receives.

use eswitch::wire::ethernet::{FCS_LEN, VLAN_TAG_LEN};
use eswitch::wire::{EtherTypes, EthernetFrame};
use eswitch::{MacAddr, PfPolicy};

use super::pf_regs::{rah, rctl, MTA, RA, RA2, RCTL, VFTA};
use crate::function::mmio::dword_index;

/// Receive address entries of the 82576 (`E1000_RAR_ENTRIES_82576`).
pub const RAR_ENTRIES: usize = 24;
/// Dwords of the MTA and the VFTA.
pub const TABLE_WORDS: usize = 128;
/// The largest frame without RCTL.LPE, FCS included (1522 with a VLAN tag).
pub const MAX_STANDARD_FRAME: usize = 1518;
/// RLPML's field.
const RLPML_MASK: u32 = 0x3FFF;

/// Why the MAC refused a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Longer than RLPML (RCTL.LPE) or the standard maximum.
    Oversize,
    /// No address filter takes it (RAR, MTA, BAM, UPE/MPE), or it is a runt.
    Address,
    /// Tagged with a VLAN the VFTA does not hold (RCTL.VFE).
    Vlan,
}

/// The multicast table hash of `mac` with RCTL.MO = `mo` (igb's `igb_hash_mc_addr`: filter
/// type 0 takes bits 47:36 of the address, types 1..3 shift by one, two and four bits less).
pub fn mta_hash(mac: MacAddr, mo: u32) -> u16 {
    let (b4, b5) = (u16::from(mac.0[4]), u16::from(mac.0[5]));
    let h = match mo & 0b11 {
        0 => (b4 >> 4) | (b5 << 4),
        1 => (b4 >> 3) | (b5 << 5),
        2 => (b4 >> 2) | (b5 << 6),
        _ => b4 | (b5 << 8),
    };
    h & 0x0FFF
}

/// One receive address entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Rar {
    ral: u32,
    rah: u32,
}

impl Rar {
    fn valid(&self) -> bool {
        self.rah & rah::AV != 0
    }

    /// A valid destination-address entry (ASEL 00).
    fn destination(&self) -> Option<MacAddr> {
        (self.valid() && self.rah & rah::ASEL_MASK == 0).then(|| self.mac())
    }

    fn mac(&self) -> MacAddr {
        let l = self.ral.to_le_bytes();
        let h = self.rah.to_le_bytes();
        MacAddr([l[0], l[1], l[2], l[3], h[0], h[1]])
    }
}

/// RCTL and the filter tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RxFilter {
    pub rctl: u32,
    rar: [Rar; RAR_ENTRIES],
    mta: [u32; TABLE_WORDS],
    vfta: [u32; TABLE_WORDS],
}

impl RxFilter {
    /// After a reset: receiver off, tables clear, RAR0 loaded with the NVM's address.
    pub fn new(mac: MacAddr) -> RxFilter {
        let mut f = RxFilter {
            rctl: 0,
            rar: [Rar::default(); RAR_ENTRIES],
            mta: [0; TABLE_WORDS],
            vfta: [0; TABLE_WORDS],
        };
        let m = mac.0;
        f.rar[0] = Rar {
            ral: u32::from_le_bytes([m[0], m[1], m[2], m[3]]),
            rah: u32::from(u16::from_le_bytes([m[4], m[5]])) | rah::AV,
        };
        f
    }

    fn rar_slot(offset: u64) -> Option<(usize, bool)> {
        let (base, first) = if (RA..RA + 16 * 8).contains(&offset) {
            (RA, 0)
        } else if (RA2..RA2 + 8 * 8).contains(&offset) {
            (RA2, 16)
        } else {
            return None;
        };
        let rel = offset - base;
        (rel.is_multiple_of(4)).then(|| (first + (rel / 8) as usize, rel % 8 == 4))
    }

    fn table_slot(offset: u64, base: u64) -> Option<usize> {
        dword_index(offset, base, TABLE_WORDS as u64)
    }

    /// A register read; `None` when `offset` is not one of the filter registers.
    pub fn read(&self, offset: u64) -> Option<u32> {
        if offset == RCTL {
            return Some(self.rctl);
        }
        if let Some((i, high)) = Self::rar_slot(offset) {
            let r = &self.rar[i];
            return Some(if high { r.rah } else { r.ral });
        }
        if let Some(i) = Self::table_slot(offset, MTA) {
            return Some(self.mta[i]);
        }
        Self::table_slot(offset, VFTA).map(|i| self.vfta[i])
    }

    /// A register write; `None` when `offset` is not one of the filter registers.
    pub fn write(&mut self, offset: u64, value: u32) -> Option<()> {
        if offset == RCTL {
            self.rctl = value & rctl::STORED;
        } else if let Some((i, high)) = Self::rar_slot(offset) {
            let r = &mut self.rar[i];
            if high {
                r.rah = value & rah::STORED;
            } else {
                r.ral = value;
            }
        } else if let Some(i) = Self::table_slot(offset, MTA) {
            self.mta[i] = value;
        } else {
            let i = Self::table_slot(offset, VFTA)?;
            self.vfta[i] = value;
        }
        Some(())
    }

    pub fn enabled(&self) -> bool {
        self.rctl & rctl::EN != 0
    }

    /// RCTL.LBM: MAC (or transceiver) loopback.
    pub fn loopback(&self) -> bool {
        self.rctl & rctl::LBM_MASK != 0
    }

    fn mo(&self) -> u32 {
        (self.rctl & rctl::MO_MASK) >> rctl::MO_SHIFT
    }

    fn table_bit(table: &[u32; TABLE_WORDS], v: u16) -> bool {
        let v = usize::from(v & 0x0FFF);
        table[v >> 5] & (1 << (v & 31)) != 0
    }

    /// The 12-bit values whose bits are set in `table`, in order.
    fn set_bits(table: &[u32; TABLE_WORDS]) -> impl Iterator<Item = u16> + '_ {
        table.iter().enumerate().flat_map(|(i, &w)| {
            (0..32u16)
                .filter(move |b| w & (1 << b) != 0)
                .map(move |b| (i as u16) * 32 + b)
        })
    }

    fn rar_hit(&self, mac: MacAddr) -> bool {
        self.rar.iter().any(|r| r.destination() == Some(mac))
    }

    /// Whether the MAC takes `frame` (`stripped_tci`: the tag the switch removed from it;
    /// `rlpml`: RLPML). Lengths count the FCS and any stripped tag, as on the wire.
    pub fn accept(
        &self,
        frame: &[u8],
        stripped_tci: Option<u16>,
        rlpml: u32,
    ) -> Result<(), Refusal> {
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return Err(Refusal::Address);
        };
        let outer = eth.outer_tag().filter(|t| t.tpid == EtherTypes::Vlan);
        let tci = stripped_tci.or(outer.map(|t| t.tci.0));
        let wire_len = frame.len() + FCS_LEN + stripped_tci.map_or(0, |_| VLAN_TAG_LEN);
        let limit = if self.rctl & rctl::LPE != 0 {
            (rlpml & RLPML_MASK) as usize
        } else if tci.is_some() {
            MAX_STANDARD_FRAME + VLAN_TAG_LEN
        } else {
            MAX_STANDARD_FRAME
        };
        if wire_len > limit && self.rctl & rctl::SBP == 0 {
            return Err(Refusal::Oversize);
        }
        if let Some(tci) = tci {
            if self.rctl & rctl::VFE != 0 && !Self::table_bit(&self.vfta, tci & 0x0FFF) {
                return Err(Refusal::Vlan);
            }
        }
        let dst = eth.dst_addr();
        let ok = self.rar_hit(dst)
            || if dst.is_broadcast() {
                self.rctl & rctl::BAM != 0
            } else if dst.is_multicast() {
                self.rctl & rctl::MPE != 0 || Self::table_bit(&self.mta, mta_hash(dst, self.mo()))
            } else {
                self.rctl & rctl::UPE != 0
            };
        if ok {
            Ok(())
        } else {
            Err(Refusal::Address)
        }
    }

    /// The PF port's policy these registers amount to, for the switch: the unicast RAR
    /// entries, the multicast hashes (RAR multicast entries hashed in; with a filter type other
    /// than 0 the switch's type-0 hashes cannot say it, so all multicast), the VLANs (all of
    /// them without RCTL.VFE), and the promiscuous bits.
    pub fn policy(&self) -> PfPolicy {
        let mut p = PfPolicy::default();
        let mut mc_rar = false;
        for mac in self.rar.iter().filter_map(Rar::destination) {
            if mac.is_valid_unicast() {
                if !p.macs.contains(&mac) {
                    p.macs.push(mac);
                }
            } else if mac.is_multicast() && !mac.is_broadcast() {
                mc_rar = true;
                p.mc_hashes.push(mta_hash(mac, 0));
            }
        }
        let mta_used = self.mta.iter().any(|w| *w != 0);
        if self.mo() == 0 {
            p.mc_hashes.extend(Self::set_bits(&self.mta));
            p.mc_hashes.sort_unstable();
            p.mc_hashes.dedup();
            p.allmulti = self.rctl & rctl::MPE != 0;
        } else {
            p.mc_hashes.clear();
            p.allmulti = self.rctl & rctl::MPE != 0 || mta_used || mc_rar;
        }
        if self.rctl & rctl::VFE != 0 {
            p.vlans = Self::set_bits(&self.vfta).collect();
        } else {
            p.vlan_promisc = true;
        }
        p.promisc = self.rctl & rctl::UPE != 0;
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eswitch::wire::{EthernetRepr, VlanTag, VlanTags, VlanTci};

    const OWN: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
    const OTHER: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x09]);
    const BCAST: MacAddr = MacAddr([0xFF; 6]);
    const MCAST: MacAddr = MacAddr([0x01, 0x00, 0x5E, 0x00, 0x00, 0xFB]);

    fn frame(dst: MacAddr, tags: VlanTags, len: usize) -> Vec<u8> {
        let eth = EthernetRepr {
            dst,
            src: OTHER,
            tags,
            ethertype: EtherTypes::Ipv4,
        };
        let mut f = vec![0u8; len];
        eth.emit(&mut EthernetFrame::new_unchecked(&mut f[..]));
        f
    }

    fn untagged(dst: MacAddr) -> Vec<u8> {
        frame(dst, VlanTags::NONE, 60)
    }

    /// igb_setup_rctl's bits: EN, BAM, LPE, SECRC, VFE (MO 0); RLPML as igb_set_rlpml.
    fn igb_up() -> RxFilter {
        let mut f = RxFilter::new(OWN);
        f.write(
            RCTL,
            rctl::EN | rctl::BAM | rctl::LPE | rctl::SECRC | rctl::VFE,
        );
        f
    }

    #[test]
    fn rar0_is_loaded_and_exact_match_broadcast_and_promisc_decide() {
        let mut f = igb_up();
        assert_eq!(f.read(RA), Some(0x0000_0002));
        assert_eq!(f.read(RA + 4), Some(rah::AV | 0x0100));
        assert_eq!(f.accept(&untagged(OWN), None, 1522), Ok(()));
        assert_eq!(f.accept(&untagged(BCAST), None, 1522), Ok(()));
        assert_eq!(
            f.accept(&untagged(OTHER), None, 1522),
            Err(Refusal::Address)
        );
        f.write(RCTL, f.rctl | rctl::UPE);
        assert_eq!(f.accept(&untagged(OTHER), None, 1522), Ok(()));
        f.write(RCTL, f.rctl & !(rctl::UPE | rctl::BAM));
        assert_eq!(
            f.accept(&untagged(BCAST), None, 1522),
            Err(Refusal::Address)
        );
    }

    #[test]
    fn multicast_takes_the_mta_hash_or_mpe() {
        let mut f = igb_up();
        assert_eq!(
            f.accept(&untagged(MCAST), None, 1522),
            Err(Refusal::Address)
        );
        let h = mta_hash(MCAST, 0);
        assert_eq!(h, eswitch::mta_hash(MCAST), "the switch hashes alike");
        f.write(MTA + 4 * u64::from(h >> 5), 1 << (h & 31));
        assert_eq!(f.accept(&untagged(MCAST), None, 1522), Ok(()));
        assert_eq!(f.policy().mc_hashes, vec![h]);
        // Another filter type moves the bit: the switch is told all multicast instead.
        f.write(RCTL, f.rctl | (1 << rctl::MO_SHIFT));
        assert!(f.policy().allmulti);
        f.write(RCTL, (f.rctl & !rctl::MO_MASK) | rctl::MPE);
        f.write(MTA + 4 * u64::from(h >> 5), 0);
        assert_eq!(f.accept(&untagged(MCAST), None, 1522), Ok(()));
    }

    #[test]
    fn vlan_table_and_length_limits() {
        let mut f = igb_up();
        let tagged = frame(OWN, VlanTags::one(VlanTag::dot1q(VlanTci::new(10, 0))), 64);
        assert_eq!(f.accept(&tagged, None, 1522), Err(Refusal::Vlan));
        assert_eq!(f.accept(&untagged(OWN), Some(10), 1522), Err(Refusal::Vlan));
        f.write(VFTA, 1 << 10);
        assert_eq!(f.accept(&tagged, None, 1522), Ok(()));
        assert_eq!(f.policy().vlans, vec![10]);
        // LPE with RLPML: FCS counted.
        let big = frame(OWN, VlanTags::NONE, 1519);
        assert_eq!(f.accept(&big, None, 1522), Err(Refusal::Oversize));
        assert_eq!(f.accept(&big, None, 1523), Ok(()));
        f.write(RCTL, f.rctl & !rctl::LPE);
        assert_eq!(f.accept(&frame(OWN, VlanTags::NONE, 1514), None, 0), Ok(()));
        assert_eq!(
            f.accept(&frame(OWN, VlanTags::NONE, 1515), None, 0),
            Err(Refusal::Oversize)
        );
        // Without VFE every VLAN passes and the switch is told so.
        f.write(RCTL, f.rctl & !rctl::VFE);
        assert!(f.policy().vlan_promisc);
        assert_eq!(f.accept(&untagged(OWN), Some(99), 1522), Ok(()));
        assert_eq!(f.accept(&[0u8; 10], None, 1522), Err(Refusal::Address));
    }

    #[test]
    fn register_test_patterns_keep_exactly_their_bits() {
        let mut f = RxFilter::new(OWN);
        for p in [0x5A5A_5A5A, 0xA5A5_A5A5, 0, u32::MAX] {
            for i in 0..RAR_ENTRIES as u64 {
                let at = if i < 16 {
                    RA + 8 * i
                } else {
                    RA2 + 8 * (i - 16)
                };
                f.write(at, p);
                f.write(at + 4, p);
                assert_eq!(f.read(at), Some(p));
                assert_eq!(f.read(at + 4).unwrap() & 0x83FF_FFFF, p & 0x83FF_FFFF);
                assert_eq!(f.read(at + 4).unwrap() & !rah::STORED, 0);
            }
            for i in 0..TABLE_WORDS as u64 {
                f.write(MTA + 4 * i, p);
                assert_eq!(f.read(MTA + 4 * i), Some(p));
            }
        }
        // The pattern addresses are not valid unicast: the policy leaves them out.
        let pol = f.policy();
        assert!(pol.macs.is_empty());
        assert_eq!(pol.mc_hashes.len(), 4096);
        assert_eq!(pol.validate(), Ok(()));
    }
}
