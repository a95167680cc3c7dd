//! [`SoftVf`]: a Linux VF driver's register sequences against a VF of a NIC — igbvf on an
//! 82576 VF, ixgbevf on an 82599 VF. What the two drivers do alike (the mailbox's locking and
//! polling, the advanced descriptor rings, interrupt masking, the watchdog's shape) is here,
//! over a [`RegMap`] of the card's offsets; what each does its own way (probe, the messages it
//! sends, interrupt routing, the link check) is in `igbvf` and `ixgbevf`. The datapath
//! (transmit, clean, MSI-X handlers) is in `datapath`.

use mailbox::regs::{msg, v2p, MAILBOX_WORDS};
use vm_memory::{Bytes, GuestAddress};

use crate::function::GuestRam;

use crate::function::card_vf::Card;
use crate::function::desc::{DescBytes, RxReadDesc, DESC_LEN};
use crate::nic::VfHandle;

mod datapath;
mod igbvf;
mod ixgbevf;
mod regmap;

use regmap::qreg;
pub use regmap::RegMap;

/// Why a driver operation failed (igbvf's return codes and log lines).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DrvError {
    /// Could not take VFU.
    MailboxLock,
    /// PFACK / PFSTS never came (igbvf's `mbx->timeout` then disarms the mailbox).
    MailboxTimeout,
    /// RSTI/RSTD still set after 200 polls: "PF still in reset state".
    PfInReset,
    /// The VF_RESET reply was neither ACK nor NACK.
    MacInit,
    /// ixgbevf: the PF granted none of the mailbox API versions it asks for.
    ApiNegotiation,
    /// ixgbevf: the PF refused the frame size of a new MTU (SET_LPE NACKed: `-EINVAL`).
    MtuRefused,
    /// No room in the TX ring (`igbvf_maybe_stop_tx`).
    TxRingFull,
}

/// A frame igbvf's RX path handed to the stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RxFrame {
    pub data: Vec<u8>,
    /// The stripped VLAN tag (status VP).
    pub vlan: Option<u16>,
    /// Descriptors the frame used.
    pub descriptors: u32,
    /// igbvf_rx_checksum_adv would mark the skb CHECKSUM_UNNECESSARY (L4CS/UDPCS without
    /// IXSM or errors).
    pub checksum_unnecessary: bool,
}

/// What one run of [`SoftVf::watchdog`] found and did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WatchdogRun {
    /// The link as `igbvf_has_link` reports it, after a reset if one ran.
    pub link: bool,
    /// The carrier changed: `Some(true)` is igbvf's "Link is Up", `Some(false)` "Link is Down".
    pub carrier_change: Option<bool>,
    /// The link check failed and the reset task ran (`igbvf_reinit_locked`).
    pub reset: bool,
}

/// `igbvf_has_link` schedules the reset task on a link-check error only this long after the
/// last reset (10 s).
pub const RESET_THROTTLE_NS: u64 = 10_000_000_000;
/// The watchdog timer period of both drivers (2 s: igbvf's `watchdog_timer`, ixgbevf's
/// `service_timer`).
pub const WATCHDOG_PERIOD_NS: u64 = 2_000_000_000;

/// How [`SoftVf::xmit`] builds a packet's descriptors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XmitOpts {
    /// Hardware VLAN insertion (skb_vlan_tag_present): a context descriptor with the tag and
    /// VLE on the data descriptors.
    pub vlan: Option<u16>,
    /// Bytes per data descriptor (the skb's head and frags).
    pub frag: usize,
    /// RS on the EOP descriptor (igbvf always sets it; tests may clear it).
    pub rs: bool,
    /// Checksum offload as igbvf_tx_csum asks it: (MACLEN, IPLEN, L4 is TCP).
    pub csum: Option<(u8, u16, bool)>,
    /// TSO as igbvf_tso asks it: (MACLEN, IPLEN, L4LEN, MSS, IPv4).
    pub tso: Option<(u8, u16, u8, u16, bool)>,
}

impl Default for XmitOpts {
    fn default() -> Self {
        XmitOpts {
            vlan: None,
            frag: 2048,
            rs: true,
            csum: None,
            tso: None,
        }
    }
}

/// Which driver, ring sizes and buffer sizes of the software driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DriverConfig {
    /// The card whose VF driver runs: igbvf on the 82576, ixgbevf on the 82599.
    pub card: Card,
    /// Descriptors per ring (igbvf default 256; a multiple of 8).
    pub ring: u32,
    /// `adapter->rx_buffer_len`: 1522 for MTU 1500 (one-buffer mode); ≥ 2048 selects header
    /// split with a 128-byte header buffer and half-page (2 KiB) packet buffers.
    pub rx_buffer_len: u32,
    /// The MAC igbvf picks with `eth_hw_addr_random` when the PF assigns none.
    pub random_mac: [u8; 6],
    /// The VTEITR value written for the queue vectors (`igbvf_configure_msix`,
    /// `ixgbevf_write_eitr`). Linux igbvf starts at `IGBVF_START_ITR` (488, about 8000
    /// interrupts a second) and moves it with its traffic; 0 turns moderation off. Default 0: in-process runs move frames in no
    /// simulated time, and a held interrupt would wait for time that does not pass.
    pub itr: u32,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            card: Card::I82576,
            ring: 64,
            rx_buffer_len: 1522,
            itr: 0,
            random_mac: [0x02, 0x5A, 0x5A, 0x00, 0x00, 0x01],
        }
    }
}

const TX_SLOT: u64 = 2048;
const RX_SLOT: u64 = 2048;
const HDR_SLOT: u64 = 128;
const POLLS: u32 = 2000;
/// RXDCTL.ENABLE / TXDCTL.ENABLE: bit 25 on both cards.
const DCTL_ENABLE: u32 = 1 << 25;

/// The in-process VF driver. Keeps its own copy of the guest memory handle (the "CPU" side).
pub struct SoftVf {
    mem: GuestRam,
    cfg: DriverConfig,
    regs: RegMap,
    base: u64,
    // mailbox
    cache: u32,
    timeout: u32,
    /// ixgbevf: the mailbox API the PF granted (`hw->api_version`, an `ixgbe_pfvf_api_rev`).
    pub api: u32,
    pub perm_addr: [u8; 6],
    pub mac: [u8; 6],
    /// The netdev MTU (SET_LPE carries it plus the header, FCS and, from igbvf, a VLAN tag).
    pub mtu: u32,
    // rings
    tx_next_to_use: u32,
    tx_next_to_clean: u32,
    /// Per packet: (first descriptor, EOP descriptor).
    tx_pending: std::collections::VecDeque<(u32, u32)>,
    rx_next_to_use: u32,
    rx_next_to_clean: u32,
    rx_ps_hdr_size: u32,
    /// Pieces of a frame spanning descriptors (the driver carries the skb across them).
    rx_partial: Vec<u8>,
    rx_partial_descs: u32,
    // interrupts: the EIMS bit of each vector's job
    eims_tx: u32,
    eims_rx: u32,
    eims_other: u32,
    /// `hw->mac.get_link_status`.
    get_link_status: bool,
    /// Frames received by the RX handler.
    pub received: Vec<RxFrame>,
    /// TX descriptors cleaned by the TX handler.
    pub tx_cleaned: u32,
    /// Times the mailbox ("other") handler ran.
    pub other_irqs: u32,
    /// `netif_carrier_ok`: what the watchdog last made of the link. Off until the first
    /// watchdog run after open.
    pub carrier: bool,
    /// `adapter->last_reset`, in the caller's clock (ns): set by [`SoftVf::reinit`]; the
    /// caller sets it after probe, which has no clock.
    pub last_reset_ns: u64,
    /// Times the reset task ran.
    pub resets: u32,
    /// The netdev's multicast list, sent with SET_MULTICAST at open and whenever it changes
    /// (`igbvf_set_multi`, `ixgbevf_set_rx_mode`).
    pub mc_list: Vec<[u8; 6]>,
}

impl SoftVf {
    /// Bytes of guest memory the driver uses from its base, for `ring` descriptors.
    pub fn memory_needed(cfg: &DriverConfig) -> u64 {
        let r = u64::from(cfg.ring);
        0x2000 + r * (TX_SLOT + RX_SLOT + HDR_SLOT)
    }

    pub fn new(mem: GuestRam, base: u64, cfg: DriverConfig) -> SoftVf {
        SoftVf {
            mem,
            regs: RegMap::of(cfg.card),
            cfg,
            base,
            cache: 0,
            timeout: 0,
            api: 0,
            perm_addr: [0; 6],
            mac: [0; 6],
            mtu: 1500,
            tx_next_to_use: 0,
            tx_next_to_clean: 0,
            tx_pending: Default::default(),
            rx_next_to_use: 0,
            rx_next_to_clean: 0,
            rx_ps_hdr_size: 0,
            rx_partial: Vec::new(),
            rx_partial_descs: 0,
            eims_tx: 0,
            eims_rx: 0,
            eims_other: 0,
            get_link_status: true,
            received: Vec::new(),
            tx_cleaned: 0,
            other_irqs: 0,
            carrier: false,
            last_reset_ns: 0,
            resets: 0,
            mc_list: Vec::new(),
        }
    }

    /// The driver's name as the kernel logs it.
    pub fn name(&self) -> &'static str {
        match self.cfg.card {
            Card::I82576 => "igbvf",
            Card::X82599 => "ixgbevf",
        }
    }

    fn ixgbevf(&self) -> bool {
        self.cfg.card == Card::X82599
    }

    // ----- layout -----

    pub fn tx_ring_addr(&self) -> u64 {
        self.base
    }

    pub fn rx_ring_addr(&self) -> u64 {
        self.base + 0x1000
    }

    fn tx_buf(&self, i: u32) -> u64 {
        self.base + 0x2000 + u64::from(i) * TX_SLOT
    }

    pub fn rx_buf(&self, i: u32) -> u64 {
        self.base + 0x2000 + u64::from(self.cfg.ring) * TX_SLOT + u64::from(i) * RX_SLOT
    }

    pub fn rx_hdr_buf(&self, i: u32) -> u64 {
        self.base
            + 0x2000
            + u64::from(self.cfg.ring) * (TX_SLOT + RX_SLOT)
            + u64::from(i) * HDR_SLOT
    }

    pub fn tx_desc_addr(&self, i: u32) -> u64 {
        self.tx_ring_addr() + u64::from(i) * DESC_LEN as u64
    }

    pub fn rx_desc_addr(&self, i: u32) -> u64 {
        self.rx_ring_addr() + u64::from(i) * DESC_LEN as u64
    }

    fn read_desc(&self, at: u64) -> DescBytes {
        let mut b = [0u8; DESC_LEN];
        self.mem
            .read_slice(&mut b, GuestAddress(at))
            .expect("driver ring inside its memory");
        b
    }

    fn write_desc(&self, at: u64, b: &DescBytes) {
        self.mem
            .write_slice(b, GuestAddress(at))
            .expect("driver ring inside its memory");
    }

    // ----- registers -----

    pub fn rd(&self, vf: &VfHandle, off: u64) -> u32 {
        let mut b = [0u8; 4];
        vf.region_read(0, off, &mut b).expect("4-byte BAR0 read");
        u32::from_le_bytes(b)
    }

    pub fn wr(&self, vf: &VfHandle, off: u64, v: u32) {
        vf.region_write(0, off, &v.to_le_bytes())
            .expect("4-byte BAR0 write");
    }

    /// The register map of the card the driver runs on.
    pub fn regs(&self) -> &RegMap {
        &self.regs
    }

    // ----- mailbox (igbvf `mbx.c`, ixgbevf `mbx.c`'s legacy operations) -----
    //
    // The 82599's VFMAILBOX bits are the 82576's V2PMAILBOX bits, and ixgbevf below API 1.5
    // polls and locks exactly as igbvf does.

    fn read_v2p(&mut self, vf: &VfHandle) -> u32 {
        let v = self.rd(vf, self.regs.mailbox) | self.cache;
        self.cache |= v & v2p::R2C;
        v
    }

    fn check_bit(&mut self, vf: &VfHandle, mask: u32) -> bool {
        let v = self.read_v2p(vf);
        self.cache &= !mask;
        v & mask != 0
    }

    fn obtain_lock(&mut self, vf: &VfHandle) -> Result<(), DrvError> {
        self.wr(vf, self.regs.mailbox, v2p::VFU);
        if self.read_v2p(vf) & v2p::VFU != 0 {
            Ok(())
        } else {
            Err(DrvError::MailboxLock)
        }
    }

    /// write_posted: take the lock, write, post, then poll for PFACK.
    pub fn write_posted(&mut self, vf: &VfHandle, words: &[u32]) -> Result<(), DrvError> {
        if self.timeout == 0 {
            return Err(DrvError::MailboxTimeout);
        }
        self.obtain_lock(vf)?;
        // Flush stale PFSTS/PFACK (e1000_check_for_msg_vf / e1000_check_for_ack_vf).
        self.check_bit(vf, v2p::PFSTS);
        self.check_bit(vf, v2p::PFACK);
        for (i, w) in words.iter().take(MAILBOX_WORDS).enumerate() {
            self.wr(vf, self.regs.mbmem + 4 * i as u64, *w);
        }
        self.wr(vf, self.regs.mailbox, v2p::REQ);
        self.poll(vf, v2p::PFACK)
    }

    /// read_posted: poll for PFSTS, then lock, read, ACK.
    pub fn read_posted(&mut self, vf: &VfHandle, n: usize) -> Result<Vec<u32>, DrvError> {
        if self.timeout == 0 {
            return Err(DrvError::MailboxTimeout);
        }
        self.poll(vf, v2p::PFSTS)?;
        self.read_mbx(vf, n)
    }

    /// A request and its reply of `n` words (ixgbevf's `ixgbevf_write_msg_read_ack`).
    fn exchange(&mut self, vf: &VfHandle, words: &[u32], n: usize) -> Result<Vec<u32>, DrvError> {
        self.write_posted(vf, words)?;
        self.read_posted(vf, n)
    }

    fn read_mbx(&mut self, vf: &VfHandle, n: usize) -> Result<Vec<u32>, DrvError> {
        self.obtain_lock(vf)?;
        let words = (0..n.min(MAILBOX_WORDS))
            .map(|i| self.rd(vf, self.regs.mbmem + 4 * i as u64))
            .collect();
        self.wr(vf, self.regs.mailbox, v2p::ACK);
        Ok(words)
    }

    fn poll(&mut self, vf: &VfHandle, mask: u32) -> Result<(), DrvError> {
        let mut countdown = self.timeout;
        while countdown > 0 && !self.check_bit(vf, mask) {
            countdown -= 1;
        }
        if countdown == 0 {
            self.timeout = 0;
            return Err(DrvError::MailboxTimeout);
        }
        Ok(())
    }

    /// The reset both drivers start with (`e1000_reset_hw_vf`, `ixgbevf_reset_hw_vf`): CTRL.RST,
    /// then poll the mailbox for the reset indication (RSTD/RSTI), at most 200 times; the
    /// mailbox is armed again.
    fn reset_and_wait(&mut self, vf: &VfHandle) -> Result<(), DrvError> {
        let ctrl = self.rd(vf, self.regs.ctrl);
        let rst = crate::function::i82576::regs::ctrl::RST;
        debug_assert_eq!(rst, crate::function::x82599::regs::ctrl::RST);
        self.wr(vf, self.regs.ctrl, ctrl | rst);
        let mut timeout = 200;
        while timeout > 0 && self.check_bit(vf, v2p::RSTD | v2p::RSTI) {
            timeout -= 1;
        }
        if timeout == 0 {
            return Err(DrvError::PfInReset);
        }
        self.timeout = POLLS;
        Ok(())
    }

    /// The VF_RESET reply's first words: the permanent MAC on ACK, zeros on NACK.
    fn take_reset_reply(&mut self, r: &[u32]) -> Result<(), DrvError> {
        let id = u32::from(msg::ID_VF_RESET);
        let w0 = r.first().copied().unwrap_or(0) & !msg::CTS;
        if w0 == id | msg::ACK {
            let a = r[1].to_le_bytes();
            let b = r[2].to_le_bytes();
            self.perm_addr = [a[0], a[1], a[2], a[3], b[0], b[1]];
        } else if w0 == id | msg::NACK {
            self.perm_addr = [0; 6];
        } else {
            return Err(DrvError::MacInit);
        }
        Ok(())
    }

    /// The driver's probe: bus set-up, reset handshake, MAC, (ixgbevf) API negotiation and
    /// queues, then the MAC registered. Returns the MAC the netdev gets.
    pub fn probe(&mut self, vf: &VfHandle) -> Result<[u8; 6], DrvError> {
        match self.cfg.card {
            Card::I82576 => self.igbvf_probe(vf),
            Card::X82599 => self.ixgbevf_probe(vf),
        }
    }

    /// The bus part of the probe: `pci_enable_device_mem` + `pci_set_master` (memory space
    /// and bus mastering in the command register) and `pci_enable_msix_range` (MSI-X Enable
    /// in the capability at 0x70 on both cards' VFs).
    pub fn probe_bus(&mut self, vf: &VfHandle) {
        vf.config_write(0x04, &0x0006u16.to_le_bytes());
        let mut mc = [0u8; 2];
        vf.config_read(0x72, &mut mc);
        let mc = u16::from_le_bytes(mc) | 0x8000;
        vf.config_write(0x72, &mc.to_le_bytes());
    }

    /// Ring and buffer sizes, and the MAC picked when the PF assigns none.
    pub fn config(&self) -> &DriverConfig {
        &self.cfg
    }

    /// SET_MAC_ADDR (`e1000_rar_set_vf`, `ixgbevf_set_rar_vf`); on NACK the VF keeps its
    /// permanent MAC.
    pub fn set_mac(&mut self, vf: &VfHandle, mac: [u8; 6]) -> Result<bool, DrvError> {
        let w1 = u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]);
        let w2 = u32::from_le_bytes([mac[4], mac[5], 0, 0]);
        let r = self.exchange(vf, &[u32::from(msg::ID_SET_MAC_ADDR), w1, w2], 3)?;
        let acked = r[0] & msg::NACK == 0;
        self.mac = if acked { mac } else { self.perm_addr };
        Ok(acked)
    }

    /// SET_VLAN (`igbvf_vlan_rx_add_vid`, `ixgbevf_vlan_rx_add_vid` and their kill_vid):
    /// `Ok(false)` when the PF refused (NACK bit).
    pub fn set_vlan(&mut self, vf: &VfHandle, vid: u16, add: bool) -> Result<bool, DrvError> {
        let mut w0 = u32::from(msg::ID_SET_VLAN);
        if add {
            w0 |= 1 << msg::INFO_SHIFT;
        }
        let r = self.exchange(vf, &[w0, u32::from(vid)], 2)?;
        // igbvf compares the reply with exactly SET_VLAN | NACK, which misses a NACK of an
        // "add" (the reply keeps MSGINFO); report what the PF said.
        Ok(r[0] & msg::NACK == 0)
    }

    /// SET_MULTICAST (`e1000_update_mc_addr_list_vf`, `ixgbevf_update_mc_addr_list_vf`): up
    /// to 30 12-bit hashes (multicast filter type 0 on both cards: address bits 47:36), 16
    /// words.
    pub fn set_multicast(&mut self, vf: &VfHandle, groups: &[[u8; 6]]) -> Result<(), DrvError> {
        let cnt = groups.len().min(30);
        let mut words = [0u32; MAILBOX_WORDS];
        words[0] = u32::from(msg::ID_SET_MULTICAST) | ((cnt as u32) << msg::INFO_SHIFT);
        for (i, g) in groups.iter().take(cnt).enumerate() {
            let h = 0xFFF & ((u32::from(g[4]) >> 4) | (u32::from(g[5]) << 4));
            words[1 + i / 2] |= h << (16 * (i % 2));
        }
        let _ = self.exchange(vf, &words, 1)?;
        Ok(())
    }

    /// The driver's down: RX and TX disabled, interrupts masked, the VF reset again (its
    /// reset handshake and the MAC registered), the rings cleared (head and tail 0).
    pub fn down(&mut self, vf: &VfHandle) -> Result<(), DrvError> {
        for q in [self.regs.rx, self.regs.tx] {
            let dctl = self.rd(vf, q + qreg::DCTL);
            self.wr(vf, q + qreg::DCTL, dctl & !DCTL_ENABLE);
        }
        let _ = self.rd(vf, self.regs.status);
        self.irq_disable(vf);
        match self.cfg.card {
            Card::I82576 => self.igbvf_reset(vf)?,
            Card::X82599 => self.ixgbevf_reset(vf)?,
        }
        for q in [self.regs.tx, self.regs.rx] {
            self.wr(vf, q + qreg::DH, 0);
            self.wr(vf, q + qreg::DT, 0);
        }
        self.tx_pending.clear();
        self.tx_next_to_use = 0;
        self.tx_next_to_clean = 0;
        self.rx_next_to_use = 0;
        self.rx_next_to_clean = 0;
        self.rx_partial.clear();
        self.rx_partial_descs = 0;
        Ok(())
    }

    /// The MTU changes (`igbvf_change_mtu`, `ixgbevf_change_mtu`): down, new buffer sizes,
    /// open again.
    pub fn change_mtu(&mut self, vf: &VfHandle, mtu: u32) -> Result<(), DrvError> {
        if self.ixgbevf() {
            return self.ixgbevf_change_mtu(vf, mtu);
        }
        self.mtu = mtu;
        self.igbvf_buffer_len(mtu);
        self.down(vf)?;
        self.open(vf)
    }

    // ----- interrupts -----

    pub fn irq_disable(&self, vf: &VfHandle) {
        self.wr(vf, self.regs.eimc, !0);
        self.wr(vf, self.regs.eiac, 0);
    }

    /// Routes the queues and the mailbox to their vectors and sets moderation.
    pub fn configure_msix(&mut self, vf: &VfHandle) {
        match self.cfg.card {
            Card::I82576 => self.igbvf_configure_msix(vf),
            Card::X82599 => self.ixgbevf_configure_msix(vf),
        }
    }

    pub fn eims_enable_mask(&self) -> u32 {
        self.eims_tx | self.eims_rx | self.eims_other
    }

    /// `igbvf_irq_enable`, `ixgbevf_irq_enable`: auto-clear, auto-mask, unmask.
    pub fn irq_enable(&self, vf: &VfHandle) {
        let m = self.eims_enable_mask();
        self.wr(vf, self.regs.eiac, m);
        self.wr(vf, self.regs.eiam, m);
        self.wr(vf, self.regs.eims, m);
    }

    // ----- rings -----

    /// The TX ring (`igbvf_configure_tx`, `ixgbevf_configure_tx_ring`).
    pub fn configure_tx(&mut self, vf: &VfHandle) {
        let tx = self.regs.tx;
        let txdctl = self.rd(vf, tx + qreg::DCTL);
        if self.ixgbevf() {
            // Stop the queue with SWFLSH alone.
            self.wr(
                vf,
                tx + qreg::DCTL,
                crate::function::x82599::regs::txdctl::SWFLSH,
            );
        } else {
            self.wr(vf, tx + qreg::DCTL, txdctl & !DCTL_ENABLE);
        }
        let _ = self.rd(vf, self.regs.status);
        let tdba = self.tx_ring_addr();
        self.wr(vf, tx + qreg::DBAL, tdba as u32);
        self.wr(vf, tx + qreg::DBAH, (tdba >> 32) as u32);
        self.wr(vf, tx + qreg::DLEN, self.cfg.ring * DESC_LEN as u32);
        if self.ixgbevf() {
            // Head write-back off.
            use crate::function::x82599::regs::txq;
            self.wr(vf, tx + txq::TDWBAL, 0);
            self.wr(vf, tx + txq::TDWBAH, 0);
        }
        self.wr(vf, tx + qreg::DH, 0);
        self.wr(vf, tx + qreg::DT, 0);
        let dca = self.rd(vf, tx + self.tx_dca());
        self.wr(vf, tx + self.tx_dca(), dca & !(1 << 11));
        let enable = if self.ixgbevf() {
            // WTHRESH 8, HTHRESH 1, PTHRESH 32; ixgbevf then polls ENABLE.
            (8 << 16) | (1 << 8) | 32 | DCTL_ENABLE
        } else {
            txdctl | DCTL_ENABLE
        };
        self.wr(vf, tx + qreg::DCTL, enable);
        self.tx_next_to_use = 0;
        self.tx_next_to_clean = 0;
        self.tx_pending.clear();
    }

    /// The TX queue's DCA control register inside its block.
    fn tx_dca(&self) -> u64 {
        match self.cfg.card {
            Card::I82576 => crate::function::i82576::regs::q::DCA_CTL,
            Card::X82599 => crate::function::x82599::regs::txq::DCA_TXCTRL,
        }
    }

    /// SRRCTL (`igbvf_setup_srrctl`, `ixgbevf_configure_srrctl`).
    pub fn setup_srrctl(&mut self, vf: &VfHandle) {
        let s = match self.cfg.card {
            Card::I82576 => self.igbvf_srrctl(),
            Card::X82599 => self.ixgbevf_srrctl(vf),
        };
        self.wr(vf, self.regs.rx + self.regs.srrctl, s);
    }

    /// The RX ring's registers; `lpe` sends the driver's SET_LPE where it does
    /// (`igbvf_configure_rx`, `ixgbevf_configure_rx`).
    fn configure_rx_ring(&mut self, vf: &VfHandle, lpe: bool) -> Result<(), DrvError> {
        let rx = self.regs.rx;
        if lpe && self.ixgbevf() {
            // ixgbevf_set_rlpml before the rings: MTU + header + FCS, the reply read.
            let _ = self.exchange(vf, &[u32::from(msg::ID_SET_LPE), self.mtu + 14 + 4], 2)?;
        }
        let rxdctl = self.rd(vf, rx + qreg::DCTL);
        self.wr(vf, rx + qreg::DCTL, rxdctl & !DCTL_ENABLE);
        let _ = self.rd(vf, self.regs.status);
        let rdba = self.rx_ring_addr();
        self.wr(vf, rx + qreg::DBAL, rdba as u32);
        self.wr(vf, rx + qreg::DBAH, (rdba >> 32) as u32);
        self.wr(vf, rx + qreg::DLEN, self.cfg.ring * DESC_LEN as u32);
        self.wr(vf, rx + qreg::DH, 0);
        self.wr(vf, rx + qreg::DT, 0);
        let rxdctl = if self.ixgbevf() {
            self.setup_srrctl(vf);
            // ENABLE and VME: the VF strips VLAN tags (`ixgbevf_configure_rx_ring`).
            rxdctl | DCTL_ENABLE | crate::function::x82599::regs::rxdctl::VME
        } else {
            ((rxdctl | DCTL_ENABLE) & 0xFFF0_0000) | 16 | (8 << 8) | (4 << 16)
        };
        if lpe && !self.ixgbevf() {
            // e1000_rlpml_set_vf: max_frame_size + VLAN_TAG_SIZE; igbvf does not read the
            // reply (the next posted write flushes PFSTS).
            self.write_posted(vf, &[u32::from(msg::ID_SET_LPE), self.mtu + 14 + 4 + 4])?;
        }
        self.wr(vf, rx + qreg::DCTL, rxdctl);
        self.rx_next_to_use = 0;
        self.rx_next_to_clean = 0;
        self.rx_partial.clear();
        self.rx_partial_descs = 0;
        Ok(())
    }

    fn rx_desc_unused(&self) -> u32 {
        let n = self.cfg.ring;
        if self.rx_next_to_clean > self.rx_next_to_use {
            self.rx_next_to_clean - self.rx_next_to_use - 1
        } else {
            n + self.rx_next_to_clean - self.rx_next_to_use - 1
        }
    }

    /// Refreshes `count` RX descriptors and writes RDT = the last one
    /// (`igbvf_alloc_rx_buffers`, `ixgbevf_alloc_rx_buffers`).
    pub fn alloc_rx_buffers(&mut self, vf: &VfHandle, count: u32) {
        let n = self.cfg.ring;
        let mut i = self.rx_next_to_use;
        for _ in 0..count {
            let hdr_addr = if self.rx_ps_hdr_size > 0 {
                self.rx_hdr_buf(i)
            } else {
                0
            };
            let d = RxReadDesc {
                pkt_addr: self.rx_buf(i),
                hdr_addr,
            };
            let mut b = [0u8; DESC_LEN];
            d.emit(&mut b);
            self.write_desc(self.rx_desc_addr(i), &b);
            i = (i + 1) % n;
        }
        if self.rx_next_to_use != i {
            self.rx_next_to_use = i;
            let tail = if i == 0 { n - 1 } else { i - 1 };
            self.wr(vf, self.regs.rx + qreg::DT, tail);
        }
    }

    /// The driver's open: the messages it sends on the way (multicast list; ixgbevf also its
    /// xcast mode and unicast list) and the rings, interrupts routed and enabled.
    pub fn open(&mut self, vf: &VfHandle) -> Result<(), DrvError> {
        let groups = self.mc_list.clone();
        if self.ixgbevf() {
            // ixgbevf_configure: ixgbevf_configure_dcb's GET_QUEUES, then the rx mode.
            self.ixgbevf_get_queues(vf)?;
            self.ixgbevf_set_rx_mode(vf, &groups)?;
        } else {
            self.set_multicast(vf, &groups)?;
        }
        self.configure_tx(vf);
        if !self.ixgbevf() {
            self.setup_srrctl(vf);
        }
        self.configure_rx_ring(vf, true)?;
        self.start(vf, true)
    }

    /// The rings and interrupts of [`SoftVf::open`] without its mailbox messages: for an
    /// endpoint whose mailbox conversation is scripted by its caller.
    pub fn open_rings(&mut self, vf: &VfHandle) {
        self.configure_tx(vf);
        if !self.ixgbevf() {
            self.setup_srrctl(vf);
        }
        // Without SET_LPE and the MAC the ring setup sends nothing on the mailbox, so it
        // cannot fail.
        let _ = self.configure_rx_ring(vf, false);
        let _ = self.start(vf, false);
    }

    /// Posts every RX buffer, routes the interrupts, (ixgbevf's `ixgbevf_up_complete`, with
    /// `register_mac`) registers the MAC, then clears and enables the interrupts.
    fn start(&mut self, vf: &VfHandle, register_mac: bool) -> Result<(), DrvError> {
        let unused = self.rx_desc_unused();
        self.alloc_rx_buffers(vf, unused);
        self.configure_msix(vf);
        if register_mac && self.ixgbevf() {
            let mac = self.mac;
            self.set_mac(vf, mac)?;
        }
        let _ = self.rd(vf, self.regs.eicr);
        self.irq_enable(vf);
        self.get_link_status = true;
        Ok(())
    }

    /// The link as the watchdog checks it.
    pub fn check_link(&mut self, vf: &VfHandle) -> bool {
        self.check_for_link(vf).0
    }

    /// `e1000_check_for_link_vf`, `ixgbevf_check_mac_link_vf` with their return code: (link
    /// up, error). The error asks for a reset: the PF's last message is a NACK without CTS
    /// (it no longer counts the VF as clear to send), or the mailbox timed out while the PF
    /// is talking again.
    pub fn check_for_link(&mut self, vf: &VfHandle) -> (bool, bool) {
        // A pending reset indication or a disarmed mailbox forces a re-check.
        let rst = self.check_bit(vf, v2p::RSTD | v2p::RSTI);
        if rst || self.timeout == 0 {
            self.get_link_status = true;
        }
        if !self.get_link_status {
            return (true, false);
        }
        let up = match self.cfg.card {
            Card::I82576 => {
                use crate::function::i82576::regs as r;
                self.rd(vf, r::VTSTATUS) & r::status::LU != 0
            }
            Card::X82599 => {
                use crate::function::x82599::regs as r;
                self.rd(vf, r::VFLINKS) & r::links::UP != 0
            }
        };
        if !up {
            return (false, false);
        }
        // A failed read may be a collision with the PF: no error, try again next time.
        let Ok(w) = self.read_mbx(vf, 1) else {
            return (false, false);
        };
        if w[0] & msg::CTS == 0 {
            return (false, w[0] & msg::NACK != 0);
        }
        if self.timeout == 0 {
            return (false, true);
        }
        self.get_link_status = false;
        (true, false)
    }

    /// The watchdog at `now_ns` (the caller's clock: igbvf's `igbvf_watchdog_task`, ixgbevf's
    /// `ixgbevf_watchdog_subtask` + `ixgbevf_reset_subtask`): the link check, whose error
    /// runs the reset task once [`RESET_THROTTLE_NS`] have passed since the last reset (here
    /// at once: [`SoftVf::reinit`], after which the watchdog looks again), then the carrier
    /// follows the link ("Link is Up" / "Link is Down").
    pub fn watchdog(&mut self, vf: &VfHandle, now_ns: u64) -> Result<WatchdogRun, DrvError> {
        let (mut link, error) = self.check_for_link(vf);
        let mut run = WatchdogRun::default();
        if error && now_ns > self.last_reset_ns.saturating_add(RESET_THROTTLE_NS) {
            self.reinit(vf, now_ns)?;
            run.reset = true;
            link = self.check_for_link(vf).0;
        }
        run.link = link;
        if self.carrier != link {
            self.carrier = link;
            run.carrier_change = Some(link);
        }
        Ok(run)
    }

    /// The reset task (`igbvf_reinit_locked`, `ixgbevf_reinit_locked`): [`SoftVf::down`] (the
    /// reset handshake again), then [`SoftVf::open`]'s up.
    pub fn reinit(&mut self, vf: &VfHandle, now_ns: u64) -> Result<(), DrvError> {
        self.carrier = false;
        self.resets += 1;
        self.down(vf)?;
        self.last_reset_ns = now_ns;
        self.open(vf)
    }

    /// The netdev's multicast list changed (`ip maddr add`, a socket joining a group): the
    /// driver's rx-mode handler sends the whole list again with SET_MULTICAST (the PF
    /// replaces the VF's table with it).
    pub fn set_mc_list(&mut self, vf: &VfHandle, groups: Vec<[u8; 6]>) -> Result<(), DrvError> {
        self.mc_list = groups;
        let groups = self.mc_list.clone();
        if self.ixgbevf() {
            self.ixgbevf_set_rx_mode(vf, &groups)
        } else {
            self.set_multicast(vf, &groups)
        }
    }
}
