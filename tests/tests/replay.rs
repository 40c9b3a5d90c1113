//! Replays every scenario under `pcaps/` and compares what each port sent
//! with the scenario's `expected/` directory, through the same check `xsw
//! test` runs (`xsw_datapath::check`: frame for frame, the first differing
//! field by name, and `summary.json` as JSON); plus what only the project
//! promises of its own scenarios: each has a README.md, and every output
//! frame of a port without QoS carries the timestamp of a frame that
//! reached the switch (from an input capture or a simulated host).
//!
//! After a deliberate behaviour change, regenerate the expected files with
//! `XSW_BLESS=1 cargo test -p xsw-tests --test replay` (the same as `xsw test
//! pcaps --update`) and review the diff (then re-check against Open vSwitch:
//! tests/ovs/check-all.sh).

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use xsw_datapath::check::{find_scenarios, run_scenario, RunOptions, Status};
use xsw_datapath::pcap::read_all;
use xsw_datapath::replay::Scenario;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn every_scenario_matches_its_expected_output() {
    let bless = std::env::var_os("XSW_BLESS").is_some();
    let all = find_scenarios(&[repo().join("pcaps")]).expect("pcaps/ exists");
    assert!(
        all.len() >= 12,
        "expected at least 12 scenarios, found {}",
        all.len()
    );
    let tmp = std::env::temp_dir().join(format!("xsw-replay-test-{}", std::process::id()));
    let mut failures = Vec::new();
    for dir in &all {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        assert!(dir.join("README.md").is_file(), "{name}: README.md missing");
        let out = tmp.join(&name);
        let _ = fs::remove_dir_all(&out);
        let r = run_scenario(
            dir,
            &RunOptions {
                update: bless,
                keep: Some(out.clone()),
            },
        );
        if r.status == Status::Failed {
            failures.push(format!("{name}:\n    {}", r.lines.join("\n    ")));
            continue;
        }
        // Every output frame carries an input frame's timestamp (except on
        // ports with QoS, whose frames carry departure times:
        // tests/tests/qos.rs checks those).
        let sc = Scenario::load(dir).expect("it ran, so it loads");
        let mut in_ts = HashSet::new();
        for p in sc.inputs.iter().flatten() {
            for (t, _) in read_all(&fs::read(p).expect("input")).expect("input readable") {
                in_ts.insert(t);
            }
        }
        // With simulated hosts, what the hosts sent reaches the switch too.
        for h in &sc.sim.hosts {
            let path = out.join(format!("host-{}.pcap", h.name));
            for (t, _) in read_all(&fs::read(&path).expect("host capture")).expect("readable") {
                in_ts.insert(t);
            }
        }
        for p in sc.ports.iter().filter(|p| p.qos.is_none()) {
            let frames = read_all(&fs::read(out.join(format!("{}.pcap", p.name))).expect("output"))
                .expect("readable");
            for (t, _) in frames {
                if !in_ts.contains(&t) {
                    failures.push(format!(
                        "{name}: {}.pcap has a frame at {t}, which no input frame has",
                        p.name
                    ));
                }
            }
        }
    }
    let _ = fs::remove_dir_all(&tmp);
    assert!(
        failures.is_empty(),
        "{} problem(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
