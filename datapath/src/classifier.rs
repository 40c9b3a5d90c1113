//! Wildcard classifier: tuple-space search.
//!
//! Rules are grouped by mask into subtables; each subtable is a hash map from
//! the masked key to the rules with that exact masked match. A lookup masks
//! the key once per subtable and probes its map. Subtables are visited in
//! order of the best rule they hold, and the search stops as soon as no
//! remaining subtable can beat the best match found.
//!
//! Ties: every rule has a unique *rank* — priority first, then the earlier
//! insertion — so equal-priority overlapping rules resolve the same way every
//! time (OVS leaves this undefined; we pick the rule added first).

use crate::flow::Match;
use crate::hash::FastMap;
use crate::key::FlowKey;

/// A rule's position in the total order: higher wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rank(pub u64);

impl Rank {
    /// Rank of a rule with `priority` inserted as the `seq`-th rule.
    pub fn new(priority: u16, seq: u32) -> Rank {
        Rank(((priority as u64) << 32) | (u32::MAX - seq) as u64)
    }
    /// The priority part.
    pub fn priority(self) -> u16 {
        (self.0 >> 32) as u16
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    rank: Rank,
    id: u32,
}

#[derive(Clone, Debug)]
struct Subtable {
    mask: FlowKey,
    /// Masked value → entries, best rank first.
    map: FastMap<FlowKey, Vec<Entry>>,
    max_rank: Rank,
    n: usize,
}

impl Subtable {
    fn recompute_max(&mut self) {
        self.max_rank = self
            .map
            .values()
            .filter_map(|v| v.first().map(|e| e.rank))
            .max()
            .unwrap_or(Rank(0));
    }
}

/// One flow table's classifier.
#[derive(Clone, Debug, Default)]
pub struct Classifier {
    subtables: Vec<Subtable>,
    n: usize,
}

impl Classifier {
    /// An empty classifier.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rules held.
    pub fn len(&self) -> usize {
        self.n
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
    /// Distinct masks.
    pub fn n_subtables(&self) -> usize {
        self.subtables.len()
    }

    /// Inserts rule `id` with `rank`. If a rule with the same match and the
    /// same priority exists it is replaced and its id returned.
    pub fn insert(&mut self, m: &Match, rank: Rank, id: u32) -> Option<u32> {
        let si = match self.subtables.iter().position(|s| s.mask == m.mask) {
            Some(i) => i,
            None => {
                self.subtables.push(Subtable {
                    mask: m.mask,
                    map: FastMap::default(),
                    max_rank: Rank(0),
                    n: 0,
                });
                self.subtables.len() - 1
            }
        };
        let st = &mut self.subtables[si];
        let list = st.map.entry(m.value).or_default();
        let mut replaced = None;
        if let Some(pos) = list
            .iter()
            .position(|e| e.rank.priority() == rank.priority())
        {
            replaced = Some(list[pos].id);
            list.remove(pos);
            st.n -= 1;
            self.n -= 1;
        }
        let pos = list
            .iter()
            .position(|e| e.rank < rank)
            .unwrap_or(list.len());
        list.insert(pos, Entry { rank, id });
        st.n += 1;
        self.n += 1;
        if rank > st.max_rank {
            st.max_rank = rank;
        } else if replaced.is_some() {
            st.recompute_max();
        }
        self.sort();
        replaced
    }

    /// The rule with exactly this match and priority, if any.
    pub fn find_exact(&self, m: &Match, priority: u16) -> Option<(u32, Rank)> {
        let st = self.subtables.iter().find(|s| s.mask == m.mask)?;
        let list = st.map.get(&m.value)?;
        list.iter()
            .find(|e| e.rank.priority() == priority)
            .map(|e| (e.id, e.rank))
    }

    /// Removes rule `id` (inserted with match `m`). Returns false if absent.
    pub fn remove(&mut self, m: &Match, id: u32) -> bool {
        let Some(si) = self.subtables.iter().position(|s| s.mask == m.mask) else {
            return false;
        };
        let st = &mut self.subtables[si];
        let Some(list) = st.map.get_mut(&m.value) else {
            return false;
        };
        let Some(pos) = list.iter().position(|e| e.id == id) else {
            return false;
        };
        let was_best = pos == 0;
        list.remove(pos);
        if list.is_empty() {
            st.map.remove(&m.value);
        }
        st.n -= 1;
        self.n -= 1;
        if st.n == 0 {
            self.subtables.remove(si);
        } else if was_best {
            st.recompute_max();
            self.sort();
        }
        true
    }

    fn sort(&mut self) {
        self.subtables
            .sort_by_key(|s| std::cmp::Reverse(s.max_rank));
    }

    /// The best rule matching `key`, with its rank.
    #[inline]
    pub fn lookup(&self, key: &FlowKey) -> Option<(u32, Rank)> {
        let mut best: Option<Entry> = None;
        for st in &self.subtables {
            if let Some(b) = best {
                if st.max_rank < b.rank {
                    break;
                }
            }
            let masked = key.and(&st.mask);
            if let Some(&e) = st.map.get(&masked).and_then(|l| l.first()) {
                if best.is_none_or(|b| e.rank > b.rank) {
                    best = Some(e);
                }
            }
        }
        best.map(|e| (e.id, e.rank))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Field;
    use proptest::prelude::*;

    fn m(fields: &[(Field, u64, u64)]) -> Match {
        let mut mm = Match::ANY;
        for &(f, v, k) in fields {
            mm.set(f, v, k);
        }
        mm
    }

    #[test]
    fn priority_then_insertion_order() {
        let mut c = Classifier::new();
        let any = Match::ANY;
        let tcp = m(&[(Field::NwProto, 6, 0xff)]);
        c.insert(&any, Rank::new(0, 0), 10);
        c.insert(&tcp, Rank::new(100, 1), 11);
        let mut k = FlowKey::ZERO;
        assert_eq!(c.lookup(&k).map(|x| x.0), Some(10));
        k.set(Field::NwProto, 6);
        assert_eq!(c.lookup(&k).map(|x| x.0), Some(11));
        // Same priority, overlapping: the earlier rule wins.
        let port = m(&[(Field::InPort, 1, 0xffff)]);
        c.insert(&port, Rank::new(100, 2), 12);
        k.set(Field::InPort, 1);
        assert_eq!(c.lookup(&k).map(|x| x.0), Some(11));
        // Replacement keeps the count.
        assert_eq!(c.insert(&tcp, Rank::new(100, 3), 13), Some(11));
        assert_eq!(c.len(), 3);
        assert!(c.remove(&tcp, 13));
        assert_eq!(c.lookup(&k).map(|x| x.0), Some(12));
        assert!(!c.remove(&tcp, 13));
    }

    /// A rule over a handful of small fields so random keys hit often.
    fn rule_strategy() -> impl Strategy<Value = (Match, u16)> {
        let field = prop_oneof![
            Just((Field::InPort, 3u64)),
            Just((Field::DlType, 3)),
            Just((Field::NwProto, 3)),
            Just((Field::TpDst, 7)),
            Just((Field::NwSrc, 0xff)),
        ];
        (
            proptest::collection::vec((field, 0u64..8, any::<u64>()), 0..4),
            0u16..6,
        )
            .prop_map(|(fs, prio)| {
                let mut mm = Match::ANY;
                for ((f, range), v, mask) in fs {
                    mm.set(f, v & range, mask & range);
                }
                (mm, prio)
            })
    }

    fn key_strategy() -> impl Strategy<Value = FlowKey> {
        (0u64..4, 0u64..4, 0u64..4, 0u64..8, 0u64..256).prop_map(|(a, b, c, d, e)| {
            let mut k = FlowKey::ZERO;
            k.set(Field::InPort, a);
            k.set(Field::DlType, b);
            k.set(Field::NwProto, c);
            k.set(Field::TpDst, d);
            k.set(Field::NwSrc, e);
            k
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        /// The classifier agrees with a linear scan, including after removals.
        #[test]
        fn agrees_with_linear_scan(
            rules in proptest::collection::vec(rule_strategy(), 0..40),
            keys in proptest::collection::vec(key_strategy(), 1..40),
            removals in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
        ) {
            let mut c = Classifier::new();
            // Linear reference: (match, rank, id), replacing like the classifier.
            let mut lin: Vec<(Match, Rank, u32)> = Vec::new();
            for (seq, (mm, prio)) in rules.iter().enumerate() {
                let rank = Rank::new(*prio, seq as u32);
                let id = seq as u32;
                let replaced = c.insert(mm, rank, id);
                let pos = lin.iter().position(|(m2, r2, _)| m2 == mm && r2.priority() == *prio);
                prop_assert_eq!(replaced, pos.map(|p| lin[p].2));
                if let Some(p) = pos { lin.remove(p); }
                lin.push((*mm, rank, id));
            }
            for idx in removals {
                if lin.is_empty() { break; }
                let (mm, _, id) = lin.remove(idx.index(lin.len()));
                prop_assert!(c.remove(&mm, id));
            }
            prop_assert_eq!(c.len(), lin.len());
            for k in keys {
                let want = lin.iter().filter(|(mm, _, _)| mm.matches(&k)).max_by_key(|(_, r, _)| *r).map(|x| x.2);
                prop_assert_eq!(c.lookup(&k).map(|x| x.0), want);
            }
        }
    }
}
