//! Test topologies: network namespaces, veth pairs and a running xswd, all
//! created by the test and removed when it ends (also when it fails).
//! Addresses come from 198.18.0.0/15. Needs root, as CI has.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());
static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Network tests share two cores: one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    assert!(
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() } == 0,
        "the fast-path tests need root (network namespaces, XDP, AF_XDP); CI runs them as root"
    );
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs a command, panicking with its output if it fails.
pub fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into()
}

/// Runs a command and returns whether it succeeded (and its output).
pub fn try_run(args: &[&str]) -> (bool, String) {
    match Command::new(args[0]).args(&args[1..]).output() {
        Ok(o) => (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ),
        Err(e) => (false, e.to_string()),
    }
}

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!(
            "xswt{}{}{tag}",
            std::process::id() % 100_000,
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        run(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip ARGS` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut v = vec!["ip", "-n", &self.name];
        v.extend_from_slice(args);
        run(&v)
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, args: &[&str]) -> (bool, String) {
        let mut v = vec!["ip", "netns", "exec", &self.name];
        v.extend_from_slice(args);
        try_run(&v)
    }

    /// Pings `dst` `count` times (each waits at most 2 s); true if all answered.
    pub fn ping(&self, dst: &str, count: u32, extra: &[&str]) -> (bool, String) {
        let c = count.to_string();
        let mut v = vec!["ping", "-n", "-c", &c, "-W", "2", "-i", "0.2"];
        v.extend_from_slice(extra);
        v.push(dst);
        let (ok, out) = self.exec(&v);
        (ok && out.contains(&format!("{count} received")), out)
    }

    /// Runs `f` on a thread inside the namespace (sockets it opens live there).
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = PathBuf::from("/run/netns").join(&self.name);
        std::thread::spawn(move || {
            let file =
                std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            // SAFETY: setns on a namespace file descriptor we hold open; it
            // only changes this thread's network namespace.
            let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A veth pair from `a` (named `an`) to `b` (named `bn`), both up.
pub fn veth(a: &Netns, an: &str, b: &Netns, bn: &str, mtu: u32, queues: u32) {
    let q = queues.to_string();
    let tmp_a = format!(
        "t{}a{}",
        std::process::id() % 10_000,
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    let tmp_b = format!(
        "t{}b{}",
        std::process::id() % 10_000,
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    run(&[
        "ip",
        "link",
        "add",
        &tmp_a,
        "numrxqueues",
        &q,
        "numtxqueues",
        &q,
        "type",
        "veth",
        "peer",
        "name",
        &tmp_b,
        "numrxqueues",
        &q,
        "numtxqueues",
        &q,
    ]);
    run(&["ip", "link", "set", &tmp_a, "netns", &a.name, "name", an]);
    run(&["ip", "link", "set", &tmp_b, "netns", &b.name, "name", bn]);
    let m = mtu.to_string();
    a.ip(&["link", "set", an, "mtu", &m, "up"]);
    b.ip(&["link", "set", bn, "mtu", &m, "up"]);
}

/// A running xswd, stopped (SIGTERM, then waited for) on drop. Its
/// socket, state directory and stats file live in a directory of its own.
pub struct Xswd {
    child: Option<Child>,
    pub log: std::sync::Arc<Mutex<String>>,
    pub stats: PathBuf,
    pub dir: PathBuf,
    ns: String,
    args: Vec<String>,
}

impl Xswd {
    /// What the daemon has logged so far (for failure messages).
    pub fn log_text(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Starts xswd in `ns` with `config`; waits for "ready".
    pub fn start(ns: &Netns, config: &str, flows: Option<&str>) -> Xswd {
        let dir = Self::fresh_dir(ns);
        if let Some(f) = flows {
            std::fs::write(dir.join("flows.txt"), f).expect("flows");
        }
        std::fs::write(dir.join("xswd.toml"), config).expect("config");
        let cfg = dir.join("xswd.toml").display().to_string();
        Self::launch(ns, dir, &["--config", &cfg])
    }

    /// A new, empty directory for an xswd in `ns`.
    pub fn fresh_dir(ns: &Netns) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("{}-xswd", ns.name));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("tmp dir");
        dir
    }

    /// Starts xswd in `ns` with its files in `dir` and extra arguments.
    pub fn launch(ns: &Netns, dir: PathBuf, extra: &[&str]) -> Xswd {
        let mut x = Xswd {
            child: None,
            log: std::sync::Arc::new(Mutex::new(String::new())),
            stats: dir.join("stats.json"),
            dir,
            ns: ns.name.clone(),
            args: extra.iter().map(|s| s.to_string()).collect(),
        };
        x.spawn();
        x
    }

    /// The control socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("xswd.sock")
    }

    /// Stops xswd and starts it again with the same files and arguments.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Runs `xsw --socket SOCKET ARGS...`: (success, stdout, stderr).
    pub fn xsw(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_xsw"))
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .output()
            .expect("run xsw");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs xsw and requires success; returns stdout.
    pub fn xsw_ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.xsw(args);
        assert!(ok, "xsw {args:?} failed: {err}{out}");
        out
    }

    fn spawn(&mut self) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns, env!("CARGO_BIN_EXE_xswd")])
            .args(&self.args)
            .arg("--socket")
            .arg(self.socket())
            .arg("--state-dir")
            .arg(self.dir.join("state"))
            .arg("--stats-file")
            .arg(&self.stats)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn xswd");
        let (tx, rx) = std::sync::mpsc::channel();
        let err = child.stderr.take().expect("stderr");
        let l2 = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if line.contains("ready") {
                    let _ = tx.send(true);
                }
                if let Ok(mut g) = l2.lock() {
                    g.push_str(&line);
                    g.push('\n');
                }
            }
            let _ = tx.send(false);
        });
        let ready = rx.recv_timeout(Duration::from_secs(20)).unwrap_or(false);
        self.child = Some(child);
        if !ready {
            let log = self.stop();
            panic!("xswd did not become ready:\n{log}");
        }
    }

    /// Kills xswd with SIGKILL, as a crash would (its XDP programs stay).
    pub fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on the PID of a child we spawned and have not
            // reaped. `ip netns exec` execs xswd, so this is xswd itself.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGKILL);
            }
            let _ = c.wait();
        }
    }

    /// Stops xswd and returns its log.
    pub fn stop(&mut self) -> String {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on the PID of a child we spawned and have not reaped.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        std::thread::sleep(Duration::from_millis(100));
        self.log_text()
    }

    /// The latest stats report (waits for a fresh one).
    pub fn stats(&self) -> serde_json::Value {
        let before = std::fs::metadata(&self.stats)
            .and_then(|m| m.modified())
            .ok();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let now = std::fs::metadata(&self.stats)
                .and_then(|m| m.modified())
                .ok();
            if now.is_some() && now != before {
                break;
            }
            if Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let text = std::fs::read_to_string(&self.stats).unwrap_or_default();
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
    }

    /// A port's entry in the stats report.
    pub fn port(&self, bridge: usize, port: &str) -> serde_json::Value {
        let s = self.stats();
        s["bridges"][bridge]["ports"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == port).cloned())
            .unwrap_or(serde_json::Value::Null)
    }
}

impl Drop for Xswd {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A raw AF_PACKET socket on `dev` in namespace `ns`, for sending and
/// receiving whole frames. The kernel moves a received frame's VLAN tag out
/// of its bytes; `recv_until` puts it back from the packet's auxiliary data.
pub struct RawSock {
    fd: std::os::fd::OwnedFd,
}

impl RawSock {
    pub fn open(ns: &Netns, dev: &str) -> RawSock {
        let dev = dev.to_string();
        ns.spawn(move || {
            let proto = (libc::ETH_P_ALL as u16).to_be() as i32;
            // SAFETY: socket(2); the result is checked and then owned.
            let fd = unsafe {
                libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto)
            };
            assert!(
                fd >= 0,
                "AF_PACKET socket: {}",
                std::io::Error::last_os_error()
            );
            // SAFETY: a fresh descriptor we own.
            let fd: std::os::fd::OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) };
            let name = std::ffi::CString::new(dev.clone()).expect("name");
            // SAFETY: NUL-terminated name, read only.
            let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
            assert!(ifindex > 0, "no {dev}");
            // SAFETY: sockaddr_ll is plain data; zeroed is valid.
            let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sa.sll_family = libc::AF_PACKET as u16;
            sa.sll_protocol = proto as u16;
            sa.sll_ifindex = ifindex as i32;
            // SAFETY: bind with a sockaddr_ll of the size we pass.
            let r = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    &sa as *const libc::sockaddr_ll as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            assert_eq!(r, 0, "bind: {}", std::io::Error::last_os_error());
            let one: libc::c_int = 1;
            // SAFETY: PACKET_AUXDATA with an int of the size we pass.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_PACKET,
                    libc::PACKET_AUXDATA,
                    &one as *const _ as *const libc::c_void,
                    4,
                );
            }
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 200_000,
            };
            // SAFETY: SO_RCVTIMEO with a timeval of the size we pass.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    &tv as *const _ as *const libc::c_void,
                    std::mem::size_of::<libc::timeval>() as u32,
                );
            }
            RawSock { fd }
        })
        .join()
        .expect("raw socket")
    }

    pub fn send(&self, frame: &[u8]) {
        // SAFETY: `frame` is readable for its length during the call.
        let r = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        assert!(r >= 0, "send: {}", std::io::Error::last_os_error());
    }

    /// Frames received until `deadline`, filtered by `want`; stops at the first match.
    pub fn recv_until(&self, deadline: Instant, want: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 9300];
        let mut ctl = [0u64; 64];
        while Instant::now() < deadline {
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            // SAFETY: msghdr is plain data; zeroed is valid before we fill it.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = ctl.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&ctl);
            // SAFETY: every buffer msg points at is ours and writable for the call.
            let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, 0) };
            if n <= 0 {
                continue;
            }
            let mut frame = buf[..n as usize].to_vec();
            // SAFETY: walking the control messages the kernel wrote into
            // `ctl`, with the libc macros, within msg_controllen.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(&msg);
                while !c.is_null() {
                    if (*c).cmsg_level == libc::SOL_PACKET && (*c).cmsg_type == libc::PACKET_AUXDATA
                    {
                        let aux = &*(libc::CMSG_DATA(c) as *const libc::tpacket_auxdata);
                        if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 && frame.len() >= 12 {
                            let tpid = if aux.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                                aux.tp_vlan_tpid
                            } else {
                                0x8100
                            };
                            let mut tag = tpid.to_be_bytes().to_vec();
                            tag.extend_from_slice(&aux.tp_vlan_tci.to_be_bytes());
                            frame.splice(12..12, tag);
                        }
                    }
                    c = libc::CMSG_NXTHDR(&msg, c);
                }
            }
            if want(&frame) {
                return Some(frame);
            }
        }
        None
    }
}

/// An ARP request (who-has `tpa`, tell `spa`) from `mac`, with an 802.1Q tag if `vlan`.
pub fn arp_request(mac: [u8; 6], spa: [u8; 4], tpa: [u8; 4], vlan: Option<u16>) -> Vec<u8> {
    let mut f = vec![0xffu8; 6];
    f.extend_from_slice(&mac);
    if let Some(v) = vlan {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&v.to_be_bytes());
    }
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&spa);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&tpa);
    f.resize(f.len().max(60), 0);
    f
}

/// Deterministic test data.
pub fn data(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Sends `payload` over TCP from namespace `a` to `addr` (a server in `b`)
/// and returns what the server received.
pub fn tcp_transfer(a: &Netns, b: &Netns, addr: SocketAddr, payload: Vec<u8>) -> Vec<u8> {
    let server = b.spawn(move || {
        let l = TcpListener::bind(addr).expect("bind");
        l.set_nonblocking(false).expect("blocking");
        let (mut s, _) = l.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        got
    });
    std::thread::sleep(Duration::from_millis(200));
    let client = a.spawn(move || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        s.set_write_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        s.write_all(&payload).expect("send");
    });
    client.join().expect("client");
    server.join().expect("server")
}

/// Sends `n` bytes of test data (from `seed`) over TCP from `a` to `addr`
/// (a server in `b`) and asserts that they all arrive unchanged.
pub fn tcp_check(a: &Netns, b: &Netns, addr: &str, n: usize, seed: u64) {
    let want = data(n, seed);
    let got = tcp_transfer(a, b, addr.parse().expect("addr"), want.clone());
    assert_eq!(got.len(), n, "TCP bytes received");
    assert!(got == want, "TCP payload arrived changed");
}

/// Sends `n` UDP datagrams from `a` to `addr` and counts what a receiver in
/// `b` gets within a second of the last one.
pub fn udp_count(a: &Netns, b: &Netns, addr: SocketAddr, n: usize) -> usize {
    let rx = b.spawn(move || {
        let s = UdpSocket::bind(addr).expect("bind");
        s.set_read_timeout(Some(Duration::from_millis(1500)))
            .expect("timeout");
        let mut buf = [0u8; 2048];
        let mut got = 0;
        while s.recv(&mut buf).is_ok() {
            got += 1;
        }
        got
    });
    std::thread::sleep(Duration::from_millis(200));
    a.spawn(move || {
        let s = UdpSocket::bind(if addr.is_ipv6() {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        })
        .expect("bind");
        for i in 0..n {
            let _ = s.send_to(&(i as u32).to_be_bytes(), addr);
            std::thread::sleep(Duration::from_micros(200));
        }
    })
    .join()
    .expect("sender");
    rx.join().expect("receiver")
}

/// A bridge with port "vm" (ofport 1) on tap `tap` and "b" (ofport 2) on veth pb.
pub fn vm_and_b(tap: &str) -> String {
    format!(
        "[[bridge]]\nname = \"br0\"\n[[bridge.port]]\nname = \"vm\"\nofport = 1\ninterface = \"{tap}\"\n[[bridge.port]]\nname = \"b\"\nofport = 2\ninterface = \"pb\"\n"
    )
}
