//! Rules: adding, deleting, replacing and dumping them, and keeping the
//! model's copy in step with the rules the polling thread let expire.

use std::time::Instant;

use xsw_datapath::clock::{Clock, MonotonicClock};
use xsw_datapath::flow::{parse_match_spec, Rule};
use xsw_datapath::table::FlowTables;
use xsw_live::engine::ExpiredRule;

use super::{internal, not_found_bridge, Model, Server};
use crate::proto::{Code, ErrorBody, FlowAddReply, FlowDelReply, FlowDumpReply, FlowReplaceReply};
use crate::spec::BridgeSpec;

impl Model {
    /// Puts every bridge's rules, as text, into its spec (for saving).
    fn refresh_flows(&mut self) {
        for b in &mut self.bridges {
            if let Some(t) = self.shadow.get(&b.name) {
                b.flows = Some(flow_text(t));
            }
        }
    }
}

/// Removes from the model's tables rules the polling thread removed by
/// timeouts (each identified by its match and install time).
fn forget_expired(m: &mut Model, bridge: &str, gone: &[ExpiredRule]) -> usize {
    let Some(t) = m.shadow.get_mut(bridge) else {
        return 0;
    };
    gone.iter()
        .filter(|g| t.remove_exact(&g.rule, g.installed))
        .count()
}

/// Rules as text, in dump order.
fn flow_text(t: &FlowTables) -> Vec<String> {
    t.iter_sorted()
        .iter()
        .map(|(_, r)| r.rule.to_string())
        .collect()
}

impl Server {
    pub(super) fn flow_add(
        &self,
        bridge: &str,
        flows: &[String],
    ) -> Result<FlowAddReply, ErrorBody> {
        // From here to the polling thread's answer: the time to effect.
        let t0 = Instant::now();
        let mut m = self.lock();
        let rules = Self::parse_rules(m.bridge(bridge)?, flows)?;
        if rules.is_empty() {
            return Err(ErrorBody::new(Code::Invalid, "no rules given"));
        }
        let n = rules.len();
        let now = MonotonicClock.now();
        // The model's copy of the tables gets the same change at the same
        // time.
        let copy = rules.clone();
        let changed = self
            .engine
            .add_rules(bridge, rules, now)
            .map_err(internal)?;
        let effect = t0.elapsed();
        let expired = changed.expired;
        self.apply_expired(&mut m, bridge, &expired.rules, expired.lost)?;
        let t = m.shadow.entry(bridge.to_string()).or_default();
        for r in copy {
            t.add(r, now);
        }
        m.refresh_flows();
        self.save_applied(&m)?;
        Ok(FlowAddReply {
            added: n,
            effect_us: effect.as_micros() as u64,
        })
    }

    pub(super) fn flow_del(
        &self,
        bridge: &str,
        matches: Option<&str>,
        strict: bool,
    ) -> Result<FlowDelReply, ErrorBody> {
        let mut m = self.lock();
        let b = m.bridge(bridge)?;
        let text = matches.unwrap_or("");
        let spec = parse_match_spec(text, &|n: &str| b.port_number(n)).map_err(|e| {
            ErrorBody::new(Code::BadFlow, e.msg())
                .detail(e.render(text))
                .in_rule(None, e.col())
                .at(format!("match, column {}", e.col()))
        })?;
        let changed = self
            .engine
            .del_rules(bridge, spec.clone(), strict)
            .map_err(internal)?;
        let (n, expired) = (changed.count, changed.expired);
        let gone = self.apply_expired(&mut m, bridge, &expired.rules, expired.lost)?;
        let t = m.shadow.entry(bridge.to_string()).or_default();
        for id in t.select(&spec, strict) {
            t.remove(id);
        }
        if n > 0 || gone > 0 {
            m.refresh_flows();
            self.save_applied(&m)?;
        }
        Ok(FlowDelReply { deleted: n })
    }

    pub(super) fn flow_replace(
        &self,
        bridge: &str,
        flows: &[String],
    ) -> Result<FlowReplaceReply, ErrorBody> {
        let t0 = Instant::now();
        let mut m = self.lock();
        let rules = Self::parse_rules(m.bridge(bridge)?, flows)?;
        let n = rules.len();
        // The whole new table is built here, off the polling thread.
        let now = MonotonicClock.now();
        let mut tables = FlowTables::new();
        for r in rules {
            tables.add(r, now);
        }
        let mut next = tables.clone();
        let swap = Instant::now();
        let old = self
            .engine
            .replace_rules(bridge, tables)
            .map_err(internal)?
            .old;
        let (effect, swapped) = (t0.elapsed(), swap.elapsed());
        // Rules that stay keep their counters and timers: worked out here
        // from the old tables (which are also freed here), then handed over.
        let carry = next.carry_list(&old);
        for (id, st) in &carry {
            next.carry(*id, st);
        }
        drop(old);
        // The new rules are in effect: the model and the state say so
        // before anything else can fail.
        m.shadow.insert(bridge.to_string(), next);
        m.refresh_flows();
        self.save_applied(&m)?;
        if !carry.is_empty() {
            if let Err(e) = self.engine.carry(bridge, carry) {
                tracing::warn!("bridge {bridge}: the new rules are in effect, but their counters could not be carried over: {e}");
            }
        }
        Ok(FlowReplaceReply {
            rules: n,
            effect_us: effect.as_micros() as u64,
            swap_us: swapped.as_micros() as u64,
        })
    }

    /// The rules with their counters.
    pub(super) fn flow_dump(&self, bridge: &str) -> Result<FlowDumpReply, ErrorBody> {
        // Held through the snapshot: a replace (swap, then counters
        // carried over) is never seen half done.
        let m = self.lock();
        m.bridge(bridge)?;
        let (snaps, _) = self.snapshot(Some(bridge), true)?;
        drop(m);
        let s = snaps.first().ok_or_else(|| not_found_bridge(bridge))?;
        let flows: Vec<_> = s
            .rules
            .iter()
            .flatten()
            .map(|r| r.report(s.at).into())
            .collect();
        Ok(FlowDumpReply { flows })
    }

    /// Parses rules with `spec`'s port names; the error says which and where.
    fn parse_rules(spec: &BridgeSpec, flows: &[String]) -> Result<Vec<Rule>, ErrorBody> {
        flows
            .iter()
            .enumerate()
            .map(|(i, f)| {
                spec.parse_rule(f).map_err(|e| {
                    ErrorBody::new(Code::BadFlow, e.msg())
                        .detail(e.render(f))
                        .in_rule(Some(i + 1), e.col())
                        .at(if flows.len() == 1 {
                            format!("flow, column {}", e.col())
                        } else {
                            format!("flow {} of {}, column {}", i + 1, flows.len(), e.col())
                        })
                })
            })
            .collect()
    }

    /// Saves a change that is already in effect; if that fails, says so
    /// (the change stands; the next successful save records it).
    fn save_applied(&self, m: &Model) -> Result<(), ErrorBody> {
        self.save(&m.bridges).map_err(|e| {
            ErrorBody::new(
                Code::Internal,
                format!("the change is in effect but was not saved: {}", e.message),
            )
        })
    }

    /// Forgets, in the model, the rules the polling thread removed by
    /// timeouts. Returns how many.
    fn sync_expired(&self, m: &mut Model, bridge: &str) -> Result<usize, ErrorBody> {
        let g = self.engine.take_expired(bridge).map_err(internal)?;
        self.apply_expired(m, bridge, &g.rules, g.lost)
    }

    /// Removes expired rules from the model's copy; when the engine's log
    /// lost some, takes the whole rule set afresh. Returns how many went.
    fn apply_expired(
        &self,
        m: &mut Model,
        bridge: &str,
        gone: &[ExpiredRule],
        lost: bool,
    ) -> Result<usize, ErrorBody> {
        if !lost {
            return Ok(forget_expired(m, bridge, gone));
        }
        let (snaps, _) = self.snapshot(Some(bridge), true)?;
        let mut t = FlowTables::new();
        for r in snaps
            .first()
            .and_then(|s| s.rules.as_ref())
            .into_iter()
            .flatten()
        {
            t.add(r.rule.clone(), r.stats.installed);
        }
        let before = m.shadow.get(bridge).map_or(0, FlowTables::len);
        let n = before.saturating_sub(t.len()).max(1);
        m.shadow.insert(bridge.to_string(), t);
        Ok(n)
    }

    /// Brings every bridge's rules up to date with timeouts, saving when
    /// some expired (so a restart does not bring them back).
    pub fn sync_all_expired(&self) {
        let mut m = self.lock();
        let names: Vec<String> = m.bridges.iter().map(|b| b.name.clone()).collect();
        let mut changed = false;
        for n in names {
            match self.sync_expired(&mut m, &n) {
                Ok(k) => changed |= k > 0,
                Err(e) => tracing::warn!("bridge {n}: {e}"),
            }
        }
        if changed {
            m.refresh_flows();
            if let Err(e) = self.save(&m.bridges) {
                tracing::warn!("{e}");
            }
        }
    }
}
