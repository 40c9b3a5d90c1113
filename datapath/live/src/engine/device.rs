//! The devices behind a bridge's ports: what to open ([`PortDef`],
//! [`PortKind`]) and the open device ([`Device`]).

use xsw_datapath::pipeline::PortConfig;
use xsw_datapath::port::{BackendStats, Port};
use xsw_ebpf::AttachMode;

use crate::error::Error;
use crate::port::afxdp::{AfXdpOptions, AfXdpPort};
use crate::port::tap::TapPort;
use crate::sys::PollFd;

/// What kind of device a port is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortKind {
    /// An existing interface (NIC, veth, a VM's tap) driven through AF_XDP.
    AfXdp {
        /// The interface.
        iface: String,
        /// Pass the host's own traffic on it to the host stack.
        host_pass: bool,
        /// Force native or generic XDP.
        xdp_mode: Option<AttachMode>,
        /// Force zero-copy or copy.
        zero_copy: Option<bool>,
    },
    /// A tap device xsw creates and holds: the host's interface on the bridge.
    Internal {
        /// The device to create.
        iface: String,
    },
}

/// A port to open.
#[derive(Clone, Debug)]
pub struct PortDef {
    /// Pipeline configuration (name, ofport, VLANs, MTU).
    pub cfg: PortConfig,
    /// Device.
    pub kind: PortKind,
}

/// An open device: an AF_XDP interface or an internal tap.
pub struct Device(DeviceKind);

enum DeviceKind {
    AfXdp(Box<AfXdpPort>),
    Tap(TapPort),
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Device {
    /// Opens the device for `def` (attaching the XDP program and binding
    /// the sockets, or creating the tap). Errors name the port and say
    /// what to do.
    pub fn open(def: &PortDef) -> Result<Device, Error> {
        let perr = |msg: String| Error::Port {
            port: def.cfg.name.clone(),
            msg,
        };
        match &def.kind {
            PortKind::AfXdp {
                iface,
                host_pass,
                xdp_mode,
                zero_copy,
            } => {
                let opts = AfXdpOptions {
                    ofport: def.cfg.ofport,
                    host_pass: *host_pass,
                    xdp_mode: *xdp_mode,
                    zero_copy: *zero_copy,
                };
                let p = AfXdpPort::open(&def.cfg.name, iface, &opts)
                    .map_err(|e| perr(format!("interface {iface}: {e}")))?;
                if let Some(need) = def.cfg.mtu {
                    if p.info().mtu < need {
                        return Err(perr(format!(
                            "interface {iface} has MTU {} but the port's mtu is {need}: raise the interface's (ip link set {iface} mtu {need})",
                            p.info().mtu
                        )));
                    }
                }
                Ok(Device(DeviceKind::AfXdp(Box::new(p))))
            }
            PortKind::Internal { iface } => TapPort::create(&def.cfg.name, iface, def.cfg.mtu)
                .map(|t| Device(DeviceKind::Tap(t)))
                .map_err(|e| perr(format!("internal port {iface}: {e}"))),
        }
    }

    /// Device and mode, e.g. `veth0 afxdp, native XDP, copy mode, 1 queue(s), mtu 1500,
    /// software device: …` (the last part for veths and taps, see `port::afxdp`).
    pub fn describe(&self) -> String {
        match &self.0 {
            DeviceKind::AfXdp(p) => format!(
                "{} afxdp, {} XDP, {} mode, {} queue(s), mtu {}{}",
                p.info().name,
                p.xdp_mode().name(),
                if p.zero_copy() { "zero-copy" } else { "copy" },
                p.poll_fds().len(),
                p.info().mtu,
                if p.info().virtual_device {
                    ", software device: partial checksums completed, TCP super-frames segmented"
                } else {
                    ""
                }
            ),
            DeviceKind::Tap(t) => format!("{} internal (tap)", t.ifname()),
        }
    }

    /// The XDP attach mode, for AF_XDP ports.
    pub fn xdp_mode(&self) -> Option<&'static str> {
        match &self.0 {
            DeviceKind::AfXdp(p) => Some(p.xdp_mode().name()),
            DeviceKind::Tap(_) => None,
        }
    }

    /// True when the device holds frames it took but has not sent yet.
    pub(super) fn tx_waiting(&self) -> bool {
        match &self.0 {
            DeviceKind::AfXdp(p) => p.tx_waiting(),
            DeviceKind::Tap(p) => p.tx_waiting(),
        }
    }

    pub(super) fn port(&mut self) -> &mut dyn Port {
        match &mut self.0 {
            DeviceKind::AfXdp(p) => p.as_mut(),
            DeviceKind::Tap(p) => p,
        }
    }

    /// The AF_XDP port, when it is one.
    pub(super) fn afxdp(&self) -> Option<&AfXdpPort> {
        match &self.0 {
            DeviceKind::AfXdp(p) => Some(p),
            DeviceKind::Tap(_) => None,
        }
    }

    /// Adds the descriptors to wait on for received frames.
    pub(super) fn push_fds(&self, out: &mut Vec<PollFd>) {
        let mut add = |fd| out.push(PollFd::readable(fd));
        match &self.0 {
            DeviceKind::AfXdp(p) => p.poll_fds().into_iter().for_each(add),
            DeviceKind::Tap(p) => add(p.poll_fd()),
        }
    }

    pub(super) fn backend_stats(&self) -> BackendStats {
        match &self.0 {
            DeviceKind::AfXdp(x) => x.backend_stats(),
            DeviceKind::Tap(t) => t.backend_stats(),
        }
    }
}
