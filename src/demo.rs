//! `sriov-emu demo`: one NIC, in process, no QEMU. It walks through what the pure crates do
//! together: the PF's SR-IOV capability enabled the way Linux does it, every VF's igbvf reset
//! handshake over the real mailbox registers answered by the PF agent, and the eswitch
//! switching an ARP broadcast, refusing a spoofed source and isolating a port VLAN.

use std::error::Error;
use std::net::Ipv4Addr;

use bytes::Bytes;
use eswitch::{
    build_frame, DropReason, Eswitch, EswitchConfig, LinkState, MacAddr, PortId, VfPolicy,
    VlanProto,
};
use mailbox::regs::v2p;
use mailbox::{AgentConfig, MailboxMsg, Message, PfAgent, VfMailbox};
use pcie::regs::sriov;
use pnet_packet::arp::{ArpHardwareTypes, ArpOperations, MutableArpPacket};
use pnet_packet::ethernet::EtherTypes;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

const PF_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x01]);
const ADMIN_MAC_VF0: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x10]);

/// The PF side of the NIC: switch, PF agent and one mailbox per VF.
struct Nic {
    switch: Eswitch,
    agent: PfAgent,
    mailboxes: Vec<VfMailbox>,
    now_ns: u64,
}

impl Nic {
    /// What the VF model does after a V2PMAILBOX write or a VF reset: let the agent answer and
    /// hand its policy changes to the switch.
    fn service(&mut self, vf: u16) -> Result<()> {
        let i = usize::from(vf);
        let mut policy = self.policy(vf);
        let report = self
            .agent
            .service(i, &mut self.mailboxes[i], &policy, self.now_ns);
        for change in report.policy_changes() {
            change.apply(&mut policy);
        }
        self.switch.set_policy(vf, policy)?;
        for outcome in &report.outcomes {
            if let Some(refusal) = &outcome.refusal {
                println!("    PF agent: vf {vf} refused: {}", refusal.reason.name());
            }
        }
        Ok(())
    }

    fn policy(&self, vf: u16) -> VfPolicy {
        self.switch.policy(vf).cloned().unwrap_or_default()
    }

    /// igbvf's `e1000_write_posted_mbx` then `e1000_read_posted_mbx`: lock, write the words,
    /// post REQ, wait for PFACK, wait for PFSTS, lock, read the reply, ACK it.
    fn vf_request(&mut self, vf: u16, words: &[u32]) -> Result<Message> {
        let i = usize::from(vf);
        self.mailboxes[i].write_v2p(v2p::VFU);
        if self.mailboxes[i].read_v2p() & v2p::VFU == 0 {
            return Err(format!("vf {vf}: mailbox lock not granted").into());
        }
        for (w, &value) in words.iter().enumerate() {
            self.mailboxes[i].write_vmbmem(w, value);
        }
        self.mailboxes[i].write_v2p(v2p::REQ);
        self.service(vf)?;
        let status = self.mailboxes[i].read_v2p();
        if status & v2p::PFACK == 0 || status & v2p::PFSTS == 0 {
            return Err(format!("vf {vf}: no reply from the PF (V2P {status:#x})").into());
        }
        self.mailboxes[i].write_v2p(v2p::VFU);
        let reply: Vec<u32> = (0..3).map(|w| self.mailboxes[i].read_vmbmem(w)).collect();
        self.mailboxes[i].write_v2p(v2p::ACK);
        self.service(vf)?;
        Ok(Message::parse(&reply)?)
    }

    /// igbvf's `e1000_reset_hw_vf`: VTCTRL.RST, wait for the PF to be out of reset, VF_RESET.
    fn vf_reset(&mut self, vf: u16) -> Result<Message> {
        let i = usize::from(vf);
        self.mailboxes[i].vf_reset();
        self.service(vf)?;
        let mut tries = 0;
        while self.mailboxes[i].read_v2p() & (v2p::RSTI | v2p::RSTD) != 0 {
            tries += 1;
            if tries > 200 {
                return Err("PF still in reset state. Is the PF interface up?".into());
            }
        }
        self.vf_request(vf, &[u32::from(mailbox::regs::msg::ID_VF_RESET)])
    }

    fn send(&mut self, from: PortId, frame: Bytes) -> eswitch::Deliveries {
        self.now_ns += 1_000;
        self.switch.process(from, frame)
    }
}

fn arp_request(src: MacAddr, sender: Ipv4Addr, target: Ipv4Addr) -> Bytes {
    let mut payload = [0u8; 28];
    let mut arp = MutableArpPacket::new(&mut payload).expect("28 bytes hold an ARP packet");
    arp.set_hardware_type(ArpHardwareTypes::Ethernet);
    arp.set_protocol_type(EtherTypes::Ipv4);
    arp.set_hw_addr_len(6);
    arp.set_proto_addr_len(4);
    arp.set_operation(ArpOperations::Request);
    arp.set_sender_hw_addr(src.0.into());
    arp.set_sender_proto_addr(sender);
    arp.set_target_hw_addr([0; 6].into());
    arp.set_target_proto_addr(target);
    build_frame(MacAddr::BROADCAST, src, None, EtherTypes::Arp, &payload)
}

fn describe(deliveries: &eswitch::Deliveries) -> String {
    let mut parts: Vec<String> = deliveries
        .iter()
        .map(|d| match d.stripped_tci {
            Some(tci) => format!(
                "{} (tag vid {} pcp {} stripped)",
                d.port,
                tci.vid(),
                tci.pcp()
            ),
            None => d.port.to_string(),
        })
        .collect();
    parts.extend(
        deliveries
            .drops
            .iter()
            .map(|d| format!("dropped at {}: {}", d.port, d.reason.as_str())),
    );
    if parts.is_empty() {
        "nowhere".into()
    } else {
        parts.join(", ")
    }
}

pub fn run(num_vfs: u16) -> Result<()> {
    if !(1..=7).contains(&num_vfs) {
        return Err("the 82576 personality enables 1 to 7 VFs".into());
    }

    println!("== PCI: the 82576 PF enables {num_vfs} VFs (as Linux's sriov_enable does)");
    let mut pf = model::config::pf_config_space()?;
    let cap = pf.sriov().ok_or("the PF layout has no SR-IOV capability")?;
    println!(
        "  PF 8086:{:04x}, SR-IOV cap at {:#x}: TotalVFs {}, First VF Offset {:#x}, Stride {}, VF device {:04x}",
        pf.read_u16(pcie::regs::header::DEVICE_ID),
        cap.offset,
        cap.total_vfs,
        cap.first_vf_offset,
        cap.vf_stride,
        cap.vf_device_id
    );
    let mut events = pf.write(cap.offset + sriov::NUM_VFS, &num_vfs.to_le_bytes());
    let ctrl = sriov::CONTROL_VF_ENABLE | sriov::CONTROL_VF_MSE;
    events.extend(pf.write(cap.offset + sriov::CONTROL, &ctrl.to_le_bytes()));
    println!("  config writes NumVFs={num_vfs}, VF Enable|VF MSE -> events {events:?}");
    let vf_space = model::config::vf_config_space(&pf)?;
    let pf_rid: u16 = 0x0100; // bus 1, device 0, function 0
    for vf in 0..num_vfs {
        let rid = pf_rid + cap.first_vf_offset + vf * cap.vf_stride;
        println!(
            "  vf {vf}: {:02x}:{:02x}.{} 8086:{:04x}, MSI-X {} vectors, interrupt pin {}",
            rid >> 8,
            (rid >> 3) & 0x1f,
            rid & 7,
            vf_space.read_u16(pcie::regs::header::DEVICE_ID),
            (vf_space.read_u16(0x72) & 0x7ff) + 1,
            vf_space.read_u8(pcie::regs::header::INTERRUPT_PIN)
        );
    }

    let mut nic = Nic {
        switch: Eswitch::new(EswitchConfig {
            num_vfs,
            pf_mac: Some(PF_MAC),
            ..EswitchConfig::default()
        })?,
        agent: PfAgent::new(AgentConfig::new(usize::from(num_vfs)))?,
        mailboxes: (0..num_vfs).map(|_| VfMailbox::new()).collect(),
        now_ns: 0,
    };

    println!("\n== ip link set pf0 vf 0 mac {ADMIN_MAC_VF0}");
    nic.switch.set_vf_mac(0, ADMIN_MAC_VF0)?;
    nic.agent.sync_policy(0, &nic.policy(0));

    println!("\n== Each VF's igbvf resets and asks the PF agent for its MAC over the mailbox");
    for vf in 0..num_vfs {
        let reply = nic.vf_reset(vf)?;
        let MailboxMsg::VfResetReply { mac } = reply.msg else {
            return Err(format!("vf {vf}: unexpected reset reply {reply:?}").into());
        };
        if reply.flags.ack {
            println!("  vf {vf}: VF_RESET -> ACK, MAC {mac}");
        } else {
            // igbvf: "MAC address not assigned by administrator", then a random MAC of its own.
            let own = MacAddr([0x02, 0xee, 0, 0, 0, vf as u8]);
            let set = Message::request(MailboxMsg::SetMacAddr {
                op: mailbox::MacFilterOp::Set,
                mac: own,
            });
            let answer = nic.vf_request(vf, &set.to_words())?;
            println!(
                "  vf {vf}: VF_RESET -> NACK, MAC {mac} (not assigned by administrator); \
                 SET_MAC_ADDR {own} -> {}",
                if answer.flags.ack { "ACK" } else { "NACK" }
            );
        }
    }

    println!(
        "\n== vf 0 (admin MAC, not trusted) tries to change its MAC: the seed's config-path flow"
    );
    let wanted = MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x99]);
    let set = Message::request(MailboxMsg::SetMacAddr {
        op: mailbox::MacFilterOp::Set,
        mac: wanted,
    });
    let answer = nic.vf_request(0, &set.to_words())?;
    println!(
        "  SET_MAC_ADDR {wanted} -> {}; the switch still has {}",
        if answer.flags.nack { "NACK" } else { "ACK" },
        nic.policy(0).mac.unwrap_or(MacAddr::ZERO)
    );
    let spoofed = arp_request(
        wanted,
        Ipv4Addr::new(10, 0, 0, 10),
        Ipv4Addr::new(10, 0, 0, 1),
    );
    let out = nic.send(PortId::Vf(0), spoofed);
    println!("  a frame from {wanted} goes {}", describe(&out));

    println!("\n== vf 1 ARPs for 10.0.0.99, which nobody owns (the seed experiment)");
    let vf1_mac = nic.policy(1).mac.ok_or("vf 1 has no MAC")?;
    let who_has = arp_request(
        vf1_mac,
        Ipv4Addr::new(10, 0, 0, 11),
        Ipv4Addr::new(10, 0, 0, 99),
    );
    let out = nic.send(PortId::Vf(1), who_has);
    println!("  broadcast delivered to {}", describe(&out));

    if num_vfs >= 3 {
        println!("\n== ip link set pf0 vf 2 vlan 10 qos 3 (and vf 1 joins vlan 10 too)");
        nic.switch.set_vf_vlan(2, 10, 3, VlanProto::Dot1Q)?;
        nic.switch.set_vf_vlan(1, 10, 3, VlanProto::Dot1Q)?;
        let vf2_mac = nic.policy(2).mac.ok_or("vf 2 has no MAC")?;
        let who_has = arp_request(
            vf2_mac,
            Ipv4Addr::new(10, 0, 0, 12),
            Ipv4Addr::new(10, 0, 0, 99),
        );
        let out = nic.send(PortId::Vf(2), who_has);
        println!("  vf 2's broadcast is delivered to {}", describe(&out));
        if let Some(up) = out.to(PortId::Uplink(0)) {
            println!("  on the uplink it carries tag {:02x?}", &up.frame[12..16]);
        }
    }

    println!("\n== ip link show pf0 (VF lines), with the switch's counters");
    println!("  pf  link/ether {PF_MAC}");
    for vf in 0..num_vfs {
        let p = nic.policy(vf);
        let vlan = p
            .port_vlan
            .map(|v| format!(", vlan {}, qos {}", v.vid, v.qos))
            .unwrap_or_default();
        println!(
            "  vf {vf}     link/ether {}{vlan}, spoof checking {}, link-state {}, trust {}",
            p.mac.unwrap_or(MacAddr::ZERO),
            if p.spoofchk { "on" } else { "off" },
            match p.link_state {
                LinkState::Auto => "auto",
                LinkState::Enable => "enable",
                LinkState::Disable => "disable",
            },
            if p.trust { "on" } else { "off" }
        );
    }
    println!(
        "\n  {:<9} {:>7} {:>7} {:>9} {:>9} {:>10} {:>11}",
        "port", "rx_pkts", "tx_pkts", "rx_bcast", "spoof_mac", "vlan_filt", "mbx_refused"
    );
    for (port, c) in nic.switch.all_counters() {
        let refused = match port {
            PortId::Vf(vf) => nic.agent.refusals(usize::from(vf)).total().to_string(),
            _ => "-".into(),
        };
        println!(
            "  {:<9} {:>7} {:>7} {:>9} {:>9} {:>10} {:>11}",
            port.to_string(),
            c.rx_packets,
            c.tx_packets,
            c.rx_broadcast,
            c.drops.get(DropReason::SpoofMac),
            c.drops.get(DropReason::VlanFilter),
            refused
        );
    }
    Ok(())
}
