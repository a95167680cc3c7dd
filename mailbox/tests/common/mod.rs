//! A test NIC (per-VF mailboxes + policies + one PF agent, wired as the device model's PF side
//! wires them) and a VF driver that programs the registers exactly as Linux igbvf's mbx.c and
//! vf.c do.
#![allow(dead_code)]

use eswitch::{MacAddr, VfPolicy};
use mailbox::regs::{msg, v2p, MAILBOX_WORDS};
use mailbox::{AgentConfig, AgentOutcome, MailboxEvent, PfAgent, VfMailbox};

/// When the PF agent runs relative to the VF's register write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Servicing {
    /// Inside the V2PMAILBOX write that raised the event.
    Immediate,
    /// Only when the test (or the polling driver) calls `tick`.
    Deferred,
}

pub struct Nic {
    pub agent: PfAgent,
    pub mbx: Vec<VfMailbox>,
    pub policy: Vec<VfPolicy>,
    pub now: u64,
    pub servicing: Servicing,
    pub outcomes: Vec<AgentOutcome>,
    /// VF mailbox interrupts fired, per VF.
    pub vf_irqs: Vec<u64>,
}

impl Nic {
    pub fn new(config: AgentConfig) -> Nic {
        let n = config.num_vfs;
        Nic {
            agent: PfAgent::new(config).expect("config"),
            mbx: vec![VfMailbox::new(); n],
            policy: vec![VfPolicy::default(); n],
            now: 1_000_000_000,
            servicing: Servicing::Immediate,
            outcomes: Vec::new(),
            vf_irqs: vec![0; n],
        }
    }

    pub fn with_vfs(n: usize) -> Nic {
        Nic::new(AgentConfig::new(n))
    }

    pub fn service(&mut self, vf: usize) {
        let report = self
            .agent
            .service(vf, &mut self.mbx[vf], &self.policy[vf], self.now);
        for change in report.policy_changes() {
            change.apply(&mut self.policy[vf]);
        }
        if report.events.contains(MailboxEvent::InterruptVf) {
            self.vf_irqs[vf] += 1;
        }
        self.outcomes.extend(report.outcomes);
    }

    /// The model's "next step": service every VF with something pending.
    pub fn tick(&mut self) {
        for vf in 0..self.mbx.len() {
            let m = &self.mbx[vf];
            if m.request_pending() || m.ack_pending() || m.reset_pending() {
                self.service(vf);
            }
        }
    }

    pub fn read_v2p(&mut self, vf: usize) -> u32 {
        self.mbx[vf].read_v2p()
    }

    pub fn write_v2p(&mut self, vf: usize, value: u32) {
        let ev = self.mbx[vf].write_v2p(value);
        if self.servicing == Servicing::Immediate && ev.contains(MailboxEvent::InterruptPf) {
            self.service(vf);
        }
    }

    pub fn read_vmbmem(&mut self, vf: usize, word: usize) -> u32 {
        self.mbx[vf].read_vmbmem(word)
    }

    pub fn write_vmbmem(&mut self, vf: usize, word: usize, value: u32) {
        self.mbx[vf].write_vmbmem(word, value);
    }

    /// VTCTRL.RST.
    pub fn vf_ctrl_rst(&mut self, vf: usize) {
        let ev = self.mbx[vf].vf_reset();
        if self.servicing == Servicing::Immediate && ev.contains(MailboxEvent::InterruptPf) {
            self.service(vf);
        }
    }

    pub fn advance(&mut self, ns: u64) {
        self.now += ns;
    }

    pub fn last_outcome(&self) -> &AgentOutcome {
        self.outcomes.last().expect("an outcome")
    }
}

/// igbvf's mailbox: a VF-side software cache of the read-to-clear bits, posted writes that
/// wait for PFACK, posted reads that wait for PFSTS (`E1000_VF_MBX_INIT_TIMEOUT` polls).
pub struct Igbvf {
    pub vf: usize,
    cache: u32,
    /// 0 after a timeout: every later posted access fails until reset (igbvf's `mbx->timeout`).
    timeout: u32,
    pub perm_addr: MacAddr,
    pub addr: MacAddr,
}

/// igbvf polls up to 2000 times (500 µs apart).
const POLLS: u32 = 2000;
const POLL_NS: u64 = 500_000;

#[derive(Debug, PartialEq, Eq)]
pub enum DrvError {
    /// Could not take VFU.
    Lock,
    /// PFACK / PFSTS never came.
    Timeout,
    /// RSTI stayed set ("PF still in reset state").
    PfInReset,
    /// VF_RESET answered with NACK ("MAC address not assigned by administrator").
    NoMac,
}

impl Igbvf {
    pub fn new(vf: usize) -> Igbvf {
        Igbvf {
            vf,
            cache: 0,
            timeout: 0,
            perm_addr: MacAddr::ZERO,
            addr: MacAddr::ZERO,
        }
    }

    /// Arms the posted-access timeout without a reset (a driver that skipped the handshake).
    pub fn arm_timeout(&mut self) {
        self.timeout = POLLS;
    }

    fn read_v2p(&mut self, nic: &mut Nic) -> u32 {
        let v = nic.read_v2p(self.vf) | self.cache;
        self.cache |= v & v2p::R2C;
        v
    }

    fn check_bit(&mut self, nic: &mut Nic, mask: u32) -> bool {
        let v = self.read_v2p(nic);
        self.cache &= !mask;
        v & mask != 0
    }

    fn obtain_lock(&mut self, nic: &mut Nic) -> Result<(), DrvError> {
        nic.write_v2p(self.vf, v2p::VFU);
        if self.read_v2p(nic) & v2p::VFU != 0 {
            Ok(())
        } else {
            Err(DrvError::Lock)
        }
    }

    /// e1000_write_mbx_vf.
    pub fn write_mbx(&mut self, nic: &mut Nic, words: &[u32]) -> Result<(), DrvError> {
        self.obtain_lock(nic)?;
        self.check_bit(nic, v2p::PFACK);
        self.check_bit(nic, v2p::PFSTS);
        for (i, w) in words.iter().enumerate() {
            nic.write_vmbmem(self.vf, i, *w);
        }
        nic.write_v2p(self.vf, v2p::REQ);
        Ok(())
    }

    /// e1000_read_mbx_vf.
    pub fn read_mbx(&mut self, nic: &mut Nic, n: usize) -> Result<Vec<u32>, DrvError> {
        self.obtain_lock(nic)?;
        let words = (0..n).map(|i| nic.read_vmbmem(self.vf, i)).collect();
        nic.write_v2p(self.vf, v2p::ACK);
        Ok(words)
    }

    fn poll(&mut self, nic: &mut Nic, mask: u32) -> Result<(), DrvError> {
        let mut countdown = self.timeout;
        while countdown > 0 && !self.check_bit(nic, mask) {
            countdown -= 1;
            nic.advance(POLL_NS);
            nic.tick();
        }
        if countdown == 0 {
            self.timeout = 0;
            return Err(DrvError::Timeout);
        }
        Ok(())
    }

    pub fn write_posted(&mut self, nic: &mut Nic, words: &[u32]) -> Result<(), DrvError> {
        if self.timeout == 0 {
            return Err(DrvError::Timeout);
        }
        self.write_mbx(nic, words)?;
        self.poll(nic, v2p::PFACK)
    }

    pub fn read_posted(&mut self, nic: &mut Nic, n: usize) -> Result<Vec<u32>, DrvError> {
        self.poll(nic, v2p::PFSTS)?;
        self.read_mbx(nic, n)
    }

    /// A request that waits for the PF's one-word reply; returns word 0 without CTS.
    pub fn request(
        &mut self,
        nic: &mut Nic,
        words: &[u32],
        reply_len: usize,
    ) -> Result<u32, DrvError> {
        self.write_posted(nic, words)?;
        let r = self.read_posted(nic, reply_len)?;
        Ok(r[0])
    }

    /// e1000_reset_hw_vf: VTCTRL.RST, wait for RSTI/RSTD to go, VF_RESET, read MAC.
    pub fn reset_hw(&mut self, nic: &mut Nic) -> Result<MacAddr, DrvError> {
        nic.vf_ctrl_rst(self.vf);
        let mut timeout = 200;
        // check_for_rst succeeds while RSTI or RSTD is seen.
        while self.check_bit(nic, v2p::RSTD | v2p::RSTI) && timeout > 0 {
            timeout -= 1;
            nic.advance(5_000);
        }
        if timeout == 0 {
            return Err(DrvError::PfInReset);
        }
        self.timeout = POLLS;
        self.write_posted(nic, &[u32::from(msg::ID_VF_RESET)])?;
        nic.advance(10_000_000);
        let r = self.read_posted(nic, 3)?;
        if r[0] == u32::from(msg::ID_VF_RESET) | msg::ACK {
            let lo = r[1].to_le_bytes();
            let hi = r[2].to_le_bytes();
            self.perm_addr = MacAddr([lo[0], lo[1], lo[2], lo[3], hi[0], hi[1]]);
            self.addr = self.perm_addr;
            Ok(self.perm_addr)
        } else {
            Err(DrvError::NoMac)
        }
    }

    /// igbvf_probe after reset_hw: a NACKed reset means "pick a random MAC".
    pub fn probe(&mut self, nic: &mut Nic, random: MacAddr) -> Result<(), DrvError> {
        match self.reset_hw(nic) {
            Ok(_) => {}
            Err(DrvError::NoMac) => self.addr = random,
            Err(e) => return Err(e),
        }
        self.init_hw(nic)
    }

    /// e1000_init_hw_vf → e1000_rar_set_vf: register the MAC; a NACK reverts to perm_addr.
    pub fn init_hw(&mut self, nic: &mut Nic) -> Result<(), DrvError> {
        let (lo, hi) = mac_words(self.addr);
        let r = self.request(nic, &[u32::from(msg::ID_SET_MAC_ADDR), lo, hi], 3)?;
        if r & !msg::CTS == u32::from(msg::ID_SET_MAC_ADDR) | msg::NACK {
            self.addr = self.perm_addr;
        }
        Ok(())
    }

    /// e1000_update_mc_addr_list_vf: 16 words, posted write only.
    pub fn set_multicast(&mut self, nic: &mut Nic, hashes: &[u16]) -> Result<(), DrvError> {
        let cnt = hashes.len().min(30);
        let mut words = [0u32; MAILBOX_WORDS];
        words[0] = u32::from(msg::ID_SET_MULTICAST) | ((cnt as u32) << msg::INFO_SHIFT);
        for (i, h) in hashes.iter().take(cnt).enumerate() {
            words[1 + i / 2] |= u32::from(*h) << (16 * (i % 2));
        }
        self.write_posted(nic, &words)
    }

    /// e1000_set_vfta_vf: returns word 0 of the reply without CTS.
    pub fn set_vlan(&mut self, nic: &mut Nic, vid: u16, add: bool) -> Result<u32, DrvError> {
        let mut w0 = u32::from(msg::ID_SET_VLAN);
        if add {
            w0 |= 1 << msg::INFO_SHIFT;
        }
        Ok(self.request(nic, &[w0, u32::from(vid)], 2)? & !msg::CTS)
    }

    /// e1000_rlpml_set_vf: posted write only.
    pub fn set_lpe(&mut self, nic: &mut Nic, max: u32) -> Result<(), DrvError> {
        self.write_posted(nic, &[u32::from(msg::ID_SET_LPE), max])
    }

    /// e1000_check_for_link_vf, with STATUS.LU = 1: reads word 0 through the locked read path
    /// (which writes ACK) and wants CTS in it.
    pub fn link_up(&mut self, nic: &mut Nic) -> bool {
        match self.read_mbx(nic, 1) {
            Ok(w) => w[0] & msg::CTS != 0 && self.timeout != 0,
            Err(_) => false,
        }
    }
}

pub fn mac_words(mac: MacAddr) -> (u32, u32) {
    let b = mac.0;
    (
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        u32::from_le_bytes([b[4], b[5], 0, 0]),
    )
}

pub const RANDOM_MAC: MacAddr = MacAddr([0x5a, 0x11, 0x22, 0x33, 0x44, 0x01]);
pub const ADMIN_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x10]);
