//! `pcaps/REFERENCE.md`, the scenario reference: it names every key a
//! scenario's tables accept (so a new key cannot go undocumented), and its
//! worked examples give the numbers replay gives.

use std::path::Path;

use xsw_datapath::clock::Timestamp;
use xsw_datapath::pcap::{read_all, PcapWriter};
use xsw_datapath::replay::{replay, Scenario, Summary};
use xsw_datapath::spec::{QosSpec, QueueSpec};

fn reference() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pcaps/REFERENCE.md");
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The keys of a spec as serde writes them, all set.
fn keys(v: &serde_json::Value) -> Vec<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn the_reference_names_every_qos_key() {
    let text = reference();
    let q = QueueSpec {
        queue: 1,
        rate: Some("1M".into()),
        burst: Some("100k".into()),
        depth: Some(8),
    };
    let spec = QosSpec {
        rate: Some("1M".into()),
        burst: Some("100k".into()),
        scheduler: Some("ets".into()),
        strict_queues: Some(1),
        weights: Some(vec![1; 8]),
        pcp_map: Some(vec![0; 8]),
        default_pcp: Some(0),
        dscp_map: Some(Default::default()),
        remark_pcp: Some(true),
        police_rate: Some("1M".into()),
        police_burst: Some("100k".into()),
        queues: Some(vec![q.clone()]),
        line_rate: Some("1M".into()),
    };
    let qos = keys(&serde_json::to_value(&spec).expect("json"));
    let queue = keys(&serde_json::to_value(&q).expect("json"));
    assert_eq!(
        qos.len(),
        13,
        "a QosSpec key was added: document it, then count it here"
    );
    assert_eq!(queue.len(), 4);
    let mut missing = Vec::new();
    for k in &qos {
        if !text.contains(&format!("| `{k}` |")) {
            missing.push(k.clone());
        }
    }
    for k in &queue {
        if !text.contains(&format!("| `queues[].{k}` |")) {
            missing.push(format!("queues[].{k}"));
        }
    }
    assert!(
        missing.is_empty(),
        "pcaps/REFERENCE.md has no row for {missing:?}"
    );
}

#[test]
fn the_reference_names_every_table_and_port_key() {
    let text = reference();
    for k in [
        "description",
        "[bridge]",
        "[[port]]",
        "[[meter]]",
        "[check]",
        "[[host]]",
        "[[change]]",
        "mac_aging",
        "mac_table_size",
        "name",
        "ofport",
        "vlan_mode",
        "tag",
        "trunks",
        "mtu",
        "[port.qos]",
        "id",
        "ovs",
        "note",
        "unordered",
        "tolerance",
    ] {
        assert!(
            text.contains(&format!("| `{k}` |")),
            "pcaps/REFERENCE.md has no row for `{k}`"
        );
    }
    for heading in [
        "## Simulated hosts ([[host]])",
        "## Flow changes on the clock ([[change]])",
    ] {
        assert!(text.contains(heading), "no heading {heading}");
    }
}

/// An untagged (or tagged with `tags`, outer first) IPv4/UDP frame of
/// `len` bytes from MAC `src` to MAC `dst` with DSCP `dscp`.
fn ip_frame(dst: u8, src: u8, dscp: u8, len: usize, tags: &[(u16, u16)]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, dst, 2, 0, 0, 0, 0, src];
    for (tpid, tci) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&[0x08, 0x00]);
    let ip_len = (len - f.len()) as u16;
    f.extend_from_slice(&[0x45, dscp << 2]);
    f.extend_from_slice(&ip_len.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    f.extend_from_slice(&1000u16.to_be_bytes());
    f.extend_from_slice(&2000u16.to_be_bytes());
    f.extend_from_slice(&(ip_len - 20).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.resize(len, 0);
    f
}

fn arp_frame(dst: u8, src: u8) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, dst, 2, 0, 0, 0, 0, src, 0x08, 0x06];
    f.resize(60, 0);
    f
}

const T1: Timestamp = Timestamp::from_secs(1);

/// Micro-seconds after second 1.
fn at_us(us: u64) -> Timestamp {
    Timestamp(T1.0 + us * 1000)
}

/// Frames with their timestamps, as a capture holds them.
type Frames = Vec<(Timestamp, Vec<u8>)>;

/// What a replay gave: the summary and each port's frames.
struct Run {
    summary: Summary,
    sent: std::collections::BTreeMap<String, Frames>,
}

impl Run {
    fn sent(&self, port: &str) -> &[(Timestamp, Vec<u8>)] {
        self.sent.get(port).map_or(&[], |v| v.as_slice())
    }
}

/// Writes a scenario into a fresh directory, replays it, reads what came
/// out and removes the directory.
fn run(name: &str, toml: &str, flows: Option<&str>, inputs: &[(&str, Frames)]) -> Run {
    let dir = std::env::temp_dir().join(format!("xsw-reference-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("in")).expect("scenario dir");
    std::fs::write(dir.join("scenario.toml"), toml).expect("scenario.toml");
    if let Some(f) = flows {
        std::fs::write(dir.join("flows.txt"), f).expect("flows.txt");
    }
    for (port, frames) in inputs {
        let file = std::fs::File::create(dir.join(format!("in/{port}.pcap"))).expect("input");
        let mut w = PcapWriter::new(file, false).expect("pcap header");
        for (ts, f) in frames {
            w.write(*ts, f).expect("frame");
        }
        w.flush().expect("flush");
    }
    let sc = Scenario::load(&dir).expect("scenario loads");
    let out = dir.join("out");
    let summary = replay(&sc, &out).expect("replay");
    let sent = sc
        .ports
        .iter()
        .map(|p| {
            let bytes = std::fs::read(out.join(format!("{}.pcap", p.name))).expect("output");
            (p.name.clone(), read_all(&bytes).expect("readable"))
        })
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    Run { summary, sent }
}

fn port<'a>(s: &'a Summary, name: &str) -> &'a xsw_datapath::replay::PortSummary {
    s.ports.iter().find(|p| p.name == name).expect("port")
}

/// (queue, enqueued) for each queue that saw a frame.
fn queues(s: &Summary, name: &str) -> Vec<(u8, u64)> {
    port(s, name)
        .queues
        .iter()
        .flatten()
        .map(|q| (q.queue, q.enqueued))
        .collect()
}

const P1_P2: &str = "[[port]]\nname = \"p1\"\nofport = 1\n\n[[port]]\nname = \"p2\"\nofport = 2\n";

#[test]
fn a_link_with_a_shallow_queue() {
    let toml =
        format!("{P1_P2}[port.qos]\nline_rate = \"1M\"\nqueues = [{{ queue = 1, depth = 2 }}]\n");
    let input = vec![(T1, ip_frame(2, 1, 0, 1000, &[])); 4];
    let r = run(
        "shallow",
        &toml,
        Some("in_port=1,actions=output:2\n"),
        &[("p1", input)],
    );
    let times: Vec<Timestamp> = r.sent("p2").iter().map(|f| f.0).collect();
    assert_eq!(times, vec![at_us(0), at_us(8192), at_us(16_384)]);
    assert_eq!(port(&r.summary, "p2").drops.get("queue_full"), Some(&1));
    let q = port(&r.summary, "p2").queues.clone().unwrap_or_default();
    assert_eq!((q[0].queue, q[0].enqueued, q[0].dropped), (1, 3, 1));
}

#[test]
fn a_shaper_against_a_link() {
    let input = vec![(T1, ip_frame(2, 1, 0, 1500, &[])); 2000];
    let deep = "queues = [{ queue = 1, depth = 2000 }]\n";
    let r = run(
        "shaper",
        &format!("{P1_P2}[port.qos]\nrate = \"10M\"\n{deep}"),
        None,
        &[("p1", input.clone())],
    );
    let t: Vec<Timestamp> = r.sent("p2").iter().map(|f| f.0).collect();
    assert_eq!(t.len(), 2000);
    assert!(
        t[..12].iter().all(|x| *x == T1),
        "the burst: 12 frames at once"
    );
    assert_eq!(t[12], at_us(854));
    assert_eq!(t[13], at_us(2054));
    assert_eq!(t[1999], at_us(2_385_254));
    let r = run(
        "link",
        &format!("{P1_P2}[port.qos]\nline_rate = \"10M\"\n{deep}"),
        None,
        &[("p1", input)],
    );
    let t: Vec<Timestamp> = r.sent("p2").iter().map(|f| f.0).collect();
    assert_eq!((t[0], t[1]), (T1, at_us(1219)));
    assert_eq!(t[1999], at_us(2_437_180));
}

#[test]
fn a_meter_after_an_output() {
    let toml = format!(
        "{P1_P2}\n[[port]]\nname = \"p3\"\nofport = 3\n\n[[port]]\nname = \"p4\"\nofport = 4\n\n\
         [[meter]]\nid = 1\nrate = \"1k\"\nburst = \"73728\"\n\n[[meter]]\nid = 2\nrate = \"1k\"\nburst = \"73728\"\n"
    );
    let flows = "in_port=1,actions=output:2,meter:1,output:3\nin_port=4,actions=meter:2,output:3\n";
    let r = run(
        "meter",
        &toml,
        Some(flows),
        &[
            ("p1", vec![(T1, ip_frame(2, 1, 0, 1000, &[])); 12]),
            (
                "p4",
                vec![(at_us(500_000), ip_frame(2, 4, 0, 1000, &[])); 12],
            ),
        ],
    );
    assert_eq!(r.sent("p2").len(), 12);
    assert_eq!(r.sent("p3").len(), 18);
    let m: Vec<(u32, u64, u64)> = r
        .summary
        .meters
        .iter()
        .map(|m| (m.id, m.passed, m.dropped))
        .collect();
    assert_eq!(m, vec![(1, 9, 3), (2, 9, 3)]);
    assert!(
        port(&r.summary, "p1").drops.is_empty(),
        "{:?}",
        port(&r.summary, "p1").drops
    );
    assert_eq!(port(&r.summary, "p4").drops.get("meter"), Some(&3));
}

#[test]
fn a_dscp_map_changes_every_dscp_and_the_outer_tag_decides() {
    let toml = "[[port]]\nname = \"p1\"\nofport = 1\n[port.qos]\ndefault_pcp = 3\n\n\
                [[port]]\nname = \"p3\"\nofport = 3\n[port.qos]\ndefault_pcp = 3\ndscp_map = { \"0\" = 0 }\n\n\
                [[port]]\nname = \"p2\"\nofport = 2\n[port.qos]\nline_rate = \"1M\"\n";
    let flows = "in_port=1,actions=output:2\nin_port=3,actions=output:2\n";
    let r = run(
        "dscp-p1",
        toml,
        Some(flows),
        &[(
            "p1",
            vec![
                (T1, ip_frame(2, 1, 46, 100, &[])),
                (at_us(100_000), arp_frame(2, 1)),
            ],
        )],
    );
    assert_eq!(
        queues(&r.summary, "p2"),
        vec![(3, 2)],
        "priority 3 for both"
    );
    let r = run(
        "dscp-p3",
        toml,
        Some(flows),
        &[(
            "p3",
            vec![
                (T1, ip_frame(2, 3, 46, 100, &[])),
                (at_us(100_000), arp_frame(2, 3)),
                (at_us(200_000), ip_frame(2, 3, 0, 100, &[])),
            ],
        )],
    );
    assert_eq!(queues(&r.summary, "p2"), vec![(1, 1), (3, 1), (5, 1)]);
    // 0x88a8 PCP 6 outside: queue 6; 0x8100 PCP 3 outside: queue 3.
    let r = run(
        "outer",
        &format!("{P1_P2}[port.qos]\nline_rate = \"1M\"\n"),
        Some("in_port=1,actions=output:2\n"),
        &[(
            "p1",
            vec![
                (
                    T1,
                    ip_frame(
                        2,
                        1,
                        0,
                        100,
                        &[(0x88a8, 6 << 13 | 10), (0x8100, 2 << 13 | 20)],
                    ),
                ),
                (
                    T1,
                    ip_frame(
                        2,
                        1,
                        0,
                        100,
                        &[(0x8100, 3 << 13 | 10), (0x88a8, 6 << 13 | 20)],
                    ),
                ),
            ],
        )],
    );
    assert_eq!(queues(&r.summary, "p2"), vec![(3, 1), (6, 1)]);
}

#[test]
fn mod_vlan_pcp_pushes_a_vid_0_tag_and_clears_dei_when_it_changes_the_tag() {
    let flows = "dl_vlan=0xffff,actions=mod_vlan_pcp:5,output:2\n\
                 dl_vlan=10,ip,ip_dscp=1,actions=mod_vlan_pcp:1,output:2\n\
                 dl_vlan=10,ip,ip_dscp=2,actions=mod_vlan_pcp:2,output:2\n";
    let dei = [(0x8100, 0x3000 | 10)]; // PCP 1, DEI, VID 10
    let r = run(
        "pcp",
        P1_P2,
        Some(flows),
        &[(
            "p1",
            vec![
                (T1, ip_frame(2, 1, 0, 100, &[])),
                (at_us(1), ip_frame(2, 1, 1, 100, &dei)),
                (at_us(2), ip_frame(2, 1, 2, 100, &dei)),
            ],
        )],
    );
    let tags: Vec<[u8; 4]> = r
        .sent("p2")
        .iter()
        .map(|(_, f)| [f[12], f[13], f[14], f[15]])
        .collect();
    assert_eq!(
        tags,
        vec![
            [0x81, 0, 0xa0, 0x00],
            [0x81, 0, 0x30, 0x0a],
            [0x81, 0, 0x40, 0x0a]
        ]
    );
}
