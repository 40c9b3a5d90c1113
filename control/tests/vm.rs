//! A real VM behind xswd: QEMU (software emulation) boots Debian's kernel
//! with a busybox initramfs (`tests/vm/build-guest.sh`), its virtio-net
//! device on a tap that xswd switches to a namespace. The guest keeps its
//! default offloads (checksum offload and TSO negotiated with QEMU's tap),
//! so it hands the tap partial checksums and TCP super-frames: the test
//! checks that a download and an upload over TCP arrive intact, and that
//! the switch did complete checksums and cut super-frames. Needs root,
//! qemu-system-x86, cpio and apt (tests/setup-debian.sh installs them).

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Builds the guest once per machine (the packages are cached by the script).
fn guest() -> PathBuf {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("xsw-vm-guest");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vm/build-guest.sh");
    let o = Command::new("sh")
        .arg(&script)
        .arg(&out)
        .output()
        .expect("run build-guest.sh");
    assert!(
        o.status.success(),
        "build-guest.sh failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// The QEMU process, killed (by PID) and reaped when dropped.
struct Vm {
    child: Child,
    console: PathBuf,
}

impl Vm {
    fn console(&self) -> String {
        std::fs::read_to_string(&self.console).unwrap_or_default()
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn md5(data: &[u8], dir: &Path, name: &str) -> String {
    let f = dir.join(name);
    std::fs::write(&f, data).expect("write");
    let o = Command::new("md5sum").arg(&f).output().expect("md5sum");
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

#[test]
fn a_qemu_guest_with_default_offloads_downloads_and_uploads_over_tcp() {
    let _g = serial();
    let images = guest();
    let work =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("vm-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("work dir");
    let s = Netns::new("s");
    let b = Netns::new("b");
    veth(&b, "eth0", &s, "pb", 1500, 1);
    b.ip(&["addr", "add", "198.18.7.2/24", "dev", "eth0"]);

    // The host side: a server that sends 4 MB to whoever connects to port
    // 8080, and one that takes 4 MiB on port 5000.
    let down = data(4_000_000, 7);
    let down_md5 = md5(&down, &work, "down.bin");
    let sender = b.spawn(move || {
        let l = TcpListener::bind("198.18.7.2:8080").expect("bind 8080");
        l.set_nonblocking(true).expect("nonblocking");
        let deadline = Instant::now() + Duration::from_secs(150);
        while Instant::now() < deadline {
            match l.accept() {
                Ok((mut c, _)) => {
                    c.set_nonblocking(false).expect("blocking");
                    c.set_write_timeout(Some(Duration::from_secs(60)))
                        .expect("timeout");
                    return c.write_all(&down).is_ok();
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        false
    });
    let receiver = b.spawn(move || {
        let l = TcpListener::bind("198.18.7.2:5000").expect("bind 5000");
        l.set_nonblocking(true).expect("nonblocking");
        let deadline = Instant::now() + Duration::from_secs(150);
        while Instant::now() < deadline {
            if let Ok((c, _)) = l.accept() {
                let mut c: TcpStream = c;
                c.set_nonblocking(false).expect("blocking");
                c.set_read_timeout(Some(Duration::from_secs(60)))
                    .expect("timeout");
                let mut got = Vec::new();
                let _ = (&mut c).take(4 << 20).read_to_end(&mut got);
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Vec::new()
    });

    let console = work.join("console.log");
    let child = Command::new("ip")
        .args(["netns", "exec", &s.name, "qemu-system-x86_64"])
        .args(["-accel", "tcg", "-m", "256", "-nodefaults", "-no-reboot"])
        .args(["-display", "none", "-monitor", "none"])
        .arg("-kernel")
        .arg(images.join("vmlinuz"))
        .arg("-initrd")
        .arg(images.join("initrd.gz"))
        .args([
            "-append",
            "console=ttyS0 quiet panic=-1 xsw.ip=198.18.7.1/24 xsw.peer=198.18.7.2 xsw.job=both",
        ])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .args(["-netdev", "tap,id=n0,ifname=vmtap0,script=no,downscript=no"])
        .args(["-device", "virtio-net-pci,netdev=n0,mac=52:54:00:18:07:01"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(work.join("qemu.err")).expect("qemu.err"),
        ))
        .spawn()
        .expect("start qemu-system-x86_64 (installed by tests/setup-debian.sh)");
    let vm = Vm { child, console };
    // QEMU creates the tap as it starts; xswd opens it once it is there.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !s.exec(&["ip", "link", "show", "vmtap0"]).0 {
        assert!(
            Instant::now() < deadline,
            "QEMU made no tap: {}",
            std::fs::read_to_string(work.join("qemu.err")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    s.ip(&["link", "set", "vmtap0", "up"]);
    let x = Xswd::start(&s, &vm_and_b("vmtap0"), None);

    let deadline = Instant::now() + Duration::from_secs(180);
    while !vm.console().contains("XSW-GUEST-END") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = vm.console();
    let vm_port = x.port(0, "vm");
    let ctx = format!(
        "console:\n{out}\nport vm: {vm_port}\nxswd:\n{}",
        x.log_text()
    );
    assert!(
        out.contains("XSW-GUEST-END"),
        "the guest did not finish\n{ctx}"
    );
    assert!(
        out.contains(&format!("XSW-DOWNLOAD {down_md5} 4000000")),
        "the guest's download (md5 {down_md5}, 4000000 bytes)\n{ctx}"
    );
    assert!(sender.join().expect("sender"), "download sent\n{ctx}");
    let up = receiver.join().expect("receiver");
    let up_md5 = md5(&up, &work, "up.bin");
    assert!(
        out.contains(&format!("XSW-UPLOAD-SENDING {up_md5} 4194304")) && up.len() == 4 << 20,
        "the upload arrived intact ({} bytes, md5 {up_md5})\n{ctx}",
        up.len()
    );
    let be = &vm_port["backend"];
    assert!(
        be["rx_csum_completed"].as_u64().unwrap_or(0) > 0,
        "partial checksums from the guest were completed\n{ctx}"
    );
    assert!(
        be["rx_gso_frames"].as_u64().unwrap_or(0) > 0
            && be["rx_gso_segments"].as_u64().unwrap_or(0)
                > be["rx_gso_frames"].as_u64().unwrap_or(0),
        "the guest's TSO super-frames were cut into segments\n{ctx}"
    );
    assert_eq!(
        be["rx_oversize"].as_u64(),
        Some(0),
        "nothing dropped as oversize\n{ctx}"
    );
    drop(vm);
    let _ = std::fs::remove_dir_all(&work);
}
