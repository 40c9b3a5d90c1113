//! The control plane through the real thing: xswd with its Unix socket, the
//! `xsw` tool, veths in network namespaces, traffic. Needs root (CI has it).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use xsw_control::client::{Client, ClientError};
use xsw_control::proto::{Call, Code, FlowAdd, FlowDump, FlowReplace, Hello, Show};

struct Pair {
    s: Netns,
    a: Netns,
    b: Netns,
}

fn pair() -> Pair {
    let s = Netns::new("s");
    let a = Netns::new("a");
    let b = Netns::new("b");
    veth(&a, "eth0", &s, "pa", 1500, 1);
    veth(&b, "eth0", &s, "pb", 1500, 1);
    a.ip(&["addr", "add", "198.18.2.1/24", "dev", "eth0"]);
    b.ip(&["addr", "add", "198.18.2.2/24", "dev", "eth0"]);
    // These tests speak IPv4 only; without IPv6 the hosts send nothing of
    // their own (neighbour discovery, MLD) to disturb the counters.
    for ns in [&a, &b] {
        let (ok, out) = ns.exec(&[
            "sh",
            "-c",
            "echo 1 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6",
        ]);
        assert!(ok, "disabling IPv6: {out}");
    }
    Pair { s, a, b }
}

/// An xswd with no configuration: everything is done through `xsw`.
fn empty_daemon(t: &Pair, extra: &[&str]) -> Xswd {
    let dir = Xswd::fresh_dir(&t.s);
    Xswd::launch(&t.s, dir, extra)
}

/// The bridge br0 with ports a (pa) and b (pb), made through `xsw`.
fn configure(x: &Xswd) {
    x.xsw_ok(&["bridge", "add", "br0"]);
    x.xsw_ok(&["port", "add", "br0", "a", "--interface", "pa"]);
    x.xsw_ok(&[
        "port",
        "add",
        "br0",
        "b",
        "--interface",
        "pb",
        "--ofport",
        "7",
    ]);
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// The rules of a bridge without their counters: "priority=...actions=...".
fn rules(x: &Xswd) -> Vec<String> {
    let v = json(&x.xsw_ok(&["flow", "dump", "br0", "--json"]));
    v["flows"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|f| {
            let d = f["dump"].as_str().unwrap_or("");
            // Everything after the last counter field.
            d.rsplit_once("idle_age=")
                .and_then(|(_, rest)| rest.split_once(", "))
                .map_or(d.to_string(), |(_, r)| r.to_string())
        })
        .collect()
}

/// What `xsw show --json` says about ports, without live counters.
fn ports(x: &Xswd) -> Vec<Value> {
    let v = json(&x.xsw_ok(&["show", "--json"]));
    v["bridges"][0]["ports"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut p| {
            if let Some(o) = p.as_object_mut() {
                o.remove("device");
            }
            p
        })
        .collect()
}

const UDP_OPEN: &str = "198.18.2.2:5000";
const UDP_BLOCKED: &str = "198.18.2.2:9999";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

fn check_traffic(t: &Pair, what: &str) {
    let (ok, out) = t.a.ping("198.18.2.2", 3, &[]);
    assert!(ok, "{what}: ping: {out}");
    assert_eq!(
        udp_count(&t.a, &t.b, addr(UDP_OPEN), 50),
        50,
        "{what}: UDP to port 5000 passes"
    );
    assert_eq!(
        udp_count(&t.a, &t.b, addr(UDP_BLOCKED), 50),
        0,
        "{what}: UDP to port 9999 is dropped by the rule"
    );
}

#[test]
fn configured_with_xsw_it_comes_back_as_it_was_after_a_restart_or_a_crash() {
    let _g = serial();
    let t = pair();
    let mut x = empty_daemon(&t, &[]);
    configure(&x);
    x.xsw_ok(&[
        "flow",
        "add",
        "br0",
        "priority=100,udp,tp_dst=9999,actions=drop",
    ]);
    x.xsw_ok(&[
        "flow",
        "add",
        "br0",
        "table=0,priority=50,cookie=0x42,ip,actions=resubmit(,3)",
    ]);
    x.xsw_ok(&["flow", "add", "br0", "table=3,actions=normal"]);
    check_traffic(&t, "configured");
    let (p0, r0) = (ports(&x), rules(&x));
    assert_eq!(p0.len(), 2);
    assert_eq!(p0[1]["ofport"], 7);
    assert_eq!(r0.len(), 4, "{r0:?}");
    assert!(
        json(&x.xsw_ok(&["port", "stats", "br0", "--json"]))["ports"][0]["stats"]["rx_packets"]
            .as_u64()
            .unwrap_or(0)
            > 0
    );

    x.restart();
    assert_eq!(ports(&x), p0, "ports after a restart");
    assert_eq!(rules(&x), r0, "rules after a restart");
    check_traffic(&t, "after a restart");

    // A crash at any moment leaves a state that loads: kill -9 while
    // another client keeps changing rules (and the state is rewritten).
    let sock = x.socket();
    let writer = std::thread::spawn(move || {
        let mut done = 0u32;
        let Ok(mut c) = Client::connect(&sock) else {
            return done;
        };
        for i in 0..10_000u32 {
            let r = c.call(FlowAdd {
                bridge: "br0".into(),
                flows: vec![format!(
                    "cookie=0x300,priority=300,udp,tp_dst={},actions=drop",
                    20_000 + i
                )],
            });
            if r.is_err() {
                break;
            }
            done += 1;
        }
        done
    });
    std::thread::sleep(Duration::from_millis(700));
    x.crash();
    let acked = writer.join().expect("writer");
    assert!(acked > 0, "rules were being added when it died");
    x.restart();
    let after = rules(&x);
    let extra = after.iter().filter(|r| r.contains("priority=300")).count() as u32;
    assert!(
        extra >= acked && extra <= acked + 1,
        "every acknowledged rule survived ({acked} acknowledged, {extra} restored)"
    );
    x.xsw_ok(&["flow", "del", "br0", "cookie=0x300/-1"]);
    assert_eq!(ports(&x), p0, "ports after kill -9");
    assert_eq!(rules(&x), r0, "rules after kill -9");
    check_traffic(&t, "after kill -9");

    // A replace keeps the counters of the rules that stay; a rule that
    // times out is gone from the saved state too.
    let packets = |x: &Xswd, needle: &str| {
        json(&x.xsw_ok(&["flow", "dump", "br0", "--json"]))["flows"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .find(|f| f["dump"].as_str().unwrap_or("").contains(needle))
            .map(|f| f["n_packets"].as_u64().unwrap_or(0))
    };
    let before = packets(&x, "tp_dst=9999").unwrap_or(0);
    assert!(before >= 50, "the drop rule counted: {before}");
    let file = x.dir.join("next.flows");
    std::fs::write(
        &file,
        "priority=100,udp,tp_dst=9999,actions=drop
priority=50,cookie=0x42,ip,actions=resubmit(,3)
table=3,actions=normal
priority=0,actions=NORMAL
priority=90,udp,tp_dst=7777,hard_timeout=1,actions=drop
",
    )
    .expect("write");
    x.xsw_ok(&["flow", "replace", "br0", file.to_str().unwrap_or("")]);
    assert_eq!(packets(&x, "tp_dst=9999"), Some(before), "counters carried");
    let state = x.dir.join("state").join("state.json");
    assert!(std::fs::read_to_string(&state)
        .unwrap_or_default()
        .contains("tp_dst=7777"));
    let deadline = Instant::now() + Duration::from_secs(8);
    while std::fs::read_to_string(&state)
        .unwrap_or_default()
        .contains("tp_dst=7777")
    {
        assert!(
            Instant::now() < deadline,
            "the expired rule stays in the state"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(packets(&x, "tp_dst=7777"), None, "expired");
    assert_eq!(rules(&x), r0, "back to the same rules");

    // Deleting a port releases its interface.
    x.xsw_ok(&["port", "del", "br0", "b"]);
    let link = t.s.ip(&["link", "show", "pb"]);
    assert!(!link.contains("xdp"), "pb released: {link}");
    assert!(!t.a.ping("198.18.2.2", 1, &[]).0, "no path without port b");
    x.xsw_ok(&["port", "add", "br0", "b", "--interface", "pb"]);
    assert!(t.a.ping("198.18.2.2", 2, &[]).0, "port b back");
    x.xsw_ok(&["bridge", "del", "br0"]);
    let v = json(&x.xsw_ok(&["show", "--json"]));
    assert_eq!(v["bridges"].as_array().map(Vec::len), Some(0));
    for dev in ["pa", "pb"] {
        let link = t.s.ip(&["link", "show", dev]);
        assert!(
            !link.contains("xdp"),
            "{dev} released with its bridge: {link}"
        );
    }
}

#[test]
fn two_dozen_clients_at_once() {
    let _g = serial();
    let t = pair();
    let x = empty_daemon(&t, &[]);
    configure(&x);
    let sock = x.socket();
    // 24 xsw processes adding a rule each, all at once...
    let children: Vec<_> = (0..24)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_xsw"))
                .arg("--socket")
                .arg(&sock)
                .args([
                    "flow",
                    "add",
                    "br0",
                    &format!("priority=200,udp,tp_dst={},actions=drop", 1000 + i),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn xsw")
        })
        .collect();
    // ...while 24 connections read.
    let readers: Vec<_> = (0..24)
        .map(|_| {
            let sock = sock.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(&sock).expect("connect");
                for _ in 0..5 {
                    c.call(Show { bridge: None }).expect("show");
                    c.call(FlowDump {
                        bridge: "br0".into(),
                    })
                    .expect("dump");
                }
            })
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().expect("xsw");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for r in readers {
        r.join().expect("reader");
    }
    let r = rules(&x);
    for i in 0..24 {
        let want = format!("tp_dst={}", 1000 + i);
        assert!(r.iter().any(|l| l.contains(&want)), "{want} missing: {r:?}");
    }
    assert_eq!(r.len(), 25);
    assert!(t.a.ping("198.18.2.2", 2, &[]).0);
}

fn code(r: &xsw_control::proto::Response) -> Option<Code> {
    r.error.as_ref().map(|e| e.code)
}

#[test]
fn bad_requests_and_bad_flows_change_nothing() {
    let _g = serial();
    let t = pair();
    let x = empty_daemon(&t, &[]);
    configure(&x);
    x.xsw_ok(&["flow", "add", "br0", "priority=10,arp,actions=normal"]);
    let state = x.dir.join("state").join("state.json");
    let before = (rules(&x), ports(&x), std::fs::read(&state).expect("state"));
    let mut c = Client::connect(&x.socket()).expect("connect");
    let cases: Vec<(&str, Code)> = vec![
        ("this is not json", Code::BadRequest),
        (r#"{"version":2,"cmd":"show"}"#, Code::Version),
        (r#"{"cmd":"show"}"#, Code::BadRequest),
        (r#"{"version":1,"cmd":"nope"}"#, Code::BadRequest),
        (
            r#"{"version":1,"cmd":"fdb.show","args":{"bridge":"br0","extra":1}}"#,
            Code::BadRequest,
        ),
        (
            r#"{"version":1,"cmd":"flow.add","args":{"bridge":"br0"}}"#,
            Code::BadRequest,
        ),
        (
            r#"{"version":1,"cmd":"flow.add","args":{"bridge":"br0","flows":["ip,actions=drop","tcp,tp_dst=80,actions=output:7","udp,tp_dsr=1,actions=drop"]}}"#,
            Code::BadFlow,
        ),
        (
            r#"{"version":1,"cmd":"flow.replace","args":{"bridge":"br0","flows":["ip,actions=drop","nw_dst=1.2.3.4,actions=drop"]}}"#,
            Code::BadFlow,
        ),
        (
            r#"{"version":1,"cmd":"flow.add","args":{"bridge":"nosuch","flows":["actions=drop"]}}"#,
            Code::NotFound,
        ),
        (
            r#"{"version":1,"cmd":"flow.del","args":{"bridge":"br0","match":"tcp,tp_dst=http"}}"#,
            Code::BadFlow,
        ),
        (
            r#"{"version":1,"cmd":"port.add","args":{"bridge":"br0","port":{"name":"c","ofport":0,"interface":"pc","tag":5000}}}"#,
            Code::Invalid,
        ),
        (
            r#"{"version":1,"cmd":"port.add","args":{"bridge":"br0","port":{"name":"c","ofport":0,"interface":"nosuch0"}}}"#,
            Code::Device,
        ),
        (
            r#"{"version":1,"cmd":"port.add","args":{"bridge":"br0","port":{"name":"a","ofport":0,"interface":"pc"}}}"#,
            Code::Exists,
        ),
        (
            r#"{"version":1,"cmd":"port.add","args":{"bridge":"br0","port":{"name":"c","ofport":7,"interface":"pc"}}}"#,
            Code::Invalid,
        ),
        (
            r#"{"version":1,"cmd":"port.add","args":{"bridge":"br0","port":{"name":"c","ofport":0,"interface":"pa"}}}"#,
            Code::Exists,
        ),
        (
            r#"{"version":1,"cmd":"bridge.add","args":{"name":"bad name"}}"#,
            Code::Invalid,
        ),
        (
            r#"{"version":1,"cmd":"bridge.add","args":{"name":"br0"}}"#,
            Code::Exists,
        ),
        (
            r#"{"version":1,"cmd":"bridge.add","args":{"name":"br1","mac_aging":5}}"#,
            Code::Invalid,
        ),
        (
            r#"{"version":1,"cmd":"trace","args":{"bridge":"br0","in_port":"a","frame":"zz"}}"#,
            Code::Invalid,
        ),
    ];
    for (line, want) in &cases {
        let r = c.raw(line.as_bytes()).expect("an answer");
        assert!(!r.ok, "{line} was accepted");
        assert_eq!(code(&r), Some(*want), "{line}: {:?}", r.error);
        let e = r
            .error
            .as_ref()
            .map(|e| e.message.clone())
            .unwrap_or_default();
        assert!(
            !e.is_empty() && !e.contains('\n'),
            "one-line message: {e:?}"
        );
    }
    // The bad rule is located: which one and the column.
    let r = c.raw(cases[6].0.as_bytes()).expect("answer");
    let e = r.error.expect("an error");
    assert_eq!((e.rule, e.column), (Some(3), Some(5)), "{e:?}");
    let place = e.place.unwrap_or_default();
    assert_eq!(place, "flow 3 of 3, column 5", "{place}");
    // The connection still works after all that.
    c.call(Hello).expect("hello");
    assert_eq!(
        (rules(&x), ports(&x), std::fs::read(&state).expect("state")),
        before,
        "nothing changed"
    );

    // The CLI: non-zero exit and one line that says what and where.
    let (ok, _, err) = x.xsw(&["flow", "add", "br0", "nw_dst=198.18.2.2,actions=drop"]);
    assert!(!ok);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("column") && err.contains("ip"), "{err}");
    let file = x.dir.join("bad.flows");
    std::fs::write(&file, "# two good, one bad\nip,actions=drop\n\narp,actions=normal\ntcp,tp_dst=99999,actions=drop\n").expect("write");
    let (ok, _, err) = x.xsw(&["flow", "replace", "br0", file.to_str().unwrap_or("")]);
    assert!(!ok);
    assert!(err.contains("bad.flows:5:"), "file and line: {err}");
    let (ok, _, err) = x.xsw(&["show", "nosuch"]);
    assert!(!ok && err.contains("no bridge named nosuch"), "{err}");
    assert_eq!(rules(&x), before.0, "nothing changed");
}

#[test]
fn the_socket_refuses_users_without_root_or_the_group() {
    let _g = serial();
    let t = pair();
    let x = empty_daemon(&t, &[]);
    let sock = x.socket();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_xsw"))
        .arg("--socket")
        .arg(&sock)
        .arg("show")
        .output()
        .expect("setpriv (util-linux)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "nobody was let in");
    assert!(err.contains("permission denied"), "{err}");
    assert!(err.contains("group xsw"), "says what to do: {err}");
    // The socket is 0660 and root's.
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let m = std::fs::metadata(&sock).expect("socket");
    assert_eq!(m.permissions().mode() & 0o777, 0o660);
    assert_eq!(m.uid(), 0);
    x.xsw_ok(&["show"]);
}

fn rule_file(path: &Path, port: u16) {
    let mut s = String::from("# 10,000 rules that never match the test traffic, then NORMAL\n");
    for i in 0..10_000u32 {
        s.push_str(&format!(
            "priority=100,udp,nw_dst=10.{}.{}.1,tp_dst={port},actions=drop\n",
            i / 250,
            i % 250
        ));
    }
    s.push_str("priority=0,actions=NORMAL\n");
    std::fs::write(path, s).expect("write rules");
}

#[test]
fn replacing_ten_thousand_rules_again_and_again_loses_no_frame() {
    let _g = serial();
    let t = pair();
    let x = empty_daemon(&t, &[]);
    configure(&x);
    let (fa, fb) = (x.dir.join("a.flows"), x.dir.join("b.flows"));
    rule_file(&fa, 1111);
    rule_file(&fb, 2222);
    assert!(t.a.ping("198.18.2.2", 2, &[]).0);
    // A steady UDP flow whose verdict (NORMAL) never changes.
    const N: u32 = 20_000;
    let dst = addr(UDP_OPEN);
    let rx = t.b.spawn(move || {
        let s = std::net::UdpSocket::bind(dst).expect("bind");
        s.set_read_timeout(Some(Duration::from_millis(2000)))
            .expect("timeout");
        let mut seen = vec![false; N as usize];
        let mut buf = [0u8; 64];
        while let Ok(n) = s.recv(&mut buf) {
            if n >= 4 {
                let i = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                if i < seen.len() {
                    seen[i] = true;
                }
            }
        }
        seen.iter().filter(|s| **s).count()
    });
    std::thread::sleep(Duration::from_millis(200));
    let tx = t.a.spawn(move || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind");
        let start = Instant::now();
        for i in 0..N {
            // 5,000 frames a second, paced against the clock.
            let due = start + Duration::from_micros(200 * i as u64);
            while Instant::now() < due {
                std::thread::sleep(Duration::from_micros(50));
            }
            let _ = s.send_to(&i.to_be_bytes(), dst);
        }
        start.elapsed()
    });
    let mut swaps = 0;
    let mut effect = Vec::new();
    let t0 = Instant::now();
    while swaps < 10 && t0.elapsed() < Duration::from_secs(3) {
        let f = if swaps % 2 == 0 { &fa } else { &fb };
        let mut c = Client::connect(&x.socket()).expect("connect");
        let text = std::fs::read_to_string(f).expect("read");
        let flows: Vec<String> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_string)
            .collect();
        let v = c
            .call_value(
                FlowReplace {
                    bridge: "br0".into(),
                    flows,
                }
                .command(),
            )
            .expect("replace");
        assert_eq!(v["rules"], 10_001);
        effect.push(v["swap_us"].as_u64().unwrap_or(0));
        swaps += 1;
    }
    let sent_for = tx.join().expect("sender");
    let got = rx.join().expect("receiver");
    assert!(swaps >= 4, "only {swaps} swaps while traffic ran");
    assert_eq!(
        got as u32, N,
        "{} of {N} frames lost across {swaps} swaps of 10,001 rules (sent in {sent_for:?}; swap took {effect:?} us in the polling thread)",
        N - got as u32
    );
    let r = rules(&x);
    assert_eq!(r.len(), 10_001);
}

#[test]
fn live_trace_changes_nothing_and_metrics_are_served() {
    let _g = serial();
    let t = pair();
    let x = empty_daemon(&t, &["--metrics", "127.0.0.1:9477"]);
    configure(&x);
    assert!(t.a.ping("198.18.2.2", 2, &[]).0);
    let snap = |x: &Xswd| {
        (
            x.xsw_ok(&["port", "stats", "br0", "--json"]),
            json(&x.xsw_ok(&["fdb", "show", "br0", "--json"]))["entries"]
                .as_array()
                .map(|e| e.len()),
            rules(x),
            json(&x.xsw_ok(&["flow", "dump", "br0", "--json"]))["flows"][0]["n_packets"].clone(),
        )
    };
    let before = snap(&x);
    // A broadcast ARP from a MAC the switch has never seen.
    let frame = "ffffffffffff 02aabbccddee 0806 0001 0800 0604 0001 02aabbccddee c6120263 000000000000 c6120202";
    let out = x.xsw_ok(&["trace", "br0", "--in-port", "a", "--frame", frame]);
    assert!(out.contains("dry run"), "{out}");
    assert!(out.contains("flooding"), "{out}");
    assert!(out.contains("result: sent to b"), "{out}");
    let j = json(&x.xsw_ok(&["trace", "br0", "--in-port", "a", "--frame", frame, "--json"]));
    assert_eq!(j["outputs"], serde_json::json!(["b"]));
    assert_eq!(snap(&x), before, "a trace leaves counters and MACs alone");

    // Metrics, over the socket and over HTTP.
    let (ok, out) = t.s.exec(&[
        "/usr/bin/python3",
        "-c",
        "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:9477/metrics').read().decode())",
    ]);
    assert!(ok, "{out}");
    for want in [
        "xsw_port_rx_packets_total{bridge=\"br0\",port=\"a\"}",
        "xsw_port_drops_total{bridge=\"br0\",port=\"a\",reason=\"table_miss\"} 0",
        "xsw_port_xdp_verdicts_total{bridge=\"br0\",port=\"a\",verdict=\"redirect\"}",
        "xsw_table_lookups_total{bridge=\"br0\",table=\"0\"}",
        "xsw_bridge_flows{bridge=\"br0\"} 1",
        "xsw_bridge_mac_entries{bridge=\"br0\"} 2",
        "xsw_poll_busy_ratio",
    ] {
        assert!(out.contains(want), "{want} missing from:\n{out}");
    }
    let rx: u64 = out
        .lines()
        .find(|l| l.starts_with("xsw_port_rx_packets_total{bridge=\"br0\",port=\"a\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(rx >= 2, "rx counter moved: {rx}");
    // Completions for scripts and shells.
    let bash = x.xsw_ok(&["completions", "bash"]);
    assert!(bash.contains("xsw") && bash.contains("flow"), "completions");
    match Client::connect(Path::new("/nonexistent/xswd.sock")) {
        Err(ClientError::Connect(m)) => assert!(m.contains("not running"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn qos_and_meters_are_set_live_and_saved() {
    let _g = serial();
    let t = pair();
    let mut x = empty_daemon(&t, &[]);
    configure(&x);
    x.xsw_ok(&[
        "port",
        "set",
        "br0",
        "b",
        "qos",
        "rate=100M",
        "scheduler=ets",
        "strict_queues=2",
        "weights=1,1,2,2,4,4,8,8",
        "queue6.depth=64",
        "queue6.rate=40M",
    ]);
    x.xsw_ok(&[
        "port",
        "set",
        "br0",
        "a",
        "qos",
        "dscp_map=46:5,48:6",
        "police_rate=500M",
    ]);
    // Bad settings are refused before anything changes.
    for bad in [
        vec!["scheduler=wfq"],
        vec!["queue9.rate=1M"],
        vec!["weights=1,2"],
        vec!["rate=fast"],
        vec!["line_rate=1G"],
    ] {
        let mut args = vec!["port", "set", "br0", "b", "qos"];
        args.extend(bad.iter());
        let (ok, _, err) = x.xsw(&args);
        assert!(!ok, "{bad:?} was accepted");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    x.xsw_ok(&["meter", "add", "br0", "1", "rate=10M", "burst=200k"]);
    x.xsw_ok(&[
        "flow",
        "add",
        "br0",
        "priority=5,udp,actions=meter:1,normal",
    ]);
    let (ok, _, err) = x.xsw(&["flow", "add", "br0", "udp,tp_dst=9,actions=meter:2,normal"]);
    assert!(!ok && err.contains("no such meter"), "{err}");
    let (ok, _, err) = x.xsw(&["meter", "del", "br0", "1"]);
    assert!(!ok && err.contains("used by 1 rule"), "{err}");
    // Traffic passes; UDP goes through the meter and the queues.
    assert!(t.a.ping("198.18.2.2", 2, &[]).0);
    assert_eq!(udp_count(&t.a, &t.b, addr(UDP_OPEN), 50), 50);
    let meters = json(&x.xsw_ok(&["meter", "show", "br0", "--json"]));
    assert_eq!(meters["meters"][0]["passed"], 50, "{meters}");
    let stats = json(&x.xsw_ok(&["port", "stats", "br0", "--json"]));
    let b = &stats["ports"][1];
    assert!(
        b["queues"][1]["tx_packets"].as_u64().unwrap_or(0) >= 50,
        "{b}"
    );
    let text = x.xsw_ok(&["show"]);
    assert!(text.contains("100M ets/2"), "{text}");
    let before = json(&x.xsw_ok(&["show", "--json"]))["bridges"][0]["ports"].clone();
    x.restart();
    let after = json(&x.xsw_ok(&["show", "--json"]))["bridges"][0]["ports"].clone();
    assert_eq!(after[1]["qos"], before[1]["qos"], "QoS survives a restart");
    assert_eq!(after[0]["qos"], before[0]["qos"]);
    let meters = json(&x.xsw_ok(&["meter", "show", "br0", "--json"]));
    assert_eq!(meters["meters"][0]["rate"], 10_000_000u64);
    assert_eq!(udp_count(&t.a, &t.b, addr(UDP_OPEN), 20), 20);
    x.xsw_ok(&["port", "set", "br0", "b", "qos", "none"]);
    let after = json(&x.xsw_ok(&["show", "--json"]))["bridges"][0]["ports"].clone();
    assert!(after[1]["qos"].is_null());
    assert_eq!(udp_count(&t.a, &t.b, addr(UDP_OPEN), 20), 20);
}
