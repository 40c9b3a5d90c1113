//! Exact-match cache in front of the classifier.
//!
//! Maps (table, full flow key) to the classifier's answer — a rule id or "no
//! rule" — so a flow seen before costs one hash and one 64-byte compare. Two
//! candidate slots per key (from different hash bits); a miss overwrites the
//! emptier or older one. Any change to the tables bumps the generation, which
//! invalidates every entry at once without touching them.

use crate::key::FlowKey;

/// Entries in the cache (a power of two).
pub const EMC_ENTRIES: usize = 8192;

/// "No rule matched", as a cached answer.
pub const NO_RULE: u32 = u32::MAX;

#[derive(Clone, Copy, Default)]
struct Meta {
    hash: u32,
    gen: u32,
    table: u8,
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

/// The cache.
pub struct Emc {
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
            meta: vec![Meta::default(); EMC_ENTRIES].into_boxed_slice(),
            keys: vec![FlowKey::ZERO; EMC_ENTRIES].into_boxed_slice(),
            gen: 1,
            hits: 0,
            misses: 0,
        }
    }

    #[inline(always)]
    fn slots(hash: u64) -> (usize, usize) {
        let a = hash as usize & (EMC_ENTRIES - 1);
        let b = (hash >> 20) as usize & (EMC_ENTRIES - 1);
        (a, b)
    }

    #[inline(always)]
    fn find(&self, table: u8, key: &FlowKey, hash: u64) -> Option<usize> {
        let (a, b) = Self::slots(hash);
        let h = (hash >> 32) as u32;
        let hit = |i: usize| {
            let m = &self.meta[i];
            m.gen == self.gen && m.hash == h && m.table == table && self.keys[i] == *key
        };
        if hit(a) {
            Some(a)
        } else if hit(b) {
            Some(b)
        } else {
            None
        }
    }

    /// The cached answer for `key` in `table`: `Some((rule id or NO_RULE, hint))`.
    #[inline(always)]
    pub fn lookup(&mut self, table: u8, key: &FlowKey, hash: u64) -> Option<(u32, Hint)> {
        match self.find(table, key, hash) {
            Some(i) => {
                self.hits += 1;
                let m = &self.meta[i];
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
        let (a, b) = Self::slots(hash);
        // Prefer a stale slot; otherwise alternate on a hash bit.
        let i = if self.meta[a].gen != self.gen {
            a
        } else if self.meta[b].gen != self.gen {
            b
        } else if hash & (1 << 40) == 0 {
            a
        } else {
            b
        };
        self.meta[i] = Meta {
            hash: (hash >> 32) as u32,
            gen: self.gen,
            table,
            rule,
            hint: Hint::default(),
        };
        self.keys[i] = *key;
    }

    /// Forgets everything (the tables changed).
    pub fn invalidate(&mut self) {
        self.gen = self.gen.wrapping_add(1);
        if self.gen == 0 {
            // Wrapped: old generations could look current again.
            for m in self.meta.iter_mut() {
                m.gen = 0;
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
