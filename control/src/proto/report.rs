//! The engine's reports, as they travel (also in the `--stats-file`):
//! readable copies of `xsw_live::engine`'s report types, which write the
//! same JSON, and the conversions from them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One open port's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortReport {
    /// Name.
    pub name: String,
    /// OpenFlow number.
    pub ofport: u16,
    /// Device and mode, e.g. `veth0 afxdp native copy 1 queue`.
    pub device: String,
    /// XDP attach mode (`native`, `generic`) for AF_XDP ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xdp_mode: Option<String>,
    /// False once the device vanished.
    pub up: bool,
    /// Pipeline counters.
    pub stats: PortCounters,
    /// Device counters.
    pub backend: DeviceCounters,
    /// QoS queues (index = queue), for a port with QoS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queues: Option<Vec<QueueCounters>>,
}

/// A port's pipeline counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortCounters {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Drops by reason (only reasons with drops).
    pub drops: BTreeMap<String, u64>,
    /// Frames switched despite inconsistent headers, by kind (only kinds
    /// seen).
    pub malformed: BTreeMap<String, u64>,
}

/// What a port's device dropped or altered on its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCounters {
    /// Frames longer than 9216 bytes, dropped at receive.
    pub rx_oversize: u64,
    /// Captured frames shorter than on the wire.
    pub rx_snap_truncated: u64,
    /// Records skipped because their capture interface is not Ethernet.
    pub rx_not_ethernet: u64,
    /// Frames the device refused to send.
    pub tx_errors: u64,
    /// TCP/UDP frames received with a partial checksum (the sender's
    /// checksum offload) that the port completed in software.
    #[serde(default)]
    pub rx_csum_completed: u64,
    /// TCP super-frames (the sender's segmentation offload: longer than
    /// the interface's MTU) cut into segments.
    #[serde(default)]
    pub rx_gso_frames: u64,
    /// Segments cut from them.
    #[serde(default)]
    pub rx_gso_segments: u64,
    /// AF_XDP: frames the kernel dropped.
    pub kernel_rx_dropped: u64,
    /// AF_XDP: times the rx ring was full.
    pub kernel_rx_ring_full: u64,
    /// AF_XDP: times the fill ring was empty.
    pub kernel_fill_empty: u64,
    /// What the port's XDP program did with received frames.
    pub xdp: XdpCounters,
}

/// Frames per verdict of a port's XDP program.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct XdpCounters {
    /// Passed to the host stack.
    pub pass_host: u64,
    /// Dropped in the kernel by a flow rule.
    pub drop_rule: u64,
    /// Redirected to the switch's AF_XDP socket.
    pub redirect: u64,
    /// Dropped: no socket on the frame's rx queue.
    pub no_socket: u64,
    /// Passed because the port was not configured yet.
    pub disabled: u64,
}

impl XdpCounters {
    /// The verdicts by name, in alphabetical order.
    pub fn named(&self) -> [(&'static str, u64); 5] {
        [
            ("disabled", self.disabled),
            ("drop_rule", self.drop_rule),
            ("no_socket", self.no_socket),
            ("pass_host", self.pass_host),
            ("redirect", self.redirect),
        ]
    }
}

/// One QoS queue's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCounters {
    /// Frames queued.
    pub enqueued: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// Frames dropped because the queue was full.
    pub dropped: u64,
    /// Frames waiting now.
    pub depth: u64,
}

/// One rule with its counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleReport {
    /// The rule, dump-flows style.
    pub dump: String,
    /// Frames matched.
    pub n_packets: u64,
    /// Their bytes.
    pub n_bytes: u64,
    /// True when the rule is also enforced in the XDP program.
    pub in_xdp: bool,
}

/// The polling thread's own counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineInfo {
    /// Seconds since the engine started running.
    pub run_seconds: f64,
    /// Of those, seconds spent switching frames.
    pub busy_seconds: f64,
    /// Commands from the control plane carried out.
    pub commands: u64,
}

/// The `--stats-file` of `xswd`: every bridge, with its rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsReport {
    /// Bridges.
    pub bridges: Vec<BridgeReport>,
    /// The polling thread's own counters.
    pub engine: EngineInfo,
}

/// One bridge in a [`StatsReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeReport {
    /// Name.
    pub name: String,
    /// Ports.
    pub ports: Vec<PortReport>,
    /// Rules.
    pub rules: Vec<RuleReport>,
    /// Learned MACs.
    pub mac_entries: usize,
}

/// From the engine's report types.
#[cfg(feature = "daemon")]
mod from_engine {
    use super::*;
    use crate::proto::{FdbEntry, TraceSummary};
    use xsw_live::engine as e;

    impl From<&e::PortReport> for PortReport {
        fn from(p: &e::PortReport) -> PortReport {
            let names = |v: Vec<(&'static str, u64)>| {
                v.into_iter().map(|(k, n)| (k.to_string(), n)).collect()
            };
            let b = &p.backend;
            PortReport {
                name: p.name.clone(),
                ofport: p.ofport,
                device: p.device.clone(),
                xdp_mode: p.xdp_mode.map(str::to_string),
                up: p.up,
                stats: PortCounters {
                    rx_packets: p.stats.rx_packets,
                    rx_bytes: p.stats.rx_bytes,
                    tx_packets: p.stats.tx_packets,
                    tx_bytes: p.stats.tx_bytes,
                    drops: names(p.stats.drops.nonzero()),
                    malformed: names(p.stats.malformed.nonzero()),
                },
                backend: DeviceCounters {
                    rx_oversize: b.rx_oversize,
                    rx_snap_truncated: b.rx_snap_truncated,
                    rx_not_ethernet: b.rx_not_ethernet,
                    tx_errors: b.tx_errors,
                    rx_csum_completed: b.rx_csum_completed,
                    rx_gso_frames: b.rx_gso_frames,
                    rx_gso_segments: b.rx_gso_segments,
                    kernel_rx_dropped: b.kernel_rx_dropped,
                    kernel_rx_ring_full: b.kernel_rx_ring_full,
                    kernel_fill_empty: b.kernel_fill_empty,
                    xdp: XdpCounters {
                        pass_host: b.xdp.pass_host,
                        drop_rule: b.xdp.drop_rule,
                        redirect: b.xdp.redirect,
                        no_socket: b.xdp.no_socket,
                        disabled: b.xdp.disabled,
                    },
                },
                queues: p.queues.as_ref().map(|qs| {
                    qs.iter()
                        .map(|q| QueueCounters {
                            enqueued: q.enqueued,
                            tx_packets: q.tx_packets,
                            tx_bytes: q.tx_bytes,
                            dropped: q.dropped,
                            depth: q.depth,
                        })
                        .collect()
                }),
            }
        }
    }

    impl From<e::RuleReport> for RuleReport {
        fn from(r: e::RuleReport) -> RuleReport {
            RuleReport {
                dump: r.dump,
                n_packets: r.n_packets,
                n_bytes: r.n_bytes,
                in_xdp: r.in_xdp,
            }
        }
    }

    impl From<&e::EngineStats> for EngineInfo {
        fn from(s: &e::EngineStats) -> EngineInfo {
            EngineInfo {
                run_seconds: s.run_seconds,
                busy_seconds: s.busy_seconds,
                commands: s.commands,
            }
        }
    }

    impl From<&e::BridgeSnapshot> for BridgeReport {
        fn from(s: &e::BridgeSnapshot) -> BridgeReport {
            BridgeReport {
                name: s.name.clone(),
                ports: s.ports.iter().map(PortReport::from).collect(),
                rules: s
                    .rules
                    .iter()
                    .flatten()
                    .map(|r| r.report(s.at).into())
                    .collect(),
                mac_entries: s.mac_entries,
            }
        }
    }

    impl From<xsw_live::engine::FdbRow> for FdbEntry {
        fn from(r: xsw_live::engine::FdbRow) -> FdbEntry {
            FdbEntry {
                vlan: r.vlan,
                mac: r.mac,
                port: r.port,
                age: r.age,
            }
        }
    }

    impl From<xsw_datapath::trace::TraceJson> for TraceSummary {
        fn from(t: xsw_datapath::trace::TraceJson) -> TraceSummary {
            TraceSummary {
                lines: t.lines,
                outputs: t.outputs,
                dropped: t.dropped.map(str::to_string),
            }
        }
    }
}

#[cfg(all(test, feature = "daemon"))]
mod tests {
    use super::*;
    use crate::proto::reply::tests::round_trip;
    use crate::proto::FdbEntry;

    /// The reply types write exactly what the engine's report types write.
    #[test]
    fn reports_serialise_as_the_engines() {
        use xsw_live::engine as e;
        let mut stats = xsw_datapath::stats::PortStats {
            rx_packets: 5,
            tx_bytes: 99,
            ..Default::default()
        };
        stats.drops.add(xsw_datapath::stats::DropReason::ALL[1], 3);
        stats.drops.add(xsw_datapath::stats::DropReason::ALL[0], 2);
        let mut p = e::PortReport {
            name: "a".into(),
            ofport: 3,
            device: "pa afxdp".into(),
            xdp_mode: Some("native"),
            up: true,
            stats,
            backend: Default::default(),
            queues: None,
        };
        p.backend.xdp.redirect = 7;
        p.backend.kernel_fill_empty = 1;
        let want = serde_json::to_value(&p).expect("engine json");
        assert_eq!(
            serde_json::to_value(PortReport::from(&p)).expect("json"),
            want
        );
        round_trip(&PortReport::from(&p));
        p.xdp_mode = None;
        p.queues = Some(Default::default());
        let want = serde_json::to_value(&p).expect("engine json");
        assert_eq!(
            serde_json::to_value(PortReport::from(&p)).expect("json"),
            want
        );
        let s = e::EngineStats {
            run_seconds: 1.5,
            busy_seconds: 0.25,
            commands: 4,
        };
        assert_eq!(
            serde_json::to_value(EngineInfo::from(&s)).expect("json"),
            serde_json::to_value(s).expect("engine json")
        );
        let row = xsw_live::engine::FdbRow {
            vlan: 10,
            mac: "02:00:00:00:00:01".into(),
            port: "a".into(),
            age: 3,
        };
        let want = serde_json::to_value(&row).expect("engine json");
        assert_eq!(
            serde_json::to_value(FdbEntry::from(row)).expect("json"),
            want
        );
    }

    /// The stats file's bridges and the dump's rules, too.
    #[test]
    fn bridge_reports_serialise_as_the_engines() {
        use xsw_live::engine as e;
        let rule = xsw_datapath::flow::parse_flow("priority=5,ip,actions=drop", &()).expect("rule");
        let snap = e::BridgeSnapshot {
            name: "br0".into(),
            ports: vec![],
            rules: Some(vec![e::RuleSnapshot {
                rule,
                stats: Default::default(),
                in_xdp: true,
            }]),
            n_rules: 1,
            tables: vec![],
            mac_entries: 2,
            mac_max: 10,
            meters: vec![],
            emc: xsw_datapath::emc::EmcStats::default(),
            at: xsw_datapath::Timestamp(5_000_000_000),
        };
        assert_eq!(
            serde_json::to_value(BridgeReport::from(&snap)).expect("json"),
            serde_json::to_value(snap.report()).expect("engine json")
        );
        round_trip(&BridgeReport::from(&snap));
    }
}
