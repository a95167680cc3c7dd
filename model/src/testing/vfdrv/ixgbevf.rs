//! What Linux ixgbevf 6.1 (`ixgbevf_main.c`, `vf.c`) does its own way on an 82599 VF: the
//! reset reply with the multicast filter type, mailbox API negotiation from the newest
//! version down, GET_QUEUES, the xcast mode and unicast list of its rx-mode handler, SET_LPE
//! with its reply read (and an MTU change the PF refuses), one vector for the queue pair and
//! one for the mailbox, and 2 KiB one-buffer receive descriptors.

use mailbox::ixgbe::regs::{api, len, msg, xcast};
use mailbox::ixgbe::ApiVersion;

use super::{DrvError, SoftVf};
use crate::function::x82599::regs::{self, srrctl};
use crate::nic::VfHandle;

/// `IXGBE_IVAR_ALLOC_VAL`.
const IVAR_VALID: u32 = 0x80;
/// VTEITR.CNT_WDIS (`IXGBE_EITR_CNT_WDIS`): ixgbevf sets it with every interval it writes.
const EITR_CNT_WDIS: u32 = 1 << 31;
/// `IXGBE_MAX_EITR`: the interval bits.
const EITR_MASK: u32 = 0x0FF8;
/// `IXGBEVF_RX_HDR_SIZE` (256) in SRRCTL's 64-byte header units (shift 2).
const SRRCTL_HDR_256: u32 = 256 << 2;
/// `IXGBE_PSRTYPE_{TCPHDR,UDPHDR,IPV4HDR,IPV6HDR,L2HDR}`.
const PSRTYPE: u32 = (1 << 4) | (1 << 5) | (1 << 8) | (1 << 9) | (1 << 12);

impl SoftVf {
    /// ixgbevf_reset_hw_vf: VFCTRL.RST, wait out the reset indication, RESET, the reply's
    /// MAC and multicast filter type (4 words).
    pub(super) fn ixgbevf_reset_hw(&mut self, vf: &VfHandle) -> Result<(), DrvError> {
        // ixgbevf_stop_hw_vf: interrupts masked and cleared, queues stopped.
        self.irq_disable(vf);
        let _ = self.rd(vf, regs::VTEICR);
        self.reset_and_wait(vf)?;
        let r = self.exchange(vf, &[u32::from(msg::ID_VF_RESET)], len::RESET_REPLY)?;
        self.take_reset_reply(&r)
    }

    /// ixgbevf_negotiate_api: every version 6.1 knows, newest first, until the PF ACKs one.
    pub fn ixgbevf_negotiate_api(&mut self, vf: &VfHandle) -> Result<ApiVersion, DrvError> {
        for want in ApiVersion::IXGBEVF_6_1_ORDER {
            let w = [u32::from(msg::ID_API_NEGOTIATE), want.to_wire(), 0];
            let r = self.exchange(vf, &w, len::API_NEGOTIATE)?;
            if r[0] & !msg::CTS == u32::from(msg::ID_API_NEGOTIATE) | msg::ACK {
                self.api = want.to_wire();
                return Ok(want);
            }
        }
        Err(DrvError::ApiNegotiation)
    }

    /// ixgbevf_get_queues (API 1.1 and later): the PF's queue counts, read and unused here
    /// (the driver runs one queue pair, as on one CPU).
    pub(super) fn ixgbevf_get_queues(&mut self, vf: &VfHandle) -> Result<(), DrvError> {
        if self.api < api::V1_1 || self.api == api::V2_0 {
            return Ok(());
        }
        let mut w = [0u32; len::GET_QUEUES];
        w[0] = u32::from(msg::ID_GET_QUEUES);
        let _ = self.exchange(vf, &w, len::GET_QUEUES)?;
        Ok(())
    }

    /// ixgbevf_reset: the reset handshake, then the API negotiated again.
    pub(super) fn ixgbevf_reset(&mut self, vf: &VfHandle) -> Result<(), DrvError> {
        self.ixgbevf_reset_hw(vf)?;
        self.ixgbevf_negotiate_api(vf)?;
        if self.perm_addr != [0; 6] {
            self.mac = self.perm_addr;
        }
        Ok(())
    }

    /// ixgbevf_probe as far as the device is concerned: the bus, `ixgbevf_sw_init` (reset,
    /// API, the permanent MAC or a random one: "PF still in reset state" when none), then
    /// `ixgbevf_set_num_queues` (GET_QUEUES). The MAC is registered when the interface comes
    /// up (`ixgbevf_up_complete`).
    pub(super) fn ixgbevf_probe(&mut self, vf: &VfHandle) -> Result<[u8; 6], DrvError> {
        self.probe_bus(vf);
        self.ixgbevf_reset_hw(vf)?;
        self.ixgbevf_negotiate_api(vf)?;
        self.mac = if self.perm_addr == [0; 6] {
            self.cfg.random_mac
        } else {
            self.perm_addr
        };
        self.ixgbevf_get_queues(vf)?;
        Ok(self.mac)
    }

    /// ixgbevf_configure_dcb and ixgbevf_set_rx_mode as `ixgbevf_configure` runs them:
    /// GET_QUEUES, UPDATE_XCAST_MODE (MULTI: a broadcast- and multicast-capable interface
    /// without IFF_ALLMULTI or IFF_PROMISC; API 1.2 and later), SET_MULTICAST with the list,
    /// and an empty unicast list (SET_MACVLAN index 0 clears the VF's extra filters).
    pub(super) fn ixgbevf_set_rx_mode(
        &mut self,
        vf: &VfHandle,
        groups: &[[u8; 6]],
    ) -> Result<(), DrvError> {
        if self.api >= api::V1_2 && self.api != api::V2_0 {
            let w = [u32::from(msg::ID_UPDATE_XCAST_MODE), xcast::MULTI];
            let _ = self.exchange(vf, &w, 2)?;
        }
        self.set_multicast(vf, groups)?;
        let _ = self.exchange(vf, &[u32::from(msg::ID_SET_MACVLAN), 0, 0], len::MAC)?;
        Ok(())
    }

    /// ixgbevf_change_mtu: SET_LPE with the new frame size first, the MTU refused when the
    /// PF NACKs it (`-EINVAL`); then the reset task brings the interface down and up.
    pub(super) fn ixgbevf_change_mtu(&mut self, vf: &VfHandle, mtu: u32) -> Result<(), DrvError> {
        let r = self.exchange(vf, &[u32::from(msg::ID_SET_LPE), mtu + 14 + 4], 2)?;
        if r[0] & msg::NACK != 0 {
            return Err(DrvError::MtuRefused);
        }
        self.mtu = mtu;
        self.down(vf)?;
        self.open(vf)
    }

    /// ixgbevf_configure_msix for one queue pair: RX0 and TX0 → vector 0 (IVAR0 bytes 0
    /// and 1), its interval with CNT_WDIS, the mailbox → vector 1 (IVAR_MISC).
    pub(super) fn ixgbevf_configure_msix(&mut self, vf: &VfHandle) {
        for shift in [0, 8] {
            let ivar = self.rd(vf, regs::VTIVAR0);
            self.wr(
                vf,
                regs::VTIVAR0,
                (ivar & !(0xFF << shift)) | (IVAR_VALID << shift),
            );
        }
        self.eims_rx = 1;
        self.eims_tx = 1;
        self.wr(
            vf,
            regs::VTEITR0,
            (self.cfg.itr & EITR_MASK) | EITR_CNT_WDIS,
        );
        let misc = self.rd(vf, regs::VTIVAR_MISC);
        self.wr(vf, regs::VTIVAR_MISC, (misc & !0xFF) | 1 | IVAR_VALID);
        self.eims_other = 1 << 1;
    }

    /// ixgbevf_setup_psrtype and ixgbevf_configure_srrctl: 2 KiB packet buffers, advanced
    /// one-buffer descriptors, DROP_EN.
    pub(super) fn ixgbevf_srrctl(&mut self, vf: &VfHandle) -> u32 {
        self.wr(vf, regs::VFPSRTYPE, PSRTYPE);
        self.rx_ps_hdr_size = 0;
        srrctl::DROP_EN
            | SRRCTL_HDR_256
            | (2048 >> 10)
            | (srrctl::DESCTYPE_ADV_ONEBUF << srrctl::DESCTYPE_SHIFT)
    }
}
