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
        assert_eq!(fa.len(), fb.len(), "{name}: the same files");
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
                    ", expected at least 20000000 and at most 10000000 (95% of the 10 Mbit/s shaper, as TCP payload, and no more than the shaper lets through)"
                ),
            "wording: {line}"
        );
    }
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn bad_host_tables_are_refused_with_their_place() {
    let cases: [(&str, &str); 7] = [
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
            "ipv4 = \"224.0.0.1/24\"",
            "host h1: `224.0.0.1` is not a unicast address (multicast, broadcast and unspecified addresses cannot be a host's)",
        ),
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

fn csum(b: &[u8]) -> u16 {
    let mut s: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

#[test]
fn captures_and_hosts_mix_in_one_scenario() {
    use xsw_datapath::clock::Timestamp;
    use xsw_datapath::pcap::{read_all, PcapWriter};
    let dir = tmp("mix");
    fs::create_dir_all(dir.join("in")).expect("mkdir");
    fs::write(
        dir.join("scenario.toml"),
        "[[port]]\nname = \"p1\"\nofport = 1\n\n[[port]]\nname = \"p2\"\nofport = 2\n\n\
         [[host]]\nname = \"h2\"\nport = \"p2\"\nmac = \"02:00:00:00:00:02\"\nipv4 = \"198.18.0.2/24\"\n",
    )
    .expect("write");
    // A capture on p1: 198.18.0.9 asks for 198.18.0.2 with ARP, then pings it.
    let me = [2u8, 0, 0, 0, 0, 9];
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&me);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&me);
    arp.extend_from_slice(&[198, 18, 0, 9, 0, 0, 0, 0, 0, 0, 198, 18, 0, 2]);
    arp.resize(60, 0);
    let mut icmp = vec![8u8, 0, 0, 0, 0x12, 0x34, 0, 1];
    icmp.extend_from_slice(&[0xab; 32]);
    let c = csum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut ip = vec![
        0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 1, 0, 0, 198, 18, 0, 9, 198, 18, 0, 2,
    ];
    let total = (20 + icmp.len()) as u16;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    let c = csum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut ping = vec![2u8, 0, 0, 0, 0, 2];
    ping.extend_from_slice(&me);
    ping.extend_from_slice(&[0x08, 0x00]);
    ping.extend_from_slice(&ip);
    ping.extend_from_slice(&icmp);
    let t0 = Timestamp(1_700_000_000_000_000_000);
    {
        let f = fs::File::create(dir.join("in/p1.pcap")).expect("create");
        let mut w = PcapWriter::new(f, false).expect("pcap");
        w.write(t0, &arp).expect("write");
        w.write(Timestamp(t0.0 + 10_000_000), &ping).expect("write");
        w.flush().expect("flush");
    }
    let sc = Scenario::load(&dir).expect("loads");
    let out = dir.join("out");
    let s = replay(&sc, &out).expect("runs");
    assert_eq!(
        s.frames_in, 4,
        "two captured frames and the host's two answers"
    );
    let back = read_all(&fs::read(out.join("p1.pcap")).expect("p1")).expect("pcap");
    assert_eq!(back.len(), 2, "the ARP reply and the echo reply reach p1");
    assert_eq!(&back[0].1[12..14], &[0x08, 0x06]);
    assert_eq!(&back[0].1[20..22], &[0, 2], "an ARP reply");
    assert!(
        back[0].0 > t0 && back[0].0 .0 < t0.0 + 1_000,
        "answered at once (a 10 Gbit/s NIC's serialization), on the capture's clock: {}",
        back[0].0
    );
    assert_eq!(back[1].1[34], 0, "an ICMP echo reply");
    assert_eq!(
        &back[1].1[38..42],
        &[0x12, 0x34, 0, 1],
        "to its ident and sequence 1"
    );
    assert!(back[1].0 > Timestamp(t0.0 + 10_000_000));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn hosts_survive_the_corpus_flooded_at_them() {
    // pcaps/corpus-sample: real captures from tcpdump's test suite, many
    // malformed on purpose, switched by NORMAL and so flooded to the hosts.
    let dir = tmp("corpus");
    copy_dir(&repo().join("pcaps/corpus-sample"), &dir);
    let _ = fs::remove_dir_all(dir.join("expected"));
    let toml = dir.join("scenario.toml");
    let mut text = fs::read_to_string(&toml).expect("read");
    text.push_str(
        "\n[[host]]\nname = \"a\"\nport = \"p4\"\nmac = \"02:00:00:00:00:0a\"\nipv4 = \"198.18.0.10/24\"\nipv6 = \"2001:db8::a/64\"\n\
         run = [{ do = \"ping\", to = \"b\", count = 20, interval = 0.05 }, { do = \"tcp\", connect = \"b:80\", bytes = 100000 }]\n\
         \n[[host]]\nname = \"b\"\nport = \"p1\"\nmac = \"02:00:00:00:00:0b\"\nipv4 = \"198.18.0.11/24\"\nipv6 = \"2001:db8::b/64\"\n\
         run = [{ do = \"tcp\", listen = 80 }, { do = \"udp\", listen = 53 }]\n",
    );
    fs::write(&toml, text).expect("write");
    let sc = Scenario::load(&dir).expect("loads");
    let a = replay(&sc, &dir.join("out-a")).expect("runs");
    let b = replay(&sc, &dir.join("out-b")).expect("runs again");
    assert_eq!(a, b, "the same summary twice");
    assert_eq!(files(&dir.join("out-a")), files(&dir.join("out-b")));
    let host = |n: &str| a.hosts.iter().find(|h| h.name == n).expect("host");
    assert!(host("a").rx_frames > 100, "the corpus reached host a");
    let json = serde_json::to_value(&a).expect("json");
    let get = |p: &str| xsw_datapath::sim::lookup(&json, p).cloned();
    assert_eq!(get("hosts.a.actions.0.received"), Some(20.into()));
    assert_eq!(get("hosts.a.actions.1.outcome"), Some("completed".into()));
    assert_eq!(
        get("hosts.b.actions.0.connections.0.bytes"),
        Some(100_000.into())
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn ipv6_only_hosts_ping_and_connect() {
    let dir = tmp("v6");
    fs::create_dir_all(&dir).expect("mkdir");
    fs::write(
        dir.join("scenario.toml"),
        r#"
[[port]]
name = "p1"
ofport = 1
[[port]]
name = "p2"
ofport = 2
[[host]]
name = "h1"
port = "p1"
mac = "02:00:00:00:00:01"
ipv6 = "2001:db8::1/64"
dscp = 46
run = [
  { do = "ping", to = "h2", count = 3, interval = 0.01 },
  { do = "tcp", at = 0.1, connect = "[2001:db8::2]:80", bytes = 200000 },
]
[[host]]
name = "h2"
port = "p2"
mac = "02:00:00:00:00:02"
ipv6 = "2001:db8::2/64"
run = [{ do = "tcp", listen = 80 }]
"#,
    )
    .expect("write");
    let sc = Scenario::load(&dir).expect("loads");
    let s = replay(&sc, &dir.join("out")).expect("runs");
    let json = serde_json::to_value(&s).expect("json");
    let get = |p: &str| xsw_datapath::sim::lookup(&json, p).cloned();
    assert_eq!(get("hosts.h1.actions.0.to"), Some("2001:db8::2".into()));
    assert_eq!(
        get("hosts.h1.actions.0.received"),
        Some(3.into()),
        "neighbour discovery, then ICMPv6 echo"
    );
    assert_eq!(get("hosts.h1.actions.1.outcome"), Some("completed".into()));
    assert_eq!(
        get("hosts.h2.actions.0.connections.0.bytes"),
        Some(200_000.into())
    );
    assert_eq!(
        get("hosts.h2.actions.0.connections.0.corrupt"),
        Some(0.into())
    );
    // h1 marks DSCP 46 in its IPv6 headers (traffic class 46 << 2).
    let sent =
        xsw_datapath::pcap::read_all(&fs::read(dir.join("out/host-h1.pcap")).expect("capture"))
            .expect("pcap");
    let v6: Vec<&Vec<u8>> = sent
        .iter()
        .map(|(_, f)| f)
        .filter(|f| f[12..14] == [0x86, 0xdd])
        .collect();
    assert!(!v6.is_empty());
    for f in v6 {
        let tc = ((f[14] & 0x0f) << 4) | (f[15] >> 4);
        assert_eq!(tc >> 2, 46, "DSCP in the traffic class");
    }
    let _ = fs::remove_dir_all(&dir);
}
