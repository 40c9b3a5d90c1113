//! `xsw replay`: a scenario's captures through the switch, offline.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use xsw_datapath::replay;

/// `xsw replay`'s help: what a scenario holds, what comes out.
const LONG_ABOUT: &str = "\
Run a scenario's captures through the switch, offline, and write what every port sends.

SCENARIO_DIR holds scenario.toml ([[port]] tables: name, ofport, and optionally vlan_mode, \
tag, trunks, mtu, qos; optional [bridge], [[meter]], [check]), optional flows.txt (one \
ovs-ofctl style rule per line; without it the only rule is priority=0,actions=NORMAL) and \
in/<port>.pcap (or .pcapng) for each port that receives frames. Frames are switched in \
timestamp order (ties: lower ofport first, then file order), on the captures' clock.

Simulated hosts: [[host]] tables plug smoltcp TCP/IP stacks into ports (a MAC, addresses, \
optional VLAN tag, PCP and DSCP marking) that ping, run TCP transfers, send and receive UDP, \
announce themselves and move between ports on the scenario clock; [[change]] tables add or \
delete rules at given times; [[expect]] tables state what summary.json must show. Such a \
scenario runs as one discrete-event simulation on a virtual clock: the same bytes on every \
run, with each host's results (bytes, goodput, RTTs, retransmissions, outcome) in \
summary.json and what it sent in host-<name>.pcap.

OUT_DIR gets <port>.pcap for every port (empty when the port sent nothing), summary.json and \
summary.txt (per-port counters with drops by reason, per-rule counters).

Every key of scenario.toml (type, default, range, meaning), the replay clock, QoS timing and \
the summary's fields are described in pcaps/REFERENCE.md in the xsw sources, with worked \
examples.

Exit status: 0 done; 1 the scenario could not be run; 3 done, but an input capture was \
damaged (frames before the damage were replayed).";

/// `xsw replay`: runs a scenario's captures through the switch, offline
/// (the help text is [`LONG_ABOUT`]).
#[derive(Args, Debug)]
#[command(
    about = "Run a scenario's captures through the switch, offline, and write what every port sends",
    long_about = LONG_ABOUT,
    after_help = "Example:\n  xsw replay pcaps/learning --out /tmp/learning\n  tshark -r /tmp/learning/p2.pcap"
)]
pub struct ReplayArgs {
    /// The scenario directory.
    scenario: PathBuf,
    /// Where to write the outputs (created if missing).
    #[arg(long, short)]
    out: PathBuf,
    /// Print the summary as JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs `xsw replay`.
pub fn run(a: ReplayArgs) -> Result<ExitCode> {
    let sc = super::load(&a.scenario)?;
    let summary = replay::replay(&sc, &a.out)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", summary.to_text());
        println!("\noutputs written to {}", a.out.display());
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
