//! Shared setup for the pipeline benchmark and the instruction-count probe:
//! the five cases, each a pipeline with memory ports and a frame generator.
#![allow(dead_code)]

use etherparse::PacketBuilder;

use xsw_datapath::clock::{Clock, ManualClock, SystemClock, Timestamp};
use xsw_datapath::flow::{parse_flow, Rule};
use xsw_datapath::packet::{Batch, PacketMeta, BURST};
use xsw_datapath::pipeline::{Pipeline, PipelineOptions, PortConfig};
use xsw_datapath::port::memory::MemoryPort;
use xsw_datapath::port::Port;
use xsw_datapath::qos::QosConfig;
use xsw_datapath::trace::NoTrace;

fn mac(n: u32) -> [u8; 6] {
    let b = n.to_be_bytes();
    [2, 0, b[0], b[1], b[2], b[3]]
}

/// A 64-byte UDP/IPv4 frame (60 bytes without FCS).
fn udp_frame(src: u32, dst: u32, ip_src: u32, ip_dst: u32, sport: u16, dport: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    PacketBuilder::ethernet2(mac(src), mac(dst))
        .ipv4(ip_src.to_be_bytes(), ip_dst.to_be_bytes(), 64)
        .udp(sport, dport)
        .write(&mut out, &[0u8; 18])
        .expect("frame");
    out
}

#[derive(Debug)]
pub struct Bench {
    pub pipe: Pipeline,
    rx: MemoryPort,
    pub sinks: Vec<MemoryPort>,
    pub batch: Batch,
    pub clock: SystemClock,
    /// Ingress port index per frame (for NORMAL, frames arrive where their source lives).
    pub rx_port_of: Option<Vec<u16>>,
    n: usize,
    /// A simulated clock and its step per burst, in place of the system's
    /// (for instruction counts that do not depend on how slowly the
    /// program runs: time-based caches behave as at full speed).
    pub simulated: Option<(ManualClock, u64)>,
}

impl Bench {
    pub fn new(n_ports: u16, rules: Vec<Rule>, frames: Vec<Vec<u8>>) -> Bench {
        Self::with_qos(n_ports, rules, frames, None)
    }

    /// The same, with `qos` on every port (ingress priority and egress
    /// queues, as a switch with QoS everywhere would run).
    pub fn with_qos(
        n_ports: u16,
        rules: Vec<Rule>,
        frames: Vec<Vec<u8>>,
        qos: Option<QosConfig>,
    ) -> Bench {
        let cfgs = (1..=n_ports)
            .map(|i| {
                let mut c = PortConfig::new(&format!("p{i}"), i);
                c.qos = qos.clone();
                c
            })
            .collect();
        let mut pipe = Pipeline::new(cfgs, PipelineOptions::default()).expect("pipeline");
        for r in rules {
            pipe.add_rule(r, Timestamp(0));
        }
        Bench {
            pipe,
            n: frames.len(),
            rx: MemoryPort::generator("gen", frames),
            sinks: (0..n_ports)
                .map(|i| {
                    let mut s = MemoryPort::new(&format!("sink{i}"));
                    s.set_sink(xsw_datapath::port::memory::Sink::Count);
                    s
                })
                .collect(),
            batch: Batch::new(BURST),
            clock: SystemClock,
            rx_port_of: None,
            simulated: None,
        }
    }

    #[inline(never)]
    pub fn burst(&mut self, pos: &mut usize) {
        self.batch.clear();
        let _ = match &self.simulated {
            Some((c, step)) => {
                c.set(Timestamp(c.now().0 + step));
                self.rx.rx_burst(&mut self.batch, 0, c)
            }
            None => self.rx.rx_burst(&mut self.batch, 0, &self.clock),
        };
        if let Some(map) = &self.rx_port_of {
            for f in self.batch.frames_mut() {
                f.meta.port = map[*pos];
                *pos = (*pos + 1) % self.n;
            }
        }
        self.pipe.process(&mut self.batch, &mut NoTrace);
        for (i, s) in self.sinks.iter_mut().enumerate() {
            if self.pipe.egress_len(i as u16) > 0 {
                let _ = self.pipe.flush_port(i as u16, s);
            }
        }
    }
}

/// Ten masks over different fields, and `per_mask` rules for each; returns
/// the rules and frames that hit them (one frame per `stride` rules).
fn masked_rules(per_mask: u32, n_frames: u32) -> (Vec<Rule>, Vec<Vec<u8>>) {
    let mut rules = Vec::new();
    let ip = |a: u32| std::net::Ipv4Addr::from(a).to_string();
    let base = 0xc612_0000u32; // 198.18.0.0
    for i in 0..per_mask {
        let v = [
            format!("priority=10,ip,nw_dst={}/32,actions=output:2", ip(base + i)),
            format!(
                "priority=11,ip,nw_src={}/24,actions=output:2",
                ip(0x0a00_0000 + (i << 8))
            ),
            format!(
                "priority=12,udp,tp_dst={},actions=output:2",
                1000 + i % 60000
            ),
            format!(
                "priority=13,udp,tp_src={},nw_dst={}/16,actions=output:2",
                1 + i % 60000,
                ip(0x0b00_0000 + (i << 16))
            ),
            format!(
                "priority=14,dl_dst=02:00:00:01:{:02x}:{:02x},actions=output:2",
                (i >> 8) & 0xff,
                i & 0xff
            ),
            format!(
                "priority=15,in_port=1,dl_src=02:00:00:02:{:02x}:{:02x},actions=output:2",
                (i >> 8) & 0xff,
                i & 0xff
            ),
            format!(
                "priority=16,tcp,nw_dst={}/28,tp_dst=0x{:x}/0xfff0,actions=output:2",
                ip(0x0c00_0000 + (i << 4)),
                (i << 4) & 0xfff0
            ),
            format!(
                "priority=17,ip,nw_tos={},nw_src={},actions=output:2",
                (i % 64) * 4,
                ip(0x0d00_0000 + i)
            ),
            format!(
                "priority=18,ipv6,ipv6_dst=2001:db8:{:x}::/48,actions=output:2",
                i & 0xffff
            ),
            format!(
                "priority=19,arp,arp_tpa={},actions=output:2",
                ip(0x0e00_0000 + i)
            ),
        ];
        for r in v {
            rules.push(parse_flow(&r, &()).expect("bench rule"));
        }
    }
    // Frames: vary nw_dst over the first mask's rules so each flow hits a rule.
    let frames = (0..n_frames)
        .map(|k| udp_frame(7, 8, 0x0900_0001, base + (k % per_mask), 5000, 6000))
        .collect();
    (rules, frames)
}

/// The benchmark cases, by name.
pub const CASES: &[&str] = &[
    "one_rule",
    "rules_1k_10_masks",
    "rules_1k_no_cache",
    "rules_100k",
    "normal_1k_macs",
    "one_rule_qos",
    "one_rule_qos_8_classes",
    "normal_1k_macs_qos",
];

/// QoS as the `_qos` cases run it: a DSCP map at ingress, eight queues
/// under a strict scheduler at egress (no shaping: the queues drain as fast
/// as frames come, so the figure is the cost of classifying, queueing and
/// scheduling).
pub fn bench_qos() -> QosConfig {
    let spec = xsw_datapath::spec::QosSpec {
        dscp_map: Some([("46".to_string(), 5u8)].into_iter().collect()),
        ..Default::default()
    };
    spec.to_config().expect("qos")
}

/// Builds case `name`.
pub fn build(name: &str) -> Option<Bench> {
    Some(match name {
        // (a) One rule.
        "one_rule" | "one_rule_qos" | "one_rule_qos_8_classes" => {
            let frames = (0..256)
                .map(|k| {
                    let mut f =
                        udp_frame(1, 2, 0xc612_0001, 0xc612_0100 + k, 1000, 2000 + k as u16);
                    if name.ends_with("8_classes") {
                        // DSCP 0, 8, ..., 56: priorities 0-7, all eight
                        // queues in every burst (no cut-through).
                        f[15] = ((k % 8) as u8 * 8) << 2;
                    }
                    f
                })
                .collect();
            let rules = vec![parse_flow("in_port=1,actions=output:2", &()).expect("rule")];
            let qos = name.contains("_qos").then(bench_qos);
            Bench::with_qos(2, rules, frames, qos)
        }
        // (b) 1,000 rules over 10 masks, cache-friendly working set.
        "rules_1k_10_masks" => {
            let (rules, frames) = masked_rules(100, 100);
            Bench::new(2, rules, frames)
        }
        // (b') the same rules, every lookup missing the cache (64k flows).
        "rules_1k_no_cache" => {
            let (rules, _) = masked_rules(100, 1);
            let frames = (0..65_536u32)
                .map(|k| {
                    udp_frame(
                        7,
                        8,
                        0x0900_0001,
                        0xc612_0000 + (k % 100),
                        (k / 100) as u16 + 1,
                        6000 + (k % 7) as u16,
                    )
                })
                .collect();
            Bench::new(2, rules, frames)
        }
        // (c) 100,000 rules, 1,024 flows.
        "rules_100k" => {
            let (rules, frames) = masked_rules(10_000, 1024);
            Bench::new(2, rules, frames)
        }
        // (d) NORMAL with 1,000 learned MACs on 4 ports.
        "normal_1k_macs" | "normal_1k_macs_qos" => {
            let n_macs = 1000u32;
            let port_of = |m: u32| (m % 4) as u16;
            let mut frames = Vec::new();
            let mut rx_ports = Vec::new();
            let mut x = 12345u32;
            for _ in 0..4096 {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let s = (x >> 8) % n_macs;
                let mut d = (x >> 20) % n_macs;
                if port_of(d) == port_of(s) {
                    d = (d + 1) % n_macs;
                }
                frames.push(udp_frame(
                    s,
                    d,
                    0xc612_0000 + s,
                    0xc612_0000 + d,
                    1000,
                    2000,
                ));
                rx_ports.push(port_of(s));
            }
            let qos = name.ends_with("_qos").then(bench_qos);
            let mut b = Bench::with_qos(4, vec![Rule::default_normal()], frames, qos);
            b.rx_port_of = Some(rx_ports);
            let now = b.clock.now();
            for m in 0..n_macs {
                b.batch.clear();
                b.batch.push_frame(
                    &udp_frame(m, 0xffff_ffff, 1, 2, 3, 4),
                    PacketMeta::new(port_of(m), now),
                );
                b.pipe.process(&mut b.batch, &mut NoTrace);
                for (i, s) in b.sinks.iter_mut().enumerate() {
                    let _ = b.pipe.flush_port(i as u16, s);
                }
            }
            assert_eq!(b.pipe.mac_table().len(), n_macs as usize);
            b
        }
        _ => return None,
    })
}
