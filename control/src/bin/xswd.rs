//! `xswd`: the xsw switch daemon.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Parser;
use xsw_datapath::engine::Engine;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// xswd: runs xsw's bridges on real interfaces (AF_XDP ports with an XDP
/// classifier, internal tap ports), in the foreground, logging to stderr.
/// Stops cleanly on SIGINT/SIGTERM, detaching its XDP programs.
#[derive(Parser, Debug)]
#[command(
    name = "xswd",
    version,
    after_help = "Example configuration (xswd.toml):\n\n  [[bridge]]\n  name = \"br0\"\n\n  [[bridge.port]]\n  name = \"vm1\"\n  ofport = 1\n  interface = \"tap-vm1\"\n\n  [[bridge.port]]\n  name = \"uplink\"\n  ofport = 2\n  interface = \"veth-up\"\n  vlan_mode = \"trunk\"\n\nRun: xswd --config xswd.toml"
)]
struct Args {
    /// The configuration file (TOML: [[bridge]] tables with [[bridge.port]] tables).
    #[arg(long, short)]
    config: PathBuf,
    /// Write counters (ports, XDP verdicts, rules) as JSON to this file
    /// every second and at exit.
    #[arg(long)]
    stats_file: Option<PathBuf>,
    /// Keep polling the rings for this many microseconds after the last
    /// frame before sleeping until traffic wakes the switch. Longer keeps
    /// latency low for traffic with short gaps; shorter leaves the CPU to
    /// other work sooner. An idle switch sleeps either way.
    #[arg(long, value_name = "USEC", default_value_t = 20_000)]
    busy_poll_us: u64,
}

fn write_stats(path: &PathBuf, engine: &Engine) {
    let tmp = path.with_extension("tmp");
    if let Ok(json) = serde_json::to_string_pretty(&engine.report()) {
        if std::fs::write(&tmp, json).is_ok() {
            let _ = std::fs::rename(&tmp, path);
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("XSW_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let defs = match xsw_control::config::load(&args.config) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if !xsw_datapath::port::netdev::is_root() {
        tracing::error!("xswd must run as root: it attaches XDP programs and opens AF_XDP sockets");
        return ExitCode::FAILURE;
    }
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe; the function pointer is valid for the whole
        // program.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
    let mut engine = match Engine::start(defs) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    engine.spin_for = std::time::Duration::from_micros(args.busy_poll_us);
    for line in engine.describe() {
        tracing::info!("{line}");
    }
    tracing::info!("ready");
    let stats = args.stats_file.clone();
    engine.run_with(&STOP, |e| {
        if let Some(p) = &stats {
            write_stats(p, e);
        }
    });
    drop(engine);
    tracing::info!("stopped; XDP programs detached");
    ExitCode::SUCCESS
}
