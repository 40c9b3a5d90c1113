//! 802.1p QoS through the real fast path: a port shaped to 100 Mbit/s with
//! strict priority, carrying a priority-6 flow at 40 Mbit/s and a
//! priority-0 flow at 200 Mbit/s. Needs root (CI has it).

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use common::*;

const CONFIG: &str = r#"
[[bridge]]
name = "br0"

[[bridge.port]]
name = "a"
ofport = 1
interface = "pa"
[bridge.port.qos]
dscp_map = { "48" = 6 }          # CS6 arrives untagged: priority 6

[[bridge.port]]
name = "b"
ofport = 2
interface = "pb"
[bridge.port.qos]
rate = "100M"
scheduler = "strict"
"#;

/// UDP payload bytes; the frame is 42 bytes more.
const PAYLOAD: usize = 1000;
const FRAME_BITS: f64 = ((PAYLOAD + 42) * 8) as f64;

/// Sends UDP from `a` to `dst` with IP TOS `tos` at `bits_per_s` (counted
/// as whole Ethernet frames) for `secs`; returns frames sent.
fn sender(
    a: &Netns,
    dst: SocketAddr,
    tos: u8,
    bits_per_s: f64,
    secs: f64,
) -> std::thread::JoinHandle<u64> {
    a.spawn(move || {
        let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
        let v: libc::c_int = tos as libc::c_int;
        // SAFETY: setsockopt on a socket we own, with a pointer to a live
        // c_int and its exact size.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_TOS,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        let pps = bits_per_s / FRAME_BITS;
        let start = Instant::now();
        let mut sent = 0u64;
        let mut buf = vec![0u8; PAYLOAD];
        loop {
            let el = start.elapsed().as_secs_f64();
            if el >= secs {
                break;
            }
            while (sent as f64) < pps * el {
                buf[..8].copy_from_slice(&sent.to_be_bytes());
                if s.send_to(&buf, dst).is_ok() {
                    sent += 1;
                }
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        sent
    })
}

/// Counts frames per destination port, and the time of the first and last.
fn receiver(b: &Netns, port: u16) -> std::thread::JoinHandle<(u64, f64)> {
    b.spawn(move || {
        let s = UdpSocket::bind(("198.18.3.2", port)).expect("bind");
        // A big buffer: the host's own receive path is not under test.
        let v: libc::c_int = 8 << 20;
        // SAFETY: as above, on a socket we own.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        s.set_read_timeout(Some(Duration::from_millis(1500)))
            .expect("timeout");
        let mut buf = [0u8; 2048];
        let mut n = 0u64;
        let mut first = None;
        let mut last = Instant::now();
        while s.recv(&mut buf).is_ok() {
            n += 1;
            last = Instant::now();
            first.get_or_insert(last);
        }
        let span = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
        (n, span)
    })
}

#[test]
fn a_shaped_port_keeps_the_high_priority_flow_whole() {
    let _g = serial();
    let s = Netns::new("s");
    let a = Netns::new("a");
    let b = Netns::new("b");
    veth(&a, "eth0", &s, "pa", 1500, 1);
    veth(&b, "eth0", &s, "pb", 1500, 1);
    a.ip(&["addr", "add", "198.18.3.1/24", "dev", "eth0"]);
    b.ip(&["addr", "add", "198.18.3.2/24", "dev", "eth0"]);
    let x = Xswd::start(&s, CONFIG, None);
    assert!(a.ping("198.18.3.2", 2, &[]).0, "path up");

    const SECS: f64 = 3.0;
    let hi_rx = receiver(&b, 6006);
    let lo_rx = receiver(&b, 6000);
    std::thread::sleep(Duration::from_millis(200));
    let hi_tx = sender(
        &a,
        "198.18.3.2:6006".parse().expect("addr"),
        48 << 2,
        40e6,
        SECS,
    );
    let lo_tx = sender(&a, "198.18.3.2:6000".parse().expect("addr"), 0, 200e6, SECS);
    let (hi_sent, lo_sent) = (hi_tx.join().expect("hi"), lo_tx.join().expect("lo"));
    let ((hi_got, hi_span), (lo_got, lo_span)) =
        (hi_rx.join().expect("hi rx"), lo_rx.join().expect("lo rx"));

    let hi_rate = hi_got as f64 * FRAME_BITS / hi_span.max(1e-9);
    let lo_rate = lo_got as f64 * FRAME_BITS / lo_span.max(1e-9);
    let report = format!(
        "priority 6: sent {hi_sent}, got {hi_got} ({:.1} Mbit/s); priority 0: sent {lo_sent}, got {lo_got} ({:.1} Mbit/s)",
        hi_rate / 1e6,
        lo_rate / 1e6
    );
    eprintln!("{report}");
    // The senders really offered 40 and 200 Mbit/s.
    assert!(
        (hi_sent as f64 * FRAME_BITS / SECS - 40e6).abs() < 4e6,
        "{report}"
    );
    assert!(lo_sent as f64 * FRAME_BITS / SECS > 150e6, "{report}");
    assert_eq!(
        hi_got, hi_sent,
        "the priority-6 flow loses nothing: {report}"
    );
    assert!((hi_rate - 40e6).abs() < 4e6, "and keeps its rate: {report}");
    // The priority-0 flow gets the rest of the 100 Mbit/s.
    assert!(
        (lo_rate - 60e6).abs() < 9e6,
        "priority 0 gets what is left (about 60 Mbit/s): {report}"
    );
    let st = x.port(0, "b");
    let q = &st["queues"];
    assert_eq!(q[6]["dropped"], 0, "{st}");
    assert!(
        q[1]["dropped"].as_u64().unwrap_or(0) > 0,
        "queue 1 overflowed: {st}"
    );
    assert!(q[6]["tx_packets"].as_u64().unwrap_or(0) >= hi_got, "{st}");
}
