//! Speed of the host simulation: simulated TCP payload carried per second
//! of wall time, on one core, outputs (port and host captures, summaries)
//! written as `xsw replay` writes them.
//!
//! - `tcp_200MB`: one TCP transfer of 200 MB between two hosts with 10
//!   Gbit/s NICs through two ports without QoS (NORMAL switching);
//! - `tcp_drr_2flows`: pcaps/host-tcp-drr (two flows for 6 simulated
//!   seconds through a 10 Mbit/s DRR port): light load, so simulated time
//!   runs far faster than wall time.
//!
//! Each case runs 5 times; the median is printed with the simulated time
//! and the ratio of simulated to wall time.
//!
//! Run: `cargo bench -p xsw-datapath --bench sim`

use std::path::{Path, PathBuf};
use std::time::Instant;

use xsw_datapath::replay::{replay, Scenario};
use xsw_datapath::sim::ActionResult;

const TCP_200MB: &str = r#"
[[port]]
name = "p1"
ofport = 1
[[port]]
name = "p2"
ofport = 2
[[host]]
name = "h1"
port = "p1"
mac = "02:00:00:00:00:01"
ipv4 = "198.18.0.1/24"
run = [{ do = "tcp", connect = "h2:5001", bytes = 200_000_000 }]
[[host]]
name = "h2"
port = "p2"
mac = "02:00:00:00:00:02"
ipv4 = "198.18.0.2/24"
run = [{ do = "tcp", listen = 5001 }]
"#;

fn run(name: &str, dir: &Path) {
    let sc = match Scenario::load(dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::exit(1);
        }
    };
    let out = std::env::temp_dir().join(format!("xsw-sim-bench-{}", std::process::id()));
    let mut rows = Vec::new();
    for _ in 0..5 {
        let _ = std::fs::remove_dir_all(&out);
        let t0 = Instant::now();
        let s = match replay(&sc, &out) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{name}: {e}");
                std::process::exit(1);
            }
        };
        let wall = t0.elapsed().as_secs_f64();
        let payload: u64 = s
            .hosts
            .iter()
            .flat_map(|h| &h.actions)
            .map(|a| match a {
                ActionResult::TcpListen { connections, .. } => {
                    connections.iter().map(|c| c.bytes).sum()
                }
                _ => 0,
            })
            .sum();
        let simulated = s.sim_end_us.unwrap_or(0) as f64 / 1e6;
        rows.push((wall, payload, simulated));
    }
    let _ = std::fs::remove_dir_all(&out);
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (wall, payload, simulated) = rows[rows.len() / 2];
    println!(
        "{name:<16} wall {wall:.3} s (median of 5), simulated {simulated:.3} s, TCP payload {:.1} MB: {:.2} Gbit/s of simulated payload per wall second, simulated/wall time {:.1}x",
        payload as f64 / 1e6,
        payload as f64 * 8.0 / wall / 1e9,
        simulated / wall
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let want = |n: &str| args.is_empty() || args.iter().any(|a| n.contains(a.as_str()));
    let tmp = std::env::temp_dir().join(format!("xsw-sim-bench-sc-{}", std::process::id()));
    if want("tcp_200MB") {
        let _ = std::fs::create_dir_all(&tmp);
        if std::fs::write(tmp.join("scenario.toml"), TCP_200MB).is_ok() {
            run("tcp_200MB", &tmp);
        }
        let _ = std::fs::remove_dir_all(&tmp);
    }
    if want("tcp_drr_2flows") {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../pcaps/host-tcp-drr");
        run("tcp_drr_2flows", &dir);
    }
}
