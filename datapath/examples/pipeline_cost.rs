//! Runs one benchmark case for a fixed number of bursts, for counting
//! instructions per frame with callgrind (stable on a noisy machine):
//!
//! ```text
//! cargo build --release -p xsw-datapath --example pipeline_cost
//! valgrind --tool=callgrind --toggle-collect='*Bench*burst*' \
//!     target/release/examples/pipeline_cost normal_1k_macs 2000
//! ```
//! Instructions per frame = total Ir / (bursts × 32).

#[path = "../benches/common/mod.rs"]
mod common;

fn main() {
    let mut args = std::env::args().skip(1);
    let case = args.next().unwrap_or_else(|| "one_rule".into());
    let bursts: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(2000);
    let Some(mut b) = common::build(&case) else {
        eprintln!("unknown case {case}; cases: {}", common::CASES.join(", "));
        std::process::exit(2);
    };
    let mut pos = 0;
    for _ in 0..bursts {
        b.burst(&mut pos);
    }
    let (hits, misses) = b.pipe.emc_stats();
    println!(
        "{case}: {} frames; exact-match cache: {hits} hits, {misses} misses",
        bursts * 32
    );
}
