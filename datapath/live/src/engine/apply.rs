//! The handlers that carry out, on the polling thread and between two
//! batches, the commands an [`EngineHandle`](super::EngineHandle) sends:
//! one function per [`Op`], each answering on the command's own sender.
//! This module depends on [`super::handle`] (the commands and answer
//! types), never the other way round.

use xsw_datapath::clock::Timestamp;
use xsw_datapath::flow::{MatchSpec, Rule};
use xsw_datapath::key::Mac;
use xsw_datapath::packet::PacketBuf;
use xsw_datapath::pipeline::PortConfig;
use xsw_datapath::qos::{Meter, QosConfig};
use xsw_datapath::table::{FlowTables, RuleStats};
use xsw_datapath::trace::TraceReport;

use super::bridge::Bridge;
use super::device::Device;
use super::handle::{
    garbage, Answer, Expired, ExpiredRule, FdbRow, Op, Replaced, RulesChanged, Tx,
};
use super::report::{BridgeSnapshot, EngineStats};

/// Sends an answer. The caller may have given up waiting; the answer (and
/// whatever it carries) is then dropped here, on the polling thread.
fn answer<T>(tx: &Tx<T>, a: Answer<T>) {
    if tx.send(a).is_err() {
        tracing::debug!("a command's caller stopped waiting before its answer");
    }
}

/// Carries out one command (on the polling thread, between batches).
/// `stats` are the thread's counters, for snapshots.
pub(super) fn apply(bridges: &mut Vec<Bridge>, now: Timestamp, stats: EngineStats, op: Op) {
    match op {
        Op::AddBridge { bridge, tx } => answer(&tx, add_bridge(bridges, bridge)),
        Op::DelBridge { bridge, tx } => answer(&tx, del_bridge(bridges, &bridge)),
        Op::AddPort {
            bridge,
            cfg,
            dev,
            buffers,
            tx,
        } => answer(&tx, add_port(bridges, &bridge, *cfg, dev, buffers)),
        Op::SetPortQos {
            bridge,
            port,
            qos,
            buffers,
            tx,
        } => answer(&tx, set_port_qos(bridges, &bridge, &port, qos, buffers)),
        Op::SetMeter {
            bridge,
            id,
            meter,
            tx,
        } => answer(&tx, set_meter(bridges, &bridge, id, meter)),
        Op::DelPort { bridge, port, tx } => answer(&tx, del_port(bridges, &bridge, &port)),
        Op::AddRules {
            bridge,
            rules,
            now,
            tx,
        } => answer(&tx, add_rules(bridges, &bridge, rules, now)),
        Op::DelRules {
            bridge,
            spec,
            strict,
            tx,
        } => answer(&tx, del_rules(bridges, &bridge, &spec, strict, now)),
        Op::ReplaceRules { bridge, tables, tx } => {
            answer(&tx, replace_rules(bridges, &bridge, tables, now))
        }
        Op::Carry { bridge, list, tx } => answer(&tx, carry(bridges, &bridge, list)),
        Op::TakeExpired { bridge, tx } => answer(&tx, with_bridge(bridges, &bridge, take_expired)),
        Op::FlushFdb { bridge, tx } => answer(&tx, with_bridge(bridges, &bridge, flush_fdb)),
        Op::Snapshot { bridge, rules, tx } => {
            answer(&tx, snapshot(bridges, bridge.as_deref(), rules, now, stats))
        }
        Op::Fdb { bridge, tx } => answer(&tx, with_bridge(bridges, &bridge, |b| fdb(b, now))),
        Op::Trace {
            bridge,
            in_port,
            frame,
            tx,
        } => answer(&tx, trace(bridges, &bridge, &in_port, &frame, now)),
    }
}

fn no_bridge(name: &str) -> String {
    format!("no bridge named {name}")
}

fn no_port(bridge: &str, port: &str) -> String {
    format!("bridge {bridge} has no port {port}")
}

fn bridge_mut<'a>(bridges: &'a mut [Bridge], name: &str) -> Option<&'a mut Bridge> {
    bridges.iter_mut().find(|b| b.name() == name)
}

/// Runs `f` on bridge `name`, or refuses when there is none.
fn with_bridge<T>(
    bridges: &mut [Bridge],
    name: &str,
    f: impl FnOnce(&mut Bridge) -> T,
) -> Answer<T> {
    match bridge_mut(bridges, name) {
        Some(b) => Answer::ok(f(b)),
        None => Answer::refused(no_bridge(name), None),
    }
}

fn add_bridge(bridges: &mut Vec<Bridge>, b: Box<Bridge>) -> Answer<()> {
    if bridges.iter().any(|x| x.name() == b.name()) {
        let msg = format!("bridge {} exists", b.name());
        return Answer::refused(msg, garbage(b));
    }
    bridges.push(*b);
    Answer::ok(())
}

fn del_bridge(bridges: &mut Vec<Bridge>, name: &str) -> Answer<()> {
    match bridges.iter().position(|b| b.name() == name) {
        Some(i) => Answer::ok_with((), garbage(bridges.remove(i))),
        None => Answer::refused(no_bridge(name), None),
    }
}

fn add_port(
    bridges: &mut [Bridge],
    bridge: &str,
    cfg: PortConfig,
    dev: Device,
    buffers: Vec<PacketBuf>,
) -> Answer<()> {
    let Some(b) = bridge_mut(bridges, bridge) else {
        return Answer::refused(no_bridge(bridge), garbage(dev));
    };
    match b.add_port(cfg, dev, buffers) {
        Ok(_) => Answer::ok(()),
        Err(b) => {
            let (e, dev) = *b;
            Answer::refused(e.to_string(), garbage(dev))
        }
    }
}

fn del_port(bridges: &mut [Bridge], bridge: &str, port: &str) -> Answer<()> {
    let Some(b) = bridge_mut(bridges, bridge) else {
        return Answer::refused(no_bridge(bridge), None);
    };
    match b.remove_port(port) {
        Some(parts) => {
            b.push_xdp_rules();
            Answer::ok_with((), garbage(parts))
        }
        None => Answer::refused(no_port(bridge, port), None),
    }
}

/// Rules removed by timeouts since the last call, and whether the log lost
/// some (then the caller must take all rules afresh).
fn take_expired(b: &mut Bridge) -> Expired {
    let log = b.pipe().drain_removed();
    Expired {
        rules: log
            .rules
            .into_iter()
            .map(|r| ExpiredRule {
                rule: r.rule.rule,
                installed: r.rule.stats.installed,
            })
            .collect(),
        lost: log.lost,
    }
}

fn add_rules(
    bridges: &mut [Bridge],
    bridge: &str,
    rules: Vec<Rule>,
    now: Timestamp,
) -> Answer<RulesChanged> {
    let Some(b) = bridge_mut(bridges, bridge) else {
        return Answer::refused(no_bridge(bridge), None);
    };
    let expired = take_expired(b);
    // Kernel drops so far belong to the rules as they were.
    b.credit_xdp(now);
    let count = rules.len();
    for rule in rules {
        b.pipe().add_rule(rule, now);
    }
    b.push_xdp_rules();
    Answer::ok(RulesChanged { count, expired })
}

fn del_rules(
    bridges: &mut [Bridge],
    bridge: &str,
    spec: &MatchSpec,
    strict: bool,
    now: Timestamp,
) -> Answer<RulesChanged> {
    let Some(b) = bridge_mut(bridges, bridge) else {
        return Answer::refused(no_bridge(bridge), None);
    };
    let expired = take_expired(b);
    b.credit_xdp(now);
    let count = b.pipe().delete_rules(spec, strict);
    if count > 0 {
        b.push_xdp_rules();
    }
    Answer::ok(RulesChanged { count, expired })
}

fn replace_rules(
    bridges: &mut [Bridge],
    bridge: &str,
    tables: Box<FlowTables>,
    now: Timestamp,
) -> Answer<Replaced> {
    let Some(b) = bridge_mut(bridges, bridge) else {
        return Answer::refused(no_bridge(bridge), garbage(tables));
    };
    let expired = take_expired(b);
    b.credit_xdp(now);
    let count = tables.len();
    let old = b.pipe().replace_rules(*tables);
    b.push_xdp_rules();
    Answer::ok(Replaced {
        count,
        expired,
        old: Box::new(old),
    })
}

fn carry(bridges: &mut [Bridge], bridge: &str, list: Vec<(u32, RuleStats)>) -> Answer<()> {
    let Some(b) = bridge_mut(bridges, bridge) else {
        return Answer::refused(no_bridge(bridge), None);
    };
    b.pipe().carry(&list);
    Answer::ok_with((), garbage(list))
}

fn set_port_qos(
    bridges: &mut [Bridge],
    bridge: &str,
    port: &str,
    qos: Option<Box<QosConfig>>,
    buffers: Vec<PacketBuf>,
) -> Answer<()> {
    let Some(b) = bridge_mut(bridges, bridge) else {
        return Answer::refused(no_bridge(bridge), garbage(buffers));
    };
    let Some(idx) = b.pipe().port_by_name(port) else {
        return Answer::refused(no_port(bridge, port), garbage(buffers));
    };
    let surplus = b.pipe().set_port_qos(idx, qos.map(|q| *q), buffers);
    Answer::ok_with((), garbage(surplus))
}

fn set_meter(
    bridges: &mut [Bridge],
    bridge: &str,
    id: u32,
    meter: Option<(u64, u64)>,
) -> Answer<()> {
    with_bridge(bridges, bridge, |b| {
        b.pipe()
            .set_meter(id, meter.map(|(r, burst)| Meter::new(r, burst)));
    })
}

fn flush_fdb(b: &mut Bridge) -> usize {
    let n = b.pipe().mac_table().len();
    b.pipe().flush_macs();
    n
}

fn snapshot(
    bridges: &mut [Bridge],
    bridge: Option<&str>,
    rules: bool,
    now: Timestamp,
    stats: EngineStats,
) -> Answer<(Vec<BridgeSnapshot>, EngineStats)> {
    let snaps: Vec<BridgeSnapshot> = bridges
        .iter_mut()
        .filter(|b| bridge.is_none_or(|n| n == b.name()))
        .map(|b| b.snapshot(now, rules))
        .collect();
    if let (Some(n), true) = (bridge, snaps.is_empty()) {
        return Answer::refused(no_bridge(n), None);
    }
    Answer::ok((snaps, stats))
}

fn fdb(b: &mut Bridge, now: Timestamp) -> Vec<FdbRow> {
    let pipe = b.pipe();
    pipe.mac_table()
        .entries(now.secs())
        .into_iter()
        .map(|e| FdbRow {
            vlan: e.vlan,
            mac: Mac(e.mac).to_string(),
            port: pipe
                .port_config(e.port)
                .map_or_else(|| format!("#{}", e.port), |c| c.name.clone()),
            age: e.age,
        })
        .collect()
}

fn trace(
    bridges: &mut [Bridge],
    bridge: &str,
    in_port: &str,
    frame: &[u8],
    now: Timestamp,
) -> Answer<TraceReport> {
    let Some(b) = bridge_mut(bridges, bridge) else {
        return Answer::refused(no_bridge(bridge), None);
    };
    let pipe = b.pipe();
    let Some(idx) = pipe.port_by_name(in_port) else {
        return Answer::refused(no_port(bridge, in_port), None);
    };
    let events = pipe.trace_dry(idx, frame, now);
    let port_names = (0..pipe.n_ports() as u16)
        .map(|i| {
            pipe.port_config(i)
                .map_or_else(|| format!("#{i}"), |c| c.name.clone())
        })
        .collect();
    Answer::ok(TraceReport {
        events,
        port_names,
        warmup_frames: 0,
    })
}
