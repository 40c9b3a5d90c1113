//! Small, fast, non-cryptographic hashing for the hot path.
//!
//! Keys hashed here come from frames an attacker may craft, but every table
//! that uses them is bounded (the exact-match cache overwrites, the MAC table
//! evicts), so worst-case collisions cost time, never memory. The seed is fixed
//! so replays are deterministic.

use std::hash::{BuildHasher, Hasher};

const K: u64 = 0x9e37_79b9_7f4a_7c15;

#[inline(always)]
fn mix(h: u64, x: u64) -> u64 {
    (h ^ x).wrapping_mul(K).rotate_left(29)
}

#[inline(always)]
fn finish(mut h: u64) -> u64 {
    h ^= h >> 32;
    h = h.wrapping_mul(0xd6e8_feb8_6659_fd93);
    h ^= h >> 32;
    h
}

/// Odd constants for [`hash_words`], one pair per word position.
const WK: [u64; 9] = [
    0x9e37_79b9_7f4a_7c15,
    0xc2b2_ae3d_27d4_eb4f,
    0x1656_67b1_9e37_79f9,
    0x85eb_ca77_c2b2_ae63,
    0x27d4_eb2f_1656_67c5,
    0xff51_afd7_ed55_8ccd,
    0xc4ce_b9fe_1a85_ec53,
    0xd6e8_feb8_6659_fd93,
    0xa076_1d64_78bd_642f,
];

#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let m = a as u128 * b as u128;
    (m as u64) ^ ((m >> 64) as u64)
}

/// Hashes up to eight words: a sum of independent 64-bit products (one per
/// word, each with its own odd constant, so the multiplies overlap in the
/// CPU) folded through one 128-bit multiply. The frame path waits on this
/// hash before its cache probe, so latency matters more than strength; the
/// tables it feeds are bounded, so a poor spread costs time, never memory.
#[inline(always)]
pub fn hash_words(w: &[u64]) -> u64 {
    let mut a = 0u64;
    let mut b = 0u64;
    for (i, &x) in w.iter().enumerate() {
        let p = x.wrapping_mul(WK[i & 7]);
        if i & 1 == 0 {
            a = a.wrapping_add(p);
        } else {
            b = b.wrapping_add(p.rotate_left(32));
        }
    }
    fold(a ^ WK[8], b ^ (w.len() as u64)) ^ a.rotate_left(17)
}

/// Hashes one word.
#[inline(always)]
pub fn hash_u64(x: u64) -> u64 {
    finish(mix(0x243f_6a88_85a3_08d3, x))
}

/// A [`Hasher`] built on [`hash_words`] for `HashMap`s keyed by flow keys and MACs.
#[derive(Default, Clone, Copy, Debug)]
pub struct FastHasher {
    h: u64,
}

impl Hasher for FastHasher {
    #[inline(always)]
    fn finish(&self) -> u64 {
        finish(self.h)
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.h = mix(self.h, u64::from_le_bytes(b));
        }
    }
    #[inline(always)]
    fn write_u64(&mut self, x: u64) {
        self.h = mix(self.h, x);
    }
    #[inline(always)]
    fn write_u32(&mut self, x: u32) {
        self.h = mix(self.h, x as u64);
    }
    #[inline(always)]
    fn write_u16(&mut self, x: u16) {
        self.h = mix(self.h, x as u64);
    }
    #[inline(always)]
    fn write_u8(&mut self, x: u8) {
        self.h = mix(self.h, x as u64);
    }
    #[inline(always)]
    fn write_usize(&mut self, x: usize) {
        self.h = mix(self.h, x as u64);
    }
}

/// Builds [`FastHasher`]s.
#[derive(Default, Clone, Copy, Debug)]
pub struct FastBuild;

impl BuildHasher for FastBuild {
    type Hasher = FastHasher;
    #[inline(always)]
    fn build_hasher(&self) -> FastHasher {
        FastHasher {
            h: 0x243f_6a88_85a3_08d3,
        }
    }
}

/// A `HashMap` using [`FastBuild`].
pub type FastMap<K, V> = std::collections::HashMap<K, V, FastBuild>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differing_in_one_field_spread() {
        // Flow keys that differ only in an address or port must not pile up
        // in the low bits the caches index with.
        for word in 0..8 {
            for shift in [0u32, 16, 32, 48] {
                let mut seen = std::collections::HashSet::new();
                for i in 0..4096u64 {
                    let mut w = [
                        0x0800_0000_0001u64,
                        0x0200_0000_0001,
                        0x0200_0000_0002,
                        0xc612_0001_c612_0002,
                        0,
                        0,
                        0,
                        0,
                    ];
                    w[word] ^= i << shift;
                    seen.insert(hash_words(&w) & 0x1fff);
                }
                assert!(
                    seen.len() > 2900,
                    "word {word} shift {shift}: {}",
                    seen.len()
                );
            }
        }
    }

    #[test]
    fn low_bits_spread() {
        // Sequential inputs must not collide in the low bits used for indexing.
        let mut seen = std::collections::HashSet::new();
        for i in 0..4096u64 {
            seen.insert(hash_u64(i) & 0xffff);
        }
        assert!(seen.len() > 3900, "{}", seen.len());
    }
}
