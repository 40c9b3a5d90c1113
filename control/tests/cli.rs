//! The `xsw` command as a user meets it: exit codes, outputs, and errors
//! that say where and why.

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
    let d = std::env::temp_dir().join(format!("xsw-cli-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).expect("tmp dir");
    d
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

#[test]
fn replay_writes_every_port_and_a_summary() {
    let out = tmp("replay");
    let sc = repo().join("pcaps/vlan-access-trunk");
    let o = xsw(&[
        "replay",
        sc.to_str().unwrap_or(""),
        "--out",
        out.to_str().unwrap_or(""),
    ]);
    let (so, se) = text(&o);
    assert!(o.status.success(), "{so}\n{se}");
    for p in ["a10", "b10", "c20", "trunk", "t10"] {
        assert!(out.join(format!("{p}.pcap")).is_file(), "{p}.pcap missing");
    }
    assert!(so.contains("normal_vlan_not_allowed"), "{so}");
    let j = xsw(&[
        "replay",
        sc.to_str().unwrap_or(""),
        "--out",
        out.to_str().unwrap_or(""),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&j.stdout).expect("--json prints JSON");
    assert!(v["frames_in"].as_u64().unwrap_or(0) > 10);
}

#[test]
fn bad_scenarios_say_file_line_and_problem() {
    let d = tmp("bad");
    fs::write(
        d.join("scenario.toml"),
        "[[port]]\nname = \"p1\"\nofport = 1\n\n[[port]]\nname = \"p2\"\nofport = 1\n",
    )
    .expect("write");
    let o = xsw(&[
        "replay",
        d.to_str().unwrap_or(""),
        "--out",
        d.join("out").to_str().unwrap_or(""),
    ]);
    let (_, se) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        se.contains("scenario.toml:5:1") && se.contains("ofport"),
        "{se}"
    );

    fs::write(
        d.join("scenario.toml"),
        "[[port]]\nname = \"p1\"\nofport = 1\nvlan_mode = \"acess\"\n",
    )
    .expect("write");
    let o = xsw(&[
        "replay",
        d.to_str().unwrap_or(""),
        "--out",
        d.join("out").to_str().unwrap_or(""),
    ]);
    let (_, se) = text(&o);
    assert!(
        se.contains("scenario.toml:4") && se.contains("acess"),
        "{se}"
    );

    fs::write(
        d.join("scenario.toml"),
        "[[port]]\nname = \"p1\"\nofport = 1\n",
    )
    .expect("write");
    fs::write(
        d.join("flows.txt"),
        "# comment\npriority=10,ip,actions=output:2\ntcp_dst=80,actions=drop\n",
    )
    .expect("write");
    let o = xsw(&[
        "replay",
        d.to_str().unwrap_or(""),
        "--out",
        d.join("out").to_str().unwrap_or(""),
    ]);
    let (_, se) = text(&o);
    assert!(
        se.contains("flows.txt:3:1") && se.contains("add `tcp`"),
        "{se}"
    );
}

#[test]
fn damaged_input_is_replayed_up_to_the_damage_with_exit_3() {
    let d = tmp("damaged");
    fs::create_dir_all(d.join("in")).expect("mkdir");
    fs::write(
        d.join("scenario.toml"),
        "[[port]]\nname = \"p1\"\nofport = 1\n[[port]]\nname = \"p2\"\nofport = 2\n",
    )
    .expect("write");
    let good = fs::read(repo().join("pcaps/learning/in/p1.pcap")).expect("input");
    fs::write(d.join("in/p1.pcap"), &good[..good.len() - 7]).expect("write");
    let out = d.join("out");
    let o = xsw(&[
        "replay",
        d.to_str().unwrap_or(""),
        "--out",
        out.to_str().unwrap_or(""),
    ]);
    let (so, se) = text(&o);
    assert_eq!(o.status.code(), Some(3), "{so}\n{se}");
    assert!(se.contains("cut short"), "{se}");
    assert!(
        fs::metadata(out.join("p2.pcap"))
            .map(|m| m.len())
            .unwrap_or(0)
            > 24,
        "frames before the damage were switched"
    );
}

#[test]
fn trace_tells_what_happened_in_the_replay() {
    let sc = repo().join("pcaps/learning");
    let pcap = sc.join("in/p2.pcap");
    let o = xsw(&[
        "trace",
        sc.to_str().unwrap_or(""),
        "--in-port",
        "p2",
        "--pcap",
        pcap.to_str().unwrap_or(""),
        "--index",
        "1",
    ]);
    let (so, se) = text(&o);
    assert!(o.status.success(), "{se}");
    // The second frame overall: a's reply comes back unicast because a was learned.
    assert!(so.contains("replayed the 1 frame"), "{so}");
    assert!(
        so.contains("is on port p1") && so.contains("output to port p1"),
        "{so}"
    );
    let cold = xsw(&[
        "trace",
        sc.to_str().unwrap_or(""),
        "--in-port",
        "p2",
        "--pcap",
        pcap.to_str().unwrap_or(""),
        "--index",
        "1",
        "--cold",
    ]);
    assert!(text(&cold).0.contains("flooding"));
    let j = xsw(&[
        "trace",
        sc.to_str().unwrap_or(""),
        "--in-port",
        "p1",
        "--frame",
        "ffffffffffff0200000000010806",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&j.stdout).expect("--json prints JSON");
    assert_eq!(v["outputs"].as_array().map(|a| a.len()), Some(3));
    let bad = xsw(&[
        "trace",
        sc.to_str().unwrap_or(""),
        "--in-port",
        "p1",
        "--pcap",
        pcap.to_str().unwrap_or(""),
        "--index",
        "0",
    ]);
    assert!(text(&bad).1.contains("start at 1"));
    let bad = xsw(&[
        "trace",
        sc.to_str().unwrap_or(""),
        "--in-port",
        "nope",
        "--frame",
        "00",
    ]);
    assert!(text(&bad).1.contains("no port named `nope`"));
}

#[test]
fn flow_parse_points_at_the_problem() {
    let o = xsw(&["flow", "parse", "priority=5,nw_dst=198.18.0.1,actions=drop"]);
    let (_, se) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        se.contains("column 12") && se.contains("\n             ^"),
        "{se}"
    );
    assert_eq!(
        se.matches("needs an IPv4").count(),
        1,
        "the message once: {se}"
    );
    let o = xsw(&[
        "flow",
        "parse",
        "tcp,nw_dst=198.18.0.0/24,tp_dst=80,actions=output:2",
    ]);
    assert_eq!(
        text(&o).0.trim(),
        "tcp,nw_dst=198.18.0.0/24,tp_dst=80 actions=output:2"
    );
}

/// A stand-in for `xswd` on a socket in `dir`: answers each request with
/// `reply(cmd)` as its result, for `n` connections.
fn fake_daemon(
    dir: &Path,
    n: usize,
    reply: fn(&str) -> serde_json::Value,
) -> (PathBuf, std::thread::JoinHandle<()>) {
    use std::io::{BufRead, BufReader, Write};
    let sock = dir.join("xswd.sock");
    let l = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
    let t = std::thread::spawn(move || {
        for _ in 0..n {
            let (s, _) = l.accept().expect("accept");
            let mut line = String::new();
            BufReader::new(s.try_clone().expect("clone"))
                .read_line(&mut line)
                .expect("read");
            let req: serde_json::Value = serde_json::from_str(&line).expect("request");
            let cmd = req["cmd"].as_str().unwrap_or("");
            let answer = serde_json::json!({
                "version": 1,
                "id": req["id"],
                "ok": true,
                "result": reply(cmd),
            });
            let mut w = s;
            writeln!(w, "{answer}").expect("write");
        }
    });
    (sock, t)
}

/// `--json` prints the daemon's reply as received: a field the tool's
/// reply types do not know stays, a reply that does not fit them still
/// prints, keys in alphabetical order; `trace --json` leaves out `text`.
#[test]
fn json_output_is_the_reply_as_received() {
    fn reply(cmd: &str) -> serde_json::Value {
        serde_json::json!({
            "cmd": cmd,
            "zz_future_field": {"b": 2, "a": 1},
            "bridges": "not what the types say",
            "ports": 7,
            "entries": null,
            "meters": [{"id": "x"}],
            "flows": {},
            "lines": 1,
            "text": "heading",
        })
    }
    let d = tmp("json");
    let runs: &[&[&str]] = &[
        &["show", "--json"],
        &["show", "br0", "--json"],
        &["port", "stats", "br0", "--json"],
        &["fdb", "show", "br0", "--json"],
        &["meter", "show", "br0", "--json"],
        &["flow", "dump", "br0", "--json"],
        &["trace", "br0", "--in-port", "a", "--frame", "00", "--json"],
    ];
    let (sock, t) = fake_daemon(&d, runs.len(), reply);
    for args in runs {
        let mut a = vec!["--socket", sock.to_str().unwrap_or("")];
        a.extend_from_slice(args);
        let o = xsw(&a);
        let (so, se) = text(&o);
        assert!(o.status.success(), "{args:?}: {so}\n{se}");
        let cmd = match args[0] {
            "show" | "trace" => args[0].to_string(),
            group => format!("{group}.{}", args[1]),
        };
        let mut want = reply(&cmd);
        if cmd == "trace" {
            want.as_object_mut().map(|o| o.remove("text"));
        }
        let want = serde_json::to_string_pretty(&want).expect("json") + "\n";
        assert_eq!(so, want, "{args:?}");
    }
    t.join().expect("daemon");
}

/// Runs `xsw` as the golden files were made: 100 columns, no `$XSW_SOCKET`
/// (help shows its value), no terminal.
fn xsw_plain(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_xsw"))
        .args(args)
        .env("COLUMNS", "100")
        .env_remove("XSW_SOCKET")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run xsw");
    let (so, se) = text(&o);
    assert!(o.status.success(), "xsw {args:?}: {se}");
    so
}

/// The subcommands a help text lists under `Commands:` (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

/// Help texts and the bash completions do not drift: `xsw --help`, every
/// subcommand's `--help` (found by walking the `Commands:` lists) and
/// `xsw completions bash` equal the files in tests/golden/, which were
/// checked against the tool before the CLI was split into cli/. After a
/// deliberate change: `XSW_BLESS=1 cargo test -p xsw-control --test cli
/// help_texts` rewrites them; review the diff.
#[test]
fn help_texts_and_completions_match_the_golden_files() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let bless = std::env::var_os("XSW_BLESS").is_some();
    let mut outputs: Vec<(String, String)> = Vec::new();
    let mut todo: Vec<Vec<String>> = vec![vec![]];
    while let Some(path) = todo.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = xsw_plain(&args);
        for c in subcommands(&help) {
            let mut p = path.clone();
            p.push(c);
            todo.push(p);
        }
        let name = std::iter::once("xsw")
            .chain(path.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join("-");
        outputs.push((format!("{name}.help"), help));
    }
    assert!(
        outputs.len() > 20,
        "only {} help texts found",
        outputs.len()
    );
    outputs.push((
        "completions.bash".into(),
        xsw_plain(&["completions", "bash"]),
    ));
    if bless {
        let _ = fs::remove_dir_all(&golden);
        fs::create_dir_all(&golden).expect("golden dir");
    }
    let mut failures = Vec::new();
    for (file, got) in &outputs {
        let p = golden.join(file);
        if bless {
            fs::write(&p, got).expect("write golden");
            continue;
        }
        match fs::read_to_string(&p) {
            Err(_) => failures.push(format!("{file}: missing (XSW_BLESS=1 to create)")),
            Ok(want) if &want != got => {
                let line = want
                    .lines()
                    .zip(got.lines())
                    .position(|(w, g)| w != g)
                    .unwrap_or(want.lines().count().min(got.lines().count()));
                failures.push(format!(
                    "{file}: differs from line {}:\n  want: {:?}\n  got:  {:?}",
                    line + 1,
                    want.lines().nth(line).unwrap_or(""),
                    got.lines().nth(line).unwrap_or("")
                ));
            }
            Ok(_) => {}
        }
    }
    if !bless {
        let known: Vec<&str> = outputs.iter().map(|(f, _)| f.as_str()).collect();
        for e in fs::read_dir(&golden).expect("tests/golden").flatten() {
            let f = e.file_name().to_string_lossy().to_string();
            if !known.contains(&f.as_str()) {
                failures.push(format!("{f}: no such help text any more"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
