//! `xsw`: the xsw command-line tool. Offline it replays and traces pcap
//! scenarios; online it manages a running `xswd` through its control socket.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use serde_json::Value;

use xsw_control::client::{self, Client, ClientError};
use xsw_control::proto::Command as Req;
use xsw_control::spec::{MeterSpec, PortSpec, PortType, XdpMode};
use xsw_datapath::flow::parse_flow;
use xsw_datapath::replay::{self, Scenario, TraceRequest};
use xsw_datapath::spec::{QosSpec, QueueSpec};
use xsw_datapath::trace::TraceJson;
use xsw_datapath::vlan::VlanMode;
use xsw_datapath::Error;

const AFTER_HELP: &str = "\
Offline (no daemon, no privileges):
  xsw replay pcaps/vlan-access-trunk --out /tmp/out
  xsw trace pcaps/learning --in-port p2 --pcap pcaps/learning/in/p2.pcap --index 1
  xsw flow check pcaps/multi-table/flows.txt

A running switch (xswd; root or group xsw):
  xsw bridge add br0
  xsw port add br0 vm1 --interface tap-vm1 --vlan-mode access --tag 10
  xsw port add br0 uplink --interface eth1 --trunks 10,20
  xsw flow add br0 'priority=100,tcp,tp_dst=22,actions=drop'
  xsw show
  xsw port stats br0
  xsw flow dump br0
  xsw fdb show br0
  xsw trace br0 --in-port vm1 --frame ffffffffffff02000000000108060001...

Every read takes --json. The socket is /run/xsw/xswd.sock unless --socket
or $XSW_SOCKET says otherwise.";

/// xsw: a userspace virtual switch (OpenFlow tables, NORMAL learning switch,
/// VLANs) that runs on AF_XDP ports, or offline on pcap files.
#[derive(Parser, Debug)]
#[command(name = "xsw", version, after_help = AFTER_HELP)]
struct Cli {
    /// The control socket of the xswd to talk to.
    #[arg(long, global = true, env = "XSW_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a scenario's captures through the switch, offline, and write what
    /// every port sends.
    ///
    /// SCENARIO_DIR holds scenario.toml ([[port]] tables: name, ofport, and
    /// optionally vlan_mode, tag, trunks, mtu), optional flows.txt (one
    /// ovs-ofctl style rule per line; without it the only rule is
    /// priority=0,actions=NORMAL) and in/<port>.pcap for each port that
    /// receives frames. Frames are switched in timestamp order (ties: lower
    /// ofport first), on the captures' clock.
    ///
    /// OUT_DIR gets <port>.pcap for every port (empty when the port sent
    /// nothing), summary.json and summary.txt (per-port counters with drops by
    /// reason, per-rule counters).
    ///
    /// Exit status: 0 done; 1 the scenario could not be run; 3 done, but an
    /// input capture was damaged (frames before the damage were replayed).
    #[command(
        after_help = "Example:\n  xsw replay pcaps/learning --out /tmp/learning\n  tshark -r /tmp/learning/p2.pcap"
    )]
    Replay {
        /// The scenario directory.
        scenario: PathBuf,
        /// Where to write the outputs (created if missing).
        #[arg(long, short)]
        out: PathBuf,
        /// Print the summary as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show what every stage decides for one frame: parsed fields, rules
    /// matched per table, MAC learning and lookups, actions, outputs or the
    /// drop reason.
    ///
    /// TARGET is a scenario directory (offline) or the name of a bridge of
    /// the running xswd (live: traced on its current tables and MAC table,
    /// without changing anything: no counters, no learning, nothing sent).
    ///
    /// Offline, with --pcap and --index the frame is taken from a capture.
    /// When the capture is the scenario's own input for --in-port, the frames
    /// the replay handles before it are replayed first, so the MAC table and
    /// counters are as they were in the replay (use --cold to skip that).
    #[command(
        after_help = "Examples:\n  xsw trace pcaps/learning --in-port p2 --pcap pcaps/learning/in/p2.pcap --index 1\n  xsw trace pcaps/learning --in-port p1 --frame ffffffffffff02000000000108060001...\n  xsw trace br0 --in-port vm1 --frame 'ff ff ff ff ff ff 02 00 00 00 00 01 08 06 ...'"
    )]
    Trace {
        /// A scenario directory, or a bridge of the running xswd.
        target: String,
        /// Port the frame arrives on.
        #[arg(long)]
        in_port: String,
        /// The frame as hex (spaces and colons are ignored).
        #[arg(long, conflicts_with_all = ["pcap", "index"], required_unless_present = "pcap")]
        frame: Option<String>,
        /// Take the frame from this capture...
        #[arg(long, requires = "index")]
        pcap: Option<PathBuf>,
        /// ...frame number N (1 = first, as Wireshark numbers them).
        #[arg(long)]
        index: Option<usize>,
        /// Offline: trace against the scenario's initial state.
        #[arg(long)]
        cold: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The running switch: bridges, ports (interface, type, VLANs, MTU, XDP
    /// mode, state), flow and MAC counts.
    Show {
        /// Only this bridge.
        bridge: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create or delete bridges.
    Bridge {
        #[command(subcommand)]
        cmd: BridgeCmd,
    },
    /// Add, delete and count ports.
    Port {
        #[command(subcommand)]
        cmd: PortCmd,
    },
    /// Manage flow rules (ovs-ofctl syntax), or check them offline.
    Flow {
        #[command(subcommand)]
        cmd: FlowCmd,
    },
    /// The MAC learning table.
    Fdb {
        #[command(subcommand)]
        cmd: FdbCmd,
    },
    /// Meters: policers rules send frames through (`actions=meter:N,...`).
    Meter {
        #[command(subcommand)]
        cmd: MeterCmd,
    },
    /// Print a shell completion script.
    #[command(after_help = "Example:\n  xsw completions bash > /etc/bash_completion.d/xsw")]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand, Debug)]
enum BridgeCmd {
    /// Create a bridge: no ports, one rule (priority=0,actions=NORMAL).
    #[command(after_help = "Example:\n  xsw bridge add br0 --mac-aging 600")]
    Add {
        /// Its name (letters, digits, `_`, `-`, `.`).
        name: String,
        /// MAC aging in seconds (15-3600; default 300).
        #[arg(long)]
        mac_aging: Option<u64>,
        /// MAC table size (10-1000000; default 8192).
        #[arg(long)]
        mac_table_size: Option<usize>,
    },
    /// Delete a bridge and its ports (the interfaces are released).
    #[command(after_help = "Example:\n  xsw bridge del br0")]
    Del {
        /// The bridge.
        name: String,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum TypeArg {
    /// An existing interface (NIC, veth, a VM's tap), through AF_XDP.
    Afxdp,
    /// A tap xsw creates for the host's own address on the bridge.
    Internal,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum VlanModeArg {
    Access,
    Trunk,
    NativeUntagged,
    NativeTagged,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum XdpModeArg {
    Native,
    Generic,
    Auto,
}

#[derive(Subcommand, Debug)]
enum PortCmd {
    /// Add a port: an existing interface (afxdp) or a new tap (internal).
    #[command(
        after_help = "Examples:\n  xsw port add br0 vm1 --interface tap-vm1 --vlan-mode access --tag 10\n  xsw port add br0 uplink --interface eth1 --trunks 10,20 --mtu 9000\n  xsw port add br0 host --type internal --interface br0-host"
    )]
    Add {
        /// The bridge.
        bridge: String,
        /// The port's name (used in flows: in_port=NAME, output:NAME).
        name: String,
        /// The interface: required for afxdp; for internal, the tap to create
        /// (default: the port's name).
        #[arg(long)]
        interface: Option<String>,
        /// Device type.
        #[arg(long = "type", value_enum, default_value = "afxdp")]
        kind: TypeArg,
        /// OpenFlow port number (default: the lowest free one).
        #[arg(long)]
        ofport: Option<u16>,
        /// VLAN mode (default: access with --tag, else trunk).
        #[arg(long, value_enum)]
        vlan_mode: Option<VlanModeArg>,
        /// Access VLAN, or native VLAN for native-* modes.
        #[arg(long)]
        tag: Option<u16>,
        /// VLANs a trunk carries, e.g. 10,20 (default all).
        #[arg(long, value_delimiter = ',')]
        trunks: Option<Vec<u16>>,
        /// Largest IP packet the port sends; larger frames are dropped and counted.
        #[arg(long)]
        mtu: Option<u32>,
        /// Switch the host's own traffic on this interface too (by default
        /// frames for the host's addresses go to the host stack).
        #[arg(long)]
        no_host_pass: bool,
        /// XDP attach mode.
        #[arg(long, value_enum)]
        xdp_mode: Option<XdpModeArg>,
    },
    /// Delete a port (the interface is released: its XDP program detached).
    #[command(after_help = "Example:\n  xsw port del br0 vm1")]
    Del {
        /// The bridge.
        bridge: String,
        /// The port.
        name: String,
    },
    /// Change a port's settings: its QoS.
    ///
    /// `qos` takes KEY=VALUE settings that replace the port's whole QoS
    /// (`qos none` removes it): rate=, burst= (port shaper, bits: 100M, 1.5G,
    /// 64k), scheduler=strict|drr|ets, strict_queues=N (ets: the top N
    /// queues strict), weights=W0,...,W7 (DRR, 1-100), pcp_map=Q0,...,Q7
    /// (queue per priority; default 1,0,2,3,4,5,6,7), default_pcp=P and
    /// dscp_map=DSCP:P,... (priority of frames arriving untagged here),
    /// remark_pcp=true (tags this port adds get PCP from DSCP),
    /// police_rate=, police_burst= (ingress policing), queueN.rate=,
    /// queueN.burst=, queueN.depth= (queue N's shaper and depth).
    #[command(
        after_help = "Examples:\n  xsw port set br0 uplink qos rate=100M scheduler=strict\n  xsw port set br0 uplink qos rate=1G scheduler=ets strict_queues=2 weights=1,1,2,2,4,4,1,1 queue6.rate=200M\n  xsw port set br0 vm1 qos dscp_map=46:5,48:6 police_rate=50M\n  xsw port set br0 uplink qos none"
    )]
    Set {
        /// The bridge.
        bridge: String,
        /// The port.
        name: String,
        /// What to set (only `qos` for now).
        #[arg(value_parser = ["qos"])]
        what: String,
        /// KEY=VALUE settings, or `none`.
        #[arg(required = true)]
        settings: Vec<String>,
    },
    /// Port counters: rx/tx packets and bytes, drops by reason, XDP verdicts,
    /// kernel ring drops, QoS queues.
    #[command(after_help = "Example:\n  xsw port stats br0 --json | jq '.ports[].stats'")]
    Stats {
        /// The bridge.
        bridge: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum FlowCmd {
    /// Add rules to a running bridge (a rule with the same table, priority
    /// and match is replaced). With --file, all of them at once or none.
    #[command(
        after_help = "Examples:\n  xsw flow add br0 'priority=100,tcp,nw_dst=198.18.0.0/24,tp_dst=80,actions=output:2'\n  xsw flow add br0 'in_port=vm1,actions=mod_vlan_vid:10,output:uplink'\n  xsw flow add br0 --file more.flows"
    )]
    Add {
        /// The bridge.
        bridge: String,
        /// The rule.
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        flow: Option<String>,
        /// Rules from a file (one per line, `#` comments).
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Delete the rules a match selects (all rules without one), as
    /// ovs-ofctl del-flows: a rule goes when its match is at least as
    /// specific; with --strict only the rule with exactly this match and
    /// priority.
    #[command(
        after_help = "Examples:\n  xsw flow del br0 'tcp,tp_dst=22'\n  xsw flow del br0 'priority=100,tcp,tp_dst=22' --strict\n  xsw flow del br0"
    )]
    Del {
        /// The bridge.
        bridge: String,
        /// The match (fields, `table=`, `cookie=V/M`, `priority=` with --strict).
        #[arg(name = "MATCH")]
        matches: Option<String>,
        /// Exact match and priority only.
        #[arg(long)]
        strict: bool,
    },
    /// Replace all rules of a bridge with those of a file, atomically: the
    /// new table takes effect whole, between two batches, or not at all.
    /// Rules that stay the same keep their counters.
    #[command(after_help = "Example:\n  xsw flow replace br0 br0.flows")]
    Replace {
        /// The bridge.
        bridge: String,
        /// The file (one rule per line, `#` comments).
        file: PathBuf,
    },
    /// The rules with their live counters, as ovs-ofctl dump-flows prints them.
    #[command(after_help = "Example:\n  xsw flow dump br0")]
    Dump {
        /// The bridge.
        bridge: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check a flows file offline; prints each rule in normal form, or the
    /// first error with its line and column.
    #[command(after_help = "Example:\n  xsw flow check pcaps/multi-table/flows.txt")]
    Check {
        /// The file (one rule per line, `#` comments).
        file: PathBuf,
        /// Resolve port names (in_port=NAME, output:NAME) with this scenario's ports.
        #[arg(long)]
        scenario: Option<PathBuf>,
    },
    /// Parse one rule offline and print it in normal form (as dump-flows would).
    #[command(
        after_help = "Example:\n  xsw flow parse 'priority=10,udp,tp_dst=53,actions=output:2'"
    )]
    Parse {
        /// The rule, e.g. 'priority=10,udp,tp_dst=53,actions=output:2'.
        rule: String,
        /// Resolve port names with this scenario's ports.
        #[arg(long)]
        scenario: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum MeterCmd {
    /// Add a meter, or change one (its counters stay): rate= and burst= in
    /// bits (k/M/G). Frames over the rate are dropped (counted as `meter`).
    #[command(
        after_help = "Example:\n  xsw meter add br0 1 rate=10M burst=200k\n  xsw flow add br0 'in_port=vm1,actions=meter:1,normal'"
    )]
    Add {
        /// The bridge.
        bridge: String,
        /// Meter id, 1-65535.
        id: u32,
        /// rate=BITS [burst=BITS]
        #[arg(required = true)]
        settings: Vec<String>,
    },
    /// Delete a meter (refused while rules use it).
    #[command(after_help = "Example:\n  xsw meter del br0 1")]
    Del {
        /// The bridge.
        bridge: String,
        /// Meter id.
        id: u32,
    },
    /// Meters with what they passed and dropped.
    #[command(after_help = "Example:\n  xsw meter show br0")]
    Show {
        /// The bridge.
        bridge: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum FdbCmd {
    /// The learned MACs: port, VLAN, MAC, age in seconds.
    #[command(after_help = "Example:\n  xsw fdb show br0")]
    Show {
        /// The bridge.
        bridge: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Forget every learned MAC (they are learned again from traffic).
    #[command(after_help = "Example:\n  xsw fdb flush br0")]
    Flush {
        /// The bridge.
        bridge: String,
    },
}

/// Splits KEY=VALUE settings.
fn settings(args: &[String]) -> Result<Vec<(String, String)>> {
    args.iter()
        .map(|a| {
            a.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| anyhow::anyhow!("`{a}`: expected KEY=VALUE"))
        })
        .collect()
}

fn num_list<T: std::str::FromStr>(key: &str, v: &str) -> Result<Vec<T>> {
    v.split(',').map(|x| num(key, x)).collect()
}

fn num<T: std::str::FromStr>(key: &str, v: &str) -> Result<T> {
    v.trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("{key}: `{v}` is not a number"))
}

/// A QoS setting from `xsw port set ... qos KEY=VALUE...`.
fn qos_spec(args: &[String]) -> Result<Option<QosSpec>> {
    if args.len() == 1 && args[0] == "none" {
        return Ok(None);
    }
    let mut q = QosSpec::default();
    let mut queues: Vec<QueueSpec> = Vec::new();
    for (k, v) in settings(args)? {
        match k.as_str() {
            "rate" => q.rate = Some(v),
            "burst" => q.burst = Some(v),
            "scheduler" => q.scheduler = Some(v),
            "strict_queues" => q.strict_queues = Some(num(&k, &v)?),
            "weights" => q.weights = Some(num_list(&k, &v)?),
            "pcp_map" => q.pcp_map = Some(num_list(&k, &v)?),
            "default_pcp" => q.default_pcp = Some(num(&k, &v)?),
            "dscp_map" => {
                let mut m = std::collections::BTreeMap::new();
                for pair in v.split(',') {
                    let (d, p) = pair.split_once(':').ok_or_else(|| {
                        anyhow::anyhow!("dscp_map: `{pair}` is not DSCP:PRIORITY")
                    })?;
                    let p: u8 = p
                        .trim()
                        .parse()
                        .map_err(|_| anyhow::anyhow!("dscp_map: `{p}` is not a priority"))?;
                    m.insert(d.trim().to_string(), p);
                }
                q.dscp_map = Some(m);
            }
            "remark_pcp" => {
                q.remark_pcp = Some(match v.as_str() {
                    "true" | "yes" | "1" => true,
                    "false" | "no" | "0" => false,
                    _ => bail!("remark_pcp: `{v}`: true or false"),
                })
            }
            "police_rate" => q.police_rate = Some(v),
            "police_burst" => q.police_burst = Some(v),
            other => {
                let Some((qn, field)) = other
                    .strip_prefix("queue")
                    .and_then(|r| r.split_once('.'))
                    .and_then(|(n, f)| n.parse::<u8>().ok().map(|n| (n, f)))
                else {
                    bail!("qos: unknown setting `{other}` (see xsw port set --help)");
                };
                let i = match queues.iter().position(|x| x.queue == qn) {
                    Some(i) => i,
                    None => {
                        queues.push(QueueSpec {
                            queue: qn,
                            ..Default::default()
                        });
                        queues.len() - 1
                    }
                };
                match field {
                    "rate" => queues[i].rate = Some(v),
                    "burst" => queues[i].burst = Some(v),
                    "depth" => queues[i].depth = Some(num(other, &v)?),
                    f => bail!("qos: queue{qn}.{f}: a queue has rate, burst and depth"),
                }
            }
        }
    }
    if !queues.is_empty() {
        q.queues = Some(queues);
    }
    // Checked here too, so a typo is reported before the daemon is asked.
    q.to_config().map_err(|e| anyhow::anyhow!("qos: {e}"))?;
    Ok(Some(q))
}

fn parse_hex(s: &str) -> Result<Vec<u8>> {
    xsw_control::server::parse_hex(s).map_err(|e| anyhow::anyhow!("--frame: {e}"))
}

fn load(dir: &Path) -> Result<Scenario> {
    if !dir.is_dir() {
        bail!("{}: no such scenario directory", dir.display());
    }
    Ok(Scenario::load(dir)?)
}

/// Port names and numbers of a scenario (empty without one).
fn port_names(scenario: Option<&Path>) -> Result<Vec<(String, u16)>> {
    Ok(match scenario {
        Some(d) => load(d)?
            .ports
            .iter()
            .map(|p| (p.name.clone(), p.ofport))
            .collect(),
        None => Vec::new(),
    })
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Rules read from a file, with the line each came from.
struct FlowFile {
    path: PathBuf,
    flows: Vec<String>,
    lines: Vec<usize>,
}

/// Reads a flows file: the rule lines, without comments and blank lines.
fn flow_lines(path: &Path) -> Result<FlowFile> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let mut f = FlowFile {
        path: path.to_path_buf(),
        flows: Vec::new(),
        lines: Vec::new(),
    };
    for (i, l) in text.lines().enumerate() {
        let rule = l.split('#').next().unwrap_or("").trim();
        if !rule.is_empty() {
            f.flows.push(rule.to_string());
            f.lines.push(i + 1);
        }
    }
    Ok(f)
}

impl FlowFile {
    /// Rewrites "flow N of M, column C" in a refusal as FILE:LINE:COL.
    fn locate(&self, e: anyhow::Error) -> anyhow::Error {
        let Some(ClientError::Refused(body)) = e.downcast_ref::<ClientError>() else {
            return e;
        };
        let mut body = body.clone();
        if let Some(place) = &body.place {
            let nums: Vec<usize> = place
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|t| t.parse().ok())
                .collect();
            let at = match (place.starts_with("flow "), nums.as_slice()) {
                (true, [n, _, col]) => Some((*n, *col)),
                (false, [col]) if self.flows.len() == 1 => Some((1, *col)),
                _ => None,
            };
            if let Some((n, col)) = at {
                if let Some(line) = self.lines.get(n.wrapping_sub(1)) {
                    body.place = Some(format!("{}:{line}:{col}", self.path.display()));
                }
            }
        }
        ClientError::Refused(body).into()
    }
}

/// A table with aligned columns.
fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < w.len() {
                w[i] = w[i].max(c.len());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::from(" ");
        for (i, c) in cells.iter().enumerate() {
            s.push(' ');
            s.push_str(c);
            if i + 1 < cells.len() {
                s.push_str(&" ".repeat(w[i] - c.len()));
                s.push(' ');
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(head.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(x) => x.clone(),
        other => other.to_string(),
    }
}

fn print_json(v: &Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

struct Live {
    socket: PathBuf,
}

impl Live {
    fn call(&self, cmd: Req) -> Result<Value> {
        let mut c = Client::connect(&self.socket)?;
        Ok(c.call(cmd)?)
    }
}

fn show_text(v: &Value) -> String {
    let mut out = String::new();
    let bridges = v["bridges"].as_array().cloned().unwrap_or_default();
    if bridges.is_empty() {
        out.push_str("no bridges (add one: xsw bridge add NAME)\n");
    }
    for b in &bridges {
        let ports = b["ports"].as_array().cloned().unwrap_or_default();
        out.push_str(&format!(
            "bridge {}: {} port(s), {} flow(s), {} MAC(s) learned (aging {} s, up to {})\n",
            s(&b["name"]),
            ports.len(),
            s(&b["flows"]),
            s(&b["mac_entries"]),
            s(&b["mac_aging"]),
            s(&b["mac_table_size"]),
        ));
        if ports.is_empty() {
            continue;
        }
        let rows: Vec<Vec<String>> = ports
            .iter()
            .map(|p| {
                vec![
                    s(&p["name"]),
                    s(&p["ofport"]),
                    s(&p["type"]),
                    s(&p["interface"]),
                    s(&p["vlan"]),
                    s(&p["mtu"]),
                    qos_text(&p["qos"]),
                    s(&p["xdp_mode"]),
                    s(&p["state"]),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "PORT",
                "OFPORT",
                "TYPE",
                "INTERFACE",
                "VLAN",
                "MTU",
                "QOS",
                "XDP",
                "STATE",
            ],
            &rows,
        ));
    }
    let e = &v["engine"];
    if let (Some(run), Some(busy)) = (e["run_seconds"].as_f64(), e["busy_seconds"].as_f64()) {
        let pct = if run > 0.0 { busy / run * 100.0 } else { 0.0 };
        out.push_str(&format!(
            "polling thread: busy {pct:.1}% of {run:.0} s, {} control command(s)\n",
            s(&e["commands"])
        ));
    }
    out
}

/// A port's QoS in a few words: `100M strict`, `drr`, `police 50M`, `-`.
fn qos_text(q: &Value) -> String {
    let Some(o) = q.as_object() else {
        return "-".into();
    };
    let mut parts = Vec::new();
    if let Some(r) = o.get("rate").and_then(Value::as_str) {
        parts.push(r.to_string());
    }
    let sched = o
        .get("scheduler")
        .and_then(Value::as_str)
        .unwrap_or("strict");
    match o.get("strict_queues").and_then(Value::as_u64) {
        Some(n) => parts.push(format!("{sched}/{n}")),
        None => parts.push(sched.to_string()),
    }
    if let Some(r) = o.get("police_rate").and_then(Value::as_str) {
        parts.push(format!("police {r}"));
    }
    if o.contains_key("dscp_map") {
        parts.push("dscp".into());
    }
    if o.get("remark_pcp").and_then(Value::as_bool) == Some(true) {
        parts.push("remark".into());
    }
    parts.join(" ")
}

fn stats_text(v: &Value) -> String {
    let ports = v["ports"].as_array().cloned().unwrap_or_default();
    let rows: Vec<Vec<String>> = ports
        .iter()
        .map(|p| {
            let st = &p["stats"];
            let drops: u64 = st["drops"]
                .as_object()
                .map(|m| m.values().filter_map(Value::as_u64).sum())
                .unwrap_or(0);
            vec![
                s(&p["name"]),
                s(&st["rx_packets"]),
                s(&st["rx_bytes"]),
                s(&st["tx_packets"]),
                s(&st["tx_bytes"]),
                drops.to_string(),
                if p["up"].as_bool() == Some(true) {
                    "up".into()
                } else {
                    "down".into()
                },
            ]
        })
        .collect();
    let mut out = table(
        &[
            "PORT", "RX_PKTS", "RX_BYTES", "TX_PKTS", "TX_BYTES", "DROPS", "STATE",
        ],
        &rows,
    );
    for p in &ports {
        let mut parts = Vec::new();
        if let Some(m) = p["stats"]["drops"].as_object() {
            if !m.is_empty() {
                let d: Vec<String> = m.iter().map(|(k, v)| format!("{k}={}", s(v))).collect();
                parts.push(format!("drops: {}", d.join(" ")));
            }
        }
        let be = &p["backend"];
        if p["xdp_mode"].is_string() {
            if let Some(x) = be["xdp"].as_object() {
                let d: Vec<String> = x.iter().map(|(k, v)| format!("{k}={}", s(v))).collect();
                parts.push(format!("xdp: {}", d.join(" ")));
            }
        }
        let kernel: Vec<String> = [
            "kernel_rx_dropped",
            "kernel_rx_ring_full",
            "kernel_fill_empty",
            "tx_errors",
            "rx_oversize",
        ]
        .iter()
        .filter(|k| be[**k].as_u64().unwrap_or(0) > 0)
        .map(|k| format!("{k}={}", s(&be[*k])))
        .collect();
        if !kernel.is_empty() {
            parts.push(format!("device: {}", kernel.join(" ")));
        }
        if let Some(qs) = p["queues"].as_array() {
            for (i, q) in qs.iter().enumerate() {
                if q["enqueued"].as_u64().unwrap_or(0) == 0 {
                    continue;
                }
                parts.push(format!(
                    "queue {i}: {} queued, {} sent ({} bytes), {} dropped (full), {} waiting",
                    s(&q["enqueued"]),
                    s(&q["tx_packets"]),
                    s(&q["tx_bytes"]),
                    s(&q["dropped"]),
                    s(&q["depth"])
                ));
            }
        }
        if let Some(m) = p["stats"]["malformed"].as_object() {
            if !m.is_empty() {
                let d: Vec<String> = m.iter().map(|(k, v)| format!("{k}={}", s(v))).collect();
                parts.push(format!("malformed (switched): {}", d.join(" ")));
            }
        }
        for part in parts {
            out.push_str(&format!("  {}: {part}\n", s(&p["name"])));
        }
    }
    out
}

fn run(cli: Cli) -> Result<ExitCode> {
    let live = Live {
        socket: client::socket_path(cli.socket.as_deref()),
    };
    match cli.cmd {
        Cmd::Replay {
            scenario,
            out,
            json,
        } => {
            let sc = load(&scenario)?;
            let summary = replay::replay(&sc, &out)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                print!("{}", summary.to_text());
                println!("\noutputs written to {}", out.display());
            }
            for e in &summary.input_errors {
                eprintln!("xsw: warning: {e}");
            }
            Ok(if summary.input_errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
        Cmd::Trace {
            target,
            in_port,
            frame,
            pcap,
            index,
            cold,
            json,
        } => {
            let dir = PathBuf::from(&target);
            if dir.is_dir() {
                return trace_offline(&dir, in_port, frame, pcap, index, cold, json);
            }
            if target.contains('/') {
                bail!("{target}: no such scenario directory");
            }
            let bytes = match (frame, pcap, index) {
                (Some(hex), _, _) => parse_hex(&hex)?,
                (None, Some(path), Some(n)) => {
                    if n == 0 {
                        bail!("--index: frame numbers start at 1 (as in Wireshark)");
                    }
                    replay::read_frame(&path, n - 1)?.1
                }
                _ => bail!("give the frame with --frame HEX, or with --pcap FILE --index N"),
            };
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let v = live.call(Req::Trace {
                bridge: target,
                in_port,
                frame: hex,
            })?;
            if json {
                let mut v = v;
                if let Some(o) = v.as_object_mut() {
                    o.remove("text");
                }
                print_json(&v)?;
            } else {
                print!("{}", s(&v["text"]));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Show { bridge, json } => {
            let v = live.call(Req::Show { bridge })?;
            if json {
                print_json(&v)?;
            } else {
                print!("{}", show_text(&v));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Bridge { cmd } => {
            match cmd {
                BridgeCmd::Add {
                    name,
                    mac_aging,
                    mac_table_size,
                } => {
                    live.call(Req::BridgeAdd {
                        name: name.clone(),
                        mac_aging,
                        mac_table_size,
                    })?;
                    eprintln!("bridge {name} added");
                }
                BridgeCmd::Del { name } => {
                    live.call(Req::BridgeDel { name: name.clone() })?;
                    eprintln!("bridge {name} deleted");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Port { cmd } => match cmd {
            PortCmd::Add {
                bridge,
                name,
                interface,
                kind,
                ofport,
                vlan_mode,
                tag,
                trunks,
                mtu,
                no_host_pass,
                xdp_mode,
            } => {
                let kind = match kind {
                    TypeArg::Afxdp => PortType::Afxdp,
                    TypeArg::Internal => PortType::Internal,
                };
                if kind == PortType::Afxdp && interface.is_none() {
                    bail!("--interface is required for an afxdp port (the netdev to drive, e.g. a veth or a VM's tap)");
                }
                let afxdp = kind == PortType::Afxdp;
                let port = PortSpec {
                    name: name.clone(),
                    ofport: ofport.unwrap_or(0),
                    interface,
                    kind: Some(kind),
                    vlan_mode: vlan_mode.map(|m| match m {
                        VlanModeArg::Access => VlanMode::Access,
                        VlanModeArg::Trunk => VlanMode::Trunk,
                        VlanModeArg::NativeUntagged => VlanMode::NativeUntagged,
                        VlanModeArg::NativeTagged => VlanMode::NativeTagged,
                    }),
                    tag,
                    trunks,
                    mtu,
                    host_pass: (afxdp && no_host_pass).then_some(false),
                    xdp_mode: xdp_mode.map(|m| match m {
                        XdpModeArg::Native => XdpMode::Native,
                        XdpModeArg::Generic => XdpMode::Generic,
                        XdpModeArg::Auto => XdpMode::Auto,
                    }),
                    zero_copy: None,
                    qos: None,
                };
                let v = live.call(Req::PortAdd {
                    bridge: bridge.clone(),
                    port: Box::new(port),
                })?;
                eprintln!(
                    "port {name} added to {bridge} as ofport {}",
                    s(&v["ofport"])
                );
                Ok(ExitCode::SUCCESS)
            }
            PortCmd::Del { bridge, name } => {
                live.call(Req::PortDel {
                    bridge: bridge.clone(),
                    name: name.clone(),
                })?;
                eprintln!("port {name} deleted from {bridge}");
                Ok(ExitCode::SUCCESS)
            }
            PortCmd::Set {
                bridge,
                name,
                what: _,
                settings: s,
            } => {
                let qos = qos_spec(&s)?;
                let none = qos.is_none();
                live.call(Req::PortSet {
                    bridge: bridge.clone(),
                    name: name.clone(),
                    qos: qos.map(Box::new),
                })?;
                eprintln!(
                    "port {name} of {bridge}: {}",
                    if none { "QoS removed" } else { "QoS set" }
                );
                Ok(ExitCode::SUCCESS)
            }
            PortCmd::Stats { bridge, json } => {
                let v = live.call(Req::PortStats { bridge })?;
                if json {
                    print_json(&v)?;
                } else {
                    print!("{}", stats_text(&v));
                }
                Ok(ExitCode::SUCCESS)
            }
        },
        Cmd::Flow { cmd } => flow(&live, cmd),
        Cmd::Fdb { cmd } => match cmd {
            FdbCmd::Show { bridge, json } => {
                let v = live.call(Req::FdbShow { bridge })?;
                if json {
                    print_json(&v)?;
                } else {
                    let rows: Vec<Vec<String>> = v["entries"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .iter()
                        .map(|e| vec![s(&e["port"]), s(&e["vlan"]), s(&e["mac"]), s(&e["age"])])
                        .collect();
                    print!("{}", table(&["PORT", "VLAN", "MAC", "AGE"], &rows));
                }
                Ok(ExitCode::SUCCESS)
            }
            FdbCmd::Flush { bridge } => {
                let v = live.call(Req::FdbFlush {
                    bridge: bridge.clone(),
                })?;
                eprintln!("{bridge}: {} MAC(s) forgotten", s(&v["flushed"]));
                Ok(ExitCode::SUCCESS)
            }
        },
        Cmd::Meter { cmd } => match cmd {
            MeterCmd::Add {
                bridge,
                id,
                settings: s,
            } => {
                let mut rate = None;
                let mut burst = None;
                for (k, v) in settings(&s)? {
                    match k.as_str() {
                        "rate" => rate = Some(v),
                        "burst" => burst = Some(v),
                        _ => bail!("meter: unknown setting `{k}` (rate=, burst=)"),
                    }
                }
                let Some(rate) = rate else {
                    bail!("meter: rate= is required, e.g. rate=10M");
                };
                live.call(Req::MeterAdd {
                    bridge: bridge.clone(),
                    meter: MeterSpec { id, rate, burst },
                })?;
                eprintln!("meter {id} of {bridge} set");
                Ok(ExitCode::SUCCESS)
            }
            MeterCmd::Del { bridge, id } => {
                live.call(Req::MeterDel {
                    bridge: bridge.clone(),
                    id,
                })?;
                eprintln!("meter {id} of {bridge} deleted");
                Ok(ExitCode::SUCCESS)
            }
            MeterCmd::Show { bridge, json } => {
                let v = live.call(Req::MeterShow { bridge })?;
                if json {
                    print_json(&v)?;
                } else {
                    let rows: Vec<Vec<String>> = v["meters"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .iter()
                        .map(|m| {
                            vec![
                                s(&m["id"]),
                                xsw_datapath::qos::format_bits(m["rate"].as_u64().unwrap_or(0)),
                                xsw_datapath::qos::format_bits(m["burst"].as_u64().unwrap_or(0)),
                                s(&m["passed"]),
                                s(&m["dropped"]),
                            ]
                        })
                        .collect();
                    print!(
                        "{}",
                        table(&["METER", "RATE", "BURST", "PASSED", "DROPPED"], &rows)
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
        },
        Cmd::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "xsw", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn flow(live: &Live, cmd: FlowCmd) -> Result<ExitCode> {
    match cmd {
        FlowCmd::Add { bridge, flow, file } => {
            let v = match (flow, file) {
                (Some(f), _) => live.call(Req::FlowAdd {
                    bridge,
                    flows: vec![f],
                })?,
                (None, Some(path)) => {
                    let ff = flow_lines(&path)?;
                    live.call(Req::FlowAdd {
                        bridge,
                        flows: ff.flows.clone(),
                    })
                    .map_err(|e| ff.locate(e))?
                }
                (None, None) => bail!("give a rule, or --file FILE"),
            };
            eprintln!("{} rule(s) added", s(&v["added"]));
        }
        FlowCmd::Del {
            bridge,
            matches,
            strict,
        } => {
            let v = live.call(Req::FlowDel {
                bridge,
                matches,
                strict,
            })?;
            eprintln!("{} rule(s) deleted", s(&v["deleted"]));
        }
        FlowCmd::Replace { bridge, file } => {
            let ff = flow_lines(&file)?;
            let v = live
                .call(Req::FlowReplace {
                    bridge,
                    flows: ff.flows.clone(),
                })
                .map_err(|e| ff.locate(e))?;
            eprintln!("{} rule(s) in effect", s(&v["rules"]));
        }
        FlowCmd::Dump { bridge, json } => {
            let v = live.call(Req::FlowDump { bridge })?;
            if json {
                print_json(&v)?;
            } else {
                for f in v["flows"].as_array().cloned().unwrap_or_default() {
                    println!("{}", s(&f["dump"]));
                }
            }
        }
        FlowCmd::Check { file, scenario } => {
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("{}", file.display()))?;
            let ports = port_names(scenario.as_deref())?;
            let names = |n: &str| ports.iter().find(|(p, _)| p == n).map(|(_, o)| *o);
            let rules = xsw_datapath::spec::parse_rules(&text, &names).map_err(
                |xsw_datapath::spec::RuleFileError { line, error: e }| {
                    let src = text.lines().nth(line - 1).unwrap_or("");
                    anyhow::anyhow!(
                        "{}:{line}:{}: {}\n{}",
                        file.display(),
                        e.col(),
                        e.msg(),
                        e.render(src)
                    )
                },
            )?;
            for n in &rules {
                println!("{}", n.rule);
            }
            eprintln!("{}: {} rule(s), all valid", file.display(), rules.len());
        }
        FlowCmd::Parse { rule, scenario } => {
            let ports = port_names(scenario.as_deref())?;
            let names = |n: &str| ports.iter().find(|(p, _)| p == n).map(|(_, o)| *o);
            let r = parse_flow(&rule, &names).map_err(|e| {
                anyhow::anyhow!("column {}: {}\n{}", e.col(), e.msg(), e.render(&rule))
            })?;
            println!("{r}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::too_many_arguments)]
fn trace_offline(
    scenario: &Path,
    in_port: String,
    frame: Option<String>,
    pcap: Option<PathBuf>,
    index: Option<usize>,
    cold: bool,
    json: bool,
) -> Result<ExitCode> {
    let sc = load(scenario)?;
    let port_idx = sc.ports.iter().position(|p| p.name == in_port);
    let req = match (frame, pcap, index) {
        (Some(hex), _, _) => TraceRequest {
            in_port,
            frame: parse_hex(&hex)?,
            ts: None,
            after: None,
        },
        (None, Some(path), Some(n)) => {
            if n == 0 {
                bail!("--index: frame numbers start at 1 (as in Wireshark)");
            }
            let (ts, bytes, pos) = replay::read_frame(&path, n - 1)?;
            let own = port_idx.and_then(|i| sc.inputs[i].as_deref().map(|p| (i, p)));
            let after = match own {
                Some((i, p)) if !cold && same_file(p, &path) => Some((i, pos)),
                _ => None,
            };
            TraceRequest {
                in_port,
                frame: bytes,
                ts: Some(ts),
                after,
            }
        }
        _ => bail!("give the frame with --frame HEX, or with --pcap FILE --index N"),
    };
    let report = replay::trace(&sc, &req)?;
    if json {
        let names = |i: u16| {
            report
                .port_names
                .get(i as usize)
                .cloned()
                .unwrap_or_default()
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&TraceJson::new(&report.events, &names))?
        );
    } else {
        if report.warmup_frames > 0 {
            println!(
                "(replayed the {} frame(s) that come before it first)",
                report.warmup_frames
            );
        }
        print!("{}", report.render());
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(c) => c,
        Err(e) => {
            if let Some(ClientError::Refused(body)) = e.downcast_ref::<ClientError>() {
                eprintln!("xsw: {body}");
                if let Some(d) = &body.detail {
                    if std::io::stderr().is_terminal() {
                        eprintln!("{d}");
                    }
                }
                return ExitCode::FAILURE;
            }
            // Datapath errors already name the file and place.
            match e.downcast_ref::<Error>() {
                Some(de) => eprintln!("xsw: {de}"),
                None => eprintln!("xsw: {e:#}"),
            }
            ExitCode::FAILURE
        }
    }
}
