//! `xsw fdb`: the MAC learning table.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use xsw_control::proto::{FdbFlush, FdbShow, FdbShowReply};

use super::{table, Live};

/// `xsw fdb` subcommands.
#[derive(Subcommand, Debug)]
pub enum FdbCmd {
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

/// Runs `xsw fdb ...`.
pub fn run(live: &Live, cmd: FdbCmd) -> Result<ExitCode> {
    match cmd {
        FdbCmd::Show { bridge, json } => {
            if json {
                super::print_json(&live.call_value(FdbShow { bridge })?)?;
            } else {
                print!("{}", text(&live.call(FdbShow { bridge })?));
            }
        }
        FdbCmd::Flush { bridge } => {
            let r = live.call(FdbFlush {
                bridge: bridge.clone(),
            })?;
            eprintln!("{bridge}: {} MAC(s) forgotten", r.flushed);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The learned MACs as a table.
fn text(r: &FdbShowReply) -> String {
    let rows: Vec<Vec<String>> = r
        .entries
        .iter()
        .map(|e| {
            vec![
                e.port.clone(),
                e.vlan.to_string(),
                e.mac.clone(),
                e.age.to_string(),
            ]
        })
        .collect();
    table(&["PORT", "VLAN", "MAC", "AGE"], &rows)
}
