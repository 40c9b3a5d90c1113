//! A bridge of open ports: its pipeline, the devices behind its ports, one
//! pass over them (receive, switch, send), and the XDP drop rules pushed
//! into its AF_XDP ports.

use std::collections::HashSet;

use xsw_datapath::clock::{Clock, MonotonicClock, Timestamp};
use xsw_datapath::flow::Rule;
use xsw_datapath::packet::{Batch, PacketBuf, BURST};
use xsw_datapath::pipeline::{Pipeline, PipelineOptions, PortConfig};
use xsw_datapath::port::PortError;
use xsw_datapath::qos::Meter;
use xsw_datapath::spec::MeterDef;
use xsw_datapath::table::FlowTables;
use xsw_datapath::trace::NoTrace;
use xsw_ebpf::XdpRule;

use super::device::{Device, PortDef};
use super::report::{BridgeSnapshot, PortReport, RuleSnapshot, TableReport};
use super::xdp::xdp_rules_for;
use crate::error::Error;

/// A bridge to build.
#[derive(Clone, Debug)]
pub struct BridgeDef {
    /// Name.
    pub name: String,
    /// Ports, in ofport order or any.
    pub ports: Vec<PortDef>,
    /// Rules, exactly (an empty table drops everything).
    pub rules: Vec<Rule>,
    /// Meters.
    pub meters: Vec<MeterDef>,
    /// Pipeline options.
    pub options: PipelineOptions,
}

struct LivePort {
    /// `None` for the slot of a deleted port.
    dev: Option<Device>,
    alive: bool,
    /// Pushed XDP rules: the rule id each entry stands for.
    xdp_rules: Vec<u32>,
    /// XDP rule hits already credited, per entry.
    xdp_credited: Vec<(u64, u64)>,
    /// The rules as pushed.
    xdp_pushed: Vec<XdpRule>,
}

impl LivePort {
    fn new(dev: Device) -> LivePort {
        LivePort {
            dev: Some(dev),
            alive: true,
            xdp_rules: Vec::new(),
            xdp_credited: Vec::new(),
            xdp_pushed: Vec::new(),
        }
    }
}

/// A bridge with its open ports.
pub struct Bridge {
    name: String,
    pipe: Pipeline,
    ports: Vec<LivePort>,
    batch: Batch,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("name", &self.name)
            .field("ports", &self.ports.len())
            .finish()
    }
}

impl Bridge {
    /// Builds a bridge: its pipeline and rules, and opens every port. Fails
    /// on the first port that cannot be opened (the others are closed again).
    pub fn build(def: BridgeDef) -> Result<Bridge, Error> {
        let mut devs = Vec::new();
        for p in &def.ports {
            let dev = Device::open(p).map_err(|e| match e {
                Error::Port { port, msg } => Error::Port {
                    port: format!("{}/{port}", def.name),
                    msg,
                },
                other => other,
            })?;
            devs.push(dev);
        }
        Bridge::from_parts(def, devs)
    }

    /// Builds a bridge from its definition and its ports' opened devices
    /// (`devs[i]` for `def.ports[i]`).
    pub fn from_parts(def: BridgeDef, devs: Vec<Device>) -> Result<Bridge, Error> {
        if devs.len() != def.ports.len() {
            return Err(Error::Devices {
                bridge: def.name,
                ports: def.ports.len(),
                devices: devs.len(),
            });
        }
        let cfgs: Vec<PortConfig> = def.ports.iter().map(|p| p.cfg.clone()).collect();
        let mut pipe = Pipeline::new(cfgs, def.options)?;
        let now = MonotonicClock.now();
        for r in &def.rules {
            pipe.add_rule(r.clone(), now);
        }
        for m in &def.meters {
            pipe.set_meter(m.id, Some(Meter::new(m.rate, m.burst)));
        }
        pipe.set_live();
        let ports = devs.into_iter().map(LivePort::new).collect();
        let mut br = Bridge {
            name: def.name,
            pipe,
            ports,
            batch: Batch::new(BURST),
        };
        br.push_xdp_rules();
        Ok(br)
    }

    /// The bridge's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its flow tables.
    pub fn tables(&self) -> &FlowTables {
        self.pipe.tables()
    }

    pub(super) fn pipe(&mut self) -> &mut Pipeline {
        &mut self.pipe
    }

    pub(super) fn poll(&mut self, clock: &MonotonicClock) -> usize {
        let mut total = 0;
        for i in 0..self.ports.len() {
            if !self.ports[i].alive {
                continue;
            }
            let Some(dev) = self.ports[i].dev.as_mut() else {
                continue;
            };
            self.batch.clear();
            match dev.port().rx_burst(&mut self.batch, i as u16, clock) {
                Ok(0) => continue,
                Ok(n) => total += n,
                Err(e) => {
                    self.port_failed(i, &e);
                    continue;
                }
            }
            self.pipe.process(&mut self.batch, &mut NoTrace);
            self.flush(clock);
        }
        // Frames a full tx ring refused last time, and frames QoS shapers
        // held back whose time has come, go out before anything sleeps.
        if total == 0
            && (self.tx_pending() || self.pipe.next_departure().is_some_and(|d| d <= clock.now()))
        {
            self.flush(clock);
        }
        total
    }

    /// True when some port holds frames its device did not accept yet, or
    /// frames its device accepted and will send at the next push.
    pub(super) fn tx_pending(&self) -> bool {
        (0..self.ports.len()).any(|k| {
            self.pipe.egress_len(k as u16) > 0
                || (self.ports[k].alive
                    && self.ports[k].dev.as_ref().is_some_and(|d| d.tx_waiting()))
        })
    }

    /// Pushes frames port `k`'s device accepted but has not sent yet (an
    /// AF_XDP socket in copy mode sends a bounded number per wakeup).
    fn push_waiting(&mut self, k: usize) {
        let lp = &mut self.ports[k];
        if let Some(dev) = lp.dev.as_mut().filter(|d| lp.alive && d.tx_waiting()) {
            if let Err(e) = dev.port().tx_burst(&[]) {
                self.port_failed(k, &e);
            }
        }
    }

    fn flush(&mut self, clock: &MonotonicClock) {
        for k in 0..self.ports.len() {
            let qos = self.pipe.has_qos(k as u16);
            if self.pipe.egress_len(k as u16) == 0 && !qos {
                self.push_waiting(k);
                continue;
            }
            let lp = &mut self.ports[k];
            let dev = match lp.dev.as_mut() {
                Some(d) if lp.alive => d,
                _ => {
                    self.pipe.discard_egress(k as u16);
                    continue;
                }
            };
            let r = if qos {
                self.pipe.flush_port_at(k as u16, dev.port(), clock.now())
            } else {
                self.pipe.flush_port(k as u16, dev.port())
            };
            if let Err(e) = r {
                self.port_failed(k, &e);
            } else if qos {
                // The scheduler may have released nothing this pass.
                self.push_waiting(k);
            }
        }
    }

    fn port_failed(&mut self, i: usize, e: &PortError) {
        let name = self
            .pipe
            .port_config(i as u16)
            .map_or_else(String::new, |c| c.name.clone());
        tracing::warn!(
            "bridge {}: port {name} failed ({e}); taking it down, the other ports carry on",
            self.name
        );
        self.ports[i].alive = false;
        self.pipe.set_port_down(i as u16, true);
    }

    pub(super) fn check_ports(&mut self) {
        for i in 0..self.ports.len() {
            if !self.ports[i].alive {
                continue;
            }
            if let Some(dev) = self.ports[i].dev.as_mut() {
                if let Err(e) = dev.port().flush() {
                    self.port_failed(i, &e);
                }
            }
        }
    }

    /// Adds an opened port (with the buffers its QoS queues need, made
    /// by the caller); on failure hands the device back.
    pub(super) fn add_port(
        &mut self,
        cfg: PortConfig,
        dev: Device,
        buffers: Vec<PacketBuf>,
    ) -> Result<u16, Box<(xsw_datapath::Error, Device)>> {
        let idx = match self.pipe.add_port_with(cfg, Some(buffers)) {
            Ok(i) => i,
            Err(e) => return Err(Box::new((e, dev))),
        };
        let lp = LivePort::new(dev);
        match self.ports.get_mut(idx as usize) {
            Some(slot) => *slot = lp,
            None => self.ports.push(lp),
        }
        self.push_xdp_rules();
        Ok(idx)
    }

    /// Deletes a port; returns its device and the buffers it needed (to
    /// be closed and freed by the caller).
    pub(super) fn remove_port(&mut self, name: &str) -> Option<(Option<Device>, Vec<PacketBuf>)> {
        let idx = self.pipe.port_by_name(name)?;
        let buffers = self.pipe.remove_port(idx);
        let lp = self.ports.get_mut(idx as usize)?;
        lp.alive = false;
        lp.xdp_rules.clear();
        lp.xdp_credited.clear();
        lp.xdp_pushed.clear();
        Some((lp.dev.take(), buffers))
    }

    /// Loads the XDP drop rules into every AF_XDP port (after crediting
    /// what the old ones dropped). A port whose program refuses them keeps
    /// its frames going to userspace, where the same rules apply.
    pub(super) fn push_xdp_rules(&mut self) {
        self.credit_xdp(MonotonicClock.now());
        for i in 0..self.ports.len() {
            let Some(of) = self.pipe.port_config(i as u16).map(|c| c.ofport) else {
                continue;
            };
            let rules = xdp_rules_for(&self.pipe, of);
            let lp = &mut self.ports[i];
            if let Some(p) = lp.dev.as_ref().and_then(Device::afxdp) {
                let xr: Vec<XdpRule> = rules.iter().map(|(_, r)| *r).collect();
                let ids: Vec<u32> = rules.iter().map(|(id, _)| *id).collect();
                if ids == lp.xdp_rules && xr == lp.xdp_pushed {
                    // Unchanged (most changes touch no drop rule): the
                    // program and its counters stay as they are.
                    continue;
                }
                match p.xdp().set_rules(&xr) {
                    Ok(()) => {
                        lp.xdp_rules = ids;
                        lp.xdp_credited = vec![(0, 0); rules.len()];
                        lp.xdp_pushed = xr;
                    }
                    Err(e) => {
                        lp.xdp_rules.clear();
                        lp.xdp_credited.clear();
                        lp.xdp_pushed.clear();
                        // With no rules loaded the program sends every
                        // frame to userspace; if even that fails, the rules
                        // it holds are still exact copies of userspace's.
                        if let Err(e) = p.xdp().set_rules(&[]) {
                            tracing::warn!(
                                "bridge {}: port {i}: clearing its XDP drop rules: {e}",
                                self.name
                            );
                        }
                        tracing::warn!(
                            "bridge {}: port {i}: XDP drop rules not loaded ({e}); they apply in userspace",
                            self.name
                        );
                    }
                }
            }
        }
    }

    /// Adds what the XDP programs dropped to their rules' counters.
    pub(super) fn credit_xdp(&mut self, now: Timestamp) {
        for lp in &mut self.ports {
            let Some(p) = lp.dev.as_ref().and_then(Device::afxdp) else {
                continue;
            };
            let Ok(hits) = p.xdp().rule_hits(lp.xdp_rules.len()) else {
                continue;
            };
            for (k, (pk, by)) in hits.into_iter().enumerate() {
                let (cp, cb) = lp.xdp_credited[k];
                if pk > cp {
                    self.pipe
                        .credit_rule(lp.xdp_rules[k], pk - cp, by.saturating_sub(cb), now);
                    lp.xdp_credited[k] = (pk, by);
                }
            }
        }
    }

    /// The bridge's state; with `rules`, every rule too (a copy: O(rules)).
    pub(super) fn snapshot(&mut self, now: Timestamp, rules: bool) -> BridgeSnapshot {
        for lp in self.ports.iter_mut().filter(|p| p.alive) {
            if let Some(d) = lp.dev.as_mut() {
                d.port().refresh_stats();
            }
        }
        self.credit_xdp(now);
        let in_xdp: HashSet<u32> = self
            .ports
            .iter()
            .flat_map(|p| p.xdp_rules.iter().copied())
            .collect();
        let ports = self
            .ports
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let cfg = self.pipe.port_config(i as u16)?;
                let dev = p.dev.as_ref()?;
                Some(PortReport {
                    name: cfg.name.clone(),
                    ofport: cfg.ofport,
                    device: dev.describe(),
                    xdp_mode: dev.xdp_mode(),
                    up: p.alive,
                    stats: self.pipe.port_stats(i as u16).copied().unwrap_or_default(),
                    backend: dev.backend_stats(),
                    queues: self.pipe.queue_stats(i as u16),
                })
            })
            .collect();
        let tables = self.pipe.tables();
        BridgeSnapshot {
            name: self.name.clone(),
            ports,
            rules: rules.then(|| {
                self.pipe
                    .rules()
                    .iter()
                    .map(|(id, r)| RuleSnapshot {
                        rule: r.rule.clone(),
                        stats: r.stats,
                        in_xdp: in_xdp.contains(id),
                    })
                    .collect()
            }),
            n_rules: tables.len(),
            tables: self
                .pipe
                .table_stats()
                .iter()
                .enumerate()
                .filter(|(t, s)| s.lookups > 0 || tables.table_len(*t as u8) > 0)
                .map(|(t, s)| TableReport {
                    table: t as u8,
                    rules: tables.table_len(t as u8),
                    stats: *s,
                })
                .collect(),
            mac_entries: self.pipe.mac_table().len(),
            mac_max: self.pipe.mac_table().max_entries(),
            meters: self.pipe.meters(),
            emc: self.pipe.emc_stats(),
            at: now,
        }
    }
}

impl Bridge {
    /// One line per open port, for logs.
    pub(super) fn describe_ports(&self, out: &mut Vec<String>) {
        for (i, p) in self.ports.iter().enumerate() {
            let (Some(cfg), Some(dev)) = (self.pipe.port_config(i as u16), p.dev.as_ref()) else {
                continue;
            };
            out.push(format!(
                "bridge {} port {} (ofport {}): {}",
                self.name,
                cfg.name,
                cfg.ofport,
                dev.describe()
            ));
        }
    }

    /// Adds the descriptors of the ports that are up, to sleep on.
    pub(super) fn push_fds(&self, fds: &mut Vec<crate::sys::PollFd>) {
        for p in self.ports.iter().filter(|p| p.alive) {
            if let Some(d) = &p.dev {
                d.push_fds(fds);
            }
        }
    }

    /// When the first frame QoS holds back may leave.
    pub(super) fn next_departure(&self) -> Option<Timestamp> {
        self.pipe.next_departure()
    }

    /// Once a second: timers without traffic, dead ports, XDP rule credits.
    pub(super) fn housekeeping(&mut self, now: Timestamp) {
        self.pipe.run_timers(now);
        self.check_ports();
        self.credit_xdp(now);
    }
}
