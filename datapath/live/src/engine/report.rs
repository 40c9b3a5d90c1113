//! What the polling thread hands out about its bridges: snapshots (copies
//! taken between two batches) and the reports made from them.

use serde::Serialize;
use xsw_datapath::clock::Timestamp;
use xsw_datapath::flow::Rule;
use xsw_datapath::port::BackendStats;
use xsw_datapath::stats::{PortStats, TableStats};
use xsw_datapath::table::RuleStats;

/// One port's state for reports.
#[derive(Clone, Debug, Serialize)]
pub struct PortReport {
    /// Name.
    pub name: String,
    /// OpenFlow number.
    pub ofport: u16,
    /// Device and mode, e.g. `veth0 afxdp native copy 1 queue`.
    pub device: String,
    /// XDP attach mode (`native`, `generic`) for AF_XDP ports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xdp_mode: Option<&'static str>,
    /// False once the device vanished.
    pub up: bool,
    /// Pipeline counters.
    pub stats: PortStats,
    /// Device counters (XDP verdicts, kernel drops).
    pub backend: BackendStats,
    /// QoS queues (index = queue), for a port with QoS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queues: Option<[xsw_datapath::qos::QueueStats; xsw_datapath::qos::N_QUEUES]>,
}

/// One rule with its counters, as the polling thread hands it out
/// (formatting is left to the caller).
#[derive(Clone, Debug)]
pub struct RuleSnapshot {
    /// The rule.
    pub rule: Rule,
    /// Counters and times.
    pub stats: RuleStats,
    /// True when the XDP program enforces it too.
    pub in_xdp: bool,
}

/// One rule's counters for reports.
#[derive(Clone, Debug, Serialize)]
pub struct RuleReport {
    /// The rule, dump-flows style.
    pub dump: String,
    /// Frames matched (in userspace and, for XDP drop rules, in the kernel).
    pub n_packets: u64,
    /// Their bytes.
    pub n_bytes: u64,
    /// True when the rule is also enforced in the XDP program.
    pub in_xdp: bool,
}

impl RuleSnapshot {
    /// The report line for this rule at time `now`.
    pub fn report(&self, now: Timestamp) -> RuleReport {
        RuleReport {
            dump: xsw_datapath::pipeline::dump_rule(&self.rule, &self.stats, now),
            n_packets: self.stats.packets,
            n_bytes: self.stats.bytes,
            in_xdp: self.in_xdp,
        }
    }
}

/// A flow table's lookup counters.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct TableReport {
    /// Table id.
    pub table: u8,
    /// Rules in it.
    pub rules: usize,
    /// Counters.
    #[serde(flatten)]
    pub stats: TableStats,
}

/// A bridge's state, as the polling thread hands it out.
#[derive(Clone, Debug)]
pub struct BridgeSnapshot {
    /// Name.
    pub name: String,
    /// Ports (deleted ports left out).
    pub ports: Vec<PortReport>,
    /// Rules in dump order, when asked for.
    pub rules: Option<Vec<RuleSnapshot>>,
    /// Rules installed.
    pub n_rules: usize,
    /// Tables with rules or lookups.
    pub tables: Vec<TableReport>,
    /// Learned MACs.
    pub mac_entries: usize,
    /// MAC table limit.
    pub mac_max: usize,
    /// Meters, by id.
    pub meters: Vec<xsw_datapath::qos::MeterReport>,
    /// Exact-match cache counters.
    pub emc: xsw_datapath::emc::EmcStats,
    /// When it was taken.
    pub at: Timestamp,
}

/// A bridge's state for reports.
#[derive(Clone, Debug, Serialize)]
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

impl BridgeSnapshot {
    /// The report (rules formatted dump-flows style).
    pub fn report(&self) -> BridgeReport {
        BridgeReport {
            name: self.name.clone(),
            ports: self.ports.clone(),
            rules: self
                .rules
                .iter()
                .flatten()
                .map(|r| r.report(self.at))
                .collect(),
            mac_entries: self.mac_entries,
        }
    }
}

/// The polling thread's own counters.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct EngineStats {
    /// Seconds since the engine started running.
    pub run_seconds: f64,
    /// Of those, seconds spent switching frames (not spinning on empty
    /// rings or sleeping).
    pub busy_seconds: f64,
    /// Commands from the control plane carried out.
    pub commands: u64,
}
