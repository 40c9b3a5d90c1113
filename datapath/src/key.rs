//! The flow key: every field a rule can match, extracted once per frame.
//!
//! The key is eight 64-bit words (one cache line) so that masking, comparing
//! and hashing are a handful of word operations. Field positions are named in
//! one place, [`Field::loc`]; everything else goes through it.
//!
//! Field meanings follow Open vSwitch's `struct flow`:
//! - `vlan_tci` is the outer 802.1Q tag's TCI with bit 12 (CFI/DEI) forced to 1
//!   when a tag is present, and 0 when the frame is untagged;
//! - for ARP, `nw_src`/`nw_dst` hold the sender/target protocol addresses and
//!   `nw_proto` the low byte of the opcode;
//! - for ICMP and ICMPv6, `tp_src`/`tp_dst` hold the type and code;
//! - `nw_tos` is the whole IPv4 TOS / IPv6 traffic class byte (DSCP and ECN).

use std::fmt;

/// Number of 64-bit words in a [`FlowKey`].
pub const KEY_WORDS: usize = 8;

/// A flow key, or a mask over one (same layout, set bits = significant).
#[derive(Clone, Copy, Eq, Default)]
#[repr(C, align(64))]
pub struct FlowKey {
    /// The raw words; use the accessors unless you are masking or hashing.
    pub w: [u64; KEY_WORDS],
}

/// A field of the flow key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// OpenFlow ingress port number.
    InPort,
    /// Ethertype after the (outer) VLAN tag; 0x05ff for 802.3 frames without SNAP.
    DlType,
    /// Outer VLAN TCI with the CFI bit meaning "tag present".
    VlanTci,
    /// IP protocol, or the ARP opcode's low byte.
    NwProto,
    /// IPv4 TOS / IPv6 traffic class.
    NwTos,
    /// Ethernet source address.
    DlSrc,
    /// Ethernet destination address.
    DlDst,
    /// TCP/UDP/SCTP source port, ICMP type.
    TpSrc,
    /// TCP/UDP/SCTP destination port, ICMP code.
    TpDst,
    /// IPv4 source, ARP sender protocol address.
    NwSrc,
    /// IPv4 destination, ARP target protocol address.
    NwDst,
    /// High 64 bits of the IPv6 source.
    Ipv6SrcHi,
    /// Low 64 bits of the IPv6 source.
    Ipv6SrcLo,
    /// High 64 bits of the IPv6 destination.
    Ipv6DstHi,
    /// Low 64 bits of the IPv6 destination.
    Ipv6DstLo,
}

impl Field {
    /// Every field, in key order.
    pub const ALL: [Field; 15] = [
        Field::InPort,
        Field::DlType,
        Field::VlanTci,
        Field::NwProto,
        Field::NwTos,
        Field::DlSrc,
        Field::TpSrc,
        Field::DlDst,
        Field::TpDst,
        Field::NwSrc,
        Field::NwDst,
        Field::Ipv6SrcHi,
        Field::Ipv6SrcLo,
        Field::Ipv6DstHi,
        Field::Ipv6DstLo,
    ];

    /// (word, shift, width in bits) of the field inside the key.
    #[inline(always)]
    pub const fn loc(self) -> (usize, u32, u32) {
        match self {
            Field::InPort => (0, 0, 16),
            Field::DlType => (0, 16, 16),
            Field::VlanTci => (0, 32, 16),
            Field::NwProto => (0, 48, 8),
            Field::NwTos => (0, 56, 8),
            Field::DlSrc => (1, 0, 48),
            Field::TpSrc => (1, 48, 16),
            Field::DlDst => (2, 0, 48),
            Field::TpDst => (2, 48, 16),
            Field::NwSrc => (3, 0, 32),
            Field::NwDst => (3, 32, 32),
            Field::Ipv6SrcHi => (4, 0, 64),
            Field::Ipv6SrcLo => (5, 0, 64),
            Field::Ipv6DstHi => (6, 0, 64),
            Field::Ipv6DstLo => (7, 0, 64),
        }
    }

    /// All-ones value of the field's width.
    #[inline(always)]
    pub const fn full(self) -> u64 {
        let (_, _, width) = self.loc();
        if width == 64 {
            u64::MAX
        } else {
            (1u64 << width) - 1
        }
    }
}

impl FlowKey {
    /// The all-zero key (or the empty mask).
    pub const ZERO: FlowKey = FlowKey { w: [0; KEY_WORDS] };

    /// Reads a field.
    #[inline(always)]
    pub fn get(&self, f: Field) -> u64 {
        let (word, shift, _) = f.loc();
        (self.w[word] >> shift) & f.full()
    }

    /// Writes a field (the value is truncated to the field's width).
    #[inline(always)]
    pub fn set(&mut self, f: Field, v: u64) {
        let (word, shift, _) = f.loc();
        let m = f.full() << shift;
        self.w[word] = (self.w[word] & !m) | ((v << shift) & m);
    }

    /// Key AND mask, word by word.
    #[inline(always)]
    pub fn and(&self, mask: &FlowKey) -> FlowKey {
        let mut out = FlowKey::ZERO;
        for i in 0..KEY_WORDS {
            out.w[i] = self.w[i] & mask.w[i];
        }
        out
    }

    /// Key OR other, word by word.
    #[inline(always)]
    pub fn or(&self, other: &FlowKey) -> FlowKey {
        let mut out = FlowKey::ZERO;
        for i in 0..KEY_WORDS {
            out.w[i] = self.w[i] | other.w[i];
        }
        out
    }

    /// True when `(self & mask) == value` (value already masked).
    #[inline(always)]
    pub fn matches(&self, mask: &FlowKey, value: &FlowKey) -> bool {
        let mut diff = 0u64;
        for i in 0..KEY_WORDS {
            diff |= (self.w[i] & mask.w[i]) ^ value.w[i];
        }
        diff == 0
    }

    /// True when every bit set in `self` is also set in `other`.
    pub fn is_subset_of(&self, other: &FlowKey) -> bool {
        (0..KEY_WORDS).all(|i| self.w[i] & !other.w[i] == 0)
    }

    /// True when no bit is set.
    pub fn is_zero(&self) -> bool {
        self.w.iter().all(|&w| w == 0)
    }

    /// A fast, well-mixed 64-bit hash of the key.
    #[inline(always)]
    pub fn hash64(&self) -> u64 {
        crate::hash::hash_words(&self.w)
    }

    /// Ingress port.
    #[inline(always)]
    pub fn in_port(&self) -> u16 {
        self.get(Field::InPort) as u16
    }
    /// Ethertype.
    #[inline(always)]
    pub fn dl_type(&self) -> u16 {
        self.get(Field::DlType) as u16
    }
    /// Outer VLAN TCI (CFI set when tagged, 0 when untagged).
    #[inline(always)]
    pub fn vlan_tci(&self) -> u16 {
        self.get(Field::VlanTci) as u16
    }
    /// Ethernet source as a 48-bit number.
    #[inline(always)]
    pub fn dl_src(&self) -> u64 {
        self.get(Field::DlSrc)
    }
    /// Ethernet destination as a 48-bit number.
    #[inline(always)]
    pub fn dl_dst(&self) -> u64 {
        self.get(Field::DlDst)
    }
    /// IP protocol / ARP opcode.
    #[inline(always)]
    pub fn nw_proto(&self) -> u8 {
        self.get(Field::NwProto) as u8
    }
    /// IPv4 source / ARP SPA.
    #[inline(always)]
    pub fn nw_src(&self) -> u32 {
        self.get(Field::NwSrc) as u32
    }
    /// IPv4 destination / ARP TPA.
    #[inline(always)]
    pub fn nw_dst(&self) -> u32 {
        self.get(Field::NwDst) as u32
    }
    /// TOS byte.
    #[inline(always)]
    pub fn nw_tos(&self) -> u8 {
        self.get(Field::NwTos) as u8
    }
    /// L4 source port / ICMP type.
    #[inline(always)]
    pub fn tp_src(&self) -> u16 {
        self.get(Field::TpSrc) as u16
    }
    /// L4 destination port / ICMP code.
    #[inline(always)]
    pub fn tp_dst(&self) -> u16 {
        self.get(Field::TpDst) as u16
    }
    /// IPv6 source.
    pub fn ipv6_src(&self) -> u128 {
        ((self.w[4] as u128) << 64) | self.w[5] as u128
    }
    /// IPv6 destination.
    pub fn ipv6_dst(&self) -> u128 {
        ((self.w[6] as u128) << 64) | self.w[7] as u128
    }
    /// Sets the IPv6 source.
    pub fn set_ipv6_src(&mut self, a: u128) {
        self.w[4] = (a >> 64) as u64;
        self.w[5] = a as u64;
    }
    /// Sets the IPv6 destination.
    pub fn set_ipv6_dst(&mut self, a: u128) {
        self.w[6] = (a >> 64) as u64;
        self.w[7] = a as u64;
    }
}

impl PartialEq for FlowKey {
    /// Word-wise compare (no memcmp call on the hot path).
    #[inline(always)]
    fn eq(&self, other: &FlowKey) -> bool {
        let mut d = 0u64;
        for i in 0..KEY_WORDS {
            d |= self.w[i] ^ other.w[i];
        }
        d == 0
    }
}

impl std::hash::Hash for FlowKey {
    #[inline(always)]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash64());
    }
}

/// Formats a 48-bit MAC number as `aa:bb:cc:dd:ee:ff`.
#[derive(Debug, Clone, Copy)]
pub struct Mac(pub u64);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0.to_be_bytes();
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[2], b[3], b[4], b[5], b[6], b[7]
        )
    }
}

/// Reads 6 bytes as a 48-bit MAC number.
#[inline(always)]
pub fn mac_from_bytes(b: &[u8; 6]) -> u64 {
    u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
}

/// Writes a 48-bit MAC number as 6 bytes.
#[inline(always)]
pub fn mac_to_bytes(m: u64) -> [u8; 6] {
    let b = m.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

impl fmt::Debug for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FlowKey(")?;
        for (i, w) in self.w.iter().enumerate() {
            if i > 0 {
                write!(f, " ")?;
            }
            write!(f, "{w:016x}")?;
        }
        write!(f, ")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_do_not_overlap_and_cover_their_width() {
        let mut seen = FlowKey::ZERO;
        for f in Field::ALL {
            let mut k = FlowKey::ZERO;
            k.set(f, u64::MAX);
            assert_eq!(k.get(f), f.full(), "{f:?}");
            assert!(k.and(&seen).is_zero(), "{f:?} overlaps");
            seen = seen.or(&k);
        }
    }

    #[test]
    fn set_truncates_and_matches() {
        let mut k = FlowKey::ZERO;
        k.set(Field::TpDst, 0x1_0050);
        assert_eq!(k.tp_dst(), 0x50);
        let mut m = FlowKey::ZERO;
        m.set(Field::TpDst, 0xffff);
        assert!(k.matches(&m, &k.and(&m)));
        let mut other = k;
        other.set(Field::TpDst, 81);
        assert!(!other.matches(&m, &k.and(&m)));
        assert_eq!(Mac(0x0200_0000_0001).to_string(), "02:00:00:00:00:01");
        assert_eq!(
            mac_from_bytes(&mac_to_bytes(0x1234_5678_9abc)),
            0x1234_5678_9abc
        );
    }
}
