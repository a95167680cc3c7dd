//! The 82599 mailbox registers by offset: which register a VF BAR0 or PF BAR0 access names,
//! and the PF-side registers that gather all VFs (PFMBICR, PFMBIMR, VFLRE, VFLREC) over the
//! per-VF [`VfMailbox`]es.
//!
//! The per-VF state machine is the shared [`VfMailbox`]: VFMAILBOX and PFMAILBOX(v) have the
//! 82576's bits and semantics (ixgbevf `mbx.c`, ixgbe `ixgbe_mbx.c` drive them as igbvf and igb
//! do). A device model maps VF BAR0 with [`VfRegister::decode`] + [`vf_read`] / [`vf_write`],
//! and PF BAR0 with [`PfRegister::decode`] + [`PfMailboxes::read`] / [`PfMailboxes::write`].

use crate::mailbox::{MailboxEvents, VfMailbox};

use super::regs::{pf_bar, pfmbicr, vf_bar, MAILBOX_WORDS};

/// A mailbox register in a VF's BAR0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VfRegister {
    /// VFMAILBOX (0x2FC).
    Vfmailbox,
    /// VFMBMEM word 0..16 (0x200 + 4 × word).
    Vfmbmem(usize),
}

impl VfRegister {
    /// The register at a dword-aligned VF BAR0 offset; `None` for any other offset.
    pub fn decode(offset: u64) -> Option<VfRegister> {
        if !offset.is_multiple_of(4) {
            return None;
        }
        if offset == vf_bar::VFMAILBOX {
            return Some(VfRegister::Vfmailbox);
        }
        if (vf_bar::VFMBMEM..vf_bar::VFMBMEM_END).contains(&offset) {
            return Some(VfRegister::Vfmbmem(
                ((offset - vf_bar::VFMBMEM) / 4) as usize,
            ));
        }
        None
    }

    pub fn offset(self) -> u64 {
        match self {
            VfRegister::Vfmailbox => vf_bar::VFMAILBOX,
            VfRegister::Vfmbmem(w) => vf_bar::VFMBMEM + 4 * w as u64,
        }
    }
}

/// A VF read of one of its mailbox registers (VFMAILBOX reads clear PFSTS, PFACK and RSTD).
pub fn vf_read(mbx: &mut VfMailbox, reg: VfRegister) -> u32 {
    match reg {
        VfRegister::Vfmailbox => mbx.read_v2p(),
        VfRegister::Vfmbmem(w) => mbx.read_vmbmem(w),
    }
}

/// A VF write of one of its mailbox registers; the events tell the device model to run the PF
/// agent (`InterruptPf`).
pub fn vf_write(mbx: &mut VfMailbox, reg: VfRegister, value: u32) -> MailboxEvents {
    match reg {
        VfRegister::Vfmailbox => mbx.write_v2p(value),
        VfRegister::Vfmbmem(w) => {
            mbx.write_vmbmem(w, value);
            MailboxEvents::NONE
        }
    }
}

/// A mailbox register in the PF's BAR0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PfRegister {
    /// PFMAILBOX(vf).
    Pfmailbox(usize),
    /// PFMBMEM(vf) word 0..16.
    Pfmbmem { vf: usize, word: usize },
    /// PFMBICR(i): VFREQ/VFACK of VFs 16i..16i+15, write 1 to clear.
    Pfmbicr(usize),
    /// PFMBIMR(i): mailbox interrupt enables of VFs 32i..32i+31.
    Pfmbimr(usize),
    /// VFLRE(i): VF-level reset events of VFs 32i..32i+31 (read only).
    Vflre(usize),
    /// VFLREC(i): write 1 to clear VFLRE bits.
    Vflrec(usize),
}

impl PfRegister {
    /// The register at a dword-aligned PF BAR0 offset; `None` for any other offset.
    pub fn decode(offset: u64) -> Option<PfRegister> {
        if !offset.is_multiple_of(4) {
            return None;
        }
        let in_table = |base: u64, count: usize| -> Option<usize> {
            let end = base + 4 * count as u64;
            (base..end)
                .contains(&offset)
                .then(|| ((offset - base) / 4) as usize)
        };
        if let Some(vf) = in_table(pf_bar::PFMAILBOX_BASE, pf_bar::MAX_VFS) {
            return Some(PfRegister::Pfmailbox(vf));
        }
        if let Some(i) = in_table(pf_bar::PFMBMEM_BASE, pf_bar::MAX_VFS * MAILBOX_WORDS) {
            return Some(PfRegister::Pfmbmem {
                vf: i / MAILBOX_WORDS,
                word: i % MAILBOX_WORDS,
            });
        }
        if let Some(i) = in_table(pf_bar::PFMBICR_BASE, pf_bar::PFMBICR_COUNT) {
            return Some(PfRegister::Pfmbicr(i));
        }
        if let Some(i) = in_table(pf_bar::PFMBIMR_BASE, pf_bar::PFMBICR_COUNT) {
            return Some(PfRegister::Pfmbimr(i));
        }
        if offset == pf_bar::VFLRE0 {
            return Some(PfRegister::Vflre(0));
        }
        if offset == pf_bar::VFLRE1 {
            return Some(PfRegister::Vflre(1));
        }
        if let Some(i) = in_table(pf_bar::VFLREC_BASE, pf_bar::VFLRE_COUNT) {
            return Some(PfRegister::Vflrec(i));
        }
        None
    }

    pub fn offset(self) -> u64 {
        match self {
            PfRegister::Pfmailbox(vf) => pf_bar::pfmailbox(vf),
            PfRegister::Pfmbmem { vf, word } => pf_bar::pfmbmem(vf) + 4 * word as u64,
            PfRegister::Pfmbicr(i) => pf_bar::pfmbicr(i),
            PfRegister::Pfmbimr(i) => pf_bar::pfmbimr(i),
            PfRegister::Vflre(0) => pf_bar::VFLRE0,
            PfRegister::Vflre(_) => pf_bar::VFLRE1,
            PfRegister::Vflrec(i) => pf_bar::vflrec(i),
        }
    }
}

/// The PF's view of all VF mailboxes: the per-VF [`VfMailbox`]es and the PF registers that
/// gather them. VFs past the mailboxes given read as zero and ignore writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PfMailboxes {
    mailboxes: Vec<VfMailbox>,
    /// PFMBIMR(0..4) as written. ⚠ Its reset value and effect are datasheet matters; Linux
    /// ixgbe never writes it and still gets VF mailbox interrupts, so nothing here gates on it.
    pfmbimr: [u32; pf_bar::PFMBICR_COUNT],
}

impl PfMailboxes {
    /// `num_vfs` mailboxes with the PF up (capped at the 82599's 64).
    pub fn new(num_vfs: usize) -> PfMailboxes {
        PfMailboxes {
            mailboxes: vec![VfMailbox::new(); num_vfs.min(pf_bar::MAX_VFS)],
            pfmbimr: [0; pf_bar::PFMBICR_COUNT],
        }
    }

    pub fn len(&self) -> usize {
        self.mailboxes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.mailboxes.is_empty()
    }

    pub fn mailbox(&self, vf: usize) -> Option<&VfMailbox> {
        self.mailboxes.get(vf)
    }

    pub fn mailbox_mut(&mut self, vf: usize) -> Option<&mut VfMailbox> {
        self.mailboxes.get_mut(vf)
    }

    pub fn mailboxes_mut(&mut self) -> &mut [VfMailbox] {
        &mut self.mailboxes
    }

    /// A PF read. PFMBICR, VFLRE and PFMAILBOX reads have no side effects (ixgbe clears the
    /// cause bits by writing them back).
    pub fn read(&self, reg: PfRegister) -> u32 {
        match reg {
            PfRegister::Pfmailbox(vf) => self.mailboxes.get(vf).map_or(0, |m| m.read_p2v()),
            PfRegister::Pfmbmem { vf, word } => {
                self.mailboxes.get(vf).map_or(0, |m| m.pf_read_vmbmem(word))
            }
            PfRegister::Pfmbicr(i) => {
                let mut v = 0;
                for (bit, m) in self.group(i, pf_bar::VFS_PER_PFMBICR) {
                    if m.request_pending() {
                        v |= pfmbicr::VFREQ_VF1 << bit;
                    }
                    if m.ack_pending() {
                        v |= pfmbicr::VFACK_VF1 << bit;
                    }
                }
                v
            }
            PfRegister::Pfmbimr(i) => self.pfmbimr.get(i).copied().unwrap_or(0),
            PfRegister::Vflre(i) => self
                .group(i, pf_bar::VFS_PER_WORD)
                .filter(|(_, m)| m.reset_pending())
                .fold(0, |v, (bit, _)| v | 1 << bit),
            // ⚠ VFLREC reads are not used by ixgbe; they read 0 here.
            PfRegister::Vflrec(_) => 0,
        }
    }

    /// A PF write; the events are those of the VF the register belongs to (`InterruptVf` for
    /// PFMAILBOX STS/ACK), empty for the shared registers.
    pub fn write(&mut self, reg: PfRegister, value: u32) -> MailboxEvents {
        match reg {
            PfRegister::Pfmailbox(vf) => self
                .mailboxes
                .get_mut(vf)
                .map_or(MailboxEvents::NONE, |m| m.write_p2v(value)),
            PfRegister::Pfmbmem { vf, word } => {
                if let Some(m) = self.mailboxes.get_mut(vf) {
                    m.pf_write_vmbmem(word, value);
                }
                MailboxEvents::NONE
            }
            PfRegister::Pfmbicr(i) => {
                // ixgbe_check_for_bit_pf: write the bit back to clear it.
                for (bit, m) in self.group_mut(i, pf_bar::VFS_PER_PFMBICR) {
                    if value & (pfmbicr::VFREQ_VF1 << bit) != 0 {
                        m.take_request();
                    }
                    if value & (pfmbicr::VFACK_VF1 << bit) != 0 {
                        m.take_ack();
                    }
                }
                MailboxEvents::NONE
            }
            PfRegister::Pfmbimr(i) => {
                if let Some(r) = self.pfmbimr.get_mut(i) {
                    *r = value;
                }
                MailboxEvents::NONE
            }
            // Read only.
            PfRegister::Vflre(_) => MailboxEvents::NONE,
            PfRegister::Vflrec(i) => {
                // ixgbe_check_for_rst_pf: VFLREC(i) = BIT(vf % 32).
                for (bit, m) in self.group_mut(i, pf_bar::VFS_PER_WORD) {
                    if value & (1 << bit) != 0 {
                        m.take_reset();
                    }
                }
                MailboxEvents::NONE
            }
        }
    }

    /// VFs of register `i` when each register holds `per` of them, with their bit position.
    fn group(&self, i: usize, per: usize) -> impl Iterator<Item = (usize, &VfMailbox)> {
        let start = i.saturating_mul(per);
        self.mailboxes
            .iter()
            .enumerate()
            .skip(start)
            .take(per)
            .map(move |(vf, m)| (vf - start, m))
    }

    fn group_mut(&mut self, i: usize, per: usize) -> impl Iterator<Item = (usize, &mut VfMailbox)> {
        let start = i.saturating_mul(per);
        self.mailboxes
            .iter_mut()
            .enumerate()
            .skip(start)
            .take(per)
            .map(move |(vf, m)| (vf - start, m))
    }
}
