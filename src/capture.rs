//! `serve --pcap DIR`: every port of the NIC's switch captured to `DIR/pf0-<port>.pcap`
//! (`uplink0`, `pf`, `vf0`...), both directions as the function on that port would see them
//! (frames a VF sent, dropped ones included, as sent; frames delivered to it as delivered,
//! after VLAN stripping). Timestamps are wall-clock.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use eswitch::{CaptureRecord, PortId};
use model::nic::Nic;
use scenarios::pcap::PcapWriter;
use tracing::warn;

type Writer = Arc<Mutex<PcapWriter<BufWriter<File>>>>;

/// The capture files of a running NIC.
pub struct Capture {
    writers: Vec<(PortId, Writer)>,
    errors: Arc<AtomicU64>,
}

impl Capture {
    /// Opens one file per port in `dir` (created if missing) and installs the switch's capture
    /// hooks.
    pub fn start(nic: &Nic, dir: &Path) -> std::io::Result<Capture> {
        std::fs::create_dir_all(dir)?;
        let ports: Vec<PortId> = nic.with_pf(|pf| pf.switch().ports().collect());
        // The NIC's clock counts from its start; pcap wants the wall clock.
        let wall_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let offset = wall_ns.saturating_sub(nic.now());
        let errors = Arc::new(AtomicU64::new(0));
        let mut writers = Vec::new();
        for port in ports {
            let path = dir.join(format!("pf0-{port}.pcap"));
            let w: Writer = Arc::new(Mutex::new(PcapWriter::new(BufWriter::new(File::create(
                &path,
            )?))?));
            writers.push((port, w));
        }
        nic.with_pf(|pf| {
            for (port, w) in &writers {
                let (w, errors) = (w.clone(), errors.clone());
                let hook = Box::new(move |r: &CaptureRecord<'_>| {
                    let mut w = w.lock().unwrap_or_else(|e| e.into_inner());
                    if w.record(r.time_ns.saturating_add(offset), r.frame).is_err()
                        && errors.fetch_add(1, Ordering::Relaxed) == 0
                    {
                        warn!(port = %r.port, "pcap write failed; later failures are only counted");
                    }
                });
                let _ = pf.switch_mut().set_capture(*port, Some(hook));
            }
        });
        Ok(Capture { writers, errors })
    }

    /// Removes the hooks and flushes the files.
    pub fn stop(self, nic: &Nic) {
        nic.with_pf(|pf| {
            for (port, _) in &self.writers {
                let _ = pf.switch_mut().set_capture(*port, None);
            }
        });
        for (port, w) in self.writers {
            // The hooks are gone, so this is the last reference (a BufWriter dropped elsewhere
            // would still flush, silently).
            if let Ok(m) = Arc::try_unwrap(w) {
                let mut out = m
                    .into_inner()
                    .unwrap_or_else(|e| e.into_inner())
                    .into_inner();
                if let Err(e) = out.flush() {
                    warn!(%port, error = %e, "pcap flush failed");
                }
            }
        }
        let errors = self.errors.load(Ordering::Relaxed);
        if errors > 0 {
            warn!(errors, "pcap records lost");
        }
    }
}
