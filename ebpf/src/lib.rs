//! xsw-ebpf: the XDP classifier that runs on every port, and typed handles
//! for its maps.
//!
//! The program (`src/bpf/xsw.bpf.c`) is built by libbpf-cargo's
//! SkeletonBuilder in build.rs and embedded here as an object file; each
//! port loads its own instance ([`XdpProgram`]), so each port has its own
//! configuration, drop rules, counters and XSKMAP. Per frame the program
//! passes the host's own traffic to the host stack, drops frames that surely
//! match a pushed drop rule, and redirects everything else to the port's
//! AF_XDP socket for the frame's rx queue.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, RawFd};

use libbpf_rs::{MapCore, MapFlags, Object, ObjectBuilder, ProgramInput};

/// The compiled program.
static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/xsw.bpf.o"));

/// Most rx queues a port can have sockets on.
pub const MAX_QUEUES: u32 = 64;
/// Most drop rules the program evaluates.
pub const MAX_RULES: usize = 64;
/// Most host addresses per family.
pub const MAX_HOST_ADDRS: usize = 64;

/// What the program did with frames; one counter each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Passed to the host stack (the host's own traffic).
    PassHost = 0,
    /// Dropped by a rule.
    DropRule = 1,
    /// Redirected to the AF_XDP socket.
    Redirect = 2,
    /// Meant for the socket, but no socket on the frame's rx queue: dropped.
    NoSocket = 3,
    /// The port was not configured yet: passed.
    Disabled = 4,
}

impl Verdict {
    /// All verdicts, in counter order.
    pub const ALL: [Verdict; 5] = [
        Verdict::PassHost,
        Verdict::DropRule,
        Verdict::Redirect,
        Verdict::NoSocket,
        Verdict::Disabled,
    ];

    /// The counter name.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::PassHost => "xdp_pass_host",
            Verdict::DropRule => "xdp_drop_rule",
            Verdict::Redirect => "xdp_redirect",
            Verdict::NoSocket => "xdp_no_socket",
            Verdict::Disabled => "xdp_disabled",
        }
    }
}

/// How the program is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// In the driver (native XDP).
    Native,
    /// In the generic network stack (SKB mode), for drivers without XDP.
    Generic,
}

impl AttachMode {
    /// `native` or `generic`.
    pub fn name(self) -> &'static str {
        match self {
            AttachMode::Native => "native",
            AttachMode::Generic => "generic",
        }
    }
}

/// A drop rule as the program evaluates it: a frame matches when
/// `(key.w[i] & mask[i]) == value[i]` for the first four words of xsw's
/// flow key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpRule {
    /// Significant bits.
    pub mask: [u64; 4],
    /// Their values (already masked).
    pub value: [u64; 4],
    /// The rule reads IPv4/ARP/L4 fields (the program cannot evaluate those
    /// for IPv6 and 802.3 frames and leaves them to userspace).
    pub needs_l3: bool,
}

/// The crate's error type.
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    /// The program could not be loaded into the kernel.
    #[error("loading the XDP program failed: {0}. xsw needs root (CAP_BPF and CAP_NET_ADMIN) and a kernel with BPF and XDP")]
    Load(String),
    /// Attaching to an interface failed in every mode.
    #[error("attaching XDP to ifindex {ifindex} failed: {msg}")]
    Attach {
        /// Interface index.
        ifindex: i32,
        /// What the kernel said.
        msg: String,
    },
    /// A map operation failed.
    #[error("XDP map {map}: {msg}")]
    Map {
        /// Map name.
        map: &'static str,
        /// What failed.
        msg: String,
    },
    /// A limit of the program was exceeded.
    #[error("{0}")]
    Limit(String),
}

type Result<T> = std::result::Result<T, EbpfError>;

/// One loaded instance of the program (one per port).
#[derive(Debug)]
pub struct XdpProgram {
    obj: Object,
    attached: Option<(i32, AttachMode)>,
}

fn map_err(map: &'static str) -> impl Fn(libbpf_rs::Error) -> EbpfError {
    move |e| EbpfError::Map {
        map,
        msg: e.to_string(),
    }
}

impl XdpProgram {
    /// Loads a fresh instance into the kernel (not attached yet).
    pub fn load() -> Result<Self> {
        let open = ObjectBuilder::default()
            .open_memory(OBJECT)
            .map_err(|e| EbpfError::Load(e.to_string()))?;
        let obj = open.load().map_err(|e| EbpfError::Load(e.to_string()))?;
        Ok(XdpProgram {
            obj,
            attached: None,
        })
    }

    fn map(&self, name: &'static str) -> Result<libbpf_rs::Map<'_>> {
        self.obj
            .maps()
            .find(|m| m.name() == name)
            .ok_or_else(|| EbpfError::Map {
                map: name,
                msg: "not in the program".into(),
            })
    }

    fn prog(&self) -> Result<libbpf_rs::Program<'_>> {
        self.obj
            .progs()
            .find(|p| p.name() == "xsw_port")
            .ok_or_else(|| EbpfError::Load("program xsw_port missing from the object".into()))
    }

    /// Attaches to `ifindex`, replacing any XDP program already there (a
    /// stale one left by a crash, say). Native mode when the driver supports
    /// it, else generic; `force` picks one. Returns the mode used.
    pub fn attach(&mut self, ifindex: i32, force: Option<AttachMode>) -> Result<AttachMode> {
        use libbpf_rs::Xdp;
        use libbpf_rs::XdpFlags;
        let prog = self.prog()?;
        let xdp = Xdp::new(prog.as_fd());
        // Clear whatever is attached in either mode first: attaching in one
        // mode fails while a program sits in the other.
        let _ = xdp.detach(ifindex, XdpFlags::SKB_MODE);
        let _ = xdp.detach(ifindex, XdpFlags::DRV_MODE);
        let modes: &[AttachMode] = match force {
            Some(AttachMode::Native) => &[AttachMode::Native],
            Some(AttachMode::Generic) => &[AttachMode::Generic],
            None => &[AttachMode::Native, AttachMode::Generic],
        };
        let mut last = String::new();
        for &m in modes {
            let flags = match m {
                AttachMode::Native => XdpFlags::DRV_MODE,
                AttachMode::Generic => XdpFlags::SKB_MODE,
            };
            match xdp.attach(ifindex, flags) {
                Ok(()) => {
                    self.attached = Some((ifindex, m));
                    return Ok(m);
                }
                Err(e) => last = format!("{} mode: {e}", m.name()),
            }
        }
        Err(EbpfError::Attach { ifindex, msg: last })
    }

    /// Where and how the program is attached.
    pub fn attached(&self) -> Option<(i32, AttachMode)> {
        self.attached
    }

    /// Detaches from the interface (also done on drop).
    pub fn detach(&mut self) {
        if let Some((ifindex, mode)) = self.attached.take() {
            if let Ok(prog) = self.prog() {
                let xdp = libbpf_rs::Xdp::new(prog.as_fd());
                let flags = match mode {
                    AttachMode::Native => libbpf_rs::XdpFlags::DRV_MODE,
                    AttachMode::Generic => libbpf_rs::XdpFlags::SKB_MODE,
                };
                let _ = xdp.detach(ifindex, flags);
            }
        }
    }

    /// Sets the port's configuration and turns the program on: its
    /// OpenFlow number, whether the host's traffic is passed, and the
    /// interface's MAC (the host's unicast address on it).
    pub fn configure(&self, ofport: u16, host_pass: bool, mac: [u8; 6]) -> Result<()> {
        let n_rules = self
            .cfg_get()?
            .map_or(0, |c| u32::from_ne_bytes([c[16], c[17], c[18], c[19]]));
        self.cfg_put(ofport, host_pass, mac, n_rules)
    }

    fn cfg_get(&self) -> Result<Option<Vec<u8>>> {
        self.map("cfg")?
            .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
            .map_err(map_err("cfg"))
    }

    fn cfg_put(&self, ofport: u16, host_pass: bool, mac: [u8; 6], n_rules: u32) -> Result<()> {
        let mut v = [0u8; 20];
        v[0..4].copy_from_slice(&1u32.to_ne_bytes());
        v[4..8].copy_from_slice(&(host_pass as u32).to_ne_bytes());
        v[8..10].copy_from_slice(&ofport.to_ne_bytes());
        v[10..16].copy_from_slice(&mac);
        v[16..20].copy_from_slice(&n_rules.to_ne_bytes());
        self.map("cfg")?
            .update(&0u32.to_ne_bytes(), &v, MapFlags::ANY)
            .map_err(map_err("cfg"))
    }

    /// Points rx queue `queue` at the AF_XDP socket `fd`.
    pub fn set_socket(&self, queue: u32, fd: RawFd) -> Result<()> {
        if queue >= MAX_QUEUES {
            return Err(EbpfError::Limit(format!(
                "rx queue {queue}: at most {MAX_QUEUES} queues per port"
            )));
        }
        self.map("xsks")?
            .update(
                &queue.to_ne_bytes(),
                &(fd as u32).to_ne_bytes(),
                MapFlags::ANY,
            )
            .map_err(map_err("xsks"))
    }

    /// Removes rx queue `queue`'s socket.
    pub fn clear_socket(&self, queue: u32) -> Result<()> {
        match self.map("xsks")?.delete(&queue.to_ne_bytes()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(map_err("xsks")(e)),
        }
    }

    /// Replaces the host's addresses (ARP / neighbour solicitations for them
    /// are passed to the host stack when host-pass is on).
    pub fn set_host_addrs(&self, v4: &[Ipv4Addr], v6: &[Ipv6Addr]) -> Result<()> {
        if v4.len() > MAX_HOST_ADDRS || v6.len() > MAX_HOST_ADDRS {
            return Err(EbpfError::Limit(format!(
                "at most {MAX_HOST_ADDRS} host addresses per family"
            )));
        }
        let m4 = self.map("host_v4")?;
        for k in m4.keys().collect::<Vec<_>>() {
            let _ = m4.delete(&k);
        }
        for a in v4 {
            // The program compares the address in host order, as it read it.
            m4.update(&u32::from(*a).to_ne_bytes(), &[1], MapFlags::ANY)
                .map_err(map_err("host_v4"))?;
        }
        let m6 = self.map("host_v6")?;
        for k in m6.keys().collect::<Vec<_>>() {
            let _ = m6.delete(&k);
        }
        for a in v6 {
            m6.update(&a.octets(), &[1], MapFlags::ANY)
                .map_err(map_err("host_v6"))?;
        }
        Ok(())
    }

    /// Replaces the drop rules (highest priority first). Counters restart.
    pub fn set_rules(&self, rules: &[XdpRule]) -> Result<()> {
        if rules.len() > MAX_RULES {
            return Err(EbpfError::Limit(format!(
                "at most {MAX_RULES} XDP drop rules"
            )));
        }
        let cfg = self.cfg_get()?.unwrap_or_else(|| vec![0; 20]);
        // Turn rules off while rewriting them.
        let ofport = u16::from_ne_bytes([cfg[8], cfg[9]]);
        let host_pass = cfg[4] != 0;
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&cfg[10..16]);
        self.cfg_put(ofport, host_pass, mac, 0)?;
        let m = self.map("rules")?;
        let hits = self.map("hits")?;
        let ncpu = libbpf_rs::num_possible_cpus().map_err(|e| EbpfError::Map {
            map: "hits",
            msg: e.to_string(),
        })?;
        for (i, r) in rules.iter().enumerate() {
            let mut v = [0u8; 72];
            for w in 0..4 {
                v[w * 8..w * 8 + 8].copy_from_slice(&r.mask[w].to_ne_bytes());
                v[32 + w * 8..32 + w * 8 + 8].copy_from_slice(&r.value[w].to_ne_bytes());
            }
            v[64..68].copy_from_slice(&(r.needs_l3 as u32).to_ne_bytes());
            m.update(&(i as u32).to_ne_bytes(), &v, MapFlags::ANY)
                .map_err(map_err("rules"))?;
            hits.update_percpu(
                &(i as u32).to_ne_bytes(),
                &vec![vec![0u8; 16]; ncpu],
                MapFlags::ANY,
            )
            .map_err(map_err("hits"))?;
        }
        self.cfg_put(ofport, host_pass, mac, rules.len() as u32)
    }

    /// Per-verdict frame counts (summed over CPUs), indexed like [`Verdict::ALL`].
    pub fn verdicts(&self) -> Result<[u64; 5]> {
        let m = self.map("verdicts")?;
        let mut out = [0u64; 5];
        for (i, slot) in out.iter_mut().enumerate() {
            if let Some(per_cpu) = m
                .lookup_percpu(&(i as u32).to_ne_bytes(), MapFlags::ANY)
                .map_err(map_err("verdicts"))?
            {
                *slot = per_cpu
                    .iter()
                    .map(|v| {
                        v.get(..8).map_or(0, |b| {
                            u64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
                        })
                    })
                    .sum();
            }
        }
        Ok(out)
    }

    /// (packets, bytes) dropped by each loaded rule, summed over CPUs.
    pub fn rule_hits(&self, n: usize) -> Result<Vec<(u64, u64)>> {
        let m = self.map("hits")?;
        let mut out = Vec::with_capacity(n);
        for i in 0..n.min(MAX_RULES) {
            let mut p = 0u64;
            let mut b = 0u64;
            if let Some(per_cpu) = m
                .lookup_percpu(&(i as u32).to_ne_bytes(), MapFlags::ANY)
                .map_err(map_err("hits"))?
            {
                for v in per_cpu {
                    if v.len() >= 16 {
                        p += u64::from_ne_bytes([v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]]);
                        b += u64::from_ne_bytes([
                            v[8], v[9], v[10], v[11], v[12], v[13], v[14], v[15],
                        ]);
                    }
                }
            }
            out.push((p, b));
        }
        Ok(out)
    }

    /// Runs the program on `frame` (BPF_PROG_TEST_RUN); returns the XDP
    /// action code (1 = drop, 2 = pass, 4 = redirect).
    pub fn test_run(&self, frame: &[u8]) -> Result<u32> {
        let prog = self
            .obj
            .progs_mut()
            .find(|p| p.name() == "xsw_port")
            .ok_or_else(|| EbpfError::Load("program xsw_port missing from the object".into()))?;
        let input = ProgramInput {
            data_in: Some(frame),
            ..Default::default()
        };
        let out = prog
            .test_run(input)
            .map_err(|e| EbpfError::Load(format!("test run: {e}")))?;
        Ok(out.return_value)
    }

    /// The program's file descriptor (for diagnostics).
    pub fn prog_fd(&self) -> Option<RawFd> {
        self.prog().ok().map(|p| p.as_fd().as_raw_fd())
    }
}

impl Drop for XdpProgram {
    fn drop(&mut self) {
        self.detach();
    }
}

/// XDP action codes.
pub mod action {
    /// XDP_ABORTED.
    pub const ABORTED: u32 = 0;
    /// XDP_DROP.
    pub const DROP: u32 = 1;
    /// XDP_PASS.
    pub const PASS: u32 = 2;
    /// XDP_REDIRECT.
    pub const REDIRECT: u32 = 4;
}

/// True when this process may load BPF programs (root or CAP_BPF): used by
/// tests to give a clear message instead of a confusing failure.
pub fn can_load() -> bool {
    XdpProgram::load().is_ok()
}
