//! What the switch needs to know about a network interface: its index,
//! MAC, MTU, rx queues and the host's addresses on it; and bringing one up.
//! Sysfs and `getifaddrs` where they suffice, ioctls where they do not.

use std::ffi::CString;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// Facts about an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetdevInfo {
    /// Name.
    pub name: String,
    /// Kernel index.
    pub ifindex: u32,
    /// MAC address.
    pub mac: [u8; 6],
    /// MTU.
    pub mtu: u32,
    /// Number of rx queues.
    pub rx_queues: u32,
}

/// The index of interface `name`, or `None` when it does not exist.
pub fn ifindex(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call;
    // if_nametoindex only reads it.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

fn sysfs(name: &str, file: &str) -> io::Result<String> {
    std::fs::read_to_string(Path::new("/sys/class/net").join(name).join(file))
        .map(|s| s.trim().to_string())
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in out.iter_mut() {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// Reads what the switch needs about interface `name`.
pub fn info(name: &str) -> io::Result<NetdevInfo> {
    let Some(ifindex) = ifindex(name) else {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface named {name} in this network namespace (see `ip link`)"),
        ));
    };
    let mac = sysfs(name, "address")
        .ok()
        .and_then(|s| parse_mac(&s))
        .unwrap_or([0; 6]);
    let mtu = sysfs(name, "mtu")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1500);
    let rx_queues = std::fs::read_dir(Path::new("/sys/class/net").join(name).join("queues"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count() as u32
        })
        .unwrap_or(1)
        .max(1);
    Ok(NetdevInfo {
        name: name.to_string(),
        ifindex,
        mac,
        mtu,
        rx_queues,
    })
}

/// The host's IPv4 and IPv6 addresses on interface `name`.
pub fn host_addrs(name: &str) -> (Vec<Ipv4Addr>, Vec<Ipv6Addr>) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head into `head`; on success we walk
    // the list read-only and free it exactly once below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return (v4, v6);
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, which stays
        // valid until freeifaddrs; its name is a NUL-terminated string and
        // `ifa_addr`, when non-null, points at a sockaddr whose family field
        // tells its real type, which we check before casting.
        unsafe {
            let ifa = &*cur;
            let n = std::ffi::CStr::from_ptr(ifa.ifa_name).to_string_lossy();
            if n == name && !ifa.ifa_addr.is_null() {
                match (*ifa.ifa_addr).sa_family as i32 {
                    libc::AF_INET => {
                        let sa = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                        v4.push(Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)));
                    }
                    libc::AF_INET6 => {
                        let sa = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                        v6.push(Ipv6Addr::from(sa.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
            cur = ifa.ifa_next;
        }
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    (v4, v6)
}

fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "interface name `{name}` must be 1-{} bytes",
                libc::IFNAMSIZ - 1
            ),
        ));
    }
    // SAFETY: ifreq is a plain C struct for which all-zero bytes are valid.
    let mut r: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in r.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(r)
}

fn ctl_socket() -> io::Result<std::os::fd::OwnedFd> {
    // SAFETY: plain socket(2) call; the returned descriptor is checked and
    // then owned by OwnedFd, which closes it.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}

/// Sets interface `name` up (like `ip link set NAME up`).
pub fn set_up(name: &str) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let s = ctl_socket()?;
    let mut r = ifreq(name)?;
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the `ifr_flags`
    // member of the ifreq we own, for the named interface.
    unsafe {
        if libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS, &mut r) < 0 {
            return Err(io::Error::last_os_error());
        }
        r.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS, &r) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Sets interface `name`'s MTU.
pub fn set_mtu(name: &str, mtu: u32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let s = ctl_socket()?;
    let mut r = ifreq(name)?;
    r.ifr_ifru.ifru_mtu = mtu as libc::c_int;
    // SAFETY: SIOCSIFMTU reads the `ifr_mtu` member of the ifreq we own.
    if unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCSIFMTU, &r) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// True when this process runs as root (the fast path needs CAP_NET_ADMIN,
/// CAP_NET_RAW and CAP_BPF; root has them).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_found_and_missing_ones_are_not() {
        let lo = info("lo").expect("lo exists");
        assert!(lo.ifindex > 0);
        assert!(lo.mtu >= 1500);
        let e = info("xsw-no-such-if").expect_err("missing");
        assert!(e.to_string().contains("no interface named"));
        assert_eq!(parse_mac("02:00:00:00:00:0a"), Some([2, 0, 0, 0, 0, 10]));
        assert!(ifreq("a-name-that-is-way-too-long").is_err());
    }
}
