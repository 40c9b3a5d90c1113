//! AF_XDP ports: a network interface driven through AF_XDP sockets, with
//! xsw's XDP classifier attached.
//!
//! One socket per rx queue of the interface, each with its own UMEM of
//! 4 KiB chunks (frames longer than a chunk arrive and leave as several
//! descriptors, `XDP_USE_SG`). Zero-copy where the driver allows it, else
//! copy mode; native XDP where the driver allows it, else generic.
//!
//! Buffer ownership: a UMEM chunk belongs to exactly one of the kernel (in
//! the fill ring, the rx ring, the tx ring or the completion ring) or this
//! port (in `free`, or being copied). Received chunks go back to the fill
//! ring as soon as their bytes are copied into the pipeline's buffers;
//! chunks for sending come from `free` and return there from the completion
//! ring. Nothing here allocates per frame.
//!
//! Checksum offload, per kind of device. On a software device (veth, tap:
//! no bus device behind it) the frames are skbs of this host's stack or a
//! guest's, and with the default checksum offload their TCP/UDP checksums
//! are partial (`CHECKSUM_PARTIAL`: the field holds the pseudo-header's
//! sum). XDP hands AF_XDP the bytes without that mark, and a frame sent
//! from AF_XDP is a plain skb the receiver verifies, so these ports
//! complete partial checksums as frames arrive (`xsw_datapath::csum`: a
//! few additions per frame to recognise one, the sum of the segment only
//! when it is partial), counted in `rx_csum_completed`. Large GSO segments
//! do not reach us from a veth: while an XDP program is attached, the veth
//! driver takes software GSO off its peer, which then sends MTU-sized
//! segments (with native XDP; in generic mode the peer keeps GSO and its
//! super-frames are cut here, see `Gso`). On a NIC (a bus device) frames come from the wire with their
//! checksums complete, so no completion is attempted.

use std::io;
use std::num::NonZeroU32;
use std::os::fd::AsRawFd;

use xsk_rs::config::{BindFlags, FrameSize, LibxdpFlags, QueueSize, SocketConfig, UmemConfig};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem};
use xsw_ebpf::{AttachMode, XdpProgram};

use xsw_datapath::clock::{Clock, Timestamp};
use xsw_datapath::csum;
use xsw_datapath::gso;
use xsw_datapath::packet::{Batch, PacketBuf, PacketMeta, MAX_FRAME};
use xsw_datapath::port::{BackendStats, Port, PortError};

use super::netdev::{self, NetdevInfo};

/// Size of a UMEM chunk (the kernel's limit for AF_XDP chunks is a page).
pub const CHUNK_SIZE: u32 = 4096;
/// Ring sizes.
const RING: u32 = 2048;
/// Chunks per queue: a fill ring's worth for receiving, the rest for sending.
const CHUNKS: u32 = 2 * RING;
/// Copy-mode transmit handles at most this many descriptors per wakeup
/// (the kernel's `TX_BATCH_SIZE`; descriptors, not frames: a 9000-byte
/// frame is three).
const TX_PER_WAKEUP: usize = 32;
/// Wakeups per transmit call while the kernel keeps taking descriptors; what
/// is left then is pushed at the next polling pass (`Port::tx_waiting`).
const MAX_KICKS: usize = 8;
const XDP_PKT_CONTD: u32 = 1;

/// How to set up an AF_XDP port.
#[derive(Clone, Debug)]
pub struct AfXdpOptions {
    /// The port's OpenFlow number (the XDP program's drop rules use it).
    pub ofport: u16,
    /// Pass the host's own traffic on this interface to the host stack.
    pub host_pass: bool,
    /// Force native or generic XDP (default: native where the driver allows).
    pub xdp_mode: Option<AttachMode>,
    /// Force zero-copy (`Some(true)`) or copy (`Some(false)`); default: try
    /// zero-copy, fall back to copy.
    pub zero_copy: Option<bool>,
}

/// Errors setting up an AF_XDP port, each saying what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum AfXdpError {
    /// The interface does not exist.
    #[error("{0}")]
    NoInterface(io::Error),
    /// Not root.
    #[error("AF_XDP ports need root (CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF): run xswd as root")]
    NotRoot,
    /// The XDP program failed.
    #[error("{0}")]
    Xdp(#[from] xsw_ebpf::EbpfError),
    /// Socket or UMEM creation failed.
    #[error("AF_XDP socket on {iface} queue {queue}: {msg}")]
    Socket {
        /// Interface.
        iface: String,
        /// Rx queue.
        queue: u32,
        /// What failed.
        msg: String,
    },
}

struct Queue {
    id: u32,
    umem: Umem,
    rx: RxQueue,
    tx: TxQueue,
    fq: FillQueue,
    cq: CompQueue,
    /// Chunks free for sending.
    free: Vec<FrameDesc>,
    /// Scratch descriptors for the rx and fill rings.
    scratch: Vec<FrameDesc>,
    /// Scratch descriptors for the completion ring (apart from `scratch`,
    /// which may hold rx chunks between bursts).
    comp: Vec<FrameDesc>,
    /// Descriptors built for one transmit call.
    txbuf: Vec<FrameDesc>,
    /// `scratch[held.0..held.1]`: chunks taken from the rx ring but not yet
    /// read, because a super-frame's segments filled the batch before them
    /// (see `Gso`); they are read first at the next burst.
    held: (usize, usize),
    /// Usable bytes per chunk (chunk size minus headroom).
    chunk: usize,
    zero_copy: bool,
}

/// An interface driven through AF_XDP.
pub struct AfXdpPort {
    name: String,
    info: NetdevInfo,
    xdp: XdpProgram,
    mode: AttachMode,
    queues: Vec<Queue>,
    next_rx: usize,
    stats: BackendStats,
    gone: bool,
    /// A fill-ring wakeup failed already (only the first failure is logged).
    wakeup_failed: bool,
    /// Software devices: segmentation of TCP super-frames (see the module
    /// documentation); `None` on NICs.
    gso: Option<Box<Gso>>,
    /// Copy mode: descriptors are in the tx ring that the kernel has not
    /// taken yet although it kept taking them (it takes [`TX_PER_WAKEUP`]
    /// per wakeup): push again at the next polling pass.
    tx_unsent: bool,
    /// Copy mode: the last wakeup took nothing (device busy or down); the
    /// ring is pushed again by the next transmit or the once-a-second flush.
    tx_stalled: bool,
}

/// Longest super-frame taken apart (a GSO frame is at most 64 KiB of IP
/// packet, plus link headers).
const GSO_MAX: usize = 65_536 + 64;

/// A super-frame being cut into segments, and the buffer it is assembled in
/// (allocated once, when the port opens).
struct Gso {
    buf: Vec<u8>,
    len: usize,
    /// The segments still to hand out: the plan, the next index, the
    /// timestamp of the super-frame.
    pending: Option<(gso::Plan, usize, Timestamp)>,
}

impl Gso {
    fn new() -> Box<Gso> {
        Box::new(Gso {
            buf: vec![0; GSO_MAX],
            len: 0,
            pending: None,
        })
    }

    /// Appends `bytes` to the frame being assembled; false when it would
    /// exceed [`GSO_MAX`].
    fn append(&mut self, bytes: &[u8]) -> bool {
        let Some(dst) = self.buf.get_mut(self.len..self.len + bytes.len()) else {
            return false;
        };
        dst.copy_from_slice(bytes);
        self.len += bytes.len();
        true
    }

    /// Hands out pending segments into the batch while it has room; returns
    /// how many it added.
    fn drain(&mut self, batch: &mut Batch, port_index: u16, stats: &mut BackendStats) -> usize {
        let mut added = 0;
        while let Some((plan, next, ts)) = self.pending {
            let Some(slot) = batch.next_slot() else {
                break;
            };
            slot.meta = PacketMeta::new(port_index, ts);
            let out = slot.fill_with(MAX_FRAME);
            let n = gso::segment(&self.buf[..self.len], &plan, next, out);
            slot.truncate(n);
            batch.commit();
            added += 1;
            stats.rx_gso_segments += 1;
            self.pending = (next + 1 < plan.segments()).then_some((plan, next + 1, ts));
        }
        added
    }
}

/// Where a frame arriving in several chunks is being assembled.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Assembly {
    /// In the batch slot.
    Slot,
    /// Too long for a slot: in the port's super-frame buffer.
    Gso,
    /// Too long for either: dropped at its end.
    Oversize,
}

impl std::fmt::Debug for AfXdpPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfXdpPort")
            .field("name", &self.name)
            .field("iface", &self.info.name)
            .field("mode", &self.mode)
            .field("queues", &self.queues.len())
            .finish()
    }
}

fn socket_err(iface: &str, queue: u32, msg: impl Into<String>) -> AfXdpError {
    AfXdpError::Socket {
        iface: iface.to_string(),
        queue,
        msg: msg.into(),
    }
}

fn open_queue(info: &NetdevInfo, qid: u32, zero_copy: Option<bool>) -> Result<Queue, AfXdpError> {
    let chunks = NonZeroU32::new(CHUNKS).unwrap_or(NonZeroU32::MIN);
    let ring = QueueSize::new(RING).map_err(|e| socket_err(&info.name, qid, e.to_string()))?;
    let frame =
        FrameSize::new(CHUNK_SIZE).map_err(|e| socket_err(&info.name, qid, e.to_string()))?;
    let ucfg = UmemConfig::builder()
        .frame_size(frame)
        .fill_queue_size(ring)
        .comp_queue_size(ring)
        .build()
        .map_err(|e| socket_err(&info.name, qid, e.to_string()))?;
    let chunk = (CHUNK_SIZE - ucfg.xdp_headroom() - ucfg.frame_headroom()) as usize;
    let (umem, mut descs) = Umem::new(ucfg, chunks, false).map_err(|e| {
        socket_err(
            &info.name,
            qid,
            format!(
                "creating the UMEM failed ({e}); is the locked-memory limit too low? (ulimit -l)"
            ),
        )
    })?;
    let iface = info
        .name
        .parse()
        .map_err(|_| socket_err(&info.name, qid, "interface name contains a NUL byte"))?;
    let modes: &[bool] = match zero_copy {
        Some(true) => &[true],
        Some(false) => &[false],
        None => &[true, false],
    };
    let mut last = String::new();
    for &zc in modes {
        let mut flags = BindFlags::XDP_USE_NEED_WAKEUP | BindFlags::XDP_USE_SG;
        flags |= if zc {
            BindFlags::XDP_ZEROCOPY
        } else {
            BindFlags::XDP_COPY
        };
        let scfg = SocketConfig::builder()
            .rx_queue_size(ring)
            .tx_queue_size(ring)
            .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
            .bind_flags(flags)
            .build();
        // A bind right after another socket on this queue closed can fail
        // with EBUSY for a moment: retry a few times before giving up.
        for attempt in 0..20 {
            // SAFETY: each queue gets its own UMEM, so this (interface,
            // queue) pair is never bound twice through one UMEM, and
            // XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD is set (xsw attaches its
            // own program), which is what Socket::new requires.
            match unsafe { Socket::new(scfg, &umem, &iface, qid) } {
                Ok((tx, rx, Some((mut fq, cq)))) => {
                    let fill = RING as usize;
                    // SAFETY: these chunks come straight from the new UMEM
                    // and are owned by nobody else; after this call the
                    // kernel owns them until they come back on the rx ring.
                    let n = unsafe { fq.produce(&descs[..fill]) };
                    if n != fill {
                        return Err(socket_err(
                            &info.name,
                            qid,
                            format!("fill ring took {n} of {fill} chunks"),
                        ));
                    }
                    let free = descs.split_off(fill);
                    let scratch = vec![FrameDesc::default(); RING as usize];
                    return Ok(Queue {
                        id: qid,
                        umem,
                        rx,
                        tx,
                        fq,
                        cq,
                        free,
                        scratch,
                        comp: vec![FrameDesc::default(); RING as usize],
                        txbuf: Vec::with_capacity(RING as usize),
                        held: (0, 0),
                        chunk,
                        zero_copy: zc,
                    });
                }
                Ok((_, _, None)) => {
                    return Err(socket_err(&info.name, qid, "UMEM unexpectedly shared"));
                }
                Err(e) => {
                    last = e.to_string();
                    if last.contains("busy")
                        || last.contains("EBUSY")
                        || last.contains("os error 16")
                    {
                        std::thread::sleep(std::time::Duration::from_millis(50 * (attempt + 1)));
                        continue;
                    }
                    break;
                }
            }
        }
    }
    Err(socket_err(
        &info.name,
        qid,
        format!("binding failed: {last}"),
    ))
}

impl AfXdpPort {
    /// Opens interface `iface` as port `name`.
    pub fn open(name: &str, iface: &str, opts: &AfXdpOptions) -> Result<Self, AfXdpError> {
        let info = netdev::info(iface).map_err(AfXdpError::NoInterface)?;
        if !netdev::is_root() {
            return Err(AfXdpError::NotRoot);
        }
        let mut xdp = XdpProgram::load()?;
        // Attached but disabled (it passes everything) until the sockets are ready.
        let mode = xdp.attach(info.ifindex as i32, opts.xdp_mode)?;
        let mut queues = Vec::new();
        for q in 0..info.rx_queues.min(xsw_ebpf::MAX_QUEUES) {
            let queue = open_queue(&info, q, opts.zero_copy)?;
            xdp.set_socket(q, queue.rx.fd().as_raw_fd())?;
            queues.push(queue);
        }
        if opts.host_pass {
            // Without the list, ARP and neighbour solicitations for the
            // host's addresses go to the switch (the host's MAC still
            // passes): worth a warning, not a refusal.
            let (v4, v6) = netdev::host_addrs(iface).unwrap_or_else(|e| {
                tracing::warn!("port {name}: reading the host's addresses on {iface}: {e}");
                (Vec::new(), Vec::new())
            });
            xdp.set_host_addrs(&v4, &v6)?;
        }
        xdp.configure(opts.ofport, opts.host_pass, info.mac)?;
        let gso = info.virtual_device.then(Gso::new);
        Ok(AfXdpPort {
            name: name.to_string(),
            info,
            xdp,
            mode,
            queues,
            next_rx: 0,
            stats: BackendStats::default(),
            gone: false,
            wakeup_failed: false,
            gso,
            tx_unsent: false,
            tx_stalled: false,
        })
    }

    /// The interface.
    pub fn info(&self) -> &NetdevInfo {
        &self.info
    }

    /// How the XDP program is attached.
    pub fn xdp_mode(&self) -> AttachMode {
        self.mode
    }

    /// True when every socket is in zero-copy mode.
    pub fn zero_copy(&self) -> bool {
        self.queues.iter().all(|q| q.zero_copy)
    }

    /// The XDP program (for its counters and drop rules).
    pub fn xdp(&self) -> &XdpProgram {
        &self.xdp
    }

    /// The file descriptors to wait on for received frames.
    pub fn poll_fds(&self) -> Vec<i32> {
        self.queues.iter().map(|q| q.rx.fd().as_raw_fd()).collect()
    }

    /// Reads chunks from one queue into the batch; returns frames added.
    fn rx_queue(&mut self, qi: usize, batch: &mut Batch, port_index: u16, now: Timestamp) -> usize {
        // Software devices (the ones with a super-frame buffer) hand over
        // partial checksums.
        let complete_csum = self.gso.is_some();
        // Segments carry at most the interface's MTU of IP packet, and fit
        // a slot whatever the MTU.
        let mtu = (self.info.mtu as usize).min(MAX_FRAME - 22);
        let q = &mut self.queues[qi];
        let mut added = 0;
        // The frame being assembled from chunks, if one is open.
        let mut open: Option<Assembly> = None;
        loop {
            if let Some(g) = self.gso.as_mut() {
                added += g.drain(batch, port_index, &mut self.stats);
                if g.pending.is_some() {
                    // The batch is full: the rest go out at the next burst.
                    break;
                }
            }
            let free_slots = batch.capacity() - batch.len();
            // In the middle of a jumbo frame: one chunk at a time until it
            // ends, so no chunk of a frame we have no slot for is taken.
            let want = if open.is_some() {
                1
            } else {
                free_slots.min(q.scratch.len())
            };
            if want == 0 {
                break;
            }
            let (start, n) = if q.held.0 < q.held.1 {
                // Chunks held back at the last burst come first (never in
                // the middle of a frame: holding happens between frames).
                q.held
            } else {
                // SAFETY: the scratch descriptors are ours; consume
                // overwrites them with descriptors of chunks the kernel
                // hands back to us.
                (0, unsafe { q.rx.consume(&mut q.scratch[..want]) })
            };
            q.held = (0, 0);
            if n == 0 {
                break;
            }
            let mut k = start;
            while k < n {
                let d = q.scratch[k];
                k += 1;
                let gso_pending = self.gso.as_ref().is_some_and(|g| g.pending.is_some());
                if open.is_none() && (gso_pending || batch.is_full()) {
                    // Segments of the last super-frame filled the batch:
                    // this chunk and the rest wait for the next burst.
                    k -= 1;
                    q.held = (k, n);
                    break;
                }
                let d = &d;
                let Some(slot) = batch.next_slot() else {
                    // Cannot happen: a frame starts only when the batch has a
                    // free slot (the hold check above), and nothing is
                    // committed while a frame is open. Dropped if it did.
                    self.stats.rx_oversize += 1;
                    continue;
                };
                if open.is_none() {
                    slot.fill(&[]);
                    slot.meta = PacketMeta::new(port_index, now);
                    open = Some(Assembly::Slot);
                }
                // SAFETY: `d` came from this queue's rx ring, so it names a
                // chunk of this queue's UMEM that the kernel has finished
                // writing and will not touch until we give it back below.
                let data = unsafe { q.umem.data(d) };
                let bytes = data.contents();
                open = match (open, self.gso.as_mut()) {
                    (Some(Assembly::Slot), _) if slot.append(bytes) => Some(Assembly::Slot),
                    (Some(Assembly::Slot), Some(g)) => {
                        // Longer than a slot: a super-frame, perhaps.
                        g.len = 0;
                        if g.append(slot.data()) && g.append(bytes) {
                            Some(Assembly::Gso)
                        } else {
                            Some(Assembly::Oversize)
                        }
                    }
                    (Some(Assembly::Gso), Some(g)) => {
                        if g.append(bytes) {
                            Some(Assembly::Gso)
                        } else {
                            Some(Assembly::Oversize)
                        }
                    }
                    _ => Some(Assembly::Oversize),
                };
                if d.options() & XDP_PKT_CONTD != 0 {
                    continue;
                }
                match (open, self.gso.as_mut()) {
                    (Some(Assembly::Slot), g) => {
                        // Fits a slot but not the MTU: a small super-frame.
                        let cut = g
                            .filter(|_| slot.len() > mtu + 14)
                            .and_then(|g| gso::plan(slot.data(), mtu).map(|p| (g, p)));
                        if let Some((g, plan)) = cut {
                            g.len = 0;
                            g.append(slot.data());
                            g.pending = Some((plan, 0, now));
                            self.stats.rx_gso_frames += 1;
                        } else {
                            if complete_csum && csum::complete_partial(slot.data_mut()) {
                                self.stats.rx_csum_completed += 1;
                            }
                            batch.commit();
                            added += 1;
                        }
                    }
                    (Some(Assembly::Gso), Some(g)) => match gso::plan(&g.buf[..g.len], mtu) {
                        Some(plan) => {
                            g.pending = Some((plan, 0, now));
                            self.stats.rx_gso_frames += 1;
                        }
                        None => self.stats.rx_oversize += 1,
                    },
                    _ => self.stats.rx_oversize += 1,
                }
                open = None;
                if let Some(g) = self.gso.as_mut() {
                    added += g.drain(batch, port_index, &mut self.stats);
                }
            }
            // Give the chunks read back to the kernel for new frames.
            // SAFETY: we are done reading these chunks; from here the kernel
            // owns them again (fill ring), and we keep no reference to them.
            // Held chunks (from `k` on) stay ours until they are read.
            let refilled = unsafe { q.fq.produce(&q.scratch[start..k]) };
            if refilled < k - start {
                // The fill ring is sized for every rx chunk; any that did not
                // fit serve for sending rather than being lost.
                q.free.extend_from_slice(&q.scratch[start + refilled..k]);
            }
            if q.fq.needs_wakeup() {
                let fd = q.rx.fd_mut();
                // A failed wakeup only delays the kernel's refill until
                // the next poll of this queue: not fatal, and logged once
                // (this runs per burst, so a lasting failure must not flood
                // the log).
                if let Err(e) = q.fq.wakeup(fd, 0) {
                    if !self.wakeup_failed {
                        self.wakeup_failed = true;
                        tracing::warn!(
                            "port {}: fill ring wakeup: {e} (further failures are not logged)",
                            self.name
                        );
                    }
                }
            }
            let drained = start == 0 && n < want;
            if q.held.0 < q.held.1 || (open.is_none() && (batch.is_full() || drained)) {
                break;
            }
        }
        if open.is_some() {
            // The kernel publishes a frame's chunks together, so this means a
            // damaged chain: what was read of it is dropped and counted.
            self.stats.rx_oversize += 1;
        }
        added
    }

    fn refresh_counters(&mut self) {
        // Each socket has its own kernel counters: the port's are the sums.
        let (mut dropped, mut full, mut empty) = (0, 0, 0);
        for q in &self.queues {
            // A socket whose counters cannot be read adds nothing this
            // time (its sum shows again at the next refresh).
            if let Ok(s) = q.rx.fd().xdp_statistics() {
                dropped += s.rx_dropped();
                full += s.rx_ring_full();
                empty += s.rx_fill_ring_empty_descs();
            }
        }
        self.stats.kernel_rx_dropped = dropped;
        self.stats.kernel_rx_ring_full = full;
        self.stats.kernel_fill_empty = empty;
        if let Ok(v) = self.xdp.verdicts() {
            self.stats.xdp = v.into();
        }
    }
}

impl Port for AfXdpPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn rx_burst(
        &mut self,
        batch: &mut Batch,
        port_index: u16,
        clock: &dyn Clock,
    ) -> Result<usize, PortError> {
        if self.gone {
            return Err(PortError::Gone);
        }
        let nq = self.queues.len();
        let mut added = 0;
        // Read the clock only when something arrived (an idle poll of every
        // port must stay cheap).
        let mut now = None;
        for k in 0..nq {
            if batch.is_full() {
                break;
            }
            let qi = (self.next_rx + k) % nq;
            let gso_pending = self.gso.as_ref().is_some_and(|g| g.pending.is_some());
            let q = &mut self.queues[qi];
            if !gso_pending && q.held.0 >= q.held.1 && q.rx.nb_avail(1) == 0 {
                continue;
            }
            let t = *now.get_or_insert_with(|| clock.now());
            added += self.rx_queue(qi, batch, port_index, t);
        }
        self.next_rx = (self.next_rx + 1) % nq.max(1);
        Ok(added)
    }

    fn tx_burst(&mut self, frames: &[PacketBuf]) -> Result<usize, PortError> {
        if self.gone {
            return Err(PortError::Gone);
        }
        let Some(q) = self.queues.first_mut() else {
            return Ok(frames.len());
        };
        // Chunks the kernel has finished sending come back first.
        loop {
            // SAFETY: the completion scratch descriptors are ours to overwrite; the
            // completion ring hands back chunks the kernel is done with.
            let n = unsafe { q.cq.consume(&mut q.comp) };
            if n == 0 {
                break;
            }
            q.free.extend_from_slice(&q.comp[..n]);
        }
        let mut sent = 0;
        let mut since_wakeup = 0;
        for f in frames {
            let data = f.data();
            let need = data.len().div_ceil(q.chunk).max(1);
            if q.free.len() < need || q.tx.nb_free(need as u32) < need as u32 {
                break;
            }
            q.txbuf.clear();
            for (i, part) in data.chunks(q.chunk).enumerate() {
                let Some(mut d) = q.free.pop() else { break };
                {
                    // SAFETY: `d` came from `free`, so neither the kernel nor
                    // any other descriptor refers to its chunk right now.
                    let mut chunk = unsafe { q.umem.data_mut(&mut d) };
                    let mut c = chunk.cursor();
                    c.set_pos(0);
                    // Cannot fail: `part` is at most one chunk's usable bytes.
                    let _ = io::Write::write_all(&mut c, part);
                }
                d.set_options(if i + 1 < need { XDP_PKT_CONTD } else { 0 });
                q.txbuf.push(d);
            }
            // SAFETY: every descriptor in txbuf names a chunk we own and just
            // filled; producing them hands the chunks to the kernel until
            // they come back on the completion ring.
            let produced = unsafe { q.tx.produce(&q.txbuf) };
            if produced < q.txbuf.len() {
                // Checked nb_free above, so this does not happen; if it did,
                // the chunks return to the free list and the frame is unsent.
                q.free.extend(q.txbuf.drain(produced..));
                break;
            }
            sent += 1;
            since_wakeup += need;
            if since_wakeup >= TX_PER_WAKEUP && !q.zero_copy {
                if let Err(e) = q.tx.wakeup() {
                    self.gone = matches!(e.raw_os_error(), Some(libc::ENXIO) | Some(libc::ENODEV));
                    return Err(PortError::Io(e));
                }
                since_wakeup = 0;
            }
        }
        if q.zero_copy {
            if sent > 0 && q.tx.needs_wakeup() {
                if let Err(e) = q.tx.wakeup() {
                    self.gone = matches!(e.raw_os_error(), Some(libc::ENXIO) | Some(libc::ENODEV));
                    return Err(PortError::Io(e));
                }
            }
            return Ok(sent);
        }
        // Copy mode: each wakeup sends at most TX_PER_WAKEUP descriptors of
        // the ring, so wake the kernel until it has taken them all (the ring
        // is empty when every entry is free again), or give up for this pass
        // when it stops taking them (device busy) and try at the next.
        let ring = RING;
        self.tx_unsent = false;
        self.tx_stalled = false;
        let mut free = q.tx.nb_free_exact();
        for kick in 0..=MAX_KICKS {
            if free >= ring {
                break;
            }
            if kick == MAX_KICKS {
                self.tx_unsent = true;
                break;
            }
            if let Err(e) = q.tx.wakeup() {
                self.gone = matches!(e.raw_os_error(), Some(libc::ENXIO) | Some(libc::ENODEV));
                return Err(PortError::Io(e));
            }
            let now_free = q.tx.nb_free_exact();
            if now_free <= free {
                // The kernel took nothing (device busy, or its link down:
                // sendto then fails with errors xsk-rs treats as success).
                // Retrying at once would spin: the frames go at the next
                // transmit, or at the once-a-second flush.
                self.tx_stalled = true;
                break;
            }
            free = now_free;
        }
        Ok(sent)
    }

    fn tx_waiting(&self) -> bool {
        self.tx_unsent
    }

    fn refresh_stats(&mut self) {
        self.refresh_counters();
    }

    fn backend_stats(&self) -> BackendStats {
        self.stats
    }

    fn flush(&mut self) -> Result<(), PortError> {
        self.refresh_counters();
        if self.tx_stalled && !self.gone {
            self.tx_burst(&[])?;
        }
        // Any answer but this port's own ifindex takes the port down, a
        // failed look-up included (as before the sys wrappers; telling "gone"
        // from "could not check" belongs with following link events).
        match crate::sys::if_nametoindex(&self.info.name) {
            Ok(i) if i == self.info.ifindex => Ok(()),
            Ok(_) | Err(_) => {
                self.gone = true;
                Err(PortError::Gone)
            }
        }
    }
}

impl Drop for AfXdpPort {
    fn drop(&mut self) {
        // Detach first so no frame is redirected to a closing socket.
        self.xdp.detach();
        for q in &self.queues {
            if let Err(e) = self.xdp.clear_socket(q.id) {
                tracing::debug!("port {}: queue {}: {e}", self.name, q.id);
            }
        }
    }
}
