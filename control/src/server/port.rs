//! Ports: adding, changing and deleting them, their counters, and the
//! ports whose device was missing.

use xsw_live::engine::{Device, EngineHandle};

use super::{bridge_in, internal, Server};
use crate::proto::{Code, Done, ErrorBody, PortAddReply, PortStatsReply};
use crate::spec::PortSpec;

impl Server {
    pub(super) fn port_add(
        &self,
        bridge: &str,
        mut port: PortSpec,
    ) -> Result<PortAddReply, ErrorBody> {
        let mut m = self.lock();
        let b = m.bridge(bridge)?;
        if b.ports.iter().any(|p| p.name == port.name) {
            return Err(ErrorBody::new(
                Code::Exists,
                format!("bridge {bridge} already has a port {}", port.name),
            ));
        }
        if port.ofport == 0 {
            port.ofport = b.free_ofport();
        }
        let iface = port.iface().to_string();
        for ob in &m.bridges {
            if let Some(op) = ob.ports.iter().find(|p| p.iface() == iface) {
                return Err(ErrorBody::new(
                    Code::Exists,
                    format!(
                        "interface {iface} is already port {} of bridge {}",
                        op.name, ob.name
                    ),
                ));
            }
        }
        let mut spec = b.clone();
        spec.ports.push(port.clone());
        let defs = spec
            .check_ports()
            .map_err(|e| ErrorBody::new(Code::Invalid, e).at("port"))?;
        let Some(def) = defs.last() else {
            return Err(internal("port vanished"));
        };
        let dev = Device::open(def).map_err(|e| ErrorBody::new(Code::Device, e.to_string()))?;
        let (pname, ofport) = (port.name.clone(), port.ofport);
        self.commit(
            &mut m,
            |next| {
                if let Some(nb) = bridge_in(next, bridge) {
                    nb.ports.push(port);
                }
            },
            Some(|e: &EngineHandle| {
                e.add_port(bridge, def.cfg.clone(), dev, qos_buffers(&def.cfg, None))
            }),
        )?;
        tracing::info!("bridge {bridge}: port {pname} added ({iface})");
        Ok(PortAddReply { ofport })
    }

    pub(super) fn port_set(
        &self,
        bridge: &str,
        name: &str,
        qos: Option<xsw_datapath::spec::QosSpec>,
    ) -> Result<Done, ErrorBody> {
        let mut m = self.lock();
        let b = m.bridge(bridge)?;
        let Some(old) = b.ports.iter().find(|p| p.name == name).cloned() else {
            return Err(ErrorBody::new(
                Code::NotFound,
                format!("bridge {bridge} has no port {name}"),
            ));
        };
        let mut port = old.clone();
        port.qos = qos;
        let def = port
            .to_def()
            .map_err(|e| ErrorBody::new(Code::Invalid, e).at("qos"))?;
        let before = old.to_def().ok().and_then(|d| d.cfg.qos);
        let buffers = qos_buffers(&def.cfg, before.as_ref());
        // A port whose device is missing gets its settings when it opens.
        let absent = m
            .absent
            .contains_key(&(bridge.to_string(), name.to_string()));
        let op = (!absent).then_some(|e: &EngineHandle| {
            e.set_port_qos(bridge, name, def.cfg.qos.clone(), buffers)
        });
        self.commit(
            &mut m,
            |next| {
                if let Some(p) = bridge_in(next, bridge)
                    .and_then(|b| b.ports.iter_mut().find(|p| p.name == name))
                {
                    *p = port;
                }
            },
            op,
        )?;
        tracing::info!("bridge {bridge}: port {name}: QoS set");
        Ok(Done {})
    }

    pub(super) fn port_del(&self, bridge: &str, name: &str) -> Result<Done, ErrorBody> {
        let mut m = self.lock();
        let b = m.bridge(bridge)?;
        if !b.ports.iter().any(|p| p.name == name) {
            return Err(ErrorBody::new(
                Code::NotFound,
                format!("bridge {bridge} has no port {name}"),
            ));
        }
        let key = (bridge.to_string(), name.to_string());
        // Its device comes back as garbage and closes here (a port whose
        // device is missing has none in the engine).
        let op =
            (!m.absent.contains_key(&key)).then_some(|e: &EngineHandle| e.del_port(bridge, name));
        self.commit(
            &mut m,
            |next| {
                if let Some(nb) = bridge_in(next, bridge) {
                    nb.ports.retain(|p| p.name != name);
                }
            },
            op,
        )?;
        m.absent.remove(&key);
        tracing::info!("bridge {bridge}: port {name} deleted");
        Ok(Done {})
    }

    /// Every open port's counters.
    pub(super) fn port_stats(&self, bridge: &str) -> Result<PortStatsReply, ErrorBody> {
        self.lock().bridge(bridge)?;
        let (snaps, _) = self.snapshot(Some(bridge), false)?;
        let ports = snaps
            .first()
            .map(|s| s.ports.iter().map(Into::into).collect())
            .unwrap_or_default();
        Ok(PortStatsReply { ports })
    }

    /// Tries again to open the ports whose device was missing.
    pub fn retry_absent(&self) {
        let mut m = self.lock();
        if m.absent.is_empty() {
            return;
        }
        let keys: Vec<(String, String)> = m.absent.keys().cloned().collect();
        for (b, p) in keys {
            let Ok(spec) = m.bridge(&b) else { continue };
            let Some(ps) = spec.ports.iter().find(|x| x.name == p) else {
                continue;
            };
            let Ok(def) = ps.to_def() else { continue };
            match Device::open(&def) {
                Ok(dev) => {
                    match self.engine.add_port(
                        &b,
                        def.cfg.clone(),
                        dev,
                        qos_buffers(&def.cfg, None),
                    ) {
                        Ok(_) => {
                            tracing::info!("bridge {b}: port {p} is open now ({})", ps.iface());
                            m.absent.remove(&(b, p));
                        }
                        Err(e) => tracing::warn!("bridge {b}: port {p}: {e}"),
                    }
                }
                Err(e) => {
                    m.absent.insert((b, p), e.to_string());
                }
            }
        }
    }
}

/// Packet buffers for a port's QoS queues, made here rather than on the
/// polling thread: as many as its queues may hold beyond what `before` had.
fn qos_buffers(
    cfg: &xsw_datapath::pipeline::PortConfig,
    before: Option<&xsw_datapath::qos::QosConfig>,
) -> Vec<xsw_datapath::packet::PacketBuf> {
    let want = cfg.qos.as_ref().map_or(0, |q| q.buffers());
    let had = before.map_or(0, |q| q.buffers());
    (0..want.saturating_sub(had))
        .map(|_| xsw_datapath::packet::PacketBuf::new())
        .collect()
}
