//! What can go wrong while setting a scenario up or carrying out a step (as opposed to a check
//! that fails, which is a result, not an error).

use eswitch::PortId;
use model::nic::{NicBuildError, SetError};
use model::testing::{DrvError, MemoryError};

/// A VF-side mailbox exchange that did not complete.
#[derive(Debug, thiserror::Error)]
pub enum MailboxError {
    #[error("{0} is not a VF endpoint")]
    NotAVf(String),
    #[error("igbvf: {0:?}")]
    Driver(DrvError),
    #[error("mailbox lock not granted")]
    LockNotGranted,
    #[error("PF still in reset state")]
    PfInReset,
    #[error("no reply from the PF (V2PMAILBOX {0:#x})")]
    NoReply(u32),
    #[error("reply: {0}")]
    Reply(#[from] mailbox::ParseError),
}

impl From<DrvError> for MailboxError {
    fn from(e: DrvError) -> Self {
        MailboxError::Driver(e)
    }
}

/// A scenario that could not be set up: no step ran.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("NIC: {0}")]
    Nic(#[from] NicBuildError),
    #[error("policy vf {vf} `{words}`: {source}")]
    Policy {
        vf: u16,
        words: String,
        source: SetError,
    },
    #[error("two endpoints on {0}")]
    DuplicatePort(PortId),
    #[error("endpoint {name}: the NIC has no port {port}")]
    NoSuchPort { name: String, port: PortId },
    #[error("endpoint {name} on {port} needs a `mac`")]
    NeedsMac { name: String, port: PortId },
    #[error("endpoint {name}: attach = \"driver\" needs a VF port, not {port}")]
    DriverNeedsVf { name: String, port: PortId },
    #[error("endpoint {name}: {source}")]
    Memory { name: String, source: MemoryError },
    #[error("endpoint {name}: bring-up: {source}")]
    BringUp { name: String, source: MailboxError },
}

/// A step that could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("no endpoint named `{0}`")]
    NoEndpoint(String),
    #[error("{request} needs `{key}`")]
    MissingKey {
        request: &'static str,
        key: &'static str,
    },
    #[error("{0} has no IP address")]
    NoIp(String),
    #[error("traffic needs duration_ms > 0")]
    ZeroDuration,
    #[error(transparent)]
    Mailbox(#[from] MailboxError),
}
