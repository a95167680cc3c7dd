//! A step's action: what each kind of step does to the world (or, in the guest mode, has a
//! guest do), and the outcome it records for the checks.

use super::*;

/// Carries out `step`'s action on `world`: what happened, and what the checks read of it.
pub(super) fn act(world: &mut World, step: &Step) -> StepResult {
    let mut o = Outcome::default();
    // Guest mode: what a guest endpoint does itself, and what only the in-process world can.
    let guest_of = |name: &str| world.endpoint(name).filter(|&i| is_guest(world, i));
    match step {
        Step::Ping { from, .. } | Step::Arping { from, .. } if guest_of(from).is_some() => {
            let idx = endpoint(world, from)?;
            return act_in_guest(world, idx, step);
        }
        Step::Reload { endpoint: name, .. } if guest_of(name).is_some() => {
            let idx = endpoint(world, name)?;
            return act_in_guest(world, idx, step);
        }
        Step::Join { endpoint: name, .. } | Step::Leave { endpoint: name, .. }
            if guest_of(name).is_some() =>
        {
            let idx = endpoint(world, name)?;
            return act_in_guest(world, idx, step);
        }
        Step::Reattach { endpoint: name, .. } if guest_of(name).is_some() => {
            let idx = endpoint(world, name)?;
            return reattach_guest(world, idx);
        }
        Step::Shell { guest, .. } => {
            let idx = endpoint(world, guest)?;
            if !is_guest(world, idx) {
                return skip(
                    &mut o,
                    format!("{guest} is not a QEMU guest: `shell` runs in the guest mode only"),
                );
            }
            return act_in_guest(world, idx, step);
        }
        Step::Send { from, .. } if guest_of(from).is_some() => {
            let idx = endpoint(world, from)?;
            return act_in_guest(world, idx, step);
        }
        Step::Mailbox { from, .. } if guest_of(from).is_some() => {
            return skip(
                &mut o,
                format!(
                    "{from} is a QEMU guest: hand-made mailbox requests come from the \
                     in-process world only"
                ),
            );
        }
        Step::Traffic {
            from,
            to,
            proto: Proto::Tcp,
            ..
        } => {
            for name in [from, to] {
                if !is_guest(world, endpoint(world, name)?) {
                    let world_is = if world.has_guests() {
                        "not a QEMU guest in this run"
                    } else {
                        "in process (TCP runs in the guest mode only)"
                    };
                    return skip(
                        &mut o,
                        format!(
                            "{name} is {world_is}: `proto = \"tcp\"` runs iperf3 between two \
                             QEMU guests"
                        ),
                    );
                }
            }
            return tcp_between_guests(world, step);
        }
        Step::Traffic { from, to, .. } if guest_of(from).is_some() || guest_of(to).is_some() => {
            return traffic_with_guests(world, step);
        }
        _ => {}
    }
    let guests = world.has_guests();
    match step {
        Step::Ping {
            from,
            target,
            count,
            ..
        } => {
            let idx = endpoint(world, from)?;
            let Some(mac) = resolve(world, idx, *target) else {
                o.happened.push(format!("no ARP reply for {target}"));
                o.answered = Some(false);
                return Ok(o);
            };
            let before = world.endpoints[idx].stack.echo_replies.len();
            let n = count.unwrap_or(1);
            for seq in 1..=n {
                let f = world.endpoints[idx].stack.echo_request(mac, *target, seq);
                world.send(idx, f);
                if guests {
                    let want = before + usize::from(seq);
                    world.pump_until(GUEST_ANSWER_WAIT, |w| {
                        w.endpoints[idx].stack.echo_replies.len() >= want
                    });
                }
            }
            let got = world.endpoints[idx].stack.echo_replies.len() - before;
            o.happened.push(format!("{got}/{n} echo replies"));
            o.answered = Some(got == usize::from(n));
        }
        Step::Arping { from, target, .. } => {
            let idx = endpoint(world, from)?;
            world.endpoints[idx].stack.neighbours.remove(target);
            let req = world.endpoints[idx].stack.arp_request(*target);
            world.send(idx, req);
            if guests {
                world.pump_until(GUEST_ANSWER_WAIT, |w| {
                    w.endpoints[idx].stack.neighbours.contains_key(target)
                });
            }
            let got = world.endpoints[idx].stack.neighbours.get(target).copied();
            o.happened.push(match got {
                Some(mac) => format!("{target} is at {mac}"),
                None => format!("no ARP reply for {target}"),
            });
            o.answered = Some(got.is_some());
        }
        Step::Send { from, .. } => {
            let idx = endpoint(world, from)?;
            let spec = frame_spec(step).ok_or_else(|| StepError::Guest("not a send".into()))?;
            let f = crafted_frame(&spec, world.mac_of(idx));
            for _ in 0..spec.count {
                world.send(idx, f.clone());
            }
        }
        Step::Set { port, vf, set, .. } => {
            let words: Vec<&str> = set.split_whitespace().collect();
            let nic = world.nic(port.0).ok_or(StepError::NoSuchPf(*port))?;
            let result = nic.configure_vf_words(*vf, &words);
            match &result {
                Ok(()) => o.happened.push("accepted".into()),
                Err(e) => o.happened.push(format!("refused: {e}")),
            }
            // A changed MAC or VLAN pinged the VF: its driver re-checks the link.
            world.settle();
            o.set_result = Some(result);
        }
        Step::Mailbox {
            from,
            request,
            mac,
            groups,
            vid,
            add,
            promisc,
            max_frame,
            xcast,
            adopt,
            ..
        } => {
            let idx = endpoint(world, from)?;
            let need_mac = || {
                mac.ok_or(StepError::MissingKey {
                    request: request.name(),
                    key: "mac",
                })
            };
            // The PF's reply echoes the request's layout (its payload words included).
            let igb = |msg: MailboxMsg| {
                let reply_words = msg.wire_len();
                (Message::request(msg).to_words(), reply_words)
            };
            // ixgbevf's own messages (an 82599 VF's): the reply's flags read from word 0 as igb's.
            let ixgbe = |msg: IxgbeMsg, reply_words: usize| {
                let words = IxgbeMessage::request(msg)
                    .to_words()
                    .expect("a request within the wire's ranges");
                (words, reply_words)
            };
            let (words, reply_words) = match request {
                MailboxRequest::SetMac => igb(MailboxMsg::SetMacAddr {
                    op: MacFilterOp::Set,
                    mac: need_mac()?,
                }),
                MailboxRequest::AddMacFilter => igb(MailboxMsg::SetMacAddr {
                    op: MacFilterOp::Add,
                    mac: need_mac()?,
                }),
                MailboxRequest::Multicast => {
                    let hashes: Vec<u16> = groups.iter().map(|&g| eswitch::mta_hash(g)).collect();
                    let count = u8::try_from(hashes.len()).unwrap_or(u8::MAX);
                    igb(MailboxMsg::SetMulticast { count, hashes })
                }
                MailboxRequest::Vlan => igb(MailboxMsg::SetVlan {
                    add: add.unwrap_or(true),
                    vid: vid.ok_or(StepError::MissingKey {
                        request: "vlan",
                        key: "vid",
                    })?,
                }),
                MailboxRequest::Promisc => {
                    let flags = match promisc.ok_or(StepError::MissingKey {
                        request: "promisc",
                        key: "promisc",
                    })? {
                        PromiscMode::Off => PromiscFlags::NONE,
                        PromiscMode::Multicast => PromiscFlags::MULTICAST,
                        PromiscMode::Unicast => {
                            PromiscFlags(PromiscFlags::UNICAST.0 | PromiscFlags::MULTICAST.0)
                        }
                    };
                    igb(MailboxMsg::SetPromisc { flags })
                }
                MailboxRequest::Lpe => igb(MailboxMsg::SetLpe {
                    max_frame: max_frame.ok_or(StepError::MissingKey {
                        request: "lpe",
                        key: "max_frame",
                    })?,
                }),
                MailboxRequest::Xcast => {
                    let mode = match xcast.ok_or(StepError::MissingKey {
                        request: "xcast",
                        key: "xcast",
                    })? {
                        Xcast::None => XcastMode::None,
                        Xcast::Multi => XcastMode::Multi,
                        Xcast::Allmulti => XcastMode::AllMulti,
                        Xcast::Promisc => XcastMode::Promisc,
                    };
                    ixgbe(IxgbeMsg::UpdateXcastMode { mode }, 2)
                }
                MailboxRequest::Reta => ixgbe(IxgbeMsg::GetReta, ixgbe_len::RETA_REPLY),
                MailboxRequest::Macvlan => ixgbe(
                    IxgbeMsg::SetMacvlan {
                        index: 1,
                        mac: need_mac()?,
                    },
                    ixgbe_len::MAC,
                ),
            };
            let reply = world.mailbox_exchange(idx, &words, reply_words)?;
            o.happened.push(format!("PF answered {}", verdict(&reply)));
            if let MailboxRequest::SetMac = request {
                if reply.flags.ack || *adopt == Adopt::Always {
                    world.endpoints[idx].stack.mac = need_mac()?;
                }
            }
            o.reply = Some(reply);
        }
        Step::Reload { endpoint: name, .. } => {
            let idx = endpoint(world, name)?;
            let reply = world.bring_up(idx)?;
            if let Some(r) = &reply {
                o.happened.push(format!("VF_RESET answered {}", verdict(r)));
            }
            o.happened
                .push(format!("{name} has MAC {}", world.mac_of(idx)));
            o.reply = reply;
        }
        Step::Join {
            endpoint: name,
            group,
            ..
        }
        | Step::Leave {
            endpoint: name,
            group,
            ..
        } => {
            let idx = endpoint(world, name)?;
            let join = matches!(step, Step::Join { .. });
            let list = world.multicast(idx, *group, join)?;
            o.happened.push(format!(
                "{name}'s igbvf sent its multicast list with SET_MULTICAST: {}",
                if list.is_empty() {
                    "empty".to_string()
                } else {
                    list.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ));
        }
        Step::Reattach { endpoint: name, .. } => {
            let idx = endpoint(world, name)?;
            let reply = world.reattach(idx)?;
            o.happened.push(format!(
                "{name}'s client detached, its VF reset; a fresh driver attached"
            ));
            if let Some(r) = &reply {
                o.happened.push(format!("VF_RESET answered {}", verdict(r)));
            }
            o.happened
                .push(format!("{name} has MAC {}", world.mac_of(idx)));
            o.reply = reply;
        }
        Step::Link { port, up, .. } => {
            world
                .nic(port.0)
                .ok_or(StepError::NoSuchPf(*port))?
                .set_link(*up);
            world.settle();
        }
        Step::Cable { a, b, plug, .. } => {
            if *plug {
                world.plug(*a, *b)?;
                o.happened.push(format!("{a} and {b} are cabled"));
            } else {
                world.unplug(*a, *b)?;
                o.happened.push(format!("{a} and {b} are no longer cabled"));
            }
        }
        Step::Fault { port, fault, .. } => {
            let nic = world.nic(port.0).ok_or(StepError::NoSuchPf(*port))?.clone();
            let words: Vec<&str> = fault.split_whitespace().collect();
            // Checked at load against the card the file declares; the NIC may be another.
            let done = Fault::parse(&words, &nic.ports())
                .and_then(|parsed| nic.inject_fault(parsed))
                .map_err(|message| StepError::Fault {
                    words: fault.clone(),
                    message,
                })?;
            o.happened.push(done);
            // A PF reset or a link change pinged the VFs: their drivers look.
            world.settle();
        }
        Step::Wait { ms, .. } => {
            let t = world.now() + ms * NS_PER_MS;
            world.advance_to(t);
        }
        Step::Traffic { .. } => {
            let t = traffic_plan(world, step)?;
            let Some(dst_mac) = resolve(world, t.src, t.target) else {
                o.happened.push(format!("no ARP reply for {}", t.target));
                o.rate_mbps = Some(0.0);
                return Ok(o);
            };
            let bits_before = world.endpoints[t.dst].stack.udp.wire_bits;
            let sent = generate(world, &t, dst_mac);
            let bits = world.endpoints[t.dst].stack.udp.wire_bits - bits_before;
            let rate = t.rate(bits);
            o.happened.push(format!(
                "{sent} frames of {} bytes offered at {} Mbit/s; received {rate:.2} Mbit/s",
                t.size, t.offered
            ));
            o.rate_mbps = Some(rate);
        }
        Step::Shell { .. } | Step::Check { .. } => {}
    }
    if guests
        && matches!(
            step,
            Step::Set { .. } | Step::Link { .. } | Step::Fault { .. } | Step::Send { .. }
        )
    {
        // The guests react in real time (a PF ping's interrupt, a link check, an answer).
        world.pump_until(GUEST_REACT, |_| false);
    }
    Ok(o)
}
