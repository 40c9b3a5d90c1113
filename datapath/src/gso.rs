//! Software segmentation of TCP super-frames (what GSO does in the kernel).
//!
//! A guest with TCP segmentation offload (virtio-net with TSO negotiated,
//! the default under QEMU) hands its tap frames of up to 64 KiB: one TCP
//! header over many segments' worth of payload, with a partial checksum.
//! AF_XDP describes neither the segment size nor the offload, and no port
//! behind the switch can carry such a frame (the receiver's MTU is the
//! guest's), so the port that receives one cuts it into frames that fit
//! the interface's MTU, as the kernel's software GSO would: the IP and TCP
//! headers repeated, IPv4 total length, identification (+1 per segment)
//! and header checksum, IPv6 payload length, TCP sequence number, flags
//! (CWR on the first segment only, FIN and PSH on the last only) and a
//! full TCP checksum per segment.
//!
//! The segment size is the interface MTU less the IP and TCP headers. The
//! sender's own segment size is not known (AF_XDP does not carry the
//! virtio-net header's `gso_size`), so this is a limit: when the sender
//! segments for less than its MTU (a peer's smaller MSS, MSS clamping, a
//! lowered path MTU), the segments are larger than it meant, and a path
//! that needs the smaller size drops them. Segments never exceed the MTU.
//!
//! Only super-frames whose checksum is partial (what an offloading sender
//! hands over) or correct are cut: cutting gives every segment a fresh
//! checksum, which would hide a corrupted frame.

use crate::csum;

/// Where the headers of a segmentable frame lie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The IP and TCP headers (see [`csum::locate`]).
    at: csum::L4,
    /// Length of all headers (Ethernet through TCP options).
    hdr: usize,
    /// Payload bytes per segment.
    mss: usize,
}

impl Plan {
    /// End of the TCP payload (IP length, not frame length).
    fn end(&self) -> usize {
        self.at.l4 + self.at.len
    }

    /// Number of segments the frame becomes.
    pub fn segments(&self) -> usize {
        (self.end() - self.hdr).div_ceil(self.mss)
    }
}

/// When `frame` is a TCP frame (see [`csum::locate`]: IPv4 not a fragment,
/// or IPv6 without extension headers; up to two VLAN tags) with a partial
/// or correct checksum whose IP packet is longer than `mtu`, how to cut it
/// into IP packets of at most `mtu` bytes. `None` for anything else,
/// including frames that already fit and frames whose headers leave no
/// room for payload.
pub fn plan(frame: &[u8], mtu: usize) -> Option<Plan> {
    let at = csum::locate(frame).filter(|s| s.tcp)?;
    let doff = usize::from(*frame.get(at.l4 + 12)? >> 4) * 4;
    let hdr = at.l4 + doff;
    let end = at.l4 + at.len;
    if doff < 20 || end <= hdr || end - at.l3 <= mtu {
        return None;
    }
    let mss = mtu.checked_sub(hdr - at.l3).filter(|&m| m >= 8)?;
    if !at.is_partial(frame) && !at.verifies(frame) {
        return None;
    }
    Some(Plan { at, hdr, mss })
}

/// Writes segment `i` (from 0 to `plan.segments() - 1`) of `frame` into
/// `out`, which must hold at least `plan.hdr + plan.mss` bytes; returns its
/// length. Panics on an `i` or `out` outside those bounds (a caller bug,
/// never input).
pub fn segment(frame: &[u8], plan: &Plan, i: usize, out: &mut [u8]) -> usize {
    let Plan { at, hdr, mss } = *plan;
    let (l3, l4, end) = (at.l3, at.l4, plan.end());
    let from = hdr + i * mss;
    let to = (from + mss).min(end);
    assert!(from < end, "segment {i} beyond the frame");
    let n = hdr + (to - from);
    out[..hdr].copy_from_slice(&frame[..hdr]);
    out[hdr..n].copy_from_slice(&frame[from..to]);
    let last = to == end;
    let ip_len = n - l3;
    if !at.v6 {
        out[l3 + 2..l3 + 4].copy_from_slice(&(ip_len as u16).to_be_bytes());
        let id = u16::from_be_bytes([frame[l3 + 4], frame[l3 + 5]]).wrapping_add(i as u16);
        out[l3 + 4..l3 + 6].copy_from_slice(&id.to_be_bytes());
        out[l3 + 10] = 0;
        out[l3 + 11] = 0;
        let c = csum::checksum(&out[l3..l4]);
        out[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    } else {
        out[l3 + 4..l3 + 6].copy_from_slice(&((n - l4) as u16).to_be_bytes());
    }
    let seq = u32::from_be_bytes([frame[l4 + 4], frame[l4 + 5], frame[l4 + 6], frame[l4 + 7]])
        .wrapping_add((i * mss) as u32);
    out[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
    const FIN: u8 = 0x01;
    const PSH: u8 = 0x08;
    const CWR: u8 = 0x80;
    let mut flags = frame[l4 + 13];
    if !last {
        flags &= !(FIN | PSH);
    }
    if i > 0 {
        flags &= !CWR;
    }
    out[l4 + 13] = flags;
    // Full checksum of the segment over its pseudo-header.
    csum::L4 { len: n - l4, ..at }.fill(out);
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp_frame(v6: bool, payload: usize, flags: u8, opts: usize) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        let tcp_len = 20 + opts + payload;
        if v6 {
            f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
            f.extend_from_slice(&(tcp_len as u16).to_be_bytes());
            f.extend_from_slice(&[6, 64]);
            f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
            f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        } else {
            f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
            f.extend_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
            f.extend_from_slice(&[
                0xab, 0xcd, 0x40, 0, 64, 6, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
            ]);
        }
        f.extend_from_slice(&[0x9c, 0x40, 0x13, 0x88, 0, 0, 0x10, 0, 0, 0, 0, 1]);
        f.push(((20 + opts) / 4) as u8 * 16);
        f.push(flags);
        f.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
        f.extend(std::iter::repeat_n(1u8, opts));
        f.extend((0..payload).map(|i| (i % 251) as u8));
        // A partial checksum, as an offloading sender leaves it.
        let s = csum::locate(&f).expect("tcp");
        let (at, p) = (s.field(), csum::fold(s.pseudo(&f)));
        f[at..at + 2].copy_from_slice(&p.to_be_bytes());
        f
    }

    #[test]
    fn only_partial_or_correct_checksums_are_cut() {
        let mut f = tcp_frame(false, 5000, 0x10, 0);
        assert!(plan(&f, 1500).is_some(), "partial");
        assert!(csum::complete_partial(&mut f));
        assert!(plan(&f, 1500).is_some(), "complete and correct");
        f[34 + 16] ^= 0x01;
        assert_eq!(
            plan(&f, 1500),
            None,
            "a wrong checksum is not hidden by cutting"
        );
    }

    fn be16(f: &[u8], at: usize) -> Option<u16> {
        Some(u16::from_be_bytes([*f.get(at)?, *f.get(at + 1)?]))
    }

    fn seq(f: &[u8], l4: usize) -> u32 {
        u32::from_be_bytes([f[l4 + 4], f[l4 + 5], f[l4 + 6], f[l4 + 7]])
    }

    #[test]
    fn a_super_frame_becomes_valid_segments_that_fit() {
        for v6 in [false, true] {
            let payload = 40_000;
            let f = tcp_frame(v6, payload, 0x80 | 0x18 | 0x01, 12);
            let p = plan(&f, 1500).expect("segmentable");
            let per = 1500 - if v6 { 40 } else { 20 } - 32;
            assert_eq!(p.segments(), payload.div_ceil(per));
            let mut out = vec![0u8; 2000];
            let mut joined = Vec::new();
            let l4 = if v6 { 54 } else { 34 };
            for i in 0..p.segments() {
                let n = segment(&f, &p, i, &mut out);
                let s = &out[..n];
                assert!(n - 14 <= 1500, "segment {i}: IP packet of {}", n - 14);
                assert_eq!(csum::l4_valid(s), Some(true), "segment {i} checksum");
                if !v6 {
                    assert_eq!(csum::checksum(&s[14..34]), 0, "IPv4 header checksum");
                    assert_eq!(usize::from(be16(s, 16).expect("len")), n - 14);
                    assert_eq!(be16(s, 18), Some(0xabcd + i as u16));
                } else {
                    assert_eq!(usize::from(be16(s, 18).expect("len")), n - 54);
                }
                assert_eq!(seq(s, l4), 0x1000 + (i * per) as u32);
                let flags = s[l4 + 13];
                let last = i + 1 == p.segments();
                assert_eq!(flags & 0x80 != 0, i == 0, "CWR on the first only");
                assert_eq!(flags & 0x09 != 0, last, "FIN/PSH on the last only");
                assert_eq!(flags & 0x10, 0x10, "ACK everywhere");
                joined.extend_from_slice(&s[l4 + 32..]);
            }
            assert_eq!(joined, &f[l4 + 32..], "payload intact and in order");
        }
    }

    #[test]
    fn frames_that_fit_or_are_not_tcp_are_not_planned() {
        let f = tcp_frame(false, 1460, 0x10, 0);
        assert_eq!(plan(&f, 1500), None, "fits");
        assert!(plan(&f, 1000).is_some());
        let mut udp = f.clone();
        udp[23] = 17;
        // (not TCP: refused before any checksum is looked at)
        assert_eq!(plan(&udp, 1000), None);
        let mut frag = f.clone();
        frag[20] = 0x20;
        assert_eq!(plan(&frag, 1000), None);
        // Header longer than the MTU allows: no room for payload.
        assert_eq!(plan(&tcp_frame(false, 3000, 0x10, 40), 60), None);
        // IP length beyond the frame: truncated, refused.
        let short = &f[..f.len() - 10];
        assert_eq!(plan(short, 1000), None);
        for n in 0..60 {
            let _ = plan(&f[..n], 100);
        }
    }

    #[test]
    fn vlan_tagged_super_frames_keep_their_tag() {
        let mut f = tcp_frame(false, 5000, 0x10, 0);
        f.splice(12..12, [0x81, 0x00, 0x00, 0x0a]);
        // (the tag does not change the TCP checksum)
        let p = plan(&f, 1500).expect("plan");
        let mut out = vec![0u8; 1600];
        for i in 0..p.segments() {
            let n = segment(&f, &p, i, &mut out);
            assert_eq!(&out[12..16], &[0x81, 0x00, 0x00, 0x0a]);
            assert_eq!(csum::l4_valid(&out[..n]), Some(true));
        }
    }
}
