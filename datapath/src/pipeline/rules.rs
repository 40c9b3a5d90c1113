//! Rules and meters: adding, replacing and deleting rules, their
//! counters, timeouts (rule expiry, MAC aging) and the removal log.

use super::*;
use crate::classifier::Rank;
use crate::clock::Timestamp;
use crate::flow::{MatchSpec, Rule};
use crate::stats::TableStats;
use crate::table::{FlowTables, Installed};

impl Pipeline {
    /// Installs a rule at time `now`.
    pub fn add_rule(&mut self, rule: Rule, now: Timestamp) -> u32 {
        let (id, _) = self.tables.add(rule, now);
        self.emc.invalidate();
        self.timer_due = self.timer_due.min(self.tables.next_deadline());
        id
    }

    /// Puts `new` in place of the installed rules, all at once (O(1)), and
    /// returns the old ones. To keep the counters and timers of rules that
    /// stay, compute [`FlowTables::carry_list`] from the old tables (off
    /// this thread) and hand it to [`Pipeline::carry`].
    pub fn replace_rules(&mut self, mut new: FlowTables) -> FlowTables {
        new.table_stats = std::mem::take(&mut self.tables.table_stats);
        new.version = self.tables.version + 1;
        let old = std::mem::replace(&mut self.tables, new);
        self.emc.invalidate();
        self.timer_due = self.timer_due.min(self.tables.next_deadline());
        old
    }

    /// Gives rules older rules' counters and times (see [`FlowTables::carry`]).
    pub fn carry(&mut self, list: &[(u32, crate::table::RuleStats)]) {
        for (id, st) in list {
            self.tables.carry(*id, st);
        }
        self.timer_due = self.timer_due.min(self.tables.next_deadline());
    }

    /// Takes the log of rules removed by timeouts since the last call.
    ///
    /// The log holds the latest few thousand, and says whether older ones
    /// were lost since the last call.
    pub fn drain_removed(&mut self) -> RemovedLog {
        RemovedLog {
            lost: std::mem::replace(&mut self.removed_lost, false),
            rules: self.removed.drain(..).collect(),
        }
    }

    /// Removes every rule.
    pub fn clear_rules(&mut self) {
        self.tables.clear();
        self.emc.invalidate();
    }

    /// Deletes the rules `spec` selects (see [`FlowTables::select`]);
    /// returns how many.
    pub fn delete_rules(&mut self, spec: &MatchSpec, strict: bool) -> usize {
        let ids = self.tables.select(spec, strict);
        for &id in &ids {
            self.tables.remove(id);
        }
        if !ids.is_empty() {
            self.emc.invalidate();
        }
        ids.len()
    }

    /// The installed rules in dump order.
    pub fn rules(&self) -> Vec<(u32, &Installed)> {
        self.tables.iter_sorted()
    }

    /// Rules removed by timeouts so far (the most recent few thousand).
    pub fn removed_rules(&self) -> Vec<&RemovedRule> {
        self.removed.iter().collect()
    }

    /// The flow tables.
    pub fn tables(&self) -> &FlowTables {
        &self.tables
    }

    /// Per-table lookup counters (index = table id).
    pub fn table_stats(&self) -> &[TableStats] {
        &self.tables.table_stats
    }

    /// Adds frames matched elsewhere (the XDP program) to a rule's counters.
    pub fn credit_rule(&mut self, id: u32, packets: u64, bytes: u64, now: Timestamp) {
        self.tables.credit(id, packets, bytes, now);
    }

    /// Rank of a rule (for ordering in reports).
    pub fn rule_rank(&self, id: u32) -> Option<Rank> {
        self.tables.get(id).map(|r| r.rank)
    }

    /// Adds, changes (keeping its counters) or, with `None`, deletes a meter.
    pub fn set_meter(&mut self, id: u32, meter: Option<crate::qos::Meter>) {
        match meter {
            Some(mut m) => {
                if let Some(old) = self.meters.get(&id) {
                    m.passed = old.passed;
                    m.dropped = old.dropped;
                }
                self.meters.insert(id, m);
            }
            None => {
                self.meters.remove(&id);
            }
        }
    }

    /// The meters, by id.
    pub fn meters(&self) -> Vec<crate::qos::MeterReport> {
        let mut v: Vec<_> = self
            .meters
            .iter()
            .map(|(id, m)| crate::qos::MeterReport {
                id: *id,
                rate: m.bucket.rate(),
                burst: m.burst,
                passed: m.passed,
                dropped: m.dropped,
            })
            .collect();
        v.sort_unstable_by_key(|m| m.id);
        v
    }

    /// Runs timeouts (rule expiry, MAC aging) up to `now`. Called for every
    /// frame; call it when idle too so timeouts fire without traffic.
    pub fn run_timers(&mut self, now: Timestamp) -> usize {
        let mut n = 0;
        if now >= self.tables.next_deadline() {
            let gone = self.tables.expire(now);
            n = gone.len();
            if n > 0 {
                self.emc.invalidate();
                for (rule, why) in gone {
                    if self.removed.len() >= REMOVED_LOG {
                        self.removed.pop_front();
                        self.removed_lost = true;
                    }
                    self.removed.push_back(RemovedRule { rule, why, at: now });
                }
            }
        }
        self.mac.run(now.secs());
        // Next due: the next rule deadline or the next whole second (MAC aging).
        self.timer_due = self
            .tables
            .next_deadline()
            .min(Timestamp::from_secs(now.secs() + 1));
        n
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn counters_timeouts_and_mtu() {
        let mut c = ports3();
        c[2].mtu = Some(1500);
        let mut r = Rig::new(
            c,
            &[
                "idle_timeout=10,in_port=1,actions=output:3",
                "priority=1,actions=drop",
            ],
        );
        let big = vec![0u8; 2000];
        let small = frame(B, A, None, 0x0800);
        let o = r.send(0, 1, &small);
        assert_eq!(o[2].len(), 1);
        let o = r.send(0, 2, &big);
        assert!(o[2].is_empty());
        assert_eq!(
            r.p.port_stats(2).map(|s| s.drops.get(DropReason::TxMtu)),
            Some(1)
        );
        let rules = r.p.rules();
        assert_eq!(rules[0].1.stats.packets, 2);
        // Idle for 10 s from the last hit at t=2: gone at t=12.
        r.send(1, 12, &small);
        assert_eq!(
            r.p.rules().len(),
            2,
            "exactly at the deadline it still stands"
        );
        r.send(1, 13, &small);
        assert_eq!(r.p.rules().len(), 1);
        assert_eq!(r.p.removed_rules().len(), 1);
        let o = r.send(0, 14, &small);
        assert!(o[2].is_empty());
    }

    #[test]
    fn a_full_removal_log_says_so() {
        let mut p = Pipeline::new(ports3(), PipelineOptions::default()).expect("pipeline");
        for i in 0..(REMOVED_LOG as u32 + 10) {
            let r = parse_flow(&format!("hard_timeout=1,udp,tp_dst={i},actions=drop"), &())
                .expect("rule");
            p.add_rule(r, Timestamp(0));
        }
        p.run_timers(Timestamp::from_secs(5));
        let log = p.drain_removed();
        assert_eq!(log.rules.len(), REMOVED_LOG);
        assert!(log.lost);
        assert!(!p.drain_removed().lost, "the flag is cleared");
    }
}
