//! The reply types: one per command, each the `result` of a success.

use serde::{Deserialize, Serialize};

use super::{EngineInfo, PortReport, RuleReport};
use crate::spec::MeterSpec;
use xsw_datapath::spec::QosSpec;
use xsw_datapath::vlan::VlanMode;

/// The reply of commands that only change something: `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {}

/// Reply to [`Hello`](super::Hello).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloReply {
    /// The protocol version the daemon speaks.
    pub version: u32,
    /// `xswd` and its version.
    pub daemon: String,
    /// The daemon's process id.
    pub pid: u32,
}

/// Reply to [`Show`](super::Show).
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

/// Reply to [`PortAdd`](super::PortAdd).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortAddReply {
    /// The port's OpenFlow number (picked when the request had none).
    pub ofport: u16,
}

/// Reply to [`PortStats`](super::PortStats).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStatsReply {
    /// Every open port.
    pub ports: Vec<PortReport>,
}

/// Reply to [`MeterShow`](super::MeterShow).
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

/// Reply to [`FlowAdd`](super::FlowAdd).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowAddReply {
    /// Rules added (or replaced).
    pub added: usize,
    /// Microseconds from the request to the rules being in effect.
    pub effect_us: u64,
}

/// Reply to [`FlowDel`](super::FlowDel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowDelReply {
    /// Rules deleted.
    pub deleted: usize,
}

/// Reply to [`FlowReplace`](super::FlowReplace).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowReplaceReply {
    /// Rules in effect now.
    pub rules: usize,
    /// Microseconds from the request to the new rules being in effect.
    pub effect_us: u64,
    /// Of those, microseconds from handing the table over to the swap.
    pub swap_us: u64,
}

/// Reply to [`FlowDump`](super::FlowDump).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowDumpReply {
    /// Rules in dump order.
    pub flows: Vec<RuleReport>,
}

/// Reply to [`FdbShow`](super::FdbShow).
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

/// Reply to [`FdbFlush`](super::FdbFlush).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbFlushReply {
    /// MACs forgotten.
    pub flushed: usize,
}

/// Reply to [`Trace`](super::Trace).
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

/// Reply to [`Metrics`](super::Metrics).
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::proto::Response;
    use serde::de::DeserializeOwned;

    /// Serialises `r` as the daemon does, and reads it back as the client.
    pub(in crate::proto) fn round_trip<
        T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
    >(
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
}
