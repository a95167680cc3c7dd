//! Endpoints on the card: adding them, bringing their software igbvf up through the mailbox
//! as igbvf probes, and what a VF client's reattach and a multicast join do to them.

use super::*;

impl World {
    /// Adds an endpoint and, for a VF with `bring_up` (the default), brings its driver up.
    pub fn add_endpoint(&mut self, spec: &EndpointSpec) -> Result<(), SetupError> {
        let port = spec.port;
        let name = spec.name.clone();
        if self.endpoint_at(port).is_some() {
            return Err(SetupError::DuplicatePort(port));
        }
        let Some(nic) = self.nic(port.nic).filter(|_| self.has_port(port)).cloned() else {
            return Err(SetupError::NoSuchPort { name, port });
        };
        if self.peer(port).is_some() {
            return Err(SetupError::Cabled { name, port });
        }
        let mac = match (port.port, spec.mac) {
            (_, Some(mac)) => mac,
            (PortId::Pf, None) => nic.with_pf(|pf| pf.switch().config().pf_mac.unwrap_or_default()),
            (PortId::Uplink(_), None) => return Err(SetupError::NeedsMac { name, port }),
            (PortId::Vf(_), None) => MacAddr::ZERO,
        };
        let stack = HostStack::new(mac, spec.ip, spec.vlan);
        let driver_guests = self.guest_mode.as_ref().is_some_and(|m| m.driver_endpoints);
        let as_guest =
            spec.attach == Attach::Guest || (driver_guests && spec.attach == Attach::Driver);
        if as_guest {
            if self.guest_mode.is_none() {
                return Err(SetupError::GuestModeNeeded { name });
            }
            if !matches!(port.port, PortId::Vf(_)) {
                return Err(SetupError::DriverNeedsVf { name, port });
            }
            self.endpoints.push(Endpoint {
                name,
                port,
                stack,
                vf: None,
                vm: None,
                guest: true,
            });
            return Ok(());
        }
        if spec.attach == Attach::Port
            && matches!(port.port, PortId::Vf(_))
            && nic.card() != model::Card::I82576
        {
            return Err(SetupError::InProcessCard {
                name,
                card: nic.card(),
            });
        }
        let vf = match (spec.attach, port.port) {
            (attach, PortId::Vf(vf)) => {
                let handle = nic.vf(vf).ok_or(SetupError::NoSuchPort {
                    name: name.clone(),
                    port,
                })?;
                let random_mac = spec
                    .fallback_mac
                    .map_or([0x02, 0x5a, 0x5a, 0x00, port.nic, vf as u8], |m| m.0);
                let guest = SoftGuest::attach(handle, driver_config(nic.card(), random_mac))
                    .map_err(|source| SetupError::Memory {
                        name: name.clone(),
                        source,
                    })?;
                Some(Box::new(VfGuest {
                    guest,
                    attach,
                    fallback: spec.fallback_mac,
                    next_watchdog_ns: 0,
                }))
            }
            (Attach::Driver | Attach::Guest, _) => {
                return Err(SetupError::DriverNeedsVf { name, port });
            }
            (Attach::Port, _) => {
                self.set_sink(port, true);
                None
            }
        };
        let is_vf = vf.is_some();
        self.endpoints.push(Endpoint {
            name: name.clone(),
            port,
            stack,
            vf,
            vm: None,
            guest: false,
        });
        let idx = self.endpoints.len() - 1;
        if is_vf {
            if spec.bring_up.unwrap_or(true) {
                self.bring_up(idx)
                    .map_err(|source| SetupError::BringUp { name, source })?;
            } else if let Some(g) = self.endpoints[idx].vf.as_mut() {
                // No mailbox conversation, but a guest whose rings are up.
                let VfGuest { guest, .. } = &mut **g;
                guest.drv.probe_bus(&guest.vf);
                guest.drv.open_rings(&guest.vf);
            }
        }
        Ok(())
    }

    /// The VF driver's bring-up (probe, or a reload). Port-attached: igbvf's reset handshake
    /// scripted over the VF's mailbox registers (VTCTRL.RST, RSTI/RSTD, VF_RESET); the MAC
    /// from the reply, or zeros on NACK, or the fallback registered with SET_MAC_ADDR; then the
    /// rings. Driver-attached: the software igbvf's probe and open. Returns the VF_RESET reply
    /// (port-attached only).
    pub fn bring_up(&mut self, idx: usize) -> Result<Option<Message>, MailboxError> {
        let Some(g) = self.endpoints[idx].vf.as_mut() else {
            return Ok(None);
        };
        let VfGuest {
            guest,
            attach,
            fallback,
            ..
        } = &mut **g;
        let fallback = *fallback;
        if *attach == Attach::Driver {
            // A reload: a fresh driver instance over the same function and memory.
            let DriverConfig {
                card, random_mac, ..
            } = *guest.drv.config();
            guest.reload(driver_config(card, random_mac));
            let mac = guest.up()?;
            // igbvf_reset at the end of probe.
            guest.drv.last_reset_ns = self.nics.first().map_or(START_NS, |n| n.now());
            self.endpoints[idx].stack.mac = MacAddr(mac);
            // igbvf_open starts the watchdog at once.
            self.settle();
            return Ok(None);
        }
        guest.drv.probe_bus(&guest.vf);
        let vf = guest.vf.clone();
        wr(&vf, regs::VTCTRL, regs::ctrl::RST);
        let mut polls = 0;
        while rd(&vf, regs::V2PMAILBOX) & (v2p::RSTI | v2p::RSTD) != 0 {
            polls += 1;
            if polls > RESET_POLLS {
                return Err(MailboxError::PfInReset);
            }
        }
        let reply = raw_exchange(&vf, &[u32::from(msg::ID_VF_RESET)], RESET_REPLY_WORDS)?;
        let mut mac = match reply.msg {
            mailbox::MailboxMsg::VfResetReply { mac } if reply.flags.ack => mac,
            _ => MacAddr::ZERO,
        };
        if let (true, Some(own)) = (mac.is_zero(), fallback) {
            let set = Message::request(mailbox::MailboxMsg::SetMacAddr {
                op: mailbox::MacFilterOp::Set,
                mac: own,
            });
            let answer = raw_exchange(&vf, &set.to_words(), RESET_REPLY_WORDS)?;
            if answer.flags.ack {
                mac = own;
            }
        }
        guest.drv.open_rings(&vf);
        self.endpoints[idx].stack.mac = mac;
        self.settle();
        Ok(Some(reply))
    }

    /// igbvf's `write_posted` then `read_posted` of `reply_words` words, from endpoint `idx`'s
    /// VF: through the software igbvf (driver-attached), or scripted over the VF's registers.
    pub fn mailbox_exchange(
        &mut self,
        idx: usize,
        words: &[u32],
        reply_words: usize,
    ) -> Result<Message, MailboxError> {
        let name = self.endpoints[idx].name.clone();
        let Some(g) = self.endpoints[idx].vf.as_mut() else {
            return Err(MailboxError::NotAVf(name));
        };
        let reply = match g.attach {
            // A soft guest is never attached as a QEMU guest: treated as driver-attached.
            Attach::Driver | Attach::Guest => {
                let guest = &mut g.guest;
                guest.drv.write_posted(&guest.vf, words)?;
                let r = guest.drv.read_posted(&guest.vf, reply_words)?;
                guest.poll();
                Message::parse(&r)?
            }
            Attach::Port => raw_exchange(&g.guest.vf, words, reply_words)?,
        };
        self.settle();
        Ok(reply)
    }

    /// In process: what `serve` does when endpoint `idx`'s VF client disconnects (no more DMA
    /// or interrupts, frames waiting for it dropped, then the function-level reset, which the
    /// PF sees as a VF reset), then a fresh guest on the VF — new memory, a new driver, a new
    /// stack — brought up as at setup. Returns the VF_RESET reply of a port-attached endpoint.
    pub fn reattach(&mut self, idx: usize) -> Result<Option<Message>, crate::error::StepError> {
        let name = self.endpoints[idx].name.clone();
        let fail = |why: String| crate::error::StepError::Reattach {
            name: name.clone(),
            why,
        };
        let ep = &mut self.endpoints[idx];
        let Some(g) = ep.vf.as_mut() else {
            return Err(fail("not a VF endpoint".into()));
        };
        let handle = g.guest.vf.clone();
        handle.detach();
        handle.reset();
        let DriverConfig {
            card, random_mac, ..
        } = *g.guest.drv.config();
        g.guest = SoftGuest::attach(handle, driver_config(card, random_mac))
            .map_err(|e| fail(e.to_string()))?;
        g.next_watchdog_ns = 0;
        ep.stack = HostStack::new(MacAddr::ZERO, ep.stack.ip, ep.stack.vlan);
        // The reset's mailbox interrupt went nowhere: no client was attached.
        self.pump(VecDeque::new());
        self.bring_up(idx)
            .map_err(|e| fail(format!("bring-up: {e}")))
    }

    /// In process: endpoint `idx`'s interface joins (`join`) or leaves `group`; its software
    /// igbvf sends the whole list with SET_MULTICAST (`igbvf_set_multi`). Returns the list.
    pub fn multicast(
        &mut self,
        idx: usize,
        group: MacAddr,
        join: bool,
    ) -> Result<Vec<MacAddr>, crate::error::StepError> {
        use crate::error::StepError;
        if !group.is_multicast() {
            return Err(StepError::NotMulticast(group));
        }
        let ep = &mut self.endpoints[idx];
        let Some(g) = ep.vf.as_mut().filter(|g| g.attach == Attach::Driver) else {
            return Err(StepError::NoDriver(ep.name.clone()));
        };
        let mut list = g.guest.drv.mc_list.clone();
        list.retain(|&m| m != group.0);
        if join {
            list.push(group.0);
        }
        g.guest
            .drv
            .set_mc_list(&g.guest.vf, list)
            .map_err(MailboxError::from)?;
        g.guest.poll();
        let list = g.guest.drv.mc_list.iter().map(|&m| MacAddr(m)).collect();
        self.settle();
        Ok(list)
    }
}

fn rd(vf: &VfHandle, offset: u64) -> u32 {
    let mut b = [0u8; 4];
    // A 4-byte aligned BAR0 read is always accepted.
    let _ = vf.region_read(0, offset, &mut b);
    u32::from_le_bytes(b)
}

fn wr(vf: &VfHandle, offset: u64, value: u32) {
    let _ = vf.region_write(0, offset, &value.to_le_bytes());
}

/// One request and its reply over VF `vf`'s mailbox registers, in igbvf's order: take VFU,
/// write the words, REQ; PFACK and PFSTS must be set; take VFU, read the reply, ACK.
fn raw_exchange(vf: &VfHandle, words: &[u32], reply_words: usize) -> Result<Message, MailboxError> {
    wr(vf, regs::V2PMAILBOX, v2p::VFU);
    if rd(vf, regs::V2PMAILBOX) & v2p::VFU == 0 {
        return Err(MailboxError::LockNotGranted);
    }
    for (w, &value) in words.iter().enumerate() {
        wr(vf, regs::VMBMEM + 4 * w as u64, value);
    }
    wr(vf, regs::V2PMAILBOX, v2p::REQ);
    let status = rd(vf, regs::V2PMAILBOX);
    if status & v2p::PFACK == 0 || status & v2p::PFSTS == 0 {
        return Err(MailboxError::NoReply(status));
    }
    wr(vf, regs::V2PMAILBOX, v2p::VFU);
    let reply: Vec<u32> = (0..reply_words)
        .map(|w| rd(vf, regs::VMBMEM + 4 * w as u64))
        .collect();
    wr(vf, regs::V2PMAILBOX, v2p::ACK);
    Ok(Message::parse(&reply)?)
}

fn driver_config(card: model::Card, random_mac: [u8; 6]) -> DriverConfig {
    DriverConfig {
        card,
        random_mac,
        ..DriverConfig::default()
    }
}
