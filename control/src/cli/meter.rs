//! `xsw meter`: policers that rules send frames through.

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Subcommand;

use xsw_control::proto::{MeterAdd, MeterDel, MeterShow, MeterShowReply};
use xsw_control::spec::MeterSpec;
use xsw_datapath::qos::format_bits;

use super::{table, Live};

/// `xsw meter` subcommands.
#[derive(Subcommand, Debug)]
pub enum MeterCmd {
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

/// Runs `xsw meter ...`.
pub fn run(live: &Live, cmd: MeterCmd) -> Result<ExitCode> {
    match cmd {
        MeterCmd::Add {
            bridge,
            id,
            settings,
        } => {
            let mut rate = None;
            let mut burst = None;
            for (k, v) in super::settings(&settings)? {
                match k.as_str() {
                    "rate" => rate = Some(v),
                    "burst" => burst = Some(v),
                    _ => bail!("meter: unknown setting `{k}` (rate=, burst=)"),
                }
            }
            let Some(rate) = rate else {
                bail!("meter: rate= is required, e.g. rate=10M");
            };
            live.call(MeterAdd {
                bridge: bridge.clone(),
                meter: MeterSpec { id, rate, burst },
            })?;
            eprintln!("meter {id} of {bridge} set");
        }
        MeterCmd::Del { bridge, id } => {
            live.call(MeterDel {
                bridge: bridge.clone(),
                id,
            })?;
            eprintln!("meter {id} of {bridge} deleted");
        }
        MeterCmd::Show { bridge, json } => {
            if json {
                super::print_json(&live.call_value(MeterShow { bridge })?)?;
            } else {
                print!("{}", text(&live.call(MeterShow { bridge })?));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Meters as a table.
fn text(r: &MeterShowReply) -> String {
    let rows: Vec<Vec<String>> = r
        .meters
        .iter()
        .map(|m| {
            vec![
                m.id.to_string(),
                format_bits(m.rate),
                format_bits(m.burst),
                m.passed.to_string(),
                m.dropped.to_string(),
            ]
        })
        .collect();
    table(&["METER", "RATE", "BURST", "PASSED", "DROPPED"], &rows)
}
