//! `xsw test` as CI runs it: the project's own scenarios pass, and a broken
//! scenario fails with a diff a person can read, until `--update`.
//! (Needs no `daemon` feature: `cargo test -p xsw-control
//! --no-default-features --test scenario_test`.)

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn xsw(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xsw"))
        .args(args)
        .output()
        .expect("run xsw")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xsw-scenario-test-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).expect("tmp dir");
    d
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for e in fs::read_dir(from).expect("read dir").flatten() {
        let p = e.path();
        let t = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &t);
        } else {
            fs::copy(&p, &t).expect("copy");
        }
    }
}

/// The byte ranges of a classic pcap file's records (header included).
fn records(b: &[u8]) -> Vec<std::ops::Range<usize>> {
    assert_eq!(&b[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "little-endian pcap");
    let mut v = Vec::new();
    let mut o = 24;
    while o + 16 <= b.len() {
        let caplen = u32::from_le_bytes([b[o + 8], b[o + 9], b[o + 10], b[o + 11]]) as usize;
        v.push(o..o + 16 + caplen);
        o += 16 + caplen;
    }
    v
}

/// Drops the time from a result line: `ok   pcaps/x (0.03 s)` → `ok   pcaps/x`.
fn without_times(s: &str) -> String {
    s.lines()
        .map(|l| match l.rfind(" (") {
            Some(i) if l.ends_with(" s)") => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_projects_scenarios_pass() {
    let pcaps = repo().join("pcaps");
    let n = fs::read_dir(&pcaps)
        .expect("pcaps/")
        .flatten()
        .filter(|e| e.path().join("scenario.toml").is_file())
        .count();
    assert!(n >= 12, "only {n} scenarios");
    let dir = pcaps.to_string_lossy().to_string();
    let o = xsw(&["test", &dir]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.ends_with(&format!("\n{n} passed, 0 failed\n")), "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("ok   ")).count(), n);
    // In parallel: the same lines in the same order.
    let o4 = xsw(&["test", &dir, "-j", "4"]);
    assert_eq!(o4.status.code(), Some(0));
    assert_eq!(without_times(&stdout(&o4)), without_times(&out));
    // --filter and --json.
    let o = xsw(&["test", &dir, "--filter", "vlan", "--json"]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let names: Vec<&str> = v["scenarios"]
        .as_array()
        .expect("scenarios")
        .iter()
        .filter_map(|s| s["scenario"].as_str())
        .collect();
    assert!(names.len() >= 2, "{names:?}");
    assert!(names.iter().all(|n| n.contains("vlan")), "{names:?}");
    assert_eq!(v["failed"], 0);
}

#[test]
fn a_broken_scenario_says_where_and_update_fixes_it() {
    let root = tmp("broken");
    let sc = root.join("suite/vlan-access-trunk");
    copy_dir(&repo().join("pcaps/vlan-access-trunk"), &sc);
    let exp = sc.join("expected");

    // trunk.pcap frame 2 carries VLAN 20: make the expected one VLAN 30.
    let p = exp.join("trunk.pcap");
    let mut b = fs::read(&p).expect("trunk.pcap");
    let r = records(&b)[1].clone();
    let tci = r.start + 16 + 14;
    assert_eq!(&b[r.start + 16 + 12..tci], &[0x81, 0x00], "a tagged frame");
    assert_eq!(b[tci + 1], 20);
    b[tci + 1] = 30;
    fs::write(&p, &b).expect("write");

    // b10.pcap: remove the expected first frame, so the run has one more.
    let p = exp.join("b10.pcap");
    let b = fs::read(&p).expect("b10.pcap");
    let first = records(&b)[0].clone();
    let mut cut = b[..first.start].to_vec();
    cut.extend_from_slice(&b[first.end..]);
    fs::write(&p, cut).expect("write");

    // summary.json: a counter that differs.
    let p = exp.join("summary.json");
    let mut j: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&p).expect("summary")).expect("json");
    assert_eq!(j["ports"][2]["name"], "c20");
    let tx = j["ports"][2]["tx_packets"].as_u64().expect("tx_packets");
    j["ports"][2]["tx_packets"] = (tx + 2).into();
    fs::write(&p, serde_json::to_string_pretty(&j).expect("json")).expect("write");

    let suite = root.join("suite");
    let junit = root.join("junit.xml");
    let o = xsw(&[
        "test",
        &suite.to_string_lossy(),
        "--junit",
        &junit.to_string_lossy(),
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let want = format!(
        "FAIL {}\n       b10: 1 frame more than expected, first (frame 1): 0.000000 02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff ARP request 198.18.0.1 > 198.18.0.2 len 60\n       trunk frame 2: vlan_vid 20, expected 30\n       ports[c20].tx_packets: {tx}, expected {}\n\n0 passed, 1 failed\n",
        sc.display(),
        tx + 2
    );
    assert_eq!(without_times(&out) + "\n", want);
    let x = fs::read_to_string(&junit).expect("junit written");
    assert!(x.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"xsw test\" tests=\"1\" failures=\"1\""), "{x}");
    assert!(
        x.contains(&format!("<testcase name=\"{}\"", sc.display())),
        "{x}"
    );
    assert!(
        x.contains("<failure message=\"b10: 1 frame more than expected, first (frame 1): 0.000000 02:00:00:00:00:01 &gt; ff:ff:ff:ff:ff:ff ARP"),
        "{x}"
    );
    assert!(
        x.contains("\ntrunk frame 2: vlan_vid 20, expected 30\n"),
        "{x}"
    );

    // --update rewrites expected/, then the scenario passes.
    let o = xsw(&["test", &suite.to_string_lossy(), "--update"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.starts_with(&format!("updated {} (", sc.display())),
        "{out}"
    );
    assert!(out.ends_with("\n0 passed, 0 failed, 1 updated\n"), "{out}");
    let o = xsw(&["test", &suite.to_string_lossy()]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).ends_with("\n1 passed, 0 failed\n"));
    // Found from `.`, a scenario reads without `./`.
    let o = Command::new(env!("CARGO_BIN_EXE_xsw"))
        .args(["test", "."])
        .current_dir(&suite)
        .output()
        .expect("run xsw");
    assert!(
        stdout(&o).starts_with("ok   vlan-access-trunk ("),
        "{}",
        stdout(&o)
    );
    let back = fs::read(repo().join("pcaps/vlan-access-trunk/expected/trunk.pcap")).expect("orig");
    assert_eq!(fs::read(exp.join("trunk.pcap")).expect("updated"), back);
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn unordered_ports_accept_another_order() {
    let root = tmp("unordered");
    let sc = root.join("learning");
    copy_dir(&repo().join("pcaps/learning"), &sc);
    // Swap the first two frames p3 sends.
    let p = sc.join("expected/p3.pcap");
    let b = fs::read(&p).expect("p3.pcap");
    let r = records(&b);
    assert!(r.len() >= 2);
    assert_ne!(b[r[0].clone()], b[r[1].clone()]);
    let mut s = b[..r[0].start].to_vec();
    s.extend_from_slice(&b[r[1].clone()]);
    s.extend_from_slice(&b[r[0].clone()]);
    s.extend_from_slice(&b[r[1].end..]);
    fs::write(&p, s).expect("write");
    let dir = sc.to_string_lossy().to_string();
    let o = xsw(&["test", &dir]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("\n       p3 frame 1: "),
        "{}",
        stdout(&o)
    );
    let toml = sc.join("scenario.toml");
    let mut t = fs::read_to_string(&toml).expect("toml");
    t.push_str("\n[check]\nunordered = [\"p3\"]\n");
    fs::write(&toml, t).expect("write");
    let o = xsw(&["test", &dir]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn no_scenario_is_a_usage_error_that_says_where_it_looked() {
    let root = tmp("empty");
    let o = xsw(&["test", &root.to_string_lossy()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        err,
        format!(
            "xsw test: no scenario (a directory holding scenario.toml) under {}\n",
            root.display()
        )
    );
    let o = xsw(&["test", &root.join("nope").to_string_lossy()]);
    assert_eq!(o.status.code(), Some(2));
    let o = xsw(&["test", "-j", "0", &root.to_string_lossy()]);
    assert_eq!(o.status.code(), Some(2));
    let _ = fs::remove_dir_all(&root);
}
