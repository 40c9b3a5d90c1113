//! Exact-match cache in front of the classifier.
//!
//! Maps (table, full flow key) to the classifier's answer — a rule id or "no
//! rule" — so a flow seen before costs one hash and one 64-byte compare.
//! Eight-way set associative: a key can live in any way of the set its hash
//! picks. Each set keeps a row of eight 16-bit hash tags (16 bytes, the whole
//! tag array fits in L1), so a lookup compares tags first and touches a
//! key only on a tag match. A miss fills an empty way, else one not used
//! since the set last filled (not-recently-used replacement), so a working
//! set of half the cache's size stays resident. Any change to the tables bumps the
//! generation, which invalidates every entry at once without touching them.

use crate::key::FlowKey;

/// Entries in the cache (a power of two).
pub const EMC_ENTRIES: usize = 16384;

/// "No rule matched", as a cached answer.
pub const NO_RULE: u32 = u32::MAX;

/// Ways per set.
const WAYS: usize = 8;
const SETS: usize = EMC_ENTRIES / WAYS;

#[derive(Clone, Copy, Default)]
struct Meta {
    hash: u32,
    gen: u32,
    table: u8,
    used: bool,
    rule: u32,
    hint: Hint,
}

/// A cached decision of a later stage for this exact flow (NORMAL's output),
/// valid only while `sec` and `gen` still describe the state it was made in.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Hint {
    /// The decision (0 = none).
    pub val: u32,
    /// The second it was made in.
    pub sec: u32,
    /// The generation of the state it depends on.
    pub gen: u32,
}

/// The cache's counters ([`crate::pipeline::Pipeline::emc_stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct EmcStats {
    /// Lookups the cache answered.
    pub hits: u64,
    /// Lookups that went to the classifier.
    pub misses: u64,
}

/// The cache.
pub struct Emc {
    tags: Box<[[u16; WAYS]]>,
    meta: Box<[Meta]>,
    keys: Box<[FlowKey]>,
    gen: u32,
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that went to the classifier.
    pub misses: u64,
}

impl std::fmt::Debug for Emc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emc")
            .field("gen", &self.gen)
            .field("hits", &self.hits)
            .field("misses", &self.misses)
            .finish()
    }
}

impl Default for Emc {
    fn default() -> Self {
        Self::new()
    }
}

impl Emc {
    /// An empty cache.
    pub fn new() -> Self {
        Emc {
            tags: vec![[0u16; WAYS]; SETS].into_boxed_slice(),
            meta: vec![Meta::default(); EMC_ENTRIES].into_boxed_slice(),
            keys: vec![FlowKey::ZERO; EMC_ENTRIES].into_boxed_slice(),
            gen: 1,
            hits: 0,
            misses: 0,
        }
    }

    #[inline(always)]
    fn set(hash: u64) -> usize {
        hash as usize & (SETS - 1)
    }

    #[inline(always)]
    fn tag(hash: u64) -> u16 {
        (hash >> 48) as u16 | 1
    }

    #[inline(always)]
    fn find(&self, table: u8, key: &FlowKey, hash: u64) -> Option<usize> {
        let set = Self::set(hash);
        let tag = Self::tag(hash);
        let tags = self.tags.get(set)?;
        let h = (hash >> 32) as u32;
        for (w, &t) in tags.iter().enumerate() {
            if t == tag {
                let i = set * WAYS + w;
                let m = &self.meta[i];
                if m.hash == h && m.gen == self.gen && m.table == table && self.keys[i] == *key {
                    return Some(i);
                }
            }
        }
        None
    }

    /// The cached answer for `key` in `table`: `Some((rule id or NO_RULE, hint))`.
    #[inline(always)]
    pub fn lookup(&mut self, table: u8, key: &FlowKey, hash: u64) -> Option<(u32, Hint)> {
        match self.find(table, key, hash) {
            Some(i) => {
                self.hits += 1;
                let m = &mut self.meta[i];
                m.used = true;
                Some((m.rule, m.hint))
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    /// Attaches a hint to the entry for `key` in `table`, if it is still cached.
    #[inline]
    pub fn set_hint(&mut self, table: u8, key: &FlowKey, hash: u64, hint: Hint) {
        if let Some(i) = self.find(table, key, hash) {
            self.meta[i].hint = hint;
        }
    }

    /// Remembers the classifier's answer.
    #[inline]
    pub fn insert(&mut self, table: u8, key: &FlowKey, hash: u64, rule: u32) {
        let s = Self::set(hash);
        let base = s * WAYS;
        let gen = self.gen;
        let set = &mut self.meta[base..base + WAYS];
        // An empty (stale) way, else one not used lately, else a hash-chosen one.
        let way = match set.iter().position(|m| m.gen != gen) {
            Some(w) => w,
            None => {
                let w = set
                    .iter()
                    .position(|m| !m.used)
                    .unwrap_or((hash >> 40) as usize % WAYS);
                for m in set.iter_mut() {
                    m.used = false;
                }
                w
            }
        };
        set[way] = Meta {
            hash: (hash >> 32) as u32,
            gen,
            table,
            used: false,
            rule,
            hint: Hint::default(),
        };
        self.keys[base + way] = *key;
        self.tags[s][way] = Self::tag(hash);
    }

    /// Forgets everything (the tables changed).
    pub fn invalidate(&mut self) {
        self.gen = self.gen.wrapping_add(1);
        if self.gen == 0 {
            // Wrapped: old generations could look current again.
            for m in self.meta.iter_mut() {
                m.gen = 0;
            }
            for t in self.tags.iter_mut() {
                *t = [0; WAYS];
            }
            self.gen = 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Field;

    #[test]
    fn a_working_set_of_half_the_cache_stays_resident() {
        let mut e = Emc::new();
        let keys: Vec<FlowKey> = (0..EMC_ENTRIES as u64 / 2)
            .map(|i| {
                let mut k = FlowKey::ZERO;
                k.set(Field::NwDst, i);
                k.set(Field::TpSrc, i * 7);
                k
            })
            .collect();
        for _ in 0..3 {
            for k in &keys {
                let h = k.hash64();
                if e.lookup(0, k, h).is_none() {
                    e.insert(0, k, h, 1);
                }
            }
        }
        e.hits = 0;
        e.misses = 0;
        for k in &keys {
            let _ = e.lookup(0, k, k.hash64());
        }
        assert!(
            e.misses * 100 < keys.len() as u64 * 2,
            "{} misses of {}",
            e.misses,
            keys.len()
        );
    }

    #[test]
    fn hit_miss_invalidate() {
        let mut e = Emc::new();
        let mut k = FlowKey::ZERO;
        k.set(Field::TpDst, 80);
        let h = k.hash64();
        assert_eq!(e.lookup(0, &k, h), None);
        e.insert(0, &k, h, 7);
        assert_eq!(e.lookup(0, &k, h), Some((7, Hint::default())));
        let hint = Hint {
            val: 3,
            sec: 4,
            gen: 5,
        };
        e.set_hint(0, &k, h, hint);
        assert_eq!(e.lookup(0, &k, h), Some((7, hint)));
        assert_eq!(e.lookup(1, &k, h), None);
        let mut k2 = k;
        k2.set(Field::TpDst, 81);
        assert_eq!(e.lookup(0, &k2, k2.hash64()), None);
        e.invalidate();
        assert_eq!(e.lookup(0, &k, h), None);
    }
}
