//! `xsw`: the xsw command-line tool. Offline it replays and traces pcap
//! scenarios; online it manages a running `xswd` through its control socket.
//!
//! This file holds the top-level command line and the dispatch; each
//! command group lives in its own module under `cli/`.

mod cli;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand};

use cli::bridge::BridgeCmd;
use cli::fdb::FdbCmd;
use cli::flow::FlowCmd;
use cli::meter::MeterCmd;
use cli::port::PortCmd;
use xsw_control::client::{self, ClientError};
use xsw_datapath::Error;

const AFTER_HELP: &str = "\
Offline (no daemon, no privileges):
  xsw replay pcaps/vlan-access-trunk --out /tmp/out
  xsw test pcaps
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
    Replay(cli::replay::ReplayArgs),
    Test(cli::test::TestArgs),
    Trace(cli::trace::TraceArgs),
    Show(cli::show::ShowArgs),
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

fn run(cli: Cli) -> Result<ExitCode> {
    let live = cli::Live {
        socket: client::socket_path(cli.socket.as_deref()),
    };
    match cli.cmd {
        Cmd::Replay(a) => cli::replay::run(a),
        Cmd::Test(a) => cli::test::run(a),
        Cmd::Trace(a) => cli::trace::run(&live, a),
        Cmd::Show(a) => cli::show::run(&live, a),
        Cmd::Bridge { cmd } => cli::bridge::run(&live, cmd),
        Cmd::Port { cmd } => cli::port::run(&live, cmd),
        Cmd::Flow { cmd } => cli::flow::run(&live, cmd),
        Cmd::Fdb { cmd } => cli::fdb::run(&live, cmd),
        Cmd::Meter { cmd } => cli::meter::run(&live, cmd),
        Cmd::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "xsw", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    }
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
