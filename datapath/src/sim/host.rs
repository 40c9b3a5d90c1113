//! A simulated host: a smoltcp interface whose device is a switch port,
//! the sockets its actions use, and what it measured.
//!
//! All times here are nanoseconds from the scenario's start; smoltcp gets
//! them in microseconds (its resolution). Nothing reads the wall clock and
//! every random choice comes from the host's seed, so a run repeats
//! exactly.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::socket::{icmp, tcp, udp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    HardwareAddress, Icmpv4Packet, Icmpv4Repr, Icmpv6Packet, Icmpv6Repr, IpAddress, IpEndpoint,
};

use super::spec::{ActionSpec, HostSpec, Target, NS};
use super::wire;

/// Frames a host's NIC holds before its stack has to wait (txqueuelen).
const NIC_QUEUE: usize = 1000;
/// Bytes on the wire beyond a frame's length: preamble, FCS, gap.
const WIRE_OVERHEAD: u64 = 24;
/// Connections a `tcp listen` accepts at once.
const BACKLOG: usize = 4;
/// First local port for connections and UDP senders.
const EPHEMERAL: u16 = 49152;
/// Most bins of a goodput timeline.
const MAX_BINS: usize = 100_000;

fn instant(ns: u64) -> Instant {
    Instant::from_micros((ns / 1000) as i64)
}

fn us(ns: u64) -> u64 {
    ns / 1000
}

/// Byte `i` of every stream a host sends (so receivers can check them).
fn pattern(i: u64) -> u8 {
    (i % 251) as u8
}

/// Longest piece of the pattern [`pattern_at`] hands out at once.
const PIECE: usize = 64 * 1024;

/// The pattern, repeated: any piece of up to [`PIECE`] bytes starting
/// anywhere is one slice of it (filling and checking by `memcpy`/`memcmp`).
static PATTERN: std::sync::LazyLock<Vec<u8>> =
    std::sync::LazyLock::new(|| (0..(PIECE + 251) as u64).map(pattern).collect());

/// The pattern's bytes from stream offset `at`, at most [`PIECE`] of them.
fn pattern_at(at: u64, len: usize) -> &'static [u8] {
    let o = (at % 251) as usize;
    &PATTERN[o..o + len.min(PIECE)]
}

/// Fills `buf` with the pattern from stream offset `at`.
fn fill_pattern(buf: &mut [u8], at: u64) {
    let mut done = 0;
    while done < buf.len() {
        let p = pattern_at(at + done as u64, buf.len() - done);
        buf[done..done + p.len()].copy_from_slice(p);
        done += p.len();
    }
}

/// How many bytes of `buf` differ from the pattern from offset `at`.
fn count_corrupt(buf: &[u8], at: u64) -> u64 {
    let mut bad = 0;
    let mut done = 0;
    while done < buf.len() {
        let p = pattern_at(at + done as u64, buf.len() - done);
        let got = &buf[done..done + p.len()];
        if got != p {
            bad += got.iter().zip(p).filter(|(a, b)| a != b).count() as u64;
        }
        done += p.len();
    }
    bad
}

/// Round-trip samples, at most [`Samples::MAX`] kept: past that, every
/// other one is dropped and only every second, fourth, ... new one kept,
/// so memory stays bounded and the kept ones stay an even spread
/// (deterministic, as everything here).
#[derive(Debug, Default, Clone)]
struct Samples {
    kept: Vec<u64>,
    stride: u64,
    seen: u64,
}

impl Samples {
    const MAX: usize = 1 << 20;

    fn push(&mut self, v: u64) {
        let stride = self.stride.max(1);
        if self.seen.is_multiple_of(stride) {
            if self.kept.len() >= Self::MAX {
                let mut i = 0;
                self.kept.retain(|_| {
                    i += 1;
                    i % 2 == 1
                });
                self.stride = stride * 2;
            }
            if self.seen.is_multiple_of(self.stride.max(1)) {
                self.kept.push(v);
            }
        }
        self.seen += 1;
    }

    fn rtt(&self) -> Rtt {
        let mut r = Rtt::of(self.kept.clone());
        r.samples = self.seen;
        r
    }
}

/// Round-trip times: min, median and 99th percentile, nanoseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Rtt {
    /// Samples.
    pub samples: u64,
    /// Smallest.
    pub min_ns: u64,
    /// Median.
    pub median_ns: u64,
    /// 99th percentile (nearest rank).
    pub p99_ns: u64,
}

impl Rtt {
    fn of(mut v: Vec<u64>) -> Rtt {
        if v.is_empty() {
            return Rtt::default();
        }
        v.sort_unstable();
        let rank = |p: usize| v[((v.len() * p).div_ceil(100)).clamp(1, v.len()) - 1];
        Rtt {
            samples: v.len() as u64,
            min_ns: v[0],
            median_ns: rank(50),
            p99_ns: rank(99),
        }
    }
}

/// One TCP connection a listener accepted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Connection {
    /// The peer, `ADDR:PORT`.
    pub peer: String,
    /// Bytes received.
    pub bytes: u64,
    /// Bytes that differ from what the sender sent.
    pub corrupt: u64,
    /// First byte, microseconds from the start.
    pub first_us: u64,
    /// Last byte.
    pub last_us: u64,
    /// Bytes × 8 / (last − first), bits per second.
    pub goodput_bps: u64,
    /// `closed` (the peer finished), `reset`, or `open` at the end.
    pub outcome: String,
    /// Bytes received per `[sim] interval`, from the start.
    pub bytes_per_interval: Vec<u64>,
}

/// What an action did, in summary.json.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "do", rename_all = "kebab-case")]
pub enum ActionResult {
    /// `ping`.
    Ping {
        /// Target address.
        to: String,
        /// Requests sent.
        sent: u32,
        /// Replies received.
        received: u32,
        /// Requests the stack refused (its buffer full): sent as lost.
        #[serde(default, skip_serializing_if = "is_zero")]
        unsent: u32,
        /// Round-trip times.
        rtt: Rtt,
    },
    /// `tcp` with `connect`.
    TcpConnect {
        /// `ADDR:PORT`.
        to: String,
        /// `completed` (all sent and acknowledged, closed), `timed out`,
        /// `reset`, `refused` or `running` at the end.
        outcome: String,
        /// Bytes the peer acknowledged.
        bytes_acked: u64,
        /// When it connected, microseconds from the start.
        start_us: u64,
        /// When it ended (or the end of the run).
        end_us: u64,
        /// bytes_acked × 8 / (end − start).
        goodput_bps: u64,
        /// Segments sent again.
        retransmissions: u64,
        /// Round-trip times of segments sent once (Karn).
        rtt: Rtt,
    },
    /// `tcp` with `listen`.
    TcpListen {
        /// The port.
        port: u16,
        /// Connections, in the order they arrived.
        connections: Vec<Connection>,
    },
    /// `udp` with `send`.
    UdpSend {
        /// `ADDR:PORT`.
        to: String,
        /// Datagrams sent.
        sent: u64,
        /// Payload bytes sent.
        bytes: u64,
    },
    /// `udp` with `listen`.
    UdpListen {
        /// The port.
        port: u16,
        /// Datagrams received.
        received: u64,
        /// Payload bytes received.
        bytes: u64,
        /// Datagrams missing: per sender, highest sequence + 1 − received.
        lost: u64,
        /// Payload bytes per `[sim] interval`, from the start.
        bytes_per_interval: Vec<u64>,
        /// One-way delay from the sender's socket to this one (datagrams
        /// of at least 16 bytes carry their send time).
        latency: Rtt,
    },
    /// `arp`.
    Arp {
        /// Announcements sent.
        sent: u32,
    },
    /// `move`.
    Move {
        /// The new port.
        port: String,
        /// Done.
        done: bool,
    },
}

/// A host in summary.json.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HostSummary {
    /// Name.
    pub name: String,
    /// The port it is plugged into at the end.
    pub port: String,
    /// Frames it sent.
    pub tx_frames: u64,
    /// Bytes it sent.
    pub tx_bytes: u64,
    /// Frames it took.
    pub rx_frames: u64,
    /// Bytes it took.
    pub rx_bytes: u64,
    /// Frames it ignored: another VLAN's, or untagged on a host with a VLAN.
    pub rx_ignored: u64,
    /// Frames its stack sent while its NIC queue was full: dropped.
    #[serde(default, skip_serializing_if = "is_zero64")]
    pub tx_dropped: u64,
    /// What each action did, in file order.
    pub actions: Vec<ActionResult>,
}

/// TCP segments seen on one flow, for retransmissions and round trips.
#[derive(Debug, Default)]
struct Track {
    /// End of the highest sequence sent.
    max_end: Option<u32>,
    /// Segments sent once and not yet acknowledged: (end, time).
    pending: VecDeque<(u32, u64)>,
    retransmissions: u64,
    rtts: Samples,
    rst: bool,
}

impl Track {
    fn sent(&mut self, s: &wire::Segment, now: u64) {
        if s.len == 0 {
            return;
        }
        let end = s.seq.wrapping_add(s.len);
        match self.max_end {
            Some(m) if wire::seq_lt(s.seq, m) => {
                self.retransmissions += 1;
                // Karn: no sample from anything sent around a retransmission.
                self.pending.clear();
                if wire::seq_lt(m, end) {
                    self.max_end = Some(end);
                }
            }
            _ => {
                self.max_end = Some(end);
                self.pending.push_back((end, now));
            }
        }
    }

    fn received(&mut self, s: &wire::Segment, now: u64) {
        if s.rst {
            self.rst = true;
        }
        if !s.ack {
            return;
        }
        while let Some(&(end, t)) = self.pending.front() {
            if wire::seq_lt(s.ack_no, end) {
                break;
            }
            self.pending.pop_front();
            self.rtts.push(now.saturating_sub(t));
        }
    }
}

#[derive(Debug)]
struct Ping {
    to: Target,
    count: u32,
    interval: u64,
    size: usize,
    timeout: u64,
    ident: u16,
    handle: Option<SocketHandle>,
    unsent: u32,
    sent_at: Vec<u64>,
    replied: Vec<bool>,
    rtts: Samples,
}

#[derive(Debug)]
struct TcpConnect {
    to: Target,
    bytes: Option<u64>,
    seconds: Option<u64>,
    timeout: u64,
    buffer: usize,
    local_port: u16,
    handle: Option<SocketHandle>,
    written: u64,
    acked: u64,
    established: bool,
    closing: bool,
    start: u64,
    end: Option<u64>,
    outcome: Option<&'static str>,
}

#[derive(Debug)]
struct Conn {
    rec: Connection,
    fin: bool,
}

#[derive(Debug)]
struct TcpListen {
    port: u16,
    buffer: usize,
    handles: Vec<SocketHandle>,
    /// Per socket: the connection it carries (index into `conns`).
    current: Vec<Option<usize>>,
    conns: Vec<Conn>,
}

#[derive(Debug)]
struct UdpSend {
    to: Target,
    rate: u64,
    size: usize,
    count: Option<u64>,
    seconds: Option<u64>,
    local_port: u16,
    handle: Option<SocketHandle>,
    sent: u64,
    finished: bool,
}

#[derive(Debug)]
struct UdpListen {
    port: u16,
    handle: Option<SocketHandle>,
    received: u64,
    bytes: u64,
    /// Per sender: (highest sequence + 1, datagrams).
    senders: BTreeMap<String, (u64, u64)>,
    bins: Vec<u64>,
    latency: Samples,
}

#[derive(Debug)]
enum Act {
    Ping(Ping),
    TcpConnect(Box<TcpConnect>),
    TcpListen(TcpListen),
    UdpSend(UdpSend),
    UdpListen(UdpListen),
    Arp { sent: u32 },
    Move { port: usize, done: bool },
}

/// smoltcp's device: frames the switch delivered (due by `now`) and the
/// frames the stack sends.
struct Dev<'a> {
    rx: &'a mut VecDeque<(u64, Vec<u8>)>,
    now: u64,
    tx: &'a mut Vec<Vec<u8>>,
    room: usize,
    /// Frames the stack sent while the NIC queue was full (answers to
    /// what it received then): dropped, as a full NIC drops them.
    dropped: &'a mut u64,
}

struct RxTok(Vec<u8>);

struct TxTok<'a> {
    tx: &'a mut Vec<Vec<u8>>,
    room: &'a mut usize,
    dropped: &'a mut u64,
}

impl phy::RxToken for RxTok {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxTok<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut v = vec![0u8; len];
        let r = f(&mut v);
        if *self.room == 0 {
            *self.dropped += 1;
        } else {
            self.tx.push(v);
            *self.room -= 1;
        }
        r
    }
}

impl phy::Device for Dev<'_> {
    type RxToken<'b>
        = RxTok
    where
        Self: 'b;
    type TxToken<'b>
        = TxTok<'b>
    where
        Self: 'b;

    fn receive(&mut self, _t: Instant) -> Option<(RxTok, TxTok<'_>)> {
        // A full NIC queue does not stop reception (a real NIC keeps
        // receiving): what the stack answers then is dropped, counted.
        if self.rx.front().is_none_or(|f| f.0 > self.now) {
            return None;
        }
        let (_, data) = self.rx.pop_front()?;
        Some((
            RxTok(data),
            TxTok {
                tx: self.tx,
                room: &mut self.room,
                dropped: self.dropped,
            },
        ))
    }

    fn transmit(&mut self, _t: Instant) -> Option<TxTok<'_>> {
        if self.room == 0 {
            return None;
        }
        Some(TxTok {
            tx: self.tx,
            room: &mut self.room,
            dropped: self.dropped,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = 1514;
        c
    }
}

/// A simulated host.
pub(crate) struct Host {
    pub spec: HostSpec,
    /// The port it is plugged into now.
    pub port: usize,
    iface: Interface,
    sockets: SocketSet<'static>,
    /// Frames on their way in: (time it reaches the host, bytes).
    rx: VecDeque<(u64, Vec<u8>)>,
    /// Frames on their way out: (time they reach the switch, bytes).
    pub nic: VecDeque<(u64, Vec<u8>)>,
    nic_free: u64,
    scratch: Vec<Vec<u8>>,
    acts: Vec<Act>,
    tracks: HashMap<(u16, u16), Track>,
    next_port: u16,
    interval: u64,
    /// When it next needs to run.
    pub wake: u64,
    tx_frames: u64,
    tx_bytes: u64,
    rx_frames: u64,
    rx_bytes: u64,
    rx_ignored: u64,
    nic_dropped: u64,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("name", &self.spec.name)
            .finish()
    }
}

impl Host {
    /// A host, before the start of the run.
    pub fn new(spec: HostSpec, interval: u64) -> Host {
        let mut cfg = Config::new(HardwareAddress::Ethernet(super::spec::eth(spec.mac)));
        cfg.random_seed = spec.seed;
        let mut rx = VecDeque::new();
        let mut tx = Vec::new();
        let mut dev = Dev {
            rx: &mut rx,
            now: 0,
            tx: &mut tx,
            room: NIC_QUEUE,
            dropped: &mut 0,
        };
        let mut iface = Interface::new(cfg, &mut dev, instant(0));
        iface.update_ip_addrs(|a| {
            for c in [spec.ipv4, spec.ipv6].into_iter().flatten() {
                // At most two addresses: within smoltcp's limit.
                let _ = a.push(c);
            }
        });
        let mut acts = Vec::new();
        for (i, a) in spec.actions.iter().enumerate() {
            acts.push(match a {
                ActionSpec::Ping {
                    to,
                    count,
                    interval,
                    size,
                    timeout,
                    ..
                } => Act::Ping(Ping {
                    to: *to,
                    count: *count,
                    interval: *interval,
                    size: *size,
                    timeout: *timeout,
                    ident: 0x1000 + i as u16,
                    handle: None,
                    unsent: 0,
                    sent_at: Vec::new(),
                    replied: Vec::new(),
                    rtts: Samples::default(),
                }),
                ActionSpec::TcpConnect {
                    to,
                    bytes,
                    seconds,
                    timeout,
                    buffer,
                    ..
                } => Act::TcpConnect(Box::new(TcpConnect {
                    to: *to,
                    bytes: *bytes,
                    seconds: *seconds,
                    timeout: *timeout,
                    buffer: *buffer,
                    local_port: 0,
                    handle: None,
                    written: 0,
                    acked: 0,
                    established: false,
                    closing: false,
                    start: 0,
                    end: None,
                    outcome: None,
                })),
                ActionSpec::TcpListen { port, buffer, .. } => Act::TcpListen(TcpListen {
                    port: *port,
                    buffer: *buffer,
                    handles: Vec::new(),
                    current: Vec::new(),
                    conns: Vec::new(),
                }),
                ActionSpec::UdpSend {
                    to,
                    rate,
                    size,
                    count,
                    seconds,
                    ..
                } => Act::UdpSend(UdpSend {
                    to: *to,
                    rate: *rate,
                    size: *size,
                    count: *count,
                    seconds: *seconds,
                    local_port: 0,
                    handle: None,
                    sent: 0,
                    finished: false,
                }),
                ActionSpec::UdpListen { port, .. } => Act::UdpListen(UdpListen {
                    port: *port,
                    handle: None,
                    received: 0,
                    bytes: 0,
                    senders: BTreeMap::new(),
                    bins: Vec::new(),
                    latency: Samples::default(),
                }),
                ActionSpec::Arp { .. } => Act::Arp { sent: 0 },
                ActionSpec::Move { port, .. } => Act::Move {
                    port: *port,
                    done: false,
                },
            });
        }
        let wake = spec
            .actions
            .iter()
            .map(ActionSpec::at)
            .min()
            .unwrap_or(u64::MAX);
        Host {
            port: spec.port,
            spec,
            iface,
            sockets: SocketSet::new(Vec::new()),
            rx,
            nic: VecDeque::new(),
            nic_free: 0,
            scratch: tx,
            acts,
            tracks: HashMap::new(),
            next_port: EPHEMERAL,
            interval,
            wake,
            tx_frames: 0,
            tx_bytes: 0,
            rx_frames: 0,
            rx_bytes: 0,
            rx_ignored: 0,
            nic_dropped: 0,
        }
    }

    /// A frame the switch sent on the host's port, leaving it at `t`.
    pub fn deliver(&mut self, t: u64, mut frame: Vec<u8>) {
        if wire::strip_tag(&mut frame, self.spec.vlan) == wire::RxTag::Ignore {
            self.rx_ignored += 1;
            return;
        }
        let at = t + self.spec.delay;
        if let Some(s) = wire::tcp_segment(&frame) {
            if let Some(tr) = self.tracks.get_mut(&(s.dst, s.src)) {
                tr.received(&s, at);
            }
        }
        self.rx_frames += 1;
        self.rx_bytes += frame.len() as u64;
        // Frames arrive in time order, except just after a move.
        let pos = self.rx.iter().rposition(|f| f.0 <= at).map_or(0, |p| p + 1);
        self.rx.insert(pos, (at, frame));
        self.wake = self.wake.min(at);
    }

    /// True when every action that ends has ended (listeners never end).
    pub fn finished(&self, now: u64) -> bool {
        self.acts.iter().zip(&self.spec.actions).all(|(a, s)| {
            if s.at() > now {
                return false;
            }
            match a {
                Act::Ping(p) => {
                    p.sent_at.len() as u32 == p.count
                        && (p.replied.iter().all(|&r| r)
                            || p.sent_at.last().is_some_and(|&t| now >= t + p.timeout))
                }
                Act::TcpConnect(c) => c.outcome.is_some(),
                Act::UdpSend(u) => u.finished,
                Act::Move { done, .. } => *done,
                Act::Arp { sent } => *sent > 0,
                Act::TcpListen(_) | Act::UdpListen(_) => true,
            }
        })
    }

    /// Nothing on its way in or out.
    pub fn idle(&self) -> bool {
        self.rx.is_empty() && self.nic.is_empty()
    }

    /// Runs the host at `now`: its stack takes what arrived, its actions
    /// do what is due, and what it sends joins its NIC queue.
    pub fn run(&mut self, now: u64) {
        for _ in 0..4 {
            let room = NIC_QUEUE.saturating_sub(self.nic.len());
            let mut dev = Dev {
                rx: &mut self.rx,
                now,
                tx: &mut self.scratch,
                room,
                dropped: &mut self.nic_dropped,
            };
            let changed = self.iface.poll(instant(now), &mut dev, &mut self.sockets);
            let sent = !self.scratch.is_empty();
            self.transmit(now);
            let worked = self.step(now);
            if !worked && !sent && changed == smoltcp::iface::PollResult::None {
                break;
            }
        }
        self.wake = self.next_wake(now);
    }

    fn next_wake(&mut self, now: u64) -> u64 {
        let mut w = u64::MAX;
        if let Some(t) = self.iface.poll_at(instant(now), &self.sockets) {
            w = w.min((t.total_micros().max(0) as u64).saturating_mul(1000));
        }
        if let Some(f) = self.rx.front() {
            w = w.min(f.0);
        }
        if self.nic.len() >= NIC_QUEUE {
            if let Some(f) = self.nic.front() {
                w = w.min(f.0);
            }
        }
        for (a, s) in self.acts.iter().zip(&self.spec.actions) {
            let at = s.at();
            if at > now {
                w = w.min(at);
                continue;
            }
            match a {
                Act::Ping(p) => {
                    let n = p.sent_at.len() as u32;
                    if n < p.count {
                        w = w.min(at.saturating_add(u64::from(n).saturating_mul(p.interval)));
                    } else if let Some(&t) = p.sent_at.last() {
                        if !p.replied.iter().all(|&r| r) && now < t + p.timeout {
                            w = w.min(t + p.timeout);
                        }
                    }
                }
                Act::UdpSend(u) if !u.finished => {
                    w = w.min(at.saturating_add(u.due(u.sent)));
                }
                Act::TcpConnect(c) if c.outcome.is_none() => {
                    if let Some(s) = c.seconds {
                        if !c.closing {
                            w = w.min(at + s);
                        }
                    }
                }
                _ => {}
            }
        }
        if w <= now {
            // The stack asked to run again at once after four rounds:
            // it waits for something else; look again a microsecond on.
            w = now + 1000;
        }
        w
    }

    /// Moves what the stack sent onto the NIC: tag, DSCP, counters,
    /// serialization at the NIC's rate.
    fn transmit(&mut self, now: u64) {
        for mut f in self.scratch.drain(..) {
            if let Some(s) = wire::tcp_segment(&f) {
                self.tracks.entry((s.src, s.dst)).or_default().sent(&s, now);
            }
            if let Some(d) = self.spec.dscp {
                wire::set_dscp(&mut f, d);
            }
            if self.spec.vlan.is_some() || self.spec.pcp.is_some() {
                wire::push_tag(
                    &mut f,
                    self.spec.vlan.unwrap_or(0),
                    self.spec.pcp.unwrap_or(0),
                );
            }
            wire::pad(&mut f);
            let bits = (f.len() as u64 + WIRE_OVERHEAD) * 8;
            let start = self.nic_free.max(now);
            let done =
                start + (u128::from(bits) * u128::from(NS) / u128::from(self.spec.rate)) as u64;
            self.nic_free = done;
            self.tx_frames += 1;
            self.tx_bytes += f.len() as u64;
            self.nic.push_back((done + self.spec.delay, f));
        }
    }

    /// Sends a frame built outside the stack (announcements).
    fn send_raw(&mut self, now: u64, f: Vec<u8>) {
        self.scratch.push(f);
        self.transmit(now);
    }

    fn local_port(&mut self) -> u16 {
        let p = self.next_port;
        self.next_port = self.next_port.checked_add(1).unwrap_or(EPHEMERAL);
        p
    }

    /// The actions' part of a run; true if any did something.
    fn step(&mut self, now: u64) -> bool {
        let mut worked = false;
        for i in 0..self.acts.len() {
            let at = self.spec.actions[i].at();
            if at > now {
                continue;
            }
            worked |= self.step_one(i, at, now);
        }
        worked
    }

    fn step_one(&mut self, i: usize, at: u64, now: u64) -> bool {
        let mut worked = false;
        // Sockets are made on first use.
        let (needs_port, needs_socket) = match &self.acts[i] {
            Act::TcpConnect(c) => (c.local_port == 0, c.handle.is_none()),
            Act::UdpSend(u) => (u.local_port == 0, u.handle.is_none()),
            Act::Ping(p) => (false, p.handle.is_none()),
            Act::TcpListen(l) => (false, l.handles.is_empty()),
            Act::UdpListen(u) => (false, u.handle.is_none()),
            _ => (false, false),
        };
        let lp = if needs_port { self.local_port() } else { 0 };
        if needs_socket {
            self.open(i, lp, now);
            worked = true;
        }
        let src6 = self.spec.ipv6.and_then(|c| match c.address() {
            IpAddress::Ipv6(a) => Some(a),
            IpAddress::Ipv4(_) => None,
        });
        let interval = self.interval;
        match &mut self.acts[i] {
            Act::Ping(p) => {
                let Some(h) = p.handle else { return worked };
                let s = self.sockets.get_mut::<icmp::Socket>(h);
                while (p.sent_at.len() as u32) < p.count
                    && at.saturating_add((p.sent_at.len() as u64).saturating_mul(p.interval)) <= now
                    && s.can_send()
                {
                    let seq = p.sent_at.len() as u16;
                    let data = pattern_at(0, p.size);
                    let ok = match (p.to.addr, src6) {
                        (IpAddr::V4(a), _) => {
                            let r = Icmpv4Repr::EchoRequest {
                                ident: p.ident,
                                seq_no: seq,
                                data,
                            };
                            match s.send(r.buffer_len(), IpAddress::Ipv4(a)) {
                                Ok(buf) => {
                                    r.emit(
                                        &mut Icmpv4Packet::new_unchecked(buf),
                                        &ChecksumCapabilities::default(),
                                    );
                                    true
                                }
                                Err(_) => false,
                            }
                        }
                        (IpAddr::V6(a), Some(src)) => {
                            let r = Icmpv6Repr::EchoRequest {
                                ident: p.ident,
                                seq_no: seq,
                                data,
                            };
                            match s.send(r.buffer_len(), IpAddress::Ipv6(a)) {
                                Ok(buf) => {
                                    r.emit(
                                        &src,
                                        &a,
                                        &mut Icmpv6Packet::new_unchecked(buf),
                                        &ChecksumCapabilities::default(),
                                    );
                                    true
                                }
                                Err(_) => false,
                            }
                        }
                        (IpAddr::V6(_), None) => false,
                    };
                    // A request the socket refused still counts as sent
                    // (and lost, counted): the schedule does not slip.
                    p.unsent += u32::from(!ok);
                    p.sent_at.push(now);
                    p.replied.push(false);
                    worked = true;
                }
                while let Ok((data, from)) = s.recv() {
                    let seq = match (from, src6) {
                        (IpAddress::Ipv4(_), _) => Icmpv4Packet::new_checked(data)
                            .ok()
                            .and_then(|pk| {
                                Icmpv4Repr::parse(&pk, &ChecksumCapabilities::default()).ok()
                            })
                            .and_then(|r| match r {
                                Icmpv4Repr::EchoReply { ident, seq_no, .. } if ident == p.ident => {
                                    Some(seq_no)
                                }
                                _ => None,
                            }),
                        (IpAddress::Ipv6(a), Some(me)) => Icmpv6Packet::new_checked(data)
                            .ok()
                            .and_then(|pk| {
                                Icmpv6Repr::parse(&a, &me, &pk, &ChecksumCapabilities::default())
                                    .ok()
                            })
                            .and_then(|r| match r {
                                Icmpv6Repr::EchoReply { ident, seq_no, .. } if ident == p.ident => {
                                    Some(seq_no)
                                }
                                _ => None,
                            }),
                        (IpAddress::Ipv6(_), None) => None,
                    };
                    if let Some(seq) = seq.map(usize::from) {
                        if seq < p.replied.len() && !p.replied[seq] {
                            p.replied[seq] = true;
                            p.rtts.push(now.saturating_sub(p.sent_at[seq]));
                        }
                    }
                    worked = true;
                }
            }
            Act::TcpConnect(c) => {
                let Some(h) = c.handle else { return worked };
                if c.outcome.is_some() {
                    return worked;
                }
                let s = self.sockets.get_mut::<tcp::Socket>(h);
                let st = s.state();
                if matches!(st, tcp::State::Established) {
                    c.established = true;
                }
                if s.may_send() && !c.closing {
                    let limit = match (c.bytes, c.seconds) {
                        (Some(b), _) => b,
                        (None, Some(d)) if now < at + d => u64::MAX,
                        _ => c.written,
                    };
                    while c.written < limit {
                        let base = c.written;
                        let n = s
                            .send(|buf| {
                                let n = (buf.len() as u64).min(limit - base) as usize;
                                fill_pattern(&mut buf[..n], base);
                                (n, n)
                            })
                            .unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        c.written += n as u64;
                        worked = true;
                    }
                    if c.written >= limit {
                        s.close();
                        c.closing = true;
                        worked = true;
                    }
                }
                if c.established || c.closing {
                    c.acked = c.acked.max(c.written - s.send_queue() as u64);
                }
                let done = match s.state() {
                    tcp::State::TimeWait => Some("completed"),
                    tcp::State::Closed => {
                        let rst = self
                            .tracks
                            .get(&(c.local_port, c.to.port))
                            .is_some_and(|t| t.rst);
                        Some(match (c.established, rst) {
                            (false, true) => "refused",
                            (false, false) => "timed out",
                            (true, true) => "reset",
                            (true, false) if c.closing && c.acked == c.written => "completed",
                            (true, false) => "timed out",
                        })
                    }
                    _ => None,
                };
                if let Some(o) = done {
                    if o == "completed" {
                        c.acked = c.written;
                    }
                    c.outcome = Some(o);
                    c.end = Some(now);
                    worked = true;
                }
            }
            Act::TcpListen(l) => {
                for (k, &h) in l.handles.iter().enumerate() {
                    let s = self.sockets.get_mut::<tcp::Socket>(h);
                    let st = s.state();
                    if l.current[k].is_none()
                        && !matches!(st, tcp::State::Listen | tcp::State::SynReceived)
                        && st != tcp::State::Closed
                    {
                        let peer = s.remote_endpoint().map_or_else(String::new, ep);
                        l.current[k] = Some(l.conns.len());
                        l.conns.push(Conn {
                            rec: Connection {
                                peer,
                                bytes: 0,
                                corrupt: 0,
                                first_us: us(now),
                                last_us: us(now),
                                goodput_bps: 0,
                                outcome: "open".into(),
                                bytes_per_interval: Vec::new(),
                            },
                            fin: false,
                        });
                    }
                    let Some(ci) = l.current[k] else { continue };
                    let conn = &mut l.conns[ci];
                    while s.can_recv() {
                        let got = s
                            .recv(|buf| {
                                let bad = count_corrupt(buf, conn.rec.bytes);
                                (buf.len(), (buf.len() as u64, bad))
                            })
                            .unwrap_or((0, 0));
                        if got.0 == 0 {
                            break;
                        }
                        if conn.rec.bytes == 0 {
                            conn.rec.first_us = us(now);
                        }
                        conn.rec.bytes += got.0;
                        conn.rec.corrupt += got.1;
                        conn.rec.last_us = us(now);
                        add_bin(&mut conn.rec.bytes_per_interval, now, interval, got.0);
                        worked = true;
                    }
                    match s.state() {
                        tcp::State::CloseWait => {
                            conn.fin = true;
                            s.close();
                            worked = true;
                        }
                        tcp::State::Closed | tcp::State::TimeWait => {
                            conn.rec.outcome = if conn.fin { "closed" } else { "reset" }.into();
                            l.current[k] = None;
                            s.abort();
                            let _ = s.listen(l.port);
                            worked = true;
                        }
                        _ => {}
                    }
                }
            }
            Act::UdpSend(u) => {
                let Some(h) = u.handle else { return worked };
                let s = self.sockets.get_mut::<udp::Socket>(h);
                while !u.finished && at.saturating_add(u.due(u.sent)) <= now {
                    // A `seconds` sender stops at its end time, even when
                    // the NIC could not keep up with its rate.
                    if u.count.is_some_and(|c| u.sent >= c)
                        || u.seconds
                            .is_some_and(|d| u.due(u.sent) >= d || now >= at.saturating_add(d))
                    {
                        u.finished = true;
                        break;
                    }
                    let seq = u.sent;
                    let size = u.size;
                    let ok = s
                        .send(size, IpEndpoint::new(u.to.addr.into(), u.to.port))
                        .map(|buf| {
                            fill_pattern(buf, 0);
                            // Sequence number, then the send time (for
                            // one-way latency), as far as the size allows.
                            let mut head = [0u8; 16];
                            head[..8].copy_from_slice(&seq.to_be_bytes());
                            head[8..].copy_from_slice(&now.to_be_bytes());
                            let n = head.len().min(buf.len());
                            buf[..n].copy_from_slice(&head[..n]);
                        });
                    if ok.is_err() {
                        // Buffer full: try again on the next run.
                        break;
                    }
                    u.sent += 1;
                    worked = true;
                }
                if u.count.is_some_and(|c| u.sent >= c) {
                    u.finished = true;
                }
            }
            Act::UdpListen(u) => {
                let Some(h) = u.handle else { return worked };
                let s = self.sockets.get_mut::<udp::Socket>(h);
                while let Ok((data, meta)) = s.recv() {
                    u.received += 1;
                    u.bytes += data.len() as u64;
                    add_bin(&mut u.bins, now, interval, data.len() as u64);
                    let mut sb = [0u8; 8];
                    let n = data.len().min(8);
                    sb[..n].copy_from_slice(&data[..n]);
                    let seq = u64::from_be_bytes(sb);
                    if let Some(t) = data.get(8..16) {
                        let mut tb = [0u8; 8];
                        tb.copy_from_slice(t);
                        u.latency.push(now.saturating_sub(u64::from_be_bytes(tb)));
                    }
                    let e = u.senders.entry(ep(meta.endpoint)).or_insert((0, 0));
                    e.0 = e.0.max(seq.saturating_add(1));
                    e.1 += 1;
                    worked = true;
                }
            }
            Act::Arp { sent } => {
                if *sent == 0 {
                    *sent = 1;
                    if let Some(IpAddress::Ipv4(a)) = self.spec.ipv4.map(|c| c.address()) {
                        let f = wire::gratuitous_arp(self.spec.mac, a.octets());
                        self.send_raw(now, f);
                    }
                    worked = true;
                }
            }
            Act::Move { port, done } => {
                if !*done {
                    *done = true;
                    self.port = *port;
                    worked = true;
                }
            }
        }
        worked
    }

    /// Makes the sockets of action `i`.
    fn open(&mut self, i: usize, local_port: u16, now: u64) {
        let tcp_socket = |buffer: usize| {
            let mut s = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0u8; buffer]),
                tcp::SocketBuffer::new(vec![0u8; buffer]),
            );
            s.set_congestion_control(tcp::CongestionControl::Reno);
            s
        };
        match &mut self.acts[i] {
            Act::Ping(p) => {
                let mut s = icmp::Socket::new(
                    icmp::PacketBuffer::new(
                        vec![icmp::PacketMetadata::EMPTY; 64],
                        vec![0; 96 * 1024],
                    ),
                    icmp::PacketBuffer::new(
                        vec![icmp::PacketMetadata::EMPTY; 64],
                        vec![0; 96 * 1024],
                    ),
                );
                let _ = s.bind(icmp::Endpoint::Ident(p.ident));
                p.handle = Some(self.sockets.add(s));
            }
            Act::TcpConnect(c) => {
                let mut s = tcp_socket(c.buffer);
                s.set_timeout(Some(Duration::from_micros(c.timeout / 1000)));
                c.local_port = local_port;
                c.start = now;
                let r = s.connect(
                    self.iface.context(),
                    IpEndpoint::new(c.to.addr.into(), c.to.port),
                    local_port,
                );
                if r.is_err() {
                    c.outcome = Some("refused");
                    c.end = Some(now);
                }
                c.handle = Some(self.sockets.add(s));
            }
            Act::TcpListen(l) => {
                for _ in 0..BACKLOG {
                    let mut s = tcp_socket(l.buffer);
                    let _ = s.listen(l.port);
                    l.handles.push(self.sockets.add(s));
                    l.current.push(None);
                }
            }
            Act::UdpSend(u) => {
                let mut s = udp::Socket::new(
                    udp::PacketBuffer::new(
                        vec![udp::PacketMetadata::EMPTY; 64],
                        vec![0; 96 * 1024],
                    ),
                    udp::PacketBuffer::new(
                        vec![udp::PacketMetadata::EMPTY; 64],
                        vec![0; 96 * 1024],
                    ),
                );
                let _ = s.bind(local_port);
                u.local_port = local_port;
                u.handle = Some(self.sockets.add(s));
            }
            Act::UdpListen(u) => {
                let mut s = udp::Socket::new(
                    udp::PacketBuffer::new(
                        vec![udp::PacketMetadata::EMPTY; 512],
                        vec![0; 768 * 1024],
                    ),
                    udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 8], vec![0; 16 * 1024]),
                );
                let _ = s.bind(u.port);
                u.handle = Some(self.sockets.add(s));
            }
            Act::Arp { .. } | Act::Move { .. } => {}
        }
    }

    /// What the host did, at the end of the run (`now`).
    pub fn summary(&self, now: u64, port_names: &[String]) -> HostSummary {
        let mut actions = Vec::new();
        for a in &self.acts {
            actions.push(match a {
                Act::Ping(p) => ActionResult::Ping {
                    to: p.to.addr.to_string(),
                    sent: p.sent_at.len() as u32,
                    received: p.replied.iter().filter(|&&r| r).count() as u32,
                    unsent: p.unsent,
                    rtt: p.rtts.rtt(),
                },
                Act::TcpConnect(c) => {
                    let end = c.end.unwrap_or(now);
                    let tr = self.tracks.get(&(c.local_port, c.to.port));
                    ActionResult::TcpConnect {
                        to: target(&c.to),
                        outcome: c.outcome.unwrap_or("running").into(),
                        bytes_acked: c.acked,
                        start_us: us(c.start),
                        end_us: us(end),
                        goodput_bps: rate(c.acked, end.saturating_sub(c.start)),
                        retransmissions: tr.map_or(0, |t| t.retransmissions),
                        rtt: tr.map_or_else(Rtt::default, |t| t.rtts.rtt()),
                    }
                }
                Act::TcpListen(l) => ActionResult::TcpListen {
                    port: l.port,
                    connections: l
                        .conns
                        .iter()
                        .map(|c| {
                            let mut r = c.rec.clone();
                            r.goodput_bps = rate(
                                r.bytes,
                                (r.last_us.saturating_sub(r.first_us)).saturating_mul(1000),
                            );
                            r
                        })
                        .collect(),
                },
                Act::UdpSend(u) => ActionResult::UdpSend {
                    to: target(&u.to),
                    sent: u.sent,
                    bytes: u.sent * u.size as u64,
                },
                Act::UdpListen(u) => ActionResult::UdpListen {
                    port: u.port,
                    received: u.received,
                    bytes: u.bytes,
                    lost: u
                        .senders
                        .values()
                        .map(|(hi, n)| hi.saturating_sub(*n))
                        .sum(),
                    bytes_per_interval: u.bins.clone(),
                    latency: u.latency.rtt(),
                },
                Act::Arp { sent } => ActionResult::Arp { sent: *sent },
                Act::Move { port, done } => ActionResult::Move {
                    port: port_names.get(*port).cloned().unwrap_or_default(),
                    done: *done,
                },
            });
        }
        HostSummary {
            name: self.spec.name.clone(),
            port: port_names.get(self.port).cloned().unwrap_or_default(),
            tx_frames: self.tx_frames,
            tx_bytes: self.tx_bytes,
            rx_frames: self.rx_frames,
            rx_bytes: self.rx_bytes,
            rx_ignored: self.rx_ignored,
            tx_dropped: self.nic_dropped,
            actions,
        }
    }
}

impl UdpSend {
    /// When datagram `k` is due, nanoseconds after the action's start.
    fn due(&self, k: u64) -> u64 {
        let bits = u128::from(k) * self.size as u128 * 8;
        u64::try_from(bits * u128::from(NS) / u128::from(self.rate)).unwrap_or(u64::MAX)
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_zero64(n: &u64) -> bool {
    *n == 0
}

fn add_bin(bins: &mut Vec<u64>, now: u64, interval: u64, n: u64) {
    let b = (now / interval) as usize;
    if b >= MAX_BINS {
        return;
    }
    if bins.len() <= b {
        bins.resize(b + 1, 0);
    }
    bins[b] += n;
}

fn rate(bytes: u64, ns: u64) -> u64 {
    if ns == 0 {
        return 0;
    }
    (u128::from(bytes) * 8 * u128::from(NS) / u128::from(ns)) as u64
}

fn ep(e: IpEndpoint) -> String {
    match e.addr {
        IpAddress::Ipv4(a) => format!("{a}:{}", e.port),
        IpAddress::Ipv6(a) => format!("[{a}]:{}", e.port),
    }
}

fn target(t: &Target) -> String {
    match t.addr {
        IpAddr::V4(a) => format!("{a}:{}", t.port),
        IpAddr::V6(a) => format!("[{a}]:{}", t.port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_pieces_agree_with_the_pattern() {
        let mut b = vec![0u8; 3 * PIECE + 17];
        fill_pattern(&mut b, 1000);
        for (i, x) in b.iter().enumerate() {
            assert_eq!(*x, pattern(1000 + i as u64));
        }
        assert_eq!(count_corrupt(&b, 1000), 0);
        b[5] ^= 1;
        b[PIECE + 3] ^= 1;
        assert_eq!(count_corrupt(&b, 1000), 2);
        assert!(
            count_corrupt(&b, 1001) > 1000,
            "an offset slip is corruption"
        );
    }

    #[test]
    fn samples_stay_bounded_and_even() {
        let mut s = Samples::default();
        let n = 3 * Samples::MAX as u64 + 5;
        for v in 0..n {
            s.push(v);
        }
        assert!(s.kept.len() <= Samples::MAX);
        let r = s.rtt();
        assert_eq!(r.samples, n);
        assert_eq!(r.min_ns, 0);
        let mid = n / 2;
        assert!(
            r.median_ns.abs_diff(mid) < n / 100,
            "median {} of 0..{n}",
            r.median_ns
        );
    }

    #[test]
    fn rtt_percentiles_by_nearest_rank() {
        let r = Rtt::of((1..=100).map(|x| x * 1000).collect());
        assert_eq!(
            (r.samples, r.min_ns, r.median_ns, r.p99_ns),
            (100, 1000, 50_000, 99_000)
        );
        assert_eq!(Rtt::of(Vec::new()), Rtt::default());
    }
}
