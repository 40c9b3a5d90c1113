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

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use xsw_datapath::clock::{Clock, MonotonicClock};
use xsw_datapath::flow::{parse_match_spec, Rule};
use xsw_datapath::spec::MeterDef;
use xsw_datapath::table::FlowTables;
use xsw_datapath::trace::TraceJson;
use xsw_live::engine::{BridgeSnapshot, CallError, Device, EngineHandle, EngineStats};

use crate::metrics::MetricsSnapshot;
use crate::proto::{
    parse_hex, AnyReply, BridgeInfo, BridgeReport, Code, Command, Done, EngineInfo, ErrorBody,
    FdbShowReply, FlowAddReply, FlowDelReply, FlowDumpReply, FlowReplaceReply, HelloReply,
    MeterInfo, MeterShowReply, MetricsReply, PortAddReply, PortInfo, PortStatsReply, Request,
    Response, ShowReply, StatsReport, TraceReply, MAX_LINE, VERSION,
};
use crate::spec::{check_name, BridgeSpec, PortSpec};
use crate::store::Store;

/// Bridges and ports as declared, a copy of each bridge's flow tables
/// (the same rules as the polling thread's, without live counters), and
/// ports whose device is not open.
/// Bridge `name` in `bridges`, to change it.
fn bridge_in<'a>(bridges: &'a mut [BridgeSpec], name: &str) -> Option<&'a mut BridgeSpec> {
    bridges.iter_mut().find(|b| b.name == name)
}

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

/// Removes from the model's tables rules the polling thread removed by
/// timeouts (each identified by its match and install time).
fn forget_expired(m: &mut Model, bridge: &str, gone: &[(Rule, xsw_datapath::Timestamp)]) -> usize {
    let Some(t) = m.shadow.get_mut(bridge) else {
        return 0;
    };
    gone.iter().filter(|(r, at)| t.remove_exact(r, *at)).count()
}

impl Model {
    /// Puts every bridge's rules, as text, into its spec (for saving).
    fn refresh_flows(&mut self) {
        for b in &mut self.bridges {
            if let Some(t) = self.shadow.get(&b.name) {
                b.flows = Some(flow_text(t));
            }
        }
    }
}

/// Rules as text, in dump order.
fn flow_text(t: &FlowTables) -> Vec<String> {
    t.iter_sorted()
        .iter()
        .map(|(_, r)| r.rule.to_string())
        .collect()
}

/// Packet buffers for a port's QoS queues, made here rather than on the
/// polling thread: as many as its queues may hold beyond what `before` had.
fn qos_buffers(
    cfg: &xsw_datapath::pipeline::PortConfig,
    before: Option<&xsw_datapath::qos::QosConfig>,
) -> Vec<xsw_datapath::packet::PacketBuf> {
    let want = cfg.qos.as_ref().map_or(0, |q| q.buffers());
    let had = before.map_or(0, |q| q.buffers());
    (0..want.saturating_sub(had))
        .map(|_| xsw_datapath::packet::PacketBuf::new())
        .collect()
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

/// Most connections served at once.
const MAX_CONNECTIONS: usize = 256;

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
            Command::MeterShow(crate::proto::MeterShow { bridge }) => {
                self.lock().bridge(&bridge)?;
                let (snaps, _) = self.snapshot(Some(&bridge), false)?;
                let meters: Vec<MeterInfo> = snaps
                    .first()
                    .map(|s| {
                        s.meters
                            .iter()
                            .map(|m| MeterInfo {
                                id: m.id,
                                rate: m.rate,
                                burst: m.burst,
                                passed: m.passed,
                                dropped: m.dropped,
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Ok(MeterShowReply { meters }.into())
            }
            Command::PortStats(crate::proto::PortStats { bridge }) => {
                self.lock().bridge(&bridge)?;
                let (snaps, _) = self.snapshot(Some(&bridge), false)?;
                let ports = snaps
                    .first()
                    .map(|s| s.ports.iter().map(Into::into).collect())
                    .unwrap_or_default();
                Ok(PortStatsReply { ports }.into())
            }
            Command::FlowAdd(r) => self.flow_add(&r.bridge, &r.flows).map(Into::into),
            Command::FlowDel(r) => self
                .flow_del(&r.bridge, r.matches.as_deref(), r.strict)
                .map(Into::into),
            Command::FlowReplace(r) => self.flow_replace(&r.bridge, &r.flows).map(Into::into),
            Command::FlowDump(crate::proto::FlowDump { bridge }) => {
                // Held through the snapshot: a replace (swap, then counters
                // carried over) is never seen half done.
                let m = self.lock();
                m.bridge(&bridge)?;
                let (snaps, _) = self.snapshot(Some(&bridge), true)?;
                drop(m);
                let s = snaps.first().ok_or_else(|| not_found_bridge(&bridge))?;
                let flows: Vec<_> = s
                    .rules
                    .iter()
                    .flatten()
                    .map(|r| r.report(s.at).into())
                    .collect();
                Ok(FlowDumpReply { flows }.into())
            }
            Command::FdbShow(crate::proto::FdbShow { bridge }) => {
                self.lock().bridge(&bridge)?;
                let rows = self.engine.fdb(&bridge).map_err(internal)?;
                Ok(FdbShowReply {
                    entries: rows.into_iter().map(Into::into).collect(),
                }
                .into())
            }
            Command::FdbFlush(crate::proto::FdbFlush { bridge }) => {
                let _m = self.lock();
                _m.bridge(&bridge)?;
                let n = self.engine.flush_fdb(&bridge).map_err(internal)?;
                Ok(crate::proto::FdbFlushReply { flushed: n }.into())
            }
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

    fn show(&self, bridge: Option<&str>) -> Result<ShowReply, ErrorBody> {
        let m = self.lock();
        if let Some(b) = bridge {
            m.bridge(b)?;
        }
        let (snaps, stats) = self.snapshot(bridge, false)?;
        let mut out = Vec::new();
        for b in m
            .bridges
            .iter()
            .filter(|b| bridge.is_none_or(|n| n == b.name))
        {
            let snap = snaps.iter().find(|s| s.name == b.name);
            let ports: Vec<PortInfo> = b
                .ports
                .iter()
                .map(|p| {
                    let live = snap.and_then(|s| s.ports.iter().find(|x| x.name == p.name));
                    let absent = m.absent.get(&(b.name.clone(), p.name.clone()));
                    PortInfo {
                        name: p.name.clone(),
                        ofport: p.ofport,
                        interface: p.iface().to_string(),
                        kind: p.port_type().name().to_string(),
                        vlan: p.vlan_text(),
                        vlan_mode: p.vlan_mode,
                        tag: p.tag,
                        trunks: p.trunks.clone(),
                        mtu: p.mtu,
                        qos: p.qos.clone(),
                        xdp_mode: live.and_then(|l| l.xdp_mode).map(str::to_string),
                        device: live.map(|l| l.device.clone()),
                        state: match (live, absent) {
                            (Some(l), _) if l.up => "up".to_string(),
                            (Some(_), _) => "down (device gone)".to_string(),
                            (None, Some(why)) => format!("not open: {why}"),
                            (None, None) => "not open".to_string(),
                        },
                    }
                })
                .collect();
            out.push(BridgeInfo {
                name: b.name.clone(),
                mac_aging: b.options().map(|o| o.mac_aging_secs).unwrap_or_default(),
                mac_table_size: b.options().map(|o| o.mac_max_entries).unwrap_or_default(),
                ports,
                flows: snap.map_or(0, |s| s.n_rules),
                meters: b.meters.clone(),
                mac_entries: snap.map_or(0, |s| s.mac_entries),
            });
        }
        Ok(ShowReply {
            bridges: out,
            engine: EngineInfo::from(&stats),
        })
    }

    fn bridge_add(
        &self,
        name: &str,
        mac_aging: Option<u64>,
        mac_table_size: Option<usize>,
    ) -> Result<Done, ErrorBody> {
        check_name("bridge", name).map_err(|m| ErrorBody::new(Code::Invalid, m).at("name"))?;
        let mut m = self.lock();
        if m.bridges.iter().any(|b| b.name == name) {
            return Err(ErrorBody::new(
                Code::Exists,
                format!("bridge {name} exists"),
            ));
        }
        let mut spec = BridgeSpec::new(name);
        spec.mac_aging = mac_aging;
        spec.mac_table_size = mac_table_size;
        let def = spec
            .to_def()
            .map_err(|e| ErrorBody::new(Code::Invalid, e))?;
        spec.flows = Some(def.rules.iter().map(Rule::to_string).collect());
        let bridge = xsw_live::engine::Bridge::build(def).map_err(internal)?;
        let tables = bridge.tables().clone();
        self.commit(
            &mut m,
            |next| next.push(spec),
            Some(|e: &EngineHandle| e.add_bridge(bridge)),
        )?;
        m.shadow.insert(name.to_string(), tables);
        Ok(Done {})
    }

    fn bridge_del(&self, name: &str) -> Result<Done, ErrorBody> {
        let mut m = self.lock();
        m.bridge(name)?;
        let next: Vec<BridgeSpec> = m
            .bridges
            .iter()
            .filter(|b| b.name != name)
            .cloned()
            .collect();
        self.save(&next)?;
        // The bridge comes back as garbage: its ports close here.
        let r = self.engine.del_bridge(name).map_err(internal);
        m.bridges = next;
        m.shadow.remove(name);
        m.absent.retain(|(b, _), _| b != name);
        r?;
        Ok(Done {})
    }

    fn port_add(&self, bridge: &str, mut port: PortSpec) -> Result<PortAddReply, ErrorBody> {
        let mut m = self.lock();
        let b = m.bridge(bridge)?;
        if b.ports.iter().any(|p| p.name == port.name) {
            return Err(ErrorBody::new(
                Code::Exists,
                format!("bridge {bridge} already has a port {}", port.name),
            ));
        }
        if port.ofport == 0 {
            port.ofport = b.free_ofport();
        }
        let iface = port.iface().to_string();
        for ob in &m.bridges {
            if let Some(op) = ob.ports.iter().find(|p| p.iface() == iface) {
                return Err(ErrorBody::new(
                    Code::Exists,
                    format!(
                        "interface {iface} is already port {} of bridge {}",
                        op.name, ob.name
                    ),
                ));
            }
        }
        let mut spec = b.clone();
        spec.ports.push(port.clone());
        let defs = spec
            .check_ports()
            .map_err(|e| ErrorBody::new(Code::Invalid, e).at("port"))?;
        let Some(def) = defs.last() else {
            return Err(internal("port vanished"));
        };
        let dev = Device::open(def).map_err(|e| ErrorBody::new(Code::Device, e.to_string()))?;
        let (pname, ofport) = (port.name.clone(), port.ofport);
        self.commit(
            &mut m,
            |next| {
                if let Some(nb) = bridge_in(next, bridge) {
                    nb.ports.push(port);
                }
            },
            Some(|e: &EngineHandle| {
                e.add_port(bridge, def.cfg.clone(), dev, qos_buffers(&def.cfg, None))
            }),
        )?;
        tracing::info!("bridge {bridge}: port {pname} added ({iface})");
        Ok(PortAddReply { ofport })
    }

    fn port_set(
        &self,
        bridge: &str,
        name: &str,
        qos: Option<xsw_datapath::spec::QosSpec>,
    ) -> Result<Done, ErrorBody> {
        let mut m = self.lock();
        let b = m.bridge(bridge)?;
        let Some(old) = b.ports.iter().find(|p| p.name == name).cloned() else {
            return Err(ErrorBody::new(
                Code::NotFound,
                format!("bridge {bridge} has no port {name}"),
            ));
        };
        let mut port = old.clone();
        port.qos = qos;
        let def = port
            .to_def()
            .map_err(|e| ErrorBody::new(Code::Invalid, e).at("qos"))?;
        let before = old.to_def().ok().and_then(|d| d.cfg.qos);
        let buffers = qos_buffers(&def.cfg, before.as_ref());
        // A port whose device is missing gets its settings when it opens.
        let absent = m
            .absent
            .contains_key(&(bridge.to_string(), name.to_string()));
        let op = (!absent).then_some(|e: &EngineHandle| {
            e.set_port_qos(bridge, name, def.cfg.qos.clone(), buffers)
        });
        self.commit(
            &mut m,
            |next| {
                if let Some(p) = bridge_in(next, bridge)
                    .and_then(|b| b.ports.iter_mut().find(|p| p.name == name))
                {
                    *p = port;
                }
            },
            op,
        )?;
        tracing::info!("bridge {bridge}: port {name}: QoS set");
        Ok(Done {})
    }

    fn meter_add(&self, bridge: &str, meter: crate::spec::MeterSpec) -> Result<Done, ErrorBody> {
        let mut m = self.lock();
        m.bridge(bridge)?;
        let MeterDef { id, rate, burst } = meter
            .check()
            .map_err(|e| ErrorBody::new(Code::Invalid, e).at("meter"))?;
        self.commit(
            &mut m,
            |next| {
                if let Some(b) = bridge_in(next, bridge) {
                    b.meters.retain(|x| x.id != id);
                    b.meters.push(meter);
                    b.meters.sort_by_key(|x| x.id);
                }
            },
            Some(|e: &EngineHandle| e.set_meter(bridge, id, Some((rate, burst)))),
        )?;
        Ok(Done {})
    }

    fn meter_del(&self, bridge: &str, id: u32) -> Result<Done, ErrorBody> {
        let mut m = self.lock();
        let b = m.bridge(bridge)?;
        if !b.meters.iter().any(|x| x.id == id) {
            return Err(ErrorBody::new(
                Code::NotFound,
                format!("bridge {bridge} has no meter {id}"),
            ));
        }
        let users = m.shadow.get(bridge).map_or(0, |t| {
            t.iter_sorted()
                .iter()
                .filter(|(_, r)| {
                    r.rule
                        .actions
                        .contains(&xsw_datapath::flow::Action::Meter(id))
                })
                .count()
        });
        if users > 0 {
            return Err(ErrorBody::new(
                Code::Invalid,
                format!("meter {id} is used by {users} rule(s): delete them first"),
            ));
        }
        self.commit(
            &mut m,
            |next| {
                if let Some(b) = bridge_in(next, bridge) {
                    b.meters.retain(|x| x.id != id);
                }
            },
            Some(|e: &EngineHandle| e.set_meter(bridge, id, None)),
        )?;
        Ok(Done {})
    }

    fn port_del(&self, bridge: &str, name: &str) -> Result<Done, ErrorBody> {
        let mut m = self.lock();
        let b = m.bridge(bridge)?;
        if !b.ports.iter().any(|p| p.name == name) {
            return Err(ErrorBody::new(
                Code::NotFound,
                format!("bridge {bridge} has no port {name}"),
            ));
        }
        let key = (bridge.to_string(), name.to_string());
        // Its device comes back as garbage and closes here (a port whose
        // device is missing has none in the engine).
        let op =
            (!m.absent.contains_key(&key)).then_some(|e: &EngineHandle| e.del_port(bridge, name));
        self.commit(
            &mut m,
            |next| {
                if let Some(nb) = bridge_in(next, bridge) {
                    nb.ports.retain(|p| p.name != name);
                }
            },
            op,
        )?;
        m.absent.remove(&key);
        tracing::info!("bridge {bridge}: port {name} deleted");
        Ok(Done {})
    }

    /// Parses rules with `spec`'s port names; the error says which and where.
    fn parse_rules(spec: &BridgeSpec, flows: &[String]) -> Result<Vec<Rule>, ErrorBody> {
        flows
            .iter()
            .enumerate()
            .map(|(i, f)| {
                spec.parse_rule(f).map_err(|e| {
                    ErrorBody::new(Code::BadFlow, e.msg())
                        .detail(e.render(f))
                        .in_rule(Some(i + 1), e.col())
                        .at(if flows.len() == 1 {
                            format!("flow, column {}", e.col())
                        } else {
                            format!("flow {} of {}, column {}", i + 1, flows.len(), e.col())
                        })
                })
            })
            .collect()
    }

    /// Saves a change that is already in effect; if that fails, says so
    /// (the change stands; the next successful save records it).
    fn save_applied(&self, m: &Model) -> Result<(), ErrorBody> {
        self.save(&m.bridges).map_err(|e| {
            ErrorBody::new(
                Code::Internal,
                format!("the change is in effect but was not saved: {}", e.message),
            )
        })
    }

    /// Forgets, in the model, the rules the polling thread removed by
    /// timeouts. Returns how many.
    fn sync_expired(&self, m: &mut Model, bridge: &str) -> Result<usize, ErrorBody> {
        let g = self.engine.take_expired(bridge).map_err(internal)?;
        self.apply_expired(m, bridge, &g.rules, g.lost)
    }

    /// Removes expired rules from the model's copy; when the engine's log
    /// lost some, takes the whole rule set afresh. Returns how many went.
    fn apply_expired(
        &self,
        m: &mut Model,
        bridge: &str,
        gone: &[(Rule, xsw_datapath::Timestamp)],
        lost: bool,
    ) -> Result<usize, ErrorBody> {
        if !lost {
            return Ok(forget_expired(m, bridge, gone));
        }
        let (snaps, _) = self.snapshot(Some(bridge), true)?;
        let mut t = FlowTables::new();
        for r in snaps
            .first()
            .and_then(|s| s.rules.as_ref())
            .into_iter()
            .flatten()
        {
            t.add(r.rule.clone(), r.stats.installed);
        }
        let before = m.shadow.get(bridge).map_or(0, FlowTables::len);
        let n = before.saturating_sub(t.len()).max(1);
        m.shadow.insert(bridge.to_string(), t);
        Ok(n)
    }

    /// Brings every bridge's rules up to date with timeouts, saving when
    /// some expired (so a restart does not bring them back).
    pub fn sync_all_expired(&self) {
        let mut m = self.lock();
        let names: Vec<String> = m.bridges.iter().map(|b| b.name.clone()).collect();
        let mut changed = false;
        for n in names {
            match self.sync_expired(&mut m, &n) {
                Ok(k) => changed |= k > 0,
                Err(e) => tracing::warn!("bridge {n}: {e}"),
            }
        }
        if changed {
            m.refresh_flows();
            if let Err(e) = self.save(&m.bridges) {
                tracing::warn!("{e}");
            }
        }
    }

    fn flow_add(&self, bridge: &str, flows: &[String]) -> Result<FlowAddReply, ErrorBody> {
        // From here to the polling thread's answer: the time to effect.
        let t0 = Instant::now();
        let mut m = self.lock();
        let rules = Self::parse_rules(m.bridge(bridge)?, flows)?;
        if rules.is_empty() {
            return Err(ErrorBody::new(Code::Invalid, "no rules given"));
        }
        let n = rules.len();
        let now = MonotonicClock.now();
        // The model's copy of the tables gets the same change at the same
        // time.
        let copy = rules.clone();
        let changed = self
            .engine
            .add_rules(bridge, rules, now)
            .map_err(internal)?;
        let effect = t0.elapsed();
        let expired = changed.expired;
        self.apply_expired(&mut m, bridge, &expired.rules, expired.lost)?;
        let t = m.shadow.entry(bridge.to_string()).or_default();
        for r in copy {
            t.add(r, now);
        }
        m.refresh_flows();
        self.save_applied(&m)?;
        Ok(FlowAddReply {
            added: n,
            effect_us: effect.as_micros() as u64,
        })
    }

    fn flow_del(
        &self,
        bridge: &str,
        matches: Option<&str>,
        strict: bool,
    ) -> Result<FlowDelReply, ErrorBody> {
        let mut m = self.lock();
        let b = m.bridge(bridge)?;
        let text = matches.unwrap_or("");
        let spec = parse_match_spec(text, &|n: &str| b.port_number(n)).map_err(|e| {
            ErrorBody::new(Code::BadFlow, e.msg())
                .detail(e.render(text))
                .in_rule(None, e.col())
                .at(format!("match, column {}", e.col()))
        })?;
        let changed = self
            .engine
            .del_rules(bridge, spec.clone(), strict)
            .map_err(internal)?;
        let (n, expired) = (changed.count, changed.expired);
        let gone = self.apply_expired(&mut m, bridge, &expired.rules, expired.lost)?;
        let t = m.shadow.entry(bridge.to_string()).or_default();
        for id in t.select(&spec, strict) {
            t.remove(id);
        }
        if n > 0 || gone > 0 {
            m.refresh_flows();
            self.save_applied(&m)?;
        }
        Ok(FlowDelReply { deleted: n })
    }

    fn flow_replace(&self, bridge: &str, flows: &[String]) -> Result<FlowReplaceReply, ErrorBody> {
        let t0 = Instant::now();
        let mut m = self.lock();
        let rules = Self::parse_rules(m.bridge(bridge)?, flows)?;
        let n = rules.len();
        // The whole new table is built here, off the polling thread.
        let now = MonotonicClock.now();
        let mut tables = FlowTables::new();
        for r in rules {
            tables.add(r, now);
        }
        let mut next = tables.clone();
        let swap = Instant::now();
        let old = self
            .engine
            .replace_rules(bridge, tables)
            .map_err(internal)?
            .old;
        let (effect, swapped) = (t0.elapsed(), swap.elapsed());
        // Rules that stay keep their counters and timers: worked out here
        // from the old tables (which are also freed here), then handed over.
        let carry = next.carry_list(&old);
        for (id, st) in &carry {
            next.carry(*id, st);
        }
        drop(old);
        // The new rules are in effect: the model and the state say so
        // before anything else can fail.
        m.shadow.insert(bridge.to_string(), next);
        m.refresh_flows();
        self.save_applied(&m)?;
        if !carry.is_empty() {
            if let Err(e) = self.engine.carry(bridge, carry) {
                tracing::warn!("bridge {bridge}: the new rules are in effect, but their counters could not be carried over: {e}");
            }
        }
        Ok(FlowReplaceReply {
            rules: n,
            effect_us: effect.as_micros() as u64,
            swap_us: swapped.as_micros() as u64,
        })
    }

    fn trace(&self, bridge: &str, in_port: &str, frame: &str) -> Result<TraceReply, ErrorBody> {
        {
            let m = self.lock();
            let b = m.bridge(bridge)?;
            if !b.ports.iter().any(|p| p.name == in_port) {
                return Err(ErrorBody::new(
                    Code::NotFound,
                    format!("bridge {bridge} has no port {in_port}"),
                ));
            }
        }
        let bytes = parse_hex(frame).map_err(|e| ErrorBody::new(Code::Invalid, e).at("frame"))?;
        if bytes.len() > xsw_datapath::packet::MAX_FRAME {
            return Err(ErrorBody::new(
                Code::Invalid,
                format!(
                    "{} bytes: xsw carries frames up to {}",
                    bytes.len(),
                    xsw_datapath::packet::MAX_FRAME
                ),
            )
            .at("frame"));
        }
        let report = self
            .engine
            .trace(bridge, in_port, bytes)
            .map_err(internal)?;
        let names = |i: u16| {
            report
                .port_names
                .get(i as usize)
                .cloned()
                .unwrap_or_default()
        };
        let j = TraceJson::new(&report.events, &names);
        Ok(TraceReply {
            trace: j.into(),
            text: format!(
                "(bridge {bridge}, live tables; a dry run: nothing is learned, counted or sent)\n{}",
                report.render()
            ),
        })
    }

    /// Tries again to open the ports whose device was missing.
    pub fn retry_absent(&self) {
        let mut m = self.lock();
        if m.absent.is_empty() {
            return;
        }
        let keys: Vec<(String, String)> = m.absent.keys().cloned().collect();
        for (b, p) in keys {
            let Ok(spec) = m.bridge(&b) else { continue };
            let Some(ps) = spec.ports.iter().find(|x| x.name == p) else {
                continue;
            };
            let Ok(def) = ps.to_def() else { continue };
            match Device::open(&def) {
                Ok(dev) => {
                    match self.engine.add_port(
                        &b,
                        def.cfg.clone(),
                        dev,
                        qos_buffers(&def.cfg, None),
                    ) {
                        Ok(_) => {
                            tracing::info!("bridge {b}: port {p} is open now ({})", ps.iface());
                            m.absent.remove(&(b, p));
                        }
                        Err(e) => tracing::warn!("bridge {b}: port {p}: {e}"),
                    }
                }
                Err(e) => {
                    m.absent.insert((b, p), e.to_string());
                }
            }
        }
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

    /// Serves one connection: requests in, answers out, until the client
    /// closes it or `stop` is set.
    pub fn serve(&self, stream: UnixStream, stop: &AtomicBool) {
        let n = self.connections.fetch_add(1, Ordering::SeqCst);
        let _guard = Decrement(&self.connections);
        let mut out = match stream.try_clone() {
            Ok(s) => s,
            Err(_) => return,
        };
        if n >= MAX_CONNECTIONS {
            let _ = write_response(
                &mut out,
                &Response::err(
                    None,
                    ErrorBody::new(Code::Internal, "too many connections; try again"),
                ),
            );
            return;
        }
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            line.clear();
            match read_line(&mut reader, &mut line, stop) {
                Ok(LineRead::Eof) => return,
                Ok(LineRead::TooLong) => {
                    let _ = write_response(
                        &mut out,
                        &Response::err(
                            None,
                            ErrorBody::new(
                                Code::BadRequest,
                                format!("request longer than {MAX_LINE} bytes"),
                            ),
                        ),
                    );
                    return;
                }
                Ok(LineRead::Line) => {}
                Err(_) => return,
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let resp = self.answer(&line);
            if write_response(&mut out, &resp).is_err() {
                return;
            }
        }
    }

    /// The answer to one request line.
    pub fn answer(&self, line: &[u8]) -> Response {
        let v: Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(e) => {
                return Response::err(
                    None,
                    ErrorBody::new(Code::BadRequest, format!("not JSON: {e}")),
                )
            }
        };
        // The id and command name, even from a request that does not parse
        // as a whole.
        let id = v.get("id").and_then(Value::as_u64);
        let name = v
            .get("cmd")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        match v.get("version").and_then(Value::as_u64) {
            Some(v) if v == VERSION as u64 => {}
            Some(v) => {
                return Response::err(
                    id,
                    ErrorBody::new(
                        Code::Version,
                        format!("protocol version {v}: this xswd speaks version {VERSION}"),
                    ),
                )
            }
            None => {
                return Response::err(
                    id,
                    ErrorBody::new(Code::BadRequest, "missing \"version\": 1"),
                )
            }
        }
        let req: Request = match serde_json::from_value(v) {
            Ok(r) => r,
            Err(e) => {
                return Response::err(
                    id,
                    ErrorBody::new(Code::BadRequest, format!("bad request: {e}")),
                )
            }
        };
        let mutates = req.cmd.mutates();
        match self.handle(req.cmd) {
            Ok(r) => Response::reply(req.id, &r),
            Err(e) => {
                if mutates {
                    tracing::info!("refused: {name}: {e}");
                }
                Response::err(req.id, e)
            }
        }
    }
}

struct Decrement<'a>(&'a AtomicUsize);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

enum LineRead {
    Line,
    Eof,
    TooLong,
}

/// Reads one line (without its newline), waiting through read timeouts
/// until `stop` is set.
fn read_line<R: Read>(
    r: &mut BufReader<R>,
    out: &mut Vec<u8>,
    stop: &AtomicBool,
) -> std::io::Result<LineRead> {
    loop {
        let (done, used) = {
            let buf = match r.fill_buf() {
                Ok(b) => b,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) =>
                {
                    if stop.load(Ordering::Relaxed) {
                        return Ok(LineRead::Eof);
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                return Ok(if out.is_empty() {
                    LineRead::Eof
                } else {
                    LineRead::Line
                });
            }
            match buf.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    out.extend_from_slice(&buf[..i]);
                    (true, i + 1)
                }
                None => {
                    out.extend_from_slice(buf);
                    (false, buf.len())
                }
            }
        };
        r.consume(used);
        if out.len() > MAX_LINE {
            return Ok(LineRead::TooLong);
        }
        if done {
            return Ok(LineRead::Line);
        }
    }
}

fn write_response(w: &mut UnixStream, r: &Response) -> std::io::Result<()> {
    let mut s = serde_json::to_vec(r).map_err(std::io::Error::other)?;
    s.push(b'\n');
    w.write_all(&s)
}

/// Creates the socket: its directory (mode 0755), the socket (mode 0660,
/// owner root, group `xsw` when that group exists). A socket file left by
/// a dead daemon is replaced; one with a live daemon behind it is an error.
pub fn bind(path: &Path) -> Result<UnixListener, String> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
        }
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(format!(
                "{}: another xswd is running (its socket answers); stop it first or use --socket",
                path.display()
            ));
        }
        std::fs::remove_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let l = UnixListener::bind(path).map_err(|e| format!("{}: {e}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    match xsw_live::sys::group_id("xsw") {
        Ok(Some(gid)) => {
            if let Err(e) = std::os::unix::fs::chown(path, Some(0), Some(gid)) {
                tracing::warn!("{}: could not give it to group xsw: {e}", path.display());
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!("looking up group xsw: {e}; the socket stays root's"),
    }
    Ok(l)
}

/// Accepts connections until `stop` is set, one thread each. Blocks in
/// accept(2): run it on its own thread, which ends with the process.
pub fn accept_loop(server: Arc<Server>, listener: UnixListener, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((s, _)) => {
                let server = server.clone();
                let stop = stop.clone();
                let spawned = std::thread::Builder::new()
                    .name("xswd-client".into())
                    .spawn(move || server.serve(s, &stop));
                if let Err(e) = spawned {
                    tracing::warn!("control socket: cannot start a thread: {e}");
                }
            }
            Err(e) => {
                tracing::warn!("control socket: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// The default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/xsw";
