//! Commands for a running [`Engine`]: what the control plane may ask of the
//! polling thread, and the answers.
//!
//! Every command is prepared completely by the caller (rules parsed and
//! checked, a replacement table built, a device opened) so that carrying it
//! out between two batches is quick; whatever the thread lets go of (old
//! tables, a deleted port's device) travels back in the reply as
//! [`Garbage`] and is freed on the caller's thread.

use crate::clock::Timestamp;
use crate::engine::{Bridge, BridgeSnapshot, Device, Engine, EngineStats};
use crate::flow::{MatchSpec, Rule};
use crate::packet::PacketBuf;
use crate::pipeline::PortConfig;
use crate::qos::QosConfig;
use crate::table::{FlowTables, RuleStats};
use crate::trace::TraceReport;

/// A command for the polling thread.
#[derive(Debug)]
pub enum Op {
    /// Adds a bridge (built, ports open).
    AddBridge(Box<Bridge>),
    /// Deletes a bridge and closes its ports.
    DelBridge {
        /// Bridge name.
        bridge: String,
    },
    /// Adds an opened port to a bridge.
    AddPort {
        /// Bridge name.
        bridge: String,
        /// The port's pipeline configuration.
        cfg: Box<PortConfig>,
        /// Its device.
        dev: Device,
        /// Buffers for its QoS queues ([`crate::qos::QosConfig::buffers`]).
        buffers: Vec<PacketBuf>,
    },
    /// Changes a port's QoS.
    SetPortQos {
        /// Bridge name.
        bridge: String,
        /// Port name.
        port: String,
        /// The new settings (None: no QoS).
        qos: Option<Box<QosConfig>>,
        /// Buffers for queues deeper than before.
        buffers: Vec<PacketBuf>,
    },
    /// Adds or changes (keeping its counters) a meter; None deletes it.
    SetMeter {
        /// Bridge name.
        bridge: String,
        /// Meter id.
        id: u32,
        /// (rate bits/s, burst bits).
        meter: Option<(u64, u64)>,
    },
    /// Deletes a port.
    DelPort {
        /// Bridge name.
        bridge: String,
        /// Port name.
        port: String,
    },
    /// Installs rules, all at once (each replaces a rule with the same
    /// table, priority and match).
    AddRules {
        /// Bridge name.
        bridge: String,
        /// The rules.
        rules: Vec<Rule>,
        /// Their install time (the caller's copy of the tables uses the same).
        now: Timestamp,
    },
    /// Deletes the rules a spec selects.
    DelRules {
        /// Bridge name.
        bridge: String,
        /// Which rules.
        spec: MatchSpec,
        /// Exact match and priority only.
        strict: bool,
    },
    /// Replaces all rules at once; the old tables come back as garbage.
    ReplaceRules {
        /// Bridge name.
        bridge: String,
        /// The new tables, built by the caller.
        tables: Box<FlowTables>,
    },
    /// Hands rules older rules' counters and times, after a replace (see
    /// [`FlowTables::carry_list`]).
    Carry {
        /// Bridge name.
        bridge: String,
        /// (rule id, the older rule's counters).
        list: Vec<(u32, RuleStats)>,
    },
    /// The rules removed by timeouts since the last time this was asked.
    TakeExpired {
        /// Bridge name.
        bridge: String,
    },
    /// Forgets the learned MACs.
    FlushFdb {
        /// Bridge name.
        bridge: String,
    },
    /// State of one bridge or all.
    Snapshot {
        /// One bridge, or all when `None`.
        bridge: Option<String>,
        /// Include every rule (costs a copy of each).
        rules: bool,
    },
    /// The learned MACs of a bridge.
    Fdb {
        /// Bridge name.
        bridge: String,
    },
    /// Traces a frame on the live tables without changing anything.
    Trace {
        /// Bridge name.
        bridge: String,
        /// Port the frame arrives on.
        in_port: String,
        /// The frame.
        frame: Vec<u8>,
    },
}

/// Something the polling thread let go of, to be freed by whoever holds
/// this (dropping it closes devices and frees tables).
pub struct Garbage(#[allow(dead_code)] Box<dyn Send>);

impl std::fmt::Debug for Garbage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Garbage")
    }
}

/// One learned MAC.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FdbRow {
    /// VLAN.
    pub vlan: u16,
    /// MAC, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// Port name.
    pub port: String,
    /// Seconds since it was last learned or refreshed.
    pub age: u64,
}

/// The answer to an [`Op`].
#[derive(Debug)]
pub enum Reply {
    /// Done; anything let go of comes along.
    Done(Option<Garbage>),
    /// Done, on this many items (rules deleted, MACs flushed).
    Count(usize),
    /// Bridge states and the thread's own counters.
    Snapshot(Vec<BridgeSnapshot>, EngineStats),
    /// Learned MACs.
    Fdb(Vec<FdbRow>),
    /// A trace.
    Trace(TraceReport),
    /// Rules removed by timeouts: each with its install time; the flag
    /// says some were lost from the log (take every rule afresh).
    Expired(Vec<(Rule, Timestamp)>, bool),
    /// A rule change is in effect.
    Rules {
        /// Rules added or deleted.
        count: usize,
        /// Rules removed by timeouts before it (see [`Op::TakeExpired`]).
        expired: Vec<(Rule, Timestamp)>,
        /// Some removals were lost from the log.
        expired_lost: bool,
        /// After a replace: the old tables (to compute what to carry, then
        /// free).
        old: Option<Box<FlowTables>>,
    },
    /// Not done (nothing changed); anything handed over comes back.
    Failed(String, Option<Garbage>),
}

/// A command with the channel its reply goes to.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) op: Op,
    pub(crate) reply: crossbeam_channel::Sender<Reply>,
}

fn garbage<T: Send + 'static>(x: T) -> Option<Garbage> {
    Some(Garbage(Box::new(x)))
}

/// Rules removed by timeouts since the last call, and whether the log lost
/// some (then the caller must take all rules afresh).
fn take_expired(b: &mut Bridge) -> (Vec<(Rule, Timestamp)>, bool) {
    let (gone, lost) = b.pipe().drain_removed();
    (
        gone.into_iter()
            .map(|r| (r.rule.rule, r.rule.stats.installed))
            .collect(),
        lost,
    )
}

fn no_bridge(name: &str) -> String {
    format!("no bridge named {name}")
}

impl Engine {
    fn bridge_mut(&mut self, name: &str) -> Option<&mut Bridge> {
        self.bridges.iter_mut().find(|b| b.name() == name)
    }

    /// Carries out one command (on the polling thread, between batches).
    pub(crate) fn apply(&mut self, op: Op) -> Reply {
        use crate::clock::Clock;
        let now = self.clock.now();
        match op {
            Op::AddBridge(b) => {
                if self.bridges.iter().any(|x| x.name() == b.name()) {
                    let msg = format!("bridge {} exists", b.name());
                    return Reply::Failed(msg, garbage(b));
                }
                self.bridges.push(*b);
                Reply::Done(None)
            }
            Op::DelBridge { bridge } => {
                match self.bridges.iter().position(|b| b.name() == bridge) {
                    Some(i) => Reply::Done(garbage(self.bridges.remove(i))),
                    None => Reply::Failed(no_bridge(&bridge), None),
                }
            }
            Op::AddPort {
                bridge,
                cfg,
                dev,
                buffers,
            } => {
                let Some(b) = self.bridge_mut(&bridge) else {
                    return Reply::Failed(no_bridge(&bridge), garbage(dev));
                };
                match b.add_port(*cfg, dev, buffers) {
                    Ok(_) => Reply::Done(None),
                    Err(b) => {
                        let (e, dev) = *b;
                        Reply::Failed(e.to_string(), garbage(dev))
                    }
                }
            }
            Op::DelPort { bridge, port } => {
                let Some(b) = self.bridge_mut(&bridge) else {
                    return Reply::Failed(no_bridge(&bridge), None);
                };
                match b.remove_port(&port) {
                    Some(parts) => {
                        b.push_xdp_rules();
                        Reply::Done(garbage(parts))
                    }
                    None => Reply::Failed(format!("bridge {bridge} has no port {port}"), None),
                }
            }
            Op::AddRules { bridge, rules, now } => {
                let Some(b) = self.bridge_mut(&bridge) else {
                    return Reply::Failed(no_bridge(&bridge), None);
                };
                let (expired, expired_lost) = take_expired(b);
                // Kernel drops so far belong to the rules as they were.
                b.credit_xdp(now);
                let count = rules.len();
                for rule in rules {
                    b.pipe().add_rule(rule, now);
                }
                b.push_xdp_rules();
                Reply::Rules {
                    count,
                    expired,
                    expired_lost,
                    old: None,
                }
            }
            Op::DelRules {
                bridge,
                spec,
                strict,
            } => {
                let Some(b) = self.bridge_mut(&bridge) else {
                    return Reply::Failed(no_bridge(&bridge), None);
                };
                let (expired, expired_lost) = take_expired(b);
                b.credit_xdp(now);
                let count = b.pipe().delete_rules(&spec, strict);
                if count > 0 {
                    b.push_xdp_rules();
                }
                Reply::Rules {
                    count,
                    expired,
                    expired_lost,
                    old: None,
                }
            }
            Op::ReplaceRules { bridge, tables } => {
                let Some(b) = self.bridge_mut(&bridge) else {
                    return Reply::Failed(no_bridge(&bridge), garbage(tables));
                };
                let (expired, expired_lost) = take_expired(b);
                b.credit_xdp(now);
                let count = tables.len();
                let old = b.pipe().replace_rules(*tables);
                b.push_xdp_rules();
                Reply::Rules {
                    count,
                    expired,
                    expired_lost,
                    old: Some(Box::new(old)),
                }
            }
            Op::Carry { bridge, list } => {
                let Some(b) = self.bridge_mut(&bridge) else {
                    return Reply::Failed(no_bridge(&bridge), None);
                };
                b.pipe().carry(&list);
                Reply::Done(garbage(list))
            }
            Op::TakeExpired { bridge } => {
                let Some(b) = self.bridge_mut(&bridge) else {
                    return Reply::Failed(no_bridge(&bridge), None);
                };
                let (gone, lost) = take_expired(b);
                Reply::Expired(gone, lost)
            }
            Op::SetPortQos {
                bridge,
                port,
                qos,
                buffers,
            } => {
                let Some(b) = self.bridge_mut(&bridge) else {
                    return Reply::Failed(no_bridge(&bridge), garbage(buffers));
                };
                let Some(idx) = b.pipe().port_by_name(&port) else {
                    return Reply::Failed(
                        format!("bridge {bridge} has no port {port}"),
                        garbage(buffers),
                    );
                };
                let surplus = b.pipe().set_port_qos(idx, qos.map(|q| *q), buffers);
                Reply::Done(garbage(surplus))
            }
            Op::SetMeter { bridge, id, meter } => {
                let Some(b) = self.bridge_mut(&bridge) else {
                    return Reply::Failed(no_bridge(&bridge), None);
                };
                b.pipe()
                    .set_meter(id, meter.map(|(r, burst)| crate::qos::Meter::new(r, burst)));
                Reply::Done(None)
            }
            Op::FlushFdb { bridge } => {
                let Some(b) = self.bridge_mut(&bridge) else {
                    return Reply::Failed(no_bridge(&bridge), None);
                };
                let n = b.pipe().mac_table().len();
                b.pipe().flush_macs();
                Reply::Count(n)
            }
            Op::Snapshot { bridge, rules } => {
                let snaps: Vec<BridgeSnapshot> = self
                    .bridges
                    .iter_mut()
                    .filter(|b| bridge.as_deref().is_none_or(|n| n == b.name()))
                    .map(|b| b.snapshot(now, rules))
                    .collect();
                if let (Some(n), true) = (&bridge, snaps.is_empty()) {
                    return Reply::Failed(no_bridge(n), None);
                }
                Reply::Snapshot(snaps, self.stats())
            }
            Op::Fdb { bridge } => {
                let Some(b) = self.bridge_mut(&bridge) else {
                    return Reply::Failed(no_bridge(&bridge), None);
                };
                let pipe = b.pipe();
                let rows = pipe
                    .mac_table()
                    .entries(now.secs())
                    .into_iter()
                    .map(|e| FdbRow {
                        vlan: e.vlan,
                        mac: crate::key::Mac(e.mac).to_string(),
                        port: pipe
                            .port_config(e.port)
                            .map_or_else(|| format!("#{}", e.port), |c| c.name.clone()),
                        age: e.age,
                    })
                    .collect();
                Reply::Fdb(rows)
            }
            Op::Trace {
                bridge,
                in_port,
                frame,
            } => {
                let Some(b) = self.bridge_mut(&bridge) else {
                    return Reply::Failed(no_bridge(&bridge), None);
                };
                let pipe = b.pipe();
                let Some(idx) = pipe.port_by_name(&in_port) else {
                    return Reply::Failed(format!("bridge {bridge} has no port {in_port}"), None);
                };
                let events = pipe.trace_dry(idx, &frame, now);
                let port_names = (0..pipe.n_ports() as u16)
                    .map(|i| {
                        pipe.port_config(i)
                            .map_or_else(|| format!("#{i}"), |c| c.name.clone())
                    })
                    .collect();
                Reply::Trace(TraceReport {
                    events,
                    port_names,
                    warmup_frames: 0,
                })
            }
        }
    }
}

// Commands cross threads: everything they carry must be Send.
const _: fn() = || {
    fn send<T: Send>() {}
    send::<Request>();
    send::<Reply>();
    send::<crate::engine::EngineHandle>();
};
