//! [`VfHandle`]: one VF of a running NIC as its bus reaches it. The vfio-user adapter calls it
//! from the VF's connection thread; in-process drivers (the software igbvf of scenarios and
//! tests) call it from theirs. Every access locks the VF, runs the function, and carries out
//! its effects with the lock released: interrupts signalled, transmitted frames switched,
//! waiting frames delivered into newly posted buffers, a due paused queue resumed.

use std::sync::Arc;

use eswitch::PortId;

use super::pf::Route;
use super::{DynFunction, Hosted, Nic, Slot, Work};
use crate::function::card_vf::CardVf;
use crate::function::stats::{AccessError, VfStats};
use crate::function::VfState;
use crate::function::{BusLayout, Effects, GuestMem};
use crate::seams::IrqSink;

/// The function behind one port of a [`Nic`] (a VF, or the hosted PF function). Cheap to
/// clone; every clone reaches the same function.
pub struct Handle<F> {
    nic: Arc<Nic>,
    port: PortId,
    _function: std::marker::PhantomData<fn() -> F>,
}

/// VF `n` of a NIC.
pub type VfHandle = Handle<CardVf>;
/// The NIC's PF function ([`Nic::host_pf`]).
pub type PfHandle = Handle<DynFunction>;

impl<F> Clone for Handle<F> {
    fn clone(&self) -> Self {
        Handle {
            nic: self.nic.clone(),
            port: self.port,
            _function: std::marker::PhantomData,
        }
    }
}

impl<F> std::fmt::Debug for Handle<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle").field("port", &self.port).finish()
    }
}

impl<F: Hosted> Handle<F> {
    pub(super) fn new(nic: Arc<Nic>, port: PortId) -> Handle<F> {
        Handle {
            nic,
            port,
            _function: std::marker::PhantomData,
        }
    }

    /// The switch port the function sits behind.
    pub fn port(&self) -> PortId {
        self.port
    }

    pub fn nic(&self) -> &Arc<Nic> {
        &self.nic
    }

    /// Runs an access that answers with effects, then the runtime's follow-up.
    fn access<R>(&self, f: impl FnOnce(&mut Slot<F>) -> (R, Effects)) -> R {
        self.nic
            .with_slot(self.port, |s: &mut Slot<F>| {
                let (r, effects) = f(s);
                let work = s.settle(effects);
                (r, work)
            })
            .expect("a Handle names a function of its NIC")
    }

    fn read<R>(&self, f: impl FnOnce(&mut Slot<F>) -> R) -> R {
        self.nic
            .with_slot(self.port, |s: &mut Slot<F>| (f(s), Work::default()))
            .expect("a Handle names a function of its NIC")
    }

    pub fn layout(&self) -> BusLayout {
        self.read(|s| s.func.layout())
    }

    pub fn config_read(&self, offset: u64, data: &mut [u8]) {
        self.read(|s| s.func.config_read(offset, data))
    }

    /// A config-space write. A PF's function-level reset resets what the PF side keeps of
    /// it too, as DEVICE_RESET does ([`Handle::reset`]).
    pub fn config_write(&self, offset: u64, data: &[u8]) {
        let reset = self.access(|s| {
            let effects = s.func.config_write(offset, data);
            (effects.reset, effects)
        });
        if reset && self.port == PortId::Pf {
            self.nic.guest_pf_reset();
        }
    }

    /// A register read. On the PF of a port whose VFs the guest's igb manages, the mailbox
    /// and VF-management registers are the PF side's (`nic::pf::guest`).
    pub fn region_read(&self, index: u32, offset: u64, data: &mut [u8]) -> Result<(), AccessError> {
        if self.port == PortId::Pf {
            match self.nic.guest_route(index, offset, data.len()) {
                Some(Ok(Route::PfSide)) => {
                    data.copy_from_slice(&self.nic.guest_read(offset).to_le_bytes());
                    return Ok(());
                }
                Some(Err(e)) => {
                    data.fill(0);
                    return Err(e);
                }
                Some(Ok(Route::Both | Route::Function)) | None => {}
            }
        }
        self.read(|s| s.func.region_read(index, offset, data))
    }

    /// A register write; a TX queue the shaper paused, or an interrupt moderation held, is
    /// released here too once its time has come.
    /// On the PF of a port whose VFs the guest's igb manages, the mailbox and VF-management
    /// registers go to the PF side, and the receive filters, CTRL and CTRL_EXT to both.
    pub fn region_write(&self, index: u32, offset: u64, data: &[u8]) -> Result<(), AccessError> {
        let mut copy = None;
        if self.port == PortId::Pf {
            let value = <[u8; 4]>::try_from(data).map(u32::from_le_bytes);
            match (self.nic.guest_route(index, offset, data.len()), value) {
                (Some(Ok(Route::PfSide)), Ok(v)) => {
                    self.nic.guest_write(offset, v);
                    return Ok(());
                }
                (Some(Ok(Route::Both)), Ok(v)) => copy = Some(v),
                (Some(Err(e)), _) => return Err(e),
                _ => {}
            }
        }
        let nic = &self.nic;
        let r = self.access(|s| match s.func.region_write(index, offset, data) {
            Ok(effects) => {
                if let Some(v) = copy {
                    nic.guest_copy(offset, v);
                }
                (Ok(()), effects)
            }
            Err(e) => (Err(e), Effects::default()),
        });
        self.nic.wake_if_due(self.port);
        r
    }

    /// DEVICE_RESET, or after the client went away.
    pub fn reset(&self) {
        self.access(|s| ((), s.func.reset()));
        if self.port == PortId::Pf {
            self.nic.guest_pf_reset();
        }
    }

    /// A client connected: its memory and where the function's interrupts go. On the PF
    /// port its driver's receive filters take the host side's place.
    pub fn attach(&self, mem: GuestMem, irq: Arc<dyn IrqSink>) {
        if self.port == PortId::Pf {
            self.nic.pf_client_attaching();
        }
        self.read(|s| {
            s.func.attach(mem);
            s.irq = Some(irq);
        })
    }

    /// The client went away: no more DMA or interrupts. Frames waiting in the backlog are
    /// dropped (counted as `not_attached` by the function), not kept for the next client.
    /// The PF port gets the host side's receive filters back.
    pub fn detach(&self) {
        self.read(|s| {
            s.func.detach();
            s.irq = None;
            let _ = s.drain();
            s.backlog.clear();
        });
        if self.port == PortId::Pf {
            self.nic.pf_client_detached();
        }
    }

    /// Whether a client is attached (between [`Handle::attach`] and [`Handle::detach`]).
    pub fn attached(&self) -> bool {
        self.read(|s| s.attached())
    }

    /// The function's counters, with the interrupts the runtime signalled for it.
    pub fn stats(&self) -> VfStats {
        self.read(|s| {
            let mut st = s.func.stats();
            st.irqs_fired = s.irqs_fired;
            st.irqs_lost = s.irqs_lost;
            st
        })
    }

    /// Hands the function a frame as if the switch had delivered it (`stripped_tci`: the tag
    /// it stripped): into the RX ring, or the backlog when the ring is full. `false` when the
    /// backlog was full too and the frame was dropped. The datapath's own delivery, without
    /// the switch in front (a frame from the wire): for tests of the function's RX path.
    pub fn deliver(&self, frame: &bytes::Bytes, stripped_tci: Option<u16>) -> bool {
        let copy = crate::function::RxCopy {
            frame,
            stripped_tci,
            origin: crate::function::Origin::Wire,
            l4_checksum: crate::function::rxcsum::L4Checksum::Unverified,
        };
        self.nic.deliver_into::<F>(self.port, &[copy]) == 1
    }

    /// Frames waiting in the function's backlog.
    pub fn backlog(&self) -> usize {
        self.read(|s| s.backlog.len())
    }
}

impl Handle<CardVf> {
    /// The VF's index.
    pub fn id(&self) -> u16 {
        match self.port {
            PortId::Vf(v) => v,
            _ => unreachable!("a VF handle is made for a VF port"),
        }
    }

    /// Queue and interrupt state.
    pub fn state(&self) -> VfState {
        self.read(|s| s.func.state())
    }

    /// Free RX descriptors on queue 0.
    pub fn rx_free_descriptors(&self) -> u32 {
        self.read(|s| s.func.rx_free_descriptors())
    }

    /// Whether RX write-backs report verified checksums (default on).
    pub fn set_rx_checksum(&self, on: bool) {
        self.read(|s| s.func.set_rx_checksum(on))
    }

    /// The link register as the guest reads it (the 82576's VTSTATUS, the 82599's VFLINKS).
    pub fn link_status(&self) -> u32 {
        self.read(|s| s.func.link_status())
    }

    /// Whether that register says the link is up.
    pub fn link_up(&self) -> bool {
        self.read(|s| s.func.link_up())
    }

    /// Which card's VF it is.
    pub fn card(&self) -> crate::nic::Card {
        self.read(|s| s.func.card())
    }

    /// The earliest deadline of a paused TX queue.
    pub fn tx_paused_until(&self) -> Option<u64> {
        self.read(|s| s.func.tx_paused_until())
    }
}
