//! Internet checksums (RFC 1071), and completing the partial TCP/UDP
//! checksums that skb-based devices hand over.
//!
//! # Why frames arrive with partial checksums
//!
//! A Linux host with checksum offload (the default on veths and on virtio
//! taps) does not compute TCP and UDP checksums: the skb is marked
//! `CHECKSUM_PARTIAL` and the checksum field holds only the sum of the
//! pseudo-header, for the device (or the receiving stack, which trusts the
//! mark) to finish. XDP and AF_XDP see the bytes without the mark, so a
//! switch that forwards them as they are delivers frames every receiver
//! drops for a bad checksum.
//!
//! # How a partial checksum is recognised
//!
//! The field of a partial checksum equals the folded sum of the
//! pseudo-header (source, destination, protocol, L4 length): that is what
//! Linux (`~csum_tcpudp_magic(..., 0)`, `~csum_ipv6_magic(..., 0)`) and
//! virtio drivers write. [`complete_partial`] compares the field with that
//! value, which costs a few additions per frame, and only when they agree
//! sums the segment and writes the full checksum.
//!
//! A frame whose checksum is already complete can agree by chance (one in
//! 65,536). Completing it then does no harm: the full checksum of a segment
//! does not depend on what its checksum field held, so a correct checksum
//! is rewritten with the same value. A frame with a wrong (not partial)
//! checksum is left wrong, so the receiver still sees the corruption
//! (`crate::gso` also refuses to cut a super-frame whose checksum is wrong).

/// Ones'-complement sum of `b` taken as big-endian 16-bit words (an odd last
/// byte is padded with zero), added to `acc` and not yet folded.
///
/// Words are summed 32 bits at a time into 64 bits: since 2^16 ≡ 1 modulo
/// 0xffff, the folded result is the same as summing 16-bit words, and 64
/// bits cannot overflow for any frame.
#[inline]
pub fn sum(b: &[u8], mut acc: u64) -> u64 {
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let hi = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        let lo = u32::from_be_bytes([c[4], c[5], c[6], c[7]]);
        acc += u64::from(hi) + u64::from(lo);
    }
    let mut rest = chunks.remainder();
    while rest.len() >= 2 {
        acc += u64::from(u16::from_be_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
    }
    if let [last] = rest {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds a sum from [`sum`] into 16 bits (end-around carry).
#[inline]
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The Internet checksum of `b`: the complement of its folded sum. A
/// header whose checksum field is correct checksums to 0.
#[inline]
pub fn checksum(b: &[u8]) -> u16 {
    !fold(sum(b, 0))
}

/// Where an IP packet's TCP or UDP segment lies in a frame, and what its
/// checksum covers: found by [`locate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L4 {
    /// Offset of the IP header in the frame.
    pub l3: usize,
    /// Offset of the L4 header in the frame.
    pub l4: usize,
    /// Length of the segment (header and payload) as the IP header gives it.
    pub len: usize,
    /// TCP (else UDP).
    pub tcp: bool,
    /// Over IPv6 (else IPv4; over IPv6 a UDP checksum of 0 is invalid,
    /// not "none").
    pub v6: bool,
}

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

fn be16(f: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*f.get(at)?, *f.get(at + 1)?]))
}

/// Finds the TCP or UDP segment of an Ethernet frame (up to two VLAN tags)
/// whose checksum covers it; `None` for anything else, for fragments, for
/// IPv6 extension headers and for headers or lengths that do not fit the
/// frame (frames come from outside: nothing here panics).
pub fn locate(f: &[u8]) -> Option<L4> {
    let mut at = 12;
    let mut ethertype = be16(f, at)?;
    for _ in 0..2 {
        if ethertype == 0x8100 || ethertype == 0x88a8 {
            at += 4;
            ethertype = be16(f, at)?;
        }
    }
    let l3 = at + 2;
    let (proto, l4, len) = match ethertype {
        ETH_P_IP => {
            let vihl = *f.get(l3)?;
            let ihl = usize::from(vihl & 0x0f) * 4;
            if vihl >> 4 != 4 || ihl < 20 || f.len() < l3 + ihl {
                return None;
            }
            let total = usize::from(be16(f, l3 + 2)?);
            // A fragment's checksum covers the whole datagram, not this frame.
            if be16(f, l3 + 6)? & 0x3fff != 0 || total < ihl {
                return None;
            }
            (f[l3 + 9], l3 + ihl, total - ihl)
        }
        ETH_P_IPV6 => {
            if f.len() < l3 + 40 || f[l3] >> 4 != 6 {
                return None;
            }
            // Extension headers are not followed: with a routing header
            // the pseudo-header's destination is not the header's, and
            // offloaded segments carry none of them in practice.
            (f[l3 + 6], l3 + 40, usize::from(be16(f, l3 + 4)?))
        }
        _ => return None,
    };
    let min = match proto {
        IPPROTO_TCP => 20,
        IPPROTO_UDP => 8,
        _ => return None,
    };
    if len < min || f.len() < l4 + len {
        return None;
    }
    Some(L4 {
        l3,
        l4,
        len,
        tcp: proto == IPPROTO_TCP,
        v6: ethertype == ETH_P_IPV6,
    })
}

impl L4 {
    /// Offset of the checksum field in the frame.
    pub(crate) fn field(&self) -> usize {
        self.l4 + if self.tcp { 16 } else { 6 }
    }

    /// Unfolded sum of the pseudo-header (addresses, protocol, length).
    pub(crate) fn pseudo(&self, f: &[u8]) -> u64 {
        let addrs = if self.v6 {
            &f[self.l3 + 8..self.l3 + 40]
        } else {
            &f[self.l3 + 12..self.l3 + 20]
        };
        let proto = if self.tcp { IPPROTO_TCP } else { IPPROTO_UDP };
        sum(addrs, 0) + u64::from(proto) + self.len as u64
    }

    fn stored(&self, f: &[u8]) -> u16 {
        let at = self.field();
        u16::from_be_bytes([f[at], f[at + 1]])
    }

    /// True when the checksum field holds a partial checksum (the folded
    /// pseudo-header sum; see the module documentation).
    pub fn is_partial(&self, f: &[u8]) -> bool {
        self.stored(f) == fold(self.pseudo(f))
    }

    /// True when the checksum verifies (a UDP-over-IPv4 checksum of 0,
    /// "none", counts as verified).
    pub fn verifies(&self, f: &[u8]) -> bool {
        if !self.tcp && !self.v6 && self.stored(f) == 0 {
            return true;
        }
        fold(sum(&f[self.l4..self.l4 + self.len], self.pseudo(f))) == 0xffff
    }

    /// Writes the full checksum of the segment, whatever the field held.
    pub fn fill(&self, f: &mut [u8]) {
        let at = self.field();
        f[at] = 0;
        f[at + 1] = 0;
        let mut c = !fold(sum(&f[self.l4..self.l4 + self.len], self.pseudo(f)));
        if !self.tcp && c == 0 {
            // 0 means "no checksum" in UDP over IPv4 and is invalid over IPv6.
            c = 0xffff;
        }
        f[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
}

/// Completes the TCP or UDP checksum of `frame` when it holds a partial
/// one (the pseudo-header's sum, see the module documentation); returns
/// true when it wrote one. Frames that are not TCP or UDP over IPv4 or
/// IPv6, fragments, truncated frames and complete checksums are left as
/// they are.
pub fn complete_partial(frame: &mut [u8]) -> bool {
    match locate(frame) {
        Some(s) if s.is_partial(frame) => {
            s.fill(frame);
            true
        }
        _ => false,
    }
}

/// True when `frame` is TCP or UDP over IPv4 or IPv6 and its L4 checksum
/// verifies (see [`L4::verifies`]); `None` when the frame has no such
/// checksum (see [`locate`]).
pub fn l4_valid(frame: &[u8]) -> Option<bool> {
    locate(frame).map(|s| s.verifies(frame))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The textbook definition: 16-bit words, folded as they go.
    fn naive(b: &[u8]) -> u16 {
        let mut s: u32 = 0;
        for w in b.chunks(2) {
            let v = if w.len() == 2 {
                u32::from(w[0]) << 8 | u32::from(w[1])
            } else {
                u32::from(w[0]) << 8
            };
            s += v;
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    fn ipv4_frame(proto: u8, payload: &[u8]) -> Vec<u8> {
        let l4len = if proto == 6 { 20 } else { 8 } + payload.len();
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let total = (20 + l4len) as u16;
        let mut ip = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, proto, 0, 0];
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&[198, 18, 0, 1, 198, 18, 0, 2]);
        let c = checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        if proto == 6 {
            let mut t = vec![0u8; 20];
            t[0..4].copy_from_slice(&[0x30, 0x39, 0x00, 0x50]);
            t[12] = 0x50;
            t[13] = 0x18;
            f.extend_from_slice(&t);
        } else {
            let mut u = vec![0x30, 0x39, 0x00, 0x35, 0, 0, 0, 0];
            u[4..6].copy_from_slice(&(l4len as u16).to_be_bytes());
            f.extend_from_slice(&u);
        }
        f.extend_from_slice(payload);
        f
    }

    fn ipv6_frame(proto: u8, payload: &[u8]) -> Vec<u8> {
        let l4len = if proto == 6 { 20 } else { 8 } + payload.len();
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        let mut ip = vec![0x60, 0, 0, 0, 0, 0, proto, 64];
        ip[4..6].copy_from_slice(&(l4len as u16).to_be_bytes());
        ip.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        ip.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        f.extend_from_slice(&ip);
        if proto == 6 {
            let mut t = vec![0u8; 20];
            t[12] = 0x50;
            f.extend_from_slice(&t);
        } else {
            let mut u = vec![0x30, 0x39, 0x00, 0x35, 0, 0, 0, 0];
            u[4..6].copy_from_slice(&(l4len as u16).to_be_bytes());
            f.extend_from_slice(&u);
        }
        f.extend_from_slice(payload);
        f
    }

    /// Writes what Linux writes for CHECKSUM_PARTIAL: the folded
    /// pseudo-header sum.
    fn make_partial(f: &mut [u8]) {
        let s = locate(f).expect("tcp or udp");
        let (at, p) = (s.field(), fold(s.pseudo(f)));
        f[at..at + 2].copy_from_slice(&p.to_be_bytes());
    }

    fn make_full(f: &mut [u8]) {
        locate(f).expect("tcp or udp").fill(f);
    }

    #[test]
    fn completes_tcp_and_udp_over_ipv4_and_ipv6() {
        let payload: Vec<u8> = (0..1401u32).map(|i| (i * 7 + 3) as u8).collect();
        for mk in [ipv4_frame, ipv6_frame] {
            for proto in [6, 17] {
                let mut f = mk(proto, &payload);
                make_full(&mut f);
                let want = f.clone();
                assert_eq!(l4_valid(&f), Some(true));
                make_partial(&mut f);
                assert_eq!(
                    l4_valid(&f),
                    Some(false),
                    "a partial checksum does not verify"
                );
                assert!(complete_partial(&mut f));
                assert_eq!(f, want, "proto {proto}");
                assert_eq!(l4_valid(&f), Some(true));
            }
        }
    }

    #[test]
    fn vlan_tagged_frames_are_completed() {
        let mut f = ipv4_frame(6, b"hello, world");
        f.splice(12..12, [0x88, 0xa8, 0x00, 0x0a, 0x81, 0x00, 0x00, 0x14]);
        make_full(&mut f);
        let want = f.clone();
        make_partial(&mut f);
        assert!(complete_partial(&mut f));
        assert_eq!(f, want);
    }

    #[test]
    fn wrong_checksums_stay_wrong() {
        let mut f = ipv4_frame(6, b"payload");
        make_full(&mut f);
        let at = 14 + 20 + 16;
        f[at] ^= 0x5a;
        let before = f.clone();
        assert!(!complete_partial(&mut f));
        assert_eq!(f, before);
        assert_eq!(l4_valid(&f), Some(false));
    }

    #[test]
    fn udp_without_checksum_and_fragments_are_left_alone() {
        let mut f = ipv4_frame(17, b"no checksum");
        let before = f.clone();
        assert!(!complete_partial(&mut f), "UDP checksum 0 is 'none'");
        assert_eq!(f, before);
        assert_eq!(l4_valid(&f), Some(true));
        let mut frag = ipv4_frame(17, b"first fragment");
        make_partial(&mut frag);
        frag[14 + 6] = 0x20; // more fragments
        let before = frag.clone();
        assert!(!complete_partial(&mut frag));
        assert_eq!(frag, before);
    }

    #[test]
    fn padding_beyond_the_ip_length_is_not_summed() {
        let mut f = ipv4_frame(17, b"abc");
        make_full(&mut f);
        let want_sum = f.clone();
        make_partial(&mut f);
        f.extend_from_slice(&[0xee; 17]);
        assert!(complete_partial(&mut f));
        assert_eq!(&f[..want_sum.len()], &want_sum[..]);
    }

    #[test]
    fn truncated_and_odd_frames_are_refused_without_panic() {
        let full = ipv4_frame(6, &[1; 40]);
        for n in 0..full.len() {
            let mut f = full[..n].to_vec();
            complete_partial(&mut f);
            l4_valid(&f);
        }
        let mut bad_ihl = full.clone();
        bad_ihl[14] = 0x4f;
        assert!(!complete_partial(&mut bad_ihl));
        let mut short_total = full.clone();
        short_total[16..18].copy_from_slice(&10u16.to_be_bytes());
        assert!(!complete_partial(&mut short_total));
    }

    proptest! {
        #[test]
        fn sum_agrees_with_the_textbook(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(checksum(&b), naive(&b));
        }

        #[test]
        fn completing_is_idempotent_on_any_frame(b in proptest::collection::vec(any::<u8>(), 0..120)) {
            let mut once = b.clone();
            complete_partial(&mut once);
            let mut twice = once.clone();
            prop_assert!(!complete_partial(&mut twice) || twice == once);
            prop_assert_eq!(twice, once);
        }

        #[test]
        fn any_payload_round_trips(payload in proptest::collection::vec(any::<u8>(), 0..300), v6 in any::<bool>(), tcp in any::<bool>()) {
            let proto = if tcp { 6 } else { 17 };
            let mut f = if v6 { ipv6_frame(proto, &payload) } else { ipv4_frame(proto, &payload) };
            make_full(&mut f);
            let want = f.clone();
            // Completing a complete checksum never changes it.
            let mut g = f.clone();
            complete_partial(&mut g);
            prop_assert_eq!(&g, &want);
            make_partial(&mut f);
            complete_partial(&mut f);
            prop_assert_eq!(f, want);
        }
    }
}
