//! The steps a QEMU guest carries out in the guest mode (ping, arping, send, reload, shell,
//! traffic with UDP or TCP), and the guest's own view a step reads before and after it acts
//! (interface counters, neighbour table, kernel log, a capture inside the guest).

use super::*;

/// The views of the endpoints `expect.endpoint` names: a guest's from the guest itself, an
/// in-process endpoint's from its record.
pub(super) fn endpoint_views(world: &mut World, expect: &Expect) -> BTreeMap<String, NetView> {
    let mut out = BTreeMap::new();
    for c in &expect.endpoint {
        if out.contains_key(&c.name) {
            continue;
        }
        let Some(idx) = world.endpoint(&c.name) else {
            continue;
        };
        let view = if world.endpoints[idx].vm.is_some() {
            match world.guest_command(idx, netview::GUEST_COMMAND, Duration::from_secs(10)) {
                Ok(a) => netview::parse(&a.output),
                Err(e) => NetView {
                    source: "guest",
                    error: Some(e.to_string()),
                    ..NetView::default()
                },
            }
        } else {
            netview::of_record(world, idx)
        };
        out.insert(c.name.clone(), view);
    }
    out
}

/// The interface counters of the endpoints whose `stats` the step checks, before it.
pub(super) fn endpoint_stats(
    world: &mut World,
    expect: &Expect,
) -> BTreeMap<String, BTreeMap<String, u64>> {
    let wanted = Expect {
        endpoint: expect
            .endpoint
            .iter()
            .filter(|c| !c.stats.is_empty())
            .cloned()
            .collect(),
        ..Expect::default()
    };
    endpoint_views(world, &wanted)
        .into_iter()
        .map(|(name, v)| (name, v.stats))
        .collect()
}

/// Where a guest's capture writes its output and its process id.
pub(super) const GUEST_CAPTURE_FILE: &str = "/tmp/sriov-emu-capture";
/// A capture in a guest runs at most this long (it is collected at the step's end).
pub(super) const GUEST_CAPTURE_MAX_MS: u64 = 600_000;
/// Kinds of captured frame a step's report lists per guest.
pub(super) const GUEST_CAPTURE_KINDS: usize = 4;

/// Starts `sriov-emu-guest-send capture` in the background in every guest
/// `expect.guest_captured` names, each listening before the step acts: the guests and whether
/// their capture started (else why not).
pub(super) fn start_captures(
    world: &mut World,
    expect: &Expect,
) -> Vec<(usize, Result<(), String>)> {
    let mut out: Vec<(usize, Result<(), String>)> = Vec::new();
    for c in &expect.guest_captured {
        let Some(idx) = world.endpoint(&c.guest) else {
            continue;
        };
        if world.endpoints[idx].vm.is_none() || out.iter().any(|(i, _)| *i == idx) {
            continue;
        }
        let started = world.guest_helper().and_then(|()| {
            let cmd = guest_send::Command::Capture {
                dev: "eth0".into(),
                ms: GUEST_CAPTURE_MAX_MS,
                count: None,
            };
            let a = world
                .guest_command(
                    idx,
                    &capture_start(&cmd.command_line()),
                    Duration::from_secs(15),
                )
                .map_err(|e| e.to_string())?;
            if a.exit == 0 {
                Ok(())
            } else {
                Err(format!(
                    "{} capture did not start (exit {}): {}",
                    guest_send::HELPER,
                    a.exit,
                    a.output.trim()
                ))
            }
        });
        out.push((idx, started));
    }
    out
}

/// The shell command that starts a capture in the background and returns once it listens.
pub(super) fn capture_start(command_line: &str) -> String {
    format!(
        r#"f={GUEST_CAPTURE_FILE}
[ -f $f.pid ] && kill $(cat $f.pid) 2>/dev/null
rm -f $f.out $f.pid
{command_line} > $f.out 2>&1 < /dev/null 3<&- 4>&- &
echo $! > $f.pid
i=0
until grep -q '^listening' $f.out 2>/dev/null; do
    i=$((i+1))
    if [ $i -gt 250 ]; then cat $f.out; exit 1; fi
    usleep 20000
done"#
    )
}

/// Stops the captures [`start_captures`] started and reads what each guest received.
pub(super) fn collect_captures(
    world: &mut World,
    capturing: Vec<(usize, Result<(), String>)>,
) -> BTreeMap<String, Result<crate::received::Tally, String>> {
    let collect = format!(
        r#"f={GUEST_CAPTURE_FILE}
[ -f $f.pid ] && kill -TERM $(cat $f.pid) 2>/dev/null
i=0
until grep -q '^result' $f.out 2>/dev/null || [ $i -gt 150 ]; do i=$((i+1)); usleep 20000; done
rm -f $f.pid
cat $f.out"#
    );
    let mut out = BTreeMap::new();
    for (idx, started) in capturing {
        let name = world.endpoints[idx].name.clone();
        let got = started.and_then(|()| {
            let a = world
                .guest_command(idx, &collect, Duration::from_secs(15))
                .map_err(|e| e.to_string())?;
            if guest_send::parse_results(&a.output).contains_key("frames") {
                Ok(crate::received::Tally::parse(&a.output))
            } else {
                Err(format!(
                    "{} capture gave no result: {}",
                    guest_send::HELPER,
                    a.output.trim()
                ))
            }
        });
        out.insert(name, got);
    }
    out
}

/// Each guest's kernel log since the last read (`dmesg -c`), by endpoint name. A guest that
/// does not answer has its error in place of the log.
pub(super) fn guest_logs(world: &mut World) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let guests: Vec<usize> = (0..world.endpoints.len())
        .filter(|&i| world.endpoints[i].vm.is_some())
        .collect();
    for idx in guests {
        let name = world.endpoints[idx].name.clone();
        let log = match world.guest_command(idx, "dmesg -c", Duration::from_secs(10)) {
            Ok(a) => a.output,
            Err(e) => format!("(no log: {e})"),
        };
        out.insert(name, log);
    }
    out
}

/// The port of the QEMU guest that carries the step out, if one does.
pub(super) fn guest_sender(world: &World, step: &Step) -> Option<PortRef> {
    let name = match step {
        Step::Ping { from, .. }
        | Step::Arping { from, .. }
        | Step::Send { from, .. }
        | Step::Traffic { from, .. } => from,
        Step::Shell { guest, .. } => guest,
        Step::Reload { endpoint, .. }
        | Step::Reattach { endpoint, .. }
        | Step::Join { endpoint, .. }
        | Step::Leave { endpoint, .. } => endpoint,
        _ => return None,
    };
    let idx = world.endpoint(name)?;
    is_guest(world, idx).then(|| world.endpoints[idx].port)
}

/// The endpoint `idx` is a QEMU guest.
pub(super) fn is_guest(world: &World, idx: usize) -> bool {
    world.endpoints[idx].guest
}

pub(super) fn skip(o: &mut Outcome, why: impl Into<String>) -> StepResult {
    o.skipped = Some(why.into());
    Ok(std::mem::take(o))
}

/// The number before `what` in a tool's output (`3 packets received`, `Received 1 response`).
pub(super) fn count_before(output: &str, what: &str) -> Option<u32> {
    let at = output.find(what)?;
    output[..at].split_whitespace().last()?.parse().ok()
}

/// The number after `what` (`Received 1 response(s)`).
pub(super) fn count_after(output: &str, what: &str) -> Option<u32> {
    let at = output.find(what)? + what.len();
    output[at..].split_whitespace().next()?.parse().ok()
}

/// A ping, ARP request or reload carried out by a guest endpoint's own tools.
pub(super) fn act_in_guest(world: &mut World, idx: usize, step: &Step) -> StepResult {
    let mut o = Outcome::default();
    let timeout = world.command_timeout();
    let run = |world: &mut World, cmd: &str| {
        world
            .guest_command(idx, cmd, timeout)
            .map_err(|e| StepError::Guest(e.to_string()))
    };
    match step {
        Step::Ping { target, count, .. } => {
            let n = count.unwrap_or(1);
            // One second between echo requests, as ping does; a few more for the last answer.
            let a = run(
                world,
                &format!("ping -c {n} -w {} {target}", u32::from(n) + 3),
            )?;
            let got = count_before(&a.output, "packets received").unwrap_or(0);
            o.happened
                .push(format!("{got}/{n} echo replies (guest ping)"));
            o.answered = Some(got == u32::from(n));
        }
        Step::Arping { target, .. } => {
            let a = run(world, &format!("arping -f -c 1 -w 1 -I eth0 {target}"))?;
            let got = count_after(&a.output, "Received").unwrap_or(0);
            o.happened.push(if got > 0 {
                let at = a
                    .output
                    .lines()
                    .find(|l| l.contains("reply from"))
                    .unwrap_or("")
                    .trim()
                    .to_string();
                format!("answered (guest arping): {at}")
            } else {
                format!("no ARP reply for {target} (guest arping)")
            });
            o.answered = Some(got > 0);
        }
        Step::Reload { endpoint: name, .. } => {
            let a = run(
                world,
                "rmmod \"$(basename \"$(readlink /sys/class/net/eth0/device/driver)\")\" && sh /lib/sriov-emu/up.sh && cat /sys/class/net/eth0/address",
            )?;
            if a.exit != 0 {
                return Err(StepError::Guest(format!(
                    "{name}: reloading the VF driver failed ({}): {}",
                    a.exit,
                    a.output.trim()
                )));
            }
            let mac = a.output.lines().last().unwrap_or("").trim().to_string();
            if let Ok(m) = mac.parse() {
                world.endpoints[idx].stack.mac = m;
            }
            o.happened
                .push(format!("{name} reloaded igbvf, has MAC {mac}"));
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
            if !group.is_multicast() {
                return Err(StepError::NotMulticast(*group));
            }
            let verb = if matches!(step, Step::Join { .. }) {
                "add"
            } else {
                "del"
            };
            let a = run(
                world,
                &format!(
                    "ip maddr {verb} {group} dev eth0 && ip maddr show dev eth0 | \
                     awk '$1 == \"link\" {{ print $2 }}'"
                ),
            )?;
            if a.exit != 0 {
                return Err(StepError::Guest(format!(
                    "{name}: ip maddr {verb} {group} failed ({}): {}",
                    a.exit,
                    a.output.trim()
                )));
            }
            let list: Vec<&str> = a.output.split_whitespace().collect();
            o.happened.push(format!(
                "{name} ran ip maddr {verb}; its link-layer multicast list: {}",
                list.join(", ")
            ));
        }
        Step::Shell {
            command, timeout_s, ..
        } => {
            let t = timeout_s.map_or(timeout, Duration::from_secs);
            let a = world
                .guest_command(idx, command, t)
                .map_err(|e| StepError::Guest(e.to_string()))?;
            o.happened.push(format!("exit status {}", a.exit));
            if let Some(last) = a.output.lines().rev().find(|l| !l.trim().is_empty()) {
                o.happened.push(format!("output: {}", last.trim()));
            }
            o.exit = Some(a.exit);
            o.output = Some(a.output);
        }
        Step::Send { .. } => {
            world.guest_helper().map_err(StepError::Guest)?;
            let spec = frame_spec(step).ok_or_else(|| StepError::Guest("not a send".into()))?;
            let cmd = guest_send::Command::Frames {
                dev: "eth0".into(),
                spec,
            };
            let a = run(world, &cmd.command_line())?;
            if a.exit != 0 {
                return Err(StepError::Guest(format!(
                    "{}: {} failed ({}): {}",
                    world.endpoints[idx].name,
                    guest_send::HELPER,
                    a.exit,
                    a.output.trim()
                )));
            }
            let r = guest_send::parse_results(&a.output);
            let field = |k: &str| r.get(k).map_or("?", String::as_str);
            o.happened.push(format!(
                "{} frame(s) of {} bytes from {} to {} sent by {} in the guest",
                field("sent"),
                field("len"),
                field("src"),
                field("dst"),
                guest_send::HELPER
            ));
            // The NIC switches them in real time: let them all reach the observer.
            world.pump_until(GUEST_REACT, |_| false);
        }
        _ => return skip(&mut o, "not a step a guest carries out"),
    }
    Ok(o)
}

/// A `reattach` of a QEMU guest: SIGKILL to its QEMU (the VF's client gone without a word;
/// `serve` detaches and resets the function), then a fresh guest on the same VF socket, up once
/// its igbvf netdev is up with the endpoint's IP.
pub(super) fn reattach_guest(world: &mut World, idx: usize) -> StepResult {
    let mut o = Outcome::default();
    let name = world.endpoints[idx].name.clone();
    let t = Instant::now();
    world
        .reattach_guest(idx)
        .map_err(|e| StepError::Guest(e.to_string()))?;
    o.happened.push(format!("{name}'s QEMU killed (SIGKILL)"));
    o.happened.push(format!(
        "a fresh guest booted on the same VF socket, igbvf up with MAC {} after {:.1} s",
        world.mac_of(idx),
        t.elapsed().as_secs_f64()
    ));
    Ok(o)
}

/// How long a guest's UDP meter gets to bind its socket before the sender starts.
pub(super) const METER_READY: Duration = Duration::from_millis(500);

/// A `traffic` step with a QEMU guest at one end or both: UDP from the guest's own stack
/// (`sriov-emu-guest-send udp`, paced like the in-process generator), counted by the receiver
/// (`sriov-emu-guest-send meter` in a guest, the in-process meter otherwise) in frame + FCS
/// bits over the step's duration, as in process.
pub(super) fn traffic_with_guests(world: &mut World, step: &Step) -> StepResult {
    let mut o = Outcome::default();
    world.guest_helper().map_err(StepError::Guest)?;
    let t = traffic_plan(world, step)?;
    let port = crate::stack::TRAFFIC_PORT;
    let timeout = Duration::from_millis(t.duration_ms) + world.command_timeout();
    let guest_err = |e: crate::guests::GuestError| StepError::Guest(e.to_string());
    let helper_failed = |world: &World, idx: usize, a: &crate::guests::Answer| {
        StepError::Guest(format!(
            "{}: {} failed ({}): {}",
            world.endpoints[idx].name,
            guest_send::HELPER,
            a.exit,
            a.output.trim()
        ))
    };
    let meter = if is_guest(world, t.dst) {
        let cmd = guest_send::Command::Meter {
            port,
            ms: t.duration_ms,
        };
        let p = world
            .guest_start(t.dst, &cmd.command_line(), timeout)
            .map_err(guest_err)?;
        world.pump_until(METER_READY, |_| false);
        Some(p)
    } else {
        None
    };
    let bits_before = world.endpoints[t.dst].stack.udp.wire_bits;
    // An in-process receiver of a guest's UDP counts over the step's duration from the first
    // frame it gets: not the sender's start-up before it, nor what its queues still hold after
    // (under a rate limit, the frames a shaper held back drain at the limit once the sender
    // stopped).
    let mut window: Option<u64> = None;
    let sent = if is_guest(world, t.src) {
        let cmd = guest_send::Command::Udp(guest_send::UdpSpec {
            to: t.target,
            port,
            size: t.size,
            mbps: t.offered,
            ms: t.duration_ms,
        });
        let pending = world
            .guest_start(t.src, &cmd.command_line(), timeout)
            .map_err(guest_err)?;
        let mut early = None;
        if meter.is_none() {
            let dst = t.dst;
            let first = loop {
                let got = world.pump_until(Duration::from_millis(10), |w| {
                    w.endpoints[dst].stack.udp.wire_bits > bits_before
                });
                if got {
                    break Some(world.endpoints[dst].stack.udp.wire_bits);
                }
                if let Some(a) = world.guest_poll(t.src, &pending).map_err(guest_err)? {
                    // The sender finished before its first frame came in.
                    early = Some(a);
                    break None;
                }
            };
            if let Some(first) = first {
                world.pump_until(Duration::from_millis(t.duration_ms), |_| false);
                window = Some(world.endpoints[dst].stack.udp.wire_bits - first);
            }
        }
        let a = match early {
            Some(a) => a,
            None => world.guest_finish(t.src, &pending).map_err(guest_err)?,
        };
        if a.exit != 0 {
            return Err(helper_failed(world, t.src, &a));
        }
        let r = guest_send::parse_results(&a.output);
        let n = |k: &str| r.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        if n("refused") > 0 {
            o.happened.push(format!(
                "the guest's stack refused {} datagram(s)",
                n("refused")
            ));
        }
        n("sent")
    } else {
        let Some(dst_mac) = resolve(world, t.src, t.target) else {
            o.happened.push(format!("no ARP reply for {}", t.target));
            o.rate_mbps = Some(0.0);
            return Ok(o);
        };
        generate(world, &t, dst_mac)
    };
    let bits = match meter {
        Some(p) => {
            let a = world.guest_finish(t.dst, &p).map_err(guest_err)?;
            if a.exit != 0 {
                return Err(helper_failed(world, t.dst, &a));
            }
            let r = guest_send::parse_results(&a.output);
            r.get("bits").and_then(|v| v.parse().ok()).unwrap_or(0)
        }
        None => match window {
            Some(bits) => bits,
            None => {
                // The last frames are still on their way through the NIC.
                world.pump_until(GUEST_REACT, |_| false);
                world.endpoints[t.dst].stack.udp.wire_bits - bits_before
            }
        },
    };
    let rate = t.rate(bits);
    o.happened.push(format!(
        "{sent} frames of {} bytes offered at {} Mbit/s; received {rate:.2} Mbit/s",
        t.size, t.offered
    ));
    o.rate_mbps = Some(rate);
    Ok(o)
}

/// How long the TCP step's ends get beyond its seconds: the client's retries while the server
/// starts listening, the end-of-test exchange, a slow TCG guest.
pub(super) const TCP_MARGIN: Duration = Duration::from_secs(20);

/// A TCP `traffic` step between two QEMU guests: `iperf3 -s -1` in the receiver, then `iperf3
/// -c` in the sender for the step's duration rounded up to whole seconds (`-b` at the offered
/// rate, if any); the rate is the receiver's TCP payload throughput as its iperf3 counted it
/// (not frame bits, unlike UDP).
pub(super) fn tcp_between_guests(world: &mut World, step: &Step) -> StepResult {
    let mut o = Outcome::default();
    let Step::Traffic {
        offered_mbps,
        duration_ms,
        ..
    } = step
    else {
        return Err(StepError::Guest("not a traffic step".into()));
    };
    let t = traffic_plan(world, step)?;
    let secs = t.duration_ms.div_ceil(1000).max(1);
    let timeout = Duration::from_secs(secs) + TCP_MARGIN;
    let guest_err = |e: crate::guests::GuestError| StepError::Guest(e.to_string());
    let (from, to) = (
        world.endpoints[t.src].name.clone(),
        world.endpoints[t.dst].name.clone(),
    );
    let server = world
        .guest_start(t.dst, &iperf::server_command(), timeout)
        .map_err(guest_err)?;
    let client = world.guest_command(
        t.src,
        &iperf::client_command(t.target, secs, *offered_mbps),
        timeout,
    );
    // The server ends with its test, or at its timeout when the client never came.
    let server = world.guest_finish(t.dst, &server).map_err(guest_err)?;
    let client = client.map_err(guest_err)?;
    let said = |a: &crate::guests::Answer| {
        let s = iperf::parse(&a.output);
        let why = s.as_ref().and_then(|s| s.error.clone()).unwrap_or_else(|| {
            let out = a.output.split_whitespace().collect::<Vec<_>>().join(" ");
            let tail: String = out.chars().rev().take(300).collect();
            tail.chars().rev().collect()
        });
        (s, why)
    };
    let (cs, cwhy) = said(&client);
    // iperf3 -J says it failed in its output, and may still exit 0.
    if client.exit != 0 || cs.as_ref().is_some_and(|s| s.error.is_some()) {
        return Err(StepError::Guest(format!(
            "{from}: iperf3 -c {} failed ({}): {cwhy}",
            t.target, client.exit
        )));
    }
    let (ss, swhy) = said(&server);
    let received = ss
        .as_ref()
        .and_then(|s| s.received)
        .or_else(|| cs.as_ref().and_then(|s| s.received));
    let Some(received) = received else {
        return Err(StepError::Guest(format!(
            "{to}: no receiver summary from iperf3 -s (exit {}): {swhy}; none in {from}'s \
             iperf3 -c either",
            server.exit
        )));
    };
    if duration_ms.is_some_and(|ms| ms % 1000 != 0) {
        o.happened.push(format!(
            "duration_ms rounded up to {secs} s for iperf3's -t"
        ));
    }
    if let Some(sent) = cs.as_ref().and_then(|s| s.sent) {
        let retr = cs
            .as_ref()
            .and_then(|s| s.retransmits)
            .map_or(String::new(), |r| format!(", {r} retransmission(s)"));
        o.happened.push(format!(
            "{from} sent {} bytes in {:.2} s ({:.2} Mbit/s{retr})",
            sent.bytes,
            sent.seconds,
            sent.mbps()
        ));
    }
    o.happened.push(format!(
        "{to} received {} bytes in {:.2} s: {:.2} Mbit/s of TCP payload (iperf3's count, not frame bits)",
        received.bytes,
        received.seconds,
        received.mbps()
    ));
    o.rate_mbps = Some(received.mbps());
    Ok(o)
}
