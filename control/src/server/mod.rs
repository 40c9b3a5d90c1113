//! The control server inside `xswd`: answers [`crate::proto`] requests,
//! keeps the model of bridges and ports, drives the polling thread through
//! its [`EngineHandle`], and saves every accepted change.
//!
//! Changes are serialised by one lock on the model, held only by control
//! threads (the polling thread never takes it). Each change is checked
//! completely first (names, numbers, VLANs, every rule); then the expensive
//! part is done here (parsing, building a whole replacement table, opening
//! a device); then the polling thread is handed the result, which it puts
//! in place between two batches; then the state is saved.
//!
//! The work is one `impl Server` split by command group: this file holds
//! the model, the commit of a change and the dispatch ([`Server::handle`]);
//! `bridge.rs` (show, bridges, the MAC table), `port.rs`, `flow.rs`
//! (rules and their timeouts), `meter.rs` and `trace.rs` hold the
//! commands; `conn.rs` the socket and its connections.

mod bridge;
mod conn;
mod flow;
mod meter;
mod port;
mod trace;

pub use conn::{accept_loop, bind};

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Mutex, MutexGuard};

use xsw_datapath::table::FlowTables;
use xsw_live::engine::{BridgeSnapshot, CallError, EngineHandle, EngineStats};

use crate::metrics::MetricsSnapshot;
use crate::proto::{
    AnyReply, BridgeReport, Code, Command, EngineInfo, ErrorBody, HelloReply, MetricsReply,
    StatsReport, VERSION,
};
use crate::spec::BridgeSpec;
use crate::store::Store;

/// Bridge `name` in `bridges`, to change it.
fn bridge_in<'a>(bridges: &'a mut [BridgeSpec], name: &str) -> Option<&'a mut BridgeSpec> {
    bridges.iter_mut().find(|b| b.name == name)
}

/// Bridges and ports as declared, a copy of each bridge's flow tables
/// (the same rules as the polling thread's, without live counters), and
/// ports whose device is not open.
#[derive(Debug, Default)]
struct Model {
    bridges: Vec<BridgeSpec>,
    shadow: HashMap<String, FlowTables>,
    /// (bridge, port) → why its device is not open (it is retried).
    absent: HashMap<(String, String), String>,
}

impl Model {
    fn bridge(&self, name: &str) -> Result<&BridgeSpec, ErrorBody> {
        self.bridges
            .iter()
            .find(|b| b.name == name)
            .ok_or_else(|| not_found_bridge(name))
    }
}

fn not_found_bridge(name: &str) -> ErrorBody {
    ErrorBody::new(
        Code::NotFound,
        format!("no bridge named {name} (xsw show lists them)"),
    )
}

fn internal(msg: impl std::fmt::Display) -> ErrorBody {
    ErrorBody::new(Code::Internal, msg.to_string())
}

/// A port whose device could not be opened (it is retried).
#[derive(Debug, Clone)]
pub struct Absent {
    /// Bridge name.
    pub bridge: String,
    /// Port name.
    pub port: String,
    /// Why it is not open.
    pub why: String,
}

/// The server.
#[derive(Debug)]
pub struct Server {
    model: Mutex<Model>,
    engine: EngineHandle,
    store: Option<Store>,
    connections: AtomicUsize,
}

impl Server {
    /// A server over a running engine that already holds `bridges` with
    /// these flow tables (copies of the engine's, by bridge name); ports
    /// listed in `absent` are not open yet.
    pub fn new(
        bridges: Vec<BridgeSpec>,
        tables: Vec<(String, FlowTables)>,
        absent: Vec<Absent>,
        engine: EngineHandle,
        store: Option<Store>,
    ) -> Server {
        Server {
            model: Mutex::new(Model {
                bridges,
                shadow: tables.into_iter().collect(),
                absent: absent
                    .into_iter()
                    .map(|a| ((a.bridge, a.port), a.why))
                    .collect(),
            }),
            engine,
            store,
            connections: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Model> {
        // A thread that panicked while holding the lock left the model as
        // it was before its change (changes are made after all checks).
        self.model.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `bridges` to the state directory (when the daemon keeps one).
    fn save(&self, bridges: &[BridgeSpec]) -> Result<(), ErrorBody> {
        match &self.store {
            Some(s) => s
                .save(bridges)
                .map_err(|e| internal(format!("could not save the state: {e}"))),
            None => Ok(()),
        }
    }

    /// Saves the current model (at start, so the state directory holds what runs).
    pub fn save_now(&self) -> Result<(), ErrorBody> {
        let m = self.lock();
        self.save(&m.bridges)
    }

    /// Makes a change: `edit` changes a copy of the bridges, which is saved;
    /// then the engine carries out `op` (when there is one). If the engine
    /// refuses, the saved state goes back to what it was and the model is
    /// unchanged; otherwise the copy becomes the model.
    fn commit(
        &self,
        m: &mut Model,
        edit: impl FnOnce(&mut Vec<BridgeSpec>),
        op: Option<impl FnOnce(&EngineHandle) -> Result<(), CallError>>,
    ) -> Result<(), ErrorBody> {
        let mut next = m.bridges.clone();
        edit(&mut next);
        self.save(&next)?;
        match op.map(|op| op(&self.engine).map_err(internal)).transpose() {
            Ok(_) => {}
            Err(e) => {
                if let Err(se) = self.save(&m.bridges) {
                    tracing::error!(
                        "the engine refused a change ({e}) and the saved state could not be put back ({se}): it shows the change until the next save"
                    );
                }
                return Err(e);
            }
        }
        m.bridges = next;
        Ok(())
    }

    fn snapshot(
        &self,
        bridge: Option<&str>,
        rules: bool,
    ) -> Result<(Vec<BridgeSnapshot>, EngineStats), ErrorBody> {
        self.engine.snapshot(bridge, rules).map_err(internal)
    }

    /// Answers one request.
    pub fn handle(&self, cmd: Command) -> Result<AnyReply, ErrorBody> {
        match cmd {
            Command::Hello => Ok(HelloReply {
                version: VERSION,
                daemon: format!("xswd {}", env!("CARGO_PKG_VERSION")),
                pid: std::process::id(),
            }
            .into()),
            Command::Show(r) => self.show(r.bridge.as_deref()).map(Into::into),
            Command::BridgeAdd(r) => self
                .bridge_add(&r.name, r.mac_aging, r.mac_table_size)
                .map(Into::into),
            Command::BridgeDel(r) => self.bridge_del(&r.name).map(Into::into),
            Command::PortAdd(r) => self.port_add(&r.bridge, *r.port).map(Into::into),
            Command::PortDel(r) => self.port_del(&r.bridge, &r.name).map(Into::into),
            Command::PortSet(r) => self
                .port_set(&r.bridge, &r.name, r.qos.map(|q| *q))
                .map(Into::into),
            Command::MeterAdd(r) => self.meter_add(&r.bridge, r.meter).map(Into::into),
            Command::MeterDel(r) => self.meter_del(&r.bridge, r.id).map(Into::into),
            Command::MeterShow(r) => self.meter_show(&r.bridge).map(Into::into),
            Command::PortStats(r) => self.port_stats(&r.bridge).map(Into::into),
            Command::FlowAdd(r) => self.flow_add(&r.bridge, &r.flows).map(Into::into),
            Command::FlowDel(r) => self
                .flow_del(&r.bridge, r.matches.as_deref(), r.strict)
                .map(Into::into),
            Command::FlowReplace(r) => self.flow_replace(&r.bridge, &r.flows).map(Into::into),
            Command::FlowDump(r) => self.flow_dump(&r.bridge).map(Into::into),
            Command::FdbShow(r) => self.fdb_show(&r.bridge).map(Into::into),
            Command::FdbFlush(r) => self.fdb_flush(&r.bridge).map(Into::into),
            Command::Trace(r) => self.trace(&r.bridge, &r.in_port, &r.frame).map(Into::into),
            Command::Metrics => {
                let snap = self.metrics_snapshot()?;
                Ok(MetricsReply {
                    text: crate::metrics::render(&snap),
                }
                .into())
            }
        }
    }

    /// Every bridge's counters and the polling thread's, for metrics.
    pub fn metrics_snapshot(&self) -> Result<MetricsSnapshot, ErrorBody> {
        let (bridges, engine) = self.snapshot(None, false)?;
        Ok(MetricsSnapshot { bridges, engine })
    }

    /// A report of every bridge (for `--stats-file`).
    pub fn stats_json(&self) -> Result<StatsReport, ErrorBody> {
        let (snaps, stats) = self.snapshot(None, true)?;
        let bridges: Vec<_> = snaps.iter().map(BridgeReport::from).collect();
        Ok(StatsReport {
            bridges,
            engine: EngineInfo::from(&stats),
        })
    }
}

/// The default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/xsw";
