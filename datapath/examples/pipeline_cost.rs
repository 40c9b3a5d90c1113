//! Runs benchmark cases outside criterion, two ways.
//!
//! Instruction counts (stable on a noisy machine), one case for a fixed
//! number of bursts under callgrind, on a simulated clock running as at
//! 20 Mpps:
//!
//! ```text
//! cargo build --release -p xsw-datapath --example pipeline_cost
//! valgrind --tool=callgrind --toggle-collect='*Bench*burst*' \
//!     target/release/examples/pipeline_cost normal_1k_macs 2000
//! ```
//! Instructions per frame = total Ir / (bursts × 32).
//!
//! Side by side: `pipeline_cost --compare BASE CASE...` times every case in
//! turn, round after round (so a slow spell on a shared machine hits them
//! all alike), and prints each case's median Mpps and the median over the
//! rounds of its ratio to BASE's.

use std::time::Instant;

use xsw_datapath::clock::Clock;

#[path = "../benches/common/mod.rs"]
mod common;

/// Rounds, and bursts per case per round.
const ROUNDS: usize = 101;
const BURSTS: usize = 5_000;

fn build(case: &str) -> common::Bench {
    common::build(case).unwrap_or_else(|| {
        eprintln!("unknown case {case}; cases: {}", common::CASES.join(", "));
        std::process::exit(2);
    })
}

fn compare(cases: &[String]) {
    let mut benches: Vec<_> = cases.iter().map(|c| (build(c), 0usize)).collect();
    let mut mpps: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for (b, pos) in benches.iter_mut() {
        for _ in 0..BURSTS {
            b.burst(pos);
        }
    }
    for _ in 0..ROUNDS {
        for (i, (b, pos)) in benches.iter_mut().enumerate() {
            let t = Instant::now();
            for _ in 0..BURSTS {
                b.burst(pos);
            }
            let s = t.elapsed().as_secs_f64();
            mpps[i].push((BURSTS * 32) as f64 / s / 1e6);
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "{:<28} {:>8} {:>9}   ({ROUNDS} rounds of {BURSTS} bursts of 32 frames; medians)",
        "case", "Mpps", "vs first"
    );
    for (i, c) in cases.iter().enumerate() {
        // The ratio is taken within each round (cases timed back to back),
        // then the median of those: slow drifts of a shared machine cancel.
        let ratio = median(mpps[i].iter().zip(&mpps[0]).map(|(a, b)| a / b).collect());
        println!(
            "{c:<28} {:>8.2} {:>+8.1}%",
            median(mpps[i].clone()),
            (ratio - 1.0) * 100.0
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--compare") {
        if args.len() < 3 {
            eprintln!("usage: pipeline_cost --compare BASE CASE...");
            std::process::exit(2);
        }
        compare(&args[1..]);
        return;
    }
    let case = args.first().cloned().unwrap_or_else(|| "one_rule".into());
    let bursts: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let mut b = build(&case);
    // Time as at 20 Mpps (1.6 us per burst of 32), whatever the real speed
    // (callgrind runs the program about 50 times slower), from just past a
    // second boundary, so the same run crosses the same boundaries.
    let start = xsw_datapath::clock::Timestamp::from_secs(b.clock.now().secs() + 1);
    b.simulated = Some((
        xsw_datapath::clock::ManualClock::new(xsw_datapath::clock::Timestamp(
            start.0 + 100_000_000,
        )),
        1_600,
    ));
    let mut pos = 0;
    for _ in 0..bursts {
        b.burst(&mut pos);
    }
    let xsw_datapath::emc::EmcStats { hits, misses } = b.pipe.emc_stats();
    println!(
        "{case}: {} frames; exact-match cache: {hits} hits, {misses} misses",
        bursts * 32
    );
}
