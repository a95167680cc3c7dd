//! Booting a test guest: QEMU 11.1 (TCG unless `SRIOV_EMU_KVM=1`), the
//! uncompressed Debian kernel through its PVH entry, the base initramfs plus a
//! per-boot archive holding the test script, guest memory shared
//! (`memory-backend-memfd,share=on`) so vfio-user servers can do DMA.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::artifacts::{io_err, Artifacts, HarnessError};
use super::cpio::NewcArchive;
use super::hugepages;
use super::results::{parse_console, GuestResult, ParsedConsole};

/// Set to `1` to boot with KVM instead of TCG. The nested-virtualisation
/// `/dev/kvm` of the CI machines never gets a stock kernel to print a line, so
/// TCG is the default.
pub const KVM_ENV: &str = "SRIOV_EMU_KVM";

/// What to boot.
#[derive(Debug, Clone)]
pub struct GuestConfig {
    /// Names the log file (`target/e2e/logs/<name>.log`) and the QEMU process.
    pub name: String,
    /// Appended to the QEMU command line (devices, netdevs, ...).
    pub extra_qemu_args: Vec<String>,
    /// Shell script run by `/init` (busybox sh, sourced after the helpers of
    /// `tests/guest/helpers.sh`).
    pub script: String,
    /// Hard limit from spawn to exit; QEMU is killed when it passes.
    pub timeout: Duration,
    pub memory_mb: u32,
    pub cpus: u32,
    /// Modules `/init` loads before the script.
    pub modules: Vec<String>,
    /// Extra kernel command line, after `console=ttyS0 panic=-1`.
    pub kernel_args: String,
    /// Extra files for the per-boot archive: (absolute guest path, contents).
    pub files: Vec<(String, Vec<u8>)>,
    /// Archives (newc) appended to the base initramfs before the per-boot one, e.g.
    /// [`super::Artifacts::initramfs_dpdk`].
    pub extra_initramfs: Vec<PathBuf>,
    /// Another kernel image than the fetched one (a user's build, [`super::GuestBuild`]).
    pub kernel: Option<PathBuf>,
    /// Another QEMU than the fetched one (e.g. the patched build of
    /// `scripts/build-qemu-sriov.py`), run with the same arguments.
    pub qemu: Option<PathBuf>,
    /// Back the guest's RAM with huge pages (`memory-backend-memfd,hugetlb=on`); `spawn`
    /// grows the kernel's pool by what the guest needs, and it shrinks back when the guest is
    /// gone ([`super::hugepages`]).
    pub hugetlb: bool,
}

impl Default for GuestConfig {
    fn default() -> Self {
        GuestConfig {
            name: "guest".to_string(),
            extra_qemu_args: Vec::new(),
            script: String::new(),
            timeout: Duration::from_secs(120),
            memory_mb: 512,
            cpus: 1,
            modules: Vec::new(),
            kernel_args: String::new(),
            files: Vec::new(),
            extra_initramfs: Vec::new(),
            kernel: None,
            qemu: None,
            hugetlb: false,
        }
    }
}

impl GuestConfig {
    /// A guest with default settings running `script`.
    pub fn new(name: impl Into<String>, script: impl Into<String>) -> Self {
        GuestConfig {
            name: name.into(),
            script: script.into(),
            ..Default::default()
        }
    }

    pub fn qemu_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.extra_qemu_args
            .extend(args.into_iter().map(Into::into));
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Appends the archive at `path` to the base initramfs (its files overlay the base's).
    pub fn extra_initramfs(mut self, path: impl Into<PathBuf>) -> Self {
        self.extra_initramfs.push(path.into());
        self
    }

    /// Boots what `build` packed: its kernel, its archive after the base initramfs, its kernel
    /// arguments after the ones set so far.
    pub fn build(mut self, build: &super::PreparedBuild) -> Self {
        self.kernel.clone_from(&build.kernel);
        self.extra_initramfs.push(build.archive.clone());
        if !build.kernel_args.is_empty() {
            self.kernel_args = format!("{} {}", self.kernel_args, build.kernel_args)
                .trim()
                .to_string();
        }
        self
    }

    /// Runs the QEMU at `path` instead of the fetched one.
    pub fn qemu(mut self, path: impl Into<PathBuf>) -> Self {
        self.qemu = Some(path.into());
        self
    }

    pub fn memory_mb(mut self, mb: u32) -> Self {
        self.memory_mb = mb;
        self
    }

    pub fn modules<I, S>(mut self, modules: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.modules.extend(modules.into_iter().map(Into::into));
        self
    }

    pub fn file(mut self, guest_path: impl Into<String>, contents: impl Into<Vec<u8>>) -> Self {
        self.files.push((guest_path.into(), contents.into()));
        self
    }
}

/// Whether `SRIOV_EMU_KVM` asks for KVM.
pub fn kvm_requested() -> bool {
    matches!(
        std::env::var(KVM_ENV).as_deref(),
        Ok("1") | Ok("yes") | Ok("true") | Ok("on")
    )
}

/// A guest ready to boot.
#[derive(Debug, Clone)]
pub struct Guest {
    config: GuestConfig,
}

const GUEST_INIT: &str = include_str!("../../../tests/guest/init");
const GUEST_HELPERS: &str = include_str!("../../../tests/guest/helpers.sh");

static BOOT_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Guest {
    pub fn new(config: GuestConfig) -> Self {
        Guest { config }
    }

    pub fn config(&self) -> &GuestConfig {
        &self.config
    }

    /// The per-boot archive appended to the base initramfs. It also carries
    /// the current `tests/guest/init` and helpers, which replace the base
    /// archive's copies: editing them needs no rebuild of the initramfs.
    pub fn script_archive(&self) -> Vec<u8> {
        let mut a = NewcArchive::new();
        a.file("init", 0o755, GUEST_INIT.as_bytes());
        a.file("lib/sriov-emu/helpers.sh", 0o755, GUEST_HELPERS.as_bytes());
        a.file("sriov-emu/test.sh", 0o755, self.config.script.as_bytes());
        if !self.config.modules.is_empty() {
            let list = self.config.modules.join("\n") + "\n";
            a.file("sriov-emu/modules", 0o644, list.as_bytes());
        }
        for (path, data) in &self.config.files {
            a.file(path, 0o755, data);
        }
        a.finish()
    }

    /// QEMU's arguments for this guest, booting `initrd`.
    pub fn qemu_args(&self, artifacts: &Artifacts, initrd: &Path) -> Vec<String> {
        let c = &self.config;
        let accel = if kvm_requested() { "kvm" } else { "tcg" };
        let mut args: Vec<String> = vec![
            "-name".into(),
            c.name.clone(),
            "-nodefaults".into(),
            "-no-user-config".into(),
            "-display".into(),
            "none".into(),
            "-serial".into(),
            "stdio".into(),
            "-no-reboot".into(),
            "-accel".into(),
            accel.into(),
            "-machine".into(),
            "q35,memory-backend=mem".into(),
            "-m".into(),
            format!("{}M", c.memory_mb),
            "-object".into(),
            format!(
                "memory-backend-memfd,id=mem,size={}M,share=on{}",
                c.memory_mb,
                if c.hugetlb { ",hugetlb=on" } else { "" }
            ),
            "-smp".into(),
            c.cpus.to_string(),
            "-kernel".into(),
            c.kernel
                .as_deref()
                .unwrap_or(&artifacts.kernel)
                .display()
                .to_string(),
            "-initrd".into(),
            initrd.display().to_string(),
            "-append".into(),
            format!("console=ttyS0 panic=-1 {}", c.kernel_args)
                .trim_end()
                .to_string(),
        ];
        if accel == "kvm" {
            args.extend(["-cpu".into(), "host".into()]);
        }
        args.extend(c.extra_qemu_args.iter().cloned());
        args
    }

    /// Boots the guest and waits for it to power off (or for the timeout).
    pub fn run(self) -> Result<GuestOutput, HarnessError> {
        Ok(self.spawn()?.wait())
    }

    /// Boots the guest and returns at once.
    pub fn spawn(self) -> Result<RunningGuest, HarnessError> {
        let artifacts = Artifacts::locate()?;
        let n = BOOT_COUNTER.fetch_add(1, Ordering::Relaxed);
        let safe_name: String = self
            .config
            .name
            .chars()
            .map(|ch| {
                if ch.is_ascii_alphanumeric() || "-_.".contains(ch) {
                    ch
                } else {
                    '_'
                }
            })
            .collect();
        remove_stale_initrds(&artifacts.run);
        let initrd = artifacts
            .run
            .join(format!("{safe_name}-{}-{n}.initrd", std::process::id()));
        let mut image = std::fs::read(&artifacts.initramfs)
            .map_err(io_err(format!("reading {}", artifacts.initramfs.display())))?;
        for extra in &self.config.extra_initramfs {
            let a = std::fs::read(extra).map_err(io_err(format!("reading {}", extra.display())))?;
            image.extend_from_slice(&a);
        }
        image.extend_from_slice(&self.script_archive());
        std::fs::write(&initrd, &image).map_err(io_err(format!("writing {}", initrd.display())))?;

        let log_path = artifacts.logs.join(format!("{safe_name}.log"));
        let mut log =
            File::create(&log_path).map_err(io_err(format!("creating {}", log_path.display())))?;
        let huge_pages = if self.config.hugetlb {
            let page = hugepages::page_bytes()?;
            let pages = (u64::from(self.config.memory_mb) << 20).div_ceil(page);
            Some(hugepages::reserve(pages)?)
        } else {
            None
        };
        let args = self.qemu_args(&artifacts, &initrd);
        let qemu = self.config.qemu.as_ref().unwrap_or(&artifacts.qemu);
        let _ = writeln!(
            log,
            "# {} {}\n",
            qemu.display(),
            args.iter()
                .map(|a| shell_quote(a))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let log = Arc::new(Mutex::new(log));

        let mut child = Command::new(qemu)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io_err(format!("starting {}", qemu.display())))?;
        let started = Instant::now();

        let console = Arc::new(Shared::default());
        let stderr = Arc::new(Shared::default());
        let out_reader = spawn_reader(
            child.stdout.take().expect("piped stdout"),
            console.clone(),
            Some(log.clone()),
        );
        let err_reader = spawn_reader(
            child.stderr.take().expect("piped stderr"),
            stderr.clone(),
            None,
        );
        Ok(RunningGuest {
            name: self.config.name.clone(),
            child,
            started,
            deadline: started + self.config.timeout,
            console,
            stderr,
            readers: vec![out_reader, err_reader],
            log,
            log_path,
            initrd,
            killed: false,
            _huge_pages: huge_pages,
        })
    }
}

/// Removes per-boot initramfs copies left behind by test processes that died
/// (their names end in `-<pid>-<n>.initrd`).
fn remove_stale_initrds(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".initrd") else {
            continue;
        };
        let mut parts = stem.rsplitn(3, '-');
        let (_n, pid) = (parts.next(), parts.next());
        if let Some(pid) = pid.and_then(|p| p.parse::<u32>().ok()) {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=,:+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Text collected from one of QEMU's output pipes.
#[derive(Debug, Default)]
struct Shared {
    text: Mutex<String>,
    changed: Condvar,
}

fn spawn_reader(
    mut pipe: impl Read + Send + 'static,
    shared: Arc<Shared>,
    log: Option<Arc<Mutex<File>>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        // Bytes of a UTF-8 sequence cut by a read boundary.
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let n = match pipe.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if let Some(log) = &log {
                let _ = log.lock().unwrap().write_all(&buf[..n]);
            }
            pending.extend_from_slice(&buf[..n]);
            let valid = match std::str::from_utf8(&pending) {
                Ok(_) => pending.len(),
                Err(e) if e.error_len().is_none() => e.valid_up_to(),
                Err(_) => pending.len(),
            };
            let chunk: Vec<u8> = pending.drain(..valid).collect();
            let text = String::from_utf8_lossy(&chunk).replace('\r', "");
            shared.text.lock().unwrap().push_str(&text);
            shared.changed.notify_all();
        }
        if !pending.is_empty() {
            let text = String::from_utf8_lossy(&pending).replace('\r', "");
            shared.text.lock().unwrap().push_str(&text);
        }
        shared.changed.notify_all();
    })
}

/// A booted guest. Dropping it kills QEMU if it still runs.
#[derive(Debug)]
pub struct RunningGuest {
    name: String,
    child: Child,
    started: Instant,
    deadline: Instant,
    console: Arc<Shared>,
    stderr: Arc<Shared>,
    readers: Vec<JoinHandle<()>>,
    log: Arc<Mutex<File>>,
    log_path: PathBuf,
    initrd: PathBuf,
    killed: bool,
    /// The huge pages grown for a [`GuestConfig::hugetlb`] guest, given back when it is gone.
    _huge_pages: Option<hugepages::Reservation>,
}

impl RunningGuest {
    /// QEMU's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Kills QEMU (SIGKILL). The output returned by a later `wait` says so.
    pub fn kill(&mut self) -> std::io::Result<()> {
        self.killed = true;
        match self.child.kill() {
            // Already exited.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => Ok(()),
            r => r,
        }
    }

    /// Whether QEMU is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The console output so far.
    pub fn console(&self) -> String {
        self.console.text.lock().unwrap().clone()
    }

    /// What QEMU wrote to its standard error so far.
    pub fn stderr(&self) -> String {
        self.stderr.text.lock().unwrap().clone()
    }

    /// Results printed so far.
    pub fn results_so_far(&self) -> ParsedConsole {
        parse_console(&self.console())
    }

    /// Waits until the console contains `needle` (true), or `timeout` passes
    /// or QEMU's output ends (false). Useful to synchronise with a guest,
    /// e.g. `echo READY` in its script.
    pub fn wait_for_console(&self, needle: &str, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        let mut text = self.console.text.lock().unwrap();
        loop {
            if text.contains(needle) {
                return true;
            }
            let now = Instant::now();
            if now >= until || self.readers[0].is_finished() {
                return text.contains(needle);
            }
            let wait = (until - now).min(Duration::from_millis(100));
            text = self.console.changed.wait_timeout(text, wait).unwrap().0;
        }
    }

    /// Waits for QEMU to exit, killing it at the configured timeout.
    pub fn wait(self) -> GuestOutput {
        let deadline = self.deadline;
        self.wait_until(deadline)
    }

    /// Waits at most `timeout` more (and never past the configured timeout).
    pub fn wait_timeout(self, timeout: Duration) -> GuestOutput {
        let deadline = (Instant::now() + timeout).min(self.deadline);
        self.wait_until(deadline)
    }

    fn wait_until(mut self, deadline: Instant) -> GuestOutput {
        let mut timed_out = false;
        let exit_status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) => {}
                Err(_) => break None,
            }
            if Instant::now() >= deadline {
                timed_out = true;
                let _ = self.child.kill();
                break self.child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let elapsed = self.started.elapsed();
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let console = self.console.text.lock().unwrap().clone();
        let qemu_stderr = self.stderr.text.lock().unwrap().clone();
        {
            let mut log = self.log.lock().unwrap();
            let _ = writeln!(
                log,
                "\n# qemu exit: {exit_status:?}, timed out: {timed_out}, killed: {}, {:.2}s",
                self.killed,
                elapsed.as_secs_f64()
            );
            if !qemu_stderr.is_empty() {
                let _ = writeln!(log, "# qemu stderr:\n{qemu_stderr}");
            }
        }
        let parsed = parse_console(&console);
        GuestOutput {
            name: self.name.clone(),
            console,
            qemu_stderr,
            booted_kernel: parsed.booted_kernel,
            results: parsed.results,
            script_rc: parsed.script_rc,
            timed_out,
            killed: self.killed,
            exit_status,
            elapsed,
            log_path: self.log_path.clone(),
        }
    }
}

impl Drop for RunningGuest {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.initrd);
    }
}

/// What a guest did.
#[derive(Debug, Clone)]
pub struct GuestOutput {
    pub name: String,
    /// The serial console (carriage returns removed).
    pub console: String,
    pub qemu_stderr: String,
    /// `uname -r`, if `/init` started.
    pub booted_kernel: Option<String>,
    pub results: Vec<GuestResult>,
    /// Exit status of the test script, if the guest finished it.
    pub script_rc: Option<i32>,
    /// QEMU was killed because the timeout passed.
    pub timed_out: bool,
    /// QEMU was killed through [`RunningGuest::kill`].
    pub killed: bool,
    pub exit_status: Option<ExitStatus>,
    pub elapsed: Duration,
    /// Full console log on disk.
    pub log_path: PathBuf,
}

impl GuestOutput {
    /// Whether the guest ran its script to the end.
    pub fn completed(&self) -> bool {
        self.script_rc.is_some()
    }

    /// The first result with this name.
    pub fn result(&self, name: &str) -> Option<&GuestResult> {
        self.results.iter().find(|r| r.name == name)
    }

    pub fn failures(&self) -> Vec<&GuestResult> {
        self.results.iter().filter(|r| !r.passed()).collect()
    }

    /// The last `lines` lines of the console.
    pub fn console_tail(&self, lines: usize) -> String {
        let all: Vec<&str> = self.console.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// A summary for assertion messages: state, results, console tail.
    pub fn diagnostics(&self) -> String {
        let mut s = format!(
            "guest {:?}: kernel {:?}, script rc {:?}, timed out {}, killed {}, qemu {:?}, {:.1}s\nlog: {}\n",
            self.name,
            self.booted_kernel,
            self.script_rc,
            self.timed_out,
            self.killed,
            self.exit_status,
            self.elapsed.as_secs_f64(),
            self.log_path.display()
        );
        for r in &self.results {
            s += &format!("  {r}\n");
        }
        if !self.qemu_stderr.is_empty() {
            s += &format!("qemu stderr:\n{}\n", self.qemu_stderr.trim_end());
        }
        s += &format!("console tail:\n{}\n", self.console_tail(40));
        s
    }

    /// The named result, which must have passed; panics with diagnostics.
    pub fn expect_pass(&self, name: &str) -> &GuestResult {
        match self.result(name) {
            Some(r) if r.passed() => r,
            Some(r) => panic!(
                "{}: guest check {name} failed: {}\n{}",
                self.name,
                r.detail,
                self.diagnostics()
            ),
            None => panic!(
                "{}: guest printed no result {name}\n{}",
                self.name,
                self.diagnostics()
            ),
        }
    }

    /// Panics unless the guest finished its script.
    pub fn assert_completed(&self) {
        assert!(
            self.completed(),
            "guest did not finish its script\n{}",
            self.diagnostics()
        );
    }

    /// Panics unless the guest finished its script with status 0, printed at
    /// least one result, and every result passed.
    pub fn assert_all_passed(&self) {
        self.assert_completed();
        assert!(
            !self.results.is_empty(),
            "guest printed no results\n{}",
            self.diagnostics()
        );
        assert!(
            self.failures().is_empty() && self.script_rc == Some(0),
            "guest checks failed\n{}",
            self.diagnostics()
        );
    }
}
