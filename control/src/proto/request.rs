//! The request types: one per command, each the `args` of its
//! [`Command`](super::Command).

use serde::{Deserialize, Serialize};

use crate::spec::{MeterSpec, PortSpec};
use xsw_datapath::spec::QosSpec;

/// `show`: bridges, ports, flow counts. Answered with [`ShowReply`](super::ShowReply).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Show {
    /// One bridge only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
}

/// `bridge.add`: creates a bridge (with the default NORMAL rule, no ports).
/// Answered with [`Done`](super::Done).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeAdd {
    /// Name.
    pub name: String,
    /// MAC aging, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_aging: Option<u64>,
    /// MAC table size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_table_size: Option<usize>,
}

/// `bridge.del`: deletes a bridge and its ports. Answered with [`Done`](super::Done).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeDel {
    /// Name.
    pub name: String,
}

/// `port.add`: adds a port. Answered with [`PortAddReply`](super::PortAddReply).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortAdd {
    /// Bridge.
    pub bridge: String,
    /// The port.
    pub port: Box<PortSpec>,
}

/// `port.del`: deletes a port. Answered with [`Done`](super::Done).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortDel {
    /// Bridge.
    pub bridge: String,
    /// Port name.
    pub name: String,
}

/// `port.set`: sets (or, with `qos` null, removes) a port's QoS. Answered
/// with [`Done`](super::Done).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSet {
    /// Bridge.
    pub bridge: String,
    /// Port name.
    pub name: String,
    /// The whole QoS setting (as `[bridge.port.qos]` in the config).
    pub qos: Option<Box<QosSpec>>,
}

/// `meter.add`: adds a meter, or changes one (keeping its counters).
/// Answered with [`Done`](super::Done).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeterAdd {
    /// Bridge.
    pub bridge: String,
    /// The meter.
    pub meter: MeterSpec,
}

/// `meter.del`: deletes a meter no rule uses. Answered with [`Done`](super::Done).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeterDel {
    /// Bridge.
    pub bridge: String,
    /// Meter id.
    pub id: u32,
}

/// `meter.show`: meters with their counters. Answered with
/// [`MeterShowReply`](super::MeterShowReply).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeterShow {
    /// Bridge.
    pub bridge: String,
}

/// `port.stats`: port counters. Answered with [`PortStatsReply`](super::PortStatsReply).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortStats {
    /// Bridge.
    pub bridge: String,
}

/// `flow.add`: adds rules (each replaces a rule with the same table,
/// priority and match). Answered with [`FlowAddReply`](super::FlowAddReply).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowAdd {
    /// Bridge.
    pub bridge: String,
    /// Rules, ovs-ofctl syntax.
    pub flows: Vec<String>,
}

/// `flow.del`: deletes rules. Answered with [`FlowDelReply`](super::FlowDelReply).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowDel {
    /// Bridge.
    pub bridge: String,
    /// Which rules (ovs-ofctl del-flows syntax); none: all.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub matches: Option<String>,
    /// Only the rule with exactly this match and priority.
    #[serde(default)]
    pub strict: bool,
}

/// `flow.replace`: replaces all rules at once. Answered with
/// [`FlowReplaceReply`](super::FlowReplaceReply).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowReplace {
    /// Bridge.
    pub bridge: String,
    /// The new rules.
    pub flows: Vec<String>,
}

/// `flow.dump`: rules with counters. Answered with [`FlowDumpReply`](super::FlowDumpReply).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowDump {
    /// Bridge.
    pub bridge: String,
}

/// `fdb.show`: learned MACs. Answered with [`FdbShowReply`](super::FdbShowReply).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FdbShow {
    /// Bridge.
    pub bridge: String,
}

/// `fdb.flush`: forgets learned MACs. Answered with [`FdbFlushReply`](super::FdbFlushReply).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FdbFlush {
    /// Bridge.
    pub bridge: String,
}

/// `trace`: traces a frame on the live tables (changes nothing). Answered
/// with [`TraceReply`](super::TraceReply).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trace {
    /// Bridge.
    pub bridge: String,
    /// Port it arrives on.
    pub in_port: String,
    /// The frame, hex.
    pub frame: String,
}

/// Parses hex, ignoring spaces and colons (a [`Trace`]'s frame; `xsw`
/// reads `--frame` with it too).
pub fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let mut digits = Vec::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_ascii_whitespace() || c == ':' {
            continue;
        }
        match c.to_digit(16) {
            Some(d) => digits.push(d as u8),
            None => return Err(format!("`{c}` at position {} is not a hex digit", i + 1)),
        }
    }
    if digits.len() % 2 != 0 {
        return Err(format!(
            "odd number of hex digits ({}): each byte needs two",
            digits.len()
        ));
    }
    Ok(digits.chunks(2).map(|p| (p[0] << 4) | p[1]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_frames_read_with_or_without_separators() {
        assert_eq!(parse_hex("0a:FF 10"), Ok(vec![0x0a, 0xff, 0x10]));
        assert_eq!(parse_hex(""), Ok(vec![]));
        assert_eq!(
            parse_hex("0g"),
            Err("`g` at position 2 is not a hex digit".to_string())
        );
        assert_eq!(
            parse_hex("abc"),
            Err("odd number of hex digits (3): each byte needs two".to_string())
        );
    }
}
