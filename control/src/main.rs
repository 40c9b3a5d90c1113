//! `xsw`: the xsw command-line tool.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use xsw_datapath::flow::{parse_flow, FlowError};
use xsw_datapath::replay::{self, Scenario, TraceRequest};
use xsw_datapath::trace::TraceJson;
use xsw_datapath::Error;

const AFTER_HELP: &str = "\
Examples:
  xsw replay pcaps/vlan-access-trunk --out /tmp/out
  xsw trace pcaps/vlan-access-trunk --in-port trunk --pcap pcaps/vlan-access-trunk/in/trunk.pcap --index 2
  xsw flow check pcaps/multi-table/flows.txt
  xsw flow parse 'tcp,nw_dst=198.18.0.0/24,tp_dst=80,actions=output:2'";

/// xsw: a userspace virtual switch (OpenFlow tables, NORMAL learning switch,
/// VLANs) that runs on AF_XDP ports, or offline on pcap files.
#[derive(Parser, Debug)]
#[command(name = "xsw", version, after_help = AFTER_HELP)]
struct Cli {
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
    /// With --pcap and --index, the frame is taken from a capture. When the
    /// capture is the scenario's own input for --in-port, the frames the
    /// replay handles before it are replayed first, so the MAC table and
    /// counters are as they were in the replay (use --cold to skip that).
    #[command(
        after_help = "Examples:\n  xsw trace pcaps/learning --in-port p2 --pcap pcaps/learning/in/p2.pcap --index 1\n  xsw trace pcaps/learning --in-port p1 --frame ffffffffffff02000000000108060001..."
    )]
    Trace {
        /// The scenario directory.
        scenario: PathBuf,
        /// Port the frame arrives on (its name in scenario.toml).
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
        /// Trace against the scenario's initial state.
        #[arg(long)]
        cold: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check or normalise flow rules (ovs-ofctl add-flow syntax).
    Flow {
        #[command(subcommand)]
        cmd: FlowCmd,
    },
}

#[derive(Subcommand, Debug)]
enum FlowCmd {
    /// Check a flows file; prints each rule in normal form, or the first
    /// error with its line and column.
    Check {
        /// The file (one rule per line, `#` comments).
        file: PathBuf,
        /// Resolve port names (in_port=NAME, output:NAME) with this scenario's ports.
        #[arg(long)]
        scenario: Option<PathBuf>,
    },
    /// Parse one rule and print it in normal form (as dump-flows would).
    Parse {
        /// The rule, e.g. 'priority=10,udp,tp_dst=53,actions=output:2'.
        rule: String,
        /// Resolve port names with this scenario's ports.
        #[arg(long)]
        scenario: Option<PathBuf>,
    },
}

fn parse_hex(s: &str) -> Result<Vec<u8>> {
    let mut digits = Vec::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_ascii_whitespace() || c == ':' {
            continue;
        }
        match c.to_digit(16) {
            Some(d) => digits.push(d as u8),
            None => bail!("--frame: `{c}` at position {} is not a hex digit", i + 1),
        }
    }
    if digits.len() % 2 != 0 {
        bail!(
            "--frame: odd number of hex digits ({}): each byte needs two",
            digits.len()
        );
    }
    Ok(digits.chunks(2).map(|p| (p[0] << 4) | p[1]).collect())
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

fn run(cli: Cli) -> Result<ExitCode> {
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
            scenario,
            in_port,
            frame,
            pcap,
            index,
            cold,
            json,
        } => {
            let sc = load(&scenario)?;
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
        Cmd::Flow { cmd } => match cmd {
            FlowCmd::Check { file, scenario } => {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("{}", file.display()))?;
                let ports = port_names(scenario.as_deref())?;
                let names = |n: &str| ports.iter().find(|(p, _)| p == n).map(|(_, o)| *o);
                let rules = replay::parse_rules(&text, &names).map_err(
                    |(line, e): (usize, FlowError)| {
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
                for (_, r) in &rules {
                    println!("{r}");
                }
                eprintln!("{}: {} rule(s), all valid", file.display(), rules.len());
                Ok(ExitCode::SUCCESS)
            }
            FlowCmd::Parse { rule, scenario } => {
                let ports = port_names(scenario.as_deref())?;
                let names = |n: &str| ports.iter().find(|(p, _)| p == n).map(|(_, o)| *o);
                let r = parse_flow(&rule, &names).map_err(|e| {
                    anyhow::anyhow!("column {}: {}\n{}", e.col(), e.msg(), e.render(&rule))
                })?;
                println!("{r}");
                Ok(ExitCode::SUCCESS)
            }
        },
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(c) => c,
        Err(e) => {
            // Datapath errors already name the file and place.
            match e.downcast_ref::<Error>() {
                Some(de) => eprintln!("xsw: {de}"),
                None => eprintln!("xsw: {e:#}"),
            }
            ExitCode::FAILURE
        }
    }
}
