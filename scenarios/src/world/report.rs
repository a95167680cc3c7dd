//! What the world reports of its card: the ports and endpoints, counters, statistics, armed
//! faults and the mailbox refusals.

use super::*;

impl World {
    /// The card's ports, each with its switch's ports.
    pub fn card(&self) -> Vec<CardPort> {
        self.nics
            .iter()
            .enumerate()
            .map(|(k, nic)| CardPort {
                port: PfRef(k as u8),
                ports: nic.with_pf(|pf| {
                    pf.switch()
                        .ports()
                        .map(|p| PortRef::new(k as u8, p))
                        .collect()
                }),
            })
            .collect()
    }

    /// Every endpoint and its port.
    pub fn endpoints_at(&self) -> Vec<EndpointAt> {
        self.endpoints
            .iter()
            .map(|e| EndpointAt {
                name: e.name.clone(),
                port: e.port,
            })
            .collect()
    }

    /// Each switch port's counters now, every port of the card.
    pub fn port_counters(&self) -> BTreeMap<PortRef, PortCounters> {
        let mut out = BTreeMap::new();
        for (k, nic) in self.nics.iter().enumerate() {
            nic.with_pf(|pf| {
                for (p, c) in pf.switch().all_counters() {
                    out.insert(PortRef::new(k as u8, p), c.clone());
                }
            });
        }
        out
    }

    /// Each VF function's counters now, every port of the card.
    pub fn vf_stats(&self) -> BTreeMap<PortRef, VfStats> {
        let mut out = BTreeMap::new();
        for (k, nic) in self.nics.iter().enumerate() {
            for v in 0..nic.num_vfs() {
                if let Some(h) = nic.vf(v) {
                    out.insert(PortRef::new(k as u8, PortId::Vf(v)), h.stats());
                }
            }
        }
        out
    }

    /// Each port's faults now: those carried out, by kind, and those armed, with what each has
    /// seen and hit. The one place the runner reads the NICs' faults.
    pub fn faults(&self) -> Vec<PortFaults> {
        self.nics
            .iter()
            .enumerate()
            .map(|(k, nic)| {
                let port = PfRef(k as u8);
                PortFaults {
                    port,
                    carried_out: nic
                        .counters()
                        .faults
                        .iter()
                        .map(|(kind, n)| (kind.to_string(), *n))
                        .collect(),
                    armed: nic
                        .faults()
                        .into_iter()
                        .map(|f| ArmedFault {
                            port,
                            fault: f.fault,
                            seen: f.seen,
                            fired: f.fired,
                        })
                        .collect(),
                }
            })
            .collect()
    }

    /// The PF agents' refusals so far, per VF and reason.
    pub fn refusals(&self) -> BTreeMap<PortRef, Vec<(RefusalReason, u64)>> {
        let mut out = BTreeMap::new();
        for (k, nic) in self.nics.iter().enumerate() {
            nic.with_pf(|pf| {
                for vf in 0..pf.num_vfs() {
                    let r = pf
                        .refusals(vf)
                        .map(|r| r.iter().collect())
                        .unwrap_or_default();
                    out.insert(PortRef::new(k as u8, PortId::Vf(vf)), r);
                }
            });
        }
        out
    }
}
