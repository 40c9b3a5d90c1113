//! Small frame edits and views the simulated hosts need: their VLAN tag,
//! their DSCP, gratuitous ARP, and a look at TCP segments (for
//! retransmission and round-trip counting).

use crate::csum::checksum;

/// Minimum Ethernet frame without FCS: NICs pad shorter frames.
pub(crate) const ETH_ZLEN: usize = 60;

/// Pads a frame to the Ethernet minimum, as a NIC does on the wire.
pub(crate) fn pad(frame: &mut Vec<u8>) {
    if frame.len() < ETH_ZLEN {
        frame.resize(ETH_ZLEN, 0);
    }
}

/// Inserts an 802.1Q tag after the MAC addresses.
pub(crate) fn push_tag(frame: &mut Vec<u8>, vid: u16, pcp: u8) {
    if frame.len() < 12 {
        return;
    }
    let tci = (u16::from(pcp & 7) << 13) | (vid & 0x0fff);
    let t = tci.to_be_bytes();
    frame.splice(12..12, [0x81, 0x00, t[0], t[1]]);
}

/// What a host does with a frame the switch sent it, by its tag.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RxTag {
    /// Take it (the tag, if any, has been removed).
    Accept,
    /// Not for this host's VLAN.
    Ignore,
}

/// Removes the tag a host expects: its VLAN's, or a priority tag (VID 0)
/// when it has no VLAN. Frames of other VLANs, and untagged frames on a
/// host with a VLAN, are ignored, as a VLAN interface does.
pub(crate) fn strip_tag(frame: &mut Vec<u8>, vlan: Option<u16>) -> RxTag {
    if frame.len() < 14 {
        return RxTag::Ignore;
    }
    let et = u16::from_be_bytes([frame[12], frame[13]]);
    let tagged = et == 0x8100;
    if !tagged {
        return if vlan.is_none() && et != 0x88a8 {
            RxTag::Accept
        } else {
            RxTag::Ignore
        };
    }
    if frame.len() < 18 {
        return RxTag::Ignore;
    }
    let vid = u16::from_be_bytes([frame[14], frame[15]]) & 0x0fff;
    let want = vlan.unwrap_or(0);
    if vid != want {
        return RxTag::Ignore;
    }
    frame.drain(12..16);
    RxTag::Accept
}

/// Writes `dscp` into an untagged frame's IPv4 or IPv6 header (ECN kept;
/// the IPv4 header checksum recomputed).
pub(crate) fn set_dscp(frame: &mut [u8], dscp: u8) {
    if frame.len() < 14 {
        return;
    }
    match u16::from_be_bytes([frame[12], frame[13]]) {
        0x0800 if frame.len() >= 34 => {
            let ihl = usize::from(frame[14] & 0x0f) * 4;
            if ihl < 20 || frame.len() < 14 + ihl {
                return;
            }
            frame[15] = (dscp << 2) | (frame[15] & 3);
            frame[24] = 0;
            frame[25] = 0;
            let c = checksum(&frame[14..14 + ihl]);
            frame[24..26].copy_from_slice(&c.to_be_bytes());
        }
        0x86dd if frame.len() >= 54 => {
            // Version (4) | traffic class (8) | flow label (20).
            let tc = (dscp << 2) | (((frame[15] >> 4) & 0x0f) & 3);
            frame[14] = (frame[14] & 0xf0) | (tc >> 4);
            frame[15] = (frame[15] & 0x0f) | (tc << 4);
        }
        _ => {}
    }
}

/// A gratuitous ARP request for `ip` from `mac` (untagged, padded).
pub(crate) fn gratuitous_arp(mac: [u8; 6], ip: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::with_capacity(ETH_ZLEN);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&ip);
    pad(&mut f);
    f
}

/// The parts of an untagged frame's TCP segment the hosts' counters need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Segment {
    /// Source port.
    pub src: u16,
    /// Destination port.
    pub dst: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (when `ack`).
    pub ack_no: u32,
    /// ACK flag.
    pub ack: bool,
    /// RST flag.
    pub rst: bool,
    /// Sequence space the segment takes: payload, plus one each for SYN and FIN.
    pub len: u32,
}

/// Reads the TCP header of an untagged IPv4 or IPv6 frame (IPv6 without
/// extension headers); `None` for anything else.
pub(crate) fn tcp_segment(frame: &[u8]) -> Option<Segment> {
    let et = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let (l4, l4_len) = match et {
        0x0800 => {
            let ihl = usize::from(frame.get(14)? & 0x0f) * 4;
            if *frame.get(23)? != 6 || ihl < 20 {
                return None;
            }
            let total = usize::from(u16::from_be_bytes([*frame.get(16)?, *frame.get(17)?]));
            (14 + ihl, total.checked_sub(ihl)?)
        }
        0x86dd => {
            if *frame.get(20)? != 6 {
                return None;
            }
            let plen = usize::from(u16::from_be_bytes([*frame.get(18)?, *frame.get(19)?]));
            (54, plen)
        }
        _ => return None,
    };
    let t = frame.get(l4..l4 + 20)?;
    let off = usize::from(t[12] >> 4) * 4;
    let flags = t[13];
    let payload = l4_len.checked_sub(off)? as u32;
    let syn = u32::from(flags & 0x02 != 0);
    let fin = u32::from(flags & 0x01 != 0);
    Some(Segment {
        src: u16::from_be_bytes([t[0], t[1]]),
        dst: u16::from_be_bytes([t[2], t[3]]),
        seq: u32::from_be_bytes([t[4], t[5], t[6], t[7]]),
        ack_no: u32::from_be_bytes([t[8], t[9], t[10], t[11]]),
        ack: flags & 0x10 != 0,
        rst: flags & 0x04 != 0,
        len: payload + syn + fin,
    })
}

/// `a` comes before `b` in sequence space.
pub(crate) fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_round_trip_and_vlan_filter() {
        let mut f = gratuitous_arp([2, 0, 0, 0, 0, 1], [198, 18, 0, 1]);
        let orig = f.clone();
        push_tag(&mut f, 10, 6);
        assert_eq!(&f[12..16], &[0x81, 0x00, 0xc0, 0x0a]);
        let mut g = f.clone();
        assert_eq!(strip_tag(&mut g, Some(20)), RxTag::Ignore);
        assert_eq!(strip_tag(&mut g, None), RxTag::Ignore);
        assert_eq!(strip_tag(&mut g, Some(10)), RxTag::Accept);
        assert_eq!(g, orig);
        let mut u = orig.clone();
        assert_eq!(strip_tag(&mut u, Some(10)), RxTag::Ignore);
        assert_eq!(strip_tag(&mut u, None), RxTag::Accept);
        let mut p = orig.clone();
        push_tag(&mut p, 0, 5);
        assert_eq!(strip_tag(&mut p, None), RxTag::Accept);
        assert_eq!(p, orig);
    }

    #[test]
    fn dscp_rewrite_keeps_a_valid_ipv4_checksum() {
        // Ethernet + a 20-byte IPv4 header with ECN 1.
        let mut f = vec![0u8; 14];
        f[12] = 0x08;
        f.extend_from_slice(&[
            0x45, 0x01, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
        ]);
        f.resize(54, 0);
        set_dscp(&mut f, 46);
        assert_eq!(f[15], (46 << 2) | 1);
        assert_eq!(checksum(&f[14..34]), 0, "header checksum verifies");
    }

    #[test]
    fn sequence_comparison_wraps() {
        assert!(seq_lt(u32::MAX - 5, 3));
        assert!(!seq_lt(3, u32::MAX - 5));
        assert!(!seq_lt(7, 7));
    }
}
