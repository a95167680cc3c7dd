//! One VF's mailbox as the hardware implements it: the 16-word buffer, the VF-side control
//! register V2PMAILBOX and the PF-side P2VMAILBOX(n), buffer ownership, and the per-VF cause
//! bits the PF sees (MBVFICR.VFREQ/VFACK, VFLRE), as Linux igb's `e1000_mbx.c` and igbvf's
//! `mbx.c` use them and QEMU's `igb_set_pfmailbox` / `igb_set_vfmailbox` implement them.
//!
//! Each VF has its own `VfMailbox`; nothing here is shared between VFs, so no sequence of
//! accesses to one VF's mailbox can touch another's.

use tracing::{debug, trace};

use crate::regs::{p2v, v2p, MAILBOX_WORDS};

/// Something a register access caused that the device model must act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailboxEvent {
    /// Fire the VF's mailbox interrupt (VTIVAR_MISC vector): the PF wrote STS or ACK.
    InterruptVf,
    /// Raise ICR.VMMB on the PF: a VF request, acknowledgement or reset is pending.
    InterruptPf,
    /// The VF wrote REQ (MBVFICR.VFREQ): the PF agent must service the mailbox.
    RequestPosted,
    /// The VF wrote ACK (MBVFICR.VFACK).
    AckPosted,
    /// The VF reset itself (VFLRE): the PF agent must forget its VF-requested state.
    VfReset,
}

impl MailboxEvent {
    const ALL: [MailboxEvent; 5] = [
        MailboxEvent::InterruptVf,
        MailboxEvent::InterruptPf,
        MailboxEvent::RequestPosted,
        MailboxEvent::AckPosted,
        MailboxEvent::VfReset,
    ];

    fn bit(self) -> u8 {
        match self {
            MailboxEvent::InterruptVf => 1 << 0,
            MailboxEvent::InterruptPf => 1 << 1,
            MailboxEvent::RequestPosted => 1 << 2,
            MailboxEvent::AckPosted => 1 << 3,
            MailboxEvent::VfReset => 1 << 4,
        }
    }
}

/// A set of `MailboxEvent`s (an access can cause several; each at most once).
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct MailboxEvents(u8);

impl MailboxEvents {
    pub const NONE: MailboxEvents = MailboxEvents(0);

    pub fn insert(&mut self, ev: MailboxEvent) {
        self.0 |= ev.bit();
    }
    pub fn contains(self, ev: MailboxEvent) -> bool {
        self.0 & ev.bit() != 0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn union(self, other: MailboxEvents) -> MailboxEvents {
        MailboxEvents(self.0 | other.0)
    }
    pub fn iter(self) -> impl Iterator<Item = MailboxEvent> {
        MailboxEvent::ALL
            .into_iter()
            .filter(move |e| self.contains(*e))
    }
}

impl std::fmt::Debug for MailboxEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl FromIterator<MailboxEvent> for MailboxEvents {
    fn from_iter<I: IntoIterator<Item = MailboxEvent>>(iter: I) -> Self {
        let mut s = MailboxEvents::NONE;
        for e in iter {
            s.insert(e);
        }
        s
    }
}

/// Who currently holds the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    Nobody,
    Vf,
    Pf,
}

/// Counters of rejected accesses (guest misbehaviour or lock contention), per VF.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MailboxStats {
    /// VF wrote VMBMEM without holding VFU: dropped.
    pub vf_writes_without_lock: u64,
    /// PF wrote VMBMEM without holding PFU: dropped.
    pub pf_writes_without_lock: u64,
    /// VF tried to take VFU while the PF held the buffer.
    pub vf_lock_denied: u64,
    /// PF tried to take PFU while the VF held the buffer.
    pub pf_lock_denied: u64,
    /// Accesses to a word index outside 0..16 (read 0 / dropped).
    pub out_of_range: u64,
}

/// The mailbox of one VF, seen from both sides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VfMailbox {
    buf: [u32; MAILBOX_WORDS],
    owner: Owner,
    /// V2P.PFSTS, PFACK, RSTI, RSTD.
    pfsts: bool,
    pfack: bool,
    rsti: bool,
    rstd: bool,
    /// `MBVFICR.VFREQ[n]`, `MBVFICR.VFACK[n]`, `VFLRE[n]`: what the PF has yet to service.
    vfreq: bool,
    vfack: bool,
    vflre: bool,
    stats: MailboxStats,
}

impl Default for VfMailbox {
    fn default() -> Self {
        VfMailbox::new()
    }
}

impl VfMailbox {
    /// A mailbox whose PF is up: RSTI = 0, RSTD = 1, as after the PF driver wrote
    /// CTRL_EXT.PFRSTD (igb does so in `igb_up` / `__igb_open` when it has VFs; QEMU's
    /// `igb_set_ctrlext`).
    pub fn new() -> VfMailbox {
        VfMailbox {
            buf: [0; MAILBOX_WORDS],
            owner: Owner::Nobody,
            pfsts: false,
            pfack: false,
            rsti: false,
            rstd: true,
            vfreq: false,
            vfack: false,
            vflre: false,
            stats: MailboxStats::default(),
        }
    }

    pub fn owner(&self) -> Owner {
        self.owner
    }

    pub fn stats(&self) -> MailboxStats {
        self.stats
    }

    /// The buffer as it stands (no side effects).
    pub fn words(&self) -> &[u32; MAILBOX_WORDS] {
        &self.buf
    }

    /// Word 0 of the buffer: after a PF message it is that message's header, which igbvf's
    /// link check (`e1000_check_for_link_vf`) reads for CTS.
    pub fn last_word0(&self) -> u32 {
        self.buf[0]
    }

    // ----- VF side (VF BAR0) -----

    /// The V2PMAILBOX value without read side effects (for debugging and `ctl show`).
    pub fn peek_v2p(&self) -> u32 {
        let mut v = 0;
        if self.owner == Owner::Vf {
            v |= v2p::VFU;
        }
        if self.owner == Owner::Pf {
            v |= v2p::PFU;
        }
        if self.pfsts {
            v |= v2p::PFSTS;
        }
        if self.pfack {
            v |= v2p::PFACK;
        }
        if self.rsti {
            v |= v2p::RSTI;
        }
        if self.rstd {
            v |= v2p::RSTD;
        }
        v
    }

    /// A VF read of V2PMAILBOX: returns the bits, then clears PFSTS, PFACK and RSTD
    /// (igbvf's `E1000_V2PMAILBOX_R2C_BITS`; its `e1000_read_v2p_mailbox` caches them in
    /// software).
    pub fn read_v2p(&mut self) -> u32 {
        let v = self.peek_v2p();
        self.pfsts = false;
        self.pfack = false;
        self.rstd = false;
        v
    }

    /// A VF write of V2PMAILBOX. The write is interpreted as a whole: VFU=1 takes the buffer
    /// (if the PF does not hold it), VFU=0 releases it; then REQ / ACK post to the PF. The lock
    /// change comes first so that igbvf's "write REQ" both releases VFU and lets the PF lock
    /// the buffer at once.
    pub fn write_v2p(&mut self, value: u32) -> MailboxEvents {
        let mut ev = MailboxEvents::NONE;
        if value & !v2p::WRITABLE != 0 {
            trace!(
                value,
                "V2PMAILBOX write sets read-only or undefined bits; ignored"
            );
        }
        if value & v2p::VFU != 0 {
            match self.owner {
                Owner::Pf => {
                    self.stats.vf_lock_denied += 1;
                    trace!("VF lock attempt while the PF holds the mailbox");
                }
                Owner::Nobody | Owner::Vf => self.owner = Owner::Vf,
            }
        } else if self.owner == Owner::Vf {
            self.owner = Owner::Nobody;
        }
        if value & v2p::REQ != 0 {
            self.vfreq = true;
            ev.insert(MailboxEvent::RequestPosted);
            ev.insert(MailboxEvent::InterruptPf);
        }
        if value & v2p::ACK != 0 {
            self.vfack = true;
            ev.insert(MailboxEvent::AckPosted);
            ev.insert(MailboxEvent::InterruptPf);
        }
        ev
    }

    /// A VF read of VMBMEM word `word` (0..16). Out-of-range reads return 0.
    pub fn read_vmbmem(&mut self, word: usize) -> u32 {
        match self.buf.get(word) {
            Some(v) => *v,
            None => {
                self.stats.out_of_range += 1;
                0
            }
        }
    }

    /// A VF write of VMBMEM word `word`. Only the holder of the buffer may write it: without
    /// VFU the write is dropped (and counted). Returns whether the word was stored.
    pub fn write_vmbmem(&mut self, word: usize, value: u32) -> bool {
        if self.owner != Owner::Vf {
            self.stats.vf_writes_without_lock += 1;
            debug!(
                word,
                value, "VF wrote the mailbox buffer without holding VFU; dropped"
            );
            return false;
        }
        self.store(word, value)
    }

    /// The VF wrote VTCTRL.RST: set VFLRE (the PF must forget the VF's requested state) and
    /// interrupt the PF. The VF's own lock does not survive its reset.
    pub fn vf_reset(&mut self) -> MailboxEvents {
        self.vflre = true;
        if self.owner == Owner::Vf {
            self.owner = Owner::Nobody;
        }
        [MailboxEvent::VfReset, MailboxEvent::InterruptPf]
            .into_iter()
            .collect()
    }

    // ----- PF side (PF BAR0, driven by the PF agent) -----

    /// P2VMAILBOX(n) as the PF reads it: VFU and PFU; STS/ACK/RVFU read 0.
    pub fn read_p2v(&self) -> u32 {
        match self.owner {
            Owner::Vf => p2v::VFU,
            Owner::Pf => p2v::PFU,
            Owner::Nobody => 0,
        }
    }

    /// A PF write of P2VMAILBOX(n), interpreted as a whole: RVFU first (force-release the VF
    /// and drop its pending REQ/ACK), then PFU=1 takes the buffer if the VF does not hold it
    /// and PFU=0 releases it, then STS / ACK post to the VF.
    pub fn write_p2v(&mut self, value: u32) -> MailboxEvents {
        let mut ev = MailboxEvents::NONE;
        if value & p2v::RVFU != 0 {
            if self.owner == Owner::Vf {
                self.owner = Owner::Nobody;
            }
            self.vfreq = false;
            self.vfack = false;
        }
        if value & p2v::PFU != 0 {
            match self.owner {
                Owner::Vf => {
                    self.stats.pf_lock_denied += 1;
                    trace!("PF lock attempt while the VF holds the mailbox");
                }
                Owner::Nobody | Owner::Pf => self.owner = Owner::Pf,
            }
        } else if self.owner == Owner::Pf {
            self.owner = Owner::Nobody;
        }
        if value & p2v::STS != 0 {
            self.pfsts = true;
            ev.insert(MailboxEvent::InterruptVf);
        }
        if value & p2v::ACK != 0 {
            self.pfack = true;
            ev.insert(MailboxEvent::InterruptVf);
        }
        ev
    }

    /// A PF read of VMBMEM(n) word `word`. Out-of-range reads return 0.
    pub fn pf_read_vmbmem(&self, word: usize) -> u32 {
        self.buf.get(word).copied().unwrap_or(0)
    }

    /// A PF write of VMBMEM(n): dropped unless the PF holds PFU.
    pub fn pf_write_vmbmem(&mut self, word: usize, value: u32) -> bool {
        if self.owner != Owner::Pf {
            self.stats.pf_writes_without_lock += 1;
            debug!(
                word,
                value, "PF wrote the mailbox buffer without holding PFU; dropped"
            );
            return false;
        }
        self.store(word, value)
    }

    /// Stores a buffer word for the side that holds the buffer; a word past the 16 is dropped
    /// and counted.
    fn store(&mut self, word: usize, value: u32) -> bool {
        match self.buf.get_mut(word) {
            Some(slot) => {
                *slot = value;
                true
            }
            None => {
                self.stats.out_of_range += 1;
                false
            }
        }
    }

    /// `MBVFICR.VFREQ[n]` is set (a request waits for the PF).
    pub fn request_pending(&self) -> bool {
        self.vfreq
    }
    /// `MBVFICR.VFACK[n]` is set.
    pub fn ack_pending(&self) -> bool {
        self.vfack
    }
    /// `VFLRE[n]` is set.
    pub fn reset_pending(&self) -> bool {
        self.vflre
    }

    /// Read-and-W1C of `MBVFICR.VFREQ[n]`: true once per posted REQ (igb `check_for_msg`).
    pub fn take_request(&mut self) -> bool {
        std::mem::take(&mut self.vfreq)
    }
    /// Read-and-W1C of `MBVFICR.VFACK[n]` (igb `check_for_ack`).
    pub fn take_ack(&mut self) -> bool {
        std::mem::take(&mut self.vfack)
    }
    /// Read-and-W1C of `VFLRE[n]` (igb `check_for_rst`).
    pub fn take_reset(&mut self) -> bool {
        std::mem::take(&mut self.vflre)
    }

    /// PF reset begins (PF CTRL.RST / power-on): RSTI set, the PF's lock, its pending
    /// notifications to the VF and the message memory are gone (so a VF that reads it finds no
    /// clear-to-send message: igbvf's `e1000_check_for_link_vf` then keeps the link down until
    /// the PF's NACK sends it through its reset).
    pub fn pf_reset_start(&mut self) {
        self.buf = [0; MAILBOX_WORDS];
        self.rsti = true;
        self.rstd = false;
        self.pfsts = false;
        self.pfack = false;
        if self.owner == Owner::Pf {
            self.owner = Owner::Nobody;
        }
    }

    /// PF reset done (CTRL_EXT.PFRSTD written): RSTI cleared, RSTD set.
    pub fn pf_reset_done(&mut self) {
        self.rsti = false;
        self.rstd = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_with_pf_up_rstd_set_and_read_clears_it() {
        let mut m = VfMailbox::new();
        assert_eq!(m.read_v2p(), v2p::RSTD);
        assert_eq!(m.read_v2p(), 0);
    }

    #[test]
    fn vf_lock_excludes_pf_and_vice_versa() {
        let mut m = VfMailbox::new();
        m.write_v2p(v2p::VFU);
        assert_eq!(m.owner(), Owner::Vf);
        m.write_p2v(p2v::PFU);
        assert_eq!(m.owner(), Owner::Vf);
        assert_eq!(m.read_p2v() & p2v::PFU, 0);
        assert_eq!(m.stats().pf_lock_denied, 1);
        m.write_v2p(0);
        m.write_p2v(p2v::PFU);
        assert_eq!(m.owner(), Owner::Pf);
        m.write_v2p(v2p::VFU);
        assert_eq!(m.owner(), Owner::Pf);
        assert_eq!(m.read_v2p() & (v2p::VFU | v2p::PFU), v2p::PFU);
    }

    #[test]
    fn req_releases_vfu_and_posts_request() {
        let mut m = VfMailbox::new();
        m.write_v2p(v2p::VFU);
        assert!(m.write_vmbmem(0, 1));
        let ev = m.write_v2p(v2p::REQ);
        assert!(ev.contains(MailboxEvent::RequestPosted));
        assert!(ev.contains(MailboxEvent::InterruptPf));
        assert_eq!(m.owner(), Owner::Nobody);
        assert!(m.take_request());
        assert!(!m.take_request());
    }

    #[test]
    fn buffer_writes_need_the_lock() {
        let mut m = VfMailbox::new();
        assert!(!m.write_vmbmem(0, 7));
        assert!(!m.pf_write_vmbmem(0, 7));
        assert_eq!(m.words()[0], 0);
        assert_eq!(m.stats().vf_writes_without_lock, 1);
        assert_eq!(m.stats().pf_writes_without_lock, 1);
    }

    #[test]
    fn pf_sts_and_ack_set_r2c_bits_and_interrupt_vf() {
        let mut m = VfMailbox::new();
        m.read_v2p();
        let ev = m.write_p2v(p2v::ACK | p2v::PFU);
        assert!(ev.contains(MailboxEvent::InterruptVf));
        assert_eq!(m.owner(), Owner::Pf);
        let ev = m.write_p2v(p2v::STS);
        assert!(ev.contains(MailboxEvent::InterruptVf));
        assert_eq!(m.owner(), Owner::Nobody);
        assert_eq!(m.read_v2p(), v2p::PFSTS | v2p::PFACK);
        assert_eq!(m.read_v2p(), 0);
    }

    #[test]
    fn rvfu_breaks_a_stuck_vf_lock_and_drops_pending_bits() {
        let mut m = VfMailbox::new();
        m.write_v2p(v2p::VFU | v2p::REQ | v2p::ACK);
        m.write_p2v(p2v::RVFU | p2v::PFU);
        assert_eq!(m.owner(), Owner::Pf);
        assert!(!m.request_pending() && !m.ack_pending());
    }

    #[test]
    fn pf_reset_sets_rsti_sticky_until_done() {
        let mut m = VfMailbox::new();
        m.pf_reset_start();
        assert_eq!(m.read_v2p(), v2p::RSTI);
        assert_eq!(m.read_v2p(), v2p::RSTI);
        m.pf_reset_done();
        assert_eq!(m.read_v2p(), v2p::RSTD);
        assert_eq!(m.read_v2p(), 0);
    }

    #[test]
    fn vf_reset_raises_vflre_and_drops_vf_lock() {
        let mut m = VfMailbox::new();
        m.write_v2p(v2p::VFU);
        let ev = m.vf_reset();
        assert!(ev.contains(MailboxEvent::VfReset) && ev.contains(MailboxEvent::InterruptPf));
        assert_eq!(m.owner(), Owner::Nobody);
        assert!(m.take_reset());
    }

    #[test]
    fn out_of_range_words_never_panic() {
        let mut m = VfMailbox::new();
        m.write_v2p(v2p::VFU);
        assert_eq!(m.read_vmbmem(16), 0);
        assert!(!m.write_vmbmem(usize::MAX, 1));
        assert_eq!(m.pf_read_vmbmem(99), 0);
    }
}
