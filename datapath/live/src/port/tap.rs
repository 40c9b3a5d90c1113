//! Tap ports: a tap device xsw creates and holds (an "internal" port, the
//! host's own interface on the bridge, like a Linux bridge's own device).
//!
//! Frames the host sends on the device are read from its file descriptor;
//! frames written to it arrive in the host stack. Linux has no batched
//! read/write for taps, so this port costs one syscall per frame: it carries
//! the host's own traffic, not the switched traffic between ports.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::netdev;
use super::{BackendStats, Port, PortError};
use crate::clock::Clock;
use crate::packet::{Batch, PacketBuf, PacketMeta, MAX_FRAME};

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
        if ifname.is_empty() || ifname.len() >= libc::IFNAMSIZ {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "interface name `{ifname}` must be 1-{} bytes",
                    libc::IFNAMSIZ - 1
                ),
            ));
        }
        let path = CString::new("/dev/net/tun").map_err(io::Error::other)?;
        // SAFETY: open(2) on a valid NUL-terminated path; the result is
        // checked and owned by OwnedFd below.
        let raw = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if raw < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("opening /dev/net/tun: {e} (is the tun module loaded, and are we root?)"),
            ));
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: ifreq is a plain C struct; all-zero bytes are a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in req.ifr_name.iter_mut().zip(ifname.bytes()) {
            *d = s as libc::c_char;
        }
        req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: TUNSETIFF reads the ifreq we own (name and flags) and
        // binds the descriptor to that device.
        if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &req) } < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("creating tap {ifname}: {e}"),
            ));
        }
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
            let iov = [
                libc::iovec {
                    iov_base: buf.as_mut_ptr().cast(),
                    iov_len: buf.len(),
                },
                libc::iovec {
                    iov_base: over.as_mut_ptr().cast(),
                    iov_len: over.len(),
                },
            ];
            // SAFETY: both iovecs describe writable memory (MAX_FRAME bytes
            // inside the slot's buffer, and `over`) that outlives the call.
            let r = unsafe { libc::readv(self.fd.as_raw_fd(), iov.as_ptr(), iov.len() as i32) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted {
                    break;
                }
                return Err(PortError::Io(e));
            }
            if r == 0 {
                break;
            }
            if r as usize > MAX_FRAME {
                self.stats.rx_oversize += 1;
                continue;
            }
            slot.truncate(r as usize);
            slot.meta = PacketMeta::new(port_index, *now.get_or_insert_with(|| clock.now()));
            batch.commit();
            n += 1;
        }
        Ok(n)
    }

    fn tx_burst(&mut self, frames: &[PacketBuf]) -> Result<usize, PortError> {
        for (i, f) in frames.iter().enumerate() {
            let d = f.data();
            // SAFETY: `d` is a readable slice for the duration of the call.
            let r = unsafe { libc::write(self.fd.as_raw_fd(), d.as_ptr().cast(), d.len()) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::WouldBlock {
                    return Ok(i);
                }
                if e.raw_os_error() == Some(libc::EIO) {
                    // The device is down: the host is not listening. Count, go on.
                    self.stats.tx_errors += 1;
                    continue;
                }
                return Err(PortError::Io(e));
            }
        }
        Ok(frames.len())
    }

    fn backend_stats(&self) -> BackendStats {
        self.stats
    }
}
