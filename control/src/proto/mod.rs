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
//! {"version": 1, "id": 7, "cmd": "flow.add", "args": {"bridge": "br0", "flows": ["ip,actions=drop"]}}
//! ```
//!
//! `id` is optional and echoed back. Answer, on success and on failure:
//!
//! ```json
//! {"version": 1, "id": 7, "ok": true, "result": {...}}
//! {"version": 1, "id": 7, "ok": false, "error": {"code": "bad_flow", "message": "...", "where": "flow, column 4", "rule": 1, "column": 4}}
//! ```
//!
//! A request is checked completely before anything changes: on any error
//! nothing changed. Commands: each has one request type (its `args`; `?`
//! marks optional fields) and one reply type (its `result`), both shared by
//! the daemon and the `xsw` tool; [`Call`] ties them together.
//!
//! | cmd            | request (`args`)                              | reply (`result`) |
//! |----------------|-----------------------------------------------|--------|
//! | `hello`        | [`Hello`]: —                                  | [`HelloReply`] `{version, daemon, pid}` |
//! | `show`         | [`Show`] `{bridge?}`                          | [`ShowReply`] `{bridges: [...], engine: {...}}` |
//! | `bridge.add`   | [`BridgeAdd`] `{name, mac_aging?, mac_table_size?}` | [`Done`] `{}` |
//! | `bridge.del`   | [`BridgeDel`] `{name}`                        | [`Done`] `{}` |
//! | `port.add`     | [`PortAdd`] `{bridge, port}` (a port as in the config file; `ofport` 0 or absent picks a free one) | [`PortAddReply`] `{ofport}` |
//! | `port.del`     | [`PortDel`] `{bridge, name}`                  | [`Done`] `{}` |
//! | `port.set`     | [`PortSet`] `{bridge, name, qos}` (as `[bridge.port.qos]`; null removes it) | [`Done`] `{}` |
//! | `port.stats`   | [`PortStats`] `{bridge}`                      | [`PortStatsReply`] `{ports: [...]}` (with per-queue counters) |
//! | `meter.add`    | [`MeterAdd`] `{bridge, meter: {id, rate, burst?}}` | [`Done`] `{}` |
//! | `meter.del`    | [`MeterDel`] `{bridge, id}`                   | [`Done`] `{}` |
//! | `meter.show`   | [`MeterShow`] `{bridge}`                      | [`MeterShowReply`] `{meters: [...]}` |
//! | `flow.add`     | [`FlowAdd`] `{bridge, flows}` (list of rules) | [`FlowAddReply`] `{added, effect_us}` |
//! | `flow.del`     | [`FlowDel`] `{bridge, match?, strict?}` (no match: all) | [`FlowDelReply`] `{deleted}` |
//! | `flow.replace` | [`FlowReplace`] `{bridge, flows}`             | [`FlowReplaceReply`] `{rules, effect_us, swap_us}` |
//! | `flow.dump`    | [`FlowDump`] `{bridge}`                       | [`FlowDumpReply`] `{flows: [...]}` |
//! | `fdb.show`     | [`FdbShow`] `{bridge}`                        | [`FdbShowReply`] `{entries: [...]}` |
//! | `fdb.flush`    | [`FdbFlush`] `{bridge}`                       | [`FdbFlushReply`] `{flushed}` |
//! | `trace`        | [`Trace`] `{bridge, in_port, frame}` (hex)    | [`TraceReply`] `{text, lines, outputs, dropped}` |
//! | `metrics`      | [`Metrics`]: —                                | [`MetricsReply`] `{text}` (Prometheus format) |
//!
//! Error codes ([`Code`]): `bad_request` (not JSON, unknown command or
//! field), `version` (unsupported protocol version), `not_found`, `exists`,
//! `invalid` (a value out of range or inconsistent), `bad_flow` (a rule
//! that does not parse; `where` says which and the column, and so do the
//! fields `rule` and `column`), `device` (an interface that cannot be
//! opened), `internal`. The error itself is an [`ErrorBody`].
//!
//! On the socket, the keys of every `result` object come in alphabetical
//! order (the daemon writes results as [`serde_json::Value`]s).
//!
//! The types live in submodules, all re-exported here: the request types
//! in `request`, the reply types in `reply`, the engine's reports as they
//! travel (also in the `--stats-file`) in `report`, and the errors in
//! `error`. This module holds the envelope ([`Request`], [`Response`]),
//! [`Command`] and [`Call`].

mod error;
mod reply;
mod report;
mod request;

pub use error::{Code, ErrorBody};
pub use reply::{
    AnyReply, BridgeInfo, Done, FdbEntry, FdbFlushReply, FdbShowReply, FlowAddReply, FlowDelReply,
    FlowDumpReply, FlowReplaceReply, HelloReply, MeterInfo, MeterShowReply, MetricsReply,
    PortAddReply, PortInfo, PortStatsReply, ShowReply, TraceReply, TraceSummary,
};
pub use report::{
    BridgeReport, DeviceCounters, EngineInfo, PortCounters, PortReport, QueueCounters, RuleReport,
    StatsReport, XdpCounters,
};
pub use request::{
    parse_hex, BridgeAdd, BridgeDel, FdbFlush, FdbShow, FlowAdd, FlowDel, FlowDump, FlowReplace,
    MeterAdd, MeterDel, MeterShow, PortAdd, PortDel, PortSet, PortStats, Show, Trace,
};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

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

/// The commands: `cmd` names one, `args` holds its request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", content = "args", deny_unknown_fields)]
pub enum Command {
    /// Who is there (no `args`).
    #[serde(rename = "hello")]
    Hello,
    /// Bridges, ports, flow counts.
    #[serde(rename = "show")]
    #[serde(deserialize_with = "args")]
    Show(Show),
    /// Creates a bridge.
    #[serde(rename = "bridge.add")]
    #[serde(deserialize_with = "args")]
    BridgeAdd(BridgeAdd),
    /// Deletes a bridge.
    #[serde(rename = "bridge.del")]
    #[serde(deserialize_with = "args")]
    BridgeDel(BridgeDel),
    /// Adds a port.
    #[serde(rename = "port.add")]
    #[serde(deserialize_with = "args")]
    PortAdd(PortAdd),
    /// Deletes a port.
    #[serde(rename = "port.del")]
    #[serde(deserialize_with = "args")]
    PortDel(PortDel),
    /// Sets or removes a port's QoS.
    #[serde(rename = "port.set")]
    #[serde(deserialize_with = "args")]
    PortSet(PortSet),
    /// Adds or changes a meter.
    #[serde(rename = "meter.add")]
    #[serde(deserialize_with = "args")]
    MeterAdd(MeterAdd),
    /// Deletes a meter.
    #[serde(rename = "meter.del")]
    #[serde(deserialize_with = "args")]
    MeterDel(MeterDel),
    /// Meters with their counters.
    #[serde(rename = "meter.show")]
    #[serde(deserialize_with = "args")]
    MeterShow(MeterShow),
    /// Port counters.
    #[serde(rename = "port.stats")]
    #[serde(deserialize_with = "args")]
    PortStats(PortStats),
    /// Adds rules.
    #[serde(rename = "flow.add")]
    #[serde(deserialize_with = "args")]
    FlowAdd(FlowAdd),
    /// Deletes rules.
    #[serde(rename = "flow.del")]
    #[serde(deserialize_with = "args")]
    FlowDel(FlowDel),
    /// Replaces all rules at once.
    #[serde(rename = "flow.replace")]
    #[serde(deserialize_with = "args")]
    FlowReplace(FlowReplace),
    /// Rules with counters.
    #[serde(rename = "flow.dump")]
    #[serde(deserialize_with = "args")]
    FlowDump(FlowDump),
    /// Learned MACs.
    #[serde(rename = "fdb.show")]
    #[serde(deserialize_with = "args")]
    FdbShow(FdbShow),
    /// Forgets learned MACs.
    #[serde(rename = "fdb.flush")]
    #[serde(deserialize_with = "args")]
    FdbFlush(FdbFlush),
    /// Traces a frame on the live tables.
    #[serde(rename = "trace")]
    #[serde(deserialize_with = "args")]
    Trace(Trace),
    /// Metrics in Prometheus text format (no `args`).
    #[serde(rename = "metrics")]
    Metrics,
}

impl Command {
    /// True for commands that change something.
    pub fn mutates(&self) -> bool {
        matches!(
            self,
            Command::BridgeAdd(_)
                | Command::BridgeDel(_)
                | Command::PortAdd(_)
                | Command::PortDel(_)
                | Command::PortSet(_)
                | Command::MeterAdd(_)
                | Command::MeterDel(_)
                | Command::FlowAdd(_)
                | Command::FlowDel(_)
                | Command::FlowReplace(_)
                | Command::FdbFlush(_)
        )
    }
}

/// Reads a command's `args`: an object only (a request type's derived
/// `Deserialize` would take an array too), with the errors the protocol has
/// always given.
fn args<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Named,
{
    struct Args<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de> + Named> serde::de::Visitor<'de> for Args<T> {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "struct variant Command::{}", T::NAME)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_map(Args(std::marker::PhantomData))
}

/// A request type's name (as its [`Command`] variant).
trait Named {
    const NAME: &'static str;
}

/// A request type and the reply type the daemon answers it with.
pub trait Call {
    /// What a success carries.
    type Reply: Serialize + DeserializeOwned;
    /// The request as a command.
    fn command(self) -> Command;
}

/// `hello`: who is there. Answered with [`HelloReply`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Hello;

/// `metrics`: every counter in Prometheus text format. Answered with
/// [`MetricsReply`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Metrics;

impl Call for Hello {
    type Reply = HelloReply;
    fn command(self) -> Command {
        Command::Hello
    }
}

impl Call for Metrics {
    type Reply = MetricsReply;
    fn command(self) -> Command {
        Command::Metrics
    }
}

/// Implements [`Call`] for request types that travel as their own `args`.
macro_rules! calls {
    ($($req:ident => $reply:ident),* $(,)?) => {
        $(
            impl Call for $req {
                type Reply = $reply;
                fn command(self) -> Command {
                    Command::$req(self)
                }
            }

            impl Named for $req {
                const NAME: &'static str = stringify!($req);
            }
        )*
    };
}

calls! {
    Show => ShowReply,
    BridgeAdd => Done,
    BridgeDel => Done,
    PortAdd => PortAddReply,
    PortDel => Done,
    PortSet => Done,
    MeterAdd => Done,
    MeterDel => Done,
    MeterShow => MeterShowReply,
    PortStats => PortStatsReply,
    FlowAdd => FlowAddReply,
    FlowDel => FlowDelReply,
    FlowReplace => FlowReplaceReply,
    FlowDump => FlowDumpReply,
    FdbShow => FdbShowReply,
    FdbFlush => FdbFlushReply,
    Trace => TraceReply,
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
    /// The result, on success: the command's reply type.
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

    /// A success carrying `reply` (an error if it cannot be written as
    /// JSON, which does not happen with the reply types).
    pub fn reply(id: Option<u64>, reply: &impl Serialize) -> Response {
        match serde_json::to_value(reply) {
            Ok(v) => Response::ok(id, v),
            Err(e) => Response::err(id, ErrorBody::new(Code::Internal, e.to_string())),
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
        assert!(matches!(r.cmd, Command::FlowAdd(FlowAdd { ref flows, .. }) if flows.len() == 1));
        let r: Request = serde_json::from_str(r#"{"version":1,"cmd":"hello"}"#).expect("no args");
        assert!(matches!(r.cmd, Command::Hello));
        let r: Request = serde_json::from_str(
            r#"{"version":1,"cmd":"flow.del","args":{"bridge":"b","match":"ip","strict":true}}"#,
        )
        .expect("del");
        assert!(matches!(
            r.cmd,
            Command::FlowDel(FlowDel { strict: true, .. })
        ));
        assert!(serde_json::from_str::<Request>(r#"{"version":1,"cmd":"nope"}"#).is_err());
        assert!(serde_json::from_str::<Request>(
            r#"{"version":1,"cmd":"fdb.show","args":{"bridge":"b","extra":1}}"#
        )
        .is_err());
        // And back.
        let s = serde_json::to_string(&Request {
            version: 1,
            id: None,
            cmd: Show { bridge: None }.command(),
        })
        .expect("json");
        assert_eq!(s, r#"{"version":1,"cmd":"show","args":{}}"#);
        let s = serde_json::to_string(&Request {
            version: 1,
            id: Some(2),
            cmd: Hello.command(),
        })
        .expect("json");
        assert_eq!(s, r#"{"version":1,"id":2,"cmd":"hello"}"#);
    }

    /// `args` must be an object: an array or null is refused, with the
    /// messages the protocol has always given.
    #[test]
    fn args_are_an_object() {
        let err = |l: &str| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            serde_json::from_value::<Request>(v)
                .map(|r| format!("{:?}", r.cmd))
                .expect_err(l)
                .to_string()
        };
        assert_eq!(
            err(r#"{"version":1,"cmd":"show","args":["br0"]}"#),
            "invalid type: sequence, expected struct variant Command::Show"
        );
        assert_eq!(
            err(r#"{"version":1,"cmd":"fdb.show","args":null}"#),
            "invalid type: null, expected struct variant Command::FdbShow"
        );
        assert_eq!(err(r#"{"version":1,"cmd":"show"}"#), "missing field `args`");
        assert_eq!(
            err(r#"{"version":1,"cmd":"flow.del","args":{"bridge":"b","matches":"ip"}}"#),
            "unknown field `matches`, expected one of `bridge`, `match`, `strict`"
        );
    }
}
