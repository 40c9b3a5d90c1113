//! `ovs-ofctl add-flow` syntax: parsing with positions, and printing back.
//!
//! A rule is `FIELD[=VALUE]` items separated by commas or spaces, then
//! `actions=` and a comma-separated action list that runs to the end of the
//! line. Every error carries the 1-based column of the item at fault, and a
//! rule either parses whole or not at all.
//!
//! Stricter than `ovs-ofctl` on purpose: OVS silently drops a field whose
//! prerequisite is missing (`nw_dst=…` without `ip` installs a rule that
//! matches everything) and silently truncates out-of-range values
//! (`dl_vlan=4096` becomes 0); both are errors here, with the column.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::action::{Action, OFPP_MAX};
use super::{Match, Rule, DEFAULT_PRIORITY, MAX_TABLE};
use crate::key::{Field, Mac};
use crate::parse::consts::*;

/// A flow syntax error at a column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowError {
    col: usize,
    msg: String,
}

impl FlowError {
    /// An error at 1-based column `col`.
    pub fn new(col: usize, msg: impl Into<String>) -> Self {
        FlowError {
            col,
            msg: msg.into(),
        }
    }
    /// 1-based column (in characters) where the problem starts.
    pub fn col(&self) -> usize {
        self.col
    }
    /// What is wrong.
    pub fn msg(&self) -> &str {
        &self.msg
    }
    /// A two-line rendering: the rule, and a caret under the column.
    pub fn render(&self, line: &str) -> String {
        format!("  {line}\n  {}^", " ".repeat(self.col.saturating_sub(1)))
    }
}

impl fmt::Display for FlowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for FlowError {}

/// Resolves port names used in `in_port=NAME` and `output:NAME`.
pub trait PortNames {
    /// The OpenFlow number of the port called `name`.
    fn ofport(&self, name: &str) -> Option<u16>;
}

/// No port names known: only numbers are accepted.
impl PortNames for () {
    fn ofport(&self, _: &str) -> Option<u16> {
        None
    }
}

impl<F: Fn(&str) -> Option<u16>> PortNames for F {
    fn ofport(&self, name: &str) -> Option<u16> {
        self(name)
    }
}

/// The largest meter id.
pub const MAX_METER: u32 = 65_535;

/// A match with the rule-identifying fields around it (for deleting rules).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatchSpec {
    /// `table=` if given.
    pub table: Option<u8>,
    /// `priority=` if given.
    pub priority: Option<u16>,
    /// `cookie=V[/M]` if given.
    pub cookie: Option<(u64, u64)>,
    /// The match.
    pub matches: Match,
}

/// One `key[=value]` item with its column.
#[derive(Debug, Clone, Copy)]
struct Item<'a> {
    key: &'a str,
    value: Option<&'a str>,
    col: usize,
    value_col: usize,
}

fn char_col(s: &str, byte: usize) -> usize {
    s[..byte].chars().count() + 1
}

/// Splits the match part into items.
fn split_items(line: &str, start: usize, end: usize) -> Vec<Item<'_>> {
    let mut items = Vec::new();
    let bytes = line.as_bytes();
    let mut i = start;
    while i < end {
        while i < end && matches!(bytes[i], b',' | b' ' | b'\t' | b'\r' | b'\n') {
            i += 1;
        }
        if i >= end {
            break;
        }
        let s = i;
        while i < end && !matches!(bytes[i], b',' | b' ' | b'\t' | b'\r' | b'\n') {
            i += 1;
        }
        let tok = &line[s..i];
        let (key, value, voff) = match tok.find('=') {
            Some(eq) => (&tok[..eq], Some(&tok[eq + 1..]), eq + 1),
            None => (tok, None, 0),
        };
        items.push(Item {
            key,
            value,
            col: char_col(line, s),
            value_col: char_col(line, s + voff),
        });
    }
    items
}

/// Finds `actions=` (or `action=`) at an item boundary: (start of the word,
/// start of the action list).
fn find_actions(line: &str) -> Option<(usize, usize)> {
    let bytes = line.as_bytes();
    let mut from = 0;
    while let Some(pos) = line[from..].find("action") {
        let at = from + pos;
        let boundary = at == 0 || matches!(bytes[at - 1], b',' | b' ' | b'\t');
        let rest = &line[at + 6..];
        let skip = if rest.starts_with("s=") {
            Some(8)
        } else if rest.starts_with('=') {
            Some(7)
        } else {
            None
        };
        if boundary {
            if let Some(skip) = skip {
                return Some((at, at + skip));
            }
        }
        from = at + 6;
    }
    None
}

fn parse_uint(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        if h.is_empty() {
            return None;
        }
        u64::from_str_radix(h, 16).ok()
    } else {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    }
}

fn parse_mac(s: &str) -> Option<u64> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    let mut v = 0u64;
    for p in parts {
        if p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        v = (v << 8) | u64::from_str_radix(p, 16).ok()?;
    }
    Some(v)
}

/// Every keyword a match may use (for "did you mean" hints).
const MATCH_FIELDS: &[&str] = &[
    "in_port",
    "dl_src",
    "dl_dst",
    "eth_src",
    "eth_dst",
    "dl_type",
    "eth_type",
    "dl_vlan",
    "dl_vlan_pcp",
    "vlan_tci",
    "nw_src",
    "nw_dst",
    "ip_src",
    "ip_dst",
    "arp_spa",
    "arp_tpa",
    "ipv6_src",
    "ipv6_dst",
    "nw_proto",
    "ip_proto",
    "arp_op",
    "nw_tos",
    "ip_dscp",
    "tp_src",
    "tp_dst",
    "tcp_src",
    "tcp_dst",
    "udp_src",
    "udp_dst",
    "sctp_src",
    "sctp_dst",
    "icmp_type",
    "icmp_code",
    "icmpv6_type",
    "icmpv6_code",
    "ip",
    "ipv6",
    "arp",
    "rarp",
    "tcp",
    "udp",
    "sctp",
    "icmp",
    "igmp",
    "tcp6",
    "udp6",
    "sctp6",
    "icmp6",
    "table",
    "priority",
    "cookie",
    "idle_timeout",
    "hard_timeout",
    "actions",
];

/// Levenshtein distance, for suggestions.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// ` (did you mean `x`?)` when a known keyword is close to `word`.
fn suggest(word: &str) -> String {
    // Closest first; among equals, prefer a keyword that contains the word's
    // letters in order (`ip6` → `ipv6`, not `ip`).
    let subseq = |k: &str| {
        let mut it = k.chars();
        word.chars().all(|c| it.any(|x| x == c))
    };
    MATCH_FIELDS
        .iter()
        .map(|k| (distance(word, k), !subseq(k), *k))
        .filter(|(d, _, _)| *d <= 2)
        .min()
        .map_or_else(String::new, |(_, _, k)| format!(" (did you mean `{k}`?)"))
}

/// Context for parsing one rule.
struct Parser<'a, P: PortNames + ?Sized> {
    ports: &'a P,
    m: Match,
    /// Column where each match field was first set (for prerequisite errors).
    seen: Vec<(&'static str, usize)>,
    /// Port fields named for one protocol (`tcp_dst`...): (name, protocol, column).
    l4_need: Vec<(String, u8, usize)>,
}

impl<P: PortNames + ?Sized> Parser<'_, P> {
    fn port(&self, s: &str, col: usize, what: &str) -> Result<u16, FlowError> {
        if let Some(n) = parse_uint(s) {
            if n == 0 || n >= OFPP_MAX as u64 {
                return Err(FlowError::new(
                    col,
                    format!("{what}: port {s} is out of range (1-{})", OFPP_MAX - 1),
                ));
            }
            return Ok(n as u16);
        }
        self.ports.ofport(s).ok_or_else(|| {
            FlowError::new(col, format!("{what}: unknown port `{s}` (use a port number or a port name from the configuration)"))
        })
    }

    fn note(&mut self, name: &'static str, col: usize) -> Result<(), FlowError> {
        if let Some((_, first)) = self.seen.iter().find(|(n, _)| *n == name) {
            return Err(FlowError::new(
                col,
                format!("{name} is given twice (first at column {first})"),
            ));
        }
        self.seen.push((name, col));
        Ok(())
    }

    /// Sets a field, refusing to silently change bits set by another item.
    fn set(
        &mut self,
        field: Field,
        value: u64,
        mask: u64,
        col: usize,
        what: &str,
    ) -> Result<(), FlowError> {
        let (ov, om) = self.m.get(field);
        let overlap = om & mask;
        if overlap != 0 && (ov & overlap) != (value & overlap) {
            return Err(FlowError::new(
                col,
                format!("{what} contradicts an earlier field of this rule"),
            ));
        }
        self.m.set(field, value, mask);
        Ok(())
    }

    fn dl_type_is(&self, t: &[u16]) -> bool {
        let (v, m) = self.m.get(Field::DlType);
        m == 0xffff && t.contains(&(v as u16))
    }

    fn nw_proto_is(&self, p: &[u8]) -> bool {
        let (v, m) = self.m.get(Field::NwProto);
        m == 0xff && p.contains(&(v as u8))
    }

    fn match_item(&mut self, it: &Item<'_>) -> Result<(), FlowError> {
        let key = it.key;
        let col = it.col;
        // Shorthands first.
        let short: Option<(u16, Option<u8>)> = match key {
            "ip" => Some((ETH_TYPE_IP, None)),
            "ipv6" => Some((ETH_TYPE_IPV6, None)),
            "arp" => Some((ETH_TYPE_ARP, None)),
            "rarp" => Some((ETH_TYPE_RARP, None)),
            "tcp" => Some((ETH_TYPE_IP, Some(IPPROTO_TCP))),
            "udp" => Some((ETH_TYPE_IP, Some(IPPROTO_UDP))),
            "sctp" => Some((ETH_TYPE_IP, Some(IPPROTO_SCTP))),
            "icmp" => Some((ETH_TYPE_IP, Some(IPPROTO_ICMP))),
            "igmp" => Some((ETH_TYPE_IP, Some(IPPROTO_IGMP))),
            "tcp6" => Some((ETH_TYPE_IPV6, Some(IPPROTO_TCP))),
            "udp6" => Some((ETH_TYPE_IPV6, Some(IPPROTO_UDP))),
            "sctp6" => Some((ETH_TYPE_IPV6, Some(IPPROTO_SCTP))),
            "icmp6" => Some((ETH_TYPE_IPV6, Some(IPPROTO_ICMPV6))),
            _ => None,
        };
        if let Some((dl, proto)) = short {
            if let Some(v) = it.value {
                return Err(FlowError::new(
                    col,
                    format!("`{key}` takes no value (got `{key}={v}`)"),
                ));
            }
            self.set(Field::DlType, dl as u64, 0xffff, col, key)?;
            if let Some(p) = proto {
                self.set(Field::NwProto, p as u64, 0xff, col, key)?;
            }
            return Ok(());
        }

        let Some(val) = it.value else {
            if MATCH_FIELDS.contains(&key) {
                return Err(FlowError::new(
                    col,
                    format!("`{key}` needs a value: `{key}=VALUE`"),
                ));
            }
            return Err(FlowError::new(
                col,
                format!("unknown field or shorthand `{key}`{}", suggest(key)),
            ));
        };
        let vcol = it.value_col;
        let bad = |what: &str| FlowError::new(vcol, format!("{key}: `{val}` is not {what}"));
        let (v, mask) = match val.split_once('/') {
            Some((v, m)) => (v, Some(m)),
            None => (val, None),
        };
        match key {
            "in_port" => {
                self.note("in_port", col)?;
                let p = self.port(val, vcol, "in_port")?;
                self.set(Field::InPort, p as u64, 0xffff, col, key)?;
            }
            "dl_src" | "dl_dst" | "eth_src" | "eth_dst" => {
                let name = if key.ends_with("src") {
                    "dl_src"
                } else {
                    "dl_dst"
                };
                self.note(name, col)?;
                let mv = parse_mac(v).ok_or_else(|| bad("a MAC address like 02:00:00:00:00:01"))?;
                let mm = match mask {
                    Some(m) => parse_mac(m).ok_or_else(|| bad("MAC/MASK"))?,
                    None => 0xffff_ffff_ffff,
                };
                let f = if name == "dl_src" {
                    Field::DlSrc
                } else {
                    Field::DlDst
                };
                self.set(f, mv, mm, col, key)?;
            }
            "dl_type" | "eth_type" => {
                self.note("dl_type", col)?;
                let t = parse_uint(val)
                    .filter(|t| *t <= 0xffff)
                    .ok_or_else(|| bad("an ethertype (0-0xffff)"))?;
                self.set(Field::DlType, t, 0xffff, col, key)?;
            }
            "dl_vlan" => {
                self.note("dl_vlan", col)?;
                let vid = parse_uint(val)
                    .filter(|x| *x <= 4095 || *x == 0xffff)
                    .ok_or_else(|| bad("a VLAN ID (0-4095, or 0xffff for untagged frames)"))?;
                if vid == 0xffff {
                    self.set(Field::VlanTci, 0, 0xffff, col, key)?;
                } else {
                    self.set(
                        Field::VlanTci,
                        (VLAN_CFI as u64) | vid,
                        (VLAN_CFI | VLAN_VID_MASK) as u64,
                        col,
                        key,
                    )?;
                }
            }
            "dl_vlan_pcp" => {
                self.note("dl_vlan_pcp", col)?;
                let pcp = parse_uint(val)
                    .filter(|x| *x <= 7)
                    .ok_or_else(|| bad("a priority code point (0-7)"))?;
                self.set(
                    Field::VlanTci,
                    (VLAN_CFI as u64) | (pcp << 13),
                    (VLAN_CFI | VLAN_PCP_MASK) as u64,
                    col,
                    key,
                )?;
            }
            "vlan_tci" => {
                self.note("vlan_tci", col)?;
                let tv = parse_uint(v)
                    .filter(|x| *x <= 0xffff)
                    .ok_or_else(|| bad("a TCI (0-0xffff)"))?;
                let tm = match mask {
                    Some(m) => parse_uint(m)
                        .filter(|x| *x <= 0xffff)
                        .ok_or_else(|| bad("TCI/MASK"))?,
                    None => 0xffff,
                };
                self.set(Field::VlanTci, tv, tm, col, key)?;
            }
            "nw_src" | "nw_dst" | "ip_src" | "ip_dst" | "arp_spa" | "arp_tpa" => {
                let name: &'static str = match key {
                    "nw_src" | "ip_src" => "nw_src",
                    "nw_dst" | "ip_dst" => "nw_dst",
                    "arp_spa" => "arp_spa",
                    _ => "arp_tpa",
                };
                self.note(name, col)?;
                let a: Ipv4Addr = v
                    .parse()
                    .map_err(|_| bad("an IPv4 address, optionally /PREFIX or /MASK"))?;
                let m: u32 = match mask {
                    None => u32::MAX,
                    Some(m) => {
                        if let Ok(mm) = m.parse::<Ipv4Addr>() {
                            u32::from(mm)
                        } else {
                            let n = parse_uint(m)
                                .filter(|n| *n <= 32)
                                .ok_or_else(|| bad("ADDRESS/PREFIX with a prefix of 0-32"))?;
                            if n == 0 {
                                0
                            } else {
                                u32::MAX << (32 - n)
                            }
                        }
                    }
                };
                let f = if name.ends_with("src") || name == "arp_spa" {
                    Field::NwSrc
                } else {
                    Field::NwDst
                };
                self.set(f, u32::from(a) as u64, m as u64, col, key)?;
            }
            "ipv6_src" | "ipv6_dst" => {
                let name: &'static str = if key == "ipv6_src" {
                    "ipv6_src"
                } else {
                    "ipv6_dst"
                };
                self.note(name, col)?;
                let a: Ipv6Addr = v
                    .parse()
                    .map_err(|_| bad("an IPv6 address, optionally /PREFIX"))?;
                let m: u128 = match mask {
                    None => u128::MAX,
                    Some(m) => {
                        if let Ok(mm) = m.parse::<Ipv6Addr>() {
                            u128::from(mm)
                        } else {
                            let n = parse_uint(m)
                                .filter(|n| *n <= 128)
                                .ok_or_else(|| bad("ADDRESS/PREFIX with a prefix of 0-128"))?;
                            if n == 0 {
                                0
                            } else {
                                u128::MAX << (128 - n)
                            }
                        }
                    }
                };
                let a = u128::from(a);
                let (hi, lo) = if name == "ipv6_src" {
                    (Field::Ipv6SrcHi, Field::Ipv6SrcLo)
                } else {
                    (Field::Ipv6DstHi, Field::Ipv6DstLo)
                };
                self.set(hi, (a >> 64) as u64, (m >> 64) as u64, col, key)?;
                self.set(lo, a as u64, m as u64, col, key)?;
            }
            "nw_proto" | "ip_proto" => {
                self.note("nw_proto", col)?;
                let p = parse_uint(val)
                    .filter(|x| *x <= 255)
                    .ok_or_else(|| bad("an IP protocol number (0-255)"))?;
                self.set(Field::NwProto, p, 0xff, col, key)?;
            }
            "arp_op" => {
                self.note("arp_op", col)?;
                let p = parse_uint(val)
                    .filter(|x| *x <= 255)
                    .ok_or_else(|| bad("an ARP opcode (0-255)"))?;
                self.set(Field::NwProto, p, 0xff, col, key)?;
            }
            "nw_tos" => {
                self.note("nw_tos", col)?;
                let t = parse_uint(val)
                    .filter(|x| *x <= 255)
                    .ok_or_else(|| bad("a TOS value (0-255)"))?;
                // As in OVS, the two ECN bits are ignored: nw_tos matches DSCP only.
                self.set(Field::NwTos, t & 0xfc, 0xfc, col, key)?;
            }
            "ip_dscp" => {
                self.note("ip_dscp", col)?;
                let d = parse_uint(val)
                    .filter(|x| *x <= 63)
                    .ok_or_else(|| bad("a DSCP value (0-63)"))?;
                self.set(Field::NwTos, d << 2, 0xfc, col, key)?;
            }
            "tp_src" | "tp_dst" | "tcp_src" | "tcp_dst" | "udp_src" | "udp_dst" | "sctp_src"
            | "sctp_dst" => {
                let name: &'static str = if key.ends_with("src") {
                    "tp_src"
                } else {
                    "tp_dst"
                };
                self.note(name, col)?;
                // tcp_dst, udp_dst and sctp_dst also name their protocol.
                let proto = match key.split('_').next() {
                    Some("tcp") => Some(IPPROTO_TCP),
                    Some("udp") => Some(IPPROTO_UDP),
                    Some("sctp") => Some(IPPROTO_SCTP),
                    _ => None,
                };
                if let Some(pr) = proto {
                    self.l4_need.push((key.to_string(), pr, col));
                }
                let pv = parse_uint(v)
                    .filter(|x| *x <= 0xffff)
                    .ok_or_else(|| bad("a port number (0-65535), optionally /MASK"))?;
                let pm = match mask {
                    Some(m) => parse_uint(m)
                        .filter(|x| *x <= 0xffff)
                        .ok_or_else(|| bad("PORT/MASK"))?,
                    None => 0xffff,
                };
                let f = if name == "tp_src" {
                    Field::TpSrc
                } else {
                    Field::TpDst
                };
                self.set(f, pv, pm, col, key)?;
            }
            "icmp_type" | "icmp_code" | "icmpv6_type" | "icmpv6_code" => {
                let name: &'static str = if key.ends_with("type") {
                    "icmp_type"
                } else {
                    "icmp_code"
                };
                self.note(name, col)?;
                let t = parse_uint(val)
                    .filter(|x| *x <= 255)
                    .ok_or_else(|| bad("a number from 0 to 255"))?;
                let f = if name == "icmp_type" {
                    Field::TpSrc
                } else {
                    Field::TpDst
                };
                self.set(f, t, 0xffff, col, key)?;
            }
            _ => {
                return Err(FlowError::new(
                    col,
                    format!("unknown match field `{key}`{}", suggest(key)),
                ))
            }
        }
        Ok(())
    }

    /// Checks that every field's prerequisite (`ip`, `tcp`, ...) is present.
    fn check_prereqs(&self) -> Result<(), FlowError> {
        for (name, proto, col) in &self.l4_need {
            if !self.nw_proto_is(&[*proto]) || !self.dl_type_is(&[ETH_TYPE_IP, ETH_TYPE_IPV6]) {
                let sh = match *proto {
                    IPPROTO_TCP => "tcp",
                    IPPROTO_UDP => "udp",
                    _ => "sctp",
                };
                return Err(FlowError::new(
                    *col,
                    format!(
                        "{name} needs a {} match: add `{sh}` (`{sh}6` for IPv6) to the rule",
                        sh.to_uppercase()
                    ),
                ));
            }
        }
        for &(name, col) in &self.seen {
            let ok = match name {
                "nw_src" | "nw_dst" => self.dl_type_is(&[ETH_TYPE_IP, ETH_TYPE_ARP, ETH_TYPE_RARP]),
                "arp_spa" | "arp_tpa" | "arp_op" => self.dl_type_is(&[ETH_TYPE_ARP, ETH_TYPE_RARP]),
                "ipv6_src" | "ipv6_dst" => self.dl_type_is(&[ETH_TYPE_IPV6]),
                "nw_proto" => {
                    self.dl_type_is(&[ETH_TYPE_IP, ETH_TYPE_IPV6, ETH_TYPE_ARP, ETH_TYPE_RARP])
                }
                "nw_tos" | "ip_dscp" => self.dl_type_is(&[ETH_TYPE_IP, ETH_TYPE_IPV6]),
                "tp_src" | "tp_dst" => {
                    self.dl_type_is(&[ETH_TYPE_IP, ETH_TYPE_IPV6])
                        && self.nw_proto_is(&[IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP])
                }
                "icmp_type" | "icmp_code" => {
                    (self.dl_type_is(&[ETH_TYPE_IP]) && self.nw_proto_is(&[IPPROTO_ICMP]))
                        || (self.dl_type_is(&[ETH_TYPE_IPV6])
                            && self.nw_proto_is(&[IPPROTO_ICMPV6]))
                }
                _ => true,
            };
            if !ok {
                let need = match name {
                    "nw_src" | "nw_dst" => "an IPv4 or ARP match: add `ip` (or `arp`)",
                    "arp_spa" | "arp_tpa" | "arp_op" => "an ARP match: add `arp`",
                    "ipv6_src" | "ipv6_dst" => "an IPv6 match: add `ipv6`",
                    "nw_proto" => "an IP match: add `ip` or `ipv6`",
                    "nw_tos" | "ip_dscp" => "an IP match: add `ip` or `ipv6`",
                    "tp_src" | "tp_dst" => {
                        "a TCP, UDP or SCTP match: add `tcp` or `udp` (`tcp6`/`udp6` for IPv6)"
                    }
                    _ => "an ICMP match: add `icmp` (or `icmp6`)",
                };
                return Err(FlowError::new(
                    col,
                    format!("{name} needs {need} to the rule"),
                ));
            }
        }
        Ok(())
    }
}

fn parse_actions<P: PortNames + ?Sized>(
    line: &str,
    start: usize,
    ports: &P,
    table: u8,
) -> Result<Vec<Action>, FlowError> {
    // Split on commas outside parentheses.
    let bytes = line.as_bytes();
    let mut toks: Vec<(usize, usize)> = Vec::new();
    let mut depth = 0i32;
    let mut s = start;
    for (i, &b) in bytes.iter().enumerate().skip(start) {
        match b {
            b'(' => depth += 1,
            b')' => depth -= 1,
            b',' if depth == 0 => {
                toks.push((s, i));
                s = i + 1;
            }
            _ => {}
        }
    }
    toks.push((s, bytes.len()));
    if depth != 0 {
        return Err(FlowError::new(
            char_col(line, start),
            "unbalanced parentheses in actions",
        ));
    }
    let mut out = Vec::new();
    let mut drop_col = None;
    let mut goto_col: Option<usize> = None;
    for (a, b) in toks {
        let raw = &line[a..b];
        let lead = raw.len() - raw.trim_start().len();
        let tok = raw.trim();
        let col = char_col(line, a + lead);
        if tok.is_empty() {
            if out.is_empty() && drop_col.is_none() && line[start..].trim().is_empty() {
                break; // `actions=` alone: drop
            }
            return Err(FlowError::new(col, "empty action (two commas in a row?)"));
        }
        if let Some(g) = goto_col {
            return Err(FlowError::new(
                col,
                format!("goto_table must be the last action (it is at column {g})"),
            ));
        }
        let (name, arg, arg_off) = if let Some(p) = tok.find([':', '=']) {
            (&tok[..p], Some(&tok[p + 1..]), p + 1)
        } else if let Some(p) = tok.find('(') {
            if !tok.ends_with(')') {
                return Err(FlowError::new(
                    col,
                    format!("`{tok}`: missing closing parenthesis"),
                ));
            }
            (&tok[..p], Some(&tok[p + 1..tok.len() - 1]), p + 1)
        } else {
            (tok, None, 0)
        };
        let acol = char_col(line, a + lead + arg_off);
        let lname = name.to_ascii_lowercase();
        let need_arg = |what: &str| -> Result<&str, FlowError> {
            arg.filter(|s| !s.is_empty())
                .ok_or_else(|| FlowError::new(col, format!("{lname} needs an argument: {what}")))
        };
        let num = |s: &str, max: u64, what: &str| -> Result<u64, FlowError> {
            parse_uint(s)
                .filter(|v| *v <= max)
                .ok_or_else(|| FlowError::new(acol, format!("{lname}: `{s}` is not {what}")))
        };
        let port = |s: &str| -> Result<u16, FlowError> {
            if let Some(n) = parse_uint(s) {
                if n == 0 || n >= OFPP_MAX as u64 {
                    return Err(FlowError::new(
                        acol,
                        format!("{lname}: port {s} is out of range (1-{})", OFPP_MAX - 1),
                    ));
                }
                return Ok(n as u16);
            }
            ports
                .ofport(s)
                .ok_or_else(|| FlowError::new(acol, format!("{lname}: unknown port `{s}`")))
        };
        let act = match lname.as_str() {
            "drop" => {
                drop_col = Some(col);
                continue;
            }
            "output" => Action::Output(port(need_arg("a port, e.g. output:2")?)?),
            "normal" => Action::Normal,
            "flood" => Action::Flood,
            "all" => Action::All,
            "in_port" => Action::InPort,
            "mod_vlan_vid" | "set_vlan_vid" => {
                Action::SetVlanVid(
                    num(need_arg("a VLAN ID 0-4095")?, 4095, "a VLAN ID (0-4095)")? as u16,
                )
            }
            "mod_vlan_pcp" | "set_vlan_pcp" => {
                Action::SetVlanPcp(
                    num(need_arg("a PCP 0-7")?, 7, "a priority code point (0-7)")? as u8,
                )
            }
            "strip_vlan" | "pop_vlan" => Action::StripVlan,
            "push_vlan" => {
                let t = num(
                    need_arg("an ethertype, 0x8100 or 0x88a8")?,
                    0xffff,
                    "an ethertype",
                )? as u16;
                if t != ETH_TYPE_VLAN && t != ETH_TYPE_VLAN_8021AD {
                    return Err(FlowError::new(acol, format!("push_vlan: ethertype {t:#06x} is not a VLAN TPID (use 0x8100 or 0x88a8)")));
                }
                Action::PushVlan(t)
            }
            "mod_dl_src" | "mod_dl_dst" => {
                let s = need_arg("a MAC address")?;
                let m = parse_mac(s).ok_or_else(|| {
                    FlowError::new(acol, format!("{lname}: `{s}` is not a MAC address"))
                })?;
                if lname == "mod_dl_src" {
                    Action::SetDlSrc(m)
                } else {
                    Action::SetDlDst(m)
                }
            }
            "set_queue" => Action::SetQueue(num(
                need_arg("a queue number")?,
                u32::MAX as u64 - 1,
                "a queue number",
            )? as u32),
            "meter" => {
                let s = need_arg("a meter id")?;
                let id = num(s, MAX_METER as u64, "a meter id")?;
                if id == 0 {
                    return Err(FlowError::new(acol, "meter: ids start at 1"));
                }
                Action::Meter(id as u32)
            }
            "resubmit" => {
                let s = need_arg("a port, or (PORT,TABLE)")?;
                if tok[name.len()..].starts_with('(') {
                    let (p, t) = s.split_once(',').unwrap_or((s, ""));
                    let p = p.trim();
                    let t = t.trim();
                    let in_port = if p.is_empty() { None } else { Some(port(p)?) };
                    let table = if t.is_empty() {
                        None
                    } else {
                        Some(num(
                            t,
                            MAX_TABLE as u64,
                            "a table number (0-253; OVS keeps 254 for itself)",
                        )? as u8)
                    };
                    if in_port.is_none() && table.is_none() {
                        return Err(FlowError::new(
                            acol,
                            "resubmit needs a port or a table: resubmit(,TABLE) or resubmit(PORT,)",
                        ));
                    }
                    Action::Resubmit { in_port, table }
                } else {
                    Action::Resubmit {
                        in_port: Some(port(s)?),
                        table: None,
                    }
                }
            }
            "goto_table" => {
                let t = num(
                    need_arg("a table number")?,
                    MAX_TABLE as u64,
                    "a table number (0-253; OVS keeps 254 for itself)",
                )? as u8;
                if t <= table {
                    return Err(FlowError::new(acol, format!("goto_table:{t} must go to a later table than this rule's table {table}")));
                }
                goto_col = Some(col);
                Action::GotoTable(t)
            }
            "controller" | "local" | "learn" | "ct" | "set_field" | "load" | "move" | "enqueue"
            | "note" | "dec_ttl" | "mod_nw_src" | "mod_nw_dst" | "mod_tp_src" | "mod_tp_dst"
            | "mod_nw_tos" => {
                return Err(FlowError::new(
                    col,
                    format!("action `{lname}` is not supported by xsw"),
                ));
            }
            _ => {
                if let Some(n) = parse_uint(tok) {
                    if n == 0 || n >= OFPP_MAX as u64 {
                        return Err(FlowError::new(
                            col,
                            format!("port {tok} is out of range (1-{})", OFPP_MAX - 1),
                        ));
                    }
                    Action::Output(n as u16)
                } else {
                    return Err(FlowError::new(col, format!("unknown action `{name}`")));
                }
            }
        };
        out.push(act);
    }
    if let Some(c) = drop_col {
        if !out.is_empty() {
            return Err(FlowError::new(c, "`drop` must be the only action"));
        }
    }
    Ok(out)
}

/// Parses a rule in `ovs-ofctl add-flow` syntax. Port names are resolved
/// with `ports` (pass `&()` to accept numbers only).
pub fn parse_flow<P: PortNames + ?Sized>(line: &str, ports: &P) -> Result<Rule, FlowError> {
    let Some((act_word, act_start)) = find_actions(line) else {
        return Err(FlowError::new(
            line.chars().count().max(1),
            "missing `actions=`: every rule needs actions (`actions=drop` to drop)",
        ));
    };
    let mut rule = Rule::default();
    let mut p = Parser {
        ports,
        m: Match::ANY,
        seen: Vec::new(),
        l4_need: Vec::new(),
    };
    for it in split_items(line, 0, act_word) {
        rule_item(&mut rule, &mut p, &it, false)?;
    }
    p.check_prereqs()?;
    rule.matches = p.m;
    rule.actions = parse_actions(line, act_start, ports, rule.table)?;
    Ok(rule)
}

fn rule_item<P: PortNames + ?Sized>(
    rule: &mut Rule,
    p: &mut Parser<'_, P>,
    it: &Item<'_>,
    spec: bool,
) -> Result<(), FlowError> {
    let num = |max: u64, what: &str| -> Result<u64, FlowError> {
        let v = it
            .value
            .ok_or_else(|| FlowError::new(it.col, format!("{} needs a value", it.key)))?;
        parse_uint(v)
            .filter(|x| *x <= max)
            .ok_or_else(|| FlowError::new(it.value_col, format!("{}: `{v}` is not {what}", it.key)))
    };
    match it.key {
        "table" => {
            p.note("table", it.col)?;
            rule.table = num(
                MAX_TABLE as u64,
                "a table number (0-253; OVS keeps 254 for itself)",
            )? as u8;
        }
        "priority" => {
            p.note("priority", it.col)?;
            rule.priority = num(65535, "a priority (0-65535)")? as u16;
        }
        "cookie" => {
            p.note("cookie", it.col)?;
            let v = it.value.unwrap_or("");
            if v.contains('/') && !spec {
                return Err(FlowError::new(
                    it.value_col,
                    "cookie: a mask is only allowed when selecting rules (flow del)",
                ));
            }
            rule.cookie = num(u64::MAX, "a 64-bit number")?;
        }
        "idle_timeout" => {
            p.note("idle_timeout", it.col)?;
            rule.idle_timeout = num(65535, "a number of seconds (0-65535)")? as u16;
        }
        "hard_timeout" => {
            p.note("hard_timeout", it.col)?;
            rule.hard_timeout = num(65535, "a number of seconds (0-65535)")? as u16;
        }
        _ => p.match_item(it)?,
    }
    Ok(())
}

/// Parses a match with optional `table=`, `priority=` and `cookie=V/M`, as
/// used to select rules for deletion. Actions are not allowed.
pub fn parse_match_spec<P: PortNames + ?Sized>(
    line: &str,
    ports: &P,
) -> Result<MatchSpec, FlowError> {
    if let Some((w, _)) = find_actions(line) {
        return Err(FlowError::new(
            char_col(line, w),
            "a match cannot have actions",
        ));
    }
    let mut rule = Rule::default();
    let mut p = Parser {
        ports,
        m: Match::ANY,
        seen: Vec::new(),
        l4_need: Vec::new(),
    };
    let mut spec = MatchSpec {
        table: None,
        priority: None,
        cookie: None,
        matches: Match::ANY,
    };
    for it in split_items(line, 0, line.len()) {
        if it.key == "cookie" {
            p.note("cookie", it.col)?;
            let v = it.value.unwrap_or("");
            let (cv, cm) = v.split_once('/').unwrap_or((v, "0xffffffffffffffff"));
            // As ovs-ofctl: a mask of -1 means every bit.
            let cm = if cm == "-1" { "0xffffffffffffffff" } else { cm };
            let cv = parse_uint(cv).ok_or_else(|| {
                FlowError::new(it.value_col, format!("cookie: `{v}` is not COOKIE[/MASK]"))
            })?;
            let cm = parse_uint(cm).ok_or_else(|| {
                FlowError::new(it.value_col, format!("cookie: `{v}` is not COOKIE[/MASK]"))
            })?;
            spec.cookie = Some((cv & cm, cm));
            continue;
        }
        rule_item(&mut rule, &mut p, &it, true)?;
        match it.key {
            "table" => spec.table = Some(rule.table),
            "priority" => spec.priority = Some(rule.priority),
            _ => {}
        }
    }
    p.check_prereqs()?;
    spec.matches = p.m;
    Ok(spec)
}

fn ipv4_masked(out: &mut String, name: &str, v: u64, m: u64) {
    if m == 0 {
        return;
    }
    let a = Ipv4Addr::from(v as u32);
    let m = m as u32;
    if m == u32::MAX {
        out.push_str(&format!("{name}={a},"));
    } else if m.leading_ones() + m.trailing_zeros() == 32 {
        out.push_str(&format!("{name}={a}/{},", m.leading_ones()));
    } else {
        out.push_str(&format!("{name}={a}/{},", Ipv4Addr::from(m)));
    }
}

fn ipv6_masked(out: &mut String, name: &str, v: u128, m: u128) {
    if m == 0 {
        return;
    }
    let a = Ipv6Addr::from(v);
    if m == u128::MAX {
        out.push_str(&format!("{name}={a},"));
    } else if m.leading_ones() + m.trailing_zeros() == 128 {
        out.push_str(&format!("{name}={a}/{},", m.leading_ones()));
    } else {
        out.push_str(&format!("{name}={a}/{},", Ipv6Addr::from(m)));
    }
}

/// Prints a match (with its priority, omitted when it is the default) the
/// way `ovs-ofctl dump-flows` does. Empty when there is nothing to print.
pub fn format_match(m: &Match, priority: u16) -> String {
    let mut s = String::new();
    if priority != DEFAULT_PRIORITY {
        s.push_str(&format!("priority={priority},"));
    }
    let (dl_type, dlm) = m.get(Field::DlType);
    let (proto, pm) = m.get(Field::NwProto);
    let dl_exact = dlm == 0xffff;
    let proto_exact = pm == 0xff;
    let dl_type = dl_type as u16;
    let mut proto_shown = false;
    let mut type_shown = false;
    if dl_exact {
        let short = match (dl_type, proto_exact.then_some(proto as u8)) {
            (ETH_TYPE_IP, Some(IPPROTO_TCP)) => Some("tcp"),
            (ETH_TYPE_IP, Some(IPPROTO_UDP)) => Some("udp"),
            (ETH_TYPE_IP, Some(IPPROTO_SCTP)) => Some("sctp"),
            (ETH_TYPE_IP, Some(IPPROTO_ICMP)) => Some("icmp"),
            (ETH_TYPE_IP, Some(IPPROTO_IGMP)) => Some("igmp"),
            (ETH_TYPE_IPV6, Some(IPPROTO_TCP)) => Some("tcp6"),
            (ETH_TYPE_IPV6, Some(IPPROTO_UDP)) => Some("udp6"),
            (ETH_TYPE_IPV6, Some(IPPROTO_SCTP)) => Some("sctp6"),
            (ETH_TYPE_IPV6, Some(IPPROTO_ICMPV6)) => Some("icmp6"),
            _ => None,
        };
        if let Some(sh) = short {
            s.push_str(sh);
            s.push(',');
            proto_shown = true;
            type_shown = true;
        } else {
            let sh = match dl_type {
                ETH_TYPE_IP => Some("ip"),
                ETH_TYPE_IPV6 => Some("ipv6"),
                ETH_TYPE_ARP => Some("arp"),
                ETH_TYPE_RARP => Some("rarp"),
                _ => None,
            };
            if let Some(sh) = sh {
                s.push_str(sh);
                s.push(',');
                type_shown = true;
            }
        }
    }
    let (inp, inm) = m.get(Field::InPort);
    if inm != 0 {
        s.push_str(&format!("in_port={inp},"));
    }
    let (tci, tm) = m.get(Field::VlanTci);
    if tm != 0 {
        let (tci, tm) = (tci as u16, tm as u16);
        let vid_m = tm & VLAN_VID_MASK;
        let pcp_m = tm & VLAN_PCP_MASK;
        let cfi = tm & VLAN_CFI;
        if cfi != 0
            && tci & VLAN_CFI != 0
            && (vid_m == 0 || vid_m == VLAN_VID_MASK)
            && (pcp_m == 0 || pcp_m == VLAN_PCP_MASK)
            && (vid_m != 0 || pcp_m != 0)
        {
            if vid_m != 0 {
                s.push_str(&format!("dl_vlan={},", tci & VLAN_VID_MASK));
            }
            if pcp_m != 0 {
                s.push_str(&format!("dl_vlan_pcp={},", tci >> 13));
            }
        } else if tm == 0xffff {
            s.push_str(&format!("vlan_tci=0x{tci:04x},"));
        } else {
            s.push_str(&format!("vlan_tci=0x{tci:04x}/0x{tm:04x},"));
        }
    }
    for (f, name) in [(Field::DlSrc, "dl_src"), (Field::DlDst, "dl_dst")] {
        let (v, mm) = m.get(f);
        if mm == 0xffff_ffff_ffff {
            s.push_str(&format!("{name}={},", Mac(v)));
        } else if mm != 0 {
            s.push_str(&format!("{name}={}/{},", Mac(v), Mac(mm)));
        }
    }
    let is_arp = dl_exact && (dl_type == ETH_TYPE_ARP || dl_type == ETH_TYPE_RARP);
    let is_v6 = dl_exact && dl_type == ETH_TYPE_IPV6;
    if is_v6 {
        let (hv, hm) = m.get(Field::Ipv6SrcHi);
        let (lv, lm) = m.get(Field::Ipv6SrcLo);
        ipv6_masked(
            &mut s,
            "ipv6_src",
            ((hv as u128) << 64) | lv as u128,
            ((hm as u128) << 64) | lm as u128,
        );
        let (hv, hm) = m.get(Field::Ipv6DstHi);
        let (lv, lm) = m.get(Field::Ipv6DstLo);
        ipv6_masked(
            &mut s,
            "ipv6_dst",
            ((hv as u128) << 64) | lv as u128,
            ((hm as u128) << 64) | lm as u128,
        );
    } else if is_arp {
        let (v, mm) = m.get(Field::NwSrc);
        ipv4_masked(&mut s, "arp_spa", v, mm);
        let (v, mm) = m.get(Field::NwDst);
        ipv4_masked(&mut s, "arp_tpa", v, mm);
    } else {
        let (v, mm) = m.get(Field::NwSrc);
        ipv4_masked(&mut s, "nw_src", v, mm);
        let (v, mm) = m.get(Field::NwDst);
        ipv4_masked(&mut s, "nw_dst", v, mm);
    }
    if !type_shown && dlm != 0 {
        s.push_str(&format!("dl_type=0x{dl_type:04x},"));
    }
    if pm != 0 && !proto_shown {
        if is_arp {
            s.push_str(&format!("arp_op={proto},"));
        } else {
            s.push_str(&format!("nw_proto={proto},"));
        }
    }
    let (tos, tosm) = m.get(Field::NwTos);
    if tosm != 0 {
        s.push_str(&format!("nw_tos={},", tos & 0xfc));
    }
    let icmp = proto_exact
        && dl_exact
        && ((dl_type == ETH_TYPE_IP && proto as u8 == IPPROTO_ICMP)
            || (dl_type == ETH_TYPE_IPV6 && proto as u8 == IPPROTO_ICMPV6));
    for (f, name, iname) in [
        (Field::TpSrc, "tp_src", "icmp_type"),
        (Field::TpDst, "tp_dst", "icmp_code"),
    ] {
        let (v, mm) = m.get(f);
        if mm == 0 {
            continue;
        }
        let name = if icmp { iname } else { name };
        if mm == 0xffff {
            s.push_str(&format!("{name}={v},"));
        } else {
            s.push_str(&format!("{name}=0x{v:x}/0x{mm:x},"));
        }
    }
    if s.ends_with(',') {
        s.pop();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Rule {
        match parse_flow(s, &()) {
            Ok(r) => r,
            Err(e) => panic!("{}\n{}", e.msg(), e.render(s)),
        }
    }

    fn err(s: &str) -> FlowError {
        match parse_flow(s, &()) {
            Ok(r) => panic!("{s} parsed as {r}"),
            Err(e) => e,
        }
    }

    #[test]
    fn basic_rules_parse_and_print() {
        let cases = [
            ("in_port=1,actions=output:2", "in_port=1 actions=output:2"),
            (
                "priority=100,ip,nw_dst=198.18.0.0/24,actions=drop",
                "priority=100,ip,nw_dst=198.18.0.0/24 actions=drop",
            ),
            (
                "tcp,tp_dst=80,actions=normal",
                "tcp,tp_dst=80 actions=NORMAL",
            ),
            ("dl_vlan=0xffff,actions=all", "vlan_tci=0x0000 actions=ALL"),
            (
                "tcp6,tp_src=0x400/0xfc00,actions=output:1",
                "tcp6,tp_src=0x400/0xfc00 actions=output:1",
            ),
            (
                "icmp,icmp_type=8,icmp_code=0,actions=2",
                "icmp,icmp_type=8,icmp_code=0 actions=output:2",
            ),
            (
                "ip,ip_dscp=46,actions=mod_vlan_pcp:5,output:2",
                "ip,nw_tos=184 actions=mod_vlan_pcp:5,output:2",
            ),
            ("dl_type=0x88cc,actions=drop", "dl_type=0x88cc actions=drop"),
            (
                "arp,arp_op=1,arp_tpa=198.18.0.1,actions=in_port",
                "arp,arp_tpa=198.18.0.1,arp_op=1 actions=IN_PORT",
            ),
            (
                "dl_vlan=10,dl_vlan_pcp=3,actions=output:4",
                "dl_vlan=10,dl_vlan_pcp=3 actions=output:4",
            ),
            ("ip actions=resubmit(,1)", "ip actions=resubmit(,1)"),
            ("actions=", "actions=drop"),
        ];
        for (i, o) in cases {
            let r = p(i);
            assert_eq!(r.to_string(), o, "{i}");
            assert_eq!(p(&r.to_string()), r, "round trip of {i}");
        }
    }

    #[test]
    fn shorthand_sets_type_and_proto() {
        let r = p("udp6,actions=drop");
        assert_eq!(r.matches.get(Field::DlType), (0x86dd, 0xffff));
        assert_eq!(r.matches.get(Field::NwProto), (17, 0xff));
    }

    #[test]
    fn prerequisites_are_enforced_with_columns() {
        let e = err("priority=5,nw_dst=198.18.0.1,actions=drop");
        assert_eq!(e.col(), 12);
        assert!(e.msg().contains("add `ip`"), "{}", e.msg());
        let e = err("ip,tp_dst=80,actions=drop");
        assert_eq!(e.col(), 4);
        assert!(e.msg().contains("tcp"));
        let e = err("icmp_type=8,actions=drop");
        assert!(e.msg().contains("icmp"), "{}", e.msg());
    }

    #[test]
    fn prerequisite_may_come_after_the_field() {
        p("nw_dst=198.18.0.1,ip,actions=drop");
    }

    #[test]
    fn bad_values_are_located() {
        let e = err("dl_vlan=5000,actions=drop");
        assert_eq!(e.col(), 9);
        let e = err("ip,nw_src=1.2.3,actions=drop");
        assert_eq!(e.col(), 11);
        let e = err("in_port=1,actions=output:2,bogus");
        assert_eq!(e.col(), 28);
        let e = err("in_port=1");
        assert!(e.msg().contains("actions"));
        let e = err("udp,tcp_dst=53,actions=drop");
        assert!(e.msg().contains("add `tcp`"), "{}", e.msg());
        let e = err("dl_dst=+1:00:00:00:00:00,actions=drop");
        assert_eq!(e.col(), 8);
        let e = err("table=254,actions=drop");
        assert!(e.msg().contains("0-253"), "{}", e.msg());
        assert_eq!(
            p("table=9,actions=drop").to_string(),
            "table=9 actions=drop"
        );
        let e = err("ip6,actions=drop");
        assert!(e.msg().contains("did you mean `ipv6`"), "{}", e.msg());
        let e = err("nw_dts=1.2.3.4,ip,actions=drop");
        assert!(e.msg().contains("did you mean `nw_dst`"), "{}", e.msg());
        let e = err("actions=goto_table:1,output:2");
        assert!(e.msg().contains("last"));
        let e = err("table=2,actions=goto_table:1");
        assert!(e.msg().contains("later table"));
        let e = err("actions=drop,output:1");
        assert!(e.msg().contains("only action"));
        let e = err("ip,arp,actions=drop");
        assert!(e.msg().contains("contradicts"));
        assert_eq!(
            p("ip,nw_tos=185,actions=drop").to_string(),
            "ip,nw_tos=184 actions=drop"
        );
        let e = err("in_port=1,in_port=2,actions=drop");
        assert!(e.msg().contains("twice"));
    }

    #[test]
    fn port_names_resolve() {
        let names = |n: &str| match n {
            "p1" => Some(1u16),
            "uplink" => Some(7),
            _ => None,
        };
        let r = parse_flow("in_port=p1,actions=output:uplink", &names).expect("parses");
        assert_eq!(r.to_string(), "in_port=1 actions=output:7");
        assert!(parse_flow("in_port=p9,actions=drop", &names).is_err());
    }

    #[test]
    fn match_spec_for_deletes() {
        let s = parse_match_spec("table=1,cookie=0x10/0xf0,tcp", &()).expect("parses");
        assert_eq!(s.table, Some(1));
        assert_eq!(s.cookie, Some((0x10, 0xf0)));
        assert!(parse_match_spec("tcp actions=drop", &()).is_err());
    }
}
