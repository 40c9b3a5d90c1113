//! 802.1p QoS: eight egress queues per port, chosen by priority, drained by
//! a strict, weighted (DRR) or mixed (ETS) scheduler, under token-bucket
//! shapers for the port and for each queue; token-bucket policers for
//! ingress ports and for meters.
//!
//! Time is whatever the caller says it is: the wall clock on a live switch,
//! the pcap timestamps in replay. Nothing here reads a clock, so replaying
//! the same captures gives the same departures, to the nanosecond.
//!
//! How a frame finds its queue (the egress port's [`QosConfig`] decides):
//! 1. `set_queue:N` in a rule: queue N (7 when N is larger);
//! 2. otherwise its priority: the PCP it arrived with (the outer tag's,
//!    802.1Q or 802.1ad); for a frame that arrived untagged, the ingress
//!    port's DSCP map or default priority; a `mod_vlan_pcp` in a rule sets
//!    it (and the tag's PCP);
//! 3. the priority picks the queue through the port's `pcp_map` (by default
//!    IEEE 802.1Q's for eight traffic classes: PCP 1 "background" below PCP
//!    0 "best effort", then 2-7 in order). A higher queue number is a
//!    higher priority for the strict part of a scheduler.
//!
//! A frame has that one priority everywhere: a `remark_pcp` port writes it
//! into the tags it adds to frames that arrived untagged, so a tag never
//! says other than the queue (only `set_queue` picks a queue apart from
//! the priority).
//!
//! Buffer ownership: queued frames are the pipeline's buffers; a frame that
//! finds its queue full is handed back to the caller, which recycles it.

use serde::Serialize;

use crate::clock::Timestamp;
use crate::packet::{PacketBuf, MAX_FRAME, NO_QUEUE};

/// Queues per port.
pub const N_QUEUES: usize = 8;

/// IEEE 802.1Q-2018 table 8-5, eight traffic classes: PCP → queue.
pub const DEFAULT_PCP_MAP: [u8; 8] = [1, 0, 2, 3, 4, 5, 6, 7];

/// Frames a queue holds unless configured otherwise.
pub const DEFAULT_DEPTH: usize = 256;

/// The largest queue depth accepted.
pub const MAX_DEPTH: usize = 8_192;

/// The most frames one port's queues may hold in all (each holds a
/// buffer of about 9.4 kB).
pub const MAX_PORT_FRAMES: usize = 16_384;

/// DRR quantum per unit of weight, in bytes: the largest frame, so one turn
/// always lets a queue send at least one frame.
pub const QUANTUM: u64 = MAX_FRAME as u64;

/// A rate in bits per second.
pub type BitRate = u64;

/// Parses a rate or size in bits: a number with an optional k/M/G suffix
/// (powers of 1000, as network rates are counted), e.g. `100M`, `1.5G`,
/// `64k`, `250000`. An optional trailing `bit`/`bps` is accepted.
pub fn parse_bits(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t
        .strip_suffix("bps")
        .or_else(|| t.strip_suffix("bit"))
        .unwrap_or(t);
    let (num, mul) = match t.chars().last() {
        Some('k') | Some('K') => (&t[..t.len() - 1], 1e3),
        Some('m') | Some('M') => (&t[..t.len() - 1], 1e6),
        Some('g') | Some('G') => (&t[..t.len() - 1], 1e9),
        _ => (t, 1.0),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of bits (e.g. 100M, 1.5G, 64k)"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("`{s}` is not a positive number"));
    }
    let bits = (v * mul).round();
    if bits > 1e15 {
        return Err(format!("`{s}` is too large"));
    }
    Ok(bits as u64)
}

/// Formats bits the way [`parse_bits`] reads them (`100M`, `1.5G`).
pub fn format_bits(b: u64) -> String {
    for (m, suf) in [(1_000_000_000u64, "G"), (1_000_000, "M"), (1_000, "k")] {
        if b >= m {
            let f = format!("{:.3}", b as f64 / m as f64);
            return format!("{}{suf}", f.trim_end_matches('0').trim_end_matches('.'));
        }
    }
    b.to_string()
}

/// A token bucket: `rate` bits per second, holding at most `burst` bits.
/// Tokens are kept in bit-nanoseconds so any rate is exact in integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    rate: BitRate,
    /// Capacity, bit·ns.
    cap: u128,
    /// Tokens at `at`, bit·ns.
    tokens: u128,
    at: Timestamp,
}

const NS: u128 = 1_000_000_000;

impl TokenBucket {
    /// A full bucket. `rate` must be at least 1 bit/s; `burst` at least
    /// one largest frame is sensible (a frame larger than the burst waits
    /// for a full bucket and then goes).
    pub fn new(rate: BitRate, burst: u64) -> TokenBucket {
        let cap = burst.max(1) as u128 * NS;
        TokenBucket {
            rate: rate.max(1),
            cap,
            tokens: cap,
            at: Timestamp(0),
        }
    }

    /// The rate.
    pub fn rate(&self) -> BitRate {
        self.rate
    }

    /// Tokens at time `t` (not before the last update).
    fn tokens_at(&self, t: Timestamp) -> u128 {
        if t <= self.at {
            return self.tokens;
        }
        let dt = (t.0 - self.at.0) as u128;
        (self.tokens + dt * self.rate as u128).min(self.cap)
    }

    /// The first time at or after `t` when `bits` can be taken (a frame
    /// larger than the bucket needs a full bucket).
    pub fn ready_at(&self, t: Timestamp, bits: u64) -> Timestamp {
        let t = t.max(self.at);
        let need = (bits as u128 * NS).min(self.cap);
        let have = self.tokens_at(t);
        if have >= need {
            return t;
        }
        let wait = (need - have).div_ceil(self.rate as u128);
        Timestamp(t.0.saturating_add(wait.min(u64::MAX as u128) as u64))
    }

    /// Takes `bits` at time `t` (the caller checked [`TokenBucket::ready_at`]).
    pub fn take(&mut self, t: Timestamp, bits: u64) {
        let t = t.max(self.at);
        let have = self.tokens_at(t);
        self.tokens = have.saturating_sub(bits as u128 * NS);
        self.at = t;
    }

    /// A policer's decision: takes `bits` at `t` if they are there (a
    /// frame larger than the bucket never conforms).
    pub fn conform(&mut self, t: Timestamp, bits: u64) -> bool {
        let t = t.max(self.at);
        let have = self.tokens_at(t);
        let need = bits as u128 * NS;
        self.at = t;
        if have >= need {
            self.tokens = have - need;
            true
        } else {
            self.tokens = have;
            false
        }
    }
}

/// How a port's queues share the link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheduler {
    /// Highest non-empty queue first.
    Strict,
    /// Deficit round robin by weight, over all queues.
    Drr,
    /// The top `strict` queues strict, the rest DRR by weight (802.1Qaz ETS).
    Ets {
        /// How many of the highest queues are strict.
        strict: u8,
    },
}

/// One queue's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    /// Frames it holds; more are dropped (tail drop).
    pub depth: usize,
    /// Its own shaper: (rate, burst bits).
    pub shaper: Option<(BitRate, u64)>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            depth: DEFAULT_DEPTH,
            shaper: None,
        }
    }
}

/// A port's QoS settings, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QosConfig {
    /// Port shaper: (rate, burst bits).
    pub shaper: Option<(BitRate, u64)>,
    /// Scheduler.
    pub scheduler: Scheduler,
    /// DRR weights, per queue (1-100).
    pub weights: [u32; N_QUEUES],
    /// Priority → queue.
    pub pcp_map: [u8; 8],
    /// Ingress: the priority of frames that arrive untagged (unless the
    /// DSCP map gives one).
    pub default_pcp: u8,
    /// Ingress: DSCP → priority for frames that arrive untagged (IP only).
    pub dscp_map: Option<[u8; 64]>,
    /// Egress: when this port adds a tag to a frame that arrived untagged
    /// (and no `mod_vlan_pcp` set one), the tag's PCP is the frame's
    /// priority: the one its ingress port gave it (that port's `dscp_map`
    /// or `default_pcp`), which also picks its queue here. This port's own
    /// `dscp_map` plays no part in it (it is for frames arriving here).
    pub remark_pcp: bool,
    /// Ingress policer: (rate, burst bits); frames over it are dropped.
    pub police: Option<(BitRate, u64)>,
    /// Queues.
    pub queues: [QueueConfig; N_QUEUES],
    /// Replay only: the port's line rate; frames leave one after another
    /// at this rate (departure times in the output capture).
    pub line_rate: Option<BitRate>,
}

impl Default for QosConfig {
    fn default() -> Self {
        QosConfig {
            shaper: None,
            scheduler: Scheduler::Strict,
            weights: [1; N_QUEUES],
            pcp_map: DEFAULT_PCP_MAP,
            default_pcp: 0,
            dscp_map: None,
            remark_pcp: false,
            police: None,
            queues: [QueueConfig::default(); N_QUEUES],
            line_rate: None,
        }
    }
}

impl QosConfig {
    /// Buffers the queues may hold at once.
    pub fn buffers(&self) -> usize {
        self.queues.iter().map(|q| q.depth).sum()
    }

    /// The priority of a frame that arrived untagged with DSCP `dscp` (None
    /// for non-IP frames).
    #[inline]
    pub fn ingress_prio(&self, dscp: Option<u8>) -> u8 {
        match (&self.dscp_map, dscp) {
            (Some(m), Some(d)) => m[(d & 63) as usize],
            _ => self.default_pcp,
        }
    }
}

/// One queue's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    /// Frames queued.
    pub enqueued: u64,
    /// Frames sent (taken by the device).
    pub tx_packets: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// Frames dropped because the queue was full.
    pub dropped: u64,
    /// Frames waiting in the queue now (not counting those the scheduler
    /// released that wait for the device).
    pub depth: u64,
}

/// A FIFO of frames with a fixed capacity (a power of two at least the
/// queue's depth), allocated once: pushing and popping never allocate.
#[derive(Debug)]
struct Ring {
    slots: Vec<Option<PacketBuf>>,
    mask: usize,
    head: usize,
    len: usize,
}

impl Ring {
    fn new(depth: usize) -> Ring {
        let cap = depth.max(1).next_power_of_two();
        Ring {
            slots: (0..cap).map(|_| None).collect(),
            mask: cap - 1,
            head: 0,
            len: 0,
        }
    }
    #[inline(always)]
    fn len(&self) -> usize {
        self.len
    }
    #[inline(always)]
    fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Adds at the back; the caller keeps `len` within the depth, which is
    /// within the capacity.
    #[inline(always)]
    fn push_back(&mut self, p: PacketBuf) {
        let i = (self.head + self.len) & self.mask;
        self.slots[i] = Some(p);
        self.len += 1;
    }
    #[inline(always)]
    fn pop_front(&mut self) -> Option<PacketBuf> {
        if self.len == 0 {
            return None;
        }
        let p = self.slots[self.head].take();
        self.head = (self.head + 1) & self.mask;
        self.len -= 1;
        p
    }
    #[inline(always)]
    fn front(&self) -> Option<&PacketBuf> {
        if self.len == 0 {
            return None;
        }
        self.slots[self.head].as_ref()
    }
}

/// A port's egress queues and scheduler.
#[derive(Debug)]
pub struct EgressQos {
    cfg: QosConfig,
    queues: [Ring; N_QUEUES],
    /// Queues served strictly: those at or above this index.
    strict_from: usize,
    deficit: [u64; N_QUEUES],
    drr_at: usize,
    drr_fresh: bool,
    port_tb: Option<TokenBucket>,
    queue_tb: [Option<TokenBucket>; N_QUEUES],
    /// When the link is free again (line rate, replay); departures are
    /// never earlier than the previous one.
    link_free: Timestamp,
    /// Counters per queue.
    pub stats: [QueueStats; N_QUEUES],
    queued: usize,
    /// Bit q set: queue q holds frames.
    nonempty: u8,
    /// Decisions are made at the live clock, never in the past.
    live: bool,
    /// When the last `dequeue` that found nothing to send could next send.
    blocked_until: Option<Timestamp>,
    /// No shaper and no line rate: frames leave as soon as they are picked.
    untimed: bool,
    /// The smallest queue depth limit.
    min_depth: usize,
}

impl EgressQos {
    /// Queues for `cfg`, empty, with full token buckets.
    pub fn new(cfg: QosConfig) -> EgressQos {
        let strict_from = match cfg.scheduler {
            Scheduler::Strict => 0,
            Scheduler::Drr => N_QUEUES,
            Scheduler::Ets { strict } => N_QUEUES - (strict as usize).min(N_QUEUES),
        };
        let queues = std::array::from_fn(|i| Ring::new(cfg.queues[i].depth));
        let queue_tb =
            std::array::from_fn(|i| cfg.queues[i].shaper.map(|(r, b)| TokenBucket::new(r, b)));
        EgressQos {
            port_tb: cfg.shaper.map(|(r, b)| TokenBucket::new(r, b)),
            queue_tb,
            queues,
            strict_from,
            deficit: [0; N_QUEUES],
            drr_at: 0,
            drr_fresh: true,
            link_free: Timestamp(0),
            stats: [QueueStats::default(); N_QUEUES],
            queued: 0,
            nonempty: 0,
            live: false,
            blocked_until: None,
            untimed: cfg.shaper.is_none()
                && cfg.line_rate.is_none()
                && cfg.queues.iter().all(|q| q.shaper.is_none()),
            min_depth: cfg.queues.iter().map(|q| q.depth).min().unwrap_or(0),
            cfg,
        }
    }

    /// Makes decisions at the live clock (see [`EgressQos::dequeue`]).
    pub fn set_live(&mut self) {
        self.live = true;
    }

    /// True when nothing shapes or paces the port: a frame may leave as
    /// soon as the scheduler picks it.
    #[inline]
    pub fn untimed(&self) -> bool {
        self.untimed
    }

    /// True when frames leave in strict priority order the moment they
    /// are picked: a strict scheduler and nothing timing the port.
    #[inline]
    pub fn strict_untimed(&self) -> bool {
        self.untimed && self.strict_from == 0
    }

    /// Stamps frames leaving in this order, outside the queues (see
    /// [`EgressQos::count_cut_through`]): departures never go back in time.
    #[inline(never)]
    pub fn stamp_departures(&mut self, frames: &mut [PacketBuf]) {
        let mut t = self.link_free;
        for p in frames {
            t = t.max(p.meta.ts);
            p.meta.ts = t;
        }
        self.link_free = t;
    }

    /// The smallest of the queues' depth limits.
    #[inline]
    pub fn min_depth(&self) -> usize {
        self.min_depth
    }

    /// Queue `q`'s depth limit.
    #[inline]
    pub fn depth(&self, q: usize) -> usize {
        self.cfg.queues[q & (N_QUEUES - 1)].depth
    }

    /// Counts frames that went straight through queue `q` (it was empty,
    /// nothing else waited, nothing times the port): as if queued and sent.
    #[inline]
    pub fn count_cut_through(&mut self, q: usize, packets: u64, bytes: u64) {
        self.stats[q & (N_QUEUES - 1)].enqueued += packets;
        self.count_sent(q, packets, bytes);
    }

    /// Counts a frame that joined queue `q` and was released at once (it
    /// waits in the device's backlog, or was lost with it).
    #[inline]
    pub fn count_enqueued(&mut self, q: usize) {
        self.stats[q & (N_QUEUES - 1)].enqueued += 1;
    }

    /// True when queue `q` is served by strict priority.
    #[inline]
    pub fn is_strict(&self, q: usize) -> bool {
        q >= self.strict_from
    }

    /// Queue `q`, alone, was served until empty outside the queues (see
    /// [`EgressQos::count_cut_through`]): the round robin moves on from it
    /// as it would have.
    #[inline]
    pub fn drained(&mut self, q: usize) {
        if q < self.strict_from {
            self.deficit[q] = 0;
            self.drr_at = (q + 1) % self.strict_from;
            self.drr_fresh = true;
        }
    }

    /// A frame of `len` bytes left queue `q`: a weighted queue spends its
    /// deficit, and once empty the round robin moves on from it.
    #[inline]
    fn charge(&mut self, q: usize, len: usize) {
        if q < self.strict_from {
            self.deficit[q] = self.deficit[q].saturating_sub(len as u64);
            if self.queues[q].is_empty() {
                self.drained(q);
            }
        }
    }

    /// Counts frames of queue `q` the device took. (The scheduler releases
    /// frames to the device's backlog; they count as sent only once the
    /// device accepts them.)
    #[inline]
    pub fn count_sent(&mut self, q: usize, packets: u64, bytes: u64) {
        let s = &mut self.stats[q & (N_QUEUES - 1)];
        s.tx_packets += packets;
        s.tx_bytes += bytes;
    }

    /// The settings.
    pub fn config(&self) -> &QosConfig {
        &self.cfg
    }

    /// Frames waiting.
    pub fn len(&self) -> usize {
        self.queued
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// The queue for `pkt` (see the module docs).
    #[inline]
    pub fn classify(&self, pkt: &PacketBuf) -> usize {
        let q = pkt.meta.queue;
        if q != NO_QUEUE {
            return (q as usize).min(N_QUEUES - 1);
        }
        self.cfg.pcp_map[(pkt.meta.prio & 7) as usize] as usize & (N_QUEUES - 1)
    }

    /// Queues `pkt`; a full queue hands it back.
    #[inline(always)]
    pub fn enqueue(&mut self, pkt: PacketBuf) -> Result<usize, PacketBuf> {
        let q = self.classify(&pkt);
        if self.queues[q].len() >= self.cfg.queues[q].depth {
            self.stats[q].dropped += 1;
            return Err(pkt);
        }
        self.queues[q].push_back(pkt);
        self.stats[q].enqueued += 1;
        self.queued += 1;
        self.nonempty |= 1 << q;
        // A new arrival can change the next decision.
        self.blocked_until = None;
        Ok(q)
    }

    /// Moves up to `max` frames that leave by `now` into `out`, in
    /// departure order; returns how many.
    pub fn dequeue_burst(&mut self, now: Timestamp, out: &mut Vec<PacketBuf>, max: usize) -> usize {
        let start = out.len();
        if self.untimed && self.strict_from == 0 {
            // Strict and untimed: empty the queues highest first.
            while out.len() - start < max && self.nonempty != 0 {
                let q = 7 - self.nonempty.leading_zeros() as usize;
                let room = max - (out.len() - start);
                let n = room.min(self.queues[q].len());
                for _ in 0..n {
                    let Some(mut pkt) = self.queues[q].pop_front() else {
                        break;
                    };
                    pkt.meta.ts = pkt.meta.ts.max(self.link_free);
                    self.link_free = pkt.meta.ts;
                    out.push(pkt);
                }
                self.queued -= n;
                if self.queues[q].is_empty() {
                    self.nonempty &= !(1 << q);
                }
            }
            return out.len() - start;
        }
        while out.len() - start < max {
            match self.dequeue(now) {
                Some(p) => out.push(p),
                None => break,
            }
        }
        out.len() - start
    }

    /// Untimed ports: the next frame by the scheduler alone.
    #[inline]
    fn dequeue_untimed(&mut self) -> Option<PacketBuf> {
        // Strict queues are those from `strict_from` up.
        let strict_bits = if self.strict_from >= N_QUEUES {
            0
        } else {
            0xffu8 << self.strict_from
        };
        let strict = self.nonempty & strict_bits;
        let q = if strict != 0 {
            7 - strict.leading_zeros() as usize
        } else {
            self.drr_pick(Timestamp(u64::MAX))?
        };
        let mut pkt = self.queues[q].pop_front()?;
        self.queued -= 1;
        if self.queues[q].is_empty() {
            self.nonempty &= !(1 << q);
        }
        self.charge(q, pkt.len());
        // Departures never go back in time.
        pkt.meta.ts = pkt.meta.ts.max(self.link_free);
        self.link_free = pkt.meta.ts;
        Some(pkt)
    }

    #[inline]
    fn head_bits(&self, q: usize) -> u64 {
        self.queues[q].front().map_or(0, |p| p.len() as u64 * 8)
    }

    /// When queue `q`'s head may leave, considering its arrival and the
    /// queue's shaper, at decision time `t`; None when the queue is empty.
    #[inline]
    fn queue_ready(&self, q: usize, t: Timestamp) -> Option<Timestamp> {
        let head = self.queues[q].front()?;
        let t = t.max(head.meta.ts);
        Some(match &self.queue_tb[q] {
            Some(tb) => tb.ready_at(t, head.len() as u64 * 8),
            None => t,
        })
    }

    fn drr_pick(&mut self, t: Timestamp) -> Option<usize> {
        if self.strict_from == 0 {
            return None;
        }
        let n = self.strict_from;
        // Each queue is visited at most twice: enough, as one quantum
        // always covers a frame.
        for _ in 0..=2 * n {
            let q = self.drr_at;
            match self.queue_ready(q, t) {
                Some(r) if r <= t => {
                    if self.drr_fresh {
                        self.deficit[q] += QUANTUM * self.cfg.weights[q] as u64;
                        self.drr_fresh = false;
                    }
                    if self.deficit[q] >= self.head_bits(q) / 8 {
                        return Some(q);
                    }
                }
                Some(_) => {}
                None => self.deficit[q] = 0,
            }
            self.drr_at = (q + 1) % n;
            self.drr_fresh = true;
        }
        None
    }

    /// The queue that sends next at time `t`, if any may.
    fn pick(&mut self, t: Timestamp) -> Option<usize> {
        for q in (self.strict_from..N_QUEUES).rev() {
            if matches!(self.queue_ready(q, t), Some(r) if r <= t) {
                return Some(q);
            }
        }
        self.drr_pick(t)
    }

    /// The earliest time after `t` when some queue's head may leave (its
    /// arrival or its queue shaper).
    fn next_queue_ready(&self, t: Timestamp) -> Option<Timestamp> {
        (0..N_QUEUES).filter_map(|q| self.queue_ready(q, t)).min()
    }

    /// Takes the next frame that leaves by `now`, stamped with its
    /// departure time, or None when nothing may leave yet.
    ///
    /// Decisions are made at the moment the link is free (and something
    /// has arrived and its shapers allow it): strict queues highest first,
    /// then DRR among the others; the port shaper then holds the chosen
    /// frame until it has the tokens, and the choice is made again at that
    /// moment (a higher-priority frame may have arrived by then).
    pub fn dequeue(&mut self, now: Timestamp) -> Option<PacketBuf> {
        if self.queued == 0 {
            return None;
        }
        if self.untimed {
            return self.dequeue_untimed();
        }
        // Live, a decision is never made in the past: after the polling
        // thread was held up, the buckets (capped at their burst) decide
        // what may go now, rather than a replay of the missed schedule.
        let mut t = if self.live {
            self.link_free.max(now)
        } else {
            self.link_free
        };
        for _ in 0..8 * N_QUEUES {
            t = t.max(self.next_queue_ready(t)?);
            if t > now {
                self.blocked_until = Some(t);
                return None;
            }
            // Some head is ready at t, so a scheduler finds one (a DRR
            // quantum always covers a frame).
            let q = self.pick(t)?;
            let bits = self.head_bits(q);
            if let Some(tb) = &self.port_tb {
                let r = tb.ready_at(t, bits);
                if r > t {
                    t = r;
                    continue;
                }
            }
            let mut pkt = self.queues[q].pop_front()?;
            self.queued -= 1;
            if self.queues[q].is_empty() {
                self.nonempty &= !(1 << q);
            }
            self.charge(q, pkt.len());
            if let Some(tb) = &mut self.port_tb {
                tb.take(t, bits);
            }
            if let Some(tb) = &mut self.queue_tb[q] {
                tb.take(t, bits);
            }
            // On the wire: preamble and SFD, frame, FCS, interframe gap.
            self.link_free = match self.cfg.line_rate {
                Some(r) => {
                    let wire = (bits + 8 * (8 + 4 + 12)) as u128 * NS;
                    Timestamp(t.0.saturating_add(wire.div_ceil(r as u128) as u64))
                }
                None => t,
            };
            pkt.meta.ts = t;
            self.blocked_until = None;
            return Some(pkt);
        }
        None
    }

    /// About when the next frame may leave (None when nothing waits): for
    /// sleeping until then.
    pub fn next_departure(&self) -> Option<Timestamp> {
        if self.queued == 0 {
            return None;
        }
        // When the last dequeue found nothing to send yet, it knew when.
        if let Some(b) = self.blocked_until {
            return Some(b);
        }
        let t = self.link_free.max(self.next_queue_ready(self.link_free)?);
        let smallest = (0..N_QUEUES)
            .filter(|q| !self.queues[*q].is_empty())
            .map(|q| self.head_bits(q))
            .min()
            .unwrap_or(0);
        Some(match &self.port_tb {
            Some(tb) => tb.ready_at(t, smallest),
            None => t,
        })
    }

    /// Counters, with current depths.
    pub fn queue_stats(&self) -> [QueueStats; N_QUEUES] {
        let mut s = self.stats;
        for (q, st) in s.iter_mut().enumerate() {
            st.depth = self.queues[q].len() as u64;
        }
        s
    }

    /// Takes every queued frame out (to requeue or recycle them).
    pub fn drain_all(&mut self) -> Vec<PacketBuf> {
        self.queued = 0;
        self.nonempty = 0;
        self.blocked_until = None;
        let mut v = Vec::new();
        for q in &mut self.queues {
            while let Some(p) = q.pop_front() {
                v.push(p);
            }
        }
        v
    }
}

/// One meter's settings and counters, as reports show them
/// ([`crate::pipeline::Pipeline::meters`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct MeterReport {
    /// Id.
    pub id: u32,
    /// Rate, bits/s.
    pub rate: u64,
    /// Burst, bits.
    pub burst: u64,
    /// Frames that passed.
    pub passed: u64,
    /// Frames dropped.
    pub dropped: u64,
}

/// A meter: a policer rules can send frames through (`meter:N`).
#[derive(Clone, Debug)]
pub struct Meter {
    /// Its bucket.
    pub bucket: TokenBucket,
    /// Burst, bits (as configured).
    pub burst: u64,
    /// Frames that passed.
    pub passed: u64,
    /// Frames dropped.
    pub dropped: u64,
}

impl Meter {
    /// A meter at `rate` bits/s with `burst` bits.
    pub fn new(rate: BitRate, burst: u64) -> Meter {
        Meter {
            bucket: TokenBucket::new(rate, burst),
            burst,
            passed: 0,
            dropped: 0,
        }
    }
}

/// The default burst for a rate: 1 ms of it, at least two largest frames.
pub fn default_burst(rate: BitRate) -> u64 {
    (rate / 1000).max(2 * MAX_FRAME as u64 * 8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::PacketMeta;

    /// The outer VLAN tag's PCP, if the frame carries one.
    #[inline]
    fn outer_pcp(d: &[u8]) -> Option<u8> {
        if d.len() < 16 {
            return None;
        }
        let tpid = u16::from_be_bytes([d[12], d[13]]);
        if tpid == crate::parse::consts::ETH_TYPE_VLAN || tpid == 0x88a8 {
            Some(d[14] >> 5)
        } else {
            None
        }
    }

    fn frame(len: usize, pcp: Option<u8>, ts: u64) -> PacketBuf {
        let mut f = vec![0u8; len];
        f[12] = 0x08;
        if let Some(p) = pcp {
            f[12] = 0x81;
            f[13] = 0x00;
            f[14] = p << 5;
            f[16] = 0x08;
        }
        let mut b = PacketBuf::new();
        b.fill(&f);
        b.meta = PacketMeta::new(0, Timestamp(ts));
        b.meta.prio = pcp.unwrap_or(0);
        b
    }

    #[test]
    fn bits_parse_and_print() {
        assert_eq!(parse_bits("100M"), Ok(100_000_000));
        assert_eq!(parse_bits("1.5G"), Ok(1_500_000_000));
        assert_eq!(parse_bits("64k"), Ok(64_000));
        assert_eq!(parse_bits("250000"), Ok(250_000));
        assert_eq!(parse_bits("10Mbit"), Ok(10_000_000));
        assert!(parse_bits("fast").is_err());
        assert!(parse_bits("-1M").is_err());
        assert_eq!(format_bits(100_000_000), "100M");
        assert_eq!(format_bits(1_500_000_000), "1.5G");
    }

    #[test]
    fn a_token_bucket_is_exact() {
        let mut tb = TokenBucket::new(1_000_000, 12_000); // 1 Mbit/s, 12 kbit
        let t0 = Timestamp(1_000_000_000);
        assert!(tb.conform(t0, 12_000));
        assert!(!tb.conform(t0, 8));
        // 12 kbit come back in 12 ms.
        assert_eq!(tb.ready_at(t0, 12_000), Timestamp(t0.0 + 12_000_000));
        assert!(tb.conform(Timestamp(t0.0 + 12_000_000), 12_000));
    }

    #[test]
    fn strict_priority_serves_the_highest_queue_first() {
        let mut q = EgressQos::new(QosConfig {
            line_rate: Some(1_000_000),
            ..Default::default()
        });
        for (pcp, ts) in [(0, 0), (0, 0), (6, 1), (1, 2), (7, 3)] {
            q.enqueue(frame(100, Some(pcp), ts)).expect("room");
        }
        let mut order = Vec::new();
        while let Some(p) = q.dequeue(Timestamp(u64::MAX)) {
            order.push(outer_pcp(p.data()).unwrap_or(9));
        }
        // The first PCP 0 frame leaves at once (alone); then the link is
        // busy long enough for all to be there: 7, 6, 0, 1 (1 is below 0).
        assert_eq!(order, vec![0, 7, 6, 0, 1]);
    }

    #[test]
    fn drr_shares_follow_the_weights() {
        let mut w = [1; N_QUEUES];
        w[0] = 1;
        w[1] = 3;
        let mut q = EgressQos::new(QosConfig {
            scheduler: Scheduler::Drr,
            weights: w,
            pcp_map: [0, 1, 2, 3, 4, 5, 6, 7],
            queues: [QueueConfig {
                depth: 10_000,
                shaper: None,
            }; N_QUEUES],
            line_rate: Some(1_000_000_000),
            ..Default::default()
        });
        for i in 0..4000 {
            q.enqueue(frame(1000, Some(0), i)).expect("room");
            q.enqueue(frame(500, Some(1), i)).expect("room");
        }
        let mut bytes = [0u64; 2];
        for _ in 0..3000 {
            let p = q.dequeue(Timestamp(u64::MAX)).expect("frame");
            bytes[outer_pcp(p.data()).unwrap_or(0) as usize] += p.len() as u64;
        }
        let share = bytes[1] as f64 / (bytes[0] + bytes[1]) as f64;
        assert!(
            (share - 0.75).abs() < 0.02,
            "queue 1 got {share:.3} of the bytes"
        );
    }

    #[test]
    fn a_shaper_holds_the_rate() {
        let mut q = EgressQos::new(QosConfig {
            shaper: Some((10_000_000, default_burst(10_000_000))),
            queues: [QueueConfig {
                depth: 10_000,
                shaper: None,
            }; N_QUEUES],
            ..Default::default()
        });
        for _ in 0..5000 {
            q.enqueue(frame(1250, None, 0)).expect("room");
        }
        // Over one second at 10 Mbit/s: 1,000 frames of 10 kbit, plus the burst.
        let mut n = 0;
        while q.dequeue(Timestamp(1_000_000_000)).is_some() {
            n += 1;
        }
        let burst_frames = default_burst(10_000_000) / 10_000;
        assert!(
            (n as i64 - (1000 + burst_frames) as i64).abs() <= 1,
            "{n} frames in a second"
        );
    }

    #[test]
    fn the_next_departure_is_the_frame_the_scheduler_picks() {
        let mut q = EgressQos::new(QosConfig {
            shaper: Some((1_000_000, 12_000)),
            ..Default::default()
        });
        // Spend the burst, then a big high-priority frame and a small
        // low-priority one wait: the big one goes first, when its tokens
        // are there, and that is when the next departure is.
        q.enqueue(frame(1500, Some(7), 0)).expect("room");
        assert!(q.dequeue(Timestamp(0)).is_some());
        q.enqueue(frame(1500, Some(7), 0)).expect("room");
        q.enqueue(frame(64, Some(1), 0)).expect("room");
        assert!(q.dequeue(Timestamp(1)).is_none());
        let next = q.next_departure().expect("waiting");
        assert_eq!(
            next,
            Timestamp(12_000_000),
            "1500 bytes of tokens at 1 Mbit/s"
        );
        let p = q.dequeue(next).expect("the big frame");
        assert_eq!(p.len(), 1500);
    }
}
