//! Lookup stage: the exact-match cache in front of the classifier, the
//! shortcut for the commonest cached cases, and running a matched rule's
//! actions (or a cached NORMAL decision).

use super::normal::NormalDecision;
use super::*;
use crate::emc::{Hint, NO_RULE};
use crate::flow::Action;
use crate::key::FlowKey;
use crate::packet::{Batch, PacketBuf, NO_QUEUE};
use crate::stats::DropReason;
use crate::trace::{MatchedRule, TraceEvent, Tracer};

impl Pipeline {
    /// The rule for `key` in `table` (or [`NO_RULE`]), through the cache.
    #[inline(always)]
    pub(super) fn lookup_cached(&mut self, table: u8, key: &FlowKey, hash: u64) -> Found {
        match self.emc.lookup(table, key, hash) {
            Some((rule, hint)) => Found {
                rule,
                cached: true,
                hint,
                hash,
            },
            None => {
                let rule = self.tables.lookup(table, key).unwrap_or(NO_RULE);
                self.emc.insert(table, key, hash, rule);
                Found {
                    rule,
                    cached: false,
                    hint: Hint::default(),
                    hash,
                }
            }
        }
    }

    /// Looks `x`'s flow up in `table` and runs what matches (resubmit,
    /// goto_table, the traced path).
    pub(super) fn xlate_table<T: Tracer>(
        &mut self,
        table: u8,
        x: &mut Xlate,
        pkt: &mut PacketBuf,
        t: &mut T,
    ) {
        let hash = x.key().hash64();
        let found = self.lookup_cached(table, x.key(), hash);
        self.run_rule(table, found, x, pkt, t);
    }

    /// Counts the lookup and runs the rule's actions (a miss when `NO_RULE`).
    #[inline]
    pub(super) fn run_rule<T: Tracer>(
        &mut self,
        table: u8,
        found: Found,
        x: &mut Xlate,
        pkt: &mut PacketBuf,
        t: &mut T,
    ) {
        let rule = found.rule;
        if !T::DRY {
            self.tables.table_stats[table as usize].lookups += 1;
        }
        if rule == NO_RULE {
            if T::ENABLED {
                t.record(TraceEvent::Lookup {
                    table,
                    depth: x.depth(),
                    rule: None,
                    cached: found.cached,
                });
            }
            x.table_miss();
            return;
        }
        let hit = if T::DRY {
            self.tables.peek(rule)
        } else {
            self.tables.table_stats[table as usize].matched += 1;
            self.tables.hit(rule, x.in_len(), x.now())
        };
        let Some((n, normal_only)) = hit else {
            return;
        };
        if T::ENABLED {
            if let Some(r) = self.tables.get(rule) {
                t.record(TraceEvent::Lookup {
                    table,
                    depth: x.depth(),
                    rule: Some(MatchedRule {
                        id: rule,
                        priority: r.rule.priority,
                        cookie: r.rule.cookie,
                        text: r.rule.to_string(),
                    }),
                    cached: found.cached,
                });
            }
        }
        if normal_only && !T::ENABLED {
            // A lone NORMAL: reuse this flow's decision while it is still
            // exactly what NORMAL would decide (same second, same MAC table).
            let sec = x.now().secs() as u32;
            let h = found.hint;
            // Decisions are cached for top-level lookups only (a resubmit
            // may look up with another in_port than NORMAL must use).
            if x.depth() == 0 && h.sec == sec && h.gen == self.mac.gen {
                if let Some(d) = NormalDecision::from_hint(h.val) {
                    self.normal_replay(d, x, pkt, t);
                    return;
                }
            }
            x.nest();
            let decided = self.normal(x, pkt, t);
            x.unnest();
            if let (Some(d), 0) = (decided, x.depth()) {
                let key = *x.key();
                self.emc.set_hint(
                    table,
                    &key,
                    found.hash,
                    Hint {
                        val: d.to_hint(),
                        sec,
                        gen: self.mac.gen,
                    },
                );
            }
            return;
        }
        let saved = x.enter_table(table);
        // Copy the actions out (they are small) so they can run while the
        // tables are borrowed mutably; long lists are fetched one by one.
        const LOCAL: usize = 4;
        let mut local = [Action::StripVlan; LOCAL];
        // (A rule that is gone runs nothing: the loop below finds no
        // actions for it.)
        let n_local = match self.tables.get(rule) {
            Some(r) if n <= LOCAL => {
                local[..n].copy_from_slice(&r.rule.actions[..n]);
                n
            }
            _ => 0,
        };
        let mut ai = 0;
        while ai < n {
            let a = if n_local > 0 {
                local[ai]
            } else {
                match self.tables.get(rule).and_then(|r| r.rule.actions.get(ai)) {
                    Some(a) => *a,
                    None => break,
                }
            };
            if x.stopped() {
                break;
            }
            if T::ENABLED {
                t.record(TraceEvent::Action {
                    depth: x.depth() - 1,
                    text: a.to_string(),
                });
            }
            self.do_action(a, x, pkt, t);
            ai += 1;
        }
        x.leave_table(saved);
    }

    /// The two commonest cases, done without the general translation: a rule
    /// whose only action is `output:N`, and a lone NORMAL whose cached
    /// decision for this flow (same second, same MAC table) is "unicast to
    /// port P, tags unchanged". Either way the frame leaves unmodified, so it
    /// only needs counting and queueing. Returns false to take the general
    /// path (which does the counting itself).
    #[inline(always)]
    pub(super) fn shortcut(
        &mut self,
        batch: &mut Batch,
        i: usize,
        key: &FlowKey,
        found: Found,
    ) -> bool {
        if found.rule == NO_RULE {
            return false;
        }
        let (normal_only, output_only) = self.tables.shape(found.rule);
        let in_idx = batch.frames()[i].meta.port as usize;
        let now = batch.frames()[i].meta.ts;
        let out = if let Some(of) = output_only {
            if of == key.in_port() {
                Err(DropReason::OutputToInPort)
            } else {
                self.port_index(of)
                    .map(|p| p as usize)
                    .ok_or(DropReason::NoSuchPort)
            }
        } else if normal_only {
            let h = found.hint;
            match NormalDecision::unchanged_to(h.val) {
                Some(p) if h.sec == now.secs() as u32 && h.gen == self.mac.gen => Ok(p),
                _ => return false,
            }
        } else {
            return false;
        };
        let len = batch.frames()[i].len();
        let ts = &mut self.tables.table_stats[0];
        ts.lookups += 1;
        ts.matched += 1;
        let _ = self.tables.hit(found.rule, len, now);
        match out {
            Ok(p) => {
                let prio = batch.frames()[i].meta.prio;
                self.enqueue_last(batch, i, p, NO_QUEUE, prio, &mut crate::trace::NoTrace)
            }
            Err(r) => self.drop_on(in_idx, r),
        }
        true
    }

    /// The exact-match cache's counters.
    pub fn emc_stats(&self) -> crate::emc::EmcStats {
        crate::emc::EmcStats {
            hits: self.emc.hits,
            misses: self.emc.misses,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;

    #[test]
    fn traced_and_untraced_agree() {
        // The traced path skips every cache; both must decide the same.
        let rules = [
            "priority=20,in_port=1,dl_type=0x0806,actions=resubmit(2,0)",
            "priority=10,ipv6,actions=mod_vlan_vid:7,normal",
            "priority=0,actions=normal",
        ];
        let mut plain = Rig::new(ports3(), &rules);
        let mut traced = Rig::new(ports3(), &rules);
        for (n, (port, f)) in mixed_frames().into_iter().enumerate() {
            let meta = crate::packet::PacketMeta::new(port, Timestamp(n as u64 * 100_000_000));
            plain.batch.clear();
            plain.batch.push_frame(&f, meta);
            plain.p.process(&mut plain.batch, &mut NoTrace);
            traced.batch.clear();
            traced.batch.push_frame(&f, meta);
            traced
                .p
                .process(&mut traced.batch, &mut TraceLog::default());
            for k in 0..3u16 {
                plain
                    .p
                    .flush_port(k, &mut plain.ports[k as usize])
                    .expect("flush");
                traced
                    .p
                    .flush_port(k, &mut traced.ports[k as usize])
                    .expect("flush");
                assert_eq!(
                    plain.ports[k as usize].take_sent(),
                    traced.ports[k as usize].take_sent(),
                    "frame {n}, port {k}"
                );
            }
        }
        for k in 0..3u16 {
            assert_eq!(plain.p.port_stats(k), traced.p.port_stats(k));
        }
    }
}
