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
//!
//! One `impl Pipeline` split across files, a stage per file; a frame goes
//! through them in this order:
//!
//! | file | stage |
//! |------|-------|
//! | `mod.rs` | types, [`Pipeline::new`], the batch driver [`Pipeline::process`] |
//! | `receive.rs` | rx counters, runt check, policing, parse, priority |
//! | `lookup.rs` | exact-match cache and classifier, running a rule |
//! | `xlate.rs` | actions on the logical flow (`xlate/state.rs`: its state) |
//! | `normal.rs` | the NORMAL action |
//! | `egress.rs` | the frame's fate, egress limits, plain send |
//! | `qos_egress.rs` | sending through QoS queues, the cut-through |
//!
//! Beside them: `ports.rs` (port configuration), `rules.rs` (rules, meters,
//! timers) and `dump.rs` (`dump-flows` text). A new action goes in
//! `xlate.rs` (`do_action`), a new drop reason where the stage drops.

mod dump;
mod egress;
mod lookup;
mod normal;
mod ports;
mod qos_egress;
mod receive;
mod rules;
#[cfg(test)]
mod testutil;
mod xlate;

use xlate::Xlate;

pub use dump::{dump_flow, dump_rule};
pub use normal::is_reserved_mac;

use crate::clock::Timestamp;
use crate::emc::{Emc, Hint};
use crate::error::Error;
use crate::key::FlowKey;
use crate::mac::MacTable;
use crate::packet::{Batch, BufPool, PacketBuf, BURST, MAX_FRAME};
use crate::stats::{DropReason, PortStats};
use crate::table::{FlowTables, Installed, Removed};
use crate::trace::{TraceEvent, Tracer};
use crate::vlan::{PortVlan, Tag};

/// Most nested resubmits (OVS: 64).
pub const MAX_DEPTH: u8 = 64;
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
    /// Tags this port adds to frames that arrived untagged carry the
    /// frame's priority as PCP (`QosConfig::remark_pcp`).
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

/// The rules removed by timeouts since the log was last taken
/// ([`Pipeline::drain_removed`]).
#[derive(Clone, Debug, Default)]
pub struct RemovedLog {
    /// The latest removals, oldest first.
    pub rules: Vec<RemovedRule>,
    /// Older removals were lost from the log: a caller keeping a copy of
    /// the rules must take them all afresh.
    pub lost: bool,
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
                let mut x = Xlate::new(&batch.frames()[i], sc.keys[i], sc.tag0[i]);
                self.emitted.clear();
                self.run_rule(0, sc.found[i], &mut x, &mut batch.frames_mut()[i], t);
                self.finish(batch, i, &mut x, t);
            }
        }
        self.scratch = Some(sc);
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
        let mut x = Xlate::new(&batch.frames()[i], key, tag0);
        self.emitted.clear();
        self.xlate_table(0, &mut x, &mut batch.frames_mut()[i], t);
        self.finish(batch, i, &mut x, t);
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
}

/// Drops a frame that came in on a port with counters `stats`: counts it
/// (unless dry-running) and tells the tracer why.
#[inline(always)]
fn drop_frame<T: Tracer>(stats: &mut PortStats, r: DropReason, t: &mut T) {
    if !T::DRY {
        stats.drops.add(r, 1);
    }
    if T::ENABLED {
        t.record(TraceEvent::Dropped { reason: r });
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

#[cfg(test)]
mod tests {
    use super::testutil::*;

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
