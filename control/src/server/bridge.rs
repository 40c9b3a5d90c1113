//! Show, bridges and their MAC tables.

use xsw_datapath::flow::Rule;
use xsw_live::engine::EngineHandle;

use super::{internal, Server};
use crate::proto::{
    BridgeInfo, Code, Done, EngineInfo, ErrorBody, FdbFlushReply, FdbShowReply, PortInfo, ShowReply,
};
use crate::spec::{check_name, BridgeSpec};

impl Server {
    pub(super) fn show(&self, bridge: Option<&str>) -> Result<ShowReply, ErrorBody> {
        let m = self.lock();
        if let Some(b) = bridge {
            m.bridge(b)?;
        }
        let (snaps, stats) = self.snapshot(bridge, false)?;
        let mut out = Vec::new();
        for b in m
            .bridges
            .iter()
            .filter(|b| bridge.is_none_or(|n| n == b.name))
        {
            let snap = snaps.iter().find(|s| s.name == b.name);
            let ports: Vec<PortInfo> = b
                .ports
                .iter()
                .map(|p| {
                    let live = snap.and_then(|s| s.ports.iter().find(|x| x.name == p.name));
                    let absent = m.absent.get(&(b.name.clone(), p.name.clone()));
                    PortInfo {
                        name: p.name.clone(),
                        ofport: p.ofport,
                        interface: p.iface().to_string(),
                        kind: p.port_type().name().to_string(),
                        vlan: p.vlan_text(),
                        vlan_mode: p.vlan_mode,
                        tag: p.tag,
                        trunks: p.trunks.clone(),
                        mtu: p.mtu,
                        qos: p.qos.clone(),
                        xdp_mode: live.and_then(|l| l.xdp_mode).map(str::to_string),
                        device: live.map(|l| l.device.clone()),
                        state: match (live, absent) {
                            (Some(l), _) if l.up => "up".to_string(),
                            (Some(_), _) => "down (device gone)".to_string(),
                            (None, Some(why)) => format!("not open: {why}"),
                            (None, None) => "not open".to_string(),
                        },
                    }
                })
                .collect();
            out.push(BridgeInfo {
                name: b.name.clone(),
                mac_aging: b.options().map(|o| o.mac_aging_secs).unwrap_or_default(),
                mac_table_size: b.options().map(|o| o.mac_max_entries).unwrap_or_default(),
                ports,
                flows: snap.map_or(0, |s| s.n_rules),
                meters: b.meters.clone(),
                mac_entries: snap.map_or(0, |s| s.mac_entries),
            });
        }
        Ok(ShowReply {
            bridges: out,
            engine: EngineInfo::from(&stats),
        })
    }

    pub(super) fn bridge_add(
        &self,
        name: &str,
        mac_aging: Option<u64>,
        mac_table_size: Option<usize>,
    ) -> Result<Done, ErrorBody> {
        check_name("bridge", name).map_err(|m| ErrorBody::new(Code::Invalid, m).at("name"))?;
        let mut m = self.lock();
        if m.bridges.iter().any(|b| b.name == name) {
            return Err(ErrorBody::new(
                Code::Exists,
                format!("bridge {name} exists"),
            ));
        }
        let mut spec = BridgeSpec::new(name);
        spec.mac_aging = mac_aging;
        spec.mac_table_size = mac_table_size;
        let def = spec
            .to_def()
            .map_err(|e| ErrorBody::new(Code::Invalid, e))?;
        spec.flows = Some(def.rules.iter().map(Rule::to_string).collect());
        let bridge = xsw_live::engine::Bridge::build(def).map_err(internal)?;
        let tables = bridge.tables().clone();
        self.commit(
            &mut m,
            |next| next.push(spec),
            Some(|e: &EngineHandle| e.add_bridge(bridge)),
        )?;
        m.shadow.insert(name.to_string(), tables);
        Ok(Done {})
    }

    pub(super) fn bridge_del(&self, name: &str) -> Result<Done, ErrorBody> {
        let mut m = self.lock();
        m.bridge(name)?;
        let next: Vec<BridgeSpec> = m
            .bridges
            .iter()
            .filter(|b| b.name != name)
            .cloned()
            .collect();
        self.save(&next)?;
        // The bridge comes back as garbage: its ports close here.
        let r = self.engine.del_bridge(name).map_err(internal);
        m.bridges = next;
        m.shadow.remove(name);
        m.absent.retain(|(b, _), _| b != name);
        r?;
        Ok(Done {})
    }

    /// The learned MACs.
    pub(super) fn fdb_show(&self, bridge: &str) -> Result<FdbShowReply, ErrorBody> {
        self.lock().bridge(bridge)?;
        let rows = self.engine.fdb(bridge).map_err(internal)?;
        Ok(FdbShowReply {
            entries: rows.into_iter().map(Into::into).collect(),
        })
    }

    /// Forgets the learned MACs.
    pub(super) fn fdb_flush(&self, bridge: &str) -> Result<FdbFlushReply, ErrorBody> {
        let _m = self.lock();
        _m.bridge(bridge)?;
        let n = self.engine.flush_fdb(bridge).map_err(internal)?;
        Ok(FdbFlushReply { flushed: n })
    }
}
