//! The full-system mode: a guest's own igb is the VFs' PF driver ([`PfDriver::Guest`]). The
//! PF function's VF-management registers become the PF end of what the VFs drive, and the VFs'
//! policies come from the registers that igb writes:
//!
//! - the mailbox registers — P2VMAILBOX(n) (0x0C00 + 4n), VMBMEM(n) (0x0800 + 0x40n),
//!   MBVFICR (VFREQ b7:0, VFACK b23:16, write 1 to clear), VFLRE (write 1 to clear) — are the
//!   PF side of each VF's [`VfMailbox`], the one the VF function drives from its V2PMAILBOX
//!   and VMBMEM; a VF's request, acknowledgement or reset raises ICR.VMMB on the PF function
//!   (when MBVFIMR enables that VF), and the PF's STS or ACK raises the VF's mailbox interrupt;
//! - the policy registers (RAR with pool bits, MTA, VFTA, VLVF, VMOLR, VMVIR, DTXSWC,
//!   VFRE/VFTE, RTTDQSEL/RTTBCNRC, VT_CTL) live in a [`VmmRegs`]; after each write every VF's
//!   [`VfPolicy`](eswitch::VfPolicy) is recomputed from them ([`VmmRegs::vf_policy`]) and given
//!   to the one switch. The embedded agent answers no VF, and `ctl vf N ...` is refused.
//!
//! The runtime routes the PF function's BAR0 accesses ([`Nic::guest_route`]): mailbox and
//! VF-management registers go here only; the receive filters the PF shares with its pools
//! (RAL/RAH, MTA, VFTA, VT_CTL) go to the PF function and are copied here; CTRL.RST and
//! CTRL_EXT.PFRSTD tell the VFs' mailboxes that the PF reset (RSTI) and is back (RSTD).

use eswitch::{PfPolicy, PortId};
use mailbox::{MailboxEvent, MailboxEvents, VfMailbox};
use tracing::{debug, info, warn};

use super::PfSide;
use crate::function::card_vf::CardVf;
use crate::function::i82576::pf_regs::{self as r, ctrl, ctrl_ext};
use crate::function::i82576::pf_vmm::{Change, VmmRegs, POOLS};
use crate::function::mmio::dword_index;
use crate::function::stats::AccessError;
use crate::function::Function;
use crate::nic::{lock, Nic, Slot, Work};
use crate::seams::MailboxIrq;
use mailbox::regs::MAILBOX_WORDS;

/// Who plays the VFs' PF driver on a port: where the VFs' policies come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PfDriver {
    /// The emulator (the embedded PF agent), with `ctl vf N ...` as the administrator: what
    /// stock QEMU needs, since it hides SR-IOV from the guest.
    #[default]
    Embedded,
    /// The guest's igb on the PF function: it manages the VFs through the PF's registers, and
    /// `ip link set <pf> vf N ...` in that guest is the administrator. 82576 only.
    Guest,
}

impl PfDriver {
    pub fn as_str(self) -> &'static str {
        match self {
            PfDriver::Embedded => "embedded",
            PfDriver::Guest => "guest",
        }
    }
}

impl std::fmt::Display for PfDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for PfDriver {
    type Err = String;
    fn from_str(s: &str) -> Result<PfDriver, String> {
        match s {
            "embedded" => Ok(PfDriver::Embedded),
            "guest" => Ok(PfDriver::Guest),
            _ => Err(format!(
                "{s:?} is not a PF driver: `embedded` (the emulator's agent) or `guest` (the \
                 guest's igb)"
            )),
        }
    }
}

/// Counters of the guest PF driver's accesses the device refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct GuestPfCounters {
    /// Mailbox accesses naming a VF this port does not have (read 0, write dropped).
    pub absent_vf: u64,
    /// Accesses to a routed register that were not one aligned dword (refused).
    pub bad_width: u64,
    /// Register values whose policy the switch refused (logged; the VF keeps its last one).
    pub policy_refused: u64,
}

/// The guest-driven PF state of a port.
#[derive(Debug, Default)]
pub(in crate::nic) struct GuestPf {
    pub(in crate::nic) regs: VmmRegs,
    /// The PF's own receive filters as the PF function last told them, before the addresses
    /// of VF pools are taken out.
    pf_filters: Option<PfPolicy>,
    /// CTRL_EXT.PFRSTD as last written: the VFs hear "PF reset done" when it is set.
    pfrstd: bool,
    /// ICR.VMMB is owed to the PF function.
    vmmb: bool,
    pub(in crate::nic) counters: GuestPfCounters,
}

/// Where an access to the PF function's BAR0 goes in guest mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::nic) enum Route {
    /// A mailbox or VF-management register: to the PF side only.
    PfSide,
    /// A register the PF function keeps and the PF side copies.
    Both,
    /// The PF function's alone.
    Function,
}

/// What a PF write left to do once the PF side's lock is released.
#[derive(Debug, Default)]
pub(in crate::nic) struct GuestWork {
    /// VFs whose mailbox interrupt fires (the PF wrote STS or ACK).
    pub(in crate::nic) vf_irqs: Vec<u16>,
    /// VFs whose transmit the write turned on (VFTE): their held TX queues run.
    pub(in crate::nic) tx_opened: Vec<u16>,
}

impl GuestPf {
    pub(in crate::nic) fn new() -> GuestPf {
        GuestPf::default()
    }

    pub(in crate::nic) fn counters(&self) -> GuestPfCounters {
        self.counters
    }
}

/// The mailbox register at `offset`: (VF, what).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MailboxReg {
    P2v(usize),
    Vmbmem(usize, usize),
    Mbvficr,
    Vflre,
}

fn mailbox_reg(offset: u64) -> Option<MailboxReg> {
    if let Some(n) = dword_index(offset, r::P2VMAILBOX0, POOLS as u64) {
        return Some(MailboxReg::P2v(n));
    }
    if let Some(i) = dword_index(offset, r::VMBMEM0, (POOLS * MAILBOX_WORDS) as u64) {
        return Some(MailboxReg::Vmbmem(i / MAILBOX_WORDS, i % MAILBOX_WORDS));
    }
    match offset {
        r::MBVFICR => Some(MailboxReg::Mbvficr),
        r::VFLRE => Some(MailboxReg::Vflre),
        _ => None,
    }
}

/// MBVFICR bits of VF n.
const fn vfreq(n: usize) -> u32 {
    1 << n
}
const fn vfack(n: usize) -> u32 {
    1 << (16 + n)
}

/// Where a dword at `offset` of the PF's BAR0 goes in guest mode.
pub(in crate::nic) fn route(offset: u64) -> Route {
    if mailbox_reg(offset).is_some() || VmmRegs::owns(offset) || offset == r::WVBR {
        Route::PfSide
    } else if VmmRegs::copies(offset) || matches!(offset, r::CTRL | r::CTRL_DUP | r::CTRL_EXT) {
        Route::Both
    } else {
        Route::Function
    }
}

impl PfSide {
    /// Who plays the VFs' PF driver on this port.
    pub fn pf_driver(&self) -> PfDriver {
        if self.guest.is_some() {
            PfDriver::Guest
        } else {
            PfDriver::Embedded
        }
    }

    /// The guest PF driver's refused accesses (`None`: the embedded agent plays it).
    pub fn guest_counters(&self) -> Option<GuestPfCounters> {
        self.guest.as_ref().map(GuestPf::counters)
    }

    /// The VF-management registers as the guest's igb wrote them.
    pub fn guest_regs(&self) -> Option<&VmmRegs> {
        self.guest.as_ref().map(|g| &g.regs)
    }

    /// A VF's mailbox access raised `events` on VF `i`'s mailbox: the PF learns of a request,
    /// an acknowledgement or a reset through ICR.VMMB, if MBVFIMR enables the VF.
    pub(in crate::nic) fn guest_vf_event(&mut self, i: usize, events: MailboxEvents) -> MailboxIrq {
        let Some(g) = self.guest.as_mut() else {
            return MailboxIrq::None;
        };
        if events.contains(MailboxEvent::InterruptPf) && g.regs.mailbox_irq_enabled(i) {
            g.vmmb = true;
        }
        MailboxIrq::None
    }

    /// VF `i` reset itself: its pool stops until the PF enables it (VFRE/VFTE cleared).
    pub(in crate::nic) fn guest_vf_reset(&mut self, i: usize, events: MailboxEvents) -> MailboxIrq {
        if let Some(g) = self.guest.as_mut() {
            g.regs.vf_reset(i);
        }
        self.guest_apply();
        self.guest_vf_event(i, events)
    }

    /// Whether ICR.VMMB is owed to the PF function (then it is no longer).
    pub(in crate::nic) fn take_guest_vmmb(&mut self) -> bool {
        self.guest
            .as_mut()
            .is_some_and(|g| std::mem::take(&mut g.vmmb))
    }

    /// A read of a register [`route`] sends to the PF side.
    pub(in crate::nic) fn guest_read(&mut self, offset: u64) -> u32 {
        let n = self.mailboxes.len();
        let Some(g) = self.guest.as_mut() else {
            return 0;
        };
        match mailbox_reg(offset) {
            Some(MailboxReg::P2v(i)) if i < n => self.mailboxes[i].read_p2v(),
            Some(MailboxReg::Vmbmem(i, w)) if i < n => self.mailboxes[i].pf_read_vmbmem(w),
            Some(MailboxReg::Mbvficr) => self.mailboxes.iter().enumerate().fold(0, |v, (i, m)| {
                v | if m.request_pending() { vfreq(i) } else { 0 }
                    | if m.ack_pending() { vfack(i) } else { 0 }
            }),
            Some(MailboxReg::Vflre) => self
                .mailboxes
                .iter()
                .enumerate()
                .filter(|(_, m)| m.reset_pending())
                .fold(0, |v, (i, _)| v | (1 << i)),
            Some(_) => {
                g.counters.absent_vf += 1;
                debug!(
                    offset,
                    "PF read of the mailbox of a VF this port does not have"
                );
                0
            }
            // WVBR: no anti-spoof event is latched per queue; the switch counts them.
            None => g.regs.read(offset).unwrap_or(0),
        }
    }

    /// A write of a register [`route`] sends to the PF side.
    pub(in crate::nic) fn guest_write(&mut self, offset: u64, value: u32) -> GuestWork {
        let mut work = GuestWork::default();
        let n = self.mailboxes.len();
        let Some(g) = self.guest.as_mut() else {
            return work;
        };
        match mailbox_reg(offset) {
            Some(MailboxReg::P2v(i)) if i < n => {
                let events = self.mailboxes[i].write_p2v(value);
                if events.contains(MailboxEvent::InterruptVf) {
                    work.vf_irqs.push(i as u16);
                }
            }
            Some(MailboxReg::Vmbmem(i, w)) if i < n => {
                self.mailboxes[i].pf_write_vmbmem(w, value);
            }
            Some(MailboxReg::Mbvficr) => {
                for (i, m) in self.mailboxes.iter_mut().enumerate() {
                    if value & vfreq(i) != 0 {
                        m.take_request();
                    }
                    if value & vfack(i) != 0 {
                        m.take_ack();
                    }
                }
            }
            Some(MailboxReg::Vflre) => {
                for (i, m) in self.mailboxes.iter_mut().enumerate() {
                    if value & (1 << i) != 0 {
                        m.take_reset();
                    }
                }
            }
            Some(_) => {
                g.counters.absent_vf += 1;
                debug!(
                    offset,
                    value, "PF write to the mailbox of a VF this port does not have; dropped"
                );
            }
            None => match g.regs.write(offset, value) {
                Some(Change::Policy) => work.tx_opened = self.guest_apply(),
                Some(Change::MailboxMask) => {
                    // A VF event waiting behind the mask interrupts the PF once unmasked.
                    let owed = self.mailboxes.iter().enumerate().any(|(i, m)| {
                        g.regs.mailbox_irq_enabled(i)
                            && (m.request_pending() || m.ack_pending() || m.reset_pending())
                    });
                    g.vmmb |= owed;
                }
                Some(Change::Stored) => {}
                None => debug!(
                    offset,
                    value, "PF write to a register without function ignored"
                ),
            },
        }
        work
    }

    /// A write the PF function took (a receive filter, CTRL, CTRL_EXT), as the PF side sees it.
    pub(in crate::nic) fn guest_copy(&mut self, offset: u64, value: u32) {
        let Some(g) = self.guest.as_mut() else {
            return;
        };
        match offset {
            r::CTRL | r::CTRL_DUP => {
                if value & ctrl::RST != 0 {
                    self.guest_pf_reset();
                }
            }
            r::CTRL_EXT => {
                let set = value & ctrl_ext::PFRSTD != 0;
                let rose = set && !g.pfrstd;
                g.pfrstd = set;
                if rose {
                    info!("PF reset done (CTRL_EXT.PFRSTD): the VFs may talk to the PF");
                    for m in &mut self.mailboxes {
                        m.pf_reset_done();
                    }
                }
            }
            _ => {
                if g.regs.write(offset, value) == Some(Change::Policy) {
                    self.guest_apply();
                }
            }
        }
    }

    /// The PF's MAC reset (CTRL.RST, device reset, power-on): the VF-management registers go
    /// back to their reset values and every VF's mailbox shows the PF in reset (RSTI) until
    /// the PF driver writes CTRL_EXT.PFRSTD (igb's `igb_reset_hw_82575`; QEMU's `igb_reset`).
    pub(in crate::nic) fn guest_pf_reset(&mut self) {
        let Some(g) = self.guest.as_mut() else {
            return;
        };
        g.regs = VmmRegs::new();
        g.pfrstd = false;
        g.vmmb = false;
        for m in &mut self.mailboxes {
            m.pf_reset_start();
        }
        self.guest_apply();
    }

    /// The PF function's own receive filters changed: the switch's PF port takes them without
    /// the addresses that belong to VF pools only (RAR entries without the PF pool's bit).
    pub(in crate::nic) fn guest_pf_filters(&mut self, policy: PfPolicy) -> Option<PfPolicy> {
        let g = self.guest.as_mut()?;
        g.pf_filters = Some(policy);
        self.guest_pf_policy()
    }

    fn guest_pf_policy(&self) -> Option<PfPolicy> {
        let g = self.guest.as_ref()?;
        let mut policy = g.pf_filters.clone()?;
        policy.macs.retain(|m| g.regs.pf_owns(*m));
        Some(policy)
    }

    /// Gives the switch every VF's policy as the registers now set it, and the PF port's
    /// filters without the VF pools' addresses. Returns the VFs whose transmit this turned on
    /// (VFTE), whose held TX queues the caller runs once the lock is released.
    pub(in crate::nic) fn guest_apply(&mut self) -> Vec<u16> {
        let Some(g) = self.guest.as_ref() else {
            return Vec::new();
        };
        let link = self.switch.config().link_speed_mbps;
        if self.switch.loopback() != g.regs.loopback() {
            debug!(
                on = g.regs.loopback(),
                "VM-to-VM loopback from the guest's DTXSWC"
            );
            self.switch.set_loopback(g.regs.loopback());
        }
        let n = self.num_vfs().min(POOLS as u16);
        let mut refused = 0;
        let mut opened = Vec::new();
        for vf in 0..n {
            let i = usize::from(vf);
            let policy = g.regs.vf_policy(i, link);
            let strip = g.regs.rx_vlan_strip(i);
            if self.switch.policy(vf).is_some_and(|p| !p.tx_enabled) && policy.tx_enabled {
                opened.push(vf);
            }
            if self.switch.policy(vf) != Some(&policy) {
                debug!(vf, ?policy, "VF policy from the guest's PF registers");
                if let Err(e) = self.switch.set_policy(vf, policy) {
                    refused += 1;
                    self.counters[i].policy_apply_failures += 1;
                    warn!(vf, error = %e, "VF policy from the PF's registers refused by the switch");
                }
            }
            if self.switch.rx_vlan_strip(PortId::Vf(vf)).ok() != Some(strip) {
                let _ = self.switch.set_rx_vlan_strip(PortId::Vf(vf), strip);
            }
        }
        if let Some(policy) = self.guest_pf_policy() {
            if self.switch.pf_policy() != &policy {
                if let Err(e) = self.switch.set_pf_policy(policy) {
                    warn!(error = %e, "PF receive filters refused by the switch");
                }
            }
        }
        if let Some(g) = self.guest.as_mut() {
            g.counters.policy_refused += refused;
        }
        opened
    }
}

/// The mailboxes of a port whose PF driver is the guest's start with the PF in reset: no PF
/// driver has written CTRL_EXT.PFRSTD yet, so a VF's igbvf waits ("PF still in reset state").
pub(in crate::nic) fn guest_mailboxes(n: usize) -> Vec<VfMailbox> {
    (0..n)
        .map(|_| {
            let mut m = VfMailbox::new();
            m.pf_reset_start();
            m
        })
        .collect()
}

impl Nic {
    /// Where an access to the PF function's region `index` goes: `None` when it is not
    /// routed (the embedded agent plays the PF driver, another BAR, or a register of the PF
    /// function's own); `Err` when it touches a routed register without being one aligned
    /// dword.
    pub(in crate::nic) fn guest_route(
        &self,
        index: u32,
        offset: u64,
        len: usize,
    ) -> Option<Result<Route, AccessError>> {
        if !self.guest_pf || index != 0 {
            return None;
        }
        if len == 4 && offset.is_multiple_of(4) {
            return match route(offset) {
                Route::Function => None,
                r => Some(Ok(r)),
            };
        }
        let end = offset.saturating_add(len as u64);
        let touches = (offset & !3..end)
            .step_by(4)
            .any(|o| route(o) != Route::Function);
        touches.then(|| {
            if let Some(g) = self.pf.side().guest.as_mut() {
                g.counters.bad_width += 1;
            }
            debug!(
                offset,
                len, "PF access to a VF-management register that is not one dword"
            );
            Err(AccessError::BadAccess)
        })
    }

    /// A PF read of a register the PF side answers.
    pub(in crate::nic) fn guest_read(&self, offset: u64) -> u32 {
        self.pf.side().guest_read(offset)
    }

    /// A PF write of a register the PF side takes; the VFs the PF wrote STS or ACK to are
    /// interrupted once the lock is released.
    pub(in crate::nic) fn guest_write(&self, offset: u64, value: u32) {
        let work = {
            let mut side = self.pf.side();
            let work = side.guest_write(offset, value);
            self.pf.note_vmmb(&mut side);
            work
        };
        self.guest_finish(work);
    }

    /// A write the PF function took that the PF side copies (under the PF function's lock, so
    /// that both see the PF's writes in the same order).
    pub(in crate::nic) fn guest_copy(&self, offset: u64, value: u32) {
        self.pf.side().guest_copy(offset, value);
    }

    /// The PF function was reset (DEVICE_RESET, or its client went away): its VF-management
    /// registers are reset too, and the VFs see the PF in reset.
    pub(in crate::nic) fn guest_pf_reset(&self) {
        if self.guest_pf {
            self.pf.side().guest_pf_reset();
        }
    }

    pub(in crate::nic) fn guest_finish(&self, work: GuestWork) {
        for vf in work.vf_irqs {
            self.mailbox_interrupt(vf);
        }
        for vf in work.tx_opened {
            self.tx_opened(vf);
        }
        self.raise_guest_vmmb();
    }

    /// VF `vf`'s transmit was turned on: its queues held while it was off run now, not at
    /// their next look.
    fn tx_opened(&self, vf: u16) {
        let _ = self.with_slot(PortId::Vf(vf), |s: &mut Slot<CardVf>| {
            let effects = s.func.tx_resume_closed();
            ((), s.settle(effects))
        });
    }

    /// Raises ICR.VMMB on the PF function if a VF's mailbox event owes it.
    pub(in crate::nic) fn raise_guest_vmmb(&self) {
        if !self.guest_pf || !self.pf.take_vmmb() {
            return;
        }
        let Some(slot) = self.pf_fn.get() else {
            debug!("a VF mailbox event for the guest's PF driver, and no PF function hosted");
            return;
        };
        let work: Work = {
            let mut s = lock(slot);
            let effects = s.func.raise_vf_mailbox();
            s.settle(effects)
        };
        self.finish(PortId::Pf, work);
    }
}
