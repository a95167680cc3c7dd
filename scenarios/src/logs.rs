//! The log lines a step produced (the PF agent's refusals, "Reload the VF driver", eswitch
//! notes): a `tracing` subscriber installed for the step's duration on the running thread. It
//! records INFO and above and passes every event on to the subscriber that was there before,
//! so `-v` output is not lost.

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Dispatch, Event, Level, Metadata, Subscriber};

/// Captured log lines (`LEVEL target: message key=value ...`), while the slot holds a list.
pub type LogLines = Arc<Mutex<Option<Vec<String>>>>;

struct Capture {
    lines: LogLines,
    previous: Dispatch,
    next_span: AtomicU64,
}

/// Collects an event's message and fields into one line.
struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

impl Subscriber for Capture {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= Level::INFO || self.previous.enabled(metadata)
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let meta = event.metadata();
        if *meta.level() <= Level::INFO {
            let mut line = Line(format!("{} {}: ", meta.level(), meta.target()));
            event.record(&mut line);
            if let Ok(mut lines) = self.lines.lock() {
                if let Some(lines) = lines.as_mut() {
                    lines.push(line.0);
                }
            }
        }
        if self.previous.enabled(meta) {
            self.previous.event(event);
        }
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// Runs `f` with log capture on this thread; returns its result and the lines logged.
pub fn capture<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    let lines: LogLines = Arc::new(Mutex::new(Some(Vec::new())));
    let previous = tracing::dispatcher::get_default(|d| d.clone());
    let capture = Capture {
        lines: lines.clone(),
        previous,
        next_span: AtomicU64::new(0),
    };
    let out = tracing::subscriber::with_default(capture, f);
    let lines = lines
        .lock()
        .map(|mut l| l.take().unwrap_or_default())
        .unwrap_or_default();
    (out, lines)
}

/// The lines other threads log (`serve`'s datapath in the guest mode: the PF agent answering a
/// guest's mailbox), collected while a step runs: threads started under [`LogTap::dispatch`]
/// log through it.
#[derive(Clone, Default)]
pub struct LogTap {
    lines: LogLines,
}

impl LogTap {
    /// A subscriber that collects into the tap while a step runs and passes every event on to
    /// the current default subscriber.
    pub fn dispatch(&self) -> Dispatch {
        Dispatch::new(Capture {
            lines: self.lines.clone(),
            previous: tracing::dispatcher::get_default(|d| d.clone()),
            next_span: AtomicU64::new(0),
        })
    }

    /// Starts collecting (a step begins).
    pub(crate) fn start(&self) {
        if let Ok(mut l) = self.lines.lock() {
            *l = Some(Vec::new());
        }
    }

    /// What was collected since [`LogTap::start`]; stops collecting.
    pub(crate) fn take(&self) -> Vec<String> {
        self.lines
            .lock()
            .map(|mut l| l.take().unwrap_or_default())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_and_above_are_captured_with_their_fields() {
        let ((), lines) = capture(|| {
            tracing::warn!(vf = 3, "refused");
            tracing::info!("reload");
            tracing::debug!("not kept");
        });
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("WARN "), "{lines:?}");
        assert!(lines[0].ends_with("refused vf=3"), "{lines:?}");
        assert!(lines[1].ends_with("reload"), "{lines:?}");
    }
}
