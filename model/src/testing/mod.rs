//! Test support, public so that integration tests and the scenario runner (issue 7) can reuse
//! it: an in-process VF driver that brings up the VF model with its registers, rings and
//! mailbox exactly as Linux `igbvf` does, and a PF side built on the real `mailbox` crate.
//!
//! - [`MailboxPort`]: a [`PfPort`](crate::PfPort) over real `mailbox::VfMailbox`es and a `mailbox::PfAgent`,
//!   servicing the agent inside the VF's register write (as the owner in `src/` will).
//! - [`IrqLog`]: an [`IrqSink`](crate::IrqSink) that records the vectors fired.
//! - [`SoftIgbvf`]: the driver. Register sequences follow igbvf's `netdev.c`, `vf.c` and
//!   `mbx.c`: probe (`e1000_reset_hw_vf` handshake, `read_mac_addr`, `init_hw` SET_MAC_ADDR),
//!   open (`igbvf_configure`: SET_MULTICAST, `igbvf_configure_tx`, `igbvf_setup_srrctl`,
//!   `igbvf_configure_rx` + SET_LPE, `igbvf_alloc_rx_buffers`; `igbvf_configure_msix`;
//!   `er32(EICR)`; `igbvf_irq_enable`), link check (`e1000_check_for_link_vf`), transmit
//!   (`igbvf_tx_csum`/`igbvf_tso` context descriptor + `igbvf_tx_queue_adv` data descriptors +
//!   TDT), `igbvf_clean_tx_irq`, `igbvf_clean_rx_irq` and the three MSI-X handlers.
//!
//! Guest memory for tests: `GuestMemoryMmap::from_ranges(&[(GuestAddress(base), size)])`; the
//! driver carves its rings and buffers out of `[base, base + SoftIgbvf::memory_needed(..))`.

use std::sync::{Mutex, MutexGuard};

use eswitch::MacAddr;

mod igbvf;
mod port;

pub use igbvf::{DriverConfig, DrvError, RxFrame, SoftIgbvf, XmitOpts};
pub use port::{IrqLog, MailboxPort};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A MAC as the eswitch types it.
pub fn mac(b: [u8; 6]) -> MacAddr {
    MacAddr(b)
}
