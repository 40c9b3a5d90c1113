//! Small safe wrappers over the system calls the live switch makes, in the
//! style of vmm-sys-util: each checks the call's return value and turns a
//! failure into an [`io::Error`] (with `errno`). Each `unsafe` block is a
//! single operation (one call, whose arguments are checked here, or one read
//! through a pointer or union the kernel just filled) with a `SAFETY`
//! comment of its own. Everything else in the engine, the ports and the
//! control plane calls these instead of `libc`.

use std::ffi::{c_int, CStr, CString};
use std::io::{self, IoSliceMut};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Longest interface name, without its NUL (`IFNAMSIZ - 1`).
pub const IFNAME_MAX: usize = libc::IFNAMSIZ - 1;

/// `Err(last_os_error)` when `rc` is negative (the usual C convention).
fn check(rc: c_int) -> io::Result<c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Like [`check`], for calls returning `ssize_t`.
fn check_size(rc: isize) -> io::Result<usize> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}

/// A C string from `s`, or `InvalidInput` when it holds a NUL byte.
fn cstring(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{}` contains a NUL byte", s.escape_debug()),
        )
    })
}

/// Takes ownership of a descriptor a system call just returned.
fn owned(fd: c_int) -> io::Result<OwnedFd> {
    let fd = check(fd)?;
    // SAFETY: `fd` is non-negative and was just returned by the kernel as a
    // new descriptor; nothing else owns it, so OwnedFd may close it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A non-blocking, close-on-exec eventfd: a counter another thread adds to
/// (waking whoever polls it) and the owner reads back to zero.
#[derive(Debug)]
pub struct EventFd(OwnedFd);

impl EventFd {
    /// Creates one with the counter at 0.
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd takes two integers and returns a new descriptor
        // or -1; `owned` checks which.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        owned(fd).map(EventFd)
    }

    /// Adds `n` to the counter.
    pub fn write(&self, n: u64) -> io::Result<()> {
        let b = n.to_ne_bytes();
        let w = write(self.0.as_fd(), &b)?;
        if w != b.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("eventfd took {w} of 8 bytes"),
            ));
        }
        Ok(())
    }

    /// Reads and resets the counter; `None` when it was 0.
    pub fn read(&self) -> io::Result<Option<u64>> {
        let mut b = [0u8; 8];
        match read(self.0.as_fd(), &mut b) {
            Ok(8) => Ok(Some(u64::from_ne_bytes(b))),
            Ok(n) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("eventfd gave {n} of 8 bytes"),
            )),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// One descriptor to wait on for input, with what `ppoll` reported.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct PollFd(libc::pollfd);

impl std::fmt::Debug for PollFd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PollFd")
            .field("fd", &self.0.fd)
            .field("revents", &self.0.revents)
            .finish()
    }
}

impl PollFd {
    /// Waits for `fd` to be readable. The caller keeps `fd` open while
    /// it is polled (a closed one is reported as `POLLNVAL`, not unsafe).
    pub fn readable(fd: RawFd) -> PollFd {
        PollFd(libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
    }

    /// The descriptor.
    pub fn fd(&self) -> RawFd {
        self.0.fd
    }

    /// True when the last `ppoll` found something to read (or an error or
    /// hang-up, which a read reports).
    pub fn ready(&self) -> bool {
        self.0.revents != 0
    }
}

/// Waits until one of `fds` is readable or `timeout` passes (no signal mask
/// change). Returns how many are ready (0: timed out); a signal arriving
/// first is `ErrorKind::Interrupted`.
pub fn ppoll(fds: &mut [PollFd], timeout: Duration) -> io::Result<usize> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: PollFd is repr(transparent) over pollfd, so `fds` is a valid
    // array of `fds.len()` pollfd structs we borrow mutably for the call
    // (ppoll writes only their `revents`); `ts` is a valid timespec; the
    // signal mask is null (unchanged).
    let rc = unsafe {
        libc::ppoll(
            fds.as_mut_ptr().cast::<libc::pollfd>(),
            fds.len() as libc::nfds_t,
            &ts,
            std::ptr::null(),
        )
    };
    check(rc).map(|n| n as usize)
}

/// `read(2)`: bytes read into `buf` (0 at end of file).
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is writable for `buf.len()` bytes for the whole call
    // and `fd` is an open descriptor (borrowed).
    check_size(unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })
}

/// `readv(2)`: bytes read, filling `bufs` in order.
pub fn readv(fd: BorrowedFd<'_>, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
    let n = c_int::try_from(bufs.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many buffers"))?;
    // SAFETY: IoSliceMut is ABI-compatible with `struct iovec` on Unix (std
    // guarantees it); each describes memory writable for the call, which
    // `bufs` borrows mutably; `fd` is open.
    check_size(unsafe { libc::readv(fd.as_raw_fd(), bufs.as_ptr().cast(), n) })
}

/// `write(2)`: bytes written from `buf`.
pub fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is readable for `buf.len()` bytes for the call, `fd` is open.
    check_size(unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) })
}

/// Opens `path` read-write, non-blocking and close-on-exec.
pub fn open_rw_nonblock(path: &str) -> io::Result<OwnedFd> {
    let c = cstring(path)?;
    // SAFETY: open(2) on a valid NUL-terminated path that outlives the
    // call; `owned` checks the result.
    owned(unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    })
}

/// The index of interface `name`; `ErrorKind::NotFound` when there is none.
pub fn if_nametoindex(name: &str) -> io::Result<u32> {
    let c = cstring(name)?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call;
    // if_nametoindex only reads it.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        let e = io::Error::last_os_error();
        // ENODEV (or no errno at all) means there is no such interface.
        return Err(match e.raw_os_error() {
            Some(libc::ENODEV) | Some(0) | None => io::Error::new(
                io::ErrorKind::NotFound,
                format!("no interface named {name}"),
            ),
            _ => e,
        });
    }
    Ok(i)
}

/// An `ifreq` naming interface `name`, everything else zero.
fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() > IFNAME_MAX || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name `{name}` must be 1-{IFNAME_MAX} bytes"),
        ));
    }
    // SAFETY: ifreq is a plain C struct (a name and a union of integers
    // and pointers) for which all-zero bytes are a valid value.
    let mut r: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in r.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(r)
}

/// Checks an interface name the way the kernel will (1 to 15 bytes).
pub fn check_ifname(name: &str) -> io::Result<()> {
    ifreq(name).map(|_| ())
}

/// Binds a `/dev/net/tun` descriptor to tap device `name` without packet
/// information (`TUNSETIFF` with `IFF_TAP | IFF_NO_PI`), creating it.
pub fn tun_set_tap(fd: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    let mut r = ifreq(name)?;
    r.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads the ifreq we own (name and flags) for the
    // call and may write the chosen name back into it.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut r) }).map(|_| ())
}

/// A socket for interface ioctls (`AF_INET`, datagram, close-on-exec).
fn ctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) with constant arguments; `owned` checks it.
    owned(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })
}

/// Interface `name`'s flags (`SIOCGIFFLAGS`).
pub fn if_flags(name: &str) -> io::Result<c_int> {
    let s = ctl_socket()?;
    let mut r = ifreq(name)?;
    // SAFETY: SIOCGIFFLAGS writes the `ifr_flags` member of the ifreq we
    // own and borrow mutably for the call.
    check(unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS, &mut r) })?;
    // SAFETY: the kernel just filled the flags member of the union.
    Ok(c_int::from(unsafe { r.ifr_ifru.ifru_flags }) & 0xffff)
}

/// Sets interface `name`'s flags (`SIOCSIFFLAGS`).
pub fn set_if_flags(name: &str, flags: c_int) -> io::Result<()> {
    let s = ctl_socket()?;
    let mut r = ifreq(name)?;
    r.ifr_ifru.ifru_flags = flags as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads the ifreq we own for the call.
    check(unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS, &r) }).map(|_| ())
}

/// `IFF_UP`, for [`if_flags`] and [`set_if_flags`].
pub const IFF_UP: c_int = libc::IFF_UP;

/// Sets interface `name`'s MTU (`SIOCSIFMTU`).
pub fn set_if_mtu(name: &str, mtu: u32) -> io::Result<()> {
    let mtu = c_int::try_from(mtu)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("MTU {mtu}")))?;
    let s = ctl_socket()?;
    let mut r = ifreq(name)?;
    r.ifr_ifru.ifru_mtu = mtu;
    // SAFETY: SIOCSIFMTU reads the ifreq we own for the call.
    check(unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCSIFMTU, &r) }).map(|_| ())
}

/// The IPv4 and IPv6 addresses on interface `name` (`getifaddrs`).
pub fn if_addrs(name: &str) -> io::Result<(Vec<Ipv4Addr>, Vec<Ipv6Addr>)> {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head into `head`, which we own; on
    // success we walk the list read-only and free it exactly once below.
    check(unsafe { libc::getifaddrs(&mut head) })?;
    let mut cur = head;
    // Every pointer read below is into the list getifaddrs returned, which
    // stays valid and unchanged until the freeifaddrs at the end; nothing
    // read from it is kept past that point (the addresses are copied out).
    while !cur.is_null() {
        // SAFETY: `cur` is non-null and a node of that list.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_name.is_null() || ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: a non-null `ifa_name` is a NUL-terminated string.
        let ifa_name = unsafe { CStr::from_ptr(ifa.ifa_name) };
        if ifa_name.to_bytes() != name.as_bytes() {
            continue;
        }
        // SAFETY: a non-null `ifa_addr` points at a sockaddr, whose family
        // field every sockaddr type starts with.
        let family = c_int::from(unsafe { (*ifa.ifa_addr).sa_family });
        match family {
            libc::AF_INET => {
                // SAFETY: the family says it is a sockaddr_in.
                let sa = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                v4.push(Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)));
            }
            libc::AF_INET6 => {
                // SAFETY: the family says it is a sockaddr_in6.
                let sa = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                v6.push(Ipv6Addr::from(sa.sin6_addr.s6_addr));
            }
            _ => {}
        }
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed once;
    // no reference into the list outlives this point.
    unsafe { libc::freeifaddrs(head) };
    Ok((v4, v6))
}

/// The effective user id (cannot fail).
pub fn geteuid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The id of group `name` (`getgrnam_r`), `None` when there is no such group.
pub fn group_id(name: &str) -> io::Result<Option<u32>> {
    let c = cstring(name)?;
    let mut len = 1024;
    loop {
        // SAFETY: `group` is a plain C struct of integers and pointers for
        // which all-zero is a valid (empty) value; getgrnam_r fills it.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut buf = vec![0 as libc::c_char; len];
        let mut result: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call: the name is
        // NUL-terminated, `grp` and `result` are ours, and `buf` holds
        // `buf.len()` bytes; the strings written into `buf` are not read.
        let rc = unsafe {
            libc::getgrnam_r(
                c.as_ptr(),
                &mut grp,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        match rc {
            0 if result.is_null() => return Ok(None),
            0 => return Ok(Some(grp.gr_gid)),
            // The entry does not fit: try a larger buffer (up to 1 MiB).
            libc::ERANGE if len < 1 << 20 => len *= 4,
            // "Not found" may come back as one of these, per getgrnam_r(3).
            libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => return Ok(None),
            e => return Err(io::Error::from_raw_os_error(e)),
        }
    }
}

/// A signal handler: it may only do async-signal-safe things (such as
/// storing to an atomic).
pub type SignalHandler = extern "C" fn(c_int);

/// SIGINT.
pub const SIGINT: c_int = libc::SIGINT;
/// SIGTERM.
pub const SIGTERM: c_int = libc::SIGTERM;

/// Installs `handler` for signal `sig` (`sigaction`, restarting
/// interrupted system calls, as `signal(2)` does on Linux).
pub fn set_signal_handler(sig: c_int, handler: SignalHandler) -> io::Result<()> {
    // SAFETY: sigaction is a plain C struct of integers, pointers and a
    // signal set, for which all-zero bytes are a valid value (no flags, no
    // restorer); the mask is then emptied with sigemptyset, not assumed
    // empty because it is zero, and the handler and flags are filled in.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: `act.sa_mask` is a sigset_t we own and borrow mutably for
    // the call, which only writes it.
    check(unsafe { libc::sigemptyset(&mut act.sa_mask) })?;
    act.sa_sigaction = handler as usize as libc::sighandler_t;
    act.sa_flags = libc::SA_RESTART;
    // SAFETY: `act` is a valid sigaction that outlives the call, the old
    // action is not asked for (null), and `handler` is a function pointer
    // valid for the whole program.
    check(unsafe { libc::sigaction(sig, &act, std::ptr::null_mut()) }).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eventfd_counts_and_reads_back_to_zero() {
        let e = EventFd::new().expect("eventfd");
        assert_eq!(e.read().expect("read"), None);
        e.write(1).expect("write");
        e.write(2).expect("write");
        let mut fds = [PollFd::readable(e.as_raw_fd())];
        assert_eq!(ppoll(&mut fds, Duration::from_millis(0)).expect("ppoll"), 1);
        assert!(fds[0].ready());
        assert_eq!(e.read().expect("read"), Some(3));
        assert_eq!(e.read().expect("read"), None);
        let mut fds = [PollFd::readable(e.as_raw_fd())];
        assert_eq!(ppoll(&mut fds, Duration::from_millis(1)).expect("ppoll"), 0);
    }

    #[test]
    fn interfaces_by_name() {
        assert!(if_nametoindex("lo").expect("lo") > 0);
        let e = if_nametoindex("xsw-no-such-if").expect_err("missing");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        // lo may be down (a fresh network namespace): only the call is checked.
        assert!(if_flags("lo").is_ok());
        assert!(if_addrs("lo").is_ok());
        assert!(check_ifname("a-name-that-is-way-too-long").is_err());
        assert!(check_ifname("").is_err());
        assert!(if_nametoindex("nul\0").is_err());
    }

    #[test]
    fn groups_by_name() {
        assert_eq!(group_id("root").expect("lookup"), Some(0));
        assert_eq!(group_id("xsw-no-such-group").expect("lookup"), None);
    }
}
