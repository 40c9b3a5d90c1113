//! Frame parser: bytes → [`FlowKey`], with Open vSwitch's `flow_extract` rules.
//!
//! Every header read is preceded by a length check; a header that is
//! truncated or inconsistent stops parsing at that layer, leaving the fields
//! of the layers that did parse (as OVS does), and the [`Parsed::note`] says
//! what stopped it. Nothing here can panic on any input.
//!
//! We read fields at named offsets instead of going through etherparse's header
//! slices because OVS's rules differ from a validating parser's in ways that
//! change forwarding: OVS accepts an IPv4 header whose version nibble is not 4,
//! ignores Ethernet padding after the IP total length, reads only the outer
//! VLAN tag (`vlan-limit=1`), maps 802.3 frames to ethertype 0x05ff, and
//! (with its default `frags=normal`) sees no L4 ports in any IP fragment.
//! (etherparse builds the frames in our tests and benchmarks.)

#[cfg(doc)]
use crate::key::Field;
use crate::key::FlowKey;

/// Ethertypes and protocol numbers used here.
pub mod consts {
    /// 802.1Q VLAN tag.
    pub const ETH_TYPE_VLAN: u16 = 0x8100;
    /// 802.1ad service tag.
    pub const ETH_TYPE_VLAN_8021AD: u16 = 0x88a8;
    /// IPv4.
    pub const ETH_TYPE_IP: u16 = 0x0800;
    /// IPv6.
    pub const ETH_TYPE_IPV6: u16 = 0x86dd;
    /// ARP.
    pub const ETH_TYPE_ARP: u16 = 0x0806;
    /// RARP.
    pub const ETH_TYPE_RARP: u16 = 0x8035;
    /// Smallest value that is an ethertype rather than an 802.3 length.
    pub const ETH_TYPE_MIN: u16 = 0x0600;
    /// OVS's ethertype for 802.3 frames without an Ethernet SNAP header.
    pub const DL_TYPE_NONE: u16 = 0x05ff;
    /// The TCI bit OVS uses to mean "a tag is present".
    pub const VLAN_CFI: u16 = 0x1000;
    /// VID bits of a TCI.
    pub const VLAN_VID_MASK: u16 = 0x0fff;
    /// PCP bits of a TCI.
    pub const VLAN_PCP_MASK: u16 = 0xe000;
    /// ICMP.
    pub const IPPROTO_ICMP: u8 = 1;
    /// IGMP.
    pub const IPPROTO_IGMP: u8 = 2;
    /// TCP.
    pub const IPPROTO_TCP: u8 = 6;
    /// UDP.
    pub const IPPROTO_UDP: u8 = 17;
    /// SCTP.
    pub const IPPROTO_SCTP: u8 = 132;
    /// ICMPv6.
    pub const IPPROTO_ICMPV6: u8 = 58;
    /// IPv6 hop-by-hop options.
    pub const IPPROTO_HOPOPTS: u8 = 0;
    /// IPv6 routing header.
    pub const IPPROTO_ROUTING: u8 = 43;
    /// IPv6 fragment header.
    pub const IPPROTO_FRAGMENT: u8 = 44;
    /// IPv6 destination options.
    pub const IPPROTO_DSTOPTS: u8 = 60;
    /// Authentication header.
    pub const IPPROTO_AH: u8 = 51;
}

use consts::*;

/// Length of an Ethernet header without tags.
pub const ETH_HEADER_LEN: usize = 14;

/// What stopped the parser early, if anything. None of these drop the frame
/// by themselves: the frame is switched on the fields that did parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ParseNote {
    /// Every layer present parsed.
    #[default]
    Complete,
    /// Shorter than an Ethernet header (14 bytes): nothing parsed.
    Runt,
    /// A VLAN TPID with fewer than 6 bytes after it: tag not parsed.
    VlanTruncated,
    /// IPv4 header shorter than 20 bytes, IHL too small or beyond the frame,
    /// or total length beyond the frame: no L3 fields.
    Ipv4Invalid,
    /// IPv6 header shorter than 40 bytes or payload length beyond the frame.
    Ipv6Invalid,
    /// An IPv6 extension header runs past the payload: addresses only.
    Ipv6ExtInvalid,
    /// ARP that is not Ethernet/IPv4 or is shorter than 28 bytes.
    ArpUnparsed,
    /// The L4 header is shorter than its minimum: no ports.
    L4Truncated,
}

impl ParseNote {
    /// A short name for counters and traces.
    pub fn name(self) -> &'static str {
        match self {
            ParseNote::Complete => "complete",
            ParseNote::Runt => "runt",
            ParseNote::VlanTruncated => "vlan_truncated",
            ParseNote::Ipv4Invalid => "ipv4_invalid",
            ParseNote::Ipv6Invalid => "ipv6_invalid",
            ParseNote::Ipv6ExtInvalid => "ipv6_ext_invalid",
            ParseNote::ArpUnparsed => "arp_unparsed",
            ParseNote::L4Truncated => "l4_truncated",
        }
    }

    /// True when the frame's headers were inconsistent (worth a counter).
    pub fn is_malformed(self) -> bool {
        !matches!(self, ParseNote::Complete | ParseNote::ArpUnparsed)
    }
}

bitflags::bitflags! {
    /// Facts about a frame that are not match fields.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct ParseFlags: u8 {
        /// An outer VLAN tag was parsed.
        const TAGGED = 1;
        /// An IPv4 or IPv6 fragment (its L4 ports are not used, as in OVS).
        const FRAGMENT = 2;
        /// A fragment other than the first.
        const LATER_FRAGMENT = 4;
    }
}

/// What the parser learned beyond the key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// The outer VLAN tag as on the wire: (TPID, TCI), if one was parsed.
    pub vlan: Option<(u16, u16)>,
    /// Offset of the L3 header.
    pub l3_ofs: u16,
    /// Offset of the L4 header (0 when there is none).
    pub l4_ofs: u16,
    /// What kind of frame it is beyond the key (tagged, fragment...).
    pub flags: ParseFlags,
    /// Where parsing stopped early.
    pub note: ParseNote,
}

#[inline(always)]
fn be16(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|s| u16::from_be_bytes([s[0], s[1]]))
}

#[inline(always)]
fn be32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

#[inline(always)]
fn u128_at(b: &[u8], at: usize) -> u128 {
    match b.get(at..at + 16) {
        Some(s) => {
            let mut a = [0u8; 16];
            a.copy_from_slice(s);
            u128::from_be_bytes(a)
        }
        None => 0,
    }
}

/// True for the two TPIDs OVS parses as VLAN tags.
#[inline(always)]
pub fn eth_type_vlan(t: u16) -> bool {
    t == ETH_TYPE_VLAN || t == ETH_TYPE_VLAN_8021AD
}

/// Field values gathered while parsing, assembled into a key at the end
/// (one store per word instead of a read-modify-write per field).
#[derive(Default)]
struct Fields {
    dl_dst: u64,
    dl_src: u64,
    dl_type: u16,
    tci: u16,
    nw_src: u32,
    nw_dst: u32,
    proto: u8,
    tos: u8,
    tp_src: u16,
    tp_dst: u16,
    v6_src: u128,
    v6_dst: u128,
}

impl Fields {
    /// Packs the fields into `key` following [`Field::loc`].
    #[inline(always)]
    fn assemble(&self, in_port: u16, key: &mut FlowKey) {
        key.w[0] = in_port as u64
            | (self.dl_type as u64) << 16
            | (self.tci as u64) << 32
            | (self.proto as u64) << 48
            | (self.tos as u64) << 56;
        key.w[1] = self.dl_src | (self.tp_src as u64) << 48;
        key.w[2] = self.dl_dst | (self.tp_dst as u64) << 48;
        key.w[3] = self.nw_src as u64 | (self.nw_dst as u64) << 32;
        key.w[4] = (self.v6_src >> 64) as u64;
        key.w[5] = self.v6_src as u64;
        key.w[6] = (self.v6_dst >> 64) as u64;
        key.w[7] = self.v6_dst as u64;
    }
}

/// Extracts the flow key of `frame` received on OpenFlow port `in_port`.
#[inline]
pub fn extract(frame: &[u8], in_port: u16, key: &mut FlowKey) -> Parsed {
    let mut f = Fields::default();
    let p = extract_fields(frame, &mut f);
    f.assemble(in_port, key);
    p
}

#[inline(always)]
fn extract_fields(frame: &[u8], f: &mut Fields) -> Parsed {
    let mut p = Parsed::default();
    let Some(eth) = frame.first_chunk::<ETH_HEADER_LEN>() else {
        p.note = ParseNote::Runt;
        return p;
    };
    f.dl_dst = u64::from_be_bytes([0, 0, eth[0], eth[1], eth[2], eth[3], eth[4], eth[5]]);
    f.dl_src = u64::from_be_bytes([0, 0, eth[6], eth[7], eth[8], eth[9], eth[10], eth[11]]);

    // Outer VLAN tag (vlan-limit=1): needs the tag and the next ethertype.
    let mut off = 12;
    let t0 = u16::from_be_bytes([eth[12], eth[13]]);
    if eth_type_vlan(t0) {
        if let Some(h) = frame.first_chunk::<18>() {
            let tci = u16::from_be_bytes([h[14], h[15]]);
            f.tci = tci | VLAN_CFI;
            p.vlan = Some((t0, tci));
            p.flags |= ParseFlags::TAGGED;
            off = 16;
        } else {
            p.note = ParseNote::VlanTruncated;
        }
    }

    // Ethertype, or 802.3 length followed by LLC/SNAP.
    let proto = be16(frame, off).unwrap_or(0);
    off += 2;
    let dl_type = if proto >= ETH_TYPE_MIN {
        proto
    } else {
        llc_snap(frame, &mut off)
    };
    f.dl_type = dl_type;
    p.l3_ofs = off as u16;

    let l3 = frame.get(off..).unwrap_or(&[]);
    match dl_type {
        ETH_TYPE_IP => parse_ipv4(l3, f, &mut p),
        ETH_TYPE_IPV6 => parse_ipv6(l3, f, &mut p),
        ETH_TYPE_ARP | ETH_TYPE_RARP => parse_arp(l3, f, &mut p),
        _ => {}
    }
    p
}

/// The ethertype of an 802.3 frame: the SNAP type after an Ethernet-OUI
/// LLC/SNAP header, else OVS's 0x05ff.
#[cold]
fn llc_snap(frame: &[u8], off: &mut usize) -> u16 {
    match frame.get(*off..*off + 8) {
        Some(llc)
            if llc[0] == 0xaa && llc[1] == 0xaa && llc[2] == 0x03 && llc[3..6] == [0, 0, 0] =>
        {
            *off += 8;
            let snap_type = u16::from_be_bytes([llc[6], llc[7]]);
            if snap_type >= ETH_TYPE_MIN {
                snap_type
            } else {
                DL_TYPE_NONE
            }
        }
        _ => DL_TYPE_NONE,
    }
}

#[inline(always)]
fn parse_ipv4(l3: &[u8], f: &mut Fields, p: &mut Parsed) {
    let Some(h) = l3.first_chunk::<20>() else {
        p.note = ParseNote::Ipv4Invalid;
        return;
    };
    let ihl = ((h[0] & 0x0f) as usize) * 4;
    let tot_len = u16::from_be_bytes([h[2], h[3]]) as usize;
    if ihl < 20 || l3.len() < ihl || tot_len > l3.len() || ihl > tot_len {
        p.note = ParseNote::Ipv4Invalid;
        return;
    }
    f.nw_src = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
    f.nw_dst = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
    f.tos = h[1];
    let proto = h[9];
    f.proto = proto;
    let frag_off = u16::from_be_bytes([h[6], h[7]]);
    if frag_off & 0x3fff != 0 {
        p.flags |= ParseFlags::FRAGMENT;
        if frag_off & 0x1fff != 0 {
            p.flags |= ParseFlags::LATER_FRAGMENT;
        }
    }
    p.l4_ofs = p.l3_ofs + ihl as u16;
    // OVS (frags=normal) zeroes L4 ports for every fragment, first included.
    if !p.flags.contains(ParseFlags::FRAGMENT) {
        if let Some(l4) = l3.get(ihl..tot_len) {
            parse_l4(l4, proto, f, p);
        }
    }
}

#[inline(never)]
fn parse_ipv6(l3: &[u8], f: &mut Fields, p: &mut Parsed) {
    if l3.len() < 40 {
        p.note = ParseNote::Ipv6Invalid;
        return;
    }
    let plen = be16(l3, 4).unwrap_or(0) as usize;
    if plen + 40 > l3.len() {
        p.note = ParseNote::Ipv6Invalid;
        return;
    }
    f.v6_src = u128_at(l3, 8);
    f.v6_dst = u128_at(l3, 24);
    let tos = ((be32(l3, 0).unwrap_or(0) >> 20) & 0xff) as u8;
    let mut proto = l3[6];
    let mut data = &l3[40..40 + plen];
    let mut ofs = p.l3_ofs as usize + 40;
    // Extension headers, as OVS walks them.
    loop {
        match proto {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_AH => {
                if data.len() < 8 {
                    p.note = ParseNote::Ipv6ExtInvalid;
                    return;
                }
                let len = if proto == IPPROTO_AH {
                    (data[1] as usize + 2) * 4
                } else {
                    (data[1] as usize + 1) * 8
                };
                proto = data[0];
                match data.get(len..) {
                    Some(rest) => data = rest,
                    None => {
                        p.note = ParseNote::Ipv6ExtInvalid;
                        return;
                    }
                }
                ofs += len;
            }
            IPPROTO_FRAGMENT => {
                if data.len() < 8 {
                    p.note = ParseNote::Ipv6ExtInvalid;
                    return;
                }
                proto = data[0];
                let offlg = u16::from_be_bytes([data[2], data[3]]);
                data = &data[8..];
                ofs += 8;
                if offlg != 0 {
                    p.flags |= ParseFlags::FRAGMENT;
                    if offlg & 0xfff8 != 0 {
                        p.flags |= ParseFlags::LATER_FRAGMENT;
                        proto = IPPROTO_FRAGMENT;
                        break;
                    }
                }
            }
            _ => break,
        }
    }
    f.tos = tos;
    f.proto = proto;
    p.l4_ofs = ofs as u16;
    if !p.flags.contains(ParseFlags::FRAGMENT) {
        parse_l4(data, proto, f, p);
    }
}

#[inline(always)]
fn parse_l4(l4: &[u8], proto: u8, f: &mut Fields, p: &mut Parsed) {
    let min = match proto {
        IPPROTO_TCP => {
            let doff = l4.get(12).map_or(0, |b| (b >> 4) as usize * 4);
            if l4.len() < 20 || doff < 20 || l4.len() < doff {
                p.note = ParseNote::L4Truncated;
                return;
            }
            20
        }
        IPPROTO_UDP | IPPROTO_ICMP | IPPROTO_IGMP | IPPROTO_ICMPV6 => 8,
        IPPROTO_SCTP => 12,
        _ => return,
    };
    let Some(h) = l4.first_chunk::<8>() else {
        p.note = ParseNote::L4Truncated;
        return;
    };
    if l4.len() < min {
        p.note = ParseNote::L4Truncated;
        return;
    }
    if matches!(proto, IPPROTO_ICMP | IPPROTO_IGMP | IPPROTO_ICMPV6) {
        f.tp_src = h[0] as u16;
        f.tp_dst = h[1] as u16;
    } else {
        f.tp_src = u16::from_be_bytes([h[0], h[1]]);
        f.tp_dst = u16::from_be_bytes([h[2], h[3]]);
    }
}

#[inline(never)]
fn parse_arp(l3: &[u8], f: &mut Fields, p: &mut Parsed) {
    if l3.len() < 28
        || be16(l3, 0) != Some(1)
        || be16(l3, 2) != Some(ETH_TYPE_IP)
        || l3[4] != 6
        || l3[5] != 4
    {
        p.note = ParseNote::ArpUnparsed;
        return;
    }
    f.nw_src = be32(l3, 14).unwrap_or(0);
    f.nw_dst = be32(l3, 24).unwrap_or(0);
    let op = be16(l3, 6).unwrap_or(0);
    if op <= 0xff {
        f.proto = op as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn udp_frame(vlan: Option<u16>) -> Vec<u8> {
        let mut out = Vec::new();
        let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        match vlan {
            Some(tci) => eth
                .single_vlan(etherparse::VlanId::try_new(tci & 0xfff).unwrap_or_default())
                .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
                .udp(1234, 53)
                .write(&mut out, &[1, 2, 3, 4]),
            None => eth
                .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
                .udp(1234, 53)
                .write(&mut out, &[1, 2, 3, 4]),
        }
        .expect("write");
        out
    }

    #[test]
    fn assembly_matches_field_layout() {
        use crate::key::Field;
        let f = Fields {
            dl_dst: 0x1111_2222_3333,
            dl_src: 0x4444_5555_6666,
            dl_type: 0x86dd,
            tci: 0x300a,
            nw_src: 0x0102_0304,
            nw_dst: 0x0506_0708,
            proto: 17,
            tos: 0xb8,
            tp_src: 53,
            tp_dst: 5353,
            v6_src: 0x2001_0db8 << 96 | 1,
            v6_dst: 0x2001_0db8 << 96 | 2,
        };
        let mut k = FlowKey::ZERO;
        f.assemble(9, &mut k);
        let mut want = FlowKey::ZERO;
        for (fl, v) in [
            (Field::InPort, 9u64),
            (Field::DlDst, f.dl_dst),
            (Field::DlSrc, f.dl_src),
            (Field::DlType, 0x86dd),
            (Field::VlanTci, 0x300a),
            (Field::NwSrc, 0x0102_0304),
            (Field::NwDst, 0x0506_0708),
            (Field::NwProto, 17),
            (Field::NwTos, 0xb8),
            (Field::TpSrc, 53),
            (Field::TpDst, 5353),
        ] {
            want.set(fl, v);
        }
        want.set_ipv6_src(f.v6_src);
        want.set_ipv6_dst(f.v6_dst);
        assert_eq!(k, want);
    }

    #[test]
    fn udp_over_vlan() {
        let f = udp_frame(Some(10));
        let mut k = FlowKey::ZERO;
        let p = extract(&f, 3, &mut k);
        assert_eq!(p.note, ParseNote::Complete);
        assert_eq!(k.in_port(), 3);
        assert_eq!(k.vlan_tci(), 0x100a);
        assert_eq!(k.dl_type(), 0x0800);
        assert_eq!(k.nw_src(), 0xc612_0001);
        assert_eq!(k.nw_proto(), 17);
        assert_eq!((k.tp_src(), k.tp_dst()), (1234, 53));
        assert_eq!(p.vlan, Some((0x8100, 10)));
    }

    #[test]
    fn truncated_ipv4_keeps_l2() {
        let f = udp_frame(None);
        let mut k = FlowKey::ZERO;
        let p = extract(&f[..30], 1, &mut k);
        assert_eq!(p.note, ParseNote::Ipv4Invalid);
        assert_eq!(k.dl_type(), 0x0800);
        assert_eq!(k.nw_src(), 0);
        assert_eq!(k.dl_src(), 0x0200_0000_0001);
    }

    #[test]
    fn short_vlan_tag_is_not_parsed() {
        let mut f = vec![0xffu8; 12];
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a]);
        let mut k = FlowKey::ZERO;
        let p = extract(&f, 1, &mut k);
        assert_eq!(p.note, ParseNote::VlanTruncated);
        assert_eq!(k.dl_type(), 0x8100);
        assert_eq!(k.vlan_tci(), 0);
    }

    #[test]
    fn llc_frame_gets_dl_type_none() {
        let mut f = vec![0x01, 0x80, 0xc2, 0, 0, 0, 2, 0, 0, 0, 0, 1, 0x00, 0x26];
        f.extend_from_slice(&[0x42, 0x42, 0x03, 0, 0, 0, 0, 0]);
        let mut k = FlowKey::ZERO;
        extract(&f, 1, &mut k);
        assert_eq!(k.dl_type(), DL_TYPE_NONE);
    }

    #[test]
    fn every_prefix_of_every_frame_is_safe() {
        let mut frames = vec![udp_frame(None), udp_frame(Some(5))];
        let mut v6 = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv6(
                [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                64,
            )
            .tcp(1, 2, 3, 4)
            .write(&mut v6, &[0; 10])
            .expect("write");
        frames.push(v6);
        for f in frames {
            for n in 0..=f.len() {
                let mut k = FlowKey::ZERO;
                let _ = extract(&f[..n], 1, &mut k);
            }
        }
    }
}
