//! `xsw flow`: rules on a running bridge, and offline checks of rules.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Subcommand;

use xsw_control::client::ClientError;
use xsw_control::proto::{FlowAdd, FlowDel, FlowDump, FlowReplace};
use xsw_datapath::flow::parse_flow;
use xsw_datapath::spec;

use super::Live;

/// `xsw flow` subcommands.
#[derive(Subcommand, Debug)]
pub enum FlowCmd {
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

/// Runs `xsw flow ...`.
pub fn run(live: &Live, cmd: FlowCmd) -> Result<ExitCode> {
    match cmd {
        FlowCmd::Add { bridge, flow, file } => {
            let r = match (flow, file) {
                (Some(f), _) => live.call(FlowAdd {
                    bridge,
                    flows: vec![f],
                })?,
                (None, Some(path)) => {
                    let ff = flow_lines(&path)?;
                    live.call(FlowAdd {
                        bridge,
                        flows: ff.flows.clone(),
                    })
                    .map_err(|e| ff.locate(e))?
                }
                (None, None) => bail!("give a rule, or --file FILE"),
            };
            eprintln!("{} rule(s) added", r.added);
        }
        FlowCmd::Del {
            bridge,
            matches,
            strict,
        } => {
            let r = live.call(FlowDel {
                bridge,
                matches,
                strict,
            })?;
            eprintln!("{} rule(s) deleted", r.deleted);
        }
        FlowCmd::Replace { bridge, file } => {
            let ff = flow_lines(&file)?;
            let r = live
                .call(FlowReplace {
                    bridge,
                    flows: ff.flows.clone(),
                })
                .map_err(|e| ff.locate(e))?;
            eprintln!("{} rule(s) in effect", r.rules);
        }
        FlowCmd::Dump { bridge, json } => {
            if json {
                super::print_json(&live.call_value(FlowDump { bridge })?)?;
            } else {
                for f in &live.call(FlowDump { bridge })?.flows {
                    println!("{}", f.dump);
                }
            }
        }
        FlowCmd::Check { file, scenario } => {
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("{}", file.display()))?;
            let ports = super::port_names(scenario.as_deref())?;
            let names = |n: &str| ports.iter().find(|(p, _)| p == n).map(|(_, o)| *o);
            let rules = spec::parse_rules(&text, &names).map_err(
                |spec::RuleFileError { line, error: e }| {
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
            let ports = super::port_names(scenario.as_deref())?;
            let names = |n: &str| ports.iter().find(|(p, _)| p == n).map(|(_, o)| *o);
            let r = parse_flow(&rule, &names).map_err(|e| {
                anyhow::anyhow!("column {}: {}\n{}", e.col(), e.msg(), e.render(&rule))
            })?;
            println!("{r}");
        }
    }
    Ok(ExitCode::SUCCESS)
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
    /// Locates a refusal about one of the file's rules: its `where` becomes
    /// FILE:LINE:COL, and it gains `file` and `line`.
    fn locate(&self, e: anyhow::Error) -> anyhow::Error {
        let Some(ClientError::Refused(body)) = e.downcast_ref::<ClientError>() else {
            return e;
        };
        let (Some(n), Some(col)) = (body.rule, body.column) else {
            return e;
        };
        let Some(&line) = self.lines.get((n as usize).wrapping_sub(1)) else {
            return e;
        };
        let mut body = body.clone();
        let file = self.path.display().to_string();
        body.place = Some(format!("{file}:{line}:{col}"));
        body.file = Some(file.into());
        body.line = u32::try_from(line).ok();
        ClientError::Refused(body).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xsw_control::proto::{Code, ErrorBody};

    fn file() -> FlowFile {
        FlowFile {
            path: PathBuf::from("x.flows"),
            flows: vec!["a".into(), "b".into()],
            lines: vec![2, 5],
        }
    }

    fn place(e: anyhow::Error) -> Option<String> {
        match e.downcast_ref::<ClientError>() {
            Some(ClientError::Refused(b)) => b.place.clone(),
            _ => None,
        }
    }

    #[test]
    fn refusals_about_a_rule_point_into_the_file() {
        let body = ErrorBody::new(Code::BadFlow, "bad")
            .at("flow 2 of 2, column 7")
            .in_rule(Some(2), 7);
        let e = file().locate(ClientError::Refused(Box::new(body)).into());
        assert_eq!(place(e).as_deref(), Some("x.flows:5:7"));
        // Not about a rule: left as it is.
        let body = ErrorBody::new(Code::NotFound, "no bridge").at("bridge");
        let e = file().locate(ClientError::Refused(Box::new(body)).into());
        assert_eq!(place(e).as_deref(), Some("bridge"));
        // A rule the file does not have: left as it is.
        let body = ErrorBody::new(Code::BadFlow, "bad")
            .at("flow 3 of 3, column 1")
            .in_rule(Some(3), 1);
        let e = file().locate(ClientError::Refused(Box::new(body)).into());
        assert_eq!(place(e).as_deref(), Some("flow 3 of 3, column 1"));
    }
}
