//! What a step's action produced, for its checks and its report.

use std::fmt;

use mailbox::Message;

use model::nic::SetError;

/// What a step's action produced, for the checks.
#[derive(Default)]
pub(crate) struct Outcome {
    pub(crate) happened: Vec<String>,
    pub(crate) reply: Option<Message>,
    pub(crate) answered: Option<bool>,
    pub(crate) set_result: Option<Result<(), SetError>>,
    pub(crate) rate_mbps: Option<f64>,
    /// The step was not carried out, and why (guest mode: what only the in-process world does).
    pub(crate) skipped: Option<String>,
    /// `shell`: the command's exit status and output.
    pub(crate) exit: Option<i32>,
    pub(crate) output: Option<String>,
    /// What each guest's kernel logged during the step (guest mode).
    pub(crate) guest_logs: std::collections::BTreeMap<String, String>,
    /// What each guest `expect.guest_captured` names received during the step (its capture),
    /// or why there is no capture.
    pub(crate) captures: std::collections::BTreeMap<String, Result<crate::received::Tally, String>>,
    /// The views of the endpoints `expect.endpoint` names, after the step.
    pub(crate) views: std::collections::BTreeMap<String, crate::netview::NetView>,
}

pub(crate) fn list<T: fmt::Display>(items: impl Iterator<Item = T>) -> String {
    let v: Vec<String> = items.map(|i| i.to_string()).collect();
    if v.is_empty() {
        "nowhere".into()
    } else {
        v.join(", ")
    }
}

pub(crate) fn verdict(m: &Message) -> &'static str {
    match (m.flags.ack, m.flags.nack) {
        (true, _) => "ACK",
        (_, true) => "NACK",
        _ => "no verdict",
    }
}
