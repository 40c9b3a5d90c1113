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

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::spec::{MeterSpec, PortSpec};
use xsw_datapath::spec::QosSpec;
use xsw_datapath::vlan::VlanMode;

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

// ---------------------------------------------------------------------------
// Requests.

/// `show`: bridges, ports, flow counts. Answered with [`ShowReply`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Show {
    /// One bridge only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
}

/// `bridge.add`: creates a bridge (with the default NORMAL rule, no ports).
/// Answered with [`Done`].
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

/// `bridge.del`: deletes a bridge and its ports. Answered with [`Done`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeDel {
    /// Name.
    pub name: String,
}

/// `port.add`: adds a port. Answered with [`PortAddReply`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortAdd {
    /// Bridge.
    pub bridge: String,
    /// The port.
    pub port: Box<PortSpec>,
}

/// `port.del`: deletes a port. Answered with [`Done`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortDel {
    /// Bridge.
    pub bridge: String,
    /// Port name.
    pub name: String,
}

/// `port.set`: sets (or, with `qos` null, removes) a port's QoS. Answered
/// with [`Done`].
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
/// Answered with [`Done`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeterAdd {
    /// Bridge.
    pub bridge: String,
    /// The meter.
    pub meter: MeterSpec,
}

/// `meter.del`: deletes a meter no rule uses. Answered with [`Done`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeterDel {
    /// Bridge.
    pub bridge: String,
    /// Meter id.
    pub id: u32,
}

/// `meter.show`: meters with their counters. Answered with
/// [`MeterShowReply`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeterShow {
    /// Bridge.
    pub bridge: String,
}

/// `port.stats`: port counters. Answered with [`PortStatsReply`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortStats {
    /// Bridge.
    pub bridge: String,
}

/// `flow.add`: adds rules (each replaces a rule with the same table,
/// priority and match). Answered with [`FlowAddReply`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowAdd {
    /// Bridge.
    pub bridge: String,
    /// Rules, ovs-ofctl syntax.
    pub flows: Vec<String>,
}

/// `flow.del`: deletes rules. Answered with [`FlowDelReply`].
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
/// [`FlowReplaceReply`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowReplace {
    /// Bridge.
    pub bridge: String,
    /// The new rules.
    pub flows: Vec<String>,
}

/// `flow.dump`: rules with counters. Answered with [`FlowDumpReply`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowDump {
    /// Bridge.
    pub bridge: String,
}

/// `fdb.show`: learned MACs. Answered with [`FdbShowReply`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FdbShow {
    /// Bridge.
    pub bridge: String,
}

/// `fdb.flush`: forgets learned MACs. Answered with [`FdbFlushReply`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FdbFlush {
    /// Bridge.
    pub bridge: String,
}

/// `trace`: traces a frame on the live tables (changes nothing). Answered
/// with [`TraceReply`].
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

// ---------------------------------------------------------------------------
// Replies.

/// The reply of commands that only change something: `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {}

/// Reply to [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloReply {
    /// The protocol version the daemon speaks.
    pub version: u32,
    /// `xswd` and its version.
    pub daemon: String,
    /// The daemon's process id.
    pub pid: u32,
}

/// Reply to [`Show`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShowReply {
    /// The bridges (the one asked for, or all).
    pub bridges: Vec<BridgeInfo>,
    /// The polling thread's own counters.
    pub engine: EngineInfo,
}

/// One bridge in a [`ShowReply`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeInfo {
    /// Name.
    pub name: String,
    /// MAC aging, seconds.
    pub mac_aging: u64,
    /// MAC table size.
    pub mac_table_size: usize,
    /// Its ports, as declared, with their state.
    pub ports: Vec<PortInfo>,
    /// Rules installed.
    pub flows: usize,
    /// Meters, as declared.
    pub meters: Vec<MeterSpec>,
    /// Learned MACs.
    pub mac_entries: usize,
}

/// One port in a [`BridgeInfo`]: its declaration and its state. Absent
/// settings are `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortInfo {
    /// Name.
    pub name: String,
    /// OpenFlow number.
    pub ofport: u16,
    /// The netdev.
    pub interface: String,
    /// Device type (`afxdp`, `internal`).
    #[serde(rename = "type")]
    pub kind: String,
    /// VLAN setting in a few words.
    pub vlan: String,
    /// VLAN mode, when declared.
    pub vlan_mode: Option<VlanMode>,
    /// Access or native VLAN.
    pub tag: Option<u16>,
    /// VLANs a trunk carries.
    pub trunks: Option<Vec<u16>>,
    /// MTU.
    pub mtu: Option<u32>,
    /// QoS.
    pub qos: Option<QosSpec>,
    /// XDP attach mode in use (AF_XDP ports that are open).
    pub xdp_mode: Option<String>,
    /// Device and mode, for open ports.
    pub device: Option<String>,
    /// `up`, `down (device gone)`, `not open: WHY`, `not open`.
    pub state: String,
}

/// Reply to [`PortAdd`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortAddReply {
    /// The port's OpenFlow number (picked when the request had none).
    pub ofport: u16,
}

/// Reply to [`PortStats`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStatsReply {
    /// Every open port.
    pub ports: Vec<PortReport>,
}

/// Reply to [`MeterShow`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeterShowReply {
    /// Meters, by id.
    pub meters: Vec<MeterInfo>,
}

/// One meter with its counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeterInfo {
    /// Id.
    pub id: u32,
    /// Rate, bits per second.
    pub rate: u64,
    /// Burst, bits.
    pub burst: u64,
    /// Frames it let through.
    pub passed: u64,
    /// Frames it dropped.
    pub dropped: u64,
}

/// Reply to [`FlowAdd`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowAddReply {
    /// Rules added (or replaced).
    pub added: usize,
    /// Microseconds from the request to the rules being in effect.
    pub effect_us: u64,
}

/// Reply to [`FlowDel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowDelReply {
    /// Rules deleted.
    pub deleted: usize,
}

/// Reply to [`FlowReplace`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowReplaceReply {
    /// Rules in effect now.
    pub rules: usize,
    /// Microseconds from the request to the new rules being in effect.
    pub effect_us: u64,
    /// Of those, microseconds from handing the table over to the swap.
    pub swap_us: u64,
}

/// Reply to [`FlowDump`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowDumpReply {
    /// Rules in dump order.
    pub flows: Vec<RuleReport>,
}

/// Reply to [`FdbShow`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbShowReply {
    /// Learned MACs.
    pub entries: Vec<FdbEntry>,
}

/// One learned MAC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbEntry {
    /// VLAN.
    pub vlan: u16,
    /// MAC, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// Port name.
    pub port: String,
    /// Seconds since it was last learned or refreshed.
    pub age: u64,
}

/// Reply to [`FdbFlush`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbFlushReply {
    /// MACs forgotten.
    pub flushed: usize,
}

/// Reply to [`Trace`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceReply {
    /// The trace as records.
    #[serde(flatten)]
    pub trace: TraceSummary,
    /// The trace as text, with a heading.
    pub text: String,
}

/// A trace as records (what `xsw trace --json` prints).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceSummary {
    /// The rendered lines.
    pub lines: Vec<String>,
    /// Output port names, in order.
    pub outputs: Vec<String>,
    /// The drop reason, when nothing was sent.
    pub dropped: Option<String>,
}

/// Reply to [`Metrics`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsReply {
    /// Prometheus text format.
    pub text: String,
}

/// Any reply, as the daemon hands it to the socket (each serialises as
/// itself).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum AnyReply {
    /// [`HelloReply`].
    Hello(HelloReply),
    /// [`ShowReply`].
    Show(ShowReply),
    /// [`Done`].
    Done(Done),
    /// [`PortAddReply`].
    PortAdd(PortAddReply),
    /// [`PortStatsReply`].
    PortStats(PortStatsReply),
    /// [`MeterShowReply`].
    MeterShow(MeterShowReply),
    /// [`FlowAddReply`].
    FlowAdd(FlowAddReply),
    /// [`FlowDelReply`].
    FlowDel(FlowDelReply),
    /// [`FlowReplaceReply`].
    FlowReplace(FlowReplaceReply),
    /// [`FlowDumpReply`].
    FlowDump(FlowDumpReply),
    /// [`FdbShowReply`].
    FdbShow(FdbShowReply),
    /// [`FdbFlushReply`].
    FdbFlush(FdbFlushReply),
    /// [`TraceReply`].
    Trace(TraceReply),
    /// [`MetricsReply`].
    Metrics(MetricsReply),
}

macro_rules! any_reply {
    ($($ty:ident => $var:ident),* $(,)?) => {
        $(
            impl From<$ty> for AnyReply {
                fn from(r: $ty) -> AnyReply {
                    AnyReply::$var(r)
                }
            }
        )*
    };
}

any_reply! {
    HelloReply => Hello,
    ShowReply => Show,
    Done => Done,
    PortAddReply => PortAdd,
    PortStatsReply => PortStats,
    MeterShowReply => MeterShow,
    FlowAddReply => FlowAdd,
    FlowDelReply => FlowDel,
    FlowReplaceReply => FlowReplace,
    FlowDumpReply => FlowDump,
    FdbShowReply => FdbShow,
    FdbFlushReply => FdbFlush,
    TraceReply => Trace,
    MetricsReply => Metrics,
}

// ---------------------------------------------------------------------------
// The engine's reports, as they travel (also in the `--stats-file`).

/// One open port's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortReport {
    /// Name.
    pub name: String,
    /// OpenFlow number.
    pub ofport: u16,
    /// Device and mode, e.g. `veth0 afxdp native copy 1 queue`.
    pub device: String,
    /// XDP attach mode (`native`, `generic`) for AF_XDP ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xdp_mode: Option<String>,
    /// False once the device vanished.
    pub up: bool,
    /// Pipeline counters.
    pub stats: PortCounters,
    /// Device counters.
    pub backend: DeviceCounters,
    /// QoS queues (index = queue), for a port with QoS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queues: Option<Vec<QueueCounters>>,
}

/// A port's pipeline counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortCounters {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Drops by reason (only reasons with drops).
    pub drops: BTreeMap<String, u64>,
    /// Frames switched despite inconsistent headers, by kind (only kinds
    /// seen).
    pub malformed: BTreeMap<String, u64>,
}

/// What a port's device dropped or altered on its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCounters {
    /// Frames longer than 9216 bytes, dropped at receive.
    pub rx_oversize: u64,
    /// Captured frames shorter than on the wire.
    pub rx_snap_truncated: u64,
    /// Records skipped because their capture interface is not Ethernet.
    pub rx_not_ethernet: u64,
    /// Frames the device refused to send.
    pub tx_errors: u64,
    /// AF_XDP: frames the kernel dropped.
    pub kernel_rx_dropped: u64,
    /// AF_XDP: times the rx ring was full.
    pub kernel_rx_ring_full: u64,
    /// AF_XDP: times the fill ring was empty.
    pub kernel_fill_empty: u64,
    /// What the port's XDP program did with received frames.
    pub xdp: XdpCounters,
}

/// Frames per verdict of a port's XDP program.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct XdpCounters {
    /// Passed to the host stack.
    pub pass_host: u64,
    /// Dropped in the kernel by a flow rule.
    pub drop_rule: u64,
    /// Redirected to the switch's AF_XDP socket.
    pub redirect: u64,
    /// Dropped: no socket on the frame's rx queue.
    pub no_socket: u64,
    /// Passed because the port was not configured yet.
    pub disabled: u64,
}

impl XdpCounters {
    /// The verdicts by name, in alphabetical order.
    pub fn named(&self) -> [(&'static str, u64); 5] {
        [
            ("disabled", self.disabled),
            ("drop_rule", self.drop_rule),
            ("no_socket", self.no_socket),
            ("pass_host", self.pass_host),
            ("redirect", self.redirect),
        ]
    }
}

/// One QoS queue's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCounters {
    /// Frames queued.
    pub enqueued: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// Frames dropped because the queue was full.
    pub dropped: u64,
    /// Frames waiting now.
    pub depth: u64,
}

/// One rule with its counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleReport {
    /// The rule, dump-flows style.
    pub dump: String,
    /// Frames matched.
    pub n_packets: u64,
    /// Their bytes.
    pub n_bytes: u64,
    /// True when the rule is also enforced in the XDP program.
    pub in_xdp: bool,
}

/// The polling thread's own counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineInfo {
    /// Seconds since the engine started running.
    pub run_seconds: f64,
    /// Of those, seconds spent switching frames.
    pub busy_seconds: f64,
    /// Commands from the control plane carried out.
    pub commands: u64,
}

/// The `--stats-file` of `xswd`: every bridge, with its rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsReport {
    /// Bridges.
    pub bridges: Vec<BridgeReport>,
    /// The polling thread's own counters.
    pub engine: EngineInfo,
}

/// One bridge in a [`StatsReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeReport {
    /// Name.
    pub name: String,
    /// Ports.
    pub ports: Vec<PortReport>,
    /// Rules.
    pub rules: Vec<RuleReport>,
    /// Learned MACs.
    pub mac_entries: usize,
}

/// From the engine's report types.
mod from_engine {
    use super::*;
    use xsw_live::engine as e;

    impl From<&e::PortReport> for PortReport {
        fn from(p: &e::PortReport) -> PortReport {
            let names = |v: Vec<(&'static str, u64)>| {
                v.into_iter().map(|(k, n)| (k.to_string(), n)).collect()
            };
            let b = &p.backend;
            PortReport {
                name: p.name.clone(),
                ofport: p.ofport,
                device: p.device.clone(),
                xdp_mode: p.xdp_mode.map(str::to_string),
                up: p.up,
                stats: PortCounters {
                    rx_packets: p.stats.rx_packets,
                    rx_bytes: p.stats.rx_bytes,
                    tx_packets: p.stats.tx_packets,
                    tx_bytes: p.stats.tx_bytes,
                    drops: names(p.stats.drops.nonzero()),
                    malformed: names(p.stats.malformed.nonzero()),
                },
                backend: DeviceCounters {
                    rx_oversize: b.rx_oversize,
                    rx_snap_truncated: b.rx_snap_truncated,
                    rx_not_ethernet: b.rx_not_ethernet,
                    tx_errors: b.tx_errors,
                    kernel_rx_dropped: b.kernel_rx_dropped,
                    kernel_rx_ring_full: b.kernel_rx_ring_full,
                    kernel_fill_empty: b.kernel_fill_empty,
                    xdp: XdpCounters {
                        pass_host: b.xdp.pass_host,
                        drop_rule: b.xdp.drop_rule,
                        redirect: b.xdp.redirect,
                        no_socket: b.xdp.no_socket,
                        disabled: b.xdp.disabled,
                    },
                },
                queues: p.queues.as_ref().map(|qs| {
                    qs.iter()
                        .map(|q| QueueCounters {
                            enqueued: q.enqueued,
                            tx_packets: q.tx_packets,
                            tx_bytes: q.tx_bytes,
                            dropped: q.dropped,
                            depth: q.depth,
                        })
                        .collect()
                }),
            }
        }
    }

    impl From<e::RuleReport> for RuleReport {
        fn from(r: e::RuleReport) -> RuleReport {
            RuleReport {
                dump: r.dump,
                n_packets: r.n_packets,
                n_bytes: r.n_bytes,
                in_xdp: r.in_xdp,
            }
        }
    }

    impl From<&e::EngineStats> for EngineInfo {
        fn from(s: &e::EngineStats) -> EngineInfo {
            EngineInfo {
                run_seconds: s.run_seconds,
                busy_seconds: s.busy_seconds,
                commands: s.commands,
            }
        }
    }

    impl From<&e::BridgeSnapshot> for BridgeReport {
        fn from(s: &e::BridgeSnapshot) -> BridgeReport {
            BridgeReport {
                name: s.name.clone(),
                ports: s.ports.iter().map(PortReport::from).collect(),
                rules: s
                    .rules
                    .iter()
                    .flatten()
                    .map(|r| r.report(s.at).into())
                    .collect(),
                mac_entries: s.mac_entries,
            }
        }
    }

    impl From<xsw_live::engine::FdbRow> for FdbEntry {
        fn from(r: xsw_live::engine::FdbRow) -> FdbEntry {
            FdbEntry {
                vlan: r.vlan,
                mac: r.mac,
                port: r.port,
                age: r.age,
            }
        }
    }

    impl From<xsw_datapath::trace::TraceJson> for TraceSummary {
        fn from(t: xsw_datapath::trace::TraceJson) -> TraceSummary {
            TraceSummary {
                lines: t.lines,
                outputs: t.outputs,
                dropped: t.dropped.map(str::to_string),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Errors and the envelope.

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

/// An error answer. Besides the text (`message`, `where`, `detail`), an
/// error about one rule says which (`rule`) and where in it (`column`), so
/// a client never reads positions out of the text; a client that read the
/// rules from a file adds `file` and `line`.
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
    /// The rule it is about: its position in the request's list, from 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<u32>,
    /// The column in that rule (or in the match), from 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
    /// The file the rule came from (filled in by the client that read it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<Box<str>>,
    /// The line of that file, from 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
}

impl ErrorBody {
    /// An error without a place.
    pub fn new(code: Code, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            code,
            message: message.into(),
            place: None,
            detail: None,
            rule: None,
            column: None,
            file: None,
            line: None,
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

    /// The same, about rule `rule` (from 1; `None` for a match) at `column`.
    pub fn in_rule(mut self, rule: Option<usize>, column: usize) -> ErrorBody {
        let n = |x: usize| u32::try_from(x).unwrap_or(u32::MAX);
        self.rule = rule.map(n);
        self.column = Some(n(column));
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

    /// Serialises `r` as the daemon does, and reads it back as the client.
    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
        r: &T,
    ) -> serde_json::Value {
        let v = serde_json::to_value(r).expect("to json");
        let line = serde_json::to_string(&Response::ok(Some(1), v.clone())).expect("line");
        let back: Response = serde_json::from_str(&line).expect("response");
        let t: T = serde_json::from_value(back.result.expect("result")).expect("typed");
        assert_eq!(&t, r);
        v
    }

    #[test]
    fn replies_read_back_as_they_were_written() {
        use serde_json::json;
        assert_eq!(round_trip(&Done {}), json!({}));
        assert_eq!(
            round_trip(&FlowReplaceReply {
                rules: 3,
                effect_us: 10,
                swap_us: 2
            }),
            json!({"rules": 3, "effect_us": 10, "swap_us": 2})
        );
        let t = TraceReply {
            trace: TraceSummary {
                lines: vec!["a".into()],
                outputs: vec![],
                dropped: None,
            },
            text: "t".into(),
        };
        assert_eq!(
            round_trip(&t),
            json!({"lines": ["a"], "outputs": [], "dropped": null, "text": "t"})
        );
        let port = PortInfo {
            name: "a".into(),
            ofport: 1,
            interface: "pa".into(),
            kind: "afxdp".into(),
            vlan: "trunk".into(),
            vlan_mode: None,
            tag: None,
            trunks: None,
            mtu: None,
            qos: Some(QosSpec {
                rate: Some("1G".into()),
                ..Default::default()
            }),
            xdp_mode: None,
            device: None,
            state: "not open".into(),
        };
        let v = round_trip(&port);
        assert_eq!(v["type"], "afxdp");
        assert!(
            v["mtu"].is_null() && v.get("mtu").is_some(),
            "null, not absent"
        );
        assert_eq!(v["qos"], json!({"rate": "1G"}));
    }

    /// The reply types write exactly what the engine's report types write.
    #[test]
    fn reports_serialise_as_the_engines() {
        use xsw_live::engine as e;
        let mut stats = xsw_datapath::stats::PortStats {
            rx_packets: 5,
            tx_bytes: 99,
            ..Default::default()
        };
        stats.drops.add(xsw_datapath::stats::DropReason::ALL[1], 3);
        stats.drops.add(xsw_datapath::stats::DropReason::ALL[0], 2);
        let mut p = e::PortReport {
            name: "a".into(),
            ofport: 3,
            device: "pa afxdp".into(),
            xdp_mode: Some("native"),
            up: true,
            stats,
            backend: Default::default(),
            queues: None,
        };
        p.backend.xdp.redirect = 7;
        p.backend.kernel_fill_empty = 1;
        let want = serde_json::to_value(&p).expect("engine json");
        assert_eq!(
            serde_json::to_value(PortReport::from(&p)).expect("json"),
            want
        );
        round_trip(&PortReport::from(&p));
        p.xdp_mode = None;
        p.queues = Some(Default::default());
        let want = serde_json::to_value(&p).expect("engine json");
        assert_eq!(
            serde_json::to_value(PortReport::from(&p)).expect("json"),
            want
        );
        let s = e::EngineStats {
            run_seconds: 1.5,
            busy_seconds: 0.25,
            commands: 4,
        };
        assert_eq!(
            serde_json::to_value(EngineInfo::from(&s)).expect("json"),
            serde_json::to_value(s).expect("engine json")
        );
        let row = xsw_live::engine::FdbRow {
            vlan: 10,
            mac: "02:00:00:00:00:01".into(),
            port: "a".into(),
            age: 3,
        };
        let want = serde_json::to_value(&row).expect("engine json");
        assert_eq!(
            serde_json::to_value(FdbEntry::from(row)).expect("json"),
            want
        );
    }

    /// The stats file's bridges and the dump's rules, too.
    #[test]
    fn bridge_reports_serialise_as_the_engines() {
        use xsw_live::engine as e;
        let rule = xsw_datapath::flow::parse_flow("priority=5,ip,actions=drop", &()).expect("rule");
        let snap = e::BridgeSnapshot {
            name: "br0".into(),
            ports: vec![],
            rules: Some(vec![e::RuleSnapshot {
                rule,
                stats: Default::default(),
                in_xdp: true,
            }]),
            n_rules: 1,
            tables: vec![],
            mac_entries: 2,
            mac_max: 10,
            meters: vec![],
            emc: xsw_datapath::emc::EmcStats::default(),
            at: xsw_datapath::Timestamp(5_000_000_000),
        };
        assert_eq!(
            serde_json::to_value(BridgeReport::from(&snap)).expect("json"),
            serde_json::to_value(snap.report()).expect("engine json")
        );
        round_trip(&BridgeReport::from(&snap));
    }

    #[test]
    fn errors_carry_their_position() {
        let e = ErrorBody::new(Code::BadFlow, "no such field")
            .at("flow 2 of 3, column 4")
            .in_rule(Some(2), 4);
        let s = serde_json::to_string(&e).expect("json");
        assert_eq!(
            s,
            r#"{"code":"bad_flow","message":"no such field","where":"flow 2 of 3, column 4","rule":2,"column":4}"#
        );
        let plain = serde_json::to_string(&ErrorBody::new(Code::NotFound, "x")).expect("json");
        assert_eq!(plain, r#"{"code":"not_found","message":"x"}"#);
    }
}
