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
use xsw_datapath::error::Error;

use crate::spec::{BridgeSpec, PortSpec};

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
    port: Vec<toml::Spanned<PortSpec>>,
    #[serde(default)]
    meter: Vec<crate::spec::MeterSpec>,
}

/// Reads and checks a configuration file.
pub fn load(path: &Path) -> Result<Vec<BridgeSpec>, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse(&text, path)
}

/// Parses configuration `text` (read from `path`, for messages and for
/// finding flows files relative to it). Everything is checked: ports,
/// VLANs, numbers, interfaces, and every rule of the flows files.
pub fn parse(text: &str, path: &Path) -> Result<Vec<BridgeSpec>, Error> {
    let err = |span: Option<std::ops::Range<usize>>, msg: String| {
        let (line, col) = span.map_or((1, 1), |s| xsw_datapath::spec::line_col(text, s.start));
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
        let at = Some(sb.span());
        crate::spec::check_name("bridge", &b.name).map_err(|m| err(at.clone(), m))?;
        if !names.insert(b.name.clone()) {
            return Err(err(at, format!("bridge name {} is used twice", b.name)));
        }
        if b.port.is_empty() {
            return Err(err(
                at,
                format!("bridge {} has no ports: add [[bridge.port]] tables", b.name),
            ));
        }
        let mut spec = BridgeSpec::new(&b.name);
        spec.meters = b.meter.clone();
        for m in &spec.meters {
            m.check()
                .map_err(|e| err(at.clone(), format!("bridge {}: {e}", b.name)))?;
        }
        spec.mac_aging = b.mac_aging;
        spec.mac_table_size = b.mac_table_size;
        spec.options().map_err(|m| err(at.clone(), m))?;
        for sp in &b.port {
            let p = sp.get_ref();
            let span = Some(sp.span());
            p.to_def().map_err(|m| err(span.clone(), m))?;
            if !ifaces.insert(p.iface().to_string()) {
                return Err(err(
                    span,
                    format!("interface {} is used by two ports", p.iface()),
                ));
            }
            spec.ports.push(p.clone());
            // Names and numbers against the ports before it.
            spec.check_ports().map_err(|m| err(span.clone(), m))?;
        }
        if let Some(f) = &b.flows {
            let fpath = dir.join(f);
            let ftext = std::fs::read_to_string(&fpath).map_err(|e| Error::io(&fpath, e))?;
            let names = |n: &str| spec.port_number(n);
            let rules =
                xsw_datapath::spec::parse_rules(&ftext, &names).map_err(|e| Error::Flow {
                    path: fpath.clone(),
                    line: e.line,
                    source: e.error,
                })?;
            spec.flows = Some(rules.iter().map(|n| n.rule.to_string()).collect());
        }
        out.push(spec);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Vec<BridgeSpec>, String> {
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
        let d = b[0].to_def().expect("def");
        assert!(
            matches!(&d.ports[1].kind, xsw_live::engine::PortKind::Internal { iface } if iface == "host")
        );
        assert_eq!(d.rules.len(), 1, "the default NORMAL rule");
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
