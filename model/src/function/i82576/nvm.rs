//! The PF's NVM (the EEPROM behind EECD/EERD): a 256-word image with the words igb reads
//! (`igb_read_mac_addr`, `igb_validate_nvm_checksum`, `igb_set_default_fc`,
//! `igb_check_alt_mac_addr`, `igb_read_part_string`, `igb_get_fw_version`, `igb_probe`'s wake-up
//! word), and the two registers through which software reads it.
//!
//! EERD reads complete at once: a write with START latches DONE, the address and the word
//! (igb's `igb_read_nvm_eerd` polls DONE). EECD reports an NVM present, the post-reset auto
//! read done, and a size below the 32K words at which igb would bit-bang SPI instead
//! (`igb_init_nvm_params_82575`); its bit-bang pins and REQ are stored and GNT follows REQ, but
//! no SPI cycle is modelled: NVM writes (`ethtool -E`) are not supported and read back as the
//! image.

use eswitch::MacAddr;
use tracing::debug;

use super::config::{PF_DEVICE_ID, VENDOR_INTEL};
use super::pf_regs::{eecd, eerd};

/// Words in the NVM: 2^(EECD.SIZE + 6).
pub const WORDS: usize = 256;
/// EECD.SIZE for [`WORDS`].
const SIZE_FIELD: u32 = 2;

/// Word offsets igb reads (`e1000_defines.h`, `e1000_nvm.h`).
pub mod word {
    /// The MAC address, two bytes a word, low byte first.
    pub const MAC: usize = 0x00;
    pub const COMPAT: usize = 0x03;
    pub const ID_LED: usize = 0x04;
    pub const VERSION: usize = 0x05;
    pub const PBA_0: usize = 0x08;
    pub const PBA_1: usize = 0x09;
    pub const INIT_CONTROL1: usize = 0x0A;
    pub const SUBSYSTEM_ID: usize = 0x0B;
    pub const SUBSYSTEM_VENDOR: usize = 0x0C;
    pub const DEVICE_ID: usize = 0x0D;
    pub const VENDOR_ID: usize = 0x0E;
    /// Init control 2: pause advertisement in b13:12 (`igb_set_default_fc`).
    pub const INIT_CONTROL2: usize = 0x0F;
    /// Init control 3 of port A: APME b10 (wake-up enabled; `igb_probe`).
    pub const INIT_CONTROL3_PORT_A: usize = 0x24;
    /// Pointer to an alternate MAC address: 0xFFFF = none (`igb_check_alt_mac_addr`).
    pub const ALT_MAC_PTR: usize = 0x37;
    /// The checksum word: words 0x00..=0x3F sum to [`super::CHECKSUM`].
    pub const CHECKSUM: usize = 0x3F;
}

/// The sum (mod 2^16) of words 0x00..=0x3F of a valid image (igb's `NVM_SUM`).
pub const CHECKSUM: u16 = 0xBABA;
/// Init control 2 with symmetric and asymmetric pause advertised: full flow control.
const INIT_CONTROL2_PAUSE_FULL: u16 = 0b11 << 12;
/// Image version 2.1 (shown by `ethtool -i`).
const IMAGE_VERSION: u16 = 0x2010;
/// The PBA number words (printed by igb at probe as "PBA No").
const PBA: [u16; 2] = [0xE437, 0x0903];

/// The NVM image.
#[derive(Clone, PartialEq, Eq)]
pub struct Nvm {
    words: [u16; WORDS],
}

impl std::fmt::Debug for Nvm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nvm").field("mac", &self.mac()).finish()
    }
}

impl Nvm {
    /// An 82576 image carrying `mac`, with a valid checksum.
    pub fn new(mac: MacAddr) -> Nvm {
        // Words past the checksummed area read as erased.
        let mut words = [0xFFFF; WORDS];
        words[..=word::CHECKSUM].fill(0);
        for (i, pair) in mac.0.chunks_exact(2).enumerate() {
            words[word::MAC + i] = u16::from_le_bytes([pair[0], pair[1]]);
        }
        words[word::ID_LED] = 0xFFFF;
        words[word::VERSION] = IMAGE_VERSION;
        words[word::PBA_0] = PBA[0];
        words[word::PBA_1] = PBA[1];
        words[word::DEVICE_ID] = PF_DEVICE_ID;
        words[word::VENDOR_ID] = VENDOR_INTEL;
        words[word::INIT_CONTROL2] = INIT_CONTROL2_PAUSE_FULL;
        words[word::ALT_MAC_PTR] = 0xFFFF;
        let mut nvm = Nvm { words };
        nvm.words[word::CHECKSUM] = CHECKSUM.wrapping_sub(nvm.sum_before_checksum());
        nvm
    }

    fn sum_before_checksum(&self) -> u16 {
        self.words[..word::CHECKSUM]
            .iter()
            .fold(0u16, |s, w| s.wrapping_add(*w))
    }

    /// Word `index`, if the NVM has it.
    pub fn word(&self, index: usize) -> Option<u16> {
        self.words.get(index).copied()
    }

    /// The MAC address of words 0–2 (what the hardware loads into RAL0/RAH0 at reset).
    pub fn mac(&self) -> MacAddr {
        let mut mac = [0u8; 6];
        for (i, pair) in mac.chunks_exact_mut(2).enumerate() {
            pair.copy_from_slice(&self.words[word::MAC + i].to_le_bytes());
        }
        MacAddr(mac)
    }

    /// Whether words 0x00..=0x3F sum to [`CHECKSUM`] (igb's `igb_validate_nvm_checksum`).
    pub fn checksum_valid(&self) -> bool {
        self.sum_before_checksum()
            .wrapping_add(self.words[word::CHECKSUM])
            == CHECKSUM
    }
}

/// EECD and EERD: how software reaches the [`Nvm`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NvmRegs {
    /// The software-written bits of EECD.
    eecd: u32,
    eerd: u32,
}

impl NvmRegs {
    /// EECD as read: present, auto read done, 16-bit addresses, the size, the written pins,
    /// and GNT when REQ is set (no other agent competes for the NVM).
    pub fn eecd(&self) -> u32 {
        let gnt = if self.eecd & eecd::REQ != 0 {
            eecd::GNT
        } else {
            0
        };
        eecd::PRES
            | eecd::AUTO_RD
            | eecd::ADDR_BITS
            | (SIZE_FIELD << eecd::SIZE_SHIFT)
            | (self.eecd & eecd::WRITABLE)
            | gnt
    }

    pub fn write_eecd(&mut self, value: u32) {
        self.eecd = value & eecd::WRITABLE;
    }

    pub fn eerd(&self) -> u32 {
        self.eerd
    }

    /// EERD write: START reads the word at the address at once. A word beyond the NVM reads
    /// as erased (0xFFFF), logged.
    pub fn write_eerd(&mut self, value: u32, nvm: &Nvm) {
        if value & eerd::START == 0 {
            self.eerd = value & eerd::ADDR_MASK;
            return;
        }
        let addr = ((value & eerd::ADDR_MASK) >> eerd::ADDR_SHIFT) as usize;
        let data = nvm.word(addr).unwrap_or_else(|| {
            debug!(addr, "EERD read beyond the NVM reads as erased");
            0xFFFF
        });
        self.eerd = (value & eerd::ADDR_MASK) | eerd::DONE | (u32::from(data) << eerd::DATA_SHIFT);
    }

    pub fn reset(&mut self) {
        *self = NvmRegs::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: MacAddr = MacAddr([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);

    /// igb's `igb_read_nvm_eerd` for one word.
    fn eerd_read(regs: &mut NvmRegs, nvm: &Nvm, w: u32) -> u16 {
        regs.write_eerd((w << eerd::ADDR_SHIFT) | eerd::START, nvm);
        let v = regs.eerd();
        assert_ne!(v & eerd::DONE, 0, "DONE at once");
        (v >> eerd::DATA_SHIFT) as u16
    }

    #[test]
    fn the_image_carries_the_mac_and_sums_to_0xbaba() {
        let nvm = Nvm::new(MAC);
        assert_eq!(nvm.mac(), MAC);
        assert!(nvm.checksum_valid());
        let mut regs = NvmRegs::default();
        let sum = (0..=0x3F).fold(0u16, |s, w| s.wrapping_add(eerd_read(&mut regs, &nvm, w)));
        assert_eq!(sum, CHECKSUM);
        assert_eq!(eerd_read(&mut regs, &nvm, 0), 0x1102);
        assert_eq!(eerd_read(&mut regs, &nvm, 2), 0x5544);
        assert_eq!(eerd_read(&mut regs, &nvm, word::ALT_MAC_PTR as u32), 0xFFFF);
        assert_eq!(eerd_read(&mut regs, &nvm, word::DEVICE_ID as u32), 0x10C9);
        assert_eq!(eerd_read(&mut regs, &nvm, 0x3FFF), 0xFFFF, "beyond the NVM");
    }

    #[test]
    fn eecd_reports_present_auto_read_done_and_256_words() {
        let mut regs = NvmRegs::default();
        let v = regs.eecd();
        assert_ne!(v & eecd::PRES, 0);
        assert_ne!(v & eecd::AUTO_RD, 0);
        // igb_init_nvm_params_82575: word_size = 1 << (SIZE + 6).
        let words = 1usize << (((v & eecd::SIZE_MASK) >> eecd::SIZE_SHIFT) + 6);
        assert_eq!(words, WORDS);
        assert_eq!(v & eecd::GNT, 0);
        regs.write_eecd(eecd::REQ | 0xFFFF_0000);
        assert_ne!(regs.eecd() & eecd::GNT, 0, "granted");
        assert_eq!(regs.eecd() & 0xFFFF_0000, 0, "reserved bits do not stick");
    }
}
