//! What `scenario.toml` says about simulated hosts, flow changes on the
//! clock and expectations: the tables as written (`*File`) and as checked
//! and resolved ([`SimSpec`]).

use std::net::IpAddr;
use std::ops::Range;

use serde::Deserialize;
use smoltcp::wire::{EthernetAddress, IpCidr};

use crate::flow::syntax::{parse_flow, parse_match_spec, MatchSpec};
use crate::flow::Rule;
use crate::pipeline::PortConfig;

/// A `[[host]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HostFile {
    name: String,
    port: String,
    mac: String,
    #[serde(default)]
    ipv4: Option<String>,
    #[serde(default)]
    ipv6: Option<String>,
    #[serde(default)]
    vlan: Option<u16>,
    #[serde(default)]
    pcp: Option<u8>,
    #[serde(default)]
    dscp: Option<u8>,
    #[serde(default)]
    rate: Option<String>,
    #[serde(default)]
    delay: Option<f64>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    run: Vec<toml::Spanned<ActionFile>>,
}

/// One `[[host.run]]` entry, by its `do` key.
#[derive(Debug, Deserialize)]
#[serde(tag = "do", rename_all = "kebab-case", deny_unknown_fields)]
enum ActionFile {
    Ping {
        #[serde(default)]
        at: f64,
        to: String,
        #[serde(default)]
        count: Option<u32>,
        #[serde(default)]
        interval: Option<f64>,
        #[serde(default)]
        size: Option<usize>,
        #[serde(default)]
        timeout: Option<f64>,
    },
    Tcp {
        #[serde(default)]
        at: f64,
        #[serde(default)]
        connect: Option<String>,
        #[serde(default)]
        listen: Option<u16>,
        #[serde(default)]
        bytes: Option<u64>,
        #[serde(default)]
        seconds: Option<f64>,
        #[serde(default)]
        timeout: Option<f64>,
        #[serde(default)]
        buffer: Option<usize>,
    },
    Udp {
        #[serde(default)]
        at: f64,
        #[serde(default)]
        send: Option<String>,
        #[serde(default)]
        listen: Option<u16>,
        #[serde(default)]
        rate: Option<String>,
        #[serde(default)]
        size: Option<usize>,
        #[serde(default)]
        count: Option<u64>,
        #[serde(default)]
        seconds: Option<f64>,
    },
    Arp {
        #[serde(default)]
        at: f64,
    },
    Move {
        at: f64,
        port: String,
    },
}

/// A `[[change]]` table: a rule added or deleted at a time.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangeFile {
    at: f64,
    #[serde(default)]
    add: Option<String>,
    #[serde(default)]
    delete: Option<String>,
    #[serde(default)]
    delete_strict: Option<String>,
}

/// The `[sim]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SimFile {
    #[serde(default)]
    end: Option<f64>,
    #[serde(default)]
    limit: Option<f64>,
    #[serde(default)]
    interval: Option<f64>,
}

/// An `[[expect]]` table: a property of summary.json.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExpectFile {
    path: String,
    #[serde(default)]
    divided_by: Option<String>,
    #[serde(default)]
    at_least: Option<f64>,
    #[serde(default)]
    at_most: Option<f64>,
    #[serde(default)]
    equals: Option<toml::Value>,
    #[serde(default)]
    note: Option<String>,
}

/// Nanoseconds in a second.
pub const NS: u64 = 1_000_000_000;

/// A simulated host, checked.
#[derive(Debug, Clone)]
pub struct HostSpec {
    /// Its name.
    pub name: String,
    /// The port it is plugged into at the start (index in the scenario's ports).
    pub port: usize,
    /// Its MAC address.
    pub mac: [u8; 6],
    /// Its IPv4 address with prefix, if any.
    pub ipv4: Option<IpCidr>,
    /// Its IPv6 address with prefix, if any.
    pub ipv6: Option<IpCidr>,
    /// The VLAN it tags its frames with (and the only one it hears).
    pub vlan: Option<u16>,
    /// The PCP of its tag (a priority tag, VID 0, when it has no VLAN).
    pub pcp: Option<u8>,
    /// The DSCP it writes into its IP headers.
    pub dscp: Option<u8>,
    /// Its NIC's rate, bits per second.
    pub rate: u64,
    /// One-way delay of its cable, nanoseconds.
    pub delay: u64,
    /// Random seed of its TCP/IP stack (initial sequence numbers, ports).
    pub seed: u64,
    /// What it does, in file order.
    pub actions: Vec<ActionSpec>,
}

/// Where a host sends to: an address and, for TCP and UDP, a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The address.
    pub addr: IpAddr,
    /// The port (0 for ping).
    pub port: u16,
}

/// One action of a host, on the scenario clock (times in nanoseconds from
/// the scenario's start).
#[derive(Debug, Clone)]
pub enum ActionSpec {
    /// ICMP echo requests.
    Ping {
        /// Start.
        at: u64,
        /// To whom.
        to: Target,
        /// How many.
        count: u32,
        /// Time between them.
        interval: u64,
        /// Payload bytes.
        size: usize,
        /// How long to wait for the last reply.
        timeout: u64,
    },
    /// A TCP connection that sends.
    TcpConnect {
        /// Start.
        at: u64,
        /// To whom.
        to: Target,
        /// How much to send (None: for `seconds`).
        bytes: Option<u64>,
        /// For how long to send (None: `bytes`).
        seconds: Option<u64>,
        /// Give up after this long without an acknowledgement.
        timeout: u64,
        /// Socket buffer size (each way).
        buffer: usize,
    },
    /// Accepts TCP connections and reads what they send.
    TcpListen {
        /// Start.
        at: u64,
        /// The port.
        port: u16,
        /// Socket buffer size (each way).
        buffer: usize,
    },
    /// Sends UDP datagrams at a rate.
    UdpSend {
        /// Start.
        at: u64,
        /// To whom.
        to: Target,
        /// Payload bits per second.
        rate: u64,
        /// Payload bytes per datagram.
        size: usize,
        /// How many (None: for `seconds`).
        count: Option<u64>,
        /// For how long.
        seconds: Option<u64>,
    },
    /// Receives UDP datagrams on a port.
    UdpListen {
        /// Start.
        at: u64,
        /// The port.
        port: u16,
    },
    /// Announces the host's IPv4 address with a gratuitous ARP.
    Arp {
        /// When.
        at: u64,
    },
    /// Unplugs the host and plugs it into another port.
    Move {
        /// When.
        at: u64,
        /// The new port (index in the scenario's ports).
        port: usize,
    },
}

impl ActionSpec {
    /// When the action starts.
    pub fn at(&self) -> u64 {
        match self {
            ActionSpec::Ping { at, .. }
            | ActionSpec::TcpConnect { at, .. }
            | ActionSpec::TcpListen { at, .. }
            | ActionSpec::UdpSend { at, .. }
            | ActionSpec::UdpListen { at, .. }
            | ActionSpec::Arp { at }
            | ActionSpec::Move { at, .. } => *at,
        }
    }
}

/// What a `[[change]]` does.
#[derive(Debug, Clone)]
pub enum ChangeOp {
    /// Adds a rule.
    Add(Rule),
    /// Deletes the rules a match selects (strict: same match and priority).
    Delete {
        /// The selection.
        spec: MatchSpec,
        /// `delete_strict`.
        strict: bool,
    },
}

/// A flow change on the scenario clock.
#[derive(Debug, Clone)]
pub struct ChangeSpec {
    /// When, nanoseconds from the start.
    pub at: u64,
    /// What.
    pub op: ChangeOp,
    /// The text as written.
    pub text: String,
}

/// What an `[[expect]]` asks of a value in summary.json.
#[derive(Debug, Clone)]
pub struct ExpectSpec {
    /// Path into summary.json (dots; array items by index or by `name`).
    pub path: String,
    /// A second path: the value checked is path's value divided by this one's.
    pub divided_by: Option<String>,
    /// Lower bound.
    pub at_least: Option<f64>,
    /// Upper bound.
    pub at_most: Option<f64>,
    /// Exact value (number, string or bool).
    pub equals: Option<serde_json::Value>,
    /// Why, as written.
    pub note: Option<String>,
}

/// Everything about the simulation in a scenario.
#[derive(Debug, Clone, Default)]
pub struct SimSpec {
    /// The hosts.
    pub hosts: Vec<HostSpec>,
    /// Flow changes, in time order (file order for equal times).
    pub changes: Vec<ChangeSpec>,
    /// Stop at this time (nanoseconds from the start), whatever is running.
    pub end: Option<u64>,
    /// Never run past this time.
    pub limit: u64,
    /// Width of the goodput-over-time bins.
    pub interval: u64,
    /// Checks of summary.json.
    pub expects: Vec<ExpectSpec>,
}

impl SimSpec {
    /// True when the scenario needs the event-driven run (hosts or changes).
    pub fn active(&self) -> bool {
        !self.hosts.is_empty() || !self.changes.is_empty()
    }
}

/// An error at a place in scenario.toml: the span and the message.
pub(crate) type SpanError = (Option<Range<usize>>, String);

fn secs(what: &str, v: f64) -> Result<u64, String> {
    if !v.is_finite() || !(0.0..=1.0e6).contains(&v) {
        return Err(format!("{what} = {v}: a time in seconds from 0 to 1000000"));
    }
    Ok((v * NS as f64).round() as u64)
}

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split(':').collect();
    let mut m = [0u8; 6];
    if parts.len() != 6 {
        return Err(format!("mac `{s}`: six hex bytes separated by colons"));
    }
    for (i, p) in parts.iter().enumerate() {
        m[i] =
            u8::from_str_radix(p, 16).map_err(|_| format!("mac `{s}`: `{p}` is not a hex byte"))?;
    }
    if m[0] & 1 != 0 {
        return Err(format!("mac `{s}` is a multicast address"));
    }
    Ok(m)
}

fn parse_cidr(s: &str, v6: bool) -> Result<IpCidr, String> {
    let (a, l) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}`: an address with its prefix length, like 198.18.0.1/24"))?;
    let addr: IpAddr = a
        .parse()
        .map_err(|_| format!("`{a}` is not an IP address"))?;
    let unicast = match addr {
        IpAddr::V4(x) => !(x.is_multicast() || x.is_broadcast() || x.is_unspecified()),
        IpAddr::V6(x) => !(x.is_multicast() || x.is_unspecified()),
    };
    if !unicast {
        return Err(format!(
            "`{a}` is not a unicast address (multicast, broadcast and unspecified addresses cannot be a host's)"
        ));
    }
    let len: u8 = l
        .parse()
        .map_err(|_| format!("`{l}` is not a prefix length"))?;
    match (addr, v6) {
        (IpAddr::V4(x), false) if len <= 32 => Ok(IpCidr::new(x.into(), len)),
        (IpAddr::V6(x), true) if len <= 128 => Ok(IpCidr::new(x.into(), len)),
        (_, false) => Err(format!(
            "ipv4 `{s}`: an IPv4 address and a prefix length up to 32"
        )),
        (_, true) => Err(format!(
            "ipv6 `{s}`: an IPv6 address and a prefix length up to 128"
        )),
    }
}

fn parse_rate(s: &str) -> Result<u64, String> {
    let r = crate::qos::parse_bits(s)?;
    if r == 0 {
        return Err(format!("rate `{s}` must be above 0"));
    }
    Ok(r)
}

/// Parses the simulation tables of a scenario: hosts need the ports (by
/// name) and each other (targets by host name), so they are resolved here.
pub(crate) fn load(
    ports: &[PortConfig],
    hosts: &[toml::Spanned<HostFile>],
    changes: &[toml::Spanned<ChangeFile>],
    sim: Option<&SimFile>,
    expects: &[toml::Spanned<ExpectFile>],
) -> Result<SimSpec, SpanError> {
    let port_idx = |n: &str| ports.iter().position(|p| p.name == n);
    let port_list = || {
        ports
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    // First the hosts' identities, so actions can name other hosts.
    let mut out: Vec<HostSpec> = Vec::new();
    for (hi, sh) in hosts.iter().enumerate() {
        let span = Some(sh.span());
        let h = sh.get_ref();
        let e = |m: String| (span.clone(), format!("host {}: {m}", h.name));
        if h.name.is_empty() || h.name.contains(['/', '\\', ':', '.']) || h.name.contains(' ') {
            return Err(e(
                "a host name is a word without `/`, `:`, `.` or spaces".into()
            ));
        }
        if out.iter().any(|o| o.name == h.name) {
            return Err(e("two hosts have this name".into()));
        }
        let port = port_idx(&h.port).ok_or_else(|| {
            e(format!(
                "no port named `{}` (ports: {})",
                h.port,
                port_list()
            ))
        })?;
        let mac = parse_mac(&h.mac).map_err(e)?;
        if let Some(o) = out.iter().find(|o| o.mac == mac) {
            return Err(e(format!("host {} has the same mac", o.name)));
        }
        let ipv4 = h
            .ipv4
            .as_deref()
            .map(|s| parse_cidr(s, false))
            .transpose()
            .map_err(e)?;
        let ipv6 = h
            .ipv6
            .as_deref()
            .map(|s| parse_cidr(s, true))
            .transpose()
            .map_err(e)?;
        if ipv4.is_none() && ipv6.is_none() {
            return Err(e("give it an `ipv4` and/or an `ipv6` address".into()));
        }
        if let Some(v) = h.vlan {
            if !(1..=4094).contains(&v) {
                return Err(e(format!("vlan {v}: 1 to 4094")));
            }
        }
        if h.pcp.is_some_and(|p| p > 7) {
            return Err(e("pcp: 0 to 7".into()));
        }
        if h.dscp.is_some_and(|d| d > 63) {
            return Err(e("dscp: 0 to 63".into()));
        }
        let rate = match &h.rate {
            Some(r) => parse_rate(r).map_err(e)?,
            None => 10_000_000_000,
        };
        let delay = h.delay.map_or(Ok(0), |d| secs("delay", d)).map_err(e)?;
        out.push(HostSpec {
            name: h.name.clone(),
            port,
            mac,
            ipv4,
            ipv6,
            vlan: h.vlan,
            pcp: h.pcp,
            dscp: h.dscp,
            rate,
            delay,
            seed: h.seed.unwrap_or(hi as u64 + 1),
            actions: Vec::new(),
        });
    }
    // Then their actions.
    for (hi, sh) in hosts.iter().enumerate() {
        let h = sh.get_ref();
        for sa in &h.run {
            let span = Some(sa.span());
            let e = |m: String| (span.clone(), format!("host {}: {m}", h.name));
            let resolve = |s: &str, with_port: bool| -> Result<Target, String> {
                resolve_target(&out, s, with_port)
            };
            let a = match sa.get_ref() {
                ActionFile::Ping {
                    at,
                    to,
                    count,
                    interval,
                    size,
                    timeout,
                } => {
                    let size = size.unwrap_or(56);
                    if size > 1400 {
                        return Err(e(format!("ping size {size}: at most 1400 bytes")));
                    }
                    ActionSpec::Ping {
                        at: secs("at", *at).map_err(e)?,
                        to: resolve(to, false).map_err(e)?,
                        count: match count.unwrap_or(1) {
                            n @ 1..=65_536 => n,
                            n => {
                                return Err(e(format!(
                                    "ping count {n}: 1 to 65536 (the echo sequence numbers)"
                                )))
                            }
                        },
                        interval: match secs("interval", interval.unwrap_or(1.0)).map_err(e)? {
                            i if i >= 1000 => i,
                            _ => return Err(e("ping interval: at least 0.000001 s".into())),
                        },
                        size,
                        timeout: secs("timeout", timeout.unwrap_or(1.0)).map_err(e)?,
                    }
                }
                ActionFile::Tcp {
                    at,
                    connect,
                    listen,
                    bytes,
                    seconds,
                    timeout,
                    buffer,
                } => {
                    let at = secs("at", *at).map_err(e)?;
                    let buffer = buffer.unwrap_or(64 * 1024);
                    if !(1024..=16 << 20).contains(&buffer) {
                        return Err(e(format!("buffer {buffer}: 1024 bytes to 16 MiB")));
                    }
                    match (connect, listen) {
                        (Some(c), None) => {
                            if bytes.is_some() == seconds.is_some() {
                                return Err(e(
                                    "a tcp connect sends `bytes = N` or for `seconds = T` (one of them)"
                                        .into(),
                                ));
                            }
                            ActionSpec::TcpConnect {
                                at,
                                to: resolve(c, true).map_err(e)?,
                                bytes: *bytes,
                                seconds: seconds
                                    .map(|s| secs("seconds", s))
                                    .transpose()
                                    .map_err(e)?,
                                timeout: secs("timeout", timeout.unwrap_or(3.0))
                                    .map_err(e)?
                                    .max(NS / 100),
                                buffer,
                            }
                        }
                        (None, Some(0)) => {
                            return Err(e("listen = 0: a port number from 1 to 65535".into()))
                        }
                        (None, Some(p)) => {
                            if bytes.is_some() || seconds.is_some() || timeout.is_some() {
                                return Err(e(
                                    "a tcp listen takes only `at`, `listen` and `buffer`".into(),
                                ));
                            }
                            ActionSpec::TcpListen {
                                at,
                                port: *p,
                                buffer,
                            }
                        }
                        _ => {
                            return Err(e(
                                "a tcp action has `connect = \"HOST:PORT\"` or `listen = PORT`"
                                    .into(),
                            ))
                        }
                    }
                }
                ActionFile::Udp {
                    at,
                    send,
                    listen,
                    rate,
                    size,
                    count,
                    seconds,
                } => {
                    let at = secs("at", *at).map_err(e)?;
                    match (send, listen) {
                        (Some(s), None) => {
                            if count.is_some() == seconds.is_some() {
                                return Err(e(
                                    "a udp send sends `count = N` datagrams or for `seconds = T` (one of them)"
                                        .into(),
                                ));
                            }
                            let size = size.unwrap_or(1000);
                            if !(1..=1472).contains(&size) {
                                return Err(e(format!("udp size {size}: 1 to 1472 bytes")));
                            }
                            ActionSpec::UdpSend {
                                at,
                                to: resolve(s, true).map_err(e)?,
                                rate: parse_rate(rate.as_deref().unwrap_or("1M")).map_err(e)?,
                                size,
                                count: *count,
                                seconds: seconds
                                    .map(|s| secs("seconds", s))
                                    .transpose()
                                    .map_err(e)?,
                            }
                        }
                        (None, Some(0)) => {
                            return Err(e("listen = 0: a port number from 1 to 65535".into()))
                        }
                        (None, Some(p)) => ActionSpec::UdpListen { at, port: *p },
                        _ => {
                            return Err(e(
                                "a udp action has `send = \"HOST:PORT\"` or `listen = PORT`".into(),
                            ))
                        }
                    }
                }
                ActionFile::Arp { at } => {
                    if out[hi].ipv4.is_none() {
                        return Err(e(
                            "arp announces an IPv4 address: give the host `ipv4`".into()
                        ));
                    }
                    ActionSpec::Arp {
                        at: secs("at", *at).map_err(e)?,
                    }
                }
                ActionFile::Move { at, port } => ActionSpec::Move {
                    at: secs("at", *at).map_err(e)?,
                    port: port_idx(port).ok_or_else(|| {
                        e(format!(
                            "move: no port named `{port}` (ports: {})",
                            port_list()
                        ))
                    })?,
                },
            };
            out[hi].actions.push(a);
        }
    }
    // Flow changes.
    let names = |n: &str| port_idx(n).map(|i| ports[i].ofport);
    let mut ch = Vec::new();
    for sc in changes {
        let span = Some(sc.span());
        let c = sc.get_ref();
        let e = |m: String| (span.clone(), format!("change: {m}"));
        let at = secs("at", c.at).map_err(e)?;
        let (op, text) = match (&c.add, &c.delete, &c.delete_strict) {
            (Some(a), None, None) => (
                ChangeOp::Add(parse_flow(a, &names).map_err(|x| e(x.render(a)))?),
                a.clone(),
            ),
            (None, Some(d), None) => (
                ChangeOp::Delete {
                    spec: parse_match_spec(d, &names).map_err(|x| e(x.render(d)))?,
                    strict: false,
                },
                d.clone(),
            ),
            (None, None, Some(d)) => (
                ChangeOp::Delete {
                    spec: parse_match_spec(d, &names).map_err(|x| e(x.render(d)))?,
                    strict: true,
                },
                d.clone(),
            ),
            _ => return Err(e(
                "give one of `add = \"RULE\"`, `delete = \"MATCH\"`, `delete_strict = \"MATCH\"`"
                    .into(),
            )),
        };
        ch.push(ChangeSpec { at, op, text });
    }
    ch.sort_by_key(|c| c.at);
    let dflt = SimFile::default();
    let s = sim.unwrap_or(&dflt);
    let e = |m: String| (None, format!("sim.{m}"));
    let end = s.end.map(|v| secs("end", v)).transpose().map_err(e)?;
    let limit = secs("limit", s.limit.unwrap_or(600.0)).map_err(e)?;
    let interval = secs("interval", s.interval.unwrap_or(0.1)).map_err(e)?;
    if interval < 1000 {
        return Err(e("interval: at least 0.000001 s".into()));
    }
    let mut ex = Vec::new();
    for se in expects {
        let x = se.get_ref();
        if x.at_least.is_none() && x.at_most.is_none() && x.equals.is_none() {
            return Err((
                Some(se.span()),
                format!("expect {}: give `at_least`, `at_most` or `equals`", x.path),
            ));
        }
        let equals =
            match &x.equals {
                None => None,
                Some(v) => Some(serde_json::to_value(v).map_err(|err| {
                    (Some(se.span()), format!("expect {}: equals: {err}", x.path))
                })?),
            };
        if x.divided_by.is_some() && x.equals.is_some() {
            return Err((
                Some(se.span()),
                format!(
                    "expect {}: a ratio (`divided_by`) takes `at_least` and/or `at_most`",
                    x.path
                ),
            ));
        }
        ex.push(ExpectSpec {
            divided_by: x.divided_by.clone(),
            path: x.path.clone(),
            at_least: x.at_least,
            at_most: x.at_most,
            equals,
            note: x.note.clone(),
        });
    }
    Ok(SimSpec {
        hosts: out,
        changes: ch,
        end,
        limit: end.map_or(limit, |e| e.min(limit)),
        interval,
        expects: ex,
    })
}

/// `HOST`, `IP`, `HOST:PORT`, `IP:PORT` or `[IPV6]:PORT`.
fn resolve_target(hosts: &[HostSpec], s: &str, with_port: bool) -> Result<Target, String> {
    let (host, port) = if with_port {
        let (h, p) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("`{s}`: HOST:PORT, e.g. h2:5001 or 198.18.0.2:5001"))?;
        let port: u16 = p
            .parse()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("`{s}`: `{p}` is not a port number (1-65535)"))?;
        (h.trim_start_matches('[').trim_end_matches(']'), port)
    } else {
        (s, 0)
    };
    if let Ok(a) = host.parse::<IpAddr>() {
        return Ok(Target { addr: a, port });
    }
    let h = hosts
        .iter()
        .find(|h| h.name == host)
        .ok_or_else(|| format!("`{host}` is neither an IP address nor a host of this scenario"))?;
    let addr = h
        .ipv4
        .or(h.ipv6)
        .map(|c| IpAddr::from(c.address()))
        .ok_or_else(|| format!("host {host} has no address"))?;
    Ok(Target { addr, port })
}

/// The host's MAC as smoltcp wants it.
pub(crate) fn eth(mac: [u8; 6]) -> EthernetAddress {
    EthernetAddress(mac)
}
