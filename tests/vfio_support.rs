//! Shared by the vfio-user server tests: a small test `PciFunction` with a real `pcie::ConfigSpace`
//! (the 82576 VF layout), a server on a temporary socket, and a raw protocol client for the
//! messages the `vfio_user` crate's `Client` cannot send.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pcie::{Aer, Ari, Bar, ConfigSpace, Header, LinkSpeed, Msix, MsixRegion, PciExpress, Sriov};
use sriov_emu::vfio::{
    region, DmaError, FunctionContext, FunctionInfo, PciFunction, RegionError, RegionInfo, Server,
    ServerHandle,
};
use vmm_sys_util::sock_ctrl_msg::ScmSocket;

pub const KIB: u64 = 1024;

/// BAR0 doorbells of the test function.
pub mod doorbell {
    /// u64: guest address for the next DMA write.
    pub const DMA_ADDR: u64 = 0x1000;
    /// u32 write n: DMA-write `n` bytes of [`super::DMA_PATTERN`] (repeated) at DMA_ADDR.
    pub const DMA_GO: u64 = 0x1008;
    /// u32 write v: fire MSI-X vector v.
    pub const FIRE_MSIX: u64 = 0x1010;
    /// Reads back the result of the last DMA (0 ok, 1 error, 2 refused as blocking).
    pub const DMA_STATUS: u64 = 0x1018;
    /// u32 write n: DMA-read `n` bytes at DMA_ADDR (on the connection thread) into BAR0 at
    /// [`DMA_READ_BUF`].
    pub const DMA_READ_GO: u64 = 0x1020;
    pub const DMA_READ_BUF: u64 = 0x2000;
}

pub const DMA_PATTERN: &[u8] = b"sriov-emu DMA ok";

/// The 82576 VF config space as the server presents it: 8086:10CA, class 0x020000, Interrupt
/// Pin 0, BAR0 and BAR3 64-bit 16 KiB prefetchable, MSI-X (3 vectors, BIR 3, PBA 0x2000) at
/// 0x70, PCIe with FLR at 0xA0, AER at 0x100, ARI at 0x150.
pub fn vf_82576_config() -> ConfigSpace {
    let mut pf = ConfigSpace::new(&Header {
        vendor_id: 0x8086,
        device_id: 0x10C9,
        revision_id: 1,
        class_code: 0x02_0000,
        multi_function: true,
        interrupt_pin: 1,
        ..Header::default()
    });
    let pcie = PciExpress::endpoint()
        .with_flr()
        .with_link(LinkSpeed::Gt2_5, 4);
    pf.add_capability(0xA0, &pcie).expect("pf pcie");
    pf.add_ext_capability(
        0x100,
        &Sriov::new(8, 0x10CA)
            .with_routing(0x80, 2)
            .with_vf_bar(0, Bar::mem64(16 * KIB).prefetchable())
            .with_vf_bar(3, Bar::mem64(16 * KIB).prefetchable()),
    )
    .expect("pf sriov");
    let mut vf = pf.vf_config_space().expect("vf config");
    let msix = Msix::new(3, MsixRegion::new(3, 0), MsixRegion::new(3, 0x2000));
    vf.add_capability(0x70, &msix).expect("msix");
    vf.add_capability(0xA0, &pcie).expect("vf pcie");
    vf.add_ext_capability(0x100, &Aer::new()).expect("aer");
    vf.add_ext_capability(0x150, &Ari::new(0)).expect("ari");
    vf
}

/// What the test sees of the function (shared with it).
#[derive(Default)]
pub struct Probe {
    pub writes: Mutex<Vec<(u32, u64, Vec<u8>)>>,
    pub ctx: Mutex<Option<FunctionContext>>,
    pub attaches: AtomicU32,
    pub detaches: AtomicU32,
    pub resets: AtomicU32,
}

impl Probe {
    pub fn ctx(&self) -> Option<FunctionContext> {
        self.ctx.lock().unwrap().clone()
    }

    /// Wait until `f` holds (the server runs on its own thread).
    pub fn wait_for(&self, what: &str, f: impl Fn(&Probe) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// A test function: the VF config space, BAR0 as 16 KiB of plain registers plus doorbells that
/// DMA and fire interrupts through the handles, BAR3 (MSI-X table/PBA) reading zero.
pub struct TestFunction {
    pub config: ConfigSpace,
    /// Reported as [`FunctionInfo::needs_shared_memory`] (default false: the message path).
    pub needs_shared_memory: bool,
    bar0: Vec<u8>,
    dma_addr: u64,
    dma_status: u32,
    probe: Arc<Probe>,
}

impl TestFunction {
    pub fn new() -> (TestFunction, Arc<Probe>) {
        let probe = Arc::new(Probe::default());
        let f = TestFunction {
            config: vf_82576_config(),
            needs_shared_memory: false,
            bar0: vec![0; 16 * KIB as usize],
            dma_addr: 0,
            dma_status: 0,
            probe: probe.clone(),
        };
        (f, probe)
    }
}

fn u64_of(data: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b[..data.len().min(8)].copy_from_slice(&data[..data.len().min(8)]);
    u64::from_le_bytes(b)
}

impl PciFunction for TestFunction {
    fn info(&self) -> FunctionInfo {
        let mut info = FunctionInfo::default();
        info.regions[region::BAR0 as usize] = RegionInfo::rw(16 * KIB);
        info.regions[region::BAR3 as usize] = RegionInfo::rw(16 * KIB);
        info.irq_counts = [0, 0, 3, 1, 0];
        info.needs_shared_memory = self.needs_shared_memory;
        info
    }

    fn config_read(&mut self, offset: u64, data: &mut [u8]) {
        self.config.read(offset as usize, data);
    }

    fn config_write(&mut self, offset: u64, data: &[u8]) {
        let _ = self.config.write(offset as usize, data);
    }

    fn region_read(&mut self, index: u32, offset: u64, data: &mut [u8]) -> Result<(), RegionError> {
        match index {
            region::BAR0 if offset == doorbell::DMA_STATUS => {
                let v = self.dma_status.to_le_bytes();
                let n = data.len().min(4);
                data[..n].copy_from_slice(&v[..n]);
            }
            region::BAR0 => {
                let o = offset as usize;
                data.copy_from_slice(&self.bar0[o..o + data.len()]);
            }
            region::BAR3 => data.fill(0),
            _ => return Err(RegionError::NotSupported),
        }
        Ok(())
    }

    fn region_write(&mut self, index: u32, offset: u64, data: &[u8]) -> Result<(), RegionError> {
        self.probe
            .writes
            .lock()
            .unwrap()
            .push((index, offset, data.to_vec()));
        if index != region::BAR0 {
            return Ok(());
        }
        let ctx = self.probe.ctx();
        match offset {
            doorbell::DMA_ADDR => self.dma_addr = u64_of(data),
            doorbell::DMA_GO => {
                let n = u64_of(data) as usize;
                let bytes: Vec<u8> = DMA_PATTERN.iter().copied().cycle().take(n).collect();
                let ok = ctx.is_some_and(|c| c.dma.write(self.dma_addr, &bytes).is_ok());
                self.dma_status = u32::from(!ok);
            }
            doorbell::DMA_READ_GO => {
                let n = (u64_of(data) as usize).min(0x1000);
                let mut buf = vec![0u8; n];
                let r = match ctx {
                    Some(c) => c.dma.read(self.dma_addr, &mut buf),
                    None => Err(DmaError::Detached),
                };
                self.dma_status = match r {
                    Ok(()) => {
                        let o = doorbell::DMA_READ_BUF as usize;
                        self.bar0[o..o + n].copy_from_slice(&buf);
                        0
                    }
                    Err(DmaError::WouldBlock) => 2,
                    Err(_) => 1,
                };
            }
            doorbell::FIRE_MSIX => {
                if let Some(c) = ctx {
                    c.irqs
                        .fire(sriov_emu::vfio::irq_index::MSIX, u64_of(data) as u32);
                }
            }
            _ => {
                let o = offset as usize;
                self.bar0[o..o + data.len()].copy_from_slice(data);
            }
        }
        Ok(())
    }

    fn reset(&mut self) {
        let _ = self.config.reset();
        self.bar0.fill(0);
        self.probe.resets.fetch_add(1, Ordering::SeqCst);
    }

    fn attach(&mut self, ctx: FunctionContext) {
        *self.probe.ctx.lock().unwrap() = Some(ctx);
        self.probe.attaches.fetch_add(1, Ordering::SeqCst);
    }

    fn detach(&mut self) {
        *self.probe.ctx.lock().unwrap() = None;
        self.probe.detaches.fetch_add(1, Ordering::SeqCst);
    }
}

/// A QEMU-style DMA_MAP payload (argsz 32): READ, plus WRITE if `writable`.
pub fn dma_map_payload(iova: u64, size: u64, offset: u64, writable: bool) -> Vec<u8> {
    let flags = 1 | if writable { 2 } else { 0 };
    P::default()
        .u32(32)
        .u32(flags)
        .u64(offset)
        .u64(iova)
        .u64(size)
        .0
}

/// A running server on a fresh socket path; shut down and joined on drop.
pub struct Running {
    pub path: PathBuf,
    pub handle: ServerHandle,
    pub probe: Arc<Probe>,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl Running {
    pub fn start(name: &str) -> Running {
        let (f, probe) = TestFunction::new();
        Self::start_with(name, f, probe)
    }

    pub fn start_with(name: &str, f: impl PciFunction + 'static, probe: Arc<Probe>) -> Running {
        Self::start_configured(name, f, probe, |_| {})
    }

    pub fn start_configured(
        name: &str,
        f: impl PciFunction + 'static,
        probe: Arc<Probe>,
        configure: impl FnOnce(&mut Server),
    ) -> Running {
        let path = socket_path(name);
        let mut server = Server::bind(&path, f).expect("bind");
        configure(&mut server);
        let handle = server.handle();
        let thread = std::thread::spawn(move || server.run());
        Running {
            path,
            handle,
            probe,
            thread: Some(thread),
        }
    }

    /// Stop the server and wait for its thread (panics if the server thread panicked).
    pub fn stop(&mut self) {
        self.handle.shutdown();
        if let Some(t) = self.thread.take() {
            t.join().expect("server thread panicked").expect("run");
        }
        // The socket's own directory goes with it (the server removed the socket file).
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.stop();
        } else {
            self.handle.shutdown();
        }
    }
}

/// A socket path in a directory of its own, which [`Running::stop`] removes. One directory for
/// all of the process's sockets raced: a test's stop could remove it, empty for a moment,
/// between another test's creating it and binding in it.
pub fn socket_path(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("sriov-emu-vfio-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{name}.sock"))
}

/// A memfd of `size` bytes, sealable (the server seals it against shrinking).
pub fn memfd(size: u64) -> OwnedFd {
    // SAFETY: memfd_create with a C string literal; the fd is ours from here on.
    unsafe {
        let fd = libc::memfd_create(c"guest-ram".as_ptr(), libc::MFD_ALLOW_SEALING);
        assert!(fd >= 0);
        assert_eq!(libc::ftruncate(fd, size as i64), 0);
        OwnedFd::from_raw_fd(fd)
    }
}

pub fn pread(fd: &OwnedFd, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    // SAFETY: buf is valid for len bytes.
    let n = unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), len, offset as i64) };
    assert_eq!(n, len as isize);
    buf
}

// ---- raw protocol client ----

pub const CMD_VERSION: u16 = 1;
pub const CMD_DMA_MAP: u16 = 2;
pub const CMD_DMA_UNMAP: u16 = 3;
pub const CMD_DEVICE_GET_INFO: u16 = 4;
pub const CMD_GET_REGION_INFO: u16 = 5;
pub const CMD_GET_IRQ_INFO: u16 = 7;
pub const CMD_SET_IRQS: u16 = 8;
pub const CMD_REGION_READ: u16 = 9;
pub const CMD_REGION_WRITE: u16 = 10;
pub const CMD_DMA_READ: u16 = 11;
pub const CMD_DMA_WRITE: u16 = 12;
pub const CMD_DEVICE_RESET: u16 = 13;

pub const F_REPLY: u32 = 1;
pub const F_NO_REPLY: u32 = 1 << 4;
pub const F_ERROR: u32 = 1 << 5;

/// QEMU 11.1.3's VERSION JSON, byte for byte (214-byte message).
pub const QEMU_VERSION_JSON: &str = concat!(
    r#"{"capabilities": {"pgsizes": 4096, "max_msg_fds": 16, "max_dma_maps": 65535, "#,
    r#""max_data_xfer_size": 1048576, "migration": {"max_bitmap_size": 268435456, "pgsize": 4096}, "#,
    r#""write_multiple": true}}"#
);

#[derive(Debug, Clone)]
pub struct Msg {
    pub id: u16,
    pub command: u16,
    pub size: u32,
    pub flags: u32,
    pub error: u32,
    pub payload: Vec<u8>,
}

impl Msg {
    pub fn is_error(&self) -> bool {
        self.flags & F_ERROR != 0
    }
    pub fn u32_at(&self, at: usize) -> u32 {
        u32::from_ne_bytes(self.payload[at..at + 4].try_into().unwrap())
    }
    pub fn u64_at(&self, at: usize) -> u64 {
        u64::from_ne_bytes(self.payload[at..at + 8].try_into().unwrap())
    }
}

/// Build a message: header (size computed unless `size` is given) + payload.
pub fn message(id: u16, command: u16, flags: u32, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&id.to_ne_bytes());
    m.extend_from_slice(&command.to_ne_bytes());
    m.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(payload);
    m
}

/// Little helper to lay out payloads.
#[derive(Default)]
pub struct P(pub Vec<u8>);
impl P {
    pub fn u16(mut self, v: u16) -> Self {
        self.0.extend_from_slice(&v.to_ne_bytes());
        self
    }
    pub fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_ne_bytes());
        self
    }
    pub fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_ne_bytes());
        self
    }
    pub fn bytes(mut self, v: &[u8]) -> Self {
        self.0.extend_from_slice(v);
        self
    }
}

pub struct RawClient {
    pub stream: UnixStream,
    next_id: u16,
}

impl RawClient {
    pub fn connect(path: &Path) -> RawClient {
        let stream = UnixStream::connect(path).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        RawClient {
            stream,
            next_id: 100,
        }
    }

    /// Connect and negotiate the version as QEMU does.
    pub fn negotiated(path: &Path) -> RawClient {
        let mut c = Self::connect(path);
        let r = c.version_qemu();
        assert!(!r.is_error(), "version refused: {r:?}");
        c
    }

    pub fn id(&mut self) -> u16 {
        self.next_id = self.next_id.wrapping_add(1);
        self.next_id
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    pub fn send_with_fds(&mut self, bytes: &[u8], fds: &[RawFd]) {
        let n = self.stream.send_with_fds(&[bytes], fds).expect("sendmsg");
        assert_eq!(n, bytes.len());
    }

    /// Send a command and return its id.
    pub fn send(&mut self, command: u16, flags: u32, payload: &[u8], fds: &[RawFd]) -> u16 {
        let id = self.id();
        let m = message(id, command, flags, payload);
        self.send_with_fds(&m, fds);
        id
    }

    /// Read one whole message; `None` on EOF.
    pub fn recv(&mut self) -> Option<Msg> {
        let mut h = [0u8; 16];
        match self.stream.read_exact(&mut h) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
            Err(e) => panic!("recv: {e} (server hung?)"),
        }
        let size = u32::from_ne_bytes(h[4..8].try_into().unwrap());
        assert!((16..=(2 << 20)).contains(&size), "bad size {size}");
        let mut payload = vec![0u8; size as usize - 16];
        self.stream.read_exact(&mut payload).expect("payload");
        Some(Msg {
            id: u16::from_ne_bytes(h[0..2].try_into().unwrap()),
            command: u16::from_ne_bytes(h[2..4].try_into().unwrap()),
            size,
            flags: u32::from_ne_bytes(h[8..12].try_into().unwrap()),
            error: u32::from_ne_bytes(h[12..16].try_into().unwrap()),
            payload,
        })
    }

    /// Send a command and read its reply (asserting the id matches).
    pub fn call(&mut self, command: u16, payload: &[u8], fds: &[RawFd]) -> Msg {
        let id = self.send(command, 0, payload, fds);
        let r = self.recv().expect("reply");
        assert_eq!(r.id, id, "reply id");
        assert_eq!(r.command, command, "reply command");
        assert_eq!(r.flags & 0xf, F_REPLY, "reply type");
        if r.is_error() {
            assert_ne!(r.error, 0, "error reply with errno 0");
        }
        r
    }

    pub fn version_qemu(&mut self) -> Msg {
        let p = P::default()
            .u16(0)
            .u16(0)
            .bytes(QEMU_VERSION_JSON.as_bytes())
            .bytes(&[0]);
        self.call(CMD_VERSION, &p.0, &[])
    }

    pub fn region_read(&mut self, region: u32, offset: u64, count: u32) -> Msg {
        let p = P::default().u64(offset).u32(region).u32(count);
        self.call(CMD_REGION_READ, &p.0, &[])
    }

    pub fn region_write(&mut self, region: u32, offset: u64, data: &[u8], posted: bool) -> u16 {
        let p = P::default()
            .u64(offset)
            .u32(region)
            .u32(data.len() as u32)
            .bytes(data);
        self.send(
            CMD_REGION_WRITE,
            if posted { F_NO_REPLY } else { 0 },
            &p.0,
            &[],
        )
    }

    pub fn read_u32(&mut self, region: u32, offset: u64) -> u32 {
        let r = self.region_read(region, offset, 4);
        assert!(!r.is_error(), "read failed: {r:?}");
        r.u32_at(16)
    }
}

/// Assert that a new client can complete the whole crate-`Client` handshake.
pub fn assert_served(path: &Path) {
    let c = vfio_user::Client::new(path).expect("next client served");
    assert_eq!(c.region(region::CONFIG).expect("config region").size, 4096);
    c.shutdown().ok();
}
