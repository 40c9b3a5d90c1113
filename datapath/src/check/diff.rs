//! Readable differences between what a scenario produced and what it
//! expected: frames (decoded with etherparse, the first differing field by
//! name) and `summary.json` (a structural diff of JSON values).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use etherparse::{LaxLinkExtSlice, LaxNetSlice, LaxSlicedPacket, LinkSlice, TransportSlice};
use serde_json::Value;

use crate::clock::Timestamp;

/// One captured frame: its timestamp and its bytes.
pub type Frame = (Timestamp, Vec<u8>);

/// How many summary differences [`diff_json`] lists before "... and N more".
pub const JSON_DIFF_LIMIT: usize = 10;

/// One decoded header field.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Field {
    /// Its name, e.g. `vlan_vid`.
    name: &'static str,
    /// Its value as printed, e.g. `10`.
    value: String,
    /// What a frame lacks when it lacks this field, e.g. `VLAN tag`.
    layer: &'static str,
}

/// The order in which fields are compared: the order they appear in a
/// frame, outer headers first.
const FIELD_ORDER: &[&str] = &[
    "eth_dst",
    "eth_src",
    "vlan_vid",
    "vlan_pcp",
    "vlan_dei",
    "vlan_tpid",
    "inner_vlan_vid",
    "inner_vlan_pcp",
    "inner_vlan_dei",
    "inner_vlan_tpid",
    "eth_type",
    "arp_op",
    "arp_sha",
    "arp_spa",
    "arp_tha",
    "arp_tpa",
    "ip_src",
    "ip_dst",
    "ip_dscp",
    "ip_ecn",
    "ip_ttl",
    "ip_proto",
    "ip_csum",
    "tp_src",
    "tp_dst",
    "tcp_flags",
    "tcp_seq",
    "tcp_ack",
    "icmp_type",
    "icmp_code",
];

fn rank(name: &str) -> usize {
    FIELD_ORDER
        .iter()
        .position(|n| *n == name)
        .unwrap_or(FIELD_ORDER.len())
}

/// A frame taken apart: its header fields in [`FIELD_ORDER`], a short
/// description for one-line summaries, and where its payload starts.
#[derive(Debug, Default)]
struct Decoded {
    fields: Vec<Field>,
    summary: Vec<String>,
    payload_at: usize,
}

fn mac(b: &[u8]) -> String {
    let mut s = String::with_capacity(17);
    for (i, x) in b.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        let _ = write!(s, "{x:02x}");
    }
    s
}

fn ipv4(b: &[u8]) -> String {
    match <[u8; 4]>::try_from(b) {
        Ok(a) => std::net::Ipv4Addr::from(a).to_string(),
        Err(_) => b.iter().map(|x| format!("{x:02x}")).collect(),
    }
}

/// Where `part` (a sub-slice of `frame`) starts within `frame`.
fn offset_in(frame: &[u8], part: &[u8]) -> usize {
    (part.as_ptr() as usize)
        .saturating_sub(frame.as_ptr() as usize)
        .min(frame.len())
}

fn tcp_flags(t: &etherparse::TcpSlice<'_>) -> String {
    let flags = [
        (t.fin(), "FIN"),
        (t.syn(), "SYN"),
        (t.rst(), "RST"),
        (t.psh(), "PSH"),
        (t.ack(), "ACK"),
        (t.urg(), "URG"),
        (t.ece(), "ECE"),
        (t.cwr(), "CWR"),
    ];
    let on: Vec<&str> = flags.iter().filter(|f| f.0).map(|f| f.1).collect();
    if on.is_empty() {
        "none".into()
    } else {
        on.join(",")
    }
}

fn decode(frame: &[u8]) -> Decoded {
    let mut d = Decoded::default();
    let Ok(p) = LaxSlicedPacket::from_ethernet(frame) else {
        d.summary.push("(not an Ethernet frame)".into());
        return d;
    };
    let push = |d: &mut Decoded, name: &'static str, value: String, layer: &'static str| {
        d.fields.push(Field { name, value, layer });
    };
    let Some(LinkSlice::Ethernet2(eth)) = &p.link else {
        return d;
    };
    let (dst, src) = (mac(&eth.destination()), mac(&eth.source()));
    d.summary.push(format!("{src} > {dst}"));
    push(&mut d, "eth_dst", dst, "Ethernet header");
    push(&mut d, "eth_src", src, "Ethernet header");
    d.payload_at = 14.min(frame.len());
    let mut tpid = eth.ether_type().0;
    for (k, ext) in p.link_exts.iter().enumerate() {
        let LaxLinkExtSlice::Vlan(v) = ext else {
            continue;
        };
        let names = match k {
            0 => ["vlan_vid", "vlan_pcp", "vlan_dei", "vlan_tpid", "VLAN tag"],
            1 => [
                "inner_vlan_vid",
                "inner_vlan_pcp",
                "inner_vlan_dei",
                "inner_vlan_tpid",
                "inner VLAN tag",
            ],
            _ => continue,
        };
        let (vid, pcp) = (v.vlan_identifier().value(), v.priority_code_point().value());
        d.summary.push(format!("vlan {vid} pcp {pcp}"));
        push(&mut d, names[0], vid.to_string(), names[4]);
        push(&mut d, names[1], pcp.to_string(), names[4]);
        let dei = u8::from(v.drop_eligible_indicator());
        push(&mut d, names[2], dei.to_string(), names[4]);
        push(&mut d, names[3], format!("0x{tpid:04x}"), names[4]);
        tpid = v.ether_type().0;
        d.payload_at = offset_in(frame, v.payload_slice());
    }
    push(&mut d, "eth_type", format!("0x{tpid:04x}"), "Ethernet type");
    match &p.net {
        Some(LaxNetSlice::Arp(a)) => {
            let op = match a.operation().0 {
                1 => "request".to_string(),
                2 => "reply".to_string(),
                n => format!("op {n}"),
            };
            let (spa, tpa) = (
                ipv4(a.sender_protocol_addr()),
                ipv4(a.target_protocol_addr()),
            );
            d.summary.push(format!("ARP {op} {spa} > {tpa}"));
            push(&mut d, "arp_op", a.operation().0.to_string(), "ARP packet");
            push(&mut d, "arp_sha", mac(a.sender_hw_addr()), "ARP packet");
            push(&mut d, "arp_spa", spa, "ARP packet");
            push(&mut d, "arp_tha", mac(a.target_hw_addr()), "ARP packet");
            push(&mut d, "arp_tpa", tpa, "ARP packet");
            d.payload_at = offset_in(frame, a.slice()) + a.slice().len();
        }
        Some(LaxNetSlice::Ipv4(ip)) => {
            let h = ip.header();
            let (s, t) = (
                h.source_addr().to_string(),
                h.destination_addr().to_string(),
            );
            d.summary.push(format!("IPv4 {s} > {t}"));
            let l = "IPv4 header";
            push(&mut d, "ip_src", s, l);
            push(&mut d, "ip_dst", t, l);
            push(&mut d, "ip_dscp", h.dcp().value().to_string(), l);
            push(&mut d, "ip_ecn", h.ecn().value().to_string(), l);
            push(&mut d, "ip_ttl", h.ttl().to_string(), l);
            push(&mut d, "ip_proto", h.protocol().0.to_string(), l);
            push(
                &mut d,
                "ip_csum",
                format!("0x{:04x}", h.header_checksum()),
                l,
            );
            d.payload_at = offset_in(frame, ip.payload().payload);
        }
        Some(LaxNetSlice::Ipv6(ip)) => {
            let h = ip.header();
            let (s, t) = (
                h.source_addr().to_string(),
                h.destination_addr().to_string(),
            );
            d.summary.push(format!("IPv6 {s} > {t}"));
            let l = "IPv6 header";
            push(&mut d, "ip_src", s, l);
            push(&mut d, "ip_dst", t, l);
            push(&mut d, "ip_dscp", (h.traffic_class() >> 2).to_string(), l);
            push(&mut d, "ip_ecn", h.ecn().value().to_string(), l);
            push(&mut d, "ip_ttl", h.hop_limit().to_string(), l);
            push(&mut d, "ip_proto", ip.payload().ip_number.0.to_string(), l);
            d.payload_at = offset_in(frame, ip.payload().payload);
        }
        None => {
            if let Some(e) = p.ether_payload() {
                d.summary
                    .push(format!("ethertype 0x{:04x}", e.ether_type.0));
            }
        }
    }
    match &p.transport {
        Some(TransportSlice::Udp(u)) => {
            let (s, t) = (u.source_port(), u.destination_port());
            d.summary.push(format!("UDP {s} > {t}"));
            push(&mut d, "tp_src", s.to_string(), "UDP/TCP header");
            push(&mut d, "tp_dst", t.to_string(), "UDP/TCP header");
            d.payload_at = offset_in(frame, u.payload());
        }
        Some(TransportSlice::Tcp(t)) => {
            let (s, dp) = (t.source_port(), t.destination_port());
            let flags = tcp_flags(t);
            d.summary.push(format!("TCP {s} > {dp} [{flags}]"));
            push(&mut d, "tp_src", s.to_string(), "UDP/TCP header");
            push(&mut d, "tp_dst", dp.to_string(), "UDP/TCP header");
            push(&mut d, "tcp_flags", flags, "TCP header");
            push(
                &mut d,
                "tcp_seq",
                t.sequence_number().to_string(),
                "TCP header",
            );
            let ack = t.acknowledgment_number().to_string();
            push(&mut d, "tcp_ack", ack, "TCP header");
            d.payload_at = offset_in(frame, t.payload());
        }
        Some(TransportSlice::Icmpv4(i)) => {
            let (ty, code) = (i.type_u8(), i.code_u8());
            d.summary.push(format!("ICMP type {ty} code {code}"));
            push(&mut d, "icmp_type", ty.to_string(), "ICMP header");
            push(&mut d, "icmp_code", code.to_string(), "ICMP header");
            d.payload_at = offset_in(frame, i.payload());
        }
        Some(TransportSlice::Icmpv6(i)) => {
            let (ty, code) = (i.type_u8(), i.code_u8());
            d.summary.push(format!("ICMPv6 type {ty} code {code}"));
            push(&mut d, "icmp_type", ty.to_string(), "ICMP header");
            push(&mut d, "icmp_code", code.to_string(), "ICMP header");
            d.payload_at = offset_in(frame, i.payload());
        }
        Some(TransportSlice::Igmp(_)) => d.summary.push("IGMP".into()),
        None => {}
    }
    d
}

/// Whether timestamps need nanoseconds to be told apart (else microseconds).
fn needs_nanos(ts: &[Timestamp]) -> bool {
    ts.iter().any(|t| t.0 % 1000 != 0)
}

/// `t` as seconds since `start`: six decimals, or nine with `nanos`.
fn secs(t: Timestamp, start: Timestamp, nanos: bool) -> String {
    let d = t.since(start);
    let (s, ns) = (d / Timestamp::SECOND, d % Timestamp::SECOND);
    if nanos {
        format!("{s}.{ns:09}")
    } else {
        format!("{s}.{:06}", ns / 1000)
    }
}

/// A one-line description of a frame, like
/// `1.000200 02:00:00:00:00:01 > 02:00:00:00:00:02 vlan 10 pcp 0 IPv4
/// 198.18.0.1 > 198.18.0.2 UDP 5000 > 6000 len 60`; the time is in seconds
/// since `start` (the scenario's first input frame).
pub fn frame_summary(f: &Frame, start: Timestamp) -> String {
    let d = decode(&f.1);
    let mut parts = vec![secs(f.0, start, needs_nanos(&[f.0, start]))];
    parts.extend(d.summary);
    parts.push(format!("len {}", f.1.len()));
    parts.join(" ")
}

/// What differs first between two frames, by field name: `vlan_vid 10,
/// expected 20`, `no VLAN tag, expected vlan_vid 20`, `length 64, expected
/// 60`, `payload byte 3: 0x01, expected 0x02`; `None` if they are equal.
///
/// The timestamp comes first (seconds since `start`), then the decoded
/// header fields from the outside in, then the length, then the bytes.
pub fn diff_frame(got: &Frame, want: &Frame, start: Timestamp) -> Option<String> {
    if got.0 != want.0 {
        let n = needs_nanos(&[got.0, want.0, start]);
        return Some(format!(
            "timestamp {}, expected {}",
            secs(got.0, start, n),
            secs(want.0, start, n)
        ));
    }
    if got.1 == want.1 {
        return None;
    }
    let (g, w) = (decode(&got.1), decode(&want.1));
    let (mut i, mut j) = (0, 0);
    while i < g.fields.len() || j < w.fields.len() {
        match (g.fields.get(i), w.fields.get(j)) {
            (Some(a), Some(b)) if a.name == b.name => {
                if a.value != b.value {
                    return Some(format!("{} {}, expected {}", a.name, a.value, b.value));
                }
                i += 1;
                j += 1;
            }
            (Some(a), b) if b.is_none_or(|b| rank(a.name) < rank(b.name)) => {
                return Some(format!("{} {}, expected no {}", a.name, a.value, a.layer));
            }
            (_, Some(b)) => {
                return Some(format!("no {}, expected {} {}", b.layer, b.name, b.value));
            }
            (_, None) => break,
        }
    }
    if got.1.len() != want.1.len() {
        return Some(format!("length {}, expected {}", got.1.len(), want.1.len()));
    }
    let k = got.1.iter().zip(&want.1).position(|(a, b)| a != b)?;
    let (a, b) = (got.1[k], want.1[k]);
    Some(if g.payload_at == w.payload_at && k >= g.payload_at {
        format!(
            "payload byte {}: 0x{a:02x}, expected 0x{b:02x}",
            k - g.payload_at
        )
    } else {
        format!("byte {k}: 0x{a:02x}, expected 0x{b:02x}")
    })
}

fn frames(n: usize) -> &'static str {
    if n == 1 {
        "frame"
    } else {
        "frames"
    }
}

fn more_line(port: &str, n: usize, at: usize, f: &Frame, start: Timestamp) -> String {
    format!(
        "{port}: {n} {} more than expected, first (frame {}): {}",
        frames(n),
        at + 1,
        frame_summary(f, start)
    )
}

fn fewer_line(port: &str, n: usize, at: usize, f: &Frame, start: Timestamp) -> String {
    format!(
        "{port}: {n} {} fewer than expected, first missing (frame {}): {}",
        frames(n),
        at + 1,
        frame_summary(f, start)
    )
}

/// Compares what port `port` sent (`got`) with what it should have sent
/// (`want`), in order; returns the lines that describe the first
/// difference (empty when equal). Frame numbers count from 1; times are
/// seconds since `start`.
///
/// Frames sent in addition to the expected ones, or missing from them, are
/// reported as such (`p4: 2 frames more than expected, first (frame 7):
/// ...`) when the rest of the frames line up; otherwise the first differing
/// frame is described field by field, plus the difference in count.
pub fn diff_port(port: &str, got: &[Frame], want: &[Frame], start: Timestamp) -> Vec<String> {
    let (ng, nw) = (got.len(), want.len());
    let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) else {
        return match ng.cmp(&nw) {
            std::cmp::Ordering::Equal => Vec::new(),
            std::cmp::Ordering::Greater => vec![more_line(port, ng - nw, nw, &got[nw], start)],
            std::cmp::Ordering::Less => vec![fewer_line(port, nw - ng, ng, &want[ng], start)],
        };
    };
    if ng > nw && got[i + (ng - nw)..] == want[i..] {
        return vec![more_line(port, ng - nw, i, &got[i], start)];
    }
    if nw > ng && got[i..] == want[i + (nw - ng)..] {
        return vec![fewer_line(port, nw - ng, i, &want[i], start)];
    }
    let what = diff_frame(&got[i], &want[i], start).unwrap_or_else(|| "differs".into());
    let mut v = vec![format!("{port} frame {}: {what}", i + 1)];
    if ng != nw {
        v.push(format!("{port}: {ng} frames, expected {nw}"));
    }
    v
}

/// Like [`diff_port`], for a port whose frames are compared as a multiset of
/// (timestamp, bytes): for flooding, whose order across ports Open vSwitch
/// leaves unspecified, so a frame may come before or after another with
/// the same time.
pub fn diff_port_unordered(
    port: &str,
    got: &[Frame],
    want: &[Frame],
    start: Timestamp,
) -> Vec<String> {
    // The frames of one side not matched by a frame of the other, by index.
    fn unmatched(a: &[Frame], b: &[Frame]) -> Vec<usize> {
        let mut left: BTreeMap<&Frame, usize> = BTreeMap::new();
        for f in b {
            *left.entry(f).or_default() += 1;
        }
        let mut out = Vec::new();
        for (k, f) in a.iter().enumerate() {
            match left.get_mut(f) {
                Some(n) if *n > 0 => *n -= 1,
                _ => out.push(k),
            }
        }
        out
    }
    let extra = unmatched(got, want);
    let missing = unmatched(want, got);
    match (extra.first(), missing.first()) {
        (None, None) => Vec::new(),
        (Some(&k), None) => vec![more_line(port, extra.len(), k, &got[k], start)],
        (None, Some(&k)) => vec![fewer_line(port, missing.len(), k, &want[k], start)],
        (Some(&k), Some(&m)) => {
            let what = diff_frame(&got[k], &want[m], start).unwrap_or_else(|| "differs".into());
            let mut v = vec![format!(
                "{port} frame {} (unordered; closest expected: frame {}): {what}",
                k + 1,
                m + 1
            )];
            if extra.len() != 1 || missing.len() != 1 {
                v.push(format!(
                    "{port}: {} frame(s) not expected, {} expected frame(s) missing",
                    extra.len(),
                    missing.len()
                ));
            }
            v
        }
    }
}

/// A JSON value in one short line (long ones are cut).
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 100 {
        let cut: String = s.chars().take(97).collect();
        format!("{cut}...")
    } else {
        s
    }
}

/// How the elements of an array are named in paths: by a member every
/// element has and no two share (`name`, `line`, `id`, `queue`), else by
/// index.
fn array_keys(a: &[Value], b: &[Value]) -> Option<(&'static str, Vec<String>, Vec<String>)> {
    for key in ["name", "line", "id", "queue"] {
        let names = |arr: &[Value]| -> Option<Vec<String>> {
            let v: Vec<String> = arr
                .iter()
                .map(|e| match e.get(key)? {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) if key == "name" => Some(n.to_string()),
                    Value::Number(n) => Some(format!("{key} {n}")),
                    _ => None,
                })
                .collect::<Option<_>>()?;
            let mut sorted = v.clone();
            sorted.sort();
            sorted.dedup();
            (sorted.len() == v.len()).then_some(v)
        };
        if let (Some(x), Some(y)) = (names(a), names(b)) {
            return Some((key, x, y));
        }
    }
    None
}

/// The relative tolerance for `path`: the entry of `tolerance` whose key is
/// the longest prefix of `path` that ends at a path boundary.
fn tolerance_for(path: &str, tolerance: &BTreeMap<String, f64>) -> Option<f64> {
    tolerance
        .iter()
        .filter(|(p, _)| {
            path.strip_prefix(p.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
        })
        .max_by_key(|(p, _)| p.len())
        .map(|(_, t)| *t)
}

fn numbers_match(g: &Value, w: &Value, tol: Option<f64>) -> bool {
    let (Some(a), Some(b)) = (g.as_f64(), w.as_f64()) else {
        return false;
    };
    if g == w {
        return true;
    }
    // Two different integers differ even where f64 cannot tell them apart.
    let int = |v: &Value| v.is_u64() || v.is_i64();
    if !(int(g) && int(w)) && a == b {
        return true;
    }
    tol.is_some_and(|t| (a - b).abs() <= t * a.abs().max(b.abs()))
}

fn walk(path: &str, g: &Value, w: &Value, tol: &BTreeMap<String, f64>, out: &mut Vec<String>) {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match (g, w) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, wv) in b {
                match a.get(k) {
                    Some(gv) => walk(&join(k), gv, wv, tol, out),
                    None => out.push(format!("{}: (absent), expected {}", join(k), short(wv))),
                }
            }
            for (k, gv) in a {
                if !b.contains_key(k) {
                    out.push(format!("{}: {}, expected (absent)", join(k), short(gv)));
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if let Some((_, ka, kb)) = array_keys(a, b) {
                for (name, wv) in kb.iter().zip(b) {
                    let p = format!("{path}[{name}]");
                    match ka.iter().position(|n| n == name) {
                        Some(i) => walk(&p, &a[i], wv, tol, out),
                        None => out.push(format!("{p}: (absent), expected {}", short(wv))),
                    }
                }
                for (name, gv) in ka.iter().zip(a) {
                    if !kb.contains(name) {
                        out.push(format!("{path}[{name}]: {}, expected (absent)", short(gv)));
                    }
                }
            } else {
                for (i, (gv, wv)) in a.iter().zip(b).enumerate() {
                    walk(&format!("{path}[{i}]"), gv, wv, tol, out);
                }
                for (i, gv) in a.iter().enumerate().skip(b.len()) {
                    out.push(format!("{path}[{i}]: {}, expected (absent)", short(gv)));
                }
                for (i, wv) in b.iter().enumerate().skip(a.len()) {
                    out.push(format!("{path}[{i}]: (absent), expected {}", short(wv)));
                }
            }
        }
        (Value::Number(_), Value::Number(_)) => {
            if !numbers_match(g, w, tolerance_for(path, tol)) {
                out.push(format!("{path}: {g}, expected {w}"));
            }
        }
        _ => {
            if g != w {
                out.push(format!("{path}: {}, expected {}", short(g), short(w)));
            }
        }
    }
}

/// Every difference between two JSON documents, one line per differing
/// leaf, named by its path: `ports[p2].drops.no_route: 3, expected 2`.
/// Array elements are named by their `name`, `line` (`rules[line 4]`), `id`
/// or `queue` member when every element has a distinct one, else by index.
///
/// Numbers under a path prefix listed in `tolerance` (e.g. `"hosts"` or
/// `"ports[p2].tx_bytes"`; the longest prefix counts) match when they
/// differ by at most that fraction of the larger one.
pub fn diff_json_all(got: &Value, want: &Value, tolerance: &BTreeMap<String, f64>) -> Vec<String> {
    let mut out = Vec::new();
    walk("", got, want, tolerance, &mut out);
    out
}

/// [`diff_json_all`], cut to the first `limit` lines plus `... and N more`.
pub fn diff_json(
    got: &Value,
    want: &Value,
    tolerance: &BTreeMap<String, f64>,
    limit: usize,
) -> Vec<String> {
    let mut all = diff_json_all(got, want, tolerance);
    if all.len() > limit {
        let more = all.len() - limit;
        all.truncate(limit);
        all.push(format!("... and {more} more"));
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    const A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const T0: Timestamp = Timestamp(1_000_000_000);

    fn udp(vlan: Option<u16>, ttl: u8, payload: &[u8]) -> Vec<u8> {
        let eth = PacketBuilder::ethernet2(A, B);
        let ip = match vlan {
            Some(v) => eth
                .single_vlan(etherparse::VlanId::try_new(v).expect("vid"))
                .ipv4([198, 18, 0, 1], [198, 18, 0, 2], ttl),
            None => eth.ipv4([198, 18, 0, 1], [198, 18, 0, 2], ttl),
        };
        let b = ip.udp(5000, 6000);
        let mut out = Vec::new();
        b.write(&mut out, payload).expect("build");
        out
    }

    fn at(us: u64, f: Vec<u8>) -> Frame {
        (Timestamp(T0.0 + us * 1000), f)
    }

    #[test]
    fn vlan_vid_change_names_the_field() {
        let got = vec![at(0, udp(None, 64, b"x")), at(1, udp(Some(10), 64, b"x"))];
        let want = vec![at(0, udp(None, 64, b"x")), at(1, udp(Some(20), 64, b"x"))];
        assert_eq!(
            diff_port("p2", &got, &want, T0),
            vec!["p2 frame 2: vlan_vid 10, expected 20"]
        );
    }

    #[test]
    fn missing_and_extra_tags_say_so() {
        let untagged = (T0, udp(None, 64, b"x"));
        let tagged = (T0, udp(Some(20), 64, b"x"));
        assert_eq!(
            diff_frame(&untagged, &tagged, T0).as_deref(),
            Some("no VLAN tag, expected vlan_vid 20")
        );
        assert_eq!(
            diff_frame(&tagged, &untagged, T0).as_deref(),
            Some("vlan_vid 20, expected no VLAN tag")
        );
    }

    #[test]
    fn ttl_and_payload_bytes() {
        let a = (T0, udp(None, 63, b"abc"));
        let b = (T0, udp(None, 64, b"abc"));
        // The TTL differs (and so does the checksum, which comes later).
        assert_eq!(
            diff_frame(&a, &b, T0).as_deref(),
            Some("ip_ttl 63, expected 64")
        );
        let a = (T0, udp(None, 64, b"abd"));
        let b = (T0, udp(None, 64, b"abc"));
        // UDP checksum (header bytes) differs before the payload: it is a
        // "byte", not a named field; without checksums, the payload byte.
        let mut a2 = a.1.clone();
        let mut b2 = b.1.clone();
        for f in [&mut a2, &mut b2] {
            f[40] = 0;
            f[41] = 0;
        }
        assert_eq!(
            diff_frame(&(T0, a2), &(T0, b2), T0).as_deref(),
            Some("payload byte 2: 0x64, expected 0x63")
        );
        assert!(diff_frame(&a, &b, T0)
            .is_some_and(|d| d.starts_with("byte 40: ") || d.starts_with("byte 41: ")));
        assert_eq!(diff_frame(&a, &a, T0), None);
    }

    #[test]
    fn timestamps_are_relative_to_the_start() {
        let a = at(200, udp(None, 64, b"x"));
        let b = at(100, udp(None, 64, b"x"));
        assert_eq!(
            diff_frame(&a, &b, T0).as_deref(),
            Some("timestamp 0.000200, expected 0.000100")
        );
        let c = (Timestamp(T0.0 + 5), b.1.clone());
        assert_eq!(
            diff_frame(&c, &b, T0).as_deref(),
            Some("timestamp 0.000000005, expected 0.000100000")
        );
    }

    #[test]
    fn extra_and_missing_frames() {
        let f: Vec<Frame> = (0..8).map(|i| at(i, udp(None, 64, &[i as u8]))).collect();
        // Two frames more, in the middle: the rest lines up.
        let mut got = f.clone();
        got.insert(6, at(100, udp(Some(10), 64, b"new")));
        got.insert(7, at(101, udp(None, 64, b"new")));
        let lines = diff_port("p4", &got, &f, T0);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(
            lines[0],
            "p4: 2 frames more than expected, first (frame 7): 0.000100 02:00:00:00:00:01 > \
             02:00:00:00:00:02 vlan 10 pcp 0 IPv4 198.18.0.1 > 198.18.0.2 UDP 5000 > 6000 len 49"
        );
        // One fewer, at the end.
        let lines = diff_port("p4", &f[..7], &f, T0);
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0]
                .starts_with("p4: 1 frame fewer than expected, first missing (frame 8): 0.000007 "),
            "{lines:?}"
        );
        // One fewer, in the middle.
        let mut short = f.clone();
        short.remove(4);
        let lines = diff_port("p4", &short, &f, T0);
        assert!(
            lines[0].starts_with("p4: 1 frame fewer than expected, first missing (frame 5): "),
            "{lines:?}"
        );
        // A changed frame and a missing one: both said.
        let mut changed = short.clone();
        changed[1] = at(1, udp(None, 1, &[1]));
        let lines = diff_port("p4", &changed, &f, T0);
        assert_eq!(
            lines,
            vec![
                "p4 frame 2: ip_ttl 1, expected 64",
                "p4: 7 frames, expected 8"
            ]
        );
    }

    #[test]
    fn unordered_ports_compare_as_a_multiset() {
        let a = at(0, udp(None, 64, b"a"));
        let b = at(0, udp(None, 64, b"b"));
        let c = at(0, udp(Some(3), 64, b"b"));
        let got = vec![b.clone(), a.clone()];
        let want = vec![a.clone(), b.clone()];
        assert!(diff_port_unordered("p1", &got, &want, T0).is_empty());
        assert!(!diff_port("p1", &got, &want, T0).is_empty());
        // Same count but a frame twice instead of two different frames.
        let twice = vec![a.clone(), a.clone()];
        let d = diff_port_unordered("p1", &twice, &want, T0);
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].starts_with("p1 frame 2 (unordered; closest expected: frame 2): "));
        // A different tag.
        let d = diff_port_unordered("p1", &[c, a.clone()], &want, T0);
        assert_eq!(
            d,
            vec!["p1 frame 1 (unordered; closest expected: frame 2): vlan_vid 3, expected no VLAN tag"]
        );
        let d = diff_port_unordered("p1", &[b, a.clone(), a], &want, T0);
        assert!(
            d[0].starts_with("p1: 1 frame more than expected, first (frame 3): "),
            "{d:?}"
        );
    }

    #[test]
    fn arp_and_tcp_fields() {
        let mut arp = Vec::new();
        PacketBuilder::ethernet2(A, [0xff; 6])
            .arp(
                etherparse::ArpPacket::new(
                    etherparse::ArpHardwareId::ETHERNET,
                    etherparse::EtherType::IPV4,
                    etherparse::ArpOperation::REQUEST,
                    &A,
                    &[10, 0, 0, 1],
                    &[0; 6],
                    &[10, 0, 0, 2],
                )
                .expect("arp"),
            )
            .write(&mut arp)
            .expect("build");
        let mut arp2 = arp.clone();
        arp2[41] = 3; // target protocol address, last byte
        assert_eq!(
            diff_frame(&(T0, arp2), &(T0, arp.clone()), T0).as_deref(),
            Some("arp_tpa 10.0.0.3, expected 10.0.0.2")
        );
        assert!(frame_summary(&(T0, arp), T0).contains("ARP request 10.0.0.1 > 10.0.0.2"));
        let tcp = |flags_syn: bool| {
            let b = PacketBuilder::ethernet2(A, B)
                .ipv4([1, 1, 1, 1], [2, 2, 2, 2], 64)
                .tcp(1000, 80, 7, 100);
            let b = if flags_syn { b.syn() } else { b.ack(1) };
            let mut out = Vec::new();
            b.write(&mut out, &[]).expect("build");
            out
        };
        assert_eq!(
            diff_frame(&(T0, tcp(true)), &(T0, tcp(false)), T0).as_deref(),
            Some("tcp_flags SYN, expected ACK")
        );
    }

    /// `f` with tags pushed: (TPID, TCI) pairs, outermost first.
    fn tagged(f: &[u8], tags: &[(u16, u16)]) -> Vec<u8> {
        let mut out = f[..12].to_vec();
        for (tpid, tci) in tags {
            out.extend_from_slice(&tpid.to_be_bytes());
            out.extend_from_slice(&tci.to_be_bytes());
        }
        out.extend_from_slice(&f[12..]);
        out
    }

    #[test]
    fn double_tags_and_ipv6() {
        let f = udp(None, 64, b"x");
        let a = (T0, tagged(&f, &[(0x88a8, 10), (0x8100, 5)]));
        let b = (T0, tagged(&f, &[(0x88a8, 10), (0x8100, 6)]));
        assert_eq!(
            diff_frame(&a, &b, T0).as_deref(),
            Some("inner_vlan_vid 5, expected 6")
        );
        let c = (T0, tagged(&f, &[(0x8100, 10), (0x8100, 5)]));
        assert_eq!(
            diff_frame(&a, &c, T0).as_deref(),
            Some("vlan_tpid 0x88a8, expected 0x8100")
        );
        let d = (T0, tagged(&f, &[(0x88a8, 10)]));
        assert_eq!(
            diff_frame(&d, &a, T0).as_deref(),
            Some("no inner VLAN tag, expected inner_vlan_vid 5")
        );
        let pcp = (T0, tagged(&f, &[(0x8100, (5 << 13) | 10)]));
        let dei = (T0, tagged(&f, &[(0x8100, (5 << 13) | 0x1000 | 10)]));
        assert_eq!(
            diff_frame(&pcp, &dei, T0).as_deref(),
            Some("vlan_dei 0, expected 1")
        );
        assert!(frame_summary(&a, T0).contains(" vlan 10 pcp 0 vlan 5 pcp 0 IPv4 "));
        let v6 = |hop: u8| {
            let mut out = Vec::new();
            PacketBuilder::ethernet2(A, B)
                .ipv6([0xfe; 16], [0xff; 16], hop)
                .udp(1, 2)
                .write(&mut out, b"z")
                .expect("build");
            (T0, out)
        };
        assert_eq!(
            diff_frame(&v6(63), &v6(64), T0).as_deref(),
            Some("ip_ttl 63, expected 64")
        );
        assert_eq!(
            diff_frame(&v6(64), &b, T0).as_deref(),
            Some("no VLAN tag, expected vlan_vid 10")
        );
    }

    #[test]
    fn json_diff_names_ports_and_rules() {
        let want: Value = serde_json::json!({
            "frames_in": 10,
            "ports": [
                {"name": "p1", "drops": {}},
                {"name": "p2", "drops": {"no_route": 2}},
            ],
            "rules": [{"line": 0, "n_packets": 5}, {"line": 4, "n_packets": 1}],
            "tables": [[0, 18, 18]],
        });
        let mut got = want.clone();
        got["ports"][1]["drops"]["no_route"] = 3.into();
        got["ports"][0]["drops"]["mtu"] = 1.into();
        got["rules"][1]["n_packets"] = 2.into();
        got["tables"][0][1] = 17.into();
        let d = diff_json(&got, &want, &BTreeMap::new(), 10);
        assert_eq!(
            d,
            vec![
                "ports[p1].drops.mtu: 1, expected (absent)",
                "ports[p2].drops.no_route: 3, expected 2",
                "rules[line 4].n_packets: 2, expected 1",
                "tables[0][1]: 17, expected 18",
            ]
        );
        let d = diff_json(&got, &want, &BTreeMap::new(), 2);
        assert_eq!(d.len(), 3);
        assert_eq!(d[2], "... and 2 more");
        assert!(diff_json(&want, &want, &BTreeMap::new(), 10).is_empty());
        // A port that disappeared.
        let mut gone = want.clone();
        if let Some(a) = gone["ports"].as_array_mut() {
            a.pop();
        }
        let d = diff_json(&gone, &want, &BTreeMap::new(), 10);
        assert_eq!(d.len(), 1);
        assert!(d[0].starts_with("ports[p2]: (absent), expected {"), "{d:?}");
    }

    #[test]
    fn tolerance_applies_under_its_prefix_only() {
        let want = serde_json::json!({"hosts": {"h1": {"goodput": 1000.0}}, "frames_in": 100});
        let got = serde_json::json!({"hosts": {"h1": {"goodput": 1040.0}}, "frames_in": 104});
        let mut tol = BTreeMap::new();
        tol.insert("hosts".to_string(), 0.05);
        assert_eq!(
            diff_json(&got, &want, &tol, 10),
            vec!["frames_in: 104, expected 100"]
        );
        tol.insert("hosts.h1".to_string(), 0.01);
        assert_eq!(diff_json(&got, &want, &tol, 10).len(), 2);
        // "host" is not a prefix of "hosts" at a path boundary.
        let mut tol = BTreeMap::new();
        tol.insert("host".to_string(), 0.5);
        assert_eq!(diff_json(&got, &want, &tol, 10).len(), 2);
        // Large integers are compared exactly.
        assert_eq!(
            diff_json(
                &serde_json::json!({"a": (1u64 << 60) + 1}),
                &serde_json::json!({"a": 1u64 << 60}),
                &BTreeMap::new(),
                10
            ),
            vec!["a: 1152921504606846977, expected 1152921504606846976"]
        );
        // Integers and floats that are the same number match.
        assert!(diff_json(
            &serde_json::json!({"a": 1}),
            &serde_json::json!({"a": 1.0}),
            &BTreeMap::new(),
            10
        )
        .is_empty());
    }
}
