//! `xsw port`: add, delete, configure and count ports.

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{Subcommand, ValueEnum};

use xsw_control::proto::{PortAdd, PortDel, PortSet, PortStats, PortStatsReply};
use xsw_control::spec::{PortSpec, PortType, XdpMode};
use xsw_datapath::spec::{QosSpec, QueueSpec};
use xsw_datapath::vlan::VlanMode;

use super::{num, num_list, table, Live};

/// `--type`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TypeArg {
    /// An existing interface (NIC, veth, a VM's tap), through AF_XDP.
    Afxdp,
    /// A tap xsw creates for the host's own address on the bridge.
    Internal,
}

/// `--vlan-mode`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum VlanModeArg {
    Access,
    Trunk,
    NativeUntagged,
    NativeTagged,
}

/// `--xdp-mode`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum XdpModeArg {
    Native,
    Generic,
    Auto,
}

/// `xsw port` subcommands.
#[derive(Subcommand, Debug)]
pub enum PortCmd {
    /// Add a port: an existing interface (afxdp) or a new tap (internal).
    #[command(
        after_help = "Examples:\n  xsw port add br0 vm1 --interface tap-vm1 --vlan-mode access --tag 10\n  xsw port add br0 uplink --interface eth1 --trunks 10,20 --mtu 9000\n  xsw port add br0 host --type internal --interface br0-host"
    )]
    Add {
        /// The bridge.
        bridge: String,
        /// The port's name (used in flows: in_port=NAME, output:NAME).
        name: String,
        /// The interface: required for afxdp; for internal, the tap to create
        /// (default: the port's name).
        #[arg(long)]
        interface: Option<String>,
        /// Device type.
        #[arg(long = "type", value_enum, default_value = "afxdp")]
        kind: TypeArg,
        /// OpenFlow port number (default: the lowest free one).
        #[arg(long)]
        ofport: Option<u16>,
        /// VLAN mode (default: access with --tag, else trunk).
        #[arg(long, value_enum)]
        vlan_mode: Option<VlanModeArg>,
        /// Access VLAN, or native VLAN for native-* modes.
        #[arg(long)]
        tag: Option<u16>,
        /// VLANs a trunk carries, e.g. 10,20 (default all).
        #[arg(long, value_delimiter = ',')]
        trunks: Option<Vec<u16>>,
        /// Largest IP packet the port sends; larger frames are dropped and counted.
        #[arg(long)]
        mtu: Option<u32>,
        /// Switch the host's own traffic on this interface too (by default
        /// frames for the host's addresses go to the host stack).
        #[arg(long)]
        no_host_pass: bool,
        /// XDP attach mode.
        #[arg(long, value_enum)]
        xdp_mode: Option<XdpModeArg>,
    },
    /// Delete a port (the interface is released: its XDP program detached).
    #[command(after_help = "Example:\n  xsw port del br0 vm1")]
    Del {
        /// The bridge.
        bridge: String,
        /// The port.
        name: String,
    },
    /// Change a port's settings: its QoS.
    ///
    /// `qos` takes KEY=VALUE settings that replace the port's whole QoS
    /// (`qos none` removes it): rate=, burst= (port shaper, bits: 100M, 1.5G,
    /// 64k), scheduler=strict|drr|ets, strict_queues=N (ets: the top N
    /// queues strict), weights=W0,...,W7 (DRR, 1-100), pcp_map=Q0,...,Q7
    /// (queue per priority; default 1,0,2,3,4,5,6,7), default_pcp=P and
    /// dscp_map=DSCP:P,... (priority of frames arriving untagged here),
    /// remark_pcp=true (tags this port adds to untagged frames carry the
    /// frame's priority as PCP),
    /// police_rate=, police_burst= (ingress policing), queueN.rate=,
    /// queueN.burst=, queueN.depth= (queue N's shaper and depth).
    #[command(
        after_help = "Examples:\n  xsw port set br0 uplink qos rate=100M scheduler=strict\n  xsw port set br0 uplink qos rate=1G scheduler=ets strict_queues=2 weights=1,1,2,2,4,4,1,1 queue6.rate=200M\n  xsw port set br0 vm1 qos dscp_map=46:5,48:6 police_rate=50M\n  xsw port set br0 uplink qos none"
    )]
    Set {
        /// The bridge.
        bridge: String,
        /// The port.
        name: String,
        /// What to set (only `qos` for now).
        #[arg(value_parser = ["qos"])]
        what: String,
        /// KEY=VALUE settings, or `none`.
        #[arg(required = true)]
        settings: Vec<String>,
    },
    /// Port counters: rx/tx packets and bytes, drops by reason, XDP verdicts,
    /// kernel ring drops, QoS queues.
    #[command(after_help = "Example:\n  xsw port stats br0 --json | jq '.ports[].stats'")]
    Stats {
        /// The bridge.
        bridge: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `xsw port ...`.
pub fn run(live: &Live, cmd: PortCmd) -> Result<ExitCode> {
    match cmd {
        PortCmd::Add {
            bridge,
            name,
            interface,
            kind,
            ofport,
            vlan_mode,
            tag,
            trunks,
            mtu,
            no_host_pass,
            xdp_mode,
        } => {
            let kind = match kind {
                TypeArg::Afxdp => PortType::Afxdp,
                TypeArg::Internal => PortType::Internal,
            };
            if kind == PortType::Afxdp && interface.is_none() {
                bail!("--interface is required for an afxdp port (the netdev to drive, e.g. a veth or a VM's tap)");
            }
            let afxdp = kind == PortType::Afxdp;
            let port = PortSpec {
                name: name.clone(),
                ofport: ofport.unwrap_or(0),
                interface,
                kind: Some(kind),
                vlan_mode: vlan_mode.map(|m| match m {
                    VlanModeArg::Access => VlanMode::Access,
                    VlanModeArg::Trunk => VlanMode::Trunk,
                    VlanModeArg::NativeUntagged => VlanMode::NativeUntagged,
                    VlanModeArg::NativeTagged => VlanMode::NativeTagged,
                }),
                tag,
                trunks,
                mtu,
                host_pass: (afxdp && no_host_pass).then_some(false),
                xdp_mode: xdp_mode.map(|m| match m {
                    XdpModeArg::Native => XdpMode::Native,
                    XdpModeArg::Generic => XdpMode::Generic,
                    XdpModeArg::Auto => XdpMode::Auto,
                }),
                zero_copy: None,
                qos: None,
            };
            let r = live.call(PortAdd {
                bridge: bridge.clone(),
                port: Box::new(port),
            })?;
            eprintln!("port {name} added to {bridge} as ofport {}", r.ofport);
        }
        PortCmd::Del { bridge, name } => {
            live.call(PortDel {
                bridge: bridge.clone(),
                name: name.clone(),
            })?;
            eprintln!("port {name} deleted from {bridge}");
        }
        PortCmd::Set {
            bridge,
            name,
            what: _,
            settings,
        } => {
            let qos = qos_spec(&settings)?;
            let none = qos.is_none();
            live.call(PortSet {
                bridge: bridge.clone(),
                name: name.clone(),
                qos: qos.map(Box::new),
            })?;
            eprintln!(
                "port {name} of {bridge}: {}",
                if none { "QoS removed" } else { "QoS set" }
            );
        }
        PortCmd::Stats { bridge, json } => {
            if json {
                super::print_json(&live.call_value(PortStats { bridge })?)?;
            } else {
                print!("{}", stats_text(&live.call(PortStats { bridge })?));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A QoS setting from `xsw port set ... qos KEY=VALUE...`.
fn qos_spec(args: &[String]) -> Result<Option<QosSpec>> {
    if args.len() == 1 && args[0] == "none" {
        return Ok(None);
    }
    let mut q = QosSpec::default();
    let mut queues: Vec<QueueSpec> = Vec::new();
    for (k, v) in super::settings(args)? {
        match k.as_str() {
            "rate" => q.rate = Some(v),
            "burst" => q.burst = Some(v),
            "scheduler" => q.scheduler = Some(v),
            "strict_queues" => q.strict_queues = Some(num(&k, &v)?),
            "weights" => q.weights = Some(num_list(&k, &v)?),
            "pcp_map" => q.pcp_map = Some(num_list(&k, &v)?),
            "default_pcp" => q.default_pcp = Some(num(&k, &v)?),
            "dscp_map" => {
                let mut m = std::collections::BTreeMap::new();
                for pair in v.split(',') {
                    let (d, p) = pair.split_once(':').ok_or_else(|| {
                        anyhow::anyhow!("dscp_map: `{pair}` is not DSCP:PRIORITY")
                    })?;
                    let p: u8 = p
                        .trim()
                        .parse()
                        .map_err(|_| anyhow::anyhow!("dscp_map: `{p}` is not a priority"))?;
                    m.insert(d.trim().to_string(), p);
                }
                q.dscp_map = Some(m);
            }
            "remark_pcp" => {
                q.remark_pcp = Some(match v.as_str() {
                    "true" | "yes" | "1" => true,
                    "false" | "no" | "0" => false,
                    _ => bail!("remark_pcp: `{v}`: true or false"),
                })
            }
            "police_rate" => q.police_rate = Some(v),
            "police_burst" => q.police_burst = Some(v),
            other => {
                let Some((qn, field)) = other
                    .strip_prefix("queue")
                    .and_then(|r| r.split_once('.'))
                    .and_then(|(n, f)| n.parse::<u8>().ok().map(|n| (n, f)))
                else {
                    bail!("qos: unknown setting `{other}` (see xsw port set --help)");
                };
                let i = match queues.iter().position(|x| x.queue == qn) {
                    Some(i) => i,
                    None => {
                        queues.push(QueueSpec {
                            queue: qn,
                            ..Default::default()
                        });
                        queues.len() - 1
                    }
                };
                match field {
                    "rate" => queues[i].rate = Some(v),
                    "burst" => queues[i].burst = Some(v),
                    "depth" => queues[i].depth = Some(num(other, &v)?),
                    f => bail!("qos: queue{qn}.{f}: a queue has rate, burst and depth"),
                }
            }
        }
    }
    if !queues.is_empty() {
        q.queues = Some(queues);
    }
    // Checked here too, so a typo is reported before the daemon is asked.
    q.to_config().map_err(|e| anyhow::anyhow!("qos: {e}"))?;
    Ok(Some(q))
}

/// `k=v` pairs joined by spaces.
fn pairs<'a>(it: impl IntoIterator<Item = (&'a str, u64)>) -> String {
    it.into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Port counters: a table, then a line per port for each kind of detail
/// there is (drops by reason, XDP verdicts, device counters, queues,
/// malformed frames).
fn stats_text(r: &PortStatsReply) -> String {
    let rows: Vec<Vec<String>> = r
        .ports
        .iter()
        .map(|p| {
            let st = &p.stats;
            let drops: u64 = st.drops.values().sum();
            vec![
                p.name.clone(),
                st.rx_packets.to_string(),
                st.rx_bytes.to_string(),
                st.tx_packets.to_string(),
                st.tx_bytes.to_string(),
                drops.to_string(),
                if p.up { "up".into() } else { "down".into() },
            ]
        })
        .collect();
    let mut out = table(
        &[
            "PORT", "RX_PKTS", "RX_BYTES", "TX_PKTS", "TX_BYTES", "DROPS", "STATE",
        ],
        &rows,
    );
    for p in &r.ports {
        let mut parts = Vec::new();
        if !p.stats.drops.is_empty() {
            let d = pairs(p.stats.drops.iter().map(|(k, v)| (k.as_str(), *v)));
            parts.push(format!("drops: {d}"));
        }
        let be = &p.backend;
        if p.xdp_mode.is_some() {
            parts.push(format!("xdp: {}", pairs(be.xdp.named())));
        }
        let kernel = pairs(
            [
                ("kernel_rx_dropped", be.kernel_rx_dropped),
                ("kernel_rx_ring_full", be.kernel_rx_ring_full),
                ("kernel_fill_empty", be.kernel_fill_empty),
                ("tx_errors", be.tx_errors),
                ("rx_oversize", be.rx_oversize),
                ("rx_csum_completed", be.rx_csum_completed),
                ("rx_gso_frames", be.rx_gso_frames),
                ("rx_gso_segments", be.rx_gso_segments),
            ]
            .into_iter()
            .filter(|(_, v)| *v > 0),
        );
        if !kernel.is_empty() {
            parts.push(format!("device: {kernel}"));
        }
        for (i, q) in p.queues.iter().flatten().enumerate() {
            if q.enqueued == 0 {
                continue;
            }
            parts.push(format!(
                "queue {i}: {} queued, {} sent ({} bytes), {} dropped (full), {} waiting",
                q.enqueued, q.tx_packets, q.tx_bytes, q.dropped, q.depth
            ));
        }
        if !p.stats.malformed.is_empty() {
            let d = pairs(p.stats.malformed.iter().map(|(k, v)| (k.as_str(), *v)));
            parts.push(format!("malformed (switched): {d}"));
        }
        for part in parts {
            out.push_str(&format!("  {}: {part}\n", p.name));
        }
    }
    out
}
