//! Meters.

use xsw_datapath::spec::MeterDef;
use xsw_live::engine::EngineHandle;

use super::{bridge_in, Server};
use crate::proto::{Code, Done, ErrorBody, MeterInfo, MeterShowReply};

impl Server {
    pub(super) fn meter_add(
        &self,
        bridge: &str,
        meter: crate::spec::MeterSpec,
    ) -> Result<Done, ErrorBody> {
        let mut m = self.lock();
        m.bridge(bridge)?;
        let MeterDef { id, rate, burst } = meter
            .check()
            .map_err(|e| ErrorBody::new(Code::Invalid, e).at("meter"))?;
        self.commit(
            &mut m,
            |next| {
                if let Some(b) = bridge_in(next, bridge) {
                    b.meters.retain(|x| x.id != id);
                    b.meters.push(meter);
                    b.meters.sort_by_key(|x| x.id);
                }
            },
            Some(|e: &EngineHandle| e.set_meter(bridge, id, Some((rate, burst)))),
        )?;
        Ok(Done {})
    }

    pub(super) fn meter_del(&self, bridge: &str, id: u32) -> Result<Done, ErrorBody> {
        let mut m = self.lock();
        let b = m.bridge(bridge)?;
        if !b.meters.iter().any(|x| x.id == id) {
            return Err(ErrorBody::new(
                Code::NotFound,
                format!("bridge {bridge} has no meter {id}"),
            ));
        }
        let users = m.shadow.get(bridge).map_or(0, |t| {
            t.iter_sorted()
                .iter()
                .filter(|(_, r)| {
                    r.rule
                        .actions
                        .contains(&xsw_datapath::flow::Action::Meter(id))
                })
                .count()
        });
        if users > 0 {
            return Err(ErrorBody::new(
                Code::Invalid,
                format!("meter {id} is used by {users} rule(s): delete them first"),
            ));
        }
        self.commit(
            &mut m,
            |next| {
                if let Some(b) = bridge_in(next, bridge) {
                    b.meters.retain(|x| x.id != id);
                }
            },
            Some(|e: &EngineHandle| e.set_meter(bridge, id, None)),
        )?;
        Ok(Done {})
    }

    /// Meters with their counters.
    pub(super) fn meter_show(&self, bridge: &str) -> Result<MeterShowReply, ErrorBody> {
        self.lock().bridge(bridge)?;
        let (snaps, _) = self.snapshot(Some(bridge), false)?;
        let meters: Vec<MeterInfo> = snaps
            .first()
            .map(|s| {
                s.meters
                    .iter()
                    .map(|m| MeterInfo {
                        id: m.id,
                        rate: m.rate,
                        burst: m.burst,
                        passed: m.passed,
                        dropped: m.dropped,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(MeterShowReply { meters })
    }
}
