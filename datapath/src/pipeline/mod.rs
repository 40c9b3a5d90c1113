//! The switching pipeline: parse → tables (cache, classifier) → actions
//! (NORMAL included) → egress queues.
//!
//! One [`Pipeline`] is one bridge's datapath, driven by one thread: it takes
//! no locks and allocates nothing per frame (buffers come from its pool,
//! scratch space is reused). Frames of a batch are handled strictly in
//! order, so a batch of any size behaves like frames handled one by one —
//! replay relies on that.
//!
//! Translation follows Open vSwitch's `xlate_actions`: actions change a
//! *logical* flow (VLAN stack, MACs); the frame's bytes are brought in line
//! ("committed") only when a copy is output, so `output:1,mod_vlan_vid:5,
//! output:2` sends the original to port 1 and the tagged frame to port 2.
//! The last output takes the frame's own buffer; earlier ones take copies.

use crate::classifier::Rank;
use crate::clock::Timestamp;
use crate::emc::{Emc, Hint, NO_RULE};
use crate::error::Error;
use crate::flow::{Action, MatchSpec, Rule};
use crate::key::{Field, FlowKey};
use crate::mac::MacTable;
use crate::packet::{Batch, BufPool, PacketBuf, BURST, MAX_FRAME, NO_QUEUE};
use crate::parse::consts::*;
use crate::parse::{self, eth_type_vlan, ETH_HEADER_LEN};
use crate::port::{Port, PortError};
use crate::stats::{DropReason, PortStats, TableStats};
use crate::table::{FlowTables, Installed, Removed};
use crate::trace::{TraceEvent, Tracer};
use crate::vlan::{PortVlan, Tag, Xvlan};

/// NORMAL decision codes kept in the exact-match cache's hint.
const NORMAL_KIND: u32 = 0xf_0000;
const NORMAL_UNICAST: u32 = 0x1_0000;
const NORMAL_FLOOD: u32 = 0x2_0000;
const NORMAL_DROP: u32 = 0x3_0000;
/// With `NORMAL_UNICAST`: the frame leaves with the tags it came with.
const NORMAL_SAME_TAGS: u32 = 0x10_0000;

/// Most nested resubmits (OVS: 64).
pub const MAX_DEPTH: u8 = 64;
/// Most frames a port's cut-through puts in class order at once.
/// (Frame indices are kept in a byte.)
const SORT_MAX: usize = 4 * BURST;
const _: () = assert!(SORT_MAX <= 256);
/// Most resubmits per frame (OVS: 4096).
pub const MAX_RESUBMITS: u32 = 4096;

/// A port as the pipeline knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortConfig {
    /// Name (unique in the bridge).
    pub name: String,
    /// OpenFlow port number (unique, 1..0xff00).
    pub ofport: u16,
    /// VLAN configuration.
    pub vlan: PortVlan,
    /// MTU: the most bytes a frame may carry after its Ethernet header (14
    /// bytes, 18 with a VLAN tag), as OVS and Linux count it. Longer frames
    /// are not sent on the port (counted as `tx_mtu`), as in OVS. `None`:
    /// up to 9216-byte frames.
    pub mtu: Option<u32>,
    /// QoS: egress queues, shapers, ingress priority and policing.
    pub qos: Option<crate::qos::QosConfig>,
}

impl PortConfig {
    /// A trunk port with no MTU limit.
    pub fn new(name: &str, ofport: u16) -> Self {
        PortConfig {
            name: name.to_string(),
            ofport,
            vlan: PortVlan::default(),
            mtu: None,
            qos: None,
        }
    }

    /// Largest L3 payload the port passes.
    pub fn payload_limit(&self) -> usize {
        match self.mtu {
            Some(m) => m as usize,
            None => MAX_FRAME,
        }
    }
}

/// Length of a frame's Ethernet header: 18 with a VLAN tag, else 14.
#[inline(always)]
fn l2_len(frame: &[u8]) -> usize {
    match frame.get(12..14) {
        Some(t) if frame.len() >= 18 && eth_type_vlan(u16::from_be_bytes([t[0], t[1]])) => 18,
        _ => ETH_HEADER_LEN,
    }
}

/// True when `frame` fits a port whose payload limit is `limit`.
#[inline(always)]
fn fits(frame: &[u8], limit: usize) -> bool {
    let len = frame.len();
    len <= ETH_HEADER_LEN + limit
        || (len <= MAX_FRAME && len.saturating_sub(l2_len(frame)) <= limit)
}

/// Pipeline sizing.
#[derive(Clone, Copy, Debug)]
pub struct PipelineOptions {
    /// MAC aging, seconds.
    pub mac_aging_secs: u64,
    /// MAC table size.
    pub mac_max_entries: usize,
    /// Frames one egress queue holds before dropping.
    pub egress_limit: usize,
    /// Spare packet buffers (beyond those in flight in batches).
    pub pool_buffers: usize,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            mac_aging_secs: crate::mac::DEFAULT_AGING_SECS,
            mac_max_entries: crate::mac::DEFAULT_MAX_ENTRIES,
            egress_limit: 1024,
            pool_buffers: 2048,
        }
    }
}

#[derive(Debug)]
struct PortState {
    cfg: PortConfig,
    /// Largest payload after the Ethernet header.
    limit: usize,
    /// The device is gone: nothing is sent to it, NORMAL leaves it out.
    down: bool,
    /// The port was deleted; its slot waits for the next port added.
    removed: bool,
    stats: PortStats,
    /// Frames waiting to be sent, oldest first (with QoS: waiting to be
    /// queued).
    egress: Vec<PacketBuf>,
    /// QoS egress queues, when the port has QoS.
    qos: Option<Box<crate::qos::EgressQos>>,
    /// With QoS: frames the scheduler released that the device has not
    /// taken yet.
    txq: Vec<PacketBuf>,
    /// Ingress policer.
    police: Option<crate::qos::TokenBucket>,
    /// Ingress priority settings (default priority, DSCP map) present.
    ingress_prio: bool,
    /// Tags this port adds get their PCP from DSCP.
    remark: bool,
}

/// A rule that left the tables by timeout, with its final counters.
#[derive(Clone, Debug)]
pub struct RemovedRule {
    /// The rule and its counters.
    pub rule: Installed,
    /// Why.
    pub why: Removed,
    /// When it was removed.
    pub at: Timestamp,
}

/// What the receive and lookup stages hand to the action stage.
#[derive(Debug)]
struct Scratch {
    keys: [FlowKey; BURST],
    hash: [u64; BURST],
    tag0: [Tag; BURST],
    found: [Found; BURST],
    ok: [bool; BURST],
}

/// A table lookup's answer.
#[derive(Clone, Copy, Debug, Default)]
struct Found {
    /// Rule id, or `NO_RULE`.
    rule: u32,
    /// Answered by the exact-match cache.
    cached: bool,
    /// The cache's hint for this flow (NORMAL's last decision).
    hint: Hint,
    /// The key's hash.
    hash: u64,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch {
            keys: [FlowKey::ZERO; BURST],
            hash: [0; BURST],
            tag0: [Tag::default(); BURST],
            found: [Found::default(); BURST],
            ok: [false; BURST],
        }
    }
}

/// Per-frame translation state.
struct Xlate {
    key: FlowKey,
    vlans: [Tag; 2],
    base_vlans: [Tag; 2],
    /// The frame arrived with a VLAN tag.
    in_tagged: bool,
    macs_dirty: bool,
    in_len: usize,
    now: Timestamp,
    table: u8,
    /// Nesting of rule executions (for traces).
    depth: u8,
    /// Nesting of resubmits to the same or an earlier table (OVS's limit).
    rdepth: u8,
    resubmits: u32,
    outputs: u32,
    reason: DropReason,
    error: Option<DropReason>,
    /// A meter dropped the frame: no further action runs, and the outputs
    /// made before stand (as in Open vSwitch's datapath).
    halted: bool,
    queue: u32,
    /// The last output so far: (port, queue chosen when it was output).
    pending: Option<(u16, u32, u8)>,
    /// A `mod_vlan_pcp` set the outer tag's PCP: it is the frame's priority.
    pcp_set: bool,
}

/// One bridge's datapath.
#[derive(Debug)]
pub struct Pipeline {
    ports: Vec<PortState>,
    by_ofport: Vec<u16>,
    tables: FlowTables,
    emc: Emc,
    mac: MacTable,
    pool: BufPool,
    opts: PipelineOptions,
    emitted: Vec<u16>,
    removed: std::collections::VecDeque<RemovedRule>,
    /// Per-batch stage results.
    scratch: Option<Box<Scratch>>,
    /// Meters, by id.
    meters: crate::hash::FastMap<u32, crate::qos::Meter>,
    /// QoS ports may send bursts without passing them through the queues
    /// when that changes nothing (off only in tests, to compare).
    cut_through: bool,
    /// Running on a live clock (see [`Pipeline::set_live`]).
    live: bool,
    /// Timed-out rules fell off the removal log since it was last drained.
    removed_lost: bool,
    /// No timer work is due before this time (a single compare per frame).
    timer_due: Timestamp,
    /// Frames whose metadata named no port (a driver bug; counted, never panics).
    pub unknown_port: u64,
}

/// How many timed-out rules the pipeline remembers.
const REMOVED_LOG: usize = 4096;

/// OVS's `is_gratuitous_arp`: a broadcast ARP reply, or a broadcast ARP
/// request whose sender and target addresses are equal.
#[inline]
fn is_gratuitous_arp(k: &FlowKey) -> bool {
    k.dl_type() == ETH_TYPE_ARP
        && k.dl_dst() == 0xffff_ffff_ffff
        && (k.nw_proto() == 2 || (k.nw_proto() == 1 && k.nw_src() == k.nw_dst()))
}

/// True for the destinations a bridge must never forward (OVS
/// `eth_addr_is_reserved`: IEEE 802.1D/Q reserved, Extreme, Cisco).
#[inline]
pub fn is_reserved_mac(mac: u64) -> bool {
    if mac & 0xffff_ffff_fff0 == 0x0180_c200_0000 {
        return true;
    }
    if mac & 0xffff_ffff_fff8 == 0x0100_0ccc_ccc0 {
        return true;
    }
    matches!(
        mac,
        0x00e0_2b00_0000
            | 0x00e0_2b00_0004
            | 0x00e0_2b00_0006
            | 0x0100_0c00_0000
            | 0x0100_0ccc_cccc
            | 0x0100_0ccc_cccd
            | 0x0100_0ccd_cdcd
    )
}

impl Pipeline {
    /// A pipeline for `ports`, with no rules.
    pub fn new(ports: Vec<PortConfig>, opts: PipelineOptions) -> Result<Self, Error> {
        let mut p = Pipeline {
            ports: Vec::new(),
            by_ofport: Vec::new(),
            tables: FlowTables::new(),
            emc: Emc::new(),
            mac: MacTable::with_limits(opts.mac_aging_secs, opts.mac_max_entries),
            pool: BufPool::new(opts.pool_buffers + BURST),
            opts,
            // Copies per frame: one per output (up to 4096 resubmits' worth).
            emitted: Vec::with_capacity(MAX_RESUBMITS as usize),
            removed: std::collections::VecDeque::with_capacity(REMOVED_LOG),
            timer_due: Timestamp(0),
            scratch: Some(Box::default()),
            meters: crate::hash::FastMap::default(),
            cut_through: true,
            live: false,
            removed_lost: false,
            unknown_port: 0,
        };
        for c in ports {
            p.add_port(c)?;
        }
        Ok(p)
    }

    /// Checks `cfgs` as [`Pipeline::add_port`] would, one after another,
    /// without building anything.
    pub fn check_ports(cfgs: &[PortConfig]) -> Result<(), Error> {
        for (i, c) in cfgs.iter().enumerate() {
            Self::check_port(cfgs[..i].iter(), c)?;
        }
        Ok(())
    }

    fn check_port<'a>(
        mut existing: impl Iterator<Item = &'a PortConfig> + Clone,
        cfg: &PortConfig,
    ) -> Result<(), Error> {
        if cfg.ofport == 0 || cfg.ofport >= crate::flow::action::OFPP_MAX {
            return Err(Error::Invalid(format!(
                "port {}: ofport {} is out of range (1-{})",
                cfg.name,
                cfg.ofport,
                crate::flow::action::OFPP_MAX - 1
            )));
        }
        if let Some(o) = existing.clone().find(|p| p.name == cfg.name) {
            return Err(Error::Invalid(format!(
                "port name {} is used twice (ofports {} and {})",
                cfg.name, o.ofport, cfg.ofport
            )));
        }
        if let Some(o) = existing.find(|p| p.ofport == cfg.ofport) {
            return Err(Error::Invalid(format!(
                "ofport {} is used by both {} and {}",
                cfg.ofport, o.name, cfg.name
            )));
        }
        if let Some(m) = cfg.mtu {
            if !(68..=(MAX_FRAME - 18) as u32).contains(&m) {
                return Err(Error::Invalid(format!(
                    "port {}: mtu {m} is out of range (68-{})",
                    cfg.name,
                    MAX_FRAME - 18
                )));
            }
        }
        Ok(())
    }

    /// Adds a port; returns its index. The buffers its QoS queues need are
    /// allocated here.
    pub fn add_port(&mut self, cfg: PortConfig) -> Result<u16, Error> {
        self.add_port_with(cfg, None)
    }

    /// Adds a port with the buffers its QoS queues need (`None`: allocate
    /// them here; a polling thread passes them in, made elsewhere).
    pub fn add_port_with(
        &mut self,
        cfg: PortConfig,
        buffers: Option<Vec<PacketBuf>>,
    ) -> Result<u16, Error> {
        Self::check_port(
            self.ports.iter().filter(|p| !p.removed).map(|p| &p.cfg),
            &cfg,
        )?;
        let of = cfg.ofport as usize;
        if self.by_ofport.len() <= of {
            self.by_ofport.resize(of + 1, u16::MAX);
        }
        let mut state = PortState {
            limit: cfg.payload_limit(),
            down: false,
            removed: false,
            cfg,
            stats: PortStats::default(),
            egress: Vec::with_capacity(self.opts.egress_limit),
            qos: None,
            txq: Vec::new(),
            police: None,
            ingress_prio: false,
            remark: false,
        };
        let extra = Self::apply_qos(&mut state, self.live, self.opts.egress_limit);
        match buffers {
            Some(bs) => bs.into_iter().for_each(|b| self.pool.put(b)),
            None => (0..extra).for_each(|_| self.pool.put(PacketBuf::new())),
        }
        // A deleted port's slot is reused first, so indices stay small.
        let idx = match self.ports.iter().position(|p| p.removed) {
            Some(i) => {
                self.ports[i] = state;
                i as u16
            }
            None => {
                if self.ports.len() >= u16::MAX as usize - 1 {
                    return Err(Error::Invalid("too many ports".into()));
                }
                self.ports.push(state);
                (self.ports.len() - 1) as u16
            }
        };
        self.by_ofport[of] = idx;
        self.mac.reserve_ports(self.ports.len());
        self.emc.invalidate();
        // Room for every port to hold a burst of copies.
        for _ in 0..BURST {
            self.pool.put(PacketBuf::new());
        }
        Ok(idx)
    }

    /// Takes a port down (its device vanished) or back up. A port that is
    /// down gets nothing: outputs to it are dropped as `port_down` (so is
    /// what waited to be sent), NORMAL no longer floods to it, and what was
    /// learned on it is forgotten.
    pub fn set_port_down(&mut self, idx: u16, down: bool) {
        if let Some(p) = self.ports.get_mut(idx as usize) {
            p.down = down;
            if down {
                self.discard_egress(idx);
                self.mac.flush_port(idx);
            }
        }
        self.emc.invalidate();
    }

    /// Sets up a port's QoS state from its configuration; returns how many
    /// more buffers its queues may hold. `cap`: room to keep in the egress
    /// and transmit lists (they trade places, so both get it).
    fn apply_qos(ps: &mut PortState, live: bool, cap: usize) -> usize {
        let old = ps.qos.take();
        // Frames already released or queued go first, in that order, then
        // what waits to be queued: the next flush sends or queues them
        // under the new settings.
        let mut pending = std::mem::take(&mut ps.txq);
        let mut old_stats = None;
        if let Some(mut o) = old {
            let back = o.drain_all();
            // They join the new queues as if new: count them once.
            for b in pending.iter().chain(back.iter()) {
                let s = &mut o.stats[o.classify(b)];
                s.enqueued = s.enqueued.saturating_sub(1);
            }
            pending.extend(back);
            old_stats = Some(o.stats);
        }
        pending.append(&mut ps.egress);
        ps.egress = pending;
        ps.egress.reserve(cap.saturating_sub(ps.egress.len()));
        match &ps.cfg.qos {
            None => {
                ps.police = None;
                ps.ingress_prio = false;
                ps.remark = false;
                0
            }
            Some(c) => {
                ps.police = c.police.map(|(r, b)| crate::qos::TokenBucket::new(r, b));
                ps.ingress_prio = c.default_pcp != 0 || c.dscp_map.is_some();
                ps.remark = c.remark_pcp;
                let mut q = crate::qos::EgressQos::new(c.clone());
                if live {
                    q.set_live();
                }
                // Counters run on across a change of settings.
                if let Some(s) = old_stats {
                    q.stats = s;
                }
                ps.txq.reserve(cap.max(SORT_MAX));
                let n = c.buffers();
                ps.qos = Some(Box::new(q));
                n
            }
        }
    }

    /// Changes port `idx`'s QoS (queued frames are kept where they fit).
    /// `buffers` are added to the pool for the new queues (allocate them
    /// off the polling thread: [`PacketBuf::new`] per frame of depth).
    /// Returns the buffers the new settings need no more (for the
    /// caller to free), so the pool never outgrows what the ports need.
    pub fn set_port_qos(
        &mut self,
        idx: u16,
        qos: Option<crate::qos::QosConfig>,
        buffers: Vec<PacketBuf>,
    ) -> Vec<PacketBuf> {
        let Some(ps) = self.ports.get_mut(idx as usize) else {
            return buffers;
        };
        let before = ps.cfg.qos.as_ref().map_or(0, |q| q.buffers());
        ps.cfg.qos = qos;
        let after = Self::apply_qos(ps, self.live, self.opts.egress_limit);
        for b in buffers {
            self.pool.put(b);
        }
        self.emc.invalidate();
        self.take_buffers(before.saturating_sub(after))
    }

    /// Takes up to `n` free buffers out of the pool.
    fn take_buffers(&mut self, n: usize) -> Vec<PacketBuf> {
        let mut out = Vec::new();
        for _ in 0..n {
            match self.pool.take() {
                Some(b) => out.push(b),
                None => break,
            }
        }
        out
    }

    /// Marks the pipeline as running on a live clock: QoS shapers then
    /// never send a backlog faster than their bucket allows after the
    /// polling thread was held up (replay keeps exact virtual time).
    pub fn set_live(&mut self) {
        self.live = true;
        for p in &mut self.ports {
            if let Some(q) = p.qos.as_mut() {
                q.set_live();
            }
        }
    }

    /// Adds, changes (keeping its counters) or, with `None`, deletes a meter.
    pub fn set_meter(&mut self, id: u32, meter: Option<crate::qos::Meter>) {
        match meter {
            Some(mut m) => {
                if let Some(old) = self.meters.get(&id) {
                    m.passed = old.passed;
                    m.dropped = old.dropped;
                }
                self.meters.insert(id, m);
            }
            None => {
                self.meters.remove(&id);
            }
        }
    }

    /// The meters: (id, rate bits/s, burst bits, passed, dropped), by id.
    pub fn meters(&self) -> Vec<(u32, u64, u64, u64, u64)> {
        let mut v: Vec<_> = self
            .meters
            .iter()
            .map(|(id, m)| (*id, m.bucket.rate(), m.burst, m.passed, m.dropped))
            .collect();
        v.sort_unstable();
        v
    }

    /// A port's QoS queue counters, when it has QoS.
    pub fn queue_stats(&self, idx: u16) -> Option<[crate::qos::QueueStats; crate::qos::N_QUEUES]> {
        self.ports
            .get(idx as usize)
            .and_then(|p| p.qos.as_ref())
            .map(|q| q.queue_stats())
    }

    /// Deletes port `idx`: it is down for good, its number and name are
    /// free again, what was learned on it is forgotten and what was queued
    /// for it is dropped. Its slot is reused by the next [`Pipeline::add_port`].
    /// Returns the buffers the port no longer needs (for the caller to
    /// free).
    pub fn remove_port(&mut self, idx: u16) -> Vec<PacketBuf> {
        let Some(p) = self.ports.get_mut(idx as usize) else {
            return Vec::new();
        };
        if p.removed {
            return Vec::new();
        }
        p.removed = true;
        let of = p.cfg.ofport as usize;
        if self.by_ofport.get(of) == Some(&idx) {
            self.by_ofport[of] = u16::MAX;
        }
        let granted = p.cfg.qos.as_ref().map_or(0, |q| q.buffers()) + BURST;
        self.set_port_down(idx, true);
        if let Some(p) = self.ports.get_mut(idx as usize) {
            p.cfg.qos = None;
            p.qos = None;
        }
        self.take_buffers(granted)
    }

    /// True when slot `idx` holds no port (deleted, or never used).
    pub fn port_removed(&self, idx: u16) -> bool {
        self.ports.get(idx as usize).is_none_or(|p| p.removed)
    }

    /// True when the port is down.
    pub fn port_down(&self, idx: u16) -> bool {
        self.ports.get(idx as usize).is_some_and(|p| p.down)
    }

    /// Drops what is queued for port `idx`, counting it as `port_down`.
    pub fn discard_egress(&mut self, idx: u16) {
        if let Some(p) = self.ports.get_mut(idx as usize) {
            let mut n = p.egress.len() + p.txq.len();
            retire(&mut self.pool, p.egress.drain(..));
            retire(&mut self.pool, p.txq.drain(..));
            if let Some(q) = p.qos.as_mut() {
                let mut queued = q.drain_all();
                n += queued.len();
                retire(&mut self.pool, queued.drain(..));
            }
            p.stats.drops.add(DropReason::PortDown, n as u64);
        }
    }

    /// Adds frames matched elsewhere (the XDP program) to a rule's counters.
    pub fn credit_rule(&mut self, id: u32, packets: u64, bytes: u64, now: Timestamp) {
        self.tables.credit(id, packets, bytes, now);
    }

    /// Number of port slots (ports, and deleted ports' slots: see
    /// [`Pipeline::port_removed`]).
    pub fn n_ports(&self) -> usize {
        self.ports.len()
    }

    /// A port's configuration (`None` for a deleted port).
    pub fn port_config(&self, idx: u16) -> Option<&PortConfig> {
        self.ports
            .get(idx as usize)
            .filter(|p| !p.removed)
            .map(|p| &p.cfg)
    }

    /// A port's counters.
    pub fn port_stats(&self, idx: u16) -> Option<&PortStats> {
        self.ports.get(idx as usize).map(|p| &p.stats)
    }

    /// The index of the port numbered `ofport`.
    #[inline(always)]
    pub fn port_index(&self, ofport: u16) -> Option<u16> {
        match self.by_ofport.get(ofport as usize) {
            Some(&i) if i != u16::MAX => Some(i),
            _ => None,
        }
    }

    /// The index of the port called `name`.
    pub fn port_by_name(&self, name: &str) -> Option<u16> {
        self.ports
            .iter()
            .position(|p| !p.removed && p.cfg.name == name)
            .map(|i| i as u16)
    }

    /// Resolves port names for flow parsing.
    pub fn port_names(&self) -> impl Fn(&str) -> Option<u16> + '_ {
        move |n: &str| {
            self.ports
                .iter()
                .find(|p| !p.removed && p.cfg.name == n)
                .map(|p| p.cfg.ofport)
        }
    }

    /// Installs a rule at time `now`.
    pub fn add_rule(&mut self, rule: Rule, now: Timestamp) -> u32 {
        let (id, _) = self.tables.add(rule, now);
        self.emc.invalidate();
        self.timer_due = self.timer_due.min(self.tables.next_deadline());
        id
    }

    /// Puts `new` in place of the installed rules, all at once (O(1)), and
    /// returns the old ones. To keep the counters and timers of rules that
    /// stay, compute [`FlowTables::carry_list`] from the old tables (off
    /// this thread) and hand it to [`Pipeline::carry`].
    pub fn replace_rules(&mut self, mut new: FlowTables) -> FlowTables {
        new.table_stats = std::mem::take(&mut self.tables.table_stats);
        new.version = self.tables.version + 1;
        let old = std::mem::replace(&mut self.tables, new);
        self.emc.invalidate();
        self.timer_due = self.timer_due.min(self.tables.next_deadline());
        old
    }

    /// Gives rules older rules' counters and times (see [`FlowTables::carry`]).
    pub fn carry(&mut self, list: &[(u32, crate::table::RuleStats)]) {
        for (id, st) in list {
            self.tables.carry(*id, st);
        }
        self.timer_due = self.timer_due.min(self.tables.next_deadline());
    }

    /// Takes the log of rules removed by timeouts since the last call.
    ///
    /// The log holds the latest few thousand; the flag says whether older
    /// ones were lost since the last call (a caller keeping a copy of the
    /// rules must then take them all afresh).
    pub fn drain_removed(&mut self) -> (Vec<RemovedRule>, bool) {
        let lost = std::mem::replace(&mut self.removed_lost, false);
        (self.removed.drain(..).collect(), lost)
    }

    /// Traces `frame` arriving on port `in_idx` at `now` without changing
    /// anything: no counters, no learning, nothing sent.
    pub fn trace_dry(&mut self, in_idx: u16, frame: &[u8], now: Timestamp) -> Vec<TraceEvent> {
        let mut batch = Batch::new(1);
        batch.push_frame(frame, crate::packet::PacketMeta::new(in_idx, now));
        let before: Vec<usize> = self.ports.iter().map(|p| p.egress.len()).collect();
        let mut t = crate::trace::DryRun::default();
        self.process(&mut batch, &mut t);
        // What the dry run queued is thrown away uncounted; frames queued
        // before it stay.
        for (p, n) in self.ports.iter_mut().zip(before) {
            retire(&mut self.pool, p.egress.drain(n.min(p.egress.len())..));
        }
        t.0.events
    }

    /// Removes every rule.
    pub fn clear_rules(&mut self) {
        self.tables.clear();
        self.emc.invalidate();
    }

    /// Deletes the rules `spec` selects (see [`FlowTables::select`]);
    /// returns how many.
    pub fn delete_rules(&mut self, spec: &MatchSpec, strict: bool) -> usize {
        let ids = self.tables.select(spec, strict);
        for &id in &ids {
            self.tables.remove(id);
        }
        if !ids.is_empty() {
            self.emc.invalidate();
        }
        ids.len()
    }

    /// The installed rules in dump order.
    pub fn rules(&self) -> Vec<(u32, &Installed)> {
        self.tables.iter_sorted()
    }

    /// Rules removed by timeouts so far (the most recent few thousand).
    pub fn removed_rules(&self) -> Vec<&RemovedRule> {
        self.removed.iter().collect()
    }

    /// The flow tables.
    pub fn tables(&self) -> &FlowTables {
        &self.tables
    }

    /// Per-table lookup counters (index = table id).
    pub fn table_stats(&self) -> &[TableStats] {
        &self.tables.table_stats
    }

    /// The MAC learning table.
    pub fn mac_table(&self) -> &MacTable {
        &self.mac
    }

    /// Forgets all learned MACs.
    pub fn flush_macs(&mut self) {
        self.mac.flush();
    }

    /// Exact-match cache (hits, misses).
    pub fn emc_stats(&self) -> (u64, u64) {
        (self.emc.hits, self.emc.misses)
    }

    /// Runs timeouts (rule expiry, MAC aging) up to `now`. Called for every
    /// frame; call it when idle too so timeouts fire without traffic.
    pub fn run_timers(&mut self, now: Timestamp) -> usize {
        let mut n = 0;
        if now >= self.tables.next_deadline() {
            let gone = self.tables.expire(now);
            n = gone.len();
            if n > 0 {
                self.emc.invalidate();
                for (rule, why) in gone {
                    if self.removed.len() >= REMOVED_LOG {
                        self.removed.pop_front();
                        self.removed_lost = true;
                    }
                    self.removed.push_back(RemovedRule { rule, why, at: now });
                }
            }
        }
        self.mac.run(now.secs());
        // Next due: the next rule deadline or the next whole second (MAC aging).
        self.timer_due = self
            .tables
            .next_deadline()
            .min(Timestamp::from_secs(now.secs() + 1));
        n
    }

    /// Switches every frame in `batch`, in order, leaving outputs in the
    /// egress queues (send them with [`Pipeline::flush_port`]).
    ///
    /// The work is staged across the batch, VPP/OVS style: first every
    /// frame is received and parsed, then every table-0 lookup is done,
    /// then actions run frame by frame in order. The first two stages touch
    /// nothing the third changes (actions never change the tables), so the
    /// result is exactly that of handling frames one at a time, but the
    /// independent parses and cache probes of 32 frames overlap in the CPU.
    /// When a timeout falls inside the batch, or when tracing, frames are
    /// handled one at a time so timers fire between the right frames.
    pub fn process<T: Tracer>(&mut self, batch: &mut Batch, t: &mut T) {
        let n = batch.len();
        let due = self.timer_due;
        if T::ENABLED || n > BURST || batch.frames().iter().any(|p| p.meta.ts >= due) {
            for i in 0..n {
                self.process_one(batch, i, t);
            }
            return;
        }
        let Some(mut sc) = self.scratch.take() else {
            return;
        };
        for i in 0..n {
            sc.ok[i] = false;
            if let Some(tag0) = self.receive(&mut batch.frames_mut()[i], &mut sc.keys[i], t) {
                sc.hash[i] = sc.keys[i].hash64();
                sc.tag0[i] = tag0;
                sc.ok[i] = true;
            }
        }
        for i in 0..n {
            if sc.ok[i] {
                sc.found[i] = self.lookup_cached(0, &sc.keys[i], sc.hash[i]);
            }
        }
        for i in 0..n {
            if sc.ok[i] {
                if self.shortcut(batch, i, &sc.keys[i], sc.found[i]) {
                    continue;
                }
                let mut x = Self::xlate_for(&batch.frames()[i], sc.keys[i], sc.tag0[i]);
                self.emitted.clear();
                self.run_rule(0, sc.found[i], &mut x, &mut batch.frames_mut()[i], t);
                self.finish(batch, i, &mut x, t);
            }
        }
        self.scratch = Some(sc);
    }

    #[inline]
    fn drop_on(&mut self, port: usize, r: DropReason) {
        self.ports[port].stats.drops.add(r, 1);
    }

    /// Receive stage: counts the frame, applies the length checks and parses
    /// it. `None` when it was dropped (and counted).
    #[inline(always)]
    fn receive<T: Tracer>(
        &mut self,
        pkt: &mut PacketBuf,
        key: &mut FlowKey,
        t: &mut T,
    ) -> Option<Tag> {
        let len = pkt.len();
        let in_idx = pkt.meta.port as usize;
        let Some(port) = self.ports.get_mut(in_idx) else {
            if !T::DRY {
                self.unknown_port += 1;
            }
            return None;
        };
        if !T::DRY {
            port.stats.rx_packets += 1;
            port.stats.rx_bytes += len as u64;
        }
        // Like OVS, the MTU is enforced on send only (a device's own MTU
        // already bounds what it receives).
        let early = if len < ETH_HEADER_LEN {
            Some(DropReason::Runt)
        } else {
            None
        };
        if let Some(r) = early {
            if !T::DRY {
                port.stats.drops.add(r, 1);
            }
            if T::ENABLED {
                t.record(TraceEvent::Dropped { reason: r });
            }
            return None;
        }
        if let Some(pol) = port.police.as_mut() {
            let bits = len as u64 * 8;
            let ok = if T::DRY {
                pol.ready_at(pkt.meta.ts, bits) <= pkt.meta.ts
            } else {
                pol.conform(pkt.meta.ts, bits)
            };
            if !ok {
                if !T::DRY {
                    port.stats.drops.add(DropReason::Policed, 1);
                }
                if T::ENABLED {
                    t.record(TraceEvent::Dropped {
                        reason: DropReason::Policed,
                    });
                }
                return None;
            }
        }
        let parsed = parse::extract(pkt.data(), port.cfg.ofport, key);
        if !T::DRY {
            port.stats.malformed.add(parsed.note);
        }
        // The frame's priority: its tag's PCP, else the ingress port's.
        pkt.meta.prio = match parsed.vlan {
            Some((_, tci)) => (tci >> 13) as u8,
            None if port.ingress_prio => {
                let ip = matches!(key.dl_type(), ETH_TYPE_IP | ETH_TYPE_IPV6);
                port.cfg
                    .qos
                    .as_ref()
                    .map_or(0, |q| q.ingress_prio(ip.then(|| key.nw_tos() >> 2)))
            }
            None => 0,
        };
        if T::ENABLED {
            t.record(TraceEvent::Parsed {
                key: *key,
                note: parsed.note,
                flags: parsed.flags,
            });
        }
        let tag0 = match parsed.vlan {
            Some((tpid, tci)) => Tag {
                tpid,
                tci: tci | VLAN_CFI,
            },
            None => Tag::default(),
        };
        Some(tag0)
    }

    #[inline(always)]
    fn xlate_for(pkt: &PacketBuf, key: FlowKey, tag0: Tag) -> Xlate {
        Xlate {
            key,
            vlans: [tag0, Tag::default()],
            base_vlans: [tag0, Tag::default()],
            in_tagged: tag0.present(),
            macs_dirty: false,
            in_len: pkt.len(),
            now: pkt.meta.ts,
            table: 0,
            depth: 0,
            rdepth: 0,
            resubmits: 0,
            outputs: 0,
            reason: DropReason::ActionDrop,
            error: None,
            halted: false,
            queue: NO_QUEUE,
            pending: None,
            pcp_set: false,
        }
    }

    /// The two commonest cases, done without the general translation: a rule
    /// whose only action is `output:N`, and a lone NORMAL whose cached
    /// decision for this flow (same second, same MAC table) is "unicast to
    /// port P, tags unchanged". Either way the frame leaves unmodified, so it
    /// only needs counting and queueing. Returns false to take the general
    /// path (which does the counting itself).
    #[inline(always)]
    fn shortcut(&mut self, batch: &mut Batch, i: usize, key: &FlowKey, found: Found) -> bool {
        if found.rule == NO_RULE {
            return false;
        }
        let (normal_only, output_only) = self.tables.shape(found.rule);
        let in_idx = batch.frames()[i].meta.port as usize;
        let now = batch.frames()[i].meta.ts;
        let out = if let Some(of) = output_only {
            if of == key.in_port() {
                Err(DropReason::OutputToInPort)
            } else {
                self.port_index(of)
                    .map(|p| p as usize)
                    .ok_or(DropReason::NoSuchPort)
            }
        } else if normal_only {
            let h = found.hint;
            if h.val & NORMAL_SAME_TAGS != 0 && h.sec == now.secs() as u32 && h.gen == self.mac.gen
            {
                Ok((h.val & 0xffff) as usize)
            } else {
                return false;
            }
        } else {
            return false;
        };
        let len = batch.frames()[i].len();
        let ts = &mut self.tables.table_stats[0];
        ts.lookups += 1;
        ts.matched += 1;
        let _ = self.tables.hit(found.rule, len, now);
        match out {
            Ok(p) => {
                let prio = batch.frames()[i].meta.prio;
                self.enqueue_last(batch, i, p, NO_QUEUE, prio, &mut crate::trace::NoTrace)
            }
            Err(r) => self.drop_on(in_idx, r),
        }
        true
    }

    /// One frame, start to end (used when tracing or when timers are due).
    fn process_one<T: Tracer>(&mut self, batch: &mut Batch, i: usize, t: &mut T) {
        let meta = batch.frames()[i].meta;
        let now = meta.ts;
        let expired = if !T::DRY && now >= self.timer_due {
            self.run_timers(now)
        } else {
            0
        };
        if T::ENABLED {
            if expired > 0 {
                t.record(TraceEvent::Expired { count: expired });
            }
            t.record(TraceEvent::Received {
                port: meta.port,
                len: batch.frames()[i].len(),
                ts: now,
            });
        }
        let mut key = FlowKey::ZERO;
        let Some(tag0) = self.receive(&mut batch.frames_mut()[i], &mut key, t) else {
            return;
        };
        let mut x = Self::xlate_for(&batch.frames()[i], key, tag0);
        self.emitted.clear();
        self.xlate_table(0, &mut x, &mut batch.frames_mut()[i], t);
        self.finish(batch, i, &mut x, t);
    }

    /// Final stage for one frame: commit or roll back its outputs, count its fate.
    #[inline(always)]
    fn finish<T: Tracer>(&mut self, batch: &mut Batch, i: usize, x: &mut Xlate, t: &mut T) {
        let in_idx = batch.frames()[i].meta.port as usize;
        if let Some(err) = x.error {
            // OVS discards the whole translation: take back queued copies.
            for k in (0..self.emitted.len()).rev() {
                let p = self.emitted[k] as usize;
                if let Some(b) = self.ports[p].egress.pop() {
                    self.pool.put(b);
                }
            }
            if !T::DRY {
                self.drop_on(in_idx, err);
            }
            if T::ENABLED {
                t.record(TraceEvent::Dropped { reason: err });
            }
            return;
        }
        if let Some((out, queue, prio)) = x.pending {
            self.enqueue_last(batch, i, out as usize, queue, prio, t);
        }
        if x.outputs == 0 {
            if !T::DRY {
                self.drop_on(in_idx, x.reason);
            }
            if T::ENABLED {
                t.record(TraceEvent::Dropped { reason: x.reason });
            }
        }
    }

    /// Checks egress limits; on failure counts the drop and returns false.
    #[inline(always)]
    fn egress_ok<T: Tracer>(&mut self, out: usize, frame: &[u8], t: &mut T) -> bool {
        let p = &mut self.ports[out];
        let r = if p.down {
            DropReason::PortDown
        } else if !fits(frame, p.limit) {
            DropReason::TxMtu
        } else if p.egress.len() >= self.opts.egress_limit {
            DropReason::QueueFull
        } else if self.pool.available() == 0 {
            DropReason::NoBuffer
        } else {
            return true;
        };
        if !T::DRY {
            p.stats.drops.add(r, 1);
        }
        if T::ENABLED {
            t.record(TraceEvent::EgressDrop {
                port: out as u16,
                reason: r,
            });
        }
        false
    }

    /// Queues the frame's own buffer on `out` (the last output).
    #[inline(always)]
    fn enqueue_last<T: Tracer>(
        &mut self,
        batch: &mut Batch,
        i: usize,
        out: usize,
        queue: u32,
        prio: u8,
        t: &mut T,
    ) {
        if !self.egress_ok(out, batch.frames()[i].data(), t) {
            return;
        }
        if let Some(fresh) = self.pool.take() {
            let mut b = batch.swap_out(i, fresh);
            b.meta.queue = queue;
            b.meta.prio = prio;
            self.ports[out].egress.push(b);
        }
    }

    /// Queues a copy of the frame on `out`.
    #[inline]
    fn enqueue_copy<T: Tracer>(
        &mut self,
        out: usize,
        pkt: &PacketBuf,
        queue: u32,
        prio: u8,
        t: &mut T,
    ) {
        if !self.egress_ok(out, pkt.data(), t) {
            return;
        }
        if let Some(mut b) = self.pool.take() {
            b.copy_from(pkt);
            b.meta.queue = queue;
            b.meta.prio = prio;
            self.ports[out].egress.push(b);
            self.emitted.push(out as u16);
        }
    }

    /// The rule for `key` in `table` (or [`NO_RULE`]), through the cache.
    #[inline(always)]
    fn lookup_cached(&mut self, table: u8, key: &FlowKey, hash: u64) -> Found {
        match self.emc.lookup(table, key, hash) {
            Some((rule, hint)) => Found {
                rule,
                cached: true,
                hint,
                hash,
            },
            None => {
                let rule = self.tables.lookup(table, key).unwrap_or(NO_RULE);
                self.emc.insert(table, key, hash, rule);
                Found {
                    rule,
                    cached: false,
                    hint: Hint::default(),
                    hash,
                }
            }
        }
    }

    fn xlate_table<T: Tracer>(&mut self, table: u8, x: &mut Xlate, pkt: &mut PacketBuf, t: &mut T) {
        let hash = x.key.hash64();
        let found = self.lookup_cached(table, &x.key, hash);
        self.run_rule(table, found, x, pkt, t);
    }

    /// Counts the lookup and runs the rule's actions (a miss when `NO_RULE`).
    #[inline]
    fn run_rule<T: Tracer>(
        &mut self,
        table: u8,
        found: Found,
        x: &mut Xlate,
        pkt: &mut PacketBuf,
        t: &mut T,
    ) {
        let rule = found.rule;
        if !T::DRY {
            self.tables.table_stats[table as usize].lookups += 1;
        }
        if rule == NO_RULE {
            if T::ENABLED {
                t.record(TraceEvent::Lookup {
                    table,
                    depth: x.depth,
                    rule: None,
                    cached: found.cached,
                });
            }
            if x.depth == 0 {
                x.reason = DropReason::TableMiss;
            }
            return;
        }
        let hit = if T::DRY {
            self.tables.peek(rule)
        } else {
            self.tables.table_stats[table as usize].matched += 1;
            self.tables.hit(rule, x.in_len, x.now)
        };
        let Some((n, normal_only)) = hit else {
            return;
        };
        if T::ENABLED {
            if let Some(r) = self.tables.get(rule) {
                t.record(TraceEvent::Lookup {
                    table,
                    depth: x.depth,
                    rule: Some((rule, r.rule.priority, r.rule.cookie, r.rule.to_string())),
                    cached: found.cached,
                });
            }
        }
        if normal_only && !T::ENABLED {
            // A lone NORMAL: reuse this flow's decision while it is still
            // exactly what NORMAL would decide (same second, same MAC table).
            let sec = x.now.secs() as u32;
            let h = found.hint;
            // Decisions are cached for top-level lookups only (a resubmit
            // may look up with another in_port than NORMAL must use).
            if x.depth == 0 && h.val != 0 && h.sec == sec && h.gen == self.mac.gen {
                self.normal_replay(h.val, x, pkt, t);
                return;
            }
            x.depth += 1;
            let decided = self.normal(x, pkt, t);
            x.depth -= 1;
            if decided != 0 && x.depth == 0 {
                let key = x.key;
                self.emc.set_hint(
                    table,
                    &key,
                    found.hash,
                    Hint {
                        val: decided,
                        sec,
                        gen: self.mac.gen,
                    },
                );
            }
            return;
        }
        let saved = x.table;
        x.table = table;
        x.depth += 1;
        // Copy the actions out (they are small) so they can run while the
        // tables are borrowed mutably; long lists are fetched one by one.
        const LOCAL: usize = 4;
        let mut local = [Action::StripVlan; LOCAL];
        // (A rule that is gone runs nothing: the loop below finds no
        // actions for it.)
        let n_local = match self.tables.get(rule) {
            Some(r) if n <= LOCAL => {
                local[..n].copy_from_slice(&r.rule.actions[..n]);
                n
            }
            _ => 0,
        };
        let mut ai = 0;
        while ai < n {
            let a = if n_local > 0 {
                local[ai]
            } else {
                match self.tables.get(rule).and_then(|r| r.rule.actions.get(ai)) {
                    Some(a) => *a,
                    None => break,
                }
            };
            if x.error.is_some() || x.halted {
                break;
            }
            if T::ENABLED {
                t.record(TraceEvent::Action {
                    depth: x.depth - 1,
                    text: a.to_string(),
                });
            }
            self.do_action(a, x, pkt, t);
            ai += 1;
        }
        x.depth -= 1;
        x.table = saved;
    }

    /// Applies OVS's resubmit limits: at most 4096 resubmits per frame, and
    /// at most 64 nested resubmits to the same or an earlier table (forward
    /// jumps cannot loop). Returns how much the nesting grew, or `None` with
    /// the translation failed (the whole frame is then dropped).
    #[inline]
    fn enter_resubmit(table: u8, x: &mut Xlate) -> Option<u8> {
        if x.resubmits >= MAX_RESUBMITS {
            x.error = Some(DropReason::ResubmitLimit);
            return None;
        }
        x.resubmits += 1;
        if table <= x.table {
            if x.rdepth >= MAX_DEPTH {
                x.error = Some(DropReason::ResubmitLimit);
                return None;
            }
            x.rdepth += 1;
            return Some(1);
        }
        Some(0)
    }

    #[inline]
    fn sync_tci(x: &mut Xlate) {
        let tci = if x.vlans[0].present() {
            x.vlans[0].tci
        } else {
            0
        };
        x.key.set(Field::VlanTci, tci as u64);
    }

    fn skip<T: Tracer>(x: &mut Xlate, r: DropReason, t: &mut T) {
        x.reason = r;
        if T::ENABLED {
            t.record(TraceEvent::Skip { reason: r });
        }
    }

    fn do_action<T: Tracer>(&mut self, a: Action, x: &mut Xlate, pkt: &mut PacketBuf, t: &mut T) {
        match a {
            Action::Output(p) => {
                if p == x.key.in_port() {
                    Self::skip(x, DropReason::OutputToInPort, t);
                } else {
                    match self.port_index(p) {
                        Some(idx) => self.emit(idx as usize, x, pkt, t),
                        None => Self::skip(x, DropReason::NoSuchPort, t),
                    }
                }
            }
            Action::InPort => match self.port_index(x.key.in_port()) {
                Some(idx) => self.emit(idx as usize, x, pkt, t),
                None => Self::skip(x, DropReason::NoSuchPort, t),
            },
            Action::Flood | Action::All => {
                let in_of = x.key.in_port();
                let before = x.outputs;
                for idx in 0..self.ports.len() {
                    if self.ports[idx].cfg.ofport != in_of {
                        self.emit(idx, x, pkt, t);
                    }
                }
                if x.outputs == before {
                    Self::skip(x, DropReason::NoFloodPort, t);
                }
            }
            Action::Normal => {
                self.normal(x, pkt, t);
            }
            Action::SetVlanVid(v) => {
                let t0 = &mut x.vlans[0];
                if t0.tpid == 0 {
                    t0.tpid = ETH_TYPE_VLAN;
                }
                t0.tci = (t0.tci & !VLAN_VID_MASK) | (v & VLAN_VID_MASK) | VLAN_CFI;
                Self::sync_tci(x);
            }
            Action::SetVlanPcp(p) => {
                let t0 = &mut x.vlans[0];
                if t0.tpid == 0 {
                    t0.tpid = ETH_TYPE_VLAN;
                }
                t0.tci = (t0.tci & !VLAN_PCP_MASK) | ((p as u16 & 7) << 13) | VLAN_CFI;
                x.pcp_set = true;
                Self::sync_tci(x);
            }
            Action::StripVlan => {
                x.vlans[0] = x.vlans[1];
                x.vlans[1] = Tag::default();
                Self::sync_tci(x);
            }
            Action::PushVlan(tpid) => {
                x.vlans[1] = x.vlans[0];
                x.vlans[0] = Tag {
                    tpid,
                    tci: VLAN_CFI,
                };
                Self::sync_tci(x);
            }
            Action::SetDlSrc(m) => {
                x.key.set(Field::DlSrc, m);
                x.macs_dirty = true;
            }
            Action::SetDlDst(m) => {
                x.key.set(Field::DlDst, m);
                x.macs_dirty = true;
            }
            Action::SetQueue(q) => x.queue = q,
            Action::Meter(id) => {
                let bits = x.in_len as u64 * 8;
                let ok = match self.meters.get_mut(&id) {
                    Some(m) if T::DRY => m.bucket.ready_at(x.now, bits) <= x.now,
                    Some(m) => {
                        let ok = m.bucket.conform(x.now, bits);
                        if ok {
                            m.passed += 1;
                        } else {
                            m.dropped += 1;
                        }
                        ok
                    }
                    // A meter that does not exist passes nothing (the
                    // control plane refuses rules that name one).
                    None => false,
                };
                if !ok {
                    x.halted = true;
                    Self::skip(x, DropReason::Meter, t);
                }
            }
            Action::Resubmit { in_port, table } => {
                let tb = table.unwrap_or(x.table);
                let Some(back) = Self::enter_resubmit(tb, x) else {
                    return;
                };
                match in_port {
                    // As OVS does, the other in_port is used for the lookup
                    // only; the rule's actions still see the real input port
                    // (so NORMAL, in_port and output:N behave as expected).
                    Some(p) => {
                        let mut k = x.key;
                        k.set(Field::InPort, p as u64);
                        let found = self.lookup_cached(tb, &k, k.hash64());
                        self.run_rule(tb, found, x, pkt, t);
                    }
                    None => self.xlate_table(tb, x, pkt, t),
                }
                x.rdepth -= back;
            }
            Action::GotoTable(tb) => {
                let Some(back) = Self::enter_resubmit(tb, x) else {
                    return;
                };
                self.xlate_table(tb, x, pkt, t);
                x.rdepth -= back;
            }
        }
    }

    /// Outputs the frame as the logical flow says it should look now.
    #[inline]
    fn emit<T: Tracer>(&mut self, out: usize, x: &mut Xlate, pkt: &mut PacketBuf, t: &mut T) {
        if let Some((p, queue, prio)) = x.pending.take() {
            self.enqueue_copy(p as usize, pkt, queue, prio, t);
        }
        if self.ports[out].remark && !x.in_tagged && !x.pcp_set && x.vlans[0].present() {
            // A tag this port adds to a frame that came untagged: its PCP
            // from the frame's DSCP (IP only), for this output alone.
            let ip = matches!(x.key.dl_type(), ETH_TYPE_IP | ETH_TYPE_IPV6);
            if let (true, Some(q)) = (ip, self.ports[out].cfg.qos.as_ref()) {
                let pcp = q.remark(x.key.nw_tos() >> 2) as u16;
                let saved = x.vlans;
                x.vlans[0].tci = (x.vlans[0].tci & !VLAN_PCP_MASK) | (pcp << 13);
                Self::commit(x, pkt);
                x.vlans = saved;
            } else {
                Self::commit(x, pkt);
            }
        } else {
            Self::commit(x, pkt);
        }
        let prio = if x.pcp_set && x.vlans[0].present() {
            (x.vlans[0].tci >> 13) as u8
        } else {
            pkt.meta.prio
        };
        x.pending = Some((out as u16, x.queue, prio));
        x.outputs += 1;
        if T::ENABLED {
            let tci = if x.base_vlans[0].present() {
                x.base_vlans[0].tci & !VLAN_CFI
            } else {
                0
            };
            t.record(TraceEvent::Output {
                port: out as u16,
                len: pkt.len(),
                tci,
            });
        }
    }

    /// Brings the frame's bytes in line with the logical flow (OVS
    /// `commit_vlan_action` and the Ethernet rewrite): pop the tags that
    /// differ, push the wanted ones (with DEI cleared), rewrite MACs.
    #[inline]
    fn commit(x: &mut Xlate, pkt: &mut PacketBuf) {
        if !Tag::same2(&x.vlans, &x.base_vlans) {
            let count = |v: &[Tag; 2]| v.iter().take_while(|t| t.present()).count();
            let mut bn = count(&x.base_vlans);
            let mut fnn = count(&x.vlans);
            while bn > 0 && fnn > 0 && x.base_vlans[bn - 1] == x.vlans[fnn - 1] {
                bn -= 1;
                fnn -= 1;
            }
            for _ in 0..bn {
                pkt.pop_vlan();
            }
            for i in (0..fnn).rev() {
                pkt.push_vlan(x.vlans[i].tpid, x.vlans[i].tci & !VLAN_CFI);
            }
            x.base_vlans = x.vlans;
        }
        if x.macs_dirty {
            let d = pkt.data_mut();
            if d.len() >= 12 {
                d[0..6].copy_from_slice(&crate::key::mac_to_bytes(x.key.dl_dst()));
                d[6..12].copy_from_slice(&crate::key::mac_to_bytes(x.key.dl_src()));
            }
            x.macs_dirty = false;
        }
    }

    /// The NORMAL action (OVS `xlate_normal`). Returns its decision as a
    /// cacheable code (see [`Pipeline::normal_replay`]), 0 when not cacheable.
    fn normal<T: Tracer>(&mut self, x: &mut Xlate, pkt: &mut PacketBuf, t: &mut T) -> u32 {
        let Some(in_idx) = self.port_index(x.key.in_port()) else {
            Self::skip(x, DropReason::NoSuchPort, t);
            return 0;
        };
        let in_idx = in_idx as usize;
        let Some(xv) = self.normal_vlan(in_idx, x, t) else {
            return NORMAL_DROP | x.reason as u32;
        };
        let vlan = xv.v[0].vid;
        if T::ENABLED {
            t.record(TraceEvent::NormalVlan { vlan });
        }
        let dst = x.key.dl_dst();
        if is_reserved_mac(dst) {
            Self::skip(x, DropReason::ReservedMulticast, t);
            return NORMAL_DROP | DropReason::ReservedMulticast as u32;
        }
        let src = x.key.dl_src();
        let grat = is_gratuitous_arp(&x.key);
        let (res, evicted) = if T::DRY {
            let r = self
                .mac
                .preview(src, vlan, in_idx as u16, x.now.secs(), grat);
            (r, None)
        } else {
            self.mac
                .learn_ex(src, vlan, in_idx as u16, x.now.secs(), grat)
        };
        if T::ENABLED {
            t.record(TraceEvent::Learn {
                vlan,
                mac: src,
                port: in_idx as u16,
                result: res,
                evicted,
            });
        }
        let found = self.mac.lookup(dst, vlan);
        if T::ENABLED && !crate::mac::is_multicast(dst) {
            t.record(TraceEvent::MacLookup {
                vlan,
                mac: dst,
                port: found,
            });
        }
        // A gratuitous ARP must refresh its entry every time: never cached.
        let cache = if grat { 0 } else { u32::MAX };
        match found {
            Some(out) if out as usize != in_idx => {
                let mut after = x.vlans;
                self.ports[out as usize]
                    .cfg
                    .vlan
                    .output_translate(&xv)
                    .put(&mut after);
                let same = if Tag::same2(&after, &x.vlans) {
                    NORMAL_SAME_TAGS
                } else {
                    0
                };
                self.output_normal(out as usize, &xv, x, pkt, t);
                (NORMAL_UNICAST | same | out as u32) & cache
            }
            Some(_) => {
                Self::skip(x, DropReason::LearnedOnInPort, t);
                (NORMAL_DROP | DropReason::LearnedOnInPort as u32) & cache
            }
            None => {
                if T::ENABLED {
                    t.record(TraceEvent::Flood { vlan });
                }
                self.normal_flood(in_idx, &xv, x, pkt, t);
                NORMAL_FLOOD & cache
            }
        }
    }

    /// NORMAL's VLAN admission: the frame's VLAN inside the switch, or `None`
    /// (with the reason set) when NORMAL must drop it.
    #[inline]
    fn normal_vlan<T: Tracer>(&self, in_idx: usize, x: &mut Xlate, t: &mut T) -> Option<Xvlan> {
        if eth_type_vlan(x.key.dl_type()) && !x.vlans[0].present() {
            Self::skip(x, DropReason::PartialVlanTag, t);
            return None;
        }
        let in_x = Xvlan::extract(&x.vlans);
        let pv = &self.ports[in_idx].cfg.vlan;
        if !pv.input_vid_valid(in_x.v[0].vid) {
            Self::skip(x, DropReason::VlanNotAllowed, t);
            return None;
        }
        Some(pv.input_translate(&in_x))
    }

    #[inline]
    fn normal_flood<T: Tracer>(
        &mut self,
        in_idx: usize,
        xv: &Xvlan,
        x: &mut Xlate,
        pkt: &mut PacketBuf,
        t: &mut T,
    ) {
        let before = x.outputs;
        for idx in 0..self.ports.len() {
            if idx != in_idx && !self.ports[idx].down && self.ports[idx].cfg.vlan.includes(xv) {
                self.output_normal(idx, xv, x, pkt, t);
            }
        }
        if x.outputs == before {
            Self::skip(x, DropReason::NoFloodPort, t);
        }
    }

    /// Carries out a decision NORMAL made earlier for this same flow in this
    /// same second with this same MAC table, without learning or looking up
    /// again (learning would find nothing to change).
    #[inline]
    fn normal_replay<T: Tracer>(
        &mut self,
        decided: u32,
        x: &mut Xlate,
        pkt: &mut PacketBuf,
        t: &mut T,
    ) {
        let arg = decided & 0xffff;
        if decided & NORMAL_SAME_TAGS != 0 {
            // Unicast, tags unchanged: admission and VLAN translation were
            // settled when the decision was made for this exact flow.
            self.emit(arg as usize, x, pkt, t);
            return;
        }
        match decided & NORMAL_KIND {
            NORMAL_UNICAST | NORMAL_FLOOD => {
                let Some(in_idx) = self.port_index(x.key.in_port()) else {
                    return;
                };
                let Some(xv) = self.normal_vlan(in_idx as usize, x, t) else {
                    return;
                };
                if decided & NORMAL_KIND == NORMAL_UNICAST {
                    self.output_normal(arg as usize, &xv, x, pkt, t);
                } else {
                    self.normal_flood(in_idx as usize, &xv, x, pkt, t);
                }
            }
            _ => {
                let r = DropReason::ALL
                    .get(arg as usize)
                    .copied()
                    .unwrap_or(DropReason::ActionDrop);
                Self::skip(x, r, t);
            }
        }
    }

    #[inline]
    fn output_normal<T: Tracer>(
        &mut self,
        out: usize,
        xv: &Xvlan,
        x: &mut Xlate,
        pkt: &mut PacketBuf,
        t: &mut T,
    ) {
        let old = x.vlans;
        let ox = self.ports[out].cfg.vlan.output_translate(xv);
        ox.put(&mut x.vlans);
        self.emit(out, x, pkt, t);
        x.vlans = old;
    }

    /// Frames waiting to be sent on port `idx` now (not those a QoS
    /// shaper holds back).
    pub fn egress_len(&self, idx: u16) -> usize {
        self.ports
            .get(idx as usize)
            .map_or(0, |p| p.egress.len() + p.txq.len())
    }

    /// True when port `idx` has QoS queues.
    pub fn has_qos(&self, idx: u16) -> bool {
        self.ports
            .get(idx as usize)
            .is_some_and(|p| p.qos.is_some())
    }

    /// When a frame held in some port's QoS queues may next leave.
    pub fn next_departure(&self) -> Option<Timestamp> {
        self.ports
            .iter()
            .filter_map(|p| p.qos.as_ref().and_then(|q| q.next_departure()))
            .min()
    }

    /// Sends what is queued for port `idx` through `port`, in bursts.
    /// Frames the port does not take now stay queued. On a port error the
    /// queue is dropped (counted as `tx_error`) and the error returned.
    /// For a port with QoS, see [`Pipeline::flush_port_at`]; this sends
    /// what its scheduler releases by the newest frame's time.
    pub fn flush_port(&mut self, idx: u16, port: &mut dyn Port) -> Result<usize, PortError> {
        if let Some(p) = self.ports.get(idx as usize) {
            if let Some(q) = p.qos.as_ref() {
                // An untimed port's scheduler does not look at the clock.
                let now = if q.untimed() {
                    Timestamp(0)
                } else {
                    p.egress
                        .iter()
                        .map(|b| b.meta.ts)
                        .max()
                        .unwrap_or(Timestamp(0))
                };
                return self.flush_port_at(idx, port, now);
            }
        }
        self.flush_plain(idx, port)
    }

    /// Sends what port `idx` may send by `now`: for a port with QoS, new
    /// frames join their queues (a full queue drops them, counted) and the
    /// scheduler releases frames whose departure time has come, each
    /// stamped with it; without QoS, as [`Pipeline::flush_port`].
    pub fn flush_port_at(
        &mut self,
        idx: u16,
        port: &mut dyn Port,
        now: Timestamp,
    ) -> Result<usize, PortError> {
        let Some(ps) = self.ports.get_mut(idx as usize) else {
            return Ok(0);
        };
        let Some(q) = ps.qos.as_mut() else {
            return self.flush_plain(idx, port);
        };
        // Cut-through: nothing waits and nothing times the port, so the
        // scheduler would send the new frames at once, highest class first
        // (or in arrival order when they share one class). They go straight
        // out in that order, counted as queued and sent, without passing
        // through the rings. When a queue could not hold its share, they
        // take the queue path, which drops what does not fit.
        let n = ps.egress.len();
        if self.cut_through
            && n > 0
            && n <= SORT_MAX
            && q.is_empty()
            && q.untimed()
            && ps.txq.is_empty()
        {
            let mut cls = [0u8; SORT_MAX];
            let mut count = [0u16; crate::qos::N_QUEUES];
            let mut bytes = [0u64; crate::qos::N_QUEUES];
            for (i, b) in ps.egress.iter().enumerate() {
                let c = q.classify(b);
                cls[i] = c as u8;
                count[c] += 1;
                bytes[c] += b.len() as u64;
            }
            let first = cls[0] as usize;
            let single = count[first] as usize == n;
            let fits = n <= q.min_depth()
                || (0..crate::qos::N_QUEUES).all(|c| count[c] as usize <= q.depth(c));
            // A weighted class may cut through as one burst the scheduler
            // would release whole, leaving the round robin as it would.
            let ok = if single {
                q.is_strict(first) || n <= BURST
            } else {
                q.strict_untimed()
            };
            if fits && ok {
                if !single {
                    // Highest class first, by a stable counting sort: the
                    // frames are gathered in that order into the (empty)
                    // transmit list, which then becomes the list to send.
                    let mut next = [0u8; crate::qos::N_QUEUES];
                    let mut at = 0u8;
                    for c in (0..crate::qos::N_QUEUES).rev() {
                        next[c] = at;
                        at = at.wrapping_add(count[c] as u8);
                    }
                    let mut order = [0u8; SORT_MAX];
                    for (i, &c) in cls[..n].iter().enumerate() {
                        let slot = &mut next[c as usize];
                        order[*slot as usize] = i as u8;
                        *slot = slot.wrapping_add(1);
                    }
                    ps.txq.reserve(n);
                    let src = ps.egress.as_ptr();
                    let dst = ps.txq.as_mut_ptr();
                    for (k, &i) in order[..n].iter().enumerate() {
                        // SAFETY: `order` lists each index below `n` exactly
                        // once (a counting sort of 0..n), so each frame is
                        // copied out once, into slot `k < n` of the
                        // transmit list's reserved (empty) capacity.
                        unsafe {
                            std::ptr::copy_nonoverlapping(src.add(i as usize), dst.add(k), 1)
                        };
                    }
                    // SAFETY: the frames now live in the transmit list's
                    // first `n` slots (all written above) and no longer in
                    // the egress list, which forgets them without dropping.
                    // Nothing between the copies and here can panic.
                    unsafe {
                        ps.egress.set_len(0);
                        ps.txq.set_len(n);
                    }
                    std::mem::swap(&mut ps.egress, &mut ps.txq);
                }
                q.stamp_departures(&mut ps.egress);
                // Sent in bursts, as the scheduler would release them.
                let (sent, result) = send_bursts(port, &ps.egress);
                let mut sent_bytes = retire(&mut self.pool, ps.egress.drain(..sent));
                ps.stats.tx_packets += sent as u64;
                ps.stats.tx_bytes += sent_bytes;
                // The device took a prefix, in class order: credit each
                // class with its part of it.
                let mut left = sent as u64;
                if single {
                    q.count_cut_through(first, left, sent_bytes);
                    q.drained(first);
                    left = 0;
                }
                for c in (0..crate::qos::N_QUEUES).rev() {
                    if left == 0 {
                        break;
                    }
                    let k = u64::from(count[c]).min(left);
                    if k == 0 {
                        continue;
                    }
                    let b = if k == u64::from(count[c]) {
                        bytes[c]
                    } else {
                        sent_bytes
                    };
                    q.count_cut_through(c, k, b);
                    left -= k;
                    sent_bytes = sent_bytes.saturating_sub(b);
                }
                // The rest of the burst the device was offered waits in its
                // backlog (or, after an error, is lost), as if released by
                // the scheduler; what it was never offered waits in its
                // queue.
                if !ps.egress.is_empty() {
                    let offered = (BURST - sent % BURST).min(ps.egress.len());
                    for b in ps.egress.drain(..offered) {
                        q.count_enqueued(q.classify(&b));
                        if result.is_ok() {
                            ps.txq.push(b);
                        } else {
                            ps.stats.drops.add(DropReason::TxError, 1);
                            self.pool.put(b);
                        }
                    }
                    enqueue_all(q, ps.egress.drain(..), &mut ps.stats, &mut self.pool);
                }
                return result.map(|()| sent);
            }
        }
        enqueue_all(q, ps.egress.drain(..), &mut ps.stats, &mut self.pool);
        let mut sent = 0;
        loop {
            if ps.txq.is_empty() && q.dequeue_burst(now, &mut ps.txq, BURST) == 0 {
                break;
            }
            let want = ps.txq.len();
            match port.tx_burst(&ps.txq) {
                Ok(n) => {
                    let n = n.min(want);
                    sent += n;
                    ps.stats.tx_packets += n as u64;
                    for b in ps.txq.drain(..n) {
                        ps.stats.tx_bytes += b.len() as u64;
                        q.count_sent(q.classify(&b), 1, b.len() as u64);
                        self.pool.put(b);
                    }
                    if n < want {
                        break;
                    }
                }
                Err(e) => {
                    ps.stats.drops.add(DropReason::TxError, ps.txq.len() as u64);
                    retire(&mut self.pool, ps.txq.drain(..));
                    return Err(e);
                }
            }
        }
        Ok(sent)
    }

    fn flush_plain(&mut self, idx: u16, port: &mut dyn Port) -> Result<usize, PortError> {
        let Some(ps) = self.ports.get_mut(idx as usize) else {
            return Ok(0);
        };
        let (sent, result) = send_bursts(port, &ps.egress);
        ps.stats.tx_packets += sent as u64;
        ps.stats.tx_bytes += retire(&mut self.pool, ps.egress.drain(..sent));
        if let Err(e) = result {
            ps.stats
                .drops
                .add(DropReason::TxError, ps.egress.len() as u64);
            retire(&mut self.pool, ps.egress.drain(..));
            return Err(e);
        }
        Ok(sent)
    }

    /// Rank of a rule (for ordering in reports).
    pub fn rule_rank(&self, id: u32) -> Option<Rank> {
        self.tables.get(id).map(|r| r.rank)
    }
}

/// Returns `frames` to the pool; returns their bytes.
#[inline(always)]
fn retire(pool: &mut BufPool, frames: std::vec::Drain<'_, PacketBuf>) -> u64 {
    let mut bytes = 0;
    for b in frames {
        bytes += b.len() as u64;
        pool.put(b);
    }
    bytes
}

/// Puts `frames` in their queues; a full queue drops them (counted).
#[inline(always)]
fn enqueue_all(
    q: &mut crate::qos::EgressQos,
    frames: impl Iterator<Item = PacketBuf>,
    stats: &mut PortStats,
    pool: &mut BufPool,
) {
    for b in frames {
        if let Err(b) = q.enqueue(b) {
            stats.drops.add(DropReason::QueueFull, 1);
            pool.put(b);
        }
    }
}

/// Offers `frames` to `port` in bursts of at most [`BURST`] until it takes
/// less than a whole burst or fails; returns how many it took (a prefix)
/// and the error, if any.
#[inline(always)]
fn send_bursts(port: &mut dyn Port, frames: &[PacketBuf]) -> (usize, Result<(), PortError>) {
    let mut sent = 0;
    while sent < frames.len() {
        let chunk = (frames.len() - sent).min(BURST);
        match port.tx_burst(&frames[sent..sent + chunk]) {
            Ok(k) => {
                let k = k.min(chunk);
                sent += k;
                if k < chunk {
                    break;
                }
            }
            Err(e) => return (sent, Err(e)),
        }
    }
    (sent, Ok(()))
}

/// Formats a rule like `ovs-ofctl dump-flows` does, counters included.
pub fn dump_flow(r: &Installed, now: Timestamp) -> String {
    dump_rule(&r.rule, &r.stats, now)
}

/// [`dump_flow`] for a rule and its counters held apart.
pub fn dump_rule(rule: &Rule, stats: &crate::table::RuleStats, now: Timestamp) -> String {
    struct View<'a> {
        rule: &'a Rule,
        stats: &'a crate::table::RuleStats,
    }
    let r = View { rule, stats };
    // OVS keeps flow times in whole milliseconds.
    let ms = |t: Timestamp| t.0 / 1_000_000;
    let dur = ms(now).saturating_sub(ms(r.stats.installed));
    let duration = if dur == 0 {
        "0s".to_string()
    } else {
        format!("{}.{:03}s", dur / 1000, dur % 1000)
    };
    let mut s = format!(
        " cookie={:#x}, duration={duration}, table={}, n_packets={}, n_bytes={}, ",
        r.rule.cookie, r.rule.table, r.stats.packets, r.stats.bytes
    );
    if r.rule.idle_timeout > 0 {
        s.push_str(&format!("idle_timeout={}, ", r.rule.idle_timeout));
    }
    if r.rule.hard_timeout > 0 {
        s.push_str(&format!("hard_timeout={}, ", r.rule.hard_timeout));
    }
    s.push_str(&format!(
        "idle_age={}, ",
        ms(now).saturating_sub(ms(r.stats.last_used)) / 1000
    ));
    let m = crate::flow::syntax::format_match(&r.rule.matches, r.rule.priority);
    s.push_str(&m);
    if !m.is_empty() {
        s.push(' ');
    }
    s.push_str(&format!(
        "actions={}",
        crate::flow::Actions(&r.rule.actions)
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::parse_flow;
    use crate::port::memory::MemoryPort;
    use crate::trace::{NoTrace, TraceLog};
    use crate::vlan::VlanMode;

    fn frame(dst: u64, src: u64, vlan: Option<(u16, u16)>, ethertype: u16) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&crate::key::mac_to_bytes(dst));
        f.extend_from_slice(&crate::key::mac_to_bytes(src));
        if let Some((vid, pcp)) = vlan {
            f.extend_from_slice(&0x8100u16.to_be_bytes());
            f.extend_from_slice(&((pcp << 13) | vid).to_be_bytes());
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.resize(f.len() + 46, 0xab);
        f
    }

    struct Rig {
        p: Pipeline,
        ports: Vec<MemoryPort>,
        batch: Batch,
    }

    impl Rig {
        fn new(cfgs: Vec<PortConfig>, rules: &[&str]) -> Rig {
            let ports = cfgs.iter().map(|c| MemoryPort::new(&c.name)).collect();
            let mut p = Pipeline::new(cfgs, PipelineOptions::default()).expect("pipeline");
            if rules.is_empty() {
                p.add_rule(Rule::default_normal(), Timestamp(0));
            }
            for r in rules {
                p.add_rule(parse_flow(r, &()).expect("rule"), Timestamp(0));
            }
            Rig {
                p,
                ports,
                batch: Batch::new(BURST),
            }
        }

        /// Sends one frame in on port index `i` at second `s`; returns what
        /// each port sent.
        fn send(&mut self, i: u16, s: u64, f: &[u8]) -> Vec<Vec<Vec<u8>>> {
            self.batch.clear();
            self.batch.push_frame(
                f,
                crate::packet::PacketMeta::new(i, Timestamp::from_secs(s)),
            );
            self.p.process(&mut self.batch, &mut NoTrace);
            let mut out = Vec::new();
            for (k, port) in self.ports.iter_mut().enumerate() {
                self.p.flush_port(k as u16, port).expect("flush");
                out.push(port.take_sent().into_iter().map(|(_, f)| f).collect());
            }
            out
        }
    }

    fn ports3() -> Vec<PortConfig> {
        vec![
            PortConfig::new("p1", 1),
            PortConfig::new("p2", 2),
            PortConfig::new("p3", 3),
        ]
    }

    const A: u64 = 0x0200_0000_000a;
    const B: u64 = 0x0200_0000_000b;
    const BCAST: u64 = 0xffff_ffff_ffff;

    #[test]
    fn normal_floods_then_learns() {
        let mut r = Rig::new(ports3(), &[]);
        let o = r.send(0, 1, &frame(B, A, None, 0x0800));
        assert_eq!((o[0].len(), o[1].len(), o[2].len()), (0, 1, 1));
        let o = r.send(1, 2, &frame(A, B, None, 0x0800));
        assert_eq!((o[0].len(), o[1].len(), o[2].len()), (1, 0, 0));
        // Learned on the input port: dropped.
        let o = r.send(0, 3, &frame(A, B, None, 0x0800));
        assert!(o.iter().all(|v| v.is_empty()));
        assert_eq!(
            r.p.port_stats(0)
                .map(|s| s.drops.get(DropReason::LearnedOnInPort)),
            Some(1)
        );
    }

    #[test]
    fn access_to_trunk_tags_and_back() {
        let mut c = ports3();
        c[0].vlan = PortVlan::access(10);
        c[1].vlan = PortVlan::access(20);
        let mut r = Rig::new(c, &[]);
        let o = r.send(0, 1, &frame(BCAST, A, None, 0x0800));
        assert!(o[1].is_empty(), "other access VLAN must not see it");
        assert_eq!(&o[2][0][12..16], &[0x81, 0x00, 0x00, 0x0a]);
        // Tagged VLAN 10 from the trunk reaches the access port untagged.
        let o = r.send(2, 2, &frame(A, B, Some((10, 3)), 0x0800));
        assert_eq!(o[0], vec![frame(A, B, None, 0x0800)]);
        // VLAN 20 broadcast from the trunk reaches only p2.
        let o = r.send(2, 3, &frame(BCAST, B, Some((20, 0)), 0x0800));
        assert_eq!((o[0].len(), o[1].len()), (0, 1));
        // A tagged frame on an access port is refused.
        let o = r.send(0, 4, &frame(BCAST, A, Some((10, 0)), 0x0800));
        assert!(o.iter().all(|v| v.is_empty()));
        assert_eq!(
            r.p.port_stats(0)
                .map(|s| s.drops.get(DropReason::VlanNotAllowed)),
            Some(1)
        );
    }

    #[test]
    fn native_untagged_pops_native_vlan() {
        let mut c = ports3();
        c[0].vlan =
            PortVlan::new(Some(VlanMode::NativeUntagged), Some(10), Some(&[10, 20])).expect("vlan");
        let mut r = Rig::new(c, &[]);
        let o = r.send(2, 1, &frame(BCAST, A, Some((10, 0)), 0x0800));
        assert_eq!(o[0], vec![frame(BCAST, A, None, 0x0800)]);
        let o = r.send(2, 2, &frame(BCAST, A, Some((20, 0)), 0x0800));
        assert_eq!(o[0], vec![frame(BCAST, A, Some((20, 0)), 0x0800)]);
    }

    #[test]
    fn reserved_multicast_is_not_forwarded_or_learned() {
        let mut r = Rig::new(ports3(), &[]);
        let o = r.send(0, 1, &frame(0x0180_c200_0000, A, None, 0x0026));
        assert!(o.iter().all(|v| v.is_empty()));
        assert!(r.p.mac_table().is_empty());
    }

    #[test]
    fn actions_apply_in_order() {
        let mut r = Rig::new(
            ports3(),
            &["in_port=1,actions=output:2,mod_vlan_vid:5,output:3"],
        );
        let f = frame(B, A, None, 0x0800);
        let o = r.send(0, 1, &f);
        assert_eq!(o[1], vec![f.clone()]);
        assert_eq!(o[2], vec![frame(B, A, Some((5, 0)), 0x0800)]);
    }

    #[test]
    fn strip_push_and_macs() {
        let mut r = Rig::new(
            ports3(),
            &[
                "in_port=1,actions=strip_vlan,mod_dl_src:02:00:00:00:00:99,output:2",
                "in_port=2,actions=push_vlan:0x88a8,output:3",
            ],
        );
        let o = r.send(0, 1, &frame(B, A, Some((7, 2)), 0x0800));
        assert_eq!(o[1], vec![frame(B, 0x0200_0000_0099, None, 0x0800)]);
        let o = r.send(1, 1, &frame(B, A, None, 0x0800));
        let mut want = frame(B, A, None, 0x0800);
        want.splice(12..12, [0x88, 0xa8, 0, 0]);
        assert_eq!(o[2], vec![want]);
    }

    #[test]
    fn resubmit_loop_drops_everything() {
        let mut r = Rig::new(ports3(), &["in_port=1,actions=output:2,resubmit(,0)"]);
        let o = r.send(0, 1, &frame(B, A, None, 0x0800));
        assert!(o.iter().all(|v| v.is_empty()));
        assert_eq!(
            r.p.port_stats(0)
                .map(|s| s.drops.get(DropReason::ResubmitLimit)),
            Some(1)
        );
        assert_eq!(
            r.p.pool.available(),
            PipelineOptions::default().pool_buffers + BURST * 4
        );
    }

    #[test]
    fn counters_timeouts_and_mtu() {
        let mut c = ports3();
        c[2].mtu = Some(1500);
        let mut r = Rig::new(
            c,
            &[
                "idle_timeout=10,in_port=1,actions=output:3",
                "priority=1,actions=drop",
            ],
        );
        let big = vec![0u8; 2000];
        let small = frame(B, A, None, 0x0800);
        let o = r.send(0, 1, &small);
        assert_eq!(o[2].len(), 1);
        let o = r.send(0, 2, &big);
        assert!(o[2].is_empty());
        assert_eq!(
            r.p.port_stats(2).map(|s| s.drops.get(DropReason::TxMtu)),
            Some(1)
        );
        let rules = r.p.rules();
        assert_eq!(rules[0].1.stats.packets, 2);
        // Idle for 10 s from the last hit at t=2: gone at t=12.
        r.send(1, 12, &small);
        assert_eq!(
            r.p.rules().len(),
            2,
            "exactly at the deadline it still stands"
        );
        r.send(1, 13, &small);
        assert_eq!(r.p.rules().len(), 1);
        assert_eq!(r.p.removed_rules().len(), 1);
        let o = r.send(0, 14, &small);
        assert!(o[2].is_empty());
    }

    /// Frames for the equivalence test: a mix of sources, destinations,
    /// VLANs and ports, with repeats so learning and caching matter.
    fn mixed_frames() -> Vec<(u16, Vec<u8>)> {
        let mut v = Vec::new();
        let mut x = 7u32;
        for _ in 0..600 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let port = (x >> 8) % 3;
            let src = 0x0200_0000_0000 + ((x >> 12) % 6) as u64;
            let dst = match (x >> 16) % 8 {
                0 => BCAST,
                1 => 0x0180_c200_0000,
                n => 0x0200_0000_0000 + (n % 6) as u64,
            };
            let vlan = match (x >> 20) % 4 {
                0 => Some((10, 3)),
                1 => Some((0, 5)),
                _ => None,
            };
            let ty = [0x0800u16, 0x0806, 0x86dd][((x >> 24) % 3) as usize];
            v.push((port as u16, frame(dst, src, vlan, ty)));
        }
        v
    }

    /// (frames sent per port with their timestamps, port counters, rule hits).
    type Run = (Vec<Vec<(u64, Vec<u8>)>>, Vec<PortStats>, Vec<u64>);

    fn run_batched(batch_size: usize) -> Run {
        let mut c = ports3();
        c[0].vlan = PortVlan::new(Some(VlanMode::NativeUntagged), Some(10), None).expect("vlan");
        let mut r = Rig::new(
            c,
            &[
                "priority=10,arp,actions=normal,output:3",
                "priority=5,ipv6,actions=mod_vlan_vid:7,normal",
                "priority=0,actions=normal",
            ],
        );
        let mut outs = vec![Vec::new(); 3];
        let frames = mixed_frames();
        for (n, chunk) in frames.chunks(batch_size).enumerate() {
            r.batch.clear();
            for (k, (port, f)) in chunk.iter().enumerate() {
                let ts = Timestamp((n * batch_size + k) as u64 * 300_000_000);
                r.batch
                    .push_frame(f, crate::packet::PacketMeta::new(*port, ts));
            }
            r.p.process(&mut r.batch, &mut NoTrace);
            for (k, port) in r.ports.iter_mut().enumerate() {
                r.p.flush_port(k as u16, port).expect("flush");
                outs[k].extend(port.take_sent().into_iter().map(|(m, f)| (m.ts.0, f)));
            }
        }
        let stats = (0..3)
            .map(|i| r.p.port_stats(i).copied().unwrap_or_default())
            .collect();
        let rules = r.p.rules().iter().map(|(_, x)| x.stats.packets).collect();
        (outs, stats, rules)
    }

    #[test]
    fn staged_batches_equal_one_frame_at_a_time() {
        let one = run_batched(1);
        let full = run_batched(BURST);
        let odd = run_batched(7);
        let sent: usize = one.0.iter().map(|v| v.len()).sum();
        assert!(sent > 300, "only {sent} frames sent");
        assert_eq!(one, full);
        assert_eq!(one, odd);
    }

    #[test]
    fn cached_normal_decisions_are_not_reused_after_resubmit_with_another_port() {
        let mut r = Rig::new(
            ports3(),
            &[
                "priority=10,in_port=1,actions=resubmit(2,0)",
                "priority=0,actions=normal",
            ],
        );
        const D: u64 = 0x0200_0000_000d;
        const S: u64 = 0x0200_0000_000e;
        r.send(0, 1, &frame(BCAST, D, None, 0x0800)); // D learned on p1
        let o = r.send(1, 1, &frame(D, S, None, 0x0800)); // S on p2 -> D on p1 (decision cached)
        assert_eq!(o[0].len(), 1);
        // S->D arriving on p1: NORMAL runs with in_port p1 (the lookup used p2),
        // learns S on p1 (a move) and finds D on p1: dropped, not hairpinned.
        let o = r.send(0, 1, &frame(D, S, None, 0x0800));
        assert!(o.iter().all(|v| v.is_empty()), "{o:?}");
        assert_eq!(r.p.mac_table().moves, 1);
    }

    #[test]
    fn traced_and_untraced_agree() {
        // The traced path skips every cache; both must decide the same.
        let rules = [
            "priority=20,in_port=1,dl_type=0x0806,actions=resubmit(2,0)",
            "priority=10,ipv6,actions=mod_vlan_vid:7,normal",
            "priority=0,actions=normal",
        ];
        let mut plain = Rig::new(ports3(), &rules);
        let mut traced = Rig::new(ports3(), &rules);
        for (n, (port, f)) in mixed_frames().into_iter().enumerate() {
            let meta = crate::packet::PacketMeta::new(port, Timestamp(n as u64 * 100_000_000));
            plain.batch.clear();
            plain.batch.push_frame(&f, meta);
            plain.p.process(&mut plain.batch, &mut NoTrace);
            traced.batch.clear();
            traced.batch.push_frame(&f, meta);
            traced
                .p
                .process(&mut traced.batch, &mut TraceLog::default());
            for k in 0..3u16 {
                plain
                    .p
                    .flush_port(k, &mut plain.ports[k as usize])
                    .expect("flush");
                traced
                    .p
                    .flush_port(k, &mut traced.ports[k as usize])
                    .expect("flush");
                assert_eq!(
                    plain.ports[k as usize].take_sent(),
                    traced.ports[k as usize].take_sent(),
                    "frame {n}, port {k}"
                );
            }
        }
        for k in 0..3u16 {
            assert_eq!(plain.p.port_stats(k), traced.p.port_stats(k));
        }
    }

    #[test]
    fn set_queue_applies_to_the_outputs_after_it() {
        let mut r = Rig::new(
            ports3(),
            &["in_port=1,actions=set_queue:1,output:2,set_queue:2,output:3"],
        );
        r.batch.clear();
        r.batch.push_frame(
            &frame(B, A, None, 0x0800),
            crate::packet::PacketMeta::default(),
        );
        r.p.process(&mut r.batch, &mut NoTrace);
        for k in 0..3u16 {
            r.p.flush_port(k, &mut r.ports[k as usize]).expect("flush");
        }
        assert_eq!(r.ports[1].take_sent()[0].0.queue, 1);
        assert_eq!(r.ports[2].take_sent()[0].0.queue, 2);
    }

    #[test]
    fn an_untimed_strict_port_orders_each_burst_by_priority() {
        let mut cfgs = ports3();
        cfgs[1].qos = Some(crate::qos::QosConfig::default());
        let mut r = Rig::new(cfgs, &["in_port=1,actions=output:2"]);
        let send = |r: &mut Rig, pcps: &[u8]| {
            r.batch.clear();
            for (i, p) in pcps.iter().enumerate() {
                let mut f = frame(B, A, Some((5, *p as u16)), 0x0800);
                f[30] = i as u8; // a sequence number
                r.batch
                    .push_frame(&f, crate::packet::PacketMeta::new(0, Timestamp(1)));
            }
            r.p.process(&mut r.batch, &mut NoTrace);
            r.p.flush_port(1, &mut r.ports[1]).expect("flush");
            r.ports[1]
                .take_sent()
                .into_iter()
                .map(|(_, f)| (f[14] >> 5, f[30]))
                .collect::<Vec<_>>()
        };
        // One class: straight through, in order.
        assert_eq!(send(&mut r, &[3, 3, 3]), vec![(3, 0), (3, 1), (3, 2)]);
        // Mixed: highest queue first, arrival order within a queue; PCP 1
        // (queue 0) after PCP 0 (queue 1).
        assert_eq!(
            send(&mut r, &[0, 5, 1, 5, 0, 7]),
            vec![(7, 5), (5, 1), (5, 3), (0, 0), (0, 4), (1, 2)]
        );
        let q = r.p.queue_stats(1).expect("qos");
        assert_eq!((q[3].enqueued, q[3].tx_packets), (3, 3));
        assert_eq!((q[5].enqueued, q[5].tx_packets), (2, 2));
        assert_eq!(q.iter().map(|s| s.depth).sum::<u64>(), 0);
    }

    #[test]
    fn a_meter_stops_the_actions_after_it_and_keeps_those_before() {
        let mut r = Rig::new(
            ports3(),
            &[
                "in_port=1,actions=output:3,meter:1,output:2",
                "in_port=2,actions=meter:1,output:3",
            ],
        );
        // Room for two 60-byte frames, then (almost) nothing refills.
        r.p.set_meter(1, Some(crate::qos::Meter::new(1, 1000)));
        let f = frame(B, A, None, 0x0800);
        let got: Vec<(usize, usize)> = (0..3)
            .map(|_| {
                let o = r.send(0, 1, &f);
                (o[1].len(), o[2].len())
            })
            .collect();
        assert_eq!(got, vec![(1, 1), (1, 1), (0, 1)]);
        assert_eq!(r.p.meters(), vec![(1, 1, 1000, 2, 1)]);
        let drops = |r: &Rig, i| {
            r.p.port_stats(i)
                .expect("port")
                .drops
                .get(DropReason::Meter)
        };
        assert_eq!(drops(&r, 0), 0, "the frame still went out on port 3");
        // Nothing output before the meter: the frame is dropped, counted.
        let o = r.send(1, 1, &f);
        assert!(o.iter().all(|p| p.is_empty()));
        assert_eq!(drops(&r, 1), 1);
        // The trace says why the actions stopped.
        let mut log = crate::trace::TraceLog::default();
        r.batch.clear();
        r.batch.push_frame(
            &f,
            crate::packet::PacketMeta::new(0, Timestamp::from_secs(1)),
        );
        r.p.process(&mut r.batch, &mut log);
        let text = crate::trace::render(&log.events, &|p| format!("p{}", p + 1));
        assert!(
            text.contains("meter: over its rate; the actions after it do not run"),
            "{text}"
        );
        assert_eq!(crate::trace::delivered(&log.events), vec![2]);
    }

    #[test]
    fn a_mixed_burst_the_device_takes_in_part_keeps_its_order_and_counts() {
        let mut cfgs = ports3();
        let mut qos = crate::qos::QosConfig::default();
        qos.queues[2].depth = 2; // PCP 2
        cfgs[1].qos = Some(qos);
        let mut r = Rig::new(cfgs, &["in_port=1,actions=output:2"]);
        r.ports[1].tx_limit = 3;
        let send = |r: &mut Rig, pcps: &[u8], t0: u64| {
            r.batch.clear();
            for (i, p) in pcps.iter().enumerate() {
                let mut f = frame(B, A, Some((5, *p as u16)), 0x0800);
                f[30] = i as u8;
                // Later frames arrived later.
                let ts = Timestamp(t0 + i as u64);
                r.batch
                    .push_frame(&f, crate::packet::PacketMeta::new(0, ts));
            }
            r.p.process(&mut r.batch, &mut NoTrace);
            r.p.flush_port(1, &mut r.ports[1]).expect("flush");
        };
        let sent = |r: &mut Rig| {
            let s = r.ports[1].take_sent();
            let ts: Vec<u64> = s.iter().map(|(m, _)| m.ts.0).collect();
            assert!(ts.windows(2).all(|w| w[0] <= w[1]), "departures {ts:?}");
            s.into_iter()
                .map(|(_, f)| (f[14] >> 5, f[30]))
                .collect::<Vec<_>>()
        };
        send(&mut r, &[0, 6, 0, 6, 4], 100);
        assert_eq!(sent(&mut r), vec![(6, 1), (6, 3), (4, 4)]);
        let q = r.p.queue_stats(1).expect("qos");
        assert_eq!((q[6].enqueued, q[6].tx_packets), (2, 2));
        assert_eq!((q[4].enqueued, q[4].tx_packets), (1, 1));
        // The two PCP 0 frames were released with the rest: they wait in
        // the device's backlog, not in their queue, and are not sent yet.
        assert_eq!((q[1].enqueued, q[1].tx_packets, q[1].depth), (2, 0, 0));
        assert_eq!(r.p.egress_len(1), 2);
        // The device takes everything again: its backlog goes first, then
        // the next burst by priority; three PCP 2 frames overflow a queue
        // of two, and one is dropped and counted.
        r.ports[1].tx_limit = usize::MAX;
        send(&mut r, &[2, 2, 2, 7], 200);
        assert_eq!(sent(&mut r), vec![(0, 0), (0, 2), (7, 3), (2, 0), (2, 1)]);
        let q = r.p.queue_stats(1).expect("qos");
        assert_eq!((q[1].tx_packets, q[1].depth), (2, 0));
        assert_eq!((q[2].enqueued, q[2].tx_packets, q[2].dropped), (2, 2, 1));
        assert_eq!(
            r.p.port_stats(1)
                .expect("port")
                .drops
                .get(DropReason::QueueFull),
            1
        );
        // Back to an empty port: mixed bursts cut through, ordered.
        send(&mut r, &[0, 2, 6], 300);
        assert_eq!(sent(&mut r), vec![(6, 2), (2, 1), (0, 0)]);
        let q = r.p.queue_stats(1).expect("qos");
        assert_eq!(q.iter().map(|s| s.depth).sum::<u64>(), 0);
        assert_eq!(
            q.iter().map(|s| s.tx_packets).sum::<u64>(),
            q.iter().map(|s| s.enqueued).sum::<u64>()
        );
        // Through the queues: a frame the scheduler released counts as
        // sent only once the device takes it.
        r.ports[1].tx_limit = 1;
        send(&mut r, &[0, 6], 400); // 6 goes; 0 waits in the backlog
        assert_eq!(sent(&mut r), vec![(6, 1)]);
        send(&mut r, &[5, 4], 500); // the backlog, then 5; 4 waits
        assert_eq!(sent(&mut r), vec![(0, 0), (5, 0)]);
        let tx = |r: &Rig| r.p.queue_stats(1).expect("qos").map(|s| s.tx_packets);
        let before = tx(&r);
        assert_eq!(r.p.egress_len(1), 1, "PCP 4 waits for the device");
        r.ports[1].tx_limit = usize::MAX;
        r.p.flush_port(1, &mut r.ports[1]).expect("flush");
        assert_eq!(sent(&mut r), vec![(4, 1)]);
        let after = tx(&r);
        assert_eq!(after[4], before[4] + 1);
        assert_eq!(after.iter().sum::<u64>(), before.iter().sum::<u64>() + 1);
    }

    /// What a QoS port sent in each step, and all its counters after it.
    type Seen = Vec<(
        Vec<(u8, u8, u64)>,
        [crate::qos::QueueStats; crate::qos::N_QUEUES],
        (u64, u64, u64, u64, u64),
    )>;

    /// Runs `steps` (frames by PCP, what the device takes per call, and
    /// whether it fails) through port 2 with `qos`, with or without
    /// cut-through.
    fn run_qos_steps(
        qos: &crate::qos::QosConfig,
        steps: &[(Vec<u8>, usize, bool)],
        cut_through: bool,
    ) -> Seen {
        let mut cfgs = ports3();
        cfgs[1].qos = Some(qos.clone());
        let mut r = Rig::new(cfgs, &["in_port=1,actions=output:2"]);
        r.p.cut_through = cut_through;
        let mut seen = Vec::new();
        let mut seq = 0u8;
        for (k, (pcps, limit, fail)) in steps.iter().enumerate() {
            // Several batches may be switched before a port is flushed.
            for chunk in pcps.chunks(BURST) {
                r.batch.clear();
                for p in chunk {
                    let mut f = frame(B, A, Some((5, *p as u16)), 0x0800);
                    f[30] = seq;
                    seq = seq.wrapping_add(1);
                    // Arrivals jitter, as captures' clocks may.
                    let ts = Timestamp(1000 * k as u64 + (seq as u64 * 7) % 13);
                    r.batch
                        .push_frame(&f, crate::packet::PacketMeta::new(0, ts));
                }
                r.p.process(&mut r.batch, &mut NoTrace);
            }
            r.ports[1].tx_limit = *limit;
            r.ports[1].tx_fail = *fail;
            let _ = r.p.flush_port(1, &mut r.ports[1]);
            let sent = r.ports[1]
                .take_sent()
                .into_iter()
                .map(|(m, f)| (f[14] >> 5, f[30], m.ts.0))
                .collect();
            let ps = r.p.port_stats(1).expect("port");
            seen.push((
                sent,
                r.p.queue_stats(1).expect("qos"),
                (
                    ps.tx_packets,
                    ps.tx_bytes,
                    ps.drops.get(DropReason::QueueFull),
                    ps.drops.get(DropReason::TxError),
                    r.p.egress_len(1) as u64,
                ),
            ));
        }
        seen
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]
        /// Cut-through is an optimisation only: with any scheduler, queue
        /// depths, bursts and device pushback, a port sends the same frames
        /// in the same order at the same times, with the same counters, as
        /// when every frame goes through the queues.
        #[test]
        fn cut_through_changes_nothing(
            sched in 0u8..3,
            strict in 1u8..8,
            weights in proptest::collection::vec(1u32..5, 8),
            depths in proptest::collection::vec(
                proptest::prop_oneof![3 => 1usize..12, 1 => 30usize..80],
                8,
            ),
            steps in proptest::collection::vec(
                (
                    proptest::prop_oneof![
                        // Mixed bursts.
                        proptest::collection::vec(
                            proptest::prop_oneof![3 => 0u8..8, 1 => proptest::strategy::Just(5u8)],
                            0..150,
                        ),
                        // Long bursts of one class.
                        proptest::strategy::Strategy::prop_map((0u8..8, 1usize..70), |(p, n)| vec![p; n]),
                    ],
                    proptest::prop_oneof![2 => proptest::strategy::Just(usize::MAX), 1 => 0usize..6],
                    proptest::prop_oneof![7 => proptest::strategy::Just(false), 1 => proptest::strategy::Just(true)],
                ),
                1..12,
            ),
        ) {
            let mut qos = crate::qos::QosConfig::default();
            qos.scheduler = match sched {
                0 => crate::qos::Scheduler::Strict,
                1 => crate::qos::Scheduler::Drr,
                _ => crate::qos::Scheduler::Ets { strict },
            };
            for q in 0..8 {
                qos.weights[q] = weights[q];
                qos.queues[q].depth = depths[q];
            }
            let with = run_qos_steps(&qos, &steps, true);
            let without = run_qos_steps(&qos, &steps, false);
            for (k, (a, b)) in with.iter().zip(&without).enumerate() {
                proptest::prop_assert_eq!(a, b, "step {}", k);
            }
        }
    }

    #[test]
    fn frames_waiting_for_a_port_that_goes_down_are_counted() {
        let mut cfgs = ports3();
        cfgs[1].qos = Some(crate::qos::QosConfig::default());
        let mut r = Rig::new(cfgs, &["in_port=1,actions=output:2"]);
        r.ports[1].tx_limit = 0;
        r.batch.clear();
        for p in [0u16, 3, 5, 7, 3, 0] {
            r.batch.push_frame(
                &frame(B, A, Some((5, p)), 0x0800),
                crate::packet::PacketMeta::new(0, Timestamp(1)),
            );
        }
        r.p.process(&mut r.batch, &mut NoTrace);
        r.p.flush_port(1, &mut r.ports[1]).expect("flush");
        assert_eq!(r.p.egress_len(1), 6);
        r.p.set_port_down(1, true);
        assert_eq!(r.p.egress_len(1), 0);
        let drops = r.p.port_stats(1).expect("port").drops;
        assert_eq!(drops.get(DropReason::PortDown), 6);
    }

    #[test]
    fn changing_qos_counts_waiting_frames_once() {
        let mut cfgs = ports3();
        cfgs[1].qos = Some(crate::qos::QosConfig::default());
        let mut r = Rig::new(cfgs, &["in_port=1,actions=output:2"]);
        r.ports[1].tx_limit = 1;
        r.batch.clear();
        for p in [0u16, 3, 5, 7, 3, 0] {
            r.batch.push_frame(
                &frame(B, A, Some((5, p)), 0x0800),
                crate::packet::PacketMeta::new(0, Timestamp(1)),
            );
        }
        r.p.process(&mut r.batch, &mut NoTrace);
        r.p.flush_port(1, &mut r.ports[1]).expect("flush");
        // One queued frame stays queued: the device's backlog is full.
        r.ports[1].tx_limit = 0;
        r.batch.clear();
        r.batch.push_frame(
            &frame(B, A, Some((5, 2)), 0x0800),
            crate::packet::PacketMeta::new(0, Timestamp(2)),
        );
        r.p.process(&mut r.batch, &mut NoTrace);
        r.p.flush_port(1, &mut r.ports[1]).expect("flush");
        let mut qos = crate::qos::QosConfig::default();
        qos.scheduler = crate::qos::Scheduler::Drr;
        let spare = r.p.set_port_qos(1, Some(qos), Vec::new());
        assert!(spare.is_empty());
        r.ports[1].tx_limit = usize::MAX;
        r.p.flush_port(1, &mut r.ports[1]).expect("flush");
        assert_eq!(r.ports[1].take_sent().len(), 7);
        let q = r.p.queue_stats(1).expect("qos");
        let sum = |f: fn(&crate::qos::QueueStats) -> u64| q.iter().map(f).sum::<u64>();
        assert_eq!(sum(|s| s.enqueued), 7, "{q:?}");
        assert_eq!(sum(|s| s.tx_packets), 7, "{q:?}");
        assert_eq!(sum(|s| s.depth), 0);
    }

    #[test]
    fn removing_qos_keeps_frames_the_device_refused() {
        let mut cfgs = ports3();
        cfgs[1].qos = Some(crate::qos::QosConfig::default());
        let mut r = Rig::new(cfgs, &["in_port=1,actions=output:2"]);
        r.ports[1].tx_limit = 1;
        r.batch.clear();
        for i in 0..4u8 {
            let mut f = frame(B, A, None, 0x0800);
            f[20] = i;
            r.batch
                .push_frame(&f, crate::packet::PacketMeta::new(0, Timestamp(1)));
        }
        r.p.process(&mut r.batch, &mut NoTrace);
        r.p.flush_port(1, &mut r.ports[1]).expect("flush");
        assert_eq!(r.ports[1].take_sent().len(), 1);
        // Three wait; QoS goes away; they are sent, in order, and nothing
        // is left behind.
        let spare = r.p.set_port_qos(1, None, Vec::new());
        assert_eq!(spare.len(), crate::qos::QosConfig::default().buffers());
        r.ports[1].tx_limit = usize::MAX;
        r.p.flush_port(1, &mut r.ports[1]).expect("flush");
        let sent: Vec<u8> = r.ports[1].take_sent().iter().map(|(_, f)| f[20]).collect();
        assert_eq!(sent, vec![1, 2, 3]);
        assert_eq!(r.p.egress_len(1), 0);
    }

    #[test]
    fn a_full_removal_log_says_so() {
        let mut p = Pipeline::new(ports3(), PipelineOptions::default()).expect("pipeline");
        for i in 0..(REMOVED_LOG as u32 + 10) {
            let r = parse_flow(&format!("hard_timeout=1,udp,tp_dst={i},actions=drop"), &())
                .expect("rule");
            p.add_rule(r, Timestamp(0));
        }
        p.run_timers(Timestamp::from_secs(5));
        let (gone, lost) = p.drain_removed();
        assert_eq!(gone.len(), REMOVED_LOG);
        assert!(lost);
        assert!(!p.drain_removed().1, "the flag is cleared");
    }

    #[test]
    fn normal_cache_follows_a_mac_move_in_the_same_second() {
        let mut r = Rig::new(ports3(), &[]);
        r.send(0, 1, &frame(BCAST, A, None, 0x0800));
        let o = r.send(1, 1, &frame(A, B, None, 0x0800));
        assert_eq!(o[0].len(), 1);
        let o = r.send(1, 1, &frame(A, B, None, 0x0800));
        assert_eq!(o[0].len(), 1, "second frame of the flow, from the cache");
        r.send(2, 1, &frame(BCAST, A, None, 0x0806)); // A moves to p3
        let o = r.send(1, 1, &frame(A, B, None, 0x0800));
        assert_eq!((o[0].len(), o[2].len()), (0, 1));
    }

    #[test]
    fn malformed_frames_are_counted_once() {
        let mut r = Rig::new(ports3(), &[]);
        let mut f = frame(BCAST, A, None, 0x0800);
        f[14] = 0x44; // IHL 4
        r.send(0, 1, &f);
        assert_eq!(r.p.port_stats(0).map(|s| s.malformed.ipv4_invalid), Some(1));
    }

    #[test]
    fn runts_and_table_miss_are_counted() {
        let mut r = Rig::new(ports3(), &["in_port=2,actions=output:1"]);
        r.send(0, 1, &[1, 2, 3]);
        r.send(0, 1, &frame(B, A, None, 0x0800));
        let s = r.p.port_stats(0).copied().expect("stats");
        assert_eq!(s.drops.get(DropReason::Runt), 1);
        assert_eq!(s.drops.get(DropReason::TableMiss), 1);
        assert_eq!(s.rx_packets, 2);
    }

    #[test]
    fn trace_tells_the_story() {
        let mut r = Rig::new(ports3(), &[]);
        r.batch.clear();
        r.batch.push_frame(
            &frame(BCAST, A, None, 0x0806),
            crate::packet::PacketMeta::default(),
        );
        let mut log = TraceLog::default();
        r.p.process(&mut r.batch, &mut log);
        let names = |i: u16| format!("p{}", i + 1);
        let text = crate::trace::render(&log.events, &names);
        assert!(text.contains("table 0: matched priority=0"), "{text}");
        assert!(text.contains("learned on port p1"), "{text}");
        assert!(text.contains("flooding"), "{text}");
        assert!(text.contains("output to port p3"), "{text}");
    }
}
