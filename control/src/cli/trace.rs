//! `xsw trace`: what every stage decides for one frame, offline on a
//! scenario or live on a bridge of the running `xswd`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;

use xsw_control::proto::Trace;
use xsw_datapath::replay::{self, TraceRequest};

use super::Live;

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
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  xsw trace pcaps/learning --in-port p2 --pcap pcaps/learning/in/p2.pcap --index 1\n  xsw trace pcaps/learning --in-port p1 --frame ffffffffffff02000000000108060001...\n  xsw trace br0 --in-port vm1 --frame 'ff ff ff ff ff ff 02 00 00 00 00 01 08 06 ...'"
)]
pub struct TraceArgs {
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
}

/// Runs `xsw trace`: offline when the target is a directory, else live.
pub fn run(live: &Live, a: TraceArgs) -> Result<ExitCode> {
    let dir = PathBuf::from(&a.target);
    if dir.is_dir() {
        return offline(&dir, a);
    }
    if a.target.contains('/') {
        bail!("{}: no such scenario directory", a.target);
    }
    let bytes = match (a.frame, a.pcap, a.index) {
        (Some(hex), _, _) => super::parse_hex(&hex)?,
        (None, Some(path), Some(n)) => {
            if n == 0 {
                bail!("--index: frame numbers start at 1 (as in Wireshark)");
            }
            replay::read_frame(&path, n - 1)?.data
        }
        _ => bail!("give the frame with --frame HEX, or with --pcap FILE --index N"),
    };
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let req = Trace {
        bridge: a.target,
        in_port: a.in_port,
        frame: hex,
    };
    if a.json {
        // The reply as the daemon wrote it, without the text.
        let mut v = live.call_value(req)?;
        if let Some(o) = v.as_object_mut() {
            o.remove("text");
        }
        super::print_json(&v)?;
    } else {
        print!("{}", live.call(req)?.text);
    }
    Ok(ExitCode::SUCCESS)
}

/// Traces on a scenario.
fn offline(scenario: &Path, a: TraceArgs) -> Result<ExitCode> {
    let sc = super::load(scenario)?;
    let in_port = a.in_port;
    let port_idx = sc.ports.iter().position(|p| p.name == in_port);
    let req = match (a.frame, a.pcap, a.index) {
        (Some(hex), _, _) => TraceRequest {
            in_port,
            frame: super::parse_hex(&hex)?,
            ts: None,
            after: None,
        },
        (None, Some(path), Some(n)) => {
            if n == 0 {
                bail!("--index: frame numbers start at 1 (as in Wireshark)");
            }
            let replay::CapturedFrame {
                ts,
                data: bytes,
                delivered: pos,
            } = replay::read_frame(&path, n - 1)?;
            let own = port_idx.and_then(|i| sc.inputs[i].as_deref().map(|p| (i, p)));
            let after = match own {
                Some((i, p)) if !a.cold && same_file(p, &path) => Some(replay::InputPos {
                    port: i,
                    index: pos,
                }),
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
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report.json())?);
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

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}
