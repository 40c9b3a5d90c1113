//! Bridges and ports as the user declares them: in `xswd`'s TOML config, in
//! the daemon's state file, and in control requests. One type for all three,
//! checked in one place.

use serde::{Deserialize, Serialize};
use xsw_datapath::flow::{parse_flow, FlowError, Rule};
use xsw_datapath::pipeline::PipelineOptions;
#[cfg(feature = "daemon")]
use xsw_datapath::pipeline::{Pipeline, PortConfig};
use xsw_datapath::spec::{MeterDef, QosSpec};
#[cfg(feature = "daemon")]
use xsw_datapath::vlan::PortVlan;
use xsw_datapath::vlan::VlanMode;
#[cfg(feature = "daemon")]
use xsw_ebpf::AttachMode;
#[cfg(feature = "daemon")]
use xsw_live::engine::{BridgeDef, PortDef, PortKind};

/// A port's device type.
#[derive(Debug, Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum PortType {
    /// An existing interface driven through AF_XDP (the default).
    #[default]
    Afxdp,
    /// A tap xsw creates for the host's own address on the bridge.
    Internal,
}

impl PortType {
    /// The name used in files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            PortType::Afxdp => "afxdp",
            PortType::Internal => "internal",
        }
    }
}

/// How the XDP program is attached.
#[derive(Debug, Serialize, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// In the driver.
    Native,
    /// In the generic stack.
    Generic,
    /// Native where the driver allows, else generic (the default).
    Auto,
}

/// One port.
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    /// Name, unique in its bridge.
    pub name: String,
    /// OpenFlow port number (1-65279), unique in its bridge.
    pub ofport: u16,
    /// The netdev: required for afxdp ports; for internal ports the tap to
    /// create (default: the port's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// Device type (default afxdp).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<PortType>,
    /// VLAN mode (default: access when `tag` is set, else trunk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan_mode: Option<VlanMode>,
    /// Access or native VLAN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<u16>,
    /// VLANs a trunk carries (default all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trunks: Option<Vec<u16>>,
    /// Largest IP packet sent on the port; larger frames are dropped and counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Pass frames for the host's own addresses on the interface to the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_pass: Option<bool>,
    /// XDP attach mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xdp_mode: Option<XdpMode>,
    /// Force zero-copy (true) or copy (false) AF_XDP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zero_copy: Option<bool>,
    /// 802.1p QoS: queues, scheduler, shapers, priority maps, policing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos: Option<QosSpec>,
}

/// One bridge.
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BridgeSpec {
    /// Name.
    pub name: String,
    /// MAC aging in seconds (15-3600, default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_aging: Option<u64>,
    /// MAC table size (10-1,000,000, default 8192).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_table_size: Option<usize>,
    /// Ports.
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    /// Rules in ovs-ofctl syntax; `None` means the default
    /// `priority=0,actions=NORMAL` alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flows: Option<Vec<String>>,
    /// Meters rules can use (`meter:N`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub meters: Vec<MeterSpec>,
}

/// A meter: `id`, `rate` and optional `burst` in bits (k/M/G).
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MeterSpec {
    /// Id, 1-65535.
    pub id: u32,
    /// Rate, e.g. `10M`.
    pub rate: String,
    /// Burst, e.g. `100k` (default: 1 ms at the rate, at least two largest frames).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<String>,
}

impl MeterSpec {
    /// Checks it: the meter in bits/s and bits.
    pub fn check(&self) -> Result<MeterDef, String> {
        MeterDef::parse(self.id, &self.rate, self.burst.as_deref())
    }
}

/// Checks a bridge or port name: what `ip link` would accept as a name and
/// what reads well in flows (`in_port=NAME`).
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 32 {
        return Err(format!("{what} name `{name}` must be 1-32 characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(format!(
            "{what} name `{name}`: `{c}` is not allowed (letters, digits, `_`, `-`, `.`)"
        ));
    }
    if name.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "{what} name `{name}` must not be a number (it would read as an ofport)"
        ));
    }
    Ok(())
}

/// Checks an interface name as the kernel does (1-15 bytes, no `/`, no
/// whitespace).
pub fn check_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 15 {
        return Err(format!("interface name `{name}` must be 1-15 characters"));
    }
    if name.contains(['/', ':']) || name.chars().any(char::is_whitespace) || name == "." {
        return Err(format!("interface name `{name}` is not valid"));
    }
    Ok(())
}

impl PortSpec {
    /// The interface the port drives.
    pub fn iface(&self) -> &str {
        self.interface.as_deref().unwrap_or(&self.name)
    }

    /// The device type.
    pub fn port_type(&self) -> PortType {
        self.kind.unwrap_or_default()
    }

    /// Checks the port on its own and makes its definition.
    #[cfg(feature = "daemon")]
    pub fn to_def(&self) -> Result<PortDef, String> {
        check_name("port", &self.name)?;
        let vlan = PortVlan::new(self.vlan_mode, self.tag, self.trunks.as_deref())
            .map_err(|m| format!("port {}: {m}", self.name))?;
        let qos = match &self.qos {
            Some(q) => {
                if q.line_rate.is_some() {
                    return Err(format!(
                        "port {}: qos: line_rate is for replay; on a live port the device sets the pace (use rate to shape)",
                        self.name
                    ));
                }
                Some(
                    q.to_config()
                        .map_err(|m| format!("port {}: qos: {m}", self.name))?,
                )
            }
            None => None,
        };
        let cfg = PortConfig {
            name: self.name.clone(),
            ofport: self.ofport,
            vlan,
            mtu: self.mtu,
            qos,
        };
        let iface = self.iface().to_string();
        check_ifname(&iface).map_err(|m| format!("port {}: {m}", self.name))?;
        let kind = match self.port_type() {
            PortType::Afxdp => {
                if self.interface.is_none() {
                    return Err(format!(
                        "port {}: `interface` is required (the netdev to drive, e.g. a veth or a VM's tap)",
                        self.name
                    ));
                }
                PortKind::AfXdp {
                    iface,
                    host_pass: self.host_pass.unwrap_or(true),
                    xdp_mode: match self.xdp_mode {
                        Some(XdpMode::Native) => Some(AttachMode::Native),
                        Some(XdpMode::Generic) => Some(AttachMode::Generic),
                        Some(XdpMode::Auto) | None => None,
                    },
                    zero_copy: self.zero_copy,
                }
            }
            PortType::Internal => {
                if self.host_pass.is_some() || self.xdp_mode.is_some() || self.zero_copy.is_some() {
                    return Err(format!(
                        "port {}: host_pass, xdp_mode and zero_copy apply to afxdp ports, not internal ones",
                        self.name
                    ));
                }
                PortKind::Internal { iface }
            }
        };
        // Number and MTU ranges, as the pipeline checks them.
        Pipeline::check_ports(std::slice::from_ref(&cfg)).map_err(|e| e.to_string())?;
        Ok(PortDef { cfg, kind })
    }

    /// VLAN settings in words, e.g. `access 10`, `trunk 10,20`, `trunk all`.
    pub fn vlan_text(&self) -> String {
        let mode = self.vlan_mode.unwrap_or(if self.tag.is_some() {
            VlanMode::Access
        } else {
            VlanMode::Trunk
        });
        let trunks = || match &self.trunks {
            Some(t) => t.iter().map(u16::to_string).collect::<Vec<_>>().join(","),
            None => "all".into(),
        };
        match mode {
            VlanMode::Access => format!("access {}", self.tag.unwrap_or(0)),
            VlanMode::Trunk => format!("trunk {}", trunks()),
            m => format!("{} {} trunks {}", m.name(), self.tag.unwrap_or(0), trunks()),
        }
    }
}

/// Where a flow line went wrong.
#[derive(Debug)]
pub struct FlowLineError {
    /// Index in the flows list (0-based).
    pub index: usize,
    /// The problem.
    pub error: FlowError,
}

impl BridgeSpec {
    /// A new bridge with no ports and the default rule.
    pub fn new(name: &str) -> BridgeSpec {
        BridgeSpec {
            name: name.to_string(),
            mac_aging: None,
            mac_table_size: None,
            ports: Vec::new(),
            flows: None,
            meters: Vec::new(),
        }
    }

    /// The pipeline options, checked against the ranges OVS accepts.
    pub fn options(&self) -> Result<PipelineOptions, String> {
        let mut o = PipelineOptions::default();
        xsw_datapath::mac::check_options(self.mac_aging, self.mac_table_size)
            .map_err(|e| format!("bridge {}: {e}", self.name))?;
        if let Some(a) = self.mac_aging {
            o.mac_aging_secs = a;
        }
        if let Some(s) = self.mac_table_size {
            o.mac_max_entries = s;
        }
        Ok(o)
    }

    /// Resolves port names in flows (`in_port=vm1`, `output:vm1`).
    pub fn port_number(&self, name: &str) -> Option<u16> {
        self.ports.iter().find(|p| p.name == name).map(|p| p.ofport)
    }

    /// Parses one rule with this bridge's port names; a rule that names a
    /// meter the bridge does not have is refused.
    pub fn parse_rule(&self, text: &str) -> Result<Rule, FlowError> {
        let r = parse_flow(text, &|n: &str| self.port_number(n))?;
        if let Some(id) = r.missing_meter(|id| self.meters.iter().any(|m| m.id == id)) {
            let col = text.find("meter").map_or(1, |i| i + 1);
            return Err(FlowError::new(
                col,
                format!(
                    "meter:{id}: no such meter (add it: xsw meter add {} {id} rate=10M)",
                    self.name
                ),
            ));
        }
        Ok(r)
    }

    /// Parses the bridge's flows (the default rule when there are none).
    pub fn rules(&self) -> Result<Vec<Rule>, FlowLineError> {
        match &self.flows {
            None => Ok(vec![Rule::default_normal()]),
            Some(lines) => lines
                .iter()
                .enumerate()
                .map(|(index, l)| {
                    self.parse_rule(l)
                        .map_err(|error| FlowLineError { index, error })
                })
                .collect(),
        }
    }

    /// Checks ports against each other (names, numbers, interfaces).
    #[cfg(feature = "daemon")]
    pub fn check_ports(&self) -> Result<Vec<PortDef>, String> {
        let mut defs: Vec<PortDef> = Vec::new();
        for p in &self.ports {
            let d = p
                .to_def()
                .map_err(|m| format!("bridge {}: {m}", self.name))?;
            if let Some(o) = self
                .ports
                .iter()
                .take(defs.len())
                .find(|o| o.iface() == p.iface())
            {
                return Err(format!(
                    "bridge {}: interface {} is used by ports {} and {}",
                    self.name,
                    p.iface(),
                    o.name,
                    p.name
                ));
            }
            defs.push(d);
        }
        let cfgs: Vec<PortConfig> = defs.iter().map(|d| d.cfg.clone()).collect();
        Pipeline::check_ports(&cfgs).map_err(|e| format!("bridge {}: {e}", self.name))?;
        Ok(defs)
    }

    /// Checks everything and makes the bridge's definition.
    #[cfg(feature = "daemon")]
    pub fn to_def(&self) -> Result<BridgeDef, String> {
        check_name("bridge", &self.name)?;
        let options = self.options()?;
        let ports = self.check_ports()?;
        let mut meters = Vec::new();
        for m in &self.meters {
            let c = m
                .check()
                .map_err(|e| format!("bridge {}: {e}", self.name))?;
            if meters.iter().any(|d: &MeterDef| d.id == c.id) {
                return Err(format!("bridge {}: meter {} twice", self.name, c.id));
            }
            meters.push(c);
        }
        let rules = self.rules().map_err(|e| {
            format!(
                "bridge {}: flow {}: column {}: {}",
                self.name,
                e.index + 1,
                e.error.col(),
                e.error.msg()
            )
        })?;
        Ok(BridgeDef {
            name: self.name.clone(),
            ports,
            rules,
            meters,
            options,
        })
    }

    /// The lowest OpenFlow port number not in use.
    pub fn free_ofport(&self) -> u16 {
        (1..u16::MAX)
            .find(|n| self.ports.iter().all(|p| p.ofport != *n))
            .unwrap_or(u16::MAX)
    }
}

#[cfg(all(test, feature = "daemon"))]
mod tests {
    use super::*;

    fn port(name: &str, of: u16, iface: &str) -> PortSpec {
        PortSpec {
            name: name.into(),
            ofport: of,
            interface: Some(iface.into()),
            kind: None,
            vlan_mode: None,
            tag: None,
            trunks: None,
            mtu: None,
            host_pass: None,
            xdp_mode: None,
            zero_copy: None,
            qos: None,
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("port", "vm1").is_ok());
        assert!(check_name("port", "").is_err());
        assert!(check_name("port", "a b").is_err());
        assert!(check_name("port", "12").is_err());
        assert!(check_ifname("veth-a.10").is_ok());
        assert!(check_ifname("this-is-too-long-x").is_err());
    }

    #[test]
    fn bridges_are_checked_whole() {
        let mut b = BridgeSpec::new("br0");
        b.ports.push(port("a", 1, "va"));
        b.ports.push(port("b", 2, "vb"));
        b.flows = Some(vec!["in_port=a,actions=output:b".into()]);
        let d = b.to_def().expect("valid");
        assert_eq!(d.rules.len(), 1);
        b.ports.push(port("c", 2, "vc"));
        assert!(b.to_def().expect_err("dup ofport").contains("ofport 2"));
        b.ports.pop();
        b.ports.push(port("c", 3, "va"));
        assert!(b.to_def().expect_err("dup iface").contains("interface va"));
        b.ports.pop();
        b.flows = Some(vec!["in_port=zz,actions=drop".into()]);
        let e = b.to_def().expect_err("bad flow");
        assert!(e.contains("flow 1: column"), "{e}");
        b.flows = None;
        assert_eq!(b.rules().expect("default").len(), 1);
        assert_eq!(b.free_ofport(), 3);
    }

    #[test]
    fn specs_round_trip_through_json() {
        let mut b = BridgeSpec::new("br0");
        let mut p = port("a", 1, "va");
        p.vlan_mode = Some(VlanMode::NativeTagged);
        p.tag = Some(5);
        p.trunks = Some(vec![5, 6]);
        b.ports.push(p);
        b.flows = Some(vec![]);
        let s = serde_json::to_string(&b).expect("json");
        let back: BridgeSpec = serde_json::from_str(&s).expect("parse");
        assert_eq!(back, b);
        assert_eq!(b.ports[0].vlan_text(), "native-tagged 5 trunks 5,6");
    }
}
