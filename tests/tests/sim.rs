//! Simulated hosts (`[[host]]`, smoltcp) through the real pipeline: a run
//! repeats bit for bit, failed `[[expect]]`s fail `xsw test`'s check with
//! a readable line, and bad host tables are refused with file:line:col.

use std::fs;
use std::path::{Path, PathBuf};

use xsw_datapath::check::{run_scenario, RunOptions, Status};
use xsw_datapath::replay::{replay, Scenario};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xsw-sim-test-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    d
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
        .expect("output dir")
        .map(|e| {
            let p = e.expect("entry").path();
            (
                p.file_name().expect("name").to_string_lossy().into_owned(),
                fs::read(&p).expect("read"),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_host_scenario_repeats_bit_for_bit() {
    for name in ["host-tcp-drr", "host-mac-move"] {
        let sc = Scenario::load(&repo().join("pcaps").join(name)).expect("loads");
        let (a, b) = (tmp(&format!("{name}-a")), tmp(&format!("{name}-b")));
        let sa = replay(&sc, &a).expect("first run");
        let sb = replay(&sc, &b).expect("second run");
        assert_eq!(sa, sb, "{name}: same summary");
        let (fa, fb) = (files(&a), files(&b));
        assert!(fa.len() >= 5, "{name}: port and host captures, summaries");
        assert!(
            fa.iter()
                .any(|(n, d)| n.starts_with("host-") && d.len() > 100_000),
            "{name}: the hosts really sent traffic"
        );
        for ((na, da), (nb, db)) in fa.iter().zip(&fb) {
            assert_eq!(na, nb);
            assert!(da == db, "{name}: {na} differs between two runs");
        }
        let _ = fs::remove_dir_all(&a);
        let _ = fs::remove_dir_all(&b);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for e in fs::read_dir(from).expect("read_dir") {
        let p = e.expect("entry").path();
        let t = to.join(p.file_name().expect("name"));
        if p.is_dir() {
            copy_dir(&p, &t);
        } else {
            fs::copy(&p, &t).expect("copy");
        }
    }
}

#[test]
fn a_failed_expectation_fails_the_check_even_after_update() {
    let dir = tmp("expect");
    copy_dir(&repo().join("pcaps/host-tcp-shaped"), &dir);
    let toml = dir.join("scenario.toml");
    let text = fs::read_to_string(&toml).expect("read");
    fs::write(
        &toml,
        text.replace("at_least = 9_500_000", "at_least = 20_000_000"),
    )
    .expect("write");
    for update in [false, true] {
        let r = run_scenario(&dir, &RunOptions { update, keep: None });
        assert_eq!(r.status, Status::Failed, "update={update}: {:?}", r.lines);
        let line = r
            .lines
            .iter()
            .find(|l| l.starts_with("expect "))
            .expect("an expect line");
        assert!(
            line.starts_with("expect hosts.h2.actions.0.connections.0.goodput_bps: 96")
                && line.ends_with(
                    ", expected at least 20000000 (95% of the 10 Mbit/s shaper, as TCP payload)"
                ),
            "wording: {line}"
        );
    }
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn bad_host_tables_are_refused_with_their_place() {
    let cases: [(&str, &str); 6] = [
        (
            "port = \"p9\"",
            "host h1: no port named `p9` (ports: p1, p2)",
        ),
        (
            "mac = \"01:00:00:00:00:01\"",
            "host h1: mac `01:00:00:00:00:01` is a multicast address",
        ),
        (
            "ipv4 = \"198.18.0.1\"",
            "host h1: `198.18.0.1`: an address with its prefix length, like 198.18.0.1/24",
        ),
        ("vlan = 5000", "host h1: vlan 5000: 1 to 4094"),
        (
            "run = [{ do = \"tcp\", connect = \"h2:5001\" }]",
            "host h1: a tcp connect sends `bytes = N` or for `seconds = T` (one of them)",
        ),
        (
            "run = [{ do = \"ping\", to = \"nobody\" }]",
            "host h1: `nobody` is neither an IP address nor a host of this scenario",
        ),
    ];
    for (i, (line, msg)) in cases.iter().enumerate() {
        let dir = tmp(&format!("bad{i}"));
        fs::create_dir_all(&dir).expect("mkdir");
        let mut host = vec![
            "name = \"h1\"",
            "port = \"p1\"",
            "mac = \"02:00:00:00:00:01\"",
            "ipv4 = \"198.18.0.1/24\"",
        ];
        let key = line.split(' ').next().expect("key");
        host.retain(|l| !l.starts_with(key));
        host.push(line);
        let text = format!(
            "[[port]]\nname = \"p1\"\nofport = 1\n\n[[port]]\nname = \"p2\"\nofport = 2\n\n[[host]]\n{}\n\n[[host]]\nname = \"h2\"\nport = \"p2\"\nmac = \"02:00:00:00:00:02\"\nipv4 = \"198.18.0.2/24\"\n",
            host.join("\n")
        );
        fs::write(dir.join("scenario.toml"), text).expect("write");
        let err = Scenario::load(&dir).expect_err("refused").to_string();
        // A host's problem points at its table, an action's at the action.
        let place = if key == "run" {
            "scenario.toml:14:8: "
        } else {
            "scenario.toml:9:1: "
        };
        assert!(err.contains(place) && err.ends_with(msg), "case {i}: {err}");
        let _ = fs::remove_dir_all(&dir);
    }
}
