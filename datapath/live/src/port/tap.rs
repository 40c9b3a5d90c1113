//! Tap ports: a tap device xsw creates and holds (an "internal" port, the
//! host's own interface on the bridge, like a Linux bridge's own device).
//!
//! Frames the host sends on the device are read from its file descriptor;
//! frames written to it arrive in the host stack. Linux has no batched
//! read/write for taps, so this port costs one syscall per frame: it carries
//! the host's own traffic, not the switched traffic between ports.

use std::io::{self, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use xsw_datapath::clock::Clock;
use xsw_datapath::packet::{Batch, PacketBuf, PacketMeta, MAX_FRAME};
use xsw_datapath::port::{BackendStats, Port, PortError};

use super::netdev;
use crate::sys;

/// A tap device owned by this process.
#[derive(Debug)]
pub struct TapPort {
    name: String,
    ifname: String,
    fd: OwnedFd,
    stats: BackendStats,
}

impl TapPort {
    /// Creates tap device `ifname` (it disappears when the port is dropped),
    /// sets its MTU if given, and brings it up.
    pub fn create(name: &str, ifname: &str, mtu: Option<u32>) -> io::Result<Self> {
        sys::check_ifname(ifname)?;
        let fd = sys::open_rw_nonblock("/dev/net/tun").map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("opening /dev/net/tun: {e} (is the tun module loaded, and are we root?)"),
            )
        })?;
        sys::tun_set_tap(fd.as_fd(), ifname)
            .map_err(|e| io::Error::new(e.kind(), format!("creating tap {ifname}: {e}")))?;
        if let Some(m) = mtu {
            netdev::set_mtu(ifname, m)?;
        }
        netdev::set_up(ifname)?;
        Ok(TapPort {
            name: name.to_string(),
            ifname: ifname.to_string(),
            fd,
            stats: BackendStats::default(),
        })
    }

    /// The device's name.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// The descriptor to wait on for frames from the host.
    pub fn poll_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Port for TapPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn rx_burst(
        &mut self,
        batch: &mut Batch,
        port_index: u16,
        clock: &dyn Clock,
    ) -> Result<usize, PortError> {
        let mut now = None;
        let mut n = 0;
        while let Some(slot) = batch.next_slot() {
            let buf = slot.fill_with(MAX_FRAME);
            // One byte past the largest frame tells an oversize frame (the
            // kernel cuts a tap read short) from one that fits.
            let mut over = [0u8; 1];
            let mut iov = [IoSliceMut::new(buf), IoSliceMut::new(&mut over)];
            let r = match sys::readv(self.fd.as_fd(), &mut iov) {
                Ok(r) => r,
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::Interrupted =>
                {
                    break
                }
                Err(e) => return Err(PortError::Io(e)),
            };
            if r == 0 {
                break;
            }
            if r > MAX_FRAME {
                self.stats.rx_oversize += 1;
                continue;
            }
            slot.truncate(r);
            slot.meta = PacketMeta::new(port_index, *now.get_or_insert_with(|| clock.now()));
            batch.commit();
            n += 1;
        }
        Ok(n)
    }

    fn tx_burst(&mut self, frames: &[PacketBuf]) -> Result<usize, PortError> {
        for (i, f) in frames.iter().enumerate() {
            match sys::write(self.fd.as_fd(), f.data()) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(i),
                Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                    // The device is down: the host is not listening. Count, go on.
                    self.stats.tx_errors += 1;
                }
                Err(e) => return Err(PortError::Io(e)),
            }
        }
        Ok(frames.len())
    }

    fn backend_stats(&self) -> BackendStats {
        self.stats
    }
}
