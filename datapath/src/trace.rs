//! Packet tracing: what each stage decided for one frame.
//!
//! The pipeline is generic over a [`Tracer`]; with [`NoTrace`] every trace
//! call compiles away, so the hot path pays nothing. [`TraceLog`] records
//! [`TraceEvent`]s, which [`render`] turns into the report `xsw trace` prints.

use std::fmt::Write as _;

use serde::Serialize;

use crate::clock::Timestamp;
use crate::flow::Actions;
use crate::key::{FlowKey, Mac};
use crate::mac::{Evicted, Learned};
use crate::parse::ParseNote;
use crate::stats::DropReason;

/// The rule a table lookup found, as a trace tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatchedRule {
    /// The rule's id in its tables.
    pub id: u32,
    /// Its priority.
    pub priority: u16,
    /// Its cookie.
    pub cookie: u64,
    /// The rule, in ovs-ofctl syntax.
    pub text: String,
}

/// One decision.
#[derive(Clone, Debug, PartialEq)]
pub enum TraceEvent {
    /// A frame entered.
    Received {
        /// Ingress port index.
        port: u16,
        /// Length.
        len: usize,
        /// Arrival time.
        ts: Timestamp,
    },
    /// The parser's result.
    Parsed {
        /// The key.
        key: FlowKey,
        /// Where parsing stopped early.
        note: ParseNote,
        /// Other facts (fragment...).
        flags: crate::parse::ParseFlags,
    },
    /// Rules expired before this frame.
    Expired {
        /// How many.
        count: usize,
    },
    /// A table lookup.
    Lookup {
        /// Table.
        table: u8,
        /// Resubmit depth.
        depth: u8,
        /// The rule found.
        rule: Option<MatchedRule>,
        /// Answered by the exact-match cache.
        cached: bool,
    },
    /// An action is about to run.
    Action {
        /// Depth.
        depth: u8,
        /// Its text.
        text: String,
    },
    /// NORMAL: the frame's VLAN inside the switch.
    NormalVlan {
        /// VLAN.
        vlan: u16,
    },
    /// NORMAL: source learning.
    Learn {
        /// VLAN.
        vlan: u16,
        /// MAC.
        mac: u64,
        /// Port index.
        port: u16,
        /// What happened.
        result: Learned,
        /// Entry evicted to make room.
        evicted: Option<Evicted>,
    },
    /// NORMAL: destination lookup.
    MacLookup {
        /// VLAN.
        vlan: u16,
        /// MAC.
        mac: u64,
        /// Port index it was learned on.
        port: Option<u16>,
    },
    /// NORMAL: flooding.
    Flood {
        /// VLAN.
        vlan: u16,
    },
    /// A copy was queued for output.
    Output {
        /// Port index.
        port: u16,
        /// Frame length as sent.
        len: usize,
        /// Outer VLAN TCI as sent (0 = untagged).
        tci: u16,
    },
    /// A decision not to output (the packet may still go elsewhere).
    Skip {
        /// Why.
        reason: DropReason,
    },
    /// An egress drop on a port.
    EgressDrop {
        /// Port index.
        port: u16,
        /// Why.
        reason: DropReason,
    },
    /// The frame went nowhere.
    Dropped {
        /// Why.
        reason: DropReason,
    },
}

/// Receives trace events.
pub trait Tracer {
    /// False for tracers that discard everything (lets calls compile away).
    const ENABLED: bool;
    /// True for a dry run: the pipeline decides as usual but changes
    /// nothing (no counters, no learning, no timers); the caller discards
    /// the outputs. Live traces use it so tracing never disturbs traffic.
    const DRY: bool = false;
    /// Records one event.
    fn record(&mut self, e: TraceEvent);
}

/// Records everything, in a dry run (see [`Tracer::DRY`]).
#[derive(Debug, Default, Clone)]
pub struct DryRun(pub TraceLog);

impl Tracer for DryRun {
    const ENABLED: bool = true;
    const DRY: bool = true;
    fn record(&mut self, e: TraceEvent) {
        self.0.events.push(e);
    }
}

/// Records nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoTrace;

impl Tracer for NoTrace {
    const ENABLED: bool = false;
    #[inline(always)]
    fn record(&mut self, _: TraceEvent) {}
}

/// Records everything.
#[derive(Debug, Default, Clone)]
pub struct TraceLog {
    /// The events, in order.
    pub events: Vec<TraceEvent>,
}

impl Tracer for TraceLog {
    const ENABLED: bool = true;
    fn record(&mut self, e: TraceEvent) {
        self.events.push(e);
    }
}

fn fmt_key(k: &FlowKey) -> String {
    use crate::parse::consts::*;
    let mut s = format!(
        "in_port={} dl_src={} dl_dst={} dl_type=0x{:04x}",
        k.in_port(),
        Mac(k.dl_src()),
        Mac(k.dl_dst()),
        k.dl_type()
    );
    let tci = k.vlan_tci();
    if tci & VLAN_CFI != 0 {
        let _ = write!(s, " vlan={} pcp={}", tci & VLAN_VID_MASK, tci >> 13);
    } else {
        s.push_str(" untagged");
    }
    match k.dl_type() {
        ETH_TYPE_IP => {
            let _ = write!(
                s,
                " nw_src={} nw_dst={} nw_proto={} nw_tos={} tp_src={} tp_dst={}",
                std::net::Ipv4Addr::from(k.nw_src()),
                std::net::Ipv4Addr::from(k.nw_dst()),
                k.nw_proto(),
                k.nw_tos(),
                k.tp_src(),
                k.tp_dst()
            );
        }
        ETH_TYPE_IPV6 => {
            let _ = write!(
                s,
                " ipv6_src={} ipv6_dst={} nw_proto={} nw_tos={} tp_src={} tp_dst={}",
                std::net::Ipv6Addr::from(k.ipv6_src()),
                std::net::Ipv6Addr::from(k.ipv6_dst()),
                k.nw_proto(),
                k.nw_tos(),
                k.tp_src(),
                k.tp_dst()
            );
        }
        ETH_TYPE_ARP | ETH_TYPE_RARP => {
            let _ = write!(
                s,
                " arp_op={} arp_spa={} arp_tpa={}",
                k.nw_proto(),
                std::net::Ipv4Addr::from(k.nw_src()),
                std::net::Ipv4Addr::from(k.nw_dst())
            );
        }
        _ => {}
    }
    s
}

/// Renders a trace as text, naming ports with `port_name(index)`.
pub fn render(events: &[TraceEvent], port_name: &dyn Fn(u16) -> String) -> String {
    let mut out = String::new();
    for e in events {
        let line = match e {
            TraceEvent::Received { port, len, ts } => {
                format!("frame: {len} bytes on port {} at {ts}", port_name(*port))
            }
            TraceEvent::Parsed { key, note, flags } => {
                let mut l = format!("parsed: {}", fmt_key(key));
                if flags.contains(crate::parse::ParseFlags::FRAGMENT) {
                    let which = if flags.contains(crate::parse::ParseFlags::LATER_FRAGMENT) {
                        "a later"
                    } else {
                        "the first"
                    };
                    let _ = write!(l, "\n  note: {which} fragment of an IP packet: L4 ports read as 0 (as in OVS)");
                }
                if *note != ParseNote::Complete {
                    let _ = write!(
                        l,
                        "\n  note: parsing stopped early ({}); switching on the fields above",
                        note.name()
                    );
                }
                l
            }
            TraceEvent::Expired { count } => {
                format!("timeouts: {count} rule(s) expired before this frame")
            }
            TraceEvent::Lookup {
                table,
                depth,
                rule,
                cached,
            } => {
                let ind = "  ".repeat(*depth as usize);
                match rule {
                    Some(MatchedRule {
                        priority,
                        cookie,
                        text,
                        ..
                    }) => format!(
                        "{ind}table {table}: matched priority={priority} cookie={cookie:#x}{}\n{ind}  rule: {text}",
                        if *cached { " (exact-match cache)" } else { "" }
                    ),
                    None => format!("{ind}table {table}: no rule matched"),
                }
            }
            TraceEvent::Action { depth, text } => {
                format!("{}  action: {text}", "  ".repeat(*depth as usize))
            }
            TraceEvent::NormalVlan { vlan } => format!("    normal: frame is in VLAN {vlan}"),
            TraceEvent::Learn {
                vlan,
                mac,
                port,
                result,
                evicted,
            } => {
                let what = match result {
                    Learned::Ignored => "not learned (multicast source)".to_string(),
                    Learned::New => format!("learned on port {}", port_name(*port)),
                    Learned::Moved { from } => format!(
                        "moved from port {} to port {}",
                        port_name(*from),
                        port_name(*port)
                    ),
                    Learned::Refreshed => format!("refreshed on port {}", port_name(*port)),
                    Learned::Unchanged => format!("already learned on port {}", port_name(*port)),
                };
                let mut l = format!("    normal: source {} in VLAN {vlan} {what}", Mac(*mac));
                if let Some(ev) = evicted {
                    let _ = write!(
                        l,
                        " (table full: evicted {} in VLAN {} from port {})",
                        Mac(ev.mac),
                        ev.vlan,
                        port_name(ev.port)
                    );
                }
                l
            }
            TraceEvent::MacLookup { vlan, mac, port } => match port {
                Some(p) => format!(
                    "    normal: destination {} in VLAN {vlan} is on port {}",
                    Mac(*mac),
                    port_name(*p)
                ),
                None => format!(
                    "    normal: destination {} in VLAN {vlan} is unknown",
                    Mac(*mac)
                ),
            },
            TraceEvent::Flood { vlan } => {
                format!("    normal: flooding to every other port in VLAN {vlan}")
            }
            TraceEvent::Output { port, len, tci } => {
                let tag = if *tci == 0 {
                    "untagged".to_string()
                } else {
                    format!("vlan {} pcp {}", tci & 0x0fff, tci >> 13)
                };
                format!(
                    "    -> output to port {}: {len} bytes, {tag}",
                    port_name(*port)
                )
            }
            TraceEvent::Skip {
                reason: DropReason::Meter,
            } => "    (meter: over its rate; the actions after it do not run)".to_string(),
            TraceEvent::Skip { reason } => format!("    (no output: {})", reason.name()),
            TraceEvent::EgressDrop { port, reason } => {
                format!(
                    "    -> dropped at port {}: {}",
                    port_name(*port),
                    reason.name()
                )
            }
            TraceEvent::Dropped { reason } => format!("result: dropped ({})", reason.name()),
        };
        out.push_str(&line);
        out.push('\n');
    }
    let outs: Vec<String> = delivered(events).into_iter().map(port_name).collect();
    let dropped = events
        .iter()
        .any(|e| matches!(e, TraceEvent::Dropped { .. }));
    if !dropped && !outs.is_empty() {
        out.push_str(&format!("result: sent to {}\n", outs.join(", ")));
    }
    out
}

/// The ports that really got a copy: outputs minus copies dropped at the
/// port (MTU, full queue...), nothing when the whole frame was dropped.
pub fn delivered(events: &[TraceEvent]) -> Vec<u16> {
    if events
        .iter()
        .any(|e| matches!(e, TraceEvent::Dropped { .. }))
    {
        return Vec::new();
    }
    let mut outs: Vec<u16> = Vec::new();
    for e in events {
        match e {
            TraceEvent::Output { port, .. } => outs.push(*port),
            TraceEvent::EgressDrop { port, .. } => {
                if let Some(i) = outs.iter().position(|p| p == port) {
                    outs.remove(i);
                }
            }
            _ => {}
        }
    }
    outs
}

/// A trace event list as JSON-friendly records.
#[derive(Debug, Serialize)]
pub struct TraceJson {
    /// The rendered lines.
    pub lines: Vec<String>,
    /// Output port names, in order.
    pub outputs: Vec<String>,
    /// The drop reason, when nothing was sent.
    pub dropped: Option<&'static str>,
}

impl TraceJson {
    /// Summarises a trace.
    pub fn new(events: &[TraceEvent], port_name: &dyn Fn(u16) -> String) -> Self {
        let text = render(events, port_name);
        TraceJson {
            lines: text.lines().map(str::to_string).collect(),
            outputs: delivered(events).into_iter().map(port_name).collect(),
            dropped: events.iter().find_map(|e| match e {
                TraceEvent::Dropped { reason } => Some(reason.name()),
                _ => None,
            }),
        }
    }
}

/// Renders an action list for traces.
pub fn actions_text(a: &[crate::flow::Action]) -> String {
    Actions(a).to_string()
}

/// The result of a trace.
#[derive(Debug, Clone)]
pub struct TraceReport {
    /// The events.
    pub events: Vec<TraceEvent>,
    /// Port names by index.
    pub port_names: Vec<String>,
    /// Frames replayed before the traced one.
    pub warmup_frames: u64,
}

impl TraceReport {
    /// The report as text.
    pub fn render(&self) -> String {
        let names = |i: u16| {
            self.port_names
                .get(i as usize)
                .cloned()
                .unwrap_or_else(|| format!("#{i}"))
        };
        render(&self.events, &names)
    }

    /// The report as JSON-friendly records (a port without a name is "").
    pub fn json(&self) -> TraceJson {
        let names = |i: u16| self.port_names.get(i as usize).cloned().unwrap_or_default();
        TraceJson::new(&self.events, &names)
    }
}
