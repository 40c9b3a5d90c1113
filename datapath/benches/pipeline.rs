//! Pipeline throughput on memory ports with 64-byte frames, one core:
//!
//! - `one_rule`: `in_port=1,actions=output:2`;
//! - `rules_1k_10_masks`: 1,000 rules spread over 10 different masks;
//! - `rules_100k`: 100,000 rules over the same 10 masks (lookups hit the
//!   exact-match cache, as a working set of 1,024 flows does);
//! - `rules_1k_no_cache`: the 1,000 rules with every flow new to the cache
//!   (the classifier's own speed);
//! - `normal_1k_macs`: NORMAL with 1,000 learned MACs on 4 ports;
//! - `one_rule_qos`, `normal_1k_macs_qos`: the same with QoS on every port
//!   (ingress priority from a DSCP map, eight egress queues, strict
//!   scheduler): the price of QoS in the pipeline.
//!
//! A second group, `qos`, times one port's queues alone: classify, enqueue
//! and dequeue 32 frames spread over all eight queues.
//!
//! Each iteration receives a burst of 32 frames from a generator port,
//! switches them and sends the results to counting sinks, so the figure
//! includes rx copy, parse, lookup, actions and tx. Criterion reports
//! elements (frames) per second: Mpps = that / 1e6.
//!
//! Run: `cargo bench -p xsw-datapath --bench pipeline [-- CASE]`

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use xsw_datapath::packet::BURST;

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline_64B");
    g.throughput(Throughput::Elements(BURST as u64));
    g.sample_size(30);
    g.measurement_time(std::time::Duration::from_secs(4));
    // Build only the cases the command line selects (setup of 100k rules takes a while).
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    for name in common::CASES {
        if !args.is_empty() && !args.iter().any(|a| name.contains(a.as_str())) {
            continue;
        }
        let Some(mut b) = common::build(name) else {
            continue;
        };
        let mut pos = 0;
        g.bench_function(*name, |bn| bn.iter(|| b.burst(&mut pos)));
    }
    g.finish();
}

fn qos(c: &mut Criterion) {
    use xsw_datapath::packet::{PacketBuf, PacketMeta};
    use xsw_datapath::qos::{EgressQos, QosConfig, Scheduler};
    let mut g = c.benchmark_group("qos_64B");
    g.throughput(Throughput::Elements(BURST as u64));
    g.sample_size(30);
    g.measurement_time(std::time::Duration::from_secs(3));
    for (name, sched) in [
        ("strict", Scheduler::Strict),
        ("drr", Scheduler::Drr),
        ("ets", Scheduler::Ets { strict: 2 }),
    ] {
        let mut q = EgressQos::new(QosConfig {
            scheduler: sched,
            ..Default::default()
        });
        let mut bufs: Vec<PacketBuf> = (0..BURST)
            .map(|i| {
                let mut b = PacketBuf::new();
                b.fill(&[0u8; 60]);
                b.meta = PacketMeta::new(0, xsw_datapath::Timestamp(1));
                b.meta.prio = (i % 8) as u8;
                b
            })
            .collect();
        g.bench_function(name, |bn| {
            bn.iter(|| {
                for b in bufs.drain(..) {
                    let _ = q.enqueue(b);
                }
                while let Some(b) = q.dequeue(xsw_datapath::Timestamp(2)) {
                    bufs.push(b);
                }
            })
        });
    }
    g.finish();
}

criterion_group!(pipeline, benches, qos);
criterion_main!(pipeline);
