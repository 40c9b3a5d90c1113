//! xsw-ebpf: the XDP classifier that runs on every port, and typed handles
//! for its maps.
//!
//! The program (`src/bpf/xsw.bpf.c`) is built by libbpf-cargo's
//! SkeletonBuilder in build.rs, which also generates a skeleton: the
//! program, its maps as named fields and its map value types
//! ([`skel::types`]), all from the object's BTF. Each port loads its own
//! instance through the skeleton ([`XdpProgram`]), so each port has its own
//! configuration, drop rules, counters and XSKMAP. Per frame the program
//! passes the host's own traffic to the host stack, drops frames that surely
//! match a pushed drop rule, and redirects everything else to the port's
//! AF_XDP socket for the frame's rx queue.
//!
//! What the program and userspace share (the flow key's layout, limits,
//! verdict numbers, value sizes) is defined once, in
//! `src/bpf/xsw_abi.h`; [`abi`] is generated from it.

use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, RawFd};

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, OpenObject, ProgramInput};

/// The constants of `src/bpf/xsw_abi.h` (every `#define XSW_*` integer).
pub mod abi {
    include!(concat!(env!("OUT_DIR"), "/abi.rs"));
}

/// The skeleton libbpf-cargo generated for the program: the object
/// embedded, its maps and program as fields, its BTF types in
/// [`skel::types`]. Generated code: the workspace's lints (docs, SAFETY
/// comments, no unwrap) are libbpf-cargo's business there, not ours.
#[allow(missing_docs, missing_debug_implementations, unsafe_op_in_unsafe_fn)]
#[allow(clippy::all, clippy::undocumented_unsafe_blocks, clippy::unwrap_used)]
pub mod skel {
    include!(concat!(env!("OUT_DIR"), "/xsw.skel.rs"));
}

use skel::types::{rule_hits, xsw_cfg, xsw_rule};
use skel::{XswSkel, XswSkelBuilder};

/// Most rx queues a port can have sockets on.
pub const MAX_QUEUES: u32 = abi::XSW_MAX_QUEUES as u32;
/// Most drop rules the program evaluates.
pub const MAX_RULES: usize = abi::XSW_MAX_RULES as usize;
/// Most host addresses per family.
pub const MAX_HOST_ADDRS: usize = abi::XSW_MAX_HOST_ADDRS as usize;
/// Key words the program extracts and its drop rules match.
pub const KEY_WORDS: usize = abi::XSW_KEY_WORDS as usize;

/// What the program did with frames; one counter each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Passed to the host stack (the host's own traffic).
    PassHost = abi::XSW_V_PASS_HOST as isize,
    /// Dropped by a rule.
    DropRule = abi::XSW_V_DROP_RULE as isize,
    /// Redirected to the AF_XDP socket.
    Redirect = abi::XSW_V_REDIRECT as isize,
    /// Meant for the socket, but no socket on the frame's rx queue: dropped.
    NoSocket = abi::XSW_V_NO_SOCKET as isize,
    /// The port was not configured yet: passed.
    Disabled = abi::XSW_V_DISABLED as isize,
}

/// Number of verdicts (counters).
pub const N_VERDICTS: usize = abi::XSW_N_VERDICTS as usize;

impl Verdict {
    /// All verdicts, in counter order.
    pub const ALL: [Verdict; N_VERDICTS] = [
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
/// `(key.w[i] & mask[i]) == value[i]` for the first [`KEY_WORDS`] words of
/// xsw's flow key (laid out as [`abi`] says).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpRule {
    /// Significant bits.
    pub mask: [u64; KEY_WORDS],
    /// Their values (already masked).
    pub value: [u64; KEY_WORDS],
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

// The map value types are the skeleton's (generated from the program's
// BTF, so laid out as the C structs in xsw_abi.h); their sizes are the
// header's, and every byte belongs to a field (no padding), which is what
// lets them travel as bytes below.
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<xsw_cfg>() == abi::XSW_CFG_SIZE as usize);
    assert!(offset_of!(xsw_cfg, host_pass) == 4 && offset_of!(xsw_cfg, ofport) == 8);
    assert!(offset_of!(xsw_cfg, mac) == 10 && offset_of!(xsw_cfg, n_rules) == 16);
    assert!(size_of::<xsw_rule>() == abi::XSW_RULE_SIZE as usize);
    assert!(offset_of!(xsw_rule, value) == 8 * KEY_WORDS);
    assert!(offset_of!(xsw_rule, needs_l3) == 16 * KEY_WORDS);
    assert!(offset_of!(xsw_rule, pad) == 16 * KEY_WORDS + 4);
    assert!(size_of::<rule_hits>() == abi::XSW_RULE_HITS_SIZE as usize);
    assert!(offset_of!(rule_hits, bytes) == 8);
};

/// A map value that travels as its bytes (libbpf-rs's map calls take and
/// give byte slices).
trait MapValue: Copy {
    /// The value's bytes.
    fn bytes(&self) -> &[u8];
    /// The value in `b` (`None` when too short).
    fn from_bytes(b: &[u8]) -> Option<Self>;
}

macro_rules! map_value {
    ($($t:ty),*) => {$(
        impl MapValue for $t {
            fn bytes(&self) -> &[u8] {
                // SAFETY: `$t` is a repr(C) struct of integers (and arrays
                // of them) without padding (asserted above), so all of its
                // size_of bytes are initialised; the slice borrows `self`.
                unsafe {
                    std::slice::from_raw_parts(
                        (self as *const Self).cast::<u8>(),
                        std::mem::size_of::<Self>(),
                    )
                }
            }

            fn from_bytes(b: &[u8]) -> Option<Self> {
                if b.len() < std::mem::size_of::<Self>() {
                    return None;
                }
                // SAFETY: `b` holds at least size_of::<Self>() bytes, any
                // bit pattern is a valid `$t` (it is all integers), and
                // read_unaligned needs no alignment.
                Some(unsafe { b.as_ptr().cast::<Self>().read_unaligned() })
            }
        }
    )*};
}

map_value!(xsw_cfg, xsw_rule, rule_hits);

/// A u32 map key.
fn key(k: u32) -> [u8; 4] {
    k.to_ne_bytes()
}

/// Heap storage for the skeleton's object: the skeleton borrows it for as
/// long as it lives, so it is freed only after the skeleton is dropped
/// (see [`XdpProgram`]'s field order).
struct ObjectSlot(std::ptr::NonNull<MaybeUninit<OpenObject>>);

// SAFETY: the slot owns its allocation alone, like a Box, and only the
// skeleton stored beside it reaches the object inside; moving both to
// another thread together is what a Box would allow.
unsafe impl Send for ObjectSlot {}

impl ObjectSlot {
    fn new() -> ObjectSlot {
        ObjectSlot(std::ptr::NonNull::from(Box::leak(Box::new(
            MaybeUninit::uninit(),
        ))))
    }

    /// The storage, for the skeleton to open the object in.
    ///
    /// # Safety
    ///
    /// Called once per slot, and whatever borrows the result must be
    /// dropped before the slot is.
    unsafe fn get(&mut self) -> &'static mut MaybeUninit<OpenObject> {
        // SAFETY: the pointer came from Box::leak, so it is valid and
        // aligned; it is handed out once (the caller's promise) and
        // outlived by the slot, so the reference is unique while it lives.
        unsafe { &mut *self.0.as_ptr() }
    }
}

impl Drop for ObjectSlot {
    fn drop(&mut self) {
        // SAFETY: the pointer came from Box::leak and nothing borrows it
        // any more (the skeleton was dropped first); dropping a
        // MaybeUninit does not touch what the skeleton left in it (the
        // skeleton drops its object itself).
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

/// One loaded instance of the program (one per port).
pub struct XdpProgram {
    // Field order matters: the skeleton is dropped before the storage it
    // borrows.
    skel: XswSkel<'static>,
    _slot: ObjectSlot,
    attached: Option<(i32, AttachMode)>,
}

impl std::fmt::Debug for XdpProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpProgram")
            .field("attached", &self.attached)
            .finish()
    }
}

fn map_err(map: &'static str) -> impl Fn(libbpf_rs::Error) -> EbpfError {
    move |e| EbpfError::Map {
        map,
        msg: e.to_string(),
    }
}

fn xdp_flags(mode: AttachMode) -> libbpf_rs::XdpFlags {
    match mode {
        AttachMode::Native => libbpf_rs::XdpFlags::DRV_MODE,
        AttachMode::Generic => libbpf_rs::XdpFlags::SKB_MODE,
    }
}

impl XdpProgram {
    /// Loads a fresh instance into the kernel (not attached yet).
    pub fn load() -> Result<Self> {
        let mut slot = ObjectSlot::new();
        // SAFETY: the only call for this slot; the skeleton that borrows
        // the storage is either dropped here on failure or stored in the
        // XdpProgram before the slot, so it is dropped first.
        let storage = unsafe { slot.get() };
        let open = XswSkelBuilder::default()
            .open(storage)
            .map_err(|e| EbpfError::Load(e.to_string()))?;
        let skel = open.load().map_err(|e| EbpfError::Load(e.to_string()))?;
        Ok(XdpProgram {
            skel,
            _slot: slot,
            attached: None,
        })
    }

    fn xdp(&self) -> libbpf_rs::Xdp<'_> {
        libbpf_rs::Xdp::new(self.skel.progs.xsw_port.as_fd())
    }

    /// Attaches to `ifindex`, replacing any XDP program already there (a
    /// stale one left by a crash, say). Native mode when the driver supports
    /// it, else generic; `force` picks one. Returns the mode used.
    pub fn attach(&mut self, ifindex: i32, force: Option<AttachMode>) -> Result<AttachMode> {
        let xdp = self.xdp();
        // Clear whatever is attached in either mode first: attaching in one
        // mode fails while a program sits in the other (and detaching where
        // nothing is attached fails harmlessly).
        let _ = xdp.detach(ifindex, xdp_flags(AttachMode::Generic));
        let _ = xdp.detach(ifindex, xdp_flags(AttachMode::Native));
        let modes: &[AttachMode] = match force {
            Some(AttachMode::Native) => &[AttachMode::Native],
            Some(AttachMode::Generic) => &[AttachMode::Generic],
            None => &[AttachMode::Native, AttachMode::Generic],
        };
        let mut last = String::new();
        for &m in modes {
            match xdp.attach(ifindex, xdp_flags(m)) {
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

    /// Detaches from the interface (also done on drop). A failure (the
    /// interface is gone, taking the program with it) is not an error.
    pub fn detach(&mut self) {
        if let Some((ifindex, mode)) = self.attached.take() {
            let _ = self.xdp().detach(ifindex, xdp_flags(mode));
        }
    }

    /// Sets the port's configuration and turns the program on: its
    /// OpenFlow number, whether the host's traffic is passed, and the
    /// interface's MAC (the host's unicast address on it).
    pub fn configure(&self, ofport: u16, host_pass: bool, mac: [u8; 6]) -> Result<()> {
        let n_rules = self.cfg_get()?.map_or(0, |c| c.n_rules);
        self.cfg_put(&xsw_cfg {
            enabled: 1,
            host_pass: host_pass as u32,
            ofport,
            mac,
            n_rules,
        })
    }

    fn cfg_get(&self) -> Result<Option<xsw_cfg>> {
        let v = self
            .skel
            .maps
            .cfg
            .lookup(&key(0), MapFlags::ANY)
            .map_err(map_err("cfg"))?;
        Ok(v.as_deref().and_then(xsw_cfg::from_bytes))
    }

    fn cfg_put(&self, c: &xsw_cfg) -> Result<()> {
        self.skel
            .maps
            .cfg
            .update(&key(0), c.bytes(), MapFlags::ANY)
            .map_err(map_err("cfg"))
    }

    /// Points rx queue `queue` at the AF_XDP socket `fd`.
    pub fn set_socket(&self, queue: u32, fd: RawFd) -> Result<()> {
        if queue >= MAX_QUEUES {
            return Err(EbpfError::Limit(format!(
                "rx queue {queue}: at most {MAX_QUEUES} queues per port"
            )));
        }
        self.skel
            .maps
            .xsks
            .update(&key(queue), &(fd as u32).to_ne_bytes(), MapFlags::ANY)
            .map_err(map_err("xsks"))
    }

    /// Removes rx queue `queue`'s socket.
    pub fn clear_socket(&self, queue: u32) -> Result<()> {
        match self.skel.maps.xsks.delete(&key(queue)) {
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
        let m4 = &self.skel.maps.host_v4;
        clear(m4, "host_v4")?;
        for a in v4 {
            // The program compares the address in host order, as it read it.
            m4.update(&u32::from(*a).to_ne_bytes(), &[1], MapFlags::ANY)
                .map_err(map_err("host_v4"))?;
        }
        let m6 = &self.skel.maps.host_v6;
        clear(m6, "host_v6")?;
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
        let mut cfg = self.cfg_get()?.unwrap_or_default();
        // Turn rules off while rewriting them. Writing the configuration
        // also switches the program on, as it always has.
        cfg.enabled = 1;
        cfg.n_rules = 0;
        self.cfg_put(&cfg)?;
        let ncpu = libbpf_rs::num_possible_cpus().map_err(|e| EbpfError::Map {
            map: "hits",
            msg: e.to_string(),
        })?;
        let zero_hits = vec![rule_hits::default().bytes().to_vec(); ncpu];
        for (i, r) in rules.iter().enumerate() {
            let v = xsw_rule {
                mask: r.mask,
                value: r.value,
                needs_l3: r.needs_l3 as u32,
                pad: 0,
            };
            self.skel
                .maps
                .rules
                .update(&key(i as u32), v.bytes(), MapFlags::ANY)
                .map_err(map_err("rules"))?;
            self.skel
                .maps
                .hits
                .update_percpu(&key(i as u32), &zero_hits, MapFlags::ANY)
                .map_err(map_err("hits"))?;
        }
        cfg.n_rules = rules.len() as u32;
        self.cfg_put(&cfg)
    }

    /// Per-verdict frame counts (summed over CPUs), indexed like [`Verdict::ALL`].
    pub fn verdicts(&self) -> Result<[u64; N_VERDICTS]> {
        let m = &self.skel.maps.verdicts;
        let mut out = [0u64; N_VERDICTS];
        for (i, slot) in out.iter_mut().enumerate() {
            if let Some(per_cpu) = m
                .lookup_percpu(&key(i as u32), MapFlags::ANY)
                .map_err(map_err("verdicts"))?
            {
                *slot = per_cpu
                    .iter()
                    .filter_map(|v| v.get(..8)?.try_into().ok().map(u64::from_ne_bytes))
                    .sum();
            }
        }
        Ok(out)
    }

    /// (packets, bytes) dropped by each loaded rule, summed over CPUs.
    pub fn rule_hits(&self, n: usize) -> Result<Vec<(u64, u64)>> {
        let m = &self.skel.maps.hits;
        let mut out = Vec::with_capacity(n);
        for i in 0..n.min(MAX_RULES) {
            let (mut p, mut b) = (0u64, 0u64);
            if let Some(per_cpu) = m
                .lookup_percpu(&key(i as u32), MapFlags::ANY)
                .map_err(map_err("hits"))?
            {
                for h in per_cpu.iter().filter_map(|v| rule_hits::from_bytes(v)) {
                    p += h.packets;
                    b += h.bytes;
                }
            }
            out.push((p, b));
        }
        Ok(out)
    }

    /// Runs the program on `frame` (BPF_PROG_TEST_RUN); returns the XDP
    /// action code (1 = drop, 2 = pass, 4 = redirect).
    pub fn test_run(&self, frame: &[u8]) -> Result<u32> {
        let input = ProgramInput {
            data_in: Some(frame),
            ..Default::default()
        };
        let out = self
            .skel
            .progs
            .xsw_port
            .test_run(input)
            .map_err(|e| EbpfError::Load(format!("test run: {e}")))?;
        Ok(out.return_value)
    }

    /// The program's file descriptor (for diagnostics).
    pub fn prog_fd(&self) -> Option<RawFd> {
        Some(self.skel.progs.xsw_port.as_fd().as_raw_fd())
    }
}

/// Deletes every entry of a hash map (entries another thread deletes
/// meanwhile are not an error).
fn clear(m: &libbpf_rs::MapMut<'_>, name: &'static str) -> Result<()> {
    for k in m.keys().collect::<Vec<_>>() {
        match m.delete(&k) {
            Ok(()) => {}
            Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => {}
            Err(e) => return Err(map_err(name)(e)),
        }
    }
    Ok(())
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
