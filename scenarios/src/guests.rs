//! The guest mode: scenario endpoints as QEMU guests running the unmodified igbvf on a VF
//! served over vfio-user (by `sriov-emu`'s `serve` datapath; the runner gets each VF's socket
//! from [`GuestMode::sockets`]). Each guest boots the artifacts of `scripts/fetch-e2e.py`
//! ([`crate::qemu`]), brings its igbvf netdev up with the endpoint's IP (IPv6 off, so that no
//! background traffic lands in a step), then runs a command loop on its second serial port: the
//! host sends one command at a time, the guest runs it under `timeout` and answers with its exit
//! status and output.

use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::qemu::{Guest, GuestConfig, HarnessError, PreparedBuild, RunningGuest};

/// Booting a guest to the point where its igbvf link is up, at most (TCG on a busy host).
pub const DEFAULT_BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// One command in a guest, at most, unless the step says otherwise.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long QEMU may take to be gone after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// Console lines an error quotes.
const TAIL_LINES: usize = 15;
/// Output a command may hand back (its tail).
const MAX_OUTPUT: usize = 16 * 1024;

/// How a run gets its guests.
pub struct GuestMode {
    /// The vfio-user socket of a VF of the card (`pfK.vfN`), `None` when it has none.
    pub sockets: Box<dyn Fn(crate::PortRef) -> Option<PathBuf>>,
    /// Every driver-attached VF endpoint becomes a guest (`scenario run --guests`), not only
    /// those with `attach = "guest"`.
    pub driver_endpoints: bool,
    /// Where the guests' host channels (UNIX sockets) are made.
    pub run_dir: PathBuf,
    pub boot_timeout: Duration,
    pub command_timeout: Duration,
    /// Where the card's own threads log, if they were started under its dispatcher: each
    /// step's report lists what they logged during it (the PF agent's lines).
    pub log_tap: Option<crate::logs::LogTap>,
    /// The helper packed into every guest for `send`, `traffic` and `expect.guest_captured`
    /// (`sriov-emu-guest-send`, [`crate::guest_send::locate`]), or why there is none: then
    /// those steps fail saying so.
    pub helper: Result<PathBuf, String>,
    /// The user's kernel, modules and files the guests boot with (checked and packed by
    /// [`crate::qemu::GuestBuild::prepare`]); `None`: the stock guest.
    pub build: Option<Arc<PreparedBuild>>,
    /// Where boots and steps are reported as they happen (a terminal), if anywhere.
    pub progress: Option<Progress>,
}

/// A line of progress (`vf-ping: guests vf0, vf1 up in 9.1 s`), for a terminal.
pub type Progress = Arc<dyn Fn(&str) + Send + Sync>;

impl GuestMode {
    /// Reports `line` as progress, if anyone listens.
    pub fn progress(&self, line: &str) {
        if let Some(p) = &self.progress {
            p(line);
        }
    }
}

/// A guest that could not be booted or did not answer.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    #[error("guest {guest}: {source}")]
    Harness { guest: String, source: HarnessError },
    #[error("guest {guest}: {what}: {source}")]
    Io {
        guest: String,
        what: String,
        source: std::io::Error,
    },
    #[error("guest {guest}: not up after {secs:.1} s ({why}); console tail:\n{tail}")]
    Boot {
        guest: String,
        secs: f64,
        why: String,
        tail: String,
    },
    #[error("guest {guest}: `{command}` gave no answer within {secs} s; console tail:\n{tail}")]
    Hung {
        guest: String,
        command: String,
        secs: u64,
        tail: String,
    },
    #[error("guest {guest}: QEMU is gone; console tail:\n{tail}")]
    Gone { guest: String, tail: String },
}

/// A command's result in a guest.
#[derive(Clone, Debug)]
pub struct Answer {
    pub exit: i32,
    pub output: String,
}

/// The guest's side: the VF driver (`$DRIVER`: igbvf, ixgbevf) up with `$IP/$PREFIX` (from
/// `/lib/sriov-emu/up.sh`, also what a `reload` runs), then the command loop on `/dev/ttyS1`.
const GUEST_UP: &str = r#"
ip() { /usr/sbin/ip "$@"; }
modprobe "$DRIVER" 2>&1 || true
if ! wait_for 30 test -e /sys/class/net/eth0; then
    echo "no eth0 after loading $DRIVER: $(ls /sys/class/net | tr '\n' ' ')"
    exit 1
fi
ip link set eth0 up || exit 1
if [ -n "$IP" ]; then ip addr add "$IP/$PREFIX" dev eth0 || exit 1; fi
if ! wait_for 30 grep -qx 1 /sys/class/net/eth0/carrier; then
    echo "eth0 has no carrier: $(cat /sys/class/net/eth0/carrier 2>&1)"
    exit 1
fi
"#;

const GUEST_LOOP: &str = r#"
exec 3</dev/ttyS1
exec 4>/dev/ttyS1
stty -F /dev/ttyS1 -echo -onlcr 2>/dev/null
if ! out=$(sh /lib/sriov-emu/up.sh 2>&1); then
    echo "@@FAIL $(printf '%s' "$out" | tr '\n' ' ' | cut -c1-300)@@" >&4
    echo "guest bring-up failed: $out"
    exit 1
fi
dmesg -c > /dev/null
# QEMU drops what the guest writes before the host has connected to its channel: wait for the
# host's first line (it repeats one until it sees READY).
read -r line <&3
echo "@@READY $(cat /sys/class/net/eth0/address) $(uname -r)@@" >&4
while read -r line <&3; do
    line=$(printf '%s' "$line" | tr -d '\r')
    case "$line" in
    quit) break ;;
    C\ *)
        set -- $line
        { echo 'ip() { /usr/sbin/ip "$@"; }'; echo 'tc() { /usr/sbin/tc "$@"; }'; printf '%s' "$4" | base64 -d; } > /tmp/cmd
        timeout -s KILL "$3" sh /tmp/cmd < /dev/null > /tmp/out 2>&1
        rc=$?
        echo "@@R $2 $rc $(tail -c 16384 /tmp/out | base64 | tr -d '\n')@@" >&4
        ;;
    esac
done
"#;

/// One booted guest and its command channel.
pub struct GuestVm {
    name: String,
    guest: RunningGuest,
    chan: UnixStream,
    lines: Receiver<String>,
    next_id: u64,
    /// The MAC igbvf came up with.
    pub mac: Option<eswitch::MacAddr>,
    /// The release the guest runs (`uname -r`).
    pub kernel: Option<String>,
}

/// A guest booting: QEMU started, not yet up.
pub struct Booting {
    name: String,
    guest: RunningGuest,
    chan_path: PathBuf,
}

impl Booting {
    /// Starts QEMU for endpoint `name` on the VF served at `socket`, with `ip` (a /24).
    pub fn spawn(
        scenario: &str,
        name: &str,
        socket: &Path,
        ip: Option<Ipv4Addr>,
        card: model::Card,
        mode: &GuestMode,
    ) -> Result<Booting, GuestError> {
        let run_dir = mode.run_dir.as_path();
        let helper = mode.helper.as_ref().ok().map(PathBuf::as_path);
        let io = |what: String| {
            let guest = name.to_string();
            move |source| GuestError::Io {
                guest,
                what,
                source,
            }
        };
        std::fs::create_dir_all(run_dir).map_err(io(format!("creating {}", run_dir.display())))?;
        let chan_path = run_dir.join(format!("{name}.tty"));
        let _ = std::fs::remove_file(&chan_path);
        let ip = ip.map_or(String::new(), |ip| ip.to_string());
        let script = format!("IP={ip}\nPREFIX=24\nexport IP PREFIX\n{GUEST_LOOP}");
        let (_, driver) = card.drivers();
        let up =
            format!(". /lib/sriov-emu/helpers.sh\nIP={ip}\nPREFIX=24\nDRIVER={driver}\n{GUEST_UP}");
        let device = serde_json::json!({
            "driver": "vfio-user-pci",
            "id": "vf",
            "bus": "rp1",
            "socket": {"type": "unix", "path": socket.display().to_string()},
        })
        .to_string();
        let cfg = GuestConfig::new(format!("scenario-{scenario}-{name}"), script)
            .qemu_args([
                "-device".to_string(),
                "pcie-root-port,id=rp1,chassis=1".to_string(),
                "-device".to_string(),
                device,
                "-chardev".to_string(),
                format!(
                    "socket,id=host,path={},server=on,wait=off",
                    chan_path.display()
                ),
                "-device".to_string(),
                "isa-serial,chardev=host".to_string(),
            ])
            .file("lib/sriov-emu/up.sh", up.into_bytes());
        let cfg = match helper {
            Some(path) => with_helper(cfg, path, run_dir).map_err(io(format!(
                "packing the helper {} into the initramfs",
                path.display()
            )))?,
            None => cfg,
        };
        let cfg = GuestConfig {
            kernel_args: "ipv6.disable=1".into(),
            timeout: Duration::from_secs(24 * 3600),
            ..cfg
        };
        let cfg = match &mode.build {
            Some(build) => cfg.build(build),
            None => cfg,
        };
        let guest = Guest::new(cfg)
            .spawn()
            .map_err(|source| GuestError::Harness {
                guest: name.to_string(),
                source,
            })?;
        Ok(Booting {
            name: name.to_string(),
            guest,
            chan_path,
        })
    }

    /// Waits until the guest's igbvf is up (`@@READY MAC@@`), it failed, QEMU exited, or
    /// `until` passed.
    pub fn wait(mut self, until: Instant) -> Result<GuestVm, GuestError> {
        let started = Instant::now();
        let fail = |g: &mut Booting, why: String| GuestError::Boot {
            guest: g.name.clone(),
            secs: started.elapsed().as_secs_f64(),
            why,
            tail: tail(&g.guest.console()),
        };
        let chan = loop {
            match UnixStream::connect(&self.chan_path) {
                Ok(s) => break s,
                Err(e) => {
                    if let Some(why) = self.exited(Duration::ZERO) {
                        return Err(fail(&mut self, why));
                    }
                    if Instant::now() > until {
                        let why = format!("no host channel {}: {e}", self.chan_path.display());
                        return Err(fail(&mut self, why));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        };
        let reader = chan.try_clone().map_err(|source| GuestError::Io {
            guest: self.name.clone(),
            what: "host channel".into(),
            source,
        })?;
        // Repeated until the guest is ready (the command loop ignores the extra ones): the
        // guest says READY only once it has one, so the line cannot be lost before we listen.
        let mut hello = chan.try_clone().map_err(|source| GuestError::Io {
            guest: self.name.clone(),
            what: "host channel".into(),
            source,
        })?;
        let _ = hello.write_all(b"hello\n");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                if tx.send(line.replace('\r', "")).is_err() {
                    break;
                }
            }
        });
        loop {
            match lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    if let Some(ready) = marker(&line, "@@READY ") {
                        let mut words = ready.split_whitespace();
                        let (mac, kernel) = (words.next().unwrap_or(""), words.next());
                        return Ok(GuestVm {
                            name: self.name,
                            guest: self.guest,
                            chan,
                            lines,
                            next_id: 0,
                            mac: mac.parse().ok(),
                            kernel: kernel.map(str::to_string),
                        });
                    }
                    if let Some(why) = marker(&line, "@@FAIL ") {
                        let why = format!("VF driver bring-up failed: {}", why.trim());
                        return Err(fail(&mut self, why));
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    // QEMU closes the channel as it exits: give it a moment to be gone.
                    let why = self
                        .exited(Duration::from_secs(2))
                        .unwrap_or_else(|| "host channel closed".to_string());
                    return Err(fail(&mut self, why));
                }
                Err(RecvTimeoutError::Timeout) => {
                    let _ = hello.write_all(b"hello\n");
                    if let Some(why) = self.exited(Duration::ZERO) {
                        return Err(fail(&mut self, why));
                    }
                    if Instant::now() > until {
                        return Err(fail(&mut self, "timed out".into()));
                    }
                }
            }
        }
    }
}

impl Booting {
    /// `QEMU exited: <its standard error>` once QEMU has exited, waiting `grace` for it.
    fn exited(&mut self, grace: Duration) -> Option<String> {
        let until = Instant::now() + grace;
        while self.guest.is_running() {
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The reader thread may still be taking in the last of QEMU's words.
        std::thread::sleep(Duration::from_millis(50));
        Some(format!("QEMU exited: {}", self.guest.stderr().trim()))
    }
}

/// Where the guest's loader looks for the GCC runtime Rust programs link (the base initramfs has
/// none).
const GUEST_LIBGCC: &str = "lib/x86_64-linux-gnu/libgcc_s.so.1";

/// `cfg` with the helper at [`crate::guest_send::GUEST_PATH`] and the GCC runtime it needs: the
/// guest tree's own (Debian's, as in the guest), else this host's (the same bookworm).
/// A debug build's debug information (tens of MB) is left out when `strip` is at hand.
pub fn with_helper(
    cfg: GuestConfig,
    helper: &Path,
    run_dir: &Path,
) -> std::io::Result<GuestConfig> {
    let stripped = run_dir.join(format!("{}.stripped", crate::guest_send::HELPER));
    let strip = std::process::Command::new("strip")
        .arg("-o")
        .arg(&stripped)
        .arg(helper)
        .stderr(std::process::Stdio::null())
        .status();
    let binary = match strip {
        Ok(st) if st.success() => std::fs::read(&stripped)?,
        _ => std::fs::read(helper)?,
    };
    let _ = std::fs::remove_file(&stripped);
    let tree = crate::qemu::Artifacts::locate()
        .map(|a| a.dir.join("guest-tree").join(GUEST_LIBGCC))
        .ok();
    let host = Path::new("/").join(GUEST_LIBGCC);
    let libgcc = match tree.filter(|p| p.is_file()) {
        Some(p) => std::fs::read(p)?,
        None => std::fs::read(host)?,
    };
    Ok(cfg
        .file(
            crate::guest_send::GUEST_PATH.trim_start_matches('/'),
            binary,
        )
        .file(GUEST_LIBGCC, libgcc))
}

/// The text between `prefix` and the closing `@@` of a channel line.
fn marker<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    let at = line.find(prefix)? + prefix.len();
    let rest = &line[at..];
    Some(rest.strip_suffix("@@").unwrap_or(rest))
}

fn tail(console: &str) -> String {
    let lines: Vec<&str> = console.lines().collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}

/// A command sent to a guest, its answer not yet read.
pub struct Pending {
    id: u64,
    command: String,
    timeout: Duration,
    deadline: Instant,
}

impl GuestVm {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Kills QEMU at once (SIGKILL) and waits for it to be gone: the guest's VF client goes
    /// away without a word, as when a VM crashes or is killed.
    pub fn kill(mut self) -> Result<(), GuestError> {
        self.guest.kill().map_err(|source| GuestError::Io {
            guest: self.name.clone(),
            what: "killing QEMU".into(),
            source,
        })?;
        let until = Instant::now() + KILL_WAIT;
        while self.guest.is_running() {
            if Instant::now() > until {
                return Err(GuestError::Gone {
                    guest: self.name.clone(),
                    tail: format!("QEMU still running {} s after SIGKILL", KILL_WAIT.as_secs()),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Where the guest's console log is.
    pub fn log_path(&self) -> &Path {
        self.guest.log_path()
    }

    /// The last lines of the console.
    pub fn console_tail(&self) -> String {
        tail(&self.guest.console())
    }

    /// Sends `command` (a shell command line) to run under `timeout`.
    pub fn start(&mut self, command: &str, timeout: Duration) -> Result<Pending, GuestError> {
        self.next_id += 1;
        let secs = timeout.as_secs().max(1);
        let line = format!("C {} {secs} {}\n", self.next_id, base64(command.as_bytes()));
        self.chan
            .write_all(line.as_bytes())
            .map_err(|source| GuestError::Io {
                guest: self.name.clone(),
                what: "host channel".into(),
                source,
            })?;
        Ok(Pending {
            id: self.next_id,
            command: command.to_string(),
            timeout,
            // The guest kills the command at `timeout`; a guest that does not answer a few
            // seconds later is hung.
            deadline: Instant::now() + timeout + Duration::from_secs(5),
        })
    }

    /// The answer to `p`, if it came; an error once its deadline passed or QEMU is gone.
    pub fn try_answer(&mut self, p: &Pending) -> Result<Option<Answer>, GuestError> {
        loop {
            match self.lines.try_recv() {
                Ok(line) => {
                    let Some(body) = marker(&line, "@@R ") else {
                        continue;
                    };
                    let mut parts = body.splitn(3, ' ');
                    let id = parts.next().and_then(|s| s.parse::<u64>().ok());
                    let exit = parts.next().and_then(|s| s.parse::<i32>().ok());
                    if id != Some(p.id) {
                        continue;
                    }
                    let data = unbase64(parts.next().unwrap_or("").trim());
                    let mut output = String::from_utf8_lossy(&data).into_owned();
                    if output.len() > MAX_OUTPUT {
                        let cut = output.len() - MAX_OUTPUT;
                        let cut = (cut..output.len())
                            .find(|&i| output.is_char_boundary(i))
                            .unwrap_or(0);
                        output.drain(..cut);
                    }
                    return Ok(Some(Answer {
                        exit: exit.unwrap_or(-1),
                        output,
                    }));
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    return Err(GuestError::Gone {
                        guest: self.name.clone(),
                        tail: self.console_tail(),
                    })
                }
            }
        }
        if Instant::now() > p.deadline {
            return Err(GuestError::Hung {
                guest: self.name.clone(),
                command: p.command.clone(),
                secs: p.timeout.as_secs(),
                tail: self.console_tail(),
            });
        }
        if !self.guest.is_running() {
            return Err(GuestError::Gone {
                guest: self.name.clone(),
                tail: self.console_tail(),
            });
        }
        Ok(None)
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (what busybox `base64 -d` reads).
pub fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes base64, skipping what is not in its alphabet (a guest's output is never trusted to
/// be well-formed: a bad character costs that character, nothing more).
pub fn unbase64(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let Some(v) = B64.iter().position(|&x| x == c) else {
            continue;
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for s in ["", "a", "ab", "abc", "ping -c 3 10.0.0.1", "é\n\t'\"$"] {
            let e = base64(s.as_bytes());
            assert_eq!(e.len() % 4, 0);
            assert_eq!(unbase64(&e), s.as_bytes(), "{s}");
        }
        assert_eq!(base64(b"abc"), "YWJj");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(unbase64("Y W\u{0}Jj!!"), b"abc");
    }

    #[test]
    fn markers_are_read_from_anywhere_in_a_line() {
        assert_eq!(marker("x@@R 1 0 YQ==@@", "@@R "), Some("1 0 YQ=="));
        assert_eq!(
            marker("@@READY 02:00:00:00:00:12@@", "@@READY "),
            Some("02:00:00:00:00:12")
        );
        assert_eq!(marker("nothing", "@@R "), None);
    }
}
