//! The bring-your-own driver path: guests booting a user's kernel and modules instead of the
//! stock Debian ones, `check-driver` comparing the user's build with the stock driver, and the
//! JUnit file CI systems read.
//!
//! The user's igbvf here is the stock module with its signature removed (as a module built
//! without the distribution's signing key is) and its description changed, so its checksum
//! differs from the stock file's and the kernel taints itself `E` (unsigned module) when it
//! loads it: both show, in the guest, that the run used it. Building igbvf from source would
//! need the kernel's source package; the module file is what the path takes either way.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use scenarios::qemu::{BuildError, GuestBuild, GuestFile};
use sriov_emu::check_driver::{check_driver, CheckArgs};
use sriov_emu::scenario_cmd::{run_command, RunArgs, ScenarioCmdError};
use sriov_emu_tests::{build_guest_helper, workspace_root, Artifacts};

/// The stock kernel's release and the path of a stock module in the fetched guest tree.
fn stock_module(name: &str) -> (String, PathBuf) {
    let artifacts = Artifacts::locate().unwrap_or_else(|e| panic!("{e}"));
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(artifacts.dir.join("initramfs-modules.json")).expect("module manifest"),
    )
    .expect("json");
    let release = manifest["release"].as_str().expect("release").to_string();
    let rel = manifest["modules"][name]["path"].as_str().expect("module");
    let path = artifacts
        .dir
        .join("guest-tree/lib/modules")
        .join(&release)
        .join(rel);
    (release, path)
}

/// `data` without the signature `scripts/sign-file` appends (module_signature, then the
/// marker): what a module built without the signing key looks like.
fn unsigned(mut data: Vec<u8>) -> Vec<u8> {
    const MARKER: &[u8] = b"~Module signature appended~\n";
    assert!(data.ends_with(MARKER), "the stock module is signed");
    data.truncate(data.len() - MARKER.len());
    let sig_len = u32::from_be_bytes(data[data.len() - 4..].try_into().unwrap()) as usize;
    data.truncate(data.len() - 12 - sig_len);
    data
}

/// Replaces `from` by `to` (same length) once in `data`.
fn patched(mut data: Vec<u8>, from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at = data
        .windows(from.len())
        .position(|w| w == from)
        .unwrap_or_else(|| panic!("{} not in the module", String::from_utf8_lossy(from)));
    data[at..at + to.len()].copy_from_slice(to);
    data
}

/// "The user's igbvf": unsigned, its description changed.
fn users_igbvf() -> Vec<u8> {
    let (_, path) = stock_module("igbvf");
    patched(
        unsigned(std::fs::read(path).expect("stock igbvf")),
        b"description=Intel(R) Gigabit",
        b"description=BYO-test Gigabit",
    )
}

fn scratch(name: &str) -> PathBuf {
    let dir = workspace_root()
        .join("target/e2e/run")
        .join(format!("kit-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn library(name: &str) -> PathBuf {
    workspace_root()
        .join("scenarios/library")
        .join(format!("{name}.toml"))
}

/// Validates a JUnit file with Python's `xml.etree` against what the JUnit schema requires
/// (testsuite: name, tests, failures, errors; testcase: name, classname; failure: message)
/// and prints `suite|case|failure message|failure text` for each failure.
fn junit_failures(path: &Path) -> Vec<String> {
    const CHECK: &str = r#"
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == "testsuites", root.tag
suites = root.findall("testsuite")
assert suites, "no testsuite"
for s in suites:
    for a in ("name", "tests", "failures", "errors"):
        assert a in s.attrib, ("testsuite", a)
    cases = s.findall("testcase")
    assert int(s.get("tests")) == len(cases), (s.get("name"), s.get("tests"), len(cases))
    failures = 0
    for c in cases:
        for a in ("name", "classname"):
            assert a in c.attrib, ("testcase", a)
        for f in c.findall("failure"):
            failures += 1
            assert "message" in f.attrib
            text = (f.text or "").replace("\n", "\\n")
            print(s.get("name") + "|" + c.get("name") + "|" + f.get("message") + "|" + text)
    assert int(s.get("failures")) == failures, (s.get("name"), s.get("failures"), failures)
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(CHECK)
        .arg(path)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "the JUnit file does not validate: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(path).unwrap_or_default()
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_module_built_for_another_kernel_is_refused_before_any_guest_boots() {
    let (release, path) = stock_module("igbvf");
    let dir = scratch("vermagic");
    let stock = unsigned(std::fs::read(&path).unwrap());
    // Another release of the same length (one digit of the ABI number changed), so that the
    // module's .modinfo keeps its size.
    let wrong: String = {
        let dash = release
            .find('-')
            .expect("a Debian release has an ABI number");
        let mut chars: Vec<char> = release.chars().collect();
        let d = &mut chars[dash + 1];
        *d = if *d == '0' { '1' } else { '0' };
        chars.into_iter().collect()
    };
    let old = dir.join("igbvf-old.ko");
    let from = format!("vermagic={release} ");
    let to = format!("vermagic={wrong} ");
    std::fs::write(&old, patched(stock.clone(), from.as_bytes(), to.as_bytes())).unwrap();
    let log = Artifacts::locate()
        .unwrap()
        .logs
        .join("scenario-vf-ping-vm1.log");
    let started = SystemTime::now();
    let t = Instant::now();
    let e = check_driver(
        CheckArgs {
            paths: vec![library("vf-ping")],
            build: GuestBuild {
                module_files: vec![old.clone()],
                ..GuestBuild::default()
            },
            baseline: true,
            ..CheckArgs::default()
        },
        &mut Vec::new(),
    )
    .expect_err("refused");
    let msg = e.to_string();
    eprintln!("{msg}");
    assert!(
        matches!(&e, ScenarioCmdError::Build { source: BuildError::Vermagic(m), .. } if m.len() == 1),
        "{e:?}"
    );
    assert!(msg.contains(&format!("was built for {wrong}")), "{msg}");
    assert!(
        msg.contains(&format!("the guest kernel is {release}")),
        "{msg}"
    );
    assert!(msg.contains("igbvf-old.ko"), "{msg}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    let booted = std::fs::metadata(&log)
        .and_then(|m| m.modified())
        .is_ok_and(|m| m >= started);
    assert!(!booted, "a guest booted: {}", log.display());

    // The release right but the build flags not (a module built without modversions): the
    // stock kernel would refuse it too.
    let flags = dir.join("igbvf-flags.ko");
    std::fs::write(
        &flags,
        patched(
            stock,
            b"mod_unload modversions ",
            b"mod_unload             ",
        ),
    )
    .unwrap();
    let artifacts = Artifacts::locate().unwrap();
    let e = GuestBuild {
        module_files: vec![flags],
        ..GuestBuild::default()
    }
    .prepare(&artifacts)
    .expect_err("refused");
    assert!(e.to_string().contains("with other build flags"), "{e}");
    assert!(e.to_string().contains("modversions"), "{e}");

    // A modules_install tree for another release.
    let tree = dir.join("mods/lib/modules/6.1.0-0-custom/updates");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::copy(&old, tree.join("igbvf.ko")).unwrap();
    let e = GuestBuild {
        modules: Some(dir.join("mods")),
        ..GuestBuild::default()
    }
    .prepare(&artifacts)
    .expect_err("refused");
    let msg = e.to_string();
    assert!(
        msg.contains("6.1.0-0-custom") && msg.contains(&release),
        "{msg}"
    );

    // A kernel of another release and no modules: it boots only with igbvf built in, which the
    // build says before anything boots (the image here is a bare bzImage header).
    let mut image = vec![0u8; 0x1000];
    image[0x202..0x206].copy_from_slice(b"HdrS");
    image[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    image[0x20e..0x210].copy_from_slice(&0x0300u16.to_le_bytes());
    image[0x500..0x50f].copy_from_slice(b"6.1.0-0-custom ");
    std::fs::write(dir.join("bzImage"), image).unwrap();
    let build = GuestBuild {
        kernel: Some(dir.join("bzImage")),
        ..GuestBuild::default()
    }
    .prepare(&artifacts)
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(build.release, "6.1.0-0-custom");
    assert!(
        build
            .notes
            .iter()
            .any(|n| n.contains("no igbvf module for 6.1.0-0-custom")),
        "{:?}",
        build.notes
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A guest scenario that fails one check (its ping is answered, it expects not), on any build.
const FAILING: &str = r#"
name = "kit-expects-silence"
guests = true
description = "A ping that is answered, expected not to be: a failing check for the JUnit file."
reproduces = "Nothing: the driver kit's test of its own failure reporting."

[nic]
vfs = 1

[[policy]]
vf = 0
set = "mac 02:00:00:00:00:30"

[[endpoint]]
name = "pf"
port = "pf"
ip = "10.0.3.1"

[[endpoint]]
name = "vm0"
port = "vf0"
attach = "driver"
ip = "10.0.3.10"

[[step]]
label = "the PF answers"
do = "ping"
from = "vm0"
target = "10.0.3.1"
expect.answered = false
"#;

#[test]
fn check_driver_runs_the_users_kernel_and_modules_and_compares_with_the_stock_driver() {
    build_guest_helper();
    let (release, _) = stock_module("igbvf");
    let artifacts = Artifacts::locate().unwrap();
    let dir = scratch("check");
    // A `make modules_install INSTALL_MOD_PATH=mods` tree with an out-of-tree igbvf.
    let updates = dir.join("mods/lib/modules").join(&release).join("updates");
    std::fs::create_dir_all(&updates).unwrap();
    let mine = users_igbvf();
    std::fs::write(updates.join("igbvf.ko"), &mine).unwrap();
    let failing = dir.join("kit-expects-silence.toml");
    std::fs::write(&failing, FAILING).unwrap();
    let junit = dir.join("junit.xml");
    let json = dir.join("check.json");
    // The kernel as a bzImage (the fetched vmlinux is the ELF cut out of it).
    let bzimage = artifacts
        .dir
        .join("guest-tree/boot")
        .join(format!("vmlinuz-{release}"));
    let mut out = Vec::new();
    let pass = check_driver(
        CheckArgs {
            paths: vec![library("vf-ping"), failing],
            build: GuestBuild {
                kernel: Some(bzimage.clone()),
                modules: Some(dir.join("mods")),
                ..GuestBuild::default()
            },
            baseline: true,
            json: Some(&json),
            junit: Some(&junit),
            ..CheckArgs::default()
        },
        &mut out,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8(out).unwrap();
    eprintln!("{text}");
    assert!(!pass, "a scenario failed: the check fails");
    assert!(text.starts_with(&format!(
        "your build: kernel {release} ({})",
        bzimage.display()
    )));
    let row = |name: &str| -> Vec<String> {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no summary row for {name}: {text}"));
        line.split_whitespace().map(str::to_string).collect()
    };
    assert_eq!(
        row("vf-ping"),
        ["vf-ping", "pass", "pass", "same"],
        "{text}"
    );
    assert_eq!(
        row("kit-expects-silence"),
        ["kit-expects-silence", "FAIL", "FAIL", "same"],
        "{text}"
    );
    assert!(
        text.contains("1/2 scenarios passed on your build, 2/2 behaved as with the stock driver")
    );

    let check: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let sha = check["build"]["modules"][0]["sha256"].as_str().unwrap();
    assert_eq!(check["build"]["modules"][0]["name"], "igbvf");
    assert_eq!(
        check["build"]["modules"][0]["guest"],
        format!("/lib/modules/{release}/updates/igbvf.ko")
    );
    for s in check["scenarios"].as_array().unwrap() {
        // On the user's build every guest runs the user's igbvf: its file in the guest has the
        // checksum of the one brought, it is loaded, and the kernel says it is unsigned.
        let guests = s["yours"]["guests"].as_array().expect("guests");
        assert!(!guests.is_empty());
        for g in guests {
            assert_eq!(g["kernel"], release.as_str());
            let m = &g["modules"][0];
            assert_eq!(m["name"], "igbvf", "{g}");
            assert_eq!(m["loaded"], true, "{g}");
            assert_eq!(m["sha256"], sha, "{g}");
            assert!(m["taint"].as_str().unwrap().contains('E'), "{g}");
        }
        // The stock run's guests run the stock module (nothing brought to list).
        for g in s["stock"]["guests"].as_array().expect("stock guests") {
            assert!(g.get("modules").is_none(), "{g}");
        }
        let last = s["yours"]["steps"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert_eq!(last["action"], "the guests run the modules brought");
        assert_eq!(last["pass"], true, "{last}");
    }

    let failures = junit_failures(&junit);
    assert_eq!(failures.len(), 1, "{failures:?}");
    let f = &failures[0];
    assert!(
        f.starts_with("kit-expects-silence|step 1: the PF answers"),
        "{f}"
    );
    assert!(f.contains("|answered: expected false, got true|"), "{f}");
    // The failure's text carries the guest's console tail, headed by what it booted.
    assert!(
        f.contains("guest vm0: kernel ") && f.contains("console log"),
        "{f}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_scenario_files_run_table_brings_a_module_files_and_kernel_arguments() {
    build_guest_helper();
    let dir = scratch("run-table");
    std::fs::write(dir.join("my-igbvf.ko"), users_igbvf()).unwrap();
    std::fs::write(dir.join("note.txt"), "a note from the host\n").unwrap();
    let file = dir.join("run-table.toml");
    std::fs::write(
        &file,
        r#"
description = "A guest built from the file's [run] table."
reproduces = "The driver kit."

[run]
module = ["my-igbvf.ko"]
files = [{ host = "note.txt", guest = "/etc/kit-note" }]
kernel_args = "sriov_emu.kit=1"

[nic]
vfs = 1

[[policy]]
vf = 0
set = "mac 02:00:00:00:00:40"

[[endpoint]]
name = "vm0"
port = "vf0"
attach = "guest"
ip = "10.0.4.10"

[[step]]
do = "shell"
guest = "vm0"
command = "cat /etc/kit-note; cat /proc/cmdline; modinfo -F description igbvf"
expect.exit = 0
expect.output_contains = ["a note from the host", "sriov_emu.kit=1", "BYO-test Gigabit"]
"#,
    )
    .unwrap();
    let junit = dir.join("junit.xml");
    let mut out = Vec::new();
    let pass = run_command(
        std::slice::from_ref(&file),
        RunArgs {
            json: true,
            junit: Some(&junit),
            ..RunArgs::default()
        },
        &mut out,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8(out).unwrap();
    assert!(pass, "{text}");
    let reports: serde_json::Value = serde_json::from_str(&text).unwrap();
    let g = &reports[0]["guests"][0];
    assert_eq!(g["modules"][0]["loaded"], true, "{g}");
    assert_eq!(
        g["modules"][0]["sha256"],
        scenarios::qemu::custom::sha256_hex(&users_igbvf()),
        "{g}"
    );
    assert!(junit_failures(&junit).is_empty());

    // Files that are not there are named before anything boots.
    let e = run_command(
        std::slice::from_ref(&file),
        RunArgs {
            build: GuestBuild {
                files: vec![GuestFile::parse("/nonexistent/x=/x").unwrap()],
                ..GuestBuild::default()
            },
            ..RunArgs::default()
        },
        &mut Vec::new(),
    )
    .expect_err("refused");
    assert!(e.to_string().contains("/nonexistent/x"), "{e}");
    // Brought guests without any guest: the flags would do nothing, so they are refused.
    let e = run_command(
        &[library("arp-broadcast")],
        RunArgs {
            build: GuestBuild {
                kernel_args: vec!["quiet".into()],
                ..GuestBuild::default()
            },
            ..RunArgs::default()
        },
        &mut Vec::new(),
    )
    .expect_err("refused");
    assert!(matches!(e, ScenarioCmdError::BuildWithoutGuests), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_driver_for_an_82599_runs_the_users_ixgbevf_on_the_files_that_hold_for_it() {
    build_guest_helper();
    let (_, stock) = stock_module("ixgbevf");
    let dir = scratch("ixgbevf");
    // "The user's ixgbevf": unsigned, its description changed.
    let mine = patched(
        unsigned(std::fs::read(stock).expect("stock ixgbevf")),
        b"description=Intel(R) 10 Gigabit",
        b"description=BYO-test 10 Gigabit",
    );
    let module = dir.join("ixgbevf.ko");
    std::fs::write(&module, &mine).unwrap();
    let json = dir.join("check.json");
    let mut out = Vec::new();
    let pass = check_driver(
        CheckArgs {
            build: GuestBuild {
                module_files: vec![module],
                ..GuestBuild::default()
            },
            model: Some(model::nic::Card::X82599),
            json: Some(&json),
            ..CheckArgs::default()
        },
        &mut out,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8(out).unwrap();
    assert!(pass, "{text}");
    let check: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let scenarios = check["scenarios"].as_array().unwrap();
    // The library's files that list the 82599 in `cards`, and only those.
    assert!(scenarios.len() >= 3, "{text}");
    assert!(scenarios.iter().any(|s| s["name"] == "port-vlan-igbvf"));
    assert!(!scenarios.iter().any(|s| s["name"] == "rate-igbvf"));
    let sha = scenarios::qemu::custom::sha256_hex(&mine);
    for s in scenarios {
        for g in s["yours"]["guests"].as_array().unwrap() {
            let m = &g["modules"][0];
            assert_eq!(m["name"], "ixgbevf", "{g}");
            assert_eq!(m["sha256"], sha.as_str(), "{g}");
            assert_eq!(m["loaded"], true, "{g}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
