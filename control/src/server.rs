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

use serde_json::{json, Value};
use xsw_datapath::clock::{Clock, MonotonicClock};
use xsw_datapath::engine::{BridgeSnapshot, Device, EngineHandle, EngineStats};
use xsw_datapath::flow::{parse_match_spec, Rule};
use xsw_datapath::live::{Op, Reply};
use xsw_datapath::table::FlowTables;
use xsw_datapath::trace::TraceJson;

use crate::proto::{Code, Command, ErrorBody, Request, Response, MAX_LINE, VERSION};
use crate::spec::{check_name, BridgeSpec, PortSpec};
use crate::store::Store;

type Res = Result<Value, ErrorBody>;

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
    /// then the engine runs `op` (when there is one). If the engine refuses,
    /// the saved state goes back to what it was and the model is unchanged;
    /// otherwise the copy becomes the model.
    fn commit(
        &self,
        m: &mut Model,
        edit: impl FnOnce(&mut Vec<BridgeSpec>),
        op: Option<Op>,
    ) -> Result<Option<Reply>, ErrorBody> {
        let mut next = m.bridges.clone();
        edit(&mut next);
        self.save(&next)?;
        let reply = match op.map(|op| self.call(op)).transpose() {
            Ok(r) => r,
            Err(e) => {
                if let Err(se) = self.save(&m.bridges) {
                    tracing::error!(
                        "the engine refused a change ({e}) and the saved state could not be put back ({se}): it shows the change until the next save"
                    );
                }
                return Err(e);
            }
        };
        m.bridges = next;
        Ok(reply)
    }

    fn call(&self, op: Op) -> Result<Reply, ErrorBody> {
        match self.engine.call(op).map_err(internal)? {
            Reply::Failed(msg, _garbage) => Err(internal(msg)),
            r => Ok(r),
        }
    }

    fn snapshot(
        &self,
        bridge: Option<&str>,
        rules: bool,
    ) -> Result<(Vec<BridgeSnapshot>, EngineStats), ErrorBody> {
        match self.call(Op::Snapshot {
            bridge: bridge.map(str::to_string),
            rules,
        })? {
            Reply::Snapshot(s, e) => Ok((s, e)),
            other => Err(internal(format!("unexpected reply {other:?}"))),
        }
    }

    /// Answers one request.
    pub fn handle(&self, cmd: Command) -> Res {
        match cmd {
            Command::Hello => Ok(json!({
                "version": VERSION,
                "daemon": format!("xswd {}", env!("CARGO_PKG_VERSION")),
                "pid": std::process::id(),
            })),
            Command::Show { bridge } => self.show(bridge.as_deref()),
            Command::BridgeAdd {
                name,
                mac_aging,
                mac_table_size,
            } => self.bridge_add(&name, mac_aging, mac_table_size),
            Command::BridgeDel { name } => self.bridge_del(&name),
            Command::PortAdd { bridge, port } => self.port_add(&bridge, *port),
            Command::PortDel { bridge, name } => self.port_del(&bridge, &name),
            Command::PortSet { bridge, name, qos } => {
                self.port_set(&bridge, &name, qos.map(|q| *q))
            }
            Command::MeterAdd { bridge, meter } => self.meter_add(&bridge, meter),
            Command::MeterDel { bridge, id } => self.meter_del(&bridge, id),
            Command::MeterShow { bridge } => {
                self.lock().bridge(&bridge)?;
                let (snaps, _) = self.snapshot(Some(&bridge), false)?;
                let meters: Vec<Value> = snaps
                    .first()
                    .map(|s| {
                        s.meters
                            .iter()
                            .map(|m| {
                                json!({"id": m.id, "rate": m.rate, "burst": m.burst,
                                       "passed": m.passed, "dropped": m.dropped})
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Ok(json!({ "meters": meters }))
            }
            Command::PortStats { bridge } => {
                self.lock().bridge(&bridge)?;
                let (snaps, _) = self.snapshot(Some(&bridge), false)?;
                let ports = snaps.first().map(|s| s.ports.clone()).unwrap_or_default();
                Ok(json!({ "ports": ports }))
            }
            Command::FlowAdd { bridge, flows } => self.flow_add(&bridge, &flows),
            Command::FlowDel {
                bridge,
                matches,
                strict,
            } => self.flow_del(&bridge, matches.as_deref(), strict),
            Command::FlowReplace { bridge, flows } => self.flow_replace(&bridge, &flows),
            Command::FlowDump { bridge } => {
                // Held through the snapshot: a replace (swap, then counters
                // carried over) is never seen half done.
                let m = self.lock();
                m.bridge(&bridge)?;
                let (snaps, _) = self.snapshot(Some(&bridge), true)?;
                drop(m);
                let s = snaps.first().ok_or_else(|| not_found_bridge(&bridge))?;
                let flows: Vec<_> = s.rules.iter().flatten().map(|r| r.report(s.at)).collect();
                Ok(json!({ "flows": flows }))
            }
            Command::FdbShow { bridge } => {
                self.lock().bridge(&bridge)?;
                match self.call(Op::Fdb { bridge })? {
                    Reply::Fdb(rows) => Ok(json!({ "entries": rows })),
                    other => Err(internal(format!("unexpected reply {other:?}"))),
                }
            }
            Command::FdbFlush { bridge } => {
                let _m = self.lock();
                _m.bridge(&bridge)?;
                match self.call(Op::FlushFdb { bridge })? {
                    Reply::Count(n) => Ok(json!({ "flushed": n })),
                    other => Err(internal(format!("unexpected reply {other:?}"))),
                }
            }
            Command::Trace {
                bridge,
                in_port,
                frame,
            } => self.trace(&bridge, &in_port, &frame),
            Command::Metrics => {
                let (snaps, stats) = self.snapshot(None, false)?;
                Ok(json!({ "text": crate::metrics::render(&snaps, &stats) }))
            }
        }
    }

    fn show(&self, bridge: Option<&str>) -> Res {
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
            let ports: Vec<Value> = b
                .ports
                .iter()
                .map(|p| {
                    let live = snap.and_then(|s| s.ports.iter().find(|x| x.name == p.name));
                    let absent = m.absent.get(&(b.name.clone(), p.name.clone()));
                    json!({
                        "name": p.name,
                        "ofport": p.ofport,
                        "interface": p.iface(),
                        "type": p.port_type().name(),
                        "vlan": p.vlan_text(),
                        "vlan_mode": p.vlan_mode,
                        "tag": p.tag,
                        "trunks": p.trunks,
                        "mtu": p.mtu,
                        "qos": p.qos,
                        "xdp_mode": live.and_then(|l| l.xdp_mode),
                        "device": live.map(|l| l.device.clone()),
                        "state": match (live, absent) {
                            (Some(l), _) if l.up => "up".to_string(),
                            (Some(_), _) => "down (device gone)".to_string(),
                            (None, Some(why)) => format!("not open: {why}"),
                            (None, None) => "not open".to_string(),
                        },
                    })
                })
                .collect();
            out.push(json!({
                "name": b.name,
                "mac_aging": b.options().map(|o| o.mac_aging_secs).unwrap_or_default(),
                "mac_table_size": b.options().map(|o| o.mac_max_entries).unwrap_or_default(),
                "ports": ports,
                "flows": snap.map_or(0, |s| s.n_rules),
                "meters": b.meters,
                "mac_entries": snap.map_or(0, |s| s.mac_entries),
            }));
        }
        Ok(json!({ "bridges": out, "engine": stats }))
    }

    fn bridge_add(&self, name: &str, mac_aging: Option<u64>, mac_table_size: Option<usize>) -> Res {
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
        let bridge = xsw_datapath::engine::Bridge::build(def).map_err(internal)?;
        let tables = bridge.tables().clone();
        self.commit(
            &mut m,
            |next| next.push(spec),
            Some(Op::AddBridge(Box::new(bridge))),
        )?;
        m.shadow.insert(name.to_string(), tables);
        Ok(json!({}))
    }

    fn bridge_del(&self, name: &str) -> Res {
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
        let r = self.call(Op::DelBridge {
            bridge: name.to_string(),
        });
        m.bridges = next;
        m.shadow.remove(name);
        m.absent.retain(|(b, _), _| b != name);
        drop(r?);
        Ok(json!({}))
    }

    fn port_add(&self, bridge: &str, mut port: PortSpec) -> Res {
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
            Some(Op::AddPort {
                bridge: bridge.to_string(),
                cfg: Box::new(def.cfg.clone()),
                dev,
                buffers: qos_buffers(&def.cfg, None),
            }),
        )?;
        tracing::info!("bridge {bridge}: port {pname} added ({iface})");
        Ok(json!({ "ofport": ofport }))
    }

    fn port_set(&self, bridge: &str, name: &str, qos: Option<xsw_datapath::spec::QosSpec>) -> Res {
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
        let op = (!absent).then(|| Op::SetPortQos {
            bridge: bridge.to_string(),
            port: name.to_string(),
            qos: def.cfg.qos.clone().map(Box::new),
            buffers,
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
        Ok(json!({}))
    }

    fn meter_add(&self, bridge: &str, meter: crate::spec::MeterSpec) -> Res {
        let mut m = self.lock();
        m.bridge(bridge)?;
        let (id, rate, burst) = meter
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
            Some(Op::SetMeter {
                bridge: bridge.to_string(),
                id,
                meter: Some((rate, burst)),
            }),
        )?;
        Ok(json!({}))
    }

    fn meter_del(&self, bridge: &str, id: u32) -> Res {
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
            Some(Op::SetMeter {
                bridge: bridge.to_string(),
                id,
                meter: None,
            }),
        )?;
        Ok(json!({}))
    }

    fn port_del(&self, bridge: &str, name: &str) -> Res {
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
        let op = (!m.absent.contains_key(&key)).then(|| Op::DelPort {
            bridge: bridge.to_string(),
            port: name.to_string(),
        });
        let garbage = self.commit(
            &mut m,
            |next| {
                if let Some(nb) = bridge_in(next, bridge) {
                    nb.ports.retain(|p| p.name != name);
                }
            },
            op,
        )?;
        drop(garbage);
        m.absent.remove(&key);
        tracing::info!("bridge {bridge}: port {name} deleted");
        Ok(json!({}))
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
        match self.call(Op::TakeExpired {
            bridge: bridge.to_string(),
        })? {
            Reply::Expired(g, lost) => self.apply_expired(m, bridge, &g, lost),
            other => Err(internal(format!("unexpected reply {other:?}"))),
        }
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

    fn flow_add(&self, bridge: &str, flows: &[String]) -> Res {
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
        let (expired, lost) = match self.call(Op::AddRules {
            bridge: bridge.to_string(),
            rules,
            now,
        })? {
            Reply::Rules {
                expired,
                expired_lost,
                ..
            } => (expired, expired_lost),
            other => return Err(internal(format!("unexpected reply {other:?}"))),
        };
        let effect = t0.elapsed();
        self.apply_expired(&mut m, bridge, &expired, lost)?;
        let t = m.shadow.entry(bridge.to_string()).or_default();
        for r in copy {
            t.add(r, now);
        }
        m.refresh_flows();
        self.save_applied(&m)?;
        Ok(json!({ "added": n, "effect_us": effect.as_micros() as u64 }))
    }

    fn flow_del(&self, bridge: &str, matches: Option<&str>, strict: bool) -> Res {
        let mut m = self.lock();
        let b = m.bridge(bridge)?;
        let text = matches.unwrap_or("");
        let spec = parse_match_spec(text, &|n: &str| b.port_number(n)).map_err(|e| {
            ErrorBody::new(Code::BadFlow, e.msg())
                .detail(e.render(text))
                .at(format!("match, column {}", e.col()))
        })?;
        let (n, expired, lost) = match self.call(Op::DelRules {
            bridge: bridge.to_string(),
            spec: spec.clone(),
            strict,
        })? {
            Reply::Rules {
                count,
                expired,
                expired_lost,
                ..
            } => (count, expired, expired_lost),
            other => return Err(internal(format!("unexpected reply {other:?}"))),
        };
        let gone = self.apply_expired(&mut m, bridge, &expired, lost)?;
        let t = m.shadow.entry(bridge.to_string()).or_default();
        for id in t.select(&spec, strict) {
            t.remove(id);
        }
        if n > 0 || gone > 0 {
            m.refresh_flows();
            self.save_applied(&m)?;
        }
        Ok(json!({ "deleted": n }))
    }

    fn flow_replace(&self, bridge: &str, flows: &[String]) -> Res {
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
        let old = match self.call(Op::ReplaceRules {
            bridge: bridge.to_string(),
            tables: Box::new(tables),
        })? {
            Reply::Rules { old: Some(old), .. } => old,
            other => return Err(internal(format!("unexpected reply {other:?}"))),
        };
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
            if let Err(e) = self.call(Op::Carry {
                bridge: bridge.to_string(),
                list: carry,
            }) {
                tracing::warn!("bridge {bridge}: the new rules are in effect, but their counters could not be carried over: {e}");
            }
        }
        Ok(json!({
            "rules": n,
            "effect_us": effect.as_micros() as u64,
            "swap_us": swapped.as_micros() as u64,
        }))
    }

    fn trace(&self, bridge: &str, in_port: &str, frame: &str) -> Res {
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
        match self.call(Op::Trace {
            bridge: bridge.to_string(),
            in_port: in_port.to_string(),
            frame: bytes,
        })? {
            Reply::Trace(report) => {
                let names = |i: u16| {
                    report
                        .port_names
                        .get(i as usize)
                        .cloned()
                        .unwrap_or_default()
                };
                let j = TraceJson::new(&report.events, &names);
                let mut v = serde_json::to_value(&j).map_err(internal)?;
                v["text"] = Value::String(format!(
                    "(bridge {bridge}, live tables; a dry run: nothing is learned, counted or sent)\n{}",
                    report.render()
                ));
                Ok(v)
            }
            other => Err(internal(format!("unexpected reply {other:?}"))),
        }
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
                    match self.call(Op::AddPort {
                        bridge: b.clone(),
                        cfg: Box::new(def.cfg.clone()),
                        dev,
                        buffers: qos_buffers(&def.cfg, None),
                    }) {
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

    /// A JSON report of every bridge (for `--stats-file`).
    pub fn stats_json(&self) -> Result<Value, ErrorBody> {
        let (snaps, stats) = self.snapshot(None, true)?;
        let reports: Vec<_> = snaps.iter().map(BridgeSnapshot::report).collect();
        Ok(json!({ "bridges": reports, "engine": stats }))
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
            Ok(v) => Response::ok(req.id, v),
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

/// Parses hex, ignoring spaces and colons.
pub fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let mut digits = Vec::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_ascii_whitespace() || c == ':' {
            continue;
        }
        match c.to_digit(16) {
            Some(d) => digits.push(d as u8),
            None => return Err(format!("`{c}` at position {} is not a hex digit", i + 1)),
        }
    }
    if digits.len() % 2 != 0 {
        return Err(format!(
            "odd number of hex digits ({}): each byte needs two",
            digits.len()
        ));
    }
    Ok(digits.chunks(2).map(|p| (p[0] << 4) | p[1]).collect())
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
    if let Some(gid) = group_id("xsw") {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|e| e.to_string())?;
        // SAFETY: `c` is a valid NUL-terminated path for the call's duration.
        let rc = unsafe { libc::chown(c.as_ptr(), 0, gid) };
        if rc != 0 {
            tracing::warn!(
                "{}: could not give it to group xsw: {}",
                path.display(),
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(l)
}

/// The id of group `name`, if it exists.
fn group_id(name: &str) -> Option<libc::gid_t> {
    let c = std::ffi::CString::new(name).ok()?;
    let mut grp: libc::group = unsafe {
        // SAFETY: `group` is a plain C struct of integers and pointers, for
        // which all-zero is a valid (empty) value; getgrnam_r fills it.
        std::mem::zeroed()
    };
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call: the name is
    // NUL-terminated, `grp` and `result` are ours, and `buf` holds the
    // stated number of bytes.
    let rc = unsafe {
        libc::getgrnam_r(
            c.as_ptr(),
            &mut grp,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some(grp.gr_gid)
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
