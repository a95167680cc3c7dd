//! Scenario files and their runner: reproduce SR-IOV eswitch and mailbox behaviour without
//! hardware, in process, in seconds.
//!
//! A scenario (TOML) declares the card (its ports, each a NIC with VFs and uplinks, how VFs get
//! MACs), the administrator's initial VF settings (the `ip link` / `sriov-emu ctl` words), cables
//! between uplinks, endpoints (a small host stack with ARP, ICMP echo and a UDP generator, on a
//! PF or uplink port, or on a VF: through the VF model's registers and rings driven by a
//! software igbvf, a software ixgbevf on an 82599, or as a QEMU guest on it), and steps, each
//! with expectations. Port 0's switch ports are `pf`, `vfN`, `uplinkN`;
//! another port's are `pfK`, `pfK.vfN`, `pfK.uplinkN` ([`PortRef`]).
//! Time is simulated by default ([`TimeMode::Simulated`]): `wait` and shaping jump the clock, so
//! runs are deterministic.
//!
//! ```toml
//! description = "An ARP broadcast from vf1 reaches the PF, every other VF and the uplink."
//! reproduces = "The ConnectX-4 Lx experiment: every VF's rx counter rises, configured or not."
//!
//! [nic]
//! vfs = 3
//!
//! [[policy]]
//! vf = 1
//! set = "mac 02:00:00:00:00:11"
//!
//! [[endpoint]]
//! name = "vf1"
//! port = "vf1"        # attach = "port" (default), "driver" or "guest"
//! ip = "10.0.0.11"
//!
//! [[step]]
//! do = "arping"
//! from = "vf1"
//! target = "10.0.0.99"
//! expect.delivered = ["pf", "uplink0", "vf0", "vf2"]
//! expect.counters = [{ port = "vf2", name = "rx_broadcast", delta = 1 }]
//! ```
//!
//! Steps (`do`): `ping`, `arping`, `send` (crafted frames), `set` (admin words), `mailbox`
//! (VF-side requests: `set_mac`, `add_mac_filter`, `multicast`, `vlan`, `promisc`, `lpe`, and
//! an 82599 VF's `xcast`, `reta`, `macvlan`), `reload` (the VF driver's reset handshake again),
//! `join` / `leave` (a multicast group on the endpoint's interface), `reattach` (the VF's client
//! gone and a fresh driver on the VF), `link`, `cable` (plug a cable between two
//! uplinks in or pull it out), `fault` (a fault injected on a port of the card, in
//! `sriov-emu ctl fault` words), `wait`, `traffic` (UDP; or TCP through iperf3 between two QEMU
//! guests, [`iperf`]), `shell` (a command in a QEMU guest, in the
//! guest mode: [`guests`], [`runner::run_with_guests`]), `check`.
//! Expectations ([`format::Expect`]): `delivered`, `not_delivered`, `dropped` (port and
//! reason), `no_drops`, `counters` (value or delta), `captured` (tag, VID, PCP, addresses),
//! `reply` (ACK/NACK), `refused` (the PF agent's refusal reason), `log_contains` (the step's
//! log lines, which the report also lists), `answered`, `ok` /
//! `error_contains` (admin commands), `rate_mbps`, `policy` (the switch's view of a VF),
//! `endpoint` (the guest's view: its MAC, neighbours, link), `guest_captured` (what the
//! endpoint's own interface received: a capture inside a QEMU guest, [`received`]), and in the
//! guest mode `exit` and `output_contains` (a `shell` step's command) and
//! `guest_log_contains` (a guest's kernel log).
//!
//! ```no_run
//! let scenario = scenarios::load(std::path::Path::new("scenarios/library/arp-broadcast.toml")).unwrap();
//! let report = scenarios::run(&scenario, &scenarios::RunOptions::default()).report;
//! print!("{}", report.render());
//! assert!(report.pass);
//! ```
//!
//! [`html::render`] draws reports as one self-contained HTML page (`scenario run --html`): per
//! step the card with the step's deliveries and drops, its checks, counters and log lines.

pub mod error;
pub mod expect;
pub mod format;
pub mod guest_send;
pub mod guests;
pub mod html;
pub mod iperf;
pub mod junit;
pub mod load;
pub mod logs;
mod netview;
mod outcome;
pub mod ports;
pub mod qemu;
pub mod received;
pub mod report;
pub mod runner;
pub mod stack;
pub mod world;

pub use error::{MailboxError, SetupError, StepError};
pub use load::{collect, load, parse, LoadError, Scenario, MAX_STEP_MS};
pub use ports::{PfRef, PortRef, UplinkRef};
pub use report::{
    ArmedFault, CardPort, Check, CounterChange, EndpointAt, FramePath, PortFaults, ScenarioReport,
    StepReport,
};
pub use runner::{run, run_on, Run, RunOptions};
pub use world::TimeMode;
