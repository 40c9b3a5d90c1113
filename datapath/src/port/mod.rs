//! Ports: where frames come from and go to.
//!
//! A [`Port`] receives and sends in bursts. The pipeline owns the packet
//! buffers: `rx_burst` fills free slots of a [`Batch`] (copying into buffers
//! the pipeline allocated up front), and `tx_burst` is handed buffers to send,
//! which return to the pipeline's pool whether or not they were sent. So no
//! backend allocates per frame, and a backend can never leak the pipeline's
//! buffers.
//!
//! The backends here ([`memory`], [`pcap`]) need no privileges; the live
//! switch's (AF_XDP, tap) are in the `xsw-live` crate.

pub mod memory;
pub mod pcap;

use crate::clock::Clock;
use crate::packet::{Batch, PacketBuf};

/// A port backend failed.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// An I/O error.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The capture being read is damaged (frames before the damage were delivered).
    #[error("{0}")]
    Capture(#[from] crate::pcap::PcapError),
    /// The underlying device is gone.
    #[error("device is gone")]
    Gone,
}

/// Counters a backend keeps for what it dropped or altered on its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct BackendStats {
    /// Frames longer than 9216 bytes, dropped at receive.
    pub rx_oversize: u64,
    /// Captured frames shorter than they were on the wire (snap length);
    /// they are switched as captured.
    pub rx_snap_truncated: u64,
    /// Records skipped because their capture interface is not Ethernet.
    pub rx_not_ethernet: u64,
    /// Frames the device refused to send.
    pub tx_errors: u64,
    /// TCP/UDP frames received with a partial checksum (checksum offload
    /// of the sender) whose checksum the port completed in software.
    pub rx_csum_completed: u64,
    /// TCP super-frames (GSO/TSO from a guest or the host: longer than the
    /// interface's MTU) the port cut into segments.
    pub rx_gso_frames: u64,
    /// Segments cut from them (each counted as a received frame).
    pub rx_gso_segments: u64,
    /// AF_XDP: frames the kernel dropped (rx ring full or no fill chunks).
    pub kernel_rx_dropped: u64,
    /// AF_XDP: times the rx ring was full.
    pub kernel_rx_ring_full: u64,
    /// AF_XDP: times the fill ring was empty.
    pub kernel_fill_empty: u64,
    /// What the port's XDP program did with received frames.
    pub xdp: XdpVerdicts,
}

/// Frames per verdict of a port's XDP program (see `xsw_ebpf::Verdict`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct XdpVerdicts {
    /// Passed to the host stack: the host's own traffic.
    pub pass_host: u64,
    /// Dropped in the kernel by a flow rule pushed into the program.
    pub drop_rule: u64,
    /// Redirected to the switch's AF_XDP socket.
    pub redirect: u64,
    /// Dropped: no socket was bound on the frame's rx queue.
    pub no_socket: u64,
    /// Passed because the port was not configured yet.
    pub disabled: u64,
}

impl From<[u64; 5]> for XdpVerdicts {
    fn from(v: [u64; 5]) -> Self {
        XdpVerdicts {
            pass_host: v[0],
            drop_rule: v[1],
            redirect: v[2],
            no_socket: v[3],
            disabled: v[4],
        }
    }
}

/// A source and sink of Ethernet frames.
pub trait Port {
    /// The port's name.
    fn name(&self) -> &str;

    /// Fills free slots of `batch` with received frames, setting each frame's
    /// `meta.port` to `port_index` and `meta.ts` to its arrival time (from
    /// `clock` unless the backend knows better, as a capture does). Returns
    /// how many frames were added; 0 means nothing is waiting.
    fn rx_burst(
        &mut self,
        batch: &mut Batch,
        port_index: u16,
        clock: &dyn Clock,
    ) -> Result<usize, PortError>;

    /// Sends frames, in order; returns how many were accepted (the rest were
    /// not sent now and may be offered again).
    fn tx_burst(&mut self, frames: &[PacketBuf]) -> Result<usize, PortError>;

    /// True when frames this port accepted have not all left yet and a
    /// further `tx_burst` (even with no frames) is needed to push them: an
    /// AF_XDP socket in copy mode sends a bounded number per wakeup.
    fn tx_waiting(&self) -> bool {
        false
    }

    /// Makes everything sent so far durable or visible (e.g. flushes a file).
    fn flush(&mut self) -> Result<(), PortError> {
        Ok(())
    }

    /// Brings the backend's counters up to date (they may be read from the
    /// kernel); called before reports, not per frame.
    fn refresh_stats(&mut self) {}

    /// The backend's own counters.
    fn backend_stats(&self) -> BackendStats {
        BackendStats::default()
    }

    /// True when no more frames will ever arrive (end of a capture file).
    fn rx_exhausted(&self) -> bool {
        false
    }
}
