//! The control protocol between `xsw` and `xswd`, version 1.
//!
//! A client connects to the daemon's Unix stream socket (default
//! `/run/xsw/xswd.sock`) and writes requests, one JSON object per line; the
//! daemon answers each with one JSON object on one line, in order. A
//! connection may carry any number of requests.
//!
//! Request:
//!
//! ```json
//! {"version": 1, "id": 7, "cmd": "flow.add", "args": {"bridge": "br0", "flow": "ip,actions=drop"}}
//! ```
//!
//! `id` is optional and echoed back. Answer, on success and on failure:
//!
//! ```json
//! {"version": 1, "id": 7, "ok": true, "result": {...}}
//! {"version": 1, "id": 7, "ok": false, "error": {"code": "bad_flow", "message": "...", "where": "flow, column 4"}}
//! ```
//!
//! A request is checked completely before anything changes: on any error
//! nothing changed. Commands (`args` fields; `?` marks optional ones):
//!
//! | cmd            | args                                          | result |
//! |----------------|-----------------------------------------------|--------|
//! | `hello`        | —                                             | `{version, daemon, pid}` |
//! | `show`         | `bridge?`                                     | `{bridges: [...], engine: {...}}` |
//! | `bridge.add`   | `name, mac_aging?, mac_table_size?`           | `{}` |
//! | `bridge.del`   | `name`                                        | `{}` |
//! | `port.add`     | `bridge, port` (a port as in the config file; `ofport` 0 or absent picks a free one) | `{ofport}` |
//! | `port.del`     | `bridge, name`                                | `{}` |
//! | `port.set`     | `bridge, name, qos` (as `[bridge.port.qos]`; null removes it) | `{}` |
//! | `port.stats`   | `bridge`                                      | `{ports: [...]}` (with per-queue counters) |
//! | `meter.add`    | `bridge, meter: {id, rate, burst?}`           | `{}` |
//! | `meter.del`    | `bridge, id`                                  | `{}` |
//! | `meter.show`   | `bridge`                                      | `{meters: [...]}` |
//! | `flow.add`     | `bridge, flows` (list of rules)               | `{added}` |
//! | `flow.del`     | `bridge, match?` (none: all), `strict?`       | `{deleted}` |
//! | `flow.replace` | `bridge, flows`                               | `{rules}` |
//! | `flow.dump`    | `bridge`                                      | `{flows: [...]}` |
//! | `fdb.show`     | `bridge`                                      | `{entries: [...]}` |
//! | `fdb.flush`    | `bridge`                                      | `{flushed}` |
//! | `trace`        | `bridge, in_port, frame` (hex)                | `{text, lines, outputs, dropped}` |
//! | `metrics`      | —                                             | `{text}` (Prometheus format) |
//!
//! Error codes: `bad_request` (not JSON, unknown command or field),
//! `version` (unsupported protocol version), `not_found`, `exists`,
//! `invalid` (a value out of range or inconsistent), `bad_flow` (a rule
//! that does not parse; `where` says which and the column), `device` (an
//! interface that cannot be opened), `internal`.

use serde::{Deserialize, Serialize};

use crate::spec::{MeterSpec, PortSpec};
use xsw_datapath::spec::QosSpec;

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;

/// The default socket path.
pub const DEFAULT_SOCKET: &str = "/run/xsw/xswd.sock";

/// The longest request line the daemon reads (a `flow.replace` of a few
/// hundred thousand rules fits).
pub const MAX_LINE: usize = 64 << 20;

/// A request: the envelope and the command.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Protocol version (1).
    pub version: u32,
    /// Echoed back in the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// The command.
    #[serde(flatten)]
    pub cmd: Command,
}

/// The commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", content = "args", deny_unknown_fields)]
pub enum Command {
    /// Who is there.
    #[serde(rename = "hello")]
    Hello,
    /// Bridges, ports, flow counts.
    #[serde(rename = "show")]
    Show {
        /// One bridge only.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bridge: Option<String>,
    },
    /// Creates a bridge (with the default NORMAL rule, no ports).
    #[serde(rename = "bridge.add")]
    BridgeAdd {
        /// Name.
        name: String,
        /// MAC aging, seconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mac_aging: Option<u64>,
        /// MAC table size.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mac_table_size: Option<usize>,
    },
    /// Deletes a bridge and its ports.
    #[serde(rename = "bridge.del")]
    BridgeDel {
        /// Name.
        name: String,
    },
    /// Adds a port.
    #[serde(rename = "port.add")]
    PortAdd {
        /// Bridge.
        bridge: String,
        /// The port.
        port: Box<PortSpec>,
    },
    /// Deletes a port.
    #[serde(rename = "port.del")]
    PortDel {
        /// Bridge.
        bridge: String,
        /// Port name.
        name: String,
    },
    /// Sets (or, with `qos` null, removes) a port's QoS.
    #[serde(rename = "port.set")]
    PortSet {
        /// Bridge.
        bridge: String,
        /// Port name.
        name: String,
        /// The whole QoS setting (as `[bridge.port.qos]` in the config).
        qos: Option<Box<QosSpec>>,
    },
    /// Adds a meter, or changes one (keeping its counters).
    #[serde(rename = "meter.add")]
    MeterAdd {
        /// Bridge.
        bridge: String,
        /// The meter.
        meter: MeterSpec,
    },
    /// Deletes a meter no rule uses.
    #[serde(rename = "meter.del")]
    MeterDel {
        /// Bridge.
        bridge: String,
        /// Meter id.
        id: u32,
    },
    /// Meters with their counters.
    #[serde(rename = "meter.show")]
    MeterShow {
        /// Bridge.
        bridge: String,
    },
    /// Port counters.
    #[serde(rename = "port.stats")]
    PortStats {
        /// Bridge.
        bridge: String,
    },
    /// Adds rules (each replaces a rule with the same table, priority and match).
    #[serde(rename = "flow.add")]
    FlowAdd {
        /// Bridge.
        bridge: String,
        /// Rules, ovs-ofctl syntax.
        flows: Vec<String>,
    },
    /// Deletes rules.
    #[serde(rename = "flow.del")]
    FlowDel {
        /// Bridge.
        bridge: String,
        /// Which rules (ovs-ofctl del-flows syntax); none: all.
        #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
        matches: Option<String>,
        /// Only the rule with exactly this match and priority.
        #[serde(default)]
        strict: bool,
    },
    /// Replaces all rules at once.
    #[serde(rename = "flow.replace")]
    FlowReplace {
        /// Bridge.
        bridge: String,
        /// The new rules.
        flows: Vec<String>,
    },
    /// Rules with counters.
    #[serde(rename = "flow.dump")]
    FlowDump {
        /// Bridge.
        bridge: String,
    },
    /// Learned MACs.
    #[serde(rename = "fdb.show")]
    FdbShow {
        /// Bridge.
        bridge: String,
    },
    /// Forgets learned MACs.
    #[serde(rename = "fdb.flush")]
    FdbFlush {
        /// Bridge.
        bridge: String,
    },
    /// Traces a frame on the live tables (changes nothing).
    #[serde(rename = "trace")]
    Trace {
        /// Bridge.
        bridge: String,
        /// Port it arrives on.
        in_port: String,
        /// The frame, hex.
        frame: String,
    },
    /// Metrics in Prometheus text format.
    #[serde(rename = "metrics")]
    Metrics,
}

impl Command {
    /// True for commands that change something.
    pub fn mutates(&self) -> bool {
        matches!(
            self,
            Command::BridgeAdd { .. }
                | Command::BridgeDel { .. }
                | Command::PortAdd { .. }
                | Command::PortDel { .. }
                | Command::PortSet { .. }
                | Command::MeterAdd { .. }
                | Command::MeterDel { .. }
                | Command::FlowAdd { .. }
                | Command::FlowDel { .. }
                | Command::FlowReplace { .. }
                | Command::FdbFlush { .. }
        )
    }
}

/// Error codes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    /// Not JSON, unknown command or field.
    BadRequest,
    /// Unsupported protocol version.
    Version,
    /// No such bridge or port.
    NotFound,
    /// Already there.
    Exists,
    /// A value out of range or inconsistent.
    Invalid,
    /// A rule that does not parse.
    BadFlow,
    /// A device that cannot be opened.
    Device,
    /// Something went wrong inside the daemon.
    Internal,
}

/// An error answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// What kind.
    pub code: Code,
    /// What went wrong, for people.
    pub message: String,
    /// Where in the request, when it is about one part of it.
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub place: Option<String>,
    /// More context (e.g. the rule with a caret under the problem).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl ErrorBody {
    /// An error without a place.
    pub fn new(code: Code, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            code,
            message: message.into(),
            place: None,
            detail: None,
        }
    }

    /// The same, with context.
    pub fn detail(mut self, detail: impl Into<String>) -> ErrorBody {
        self.detail = Some(detail.into());
        self
    }

    /// The same, located.
    pub fn at(mut self, place: impl Into<String>) -> ErrorBody {
        self.place = Some(place.into());
        self
    }
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.place {
            Some(p) => write!(f, "{p}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// An answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct Response {
    /// Protocol version (1).
    pub version: u32,
    /// The request's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// Success.
    pub ok: bool,
    /// The result, on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// The error, on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl Response {
    /// A success.
    pub fn ok(id: Option<u64>, result: serde_json::Value) -> Response {
        Response {
            version: VERSION,
            id,
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    /// A failure.
    pub fn err(id: Option<u64>, e: ErrorBody) -> Response {
        Response {
            version: VERSION,
            id,
            ok: false,
            result: None,
            error: Some(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_read_as_documented() {
        let r: Request = serde_json::from_str(
            r#"{"version":1,"id":7,"cmd":"flow.add","args":{"bridge":"br0","flows":["ip,actions=drop"]}}"#,
        )
        .expect("parse");
        assert_eq!(r.id, Some(7));
        assert!(matches!(r.cmd, Command::FlowAdd { ref flows, .. } if flows.len() == 1));
        let r: Request = serde_json::from_str(r#"{"version":1,"cmd":"hello"}"#).expect("no args");
        assert!(matches!(r.cmd, Command::Hello));
        let r: Request = serde_json::from_str(
            r#"{"version":1,"cmd":"flow.del","args":{"bridge":"b","match":"ip","strict":true}}"#,
        )
        .expect("del");
        assert!(matches!(r.cmd, Command::FlowDel { strict: true, .. }));
        assert!(serde_json::from_str::<Request>(r#"{"version":1,"cmd":"nope"}"#).is_err());
        assert!(serde_json::from_str::<Request>(
            r#"{"version":1,"cmd":"fdb.show","args":{"bridge":"b","extra":1}}"#
        )
        .is_err());
        // And back.
        let s = serde_json::to_string(&Request {
            version: 1,
            id: None,
            cmd: Command::Show { bridge: None },
        })
        .expect("json");
        assert_eq!(s, r#"{"version":1,"cmd":"show","args":{}}"#);
    }
}
