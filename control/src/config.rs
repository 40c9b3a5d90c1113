//! `xswd --config FILE`: bridges and their ports, in TOML.
//!
//! ```toml
//! [[bridge]]
//! name = "br0"
//! flows = "br0.flows"          # optional, ovs-ofctl syntax; default: NORMAL
//!
//! [[bridge.port]]
//! name = "vm1"
//! ofport = 1
//! interface = "tap-vm1"        # an existing interface (NIC, veth, a VM's tap)
//! vlan_mode = "access"         # optional: access, trunk, native-untagged, native-tagged
//! tag = 10
//!
//! [[bridge.port]]
//! name = "host"
//! ofport = 100
//! type = "internal"            # a tap xsw creates for the host's own address
//! interface = "br0-host"       # its name (default: the port's name)
//! ```
//!
//! Every problem is reported with the file, line and column, and what to do.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use xsw_datapath::engine::{BridgeDef, PortDef, PortKind};
use xsw_datapath::error::Error;
use xsw_datapath::pipeline::{Pipeline, PipelineOptions, PortConfig};
use xsw_datapath::vlan::{PortVlan, VlanMode};
use xsw_ebpf::AttachMode;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    bridge: Vec<toml::Spanned<BridgeFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BridgeFile {
    name: String,
    #[serde(default)]
    flows: Option<String>,
    #[serde(default)]
    mac_aging: Option<u64>,
    #[serde(default)]
    mac_table_size: Option<usize>,
    #[serde(default)]
    port: Vec<toml::Spanned<PortFile>>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum PortType {
    Afxdp,
    Internal,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum XdpModeFile {
    Native,
    Generic,
    Auto,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PortFile {
    name: String,
    ofport: u16,
    #[serde(default)]
    interface: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<PortType>,
    #[serde(default)]
    vlan_mode: Option<VlanMode>,
    #[serde(default)]
    tag: Option<u16>,
    #[serde(default)]
    trunks: Option<Vec<u16>>,
    #[serde(default)]
    mtu: Option<u32>,
    #[serde(default)]
    host_pass: Option<bool>,
    #[serde(default)]
    xdp_mode: Option<XdpModeFile>,
    #[serde(default)]
    zero_copy: Option<bool>,
}

fn line_col(text: &str, byte: usize) -> (usize, usize) {
    let upto = &text[..byte.min(text.len())];
    (
        upto.matches('\n').count() + 1,
        upto.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1,
    )
}

/// Reads and checks a configuration file.
pub fn load(path: &Path) -> Result<Vec<BridgeDef>, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse(&text, path)
}

/// Parses configuration `text` (read from `path`, for messages and for
/// finding flows files relative to it).
pub fn parse(text: &str, path: &Path) -> Result<Vec<BridgeDef>, Error> {
    let err = |span: Option<std::ops::Range<usize>>, msg: String| {
        let (line, col) = span.map_or((1, 1), |s| line_col(text, s.start));
        Error::Config {
            path: path.to_path_buf(),
            line,
            col,
            msg,
        }
    };
    let file: File =
        toml::from_str(text).map_err(|e| err(e.span(), e.message().trim().to_string()))?;
    if file.bridge.is_empty() {
        return Err(err(
            None,
            "no bridges: add a [[bridge]] table with a name and [[bridge.port]] tables".into(),
        ));
    }
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let mut names = HashSet::new();
    let mut ifaces: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    for sb in &file.bridge {
        let b = sb.get_ref();
        if !names.insert(b.name.clone()) {
            return Err(err(
                Some(sb.span()),
                format!("bridge name {} is used twice", b.name),
            ));
        }
        if b.port.is_empty() {
            return Err(err(
                Some(sb.span()),
                format!("bridge {} has no ports: add [[bridge.port]] tables", b.name),
            ));
        }
        let mut options = PipelineOptions::default();
        if let Some(a) = b.mac_aging {
            let r = xsw_datapath::mac::AGING_RANGE;
            if !r.contains(&a) {
                return Err(err(
                    Some(sb.span()),
                    format!(
                        "bridge {}: mac_aging = {a}: must be {}-{} seconds",
                        b.name,
                        r.start(),
                        r.end()
                    ),
                ));
            }
            options.mac_aging_secs = a;
        }
        if let Some(s) = b.mac_table_size {
            let r = xsw_datapath::mac::MAX_ENTRIES_RANGE;
            if !r.contains(&s) {
                return Err(err(
                    Some(sb.span()),
                    format!(
                        "bridge {}: mac_table_size = {s}: must be {}-{}",
                        b.name,
                        r.start(),
                        r.end()
                    ),
                ));
            }
            options.mac_max_entries = s;
        }
        let mut ports = Vec::new();
        for sp in &b.port {
            let p = sp.get_ref();
            let span = Some(sp.span());
            let vlan = PortVlan::new(p.vlan_mode, p.tag, p.trunks.as_deref())
                .map_err(|m| err(span.clone(), format!("port {}: {m}", p.name)))?;
            let cfg = PortConfig {
                name: p.name.clone(),
                ofport: p.ofport,
                vlan,
                mtu: p.mtu,
            };
            let iface = p.interface.clone().unwrap_or_else(|| p.name.clone());
            if !ifaces.insert(iface.clone()) {
                return Err(err(span, format!("interface {iface} is used by two ports")));
            }
            let kind = match p.kind.unwrap_or(PortType::Afxdp) {
                PortType::Afxdp => {
                    if p.interface.is_none() {
                        return Err(err(span, format!("port {}: `interface` is required (the netdev to drive, e.g. a veth or a VM's tap)", p.name)));
                    }
                    PortKind::AfXdp {
                        iface,
                        host_pass: p.host_pass.unwrap_or(true),
                        xdp_mode: match p.xdp_mode {
                            Some(XdpModeFile::Native) => Some(AttachMode::Native),
                            Some(XdpModeFile::Generic) => Some(AttachMode::Generic),
                            Some(XdpModeFile::Auto) | None => None,
                        },
                        zero_copy: p.zero_copy,
                    }
                }
                PortType::Internal => {
                    if p.host_pass.is_some() || p.xdp_mode.is_some() || p.zero_copy.is_some() {
                        return Err(err(span, format!("port {}: host_pass, xdp_mode and zero_copy apply to afxdp ports, not internal ones", p.name)));
                    }
                    PortKind::Internal { iface }
                }
            };
            ports.push(PortDef { cfg, kind });
        }
        // Port numbering and MTU checks, as the pipeline does them.
        let cfgs: Vec<PortConfig> = ports.iter().map(|p| p.cfg.clone()).collect();
        Pipeline::new(cfgs, options)
            .map_err(|e| err(Some(sb.span()), format!("bridge {}: {e}", b.name)))?;
        let rules = match &b.flows {
            None => Vec::new(),
            Some(f) => {
                let fpath = dir.join(f);
                let ftext = std::fs::read_to_string(&fpath).map_err(|e| Error::io(&fpath, e))?;
                let names = |n: &str| ports.iter().find(|p| p.cfg.name == n).map(|p| p.cfg.ofport);
                xsw_datapath::replay::parse_rules(&ftext, &names)
                    .map_err(|(line, source)| Error::Flow {
                        path: fpath.clone(),
                        line,
                        source,
                    })?
                    .into_iter()
                    .map(|(_, r)| r)
                    .collect()
            }
        };
        out.push(BridgeDef {
            name: b.name.clone(),
            ports,
            rules,
            options,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Vec<BridgeDef>, String> {
        parse(text, Path::new("/tmp/xswd.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_good_config() {
        let b = p(r#"
[[bridge]]
name = "br0"

[[bridge.port]]
name = "vm1"
ofport = 1
interface = "tap1"
tag = 10

[[bridge.port]]
name = "host"
ofport = 2
type = "internal"
"#)
        .expect("valid");
        assert_eq!(b[0].ports.len(), 2);
        assert!(matches!(&b[0].ports[1].kind, PortKind::Internal { iface } if iface == "host"));
    }

    #[test]
    fn problems_are_located_and_explained() {
        let e = p("[[bridge]]\nname = \"b\"\n[[bridge.port]]\nname = \"p\"\nofport = 1\n")
            .expect_err("no interface");
        assert!(
            e.contains("xswd.toml:3:1") && e.contains("`interface` is required"),
            "{e}"
        );
        let e = p("[[bridge]]\nname = \"b\"\n[[bridge.port]]\nname = \"p\"\nofport = 1\ninterface = \"x\"\nspeed = 10\n").expect_err("unknown key");
        assert!(e.contains(":7:1") && e.contains("speed"), "{e}");
        let e = p("[[bridge]]\nname = \"b\"\n[[bridge.port]]\nname = \"p\"\nofport = 1\ninterface = \"x\"\n[[bridge.port]]\nname = \"q\"\nofport = 2\ninterface = \"x\"\n").expect_err("dup iface");
        assert!(e.contains(":7:1") && e.contains("used by two ports"), "{e}");
        let e = p("").expect_err("empty");
        assert!(e.contains("no bridges"), "{e}");
    }
}
