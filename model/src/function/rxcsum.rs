//! RX checksum status (the write-back's IPCS, L4CS and UDPCS bits), as the 82576 reports it
//! for the frames it receives: the device verifies the IPv4 header checksum and the TCP/UDP
//! checksum and tells the driver, so that igbvf can mark the skb CHECKSUM_UNNECESSARY
//! (`igbvf_rx_checksum_adv`).
//!
//! Only a checksum that was verified correct sets a bit. Anything else (not IP, fragments,
//! IPv6 extension headers, truncated or inconsistent lengths, a wrong checksum, UDP/IPv4
//! without a checksum) leaves the bits clear: the guest's stack then verifies in software,
//! which is always safe. Error bits (IPE/L4E) are never set.
//!
//! A frame whose TCP/UDP checksum this NIC's own TX offload has just computed from scratch
//! arrives with that fact ([`L4Checksum::Correct`]): the switch between the two changes only
//! the L2 tag, so the segment is not summed a second time (much as Linux does not verify
//! again, on the far side of a veth pair, a checksum its own stack left to offload). Every
//! other check still runs, and the bits reported are the ones the sum would have given.

use eswitch::wire::{
    checksum, tcp, udp, EtherTypes, EthernetFrame, IpNextHeaderProtocol, IpNextHeaderProtocols,
    Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, UdpPacket,
};

use crate::function::desc::rx_status;

/// What the datapath already knows of a frame's TCP/UDP checksum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum L4Checksum {
    /// Nothing: the receive side sums the segment to find out.
    #[default]
    Unverified,
    /// Computed from scratch by the TX offload over exactly the L3 packet the receiver gets
    /// (a plain packet, [`ChecksumSource::FromScratch`](crate::function::offload::ChecksumSource)),
    /// and the packet's bytes unchanged since: a sum would find it intact.
    Correct,
}

/// The status bits to add to the EOP write-back of `frame`.
pub fn status(frame: &[u8]) -> u32 {
    status_for(frame, L4Checksum::Unverified)
}

/// [`status`] for a frame whose L4 checksum may already be known to be correct.
pub fn status_for(frame: &[u8], l4: L4Checksum) -> u32 {
    // Up to two tags, 802.1Q or 802.1ad, in front of the ethertype.
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return 0;
    };
    match eth.ethertype() {
        EtherTypes::Ipv4 => ipv4(eth.payload(), l4),
        EtherTypes::Ipv6 => ipv6(eth.payload(), l4),
        _ => 0,
    }
}

fn ipv4(data: &[u8], known: L4Checksum) -> u32 {
    let ip = Ipv4Packet::new_unchecked(data);
    // Version, IHL, a total length within the frame, the header checksum.
    if Ipv4Repr::parse(&ip).is_err() {
        return 0;
    }
    let mut st = rx_status::IPCS;
    // Fragments: the L4 checksum covers the reassembled datagram.
    if ip.is_fragment() {
        return st;
    }
    let proto = ip.next_header();
    st |= l4_status(proto, ip.payload(), ip.pseudo_addrs_sum(), true, known);
    st
}

fn ipv6(data: &[u8], known: L4Checksum) -> u32 {
    let ip = Ipv6Packet::new_unchecked(data);
    // Version and a payload length within the frame. The L4 header must follow the fixed
    // header: with extension headers the next header is not TCP or UDP and nothing is reported.
    if Ipv6Repr::parse(&ip).is_err() {
        return 0;
    }
    l4_status(
        ip.next_header(),
        ip.payload(),
        ip.pseudo_addrs_sum(),
        false,
        known,
    )
}

/// The L4 bits for `l4`, the IP payload up to the IP length; `addrs` is the unfolded sum of the
/// IP addresses.
fn l4_status(
    proto: IpNextHeaderProtocol,
    l4: &[u8],
    addrs: u64,
    ipv4: bool,
    known: L4Checksum,
) -> u32 {
    // The pseudo-header (RFC 9293 §3.1, RFC 768, RFC 8200 §8.1) with the length the IP header
    // gives, and the segment with its checksum field: intact when they sum to 0xFFFF.
    let ok = || {
        if known == L4Checksum::Correct {
            return true;
        }
        let pseudo = addrs + u64::from(proto.0) + l4.len() as u64;
        checksum::fold(checksum::sum(l4, pseudo)) == 0xFFFF
    };
    match proto {
        IpNextHeaderProtocols::Tcp if l4.len() >= tcp::HEADER_LEN && ok() => rx_status::L4CS,
        IpNextHeaderProtocols::Udp if l4.len() >= udp::HEADER_LEN => {
            let udp = UdpPacket::new_unchecked(l4);
            if usize::from(udp.len()) != l4.len() || (udp.checksum() == 0 && ipv4) {
                // No checksum (IPv4), or a length the pseudo-header does not cover.
                return 0;
            }
            if ok() {
                rx_status::L4CS | rx_status::UDPCS
            } else {
                0
            }
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use eswitch::wire::{build_frame, ethernet, ipv4, MacAddr, UdpRepr, VlanTag, VlanTci};

    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    /// A valid IPv4/UDP frame with a 4-byte payload, checksums filled.
    fn udp4() -> Vec<u8> {
        let udp = UdpRepr {
            src_port: 12345,
            dst_port: 53,
            payload: &[1, 2, 3, 4],
        };
        let ip = Ipv4Repr {
            src_addr: SRC,
            dst_addr: DST,
            next_header: IpNextHeaderProtocols::Udp,
            payload_len: udp.buffer_len(),
            ttl: 64,
            ident: 1,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
            dscp: 0,
            ecn: 0,
        };
        let mut packet = vec![0u8; ip.buffer_len()];
        let mut view = Ipv4Packet::new_unchecked(&mut packet[..]);
        ip.emit(&mut view);
        let l4 = &mut UdpPacket::new_unchecked(view.payload_mut());
        udp.emit(l4, &SRC.into(), &DST.into());
        build_frame(
            MacAddr::ZERO,
            MacAddr::ZERO,
            None,
            EtherTypes::Ipv4,
            &packet,
        )
        .to_vec()
    }

    /// The UDP header of a [`udp4`] frame.
    fn udp_of(f: &mut [u8]) -> UdpPacket<&mut [u8]> {
        UdpPacket::new_unchecked(&mut f[ethernet::HEADER_LEN + ipv4::HEADER_LEN..])
    }

    #[test]
    fn valid_udp4_reports_ip_and_l4_checksums() {
        assert_eq!(
            status(&udp4()),
            rx_status::IPCS | rx_status::L4CS | rx_status::UDPCS
        );
    }

    #[test]
    fn a_flipped_payload_bit_clears_the_l4_bits_only() {
        let mut f = udp4();
        let last = f.len() - 1;
        f[last] ^= 1;
        assert_eq!(status(&f), rx_status::IPCS);
    }

    #[test]
    fn a_bad_ip_header_reports_nothing() {
        let mut f = udp4();
        Ipv4Packet::new_unchecked(&mut f[ethernet::HEADER_LEN..]).set_ttl(1);
        assert_eq!(status(&f), 0);
    }

    #[test]
    fn udp4_without_checksum_reports_no_l4() {
        let mut f = udp4();
        udp_of(&mut f).set_checksum(0);
        assert_eq!(status(&f), rx_status::IPCS);
    }

    #[test]
    fn vlan_tagged_frames_are_parsed_past_the_tag() {
        let f = udp4();
        let tagged = EthernetFrame::new_unchecked(&f[..]);
        let one = tagged.insert_tag(VlanTag::dot1q(VlanTci::new(10, 0)));
        assert_eq!(status(&one), status(&f));
        // 802.1ad outside 802.1Q.
        let two = EthernetFrame::new_unchecked(&one[..])
            .insert_tag(VlanTag::dot1ad(VlanTci::new(100, 0)));
        assert_eq!(status(&two), status(&f));
    }

    #[test]
    fn truncated_and_garbage_frames_report_nothing() {
        let f = udp4();
        for n in 0..f.len() {
            let _ = status(&f[..n]);
        }
        assert_eq!(status(&f[..30]), 0);
        assert_eq!(status(&[0xFF; 64]), 0);
    }
}
