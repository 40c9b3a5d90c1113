//! `xswd`: the xsw switch daemon.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use xsw_control::server::{self, Absent, Server};
use xsw_control::spec::BridgeSpec;
use xsw_control::store::Store;
use xsw_live::engine::{Bridge, Device, Engine};
use xsw_live::sys;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: std::ffi::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

const AFTER_HELP: &str = "\
Example configuration (xswd.toml):

  [[bridge]]
  name = \"br0\"

  [[bridge.port]]
  name = \"vm1\"
  ofport = 1
  interface = \"tap-vm1\"

  [[bridge.port]]
  name = \"uplink\"
  ofport = 2
  interface = \"veth-up\"
  vlan_mode = \"trunk\"

Run it, then manage it with xsw:

  xswd --config xswd.toml
  xsw show
  xsw flow add br0 'priority=100,tcp,tp_dst=22,actions=drop'

State: every change made with xsw is saved under --state-dir; on the next
start xswd restores bridges, ports and rules from there, and --config is
not applied again (it declares the initial state; --reset-state applies it
afresh). Ports whose interface is missing at restore (a VM not started yet)
are kept and opened as soon as the interface appears.";

/// xswd: runs xsw's bridges on real interfaces (AF_XDP ports with an XDP
/// classifier, internal tap ports), in the foreground, logging to stderr,
/// and serves the control socket that `xsw` talks to. Stops cleanly on
/// SIGINT/SIGTERM, detaching its XDP programs.
#[derive(Parser, Debug)]
#[command(name = "xswd", version, after_help = AFTER_HELP)]
struct Args {
    /// The initial configuration: TOML, `[[bridge]]` tables with
    /// `[[bridge.port]]` tables (the help text says the rest).
    #[arg(
        long,
        short,
        help = "The initial configuration (TOML: [[bridge]] tables with [[bridge.port]] tables), \
                applied when the state directory holds no state yet. Without it and without \
                state, xswd starts with no bridges"
    )]
    config: Option<PathBuf>,
    /// Where the state is saved (state.json).
    #[arg(long, value_name = "DIR", default_value = xsw_control::server::DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Keep no state: nothing is saved or restored.
    #[arg(long, conflicts_with = "reset_state")]
    no_state: bool,
    /// Forget the saved state and start from --config (or from nothing).
    #[arg(long)]
    reset_state: bool,
    /// The control socket.
    #[arg(long, value_name = "PATH", default_value = xsw_control::proto::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Serve Prometheus metrics over HTTP on this address (e.g.
    /// 127.0.0.1:9477): GET /metrics.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    /// Write counters (ports, XDP verdicts, rules) as JSON to this file
    /// every second and at exit.
    #[arg(long, value_name = "FILE")]
    stats_file: Option<PathBuf>,
    /// Keep polling the rings for this many microseconds after the last
    /// frame before sleeping until traffic wakes the switch. Longer keeps
    /// latency low for traffic with short gaps; shorter leaves the CPU to
    /// other work sooner. An idle switch sleeps either way.
    #[arg(long, value_name = "USEC", default_value_t = 20_000)]
    busy_poll_us: u64,
}

/// Writes the stats file (atomically); says why when it cannot, once
/// until it works again (`failing` remembers).
fn write_stats(path: &Path, server: &Server, failing: &mut bool) {
    let tmp = path.with_extension("tmp");
    let r = server
        .stats_json()
        .map_err(|e| e.to_string())
        .and_then(|r| serde_json::to_value(r).map_err(|e| e.to_string()))
        .and_then(|v| serde_json::to_string_pretty(&v).map_err(|e| e.to_string()))
        .and_then(|json| std::fs::write(&tmp, json).map_err(|e| e.to_string()))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| e.to_string()));
    match r {
        Ok(()) => *failing = false,
        Err(e) if !*failing => {
            tracing::warn!("could not write the stats file {}: {e}", path.display());
            *failing = true;
        }
        Err(_) => {}
    }
}

/// Builds the bridges. With `strict`, a port that cannot be opened is an
/// error; otherwise it is left out, kept in the model and retried.
fn build(specs: &[BridgeSpec], strict: bool) -> Result<(Vec<Bridge>, Vec<Absent>)> {
    let mut bridges = Vec::new();
    let mut absent = Vec::new();
    for s in specs {
        let mut def = s.to_def().map_err(|e| anyhow!(e))?;
        let mut devs = Vec::new();
        let mut kept = Vec::new();
        for p in def.ports.drain(..) {
            match Device::open(&p) {
                Ok(d) => {
                    devs.push(d);
                    kept.push(p);
                }
                Err(e) if !strict => {
                    tracing::warn!(
                        "bridge {}: port {}: {e}; kept, and opened once its interface appears",
                        s.name,
                        p.cfg.name
                    );
                    absent.push(Absent {
                        bridge: s.name.clone(),
                        port: p.cfg.name.clone(),
                        why: e.to_string(),
                    });
                }
                Err(e) => return Err(anyhow!("bridge {}: {e}", s.name)),
            }
        }
        def.ports = kept;
        bridges.push(Bridge::from_parts(def, devs)?);
    }
    Ok((bridges, absent))
}

fn run(args: Args) -> Result<()> {
    if !xsw_live::port::netdev::is_root() {
        bail!("xswd must run as root: it attaches XDP programs and opens AF_XDP sockets");
    }
    let store = (!args.no_state).then(|| Store::new(&args.state_dir));
    if let Some(s) = &store {
        s.clean();
        if args.reset_state {
            s.reset()?;
            tracing::info!(
                "state in {} forgotten (--reset-state)",
                args.state_dir.display()
            );
        }
    }
    let restored = match &store {
        Some(s) => s.load().map_err(|e| {
            anyhow!("{e}\nthe saved state cannot be read: move the file away, or start with --reset-state")
        })?,
        None => None,
    };
    let (specs, strict) = match restored {
        Some(b) => {
            tracing::info!(
                "restored {} bridge(s) from {}",
                b.len(),
                args.state_dir.join("state.json").display()
            );
            if let Some(c) = &args.config {
                tracing::info!(
                    "{} is not applied: the saved state wins (--reset-state applies it afresh)",
                    c.display()
                );
            }
            (b, false)
        }
        None => match &args.config {
            Some(c) => (xsw_control::config::load(c)?, true),
            None => {
                tracing::info!("no bridges yet: add one with `xsw bridge add NAME`");
                (Vec::new(), true)
            }
        },
    };
    let (bridges, absent) = build(&specs, strict)?;
    let tables: Vec<_> = bridges
        .iter()
        .map(|b| (b.name().to_string(), b.tables().clone()))
        .collect();
    let mut engine = Engine::new();
    engine.spin_for = Duration::from_micros(args.busy_poll_us);
    for b in bridges {
        engine.push_bridge(b);
    }
    for line in engine.describe() {
        tracing::info!("{line}");
    }
    let handle = engine.handle()?;
    let engine_stop = Arc::new(AtomicBool::new(false));
    let es = engine_stop.clone();
    let poller = std::thread::Builder::new()
        .name("xswd-poll".into())
        .spawn(move || {
            engine.run(&es);
            engine
        })
        .context("starting the polling thread")?;

    let server = Arc::new(Server::new(specs, tables, absent, handle, store));
    if let Err(e) = server.save_now() {
        tracing::warn!("{e}");
    }
    let listener = server::bind(&args.socket).map_err(|e| anyhow!("control socket {e}"))?;
    let net_stop = Arc::new(AtomicBool::new(false));
    {
        let (s, st) = (server.clone(), net_stop.clone());
        std::thread::Builder::new()
            .name("xswd-accept".into())
            .spawn(move || server::accept_loop(s, listener, st))?;
    }
    if let Some(addr) = &args.metrics {
        let l = std::net::TcpListener::bind(addr)
            .with_context(|| format!("--metrics {addr}: cannot listen there"))?;
        tracing::info!("metrics on http://{}/metrics", l.local_addr()?);
        let (s, st) = (server.clone(), net_stop.clone());
        std::thread::Builder::new()
            .name("xswd-metrics".into())
            .spawn(move || xsw_control::metrics::serve(|| s.metrics_snapshot(), l, st))?;
    }
    tracing::info!("control socket {}", args.socket.display());
    tracing::info!("ready");

    let mut last_stats = Instant::now();
    let mut last_retry = Instant::now();
    let mut stats_failing = false;
    while !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
        if poller.is_finished() {
            break;
        }
        if last_stats.elapsed() >= Duration::from_secs(1) {
            last_stats = Instant::now();
            if let Some(p) = &args.stats_file {
                write_stats(p, &server, &mut stats_failing);
            }
        }
        if last_retry.elapsed() >= Duration::from_secs(2) {
            last_retry = Instant::now();
            server.retry_absent();
            server.sync_all_expired();
        }
    }
    tracing::info!("stopping");
    if let Some(p) = &args.stats_file {
        write_stats(p, &server, &mut stats_failing);
    }
    net_stop.store(true, Ordering::SeqCst);
    let _ = std::fs::remove_file(&args.socket);
    engine_stop.store(true, Ordering::SeqCst);
    match poller.join() {
        // Dropping the engine detaches the XDP programs and closes the taps.
        Ok(engine) => drop(engine),
        Err(_) => bail!("the polling thread failed"),
    }
    tracing::info!("stopped; XDP programs detached");
    Ok(())
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
    // The handler only stores to an atomic, which is async-signal-safe.
    for sig in [sys::SIGINT, sys::SIGTERM] {
        if let Err(e) = sys::set_signal_handler(sig, on_signal) {
            tracing::error!("installing the handler for signal {sig}: {e}");
            return ExitCode::FAILURE;
        }
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
