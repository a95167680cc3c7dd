//! `serve --pcap DIR`: every port of a NIC's switch captured to `DIR/<name>-<port>.pcap`, the
//! name the card's port (`pf0-uplink0.pcap`, `pf1-vf0.pcap`...), both directions as the function on that port would see them
//! (frames a port sent as sent, dropped ones included; frames delivered to it as delivered,
//! after VLAN stripping). Timestamps are wall-clock.
//!
//! [`Capture`] is the NIC's [`Observer`]: it is called on the sending function's thread with
//! no NIC lock held, and writes under its own per-file locks only.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use eswitch::PortId;
use model::{Nic, Observer, Switched};
use tracing::warn;

use crate::pcap::PcapWriter;

type Writer = Mutex<PcapWriter<BufWriter<File>>>;

/// The capture files of a running NIC.
pub struct Capture {
    writers: BTreeMap<PortId, Writer>,
    /// Added to the NIC's clock to get the wall clock.
    offset_ns: u64,
    errors: AtomicU64,
}

impl Capture {
    /// Opens one file per switch port in `dir` (created if missing), `<name>-<port>.pcap`, and
    /// starts observing `nic`.
    pub fn start(nic: &Nic, dir: &Path, name: &str) -> std::io::Result<Arc<Capture>> {
        crate::create_dir(dir)?;
        let ports: Vec<PortId> = nic.with_pf(|pf| pf.switch().ports().collect());
        // The NIC's clock counts from its start; pcap wants the wall clock.
        let wall_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let mut writers = BTreeMap::new();
        for port in ports {
            let path = dir.join(format!("{name}-{port}.pcap"));
            let w = PcapWriter::new(BufWriter::new(File::create(&path)?))?;
            writers.insert(port, Mutex::new(w));
        }
        let capture = Arc::new(Capture {
            writers,
            offset_ns: wall_ns.saturating_sub(nic.now()),
            errors: AtomicU64::new(0),
        });
        nic.set_observer(Some(capture.clone()));
        Ok(capture)
    }

    fn record(&self, port: PortId, time_ns: u64, frame: &[u8]) {
        let Some(w) = self.writers.get(&port) else {
            return;
        };
        let mut w = w.lock().unwrap_or_else(|e| e.into_inner());
        if w.record(time_ns.saturating_add(self.offset_ns), frame)
            .is_err()
            && self.errors.fetch_add(1, Ordering::Relaxed) == 0
        {
            warn!(%port, "pcap write failed; later failures are only counted");
        }
    }

    /// Stops observing `nic` and flushes the files.
    pub fn stop(self: Arc<Self>, nic: &Nic) {
        nic.set_observer(None);
        for (port, w) in &self.writers {
            let mut w = w.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = w.flush() {
                warn!(%port, error = %e, "pcap flush failed");
            }
        }
        let errors = self.errors.load(Ordering::Relaxed);
        if errors > 0 {
            warn!(errors, "pcap records lost");
        }
    }
}

impl Observer for Capture {
    fn switched(&self, e: &Switched<'_>) {
        self.record(e.ingress, e.time_ns, e.frame);
        for d in e.deliveries {
            self.record(d.port, e.time_ns, &d.frame);
        }
    }
}
