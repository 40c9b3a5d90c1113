//! Replays every scenario under `pcaps/` and compares what each port sent,
//! frame for frame and byte for byte, with the scenario's `expected/`
//! directory; `summary.json` (counters, drops by reason) must match too.
//!
//! After a deliberate behaviour change, regenerate the expected files with
//! `XSW_BLESS=1 cargo test -p xsw-tests --test replay` and review the diff
//! (then re-check against Open vSwitch: tests/ovs/check-all.sh).

use std::fs;
use std::path::{Path, PathBuf};

use xsw_datapath::pcap::read_all;
use xsw_datapath::replay::{replay, Scenario};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn scenarios() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(repo().join("pcaps"))
        .expect("pcaps/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("scenario.toml").is_file())
        .collect();
    v.sort();
    v
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Compares two pcap files frame by frame; describes the first difference.
fn compare_pcaps(got: &Path, want: &Path) -> Option<String> {
    let g = fs::read(got).map_err(|e| format!("{}: {e}", got.display()));
    let w = fs::read(want).map_err(|e| format!("{}: {e}", want.display()));
    let (g, w) = match (g, w) {
        (Ok(g), Ok(w)) => (g, w),
        (Err(e), _) | (_, Err(e)) => return Some(e),
    };
    if g == w {
        return None;
    }
    let gf = read_all(&g).map_err(|e| e.to_string());
    let wf = read_all(&w).map_err(|e| e.to_string());
    let (gf, wf) = match (gf, wf) {
        (Ok(a), Ok(b)) => (a, b),
        (a, b) => {
            return Some(format!(
                "unreadable: got {:?} / want {:?}",
                a.err(),
                b.err()
            ))
        }
    };
    for (i, (a, b)) in gf.iter().zip(&wf).enumerate() {
        if a != b {
            return Some(format!(
                "frame {} differs\n    got  {} {}\n    want {} {}",
                i + 1,
                a.0,
                hex(&a.1),
                b.0,
                hex(&b.1)
            ));
        }
    }
    if gf.len() != wf.len() {
        return Some(format!("got {} frames, want {}", gf.len(), wf.len()));
    }
    Some("same frames, different file bytes (header?)".into())
}

#[test]
fn every_scenario_matches_its_expected_output() {
    let bless = std::env::var_os("XSW_BLESS").is_some();
    let all = scenarios();
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
        let sc = match Scenario::load(dir) {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        assert!(dir.join("README.md").is_file(), "{name}: README.md missing");
        let out = tmp.join(&name);
        let _ = fs::remove_dir_all(&out);
        if let Err(e) = replay(&sc, &out) {
            failures.push(format!("{name}: replay failed: {e}"));
            continue;
        }
        let exp = dir.join("expected");
        let mut files: Vec<String> = sc
            .ports
            .iter()
            .map(|p| format!("{}.pcap", p.name))
            .collect();
        files.push("summary.json".into());
        if bless {
            fs::create_dir_all(&exp).expect("create expected/");
            for f in &files {
                fs::copy(out.join(f), exp.join(f)).expect("copy to expected/");
            }
            continue;
        }
        for f in &files {
            let got = out.join(f);
            let want = exp.join(f);
            if !want.exists() {
                failures.push(format!(
                    "{name}: expected/{f} is missing (XSW_BLESS=1 to create)"
                ));
                continue;
            }
            if f.ends_with(".pcap") {
                if let Some(d) = compare_pcaps(&got, &want) {
                    failures.push(format!("{name}: {f}: {d}"));
                }
            } else {
                let g = fs::read_to_string(&got).unwrap_or_default();
                let w = fs::read_to_string(&want).unwrap_or_default();
                if g != w {
                    let gl: Vec<&str> = g.lines().collect();
                    let wl: Vec<&str> = w.lines().collect();
                    let i = gl
                        .iter()
                        .zip(&wl)
                        .position(|(a, b)| a != b)
                        .unwrap_or(gl.len().min(wl.len()));
                    failures.push(format!(
                        "{name}: {f} differs at line {}\n    got  {}\n    want {}",
                        i + 1,
                        gl.get(i).unwrap_or(&"<end>"),
                        wl.get(i).unwrap_or(&"<end>")
                    ));
                }
            }
        }
        // Every output frame carries an input frame's timestamp.
        let mut in_ts = std::collections::HashSet::new();
        for p in sc.inputs.iter().flatten() {
            for (t, _) in read_all(&fs::read(p).expect("input")).expect("input readable") {
                in_ts.insert(t);
            }
        }
        // (Except on ports with QoS, whose frames carry departure times:
        // tests/tests/qos.rs checks those.)
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
