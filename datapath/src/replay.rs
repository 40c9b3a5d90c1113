//! Offline replay: the pipeline run on capture files.
//!
//! A scenario directory holds `scenario.toml` (ports), optional `flows.txt`
//! (rules; without it the only rule is `priority=0,actions=NORMAL`) and
//! `in/<port>.pcap` (what each port receives). Frames from all ports are
//! switched one at a time in timestamp order (ties: lower ofport, then file
//! order), on the captures' clock. Every port gets `<port>.pcap` in the
//! output directory, each frame stamped with the time of the input frame
//! that caused it, plus `summary.json` and `summary.txt`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::clock::{ManualClock, Timestamp};
use crate::error::Error;
use crate::flow::Rule;
use crate::packet::{Batch, PacketMeta, BURST};
use crate::pipeline::{dump_flow, Pipeline, PipelineOptions, PortConfig};
use crate::port::pcap::PcapPort;
use crate::port::{BackendStats, Port};
use crate::spec::{line_col, parse_rules, MeterDef, NumberedRule};
use crate::stats::{DropCounters, MalformedCounters};
use crate::table::Removed;
use crate::trace::{TraceLog, TraceReport};
use crate::vlan::{PortVlan, VlanMode};

/// `scenario.toml`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    bridge: Option<BridgeFile>,
    #[serde(default)]
    port: Vec<toml::Spanned<PortFile>>,
    #[serde(default)]
    meter: Vec<toml::Spanned<MeterFile>>,
    #[serde(default)]
    check: Option<CheckFile>,
    #[serde(default)]
    host: Vec<toml::Spanned<crate::sim::HostFile>>,
    #[serde(default)]
    change: Vec<toml::Spanned<crate::sim::ChangeFile>>,
    #[serde(default)]
    sim: Option<crate::sim::SimFile>,
    #[serde(default)]
    expect: Vec<toml::Spanned<crate::sim::ExpectFile>>,
}

/// A meter in `scenario.toml`: `[[meter]] id = 1, rate = "10M", burst = "200k"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MeterFile {
    id: u32,
    rate: String,
    #[serde(default)]
    burst: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BridgeFile {
    #[serde(default)]
    mac_aging: Option<u64>,
    #[serde(default)]
    mac_table_size: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PortFile {
    name: String,
    ofport: u16,
    #[serde(default)]
    vlan_mode: Option<VlanMode>,
    #[serde(default)]
    tag: Option<u16>,
    #[serde(default)]
    trunks: Option<Vec<u16>>,
    #[serde(default)]
    mtu: Option<u32>,
    #[serde(default)]
    qos: Option<crate::spec::QosSpec>,
}

/// How the scenario's expected output is checked: against Open vSwitch
/// (`ovs`, `note`) and by `xsw test` (`unordered`, `tolerance`; see
/// [`crate::check`]).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CheckFile {
    /// Whether the OVS oracle can run this scenario.
    #[serde(default = "yes")]
    pub ovs: bool,
    /// Why not, or what differs.
    #[serde(default)]
    pub note: Option<String>,
    /// Ports whose frames `xsw test` compares as a multiset of (timestamp,
    /// bytes) rather than in order: `true` for every port, or a list of
    /// port names. Default: none.
    #[serde(default)]
    pub unordered: Unordered,
    /// Relative tolerances for numbers in `summary.json`, by JSON path
    /// prefix (`"hosts"`, `"ports[p2].tx_bytes"`): `0.05` lets a number
    /// differ from the expected one by 5% of the larger. Default: none.
    #[serde(default)]
    pub tolerance: BTreeMap<String, f64>,
}

/// `[check] unordered`: `true`/`false`, or the names of the ports.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Unordered {
    /// Every port (`true`) or none (`false`).
    All(bool),
    /// These ports.
    Ports(Vec<String>),
}

impl Default for Unordered {
    fn default() -> Self {
        Unordered::All(false)
    }
}

impl<'de> Deserialize<'de> for Unordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Unordered;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("true, false, or a list of port names")
            }
            fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<Unordered, E> {
                Ok(Unordered::All(b))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Unordered, A::Error> {
                let mut v = Vec::new();
                while let Some(n) = seq.next_element::<String>()? {
                    v.push(n);
                }
                Ok(Unordered::Ports(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl Unordered {
    /// Whether port `name` is compared as a multiset.
    pub fn includes(&self, name: &str) -> bool {
        match self {
            Unordered::All(b) => *b,
            Unordered::Ports(p) => p.iter().any(|n| n == name),
        }
    }
}

fn yes() -> bool {
    true
}

/// A loaded scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Its directory.
    pub dir: PathBuf,
    /// One-line description, if given.
    pub description: Option<String>,
    /// Ports, in file order.
    pub ports: Vec<PortConfig>,
    /// Input capture per port (same order), if the port receives anything.
    pub inputs: Vec<Option<PathBuf>>,
    /// Rules, with the line each came from (0 for the default rule).
    pub rules: Vec<NumberedRule>,
    /// Pipeline options from `[bridge]`.
    pub options: PipelineOptions,
    /// Meters from `[[meter]]`.
    pub meters: Vec<MeterDef>,
    /// The `[check]` table.
    pub check: Option<CheckFile>,
    /// Simulated hosts, flow changes on the clock, `[sim]` and `[[expect]]`.
    pub sim: crate::sim::SimSpec,
}

impl Scenario {
    /// Reads `dir/scenario.toml`, `dir/flows.txt` and finds `dir/in/*.pcap`.
    pub fn load(dir: &Path) -> Result<Scenario, Error> {
        let toml_path = dir.join("scenario.toml");
        let text = fs::read_to_string(&toml_path).map_err(|e| Error::io(&toml_path, e))?;
        let cfg_err = |span: Option<std::ops::Range<usize>>, msg: String| {
            let (line, col) = span.map_or((1, 1), |s| line_col(&text, s.start));
            Error::Config {
                path: toml_path.clone(),
                line,
                col,
                msg,
            }
        };
        let file: ScenarioFile =
            toml::from_str(&text).map_err(|e| cfg_err(e.span(), e.message().trim().to_string()))?;
        if file.port.is_empty() {
            return Err(cfg_err(
                None,
                "no ports: add at least one [[port]] table with `name` and `ofport`".into(),
            ));
        }
        let mut ports = Vec::new();
        for sp in &file.port {
            let span = sp.span();
            let p = sp.get_ref();
            if p.name.is_empty() || p.name.contains(['/', '\\']) || p.name.starts_with('.') {
                return Err(cfg_err(
                    Some(span),
                    format!("port name `{}` cannot be used as a file name", p.name),
                ));
            }
            let vlan = PortVlan::new(p.vlan_mode, p.tag, p.trunks.as_deref())
                .map_err(|m| cfg_err(Some(span.clone()), format!("port {}: {m}", p.name)))?;
            let qos = match &p.qos {
                Some(q) => Some(q.to_config().map_err(|m| {
                    cfg_err(Some(span.clone()), format!("port {}: qos: {m}", p.name))
                })?),
                None => None,
            };
            let cfg = PortConfig {
                name: p.name.clone(),
                ofport: p.ofport,
                vlan,
                mtu: p.mtu,
                qos,
            };
            if let Some(o) = ports
                .iter()
                .find(|o: &&PortConfig| o.name == cfg.name || o.ofport == cfg.ofport)
            {
                return Err(cfg_err(
                    Some(span),
                    format!("port {} (ofport {}) clashes with port {} (ofport {}): names and ofports must be unique", cfg.name, cfg.ofport, o.name, o.ofport),
                ));
            }
            // Let the pipeline's own checks speak (ofport and MTU ranges).
            Pipeline::check_ports(std::slice::from_ref(&cfg))
                .map_err(|e| cfg_err(Some(span.clone()), e.to_string()))?;
            ports.push(cfg);
        }
        let mut options = PipelineOptions::default();
        if let Some(b) = &file.bridge {
            crate::mac::check_options(b.mac_aging, b.mac_table_size)
                .map_err(|e| cfg_err(None, format!("bridge.{e} (the range OVS accepts)")))?;
            if let Some(a) = b.mac_aging {
                options.mac_aging_secs = a;
            }
            if let Some(s) = b.mac_table_size {
                options.mac_max_entries = s;
            }
        }

        // Inputs: in/<port>.pcap (or .pcapng); anything else there is an error.
        let in_dir = dir.join("in");
        let mut inputs = vec![None; ports.len()];
        if in_dir.is_dir() {
            let rd = fs::read_dir(&in_dir).map_err(|e| Error::io(&in_dir, e))?;
            let mut names: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
            names.sort();
            for path in names {
                let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
                    continue;
                };
                let ext = path.extension().and_then(|s| s.to_str()).unwrap_or("");
                if ext != "pcap" && ext != "pcapng" {
                    continue;
                }
                match ports.iter().position(|p| p.name == stem) {
                    Some(i) => {
                        if inputs[i].is_some() {
                            return Err(Error::Invalid(format!(
                                "{}: port {stem} has two input files",
                                in_dir.display()
                            )));
                        }
                        inputs[i] = Some(path);
                    }
                    None => {
                        return Err(Error::Invalid(format!(
                            "{}: there is no port named `{stem}` in scenario.toml (ports: {})",
                            path.display(),
                            ports
                                .iter()
                                .map(|p| p.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )))
                    }
                }
            }
        }

        // Rules.
        let flows_path = dir.join("flows.txt");
        let rules = if flows_path.exists() {
            let text = fs::read_to_string(&flows_path).map_err(|e| Error::io(&flows_path, e))?;
            let names = |n: &str| ports.iter().find(|p| p.name == n).map(|p| p.ofport);
            parse_rules(&text, &names).map_err(|e| Error::Flow {
                path: flows_path.clone(),
                line: e.line,
                source: e.error,
            })?
        } else {
            vec![NumberedRule {
                line: 0,
                rule: Rule::default_normal(),
            }]
        };

        // Meters, and the rules that use them.
        let mut meters: Vec<MeterDef> = Vec::new();
        for sm in &file.meter {
            let m = sm.get_ref();
            let def = MeterDef::parse(m.id, &m.rate, m.burst.as_deref())
                .map_err(|e| cfg_err(Some(sm.span()), e))?;
            if meters.iter().any(|x| x.id == def.id) {
                return Err(cfg_err(
                    Some(sm.span()),
                    format!("meter {} is defined twice", def.id),
                ));
            }
            meters.push(def);
        }
        for NumberedRule { line, rule: r } in &rules {
            if let Some(id) = r.missing_meter(|id| meters.iter().any(|m| m.id == id)) {
                return Err(Error::Config {
                    path: flows_path.clone(),
                    line: *line,
                    col: 1,
                    msg: format!(
                        "meter:{id}: no such meter (add a [[meter]] with id = {id} to scenario.toml)"
                    ),
                });
            }
        }

        let sim = crate::sim::load(
            &ports,
            &file.host,
            &file.change,
            file.sim.as_ref(),
            &file.expect,
        )
        .map_err(|(span, msg)| cfg_err(span, msg))?;

        Ok(Scenario {
            sim,
            dir: dir.to_path_buf(),
            description: file.description,
            ports,
            inputs,
            rules,
            meters,
            options,
            check: file.check,
        })
    }
}

/// One port's counters in a summary.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PortSummary {
    /// Name.
    pub name: String,
    /// OpenFlow number.
    pub ofport: u16,
    /// VLAN configuration.
    pub vlan: String,
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Drops by reason.
    pub drops: BTreeMap<String, u64>,
    /// Frames switched despite inconsistent headers, by kind.
    pub malformed: BTreeMap<String, u64>,
    /// What the capture reader skipped or noticed.
    pub capture: BTreeMap<String, u64>,
    /// QoS queues, for a port with QoS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queues: Option<Vec<QueueSummary>>,
}

/// One QoS queue's counters in a summary.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct QueueSummary {
    /// Queue number.
    pub queue: u8,
    /// Frames queued.
    pub enqueued: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Frames dropped: queue full.
    pub dropped: u64,
}

/// One table's lookups in a summary. Written as `[table, lookups,
/// matched]`, as summaries always were.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(from = "(u8, u64, u64)", into = "(u8, u64, u64)")]
pub struct TableSummary {
    /// Table id.
    pub table: u8,
    /// Lookups.
    pub lookups: u64,
    /// Lookups that found a rule.
    pub matched: u64,
}

impl From<(u8, u64, u64)> for TableSummary {
    fn from((table, lookups, matched): (u8, u64, u64)) -> Self {
        TableSummary {
            table,
            lookups,
            matched,
        }
    }
}

impl From<TableSummary> for (u8, u64, u64) {
    fn from(t: TableSummary) -> Self {
        (t.table, t.lookups, t.matched)
    }
}

/// One rule's counters in a summary.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RuleSummary {
    /// The rule, in flow syntax.
    pub rule: String,
    /// Line in flows.txt (0 = the default rule).
    pub line: usize,
    /// Frames matched.
    pub n_packets: u64,
    /// Bytes matched.
    pub n_bytes: u64,
    /// `idle_timeout`/`hard_timeout` if it was removed, with the time.
    pub removed: Option<String>,
    /// The `[[change]]` (1-based, in time order) that added it, for a rule
    /// added on the clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<usize>,
    /// The rule as `ovs-ofctl dump-flows` prints it, as of the last frame
    /// (or of its removal).
    pub dump: String,
}

/// The result of a replay.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Summary {
    /// Frames read from the inputs.
    pub frames_in: u64,
    /// Frames written to the outputs.
    pub frames_out: u64,
    /// Per port, in scenario order.
    pub ports: Vec<PortSummary>,
    /// Per rule, in flows.txt order.
    pub rules: Vec<RuleSummary>,
    /// Lookups per table that was used.
    pub tables: Vec<TableSummary>,
    /// MAC table: entries at the end, evictions, expirations, moves.
    pub mac_table: BTreeMap<String, u64>,
    /// Damaged inputs (frames before the damage were replayed).
    pub input_errors: Vec<String>,
    /// Meters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub meters: Vec<crate::qos::MeterReport>,
    /// Simulated hosts and what their actions did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<crate::sim::HostSummary>,
    /// When a simulation stopped, microseconds from the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sim_end_us: Option<u64>,
    /// The scenario's `[[expect]]` checks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expectations: Vec<crate::sim::ExpectResult>,
}

/// Rules a simulation added or deleted on the clock ([[change]]), for the
/// summary: (change number, rule) and (change number, rule, when).
#[derive(Debug, Default)]
pub(crate) struct RuleLog {
    pub added: Vec<(usize, Rule)>,
    pub deleted: Vec<(usize, crate::table::Installed, Timestamp)>,
}

fn counters_map(d: &DropCounters) -> BTreeMap<String, u64> {
    d.nonzero()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

fn malformed_map(m: &MalformedCounters) -> BTreeMap<String, u64> {
    m.nonzero()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

fn backend_map(b: &BackendStats) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for (k, v) in [
        ("oversize", b.rx_oversize),
        ("snap_truncated", b.rx_snap_truncated),
        ("not_ethernet", b.rx_not_ethernet),
    ] {
        if v > 0 {
            m.insert(k.to_string(), v);
        }
    }
    m
}

impl Summary {
    /// A human-readable rendering.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "frames in: {}, frames out: {}\n\n",
            self.frames_in, self.frames_out
        ));
        s.push_str("port            ofport  rx_pkts   rx_bytes  tx_pkts   tx_bytes  drops\n");
        for p in &self.ports {
            let drops: Vec<String> = p.drops.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s.push_str(&format!(
                "{:<15} {:>6} {:>8} {:>10} {:>8} {:>10}  {}\n",
                p.name,
                p.ofport,
                p.rx_packets,
                p.rx_bytes,
                p.tx_packets,
                p.tx_bytes,
                if drops.is_empty() {
                    "-".to_string()
                } else {
                    drops.join(" ")
                }
            ));
            if !p.malformed.is_empty() {
                let m: Vec<String> = p
                    .malformed
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                s.push_str(&format!(
                    "{:<15} malformed (switched on what parsed): {}\n",
                    "",
                    m.join(" ")
                ));
            }
            if !p.capture.is_empty() {
                let m: Vec<String> = p.capture.iter().map(|(k, v)| format!("{k}={v}")).collect();
                s.push_str(&format!("{:<15} capture: {}\n", "", m.join(" ")));
            }
            for q in p.queues.iter().flatten() {
                s.push_str(&format!(
                    "{:<15} queue {}: {} queued, {} sent ({} bytes), {} dropped (full)\n",
                    "", q.queue, q.enqueued, q.tx_packets, q.tx_bytes, q.dropped
                ));
            }
        }
        for m in &self.meters {
            s.push_str(&format!(
                "meter {}: {} bit/s, burst {} bits: {} passed, {} dropped\n",
                m.id, m.rate, m.burst, m.passed, m.dropped
            ));
        }
        s.push_str("\nrules (dump-flows, as of the last frame or the rule's removal):\n");
        for r in &self.rules {
            if r.dump.is_empty() {
                s.push_str(&format!(" {}", r.rule));
            } else {
                s.push_str(&r.dump);
            }
            if let Some(rm) = &r.removed {
                s.push_str(&format!("  [removed: {rm}]"));
            }
            s.push('\n');
        }
        if !self.input_errors.is_empty() {
            s.push_str("\ninput errors:\n");
            for e in &self.input_errors {
                s.push_str(&format!("  {e}\n"));
            }
        }
        s
    }
}

/// Output timestamps keep nanoseconds when any input has them.
fn any_nanos(ports: &[PcapPort]) -> bool {
    ports.iter().any(|p| p.rx_nanosecond())
}

/// Opens the scenario's inputs, one capture port per scenario port.
pub(crate) fn open_inputs(sc: &Scenario) -> Result<Vec<PcapPort>, Error> {
    sc.ports
        .iter()
        .zip(&sc.inputs)
        .map(|(p, inp)| PcapPort::open(&p.name, inp.as_deref(), None, false))
        .collect()
}

/// Merges the ports' inputs in replay order, feeding `f` one frame at a time.
pub(crate) struct Merger {
    pub(crate) look: Vec<Batch>,
    pos: Vec<usize>,
    order: Vec<usize>,
    peeked: Option<(usize, usize)>,
}

impl Merger {
    pub(crate) fn new(sc: &Scenario) -> Self {
        let mut order: Vec<usize> = (0..sc.ports.len()).collect();
        order.sort_by_key(|&i| sc.ports[i].ofport);
        Merger {
            look: (0..sc.ports.len()).map(|_| Batch::new(BURST)).collect(),
            pos: vec![0; sc.ports.len()],
            order,
            peeked: None,
        }
    }

    /// The next frame's timestamp, without taking it.
    pub(crate) fn peek(
        &mut self,
        ports: &mut [PcapPort],
        clock: &ManualClock,
    ) -> Option<Timestamp> {
        let (i, p) = self.choose(ports, clock)?;
        Some(self.look[i].frames()[p].meta.ts)
    }

    /// The port of the frame [`Merger::peek`] saw last: (position, port index).
    pub(crate) fn peek_port(&self) -> Option<(usize, usize)> {
        self.peeked.map(|(i, p)| (p, i))
    }

    /// The next frame: (port index, position in its lookahead).
    pub(crate) fn next(
        &mut self,
        ports: &mut [PcapPort],
        clock: &ManualClock,
    ) -> Option<(usize, usize)> {
        let (i, p) = self.choose(ports, clock)?;
        self.pos[i] += 1;
        self.peeked = None;
        Some((i, p))
    }

    fn choose(&mut self, ports: &mut [PcapPort], clock: &ManualClock) -> Option<(usize, usize)> {
        let mut best: Option<(Timestamp, usize)> = None;
        for &i in &self.order {
            if self.pos[i] >= self.look[i].len() {
                if ports[i].rx_exhausted() {
                    continue;
                }
                self.look[i].clear();
                self.pos[i] = 0;
                // Errors are kept by the port (take_rx_error); frames before them count.
                let _ = ports[i].rx_burst(&mut self.look[i], i as u16, clock);
                if self.look[i].is_empty() {
                    continue;
                }
            }
            let ts = self.look[i].frames()[self.pos[i]].meta.ts;
            if best.is_none_or(|(bt, _)| ts < bt) {
                best = Some((ts, i));
            }
        }
        let (_, i) = best?;
        let p = self.pos[i];
        self.peeked = Some((i, p));
        Some((i, p))
    }
}

/// Earliest timestamp among the inputs (the scenario clock's start), and
/// whether any input has sub-microsecond timestamps (known only once a
/// pcapng file's interface block has been read, so after a first frame).
pub(crate) fn start_time(sc: &Scenario) -> Result<(Timestamp, bool), Error> {
    let mut ports = open_inputs(sc)?;
    let clock = ManualClock::default();
    let mut best: Option<Timestamp> = None;
    for (i, p) in ports.iter_mut().enumerate() {
        let mut b = Batch::new(1);
        let _ = p.rx_burst(&mut b, i as u16, &clock);
        if let Some(f) = b.frames().first() {
            best = Some(best.map_or(f.meta.ts, |x: Timestamp| x.min(f.meta.ts)));
        }
    }
    Ok((best.unwrap_or_default(), any_nanos(&ports)))
}

pub(crate) fn build_pipeline(sc: &Scenario, start: Timestamp) -> Result<Pipeline, Error> {
    let mut p = Pipeline::new(sc.ports.clone(), sc.options)?;
    for n in &sc.rules {
        p.add_rule(n.rule.clone(), start);
    }
    for m in &sc.meters {
        let mut meter = crate::qos::Meter::new(m.rate, m.burst);
        // Full at the start of the capture.
        meter.bucket.take(start, 0);
        p.set_meter(m.id, Some(meter));
    }
    Ok(p)
}

/// Replays `sc`, writing `<port>.pcap` for every port and the summary files
/// into `out_dir` (created if needed).
///
/// A scenario with simulated hosts or flow changes on the clock runs as a
/// discrete-event simulation ([`crate::sim`]); either way, its
/// `[[expect]]` checks are evaluated into the summary.
pub fn replay(sc: &Scenario, out_dir: &Path) -> Result<Summary, Error> {
    let mut summary = if sc.sim.active() {
        crate::sim::run(sc, out_dir)?
    } else {
        replay_captures(sc, out_dir)?
    };
    if !sc.sim.expects.is_empty() {
        let v = serde_json::to_value(&summary).map_err(|e| Error::Invalid(e.to_string()))?;
        summary.expectations = crate::sim::check_expectations(&v, &sc.sim.expects);
    }
    let json = serde_json::to_string_pretty(&summary).map_err(|e| Error::Invalid(e.to_string()))?;
    let jpath = out_dir.join("summary.json");
    fs::write(&jpath, json + "\n").map_err(|e| Error::io(&jpath, e))?;
    let tpath = out_dir.join("summary.txt");
    fs::write(&tpath, summary.to_text()).map_err(|e| Error::io(&tpath, e))?;
    Ok(summary)
}

/// The plain replay: captures only, switched in bursts.
fn replay_captures(sc: &Scenario, out_dir: &Path) -> Result<Summary, Error> {
    fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let (start, nanos) = start_time(sc)?;
    let mut inputs = open_inputs(sc)?;
    let mut outputs = Vec::new();
    for p in &sc.ports {
        let path = out_dir.join(format!("{}.pcap", p.name));
        outputs.push(PcapPort::open(&p.name, None, Some(&path), nanos)?);
    }
    let mut pipe = build_pipeline(sc, start)?;
    let clock = ManualClock::new(start);
    let mut merger = Merger::new(sc);
    // With QoS, queues fill and drain on the captures' clock: frames are
    // switched one at a time, and before each, the queues release what
    // leaves by its time (stamped with departure times).
    let qos = sc.ports.iter().any(|p| p.qos.is_some());
    let mut batch = Batch::new(if qos { 1 } else { BURST });
    let mut frames_in = 0u64;
    let mut tracer = crate::trace::NoTrace;
    let mut last = start;
    let port_err = |k: usize, e: crate::port::PortError| Error::Port {
        port: sc.ports[k].name.clone(),
        msg: e.to_string(),
    };
    loop {
        let next = merger.next(&mut inputs, &clock);
        if let Some((i, p)) = next {
            let f = &merger.look[i].frames()[p];
            last = last.max(f.meta.ts);
            if qos {
                for (k, out) in outputs.iter_mut().enumerate() {
                    pipe.flush_port_at(k as u16, out, f.meta.ts)
                        .map_err(|e| port_err(k, e))?;
                }
            }
            batch.push_frame(
                f.data(),
                PacketMeta {
                    port: i as u16,
                    ..f.meta
                },
            );
            frames_in += 1;
        }
        if batch.is_full() || (next.is_none() && !batch.is_empty()) {
            pipe.process(&mut batch, &mut tracer);
            batch.clear();
            for (k, out) in outputs.iter_mut().enumerate() {
                if qos {
                    pipe.flush_port_at(k as u16, out, last)
                } else {
                    pipe.flush_port(k as u16, out)
                }
                .map_err(|e| port_err(k, e))?;
            }
        }
        if next.is_none() {
            break;
        }
    }
    if qos {
        // What is still queued leaves after the last input, at its time.
        for (k, out) in outputs.iter_mut().enumerate() {
            pipe.flush_port_at(k as u16, out, Timestamp(u64::MAX))
                .map_err(|e| port_err(k, e))?;
        }
    }
    for (k, out) in outputs.iter_mut().enumerate() {
        out.flush().map_err(|e| Error::Port {
            port: sc.ports[k].name.clone(),
            msg: e.to_string(),
        })?;
    }
    let mut input_errors = Vec::new();
    for (k, inp) in inputs.iter_mut().enumerate() {
        if let Some(e) = inp.take_rx_error() {
            let path = sc.inputs[k]
                .as_deref()
                .map_or_else(String::new, |p| p.display().to_string());
            input_errors.push(format!("{path}: {e}"));
        }
    }
    Ok(summarize(
        sc,
        &pipe,
        &inputs,
        frames_in,
        last,
        input_errors,
        &RuleLog::default(),
    ))
}

pub(crate) fn summarize(
    sc: &Scenario,
    pipe: &Pipeline,
    inputs: &[PcapPort],
    frames_in: u64,
    end: Timestamp,
    input_errors: Vec<String>,
    log: &RuleLog,
) -> Summary {
    let mut ports = Vec::new();
    let mut frames_out = 0;
    for (i, cfg) in sc.ports.iter().enumerate() {
        let st = pipe.port_stats(i as u16).copied().unwrap_or_default();
        frames_out += st.tx_packets;
        ports.push(PortSummary {
            name: cfg.name.clone(),
            ofport: cfg.ofport,
            vlan: cfg.vlan.describe(),
            rx_packets: st.rx_packets,
            rx_bytes: st.rx_bytes,
            tx_packets: st.tx_packets,
            tx_bytes: st.tx_bytes,
            drops: counters_map(&st.drops),
            malformed: malformed_map(&st.malformed),
            capture: backend_map(&inputs[i].backend_stats()),
            queues: pipe.queue_stats(i as u16).map(|qs| {
                qs.iter()
                    .enumerate()
                    .filter(|(_, q)| q.enqueued > 0 || q.dropped > 0)
                    .map(|(k, q)| QueueSummary {
                        queue: k as u8,
                        enqueued: q.enqueued,
                        tx_packets: q.tx_packets,
                        tx_bytes: q.tx_bytes,
                        dropped: q.dropped,
                    })
                    .collect()
            }),
        });
    }
    // Rules in flows.txt order, then those [[change]]s added: live ones,
    // those removed by timeouts and those a [[change]] deleted.
    let mut rules = Vec::new();
    let live = pipe.rules();
    let removed = pipe.removed_rules();
    let mut used_live = vec![false; live.len()];
    let mut used_removed = vec![false; removed.len()];
    let mut used_deleted = vec![false; log.deleted.len()];
    let listed = sc
        .rules
        .iter()
        .map(|n| (n.line, None, &n.rule))
        .chain(log.added.iter().map(|(c, r)| (0, Some(*c), r)));
    for (line, change, r) in listed {
        let text = r.to_string();
        let row = |n_packets, n_bytes, removed: Option<String>, dump| RuleSummary {
            rule: text.clone(),
            line,
            n_packets,
            n_bytes,
            removed,
            change,
            dump,
        };
        if let Some(k) =
            (0..removed.len()).find(|&k| !used_removed[k] && removed[k].rule.rule == *r)
        {
            used_removed[k] = true;
            let rm = &removed[k];
            let why = match rm.why {
                Removed::Idle => "idle_timeout",
                Removed::Hard => "hard_timeout",
            };
            rules.push(row(
                rm.rule.stats.packets,
                rm.rule.stats.bytes,
                Some(format!("{why} at {}", rm.at)),
                dump_flow(&rm.rule, rm.at),
            ));
        } else if let Some(k) =
            (0..log.deleted.len()).find(|&k| !used_deleted[k] && log.deleted[k].1.rule == *r)
        {
            used_deleted[k] = true;
            let (c, inst, at) = &log.deleted[k];
            rules.push(row(
                inst.stats.packets,
                inst.stats.bytes,
                Some(format!("deleted by change {c} at {at}")),
                dump_flow(inst, *at),
            ));
        } else if let Some(k) = (0..live.len()).find(|&k| !used_live[k] && live[k].1.rule == *r) {
            used_live[k] = true;
            rules.push(row(
                live[k].1.stats.packets,
                live[k].1.stats.bytes,
                None,
                dump_flow(live[k].1, end),
            ));
        } else {
            // Replaced by a later identical match (OpenFlow ADD semantics).
            rules.push(row(
                0,
                0,
                Some("replaced by a later rule with the same match and priority".into()),
                String::new(),
            ));
        }
    }
    let tables = pipe
        .table_stats()
        .iter()
        .enumerate()
        .filter(|(_, t)| t.lookups > 0)
        .map(|(i, t)| TableSummary {
            table: i as u8,
            lookups: t.lookups,
            matched: t.matched,
        })
        .collect();
    let mt = pipe.mac_table();
    let mut mac_table = BTreeMap::new();
    mac_table.insert("entries".to_string(), mt.len() as u64);
    mac_table.insert("evictions".to_string(), mt.evictions);
    mac_table.insert("expirations".to_string(), mt.expirations);
    mac_table.insert("moves".to_string(), mt.moves);
    Summary {
        frames_in,
        frames_out,
        ports,
        rules,
        tables,
        mac_table,
        input_errors,
        meters: pipe.meters(),
        hosts: Vec::new(),
        sim_end_us: None,
        expectations: Vec::new(),
    }
}

/// Renders the rules of a pipeline like `ovs-ofctl dump-flows`, at `now`.
pub fn dump_flows(pipe: &Pipeline, now: Timestamp) -> String {
    pipe.rules()
        .iter()
        .map(|(_, r)| dump_flow(r, now) + "\n")
        .collect()
}

/// What to trace.
#[derive(Debug, Clone)]
pub struct TraceRequest {
    /// Ingress port name.
    pub in_port: String,
    /// The frame.
    pub frame: Vec<u8>,
    /// Its arrival time (defaults to the scenario start).
    pub ts: Option<Timestamp>,
    /// Replay the scenario's inputs up to (not including) this frame first.
    /// Frames that come before it in replay order set up the MAC table and
    /// counters.
    pub after: Option<InputPos>,
}

/// A frame's place in a scenario's inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputPos {
    /// The input port's index.
    pub port: usize,
    /// The frame's 0-based index among the frames that port delivers.
    pub index: usize,
}

/// One frame read from a capture file ([`read_frame`]).
#[derive(Debug, Clone)]
pub struct CapturedFrame {
    /// Its timestamp.
    pub ts: Timestamp,
    /// Its bytes.
    pub data: Vec<u8>,
    /// Its 0-based position among the frames a capture port delivers
    /// (frames over 9216 bytes never reach the switch).
    pub delivered: usize,
}

/// Traces one frame through the scenario's pipeline.
pub fn trace(sc: &Scenario, req: &TraceRequest) -> Result<TraceReport, Error> {
    let Some(in_idx) = sc.ports.iter().position(|p| p.name == req.in_port) else {
        return Err(Error::Invalid(format!(
            "no port named `{}` (ports: {})",
            req.in_port,
            sc.ports
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    let (start, _) = start_time(sc)?;
    let mut pipe = build_pipeline(sc, start)?;
    let clock = ManualClock::new(start);
    let mut warmup_frames = 0;
    let mut ts = req.ts.unwrap_or(start);
    if let Some(InputPos {
        port: wp,
        index: wi,
    }) = req.after
    {
        let mut inputs = open_inputs(sc)?;
        let mut merger = Merger::new(sc);
        let mut seen = vec![0usize; sc.ports.len()];
        let mut batch = Batch::new(1);
        let mut sink = crate::port::memory::MemoryPort::new("sink");
        sink.set_sink(crate::port::memory::Sink::Count);
        while let Some((i, p)) = merger.next(&mut inputs, &clock) {
            if i == wp && seen[i] == wi {
                break;
            }
            seen[i] += 1;
            let f = &merger.look[i].frames()[p];
            ts = f.meta.ts;
            batch.clear();
            batch.push_frame(
                f.data(),
                PacketMeta {
                    port: i as u16,
                    ..f.meta
                },
            );
            pipe.process(&mut batch, &mut crate::trace::NoTrace);
            for k in 0..sc.ports.len() {
                let _ = pipe.flush_port(k as u16, &mut sink);
            }
            warmup_frames += 1;
        }
        if let Some(t) = req.ts {
            ts = t;
        }
    }
    let mut batch = Batch::new(1);
    batch.push_frame(&req.frame, PacketMeta::new(in_idx as u16, ts));
    let mut log = TraceLog::default();
    pipe.process(&mut batch, &mut log);
    Ok(TraceReport {
        events: log.events,
        port_names: sc.ports.iter().map(|p| p.name.clone()).collect(),
        warmup_frames,
    })
}

/// Reads frame `index` (0-based) of a capture file, with its timestamp.
///
/// Also tells the frame's position among the frames a capture port
/// delivers (frames over 9216 bytes never reach the switch); a frame that
/// is itself too long is an error that says so.
pub fn read_frame(path: &Path, index: usize) -> Result<CapturedFrame, Error> {
    let f = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut r = crate::pcap::PcapReader::new(f).map_err(|source| Error::Pcap {
        path: path.to_path_buf(),
        source,
    })?;
    let mut i = 0;
    let mut delivered = 0;
    loop {
        match r.next_record() {
            Ok(Some(rec)) => {
                let fits = rec.data.len() <= crate::packet::MAX_FRAME;
                if i == index {
                    if !fits {
                        return Err(Error::Invalid(format!(
                            "{}: frame number {} is {} bytes: the port drops it on receive (oversize; xsw carries frames up to {} bytes)",
                            path.display(),
                            index + 1,
                            rec.data.len(),
                            crate::packet::MAX_FRAME
                        )));
                    }
                    return Ok(CapturedFrame {
                        ts: rec.ts,
                        data: rec.data.to_vec(),
                        delivered,
                    });
                }
                i += 1;
                delivered += usize::from(fits);
            }
            Ok(None) => {
                return Err(Error::Invalid(format!(
                    "{}: has {i} frame(s); frame number {} does not exist",
                    path.display(),
                    index + 1
                )))
            }
            Err(source) => {
                return Err(Error::Pcap {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
}
