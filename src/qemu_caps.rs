//! What a QEMU binary can do for sriov-emu, found out by running it.
//!
//! Full-system mode gives one guest the PF and lets the guest's own PF driver enable the VFs.
//! Stock QEMU cannot do that with vfio-user devices: it hides their SR-IOV capability and
//! refuses a vfio-user-pci VF named after its PF (`"sriov-pf":"<pf id>"`). The series in
//! `qemu/patches/`, built by `scripts/build-qemu-sriov.py` into `target/qemu-sriov/`, lets it
//! compose SR-IOV from such VF devices. [`probe_vfio_user_sriov`] tells the two apart.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pcie::{Ari, BuildError, ConfigSpace, Header, PciExpress, Sriov};

use crate::vfio::{FunctionContext, FunctionInfo, PciFunction, RegionError, Server, ServerHandle};

/// Environment variable naming a QEMU with the series applied, instead of
/// [`SRIOV_QEMU_BUILD`].
pub const SRIOV_QEMU_ENV: &str = "SRIOV_EMU_SRIOV_QEMU";
/// Where `scripts/build-qemu-sriov.py` puts the patched QEMU's wrapper, from the workspace root.
pub const SRIOV_QEMU_BUILD: &str = "target/qemu-sriov/bin/qemu-system-x86_64";
/// The script that builds it.
pub const BUILD_SCRIPT: &str = "scripts/build-qemu-sriov.py";

/// What stock QEMU answers when a device type cannot be a user-created VF.
const REFUSED_VF: &str = "user cannot create SR-IOV VF with this device type";
/// How long the probe lets QEMU run: it only realizes two devices, paused.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// The patched QEMU's path: `$SRIOV_EMU_SRIOV_QEMU`, or the build of [`BUILD_SCRIPT`] in this
/// workspace. It may not exist.
pub fn sriov_qemu_path() -> PathBuf {
    match std::env::var_os(SRIOV_QEMU_ENV) {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join(SRIOV_QEMU_BUILD),
    }
}

/// Why a QEMU binary cannot serve full-system mode, or could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum QemuCapsError {
    /// It refused a vfio-user-pci VF with `sriov-pf` (stock QEMU), or has no vfio-user-pci.
    #[error(
        "{} lacks SR-IOV for vfio-user devices: {what} (it said: {said}); \
         the patched QEMU of qemu/patches/ has it: build it with `python3 {BUILD_SCRIPT}` \
         (into {SRIOV_QEMU_BUILD})",
        qemu.display()
    )]
    Lacks {
        qemu: PathBuf,
        what: &'static str,
        said: String,
    },
    /// It could not be started.
    #[error("cannot run QEMU {}: {source}", qemu.display())]
    Spawn { qemu: PathBuf, source: io::Error },
    /// It failed in a way that says nothing about SR-IOV (or did not finish in time).
    #[error("probing QEMU {} for SR-IOV with vfio-user devices failed: {said}", qemu.display())]
    Failed { qemu: PathBuf, said: String },
    /// The probe's own vfio-user servers could not be set up.
    #[error("setting up the QEMU probe's vfio-user servers: {0}")]
    Setup(#[source] io::Error),
}

/// Whether the QEMU at `qemu` accepts vfio-user-pci VFs named after a vfio-user-pci PF
/// (`"sriov-pf":"<pf id>"`) and composes the PF's SR-IOV capability from them, which
/// full-system mode needs.
///
/// It runs the binary once, paused (`-S`, TCG, q35) with a VF and its PF on a root port, both
/// served by small vfio-user servers of this process on sockets in a temporary directory (a
/// PF with ARI and an SR-IOV capability, a VF with ARI, neither with BARs), then quits it
/// through its monitor. Takes well under a second.
pub fn probe_vfio_user_sriov(qemu: &Path) -> Result<(), QemuCapsError> {
    let dir = ProbeDir::new().map_err(QemuCapsError::Setup)?;
    let (pf_config, vf_config) =
        probe_config_spaces().map_err(|e| QemuCapsError::Setup(io::Error::other(e.to_string())))?;
    let pf_sock = dir.0.join("pf.sock");
    let vf_sock = dir.0.join("vf.sock");
    let servers = [
        ProbeServer::start(&pf_sock, pf_config)?,
        ProbeServer::start(&vf_sock, vf_config)?,
    ];
    let device = |id: &str, addr: &str, socket: &Path, pf: Option<&str>| {
        let mut d = serde_json::json!({
            "driver": "vfio-user-pci",
            "id": id,
            "bus": "probe-rp",
            "addr": addr,
            "socket": {"type": "unix", "path": socket.display().to_string()},
        });
        if let Some(pf) = pf {
            d["sriov-pf"] = pf.into();
        }
        d.to_string()
    };
    let args = [
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-serial",
        "none",
        "-monitor",
        "stdio",
        "-machine",
        "q35",
        "-accel",
        "tcg",
        "-S",
        "-device",
        r#"{"driver":"pcie-root-port","id":"probe-rp","chassis":1}"#,
        "-device",
        &device("probe-vf", "0x10.0", &vf_sock, Some("probe-pf")),
        "-device",
        &device("probe-pf", "0x0.0", &pf_sock, None),
    ];
    let outcome = run_until_quit(qemu, &args);
    for s in &servers {
        s.handle.shutdown();
    }
    // A QEMU that realized both devices spoke on both sockets; a program that only exits 0
    // (not a QEMU at all) spoke on neither.
    let realized = servers.iter().all(|s| s.handle.stats().messages > 0);
    for s in servers {
        let _ = s.thread.join();
    }
    let (ok, said) = outcome?;
    classify(qemu, ok && realized, ok, &said)
}

/// What QEMU's exit status and its output say; `realized`: it also spoke on both devices'
/// sockets.
fn classify(qemu: &Path, realized: bool, ok: bool, said: &str) -> Result<(), QemuCapsError> {
    let said_line = said
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("QEMU ") && !l.starts_with("(qemu)"))
        .filter(|l| !l.contains(": warning: "))
        .collect::<Vec<_>>()
        .join(" | ");
    let lacks = |what| QemuCapsError::Lacks {
        qemu: qemu.to_path_buf(),
        what,
        said: said_line.clone(),
    };
    if said.contains(REFUSED_VF) {
        Err(lacks(
            "it refuses a vfio-user-pci VF named after its PF with sriov-pf",
        ))
    } else if said.contains("'vfio-user-pci' is not a valid device model name") {
        Err(lacks("it has no vfio-user-pci device"))
    } else if realized {
        Ok(())
    } else if ok {
        Err(QemuCapsError::Failed {
            qemu: qemu.to_path_buf(),
            said: "it exited without opening the probe's two vfio-user devices (is it a \
                   qemu-system-x86_64?)"
                .into(),
        })
    } else {
        Err(QemuCapsError::Failed {
            qemu: qemu.to_path_buf(),
            said: if said_line.is_empty() {
                "it exited with an error and said nothing".into()
            } else {
                said_line
            },
        })
    }
}

/// Runs QEMU with `args`, its monitor on stdin told to quit; (exited 0, stdout and stderr).
fn run_until_quit(qemu: &Path, args: &[&str]) -> Result<(bool, String), QemuCapsError> {
    let mut child = Command::new(qemu)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| QemuCapsError::Spawn {
            qemu: qemu.to_path_buf(),
            source,
        })?;
    // The monitor reads this once the machine is built (or never, when a device failed).
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"quit\n");
    }
    let readers = [
        reader(
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ),
        reader(
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ),
    ];
    let status = wait_timeout(&mut child, PROBE_TIMEOUT);
    let said: String = readers
        .into_iter()
        .map(|r| r.join().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    match status {
        Some(status) => Ok((status.success(), said)),
        None => Err(QemuCapsError::Failed {
            qemu: qemu.to_path_buf(),
            said: format!(
                "it did not quit within {}s: {}",
                PROBE_TIMEOUT.as_secs(),
                said.trim()
            ),
        }),
    }
}

fn reader(stream: Option<Box<dyn Read + Send>>) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut s) = stream {
            let _ = s.read_to_string(&mut text);
        }
        text
    })
}

/// The child's exit status, or None (the child killed) after `timeout`.
fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let until = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// A PF (ARI, SR-IOV with VF offset 0x80 and stride 2 as the 82576's) and one of its VFs
/// (ARI), PCI Express, no BARs and no interrupts: what QEMU needs to realize both.
fn probe_config_spaces() -> Result<(ConfigSpace, ConfigSpace), BuildError> {
    let mut pf = ConfigSpace::new(&Header {
        vendor_id: 0x8086,
        device_id: 0x10C9,
        class_code: 0x02_0000,
        multi_function: true,
        ..Header::default()
    });
    pf.add_capability(0x40, &PciExpress::endpoint())?;
    pf.add_ext_capability(0x100, &Ari::new(0))?;
    pf.add_ext_capability(0x110, &Sriov::new(1, 0x10CA).with_routing(0x80, 2))?;
    let mut vf = pf.vf_config_space()?;
    vf.add_capability(0x40, &PciExpress::endpoint())?;
    vf.add_ext_capability(0x100, &Ari::new(0))?;
    Ok((pf, vf))
}

/// A function that is only its config space.
struct ConfigFunction(ConfigSpace);

impl PciFunction for ConfigFunction {
    fn info(&self) -> FunctionInfo {
        FunctionInfo::default()
    }
    fn config_read(&mut self, offset: u64, data: &mut [u8]) {
        self.0.read(offset as usize, data);
    }
    fn config_write(&mut self, offset: u64, data: &[u8]) {
        self.0.write(offset as usize, data);
    }
    fn region_read(&mut self, _: u32, _: u64, _: &mut [u8]) -> Result<(), RegionError> {
        Err(RegionError::NotSupported)
    }
    fn region_write(&mut self, _: u32, _: u64, _: &[u8]) -> Result<(), RegionError> {
        Err(RegionError::NotSupported)
    }
    fn reset(&mut self) {
        self.0.reset();
    }
    fn attach(&mut self, _: FunctionContext) {}
    fn detach(&mut self) {}
}

struct ProbeServer {
    handle: ServerHandle,
    thread: JoinHandle<io::Result<()>>,
}

impl ProbeServer {
    fn start(path: &Path, config: ConfigSpace) -> Result<ProbeServer, QemuCapsError> {
        let server = Server::bind(path, ConfigFunction(config)).map_err(QemuCapsError::Setup)?;
        let handle = server.handle();
        let thread = std::thread::Builder::new()
            .name("qemu-probe".into())
            .spawn(move || server.run())
            .map_err(QemuCapsError::Setup)?;
        Ok(ProbeServer { handle, thread })
    }
}

/// A fresh directory for the probe's sockets, removed when dropped.
struct ProbeDir(PathBuf);

impl ProbeDir {
    fn new() -> io::Result<ProbeDir> {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sriov-emu-qemu-probe-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(ProbeDir(dir))
    }
}

impl Drop for ProbeDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stock_qemu_lacks_sriov_for_vfio_user() {
        let stock = scenarios::qemu::Artifacts::locate()
            .unwrap_or_else(|e| panic!("{e}"))
            .qemu;
        let err = probe_vfio_user_sriov(&stock).expect_err("stock QEMU has no such support");
        let msg = err.to_string();
        eprintln!("{msg}");
        assert!(matches!(err, QemuCapsError::Lacks { .. }), "{msg}");
        assert!(msg.contains(&stock.display().to_string()), "{msg}");
        assert!(msg.contains(" lacks SR-IOV for vfio-user devices"), "{msg}");
        assert!(msg.contains(REFUSED_VF), "{msg}");
    }

    #[test]
    fn patched_qemu_has_sriov_for_vfio_user() {
        let patched = sriov_qemu_path();
        if !patched.exists() {
            eprintln!(
                "skipped: no patched QEMU at {} (build it with `python3 {BUILD_SCRIPT}`, \
                 as scripts/test.sh does, or point {SRIOV_QEMU_ENV} at one)",
                patched.display()
            );
            return;
        }
        let t = Instant::now();
        probe_vfio_user_sriov(&patched).unwrap_or_else(|e| panic!("{e}"));
        eprintln!("{} has it ({:?})", patched.display(), t.elapsed());
    }

    #[test]
    fn a_missing_binary_cannot_be_run() {
        let err = probe_vfio_user_sriov(Path::new("/nonexistent/qemu-system-x86_64"))
            .expect_err("no such file");
        assert!(matches!(err, QemuCapsError::Spawn { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/qemu-system-x86_64"));
    }

    #[test]
    fn an_error_that_says_nothing_of_sriov_is_a_failed_probe() {
        let q = Path::new("/q");
        let e = classify(
            q,
            false,
            false,
            "qemu-system-x86_64: -machine q35: unsupported machine type",
        )
        .unwrap_err();
        assert!(matches!(e, QemuCapsError::Failed { .. }), "{e}");
        assert!(e.to_string().contains("unsupported machine type"), "{e}");
        let quit = "QEMU 10.2.2 monitor - type 'help' for more information\n(qemu) quit\n";
        assert!(classify(q, true, true, quit).is_ok());
    }

    /// A program that exits 0 without opening the devices (not a QEMU) is no QEMU with SR-IOV.
    #[test]
    fn a_program_that_only_exits_0_is_a_failed_probe() {
        let err = probe_vfio_user_sriov(Path::new("/bin/true")).expect_err("not a QEMU");
        assert!(matches!(err, QemuCapsError::Failed { .. }), "{err}");
        assert!(err.to_string().contains("without opening"), "{err}");
    }
}
