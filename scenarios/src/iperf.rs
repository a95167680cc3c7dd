//! TCP `traffic` between two QEMU guests through iperf3 (in every guest's initramfs): the
//! receiving guest serves one test (`iperf3 -s -1`), the sending guest runs the client for the
//! step's whole seconds, both with JSON output, which this module reads without trusting it
//! (a guest's output is never assumed well-formed).

use std::net::Ipv4Addr;

/// How many times the client tries again while the server is not listening yet (a TCG guest
/// takes a moment to start it), and how long it waits between tries.
const CONNECT_TRIES: u32 = 25;
const CONNECT_PAUSE: &str = "0.2";

/// The receiving guest's command: one test, its summary as JSON (no per-interval reports, so
/// the output stays a few kB).
pub fn server_command() -> String {
    "iperf3 -s -1 -J -i 0".to_string()
}

/// The sending guest's command: TCP to `to` for `secs` seconds, at most `mbps` Mbit/s of
/// payload when given (iperf3's `-b`), trying again while the server is not yet listening (the
/// connection refused).
/// iperf3 3.12 exits 0 after an error when its output is JSON: the output (its `error`) says
/// whether it failed, not the exit status.
pub fn client_command(to: Ipv4Addr, secs: u64, mbps: Option<u32>) -> String {
    let rate = mbps.map_or(String::new(), |m| format!(" -b {m}M"));
    format!(
        "i=0\n\
         while :; do\n\
         \x20   iperf3 -c {to} -t {secs}{rate} -J -i 0 > /tmp/iperf3.json 2>&1; rc=$?\n\
         \x20   grep -q 'Connection refused' /tmp/iperf3.json || break\n\
         \x20   i=$((i+1)); [ $i -ge {CONNECT_TRIES} ] && break\n\
         \x20   sleep {CONNECT_PAUSE} 2>/dev/null || sleep 1\n\
         done\n\
         cat /tmp/iperf3.json\n\
         exit $rc\n"
    )
}

/// What one end's iperf3 said.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    /// The receiver's count: payload bytes, seconds, bit/s.
    pub received: Option<Totals>,
    /// The sender's count (the client's own), with its retransmissions.
    pub sent: Option<Totals>,
    pub retransmits: Option<u64>,
    /// iperf3's `error`.
    pub error: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Totals {
    pub bytes: u64,
    pub seconds: f64,
    pub bits_per_second: f64,
}

impl Totals {
    pub fn mbps(&self) -> f64 {
        self.bits_per_second / 1e6
    }
}

/// Reads iperf3's JSON output (`-J`), whatever else surrounds it; `None` when there is no JSON
/// object in `output`.
pub fn parse(output: &str) -> Option<Summary> {
    let start = output.find('{')?;
    let end = output.rfind('}')?;
    if end < start {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&output[start..=end]).ok()?;
    let totals = |key: &str| {
        let s = v.get("end")?.get(key)?;
        let bytes = s.get("bytes")?.as_u64()?;
        // Both ends of a test report both sums; the side that did not carry the bytes has 0.
        if bytes == 0 {
            return None;
        }
        Some(Totals {
            bytes,
            seconds: s.get("seconds").and_then(|x| x.as_f64()).unwrap_or(0.0),
            bits_per_second: s
                .get("bits_per_second")
                .and_then(|x| x.as_f64())
                .filter(|b| b.is_finite() && *b >= 0.0)?,
        })
    };
    Some(Summary {
        received: totals("sum_received"),
        sent: totals("sum_sent"),
        retransmits: v
            .pointer("/end/sum_sent/retransmits")
            .and_then(|x| x.as_u64()),
        error: v
            .get("error")
            .and_then(|e| e.as_str())
            .map(|e| e.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: &str = r#"{
	"start": { "version": "iperf 3.12" },
	"intervals": [],
	"end": {
		"streams": [],
		"sum_sent": { "start": 0, "end": 1.0, "seconds": 1.0, "bytes": 0, "bits_per_second": 0, "sender": false },
		"sum_received": { "start": 0, "end": 1.000143, "seconds": 1.000143, "bytes": 6291456, "bits_per_second": 50324451.6, "sender": false }
	}
}"#;

    const CLIENT: &str = r#"{
	"end": {
		"sum_sent": { "seconds": 1.000099, "bytes": 6291456, "bits_per_second": 50326665.7, "retransmits": 3, "sender": true },
		"sum_received": { "seconds": 1.000143, "bytes": 6291456, "bits_per_second": 50324451.6, "sender": true }
	}
}"#;

    #[test]
    fn the_receivers_and_senders_sums_are_read() {
        let s = parse(SERVER).expect("json");
        let r = s.received.expect("received");
        assert_eq!(r.bytes, 6_291_456);
        assert!((r.mbps() - 50.324).abs() < 0.001);
        assert_eq!(s.sent, None, "the server sent no payload");
        assert_eq!(s.error, None);
        let c = parse(&format!("noise before\n{CLIENT}\n")).expect("json");
        assert_eq!(c.retransmits, Some(3));
        assert_eq!(c.sent.expect("sent").bytes, 6_291_456);
    }

    #[test]
    fn errors_and_garbage_do_not_panic() {
        let e = parse(r#"{ "intervals": [], "end": {}, "error": "unable to connect to server: Connection refused" }"#)
            .expect("json");
        assert_eq!(
            e.error.as_deref(),
            Some("unable to connect to server: Connection refused")
        );
        assert_eq!(e.received, None);
        for junk in [
            "",
            "}{",
            "{",
            "not json",
            "{\"end\": 5}",
            "{\"end\": {\"sum_received\": {\"bytes\": -1}}}",
            "{\"end\": {\"sum_received\": {\"bytes\": 10, \"bits_per_second\": \"x\"}}}",
            "\u{0}{\u{ffff}}",
        ] {
            let s = parse(junk);
            assert!(s.is_none_or(|s| s.received.is_none()), "{junk:?}");
        }
    }

    #[test]
    fn the_client_retries_only_while_the_server_is_not_listening() {
        let c = client_command(Ipv4Addr::new(10, 0, 0, 2), 2, Some(20));
        assert!(c.contains("iperf3 -c 10.0.0.2 -t 2 -b 20M -J -i 0"), "{c}");
        assert!(c.contains("grep -q 'Connection refused'"), "{c}");
        assert!(!client_command(Ipv4Addr::new(10, 0, 0, 2), 1, None).contains("-b"));
    }
}
