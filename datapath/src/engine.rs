//! The live switch: bridges of real ports (AF_XDP interfaces, internal tap
//! devices) driven by one polling thread.
//!
//! The thread polls every port of every bridge for a burst, switches it
//! through the bridge's pipeline and sends what the pipeline queued. When
//! the rings stay empty for a while it sleeps in `poll(2)` on every port's
//! descriptor (and on the control plane's wakeup descriptor) until traffic,
//! a command or the next timer, so an idle switch costs next to no CPU.
//! Ports that vanish are taken down (NORMAL stops flooding to them) and the
//! others keep forwarding.
//!
//! The control plane talks to the thread through an [`EngineHandle`]
//! (see [`crate::live`]): commands travel on a channel and are carried out
//! between two passes, never in the middle of a batch. Anything expensive
//! (parsing rules, building a whole new flow table, opening a device) is
//! done by the caller before it sends the command; what the thread replaces
//! (old tables, closed devices) goes back to the caller to be freed there.
//!
//! Drop rules that the XDP program can evaluate are pushed into every
//! AF_XDP port's program; the frames they drop in the kernel are credited
//! to the rule's counters here.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::clock::{Clock, MonotonicClock, Timestamp};
use crate::error::Error;
use crate::flow::Rule;
use crate::key::Field;
use crate::live::{Op, Reply, Request};
use crate::packet::{Batch, BURST};
use crate::pipeline::{Pipeline, PipelineOptions, PortConfig};
use crate::port::afxdp::{AfXdpOptions, AfXdpPort};
use crate::port::tap::TapPort;
use crate::port::{BackendStats, Port, PortError};
use crate::stats::{PortStats, TableStats};
use crate::table::RuleStats;
use xsw_ebpf::{AttachMode, XdpRule};

/// What kind of device a port is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortKind {
    /// An existing interface (NIC, veth, a VM's tap) driven through AF_XDP.
    AfXdp {
        /// The interface.
        iface: String,
        /// Pass the host's own traffic on it to the host stack.
        host_pass: bool,
        /// Force native or generic XDP.
        xdp_mode: Option<AttachMode>,
        /// Force zero-copy or copy.
        zero_copy: Option<bool>,
    },
    /// A tap device xsw creates and holds: the host's interface on the bridge.
    Internal {
        /// The device to create.
        iface: String,
    },
}

/// A port to open.
#[derive(Clone, Debug)]
pub struct PortDef {
    /// Pipeline configuration (name, ofport, VLANs, MTU).
    pub cfg: PortConfig,
    /// Device.
    pub kind: PortKind,
}

/// A bridge to build.
#[derive(Clone, Debug)]
pub struct BridgeDef {
    /// Name.
    pub name: String,
    /// Ports, in ofport order or any.
    pub ports: Vec<PortDef>,
    /// Rules, exactly (an empty table drops everything).
    pub rules: Vec<Rule>,
    /// Meters: (id, rate bits/s, burst bits).
    pub meters: Vec<(u32, u64, u64)>,
    /// Pipeline options.
    pub options: PipelineOptions,
}

/// An open device: an AF_XDP interface or an internal tap.
pub struct Device(DeviceKind);

enum DeviceKind {
    AfXdp(Box<AfXdpPort>),
    Tap(TapPort),
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Device {
    /// Opens the device for `def` (attaching the XDP program and binding
    /// the sockets, or creating the tap). Errors name the port and say
    /// what to do.
    pub fn open(def: &PortDef) -> Result<Device, Error> {
        let perr = |msg: String| Error::Port {
            port: def.cfg.name.clone(),
            msg,
        };
        match &def.kind {
            PortKind::AfXdp {
                iface,
                host_pass,
                xdp_mode,
                zero_copy,
            } => {
                let opts = AfXdpOptions {
                    ofport: def.cfg.ofport,
                    host_pass: *host_pass,
                    xdp_mode: *xdp_mode,
                    zero_copy: *zero_copy,
                };
                let p = AfXdpPort::open(&def.cfg.name, iface, &opts)
                    .map_err(|e| perr(format!("interface {iface}: {e}")))?;
                if let Some(need) = def.cfg.mtu {
                    if p.info().mtu < need {
                        return Err(perr(format!(
                            "interface {iface} has MTU {} but the port's mtu is {need}: raise the interface's (ip link set {iface} mtu {need})",
                            p.info().mtu
                        )));
                    }
                }
                Ok(Device(DeviceKind::AfXdp(Box::new(p))))
            }
            PortKind::Internal { iface } => TapPort::create(&def.cfg.name, iface, def.cfg.mtu)
                .map(|t| Device(DeviceKind::Tap(t)))
                .map_err(|e| perr(format!("internal port {iface}: {e}"))),
        }
    }

    /// Device and mode, e.g. `veth0 afxdp, native XDP, copy mode, 1 queue(s), mtu 1500`.
    pub fn describe(&self) -> String {
        match &self.0 {
            DeviceKind::AfXdp(p) => format!(
                "{} afxdp, {} XDP, {} mode, {} queue(s), mtu {}",
                p.info().name,
                p.xdp_mode().name(),
                if p.zero_copy() { "zero-copy" } else { "copy" },
                p.poll_fds().len(),
                p.info().mtu
            ),
            DeviceKind::Tap(t) => format!("{} internal (tap)", t.ifname()),
        }
    }

    /// The XDP attach mode, for AF_XDP ports.
    pub fn xdp_mode(&self) -> Option<&'static str> {
        match &self.0 {
            DeviceKind::AfXdp(p) => Some(p.xdp_mode().name()),
            DeviceKind::Tap(_) => None,
        }
    }

    fn port(&mut self) -> &mut dyn Port {
        match &mut self.0 {
            DeviceKind::AfXdp(p) => p.as_mut(),
            DeviceKind::Tap(p) => p,
        }
    }

    fn push_fds(&self, out: &mut Vec<libc::pollfd>) {
        let mut add = |fd| {
            out.push(libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
        };
        match &self.0 {
            DeviceKind::AfXdp(p) => p.poll_fds().into_iter().for_each(add),
            DeviceKind::Tap(p) => add(p.poll_fd()),
        }
    }

    fn backend_stats(&self) -> BackendStats {
        match &self.0 {
            DeviceKind::AfXdp(x) => x.backend_stats(),
            DeviceKind::Tap(t) => t.backend_stats(),
        }
    }
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

/// One port's state for reports.
#[derive(Clone, Debug, Serialize)]
pub struct PortReport {
    /// Name.
    pub name: String,
    /// OpenFlow number.
    pub ofport: u16,
    /// Device and mode, e.g. `veth0 afxdp native copy 1 queue`.
    pub device: String,
    /// XDP attach mode (`native`, `generic`) for AF_XDP ports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xdp_mode: Option<&'static str>,
    /// False once the device vanished.
    pub up: bool,
    /// Pipeline counters.
    pub stats: PortStats,
    /// Device counters (XDP verdicts, kernel drops).
    pub backend: BackendStats,
    /// QoS queues (index = queue), for a port with QoS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queues: Option<[crate::qos::QueueStats; crate::qos::N_QUEUES]>,
}

/// One rule with its counters, as the polling thread hands it out
/// (formatting is left to the caller).
#[derive(Clone, Debug)]
pub struct RuleSnapshot {
    /// The rule.
    pub rule: Rule,
    /// Counters and times.
    pub stats: RuleStats,
    /// True when the XDP program enforces it too.
    pub in_xdp: bool,
}

/// One rule's counters for reports.
#[derive(Clone, Debug, Serialize)]
pub struct RuleReport {
    /// The rule, dump-flows style.
    pub dump: String,
    /// Frames matched (in userspace and, for XDP drop rules, in the kernel).
    pub n_packets: u64,
    /// Their bytes.
    pub n_bytes: u64,
    /// True when the rule is also enforced in the XDP program.
    pub in_xdp: bool,
}

impl RuleSnapshot {
    /// The report line for this rule at time `now`.
    pub fn report(&self, now: Timestamp) -> RuleReport {
        RuleReport {
            dump: crate::pipeline::dump_rule(&self.rule, &self.stats, now),
            n_packets: self.stats.packets,
            n_bytes: self.stats.bytes,
            in_xdp: self.in_xdp,
        }
    }
}

/// A flow table's lookup counters.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct TableReport {
    /// Table id.
    pub table: u8,
    /// Rules in it.
    pub rules: usize,
    /// Counters.
    #[serde(flatten)]
    pub stats: TableStats,
}

/// A bridge's state, as the polling thread hands it out.
#[derive(Clone, Debug)]
pub struct BridgeSnapshot {
    /// Name.
    pub name: String,
    /// Ports (deleted ports left out).
    pub ports: Vec<PortReport>,
    /// Rules in dump order, when asked for.
    pub rules: Option<Vec<RuleSnapshot>>,
    /// Rules installed.
    pub n_rules: usize,
    /// Tables with rules or lookups.
    pub tables: Vec<TableReport>,
    /// Learned MACs.
    pub mac_entries: usize,
    /// MAC table limit.
    pub mac_max: usize,
    /// Meters, by id.
    pub meters: Vec<crate::qos::MeterReport>,
    /// Exact-match cache counters.
    pub emc: crate::emc::EmcStats,
    /// When it was taken.
    pub at: Timestamp,
}

/// A bridge's state for reports.
#[derive(Clone, Debug, Serialize)]
pub struct BridgeReport {
    /// Name.
    pub name: String,
    /// Ports.
    pub ports: Vec<PortReport>,
    /// Rules.
    pub rules: Vec<RuleReport>,
    /// Learned MACs.
    pub mac_entries: usize,
}

impl BridgeSnapshot {
    /// The report (rules formatted dump-flows style).
    pub fn report(&self) -> BridgeReport {
        BridgeReport {
            name: self.name.clone(),
            ports: self.ports.clone(),
            rules: self
                .rules
                .iter()
                .flatten()
                .map(|r| r.report(self.at))
                .collect(),
            mac_entries: self.mac_entries,
        }
    }
}

/// The polling thread's own counters.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct EngineStats {
    /// Seconds since the engine started running.
    pub run_seconds: f64,
    /// Of those, seconds spent switching frames (not spinning on empty
    /// rings or sleeping).
    pub busy_seconds: f64,
    /// Commands from the control plane carried out.
    pub commands: u64,
}

/// The word-0 bits that are L3/L4 fields (nw_proto, nw_tos).
const W0_L3: u64 = 0xffff << 48;
/// The word-1/2 bits that are L4 ports.
const W12_L4: u64 = 0xffff << 48;

/// How many of table 0's highest-priority rules are considered for the XDP
/// program (it holds [`xsw_ebpf::MAX_RULES`]); rules further down stay in
/// userspace, which keeps this O(rules) however large the table.
const XDP_CANDIDATES: usize = 4096;

/// Which table-0 drop rules the XDP program of the port numbered `ofport`
/// can enforce, highest priority first: a drop rule qualifies when it reads
/// only the first four key words, has no timeouts, and no
/// higher-priority rule that stays in userspace overlaps it (so the
/// kernel's decision and counters are exactly userspace's).
pub fn xdp_rules_for(pipe: &Pipeline, ofport: u16) -> Vec<(u32, XdpRule)> {
    let mut out = Vec::new();
    let mut blockers: Vec<crate::flow::Match> = Vec::new();
    let mut top: Vec<(u32, &crate::table::Installed)> = pipe.tables().table_rules(0);
    let by_rank = |a: &(u32, &crate::table::Installed), b: &(u32, &crate::table::Installed)| {
        b.1.rank.cmp(&a.1.rank)
    };
    if top.len() > XDP_CANDIDATES {
        top.select_nth_unstable_by(XDP_CANDIDATES, by_rank);
        top.truncate(XDP_CANDIDATES);
    }
    top.sort_unstable_by(by_rank);
    for (id, r) in top {
        let m = &r.rule.matches;
        // A rule for another in_port never sees this port's frames.
        let (inp, inm) = m.get(Field::InPort);
        if inm != 0 && inp != ofport as u64 {
            continue;
        }
        let overlaps = |b: &crate::flow::Match| {
            let common = b.mask.and(&m.mask);
            b.value.and(&common) == m.value.and(&common)
        };
        let simple = m.mask.w[4..].iter().all(|w| *w == 0);
        // Rules with timeouts stay in userspace: the kernel would go on
        // dropping after they expire.
        let pushable = r.rule.actions.is_empty()
            && simple
            && r.rule.idle_timeout == 0
            && r.rule.hard_timeout == 0
            && out.len() < xsw_ebpf::MAX_RULES
            && !blockers.iter().any(overlaps);
        if pushable {
            let mut mask = [0u64; 4];
            let mut value = [0u64; 4];
            mask.copy_from_slice(&m.mask.w[..4]);
            value.copy_from_slice(&m.value.w[..4]);
            // in_port was checked above; the program knows its own port.
            let needs_l3 = mask[0] & W0_L3 != 0
                || mask[1] & W12_L4 != 0
                || mask[2] & W12_L4 != 0
                || mask[3] != 0;
            out.push((
                id,
                XdpRule {
                    mask,
                    value,
                    needs_l3,
                },
            ));
        } else if out.len() >= xsw_ebpf::MAX_RULES {
            // The program is full: nothing after this is pushed.
            break;
        } else {
            blockers.push(*m);
        }
    }
    out
}

/// The control plane's way in: a command channel and an eventfd that wakes
/// the polling thread when it sleeps.
struct Link {
    rx: crossbeam_channel::Receiver<Request>,
    wake: Arc<OwnedFd>,
}

/// The polling engine.
#[derive(Debug)]
pub struct Engine {
    pub(crate) bridges: Vec<Bridge>,
    pub(crate) clock: MonotonicClock,
    /// How long to keep polling after the last frame before sleeping: traffic
    /// that pauses for less than this (a ping every few milliseconds) never
    /// waits for a wakeup; an idle switch sleeps.
    pub spin_for: Duration,
    /// Longest sleep when idle.
    pub max_sleep: Duration,
    link: Option<Link>,
    started: Instant,
    idle: Duration,
    pub(crate) commands: u64,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Link")
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
            return Err(Error::Invalid(format!(
                "bridge {}: {} ports but {} devices",
                def.name,
                def.ports.len(),
                devs.len()
            )));
        }
        let cfgs: Vec<PortConfig> = def.ports.iter().map(|p| p.cfg.clone()).collect();
        let mut pipe = Pipeline::new(cfgs, def.options)?;
        let now = MonotonicClock.now();
        for r in &def.rules {
            pipe.add_rule(r.clone(), now);
        }
        for (id, rate, burst) in &def.meters {
            pipe.set_meter(*id, Some(crate::qos::Meter::new(*rate, *burst)));
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
    pub fn tables(&self) -> &crate::table::FlowTables {
        self.pipe.tables()
    }

    pub(crate) fn pipe(&mut self) -> &mut Pipeline {
        &mut self.pipe
    }

    fn poll(&mut self, clock: &MonotonicClock) -> usize {
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
            self.pipe
                .process(&mut self.batch, &mut crate::trace::NoTrace);
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

    /// True when some port holds frames its device did not accept yet.
    fn tx_pending(&self) -> bool {
        (0..self.ports.len()).any(|k| self.pipe.egress_len(k as u16) > 0)
    }

    fn flush(&mut self, clock: &MonotonicClock) {
        for k in 0..self.ports.len() {
            let qos = self.pipe.has_qos(k as u16);
            if self.pipe.egress_len(k as u16) == 0 && !qos {
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

    fn check_ports(&mut self) {
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
    pub(crate) fn add_port(
        &mut self,
        cfg: PortConfig,
        dev: Device,
        buffers: Vec<crate::packet::PacketBuf>,
    ) -> Result<u16, Box<(Error, Device)>> {
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
    pub(crate) fn remove_port(
        &mut self,
        name: &str,
    ) -> Option<(Option<Device>, Vec<crate::packet::PacketBuf>)> {
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
    pub(crate) fn push_xdp_rules(&mut self) {
        self.credit_xdp(MonotonicClock.now());
        for i in 0..self.ports.len() {
            let Some(of) = self.pipe.port_config(i as u16).map(|c| c.ofport) else {
                continue;
            };
            let rules = xdp_rules_for(&self.pipe, of);
            let lp = &mut self.ports[i];
            if let Some(Device(DeviceKind::AfXdp(p))) = &lp.dev {
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
                        let _ = p.xdp().set_rules(&[]);
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
    pub(crate) fn credit_xdp(&mut self, now: Timestamp) {
        for lp in &mut self.ports {
            let Some(Device(DeviceKind::AfXdp(p))) = &lp.dev else {
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
    pub(crate) fn snapshot(&mut self, now: Timestamp, rules: bool) -> BridgeSnapshot {
        for lp in self.ports.iter_mut().filter(|p| p.alive) {
            if let Some(d) = lp.dev.as_mut() {
                d.port().refresh_stats();
            }
        }
        self.credit_xdp(now);
        let in_xdp: std::collections::HashSet<u32> = self
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

/// Creates a non-blocking eventfd.
fn eventfd() -> Result<OwnedFd, Error> {
    // SAFETY: eventfd takes plain integers and returns a new descriptor or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(Error::Invalid(format!(
            "eventfd: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: `fd` was just returned by eventfd and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl Engine {
    /// An engine with no bridges (add them through an [`EngineHandle`]).
    pub fn new() -> Engine {
        Engine {
            bridges: Vec::new(),
            clock: MonotonicClock,
            spin_for: Duration::from_millis(20),
            max_sleep: Duration::from_millis(200),
            link: None,
            started: Instant::now(),
            idle: Duration::ZERO,
            commands: 0,
        }
    }

    /// Opens every port of every bridge. Fails on the first port that cannot
    /// be opened (ports already opened are closed again).
    pub fn start(defs: Vec<BridgeDef>) -> Result<Engine, Error> {
        let mut e = Engine::new();
        for b in defs {
            e.bridges.push(Bridge::build(b)?);
        }
        Ok(e)
    }

    /// Adds a built bridge (before the engine runs).
    pub fn push_bridge(&mut self, b: Bridge) {
        self.bridges.push(b);
    }

    /// The handle through which other threads command this engine. Calling
    /// it again replaces the previous link.
    pub fn handle(&mut self) -> Result<EngineHandle, Error> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let wake = Arc::new(eventfd()?);
        self.link = Some(Link {
            rx,
            wake: wake.clone(),
        });
        Ok(EngineHandle { tx, wake })
    }

    /// One-line descriptions of the open ports, for logs.
    pub fn describe(&self) -> Vec<String> {
        let mut v = Vec::new();
        for b in &self.bridges {
            for (i, p) in b.ports.iter().enumerate() {
                let (Some(cfg), Some(dev)) = (b.pipe.port_config(i as u16), p.dev.as_ref()) else {
                    continue;
                };
                v.push(format!(
                    "bridge {} port {} (ofport {}): {}",
                    b.name,
                    cfg.name,
                    cfg.ofport,
                    dev.describe()
                ));
            }
        }
        v
    }

    /// Runs until `stop` is set.
    pub fn run(&mut self, stop: &AtomicBool) {
        self.run_with(stop, |_| {});
    }

    /// Runs until `stop` is set, calling `tick` about once a second (after
    /// housekeeping) and once more at the end.
    pub fn run_with<F: FnMut(&Engine)>(&mut self, stop: &AtomicBool, mut tick: F) {
        let mut passes = 0u32;
        let mut last_check = Instant::now();
        self.started = Instant::now();
        // When the current stretch of empty passes began; None while busy.
        let mut idle_from: Option<Instant> = None;
        // Just woke from a sleep: sleep again at once if nothing is there.
        let mut woke = false;
        while !stop.load(Ordering::Relaxed) {
            self.commands_pending();
            let got = self.poll_once();
            passes = passes.wrapping_add(1);
            if got > 0 {
                if let Some(s) = idle_from.take() {
                    self.idle += s.elapsed();
                }
                woke = false;
                // Under load, look at the clock every 64 passes only.
                if passes % 64 != 0 {
                    continue;
                }
            }
            let now = Instant::now();
            if now.duration_since(last_check) >= Duration::from_secs(1) {
                self.housekeeping();
                tick(self);
                last_check = now;
            }
            if got > 0 || self.bridges.iter().any(Bridge::tx_pending) {
                continue;
            }
            // Frames QoS holds back: sleep no longer than until the first
            // may leave.
            let mut max_sleep = self.max_sleep;
            if let Some(d) = self
                .bridges
                .iter()
                .filter_map(|b| b.pipe.next_departure())
                .min()
            {
                let wait = d.0.saturating_sub(self.clock.now().0);
                if wait == 0 {
                    continue;
                }
                max_sleep = max_sleep.min(Duration::from_nanos(wait));
            }
            let since = *idle_from.get_or_insert(now);
            if woke || now.duration_since(since) >= self.spin_for.min(max_sleep) {
                self.idle += now.duration_since(since);
                self.sleep(max_sleep);
                let after = Instant::now();
                self.idle += after.duration_since(now);
                idle_from = Some(after);
                woke = true;
            } else {
                std::hint::spin_loop();
            }
        }
        self.housekeeping();
        tick(self);
    }

    /// Carries out the commands waiting on the link, if any.
    fn commands_pending(&mut self) {
        let Some(link) = &self.link else { return };
        if link.rx.is_empty() {
            return;
        }
        let rx = link.rx.clone();
        while let Ok(req) = rx.try_recv() {
            let reply = self.apply(req.op);
            self.commands += 1;
            // The caller may have given up waiting; the reply (and whatever
            // it carries) is then dropped here.
            let _ = req.reply.send(reply);
        }
    }

    /// Switches what every port has ready; returns frames received.
    pub fn poll_once(&mut self) -> usize {
        let mut total = 0;
        for b in &mut self.bridges {
            total += b.poll(&self.clock);
        }
        total
    }

    /// Once a second: timers without traffic, dead ports, XDP rule credits.
    pub fn housekeeping(&mut self) {
        let now = self.clock.now();
        for b in &mut self.bridges {
            b.pipe.run_timers(now);
            b.check_ports();
            b.credit_xdp(now);
        }
    }

    fn sleep(&mut self, max: Duration) {
        let mut fds: Vec<libc::pollfd> = Vec::new();
        if let Some(l) = &self.link {
            fds.push(libc::pollfd {
                fd: l.wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        for b in &self.bridges {
            for p in b.ports.iter().filter(|p| p.alive) {
                if let Some(d) = &p.dev {
                    d.push_fds(&mut fds);
                }
            }
        }
        let ts = libc::timespec {
            tv_sec: max.as_secs().min(i32::MAX as u64) as libc::time_t,
            tv_nsec: max.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `fds` is a valid array of pollfd structs we own for the
        // duration of the call, `ts` a valid timespec; ppoll only writes
        // the `revents` fields and uses no signal mask (null).
        unsafe {
            libc::ppoll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                &ts,
                std::ptr::null(),
            );
        }
        if let Some(l) = &self.link {
            let mut v = [0u8; 8];
            // SAFETY: reads at most 8 bytes into `v`, which we own; the
            // eventfd is non-blocking, so this returns at once when unset.
            unsafe {
                libc::read(l.wake.as_raw_fd(), v.as_mut_ptr().cast(), v.len());
            }
        }
    }

    /// The polling thread's counters.
    pub fn stats(&self) -> EngineStats {
        let run = self.started.elapsed();
        EngineStats {
            run_seconds: run.as_secs_f64(),
            busy_seconds: run.saturating_sub(self.idle).as_secs_f64(),
            commands: self.commands,
        }
    }

    /// Every bridge's state, with its rules.
    pub fn snapshot(&mut self) -> Vec<BridgeSnapshot> {
        let now = self.clock.now();
        self.bridges
            .iter_mut()
            .map(|b| b.snapshot(now, true))
            .collect()
    }

    /// Reports for every bridge.
    pub fn report(&mut self) -> Vec<BridgeReport> {
        self.snapshot().iter().map(BridgeSnapshot::report).collect()
    }
}

impl Default for Engine {
    fn default() -> Self {
        Engine::new()
    }
}

/// Commands a running [`Engine`] from another thread. Cheap to clone.
#[derive(Clone, Debug)]
pub struct EngineHandle {
    tx: crossbeam_channel::Sender<Request>,
    wake: Arc<OwnedFd>,
}

impl EngineHandle {
    /// How long a command may take before the caller gives up.
    pub const TIMEOUT: Duration = Duration::from_secs(30);

    /// Sends `op` to the polling thread and waits for it to be carried out.
    /// The reply comes once the change is in effect: the next batch sees it.
    pub fn call(&self, op: Op) -> Result<Reply, Error> {
        let (rtx, rrx) = crossbeam_channel::bounded(1);
        self.tx
            .send(Request { op, reply: rtx })
            .map_err(|_| Error::Invalid("the switch's polling thread has stopped".into()))?;
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from `one`, which lives across the call, to
        // an eventfd we hold open through `self.wake`.
        unsafe {
            libc::write(
                self.wake.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            );
        }
        rrx.recv_timeout(Self::TIMEOUT).map_err(|_| {
            Error::Invalid("the switch's polling thread did not answer in time".into())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::parse_flow;

    #[test]
    fn only_untimed_drop_rules_go_to_xdp() {
        let mut p = Pipeline::new(
            vec![PortConfig::new("a", 1), PortConfig::new("b", 2)],
            PipelineOptions::default(),
        )
        .expect("pipeline");
        for r in [
            "priority=30,udp,tp_dst=9,hard_timeout=10,actions=drop",
            "priority=20,udp,tp_dst=8,idle_timeout=10,actions=drop",
            "priority=10,udp,tp_dst=7,actions=drop",
            "priority=0,actions=NORMAL",
        ] {
            p.add_rule(parse_flow(r, &()).expect("rule"), Timestamp(0));
        }
        let pushed = xdp_rules_for(&p, 1);
        assert_eq!(pushed.len(), 1, "only the rule without timeouts");
        let (_, r) = pushed[0];
        assert_eq!(r.value[2] >> 48, 7);
    }
}
