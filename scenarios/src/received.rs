//! Frames an interface received, tallied by header: what `expect.guest_captured` (and
//! `expect.captured`) compare with. A guest's capture (`sriov-emu-guest-send capture`, one
//! `frame` line per kind of frame, [`Tally::lines`]) and the frames the observer captured at an
//! in-process endpoint's port come to the same [`Tally`], so one expectation reads both worlds.

use std::fmt;

use eswitch::wire::{EthernetFrame, EthernetRepr};
use eswitch::{MacAddr, VlanTci};

/// Kinds of frame a capture lists; the rest are only counted.
pub const MAX_KINDS: usize = 64;

/// A VLAN tag a received frame carried: in the frame itself, or stripped by the NIC and handed
/// over beside it (the RX descriptor's VLAN field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tag {
    pub vid: u16,
    pub pcp: u8,
    /// Stripped by the NIC (`true`) or in the frame (`false`); `None` where that is not known:
    /// a guest's kernel takes a tag out of the frame before a packet socket sees it, as igbvf
    /// does with the one the NIC stripped, and hands both over alike.
    pub stripped: Option<bool>,
}

/// What a frame's header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameKind {
    pub src: MacAddr,
    pub dst: MacAddr,
    /// The payload's protocol, behind any tag.
    pub ethertype: u16,
    pub tag: Option<Tag>,
}

impl FrameKind {
    /// The header of `frame`; `stripped` is a tag the NIC took out of it. `None` for bytes too
    /// short to be a frame.
    pub fn of(frame: &[u8], stripped: Option<VlanTci>) -> Option<FrameKind> {
        let h = EthernetRepr::parse(&EthernetFrame::new_unchecked(frame)).ok()?;
        let tag = match (h.dot1q_tci(), stripped) {
            (Some(t), _) => Some((t, false)),
            (None, Some(t)) => Some((t, true)),
            (None, None) => None,
        };
        Some(FrameKind {
            src: h.src,
            dst: h.dst,
            ethertype: h.ethertype.0,
            tag: tag.map(|(t, stripped)| Tag {
                vid: t.vid(),
                pcp: t.pcp(),
                stripped: Some(stripped),
            }),
        })
    }

    /// One `frame` line of a capture's output, for `n` frames of this kind.
    fn line(&self, n: u64) -> String {
        let mut s = format!(
            "frame n={n} src={} dst={} ethertype={:#06x}",
            self.src, self.dst, self.ethertype
        );
        if let Some(t) = self.tag {
            s.push_str(&format!(" vlan={} pcp={}", t.vid, t.pcp));
            match t.stripped {
                Some(true) => s.push_str(" tag=stripped"),
                Some(false) => s.push_str(" tag=frame"),
                None => {}
            }
        }
        s
    }

    /// Reads a `frame` line: its count and kind, `None` for a line that is not one.
    fn parse_line(line: &str) -> Option<(u64, FrameKind)> {
        let mut words = line.split_whitespace();
        if words.next()? != "frame" {
            return None;
        }
        let (mut n, mut src, mut dst, mut ethertype) = (None, None, None, None);
        let (mut vid, mut pcp, mut how) = (None, None, None);
        for w in words {
            let (k, v) = w.split_once('=')?;
            match k {
                "n" => n = Some(v.parse().ok()?),
                "src" => src = Some(v.parse().ok()?),
                "dst" => dst = Some(v.parse().ok()?),
                "ethertype" => {
                    let hex = v.strip_prefix("0x")?;
                    ethertype = Some(u16::from_str_radix(hex, 16).ok()?);
                }
                "vlan" => vid = Some(v.parse::<u16>().ok().filter(|&v| v < 4096)?),
                "pcp" => pcp = Some(v.parse::<u8>().ok().filter(|&p| p < 8)?),
                "tag" => how = Some(v == "stripped"),
                _ => {}
            }
        }
        let tag = match (vid, pcp, how) {
            (Some(vid), Some(pcp), stripped) => Some(Tag { vid, pcp, stripped }),
            (None, None, None) => None,
            _ => return None,
        };
        Some((
            n?,
            FrameKind {
                src: src?,
                dst: dst?,
                ethertype: ethertype?,
                tag,
            },
        ))
    }
}

/// `arp`, `ipv4`, `ipv6`, `lldp`, else the number in hex.
pub fn ethertype_name(ethertype: u16) -> String {
    match ethertype {
        0x0806 => "arp".into(),
        0x0800 => "ipv4".into(),
        0x86dd => "ipv6".into(),
        0x88cc => "lldp".into(),
        other => format!("{other:#06x}"),
    }
}

impl fmt::Display for FrameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} → {} {}",
            self.src,
            self.dst,
            ethertype_name(self.ethertype)
        )?;
        match self.tag {
            Some(t) => {
                let how = match t.stripped {
                    Some(true) => "stripped",
                    Some(false) => "tag",
                    None => "vlan",
                };
                write!(f, " {how} vid {} pcp {}", t.vid, t.pcp)
            }
            None => write!(f, " untagged"),
        }
    }
}

/// What an expectation asks of a received frame; a field left `None` takes any.
#[derive(Clone, Copy, Debug, Default)]
pub struct Filter {
    /// A VLAN tag came with the frame, in it or stripped.
    pub vlan: Option<bool>,
    /// The tag is in the frame itself.
    pub tagged: Option<bool>,
    /// The NIC stripped the tag and handed it over.
    pub stripped: Option<bool>,
    /// VID / PCP of the tag, in the frame or stripped.
    pub vid: Option<u16>,
    pub pcp: Option<u8>,
    pub src: Option<MacAddr>,
    pub dst: Option<MacAddr>,
    pub ethertype: Option<u16>,
}

impl Filter {
    pub fn matches(&self, k: &FrameKind) -> bool {
        let how = k.tag.and_then(|t| t.stripped);
        self.vlan.is_none_or(|v| v == k.tag.is_some())
            && self.tagged.is_none_or(|t| t == (how == Some(false)))
            && self.stripped.is_none_or(|s| s == (how == Some(true)))
            && self.vid.is_none_or(|v| k.tag.is_some_and(|t| t.vid == v))
            && self.pcp.is_none_or(|p| k.tag.is_some_and(|t| t.pcp == p))
            && self.src.is_none_or(|s| s == k.src)
            && self.dst.is_none_or(|d| d == k.dst)
            && self.ethertype.is_none_or(|e| e == k.ethertype)
    }

    /// The fields given, as `key=value` words for a check's name.
    pub fn conds(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(v) = self.vlan {
            out.push(format!("tagged={v}"));
        }
        if let Some(t) = self.tagged {
            out.push(format!("tagged={t}"));
        }
        if let Some(s) = self.stripped {
            out.push(format!("stripped={s}"));
        }
        if let Some(v) = self.vid {
            out.push(format!("vid={v}"));
        }
        if let Some(p) = self.pcp {
            out.push(format!("pcp={p}"));
        }
        if let Some(s) = self.src {
            out.push(format!("src={s}"));
        }
        if let Some(d) = self.dst {
            out.push(format!("dst={d}"));
        }
        if let Some(e) = self.ethertype {
            out.push(format!("ethertype={}", ethertype_name(e)));
        }
        out
    }
}

/// Frames received, counted per kind in the order each kind first came.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub kinds: Vec<(FrameKind, u64)>,
    /// Every frame, listed kinds or not.
    pub frames: u64,
}

impl Tally {
    pub fn add(&mut self, kind: FrameKind) {
        self.add_n(kind, 1);
    }

    fn add_n(&mut self, kind: FrameKind, n: u64) {
        self.frames += n;
        if let Some((_, c)) = self.kinds.iter_mut().find(|(k, _)| *k == kind) {
            *c += n;
        } else if self.kinds.len() < MAX_KINDS {
            self.kinds.push((kind, n));
        }
    }

    /// Frames of the listed kinds that `keep` accepts.
    pub fn count(&self, keep: impl Fn(&FrameKind) -> bool) -> u64 {
        self.kinds
            .iter()
            .filter(|(k, _)| keep(k))
            .map(|(_, n)| n)
            .sum()
    }

    /// A capture's output: a `frame` line per kind, then `result frames=N kinds=K`.
    pub fn lines(&self) -> String {
        let mut out: Vec<String> = self.kinds.iter().map(|(k, n)| k.line(*n)).collect();
        out.push(format!(
            "result frames={} kinds={}",
            self.frames,
            self.kinds.len()
        ));
        out.join("\n")
    }

    /// Reads a capture's output line by line: `frame` lines it cannot read are skipped, never
    /// a panic; `frames` is the result line's count when there is one (frames of kinds beyond
    /// [`MAX_KINDS`] are counted only there).
    pub fn parse(output: &str) -> Tally {
        let mut t = Tally::default();
        for (n, kind) in output.lines().filter_map(FrameKind::parse_line) {
            t.add_n(kind, n);
        }
        let total = parse_results(output)
            .get("frames")
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(total) = total {
            t.frames = t.frames.max(total);
        }
        t
    }

    /// The first few kinds, for a report: `02:… → ff:… arp untagged ×1; ...`.
    pub fn summary(&self, most: usize) -> String {
        let mut parts: Vec<String> = self
            .kinds
            .iter()
            .take(most)
            .map(|(k, n)| format!("{k} ×{n}"))
            .collect();
        let listed: u64 = self.kinds.iter().take(most).map(|(_, n)| n).sum();
        if self.frames > listed {
            parts.push(format!("{} more", self.frames - listed));
        }
        parts.join("; ")
    }
}

/// The `key=value` words of the helper's result line.
pub fn parse_results(output: &str) -> std::collections::BTreeMap<String, String> {
    output
        .lines()
        .filter(|l| l.starts_with("result "))
        .flat_map(|l| l.split_whitespace().skip(1))
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(last: u8) -> MacAddr {
        MacAddr([2, 0, 0, 0, 0, last])
    }

    #[test]
    fn kinds_round_trip_through_the_capture_lines() {
        let arp = eswitch::build_frame(
            MacAddr::BROADCAST,
            mac(0x11),
            None,
            pnet_packet::ethernet::EtherType(0x0806),
            &[0; 46],
        );
        let tagged = eswitch::build_frame(
            mac(0x12),
            mac(0x11),
            Some(VlanTci::new(10, 3)),
            pnet_packet::ethernet::EtherType(0x0800),
            &[0; 42],
        );
        let mut t = Tally::default();
        let a = FrameKind::of(&arp, None).unwrap();
        t.add(a);
        t.add(a);
        t.add(FrameKind::of(&tagged, None).unwrap());
        t.add(FrameKind::of(&arp, Some(VlanTci::new(20, 0))).unwrap());
        assert_eq!(t.frames, 4);
        assert_eq!(t.kinds.len(), 3);
        assert_eq!(t.count(|k| k.dst == MacAddr::BROADCAST), 3);
        assert_eq!(
            t.kinds[1].0.tag.map(|t| (t.vid, t.pcp, t.stripped)),
            Some((10, 3, Some(false)))
        );
        assert_eq!(t.kinds[2].0.tag.and_then(|t| t.stripped), Some(true));
        // A guest's view: a tag, whether the NIC stripped it unknown.
        let unknown = FrameKind {
            tag: Some(Tag {
                vid: 5,
                pcp: 0,
                stripped: None,
            }),
            ..a
        };
        t.add(unknown);
        assert!(t.lines().contains("vlan=5 pcp=0\n"), "{}", t.lines());
        assert_eq!(t.kinds[1].0.ethertype, 0x0800);
        assert_eq!(Tally::parse(&t.lines()), t);
        assert!(
            t.summary(1).contains("arp untagged ×2; 3 more"),
            "{}",
            t.summary(1)
        );
        assert_eq!(FrameKind::of(&[0; 5], None), None);
    }

    #[test]
    fn bad_capture_lines_are_skipped() {
        let out = "listening dev=eth0\n\
                   frame n=2 src=02:00:00:00:00:11 dst=ff:ff:ff:ff:ff:ff ethertype=0x0806\n\
                   frame n=x src=02:00:00:00:00:11 dst=ff:ff:ff:ff:ff:ff ethertype=0x0806\n\
                   frame n=1 src=zz dst=ff:ff:ff:ff:ff:ff ethertype=0x0806\n\
                   frame n=1 src=02:00:00:00:00:11 dst=ff:ff:ff:ff:ff:ff ethertype=0806\n\
                   frame n=1 src=02:00:00:00:00:11 dst=ff:ff:ff:ff:ff:ff ethertype=0x0806 vlan=9\n\
                   frame n=1 src=02:00:00:00:00:11 dst=ff:ff:ff:ff:ff:ff ethertype=0x0806 vlan=5000 pcp=0 tag=frame\n\
                   frame n=1 src=02:00:00:00:00:11\n\
                   frame garbage\n\
                   frame\n\
                   \u{0}\u{ff}frame n=1\n\
                   result frames=9 kinds=3\n";
        let t = Tally::parse(out);
        assert_eq!(t.kinds.len(), 1);
        assert_eq!(t.kinds[0].1, 2);
        assert_eq!(t.frames, 9);
        assert_eq!(Tally::parse("").frames, 0);
    }

    #[test]
    fn kinds_beyond_the_list_are_counted() {
        let mut t = Tally::default();
        for i in 0..(MAX_KINDS + 5) {
            t.add(FrameKind {
                src: MacAddr([2, 0, 0, 0, (i >> 8) as u8, i as u8]),
                dst: MacAddr::BROADCAST,
                ethertype: 0x0806,
                tag: None,
            });
        }
        assert_eq!(t.kinds.len(), MAX_KINDS);
        assert_eq!(t.frames, MAX_KINDS as u64 + 5);
        assert_eq!(Tally::parse(&t.lines()).frames, t.frames);
    }
}
