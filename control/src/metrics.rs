//! Metrics in the Prometheus text format (version 0.0.4), and a small HTTP
//! server for `xswd --metrics ADDR` that answers `GET /metrics`.
//!
//! Both work on a [`MetricsSnapshot`], a value: the HTTP server is handed a
//! function that takes one (the daemon passes its control server's
//! `metrics_snapshot`), so this module knows nothing of the control server.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use xsw_datapath::stats::DropReason;
use xsw_ebpf::Verdict;
use xsw_live::engine::{BridgeSnapshot, EngineStats};

/// Escapes a label value.
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", esc(val));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {v}");
    }
}

/// What metrics are rendered from: every bridge's state and the polling
/// thread's counters, taken at one moment.
#[derive(Debug, Clone)]
pub struct MetricsSnapshot {
    /// Every bridge (rules left out).
    pub bridges: Vec<BridgeSnapshot>,
    /// The polling thread's own counters.
    pub engine: EngineStats,
}

/// Renders every bridge's counters and the polling thread's.
pub fn render(snap: &MetricsSnapshot) -> String {
    let (bridges, engine) = (&snap.bridges[..], &snap.engine);
    let mut o = Out(String::new());
    type PortField = fn(&xsw_live::engine::PortReport) -> u64;
    let port_counters: [(&str, &str, PortField); 4] = [
        (
            "xsw_port_rx_packets_total",
            "Frames received on the port.",
            |p| p.stats.rx_packets,
        ),
        (
            "xsw_port_rx_bytes_total",
            "Bytes received on the port.",
            |p| p.stats.rx_bytes,
        ),
        (
            "xsw_port_tx_packets_total",
            "Frames sent on the port.",
            |p| p.stats.tx_packets,
        ),
        ("xsw_port_tx_bytes_total", "Bytes sent on the port.", |p| {
            p.stats.tx_bytes
        }),
    ];
    for (name, help, f) in port_counters {
        o.family(name, "counter", help);
        for b in bridges {
            for p in &b.ports {
                o.sample(name, &[("bridge", &b.name), ("port", &p.name)], f(p));
            }
        }
    }
    o.family(
        "xsw_port_up",
        "gauge",
        "1 while the port's device is there, 0 once it vanished.",
    );
    for b in bridges {
        for p in &b.ports {
            o.sample(
                "xsw_port_up",
                &[("bridge", &b.name), ("port", &p.name)],
                u8::from(p.up),
            );
        }
    }
    o.family(
        "xsw_port_drops_total",
        "counter",
        "Frames dropped, by port and reason (ingress drops on the input port, egress drops on the output port).",
    );
    for b in bridges {
        for p in &b.ports {
            for r in DropReason::ALL {
                o.sample(
                    "xsw_port_drops_total",
                    &[("bridge", &b.name), ("port", &p.name), ("reason", r.name())],
                    p.stats.drops.get(*r),
                );
            }
        }
    }
    o.family(
        "xsw_port_xdp_verdicts_total",
        "counter",
        "What the port's XDP program did with received frames.",
    );
    for b in bridges {
        for p in &b.ports {
            if p.xdp_mode.is_none() {
                continue;
            }
            let x = &p.backend.xdp;
            for (v, n) in [
                (Verdict::PassHost, x.pass_host),
                (Verdict::DropRule, x.drop_rule),
                (Verdict::Redirect, x.redirect),
                (Verdict::NoSocket, x.no_socket),
                (Verdict::Disabled, x.disabled),
            ] {
                let name = v.name().trim_start_matches("xdp_");
                o.sample(
                    "xsw_port_xdp_verdicts_total",
                    &[("bridge", &b.name), ("port", &p.name), ("verdict", name)],
                    n,
                );
            }
        }
    }
    type DeviceField = fn(&xsw_datapath::port::BackendStats) -> u64;
    let device_families: [(&str, &str, DeviceField); 4] = [
        (
            "xsw_port_kernel_rx_dropped_total",
            "Frames the kernel dropped before the switch saw them (AF_XDP ring full or no free buffer).",
            |d| d.kernel_rx_dropped,
        ),
        (
            "xsw_port_rx_csum_completed_total",
            "TCP/UDP frames received with a partial checksum (the sender's checksum offload) and completed by the switch.",
            |d| d.rx_csum_completed,
        ),
        (
            "xsw_port_rx_gso_frames_total",
            "TCP super-frames (the sender's segmentation offload) the port cut into segments.",
            |d| d.rx_gso_frames,
        ),
        (
            "xsw_port_rx_gso_segments_total",
            "Segments the port cut from TCP super-frames (each also counted as a received frame).",
            |d| d.rx_gso_segments,
        ),
    ];
    for (name, help, field) in device_families {
        o.family(name, "counter", help);
        for b in bridges {
            for p in &b.ports {
                o.sample(
                    name,
                    &[("bridge", &b.name), ("port", &p.name)],
                    field(&p.backend),
                );
            }
        }
    }
    type QueueField = fn(&xsw_datapath::qos::QueueStats) -> u64;
    let queue_families: [(&str, &str, &str, QueueField); 4] = [
        (
            "xsw_queue_tx_packets_total",
            "counter",
            "Frames a QoS queue sent.",
            |q| q.tx_packets,
        ),
        (
            "xsw_queue_tx_bytes_total",
            "counter",
            "Bytes a QoS queue sent.",
            |q| q.tx_bytes,
        ),
        (
            "xsw_queue_dropped_total",
            "counter",
            "Frames dropped because a QoS queue was full.",
            |q| q.dropped,
        ),
        (
            "xsw_queue_depth",
            "gauge",
            "Frames waiting in a QoS queue.",
            |q| q.depth,
        ),
    ];
    for (name, kind, help, f) in queue_families {
        o.family(name, kind, help);
        for b in bridges {
            for p in &b.ports {
                for (i, q) in p.queues.iter().flatten().enumerate() {
                    o.sample(
                        name,
                        &[
                            ("bridge", &b.name),
                            ("port", &p.name),
                            ("queue", &i.to_string()),
                        ],
                        f(q),
                    );
                }
            }
        }
    }
    o.family(
        "xsw_meter_passed_total",
        "counter",
        "Frames a meter let through.",
    );
    for b in bridges {
        for m in &b.meters {
            o.sample(
                "xsw_meter_passed_total",
                &[("bridge", &b.name), ("meter", &m.id.to_string())],
                m.passed,
            );
        }
    }
    o.family(
        "xsw_meter_dropped_total",
        "counter",
        "Frames a meter dropped.",
    );
    for b in bridges {
        for m in &b.meters {
            o.sample(
                "xsw_meter_dropped_total",
                &[("bridge", &b.name), ("meter", &m.id.to_string())],
                m.dropped,
            );
        }
    }
    o.family("xsw_table_lookups_total", "counter", "Flow table lookups.");
    for b in bridges {
        for t in &b.tables {
            o.sample(
                "xsw_table_lookups_total",
                &[("bridge", &b.name), ("table", &t.table.to_string())],
                t.stats.lookups,
            );
        }
    }
    o.family(
        "xsw_table_matches_total",
        "counter",
        "Flow table lookups that found a rule.",
    );
    for b in bridges {
        for t in &b.tables {
            o.sample(
                "xsw_table_matches_total",
                &[("bridge", &b.name), ("table", &t.table.to_string())],
                t.stats.matched,
            );
        }
    }
    type BridgeField = fn(&BridgeSnapshot) -> u64;
    let gauges: [(&str, &str, &str, BridgeField); 5] = [
        ("xsw_bridge_flows", "gauge", "Rules installed.", |b| {
            b.n_rules as u64
        }),
        (
            "xsw_bridge_mac_entries",
            "gauge",
            "Learned MAC addresses.",
            |b| b.mac_entries as u64,
        ),
        (
            "xsw_bridge_mac_capacity",
            "gauge",
            "MAC table size limit.",
            |b| b.mac_max as u64,
        ),
        (
            "xsw_bridge_emc_hits_total",
            "counter",
            "Exact-match cache hits.",
            |b| b.emc.hits,
        ),
        (
            "xsw_bridge_emc_misses_total",
            "counter",
            "Exact-match cache misses.",
            |b| b.emc.misses,
        ),
    ];
    for (name, kind, help, f) in gauges {
        o.family(name, kind, help);
        for b in bridges {
            o.sample(name, &[("bridge", &b.name)], f(b));
        }
    }
    o.family(
        "xsw_poll_seconds_total",
        "counter",
        "Seconds the polling thread has run.",
    );
    o.sample(
        "xsw_poll_seconds_total",
        &[],
        format!("{:.3}", engine.run_seconds),
    );
    o.family(
        "xsw_poll_busy_seconds_total",
        "counter",
        "Of those, seconds spent switching frames (not spinning on empty rings or sleeping).",
    );
    o.sample(
        "xsw_poll_busy_seconds_total",
        &[],
        format!("{:.3}", engine.busy_seconds),
    );
    o.family(
        "xsw_poll_busy_ratio",
        "gauge",
        "busy_seconds / seconds since the start (rate() of the two counters gives it over any window).",
    );
    let ratio = if engine.run_seconds > 0.0 {
        engine.busy_seconds / engine.run_seconds
    } else {
        0.0
    };
    o.sample("xsw_poll_busy_ratio", &[], format!("{ratio:.4}"));
    o.family(
        "xsw_control_commands_total",
        "counter",
        "Control-plane commands the polling thread carried out.",
    );
    o.sample("xsw_control_commands_total", &[], engine.commands);
    o.0
}

/// Serves `GET /metrics` on `listener` until `stop` is set, rendering what
/// `snapshot` returns at each request (its error becomes a 503 answer).
pub fn serve<F, E>(snapshot: F, listener: TcpListener, stop: Arc<AtomicBool>)
where
    F: Fn() -> Result<MetricsSnapshot, E>,
    E: std::fmt::Display,
{
    while !stop.load(Ordering::Relaxed) {
        let Ok((s, _)) = listener.accept() else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        if let Err(e) = answer(&snapshot, s) {
            tracing::debug!("metrics: {e}");
        }
    }
}

fn answer<F, E>(snapshot: &F, mut s: TcpStream) -> std::io::Result<()>
where
    F: Fn() -> Result<MetricsSnapshot, E>,
    E: std::fmt::Display,
{
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = [0u8; 8192];
    let mut n = 0;
    // The request head, up to a blank line (the body, if any, is ignored).
    while n < buf.len() {
        let k = s.read(&mut buf[n..])?;
        if k == 0 {
            break;
        }
        n += k;
        if buf[..n].windows(4).any(|w| w == b"\r\n\r\n")
            || buf[..n].windows(2).any(|w| w == b"\n\n")
        {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buf[..n]);
    let first = head.lines().next().unwrap_or("");
    let mut parts = first.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, ctype, body) = match (method, path) {
        ("GET", "/metrics") | ("GET", "/") => match snapshot() {
            Ok(snap) => (
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                render(&snap),
            ),
            Err(e) => ("503 Service Unavailable", "text/plain", format!("{e}\n")),
        },
        ("GET", _) => ("404 Not Found", "text/plain", "try /metrics\n".into()),
        _ => ("405 Method Not Allowed", "text/plain", "GET only\n".into()),
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(resp.as_bytes())
}
