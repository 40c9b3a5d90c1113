//! The live switch: bridges of real ports (AF_XDP interfaces, internal tap
//! devices) driven by one polling thread.
//!
//! The thread polls every port of every bridge for a burst, switches it
//! through the bridge's pipeline and sends what the pipeline queued. When a
//! whole pass finds nothing it spins a little, then sleeps in `poll(2)` on
//! every port's descriptor until traffic or the next timer, so an idle
//! switch costs next to no CPU. Ports that vanish are taken down (NORMAL
//! stops flooding to them) and the others keep forwarding.
//!
//! Drop rules that the XDP program can evaluate are pushed into every
//! AF_XDP port's program; the frames they drop in the kernel are credited
//! to the rule's counters here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::clock::{Clock, SystemClock, Timestamp};
use crate::error::Error;
use crate::flow::Rule;
use crate::key::Field;
use crate::packet::{Batch, BURST};
use crate::pipeline::{Pipeline, PipelineOptions, PortConfig};
use crate::port::afxdp::{AfXdpOptions, AfXdpPort};
use crate::port::tap::TapPort;
use crate::port::{BackendStats, Port, PortError};
use crate::stats::PortStats;
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
    /// Rules (empty: the default NORMAL rule).
    pub rules: Vec<Rule>,
    /// Pipeline options.
    pub options: PipelineOptions,
}

enum Device {
    AfXdp(Box<AfXdpPort>),
    Tap(TapPort),
}

impl Device {
    fn port(&mut self) -> &mut dyn Port {
        match self {
            Device::AfXdp(p) => p.as_mut(),
            Device::Tap(p) => p,
        }
    }
    fn fds(&self) -> Vec<i32> {
        match self {
            Device::AfXdp(p) => p.poll_fds(),
            Device::Tap(p) => vec![p.poll_fd()],
        }
    }
}

struct LivePort {
    dev: Device,
    alive: bool,
    /// Pushed XDP rules: the rule id each entry stands for.
    xdp_rules: Vec<u32>,
    /// XDP rule hits already credited, per entry.
    xdp_credited: Vec<(u64, u64)>,
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
    /// False once the device vanished.
    pub up: bool,
    /// Pipeline counters.
    pub stats: PortStats,
    /// Device counters (XDP verdicts, kernel drops).
    pub backend: BackendStats,
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

/// The word-0 bits that are L3/L4 fields (nw_proto, nw_tos).
const W0_L3: u64 = 0xffff << 48;
/// The word-1/2 bits that are L4 ports.
const W12_L4: u64 = 0xffff << 48;

/// Which table-0 drop rules the XDP program of the port numbered `ofport`
/// can enforce, highest priority first: a drop rule qualifies when it reads
/// only the first four key words, has no idle timeout, and no
/// higher-priority rule that stays in userspace overlaps it (so the
/// kernel's decision and counters are exactly userspace's).
pub fn xdp_rules_for(pipe: &Pipeline, ofport: u16) -> Vec<(u32, XdpRule)> {
    let mut out = Vec::new();
    let mut blockers: Vec<crate::flow::Match> = Vec::new();
    for (id, r) in pipe.rules() {
        if r.rule.table != 0 {
            continue;
        }
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
        let pushable = r.rule.actions.is_empty()
            && simple
            && r.rule.idle_timeout == 0
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
        } else {
            blockers.push(*m);
        }
    }
    out
}

/// The polling engine.
#[derive(Debug)]
pub struct Engine {
    bridges: Vec<Bridge>,
    clock: SystemClock,
    /// How long to keep polling after the last frame before sleeping: traffic
    /// that pauses for less than this (a ping every few milliseconds) never
    /// waits for a wakeup; an idle switch sleeps.
    pub spin_for: Duration,
    /// Longest sleep when idle.
    pub max_sleep: Duration,
}

fn open_port(def: &PortDef) -> Result<Device, Error> {
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
            if let Some(m) = def.cfg.mtu {
                let need = m;
                if p.info().mtu < need {
                    return Err(perr(format!(
                        "interface {iface} has MTU {} but the port's mtu is {need}: raise the interface's (ip link set {iface} mtu {need})",
                        p.info().mtu
                    )));
                }
            }
            Ok(Device::AfXdp(Box::new(p)))
        }
        PortKind::Internal { iface } => TapPort::create(&def.cfg.name, iface, def.cfg.mtu)
            .map(Device::Tap)
            .map_err(|e| perr(format!("internal port {iface}: {e}"))),
    }
}

impl Engine {
    /// Opens every port of every bridge. Fails on the first port that cannot
    /// be opened (ports already opened are closed again).
    pub fn start(defs: Vec<BridgeDef>) -> Result<Engine, Error> {
        let mut bridges = Vec::new();
        for b in defs {
            let cfgs: Vec<PortConfig> = b.ports.iter().map(|p| p.cfg.clone()).collect();
            let mut pipe = Pipeline::new(cfgs, b.options)?;
            let now = SystemClock.now();
            if b.rules.is_empty() {
                pipe.add_rule(Rule::default_normal(), now);
            }
            for r in &b.rules {
                pipe.add_rule(r.clone(), now);
            }
            let mut ports = Vec::new();
            for p in &b.ports {
                let dev = open_port(p).map_err(|e| match e {
                    Error::Port { port, msg } => Error::Port {
                        port: format!("{}/{port}", b.name),
                        msg,
                    },
                    other => other,
                })?;
                ports.push(LivePort {
                    dev,
                    alive: true,
                    xdp_rules: Vec::new(),
                    xdp_credited: Vec::new(),
                });
            }
            let mut br = Bridge {
                name: b.name,
                pipe,
                ports,
                batch: Batch::new(BURST),
            };
            br.push_xdp_rules()?;
            bridges.push(br);
        }
        Ok(Engine {
            bridges,
            clock: SystemClock,
            spin_for: Duration::from_millis(20),
            max_sleep: Duration::from_millis(200),
        })
    }

    /// One-line descriptions of the open ports, for logs.
    pub fn describe(&self) -> Vec<String> {
        let mut v = Vec::new();
        for b in &self.bridges {
            for (i, p) in b.ports.iter().enumerate() {
                let cfg = b.pipe.port_config(i as u16);
                let name = cfg.map_or("?", |c| c.name.as_str());
                let of = cfg.map_or(0, |c| c.ofport);
                v.push(format!(
                    "bridge {} port {name} (ofport {of}): {}",
                    b.name,
                    device_text(&p.dev)
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
        // When the rings were last seen empty after traffic; None while busy.
        let mut idle_since: Option<Instant> = None;
        while !stop.load(Ordering::Relaxed) {
            let got = self.poll_once();
            passes = passes.wrapping_add(1);
            if got > 0 {
                idle_since = None;
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
            let since = *idle_since.get_or_insert(now);
            if now.duration_since(since) >= self.spin_for {
                self.sleep(self.max_sleep);
                // Woken by traffic (or the timeout): poll again, and sleep
                // again at once if that finds nothing.
                idle_since = Instant::now().checked_sub(self.spin_for);
            } else {
                std::hint::spin_loop();
            }
        }
        self.housekeeping();
        tick(self);
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
        for b in &self.bridges {
            for p in b.ports.iter().filter(|p| p.alive) {
                for fd in p.dev.fds() {
                    fds.push(libc::pollfd {
                        fd,
                        events: libc::POLLIN,
                        revents: 0,
                    });
                }
            }
        }
        let ms = max.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: `fds` is a valid array of pollfd structs we own for the
        // duration of the call; poll only writes their `revents`.
        unsafe {
            libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms);
        }
    }

    /// Reports for every bridge.
    pub fn report(&self) -> Vec<BridgeReport> {
        self.bridges
            .iter()
            .map(|b| b.report(self.clock.now()))
            .collect()
    }
}

fn device_text(d: &Device) -> String {
    match d {
        Device::AfXdp(p) => format!(
            "{} afxdp, {} XDP, {} mode, {} queue(s), mtu {}",
            p.info().name,
            p.xdp_mode().name(),
            if p.zero_copy() { "zero-copy" } else { "copy" },
            p.poll_fds().len(),
            p.info().mtu
        ),
        Device::Tap(t) => format!("{} internal (tap)", t.ifname()),
    }
}

impl Bridge {
    fn poll(&mut self, clock: &SystemClock) -> usize {
        let mut total = 0;
        for i in 0..self.ports.len() {
            if !self.ports[i].alive {
                continue;
            }
            self.batch.clear();
            match self.ports[i]
                .dev
                .port()
                .rx_burst(&mut self.batch, i as u16, clock)
            {
                Ok(0) => continue,
                Ok(n) => total += n,
                Err(e) => {
                    self.port_failed(i, &e);
                    continue;
                }
            }
            self.pipe
                .process(&mut self.batch, &mut crate::trace::NoTrace);
            self.flush();
        }
        // Frames a full tx ring refused last time go out before anything
        // sleeps.
        if total == 0 && self.tx_pending() {
            self.flush();
        }
        total
    }

    /// True when some port holds frames its device did not accept yet.
    fn tx_pending(&self) -> bool {
        (0..self.ports.len()).any(|k| self.pipe.egress_len(k as u16) > 0)
    }

    fn flush(&mut self) {
        for k in 0..self.ports.len() {
            if self.pipe.egress_len(k as u16) == 0 {
                continue;
            }
            if !self.ports[k].alive {
                self.pipe.discard_egress(k as u16);
                continue;
            }
            if let Err(e) = self.pipe.flush_port(k as u16, self.ports[k].dev.port()) {
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
            if self.ports[i].alive {
                if let Err(e) = self.ports[i].dev.port().flush() {
                    self.port_failed(i, &e);
                }
            }
        }
    }

    /// Loads the XDP drop rules into every AF_XDP port.
    fn push_xdp_rules(&mut self) -> Result<(), Error> {
        for i in 0..self.ports.len() {
            let Some(of) = self.pipe.port_config(i as u16).map(|c| c.ofport) else {
                continue;
            };
            let rules = xdp_rules_for(&self.pipe, of);
            if let Device::AfXdp(p) = &self.ports[i].dev {
                let xr: Vec<XdpRule> = rules.iter().map(|(_, r)| *r).collect();
                p.xdp().set_rules(&xr).map_err(|e| Error::Port {
                    port: format!("{}/{}", self.name, i),
                    msg: e.to_string(),
                })?;
                self.ports[i].xdp_rules = rules.iter().map(|(id, _)| *id).collect();
                self.ports[i].xdp_credited = vec![(0, 0); rules.len()];
            }
        }
        Ok(())
    }

    /// Adds what the XDP programs dropped to their rules' counters.
    fn credit_xdp(&mut self, now: Timestamp) {
        for lp in &mut self.ports {
            let Device::AfXdp(p) = &lp.dev else { continue };
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

    fn report(&self, now: Timestamp) -> BridgeReport {
        let in_xdp: std::collections::HashSet<u32> = self
            .ports
            .iter()
            .flat_map(|p| p.xdp_rules.iter().copied())
            .collect();
        BridgeReport {
            name: self.name.clone(),
            ports: self
                .ports
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let cfg = self.pipe.port_config(i as u16);
                    let backend = match &p.dev {
                        Device::AfXdp(x) => x.backend_stats(),
                        Device::Tap(t) => t.backend_stats(),
                    };
                    PortReport {
                        name: cfg.map_or_else(String::new, |c| c.name.clone()),
                        ofport: cfg.map_or(0, |c| c.ofport),
                        device: device_text(&p.dev),
                        up: p.alive,
                        stats: self.pipe.port_stats(i as u16).copied().unwrap_or_default(),
                        backend,
                    }
                })
                .collect(),
            rules: self
                .pipe
                .rules()
                .iter()
                .map(|(id, r)| RuleReport {
                    dump: crate::pipeline::dump_flow(r, now),
                    n_packets: r.stats.packets,
                    n_bytes: r.stats.bytes,
                    in_xdp: in_xdp.contains(id),
                })
                .collect(),
            mac_entries: self.pipe.mac_table().len(),
        }
    }
}
