//! `sriov-emu scenario run --html FILE` checked in a real browser: a run of a scenario of our own
//! (a `link_down` drop, then a check that cannot hold) with the library's `arp-broadcast` and
//! `wire-fault` writes the page, and Chromium's headless shell (fetched by
//! `scripts/fetch-e2e.py`) loads it twice: once to dump the DOM it built — the port boxes, an
//! arrow per delivery, the drops with their reasons, the failed check with class `fail`, the
//! text escaped — and once inside a page of the test's own that measures what it laid out (the
//! boxes and arrows have a size, the failed check is red). Without the browser the test fails
//! and says how to fetch it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sriov_emu::scenario_cmd::{run_command, RunArgs};
use sriov_emu_tests::artifacts::{workspace_root, HarnessError, E2E_DIR_ENV};

/// What the browser may take for one page.
const BROWSER_DEADLINE: Duration = Duration::from_secs(20);
const BROWSER: &str = "chromium-headless-shell";

/// vf1's link is disabled: vm0's broadcast is a `link_down` drop there. Then a delivery check
/// that cannot hold, in a step whose label needs escaping.
const FAILING: &str = r#"
name = "html-failing"
description = "A drop at a disabled VF, and a check that fails on purpose."
reproduces = "Nothing: the HTML report's test."

[nic]
vfs = 2

[[policy]]
vf = 0
set = "mac 02:00:00:00:00:10"

[[policy]]
vf = 1
set = "mac 02:00:00:00:00:11 state disable"

[[endpoint]]
name = "vm0"
port = "vf0"
ip = "10.0.0.10"

[[step]]
label = "the broadcast stops at vf1"
do = "arping"
from = "vm0"
target = "10.0.0.99"
expect.delivered = ["uplink0", "pf"]
expect.dropped = [{ port = "vf1", reason = "link_down", count = 1 }]

[[step]]
label = "a check that cannot hold <b>&</b>"
do = "arping"
from = "vm0"
target = "10.0.0.98"
expect.delivered = ["vf1"]
"#;

/// The test's own page: the report in a frame, and what the browser laid out written into
/// `#out` as JSON once everything has loaded.
const MEASURE: &str = r#"<!DOCTYPE html>
<html><body><iframe id="report" src="report.html" width="1400" height="1000"></iframe>
<pre id="out">not measured</pre>
<script>
window.addEventListener('load', () => {
  const res = {};
  try {
    const d = document.getElementById('report').contentDocument;
    const css = (el, prop) => d.defaultView.getComputedStyle(el).getPropertyValue(prop);
    const boxes = [...d.querySelectorAll('svg.card .port rect')].map(r => r.getBBox());
    res.port_boxes = boxes.length;
    res.empty_port_boxes = boxes.filter(b => !(b.width > 0 && b.height > 0)).length;
    const arp = d.querySelector('section[data-name="arp-broadcast"] article');
    const arrows = [...arp.querySelectorAll('svg.card .arrow.step path')];
    res.arp_arrows = arrows.length;
    res.arp_arrow_lengths = arrows.map(p => p.getTotalLength());
    res.arp_arrow_stroke = arrows.map(p => css(p, 'stroke'));
    res.arp_arrow_marker = arrows.map(p => css(p, 'marker-end'));
    const fault = d.querySelectorAll('section[data-name="wire-fault"] article')[2];
    const drop = fault.querySelector('svg.card .drop[data-reason="fault"]');
    const cross = drop.querySelector('path.cross');
    res.cross_stroke = css(cross, 'stroke');
    res.cross_width = cross.getBBox().width;
    res.reason_width = drop.querySelector('text.reason').getBBox().width;
    const failed = d.querySelector('section[data-name="html-failing"] tr.check.fail');
    res.failed_colour = css(failed, 'color');
    res.failed_background = css(failed, 'background-color');
    res.failed_height = failed.getBoundingClientRect().height;
  } catch (e) {
    res.error = String(e);
  }
  document.getElementById('out').textContent = JSON.stringify(res);
});
</script></body></html>
"#;

/// A start tag of the dumped DOM: its name, attributes and where it stands.
#[derive(Debug)]
struct Tag {
    name: String,
    attrs: BTreeMap<String, String>,
    at: usize,
}

impl Tag {
    fn attr(&self, name: &str) -> &str {
        self.attrs.get(name).map_or("", String::as_str)
    }

    fn classes(&self) -> BTreeSet<&str> {
        self.attr("class").split_whitespace().collect()
    }

    fn has_class(&self, class: &str) -> bool {
        self.classes().contains(class)
    }
}

/// The start tags of HTML as Chromium serialises it (attribute values in double quotes, `"`
/// and `&` in them as entities, `<` in text as `&lt;`).
fn start_tags(html: &str) -> Vec<Tag> {
    let b = html.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'<' || !b.get(i + 1).is_some_and(u8::is_ascii_alphabetic) {
            i += 1;
            continue;
        }
        let at = i;
        i += 1;
        let start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'>' && b[i] != b'/' {
            i += 1;
        }
        let name = html[start..i].to_ascii_lowercase();
        let mut attrs = BTreeMap::new();
        loop {
            while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
                i += 1;
            }
            if i >= b.len() || b[i] == b'>' {
                break;
            }
            let start = i;
            while i < b.len() && !b"=> \t\n/".contains(&b[i]) {
                i += 1;
            }
            let key = html[start..i].to_string();
            let mut value = String::new();
            if b.get(i) == Some(&b'=') && b.get(i + 1) == Some(&b'"') {
                let start = i + 2;
                let end = html[start..].find('"').map_or(b.len(), |e| start + e);
                value = html[start..end].to_string();
                i = end + 1;
            }
            attrs.insert(key, value);
        }
        out.push(Tag { name, attrs, at });
    }
    out
}

/// The part of `html` from the section of scenario `name` to its end.
fn section<'a>(html: &'a str, tags: &[Tag], name: &str) -> &'a str {
    let start = tags
        .iter()
        .find(|t| t.name == "section" && t.attr("data-name") == name)
        .unwrap_or_else(|| panic!("no section for scenario {name}"))
        .at;
    let end = html[start..]
        .find("</section>")
        .map_or(html.len(), |e| start + e);
    &html[start..end]
}

/// The steps (`<article>`) of a section, in order.
fn steps(section: &str) -> Vec<&str> {
    let mut starts: Vec<usize> = section.match_indices("<article").map(|(i, _)| i).collect();
    starts.push(section.len());
    starts.windows(2).map(|w| &section[w[0]..w[1]]).collect()
}

/// Runs the browser on `url` with `flags` and returns what it printed, or why it could not.
fn browser(exe: &Path, profile: &Path, flags: &[&str], url: &str) -> Result<String, String> {
    let mut child = Command::new(exe)
        .arg("--headless")
        .arg("--disable-gpu")
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(flags)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{BROWSER} ({}) did not start: {e}", exe.display()))?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let mut stderr = child.stderr.take().ok_or("no stderr")?;
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + BROWSER_DEADLINE;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{BROWSER} did not finish {url} within {BROWSER_DEADLINE:?}"
                ));
            }
            Err(e) => return Err(format!("waiting for {BROWSER}: {e}")),
        }
    };
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    if !status.success() || out.trim().is_empty() {
        return Err(format!(
            "{BROWSER} failed on {url} ({status}); its stderr:\n{err}"
        ));
    }
    Ok(out)
}

/// The browser's wrapper in the fetched artifacts (`SRIOV_EMU_E2E_DIR`, else `target/e2e`).
fn locate_browser() -> PathBuf {
    let dir = std::env::var_os(E2E_DIR_ENV)
        .map_or_else(|| workspace_root().join("target/e2e"), PathBuf::from);
    let exe = dir.join("bin").join(BROWSER);
    if !exe.exists() {
        panic!(
            "the HTML report is checked in a real browser: {}",
            HarnessError::Missing { path: exe }
        );
    }
    exe
}

#[test]
fn the_html_report_renders_the_card_deliveries_drops_and_failed_checks_in_chromium() {
    let exe = locate_browser();
    let root = workspace_root();
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or(&root)
        .join("run")
        .join(format!("scenario-html-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating the test's directory");
    let failing = dir.join("html-failing.toml");
    std::fs::write(&failing, FAILING).expect("writing the scenario");
    let report = dir.join("report.html");
    let paths = [
        failing,
        root.join("scenarios/library/arp-broadcast.toml"),
        root.join("scenarios/library/wire-fault.toml"),
    ];
    let mut text = Vec::new();
    let args = RunArgs {
        html: Some(&report),
        ..RunArgs::default()
    };
    let passed = run_command(&paths, args, &mut text).expect("the run");
    let text = String::from_utf8_lossy(&text);
    assert!(!passed, "a check fails on purpose:\n{text}");
    // The text report stays what the run prints.
    assert!(text.contains("== FAIL html-failing"), "{text}");
    assert!(text.contains("== PASS arp-broadcast"), "{text}");
    assert!(
        text.contains("FAIL delivered to: expected vf1, got uplink0, pf"),
        "{text}"
    );
    let page = std::fs::read_to_string(&report).expect("the HTML report");
    // Self-contained: no script, nothing loaded, links only within the page.
    for t in start_tags(&page) {
        assert!(
            !["script", "link", "img", "iframe", "object", "embed", "image"]
                .contains(&t.name.as_str()),
            "{t:?}"
        );
        assert!(!t.attrs.contains_key("src"), "{t:?}");
        for (k, v) in &t.attrs {
            assert!(!k.ends_with("href") || v.starts_with('#'), "{t:?}");
        }
    }
    assert!(!page.contains("@import"));
    assert!(page.split("url(").skip(1).all(|u| u.starts_with('#')));

    // 1. The DOM the browser built from the page.
    let profile = dir.join("profile");
    let url = format!("file://{}", report.display());
    let dom = browser(&exe, &profile, &["--dump-dom"], &url).unwrap_or_else(|e| panic!("{e}"));
    let tags = start_tags(&dom);
    assert!(
        !tags.iter().any(|t| t.name == "script"),
        "no script in the page"
    );

    // arp-broadcast, step 1: the boxes, and vf1's broadcast to every other port.
    let arp = section(&dom, &tags, "arp-broadcast");
    let first = steps(arp)[0];
    let step_tags = start_tags(first);
    let ports: BTreeMap<&str, BTreeSet<&str>> = step_tags
        .iter()
        .filter(|t| t.name == "g" && t.has_class("port"))
        .map(|t| (t.attr("data-port"), t.classes()))
        .collect();
    for (port, kind) in [
        ("uplink0", "uplink"),
        ("pf", "pf"),
        ("vf0", "vf"),
        ("vf1", "vf"),
        ("vf2", "vf"),
        ("vf3", "vf"),
    ] {
        let classes = ports
            .get(port)
            .unwrap_or_else(|| panic!("no box for {port}: {ports:?}"));
        assert!(classes.contains(kind), "{port}: {classes:?}");
    }
    assert!(
        step_tags
            .iter()
            .any(|t| t.name == "g" && t.has_class("switch") && t.attr("data-port") == "pf"),
        "the switch between them"
    );
    let arrows: BTreeSet<&str> = step_tags
        .iter()
        .filter(|t| t.name == "g" && t.has_class("arrow") && t.has_class("step"))
        .inspect(|t| assert_eq!(t.attr("data-from"), "vf1", "{t:?}"))
        .map(|t| t.attr("data-to"))
        .collect();
    assert_eq!(
        arrows,
        BTreeSet::from(["uplink0", "pf", "vf0", "vf2", "vf3"]),
        "an arrow for each copy of the broadcast"
    );
    assert!(first.contains("class=\"step pass\""), "{first}");

    // wire-fault, step 3: 5 frames to vf1, 5 dropped there by the fault.
    let fault = steps(section(&dom, &tags, "wire-fault"))[2];
    let fault_tags = start_tags(fault);
    let drop = fault_tags
        .iter()
        .find(|t| t.name == "g" && t.has_class("drop"))
        .unwrap_or_else(|| panic!("no drop drawn: {fault}"));
    assert_eq!(drop.attr("data-port"), "vf1");
    assert_eq!(drop.attr("data-reason"), "fault");
    assert_eq!(drop.attr("data-count"), "5");
    assert!(fault.contains(">fault ×5</text>"), "{fault}");
    assert!(
        fault_tags.iter().any(|t| t.has_class("arrow")
            && t.attr("data-from") == "vf0"
            && t.attr("data-to") == "vf1"
            && t.attr("data-count") == "5"),
        "the 5 that arrived"
    );

    // html-failing: the link_down drop, then the failed check in red, its label escaped.
    let ours = section(&dom, &tags, "html-failing");
    assert!(
        ours.starts_with("<section class=\"scenario fail\""),
        "{ours}"
    );
    let [down, wrong] = steps(ours)[..] else {
        panic!("two steps: {ours}");
    };
    let down_tags = start_tags(down);
    assert!(
        down_tags.iter().any(|t| t.has_class("drop")
            && t.attr("data-port") == "vf1"
            && t.attr("data-reason") == "link_down"
            && t.attr("data-from") == "vf0"),
        "{down}"
    );
    assert!(down.contains(">link_down ×1</text>"), "{down}");
    assert!(wrong.starts_with("<article class=\"step fail\""), "{wrong}");
    let failed: Vec<&str> = wrong
        .split("<tr ")
        .filter(|row| row.starts_with("class=\"check fail\""))
        .collect();
    assert_eq!(failed.len(), 1, "{wrong}");
    assert!(
        failed[0].contains("<td>delivered to</td><td class=\"expected\">vf1</td><td class=\"actual\">uplink0, pf</td>"),
        "{}",
        failed[0]
    );
    assert!(
        wrong.contains("a check that cannot hold &lt;b&gt;&amp;&lt;/b&gt;"),
        "the label is text, not markup: {wrong}"
    );

    // 2. What the browser laid out: the page inside the test's own, measured.
    std::fs::write(dir.join("measure.html"), MEASURE).expect("writing the measuring page");
    let url = format!("file://{}", dir.join("measure.html").display());
    let out = browser(
        &exe,
        &profile,
        &["--allow-file-access-from-files", "--dump-dom"],
        &url,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let json = out
        .split("<pre id=\"out\">")
        .nth(1)
        .and_then(|s| s.split("</pre>").next())
        .unwrap_or_else(|| panic!("no measurements: {out}"))
        .replace("&quot;", "\"")
        .replace("&amp;", "&");
    let m: serde_json::Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert!(m.get("error").is_none(), "{m}");
    assert!(m["port_boxes"].as_u64().unwrap_or(0) > 20, "{m}");
    assert_eq!(m["empty_port_boxes"], 0, "{m}");
    assert_eq!(m["arp_arrows"], 5, "{m}");
    for (i, len) in m["arp_arrow_lengths"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        assert!(len.as_f64().unwrap_or(0.0) > 20.0, "arrow {i}: {m}");
        assert_eq!(m["arp_arrow_stroke"][i], "rgb(31, 95, 191)", "{m}");
        assert!(
            m["arp_arrow_marker"][i]
                .as_str()
                .is_some_and(|s| s.contains("#arrow-step")),
            "{m}"
        );
    }
    assert_eq!(m["cross_stroke"], "rgb(198, 40, 40)", "{m}");
    assert!(m["cross_width"].as_f64().unwrap_or(0.0) > 5.0, "{m}");
    assert!(m["reason_width"].as_f64().unwrap_or(0.0) > 20.0, "{m}");
    assert_eq!(m["failed_colour"], "rgb(163, 13, 13)", "{m}");
    assert_eq!(m["failed_background"], "rgb(253, 232, 232)", "{m}");
    assert!(m["failed_height"].as_f64().unwrap_or(0.0) > 5.0, "{m}");
    let _ = std::fs::remove_dir_all(&dir);
}
