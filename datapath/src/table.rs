//! The flow tables: installed rules with their counters and timeouts, and a
//! [`Classifier`] per table.

use crate::classifier::{Classifier, Rank};
use crate::clock::Timestamp;
use crate::flow::{MatchSpec, Rule, N_TABLES};
use crate::key::FlowKey;
use crate::stats::TableStats;

/// A rule's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RuleStats {
    /// Frames that matched.
    pub packets: u64,
    /// Their bytes (as received).
    pub bytes: u64,
    /// When the rule was installed.
    pub installed: Timestamp,
    /// Last match (the install time until the first).
    pub last_used: Timestamp,
}

/// A rule in a table.
#[derive(Clone, Debug)]
pub struct Installed {
    /// The rule.
    pub rule: Rule,
    /// Its place in the lookup order.
    pub rank: Rank,
    /// Its counters.
    pub stats: RuleStats,
    /// True when the actions are exactly `NORMAL` (its decision is cacheable).
    pub normal_only: bool,
    /// `Some(port)` when the actions are exactly `output:port`.
    pub output_only: Option<u16>,
}

/// Milliseconds, the unit OVS keeps flow times in.
fn ms(t: Timestamp) -> u64 {
    t.0 / 1_000_000
}

impl Installed {
    /// The last millisecond the rule stands, given its use so far: OVS
    /// removes a rule once `now_ms > used_ms + idle_timeout * 1000` (idle) or
    /// `now_ms > installed_ms + hard_timeout * 1000` (hard), times counted
    /// in whole milliseconds.
    pub fn last_ms(&self) -> Option<u64> {
        let hard = (self.rule.hard_timeout > 0)
            .then(|| ms(self.stats.installed) + self.rule.hard_timeout as u64 * 1000);
        let idle = (self.rule.idle_timeout > 0)
            .then(|| ms(self.stats.last_used) + self.rule.idle_timeout as u64 * 1000);
        match (hard, idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The first instant at which the rule's timeouts remove it.
    pub fn deadline(&self) -> Option<Timestamp> {
        self.last_ms()
            .map(|m| Timestamp((m + 1).saturating_mul(1_000_000)))
    }
}

/// Why a rule left the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removed {
    /// Idle timeout.
    Idle,
    /// Hard timeout.
    Hard,
}

/// All the tables of one bridge.
#[derive(Clone, Debug)]
pub struct FlowTables {
    slots: Vec<Option<Installed>>,
    free: Vec<u32>,
    tables: Vec<Classifier>,
    seq: u32,
    n: usize,
    n_timed: usize,
    next_deadline: Timestamp,
    /// Lookup counters per table.
    pub table_stats: Vec<TableStats>,
    /// Bumped on every change (caches compare it).
    pub version: u64,
}

impl Default for FlowTables {
    fn default() -> Self {
        Self::new()
    }
}

/// Deadline meaning "never".
const NEVER: Timestamp = Timestamp(u64::MAX);

impl FlowTables {
    /// Empty tables.
    pub fn new() -> Self {
        FlowTables {
            slots: Vec::new(),
            free: Vec::new(),
            tables: (0..N_TABLES).map(|_| Classifier::new()).collect(),
            seq: 0,
            n: 0,
            n_timed: 0,
            next_deadline: NEVER,
            table_stats: vec![TableStats::default(); N_TABLES],
            version: 0,
        }
    }

    /// Rules installed.
    pub fn len(&self) -> usize {
        self.n
    }
    /// True when no rule is installed.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
    /// Rules in `table`.
    pub fn table_len(&self, table: u8) -> usize {
        self.tables[table as usize].len()
    }

    /// Installs `rule` at time `now`. A rule with the same table, priority
    /// and match is replaced (its counters restart, as OpenFlow 1.0 says);
    /// the replaced rule is returned.
    pub fn add(&mut self, rule: Rule, now: Timestamp) -> (u32, Option<Installed>) {
        let t = rule.table as usize;
        let existing = self.tables[t].find_exact(&rule.matches, rule.priority);
        let rank = match existing {
            Some((_, r)) => r,
            None => {
                self.seq = self.seq.wrapping_add(1);
                Rank::new(rule.priority, self.seq)
            }
        };
        let replaced = existing.and_then(|(old, _)| self.take(old));
        let normal_only = rule.actions == [crate::flow::Action::Normal];
        let output_only = match rule.actions[..] {
            [crate::flow::Action::Output(p)] => Some(p),
            _ => None,
        };
        let inst = Installed {
            normal_only,
            output_only,
            rule,
            rank,
            stats: RuleStats {
                installed: now,
                last_used: now,
                ..Default::default()
            },
        };
        if inst.deadline().is_some() {
            self.n_timed += 1;
            if let Some(d) = inst.deadline() {
                self.next_deadline = self.next_deadline.min(d);
            }
        }
        let m = inst.rule.matches;
        let id = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(inst);
                i
            }
            None => {
                self.slots.push(Some(inst));
                (self.slots.len() - 1) as u32
            }
        };
        self.tables[t].insert(&m, rank, id);
        self.n += 1;
        self.version += 1;
        (id, replaced)
    }

    fn take(&mut self, id: u32) -> Option<Installed> {
        let inst = self.slots.get_mut(id as usize)?.take()?;
        self.tables[inst.rule.table as usize].remove(&inst.rule.matches, id);
        self.free.push(id);
        self.n -= 1;
        if inst.deadline().is_some() {
            self.n_timed -= 1;
        }
        self.version += 1;
        Some(inst)
    }

    /// Removes rule `id`.
    pub fn remove(&mut self, id: u32) -> Option<Installed> {
        self.take(id)
    }

    /// Removes every rule.
    pub fn clear(&mut self) {
        let stats = std::mem::take(&mut self.table_stats);
        let version = self.version;
        *self = FlowTables::new();
        self.table_stats = stats;
        self.version = version + 1;
    }

    /// The rule with id `id`.
    #[inline(always)]
    pub fn get(&self, id: u32) -> Option<&Installed> {
        self.slots.get(id as usize).and_then(|s| s.as_ref())
    }

    /// The rule's shape, for the pipeline's shortcuts: (lone NORMAL, lone output port).
    #[inline(always)]
    pub fn shape(&self, id: u32) -> (bool, Option<u16>) {
        match self.slots.get(id as usize) {
            Some(Some(r)) => (r.normal_only, r.output_only),
            _ => (false, None),
        }
    }

    /// The classifier's answer for `key` in `table` (no caching).
    #[inline]
    pub fn lookup(&self, table: u8, key: &FlowKey) -> Option<u32> {
        self.tables[table as usize].lookup(key).map(|(id, _)| id)
    }

    /// Counts a hit on rule `id`; returns its number of actions and whether
    /// it is a lone `NORMAL`.
    #[inline(always)]
    pub fn hit(&mut self, id: u32, bytes: usize, now: Timestamp) -> Option<(usize, bool)> {
        match self.slots.get_mut(id as usize) {
            Some(Some(r)) => {
                r.stats.packets += 1;
                r.stats.bytes += bytes as u64;
                if now > r.stats.last_used {
                    r.stats.last_used = now;
                }
                Some((r.rule.actions.len(), r.normal_only))
            }
            _ => None,
        }
    }

    /// The id of the rule with the same table, priority and match as `rule`.
    pub fn find(&self, rule: &Rule) -> Option<u32> {
        self.tables[rule.table as usize]
            .find_exact(&rule.matches, rule.priority)
            .map(|(id, _)| id)
    }

    /// For every rule here with the same table, priority and match as a
    /// rule of `old`: its id and that rule's counters and times (what
    /// `ovs-ofctl replace-flows` keeps for flows it leaves alone).
    pub fn carry_list(&self, old: &FlowTables) -> Vec<(u32, RuleStats)> {
        if old.is_empty() {
            return Vec::new();
        }
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let r = s.as_ref()?;
                let oid = old.find(&r.rule)?;
                let o = old.get(oid)?;
                Some((i as u32, o.stats))
            })
            .collect()
    }

    /// Hands rule `id` an older rule's counters and times: its counts are
    /// added, its install time becomes the older one (so a hard timeout
    /// runs on as before) and its last use the later of the two.
    pub fn carry(&mut self, id: u32, old: &RuleStats) {
        let Some(Some(r)) = self.slots.get_mut(id as usize) else {
            return;
        };
        r.stats.packets += old.packets;
        r.stats.bytes += old.bytes;
        r.stats.installed = r.stats.installed.min(old.installed);
        r.stats.last_used = r.stats.last_used.max(old.last_used);
        if let Some(d) = r.deadline() {
            self.next_deadline = self.next_deadline.min(d);
        }
        self.version += 1;
    }

    /// Removes the rule with the same table, priority and match as `rule`
    /// if it was installed at `installed` (and not replaced since).
    pub fn remove_exact(&mut self, rule: &Rule, installed: Timestamp) -> bool {
        match self.find(rule) {
            Some(id) if self.get(id).is_some_and(|r| r.stats.installed == installed) => {
                self.take(id).is_some()
            }
            _ => false,
        }
    }

    /// What [`FlowTables::hit`] returns, without counting.
    #[inline]
    pub fn peek(&self, id: u32) -> Option<(usize, bool)> {
        match self.slots.get(id as usize) {
            Some(Some(r)) => Some((r.rule.actions.len(), r.normal_only)),
            _ => None,
        }
    }

    /// Adds `packets`/`bytes` matched outside the pipeline to rule `id`.
    pub fn credit(&mut self, id: u32, packets: u64, bytes: u64, now: Timestamp) {
        if let Some(Some(r)) = self.slots.get_mut(id as usize) {
            r.stats.packets += packets;
            r.stats.bytes += bytes;
            if now > r.stats.last_used {
                r.stats.last_used = now;
            }
        }
    }

    /// Earliest time a timeout may fire (a lower bound: idle deadlines move
    /// later as rules are used).
    #[inline(always)]
    pub fn next_deadline(&self) -> Timestamp {
        self.next_deadline
    }

    /// Removes the rules whose timeouts have passed at `now`.
    pub fn expire(&mut self, now: Timestamp) -> Vec<(Installed, Removed)> {
        let mut out = Vec::new();
        if self.n_timed == 0 {
            self.next_deadline = NEVER;
            return out;
        }
        let mut next = NEVER;
        let mut dead = Vec::new();
        for (i, s) in self.slots.iter().enumerate() {
            let Some(r) = s else { continue };
            let Some(d) = r.deadline() else { continue };
            if d <= now {
                let hard = r.rule.hard_timeout > 0
                    && ms(now) > ms(r.stats.installed) + r.rule.hard_timeout as u64 * 1000;
                dead.push((i as u32, if hard { Removed::Hard } else { Removed::Idle }));
            } else {
                next = next.min(d);
            }
        }
        for (id, why) in dead {
            if let Some(r) = self.take(id) {
                out.push((r, why));
            }
        }
        self.next_deadline = next;
        out
    }

    /// The rules of one table with their ids, in no particular order.
    pub fn table_rules(&self, table: u8) -> Vec<(u32, &Installed)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.as_ref()
                    .filter(|r| r.rule.table == table)
                    .map(|r| (i as u32, r))
            })
            .collect()
    }

    /// All rules with their ids, in dump order: table, then priority
    /// (highest first), then installation order.
    pub fn iter_sorted(&self) -> Vec<(u32, &Installed)> {
        let mut v: Vec<(u32, &Installed)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|r| (i as u32, r)))
            .collect();
        v.sort_by(|a, b| {
            a.1.rule
                .table
                .cmp(&b.1.rule.table)
                .then(b.1.rank.cmp(&a.1.rank))
        });
        v
    }

    /// Ids of the rules selected by `spec`: with `strict`, the rule with
    /// exactly that match and priority; otherwise every rule whose match is
    /// at least as specific as `spec` (as `ovs-ofctl del-flows` selects).
    pub fn select(&self, spec: &MatchSpec, strict: bool) -> Vec<u32> {
        let mut out = Vec::new();
        for (i, s) in self.slots.iter().enumerate() {
            let Some(r) = s else { continue };
            if spec.table.is_some_and(|t| t != r.rule.table) {
                continue;
            }
            if let Some((cv, cm)) = spec.cookie {
                if r.rule.cookie & cm != cv {
                    continue;
                }
            }
            let m = &r.rule.matches;
            let ok = if strict {
                *m == spec.matches
                    && spec.priority.unwrap_or(crate::flow::DEFAULT_PRIORITY) == r.rule.priority
            } else {
                spec.matches.mask.is_subset_of(&m.mask)
                    && m.value.and(&spec.matches.mask) == spec.matches.value
            };
            if ok {
                out.push(i as u32);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::parse_flow;

    fn r(s: &str) -> Rule {
        parse_flow(s, &()).expect("valid rule")
    }

    #[test]
    fn add_replace_remove() {
        let mut t = FlowTables::new();
        let (a, _) = t.add(r("priority=10,ip,actions=drop"), Timestamp(0));
        let (_, rep) = t.add(r("priority=10,ip,actions=output:1"), Timestamp(5));
        assert_eq!(rep.map(|x| x.rule.actions.len()), Some(0));
        assert_eq!(t.len(), 1);
        let mut k = FlowKey::ZERO;
        k.set(crate::key::Field::DlType, 0x0800);
        let id = t.lookup(0, &k).expect("match");
        assert_eq!(t.get(id).map(|x| x.rule.actions.len()), Some(1));
        assert!(t.remove(id).is_some());
        assert!(t.is_empty());
        let _ = a;
    }

    #[test]
    fn timeouts_expire_on_the_clock() {
        let mut t = FlowTables::new();
        t.add(
            r("idle_timeout=10,ip,actions=drop"),
            Timestamp::from_secs(100),
        );
        t.add(
            r("hard_timeout=20,arp,actions=drop"),
            Timestamp::from_secs(100),
        );
        // The first instant it is gone: 110 s plus one millisecond.
        assert_eq!(
            t.next_deadline(),
            Timestamp(Timestamp::from_secs(110).0 + 1_000_000)
        );
        let mut k = FlowKey::ZERO;
        k.set(crate::key::Field::DlType, 0x0800);
        let id = t.lookup(0, &k).expect("ip rule");
        let _ = t.hit(id, 60, Timestamp::from_secs(105));
        // OVS counts in whole milliseconds: gone one millisecond later.
        let just_after = |s: u64| Timestamp(Timestamp::from_secs(s).0 + 1_000_000);
        assert!(t
            .expire(Timestamp(Timestamp::from_secs(115).0 + 999_999))
            .is_empty());
        // Exactly at the deadline the rule still stands (OVS: strictly past).
        assert!(t.expire(Timestamp::from_secs(115)).is_empty());
        let gone = t.expire(just_after(115));
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].1, Removed::Idle);
        assert!(t.expire(Timestamp::from_secs(120)).is_empty());
        let gone = t.expire(just_after(120));
        assert_eq!(gone[0].1, Removed::Hard);
        assert!(t.is_empty());
    }

    #[test]
    fn replaced_tables_carry_counters_of_rules_that_stay() {
        let mut old = FlowTables::new();
        old.add(r("priority=5,tcp,actions=drop"), Timestamp::from_secs(10));
        old.add(
            r("priority=6,udp,hard_timeout=60,actions=drop"),
            Timestamp::from_secs(10),
        );
        let mut k = FlowKey::ZERO;
        k.set(crate::key::Field::DlType, 0x0800);
        k.set(crate::key::Field::NwProto, 17);
        let id = old.lookup(0, &k).expect("udp rule");
        old.hit(id, 100, Timestamp::from_secs(20));
        let mut new = FlowTables::new();
        new.add(r("priority=7,arp,actions=drop"), Timestamp::from_secs(30));
        new.add(
            r("priority=6,udp,hard_timeout=60,actions=output:1"),
            Timestamp::from_secs(30),
        );
        let list = new.carry_list(&old);
        assert_eq!(
            list.len(),
            1,
            "only the udp rule stays (same table, priority, match)"
        );
        for (id, st) in &list {
            new.carry(*id, st);
        }
        let nid = new.lookup(0, &k).expect("udp rule");
        let st = new.get(nid).expect("rule").stats;
        assert_eq!((st.packets, st.bytes), (1, 100));
        assert_eq!(
            st.installed,
            Timestamp::from_secs(10),
            "its hard timeout runs on"
        );
        assert_eq!(
            new.next_deadline(),
            Timestamp(Timestamp::from_secs(70).0 + 1_000_000)
        );
        // Removal by identity and install time only.
        let rule = new.get(nid).expect("rule").rule.clone();
        assert!(!new.remove_exact(&rule, Timestamp::from_secs(30)));
        assert!(new.remove_exact(&rule, Timestamp::from_secs(10)));
        assert_eq!(new.len(), 1);
    }

    #[test]
    fn select_strict_and_loose() {
        let mut t = FlowTables::new();
        t.add(r("priority=5,tcp,tp_dst=80,actions=drop"), Timestamp(0));
        t.add(r("priority=6,tcp,actions=drop"), Timestamp(0));
        t.add(r("priority=7,udp,actions=drop"), Timestamp(0));
        let spec = crate::flow::parse_match_spec("tcp", &()).expect("spec");
        assert_eq!(t.select(&spec, false).len(), 2);
        assert_eq!(t.select(&spec, true).len(), 0);
        let spec = crate::flow::parse_match_spec("priority=6,tcp", &()).expect("spec");
        assert_eq!(t.select(&spec, true).len(), 1);
        let spec = crate::flow::parse_match_spec("", &()).expect("spec");
        assert_eq!(t.select(&spec, false).len(), 3);
    }
}
