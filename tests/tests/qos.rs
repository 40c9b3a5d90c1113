//! 802.1p QoS in replay: the pcaps/qos-* scenarios run through the pipeline
//! on the captures' clock, and their outputs are checked for the properties
//! they demonstrate (the replay test separately pins them byte for byte).

use std::path::{Path, PathBuf};

use xsw_datapath::pcap::read_all;
use xsw_datapath::replay::{replay, Scenario, Summary};
use xsw_datapath::Timestamp;

fn run(name: &str) -> (PathBuf, Summary) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("pcaps")
        .join(name);
    let sc = Scenario::load(&dir).unwrap_or_else(|e| panic!("{name}: {e}"));
    let out = std::env::temp_dir().join(format!("xsw-qos-{}-{name}", std::process::id()));
    let s = replay(&sc, &out).unwrap_or_else(|e| panic!("{name}: {e}"));
    (out, s)
}

/// (seconds since the scenario's start, frame) for every frame of a capture.
fn frames(out: &Path, port: &str) -> Vec<(f64, Vec<u8>)> {
    let data = std::fs::read(out.join(format!("{port}.pcap"))).expect("output");
    read_all(&data)
        .expect("readable")
        .into_iter()
        .map(|(t, f): (Timestamp, Vec<u8>)| ((t.0 - 1_700_000_000_000_000_000) as f64 / 1e9, f))
        .collect()
}

fn pcp(f: &[u8]) -> u8 {
    f[14] >> 5
}

fn drops(s: &Summary, port: &str, reason: &str) -> u64 {
    s.ports
        .iter()
        .find(|p| p.name == port)
        .and_then(|p| p.drops.get(reason).copied())
        .unwrap_or(0)
}

#[test]
fn strict_priority_under_congestion() {
    let (out, s) = run("qos-strict");
    let f = frames(&out, "out");
    // IEEE queue of each PCP: 1 below 0.
    let queue = |p: u8| [1, 0, 2, 3, 4, 5, 6, 7][p as usize];
    for burst in [0.0, 0.1] {
        let b: Vec<&(f64, Vec<u8>)> = f
            .iter()
            .filter(|(t, _)| *t >= burst && *t < burst + 0.1)
            .collect();
        assert!(b.len() > 20, "burst at {burst}: {} frames", b.len());
        // The first frame found the link idle; every later one was chosen
        // with the whole burst waiting: highest queue first.
        let qs: Vec<u8> = b[1..].iter().map(|(_, x)| queue(pcp(x))).collect();
        assert!(
            qs.windows(2).all(|w| w[0] >= w[1]),
            "burst at {burst}: queues in departure order {qs:?}"
        );
        assert_eq!(qs.first(), Some(&7));
        // Back to back at the line rate: 1000 bytes + 24 of overhead at
        // 10 Mbit/s is 819.2 us.
        for w in b.windows(2) {
            let gap = (w[1].0 - w[0].0) * 1e6;
            assert!((gap - 819.2).abs() < 1.0, "gap {gap} us");
        }
    }
    // Queue 1 (PCP 0) is 8 deep: 11 arrive behind the first, 3 are dropped,
    // in each burst.
    assert_eq!(drops(&s, "out", "queue_full"), 6);
    let q1 = s.ports[2]
        .queues
        .as_ref()
        .and_then(|q| q.iter().find(|q| q.queue == 1).cloned())
        .expect("queue 1");
    assert_eq!((q1.enqueued, q1.dropped), (18, 6));
}

#[test]
fn drr_shares_follow_the_weights() {
    let (out, _) = run("qos-drr");
    let f = frames(&out, "out");
    // Both queues are backlogged while both inputs run (40 ms).
    let mut bytes = [0u64; 2];
    for (t, x) in &f {
        if *t < 0.040 {
            bytes[pcp(x) as usize] += x.len() as u64;
        }
    }
    let share = bytes[1] as f64 / (bytes[0] + bytes[1]) as f64;
    assert!(
        (share - 0.75).abs() <= 0.02 * 0.75,
        "weight 3 of 4 got {share:.4} of the bytes ({bytes:?})"
    );
    assert_eq!(f.len(), 1600, "nothing lost: the queues hold the backlog");
}

#[test]
fn a_shaper_holds_its_rate_over_a_second() {
    let (out, s) = run("qos-shaper");
    let f = frames(&out, "out");
    // One second of steady state, after the initial burst.
    let bits: u64 = f
        .iter()
        .filter(|(t, _)| *t >= 0.4 && *t < 1.4)
        .map(|(_, x)| x.len() as u64 * 8)
        .sum();
    let err = (bits as f64 - 1e6).abs() / 1e6;
    assert!(
        err <= 0.01,
        "{bits} bits in a second at 1 Mbit/s ({:.2}%)",
        err * 100.0
    );
    // Offered twice the rate: the 64-deep queue overflows, counted.
    assert!(drops(&s, "out", "queue_full") > 100);
}

#[test]
fn policing_and_meters_drop_the_excess() {
    let (out, s) = run("qos-police-meter");
    let f = frames(&out, "out");
    let from = |src: u8| f.iter().filter(|(_, x)| x[11] == src).count() as u64;
    // Policer: 1 Mbit/s with 80 kbit of burst, over the 1 s of input.
    let passed = from(1) * 8000;
    let want = 1e6 * 0.996 + 80_000.0;
    assert!(
        (passed as f64 - want).abs() <= 0.02 * want,
        "policer passed {passed} bits, expected about {want}"
    );
    assert_eq!(drops(&s, "in1", "policed"), 250 - from(1));
    // Meter: 500 kbit/s with 80 kbit, over 2 s.
    let passed = from(2) * 8000;
    let want = 5e5 * 1.992 + 80_000.0;
    assert!(
        (passed as f64 - want).abs() <= 0.02 * want,
        "meter passed {passed} bits, expected about {want}"
    );
    assert_eq!(drops(&s, "in2", "meter"), 250 - from(2));
    assert_eq!(s.meters[0].dropped, 250 - from(2));
}

#[test]
fn priorities_come_from_dscp_and_tags_are_remarked() {
    let (out, _) = run("qos-mapping");
    let f = frames(&out, "trunk");
    // (PCP in the tag the trunk added, DSCP or None for ARP), in departure order.
    let got: Vec<(u8, Option<u8>)> = f
        .iter()
        .map(|(_, x)| {
            let ip = x[16] == 0x08 && x[17] == 0x00;
            (pcp(x), ip.then(|| x[19] >> 2))
        })
        .collect();
    let want = vec![
        (0, Some(0)),  // first: the link was idle
        (0, Some(0)),  // set_queue:7
        (5, Some(46)), // DSCP 46 -> priority 5 (acc's map): queue 5, PCP 5
        (5, Some(46)),
        (2, None),    // ARP: default priority 2 -> queue 2, PCP 2 (one priority)
        (0, Some(0)), // DSCP 0 -> priority 0 -> queue 1
        (0, Some(0)),
        (1, Some(8)), // CS1 -> priority 1 -> queue 0, the lowest
        (1, Some(8)),
    ];
    assert_eq!(got, want);
    // The set_queue:7 frame is the UDP one to port 7.
    assert_eq!(u16::from_be_bytes([f[1].1[40], f[1].1[41]]), 7);
}
