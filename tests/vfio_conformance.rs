//! Conformance of our vfio-user server, driven by the `vfio_user` crate's `Client` (which
//! proposes minor version 1) and by a raw client speaking exactly as QEMU 11.1 does.

mod vfio_support;

use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::Duration;

use sriov_emu::vfio::{irq_index, region, DmaError};
use vfio_bindings::bindings::vfio::*;
use vfio_support::*;
use vfio_user::Client;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

const TRIGGER_EVENTFD: u32 = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;

#[test]
fn crate_client_negotiates_and_sees_nine_regions_without_mmap() {
    let srv = Running::start("regions");
    let client = Client::new(&srv.path).expect("handshake");
    for index in 0..9 {
        let r = client.region(index).expect("region listed");
        assert_eq!(
            r.flags & VFIO_REGION_INFO_FLAG_MMAP,
            0,
            "region {index} mmap"
        );
        assert!(r.file_offset.is_none());
        let expect = match index {
            0 | 3 => 16 * 1024,
            7 => 4096,
            _ => 0,
        };
        assert_eq!(r.size, expect, "region {index} size");
        if expect != 0 {
            assert_eq!(
                r.flags,
                VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE
            );
        }
    }
    assert_eq!(srv.probe.attaches.load(Ordering::SeqCst), 1);
}

#[test]
fn qemu_style_version_reply_is_0_0_with_our_caps_and_fits_the_request() {
    let srv = Running::start("version");
    let mut c = RawClient::connect(&srv.path);
    let r = c.version_qemu();
    assert!(!r.is_error());
    let request_size = 16 + 4 + QEMU_VERSION_JSON.len() + 1;
    assert_eq!(request_size, 214, "the QEMU 11.1.3 request");
    assert!(r.size as usize <= request_size, "reply {} too big", r.size);
    assert_eq!(&r.payload[..4], &[0, 0, 0, 0], "major 0 minor 0");
    let json = &r.payload[4..];
    assert_eq!(json.last(), Some(&0), "NUL-terminated");
    let v: serde_json::Value = serde_json::from_slice(&json[..json.len() - 1]).unwrap();
    let caps = &v["capabilities"];
    assert_eq!(caps["max_msg_fds"], 16);
    assert_eq!(caps["max_data_xfer_size"], 1 << 20);
    assert_eq!(caps["pgsizes"], 4096);
    assert_eq!(caps["max_dma_maps"], 65535);
    assert!(caps.get("write_multiple").is_none());
}

#[test]
fn device_info_reports_pci_reset_nine_regions_five_irqs() {
    let srv = Running::start("devinfo");
    let mut c = RawClient::negotiated(&srv.path);
    let r = c.call(
        CMD_DEVICE_GET_INFO,
        &P::default().u32(16).u32(0).u32(0).u32(0).0,
        &[],
    );
    assert_eq!(r.size, 32);
    assert_eq!(r.u32_at(0), 16, "argsz");
    assert_eq!(r.u32_at(4), VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET);
    assert_eq!((r.u32_at(8), r.u32_at(12)), (9, 5));

    // GET_REGION_INFO as QEMU asks it: argsz 32; reply fits (argsz 32, size 48).
    let r = c.call(
        CMD_GET_REGION_INFO,
        &P::default().u32(32).u32(0).u32(7).u32(0).u64(0).u64(0).0,
        &[],
    );
    assert_eq!(r.size, 48);
    assert_eq!(r.u32_at(0), 32, "argsz");
    assert_eq!(r.u32_at(8), 7, "index");
    assert_eq!(r.u64_at(16), 4096, "size");
}

#[test]
fn irq_info_for_a_vf() {
    let srv = Running::start("irqinfo");
    let mut client = Client::new(&srv.path).unwrap();
    let msix = client.get_irq_info(irq_index::MSIX).unwrap();
    assert_eq!((msix.index, msix.count), (2, 3));
    assert_ne!(msix.flags & VFIO_IRQ_INFO_EVENTFD, 0);
    assert_eq!(msix.flags & VFIO_IRQ_INFO_NORESIZE, 0);
    assert_eq!(client.get_irq_info(irq_index::ERR).unwrap().count, 1);
    assert_eq!(client.get_irq_info(irq_index::INTX).unwrap().count, 0);
    assert_eq!(client.get_irq_info(irq_index::REQ).unwrap().count, 0);
}

fn read32(client: &mut Client, region: u32, offset: u64) -> u32 {
    let mut b = [0u8; 4];
    client.region_read(region, offset, &mut b).unwrap();
    u32::from_le_bytes(b)
}

fn write32(client: &mut Client, region: u32, offset: u64, v: u32) {
    client
        .region_write(region, offset, &v.to_le_bytes())
        .unwrap();
}

#[test]
fn config_space_reads_and_writes_apply_the_masks() {
    let srv = Running::start("config");
    let mut client = Client::new(&srv.path).unwrap();
    let cfg = region::CONFIG;
    assert_eq!(read32(&mut client, cfg, 0), 0x10CA_8086);
    assert_eq!(read32(&mut client, cfg, 8) >> 8, 0x02_0000, "class");
    assert_eq!(
        read32(&mut client, cfg, 0x3c) >> 8 & 0xff,
        0,
        "interrupt pin"
    );
    // The whole config space in one read, as QEMU does at realize.
    let mut all = vec![0u8; 4096];
    client.region_read(cfg, 0, &mut all).unwrap();
    assert_eq!(all[0x34], 0x70, "capabilities pointer");
    assert_eq!(all[0x70], 0x11, "MSI-X capability id");

    // Vendor/device are read-only.
    write32(&mut client, cfg, 0, 0xffff_ffff);
    assert_eq!(read32(&mut client, cfg, 0), 0x10CA_8086);
    // A VF's Command has only Memory Space and Bus Master writable.
    client
        .region_write(cfg, 4, &0xffffu16.to_le_bytes())
        .unwrap();
    assert_eq!(read32(&mut client, cfg, 4) & 0xffff, 0x0006);
    // BAR0 sizes as a 64-bit prefetchable 16 KiB BAR.
    write32(&mut client, cfg, 0x10, 0xffff_ffff);
    assert_eq!(read32(&mut client, cfg, 0x10), 0xffff_c00c);
    // No ROM: the ROM BAR reads back 0 after sizing.
    write32(&mut client, cfg, 0x30, 0xffff_f800);
    assert_eq!(read32(&mut client, cfg, 0x30), 0);
}

#[test]
fn bar_writes_and_reads_reach_the_function() {
    let srv = Running::start("bar");
    let mut client = Client::new(&srv.path).unwrap();
    write32(&mut client, region::BAR0, 0x20, 0xdead_beef);
    assert_eq!(read32(&mut client, region::BAR0, 0x20), 0xdead_beef);
    let mut b8 = [0u8; 8];
    client
        .region_write(region::BAR0, 0x28, &0x0123_4567_89ab_cdefu64.to_le_bytes())
        .unwrap();
    client.region_read(region::BAR0, 0x28, &mut b8).unwrap();
    assert_eq!(u64::from_le_bytes(b8), 0x0123_4567_89ab_cdef);
    let writes = srv.probe.writes.lock().unwrap().clone();
    assert_eq!(writes[0], (0, 0x20, 0xdead_beefu32.to_le_bytes().to_vec()));
}

/// A connection looks for its client's next message awake (busy polling), then napping
/// between looks, then asleep on the socket: a posted write followed by a read is served in
/// order whichever phase it lands in, and a server napping for a client shuts down.
#[test]
fn messages_are_served_in_order_in_every_polling_phase() {
    let (f, probe) = TestFunction::new();
    let mut srv = Running::start_configured("phases", f, probe, |s| {
        s.set_busy_poll(Duration::from_micros(200));
        s.set_nap_poll(Duration::from_millis(20));
    });
    let mut c = RawClient::negotiated(&srv.path);
    // Within the busy poll, within the naps, past both.
    let gaps = [0, 100, 2_000, 15_000, 40_000];
    for (i, gap_us) in gaps.into_iter().enumerate() {
        thread::sleep(Duration::from_micros(gap_us));
        let value = 0x5000 + i as u32;
        c.region_write(region::BAR0, 0x40, &value.to_le_bytes(), true);
        let r = c.region_read(region::BAR0, 0x40, 4);
        assert!(!r.is_error(), "read after {gap_us} µs: {r:?}");
        assert_eq!(r.u32_at(16), value, "after {gap_us} µs");
    }
    // Shut down while the connection naps: the server's thread ends.
    c.region_write(region::BAR0, 0x40, &[0; 4], true);
    srv.stop();
}

/// A napping connection's look is a read: a message with an fd that a look finds keeps its
/// fd, and an EOF a look finds ends the connection.
#[test]
fn a_look_while_napping_takes_a_message_with_its_fd_and_an_eof() {
    let (f, probe) = TestFunction::new();
    let srv = Running::start_configured("nap-look", f, probe, |s| {
        s.set_busy_poll(Duration::from_micros(100));
        s.set_nap_poll(Duration::from_millis(50));
    });
    let mut c = RawClient::negotiated(&srv.path);
    // A posted write leaves the connection napping, not asleep on its socket.
    c.region_write(region::BAR0, 0x40, &[1; 4], true);
    thread::sleep(Duration::from_millis(5));
    let ram = memfd(0x10_0000);
    let r = c.call(
        CMD_DMA_MAP,
        &dma_map_payload(0x4000_0000, 0x10_0000, 0, true),
        &[ram.as_raw_fd()],
    );
    assert!(!r.is_error(), "{r:?}");
    let ctx = srv.probe.ctx().unwrap();
    assert_eq!(ctx.dma.counters().mmapped_maps, 1, "the map kept its fd");
    c.region_write(region::BAR0, 0x40, &[2; 4], true);
    thread::sleep(Duration::from_millis(5));
    drop(c);
    srv.probe.wait_for("the connection to end", |p| {
        p.detaches.load(Ordering::SeqCst) == 1
    });
}

#[test]
fn posted_writes_get_no_reply_and_are_applied_before_a_later_read() {
    let srv = Running::start("posted");
    let mut c = RawClient::negotiated(&srv.path);
    for i in 0..64u32 {
        c.region_write(
            region::BAR0,
            0x100 + 4 * u64::from(i),
            &i.to_le_bytes(),
            true,
        );
    }
    // A posted write to a bad region must not produce an error reply either.
    let p = P::default().u64(0).u32(1).u32(4).bytes(&[0; 4]);
    c.send(CMD_REGION_WRITE, F_NO_REPLY, &p.0, &[]);
    // The very next message we receive is this read's reply.
    let r = c.region_read(region::BAR0, 0x100 + 4 * 63, 4);
    assert_eq!(r.u32_at(16), 63);
    assert_eq!(r.size, 32 + 4);
    assert_eq!(srv.handle.stats().silent_errors, 1);
}

#[test]
fn dma_map_with_memfd_then_read_what_the_server_wrote() {
    let srv = Running::start("dma-memfd");
    let mut client = Client::new(&srv.path).unwrap();
    let ram = memfd(0x10_0000);
    client
        .dma_map(0, 0x4000_0000, 0x10_0000, ram.as_raw_fd())
        .unwrap();
    let addr = 0x4000_0000u64 + 0x1230;
    client
        .region_write(region::BAR0, doorbell::DMA_ADDR, &addr.to_le_bytes())
        .unwrap();
    write32(&mut client, region::BAR0, doorbell::DMA_GO, 32);
    assert_eq!(read32(&mut client, region::BAR0, doorbell::DMA_STATUS), 0);
    // Reading guest memory on the connection thread is fine on the mmap path.
    client
        .region_write(region::BAR0, doorbell::DMA_READ_GO, &16u32.to_le_bytes())
        .unwrap();
    assert_eq!(read32(&mut client, region::BAR0, doorbell::DMA_STATUS), 0);
    let mut back = [0u8; 16];
    client
        .region_read(region::BAR0, doorbell::DMA_READ_BUF, &mut back)
        .unwrap();
    assert_eq!(&back, DMA_PATTERN);
    let got = pread(&ram, 0x1230, 32);
    assert_eq!(&got[..16], DMA_PATTERN);
    assert_eq!(&got[16..], DMA_PATTERN);

    // The model's handle sees the same memory through vm-memory.
    let ctx = srv.probe.ctx().unwrap();
    let mut b = [0u8; 16];
    ctx.dma.read(addr, &mut b).unwrap();
    assert_eq!(&b, DMA_PATTERN);
    assert_eq!(ctx.dma.counters().mmapped_maps, 1);

    // After DMA_UNMAP the range is gone.
    client.dma_unmap(0x4000_0000, 0x10_0000).unwrap();
    assert!(matches!(
        ctx.dma.read(addr, &mut b),
        Err(DmaError::Unmapped { .. })
    ));
    write32(&mut client, region::BAR0, doorbell::DMA_GO, 4);
    assert_eq!(read32(&mut client, region::BAR0, doorbell::DMA_STATUS), 1);
}

/// Maps without an fd go through DMA_READ/DMA_WRITE messages, interleaved with the client's own
/// requests and replies on one stream.
#[test]
fn dma_without_fd_uses_messages_demultiplexed_from_replies() {
    let srv = Running::start("dma-msg");
    let mut c = RawClient::negotiated(&srv.path);
    let map = P::default().u32(32).u32(3).u64(0).u64(0x8000).u64(0x1000);
    assert!(!c.call(CMD_DMA_MAP, &map.0, &[]).is_error());

    // Posted doorbell writes: the server answers nothing but sends us a DMA_WRITE request.
    c.region_write(
        region::BAR0,
        doorbell::DMA_ADDR,
        &0x8010u64.to_le_bytes(),
        true,
    );
    c.region_write(region::BAR0, doorbell::DMA_GO, &16u32.to_le_bytes(), true);
    let req = c.recv().expect("DMA_WRITE request");
    assert_eq!(req.command, CMD_DMA_WRITE);
    assert_eq!(req.flags & 0xf, 0, "a command");
    assert_eq!((req.u64_at(0), req.u64_at(8)), (0x8010, 16));
    assert_eq!(&req.payload[16..], DMA_PATTERN);
    // Answer it, then a client request still works.
    let reply = message(req.id, CMD_DMA_WRITE, F_REPLY, &req.payload[..16]);
    c.send_raw(&reply);
    assert_eq!(c.read_u32(region::BAR0, doorbell::DMA_STATUS), 0);

    // The client refuses the next one: counted on the model's handle, nothing sent back.
    c.region_write(region::BAR0, doorbell::DMA_GO, &4u32.to_le_bytes(), true);
    let req = c.recv().expect("second DMA_WRITE request");
    let mut err = message(req.id, CMD_DMA_WRITE, F_REPLY | F_ERROR, &[]);
    err[12..16].copy_from_slice(&(libc::EPERM as u32).to_ne_bytes());
    c.send_raw(&err);
    assert_eq!(
        c.read_u32(region::BAR0, doorbell::DMA_STATUS),
        0,
        "queued fine"
    );
    let counters = srv.probe.ctx().unwrap().dma.counters();
    assert_eq!(
        (counters.msg_writes, counters.errors),
        (2, 1),
        "{counters:?}"
    );

    // The model reading fd-less memory on its connection thread is refused at once (it would
    // wait for a reply only this thread can read), instead of deadlocking.
    c.region_write(
        region::BAR0,
        doorbell::DMA_READ_GO,
        &8u32.to_le_bytes(),
        true,
    );
    assert_eq!(c.read_u32(region::BAR0, doorbell::DMA_STATUS), 2);

    // A blocking message read from a worker thread (never a connection thread): the client
    // answers DMA_READ on its side while we wait.
    let ctx = srv.probe.ctx().unwrap();
    let worker = thread::spawn(move || {
        let mut b = [0u8; 8];
        ctx.dma.read(0x8100, &mut b).map(|_| b)
    });
    let req = c.recv().expect("DMA_READ request");
    assert_eq!(req.command, CMD_DMA_READ);
    assert_eq!((req.u64_at(0), req.u64_at(8)), (0x8100, 8));
    let p = P::default().u64(0x8100).u64(8).bytes(b"guestmem");
    c.send_raw(&message(req.id, CMD_DMA_READ, F_REPLY, &p.0));
    assert_eq!(&worker.join().unwrap().unwrap(), b"guestmem");

    // An error reply from the client reaches the waiter as an error.
    let ctx = srv.probe.ctx().unwrap();
    let worker = thread::spawn(move || ctx.dma.read(0x8000, &mut [0u8; 4]));
    let req = c.recv().unwrap();
    let mut err = message(req.id, CMD_DMA_READ, F_REPLY | F_ERROR, &[]);
    err[12..16].copy_from_slice(&(libc::EFAULT as u32).to_ne_bytes());
    c.send_raw(&err);
    let r = worker.join().unwrap();
    assert!(
        matches!(r, Err(DmaError::Client(e)) if e == libc::EFAULT as u32),
        "{r:?}"
    );

    // Outside any map: refused without a message.
    let ctx = srv.probe.ctx().unwrap();
    assert!(matches!(
        ctx.dma.write(0x9000, &[1]),
        Err(DmaError::Unmapped { .. })
    ));
}

fn device_get_info(c: &mut RawClient) -> Msg {
    c.call(
        CMD_DEVICE_GET_INFO,
        &P::default().u32(16).u32(0).u32(0).u32(0).0,
        &[],
    )
}

fn shared_memory_function(name: &str) -> Running {
    let (mut f, probe) = TestFunction::new();
    f.needs_shared_memory = true;
    Running::start_with(name, f, probe)
}

/// A function that needs shared guest RAM refuses writable maps it cannot mmap (QEMU's
/// anonymous RAM), and then DEVICE_GET_INFO, so that QEMU fails to realize the device; the
/// read-only fd-less maps (ROM, BIOS) are still accepted on the message path.
#[test]
fn unshared_writable_ram_is_refused_for_a_function_that_needs_shared_memory() {
    let srv = shared_memory_function("unshared");
    let mut c = RawClient::negotiated(&srv.path);
    // QEMU's order at realize: low RAM, the rest of RAM, then the BIOS ROM, then DEVICE_GET_INFO.
    let r = c.call(CMD_DMA_MAP, &dma_map_payload(0, 0xa_0000, 0, true), &[]);
    assert!(r.is_error());
    assert_eq!(r.error, libc::EOPNOTSUPP as u32);
    let r = c.call(
        CMD_DMA_MAP,
        &dma_map_payload(0xc_0000, 0x1ff4_0000, 0, true),
        &[],
    );
    assert_eq!(r.error, libc::EOPNOTSUPP as u32);
    let rom = dma_map_payload(0xfffc_0000, 0x4_0000, 0, false);
    assert!(!c.call(CMD_DMA_MAP, &rom, &[]).is_error());
    let r = device_get_info(&mut c);
    assert!(r.is_error(), "DEVICE_GET_INFO must fail: {r:?}");
    assert_eq!(r.error, libc::EOPNOTSUPP as u32);
    let stats = srv.handle.stats();
    assert_eq!(stats.unshared_maps_refused, 2, "{stats:?}");
    // The refused maps are not in the table; the ROM is, on the message path.
    let ctx = srv.probe.ctx().unwrap();
    assert_eq!(
        (
            ctx.dma.counters().mmapped_maps,
            ctx.dma.counters().message_maps
        ),
        (0, 1)
    );
    assert!(matches!(
        ctx.dma.write(0x1000, &[1]),
        Err(DmaError::Unmapped { .. })
    ));
    // The connection itself stays usable (QEMU closes it after the failed realize).
    assert_eq!(c.read_u32(region::CONFIG, 0), 0x10ca_8086);
}

#[test]
fn shared_ram_first_then_fd_less_writable_device_memory_is_accepted() {
    let srv = shared_memory_function("shared");
    let mut c = RawClient::negotiated(&srv.path);
    let ram = memfd(0x10_0000);
    let r = c.call(
        CMD_DMA_MAP,
        &dma_map_payload(0, 0x10_0000, 0, true),
        &[ram.as_raw_fd()],
    );
    assert!(!r.is_error(), "{r:?}");
    // QEMU's VGA frame buffer: writable, its own anonymous RAM block, so no fd. Accepted once
    // the guest RAM has shown to be shared.
    let vram = dma_map_payload(0xfd00_0000, 0x100_0000, 0, true);
    assert!(!c.call(CMD_DMA_MAP, &vram, &[]).is_error());
    let rom = dma_map_payload(0xfffc_0000, 0x4_0000, 0, false);
    assert!(!c.call(CMD_DMA_MAP, &rom, &[]).is_error());
    assert!(!device_get_info(&mut c).is_error());
    assert_eq!(srv.handle.stats().unshared_maps_refused, 0);
    let ctx = srv.probe.ctx().unwrap();
    assert_eq!(
        (
            ctx.dma.counters().mmapped_maps,
            ctx.dma.counters().message_maps
        ),
        (1, 2)
    );

    // The read-only fd-less map works on the message path: a DMA_READ from a worker thread.
    let worker = thread::spawn(move || {
        let mut b = [0u8; 4];
        ctx.dma.read(0xffff_fff0, &mut b).map(|_| b)
    });
    let req = c.recv().expect("DMA_READ request");
    assert_eq!(req.command, CMD_DMA_READ);
    assert_eq!((req.u64_at(0), req.u64_at(8)), (0xffff_fff0, 4));
    let p = P::default()
        .u64(0xffff_fff0)
        .u64(4)
        .bytes(&[0xea, 0x5b, 0xe0, 0x00]);
    c.send_raw(&message(req.id, CMD_DMA_READ, F_REPLY, &p.0));
    assert_eq!(worker.join().unwrap().unwrap(), [0xea, 0x5b, 0xe0, 0x00]);
}

#[test]
fn a_function_that_does_not_need_shared_memory_keeps_the_message_path() {
    let srv = Running::start("msg-path");
    let mut c = RawClient::negotiated(&srv.path);
    assert!(!c
        .call(CMD_DMA_MAP, &dma_map_payload(0, 0xa_0000, 0, true), &[])
        .is_error());
    assert!(!device_get_info(&mut c).is_error());
    assert_eq!(srv.handle.stats().unshared_maps_refused, 0);
    assert_eq!(srv.probe.ctx().unwrap().dma.counters().message_maps, 1);
}

#[test]
fn set_irqs_then_an_interrupt_is_observed_on_the_eventfd() {
    let srv = Running::start("irq");
    let mut client = Client::new(&srv.path).unwrap();
    let e0 = EventFd::new(EFD_NONBLOCK).unwrap();
    client
        .set_irqs(irq_index::MSIX, TRIGGER_EVENTFD, 0, 1, &[e0.as_raw_fd()])
        .unwrap();
    write32(&mut client, region::BAR0, doorbell::FIRE_MSIX, 0);
    assert_eq!(e0.read().unwrap(), 1);

    // QEMU's "MSI-X on, no vector": count 1, no fds. Vector 1 has no eventfd: a counted no-op.
    client
        .set_irqs(irq_index::MSIX, TRIGGER_EVENTFD, 1, 2, &[])
        .unwrap();
    write32(&mut client, region::BAR0, doorbell::FIRE_MSIX, 1);
    let ctx = srv.probe.ctx().unwrap();
    assert_eq!(ctx.irqs.counters().suppressed, 1);

    // Replace vector 0's eventfd (QEMU does on mask/unmask with KVM).
    let e1 = EventFd::new(EFD_NONBLOCK).unwrap();
    client
        .set_irqs(irq_index::MSIX, TRIGGER_EVENTFD, 0, 1, &[e1.as_raw_fd()])
        .unwrap();
    write32(&mut client, region::BAR0, doorbell::FIRE_MSIX, 0);
    assert_eq!(e1.read().unwrap(), 1);
    assert!(e0.read().is_err(), "old eventfd no longer signalled");

    // Several vectors in one message.
    let (a, b, c) = (
        EventFd::new(EFD_NONBLOCK).unwrap(),
        EventFd::new(EFD_NONBLOCK).unwrap(),
        EventFd::new(EFD_NONBLOCK).unwrap(),
    );
    client
        .set_irqs(
            irq_index::MSIX,
            TRIGGER_EVENTFD,
            0,
            3,
            &[a.as_raw_fd(), b.as_raw_fd(), c.as_raw_fd()],
        )
        .unwrap();
    // From another thread, as another VF's datapath would.
    let irqs = ctx.irqs.clone();
    thread::spawn(move || assert!(irqs.fire(irq_index::MSIX, 2)))
        .join()
        .unwrap();
    assert_eq!(c.read().unwrap(), 1);

    // Disable: DATA_NONE|TRIGGER, count 0.
    client
        .set_irqs(
            irq_index::MSIX,
            VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
            0,
            0,
            &[],
        )
        .unwrap();
    assert!(!ctx.irqs.fire(irq_index::MSIX, 2));
    assert!(c.read().is_err());
}

#[test]
fn device_reset_resets_the_function() {
    let srv = Running::start("reset");
    let mut client = Client::new(&srv.path).unwrap();
    client
        .region_write(region::CONFIG, 4, &6u16.to_le_bytes())
        .unwrap();
    write32(&mut client, region::BAR0, 0x40, 7);
    client.reset().unwrap();
    assert_eq!(srv.probe.resets.load(Ordering::SeqCst), 1);
    assert_eq!(read32(&mut client, region::CONFIG, 4) & 0xffff, 0);
    assert_eq!(read32(&mut client, region::BAR0, 0x40), 0);
}

#[test]
fn disconnect_resets_and_detaches_then_the_next_client_is_served() {
    let srv = Running::start("reconnect");
    let mut first = Client::new(&srv.path).unwrap();
    let ram = memfd(0x1000);
    first.dma_map(0, 0x1000, 0x1000, ram.as_raw_fd()).unwrap();
    let e = EventFd::new(EFD_NONBLOCK).unwrap();
    first
        .set_irqs(irq_index::MSIX, TRIGGER_EVENTFD, 0, 1, &[e.as_raw_fd()])
        .unwrap();
    write32(&mut first, region::BAR0, 0x40, 7);
    let old = srv.probe.ctx().unwrap();
    drop(first);
    srv.probe
        .wait_for("detach", |p| p.detaches.load(Ordering::SeqCst) == 1);
    assert_eq!(srv.probe.resets.load(Ordering::SeqCst), 1);
    // The old handles are dead: DMA refused, interrupts a no-op.
    assert!(matches!(
        old.dma.write(0x1000, &[1]),
        Err(DmaError::Detached)
    ));
    assert!(!old.irqs.fire(irq_index::MSIX, 0));
    assert!(e.read().is_err());

    let mut second = Client::new(&srv.path).unwrap();
    assert_eq!(
        read32(&mut second, region::BAR0, 0x40),
        0,
        "state was reset"
    );
    assert_eq!(srv.probe.attaches.load(Ordering::SeqCst), 2);
    drop(second);
    srv.probe
        .wait_for("second detach", |p| p.detaches.load(Ordering::SeqCst) == 2);
    assert_served(&srv.path);
    assert_eq!(srv.handle.stats().connections, 3);
}

/// A connection that closes before VERSION (a look at whether the socket is alive, as a second
/// `serve` on the same directory takes) could change nothing, so the function is not reset when
/// it ends: a VF's pool is not turned off by it. A client that negotiated is.
#[test]
fn a_connection_closed_before_version_does_not_reset_the_function() {
    let srv = Running::start("look");
    drop(std::os::unix::net::UnixStream::connect(&srv.path).unwrap());
    srv.probe
        .wait_for("detach", |p| p.detaches.load(Ordering::SeqCst) == 1);
    let client = Client::new(&srv.path).unwrap();
    drop(client);
    // The server serves one connection at a time: once the next client is served, the two
    // before it have ended, detach and reset included.
    assert_served(&srv.path);
    assert_eq!(srv.probe.attaches.load(Ordering::SeqCst), 3);
    assert!(srv.probe.detaches.load(Ordering::SeqCst) >= 2);
    assert_eq!(
        srv.probe.resets.load(Ordering::SeqCst),
        1,
        "only the client that negotiated is reset after"
    );
    assert_eq!(srv.handle.stats().connections, 3);
}

#[test]
fn shutdown_stops_the_server_and_removes_the_socket() {
    let mut srv = Running::start("shutdown");
    let client = Client::new(&srv.path).unwrap();
    srv.stop();
    assert!(!srv.path.exists(), "socket file removed");
    drop(client);
    // The path can be bound again (its directory went with it at the stop).
    std::fs::create_dir_all(srv.path.parent().unwrap()).unwrap();
    let (f, _) = TestFunction::new();
    let again = sriov_emu::vfio::Server::bind(&srv.path, f).unwrap();
    drop(again);
}

#[test]
fn a_live_socket_is_not_stolen_by_a_second_bind() {
    let srv = Running::start("inuse");
    let (f, _) = TestFunction::new();
    let err = sriov_emu::vfio::Server::bind(&srv.path, f)
        .err()
        .expect("must fail");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    thread::sleep(Duration::from_millis(10));
    assert_served(&srv.path);
}

/// The handles are used from other threads (another VF's datapath) while the connection thread
/// remaps memory and swaps eventfds: no panic, no deadlock, the server keeps serving.
#[test]
fn handles_work_from_other_threads_during_remaps() {
    use std::sync::atomic::{AtomicBool, AtomicU64};
    use std::sync::Arc;

    let srv = Running::start("threads");
    let mut client = Client::new(&srv.path).unwrap();
    let ram = memfd(0x10_0000);
    client
        .dma_map(0, 0x10_0000, 0x10_0000, ram.as_raw_fd())
        .unwrap();
    let ctx = srv.probe.ctx().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (writes, fires) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let workers: Vec<_> = (0..2u64)
        .map(|w| {
            let (ctx, stop, writes, fires) =
                (ctx.clone(), stop.clone(), writes.clone(), fires.clone());
            thread::spawn(move || {
                let mut k = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let addr = 0x10_0000 + (k * 64 + w * 32) % 0xf_0000;
                    if ctx.dma.write(addr, &k.to_le_bytes()).is_ok() {
                        writes.fetch_add(1, Ordering::Relaxed);
                    }
                    if ctx.irqs.fire(irq_index::MSIX, 0) {
                        fires.fetch_add(1, Ordering::Relaxed);
                    }
                    k += 1;
                }
            })
        })
        .collect();
    let mut efds = Vec::new();
    for _ in 0..100 {
        let e = EventFd::new(EFD_NONBLOCK).unwrap();
        client
            .set_irqs(irq_index::MSIX, TRIGGER_EVENTFD, 0, 1, &[e.as_raw_fd()])
            .unwrap();
        efds.push(e);
        client.dma_unmap(0x10_0000, 0x10_0000).unwrap();
        client
            .dma_map(0, 0x10_0000, 0x10_0000, ram.as_raw_fd())
            .unwrap();
        thread::sleep(Duration::from_micros(200));
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    assert!(writes.load(Ordering::Relaxed) > 0);
    assert!(fires.load(Ordering::Relaxed) > 0);
    let signalled: u64 = efds.iter().filter_map(|e| e.read().ok()).sum();
    assert_eq!(signalled, fires.load(Ordering::Relaxed));
    assert_eq!(read32(&mut client, region::CONFIG, 0), 0x10CA_8086);
}
