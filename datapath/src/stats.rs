//! Counters: per port, with a named reason for every drop.

use serde::Serialize;

use crate::parse::ParseNote;

macro_rules! drop_reasons {
    ($( $(#[$doc:meta])* $name:ident = $text:literal, )*) => {
        /// Why a frame was dropped. Every drop is counted under exactly one.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum DropReason { $( $(#[$doc])* $name, )* }

        impl DropReason {
            /// All reasons, in counter order.
            pub const ALL: &'static [DropReason] = &[ $( DropReason::$name, )* ];
            /// The counter name (snake case).
            pub fn name(self) -> &'static str {
                match self { $( DropReason::$name => $text, )* }
            }
        }
    };
}

drop_reasons! {
    /// Shorter than an Ethernet header (14 bytes).
    Runt = "runt",
    /// Longer than 9216 bytes, the largest frame xsw carries.
    Oversize = "oversize",
    /// No rule in table 0 matched.
    TableMiss = "table_miss",
    /// The matching rule's actions send the frame nowhere.
    ActionDrop = "action_drop",
    /// `output:N` named the input port (OpenFlow requires `in_port` for that).
    OutputToInPort = "output_to_in_port",
    /// `output:N` named a port that does not exist.
    NoSuchPort = "no_such_port",
    /// NORMAL: the ethertype is a VLAN TPID but the tag is truncated.
    PartialVlanTag = "normal_partial_vlan",
    /// NORMAL: the frame's VLAN is not allowed on the input port.
    VlanNotAllowed = "normal_vlan_not_allowed",
    /// NORMAL: destination is a reserved multicast address (STP, LACP, ...).
    ReservedMulticast = "normal_reserved_multicast",
    /// NORMAL: the destination was learned on the input port.
    LearnedOnInPort = "normal_learned_on_in_port",
    /// NORMAL: flooding found no other port in the frame's VLAN.
    NoFloodPort = "normal_no_flood_port",
    /// Too many resubmits (a loop in the tables): the whole translation is dropped.
    ResubmitLimit = "resubmit_limit",
    /// Longer than the egress port's MTU allows.
    TxMtu = "tx_mtu",
    /// No free packet buffer.
    NoBuffer = "no_buffer",
    /// The egress queue was full.
    QueueFull = "queue_full",
    /// The port failed to send.
    TxError = "tx_error",
    /// The output port is down (its device vanished).
    PortDown = "port_down",
    /// Over the ingress port's policing rate.
    Policed = "policed",
    /// Over the rate of the meter a rule sent it through.
    Meter = "meter",
}

/// Number of drop reasons.
pub const N_DROP_REASONS: usize = DropReason::ALL.len();

/// One counter per drop reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropCounters(pub [u64; N_DROP_REASONS]);

impl DropCounters {
    /// Counts one drop.
    #[inline(always)]
    pub fn add(&mut self, r: DropReason, n: u64) {
        self.0[r as usize] += n;
    }
    /// The count for `r`.
    pub fn get(&self, r: DropReason) -> u64 {
        self.0[r as usize]
    }
    /// Sum of all drops.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
    /// Non-zero counters by name.
    pub fn nonzero(&self) -> Vec<(&'static str, u64)> {
        DropReason::ALL
            .iter()
            .filter(|r| self.get(**r) > 0)
            .map(|r| (r.name(), self.get(*r)))
            .collect()
    }
}

impl Serialize for DropCounters {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let nz = self.nonzero();
        let mut m = s.serialize_map(Some(nz.len()))?;
        for (k, v) in nz {
            m.serialize_entry(k, &v)?;
        }
        m.end()
    }
}

/// Frames whose headers stopped the parser early (they are still switched on
/// what did parse), by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MalformedCounters {
    /// VLAN TPID with a truncated tag.
    pub vlan_truncated: u64,
    /// Bad IPv4 header.
    pub ipv4_invalid: u64,
    /// Bad IPv6 header.
    pub ipv6_invalid: u64,
    /// Bad IPv6 extension header.
    pub ipv6_ext_invalid: u64,
    /// Truncated L4 header.
    pub l4_truncated: u64,
}

impl MalformedCounters {
    /// Counts a parser note.
    #[inline(always)]
    pub fn add(&mut self, n: ParseNote) {
        match n {
            ParseNote::VlanTruncated => self.vlan_truncated += 1,
            ParseNote::Ipv4Invalid => self.ipv4_invalid += 1,
            ParseNote::Ipv6Invalid => self.ipv6_invalid += 1,
            ParseNote::Ipv6ExtInvalid => self.ipv6_ext_invalid += 1,
            ParseNote::L4Truncated => self.l4_truncated += 1,
            ParseNote::Complete | ParseNote::Runt | ParseNote::ArpUnparsed => {}
        }
    }
    /// Non-zero counters by name.
    pub fn nonzero(&self) -> Vec<(&'static str, u64)> {
        [
            ("vlan_truncated", self.vlan_truncated),
            ("ipv4_invalid", self.ipv4_invalid),
            ("ipv6_invalid", self.ipv6_invalid),
            ("ipv6_ext_invalid", self.ipv6_ext_invalid),
            ("l4_truncated", self.l4_truncated),
        ]
        .into_iter()
        .filter(|(_, v)| *v > 0)
        .collect()
    }
}

impl Serialize for MalformedCounters {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let nz = self.nonzero();
        let mut m = s.serialize_map(Some(nz.len()))?;
        for (k, v) in nz {
            m.serialize_entry(k, &v)?;
        }
        m.end()
    }
}

/// A port's counters as the pipeline sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PortStats {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Drops, by reason (ingress drops count on the input port, egress drops
    /// on the output port).
    pub drops: DropCounters,
    /// Frames switched despite inconsistent headers, by kind.
    pub malformed: MalformedCounters,
}

/// Per-table lookup counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TableStats {
    /// Lookups.
    pub lookups: u64,
    /// Lookups that found a rule.
    pub matched: u64,
}
