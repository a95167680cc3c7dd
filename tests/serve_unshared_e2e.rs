//! End-to-end through `serve`: a QEMU started without shared guest memory (plain `-m`, anonymous
//! RAM, so its DMA_MAPs carry no fd) is refused at attach. The VF's server refuses the writable
//! fd-less maps and then DEVICE_GET_INFO, so QEMU fails to realize `vfio-user-pci` and exits
//! before any guest code runs, instead of running a guest whose VF can never move a frame.
//! No kernel is booted: if QEMU did not fail, it would sit in the firmware until the timeout.
//! Needs the artifacts of `scripts/fetch-e2e.py` (fails, rather than skips, without them).

mod serve_support;

use std::fs::File;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serve_support::serve_dir;
use sriov_emu::serve::{qemu_device_json, vf_socket, ServeConfig, Serving};
use sriov_emu_tests::Artifacts;

/// QEMU fails in well under a second; this only bounds a QEMU that did not fail.
const QEMU_TIMEOUT: Duration = Duration::from_secs(30);

/// Kills QEMU if it still runs when the test ends, panicking or not.
struct Reaped(Child);

impl Reaped {
    /// Waits for QEMU to exit; `None` if it was still running at `timeout` (then killed).
    fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + timeout;
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() > until {
                let _ = self.0.kill();
                let _ = self.0.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn qemu_without_shared_memory_fails_to_realize_the_vf_with_one_clear_error() {
    let artifacts = Artifacts::locate().unwrap_or_else(|e| panic!("{e}"));
    let dir = serve_dir("unshared");
    let serving = Serving::start(&dir, &ServeConfig::default(), Some(1)).expect("serve");
    let socket = vf_socket(&dir, 0);
    let stderr_path = dir.join("qemu.stderr");
    let start = Instant::now();
    let child = Command::new(&artifacts.qemu)
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-serial",
            "none",
            "-monitor",
            "none",
            "-no-reboot",
            "-accel",
            "tcg",
            "-machine",
            "q35",
            "-m",
            "512M",
            "-device",
            "pcie-root-port,id=rp0,chassis=1",
            "-device",
        ])
        .arg(qemu_device_json(&socket, "rp0", "vf0"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .expect("spawn QEMU");
    let mut qemu = Reaped(child);
    let status = qemu.wait(QEMU_TIMEOUT);
    let elapsed = start.elapsed();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let status = status.unwrap_or_else(|| {
        panic!("QEMU still ran after {QEMU_TIMEOUT:?} (the VF realized?); stderr:\n{stderr}")
    });
    eprintln!("QEMU {status} after {elapsed:.2?}:\n{stderr}");

    // QEMU: realize failed, so it exited with an error at start-up, naming the device and the
    // failed request. (QEMU 11.1.3 prints the errno negated, "Unknown error -95": its
    // `vfio_user_get_device_info` passes `-error_reply` to `error_setg_errno`.)
    assert_eq!(status.code(), Some(1), "{stderr}");
    let realize_error = format!(
        "vfio vfio-user:{}: VFIO_USER_DEVICE_GET_INFO failed",
        socket.display()
    );
    assert!(stderr.contains(&realize_error), "{stderr}");
    // The refused maps themselves are printed as warnings before it.
    assert!(
        stderr.contains("error reply on async request command 2 error Operation not supported"),
        "{stderr}"
    );
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");

    // The server: the writable RAM map(s) refused (one with `-nodefaults`: no VGA window splits
    // low RAM), one connection, nothing else wrong.
    let stats = serving.server_stats();
    assert_eq!(stats.len(), 1);
    let s = stats[0];
    assert!(s.unshared_maps_refused >= 1, "{s:?}");
    assert_eq!(s.connections, 1, "{s:?}");
    assert_eq!((s.protocol_closes, s.panics), (0, 0), "{s:?}");

    serving.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
