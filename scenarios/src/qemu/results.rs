//! Parsing of the guest's console: the lines written by `/init` and by the
//! helpers of `tests/guest/helpers.sh`.
//!
//! ```text
//! SRIOV-EMU-BOOTED kernel=<uname -r> uptime=<s>
//! SRIOV-EMU-RESULT name=<name> status=<pass|fail> detail=<text to end of line>
//! SRIOV-EMU-DONE rc=<exit status of the test script> uptime=<s>
//! ```
//!
//! A marker may be preceded by other text on its line (a kernel message that
//! reached the console in the middle of it); everything from the marker on is
//! parsed.

use std::fmt;

pub const BOOTED_MARKER: &str = "SRIOV-EMU-BOOTED ";
pub const RESULT_MARKER: &str = "SRIOV-EMU-RESULT ";
pub const DONE_MARKER: &str = "SRIOV-EMU-DONE ";

/// Outcome of one guest check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pass,
    Fail,
}

/// One `SRIOV-EMU-RESULT` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestResult {
    pub name: String,
    pub status: Status,
    pub detail: String,
}

impl GuestResult {
    pub fn passed(&self) -> bool {
        self.status == Status::Pass
    }
}

impl fmt::Display for GuestResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self.status {
            Status::Pass => "pass",
            Status::Fail => "FAIL",
        };
        write!(f, "{} {}: {}", s, self.name, self.detail)
    }
}

/// Everything the harness reads from a console transcript.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedConsole {
    /// `uname -r` of the guest, once `/init` got going.
    pub booted_kernel: Option<String>,
    /// Results in the order the guest printed them.
    pub results: Vec<GuestResult>,
    /// The test script's exit status, once `/init` printed `SRIOV-EMU-DONE`.
    pub script_rc: Option<i32>,
}

impl ParsedConsole {
    /// Whether the guest got to the end of its script.
    pub fn done(&self) -> bool {
        self.script_rc.is_some()
    }
}

fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let start = text.find(key)? + key.len();
    let rest = &text[start..];
    Some(rest.split_whitespace().next().unwrap_or(""))
}

/// Parses one result line's text after the marker:
/// `name=<n> status=<s> detail=<rest>`.
fn parse_result(text: &str) -> Option<GuestResult> {
    let rest = text.strip_prefix("name=")?;
    let (name, rest) = rest.split_once(" status=")?;
    let (status, detail) = match rest.split_once(" detail=") {
        Some((s, d)) => (s, d),
        None => (rest.trim_end(), ""),
    };
    let status = match status {
        "pass" => Status::Pass,
        "fail" => Status::Fail,
        _ => return None,
    };
    Some(GuestResult {
        name: name.to_string(),
        status,
        detail: detail.trim_end().to_string(),
    })
}

/// Parses a console transcript (carriage returns are ignored).
pub fn parse_console(console: &str) -> ParsedConsole {
    let mut parsed = ParsedConsole::default();
    for line in console.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(i) = line.find(RESULT_MARKER) {
            if let Some(r) = parse_result(&line[i + RESULT_MARKER.len()..]) {
                parsed.results.push(r);
            }
        } else if let Some(i) = line.find(BOOTED_MARKER) {
            if let Some(k) = field(&line[i..], "kernel=") {
                parsed.booted_kernel = Some(k.to_string());
            }
        } else if let Some(i) = line.find(DONE_MARKER) {
            if let Some(rc) = field(&line[i..], "rc=").and_then(|v| v.parse().ok()) {
                parsed.script_rc = Some(rc);
            }
        }
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_markers_and_ignores_noise() {
        let console = "[    0.1] Linux version 6.1\r\n\
            SRIOV-EMU-BOOTED kernel=6.1.0-50-amd64 uptime=2.36\r\n\
            SRIOV-EMU-RESULT name=kernel status=pass detail=6.1.0-50-amd64\r\n\
            [ 2.5] igb: noiseSRIOV-EMU-RESULT name=modprobe-igb status=fail detail=rc=1: no  such module \r\n\
            SRIOV-EMU-RESULT name=empty status=pass detail=\n\
            SRIOV-EMU-RESULT name=bad status=maybe detail=x\n\
            SRIOV-EMU-DONE rc=3 uptime=2.73\n";
        let p = parse_console(console);
        assert_eq!(p.booted_kernel.as_deref(), Some("6.1.0-50-amd64"));
        assert_eq!(p.script_rc, Some(3));
        assert!(p.done());
        assert_eq!(p.results.len(), 3);
        assert_eq!(p.results[0].name, "kernel");
        assert!(p.results[0].passed());
        assert_eq!(p.results[0].detail, "6.1.0-50-amd64");
        assert_eq!(p.results[1].name, "modprobe-igb");
        assert_eq!(p.results[1].status, Status::Fail);
        assert_eq!(p.results[1].detail, "rc=1: no  such module");
        assert_eq!(p.results[2].detail, "");
    }

    #[test]
    fn incomplete_console() {
        let p = parse_console("SRIOV-EMU-RESULT name=a status=pass detail=x y z");
        assert!(!p.done());
        assert_eq!(p.results[0].detail, "x y z");
        assert_eq!(p.booted_kernel, None);
    }
}
