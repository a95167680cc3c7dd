use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use eswitch::{Delivery, DropReason, MacAddr, PortId, VfSetting};
use mailbox::MacAssignment;

use super::*;
use crate::function::stats::RxDrop;
use crate::function::GuestRam;
use crate::seams::{ManualClock, MonotonicClock, Switched};
use crate::testing::{DriverConfig, SoftGuest};

pub(super) struct Rig {
    pub(super) nic: Arc<Nic>,
    pub(super) clock: Arc<ManualClock>,
    pub(super) guests: Vec<SoftGuest>,
}

fn config(n: u16) -> NicConfig {
    NicConfig {
        num_vfs: n,
        mac_assignment: MacAssignment::Generated {
            seed: [0x52, 0x54, 0x00],
        },
        ..NicConfig::default()
    }
}

pub(super) fn rig(n: u16, cfgs: &[DriverConfig]) -> Rig {
    let clock = Arc::new(ManualClock::new(1_000_000_000));
    let nic = Nic::new(&config(n), clock.clone()).unwrap();
    let guests = (0..n)
        .map(|i| {
            let cfg = cfgs.get(usize::from(i)).copied().unwrap_or_default();
            let mut g = SoftGuest::attach(nic.vf(i).unwrap(), cfg).unwrap();
            g.up().unwrap();
            assert!(g.drv.check_link(&g.vf));
            g
        })
        .collect();
    Rig { nic, clock, guests }
}

impl Rig {
    pub(super) fn send(&mut self, from: usize, f: &[u8]) {
        self.guests[from].send(f).unwrap();
    }

    fn poll_guest(&mut self, i: usize) {
        self.guests[i].poll();
    }

    pub(super) fn poll_guests(&mut self) {
        for g in &mut self.guests {
            g.poll();
        }
    }

    pub(super) fn mac(&self, i: usize) -> [u8; 6] {
        self.guests[i].drv.mac
    }

    pub(super) fn received(&self, i: usize) -> Vec<Vec<u8>> {
        self.guests[i]
            .drv
            .received
            .iter()
            .map(|f| f.data.clone())
            .collect()
    }

    pub(super) fn port(&self, p: PortId) -> eswitch::PortCounters {
        self.nic
            .with_pf(|pf| pf.switch().counters(p).cloned())
            .unwrap()
    }
}

/// The frames the switch hands uplink 0, as they arrive.
fn uplink_sink(r: &Rig) -> Arc<Mutex<Vec<Bytes>>> {
    let up: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let u = up.clone();
    r.nic.set_port_sink(
        PortId::Uplink(0),
        Some(Arc::new(move |d: &Delivery| {
            u.lock().unwrap().push(d.frame.clone())
        })),
    );
    up
}

/// Two guests; VF 1's RX ring has 16 descriptors. Returns the rig and VF 1's free descriptors.
fn small_ring_pair() -> (Rig, usize) {
    let small = DriverConfig {
        ring: 16,
        ..DriverConfig::default()
    };
    let r = rig(2, &[DriverConfig::default(), small]);
    let free = r.guests[1].vf.rx_free_descriptors() as usize;
    (r, free)
}

pub(super) fn frame(dst: [u8; 6], src: [u8; 6], len: usize, seq: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0xB5]);
    f.extend_from_slice(&seq.to_be_bytes());
    f.resize(len.max(60), 0xA5);
    f
}

#[test]
fn unicast_and_broadcast_reach_vfs_and_the_uplink_sink() {
    let mut r = rig(3, &[]);
    let up = uplink_sink(&r);
    let (a, b) = (r.mac(0), r.mac(1));
    let f = frame(b, a, 98, 1);
    r.send(0, &f);
    r.poll_guests();
    assert_eq!(r.received(1), vec![f]);
    assert!(r.received(2).is_empty());
    let bc = frame([0xFF; 6], a, 60, 2);
    r.send(0, &bc);
    r.poll_guests();
    assert_eq!(r.received(1).len(), 2);
    assert_eq!(r.received(2).len(), 1);
    assert_eq!(
        up.lock().unwrap().len(),
        1,
        "the uplink sink got the broadcast"
    );
    assert_eq!(
        r.nic.counters().unclaimed.get("pf"),
        Some(&1),
        "no PF sink: counted"
    );
    assert_eq!(r.port(PortId::Vf(2)).rx_broadcast, 1);
    assert_eq!(r.port(PortId::Vf(0)).tx_packets, 2);
}

/// After `frames` (VF 1's free descriptors, its backlog and five more) went to VF 1 while it
/// did nothing: the backlog is full and the last five were dropped as `rx_full`, counted by
/// the switch and the VF; then B cleans and posts buffers (each RDT write drains the backlog)
/// and gets the rest in order.
fn assert_overflowed_then_drained(r: &mut Rig, free: usize, frames: &[Vec<u8>]) {
    assert_eq!(r.nic.counters().backlog[&1], BACKLOG_FRAMES);
    assert_eq!(r.port(PortId::Vf(1)).drops.rx_full, 5);
    let s = r.guests[1].vf.stats();
    assert_eq!(s.rx_drop(RxDrop::BacklogOverflow), 5);
    for _ in 0..200 {
        r.poll_guest(1);
        if r.nic.counters().backlog[&1] == 0 {
            break;
        }
    }
    r.poll_guest(1);
    assert_eq!(
        r.received(1),
        frames[..free + BACKLOG_FRAMES].to_vec(),
        "in order"
    );
}

#[test]
fn a_full_ring_backlogs_in_order_and_overflow_is_counted_as_rx_full() {
    let (mut r, free) = small_ring_pair();
    let (a, b) = (r.mac(0), r.mac(1));
    let total = free + BACKLOG_FRAMES + 5;
    let frames: Vec<Vec<u8>> = (0..total).map(|i| frame(b, a, 64, i as u16)).collect();
    for f in &frames {
        r.send(0, f);
        // A cleans its TX ring; B does nothing yet.
        r.poll_guest(0);
    }
    assert_overflowed_then_drained(&mut r, free, &frames);
}

#[test]
fn a_rate_limited_vf_pauses_and_poll_resumes_it_on_the_injected_clock() {
    let mut r = rig(2, &[]);
    r.nic
        .configure_vf(
            0,
            &VfSetting::parse_words(&["rate", "10"]).expect("valid words"),
        )
        .unwrap();
    let (a, b) = (r.mac(0), r.mac(1));
    let frames: Vec<Vec<u8>> = (0..20).map(|i| frame(b, a, 1514, i)).collect();
    for f in &frames {
        r.send(0, f);
    }
    let due = r.nic.next_wakeup().expect("the shaper deferred");
    r.poll_guests();
    assert!(r.received(1).len() < 20);
    assert_eq!(r.nic.poll(due - 1), Some(due), "not yet due");
    let mut t = due;
    while r.nic.next_wakeup().is_some() {
        r.clock.advance_to(t);
        if let Some(next) = r.nic.poll(t) {
            t = next.max(t);
        }
        r.poll_guests();
    }
    r.poll_guests();
    assert_eq!(r.received(1), frames);
    let elapsed = r.clock.now_ns() - 1_000_000_000;
    // 20 × 1518 B at 10 Mbit/s, minus the bucket's burst.
    assert!(elapsed > 10_000_000, "shaped: {elapsed} ns");
    assert!(r.port(PortId::Vf(0)).tx_deferred >= 1);
}

#[test]
fn a_due_queue_resumes_on_the_guests_next_register_write() {
    let mut r = rig(2, &[]);
    r.nic
        .configure_vf(0, &VfSetting::parse_words(&["rate", "10"]).unwrap())
        .unwrap();
    let (a, b) = (r.mac(0), r.mac(1));
    for i in 0..20 {
        r.send(0, &frame(b, a, 1514, i));
    }
    let due = r.nic.next_wakeup().expect("paused");
    let before = r.port(PortId::Vf(0)).tx_packets;
    r.clock.advance_to(due);
    // No poll: the guest's own interrupt re-arm (an EIMS write) resumes the queue.
    r.poll_guest(0);
    r.guests[0]
        .vf
        .region_write(
            0,
            crate::function::i82576::regs::VTEIMS,
            &1u32.to_le_bytes(),
        )
        .unwrap();
    assert!(r.port(PortId::Vf(0)).tx_packets > before);
}

#[test]
fn admin_mac_reaches_the_vf_and_refused_settings_change_nothing() {
    let mut r = rig(2, &[]);
    let mac = MacAddr([0x02, 0, 0, 0, 0, 0x10]);
    r.nic
        .configure_vf(0, &[VfSetting::Mac(mac), VfSetting::Trust(false)])
        .unwrap();
    r.poll_guests();
    let g = &mut r.guests[0];
    g.drv.probe(&g.vf).unwrap();
    assert_eq!(r.mac(0), mac.0, "VF_RESET reply carries the admin MAC");
    let before = r.nic.with_pf(|pf| pf.policy(1).cloned());
    let bad = VfSetting::parse_words(&["spoofchk", "off", "min_tx_rate", "5"]).unwrap();
    assert!(r.nic.configure_vf(1, &bad).is_err());
    assert_eq!(r.nic.with_pf(|pf| pf.policy(1).cloned()), before);
    // `state disable` takes the VF's link down.
    r.nic
        .configure_vf(1, &VfSetting::parse_words(&["state", "disable"]).unwrap())
        .unwrap();
    assert_eq!(
        r.guests[1].vf.link_status() & crate::function::i82576::regs::status::LU,
        0,
        "LU clear"
    );
}

/// VTCTRL.RST clears the VF's VFRE/VFTE (QEMU's `igb_vf_reset`) until the PF agent answers
/// its VF_RESET as igb does (`igb_vf_reset_msg` sets them): frames for it are dropped as
/// `rx_disabled`, its own are left in its ring, and they go with the reply, not at a later
/// look.
#[test]
fn a_resetting_vf_neither_receives_nor_sends_until_the_pf_answers_its_vf_reset() {
    let mut r = rig(2, &[]);
    let (m0, m1) = (r.mac(0), r.mac(1));
    let enabled = |r: &Rig| {
        r.nic
            .with_pf(|pf| pf.policy(1).map(|p| (p.rx_enabled, p.tx_enabled)))
            .unwrap()
    };
    assert_eq!(enabled(&r), (true, true));
    let rst = crate::function::i82576::regs::ctrl::RST;
    let g = &mut r.guests[1];
    g.drv.wr(&g.vf, g.drv.regs().ctrl, rst);
    assert_eq!(enabled(&r), (false, false), "VFRE and VFTE cleared");

    // Its MAC left the switch with the reset; a broadcast still finds its port.
    r.send(0, &frame([0xFF; 6], m0, 100, 1));
    assert_eq!(r.port(PortId::Vf(1)).drops.rx_disabled, 1);

    // A driver that runs its rings before the reset handshake: its frame stays in the ring.
    let g = &mut r.guests[1];
    g.drv.open_rings(&g.vf);
    g.send(&frame(m0, m1, 100, 2)).unwrap();
    let tx = g.vf.state().tx;
    assert_ne!(tx.head, tx.tail, "not fetched while VFTE is clear");
    r.poll_guest(0);
    assert!(r.guests[0].take_received().is_empty());
    assert_eq!(r.port(PortId::Vf(1)).drops.tx_disabled, 0);

    // VF_RESET: the reply sets both, and the held frame goes at once (the clock stands still).
    let g = &mut r.guests[1];
    let reply = g
        .drv
        .write_posted(&g.vf, &[u32::from(mailbox::regs::msg::ID_VF_RESET)])
        .and_then(|()| g.drv.read_posted(&g.vf, 3))
        .unwrap();
    assert_eq!(reply[0] & 0xFF, u32::from(mailbox::regs::msg::ID_VF_RESET));
    assert_eq!(enabled(&r), (true, true));
    let tx = r.guests[1].vf.state().tx;
    assert_eq!(tx.head, tx.tail);
    r.poll_guest(0);
    let got = r.guests[0].take_received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, frame(m0, m1, 100, 2));
    r.send(0, &frame(m1, m0, 100, 3));
    r.poll_guest(1);
    assert_eq!(r.received(1).last(), Some(&frame(m1, m0, 100, 3)));
    assert_eq!(r.port(PortId::Vf(1)).drops.rx_disabled, 1);
}

/// One switched frame as the test's observer records it: ingress, length, where its copies
/// went, why it was dropped where.
type Seen = (PortId, usize, Vec<PortId>, Vec<eswitch::DropReason>);

/// Records what the observer sees.
#[derive(Default)]
struct Log(Mutex<Vec<Seen>>);

impl crate::seams::Observer for Log {
    fn switched(&self, e: &Switched<'_>) {
        self.0.lock().unwrap().push((
            e.ingress,
            e.frame.len(),
            e.deliveries.iter().map(|d| d.port).collect(),
            e.drops.iter().map(|d| d.reason).collect(),
        ));
    }
}

#[test]
fn the_observer_sees_each_frame_its_copies_and_its_drops_including_rx_full() {
    let (mut r, free) = small_ring_pair();
    let log = Arc::new(Log::default());
    r.nic.set_observer(Some(log.clone()));
    let (a, b) = (r.mac(0), r.mac(1));
    for i in 0..free + BACKLOG_FRAMES + 1 {
        r.send(0, &frame(b, a, 64, i as u16));
        r.poll_guest(0);
    }
    let seen = log.0.lock().unwrap();
    assert_eq!(seen.len(), free + BACKLOG_FRAMES + 1);
    assert!(seen
        .iter()
        .all(|(i, len, to, _)| *i == PortId::Vf(0) && *len == 64 && to == &[PortId::Vf(1)]));
    let last = seen.last().unwrap();
    assert_eq!(last.3, vec![eswitch::DropReason::RxFull]);
    assert!(seen[..seen.len() - 1].iter().all(|e| e.3.is_empty()));
}

/// `frames` as one switch batch from `ingress`: what one TX run hands the switch (a TSO
/// packet's segments, or every packet between two tail writes).
fn switch_batch(r: &Rig, ingress: PortId, frames: &[Vec<u8>]) {
    let batch = frames.iter().map(|f| Bytes::from(f.clone())).collect();
    r.nic.switch_frames(ingress, batch);
}

#[test]
fn one_batch_past_the_ring_and_the_backlog_keeps_order_and_drops_only_its_tail() {
    let (mut r, free) = small_ring_pair();
    let log = Arc::new(Log::default());
    r.nic.set_observer(Some(log.clone()));
    let (a, b) = (r.mac(0), r.mac(1));
    let total = free + BACKLOG_FRAMES + 5;
    let frames: Vec<Vec<u8>> = (0..total).map(|i| frame(b, a, 64, i as u16)).collect();
    switch_batch(&r, PortId::Vf(0), &frames);
    {
        // The observer is told of each frame, the last five with their RX-full drop.
        let seen = log.0.lock().unwrap();
        assert_eq!(seen.len(), total);
        let (kept, dropped) = seen.split_at(free + BACKLOG_FRAMES);
        assert!(kept
            .iter()
            .all(|e| e.2 == [PortId::Vf(1)] && e.3.is_empty()));
        assert!(dropped.iter().all(|e| e.3 == [DropReason::RxFull]));
    }
    assert_overflowed_then_drained(&mut r, free, &frames);
}

#[test]
fn one_batch_to_several_ports_reaches_each_in_its_own_order() {
    let mut r = rig(3, &[]);
    let up = uplink_sink(&r);
    let (a, b, c) = (r.mac(0), r.mac(1), r.mac(2));
    let away = [0x02, 0, 0, 0, 0, 0x99];
    // Runs to one port, single frames between them, a broadcast to all, and one for the wire.
    let dsts = [b, b, c, b, [0xFF; 6], c, c, away, b];
    let frames: Vec<Vec<u8>> = dsts
        .iter()
        .enumerate()
        .map(|(i, &d)| frame(d, a, 64, i as u16))
        .collect();
    switch_batch(&r, PortId::Vf(0), &frames);
    r.poll_guests();
    let to = |want: &[[u8; 6]]| -> Vec<Vec<u8>> {
        frames
            .iter()
            .filter(|f| want.iter().any(|w| f[..6] == w[..]))
            .cloned()
            .collect()
    };
    assert_eq!(r.received(1), to(&[b, [0xFF; 6]]));
    assert_eq!(r.received(2), to(&[c, [0xFF; 6]]));
    let wire: Vec<Vec<u8>> = up.lock().unwrap().iter().map(|f| f.to_vec()).collect();
    assert_eq!(wire, to(&[away, [0xFF; 6]]));
}

#[test]
fn detach_drops_the_backlog_as_not_attached() {
    let (mut r, free) = small_ring_pair();
    let (a, b) = (r.mac(0), r.mac(1));
    for i in 0..free + 3 {
        r.send(0, &frame(b, a, 64, i as u16));
        r.poll_guest(0);
    }
    assert_eq!(r.guests[1].vf.backlog(), 3);
    r.guests[1].vf.detach();
    assert_eq!(r.guests[1].vf.backlog(), 0);
    assert_eq!(
        r.guests[1].vf.stats().rx_drop(RxDrop::NotAttached),
        3,
        "the next guest does not get them"
    );
}

#[test]
fn the_timer_thread_resumes_a_paused_queue_in_real_time() {
    let nic = Nic::new(&config(2), Arc::new(MonotonicClock::new())).unwrap();
    let timer = nic.spawn_timer().unwrap();
    let mut guests: Vec<SoftGuest> = (0..2)
        .map(|i| {
            let mut g = SoftGuest::attach(nic.vf(i).unwrap(), DriverConfig::default()).unwrap();
            g.up().unwrap();
            g
        })
        .collect();
    nic.configure_vf(
        0,
        &[VfSetting::Rate {
            min: None,
            max: Some(10),
        }],
    )
    .unwrap();
    let (a, b) = (guests[0].drv.mac, guests[1].drv.mac);
    for i in 0..10 {
        guests[0].send(&frame(b, a, 1514, i)).unwrap();
    }
    let rx = || nic.vf(1).unwrap().stats().rx_packets;
    let deadline = Instant::now() + Duration::from_secs(5);
    while rx() < 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(rx(), 10);
    drop(timer);
}

/// The longest moderation interval VTEITR can hold: 0x7FFC × 256 ns ≈ 8.4 ms.
const MAX_ITR: u32 = crate::function::i82576::intr::EITR_INTERVAL_MASK;

fn moderated_pair(clock: Arc<dyn crate::seams::Clock>) -> (Arc<Nic>, Vec<SoftGuest>) {
    let nic = Nic::new(&config(2), clock).unwrap();
    let cfg = DriverConfig {
        itr: MAX_ITR,
        ..DriverConfig::default()
    };
    let guests = (0..2)
        .map(|i| {
            let mut g = SoftGuest::attach(nic.vf(i).unwrap(), cfg).unwrap();
            g.up().unwrap();
            g
        })
        .collect();
    (nic, guests)
}

#[test]
fn moderation_at_its_longest_interval_loses_no_ping_and_no_frame_of_a_burst() {
    let clock = Arc::new(ManualClock::new(1_000_000_000));
    let (nic, mut g) = moderated_pair(clock.clone());
    let (a, b) = (g[0].drv.mac, g[1].drv.mac);
    let interval = u64::from(MAX_ITR) * crate::function::i82576::intr::EITR_UNIT_NS;
    // A "ping": one frame there, the answer back; each vector's first interrupt is immediate.
    g[0].send(&frame(b, a, 98, 1)).unwrap();
    g[1].poll();
    assert_eq!(g[1].take_received().len(), 1, "the request arrives at once");
    g[1].send(&frame(a, b, 98, 1)).unwrap();
    g[0].poll();
    assert_eq!(g[0].take_received().len(), 1, "the reply arrives at once");
    // A burst inside the interval: the frames are in B's ring, the interrupt is held.
    let burst: Vec<Vec<u8>> = (0..40).map(|i| frame(b, a, 200, i)).collect();
    for f in &burst {
        g[0].send(f).unwrap();
        g[0].poll();
    }
    g[1].poll();
    assert!(g[1].take_received().is_empty(), "held by moderation");
    let due = nic
        .next_wakeup()
        .expect("the held interrupt has a deadline");
    assert!(due <= clock.now_ns() + interval);
    clock.advance_to(due);
    nic.poll(due);
    assert_eq!(
        g[1].irqs.take(),
        vec![1],
        "one RX interrupt for the whole burst"
    );
    let vf = g[1].vf.clone();
    g[1].drv.clean_rx(&vf);
    let got: Vec<Vec<u8>> = g[1].take_received().into_iter().map(|f| f.data).collect();
    assert_eq!(got, burst, "all of it, in order, once the interval ended");
}

/// A stand-in PF function: a receive ring of `room` frames, a register write at offset 0 that
/// transmits the bytes written, a deadline it asks for, and a link-change vector.
struct FakePf {
    room: usize,
    rx: Arc<Mutex<Vec<Vec<u8>>>>,
    link: Arc<Mutex<Vec<bool>>>,
    woken: Arc<Mutex<Vec<u64>>>,
    wakeup: Option<u64>,
}

const FAKE_LSC_VECTOR: u16 = 2;

impl Function for FakePf {
    fn layout(&self) -> BusLayout {
        BusLayout {
            bar_sizes: [128 << 10, 0, 0, 16 << 10, 0, 0],
            msix_vectors: 10,
            msi_vectors: 1,
            intx: true,
        }
    }
    fn config_read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn config_write(&mut self, _offset: u64, _data: &[u8]) -> Effects {
        Effects::default()
    }
    fn region_read(&mut self, _: u32, _: u64, data: &mut [u8]) -> Result<(), AccessError> {
        data.fill(0);
        Ok(())
    }
    fn region_write(&mut self, _: u32, offset: u64, data: &[u8]) -> Result<Effects, AccessError> {
        let mut e = Effects::default();
        match offset {
            0 => e.frames.push(Bytes::copy_from_slice(data).into()),
            8 => {
                self.room += 1;
                e.rx_posted = true;
            }
            _ => self.wakeup = Some(u64::from_le_bytes(data.try_into().unwrap())),
        }
        Ok(e)
    }
    fn reset(&mut self) -> Effects {
        Effects::default()
    }
    fn attach(&mut self, _mem: GuestMem) {}
    fn detach(&mut self) {}
    fn receive(
        &mut self,
        frame: &[u8],
        _: Option<u16>,
        _: crate::function::Origin,
    ) -> (Result<(), RxDrop>, Fire) {
        if self.room == 0 {
            return (Err(RxDrop::RingFull), Fire::NONE);
        }
        self.room -= 1;
        self.rx.lock().unwrap().push(frame.to_vec());
        (Ok(()), Fire::from_bits(1))
    }
    fn count_backlog_drop(&mut self) {}
    fn on_timer(&mut self, now: u64) -> Effects {
        self.woken.lock().unwrap().push(now);
        self.wakeup = None;
        Effects::default()
    }
    fn next_wakeup(&self) -> Option<u64> {
        self.wakeup
    }
    fn set_link(&mut self, link: LinkStatus) -> Effects {
        self.link.lock().unwrap().push(link.up);
        Effects {
            fire: Fire::from_bits(1 << FAKE_LSC_VECTOR),
            ..Effects::default()
        }
    }
    fn stats(&self) -> VfStats {
        VfStats::default()
    }
}

#[derive(Default)]
struct Vectors(Mutex<Vec<u16>>);

impl IrqSink for Vectors {
    fn fire(&self, vector: u16) {
        self.0.lock().unwrap().push(vector);
    }
}

#[test]
fn a_hosted_pf_function_takes_the_pf_ports_frames_sends_into_the_switch_and_follows_the_link() {
    let mut r = rig(2, &[]);
    let rx = Arc::new(Mutex::new(Vec::new()));
    let link = Arc::new(Mutex::new(Vec::new()));
    let woken = Arc::new(Mutex::new(Vec::new()));
    let fake = FakePf {
        room: 1,
        rx: rx.clone(),
        link: link.clone(),
        woken: woken.clone(),
        wakeup: None,
    };
    let pf = r.nic.host_pf(Box::new(fake)).expect("first PF function");
    assert!(r
        .nic
        .host_pf(Box::new(FakePf {
            room: 0,
            rx: rx.clone(),
            link: link.clone(),
            woken: woken.clone(),
            wakeup: None,
        }))
        .is_none());
    assert_eq!(pf.port(), PortId::Pf);
    assert_eq!(pf.layout().msix_vectors, 10);
    assert_eq!(
        *link.lock().unwrap(),
        vec![true],
        "hosted with the wire's link"
    );
    let sunk = Arc::new(Mutex::new(0usize));
    struct Count(Arc<Mutex<usize>>);
    impl PortSink for Count {
        fn deliver(&self, _: &Delivery) {
            *self.0.lock().unwrap() += 1;
        }
    }
    r.nic
        .set_port_sink(PortId::Pf, Some(Arc::new(Count(sunk.clone()))));
    // No client drives the PF function yet: the PF port is still the sink's.
    let bcast = [0xff; 6];
    r.send(0, &frame(bcast, r.mac(0), 60, 0));
    assert_eq!(*sunk.lock().unwrap(), 1);
    assert!(rx.lock().unwrap().is_empty());

    // Once a client is attached the sink is bypassed: the hosted function takes the PF's
    // frames.
    let irqs = Arc::new(Vectors::default());
    pf.attach(GuestMem::new(GuestRam::new()), irqs.clone());

    // Two broadcasts from VF 0: the first fills the PF's one-frame ring, the second waits in
    // its backlog until the PF posts a buffer.
    r.send(0, &frame(bcast, r.mac(0), 60, 1));
    r.send(0, &frame(bcast, r.mac(0), 60, 2));
    assert_eq!(rx.lock().unwrap().len(), 1);
    assert_eq!(pf.backlog(), 1);
    assert_eq!(r.nic.counters().pf_backlog, Some(1));
    pf.region_write(0, 8, &[0; 4]).unwrap();
    assert_eq!(
        rx.lock().unwrap().len(),
        2,
        "posting a buffer drains the backlog"
    );
    assert_eq!(pf.backlog(), 0);
    assert_eq!(*sunk.lock().unwrap(), 1, "nothing more for the sink");
    assert_eq!(*irqs.0.lock().unwrap(), vec![0, 0]);
    let seqs: Vec<u8> = rx.lock().unwrap().iter().map(|f| f[15]).collect();
    assert_eq!(seqs, vec![1, 2], "in order");

    // What the PF transmits enters the switch at the PF port and reaches VF 1.
    let to_vf1 = frame(r.mac(1), MacAddr([2, 0, 0, 0, 0, 1]).0, 60, 3);
    pf.region_write(0, 0, &to_vf1).unwrap();
    r.poll_guest(1);
    assert!(r.received(1).contains(&to_vf1));

    // The PF's deadline is served by the NIC's timer like a VF's.
    pf.region_write(0, 16, &(r.nic.now() + 1000).to_le_bytes())
        .unwrap();
    assert_eq!(r.nic.next_wakeup(), Some(r.nic.now() + 1000));
    r.clock.advance_to(r.nic.now() + 1000);
    r.nic.poll(r.nic.now());
    assert_eq!(woken.lock().unwrap().len(), 1);
    assert_eq!(r.nic.next_wakeup(), None);

    // The wire's link reaches the PF function, with the interrupt it raises.
    r.nic.set_link(false);
    r.nic.set_link(true);
    assert_eq!(*link.lock().unwrap(), vec![true, false, true]);
    let fired = irqs.0.lock().unwrap().clone();
    assert_eq!(
        &fired[fired.len() - 2..],
        &[FAKE_LSC_VECTOR, FAKE_LSC_VECTOR]
    );
}

#[test]
fn generated_macs_carry_the_card_port() {
    assert_eq!(
        MacMode::Generated.for_port(0),
        MacAssignment::Generated {
            seed: MacMode::GENERATED_SEED
        }
    );
    assert_eq!(
        MacAssignment::from(MacMode::Generated),
        MacMode::Generated.for_port(0),
        "a single-port NIC is port 0"
    );
    assert_eq!(
        MacMode::Generated.for_port(1),
        MacAssignment::Generated {
            seed: [0x52, 0x54, 0x01]
        }
    );
    assert_eq!(MacMode::AdminOnly.for_port(1), MacAssignment::AdminOnly);
}

/// The 82576 PF function hosted in a NIC, its RX queue 0 set up as igb's `igb_configure_rx_ring`
/// does (eight 2 KiB buffers), the receiver on with broadcasts accepted.
fn hosted_pf(r: &Rig) -> (PfHandle, GuestRam) {
    use crate::function::i82576::pf_regs::{self as regs, q, rctl};
    use crate::function::i82576::Pf;
    use vm_memory::{Bytes as _, GuestAddress};
    let pf = Pf::new(PF_MAC, r.nic.shared_pf(), r.clock.clone()).unwrap();
    let handle = r.nic.host_pf(Box::new(pf)).unwrap();
    let mem = crate::function::ram::anonymous(&[(GuestAddress(0x10_0000), 0x10_0000)]).unwrap();
    handle.attach(GuestMem::new(mem.clone()), Arc::new(Vectors::default()));
    // PCI Command: memory space and bus master.
    handle.config_write(0x04, &0x0006u16.to_le_bytes());
    let wr = |off: u64, v: u32| handle.region_write(0, off, &v.to_le_bytes()).unwrap();
    let ring = regs::RX_HIGH;
    wr(ring + q::DBAL, 0x10_0000);
    wr(ring + q::DBAH, 0);
    wr(ring + q::DLEN, 8 * 16);
    wr(ring + q::SRRCTL, 2 | (1 << 25));
    wr(ring + q::DCTL, 1 << 25);
    for i in 0..8u64 {
        mem.write_obj(0x10_8000 + 2048 * i, GuestAddress(0x10_0000 + 16 * i))
            .unwrap();
    }
    wr(ring + q::DT, 7);
    wr(regs::RCTL, rctl::EN | rctl::BAM);
    (handle, mem)
}

const PF_MAC: MacAddr = MacAddr([0x02, 0x1B, 0x21, 0, 0, 0x01]);

#[test]
fn a_driven_pf_function_gets_broadcasts_and_is_the_default_pool_for_the_wire() {
    let mut r = rig(2, &[]);
    let (pf, _mem) = hosted_pf(&r);
    let unclaimed_before = r.nic.counters().unclaimed.get("pf").copied();

    // An ARP-style broadcast from VF 0 reaches the PF function and the other VF.
    r.send(0, &frame([0xFF; 6], r.mac(0), 60, 1));
    r.poll_guests();
    assert_eq!(pf.stats().rx_packets, 1);
    assert_eq!(r.received(1).len(), 1);
    assert_eq!(r.port(PortId::Pf).rx_broadcast, 1);

    // Unicast from the wire that no port owns goes to the PF port, the default pool. igb
    // without VFs keeps the MAC out of VMDq mode, so its address filter refuses it...
    let unknown = frame([0x02, 0, 0, 0, 0, 0x99], [0x02, 0, 0, 0, 0, 0x77], 60, 2);
    r.nic
        .inject(PortId::Uplink(0), Bytes::from(unknown.clone()));
    assert_eq!(r.port(PortId::Pf).rx_packets, 2);
    assert_eq!(pf.stats().rx_drop(RxDrop::Filtered), 1);
    // ...until the interface is promiscuous (RCTL.UPE).
    use crate::function::i82576::pf_regs::{rctl, RCTL};
    let promisc = rctl::EN | rctl::BAM | rctl::UPE;
    pf.region_write(0, RCTL, &promisc.to_le_bytes()).unwrap();
    r.nic.inject(PortId::Uplink(0), Bytes::from(unknown));
    assert_eq!(pf.stats().rx_packets, 2);

    // Unicast to the PF's station address from a VF.
    r.send(1, &frame(PF_MAC.0, r.mac(1), 60, 3));
    assert_eq!(pf.stats().rx_packets, 3);
    assert_eq!(
        r.nic.counters().unclaimed.get("pf").copied(),
        unclaimed_before,
        "nothing for the PF went unclaimed"
    );
}

#[test]
fn the_pf_port_gets_the_host_sides_filters_back_when_the_pf_guest_leaves() {
    let mut r = rig(2, &[]);
    let vlan10 = VfSetting::Vlan {
        vid: 10,
        qos: 0,
        proto: eswitch::VlanProto::Dot1Q,
    };
    r.nic.configure_vf(1, &[vlan10]).unwrap();
    let host = r.nic.with_pf(|pf| pf.switch().pf_policy().clone());
    assert!(!host.vlan_promisc);
    let pf_bcasts = |r: &Rig| r.port(PortId::Pf).rx_broadcast;

    // igb's filters stand while it drives the PF: without RCTL.VFE every VLAN is taken, so
    // VF 1's broadcast in its port VLAN reaches the PF.
    let (pf, _mem) = hosted_pf(&r);
    assert!(r.nic.with_pf(|pf| pf.switch().pf_policy().vlan_promisc));
    r.send(1, &frame([0xFF; 6], r.mac(1), 60, 1));
    assert_eq!(pf_bcasts(&r), 1);

    // The guest goes (detach, then the function's reset): the PF port is the host side's
    // again, with its filters; VLAN 10 stays out.
    pf.detach();
    pf.reset();
    assert_eq!(r.nic.with_pf(|pf| pf.switch().pf_policy().clone()), host);
    r.send(1, &frame([0xFF; 6], r.mac(1), 60, 2));
    assert_eq!(pf_bcasts(&r), 1);

    // The next guest's driver starts from the function's reset filters.
    pf.attach(GuestMem::new(GuestRam::new()), Arc::new(Vectors::default()));
    assert!(r.nic.with_pf(|pf| pf.switch().pf_policy().vlan_promisc));
}

#[test]
fn a_wire_fault_hits_only_its_port_counts_its_drops_and_clears_at_once() {
    use super::faults::{Direction, Every, WireAction, WireFault};
    let mut r = rig(3, &[]);
    let (a, b, c) = (r.mac(0), r.mac(1), r.mac(2));
    r.nic.arm_wire_fault(WireFault {
        port: PortId::Vf(1),
        direction: Direction::Rx,
        action: WireAction::Drop,
        every: Every::Nth(2),
    });
    for seq in 0..10 {
        r.send(0, &frame(b, a, 98, seq));
        r.send(0, &frame(c, a, 98, seq));
    }
    r.poll_guests();
    assert_eq!(r.received(1).len(), 5, "every 2nd frame to VF 1 dropped");
    assert_eq!(r.received(2).len(), 10, "VF 2's frames untouched");
    assert_eq!(r.port(PortId::Vf(1)).drops.get(DropReason::Fault), 5);
    assert_eq!(r.port(PortId::Vf(2)).drops.total(), 0);
    let report = r.nic.faults();
    assert_eq!((report[0].seen, report[0].fired), (10, 5));
    // Duplicates on VF 0's TX reach VF 1 twice; clearing restores normal behaviour at once.
    r.nic.arm_wire_fault(WireFault {
        port: PortId::Vf(0),
        direction: Direction::Tx,
        action: WireAction::Duplicate,
        every: Every::Nth(1),
    });
    assert_eq!(r.nic.clear_faults(), 2);
    r.send(0, &frame(b, a, 98, 99));
    r.poll_guests();
    assert_eq!(r.received(1).len(), 6);
}
