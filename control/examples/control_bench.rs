//! Control-plane benchmark: how fast rules get installed, and how long a
//! `flow add` takes to be in effect, against a real xswd.
//!
//! Needs root. Creates a network namespace with a veth pair for the bridge's
//! ports, starts `xswd` (next to this binary in target/release, or --xswd),
//! measures through the control socket, and removes everything.
//!
//! ```sh
//! cargo build --release --bin xswd --example control_bench
//! target/release/examples/control_bench
//! ```
//!
//! Figures: single `flow.add` requests one after another (the answer comes
//! once the rule is in the polling thread's tables and the state is saved):
//! requests per second, and latency to effect (request received → polling
//! thread has the rule) p50/p99; then bulk installs (`flow.add` of a list,
//! `flow.replace`) of 10,000 and 100,000 rules: rules per second and the
//! polling thread's swap time.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use xsw_control::client::Client;
use xsw_control::proto::{BridgeAdd, FlowAdd, FlowDel, FlowReplace, PortAdd};
use xsw_control::spec::PortSpec;

fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

struct Setup {
    ns: String,
    dir: PathBuf,
    child: Option<Child>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on the PID of a child we spawned and have not reaped.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let _ = c.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or(0.0)
}

fn rules(n: usize, salt: u32) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                "priority={},udp,nw_dst=10.{}.{}.{},tp_dst={},actions=drop",
                100 + (i % 7),
                (i / 65536) % 256,
                (i / 256) % 256,
                i % 256,
                1000 + salt
            )
        })
        .collect()
}

fn main() -> Result<(), String> {
    let xswd = std::env::args()
        .skip_while(|a| a != "--xswd")
        .nth(1)
        .map(PathBuf::from)
        .or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|p| Some(p.parent()?.parent()?.join("xswd")))
        })
        .ok_or("cannot find xswd: pass --xswd PATH")?;
    if !xswd.exists() {
        return Err(format!(
            "{}: not built (cargo build --release --bin xswd)",
            xswd.display()
        ));
    }
    let ns = format!("xswbench{}", std::process::id());
    let dir = std::env::temp_dir().join(&ns);
    let mut setup = Setup {
        ns: ns.clone(),
        dir: dir.clone(),
        child: None,
    };
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    sh(&["ip", "netns", "add", &ns])?;
    sh(&[
        "ip", "-n", &ns, "link", "add", "ba", "type", "veth", "peer", "name", "bb",
    ])?;
    for d in ["ba", "bb", "lo"] {
        sh(&["ip", "-n", &ns, "link", "set", d, "up"])?;
    }
    let sock = dir.join("xswd.sock");
    let child = Command::new("ip")
        .args(["netns", "exec", &ns])
        .arg(&xswd)
        .arg("--socket")
        .arg(&sock)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    setup.child = Some(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut c = loop {
        if let Ok(c) = Client::connect(&sock) {
            break c;
        }
        if Instant::now() > deadline {
            return Err("xswd did not start".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    c.call(BridgeAdd {
        name: "br0".into(),
        mac_aging: None,
        mac_table_size: None,
    })
    .map_err(|e| e.to_string())?;
    for (name, iface) in [("a", "ba"), ("b", "bb")] {
        let port: PortSpec = serde_json::from_value(serde_json::json!({
            "name": name, "ofport": 0, "interface": iface
        }))
        .map_err(|e| e.to_string())?;
        c.call(PortAdd {
            bridge: "br0".into(),
            port: Box::new(port),
        })
        .map_err(|e| e.to_string())?;
    }

    println!(
        "xsw control-plane benchmark (xswd {}, state saved on every change)",
        xswd.display()
    );
    println!(
        "{:<44} {:>12} {:>12} {:>12}",
        "case", "rules/s", "p50 us", "p99 us"
    );
    // Single adds, one request each, on a small table and on a 10,000-rule one.
    for (base, n) in [(0usize, 500usize), (10_000, 200)] {
        if base > 0 {
            c.call(FlowReplace {
                bridge: "br0".into(),
                flows: rules(base, 1),
            })
            .map_err(|e| e.to_string())?;
        }
        let mut effect = Vec::new();
        let one = rules(n, 2);
        let t = Instant::now();
        for r in one {
            let v = c
                .call(FlowAdd {
                    bridge: "br0".into(),
                    flows: vec![r],
                })
                .map_err(|e| e.to_string())?;
            effect.push(v.effect_us as f64);
        }
        let rate = n as f64 / t.elapsed().as_secs_f64();
        println!(
            "{:<44} {:>12.0} {:>12.0} {:>12.0}",
            format!("flow add, one rule per request ({base} installed)"),
            rate,
            pct(&mut effect, 0.5),
            pct(&mut effect, 0.99)
        );
    }
    for n in [10_000usize, 100_000] {
        c.call(FlowDel {
            bridge: "br0".into(),
            matches: None,
            strict: false,
        })
        .map_err(|e| e.to_string())?;
        let t = Instant::now();
        let v = c
            .call(FlowAdd {
                bridge: "br0".into(),
                flows: rules(n, 3),
            })
            .map_err(|e| e.to_string())?;
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{:<44} {:>12.0} {:>12} {:>12}",
            format!("flow add, {n} rules in one request"),
            n as f64 / secs,
            v.effect_us,
            "-"
        );
        let t = Instant::now();
        let v = c
            .call(FlowReplace {
                bridge: "br0".into(),
                flows: rules(n, 4),
            })
            .map_err(|e| e.to_string())?;
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{:<44} {:>12.0} {:>12} {:>12}",
            format!("flow replace, {n} rules"),
            n as f64 / secs,
            v.effect_us,
            "-"
        );
        println!(
            "{:<44} {:>12} {:>12} {:>12}",
            format!("  of which the polling thread's swap"),
            "-",
            v.swap_us,
            "-"
        );
    }
    println!("p50/p99: from request received to the rule in the polling thread's tables (bulk: one request, so one figure)");
    drop(setup);
    Ok(())
}
