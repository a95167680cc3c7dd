//! What Linux igbvf (`netdev.c`, `vf.c`) does its own way on an 82576 VF: the probe and reset
//! handshake, buffer sizes from the MTU, header split, and one vector per queue direction.

use mailbox::regs::msg;

use super::{DrvError, SoftVf};
use crate::function::i82576::regs::{self, srrctl};
use crate::nic::VfHandle;

const IVAR_VALID: u32 = 0x80;

impl SoftVf {
    /// e1000_reset_hw_vf: VTCTRL.RST, wait for RSTI/RSTD, VF_RESET, read the MAC.
    pub fn reset_hw(&mut self, vf: &VfHandle) -> Result<(), DrvError> {
        self.reset_and_wait(vf)?;
        let r = self.exchange(vf, &[u32::from(msg::ID_VF_RESET)], 3)?;
        self.take_reset_reply(&r)
    }

    /// igbvf_probe as far as the device is concerned: enable memory + bus mastering and
    /// MSI-X in config space, `igbvf_irq_disable`, `reset_hw`, `read_mac_addr` (a random MAC
    /// when the PF assigned none), then `igbvf_reset` (`reset_hw` + `init_hw`: SET_MAC_ADDR).
    pub(super) fn igbvf_probe(&mut self, vf: &VfHandle) -> Result<[u8; 6], DrvError> {
        self.probe_bus(vf);
        self.irq_disable(vf);
        self.reset_hw(vf)?;
        self.mac = self.perm_addr;
        if self.mac == [0; 6] {
            // "MAC address not assigned by administrator." → eth_hw_addr_random.
            self.mac = self.cfg.random_mac;
        }
        let want = self.mac;
        self.igbvf_reset(vf)?;
        if self.mac == [0; 6] {
            self.mac = want;
        }
        Ok(self.mac)
    }

    /// igbvf_reset: `reset_hw` again, then `init_hw` (rar_set with the netdev's MAC).
    pub(super) fn igbvf_reset(&mut self, vf: &VfHandle) -> Result<(), DrvError> {
        self.reset_hw(vf)?;
        let mac = self.mac;
        self.set_mac(vf, mac)?;
        Ok(())
    }

    /// igbvf_change_mtu's `rx_buffer_len` for `mtu`.
    pub(super) fn igbvf_buffer_len(&mut self, mtu: u32) {
        let max_frame = mtu + 14 + 4;
        self.cfg.rx_buffer_len = match max_frame {
            f if f <= 1024 => 1024,
            _ => 2048,
        };
        if max_frame == 1514 + 4 || max_frame == 1514 + 4 + 4 {
            self.cfg.rx_buffer_len = 1514 + 4 + 4;
        }
    }

    /// igbvf_configure_msix: TX0 → vector 0, RX0 → vector 1 (read-modify-write of IVAR0),
    /// EITR writes, mailbox → vector 2 in IVAR_MISC.
    pub(super) fn igbvf_configure_msix(&mut self, vf: &VfHandle) {
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

    /// igbvf_setup_srrctl: one buffer below 2 KiB, else header split with a 128-byte header
    /// buffer.
    pub(super) fn igbvf_srrctl(&mut self) -> u32 {
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
        s
    }
}
