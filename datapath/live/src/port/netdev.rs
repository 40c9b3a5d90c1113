//! What the switch needs to know about a network interface: its index,
//! MAC, MTU, rx queues and the host's addresses on it; and bringing one up.
//! Sysfs and `getifaddrs` where they suffice, ioctls where they do not.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use crate::sys;

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
    /// A software device (veth, tap, ...: no bus device behind it). Its
    /// frames are skbs from this host's own stack or a guest's, which may
    /// carry partial checksums (see `xsw_datapath::csum`).
    pub virtual_device: bool,
}

/// The index of interface `name`, or `None` when it does not exist (or its
/// name is not a valid interface name).
pub fn ifindex(name: &str) -> Option<u32> {
    sys::if_nametoindex(name).ok()
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
        virtual_device: !Path::new("/sys/class/net")
            .join(name)
            .join("device")
            .exists(),
    })
}

/// The host's IPv4 and IPv6 addresses on interface `name`.
pub fn host_addrs(name: &str) -> io::Result<(Vec<Ipv4Addr>, Vec<Ipv6Addr>)> {
    sys::if_addrs(name)
}

/// Sets interface `name` up (like `ip link set NAME up`).
pub fn set_up(name: &str) -> io::Result<()> {
    let flags = sys::if_flags(name)?;
    sys::set_if_flags(name, flags | sys::IFF_UP)
}

/// Sets interface `name`'s MTU.
pub fn set_mtu(name: &str, mtu: u32) -> io::Result<()> {
    sys::set_if_mtu(name, mtu)
}

/// True when this process runs as root (the fast path needs CAP_NET_ADMIN,
/// CAP_NET_RAW and CAP_BPF; root has them).
pub fn is_root() -> bool {
    sys::geteuid() == 0
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
        assert!(set_up("a-name-that-is-way-too-long").is_err());
    }
}
