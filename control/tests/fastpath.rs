//! xsw on real interfaces: xswd switching between network namespaces over
//! veth pairs and taps, through AF_XDP sockets and its XDP program. Every
//! namespace, veth and tap is created by the test and removed when it ends.
//! Needs root (CI runs as root); never touches the machine's own uplink.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use common::*;
use xsw_datapath::csum::checksum;

/// Two hosts, A and B, each behind a veth into the switch's namespace S.
struct Pair {
    s: Netns,
    a: Netns,
    b: Netns,
}

fn pair(mtu: u32, queues: u32) -> Pair {
    let s = Netns::new("s");
    let a = Netns::new("a");
    let b = Netns::new("b");
    veth(&a, "eth0", &s, "pa", mtu, queues);
    veth(&b, "eth0", &s, "pb", mtu, queues);
    a.ip(&["addr", "add", "198.18.1.1/24", "dev", "eth0"]);
    b.ip(&["addr", "add", "198.18.1.2/24", "dev", "eth0"]);
    Pair { s, a, b }
}

const TWO_PORTS: &str = r#"
[[bridge]]
name = "br0"
[[bridge.port]]
name = "a"
ofport = 1
interface = "pa"
[[bridge.port]]
name = "b"
ofport = 2
interface = "pb"
"#;

#[test]
fn ping_and_tcp_between_namespaces() {
    let _g = serial();
    // Default veths have two rx queues: xsw binds a socket on each.
    let t = pair(1500, 2);
    let x = Xswd::start(&t.s, TWO_PORTS, None);
    let (ok, out) = t.a.ping("198.18.1.2", 5, &[]);
    assert!(ok, "ping through xsw failed:\n{out}\n{}", x.log_text());
    // The hosts keep their default offloads: their TCP and UDP leave with
    // partial checksums, which the switch completes.
    tcp_check(&t.a, &t.b, "198.18.1.2:5001", 8 << 20, 1);
    let udp = udp_count(&t.a, &t.b, "198.18.1.2:5003".parse().expect("addr"), 200);
    assert!(udp >= 190, "UDP datagrams delivered: {udp} of 200");
    // The same over IPv6 (its pseudo-header differs).
    t.a.ip(&["addr", "add", "2001:db8:1::1/64", "dev", "eth0", "nodad"]);
    t.b.ip(&["addr", "add", "2001:db8:1::2/64", "dev", "eth0", "nodad"]);
    tcp_check(&t.a, &t.b, "[2001:db8:1::2]:5009", 2 << 20, 9);
    let udp6 = udp_count(
        &t.a,
        &t.b,
        "[2001:db8:1::2]:5010".parse().expect("addr"),
        100,
    );
    assert!(udp6 >= 95, "UDP/IPv6 datagrams delivered: {udp6} of 100");
    let pa = x.port(0, "a");
    assert!(
        pa["backend"]["rx_csum_completed"].as_u64().unwrap_or(0) > 1000,
        "partial checksums completed: {pa}"
    );
    assert!(
        pa["stats"]["rx_packets"].as_u64().unwrap_or(0) > 1000,
        "{pa}"
    );
    assert!(
        pa["backend"]["xdp"]["redirect"].as_u64().unwrap_or(0) > 1000,
        "frames redirected by XDP: {pa}"
    );
    assert!(
        pa["device"].as_str().unwrap_or("").contains("2 queue"),
        "{pa}"
    );
}

#[test]
fn vlan_access_ports_isolate_and_a_trunk_carries_both() {
    let _g = serial();
    let s = Netns::new("s");
    let a1 = Netns::new("a1");
    let a2 = Netns::new("a2");
    let b1 = Netns::new("b1");
    let tr = Netns::new("t");
    veth(&a1, "eth0", &s, "pa1", 1500, 1);
    veth(&a2, "eth0", &s, "pa2", 1500, 1);
    veth(&b1, "eth0", &s, "pb1", 1500, 1);
    veth(&tr, "eth0", &s, "ptr", 1500, 1);
    // One subnet, two VLANs: b1 must be unreachable from a1.
    a1.ip(&["addr", "add", "198.18.2.1/24", "dev", "eth0"]);
    a2.ip(&["addr", "add", "198.18.2.2/24", "dev", "eth0"]);
    b1.ip(&["addr", "add", "198.18.2.3/24", "dev", "eth0"]);
    let cfg = r#"
[[bridge]]
name = "br0"
[[bridge.port]]
name = "a1"
ofport = 1
interface = "pa1"
tag = 10
[[bridge.port]]
name = "a2"
ofport = 2
interface = "pa2"
tag = 10
[[bridge.port]]
name = "b1"
ofport = 3
interface = "pb1"
tag = 20
[[bridge.port]]
name = "trunk"
ofport = 4
interface = "ptr"
vlan_mode = "trunk"
trunks = [10, 20]
"#;
    let x = Xswd::start(&s, cfg, None);
    assert!(
        a1.ping("198.18.2.2", 3, &[]).0,
        "same VLAN must be reachable"
    );
    let (ok, _) = a1.ping("198.18.2.3", 2, &[]);
    assert!(!ok, "VLAN 10 must not reach VLAN 20");
    // The trunk's end speaks tagged frames (this kernel has no 802.1Q
    // devices, so the test sends and reads them raw).
    let raw = RawSock::open(&tr, "eth0");
    let me = [2u8, 0, 0, 0, 0x77, 4];
    let arp_reply_from = |ip: [u8; 4], vid: u16| {
        move |f: &[u8]| {
            f.len() >= 46
                && f[12..14] == [0x81, 0x00]
                && u16::from_be_bytes([f[14], f[15]]) & 0xfff == vid
                && f[16..18] == [0x08, 0x06]
                && f[24..26] == [0, 2]
                && f[32..36] == ip
        }
    };
    for (vid, ip, name) in [(10u16, [198, 18, 2, 1], "a1"), (20, [198, 18, 2, 3], "b1")] {
        let mut got = None;
        for _ in 0..5 {
            raw.send(&arp_request(me, [198, 18, 2, 200], ip, Some(vid)));
            got = raw.recv_until(
                Instant::now() + Duration::from_millis(600),
                arp_reply_from(ip, vid),
            );
            if got.is_some() {
                break;
            }
        }
        assert!(
            got.is_some(),
            "the trunk carries VLAN {vid}: no tagged ARP reply from {name}\n{}",
            x.log_text()
        );
    }
    // Asking for b1 in VLAN 10 gets nothing: VLANs stay apart on the trunk too.
    raw.send(&arp_request(
        me,
        [198, 18, 2, 200],
        [198, 18, 2, 3],
        Some(10),
    ));
    assert!(raw
        .recv_until(
            Instant::now() + Duration::from_millis(800),
            arp_reply_from([198, 18, 2, 3], 10)
        )
        .is_none());
    raw.send(&arp_request(
        me,
        [198, 18, 2, 200],
        [198, 18, 2, 3],
        Some(10),
    ));
    assert!(raw
        .recv_until(
            Instant::now() + Duration::from_millis(800),
            arp_reply_from([198, 18, 2, 3], 20)
        )
        .is_none());
}

#[test]
fn jumbo_frames_end_to_end() {
    let _g = serial();
    let t = pair(9000, 1);
    let x = Xswd::start(&t.s, TWO_PORTS, None);
    let (ok, out) = t.a.ping("198.18.1.2", 3, &["-s", "8972", "-M", "do"]);
    assert!(
        ok,
        "9000-byte ping with DF failed:\n{out}\n{}",
        x.log_text()
    );
    tcp_check(&t.a, &t.b, "198.18.1.2:5002", 16 << 20, 2);
    let pa = x.port(0, "a");
    assert!(
        pa["backend"]["rx_csum_completed"].as_u64().unwrap_or(0) > 1000,
        "partial checksums of 9000-byte frames completed: {pa}"
    );
    let pkts = pa["stats"]["rx_packets"].as_u64().unwrap_or(1);
    let bytes = pa["stats"]["rx_bytes"].as_u64().unwrap_or(0);
    // The data went as ~9000-byte frames (ACKs are the small ones in the other direction).
    assert!(
        bytes / pkts.max(1) > 8000,
        "average frame {} bytes: {pa}",
        bytes / pkts.max(1)
    );
    let kernel_drops = pa["backend"]["kernel_rx_dropped"].as_u64().unwrap_or(0);
    assert_eq!(kernel_drops, 0, "{pa}");
}

/// Opens tap `name` in the current thread's namespace; the test holds its
/// descriptor, as a hypervisor holds a VM's.
fn open_tap(name: &str) -> OwnedFd {
    open_tap_with(name, false)
}

/// `TUNSETOFFLOAD`, `_IOW('T', 208, unsigned int)`.
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
/// Size of `struct virtio_net_hdr` (no mergeable buffers).
const VNET_HDR: usize = 10;

/// Opens tap `name`; with `vnet`, as QEMU opens one for a virtio-net guest
/// with checksum offload: every frame behind a virtio-net header
/// (`IFF_VNET_HDR`), and the kernel told it may hand over partial
/// checksums (`TUN_F_CSUM`).
fn open_tap_with(name: &str, vnet: bool) -> OwnedFd {
    let path = std::ffi::CString::new("/dev/net/tun").expect("path");
    // SAFETY: open(2) on a NUL-terminated path; checked below.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    assert!(fd >= 0, "open tun: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: zeroed ifreq is valid; TUNSETIFF reads name and flags.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    let vnet_flag = if vnet { libc::IFF_VNET_HDR } else { 0 };
    req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | vnet_flag) as libc::c_short;
    // SAFETY: see above; `req` outlives the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &req) };
    assert_eq!(r, 0, "TUNSETIFF: {}", std::io::Error::last_os_error());
    if vnet {
        // SAFETY: TUNSETOFFLOAD takes the flags by value; TUN_F_CSUM = 1.
        let r = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD, 1 as libc::c_ulong) };
        assert_eq!(r, 0, "TUNSETOFFLOAD: {}", std::io::Error::last_os_error());
    }
    fd
}

/// A UDP/IPv4 frame from `src` to `dst` whose checksum is left partial,
/// as a guest with checksum offload hands it to its virtio-net device:
/// the field holds the folded pseudo-header sum.
fn partial_udp(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    port: u16,
    payload: &[u8],
) -> Vec<u8> {
    let ulen = 8 + payload.len();
    let mut ip = vec![0x45u8, 0, 0, 0, 0, 7, 0x40, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&((20 + ulen) as u16).to_be_bytes());
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src);
    pseudo.extend_from_slice(&dst);
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&(ulen as u16).to_be_bytes());
    let partial = !checksum(&pseudo);
    let mut f = dst_mac.to_vec();
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&[0x9c, 0x40]);
    f.extend_from_slice(&port.to_be_bytes());
    f.extend_from_slice(&(ulen as u16).to_be_bytes());
    f.extend_from_slice(&partial.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A TCP/IPv4 super-frame as a guest with TSO hands it over: one header
/// over `payload` bytes, a partial checksum, and a virtio-net header
/// saying GSO TCPv4 with segment size `mss`.
fn tso_frame(dst_mac: [u8; 6], src_mac: [u8; 6], payload: &[u8], mss: u16) -> Vec<u8> {
    let tcp_len = 20 + payload.len();
    let mut ip = vec![0x45u8, 0, 0, 0, 0x10, 0, 0x40, 0, 64, 6, 0, 0];
    ip[2..4].copy_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
    ip.extend_from_slice(&[198, 18, 4, 1, 198, 18, 4, 2]);
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut pseudo = ip[12..20].to_vec();
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&(tcp_len as u16).to_be_bytes());
    let partial = !checksum(&pseudo);
    // virtio_net_hdr: NEEDS_CSUM, GSO_TCPV4, hdr_len 54, gso_size, csum_start 34, csum_offset 16.
    let mut m = vec![1u8, 1];
    m.extend_from_slice(&54u16.to_le_bytes());
    m.extend_from_slice(&mss.to_le_bytes());
    m.extend_from_slice(&34u16.to_le_bytes());
    m.extend_from_slice(&16u16.to_le_bytes());
    m.extend_from_slice(&dst_mac);
    m.extend_from_slice(&src_mac);
    m.extend_from_slice(&[0x08, 0x00]);
    m.extend_from_slice(&ip);
    // Ports 40000 -> 5008, seq 1000, ack 1, ACK|PSH, window 512.
    m.extend_from_slice(&[
        0x9c, 0x40, 0x13, 0x90, 0, 0, 0x03, 0xe8, 0, 0, 0, 1, 0x50, 0x18, 2, 0,
    ]);
    m.extend_from_slice(&partial.to_be_bytes());
    m.extend_from_slice(&[0, 0]);
    m.extend_from_slice(payload);
    m
}

#[test]
fn a_guests_tso_super_frame_leaves_as_segments_that_fit() {
    let _g = serial();
    let s = Netns::new("s");
    let b = Netns::new("b");
    veth(&b, "eth0", &s, "pb", 1500, 1);
    let tapfd = s
        .spawn(|| open_tap_with("vmtap2", true))
        .join()
        .expect("tap");
    s.ip(&["link", "set", "vmtap2", "up"]);
    let x = Xswd::start(&s, &vm_and_b("vmtap2"), None);
    let raw = RawSock::open(&b, "eth0");
    let mut tap = std::fs::File::from(tapfd);
    let payload = data(20_000, 9);
    let b_mac = [2u8, 0, 0, 0, 0x55, 2];
    let frame = tso_frame(b_mac, [2, 0, 0, 0, 0x44, 3], &payload, 1448);
    tap.write_all(&frame).expect("write super-frame");
    // The segments B sees: valid, at most 1500 bytes of IP, in order.
    let mut got: Vec<Vec<u8>> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let want = payload.len().div_ceil(1460);
    while got.len() < want && Instant::now() < deadline {
        if let Some(f) = raw.recv_until(deadline, |f| {
            f.len() > 54 && f[12..14] == [0x08, 0x00] && f[23] == 6 && f[36..38] == [0x13, 0x90]
        }) {
            got.push(f);
        }
    }
    let vm = x.port(0, "vm");
    assert_eq!(
        got.len(),
        want,
        "segments at B (MTU 1500: 1460 bytes each)\n{vm}\n{}",
        x.log_text()
    );
    let mut joined = Vec::new();
    for (i, f) in got.iter().enumerate() {
        assert!(
            f.len() - 14 <= 1500,
            "segment {i}: {} bytes of IP",
            f.len() - 14
        );
        assert_eq!(checksum(&f[14..34]), 0, "segment {i}: IPv4 header checksum");
        assert_eq!(
            xsw_datapath::csum::l4_valid(f),
            Some(true),
            "segment {i}: TCP checksum"
        );
        let seq = u32::from_be_bytes([f[38], f[39], f[40], f[41]]);
        assert_eq!(
            seq as usize,
            1000 + joined.len(),
            "segment {i}: sequence number"
        );
        assert_eq!(
            f[47] & 0x08 != 0,
            i + 1 == want,
            "segment {i}: PSH on the last only"
        );
        joined.extend_from_slice(&f[54..]);
    }
    assert!(joined == payload, "the payload arrived whole and in order");
    assert_eq!(vm["backend"]["rx_gso_frames"].as_u64(), Some(1), "{vm}");
    assert_eq!(
        vm["backend"]["rx_gso_segments"].as_u64(),
        Some(want as u64),
        "{vm}"
    );
    assert_eq!(
        vm["stats"]["rx_packets"].as_u64(),
        Some(want as u64),
        "{vm}"
    );
}

#[test]
fn a_vm_tap_with_checksum_offload_gets_and_gives_complete_checksums() {
    let _g = serial();
    let s = Netns::new("s");
    let b = Netns::new("b");
    veth(&b, "eth0", &s, "pb", 1500, 1);
    b.ip(&["addr", "add", "198.18.4.2/24", "dev", "eth0"]);
    let vm_mac = [2u8, 0, 0, 0, 0x44, 2];
    let vm_ip = [198u8, 18, 4, 1];
    b.ip(&[
        "neigh",
        "add",
        "198.18.4.1",
        "lladdr",
        "02:00:00:00:44:02",
        "dev",
        "eth0",
    ]);
    let tapfd = s
        .spawn(|| open_tap_with("vmtap1", true))
        .join()
        .expect("tap");
    s.ip(&["link", "set", "vmtap1", "up"]);
    let x = Xswd::start(&s, &vm_and_b("vmtap1"), None);
    let b_mac = {
        let (ok, out) = b.exec(&["cat", "/sys/class/net/eth0/address"]);
        assert!(ok, "{out}");
        let v: Vec<u8> = out
            .trim()
            .split(':')
            .map(|h| u8::from_str_radix(h, 16).expect("hex"))
            .collect();
        [v[0], v[1], v[2], v[3], v[4], v[5]]
    };
    let mut tap = std::fs::File::from(tapfd);
    let mut reader = tap.try_clone().expect("clone");
    let (txr, rxr) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if txr.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    // VM -> B: a datagram with a partial checksum and NEEDS_CSUM in its
    // virtio-net header (csum_start 34, csum_offset 6).
    let rx = b.spawn(|| {
        let u = std::net::UdpSocket::bind("198.18.4.2:5006").expect("bind");
        u.set_read_timeout(Some(Duration::from_secs(1)))
            .expect("timeout");
        let mut buf = [0u8; 2048];
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(n) = u.recv(&mut buf) {
                return Some(buf[..n].to_vec());
            }
        }
        None
    });
    let mut hdr = [0u8; VNET_HDR];
    hdr[0] = 1; // VIRTIO_NET_HDR_F_NEEDS_CSUM
    hdr[6..8].copy_from_slice(&34u16.to_le_bytes());
    hdr[8..10].copy_from_slice(&6u16.to_le_bytes());
    let frame = partial_udp(
        b_mac,
        vm_mac,
        vm_ip,
        [198, 18, 4, 2],
        5006,
        b"from the guest",
    );
    let mut msg = hdr.to_vec();
    msg.extend_from_slice(&frame);
    let deadline = Instant::now() + Duration::from_secs(8);
    while !rx.is_finished() && Instant::now() < deadline {
        tap.write_all(&msg).expect("write");
        std::thread::sleep(Duration::from_millis(200));
    }
    let got = rx.join().expect("receiver");
    assert_eq!(
        got.as_deref(),
        Some(&b"from the guest"[..]),
        "a datagram with a partial checksum from the guest reached B\n{}",
        x.log_text()
    );
    let vm = x.port(0, "vm");
    assert!(
        vm["backend"]["rx_csum_completed"].as_u64().unwrap_or(0) >= 1,
        "{vm}"
    );
    // B -> VM: B's datagrams leave with partial checksums (veth offload);
    // the guest reads them with a complete one.
    let sender = b.spawn(|| {
        let u = std::net::UdpSocket::bind("198.18.4.2:0").expect("bind");
        for _ in 0..20 {
            let _ = u.send_to(b"to the guest", "198.18.4.1:5007");
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = None;
    while seen.is_none() && Instant::now() < deadline {
        if let Ok(m) = rxr.recv_timeout(Duration::from_millis(300)) {
            let f = &m[VNET_HDR..];
            if f.len() >= 42
                && f[12..14] == [0x08, 0x00]
                && f[23] == 17
                && f[36..38] == [0x13, 0x8f]
            {
                seen = Some(f.to_vec());
            }
        }
    }
    sender.join().expect("sender");
    let f = seen.unwrap_or_else(|| panic!("no datagram from B at the guest\n{}", x.log_text()));
    assert_eq!(
        xsw_datapath::csum::l4_valid(&f),
        Some(true),
        "the guest got a complete UDP checksum: {f:02x?}"
    );
}

#[test]
fn a_vm_tap_talks_to_a_namespace() {
    let _g = serial();
    let s = Netns::new("s");
    let b = Netns::new("b");
    veth(&b, "eth0", &s, "pb", 1500, 1);
    b.ip(&["addr", "add", "198.18.4.2/24", "dev", "eth0"]);
    // The "VM": a tap in the switch's namespace whose descriptor this test holds.
    let tapfd = s.spawn(|| open_tap("vmtap0")).join().expect("tap");
    s.ip(&["link", "set", "vmtap0", "up"]);
    let x = Xswd::start(&s, &vm_and_b("vmtap0"), None);
    let mut tap = std::fs::File::from(tapfd);
    let vm_mac = [2u8, 0, 0, 0, 0x44, 1];
    let vm_ip = [198u8, 18, 4, 1];
    // ARP who-has 198.18.4.2, from the VM.
    let mut arp = vec![0xffu8; 6];
    arp.extend_from_slice(&vm_mac);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&vm_mac);
    arp.extend_from_slice(&vm_ip);
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&[198, 18, 4, 2]);
    arp.resize(60, 0);
    // The tap is blocking: read on a helper thread with a deadline.
    let mut reader = tap.try_clone().expect("clone");
    let (txr, rxr) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 2048];
        while let Ok(n) = reader.read(&mut buf) {
            if txr.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut b_mac = None;
    while b_mac.is_none() && Instant::now() < deadline {
        tap.write_all(&arp).expect("write arp");
        while let Ok(f) = rxr.recv_timeout(Duration::from_millis(300)) {
            if f.len() >= 42
                && f[12..14] == [0x08, 0x06]
                && f[20..22] == [0, 2]
                && f[28..32] == [198, 18, 4, 2]
            {
                b_mac = Some([f[22], f[23], f[24], f[25], f[26], f[27]]);
                break;
            }
        }
    }
    let b_mac = b_mac.unwrap_or_else(|| panic!("no ARP reply through xsw\n{}", x.log_text()));
    // ICMP echo to B; expect the reply.
    let mut ip = vec![0x45u8, 0, 0, 28 + 8, 0, 1, 0, 0, 64, 1, 0, 0];
    ip.extend_from_slice(&vm_ip);
    ip.extend_from_slice(&[198, 18, 4, 2]);
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut icmp = vec![
        8u8, 0, 0, 0, 0x12, 0x34, 0, 1, b'x', b's', b'w', b'!', 0, 0, 0, 0,
    ];
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    ip[2..4].copy_from_slice(&((20 + icmp.len()) as u16).to_be_bytes());
    ip[10..12].copy_from_slice(&[0, 0]);
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut frame = b_mac.to_vec();
    frame.extend_from_slice(&vm_mac);
    frame.extend_from_slice(&[0x08, 0x00]);
    frame.extend_from_slice(&ip);
    frame.extend_from_slice(&icmp);
    let mut replied = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !replied && Instant::now() < deadline {
        tap.write_all(&frame).expect("write echo");
        while let Ok(f) = rxr.recv_timeout(Duration::from_millis(300)) {
            if f.len() >= 34 + 8
                && f[12..14] == [0x08, 0x00]
                && f[23] == 1
                && f[34] == 0
                && f[26..30] == [198, 18, 4, 2]
            {
                replied = true;
                break;
            }
        }
    }
    assert!(replied, "no echo reply from the namespace to the VM tap");
    let vm = x.port(0, "vm");
    assert!(
        vm["device"].as_str().unwrap_or("").contains("vmtap0 afxdp"),
        "{vm}"
    );
}

#[test]
fn host_traffic_on_a_port_still_reaches_the_host() {
    let _g = serial();
    let t = pair(1500, 1);
    // The switch's namespace has its own address on port a's interface.
    t.s.ip(&["addr", "add", "198.18.1.100/24", "dev", "pa"]);
    let x = Xswd::start(&t.s, TWO_PORTS, None);
    assert!(
        t.a.ping("198.18.1.100", 3, &[]).0,
        "the host's own address must still answer"
    );
    assert!(t.a.ping("198.18.1.2", 3, &[]).0, "and switching goes on");
    let pa = x.port(0, "a");
    assert!(
        pa["backend"]["xdp"]["pass_host"].as_u64().unwrap_or(0) >= 3,
        "XDP passed host traffic: {pa}"
    );
}

#[test]
fn a_drop_rule_is_enforced_in_xdp() {
    let _g = serial();
    let t = pair(1500, 1);
    // The bridge reads its rules from flows.txt next to the configuration.
    let cfg = TWO_PORTS.replace(
        "name = \"br0\"\n",
        "name = \"br0\"\nflows = \"flows.txt\"\n",
    );
    let flows = "priority=100,udp,tp_dst=9999,actions=drop\npriority=0,actions=normal\n";
    let x = Xswd::start(&t.s, &cfg, Some(flows));
    assert!(t.a.ping("198.18.1.2", 2, &[]).0);
    let before = x.port(0, "a");
    let rx0 = before["stats"]["rx_packets"].as_u64().unwrap_or(0);
    let addr: SocketAddr = "198.18.1.2:9999".parse().expect("addr");
    let got = udp_count(&t.a, &t.b, addr, 200);
    assert_eq!(got, 0, "the drop rule let {got} datagrams through");
    let ok: SocketAddr = "198.18.1.2:9998".parse().expect("addr");
    assert!(
        udp_count(&t.a, &t.b, ok, 20) >= 18,
        "other UDP still passes"
    );
    std::thread::sleep(Duration::from_millis(1200));
    let after = x.port(0, "a");
    let xdp_drops = after["backend"]["xdp"]["drop_rule"].as_u64().unwrap_or(0);
    assert!(xdp_drops >= 200, "XDP drop counter: {after}");
    let rx1 = after["stats"]["rx_packets"].as_u64().unwrap_or(0);
    assert!(
        rx1 - rx0 < 100,
        "userspace saw {} frames: the drops happened in the kernel",
        rx1 - rx0
    );
    let stats = x.stats();
    let rule = stats["bridges"][0]["rules"]
        .as_array()
        .and_then(|r| {
            r.iter()
                .find(|r| r["dump"].as_str().unwrap_or("").contains("tp_dst=9999"))
                .cloned()
        })
        .unwrap_or_default();
    assert_eq!(rule["in_xdp"], true, "{rule}");
    assert!(
        rule["n_packets"].as_u64().unwrap_or(0) >= 200,
        "the rule's counter includes XDP drops: {rule}"
    );
}

#[test]
fn removing_a_port_leaves_the_others_forwarding() {
    let _g = serial();
    let t = pair(1500, 1);
    let c = Netns::new("c");
    veth(&c, "eth0", &t.s, "pc", 1500, 1);
    c.ip(&["addr", "add", "198.18.1.3/24", "dev", "eth0"]);
    let cfg = format!("{TWO_PORTS}[[bridge.port]]\nname = \"c\"\nofport = 3\ninterface = \"pc\"\n");
    let x = Xswd::start(&t.s, &cfg, None);
    assert!(t.a.ping("198.18.1.3", 2, &[]).0);
    // Traffic keeps flowing from a to b while c's veth disappears.
    let a_name = t.a.name.clone();
    let pinger = std::thread::spawn(move || {
        try_run(&[
            "ip",
            "netns",
            "exec",
            &a_name,
            "ping",
            "-n",
            "-c",
            "25",
            "-i",
            "0.2",
            "-W",
            "2",
            "198.18.1.2",
        ])
    });
    std::thread::sleep(Duration::from_millis(1500));
    t.s.ip(&["link", "del", "pc"]);
    let (_, out) = pinger.join().expect("ping");
    let lost: u32 = out
        .split(',')
        .find(|p| p.contains("received"))
        .and_then(|p| p.trim().split(' ').next())
        .and_then(|n| n.parse::<u32>().ok())
        .map_or(25, |got| 25 - got);
    assert!(lost <= 1, "a->b lost {lost} of 25 while c vanished:\n{out}");
    assert!(t.a.ping("198.18.1.2", 3, &[]).0, "a->b after c vanished");
    std::thread::sleep(Duration::from_millis(1500));
    let pc = x.port(0, "c");
    assert_eq!(pc["up"], false, "{pc}");
    let log = x.log_text();
    assert!(log.contains("port c failed"), "{log}");
}

#[test]
fn an_internal_port_gives_the_host_an_address_on_the_bridge() {
    let _g = serial();
    let t = pair(1500, 1);
    let cfg = format!("{TWO_PORTS}[[bridge.port]]\nname = \"host\"\nofport = 100\ntype = \"internal\"\ninterface = \"xswhost0\"\n");
    let x = Xswd::start(&t.s, &cfg, None);
    t.s.ip(&["addr", "add", "198.18.1.254/24", "dev", "xswhost0"]);
    let (ok, out) = t.a.ping("198.18.1.254", 3, &[]);
    assert!(
        ok,
        "host address on the internal port:\n{out}\n{}",
        x.log_text()
    );
    // TCP both ways between the namespace (default offloads: partial
    // checksums, completed on port a) and the host stack behind the tap.
    tcp_check(&t.a, &t.s, "198.18.1.254:5004", 4 << 20, 4);
    tcp_check(&t.s, &t.a, "198.18.1.1:5005", 4 << 20, 5);
    // A frame longer than the switch takes (9216 bytes) from the host side
    // is dropped and counted, not cut short and forwarded.
    t.s.ip(&["link", "set", "xswhost0", "mtu", "9600"]);
    let raw = RawSock::open(&t.s, "xswhost0");
    let mut big = vec![0xffu8; 6];
    big.extend_from_slice(&[2, 0, 0, 0, 0x55, 1, 0x88, 0xb5]);
    big.resize(9400, 0);
    raw.send(&big);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut host = x.port(0, "host");
    while host["backend"]["rx_oversize"].as_u64() != Some(1) && Instant::now() < deadline {
        host = x.port(0, "host");
    }
    assert_eq!(host["backend"]["rx_oversize"].as_u64(), Some(1), "{host}");
    let pb = x.port(0, "b");
    assert_eq!(
        pb["stats"]["tx_bytes"].as_u64().map(|b| b > 9000),
        Some(false),
        "{pb}"
    );
}

#[test]
fn a_stale_program_is_replaced_and_programs_are_detached_on_exit() {
    let _g = serial();
    let t = pair(1500, 1);
    let mut x = Xswd::start(&t.s, TWO_PORTS, None);
    assert!(t.a.ping("198.18.1.2", 2, &[]).0);
    x.crash();
    let link = t.s.ip(&["link", "show", "pa"]);
    assert!(
        link.contains("xdp"),
        "after a crash the program stays attached: {link}"
    );
    // A new xswd takes over the interface despite the stale program.
    let mut x = Xswd::start(&t.s, TWO_PORTS, None);
    assert!(
        t.a.ping("198.18.1.2", 3, &[]).0,
        "switching after replacing a stale program"
    );
    let log = x.stop();
    assert!(log.contains("XDP programs detached"), "{log}");
    for dev in ["pa", "pb"] {
        let link = t.s.ip(&["link", "show", dev]);
        assert!(
            !link.contains("xdp"),
            "{dev} still has an XDP program after a clean stop: {link}"
        );
    }
}

#[test]
fn startup_errors_say_what_to_do() {
    let _g = serial();
    let s = Netns::new("s");
    let dir = std::env::temp_dir().join(format!("{}-bad", s.name));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("x.toml"), "[[bridge]]\nname = \"br0\"\n[[bridge.port]]\nname = \"a\"\nofport = 1\ninterface = \"nosuch0\"\n").expect("write");
    let sock = dir.join("x.sock");
    let (ok, out) = s.exec(&[
        env!("CARGO_BIN_EXE_xswd"),
        "--no-state",
        "--socket",
        sock.to_str().unwrap_or(""),
        "--config",
        dir.join("x.toml").to_str().unwrap_or(""),
    ]);
    assert!(!ok);
    assert!(out.contains("no interface named nosuch0"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}
