//! The PF's datapath: its TX queues run to the switch (or, looping, into its own RX queues),
//! frames from the switch into the RX queue its filters and MRQC choose, and the rings' state.

use super::*;
use crate::function::rxcsum::L4Checksum;

impl Pf {
    /// PHY loopback or MAC loopback.
    pub(super) fn looping(&self) -> bool {
        self.phy.loopback() || self.filter.loopback()
    }

    /// Runs TX queue `q` from TDH to TDT: frames go to the switch, or back into the RX
    /// queues while looping.
    pub(super) fn run_tx(&mut self, q: usize) -> Effects {
        let mut effects = Effects::default();
        if self.tctl & tctl::EN == 0 || !self.tx[q].enabled() {
            return effects;
        }
        if !self.cfg.bus_master_enabled() {
            debug!(queue = q, "PF TX with bus mastering off: not fetched");
            return effects;
        }
        let Some(mem) = self.mem.clone() else {
            return effects;
        };
        let mut frames = Vec::new();
        let admit = |_: usize| Ok(());
        let run = {
            let guard = mem.memory();
            let mut env = TxEnv {
                descriptor_vlan: true,
                func: FunctionId::Pf,
                admit: &admit,
                pad: self.tctl & tctl::PSP != 0,
                counters: &mut self.counters,
                out: &mut frames,
                dma: &mut self.dma_faults,
                queue: q,
                head_writeback: false,
            };
            self.tx[q].run(&*guard, &mut env, false)
        };
        if !self.tx[q].enabled() {
            warn!(queue = q, "PF TX queue stopped");
        }
        let msix = self.msix_enabled();
        let now = self.now();
        if run.wrote_back {
            effects.fire = self.intr.raise_queue(QueueCause::Tx(q), msix, now);
        }
        let looping = self.looping();
        for f in frames {
            let dst = EthernetFrame::new_unchecked(&f.bytes[..]).dst_addr();
            self.hw_stats.transmitted(f.bytes.len(), dst);
            if looping {
                let (result, fire) = self.rx_frame(&f.bytes, None, Source::Loopback);
                effects.fire = effects.fire.union(fire);
                match result {
                    Ok(()) => {}
                    Err(RxDrop::RingFull) => {
                        debug!("looped-back frame dropped: RX ring full");
                        let q = self.rx_queue();
                        self.rx[q].rqdpc = self.rx[q].rqdpc.wrapping_add(1);
                        self.hw_stats.missed();
                    }
                    Err(reason) => self.counters.rx_drop(reason),
                }
            } else {
                effects.frames.push(f);
            }
        }
        effects
    }

    /// The RX queue frames go to (see the module docs).
    pub(super) fn rx_queue(&self) -> usize {
        let mrqc = self.storage(r::MRQC).unwrap_or(0);
        let q = match mrqc & mrqc::MRQE_MASK {
            mrqc::MRQE_NONE => (mrqc & mrqc::DEF_Q_MASK) >> mrqc::DEF_Q_SHIFT,
            mrqc::MRQE_VMDQ | mrqc::MRQE_VMDQ_RSS => {
                let vt = self.storage(r::VT_CTL).unwrap_or(0);
                (vt & vt_ctl::DEF_PL_MASK) >> vt_ctl::DEF_PL_SHIFT
            }
            // RSS without a hash: redirection entry 0.
            _ => self.storage(r::RETA).unwrap_or(0) & 0xF,
        };
        q as usize % r::QUEUES
    }

    /// A frame for the PF's RX queues: the loopback path and the switch's deliveries.
    pub(super) fn rx_frame(
        &mut self,
        frame: &[u8],
        stripped_tci: Option<u16>,
        source: Source,
    ) -> (Result<(), RxDrop>, Fire) {
        let Some(mem) = self.mem.clone() else {
            return (Err(RxDrop::NotAttached), Fire::NONE);
        };
        if !self.cfg.bus_master_enabled() {
            return (Err(RxDrop::BusMasterOff), Fire::NONE);
        }
        if source == Source::Switch && self.looping() {
            return (Err(RxDrop::Isolated), Fire::NONE);
        }
        if frame.is_empty() {
            return (Err(RxDrop::Empty), Fire::NONE);
        }
        self.hw_stats.seen(frame.len());
        if !self.filter.enabled() {
            return (Err(RxDrop::ReceiverDisabled), Fire::NONE);
        }
        let rlpml = self.storage(r::RLPML).unwrap_or(0);
        match self.filter.accept(frame, stripped_tci, rlpml) {
            Ok(()) => {}
            Err(Refusal::Oversize) => {
                self.hw_stats.oversize();
                return (Err(RxDrop::Oversize), Fire::NONE);
            }
            Err(Refusal::Address | Refusal::Vlan) => return (Err(RxDrop::Filtered), Fire::NONE),
        }
        let q = self.rx_queue();
        if !self.rx[q].enabled() {
            self.rx[q].rqdpc = self.rx[q].rqdpc.wrapping_add(1);
            self.hw_stats.missed();
            return (Err(RxDrop::QueueDisabled), Fire::NONE);
        }
        // CTRL.VME: the MAC strips the outer 802.1Q tag the switch left on.
        let eth = EthernetFrame::new_unchecked(frame);
        let strip = stripped_tci.is_none() && self.ctrl & ctrl::VME != 0;
        let (data, tci) = match eth.outer_tag() {
            Some(tag) if strip && tag.tpid == EtherTypes::Vlan => (
                std::borrow::Cow::Owned(eth.strip_tag().to_vec()),
                Some(tag.tci.0),
            ),
            _ => (std::borrow::Cow::Borrowed(frame), stripped_tci),
        };
        let checksum =
            self.storage(r::RXCSUM).unwrap_or(0) & (r::rxcsum::IPOFL | r::rxcsum::TUOFL) != 0;
        let outcome = {
            let guard = mem.memory();
            write_frame(
                &mut self.rx[q],
                &*guard,
                &data,
                tci,
                checksum.then_some(L4Checksum::Unverified),
                FunctionId::Pf,
                (&mut self.dma_faults, q),
            )
        };
        let msix = self.msix_enabled();
        let now = self.now();
        match outcome {
            RxOutcome::Delivered { .. } => {
                self.counters.rx_delivered(&data);
                self.hw_stats.received(frame.len(), eth.dst_addr());
                (Ok(()), self.intr.raise_queue(QueueCause::Rx(q), msix, now))
            }
            RxOutcome::Dropped(RxDrop::BufferDma) => {
                self.counters.dma_errors += 1;
                (
                    Err(RxDrop::BufferDma),
                    self.intr.raise_queue(QueueCause::Rx(q), msix, now),
                )
            }
            RxOutcome::Dropped(reason) => {
                match reason {
                    RxDrop::RingDma => self.counters.dma_errors += 1,
                    RxDrop::RingFull => {}
                    _ => self.rx[q].rqdpc = self.rx[q].rqdpc.wrapping_add(1),
                }
                (Err(reason), Fire::NONE)
            }
        }
    }

    /// RX queue `q` as the device sees it.
    pub fn rx_ring(&self, q: usize) -> Option<RingState> {
        self.rx.get(q).map(|r| RingState {
            enabled: r.enabled(),
            base: r.base(),
            len: r.len(),
            head: r.rdh,
            tail: r.rdt,
        })
    }

    /// TX queue `q` as the device sees it.
    pub fn tx_ring(&self, q: usize) -> Option<RingState> {
        self.tx.get(q).map(|t| RingState {
            enabled: t.enabled(),
            base: t.base(),
            len: t.len(),
            head: t.tdh,
            tail: t.tdt,
        })
    }
}
