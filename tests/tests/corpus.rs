//! Every capture of tcpdump's test suite (tests/corpus/tcpdump: 434 real
//! captures, many malformed on purpose) replayed through the switch, twice:
//! once through NORMAL with VLAN ports, once through a rule set that reads
//! every L2-L4 field and rewrites VLANs and MACs. Nothing may panic, the
//! same input must give the same output bytes every time, drops stay within
//! what the frames can explain, and a file that cannot be read gets an error
//! naming the file.

use std::fs;
use std::path::{Path, PathBuf};

use xsw_datapath::replay::{replay, Scenario};

const PORTS: &str = r#"
[[port]]
name = "p1"
ofport = 1

[[port]]
name = "acc"
ofport = 2
tag = 10

[[port]]
name = "t20"
ofport = 3
trunks = [0, 20]

[[port]]
name = "small"
ofport = 4
mtu = 1500
"#;

const FLOWS: &str = r#"
table=0,priority=300,dl_src=01:00:00:00:00:00/01:00:00:00:00:00,actions=drop
table=0,priority=200,tcp,tp_dst=0x0/0xff00,actions=mod_vlan_vid:20,output:3,resubmit(,1)
table=0,priority=190,udp,nw_dst=224.0.0.0/4,actions=flood
table=0,priority=180,ip,nw_tos=0,actions=resubmit(,1),normal
table=0,priority=170,ipv6,ipv6_src=fe80::/10,actions=push_vlan:0x88a8,output:4,strip_vlan,output:2
table=0,priority=160,icmp6,icmp_type=135,actions=mod_dl_dst:02:00:00:00:00:01,in_port
table=0,priority=150,arp,arp_op=1,actions=mod_vlan_pcp:3,all
table=0,priority=140,dl_vlan=0xffff,actions=goto_table:2
table=0,priority=0,actions=normal
table=1,udp,tp_src=53,actions=output:2
table=1,priority=1,actions=strip_vlan,output:4
table=2,ip,actions=resubmit(,1)
table=2,priority=0,actions=output:3
"#;

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/tcpdump");
    let mut v: Vec<PathBuf> = fs::read_dir(&dir)
        .expect("tests/corpus/tcpdump exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    v.sort();
    v
}

/// (frames received on p1, drops on all ports, frames sent, output files).
type RunResult = (u64, u64, u64, Vec<Vec<u8>>);

fn run_one(file: &Path, flows: Option<&str>, work: &Path) -> Result<Option<RunResult>, String> {
    let _ = fs::remove_dir_all(work);
    fs::create_dir_all(work.join("in")).map_err(|e| e.to_string())?;
    fs::write(work.join("scenario.toml"), PORTS).map_err(|e| e.to_string())?;
    if let Some(f) = flows {
        fs::write(work.join("flows.txt"), f).map_err(|e| e.to_string())?;
    }
    let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("pcap");
    fs::copy(file, work.join("in").join(format!("p1.{ext}"))).map_err(|e| e.to_string())?;
    let sc = Scenario::load(work).map_err(|e| format!("load: {e}"))?;
    let out = work.join("out");
    match replay(&sc, &out) {
        Ok(s) => {
            let p1 = &s.ports[0];
            let drops: u64 = s.ports.iter().map(|p| p.drops.values().sum::<u64>()).sum();
            let mut outs = Vec::new();
            for p in &sc.ports {
                outs.push(
                    fs::read(out.join(format!("{}.pcap", p.name))).map_err(|e| e.to_string())?,
                );
            }
            Ok(Some((p1.rx_packets, drops, s.frames_out, outs)))
        }
        Err(e) => {
            let msg = e.to_string();
            // A file we cannot read must say which file and why.
            if !msg.contains("p1.") {
                return Err(format!("error does not name the file: {msg}"));
            }
            Ok(None)
        }
    }
}

#[test]
fn the_whole_tcpdump_corpus_replays_without_harm() {
    let files = corpus();
    assert!(files.len() >= 400, "corpus has {} files", files.len());
    let work = std::env::temp_dir().join(format!("xsw-corpus-{}", std::process::id()));
    let mut problems = Vec::new();
    let (mut frames, mut unreadable) = (0u64, 0usize);
    for f in &files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        for flows in [None, Some(FLOWS)] {
            match run_one(f, flows, &work) {
                Ok(Some((rx, drops, _out, outs))) => {
                    frames += rx;
                    if drops > rx * 8 {
                        problems.push(format!("{name}: {drops} drops for {rx} frames"));
                    }
                    // Deterministic: the same input gives the same bytes.
                    if flows.is_some() {
                        if let Ok(Some((rx2, _, _, outs2))) = run_one(f, flows, &work) {
                            if rx2 != rx || outs2 != outs {
                                problems.push(format!("{name}: two replays differ"));
                            }
                        }
                    }
                }
                Ok(None) => unreadable += 1,
                Err(e) => problems.push(format!("{name}: {e}")),
            }
        }
    }
    let _ = fs::remove_dir_all(&work);
    eprintln!(
        "corpus: {} files, {frames} frames switched, {unreadable} unreadable runs",
        files.len()
    );
    assert!(frames > 10_000, "only {frames} frames were switched");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
