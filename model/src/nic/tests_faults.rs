//! Injected faults on the runtime, driven by the in-process igbvf on an injected clock.

use bytes::Bytes;
use eswitch::{DropReason, PortId};
use proptest::prelude::*;

use super::faults::Fault;
use super::tests::{frame, rig, Rig};
use crate::function::stats::RxDrop;
use crate::seams::Clock;
use crate::testing::DrvError;

const MS: u64 = 1_000_000;

fn inject(r: &Rig, words: &str) -> String {
    let w: Vec<&str> = words.split(' ').collect();
    let f = Fault::parse(&w, &r.nic.ports()).unwrap_or_else(|e| panic!("{words}: {e}"));
    r.nic
        .inject_fault(f)
        .unwrap_or_else(|e| panic!("{words}: {e}"))
}

fn advance(r: &mut Rig, ns: u64) {
    r.clock.advance_to(r.clock.now_ns() + ns);
    r.nic.poll(r.clock.now_ns());
    r.poll_guests();
}

/// The sequence numbers of what guest `i` received from `frame`s.
fn seqs(r: &Rig, i: usize) -> Vec<u16> {
    r.received(i)
        .iter()
        .map(|f| u16::from_be_bytes([f[14], f[15]]))
        .collect()
}

/// Guest `i`'s link after its interrupt handlers ran (a mailbox ping tells igbvf to check).
fn link(r: &mut Rig, i: usize) -> bool {
    r.poll_guests();
    let g = &mut r.guests[i];
    g.drv.check_link(&g.vf)
}

fn fired(r: &Rig, prefix: &str) -> (u64, u64) {
    let f = r
        .nic
        .faults()
        .into_iter()
        .find(|f| f.fault.starts_with(prefix))
        .unwrap_or_else(|| panic!("no fault {prefix} in {:?}", r.nic.faults()));
    (f.seen, f.fired)
}

#[test]
fn reorder_sends_the_held_frame_after_the_next_and_delay_after_its_time() {
    let mut r = rig(2, &[]);
    let (a, b) = (r.mac(0), r.mac(1));
    inject(&r, "wire vf1 rx reorder every 2");
    for seq in 0..6 {
        r.send(0, &frame(b, a, 80, seq));
    }
    r.poll_guests();
    assert_eq!(seqs(&r, 1), [0, 2, 1, 4, 3]);
    // The last held frame goes out when nothing overtakes it in time.
    advance(&mut r, 11 * MS);
    assert_eq!(seqs(&r, 1), [0, 2, 1, 4, 3, 5]);
    assert_eq!(fired(&r, "wire vf1 rx reorder"), (6, 3));

    inject(&r, "clear");
    inject(&r, "wire vf0 tx delay 5ms every 1");
    r.send(0, &frame(b, a, 80, 10));
    r.send(0, &frame(b, a, 80, 11));
    r.poll_guests();
    assert_eq!(seqs(&r, 1).len(), 6, "held");
    advance(&mut r, 4 * MS);
    assert_eq!(seqs(&r, 1).len(), 6, "not yet");
    advance(&mut r, MS);
    assert_eq!(&seqs(&r, 1)[6..], [10, 11], "in order, after 5 ms");
    assert_eq!(r.port(PortId::Vf(1)).drops.total(), 0, "nothing lost");
}

#[test]
fn a_held_segment_keeps_only_its_own_bytes_not_its_packets() {
    let mut r = rig(2, &[]);
    let (a, b) = (r.mac(0), r.mac(1));
    // The segments of one TSO packet: slices of one allocation, as the TX engine cuts them.
    let packet = Bytes::from(
        (0..4)
            .flat_map(|seq| frame(b, a, 1514, seq))
            .collect::<Vec<u8>>(),
    );
    let segments: Vec<Bytes> = (0..4)
        .map(|i| packet.slice(i * 1514..(i + 1) * 1514))
        .collect();
    for (dir, port) in [("tx", 0), ("rx", 1)] {
        inject(&r, &format!("wire vf{port} {dir} delay 5ms every 1"));
        r.nic.switch_frames(PortId::Vf(0), segments.clone());
        let held = r.nic.held_frames();
        assert_eq!(held.len(), 4, "{dir}");
        let whole = packet.as_ptr_range();
        for (h, s) in held.iter().zip(&segments) {
            assert_eq!(h, s, "{dir}: the same bytes");
            assert!(
                !whole.contains(&h.as_ptr()),
                "{dir}: in an allocation of its own"
            );
        }
        advance(&mut r, 5 * MS);
        inject(&r, "clear");
    }
    assert_eq!(
        seqs(&r, 1),
        [0, 1, 2, 3, 0, 1, 2, 3],
        "all delivered when due"
    );
}

#[test]
fn clearing_releases_held_frames_at_once() {
    let mut r = rig(2, &[]);
    let (a, b) = (r.mac(0), r.mac(1));
    inject(&r, "wire vf1 rx delay 1s every 1");
    r.send(0, &frame(b, a, 80, 1));
    r.poll_guests();
    assert!(seqs(&r, 1).is_empty());
    assert_eq!(inject(&r, "clear"), "1 fault(s) cleared");
    r.poll_guests();
    assert_eq!(seqs(&r, 1), [1]);
    assert!(r.nic.faults().is_empty());
    assert_eq!(r.nic.next_wakeup(), None, "nothing left for the timer");
}

#[test]
fn a_dropped_mailbox_request_times_out_and_the_next_after_clearing_succeeds() {
    let mut r = rig(2, &[]);
    inject(&r, "mailbox vf0 drop");
    let vf = r.guests[0].vf.clone();
    let mac = [0x02, 0, 0, 0, 0x77, 0x01];
    assert_eq!(
        r.guests[0].drv.set_mac(&vf, mac),
        Err(DrvError::MailboxTimeout)
    );
    assert_eq!(fired(&r, "mailbox vf0 drop"), (1, 1));
    // VF 1's mailbox is untouched.
    let vf1 = r.guests[1].vf.clone();
    assert_eq!(
        r.guests[1].drv.set_mac(&vf1, [0x02, 0, 0, 0, 0x77, 0x02]),
        Ok(true)
    );
    inject(&r, "clear");
    // The PF says it is back (PF_CONTROL_MSG with CTS): what makes igbvf, whose mailbox timed
    // out, reinitialise.
    let word0 = r.nic.with_pf(|pf| pf.mailbox(0).unwrap().last_word0());
    let control = u32::from(mailbox::regs::msg::ID_PF_CONTROL) | mailbox::regs::msg::CTS;
    assert_eq!(word0 & control, control, "{word0:#x}");
    // igbvf's mailbox stays disarmed after a timeout until its reset re-arms it.
    r.guests[0].drv.reset_hw(&vf).unwrap();
    assert_eq!(r.guests[0].drv.set_mac(&vf, mac), Ok(true));
    let policy = r.nic.with_pf(|pf| pf.policy(0).cloned()).unwrap();
    assert_eq!(policy.mac.map(|m| m.0), Some(mac));
}

#[test]
fn nack_refuses_every_request_and_changes_nothing() {
    let mut r = rig(1, &[]);
    let before = r.nic.with_pf(|pf| pf.policy(0).cloned()).unwrap();
    inject(&r, "mailbox vf0 nack");
    let vf = r.guests[0].vf.clone();
    assert_eq!(
        r.guests[0].drv.set_mac(&vf, [0x02, 0, 0, 0, 0x77, 0x09]),
        Ok(false)
    );
    assert_eq!(r.guests[0].drv.set_vlan(&vf, 10, true), Ok(false));
    assert_eq!(r.nic.with_pf(|pf| pf.policy(0).cloned()).unwrap(), before);
    // Each request and each ack of a reply interrupted the PF: four events, two NACKed.
    assert_eq!(fired(&r, "mailbox vf0 nack"), (4, 2));
    let nacked = r.nic.with_pf(|pf| pf.agent().counters(0).nacked);
    assert_eq!(nacked, 2);
}

#[test]
fn a_delayed_mailbox_is_serviced_when_its_time_comes() {
    let mut r = rig(1, &[]);
    inject(&r, "mailbox vf0 delay 50ms");
    let vf = r.guests[0].vf.clone();
    let mac = [0x02, 0, 0, 0, 0x77, 0x05];
    // The driver's poll for the PF's ACK ends before the PF gets to it.
    assert_eq!(
        r.guests[0].drv.set_mac(&vf, mac),
        Err(DrvError::MailboxTimeout)
    );
    assert_ne!(
        r.nic
            .with_pf(|pf| pf.policy(0).and_then(|p| p.mac))
            .map(|m| m.0),
        Some(mac)
    );
    assert_eq!(r.nic.next_wakeup(), Some(r.clock.now_ns() + 50 * MS));
    advance(&mut r, 50 * MS);
    // Late, but done: the PF acted on the request and answered it.
    assert_eq!(
        r.nic
            .with_pf(|pf| pf.policy(0).and_then(|p| p.mac))
            .map(|m| m.0),
        Some(mac)
    );
    let word0 = r.nic.with_pf(|pf| pf.mailbox(0).unwrap().last_word0());
    assert_eq!(
        word0 & 0xffff,
        u32::from(mailbox::regs::msg::ID_SET_MAC_ADDR)
    );
}

#[test]
fn a_tx_descriptor_fault_stops_the_queue_until_the_driver_resets_and_a_buffer_fault_drops_one_frame(
) {
    let mut r = rig(3, &[]);
    let (a, b, c) = (r.mac(0), r.mac(1), r.mac(2));
    inject(&r, "dma vf0 rx buffer 1");
    r.send(2, &frame(a, c, 80, 1));
    r.send(2, &frame(a, c, 80, 2));
    r.poll_guests();
    assert_eq!(
        seqs(&r, 0),
        [2],
        "the first frame was written with RXE and dropped"
    );
    let s = r.guests[0].vf.stats();
    assert_eq!((s.dma_errors, s.rx_drop(RxDrop::BufferDma)), (1, 1));

    inject(&r, "dma vf0 tx desc 1");
    r.send(0, &frame(b, a, 80, 3));
    r.poll_guests();
    assert!(seqs(&r, 1).is_empty(), "the descriptor fetch failed");
    assert_eq!(r.guests[0].vf.stats().dma_errors, 2);
    // The queue is stopped: later frames go nowhere, as with a bad ring address...
    r.send(0, &frame(b, a, 80, 4));
    assert!(seqs(&r, 1).is_empty());
    // ...and VF 2 is not affected.
    r.send(2, &frame(b, c, 80, 5));
    r.poll_guests();
    assert_eq!(seqs(&r, 1), [5]);
    // The driver's reset path (igbvf's reset task after its TX hang detection) recovers.
    let g = &mut r.guests[0];
    g.drv.down(&g.vf).unwrap();
    r.guests[0].up().unwrap();
    r.send(0, &frame(b, a, 80, 6));
    r.poll_guests();
    assert_eq!(seqs(&r, 1), [5, 6]);
    let f = r.nic.faults();
    assert!(
        f.iter()
            .any(|f| f.fault == "dma vf0 tx queue 0 desc fail 1" && f.fired == 1),
        "{f:?}"
    );
}

/// A DMA fault on a queue the function does not have would never fire: refused, naming the
/// queues it has (an 82576 VF has two), and nothing is armed.
#[test]
fn a_dma_fault_on_a_queue_the_function_lacks_is_refused() {
    let r = rig(2, &[]);
    let w: Vec<&str> = "dma vf0 rx desc 3 queue 2".split(' ').collect();
    let f = Fault::parse(&w, &r.nic.ports()).unwrap();
    let e = r.nic.inject_fault(f).unwrap_err();
    assert!(e.contains("this function has queues 0..=1"), "{e}");
    assert!(r.nic.faults().is_empty(), "{:?}", r.nic.faults());
    assert_eq!(
        inject(&r, "dma vf0 rx desc 3 queue 1"),
        "DMA fault armed: vf0 rx queue 1 desc fail 3"
    );
}

#[test]
fn lost_interrupts_leave_frames_in_the_ring_until_the_watchdogs_eics() {
    let mut r = rig(2, &[]);
    let (a, b) = (r.mac(0), r.mac(1));
    inject(&r, "irq vf1 lose 1");
    r.send(0, &frame(b, a, 80, 1));
    r.poll_guests();
    assert!(seqs(&r, 1).is_empty(), "the RX interrupt never came");
    // Auto-masked, the vector stays silent: the next frame raises nothing either.
    r.send(0, &frame(b, a, 80, 2));
    r.poll_guests();
    assert!(seqs(&r, 1).is_empty());
    assert_eq!(fired(&r, "irq vf1 lose 1"), (1, 1));
    assert_eq!(
        r.guests[1].vf.stats().irqs_lost,
        1,
        "counted as never delivered"
    );
    // igbvf_watchdog_task's "cause software interrupt to ensure Rx ring is cleaned".
    let vf = r.guests[1].vf.clone();
    let mask = r.guests[1].drv.eims_enable_mask();
    r.guests[1]
        .drv
        .wr(&vf, crate::function::i82576::regs::VTEICS, mask);
    r.poll_guests();
    assert_eq!(seqs(&r, 1), [1, 2]);
}

#[test]
fn delayed_interrupts_arrive_after_their_delay() {
    let mut r = rig(2, &[]);
    let (a, b) = (r.mac(0), r.mac(1));
    inject(&r, "irq vf1 delay 3ms");
    r.send(0, &frame(b, a, 80, 1));
    r.poll_guests();
    assert!(seqs(&r, 1).is_empty());
    advance(&mut r, 3 * MS);
    assert_eq!(seqs(&r, 1), [1]);
}

#[test]
fn an_rx_hold_fills_the_backlog_drops_beyond_it_as_rx_full_then_delivers_in_order() {
    let mut r = rig(2, &[]);
    let (a, b) = (r.mac(0), r.mac(1));
    inject(&r, "rx-hold vf1 20ms");
    let n = super::BACKLOG_FRAMES as u16 + 10;
    for seq in 0..n {
        r.send(0, &frame(b, a, 80, seq));
        r.poll_guests();
    }
    assert!(seqs(&r, 1).is_empty());
    assert_eq!(r.guests[1].vf.backlog(), super::BACKLOG_FRAMES);
    assert_eq!(r.port(PortId::Vf(1)).drops.get(DropReason::RxFull), 10);
    assert_eq!(fired(&r, "rx-hold vf1 20ms").1, u64::from(n));
    advance(&mut r, 20 * MS);
    for _ in 0..8 {
        r.poll_guests();
    }
    let got = seqs(&r, 1);
    assert_eq!(got, (0..super::BACKLOG_FRAMES as u16).collect::<Vec<_>>());
    assert!(r.nic.faults().is_empty(), "an ended hold is gone");
}

#[test]
fn one_vfs_link_goes_down_alone_and_a_flap_toggles_it_count_times() {
    let mut r = rig(3, &[]);
    let (a, b, c) = (r.mac(0), r.mac(1), r.mac(2));
    inject(&r, "link vf1 down");
    assert!(!link(&mut r, 1));
    assert!(link(&mut r, 2));
    r.send(0, &frame(b, a, 80, 1));
    r.send(0, &frame(c, a, 80, 2));
    r.poll_guests();
    assert!(seqs(&r, 1).is_empty());
    assert_eq!(seqs(&r, 2), [2]);
    assert_eq!(r.port(PortId::Vf(1)).drops.get(DropReason::LinkDown), 1);
    inject(&r, "clear");
    assert!(link(&mut r, 1));

    inject(&r, "link vf1 flap 10ms count 2");
    let mut states = vec![link(&mut r, 1)];
    for _ in 0..5 {
        advance(&mut r, 10 * MS);
        states.push(link(&mut r, 1));
    }
    assert_eq!(states, [false, true, false, true, true, true]);
    assert!(r.nic.faults().is_empty(), "a flap with a count ends up");
    let counts = r.nic.counters().faults;
    assert_eq!((counts["link_down"], counts["link_up"]), (3, 3));
}

#[test]
fn a_fault_on_a_function_the_nic_does_not_host_is_refused() {
    let r = rig(1, &[]);
    let e = r
        .nic
        .inject_fault(Fault::parse(&["irq", "pf", "lose", "1"], &r.nic.ports()).unwrap());
    assert!(e.unwrap_err().contains("no function"));
    assert!(r.nic.faults().is_empty());
}

/// Fault words aimed at VF 1, any of them.
fn vf1_fault() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u8..2, 0usize..5, 1u8..101, any::<u8>()).prop_map(|(dir, act, pct, seed)| {
            let dir = ["rx", "tx"][usize::from(dir)];
            let act = ["drop", "corrupt", "duplicate", "reorder", "delay 2ms"][act];
            format!("wire vf1 {dir} {act} {pct}% seed {seed}")
        }),
        (1u32..5).prop_map(|n| format!("wire vf1 rx drop every {n}")),
        Just("mailbox vf1 drop".to_string()),
        Just("mailbox vf1 nack".to_string()),
        Just("mailbox vf1 delay 1ms".to_string()),
        (0u8..2, 0u8..2, 1u32..4).prop_map(|(d, t, n)| format!(
            "dma vf1 {} {} {n}",
            ["rx", "tx"][usize::from(d)],
            ["desc", "buffer"][usize::from(t)]
        )),
        (1u32..4).prop_map(|n| format!("irq vf1 lose {n}")),
        Just("irq vf1 delay 1ms".to_string()),
        Just("rx-hold vf1 5ms".to_string()),
        Just("link vf1 down".to_string()),
        Just("link vf1 flap 1ms".to_string()),
        Just("pf-reset vf 1".to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// With any combination of faults on VF 1 — and VF 1 sending and receiving meanwhile —
    /// VF 0 and VF 2 exchange every frame, unchanged, in order, and their ports count no drop.
    #[test]
    fn faults_on_one_vf_leave_the_others_frames_alone(
        faults in proptest::collection::vec(vf1_fault(), 1..5),
        n in 1u16..20,
    ) {
        let mut r = rig(3, &[]);
        let (a, b, c) = (r.mac(0), r.mac(1), r.mac(2));
        for f in &faults {
            inject(&r, f);
        }
        let mut want = Vec::new();
        for seq in 0..n {
            let f = frame(c, a, 60 + usize::from(seq), seq);
            want.push(f.clone());
            r.send(0, &f);
            r.send(0, &frame(b, a, 80, seq));
            let _ = r.guests[1].send(&frame(c, b, 80, 1000 + seq));
            let _ = r.guests[1].send(&frame(a, b, 80, 1000 + seq));
            r.send(2, &frame(a, c, 90, seq));
            advance(&mut r, MS / 2);
        }
        advance(&mut r, 10 * MS);
        let from_a: Vec<Vec<u8>> = r.received(2).into_iter().filter(|f| f[6..12] == a).collect();
        prop_assert_eq!(from_a, want);
        let from_c: Vec<u16> = r.received(0).iter().filter(|f| f[6..12] == c)
            .map(|f| u16::from_be_bytes([f[14], f[15]])).collect();
        prop_assert_eq!(from_c, (0..n).collect::<Vec<_>>());
        prop_assert_eq!(r.port(PortId::Vf(0)).drops.total(), 0);
        prop_assert_eq!(r.port(PortId::Vf(2)).drops.total(), 0);
        // Clearing gives VF 1 back its normal behaviour for frames sent afterwards.
        inject(&r, "clear");
        prop_assert!(r.nic.faults().is_empty());
    }
}
