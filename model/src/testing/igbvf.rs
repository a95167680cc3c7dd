//! [`SoftIgbvf`]: Linux igbvf's register sequences against a VF of a NIC: mailbox, probe,
//! interrupts, bring-up. The datapath (transmit, clean, MSI-X handlers) is in `datapath`.

use mailbox::regs::{msg, v2p, MAILBOX_WORDS};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::function::desc::{DescBytes, RxReadDesc, DESC_LEN};
use crate::function::i82576::regs::{self, dctl, q, srrctl};
use crate::nic::VfHandle;

mod datapath;

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

/// What one run of [`SoftIgbvf::watchdog`] found and did.
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
/// igbvf's watchdog timer period (2 s).
pub const WATCHDOG_PERIOD_NS: u64 = 2_000_000_000;

/// How [`SoftIgbvf::xmit`] builds a packet's descriptors.
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

/// Ring sizes and buffer sizes of the software driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DriverConfig {
    /// Descriptors per ring (igbvf default 256; a multiple of 8).
    pub ring: u32,
    /// `adapter->rx_buffer_len`: 1522 for MTU 1500 (one-buffer mode); ≥ 2048 selects header
    /// split with a 128-byte header buffer and half-page (2 KiB) packet buffers.
    pub rx_buffer_len: u32,
    /// The MAC igbvf picks with `eth_hw_addr_random` when the PF assigns none.
    pub random_mac: [u8; 6],
    /// The VTEITR value written for the TX and RX vectors (`igbvf_configure_msix`). Linux
    /// igbvf starts at `IGBVF_START_ITR` (488, about 8000 interrupts a second) and moves it
    /// with its traffic; 0 turns moderation off. Default 0: in-process runs move frames in no
    /// simulated time, and a held interrupt would wait for time that does not pass.
    pub itr: u32,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            ring: 64,
            rx_buffer_len: 1522,
            itr: 0,
            random_mac: [0x02, 0x5A, 0x5A, 0x00, 0x00, 0x01],
        }
    }
}

const IVAR_VALID: u32 = 0x80;
const TX_SLOT: u64 = 2048;
const RX_SLOT: u64 = 2048;
const HDR_SLOT: u64 = 128;
const POLLS: u32 = 2000;

/// The in-process igbvf. Keeps its own copy of the guest memory handle (the "CPU" side).
pub struct SoftIgbvf {
    mem: GuestMemoryMmap,
    cfg: DriverConfig,
    base: u64,
    // mailbox
    cache: u32,
    timeout: u32,
    pub perm_addr: [u8; 6],
    pub mac: [u8; 6],
    /// The netdev MTU (SET_LPE carries MTU + 14 + 4 + 4).
    pub mtu: u32,
    // rings
    tx_next_to_use: u32,
    tx_next_to_clean: u32,
    /// Per packet: (first descriptor, EOP descriptor).
    tx_pending: std::collections::VecDeque<(u32, u32)>,
    rx_next_to_use: u32,
    rx_next_to_clean: u32,
    rx_ps_hdr_size: u32,
    /// Pieces of a frame spanning descriptors (igbvf carries the skb across them).
    rx_partial: Vec<u8>,
    rx_partial_descs: u32,
    // interrupts
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
    /// `adapter->last_reset`, in the caller's clock (ns): set by [`SoftIgbvf::reinit`]; the
    /// caller sets it after probe, which has no clock.
    pub last_reset_ns: u64,
    /// Times the reset task ran.
    pub resets: u32,
    /// The netdev's multicast list, sent with SET_MULTICAST at open and whenever it changes
    /// (`igbvf_set_multi`).
    pub mc_list: Vec<[u8; 6]>,
}

impl SoftIgbvf {
    /// Bytes of guest memory the driver uses from its base, for `ring` descriptors.
    pub fn memory_needed(cfg: &DriverConfig) -> u64 {
        let r = u64::from(cfg.ring);
        0x2000 + r * (TX_SLOT + RX_SLOT + HDR_SLOT)
    }

    pub fn new(mem: GuestMemoryMmap, base: u64, cfg: DriverConfig) -> SoftIgbvf {
        SoftIgbvf {
            mem,
            cfg,
            base,
            cache: 0,
            timeout: 0,
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

    // ----- mailbox (mbx.c) -----

    fn read_v2p(&mut self, vf: &VfHandle) -> u32 {
        let v = self.rd(vf, regs::V2PMAILBOX) | self.cache;
        self.cache |= v & v2p::R2C;
        v
    }

    fn check_bit(&mut self, vf: &VfHandle, mask: u32) -> bool {
        let v = self.read_v2p(vf);
        self.cache &= !mask;
        v & mask != 0
    }

    fn obtain_lock(&mut self, vf: &VfHandle) -> Result<(), DrvError> {
        self.wr(vf, regs::V2PMAILBOX, v2p::VFU);
        if self.read_v2p(vf) & v2p::VFU != 0 {
            Ok(())
        } else {
            Err(DrvError::MailboxLock)
        }
    }

    /// e1000_write_posted_mbx: write, then poll for PFACK.
    pub fn write_posted(&mut self, vf: &VfHandle, words: &[u32]) -> Result<(), DrvError> {
        if self.timeout == 0 {
            return Err(DrvError::MailboxTimeout);
        }
        self.obtain_lock(vf)?;
        // Flush stale PFSTS/PFACK (e1000_check_for_msg_vf / e1000_check_for_ack_vf).
        self.check_bit(vf, v2p::PFSTS);
        self.check_bit(vf, v2p::PFACK);
        for (i, w) in words.iter().take(MAILBOX_WORDS).enumerate() {
            self.wr(vf, regs::VMBMEM + 4 * i as u64, *w);
        }
        self.wr(vf, regs::V2PMAILBOX, v2p::REQ);
        self.poll(vf, v2p::PFACK)
    }

    /// e1000_read_posted_mbx: poll for PFSTS, then lock, read, ACK.
    pub fn read_posted(&mut self, vf: &VfHandle, n: usize) -> Result<Vec<u32>, DrvError> {
        if self.timeout == 0 {
            return Err(DrvError::MailboxTimeout);
        }
        self.poll(vf, v2p::PFSTS)?;
        self.read_mbx(vf, n)
    }

    fn read_mbx(&mut self, vf: &VfHandle, n: usize) -> Result<Vec<u32>, DrvError> {
        self.obtain_lock(vf)?;
        let words = (0..n.min(MAILBOX_WORDS))
            .map(|i| self.rd(vf, regs::VMBMEM + 4 * i as u64))
            .collect();
        self.wr(vf, regs::V2PMAILBOX, v2p::ACK);
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

    // ----- probe (vf.c) -----

    /// e1000_reset_hw_vf: VTCTRL.RST, wait for RSTI/RSTD to clear, VF_RESET, read the MAC.
    pub fn reset_hw(&mut self, vf: &VfHandle) -> Result<(), DrvError> {
        let ctrl = self.rd(vf, regs::VTCTRL);
        self.wr(vf, regs::VTCTRL, ctrl | regs::ctrl::RST);
        let mut timeout = 200;
        while timeout > 0 && self.check_bit(vf, v2p::RSTD | v2p::RSTI) {
            timeout -= 1;
        }
        if timeout == 0 {
            return Err(DrvError::PfInReset);
        }
        self.timeout = POLLS;
        self.write_posted(vf, &[u32::from(msg::ID_VF_RESET)])?;
        let r = self.read_posted(vf, 3)?;
        let id = u32::from(msg::ID_VF_RESET);
        if r[0] == id | msg::ACK {
            let a = r[1].to_le_bytes();
            let b = r[2].to_le_bytes();
            self.perm_addr = [a[0], a[1], a[2], a[3], b[0], b[1]];
        } else if r[0] == id | msg::NACK {
            self.perm_addr = [0; 6];
        } else {
            return Err(DrvError::MacInit);
        }
        Ok(())
    }

    /// e1000_rar_set_vf: SET_MAC_ADDR; on NACK the VF keeps its permanent MAC.
    pub fn set_mac(&mut self, vf: &VfHandle, mac: [u8; 6]) -> Result<bool, DrvError> {
        let w1 = u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]);
        let w2 = u32::from_le_bytes([mac[4], mac[5], 0, 0]);
        self.write_posted(vf, &[u32::from(msg::ID_SET_MAC_ADDR), w1, w2])?;
        let r = self.read_posted(vf, 3)?;
        let acked = r[0] & msg::NACK == 0;
        self.mac = if acked { mac } else { self.perm_addr };
        Ok(acked)
    }

    /// igbvf_probe as far as the device is concerned: enable memory + bus mastering and
    /// MSI-X in config space, `igbvf_irq_disable`, `reset_hw`, `read_mac_addr` (a random MAC
    /// when the PF assigned none), then `igbvf_reset` (`reset_hw` + `init_hw`: SET_MAC_ADDR).
    /// Returns the MAC the netdev gets.
    pub fn probe(&mut self, vf: &VfHandle) -> Result<[u8; 6], DrvError> {
        self.probe_bus(vf);
        self.irq_disable(vf);
        self.reset_hw(vf)?;
        self.mac = self.perm_addr;
        if self.mac == [0; 6] {
            // "MAC address not assigned by administrator." → eth_hw_addr_random.
            self.mac = self.cfg.random_mac;
        }
        // igbvf_reset: reset_hw again, then init_hw (rar_set with mac.addr).
        self.reset_hw(vf)?;
        let want = self.mac;
        self.set_mac(vf, want)?;
        if self.mac == [0; 6] {
            self.mac = want;
        }
        Ok(self.mac)
    }

    /// The bus part of igbvf_probe: `pci_enable_device_mem` + `pci_set_master` (memory space
    /// and bus mastering in the command register) and `pci_enable_msix_range(3, 3)` (MSI-X
    /// Enable in the capability at 0x70).
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

    /// e1000_set_vfta_vf (igbvf_vlan_rx_add_vid / kill_vid): SET_VLAN, reply read; `Ok(false)`
    /// when the PF refused (NACK bit).
    pub fn set_vlan(&mut self, vf: &VfHandle, vid: u16, add: bool) -> Result<bool, DrvError> {
        let mut w0 = u32::from(msg::ID_SET_VLAN);
        if add {
            w0 |= 1 << msg::INFO_SHIFT;
        }
        self.write_posted(vf, &[w0, u32::from(vid)])?;
        let r = self.read_posted(vf, 2)?;
        // igbvf compares the reply with exactly SET_VLAN | NACK, which misses a NACK of an
        // "add" (the reply keeps MSGINFO); report what the PF said.
        Ok(r[0] & msg::NACK == 0)
    }

    /// e1000_update_mc_addr_list_vf (igbvf_set_multi): up to 30 12-bit hashes, 16 words.
    pub fn set_multicast(&mut self, vf: &VfHandle, groups: &[[u8; 6]]) -> Result<(), DrvError> {
        let cnt = groups.len().min(30);
        let mut words = [0u32; MAILBOX_WORDS];
        words[0] = u32::from(msg::ID_SET_MULTICAST) | ((cnt as u32) << msg::INFO_SHIFT);
        for (i, g) in groups.iter().take(cnt).enumerate() {
            // mta_reg_count 128: hash_mask 0xFFF, bit_shift 4.
            let h = 0xFFF & ((u32::from(g[4]) >> 4) | (u32::from(g[5]) << 4));
            words[1 + i / 2] |= h << (16 * (i % 2));
        }
        self.write_posted(vf, &words)?;
        let _ = self.read_posted(vf, 1)?;
        Ok(())
    }

    /// igbvf_down: disable RX and TX, mask interrupts, reset the VF (`reset_hw` + `init_hw`),
    /// clear the rings (head and tail 0).
    pub fn down(&mut self, vf: &VfHandle) -> Result<(), DrvError> {
        let rxdctl = self.rd(vf, regs::RX_BASE + q::DCTL);
        self.wr(vf, regs::RX_BASE + q::DCTL, rxdctl & !dctl::ENABLE);
        let txdctl = self.rd(vf, regs::TX_BASE + q::DCTL);
        self.wr(vf, regs::TX_BASE + q::DCTL, txdctl & !dctl::ENABLE);
        let _ = self.rd(vf, regs::VTSTATUS);
        self.irq_disable(vf);
        self.reset_hw(vf)?;
        let mac = self.mac;
        self.set_mac(vf, mac)?;
        for (h, t) in [
            (regs::TX_BASE + q::DH, regs::TX_BASE + q::DT),
            (regs::RX_BASE + q::DH, regs::RX_BASE + q::DT),
        ] {
            self.wr(vf, h, 0);
            self.wr(vf, t, 0);
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

    /// igbvf_change_mtu: down, new buffer sizes (`rx_buffer_len` as igbvf derives it from the
    /// MTU), open again.
    pub fn change_mtu(&mut self, vf: &VfHandle, mtu: u32) -> Result<(), DrvError> {
        let max_frame = mtu + 14 + 4;
        self.mtu = mtu;
        self.cfg.rx_buffer_len = match max_frame {
            f if f <= 1024 => 1024,
            f if f <= 2048 => 2048,
            _ => 2048,
        };
        if max_frame == 1514 + 4 || max_frame == 1514 + 4 + 4 {
            self.cfg.rx_buffer_len = 1514 + 4 + 4;
        }
        self.down(vf)?;
        self.open(vf)
    }

    // ----- interrupts (netdev.c) -----

    pub fn irq_disable(&self, vf: &VfHandle) {
        self.wr(vf, regs::VTEIMC, !0);
        self.wr(vf, regs::VTEIAC, 0);
    }

    /// igbvf_configure_msix: TX0 → vector 0, RX0 → vector 1 (read-modify-write of IVAR0),
    /// EITR writes, mailbox → vector 2 in IVAR_MISC.
    pub fn configure_msix(&mut self, vf: &VfHandle) {
        let itr = self.cfg.itr;
        let ivar = self.rd(vf, regs::VTIVAR);
        self.wr(vf, regs::VTIVAR, (ivar & 0xFFFF_00FF) | (IVAR_VALID << 8));
        self.eims_tx = 1;
        self.wr(vf, regs::VTEITR0, itr);
        let ivar = self.rd(vf, regs::VTIVAR);
        self.wr(vf, regs::VTIVAR, (ivar & 0xFFFF_FF00) | 1 | IVAR_VALID);
        self.eims_rx = 1 << 1;
        self.wr(vf, regs::VTEITR0 + 4, itr);
        self.wr(vf, regs::VTIVAR_MISC, 2 | IVAR_VALID);
        self.eims_other = 1 << 2;
        let _ = self.rd(vf, regs::VTSTATUS);
    }

    pub fn eims_enable_mask(&self) -> u32 {
        self.eims_tx | self.eims_rx | self.eims_other
    }

    pub fn irq_enable(&self, vf: &VfHandle) {
        let m = self.eims_enable_mask();
        self.wr(vf, regs::VTEIAC, m);
        self.wr(vf, regs::VTEIAM, m);
        self.wr(vf, regs::VTEIMS, m);
    }

    // ----- open (netdev.c) -----

    /// igbvf_configure_tx.
    pub fn configure_tx(&mut self, vf: &VfHandle) {
        let txdctl = self.rd(vf, regs::TX_BASE + q::DCTL);
        self.wr(vf, regs::TX_BASE + q::DCTL, txdctl & !dctl::ENABLE);
        let _ = self.rd(vf, regs::VTSTATUS);
        self.wr(vf, regs::TX_BASE + q::DLEN, self.cfg.ring * DESC_LEN as u32);
        let tdba = self.tx_ring_addr();
        self.wr(vf, regs::TX_BASE + q::DBAL, tdba as u32);
        self.wr(vf, regs::TX_BASE + q::DBAH, (tdba >> 32) as u32);
        self.wr(vf, regs::TX_BASE + q::DH, 0);
        self.wr(vf, regs::TX_BASE + q::DT, 0);
        let dca = self.rd(vf, regs::TX_BASE + q::DCA_CTL);
        self.wr(vf, regs::TX_BASE + q::DCA_CTL, dca & !(1 << 11));
        self.wr(vf, regs::TX_BASE + q::DCTL, txdctl | dctl::ENABLE);
        self.tx_next_to_use = 0;
        self.tx_next_to_clean = 0;
        self.tx_pending.clear();
    }

    /// igbvf_setup_srrctl.
    pub fn setup_srrctl(&mut self, vf: &VfHandle) {
        let mut s = srrctl::DROP_EN;
        s |= self.cfg.rx_buffer_len.div_ceil(1024);
        if self.cfg.rx_buffer_len < 2048 {
            self.rx_ps_hdr_size = 0;
            s |= srrctl::DESCTYPE_ADV_ONEBUF << srrctl::DESCTYPE_SHIFT;
        } else {
            self.rx_ps_hdr_size = 128;
            // BSIZEHDRSIZE_SHIFT is 2 in igbvf: 128 << 2 = 2 << 8 (64-byte units).
            s |= self.rx_ps_hdr_size << 2;
            s |= srrctl::DESCTYPE_HDR_SPLIT_ALWAYS << srrctl::DESCTYPE_SHIFT;
        }
        self.wr(vf, regs::RX_BASE + q::SRRCTL, s);
    }

    /// igbvf_configure_rx (+ igbvf_set_rlpml: SET_LPE).
    pub fn configure_rx(&mut self, vf: &VfHandle) -> Result<(), DrvError> {
        self.configure_rx_ring(vf, true)
    }

    /// The RX ring registers; with `lpe`, SET_LPE in the middle, as igbvf_configure_rx does.
    fn configure_rx_ring(&mut self, vf: &VfHandle, lpe: bool) -> Result<(), DrvError> {
        let rxdctl = self.rd(vf, regs::RX_BASE + q::DCTL);
        self.wr(vf, regs::RX_BASE + q::DCTL, rxdctl & !dctl::ENABLE);
        let _ = self.rd(vf, regs::VTSTATUS);
        let rdba = self.rx_ring_addr();
        self.wr(vf, regs::RX_BASE + q::DBAL, rdba as u32);
        self.wr(vf, regs::RX_BASE + q::DBAH, (rdba >> 32) as u32);
        self.wr(vf, regs::RX_BASE + q::DLEN, self.cfg.ring * DESC_LEN as u32);
        self.wr(vf, regs::RX_BASE + q::DH, 0);
        self.wr(vf, regs::RX_BASE + q::DT, 0);
        let mut rxdctl = (rxdctl | dctl::ENABLE) & 0xFFF0_0000;
        rxdctl |= 16 | (8 << 8) | (4 << 16);
        if lpe {
            // e1000_rlpml_set_vf: max_frame_size + VLAN_TAG_SIZE; igbvf does not read the
            // reply (the next posted write flushes PFSTS).
            self.write_posted(vf, &[u32::from(msg::ID_SET_LPE), self.mtu + 14 + 4 + 4])?;
        }
        self.wr(vf, regs::RX_BASE + q::DCTL, rxdctl);
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

    /// igbvf_alloc_rx_buffers: refresh `count` descriptors and write RDT = last one.
    pub fn alloc_rx_buffers(&mut self, vf: &VfHandle, count: u32) {
        let n = self.cfg.ring;
        let mut i = self.rx_next_to_use;
        for _ in 0..count {
            let d = if self.rx_ps_hdr_size > 0 {
                RxReadDesc {
                    pkt_addr: self.rx_buf(i),
                    hdr_addr: self.rx_hdr_buf(i),
                }
            } else {
                RxReadDesc {
                    pkt_addr: self.rx_buf(i),
                    hdr_addr: 0,
                }
            };
            let mut b = [0u8; DESC_LEN];
            d.emit(&mut b);
            self.write_desc(self.rx_desc_addr(i), &b);
            i = (i + 1) % n;
        }
        if self.rx_next_to_use != i {
            self.rx_next_to_use = i;
            let tail = if i == 0 { n - 1 } else { i - 1 };
            self.wr(vf, regs::RX_BASE + q::DT, tail);
        }
    }

    /// igbvf_open: igbvf_configure (SET_MULTICAST, TX, SRRCTL, RX, buffers), request_irq
    /// (igbvf_configure_msix), clear pending (read EICR), igbvf_irq_enable.
    pub fn open(&mut self, vf: &VfHandle) -> Result<(), DrvError> {
        // igbvf_set_multi → e1000_update_mc_addr_list_vf: 16 words, the netdev's list.
        let groups = self.mc_list.clone();
        self.set_multicast(vf, &groups)?;
        self.configure_tx(vf);
        self.setup_srrctl(vf);
        self.configure_rx(vf)?;
        self.start(vf);
        Ok(())
    }

    /// The rings and interrupts of [`SoftIgbvf::open`] without its mailbox messages: for an
    /// endpoint whose mailbox conversation is scripted by its caller.
    pub fn open_rings(&mut self, vf: &VfHandle) {
        self.configure_tx(vf);
        self.setup_srrctl(vf);
        // Without SET_LPE the ring setup sends nothing on the mailbox, so it cannot fail.
        let _ = self.configure_rx_ring(vf, false);
        self.start(vf);
    }

    /// Posts every RX buffer, routes and enables the interrupts.
    fn start(&mut self, vf: &VfHandle) {
        let unused = self.rx_desc_unused();
        self.alloc_rx_buffers(vf, unused);
        self.configure_msix(vf);
        let _ = self.rd(vf, regs::VTEICR);
        self.irq_enable(vf);
        self.get_link_status = true;
    }

    /// e1000_check_for_link_vf as igbvf's watchdog runs it: link is up when STATUS.LU is set
    /// and the last PF message in the mailbox carries CTS.
    pub fn check_link(&mut self, vf: &VfHandle) -> bool {
        self.check_for_link(vf).0
    }

    /// e1000_check_for_link_vf with its return code: (link up, error). The error asks for a
    /// reset: the PF's last message is a NACK without CTS (it no longer counts the VF as
    /// clear to send), or the mailbox timed out while the PF is talking again.
    pub fn check_for_link(&mut self, vf: &VfHandle) -> (bool, bool) {
        // A pending reset indication or a disarmed mailbox forces a re-check.
        let rst = self.check_bit(vf, v2p::RSTD | v2p::RSTI);
        if rst || self.timeout == 0 {
            self.get_link_status = true;
        }
        if !self.get_link_status {
            return (true, false);
        }
        if self.rd(vf, regs::VTSTATUS) & regs::status::LU == 0 {
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

    /// igbvf_watchdog_task at `now_ns` (the caller's clock): `igbvf_has_link`, whose error
    /// schedules the reset task once [`RESET_THROTTLE_NS`] have passed since the last reset
    /// (run here at once: [`SoftIgbvf::reinit`], after which `igbvf_up` has the watchdog look
    /// again), then the carrier follows the link ("Link is Up" / "Link is Down").
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

    /// igbvf_reset_task → igbvf_reinit_locked: [`SoftIgbvf::down`] (its `igbvf_reset` is the
    /// VF_RESET handshake again and SET_MAC_ADDR, and sets `last_reset`), then
    /// [`SoftIgbvf::open`]'s `igbvf_up` (SET_MULTICAST, rings, SET_LPE, interrupts).
    pub fn reinit(&mut self, vf: &VfHandle, now_ns: u64) -> Result<(), DrvError> {
        self.carrier = false;
        self.resets += 1;
        self.down(vf)?;
        self.last_reset_ns = now_ns;
        self.open(vf)
    }

    /// The netdev's multicast list changed (`ip maddr add`, a socket joining a group):
    /// `igbvf_set_multi` sends the whole list again with SET_MULTICAST (the PF replaces the
    /// VF's table with it).
    pub fn set_mc_list(&mut self, vf: &VfHandle, groups: Vec<[u8; 6]>) -> Result<(), DrvError> {
        self.mc_list = groups;
        let groups = self.mc_list.clone();
        self.set_multicast(vf, &groups)
    }
}
