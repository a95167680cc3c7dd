//! What can go wrong while setting a scenario up or carrying out a step (as opposed to a check
//! that fails, which is a result, not an error).

use model::nic::{NicBuildError, SetError};
use model::testing::{DrvError, MemoryError};

use crate::ports::{Cable, PfRef, PortRef};

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

/// A cable that cannot be plugged in or pulled out.
#[derive(Debug, thiserror::Error)]
pub enum CableError {
    #[error("the card has no port {0}")]
    NoSuchPort(PortRef),
    #[error("a cable is plugged into {0} already")]
    InUse(PortRef),
    #[error("endpoint {name} sits on {port}")]
    Endpoint { name: String, port: PortRef },
    #[error("no cable {0} is plugged in")]
    NotPlugged(Cable),
}

/// A scenario that could not be set up: no step ran.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("NIC: {0}")]
    Nic(#[from] NicBuildError),
    /// In process a port-attached VF endpoint scripts igb's mailbox: an 82599's VFs take a
    /// driver (the software ixgbevf in process, the real one in a guest).
    #[error(
        "endpoint {name}: a port-attached VF scripts igb's mailbox, which the {card}'s VFs do not \
         speak: attach a driver (`attach = \"driver\"`: the software ixgbevf in process, the \
         real one with --guests) or a guest (`attach = \"guest\"`)"
    )]
    InProcessCard { name: String, card: model::Card },
    #[error("{}", nic_count(*.want, *.got))]
    NicCount { want: Option<u8>, got: usize },
    #[error("policy {port} vf {vf}: the card has no port {port}")]
    NoSuchPf { port: PfRef, vf: u16 },
    #[error("policy {port} vf {vf} `{words}`: {source}")]
    Policy {
        port: PfRef,
        vf: u16,
        words: String,
        source: SetError,
    },
    #[error("cable {cable}: {source}")]
    Cable { cable: Cable, source: CableError },
    #[error("two endpoints on {0}")]
    DuplicatePort(PortRef),
    #[error("endpoint {name}: the card has no port {port}")]
    NoSuchPort { name: String, port: PortRef },
    #[error("endpoint {name}: a cable is plugged into {port}")]
    Cabled { name: String, port: PortRef },
    #[error("endpoint {name} on {port} needs a `mac`")]
    NeedsMac { name: String, port: PortRef },
    #[error("endpoint {name}: attach = \"driver\" or \"guest\" needs a VF port, not {port}")]
    DriverNeedsVf { name: String, port: PortRef },
    #[error("endpoint {name}: {source}")]
    Memory { name: String, source: MemoryError },
    #[error("endpoint {name}: bring-up: {source}")]
    BringUp { name: String, source: MailboxError },
    #[error(
        "endpoint {name} is a QEMU guest (attach = \"guest\"): it runs only in the guest mode \
         of `sriov-emu scenario run`, with the artifacts of `scripts/fetch-e2e.py`"
    )]
    GuestModeNeeded { name: String },
    #[error("{0}")]
    Guest(#[from] crate::guests::GuestError),
}

fn nic_count(want: Option<u8>, got: usize) -> String {
    match want {
        Some(n) => {
            format!("the scenario's card has {n} port(s) (`[nic] ports`), {got} NIC(s) given")
        }
        None => format!("a card has 1 to 255 ports, {got} NIC(s) given"),
    }
}

/// A step that could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("no endpoint named `{0}`")]
    NoEndpoint(String),
    /// A guest that did not answer, whose QEMU is gone, or whose command failed to run.
    #[error("{0}")]
    Guest(String),
    #[error("{request} needs `{key}`")]
    MissingKey {
        request: &'static str,
        key: &'static str,
    },
    #[error("{0} has no IP address")]
    NoIp(String),
    #[error("traffic needs duration_ms > 0")]
    ZeroDuration,
    #[error("the card has no port {0}")]
    NoSuchPf(PfRef),
    #[error("fault `{words}`: {message}")]
    Fault { words: String, message: String },
    #[error("cable: {0}")]
    Cable(#[from] CableError),
    #[error(transparent)]
    Mailbox(#[from] MailboxError),
    #[error("{0} is not a multicast address")]
    NotMulticast(eswitch::MacAddr),
    #[error(
        "{0}: `join` and `leave` need a driver-attached VF endpoint (its igbvf keeps the list)"
    )]
    NoDriver(String),
    #[error("{name}: reattach: {why}")]
    Reattach { name: String, why: String },
}
