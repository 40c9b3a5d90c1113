//! `xsw bridge`: create and delete bridges.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use xsw_control::proto::{BridgeAdd, BridgeDel};

use super::Live;

/// `xsw bridge` subcommands.
#[derive(Subcommand, Debug)]
pub enum BridgeCmd {
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

/// Runs `xsw bridge ...`.
pub fn run(live: &Live, cmd: BridgeCmd) -> Result<ExitCode> {
    match cmd {
        BridgeCmd::Add {
            name,
            mac_aging,
            mac_table_size,
        } => {
            live.call(BridgeAdd {
                name: name.clone(),
                mac_aging,
                mac_table_size,
            })?;
            eprintln!("bridge {name} added");
        }
        BridgeCmd::Del { name } => {
            live.call(BridgeDel { name: name.clone() })?;
            eprintln!("bridge {name} deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}
